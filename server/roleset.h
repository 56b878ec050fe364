/*
 * roleset.h — the daemon's roles: the config file's, a role per -m file,
 * and the ones clients created (/api/create, /api/copy), kept in a file
 * beside the config.
 */
#ifndef ORCH_SRV_ROLESET_H
#define ORCH_SRV_ROLESET_H

#include "state.h"

/* The config the daemon runs: the config file's roles, then a role per -m
 * file (named after the file), then the created ones (the file from
 * srv_created_path). Returns ORCH_OK with *out (the caller frees it), or an
 * error naming the file. Threads: any. */
int srv_roles_config(const struct orch_server_opts *o, orch_config **out, orch_error *err);

/* Where the created roles are kept: "CONFIG.created" beside the config.
 * Returns 0, or -1 when the daemon has no config file (nowhere to keep
 * them). */
int srv_created_path(const struct orch_server_opts *o, char *out, size_t cap);

/* One key of a created role: [section] key = value. */
struct created_key {
    char section[ORCH_ROLE_NAME_MAX];
    char key[32];
    char value[1024];
};

/* The created roles' keys from path (none when it does not exist), in
 * file order, malloc'd into *out. Returns ORCH_OK or an error naming the
 * file and line. */
int srv_created_read(const char *path, struct created_key **out, size_t *n, orch_error *err);

/* Writes the keys to path whole (a temporary file renamed over it).
 * Returns ORCH_OK, or ORCH_EACCES / ORCH_EIO naming the folder and why
 * (read-only, no space). */
int srv_created_write(const char *path, const struct created_key *k, size_t n, orch_error *err);

/* Builds the config again and applies it to s's orchestra (as a SIGHUP
 * does): roles come and go, models whose role and file are unchanged stay
 * loaded. Threads: any (reconfigures are serialized by the library). */
int srv_roles_apply(struct srv *s, orch_error *err);

#endif /* ORCH_SRV_ROLESET_H */
