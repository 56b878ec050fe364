/*
 * test-orchestra.c — roles, fallbacks, shared weights, the memory budget,
 * eviction and idle unloading, with the fake backend (settable sizes and
 * latencies, a controllable clock); then roles on the real model; then a
 * 16-thread stress under a budget that forces evictions.
 */
#include "test.h"
#include "internal.h"

#include <signal.h>
#include <sys/wait.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KB 1024ull

/* ---- fixture ------------------------------------------------------------------ */

static _Atomic int64_t g_clock_ms;

static int64_t test_clock(void *ud)
{
    (void)ud;
    return atomic_load(&g_clock_ms);
}

struct fx {
    orch_backend *fake;
    orch_orchestra *o;
};

/* Opens an orchestra over `ini` where "@name:size" in a path is replaced by
 * a sparse file of that many KiB (the fake's model size). */
static void fx_open(struct fx *fx, const char *ini, uint32_t load_ms)
{
    char text[4096], *w = text;
    for (const char *p = ini; *p;) {
        if (*p == '@') {
            char name[64];
            unsigned kib;
            int used;
            assert_int_equal(sscanf(p + 1, "%63[a-z0-9_]:%u%n", name, &kib, &used), 2);
            char file[80];
            snprintf(file, sizeof file, "%s.bin", name);
            const char *path = test_sparse_file(file, (uint64_t)kib * KB);
            w += sprintf(w, "%s", path);
            p += 1 + used;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_parse(text, "fx.ini", false, &cfg, &err), ORCH_OK, err);
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = load_ms;
    fx->fake = orch_fake_new(&fp);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.backend = fx->fake;
    op.clock = test_clock;
    op.no_reaper = true;
    atomic_store(&g_clock_ms, 1000);
    assert_rc(orch_open(cfg, &op, &fx->o, &err), ORCH_OK, err);
    orch_config_free(cfg);
}

static void fx_close(struct fx *fx)
{
    orch_close(fx->o);
    assert_int_equal(orch_fake_counts(fx->fake).n_live, 0);
    orch_fake_free(fx->fake);
}

static int64_t orch_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum orch_model_state role_state(orch_orchestra *o, const char *role)
{
    struct orch_role_status *st;
    size_t n;
    orch_error err = {0};
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    enum orch_model_state s = ORCH_STATE_FAILED;
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(st[i].role, role)) {
            s = st[i].state;
            found = true;
        }
    free(st);
    assert_true(found);
    return s;
}

/* acquire + release, at the fake clock's time t (ms) */
static void use(orch_orchestra *o, const char *role, int64_t t)
{
    atomic_store(&g_clock_ms, t);
    orch_model *m;
    orch_error err = {0};
    assert_rc(orch_role_acquire(o, role, &m, &err), ORCH_OK, err);
    assert_int_equal(orch_model_state(m), ORCH_STATE_READY);
    orch_role_release(o, m);
}

/* ---- budget and eviction -------------------------------------------------------- */

static const char *three_roles =
    "[defaults]\nmemory_budget = 250K\nidle_ttl = -1\n"
    "[a]\npath = @a:100\n[b]\npath = @b:100\n[c]\npath = @c:100\n";

static void test_lru_order(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, three_roles, 0);
    use(fx.o, "a", 1000);
    use(fx.o, "b", 2000);
    use(fx.o, "a", 3000); /* a is now the most recent */
    test_log_capture_start(ORCH_LOG_INFO);
    use(fx.o, "c", 4000); /* must evict b, the least recently used */
    char *log = test_log_capture_stop();
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_UNLOADED);
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_READY);
    /* the eviction is logged with its reason and bytes */
    assert_non_null(strstr(log, "event=evict victim=b reason=budget"));
    assert_non_null(strstr(log, "role=b event=unload_end"));
    assert_non_null(strstr(log, "reason=budget bytes=102400"));
    free(log);
    use(fx.o, "b", 5000); /* now a is the LRU */
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_UNLOADED);
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    orch_error err = {0};
    assert_rc(orch_status(fx.o, &st, &n, &b, &err), ORCH_OK, err);
    assert_int_equal(b.budget, 250 * KB);
    assert_int_equal(b.used, 200 * KB);
    assert_int_equal(b.n_evictions, 2);
    free(st);
    assert_int_equal(orch_fake_counts(fx.fake).max_live, 2);
    fx_close(&fx);
}

static void test_pinned_never_evicted(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nmemory_budget = 250K\nidle_ttl = -1\n"
            "[a]\npath = @a:100\npin = true\n[b]\npath = @b:100\n[c]\npath = @c:100\n",
            0);
    use(fx.o, "a", 1000); /* oldest, but pinned */
    use(fx.o, "b", 2000);
    use(fx.o, "c", 3000);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_UNLOADED);
    use(fx.o, "b", 4000);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_UNLOADED);
    fx_close(&fx);
}

struct bg_acquire {
    orch_orchestra *o;
    const char *role;
    atomic_int done;
    int rc;
    orch_error err;
};

static void *bg_acquire_main(void *arg)
{
    struct bg_acquire *b = arg;
    orch_model *m;
    b->rc = orch_role_acquire(b->o, b->role, &m, &b->err);
    atomic_store(&b->done, 1);
    if (b->rc == ORCH_OK)
        orch_role_release(b->o, m);
    return NULL;
}

/* Leased models are never evicted; the load waits and goes on when a lease
 * returns. */
static void test_load_waits_for_lease(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, three_roles, 0);
    orch_model *ma, *mb;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "a", &ma, &err), ORCH_OK, err);
    assert_rc(orch_role_acquire(fx.o, "b", &mb, &err), ORCH_OK, err);
    struct bg_acquire bg = {.o = fx.o, .role = "c"};
    pthread_t th;
    pthread_create(&th, NULL, bg_acquire_main, &bg);
    usleep(50000);
    assert_int_equal(atomic_load(&bg.done), 0);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_LOADING);
    orch_role_release(fx.o, mb); /* b becomes idle: c may evict it */
    pthread_join(th, NULL);
    assert_rc(bg.rc, ORCH_OK, bg.err);
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_UNLOADED);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(orch_fake_counts(fx.fake).max_live, 2);
    orch_role_release(fx.o, ma);
    fx_close(&fx);
}

static void test_wait_times_out_with_reason(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nmemory_budget = 250K\nload_timeout = 0.1\nidle_ttl = -1\n"
            "[a]\npath = @a:100\n[b]\npath = @b:100\npin = true\n[c]\npath = @c:100\n",
            0);
    orch_model *ma;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "a", &ma, &err), ORCH_OK, err);
    use(fx.o, "b", 2000);
    orch_model *mc;
    assert_rc(orch_role_acquire(fx.o, "c", &mc, &err), ORCH_ETIMEDOUT, err);
    /* says what it needs and what holds the memory */
    assert_non_null(strstr(err.msg, "role 'c'"));
    assert_non_null(strstr(err.msg, "needs 100.0 KiB"));
    assert_non_null(strstr(err.msg, "budget is 250.0 KiB"));
    assert_non_null(strstr(err.msg, "a (100.0 KiB, ready, 1 lease)"));
    assert_non_null(strstr(err.msg, "pinned"));
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_FAILED);
    orch_role_release(fx.o, ma);
    /* with the lease back the next try evicts a and works */
    assert_rc(orch_role_acquire(fx.o, "c", &mc, &err), ORCH_OK, err);
    orch_role_release(fx.o, mc);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_UNLOADED);
    fx_close(&fx);
}

static void test_bigger_than_budget_fails_at_once(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nmemory_budget = 250K\nidle_ttl = -1\n"
            "[a]\npath = @a:100\n[huge]\npath = @huge:1000\n",
            0);
    use(fx.o, "a", 1000);
    orch_model *m;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "huge", &m, &err), ORCH_EBUDGET, err);
    assert_non_null(strstr(err.msg, "more than the whole memory budget"));
    assert_non_null(strstr(err.msg, "huge.bin"));
    /* nothing was evicted for it, and no backend load ran */
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 1);
    fx_close(&fx);
}

/* ---- idle unloading -------------------------------------------------------------- */

static void test_idle_ttl(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[a]\npath = @a:10\nidle_ttl = 10\n"
            "[b]\npath = @b:10\nidle_ttl = 0\n"
            "[c]\npath = @c:10\nidle_ttl = -1\n"
            "[d]\npath = @d:10\nidle_ttl = 1\npin = true\n",
            0);
    use(fx.o, "a", 1000);
    use(fx.o, "b", 1000);
    use(fx.o, "c", 1000);
    use(fx.o, "d", 1000);
    /* ttl 0: gone as soon as the last lease returned */
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_UNLOADED);
    atomic_store(&g_clock_ms, 6000);
    assert_int_equal(orch_tick(fx.o), 0);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    /* status says when */
    struct orch_role_status *st;
    size_t n;
    orch_error err = {0};
    assert_rc(orch_status(fx.o, &st, &n, NULL, &err), ORCH_OK, err);
    assert_int_equal(st[0].unload_in_ms, 5000);
    assert_int_equal(st[0].idle_ms, 5000);
    assert_int_equal(st[2].unload_in_ms, -1);
    assert_int_equal(st[3].unload_in_ms, -1);
    free(st);
    /* a lease out keeps it however long */
    orch_model *m;
    assert_rc(orch_role_acquire(fx.o, "a", &m, &err), ORCH_OK, err);
    atomic_store(&g_clock_ms, 100000);
    assert_int_equal(orch_tick(fx.o), 0);
    atomic_store(&g_clock_ms, 100000);
    orch_role_release(fx.o, m);
    atomic_store(&g_clock_ms, 109999);
    assert_int_equal(orch_tick(fx.o), 0);
    atomic_store(&g_clock_ms, 110000);
    test_log_capture_start(ORCH_LOG_INFO);
    assert_int_equal(orch_tick(fx.o), 1);
    char *log = test_log_capture_stop();
    assert_non_null(strstr(log, "role=a event=unload_end"));
    assert_non_null(strstr(log, "reason=idle"));
    free(log);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_UNLOADED);
    /* never, and pinned, stay */
    atomic_store(&g_clock_ms, 10000000);
    assert_int_equal(orch_tick(fx.o), 0);
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_READY);
    assert_int_equal(role_state(fx.o, "d"), ORCH_STATE_READY);
    fx_close(&fx);
}

/* The reaper thread does it on its own (real clock, 1 s TTL). */
static void test_reaper_thread(void **state)
{
    (void)state;
    orch_config *cfg;
    orch_error err = {0};
    char text[600];
    snprintf(text, sizeof text, "[a]\npath = %s\nidle_ttl = 0.2\n", test_sparse_file("r.bin", 10));
    /* idle_ttl takes whole seconds */
    assert_rc(orch_config_parse(text, "r.ini", false, &cfg, &err), ORCH_ECONFIG, err);
    snprintf(text, sizeof text, "[a]\npath = %s\nidle_ttl = 1\n", test_sparse_file("r.bin", 10));
    assert_rc(orch_config_parse(text, "r.ini", false, &cfg, &err), ORCH_OK, err);
    orch_backend *fake = orch_fake_new(NULL);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.backend = fake;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    use(o, "a", 0);
    assert_int_equal(role_state(o, "a"), ORCH_STATE_READY);
    for (int i = 0; i < 100 && role_state(o, "a") != ORCH_STATE_UNLOADED; i++)
        usleep(50000);
    assert_int_equal(role_state(o, "a"), ORCH_STATE_UNLOADED);
    orch_close(o);
    orch_config_free(cfg);
    orch_fake_free(fake);
}

/* ---- roles: fallbacks, shared weights --------------------------------------------- */

static void test_fallback_and_shared_file(void **state)
{
    (void)state;
    /* three roles name one file by different strings; one has a fallback */
    const char *path = test_sparse_file("shared.bin", 100 * KB);
    char dir[600], text[2048];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    char link[700];
    snprintf(link, sizeof link, "%s/link.bin", dir);
    assert_int_equal(symlink(path, link), 0);
    snprintf(text, sizeof text,
             "[reasoning]\npath = %s\nn_ctx = 4096\n"
             "[coder]\npath = %s/./shared.bin\nn_ctx = 1024\ntemperature = 0.3\n"
             "[embed]\npath = %s\nembedding = true\n"
             "[dream]\nfallback = coder\n",
             path, dir, link);
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_parse(text, "s.ini", false, &cfg, &err), ORCH_OK, err);
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = 20;
    orch_backend *fake = orch_fake_new(&fp);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.backend = fake;
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    orch_config_free(cfg);
    const char *roles[] = {"reasoning", "coder", "embed", "dream"};
    assert_rc(orch_preload(o, roles, 4, &err), ORCH_OK, err);
    assert_int_equal(orch_fake_counts(fake).n_loads, 1);
    orch_model *m[4];
    for (int i = 0; i < 4; i++)
        assert_rc(orch_role_acquire(o, roles[i], &m[i], &err), ORCH_OK, err);
    assert_ptr_equal(m[0], m[1]);
    assert_ptr_equal(m[0], m[2]);
    assert_ptr_equal(m[0], m[3]);
    for (int i = 0; i < 4; i++)
        orch_role_release(o, m[i]);
    /* each role keeps its own sampling; dream falls back to coder's model
     * but has its own (default) sampling */
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(o, "coder", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.3f);
    assert_int_equal(g.n_ctx, 1024);
    assert_rc(orch_role_gen_params(o, "dream", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.8f);
    /* generation by role works on the shared model */
    struct orch_gen_result res;
    g.max_tokens = 3;
    assert_rc(orch_generate(o, "dream", "a b c", &g, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, "tok0 tok1 tok2");
    orch_gen_result_clear(&res);
    /* unloading one role unloads the shared model for all */
    assert_rc(orch_unload(o, "coder", &err), ORCH_OK, err);
    assert_int_equal(role_state(o, "reasoning"), ORCH_STATE_UNLOADED);
    assert_rc(orch_unload(o, "nope", &err), ORCH_ENOROLE, err);
    orch_model *x;
    assert_rc(orch_role_acquire(o, "nope", &x, &err), ORCH_ENOROLE, err);
    assert_non_null(strstr(err.msg, "nope"));
    orch_close(o);
    orch_fake_free(fake);
}

/* ---- no head-of-line blocking; parallel loads ---------------------------------------- */

static void test_no_head_of_line_blocking(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nidle_ttl = -1\n[a]\npath = @a:10\n[b]\npath = @b:10\n[c]\npath = @c:10\n",
            0);
    use(fx.o, "a", 1000);
    orch_fake_set_load_ms(fx.fake, 400);
    struct bg_acquire bb = {.o = fx.o, .role = "b"}, bc = {.o = fx.o, .role = "c"};
    pthread_t tb, tc;
    pthread_create(&tb, NULL, bg_acquire_main, &bb);
    pthread_create(&tc, NULL, bg_acquire_main, &bc);
    while (role_state(fx.o, "b") != ORCH_STATE_LOADING ||
           role_state(fx.o, "c") != ORCH_STATE_LOADING)
        usleep(1000);
    /* while b and c load, a keeps serving */
    for (int i = 0; i < 1000; i++) {
        orch_model *m;
        orch_error err = {0};
        assert_rc(orch_role_acquire(fx.o, "a", &m, &err), ORCH_OK, err);
        orch_role_release(fx.o, m);
    }
    struct orch_gen_result res;
    orch_error err = {0};
    assert_rc(orch_generate(fx.o, "a", "x", NULL, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    /* and the two loads were still in flight, together */
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_LOADING);
    assert_int_equal(role_state(fx.o, "c"), ORCH_STATE_LOADING);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    assert_int_equal(bb.rc, ORCH_OK);
    assert_int_equal(bc.rc, ORCH_OK);
    assert_int_equal(orch_fake_counts(fx.fake).max_loading, 2);
    fx_close(&fx);
}

/* Requests for a model that is loading join that load. */
static void test_requests_join_load(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\n[b]\nfallback = a\n", 100);
    struct bg_acquire r[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (struct bg_acquire){.o = fx.o, .role = i % 2 ? "a" : "b"};
        pthread_create(&th[i], NULL, bg_acquire_main, &r[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].rc, ORCH_OK);
    }
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 1);
    fx_close(&fx);
}

struct late_release {
    orch_orchestra *o;
    orch_model *m;
    atomic_int released;
};

static void *late_release_main(void *arg)
{
    struct late_release *l = arg;
    usleep(100000);
    atomic_store(&l->released, 1);
    orch_role_release(l->o, l->m);
    return NULL;
}

static void test_close_waits_for_leases(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\n", 0);
    struct late_release l = {.o = fx.o};
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "a", &l.m, &err), ORCH_OK, err);
    pthread_t th;
    pthread_create(&th, NULL, late_release_main, &l);
    orch_close(fx.o);
    assert_int_equal(atomic_load(&l.released), 1);
    pthread_join(th, NULL);
    assert_int_equal(orch_fake_counts(fx.fake).n_live, 0);
    orch_fake_free(fx.fake);
}

/* ---- requests racing unload and close ---------------------------------------------- */

struct gen_loop {
    orch_orchestra *o;
    const char *role;
    const char *prompt;
    int iters;
    atomic_int stop;
    atomic_int done; /* calls finished: the watchdog's progress */
    int bad;
    int rc;
    orch_error err;
};

static void *gen_loop_main(void *arg)
{
    struct gen_loop *g = arg;
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 1;
    for (int i = 0; i < g->iters && !atomic_load(&g->stop); i++) {
        struct orch_gen_result res;
        orch_error err = {0};
        int rc = orch_generate(g->o, g->role, g->prompt, &gp, &res, &err);
        if (rc != ORCH_OK) {
            g->bad++;
            g->err = err;
        }
        orch_gen_result_clear(&res);
        atomic_fetch_add(&g->done, 1);
    }
    return NULL;
}

static void *unload_loop_main(void *arg)
{
    struct gen_loop *g = arg;
    while (!atomic_load(&g->stop))
        orch_unload(g->o, g->role, NULL);
    return NULL;
}

/* The review's reproducer: one thread generating, one unloading. A request
 * runs on the one lease it took, so an unload between its steps cannot
 * leave it waiting for its own drain. It used to hang within a few
 * thousand calls; a hang is a call that never returns, so the watchdog
 * wants progress, not a deadline (a sanitizer build on a busy CPU is
 * slow, never stuck). */
static void test_generate_races_unload(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\n", 0);
    size_t big = 1 << 20; /* a 1 MiB prompt widens the window */
    char *prompt = malloc(big + 1);
    memset(prompt, 'x', big);
    prompt[big] = '\0';
    struct gen_loop g = {.o = fx.o, .role = "a", .prompt = prompt, .iters = 400};
    struct gen_loop small = {.o = fx.o, .role = "a", .prompt = "hi", .iters = 20000};
    pthread_t un;
    pthread_create(&un, NULL, unload_loop_main, &g);
    test_run_progressing(gen_loop_main, &g, &g.done, 30, "generate racing unload (1 MiB)");
    test_run_progressing(gen_loop_main, &small, &small.done, 30, "generate racing unload");
    atomic_store(&g.stop, 1);
    pthread_join(un, NULL);
    assert_int_equal(atomic_load(&g.done), g.iters);
    assert_int_equal(atomic_load(&small.done), small.iters);
    if (g.bad || small.bad)
        print_error("failed: %s %s\n", g.err.msg, small.err.msg);
    assert_int_equal(g.bad + small.bad, 0);
    free(prompt);
    fx_close(&fx);
}

struct close_call {
    orch_orchestra *o;
};

static void *close_main(void *arg)
{
    orch_close(((struct close_call *)arg)->o);
    return NULL;
}

/* orch_close while a request holds its lease: the request finishes, a
 * request that begins during the close fails with ORCH_ECLOSED, and close
 * ends after both. */
static void test_close_during_generate(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\n[b]\npath = @b:10\n", 0);
    orch_model *ma;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "a", &ma, &err), ORCH_OK, err);
    orch_role_release(fx.o, ma);
    test_pause_arm(ORCH_PAUSE_ROLE_LEASED, NULL);
    struct gen_loop g = {.o = fx.o, .role = "a", .prompt = "hello", .iters = 1};
    pthread_t gen;
    pthread_create(&gen, NULL, gen_loop_main, &g);
    test_pause_wait(ORCH_PAUSE_ROLE_LEASED);
    struct close_call cc = {.o = fx.o};
    pthread_t closer;
    pthread_create(&closer, NULL, close_main, &cc);
    /* close has begun once a's model drains (our request holds it) */
    while (orch_model_state(ma) != ORCH_STATE_DRAINING)
        usleep(200);
    struct orch_gen_result res;
    struct orch_gen_params gp = orch_gen_default_params();
    gp.max_tokens = 1;
    assert_rc(orch_generate(fx.o, "b", "x", &gp, &res, &err), ORCH_ECLOSED, err);
    assert_non_null(strstr(err.msg, "role 'b'"));
    orch_model *m;
    assert_rc(orch_role_acquire(fx.o, "a", &m, &err), ORCH_ECLOSED, err);
    test_pause_go(ORCH_PAUSE_ROLE_LEASED);
    test_pause_off();
    assert_true(test_join_within(gen, 10));
    assert_int_equal(g.bad, 0); /* it finished on its lease */
    assert_true(test_join_within(closer, 10));
    assert_int_equal(orch_fake_counts(fx.fake).n_live, 0);
    orch_fake_free(fx.fake);
}

/* Every public entry point on an orchestra enters its call count: once
 * orch_close() has begun, each fails with ORCH_ECLOSED (or does nothing,
 * for the void ones) instead of reading views close is about to free.
 * Close is held open by a lease of ours while the calls are made. */
static void test_every_call_after_close_began(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\nembedding = true\n[b]\npath = @b:10\nalias = bee\n", 0);
    orch_model *ma;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "a", &ma, &err), ORCH_OK, err);
    struct close_call cc = {.o = fx.o};
    pthread_t closer;
    pthread_create(&closer, NULL, close_main, &cc);
    while (orch_model_state(ma) != ORCH_STATE_DRAINING) /* close has begun */
        usleep(200);

    struct orch_role_ref ref;
    assert_rc(orch_role_lookup(fx.o, "bee", &ref, &err), ORCH_ECLOSED, err);
    char canon[64];
    assert_rc(orch_role_canonical(fx.o, "bee", canon, sizeof canon, &err), ORCH_ECLOSED, err);
    struct orch_gen_params gp;
    assert_rc(orch_role_gen_params(fx.o, "b", &gp, &err), ORCH_ECLOSED, err);
    gp = orch_gen_default_params();
    gp.max_tokens = 1;
    struct orch_gen_result res;
    assert_rc(orch_generate(fx.o, "b", "x", &gp, &res, &err), ORCH_ECLOSED, err);
    struct orch_chat_message msg = {"user", "x"};
    assert_rc(orch_chat(fx.o, "b", &msg, 1, &gp, &res, &err), ORCH_ECLOSED, err);
    const char *texts[] = {"x"};
    float *v = NULL;
    int32_t dim = 0;
    assert_rc(orch_embed(fx.o, NULL, texts, 1, NULL, &v, &dim, &err), ORCH_ECLOSED, err);
    assert_rc(orch_embed(fx.o, "b", texts, 1, NULL, &v, &dim, &err), ORCH_ECLOSED, err);
    assert_null(v);
    const char *roles[] = {"b"};
    assert_rc(orch_preload(fx.o, roles, 1, &err), ORCH_ECLOSED, err);
    orch_model *m;
    assert_rc(orch_role_acquire(fx.o, "b", &m, &err), ORCH_ECLOSED, err);
    assert_rc(orch_role_keep_alive(fx.o, "b", 1000, &err), ORCH_ECLOSED, err);
    assert_rc(orch_unload(fx.o, "b", &err), ORCH_ECLOSED, err);
    struct orch_role_status *st = NULL;
    size_t n = 0;
    assert_rc(orch_status(fx.o, &st, &n, NULL, &err), ORCH_ECLOSED, err);
    assert_null(st);
    assert_int_equal(orch_tick(fx.o), 0);
    orch_unload_all(fx.o); /* nothing to do: closing unloads everything */
    char ini[300];
    snprintf(ini, sizeof ini, "[a]\npath = %s\n", test_sparse_file("a.bin", 10 * KB));
    orch_config *cfg;
    assert_rc(orch_config_parse(ini, "new.ini", false, &cfg, &err), ORCH_OK, err);
    assert_rc(orch_reconfigure(fx.o, cfg, &err), ORCH_ECLOSED, err);
    orch_config_free(cfg);

    orch_role_release(fx.o, ma); /* returning a lease works while closing */
    assert_true(test_join_within(closer, 10));
    assert_int_equal(orch_fake_counts(fx.fake).n_live, 0);
    orch_fake_free(fx.fake);
}

struct pinned_gen {
    orch_orchestra *o;
    orch_model *m;
    int rc;
    orch_error err;
};

/* A load waiting for memory is cancelled at once by orch_model_cancel_load
 * (it used to wait out load_timeout and report ORCH_ETIMEDOUT). */
static void test_cancel_while_waiting_for_memory(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nmemory_budget = 150K\nload_timeout = 60\nidle_ttl = -1\n"
            "[a]\npath = @a:100\n[b]\npath = @b:100\n",
            0);
    orch_model *ma, *mb;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "b", &mb, &err), ORCH_OK, err); /* learn b's model */
    orch_role_release(fx.o, mb);
    assert_rc(orch_role_acquire(fx.o, "a", &ma, &err), ORCH_OK, err); /* evicts b, holds a */
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_UNLOADED);
    struct bg_acquire bg = {.o = fx.o, .role = "b"};
    pthread_t th;
    pthread_create(&th, NULL, bg_acquire_main, &bg);
    while (orch_model_state(mb) != ORCH_STATE_LOADING)
        usleep(200);
    usleep(20000); /* inside the wait for memory */
    orch_model_cancel_load(mb);
    assert_true(test_join_within(th, 30));
    assert_rc(bg.rc, ORCH_ECANCELED, bg.err);
    assert_non_null(strstr(bg.err.msg, "cancelled while waiting for memory"));
    assert_int_equal(role_state(fx.o, "b"), ORCH_STATE_FAILED);
    orch_role_release(fx.o, ma);
    fx_close(&fx);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Errors name the role once, whichever layer failed. */
static void test_errors_name_the_role_once(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[defaults]\nmemory_budget = 50K\n[a]\npath = @a:10\n[big]\npath = @big:100\n"
                 "[coder]\nfallback = a\n", 0);
    orch_error err = {0};
    struct orch_gen_result res;
    struct orch_gen_params gp = orch_gen_default_params();
    gp.max_tokens = 0; /* parameter check */
    assert_rc(orch_generate(fx.o, "coder", "x", &gp, &res, &err), ORCH_EINVAL, err);
    assert_int_equal(count_of(err.msg, "role '"), 1);
    assert_non_null(strstr(err.msg, "role 'coder': max_tokens 0"));
    assert_rc(orch_generate(fx.o, "big", "x", NULL, &res, &err), ORCH_EBUDGET, err); /* admit */
    assert_int_equal(count_of(err.msg, "role '"), 1);
    assert_rc(orch_unload(fx.o, "a", &err), ORCH_OK, err);
    orch_fake_fail_next(fx.fake, 1); /* backend load */
    assert_rc(orch_generate(fx.o, "coder", "x", NULL, &res, &err), ORCH_ELOAD, err);
    assert_int_equal(count_of(err.msg, "role '"), 1);
    assert_non_null(strstr(err.msg, "role 'coder'"));
    const char *bad[] = {"\xff"};
    float *v;
    int32_t dim;
    assert_rc(orch_embed(fx.o, "a", bad, 1, NULL, &v, &dim, &err), ORCH_EINVAL, err);
    assert_int_equal(count_of(err.msg, "role '"), 1);
    fx_close(&fx);
}

/* fork(): the child cannot use the parent's orchestra; orch_close there
 * returns at once (it used to hang on the reaper), and the child can open
 * and use one of its own. */
static void test_fork_child(void **state)
{
    (void)state;
    orch_config *cfg;
    orch_error err = {0};
    char ini[600];
    snprintf(ini, sizeof ini, "[a]\npath = %s\n", test_sparse_file("forked.bin", 4096));
    assert_rc(orch_config_parse(ini, "fork.ini", false, &cfg, &err), ORCH_OK, err);
    orch_backend *fake = orch_fake_new(NULL);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.backend = fake; /* with the reaper thread running */
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_gen_result res;
    assert_rc(orch_generate(o, "a", "x", NULL, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* a hang ends as SIGALRM, which the parent sees */
        orch_close(o);
        orch_orchestra *mine;
        op.no_reaper = true; /* ThreadSanitizer cannot start threads after a fork */
        if (orch_open(cfg, &op, &mine, &err) != ORCH_OK)
            _exit(2);
        int rc = orch_generate(mine, "a", "x", NULL, &res, &err);
        orch_gen_result_clear(&res);
        orch_close(mine);
        _exit(rc == ORCH_OK ? 0 : 3);
    }
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        print_error("child: exited %d, signal %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the parent's orchestra is untouched */
    assert_rc(orch_generate(o, "a", "x", NULL, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    orch_close(o);
    orch_config_free(cfg);
    orch_fake_free(fake);
}

/* Ollama's keep_alive: a model kept past its idle_ttl, forever, or not at all. */
static void test_keep_alive(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[defaults]\nidle_ttl = 1\n[a]\npath = @a:10\n[b]\nfallback = a\n", 0);
    orch_error err = {0};
    use(fx.o, "a", 1000);
    assert_rc(orch_role_keep_alive(fx.o, "b", 10000, &err), ORCH_OK, err); /* through b */
    atomic_store(&g_clock_ms, 5000); /* past idle_ttl, within keep_alive */
    assert_int_equal(orch_tick(fx.o), 0);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    atomic_store(&g_clock_ms, 11001);
    assert_int_equal(orch_tick(fx.o), 1);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_UNLOADED);
    /* negative: until unloaded otherwise */
    use(fx.o, "a", 20000);
    assert_rc(orch_role_keep_alive(fx.o, "a", -1, &err), ORCH_OK, err);
    atomic_store(&g_clock_ms, 20000 + 86400000);
    assert_int_equal(orch_tick(fx.o), 0);
    /* the setting ends with the load: the next load follows idle_ttl again */
    assert_rc(orch_role_keep_alive(fx.o, "a", 0, &err), ORCH_OK, err);
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_UNLOADED);
    use(fx.o, "a", 90000000);
    atomic_store(&g_clock_ms, 90002000);
    assert_int_equal(orch_tick(fx.o), 1);
    assert_rc(orch_role_keep_alive(fx.o, "nope", 1, &err), ORCH_ENOROLE, err);
    fx_close(&fx);
}

/* ---- reconfigure ------------------------------------------------------------------ */

static orch_config *fx_config(const char *ini)
{
    char text[4096], *w = text;
    for (const char *p = ini; *p;) {
        if (*p == '@') {
            char name[64];
            unsigned kib;
            int used;
            assert_int_equal(sscanf(p + 1, "%63[a-z0-9_]:%u%n", name, &kib, &used), 2);
            char file[80], path[700];
            snprintf(file, sizeof file, "%s.bin", name);
            snprintf(path, sizeof path, "%s/%s", test_tmpdir(), file);
            /* an existing file is left alone: a model may be loading from it */
            w += sprintf(w, "%s",
                         access(path, F_OK) == 0 ? path
                                                 : test_sparse_file(file, (uint64_t)kib * KB));
            p += 1 + used;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_parse(text, "re.ini", false, &cfg, &err), ORCH_OK, err);
    return cfg;
}

/* A new config: unchanged files stay loaded whatever else changed, files no
 * role uses are unloaded, new roles work, a bad config leaves the old one. */
static void test_reconfigure_keeps_unchanged_models(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[a]\npath = @a:10\ntemperature = 0.5\nstop = END\n[b]\npath = @b:10\n"
                 "[c]\nfallback = a\n", 0);
    use(fx.o, "a", 1000);
    use(fx.o, "b", 1000);
    use(fx.o, "c", 1000);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 2);
    struct orch_gen_params old;
    orch_error err = {0};
    assert_rc(orch_role_gen_params(fx.o, "a", &old, &err), ORCH_OK, err);
    orch_model *held;
    assert_rc(orch_role_acquire(fx.o, "b", &held, &err), ORCH_OK, err); /* b leased */

    orch_config *cfg =
        fx_config("[defaults]\nidle_ttl = -1\n[a]\npath = @a:10\ntemperature = 0.25\n"
                  "[d]\npath = @d:10\n[c]\nfallback = d\n");
    assert_rc(orch_reconfigure(fx.o, cfg, &err), ORCH_OK, err);
    orch_config_free(cfg);
    /* a's model stayed loaded; its new settings apply */
    assert_int_equal(role_state(fx.o, "a"), ORCH_STATE_READY);
    use(fx.o, "a", 2000);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 2);
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(fx.o, "a", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.25f);
    /* the old defaults handed out before stay readable */
    assert_string_equal(old.stop[0], "END");
    /* b is gone: no new requests; its model drains when the lease returns */
    orch_model *none;
    assert_rc(orch_role_acquire(fx.o, "b", &none, &err), ORCH_ENOROLE, err);
    assert_int_equal(orch_fake_counts(fx.fake).n_frees, 0);
    orch_role_release(fx.o, held);
    assert_int_equal(orch_fake_counts(fx.fake).n_frees, 1);
    /* c now falls back to the new role d */
    use(fx.o, "c", 2000);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 3);
    /* a bad config changes nothing */
    orch_config *bad;
    assert_rc(orch_config_parse("[x]\nfallback = y\n", "bad.ini", false, &bad, &err), ORCH_ECONFIG,
              err);
    assert_rc(orch_config_new(&bad, &err), ORCH_OK, err);
    assert_rc(orch_reconfigure(fx.o, bad, &err), ORCH_ECONFIG, err);
    orch_config_free(bad);
    use(fx.o, "a", 3000);
    fx_close(&fx);
}

struct reconf_load {
    orch_orchestra *o;
    atomic_int stop;
    atomic_int bad;
    atomic_int ok;
};

static void *reconf_worker(void *arg)
{
    struct reconf_load *l = arg;
    static const char *roles[] = {"a", "c", "b"};
    for (unsigned i = 0; !atomic_load(&l->stop); i++) {
        struct orch_gen_result res;
        orch_error err = {0};
        struct orch_gen_params gp = orch_gen_default_params();
        gp.max_tokens = 2;
        int rc = orch_generate(l->o, roles[i % 3], "x", &gp, &res, &err);
        orch_gen_result_clear(&res);
        if (rc == ORCH_OK)
            atomic_fetch_add(&l->ok, 1);
        else if (rc != ORCH_ENOROLE) /* b comes and goes */
            atomic_fetch_add(&l->bad, 1);
    }
    return NULL;
}

/* Requests keep running while the config flips back and forth. */
/* A reconfigure that changes the GPU placement of a role's file loads the
 * file again with the new placement (the old copy unloads once its leases
 * return); two roles of one config asking one file for two placements are
 * refused, naming both roles (it used to refuse the change, naming the same
 * role twice). */
static void test_reconfigure_placement(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, "[defaults]\nidle_ttl = -1\n[a]\npath = @a:10\n[b]\nfallback = a\n", 0);
    orch_error err = {0};
    orch_model *old;
    assert_rc(orch_role_acquire(fx.o, "a", &old, &err), ORCH_OK, err);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 1);

    orch_config *cfg = fx_config("[defaults]\nidle_ttl = -1\n[a]\npath = @a:10\n"
                                 "n_gpu_layers = 8\n[b]\nfallback = a\n");
    assert_rc(orch_reconfigure(fx.o, cfg, &err), ORCH_OK, err);
    orch_config_free(cfg);
    orch_model *m, *mb;
    assert_rc(orch_role_acquire(fx.o, "a", &m, &err), ORCH_OK, err);
    assert_ptr_not_equal(m, old);
    assert_int_equal(orch_fake_counts(fx.fake).n_loads, 2);
    assert_rc(orch_role_acquire(fx.o, "b", &mb, &err), ORCH_OK, err);
    assert_ptr_equal(mb, m); /* the fallback follows: still one copy per placement */
    orch_role_release(fx.o, mb);
    orch_role_release(fx.o, m);
    assert_int_equal(orch_fake_counts(fx.fake).n_frees, 0); /* the old copy is leased */
    orch_role_release(fx.o, old);
    assert_int_equal(orch_fake_counts(fx.fake).n_frees, 1);

    cfg = fx_config("[a]\npath = @a:10\nn_gpu_layers = 8\n[c]\npath = @a:10\n");
    assert_rc(orch_reconfigure(fx.o, cfg, &err), ORCH_ECONFIG, err);
    orch_config_free(cfg);
    assert_non_null(strstr(err.msg, "roles 'a' and 'c' share"));
    assert_non_null(strstr(err.msg, "ask for 8 and 0 GPU layers"));
    use(fx.o, "b", 10); /* the old config stays */
    fx_close(&fx);
}

static void test_reconfigure_under_load(void **state)
{
    (void)state;
    struct fx fx;
    const char *one = "[a]\npath = @a:10\n[b]\npath = @b:10\n[c]\nfallback = a\n";
    const char *two = "[a]\npath = @a:10\ntemperature = 0.1\n[c]\npath = @c:10\n";
    fx_open(&fx, one, 0);
    struct reconf_load l = {.o = fx.o};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, reconf_worker, &l);
    orch_error err = {0};
    for (int i = 0; i < 40; i++) {
        orch_config *cfg = fx_config(i % 2 ? one : two);
        assert_rc(orch_reconfigure(fx.o, cfg, &err), ORCH_OK, err);
        orch_config_free(cfg);
        usleep(1000);
    }
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&l.bad), 0);
    assert_true(atomic_load(&l.ok) > 0);
    fx_close(&fx);
}

/* ---- the real model under several roles ---------------------------------------------- */

static void test_real_model_roles(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    char text[2048];
    snprintf(text, sizeof text,
             "[defaults]\nn_threads = 1\n"
             "[reasoning]\npath = %s\ntemperature = 0\nmax_tokens = 11\n"
             "[coder]\nfallback = reasoning\ntemperature = 0\nmax_tokens = 4\nstop = girl\n"
             "[embedding]\nfallback = reasoning\nembedding = true\nn_ctx = 256\n"
             "[slow]\npath = %s\n",
             path, test_sparse_file("slow.bin", 10));
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_parse(text, "real.ini", false, &cfg, &err), ORCH_OK, err);
    orch_backend *fake = orch_fake_new(NULL);
    struct orch_role_backend rb[] = {{"slow", fake}};
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.role_backends = rb;
    op.n_role_backends = 1;
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    orch_config_free(cfg);
    struct orch_gen_result res;
    assert_rc(orch_generate(o, "reasoning", "Once upon a time", NULL, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ", there was a little girl named Lily.");
    orch_gen_result_clear(&res);
    assert_rc(orch_generate(o, "coder", "Once upon a time", NULL, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ", there was a");
    assert_int_equal(res.finish, ORCH_FINISH_LENGTH);
    orch_gen_result_clear(&res);
    /* per-call overrides on top of the role's defaults */
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(o, "coder", &g, &err), ORCH_OK, err);
    g.max_tokens = 50;
    assert_rc(orch_generate(o, "coder", "Once upon a time", &g, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ", there was a little ");
    assert_int_equal(res.finish, ORCH_FINISH_STOP);
    orch_gen_result_clear(&res);
    const char *texts[] = {"hello", "world"};
    float *v;
    int32_t dim;
    assert_rc(orch_embed(o, "embedding", texts, 2, NULL, &v, &dim, &err), ORCH_OK, err);
    assert_int_equal(dim, 64);
    float *v2;
    /* no role named: the one marked for embeddings */
    assert_rc(orch_embed(o, NULL, texts, 2, NULL, &v2, &dim, &err), ORCH_OK, err);
    assert_memory_equal(v, v2, sizeof(float) * 2 * 64);
    free(v2);
    free(v);
    /* the fallback embedding role embeds in its own n_ctx (256), the model's
     * role in the model's (2048): a text of ~400 tokens fits only the latter */
    char longer[4096] = "";
    for (int i = 0; i < 60; i++)
        strcat(longer, "the cat sat on a mat. ");
    const char *one[] = {longer};
    assert_rc(orch_embed(o, "embedding", one, 1, NULL, &v, &dim, &err), ORCH_ECTX, err);
    assert_non_null(strstr(err.msg, "the context holds 256"));
    assert_rc(orch_embed(o, "reasoning", one, 1, NULL, &v, &dim, &err), ORCH_OK, err);
    free(v);
    struct orch_embed_params ep = orch_embed_default_params();
    ep.truncate = true; /* or cut to its first 256 tokens */
    int64_t used = 0;
    ep.n_tokens = &used;
    assert_rc(orch_embed(o, "embedding", one, 1, &ep, &v, &dim, &err), ORCH_OK, err);
    assert_int_equal(used, 256);
    free(v);
    struct orch_chat_message msg[] = {{"user", "Hi"}};
    assert_rc(orch_chat(o, "coder", msg, 1, NULL, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    /* the fake role sits beside the real ones */
    assert_rc(orch_generate(o, "slow", "x", NULL, &res, &err), ORCH_OK, err);
    assert_non_null(strstr(res.text, "tok0"));
    orch_gen_result_clear(&res);
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    assert_int_equal(n, 4);
    assert_int_equal(st[0].state, ORCH_STATE_READY);
    assert_false(st[0].bytes_estimated);
    assert_true(st[0].bytes >= 292800 * 4);
    assert_string_equal(st[2].model_role, "reasoning");
    free(st);
    orch_unload_all(o);
    assert_int_equal(role_state(o, "coder"), ORCH_STATE_UNLOADED);
    orch_close(o);
    orch_fake_free(fake);
}

/* An orchestra over the config text `ini` (no reaper), on the real backend. */
static orch_orchestra *open_text(const char *ini)
{
    orch_config *cfg = NULL;
    orch_error err = {0};
    assert_rc(orch_config_parse(ini, "t.ini", false, &cfg, &err), ORCH_OK, err);
    orch_orchestra *o = NULL;
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    orch_config_free(cfg);
    return o;
}

/* The f16 KV cache of one sequence of n_ctx cells of the file at path. */
static uint64_t kv_bytes(const char *path, uint64_t n_ctx)
{
    struct orch_file_info fi;
    orch_error err = {0};
    assert_rc(orch_file_info(path, &fi, &err), ORCH_OK, err);
    return 2 * 2 * (uint64_t)fi.n_layer * n_ctx * (uint64_t)(fi.n_embd / fi.n_head) *
           (uint64_t)fi.n_head_kv;
}

/* The budget charges a role's batch engine: n_parallel sequences of n_ctx
 * cells each, so four sequences cost at least three KV caches more than one. */
static uint64_t estimated_bytes(const char *path, int n_parallel)
{
    char text[1200];
    snprintf(text, sizeof text, "[r]\npath = %s\nn_ctx = 1024\nn_parallel = %d\n", path,
             n_parallel);
    orch_error err = {0};
    orch_orchestra *o = open_text(text);
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    assert_true(st[0].bytes_estimated);
    assert_int_equal(st[0].n_parallel, n_parallel);
    uint64_t bytes = st[0].bytes;
    free(st);
    orch_close(o);
    return bytes;
}

static void test_budget_charges_the_engine(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    uint64_t kv_one = kv_bytes(path, 1024);
    uint64_t one = estimated_bytes(path, 1), four = estimated_bytes(path, 4);
    assert_true(four >= one + 3 * kv_one);
}

/* A request that runs alone, in a context of its own, is charged for it
 * while it runs: on a model without an engine, each one beyond the first
 * running at once (the load paid for one); on a model with an engine, one
 * asking for other threads. Seen from inside the generations (on_text). */
struct alone {
    orch_orchestra *o;
    int n_threads;       /* asked per request; 0 = the role's */
    int n_expected;      /* generations that meet before reading the budget */
    atomic_int arrived;  /* generations at their first piece */
    atomic_int read;     /* of those, those that read the budget */
    _Atomic uint64_t used_max;
    atomic_int bad;
};

static uint64_t budget_used(orch_orchestra *o)
{
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    orch_error err = {0};
    assert_rc(orch_status(o, &st, &n, &b, &err), ORCH_OK, err);
    free(st);
    return b.used;
}

/* Spins (sleeping 1 ms) until *v reaches n, for at most 20 s. */
static bool wait_count(atomic_int *v, int n)
{
    for (int i = 0; i < 20000 && atomic_load(v) < n; i++)
        usleep(1000);
    return atomic_load(v) >= n;
}

struct alone_gen {
    struct alone *a;
    bool seen;
};

static bool alone_on_text(const char *text, size_t len, void *ud)
{
    (void)text;
    (void)len;
    struct alone_gen *ag = ud;
    struct alone *a = ag->a;
    if (ag->seen)
        return true;
    ag->seen = true;
    atomic_fetch_add(&a->arrived, 1);
    if (!wait_count(&a->arrived, a->n_expected))
        atomic_fetch_add(&a->bad, 1);
    uint64_t u = budget_used(a->o), m = atomic_load(&a->used_max);
    while (u > m && !atomic_compare_exchange_weak(&a->used_max, &m, u))
        ;
    atomic_fetch_add(&a->read, 1);
    if (!wait_count(&a->read, a->n_expected))
        atomic_fetch_add(&a->bad, 1);
    return true;
}

static void *alone_main(void *arg)
{
    struct alone *a = arg;
    struct alone_gen ag = {.a = a};
    struct orch_gen_params g = orch_gen_default_params();
    g.max_tokens = 8;
    g.temperature = 0;
    g.n_threads = a->n_threads;
    g.on_text = alone_on_text;
    g.user_data = &ag;
    struct orch_gen_result res;
    orch_error err = {0};
    if (orch_generate(a->o, "r", "Once upon a time", &g, &res, &err) != ORCH_OK) {
        fprintf(stderr, "alone: %s\n", err.msg);
        atomic_fetch_add(&a->bad, 1);
    }
    orch_gen_result_clear(&res);
    return NULL;
}

/* Runs n generations at once on role r of an orchestra over `ini`; returns
 * the budget's use before (the model loaded), at its highest while all ran,
 * and after. */
static void run_alone(const char *ini, int n, int n_threads, uint64_t *before, uint64_t *during,
                      uint64_t *after)
{
    orch_error err = {0};
    struct alone a = {.o = open_text(ini), .n_threads = n_threads, .n_expected = n};
    const char *roles[] = {"r"};
    assert_rc(orch_preload(a.o, roles, 1, &err), ORCH_OK, err);
    *before = budget_used(a.o);
    pthread_t t[4];
    assert_true(n <= 4);
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&t[i], NULL, alone_main, &a), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&a.bad), 0);
    *during = atomic_load(&a.used_max);
    *after = budget_used(a.o);
    orch_close(a.o);
}

static void test_alone_contexts_are_charged(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    uint64_t kv = kv_bytes(path, 256);
    char ini[1200];
    uint64_t before, during, after;
    /* no engine: one request alone is what the load paid for; three at once
     * are two contexts more */
    snprintf(ini, sizeof ini,
             "[defaults]\nmemory_budget = 1G\nidle_ttl = -1\n"
             "[r]\npath = %s\nn_ctx = 256\nn_parallel = 0\nn_threads = 1\n",
             path);
    run_alone(ini, 1, 0, &before, &during, &after);
    assert_true(during == before);
    assert_true(after == before);
    run_alone(ini, 3, 0, &before, &during, &after);
    assert_true(during >= before + 2 * kv);
    assert_true(after == before);
    /* an engine, and a request asking for other threads than its own */
    if (orch_default_n_threads() < 2) {
        print_message("one CPU: a request for other threads cannot be made; part skipped\n");
        return;
    }
    snprintf(ini, sizeof ini,
             "[defaults]\nmemory_budget = 1G\nidle_ttl = -1\n"
             "[r]\npath = %s\nn_ctx = 256\nn_parallel = 2\nn_threads = 1\n",
             path);
    run_alone(ini, 1, 0, &before, &during, &after);
    assert_true(during == before); /* a sequence of the engine */
    run_alone(ini, 1, 2, &before, &during, &after);
    assert_true(during >= before + kv);
    assert_true(after == before);
}

/* ---- stress ---------------------------------------------------------------------------- */

struct stress {
    orch_orchestra *o;
    orch_backend *fake;
    atomic_int bad;
    atomic_int ok;
    unsigned seed;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    static const char *roles[] = {"a", "b", "c", "d", "e", "f"};
    unsigned seed = s->seed;
    for (int i = 0; i < 300; i++) {
        seed = seed * 1103515245u + 12345u;
        const char *role = roles[(seed >> 16) % 6];
        orch_model *m;
        orch_error err = {0};
        int rc = orch_role_acquire(s->o, role, &m, &err);
        if (rc == ORCH_ETIMEDOUT)
            continue; /* every model leased by others: allowed, rare */
        if (rc != ORCH_OK) {
            atomic_fetch_add(&s->bad, 1);
            continue;
        }
        if (orch_model_state(m) != ORCH_STATE_READY)
            atomic_fetch_add(&s->bad, 1);
        if ((seed >> 8) % 4 == 0)
            usleep(100);
        orch_role_release(s->o, m);
        atomic_fetch_add(&s->ok, 1);
    }
    return NULL;
}

static void test_stress_16_threads(void **state)
{
    (void)state;
    struct fx fx;
    /* six 100K models, room for three */
    fx_open(&fx,
            "[defaults]\nmemory_budget = 300K\nidle_ttl = -1\nload_timeout = 30\n"
            "[a]\npath = @a:100\n[b]\npath = @b:100\n[c]\npath = @c:100\n"
            "[d]\npath = @d:100\n[e]\npath = @e:100\n[f]\npath = @f:100\n",
            1);
    struct stress s = {.o = fx.o, .fake = fx.fake};
    pthread_t th[16];
    struct stress per[16];
    for (int i = 0; i < 16; i++) {
        per[i] = s;
        per[i].seed = (unsigned)i * 7919u + 1;
        pthread_create(&th[i], NULL, stress_main, &per[i]);
    }
    int bad = 0, ok = 0;
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        bad += atomic_load(&per[i].bad);
        ok += atomic_load(&per[i].ok);
    }
    assert_int_equal(bad, 0);
    assert_true(ok > 16 * 300 * 9 / 10);
    struct orch_fake_counts c = orch_fake_counts(fx.fake);
    assert_true(c.max_live <= 3); /* the budget held */
    assert_true(c.n_loads > 6);   /* evictions forced reloads */
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    orch_error err = {0};
    assert_rc(orch_status(fx.o, &st, &n, &b, &err), ORCH_OK, err);
    assert_true(b.used <= 300 * KB);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(st[i].n_leases, 0);
    free(st);
    fx_close(&fx);
}

/* Everything at once: workers generating, chatting, embedding and leasing
 * (some leases returned by another thread), an unloader, idle unloading on a
 * moving clock, evictions under a budget, then close while all of it runs.
 * Workers stop at their first ORCH_ECLOSED; an anchor lease on a model no
 * worker uses holds close open until they have, so no call starts after
 * close returns. */
enum { QCAP = 32 };
struct handoff {
    pthread_mutex_t lock;
    orch_model *q[QCAP];
    int n;
};

struct world {
    orch_orchestra *o;
    orch_backend *fake;
    struct handoff h;
    atomic_int workers_left;
    atomic_int bad, ops, closed_seen;
    atomic_bool go_close;
};

struct worker {
    struct world *w;
    unsigned seed;
};

static bool lease_ok(struct world *w, orch_model *m)
{
    enum orch_model_state st = orch_model_state(m);
    return (st == ORCH_STATE_READY || st == ORCH_STATE_DRAINING) &&
           orch_fake_counts(w->fake).n_live >= 1;
}

static void *world_worker(void *arg)
{
    struct worker *k = arg;
    struct world *w = k->w;
    static const char *roles[] = {"a", "b", "c", "e"};
    unsigned seed = k->seed;
    for (;;) {
        seed = seed * 1103515245u + 12345u;
        const char *role = roles[(seed >> 16) % 4];
        orch_error err = {0};
        int rc;
        switch ((seed >> 8) % 5) {
        case 0: {
            struct orch_gen_result res;
            struct orch_gen_params gp = orch_gen_default_params();
            gp.max_tokens = 3;
            rc = orch_generate(w->o, role, "hello", &gp, &res, &err);
            orch_gen_result_clear(&res);
            break;
        }
        case 1: {
            struct orch_chat_message msg = {"user", "hi"};
            struct orch_gen_result res;
            rc = orch_chat(w->o, role, &msg, 1, NULL, &res, &err);
            orch_gen_result_clear(&res);
            break;
        }
        case 2: {
            const char *texts[] = {"x", "y"};
            float *v = NULL;
            int32_t dim;
            rc = orch_embed(w->o, role, texts, 2, NULL, &v, &dim, &err);
            free(v);
            break;
        }
        default: {
            orch_model *m;
            rc = orch_role_acquire(w->o, role, &m, &err);
            if (rc != ORCH_OK)
                break;
            if (!lease_ok(w, m))
                atomic_fetch_add(&w->bad, 1);
            bool handed = false;
            if ((seed >> 4) % 2) { /* returned by the releaser thread */
                pthread_mutex_lock(&w->h.lock);
                if (w->h.n < QCAP) {
                    w->h.q[w->h.n++] = m;
                    handed = true;
                }
                pthread_mutex_unlock(&w->h.lock);
            }
            if (!handed)
                orch_role_release(w->o, m);
        }
        }
        if (rc == ORCH_ECLOSED) {
            atomic_fetch_add(&w->closed_seen, 1);
            break;
        }
        if (rc != ORCH_OK && rc != ORCH_ETIMEDOUT) {
            print_error("role %s: %s\n", role, err.msg);
            atomic_fetch_add(&w->bad, 1);
        }
        atomic_fetch_add(&w->ops, 1);
    }
    atomic_fetch_sub(&w->workers_left, 1);
    return NULL;
}

static void *world_releaser(void *arg)
{
    struct world *w = arg;
    for (;;) {
        orch_model *m = NULL;
        pthread_mutex_lock(&w->h.lock);
        if (w->h.n)
            m = w->h.q[--w->h.n];
        bool empty = w->h.n == 0;
        pthread_mutex_unlock(&w->h.lock);
        if (m)
            orch_role_release(w->o, m);
        else if (empty && atomic_load(&w->workers_left) == 0)
            return NULL;
        else
            usleep(50);
    }
}

static void *world_unloader(void *arg)
{
    struct world *w = arg;
    static const char *roles[] = {"a", "b", "c"};
    for (unsigned i = 0;; i++) {
        int rc = i % 16 == 15 ? (orch_unload_all(w->o), ORCH_OK)
                              : orch_unload(w->o, roles[i % 3], NULL);
        if (rc == ORCH_ECLOSED)
            return NULL;
        if (rc != ORCH_OK)
            atomic_fetch_add(&w->bad, 1);
        usleep(300);
    }
}

static void *world_ticker(void *arg)
{
    struct world *w = arg;
    for (;;) {
        atomic_fetch_add(&g_clock_ms, 20);
        orch_tick(w->o);
        struct orch_role_status *st;
        size_t n;
        if (orch_status(w->o, &st, &n, NULL, NULL) == ORCH_ECLOSED)
            return NULL;
        free(st);
        usleep(200);
    }
}

static void test_stress_everything_then_close(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx,
            "[defaults]\nmemory_budget = 250K\nload_timeout = 30\nidle_ttl = 1\n"
            "[a]\npath = @a:100\nidle_ttl = 0\n[b]\npath = @b:100\n[c]\npath = @c:100\n"
            "[d]\npath = @d:10\nidle_ttl = -1\n[e]\nfallback = a\n",
            0);
    enum { W = 8 };
    struct world w = {.o = fx.o, .fake = fx.fake};
    pthread_mutex_init(&w.h.lock, NULL);
    atomic_store(&w.workers_left, W);
    pthread_t th[W + 3];
    struct worker k[W];
    for (int i = 0; i < W; i++) {
        k[i] = (struct worker){.w = &w, .seed = (unsigned)i * 2654435761u + 7};
        pthread_create(&th[i], NULL, world_worker, &k[i]);
    }
    pthread_create(&th[W], NULL, world_releaser, &w);
    pthread_create(&th[W + 1], NULL, world_unloader, &w);
    pthread_create(&th[W + 2], NULL, world_ticker, &w);
    /* ORCH_STRESS_OPS makes a longer run (default 4000 operations) */
    const char *env = getenv("ORCH_STRESS_OPS");
    int target = env && atoi(env) > 0 ? atoi(env) : 4000;
    int64_t t0 = orch_test_now_ms();
    while (atomic_load(&w.ops) < target)
        usleep(1000);
    /* close while everything runs, held open by the anchor lease */
    orch_model *anchor;
    orch_error err = {0};
    assert_rc(orch_role_acquire(fx.o, "d", &anchor, &err), ORCH_OK, err);
    struct close_call cc = {.o = fx.o};
    pthread_t closer;
    pthread_create(&closer, NULL, close_main, &cc);
    for (int i = 0; i < W + 3; i++)
        assert_true(test_join_within(th[i], 60));
    orch_role_release(fx.o, anchor);
    assert_true(test_join_within(closer, 60));
    struct orch_fake_counts c = orch_fake_counts(fx.fake);
    print_message("stress: %d operations by %d workers (plus a releaser of handed-over leases, "
                  "an unloader, an idle ticker), %lld loads, then close: %lld ms\n",
                  atomic_load(&w.ops), W, (long long)c.n_loads,
                  (long long)(orch_test_now_ms() - t0));
    assert_int_equal(atomic_load(&w.bad), 0);
    assert_int_equal(atomic_load(&w.closed_seen), W);
    assert_true(c.n_loads > 10); /* unloads, evictions and idle unloads happened */
    assert_true(c.max_live <= 3); /* two of a, b, c and d: the budget held */
    assert_int_equal(c.n_live, 0);
    assert_int_equal(c.n_frees, c.n_loads - c.n_failures);
    pthread_mutex_destroy(&w.h.lock);
    orch_fake_free(fx.fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_pinned_never_evicted),
        cmocka_unit_test(test_load_waits_for_lease),
        cmocka_unit_test(test_wait_times_out_with_reason),
        cmocka_unit_test(test_bigger_than_budget_fails_at_once),
        cmocka_unit_test(test_idle_ttl),
        cmocka_unit_test(test_reaper_thread),
        cmocka_unit_test(test_fallback_and_shared_file),
        cmocka_unit_test(test_no_head_of_line_blocking),
        cmocka_unit_test(test_requests_join_load),
        cmocka_unit_test(test_close_waits_for_leases),
        cmocka_unit_test(test_generate_races_unload),
        cmocka_unit_test(test_close_during_generate),
        cmocka_unit_test(test_every_call_after_close_began),
        cmocka_unit_test(test_cancel_while_waiting_for_memory),
        cmocka_unit_test(test_errors_name_the_role_once),
        cmocka_unit_test(test_fork_child),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_reconfigure_keeps_unchanged_models),
        cmocka_unit_test(test_reconfigure_placement),
        cmocka_unit_test(test_reconfigure_under_load),
        cmocka_unit_test(test_real_model_roles),
        cmocka_unit_test(test_budget_charges_the_engine),
        cmocka_unit_test(test_alone_contexts_are_charged),
        cmocka_unit_test(test_stress_16_threads),
        cmocka_unit_test(test_stress_everything_then_close),
    };
    return cmocka_run_group_tests_name("orchestra", tests, NULL, test_teardown);
}
