/*
 * backend_fake.c — a backend for tests: settable load latency, byte size,
 * per-token time and injected failures; counts what it was asked to do.
 *
 * DESIGN
 * Settings and counters live in the fake instance under its own mutex
 * (f->lock); a load reads the settings once at its start. The latency is
 * slept in 1 ms slices, reporting progress and polling for cancellation
 * between slices, so cancellation is prompt and tests never sleep seconds.
 * A fake model is a regular file (so paths, inodes and bad-file errors are
 * real); nothing of it is read.
 */
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fake {
    struct orch_backend base; /* first member */
    pthread_mutex_t lock;
    struct orch_fake_params params; /* guarded by lock */
    int fail_next;                  /* guarded by lock */
    bool fail_always;               /* guarded by lock */
    struct orch_fake_counts counts; /* guarded by lock */
    int64_t n_loading;              /* guarded by lock */
};

struct fake_model {
    struct fake *f;
    char *path;
    uint64_t bytes;
    uint32_t token_us;
    int32_t n_embd;
    int32_t n_ctx_train;
};

static void sleep_us(uint32_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int fake_load(const orch_backend *be, const struct orch__load_req *req, void **out,
                     orch_error *err)
{
    struct fake *f = (struct fake *)be;
    uint64_t file_bytes = 0;
    int rc = orch__check_model_file(req->path, &file_bytes, err);

    pthread_mutex_lock(&f->lock);
    f->counts.n_loads++;
    if (++f->n_loading > f->counts.max_loading)
        f->counts.max_loading = f->n_loading;
    struct orch_fake_params p = f->params;
    bool fail = f->fail_always || f->fail_next > 0;
    if (f->fail_next > 0)
        f->fail_next--;
    pthread_mutex_unlock(&f->lock);

    if (rc == ORCH_OK) {
        /* the latency elapses whether or not the load then fails */
        for (uint32_t ms = 0; ms < p.load_ms; ms++) {
            if (!req->progress(req->ctl, (float)ms / (float)p.load_ms)) {
                rc = orch__err(err, ORCH_ECANCELED, "load of '%s' cancelled", req->path);
                break;
            }
            sleep_us(1000);
        }
    }
    if (rc == ORCH_OK && !req->progress(req->ctl, 1.0f))
        rc = orch__err(err, ORCH_ECANCELED, "load of '%s' cancelled", req->path);
    if (rc == ORCH_OK && fail)
        rc = orch__err(err, ORCH_ELOAD, "fake backend: injected failure loading '%s'", req->path);

    struct fake_model *fm = NULL;
    if (rc == ORCH_OK) {
        fm = calloc(1, sizeof *fm);
        if (fm)
            fm->path = orch__strdup(req->path);
        if (!fm || !fm->path) {
            if (fm)
                free(fm);
            fm = NULL;
            rc =
                orch__err(err, ORCH_ENOMEM, "fake backend: out of memory loading '%s'", req->path);
        }
    }
    pthread_mutex_lock(&f->lock);
    f->n_loading--;
    if (rc == ORCH_OK) {
        f->counts.n_live++;
        if (f->counts.n_live > f->counts.max_live)
            f->counts.max_live = f->counts.n_live;
    } else {
        f->counts.n_failures++;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc != ORCH_OK)
        return rc;
    fm->f = f;
    fm->bytes = p.size_bytes ? p.size_bytes : file_bytes;
    fm->token_us = p.token_us;
    fm->n_embd = p.n_embd > 0 ? p.n_embd : 16;
    fm->n_ctx_train = p.n_ctx_train > 0 ? p.n_ctx_train : ORCH_N_CTX_DEFAULT;
    *out = fm;
    return ORCH_OK;
}

static void fake_free_model(const orch_backend *be, void *model)
{
    struct fake *f = (struct fake *)be;
    struct fake_model *fm = model;
    if (!fm)
        return;
    pthread_mutex_lock(&f->lock);
    f->counts.n_frees++;
    f->counts.n_live--;
    pthread_mutex_unlock(&f->lock);
    free(fm->path);
    free(fm);
}

static uint64_t fake_size(void *model)
{
    return ((struct fake_model *)model)->bytes;
}

static void fake_info(void *model, struct orch_model_info *out)
{
    struct fake_model *fm = model;
    snprintf(out->arch, sizeof out->arch, "fake");
    snprintf(out->desc, sizeof out->desc, "fake model, %llu bytes", (unsigned long long)fm->bytes);
    out->n_params = fm->bytes / 2;
    out->bytes = fm->bytes;
    out->n_ctx_train = fm->n_ctx_train;
    out->n_embd = fm->n_embd;
    out->n_layer = 1;
    out->n_head = 1;
    out->n_vocab = 256;
    out->has_chat_template = false;
}

/* Words are the fake's tokens. */
static int32_t count_words(const char *s)
{
    int32_t n = 0;
    bool in = false;
    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

static int fake_generate(void *model, struct orch__gen_req *req, orch_error *err)
{
    struct fake_model *fm = model;
    req->n_prompt = count_words(req->prompt) + 1; /* + BOS */
    if (req->n_prompt >= req->n_ctx)
        return orch__err(err, ORCH_ECTX,
                         "prompt is %d tokens; the context holds %d (at least one must be left "
                         "to generate)",
                         req->n_prompt, req->n_ctx);
    int64_t t0 = orch__now_ns();
    req->prompt_ms = 0;
    int32_t pos = req->n_prompt;
    for (int32_t i = 0;; i++) {
        if (pos >= req->n_ctx) {
            req->ctx_full = true;
            break;
        }
        if (fm->token_us)
            sleep_us(fm->token_us);
        char piece[32];
        int n = snprintf(piece, sizeof piece, "%stok%d", i ? " " : "", i);
        req->n_generated++;
        pos++;
        if (!req->emit(req->sink, piece, (size_t)n))
            break;
    }
    req->gen_ms = orch__ms_since(t0);
    return ORCH_OK;
}

static int fake_embed(void *model, struct orch__embed_req *req, orch_error *err)
{
    struct fake_model *fm = model;
    float *out = malloc(req->n_texts * (size_t)fm->n_embd * sizeof *out);
    if (!out)
        return orch__err(err, ORCH_ENOMEM, "fake backend: out of memory embedding");
    for (size_t t = 0; t < req->n_texts; t++) {
        /* a "token" per byte, as far as counting goes */
        req->n_tokens += (int64_t)strlen(req->texts[t]);
        /* FNV-1a of the text seeds an xorshift stream */
        uint64_t h = 1469598103934665603ull;
        for (const unsigned char *s = (const unsigned char *)req->texts[t]; *s; s++)
            h = (h ^ *s) * 1099511628211ull;
        for (int32_t i = 0; i < fm->n_embd; i++) {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            out[t * (size_t)fm->n_embd + (size_t)i] =
                (float)((double)(h >> 11) / 9007199254740992.0 - 0.5);
        }
    }
    req->out = out;
    req->n_embd = fm->n_embd;
    return ORCH_OK;
}

static int fake_estimate(const orch_backend *be, const char *path, int32_t n_ctx, int32_t n_seq,
                         uint64_t *weights, uint64_t *context, orch_error *err)
{
    (void)n_ctx;
    (void)n_seq;
    struct fake *f = (struct fake *)be;
    uint64_t file_bytes;
    int rc = orch__check_model_file(path, &file_bytes, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&f->lock);
    uint64_t size = f->params.size_bytes;
    pthread_mutex_unlock(&f->lock);
    *weights = size ? size : file_bytes;
    *context = 0;
    return ORCH_OK;
}

static const struct orch_backend_ops fake_ops = {
    .name = "fake",
    .load = fake_load,
    .free = fake_free_model,
    .size = fake_size,
    .info = fake_info,
    .generate = fake_generate,
    .embed = fake_embed,
    .estimate = fake_estimate,
};

struct orch_fake_params orch_fake_default_params(void)
{
    struct orch_fake_params p = {0};
    p.n_embd = 16;
    p.n_ctx_train = ORCH_N_CTX_DEFAULT;
    return p;
}

orch_backend *orch_fake_new(const struct orch_fake_params *params)
{
    struct fake *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->base.ops = &fake_ops;
    f->params = params ? *params : orch_fake_default_params();
    pthread_mutex_init(&f->lock, NULL);
    return &f->base;
}

void orch_fake_free(orch_backend *be)
{
    if (!be)
        return;
    struct fake *f = (struct fake *)be;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

#define FAKE_SET(be, stmt)                                                                        \
    do {                                                                                          \
        if (!(be) || (be)->ops != &fake_ops)                                                      \
            return;                                                                               \
        struct fake *f = (struct fake *)(be);                                                     \
        pthread_mutex_lock(&f->lock);                                                             \
        stmt;                                                                                     \
        pthread_mutex_unlock(&f->lock);                                                           \
    } while (0)

void orch_fake_fail_next(orch_backend *be, int n)
{
    FAKE_SET(be, f->fail_next = n > 0 ? n : 0);
}

void orch_fake_fail_always(orch_backend *be, bool on)
{
    FAKE_SET(be, f->fail_always = on);
}

void orch_fake_set_load_ms(orch_backend *be, uint32_t ms)
{
    FAKE_SET(be, f->params.load_ms = ms);
}

void orch_fake_set_size(orch_backend *be, uint64_t bytes)
{
    FAKE_SET(be, f->params.size_bytes = bytes);
}

struct orch_fake_counts orch_fake_counts(const orch_backend *be)
{
    struct orch_fake_counts c = {0};
    if (!be || be->ops != &fake_ops)
        return c;
    struct fake *f = (struct fake *)be;
    pthread_mutex_lock(&f->lock);
    c = f->counts;
    pthread_mutex_unlock(&f->lock);
    return c;
}
