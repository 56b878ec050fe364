/*
 * llama_int.h — what the llama.cpp backend's files share: the loaded
 * model; lm.c below (setup, log capture, decodes under the CPU budget,
 * contexts, tokens, samplers); engine.c (continuous batching) on it; and
 * backend.c (the ops) on both. Only this folder includes llama.h.
 */
#ifndef ORCH_LLAMA_INT_H
#define ORCH_LLAMA_INT_H

#include "../backend.h"
#include "../cpu.h"

#include <llama.h>

#define EMBED_SEQ_MAX 64
/* Tokens packed into one embedding decode. Attention in a batch costs
 * tokens x KV cells (llama.cpp pads the cells to 256), whichever sequence
 * they belong to, so packing past 256 tokens only adds work; up to it, the
 * weights are read once for many texts. */
#define EMBED_PACK_TOKENS 256

/* A context kept idle for the next request that runs alone (backend.h). */
struct idle_ctx {
    struct llama_context *ctx; /* NULL = none */
    uint32_t n_ctx;
    uint32_t n_batch;
    bool embedding;
};

struct engine;

/* A model's chat templates (chat.c), made on first use. */
#define CHAT_OVERRIDES 4
struct lm_chat {
    pthread_mutex_t lock;            /* guards making them */
    struct orch__chat_tmpls *tmpls;  /* the model's own; NULL until a chat */
    struct {
        char *src;
        struct orch__chat_tmpls *t;
    } ovr[CHAT_OVERRIDES];           /* roles' overrides, by text */
    int n_ovr;
};

struct lmodel {
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct orch_model_info info;
    enum llama_pooling_type pooling; /* for embedding contexts */
    /* the model's settings, from the load request (n_ctx_seq resolved) */
    int32_t n_ctx_seq, n_threads, n_batch, n_parallel;
    int32_t stream_latency_ms;        /* orch_model_params.stream_latency_ms */
    bool on_gpu;                      /* layers offloaded to a GPU: its decodes wait on
                                         it, so their CPU share says nothing (cpu.c's fit) */
    pthread_mutex_t pool_lock;
    struct idle_ctx idle;             /* guarded by pool_lock */
    int n_alone;                      /* guarded by pool_lock: requests running alone */
    struct engine *engine;            /* guarded by pool_lock; made on first use */
    struct orch__cpu_user cpu;        /* its share of the CPU budget (cpu.c) */
    struct lm_chat chat;
};

/* vet.c: a file loaded, tokenized and decoded in a child process first */
struct orch__vet_opts {
    const char *role;   /* for the log */
    uint64_t mem_limit; /* bytes the child may map beyond what it inherits; 0 = no limit */
    int timeout_s;      /* 0 = 120 s ($ORCH_VET_TIMEOUT overrides) */
    bool use_cache;     /* read and keep verdicts (vetcache.c) */
};
/* ORCH_OK when the file passed (now or by a kept verdict); ORCH_EFORMAT
 * naming the file and the cause (signal, llama.cpp's last line, deadline)
 * when it killed the child or failed in it; ORCH_EIO when no child could be
 * started. Threads: any; forks, waits up to the deadline. */
int orch__lm_vet(const char *path, const struct orch__vet_opts *opts, orch_error *err);

/* chat.c: the chat ops (backend.h) */
struct orch__chat_tmpls;
int orch__lm_chat_apply(void *model, const struct orch__chat_req *req,
                        struct orch__chat_applied *out, orch_error *err);
/* Frees a model's templates (its chat.lock is the caller's to destroy). */
void orch__lm_chat_free(struct lmodel *lm);
/* The ops that need no model (constrain, the parsers), also the worker
 * backend's (which parses replies in the daemon). */
int orch__lm_constrain(const orch_backend *be, const char *json_schema, const char *grammar,
                       char **out, orch_error *err);
void *orch__lm_parser_new(const orch_backend *be, const char *parser, orch_error *err);
int orch__lm_parser_feed(void *parser, const char *text, size_t len, bool partial,
                         const struct orch__chat_delta_sink *sink, orch_error *err);
int orch__lm_parser_message(void *parser, struct orch_chat_reply *out, orch_error *err);
void orch__lm_parser_free(void *parser);

/* lm.c: the layer the others build on */

/* Process-wide setup, once (llama.cpp's log, its backends, the threadpool
 * maker for the CPU budget). Every entry that reaches llama.cpp calls it. */
void orch__lm_init(void);

/* Whether llama.cpp found a GPU, and the devices it found ("none"). */
bool orch__lm_has_gpu(void);
const char *orch__lm_devices(void);

/* Where the backends were loaded from (after orch__lm_init): the folder
 * libllama was loaded from, and the folder the CPU backend came from ("" =
 * ggml's own search). Static strings; any thread. */
void orch__lm_backend_dirs(const char **libdir, const char **used);

/* DIR/native into out (size bytes) when it holds a CPU backend built for
 * this CPU's instruction set: its cpu-flags file says what the "flags"
 * (x86) or "Features" (ARM) line of /proc/cpuinfo says; "" otherwise (no
 * such file, another CPU's, no /proc). Any thread. */
void orch__lm_native_dir(const char *dir, char *out, size_t size);

/* llama.cpp's errors and warnings on this thread, from orch__lm_capture(c)
 * until orch__lm_capture(NULL): the errors lead a message (they are the
 * cause), the warnings follow. */
struct orch__lm_capture {
    char errors[512], warnings[512];
    size_t n_errors, n_warnings;
};
void orch__lm_capture(struct orch__lm_capture *c);

/* Tokenizes text into *out (malloc'd, the caller frees). ORCH_ECTX for a
 * text too long to count, ORCH_ENOMEM, ORCH_EINVAL. */
int orch__lm_tokenize(struct lmodel *lm, const char *text, bool add_special, bool parse_special,
                      llama_token **out, int32_t *n_out, orch_error *err);

/* A request's sampler: the chain for its params (penalties over n_ctx
 * when repeat_last_n is -1) and, under a constraint (backend.h), its
 * grammar, checked on the chain's pick and applied to the whole vocabulary
 * only when the pick breaks it (llama.cpp's common_sampler's way). */
#define ORCH_LM_KEEP_MAX 32
struct orch__lm_smpl {
    struct llama_sampler *chain;
    struct llama_sampler *grammar;     /* NULL: free text */
    llama_token keep[ORCH_LM_KEEP_MAX]; /* special tokens emitted as text */
    int n_keep;
};
/* ORCH_OK, ORCH_ENOMEM, or ORCH_EINVAL when the constraint's grammar does
 * not compile (llama.cpp's reason in the message). */
int orch__lm_smpl_new(struct lmodel *lm, const struct orch__gen_req *req,
                      struct orch__lm_smpl **out, orch_error *err);
/* Samples position idx (-1: the last) and accepts the token. ORCH_EDECODE
 * when the grammar allows no token. Threads: one at a time per sampler. */
int orch__lm_smpl_sample(struct lmodel *lm, struct orch__lm_smpl *s, struct llama_context *ctx,
                         int32_t idx, llama_token *tok, orch_error *err);
/* Whether tok is emitted with its special text (read-only: any thread). */
bool orch__lm_smpl_special(const struct orch__lm_smpl *s, llama_token tok);
void orch__lm_smpl_free(struct orch__lm_smpl *s);

/* A new context on lm's weights: n_seq sequences sharing n_ctx KV cells,
 * each in a stream of its own (n_ctx / n_seq cells) for generation, in one
 * unified cache for embeddings. NULL with err set (ORCH_ENOMEM, llama.cpp's
 * words quoted). */
struct llama_context *orch__lm_ctx_new(struct lmodel *lm, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t n_seq, bool embedding, int32_t n_threads,
                                       orch_error *err);

/* llama_decode of one of lm's contexts under the process's CPU budget:
 * waits its turn (fair share of CPU time between models) for n_threads CPU
 * tokens (at most the whole budget), decodes on a ggml threadpool of as
 * many threads as it took, and gives them back. */
int orch__lm_decode(struct lmodel *lm, struct llama_context *ctx, struct llama_batch batch,
                    int32_t n_threads);

/* As orch__lm_decode, for a thread that decodes step after step (an
 * engine): keeps the CPU tokens in h after the decode, and at the next one
 * keeps them only while no model that has used less CPU time waits for
 * them (cpu.c's orch__cpu_begin). orch__lm_cpu_release() gives them back;
 * call it before waiting. */
int orch__lm_decode_held(struct lmodel *lm, struct orch__cpu_hold *h, struct llama_context *ctx,
                         struct llama_batch batch, int32_t n_threads);
void orch__lm_cpu_release(struct lmodel *lm, struct orch__cpu_hold *h);

/* What the engine and the context-per-request path share (backend.c). */

/* Appends one token of sequence seq at pos to b (sized by llama_batch_init). */
void orch__lm_batch_add(struct llama_batch *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                        bool logits);

/* One generated token to the request: its text piece through req->emit,
 * counted in req->n_generated. Returns false when the sink says stop. */
bool orch__lm_emit_token(struct lmodel *lm, struct orch__gen_req *req,
                         const struct orch__lm_smpl *smpl, llama_token tok);

/* The packing rule of embedding decodes: whole texts, one sequence each,
 * at most EMBED_SEQ_MAX, while the next text (len tokens) keeps the batch
 * within EMBED_PACK_TOKENS (or n_ctx when smaller); the first always goes.
 * n_packed texts of n_tok_packed tokens are in the batch so far. */
bool orch__lm_embed_fits(int n_packed, int32_t n_tok_packed, int32_t len, uint32_t n_ctx);

/* Decodes a packed embedding batch (sequence i = the i-th text) in ctx,
 * an embedding context, under the CPU budget (tokens kept in h), and
 * copies sequence i's n_embd floats to dst[i]. ids[i] names the text in
 * errors. Returns ORCH_OK or ORCH_EDECODE. */
int orch__lm_embed_decode(struct lmodel *lm, struct orch__cpu_hold *h, struct llama_context *ctx,
                          struct llama_batch batch, int32_t n_threads, int n_seq,
                          float *const *dst, const size_t *ids, int32_t n_embd, orch_error *err);

/* engine.c — see its DESIGN comment. */

/* Runs a generation on lm's engine: toks (n_toks prompt tokens) and smpl
 * become the engine's (freed by it, whatever the result). Fills req's
 * results as the backend's generate does. Called with a lease held. */
int orch__engine_generate(struct lmodel *lm, struct orch__gen_req *req, llama_token *toks,
                          int32_t n_toks, struct orch__lm_smpl *smpl, orch_error *err);

/* Embeds n_texts tokenized texts on lm's engine, merged into batches with
 * the texts other threads submit; writes n_embd floats per text to out.
 * The arrays stay the caller's. Called with a lease held. */
int orch__engine_embed(struct lmodel *lm, llama_token *const *toks, const int32_t *n_toks,
                       size_t n_texts, uint32_t n_ctx, float *out, int32_t n_embd,
                       orch_error *err);

/* Stops the engine's thread (requests still in it end with ORCH_ECLOSED)
 * and frees it. Accepts NULL. No lease may be out. */
void orch__engine_free(struct engine *e);

#endif /* ORCH_LLAMA_INT_H */
