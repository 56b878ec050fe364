/*
 * test-model.c — the managed-model core with the fake backend: single-flight
 * load, failures and retries, leases and deferred unload, cancellation,
 * statistics, argument checks.
 */
#include "test.h"
#include "cpu.h"
#include "model.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *fake_file(void)
{
    return test_sparse_file("fake.bin", 4096);
}

/* ---- 64 threads race load: exactly one backend load ----------------------- */

struct race {
    orch_model *m;
    pthread_barrier_t *barrier;
    int rc;
    enum orch_model_state seen;
    bool use_acquire;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    orch_error err = {0};
    pthread_barrier_wait(r->barrier);
    if (r->use_acquire) {
        r->rc = orch_model_acquire(r->m, &err);
        r->seen = orch_model_state(r->m);
        if (r->rc == ORCH_OK)
            orch_model_release(r->m);
    } else {
        r->rc = orch_model_load(r->m, &err);
        r->seen = orch_model_state(r->m);
    }
    return NULL;
}

static void run_race(bool use_acquire, int fail, int expect_rc)
{
    enum { N = 64 };
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = 30; /* long enough that every thread arrives during the load */
    orch_backend *fake = orch_fake_new(&fp);
    orch_fake_fail_next(fake, fail);
    orch_model *m = test_model_new(fake_file(), fake, "race");
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    pthread_t th[N];
    struct race r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct race){.m = m, .barrier = &barrier, .use_acquire = use_acquire};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    struct orch_fake_counts c = orch_fake_counts(fake);
    assert_int_equal(c.n_loads, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].rc, expect_rc);
        assert_int_equal(r[i].seen, expect_rc == ORCH_OK ? ORCH_STATE_READY : ORCH_STATE_FAILED);
    }
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.n_leases, 0);
    assert_int_equal(st.n_loads, expect_rc == ORCH_OK ? 1 : 0);
    pthread_barrier_destroy(&barrier);
    orch_model_free(m);
    c = orch_fake_counts(fake);
    assert_int_equal(c.n_live, 0);
    orch_fake_free(fake);
}

static void test_load_race_64_threads(void **state)
{
    (void)state;
    run_race(false, 0, ORCH_OK);
}

static void test_acquire_race_64_threads(void **state)
{
    (void)state;
    run_race(true, 0, ORCH_OK);
}

/* All threads that joined a failing load see its failure; none retries it. */
static void test_race_failure_shared(void **state)
{
    (void)state;
    run_race(false, 1, ORCH_ELOAD);
}

/* ---- failures ------------------------------------------------------------- */

static void test_fail_then_retry(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "retry");
    orch_error err = {0};
    orch_fake_fail_next(fake, 1);
    assert_rc(orch_model_load(m, &err), ORCH_ELOAD, err);
    assert_non_null(strstr(err.msg, "fake.bin"));
    assert_int_equal(orch_model_state(m), ORCH_STATE_FAILED);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.last_error_code, ORCH_ELOAD);
    assert_non_null(strstr(st.last_error, "injected"));
    assert_int_equal(st.n_load_failures, 1);

    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    assert_int_equal(orch_model_state(m), ORCH_STATE_READY);
    orch_model_stats(m, &st);
    assert_int_equal(st.last_error_code, ORCH_OK);
    assert_int_equal(st.n_loads, 1);
    assert_int_equal(orch_fake_counts(fake).n_loads, 2);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* Fail load N for N = 1, 2, ... until it succeeds: each attempt fails
 * cleanly and the one after N failures works. */
static void test_failure_loop(void **state)
{
    (void)state;
    for (int n = 1; n <= 5; n++) {
        orch_backend *fake = orch_fake_new(NULL);
        orch_model *m = test_model_new(fake_file(), fake, "loop");
        orch_fake_fail_next(fake, n);
        orch_error err = {0};
        int attempts = 0, rc;
        while ((rc = orch_model_acquire(m, &err)) != ORCH_OK) {
            assert_int_equal(rc, ORCH_ELOAD);
            assert_int_equal(orch_model_state(m), ORCH_STATE_FAILED);
            attempts++;
            assert_true(attempts <= n);
        }
        assert_int_equal(attempts, n);
        orch_model_release(m);
        orch_model_free(m);
        struct orch_fake_counts c = orch_fake_counts(fake);
        assert_int_equal(c.n_loads, n + 1);
        assert_int_equal(c.n_live, 0);
        orch_fake_free(fake);
    }
}

static void test_fail_always(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "always");
    orch_fake_fail_always(fake, true);
    orch_error err = {0};
    for (int i = 0; i < 10; i++)
        assert_rc(orch_model_acquire(m, &err), ORCH_ELOAD, err);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.n_leases, 0);
    assert_int_equal(st.n_load_failures, 10);
    orch_fake_fail_always(fake, false);
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    orch_model_release(m);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* ---- leases and unload ------------------------------------------------------- */

static void test_unload_defers_free_until_release(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "lease");
    orch_error err = {0};
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    assert_rc(orch_model_unload(m), ORCH_OK, err);
    /* leases out: nothing freed yet */
    assert_int_equal(orch_model_state(m), ORCH_STATE_DRAINING);
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.n_leases, 2);
    orch_model_release(m);
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    orch_model_release(m); /* the last lease frees */
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    orch_model_stats(m, &st);
    assert_int_equal(st.bytes, 0);
    /* acquire loads again */
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    assert_int_equal(orch_fake_counts(fake).n_loads, 2);
    orch_model_release(m);
    orch_model_free(m);
    orch_fake_free(fake);
}

static void test_unload_without_leases_frees_at_once(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "now");
    orch_error err = {0};
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    assert_rc(orch_model_unload(m), ORCH_OK, err);
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    assert_rc(orch_model_unload(m), ORCH_OK, err); /* idempotent */
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* A thread that asks for a lease while the model drains gets one at once,
 * on the weights still loaded (an unload never makes a request wait for
 * another's to end); the model goes when the last lease returns. */
struct waiter {
    orch_model *m;
    atomic_int done;
    atomic_int release; /* set: give the lease back */
    int rc;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    orch_error err = {0};
    w->rc = orch_model_acquire(w->m, &err);
    atomic_store(&w->done, 1);
    while (!atomic_load(&w->release))
        usleep(1000);
    if (w->rc == ORCH_OK)
        orch_model_release(w->m);
    return NULL;
}

static void test_acquire_during_drain_is_served(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "drain");
    orch_error err = {0};
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    orch_model_unload(m);
    assert_int_equal(orch_model_state(m), ORCH_STATE_DRAINING);
    struct waiter w = {.m = m};
    pthread_t th;
    pthread_create(&th, NULL, waiter_main, &w);
    for (int i = 0; i < 5000 && !atomic_load(&w.done); i++) /* granted while ours drains */
        usleep(1000);
    assert_int_equal(atomic_load(&w.done), 1);
    assert_int_equal(w.rc, ORCH_OK);
    orch_model_release(m); /* ours back: the waiter's still holds the weights */
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    struct orch_model_info info; /* ASan: the backend model is alive */
    assert_rc(orch_model_info(m, &info, &err), ORCH_OK, err);
    atomic_store(&w.release, 1);
    pthread_join(th, NULL);
    struct orch_fake_counts c = orch_fake_counts(fake);
    assert_int_equal(c.n_frees, 1); /* the last lease freed it */
    assert_int_equal(c.n_loads, 1); /* no second load */
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* Many threads take and return leases while others unload and reload: no
 * lease ever sees an unloaded model, and nothing leaks. */
struct churn {
    orch_model *m;
    orch_backend *fake;
    int iters;
    atomic_int *bad;
};

static void *lease_churn(void *arg)
{
    struct churn *c = arg;
    orch_error err = {0};
    for (int i = 0; i < c->iters; i++) {
        if (orch_model_acquire(c->m, &err) != ORCH_OK) {
            atomic_fetch_add(c->bad, 1);
            continue;
        }
        if (orch_model_state(c->m) == ORCH_STATE_UNLOADED ||
            orch_fake_counts(c->fake).n_live != 1)
            atomic_fetch_add(c->bad, 1);
        orch_model_release(c->m);
    }
    return NULL;
}

static void *unload_churn(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->iters / 20; i++) {
        orch_model_unload(c->m);
        usleep(100);
    }
    return NULL;
}

static void test_lease_unload_churn(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "churn");
    atomic_int bad = 0;
    enum { T = 8 };
    pthread_t th[T + 1];
    struct churn c = {.m = m, .fake = fake, .iters = 2000, .bad = &bad};
    for (int i = 0; i < T; i++)
        pthread_create(&th[i], NULL, lease_churn, &c);
    pthread_create(&th[T], NULL, unload_churn, &c);
    for (int i = 0; i <= T; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad), 0);
    struct orch_fake_counts fc = orch_fake_counts(fake);
    assert_int_equal(fc.max_live, 1);
    assert_true(fc.n_loads >= 1);
    orch_model_free(m);
    fc = orch_fake_counts(fake);
    assert_int_equal(fc.n_live, 0);
    assert_int_equal(fc.n_frees, fc.n_loads);
    orch_fake_free(fake);
}

/* Idle unloading racing acquires: a lease never sees its model drain for
 * idleness, and nothing is freed under a lease. */
struct idle_race {
    orch_model *m;
    orch_backend *fake;
    atomic_int stop;
    atomic_int bad;
    atomic_int unloads;
};

static void *idle_lease_main(void *arg)
{
    struct idle_race *r = arg;
    orch_error err = {0};
    for (int i = 0; i < 3000; i++) {
        if (orch_model_acquire(r->m, &err) != ORCH_OK) {
            atomic_fetch_add(&r->bad, 1);
            continue;
        }
        if (orch_model_state(r->m) != ORCH_STATE_READY || orch_fake_counts(r->fake).n_live != 1)
            atomic_fetch_add(&r->bad, 1);
        orch_model_release(r->m);
    }
    return NULL;
}

static void *idle_unloader_main(void *arg)
{
    struct idle_race *r = arg;
    while (!atomic_load(&r->stop))
        if (orch__model_unload_if_idle(r->m, "idle"))
            atomic_fetch_add(&r->unloads, 1);
    return NULL;
}

static void test_idle_unload_races_acquire(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "idle");
    struct idle_race r = {.m = m, .fake = fake};
    pthread_t th[5];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, idle_lease_main, &r);
    pthread_create(&th[4], NULL, idle_unloader_main, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    atomic_store(&r.stop, 1);
    pthread_join(th[4], NULL);
    assert_int_equal(atomic_load(&r.bad), 0);
    struct orch_fake_counts c = orch_fake_counts(fake);
    assert_int_equal(c.max_live, 1);
    assert_int_equal(c.n_frees, atomic_load(&r.unloads));
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.n_leases, 0);
    /* a model that ends READY with no lease can still be unloaded: the
     * lease accounting came back to zero */
    if (orch_model_state(m) == ORCH_STATE_READY)
        assert_true(orch__model_unload_if_idle(m, "idle"));
    orch_model_free(m);
    orch_fake_free(fake);
}

/* ---- nested leases and forced interleavings ------------------------------------ */

static struct orch_gen_params two_tokens(void)
{
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.max_tokens = 2;
    return p;
}

struct nested {
    orch_model *m;
    orch_backend *fake;
    int rc_acquire, rc_generate, rc_load, rc_info;
    enum orch_model_state during;
    int64_t frees_before_last;
};

/* A thread holding a lease asks again while the model drains: every call
 * runs at once on the weights still loaded; the free waits for all. */
static void *nested_main(void *arg)
{
    struct nested *n = arg;
    orch_error err = {0};
    if (orch_model_acquire(n->m, &err) != ORCH_OK)
        return NULL;
    orch_model_unload(n->m); /* our lease is out: DRAINING */
    n->during = orch_model_state(n->m);
    n->rc_acquire = orch_model_acquire(n->m, &err);
    struct orch_gen_params gp = two_tokens();
    struct orch_gen_result res;
    n->rc_generate = orch_model_generate(n->m, "hello", &gp, &res, &err);
    orch_gen_result_clear(&res);
    n->rc_load = orch_model_load(n->m, &err);
    struct orch_model_info info;
    n->rc_info = orch_model_info(n->m, &info, &err);
    orch_model_release(n->m);
    n->frees_before_last = orch_fake_counts(n->fake).n_frees;
    orch_model_release(n->m);
    return NULL;
}

static void test_nested_lease_during_drain(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "nested");
    struct nested n = {.m = m, .fake = fake, .rc_acquire = -100};
    assert_true(test_run_within(nested_main, &n, 10)); /* it used to hang here */
    assert_int_equal(n.during, ORCH_STATE_DRAINING);
    assert_int_equal(n.rc_acquire, ORCH_OK);
    assert_int_equal(n.rc_generate, ORCH_OK);
    assert_int_equal(n.rc_load, ORCH_OK);
    assert_int_equal(n.rc_info, ORCH_OK);
    assert_int_equal(n.frees_before_last, 0);
    struct orch_fake_counts c = orch_fake_counts(fake);
    assert_int_equal(c.n_frees, 1);
    assert_int_equal(c.n_loads, 1);
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    orch_model_free(m);
    orch_fake_free(fake);
}

struct leaser {
    orch_model *m;
    pthread_t th;
    atomic_int step; /* 0 idle, 1 acquire, 2 release, -1 quit */
    atomic_int done; /* steps completed */
    int rc;
};

/* A thread that takes and returns leases when told to. */
static void *leaser_main(void *arg)
{
    struct leaser *l = arg;
    orch_error err = {0};
    for (;;) {
        int s;
        while ((s = atomic_load(&l->step)) == 0)
            usleep(100);
        if (s < 0)
            return NULL;
        if (s == 1)
            l->rc = orch_model_acquire(l->m, &err);
        else
            orch_model_release(l->m);
        atomic_store(&l->step, 0);
        atomic_fetch_add(&l->done, 1);
    }
}

static void leaser_do(struct leaser *l, int step, bool wait)
{
    int before = atomic_load(&l->done);
    atomic_store(&l->step, step);
    while (wait && atomic_load(&l->done) == before)
        usleep(100);
}

struct idle_call {
    orch_model *m;
    bool freed;
};

static void *idle_unload_main(void *arg)
{
    struct idle_call *c = arg;
    c->freed = orch__model_unload_if_idle(c->m, "idle");
    return NULL;
}

/* The use-after-free the review proved: a release that met a stopped slot
 * during an idle unload's count, held there while the model is revived and
 * then killed, must count exactly once. */
static void test_release_straddles_revive_and_kill(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "revive");
    orch_error err = {0};
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    struct leaser a = {.m = m};
    pthread_create(&a.th, NULL, leaser_main, &a);

    /* the idle unloader looks, sees no lease, and parks */
    test_pause_arm(ORCH_PAUSE_IDLE_LOOKED, m);
    struct idle_call ic = {.m = m};
    pthread_t u;
    pthread_create(&u, NULL, idle_unload_main, &ic);
    test_pause_wait(ORCH_PAUSE_IDLE_LOOKED);
    /* two leases slip in: one on thread a, one here */
    leaser_do(&a, 1, true);
    assert_int_equal(a.rc, ORCH_OK);
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    /* the unloader stops the slots and counts 2, then parks */
    test_pause_arm(ORCH_PAUSE_IDLE_COUNTED, m);
    test_pause_go(ORCH_PAUSE_IDLE_LOOKED);
    test_pause_wait(ORCH_PAUSE_IDLE_COUNTED);
    /* a's release meets its stopped slot and parks before the drain count */
    test_pause_arm(ORCH_PAUSE_RELEASE_SLOW, m);
    leaser_do(&a, 2, false);
    test_pause_wait(ORCH_PAUSE_RELEASE_SLOW);
    /* the unloader revives (2 leases out), then an unload kills */
    test_pause_go(ORCH_PAUSE_IDLE_COUNTED);
    pthread_join(u, NULL);
    assert_false(ic.freed);
    assert_int_equal(orch_model_state(m), ORCH_STATE_READY);
    orch_model_unload(m);
    assert_int_equal(orch_model_state(m), ORCH_STATE_DRAINING);
    /* a's release lands: one lease (ours) is still out */
    test_pause_go(ORCH_PAUSE_RELEASE_SLOW);
    while (atomic_load(&a.done) < 2)
        usleep(100);
    test_pause_off();
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    assert_int_equal(orch_model_state(m), ORCH_STATE_DRAINING);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.n_leases, 1);
    struct orch_model_info info; /* ASan: reads the backend model */
    assert_rc(orch_model_info(m, &info, &err), ORCH_OK, err);
    orch_model_release(m);
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    atomic_store(&a.step, -1);
    pthread_join(a.th, NULL);
    orch_model_free(m);
    orch_fake_free(fake);
}

struct unload_call {
    orch_model *m;
};

static void *unload_main(void *arg)
{
    orch_model_unload(((struct unload_call *)arg)->m);
    return NULL;
}

/* A release that lands while an unload has stopped the slots but not yet
 * published the count: the drain count goes below zero and the kill's sum
 * brings it back; nothing is freed under the remaining lease. */
static void test_release_inside_kill(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "kill");
    orch_error err = {0};
    struct leaser a = {.m = m};
    pthread_create(&a.th, NULL, leaser_main, &a);
    leaser_do(&a, 1, true);
    assert_int_equal(a.rc, ORCH_OK);
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    test_pause_arm(ORCH_PAUSE_KILL_COUNTED, m);
    struct unload_call uc = {.m = m};
    pthread_t k;
    pthread_create(&k, NULL, unload_main, &uc);
    test_pause_wait(ORCH_PAUSE_KILL_COUNTED);
    leaser_do(&a, 2, true); /* not the last: nothing freed */
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    test_pause_go(ORCH_PAUSE_KILL_COUNTED);
    pthread_join(k, NULL);
    test_pause_off();
    assert_int_equal(orch_model_state(m), ORCH_STATE_DRAINING);
    assert_int_equal(orch_fake_counts(fake).n_frees, 0);
    orch_model_release(m);
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    atomic_store(&a.step, -1);
    pthread_join(a.th, NULL);
    orch_model_free(m);
    orch_fake_free(fake);
}

extern int64_t orch__slot_fold;

struct pump {
    orch_model *m;
    int n;
    bool acquire;
    int bad;
};

static void *pump_main(void *arg)
{
    struct pump *p = arg;
    orch_error err = {0};
    for (int i = 0; i < p->n; i++) {
        if (p->acquire)
            p->bad += orch_model_acquire(p->m, &err) != ORCH_OK;
        else
            orch_model_release(p->m);
    }
    return NULL;
}

/* Leases taken on one thread and returned on another drive two slots apart
 * without bound; folding keeps every count in range and the sum exact. */
static void test_slot_counts_fold(void **state)
{
    (void)state;
    int64_t saved = orch__slot_fold;
    orch__slot_fold = 8;
    orch_backend *fake = orch_fake_new(NULL);
    orch_model *m = test_model_new(fake_file(), fake, "fold");
    struct orch_model_stats st;
    for (int round = 0; round < 3; round++) {
        struct pump acq = {.m = m, .n = 1000, .acquire = true};
        assert_true(test_run_within(pump_main, &acq, 10));
        assert_int_equal(acq.bad, 0);
        orch_model_stats(m, &st);
        assert_int_equal(st.n_leases, 1000);
        struct pump rel = {.m = m, .n = 600};
        assert_true(test_run_within(pump_main, &rel, 10));
        orch_model_stats(m, &st);
        assert_int_equal(st.n_leases, 400);
        rel.n = 400;
        assert_true(test_run_within(pump_main, &rel, 10));
        orch_model_stats(m, &st);
        assert_int_equal(st.n_leases, 0);
    }
    /* the accounting came back to zero: an idle unload frees at once */
    assert_true(orch__model_unload_if_idle(m, "idle"));
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    /* and an unload with folded leases out waits for exactly them */
    struct pump acq = {.m = m, .n = 100, .acquire = true};
    assert_true(test_run_within(pump_main, &acq, 10));
    orch_model_unload(m);
    struct pump rel = {.m = m, .n = 99};
    assert_true(test_run_within(pump_main, &rel, 10));
    assert_int_equal(orch_fake_counts(fake).n_frees, 1);
    orch_model_release(m);
    assert_int_equal(orch_fake_counts(fake).n_frees, 2);
    orch_model_free(m);
    orch_fake_free(fake);
    orch__slot_fold = saved;
}

/* ---- cancellation and progress ------------------------------------------------ */

struct canceller {
    orch_model *m;
};

static void *cancel_main(void *arg)
{
    struct canceller *c = arg;
    while (orch_model_state(c->m) != ORCH_STATE_LOADING)
        usleep(200);
    usleep(5000);
    orch_model_cancel_load(c->m);
    return NULL;
}

static void test_cancel_load(void **state)
{
    (void)state;
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = 5000;
    orch_backend *fake = orch_fake_new(&fp);
    orch_model *m = test_model_new(fake_file(), fake, "cancel");
    struct canceller c = {m};
    pthread_t th;
    pthread_create(&th, NULL, cancel_main, &c);
    orch_error err = {0};
    assert_rc(orch_model_load(m, &err), ORCH_ECANCELED, err);
    pthread_join(th, NULL);
    assert_int_equal(orch_model_state(m), ORCH_STATE_FAILED);
    assert_int_equal(orch_fake_counts(fake).n_live, 0);
    /* the next load runs again and works */
    orch_fake_set_load_ms(fake, 1);
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    orch_model_free(m);
    orch_fake_free(fake);
}

static int progress_calls;
static float progress_last;

static bool progress_cb(const char *role, float p, void *ud)
{
    (void)ud;
    assert_string_equal(role, "prog");
    assert_true(p >= progress_last);
    progress_last = p;
    progress_calls++;
    return true;
}

static bool progress_stop(const char *role, float p, void *ud)
{
    (void)role;
    (void)ud;
    return p < 0.5f;
}

static void test_progress_and_callback_cancel(void **state)
{
    (void)state;
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = 10;
    orch_backend *fake = orch_fake_new(&fp);
    struct orch_model_params p = orch_model_default_params();
    p.path = fake_file();
    p.backend = fake;
    p.role = "prog";
    p.progress = progress_cb;
    orch_model *m;
    orch_error err = {0};
    assert_rc(orch_model_new(&p, &m, &err), ORCH_OK, err);
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    assert_true(progress_calls >= 2);
    assert_true(progress_last == 1.0f);
    orch_model_free(m);

    p.progress = progress_stop;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_OK, err);
    assert_rc(orch_model_load(m, &err), ORCH_ECANCELED, err);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* ---- statistics and logs ---------------------------------------------------------- */

static void test_stats_and_load_logs(void **state)
{
    (void)state;
    struct orch_fake_params fp = orch_fake_default_params();
    fp.size_bytes = 123456789;
    fp.load_ms = 5;
    orch_backend *fake = orch_fake_new(&fp);
    orch_model *m = test_model_new(fake_file(), fake, "statrole");
    orch_error err = {0};
    test_log_capture_start(ORCH_LOG_INFO);
    assert_rc(orch_model_acquire(m, &err), ORCH_OK, err);
    char *log = test_log_capture_stop();
    assert_non_null(strstr(log, "role=statrole event=load_start"));
    assert_non_null(strstr(log, "event=load_end"));
    assert_non_null(strstr(log, "bytes=123456789"));
    assert_non_null(strstr(log, "fake.bin"));
    assert_non_null(strstr(log, " ms="));
    free(log);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.state, ORCH_STATE_READY);
    assert_int_equal(st.bytes, 123456789);
    assert_int_equal(st.n_leases, 1);
    assert_int_equal(st.n_loads, 1);
    assert_true(st.load_ms >= 4.0);
    orch_model_release(m);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* ---- argument checks ------------------------------------------------------------ */

static void test_bad_params(void **state)
{
    (void)state;
    orch_model *m = (orch_model *)0x1;
    orch_error err = {0};
    struct orch_model_params p = orch_model_default_params();
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err); /* no path */
    assert_null(m);
    assert_rc(orch_model_new(NULL, &m, &err), ORCH_EINVAL, err);
    assert_rc(orch_model_new(&p, NULL, &err), ORCH_EINVAL, err);
    p.path = "x.gguf";
    p.role = "r1";
    p.n_ctx = 0;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "n_ctx 0"));
    assert_non_null(strstr(err.msg, "r1"));
    p.n_ctx = ORCH_N_CTX_MAX + 1;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err);
    p.n_ctx = -5;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err);
    p.n_ctx = ORCH_N_CTX_TRAIN;
    p.n_threads = -1;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err);
    p.n_threads = 0;
    p.n_gpu_layers = -7;
    assert_rc(orch_model_new(&p, &m, &err), ORCH_EINVAL, err);
    /* NULL models are refused, never crash */
    assert_rc(orch_model_load(NULL, &err), ORCH_EINVAL, err);
    assert_rc(orch_model_acquire(NULL, &err), ORCH_EINVAL, err);
    orch_model_release(NULL);
    orch_model_free(NULL);
    assert_int_equal(orch_model_state(NULL), ORCH_STATE_UNLOADED);
    assert_int_equal(orch_default_n_threads() >= 1, 1);
    assert_true(orch_default_n_threads() <= sysconf(_SC_NPROCESSORS_ONLN));
    /* the error table */
    assert_string_equal(orch_err_name(ORCH_EBUDGET), "ORCH_EBUDGET");
    assert_string_equal(orch_strerror(ORCH_OK), "success");
    assert_string_equal(orch_err_name(12345), "ORCH_UNKNOWN");
}

static int fail_model_alloc(int id)
{
    return id == ORCH_FAULT_OOM_MODEL;
}

static void test_oom_on_new(void **state)
{
    (void)state;
    orch__fault_hook = fail_model_alloc;
    struct orch_model_params p = orch_model_default_params();
    p.path = "x.gguf";
    p.role = "oom";
    orch_model *m = (orch_model *)0x1;
    orch_error err = {0};
    int rc = orch_model_new(&p, &m, &err);
    orch__fault_hook = NULL;
    assert_rc(rc, ORCH_ENOMEM, err);
    assert_null(m);
    assert_non_null(strstr(err.msg, "oom"));
}

static void test_missing_file_with_fake(void **state)
{
    (void)state;
    orch_backend *fake = orch_fake_new(NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/absent.bin", test_tmpdir());
    orch_model *m = test_model_new(path, fake, "absent");
    orch_error err = {0};
    assert_rc(orch_model_load(m, &err), ORCH_ENOENT, err);
    assert_non_null(strstr(err.msg, "absent.bin"));
    assert_int_equal(orch_model_state(m), ORCH_STATE_FAILED);
    orch_model_free(m);
    orch_fake_free(fake);
}

/* ---- the CPU budget across processes (worker processes share it) ------------ */

static void *take_and_give(void *arg)
{
    (void)arg;
    struct orch__cpu_user u = {0};
    struct orch__cpu_hold h = {0};
    orch__cpu_begin(&u, &h, 1);
    orch__cpu_release(&u, &h);
    return NULL;
}

/* A child process that shares the budget (fork keeps the shared mapping, as
 * a worker maps it) waits while the parent holds the only token, gets it
 * once the parent gives it back; a child that dies holding it gives it
 * back through orch__cpu_reclaim. */
static void test_cpu_budget_shared_by_processes(void **state)
{
    (void)state;
    int32_t before = orch_cpu_budget(1);
    struct orch__cpu_user u = {0};
    struct orch__cpu_hold h = {0};
    assert_int_equal(orch__cpu_begin(&u, &h, 1), 1);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct orch__cpu_user cu = {0};
        struct orch__cpu_hold ch = {0};
        int n = orch__cpu_begin(&cu, &ch, 1); /* waits for the parent's token */
        char c = (char)('0' + n);
        _exit(write(p[1], &c, 1) == 1 ? 0 : 1); /* dies holding it */
    }
    assert_true(pid > 0);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 300), 0); /* the child waits while we hold it */
    orch__cpu_release(&u, &h);
    char c = 0;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, '1');
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    /* the dead child's token is out until it is reclaimed */
    orch__cpu_reclaim((int32_t)pid);
    assert_true(test_run_within(take_and_give, NULL, 10)); /* would wait forever without it */
    close(p[0]);
    close(p[1]);
    orch_cpu_budget(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_race_64_threads),
        cmocka_unit_test(test_acquire_race_64_threads),
        cmocka_unit_test(test_race_failure_shared),
        cmocka_unit_test(test_fail_then_retry),
        cmocka_unit_test(test_failure_loop),
        cmocka_unit_test(test_fail_always),
        cmocka_unit_test(test_unload_defers_free_until_release),
        cmocka_unit_test(test_unload_without_leases_frees_at_once),
        cmocka_unit_test(test_acquire_during_drain_is_served),
        cmocka_unit_test(test_lease_unload_churn),
        cmocka_unit_test(test_idle_unload_races_acquire),
        cmocka_unit_test(test_nested_lease_during_drain),
        cmocka_unit_test(test_release_straddles_revive_and_kill),
        cmocka_unit_test(test_release_inside_kill),
        cmocka_unit_test(test_slot_counts_fold),
        cmocka_unit_test(test_cancel_load),
        cmocka_unit_test(test_progress_and_callback_cancel),
        cmocka_unit_test(test_stats_and_load_logs),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_missing_file_with_fake),
        cmocka_unit_test(test_oom_on_new),
        cmocka_unit_test(test_cpu_budget_shared_by_processes),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, test_teardown);
}
