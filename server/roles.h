/*
 * roles.h — a request's role: the model name its JSON gives, resolved once
 * (orch_role_lookup: an alias to its role, the role's defaults) into
 * r->ref, the role's metrics slot, and a place in its queue.
 */
#ifndef ORCH_SRV_ROLES_H
#define ORCH_SRV_ROLES_H

#include "state.h"

/* Resolves an API's model name into *out: a role or an alias, or Ollama's
 * NAME:latest for the role NAME. Returns ORCH_OK or ORCH_ENOROLE. Threads:
 * any. */
int srv_lookup_role(struct srv *s, const char *name, struct orch_role_ref *out);

/* Takes the role the request's JSON names ("model", "name" or "role"):
 * resolves it into r->ref and r->role_index and takes a queue place (given
 * back when the request is logged, access.c). On failure replies (400, 404,
 * 503 in the API's error shape) into *ret and returns -1; else returns the
 * metrics slot. */
int srv_take_model(struct req *r, enum MHD_Result *ret);

/* The metrics slot of a role by its canonical name (made on first use;
 * slots are never given back), or -1 when all are taken. Threads: any. */
int srv_role_slot(struct srv *s, const char *canon);

/* The counters of the role named `canon`, or NULL when it has served
 * nothing yet. Threads: any. */
struct role_metrics *srv_role_metrics(struct srv *s, const char *canon);

#endif /* ORCH_SRV_ROLES_H */
