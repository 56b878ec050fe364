/*
 * access.h — the end of every request: its access log line, its counts by
 * endpoint and status and by role (for /metrics), and its role's queue
 * place given back. Called once per request, by the transport when MHD
 * completes it or by the stream when a streamed reply ends.
 */
#ifndef ORCH_SRV_ACCESS_H
#define ORCH_SRV_ACCESS_H

#include "state.h"

/* What the log line and the counts need of a request. */
struct access {
    const char *method, *path, *role; /* role: "" or NULL = none */
    const char *endpoint;             /* a route's static name; NULL = "other" */
    int role_index;                   /* -1 = none */
    int status;                       /* 0 = no reply: the client left (499) */
    int64_t tok_in, tok_out;
    int64_t t0_ns;                    /* when it arrived (srv_now_ns) */
};

/* The access record of a request as it stands; its strings point into r.
 * Threads: the request's. */
struct access access_of(const struct req *r);

/* Logs the request, counts it, and gives back its role's queue place.
 * Threads: any. */
void access_done(struct srv *s, const struct access *a);

#endif /* ORCH_SRV_ACCESS_H */
