/*
 * daemon.c — `orchestra serve`'s lifecycle: the config and the orchestra,
 * the routes, the transport, and the signal loop (SIGHUP reloads, SIGTERM
 * and SIGINT drain and stop).
 *
 * DESIGN
 * Signals are blocked before any thread starts, so every thread inherits
 * the mask, and the main thread takes them with sigwait(): no handler runs
 * in an arbitrary thread; SIGHUP only wakes the reloader thread, so the
 * signal thread is always there for SIGTERM. Stopping: stop accepting, let
 * requests in flight finish for up to drain_s, cut the generations left
 * (a second SIGTERM cuts them at once), close every connection, close the
 * orchestra.
 */
#include "api.h"
#include "conns.h"
#include "jobs.h"
#include "pull.h"
#include "roleset.h"
#include "reply.h"
#include "transport.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <unistd.h>

struct orch_server_opts orch_server_default_opts(void)
{
    struct orch_server_opts o = {0};
    o.host = "127.0.0.1";
    o.port = 11435;
    o.body_max = 8u << 20;
    o.conn_max = 128;
    o.timeout_s = 60;
    o.drain_s = 30;
    o.queue_max = 64;
    return o;
}

/* SIGHUP: read the config again and apply it; models whose role and file
 * are unchanged stay loaded. A bad config is logged and the old one stays.
 * n: the SIGHUPs this one reload answers. */
static void reload(struct srv *s, int n)
{
    orch_config *cfg;
    orch_error err = {0};
    int rc = srv_roles_config(&s->opts, &cfg, &err);
    if (rc == ORCH_OK) {
        rc = orch_reconfigure(s->o, cfg, &err);
        orch_config_free(cfg);
    }
    struct orch_log_field f[] = {{"config", s->opts.config_path ? s->opts.config_path : "-m", 0},
                                 {"signals", NULL, n},
                                 {"result", rc ? "kept the old config" : "applied", 0},
                                 {"error", rc ? err.msg : "", 0}};
    orch_log_event(rc ? ORCH_LOG_ERROR : ORCH_LOG_INFO, NULL, "reload", f, rc ? 4 : 3);
    if (rc)
        fprintf(stderr, "orchestra serve: reload: %s (the old config stays)\n", err.msg);
}

/* Reloads run on a thread of their own: a reconfigure waits for the calls
 * that may still see the old roles, and the signal thread must stay free
 * for SIGTERM. SIGHUPs that come while one runs are answered by one more
 * reload, which says how many it answers. */
struct reloader {
    struct srv_thread t; /* t.lock guards pending and running */
    struct srv *s;
    int pending;  /* SIGHUPs not yet answered */
    bool running; /* a reload is in progress */
};

static void *reloader_main(void *arg)
{
    struct reloader *rl = arg;
    pthread_mutex_lock(&rl->t.lock);
    for (;;) {
        while (!rl->t.stop && !rl->pending)
            pthread_cond_wait(&rl->t.cond, &rl->t.lock);
        if (rl->t.stop)
            break;
        int n = rl->pending;
        rl->pending = 0;
        rl->running = true;
        pthread_mutex_unlock(&rl->t.lock);
        reload(rl->s, n);
        pthread_mutex_lock(&rl->t.lock);
        rl->running = false;
        pthread_cond_broadcast(&rl->t.cond);
    }
    pthread_mutex_unlock(&rl->t.lock);
    return NULL;
}

static void reloader_kick(struct reloader *rl)
{
    pthread_mutex_lock(&rl->t.lock);
    rl->pending++;
    pthread_cond_signal(&rl->t.cond);
    pthread_mutex_unlock(&rl->t.lock);
}

/* Stops the reloader; false when a reload was still running at the
 * deadline (it ends once the calls it waits for end, which the cut
 * hastens; the process then exits without it). */
static bool reloader_stop(struct reloader *rl, int64_t deadline_ns)
{
    pthread_mutex_lock(&rl->t.lock);
    rl->t.stop = true; /* no reload starts from now on */
    while (rl->running && srv_now_ns() < deadline_ns) {
        struct timespec ts = srv_realtime_after_ms(10);
        pthread_cond_timedwait(&rl->t.cond, &rl->t.lock, &ts);
    }
    bool ended = !rl->running;
    pthread_mutex_unlock(&rl->t.lock);
    if (ended)
        srv_thread_stop(&rl->t); /* idle now: it sees the stop and leaves */
    return ended;
}

int orch_server_state_file(const char *config_path, char *out, size_t cap)
{
    char real[PATH_MAX];
    if (!config_path || !realpath(config_path, real))
        return -1;
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the real path */
    for (const char *p = real; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    const char *dir = getenv("XDG_RUNTIME_DIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int k = snprintf(out, cap, "%s/orchestra-%u-%016llx.daemon", dir, (unsigned)getuid(),
                     (unsigned long long)h);
    return k > 0 && (size_t)k < cap ? 0 : -1;
}

/* The state file (orch_server_state_file): URL and pid, written whole. */
static void state_write(const struct orch_server_opts *in, int port, char *path, size_t cap)
{
    path[0] = '\0';
    char tmp[PATH_MAX + 16];
    if (orch_server_state_file(in->config_path, path, cap) != 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    bool ok = f && fprintf(f, "http://%s:%d\n%d\n", strcmp(in->host, "0.0.0.0") ? in->host
                                                                                : "127.0.0.1",
                           port, (int)getpid()) > 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        path[0] = '\0';
    }
}

static void announce(const struct orch_server_opts *in, int port)
{
    struct orch_log_field f[] = {{"host", in->host, 0},
                                 {"port", NULL, port},
                                 {"config", in->config_path ? in->config_path : "-m", 0},
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

/* Waits for SIGTERM or SIGINT, a reload kicked on each SIGHUP; returns the
 * signal. */
static int serve_until_stopped(struct reloader *rl, const sigset_t *set)
{
    int sig = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig == SIGHUP)
            reloader_kick(rl);
    }
}

/* Waits until nothing is in flight or the deadline; false when a second
 * SIGTERM or SIGINT came (stop at once). */
static bool wait_drained(struct srv *s, const sigset_t *set, int64_t deadline_ns)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    while (atomic_load(&s->in_flight) > 0 && srv_now_ns() < deadline_ns) {
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            return false;
    }
    return true;
}

/* Stop accepting, let requests in flight finish until the drain deadline,
 * cut the generations still running then (or at a second signal: each
 * answers an error within a token), close. What is still in flight
 * DRAIN_GRACE_MS after the cut (a load, an embedding) does not hold the
 * exit up: the process ends without freeing. */
#define DRAIN_GRACE_MS 1000
static void drain_and_stop(struct srv *s, struct reloader *rl, const sigset_t *set, int sig)
{
    atomic_store(&s->stopping, true);
    transport_quiesce(s);
    int64_t t0 = srv_now_ns();
    bool patient = wait_drained(s, set, t0 + (int64_t)(s->opts.drain_s * 1e9));
    int64_t left = atomic_load(&s->in_flight), cut = left ? jobs_cut(s) : 0;
    int64_t grace = srv_now_ns() + (int64_t)DRAIN_GRACE_MS * 1000000;
    if (left)
        wait_drained(s, set, grace);
    bool reloaded = reloader_stop(rl, grace);
    int64_t stuck = atomic_load(&s->in_flight);
    struct orch_log_field f[] = {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM", 0},
                                 {"second_signal", patient ? "no" : "yes", 0},
                                 {"requests_cut", NULL, (double)cut},
                                 {"requests_left", NULL, (double)stuck},
                                 {"ms", NULL, (double)(srv_now_ns() - t0) / 1e6}};
    orch_log_event(ORCH_LOG_INFO, NULL, "stopping", f, 5);
    if (stuck > 0 || !reloaded) {
        /* a call that does not end (a load waiting, a reload behind it):
         * the exit does not wait for it */
        fflush(NULL);
        _exit(0);
    }
    transport_stop(s);
    conns_stop(s);
    jobs_stop(s);
}

static void srv_free(struct srv *s)
{
    orch_close(s->o);
    orch_worker_backend_free(s->workers); /* after every model of it is freed */
    pthread_mutex_destroy(&s->lock);
    digests_free(&s->digests);
    pull_global_free();
    free((void *)s->routes);
    free(s);
}

int orch_server_run(const struct orch_server_opts *in)
{
    struct srv *s = calloc(1, sizeof *s);
    struct routes *routes = calloc(1, sizeof *routes);
    if (!s || !routes || openai_routes(routes) || responses_routes(routes) ||
        ollama_routes(routes) || manage_routes(routes) || pull_routes(routes) ||
        ops_routes(routes)) {
        fprintf(stderr, "orchestra serve: out of memory (or too many routes)\n");
        free(s);
        free(routes);
        return 1;
    }
    s->opts = *in;
    s->routes = routes;
    if (pull_global_init() != 0)
        fprintf(stderr, "orchestra serve: libcurl cannot start: /api/pull is refused\n");
    pthread_mutex_init(&s->lock, NULL);
    digests_init(&s->digests);
    s->started_unix = (int64_t)time(NULL);
    orch_error err = {0};
    orch_config *cfg;
    int rc = srv_roles_config(in, &cfg, &err);
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
    if (jobs_start(s) != 0 || conns_start(s) != 0) {
        fprintf(stderr, "orchestra serve: cannot start a thread\n");
        srv_free(s);
        return 1;
    }
    int port;
    rc = transport_start(s, &port);
    if (rc) {
        conns_stop(s);
        jobs_stop(s);
        srv_free(s);
        return rc;
    }
    struct reloader rl = {.s = s};
    if (srv_thread_start(&rl.t, reloader_main, &rl) != 0) {
        fprintf(stderr, "orchestra serve: cannot start a thread\n");
        transport_stop(s);
        conns_stop(s);
        jobs_stop(s);
        srv_free(s);
        return 1;
    }
    announce(in, port);
    char state[PATH_MAX];
    state_write(in, port, state, sizeof state);
    drain_and_stop(s, &rl, &set, serve_until_stopped(&rl, &set));
    if (state[0])
        unlink(state);
    srv_free(s);
    return 0;
}
