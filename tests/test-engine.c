/*
 * test-engine.c — continuous batching on the real model (stories260K):
 * greedy text the same alone, beside other requests, in chunked prefill
 * and as llama.cpp's own loop; requests joining between steps; a stopped
 * request freeing its sequence; prefix reuse; contexts beside the engine;
 * embeddings merged across threads; the CPU budget across models; and
 * many threads submitting, cancelling and unloading at once.
 */
#include "test.h"
#include "cpu.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

static struct orch_gen_params greedy(int n)
{
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.max_tokens = n;
    return p;
}

/* A model on the test file with n_parallel sequences and n_batch tokens per
 * step (small: prompts are read in several chunks beside the streams). */
static orch_model *engine_model(const char *path, int32_t n_parallel, int32_t n_batch)
{
    struct orch_model_params p = orch_model_default_params();
    p.path = path;
    p.role = "engine";
    p.n_threads = 1;
    p.n_parallel = n_parallel;
    p.n_batch = n_batch;
    orch_model *m = NULL;
    orch_error err = {0};
    assert_rc(orch_model_new(&p, &m, &err), ORCH_OK, err);
    return m;
}

static const char *const prompts[] = {
    "Once upon a time",
    "The cat",
    "One day, Tom went to the park with his mom and dad. They saw a big tree",
    "Lily and her mom",
    "There was a little boy named Ben. He liked to play with his red ball in the garden every day",
    "The sun",
};
#define N_PROMPTS ((int)(sizeof prompts / sizeof prompts[0]))

struct job {
    orch_model *m;
    const char *prompt;
    int max_tokens;
    bool no_cache;
    char *text;
    int32_t n_generated;
    int rc;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct orch_gen_params p = greedy(j->max_tokens);
    p.no_cache = j->no_cache;
    struct orch_gen_result res;
    orch_error err = {0};
    j->rc = orch_model_generate(j->m, j->prompt, &p, &res, &err);
    if (j->rc)
        print_error("generate: %s\n", err.msg);
    j->text = res.text;
    j->n_generated = res.n_generated;
    return NULL;
}

/* One greedy request on m gives exactly `want`. */
static void expect_text(orch_model *m, const char *prompt, int n, const char *want)
{
    struct job j = {.m = m, .prompt = prompt, .max_tokens = n};
    job_main(&j);
    assert_int_equal(j.rc, ORCH_OK);
    assert_string_equal(j.text, want);
    free(j.text);
}

/* Twelve requests of different lengths on 4 sequences and 8-token steps:
 * requests wait, join as others leave, have their prompts read in chunks
 * beside the streams; each text equals llama.cpp's own greedy loop. */
static void test_batched_equals_llama(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    char *ref[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++)
        ref[i] = test_llama_greedy(path, prompts[i], 40 + 10 * i);
    orch_model *m = engine_model(path, 4, 8);
    enum { N = 12 };
    pthread_t th[N];
    struct job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.m = m,
                               .prompt = prompts[i % N_PROMPTS],
                               .max_tokens = 40 + 10 * (i % N_PROMPTS),
                               .no_cache = i >= N_PROMPTS};
        assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_true(test_join_within(th[i], 60));
        assert_int_equal(jobs[i].rc, ORCH_OK);
        if (strcmp(jobs[i].text, ref[i % N_PROMPTS]) != 0)
            print_error("request %d (\"%s\"):\n batched: %s\n llama:   %s\n", i, jobs[i].prompt,
                        jobs[i].text, ref[i % N_PROMPTS]);
        assert_string_equal(jobs[i].text, ref[i % N_PROMPTS]);
        free(jobs[i].text);
    }
    for (int i = 0; i < N_PROMPTS; i++)
        free(ref[i]);
    orch_model_free(m);
}

/* The same with no engine (n_parallel 0: a context per request) and with a
 * request asking for more context than a sequence holds (a context of its
 * own beside the engine). */
static void test_contexts_beside_the_engine(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    char *ref = test_llama_greedy(path, prompts[2], 60);
    orch_model *solo = engine_model(path, 0, 512);
    expect_text(solo, prompts[2], 60, ref);
    orch_model_free(solo);

    /* weights kept as the file has them (no repacking): the same text */
    struct orch_model_params np = orch_model_default_params();
    np.path = path;
    np.n_threads = 1;
    np.no_repack = true;
    orch_model *nr = NULL;
    orch_error nerr = {0};
    assert_rc(orch_model_new(&np, &nr, &nerr), ORCH_OK, nerr);
    expect_text(nr, prompts[2], 60, ref);
    orch_model_free(nr);

    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.n_threads = 1;
    mp.n_ctx = 256;
    orch_model *m = NULL;
    orch_error err = {0};
    assert_rc(orch_model_new(&mp, &m, &err), ORCH_OK, err);
    struct orch_gen_params p = greedy(60);
    p.n_ctx = 2048; /* more than a sequence's 256 */
    struct orch_gen_result res;
    assert_rc(orch_model_generate(m, prompts[2], &p, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ref);
    orch_gen_result_clear(&res);
    /* and a request that fills its sequence ends with the context */
    p = greedy(1000);
    assert_rc(orch_model_generate(m, prompts[2], &p, &res, &err), ORCH_OK, err);
    if (res.finish == ORCH_FINISH_LENGTH)
        assert_int_equal(res.n_prompt + res.n_generated, 257); /* the last token is not decoded */
    else
        assert_int_equal(res.finish, ORCH_FINISH_EOS);
    orch_gen_result_clear(&res);
    orch_model_free(m);
    free(ref);
}

/* ---- joining between steps, stopping frees the sequence ------------------------ */

struct stream {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;          /* pieces seen */
    int stop_at;    /* 0 = never stop */
};

static bool stream_cb(const char *t, size_t n, void *ud)
{
    (void)t;
    (void)n;
    struct stream *s = ud;
    pthread_mutex_lock(&s->lock);
    s->n++;
    bool go = s->stop_at == 0 || s->n < s->stop_at;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return go;
}

struct long_run {
    orch_model *m;
    struct stream *s;
    int max_tokens;
    struct orch_gen_result res;
    int rc;
};

static void *long_main(void *arg)
{
    struct long_run *r = arg;
    struct orch_gen_params p = greedy(r->max_tokens);
    p.on_text = stream_cb;
    p.user_data = r->s;
    orch_error err = {0};
    r->rc = orch_model_generate(r->m, "Once upon a time", &p, &r->res, &err);
    return NULL;
}

static int stream_count(struct stream *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void stream_wait(struct stream *s, int n)
{
    pthread_mutex_lock(&s->lock);
    while (s->n < n)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* A request that arrives while another streams is served beside it, not
 * after it: the engine decodes both in each step, so the short one ends
 * while the long one is still going. */
static void test_joins_between_steps(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 4, 512);
    struct stream s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    struct long_run r = {.m = m, .s = &s, .max_tokens = 400};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, long_main, &r), 0);
    stream_wait(&s, 2);
    struct job j = {.m = m, .prompt = "The cat", .max_tokens = 8};
    assert_true(test_run_within(job_main, &j, 30));
    assert_int_equal(j.rc, ORCH_OK);
    int seen = stream_count(&s);
    free(j.text);
    assert_true(test_join_within(th, 60));
    assert_int_equal(r.rc, ORCH_OK);
    /* the long one had more to go when the short one ended */
    assert_true(seen < r.res.n_generated);
    orch_gen_result_clear(&r.res);
    orch_model_free(m);
}

/* With one sequence, a request whose callback stops it gives the sequence
 * back: the next request runs (it would wait forever otherwise). */
static void test_stop_frees_the_sequence(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 1, 512);
    for (int round = 0; round < 3; round++) {
        struct stream s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 3};
        struct long_run r = {.m = m, .s = &s, .max_tokens = 400};
        assert_true(test_run_within(long_main, &r, 30));
        assert_int_equal(r.rc, ORCH_OK);
        assert_int_equal(r.res.finish, ORCH_FINISH_CANCELLED);
        assert_int_equal(r.res.n_generated, 3);
        orch_gen_result_clear(&r.res);
        struct job j = {.m = m, .prompt = "The cat", .max_tokens = 5};
        assert_true(test_run_within(job_main, &j, 30));
        assert_int_equal(j.rc, ORCH_OK);
        assert_int_equal(j.n_generated, 5);
        free(j.text);
    }
    orch_model_free(m);
}

/* The cancel flag ends a request as a callback returning false would: set
 * before it starts, nothing is generated; set (here by the callback, as
 * another thread would) after three pieces, the fourth never comes. */
struct flagger {
    int32_t *flag;
    int n;
};

static bool set_flag_at_3(const char *t, size_t n, void *ud)
{
    (void)t;
    (void)n;
    struct flagger *f = ud;
    if (++f->n == 3)
        __atomic_store_n(f->flag, 1, __ATOMIC_RELAXED);
    return true;
}

static void test_cancel_flag(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 2, 512);
    int32_t flag = 1;
    struct orch_gen_params p = greedy(50);
    p.cancel = &flag;
    struct orch_gen_result res;
    orch_error err = {0};
    assert_rc(orch_model_generate(m, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_int_equal(res.finish, ORCH_FINISH_CANCELLED);
    assert_string_equal(res.text, "");
    orch_gen_result_clear(&res);
    flag = 0;
    struct flagger f = {&flag, 0};
    p.on_text = set_flag_at_3;
    p.user_data = &f;
    assert_rc(orch_model_generate(m, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_int_equal(res.finish, ORCH_FINISH_CANCELLED);
    assert_int_equal(f.n, 3);
    orch_gen_result_clear(&res);
    orch_model_free(m);
}

/* ---- prefix reuse ----------------------------------------------------------------- */

static void gen(orch_model *m, const char *prompt, int n, bool no_cache,
                struct orch_gen_result *res)
{
    struct orch_gen_params p = greedy(n);
    p.no_cache = no_cache;
    orch_error err = {0};
    assert_rc(orch_model_generate(m, prompt, &p, res, &err), ORCH_OK, err);
}

/* A chat's next turn starts with the previous turn's tokens: they are not
 * read again, and the text is what a fresh evaluation gives. */
static void test_prefix_reuse(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 2, 512);
    struct orch_gen_result a, b, c, fresh;
    gen(m, "Once upon a time", 30, false, &a);
    assert_int_equal(a.n_cached, 0);
    char turn2[4096];
    snprintf(turn2, sizeof turn2, "Once upon a time%s Then the dog", a.text);
    gen(m, turn2, 30, false, &b);
    assert_true(b.n_cached >= a.n_prompt - 1);
    assert_true(b.n_cached < b.n_prompt);
    gen(m, turn2, 30, true, &fresh);
    assert_int_equal(fresh.n_cached, 0);
    assert_string_equal(b.text, fresh.text);
    /* the same prompt again: all but its last token come from the cells */
    gen(m, turn2, 30, false, &c);
    assert_int_equal(c.n_cached, c.n_prompt - 1);
    assert_string_equal(c.text, fresh.text);
    orch_gen_result_clear(&a);
    orch_gen_result_clear(&b);
    orch_gen_result_clear(&c);
    orch_gen_result_clear(&fresh);
    orch_model_free(m);
}

/* ---- embeddings from several threads share batches ----------------------------------- */

struct ejob {
    orch_model *m;
    const char *const *texts;
    size_t n;
    float *v;
    int32_t dim;
    int rc;
};

static void *embed_main(void *arg)
{
    struct ejob *j = arg;
    orch_error err = {0};
    j->rc = orch_model_embed(j->m, j->texts, j->n, NULL, &j->v, &j->dim, &err);
    return NULL;
}

static void test_embeddings_from_threads(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 4, 512);
    enum { T = 4, N = 40 };
    static char bufs[T][N][64];
    static const char *texts[T][N];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            snprintf(bufs[t][i], sizeof bufs[t][i], "Thread %d text %d: a %s dog", t, i,
                     i % 2 ? "big" : "small");
            texts[t][i] = bufs[t][i];
        }
    pthread_t th[T];
    struct ejob jobs[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (struct ejob){.m = m, .texts = texts[t], .n = N};
        assert_int_equal(pthread_create(&th[t], NULL, embed_main, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++)
        assert_true(test_join_within(th[t], 60));
    for (int t = 0; t < T; t++) {
        assert_int_equal(jobs[t].rc, ORCH_OK);
        for (int i = 0; i < N; i += 7) {
            struct ejob one = {.m = m, .texts = &texts[t][i], .n = 1};
            embed_main(&one);
            assert_int_equal(one.rc, ORCH_OK);
            assert_int_equal(one.dim, jobs[t].dim);
            assert_same_embedding(one.v, jobs[t].v + (size_t)i * (size_t)one.dim, one.dim,
                                  texts[t][i]);
            free(one.v);
        }
        free(jobs[t].v);
    }
    orch_model_free(m);
}

/* ---- the CPU budget across models ------------------------------------------------------ */

/* Three models of two threads each decoding at once under a budget of two
 * CPUs never have more than two CPU tokens out between them, and all end. */
static void test_cpu_budget_across_models(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    int32_t before = orch_cpu_budget(2);
    orch_model *m[3];
    for (int i = 0; i < 3; i++) {
        struct orch_model_params p = orch_model_default_params();
        p.path = path;
        p.n_threads = 2;
        char role[16];
        snprintf(role, sizeof role, "role%d", i);
        p.role = role;
        orch_error err = {0};
        assert_rc(orch_model_new(&p, &m[i], &err), ORCH_OK, err);
        assert_rc(orch_model_load(m[i], &err), ORCH_OK, err);
    }
    (void)orch__cpu_peak();
    enum { N = 6 };
    pthread_t th[N];
    struct job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.m = m[i % 3], .prompt = prompts[i % N_PROMPTS], .max_tokens = 32};
        assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_true(test_join_within(th[i], 60));
        assert_int_equal(jobs[i].rc, ORCH_OK);
        free(jobs[i].text);
    }
    int32_t peak = orch__cpu_peak();
    assert_true(peak >= 1);
    assert_true(peak <= 2);
    /* a budget of one: one thread at a time, whatever the models ask */
    orch_cpu_budget(1);
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.m = m[i % 3], .prompt = prompts[i % N_PROMPTS], .max_tokens = 20};
        assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_true(test_join_within(th[i], 60));
        assert_int_equal(jobs[i].rc, ORCH_OK);
        free(jobs[i].text);
    }
    assert_int_equal(orch__cpu_peak(), 1);
    assert_int_equal(orch_cpu_budget(before), 1);
    for (int i = 0; i < 3; i++)
        orch_model_free(m[i]);
}

/* ---- a stream beside a long prompt ------------------------------------------------------- */

struct pace {
    orch_model *m;
    atomic_int n_a;        /* tokens the stream has had */
    atomic_bool a_started, a_stop;
    int a_at_submit;       /* the stream's count when the long prompt was sent */
    int a_at_first;        /* and when its first token came */
    int rc_a, rc_b;
};

static bool pace_a_text(const char *t, size_t n, void *ud)
{
    (void)t, (void)n;
    struct pace *p = ud;
    atomic_fetch_add(&p->n_a, 1);
    atomic_store(&p->a_started, true);
    return !atomic_load(&p->a_stop);
}

static bool pace_b_text(const char *t, size_t n, void *ud)
{
    (void)t, (void)n;
    struct pace *p = ud;
    if (p->a_at_first < 0)
        p->a_at_first = atomic_load(&p->n_a);
    return false; /* its first token is all it is for */
}

static void *pace_a(void *arg)
{
    struct pace *p = arg;
    struct orch_gen_params g = greedy(4000);
    g.on_text = pace_a_text;
    g.user_data = p;
    struct orch_gen_result res;
    orch_error err = {0};
    p->rc_a = orch_model_generate(p->m, "Once upon a time", &g, &res, &err);
    orch_gen_result_clear(&res);
    return NULL;
}

/* With streams generating, a long prompt is read in chunks that keep each
 * step within the model's stream latency, the stream getting a token each
 * step; without a limit (-1) it is read in n_batch chunks: one step. */
static void run_pace(const char *path, int32_t latency_ms, int *a_during)
{
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.role = "pace";
    mp.n_threads = 1;
    mp.n_parallel = 2;
    mp.n_ctx = 1024;
    mp.stream_latency_ms = latency_ms;
    struct pace p = {.a_at_first = -1};
    orch_error err = {0};
    assert_rc(orch_model_new(&mp, &p.m, &err), ORCH_OK, err);
    assert_rc(orch_model_load(p.m, &err), ORCH_OK, err);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pace_a, &p), 0);
    while (atomic_load(&p.n_a) < 8) /* the stream flows: its steps are timed */
        usleep(1000);
    char longp[4096] = "";
    for (int i = 0; strlen(longp) < 2000; i++)
        strcat(longp, i % 2 ? " the little dog ran" : " and a cat sat down");
    struct orch_gen_params g = greedy(1);
    g.on_text = pace_b_text;
    g.user_data = &p;
    struct orch_gen_result res;
    p.a_at_submit = atomic_load(&p.n_a);
    p.rc_b = orch_model_generate(p.m, longp, &g, &res, &err);
    assert_rc(p.rc_b, ORCH_OK, err);
    assert_true(res.n_prompt > 300);
    orch_gen_result_clear(&res);
    atomic_store(&p.a_stop, true);
    assert_true(test_join_within(th, 60));
    assert_int_equal(p.rc_a, ORCH_OK);
    assert_true(p.a_at_first >= 0);
    *a_during = p.a_at_first - p.a_at_submit;
    orch_model_free(p.m);
}

static void test_stream_latency(void **state)
{
    (void)state;
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 1000000; /* random weights: the stream does not end by itself */
    const char *path = test_synth_file("pace.gguf", &sp);
    int limited, unlimited;
    run_pace(path, 1, &limited);     /* every step as short as it can be: 16-token chunks */
    run_pace(path, -1, &unlimited);  /* one 512-token chunk */
    print_message("stream tokens while a long prompt was read: %d at 1 ms, %d unlimited\n",
                  limited, unlimited);
    /* unlimited: two 512-token steps, and the stream's tokens while the long
     * prompt was tokenized; limited: a step per 16 prompt tokens */
    assert_true(limited >= 30);
    assert_true(limited >= unlimited + 20);
}

/* ---- threads that fit the CPUs the process gets ------------------------------------------ */

static int64_t g_now;
static int64_t fake_now(void)
{
    return g_now;
}

#define MS 1000000LL

/* What decodes show of the CPUs: a run of decodes whose threads got a
 * share of the CPU time that says they did not run together (one alone is
 * noise) caps the next ones; one more thread is tried later (half a second,
 * then doubling while it fails) and lifts the cap when it goes faster per
 * token than the capped decodes. */
static void test_threads_fit_the_cpus(void **state)
{
    (void)state;
    orch__cpu_fit_reset(fake_now);
    g_now = 1000 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 2);
    orch__cpu_observe(2, 4, 10 * MS, 196 * MS / 10); /* both threads ran */
    orch__cpu_observe(2, 4, MS / 2, MS / 5);         /* too short to judge */
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    orch__cpu_observe(2, 4, 30 * MS, 45 * MS); /* three quarters of a share, once: noise */
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    int runs = 1;
    for (; runs < 20 && !orch__cpu_fit_cap(4); runs++) /* again and again: a neighbour */
        orch__cpu_observe(2, 4, 30 * MS, 45 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 1);
    assert_true(runs >= 2);
    assert_int_equal(orch__cpu_fit(2, 4), 1);
    assert_int_equal(orch__cpu_fit(4, 4), 1);
    assert_int_equal(orch__cpu_fit(1, 4), 1);
    orch__cpu_observe(1, 4, 20 * MS, 20 * MS); /* one thread: 5 ms a token */
    g_now += 499 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 1);
    g_now += 2 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 2); /* the probe */
    assert_int_equal(orch__cpu_fit(2, 4), 1); /* one at a time */
    orch__cpu_observe(2, 4, 30 * MS, 45 * MS); /* 7.5 ms a token: slower, still contended */
    assert_int_equal(orch__cpu_fit_cap(4), 1);
    g_now += 600 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 1); /* the next one waits twice as long */
    g_now += 500 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 2);
    orch__cpu_observe(2, 4, 10 * MS, 196 * MS / 10); /* 2.5 ms a token: the CPUs are back */
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    assert_int_equal(orch__cpu_fit(2, 4), 2);
    /* a lift holds the full width for half a second: a run under FIT_LOW
     * in it cuts nothing */
    for (int i = 0; i < 20; i++)
        orch__cpu_observe(2, 4, 30 * MS, 45 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    g_now += 501 * MS; /* after it, the run cuts again */
    for (runs = 0; runs < 20 && !orch__cpu_fit_cap(4); runs++)
        orch__cpu_observe(2, 4, 30 * MS, 45 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 1);
    orch__cpu_observe(1, 4, 20 * MS, 20 * MS); /* 5 ms a token at one thread */
    g_now += 501 * MS;
    assert_int_equal(orch__cpu_fit(2, 4), 2);
    /* two threads go faster though their share is low (a process's own
     * clients wake now and then): the cut was wrong, the next hold is 1 s */
    orch__cpu_observe(2, 4, 10 * MS, 15 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    g_now += 600 * MS;
    for (int i = 0; i < 20; i++)
        orch__cpu_observe(2, 4, 10 * MS, 15 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 0);
    g_now += 401 * MS;
    for (runs = 0; runs < 20 && !orch__cpu_fit_cap(4); runs++)
        orch__cpu_observe(2, 4, 10 * MS, 15 * MS);
    assert_int_equal(orch__cpu_fit_cap(4), 1);
    /* prompts are judged apart: their decodes still run both threads */
    assert_int_equal(orch__cpu_fit_cap(512), 0);
    assert_int_equal(orch__cpu_fit(2, 512), 2);
    orch__cpu_observe(2, 512, 300 * MS, 570 * MS); /* 0.95 of a share: fine */
    assert_int_equal(orch__cpu_fit_cap(512), 0);
    assert_int_equal(orch__cpu_fit(2, 4), 1);
    /* eight threads where the process gets 4.8 CPUs: down to five */
    orch__cpu_fit_reset(fake_now);
    for (int i = 0; i < 60; i++) {
        int k = orch__cpu_fit(8, 4);
        double got = k < 4.8 ? k : 4.8;
        orch__cpu_observe(k, 4, 100 * MS, (int64_t)(got * 100 * MS));
    }
    assert_int_equal(orch__cpu_fit(8, 4), 5);
    orch__cpu_fit_reset(NULL);
    assert_int_equal(orch__cpu_fit(8, 4), 8);
}

/* ---- many threads submitting, stopping and unloading at once ---------------------------- */

struct storm {
    orch_model *m;
    int id;
    int rounds;
    int failures;
};

static bool stop_early(const char *t, size_t n, void *ud)
{
    (void)t;
    (void)n;
    int *left = ud;
    return --*left > 0;
}

static void *storm_main(void *arg)
{
    struct storm *s = arg;
    for (int r = 0; r < s->rounds; r++) {
        int left = 1 + (s->id * 7 + r * 3) % 12;
        struct orch_gen_params p = greedy(8 + (s->id + r) % 16);
        if ((s->id + r) % 3 == 0) {
            p.on_text = stop_early;
            p.user_data = &left;
        }
        p.no_cache = r % 4 == 1;
        struct orch_gen_result res;
        orch_error err = {0};
        int rc = orch_model_generate(s->m, prompts[(s->id + r) % N_PROMPTS], &p, &res, &err);
        if (rc != ORCH_OK) {
            print_error("storm %d/%d: %s\n", s->id, r, err.msg);
            s->failures++;
        }
        orch_gen_result_clear(&res);
        if (r % 5 == 4) {
            const char *t = "a text to embed";
            float *v = NULL;
            int32_t dim;
            if (orch_model_embed(s->m, &t, 1, NULL, &v, &dim, &err) != ORCH_OK)
                s->failures++;
            free(v);
        }
    }
    return NULL;
}

struct unloader {
    orch_model *m;
    _Atomic bool stop;
    int n;
};

static void *unload_main(void *arg)
{
    struct unloader *u = arg;
    while (!atomic_load(&u->stop)) {
        orch_model_unload(u->m);
        u->n++;
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_storm(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = engine_model(path, 3, 16);
    enum { T = 6 };
    pthread_t th[T], ut;
    struct storm st[T];
    struct unloader u = {.m = m};
    atomic_init(&u.stop, false);
    assert_int_equal(pthread_create(&ut, NULL, unload_main, &u), 0);
    for (int i = 0; i < T; i++) {
        st[i] = (struct storm){.m = m, .id = i, .rounds = 25};
        assert_int_equal(pthread_create(&th[i], NULL, storm_main, &st[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_true(test_join_within(th[i], 300));
        assert_int_equal(st[i].failures, 0);
    }
    atomic_store(&u.stop, true);
    assert_true(test_join_within(ut, 30));
    assert_true(u.n > 0);
    orch_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_llama),
        cmocka_unit_test(test_contexts_beside_the_engine),
        cmocka_unit_test(test_joins_between_steps),
        cmocka_unit_test(test_stop_frees_the_sequence),
        cmocka_unit_test(test_cancel_flag),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_embeddings_from_threads),
        cmocka_unit_test(test_cpu_budget_across_models),
        cmocka_unit_test(test_threads_fit_the_cpus),
        cmocka_unit_test(test_stream_latency),
        cmocka_unit_test(test_storm),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown);
}
