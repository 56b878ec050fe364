/*
 * cpu.c — the CPUs of the process: the count it may use, the thread cap,
 * and the CPU budget every model's decodes share, with the threadpools
 * handed out with it.
 *
 * DESIGN
 * Why a budget: every llama_decode runs n ggml threads that spin waiting for
 * each other at every barrier. Four requests of two threads each on two
 * cores ran 12 times slower than one at a time. So each decode takes as many
 * CPU tokens as it runs threads, out of n_threads_total (default: the CPUs
 * this process may use), and waits for them when they are out.
 *
 * Who goes next when tokens come back: the waiting decode whose user (a
 * loaded model) has used the least CPU time (thread-nanoseconds: its virtual
 * time), in arrival order among equals; and nobody passes it, so a wide
 * decode is never starved by narrow ones. A user that was idle comes back at
 * most CPU_SLACK_MS of the budget's CPU time behind the last decode let
 * through (CFS's rule: little credit for sleeping), so it neither hogs the
 * CPUs after a pause nor loses its place between two decodes. With decodes
 * of different cost (a big model and a small one) each model gets an equal
 * share of CPU time, not an equal count of decodes.
 *
 * A thread that decodes step after step (a batching engine) keeps its tokens
 * between steps (struct orch__cpu_hold) while no user that has used less
 * waits; otherwise a model between two short decodes (sampling) would lose
 * its turn to any waiter every step.
 *
 * Threadpools: without one, ggml's CPU backend makes threads for every
 * graph it computes. A pool runs one graph at a time, so pools are checked
 * out with the tokens: a decode of n threads takes an idle pool of n, or
 * the backend's maker makes one. Pools never poll: their threads sleep
 * between graphs instead of spinning on CPUs another model's decode uses.
 *
 * Processes: the budget's state is shared with the worker processes that
 * run models (worker.c; see "the budget" below), so one budget binds every
 * decode of the daemon, in whichever process.
 *
 * The CPUs the process gets (fit): the budget counts the CPUs the process
 * may use, but a neighbour can take some of them. A decode of n threads
 * whose threads are not all running spins in ggml's barriers until the
 * descheduled one comes back: 2 threads beside one busy process ran 15x
 * slower than alone. So each decode's CPU time (CLOCK_PROCESS_CPUTIME_ID:
 * spinning counts, waiting for a CPU does not) is compared with its wall
 * time: an average share (over a run of decodes) under FIT_LOW of n
 * threads' worth means the threads do not run together, and later decodes
 * run as many threads as the share is worth (at least 1, fewer than n). A
 * decode with one more thread is tried FIT_PROBE_MS later (doubling while it
 * fails, up to FIT_PROBE_MAX_MS); one that goes faster per token than the
 * capped decodes of its kind lifts the cap, so a cap that was wrong lasts
 * half a second. Each kind (streams' steps, prompts) has its own cap. A
 * share under FIT_LOW does not always mean fewer threads go faster: beside
 * the process's own clients (HTTP threads, a client on the same machine,
 * each waking per token) the share of 2 threads fell to ~0.85 while 2
 * threads still beat 1, and the cap came back 14 ms after every lift
 * (capped 97% of the time; a prompt beside 4 streams read at 1.8x
 * llama-server's time). So a lift holds the full width for FIT_HOLD_MS,
 * doubling with each cut a probe proves wrong (up to FIT_HOLD_MAX_MS), back
 * to FIT_HOLD_MS when a probe proves a cut right. Decodes shorter than
 * FIT_MIN_US say nothing (waking a pool costs a share of them). Per
 * process: each
 * worker judges its own decodes.
 *
 * Locks: the budget's (shared) lock guards its state and each user's vt;
 * held only for bookkeeping, never across a decode. g_pool_lock guards the
 * idle pools, this process's own. fork: the child has none of the pools'
 * threads; it forgets them (pthread_atfork, registered at first use). The
 * parent's tokens stay counted to the parent, whose threads give them back.
 */
#include "cpu.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define CPU_SLACK_MS 50
#define CPU_TOTAL_MAX 1024

/* ---- the CPUs the process gets ----------------------------------------------------- */

#define FIT_LOW 0.90   /* an average share under this: the threads do not run together
                          (measured on 2 cores: 0.97-0.98 alone, 0.72-0.84 beside a
                          process spinning on one core) */
#define FIT_EWMA 0.2   /* a decode's weight in the average: a run of them, not one */
#define FIT_MIN_US 1000
#define FIT_SMALL 16   /* decodes of at most this many tokens (streams' steps) are
                          compared with each other, longer ones (prompts) likewise */
#define FIT_PROBE_MS 500
#define FIT_PROBE_MAX_MS 8000
#define FIT_HOLD_MS 500       /* no cut for this long after a lift, */
#define FIT_HOLD_MAX_MS 16000 /* doubling while cuts prove wrong */

/* What decodes of one kind showed: short ones (streams' steps, at most
 * FIT_SMALL tokens) and long ones (prompts) are judged apart. A short step
 * runs a few milliseconds and stalls in its barriers when a thread is
 * preempted for a moment; a prompt's step runs hundreds and loses only
 * that moment. Beside its own HTTP clients a process's short steps may be
 * better off on fewer threads while its prompts still want them all. */
struct fit_kind {
    double share;          /* the average share of full-width decodes */
    int cap;               /* threads a decode may run; 0 = as many as it asks */
    int probe;             /* a probe of this many threads is out; 0 = none */
    double capped;         /* ns per token of capped decodes (EWMA; 0 = none) */
    int64_t probe_at_ns;   /* when the next probe may go */
    int64_t backoff_ms;
    int64_t hold_until_ns; /* no cut before this (a lift holds) */
    int64_t hold_ms;       /* the next lift's hold */
};

static struct {
    pthread_mutex_t lock;
    struct fit_kind k[2];  /* short decodes, long ones */
    int64_t (*now)(void);  /* the clock (tests set another) */
} g_fit = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .k = {{.share = 1, .backoff_ms = FIT_PROBE_MS, .hold_ms = FIT_HOLD_MS},
                 {.share = 1, .backoff_ms = FIT_PROBE_MS, .hold_ms = FIT_HOLD_MS}},
           .now = orch__now_ns};

static int fit_kind_of(int n_tokens)
{
    return n_tokens > FIT_SMALL;
}

int orch__cpu_fit(int n, int n_tokens)
{
    pthread_mutex_lock(&g_fit.lock);
    struct fit_kind *f = &g_fit.k[fit_kind_of(n_tokens)];
    int use = n;
    if (f->cap && n > f->cap) {
        use = f->cap;
        if (!f->probe && g_fit.now() >= f->probe_at_ns)
            use = f->probe = f->cap + 1;
    }
    pthread_mutex_unlock(&g_fit.lock);
    return use;
}

void orch__cpu_observe(int n, int n_tokens, int64_t wall_ns, int64_t cpu_ns)
{
    if (n < 1 || wall_ns <= 0 || n_tokens < 1)
        return;
    double share = (double)cpu_ns / ((double)wall_ns * n);
    share = share > 1 ? 1 : share;
    double per = (double)wall_ns / n_tokens;
    int kind = fit_kind_of(n_tokens);
    bool judged = wall_ns >= (int64_t)FIT_MIN_US * 1000;
    pthread_mutex_lock(&g_fit.lock);
    struct fit_kind *f = &g_fit.k[kind];
    int64_t now = g_fit.now();
    int was = f->cap;
    if (f->probe && n == f->probe) {
        /* one more thread: kept when it went faster than the capped decodes */
        f->probe = 0;
        double base = f->capped;
        if (!judged || (base > 0 ? per < 0.9 * base : share >= FIT_LOW)) {
            f->cap = 0;
            f->share = 1;
            f->capped = 0;
            f->backoff_ms = FIT_PROBE_MS;
            /* the cut was wrong: the full width holds, longer each time */
            f->hold_until_ns = now + f->hold_ms * 1000000;
            f->hold_ms = f->hold_ms * 2 < FIT_HOLD_MAX_MS ? f->hold_ms * 2 : FIT_HOLD_MAX_MS;
        } else {
            f->backoff_ms =
                f->backoff_ms * 2 < FIT_PROBE_MAX_MS ? f->backoff_ms * 2 : FIT_PROBE_MAX_MS;
            f->probe_at_ns = now + f->backoff_ms * 1000000;
            f->hold_ms = FIT_HOLD_MS; /* the cut was right */
        }
    } else if (judged && n > 1 && !f->cap && now < f->hold_until_ns) {
        /* a lift holds: full width, whatever the share */
    } else if (judged && n > 1 && (!f->cap || n == f->cap)) {
        /* full width, or capped: a run under FIT_LOW takes a thread or more away */
        if (f->cap)
            f->capped = f->capped > 0 ? f->capped + FIT_EWMA * (per - f->capped) : per;
        f->share += FIT_EWMA * (share - f->share);
        if (f->share < FIT_LOW) {
            int cap = (int)(f->share * n + 0.5);
            f->cap = cap < 1 ? 1 : cap >= n ? n - 1 : cap;
            f->share = 1; /* the next cut takes a run at the new width */
            f->capped = 0;
            f->probe_at_ns = now + f->backoff_ms * 1000000;
        }
    } else if (f->cap && n == f->cap) { /* one thread, or too short to judge */
        f->capped = f->capped > 0 ? f->capped + FIT_EWMA * (per - f->capped) : per;
    }
    int cap = f->cap;
    double avg = f->share;
    pthread_mutex_unlock(&g_fit.lock);
    if (cap != was)
        orch__log(ORCH_LOG_INFO, NULL, "threads_fit", OF_S("decodes", kind ? "long" : "short"),
                  OF_I("threads", n), OF_I("cpu_share_pct", (int64_t)(avg * 100 + 0.5)),
                  OF_I("cap", cap),
                  OF_S("why", cap ? "the decodes' threads do not run together: another "
                                    "process has CPUs"
                                  : "one more thread went faster: the CPUs are back"));
}

#ifdef ORCH_TESTING
void orch__cpu_fit_reset(int64_t (*now)(void))
{
    pthread_mutex_lock(&g_fit.lock);
    for (int i = 0; i < 2; i++)
        g_fit.k[i] = (struct fit_kind){.share = 1, .backoff_ms = FIT_PROBE_MS,
                                       .hold_ms = FIT_HOLD_MS};
    g_fit.now = now ? now : orch__now_ns;
    pthread_mutex_unlock(&g_fit.lock);
}

int orch__cpu_fit_cap(int n_tokens)
{
    pthread_mutex_lock(&g_fit.lock);
    int cap = g_fit.k[fit_kind_of(n_tokens)].cap;
    pthread_mutex_unlock(&g_fit.lock);
    return cap;
}
#endif

int32_t orch_default_n_threads(void)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0 || (online > 0 && n > online))
        n = online > 0 ? (int)online : 1;
    return n;
}

int32_t orch__cap_threads(int32_t n, const char *role)
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    int32_t cpus = orch_default_n_threads();
    if (n <= cpus)
        return n;
    if (!atomic_flag_test_and_set(&warned))
        orch__log(ORCH_LOG_WARN, role, "threads_capped", OF_I("asked", n), OF_I("using", cpus),
                  OF_S("why", "more threads than the CPUs this process may use only wait for "
                              "each other"));
    return cpus;
}

/* ---- the budget ------------------------------------------------------------------ */

/* The budget's state lives in a shared mapping (a memfd) so that worker
 * processes (worker.c) share it with the daemon: one budget for every
 * model's decodes, whichever process runs them. Its lock and condition are
 * process-shared; the lock is robust (a worker killed while holding it
 * leaves it to the next locker, which takes it as it is: every update under
 * it is a few stores). Waiters are slots, not a list through stacks. Each
 * process's tokens out are counted (procs[]), so that the tokens of a
 * process that died come back (orch__cpu_reclaim). */
#define CPU_WAITERS_MAX 256
#define CPU_PROCS_MAX 128

struct waiter {
    int32_t pid;     /* 0 = free slot */
    int32_t n;
    uint64_t vt, seq;
    bool granted;
};

struct cpu_proc {
    int32_t pid;     /* 0 = free slot */
    int32_t held;    /* tokens out to its threads */
};

struct cpu_shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int32_t total;             /* -1 = not set yet */
    int32_t free;              /* may go below 0 after a cut */
    int32_t peak;              /* most tokens out at once */
    uint64_t next_seq;         /* arrival numbers */
    uint64_t vclock;           /* the virtual time of the last decode let through */
    int32_t slot_waiters;      /* threads waiting for a free waiter slot */
    struct waiter w[CPU_WAITERS_MAX];
    struct cpu_proc procs[CPU_PROCS_MAX];
};

struct orch__tpool {
    void *tp;  /* the backend's pool */
    int n;
    struct orch__tpool *next;
};

static _Atomic(struct cpu_shared *) g_shared;
static int g_shared_fd = -1;
static pthread_mutex_t g_map_lock = PTHREAD_MUTEX_INITIALIZER; /* making g_shared */
static pthread_mutex_t g_pool_lock = PTHREAD_MUTEX_INITIALIZER; /* the two below */
static struct orch__tpool *g_idle_pools;
static void *(*g_make_pool)(int n);
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_pool_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_pool_lock);
}

static void atfork_child(void)
{
    g_idle_pools = NULL; /* the parent's copies; their threads are not here */
    pthread_mutex_unlock(&g_pool_lock);
}

static void fork_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void shared_init(struct cpu_shared *s)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&s->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->total = -1;
}

/* The budget's state: mapped from a memfd on first use (process-private
 * memory where memfd_create is refused: the budget is then this process's
 * alone). */
static struct cpu_shared *shared(void)
{
    struct cpu_shared *s = atomic_load_explicit(&g_shared, memory_order_acquire);
    if (s)
        return s;
    pthread_once(&g_fork_once, fork_init);
    pthread_mutex_lock(&g_map_lock);
    s = atomic_load_explicit(&g_shared, memory_order_relaxed);
    if (!s) {
        int fd = memfd_create("orchestra-cpu-budget", MFD_CLOEXEC);
        if (fd >= 0 && fd < 3) {
            /* stdin, stdout or stderr was closed: a write to it would
             * land in the budget's memory */
            int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            close(fd);
            fd = hi;
        }
        void *p = MAP_FAILED;
        if (fd >= 0 && ftruncate(fd, sizeof *s) == 0)
            p = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            if (fd >= 0)
                close(fd);
            fd = -1;
            p = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                abort(); /* a few KiB at startup */
        }
        s = p; /* zero-filled */
        shared_init(s);
        g_shared_fd = fd;
        atomic_store_explicit(&g_shared, s, memory_order_release);
    }
    pthread_mutex_unlock(&g_map_lock);
    return s;
}

int orch__cpu_shared_fd(void)
{
    shared();
    return g_shared_fd;
}

int orch__cpu_attach(int fd)
{
    pthread_once(&g_fork_once, fork_init);
    void *p = mmap(NULL, sizeof(struct cpu_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -1;
    pthread_mutex_lock(&g_map_lock);
    g_shared_fd = fd;
    atomic_store_explicit(&g_shared, p, memory_order_release);
    pthread_mutex_unlock(&g_map_lock);
    return 0;
}

/* Locks s; a lock left by a process that died is taken as it is. */
static void lock(struct cpu_shared *s)
{
    if (pthread_mutex_lock(&s->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&s->lock);
}

static void wait_cond(struct cpu_shared *s)
{
    if (pthread_cond_wait(&s->cond, &s->lock) == EOWNERDEAD)
        pthread_mutex_consistent(&s->lock);
}

static void init_locked(struct cpu_shared *s)
{
    if (s->total < 0) {
        s->total = orch_default_n_threads();
        s->free = s->total;
    }
}

/* This process's slot in s->procs (claimed on first use), or NULL when
 * every slot is taken (its tokens are then not counted for reclaim). */
static struct cpu_proc *proc_locked(struct cpu_shared *s, int32_t pid)
{
    struct cpu_proc *empty = NULL;
    for (int i = 0; i < CPU_PROCS_MAX; i++) {
        if (s->procs[i].pid == pid)
            return &s->procs[i];
        if (!empty && s->procs[i].pid == 0)
            empty = &s->procs[i];
    }
    if (empty)
        *empty = (struct cpu_proc){.pid = pid, .held = 0};
    return empty;
}

/* Grants waiters in turn while tokens last; true when any was granted. */
static bool grant_locked(struct cpu_shared *s)
{
    bool any = false;
    for (;;) {
        struct waiter *best = NULL;
        for (int i = 0; i < CPU_WAITERS_MAX; i++) {
            struct waiter *w = &s->w[i];
            if (w->pid && !w->granted &&
                (!best || w->vt < best->vt || (w->vt == best->vt && w->seq < best->seq)))
                best = w;
        }
        if (!best)
            break;
        if (best->n > s->total)
            best->n = s->total; /* the budget was cut while it waited */
        if (s->free < best->n)
            break;
        s->free -= best->n;
        struct cpu_proc *pr = proc_locked(s, best->pid);
        if (pr)
            pr->held += best->n;
        if (s->total - s->free > s->peak)
            s->peak = s->total - s->free;
        if (best->vt > s->vclock)
            s->vclock = best->vt;
        best->granted = true;
        any = true;
    }
    return any;
}

int32_t orch_cpu_budget(int32_t n_threads_total)
{
    struct cpu_shared *s = shared();
    lock(s);
    init_locked(s);
    int32_t before = s->total;
    if (n_threads_total >= 0) {
        int32_t n = n_threads_total ? n_threads_total : orch_default_n_threads();
        if (n > CPU_TOTAL_MAX)
            n = CPU_TOTAL_MAX;
        s->free += n - s->total; /* tokens out stay out; they come back as given */
        s->total = n;
        grant_locked(s);
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return before;
}

void orch__cpu_reclaim(int32_t pid)
{
    struct cpu_shared *s = shared();
    lock(s);
    for (int i = 0; i < CPU_PROCS_MAX; i++)
        if (s->procs[i].pid == pid) {
            s->free += s->procs[i].held;
            s->procs[i] = (struct cpu_proc){0};
        }
    for (int i = 0; i < CPU_WAITERS_MAX; i++)
        if (s->w[i].pid == pid)
            s->w[i] = (struct waiter){0};
    grant_locked(s);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

#ifdef ORCH_TESTING
int32_t orch__cpu_peak(void)
{
    struct cpu_shared *s = shared();
    lock(s);
    int32_t p = s->peak;
    s->peak = 0;
    pthread_mutex_unlock(&s->lock);
    return p;
}
#endif

/* Takes n tokens (at most all of them) for u; returns what was taken. */
static int take(struct orch__cpu_user *u, int n)
{
    struct cpu_shared *s = shared();
    int32_t pid = (int32_t)getpid();
    lock(s);
    init_locked(s);
    uint64_t slack = (uint64_t)CPU_SLACK_MS * 1000000u * (uint64_t)s->total;
    if (u->vt + slack < s->vclock)
        u->vt = s->vclock - slack;
    struct waiter *w = NULL;
    for (;;) {
        for (int i = 0; i < CPU_WAITERS_MAX && !w; i++)
            if (!s->w[i].pid)
                w = &s->w[i];
        if (w)
            break;
        s->slot_waiters++; /* every slot waits: one frees when its decode is let through */
        wait_cond(s);
        s->slot_waiters--;
    }
    *w = (struct waiter){.pid = pid, .n = n < 1 ? 1 : n, .vt = u->vt, .seq = s->next_seq++};
    if (grant_locked(s))
        pthread_cond_broadcast(&s->cond);
    while (!w->granted && w->pid == pid)
        wait_cond(s);
    int got = w->n;
    *w = (struct waiter){0};
    if (s->slot_waiters)
        pthread_cond_broadcast(&s->cond); /* a slot came free */
    pthread_mutex_unlock(&s->lock);
    return got;
}

/* ---- threadpools ------------------------------------------------------------------ */

void orch__cpu_set_tpool_maker(void *(*make)(int n_threads))
{
    pthread_once(&g_fork_once, fork_init);
    pthread_mutex_lock(&g_pool_lock);
    g_make_pool = make;
    pthread_mutex_unlock(&g_pool_lock);
}

static struct orch__tpool *pool_take(int n)
{
    pthread_mutex_lock(&g_pool_lock);
    void *(*make)(int) = g_make_pool;
    struct orch__tpool **pp = &g_idle_pools, *p = NULL;
    while (*pp && (*pp)->n != n)
        pp = &(*pp)->next;
    if (*pp) {
        p = *pp;
        *pp = p->next;
    }
    pthread_mutex_unlock(&g_pool_lock);
    if (p || !make || n < 2)
        return p;
    p = malloc(sizeof *p);
    if (p && !(p->tp = make(n))) {
        free(p);
        p = NULL;
    }
    if (p)
        p->n = n;
    return p; /* NULL: the backend makes threads for the graph, as without pools */
}

static void pool_give(struct orch__tpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&g_pool_lock);
    p->next = g_idle_pools;
    g_idle_pools = p;
    pthread_mutex_unlock(&g_pool_lock);
}

/* ---- holds ------------------------------------------------------------------------ */

void orch__cpu_release(struct orch__cpu_user *u, struct orch__cpu_hold *h)
{
    if (!h->n)
        return;
    pool_give(h->pool);
    struct cpu_shared *s = shared();
    lock(s);
    s->free += h->n;
    struct cpu_proc *pr = proc_locked(s, (int32_t)getpid());
    if (pr)
        pr->held -= h->n;
    if (grant_locked(s))
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    (void)u;
    h->n = 0;
    h->pool = NULL;
}

int orch__cpu_begin(struct orch__cpu_user *u, struct orch__cpu_hold *h, int n_threads)
{
    if (h->n) {
        /* keep the CPUs unless a user that has used less waits for them,
         * or the budget changed under us */
        struct cpu_shared *s = shared();
        lock(s);
        bool yield = h->n != (n_threads < s->total ? n_threads : s->total);
        for (int i = 0; i < CPU_WAITERS_MAX && !yield; i++)
            yield = s->w[i].pid && !s->w[i].granted && s->w[i].vt < u->vt;
        pthread_mutex_unlock(&s->lock);
        if (yield)
            orch__cpu_release(u, h);
    }
    if (!h->n) {
        h->n = take(u, n_threads);
        h->pool = pool_take(h->n);
    }
    return h->n;
}

void *orch__cpu_pool(const struct orch__cpu_hold *h)
{
    return h->pool ? h->pool->tp : NULL;
}

void orch__cpu_end(struct orch__cpu_user *u, const struct orch__cpu_hold *h, int64_t ns)
{
    struct cpu_shared *s = shared();
    lock(s);
    u->vt += (uint64_t)(ns > 1000 ? ns : 1000) * (uint64_t)h->n;
    pthread_mutex_unlock(&s->lock);
}
