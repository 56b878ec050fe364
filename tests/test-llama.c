/*
 * test-llama.c — the real llama.cpp backend on stories260K: load, size,
 * metadata, unload; generation (greedy equal to llama.cpp's own loop, stop
 * strings, max_tokens, seeded sampling, four threads at once); chat;
 * embeddings; bad requests.
 */
#include "test.h"

#include <llama.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>

static orch_model *g_model; /* shared, loaded once per group */

static int setup(void **state)
{
    (void)state;
    const char *path = test_model_path();
    if (!path)
        return 0;
    g_model = test_model_new(path, NULL, "stories");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    orch_model_free(g_model);
    g_model = NULL;
    test_tmpdir_cleanup();
    return 0;
}

static struct orch_gen_params greedy(int n)
{
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.max_tokens = n;
    return p;
}

/* ---- load, size, metadata, unload ---------------------------------------------- */

static void test_load_info_unload(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_model *m = test_model_new(path, NULL, "meta");
    orch_error err = {0};
    test_log_capture_start(ORCH_LOG_DEBUG);
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    char *log = test_log_capture_stop();
    /* llama.cpp's own log is routed through ours at debug level */
    assert_non_null(strstr(log, "level=debug"));
    assert_non_null(strstr(log, "role=llama.cpp event=backend_log"));
    assert_non_null(strstr(log, "event=load_end"));
    free(log);
    struct orch_model_stats st;
    orch_model_stats(m, &st);
    assert_int_equal(st.state, ORCH_STATE_READY);
    assert_int_equal(st.bytes, 292800 * 4);
    assert_true(st.load_ms > 0);
    struct orch_model_info info;
    assert_rc(orch_model_info(m, &info, &err), ORCH_OK, err);
    assert_string_equal(info.arch, "llama");
    assert_int_equal(info.n_params, 292800);
    assert_int_equal(info.n_ctx_train, 2048);
    assert_int_equal(info.n_embd, 64);
    assert_int_equal(info.n_layer, 5);
    assert_int_equal(info.n_head, 8);
    assert_int_equal(info.n_vocab, 512);
    assert_false(info.has_chat_template);
    assert_rc(orch_model_unload(m), ORCH_OK, err);
    assert_int_equal(orch_model_state(m), ORCH_STATE_UNLOADED);
    orch_model_stats(m, &st);
    assert_int_equal(st.bytes, 0);
    orch_model_free(m);
}

/* ---- generation ------------------------------------------------------------------- */

static void test_greedy_lily(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    struct orch_gen_params p = greedy(11);
    struct orch_gen_result res;
    orch_error err = {0};
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ", there was a little girl named Lily.");
    assert_int_equal(res.n_prompt, 5);
    assert_int_equal(res.n_generated, 11);
    assert_int_equal(res.finish, ORCH_FINISH_LENGTH);
    assert_int_equal(res.len, strlen(res.text));
    orch_gen_result_clear(&res);
}

/* A result's context sent back continues where it ended: 5 tokens, then 6
 * more from its context, make the text 11 tokens make at once. */
static void test_context_continues(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    struct orch_gen_params p = greedy(5);
    p.return_context = true;
    struct orch_gen_result a, b;
    orch_error err = {0};
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &a, &err), ORCH_OK, err);
    assert_string_equal(a.text, ", there was a little");
    assert_int_equal(a.n_context, 10); /* BOS and 4 prompt tokens, 5 generated */
    p = greedy(6);
    p.context = a.context;
    p.n_context = a.n_context;
    p.return_context = true;
    assert_rc(orch_model_generate(g_model, "", &p, &b, &err), ORCH_OK, err);
    assert_string_equal(b.text, " girl named Lily.");
    assert_int_equal(b.n_prompt, 10);
    assert_int_equal(b.n_context, 16);
    assert_memory_equal(b.context, a.context, 10 * sizeof(int32_t));
    orch_gen_result_clear(&b);
    /* a prompt after the context: its tokens follow, with no second BOS */
    assert_rc(orch_model_generate(g_model, " and", &p, &b, &err), ORCH_OK, err);
    assert_true(b.n_prompt > 10);
    assert_int_equal(b.n_context, (size_t)(b.n_prompt + b.n_generated));
    for (int32_t i = 10; i < b.n_prompt; i++)
        assert_int_not_equal(b.context[i], b.context[0]);
    orch_gen_result_clear(&b);
    /* without return_context there is none; a token past the vocabulary is refused */
    p.return_context = false;
    assert_rc(orch_model_generate(g_model, " and", &p, &b, &err), ORCH_OK, err);
    assert_null(b.context);
    orch_gen_result_clear(&b);
    int32_t bad[] = {1, 512};
    p.context = bad;
    p.n_context = 2;
    assert_rc(orch_model_generate(g_model, "x", &p, &b, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "context[1] is token 512"));
    orch_gen_result_clear(&a);
}

static void test_greedy_equals_llama(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    struct orch_gen_params p = greedy(100);
    struct orch_gen_result res;
    orch_error err = {0};
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    char *ref = test_llama_greedy(path, "Once upon a time", 100);
    assert_string_equal(res.text, ref);
    assert_true(strlen(ref) > 200);
    free(ref);
    orch_gen_result_clear(&res);
}

struct collect {
    char buf[8192];
    size_t len;
    int calls;
    int stop_after;
};

static bool collect_cb(const char *t, size_t n, void *ud)
{
    struct collect *c = ud;
    memcpy(c->buf + c->len, t, n);
    c->len += n;
    c->buf[c->len] = '\0';
    c->calls++;
    return c->stop_after == 0 || c->calls < c->stop_after;
}

static void test_stop_strings(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_gen_result res;
    /* "named" spans tokens; " Lily" follows it */
    const char *stops[] = {"girl na", "zzz"};
    struct orch_gen_params p = greedy(50);
    p.stop = stops;
    p.n_stop = 2;
    struct collect c = {0};
    p.on_text = collect_cb;
    p.user_data = &c;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, ", there was a little ");
    assert_int_equal(res.finish, ORCH_FINISH_STOP);
    assert_string_equal(c.buf, res.text); /* the stream saw exactly the text */
    orch_gen_result_clear(&res);
    /* a stop string at the very start of the output */
    const char *s2[] = {", there"};
    p.stop = s2;
    p.n_stop = 1;
    memset(&c, 0, sizeof c);
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_string_equal(res.text, "");
    assert_int_equal(c.len, 0);
    assert_int_equal(res.finish, ORCH_FINISH_STOP);
    orch_gen_result_clear(&res);
}

static void test_max_tokens_and_cancel(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_gen_result res;
    for (int n = 1; n <= 33; n += 8) {
        struct orch_gen_params p = greedy(n);
        assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
        assert_int_equal(res.n_generated, n);
        assert_int_equal(res.finish, ORCH_FINISH_LENGTH);
        orch_gen_result_clear(&res);
    }
    struct orch_gen_params p = greedy(50);
    struct collect c = {.stop_after = 3};
    p.on_text = collect_cb;
    p.user_data = &c;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_int_equal(res.finish, ORCH_FINISH_CANCELLED);
    assert_int_equal(c.calls, 3);
    assert_string_equal(c.buf, res.text);
    orch_gen_result_clear(&res);
    /* a context that fills up ends with "length" */
    p = greedy(500);
    p.n_ctx = 16;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    assert_int_equal(res.finish, ORCH_FINISH_LENGTH);
    /* 16 positions evaluated, plus the token sampled from the last one */
    assert_int_equal(res.n_prompt + res.n_generated, 17);
    orch_gen_result_clear(&res);
}

static void test_seeded_sampling(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 1.0f;
    p.max_tokens = 40;
    p.seed = 42;
    struct orch_gen_result a, b, c;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &a, &err), ORCH_OK, err);
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &b, &err), ORCH_OK, err);
    assert_string_equal(a.text, b.text);
    /* another seed gives another text (for at least one of several seeds) */
    bool differs = false;
    for (uint32_t s = 1; s < 6 && !differs; s++) {
        p.seed = s;
        assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &c, &err), ORCH_OK, err);
        differs = strcmp(a.text, c.text) != 0;
        orch_gen_result_clear(&c);
    }
    assert_true(differs);
    /* repeat penalty changes greedy output on a repetitive story */
    struct orch_gen_params g = greedy(120);
    struct orch_gen_result plain, pen;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &g, &plain, &err), ORCH_OK, err);
    g.repeat_penalty = 1.5f;
    assert_rc(orch_model_generate(g_model, "Once upon a time", &g, &pen, &err), ORCH_OK, err);
    assert_true(strcmp(plain.text, pen.text) != 0);
    orch_gen_result_clear(&plain);
    orch_gen_result_clear(&pen);
    orch_gen_result_clear(&a);
    orch_gen_result_clear(&b);
}

struct gen_thread {
    const char *prompt;
    char *text;
    int rc;
};

static void *gen_main(void *arg)
{
    struct gen_thread *g = arg;
    struct orch_gen_params p = greedy(60);
    struct orch_gen_result res;
    orch_error err = {0};
    g->rc = orch_model_generate(g_model, g->prompt, &p, &res, &err);
    g->text = res.text;
    return NULL;
}

/* Four threads generating at once on one model each get what they get alone. */
static void test_four_threads_same_model(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    static const char *prompts[4] = {"Once upon a time", "The cat", "One day, Tom",
                                     "Lily and her mom"};
    char *alone[4];
    for (int i = 0; i < 4; i++) {
        struct gen_thread g = {.prompt = prompts[i]};
        gen_main(&g);
        assert_int_equal(g.rc, ORCH_OK);
        alone[i] = g.text;
    }
    for (int round = 0; round < 3; round++) {
        pthread_t th[4];
        struct gen_thread g[4];
        for (int i = 0; i < 4; i++) {
            g[i] = (struct gen_thread){.prompt = prompts[i]};
            pthread_create(&th[i], NULL, gen_main, &g[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(g[i].rc, ORCH_OK);
            assert_string_equal(g[i].text, alone[i]);
            free(g[i].text);
        }
    }
    for (int i = 0; i < 4; i++)
        free(alone[i]);
}

struct shared_thread {
    const char *prompt;
    struct orch_gen_result res;
    int rc;
};

static void *shared_main(void *arg)
{
    struct shared_thread *t = arg;
    struct orch_gen_params p = greedy(30);
    orch_error err = {0};
    t->rc = orch_model_generate(g_model, t->prompt, &p, &t->res, &err);
    return NULL;
}

/* A prompt one sequence holds is copied to the others that ask for it
 * (several clients, or a request's n > 1), not read again: every one of
 * three threads reuses all but the last prompt token, and each gets the
 * text the prompt gives alone. */
static void test_shared_prompt(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    char prompt[4096] = "";
    for (int i = 0; i < 8; i++)
        strcat(prompt, "Once upon a time, there was a little girl named Lily. She liked to "
                       "play. ");
    struct orch_gen_params p = greedy(30);
    p.no_cache = true;
    struct orch_gen_result alone;
    orch_error err = {0};
    assert_rc(orch_model_generate(g_model, prompt, &p, &alone, &err), ORCH_OK, err);
    assert_true(alone.n_prompt > 100);
    struct shared_thread t[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        t[i] = (struct shared_thread){.prompt = prompt};
        pthread_create(&th[i], NULL, shared_main, &t[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].rc, ORCH_OK);
        assert_string_equal(t[i].res.text, alone.text);
        /* one took its own slot's cells, the others a copy of them */
        assert_int_equal(t[i].res.n_cached, alone.n_prompt - 1);
        orch_gen_result_clear(&t[i].res);
    }
    orch_gen_result_clear(&alone);
}

/* ---- bad requests ----------------------------------------------------------------- */

static void test_bad_requests(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_gen_result res;
    struct orch_gen_params p = greedy(5);
    assert_rc(orch_model_generate(g_model, "", &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(res.finish, ORCH_FINISH_ERROR);
    assert_null(res.text);
    assert_rc(orch_model_generate(g_model, NULL, &p, &res, &err), ORCH_EINVAL, err);
    assert_rc(orch_model_generate(g_model, "bad \xff\xfe utf8", &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_rc(orch_model_generate(g_model, "cut \xe2\x82", &p, &res, &err), ORCH_EINVAL, err);
    p.max_tokens = 0;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "max_tokens"));
    p.max_tokens = -3;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    p = greedy(5);
    p.temperature = -0.1f;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "temperature"));
    p = greedy(5);
    p.temperature = NAN;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    p = greedy(5);
    p.top_p = 0;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    p.top_p = 1.5f;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "top_p"));
    p = greedy(5);
    const char *empty_stop[] = {""};
    p.stop = empty_stop;
    p.n_stop = 1;
    assert_rc(orch_model_generate(g_model, "x", &p, &res, &err), ORCH_EINVAL, err);
    /* prompt longer than the context: a clear error, not a cut */
    p = greedy(5);
    p.n_ctx = 32;
    char long_prompt[4000] = "";
    for (int i = 0; i < 100; i++)
        strcat(long_prompt, "Once upon a time ");
    assert_rc(orch_model_generate(g_model, long_prompt, &p, &res, &err), ORCH_ECTX, err);
    assert_non_null(strstr(err.msg, "context holds 32"));
    assert_non_null(strstr(err.msg, "stories"));
    assert_int_equal(res.finish, ORCH_FINISH_ERROR);
    /* and the model still works */
    p = greedy(3);
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
}

/* Out of memory while collecting the text: an error, no leak, model fine. */
extern int (*orch__fault_hook)(int id);
static int fail_result(int id)
{
    return id == 2; /* ORCH_FAULT_OOM_RESULT */
}

static void test_oom_collecting_text(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_gen_result res;
    struct orch_gen_params p = greedy(5);
    orch__fault_hook = fail_result;
    int rc = orch_model_generate(g_model, "Once upon a time", &p, &res, &err);
    orch__fault_hook = NULL;
    assert_rc(rc, ORCH_ENOMEM, err);
    assert_null(res.text);
    struct orch_model_stats st;
    orch_model_stats(g_model, &st);
    assert_int_equal(st.n_leases, 0);
    assert_rc(orch_model_generate(g_model, "Once upon a time", &p, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
}

/* ---- chat --------------------------------------------------------------------------- */

static void test_chat(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    struct orch_chat_message msgs[] = {
        {"system", "You tell stories."}, {"user", "Tell me a story."}, {"assistant", "Once"},
        {"user", "More"}};
    char *s;
    assert_rc(orch_model_chat_format(g_model, msgs, 4, true, &s, &err), ORCH_OK, err);
    /* no template in stories260K: the documented transcript */
    assert_string_equal(s, "System: You tell stories.\nUser: Tell me a story.\nAssistant: Once\n"
                           "User: More\nAssistant:");
    free(s);
    struct orch_gen_params p = greedy(8);
    struct orch_gen_result res;
    assert_rc(orch_model_chat(g_model, msgs, 2, &p, &res, &err), ORCH_OK, err);
    assert_int_equal(res.n_generated, 8);
    orch_gen_result_clear(&res);
    struct orch_chat_message bad[] = {{"wizard", "hi"}};
    assert_rc(orch_model_chat(g_model, bad, 1, &p, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "wizard"));
    assert_rc(orch_model_chat(g_model, msgs, 0, &p, &res, &err), ORCH_EINVAL, err);
    struct orch_chat_message badutf[] = {{"user", "\xc0\xaf"}};
    assert_rc(orch_model_chat(g_model, badutf, 1, &p, &res, &err), ORCH_EINVAL, err);
}

/* ---- embeddings ------------------------------------------------------------------- */

static void test_embeddings(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    orch_error err = {0};
    const char *texts[] = {"Once upon a time", "The cat sat on the mat.", "Lily liked to play",
                           "Once upon a time"};
    float *v;
    int32_t dim;
    assert_rc(orch_model_embed(g_model, texts, 4, NULL, &v, &dim, &err), ORCH_OK, err);
    assert_int_equal(dim, 64);
    for (int t = 0; t < 4; t++) {
        double norm = 0;
        for (int i = 0; i < dim; i++)
            norm += (double)v[t * dim + i] * v[t * dim + i];
        assert_true(fabs(sqrt(norm) - 1.0) < 1e-5);
    }
    /* same text, same vector, in one batch */
    assert_same_embedding(v, v + 3 * dim, dim, "text 0 and text 3 of one batch");
    /* different texts differ */
    double dot = 0;
    for (int i = 0; i < dim; i++)
        dot += (double)v[i] * v[dim + i];
    assert_true(dot < 0.9999);
    /* alone equals in the batch */
    for (int t = 0; t < 3; t++) {
        float *one;
        int32_t d1;
        assert_rc(orch_model_embed(g_model, &texts[t], 1, NULL, &one, &d1, &err), ORCH_OK, err);
        assert_int_equal(d1, dim);
        assert_same_embedding(one, v + t * dim, dim, texts[t]);
        free(one);
    }
    /* the tokens the texts made: as many as the same text makes as a prompt */
    int64_t n_tok = 0;
    struct orch_embed_params cp = orch_embed_default_params();
    cp.n_tokens = &n_tok;
    float *counted;
    assert_rc(orch_model_embed(g_model, texts, 1, &cp, &counted, &dim, &err), ORCH_OK, err);
    free(counted);
    struct orch_gen_params one_tok = greedy(1);
    struct orch_gen_result gr;
    assert_rc(orch_model_generate(g_model, texts[0], &one_tok, &gr, &err), ORCH_OK, err);
    assert_int_equal(n_tok, gr.n_prompt);
    orch_gen_result_clear(&gr);
    /* raw vectors are not unit length */
    struct orch_embed_params ep = orch_embed_default_params();
    ep.normalize = false;
    float *raw;
    assert_rc(orch_model_embed(g_model, texts, 1, &ep, &raw, &dim, &err), ORCH_OK, err);
    double rn = 0;
    for (int i = 0; i < dim; i++)
        rn += (double)raw[i] * raw[i];
    assert_true(fabs(sqrt(rn) - 1.0) > 1e-3);
    for (int i = 0; i < dim; i++)
        raw[i] = (float)(raw[i] / sqrt(rn));
    assert_same_embedding(raw, v, dim, "raw vector normalised");
    free(raw);
    free(v);
    /* errors */
    assert_rc(orch_model_embed(g_model, texts, 0, NULL, &v, &dim, &err), ORCH_EINVAL, err);
    const char *bad[] = {"ok", "\xff"};
    assert_rc(orch_model_embed(g_model, bad, 2, NULL, &v, &dim, &err), ORCH_EINVAL, err);
    assert_null(v);
    const char *empty[] = {""};
    assert_rc(orch_model_embed(g_model, empty, 1, NULL, &v, &dim, &err), ORCH_EINVAL, err);
}

/* 300 texts: more than one batch of sequences; still in order and unit. */
static void test_embeddings_many(void **state)
{
    (void)state;
    REQUIRE_MODEL(path);
    enum { N = 300 };
    char *bufs[N];
    const char *texts[N];
    for (int i = 0; i < N; i++) {
        bufs[i] = malloc(64);
        snprintf(bufs[i], 64, "Story number %d about a dog", i);
        texts[i] = bufs[i];
    }
    float *v, *one;
    int32_t dim, d1;
    orch_error err = {0};
    assert_rc(orch_model_embed(g_model, texts, N, NULL, &v, &dim, &err), ORCH_OK, err);
    int probe[] = {0, 63, 64, 200, 299};
    for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
        assert_rc(orch_model_embed(g_model, &texts[probe[k]], 1, NULL, &one, &d1, &err), ORCH_OK,
                  err);
        assert_same_embedding(one, v + probe[k] * dim, dim, texts[probe[k]]);
        free(one);
    }
    free(v);
    for (int i = 0; i < N; i++)
        free(bufs[i]);
}

/* ---- text is UTF-8 whatever the model emits ------------------------------------------ */

/* Strict UTF-8 (no overlongs, surrogates or cut characters). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 && c >= 0xC2 ? 2 : (c >> 4) == 14 ? 3
                 : (c >> 3) == 30 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
            return false;
        i += k;
    }
    return true;
}

static bool pieces_valid(const char *text, size_t len, void *ud)
{
    if (!valid_utf8((const unsigned char *)text, len))
        (*(int *)ud)++;
    return true;
}

/* A model's byte tokens need not make UTF-8 (random weights emit stray
 * bytes often): every piece streamed and the whole text are valid UTF-8,
 * with U+FFFD where the model's bytes were not. */
/* kB of this process in `field` ("Rss:", "Anonymous:") over the mappings
 * of `path` (path NULL: RssAnon of the whole process, /proc/self/status). */
static long mem_kb(const char *path, const char *field)
{
    char line[4352];
    long sum = 0;
    if (!path) {
        FILE *f = fopen("/proc/self/status", "r");
        assert_non_null(f);
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "RssAnon:", 8) == 0)
                sum = strtol(line + 8, NULL, 10);
        fclose(f);
        return sum;
    }
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    bool in = false;
    size_t fl = strlen(field), pl = strlen(path);
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) /* a mapping's first line */
            in = n >= pl && strcmp(line + n - pl, path) == 0;
        else if (in && strncmp(line, field, fl) == 0)
            sum += strtol(line + fl, NULL, 10);
    }
    fclose(f);
    return sum;
}

/* Weights once: a model's weights are resident once, whether llama.cpp
 * repacks them for this CPU (Q4_0 on AVX2 or ARM: a copy of its own) or
 * reads them from the mapped file. Measured as what the load added in
 * anonymous memory plus the file's pages still mapped after a generation,
 * against the file's tensor bytes. Before, the pages a repack read stayed
 * mapped beside the copy (1.9x on AVX2). */
static void test_weights_once(void **state)
{
    (void)state;
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 24000000;
    sp.q4_0 = true;
    const char *path = test_synth_file("q4.gguf", &sp);
    orch_error err = {0};
    struct orch_file_info fi;
    assert_rc(orch_file_info(path, &fi, &err), ORCH_OK, err);
    assert_string_equal(fi.file_type, "Q4_0");
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.n_ctx = 128;
    mp.n_parallel = 1;
    mp.n_threads = 1;
    orch_model *m;
    assert_rc(orch_model_new(&mp, &m, &err), ORCH_OK, err);
    long anon0 = mem_kb(NULL, NULL);
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    long anon_load = mem_kb(NULL, NULL) - anon0;
    long mapped_load = mem_kb(path, "Rss:");
    struct orch_gen_params gp = orch_gen_default_params();
    gp.max_tokens = 4;
    struct orch_gen_result res;
    assert_rc(orch_model_generate(m, "hello", &gp, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    long mapped = mem_kb(path, "Rss:");
    long weights_kb = (long)(fi.tensor_bytes / 1024);
    print_message("weights %ld kB: load added %ld kB anonymous, %ld kB mapped (%ld kB after "
                  "a generation): %.2fx\n",
                  weights_kb, anon_load, mapped_load, mapped,
                  (double)(anon_load + mapped) / (double)weights_kb);
    /* the file's pages are gone after the load (llama.cpp had populated
     * the mapping: all of it was resident) */
    assert_true(mapped_load <= weights_kb / 10);
    /* and a copy plus the pages read back stay within the weights once
     * (not under a sanitizer: its shadow memory adds to what a load
     * allocates, copy or not) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    print_message("sanitizer build: the resident total is not compared\n");
#else
    assert_true(anon_load + mapped <= weights_kb * 13 / 10);
#endif
    orch_model_free(m);
}

/* The CPU backend built for this machine (scripts/setup.sh: native/ beside
 * libllama) is taken only on a CPU with its instruction set, and taken
 * whenever it is there and matches, unless ORCH_GGML_BACKEND_DIR says
 * otherwise. */
void orch__lm_backend_dirs(const char **libdir, const char **used);
void orch__lm_native_dir(const char *dir, char *out, size_t size);

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_native_backend(void **state)
{
    (void)state;
    char flags[8192] = "", line[8192], dir[4096], path[4200], out[4200];
    FILE *ci = fopen("/proc/cpuinfo", "r");
    assert_non_null(ci);
    while (!*flags && fgets(line, sizeof line, ci))
        if (!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8)) {
            const char *v = strchr(line, ':') + 1;
            v += strspn(v, " \t");
            snprintf(flags, sizeof flags, "%s", v); /* keeps the newline, as setup writes it */
        }
    fclose(ci);
    assert_true(*flags);
    snprintf(dir, sizeof dir, "%s/lib", test_tmpdir());
    assert_int_equal(mkdir(dir, 0755), 0);
    orch__lm_native_dir(dir, out, sizeof out);
    assert_string_equal(out, ""); /* no native/ */
    snprintf(path, sizeof path, "%s/native", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    orch__lm_native_dir(dir, out, sizeof out);
    assert_string_equal(out, ""); /* no cpu-flags */
    snprintf(path, sizeof path, "%s/native/cpu-flags", dir);
    write_text(path, "fpu sse2 another_cpu\n");
    orch__lm_native_dir(dir, out, sizeof out);
    assert_string_equal(out, ""); /* another CPU's */
    write_text(path, flags);
    orch__lm_native_dir(dir, out, sizeof out);
    snprintf(path, sizeof path, "%s/native", dir);
    assert_string_equal(out, path);

    /* what this process loaded */
    const char *libdir, *used;
    orch__lm_backend_dirs(&libdir, &used);
    orch__lm_native_dir(libdir, out, sizeof out);
    const char *env = getenv("ORCH_GGML_BACKEND_DIR");
    print_message("libllama in %s; CPU backend from %s (native for this CPU: %s)\n", libdir,
                  *used ? used : "ggml's search", *out ? out : "none");
    if (env && *env)
        assert_string_equal(used, env);
    else if (*out)
        assert_string_equal(used, out);
    else
        assert_string_not_equal(used, path);
}

static void test_output_is_utf8(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/bytes.gguf", test_tmpdir());
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 1000000;
    orch_error err = {0};
    assert_rc(orch_synth_model(path, &sp, &err), ORCH_OK, err);
    orch_model *m = test_model_new(path, NULL, "bytes");
    int replaced = 0, bad_pieces = 0;
    for (unsigned seed = 1; seed <= 8; seed++) {
        struct orch_gen_params gp = orch_gen_default_params();
        gp.max_tokens = 128;
        gp.temperature = 1.0f;
        gp.seed = seed;
        gp.top_k = 0;
        gp.top_p = 1;
        gp.min_p = 0;
        gp.on_text = pieces_valid;
        gp.user_data = &bad_pieces;
        struct orch_gen_result r;
        assert_rc(orch_model_generate(m, "hello", &gp, &r, &err), ORCH_OK, err);
        if (!valid_utf8((const unsigned char *)r.text, r.len))
            print_error("seed %u: the text is not UTF-8\n", seed);
        assert_true(valid_utf8((const unsigned char *)r.text, r.len));
        for (const char *p = r.text; (p = strstr(p, "\xEF\xBF\xBD")); p += 3)
            replaced++;
        orch_gen_result_clear(&r);
    }
    assert_int_equal(bad_pieces, 0);
    assert_true(replaced > 0); /* the stray bytes were there, and were replaced */
    orch_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_info_unload),
        cmocka_unit_test(test_greedy_lily),
        cmocka_unit_test(test_greedy_equals_llama),
        cmocka_unit_test(test_context_continues),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_max_tokens_and_cancel),
        cmocka_unit_test(test_seeded_sampling),
        cmocka_unit_test(test_four_threads_same_model),
        cmocka_unit_test(test_shared_prompt),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_oom_collecting_text),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_embeddings_many),
        cmocka_unit_test(test_output_is_utf8),
        cmocka_unit_test(test_weights_once),
        cmocka_unit_test(test_native_backend),
    };
    return cmocka_run_group_tests_name("llama", tests, setup, teardown);
}
