/*
 * backend.h — the backend interface: struct orch_backend_ops and what its
 * calls take. Included by the backends (backend_fake.c, llama/) and by the
 * layers that call them (model.c, generate.c, orchestra.c through model.h).
 *
 * A backend object starts with its ops pointer. The model layer (model.c)
 * owns state, leases and single flight; the generation layer (generate.c)
 * owns parameter checks, stop strings, token budget and streaming. A backend
 * only loads, frees, describes, and runs tokens.
 */
#ifndef ORCH_BACKEND_H
#define ORCH_BACKEND_H

#include "internal.h"

#include <stdlib.h>

/* What a backend load gets. */
struct orch__load_req {
    const char *path;
    const char *role;
    int32_t n_gpu_layers;
    /* the model's settings (orch_model_params, n_threads resolved) */
    int32_t n_ctx, n_threads, n_batch, n_parallel;
    int32_t stream_latency_ms; /* orch_model_params.stream_latency_ms */
    bool use_mmap;
    bool use_mlock;
    bool no_repack;
    bool vet; /* load, tokenize and decode in a child process first (llama/vet.c) */
    /* Report progress in [0,1]; returns false when the load must stop
     * (cancelled). May be called from the loading thread only. */
    bool (*progress)(void *ctl, float fraction);
    void *ctl;
};

/* Where a request runs, the rule every batching backend follows and the
 * budget charges by (orchestra.c): as a sequence of the model's engine when
 * the model has one (n_parallel > 0), the request's context fits a sequence
 * (n_ctx <= n_ctx_seq) and it asks for the model's threads; otherwise alone,
 * in a context of its own. A backend keeps such a context for reuse only on
 * a model without an engine, at most one, of at most n_ctx_seq tokens, and
 * only while no other runs alone on the model: the one context the load's
 * estimate charged. Every other is freed when its request ends. */
static inline bool orch__runs_alone(int32_t n_parallel, int32_t n_ctx_seq,
                                    int32_t n_threads_model, int32_t n_ctx, int32_t n_threads)
{
    return n_parallel <= 0 || n_ctx > n_ctx_seq || n_threads != n_threads_model;
}

/* One generation, as the backend sees it. The generic layer has checked the
 * parameters; the backend tokenizes, evaluates and samples, calling emit()
 * once per generated token (piece may be empty) until emit returns false,
 * the model ends its text, or the context is full. */
struct orch__gen_req {
    const char *prompt;
    bool parse_special;  /* prompt came from a chat template */
    /* NULL, or what the sampler must follow: the constraint a chat_apply or
     * constrain op made (JSON; the backend that made it reads it). A
     * constraint the backend cannot compile is ORCH_EINVAL saying why. */
    const char *constraint;
    const struct orch_gen_params *params;
    int32_t n_ctx, n_threads, n_batch;
    bool (*emit)(void *sink, const char *piece, size_t len);
    void *sink;
    /* the sink reads nothing before the end (no stop string or text
     * callback): the backend may hand every piece over at the end, a wakeup
     * of the caller instead of one a token; it then reads params->cancel,
     * and asks gone() when given, between tokens itself */
    bool quiet;
    /* may be NULL; Threads: the backend's, between tokens: true when the
     * caller no longer wants the text (a quiet request stops as cancelled) */
    bool (*gone)(void *sink);
    /* tokens before the prompt's (it is tokenized after them without a
     * BOS); NULL = none. want_tokens: keep every token, the prompt's (with
     * the prefix) and each generated one, in tokens (orch__req_token) */
    const int32_t *prefix;
    int32_t n_prefix;
    /* NULL, or fill-in-the-middle: prompt is the text before the gap, this
     * the text after it (params->suffix) */
    const char *suffix;
    bool want_tokens;
    int32_t *tokens;     /* malloc'd; the caller frees it */
    size_t n_tokens, cap_tokens;
    bool tokens_failed;  /* out of memory keeping them */
    /* filled by the backend */
    int32_t n_prompt;
    int32_t n_generated;
    int32_t n_cached;    /* prompt tokens reused from an earlier request's cells */
    bool eos;
    bool ctx_full;
    double prompt_ms, gen_ms;
};

/* Appends t to req->tokens when the request keeps them. Threads: the
 * request's backend, one writer. */
static inline void orch__req_token(struct orch__gen_req *req, int32_t t)
{
    if (!req->want_tokens || req->tokens_failed)
        return;
    if (req->n_tokens == req->cap_tokens) {
        size_t cap = req->cap_tokens ? 2 * req->cap_tokens : 256;
        int32_t *n = realloc(req->tokens, cap * sizeof *n);
        if (!n) {
            req->tokens_failed = true;
            return;
        }
        req->tokens = n;
        req->cap_tokens = cap;
    }
    req->tokens[req->n_tokens++] = t;
}

struct orch__embed_req {
    const char *const *texts;
    size_t n_texts;
    int32_t n_ctx, n_threads;
    bool truncate;       /* a text past n_ctx tokens keeps its first n_ctx */
    float *out;          /* n_texts * n_embd, allocated by the backend with malloc */
    int32_t n_embd;
    int64_t n_tokens;    /* the tokens the texts made, all together */
};

/* A chat request, as chat_apply gets it: the messages checked, the role's
 * template override (its text, or NULL) and the chat parameters (never
 * NULL). now: seconds since the epoch the template may print (0 = now). */
struct orch__chat_req {
    const struct orch_chat_message *msgs;
    size_t n_msgs;
    bool add_assistant;
    const char *template_src;
    const struct orch_chat_params *params;
    int64_t now;
};

/* What chat_apply made, all malloc'd (orch__chat_applied_clear frees). */
struct orch__chat_applied {
    char *prompt;       /* NULL: the model has no template (the caller renders
                           a transcript); constraint still applies */
    char *constraint;   /* NULL: free text */
    char *parser;       /* NULL: the reply is plain content */
    char **stops;       /* stop strings the template's format ends a reply with */
    size_t n_stops;
};
void orch__chat_applied_clear(struct orch__chat_applied *a);

/* The chat-reply parsers a backend makes (chat_parser_new's object). */
struct orch__chat_delta_sink {
    void (*fn)(void *ud, const struct orch_chat_delta *d);
    void *ud;
};

/* The faults op (may be NULL: no faults): how often the processes that ran
 * path died (the last cause in last[cap], "" when none; *refused when the
 * file is refused for it). Threads: any. */
typedef int32_t (*orch__faults_fn)(const orch_backend *be, const char *path, char *last,
                                   size_t cap, bool *refused);

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
    /* may be NULL: no chat templates (plain transcript, no tools, no
     * constraints). Renders req with the model's template (or the
     * override): ORCH_EINVAL naming the template's error when it does not
     * render or a tool, schema or grammar is bad. */
    int (*chat_apply)(void *model, const struct orch__chat_req *req,
                      struct orch__chat_applied *out, orch_error *err);
    /* may be NULL (then chat_apply is too): a constraint for free text (no
     * template): a JSON schema's or a GBNF grammar's (either may be NULL) */
    int (*constrain)(const orch_backend *be, const char *json_schema, const char *grammar,
                     char **out, orch_error *err);
    /* NULL exactly when chat_apply is: a parser for the replies to one
     * applied request (its parser); fed the whole text so far, it calls the
     * sink with each change; message gives the parsed reply. Runs in the
     * caller's process (pure text work). Threads: one caller per parser. */
    void *(*parser_new)(const orch_backend *be, const char *parser, orch_error *err);
    int (*parser_feed)(void *parser, const char *text, size_t len, bool partial,
                       const struct orch__chat_delta_sink *sink, orch_error *err);
    int (*parser_message)(void *parser, struct orch_chat_reply *out, orch_error *err);
    void (*parser_free)(void *parser);
    /* may be NULL (embedding unsupported); raw (unnormalised) pooled vectors */
    int (*embed)(void *model, struct orch__embed_req *req, orch_error *err);
    /* may be NULL (the file's size, no context): memory a load of `path`
     * will take, split into weights and the context buffers for n_seq
     * sequences of n_ctx tokens */
    int (*estimate)(const orch_backend *be, const char *path, int32_t n_ctx, int32_t n_seq,
                    uint64_t *weights, uint64_t *context, orch_error *err);
    orch__faults_fn faults;
    /* may be NULL: the process-wide setup a first load would do (a worker
     * does it before it says it is ready). Threads: any. */
    void (*setup)(const orch_backend *be);
};

struct orch_backend {
    const struct orch_backend_ops *ops; /* first member */
};

#endif /* ORCH_BACKEND_H */
