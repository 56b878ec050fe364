/*
 * ops.c — operations: /health, /metrics (Prometheus text), /admin/load and
 * /admin/unload of a role.
 */
#include "api.h"
#include "reply.h"
#include "roles.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct text {
    char *d;
    size_t len, cap;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->d ? t->d + t->len : NULL, t->d ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (t->d && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *d = realloc(t->d, cap);
        if (!d)
            return;
        t->d = d;
        t->cap = cap;
    }
}

/* GET /metrics */
/* A Prometheus label value: backslash, quote and newline escaped, cut
 * whole (UTF-8) to fit out[cap]. */
static void label_escape(const char *s, char *out, size_t cap)
{
    size_t k = 0;
    for (; *s && k + 3 < cap; s++) {
        if (*s == '\\' || *s == '"')
            out[k++] = '\\', out[k++] = *s;
        else if (*s == '\n')
            out[k++] = '\\', out[k++] = 'n';
        else
            out[k++] = *s;
    }
    while (k && ((unsigned char)out[k - 1] & 0xC0) == 0x80 && *s)
        k--; /* a character cut at the end goes whole */
    if (k && (unsigned char)out[k - 1] >= 0xC0 && *s)
        k--;
    out[k] = 0;
}

static enum MHD_Result metrics(struct req *r)
{
    struct srv *s = r->s;
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    orch_error err;
    if (orch_status(s->o, &st, &n, &b, &err) != ORCH_OK)
        return reply_text(r, 503, "text/plain", "closing\n");
    struct text t = {0};
    add(&t, "# HELP orchestra_requests_total HTTP requests by endpoint and status.\n"
            "# TYPE orchestra_requests_total counter\n");
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_counts; i++)
        add(&t, "orchestra_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n",
            s->counts[i].endpoint, s->counts[i].status, (long long)s->counts[i].n);
    pthread_mutex_unlock(&s->lock);
    add(&t, "# HELP orchestra_role_requests_total Requests by role and result.\n"
            "# TYPE orchestra_role_requests_total counter\n");
    for (size_t i = 0; i < n; i++) {
        struct role_metrics *m = srv_role_metrics(s, st[i].role);
        add(&t, "orchestra_role_requests_total{role=\"%s\",result=\"ok\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->requests_ok) : 0));
        add(&t, "orchestra_role_requests_total{role=\"%s\",result=\"error\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->requests_err) : 0));
    }
    add(&t, "# HELP orchestra_tokens_total Tokens in (prompt) and out (generated) by role.\n"
            "# TYPE orchestra_tokens_total counter\n");
    for (size_t i = 0; i < n; i++) {
        struct role_metrics *m = srv_role_metrics(s, st[i].role);
        add(&t, "orchestra_tokens_total{role=\"%s\",direction=\"in\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->tokens_in) : 0));
        add(&t, "orchestra_tokens_total{role=\"%s\",direction=\"out\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->tokens_out) : 0));
    }
    add(&t, "# HELP orchestra_prompt_tokens_cached_total Prompt tokens not evaluated again: "
            "an earlier request left them in the sequence's cells (prefix reuse), by role.\n"
            "# TYPE orchestra_prompt_tokens_cached_total counter\n");
    for (size_t i = 0; i < n; i++) {
        struct role_metrics *m = srv_role_metrics(s, st[i].role);
        add(&t, "orchestra_prompt_tokens_cached_total{role=\"%s\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->tokens_cached) : 0));
    }
    add(&t, "# HELP orchestra_requests_waiting Requests running or waiting, by role.\n"
            "# TYPE orchestra_requests_waiting gauge\n");
    for (size_t i = 0; i < n; i++) {
        struct role_metrics *m = srv_role_metrics(s, st[i].role);
        add(&t, "orchestra_requests_waiting{role=\"%s\"} %lld\n", st[i].role,
            (long long)(m ? atomic_load(&m->in_flight) : 0));
    }
    add(&t, "# HELP orchestra_leases Leases out on the role's model.\n"
            "# TYPE orchestra_leases gauge\n");
    for (size_t i = 0; i < n; i++)
        add(&t, "orchestra_leases{role=\"%s\"} %lld\n", st[i].role, (long long)st[i].n_leases);
    add(&t, "# HELP orchestra_worker_deaths_total Deaths of the worker processes that ran the "
            "role's file (the last cause in orchestra_worker_fault).\n"
            "# TYPE orchestra_worker_deaths_total counter\n");
    for (size_t i = 0; i < n; i++)
        add(&t, "orchestra_worker_deaths_total{role=\"%s\"} %d\n", st[i].role, st[i].n_faults);
    add(&t, "# HELP orchestra_worker_fault 1 for the last cause of a worker's death, by role; "
            "refused=\"1\" when the file is refused until it changes.\n"
            "# TYPE orchestra_worker_fault gauge\n");
    for (size_t i = 0; i < n; i++) {
        if (!st[i].n_faults)
            continue;
        char cause[sizeof st[i].fault * 2];
        label_escape(st[i].fault, cause, sizeof cause);
        add(&t, "orchestra_worker_fault{role=\"%s\",refused=\"%d\",cause=\"%s\"} 1\n",
            st[i].role, st[i].refused, cause);
    }
    add(&t, "# HELP orchestra_model_loaded 1 when the role's model is loaded.\n"
            "# TYPE orchestra_model_loaded gauge\n");
    for (size_t i = 0; i < n; i++)
        add(&t, "orchestra_model_loaded{role=\"%s\"} %d\n", st[i].role,
            st[i].state == ORCH_STATE_READY);
    add(&t, "# HELP orchestra_memory_used_bytes Bytes charged to loaded and loading models.\n"
            "# TYPE orchestra_memory_used_bytes gauge\norchestra_memory_used_bytes %llu\n",
        (unsigned long long)b.used);
    add(&t, "# HELP orchestra_memory_budget_bytes The memory budget (0 = none).\n"
            "# TYPE orchestra_memory_budget_bytes gauge\norchestra_memory_budget_bytes %llu\n",
        (unsigned long long)b.budget);
    add(&t, "# HELP orchestra_evictions_total Models unloaded to make room.\n"
            "# TYPE orchestra_evictions_total counter\norchestra_evictions_total %lld\n",
        (long long)b.n_evictions);
    add(&t, "# HELP orchestra_unauthorized_total Requests refused for a missing or wrong key.\n"
            "# TYPE orchestra_unauthorized_total counter\norchestra_unauthorized_total %lld\n",
        (long long)atomic_load(&s->unauthorized));
    add(&t, "# HELP orchestra_body_too_large_total Requests refused for their size.\n"
            "# TYPE orchestra_body_too_large_total counter\norchestra_body_too_large_total %lld\n",
        (long long)atomic_load(&s->too_large));
    free(st);
    if (!t.d)
        return reply_text(r, 500, "text/plain", "out of memory\n");
    enum MHD_Result ret = reply_text(r, 200, "text/plain; version=0.0.4", t.d);
    free(t.d);
    return ret;
}

/* POST /admin/load (arg 1) and /admin/unload (arg 0) */
static enum MHD_Result admin(struct req *r)
{
    bool load = r->route->arg;
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    const char *role = r->ref.name;
    orch_error err;
    int rc;
    int64_t t0 = srv_now_ns();
    if (load) {
        const char *roles[] = {role};
        rc = orch_preload(r->s->o, roles, 1, &err);
    } else {
        rc = orch_unload(r->s->o, role, &err);
    }
    if (rc)
        return reply_olm_error(r, status_for(rc), "%s", err.msg);
    return reply_json(r, 200, json_pack("{s:s, s:s, s:f}", "role", role, "status",
                                        load ? "loaded" : "unloading", "ms",
                                        (double)(srv_now_ns() - t0) / 1e6));
}

/* {"roles": [...], "memory": {...}}: o's status as `ps --json` prints it;
 * s: the daemon's (paths as it shows them), NULL: full paths. */
static json_t *status_doc(orch_orchestra *o, const struct srv *s, orch_error *err)
{
    struct orch_role_status *st;
    size_t n;
    struct orch_budget_status b;
    if (orch_status(o, &st, &n, &b, err))
        return NULL;
    json_t *roles = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *aliases = json_array();
        for (const char *a = st[i].aliases, *e; *a; a = *e ? e + 1 : e) {
            e = a + strcspn(a, ",");
            json_array_append_new(aliases, json_stringn(a, (size_t)(e - a)));
        }
        json_t *one = json_pack(
            "{s:s, s:o, s:s, s:s, s:s, s:I, s:b, s:I, s:i, s:b, s:I, s:I, s:i}", "role",
            st[i].role, "aliases", aliases, "model_role", st[i].model_role, "path",
            s ? srv_file_name(s, st[i].path) : st[i].path, "state", orch_state_name(st[i].state),
            "bytes", (json_int_t)st[i].bytes, "bytes_estimated", st[i].bytes_estimated, "leases",
            (json_int_t)st[i].n_leases, "n_parallel", st[i].n_parallel, "pinned", st[i].pinned,
            "idle_ms", (json_int_t)st[i].idle_ms, "unload_in_ms", (json_int_t)st[i].unload_in_ms,
            "n_ctx", st[i].n_ctx);
        if (one && st[i].last_error[0])
            json_object_set_new(one, "error", json_string(st[i].last_error));
        json_array_append_new(roles, one);
    }
    free(st);
    return json_pack("{s:o, s:{s:I, s:I, s:I}}", "roles", roles, "memory", "budget",
                     (json_int_t)b.budget, "used", (json_int_t)b.used, "evictions",
                     (json_int_t)b.n_evictions);
}

char *orch_server_status_json(orch_orchestra *o, orch_error *err)
{
    json_t *doc = status_doc(o, NULL, err);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text && err && !err->code) {
        err->code = ORCH_ENOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory");
    }
    return text;
}

/* GET /admin/status: the roles and the memory, as `orchestra ps --json`
 * prints them (the command asks a running daemon this), and the pid. */
static enum MHD_Result status(struct req *r)
{
    orch_error err = {0};
    json_t *doc = status_doc(r->s->o, r->s, &err);
    if (!doc)
        return reply_olm_error(r, err.code ? status_for(err.code) : 500, "%s",
                               err.code ? err.msg : "out of memory");
    json_object_set_new(doc, "pid", json_integer((json_int_t)getpid()));
    return reply_json(r, 200, doc);
}

/* GET /health (no key needed) */
static enum MHD_Result health(struct req *r)
{
    return reply_json(r, 200, json_pack("{s:s}", "status",
                                        atomic_load(&r->s->stopping) ? "stopping" : "ok"));
}

/* GET / */
static enum MHD_Result root(struct req *r)
{
    return reply_text(r, 200, "text/plain", "Orchestra is running\n");
}

int ops_routes(struct routes *t)
{
    return routes_add(t, "GET", "/health", health, NULL, 0, ROUTE_PUBLIC) ||
           routes_add(t, "GET", "/metrics", metrics, NULL, 0, 0) ||
           routes_add(t, "POST", "/admin/load", admin, NULL, 1, 0) ||
           routes_add(t, "POST", "/admin/unload", admin, NULL, 0, 0) ||
           routes_add(t, "GET", "/admin/status", status, NULL, 0, 0) ||
           routes_add(t, "GET", "/", root, NULL, 0, 0)
               ? -1
               : 0;
}
