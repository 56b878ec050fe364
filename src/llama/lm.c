/*
 * llama/lm.c — what the llama.cpp backend's other files build on:
 * process-wide setup, llama.cpp's log (and the capture of its errors per
 * thread), decodes under the CPU budget, contexts, tokens, samplers, and
 * the parts the engine and the context-per-request path share (the token
 * loop and the embedding packing). Calls nothing above it in llama/.
 *
 * DESIGN
 * Process-wide setup runs once (pthread_once): llama.cpp's log is routed
 * into ours at debug level, the backend is initialised, and the run-time
 * loaded CPU backends (libggml-cpu-*.so) are found without the user setting
 * anything: $ORCH_GGML_BACKEND_DIR, else the CPU backend built for this
 * machine (`native/` beside libllama, made by scripts/setup.sh) when this
 * CPU has the instruction set it was built for, else the folder libllama
 * itself was loaded from, else the folder the build recorded from
 * pkg-config, else ggml's own search. ggml's threadpool maker is handed to the CPU budget
 * (cpu.c), which runs every decode's threads.
 *
 * Errors llama.cpp reports through its log during a load or a context's
 * creation are captured per thread (orch__lm_capture) and quoted in our
 * error message.
 */
#include "glue.h"
#include "llama_int.h"
#include "../watch.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef ORCH_GGML_BACKEND_DIR
#define ORCH_GGML_BACKEND_DIR ""
#endif
#ifndef ORCH_LLAMA_VERSION
#define ORCH_LLAMA_VERSION ""
#endif

static char g_llama_version[128];
static pthread_once_t g_version_once = PTHREAD_ONCE_INIT;

static void version_init(void)
{
    const char *run = llama_version();
    if (!run || !*run)
        run = "unknown";
    if (*ORCH_LLAMA_VERSION && strcmp(run, ORCH_LLAMA_VERSION) != 0)
        snprintf(g_llama_version, sizeof g_llama_version, "%s (built against %s)", run,
                 ORCH_LLAMA_VERSION);
    else
        snprintf(g_llama_version, sizeof g_llama_version, "%s", run);
}

const char *orch_llama_version(void)
{
    pthread_once(&g_version_once, version_init);
    return g_llama_version;
}


/* ---- process-wide setup ------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* per-thread capture of llama.cpp's errors and warnings (llama_int.h) */
static _Thread_local struct orch__lm_capture *t_capture;
static _Thread_local char t_line[1024];
static _Thread_local size_t t_line_len;
static _Thread_local int t_line_level;

static void capture_append(char *buf, size_t cap, size_t *len, const char *line)
{
    size_t n = strlen(line);
    if (*len + n + 3 >= cap)
        return;
    if (*len) {
        memcpy(buf + *len, "; ", 2);
        *len += 2;
    }
    memcpy(buf + *len, line, n);
    *len += n;
    buf[*len] = '\0';
}

static void capture_line(int level, const char *line)
{
    struct orch__lm_capture *c = t_capture;
    if (!c)
        return;
    if (level == GGML_LOG_LEVEL_ERROR)
        capture_append(c->errors, sizeof c->errors, &c->n_errors, line);
    else if (level == GGML_LOG_LEVEL_WARN)
        capture_append(c->warnings, sizeof c->warnings, &c->n_warnings, line);
}

static void lb_log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level != GGML_LOG_LEVEL_CONT)
        t_line_level = level;
    /* llama.cpp writes lines in pieces; assemble them per thread */
    for (const char *p = text; *p; p++) {
        if (*p == '\n' || t_line_len == sizeof t_line - 1) {
            t_line[t_line_len] = '\0';
            if (t_line_len) {
                orch__log_text(ORCH_LOG_DEBUG, "llama.cpp", t_line);
                capture_line(t_line_level, t_line);
            }
            t_line_len = 0;
            if (*p == '\n')
                continue;
        }
        t_line[t_line_len++] = *p;
    }
}

static void tpools_find(void);

static void global_init(void);

/* What llama.cpp found, described once by global_init(). */
static char g_devices[512];
static bool g_has_gpu;

static void devices_describe(void)
{
    static const char *const types[] = {
        [GGML_BACKEND_DEVICE_TYPE_CPU] = "cpu", [GGML_BACKEND_DEVICE_TYPE_GPU] = "gpu",
        [GGML_BACKEND_DEVICE_TYPE_IGPU] = "igpu", [GGML_BACKEND_DEVICE_TYPE_ACCEL] = "accel"};
    size_t pos = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        g_has_gpu |= t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
        const char *type =
            (size_t)t < sizeof types / sizeof *types && types[t] ? types[t] : "other";
        int k = snprintf(g_devices + pos, sizeof g_devices - pos, "%s%s (%s, %s)", pos ? ", " : "",
                         ggml_backend_dev_name(d), type, ggml_backend_dev_description(d));
        if (k < 0 || (size_t)k >= sizeof g_devices - pos) {
            g_devices[pos] = '\0'; /* the list ends at the last device that fit */
            break;
        }
        pos += (size_t)k;
    }
    if (!pos)
        snprintf(g_devices, sizeof g_devices, "none");
}

const char *orch_llama_devices(void)
{
    orch__lm_init();
    return g_devices;
}

void orch__lm_init(void)
{
    pthread_once(&g_once, global_init);
}

bool orch__lm_has_gpu(void)
{
    orch__lm_init();
    return g_has_gpu;
}

const char *orch__lm_devices(void)
{
    orch__lm_init();
    return g_devices;
}

void orch__lm_capture(struct orch__lm_capture *c)
{
    t_capture = c;
}

/* The "flags" (x86) or "Features" (ARM) line of /proc/cpuinfo into buf,
 * without its name or newline; "" when there is none. */
static void cpu_flags(char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, "flags", 5) && strncmp(line, "Features", 8))
            continue;
        const char *v = strchr(line, ':');
        if (!v)
            continue;
        v += strspn(v + 1, " \t") + 1;
        snprintf(buf, size, "%s", v);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    free(line);
    fclose(f);
}

static char g_libdir[4096], g_backend_dir[4200];

void orch__lm_backend_dirs(const char **libdir, const char **used)
{
    orch__lm_init();
    *libdir = g_libdir;
    *used = g_backend_dir;
}

void orch__lm_native_dir(const char *dir, char *out, size_t size)
{
    out[0] = '\0';
    char path[4200], want[8192], have[8192] = "";
    snprintf(path, sizeof path, "%s/native/cpu-flags", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(have, sizeof have, f))
        have[0] = '\0';
    fclose(f);
    have[strcspn(have, "\n")] = '\0';
    cpu_flags(want, sizeof want);
    if (!*want || strcmp(want, have)) {
        orch__log(ORCH_LOG_INFO, "llama.cpp", "native_cpu_skipped", OF_S("dir", path),
                  OF_S("why", "built for another CPU's instruction set"));
        return;
    }
    snprintf(out, size, "%s/native", dir);
}

static void global_init(void)
{
    llama_log_set(lb_log_cb, NULL);
    llama_backend_init();
    /* where the CPU backends are: $ORCH_GGML_BACKEND_DIR; else the backend
     * built for this CPU; else the folder libllama was loaded from (so a
     * moved checkout or an installed tree needs no path from the build);
     * else the folder the build recorded; else ggml's own search */
    const char *env = getenv("ORCH_GGML_BACKEND_DIR");
    char *libdir = g_libdir;
    Dl_info info;
    if (dladdr((void *)llama_backend_init, &info) && info.dli_fname) {
        snprintf(libdir, sizeof g_libdir, "%s", info.dli_fname);
        char *slash = strrchr(libdir, '/');
        if (slash)
            *slash = '\0';
    }
    char native[4200] = "";
    if (!(env && *env) && *libdir)
        orch__lm_native_dir(libdir, native, sizeof native);
    const char *tries[] = {env && *env ? env : NULL, native, env && *env ? NULL : libdir,
                           env && *env ? NULL : ORCH_GGML_BACKEND_DIR};
    const char *dir = "";
    for (size_t i = 0; i < 4 && ggml_backend_dev_count() == 0; i++)
        if (tries[i] && *tries[i]) {
            dir = tries[i];
            ggml_backend_load_all_from_path(dir);
        }
    if (ggml_backend_dev_count() == 0) {
        ggml_backend_load_all();
        dir = "";
    }
    snprintf(g_backend_dir, sizeof g_backend_dir, "%s", dir);
    devices_describe();
    tpools_find();
    orch__log(ORCH_LOG_DEBUG, "llama.cpp", "backend_init", OF_S("dir", dir ? dir : ""),
              OF_U("devices", ggml_backend_dev_count()),
              OF_S("system", llama_print_system_info()));
}

/* ---- decodes under the CPU budget (cpu.c) ----------------------------------- */

/* ggml's threadpool maker, from the CPU backend; NULL = none (ggml makes
 * threads per graph). Pools never poll: their threads sleep between graphs. */
typedef struct ggml_threadpool *(*tp_new_fn)(struct ggml_threadpool_params *params);
static tp_new_fn g_tp_new;

static void *lb_make_pool(int n)
{
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(n);
    tpp.poll = 0;
    return g_tp_new(&tpp);
}

static void tpools_find(void)
{
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = cpu ? ggml_backend_dev_backend_reg(cpu) : NULL;
    if (reg)
        g_tp_new = (tp_new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    if (g_tp_new)
        orch__cpu_set_tpool_maker(lb_make_pool);
}

void orch__lm_cpu_release(struct lmodel *lm, struct orch__cpu_hold *h)
{
    orch__cpu_release(&lm->cpu, h);
}

int orch__lm_decode_held(struct lmodel *lm, struct orch__cpu_hold *h, struct llama_context *ctx,
                         struct llama_batch batch, int32_t n_threads)
{
    /* run exactly the threads taken (fewer than asked when the budget is
     * smaller than the model's thread count, or was cut since) */
    int want = lm->on_gpu ? n_threads : orch__cpu_fit(n_threads, batch.n_tokens);
    int n = orch__cpu_begin(&lm->cpu, h, want);
    if (llama_n_threads(ctx) != n || llama_n_threads_batch(ctx) != n)
        llama_set_n_threads(ctx, n, n);
    struct ggml_threadpool *tp = orch__cpu_pool(h);
    if (tp)
        llama_attach_threadpool(ctx, tp, tp);
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    int64_t t0 = orch__now_ns();
    int32_t d;
    int watched = orch__watch_begin(); /* a worker's supervisor sees it (watch.h) */
    if (!orch__glue_decode(ctx, batch, &d))
        orch__log(ORCH_LOG_ERROR, "llama.cpp", "decode_threw", OF_S("what", orch__glue_what()));
    orch__watch_end(watched);
    int64_t ns = orch__now_ns() - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    if (!lm->on_gpu)
        orch__cpu_observe(n, batch.n_tokens, ns,
                          (int64_t)(c1.tv_sec - c0.tv_sec) * 1000000000 +
                              (c1.tv_nsec - c0.tv_nsec));
    if (tp)
        llama_detach_threadpool(ctx);
    orch__cpu_end(&lm->cpu, h, ns);
    return d;
}

int orch__lm_decode(struct lmodel *lm, struct llama_context *ctx, struct llama_batch batch,
                    int32_t n_threads)
{
    struct orch__cpu_hold h = {0};
    int d = orch__lm_decode_held(lm, &h, ctx, batch, n_threads);
    orch__lm_cpu_release(lm, &h);
    return d;
}

struct llama_context *orch__lm_ctx_new(struct lmodel *lm, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t n_seq, bool embedding, int32_t n_threads,
                                       orch_error *err)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = embedding ? n_batch : (n_batch < 512 ? n_batch : 512);
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.no_perf = true;
    cp.embeddings = embedding;
    cp.n_seq_max = n_seq;
    cp.kv_unified = n_seq > 1 && embedding;
    if (embedding)
        cp.pooling_type = lm->pooling;
    struct orch__lm_capture cap = {0};
    orch__lm_capture(&cap);
    struct llama_context *ctx;
    bool clean = orch__glue_ctx_new(lm->model, cp, &ctx);
    orch__lm_capture(NULL);
    if (!ctx)
        orch__err(err, ORCH_ENOMEM, "llama.cpp could not create a context of %u tokens: %s%s%s",
                  n_ctx,
                  !clean         ? orch__glue_what()
                  : cap.n_errors ? cap.errors
                                 : "no reason given",
                  cap.n_warnings ? "; warnings: " : "", cap.warnings);
    return ctx;
}

/* ---- tokens --------------------------------------------------------------- */

int orch__lm_tokenize(struct lmodel *lm, const char *text, bool add_special, bool parse_special,
                    llama_token **out, int32_t *n_out, orch_error *err)
{
    size_t len = strlen(text);
    if (len > INT32_MAX / 2)
        return orch__err(err, ORCH_ECTX, "text of %zu bytes is too long", len);
    int32_t cap = (int32_t)len + 2;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    if (!toks)
        return orch__err(err, ORCH_ENOMEM, "out of memory tokenizing");
    int32_t n;
    int watched = orch__watch_begin(); /* a tokenizer can hang too (cubic WordPiece) */
    bool clean = orch__glue_tokenize(lm->vocab, text, (int32_t)len, toks, cap, add_special,
                                     parse_special, &n);
    if (clean && n < 0 && n != INT32_MIN) {
        cap = -n;
        llama_token *t2 = realloc(toks, (size_t)cap * sizeof *toks);
        if (!t2) {
            orch__watch_end(watched);
            free(toks);
            return orch__err(err, ORCH_ENOMEM, "out of memory tokenizing");
        }
        toks = t2;
        clean = orch__glue_tokenize(lm->vocab, text, (int32_t)len, toks, cap, add_special,
                                    parse_special, &n);
    }
    orch__watch_end(watched);
    if (!clean) {
        free(toks);
        return orch__err(err, ORCH_EFORMAT, "llama.cpp's tokenizer failed on this model: %s",
                         orch__glue_what());
    }
    if (n < 0) {
        free(toks);
        return orch__err(err, ORCH_EINVAL, "llama.cpp could not tokenize the text");
    }
    *out = toks;
    *n_out = n;
    return ORCH_OK;
}

static struct llama_sampler *chain_new(const struct orch_gen_params *p, int32_t n_ctx,
                                       int32_t n_vocab)
{
    struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
    sp.no_perf = true;
    struct llama_sampler *s = llama_sampler_chain_init(sp);
    if (!s)
        return NULL;
    if (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
        p->frequency_penalty != 0.0f) {
        int32_t last_n = p->repeat_last_n < 0 ? n_ctx : p->repeat_last_n;
        llama_sampler_chain_add(s, llama_sampler_init_penalties(n_vocab, last_n, p->repeat_penalty,
                                                                p->frequency_penalty,
                                                                p->presence_penalty));
    }
    if (p->temperature <= 0.0f) {
        llama_sampler_chain_add(s, llama_sampler_init_greedy());
        return s;
    }
    if (p->top_k > 0)
        llama_sampler_chain_add(s, llama_sampler_init_top_k(p->top_k));
    if (p->top_p < 1.0f)
        llama_sampler_chain_add(s, llama_sampler_init_top_p(p->top_p, 1));
    if (p->min_p > 0.0f)
        llama_sampler_chain_add(s, llama_sampler_init_min_p(p->min_p, 1));
    llama_sampler_chain_add(s, llama_sampler_init_temp(p->temperature));
    llama_sampler_chain_add(s, llama_sampler_init_dist(p->seed));
    return s;
}

/* The special tokens a constraint names (preserved_tokens: the format's
 * markers, such as <tool_call>), found in the vocabulary; their text is
 * emitted where other special tokens emit none. */
static int keep_tokens(struct lmodel *lm, const char *constraint, struct orch__lm_smpl *s)
{
    const char *k = strstr(constraint, "\"preserved_tokens\":[");
    if (!k)
        return ORCH_OK;
    k += strlen("\"preserved_tokens\":[");
    /* the glue wrote this JSON: strings without escapes other than \" and \\ */
    while (*k == '"' && s->n_keep < ORCH_LM_KEEP_MAX) {
        char tok[128];
        size_t n = 0;
        for (k++; *k && *k != '"' && n + 1 < sizeof tok; k++) {
            if (*k == '\\' && k[1])
                k++;
            tok[n++] = *k;
        }
        tok[n] = 0;
        if (*k == '"')
            k++;
        llama_token t[2];
        int32_t nt = 0;
        orch__glue_tokenize(lm->vocab, tok, (int32_t)n, t, 2, false, true, &nt);
        if (nt == 1)
            s->keep[s->n_keep++] = t[0];
        if (*k == ',')
            k++;
    }
    return ORCH_OK;
}

int orch__lm_smpl_new(struct lmodel *lm, const struct orch__gen_req *req,
                      struct orch__lm_smpl **out, orch_error *err)
{
    *out = NULL;
    struct orch__lm_smpl *s = calloc(1, sizeof *s);
    if (!s || !(s->chain = chain_new(req->params, req->n_ctx, lm->info.n_vocab))) {
        free(s);
        return orch__err(err, ORCH_ENOMEM, "out of memory making a sampler");
    }
    if (req->constraint) {
        struct orch__lm_capture cap = {0};
        orch__lm_capture(&cap);
        bool ok = orch__glue_grammar_new(lm->vocab, req->constraint, &s->grammar);
        orch__lm_capture(NULL);
        if (!ok || !s->grammar) {
            orch__lm_smpl_free(s);
            return orch__err(err, ORCH_EINVAL, "the grammar does not compile: %s%s%s",
                             orch__glue_what(), cap.n_errors ? ": " : "",
                             cap.n_errors ? cap.errors : "");
        }
        keep_tokens(lm, req->constraint, s);
    }
    *out = s;
    return ORCH_OK;
}

int orch__lm_smpl_sample(struct lmodel *lm, struct orch__lm_smpl *s, struct llama_context *ctx,
                         int32_t idx, llama_token *tok, orch_error *err)
{
    if (!s->grammar) {
        *tok = llama_sampler_sample(s->chain, ctx, idx);
        return ORCH_OK;
    }
    if (!orch__glue_sample(s->chain, s->grammar, ctx, idx, lm->vocab, tok))
        return orch__err(err, ORCH_EDECODE, "constrained sampling failed: %s",
                         orch__glue_what());
    return ORCH_OK;
}

bool orch__lm_smpl_special(const struct orch__lm_smpl *s, llama_token tok)
{
    for (int i = 0; s && i < s->n_keep; i++)
        if (s->keep[i] == tok)
            return true;
    return false;
}

void orch__lm_smpl_free(struct orch__lm_smpl *s)
{
    if (!s)
        return;
    llama_sampler_free(s->chain);
    if (s->grammar)
        llama_sampler_free(s->grammar);
    free(s);
}

/* ---- what the engine and the context-per-request path share ----------------- */

void orch__lm_batch_add(struct llama_batch *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                        bool logits)
{
    int32_t k = b->n_tokens++;
    b->token[k] = tok;
    b->pos[k] = pos;
    b->n_seq_id[k] = 1;
    b->seq_id[k][0] = seq;
    b->logits[k] = logits;
}

bool orch__lm_emit_token(struct lmodel *lm, struct orch__gen_req *req,
                         const struct orch__lm_smpl *smpl, llama_token tok)
{
    char piece[256];
    int32_t n;
    orch__glue_token_to_piece(lm->vocab, tok, piece, sizeof piece,
                              orch__lm_smpl_special(smpl, tok), &n);
    if (n < 0)
        n = 0; /* a piece past 256 bytes: none of the vocabularies we load has one */
    req->n_generated++;
    orch__req_token(req, tok);
    return req->emit(req->sink, piece, (size_t)n);
}

bool orch__lm_embed_fits(int n_packed, int32_t n_tok_packed, int32_t len, uint32_t n_ctx)
{
    int32_t pack = n_ctx < EMBED_PACK_TOKENS ? (int32_t)n_ctx : EMBED_PACK_TOKENS;
    return n_packed < EMBED_SEQ_MAX && (n_packed == 0 || n_tok_packed + len <= pack);
}

int orch__lm_embed_decode(struct lmodel *lm, struct orch__cpu_hold *h, struct llama_context *ctx,
                          struct llama_batch batch, int32_t n_threads, int n_seq,
                          float *const *dst, const size_t *ids, int32_t n_embd, orch_error *err)
{
    llama_memory_clear(llama_get_memory(ctx), true);
    int d = orch__lm_decode_held(lm, h, ctx, batch, n_threads);
    if (d != 0)
        return orch__err(err, ORCH_EDECODE, "llama_decode failed embedding (code %d)", d);
    for (int i = 0; i < n_seq; i++) {
        const float *e = llama_get_embeddings_seq(ctx, (llama_seq_id)i);
        if (!e)
            return orch__err(err, ORCH_EDECODE, "llama.cpp returned no embedding for text %zu",
                             ids[i]);
        memcpy(dst[i], e, (size_t)n_embd * sizeof *e);
    }
    return ORCH_OK;
}

