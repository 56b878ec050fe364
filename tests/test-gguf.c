/*
 * test-gguf.c — model files: the header reader, synthetic models, and the
 * bad-input corpus (made here, never committed) through orch_file_info and
 * through a real llama.cpp load: each gives a clear error naming the file
 * and the cause, the model shows FAILED, the process and other models go on.
 */
#include "test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* A minimal GGUF: header + one u32 key "general.alignment"-free KV list. */
struct gbuf {
    unsigned char d[4096];
    size_t n;
};

static void g_put(struct gbuf *g, const void *p, size_t n)
{
    memcpy(g->d + g->n, p, n);
    g->n += n;
}
static void g_u32(struct gbuf *g, uint32_t v) { g_put(g, &v, 4); }
static void g_u64(struct gbuf *g, uint64_t v) { g_put(g, &v, 8); }
static void g_str(struct gbuf *g, const char *s)
{
    g_u64(g, strlen(s));
    g_put(g, s, strlen(s));
}

static void g_header(struct gbuf *g, uint64_t n_tensors, uint64_t n_kv)
{
    g->n = 0;
    g_put(g, "GGUF", 4);
    g_u32(g, 3);
    g_u64(g, n_tensors);
    g_u64(g, n_kv);
}

struct bad_case {
    const char *name;
    int code;
    const char *needle; /* must appear in the message */
};

/* Builds every bad file of the corpus; returns their paths. */
static int make_corpus(const char *paths[], struct bad_case cases[], int max)
{
    int n = 0;
    struct gbuf g;
    /* missing */
    static char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.gguf", test_tmpdir());
    paths[n] = missing;
    cases[n++] = (struct bad_case){"missing", ORCH_ENOENT, "No such file"};
    /* a directory */
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/adir.gguf", test_tmpdir());
    mkdir(dir, 0755);
    paths[n] = dir;
    cases[n++] = (struct bad_case){"directory", ORCH_EISDIR, "directory"};
    /* empty */
    paths[n] = test_write_file("empty.gguf", "", 0);
    cases[n++] = (struct bad_case){"empty", ORCH_EFORMAT, "empty"};
    /* random bytes */
    unsigned char rnd[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        s = s * 1103515245u + 12345u;
        rnd[i] = (unsigned char)(s >> 16);
    }
    paths[n] = test_write_file("random.gguf", rnd, sizeof rnd);
    cases[n++] = (struct bad_case){"random", ORCH_EFORMAT, "not a GGUF file"};
    /* bad version */
    g.n = 0;
    g_put(&g, "GGUF", 4);
    g_u32(&g, 99);
    g_u64(&g, 0);
    g_u64(&g, 0);
    paths[n] = test_write_file("version.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"version", ORCH_EFORMAT, "version 99"};
    /* absurd key count */
    g_header(&g, 0, UINT64_C(1) << 60);
    paths[n] = test_write_file("nkv.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"absurd key count", ORCH_EFORMAT, "absurd key count"};
    /* a plausible key count the file has no room for */
    g_header(&g, 0, 1000);
    paths[n] = test_write_file("nkv2.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"key count past the end", ORCH_EFORMAT, "cut short"};
    /* absurd tensor count */
    g_header(&g, UINT64_C(1) << 50, 0);
    paths[n] = test_write_file("ntensors.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"absurd tensor count", ORCH_EFORMAT, "absurd tensor count"};
    /* a string length past the end */
    g_header(&g, 0, 1);
    g_u64(&g, UINT64_C(1) << 40);
    g_put(&g, "general.name", 12);
    paths[n] = test_write_file("strlen.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"string length", ORCH_EFORMAT, "remain"};
    /* an array claiming more elements than the file holds */
    g_header(&g, 0, 1);
    g_str(&g, "tokenizer.ggml.scores");
    g_u32(&g, 9);
    g_u32(&g, 6);
    g_u64(&g, UINT64_C(1) << 40);
    paths[n] = test_write_file("array.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"array count", ORCH_EFORMAT, "tokenizer.ggml.scores"};
    /* unknown value type */
    g_header(&g, 0, 1);
    g_str(&g, "general.architecture");
    g_u32(&g, 77);
    paths[n] = test_write_file("vtype.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"value type", ORCH_EFORMAT, "unknown value type 77"};
    /* alignment of the wrong type (gguf's typed getter would abort here) */
    g_header(&g, 0, 1);
    g_str(&g, "general.alignment");
    g_u32(&g, 8);
    g_str(&g, "thirty-two");
    paths[n] = test_write_file("align.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"key of unexpected type", ORCH_EFORMAT, "general.alignment"};
    /* a tensor with too many dimensions */
    g_header(&g, 1, 0);
    g_str(&g, "t");
    g_u32(&g, 9);
    g_put(&g, rnd, 64); /* room for a tensor entry */
    paths[n] = test_write_file("dims.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"tensor dims", ORCH_EFORMAT, "9 dimensions"};
    /* a tensor of unknown type */
    g_header(&g, 1, 0);
    g_str(&g, "t");
    g_u32(&g, 1);
    g_u64(&g, 32);
    g_u32(&g, 200);
    g_u64(&g, 0);
    g_put(&g, rnd, 64);
    paths[n] = test_write_file("ttype.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"tensor type", ORCH_EFORMAT, "unknown type 200"};
    /* header fine, tensor data missing */
    g_header(&g, 1, 0);
    g_str(&g, "t");
    g_u32(&g, 1);
    g_u64(&g, 1024);
    g_u32(&g, 0);
    g_u64(&g, 0);
    paths[n] = test_write_file("nodata.gguf", g.d, g.n);
    cases[n++] = (struct bad_case){"no tensor data", ORCH_EFORMAT, "cut short"};
    /* the real model cut short, at several places */
    const char *real = test_model_path();
    if (real) {
        size_t sz;
        unsigned char *b = read_all(real, &sz);
        static const double cuts[] = {0.001, 0.01, 0.2, 0.5, 0.999};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0] && n < max; i++) {
            char name[64];
            snprintf(name, sizeof name, "truncated-%zu.gguf", i);
            paths[n] = test_write_file(name, b, (size_t)(sz * cuts[i]));
            cases[n++] = (struct bad_case){"truncated", ORCH_EFORMAT, "cut short"};
        }
        free(b);
    }
    assert_true(n <= max);
    return n;
}

static void test_corpus_file_info(void **state)
{
    (void)state;
    const char *paths[32];
    struct bad_case cases[32];
    int n = make_corpus(paths, cases, 32);
    for (int i = 0; i < n; i++) {
        struct orch_file_info fi;
        orch_error err = {0};
        int rc = orch_file_info(paths[i], &fi, &err);
        if (rc != cases[i].code || !strstr(err.msg, cases[i].needle) ||
            (!strstr(err.msg, paths[i]) && cases[i].code != ORCH_ENOMEM))
            print_error("case %s (%s): got %s '%s'\n", cases[i].name, paths[i], orch_err_name(rc),
                        err.msg);
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(err.msg, cases[i].needle));
        assert_non_null(strstr(err.msg, paths[i]));
    }
}

/* Every bad file fails to load through the real llama.cpp backend with a
 * clear error and state FAILED, while a good model loaded beside it keeps
 * working. */
static void test_corpus_llama_load(void **state)
{
    (void)state;
    REQUIRE_MODEL(real);
    orch_model *good = test_model_new(real, NULL, "good");
    orch_error err = {0};
    assert_rc(orch_model_acquire(good, &err), ORCH_OK, err);
    const char *paths[32];
    struct bad_case cases[32];
    int n = make_corpus(paths, cases, 32);
    orch_log_set_level(ORCH_LOG_OFF);
    for (int i = 0; i < n; i++) {
        orch_model *m = test_model_new(paths[i], NULL, "bad");
        int rc = orch_model_load(m, &err);
        if (rc != cases[i].code)
            print_error("case %s: got %s '%s'\n", cases[i].name, orch_err_name(rc), err.msg);
        assert_int_equal(rc, cases[i].code);
        assert_non_null(strstr(err.msg, paths[i]));
        assert_int_equal(orch_model_state(m), ORCH_STATE_FAILED);
        struct orch_model_stats st;
        orch_model_stats(m, &st);
        assert_int_equal(st.last_error_code, cases[i].code);
        /* the public call names the role once; the stored error does not */
        assert_int_equal(strncmp(err.msg, "role 'bad': ", 12), 0);
        assert_string_equal(st.last_error, err.msg + 12);
        orch_model_free(m);
    }
    orch_log_set_level(ORCH_LOG_WARN);
    /* the good model is untouched */
    assert_int_equal(orch_model_state(good), ORCH_STATE_READY);
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 8;
    struct orch_gen_result res;
    assert_rc(orch_model_generate(good, "Once upon a time", &gp, &res, &err), ORCH_OK, err);
    assert_true(res.n_generated > 0);
    orch_gen_result_clear(&res);
    orch_model_release(good);
    orch_model_free(good);
}

/* Unreadable: as root, permissions do not stop reads, so the check runs in
 * a child that gives up root. */
static void test_unreadable_file(void **state)
{
    (void)state;
    const char *p = test_write_file("secret.gguf", "GGUF", 4);
    chmod(p, 0000);
    chmod(test_tmpdir(), 0755);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(90);
        struct orch_file_info fi;
        orch_error err = {0};
        int rc = orch_file_info(p, &fi, &err);
        if (rc != ORCH_EACCES || !strstr(err.msg, p) || !strstr(err.msg, "ermission"))
            _exit(91);
        orch_model *m = NULL;
        struct orch_model_params mp = orch_model_default_params();
        mp.path = p;
        mp.n_threads = 1;
        if (orch_model_new(&mp, &m, &err) != ORCH_OK)
            _exit(92);
        orch_log_set_level(ORCH_LOG_OFF);
        rc = orch_model_load(m, &err);
        int mstate = orch_model_state(m);
        orch_model_free(m);
        _exit(rc == ORCH_EACCES && mstate == ORCH_STATE_FAILED ? 0 : 93);
    }
    int status;
    waitpid(pid, &status, 0);
    chmod(test_tmpdir(), 0700);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_real_file_info(void **state)
{
    (void)state;
    REQUIRE_MODEL(real);
    struct orch_file_info fi;
    orch_error err = {0};
    assert_rc(orch_file_info(real, &fi, &err), ORCH_OK, err);
    assert_string_equal(fi.arch, "llama");
    assert_int_equal(fi.n_params, 292800);
    assert_int_equal(fi.n_ctx_train, 2048);
    assert_int_equal(fi.n_embd, 64);
    assert_int_equal(fi.n_layer, 5);
    assert_int_equal(fi.n_head, 8);
    assert_int_equal(fi.n_head_kv, 4);
    assert_int_equal(fi.n_vocab, 512);
    assert_false(fi.has_chat_template);
    assert_string_equal(fi.file_type, "F32");
    assert_int_equal(fi.tensor_bytes, 292800 * 4);
    uint64_t est;
    assert_rc(orch_file_estimate(real, 256, &est, &err), ORCH_OK, err);
    /* weights + KV (5 layers * 256 * 2*32 dims * 2 bytes * 2) + compute */
    assert_true(est > fi.tensor_bytes + 5 * 256 * 64 * 2 * 2);
    uint64_t est_big;
    assert_rc(orch_file_estimate(real, 2048, &est_big, &err), ORCH_OK, err);
    assert_true(est_big > est);
}

static void test_synth_model(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/synth.gguf", test_tmpdir());
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 2000000;
    sp.seed = 7;
    orch_error err = {0};
    assert_rc(orch_synth_model(path, &sp, &err), ORCH_OK, err);
    struct orch_file_info fi;
    assert_rc(orch_file_info(path, &fi, &err), ORCH_OK, err);
    assert_string_equal(fi.arch, "llama");
    assert_true(fi.n_params > 1500000 && fi.n_params < 2600000);
    assert_string_equal(fi.file_type, "F16");
    assert_true(fi.n_vocab > 259);
    /* deterministic from the seed */
    char path2[600];
    snprintf(path2, sizeof path2, "%s/synth2.gguf", test_tmpdir());
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    size_t n1, n2;
    unsigned char *a = read_all(path, &n1), *b = read_all(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    sp.seed = 8;
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    free(b);
    b = read_all(path2, &n2);
    assert_int_equal(n1, n2);
    assert_true(memcmp(a, b, n1) != 0);
    free(a);
    free(b);
    /* llama.cpp loads it and can run it */
    orch_model *m = test_model_new(path, NULL, "synth");
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    struct orch_model_info info;
    assert_rc(orch_model_info(m, &info, &err), ORCH_OK, err);
    assert_int_equal(info.n_params, fi.n_params);
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 5;
    struct orch_gen_result res;
    assert_rc(orch_model_generate(m, "hello world", &gp, &res, &err), ORCH_OK, err);
    assert_true(res.n_generated == 5 || (res.finish == ORCH_FINISH_EOS && res.n_generated < 5));
    assert_int_equal(res.n_prompt > 1, 1);
    orch_gen_result_clear(&res);
    orch_model_free(m);
    /* a chat template goes into the file; chat renders through llama.cpp */
    sp.chat_template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                       "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    assert_rc(orch_file_info(path2, &fi, &err), ORCH_OK, err);
    assert_true(fi.has_chat_template);
    m = test_model_new(path2, NULL, "templated");
    struct orch_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi"}};
    char *text;
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_OK, err);
    assert_string_equal(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                              "<|im_start|>assistant\n");
    free(text);
    assert_rc(orch_model_chat(m, msgs, 2, &gp, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    orch_model_free(m);
    /* a template llama.cpp cannot apply is a clear error */
    sp.chat_template = "this is not a template anyone knows";
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    m = test_model_new(path2, NULL, "oddtemplate");
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_ENOTSUP, err);
    assert_non_null(strstr(err.msg, "chat template"));
    orch_model_free(m);
    sp.chat_template = NULL;
    /* bad arguments */
    sp.n_params = 10;
    assert_rc(orch_synth_model(path, &sp, &err), ORCH_EINVAL, err);
    sp.n_params = 1000000;
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.gguf", test_tmpdir());
    assert_rc(orch_synth_model(bad, &sp, &err), ORCH_ENOENT, err);
    assert_non_null(strstr(err.msg, "x.gguf"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_file_info),
        cmocka_unit_test(test_corpus_llama_load),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_real_file_info),
        cmocka_unit_test(test_synth_model),
    };
    return cmocka_run_group_tests_name("gguf", tests, NULL, test_teardown);
}
