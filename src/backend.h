/*
 * backend.h — the backend factory: what a managed model asks of a backend.
 *
 * A backend object starts with its ops pointer. The model layer (model.c)
 * owns state, leases and single flight; the generation layer (generate.c)
 * owns parameter checks, stop strings, token budget and streaming. A backend
 * only loads, frees, describes, and runs tokens.
 */
#ifndef ORCH_BACKEND_H
#define ORCH_BACKEND_H

#include "internal.h"

/* What a backend load gets. */
struct orch__load_req {
    const char *path;
    const char *role;
    int32_t n_gpu_layers;
    /* the model's settings (orch_model_params, n_threads resolved) */
    int32_t n_ctx, n_threads, n_batch, n_parallel;
    bool use_mmap;
    bool use_mlock;
    bool no_repack;
    /* Report progress in [0,1]; returns false when the load must stop
     * (cancelled). May be called from the loading thread only. */
    bool (*progress)(void *ctl, float fraction);
    void *ctl;
};

/* One generation, as the backend sees it. The generic layer has checked the
 * parameters; the backend tokenizes, evaluates and samples, calling emit()
 * once per generated token (piece may be empty) until emit returns false,
 * the model ends its text, or the context is full. */
struct orch__gen_req {
    const char *prompt;
    bool parse_special;  /* prompt came from a chat template */
    const struct orch_gen_params *params;
    int32_t n_ctx, n_threads, n_batch;
    bool (*emit)(void *sink, const char *piece, size_t len);
    void *sink;
    /* filled by the backend */
    int32_t n_prompt;
    int32_t n_generated;
    int32_t n_cached;    /* prompt tokens reused from an earlier request's cells */
    bool eos;
    bool ctx_full;
    double prompt_ms, gen_ms;
};

struct orch__embed_req {
    const char *const *texts;
    size_t n_texts;
    int32_t n_ctx, n_threads;
    float *out;          /* n_texts * n_embd, allocated by the backend with malloc */
    int32_t n_embd;
    int64_t n_tokens;    /* the tokens the texts made, all together */
};

struct orch_backend_ops {
    const char *name;
    /* required: load the file; *out is the backend model. */
    int (*load)(const orch_backend *be, const struct orch__load_req *req, void **out,
                orch_error *err);
    /* required: free a backend model (no lease is out). */
    void (*free)(const orch_backend *be, void *model);
    /* required: bytes the loaded model holds. */
    uint64_t (*size)(void *model);
    /* required: describe the loaded model. */
    void (*info)(void *model, struct orch_model_info *out);
    /* may be NULL (generation unsupported) */
    int (*generate)(void *model, struct orch__gen_req *req, orch_error *err);
    /* may be NULL: the model has no chat template (plain transcript) */
    int (*chat_format)(void *model, const struct orch_chat_message *msgs, size_t n_msgs,
                       bool add_assistant, char **out, orch_error *err);
    /* may be NULL (embedding unsupported); raw (unnormalised) pooled vectors */
    int (*embed)(void *model, struct orch__embed_req *req, orch_error *err);
    /* may be NULL (the file's size, no context): memory a load of `path`
     * will take, split into weights and the context buffers for n_seq
     * sequences of n_ctx tokens */
    int (*estimate)(const orch_backend *be, const char *path, int32_t n_ctx, int32_t n_seq,
                    uint64_t *weights, uint64_t *context, orch_error *err);
};

struct orch_backend {
    const struct orch_backend_ops *ops; /* first member */
};

/* Model layer access for generate.c: the backend model behind a lease. */
void *orch__model_backend_obj(orch_model *m);
const orch_backend *orch__model_backend(const orch_model *m);
const struct orch_model_params *orch__model_params(const orch_model *m);

/* Hooks the orchestra sets on its models (before any use). All are called
 * with no lock of the model held. */
struct orch__model_hooks {
    /* before a backend load, on the loading thread; an error fails the load
     * without running it (nothing was admitted) */
    int (*admit)(void *ud, orch_model *m, orch_error *err);
    /* after a successful load */
    void (*loaded)(void *ud, orch_model *m, uint64_t bytes);
    /* after an admitted load failed (no lock held), or as the backend model
     * is freed (with the model's lock held: take no model lock in it) */
    void (*gone)(void *ud, orch_model *m);
};
void orch__model_set_hooks(orch_model *m, const struct orch__model_hooks *hooks, void *ud);
void *orch__model_hooks_ud(const orch_model *m);

/* orch_model_load / orch_model_acquire without the "role 'x': " prefix on
 * errors: for callers that add their own (the orchestra names the role the
 * request asked for). */
int orch__model_load(orch_model *m, orch_error *err);
int orch__model_acquire(orch_model *m, orch_error *err);

/* generate.c: the requests on a model the calling thread holds a lease on.
 * Same arguments, results and errors as the public orch_model_ functions,
 * but errors name no role: the public entry point adds it once. */
int orch__generate_leased(orch_model *m, const char *prompt, bool parse_special,
                          const struct orch_gen_params *params, struct orch_gen_result *res,
                          orch_error *err);
int orch__chat_format_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                             bool add_assistant, char **out, orch_error *err);
int orch__chat_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                      const struct orch_gen_params *params, struct orch_gen_result *res,
                      orch_error *err);
int orch__embed_leased(orch_model *m, const char *const *texts, size_t n_texts,
                       const struct orch_embed_params *params, float **out, int32_t *n_embd,
                       orch_error *err);

/* n, or the CPUs this process may use when n is more (warns once). */
int32_t orch__cap_threads(int32_t n, const char *role);

/* True while a load in flight has been asked to stop (orch_model_cancel_load
 * or the progress callback); the admit hook polls it while it waits. */
bool orch__model_load_cancelled(const orch_model *m);

/* Leases out now (relaxed read; a hint). */
int64_t orch__model_n_leases(const orch_model *m);

/* Waits until the model is neither LOADING nor DRAINING. */
void orch__model_wait_unloaded(orch_model *m);

/* Unload with a reason for the log ("explicit", "idle", "budget", "close"). */
int orch__model_unload_reason(orch_model *m, const char *reason);

/* Unloads only if READY with no lease out, atomically with respect to
 * acquire (no lease can slip in). Returns true when it unloaded. */
bool orch__model_unload_if_idle(orch_model *m, const char *reason);

/* Estimate through the model's backend. */
int orch__backend_estimate(const orch_backend *be, const char *path, int32_t n_ctx,
                           int32_t n_seq, uint64_t *weights, uint64_t *context, orch_error *err);

#endif /* ORCH_BACKEND_H */
