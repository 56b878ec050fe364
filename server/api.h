/*
 * api.h — the API handlers, as the daemon registers them: each file adds
 * its routes to the table at start. Each returns 0, or -1 when the table
 * is full.
 */
#ifndef ORCH_SRV_API_H
#define ORCH_SRV_API_H

#include "route.h"

int openai_routes(struct routes *t); /* openai.c: /v1/... */
int ollama_routes(struct routes *t); /* ollama.c: /api/... */
int responses_routes(struct routes *t); /* responses.c: /v1/responses */
int manage_routes(struct routes *t); /* manage.c: /api/create, /api/copy, /api/delete */
int pull_routes(struct routes *t);   /* pull.c: /api/pull */
int ops_routes(struct routes *t);    /* ops.c: /, /health, /metrics, /admin/... */

#endif /* ORCH_SRV_API_H */
