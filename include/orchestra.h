/*
 * orchestra.h — run several local language models side by side.
 *
 * This header is the whole public interface of liborchestra and its
 * specification. Conventions that hold for every function below:
 *
 *  - Names are orch_<noun>_<verb>. Settings come as a struct with a
 *    orch_X_default_params() function: start from the defaults, change what
 *    you need.
 *  - Functions that can fail return an int status: ORCH_OK (0) or a negative
 *    ORCH_E* code. When they also take an `orch_error *err` (always the last
 *    argument; may be NULL) it is filled with the code and a message that
 *    names the file or role and the cause. There is no shared "last error":
 *    each caller owns its buffer.
 *  - A function that fails has no effect beyond what its comment says, and a
 *    callback passed to a call that fails before starting is never run.
 *  - Destructors accept NULL.
 *  - Each declaration ends with the lines that apply: Returns, Ownership,
 *    Threads, Lifetime.
 */
#ifndef ORCHESTRA_H
#define ORCHESTRA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ORCH_VERSION "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* X-macro table: name, value, description. */
#define ORCH_ERRNO_MAP(XX)                                                     \
    XX(OK, 0, "success")                                                       \
    XX(EINVAL, -1, "invalid argument")                                         \
    XX(ENOMEM, -2, "out of memory")                                            \
    XX(ENOENT, -3, "no such file")                                             \
    XX(EACCES, -4, "permission denied")                                        \
    XX(EISDIR, -5, "is a directory")                                           \
    XX(EFORMAT, -6, "not a valid model file")                                  \
    XX(ELOAD, -7, "backend failed to load the model")                          \
    XX(ECANCELED, -8, "operation cancelled")                                   \
    XX(ESTATE, -9, "model is not in a state that allows this")                 \
    XX(ECTX, -10, "input does not fit the context")                            \
    XX(EDECODE, -11, "backend failed to evaluate")                             \
    XX(ENOTSUP, -12, "not supported by this backend or model")                 \
    XX(ENOROLE, -13, "no such role")                                           \
    XX(ECONFIG, -14, "invalid configuration")                                  \
    XX(EBUDGET, -15, "does not fit the memory budget")                         \
    XX(ETIMEDOUT, -16, "timed out")                                            \
    XX(EIO, -17, "input/output error")                                         \
    XX(ECLOSED, -18, "orchestra is closing")

typedef enum orch_errcode {
#define XX(name, val, desc) ORCH_##name = (val),
    ORCH_ERRNO_MAP(XX)
#undef XX
} orch_errcode;

#define ORCH_ERROR_MSG_MAX 512

/* Detail of a failure, filled by the function that failed. */
typedef struct orch_error {
    int code;                     /* ORCH_OK or an ORCH_E* value */
    char msg[ORCH_ERROR_MSG_MAX]; /* "role 'coder': /m/x.gguf: file cut short ..." */
} orch_error;

/* Returns: a static description of `code` ("unknown error" when not one of
 *   ours). Threads: any. */
const char *orch_strerror(int code);

/* Returns: the static name of `code` ("ORCH_EINVAL"), or "ORCH_UNKNOWN".
 * Threads: any. */
const char *orch_err_name(int code);

/* Frees memory the library allocated and handed to the caller (vectors
 * from orch_embed, arrays from orch_status, chat text, ...), for callers
 * that do not share the library's malloc (other languages' FFI). Accepts
 * NULL. Threads: any. */
void orch_free(void *p);

/* Writes `bytes` for people into buf (at most cap bytes, NUL-terminated,
 * cut when short): powers of 1024 with their names, "1.50 GiB",
 * "300.0 MiB", "12.0 KiB", "512 B". The one formatter the library, the
 * command and the daemon use. Does nothing when buf is NULL or cap 0.
 * Threads: any. */
void orch_format_bytes(uint64_t bytes, char *buf, size_t cap);

/* Returns: the library's version, "MAJOR.MINOR.PATCH" (static).
 * Threads: any. */
const char *orch_version(void);

/* Returns: the version of the llama.cpp the library runs on, as llama.cpp
 * reports it at run time, and the one it was built against when they
 * differ: "0.5.0", or "0.5.1 (built against 0.5.0)" (static).
 * Threads: any. */
const char *orch_llama_version(void);

/* Returns: the devices llama.cpp found, as "NAME (TYPE, DESCRIPTION)"
 * joined by ", ", TYPE one of cpu, gpu, igpu, accel; e.g.
 * "CUDA0 (gpu, NVIDIA H100 80GB HBM3), CPU (cpu, Intel Xeon)" (static).
 * The first call sets llama.cpp's backends up (loads its CPU variants).
 * Threads: any. */
const char *orch_llama_devices(void);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */
/*
 * One line per event: RFC 3339 UTC timestamp with milliseconds, level,
 * thread id, role, event, then key=value fields, e.g.
 *   2026-11-26T14:30:00.123Z level=info thread=4242 role=coder event=load_end
 *   path=/m/coder.gguf ms=12.4 bytes=1171200
 * or the same as one JSON object per line. llama.cpp's own log is routed
 * through here at debug level. The default sink writes to stderr; the default
 * threshold is ORCH_LOG_WARN, or what the ORCH_LOG_LEVEL environment variable
 * says (debug, info, warn, error, off), and the format is logfmt unless
 * ORCH_LOG_FORMAT=json.
 */
enum orch_log_level {
    ORCH_LOG_DEBUG = 0,
    ORCH_LOG_INFO = 1,
    ORCH_LOG_WARN = 2,
    ORCH_LOG_ERROR = 3,
    ORCH_LOG_OFF = 4,
};

enum orch_log_format {
    ORCH_LOG_LOGFMT = 0,
    ORCH_LOG_JSON = 1,
};

/* A sink receives each formatted line, without the trailing newline.
 * Threads: called from whichever thread logs, possibly several at once;
 * `line` is valid only during the call. */
typedef void (*orch_log_fn)(enum orch_log_level level, const char *line, void *user_data);

/* Sets the sink; NULL restores the stderr sink. Threads: any; lines being
 * written at the same time may still reach the old sink, so keep the old
 * user_data valid until the call returns. */
void orch_log_set_sink(orch_log_fn fn, void *user_data);

/* Sets the threshold: lines below it are not formatted at all.
 * Threads: any. */
void orch_log_set_level(enum orch_log_level level);
enum orch_log_level orch_log_get_level(void);

/* Threads: any. */
void orch_log_set_format(enum orch_log_format format);

/* One field of an event line: a string (str not NULL) or a number. */
struct orch_log_field {
    const char *key;
    const char *str;  /* NULL: the field is `num` */
    double num;       /* printed as an integer when it is one */
};

/* Writes one event line through the sink, in the same format as the
 * library's own (time, level, thread, role, event, then the fields), for
 * programs built on the library (the daemon's access log). role may be
 * NULL; at most 32 fields are written. Threads: any. */
void orch_log_event(enum orch_log_level level, const char *role, const char *event,
                    const struct orch_log_field *fields, size_t n_fields);

/* Returns: the level named by `s` ("debug".."off"), or -1. Threads: any. */
int orch_log_level_from_string(const char *s);

/* ------------------------------------------------------------------------ */
/* Backends                                                                  */
/* ------------------------------------------------------------------------ */
/*
 * A backend turns a model file into something that can generate and embed.
 * Two are built in: llama.cpp (the default) and a fake for tests whose load
 * latency, size and failures are set by the test.
 */
typedef struct orch_backend orch_backend;

/* Returns: the llama.cpp backend (a static object; never free it).
 * Threads: any. */
const orch_backend *orch_backend_llama(void);

/* Returns: the backend's name ("llama.cpp", "fake"). Threads: any. */
const char *orch_backend_name(const orch_backend *backend);

/* The worker backend: every model file it loads runs in a worker process
 * of its own (the llama.cpp backend there), so that a file that kills
 * llama.cpp kills only the requests on it. Roles sharing a file share its
 * worker; the CPU budget is shared with the workers; requests stream
 * through a socket each. A worker that dies ends its requests with
 * ORCH_EDECODE (at load: ORCH_EFORMAT) naming the role, the file and the
 * cause (the signal, llama.cpp's last line; "hung" when a decode runs past
 * $ORCH_WORKER_DECODE_TIMEOUT seconds, default 300), and the next request
 * starts a new one; a file whose workers died 3 times is refused
 * (ORCH_EFORMAT) until it changes (device, inode, size, mtime).
 * exe: the program to start as `exe __worker ...`, which must call
 * orch_worker_main (the orchestra CLI does); copied; NULL = this program.
 * Returns: a new backend, or NULL when out of memory. Free it with
 * orch_worker_backend_free after every orchestra and model using it is
 * closed. Threads: any. */
orch_backend *orch_worker_backend_new(const char *exe);
void orch_worker_backend_free(orch_backend *backend);

/* The worker process's side: a program started by the worker backend
 * (argv[1] is "__worker") calls this and exits with what it returns.
 * Serves one model file until its daemon lets it go; does not return
 * then (it _exits 0). Returns: 2 when not started as a worker, 1 when
 * its daemon is gone before it started. */
int orch_worker_main(int argc, char **argv);

/* The fake backend. Each instance has its own settings and counters.
 * A fake "model" is any readable regular file; its size in bytes is the
 * configured size, or the file's size when that is 0. It generates the words
 * "tok0 tok1 ..." and embeds text into a deterministic unit vector. */
struct orch_fake_params {
    uint32_t load_ms;        /* time a load takes; default 0 */
    uint64_t size_bytes;     /* bytes per loaded model; 0 (default) = file size */
    uint32_t token_us;       /* time per generated token; default 0 */
    int32_t n_embd;          /* embedding dimension; default 16 */
    int32_t n_ctx_train;     /* reported trained context; default ORCH_N_CTX_DEFAULT */
};

struct orch_fake_params orch_fake_default_params(void);

/* Returns: a new fake backend, or NULL when out of memory.
 * Ownership: the caller frees it with orch_fake_free() after every model
 *   that uses it has been freed. Threads: any. */
orch_backend *orch_fake_new(const struct orch_fake_params *params);
void orch_fake_free(orch_backend *fake);

/* Makes the next `n` loads fail with ORCH_ELOAD (n <= 0: none). */
void orch_fake_fail_next(orch_backend *fake, int n);
/* Makes every load from now on fail (true) or not (false). */
void orch_fake_fail_always(orch_backend *fake, bool on);
/* Changes the load latency / model size for later loads. */
void orch_fake_set_load_ms(orch_backend *fake, uint32_t ms);
void orch_fake_set_size(orch_backend *fake, uint64_t bytes);

struct orch_fake_counts {
    int64_t n_loads;    /* backend loads started */
    int64_t n_failures; /* loads that failed (injected or cancelled) */
    int64_t n_frees;    /* models freed */
    int64_t n_live;     /* models loaded and not yet freed */
    int64_t max_live;   /* most models ever live at once */
    int64_t max_loading; /* most loads ever in flight at once */
};
/* Returns: a snapshot of the counters. Threads: any (all the fake's
 * functions are thread-safe). */
struct orch_fake_counts orch_fake_counts(const orch_backend *fake);

/* ------------------------------------------------------------------------ */
/* Managed models                                                            */
/* ------------------------------------------------------------------------ */
/*
 * An orch_model is one model file under management: loaded at most once
 * however many threads ask at the same time, lent out through leases, and
 * never freed while a lease is out.
 *
 *   UNLOADED --load--> LOADING --ok--> READY --unload--> DRAINING --last
 *      ^                  |                                release--> UNLOADED
 *      |                  +--error/cancel--> FAILED --load--> LOADING ...
 */
typedef struct orch_model orch_model;

enum orch_model_state {
    ORCH_STATE_UNLOADED = 0,
    ORCH_STATE_LOADING = 1,
    ORCH_STATE_READY = 2,
    ORCH_STATE_DRAINING = 3, /* unload asked; freed when the last lease returns */
    ORCH_STATE_FAILED = 4,   /* last load failed; the next load tries again */
};

/* Returns: "unloaded", "loading", "ready", "draining", "failed". */
const char *orch_state_name(enum orch_model_state state);

/* Load progress, 0.0 .. 1.0. Return false to cancel the load.
 * Threads: called on the loading thread. */
typedef bool (*orch_progress_fn)(const char *role, float progress, void *user_data);

#define ORCH_N_CTX_TRAIN (-1)       /* n_ctx: the model's trained context */
#define ORCH_N_CTX_MAX (1 << 22)    /* larger n_ctx values are refused */
/* The context a model gets when nothing sets one, and the trained context
 * of a file whose header names none. The trained context is capped at
 * ORCH_N_CTX_MAX. */
#define ORCH_N_CTX_DEFAULT 2048
/* Embeddings run in contexts of at most this many tokens (the model's
 * context when smaller): a longer text is ORCH_ECTX. */
#define ORCH_EMBED_N_CTX_MAX 2048
#define ORCH_N_PARALLEL_MAX 64      /* larger n_parallel values are refused */

struct orch_model_params {
    const char *path;      /* GGUF file; required. Copied. */
    const char *role;      /* name used in logs and errors; default "model". Copied. */
    const orch_backend *backend; /* NULL (default) = llama.cpp */
    int32_t n_ctx;         /* context size in tokens of each sequence (each
                              request) for generation; default
                              ORCH_N_CTX_DEFAULT;
                              ORCH_N_CTX_TRAIN = the model's trained size;
                              0, other negatives or > ORCH_N_CTX_MAX: ORCH_EINVAL */
    int32_t n_gpu_layers;  /* layers to offload to a GPU; default 0; -1 = all */
    int32_t n_threads;     /* CPU threads per request; default 0 = as many as
                              the CPUs this process may run on; more than
                              that is capped to it (with a warning) */
    int32_t n_batch;       /* tokens per decode (prompt chunks and the streams'
                              next tokens together); default 512 */
    int32_t n_parallel;    /* requests decoded together: the batch engine's
                              sequences, n_ctx KV cells each in one context;
                              more requests wait their turn.
                              Default 4; 0 = no engine: each request gets a
                              context of its own (no batching, no prefix
                              reuse); 1..ORCH_N_PARALLEL_MAX */
    orch_progress_fn progress; /* may be NULL */
    void *progress_user_data;
    bool embedding;        /* the model's main use is embeddings; default false.
                              Any model can embed (embedding is a context
                              setting): in an orchestra, the first role so
                              marked serves orch_embed() without a role */
    bool use_mmap;         /* map the file instead of reading it; default true */
    bool use_mlock;        /* lock the weights in RAM; default false */
    bool no_repack;        /* keep the weights as the file has them (mapped,
                              no copy) instead of repacking them into the
                              CPU's fastest layout (AMX, AVX-512 tiles) at
                              load; default false. Measured on an AMX CPU,
                              80M F16 model: loads 97 -> 37 ms, 4 batched
                              streams 263 -> 202 tokens/s: for roles that
                              switch often rather than batch heavily */
    bool vet;              /* before the load, load the file in a child process
                              with memory and time limits, tokenize probe texts
                              (every byte, '#', long words, special tokens) and
                              decode at several positions: a file that kills
                              the child is refused with ORCH_EFORMAT and the
                              cause instead of ending this process. The
                              verdict is kept by file identity (device, inode,
                              size, mtime) across runs ($ORCH_VET_CACHE, else
                              ~/.cache/orchestra/vetted), so later loads cost
                              nothing. Default false */
    int32_t stream_latency_ms; /* while the engine's sequences generate, a step
                              that also reads prompts is sized to take at most
                              this long (its prompt chunk shrinks, the rest of
                              the prompt follows in later steps), so streams
                              keep flowing beside a long prompt. 0 (default) =
                              ORCH_STREAM_LATENCY_MS; -1 = no limit (chunks of
                              n_batch); 1..60000 ms. Shorter steps read
                              prompts less efficiently on a CPU: docs/design.md
                              has the trade measured */
};

/* The default stream latency: streams wait at most about this long for a
 * token while a long prompt is read (llama-server's wait for the whole
 * prompt: 1.4-1.7 s beside a 2,000-token prompt on the test VM), for a
 * prompt read no slower than in n_batch chunks. */
#define ORCH_STREAM_LATENCY_MS 250

/* Returns: the defaults. Threads: any. */
struct orch_model_params orch_model_default_params(void);

/* Returns: the default thread count: the CPUs this process may run on.
 * Threads: any. */
int32_t orch_default_n_threads(void);

/* The CPU budget, shared by every model of the process: each llama_decode
 * takes as many of its n_threads_total CPU tokens as it runs threads (at
 * most all of them), so that models decoding at once never run more compute
 * threads than the budget between them. Waiting decodes are granted least
 * CPU time used first (fair share of CPU time between models; arrival order
 * among equals; a wide request is never passed by narrower ones), so none
 * starves. n_threads_total: 0 = the CPUs this process may run on (the
 * default), 1..1024, or -1 to leave it unchanged. A config's [defaults]
 * n_threads_total sets it at orch_open.
 * Returns: the total before the call. Threads: any; decodes waiting at the
 *   time see the new total. */
int32_t orch_cpu_budget(int32_t n_threads_total);

/* Creates a managed model in state UNLOADED; loads nothing.
 * Returns: ORCH_OK, ORCH_EINVAL (NULL path, bad n_ctx, n_threads < 0 ...),
 *   ORCH_ENOMEM. Ownership: *out is the caller's; free with orch_model_free().
 *   params and its strings are copied. Threads: any. */
int orch_model_new(const struct orch_model_params *params, orch_model **out, orch_error *err);

/* Unloads and frees. Blocks while a load is in flight or leases are out
 * (so the calling thread must hold none).
 * Ownership: the handle is invalid afterwards. Threads: not concurrently with
 * any other call on the same model. Accepts NULL. */
void orch_model_free(orch_model *m);

/* Loads the model if it is not loaded. Idempotent; single flight: when
 * several threads call at once exactly one runs the backend load, the others
 * sleep until it ends and then all return its result. After a failure the
 * state is FAILED with the error kept; the next call tries again. A call
 * that finds the model DRAINING waits for the drain to end and loads anew.
 * Returns: ORCH_OK, or the load's error (ORCH_ENOENT, ORCH_EFORMAT,
 *   ORCH_ELOAD, ORCH_ECANCELED, ...). Threads: any; may block for the whole
 *   load. */
int orch_model_load(orch_model *m, orch_error *err);

/* Takes a lease: while it is out the model stays loaded. Loads first when
 * the model is not READY (as orch_model_load). Once the model is READY this
 * takes no lock: one atomic operation on a per-thread counter. Threads are
 * dealt 64 counters round-robin, each on its own cache line, so up to 64
 * threads share no cache line; past 64, some threads share a counter (still
 * correct, then contended).
 *
 * Nested leases: a thread that already holds a lease on `m` and asks again
 * (here, or through orch_model_load/generate/chat/embed/info, which take a
 * lease of their own) never waits for an unload: even while the model is
 * DRAINING it gets another lease on the weights still loaded, and the drain
 * waits for that one too. A thread holding no lease that finds the model
 * DRAINING waits for the drain to end and loads anew. A thread counts the
 * leases it took on up to 16 models at a time; a lease returned on another
 * thread still counts on the one that took it (a later acquire there may
 * then be granted during a drain, which is safe).
 * Returns: ORCH_OK (a lease is out: call orch_model_release once), or the
 *   load's error (no lease). Threads: any; a lease may be returned on
 *   another thread than the one that took it. */
int orch_model_acquire(orch_model *m, orch_error *err);

/* Returns a lease: one atomic operation. When the model is DRAINING and
 * this was the last lease, frees the backend model on this thread.
 * Threads: any. */
void orch_model_release(orch_model *m);

/* Asks for an unload: no new lease is granted from now on (acquire and load
 * wait and load again), and the backend model is freed once no lease is
 * out — at once when none is. Waits for a load in flight to end first.
 * Returns: ORCH_OK (also when already unloaded). Threads: any; never waits
 * for leases. */
int orch_model_unload(orch_model *m);

/* Cancels a load in flight (its result is ORCH_ECANCELED), also while it
 * waits for memory in an orchestra; no effect otherwise. Threads: any. */
void orch_model_cancel_load(orch_model *m);

/* Returns: the state now (may change right after). Threads: any, no lock. */
enum orch_model_state orch_model_state(const orch_model *m);

/* Returns: the role / path given at creation, valid for the model's life. */
const char *orch_model_role(const orch_model *m);
const char *orch_model_path(const orch_model *m);

struct orch_model_stats {
    enum orch_model_state state;
    uint64_t bytes;          /* backend memory of the loaded model, 0 when none */
    double load_ms;          /* duration of the last successful load */
    int64_t n_leases;        /* leases out now */
    int64_t n_loads;         /* successful loads since creation */
    int64_t n_load_failures; /* failed or cancelled loads since creation */
    int last_error_code;     /* of the last failed load, ORCH_OK when none */
    char last_error[ORCH_ERROR_MSG_MAX];
};

/* Fills *out with a consistent snapshot. Threads: any; takes the model's
 * lock briefly (never held across a load). */
void orch_model_stats(orch_model *m, struct orch_model_stats *out);

/* What a loaded model is. */
struct orch_model_info {
    char arch[32];          /* "llama" */
    char desc[128];         /* backend's description, "llama ?B all F32" */
    uint64_t n_params;
    uint64_t bytes;         /* weights in memory */
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_vocab;
    bool has_chat_template;
};

/* Fills *out. Takes a lease for the duration (loads if needed).
 * Returns: ORCH_OK or the load's error. Threads: any. */
int orch_model_info(orch_model *m, struct orch_model_info *out, orch_error *err);

/* ------------------------------------------------------------------------ */
/* Generation                                                                */
/* ------------------------------------------------------------------------ */

enum orch_finish {
    ORCH_FINISH_NONE = 0,
    ORCH_FINISH_STOP = 1,      /* a stop string matched (not in the text) */
    ORCH_FINISH_LENGTH = 2,    /* max_tokens reached, or the context is full */
    ORCH_FINISH_EOS = 3,       /* the model ended its text */
    ORCH_FINISH_CANCELLED = 4, /* the text callback asked to stop */
    ORCH_FINISH_ERROR = 5,
};

/* Returns: "stop", "length", "eos", "cancelled", "error", "none". */
const char *orch_finish_name(enum orch_finish finish);

/* Receives each piece of text as it is generated (stop strings never reach
 * it). Return false to stop generating (finish reason CANCELLED).
 * Threads: called on the generating thread; `text` is valid during the call
 * and is not NUL-terminated. */
typedef bool (*orch_text_fn)(const char *text, size_t len, void *user_data);

#define ORCH_SEED_RANDOM 0xFFFFFFFFu

struct orch_gen_params {
    int32_t max_tokens;     /* tokens to generate, > 0; default 256 */
    float temperature;      /* >= 0; 0 = greedy; default 0.8 */
    int32_t top_k;          /* 0 = off; default 40 */
    float top_p;            /* in (0, 1]; 1 = off; default 0.95 */
    float min_p;            /* in [0, 1); 0 = off; default 0.05 */
    float repeat_penalty;   /* > 0; 1 = off; default 1.0 */
    int32_t repeat_last_n;  /* window for repeat_penalty; default 64; -1 = context */
    uint32_t seed;          /* ORCH_SEED_RANDOM (default) = random */
    const char *const *stop; /* stop strings; borrowed for the call */
    size_t n_stop;
    int32_t n_ctx;          /* context size for this request; 0 (default) = model's;
                               ORCH_N_CTX_TRAIN = the model's trained size.
                               More than the model's n_ctx, or n_threads other
                               than the model's, runs the request in a context
                               of its own beside the batch engine (not batched;
                               an orchestra charges that context to its budget
                               before it is made, as it charges a load) */
    int32_t n_threads;      /* 0 (default) = model's */
    orch_text_fn on_text;   /* may be NULL */
    void *user_data;
    bool no_cache;          /* read the whole prompt even when a sequence's
                               cells hold its beginning (prefix reuse reads a
                               prompt in other batch shapes than a fresh
                               evaluation, so logits may differ in the last
                               bits); default false */
    const int32_t *cancel;  /* NULL (default), or a flag read (atomically)
                               before the request starts and before each
                               token: nonzero ends it as a callback returning
                               false would (finish CANCELLED). For callers
                               that cannot run a callback on the generating
                               thread (other languages' signal handlers); set
                               it with one aligned 32-bit store from any thread */
    float presence_penalty;  /* in [-2, 2]: subtracted from the logit of every
                                token already in the window; default 0 */
    float frequency_penalty; /* in [-2, 2]: subtracted once per occurrence in
                                the window (repeat_last_n); default 0 */
    const char *grammar;     /* NULL, or GBNF the text must follow (llama.cpp's
                                grammar sampler, per request); borrowed */
    const char *json_schema; /* NULL, or a JSON schema the text must follow
                                (not with grammar); borrowed. A grammar or
                                schema that does not compile is ORCH_EINVAL */
    const int32_t *context;  /* NULL (default), or tokens that come before the
                                prompt: an earlier result's context (Ollama's
                                /api/generate "context"); the prompt is then
                                tokenized after them without a BOS. Borrowed.
                                A token outside the vocabulary is ORCH_EINVAL */
    size_t n_context;
    bool return_context;     /* fill orch_gen_result.context; default false */
    const char *suffix;      /* NULL (default), or the text after the gap:
                                fill-in-the-middle, the prompt being the text
                                before it, as llama-server's /infill builds it
                                ([BOS] FIM_PRE prompt FIM_SUF suffix FIM_MID).
                                A model without those tokens, or a suffix with
                                a context, is ORCH_EINVAL. Borrowed */
};

/* Returns: the defaults. Threads: any. */
struct orch_gen_params orch_gen_default_params(void);

struct orch_gen_result {
    char *text;             /* generated text, NUL-terminated, valid UTF-8 (bytes
                               the model emits that are not become U+FFFD);
                               owned by the result */
    size_t len;
    int32_t n_prompt;       /* prompt tokens */
    int32_t n_generated;    /* tokens generated */
    int32_t n_cached;       /* prompt tokens not evaluated again: an earlier
                               request on the same sequence left them in its
                               cells (prefix reuse); included in n_prompt */
    enum orch_finish finish;
    double load_wait_ms;    /* time spent waiting for the model to be ready */
    double prompt_ms;       /* prompt evaluation */
    double gen_ms;          /* generation after the prompt */
    int32_t *context;       /* with return_context: the tokens of the context,
                               the prompt and the reply (every token generated,
                               a stop string's too), to continue from; else
                               NULL. Owned by the result */
    size_t n_context;
};

/* Frees the result's text (and context) and zeroes it. Accepts NULL. */
void orch_gen_result_clear(struct orch_gen_result *res);

/* Completes `prompt` (raw text; BOS added when the model wants one).
 * Any number of threads may generate on one model at once: each request is
 * a sequence in the model's batch engine (continuous batching: one
 * llama_decode per step carries the next token of every running request
 * and chunks of the prompts being read; requests join and leave between
 * steps; beyond n_parallel they wait in arrival order). A request whose
 * prompt begins with tokens an idle sequence holds reuses those cells
 * (see n_cached, no_cache). The callback runs on the calling thread.
 * Takes a lease for the duration (loads if needed).
 * Greedy (temperature 0) output equals llama.cpp's own greedy decoding, and
 * is the same alone or beside other requests on the test model. On other
 * models the batch a token is decoded in (its shape, the other sequences'
 * tokens) may change the logits in the last bits, as in llama.cpp's own
 * server, so a near tie between two tokens can break differently.
 * Returns: ORCH_OK (res filled; finish says why it ended), ORCH_EINVAL (bad
 *   parameter, empty prompt, NUL or invalid UTF-8 in the prompt), ORCH_ECTX
 *   (prompt longer than the context), ORCH_EDECODE, or a load error.
 *   On error res->text is NULL and finish is ERROR.
 * Ownership: res->text is the caller's: orch_gen_result_clear().
 * Threads: any. */
int orch_model_generate(orch_model *m, const char *prompt, const struct orch_gen_params *params,
                        struct orch_gen_result *res, orch_error *err);

/* ------------------------------------------------------------------------ */
/* Chat                                                                      */
/* ------------------------------------------------------------------------ */

/* A tool call an assistant made (in a message of the history). */
struct orch_tool_call {
    const char *id;        /* the call's id; may be NULL */
    const char *name;      /* the function's name */
    const char *arguments; /* its arguments: JSON text of an object */
};

struct orch_chat_message {
    const char *role;    /* "system", "user", "assistant" or "tool" */
    const char *content; /* UTF-8 text; may be NULL for an assistant
                            message that only calls tools */
    /* optional (zero = none); all borrowed for the call */
    const struct orch_tool_call *tool_calls; /* assistant: the calls it made */
    size_t n_tool_calls;
    const char *tool_call_id; /* tool: the id of the call this answers */
    const char *name;         /* tool: the function that answered */
    const char *reasoning;    /* assistant: its reasoning (templates that
                                 show past reasoning render it) */
};

enum orch_tool_choice {
    ORCH_TOOLS_AUTO = 0,  /* the model may call tools or answer */
    ORCH_TOOLS_NONE,      /* it answers (the tools are still shown) */
    ORCH_TOOLS_REQUIRED,  /* it calls at least one: enforced by a grammar */
    ORCH_TOOLS_FUNCTION,  /* it calls tool_name: enforced by a grammar */
};

enum orch_reasoning {
    ORCH_REASONING_DEFAULT = 0, /* the role's `reasoning` key (orch_chat_ext), else SPLIT */
    ORCH_REASONING_SPLIT,       /* a thinking model's reasoning goes to
                                   reply.reasoning, not the content */
    ORCH_REASONING_INLINE,      /* left in the content as the model wrote it */
    ORCH_REASONING_OFF,         /* the template is asked not to think
                                   (enable_thinking false), where it can */
};

/* One change to the reply while it is generated: text to append to the
 * content or the reasoning ("" when none), and for tool_index >= 0 a piece
 * of that tool call (its id and name come first, then arguments in pieces).
 * All valid during the callback only. */
struct orch_chat_delta {
    const char *content;
    const char *reasoning;
    int32_t tool_index;
    const char *tool_id;
    const char *tool_name;
    const char *tool_arguments;
};
typedef void (*orch_chat_delta_fn)(const struct orch_chat_delta *delta, void *user_data);

/* What a chat request asks beyond sampling (orch_chat_default_params()). */
struct orch_chat_params {
    const char *tools;        /* JSON array of tools in OpenAI's shape
                                 ([{"type": "function", "function": {"name",
                                 "description", "parameters"}}]); NULL = none */
    enum orch_tool_choice tool_choice;
    const char *tool_name;    /* ORCH_TOOLS_FUNCTION: the function */
    bool parallel_tool_calls; /* the model may call several at once */
    const char *json_schema;  /* the reply is JSON valid against this schema
                                 (text; "{}" = any JSON value); NULL = free */
    const char *grammar;      /* the reply follows this GBNF grammar; NULL =
                                 free; not with json_schema or tools */
    enum orch_reasoning reasoning;
    const char *template_kwargs; /* JSON object of extra template variables;
                                    NULL = none */
    orch_chat_delta_fn on_delta; /* may be NULL; called on the generating
                                    call's thread as the reply grows */
    void *user_data;
    bool prompt_without_template; /* a model without a template given one
                                     user message: its text as it is (Ollama's
                                     default template), not a transcript */
};

/* Returns: no tools, no constraint, reasoning split. Threads: any. */
struct orch_chat_params orch_chat_default_params(void);

/* A reply, parsed in the model's own format (llama.cpp's chat layer). */
struct orch_chat_reply {
    char *content;              /* the answer ("" when only tools were called) */
    char *reasoning;            /* the thinking, split out ("" when none) */
    struct orch_tool_call *tool_calls; /* with id, name and arguments (JSON
                                          text) each malloc'd */
    size_t n_tool_calls;
};

struct orch_chat_result {
    struct orch_gen_result gen; /* gen.text: the reply as generated */
    struct orch_chat_reply reply;
};

/* Frees everything in the result and zeroes it. Accepts NULL. */
void orch_chat_result_clear(struct orch_chat_result *res);

/* Renders `msgs` with the model's own chat template: the Jinja template in
 * its GGUF, by llama.cpp's own template engine (common/jinja), ending with
 * the assistant's turn when add_assistant. A model without a template gets
 * a plain transcript: "System: ...\n", "User: ...\n", "Assistant: ...\n"
 * lines, then "Assistant:" when add_assistant (llama.cpp's ChatML when a
 * request carries tools, as llama-server does).
 * Returns: ORCH_OK, ORCH_EINVAL (no message, unknown role, bad UTF-8, a
 *   template that fails to render: its error is in the message), load
 *   errors. Ownership: *out is the caller's, free() it. Threads: any. */
int orch_model_chat_format(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                           bool add_assistant, char **out, orch_error *err);

/* orch_model_chat_format with the chat params' tools (and the template
 * override, or NULL): the prompt orch_model_chat_ext would generate from,
 * as llama-server's /apply-template gives it. Returns, Ownership, Threads:
 * as orch_model_chat_format; ORCH_EINVAL names a bad tool or template. */
int orch_model_chat_render(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                           const struct orch_chat_params *chat, const char *template_src,
                           bool add_assistant, char **out, orch_error *err);

/* orch_model_chat_format(add_assistant = true), then orch_model_generate().
 * Special tokens in the rendered template are honoured. Returns, Ownership,
 * Threads: as orch_model_generate. */
int orch_model_chat(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                    const struct orch_gen_params *params, struct orch_gen_result *res,
                    orch_error *err);

/* A chat with tools, structured output and reasoning: the request rendered
 * by the model's template with the tools shown, the reply constrained by
 * a grammar where the chat params ask (a required tool call, a JSON schema,
 * a GBNF grammar; inside the batch engine, per request), and parsed into
 * content, reasoning and tool calls (res->reply; on_delta as it grows).
 * chat NULL = defaults (then this is orch_model_chat with a parsed reply).
 * template_src: a chat template's text that replaces the model's, or NULL.
 * Returns: as orch_model_generate, and ORCH_EINVAL naming the tool, schema,
 *   grammar or template that is bad. Ownership: res is the caller's:
 *   orch_chat_result_clear(). Threads: any. */
int orch_model_chat_ext(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                        const struct orch_chat_params *chat, const char *template_src,
                        const struct orch_gen_params *params, struct orch_chat_result *res,
                        orch_error *err);

/* ------------------------------------------------------------------------ */
/* Embeddings                                                                */
/* ------------------------------------------------------------------------ */

/* See orch_model_embed(): how far apart two embeddings of one text may be. */
#define ORCH_EMBED_MIN_COSINE 0.9999

struct orch_embed_params {
    bool normalize;     /* L2-normalise each vector; default true */
    int32_t n_threads;  /* 0 (default) = model's */
    int64_t *n_tokens;  /* where to store how many tokens the texts made, all
                           together; NULL (default) = nowhere */
    bool truncate;      /* a text longer than the embedding context keeps its
                           first tokens (Ollama's and llama-cpp-python's way);
                           default false: such a text is ORCH_ECTX */
    int32_t n_ctx;      /* the embedding context in tokens: 0 (default) = the
                           model's (orch_embed: the role's n_ctx, so a fallback
                           role with n_ctx = 512 embeds in 512), at most the
                           model's and ORCH_EMBED_N_CTX_MAX; negative:
                           ORCH_EINVAL */
};

struct orch_embed_params orch_embed_default_params(void);

/* Embeds n_texts texts with the model's pooling (mean where it has none).
 * Any loaded model can embed; the texts are packed into as few batches as
 * the context allows, one sequence per text. The same text gives the same
 * vector alone or in a batch up to rounding: llama.cpp sums in an order
 * that depends on the batch's shape, the CPU variant it picked and the GPU,
 * so the normalised vectors of one text embedded in different batches have
 * a cosine similarity of at least ORCH_EMBED_MIN_COSINE (measured: above
 * 0.9999998, components within 3e-4, on every x86-64 CPU variant of the
 * pinned llama.cpp). Texts that several threads embed at once on one model
 * share batches (the model's engine packs them in arrival order). The same
 * call on the same machine, with no other thread embedding on the model
 * at the time, gives the same bits.
 * Returns: ORCH_OK, ORCH_EINVAL (n_texts 0, NULL or invalid UTF-8 text),
 *   ORCH_ECTX (a text longer than the context), ORCH_EDECODE, load errors.
 * Ownership: *out (n_texts * *n_embd floats, row-major) is the caller's;
 *   free() it. Threads: any. */
int orch_model_embed(orch_model *m, const char *const *texts, size_t n_texts,
                     const struct orch_embed_params *params, float **out, int32_t *n_embd,
                     orch_error *err);

/* ------------------------------------------------------------------------ */
/* Model files                                                               */
/* ------------------------------------------------------------------------ */

/* What a GGUF file's header says, read without loading the model. */
struct orch_file_info {
    uint32_t gguf_version;
    uint64_t file_bytes;
    uint64_t tensor_bytes;  /* sum of the tensors' data sizes */
    uint64_t n_tensors;
    uint64_t n_kv;
    uint64_t n_params;      /* elements over all tensors */
    char arch[32];
    char name[128];         /* general.name, "" when absent */
    char file_type[32];     /* from the tensors' dominant type, "F32", "F16", ... */
    int64_t n_ctx_train;    /* -1 when absent */
    int64_t n_embd;
    int64_t n_layer;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t n_vocab;
    bool has_chat_template;
};

/* Reads and validates the header of `path`. Every count, length and type is
 * checked against the file before it is used: a truncated file, absurd
 * counts, or a key of an unexpected type are errors, never a crash.
 * Returns: ORCH_OK, ORCH_ENOENT, ORCH_EACCES, ORCH_EISDIR, ORCH_EFORMAT,
 *   ORCH_EIO, ORCH_ENOMEM. Threads: any. */
int orch_file_info(const char *path, struct orch_file_info *out, orch_error *err);

/* The chat template a GGUF carries (tokenizer.chat_template), read from its
 * header by the pre-checking reader, nothing loaded: *out is the text
 * (NULL when the file has none). Returns: ORCH_OK or as orch_file_info.
 * Ownership: *out is the caller's, free() it. Threads: any. */
int orch_file_chat_template(const char *path, char **out, orch_error *err);

/* Estimated memory a model needs when loaded with contexts of n_ctx tokens:
 * tensor bytes + KV cache (f16) + compute buffers, from the header alone.
 * Returns: ORCH_OK or as orch_file_info. Threads: any. */
int orch_file_estimate(const char *path, int32_t n_ctx, uint64_t *bytes, orch_error *err);

struct orch_synth_params {
    uint64_t n_params;  /* target parameter count, e.g. 100e6; >= 100000 */
    uint32_t seed;      /* weights are a function of the seed; default 1 */
    bool f16;           /* store weights as F16 (default true) or F32 */
    bool q4_0;          /* store the matrices as Q4_0 (the CPU backend repacks
                           them at load on x86 with AVX2 and on ARM), the rest
                           as f16 says; default false */
    int32_t n_ctx_train; /* default ORCH_N_CTX_DEFAULT */
    const char *chat_template; /* stored as tokenizer.chat_template; NULL
                                  (default) = none. Borrowed for the call. */
    bool fim;           /* the vocabulary's last three tokens are fill-in-the-
                           middle controls (<|fim_prefix|>, <|fim_suffix|>,
                           <|fim_middle|>, named by tokenizer.ggml.fim_*_token_id);
                           default false */
};

struct orch_synth_params orch_synth_default_params(void);

/* Writes a valid Llama-architecture GGUF with random weights (deterministic
 * from the seed) of about n_params parameters, with a byte-level vocabulary,
 * loadable by llama.cpp. Written to `path`.tmp and renamed into place; an
 * existing `path` must be a regular file (not a directory, device, FIFO or
 * symlink), checked before anything is written.
 * Returns: ORCH_OK, ORCH_EINVAL (also: `path` is not a regular file),
 *   ORCH_EISDIR, ORCH_EIO (names the file and errno).
 * Threads: any. */
int orch_synth_model(const char *path, const struct orch_synth_params *params, orch_error *err);

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */
/*
 * An INI file: a [defaults] section (memory_budget, load_timeout,
 * n_threads_total — the process's CPU budget, see orch_cpu_budget() — and
 * a default for every role key) and one section per role, named after it:
 *
 *   [defaults]
 *   memory_budget = 8G          ; bytes (K/M/G/T suffixes) or "75%" of RAM; 0 = none
 *   [reasoning]
 *   path = /models/big.gguf
 *   temperature = 0.7
 *   [coder]
 *   fallback = reasoning        ; no model of its own: use reasoning's
 *
 * Role keys: path, n_ctx (per sequence), n_ctx_max (the most context a
 * request may ask for: ORCH_ECTX past it; default 0, no limit but the memory
 * budget, which charges a request's own larger context), n_parallel (requests decoded
 * together; default 4; 0 = a context per request), repack (default true;
 * false keeps the weights mapped from the file: faster loads, slower
 * batches), vet (default false, true in orchestra serve: see
 * orch_model_params.vet), n_gpu_layers, n_threads,
 * embedding, fallback, pin,
 * alias (repeatable: another name the role answers to, such as the model
 * name a client sends; unique across roles),
 * idle_ttl (seconds; default 300; 0 = unload as soon as the last lease
 * returns; negative = never), temperature, top_p, top_k, min_p,
 * repeat_penalty, max_tokens, stop (repeatable), reasoning (split, inline
 * or off: a thinking model's reasoning for chats that do not say),
 * chat_template (a Jinja
 * template file that replaces the model's own for the role's chats; read
 * when the config is opened, at most 1 MiB of UTF-8).
 * Environment variables override the file: ORCH_<ROLE>_<KEY> for a role
 * defined in the file, ORCH_<KEY> for [defaults] (ORCH_REASONING_PATH,
 * ORCH_MEMORY_BUDGET, ...); role names upper-cased, '-' written '_'. A
 * variable ORCH_<X>_<KEY> with a role key for an X that is no role, or
 * ORCH_<ROLE>_<Y> for a Y that is no key, is an error as the same line in
 * the file would be; other ORCH_ variables (ORCH_LOG_LEVEL, ...) are left
 * alone. One rule for relative model paths, wherever they are written: they
 * are relative to the config file's folder (to the working directory for a
 * config parsed from a string or built in code).
 * Role names: letters, digits, '_' and '-', at most 49 bytes. Lines: at most
 * 198 bytes.
 * Errors name the file and line (or the variable) and the key and say what
 * was expected; an unknown key suggests the nearest valid one; a role with
 * neither path nor fallback, a fallback to a missing role and a fallback
 * cycle are errors here, not at first use. Validation takes n log n in the
 * roles, however long their fallback chains.
 */
typedef struct orch_config orch_config;

/* Reads `path` (a regular file; anything else is refused before it is
 * opened), then the environment. Returns: ORCH_OK, ORCH_ECONFIG (with
 *   file:line and key in the message), ORCH_ENOENT, ORCH_EACCES, ORCH_ENOMEM.
 * Ownership: *out is the caller's: orch_config_free(). Threads: any. */
int orch_config_load(const char *path, orch_config **out, orch_error *err);

/* The same from a string; `name` stands for the file in messages. No
 * environment overrides are applied when `use_env` is false. */
int orch_config_parse(const char *text, const char *name, bool use_env, orch_config **out,
                      orch_error *err);

/* Sets the [defaults] value of `key` unless [defaults] sets it itself: a
 * program's own default (orchestra serve vets every file: "vet", "true"),
 * which the file can still overrule. Errors as orch_config_set(). Threads:
 * not concurrently with other calls on the same config. */
int orch_config_set_fallback(orch_config *cfg, const char *key, const char *value,
                             orch_error *err);

/* An empty config, to build in code with orch_config_set(). */
int orch_config_new(orch_config **out, orch_error *err);

/* Sets `key` of `section` ("defaults" or a role) as the file would; a role
 * section is created on first use. Checked as the file is. Threads: not
 * concurrently with other calls on the same config. */
int orch_config_set(orch_config *cfg, const char *section, const char *key, const char *value,
                    orch_error *err);

/* Checks the whole config (roles need a path or a fallback; fallbacks exist
 * and have no cycle). orch_config_load/parse call it; orch_open too. */
int orch_config_validate(const orch_config *cfg, orch_error *err);

void orch_config_free(orch_config *cfg);

/* Returns: the number of roles, and the name of role i (valid for the
 * config's life), in file order. */
size_t orch_config_n_roles(const orch_config *cfg);
const char *orch_config_role_name(const orch_config *cfg, size_t i);

/* Returns: the index of the role called `name` (its name or one of its
 * aliases), or (size_t)-1. Threads: any (the config is not changed). */
size_t orch_config_find_role(const orch_config *cfg, const char *name);

/* Returns: role i's aliases: how many, and alias k (valid for the config's
 * life; NULL when out of range). */
size_t orch_config_role_n_aliases(const orch_config *cfg, size_t i);
const char *orch_config_role_alias(const orch_config *cfg, size_t i, size_t k);

/* Where role i's file comes from: its path (as resolved: relative to the
 * config's folder; NULL for a role with only a fallback), its `source`
 * URL and its `sha256` (64 lowercase hex digits), NULL where unset; both
 * are the role's own, never inherited from [defaults]. The strings live as
 * long as the config. Returns: ORCH_OK, or ORCH_ENOROLE when i is out of
 * range (*out zeroed). Threads: any (the config is not changed). */
struct orch_role_source {
    const char *path;
    const char *url;
    const char *sha256;
};
int orch_config_role_source(const orch_config *cfg, size_t i, struct orch_role_source *out);

/* Returns: the memory budget in bytes (0 = none). */
uint64_t orch_config_budget(const orch_config *cfg);

/* ------------------------------------------------------------------------ */
/* The orchestra: roles, shared weights, a memory budget, idle unloading     */
/* ------------------------------------------------------------------------ */
/*
 * An orchestra serves roles from a config. A role resolves through its
 * fallbacks to a model file; roles on the same file (same device and inode)
 * share one loaded model, whatever their context size, threads or sampling.
 * Before a load it estimates what the model needs (GGUF header: tensors, KV
 * cache, compute buffers); when that does not fit the budget it unloads
 * idle, unpinned models, least recently used first. A model with a lease
 * out is never unloaded: the load waits for leases to come back, up to
 * load_timeout, then fails with a message saying what it needs and what
 * holds the memory. A model bigger than the whole budget fails at once.
 * Loads of different models run in parallel and never block leases or
 * generation on models that are ready.
 */
typedef struct orch_orchestra orch_orchestra;

/* Monotonic milliseconds; lets tests drive idle unloading. */
typedef int64_t (*orch_clock_fn)(void *user_data);

struct orch_role_backend {
    const char *role;
    const orch_backend *backend;
};

struct orch_orchestra_params {
    const orch_backend *backend;   /* for every role; NULL (default) = llama.cpp */
    const struct orch_role_backend *role_backends; /* per-role exceptions; copied */
    size_t n_role_backends;
    orch_clock_fn clock;           /* NULL (default) = CLOCK_MONOTONIC */
    void *clock_user_data;
    bool no_reaper;                /* no idle-unload thread: call orch_tick() */
    orch_progress_fn progress;     /* load progress of any role; may be NULL */
    void *progress_user_data;
};

struct orch_orchestra_params orch_orchestra_default_params(void);

/* Opens an orchestra over `cfg` (validated first; copied, so cfg may be
 * freed afterwards). Loads nothing.
 * Returns: ORCH_OK, ORCH_ECONFIG, ORCH_ENOMEM. Ownership: *out is the
 * caller's: orch_close(). Threads: any. */
int orch_open(const orch_config *cfg, const struct orch_orchestra_params *params,
              orch_orchestra **out, orch_error *err);

/* Stops idle unloading, unloads everything, waits for every lease to come
 * back and for the calls in flight on other threads to end, and frees
 * everything. A call already running when close begins finishes on the
 * lease it holds (or fails with ORCH_ECLOSED where it would need a load);
 * a call that begins after close has begun fails with ORCH_ECLOSED. Calls
 * after orch_close() has returned are invalid: `o` is gone. Must not be
 * called by a thread that holds a lease from `o` (it would wait forever).
 * Fork: after fork() the child must not use the parent's orchestras or
 * models (their threads and locks did not come along); orch_close() in the
 * child returns at once and frees nothing, and the child may open its own.
 * Threads: any one thread, once. */
void orch_close(orch_orchestra *o);

/* Applies a new config to an open orchestra (the daemon's SIGHUP): its roles
 * replace the old ones. A model whose file (same device and inode) and GPU
 * placement (n_gpu_layers) some new role still uses stays loaded, whatever
 * else changed (sampling, contexts, pins, idle times, names); a role whose
 * file's placement changed gets the file loaded again with the new one; a
 * model no role uses any more is unloaded once its leases return; two roles
 * asking one file for two placements are ORCH_ECONFIG naming both; the memory budget and load
 * timeout change too. Calls already running finish on the roles they
 * started with; calls that start later see the new ones. Returns after the
 * calls that may still see the old roles have left.
 * Returns: ORCH_OK, or ORCH_ECONFIG / ORCH_ENOMEM / ORCH_ECLOSED with the
 *   old config still in force. Ownership: cfg is copied (free it after).
 * Threads: any; reconfigures are serialised; not after orch_close() began. */
int orch_reconfigure(orch_orchestra *o, const orch_config *cfg, orch_error *err);

/* Leases the model behind `role` (through its fallbacks), loading it when
 * needed under the budget. Once the model is ready this takes no lock.
 * Nested leases behave as with orch_model_acquire().
 * Returns: ORCH_OK (*out is leased: orch_role_release(o, *out)),
 *   ORCH_ENOROLE, ORCH_EBUDGET, ORCH_ETIMEDOUT, ORCH_ECANCELED (the load was
 *   cancelled, also while it waited for memory), ORCH_ECLOSED, load errors.
 * Threads: any; blocks while its model loads or waits for memory. */
int orch_role_acquire(orch_orchestra *o, const char *role, orch_model **out, orch_error *err);
void orch_role_release(orch_orchestra *o, orch_model *m);

/* Ollama's keep_alive for the model behind `role`: ms > 0 keeps it loaded
 * (when idle) until ms from now, instead of its idle_ttl; ms < 0 keeps it
 * loaded until it is unloaded otherwise (as does an ms so large that now
 * plus ms would overflow); ms == 0 unloads it now (once its
 * leases return). The budget may still evict it, and the setting ends when
 * the model is unloaded. Returns: ORCH_OK, ORCH_ENOROLE, ORCH_ECLOSED.
 * Threads: any. */
int orch_role_keep_alive(orch_orchestra *o, const char *role, int64_t ms, orch_error *err);

#define ORCH_ROLE_NAME_MAX 64 /* bytes of a role's name, with its NUL */

/* What a request needs to know of the role a name designates, found once. */
struct orch_role_ref {
    char name[ORCH_ROLE_NAME_MAX]; /* the role's own name (an alias resolved) */
    struct orch_gen_params gen;    /* its generation defaults, as
                                      orch_role_gen_params() gives them */
    bool embedding;                /* marked 'embedding = true' */
};

/* Resolves `name` (a role's name or one of its aliases) once: its canonical
 * name and its defaults into *out, for a caller that then names the role by
 * out->name in every call of the request. Stop strings point into the
 * orchestra and stay valid until orch_close().
 * Returns: ORCH_OK, ORCH_ENOROLE (the message lists the roles), ORCH_EINVAL
 *   (NULL o or out), ORCH_ECLOSED once orch_close() has begun.
 * Threads: any. */
int orch_role_lookup(orch_orchestra *o, const char *name, struct orch_role_ref *out,
                     orch_error *err);

/* Copies into out[cap] the name of the role that `name` (a role's name or
 * one of its aliases) designates (orch_role_lookup()'s name).
 * Returns: ORCH_OK, ORCH_ENOROLE, ORCH_EINVAL, ORCH_ECLOSED. Threads: any. */
int orch_role_canonical(orch_orchestra *o, const char *name, char *out, size_t cap,
                        orch_error *err);

/* The role's generation defaults (from its config section; orch_role_lookup()'s
 * gen). Stop strings point into the orchestra and stay valid until
 * orch_close() (also across orch_reconfigure()).
 * Returns: ORCH_OK, ORCH_ENOROLE, ORCH_EINVAL, ORCH_ECLOSED. Threads: any. */
int orch_role_gen_params(orch_orchestra *o, const char *role, struct orch_gen_params *out,
                         orch_error *err);

/* Generate / chat / embed by role. params NULL = the role's defaults; to
 * override some, start from orch_role_gen_params(). The role's n_ctx and
 * n_threads apply unless params set them. orch_embed with role NULL uses
 * the first role marked `embedding = true` (ORCH_ENOROLE when none is).
 * Returns, Ownership: as the orch_model_ functions. Threads: any. */
int orch_generate(orch_orchestra *o, const char *role, const char *prompt,
                  const struct orch_gen_params *params, struct orch_gen_result *res,
                  orch_error *err);
int orch_chat(orch_orchestra *o, const char *role, const struct orch_chat_message *msgs,
              size_t n_msgs, const struct orch_gen_params *params, struct orch_gen_result *res,
              orch_error *err);
int orch_embed(orch_orchestra *o, const char *role, const char *const *texts, size_t n_texts,
               const struct orch_embed_params *params, float **out, int32_t *n_embd,
               orch_error *err);
/* The chat template a role's chats are rendered with: its chat_template
 * file's text, else its model file's own (orch_file_chat_template); *out
 * NULL when neither has one. Nothing is loaded. Returns: ORCH_OK,
 * ORCH_ENOROLE, ORCH_ECLOSED, file errors. Ownership: *out is the
 * caller's, free() it. Threads: any. */
int orch_role_chat_template(orch_orchestra *o, const char *role, char **out, orch_error *err);

/* orch_model_chat_ext by role: the role's chat_template (its file's text,
 * read when the config was opened) replaces the model's. Returns,
 * Ownership: as orch_model_chat_ext. Threads: any. */
int orch_chat_ext(orch_orchestra *o, const char *role, const struct orch_chat_message *msgs,
                  size_t n_msgs, const struct orch_chat_params *chat,
                  const struct orch_gen_params *params, struct orch_chat_result *res,
                  orch_error *err);

/* Loads the models behind `roles`, in parallel. Returns: ORCH_OK, or the
 * first error (the other roles still load). Threads: any. */
int orch_preload(orch_orchestra *o, const char *const *roles, size_t n_roles, orch_error *err);

/* Unloads the model behind `role` (after its leases return). Other roles on
 * the same model lose it too. Returns: ORCH_OK or ORCH_ENOROLE. */
int orch_unload(orch_orchestra *o, const char *role, orch_error *err);

/* Unloads every model (each after its leases return). */
void orch_unload_all(orch_orchestra *o);

/* Runs idle unloading now (what the reaper thread does periodically).
 * Returns: the number of models it unloaded. */
int orch_tick(orch_orchestra *o);

struct orch_role_status {
    char role[64];
    char aliases[256];       /* its aliases, comma-separated ("" = none; whole names only) */
    char model_role[64];     /* the role whose model serves it (after fallbacks) */
    char path[512];
    enum orch_model_state state;
    uint64_t bytes;          /* loaded bytes, else the estimate */
    bool bytes_estimated;
    int64_t n_leases;
    int32_t n_parallel;      /* requests its model decodes together (0 = a context each) */
    bool pinned;
    int64_t idle_ms;         /* since the last lease returned; -1 = never used */
    int64_t unload_in_ms;    /* time left before idle unload; -1 = none pending */
    char last_error[ORCH_ERROR_MSG_MAX]; /* of the last load; or, for a model
                                            not loaded, why its file cannot be
                                            estimated (missing, not GGUF) */
    int32_t n_faults;        /* deaths of the worker processes that ran its file
                                (orch_worker_backend_new; 0 elsewhere) */
    bool refused;            /* its file is refused after them, until it changes */
    char fault[384];         /* the last death's cause, "" = none */
    int32_t n_ctx;           /* tokens of context a request gets by default: the
                                role's n_ctx, or its file's trained context
                                (capped at ORCH_N_CTX_MAX; ORCH_N_CTX_DEFAULT
                                when the file cannot be read) */
    int32_t n_gpu_layers;    /* layers its model offloads to a GPU (-1 = all) */
};

struct orch_budget_status {
    uint64_t budget;         /* 0 = none */
    uint64_t used;           /* charged to loaded and loading models */
    int64_t n_evictions;
};

/* Fills a malloc'd array of one entry per role, in config order.
 * Returns: ORCH_OK, ORCH_ENOMEM. Ownership: free(*out). Threads: any. */
int orch_status(orch_orchestra *o, struct orch_role_status **out, size_t *n,
                struct orch_budget_status *budget, orch_error *err);

#ifdef __cplusplus
}
#endif

#endif /* ORCHESTRA_H */
