/*
 * manage.c — Ollama's model management on roles: /api/create (a role for a
 * GGUF file under --models-dir, or a role on an existing one with its own
 * parameters), /api/copy (a role that is another's under a new name) and
 * DELETE /api/delete (of a role created so). Created roles are kept in
 * "CONFIG.created" beside the config (roleset.c) and applied at once, as a
 * SIGHUP applies the config; the config file itself is never written, so a
 * role it names cannot be deleted here. Without a config file (serve -m
 * only) or with its folder read-only, create and copy are refused saying
 * so. Changes are made one at a time (a lock), each a whole-file rewrite.
 */
#include "api.h"
#include "reply.h"
#include "roles.h"
#include "roleset.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* one change at a time */

/* Ollama's names: NAME or NAME:latest is the role NAME; another tag is not
 * a role this server can have. 0, or -1 with msg. */
static int role_name(const char *in, const char *field, char *out, size_t cap, char *msg,
                     size_t mcap)
{
    if (!in || !*in) {
        snprintf(msg, mcap, "'%s' must name a model", field);
        return -1;
    }
    size_t n = strcspn(in, ":");
    if (in[n] && strcmp(in + n, ":latest") != 0) {
        snprintf(msg, mcap, "'%s': %s: tags other than ':latest' are not roles here", field, in);
        return -1;
    }
    if (n == 0 || n >= cap) {
        snprintf(msg, mcap, "'%s': '%s' is not a role name", field, in);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            snprintf(msg, mcap, "'%s': '%s' may hold only letters, digits, '_' and '-'", field,
                     in);
            return -1;
        }
    }
    memcpy(out, in, n);
    out[n] = '\0';
    return 0;
}

/* Ollama's parameters onto role keys (the ones a role has). */
static const struct {
    const char *ollama, *key;
} g_params[] = {
    {"temperature", "temperature"}, {"top_p", "top_p"},     {"top_k", "top_k"},
    {"min_p", "min_p"},             {"repeat_penalty", "repeat_penalty"},
    {"num_predict", "max_tokens"},  {"num_ctx", "n_ctx"},   {"stop", "stop"},
};

struct change {
    struct created_key *k;
    size_t n;
};

static int add(struct change *c, const char *section, const char *key, const char *value,
               char *msg, size_t cap)
{
    struct created_key *k = realloc(c->k, (c->n + 1) * sizeof *k);
    if (!k) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    c->k = k;
    struct created_key *e = &k[c->n++];
    snprintf(e->section, sizeof e->section, "%s", section);
    snprintf(e->key, sizeof e->key, "%s", key);
    int w = snprintf(e->value, sizeof e->value, "%s", value);
    if (w < 0 || (size_t)w >= sizeof e->value || strpbrk(value, "\r\n")) {
        snprintf(msg, cap, "'%s' is too long or holds a line break", key);
        return -1;
    }
    return 0;
}

/* parameters {name: value or [values]} as keys of section. */
static int parameters(struct change *c, const char *section, json_t *params, char *msg,
                      size_t cap)
{
    const char *name;
    json_t *v;
    json_object_foreach(params, name, v) {
        const char *key = NULL;
        for (size_t i = 0; i < sizeof g_params / sizeof *g_params && !key; i++)
            if (strcmp(name, g_params[i].ollama) == 0)
                key = g_params[i].key;
        if (!key) {
            snprintf(msg, cap, "parameter '%s' is not one a role has (temperature, top_p, top_k, "
                               "min_p, repeat_penalty, num_predict, num_ctx, stop)", name);
            return -1;
        }
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
            char text[1024];
            if (json_is_string(x))
                snprintf(text, sizeof text, "%s", json_string_value(x));
            else if (json_is_integer(x))
                snprintf(text, sizeof text, "%lld", (long long)json_integer_value(x));
            else if (json_is_real(x))
                snprintf(text, sizeof text, "%.9g", json_real_value(x));
            else {
                snprintf(msg, cap, "parameter '%s' must be a number or a string", name);
                return -1;
            }
            if (add(c, section, key, text, msg, cap))
                return -1;
        }
    }
    return 0;
}

/* Runs one change under the lock: the keys of the file, edit(), the file
 * written, the roles applied (the old file back when they do not apply).
 * Returns the HTTP status; msg says why for an error. */
static int change_roles(struct srv *s, int (*edit)(struct srv *s, struct change *c, void *arg,
                                                   char *msg, size_t cap),
                        void *arg, char *msg, size_t cap)
{
    char path[PATH_MAX];
    if (srv_created_path(&s->opts, path, sizeof path) != 0) {
        snprintf(msg, cap, "this daemon has no config file to keep created models beside "
                           "(it runs -m files only: start it with -c CONFIG)");
        return 400;
    }
    pthread_mutex_lock(&g_lock);
    struct change c = {0};
    orch_error err = {0};
    int status = 200;
    if (srv_created_read(path, &c.k, &c.n, &err)) {
        snprintf(msg, cap, "%s", err.msg);
        status = 500;
    }
    size_t n_old = c.n;
    struct created_key *old = NULL;
    if (status == 200 && n_old && !(old = malloc(n_old * sizeof *old))) {
        snprintf(msg, cap, "out of memory");
        status = 500;
    }
    if (old)
        memcpy(old, c.k, n_old * sizeof *old);
    if (status == 200)
        status = edit(s, &c, arg, msg, cap);
    if (status == 200 && srv_created_write(path, c.k, c.n, &err)) {
        snprintf(msg, cap, "%s", err.msg);
        status = err.code == ORCH_EACCES ? 403 : 500;
    } else if (status == 200 && srv_roles_apply(s, &err)) {
        snprintf(msg, cap, "%s", err.msg);
        status = 400;
        orch_error e2 = {0};
        srv_created_write(path, old, n_old, &e2); /* as it was */
    }
    free(old);
    free(c.k);
    pthread_mutex_unlock(&g_lock);
    return status;
}

/* "model", or Ollama's older "name" */
static const char *model_of(json_t *b)
{
    const char *m = json_string_value(json_object_get(b, "model"));
    return m ? m : json_string_value(json_object_get(b, "name"));
}

static bool is_created(const struct change *c, const char *role)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->k[i].section, role) == 0)
            return true;
    return false;
}

static bool known(struct srv *s, const char *name)
{
    char canon[ORCH_ROLE_NAME_MAX];
    return orch_role_canonical(s->o, name, canon, sizeof canon, NULL) == ORCH_OK;
}

struct create_args {
    char role[ORCH_ROLE_NAME_MAX];
    char from_role[ORCH_ROLE_NAME_MAX]; /* "" when from is a file */
    char file[PATH_MAX];
    json_t *params;
};

static int do_create(struct srv *s, struct change *c, void *arg, char *msg, size_t cap)
{
    struct create_args *a = arg;
    if (known(s, a->role)) {
        snprintf(msg, cap, "a model '%s' exists already (delete it first)", a->role);
        return 400;
    }
    if (a->from_role[0] ? add(c, a->role, "fallback", a->from_role, msg, cap)
                        : add(c, a->role, "path", a->file, msg, cap))
        return 400;
    return a->params && parameters(c, a->role, a->params, msg, cap) ? 400 : 200;
}

/* from: a model (a role) or a GGUF file under --models-dir. */
static int resolve_from(struct srv *s, const char *from, struct create_args *a, char *msg,
                        size_t cap)
{
    char canon[ORCH_ROLE_NAME_MAX], bare[ORCH_ROLE_NAME_MAX];
    if (role_name(from, "from", bare, sizeof bare, msg, cap) == 0 &&
        orch_role_canonical(s->o, bare, canon, sizeof canon, NULL) == ORCH_OK) {
        snprintf(a->from_role, sizeof a->from_role, "%s", canon);
        return 200;
    }
    const char *dir = s->opts.models_dir;
    if (!dir) {
        snprintf(msg, cap, "'from': no model '%s'; a file is taken only from the folder the "
                           "daemon was started with --models-dir", from);
        return 400;
    }
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir)) {
        snprintf(msg, cap, "--models-dir %s cannot be resolved", dir);
        return 500;
    }
    char want[PATH_MAX * 2];
    if (from[0] == '/')
        snprintf(want, sizeof want, "%s", from);
    else
        snprintf(want, sizeof want, "%s/%s", real_dir, from);
    struct stat st;
    size_t dl = strlen(real_dir);
    if (!realpath(want, a->file) || stat(a->file, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, cap, "'from': no model and no file '%s' in the models folder", from);
        return 404;
    }
    if (strncmp(a->file, real_dir, dl) != 0 || a->file[dl] != '/') {
        snprintf(msg, cap, "'from': %s is outside the models folder (--models-dir)", from);
        return 403;
    }
    struct orch_file_info fi;
    orch_error err;
    if (orch_file_info(a->file, &fi, &err) != ORCH_OK) {
        snprintf(msg, cap, "'from': %s", err.msg);
        return 400;
    }
    return 200;
}

/* POST /api/create {model, from, parameters, stream} */
static enum MHD_Result create(struct req *r)
{
    json_t *b = r->json;
    char msg[ORCH_ERROR_MSG_MAX + 128];
    struct create_args a = {0};
    static const char *const refused[] = {"files", "adapters", "template", "system",
                                          "license", "messages", "quantize", "modelfile"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *v = json_object_get(b, refused[i]);
        if (v && !json_is_null(v))
            return reply_olm_error(r, 400, "'%s' is not supported by this server (create from "
                                           "a GGUF file under --models-dir, or from a model)",
                                   refused[i]);
    }
    const char *from = json_string_value(json_object_get(b, "from"));
    json_t *params = json_object_get(b, "parameters");
    if (json_kind(json_object_get(b, "stream"), "stream", 'b', msg, sizeof msg) ||
        json_kind(params, "parameters", 'o', msg, sizeof msg) ||
        role_name(model_of(b), "model", a.role,
                  sizeof a.role, msg, sizeof msg))
        return reply_olm_error(r, 400, "%s", msg);
    if (!from)
        return reply_olm_error(r, 400, "'from' must name a model or a GGUF file");
    int st = resolve_from(r->s, from, &a, msg, sizeof msg);
    a.params = json_is_object(params) ? params : NULL;
    if (st == 200)
        st = change_roles(r->s, do_create, &a, msg, sizeof msg);
    if (st != 200)
        return reply_olm_error(r, st, "%s", msg);
    if (json_is_false(json_object_get(b, "stream")))
        return reply_json(r, 200, json_pack("{s:s}", "status", "success"));
    /* Ollama streams its steps; a role is made in one */
    const char *text = "{\"status\":\"using existing layer\"}\n"
                       "{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n";
    return reply_text(r, 200, "application/x-ndjson", text);
}

struct copy_args {
    char src[ORCH_ROLE_NAME_MAX], dst[ORCH_ROLE_NAME_MAX];
};

static int do_copy(struct srv *s, struct change *c, void *arg, char *msg, size_t cap)
{
    struct copy_args *a = arg;
    char canon[ORCH_ROLE_NAME_MAX];
    if (orch_role_canonical(s->o, a->src, canon, sizeof canon, NULL) != ORCH_OK) {
        snprintf(msg, cap, "no model '%s'", a->src);
        return 404;
    }
    if (known(s, a->dst)) {
        snprintf(msg, cap, "a model '%s' exists already (delete it first)", a->dst);
        return 400;
    }
    if (add(c, a->dst, "fallback", canon, msg, cap))
        return 400;
    /* the source's sampling too: a fallback takes only another role's model */
    struct orch_gen_params g;
    orch_error err;
    if (orch_role_gen_params(s->o, canon, &g, &err) != ORCH_OK) {
        snprintf(msg, cap, "%s", err.msg);
        return 500;
    }
    char v[5][32];
    snprintf(v[0], sizeof v[0], "%.9g", (double)g.temperature);
    snprintf(v[1], sizeof v[1], "%.9g", (double)g.top_p);
    snprintf(v[2], sizeof v[2], "%d", g.top_k);
    snprintf(v[3], sizeof v[3], "%.9g", (double)g.min_p);
    snprintf(v[4], sizeof v[4], "%.9g", (double)g.repeat_penalty);
    static const char *const keys[] = {"temperature", "top_p", "top_k", "min_p",
                                       "repeat_penalty"};
    for (size_t i = 0; i < 5; i++)
        if (add(c, a->dst, keys[i], v[i], msg, cap))
            return 400;
    char mt[16];
    snprintf(mt, sizeof mt, "%d", g.max_tokens);
    if (add(c, a->dst, "max_tokens", mt, msg, cap))
        return 400;
    for (size_t i = 0; i < g.n_stop; i++)
        if (add(c, a->dst, "stop", g.stop[i], msg, cap))
            return 400;
    return 200;
}

/* POST /api/copy {source, destination}: the destination serves as the
 * source does (its model, its parameters) */
static enum MHD_Result copy(struct req *r)
{
    struct copy_args a;
    char msg[ORCH_ERROR_MSG_MAX + 128];
    if (role_name(json_string_value(json_object_get(r->json, "source")), "source", a.src,
                  sizeof a.src, msg, sizeof msg) ||
        role_name(json_string_value(json_object_get(r->json, "destination")), "destination",
                  a.dst, sizeof a.dst, msg, sizeof msg))
        return reply_olm_error(r, 400, "%s", msg);
    int st = change_roles(r->s, do_copy, &a, msg, sizeof msg);
    return st == 200 ? reply_text(r, 200, "application/json", "")
                     : reply_olm_error(r, st, "%s", msg);
}

static int do_delete(struct srv *s, struct change *c, void *arg, char *msg, size_t cap)
{
    const char *role = arg;
    if (!is_created(c, role)) {
        if (known(s, role))
            snprintf(msg, cap, "'%s' comes from %s; remove it there (only models made with "
                               "/api/create or /api/copy are deleted here)", role,
                     s->opts.config_path ? "the config file" : "the command line");
        else
            snprintf(msg, cap, "no model '%s'", role);
        return known(s, role) ? 400 : 404;
    }
    size_t w = 0;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->k[i].section, role) != 0)
            c->k[w++] = c->k[i];
    c->n = w;
    return 200;
}

/* DELETE /api/delete {model} */
static enum MHD_Result delete_model(struct req *r)
{
    char role[ORCH_ROLE_NAME_MAX], msg[ORCH_ERROR_MSG_MAX + 128];
    if (role_name(model_of(r->json), "model", role,
                  sizeof role, msg, sizeof msg))
        return reply_olm_error(r, 400, "%s", msg);
    int st = change_roles(r->s, do_delete, role, msg, sizeof msg);
    return st == 200 ? reply_text(r, 200, "application/json", "")
                     : reply_olm_error(r, st, "%s", msg);
}

int manage_routes(struct routes *t)
{
    return routes_add(t, "POST", "/api/create", create, NULL, 0, 0) ||
           routes_add(t, "POST", "/api/copy", copy, NULL, 0, 0) ||
           routes_add(t, "DELETE", "/api/delete", delete_model, NULL, 0, 0)
               ? -1
               : 0;
}
