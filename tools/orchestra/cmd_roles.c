/*
 * cmd_roles.c — ps and preload: the roles of a config (-c CONFIG); unload:
 * roles of a running daemon.
 */
#include "cli.h"
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* "~" marks an estimate (the model is not loaded) */
static void human(uint64_t b, bool est, char *buf, size_t cap)
{
    size_t k = est && cap > 1 ? 1 : 0;
    if (k)
        buf[0] = '~';
    orch_format_bytes(b, buf + k, cap - k);
}

static void duration(int64_t ms, char *buf, size_t cap)
{
    if (ms < 0)
        snprintf(buf, cap, "never");
    else if (ms < 1000)
        snprintf(buf, cap, "now");
    else if (ms < 120000)
        snprintf(buf, cap, "%lld seconds", (long long)(ms / 1000));
    else if (ms < 7200000)
        snprintf(buf, cap, "%lld minutes", (long long)(ms / 60000));
    else
        snprintf(buf, cap, "%lld hours", (long long)(ms / 3600000));
}

/* The roles as a table; false when stdout failed. */
static bool print_table(const struct orch_role_status *st, size_t n,
                        const struct orch_budget_status *bs)
{
    struct orch_budget_status b = *bs;
    char line[1024];
    int k = snprintf(line, sizeof line, "%-12s %-36s %-9s %-10s %-6s %s\n", "ROLE", "MODEL",
                     "STATE", "SIZE", "LEASES", "UNLOAD IN");
    bool ok = out_write(line, (size_t)k);
    for (size_t i = 0; i < n && ok; i++) {
        const char *base = strrchr(st[i].path, '/');
        base = base ? base + 1 : st[i].path;
        char model[64], size[32], until[32];
        if (strcmp(st[i].role, st[i].model_role) != 0)
            snprintf(model, sizeof model, "%.20s (via %.10s)", base, st[i].model_role);
        else
            snprintf(model, sizeof model, "%.60s", base);
        if (st[i].bytes)
            human(st[i].bytes, st[i].bytes_estimated, size, sizeof size);
        else
            snprintf(size, sizeof size, "-");
        if (st[i].pinned)
            snprintf(until, sizeof until, "pinned");
        else if (st[i].state != ORCH_STATE_READY)
            snprintf(until, sizeof until, "-");
        else if (st[i].n_leases > 0)
            snprintf(until, sizeof until, "in use");
        else
            duration(st[i].unload_in_ms, until, sizeof until);
        k = snprintf(line, sizeof line, "%-12s %-36s %-9s %-10s %-6lld %s\n", st[i].role, model,
                     orch_state_name(st[i].state), size, (long long)st[i].n_leases, until);
        ok = out_write(line, (size_t)k);
        if (ok && st[i].state != ORCH_STATE_READY && st[i].last_error[0] &&
            strcmp(st[i].role, st[i].model_role) == 0) {
            k = snprintf(line, sizeof line, "  error: %.900s\n", st[i].last_error);
            ok = out_write(line, (size_t)k);
        }
    }
    if (ok) {
        char used[32], budget[32];
        human(b.used, false, used, sizeof used);
        human(b.budget, false, budget, sizeof budget);
        k = snprintf(line, sizeof line, "memory: %s in use of %s budget, %lld evictions\n", used,
                     b.budget ? budget : "no", (long long)b.n_evictions);
        ok = out_write(line, (size_t)k);
    }
    return ok;
}

/* The same as one JSON object: {"roles": [...], "memory": {...}}, as the
 * daemon's GET /admin/status gives it (one builder for both). */
static bool print_json(orch_orchestra *o, int *rc)
{
    orch_error err = {0};
    char *text = orch_server_status_json(o, &err);
    if (!text) {
        *rc = cli_fail(err.code, &err);
        return true;
    }
    bool ok = out_write(text, strlen(text)) && out_write("\n", 1);
    free(text);
    return ok;
}

/* Prints the roles (a table, or JSON); *bad says whether a role's file is
 * missing or bad. Returns an exit code. */
static int print_roles(orch_orchestra *o, bool json, bool *bad)
{
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    orch_error err = {0};
    int rc = orch_status(o, &st, &n, &b, &err);
    if (rc)
        return cli_fail(rc, &err);
    for (size_t i = 0; i < n; i++)
        if (st[i].state != ORCH_STATE_READY && st[i].last_error[0])
            *bad = true;
    rc = EXIT_OK;
    bool ok = json ? print_json(o, &rc) : print_table(st, n, &b);
    free(st);
    if (!ok) {
        cli_error("cannot write to stdout");
        return EXIT_OUTPUT;
    }
    return rc;
}

static int open_config(struct cli *cli, orch_orchestra **o)
{
    if (!cli->config_path) {
        cli_error("this command needs a config: orchestra -c CONFIG ...");
        return EXIT_USAGE;
    }
    orch_error err = {0};
    int rc;
    if (!cli->cfg && (rc = orch_config_load(cli->config_path, &cli->cfg, &err)))
        return cli_fail(rc, &err);
    struct orch_orchestra_params p = orch_orchestra_default_params();
    p.progress = cli_progress;
    p.no_reaper = true;
    rc = orch_open(cli->cfg, &p, o, &err);
    return rc ? cli_fail(rc, &err) : EXIT_OK;
}

static const struct cli_opt no_opts[] = {{0}};
static const struct cli_opt *const no_tables[] = {no_opts, NULL};
enum { O_JSON = 1, O_URL, O_KEY };
static const struct cli_opt ps_opts[] = {{O_JSON, 0, "json", NULL, NULL,
                                          "one JSON object: {\"roles\": [...], \"memory\": {...}}",
                                          NULL},
                                         {0}};
static const struct cli_opt *const ps_tables[] = {ps_opts, NULL};
static const struct cli_cmd ps_cmd = {
    "ps", "-c CONFIG [--json]",
    "Lists the config's roles like `ollama ps`: role, model file (and the role it\n"
    "falls back to), state, size (~ = estimated from the file), leases, and when\n"
    "it would be unloaded for idleness. When `orchestra serve` runs this config,\n"
    "these are the daemon's roles (stderr says so); else the config as a new\n"
    "process sees it (nothing loaded: see `preload`). Exits 3 when a role's\n"
    "model file is missing or not a model.",
    ps_tables};
static const struct cli_opt unload_opts[] = {
    {O_URL, 0, "url", NULL, "URL", "the daemon (default $ORCH_URL, else http://127.0.0.1:11435)",
     NULL},
    {O_KEY, 0, "api-key", NULL, "KEY", "its API key (default $ORCH_API_KEY)", NULL},
    {0}};
static const struct cli_opt *const unload_tables[] = {unload_opts, NULL};
static const struct cli_cmd unload_cmd = {
    "unload", "ROLE... [--url URL] [--api-key KEY]",
    "Asks a running `orchestra serve` to unload the models behind the ROLEs\n"
    "(POST /admin/unload), like `ollama stop`: the one --url or $ORCH_URL names,\n"
    "else the one that runs -c CONFIG. Each unload waits for the\n"
    "requests in flight on that model to finish. Exits 3 for a role the daemon\n"
    "does not have, 1 when the daemon cannot be reached or refuses.",
    unload_tables};
static const struct cli_cmd preload_cmd = {
    "preload", "-c CONFIG ROLE...",
    "Loads the models behind the ROLEs in parallel under the memory budget, then\n"
    "lists all roles as `ps` does; in the daemon that runs this config, if one does.",
    no_tables};

static int no_opt(void *ctx, int id, const char *arg)
{
    (void)ctx;
    (void)id;
    (void)arg;
    return EXIT_USAGE;
}

/* ---- a running daemon of the config ------------------------------------------------ */

/* The daemon serving cli's config, when one is up (its state file names a
 * live pid): its URL and pid. */
static bool daemon_of(const struct cli *cli, char *url, size_t cap, int *pid)
{
    char path[PATH_MAX], fmt[32];
    if (!cli->config_path || cap < 2 ||
        orch_server_state_file(cli->config_path, path, sizeof path) != 0)
        return false;
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    snprintf(fmt, sizeof fmt, "%%%zus %%d", cap - 1);
    bool ok = fscanf(f, fmt, url, pid) == 2 && *pid > 0;
    fclose(f);
    return ok && (kill(*pid, 0) == 0 || errno == EPERM);
}

static void field(json_t *o, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(o, k));
    snprintf(out, cap, "%s", v ? v : "");
}

/* /admin/status's roles as orch_status gives them; false when it is not
 * that document. */
static bool status_of(json_t *doc, struct orch_role_status **out, size_t *n,
                      struct orch_budget_status *b)
{
    json_t *roles = json_object_get(doc, "roles"), *mem = json_object_get(doc, "memory");
    if (!json_is_array(roles) || !json_is_object(mem))
        return false;
    *n = json_array_size(roles);
    struct orch_role_status *st = calloc(*n ? *n : 1, sizeof *st);
    if (!st)
        return false;
    size_t i;
    json_t *r;
    json_array_foreach(roles, i, r) {
        field(r, "role", st[i].role, sizeof st[i].role);
        field(r, "model_role", st[i].model_role, sizeof st[i].model_role);
        field(r, "path", st[i].path, sizeof st[i].path);
        field(r, "error", st[i].last_error, sizeof st[i].last_error);
        json_t *al = json_object_get(r, "aliases"), *a;
        size_t k, used = 0;
        json_array_foreach(al, k, a) {
            const char *name = json_string_value(a);
            int w = snprintf(st[i].aliases + used, sizeof st[i].aliases - used, "%s%s",
                             used ? "," : "", name ? name : "");
            used = w > 0 && used + (size_t)w < sizeof st[i].aliases ? used + (size_t)w : used;
        }
        const char *state = json_string_value(json_object_get(r, "state"));
        for (int s = 0; s < 8 && state; s++)
            if (strcmp(orch_state_name((enum orch_model_state)s), state) == 0)
                st[i].state = (enum orch_model_state)s;
        st[i].bytes = (uint64_t)json_integer_value(json_object_get(r, "bytes"));
        st[i].bytes_estimated = json_is_true(json_object_get(r, "bytes_estimated"));
        st[i].n_leases = json_integer_value(json_object_get(r, "leases"));
        st[i].n_parallel = (int32_t)json_integer_value(json_object_get(r, "n_parallel"));
        st[i].pinned = json_is_true(json_object_get(r, "pinned"));
        st[i].idle_ms = json_integer_value(json_object_get(r, "idle_ms"));
        st[i].unload_in_ms = json_integer_value(json_object_get(r, "unload_in_ms"));
    }
    b->budget = (uint64_t)json_integer_value(json_object_get(mem, "budget"));
    b->used = (uint64_t)json_integer_value(json_object_get(mem, "used"));
    b->n_evictions = json_integer_value(json_object_get(mem, "evictions"));
    *out = st;
    return true;
}

/* ps of the daemon at url: 1 when it could not be asked (the caller shows
 * the config's own view), else an exit code. */
static int print_daemon(const char *url, int pid, bool json)
{
    int status = 0;
    char *body = NULL, why[512];
    if (cli_http(url, "GET", "/admin/status", getenv("ORCH_API_KEY"), NULL, 10, &status, &body,
                 why, sizeof why) != EXIT_OK || status != 200) {
        cli_error("warning: the daemon at %s (pid %d) did not answer /admin/status (%s); "
                  "showing this config as a new process sees it",
                  url, pid, body ? body : why);
        free(body);
        return 1;
    }
    json_t *doc = json_loads(body, 0, NULL);
    free(body);
    struct orch_role_status *st = NULL;
    size_t n = 0;
    struct orch_budget_status b = {0};
    bool ok = doc && status_of(doc, &st, &n, &b);
    char *text = ok && json ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!ok || (json && !text)) {
        free(st);
        cli_error("the daemon at %s sent a status this command does not read", url);
        return EXIT_FAIL;
    }
    fprintf(stderr, "orchestra: the roles of the daemon at %s (pid %d)\n", url, pid);
    ok = json ? out_write(text, strlen(text)) && out_write("\n", 1) : print_table(st, n, &b);
    free(text);
    free(st);
    if (!ok || !out_ok()) {
        cli_error("cannot write to stdout");
        return EXIT_OUTPUT;
    }
    return EXIT_OK;
}

static int ps_opt(void *ctx, int id, const char *arg)
{
    (void)arg;
    if (id == O_JSON)
        *(bool *)ctx = true;
    return EXIT_OK;
}

int cmd_ps(struct cli *cli, int argc, char **argv)
{
    int first;
    bool json = false;
    int rc = cli_parse(&ps_cmd, argc, argv, ps_opt, &json, &first);
    if (rc != EXIT_OK || first < 0)
        return rc;
    if (first < argc) {
        cli_error("ps: unexpected argument '%s'", argv[first]);
        return EXIT_USAGE;
    }
    char url[256];
    int pid;
    if (daemon_of(cli, url, sizeof url, &pid) && (rc = print_daemon(url, pid, json)) != 1)
        return rc;
    orch_orchestra *o;
    if ((rc = open_config(cli, &o)))
        return rc;
    bool bad = false;
    rc = print_roles(o, json, &bad);
    orch_close(o);
    return rc ? rc : bad ? EXIT_INPUT : EXIT_OK;
}

int cmd_preload(struct cli *cli, int argc, char **argv)
{
    int first;
    int rc = cli_parse(&preload_cmd, argc, argv, no_opt, NULL, &first);
    if (rc != EXIT_OK || first < 0)
        return rc;
    if (first >= argc) {
        cli_error("preload: name at least one ROLE");
        return EXIT_USAGE;
    }
    char url[256];
    int pid;
    if (daemon_of(cli, url, sizeof url, &pid)) { /* load them in the daemon */
        for (int i = first; i < argc; i++) {
            json_t *req = json_pack("{s:s}", "role", argv[i]);
            char *in = req ? json_dumps(req, JSON_COMPACT) : NULL, *body = NULL, why[512];
            json_decref(req);
            int status = 0;
            rc = in ? cli_http_post(url, "/admin/load", getenv("ORCH_API_KEY"), in, 600, &status,
                                    &body, why, sizeof why)
                    : EXIT_FAIL;
            free(in);
            if (rc != EXIT_OK || status != 200) {
                cli_error("preload %s in the daemon at %s: %s", argv[i], url,
                          rc != EXIT_OK ? why : body ? body : "no answer");
                free(body);
                return status == 404 ? EXIT_INPUT : EXIT_FAIL;
            }
            free(body);
        }
        return print_daemon(url, pid, false) == 1 ? EXIT_FAIL : EXIT_OK;
    }
    orch_orchestra *o;
    if ((rc = open_config(cli, &o)))
        return rc;
    orch_error err = {0};
    struct timespec t0, t1;
    size_t n = (size_t)(argc - first);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int st = orch_preload(o, (const char *const *)argv + first, n, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st)
        rc = cli_fail(st, &err);
    else if (!cli->quiet)
        fprintf(stderr, "[preloaded %zu role%s in %.1f ms]\n", n, n == 1 ? "" : "s",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    bool bad = false;
    int prc = print_roles(o, false, &bad);
    orch_close(o);
    return rc ? rc : prc;
}

struct unload_args {
    const char *url, *key;
};

static int unload_opt(void *ctx, int id, const char *arg)
{
    struct unload_args *u = ctx;
    if (id == O_URL)
        u->url = arg;
    else if (id == O_KEY)
        u->key = arg;
    return EXIT_OK;
}

int cmd_unload(struct cli *cli, int argc, char **argv)
{
    const char *env_url = getenv("ORCH_URL");
    char url[256];
    int pid;
    /* the daemon of -c CONFIG when one is up, unless a URL is named */
    bool mine = !(env_url && *env_url) && daemon_of(cli, url, sizeof url, &pid);
    struct unload_args u = {env_url && *env_url ? env_url
                            : mine              ? url
                                                : "http://127.0.0.1:11435",
                            getenv("ORCH_API_KEY")};
    int first;
    int rc = cli_parse(&unload_cmd, argc, argv, unload_opt, &u, &first);
    if (rc != EXIT_OK || first < 0)
        return rc;
    if (first >= argc) {
        cli_error("unload: name at least one ROLE");
        return EXIT_USAGE;
    }
    int worst = EXIT_OK;
    for (int i = first; i < argc; i++) {
        json_t *req = json_pack("{s:s}", "role", argv[i]);
        char *body_in = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        if (!body_in) {
            cli_error("out of memory");
            return EXIT_FAIL;
        }
        int status = 0;
        char *body = NULL, why[512];
        rc = cli_http_post(u.url, "/admin/unload", u.key, body_in, 600, &status, &body, why,
                           sizeof why);
        free(body_in);
        if (rc != EXIT_OK) {
            cli_error("%s", why);
            return rc;
        }
        /* the daemon says why in {"error": "..."} (or OpenAI's {"error": {"message"}}) */
        json_t *doc = json_loads(body, 0, NULL);
        json_t *e = json_object_get(doc, "error");
        const char *msg = json_is_string(e) ? json_string_value(e)
                          : json_is_string(json_object_get(e, "message"))
                              ? json_string_value(json_object_get(e, "message"))
                              : body;
        if (status == 200) {
            char line[160];
            int k = snprintf(line, sizeof line, "%s: unloaded\n", argv[i]);
            if (!out_write(line, (size_t)k))
                worst = EXIT_OUTPUT;
        } else {
            cli_error("unload %s: %d: %s", argv[i], status, msg);
            int code = status == 404 ? EXIT_INPUT : status == 400 ? EXIT_USAGE : EXIT_FAIL;
            if (code > worst || worst == EXIT_OK)
                worst = code;
        }
        json_decref(doc);
        free(body);
    }
    if (worst == EXIT_OK && !out_ok()) {
        cli_error("cannot write to stdout");
        return EXIT_OUTPUT;
    }
    return worst;
}

/* ---- show: ollama's verb -------------------------------------------------------- */

/* show MODEL [--json]: `info` of a model file, or of the file a role of the
 * config uses (its name, an alias, or name:latest). */
static const struct cli_opt show_opts[] = {
    {O_JSON, 0, "json", NULL, NULL, "one JSON object, as `info --json`", NULL}, {0}};
static const struct cli_opt *const show_tables[] = {show_opts, NULL};
static const struct cli_cmd show_cmd = {
    "show", "MODEL [--json]",
    "What a model file is (as `info`): a file, or the file a role of the config\n"
    "(-c) uses, by its name, an alias or NAME:latest (ollama's show).",
    show_tables};

/* NAME:latest is NAME, as ollama implies ":latest" (a role with the whole
 * name keeps it). */
static const char *without_latest(orch_orchestra *o, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    char canon[ORCH_ROLE_NAME_MAX];
    if (n > 7 && !strcmp(name + n - 7, ":latest") && n - 7 < cap &&
        orch_role_canonical(o, name, canon, sizeof canon, NULL) != ORCH_OK) {
        memcpy(buf, name, n - 7);
        buf[n - 7] = '\0';
        return buf;
    }
    return name;
}

int cmd_show(struct cli *cli, int argc, char **argv)
{
    bool json = false;
    int first;
    int rc = cli_parse(&show_cmd, argc, argv, ps_opt, &json, &first);
    if (rc != EXIT_OK || first < 0)
        return rc;
    if (first != argc - 1) {
        cli_error("show: give one MODEL (a role of the config, or a model file)");
        return EXIT_USAGE;
    }
    const char *model = argv[first];
    char *sub[] = {(char *)"info", (char *)model, json ? (char *)"--json" : NULL, NULL};
    struct stat st;
    if (stat(model, &st) == 0 || !cli->config_path)
        return cmd_info(cli, json ? 3 : 2, sub);
    orch_orchestra *o;
    if ((rc = open_config(cli, &o)))
        return rc;
    orch_error err = {0};
    char canon[ORCH_ROLE_NAME_MAX], bare[ORCH_ROLE_NAME_MAX];
    struct orch_role_status *rs = NULL;
    size_t n = 0;
    int st2 = orch_role_canonical(o, without_latest(o, model, bare, sizeof bare), canon,
                                  sizeof canon, &err);
    if (st2 == ORCH_OK)
        st2 = orch_status(o, &rs, &n, NULL, &err);
    char *path = NULL;
    bool found = false;
    for (size_t i = 0; st2 == ORCH_OK && i < n; i++)
        if (!strcmp(rs[i].role, canon)) {
            path = strdup(rs[i].path);
            found = true;
        }
    free(rs);
    orch_close(o);
    if (st2)
        return cli_fail(st2, &err);
    if (!found || !path) {
        free(path);
        cli_error("out of memory");
        return EXIT_FAIL;
    }
    sub[1] = path;
    rc = cmd_info(cli, json ? 3 : 2, sub);
    free(path);
    return rc;
}
