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
 * Leases: m->lease is one 64-bit word: bit 63 (LIVE) says new leases may be
 * taken, the low bits count the leases out. acquire() is one fetch_add: if the
 * word it replaced had LIVE set, the lease is granted with no lock taken.
 * Otherwise the add was a probe that failed: it is undone like a release and
 * the caller takes the slow path under the lock (load, or wait for a load or
 * a drain).
 *
 * The hard part is shutdown (percpu-refcount's pattern): unload() marks the
 * model DRAINING under the lock and clears LIVE with one fetch_and, so from
 * that point no acquire can succeed on the fast path. Whoever then moves the
 * count to zero with LIVE clear — unload() itself when no lease was out, or
 * the last release() — takes the lock and, if the model is still DRAINING
 * and the word still zero, frees the backend model and sets UNLOADED. A
 * failed fast-path probe can also bring the word to zero; it goes through
 * the same check, so exactly one party frees, and only once no lease is out.
 *
 * A release() is not over when its lease is returned: it may still run the
 * free and the hooks. Each release() counts itself in m->n_releasing (same
 * cache line as the lease word, so it costs no extra line transfer) and
 * orch_model_free() waits for the count to drop to zero after the drain, so
 * a concurrent close never frees a model under a release that is finishing.
 *
 * What must hold:
 *  - LIVE is set only in READY, after m->obj is written (release order).
 *  - m->obj is freed only with LIVE clear and the lease count zero.
 *  - One backend load at a time per model (state LOADING is the token).
 */
#include "backend.h"

#include <assert.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEASE_LIVE (UINT64_C(1) << 63)
#define LEASE_COUNT(v) ((v) & ~LEASE_LIVE)

struct orch_model {
    /* hot: touched by every acquire/release */
    _Alignas(64) _Atomic uint64_t lease; /* LIVE bit | leases out; see DESIGN */
    _Atomic int64_t last_use_ms;         /* relaxed: a hint for idle/LRU policy */
    _Atomic uint32_t n_releasing;        /* release() calls in flight; see free */

    /* immutable after orch_model_new() */
    _Alignas(64) struct orch_model_params params; /* strings point into path/role */
    char *path;
    char *role;
    const orch_backend *be;

    pthread_mutex_t lock;
    pthread_cond_t cond;
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

struct orch_model_params orch_model_default_params(void)
{
    struct orch_model_params p;
    memset(&p, 0, sizeof p);
    p.role = "model";
    p.n_ctx = 2048;
    p.n_gpu_layers = 0;
    p.n_threads = 0;
    p.n_batch = 512;
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
    if (params->n_ctx != ORCH_N_CTX_TRAIN && (params->n_ctx <= 0 || params->n_ctx > ORCH_N_CTX_MAX))
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_ctx %d is out of range (expected 1..%d, or %d for the "
                         "model's trained context)",
                         role, params->n_ctx, ORCH_N_CTX_MAX, ORCH_N_CTX_TRAIN);
    if (params->n_threads < 0 || params->n_threads > 1024)
        return orch__err(err, ORCH_EINVAL,
                         "role '%s': n_threads %d is out of range (expected 0 = auto, or 1..1024)",
                         role, params->n_threads);
    if (params->n_batch < 0 || params->n_batch > ORCH_N_CTX_MAX)
        return orch__err(err, ORCH_EINVAL, "role '%s': n_batch %d is out of range", role,
                         params->n_batch);
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
    if (m->params.n_batch == 0)
        m->params.n_batch = 512;
    m->be = params->backend ? params->backend : orch_backend_llama();
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    atomic_init(&m->lease, 0);
    atomic_init(&m->last_use_ms, 0);
    atomic_init(&m->n_releasing, 0);
    atomic_init(&m->state, ORCH_STATE_UNLOADED);
    atomic_init(&m->cancel, false);
    *out = m;
    return ORCH_OK;
}

/* Frees the backend model. Called with the lock held, in DRAINING, when the
 * lease word is zero. The caller runs the gone hook after unlocking. */
static void free_locked(orch_model *m, const char *reason)
{
    assert(get_state(m) == ORCH_STATE_DRAINING);
    /* no lease can be granted: a failed fast-path probe may still be
     * counted for an instant, but it never touches m->obj */
    assert(!(atomic_load(&m->lease) & LEASE_LIVE));
    int64_t t0 = orch__now_ns();
    uint64_t bytes = m->bytes;
    m->be->ops->free(m->be, m->obj);
    m->obj = NULL;
    m->bytes = 0;
    set_state(m, ORCH_STATE_UNLOADED);
    pthread_cond_broadcast(&m->cond);
    orch__log(ORCH_LOG_INFO, m->role, "unload_end", OF_S("path", m->path), OF_S("reason", reason),
              OF_U("bytes", bytes), OF_D("ms", orch__ms_since(t0)));
}

/* The lease word reached zero with LIVE clear: free if a drain is waiting. */
static void run_gone_hook(orch_model *m)
{
    if (m->hooks && m->hooks->gone)
        m->hooks->gone(m->hooks_ud, m);
}

static void last_ref(orch_model *m)
{
    bool freed = false;
    pthread_mutex_lock(&m->lock);
    /* acquire: the releasers' uses of m->obj happen before the free */
    if (get_state(m) == ORCH_STATE_DRAINING &&
        atomic_load_explicit(&m->lease, memory_order_acquire) == 0) {
        free_locked(m, m->drain_reason);
        freed = true;
    }
    pthread_mutex_unlock(&m->lock);
    if (freed)
        run_gone_hook(m);
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
    if (m->params.progress && !m->params.progress(m->role, fraction, m->params.progress_user_data)) {
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
    set_state(m, ORCH_STATE_LOADING);
    atomic_store_explicit(&m->cancel, false, memory_order_relaxed);
    pthread_mutex_unlock(&m->lock);

    orch__log(ORCH_LOG_INFO, m->role, "load_start", OF_S("path", m->path),
              OF_S("backend", m->be->ops->name), OF_I("n_gpu_layers", m->params.n_gpu_layers));
    int64_t t0 = orch__now_ns();
    struct load_ctl ctl = {.m = m, .last_reported = 0};
    struct orch__load_req req = {
        .path = m->path,
        .role = m->role,
        .n_gpu_layers = m->params.n_gpu_layers,
        .use_mmap = m->params.use_mmap,
        .use_mlock = m->params.use_mlock,
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

    pthread_mutex_lock(&m->lock);
    m->load_seq++;
    m->last_result = rc;
    if (rc == ORCH_OK) {
        m->obj = obj;
        m->bytes = bytes;
        m->load_ms = ms;
        m->n_loads++;
        m->last_error.code = ORCH_OK;
        m->last_error.msg[0] = '\0';
        atomic_store_explicit(&m->last_use_ms, orch__now_ms_coarse(), memory_order_relaxed);
        set_state(m, ORCH_STATE_READY);
        /* release; pairs with the acquire in orch_model_acquire(): publish
         * LIVE _after_ m->obj is written. Failed probes may have left
         * counts in the word; fetch_or keeps them. */
        atomic_fetch_or_explicit(&m->lease, LEASE_LIVE, memory_order_release);
        orch__log(ORCH_LOG_INFO, m->role, "load_end", OF_S("path", m->path), OF_D("ms", ms),
                  OF_U("bytes", bytes));
    } else {
        m->n_failures++;
        m->last_error = e;
        set_state(m, ORCH_STATE_FAILED);
        orch__log(rc == ORCH_ECANCELED ? ORCH_LOG_WARN : ORCH_LOG_ERROR, m->role, "load_failed", OF_S("path", m->path), OF_D("ms", ms),
                  OF_S("code", orch_err_name(rc)), OF_S("error", e.msg));
    }
    pthread_cond_broadcast(&m->cond);
    if (rc != ORCH_OK && err)
        *err = e;
    return rc;
}

/* Brings the model to READY (lock held on entry and exit). With
 * join_result, a caller that joined a load in flight returns that load's
 * result rather than trying again (single flight for orch_model_load). */
static int ensure_ready_locked(orch_model *m, orch_error *err)
{
    for (;;) {
        switch (get_state(m)) {
        case ORCH_STATE_READY:
            return ORCH_OK;
        case ORCH_STATE_LOADING: {
            uint64_t seq = m->load_seq;
            while (m->load_seq == seq)
                pthread_cond_wait(&m->cond, &m->lock);
            if (m->last_result != ORCH_OK) {
                if (err)
                    *err = m->last_error;
                return m->last_result;
            }
            continue; /* loaded; re-check (it may have been unloaded since) */
        }
        case ORCH_STATE_DRAINING:
            while (get_state(m) == ORCH_STATE_DRAINING)
                pthread_cond_wait(&m->cond, &m->lock);
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

int orch_model_load(orch_model *m, orch_error *err)
{
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_load: model is NULL");
    if (get_state(m) == ORCH_STATE_READY)
        return ORCH_OK;
    pthread_mutex_lock(&m->lock);
    int rc = ensure_ready_locked(m, err);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* Drops one count from the lease word; the one that reaches zero with LIVE
 * clear checks for a pending free. */
static inline void lease_put(orch_model *m)
{
    /* acq_rel: release our uses of m->obj to the freer; acquire the others' */
    uint64_t prev = atomic_fetch_sub_explicit(&m->lease, 1, memory_order_acq_rel);
    assert(LEASE_COUNT(prev) > 0);
    if (prev == 1)
        last_ref(m);
}

int orch_model_acquire(orch_model *m, orch_error *err)
{
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_acquire: model is NULL");
    /* acquire; pairs with the release fetch_or that set LIVE in
     * do_load_locked(): m->obj is visible once LIVE is seen */
    uint64_t prev = atomic_fetch_add_explicit(&m->lease, 1, memory_order_acquire);
    if (prev & LEASE_LIVE)
        return ORCH_OK;
    lease_put(m); /* undo the probe */

    pthread_mutex_lock(&m->lock);
    int rc;
    for (;;) {
        rc = ensure_ready_locked(m, err);
        if (rc != ORCH_OK)
            break;
        prev = atomic_fetch_add_explicit(&m->lease, 1, memory_order_acquire);
        if (prev & LEASE_LIVE)
            break;
        /* cannot happen while we hold the lock in READY, but stay safe */
        atomic_fetch_sub_explicit(&m->lease, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void orch_model_release(orch_model *m)
{
    if (!m)
        return;
    /* relaxed: ordered before the lease's release by the fetch_sub below;
     * whoever frees acquires that and so sees this count */
    atomic_fetch_add_explicit(&m->n_releasing, 1, memory_order_relaxed);
    /* relaxed: last use is a policy hint, not a synchronisation point */
    atomic_store_explicit(&m->last_use_ms, orch__now_ms_coarse(), memory_order_relaxed);
    uint64_t prev = atomic_fetch_sub_explicit(&m->lease, 1, memory_order_acq_rel);
    assert(LEASE_COUNT(prev) > 0);
    if (prev == 1)
        last_ref(m);
    if (m->hooks && m->hooks->released)
        m->hooks->released(m->hooks_ud, m, LEASE_COUNT(prev) == 1);
    /* release; pairs with the acquire in orch_model_free() */
    atomic_fetch_sub_explicit(&m->n_releasing, 1, memory_order_release);
}

int orch__model_unload_reason(orch_model *m, const char *reason)
{
    if (!m)
        return ORCH_EINVAL;
    bool freed = false;
    pthread_mutex_lock(&m->lock);
    while (get_state(m) == ORCH_STATE_LOADING)
        pthread_cond_wait(&m->cond, &m->lock);
    if (get_state(m) == ORCH_STATE_READY) {
        set_state(m, ORCH_STATE_DRAINING);
        m->drain_reason = reason;
        /* acq_rel: after this no fast-path acquire succeeds; acquire the
         * releases of leases already returned */
        uint64_t prev = atomic_fetch_and_explicit(&m->lease, ~LEASE_LIVE, memory_order_acq_rel);
        orch__log(ORCH_LOG_INFO, m->role, "unload_start", OF_S("path", m->path),
                  OF_S("reason", reason), OF_U("leases", LEASE_COUNT(prev)));
        if (LEASE_COUNT(prev) == 0) {
            free_locked(m, reason);
            freed = true;
        }
        /* else: the last release (or a failed probe) frees; see DESIGN */
    } else if (get_state(m) == ORCH_STATE_FAILED) {
        set_state(m, ORCH_STATE_UNLOADED);
    }
    pthread_mutex_unlock(&m->lock);
    if (freed)
        run_gone_hook(m);
    return ORCH_OK;
}

bool orch__model_unload_if_idle(orch_model *m, const char *reason)
{
    bool freed = false;
    pthread_mutex_lock(&m->lock);
    uint64_t expect = LEASE_LIVE;
    /* acq_rel CAS from exactly "LIVE, no lease": fails if any lease (or a
     * probe) is out, so no acquire can slip in between check and unload */
    if (get_state(m) == ORCH_STATE_READY &&
        atomic_compare_exchange_strong_explicit(&m->lease, &expect, 0, memory_order_acq_rel,
                                                memory_order_relaxed)) {
        set_state(m, ORCH_STATE_DRAINING);
        m->drain_reason = reason;
        orch__log(ORCH_LOG_INFO, m->role, "unload_start", OF_S("path", m->path),
                  OF_S("reason", reason), OF_U("leases", 0));
        free_locked(m, reason);
        freed = true;
    }
    pthread_mutex_unlock(&m->lock);
    if (freed)
        run_gone_hook(m);
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
    return (int64_t)LEASE_COUNT(atomic_load_explicit(&m->lease, memory_order_relaxed));
}

int orch__backend_estimate(const orch_backend *be, const char *path, int32_t n_ctx,
                           uint64_t *weights, uint64_t *context, orch_error *err)
{
    if (be->ops->estimate)
        return be->ops->estimate(be, path, n_ctx, weights, context, err);
    uint64_t size;
    int rc = orch__check_model_file(path, &size, err);
    if (rc == ORCH_OK) {
        *weights = size;
        *context = 0;
    }
    return rc;
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

void orch_model_free(orch_model *m)
{
    if (!m)
        return;
    orch__model_unload_reason(m, "close");
    pthread_mutex_lock(&m->lock);
    while (get_state(m) == ORCH_STATE_DRAINING || get_state(m) == ORCH_STATE_LOADING)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    /* a release that returned the last lease may still be finishing (the
     * free it ran, its hooks): wait for it, briefly */
    while (atomic_load_explicit(&m->n_releasing, memory_order_acquire) != 0)
        sched_yield();
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
    pthread_mutex_lock(&m->lock);
    out->state = get_state(m);
    out->bytes = m->bytes;
    out->load_ms = m->load_ms;
    out->n_leases = (int64_t)LEASE_COUNT(atomic_load_explicit(&m->lease, memory_order_relaxed));
    out->n_loads = m->n_loads;
    out->n_load_failures = m->n_failures;
    out->last_use_ms = atomic_load_explicit(&m->last_use_ms, memory_order_relaxed);
    out->last_error_code = m->last_error.code;
    memcpy(out->last_error, m->last_error.msg, sizeof out->last_error);
    pthread_mutex_unlock(&m->lock);
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

const char *orch_backend_name(const orch_backend *be)
{
    return be ? be->ops->name : NULL;
}
