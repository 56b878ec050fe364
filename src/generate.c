/*
 * generate.c — generation, chat and embeddings on a managed model, whatever
 * the backend: parameter checks, leases, the token budget, stop strings
 * matched across token boundaries, streaming, and L2 normalisation.
 *
 * DESIGN
 * Every call takes a lease for its whole duration, so an unload asked
 * meanwhile waits for it (model.c). The backend emits one piece per token;
 * the sink here appends it to `pending`, delivers the part of `pending` that
 * can no longer start a stop string (and is complete UTF-8) to the caller's
 * callback and to the result, and keeps the rest back. A stop string is
 * found as soon as its last byte arrives, however the tokens split it, and
 * neither it nor anything after it is delivered.
 */
#include "cpu.h"
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct orch_gen_params orch_gen_default_params(void)
{
    struct orch_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 256;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = ORCH_SEED_RANDOM;
    return p;
}

struct orch_embed_params orch_embed_default_params(void)
{
    struct orch_embed_params p = {.normalize = true, .n_threads = 0};
    return p;
}

const char *orch_finish_name(enum orch_finish f)
{
    switch (f) {
    case ORCH_FINISH_STOP:
        return "stop";
    case ORCH_FINISH_LENGTH:
        return "length";
    case ORCH_FINISH_EOS:
        return "eos";
    case ORCH_FINISH_CANCELLED:
        return "cancelled";
    case ORCH_FINISH_ERROR:
        return "error";
    case ORCH_FINISH_NONE:
        break;
    }
    return "none";
}

void orch_gen_result_clear(struct orch_gen_result *res)
{
    if (!res)
        return;
    free(res->text);
    free(res->context);
    memset(res, 0, sizeof *res);
}

int orch__check_text(const char *what, const char *s, orch_error *err)
{
    if (!s)
        return orch__err(err, ORCH_EINVAL, "%s is NULL", what);
    size_t bad = orch__utf8_check(s, strlen(s));
    if (bad)
        return orch__err(err, ORCH_EINVAL, "%s is not valid UTF-8 (byte %zu)", what,
                         bad - 1);
    return ORCH_OK;
}

static int check_gen_params(const struct orch_gen_params *p, orch_error *err)
{
    int rc0;
    if (p->max_tokens <= 0)
        return orch__err(err, ORCH_EINVAL, "max_tokens %d must be at least 1",
                         p->max_tokens);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return orch__err(err, ORCH_EINVAL, "temperature %g must be 0 (greedy) or more",
                         (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return orch__err(err, ORCH_EINVAL, "top_p %g must be in (0, 1]",
                         (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return orch__err(err, ORCH_EINVAL, "min_p %g must be in [0, 1)",
                         (double)p->min_p);
    if (p->top_k < 0)
        return orch__err(err, ORCH_EINVAL, "top_k %d must be 0 (off) or more",
                         p->top_k);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return orch__err(err, ORCH_EINVAL, "repeat_penalty %g must be above 0",
                         (double)p->repeat_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return orch__err(err, ORCH_EINVAL, "presence_penalty %g must be in [-2, 2]",
                         (double)p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return orch__err(err, ORCH_EINVAL, "frequency_penalty %g must be in [-2, 2]",
                         (double)p->frequency_penalty);
    if (p->repeat_last_n < -1)
        return orch__err(err, ORCH_EINVAL, "repeat_last_n %d must be -1 or more",
                         p->repeat_last_n);
    if ((p->n_ctx < 0 && p->n_ctx != ORCH_N_CTX_TRAIN) || p->n_ctx > ORCH_N_CTX_MAX)
        return orch__err(err, ORCH_EINVAL,
                         "n_ctx %d is out of range (expected 0 = the model's, 1..%d, or %d for "
                         "the trained context)", p->n_ctx, ORCH_N_CTX_MAX, ORCH_N_CTX_TRAIN);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return orch__err(err, ORCH_EINVAL, "n_threads %d is out of range",
                         p->n_threads);
    if (p->grammar && p->json_schema)
        return orch__err(err, ORCH_EINVAL, "grammar and json_schema cannot both be given");
    if (p->grammar && (rc0 = orch__check_text("the grammar", p->grammar, err)) != ORCH_OK)
        return rc0;
    if (p->json_schema &&
        (rc0 = orch__check_text("the JSON schema", p->json_schema, err)) != ORCH_OK)
        return rc0;
    if (p->n_stop && !p->stop)
        return orch__err(err, ORCH_EINVAL, "n_stop is %zu but stop is NULL",
                         p->n_stop);
    for (size_t i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0])
            return orch__err(err, ORCH_EINVAL, "stop string %zu is empty", i);
        int rc = orch__check_text("a stop string", p->stop[i], err);
        if (rc)
            return rc;
    }
    return ORCH_OK;
}

/* Context size for a request: the request's (ORCH_N_CTX_TRAIN: the trained
 * size), else the model's (its trained size when the model asked for that). */
int32_t orch__gen_n_ctx(orch_model *m, int32_t req_n_ctx)
{
    if (req_n_ctx > 0)
        return req_n_ctx;
    int32_t asked =
        req_n_ctx == ORCH_N_CTX_TRAIN ? ORCH_N_CTX_TRAIN : orch__model_params(m)->n_ctx;
    if (asked > 0)
        return asked;
    struct orch_model_info info;
    memset(&info, 0, sizeof info);
    const orch_backend *be = orch__model_backend(m);
    be->ops->info(orch__model_backend_obj(m), &info);
    return orch__n_ctx_resolve(asked, info.n_ctx_train);
}

/* The threads a request asking for `asked` (0: the model's) runs with. */
static int32_t req_threads(orch_model *m, int32_t asked)
{
    return asked ? orch__cap_threads(asked, orch_model_role(m)) : orch__model_params(m)->n_threads;
}

/* An embedding request's context: the one asked (0: the model's), at most
 * the model's and ORCH_EMBED_N_CTX_MAX. */
static int32_t embed_n_ctx(orch_model *m, int32_t asked)
{
    int32_t n = orch__gen_n_ctx(m, 0);
    if (asked > 0 && asked < n)
        n = asked;
    return n < ORCH_EMBED_N_CTX_MAX ? n : ORCH_EMBED_N_CTX_MAX;
}

bool orch__gen_alone(orch_model *m, int32_t n_ctx, int32_t n_threads, bool embed,
                     int32_t *n_ctx_out)
{
    const struct orch_model_params *mp = orch__model_params(m);
    int32_t n = embed ? embed_n_ctx(m, n_ctx) : orch__gen_n_ctx(m, n_ctx);
    if (n_ctx_out)
        *n_ctx_out = n;
    return orch__runs_alone(mp->n_parallel, orch__gen_n_ctx(m, 0), mp->n_threads, n,
                            req_threads(m, n_threads));
}

/* ---- the sink between the backend and the caller --------------------------- */

struct gen_sink {
    const struct orch_gen_params *p;
    struct orch__buf out;     /* delivered text */
    struct orch__buf pending; /* held back: may begin a stop string */
    int32_t n_tokens;
    enum orch_finish finish;  /* set when the sink stops the generation */
    int rc;
};

static bool deliver(struct gen_sink *s, const char *text, size_t n)
{
    if (!n)
        return true;
    if (orch__fault(ORCH_FAULT_OOM_RESULT) || orch__buf_append(&s->out, text, n) != ORCH_OK) {
        s->rc = ORCH_ENOMEM;
        s->finish = ORCH_FINISH_ERROR;
        return false;
    }
    if (s->p->on_text && !s->p->on_text(text, n, s->p->user_data)) {
        s->finish = ORCH_FINISH_CANCELLED;
        return false;
    }
    return true;
}

/* Longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const struct orch_gen_params *p, const char *text, size_t len)
{
    size_t hold = 0;
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        size_t max = sl - 1 < len ? sl - 1 : len;
        for (size_t k = max; k > hold; k--)
            if (memcmp(text + len - k, p->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static bool cancelled(const struct orch_gen_params *p)
{
    return p->cancel && __atomic_load_n(p->cancel, __ATOMIC_RELAXED) != 0;
}

static bool sink_emit(void *vs, const char *piece, size_t len)
{
    struct gen_sink *s = vs;
    if (cancelled(s->p)) {
        s->finish = ORCH_FINISH_CANCELLED;
        return false;
    }
    s->n_tokens++;
    /* the model's bytes need not be UTF-8 (byte tokens): what is delivered is */
    if (orch__buf_append(&s->pending, piece, len) != ORCH_OK ||
        orch__utf8_repair(&s->pending, false) != ORCH_OK) {
        s->rc = ORCH_ENOMEM;
        s->finish = ORCH_FINISH_ERROR;
        return false;
    }
    const char *text = s->pending.data;
    size_t n = s->pending.len;

    /* earliest stop string in pending */
    size_t cut = n;
    bool stopped = false;
    for (size_t i = 0; i < s->p->n_stop && n; i++) {
        const char *hit = memmem(text, n, s->p->stop[i], strlen(s->p->stop[i]));
        if (hit && (size_t)(hit - text) < cut) {
            cut = (size_t)(hit - text);
            stopped = true;
        }
    }
    size_t send;
    if (stopped) {
        send = cut;
    } else {
        send = n - stop_prefix_tail(s->p, text, n);
        send = orch__utf8_complete_len(text, send);
    }
    bool go = deliver(s, text, send);
    memmove(s->pending.data, text + send, n - send);
    s->pending.len = n - send;
    s->pending.data[s->pending.len] = '\0';
    if (stopped) {
        if (s->finish == ORCH_FINISH_NONE)
            s->finish = ORCH_FINISH_STOP;
        return false;
    }
    if (!go)
        return false;
    if (s->n_tokens >= s->p->max_tokens) {
        s->finish = ORCH_FINISH_LENGTH;
        return false;
    }
    return true;
}

int orch__generate_leased(orch_model *m, const char *prompt, bool parse_special,
                          const struct orch_gen_params *params, struct orch_gen_result *res,
                          orch_error *err)
{
    return orch__generate_constrained(m, prompt, parse_special, NULL, params, res, err);
}

/* Generation on a model this thread holds a lease on. Errors name no role
 * (the public entry points add it). */
int orch__generate_constrained(orch_model *m, const char *prompt, bool parse_special,
                               const char *constraint, const struct orch_gen_params *params,
                               struct orch_gen_result *res, orch_error *err)
{
    struct orch_gen_params defaults = orch_gen_default_params();
    const struct orch_gen_params *p = params ? params : &defaults;
    int rc = check_gen_params(p, err);
    if (rc == ORCH_OK)
        rc = orch__check_text("the prompt", prompt, err);
    if (rc == ORCH_OK && p->suffix)
        rc = orch__check_text("the suffix", p->suffix, err);
    if (rc == ORCH_OK && !prompt[0] && !p->n_context && !p->suffix)
        rc = orch__err(err, ORCH_EINVAL, "the prompt is empty");
    if (rc == ORCH_OK && p->suffix && p->n_context)
        rc = orch__err(err, ORCH_EINVAL, "a suffix (fill-in-the-middle) with a context: the "
                                         "infill prompt is made of the prompt and suffix alone");
    if (rc == ORCH_OK && p->n_context && (!p->context || p->n_context > ORCH_N_CTX_MAX))
        rc = orch__err(err, ORCH_EINVAL, "context: %zu tokens %s", p->n_context,
                       p->context ? "are more than a context holds" : "but no array");
    const orch_backend *be = orch__model_backend(m);
    if (rc == ORCH_OK && !be->ops->generate)
        rc = orch__err(err, ORCH_ENOTSUP, "backend %s cannot generate", be->ops->name);
    if (rc) {
        res->finish = ORCH_FINISH_ERROR;
        return rc;
    }
    if (cancelled(p)) {
        res->finish = ORCH_FINISH_CANCELLED;
        res->text = orch__strdup("");
        return res->text ? ORCH_OK : orch__err(err, ORCH_ENOMEM, "out of memory");
    }
    char *own = NULL; /* the params' grammar or schema, as the backend's constraint */
    if (!constraint && (p->grammar || p->json_schema)) {
        if (!be->ops->constrain) {
            res->finish = ORCH_FINISH_ERROR;
            return orch__err(err, ORCH_ENOTSUP, "backend %s cannot constrain text",
                             be->ops->name);
        }
        rc = be->ops->constrain(be, p->json_schema, p->grammar, &own, err);
        if (rc) {
            res->finish = ORCH_FINISH_ERROR;
            return rc;
        }
        constraint = own;
    }
    struct gen_sink s = {.p = p, .finish = ORCH_FINISH_NONE, .rc = ORCH_OK};
    const struct orch_model_params *mp = orch__model_params(m);
    struct orch__gen_req req = {
        .prompt = prompt,
        .parse_special = parse_special,
        .constraint = constraint,
        .params = p,
        .n_ctx = orch__gen_n_ctx(m, p->n_ctx),
        .n_threads = req_threads(m, p->n_threads),
        .n_batch = mp->n_batch,
        .emit = sink_emit,
        .sink = &s,
        .quiet = !p->n_stop && !p->on_text,
        .suffix = p->suffix,
        .prefix = p->context,
        .n_prefix = (int32_t)p->n_context,
        .want_tokens = p->return_context,
    };
    rc = be->ops->generate(orch__model_backend_obj(m), &req, err);
    free(own);
    if (rc == ORCH_OK && req.want_tokens && req.tokens_failed)
        rc = orch__err(err, ORCH_ENOMEM, "out of memory keeping the context's tokens");
    if (rc == ORCH_OK && p->return_context) {
        res->context = req.tokens; /* the result's now */
        res->n_context = req.n_tokens;
        req.tokens = NULL;
    }
    free(req.tokens);
    if (rc == ORCH_OK && s.rc)
        rc = orch__err(err, s.rc, "out of memory collecting the text");
    if (rc == ORCH_OK && s.finish != ORCH_FINISH_STOP && s.finish != ORCH_FINISH_CANCELLED &&
        s.pending.len) {
        /* the text ended: what was held back is text after all (a cut
         * character at the very end becomes U+FFFD) */
        if (orch__utf8_repair(&s.pending, true) == ORCH_OK)
            deliver(&s, s.pending.data, s.pending.len);
    }
    if (rc == ORCH_OK && orch__buf_append(&s.out, "", 0) != ORCH_OK)
        rc = orch__err(err, ORCH_ENOMEM, "out of memory");
    orch__buf_free(&s.pending);
    res->n_prompt = req.n_prompt;
    if (rc) {
        orch__buf_free(&s.out);
        res->finish = ORCH_FINISH_ERROR;
        return rc;
    }
    res->text = s.out.data;
    res->len = s.out.len;
    res->n_generated = req.n_generated;
    res->n_cached = req.n_cached;
    res->prompt_ms = req.prompt_ms;
    res->gen_ms = req.gen_ms;
    if (s.finish != ORCH_FINISH_NONE)
        res->finish = s.finish;
    else if (!req.eos && !req.ctx_full && cancelled(p))
        res->finish = ORCH_FINISH_CANCELLED; /* the backend read the flag itself (quiet) */
    else if (req.eos)
        res->finish = ORCH_FINISH_EOS;
    else
        res->finish = ORCH_FINISH_LENGTH; /* context full */
    orch__log(ORCH_LOG_DEBUG, orch_model_role(m), "generate", OF_I("n_prompt", res->n_prompt),
              OF_I("n_cached", res->n_cached),
              OF_I("n_generated", res->n_generated), OF_S("finish", orch_finish_name(res->finish)),
              OF_D("prompt_ms", res->prompt_ms), OF_D("gen_ms", res->gen_ms));
    return ORCH_OK;
}

/* The public model functions run the leased ones under a lease of their
 * own and name the model's role once in an error. */
int orch__named(orch_model *m, int rc, orch_error *err)
{
    if (rc)
        orch__err_prefix(err, "role '%s'", orch_model_role(m));
    return rc;
}

int orch_model_generate(orch_model *m, const char *prompt, const struct orch_gen_params *params,
                        struct orch_gen_result *res, orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_model_generate: res is NULL");
    memset(res, 0, sizeof *res);
    res->finish = ORCH_FINISH_ERROR;
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_generate: model is NULL");
    int64_t t0 = orch__now_ns();
    int rc = orch__model_acquire(m, err);
    if (rc == ORCH_OK) {
        double wait = orch__ms_since(t0);
        rc = orch__generate_leased(m, prompt, false, params, res, err);
        res->load_wait_ms = wait;
        orch_model_release(m);
    }
    return orch__named(m, rc, err);
}

/* ---- embeddings ------------------------------------------------------------ */

int orch__embed_leased(orch_model *m, const char *const *texts, size_t n_texts,
                       const struct orch_embed_params *params, float **out, int32_t *n_embd,
                       orch_error *err)
{
    *out = NULL;
    *n_embd = 0;
    struct orch_embed_params defaults = orch_embed_default_params();
    const struct orch_embed_params *p = params ? params : &defaults;
    if (n_texts == 0 || !texts)
        return orch__err(err, ORCH_EINVAL, "no texts to embed");
    if (p->n_threads < 0 || p->n_threads > 1024)
        return orch__err(err, ORCH_EINVAL, "n_threads %d is out of range", p->n_threads);
    if (p->n_ctx < 0)
        return orch__err(err, ORCH_EINVAL, "embedding n_ctx %d is negative", p->n_ctx);
    for (size_t i = 0; i < n_texts; i++) {
        int rc = orch__check_text("a text to embed", texts[i], err);
        if (rc)
            return rc;
        if (!texts[i][0])
            return orch__err(err, ORCH_EINVAL, "text %zu to embed is empty", i);
    }
    const orch_backend *be = orch__model_backend(m);
    if (!be->ops->embed)
        return orch__err(err, ORCH_ENOTSUP, "backend %s cannot embed", be->ops->name);
    struct orch__embed_req req = {
        .texts = texts,
        .n_texts = n_texts,
        .n_ctx = embed_n_ctx(m, p->n_ctx),
        .n_threads = req_threads(m, p->n_threads),
        .truncate = p->truncate,
    };
    int64_t t0 = orch__now_ns();
    int rc = be->ops->embed(orch__model_backend_obj(m), &req, err);
    if (rc)
        return rc;
    if (p->normalize) {
        for (size_t t = 0; t < n_texts; t++) {
            float *v = req.out + t * (size_t)req.n_embd;
            double sum = 0;
            for (int32_t i = 0; i < req.n_embd; i++)
                sum += (double)v[i] * v[i];
            double norm = sqrt(sum);
            if (norm > 0)
                for (int32_t i = 0; i < req.n_embd; i++)
                    v[i] = (float)(v[i] / norm);
        }
    }
    if (p->n_tokens)
        *p->n_tokens = req.n_tokens;
    orch__log(ORCH_LOG_DEBUG, orch_model_role(m), "embed", OF_U("n_texts", n_texts),
              OF_I("n_embd", req.n_embd), OF_D("ms", orch__ms_since(t0)));
    *out = req.out;
    *n_embd = req.n_embd;
    return ORCH_OK;
}

int orch_model_embed(orch_model *m, const char *const *texts, size_t n_texts,
                     const struct orch_embed_params *params, float **out, int32_t *n_embd,
                     orch_error *err)
{
    if (!m || !out || !n_embd)
        return orch__err(err, ORCH_EINVAL, "orch_model_embed: NULL argument");
    *out = NULL;
    *n_embd = 0;
    int rc = orch__model_acquire(m, err);
    if (rc == ORCH_OK) {
        rc = orch__embed_leased(m, texts, n_texts, params, out, n_embd, err);
        orch_model_release(m);
    }
    return orch__named(m, rc, err);
}
