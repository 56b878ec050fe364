/*
 * roleset.c — the daemon's roles: the config file, -m files, and the roles
 * clients created, kept in "CONFIG.created" (an INI file of the same keys,
 * read with libinih, written whole and renamed into place).
 */
#include "roleset.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int srv_created_path(const struct orch_server_opts *o, char *out, size_t cap)
{
    if (!o->config_path)
        return -1;
    int k = snprintf(out, cap, "%s.created", o->config_path);
    return k > 0 && (size_t)k < cap ? 0 : -1;
}

struct keys {
    struct created_key *k;
    size_t n, cap;
    bool oom;
};

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct keys *ks = user;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? 2 * ks->cap : 16;
        struct created_key *k = realloc(ks->k, cap * sizeof *k);
        if (!k) {
            ks->oom = true;
            return 0;
        }
        ks->k = k;
        ks->cap = cap;
    }
    struct created_key *c = &ks->k[ks->n++];
    snprintf(c->section, sizeof c->section, "%s", section);
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->value, sizeof c->value, "%s", value);
    return 1;
}

int srv_created_read(const char *path, struct created_key **out, size_t *n, orch_error *err)
{
    *out = NULL;
    *n = 0;
    struct keys ks = {0};
    int line = ini_parse(path, on_key, &ks);
    if (line == -1 && errno == ENOENT)
        return ORCH_OK; /* none created yet */
    if (line || ks.oom) {
        free(ks.k);
        err->code = ks.oom ? ORCH_ENOMEM : ORCH_ECONFIG;
        if (line == -1)
            snprintf(err->msg, sizeof err->msg, "%s: %s", path, strerror(errno));
        else
            snprintf(err->msg, sizeof err->msg, "%s:%d: not a line of created models", path,
                     line);
        return err->code;
    }
    *out = ks.k;
    *n = ks.n;
    return ORCH_OK;
}

int srv_created_write(const char *path, const struct created_key *k, size_t n, orch_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs("; models clients created through the API (orchestra serve writes "
                         "this file)\n", f) >= 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (i == 0 || strcmp(k[i].section, k[i - 1].section) != 0)
            ok = fprintf(f, "%s[%s]\n", i ? "\n" : "", k[i].section) > 0;
        ok = ok && fprintf(f, "%s = %s\n", k[i].key, k[i].value) > 0;
    }
    int e = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (ok)
        return ORCH_OK;
    unlink(tmp);
    err->code = e == EACCES || e == EROFS || e == EPERM ? ORCH_EACCES : ORCH_EIO;
    snprintf(err->msg, sizeof err->msg,
             "cannot keep the created models in %s: %s%s", path, strerror(e),
             err->code == ORCH_EACCES ? " (the config's folder is read-only to the daemon)" : "");
    return err->code;
}

/* The created roles' keys onto cfg. */
static int apply_created(const struct orch_server_opts *o, orch_config *cfg, orch_error *err)
{
    char path[4096];
    if (srv_created_path(o, path, sizeof path) != 0)
        return ORCH_OK;
    struct created_key *k;
    size_t n;
    int rc = srv_created_read(path, &k, &n, err);
    for (size_t i = 0; rc == ORCH_OK && i < n; i++)
        rc = orch_config_set(cfg, k[i].section, k[i].key, k[i].value, err);
    free(k);
    return rc;
}

int srv_roles_apply(struct srv *s, orch_error *err)
{
    orch_config *cfg;
    int rc = srv_roles_config(&s->opts, &cfg, err);
    if (rc == ORCH_OK) {
        rc = orch_reconfigure(s->o, cfg, err);
        orch_config_free(cfg);
    }
    return rc;
}

/* What the daemon's roles do unless the config says otherwise: every file
 * is vetted in a child process before it loads here (one bad file must not
 * take every role down); the verdict is kept, so a file costs one vetting. */
static int config_daemon_defaults(orch_config *cfg, orch_error *err)
{
    return orch_config_set_fallback(cfg, "vet", "true", err);
}

/* A role name for a model file: its name without the folder and ".gguf",
 * in the letters role names take ('.' and others become '-'). */
static void role_of_file(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
        n -= 5;
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)base[i];
        out[k++] = (isalnum(c) || c == '_' || c == '-') ? (char)c : '-';
    }
    out[k] = '\0';
    if (!k)
        snprintf(out, cap, "model");
}

/* The file's own name is an alias of a -m role where the role name had to
 * change. */
int srv_roles_config(const struct orch_server_opts *o, orch_config **out, orch_error *err)
{
    int rc =
        o->config_path ? orch_config_load(o->config_path, out, err) : orch_config_new(out, err);
    if (rc)
        return rc;
    for (size_t i = 0; rc == ORCH_OK && i < o->n_models; i++) {
        char role[ORCH_ROLE_NAME_MAX], stem[256];
        role_of_file(o->models[i], role, sizeof role);
        const char *base = strrchr(o->models[i], '/');
        snprintf(stem, sizeof stem, "%s", base ? base + 1 : o->models[i]);
        size_t n = strlen(stem);
        if (n > 5 && strcmp(stem + n - 5, ".gguf") == 0)
            stem[n - 5] = '\0';
        if (orch_config_find_role(*out, role) != (size_t)-1) {
            err->code = rc = ORCH_ECONFIG;
            snprintf(err->msg, sizeof err->msg,
                     "-m %s: a role '%s' exists already (in the config, or from another -m "
                     "file of that name)",
                     o->models[i], role);
            break;
        }
        rc = orch_config_set(*out, role, "path", o->models[i], err);
        if (rc == ORCH_OK && strcmp(stem, role) != 0)
            rc = orch_config_set(*out, role, "alias", stem, err);
    }
    if (rc == ORCH_OK)
        rc = apply_created(o, *out, err);
    if (rc == ORCH_OK)
        rc = config_daemon_defaults(*out, err);
    if (rc) {
        orch_config_free(*out);
        *out = NULL;
    }
    return rc;
}

