/*
 * server.h — `orchestra serve`: a daemon over an orchestra that speaks the
 * OpenAI and Ollama HTTP APIs. Built on the public library only.
 */
#ifndef ORCH_SERVER_H
#define ORCH_SERVER_H

#include <orchestra.h>

#include <stddef.h>
#include <stdint.h>

struct orch_server_opts {
    const char *config_path; /* the roles' INI file; NULL: only the models below */
    const char *const *models; /* model files served as roles of their own, named
                                  after the files (with a config: added to its roles) */
    size_t n_models;         /* config_path or n_models is required */
    const char *host;        /* default "127.0.0.1" */
    int port;                /* default 11435; 0 = any free port (printed) */
    const char *api_key;     /* NULL = none; else every endpoint but /health needs it */
    size_t body_max;         /* default 8 MiB */
    unsigned conn_max;       /* connections holding a slot; default 128 (three times as
                                many more are answered 503 at once); at the cap a new
                                one evicts the one that waited longest for a request */
    unsigned timeout_s;      /* a connection's wait for a whole request, and a body's
                                time, each at most this (not restarted by bytes); 60 */
    double drain_s;          /* on SIGTERM: how long requests in flight may finish; default 30 */
    int queue_max;           /* requests per role running or waiting; past it 503; default 64 */
    const char *port_file;   /* where to write the port once listening; NULL = none */
    bool in_process;         /* llama.cpp in this process, not a worker per model file;
                                default false */
    const char *worker_exe;  /* the program workers run (orch_worker_main); NULL = this one */
    bool verbose_errors;     /* clients see model files' full paths; default false: names */
    const char *models_dir;  /* /api/create takes GGUF files from this folder only;
                                NULL: only from existing models */
    const char *cors_origin; /* browser origins allowed to call (CORS): NULL = none (no
                                Access-Control-* header is sent), "*" = any, else a
                                comma-separated list of exact origins; the API key is
                                still required */
};

/* Defaults for the fields above. */
struct orch_server_opts orch_server_default_opts(void);

/* Where a daemon serving config_path says where it listens, so that the
 * command's ps, preload and unload find it: a file in $XDG_RUNTIME_DIR (else
 * /tmp) named after this user and the config's real path, holding the URL
 * and the pid; written once the daemon listens, removed when it stops.
 * Returns 0 with out[cap] the path, or -1 when config_path cannot be
 * resolved (or the path would not fit). Threads: any. */
int orch_server_state_file(const char *config_path, char *out, size_t cap);

/* The roles and memory of o as JSON text, {"roles": [...], "memory":
 * {...}}: what `ps --json` prints and GET /admin/status answers. Returns
 * malloc'd text (free() it), or NULL with err. Threads: any. */
char *orch_server_status_json(orch_orchestra *o, orch_error *err);

/* Loads the config, opens the orchestra, listens, serves until SIGTERM or
 * SIGINT (then stops accepting, lets requests in flight finish for up to
 * drain_s, unloads and returns). Returns a process exit code: 0 after a
 * clean stop, 2 for a --host that is not an IPv4 address, 3 for a bad
 * config (message on stderr with file:line), 1 when it cannot listen or is
 * out of memory. Threads: call from the main thread; it blocks SIGTERM,
 * SIGINT, SIGHUP and SIGPIPE in every thread it starts and waits for them. */
int orch_server_run(const struct orch_server_opts *opts);

#endif /* ORCH_SERVER_H */
