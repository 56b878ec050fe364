/*
 * transport.c — libmicrohttpd: one request from its headers to its end.
 *
 * DESIGN
 * MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler may block on a load or a whole generation; the connection cap
 * bounds the threads. A request is decided in three steps:
 *  1. headers: its route is looked up and its key checked before any byte
 *     of its body is kept. A declared body far past the limit is refused at
 *     once (the connection closes under the client); a refused request
 *     (401, 404, 405) or a route that takes no body has its body read and
 *     dropped, so that clients that send before they read (most do) see the
 *     answer, and nothing is buffered for them.
 *  2. body: buffered up to body_max for the routes that take one.
 *  3. complete: 413, the refusal, or the JSON object parsed, then the
 *     route's handler.
 * MHD's completion callback logs and counts the request (access.c), unless
 * a stream took it over (stream.c logs it when it ends).
 */
#include "access.h"
#include "conns.h"
#include "reply.h"
#include "route.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Constant-time comparison of the bearer token. */
static bool authorized(struct srv *s, struct MHD_Connection *conn)
{
    if (!s->opts.api_key || !*s->opts.api_key)
        return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) /* the scheme is case-insensitive (RFC 9110) */
        return false;
    const char *got = h + 7, *want = s->opts.api_key;
    size_t gl = strlen(got), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)why;
    struct req *r = *con_cls;
    if (!r)
        return;
    conns_mark(r->s, conn, CONN_WAITING);
    /* a streamed request is logged (and its role released) when its stream
     * ends, which stream.c does */
    if (!r->streamed) {
        struct access a = access_of(r);
        access_done(r->s, &a);
    }
    atomic_fetch_sub(&r->s->in_flight, 1);
    json_decref(r->json);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static enum MHD_Result too_large(struct req *r)
{
    atomic_fetch_add(&r->s->too_large, 1);
    char msg[96];
    snprintf(msg, sizeof msg, "request body larger than %zu bytes", r->s->opts.body_max);
    return reply_error(r, 413, msg);
}

/* origin when the daemon lets it call (--cors-origin), else NULL. */
static const char *cors_allowed(struct srv *s, const char *origin)
{
    const char *list = s->opts.cors_origin;
    if (!origin || !*origin || !list || !*list)
        return NULL;
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if ((t - p == 1 && *p == '*') || ((size_t)(t - p) == n && memcmp(p, origin, n) == 0))
            return origin;
        p = e;
    }
    return NULL;
}

/* Step 1: a new request, its headers in. */
static enum MHD_Result begin(struct srv *s, struct MHD_Connection *conn, const char *url,
                             const char *method, void **con_cls)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return MHD_NO;
    r->s = s;
    r->conn = conn;
    r->method = method;
    r->path = url;
    r->t0_ns = srv_now_ns();
    r->role_index = -1;
    r->endpoint = "other";
    atomic_fetch_add(&s->in_flight, 1);
    *con_cls = r;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    /* past the limit: at once when the client waits to hear before it sends
     * (Expect: 100-continue), or when the body is far past it */
    if (declared > s->opts.body_max && (expect || declared / 8 > s->opts.body_max))
        return too_large(r);
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked") != 0) {
        r->close = true;
        return reply_error(r, 501, "only the chunked transfer coding is understood");
    }

    bool known;
    r->route = routes_find(s->routes, method, url, &known, r->allow, sizeof r->allow);
    r->origin = cors_allowed(s, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
    /* a preflight carries no credentials (the browser asks first whether it
     * may send them): it is answered without the key, and says nothing but
     * which methods and headers the path takes */
    r->preflight = strcmp(method, "OPTIONS") == 0 && known;
    bool public_path = (r->route && (r->route->flags & ROUTE_PUBLIC)) || r->preflight;
    bool over = conns_mark(s, conn, CONN_BODY);
    if (atomic_load(&s->stopping)) /* a kept-alive connection's next request */
        r->refused = 503;
    else if (over && strcmp(url, "/health") != 0) /* past the connection cap */
        r->refused = 503;
    else if (!public_path && !authorized(s, conn))
        r->refused = 401;
    else if (r->preflight)
        r->refused = 0;
    else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
             strcmp(method, "POST") != 0 && strcmp(method, "OPTIONS") != 0 &&
             strcmp(method, "DELETE") != 0)
        r->refused = 405;
    else if (!r->route)
        r->refused = known ? 405 : 404;
    r->drop_body = r->refused || r->preflight || !route_takes_body(r->route);
    return MHD_YES;
}

/* Step 2: a piece of the body. */
static enum MHD_Result body_piece(struct req *r, const char *data, size_t n)
{
    if (r->drop_body)
        return MHD_YES;
    if (!r->too_big && r->len + n > r->s->opts.body_max) {
        r->too_big = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
    }
    if (r->too_big)
        return MHD_YES;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return MHD_NO;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return MHD_YES;
}

#define JSON_DEPTH_MAX      64     /* nesting: no request of either API needs 10 */
#define JSON_CONTAINERS_MAX 100000 /* objects and arrays: 2,048 embedding inputs need 1 */

/* The body's JSON shape, before jansson spends memory on it (a couple of
 * hundred bytes a value: 8 MiB of "{}," would be half a GiB): nesting
 * depth and objects plus arrays, counted outside strings. 0, or -1 with msg. */
static int json_shape(const char *p, size_t n, char *msg, size_t cap)
{
    size_t depth = 0, containers = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > JSON_DEPTH_MAX || ++containers > JSON_CONTAINERS_MAX) {
                snprintf(msg, cap, "the JSON body nests deeper than %d or holds more than %d "
                                   "objects and arrays",
                         JSON_DEPTH_MAX, JSON_CONTAINERS_MAX);
                return -1;
            }
        } else if ((c == '}' || c == ']') && depth) {
            depth--;
        }
    }
    return 0;
}

/* Step 3: the whole request is here. */
static enum MHD_Result complete(struct req *r)
{
    conns_mark(r->s, r->conn, CONN_BUSY);
    if (r->too_big)
        return too_large(r);
    switch (r->refused) {
    case 401:
        atomic_fetch_add(&r->s->unauthorized, 1);
        return reply_error(r, 401, "missing or wrong API key (Authorization: Bearer KEY)");
    case 404: {
        char msg[200];
        snprintf(msg, sizeof msg, "no endpoint %s %.128s", r->method, r->path);
        return reply_error(r, 404, msg);
    }
    case 405:
        return reply_error(r, 405, "method not allowed");
    case 0:
        if (r->preflight)
            return reply_preflight(r);
        break;
    case 503: /* draining, or past the connection cap: this connection ends */
        r->close = true;
        return reply_error(r, 503, atomic_load(&r->s->stopping)
                                       ? "the server is stopping"
                                       : "every connection is busy; try again");
    }
    if (route_takes_body(r->route)) {
        json_error_t je;
        if (!r->len)
            return reply_error(r, 400, "the request needs a JSON body");
        if (memchr(r->body, '\0', r->len))
            return reply_error(r, 400, "the body holds a NUL byte");
        char msg[300];
        if (json_shape(r->body, r->len, msg, sizeof msg))
            return reply_error(r, 400, msg);
        r->json = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
        if (!r->json) {
            snprintf(msg, sizeof msg, "invalid JSON at line %d, column %d: %s", je.line,
                     je.column, je.text);
            return reply_error(r, 400, msg);
        }
        if (!json_is_object(r->json))
            return reply_error(r, 400, "the body must be a JSON object");
    }
    r->endpoint = r->route->endpoint;
    return r->route->fn(r);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct req *r = *con_cls;
    if (!r)
        return begin(cls, conn, url, method, con_cls);
    if (r->status) /* answered already (413 while the body came): the rest is dropped */
        return (*upload_data_size = 0), MHD_YES;
    if (*upload_data_size) {
        r->seen += *upload_data_size;
        enum MHD_Result ok = body_piece(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        /* past the limit, the rest is read and dropped so that the client,
         * still sending, sees the 413 at its end; but not without end (a
         * chunked body declares no length): far past it, the 413 now (the
         * client may see only the connection close under it) */
        if (ok == MHD_YES && r->too_big && r->seen / 8 > r->s->opts.body_max)
            return too_large(r);
        return ok;
    }
    return complete(r);
}

int transport_start(struct srv *s, int *port)
{
    const struct orch_server_opts *in = &s->opts;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)in->port)};
    if (inet_pton(AF_INET, in->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "orchestra serve: --host %s: expected an IPv4 address\n", in->host);
        return 2;
    }
    s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                  MHD_USE_ITC | MHD_USE_POLL,
                              0, conns_accept, s, handle, s, MHD_OPTION_SOCK_ADDR, &addr,
                              MHD_OPTION_CONNECTION_LIMIT, conns_hard_limit(s),
                              MHD_OPTION_CONNECTION_TIMEOUT, in->timeout_s,
                              MHD_OPTION_NOTIFY_CONNECTION, conns_notify, s,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, "orchestra serve: cannot listen on %s:%d: %s\n", in->host, in->port,
                strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : in->port;
    return 0;
}

void transport_quiesce(struct srv *s)
{
    int lfd = (int)MHD_quiesce_daemon(s->mhd);
    if (lfd >= 0)
        close(lfd);
}

void transport_stop(struct srv *s)
{
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
}
