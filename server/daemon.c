/*
 * daemon.c — `orchestra serve`'s lifecycle: the config and the orchestra,
 * the routes, the transport, and the signal loop (SIGHUP reloads, SIGTERM
 * and SIGINT drain and stop).
 *
 * DESIGN
 * Signals are blocked before any thread starts, so every thread inherits
 * the mask, and the main thread takes them with sigwait(): no handler runs
 * in an arbitrary thread. Stopping: stop accepting, let requests in flight
 * finish for up to drain_s, close every connection, close the orchestra.
 */
#include "api.h"
#include "reply.h"
#include "transport.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct orch_server_opts orch_server_default_opts(void)
{
    struct orch_server_opts o = {0};
    o.host = "127.0.0.1";
    o.port = 11435;
    o.body_max = 8u << 20;
    o.conn_max = 64;
    o.timeout_s = 60;
    o.drain_s = 30;
    o.queue_max = 64;
    return o;
}

/* What the daemon's roles do unless the config says otherwise: every file
 * is vetted in a child process before it loads here (one bad file must not
 * take every role down); the verdict is kept, so a file costs one vetting. */
static int config_daemon_defaults(orch_config *cfg, orch_error *err)
{
    return orch_config_set_fallback(cfg, "vet", "true", err);
}

/* SIGHUP: read the config again and apply it; models whose role and file
 * are unchanged stay loaded. A bad config is logged and the old one stays. */
static void reload(struct srv *s)
{
    orch_config *cfg;
    orch_error err = {0};
    int rc = orch_config_load(s->opts.config_path, &cfg, &err);
    if (rc == ORCH_OK && (rc = config_daemon_defaults(cfg, &err)))
        orch_config_free(cfg);
    if (rc == ORCH_OK) {
        rc = orch_reconfigure(s->o, cfg, &err);
        orch_config_free(cfg);
    }
    struct orch_log_field f[] = {{"config", s->opts.config_path, 0},
                                 {"result", rc ? "kept the old config" : "applied", 0},
                                 {"error", rc ? err.msg : "", 0}};
    orch_log_event(rc ? ORCH_LOG_ERROR : ORCH_LOG_INFO, NULL, "reload", f, rc ? 3 : 2);
    if (rc)
        fprintf(stderr, "orchestra serve: reload: %s (the old config stays)\n", err.msg);
}

static void announce(const struct orch_server_opts *in, int port)
{
    struct orch_log_field f[] = {{"host", in->host, 0},
                                 {"port", NULL, port},
                                 {"config", in->config_path, 0},
                                 {"auth", in->api_key && *in->api_key ? "bearer" : "none", 0}};
    orch_log_event(ORCH_LOG_INFO, NULL, "listening", f, 4);
    fprintf(stderr, "orchestra serve: listening on http://%s:%d\n", in->host, port);
    if (in->port_file) {
        FILE *pf = fopen(in->port_file, "w");
        if (pf) {
            fprintf(pf, "%d\n", port);
            fclose(pf);
        }
    }
}

/* Waits for SIGTERM or SIGINT, reloading on each SIGHUP; returns the signal. */
static int serve_until_stopped(struct srv *s, const sigset_t *set)
{
    int sig = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig == SIGHUP)
            reload(s);
    }
}

/* Stop accepting, let requests in flight finish (bounded), close. */
static void drain_and_stop(struct srv *s, int sig)
{
    atomic_store(&s->stopping, true);
    transport_quiesce(s);
    int64_t deadline = srv_now_ns() + (int64_t)(s->opts.drain_s * 1e9);
    while (atomic_load(&s->in_flight) > 0 && srv_now_ns() < deadline)
        usleep(10000);
    int64_t left = atomic_load(&s->in_flight);
    struct orch_log_field f[] = {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM", 0},
                                 {"requests_cut", NULL, (double)left}};
    orch_log_event(ORCH_LOG_INFO, NULL, "stopping", f, 2);
    transport_stop(s);
}

static void srv_free(struct srv *s)
{
    orch_close(s->o);
    orch_worker_backend_free(s->workers); /* after every model of it is freed */
    pthread_mutex_destroy(&s->lock);
    free((void *)s->routes);
    free(s);
}

int orch_server_run(const struct orch_server_opts *in)
{
    struct srv *s = calloc(1, sizeof *s);
    struct routes *routes = calloc(1, sizeof *routes);
    if (!s || !routes || openai_routes(routes) || ollama_routes(routes) || ops_routes(routes)) {
        fprintf(stderr, "orchestra serve: out of memory (or too many routes)\n");
        free(s);
        free(routes);
        return 1;
    }
    s->opts = *in;
    s->routes = routes;
    pthread_mutex_init(&s->lock, NULL);
    s->started_unix = (int64_t)time(NULL);
    orch_error err = {0};
    orch_config *cfg;
    int rc = orch_config_load(in->config_path, &cfg, &err);
    if (rc == ORCH_OK && (rc = config_daemon_defaults(cfg, &err)))
        orch_config_free(cfg);
    if (rc) {
        fprintf(stderr, "orchestra serve: %s\n", err.msg);
        srv_free(s);
        return 3;
    }
    /* signals: blocked here, so in every thread started from now on, and
     * waited for below */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct orch_orchestra_params op = orch_orchestra_default_params();
    /* a worker process per model file: what kills llama.cpp kills only
     * the requests on that file (orch_worker_backend_new) */
    if (!in->in_process && !(s->workers = orch_worker_backend_new(in->worker_exe))) {
        fprintf(stderr, "orchestra serve: out of memory\n");
        orch_config_free(cfg);
        srv_free(s);
        return 1;
    }
    op.backend = s->workers;
    rc = orch_open(cfg, &op, &s->o, &err);
    orch_config_free(cfg);
    if (rc) {
        fprintf(stderr, "orchestra serve: %s\n", err.msg);
        srv_free(s);
        return 3;
    }
    int port;
    rc = transport_start(s, &port);
    if (rc) {
        srv_free(s);
        return rc;
    }
    announce(in, port);
    drain_and_stop(s, serve_until_stopped(s, &set));
    srv_free(s);
    return 0;
}
