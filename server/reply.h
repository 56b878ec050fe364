/*
 * reply.h — the bottom of server/: replies in each API's shape, the HTTP
 * status of a library error, JSON value checks, and the small helpers every
 * layer uses (clock, RFC 3339 time, base64). Knows no route, API or stream.
 */
#ifndef ORCH_SRV_REPLY_H
#define ORCH_SRV_REPLY_H

#include "state.h"

#include <time.h>

/* Monotonic clock, nanoseconds. */
int64_t srv_now_ns(void);

/* CLOCK_REALTIME ms milliseconds from now, for pthread_cond_timedwait on a
 * default condition variable. */
struct timespec srv_realtime_after_ms(int64_t ms);

/* Starts t's thread running fn(arg), its lock and condition made first.
 * Returns 0, or -1 when no thread could start. Threads: the main thread. */
int srv_thread_start(struct srv_thread *t, void *(*fn)(void *), void *arg);
/* Sets t->stop, wakes the thread and joins it, then frees the lock and the
 * condition; nothing when it never started. Threads: the main thread. */
void srv_thread_stop(struct srv_thread *t);

/* The client's socket of a connection, or -1. */
int srv_conn_fd(struct MHD_Connection *conn);

/* RFC 3339 UTC time with nanoseconds, as Ollama writes it. */
void rfc3339_now(char *buf, size_t cap);

/* Base64 of n floats (little-endian float32), malloc'd, NUL-terminated;
 * NULL when out of memory. */
char *base64_floats(const float *v, size_t n);

/* Queues resp with its content type and the headers its status calls for
 * (Retry-After on 503, WWW-Authenticate on 401, Allow on 405 from r->allow); records r->status and
 * destroys resp. Returns MHD's answer for the access handler (MHD_NO when
 * resp is NULL). */
enum MHD_Result reply_queue(struct req *r, int status, struct MHD_Response *resp,
                            const char *ctype);

/* Replies; each returns MHD_YES/MHD_NO for the access handler. */
enum MHD_Result reply_json(struct req *r, int status, json_t *j); /* steals j */
enum MHD_Result reply_text(struct req *r, int status, const char *ctype, const char *text);

/* 204 to an OPTIONS request: Allow with the path's methods, and for an
 * origin CORS allows, the Access-Control-Allow-* answers to its preflight.
 * Threads: the request's. */
enum MHD_Result reply_preflight(struct req *r);
/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}} */
enum MHD_Result reply_oai_error(struct req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ollama's (and the operations'): {"error": "message"} */
enum MHD_Result reply_olm_error(struct req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error in the shape of the API the path belongs to (/v1/...: OpenAI's,
 * with the type its status calls for; else Ollama's). */
enum MHD_Result reply_error(struct req *r, int status, const char *msg);

/* What a client is shown of a model file's path: its name, or the whole
 * path with --verbose-errors. Points into path. */
const char *srv_file_name(const struct srv *s, const char *path);

/* The HTTP status for a library error code. */
int status_for(int code);

/* JSON value checks for a request's parameters; each returns 0 (absent or
 * null: *out untouched) or fills msg and returns -1. */
int json_float(json_t *v, const char *name, float lo, float hi, float *out, char *msg, size_t cap);
int json_int(json_t *v, const char *name, long long lo, long long hi, long long *out, char *msg,
             size_t cap);
/* kind: 'b' boolean, 's' string, 'o' object. */
int json_kind(json_t *v, const char *name, char kind, char *msg, size_t cap);
#define SRV_STOPS_MAX 16
/* stop: a string or an array of at most SRV_STOPS_MAX strings, kept in
 * stops[] (borrowed from v). */
int json_stops(json_t *v, const char **stops, size_t *n, char *msg, size_t cap);

#endif /* ORCH_SRV_REPLY_H */
