/*
 * roles.c — a request's role, resolved once, and its place in the role's
 * queue (at most queue_max requests running or waiting per role).
 */
#include "roles.h"
#include "reply.h"

#include <stdio.h>
#include <string.h>

/* With s->lock held: a slot whose role the config no longer has and that
 * nothing waits on, its counters zeroed for another role; -1 if none. */
static int reuse_slot(struct srv *s)
{
    for (int i = 0; i < SRV_MAX_ROLES; i++) {
        struct role_metrics *m = &s->roles[i];
        struct orch_role_ref ref;
        if (atomic_load(&m->in_flight) || orch_role_lookup(s->o, m->name, &ref, NULL) == ORCH_OK)
            continue;
        atomic_store(&m->requests_ok, 0);
        atomic_store(&m->requests_err, 0);
        atomic_store(&m->tokens_in, 0);
        atomic_store(&m->tokens_out, 0);
        atomic_store(&m->tokens_cached, 0);
        return i;
    }
    return -1;
}

int srv_role_slot(struct srv *s, const char *canon)
{
    pthread_mutex_lock(&s->lock);
    int i = 0;
    for (; i < SRV_MAX_ROLES && s->roles[i].name[0]; i++)
        if (strcmp(s->roles[i].name, canon) == 0)
            break;
    if (i == SRV_MAX_ROLES) /* every slot named: roles that came and went over reloads */
        i = reuse_slot(s);
    if (i >= 0 && strcmp(s->roles[i].name, canon) != 0)
        snprintf(s->roles[i].name, sizeof s->roles[i].name, "%s", canon);
    pthread_mutex_unlock(&s->lock);
    return i;
}

struct role_metrics *srv_role_metrics(struct srv *s, const char *canon)
{
    struct role_metrics *m = NULL;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < SRV_MAX_ROLES && s->roles[i].name[0] && !m; i++)
        if (strcmp(s->roles[i].name, canon) == 0)
            m = &s->roles[i];
    pthread_mutex_unlock(&s->lock);
    return m;
}

int srv_lookup_role(struct srv *s, const char *name, struct orch_role_ref *out)
{
    orch_error err;
    int rc = orch_role_lookup(s->o, name, out, &err);
    size_t n = strlen(name);
    if (rc == ORCH_ENOROLE && n > 7 && n < 256 && strcmp(name + n - 7, ":latest") == 0) {
        /* Ollama's names are name:tag, and a name without a tag means
         * :latest: "coder:latest" is the role coder, unless a role has the
         * whole name */
        char bare[256];
        snprintf(bare, sizeof bare, "%.*s", (int)(n - 7), name);
        rc = orch_role_lookup(s->o, bare, out, &err);
    }
    return rc;
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
        *ret = reply_error(r, 400, "'model' must be a string: a role (GET /v1/models or "
                                   "/api/tags lists them)");
        return -1;
    }
    int i = -1;
    int rc = srv_lookup_role(r->s, name, &r->ref);
    if (rc == ORCH_OK)
        i = srv_role_slot(r->s, r->ref.name);
    if (i < 0) {
        r->ref.name[0] = '\0';
        snprintf(msg, sizeof msg, "no model '%.64s' (GET /v1/models or /api/tags lists them)",
                 name);
        *ret = reply_error(r, 404, msg);
        return -1;
    }
    struct role_metrics *rm = &r->s->roles[i];
    if (atomic_fetch_add(&rm->in_flight, 1) >= r->s->opts.queue_max) {
        atomic_fetch_sub(&rm->in_flight, 1);
        snprintf(msg, sizeof msg, "role '%.64s' has %d requests running or waiting; try again",
                 name, r->s->opts.queue_max);
        r->ref.name[0] = '\0';
        *ret = reply_error(r, 503, msg);
        return -1;
    }
    r->role_index = i;
    return i;
}
