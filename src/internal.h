/*
 * internal.h — orch__ prototypes shared inside src/. Nothing here is public.
 */
#ifndef ORCH_INTERNAL_H
#define ORCH_INTERNAL_H

#include "orchestra.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

/* ---- errors (error.c) ---------------------------------------------------- */

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
int orch__err(orch_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (used to add a role to a backend error). */
void orch__err_prefix(orch_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Maps an errno from open/stat/read to our code and fills err with
 * "<what> '<path>': <strerror>". */
int orch__err_errno(orch_error *err, int errnum, const char *what, const char *path);

/* ---- clock and small helpers (util.c) ------------------------------------- */

/* Monotonic clock. */
int64_t orch__now_ns(void);
double orch__ms_since(int64_t start_ns);
/* The monotonic time `ms` milliseconds after start_ns (saturating; ms < 0
 * counts as 0) as a timespec, for pthread_cond_timedwait on a condition
 * variable set to CLOCK_MONOTONIC. The one place timespecs are added. */
struct timespec orch__mono_deadline(int64_t start_ns, int64_t ms);

char *orch__strdup(const char *s);

/* The one context rule: `asked` when above 0; else (0 or ORCH_N_CTX_TRAIN)
 * the trained context n_ctx_train, or ORCH_N_CTX_DEFAULT when the file names
 * none (n_ctx_train <= 0); capped at ORCH_N_CTX_MAX. */
int32_t orch__n_ctx_resolve(int32_t asked, int64_t n_ctx_train);

/* Writes "a, b, c" into buf (names name_at(ctx, 0..n-1)), ending with
 * "..." when they do not all fit. The one role lister for every message. */
void orch__join_names(char *buf, size_t cap, size_t n,
                      const char *(*name_at)(const void *ctx, size_t i), const void *ctx);

/* This thread's number for per-thread counters (percpu-style slots): dealt
 * round-robin at a thread's first call, 0..4095; index with % N_SLOTS. */
unsigned orch__thread_slot(void);

/* Returns 0 when s[0..len) is valid UTF-8 with no NUL, else the byte offset
 * of the first bad byte plus one. */
size_t orch__utf8_check(const char *s, size_t len);

/* Length of the complete-UTF-8 prefix of s[0..len) (drops a trailing partial
 * sequence of at most 3 bytes). */
size_t orch__utf8_complete_len(const char *s, size_t len);

/* Growable byte buffer. */
struct orch__buf {
    char *data;
    size_t len, cap;
};
int orch__buf_append(struct orch__buf *b, const char *s, size_t n);
void orch__buf_free(struct orch__buf *b);

/* Replaces each invalid UTF-8 sequence in b with U+FFFD; a character cut
 * by the end of b is kept (it may still be arriving) unless final. Returns
 * ORCH_OK or ORCH_ENOMEM (b unchanged). */
int orch__utf8_repair(struct orch__buf *b, bool final);

/* Checks a regular, readable, non-empty file; fills err naming it. */
int orch__check_model_file(const char *path, uint64_t *size_out, orch_error *err);

/* ---- backends (backend.c) ------------------------------------------------ */

/* The backend a model uses: `asked`, or the default (llama.cpp) when NULL. */
const orch_backend *orch__backend_pick(const orch_backend *asked);
/* The backend's faults op for path (0, "" and false when it has none). */
int32_t orch__backend_faults(const orch_backend *be, const char *path, char *last, size_t cap,
                             bool *refused);

/* Memory a load of `path` will take, split into weights and the context
 * buffers of n_seq sequences of n_ctx tokens, through be's estimate (the
 * file's size and no context when the backend has none). Errors name the
 * file. */
int orch__backend_estimate(const orch_backend *be, const char *path, int32_t n_ctx,
                           int32_t n_seq, uint64_t *weights, uint64_t *context, orch_error *err);

/* ---- logging (log.c) ------------------------------------------------------ */

enum orch__ftype { ORCH__F_STR, ORCH__F_INT, ORCH__F_UINT, ORCH__F_DBL, ORCH__F_BOOL };

struct orch__field {
    const char *key;
    enum orch__ftype type;
    union {
        const char *s;
        long long i;
        unsigned long long u;
        double d;
    } v;
};

#define OF_S(k, x) ((struct orch__field){.key = (k), .type = ORCH__F_STR, .v.s = (x)})
#define OF_I(k, x) ((struct orch__field){.key = (k), .type = ORCH__F_INT, .v.i = (long long)(x)})
#define OF_U(k, x)                                                                                \
    ((struct orch__field){.key = (k), .type = ORCH__F_UINT, .v.u = (unsigned long long)(x)})
#define OF_D(k, x) ((struct orch__field){.key = (k), .type = ORCH__F_DBL, .v.d = (double)(x)})
#define OF_B(k, x) ((struct orch__field){.key = (k), .type = ORCH__F_BOOL, .v.i = (x) ? 1 : 0})

bool orch__log_enabled(enum orch_log_level level);
/* The level's name as orch_log_level_from_string reads it; the format in
 * use (a worker process logs as its daemon does). Threads: any. */
const char *orch__log_level_name(enum orch_log_level level);
enum orch_log_format orch__log_format(void);
void orch__log_emit(enum orch_log_level level, const char *role, const char *event,
                    const struct orch__field *fields, size_t n_fields);

/* orch__log(level, role, event, OF_S("path", p), OF_D("ms", ms), ...): at
 * least one field. Formats nothing when the level is filtered out. */
#define orch__log(level, role, event, ...)                                              \
    do {                                                                                \
        if (orch__log_enabled(level)) {                                                 \
            const struct orch__field f__[] = {__VA_ARGS__};                             \
            orch__log_emit((level), (role), (event), f__, sizeof f__ / sizeof f__[0]);  \
        }                                                                               \
    } while (0)

/* Free-text line (used for llama.cpp's own log). */
void orch__log_text(enum orch_log_level level, const char *source, const char *text);

/* ---- GGUF header reader (gguf.c) ------------------------------------------ */

struct orch__gguf; /* parsed header */

int orch__gguf_open(const char *path, struct orch__gguf **out, orch_error *err);
void orch__gguf_close(struct orch__gguf *g);
/* Returns true when the header has key (of any type). */
bool orch__gguf_has(const struct orch__gguf *g, const char *key);
/* Returns the string value of key, or NULL if absent or not a string. */
const char *orch__gguf_get_str(const struct orch__gguf *g, const char *key);
/* Returns true and sets *v when key holds an integer of any width. */
bool orch__gguf_get_int(const struct orch__gguf *g, const char *key, int64_t *v);
/* Returns true and sets *v when key holds a bool. */
bool orch__gguf_get_bool(const struct orch__gguf *g, const char *key, bool *v);
/* Returns true and sets *v when key holds a float (f32 or f64). */
bool orch__gguf_get_float(const struct orch__gguf *g, const char *key, double *v);
/* Returns the element count of an array key, or -1. */
int64_t orch__gguf_array_len(const struct orch__gguf *g, const char *key);
/* An integer array's values when it has at most 4096 elements (*n set),
 * else NULL. Owned by g. */
const int64_t *orch__gguf_get_ints(const struct orch__gguf *g, const char *key, uint64_t *n);
/* The name of key i (0 <= i < the key count), for scans over every key. */
const char *orch__gguf_key(const struct orch__gguf *g, uint64_t i, uint64_t *n_kv);
void orch__gguf_fill_info(const struct orch__gguf *g, struct orch_file_info *out);

/* What the reader saw in the vocabulary (tokenizer.ggml.tokens and
 * .token_type), read once while the file is mapped: n_tokens is -1 when the
 * file has no token list. Indices are -1 when nothing was found. */
struct orch__gguf_vocab {
    int64_t n_tokens;
    uint64_t bytes;       /* all token texts together */
    uint64_t max_len;     /* the longest token text */
    int64_t max_at;
    int64_t nul_at;       /* a token with a NUL byte in its text */
    int64_t dup_a, dup_b; /* two tokens with the same text (as llama.cpp reads them) */
    int64_t n_byte_type;  /* tokens typed BYTE (6) */
    int64_t bad_byte_at;  /* a BYTE-typed token not spelled <0xXX> */
    int rwkv_lone;        /* a byte that begins a token as the RWKV tokenizer unescapes it
                           * but is no token by itself (-1: none) */
};
const struct orch__gguf_vocab *orch__gguf_vocab(const struct orch__gguf *g);

/* The tensor table: name, ggml type and shape of tensor i, i < the count. */
struct orch__gguf_tensor {
    char name[64];
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[4];
};
const struct orch__gguf_tensor *orch__gguf_tensors(const struct orch__gguf *g, uint64_t *n);

/* ---- model files as the layers above see them (filecache.c) ---------------- */

/* A file's identity: a changed or replaced file is another file. */
struct orch__file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};
/* Fills id from stat(path); ORCH_ENOENT etc. naming the file. */
int orch__file_identity(const char *path, struct orch__file_id *id, orch_error *err);
/* True when a and b are the same version of the same file. */
bool orch__file_same(const struct orch__file_id *a, const struct orch__file_id *b);

/* What the layers above need from a file's header: read once per identity
 * of the file and kept (a few dozen files, process-wide), so that ps,
 * estimates and the daemon's model lists cost a stat() a role, not a
 * parse. Errors: as orch__gguf_open (a file that fails is not kept).
 * Threads: any. */
struct orch__file_summary {
    struct orch_file_info info;
    uint64_t vocab_bytes; /* orch__gguf_vocab_bytes */
};
int orch__file_summary(const char *path, struct orch__file_summary *out, orch_error *err);
/* Headers orch__file_summary has parsed so far (not found kept), for tests. */
uint64_t orch__file_summary_parses(void);

/* Weights (tensor bytes) and context memory (KV cache for n_seq sequences
 * of n_ctx tokens, n_ctx <= 0: the trained size; plus compute buffers) from
 * the header's summary. */
int orch__file_estimate(const char *path, int32_t n_ctx, int32_t n_seq, uint64_t *weights,
                        uint64_t *context, orch_error *err);

/* ---- vetting verdicts (vetcache.c) ----------------------------------------- */

/* The verdict kept for id under llama.cpp version `llama`: 1 passed, 0
 * failed (its cause in reason[cap]), -1 none (or no cache). Threads: any. */
int orch__vet_cache_get(const struct orch__file_id *id, const char *llama, char *reason,
                        size_t cap);
/* Keeps a verdict (appended; a failure to write is logged, not returned). */
void orch__vet_cache_put(const struct orch__file_id *id, const char *llama, bool ok,
                         const char *reason);

/* ---- the pre-check (precheck.c) ------------------------------------------- */

/* The pre-check before llama.cpp loads a parsed file: refuses, with
 * ORCH_EFORMAT naming the file, the key and the limit, the values llama.cpp's
 * loader (or its first graph or tokenize) would abort the process on. Reads
 * only g. Thread-safe. */
int orch__gguf_check_loadable(const struct orch__gguf *g, const char *path, orch_error *err);
/* Memory llama.cpp spends on the vocabulary of g (token tables, tokenizer
 * tries, the piece cache), estimated from the header. */
uint64_t orch__gguf_vocab_bytes(const struct orch__gguf *g);

/* ---- fault injection and pause points (test builds) ---------------------- */

/* Pause points name the places where an interleaving of threads matters;
 * a test sets orch__pause_hook to park a thread there and force the
 * interleaving instead of hoping a stress loop hits it. */
enum orch__pause_point {
    ORCH_PAUSE_RELEASE_SLOW = 1, /* release met a stopped slot, before taking from the drain */
    ORCH_PAUSE_KILL_COUNTED,     /* unload has stopped the slots, before publishing the count */
    ORCH_PAUSE_IDLE_LOOKED,      /* idle unload saw no lease, before stopping the slots */
    ORCH_PAUSE_IDLE_COUNTED,     /* idle unload stopped and counted, before free or revive */
    ORCH_PAUSE_ROLE_LEASED,      /* a request by role holds its lease, before its work */
    ORCH_PAUSE_N_POINTS
};

#ifdef ORCH_TESTING
extern int (*orch__fault_hook)(int id);
#define orch__fault(id) (orch__fault_hook ? orch__fault_hook(id) : 0)
typedef void (*orch__pause_fn)(enum orch__pause_point point, const void *obj);
extern _Atomic(orch__pause_fn) orch__pause_hook;
#define orch__pause(point, obj)                                                          \
    do {                                                                                 \
        orch__pause_fn f__ = atomic_load_explicit(&orch__pause_hook, memory_order_acquire); \
        if (f__)                                                                         \
            f__((point), (obj));                                                         \
    } while (0)
#else
#define orch__fault(id) 0
#define orch__pause(point, obj) ((void)0)
#endif

enum { ORCH_FAULT_OOM_MODEL = 1, ORCH_FAULT_OOM_RESULT = 2 };

#endif /* ORCH_INTERNAL_H */
