/*
 * cmd_model.c — generate, chat, embed, info, mkmodel.
 *
 * Each works on a model file (-m FILE) or, with the global -c CONFIG, on a
 * role (--role R; default: the config's first role). stdout carries only
 * the result; logs, progress and timings go to stderr.
 */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared options ------------------------------------------------------ */

enum {
    OPT_ROLE = 1000, OPT_TEMP, OPT_TOPK, OPT_TOPP, OPT_MINP, OPT_REPEAT, OPT_SEED, OPT_STOP,
    OPT_CTX, OPT_THREADS, OPT_NGL, OPT_SYSTEM, OPT_JSON, OPT_PARAMS, OPT_F32, OPT_RAW,
};

#define MODEL_OPTS                                                        \
    {"model", required_argument, 0, 'm'},                                 \
    {"role", required_argument, 0, OPT_ROLE},                             \
    {"ctx", required_argument, 0, OPT_CTX},                               \
    {"threads", required_argument, 0, OPT_THREADS},                       \
    {"ngl", required_argument, 0, OPT_NGL},                               \
    {"help", no_argument, 0, 'h'}

#define SAMPLING_OPTS                                                     \
    {"max-tokens", required_argument, 0, 'n'},                            \
    {"temp", required_argument, 0, OPT_TEMP},                             \
    {"top-k", required_argument, 0, OPT_TOPK},                            \
    {"top-p", required_argument, 0, OPT_TOPP},                            \
    {"min-p", required_argument, 0, OPT_MINP},                            \
    {"repeat-penalty", required_argument, 0, OPT_REPEAT},                 \
    {"seed", required_argument, 0, OPT_SEED},                             \
    {"stop", required_argument, 0, OPT_STOP}

static const char model_opts_help[] =
    "  -m, --model FILE        GGUF model file\n"
    "      --role ROLE         a role of the config given with -c (default: its first)\n"
    "      --ctx N             context size in tokens (default 2048; role: its n_ctx)\n"
    "      --threads N         CPU threads (default: one per CPU; role: its n_threads)\n"
    "      --ngl N             layers to offload to the GPU (-1 = all; default 0)\n";

static const char sampling_help[] =
    "  -n, --max-tokens N      tokens to generate (default 256)\n"
    "      --temp T            temperature, 0 = greedy (default 0.8)\n"
    "      --top-k K           0 = off (default 40)\n"
    "      --top-p P           in (0,1], 1 = off (default 0.95)\n"
    "      --min-p P           in [0,1), 0 = off (default 0.05)\n"
    "      --repeat-penalty R  1 = off (default 1.0)\n"
    "      --seed S            sampling seed (default random)\n"
    "      --stop TEXT         stop before TEXT (repeatable)\n";

struct common {
    struct target_opts t;
    struct orch_gen_params g; /* overrides; `given` says which */
    unsigned given;
    const char *stop[32];
    size_t n_stop;
};

enum { G_MAX = 1, G_TEMP = 2, G_TOPK = 4, G_TOPP = 8, G_MINP = 16, G_REP = 32, G_SEED = 64, G_STOP = 128 };

static void common_init(struct common *c)
{
    memset(c, 0, sizeof *c);
    c->t.n_ctx = c->t.n_threads = -1;
    c->t.n_gpu_layers = -2;
}

/* Handles an option shared by the model commands. Returns 1 when handled,
 * 0 when not ours, -1 on a bad value (message printed). */
static int common_opt(struct common *c, int opt, const char *arg)
{
    long l;
    double d;
    switch (opt) {
    case 'm': c->t.model_path = arg; return 1;
    case OPT_ROLE: c->t.role = arg; return 1;
    case OPT_CTX:
        if (!cli_int("--ctx", arg, -1, ORCH_N_CTX_MAX, &l) || l == 0) {
            if (l == 0)
                cli_error("--ctx 0: expected 1..%d, or -1 for the model's trained size", ORCH_N_CTX_MAX);
            return -1;
        }
        c->t.n_ctx = l;
        return 1;
    case OPT_THREADS:
        if (!cli_int("--threads", arg, 1, 1024, &l))
            return -1;
        c->t.n_threads = l;
        return 1;
    case OPT_NGL:
        if (!cli_int("--ngl", arg, -1, 100000, &l))
            return -1;
        c->t.n_gpu_layers = l;
        return 1;
    case 'n':
        if (!cli_int("--max-tokens", arg, 1, ORCH_N_CTX_MAX, &l))
            return -1;
        c->g.max_tokens = (int32_t)l;
        c->given |= G_MAX;
        return 1;
    case OPT_TEMP:
        if (!cli_float("--temp", arg, &d))
            return -1;
        if (d < 0) {
            cli_error("--temp %s: must be 0 (greedy) or more", arg);
            return -1;
        }
        c->g.temperature = (float)d;
        c->given |= G_TEMP;
        return 1;
    case OPT_TOPK:
        if (!cli_int("--top-k", arg, 0, 1000000, &l))
            return -1;
        c->g.top_k = (int32_t)l;
        c->given |= G_TOPK;
        return 1;
    case OPT_TOPP:
        if (!cli_float("--top-p", arg, &d))
            return -1;
        if (!(d > 0 && d <= 1)) {
            cli_error("--top-p %s: must be in (0, 1]", arg);
            return -1;
        }
        c->g.top_p = (float)d;
        c->given |= G_TOPP;
        return 1;
    case OPT_MINP:
        if (!cli_float("--min-p", arg, &d))
            return -1;
        if (!(d >= 0 && d < 1)) {
            cli_error("--min-p %s: must be in [0, 1)", arg);
            return -1;
        }
        c->g.min_p = (float)d;
        c->given |= G_MINP;
        return 1;
    case OPT_REPEAT:
        if (!cli_float("--repeat-penalty", arg, &d))
            return -1;
        if (!(d > 0)) {
            cli_error("--repeat-penalty %s: must be above 0", arg);
            return -1;
        }
        c->g.repeat_penalty = (float)d;
        c->given |= G_REP;
        return 1;
    case OPT_SEED:
        if (!cli_int("--seed", arg, 0, 0xFFFFFFFEL, &l))
            return -1;
        c->g.seed = (uint32_t)l;
        c->given |= G_SEED;
        return 1;
    case OPT_STOP:
        if (!*arg) {
            cli_error("--stop: the text must not be empty");
            return -1;
        }
        if (c->n_stop == sizeof c->stop / sizeof c->stop[0]) {
            cli_error("--stop: at most 32");
            return -1;
        }
        c->stop[c->n_stop++] = arg;
        c->given |= G_STOP;
        return 1;
    }
    return 0;
}

/* The request's params: the role's (or the defaults), then the options. */
static int gen_params(struct target *t, struct common *c, struct orch_gen_params *p)
{
    orch_error err = {0};
    *p = orch_gen_default_params();
    if (t->orch) {
        int rc = orch_role_gen_params(t->orch, t->role, p, &err);
        if (rc)
            return cli_fail(rc, &err);
    }
    if (c->given & G_MAX) p->max_tokens = c->g.max_tokens;
    if (c->given & G_TEMP) p->temperature = c->g.temperature;
    if (c->given & G_TOPK) p->top_k = c->g.top_k;
    if (c->given & G_TOPP) p->top_p = c->g.top_p;
    if (c->given & G_MINP) p->min_p = c->g.min_p;
    if (c->given & G_REP) p->repeat_penalty = c->g.repeat_penalty;
    if (c->given & G_SEED) p->seed = c->g.seed;
    if (c->given & G_STOP) {
        p->stop = c->stop;
        p->n_stop = c->n_stop;
    }
    if (t->orch && c->t.n_ctx > 0)
        p->n_ctx = (int32_t)c->t.n_ctx;
    if (t->orch && c->t.n_threads > 0)
        p->n_threads = (int32_t)c->t.n_threads;
    return EXIT_OK;
}

static bool stream_out(const char *text, size_t len, void *ud)
{
    (void)ud;
    return out_write(text, len);
}

static void print_timings(struct cli *cli, const struct orch_gen_result *r)
{
    if (cli->quiet)
        return;
    fprintf(stderr,
            "[prompt %d tokens in %.1f ms (%.0f tok/s); generated %d tokens in %.1f ms (%.1f tok/s); "
            "finish: %s]\n",
            r->n_prompt, r->prompt_ms, r->prompt_ms > 0 ? r->n_prompt * 1000.0 / r->prompt_ms : 0,
            r->n_generated, r->gen_ms, r->gen_ms > 0 ? r->n_generated * 1000.0 / r->gen_ms : 0,
            orch_finish_name(r->finish));
}

static int run_generate(struct target *t, const char *prompt, const struct orch_gen_params *p,
                        struct orch_gen_result *res, orch_error *err)
{
    if (t->orch)
        return orch_generate(t->orch, t->role, prompt, p, res, err);
    return orch_model_generate(t->model, prompt, p, res, err);
}

static int run_chat(struct target *t, const struct orch_chat_message *m, size_t n,
                    const struct orch_gen_params *p, struct orch_gen_result *res, orch_error *err)
{
    if (t->orch)
        return orch_chat(t->orch, t->role, m, n, p, res, err);
    return orch_model_chat(t->model, m, n, p, res, err);
}

/* ---- generate ---------------------------------------------------------------- */

int cmd_generate(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {MODEL_OPTS, SAMPLING_OPTS,
                                         {"prompt", required_argument, 0, 'p'}, {0, 0, 0, 0}};
    struct common c;
    common_init(&c);
    const char *prompt = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "m:p:n:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: orchestra generate (-m FILE | --role ROLE) [-p PROMPT] [options]\n"
                   "Completes PROMPT (or stdin when -p is absent) and streams the text to stdout.\n\n"
                   "  -p, --prompt TEXT       the prompt\n%s%s",
                   model_opts_help, sampling_help);
            return EXIT_OK;
        }
        if (opt == 'p') {
            prompt = optarg;
            continue;
        }
        int r = common_opt(&c, opt, optarg);
        if (r <= 0) {
            if (r == 0)
                fprintf(stderr, "try 'orchestra generate --help'\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("generate: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    char *input = NULL;
    if (!prompt) {
        size_t len;
        int rc = read_stdin(&input, &len);
        if (rc)
            return rc;
        /* a trailing newline from `echo` is not part of the prompt */
        while (len && (input[len - 1] == '\n' || input[len - 1] == '\r'))
            input[--len] = '\0';
        prompt = input;
    }
    struct target t;
    int rc = target_open(cli, &c.t, &t);
    if (rc) {
        free(input);
        return rc;
    }
    struct orch_gen_params p;
    if ((rc = gen_params(&t, &c, &p)) == EXIT_OK) {
        p.on_text = stream_out;
        struct orch_gen_result res;
        orch_error err = {0};
        int st = run_generate(&t, prompt, &p, &res, &err);
        if (st) {
            rc = cli_fail(st, &err);
        } else {
            out_write("\n", 1);
            if (!out_ok()) {
                cli_error("cannot write to stdout");
                rc = EXIT_OUTPUT;
            }
            print_timings(cli, &res);
        }
        orch_gen_result_clear(&res);
    }
    target_close(&t);
    free(input);
    return rc;
}

/* ---- chat ---------------------------------------------------------------------- */

int cmd_chat(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {MODEL_OPTS, SAMPLING_OPTS,
                                         {"system", required_argument, 0, OPT_SYSTEM},
                                         {0, 0, 0, 0}};
    struct common c;
    common_init(&c);
    const char *system = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "m:n:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: orchestra chat (-m FILE | --role ROLE) [--system TEXT] [options]\n"
                   "Reads one user message per line from stdin and prints each reply on stdout,\n"
                   "rendered with the model's chat template (a plain \"User:/Assistant:\"\n"
                   "transcript when it has none). '/reset' forgets the conversation.\n\n"
                   "      --system TEXT       a system message first\n%s%s",
                   model_opts_help, sampling_help);
            return EXIT_OK;
        }
        if (opt == OPT_SYSTEM) {
            system = optarg;
            continue;
        }
        int r = common_opt(&c, opt, optarg);
        if (r <= 0) {
            if (r == 0)
                fprintf(stderr, "try 'orchestra chat --help'\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("chat: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    struct target t;
    int rc = target_open(cli, &c.t, &t);
    if (rc)
        return rc;
    struct orch_gen_params p;
    if ((rc = gen_params(&t, &c, &p))) {
        target_close(&t);
        return rc;
    }
    p.on_text = stream_out;
    bool tty = isatty(STDIN_FILENO);
    size_t cap = 16, n = 0;
    struct orch_chat_message *msgs = malloc(cap * sizeof *msgs);
    char **owned = malloc(cap * sizeof *owned); /* strings owned per message */
    if (!msgs || !owned) {
        free(msgs);
        free(owned);
        target_close(&t);
        cli_error("out of memory");
        return EXIT_FAIL;
    }
    if (system) {
        msgs[n] = (struct orch_chat_message){"system", system};
        owned[n++] = NULL;
    }
    size_t first_turn = n;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    for (;;) {
        if (tty)
            fputs("> ", stderr);
        if ((len = getline(&line, &line_cap, stdin)) < 0)
            break;
        lineno++;
        if (memchr(line, '\0', (size_t)len)) {
            cli_error("line %lu holds a NUL byte; skipped", lineno);
            rc = EXIT_INPUT;
            continue;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len)
            continue;
        if (strcmp(line, "/reset") == 0) {
            for (size_t i = first_turn; i < n; i++)
                free(owned[i]);
            n = first_turn;
            continue;
        }
        if (n + 2 > cap) {
            cap *= 2;
            struct orch_chat_message *m2 = realloc(msgs, cap * sizeof *m2);
            char **o2 = m2 ? realloc(owned, cap * sizeof *o2) : NULL;
            if (m2)
                msgs = m2;
            if (!o2) {
                rc = EXIT_FAIL;
                cli_error("out of memory");
                break;
            }
            owned = o2;
        }
        owned[n] = strdup(line);
        msgs[n] = (struct orch_chat_message){"user", owned[n]};
        n++;
        struct orch_gen_result res;
        orch_error err = {0};
        int st = run_chat(&t, msgs, n, &p, &res, &err);
        if (st) {
            rc = cli_fail(st, &err);
            free(owned[--n]); /* forget the turn that failed */
            if (st != ORCH_ECTX && st != ORCH_EINVAL)
                break;
            continue;
        }
        out_write("\n", 1);
        if (!out_ok()) {
            orch_gen_result_clear(&res);
            cli_error("cannot write to stdout");
            rc = EXIT_OUTPUT;
            break;
        }
        print_timings(cli, &res);
        owned[n] = res.text; /* keep the reply as history */
        res.text = NULL;
        msgs[n] = (struct orch_chat_message){"assistant", owned[n]};
        n++;
        orch_gen_result_clear(&res);
    }
    for (size_t i = first_turn; i < n; i++)
        free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    target_close(&t);
    return rc;
}

/* ---- embed ----------------------------------------------------------------------- */

static bool print_vector(const float *v, int32_t n)
{
    char buf[32];
    if (!out_write("[", 1))
        return false;
    for (int32_t i = 0; i < n; i++) {
        int k = snprintf(buf, sizeof buf, "%s%.7g", i ? "," : "", (double)v[i]);
        if (!out_write(buf, (size_t)k))
            return false;
    }
    return out_write("]\n", 2);
}

int cmd_embed(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {MODEL_OPTS, {"text", required_argument, 0, 't'},
                                         {"raw", no_argument, 0, OPT_RAW}, {0, 0, 0, 0}};
    struct common c;
    common_init(&c);
    c.t.embedding = true;
    size_t n_texts = 0, cap = 16;
    const char **texts = malloc(cap * sizeof *texts);
    bool normalize = true;
    int opt, rc = EXIT_OK;
    if (!texts)
        return EXIT_FAIL;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "m:t:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: orchestra embed (-m FILE | --role ROLE) [-t TEXT]... [options]\n"
                   "Embeds each TEXT (or each line of stdin) and prints one JSON array per\n"
                   "text on stdout, L2-normalised, in input order.\n\n"
                   "  -t, --text TEXT         a text (repeatable)\n"
                   "      --raw               do not normalise\n%s",
                   model_opts_help);
            free(texts);
            return EXIT_OK;
        }
        if (opt == 't') {
            if (n_texts == cap) {
                const char **t2 = realloc(texts, (cap *= 2) * sizeof *t2);
                if (!t2) {
                    free(texts);
                    return EXIT_FAIL;
                }
                texts = t2;
            }
            texts[n_texts++] = optarg;
            continue;
        }
        if (opt == OPT_RAW) {
            normalize = false;
            continue;
        }
        int r = common_opt(&c, opt, optarg);
        if (r <= 0) {
            if (r == 0)
                fprintf(stderr, "try 'orchestra embed --help'\n");
            free(texts);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("embed: unexpected argument '%s'", argv[optind]);
        free(texts);
        return EXIT_USAGE;
    }
    char *input = NULL;
    if (!n_texts) {
        size_t len;
        if ((rc = read_stdin(&input, &len))) {
            free(texts);
            return rc;
        }
        size_t lineno = 0;
        for (char *s = input; *s;) {
            char *nl = strchr(s, '\n');
            if (nl)
                *nl = '\0';
            lineno++;
            size_t l = strlen(s);
            if (l && s[l - 1] == '\r')
                s[--l] = '\0';
            if (!l) {
                cli_error("line %zu of stdin is empty; give one text per line", lineno);
                free(texts);
                free(input);
                return EXIT_INPUT;
            }
            if (n_texts == cap) {
                const char **t2 = realloc(texts, (cap *= 2) * sizeof *t2);
                if (!t2) {
                    free(texts);
                    free(input);
                    return EXIT_FAIL;
                }
                texts = t2;
            }
            texts[n_texts++] = s;
            if (!nl)
                break;
            s = nl + 1;
        }
        if (!n_texts) {
            cli_error("nothing to embed: give -t TEXT or lines on stdin");
            free(texts);
            free(input);
            return EXIT_INPUT;
        }
    }
    struct target t;
    if ((rc = target_open(cli, &c.t, &t))) {
        free(texts);
        free(input);
        return rc;
    }
    struct orch_embed_params ep = orch_embed_default_params();
    ep.normalize = normalize;
    if (c.t.n_threads > 0)
        ep.n_threads = (int32_t)c.t.n_threads;
    /* batches of 256 texts keep memory bounded on long inputs */
    for (size_t first = 0; first < n_texts && rc == EXIT_OK; first += 256) {
        size_t k = n_texts - first < 256 ? n_texts - first : 256;
        float *v = NULL;
        int32_t dim = 0;
        orch_error err = {0};
        int st = t.orch ? orch_embed(t.orch, t.role, texts + first, k, &ep, &v, &dim, &err)
                        : orch_model_embed(t.model, texts + first, k, &ep, &v, &dim, &err);
        if (st) {
            rc = cli_fail(st, &err);
            break;
        }
        for (size_t i = 0; i < k && rc == EXIT_OK; i++)
            if (!print_vector(v + i * (size_t)dim, dim)) {
                cli_error("cannot write to stdout");
                rc = EXIT_OUTPUT;
            }
        free(v);
    }
    target_close(&t);
    free(texts);
    free(input);
    return rc;
}

/* ---- info ---------------------------------------------------------------------- */

static void human(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.2f MiB", (double)b / (1ull << 20));
    else
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    static const struct option opts[] = {{"json", no_argument, 0, OPT_JSON},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: orchestra info [--json] FILE\n"
                   "Reads a GGUF file's header without loading the model: architecture,\n"
                   "parameters, file size, trained context, vocabulary, chat template.\n");
            return EXIT_OK;
        }
        if (opt == OPT_JSON) {
            json = true;
            continue;
        }
        fprintf(stderr, "try 'orchestra info --help'\n");
        return EXIT_USAGE;
    }
    if (optind != argc - 1) {
        cli_error("info: give exactly one FILE");
        return EXIT_USAGE;
    }
    const char *path = argv[optind];
    struct orch_file_info fi;
    orch_error err = {0};
    int st = orch_file_info(path, &fi, &err);
    if (st)
        return cli_fail(st, &err);
    uint64_t est = 0;
    orch_file_estimate(path, 0, &est, NULL);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:i, s:I}",
                              "path", path, "architecture", fi.arch, "name", fi.name,
                              "file_type", fi.file_type, "n_params", (json_int_t)fi.n_params,
                              "file_bytes", (json_int_t)fi.file_bytes,
                              "tensor_bytes", (json_int_t)fi.tensor_bytes,
                              "n_ctx_train", (json_int_t)fi.n_ctx_train, "n_embd", (json_int_t)fi.n_embd,
                              "n_layer", (json_int_t)fi.n_layer, "n_head", (json_int_t)fi.n_head,
                              "n_head_kv", (json_int_t)fi.n_head_kv, "n_vocab", (json_int_t)fi.n_vocab,
                              "n_tensors", (json_int_t)fi.n_tensors,
                              "has_chat_template", fi.has_chat_template, "gguf_version", (int)fi.gguf_version,
                              "estimated_bytes", (json_int_t)est);
        char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        bool ok = s && out_write(s, strlen(s)) && out_write("\n", 1);
        free(s);
        json_decref(o);
        if (!ok) {
            cli_error("cannot write to stdout");
            return EXIT_OUTPUT;
        }
        return EXIT_OK;
    }
    char fb[32], tb[32], eb[32], line[1024];
    human(fi.file_bytes, fb, sizeof fb);
    human(fi.tensor_bytes, tb, sizeof tb);
    human(est, eb, sizeof eb);
    int k = snprintf(line, sizeof line,
                     "file:            %s\n"
                     "name:            %s\n"
                     "architecture:    %s\n"
                     "parameters:      %llu (%.2fM)\n"
                     "file type:       %s\n"
                     "file size:       %s\n"
                     "tensor data:     %s in %llu tensors\n"
                     "trained context: %lld\n"
                     "layers:          %lld (n_embd %lld, heads %lld, kv heads %lld)\n"
                     "vocabulary:      %lld\n"
                     "chat template:   %s\n"
                     "memory (n_ctx = trained): %s estimated\n",
                     path, fi.name[0] ? fi.name : "-", fi.arch[0] ? fi.arch : "-",
                     (unsigned long long)fi.n_params, (double)fi.n_params / 1e6, fi.file_type, fb, tb,
                     (unsigned long long)fi.n_tensors, (long long)fi.n_ctx_train,
                     (long long)fi.n_layer, (long long)fi.n_embd, (long long)fi.n_head,
                     (long long)fi.n_head_kv, (long long)fi.n_vocab,
                     fi.has_chat_template ? "yes" : "no", eb);
    if (!out_write(line, (size_t)k)) {
        cli_error("cannot write to stdout");
        return EXIT_OUTPUT;
    }
    return EXIT_OK;
}

/* ---- mkmodel ----------------------------------------------------------------------- */

int cmd_mkmodel(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    static const struct option opts[] = {{"params", required_argument, 0, OPT_PARAMS},
                                         {"output", required_argument, 0, 'o'},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"ctx", required_argument, 0, OPT_CTX},
                                         {"f32", no_argument, 0, OPT_F32},
                                         {"chat-template", required_argument, 0, OPT_SYSTEM},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct orch_synth_params sp = orch_synth_default_params();
    const char *out = NULL;
    int opt;
    long l;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            printf("usage: orchestra mkmodel -o FILE [--params N] [--seed S] [--ctx N] [--f32]\n"
                   "                        [--chat-template TEMPLATE]\n"
                   "Writes a Llama-architecture GGUF with random weights of about N parameters\n"
                   "(250000, 100M, 1B; default 100M), the same bytes for the same seed,\n"
                   "loadable by llama.cpp. Weights are F16 unless --f32. TEMPLATE is stored\n"
                   "as the model's chat template (Jinja text, as in real models).\n");
            return EXIT_OK;
        case 'o': out = optarg; break;
        case OPT_PARAMS:
            if (!cli_size("--params", optarg, &sp.n_params))
                return EXIT_USAGE;
            break;
        case OPT_SEED:
            if (!cli_int("--seed", optarg, 0, 0xFFFFFFFFL, &l))
                return EXIT_USAGE;
            sp.seed = (uint32_t)l;
            break;
        case OPT_CTX:
            if (!cli_int("--ctx", optarg, 1, ORCH_N_CTX_MAX, &l))
                return EXIT_USAGE;
            sp.n_ctx_train = (int32_t)l;
            break;
        case OPT_F32: sp.f16 = false; break;
        case OPT_SYSTEM: sp.chat_template = optarg; break;
        default:
            fprintf(stderr, "try 'orchestra mkmodel --help'\n");
            return EXIT_USAGE;
        }
    }
    if (!out || optind < argc) {
        cli_error("mkmodel: give -o FILE (and no other arguments)");
        return EXIT_USAGE;
    }
    orch_error err = {0};
    int st = orch_synth_model(out, &sp, &err);
    if (st)
        return cli_fail(st, &err);
    struct orch_file_info fi;
    if (orch_file_info(out, &fi, &err) == ORCH_OK)
        fprintf(stderr, "wrote %s: %llu parameters, %.1f MiB\n", out,
                (unsigned long long)fi.n_params, (double)fi.file_bytes / (1 << 20));
    return EXIT_OK;
}
