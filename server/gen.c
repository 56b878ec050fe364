/*
 * gen.c — one generation request as both APIs run it: parameters, the
 * role's defaults under them, the text streamed piece by piece.
 */
#include "gen.h"
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gen_job *gen_new(struct req *r, size_t api_size)
{
    struct gen_job *j = calloc(1, sizeof *j);
    if (!j || !(j->api = calloc(1, api_size ? api_size : 1))) {
        free(j);
        return NULL;
    }
    j->s = r->s;
    j->keep = json_incref(r->json);
    j->role_index = r->role_index;
    snprintf(j->role, sizeof j->role, "%s", r->ref.name);
    j->p = r->ref.gen; /* the role's defaults, found once by srv_take_model */
    j->cp = orch_chat_default_params();
    j->t0_ns = r->t0_ns;
    j->fd = srv_conn_fd(r->conn);
    return j;
}

void gen_free(void *job)
{
    struct gen_job *j = job;
    if (!j)
        return;
    orch_gen_result_clear(&j->res);
    struct orch_chat_result cr = {.reply = j->reply};
    orch_chat_result_clear(&cr);
    for (size_t i = 0; i < j->n_msgs; i++) {
        free((char *)j->msgs[i].content);
        for (size_t k = 0; k < j->msgs[i].n_tool_calls; k++)
            free((char *)j->msgs[i].tool_calls[k].arguments);
        free((struct orch_tool_call *)j->msgs[i].tool_calls);
    }
    free(j->msgs);
    for (size_t i = 0; i < j->n_owned; i++)
        free(j->owned[i]);
    if (j->api_free)
        j->api_free(j->api);
    free(j->api);
    json_decref(j->keep);
    free(j);
}

static bool on_text(const char *text, size_t n, void *ud)
{
    struct gen_job *j = ud;
    if (j->st && stream_gone(j->st))
        return false; /* the client left: stop, and the lease goes back */
    return j->on_piece ? j->on_piece(j, text, n) : true;
}

static void on_delta(const struct orch_chat_delta *d, void *ud)
{
    struct gen_job *j = ud;
    if (j->on_delta)
        j->on_delta(j, d);
}

char *gen_own(struct gen_job *j, char *s)
{
    if (!s || j->n_owned == sizeof j->owned / sizeof *j->owned) {
        free(s);
        return NULL;
    }
    return j->owned[j->n_owned++] = s;
}

/* How deep a JSON value nests. */
static int depth(json_t *v, int limit)
{
    if (limit <= 0)
        return 1;
    int d = 0;
    const char *k;
    size_t i;
    json_t *x;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x) {
            int e = depth(x, limit - 1);
            d = e > d ? e : d;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            int e = depth(x, limit - 1);
            d = e > d ? e : d;
        }
    } else {
        return 0;
    }
    return d + 1;
}

#define SCHEMA_DEPTH_MAX 64
#define SCHEMA_BYTES_MAX (256 * 1024) /* its grammar is compiled for each request */

int gen_tools(struct gen_job *j, json_t *tools, char *msg, size_t cap)
{
    if (!tools || json_is_null(tools))
        return 0;
    if (!json_is_array(tools)) {
        snprintf(msg, cap, "'tools' must be an array of tools");
        return -1;
    }
    if (depth(tools, SCHEMA_DEPTH_MAX + 4) > SCHEMA_DEPTH_MAX + 3) {
        snprintf(msg, cap, "'tools' nest deeper than %d levels", SCHEMA_DEPTH_MAX);
        return -1;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *f = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || (type && strcmp(type, "function") != 0) || !json_is_object(f)) {
            snprintf(msg, cap, "tools[%zu] must be {\"type\": \"function\", \"function\": "
                               "{\"name\", \"parameters\"}}", i);
            return -1;
        }
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!name || !*name) {
            snprintf(msg, cap, "tools[%zu] has no function name", i);
            return -1;
        }
    }
    if (json_array_size(tools) && !(j->cp.tools = gen_own(j, json_dumps(tools, JSON_COMPACT)))) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    if (j->cp.tools && strlen(j->cp.tools) > SCHEMA_BYTES_MAX) {
        snprintf(msg, cap, "'tools' are %zu bytes; at most %d", strlen(j->cp.tools),
                 SCHEMA_BYTES_MAX);
        return -1;
    }
    return 0;
}

int gen_tool_choice(struct gen_job *j, json_t *tc, char *msg, size_t cap)
{
    const char *choice = json_string_value(tc);
    if (choice && strcmp(choice, "auto") == 0) {
        j->cp.tool_choice = ORCH_TOOLS_AUTO;
    } else if (choice && strcmp(choice, "none") == 0) {
        j->cp.tool_choice = ORCH_TOOLS_NONE;
    } else if (choice && strcmp(choice, "required") == 0) {
        j->cp.tool_choice = ORCH_TOOLS_REQUIRED;
    } else if (json_is_object(tc)) {
        j->cp.tool_choice = ORCH_TOOLS_FUNCTION;
        j->cp.tool_name = json_string_value(json_object_get(json_object_get(tc, "function"),
                                                            "name"));
        if (!j->cp.tool_name) {
            snprintf(msg, cap, "'tool_choice' names no function ({\"type\": \"function\", "
                               "\"function\": {\"name\": ...}})");
            return -1;
        }
    } else if (tc && !json_is_null(tc)) {
        snprintf(msg, cap, "'tool_choice' must be \"auto\", \"none\", \"required\" or a "
                           "function");
        return -1;
    }
    if ((j->cp.tool_choice == ORCH_TOOLS_REQUIRED || j->cp.tool_choice == ORCH_TOOLS_FUNCTION) &&
        !j->cp.tools) {
        snprintf(msg, cap, "'tool_choice' requires a tool call but 'tools' is empty");
        return -1;
    }
    return 0;
}

int gen_schema(struct gen_job *j, json_t *schema, const char *field, char *msg, size_t cap)
{
    if (!json_is_object(schema) && !json_is_true(schema)) {
        snprintf(msg, cap, "'%s' must be a JSON schema (an object)", field);
        return -1;
    }
    if (depth(schema, SCHEMA_DEPTH_MAX + 1) > SCHEMA_DEPTH_MAX) {
        snprintf(msg, cap, "'%s' nests deeper than %d levels", field, SCHEMA_DEPTH_MAX);
        return -1;
    }
    if (!(j->cp.json_schema = gen_own(j, json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY)))) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    if (strlen(j->cp.json_schema) > SCHEMA_BYTES_MAX) {
        snprintf(msg, cap, "'%s' is %zu bytes; a schema may have at most %d", field,
                 strlen(j->cp.json_schema), SCHEMA_BYTES_MAX);
        return -1;
    }
    return 0;
}

void gen_run(struct gen_job *j)
{
    if (j->on_piece || j->st) {
        j->p.on_text = on_text;
        j->p.user_data = j;
    }
    if (j->on_delta) {
        j->cp.on_delta = on_delta;
        j->cp.user_data = j;
    }
    /* a stream sees its client leave by its writes (stream.c); the others
     * are watched (jobs.c) */
    j->link = (struct job_link){.cancel = &j->cancel, .fd = j->st ? -1 : j->fd};
    j->p.cancel = &j->cancel;
    jobs_add(j->s, &j->link);
    if (j->chat) {
        struct orch_chat_result cr;
        j->rc = orch_chat_ext(j->s->o, j->role, j->msgs, j->n_msgs, &j->cp, &j->p, &cr, &j->err);
        j->res = cr.gen;
        j->reply = cr.reply;
    } else {
        j->rc = orch_generate(j->s->o, j->role, j->prompt, &j->p, &j->res, &j->err);
    }
    jobs_remove(j->s, &j->link);
    int32_t why = __atomic_load_n(&j->cancel, __ATOMIC_RELAXED);
    if (j->rc == ORCH_OK && j->res.finish == ORCH_FINISH_CANCELLED && why) {
        j->rc = why == JOB_CUT ? ORCH_ECLOSED : ORCH_ECANCELED;
        j->err.code = j->rc;
        snprintf(j->err.msg, sizeof j->err.msg,
                 why == JOB_CUT ? "role '%s': the server is stopping; the generation was cut "
                                  "at the drain deadline after %d tokens"
                                : "role '%s': the client left; the generation stopped after %d "
                                  "tokens",
                 j->role, (int)j->res.n_generated);
    }
    j->total_ms = (double)(srv_now_ns() - j->t0_ns) / 1e6;
    if (j->rc == ORCH_OK && j->role_index >= 0)
        atomic_fetch_add(&j->s->roles[j->role_index].tokens_cached, j->res.n_cached);
}

/* An assistant message's tool calls (OpenAI: {id, type, function: {name,
 * arguments: JSON text}}; Ollama: {function: {name, arguments: {...}}}). */
static int tool_calls(struct orch_chat_message *m, size_t i, json_t *calls, char *msg,
                      size_t cap)
{
    if (!calls || json_is_null(calls))
        return 0;
    if (!json_is_array(calls)) {
        snprintf(msg, cap, "messages[%zu].tool_calls must be an array", i);
        return -1;
    }
    size_t n = json_array_size(calls), k;
    struct orch_tool_call *tc = calloc(n ? n : 1, sizeof *tc);
    if (!tc) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    m->tool_calls = tc;
    json_t *c;
    json_array_foreach(calls, k, c) {
        json_t *f = json_object_get(c, "function");
        const char *name = json_string_value(json_object_get(f, "name"));
        json_t *args = json_object_get(f, "arguments");
        if (!name || !*name) {
            snprintf(msg, cap, "messages[%zu].tool_calls[%zu] has no function name", i, k);
            return -1;
        }
        char *a = json_is_string(args) ? strdup(json_string_value(args))
                  : args && !json_is_null(args) ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY)
                                                : strdup("{}");
        if (!a) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        tc[k] = (struct orch_tool_call){.id = json_string_value(json_object_get(c, "id")),
                                        .name = name, .arguments = a};
        m->n_tool_calls = k + 1;
    }
    return 0;
}

/* A message's text: a string, OpenAI's text parts joined, or "" for none. */
static char *content_text(json_t *c, size_t i, char *msg, size_t cap)
{
    if (json_is_string(c))
        return strdup(json_string_value(c));
    if (!c || json_is_null(c))
        return strdup("");
    if (!json_is_array(c)) {
        snprintf(msg, cap, "messages[%zu].content must be a string or an array of text parts",
                 i);
        return NULL;
    }
    size_t len = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (!t) {
            snprintf(msg, cap, "messages[%zu].content[%zu]: only text parts are supported", i,
                     k);
            return NULL;
        }
        len += strlen(t);
    }
    char *text = malloc(len + 1);
    if (text) {
        text[0] = '\0';
        json_array_foreach (c, k, part)
            strcat(text, json_string_value(json_object_get(part, "text")));
    }
    return text;
}

int gen_messages(struct gen_job *j, json_t *messages, char *msg, size_t cap)
{
    msg[0] = '\0';
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        snprintf(msg, cap, "'messages' must be a non-empty array");
        return -1;
    }
    size_t n = json_array_size(messages);
    j->msgs = calloc(n, sizeof *j->msgs);
    if (!j->msgs) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            snprintf(msg, cap, "messages[%zu] needs a 'role'", i);
            return -1;
        }
        if (strcmp(role, "developer") == 0) /* OpenAI's newer name for system */
            role = "system";
        if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
            strcmp(role, "assistant") != 0 && strcmp(role, "tool") != 0) {
            snprintf(msg, cap,
                     "messages[%zu] has role '%.40s' (expected system, user, assistant or tool)",
                     i, role);
            return -1;
        }
        json_t *images = json_object_get(m, "images"); /* Ollama's */
        if (json_is_array(images) && json_array_size(images)) {
            snprintf(msg, cap, "messages[%zu]: images are not supported (text models only)", i);
            return -1;
        }
        char *text = content_text(json_object_get(m, "content"), i, msg, cap);
        if (!text) {
            if (!msg[0])
                snprintf(msg, cap, "out of memory");
            return -1;
        }
        struct orch_chat_message *cm = &j->msgs[i];
        const char *reasoning = json_string_value(json_object_get(m, "reasoning_content"));
        const char *name = json_string_value(json_object_get(m, "name"));
        *cm = (struct orch_chat_message){
            .role = role,
            .content = text,
            .tool_call_id = json_string_value(json_object_get(m, "tool_call_id")),
            .name = name ? name : json_string_value(json_object_get(m, "tool_name")),
            .reasoning = reasoning ? reasoning : json_string_value(json_object_get(m, "thinking")),
        };
        j->n_msgs = i + 1;
        if (strcmp(role, "assistant") == 0 &&
            tool_calls(cm, i, json_object_get(m, "tool_calls"), msg, cap))
            return -1;
    }
    j->chat = true;
    return 0;
}

int srv_embed(struct req *r, json_t *in, bool arrays, bool truncate, struct embedded *out,
              int *status, char *msg, size_t cap)
{
    memset(out, 0, sizeof *out);
    *status = 400;
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    if (!(json_is_string(in) || (arrays && json_is_array(in) && n > 0)) ||
        n > SRV_EMBED_INPUTS_MAX) {
        if (arrays)
            snprintf(msg, cap, "the input must be a string or an array of 1 to %d strings",
                     SRV_EMBED_INPUTS_MAX);
        else
            snprintf(msg, cap, "the input must be a string");
        return -1;
    }
    const char **texts = calloc(n, sizeof *texts);
    if (!texts) {
        *status = 500;
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_array(in) ? json_array_get(in, i) : in;
        if (!json_is_string(t) || !json_string_length(t)) {
            free(texts);
            snprintf(msg, cap, "every input must be a non-empty string (token arrays are not "
                               "supported)");
            return -1;
        }
        texts[i] = json_string_value(t);
    }
    orch_error err;
    struct orch_embed_params ep = orch_embed_default_params();
    ep.n_tokens = &out->n_tokens;
    ep.truncate = truncate;
    int rc = orch_embed(r->s->o, r->ref.name, texts, n, &ep, &out->v, &out->dim, &err);
    free(texts);
    if (rc) {
        *status = status_for(rc);
        snprintf(msg, cap, "%s", err.msg);
        return -1;
    }
    out->n = n;
    r->tok_in = out->n_tokens;
    return 0;
}
