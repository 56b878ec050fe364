/*
 * openai.c — the OpenAI-compatible API: /v1/models, /v1/completions,
 * /v1/chat/completions (with server-sent events), /v1/embeddings.
 * Model names are role names.
 */
#include "api.h"
#include "gen.h"
#include "roles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t g_next_id = 1;

struct oai_stream {
    char id[40];
    bool chat;
    bool include_usage;
    bool first_sent;
    int64_t created;
};

static const char *finish_openai(enum orch_finish f)
{
    return f == ORCH_FINISH_LENGTH ? "length" : "stop";
}

static enum MHD_Result bad(struct req *r, const char *msg)
{
    return reply_oai_error(r, 400, "invalid_request_error", "%s", msg);
}

static json_t *model_entry(struct srv *s, const char *name)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", name, "object", "model", "created",
                     (json_int_t)s->started_unix, "owned_by", "orchestra");
}

/* GET /v1/models/NAME: NAME as a model, when it names a role */
static enum MHD_Result model_one(struct req *r)
{
    const char *one = r->path + strlen(r->route->path);
    char canon[ORCH_ROLE_NAME_MAX];
    if (orch_role_canonical(r->s->o, one, canon, sizeof canon, NULL) != ORCH_OK)
        return reply_oai_error(r, 404, "not_found_error", "no model '%s'", one);
    return reply_json(r, 200, model_entry(r->s, one));
}

/* GET /v1/models */
static enum MHD_Result models(struct req *r)
{
    struct srv *s = r->s;
    /* every role, then every alias: each is a model name a client may send */
    struct orch_role_status *st;
    size_t n;
    orch_error err;
    if (orch_status(s->o, &st, &n, NULL, &err) != ORCH_OK)
        return reply_oai_error(r, 503, "server_error", "%s", err.msg);
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, model_entry(s, st[i].role));
    for (size_t i = 0; i < n; i++)
        for (char *a = st[i].aliases, *end; *a; a = *end ? end + 1 : end) {
            end = strchr(a, ',');
            if (!end)
                end = a + strlen(a);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(end - a), a);
            json_array_append_new(data, model_entry(s, name));
        }
    free(st);
    return reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* Sampling parameters of a completion request onto the job. */
static int gen_params(struct gen_job *j, json_t *b, bool chat, char *msg, size_t cap)
{
    long long v;
    if (json_float(json_object_get(b, "temperature"), "temperature", 0, 2, &j->p.temperature, msg,
                   cap) ||
        json_float(json_object_get(b, "top_p"), "top_p", 0, 1, &j->p.top_p, msg, cap))
        return -1;
    if (j->p.top_p <= 0)
        j->p.top_p = 1e-6f;
    const char *mt = chat && json_object_get(b, "max_completion_tokens") ? "max_completion_tokens"
                                                                         : "max_tokens";
    v = 0;
    if (json_int(json_object_get(b, mt), mt, 1, ORCH_N_CTX_MAX, &v, msg, cap))
        return -1;
    if (v)
        j->p.max_tokens = (int32_t)v;
    v = -1;
    if (json_int(json_object_get(b, "seed"), "seed", 0, 0xFFFFFFFELL, &v, msg, cap))
        return -1;
    if (v >= 0)
        j->p.seed = (uint32_t)v;
    v = 1;
    if (json_int(json_object_get(b, "n"), "n", 1, 1, &v, msg, cap))
        return -1;
    if (json_stops(json_object_get(b, "stop"), j->stops, &j->p.n_stop, msg, cap))
        return -1;
    if (j->p.n_stop)
        j->p.stop = j->stops;
    return 0;
}

static json_t *usage(const struct orch_gen_result *res)
{
    /* cached_tokens: prompt tokens the engine's prefix reuse did not read again */
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", res->n_prompt,
                     "completion_tokens", res->n_generated, "total_tokens",
                     res->n_prompt + res->n_generated, "prompt_tokens_details", "cached_tokens",
                     res->n_cached);
}

static bool sse(struct stream *st, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return false;
    bool ok = stream_write(st, "data: ", 6) && stream_write(st, text, strlen(text)) &&
              stream_write(st, "\n\n", 2);
    free(text);
    return ok;
}

static json_t *chunk(struct gen_job *j, const char *text, size_t n, const char *finish)
{
    struct oai_stream *o = j->api;
    json_t *choice;
    if (o->chat) {
        json_t *delta = json_object();
        if (!o->first_sent)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (text)
            json_object_set_new(delta, "content", json_stringn(text, n));
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", 0, "text", text ? text : "",
                           text ? n : 0, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    o->first_sent = true;
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", o->id, "object",
                     o->chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)o->created, "model", j->role, "choices", choice);
}

static bool on_piece(struct gen_job *j, const char *text, size_t n)
{
    return sse(j->st, chunk(j, text, n, NULL));
}

static void run_stream(struct stream *st, void *job)
{
    struct gen_job *j = job;
    struct oai_stream *o = j->api;
    j->st = st;
    j->on_piece = on_piece;
    if (o->chat) /* the role first, as OpenAI does */
        sse(st, chunk(j, "", 0, NULL));
    gen_run(j);
    if (j->rc == ORCH_OK) {
        sse(st, chunk(j, NULL, 0, finish_openai(j->res.finish)));
        if (o->include_usage) {
            json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", o->id, "object",
                                  o->chat ? "chat.completion.chunk" : "text_completion", "created",
                                  (json_int_t)o->created, "model", j->role, "choices", "usage",
                                  usage(&j->res));
            sse(st, u);
        }
    } else {
        sse(st, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", j->err.msg, "type",
                          "server_error", "param", "code"));
    }
    stream_write(st, "data: [DONE]\n\n", 14);
    stream_account(st, j->rc == ORCH_OK ? 200 : status_for(j->rc), j->res.n_prompt,
                   j->res.n_generated);
}

/* POST /v1/chat/completions (arg 1) and /v1/completions (arg 0) */
static enum MHD_Result completion(struct req *r)
{
    bool chat = r->route->arg;
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    struct gen_job *j = gen_new(r, sizeof(struct oai_stream));
    if (!j)
        return reply_oai_error(r, 500, "server_error", "out of memory");
    struct oai_stream *o = j->api;
    char msg[300];
    int bad_input = gen_params(j, r->json, chat, msg, sizeof msg);
    json_t *so = json_object_get(r->json, "stream_options");
    if (!bad_input)
        bad_input = json_kind(json_object_get(r->json, "stream"), "stream", 'b', msg,
                              sizeof msg) ||
                    json_kind(so, "stream_options", 'o', msg, sizeof msg) ||
                    json_kind(json_object_get(so, "include_usage"), "stream_options.include_usage",
                              'b', msg, sizeof msg);
    if (!bad_input && chat) {
        bad_input = gen_messages(j, json_object_get(r->json, "messages"), msg, sizeof msg);
    } else if (!bad_input) {
        json_t *p = json_object_get(r->json, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1)
            p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            snprintf(msg, sizeof msg, "'prompt' must be a string (or an array of one string)");
            bad_input = -1;
        } else {
            j->prompt = json_string_value(p);
        }
    }
    if (bad_input) {
        gen_free(j);
        return bad(r, msg);
    }
    o->chat = chat;
    o->created = (int64_t)time(NULL);
    snprintf(o->id, sizeof o->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&g_next_id, 1));
    o->include_usage = json_is_true(json_object_get(so, "include_usage"));
    if (json_is_true(json_object_get(r->json, "stream")))
        return reply_stream(r, "text/event-stream", run_stream, j, gen_free);

    gen_run(j);
    r->tok_in = j->res.n_prompt;
    r->tok_out = j->res.n_generated;
    if (j->rc) {
        int st = status_for(j->rc);
        ret = reply_oai_error(r, st, st < 500 ? "invalid_request_error" : "server_error", "%s",
                              j->err.msg);
        gen_free(j);
        return ret;
    }
    json_t *choice;
    if (chat)
        choice = json_pack("{s:i, s:{s:s, s:s%}, s:n, s:s}", "index", 0, "message", "role",
                           "assistant", "content", j->res.text, j->res.len, "logprobs",
                           "finish_reason", finish_openai(j->res.finish));
    else
        choice = json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", j->res.text, j->res.len,
                           "logprobs", "finish_reason", finish_openai(j->res.finish));
    json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", o->id, "object",
                            chat ? "chat.completion" : "text_completion", "created",
                            (json_int_t)o->created, "model", j->role, "choices", choice, "usage",
                            usage(&j->res));
    gen_free(j);
    return reply_json(r, 200, out);
}

/* POST /v1/embeddings */
static enum MHD_Result embeddings(struct req *r)
{
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    json_t *fv = json_object_get(r->json, "encoding_format");
    const char *fmt = json_string_value(fv);
    if ((fv && !json_is_null(fv) && !fmt) ||
        (fmt && strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0))
        return bad(r, "'encoding_format' must be 'float' or 'base64'");
    bool b64 = fmt && strcmp(fmt, "base64") == 0;
    struct embedded em;
    int st;
    char msg[ORCH_ERROR_MSG_MAX];
    if (srv_embed(r, json_object_get(r->json, "input"), true, &em, &st, msg, sizeof msg))
        return reply_oai_error(r, st, st < 500 ? "invalid_request_error" : "server_error", "%s",
                               msg);
    size_t n = em.n;
    int32_t dim = em.dim;
    float *v = em.v;
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e;
        if (b64) {
            char *s = base64_floats(v + i * (size_t)dim, (size_t)dim);
            e = s ? json_string(s) : json_null();
            free(s);
        } else {
            e = json_array();
            for (int32_t k = 0; k < dim; k++)
                json_array_append_new(e, json_real(v[i * (size_t)dim + (size_t)k]));
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index",
                                              (int)i, "embedding", e));
    }
    free(v);
    return reply_json(r, 200, json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data",
                                        data, "model", r->ref.name, "usage", "prompt_tokens",
                                        (json_int_t)em.n_tokens, "total_tokens",
                                        (json_int_t)em.n_tokens));
}

int openai_routes(struct routes *t)
{
    return routes_add(t, "GET", "/v1/models", models, NULL, 0, 0) ||
           routes_add(t, "GET", "/v1/models/", model_one, "/v1/models", 0, ROUTE_PREFIX) ||
           routes_add(t, "POST", "/v1/chat/completions", completion, NULL, 1, 0) ||
           routes_add(t, "POST", "/v1/completions", completion, NULL, 0, 0) ||
           routes_add(t, "POST", "/v1/embeddings", embeddings, NULL, 0, 0)
               ? -1
               : 0;
}
