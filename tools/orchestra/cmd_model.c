/*
 * cmd_model.c — generate, chat, embed, info, mkmodel.
 *
 * Each works on a model file (-m FILE) or, with the global -c CONFIG, on a
 * role (--role R; default: the config's first role). stdout carries only
 * the result; logs, progress and timings go to stderr.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared options ------------------------------------------------------ */

enum {
    OPT_ROLE = 1000,
    OPT_TEMP,
    OPT_TOPK,
    OPT_TOPP,
    OPT_MINP,
    OPT_REPEAT,
    OPT_SEED,
    OPT_STOP,
    OPT_CTX,
    OPT_THREADS,
    OPT_NGL,
    OPT_SYSTEM,
    OPT_JSON,
    OPT_PARAMS,
    OPT_F32,
    OPT_RAW,
    OPT_MAX,
    OPT_PROMPT,
    OPT_FILE,
    OPT_TEXT,
    OPT_MODEL,
    OPT_OUT,
    OPT_TEMPLATE,
    OPT_Q4,
    OPT_FIM,
};

/* the library's defaults, as help shows them */
static void d_ctx(char *b, size_t n)
{
    snprintf(b, n, "%d; role: its n_ctx", orch_model_default_params().n_ctx);
}
static void d_threads(char *b, size_t n)
{
    snprintf(b, n, "%d, the CPUs this process may use", orch_default_n_threads());
}
static void d_ngl(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_model_default_params().n_gpu_layers);
}
static void d_max(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_gen_default_params().max_tokens);
}
static void d_temp(char *b, size_t n)
{
    snprintf(b, n, "%g", (double)orch_gen_default_params().temperature);
}
static void d_topk(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_gen_default_params().top_k);
}
static void d_topp(char *b, size_t n)
{
    snprintf(b, n, "%g", (double)orch_gen_default_params().top_p);
}
static void d_minp(char *b, size_t n)
{
    snprintf(b, n, "%g", (double)orch_gen_default_params().min_p);
}
static void d_rep(char *b, size_t n)
{
    snprintf(b, n, "%g", (double)orch_gen_default_params().repeat_penalty);
}
static void d_seed(char *b, size_t n)
{
    snprintf(b, n, "random");
}

static const struct cli_opt model_opts[] = {
    {OPT_MODEL, 'm', "model", NULL, "FILE", "GGUF model file", NULL},
    {OPT_ROLE, 0, "role", NULL, "ROLE", "a role of the config given with -c (default: its first)",
     NULL},
    {OPT_CTX, 0, "ctx", "ctx-size", "N", "context size in tokens; -1 = the model's trained size",
     d_ctx},
    {OPT_THREADS, 't', "threads", NULL, "N", "CPU threads, at most the CPUs this process may use",
     d_threads},
    {OPT_NGL, 0, "ngl", "n-gpu-layers", "N", "layers to offload to a GPU (-1 = all; also -ngl)",
     d_ngl},
    {0},
};

static const struct cli_opt sampling_opts[] = {
    {OPT_MAX, 'n', "max-tokens", "n-predict", "N", "tokens to generate", d_max},
    {OPT_TEMP, 0, "temp", "temperature", "T", "temperature, 0 = greedy", d_temp},
    {OPT_TOPK, 0, "top-k", NULL, "K", "0 = off", d_topk},
    {OPT_TOPP, 0, "top-p", NULL, "P", "in (0,1], 1 = off", d_topp},
    {OPT_MINP, 0, "min-p", NULL, "P", "in [0,1), 0 = off", d_minp},
    {OPT_REPEAT, 0, "repeat-penalty", NULL, "R", "1 = off", d_rep},
    {OPT_SEED, 's', "seed", NULL, "S", "sampling seed", d_seed},
    {OPT_STOP, 0, "stop", NULL, "TEXT", "stop before TEXT (repeatable)", NULL},
    {0},
};

struct common {
    struct target_opts t;
    struct orch_gen_params g; /* overrides; `given` says which */
    unsigned given;
    const char *stop[32];
    size_t n_stop;
};

enum {
    G_MAX = 1,
    G_TEMP = 2,
    G_TOPK = 4,
    G_TOPP = 8,
    G_MINP = 16,
    G_REP = 32,
    G_SEED = 64,
    G_STOP = 128
};

static void common_init(struct common *c)
{
    memset(c, 0, sizeof *c);
}

/* A float option within [lo, hi] (lo_open: lo itself excluded). */
static bool float_in(const char *opt, const char *arg, double lo, bool lo_open, double hi,
                     const char *expect, float *out)
{
    double d;
    if (!cli_float(opt, arg, &d))
        return false;
    if (d < lo || d > hi || (lo_open && d == lo)) {
        cli_error("%s %s: must be %s", opt, arg, expect);
        return false;
    }
    *out = (float)d;
    return true;
}

/* Handles an option of the model and sampling tables. */
static int common_opt(void *ctx, int opt, const char *arg)
{
    struct common *c = ctx;
    long l;
    bool ok = true;
    switch (opt) {
    case OPT_MODEL:
        c->t.model_path = arg;
        break;
    case OPT_ROLE:
        c->t.role = arg;
        break;
    case OPT_CTX:
        if ((ok = cli_int("--ctx", arg, -1, ORCH_N_CTX_MAX, &l) && l != 0)) {
            c->t.n_ctx = l;
            c->t.have_ctx = true;
        } else if (l == 0) {
            cli_error("--ctx 0: expected 1..%d, or -1 for the model's trained size",
                      ORCH_N_CTX_MAX);
        }
        break;
    case OPT_THREADS: {
        if (!(ok = cli_int("--threads", arg, 1, 1024, &l)))
            break;
        long cpus = orch_default_n_threads();
        if (l > cpus) {
            cli_error("warning: --threads %ld: this process may use %ld CPU%s; using %ld (more "
                      "threads than CPUs only wait for each other)",
                      l, cpus, cpus == 1 ? "" : "s", cpus);
            l = cpus;
        }
        c->t.n_threads = l;
        c->t.have_threads = true;
        break;
    }
    case OPT_NGL:
        if ((ok = cli_int("--ngl", arg, -1, 100000, &l))) {
            c->t.n_gpu_layers = l;
            c->t.have_ngl = true;
        }
        break;
    case OPT_MAX:
        if ((ok = cli_int("--max-tokens", arg, 1, ORCH_N_CTX_MAX, &l)))
            c->g.max_tokens = (int32_t)l, c->given |= G_MAX;
        break;
    case OPT_TEMP:
        if ((ok = float_in("--temp", arg, 0, false, 1e9, "0 (greedy) or more", &c->g.temperature)))
            c->given |= G_TEMP;
        break;
    case OPT_TOPK:
        if ((ok = cli_int("--top-k", arg, 0, 1000000, &l)))
            c->g.top_k = (int32_t)l, c->given |= G_TOPK;
        break;
    case OPT_TOPP:
        if ((ok = float_in("--top-p", arg, 0, true, 1, "in (0, 1]", &c->g.top_p)))
            c->given |= G_TOPP;
        break;
    case OPT_MINP:
        if ((ok = float_in("--min-p", arg, 0, false, 0.999999, "in [0, 1)", &c->g.min_p)))
            c->given |= G_MINP;
        break;
    case OPT_REPEAT:
        if ((ok =
                 float_in("--repeat-penalty", arg, 0, true, 1e9, "above 0", &c->g.repeat_penalty)))
            c->given |= G_REP;
        break;
    case OPT_SEED:
        if ((ok = cli_int("--seed", arg, 0, 0xFFFFFFFEL, &l)))
            c->g.seed = (uint32_t)l, c->given |= G_SEED;
        break;
    case OPT_STOP:
        if (!*arg) {
            cli_error("--stop: the text must not be empty");
            ok = false;
        } else if (c->n_stop == sizeof c->stop / sizeof c->stop[0]) {
            cli_error("--stop: at most 32");
            ok = false;
        } else {
            c->stop[c->n_stop++] = arg;
            c->given |= G_STOP;
        }
        break;
    default:
        cli_error("option %d is not handled", opt);
        ok = false;
    }
    return ok ? EXIT_OK : EXIT_USAGE;
}

/* Parses a model command: its own options through `own`, the rest through
 * common_opt. Returns an exit code; *done after --help. */
struct cmd_ctx {
    struct common *c;
    int (*own)(struct cmd_ctx *x, int id, const char *arg);
    void *data;
};

static int cmd_opt(void *ctx, int id, const char *arg)
{
    struct cmd_ctx *x = ctx;
    if (x->own) {
        int r = x->own(x, id, arg);
        if (r != -1)
            return r;
    }
    return common_opt(x->c, id, arg);
}

static int parse_cmd(const struct cli_cmd *cmd, int argc, char **argv, struct cmd_ctx *x,
                     bool *done)
{
    int first;
    *done = false;
    int rc = cli_parse(cmd, argc, argv, cmd_opt, x, &first);
    if (rc != EXIT_OK)
        return rc;
    if (first < 0) {
        *done = true;
        return EXIT_OK;
    }
    if (first < argc) {
        cli_error("%s: unexpected argument '%s'", cmd->name, argv[first]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
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
    if (c->given & G_MAX)
        p->max_tokens = c->g.max_tokens;
    if (c->given & G_TEMP)
        p->temperature = c->g.temperature;
    if (c->given & G_TOPK)
        p->top_k = c->g.top_k;
    if (c->given & G_TOPP)
        p->top_p = c->g.top_p;
    if (c->given & G_MINP)
        p->min_p = c->g.min_p;
    if (c->given & G_REP)
        p->repeat_penalty = c->g.repeat_penalty;
    if (c->given & G_SEED)
        p->seed = c->g.seed;
    if (c->given & G_STOP) {
        p->stop = c->stop;
        p->n_stop = c->n_stop;
    }
    if (t->orch && c->t.have_ctx && c->t.n_ctx > 0)
        p->n_ctx = (int32_t)c->t.n_ctx;
    if (t->orch && c->t.have_ctx && c->t.n_ctx < 0)
        p->n_ctx = ORCH_N_CTX_TRAIN; /* the library resolves the trained size */
    if (t->orch && c->t.have_threads)
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
    fprintf(
        stderr,
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

static const struct cli_opt generate_opts[] = {
    {OPT_PROMPT, 'p', "prompt", NULL, "TEXT", "the prompt (else standard input)", NULL},
    {OPT_FILE, 'f', "file", NULL, "FILE", "read the prompt from FILE", NULL},
    {0},
};
static const struct cli_opt *const generate_tables[] = {generate_opts, model_opts, sampling_opts,
                                                        NULL};
static const struct cli_cmd generate_cmd = {
    "generate", "(-m FILE | --role ROLE) [-p PROMPT | -f FILE] [options]",
    "Completes PROMPT (or standard input) and streams the text to stdout.", generate_tables};

struct generate_args {
    const char *prompt, *file;
};

static int generate_own(struct cmd_ctx *x, int id, const char *arg)
{
    struct generate_args *g = x->data;
    if (id == OPT_PROMPT)
        g->prompt = arg;
    else if (id == OPT_FILE)
        g->file = arg;
    else
        return -1;
    if (g->prompt && g->file) {
        cli_error("generate: give -p PROMPT or -f FILE, not both");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* Reads a prompt file whole (as stdin is read). */
static int read_prompt_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("cannot open prompt file '%s': %s", path, strerror(errno));
        return EXIT_INPUT;
    }
    size_t len;
    int rc = read_stream(f, path, out, &len);
    fclose(f);
    return rc;
}

int cmd_generate(struct cli *cli, int argc, char **argv)
{
    struct common c;
    common_init(&c);
    struct generate_args g = {0};
    struct cmd_ctx x = {&c, generate_own, &g};
    bool done;
    int rc0 = parse_cmd(&generate_cmd, argc, argv, &x, &done);
    if (rc0 != EXIT_OK || done)
        return rc0;
    const char *prompt = g.prompt;
    char *input = NULL;
    if (g.file) {
        int rc = read_prompt_file(g.file, &input);
        if (rc)
            return rc;
        prompt = input;
    } else if (!prompt) {
        size_t len;
        if (isatty(STDIN_FILENO))
            fprintf(stderr, "orchestra: reading the prompt from standard input (end it with "
                            "Ctrl-D; or give -p TEXT)\n");
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

static const struct cli_opt chat_opts[] = {
    {OPT_SYSTEM, 0, "system", NULL, "TEXT", "a system message first", NULL},
    {OPT_PROMPT, 'p', "prompt", NULL, "TEXT", "one message: print the reply and exit (no stdin)",
     NULL},
    {0},
};
static const struct cli_opt *const chat_tables[] = {chat_opts, model_opts, sampling_opts, NULL};
static const struct cli_cmd chat_cmd = {
    "chat", "(-m FILE | --role ROLE) [--system TEXT] [-p TEXT] [options]",
    "Reads one user message per line from stdin (or the one -p gives) and prints\n"
    "each reply on stdout,\n"
    "rendered with the model's chat template (a plain \"User:/Assistant:\"\n"
    "transcript when it has none). '/reset' forgets the conversation. When the\n"
    "conversation outgrows the context, the oldest turns are dropped (the system\n"
    "message stays) and stderr says so.",
    chat_tables};

struct chat_args {
    const char *system, *prompt;
};

static int chat_own(struct cmd_ctx *x, int id, const char *arg)
{
    struct chat_args *a = x->data;
    if (id == OPT_SYSTEM)
        a->system = arg;
    else if (id == OPT_PROMPT)
        a->prompt = arg;
    else
        return -1;
    return EXIT_OK;
}

int cmd_chat(struct cli *cli, int argc, char **argv)
{
    struct common c;
    common_init(&c);
    struct chat_args ca = {0};
    struct cmd_ctx x = {&c, chat_own, &ca};
    bool done;
    int rc0 = parse_cmd(&chat_cmd, argc, argv, &x, &done);
    if (rc0 != EXIT_OK || done)
        return rc0;
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
    const char *system = ca.system;
    bool tty = !ca.prompt && isatty(STDIN_FILENO);
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
    for (bool said = false;;) {
        if (ca.prompt) { /* -p: this one message, then done */
            if (said)
                break;
            said = true;
            free(line);
            if (!(line = strdup(ca.prompt))) {
                rc = EXIT_FAIL;
                cli_error("out of memory");
                break;
            }
            len = (ssize_t)strlen(line);
            line_cap = (size_t)len + 1;
        } else {
            if (tty)
                fputs("> ", stderr);
            if ((len = getline(&line, &line_cap, stdin)) < 0)
                break;
        }
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
        size_t dropped = 0;
        while (st == ORCH_ECTX && n - first_turn > 2) {
            /* the history outgrew the context: drop the oldest exchange
             * (the system message stays) and try again */
            size_t k = msgs[first_turn + 1].role[0] == 'a' ? 2 : 1;
            for (size_t i = 0; i < k; i++)
                free(owned[first_turn + i]);
            memmove(msgs + first_turn, msgs + first_turn + k, (n - first_turn - k) * sizeof *msgs);
            memmove(owned + first_turn, owned + first_turn + k,
                    (n - first_turn - k) * sizeof *owned);
            n -= k;
            dropped += k;
            st = run_chat(&t, msgs, n, &p, &res, &err);
        }
        if (dropped)
            cli_error("the conversation outgrew the context: dropped its %zu oldest message%s "
                      "(%zu kept%s)",
                      dropped, dropped == 1 ? "" : "s", n - first_turn,
                      first_turn ? ", and the system message" : "");
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

static const struct cli_opt embed_opts[] = {
    {OPT_TEXT, 'p', "prompt", "text", "TEXT", "a text (repeatable; else one per line of stdin)",
     NULL},
    {OPT_RAW, 0, "raw", NULL, NULL, "do not normalise", NULL},
    {0},
};
static const struct cli_opt *const embed_tables[] = {embed_opts, model_opts, NULL};
static const struct cli_cmd embed_cmd = {
    "embed", "(-m FILE | --role ROLE) [-p TEXT]... [options]",
    "Embeds each TEXT (or each line of stdin) and prints one JSON array per\n"
    "text on stdout, L2-normalised, in input order.",
    embed_tables};

struct embed_args {
    const char **texts;
    size_t n, cap;
    bool normalize;
    bool short_t; /* -t on the line: it meant a text before it meant threads */
};

static bool add_text(struct embed_args *e, const char *t)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        const char **t2 = realloc(e->texts, cap * sizeof *t2);
        if (!t2) {
            cli_error("out of memory");
            return false;
        }
        e->texts = t2;
        e->cap = cap;
    }
    e->texts[e->n++] = t;
    return true;
}

static int embed_own(struct cmd_ctx *x, int id, const char *arg)
{
    struct embed_args *e = x->data;
    if (id == OPT_TEXT)
        return add_text(e, arg) ? EXIT_OK : EXIT_FAIL;
    if (id == OPT_THREADS && e->short_t) {
        /* -t TEXT was embed's old spelling of a text; -t is --threads in
         * every command now. For one release a -t that is not a number is
         * still a text, with a warning; a number is threads, with one too. */
        char *end;
        long v = strtol(arg, &end, 10);
        bool number = *arg && !*end && v > 0;
        cli_error("warning: embed -t %s: -t means --threads in every command now; a text is "
                  "-p TEXT%s",
                  arg, number ? " (taken as threads)" : " (taken as a text, this once)");
        if (!number)
            return add_text(e, arg) ? EXIT_OK : EXIT_FAIL;
    }
    if (id == OPT_RAW) {
        e->normalize = false;
        return EXIT_OK;
    }
    return -1;
}

int cmd_embed(struct cli *cli, int argc, char **argv)
{
    struct common c;
    common_init(&c);
    c.t.embedding = true;
    struct embed_args e = {.normalize = true};
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        e.short_t = e.short_t || strncmp(argv[i], "-t", 2) == 0;
    struct cmd_ctx x = {&c, embed_own, &e};
    bool done;
    int rc = parse_cmd(&embed_cmd, argc, argv, &x, &done);
    if (rc != EXIT_OK || done) {
        free(e.texts);
        return rc;
    }
    char *input = NULL;
    if (!e.n) {
        size_t len;
        if ((rc = read_stdin(&input, &len))) {
            free(e.texts);
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
                free(e.texts);
                free(input);
                return EXIT_INPUT;
            }
            if (!add_text(&e, s)) {
                free(e.texts);
                free(input);
                return EXIT_FAIL;
            }
            if (!nl)
                break;
            s = nl + 1;
        }
        if (!e.n) {
            cli_error("nothing to embed: give -t TEXT or lines on stdin");
            free(e.texts);
            free(input);
            return EXIT_INPUT;
        }
    }
    struct target t;
    if ((rc = target_open(cli, &c.t, &t))) {
        free(e.texts);
        free(input);
        return rc;
    }
    struct orch_embed_params ep = orch_embed_default_params();
    ep.normalize = e.normalize;
    if (c.t.have_threads)
        ep.n_threads = (int32_t)c.t.n_threads;
    /* batches of 256 texts keep memory bounded on long inputs */
    for (size_t first = 0; first < e.n && rc == EXIT_OK; first += 256) {
        size_t k = e.n - first < 256 ? e.n - first : 256;
        float *v = NULL;
        int32_t dim = 0;
        orch_error err = {0};
        int st = t.orch ? orch_embed(t.orch, t.role, e.texts + first, k, &ep, &v, &dim, &err)
                        : orch_model_embed(t.model, e.texts + first, k, &ep, &v, &dim, &err);
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
    free(e.texts);
    free(input);
    return rc;
}

/* ---- info ---------------------------------------------------------------------- */

/* Text from a model file, made safe to print: invalid UTF-8 becomes U+FFFD
 * and, for a terminal (json false), control bytes become '?'. */
static void clean_text(const char *in, char *out, size_t cap, bool json)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p && o + 4 < cap) {
        size_t n = *p < 0x80         ? 1
                   : (*p >> 5) == 6  ? 2
                   : (*p >> 4) == 14 ? 3
                   : (*p >> 3) == 30 ? 4
                                     : 0;
        bool valid = n > 0;
        for (size_t k = 1; k < n && valid; k++)
            valid = (p[k] & 0xC0) == 0x80;
        if (!valid) {
            memcpy(out + o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            o += 3;
            p++;
            continue;
        }
        if (n == 1 && !json && (*p < 0x20 || *p == 0x7F)) {
            out[o++] = '?';
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

static void d_none(char *b, size_t n)
{
    snprintf(b, n, "text");
}
static const struct cli_opt info_opts[] = {
    {OPT_JSON, 0, "json", NULL, NULL, "print one JSON object instead of text", d_none},
    {0},
};
static const struct cli_opt *const info_tables[] = {info_opts, NULL};
static const struct cli_cmd info_cmd = {
    "info", "[--json] FILE",
    "Reads a GGUF file's header without loading the model: architecture,\n"
    "parameters, file size, trained context, vocabulary, chat template.",
    info_tables};

static int flag_opt(void *ctx, int id, const char *arg)
{
    (void)id;
    (void)arg;
    *(bool *)ctx = true;
    return EXIT_OK;
}

int cmd_info(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    bool json = false;
    int first;
    int rc0 = cli_parse(&info_cmd, argc, argv, flag_opt, &json, &first);
    if (rc0 != EXIT_OK || first < 0)
        return rc0;
    if (first != argc - 1) {
        cli_error("info: give exactly one FILE");
        return EXIT_USAGE;
    }
    const char *path = argv[first];
    struct orch_file_info fi;
    orch_error err = {0};
    int st = orch_file_info(path, &fi, &err);
    if (st)
        return cli_fail(st, &err);
    uint64_t est = 0;
    orch_file_estimate(path, 0, &est, NULL);
    char name[sizeof fi.name * 2], arch[sizeof fi.arch * 2], shown_path[8192];
    clean_text(fi.name, name, sizeof name, json);
    clean_text(fi.arch, arch, sizeof arch, json);
    clean_text(path, shown_path, sizeof shown_path, json);
    if (json) {
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:i, "
            "s:I}",
            "path", shown_path, "architecture", arch, "name", name, "file_type", fi.file_type,
            "n_params", (json_int_t)fi.n_params, "file_bytes", (json_int_t)fi.file_bytes,
            "tensor_bytes", (json_int_t)fi.tensor_bytes, "n_ctx_train", (json_int_t)fi.n_ctx_train,
            "n_embd", (json_int_t)fi.n_embd, "n_layer", (json_int_t)fi.n_layer, "n_head",
            (json_int_t)fi.n_head, "n_head_kv", (json_int_t)fi.n_head_kv, "n_vocab",
            (json_int_t)fi.n_vocab, "n_tensors", (json_int_t)fi.n_tensors, "has_chat_template",
            fi.has_chat_template, "gguf_version", (int)fi.gguf_version, "estimated_bytes",
            (json_int_t)est);
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
    orch_format_bytes(fi.file_bytes, fb, sizeof fb);
    orch_format_bytes(fi.tensor_bytes, tb, sizeof tb);
    orch_format_bytes(est, eb, sizeof eb);
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
                     shown_path, name[0] ? name : "-", arch[0] ? arch : "-",
                     (unsigned long long)fi.n_params, (double)fi.n_params / 1e6, fi.file_type, fb,
                     tb, (unsigned long long)fi.n_tensors, (long long)fi.n_ctx_train,
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

static void d_params(char *b, size_t n)
{
    snprintf(b, n, "%lluM", (unsigned long long)(orch_synth_default_params().n_params / 1000000));
}
static void d_sseed(char *b, size_t n)
{
    snprintf(b, n, "%u", orch_synth_default_params().seed);
}
static void d_sctx(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_synth_default_params().n_ctx_train);
}
static const struct cli_opt mkmodel_opts[] = {
    {OPT_OUT, 'o', "output", NULL, "FILE",
     "where to write it (a new file, or a regular one to replace)", NULL},
    {OPT_PARAMS, 0, "params", NULL, "N", "parameters: 250000, 100M, 1B", d_params},
    {OPT_SEED, 0, "seed", NULL, "S", "the weights are a function of the seed", d_sseed},
    {OPT_CTX, 0, "ctx", NULL, "N", "trained context length", d_sctx},
    {OPT_F32, 0, "f32", NULL, NULL, "F32 weights instead of F16", NULL},
    {OPT_Q4, 0, "q4_0", NULL, NULL, "the matrices as Q4_0 (repacked at load on AVX2 and ARM)",
     NULL},
    {OPT_TEMPLATE, 0, "chat-template", NULL, "TEMPLATE",
     "stored as the model's chat template (Jinja text)", NULL},
    {OPT_FIM, 0, "fim", NULL, NULL,
     "fill-in-the-middle tokens (<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>: the last three)",
     NULL},
    {0},
};
static const struct cli_opt *const mkmodel_tables[] = {mkmodel_opts, NULL};
static const struct cli_cmd mkmodel_cmd = {
    "mkmodel", "-o FILE [options]",
    "Writes a Llama-architecture GGUF with random weights of about N parameters,\n"
    "the same bytes for the same seed, loadable by llama.cpp.",
    mkmodel_tables};

struct mkmodel_args {
    struct orch_synth_params sp;
    const char *out;
};

static int mkmodel_opt(void *ctx, int id, const char *arg)
{
    struct mkmodel_args *m = ctx;
    long l;
    switch (id) {
    case OPT_OUT:
        m->out = arg;
        return EXIT_OK;
    case OPT_PARAMS:
        return cli_size("--params", arg, &m->sp.n_params) ? EXIT_OK : EXIT_USAGE;
    case OPT_SEED:
        if (!cli_int("--seed", arg, 0, 0xFFFFFFFFL, &l))
            return EXIT_USAGE;
        m->sp.seed = (uint32_t)l;
        return EXIT_OK;
    case OPT_CTX:
        if (!cli_int("--ctx", arg, 1, ORCH_N_CTX_MAX, &l))
            return EXIT_USAGE;
        m->sp.n_ctx_train = (int32_t)l;
        return EXIT_OK;
    case OPT_F32:
        m->sp.f16 = false;
        return EXIT_OK;
    case OPT_Q4:
        m->sp.q4_0 = true;
        return EXIT_OK;
    case OPT_TEMPLATE:
        m->sp.chat_template = arg;
        return EXIT_OK;
    case OPT_FIM:
        m->sp.fim = true;
        return EXIT_OK;
    }
    return EXIT_USAGE;
}

/* An interrupted mkmodel removes its half-written file. */
static char g_tmp_path[4200];

static void remove_tmp_and_exit(int sig)
{
    unlink(g_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

int cmd_mkmodel(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    struct mkmodel_args m = {.sp = orch_synth_default_params()};
    int first;
    int rc0 = cli_parse(&mkmodel_cmd, argc, argv, mkmodel_opt, &m, &first);
    if (rc0 != EXIT_OK || first < 0)
        return rc0;
    const char *out = m.out;
    struct orch_synth_params sp = m.sp;
    if (!out || first < argc) {
        cli_error("mkmodel: give -o FILE (and no other arguments)");
        return EXIT_USAGE;
    }
    snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp", out);
    signal(SIGINT, remove_tmp_and_exit);
    signal(SIGTERM, remove_tmp_and_exit);
    signal(SIGHUP, remove_tmp_and_exit);
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
