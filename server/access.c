/*
 * access.c — the access log line and the counts behind /metrics.
 *
 * DESIGN
 * Endpoint counts live in s->counts under s->lock (a short table: one row
 * per endpoint and status seen). Role counters are atomics in s->roles[],
 * slots that roles.c hands out and never takes back.
 */
#include "access.h"
#include "reply.h"

#include <math.h>
#include <string.h>

static void count_request(struct srv *s, const char *endpoint, int status)
{
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    for (; i < s->n_counts; i++)
        if (s->counts[i].status == status && strcmp(s->counts[i].endpoint, endpoint) == 0)
            break;
    if (i == s->n_counts && s->n_counts < SRV_MAX_COUNTS)
        s->counts[s->n_counts++] = (struct endpoint_count){endpoint, status, 0};
    if (i < s->n_counts)
        s->counts[i].n++;
    pthread_mutex_unlock(&s->lock);
}

struct access access_of(const struct req *r)
{
    return (struct access){.method = r->method,
                           .path = r->path,
                           .role = r->ref.name,
                           .endpoint = r->endpoint,
                           .role_index = r->role_index,
                           .status = r->status,
                           .tok_in = r->tok_in,
                           .tok_out = r->tok_out,
                           .t0_ns = r->t0_ns};
}

void access_done(struct srv *s, const struct access *a)
{
    int status = a->status ? a->status : 499;
    double ms = (double)(srv_now_ns() - a->t0_ns) / 1e6;
    if (a->role_index >= 0) {
        struct role_metrics *m = &s->roles[a->role_index];
        atomic_fetch_add(status < 400 ? &m->requests_ok : &m->requests_err, 1);
        atomic_fetch_add(&m->tokens_in, a->tok_in);
        atomic_fetch_add(&m->tokens_out, a->tok_out);
        atomic_fetch_sub(&m->in_flight, 1); /* the queue place roles.c took */
    }
    count_request(s, a->endpoint ? a->endpoint : "other", status);
    struct orch_log_field f[] = {
        {"method", a->method, 0},
        {"path", a->path, 0},
        {"status", NULL, status},
        {"tokens_in", NULL, (double)a->tok_in},
        {"tokens_out", NULL, (double)a->tok_out},
        {"ms", NULL, floor(ms * 10 + 0.5) / 10},
    };
    orch_log_event(status >= 500 ? ORCH_LOG_WARN : ORCH_LOG_INFO,
                   a->role && *a->role ? a->role : NULL, "http", f, sizeof f / sizeof f[0]);
}
