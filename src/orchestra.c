/*
 * orchestra.c — roles over managed models: fallbacks, shared weights, a
 * memory budget with LRU eviction, idle unloading.
 *
 * DESIGN
 * At open every role is resolved through its fallbacks to a model file, and
 * files are identified by (device, inode): roles on one file share one
 * `entry`, which owns one orch_model. Nothing about a role that lives in a
 * context (n_ctx, threads, sampling, embedding) is part of the entry.
 *
 * Admission runs inside the model's own single-flight load (the model layer
 * calls our admit hook on the one loading thread, with no model lock held),
 * so requests for a model that is loading simply join its load. admit()
 * charges the estimate to the budget, first unloading idle unpinned models
 * in least-recently-used order, and waiting (bounded) for leases to come
 * back when nothing idle is left. The charge follows the model's life: the
 * loaded hook replaces the estimated weights with what the backend really
 * allocated, and the gone hook returns the charge when the backend model is
 * freed (which the model layer does only once no lease is out).
 *
 * Locks: o->lock guards the budget (used, every entry's charged), the
 * closing flag and waiting for memory. Lock order: a model's lock, then
 * o->lock (the gone hook runs as the model is freed, under the model's
 * lock); so o->lock is never held while calling a model function that takes
 * the model's lock. A load of one model never holds o->lock while the
 * backend works: other roles keep serving, and loads of different models
 * run in parallel. Leases on a
 * ready model take no lock at all (model.c) and signal nothing: a load
 * waiting for leases to return looks again every WAIT_SLICE_MS.
 *
 * Idle unloading and eviction use orch__model_unload_if_idle(), which
 * unloads only if no lease is out, and revives the model if one slipped in
 * while it counted, so a model that was just leased is never caught
 * draining.
 */
#include "config.h"
#include "chat.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEEP_FOREVER INT64_MAX

/* How often a load waiting for memory looks for returned leases. */
#define WAIT_SLICE_MS 5

/* Calls in flight are counted per thread slot, as leases are (model.c), so
 * that counting them shares no cache line between threads. */
#define N_CALL_SLOTS 64
struct call_slot {
    _Alignas(64) _Atomic int64_t n;
};

struct entry {
    orch_orchestra *o;
    orch_model *model;
    char *path;
    dev_t dev;
    ino_t ino;
    bool have_ino;
    /* from its roles, rewritten by orch_reconfigure (atomics: read anywhere) */
    _Atomic bool pinned;          /* any role on it pinned */
    _Atomic int64_t idle_ttl_ms;  /* -1 = never */
    _Atomic int32_t n_ctx;        /* largest of its roles; -1 = trained size */
    /* orch_role_keep_alive(): 0 = none (idle_ttl decides), KEEP_FOREVER, or
     * the orchestra-clock time until which the model stays loaded */
    _Atomic int64_t keep_until_ms;
    uint64_t charged;     /* guarded by o->lock: bytes charged to the budget */
    uint64_t context_est; /* guarded by o->lock: per-context part of the charge */
    /* guarded by o->lock: requests running alone on a model without an
     * engine, and what they are charged beyond the load's one context */
    int n_alone;
    uint64_t alone_charged;
    _Atomic int64_t last_use_ms; /* relaxed: orchestra clock; LRU and idle hint */
};

struct role {
    char *name;
    struct orch__role_cfg cfg; /* resolved; strings owned by the orchestra's copies */
    size_t entry_index;        /* of e in its view's entries */
    char **stop;
    char *chat_template;       /* the text of cfg.chat_template's file; NULL = the model's */
    struct entry *e;
    size_t model_role;         /* index of the role whose path is used */
};

/* What a config made: its roles and the entries they use. A call reads the
 * view once, after call_enter(), and uses it to its end; orch_reconfigure()
 * publishes a new one and frees the old once every call that could have
 * read it has left (the call counts' epochs, see call_enter). */
struct view {
    struct role *roles;
    size_t n_roles;
    struct entry **entries; /* distinct: the ones its roles use */
    size_t n_entries;
    struct view *next;      /* in o->old_views once replaced */
};

struct orch_orchestra {
    _Atomic(struct view *) view;
    struct entry **all;      /* guarded by lock: every entry ever made, freed at close */
    size_t n_all, cap_all;
    _Atomic uint64_t budget;
    _Atomic int64_t load_timeout_ms;
    orch_clock_fn clock;
    void *clock_ud;
    /* from orch_open, for the models of roles a reconfigure adds */
    const orch_backend *backend;
    struct orch_role_backend *role_backends; /* copied, role names too */
    size_t n_role_backends;
    orch_progress_fn progress;
    void *progress_ud;
    pthread_mutex_t reconf_lock; /* one reconfigure at a time */
    struct view *old_views;      /* guarded by lock: replaced views, freed at close */

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* memory returned, lease returned, closing */
    uint64_t used;           /* guarded by lock */
    int64_t n_evictions;     /* guarded by lock */
    _Atomic bool closing;    /* set once by orch_close (under lock, seq_cst) */
    pid_t pid;               /* immutable: the process that opened it */
    /* calls in flight, per epoch and thread slot (see call_enter) */
    struct call_slot calls[2][N_CALL_SLOTS];
    _Atomic int epoch;

    bool reaper_running;
    pthread_t reaper;
    pthread_cond_t reaper_cond; /* with lock */
};

static int64_t now_ms(const orch_orchestra *o)
{
    if (o->clock)
        return o->clock(o->clock_ud);
    return orch__now_ns() / 1000000;
}

struct orch_orchestra_params orch_orchestra_default_params(void)
{
    struct orch_orchestra_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* The current view (a call holds it from call_enter to call_exit). */
static struct view *view_of(orch_orchestra *o)
{
    return atomic_load(&o->view);
}

static struct role *find_role(struct view *v, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < v->n_roles; i++) {
        if (strcmp(v->roles[i].name, name) == 0)
            return &v->roles[i];
        for (size_t a = 0; a < v->roles[i].cfg.n_aliases; a++)
            if (v->roles[i].cfg.aliases && strcmp(v->roles[i].cfg.aliases[a], name) == 0)
                return &v->roles[i];
    }
    return NULL;
}

static const char *role_name_at(const void *ctx, size_t i)
{
    return ((const struct view *)ctx)->roles[i].name;
}

static int no_role(struct view *v, const char *name, orch_error *err)
{
    char list[300];
    orch__join_names(list, sizeof list, v->n_roles, role_name_at, v);
    if (!name)
        return orch__err(err, ORCH_ENOROLE, "no role given (roles: %s)", list);
    return orch__err(err, ORCH_ENOROLE, "no role '%s' (roles: %s)", name, list);
}

/* ---- calls in flight -------------------------------------------------------------- */

/* Counts a call in flight, or refuses it once orch_close() has begun. The
 * count and the flag are a Dekker pair (seq_cst both ways): either the call
 * sees `closing`, or close sees the call and waits for it. Calls are counted
 * in the current epoch (*ep); orch_reconfigure() publishes a new view, flips
 * the epoch and waits for the old epoch's count to reach zero: a call that
 * counted itself in the old epoch after that wait began reads the view after
 * its count, so it sees the new view (seq_cst orders the two). */
static int call_enter(orch_orchestra *o, const char *role, orch_error *err, int *ep)
{
    *ep = atomic_load(&o->epoch);
    _Atomic int64_t *n = &o->calls[*ep][orch__thread_slot() % N_CALL_SLOTS].n;
    atomic_fetch_add(n, 1);
    if (!atomic_load(&o->closing))
        return ORCH_OK;
    atomic_fetch_sub_explicit(n, 1, memory_order_release);
    if (!role)
        return orch__err(err, ORCH_ECLOSED, "the orchestra is closing");
    return orch__err(err, ORCH_ECLOSED, "role '%s': the orchestra is closing", role);
}

/* A call that must run even while closing (returning a lease). */
static void call_enter_always(orch_orchestra *o, int *ep)
{
    *ep = atomic_load(&o->epoch);
    atomic_fetch_add(&o->calls[*ep][orch__thread_slot() % N_CALL_SLOTS].n, 1);
}

/* The last touch of `o` by a call. release: the waiter's acquire sum sees
 * all the call did. A call may end on another slot than it began (a lease
 * returned on another thread): only the sum is meaningful. */
static void call_exit(orch_orchestra *o, int ep)
{
    atomic_fetch_sub_explicit(&o->calls[ep][orch__thread_slot() % N_CALL_SLOTS].n, 1,
                              memory_order_release);
}

static int64_t calls_in_epoch(orch_orchestra *o, int ep)
{
    int64_t n = 0;
    for (int i = 0; i < N_CALL_SLOTS; i++)
        n += atomic_load_explicit(&o->calls[ep][i].n, memory_order_acquire);
    return n;
}

/* ---- budget: hooks called by the model layer --------------------------------- */

/* The least recently used entry that can be unloaded now, or NULL. */
static struct entry *lru_victim(orch_orchestra *o, const struct entry *self)
{
    struct entry *best = NULL;
    int64_t best_use = 0;
    for (size_t i = 0; i < o->n_all; i++) {
        struct entry *e = o->all[i];
        if (e == self || e->pinned || !e->charged ||
            orch_model_state(e->model) != ORCH_STATE_READY || orch__model_n_leases(e->model) > 0)
            continue;
        int64_t use = atomic_load_explicit(&e->last_use_ms, memory_order_relaxed);
        if (!best || use < best_use) {
            best = e;
            best_use = use;
        }
    }
    return best;
}

/* "a (300.0 MiB, 2 leases), b (1.0 GiB, pinned)" */
static void describe_holders(orch_orchestra *o, char *buf, size_t cap)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < o->n_all && pos < cap - 1; i++) {
        struct entry *e = o->all[i];
        if (!e->charged)
            continue;
        char b[32];
        orch_format_bytes(e->charged, b, sizeof b);
        int64_t leases = orch__model_n_leases(e->model);
        int n = snprintf(buf + pos, cap - pos, "%s%s (%s, %s, %lld lease%s%s)", pos ? ", " : "",
                         orch_model_role(e->model), b, orch_state_name(orch_model_state(e->model)),
                         (long long)leases, leases == 1 ? "" : "s", e->pinned ? ", pinned" : "");
        if (n < 0)
            break;
        pos += (size_t)n < cap - pos ? (size_t)n : cap - pos - 1;
    }
    if (!pos)
        snprintf(buf, cap, "nothing");
}

/* With o->lock held: bytes that waiting cannot free — pinned models other
 * than self — and their names for a message. */
static uint64_t pinned_bytes(orch_orchestra *o, const struct entry *self, char *names,
                             size_t cap)
{
    uint64_t sum = 0;
    size_t pos = 0;
    names[0] = '\0';
    for (size_t i = 0; i < o->n_all; i++) {
        struct entry *e = o->all[i];
        if (e == self || !e->pinned || !e->charged)
            continue;
        sum += e->charged;
        int n = snprintf(names + pos, cap - pos, "%s%s", pos ? ", " : "",
                         orch_model_role(e->model));
        if (n > 0)
            pos += (size_t)n < cap - pos ? (size_t)n : cap - pos - 1;
    }
    return sum;
}

/* Charges need bytes for `what` to the budget: first unloading idle
 * unpinned models in LRU order, then waiting (bounded by the load timeout)
 * for leases to return; ORCH_EBUDGET at once when it can never fit (past
 * the budget with the pinned models and `held`, bytes of self's that stay
 * put while we wait). m (may be NULL): a load whose cancel ends the wait. */
static int reserve(orch_orchestra *o, struct entry *self, orch_model *m, uint64_t need,
                   uint64_t held, const char *what, orch_error *err)
{
    uint64_t budget = atomic_load(&o->budget);
    int64_t timeout_ms = atomic_load(&o->load_timeout_ms);
    char nb[32], bb[32];
    orch_format_bytes(need, nb, sizeof nb);
    orch_format_bytes(budget, bb, sizeof bb);
    if (budget && need + held > budget)
        return orch__err(err, ORCH_EBUDGET,
                         "%s needs %s (estimated), more than the whole memory budget of %s", what,
                         nb, bb);
    int64_t t_start = orch__now_ns();
    struct timespec deadline = orch__mono_deadline(t_start, timeout_ms);
    int rc = ORCH_OK;
    pthread_mutex_lock(&o->lock);
    for (;;) {
        if (atomic_load(&o->closing)) {
            rc = orch__err(err, ORCH_ECLOSED, "the orchestra is closing");
            break;
        }
        if (m && orch__model_load_cancelled(m)) {
            rc = orch__err(err, ORCH_ECANCELED, "%s: cancelled while waiting for memory", what);
            break;
        }
        if (!budget || o->used + need <= budget) {
            o->used += need;
            break;
        }
        char pinned[200], pb[32];
        uint64_t fixed = pinned_bytes(o, self, pinned, sizeof pinned);
        if (need + held + fixed > budget) {
            orch_format_bytes(fixed, pb, sizeof pb);
            rc = orch__err(err, ORCH_EBUDGET,
                           "%s needs %s (estimated); the budget of %s holds %s of pinned models "
                           "(%s), which never unload: it cannot fit, however long it waits",
                           what, nb, bb, pb, pinned);
            break;
        }
        struct entry *v = lru_victim(o, self);
        if (v) {
            pthread_mutex_unlock(&o->lock);
            orch__log(ORCH_LOG_INFO, self ? orch_model_role(self->model) : NULL, "evict",
                      OF_S("victim", orch_model_role(v->model)), OF_S("reason", "budget"),
                      OF_U("need", need));
            /* the gone hook uncharges it (takes o->lock) */
            bool done = orch__model_unload_if_idle(v->model, "budget");
            pthread_mutex_lock(&o->lock);
            if (done)
                o->n_evictions++;
            continue;
        }
        /* everything that holds memory is leased, pinned or loading: wait
         * for memory to come back (a free signals o->cond) or a lease to
         * return (leases signal nothing, to stay lock-free: look again
         * every WAIT_SLICE_MS) */
        int64_t now = orch__now_ns();
        struct timespec slice = orch__mono_deadline(now, WAIT_SLICE_MS);
        bool last_slice = now + WAIT_SLICE_MS * 1000000LL >= t_start + timeout_ms * 1000000LL;
        int w = pthread_cond_timedwait(&o->cond, &o->lock, last_slice ? &deadline : &slice);
        if (w == ETIMEDOUT && last_slice) {
            char holders[320], ub[32];
            describe_holders(o, holders, sizeof holders);
            orch_format_bytes(o->used, ub, sizeof ub);
            rc = orch__err(err, ORCH_ETIMEDOUT,
                           "%s needs %s; the budget is %s with %s in use by %s; "
                           "waited %lld ms for leases to return",
                           what, nb, bb, ub, holders, (long long)timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
    return rc;
}

static int admit(void *ud, orch_model *m, orch_error *err)
{
    struct entry *e = ud;
    orch_orchestra *o = e->o;
    uint64_t weights = 0, context = 0;
    int rc = orch__backend_estimate(orch__model_backend(m), e->path, e->n_ctx,
                                    orch__model_params(m)->n_parallel, &weights, &context,
                                    err);
    if (rc)
        return rc;
    char what[600];
    snprintf(what, sizeof what, "'%s'", e->path);
    rc = reserve(o, e, m, weights + context, 0, what, err);
    if (rc == ORCH_OK) {
        pthread_mutex_lock(&o->lock);
        e->charged = weights + context;
        e->context_est = context;
        pthread_mutex_unlock(&o->lock);
    }
    return rc;
}

static void loaded(void *ud, orch_model *m, uint64_t bytes)
{
    (void)m;
    struct entry *e = ud;
    orch_orchestra *o = e->o;
    pthread_mutex_lock(&o->lock);
    /* real weights plus the estimated per-context part */
    uint64_t actual = bytes + e->context_est;
    o->used = o->used - e->charged + actual;
    e->charged = actual;
    pthread_mutex_unlock(&o->lock);
    atomic_store_explicit(&e->last_use_ms, now_ms(o), memory_order_relaxed);
}

static void gone(void *ud, orch_model *m)
{
    (void)m;
    struct entry *e = ud;
    orch_orchestra *o = e->o;
    e->keep_until_ms = 0; /* a keep-alive lasts for one load */
    pthread_mutex_lock(&o->lock);
    o->used -= e->charged;
    e->charged = 0;
    e->context_est = 0;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

static const struct orch__model_hooks hooks = {.admit = admit, .loaded = loaded, .gone = gone};

/* ---- idle unloading ------------------------------------------------------------ */

/* A snapshot of every entry (entries live until close). Returns its size;
 * *out is malloc'd (NULL when there are none or memory ran out). */
static size_t all_entries(orch_orchestra *o, struct entry ***out)
{
    pthread_mutex_lock(&o->lock);
    size_t n = o->n_all;
    *out = n ? malloc(n * sizeof **out) : NULL;
    if (*out)
        memcpy(*out, o->all, n * sizeof **out);
    else
        n = 0;
    pthread_mutex_unlock(&o->lock);
    return n;
}

/* When an idle, unpinned entry may be unloaded (orchestra clock), or -1 for
 * never: its keep-alive if one was set, else its last use + idle_ttl. */
static int64_t expiry(const struct entry *e)
{
    int64_t keep = e->keep_until_ms;
    if (keep == KEEP_FOREVER)
        return -1;
    if (keep > 0)
        return keep;
    int64_t ttl = e->idle_ttl_ms;
    return ttl < 0 ? -1 : atomic_load_explicit(&e->last_use_ms, memory_order_relaxed) + ttl;
}

static int tick(orch_orchestra *o)
{
    int n = 0;
    int64_t now = now_ms(o);
    struct entry **all;
    size_t n_all = all_entries(o, &all);
    for (size_t i = 0; i < n_all; i++) {
        struct entry *e = all[i];
        if (e->pinned || orch_model_state(e->model) != ORCH_STATE_READY ||
            orch__model_n_leases(e->model) > 0)
            continue;
        int64_t exp = expiry(e);
        if (exp >= 0 && now >= exp && orch__model_unload_if_idle(e->model, "idle"))
            n++;
    }
    free(all);
    return n;
}

int orch_tick(orch_orchestra *o)
{
    int ep;
    if (!o || call_enter(o, NULL, NULL, &ep) != ORCH_OK)
        return 0;
    int n = tick(o);
    call_exit(o, ep);
    return n;
}

static void *reaper_main(void *arg)
{
    orch_orchestra *o = arg;
    pthread_mutex_lock(&o->lock);
    while (!atomic_load(&o->closing)) {
        /* a quarter of the shortest idle time (a reconfigure may change it) */
        int64_t period = 1000;
        for (size_t i = 0; i < o->n_all; i++) {
            int64_t t = o->all[i]->idle_ttl_ms;
            if (t > 0 && t / 4 < period)
                period = t / 4 < 50 ? 50 : t / 4;
        }
        struct timespec ts = orch__mono_deadline(orch__now_ns(), period);
        pthread_cond_timedwait(&o->reaper_cond, &o->lock, &ts);
        if (atomic_load(&o->closing))
            break;
        pthread_mutex_unlock(&o->lock);
        tick(o); /* orch_close joins us before it unloads */
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* ---- open / close ---------------------------------------------------------------- */

/* A copy of n strings; NULL when n is 0 or memory ran out. */
static char **dup_strings(char *const *in, size_t n)
{
    char **out = n ? calloc(n, sizeof *out) : NULL;
    for (size_t k = 0; out && k < n; k++)
        if (!(out[k] = orch__strdup(in[k]))) {
            while (k--)
                free(out[k]);
            free(out);
            return NULL;
        }
    return out;
}

static void free_strings(char **v, size_t n)
{
    for (size_t k = 0; v && k < n; k++)
        free(v[k]);
    free(v);
}

static void free_view(struct view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n_roles; i++) {
        struct role *r = &v->roles[i];
        free(r->name);
        free(r->cfg.path);
        free(r->cfg.fallback);
        free(r->chat_template);
        free_strings(r->stop, r->stop ? r->cfg.n_stop : 0);
        free_strings(r->cfg.aliases, r->cfg.aliases ? r->cfg.n_aliases : 0);
    }
    free(v->roles);
    free(v->entries);
    free(v);
}

static void free_orchestra(orch_orchestra *o)
{
    for (size_t i = 0; i < o->n_all; i++) {
        orch_model_free(o->all[i]->model);
        free(o->all[i]->path);
        free(o->all[i]);
    }
    free(o->all);
    free_view(atomic_load(&o->view));
    while (o->old_views) {
        struct view *next = o->old_views->next;
        free_view(o->old_views);
        o->old_views = next;
    }
    for (size_t i = 0; i < o->n_role_backends; i++)
        free((char *)o->role_backends[i].role);
    free(o->role_backends);
    pthread_cond_destroy(&o->reaper_cond);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->reconf_lock);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static const orch_backend *backend_for(const orch_orchestra *o, const char *role)
{
    for (size_t i = 0; i < o->n_role_backends; i++)
        if (o->role_backends[i].role && strcmp(o->role_backends[i].role, role) == 0)
            return o->role_backends[i].backend;
    return o->backend;
}

/* A role's chat_template file, read once per config: at most 1 MiB of UTF-8. */
#define TEMPLATE_MAX (1u << 20)
static int read_template(const char *role, const char *path, char **out, orch_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return orch__err(err, ORCH_ECONFIG, "role '%s': chat_template '%s': %s", role, path,
                         strerror(errno));
    char *buf = malloc(TEMPLATE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TEMPLATE_MAX + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf)
        return orch__err(err, ORCH_ENOMEM, "out of memory reading '%s'", path);
    const char *why = bad ? "cannot be read" : n > TEMPLATE_MAX ? "is over 1 MiB"
                      : n == 0 ? "is empty" : NULL;
    if (!why) {
        buf[n] = 0;
        if (memchr(buf, 0, n) || orch__utf8_check(buf, n))
            why = "is not UTF-8 text";
    }
    if (why) {
        free(buf);
        return orch__err(err, ORCH_ECONFIG, "role '%s': chat_template '%s' %s", role, path, why);
    }
    *out = buf;
    return ORCH_OK;
}

static int copy_roles(struct view *v, const orch_config *cfg, orch_error *err)
{
    v->roles = calloc(cfg->n_roles, sizeof *v->roles);
    if (!v->roles)
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    v->n_roles = cfg->n_roles;
    for (size_t i = 0; i < cfg->n_roles; i++) {
        struct role *r = &v->roles[i];
        orch__config_resolve(cfg, i, &r->cfg);
        r->name = orch__strdup(r->cfg.name);
        r->cfg.path = r->cfg.path ? orch__strdup(r->cfg.path) : NULL;
        r->cfg.fallback = r->cfg.fallback ? orch__strdup(r->cfg.fallback) : NULL;
        r->cfg.fallback_where = NULL; /* borrowed from cfg, which may go */
        if (r->cfg.chat_template) {
            int rc = read_template(r->name, r->cfg.chat_template, &r->chat_template, err);
            if (rc)
                return rc;
        }
        r->cfg.chat_template = NULL; /* borrowed from cfg; the text is kept */
        r->cfg.source = r->cfg.sha256 = NULL; /* for the daemon's pulls, not the roles */
        r->stop = dup_strings(r->cfg.stop, r->cfg.n_stop);
        r->cfg.stop = r->stop;
        r->cfg.aliases = dup_strings(r->cfg.aliases, r->cfg.n_aliases);
        r->cfg.name = r->name;
        if (!r->name || (r->cfg.n_stop && !r->stop) || (r->cfg.n_aliases && !r->cfg.aliases))
            return orch__err(err, ORCH_ENOMEM, "out of memory");
        r->cfg.gen.stop = (const char *const *)r->stop;
        r->cfg.gen.n_stop = r->cfg.n_stop;
    }
    return ORCH_OK;
}

/* Same file: same device and inode, or the same path for files not there. */
static bool same_file(const struct entry *a, const struct entry *b)
{
    return a->have_ino ? b->have_ino && a->dev == b->dev && a->ino == b->ino
                       : !b->have_ino && strcmp(a->path, b->path) == 0;
}

/* The entry for a file and a GPU placement: one already made (same device
 * and inode, or the same path for a file that is not there, and the same
 * n_gpu_layers), else a new one. A reconfigure that changes a role's
 * placement so gets a new model beside the old, which unloads once no role
 * uses it. */
static int entry_for(orch_orchestra *o, const struct role *mr, struct entry **out,
                     orch_error *err)
{
    struct stat st;
    bool have = stat(mr->cfg.path, &st) == 0;
    for (size_t k = 0; k < o->n_all; k++) { /* only this thread adds entries */
        struct entry *x = o->all[k];
        if (orch__model_params(x->model)->n_gpu_layers != mr->cfg.n_gpu_layers)
            continue;
        if (have ? (x->have_ino && x->dev == st.st_dev && x->ino == st.st_ino)
                 : (!x->have_ino && strcmp(x->path, mr->cfg.path) == 0)) {
            *out = x;
            return ORCH_OK;
        }
    }
    struct entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = orch__strdup(mr->cfg.path))) {
        free(e);
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    }
    e->o = o;
    e->have_ino = have;
    if (have) {
        e->dev = st.st_dev;
        e->ino = st.st_ino;
    }
    atomic_init(&e->last_use_ms, now_ms(o));
    struct orch_model_params mp = orch_model_default_params();
    mp.path = mr->cfg.path;
    mp.role = mr->name;
    mp.backend = backend_for(o, mr->name);
    mp.n_ctx = mr->cfg.n_ctx;
    mp.n_gpu_layers = mr->cfg.n_gpu_layers;
    mp.n_threads = mr->cfg.n_threads;
    mp.n_parallel = mr->cfg.n_parallel;
    mp.stream_latency_ms = mr->cfg.stream_latency_ms;
    mp.no_repack = !mr->cfg.repack;
    mp.vet = mr->cfg.vet;
    mp.embedding = mr->cfg.embedding;
    mp.progress = o->progress;
    mp.progress_user_data = o->progress_ud;
    int rc = orch_model_new(&mp, &e->model, err);
    if (rc == ORCH_OK) {
        orch__model_set_hooks(e->model, &hooks, e);
        pthread_mutex_lock(&o->lock);
        if (o->n_all == o->cap_all) {
            size_t cap = o->cap_all ? o->cap_all * 2 : 8;
            struct entry **a = realloc(o->all, cap * sizeof *a);
            if (a) {
                o->all = a;
                o->cap_all = cap;
            }
        }
        if (o->n_all < o->cap_all)
            o->all[o->n_all++] = e;
        else
            rc = orch__err(err, ORCH_ENOMEM, "out of memory");
        pthread_mutex_unlock(&o->lock);
    }
    if (rc) {
        orch_model_free(e->model);
        free(e->path);
        free(e);
        return rc;
    }
    *out = e;
    return ORCH_OK;
}

/* Builds the view of `cfg`: its roles, and their entries (made, or reused
 * from earlier views, whose loaded models stay loaded). */
static int build_view(orch_orchestra *o, const orch_config *cfg, struct view **out,
                      orch_error *err)
{
    struct view *v = calloc(1, sizeof *v);
    size_t *model_of = malloc(cfg->n_roles * sizeof *model_of);
    int rc = v && model_of ? copy_roles(v, cfg, err)
                           : orch__err(err, ORCH_ENOMEM, "out of memory");
    if (rc == ORCH_OK)
        rc = orch__config_model_roles(cfg, model_of, err);
    if (rc == ORCH_OK && !(v->entries = calloc(v->n_roles, sizeof *v->entries)))
        rc = orch__err(err, ORCH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == ORCH_OK && i < v->n_roles; i++) {
        struct role *r = &v->roles[i];
        r->model_role = model_of[i];
        struct role *mr = &v->roles[r->model_role];
        rc = entry_for(o, mr, &r->e, err);
        if (rc)
            break;
        size_t k = 0;
        while (k < v->n_entries && v->entries[k] != r->e)
            k++;
        r->entry_index = k;
        if (k < v->n_entries)
            continue;
        /* one file, one placement: weights shared by roles are one copy */
        for (size_t j = 0; j < i && rc == ORCH_OK; j++) {
            const struct role *other = &v->roles[v->roles[j].model_role];
            if (v->roles[j].e != r->e && same_file(v->roles[j].e, r->e))
                rc = orch__err(err, ORCH_ECONFIG,
                               "roles '%s' and '%s' share '%s' but ask for %d and %d GPU layers; "
                               "shared weights need one placement",
                               other->name, mr->name, r->e->path, other->cfg.n_gpu_layers,
                               mr->cfg.n_gpu_layers);
        }
        v->entries[v->n_entries++] = r->e;
    }
    free(model_of);
    if (rc) {
        free_view(v);
        return rc;
    }
    *out = v;
    return ORCH_OK;
}

/* What each entry of v needs from all its roles: pinned by any, the longest
 * idle time (never beats any), the largest context (-1: trained size). */
static void apply_entry_settings(struct view *v)
{
    for (size_t k = 0; k < v->n_entries; k++) {
        struct entry *e = v->entries[k];
        bool pinned = false, first = true;
        int64_t ttl = 0;
        int32_t n_ctx = 0;
        for (size_t i = 0; i < v->n_roles; i++) {
            const struct role *r = &v->roles[i];
            if (r->e != e)
                continue;
            int64_t t = r->cfg.idle_ttl_s < 0 ? -1 : r->cfg.idle_ttl_s * 1000;
            if (first || t < 0 || (ttl >= 0 && t > ttl))
                ttl = t;
            pinned |= r->cfg.pin;
            if (r->cfg.n_ctx < 0)
                n_ctx = -1;
            else if (n_ctx >= 0 && r->cfg.n_ctx > n_ctx)
                n_ctx = r->cfg.n_ctx;
            first = false;
        }
        e->pinned = pinned;
        e->idle_ttl_ms = ttl;
        e->n_ctx = n_ctx;
    }
}

int orch_open(const orch_config *cfg, const struct orch_orchestra_params *params,
              orch_orchestra **out, orch_error *err)
{
    if (!cfg || !out)
        return orch__err(err, ORCH_EINVAL, "orch_open: NULL argument");
    *out = NULL;
    int rc = orch_config_validate(cfg, err);
    if (rc)
        return rc;
    struct orch_orchestra_params p = params ? *params : orch_orchestra_default_params();
    orch_orchestra *o = calloc(1, sizeof *o);
    if (!o)
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->reconf_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_cond_init(&o->reaper_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&o->budget, cfg->budget);
    atomic_init(&o->load_timeout_ms, cfg->load_timeout_ms);
    if (cfg->n_threads_total >= 0)
        orch_cpu_budget(cfg->n_threads_total);
    o->clock = p.clock;
    o->clock_ud = p.clock_user_data;
    o->pid = getpid();
    o->backend = p.backend;
    o->progress = p.progress;
    o->progress_ud = p.progress_user_data;
    if (p.n_role_backends) {
        o->role_backends = calloc(p.n_role_backends, sizeof *o->role_backends);
        if (!o->role_backends)
            rc = orch__err(err, ORCH_ENOMEM, "out of memory");
        for (size_t i = 0; rc == ORCH_OK && i < p.n_role_backends; i++) {
            o->role_backends[i].backend = p.role_backends[i].backend;
            o->role_backends[i].role =
                p.role_backends[i].role ? orch__strdup(p.role_backends[i].role) : NULL;
            o->n_role_backends = i + 1;
        }
    }
    struct view *v = NULL;
    if (rc == ORCH_OK)
        rc = build_view(o, cfg, &v, err);
    if (rc == ORCH_OK) {
        apply_entry_settings(v);
        atomic_init(&o->view, v);
    }
    if (rc == ORCH_OK && !p.no_reaper) {
        if (pthread_create(&o->reaper, NULL, reaper_main, o) != 0)
            rc = orch__err(err, ORCH_ENOMEM, "cannot start the idle-unload thread");
        else
            o->reaper_running = true;
    }
    if (rc) {
        free_orchestra(o);
        return rc;
    }
    char bb[32];
    orch_format_bytes(cfg->budget, bb, sizeof bb);
    orch__log(ORCH_LOG_INFO, NULL, "orchestra_open", OF_S("config", cfg->name),
              OF_U("roles", v->n_roles), OF_U("models", v->n_entries),
              OF_S("budget", cfg->budget ? bb : "none"));
    *out = o;
    return ORCH_OK;
}

int orch_reconfigure(orch_orchestra *o, const orch_config *cfg, orch_error *err)
{
    if (!o || !cfg)
        return orch__err(err, ORCH_EINVAL, "orch_reconfigure: NULL argument");
    int rc = orch_config_validate(cfg, err);
    if (rc)
        return rc;
    int ep;
    if ((rc = call_enter(o, NULL, err, &ep)))
        return rc;
    pthread_mutex_lock(&o->reconf_lock);
    struct view *v;
    rc = build_view(o, cfg, &v, err);
    if (rc) {
        pthread_mutex_unlock(&o->reconf_lock);
        call_exit(o, ep);
        return rc;
    }
    apply_entry_settings(v);
    atomic_store(&o->budget, cfg->budget);
    atomic_store(&o->load_timeout_ms, cfg->load_timeout_ms);
    if (cfg->n_threads_total >= 0)
        orch_cpu_budget(cfg->n_threads_total);
    /* publish, then flip the epoch and wait for the calls that may still
     * read the old view (ours counted in it: leave it first) */
    struct view *old = atomic_exchange(&o->view, v);
    int old_ep = atomic_load(&o->epoch);
    atomic_store(&o->epoch, 1 - old_ep);
    call_exit(o, ep);
    while (calls_in_epoch(o, old_ep) != 0)
        usleep(200);
    /* models no role uses any more: unloaded (once their leases return) */
    size_t retired = 0;
    for (size_t i = 0; i < old->n_entries; i++) {
        bool kept = false;
        for (size_t k = 0; k < v->n_entries && !kept; k++)
            kept = v->entries[k] == old->entries[i];
        if (!kept) {
            old->entries[i]->pinned = false;
            old->entries[i]->idle_ttl_ms = 0;
            orch__model_unload_reason(old->entries[i]->model, "reconfigure");
            retired++;
        }
    }
    orch__log(ORCH_LOG_INFO, NULL, "reconfigure", OF_S("config", cfg->name),
              OF_U("roles", v->n_roles), OF_U("models", v->n_entries),
              OF_U("models_retired", retired));
    /* the old view stays until close: stop strings handed out point into it */
    pthread_mutex_lock(&o->lock);
    old->next = o->old_views;
    o->old_views = old;
    pthread_mutex_unlock(&o->lock);
    pthread_mutex_unlock(&o->reconf_lock);
    return ORCH_OK;
}

void orch_close(orch_orchestra *o)
{
    if (!o)
        return;
    if (getpid() != o->pid) {
        /* a forked child: the parent's threads do not exist here and its
         * locks may be held forever; abandon this copy (see the header) */
        return;
    }
    pthread_mutex_lock(&o->lock);
    atomic_store(&o->closing, true);
    pthread_cond_broadcast(&o->cond);
    pthread_cond_broadcast(&o->reaper_cond);
    pthread_mutex_unlock(&o->lock);
    if (o->reaper_running)
        pthread_join(o->reaper, NULL);
    /* From here new calls fail with ORCH_ECLOSED. Unload everything, wait
     * for every model's drain (the calls in flight finish on the leases
     * they hold; a load they start is refused by admit), then for the
     * calls themselves to leave. */
    struct entry **all;
    size_t n_all = all_entries(o, &all);
    for (size_t i = 0; i < n_all; i++)
        orch__model_unload_reason(all[i]->model, "close");
    for (size_t i = 0; i < n_all; i++)
        orch__model_wait_unloaded(all[i]->model);
    free(all);
    while (calls_in_epoch(o, 0) != 0 || calls_in_epoch(o, 1) != 0)
        usleep(200);
    free_orchestra(o);
}

/* ---- leases and requests by role ------------------------------------------------ */

/* Leases the model behind r; errors name the role asked for, once. */
static int lease_role(orch_orchestra *o, struct role *r, orch_model **out, orch_error *err)
{
    (void)o;
    int rc = orch__model_acquire(r->e->model, err);
    if (rc) {
        orch__err_prefix(err, "role '%s'", r->name);
        return rc;
    }
    *out = r->e->model;
    return ORCH_OK;
}

/* Returns a lease taken by lease_role. */
static void unlease_role(orch_orchestra *o, orch_model *m)
{
    struct entry *e = orch__model_hooks_ud(m);
    /* before the lease returns: an evictor that sees no lease sees this */
    atomic_store_explicit(&e->last_use_ms, now_ms(o), memory_order_relaxed);
    orch_model_release(m);
    /* idle_ttl = 0: unload as the last lease returns. We touch the model
     * after our lease is back: the call count keeps orch_close() waiting */
    if (e->idle_ttl_ms == 0 && !e->pinned && !e->keep_until_ms && orch__model_n_leases(m) == 0)
        orch__model_unload_if_idle(m, "idle");
}

/* Enters a call on `role` and finds it. ORCH_OK: *r is the role and the
 * caller ends with call_exit(o, *ep); an error: nothing to end. */
static int role_enter(orch_orchestra *o, const char *role, int *ep, struct role **r,
                      orch_error *err)
{
    int rc = call_enter(o, role, err, ep);
    if (rc)
        return rc;
    struct view *v = view_of(o);
    *r = find_role(v, role);
    if (*r)
        return ORCH_OK;
    rc = no_role(v, role, err);
    call_exit(o, *ep);
    return rc;
}

int orch_role_acquire(orch_orchestra *o, const char *role, orch_model **out, orch_error *err)
{
    if (!o || !out)
        return orch__err(err, ORCH_EINVAL, "orch_role_acquire: NULL argument");
    *out = NULL;
    int ep;
    struct role *r;
    int rc = role_enter(o, role, &ep, &r, err);
    if (rc)
        return rc;
    rc = lease_role(o, r, out, err);
    call_exit(o, ep);
    return rc;
}

void orch_role_release(orch_orchestra *o, orch_model *m)
{
    if (!o || !m)
        return;
    int ep;
    call_enter_always(o, &ep);
    unlease_role(o, m);
    call_exit(o, ep);
}

/* A request by role in flight: its epoch, role and lease. */
struct call {
    int ep;
    struct role *r;
    orch_model *m;
};

/* A request by role: enter, find the role, lease its model. On ORCH_OK
 * the caller runs its work and calls request_end(). */
static int request_begin(orch_orchestra *o, const char *role, struct call *c, orch_error *err)
{
    if (!o)
        return orch__err(err, ORCH_EINVAL, "orchestra is NULL");
    int rc = role_enter(o, role, &c->ep, &c->r, err);
    if (rc)
        return rc;
    rc = lease_role(o, c->r, &c->m, err);
    if (rc) {
        call_exit(o, c->ep);
        return rc;
    }
    orch__pause(ORCH_PAUSE_ROLE_LEASED, c->m);
    return ORCH_OK;
}

/* Ends a request: names the role in an error (once), returns the lease. */
static int request_end(orch_orchestra *o, struct call *c, int rc, orch_error *err)
{
    if (rc)
        orch__err_prefix(err, "role '%s'", c->r->name);
    unlease_role(o, c->m);
    call_exit(o, c->ep);
    return rc;
}

/* What a request that runs alone (backend.h) was charged for its context,
 * to give back with discharge(). */
struct charge {
    uint64_t bytes; /* charged for the call: o->used */
    bool alone;     /* counted in its entry's n_alone */
};

/* Settles an entry's charge for requests running alone on a model without
 * an engine: the load charged one context (the one the backend keeps), so
 * n_alone requests at once need n_alone - 1 more; gives back the excess.
 * Called with o->lock held. */
static void settle_alone_locked(orch_orchestra *o, struct entry *e)
{
    uint64_t want = e->n_alone > 1 ? (uint64_t)(e->n_alone - 1) * e->context_est : 0;
    if (e->alone_charged > want) {
        o->used -= e->alone_charged - want;
        e->alone_charged = want;
        pthread_cond_broadcast(&o->cond);
    }
}

/* A request that runs alone, in a context of its own (backend.h), is charged
 * that context before it is made, and waits or is refused as a load is (its
 * model, leased, stays put): one larger than the model's sequences, or one on
 * a model with an engine (other threads), is charged its own estimate for
 * the call, and the backend frees it after; on a model without an engine
 * (n_parallel 0) the load charged the context the backend keeps, and each
 * request beyond the first running alone at once is charged one more. So
 * the budget holds every context that exists. */
static int charge_context(orch_orchestra *o, struct call *c, int32_t n_ctx, int32_t n_threads,
                          bool embed, struct charge *ch, orch_error *err)
{
    *ch = (struct charge){0};
    struct entry *e = c->r->e;
    int32_t n_req, n_model = orch__gen_n_ctx(c->m, 0);
    if (!orch__gen_alone(c->m, n_ctx, n_threads, embed, &n_req))
        return ORCH_OK;
    int32_t n_max = c->r->cfg.n_ctx_max;
    if (n_req > n_model && n_max > 0 && n_req > n_max)
        return orch__err(err, ORCH_ECTX,
                         "the request asks for a context of %d tokens; the role allows at most "
                         "%d (n_ctx_max)",
                         (int)n_req, (int)n_max);
    bool slot = orch__model_params(c->m)->n_parallel <= 0 && n_req <= n_model;
    uint64_t context = 0;
    pthread_mutex_lock(&o->lock);
    uint64_t held = e->charged;
    if (slot) {
        context = e->context_est;
        ch->alone = true;
        if (e->n_alone++ == 0) { /* the load's context */
            pthread_mutex_unlock(&o->lock);
            return ORCH_OK;
        }
        e->n_alone--; /* counted again once charged */
    }
    pthread_mutex_unlock(&o->lock);
    if (!slot) {
        uint64_t weights = 0;
        int rc = orch__backend_estimate(orch__model_backend(c->m), e->path, n_req, 1, &weights,
                                        &context, err);
        if (rc)
            return rc;
    }
    char what[96];
    snprintf(what, sizeof what, "a context of %d tokens (%s)", (int)n_req,
             n_req > n_model ? "n_ctx" : "a request running alone");
    int rc = reserve(o, e, NULL, context, held, what, err);
    if (rc) {
        ch->alone = false;
        return rc;
    }
    if (!slot) {
        ch->bytes = context;
        return ORCH_OK;
    }
    pthread_mutex_lock(&o->lock);
    e->n_alone++;
    e->alone_charged += context;
    settle_alone_locked(o, e); /* the others may have ended while it waited */
    pthread_mutex_unlock(&o->lock);
    return ORCH_OK;
}

static void discharge(orch_orchestra *o, struct call *c, const struct charge *ch)
{
    if (!ch->bytes && !ch->alone)
        return;
    pthread_mutex_lock(&o->lock);
    o->used -= ch->bytes;
    if (ch->alone) {
        c->r->e->n_alone--;
        settle_alone_locked(o, c->r->e);
    }
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

int orch_role_keep_alive(orch_orchestra *o, const char *role, int64_t ms, orch_error *err)
{
    if (!o)
        return orch__err(err, ORCH_EINVAL, "orch_role_keep_alive: orchestra is NULL");
    int ep;
    struct role *r;
    int rc = role_enter(o, role, &ep, &r, err);
    if (rc)
        return rc;
    if (ms == 0) {
        r->e->keep_until_ms = 0;
        rc = orch__model_unload_reason(r->e->model, "keep_alive");
    } else {
        int64_t now = now_ms(o); /* past the end of time is forever, not a wrap */
        r->e->keep_until_ms = ms < 0 || ms >= KEEP_FOREVER - now ? KEEP_FOREVER : now + ms;
    }
    call_exit(o, ep);
    return rc;
}

/* The role's generation defaults as a request starts from them. */
static void role_gen_defaults(const struct role *r, struct orch_gen_params *out)
{
    *out = r->cfg.gen;
    out->n_ctx = r->cfg.n_ctx > 0 ? r->cfg.n_ctx : 0;
    out->n_threads = r->cfg.n_threads;
}

int orch_role_lookup(orch_orchestra *o, const char *name, struct orch_role_ref *out,
                     orch_error *err)
{
    if (!o || !out)
        return orch__err(err, ORCH_EINVAL, "orch_role_lookup: NULL argument");
    int ep;
    struct role *r;
    int rc = role_enter(o, name, &ep, &r, err);
    if (rc)
        return rc;
    snprintf(out->name, sizeof out->name, "%s", r->name);
    role_gen_defaults(r, &out->gen);
    out->embedding = r->cfg.embedding;
    call_exit(o, ep); /* views live until close: the stop strings stay valid */
    return ORCH_OK;
}

int orch_role_chat_template(orch_orchestra *o, const char *role, char **out, orch_error *err)
{
    if (!o || !out)
        return orch__err(err, ORCH_EINVAL, "orch_role_chat_template: NULL argument");
    *out = NULL;
    int ep;
    struct role *r;
    int rc = role_enter(o, role, &ep, &r, err);
    if (rc)
        return rc;
    if (r->chat_template) {
        if (!(*out = orch__strdup(r->chat_template)))
            rc = orch__err(err, ORCH_ENOMEM, "out of memory");
    } else {
        rc = orch_file_chat_template(r->e->path, out, err);
    }
    call_exit(o, ep);
    return rc;
}

int orch_role_canonical(orch_orchestra *o, const char *name, char *out, size_t cap,
                        orch_error *err)
{
    if (!out || !cap)
        return orch__err(err, ORCH_EINVAL, "orch_role_canonical: NULL argument");
    struct orch_role_ref ref;
    int rc = orch_role_lookup(o, name, &ref, err);
    if (rc == ORCH_OK)
        snprintf(out, cap, "%s", ref.name);
    return rc;
}

int orch_role_gen_params(orch_orchestra *o, const char *role, struct orch_gen_params *out,
                         orch_error *err)
{
    if (!out)
        return orch__err(err, ORCH_EINVAL, "orch_role_gen_params: NULL argument");
    struct orch_role_ref ref;
    int rc = orch_role_lookup(o, role, &ref, err);
    if (rc == ORCH_OK)
        *out = ref.gen;
    return rc;
}

/* The params a request runs with: the caller's or the role's, with the
 * role's context and threads where the caller left them 0. */
static void request_params(struct role *r, const struct orch_gen_params *in,
                           struct orch_gen_params *p)
{
    *p = in ? *in : r->cfg.gen;
    if (!p->n_threads)
        p->n_threads = r->cfg.n_threads;
    if (!p->n_ctx)
        p->n_ctx = r->cfg.n_ctx; /* > 0, or ORCH_N_CTX_TRAIN: generate.c resolves it */
}

int orch_generate(orch_orchestra *o, const char *role, const char *prompt,
                  const struct orch_gen_params *params, struct orch_gen_result *res,
                  orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_generate: res is NULL");
    memset(res, 0, sizeof *res);
    res->finish = ORCH_FINISH_ERROR;
    struct call c;
    int64_t t0 = orch__now_ns();
    int rc = request_begin(o, role, &c, err);
    if (rc)
        return rc;
    double wait = orch__ms_since(t0);
    struct orch_gen_params p;
    request_params(c.r, params, &p);
    struct charge ch;
    rc = charge_context(o, &c, p.n_ctx, p.n_threads, false, &ch, err);
    if (rc == ORCH_OK)
        rc = orch__generate_leased(c.m, prompt, false, &p, res, err);
    discharge(o, &c, &ch);
    res->load_wait_ms = wait;
    return request_end(o, &c, rc, err);
}

int orch_chat_ext(orch_orchestra *o, const char *role, const struct orch_chat_message *msgs,
                  size_t n_msgs, const struct orch_chat_params *chat,
                  const struct orch_gen_params *params, struct orch_chat_result *res,
                  orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_chat_ext: res is NULL");
    memset(res, 0, sizeof *res);
    res->gen.finish = ORCH_FINISH_ERROR;
    struct call c;
    int64_t t0 = orch__now_ns();
    int rc = request_begin(o, role, &c, err);
    if (rc)
        return rc;
    double wait = orch__ms_since(t0);
    struct orch_gen_params p;
    request_params(c.r, params, &p);
    struct charge ch;
    struct orch_chat_params cp = chat ? *chat : orch_chat_default_params();
    if (cp.reasoning == ORCH_REASONING_DEFAULT && c.r->cfg.reasoning)
        cp.reasoning = (enum orch_reasoning)c.r->cfg.reasoning; /* the role's */
    rc = charge_context(o, &c, p.n_ctx, p.n_threads, false, &ch, err);
    if (rc == ORCH_OK)
        rc = orch__chat_ext_leased(c.m, msgs, n_msgs, &cp, c.r->chat_template, &p, res, err);
    discharge(o, &c, &ch);
    res->gen.load_wait_ms = wait;
    return request_end(o, &c, rc, err);
}

int orch_chat(orch_orchestra *o, const char *role, const struct orch_chat_message *msgs,
              size_t n_msgs, const struct orch_gen_params *params, struct orch_gen_result *res,
              orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_chat: res is NULL");
    struct orch_chat_result r;
    int rc = orch_chat_ext(o, role, msgs, n_msgs, NULL, params, &r, err);
    *res = r.gen; /* the text as generated; the parsed reply is not asked for */
    r.gen = (struct orch_gen_result){0};
    orch_chat_result_clear(&r);
    return rc;
}

int orch_embed(orch_orchestra *o, const char *role, const char *const *texts, size_t n_texts,
               const struct orch_embed_params *params, float **out, int32_t *n_embd,
               orch_error *err)
{
    if (!out || !n_embd)
        return orch__err(err, ORCH_EINVAL, "orch_embed: NULL argument");
    *out = NULL;
    *n_embd = 0;
    if (o && !role) {
        int ep;
        int rc = call_enter(o, NULL, err, &ep);
        if (rc)
            return rc;
        struct view *v = view_of(o); /* views live until close: the name stays valid */
        for (size_t i = 0; i < v->n_roles && !role; i++)
            if (v->roles[i].cfg.embedding)
                role = v->roles[i].name;
        call_exit(o, ep);
        if (!role)
            return orch__err(err, ORCH_ENOROLE,
                             "no role is marked 'embedding = true'; name one with --role");
    }
    struct call c;
    int rc = request_begin(o, role, &c, err);
    if (rc)
        return rc;
    struct orch_embed_params p = params ? *params : orch_embed_default_params();
    if (!p.n_threads)
        p.n_threads = c.r->cfg.n_threads;
    if (!p.n_ctx && c.r->cfg.n_ctx > 0) /* the role's, a fallback's own too */
        p.n_ctx = c.r->cfg.n_ctx;
    struct charge ch;
    rc = charge_context(o, &c, p.n_ctx, p.n_threads, true, &ch, err);
    if (rc == ORCH_OK)
        rc = orch__embed_leased(c.m, texts, n_texts, &p, out, n_embd, err);
    discharge(o, &c, &ch);
    return request_end(o, &c, rc, err);
}

struct preload_job {
    orch_orchestra *o;
    const char *role;
    int rc;
    orch_error err;
    pthread_t thread;
    bool started;
};

static void *preload_main(void *arg)
{
    struct preload_job *j = arg;
    orch_model *m;
    j->rc = orch_role_acquire(j->o, j->role, &m, &j->err);
    if (j->rc == ORCH_OK)
        orch_role_release(j->o, m);
    return NULL;
}

int orch_preload(orch_orchestra *o, const char *const *roles, size_t n_roles, orch_error *err)
{
    if (!o || (n_roles && !roles))
        return orch__err(err, ORCH_EINVAL, "orch_preload: NULL argument");
    /* every name first, so that a typo loads nothing */
    for (size_t i = 0; i < n_roles; i++) {
        struct orch_role_ref ref;
        int rc = orch_role_lookup(o, roles[i], &ref, err);
        if (rc)
            return rc;
    }
    struct preload_job *jobs = calloc(n_roles ? n_roles : 1, sizeof *jobs);
    if (!jobs)
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_roles; i++) {
        jobs[i] = (struct preload_job){.o = o, .role = roles[i]};
        /* the last one runs here; the others each on a thread of their own */
        if (i + 1 < n_roles && pthread_create(&jobs[i].thread, NULL, preload_main, &jobs[i]) == 0)
            jobs[i].started = true;
        else
            preload_main(&jobs[i]);
    }
    int rc = ORCH_OK;
    for (size_t i = 0; i < n_roles; i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].thread, NULL);
        if (jobs[i].rc && rc == ORCH_OK) {
            rc = jobs[i].rc;
            if (err)
                *err = jobs[i].err;
        }
    }
    free(jobs);
    return rc;
}

int orch_unload(orch_orchestra *o, const char *role, orch_error *err)
{
    if (!o)
        return orch__err(err, ORCH_EINVAL, "orch_unload: orchestra is NULL");
    int ep;
    struct role *r;
    int rc = role_enter(o, role, &ep, &r, err);
    if (rc)
        return rc;
    rc = orch__model_unload_reason(r->e->model, "explicit");
    call_exit(o, ep);
    return rc;
}

void orch_unload_all(orch_orchestra *o)
{
    int ep;
    if (!o || call_enter(o, NULL, NULL, &ep) != ORCH_OK)
        return; /* closing unloads everything anyway */
    struct entry **all;
    size_t n_all = all_entries(o, &all);
    for (size_t i = 0; i < n_all; i++)
        orch__model_unload_reason(all[i]->model, "explicit");
    free(all);
    call_exit(o, ep);
}

/* What orch_status reports of a model's file, found once per model. */
struct file_facts {
    bool done;
    int64_t n_ctx_train;     /* -1: the file cannot be read */
    bool estimated;          /* estimate holds the load's estimate */
    uint64_t estimate;
    char why[ORCH_ERROR_MSG_MAX]; /* why there is none */
    int32_t n_faults;
    bool refused;
    char fault[384];
};

static void file_facts(struct entry *e, struct file_facts *f)
{
    const orch_backend *be = orch__model_backend(e->model);
    f->done = true;
    f->n_faults = orch__backend_faults(be, e->path, f->fault, sizeof f->fault, &f->refused);
    struct orch__file_summary sum;
    bool read = orch__file_summary(e->path, &sum, NULL) == ORCH_OK;
    f->n_ctx_train = read ? sum.info.n_ctx_train : -1;
    uint64_t w = 0, c = 0;
    orch_error eerr = {0};
    f->estimated = orch__backend_estimate(be, e->path, e->n_ctx,
                                          orch__model_params(e->model)->n_parallel, &w, &c,
                                          &eerr) == ORCH_OK;
    f->estimate = w + c;
    memcpy(f->why, eerr.msg, sizeof f->why);
}

int orch_status(orch_orchestra *o, struct orch_role_status **out, size_t *n,
                struct orch_budget_status *budget, orch_error *err)
{
    if (!o || !out || !n)
        return orch__err(err, ORCH_EINVAL, "orch_status: NULL argument");
    int ep;
    int rc = call_enter(o, NULL, err, &ep);
    if (rc)
        return rc;
    struct view *v = view_of(o);
    struct orch_role_status *st = calloc(v->n_roles ? v->n_roles : 1, sizeof *st);
    struct file_facts *ff = calloc(v->n_entries ? v->n_entries : 1, sizeof *ff);
    if (!st || !ff) {
        free(st);
        free(ff);
        call_exit(o, ep);
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    }
    int64_t now = now_ms(o);
    for (size_t i = 0; i < v->n_roles; i++) {
        struct role *r = &v->roles[i];
        struct entry *e = r->e;
        struct orch_role_status *s = &st[i];
        struct orch_model_stats ms;
        orch_model_stats(e->model, &ms);
        snprintf(s->role, sizeof s->role, "%s", r->name);
        size_t pos = 0;
        for (size_t a = 0; a < r->cfg.n_aliases && pos < sizeof s->aliases; a++) {
            int k = snprintf(s->aliases + pos, sizeof s->aliases - pos, "%s%s", a ? "," : "",
                             r->cfg.aliases[a]);
            if (k < 0 || (size_t)k >= sizeof s->aliases - pos) {
                s->aliases[pos] = '\0'; /* whole names only */
                break;
            }
            pos += (size_t)k;
        }
        snprintf(s->model_role, sizeof s->model_role, "%s", orch_model_role(e->model));
        snprintf(s->path, sizeof s->path, "%s", e->path);
        s->state = ms.state;
        s->n_leases = ms.n_leases;
        s->n_parallel = orch__model_params(e->model)->n_parallel;
        s->n_gpu_layers = orch__model_params(e->model)->n_gpu_layers;
        s->pinned = e->pinned;
        memcpy(s->last_error, ms.last_error, sizeof s->last_error);
        /* what comes from the file, once per model: roles share it */
        struct file_facts *f = &ff[r->entry_index];
        if (!f->done)
            file_facts(e, f);
        s->n_faults = f->n_faults;
        s->refused = f->refused;
        memcpy(s->fault, f->fault, sizeof s->fault);
        s->n_ctx = orch__n_ctx_resolve(r->cfg.n_ctx, f->n_ctx_train);
        if (ms.bytes) {
            pthread_mutex_lock(&o->lock);
            s->bytes = e->charged ? e->charged : ms.bytes;
            pthread_mutex_unlock(&o->lock);
        } else if (f->estimated) {
            s->bytes = f->estimate;
            s->bytes_estimated = true;
        } else if (!s->last_error[0]) {
            /* say why there is no figure: the file is missing or bad */
            memcpy(s->last_error, f->why, sizeof s->last_error);
        }
        int64_t last = atomic_load_explicit(&e->last_use_ms, memory_order_relaxed);
        s->idle_ms = ms.n_loads || ms.state == ORCH_STATE_READY ? now - last : -1;
        s->unload_in_ms = -1;
        int64_t exp = expiry(e);
        if (ms.state == ORCH_STATE_READY && !e->pinned && exp >= 0 && ms.n_leases == 0)
            s->unload_in_ms = exp > now ? exp - now : 0;
    }
    if (budget) {
        pthread_mutex_lock(&o->lock);
        budget->budget = o->budget;
        budget->used = o->used;
        budget->n_evictions = o->n_evictions;
        pthread_mutex_unlock(&o->lock);
    }
    free(ff);
    *out = st;
    *n = v->n_roles;
    call_exit(o, ep);
    return ORCH_OK;
}
