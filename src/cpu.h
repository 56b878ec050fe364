/*
 * cpu.h — the CPUs of the process: how many it may use, the thread cap,
 * and the CPU budget that every model's decodes share (cpu.c). Used by the
 * model layer, the orchestra and the llama backend alike; it calls none of
 * them (a backend hands it a threadpool maker, it never calls up).
 */
#ifndef ORCH_CPU_H
#define ORCH_CPU_H

#include "internal.h"

/* n, or the CPUs this process may use when n is more (logs a warning once
 * per process, naming role). Threads: any. */
int32_t orch__cap_threads(int32_t n, const char *role);

/* The threads a decode of n_tokens tokens that wants n should run now: n,
 * or fewer while decodes of its kind (short: streams' steps; long:
 * prompts) have shown that the process does not get its CPUs (another
 * process has some); now and then one more, to see whether they came back.
 * Threads: any. */
int orch__cpu_fit(int n, int n_tokens);

/* After a decode of n threads and n_tokens tokens: its wall time and the
 * process's CPU time over it (CLOCK_PROCESS_CPUTIME_ID), which say whether
 * its threads ran together. Threads: any. */
void orch__cpu_observe(int n, int n_tokens, int64_t wall_ns, int64_t cpu_ns);

/* One user of the CPU budget (a loaded model): the CPU time it has used,
 * its virtual time for the fair share. Zero-initialised is ready. */
struct orch__cpu_user {
    uint64_t vt; /* guarded by the budget's lock: thread-nanoseconds used */
};

struct orch__tpool;

/* CPU tokens (and their threadpool) a thread keeps from one decode to the
 * next. Zero-initialised holds nothing. Owned by one thread at a time. */
struct orch__cpu_hold {
    int n;                     /* tokens held; 0 = none */
    struct orch__tpool *pool;  /* may be NULL: no threadpool for n */
};

/* The backend's threadpool maker: a pool of n threads that sleep between
 * graphs, or NULL (the backend then makes threads per graph). Set once, at
 * the backend's process-wide setup; pools are kept and reused, never freed.
 * Threads: any; make may be called from any decoding thread. */
void orch__cpu_set_tpool_maker(void *(*make)(int n_threads));

/* Before a decode of u's that wants n_threads threads: makes h hold CPU
 * tokens for it. Tokens h already holds are kept unless a user that has
 * used less CPU time waits for them, or their number no longer matches
 * min(n_threads, budget); else it waits its turn (least virtual time first,
 * arrival order among equals; a wide request is never passed). Returns the
 * tokens held (1..budget): the threads the decode must run.
 * Threads: any; blocks while the budget is in use. */
int orch__cpu_begin(struct orch__cpu_user *u, struct orch__cpu_hold *h, int n_threads);

/* The threadpool of h->n threads to run the decode on, or NULL. */
void *orch__cpu_pool(const struct orch__cpu_hold *h);

/* After the decode: charges ns (at least a microsecond, so that a holder's
 * time always grows and it yields in the end) of h->n threads to u. */
void orch__cpu_end(struct orch__cpu_user *u, const struct orch__cpu_hold *h, int64_t ns);

/* Gives back what h holds (nothing held: no-op). Call before waiting for
 * anything but the CPUs. Threads: the holder's. */
void orch__cpu_release(struct orch__cpu_user *u, struct orch__cpu_hold *h);

/* The budget shared between processes: the fd of its shared memory (a
 * memfd, close-on-exec; -1 when the budget is this process's alone), for
 * a worker process to attach. Threads: any. */
int orch__cpu_shared_fd(void);

/* In a worker process, before any other call here: use the budget in fd
 * (orch__cpu_shared_fd of the parent) instead of one of its own.
 * Returns: 0, or -1 (errno) when fd cannot be mapped. Threads: any. */
int orch__cpu_attach(int fd);

/* The process pid died: its tokens come back and its waiters go.
 * Threads: any; call once pid is reaped (so no thread of it runs). */
void orch__cpu_reclaim(int32_t pid);

#ifdef ORCH_TESTING
/* Forgets what decodes showed; now: the clock orch__cpu_fit and
 * orch__cpu_observe read (NULL: the monotonic clock). */
void orch__cpu_fit_reset(int64_t (*now)(void));
/* The thread cap decodes of n_tokens' kind showed (0 = none). */
int orch__cpu_fit_cap(int n_tokens);

/* The most CPU tokens of the budget out at once since the last call (which
 * this one resets): what the CPU budget tests check. */
int32_t orch__cpu_peak(void);
#endif

#endif /* ORCH_CPU_H */
