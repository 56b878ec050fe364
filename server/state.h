/*
 * state.h — the daemon's state and one request, as every layer of server/
 * sees them. Types only: each layer's functions are in its own header.
 *
 * The layers, top to bottom (arrows point down only):
 *   daemon.c      lifecycle: config, orchestra, signals, reload, drain
 *   openai.c ollama.c responses.c manage.c pull.c ops.c
 *                 the API handlers, registered into the route table
 *   gen.c         one generation or embedding as the APIs run it
 *   jobs.c        the generations running: cut at the drain deadline, or
 *                 when a non-streamed request's client leaves
 *   roles.c       a request's role, resolved once, and its queue place
 *   transport.c   libmicrohttpd: requests, bodies and their limits, the
 *                 key, dispatch through the route table
 *   conns.c       connections: the cap, eviction, deadlines, 503 past it
 *   route.c       the route table (method, path, handler)
 *   stream.c      streamed responses (SSE, NDJSON) from a producer thread
 *   access.c      the access log line and the counts behind /metrics
 *   reply.c       replies in each API's shape, JSON value checks
 * Built on the public library header only.
 */
#ifndef ORCH_SRV_STATE_H
#define ORCH_SRV_STATE_H

#include <orchestra.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "server.h"

#define SRV_MAX_ROLES 256
#define SRV_MAX_COUNTS 128

/* Per-role counters for /metrics, by role name: a role keeps its slot
 * across reloads; once every slot is named, a slot whose role the config no
 * longer has (and that nothing waits on) goes to a new role, zeroed. */
struct role_metrics {
    char name[ORCH_ROLE_NAME_MAX]; /* "" = free; written under srv.lock */
    _Atomic int64_t requests_ok, requests_err;
    _Atomic int64_t tokens_in, tokens_out;
    _Atomic int64_t tokens_cached; /* prompt tokens prefix reuse did not read again */
    _Atomic int64_t in_flight; /* requests running or waiting on this role */
};

/* Requests by endpoint and status, for /metrics. */
struct endpoint_count {
    const char *endpoint; /* static: a route's endpoint name */
    int status;
    int64_t n;
};

struct routes;

/* One of the daemon's service threads (the jobs watcher, the connection
 * reaper, the reloader): its lock and condition, and the stop flag it
 * sleeps on (reply.c: srv_thread_start, srv_thread_stop). */
struct srv_thread {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, started;
    pthread_t th;
};

/* A running generation's entry in the daemon's list (jobs.c). */
struct job_link {
    struct job_link *prev, *next;
    int32_t *cancel; /* its orch_gen_params.cancel */
    int fd;          /* the client's socket to watch (non-streamed), or -1 */
    uint64_t id;
};

struct jobs {
    struct srv_thread t;  /* the watcher; t.lock guards all below */
    struct job_link *head;
    uint64_t next_id;
    bool cut;             /* the drain deadline passed: every job is cut */
    bool idle;            /* the watcher sleeps until a job comes */
    int cap;              /* sockets watched at most */
};

struct conn;
struct conns {
    struct srv_thread t;  /* the reaper; t.lock guards all below */
    struct conn *head;
    unsigned n_live;      /* connections holding a slot (not cut, not past the cap) */
    int64_t n_cut;        /* cut by a deadline or evicted, since start */
    bool next_over;       /* the connection being accepted is past the cap */
    bool idle;            /* the reaper sleeps until a connection comes */
};

struct srv {
    struct orch_server_opts opts;    /* immutable after start */
    orch_orchestra *o;               /* immutable after start */
    orch_backend *workers;           /* its backend; NULL = in process */
    struct MHD_Daemon *mhd;
    const struct routes *routes;     /* immutable after start */
    int64_t started_unix;
    _Atomic int64_t in_flight;       /* requests not yet completed */
    _Atomic bool stopping;
    struct role_metrics roles[SRV_MAX_ROLES];
    pthread_mutex_t lock;            /* guards roles[].name and counts */
    struct endpoint_count counts[SRV_MAX_COUNTS];
    size_t n_counts;
    _Atomic int64_t unauthorized, too_large;
    struct jobs jobs;                /* the generations running (jobs.c) */
    struct conns conns;              /* the connections (conns.c) */
    struct digests digests;          /* model files' sha256 (digest.c) */
};

struct route;

/* One HTTP request, from the first call of the access handler to MHD's
 * completion callback. Written by the connection's thread only. */
struct req {
    struct srv *s;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    const struct route *route; /* NULL: no route for the path */
    char *body;                /* buffered only for routes that take one */
    size_t len, cap;
    bool too_big;              /* past body_max: the rest is read and dropped */
    uint64_t seen;             /* body bytes received, kept or not */
    bool drop_body;            /* refused already (key, route): read and drop */
    int refused;               /* the status decided before the body (401, 404, 405, 503) */
    char allow[32];            /* with a 405: the methods the path takes */
    json_t *json;              /* the parsed body of a POST */
    int64_t t0_ns;
    const char *endpoint;      /* for metrics and the log: "/v1/chat/completions" */
    /* the role, resolved once (roles.c) and carried down */
    int role_index;            /* its metrics slot; -1 = none */
    struct orch_role_ref ref;  /* ref.name: canonical; "" = none */
    int status;
    int64_t tok_in, tok_out;
    bool streamed;             /* the stream logs and counts when it ends */
    bool close;                /* the reply closes the connection */
    const char *origin;        /* its Origin header when CORS allows it; else NULL */
    bool preflight;            /* an OPTIONS request: answered with the path's methods */
};

#endif /* ORCH_SRV_STATE_H */
