/*
 * http.c — the daemon's HTTP layer: libmicrohttpd, requests and their
 * bodies, authentication, replies, streams, the access log, the signal loop.
 */
#include "srv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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

int srv_role(struct srv *s, const char *name, char *canon)
{
    if (!name || orch_role_canonical(s->o, name, canon, 64, NULL) != ORCH_OK)
        return -1;
    /* its slot: found, or made (slots are never given back) */
    pthread_mutex_lock(&s->lock);
    int i = 0;
    for (; i < SRV_MAX_ROLES && s->roles[i].name[0]; i++)
        if (strcmp(s->roles[i].name, canon) == 0)
            break;
    if (i < SRV_MAX_ROLES && !s->roles[i].name[0])
        snprintf(s->roles[i].name, sizeof s->roles[i].name, "%s", canon);
    pthread_mutex_unlock(&s->lock);
    return i < SRV_MAX_ROLES ? i : -1;
}

int srv_take_role(struct req *r, const char *name)
{
    char canon[64];
    int i = srv_role(r->s, name, canon);
    if (i < 0)
        return -1;
    struct role_metrics *m = &r->s->roles[i];
    if (atomic_fetch_add(&m->in_flight, 1) >= r->s->opts.queue_max) {
        atomic_fetch_sub(&m->in_flight, 1);
        return -2;
    }
    r->role_index = i;
    snprintf(r->role, sizeof r->role, "%s", canon);
    return i;
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

const char *finish_openai(enum orch_finish f)
{
    return f == ORCH_FINISH_LENGTH ? "length" : "stop";
}

/* ---- JSON value checks ------------------------------------------------------------- */

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
                                  : json_is_real(v) ? json_real_value(v) : NAN;
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
    if (!json_is_array(v) || json_array_size(v) > 16) {
        snprintf(msg, cap, "'stop' must be a string or an array of at most 16 strings");
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

static enum MHD_Result queue(struct req *r, int status, struct MHD_Response *resp,
                             const char *ctype)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

enum MHD_Result reply_text(struct req *r, int status, const char *ctype, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return queue(r, status, resp, ctype);
}

enum MHD_Result reply_json(struct req *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return reply_text(r, 500, "text/plain", "out of memory\n");
    size_t n = strlen(text);
    text[n] = '\0';
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    return queue(r, status, resp, "application/json");
}

enum MHD_Result reply_oai_error(struct req *r, int status, const char *type, const char *fmt, ...)
{
    char msg[ORCH_ERROR_MSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
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
    return reply_json(r, status, json_pack("{s:s}", "error", msg));
}

/* ---- streams ------------------------------------------------------------------------- */

struct stream {
    struct srv *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *data;
    size_t len, cap, off;
    bool done;
    _Atomic bool gone;
    int fd; /* the client's socket, to notice it leaving */
    pthread_t th;
    stream_fn run;
    void *job;
    void (*job_free)(void *);
    /* accounting, for the access log when the stream ends */
    char method[8], path[128], role[64];
    const char *endpoint;
    int role_index;
    int status;
    int64_t tok_in, tok_out, t0_ns;
};

bool stream_gone(struct stream *st)
{
    return atomic_load(&st->gone);
}

bool stream_write(struct stream *st, const char *data, size_t n)
{
    if (atomic_load(&st->gone))
        return false;
    pthread_mutex_lock(&st->lock);
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->len + n)
            cap *= 2;
        char *d = realloc(st->data, cap);
        if (!d) {
            pthread_mutex_unlock(&st->lock);
            atomic_store(&st->gone, true);
            return false;
        }
        st->data = d;
        st->cap = cap;
    }
    memcpy(st->data + st->len, data, n);
    st->len += n;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    return true;
}

void stream_account(struct stream *st, int status, int64_t tok_in, int64_t tok_out)
{
    st->status = status;
    st->tok_in = tok_in;
    st->tok_out = tok_out;
}

static void *stream_main(void *arg)
{
    struct stream *st = arg;
    st->run(st, st->job);
    pthread_mutex_lock(&st->lock);
    st->done = true;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* The client closed its end (or the socket broke). */
static bool client_left(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    pthread_mutex_lock(&st->lock);
    while (st->off == st->len && !st->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&st->cond, &st->lock, &ts);
        if (st->off == st->len && !st->done && client_left(st->fd)) {
            atomic_store(&st->gone, true);
            pthread_mutex_unlock(&st->lock);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    ssize_t n;
    if (st->off < st->len) {
        size_t k = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->data + st->off, k);
        st->off += k;
        if (st->off == st->len)
            st->off = st->len = 0;
        n = (ssize_t)k;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

static void access_log(struct srv *s, const char *method, const char *path, const char *role,
                       int role_index, const char *endpoint, int status, int64_t tok_in,
                       int64_t tok_out, int64_t t0_ns);

static void stream_free(void *cls)
{
    struct stream *st = cls;
    atomic_store(&st->gone, true); /* stops the generation at its next token */
    pthread_join(st->th, NULL);
    access_log(st->s, st->method, st->path, st->role, st->role_index, st->endpoint,
               st->status ? st->status : 499, st->tok_in, st->tok_out, st->t0_ns);
    if (st->job_free)
        st->job_free(st->job);
    pthread_cond_destroy(&st->cond);
    pthread_mutex_destroy(&st->lock);
    free(st->data);
    atomic_fetch_sub(&st->s->in_flight, 1);
    free(st);
}

enum MHD_Result reply_stream(struct req *r, const char *ctype, stream_fn run, void *job,
                             void (*job_free)(void *job))
{
    struct stream *st = calloc(1, sizeof *st);
    if (!st) {
        if (job_free)
            job_free(job);
        return reply_text(r, 500, "text/plain", "out of memory\n");
    }
    st->s = r->s;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    st->run = run;
    st->job = job;
    st->job_free = job_free;
    st->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        st->fd = ci->connect_fd;
    snprintf(st->method, sizeof st->method, "%s", r->method);
    snprintf(st->path, sizeof st->path, "%s", r->path);
    snprintf(st->role, sizeof st->role, "%s", r->role);
    st->endpoint = r->endpoint;
    st->role_index = r->role_index;
    st->t0_ns = r->t0_ns;
    st->status = 200;
    if (pthread_create(&st->th, NULL, stream_main, st) != 0) {
        if (job_free)
            job_free(job);
        pthread_cond_destroy(&st->cond);
        pthread_mutex_destroy(&st->lock);
        free(st);
        return reply_text(r, 500, "text/plain", "cannot start a thread\n");
    }
    /* the stream now counts the request in flight and logs it */
    r->streamed = true;
    atomic_fetch_add(&r->s->in_flight, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return queue(r, 200, resp, ctype);
}

/* ---- access log and counts ---------------------------------------------------------------- */

static void count_request(struct srv *s, const char *endpoint, int status)
{
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    for (; i < s->n_counts; i++)
        if (s->counts[i].status == status && strcmp(s->counts[i].endpoint, endpoint) == 0)
            break;
    if (i == s->n_counts && s->n_counts < sizeof s->counts / sizeof s->counts[0])
        s->counts[s->n_counts++] = (struct endpoint_count){endpoint, status, 0};
    if (i < s->n_counts)
        s->counts[i].n++;
    pthread_mutex_unlock(&s->lock);
}

static void access_log(struct srv *s, const char *method, const char *path, const char *role,
                       int role_index, const char *endpoint, int status, int64_t tok_in,
                       int64_t tok_out, int64_t t0_ns)
{
    double ms = (double)(srv_now_ns() - t0_ns) / 1e6;
    if (role_index >= 0) {
        struct role_metrics *m = &s->roles[role_index];
        atomic_fetch_add(status < 400 ? &m->requests_ok : &m->requests_err, 1);
        atomic_fetch_add(&m->tokens_in, tok_in);
        atomic_fetch_add(&m->tokens_out, tok_out);
        atomic_fetch_sub(&m->in_flight, 1);
    }
    count_request(s, endpoint ? endpoint : "other", status);
    struct orch_log_field f[] = {
        {"method", method, 0}, {"path", path, 0},          {"status", NULL, status},
        {"tokens_in", NULL, (double)tok_in}, {"tokens_out", NULL, (double)tok_out},
        {"ms", NULL, floor(ms * 10 + 0.5) / 10},
    };
    orch_log_event(status >= 500 ? ORCH_LOG_WARN : ORCH_LOG_INFO, role && *role ? role : NULL,
                   "http", f, sizeof f / sizeof f[0]);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)conn;
    (void)why;
    struct req *r = *con_cls;
    if (!r)
        return;
    /* a streamed request is logged (and its role released) when its stream
     * ends, which stream_free() does */
    if (!r->streamed)
        access_log(r->s, r->method, r->path, r->role, r->role_index, r->endpoint,
                   r->status ? r->status : 499, r->tok_in, r->tok_out, r->t0_ns);
    atomic_fetch_sub(&r->s->in_flight, 1);
    json_decref(r->json);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* ---- requests ------------------------------------------------------------------------ */

/* Constant-time comparison of the bearer token. */
static bool authorized(struct srv *s, struct MHD_Connection *conn)
{
    if (!s->opts.api_key || !*s->opts.api_key)
        return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return false;
    const char *got = h + 7, *want = s->opts.api_key;
    size_t gl = strlen(got), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

static bool is_openai(const char *path)
{
    return strncmp(path, "/v1/", 4) == 0;
}

static enum MHD_Result reply_error_for(struct req *r, int status, const char *msg)
{
    if (is_openai(r->path))
        return reply_oai_error(r, status,
                               status == 401 ? "authentication_error"
                               : status == 404 ? "not_found_error"
                               : status >= 500 ? "server_error" : "invalid_request_error",
                               "%s", msg);
    return reply_olm_error(r, status, "%s", msg);
}

int srv_take_model(struct req *r, enum MHD_Result *ret)
{
    /* "model" (both APIs), Ollama's older "name", the admin API's "role" */
    static const char *const keys[] = {"model", "name", "role"};
    json_t *m = NULL;
    for (size_t k = 0; k < 3 && !m; k++)
        m = json_object_get(r->json, keys[k]);
    const char *name = json_string_value(m);
    char msg[200];
    if (!name) {
        *ret = reply_error_for(r, 400, "'model' must be a string: a role (GET /v1/models or "
                                       "/api/tags lists them)");
        return -1;
    }
    int i = srv_take_role(r, name);
    if (i == -1) {
        snprintf(msg, sizeof msg, "no model '%.64s' (GET /v1/models or /api/tags lists them)", name);
        *ret = reply_error_for(r, 404, msg);
    } else if (i == -2) {
        snprintf(msg, sizeof msg, "role '%.64s' has %d requests running or waiting; try again",
                 name, r->s->opts.queue_max);
        *ret = reply_error_for(r, 503, msg);
    }
    return i < 0 ? -1 : i;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct srv *s = cls;
    struct req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
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
        /* A declared body far past the limit is refused before it is read
         * (the connection closes under the client). One a little past it is
         * read and dropped, so that clients that send before they read (most
         * do) see the 413. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) / 8 > s->opts.body_max) {
            atomic_fetch_add(&s->too_large, 1);
            char msg[96];
            snprintf(msg, sizeof msg, "request body larger than %zu bytes", s->opts.body_max);
            return reply_error_for(r, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->too_big && r->len + *upload_data_size > s->opts.body_max) {
            r->too_big = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        if (!r->too_big) {
            if (r->len + *upload_data_size + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->len + *upload_data_size + 1)
                    cap *= 2;
                char *b = realloc(r->body, cap);
                if (!b)
                    return MHD_NO;
                r->body = b;
                r->cap = cap;
            }
            memcpy(r->body + r->len, upload_data, *upload_data_size);
            r->len += *upload_data_size;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* the whole request is here */
    if (r->too_big) {
        atomic_fetch_add(&s->too_large, 1);
        char msg[96];
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", s->opts.body_max);
        return reply_error_for(r, 413, msg);
    }
    if (strcmp(url, "/health") != 0 && !authorized(s, conn)) {
        atomic_fetch_add(&s->unauthorized, 1);
        return reply_error_for(r, 401, "missing or wrong API key (Authorization: Bearer KEY)");
    }
    if (strcmp(method, "POST") == 0) {
        json_error_t je;
        if (!r->len)
            return reply_error_for(r, 400, "the request needs a JSON body");
        if (memchr(r->body, '\0', r->len))
            return reply_error_for(r, 400, "the body holds a NUL byte");
        r->json = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
        if (!r->json) {
            char msg[300];
            snprintf(msg, sizeof msg, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                     je.text);
            return reply_error_for(r, 400, msg);
        }
        if (!json_is_object(r->json))
            return reply_error_for(r, 400, "the body must be a JSON object");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return reply_error_for(r, 405, "method not allowed");
    }
    if (is_openai(url))
        return api_openai(r);
    if (strncmp(url, "/api/", 5) == 0)
        return api_ollama(r);
    return api_ops(r);
}

/* ---- the daemon --------------------------------------------------------------------------- */

/* SIGHUP: read the config again and apply it; models whose role and file
 * are unchanged stay loaded. A bad config is logged and the old one stays. */
static void reload(struct srv *s)
{
    orch_config *cfg;
    orch_error err = {0};
    int rc = orch_config_load(s->opts.config_path, &cfg, &err);
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

int orch_server_run(const struct orch_server_opts *in)
{
    struct srv *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "orchestra serve: out of memory\n");
        return 1;
    }
    s->opts = *in;
    pthread_mutex_init(&s->lock, NULL);
    s->started_unix = (int64_t)time(NULL);
    orch_error err = {0};
    orch_config *cfg;
    int rc = orch_config_load(in->config_path, &cfg, &err);
    if (rc) {
        fprintf(stderr, "orchestra serve: %s\n", err.msg);
        free(s);
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
    rc = orch_open(cfg, &op, &s->o, &err);
    orch_config_free(cfg);
    if (rc) {
        fprintf(stderr, "orchestra serve: %s\n", err.msg);
        free(s);
        return 3;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)in->port)};
    if (inet_pton(AF_INET, in->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "orchestra serve: --host %s: expected an IPv4 address\n", in->host);
        orch_close(s->o);
        free(s);
        return 2;
    }
    s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                  MHD_USE_ITC | MHD_USE_POLL,
                              0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, &addr,
                              MHD_OPTION_CONNECTION_LIMIT, in->conn_max,
                              MHD_OPTION_CONNECTION_TIMEOUT, in->timeout_s,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, "orchestra serve: cannot listen on %s:%d: %s\n", in->host, in->port,
                strerror(errno));
        orch_close(s->o);
        free(s);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : in->port;
    {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        struct orch_log_field f[] = {{"host", in->host, 0}, {"port", NULL, port},
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
    int sig = 0;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP)
            reload(s);
    }
    /* stop accepting, let requests in flight finish (bounded), unload */
    atomic_store(&s->stopping, true);
    int lfd = (int)MHD_quiesce_daemon(s->mhd);
    if (lfd >= 0)
        close(lfd);
    int64_t deadline = srv_now_ns() + (int64_t)(in->drain_s * 1e9);
    while (atomic_load(&s->in_flight) > 0 && srv_now_ns() < deadline)
        usleep(10000);
    int64_t left = atomic_load(&s->in_flight);
    struct orch_log_field f[] = {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM", 0},
                                 {"requests_cut", NULL, (double)left}};
    orch_log_event(ORCH_LOG_INFO, NULL, "stopping", f, 2);
    MHD_stop_daemon(s->mhd);
    orch_close(s->o);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return 0;
}
