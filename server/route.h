/*
 * route.h — the route table: (method, path) -> handler. The API files
 * register their routes into it at start; the transport looks a request up
 * in it and knows nothing else of the APIs (nginx's phase handlers,
 * llama-server's get(path, handler)).
 */
#ifndef ORCH_SRV_ROUTE_H
#define ORCH_SRV_ROUTE_H

#include "state.h"

typedef enum MHD_Result (*route_fn)(struct req *r);

enum route_flags {
    ROUTE_PREFIX = 1 << 0,  /* path is a prefix ("/v1/models/" + a name) */
    ROUTE_PUBLIC = 1 << 1,  /* no API key needed (/health) */
};

struct route {
    const char *method;   /* "GET" (HEAD too), or "POST" or "DELETE" (take a JSON object
                             body) */
    const char *path;
    route_fn fn;
    const char *endpoint; /* its name in the log and /metrics; static; the path
                           * unless routes_add was given another */
    int arg;              /* for the handler: r->route->arg (a variant) */
    unsigned flags;       /* enum route_flags */
};

#define ROUTES_MAX 64

struct routes {
    struct route r[ROUTES_MAX];
    size_t n;
};

/* Whether the route's requests carry a JSON object body (POST, DELETE). */
bool route_takes_body(const struct route *rt);

/* Adds a route; endpoint NULL names it by its path. Returns 0, or -1 when
 * the table is full (a build-time mistake; the daemon refuses to start).
 * Threads: at start only. */
int routes_add(struct routes *t, const char *method, const char *path, route_fn fn,
               const char *endpoint, int arg, unsigned flags);

/* The route for (method, path): exact paths before prefixes; HEAD matches
 * GET. NULL when none; then *path_known says whether another method has a
 * route for the path (405 rather than 404) and allow[cap] lists those
 * methods ("GET, POST"). Threads: any, once start is over. */
const struct route *routes_find(const struct routes *t, const char *method, const char *path,
                                bool *path_known, char *allow, size_t cap);

#endif /* ORCH_SRV_ROUTE_H */
