/*
 * pull.h — Ollama's /api/pull on roles: a role's file fetched from the
 * source its config section names (source = URL, sha256 = its digest).
 */
#ifndef ORCH_SRV_PULL_H
#define ORCH_SRV_PULL_H

/* libcurl's process-wide state. pull_global_init: 0, or -1 when libcurl
 * cannot start (then /api/pull answers 500). Threads: the daemon's main
 * thread, before any other thread starts (init) and after they all
 * stopped (free). */
int pull_global_init(void);
void pull_global_free(void);

#endif /* ORCH_SRV_PULL_H */
