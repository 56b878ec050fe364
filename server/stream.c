/*
 * stream.c — streamed responses: a producer thread, a buffer, and MHD's
 * content reader draining it.
 *
 * DESIGN
 * st->lock guards the buffer (data, len, off), done and the condition
 * variable the reader waits on; `gone` is atomic (set by the reader or the
 * free, read by the producer without the lock). The reader waits at most
 * 20 ms at a time, and between waits polls the client's socket, so a client
 * whose socket was reset is seen within 20 ms even while the producer writes
 * nothing (a long prompt); one that closed is seen at the next write, and
 * one that half-closed is served to the end. MHD calls stream_free() once
 * the response is done or
 * the connection is gone; it marks the stream gone, joins the producer,
 * then logs the request.
 */
#include "access.h"
#include "reply.h"
#include "stream.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_POLL_MS 20

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
    /* accounting, for the access log when the stream ends: the request's
     * record, its strings copied here (MHD frees the request's) */
    struct access acc;
    char method[8], path[128], role[ORCH_ROLE_NAME_MAX];
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

bool stream_ndjson(struct stream *st, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return false;
    bool ok = stream_write(st, text, strlen(text)) && stream_write(st, "\n", 1);
    free(text);
    return ok;
}

void stream_account(struct stream *st, int status, int64_t tok_in, int64_t tok_out)
{
    st->acc.status = status;
    st->acc.tok_in = tok_in;
    st->acc.tok_out = tok_out;
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

/* The socket broke or hung up (a reset, or both ends shut). A client that
 * only finished sending (a half-close, or a close whose reset our next
 * write provokes) is still written to: MHD's failing write ends the stream
 * then. */
static bool client_left(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    pthread_mutex_lock(&st->lock);
    while (st->off == st->len && !st->done) {
        struct timespec ts = srv_realtime_after_ms(STREAM_POLL_MS);
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

static void stream_free(void *cls)
{
    struct stream *st = cls;
    /* MHD frees a stream it has not read to its end when the client left:
     * the producer still running, or bytes it wrote never sent */
    pthread_mutex_lock(&st->lock);
    bool left = !st->done || st->len > st->off;
    pthread_mutex_unlock(&st->lock);
    atomic_store(&st->gone, true); /* stops the generation at its next token */
    pthread_join(st->th, NULL);
    if (left && st->acc.status < 400)
        st->acc.status = 499; /* nginx's "client closed request" */
    access_done(st->s, &st->acc);
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
    st->fd = srv_conn_fd(r->conn);
    snprintf(st->method, sizeof st->method, "%s", r->method);
    snprintf(st->path, sizeof st->path, "%s", r->path);
    snprintf(st->role, sizeof st->role, "%s", r->ref.name);
    st->acc = access_of(r);
    st->acc.method = st->method;
    st->acc.path = st->path;
    st->acc.role = st->role;
    st->acc.status = 200;
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
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return reply_queue(r, 200, resp, ctype);
}
