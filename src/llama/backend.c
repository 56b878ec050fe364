/*
 * llama/backend.c — the llama.cpp backend's ops (backend.h): loading a
 * model, its description, and each request sent to the model's batching
 * engine (engine.c) or, when it does not fit the engine, run in a context
 * of its own. Built on llama/lm.c.
 *
 * DESIGN
 * A loaded model is one llama_model (the weights, read-only and shared)
 * and, made on first use, its batching engine: requests whose context and
 * threads match the model's settings run as sequences of the engine's one
 * context. A request that asks for more context or other threads, or a
 * model with n_parallel 0, runs alone in a context of its own (the rule in
 * backend.h). A model without an engine keeps one such context idle
 * (lm->idle) while no request runs alone on it: the context its load was
 * charged for; every other is freed when its request ends, and the budget
 * charged it for that request (orchestra.c). lm->pool_lock is held only to
 * take or keep the idle context, never during evaluation.
 */
#include "glue.h"
#include "llama_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

/* ---- loaded model ----------------------------------------------------------- */

/* Weights once. With the file mapped, llama.cpp reads each tensor it
 * repacks for this CPU (or copies into a buffer of its own) from the
 * mapping, and those file pages stay mapped and resident beside the copy:
 * a Q4_0 model of 31 MB held 68 MB. After the load the file's pages are
 * dropped from this process (MADV_DONTNEED on its mappings of the file,
 * found in /proc/self/maps by device and inode): they stay in the page
 * cache, so the tensors still read from the mapping fault them back on
 * first use as minor faults, and the copies are never read from the file
 * again. What stays resident is what is used. */
static void release_file_pages(const char *path)
{
    struct stat st;
    FILE *f = stat(path, &st) == 0 ? fopen("/proc/self/maps", "re") : NULL;
    if (!f)
        return;
    char line[4352];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino;
        unsigned maj, mnr;
        if (sscanf(line, "%lx-%lx %*4s %lx %x:%x %lu", &lo, &hi, &off, &maj, &mnr, &ino) != 6)
            continue;
        if (ino == (unsigned long)st.st_ino && maj == major(st.st_dev) &&
            mnr == minor(st.st_dev))
            madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    fclose(f);
}

struct progress_bridge {
    const struct orch__load_req *req;
    bool cancelled;
};

static bool progress_cb(float progress, void *ud)
{
    struct progress_bridge *b = ud;
    if (!b->req->progress(b->req->ctl, progress)) {
        b->cancelled = true;
        return false;
    }
    return true;
}

#ifdef ORCH_TESTING
/* The suite runs once more with layers offloaded (scripts/gpu-check.sh):
 * $ORCH_TEST_NGL, when set, replaces every load's n_gpu_layers. */
static int32_t test_ngl(int32_t asked)
{
    const char *s = getenv("ORCH_TEST_NGL");
    return s && *s ? (int32_t)strtol(s, NULL, 10) : asked;
}
#else
#define test_ngl(asked) (asked)
#endif

/* Offloading asked for where llama.cpp has no GPU backend: say so once. */
static void warn_no_gpu(int32_t n_gpu_layers)
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (n_gpu_layers == 0 || orch__lm_has_gpu() || atomic_flag_test_and_set(&warned))
        return;
    orch__log(ORCH_LOG_WARN, NULL, "no_gpu",
              OF_S("msg", "n_gpu_layers asks for offloading, but this llama.cpp has no GPU "
                          "backend: every layer runs on the CPU"),
              OF_I("n_gpu_layers", n_gpu_layers), OF_S("devices", orch__lm_devices()));
}

static int lb_load(const orch_backend *be, const struct orch__load_req *req, void **out,
                      orch_error *err)
{
    (void)be;
    orch__lm_init();

    /* Our own header check first: clear errors for empty, truncated or
     * foreign files, and a refusal of every value llama.cpp would abort the
     * process on, before llama.cpp sees the file. */
    struct orch__gguf *g;
    int rc = orch__gguf_open(req->path, &g, err);
    if (rc)
        return rc;
    rc = orch__gguf_check_loadable(g, req->path, err);
    orch__gguf_close(g);
#ifdef ORCH_TESTING
    /* the suite proves vetting catches what the pre-check would refuse */
    const char *skip = getenv("ORCH_TEST_SKIP_PRECHECK");
    if (skip && *skip == '1')
        rc = ORCH_OK;
#endif
    if (rc == ORCH_OK && req->vet) {
        /* the child's memory: the file mapped and repacked, a small
         * context, the vocabulary, and room for llama.cpp's own */
        uint64_t w = 0, c = 0;
        orch_error e2;
        if (orch__file_estimate(req->path, 256, 1, &w, &c, &e2) != ORCH_OK)
            w = c = 0;
        struct orch__vet_opts vo = {.role = req->role,
                                    .mem_limit = 2 * w + c + (UINT64_C(1) << 30),
                                    .use_cache = true};
        rc = orch__lm_vet(req->path, &vo, err);
    }
    if (rc)
        return rc;

    struct lmodel *lm = calloc(1, sizeof *lm);
    if (!lm)
        return orch__err(err, ORCH_ENOMEM, "out of memory loading '%s'", req->path);

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = test_ngl(req->n_gpu_layers);
    mp.use_extra_bufts = !req->no_repack;
    mp.load_mode = req->use_mmap
                       ? (req->use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                       : (req->use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
    struct progress_bridge bridge = {.req = req, .cancelled = false};
    mp.progress_callback = progress_cb;
    mp.progress_callback_user_data = &bridge;

    warn_no_gpu(mp.n_gpu_layers);
    struct orch__lm_capture cap = {0};
    orch__lm_capture(&cap);
    bool clean = orch__glue_model_load(req->path, mp, &lm->model);
    orch__lm_capture(NULL);

    if (!lm->model) {
        free(lm);
        if (!clean)
            return orch__err(err, ORCH_EFORMAT, "llama.cpp threw loading '%s': %s", req->path,
                             orch__glue_what());
        if (bridge.cancelled)
            return orch__err(err, ORCH_ECANCELED, "load of '%s' cancelled", req->path);
        /* the pre-check passed, so what llama.cpp refuses is the file's
         * content: bad input, not a failed operation */
        return orch__err(err, ORCH_EFORMAT, "llama.cpp refused '%s': %s%s%s", req->path,
                         cap.n_errors ? cap.errors : "no reason given",
                         cap.n_warnings ? "; warnings: " : "", cap.warnings);
    }
    if (req->use_mmap && !req->no_repack && !req->use_mlock)
        release_file_pages(req->path);
    lm->vocab = llama_model_get_vocab(lm->model);
    pthread_mutex_init(&lm->pool_lock, NULL);
    pthread_mutex_init(&lm->chat.lock, NULL);
    lm->n_threads = req->n_threads;
    lm->n_batch = req->n_batch > 0 ? req->n_batch : 512;
    lm->n_parallel = req->n_parallel;
    lm->stream_latency_ms = req->stream_latency_ms;
    lm->on_gpu = mp.n_gpu_layers != 0 && orch__lm_has_gpu();

    struct orch_model_info *in = &lm->info;
    llama_model_meta_val_str(lm->model, "general.architecture", in->arch, sizeof in->arch);
    llama_model_desc(lm->model, in->desc, sizeof in->desc);
    in->n_params = llama_model_n_params(lm->model);
    in->bytes = llama_model_size(lm->model);
    in->n_ctx_train = llama_model_n_ctx_train(lm->model);
    in->n_embd = llama_model_n_embd(lm->model);
    in->n_layer = llama_model_n_layer(lm->model);
    in->n_head = llama_model_n_head(lm->model);
    in->n_vocab = llama_vocab_n_tokens(lm->vocab);
    in->has_chat_template = llama_model_chat_template(lm->model, NULL) != NULL;

    char key[64], val[32];
    snprintf(key, sizeof key, "%s.pooling_type", in->arch);
    lm->pooling = LLAMA_POOLING_TYPE_MEAN; /* mean where the model has none */
    if (llama_model_meta_val_str(lm->model, key, val, sizeof val) > 0) {
        int pt = atoi(val);
        if (pt > LLAMA_POOLING_TYPE_NONE && pt <= LLAMA_POOLING_TYPE_LAST)
            lm->pooling = (enum llama_pooling_type)pt;
    }
    lm->n_ctx_seq = orch__n_ctx_resolve(req->n_ctx, in->n_ctx_train);
    *out = lm;
    return ORCH_OK;
}

static void lb_free_model(const orch_backend *be, void *model)
{
    (void)be;
    struct lmodel *lm = model;
    if (!lm)
        return;
    orch__engine_free(lm->engine);
    if (lm->idle.ctx)
        llama_free(lm->idle.ctx);
    pthread_mutex_destroy(&lm->pool_lock);
    orch__lm_chat_free(lm);
    pthread_mutex_destroy(&lm->chat.lock);
    llama_model_free(lm->model);
    free(lm);
}

static uint64_t lb_size(void *model)
{
    return llama_model_size(((struct lmodel *)model)->model);
}

static void lb_info(void *model, struct orch_model_info *out)
{
    *out = ((struct lmodel *)model)->info;
}

/* ---- contexts of their own ------------------------------------------------ */

/* A context for a request running alone: the idle one when it matches;
 * else a new one, after freeing an idle one that does not match (at most
 * one context per request running alone exists: what the budget charged). */
static struct llama_context *ctx_get(struct lmodel *lm, uint32_t n_ctx, uint32_t n_batch,
                                     bool embedding, int32_t n_threads, orch_error *err)
{
    pthread_mutex_lock(&lm->pool_lock);
    struct idle_ctx idle = lm->idle;
    lm->idle.ctx = NULL;
    lm->n_alone++;
    pthread_mutex_unlock(&lm->pool_lock);
    if (idle.ctx && idle.n_ctx == n_ctx && idle.n_batch == n_batch &&
        idle.embedding == embedding) {
        llama_set_n_threads(idle.ctx, n_threads, n_threads);
        return idle.ctx;
    }
    if (idle.ctx)
        llama_free(idle.ctx);
    struct llama_context *ctx = orch__lm_ctx_new(lm, n_ctx, n_batch,
                                                 embedding ? EMBED_SEQ_MAX : 1, embedding,
                                                 n_threads, err);
    if (!ctx) {
        pthread_mutex_lock(&lm->pool_lock);
        lm->n_alone--;
        pthread_mutex_unlock(&lm->pool_lock);
    }
    return ctx;
}

/* Ends a request's context of its own: kept idle, cleared, when the model
 * has no engine, the context is no larger than its sequences and no other
 * request runs alone; else freed. */
static void ctx_put(struct lmodel *lm, struct llama_context *ctx, uint32_t n_ctx, uint32_t n_batch,
                    bool embedding)
{
    bool keep = lm->n_parallel <= 0 && (int32_t)n_ctx <= lm->n_ctx_seq;
    if (keep) /* before it is shared: another request may take it at once */
        llama_memory_clear(llama_get_memory(ctx), true);
    pthread_mutex_lock(&lm->pool_lock);
    keep = --lm->n_alone == 0 && !lm->idle.ctx && keep;
    if (keep)
        lm->idle = (struct idle_ctx){ctx, n_ctx, n_batch, embedding};
    pthread_mutex_unlock(&lm->pool_lock);
    if (!keep)
        llama_free(ctx);
}

/* ---- generation ------------------------------------------------------------ */

/* req's prefix tokens (checked against the vocabulary) before the prompt's
 * *toks, in a new array that replaces it. */
static int with_prefix(struct lmodel *lm, const struct orch__gen_req *req, llama_token **toks,
                       int32_t *n_toks, orch_error *err)
{
    int32_t n_vocab = llama_vocab_n_tokens(lm->vocab);
    for (int32_t i = 0; i < req->n_prefix; i++)
        if (req->prefix[i] < 0 || req->prefix[i] >= n_vocab) {
            free(*toks);
            return orch__err(err, ORCH_EINVAL,
                             "context[%d] is token %d; the vocabulary has %d (a context is "
                             "the tokens of the model that made it)",
                             i, req->prefix[i], n_vocab);
        }
    llama_token *all = malloc(((size_t)req->n_prefix + (size_t)*n_toks) * sizeof *all);
    if (!all) {
        free(*toks);
        return orch__err(err, ORCH_ENOMEM, "out of memory for the context");
    }
    memcpy(all, req->prefix, (size_t)req->n_prefix * sizeof *all);
    memcpy(all + req->n_prefix, *toks, (size_t)*n_toks * sizeof *all);
    free(*toks);
    *toks = all;
    *n_toks += req->n_prefix;
    return ORCH_OK;
}

/* A fill-in-the-middle prompt, as llama-server's /infill makes one:
 * [BOS] FIM_PRE prompt FIM_SUF suffix FIM_MID (the texts without special
 * tokens of their own). */
static int infill_tokens(struct lmodel *lm, const struct orch__gen_req *req, llama_token **toks,
                         int32_t *n_toks, orch_error *err)
{
    const struct llama_vocab *v = lm->vocab;
    llama_token pre = llama_vocab_fim_pre(v), suf = llama_vocab_fim_suf(v),
                mid = llama_vocab_fim_mid(v);
    if (pre == LLAMA_TOKEN_NULL || suf == LLAMA_TOKEN_NULL || mid == LLAMA_TOKEN_NULL)
        return orch__err(err, ORCH_EINVAL, "'suffix' needs a model trained to fill in the "
                         "middle; this one has no %s token",
                         pre == LLAMA_TOKEN_NULL ? "FIM_PRE" : suf == LLAMA_TOKEN_NULL
                                                                   ? "FIM_SUF" : "FIM_MID");
    llama_token *a = NULL, *b = NULL;
    int32_t na = 0, nb = 0;
    int rc = orch__lm_tokenize(lm, req->prompt, false, false, &a, &na, err);
    if (rc == ORCH_OK)
        rc = orch__lm_tokenize(lm, req->suffix, false, false, &b, &nb, err);
    bool bos = llama_vocab_get_add_bos(v);
    llama_token *all = rc ? NULL : malloc(((size_t)na + (size_t)nb + 4) * sizeof *all);
    if (rc == ORCH_OK && !all)
        rc = orch__err(err, ORCH_ENOMEM, "out of memory for the infill prompt");
    if (rc == ORCH_OK) {
        int32_t k = 0;
        if (bos)
            all[k++] = llama_vocab_bos(v);
        all[k++] = pre;
        memcpy(all + k, a, (size_t)na * sizeof *all);
        k += na;
        all[k++] = suf;
        memcpy(all + k, b, (size_t)nb * sizeof *all);
        k += nb;
        all[k++] = mid;
        *toks = all;
        *n_toks = k;
    }
    free(a);
    free(b);
    return rc;
}

static int lb_generate(void *model, struct orch__gen_req *req, orch_error *err)
{
    struct lmodel *lm = model;
    llama_token *toks = NULL;
    int32_t n_toks = 0;
    int rc = req->suffix ? infill_tokens(lm, req, &toks, &n_toks, err)
                         : orch__lm_tokenize(lm, req->prompt, req->n_prefix == 0,
                                             req->parse_special, &toks, &n_toks, err);
    if (rc)
        return rc;
    if (req->n_prefix && (rc = with_prefix(lm, req, &toks, &n_toks, err)))
        return rc;
    for (int32_t i = 0; i < n_toks; i++)
        orch__req_token(req, toks[i]);
    req->n_prompt = n_toks;
    if (n_toks == 0) {
        free(toks);
        return orch__err(err, ORCH_EINVAL, "the prompt has no tokens");
    }
    if (n_toks >= req->n_ctx) {
        free(toks);
        return orch__err(err, ORCH_ECTX,
                         "prompt is %d tokens; the context holds %d (at least one must be left to "
                         "generate)",
                         n_toks, req->n_ctx);
    }
    if (!orch__runs_alone(lm->n_parallel, lm->n_ctx_seq, lm->n_threads, req->n_ctx,
                          req->n_threads)) {
        /* the usual case: a sequence in the model's batch engine */
        struct orch__lm_smpl *smpl;
        rc = orch__lm_smpl_new(lm, req, &smpl, err);
        if (rc) {
            free(toks);
            return rc;
        }
        return orch__engine_generate(lm, req, toks, n_toks, smpl, err);
    }
    /* a context of its own: more context or other threads than the
     * engine's sequences have, or a model with no engine (n_parallel 0) */
    uint32_t n_batch = (uint32_t)(req->n_batch < req->n_ctx ? req->n_batch : req->n_ctx);
    struct llama_context *ctx =
        ctx_get(lm, (uint32_t)req->n_ctx, n_batch, false, req->n_threads, err);
    if (!ctx) {
        free(toks);
        return ORCH_ENOMEM;
    }
    struct orch__lm_smpl *smpl;
    rc = orch__lm_smpl_new(lm, req, &smpl, err);
    if (rc) {
        free(toks);
        ctx_put(lm, ctx, (uint32_t)req->n_ctx, n_batch, false);
        return rc;
    }

    int64_t t0 = orch__now_ns();
    for (int32_t i = 0; i < n_toks && rc == ORCH_OK; i += (int32_t)n_batch) {
        int32_t n = n_toks - i < (int32_t)n_batch ? n_toks - i : (int32_t)n_batch;
        int d = orch__lm_decode(lm, ctx, llama_batch_get_one(toks + i, n), req->n_threads);
        if (d != 0)
            rc = orch__err(err, ORCH_EDECODE, "llama_decode failed on the prompt (code %d)", d);
    }
    req->prompt_ms = orch__ms_since(t0);
    int64_t t1 = orch__now_ns();
    int32_t pos = n_toks;
    while (rc == ORCH_OK) {
        llama_token tok;
        rc = orch__lm_smpl_sample(lm, smpl, ctx, -1, &tok, err);
        if (rc)
            break;
        if (llama_vocab_is_eog(lm->vocab, tok)) {
            req->eos = true;
            break;
        }
        if (!orch__lm_emit_token(lm, req, smpl, tok))
            break;
        if (pos >= req->n_ctx) {
            req->ctx_full = true;
            break;
        }
        int d = orch__lm_decode(lm, ctx, llama_batch_get_one(&tok, 1), req->n_threads);
        if (d != 0)
            rc = orch__err(err, ORCH_EDECODE, "llama_decode failed at position %d (code %d)", pos,
                           d);
        pos++;
    }
    req->gen_ms = orch__ms_since(t1);
    orch__lm_smpl_free(smpl);
    free(toks);
    ctx_put(lm, ctx, (uint32_t)req->n_ctx, n_batch, false);
    return rc;
}

/* ---- embeddings ------------------------------------------------------------ */

static int lb_embed(void *model, struct orch__embed_req *req, orch_error *err)
{
    struct lmodel *lm = model;
    int32_t n_embd = llama_model_n_embd_out(lm->model);
    if (n_embd <= 0)
        n_embd = lm->info.n_embd;
    uint32_t n_ctx = (uint32_t)req->n_ctx;
    float *out = calloc(req->n_texts * (size_t)n_embd, sizeof *out);
    llama_token **toks = calloc(req->n_texts, sizeof *toks);
    int32_t *n_toks = calloc(req->n_texts, sizeof *n_toks);
    int rc = ORCH_OK;
    if (!out || !toks || !n_toks) {
        rc = orch__err(err, ORCH_ENOMEM, "out of memory embedding %zu texts", req->n_texts);
        goto done;
    }
    for (size_t i = 0; i < req->n_texts && rc == ORCH_OK; i++) {
        rc = orch__lm_tokenize(lm, req->texts[i], true, false, &toks[i], &n_toks[i], err);
        if (rc == ORCH_OK && (uint32_t)n_toks[i] > n_ctx && req->truncate)
            n_toks[i] = (int32_t)n_ctx; /* its first tokens */
        else if (rc == ORCH_OK && (uint32_t)n_toks[i] > n_ctx)
            rc = orch__err(err, ORCH_ECTX, "text %zu is %d tokens; the context holds %u", i,
                           n_toks[i], n_ctx);
        if (rc == ORCH_OK && n_toks[i] == 0)
            rc = orch__err(err, ORCH_EINVAL, "text %zu has no tokens", i);
        if (rc == ORCH_OK)
            req->n_tokens += n_toks[i];
    }
    if (rc)
        goto done;
    if (!orch__runs_alone(lm->n_parallel, lm->n_ctx_seq, lm->n_threads, (int32_t)n_ctx,
                          req->n_threads)) {
        /* merged into the engine's batches with other threads' texts */
        rc = orch__engine_embed(lm, toks, n_toks, req->n_texts, n_ctx, out, n_embd, err);
        goto done;
    }

    struct llama_context *ctx = ctx_get(lm, n_ctx, n_ctx, true, req->n_threads, err);
    if (!ctx) {
        rc = ORCH_ENOMEM;
        goto done;
    }
    struct llama_batch batch = llama_batch_init((int32_t)n_ctx, 0, 1);
    struct orch__cpu_hold hold = {0};
    size_t first = 0;
    while (first < req->n_texts && rc == ORCH_OK) {
        /* pack whole texts, one sequence each, while they fit */
        float *dst[EMBED_SEQ_MAX];
        size_t ids[EMBED_SEQ_MAX];
        batch.n_tokens = 0;
        size_t last = first;
        int32_t n_tok = 0;
        while (last < req->n_texts &&
               orch__lm_embed_fits((int)(last - first), n_tok, n_toks[last], n_ctx)) {
            for (int32_t j = 0; j < n_toks[last]; j++)
                orch__lm_batch_add(&batch, toks[last][j], j, (llama_seq_id)(last - first), true);
            n_tok += n_toks[last];
            dst[last - first] = out + last * (size_t)n_embd;
            ids[last - first] = last;
            last++;
        }
        rc = orch__lm_embed_decode(lm, &hold, ctx, batch, req->n_threads, (int)(last - first), dst,
                                   ids, n_embd, err);
        first = last;
    }
    orch__lm_cpu_release(lm, &hold);
    llama_batch_free(batch);
    ctx_put(lm, ctx, n_ctx, n_ctx, true);
done:
    if (toks)
        for (size_t i = 0; i < req->n_texts; i++)
            free(toks[i]);
    free(toks);
    free(n_toks);
    if (rc) {
        free(out);
        return rc;
    }
    req->out = out;
    req->n_embd = n_embd;
    return ORCH_OK;
}

static int lb_estimate(const orch_backend *be, const char *path, int32_t n_ctx, int32_t n_seq,
                          uint64_t *weights, uint64_t *context, orch_error *err)
{
    (void)be;
    return orch__file_estimate(path, n_ctx, n_seq, weights, context, err);
}

static void lb_setup(const orch_backend *be)
{
    (void)be;
    orch__lm_init();
}

static const struct orch_backend_ops lb_ops = {
    .name = "llama.cpp",
    .load = lb_load,
    .free = lb_free_model,
    .size = lb_size,
    .info = lb_info,
    .generate = lb_generate,
    .chat_apply = orch__lm_chat_apply,
    .constrain = orch__lm_constrain,
    .parser_new = orch__lm_parser_new,
    .parser_feed = orch__lm_parser_feed,
    .parser_message = orch__lm_parser_message,
    .parser_free = orch__lm_parser_free,
    .embed = lb_embed,
    .estimate = lb_estimate,
    .setup = lb_setup,
};

static const struct orch_backend lb_backend = {.ops = &lb_ops};

const orch_backend *orch_backend_llama(void)
{
    return &lb_backend;
}

