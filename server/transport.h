/*
 * transport.h — the daemon's HTTP transport (libmicrohttpd): connections,
 * request bodies and their limits, the API key, and dispatch through the
 * route table. Knows the routes only through the table.
 */
#ifndef ORCH_SRV_TRANSPORT_H
#define ORCH_SRV_TRANSPORT_H

#include "state.h"

/* Listens on s->opts.host:port and serves s->routes, one thread per
 * connection. Returns 0 with s->mhd set and *port the port bound, 2 for a
 * host that is not an IPv4 address, 1 when it cannot listen (a message on
 * stderr either way). */
int transport_start(struct srv *s, int *port);

/* Stops accepting connections; requests in flight go on. */
void transport_quiesce(struct srv *s);

/* Closes every connection and joins their threads. */
void transport_stop(struct srv *s);

#endif /* ORCH_SRV_TRANSPORT_H */
