/*
 * test-hostile.c — the corpus of hostile model files (issue 18's classes),
 * each made here from a valid synthetic model by the project's GGUF editor
 * (tests/gguf_edit.c), one defect a file:
 *   - the pre-check refuses every one with ORCH_EFORMAT naming the file and
 *     the cause, before llama.cpp sees it;
 *   - the valid files the pre-check once refused load and generate;
 *   - a C++ exception out of llama.cpp's tokenizer is an error, not the
 *     end of the process.
 */
#include "test.h"
#include "gguf_edit.h"
#include "llama/llama_int.h"

#include <ggml.h>
#include <math.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_VOCAB SYNTH_N_VOCAB

static char g_base[600];

/* The synthetic vocabulary, rebuilt: <unk> <s> </s>, the 256 byte tokens,
 * then words; tests change one token. */
static struct synth_vocab g_v;

static void vocab_reset(void)
{
    synth_vocab_reset(&g_v);
}

static struct gguf_edit tokens_edit(void)
{
    return (struct gguf_edit){"tokenizer.ggml.tokens", GE_ARR,
                              .arr_type = GE_STR,      .strs = (const char *const *)g_v.tok,
                              .lens = g_v.len,           .n_arr = N_VOCAB};
}

static struct gguf_edit types_edit(void)
{
    return (struct gguf_edit){"tokenizer.ggml.token_type", GE_ARR, .arr_type = GE_I32,
                              .arr = g_v.types, .n_arr = N_VOCAB};
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_base, sizeof g_base, "%s/base.gguf", test_tmpdir());
    char cache[700];
    snprintf(cache, sizeof cache, "%s/vetted", test_tmpdir());
    setenv("ORCH_VET_CACHE", cache, 1);
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 1000000;
    orch_error err = {0};
    assert_rc(orch_synth_model(g_base, &sp, &err), ORCH_OK, err);
    struct orch_file_info fi;
    assert_rc(orch_file_info(g_base, &fi, &err), ORCH_OK, err);
    assert_int_equal(fi.n_vocab, N_VOCAB);
    return 0;
}

static int try_load(const char *path, orch_error *err)
{
    orch_model *m = test_model_new(path, NULL, "hostile");
    int rc = orch_model_load(m, err);
    orch_model_free(m);
    return rc;
}

/* Generates a few tokens from path: the file works, not only loads. */
static int try_generate(const char *path, const char *prompt, orch_error *err)
{
    orch_model *m = test_model_new(path, NULL, "valid");
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 4;
    struct orch_gen_result res;
    int rc = orch_model_generate(m, prompt, &gp, &res, err);
    if (rc == ORCH_OK)
        orch_gen_result_clear(&res);
    orch_model_free(m);
    return rc;
}

enum { MAX_KV_EDITS = 4, MAX_T_EDITS = 2 };

struct hostile {
    const char *name;
    struct gguf_edit kv[MAX_KV_EDITS];
    struct gguf_tensor_edit t[MAX_T_EDITS];
    int vocab;          /* 1: the token list (and types) below go in too */
    int rename;         /* 1: an architecture edit moves the keys (gguf_edits.rename_arch) */
    int kills;          /* 1: without the pre-check, llama.cpp dies on it (vetting shows) */
    void (*prep)(void); /* changes g_v.tok / g_v.types before the write */
    const char *needle; /* in the message: the cause */
};

static void prep_dup(void)
{
    g_v.tok[400] = g_v.tok[401];
    g_v.len[400] = g_v.len[401];
}
static char g_nul_a[] = "ab\0c", g_nul_b[] = "ab\0d";
static void prep_nul(void)
{
    g_v.tok[400] = g_nul_a, g_v.len[400] = 4;
    g_v.tok[401] = g_nul_b, g_v.len[401] = 4;
}
static char g_long[300000];
static void prep_long_300(void)
{
    g_v.tok[400] = g_long, g_v.len[400] = 300;
}
static void prep_long_200k(void)
{
    g_v.tok[400] = g_long, g_v.len[400] = 200000;
}
static void prep_big_vocab(void)
{
    /* 2,045 tokens of 4,096 bytes each, different in their first bytes:
     * 8 MB of text, a trie of about 1.7 GB */
    for (int i = 3; i < N_VOCAB; i++) {
        g_v.tok[i] = g_long + (i - 3) * 4;
        g_v.len[i] = 4096;
        g_v.types[i] = 1;
    }
}
static void prep_bad_byte(void)
{
    g_v.tok[10] = "xx", g_v.len[10] = 2;
}
static void prep_all_normal(void)
{
    for (int i = 0; i < N_VOCAB; i++)
        g_v.types[i] = 1;
}

/* per-layer head counts (the base has 4 layers of 2 heads) */
static const int64_t g_kv_heads_differ[] = {2, 1, 2, 2}, g_kv_heads_same[] = {2, 2, 2, 2};

static const struct hostile hostiles[] = {
    /* vocabulary */
    {"duplicate token texts", .vocab = 1, .prep = prep_dup, .kills = 1,
     .needle = "with the same text"},
    {"tokens differing after a NUL", .vocab = 1, .prep = prep_nul, .kills = 1,
     .needle = "NUL byte"},
    {"bert over byte tokens",
     {{"tokenizer.ggml.model", GE_STR, .s = "bert"}},
     .kills = 1,
     .needle = "as bytes in a WordPiece vocabulary"},
    {"no vocabulary model",
     {{"tokenizer.ggml.model", GE_STR, .s = "none"}},
     .kills = 1,
     .needle = "no vocabulary to tokenize"},
    {"no_vocab model",
     {{"tokenizer.ggml.model", GE_STR, .s = "no_vocab"}},
     .kills = 1,
     .needle = "no vocabulary to tokenize"},
    {"long token in a WordPiece vocabulary",
     {{"tokenizer.ggml.model", GE_STR, .s = "bert"}},
     .vocab = 1,
     .prep = prep_long_300,
     .kills = 1,
     .needle = "WordPiece's tokenize is cubic"},
    {"long token in an RWKV vocabulary",
     {{"tokenizer.ggml.model", GE_STR, .s = "rwkv"}},
     .vocab = 1,
     .prep = prep_long_200k,
     .needle = "the trie is freed a level a byte"},
    {"RWKV vocabulary too big",
     {{"tokenizer.ggml.model", GE_STR, .s = "rwkv"}},
     .vocab = 1,
     .prep = prep_big_vocab,
     .needle = "on the vocabulary (limit"},
    {"RWKV vocabulary without its lone bytes",
     {{"tokenizer.ggml.model", GE_STR, .s = "rwkv"}},
     .needle = "but no token of that byte alone"},
    {"byte token not spelled as one", .vocab = 1, .prep = prep_bad_byte,
     .needle = "as a byte, but it is not spelled <0xXX>"},
    {"start token of a T5 vocabulary",
     {{"tokenizer.ggml.model", GE_STR, .s = "t5"},
      {"tokenizer.ggml.add_bos_token", GE_BOOL, .i = 1},
      {"tokenizer.ggml.bos_token_id", GE_REMOVE}},
     .vocab = 1,
     .prep = prep_all_normal,
     .kills = 1,
     .needle = "bos_token_id' is absent"},
    {"separator of a WordPiece vocabulary",
     {{"tokenizer.ggml.model", GE_STR, .s = "bert"},
      {"tokenizer.ggml.seperator_token_id", GE_U32, .i = 5000000}},
     .vocab = 1,
     .prep = prep_all_normal,
     .needle = NULL /* valid: default 102 */},
    {"gemma4 without a start token",
     {{"tokenizer.ggml.model", GE_STR, .s = "gemma4"}, {"tokenizer.ggml.bos_token_id", GE_REMOVE}},
     .needle = "bos_token_id' is absent"},
    /* llama.cpp refuses it, but leaks the header it read (LSan, under ASan) */
    {"architecture not a string",
     {{"general.architecture", GE_I32, .i = 7}},
     .needle = "general.architecture' is not a string"},
    /* hyperparameters */
    {"rms epsilon negative",
     {{"{arch}.attention.layer_norm_rms_epsilon", GE_F32, .f = -1e-5f}},
     .kills = 1,
     .needle = "an epsilon must be positive"},
    {"rms epsilon NaN",
     {{"{arch}.attention.layer_norm_rms_epsilon", GE_F32, .f = NAN}},
     .kills = 1,
     .needle = "needs a finite value"},
    {"rope base infinite",
     {{"{arch}.rope.freq_base", GE_F32, .f = INFINITY}},
     .needle = "needs a finite value"},
    {"rope dimensions 0",
     {{"{arch}.rope.dimension_count", GE_U32, .i = 0}},
     .needle = "is 0 in a llama model, which uses rotary positions"},
    {"rope dimensions below the head",
     {{"{arch}.rope.dimension_count", GE_U32, .i = 16}},
     .needle = "the llama graph asserts they are equal"},
    {"key length not the value length",
     {{"{arch}.attention.key_length", GE_U32, .i = 32},
      {"{arch}.rope.dimension_count", GE_U32, .i = 32}},
     .needle = "but the value length is"},
    {"sliding window 2^31-1",
     {{"{arch}.attention.sliding_window", GE_U32, .i = 2147483647}},
     .needle = "sliding_window' is 2147483647; expected 0 to"},
    {"key/value heads differing by layer",
     {{"{arch}.attention.head_count_kv", GE_ARR, .arr_type = GE_U32, .arr = g_kv_heads_differ,
       .n_arr = 4}},
     .kills = 1,
     .needle = "the llama graph takes one count for every layer"},
    {"key/value heads per layer, all equal",
     {{"{arch}.attention.head_count_kv", GE_ARR, .arr_type = GE_U32, .arr = g_kv_heads_same,
       .n_arr = 4}},
     .needle = NULL /* valid */},
    {"no experts in an experts-only architecture",
     {{"general.architecture", GE_STR, .s = "glm4moe"}},
     .rename = 1,
     .needle = "expert_count' is 0 (or absent) in a glm4moe model"},
    {"rope swa dimensions odd",
     {{"{arch}.rope.dimension_count_swa", GE_U32, .i = 7}},
     .needle = "rope.dimension_count_swa' is 7"},
    {"output width past the width",
     {{"{arch}.embedding_length_out", GE_U32, .i = 1 << 20}},
     .kills = 1,
     .needle = "more than the embedding length"},
    /* tensors */
    {"norm in F16", .t = {{"output_norm.weight", GGML_TYPE_F16}}, .kills = 1,
     .needle = "a norm or rotary-factor tensor must be F32"},
    {"norm in Q8_0", .t = {{"*attn_norm.weight", GGML_TYPE_Q8_0}}, .kills = 1,
     .needle = "a norm or rotary-factor tensor must be F32"},
    {"norm in I32", .t = {{"*ffn_norm.weight", GGML_TYPE_I32}}, .kills = 1,
     .needle = "must be F32"},
    {"matmul weight in I32", .t = {{"*attn_q.weight", GGML_TYPE_I32}}, .kills = 1,
     .needle = "no arithmetic on that type"},
    {"matmul weight in Q8_1", .t = {{"*ffn_up.weight", GGML_TYPE_Q8_1}}, .kills = 1,
     .needle = "no arithmetic on that type"},
    {"embeddings in F64", .t = {{"token_embd.weight", GGML_TYPE_F64}}, .kills = 1,
     .needle = "no arithmetic on that type"},
    {"embeddings in I8", .t = {{"token_embd.weight", GGML_TYPE_I8}}, .kills = 1,
     .needle = "no arithmetic on that type"},
};

/* Writes hostile case h to path; false when the editor cannot (a test bug). */
static void write_case(const struct hostile *h, const char *path)
{
    vocab_reset();
    if (h->prep)
        h->prep();
    struct gguf_edit kv[MAX_KV_EDITS + 2];
    size_t n = 0;
    for (; n < MAX_KV_EDITS && h->kv[n].key; n++)
        kv[n] = h->kv[n];
    if (h->vocab) {
        kv[n++] = tokens_edit();
        kv[n++] = types_edit();
    }
    size_t nt = 0;
    while (nt < MAX_T_EDITS && h->t[nt].name)
        nt++;
    struct gguf_edits e = {.kv = kv, .n_kv = n, .t = h->t, .n_t = nt, .rename_arch = h->rename};
    assert_int_equal(gguf_rewrite_file(g_base, path, &e), 0);
}

/* Vets path without the pre-check or the cache (as if the pre-check had
 * let it through): what llama.cpp does with the file in a child. */
static int raw_vet(const char *path, orch_error *err)
{
    struct orch__vet_opts o = {.role = "raw", .timeout_s = 60};
    return orch__lm_vet(path, &o, err);
}

/* The long token's text: distinct 4-byte starts. */
static void long_init(void)
{
    memset(g_long, 'a', sizeof g_long);
    for (size_t i = 0; i < sizeof g_long / 4; i++)
        memcpy(g_long + 4 * i,
               (char[4]){(char)('a' + i % 26), (char)('a' + i / 26 % 26),
                         (char)('a' + i / 676 % 26), 'z'},
               4);
}

static void test_corpus_refused(void **state)
{
    (void)state;
    orch_error err = {0};
    long_init();
    /* the control: the vocabulary rebuilt with no change loads */
    struct hostile same = {"same", .vocab = 1};
    char path[700];
    snprintf(path, sizeof path, "%s/same.gguf", test_tmpdir());
    write_case(&same, path);
    assert_rc(try_generate(path, "hello", &err), ORCH_OK, err);
    size_t refused = 0, killers = 0;
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        const struct hostile *h = &hostiles[i];
        snprintf(path, sizeof path, "%s/corpus-%02zu.gguf", test_tmpdir(), i);
        write_case(h, path);
        orch_log_set_level(ORCH_LOG_OFF);
        int rc = h->needle ? try_load(path, &err) : try_generate(path, "hello", &err);
        orch_log_set_level(ORCH_LOG_WARN);
        if (!h->needle) {
            if (rc != ORCH_OK)
                print_error("case '%s' (valid): got %s '%s'\n", h->name, orch_err_name(rc),
                            err.msg);
            assert_int_equal(rc, ORCH_OK);
            continue;
        }
        test_assert_refused(h->name, rc, &err, h->needle, path);
        refused++;
        if (!h->kills)
            continue;
        /* not a refusal for nothing: llama.cpp alone dies on the file, and
         * vetting (without the pre-check) says so */
        int vr = raw_vet(path, &err);
        if (vr != ORCH_EFORMAT || !strstr(err.msg, "failed vetting"))
            print_error("case '%s': raw vet got %s '%s'\n", h->name, orch_err_name(vr), err.msg);
        assert_int_equal(vr, ORCH_EFORMAT);
        assert_non_null(strstr(err.msg, "failed vetting"));
        killers++;
    }
    print_message("hostile corpus: %zu files refused by the pre-check; %zu of them, vetted "
                  "without it, kill llama.cpp\n",
                  refused, killers);
}

/* Files llama.cpp loads that the pre-check once refused: they load and
 * generate. */
static void test_valid_files_load(void **state)
{
    (void)state;
    orch_error err = {0};
    char path[700];
    /* 5,019 metadata keys */
    static struct gguf_edit many[5000];
    static char names[5000][32];
    for (int i = 0; i < 5000; i++) {
        snprintf(names[i], sizeof names[i], "test.key.%d", i);
        many[i] = (struct gguf_edit){names[i], GE_U32, .i = i};
    }
    snprintf(path, sizeof path, "%s/many-keys.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(g_base, path, many, 5000), 0);
    struct orch_file_info fi;
    assert_rc(orch_file_info(path, &fi, &err), ORCH_OK, err);
    assert_true(fi.n_kv > 5000);
    assert_rc(try_generate(path, "hello", &err), ORCH_OK, err);
    /* data aligned to 131072 bytes */
    struct gguf_edit align[] = {{"general.alignment", GE_U32, .i = 131072}};
    snprintf(path, sizeof path, "%s/align.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(g_base, path, align, 1), 0);
    assert_rc(try_generate(path, "hello", &err), ORCH_OK, err);
    /* BPE adding a start token with no start id: llama.cpp's default 11 */
    const char *merges[] = {"w 1", "w 2"};
    vocab_reset();
    prep_all_normal();
    struct gguf_edit bpe[] = {
        {"tokenizer.ggml.model", GE_STR, .s = "gpt2"},
        {"tokenizer.ggml.merges", GE_ARR, .arr_type = GE_STR, .strs = merges, .n_arr = 2},
        {"tokenizer.ggml.add_bos_token", GE_BOOL, .i = 1},
        {"tokenizer.ggml.bos_token_id", GE_REMOVE},
        types_edit()};
    snprintf(path, sizeof path, "%s/bpe-bos.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(g_base, path, bpe, 5), 0);
    assert_rc(try_generate(path, "hello", &err), ORCH_OK, err);
    /* T5 adding an end token with no end id: llama.cpp's default 1 */
    struct gguf_edit t5[] = {{"tokenizer.ggml.model", GE_STR, .s = "t5"},
                             {"tokenizer.ggml.add_eos_token", GE_BOOL, .i = 1},
                             {"tokenizer.ggml.add_bos_token", GE_BOOL, .i = 0},
                             {"tokenizer.ggml.eos_token_id", GE_REMOVE},
                             types_edit()};
    snprintf(path, sizeof path, "%s/t5-eos.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(g_base, path, t5, 5), 0);
    assert_rc(try_generate(path, "hello", &err), ORCH_OK, err);
}

/* A SentencePiece vocabulary without byte tokens: llama.cpp's tokenizer
 * throws std::out_of_range on a character no token covers ('#' here). The
 * call fails with the cause; the process, and the model, go on. */
static void test_tokenizer_exception_caught(void **state)
{
    (void)state;
    orch_error err = {0};
    vocab_reset();
    for (int i = 3; i < 259; i++) {
        snprintf(g_v.buf[i], sizeof g_v.buf[i], "b%d", i);
        g_v.len[i] = strlen(g_v.tok[i]);
        g_v.types[i] = 1;
    }
    /* the space mark and the letters, so that plain words tokenize */
    snprintf(g_v.buf[259], sizeof g_v.buf[259], "\xE2\x96\x81");
    g_v.len[259] = 3;
    for (int i = 0; i < 26; i++) {
        snprintf(g_v.buf[260 + i], sizeof g_v.buf[260 + i], "%c", 'a' + i);
        g_v.len[260 + i] = 1;
    }
    struct gguf_edit kv[] = {tokens_edit(), types_edit()};
    char path[700];
    snprintf(path, sizeof path, "%s/no-bytes.gguf", test_tmpdir());
    assert_int_equal(gguf_rewrite(g_base, path, kv, 2), 0);
    orch_model *m = test_model_new(path, NULL, "nobytes");
    assert_rc(orch_model_load(m, &err), ORCH_OK, err);
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 2;
    struct orch_gen_result res;
    int rc = orch_model_generate(m, "a # b", &gp, &res, &err);
    if (rc != ORCH_EFORMAT)
        print_error("got %s '%s'\n", orch_err_name(rc), err.msg);
    assert_int_equal(rc, ORCH_EFORMAT);
    assert_non_null(strstr(err.msg, "tokenizer"));
    /* the model still serves text its vocabulary covers */
    assert_rc(orch_model_generate(m, "hello world", &gp, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    orch_model_free(m);
}

static int load_vetted(const char *path, orch_error *err)
{
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.role = "vetted";
    mp.n_threads = 1;
    mp.vet = true;
    orch_model *m;
    int rc = orch_model_new(&mp, &m, err);
    if (rc == ORCH_OK) {
        rc = orch_model_load(m, err);
        orch_model_free(m);
    }
    return rc;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* vet = true in process: with the pre-check out of the way, every file of
 * the corpus that kills llama.cpp is refused with ORCH_EFORMAT and the
 * cause, and this process goes on; verdicts are kept by identity (a later
 * load vets nothing; a changed file is vetted again). */
static void test_vet_in_process(void **state)
{
    (void)state;
    orch_error err = {0};
    char path[700];
    /* a valid file: vetted once, then known */
    test_log_capture_start(ORCH_LOG_INFO);
    assert_rc(load_vetted(g_base, &err), ORCH_OK, err);
    assert_rc(load_vetted(g_base, &err), ORCH_OK, err);
    char *log = test_log_capture_stop();
    assert_int_equal(count(log, "event=vetted"), 1);
    free(log);
    /* the real model too */
    assert_rc(load_vetted(test_model_path(), &err), ORCH_OK, err);
    /* a changed file is another file */
    struct timespec t[2] = {{0, UTIME_OMIT}, {12345, 0}};
    assert_int_equal(utimensat(AT_FDCWD, g_base, t, 0), 0);
    test_log_capture_start(ORCH_LOG_INFO);
    assert_rc(load_vetted(g_base, &err), ORCH_OK, err);
    log = test_log_capture_stop();
    assert_int_equal(count(log, "event=vetted"), 1);
    free(log);
    setenv("ORCH_TEST_SKIP_PRECHECK", "1", 1);
    size_t n = 0;
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        const struct hostile *h = &hostiles[i];
        if (!h->kills)
            continue;
        snprintf(path, sizeof path, "%s/corpus-%02zu.gguf", test_tmpdir(), i);
        orch_log_set_level(ORCH_LOG_OFF);
        int rc = load_vetted(path, &err);
        orch_log_set_level(ORCH_LOG_WARN);
        if (rc != ORCH_EFORMAT || !strstr(err.msg, "failed vetting") || !strstr(err.msg, path))
            print_error("case '%s': got %s '%s'\n", h->name, orch_err_name(rc), err.msg);
        assert_int_equal(rc, ORCH_EFORMAT);
        assert_non_null(strstr(err.msg, "failed vetting"));
        /* the verdict is kept: the next load refuses without a child */
        rc = load_vetted(path, &err);
        assert_int_equal(rc, ORCH_EFORMAT);
        assert_non_null(strstr(err.msg, "a verdict kept until the file changes"));
        n++;
    }
    unsetenv("ORCH_TEST_SKIP_PRECHECK");
    assert_true(n > 10);
    print_message("vet = true refused %zu killing files in process\n", n);
}

/* `test-hostile --write-corpus DIR`: writes every file of the corpus to
 * DIR (NN.gguf) and a line per file on stdout: "NN.gguf<TAB>what<TAB>name",
 * what: "kills" (llama.cpp dies on it without the pre-check), "refused"
 * (the pre-check refuses it) or "valid" (it loads). The daemon's
 * tests (test-daemon.mjs) send them to a running daemon. */
static int write_corpus(const char *dir)
{
    setup(NULL);
    long_init();
    char path[700];
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        snprintf(path, sizeof path, "%s/%02zu.gguf", dir, i);
        write_case(&hostiles[i], path);
        const struct hostile *h = &hostiles[i];
        printf("%02zu.gguf\t%s\t%s\n", i, !h->needle ? "valid" : h->kills ? "kills" : "refused",
               h->name);
    }
    fflush(stdout);
    test_tmpdir_cleanup();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
        return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_refused),
        cmocka_unit_test(test_valid_files_load),
        cmocka_unit_test(test_tokenizer_exception_caught),
        cmocka_unit_test(test_vet_in_process),
    };
    int rc = cmocka_run_group_tests(tests, setup, NULL);
    test_tmpdir_cleanup();
    return rc;
}
