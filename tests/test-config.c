/*
 * test-config.c — roles from INI text, the environment on top, and every
 * error naming the file, the line and the key.
 */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

#ifndef ORCH_SOURCE_DIR
#define ORCH_SOURCE_DIR "."
#endif

static orch_config *parse_ok(const char *text)
{
    orch_config *cfg = NULL;
    orch_error err = {0};
    int rc = orch_config_parse(text, "t.ini", false, &cfg, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, ORCH_OK);
    return cfg;
}

static void parse_err(const char *text, const char *needle1, const char *needle2)
{
    orch_config *cfg = (orch_config *)0x1;
    orch_error err = {0};
    int rc = orch_config_parse(text, "t.ini", false, &cfg, &err);
    if (rc != ORCH_ECONFIG || !strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
        print_error("got %s: '%s'\n", orch_err_name(rc), err.msg);
    assert_int_equal(rc, ORCH_ECONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err.msg, needle1));
    if (needle2)
        assert_non_null(strstr(err.msg, needle2));
}

static void test_example_config(void **state)
{
    (void)state;
    orch_config *cfg;
    orch_error err = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/orchestra.ini", ORCH_SOURCE_DIR);
    assert_rc(orch_config_load(path, &cfg, &err), ORCH_OK, err);
    assert_int_equal(orch_config_n_roles(cfg), 4);
    assert_string_equal(orch_config_role_name(cfg, 0), "reasoning");
    assert_string_equal(orch_config_role_name(cfg, 1), "coder");
    assert_true(orch_config_budget(cfg) > 0);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t ram = (uint64_t)pages * (uint64_t)psz;
    assert_true(orch_config_budget(cfg) > ram / 100 * 74 &&
                orch_config_budget(cfg) <= ram / 100 * 76);

    /* the roles resolve with the reasoning/code/dream defaults */
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(o, "reasoning", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.7f && g.top_p == 0.9f && g.repeat_penalty == 1.1f);
    assert_int_equal(g.max_tokens, 1024);
    assert_int_equal(g.n_ctx, 2048);
    assert_rc(orch_role_gen_params(o, "coder", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.3f && g.top_p == 0.95f && g.repeat_penalty == 1.15f);
    assert_int_equal(g.max_tokens, 2048);
    assert_rc(orch_role_gen_params(o, "dream", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.9f && g.top_p == 0.95f && g.repeat_penalty == 1.15f);
    assert_int_equal(g.max_tokens, 1024);
    assert_rc(orch_role_gen_params(o, "embedding", &g, &err), ORCH_OK, err);
    assert_int_equal(g.n_ctx, 512);
    assert_rc(orch_role_gen_params(o, "nope", &g, &err), ORCH_ENOROLE, err);
    assert_non_null(strstr(err.msg, "reasoning"));
    /* every role is served by the reasoning model */
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(st[i].model_role, "reasoning");
        assert_true(st[i].pinned);
    }
    free(st);
    orch_close(o);
    orch_config_free(cfg);
}

static void test_defaults_and_stop(void **state)
{
    (void)state;
    orch_config *cfg = parse_ok("[defaults]\n"
                                "temperature = 0.5\n"
                                "stop = END\n"
                                "[a]\n"
                                "path = /x/a.gguf\n"
                                "stop = ###\n"
                                "stop = \"\"\"\n"
                                "top_k = 7\n"
                                "[b]\n"
                                "path = /x/b.gguf\n"
                                "temperature = 0\n");
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    orch_error err = {0};
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    orch_config_free(cfg); /* the orchestra keeps its own copy */
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(o, "a", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.5f);
    assert_int_equal(g.top_k, 7);
    assert_int_equal(g.n_stop, 2);
    assert_string_equal(g.stop[0], "###");
    assert_string_equal(g.stop[1], "\"\"\"");
    assert_rc(orch_role_gen_params(o, "b", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.0f);
    assert_int_equal(g.n_stop, 1);
    assert_string_equal(g.stop[0], "END");
    assert_int_equal(g.top_k, 40); /* built-in default */
    orch_close(o);
}

static void test_errors_name_file_line_key(void **state)
{
    (void)state;
    parse_err("[a]\npath = x\ntemprature = 0.3\n", "t.ini:3", "did you mean 'temperature'");
    parse_err("[a]\npath = x\n\n; c\ntop_p = 1.5\n", "t.ini:5", "top_p");
    parse_err("[a]\npath = x\ntop_p = 1.5\n", "(0, 1]", NULL);
    parse_err("[a]\npath = x\nn_ctx = 0\n", "t.ini:3", "n_ctx");
    parse_err("[a]\npath = x\nmax_tokens = lots\n", "max_tokens = 'lots'", "expected");
    parse_err("[a]\npath = x\npin = maybe\n", "t.ini:3", "true or false");
    parse_err("[a]\npath = x\nmemory_budget = 4G\n", "belongs in [defaults]", NULL);
    parse_err("[a]\npath = x\nn_parallel = 65\n", "t.ini:3", "from 1 to 64");
    parse_err("[a]\npath = x\nn_parallel = -1\n", "t.ini:3", "n_parallel");
    parse_err("[a]\npath = x\nn_threads_total = 2\n", "belongs in [defaults]", NULL);
    parse_err("[a]\npath = x\nrepack = sometimes\n", "t.ini:3", "repack");
    parse_err("[a]\npath = x\nreasoning = loud\n", "t.ini:3", "split");
    /* a chat_template file is read when the config is opened: its error
     * names the role and the file */
    orch_config *tc = parse_ok("[a]\npath = /x/a.gguf\nchat_template = /no/such/t.jinja\n"
                               "reasoning = off\n");
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    orch_error err = {0};
    assert_int_equal(orch_open(tc, &op, &o, &err), ORCH_ECONFIG);
    assert_non_null(strstr(err.msg, "role 'a'"));
    assert_non_null(strstr(err.msg, "/no/such/t.jinja"));
    orch_config_free(tc);
    parse_err("[defaults]\nn_threads_total = 2000\n[a]\npath = x\n", "n_threads_total", "1024");
    parse_err("[defaults]\nmemory_budget = lots\n[a]\npath = x\n", "memory_budget", "percentage");
    parse_err("[defaults]\nmemory_budget = 150%\n[a]\npath = x\n", "memory_budget", NULL);
    parse_err("[a]\nfallback = b\n", "t.ini:2", "fallback = b: no such role (roles: a)");
    parse_err("[a]\nn_ctx = 100\n", "[a] needs a path or a fallback", "t.ini:1");
    parse_err("[a]\nfallback = b\n[b]\nfallback = c\n[c]\nfallback = a\n", "fallback cycle", NULL);
    parse_err("[a]\nfallback = a\n", "fallback cycle", NULL);
    parse_err("path = x\n", "outside any section", NULL);
    parse_err("[a]\npath = x\nthis is not a key\n", "t.ini:3", "syntax error");
    parse_err("[bad role]\npath = x\n", "role name", NULL);
    parse_err("", "no roles", NULL);
    char longline[400];
    snprintf(longline, sizeof longline, "[a]\npath = /%0300d\n", 0);
    parse_err(longline, "t.ini:2", "bytes");
}

static void test_budget_units(void **state)
{
    (void)state;
    struct {
        const char *v;
        uint64_t bytes;
    } cases[] = {{"0", 0},       {"1024", 1024},           {"4K", 4096},
                 {"1.5M", 1572864}, {"2G", 2147483648ull}, {"2GiB", 2147483648ull},
                 {"1T", 1099511627776ull}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[200];
        snprintf(text, sizeof text, "[defaults]\nmemory_budget = %s\n[a]\npath = x\n", cases[i].v);
        orch_config *cfg = parse_ok(text);
        assert_int_equal(orch_config_budget(cfg), cases[i].bytes);
        orch_config_free(cfg);
    }
}

static void test_environment_overrides(void **state)
{
    (void)state;
    const char *text = "[defaults]\nmemory_budget = 1G\n[coder]\npath = /x/a.gguf\n"
                       "temperature = 0.3\n";
    setenv("ORCH_CODER_TEMPERATURE", "0.25", 1);
    setenv("ORCH_MEMORY_BUDGET", "2G", 1);
    setenv("ORCH_CODER_STOP", "<END>", 1);
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_parse(text, "t.ini", true, &cfg, &err), ORCH_OK, err);
    assert_int_equal(orch_config_budget(cfg), 2147483648ull);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_gen_params g;
    assert_rc(orch_role_gen_params(o, "coder", &g, &err), ORCH_OK, err);
    assert_true(g.temperature == 0.25f);
    assert_int_equal(g.n_stop, 1);
    assert_string_equal(g.stop[0], "<END>");
    orch_close(o);
    orch_config_free(cfg);
    /* a bad value in the environment names the variable */
    setenv("ORCH_CODER_TEMPERATURE", "hot", 1);
    assert_rc(orch_config_parse(text, "t.ini", true, &cfg, &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "environment ORCH_CODER_TEMPERATURE"));
    unsetenv("ORCH_CODER_TEMPERATURE");
    unsetenv("ORCH_MEMORY_BUDGET");
    unsetenv("ORCH_CODER_STOP");
    /* without use_env nothing is read */
    setenv("ORCH_CODER_TEMPERATURE", "0.99", 1);
    assert_rc(orch_config_parse(text, "t.ini", false, &cfg, &err), ORCH_OK, err);
    orch_config_free(cfg);
    unsetenv("ORCH_CODER_TEMPERATURE");
}

static void test_config_in_code(void **state)
{
    (void)state;
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_new(&cfg, &err), ORCH_OK, err);
    assert_rc(orch_config_validate(cfg, &err), ORCH_ECONFIG, err);
    assert_rc(orch_config_set(cfg, "reasoning", "path", "/m/r.gguf", &err), ORCH_OK, err);
    assert_rc(orch_config_set(cfg, "coder", "fallback", "reasoning", &err), ORCH_OK, err);
    assert_rc(orch_config_set(cfg, "coder", "temperatur", "1", &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "temperature"));
    assert_rc(orch_config_set(cfg, "defaults", "memory_budget", "512M", &err), ORCH_OK, err);
    assert_rc(orch_config_validate(cfg, &err), ORCH_OK, err);
    assert_int_equal(orch_config_budget(cfg), 512ull << 20);
    orch_config_free(cfg);
}

/* Relative model paths in a file are relative to the file. */
static void test_relative_paths(void **state)
{
    (void)state;
    static const char text[] = "[a]\npath = models/a.gguf\n[b]\npath = /abs/b.gguf\n";
    const char *cfgpath = test_write_file("rel.ini", text, strlen(text));
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_load(cfgpath, &cfg, &err), ORCH_OK, err);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    char want[700];
    snprintf(want, sizeof want, "%s/models/a.gguf", test_tmpdir());
    assert_string_equal(st[0].path, want);
    assert_string_equal(st[1].path, "/abs/b.gguf");
    free(st);
    orch_close(o);
    orch_config_free(cfg);
}

static void test_missing_config_file(void **state)
{
    (void)state;
    orch_config *cfg;
    orch_error err = {0};
    assert_rc(orch_config_load("/no/such/orchestra.ini", &cfg, &err), ORCH_ENOENT, err);
    assert_non_null(strstr(err.msg, "/no/such/orchestra.ini"));
    assert_rc(orch_config_load("/", &cfg, &err), ORCH_EISDIR, err);
    /* a FIFO is refused, not opened (the open would wait for a writer) */
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/cfg.fifo", test_tmpdir());
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_rc(orch_config_load(fifo, &cfg, &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* A fallback chain r0 -> r1 -> ... -> r1999: validated and opened in
 * n log n (it took 60 s at 2,000 roles when each step searched the roles
 * and each role walked its whole chain). */
struct parse_job {
    const char *text;
    orch_config *cfg;
    int rc;
    orch_error err;
};

static void *parse_main(void *arg) /* no cmocka asserts off the main thread */
{
    struct parse_job *j = arg;
    j->rc = orch_config_parse(j->text, "t.ini", false, &j->cfg, &j->err);
    return NULL;
}

static void test_long_fallback_chain(void **state)
{
    (void)state;
    enum { N = 2000 };
    size_t cap = (size_t)N * 40;
    char *text = malloc(cap), *w = text;
    for (int i = 0; i < N - 1; i++)
        w += sprintf(w, "[r%d]\nfallback = r%d\n", i, i + 1);
    w += sprintf(w, "[r%d]\npath = /m/last.gguf\n", N - 1);
    /* a guard, not a timing: the cubic validation took 60 s here */
    struct parse_job job = {.text = text};
    assert_true(test_run_within(parse_main, &job, 30));
    assert_rc(job.rc, ORCH_OK, job.err);
    orch_config *cfg = job.cfg;
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    op.backend = NULL;
    orch_orchestra *o;
    orch_error err = {0};
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    assert_int_equal(n, N);
    assert_string_equal(st[0].model_role, "r1999");
    assert_string_equal(st[0].path, "/m/last.gguf");
    free(st);
    orch_close(o);
    orch_config_free(cfg);
    /* a cycle far down a long chain is still found */
    w = text;
    for (int i = 0; i < N; i++)
        w += sprintf(w, "[r%d]\nfallback = r%d\n", i, (i + 1) % N);
    parse_err(text, "fallback cycle", NULL);
    free(text);
}

/* Messages as a new user meets them: every role listed, no "(null)", the
 * right line, no role name cut in two. */
static void test_messages_for_people(void **state)
{
    (void)state;
    parse_err("[a]\npath = x\n[b]\npath = y\n[c]\npath = z\n[d]\nfallback = nope\n",
              "no such role (roles: a, b, c, d)", "t.ini:8");
    parse_err("[a]\nfallback = b\n[b]\nn_ctx = 100\n", "[b] needs a path or a fallback",
              "t.ini:3");
    orch_config *cfg = NULL;
    orch_error err = {0};
    assert_rc(
        orch_config_parse("[a]\nfallback = b\n[b]\nn_ctx = 100\n", "t.ini", false, &cfg, &err),
        ORCH_ECONFIG, err);
    assert_null(strstr(err.msg, "(null)"));
    /* inih keeps 49 bytes of a section name: longer ones are refused, not cut */
    char text[300];
    snprintf(text, sizeof text, "[%s]\npath = x\n",
             "r23456789012345678901234567890123456789012345678901234");
    parse_err(text, "t.ini:1: role name", "at most 49");
    snprintf(text, sizeof text, "[%s]\npath = x\n",
             "r234567890123456789012345678901234567890123456789");
    cfg = parse_ok(text);
    assert_int_equal(strlen(orch_config_role_name(cfg, 0)), 49);
    orch_config_free(cfg);
    /* an unclosed section is reported on its own line */
    parse_err("[a]\npath = x\n[b\npath = y\n", "t.ini:3:", NULL);
}

/* ORCH_ variables that look like role settings but match nothing are
 * errors, as the same line in the file is; a fallback set there is named
 * in its error; a relative path there is relative to the config's folder,
 * as in the file. */
static void test_environment_is_checked(void **state)
{
    (void)state;
    const char *text = "[coder]\npath = /x/a.gguf\n";
    orch_config *cfg;
    orch_error err = {0};
    setenv("ORCH_NOPE_PATH", "/x/b.gguf", 1);
    assert_rc(orch_config_parse(text, "t.ini", true, &cfg, &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "environment ORCH_NOPE_PATH: no role 'NOPE'"));
    assert_non_null(strstr(err.msg, "(roles: coder)"));
    unsetenv("ORCH_NOPE_PATH");
    setenv("ORCH_CODER_TEMPERATUR", "0.2", 1);
    assert_rc(orch_config_parse(text, "t.ini", true, &cfg, &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "environment ORCH_CODER_TEMPERATUR: [coder] unknown key "
                                    "'temperatur' (did you mean 'temperature'?)"));
    unsetenv("ORCH_CODER_TEMPERATUR");
    setenv("ORCH_CODER_FALLBACK", "ghost", 1);
    const char *text2 = "[coder]\nn_ctx = 64\n[main]\npath = /x/a.gguf\n";
    assert_rc(orch_config_parse(text2, "t.ini", true, &cfg, &err), ORCH_ECONFIG, err);
    assert_non_null(strstr(err.msg, "environment ORCH_CODER_FALLBACK: [coder] fallback = ghost"));
    unsetenv("ORCH_CODER_FALLBACK");
    /* other ORCH_ variables are not the config's business */
    setenv("ORCH_LOG_LEVEL", "warn", 1);
    assert_rc(orch_config_parse(text, "t.ini", true, &cfg, &err), ORCH_OK, err);
    orch_config_free(cfg);
    unsetenv("ORCH_LOG_LEVEL");
    /* one rule for relative paths */
    const char *ini = test_write_file("envrel.ini", text, strlen(text));
    setenv("ORCH_CODER_PATH", "models/c.gguf", 1);
    assert_rc(orch_config_load(ini, &cfg, &err), ORCH_OK, err);
    unsetenv("ORCH_CODER_PATH");
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    assert_rc(orch_open(cfg, &op, &o, &err), ORCH_OK, err);
    struct orch_role_status *st;
    size_t n;
    assert_rc(orch_status(o, &st, &n, NULL, &err), ORCH_OK, err);
    char want[700];
    snprintf(want, sizeof want, "%s/models/c.gguf", test_tmpdir());
    assert_string_equal(st[0].path, want);
    free(st);
    orch_close(o);
    orch_config_free(cfg);
}

/* Aliases: other names a role answers to, unique across the config. */
static void test_aliases(void **state)
{
    (void)state;
    orch_config *cfg = parse_ok("[big]\npath = /m/big.gguf\nalias = gpt-4o\nalias = llama3.2:3b\n"
                                "[small]\nfallback = big\nalias = org/small-model\n");
    assert_int_equal(orch_config_find_role(cfg, "big"), 0);
    assert_int_equal(orch_config_find_role(cfg, "gpt-4o"), 0);
    assert_int_equal(orch_config_find_role(cfg, "llama3.2:3b"), 0);
    assert_int_equal(orch_config_find_role(cfg, "org/small-model"), 1);
    assert_int_equal(orch_config_find_role(cfg, "nope"), (size_t)-1);
    assert_int_equal(orch_config_role_n_aliases(cfg, 0), 2);
    assert_string_equal(orch_config_role_alias(cfg, 1, 0), "org/small-model");
    /* requests by alias reach the role */
    orch_backend *fake = orch_fake_new(NULL);
    char ini[700];
    snprintf(ini, sizeof ini, "[big]\npath = %s\nalias = gpt-4o\n",
             test_sparse_file("al.bin", 4096));
    orch_config *c2 = parse_ok(ini);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    op.backend = fake;
    orch_orchestra *o;
    orch_error err = {0};
    assert_rc(orch_open(c2, &op, &o, &err), ORCH_OK, err);
    struct orch_gen_result res;
    assert_rc(orch_generate(o, "gpt-4o", "x", NULL, &res, &err), ORCH_OK, err);
    orch_gen_result_clear(&res);
    orch_close(o);
    orch_config_free(c2);
    orch_config_free(cfg);
    orch_fake_free(fake);
    parse_err("[a]\npath = x\nalias = b\n[b]\npath = y\n", "alias 'b' is already the name", "[b]");
    parse_err("[a]\npath = x\nalias = m\n[b]\npath = y\nalias = m\n", "alias 'm'", NULL);
    parse_err("[defaults]\nalias = m\n[a]\npath = x\n", "an alias names one role", NULL);
    parse_err("[a]\npath = x\nalias = bad name\n", "alias = 'bad name'", NULL);
}

/* A role's source and sha256: checked as they are read, the role's own
 * (never from [defaults]), handed out with the path as resolved. */
static void test_sources(void **state)
{
    (void)state;
    static const char sha[] = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF";
    char ini[600];
    snprintf(ini, sizeof ini, "[a]\npath = /m/a.gguf\nsource = https://huggingface.co/o/r/resolve/"
                              "main/a.gguf\nsha256 = %s\n[b]\npath = /m/b.gguf\n"
                              "[c]\nfallback = a\n", sha);
    orch_config *cfg = parse_ok(ini);
    struct orch_role_source src;
    assert_int_equal(orch_config_role_source(cfg, 0, &src), ORCH_OK);
    assert_string_equal(src.path, "/m/a.gguf");
    assert_string_equal(src.url, "https://huggingface.co/o/r/resolve/main/a.gguf");
    assert_string_equal(src.sha256,
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_int_equal(orch_config_role_source(cfg, 1, &src), ORCH_OK);
    assert_string_equal(src.path, "/m/b.gguf");
    assert_null(src.url);
    assert_null(src.sha256);
    assert_int_equal(orch_config_role_source(cfg, 2, &src), ORCH_OK);
    assert_null(src.path);
    assert_int_equal(orch_config_role_source(cfg, 3, &src), ORCH_ENOROLE);
    assert_null(src.path);
    orch_config_free(cfg);
    /* not inherited: a [defaults] source is no role's */
    cfg = parse_ok("[defaults]\nsource = http://x/y.gguf\n[a]\npath = /m/a.gguf\n");
    assert_int_equal(orch_config_role_source(cfg, 0, &src), ORCH_OK);
    assert_null(src.url);
    orch_config_free(cfg);
    parse_err("[a]\npath = /m/a\nsource = ftp://x/y.gguf\n", "t.ini:3", "expected an http://");
    parse_err("[a]\npath = /m/a\nsha256 = abc\n", "t.ini:3", "64 hexadecimal digits");
    parse_err("[a]\nfallback = b\nsource = http://x/y.gguf\n[b]\npath = /m/b\n", "[a]",
              "has a source but no path");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_defaults_and_stop),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_budget_units),
        cmocka_unit_test(test_environment_overrides),
        cmocka_unit_test(test_config_in_code),
        cmocka_unit_test(test_missing_config_file),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_long_fallback_chain),
        cmocka_unit_test(test_messages_for_people),
        cmocka_unit_test(test_environment_is_checked),
        cmocka_unit_test(test_aliases),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, test_teardown);
}
