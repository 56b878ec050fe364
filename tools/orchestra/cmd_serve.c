/*
 * cmd_serve.c — `orchestra -c CONFIG serve`: the daemon (server/).
 */
#include "cli.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

enum {
    S_HOST = 2000,
    S_PORT,
    S_KEY,
    S_BODY,
    S_CONN,
    S_TIMEOUT,
    S_DRAIN,
    S_QUEUE,
    S_PORTFILE,
    S_INPROC,
    S_VERBOSE_ERRORS,
    S_CORS,
    S_MODEL,
    S_MODELS_DIR
};

#define SERVE_MODELS_MAX 64

static void d_host(char *b, size_t n)
{
    snprintf(b, n, "%s", orch_server_default_opts().host);
}
static void d_port(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_server_default_opts().port);
}
static void d_body(char *b, size_t n)
{
    snprintf(b, n, "%zu MiB", orch_server_default_opts().body_max >> 20);
}
static void d_conn(char *b, size_t n)
{
    snprintf(b, n, "%u", orch_server_default_opts().conn_max);
}
static void d_timeout(char *b, size_t n)
{
    snprintf(b, n, "%u s", orch_server_default_opts().timeout_s);
}
static void d_drain(char *b, size_t n)
{
    snprintf(b, n, "%g s", orch_server_default_opts().drain_s);
}
static void d_queue(char *b, size_t n)
{
    snprintf(b, n, "%d", orch_server_default_opts().queue_max);
}

static const struct cli_opt serve_opts[] = {
    {S_MODEL, 'm', "model", NULL, "FILE",
     "serve a model file as a role named after it (repeatable; with -c, beside the config's)",
     NULL},
    {S_HOST, 0, "host", NULL, "ADDR", "IPv4 address to listen on (loopback unless told)", d_host},
    {S_PORT, 0, "port", NULL, "N", "TCP port; 0 = any free one", d_port},
    {S_KEY, 0, "api-key", NULL, "KEY", "require Authorization: Bearer KEY (also ORCH_API_KEY)",
     NULL},
    {S_BODY, 0, "body-max", NULL, "BYTES", "largest request body (413 past it)", d_body},
    {S_CONN, 0, "max-connections", NULL, "N", "connections served at once", d_conn},
    {S_TIMEOUT, 0, "idle-timeout", NULL, "SECONDS", "close connections idle this long", d_timeout},
    {S_DRAIN, 0, "drain-timeout", NULL, "SECONDS", "on SIGTERM, how long requests may finish",
     d_drain},
    {S_QUEUE, 0, "queue-max", NULL, "N", "requests per role running or waiting (503 past it)",
     d_queue},
    {S_PORTFILE, 0, "port-file", NULL, "FILE", "write the port there once listening", NULL},
    {S_INPROC, 0, "in-process", NULL, NULL,
     "run llama.cpp in the daemon (no worker process per model file: a file that kills "
     "llama.cpp kills every role)",
     NULL},
    {S_VERBOSE_ERRORS, 0, "verbose-errors", NULL, NULL,
     "show clients the full paths of model files in errors and /api/show (default: file "
     "names only)",
     NULL},
    {S_MODELS_DIR, 0, "models-dir", NULL, "DIR",
     "/api/create may make roles of GGUF files in DIR (kept in CONFIG.created)", NULL},
    {S_CORS, 0, "cors-origin", NULL, "ORIGINS",
     "let browser pages from these origins call (comma-separated, or *); the API key is "
     "still needed (default: none, no CORS headers)",
     NULL},
    {0},
};
static const struct cli_opt *const serve_tables[] = {serve_opts, NULL};
static const struct cli_cmd serve_cmd = {
    "serve", "(-c CONFIG | -m FILE...) [options]",
    "Serves the config's roles (and a role per -m FILE) over HTTP with the\n"
    "OpenAI API (/v1/models, /v1/completions, /v1/chat/completions,\n"
    "/v1/responses, /v1/embeddings) and the Ollama API (/api/tags, /api/ps,\n"
    "/api/show, /api/generate, /api/chat, /api/embed, /api/embeddings,\n"
    "/api/create, /api/copy, /api/delete, /api/version), plus /health, /metrics,\n"
    "/admin/load, /admin/unload and /admin/status. Model names are role names.\n"
    "Each model file runs in a\n"
    "worker process of its own; a worker that dies fails only its requests\n"
    "and is started again. SIGTERM or SIGINT: stop accepting, let requests\n"
    "finish, unload, exit 0.",
    serve_tables};

struct serve_args {
    struct orch_server_opts o;
    const char *models[SERVE_MODELS_MAX];
};

static int serve_opt(void *ctx, int id, const char *arg)
{
    struct serve_args *sa = ctx;
    struct orch_server_opts *o = &sa->o;
    long l;
    double d;
    switch (id) {
    case S_HOST:
        o->host = arg;
        return EXIT_OK;
    case S_PORT:
        if (!cli_int("--port", arg, 0, 65535, &l))
            return EXIT_USAGE;
        o->port = (int)l;
        return EXIT_OK;
    case S_KEY:
        o->api_key = arg;
        return EXIT_OK;
    case S_BODY: {
        uint64_t b;
        if (!cli_size("--body-max", arg, &b))
            return EXIT_USAGE;
        o->body_max = (size_t)b;
        return EXIT_OK;
    }
    case S_CONN:
        if (!cli_int("--max-connections", arg, 1, 10000, &l))
            return EXIT_USAGE;
        o->conn_max = (unsigned)l;
        return EXIT_OK;
    case S_TIMEOUT:
        if (!cli_int("--idle-timeout", arg, 1, 86400, &l))
            return EXIT_USAGE;
        o->timeout_s = (unsigned)l;
        return EXIT_OK;
    case S_DRAIN:
        if (!cli_float("--drain-timeout", arg, &d))
            return EXIT_USAGE;
        if (d < 0) {
            cli_error("--drain-timeout %s: must be 0 or more", arg);
            return EXIT_USAGE;
        }
        o->drain_s = d;
        return EXIT_OK;
    case S_QUEUE:
        if (!cli_int("--queue-max", arg, 1, 100000, &l))
            return EXIT_USAGE;
        o->queue_max = (int)l;
        return EXIT_OK;
    case S_PORTFILE:
        o->port_file = arg;
        return EXIT_OK;
    case S_INPROC:
        o->in_process = true;
        return EXIT_OK;
    case S_VERBOSE_ERRORS:
        o->verbose_errors = true;
        return EXIT_OK;
    case S_CORS:
        o->cors_origin = arg;
        return EXIT_OK;
    case S_MODELS_DIR:
        o->models_dir = arg;
        return EXIT_OK;
    case S_MODEL:
        if (o->n_models == SERVE_MODELS_MAX) {
            cli_error("serve: at most %d -m files (use a config for more)", SERVE_MODELS_MAX);
            return EXIT_USAGE;
        }
        sa->models[o->n_models++] = arg;
        return EXIT_OK;
    }
    return EXIT_USAGE;
}

int cmd_serve(struct cli *cli, int argc, char **argv)
{
    struct serve_args sa = {.o = orch_server_default_opts()};
    const char *env_key = getenv("ORCH_API_KEY");
    if (env_key && *env_key)
        sa.o.api_key = env_key;
    int first;
    int rc = cli_parse(&serve_cmd, argc, argv, serve_opt, &sa, &first);
    if (rc != EXIT_OK || first < 0)
        return rc;
    if (first < argc) {
        cli_error("serve: unexpected argument '%s'", argv[first]);
        return EXIT_USAGE;
    }
    if (!cli->config_path && !sa.o.n_models) {
        cli_error("serve needs roles: -c CONFIG, or -m FILE (repeatable) for a role per file");
        return EXIT_USAGE;
    }
    sa.o.config_path = cli->config_path;
    sa.o.models = sa.models;
    return orch_server_run(&sa.o);
}
