/*
 * reply.c — replies in each API's shape, JSON value checks, and the small
 * helpers every layer of the daemon uses.
 */
#include "reply.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec srv_realtime_after_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (ms > 0 ? ms : 0) % 1000 * 1000000;
    ts.tv_sec += (time_t)((ms > 0 ? ms : 0) / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

int srv_thread_start(struct srv_thread *t, void *(*fn)(void *), void *arg)
{
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->stop = false;
    t->started = pthread_create(&t->th, NULL, fn, arg) == 0;
    if (!t->started) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
    }
    return t->started ? 0 : -1;
}

void srv_thread_stop(struct srv_thread *t)
{
    if (!t->started)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->th, NULL);
    t->started = false;
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}

int srv_conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

void rfc3339_now(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%09ldZ", day, ts.tv_nsec);
}

char *base64_floats(const float *v, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = (const unsigned char *)v; /* x86-64 and arm64: little-endian */
    size_t len = n * 4, out_len = (len + 2) / 3 * 4;
    char *out = malloc(out_len + 1), *w = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            x |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            x |= p[i + 2];
        *w++ = tab[(x >> 18) & 63];
        *w++ = tab[(x >> 12) & 63];
        *w++ = i + 1 < len ? tab[(x >> 6) & 63] : '=';
        *w++ = i + 2 < len ? tab[x & 63] : '=';
    }
    *w = '\0';
    return out;
}

/* ---- replies ------------------------------------------------------------------------ */

enum MHD_Result reply_queue(struct req *r, int status, struct MHD_Response *resp,
                            const char *ctype)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (status == 405 && r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->close || atomic_load(&r->s->stopping)) /* no next request on this connection */
        MHD_add_response_header(resp, "Connection", "close");
    if (r->origin) { /* a browser's call CORS allows: it may read the reply */
        bool any = strcmp(r->s->opts.cors_origin, "*") == 0;
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", any ? "*" : r->origin);
        if (!any)
            MHD_add_response_header(resp, "Vary", "Origin");
    }
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

enum MHD_Result reply_preflight(struct req *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    char allow[48];
    snprintf(allow, sizeof allow, "%s%s, OPTIONS", r->allow,
             strstr(r->allow, "GET") ? ", HEAD" : "");
    MHD_add_response_header(resp, "Allow", allow);
    if (r->origin) {
        const char *asked = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                        "Access-Control-Request-Headers");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
        /* the headers the APIs read; a browser sends no others unasked */
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                asked && *asked ? asked : "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    return reply_queue(r, 204, resp, "text/plain");
}

enum MHD_Result reply_text(struct req *r, int status, const char *ctype, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return reply_queue(r, status, resp, ctype);
}

enum MHD_Result reply_json(struct req *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return reply_text(r, 500, "text/plain", "out of memory\n");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    return reply_queue(r, status, resp, "application/json");
}

/* Makes msg valid UTF-8 in place: a byte that does not start a whole, well
 * formed character becomes '?' (a message cut by a precision mid-character,
 * or a client's bytes quoted in it, would make json_pack fail). */
static void utf8_fix(char *msg)
{
    unsigned char *p = (unsigned char *)msg;
    while (*p) {
        size_t n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
                                 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
                                 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        /* no overlong three- or four-byte forms, surrogates, or past U+10FFFF */
        if (ok && n == 3)
            ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0);
        if (ok && n == 4)
            ok = !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* A quoted absolute path ('/dir/file.gguf', as the library quotes files)
 * becomes its file name: where a daemon keeps its models is not its
 * clients' business (--verbose-errors keeps them). */
static void scrub_paths(char *msg)
{
    for (char *q = strstr(msg, "'/"); q; q = strstr(q + 1, "'/")) {
        char *end = strchr(q + 1, '\'');
        if (!end)
            break;
        char *name = q + 1;
        for (char *p = q + 1; p < end; p++)
            if (*p == '/')
                name = p + 1;
        memmove(q + 1, name, strlen(name) + 1);
    }
}

const char *srv_file_name(const struct srv *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    return s->opts.verbose_errors || !slash ? path : slash + 1;
}

/* msg, made fit for a client: valid UTF-8, paths as file names. */
static void client_text(struct req *r, char *msg)
{
    utf8_fix(msg);
    if (!r->s->opts.verbose_errors)
        scrub_paths(msg);
}

enum MHD_Result reply_oai_error(struct req *r, int status, const char *type, const char *fmt, ...)
{
    char msg[ORCH_ERROR_MSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    client_text(r, msg);
    json_t *e = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type", type,
                          "param", "code");
    return reply_json(r, status, e);
}

enum MHD_Result reply_olm_error(struct req *r, int status, const char *fmt, ...)
{
    char msg[ORCH_ERROR_MSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    client_text(r, msg);
    return reply_json(r, status, json_pack("{s:s}", "error", msg));
}

enum MHD_Result reply_error(struct req *r, int status, const char *msg)
{
    if (strncmp(r->path, "/v1/", 4) == 0)
        return reply_oai_error(r, status,
                               status == 401   ? "authentication_error"
                               : status == 404 ? "not_found_error"
                               : status >= 500 ? "server_error"
                                               : "invalid_request_error",
                               "%s", msg);
    return reply_olm_error(r, status, "%s", msg);
}

int status_for(int code)
{
    switch (code) {
    case ORCH_OK:
        return 200;
    case ORCH_ENOROLE:
        return 404;
    case ORCH_EINVAL:
    case ORCH_ECTX:
        return 400;
    case ORCH_EBUDGET:
        return 507;
    case ORCH_ETIMEDOUT:
    case ORCH_ECLOSED:
        return 503;
    case ORCH_ECANCELED:
        return 499;
    default:
        return 500;
    }
}

/* ---- JSON value checks ------------------------------------------------------------- */

int json_kind(json_t *v, const char *name, char kind, char *msg, size_t cap)
{
    if (!v || json_is_null(v) || (kind == 'b' && json_is_boolean(v)) ||
        (kind == 's' && json_is_string(v)) || (kind == 'o' && json_is_object(v)))
        return 0;
    snprintf(msg, cap, "'%s' must be %s", name,
             kind == 'b' ? "true or false" : kind == 's' ? "a string" : "an object");
    return -1;
}

int json_float(json_t *v, const char *name, float lo, float hi, float *out, char *msg, size_t cap)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v)) {
        snprintf(msg, cap, "'%s' must be a number", name);
        return -1;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        snprintf(msg, cap, "'%s' is %g; expected %g to %g", name, d, (double)lo, (double)hi);
        return -1;
    }
    *out = (float)d;
    return 0;
}

int json_int(json_t *v, const char *name, long long lo, long long hi, long long *out, char *msg,
             size_t cap)
{
    if (!v || json_is_null(v))
        return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : NAN;
    if (!json_is_number(v) || d != floor(d)) {
        snprintf(msg, cap, "'%s' must be a whole number", name);
        return -1;
    }
    if (d < (double)lo || d > (double)hi) {
        snprintf(msg, cap, "'%s' is %.0f; expected %lld to %lld", name, d, lo, hi);
        return -1;
    }
    *out = (long long)d;
    return 0;
}

int json_stops(json_t *v, const char **stops, size_t *n, char *msg, size_t cap)
{
    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        if (json_string_length(v))
            stops[(*n)++] = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > SRV_STOPS_MAX) {
        snprintf(msg, cap, "'stop' must be a string or an array of at most %d strings",
                 SRV_STOPS_MAX);
        return -1;
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            snprintf(msg, cap, "'stop' must hold strings");
            return -1;
        }
        if (json_string_length(e))
            stops[(*n)++] = json_string_value(e);
    }
    return 0;
}
