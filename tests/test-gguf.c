/*
 * test-gguf.c — model files: the header reader, synthetic models, and the
 * bad-input corpus (made here, never committed) through orch_file_info and
 * through a real llama.cpp load: each gives a clear error naming the file
 * and the cause, the model shows FAILED, the process and other models go on.
 */
#include "test.h"
#include "gguf_edit.h"
#include "internal.h"

#include <time.h>

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
    cases[n++] = (struct bad_case){"tensor type", ORCH_EFORMAT, "type 200, which this llama.cpp"};
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
    /* a chat template goes into the file; chat renders it through llama.cpp's
     * Jinja engine */
    sp.chat_template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                       "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                       "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}";
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    assert_rc(orch_file_info(path2, &fi, &err), ORCH_OK, err);
    assert_true(fi.has_chat_template);
    m = test_model_new(path2, NULL, "templated");
    struct orch_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi"}};
    char *text;
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_OK, err);
    assert_string_equal(text,
                        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                        "<|im_start|>assistant\n");
    free(text);
    assert_rc(orch_model_chat(m, msgs, 2, &gp, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    orch_model_free(m);
    /* a template that does not parse, and one that raises, are clear errors
     * (ORCH_EINVAL: the daemon's 400) naming the role and the template's words */
    sp.chat_template = "{% for x in %}";
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    m = test_model_new(path2, NULL, "oddtemplate");
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "chat template"));
    assert_non_null(strstr(err.msg, "oddtemplate"));
    orch_model_free(m);
    sp.chat_template = "{{ raise_exception('System messages are not supported here') }}";
    assert_rc(orch_synth_model(path2, &sp, &err), ORCH_OK, err);
    m = test_model_new(path2, NULL, "raising");
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "System messages are not supported here"));
    /* the next request on the model still works */
    assert_rc(orch_model_chat_format(m, msgs, 2, true, &text, &err), ORCH_EINVAL, err);
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

/* ---- hostile values: what llama.cpp's loader would abort or spin on -------------- */

struct hostile {
    const char *name;
    struct gguf_edit edits[3];
    const char *needle; /* in the message: the key and the limit */
};

static const int64_t kv_layers_bad[] = {2, 2, 2, 5};

static const struct hostile hostiles[] = {
    {"block_count 0",
     {{"{arch}.block_count", GE_U32, .i = 0}},
     "llama.block_count' is 0; llama.cpp accepts 1 to 512"},
    {"block_count 1e9",
     {{"{arch}.block_count", GE_U32, .i = 1000000000}},
     "llama.block_count' is 1000000000"},
    {"alignment 1",
     {{"general.alignment", GE_U32, .i = 1}},
     "'general.alignment' is 1; expected a u32 power of two from 32"},
    {"alignment 16", {{"general.alignment", GE_U32, .i = 16}}, "'general.alignment' is 16"},
    {"too many experts",
     {{"{arch}.expert_count", GE_U32, .i = 5000}, {"{arch}.expert_used_count", GE_U32, .i = 2}},
     "expert_count' is 5000; llama.cpp accepts 0 to 1024"},
    {"more used than experts",
     {{"{arch}.expert_count", GE_U32, .i = 4}, {"{arch}.expert_used_count", GE_U32, .i = 8}},
     "expert_used_count' is 8, more than the 4 experts"},
    {"experts, none used",
     {{"{arch}.expert_count", GE_U32, .i = 4}},
     "expert_used_count' is 0 (or absent) with 4 experts"},
    {"used without experts",
     {{"{arch}.expert_used_count", GE_U32, .i = 2}},
     "expert_used_count' is 2, more than the 0 experts"},
    {"expert groups",
     {{"{arch}.expert_count", GE_U32, .i = 8},
      {"{arch}.expert_used_count", GE_U32, .i = 2},
      {"{arch}.expert_group_count", GE_U32, .i = 3}},
     "expert_group_count' is 3, which does not divide the 8 experts"},
    {"rope scaling",
     {{"{arch}.rope.scaling.type", GE_STR, .s = "bogus"}},
     "rope.scaling.type' is 'bogus'; llama.cpp knows none, linear, yarn and longrope"},
    {"kv heads do not divide",
     {{"{arch}.attention.head_count_kv", GE_U32, .i = 3}},
     "head_count_kv' is 3 at layer 0; it must divide"},
    {"kv heads per layer",
     {{"{arch}.attention.head_count_kv", GE_ARR, .arr_type = GE_U32, .arr = kv_layers_bad,
       .n_arr = 4}},
     "head_count_kv' is 5 at layer 3"},
    {"more heads than width",
     {{"{arch}.attention.head_count", GE_U32, .i = 1000},
      {"{arch}.attention.head_count_kv", GE_U32, .i = 1000}},
     "head_count' is 1000, more than the embedding length"},
    {"rope dims odd",
     {{"{arch}.rope.dimension_count", GE_U32, .i = 33}},
     "rope.dimension_count' is 33; it must be even and at most the head size"},
    {"rope dims past head",
     {{"{arch}.rope.dimension_count", GE_U32, .i = 4096}},
     "rope.dimension_count' is 4096"},
    {"width 0",
     {{"{arch}.embedding_length", GE_U32, .i = 0}},
     "embedding_length' is 0; expected 1 to"},
    {"nextn past layers",
     {{"{arch}.nextn_predict_layers", GE_U32, .i = 99}},
     "nextn_predict_layers' is 99; it must be from 0 to the block count"},
    {"bos outside vocab",
     {{"tokenizer.ggml.model", GE_STR, .s = "t5"},
      {"tokenizer.ggml.add_bos_token", GE_BOOL, .i = 1},
      {"tokenizer.ggml.bos_token_id", GE_U32, .i = 99999}},
     "bos_token_id' is 99999, outside the vocabulary"},
    {"duplicate key", {{NULL}}, "key 'general.name' appears twice"},
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Loads path through the real backend; returns the code, err filled. */
static int try_load(const char *path, orch_error *err, double *ms)
{
    orch_model *m = test_model_new(path, NULL, "hostile");
    double t0 = now_ms();
    int rc = orch_model_load(m, err);
    *ms = now_ms() - t0;
    orch_model_free(m);
    return rc;
}

/* One file per condition, each made from a valid model by changing one to
 * three keys: the pre-check refuses each with ORCH_EFORMAT naming the file,
 * the key and the limit, before llama.cpp sees it. Without the pre-check the
 * pinned llama.cpp aborts the process (SIGABRT) on twelve of them: the first
 * ten and "nextn past layers" at load, "kv heads per layer" at the first
 * context; the others it refuses itself, later and less clearly (measured
 * with a forked probe, 2026-11-27). */
/* A file's header is read once per version of the file: many roles on two
 * files cost two reads however often they are listed, and a file that
 * changes (in place with a new time, or replaced) is read again. */
static void test_header_read_once(void **state)
{
    (void)state;
    char ini[8192];
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 200000;
    const char *a = test_synth_file("once-a.gguf", &sp);
    sp.seed = 2;
    sp.n_ctx_train = 512;
    const char *b = test_synth_file("once-b.gguf", &sp);
    orch_error err = {0};
    int pos = snprintf(ini, sizeof ini, "[defaults]\nidle_ttl = -1\n");
    for (int i = 0; i < 50; i++)
        pos += snprintf(ini + pos, sizeof ini - (size_t)pos, "[r%d]\npath = %s\n", i,
                        i % 2 ? a : b);
    orch_config *cfg;
    assert_rc(orch_config_parse(ini, "once.ini", false, &cfg, &err), ORCH_OK, err);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    orch_config_free(cfg);
    uint64_t p0 = orch__file_summary_parses();
    for (int k = 0; k < 3; k++) {
        struct orch_role_status *st;
        size_t n;
        assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
        assert_int_equal(n, 50);
        assert_true(st[0].bytes_estimated && st[0].bytes > 0);
        assert_true(st[2].bytes == st[0].bytes && st[3].bytes == st[1].bytes);
        free(st);
    }
    assert_true(orch__file_summary_parses() - p0 <= 2);
    orch_close(o);
    /* replaced (a new inode): read again, the new header seen */
    struct orch_file_info fi;
    assert_rc(orch_file_info(a, &fi, &err), ORCH_OK, err);
    assert_int_equal(fi.n_ctx_train, ORCH_N_CTX_DEFAULT);
    assert_rc(orch_synth_model(a, &sp, &err), ORCH_OK, err);
    assert_rc(orch_file_info(a, &fi, &err), ORCH_OK, err);
    assert_int_equal(fi.n_ctx_train, 512);
    /* rewritten in place with the same size: a new modification time is a
     * new version (set apart explicitly: the clock may not have moved) */
    size_t na, nb;
    unsigned char *da = read_all(a, &na), *db = read_all(b, &nb);
    assert_int_equal(na, nb);
    sp.n_ctx_train = 0;
    assert_rc(orch_synth_model(b, &sp, &err), ORCH_OK, err);
    unsigned char *dfresh = read_all(b, &nb);
    assert_int_equal(na, nb);
    assert_rc(orch_file_info(a, &fi, &err), ORCH_OK, err); /* kept: 512 */
    int fd = open(a, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, dfresh, nb), (ssize_t)nb);
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                             {.tv_sec = 1000000000, .tv_nsec = 0}};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
    assert_rc(orch_file_info(a, &fi, &err), ORCH_OK, err);
    assert_int_equal(fi.n_ctx_train, ORCH_N_CTX_DEFAULT);
    /* a file that goes bad is not answered from what was kept */
    assert_int_equal(truncate(a, 16), 0);
    assert_int_equal(orch_file_info(a, &fi, &err), ORCH_EFORMAT);
    free(da);
    free(db);
    free(dfresh);
}

static void test_hostile_values(void **state)
{
    (void)state;
    char base[600];
    snprintf(base, sizeof base, "%s/base.gguf", test_tmpdir());
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 1000000;
    orch_error err = {0};
    assert_rc(orch_synth_model(base, &sp, &err), ORCH_OK, err);
    double ms, worst = 0;
    /* the control: the untouched file, and one rewritten with no change, load */
    assert_rc(try_load(base, &err, &ms), ORCH_OK, err);
    char same[600];
    snprintf(same, sizeof same, "%s/same.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(base, same, NULL, 0), 0);
    assert_rc(try_load(same, &err, &ms), ORCH_OK, err);
    orch_log_set_level(ORCH_LOG_OFF);
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        const struct hostile *h = &hostiles[i];
        size_t n = 0;
        while (n < 3 && h->edits[n].key)
            n++;
        char path[600];
        snprintf(path, sizeof path, "%s/hostile-%zu.gguf", test_tmpdir(), i);
        if (strcmp(h->name, "duplicate key") == 0) {
            /* the editor replaces a key in place, so write this one by hand:
             * a header with the same key twice */
            FILE *f;
            unsigned char g2[256];
            size_t k = 0;
            uint32_t u;
            uint64_t q;
            memcpy(g2 + k, "GGUF", 4), k += 4;
            u = 3, memcpy(g2 + k, &u, 4), k += 4;
            q = 0, memcpy(g2 + k, &q, 8), k += 8;
            q = 2, memcpy(g2 + k, &q, 8), k += 8;
            for (int d = 0; d < 2; d++) {
                q = 12, memcpy(g2 + k, &q, 8), k += 8;
                memcpy(g2 + k, "general.name", 12), k += 12;
                u = 8, memcpy(g2 + k, &u, 4), k += 4;
                q = 1, memcpy(g2 + k, &q, 8), k += 8;
                g2[k++] = 'a';
            }
            f = fopen(path, "wb");
            fwrite(g2, 1, k, f);
            fclose(f);
        } else {
            assert_int_equal(gguf_rewrite(base, path, h->edits, n), 0);
        }
        int rc = try_load(path, &err, &ms);
        if (ms > worst)
            worst = ms;
        test_assert_refused(h->name, rc, &err, h->needle, path);
    }
    /* a file the pre-check passes and llama.cpp refuses is bad input too
     * (ORCH_EFORMAT, exit 3), with llama.cpp's cause first, warnings after */
    char refused[600];
    snprintf(refused, sizeof refused, "%s/refused.gguf", test_tmpdir());
    struct gguf_edit bpe[] = {{"tokenizer.ggml.model", GE_STR, .s = "gpt2"}};
    assert_int_equal(gguf_rewrite(base, refused, bpe, 1), 0);
    int rc = try_load(refused, &err, &ms);
    orch_log_set_level(ORCH_LOG_WARN);
    if (rc != ORCH_EFORMAT || !strstr(err.msg, "llama.cpp refused"))
        print_error("got %s '%s'\n", orch_err_name(rc), err.msg);
    assert_int_equal(rc, ORCH_EFORMAT);
    const char *cause = strstr(err.msg, "merges"), *warn = strstr(err.msg, "warnings:");
    assert_non_null(cause);
    assert_true(!warn || cause < warn);
    print_message("hostile values: %zu files refused, slowest in %.2f ms\n",
                  sizeof hostiles / sizeof hostiles[0], worst);
}

/* The file from the review: a header claiming 1,000,000 metadata keys
 * (21 MB of them). llama.cpp spent over 40 minutes in its duplicate-key
 * check; the pre-check refuses it from the header. */
static void test_million_keys(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/million.gguf", test_tmpdir());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t u = 0x46554747u;
    fwrite(&u, 4, 1, f);
    u = 3;
    fwrite(&u, 4, 1, f);
    uint64_t q = 0;
    fwrite(&q, 8, 1, f);
    q = 1000000;
    fwrite(&q, 8, 1, f);
    for (int i = 0; i < 1000000; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%07d", i);
        q = (uint64_t)n;
        fwrite(&q, 8, 1, f);
        fwrite(key, 1, (size_t)n, f);
        u = 4;
        fwrite(&u, 4, 1, f);
        fwrite(&u, 4, 1, f);
    }
    fclose(f);
    orch_error err = {0};
    double ms;
    orch_log_set_level(ORCH_LOG_OFF);
    int rc = try_load(path, &err, &ms);
    orch_log_set_level(ORCH_LOG_WARN);
    assert_rc(rc, ORCH_EFORMAT, err);
    assert_non_null(strstr(err.msg, "absurd key count 1000000 in the header (limit 16384"));
    print_message("1,000,000 keys: refused in %.2f ms\n", ms);
}

/* A name longer than orch_file_info keeps is cut on a character boundary
 * (it used to be cut mid-character, and `info --json` then failed). */
static void test_name_cut_on_character(void **state)
{
    (void)state;
    char base[600], path[600], name[200];
    snprintf(base, sizeof base, "%s/named-base.gguf", test_tmpdir());
    snprintf(path, sizeof path, "%s/named.gguf", test_tmpdir());
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 100000;
    orch_error err = {0};
    assert_rc(orch_synth_model(base, &sp, &err), ORCH_OK, err);
    memset(name, 'a', 126);
    strcpy(name + 126, "\xC3\xA9tude"); /* "é" at bytes 126 and 127 */
    struct gguf_edit e[] = {{"general.name", GE_STR, .s = name}};
    assert_int_equal(gguf_rewrite(base, path, e, 1), 0);
    struct orch_file_info fi;
    assert_rc(orch_file_info(path, &fi, &err), ORCH_OK, err);
    assert_int_equal(strlen(fi.name), 126);
    assert_memory_equal(fi.name, name, 126);
}

/* A tensor whose byte size wraps 64 bits (it used to be accepted: 4.6e18
 * parameters in 1 MiB). */
static void test_tensor_size_wraps(void **state)
{
    (void)state;
    unsigned char g2[512];
    size_t k = 0;
    uint32_t u;
    uint64_t q;
    memcpy(g2 + k, "GGUF", 4), k += 4;
    u = 3, memcpy(g2 + k, &u, 4), k += 4;
    q = 1, memcpy(g2 + k, &q, 8), k += 8; /* one tensor */
    q = 0, memcpy(g2 + k, &q, 8), k += 8;
    q = 1, memcpy(g2 + k, &q, 8), k += 8;
    g2[k++] = 't';
    u = 2, memcpy(g2 + k, &u, 4), k += 4;
    q = UINT64_C(1) << 40, memcpy(g2 + k, &q, 8), k += 8;
    q = UINT64_C(1) << 22, memcpy(g2 + k, &q, 8), k += 8; /* 2^62 elements */
    u = 0, memcpy(g2 + k, &u, 4), k += 4;                 /* F32: 2^64 bytes */
    q = 0, memcpy(g2 + k, &q, 8), k += 8;
    const char *path = test_write_file("wrap.gguf", g2, k);
    struct orch_file_info fi;
    orch_error err = {0};
    assert_rc(orch_file_info(path, &fi, &err), ORCH_EFORMAT, err);
    assert_non_null(strstr(err.msg, "overflows 64 bits"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_file_info),
        cmocka_unit_test(test_corpus_llama_load),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_real_file_info),
        cmocka_unit_test(test_synth_model),
        cmocka_unit_test(test_header_read_once),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_million_keys),
        cmocka_unit_test(test_tensor_size_wraps),
        cmocka_unit_test(test_name_cut_on_character),
    };
    return cmocka_run_group_tests_name("gguf", tests, NULL, test_teardown);
}
