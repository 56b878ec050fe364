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
 * Locks: one, g_lock, guarding every g_ variable below and each user's vt;
 * held only for bookkeeping, never across a decode. fork: the child has
 * none of the pools' threads nor the threads that held or waited for
 * tokens; it forgets them (pthread_atfork, registered at first use).
 */
#include "cpu.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define CPU_SLACK_MS 50
#define CPU_TOTAL_MAX 1024

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

struct waiter {
    int n;
    uint64_t vt, seq;
    bool granted;
    struct waiter *next;
};

struct orch__tpool {
    void *tp;  /* the backend's pool */
    int n;
    struct orch__tpool *next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_total = -1;              /* -1 = not set yet */
static int g_free;                    /* may go below 0 after a cut */
static uint64_t g_next_seq;           /* arrival numbers */
static int g_peak;                    /* most tokens out at once */
static struct waiter *g_waiters;
static uint64_t g_vclock;             /* the virtual time of the last decode let through */
static struct orch__tpool *g_idle_pools;
static void *(*g_make_pool)(int n);   /* atomic enough: set once before any decode */
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_lock);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void)
{
    g_idle_pools = NULL; /* the parent's copies; their threads are not here */
    g_free = g_total;
    g_waiters = NULL;
    pthread_mutex_unlock(&g_lock);
}

static void fork_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void init_locked(void)
{
    if (g_total < 0) {
        g_total = orch_default_n_threads();
        g_free = g_total;
    }
}

/* Grants waiters in turn while tokens last; true when any was granted. */
static bool grant_locked(void)
{
    bool any = false;
    for (;;) {
        struct waiter **best = NULL;
        for (struct waiter **pp = &g_waiters; *pp; pp = &(*pp)->next)
            if (!best || (*pp)->vt < (*best)->vt ||
                ((*pp)->vt == (*best)->vt && (*pp)->seq < (*best)->seq))
                best = pp;
        if (!best)
            break;
        struct waiter *w = *best;
        if (w->n > g_total)
            w->n = g_total; /* the budget was cut while it waited */
        if (g_free < w->n)
            break;
        *best = w->next;
        g_free -= w->n;
        if (g_total - g_free > g_peak)
            g_peak = g_total - g_free;
        if (w->vt > g_vclock)
            g_vclock = w->vt;
        w->granted = true;
        any = true;
    }
    return any;
}

int32_t orch_cpu_budget(int32_t n_threads_total)
{
    pthread_once(&g_fork_once, fork_init);
    pthread_mutex_lock(&g_lock);
    init_locked();
    int32_t before = g_total;
    if (n_threads_total >= 0) {
        int32_t n = n_threads_total ? n_threads_total : orch_default_n_threads();
        if (n > CPU_TOTAL_MAX)
            n = CPU_TOTAL_MAX;
        g_free += n - g_total; /* tokens out stay out; they come back as given */
        g_total = n;
        grant_locked();
        pthread_cond_broadcast(&g_cond);
    }
    pthread_mutex_unlock(&g_lock);
    return before;
}

#ifdef ORCH_TESTING
int32_t orch__cpu_peak(void)
{
    pthread_mutex_lock(&g_lock);
    int32_t p = g_peak;
    g_peak = 0;
    pthread_mutex_unlock(&g_lock);
    return p;
}
#endif

/* Takes n tokens (at most all of them) for u; returns what was taken. */
static int take(struct orch__cpu_user *u, int n)
{
    pthread_mutex_lock(&g_lock);
    init_locked();
    uint64_t slack = (uint64_t)CPU_SLACK_MS * 1000000u * (uint64_t)g_total;
    if (u->vt + slack < g_vclock)
        u->vt = g_vclock - slack;
    struct waiter w = {.n = n < 1 ? 1 : n, .vt = u->vt, .seq = g_next_seq++};
    w.next = g_waiters;
    g_waiters = &w;
    if (grant_locked())
        pthread_cond_broadcast(&g_cond);
    while (!w.granted)
        pthread_cond_wait(&g_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
    return w.n;
}

/* ---- threadpools ------------------------------------------------------------------ */

void orch__cpu_set_tpool_maker(void *(*make)(int n_threads))
{
    pthread_mutex_lock(&g_lock);
    g_make_pool = make;
    pthread_mutex_unlock(&g_lock);
}

static struct orch__tpool *pool_take(int n)
{
    pthread_mutex_lock(&g_lock);
    void *(*make)(int) = g_make_pool;
    struct orch__tpool **pp = &g_idle_pools, *p = NULL;
    while (*pp && (*pp)->n != n)
        pp = &(*pp)->next;
    if (*pp) {
        p = *pp;
        *pp = p->next;
    }
    pthread_mutex_unlock(&g_lock);
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
    pthread_mutex_lock(&g_lock);
    p->next = g_idle_pools;
    g_idle_pools = p;
    pthread_mutex_unlock(&g_lock);
}

/* ---- holds ------------------------------------------------------------------------ */

void orch__cpu_release(struct orch__cpu_user *u, struct orch__cpu_hold *h)
{
    if (!h->n)
        return;
    pool_give(h->pool);
    pthread_mutex_lock(&g_lock);
    g_free += h->n;
    if (grant_locked())
        pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    (void)u;
    h->n = 0;
    h->pool = NULL;
}

int orch__cpu_begin(struct orch__cpu_user *u, struct orch__cpu_hold *h, int n_threads)
{
    pthread_once(&g_fork_once, fork_init);
    if (h->n) {
        /* keep the CPUs unless a user that has used less waits for them,
         * or the budget changed under us */
        pthread_mutex_lock(&g_lock);
        bool yield = h->n != (n_threads < g_total ? n_threads : g_total);
        for (struct waiter *w = g_waiters; w && !yield; w = w->next)
            yield = w->vt < u->vt;
        pthread_mutex_unlock(&g_lock);
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
    pthread_mutex_lock(&g_lock);
    u->vt += (uint64_t)(ns > 1000 ? ns : 1000) * (uint64_t)h->n;
    pthread_mutex_unlock(&g_lock);
}
