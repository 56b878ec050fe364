/*
 * conns.h — the daemon's connections: a cap no client can hold shut,
 * deadlines that do not restart with each byte, a fast 503 past the cap.
 */
#ifndef ORCH_SRV_CONNS_H
#define ORCH_SRV_CONNS_H

#include "state.h"

/* What a connection is doing. */
enum { CONN_WAITING, CONN_BODY, CONN_BUSY };

/* The MHD options the connection policy needs (the accept policy and the
 * connection notifications), for MHD_start_daemon: apc and its cls, and
 * the notify callback with its cls. Threads: MHD's. */
enum MHD_Result conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode what);
/* The hard limit to give MHD: past it connections are closed unanswered. */
unsigned conns_hard_limit(const struct srv *s);

/* Starts the reaper (the deadlines). Returns 0 or -1. Threads: main, once. */
int conns_start(struct srv *s);
void conns_stop(struct srv *s);

/* A request's connection moves on: CONN_BODY at its headers, CONN_BUSY when
 * the whole request is in, CONN_WAITING after its reply. Returns true for a
 * connection taken past the cap (its request gets 503, /health excepted).
 * Threads: the connection's. */
bool conns_mark(struct srv *s, struct MHD_Connection *conn, int state);

#endif /* ORCH_SRV_CONNS_H */
