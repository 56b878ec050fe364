/*
 * model.c — a managed model: state machine, single-flight load, leases.
 *
 * DESIGN
 * Locks: each model owns one mutex (m->lock) and one condition variable
 * (m->cond). The lock guards the state transitions and the fields marked
 * below; it is never held across a backend load or free of the weights'
 * users, only around bookkeeping (the backend free itself runs under it, so
 * that "state == UNLOADED" really means the memory is gone).
 *
 * Leases (percpu-refcount's pattern). A READY model counts its leases in
 * N_SLOTS counters, each on its own cache line; a thread always uses the
 * same slot, so a lease costs one uncontended atomic operation to take and
 * one to return, and no cache line moves between cores while at most
 * N_SLOTS threads take leases (threads are dealt slots round-robin; past
 * N_SLOTS, some share one: still correct, then contended). A slot word is
 * LIVE (bit 62) | BIAS + count, where count is this slot's acquires minus
 * its releases (below zero when leases taken on other threads are returned
 * here). acquire() and release() both CAS their slot, and only from a word
 * with LIVE set: nobody but the lock holder ever writes a stopped slot. A
 * slot whose count reaches +-SLOT_FOLD is folded under the lock into
 * m->ready_bias, so no count can grow into LIVE however long a thread only
 * releases what others took.
 *
 * In READY, leases out = sum of slot counts + m->ready_bias + m->drain,
 * where m->drain is zero or negative (see the revive below).
 *
 * The hard part is shutdown. collect_locked() swaps every slot for a bare
 * BIAS (LIVE clear) and sums what they held, plus ready_bias. unload()
 * ("kill"), under the lock, marks the model DRAINING, collects, and adds the
 * sum plus one reference of its own to m->drain, the atomic count of leases
 * still out, then drops its reference. From then on acquire fails on every
 * slot, and a release that finds its slot stopped takes one from m->drain
 * in a single atomic step instead. Whoever moves m->drain from 1 to 0 —
 * unload itself when no lease was out, or the last release — frees the
 * backend model, under the lock. Only that one party touches the model after
 * giving its lease back, and it does so under the lock, so orch_model_free()
 * (which waits under the lock for the drain to end) never frees a model a
 * release is still working on. A release that saw a stopped slot needs no
 * more care: the lease it returns was counted by the collect that stopped
 * the slot, so taking it from m->drain is right whenever it lands.
 *
 * Idle unloads and evictions (orch__model_unload_if_idle) collect the same
 * way but stay READY while they count; if a lease slipped in they revive
 * the model (the leases go to ready_bias, LIVE back on every slot) rather
 * than drain it under its holder. Releases that took from m->drain after
 * the revive read it leave it negative, which the sum above includes.
 *
 * Leases during a drain. Whoever asks while the model is DRAINING gets a
 * lease on the weights still loaded (m->drain + 1, only while it is above
 * zero, under the lock): an unload never makes a request wait for another
 * request's generation to end, and the model goes when the last lease
 * returns. A thread that holds a lease and asks again (nested) would
 * otherwise wait for a drain its own lease holds up. (A small thread-local
 * table of the leases a thread holds, held_*, lets orch__model_load skip
 * its check for a thread that holds one.)
 *
 * What must hold:
 *  - LIVE is set only in READY, after m->obj is written (release order).
 *  - Only the holder of m->lock writes a slot without LIVE.
 *  - m->obj is freed only with LIVE clear on every slot and m->drain zero,
 *    by the one party that brought m->drain to zero, under the lock.
 *  - One backend load at a time per model (state LOADING is the token).
 *  - Lock order: m->lock, then whatever the gone hook takes (it runs under
 *    m->lock as the model is freed).
 */
#include "cpu.h"
#include "model.h"

#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_SLOTS 64
#define SLOT_LIVE (UINT64_C(1) << 62)
#define SLOT_BIAS (UINT64_C(1) << 61)
#define SLOT_FOLD (INT64_C(1) << 40) /* a count this far from zero is folded */
#define SLOT_COUNT(v) ((int64_t)((v) & ~SLOT_LIVE) - (int64_t)SLOT_BIAS)
#ifdef ORCH_TESTING
int64_t orch__slot_fold = SLOT_FOLD; /* tests lower it to reach the fold */
#define FOLD_AT orch__slot_fold
#else
#define FOLD_AT SLOT_FOLD
#endif

struct lease_slot {
    _Alignas(64) _Atomic uint64_t word; /* LIVE | BIAS + count; see DESIGN */
};

/* This thread's slot: threads are dealt slots round-robin at first use. */
static inline unsigned my_slot(void)
{
    return orch__thread_slot() % N_SLOTS;
}

/* Leases this thread holds, per model (see DESIGN: Nested leases). A model
 * is matched by address and id, so a new model at a freed one's address is
 * not mistaken for it. A thread holding leases on more than N_HELD models at
 * once keeps no count for the others (their nested acquires may wait). */
#define N_HELD 16
struct held {
    const void *m;
    uint64_t id;
    int64_t n;
};
static _Thread_local struct held t_held[N_HELD];
static _Thread_local int t_n_held; /* entries in use, a high-water mark */
static _Atomic uint64_t g_next_id = 1;

struct orch_model {
    /* hot: touched by every acquire/release, each thread its own slot */
    struct lease_slot slots[N_SLOTS];
    /* leases still out while DRAINING (+1 for unload while it counts);
     * see DESIGN */
    _Alignas(64) _Atomic int64_t drain;
    _Atomic int64_t ready_bias; /* written under lock: leases folded out of the slots */
    uint64_t id;           /* immutable: unique per model, for the held table */

    /* immutable after orch_model_new() */
    _Alignas(64) struct orch_model_params params; /* strings point into path/role */
    char *path;
    char *role;
    const orch_backend *be;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t owner;       /* guarded by lock: its holder, when owned */
    bool owned;            /* guarded by lock */
    _Atomic int state;     /* written under lock; read lock-free by orch_model_state() */
    void *obj;             /* backend model; written under lock before LIVE is set */
    _Atomic bool cancel;   /* set by orch_model_cancel_load(); read by the loader */
    uint64_t load_seq;     /* guarded by lock: completed loads (ok or failed) */
    int last_result;       /* guarded by lock: result of load number load_seq */
    orch_error last_error; /* guarded by lock */
    uint64_t bytes;        /* guarded by lock */
    double load_ms;        /* guarded by lock */
    int64_t n_loads;       /* guarded by lock */
    int64_t n_failures;    /* guarded by lock */
    const char *drain_reason;  /* guarded by lock: static string, why DRAINING */
    const struct orch__model_hooks *hooks; /* immutable after set (before use) */
    void *hooks_ud;
};

const char *orch_state_name(enum orch_model_state s)
{
    switch (s) {
    case ORCH_STATE_UNLOADED:
        return "unloaded";
    case ORCH_STATE_LOADING:
        return "loading";
    case ORCH_STATE_READY:
        return "ready";
    case ORCH_STATE_DRAINING:
        return "draining";
    case ORCH_STATE_FAILED:
        return "failed";
    }
    return "unknown";
}

struct orch_model_params orch_model_default_params(void)
{
    struct orch_model_params p;
    memset(&p, 0, sizeof p);
    p.role = "model";
    p.n_ctx = ORCH_N_CTX_DEFAULT;
    p.n_gpu_layers = 0;
    p.n_threads = 0;
    p.n_batch = 512;
    p.n_parallel = 4;
    p.use_mmap = true;
    return p;
}

static void set_state(orch_model *m, enum orch_model_state s)
{
    /* release: orch_model_state() readers see what led to the state */
    atomic_store_explicit(&m->state, (int)s, memory_order_release);
}

static enum orch_model_state get_state(const orch_model *m)
{
    return (enum orch_model_state)atomic_load_explicit(&m->state, memory_order_acquire);
}

int orch_model_new(const struct orch_model_params *params, orch_model **out, orch_error *err)
{
    if (!out)
        return orch__err(err, ORCH_EINVAL, "orch_model_new: out is NULL");
    *out = NULL;
    if (!params)
        return orch__err(err, ORCH_EINVAL, "orch_model_new: params is NULL");
    const char *role = params->role && *params->role ? params->role : "model";
    if (!params->path || !*params->path)
        return orch__err(err, ORCH_EINVAL, "role '%s': no model path given", role);
    if (params->n_ctx != ORCH_N_CTX_TRAIN &&
        (params->n_ctx <= 0 || params->n_ctx > ORCH_N_CTX_MAX))
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_ctx %d is out of range (expected 1..%d, or %d for the "
                         "model's trained context)",
                         role, params->n_ctx, ORCH_N_CTX_MAX, ORCH_N_CTX_TRAIN);
    if (params->n_threads < 0 || params->n_threads > 1024)
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_threads %d is out of range (expected 0 = auto, or 1..1024)",
                         role, params->n_threads);
    if (params->stream_latency_ms < -1 || params->stream_latency_ms > 60000)
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': stream_latency %d is out of range (expected 0 = auto, -1 = "
                         "no limit, or 1..60000 ms)", role, params->stream_latency_ms);
    if (params->n_batch < 0 || params->n_batch > ORCH_N_CTX_MAX)
        return orch__err(err, ORCH_EINVAL, "role '%s': n_batch %d is out of range", role,
                         params->n_batch);
    if (params->n_parallel < 0 || params->n_parallel > ORCH_N_PARALLEL_MAX)
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_parallel %d is out of range (expected 0 = a context per "
                         "request, or 1..%d)",
                         role, params->n_parallel, ORCH_N_PARALLEL_MAX);
    if (params->n_gpu_layers < -1)
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_gpu_layers %d is out of range (expected -1 = all, or >= 0)",
                         role, params->n_gpu_layers);

    orch_model *m = calloc(1, sizeof *m);
    if (!m || orch__fault(ORCH_FAULT_OOM_MODEL)) {
        free(m);
        return orch__err(err, ORCH_ENOMEM, "role '%s': out of memory", role);
    }
    m->path = orch__strdup(params->path);
    m->role = orch__strdup(role);
    if (!m->path || !m->role) {
        free(m->path);
        free(m->role);
        free(m);
        return orch__err(err, ORCH_ENOMEM, "role '%s': out of memory", role);
    }
    m->params = *params;
    m->params.path = m->path;
    m->params.role = m->role;
    if (m->params.n_threads == 0)
        m->params.n_threads = orch_default_n_threads();
    m->params.n_threads = orch__cap_threads(m->params.n_threads, m->role);
    if (m->params.n_batch == 0)
        m->params.n_batch = 512;
    m->be = orch__backend_pick(params->backend);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    for (int i = 0; i < N_SLOTS; i++)
        atomic_init(&m->slots[i].word, SLOT_BIAS);
    atomic_init(&m->drain, 0);
    atomic_init(&m->ready_bias, 0);
    m->id = atomic_fetch_add_explicit(&g_next_id, 1, memory_order_relaxed);
    atomic_init(&m->state, ORCH_STATE_UNLOADED);
    atomic_init(&m->cancel, false);
    *out = m;
    return ORCH_OK;
}

/* The model's lock, with its holder recorded so that every *_locked
 * function can assert it holds it. */
static void lock_model(orch_model *m)
{
    pthread_mutex_lock(&m->lock);
    m->owner = pthread_self();
    m->owned = true;
}

static void unlock_model(orch_model *m)
{
    m->owned = false;
    pthread_mutex_unlock(&m->lock);
}

static void wait_model(orch_model *m)
{
    m->owned = false;
    pthread_cond_wait(&m->cond, &m->lock);
    m->owner = pthread_self();
    m->owned = true;
}

#define assert_locked(m) assert((m)->owned && pthread_equal((m)->owner, pthread_self()))

/* ---- this thread's held leases ------------------------------------------------ */

static inline struct held *held_find(const orch_model *m)
{
    for (int i = 0; i < t_n_held; i++)
        if (t_held[i].m == m && t_held[i].id == m->id && t_held[i].n > 0)
            return &t_held[i];
    return NULL;
}

static inline void held_add(const orch_model *m)
{
    struct held *h = held_find(m);
    if (h) {
        h->n++;
        return;
    }
    for (int i = 0; i < N_HELD; i++) {
        if (i < t_n_held && t_held[i].n > 0)
            continue;
        t_held[i] = (struct held){.m = m, .id = m->id, .n = 1};
        if (i >= t_n_held)
            t_n_held = i + 1;
        return;
    }
}

static inline void held_drop(const orch_model *m)
{
    struct held *h = held_find(m);
    if (h)
        h->n--;
}

static void run_gone_hook(orch_model *m)
{
    if (m->hooks && m->hooks->gone)
        m->hooks->gone(m->hooks_ud, m);
}

/* Frees the backend model and runs the gone hook. Called with the lock
 * held, in DRAINING, by the one party that moved m->drain to zero. */
static void free_locked(orch_model *m, const char *reason)
{
    assert_locked(m);
    assert(get_state(m) == ORCH_STATE_DRAINING);
    assert(atomic_load(&m->drain) == 0);
    int64_t t0 = orch__now_ns();
    uint64_t bytes = m->bytes;
    m->be->ops->free(m->be, m->obj);
    m->obj = NULL;
    m->bytes = 0;
    orch__log(ORCH_LOG_INFO, m->role, "unload_end", OF_S("path", m->path), OF_S("reason", reason),
              OF_U("bytes", bytes), OF_D("ms", orch__ms_since(t0)));
    /* under the lock (order: model lock, then the hook's locks), so that
     * once UNLOADED is seen nobody touches the model or its hook data */
    run_gone_hook(m);
    set_state(m, ORCH_STATE_UNLOADED);
    pthread_cond_broadcast(&m->cond);
}

/* Stops every slot (LIVE clear, count 0) and returns the leases they and
 * ready_bias held. After this no acquire or release touches a slot; releases
 * take from m->drain. Called with the lock held in READY. */
static int64_t collect_locked(orch_model *m)
{
    assert_locked(m);
    int64_t out = atomic_exchange_explicit(&m->ready_bias, 0, memory_order_relaxed);
    for (int i = 0; i < N_SLOTS; i++) {
        /* acq_rel: acquire the releases already made on this slot; after
         * this no CAS succeeds on it */
        uint64_t v = atomic_exchange_explicit(&m->slots[i].word, SLOT_BIAS, memory_order_acq_rel);
        out += SLOT_COUNT(v);
    }
    return out;
}

/* Kill: stop new leases and move the count of leases out into m->drain.
 * Called with the lock held in READY. Returns true when no lease was out
 * and the model was freed here. */
static bool kill_locked(orch_model *m, const char *reason)
{
    assert_locked(m);
    set_state(m, ORCH_STATE_DRAINING);
    m->drain_reason = reason;
    int64_t out = collect_locked(m);
    orch__pause(ORCH_PAUSE_KILL_COUNTED, m);
    /* + 1: our own reference while we look; releases that came in through
     * the slow path meanwhile (or after a revive) have made m->drain
     * negative, and this brings it to exactly the leases still out (+1) */
    int64_t before = atomic_fetch_add_explicit(&m->drain, out + 1, memory_order_acq_rel);
    orch__log(ORCH_LOG_INFO, m->role, "unload_start", OF_S("path", m->path),
              OF_S("reason", reason), OF_I("leases", before + out));
    if (atomic_fetch_sub_explicit(&m->drain, 1, memory_order_acq_rel) == 1) {
        free_locked(m, reason);
        return true;
    }
    return false; /* the last release frees */
}

struct load_ctl {
    orch_model *m;
    float last_reported;
};

static bool load_progress(void *p, float fraction)
{
    struct load_ctl *ctl = p;
    orch_model *m = ctl->m;
    /* relaxed: the flag is advisory; the loader polls it repeatedly */
    if (atomic_load_explicit(&m->cancel, memory_order_relaxed))
        return false;
    if (m->params.progress &&
        !m->params.progress(m->role, fraction, m->params.progress_user_data)) {
        atomic_store_explicit(&m->cancel, true, memory_order_relaxed);
        return false;
    }
    ctl->last_reported = fraction;
    return true;
}

/* Runs one backend load. Called with the lock held in UNLOADED or FAILED;
 * returns with the lock held and the state READY or FAILED. */
static int do_load_locked(orch_model *m, orch_error *err)
{
    assert_locked(m);
    set_state(m, ORCH_STATE_LOADING);
    atomic_store_explicit(&m->cancel, false, memory_order_relaxed);
    unlock_model(m);

    orch__log(ORCH_LOG_INFO, m->role, "load_start", OF_S("path", m->path),
              OF_S("backend", m->be->ops->name), OF_I("n_gpu_layers", m->params.n_gpu_layers));
    int64_t t0 = orch__now_ns();
    struct load_ctl ctl = {.m = m, .last_reported = 0};
    struct orch__load_req req = {
        .path = m->path,
        .role = m->role,
        .n_gpu_layers = m->params.n_gpu_layers,
        .n_ctx = m->params.n_ctx,
        .n_threads = m->params.n_threads,
        .n_batch = m->params.n_batch,
        .stream_latency_ms = m->params.stream_latency_ms,
        .n_parallel = m->params.n_parallel,
        .use_mmap = m->params.use_mmap,
        .use_mlock = m->params.use_mlock,
        .no_repack = m->params.no_repack,
        .vet = m->params.vet,
        .progress = load_progress,
        .ctl = &ctl,
    };
    orch_error e = {0};
    void *obj = NULL;
    int rc = ORCH_OK;
    if (m->hooks && m->hooks->admit)
        rc = m->hooks->admit(m->hooks_ud, m, &e);
    bool admitted = rc == ORCH_OK;
    if (admitted)
        rc = m->be->ops->load(m->be, &req, &obj, &e);
    if (rc == ORCH_OK && atomic_load_explicit(&m->cancel, memory_order_relaxed)) {
        /* cancelled after the backend finished: honour it */
        m->be->ops->free(m->be, obj);
        obj = NULL;
        rc = orch__err(&e, ORCH_ECANCELED, "load of '%s' cancelled", m->path);
    }
    if (rc != ORCH_OK && e.code == ORCH_OK)
        orch__err(&e, rc, "load of '%s' failed: %s", m->path, orch_strerror(rc));
    if (rc == ORCH_ECANCELED)
        e.code = rc;
    uint64_t bytes = rc == ORCH_OK ? m->be->ops->size(obj) : 0;
    double ms = orch__ms_since(t0);
    /* account before publishing READY, so that memory is never in use
     * without being charged; release the admission of a failed load */
    if (m->hooks && rc == ORCH_OK && m->hooks->loaded)
        m->hooks->loaded(m->hooks_ud, m, bytes);
    else if (m->hooks && rc != ORCH_OK && admitted)
        run_gone_hook(m);

    lock_model(m);
    m->load_seq++;
    m->last_result = rc;
    if (rc == ORCH_OK) {
        m->obj = obj;
        m->bytes = bytes;
        m->load_ms = ms;
        m->n_loads++;
        m->last_error.code = ORCH_OK;
        m->last_error.msg[0] = '\0';
        set_state(m, ORCH_STATE_READY);
        /* release; pairs with the acquire CAS in orch_model_acquire():
         * publish LIVE _after_ m->obj is written */
        for (int i = 0; i < N_SLOTS; i++)
            atomic_fetch_or_explicit(&m->slots[i].word, SLOT_LIVE, memory_order_release);
        orch__log(ORCH_LOG_INFO, m->role, "load_end", OF_S("path", m->path), OF_D("ms", ms),
                  OF_U("bytes", bytes));
    } else {
        m->n_failures++;
        m->last_error = e;
        set_state(m, ORCH_STATE_FAILED);
        orch__log(rc == ORCH_ECANCELED ? ORCH_LOG_WARN : ORCH_LOG_ERROR, m->role, "load_failed",
                  OF_S("path", m->path), OF_D("ms", ms), OF_S("code", orch_err_name(rc)),
                  OF_S("error", e.msg));
    }
    pthread_cond_broadcast(&m->cond);
    if (rc != ORCH_OK && err)
        *err = e;
    return rc;
}

/* Brings the model to READY (lock held on entry and exit). A caller that
 * joined a load in flight returns that load's result rather than trying
 * again (single flight). */
static int ensure_ready_locked(orch_model *m, orch_error *err)
{
    assert_locked(m);
    for (;;) {
        switch (get_state(m)) {
        case ORCH_STATE_READY:
            return ORCH_OK;
        case ORCH_STATE_LOADING: {
            uint64_t seq = m->load_seq;
            while (m->load_seq == seq)
                wait_model(m);
            if (m->last_result != ORCH_OK) {
                if (err)
                    *err = m->last_error;
                return m->last_result;
            }
            continue; /* loaded; re-check (it may have been unloaded since) */
        }
        case ORCH_STATE_DRAINING:
            while (get_state(m) == ORCH_STATE_DRAINING)
                wait_model(m);
            continue;
        case ORCH_STATE_UNLOADED:
        case ORCH_STATE_FAILED: {
            int rc = do_load_locked(m, err);
            if (rc != ORCH_OK)
                return rc;
            continue;
        }
        }
    }
}

int orch__model_load(orch_model *m, orch_error *err)
{
    /* a thread holding a lease has the model loaded, draining or not */
    if (get_state(m) == ORCH_STATE_READY || held_find(m))
        return ORCH_OK;
    lock_model(m);
    int rc = ensure_ready_locked(m, err);
    unlock_model(m);
    return rc;
}

int orch_model_load(orch_model *m, orch_error *err)
{
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_load: model is NULL");
    int rc = orch__model_load(m, err);
    if (rc)
        orch__err_prefix(err, "role '%s'", m->role);
    return rc;
}

/* Folds the slot's count into ready_bias when it has drifted SLOT_FOLD from
 * zero (lock held; the slot LIVE). */
static void fold_locked(orch_model *m, _Atomic uint64_t *w)
{
    assert_locked(m);
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    int64_t c = SLOT_COUNT(v);
    if (!(v & SLOT_LIVE) || (c < FOLD_AT && c > -FOLD_AT))
        return;
    /* under the lock nobody stops the slot; leases racing on it CAS */
    v = atomic_exchange_explicit(w, SLOT_LIVE | SLOT_BIAS, memory_order_acq_rel);
    atomic_fetch_add_explicit(&m->ready_bias, SLOT_COUNT(v), memory_order_relaxed);
}

/* One try on this thread's slot: true when a lease was granted. */
static inline bool slot_acquire(orch_model *m)
{
    _Atomic uint64_t *w = &m->slots[my_slot()].word;
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    while ((v & SLOT_LIVE) && SLOT_COUNT(v) < FOLD_AT) {
        /* acquire; pairs with the release store that set LIVE in
         * do_load_locked(): m->obj is visible once LIVE is seen */
        if (atomic_compare_exchange_weak_explicit(w, &v, v + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

/* One try to return a lease on this thread's slot. */
static inline bool slot_release(orch_model *m)
{
    _Atomic uint64_t *w = &m->slots[my_slot()].word;
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    while ((v & SLOT_LIVE) && SLOT_COUNT(v) > -FOLD_AT) {
        /* release: our uses of m->obj happen before whoever frees
         * (collect's exchange of this slot acquires it) */
        if (atomic_compare_exchange_weak_explicit(w, &v, v - 1, memory_order_release,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

/* A nested lease on a DRAINING model whose weights this thread's lease
 * keeps (lock held). */
static bool drain_acquire_locked(orch_model *m)
{
    assert_locked(m);
    if (get_state(m) != ORCH_STATE_DRAINING)
        return false;
    int64_t d = atomic_load_explicit(&m->drain, memory_order_relaxed);
    while (d > 0)
        if (atomic_compare_exchange_weak_explicit(&m->drain, &d, d + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

int orch__model_acquire(orch_model *m, orch_error *err)
{
    if (slot_acquire(m)) {
        held_add(m);
        return ORCH_OK;
    }
    lock_model(m);
    int rc = ORCH_OK;
    fold_locked(m, &m->slots[my_slot()].word);
    while (!drain_acquire_locked(m)) {
        rc = ensure_ready_locked(m, err);
        /* READY under the lock: no kill can run, so the CAS succeeds */
        if (rc != ORCH_OK || slot_acquire(m))
            break;
    }
    unlock_model(m);
    if (rc == ORCH_OK)
        held_add(m);
    return rc;
}

int orch_model_acquire(orch_model *m, orch_error *err)
{
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_acquire: model is NULL");
    int rc = orch__model_acquire(m, err);
    if (rc)
        orch__err_prefix(err, "role '%s'", m->role);
    return rc;
}

void orch_model_release(orch_model *m)
{
    if (!m)
        return;
    held_drop(m);
    if (slot_release(m))
        return;
    _Atomic uint64_t *w = &m->slots[my_slot()].word;
    if (atomic_load_explicit(w, memory_order_relaxed) & SLOT_LIVE) {
        /* a count at the fold limit: fold it and try again */
        lock_model(m);
        fold_locked(m, w);
        bool done = slot_release(m);
        unlock_model(m);
        if (done)
            return;
    }
    /* stopped: the collect counted our lease into the drain (see DESIGN) */
    orch__pause(ORCH_PAUSE_RELEASE_SLOW, m);
    /* acq_rel: release our uses; the one reaching zero acquires all */
    if (atomic_fetch_sub_explicit(&m->drain, 1, memory_order_acq_rel) == 1) {
        lock_model(m);
        free_locked(m, m->drain_reason);
        unlock_model(m);
    }
}

int orch__model_unload_reason(orch_model *m, const char *reason)
{
    if (!m)
        return ORCH_EINVAL;
    lock_model(m);
    while (get_state(m) == ORCH_STATE_LOADING)
        wait_model(m);
    if (get_state(m) == ORCH_STATE_READY)
        kill_locked(m, reason);
    else if (get_state(m) == ORCH_STATE_FAILED)
        set_state(m, ORCH_STATE_UNLOADED);
    unlock_model(m);
    return ORCH_OK;
}

/* Leases out in READY (see DESIGN). A snapshot while threads work; exact
 * under the lock when no lease moves. */
static int64_t ready_leases(const orch_model *m)
{
    int64_t n = atomic_load_explicit(&m->drain, memory_order_relaxed) +
                atomic_load_explicit(&m->ready_bias, memory_order_relaxed);
    for (int i = 0; i < N_SLOTS; i++)
        n += SLOT_COUNT(atomic_load_explicit(&m->slots[i].word, memory_order_relaxed));
    return n;
}

bool orch__model_unload_if_idle(orch_model *m, const char *reason)
{
    bool freed = false;
    lock_model(m);
    if (get_state(m) != ORCH_STATE_READY || ready_leases(m) != 0) {
        unlock_model(m);
        return false;
    }
    orch__pause(ORCH_PAUSE_IDLE_LOOKED, m);
    /* A lease may slip in between that look and the collect, and a lease
     * holder must never see its model drain for idleness. So: stop new
     * leases and count as kill does, but stay READY (acquirers that meet a
     * stopped slot queue on the lock we hold); then either no lease is out
     * and the model is freed, or it is revived with the leases put back. */
    int64_t out = collect_locked(m);
    atomic_fetch_add_explicit(&m->drain, out + 1, memory_order_acq_rel);
    orch__pause(ORCH_PAUSE_IDLE_COUNTED, m);
    /* releases meeting a stopped slot take from m->drain; our +1 keeps it
     * from reaching zero under them */
    int64_t left = atomic_exchange_explicit(&m->drain, 0, memory_order_acq_rel) - 1;
    if (left == 0) {
        set_state(m, ORCH_STATE_DRAINING);
        m->drain_reason = reason;
        orch__log(ORCH_LOG_INFO, m->role, "unload_start", OF_S("path", m->path),
                  OF_S("reason", reason), OF_I("leases", 0));
        free_locked(m, reason);
        freed = true;
    } else {
        /* revive: the leases go to ready_bias, LIVE on every slot again
         * (release: pairs with slot_acquire's acquire). A release that takes
         * from m->drain after the exchange leaves it negative, which the
         * READY sum and the next collect include. */
        atomic_store_explicit(&m->ready_bias, left, memory_order_relaxed);
        for (int i = 0; i < N_SLOTS; i++)
            atomic_store_explicit(&m->slots[i].word, SLOT_LIVE | SLOT_BIAS, memory_order_release);
    }
    unlock_model(m);
    return freed;
}

void orch__model_set_hooks(orch_model *m, const struct orch__model_hooks *hooks, void *ud)
{
    m->hooks = hooks;
    m->hooks_ud = ud;
}

void *orch__model_hooks_ud(const orch_model *m)
{
    return m->hooks_ud;
}

int64_t orch__model_n_leases(const orch_model *m)
{
    /* relaxed: a snapshot for policy and status, not for freeing */
    int64_t n = get_state(m) == ORCH_STATE_DRAINING
                    ? atomic_load_explicit(&m->drain, memory_order_relaxed)
                    : ready_leases(m);
    return n > 0 ? n : 0;
}

int orch_model_unload(orch_model *m)
{
    return orch__model_unload_reason(m, "explicit");
}

void orch_model_cancel_load(orch_model *m)
{
    if (m)
        atomic_store_explicit(&m->cancel, true, memory_order_relaxed);
}

bool orch__model_load_cancelled(const orch_model *m)
{
    return atomic_load_explicit(&m->cancel, memory_order_relaxed);
}

void orch__model_wait_unloaded(orch_model *m)
{
    lock_model(m);
    while (get_state(m) == ORCH_STATE_DRAINING || get_state(m) == ORCH_STATE_LOADING)
        wait_model(m);
    unlock_model(m);
}

void orch_model_free(orch_model *m)
{
    if (!m)
        return;
    orch__model_unload_reason(m, "close");
    orch__model_wait_unloaded(m);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m->path);
    free(m->role);
    free(m);
}

enum orch_model_state orch_model_state(const orch_model *m)
{
    return m ? get_state(m) : ORCH_STATE_UNLOADED;
}

const char *orch_model_role(const orch_model *m)
{
    return m ? m->role : NULL;
}

const char *orch_model_path(const orch_model *m)
{
    return m ? m->path : NULL;
}

void orch_model_stats(orch_model *m, struct orch_model_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    lock_model(m);
    out->state = get_state(m);
    out->bytes = m->bytes;
    out->load_ms = m->load_ms;
    out->n_leases = orch__model_n_leases(m);
    out->n_loads = m->n_loads;
    out->n_load_failures = m->n_failures;
    out->last_error_code = m->last_error.code;
    memcpy(out->last_error, m->last_error.msg, sizeof out->last_error);
    unlock_model(m);
}

int orch_model_info(orch_model *m, struct orch_model_info *out, orch_error *err)
{
    if (!m || !out)
        return orch__err(err, ORCH_EINVAL, "orch_model_info: NULL argument");
    int rc = orch_model_acquire(m, err);
    if (rc != ORCH_OK)
        return rc;
    memset(out, 0, sizeof *out);
    m->be->ops->info(m->obj, out);
    orch_model_release(m);
    return ORCH_OK;
}

/* ---- for the generation layer and the orchestra --------------------------- */

void *orch__model_backend_obj(orch_model *m)
{
    /* caller holds a lease: obj is stable (see DESIGN) */
    return m->obj;
}

const orch_backend *orch__model_backend(const orch_model *m)
{
    return m->be;
}

const struct orch_model_params *orch__model_params(const orch_model *m)
{
    return &m->params;
}

