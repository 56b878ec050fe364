/*
 * srv.h — the daemon's parts, shared inside server/. Built on the public
 * library header only.
 *
 * DESIGN
 * libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * so a handler may block on a load or a whole generation; the connection
 * cap bounds the threads. A request's state (`struct req`) lives from the
 * first call of the access handler to MHD's completion callback, which
 * writes the access log line and the metrics. Streaming responses (SSE for
 * OpenAI, NDJSON for Ollama) are produced by a thread of their own into a
 * buffer that MHD's content reader drains; the reader notices a client that
 * went away (poll on the socket) and the generation's text callback then
 * returns false, so the lease comes back within a token.
 */
#ifndef ORCH_SRV_H
#define ORCH_SRV_H

#include <orchestra.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define SRV_MAX_ROLES 256

/* Per-role counters for /metrics, by role name: a role keeps its slot for
 * the daemon's life, across reloads. */
struct role_metrics {
    char name[64];         /* "" = free; written once under srv.lock */
    _Atomic int64_t requests_ok, requests_err;
    _Atomic int64_t tokens_in, tokens_out;
    _Atomic int64_t tokens_cached; /* prompt tokens prefix reuse did not read again */
    _Atomic int64_t in_flight; /* requests running or waiting on this role */
};

struct srv {
    struct orch_server_opts opts;
    orch_orchestra *o;
    struct MHD_Daemon *mhd;
    int64_t started_unix;
    _Atomic int64_t in_flight;   /* requests not yet completed */
    _Atomic bool stopping;
    struct role_metrics roles[SRV_MAX_ROLES];
    /* requests by endpoint and status class, for /metrics */
    pthread_mutex_t lock;
    struct endpoint_count {
        const char *endpoint;
        int status;
        int64_t n;
    } counts[128];
    size_t n_counts;
    _Atomic int64_t unauthorized, too_large;
};

/* One HTTP request. */
struct req {
    struct srv *s;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    char *body;
    size_t len, cap;
    bool too_big;
    json_t *json;          /* the parsed body of a POST */
    int64_t t0_ns;
    const char *endpoint;  /* for metrics and the log: "/v1/chat/completions" */
    int role_index;        /* -1 = none */
    char role[64];
    int status;
    int64_t tok_in, tok_out;
    bool streamed;         /* the stream logs and counts when it ends */
};

/* ---- http.c ---------------------------------------------------------------------- */

int64_t srv_now_ns(void);

/* Replies; each returns MHD_YES/MHD_NO for the access handler. */
enum MHD_Result reply_json(struct req *r, int status, json_t *j); /* steals j */
enum MHD_Result reply_text(struct req *r, int status, const char *ctype, const char *text);
/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}} */
enum MHD_Result reply_oai_error(struct req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Ollama's: {"error": "message"} */
enum MHD_Result reply_olm_error(struct req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The HTTP status for a library error code. */
int status_for(int code);

/* A streamed response: `run` runs on a thread of its own and writes with
 * stream_write(); the stream ends when it returns. */
struct stream;
typedef void (*stream_fn)(struct stream *st, void *job);
enum MHD_Result reply_stream(struct req *r, const char *ctype, stream_fn run, void *job,
                             void (*job_free)(void *job));
/* Appends to the response. Returns false once the client has gone: stop. */
bool stream_write(struct stream *st, const char *data, size_t n);
bool stream_gone(struct stream *st);
/* The request's accounting, written by the producer before it returns. */
void stream_account(struct stream *st, int status, int64_t tok_in, int64_t tok_out);

/* Takes the role the request's JSON names ("model", "name" or "role") with
 * srv_take_role; on failure replies (400, 404, 503 in the API's error shape)
 * into *ret and returns -1. */
int srv_take_model(struct req *r, enum MHD_Result *ret);

/* The metrics slot of the role a request names (a role's name or alias),
 * its canonical name in canon[64]; -1 when there is no such role. */
int srv_role(struct srv *s, const char *name, char *canon);

/* Takes a place for the request on the role `name`: its index, -1 for no
 * such role, -2 when the role already has queue_max requests running or
 * waiting (answer 503). The place is given back when the request is logged. */
int srv_take_role(struct req *r, const char *name);

/* ---- the APIs ---------------------------------------------------------------------- */

enum MHD_Result api_openai(struct req *r);  /* /v1/... */
enum MHD_Result api_ollama(struct req *r);  /* /api/... */
enum MHD_Result api_ops(struct req *r);     /* /health, /metrics, /admin/... */

/* Shared by the APIs: a generation request's parameters from JSON values;
 * each returns 0 or fills msg and returns -1. */
int json_float(json_t *v, const char *name, float lo, float hi, float *out, char *msg, size_t cap);
int json_int(json_t *v, const char *name, long long lo, long long hi, long long *out, char *msg,
             size_t cap);
/* stop: a string or an array of strings (at most 16), kept in stops[]. */
int json_stops(json_t *v, const char **stops, size_t *n, char *msg, size_t cap);

const char *finish_openai(enum orch_finish f);

/* ---- gen.c: one generation, shared by the APIs ------------------------------------ */

struct gen_job {
    struct srv *s;
    json_t *keep;          /* a reference to the request's JSON: the strings below are its */
    char role[64];
    int role_index;
    bool chat;
    const char *prompt;
    struct orch_chat_message *msgs;
    size_t n_msgs;
    struct orch_gen_params p;
    const char *stops[16];
    /* streaming: each piece of text goes to on_piece (return false to stop) */
    struct stream *st;
    bool (*on_piece)(struct gen_job *j, const char *text, size_t n);
    void *api;             /* the API's own state for formatting; malloc'd, freed with the job */
    int64_t t0_ns;
    /* results */
    int rc;
    orch_error err;
    struct orch_gen_result res;
    double total_ms;
};

/* A job for the request's role (taken with srv_take_role), the request's
 * JSON kept, with api_size zeroed bytes of API state in j->api. Returns
 * NULL when out of memory. */
struct gen_job *gen_new(struct req *r, size_t api_size);
void gen_free(void *job);
/* Runs the generation (or chat) with the job's params. */
void gen_run(struct gen_job *j);
/* Embeddings of `in` (a string, or when arrays are allowed an array of 1 to
 * 2048 non-empty strings) with the request's role. Returns 0 with out filled
 * (out->v: n x dim floats, malloc'd) and r->tok_in set, or -1 with *status
 * and msg. */
struct embedded {
    float *v;
    int32_t dim;
    size_t n;
    int64_t n_tokens;
};
int srv_embed(struct req *r, json_t *in, bool arrays, struct embedded *out, int *status,
              char *msg, size_t cap);

/* Chat messages from a JSON array of {role, content} (content: a string, or
 * OpenAI's array of {type: "text", text} parts joined). 0, or -1 with msg. */
int gen_messages(struct gen_job *j, json_t *messages, char *msg, size_t cap);

/* Base64 of n floats (little-endian float32), malloc'd, NUL-terminated. */
char *base64_floats(const float *v, size_t n);

/* RFC 3339 UTC time with nanoseconds, as Ollama writes it. */
void rfc3339_now(char *buf, size_t cap);

#endif /* ORCH_SRV_H */
