/*
 * openai.c — the OpenAI-compatible API: /v1/models, /v1/completions,
 * /v1/chat/completions (with server-sent events), /v1/embeddings.
 * Model names are role names.
 */
#include "api.h"
#include "gen.h"
#include "openai.h"
#include "roles.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t g_next_id = 1;

#define OAI_N_MAX 16 /* choices (n) one request may ask */

struct oai_stream {
    char id[40];
    bool chat;
    bool include_usage;
    bool echo;       /* a completion's text starts with its prompt */
    bool first_sent;
    int64_t created;
    int32_t n_calls; /* tool calls begun in the stream */
    int index;       /* the choice this job makes */
    /* the first job's: the other choices' jobs (n > 1), freed with it */
    struct gen_job *more[OAI_N_MAX - 1];
    int n_more;
};

static const char *finish_openai(const struct gen_job *j)
{
    if (j->res.finish == ORCH_FINISH_LENGTH)
        return "length";
    return j->reply.n_tool_calls ? "tool_calls" : "stop";
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
    if (json_int(json_object_get(b, "n"), "n", 1, OAI_N_MAX, &v, msg, cap))
        return -1;
    if (json_stops(json_object_get(b, "stop"), j->stops, &j->p.n_stop, msg, cap))
        return -1;
    if (j->p.n_stop)
        j->p.stop = j->stops;
    /* OpenAI's penalties, and llama.cpp's extras as llama-server takes them */
    if (json_float(json_object_get(b, "presence_penalty"), "presence_penalty", -2, 2,
                   &j->p.presence_penalty, msg, cap) ||
        json_float(json_object_get(b, "frequency_penalty"), "frequency_penalty", -2, 2,
                   &j->p.frequency_penalty, msg, cap) ||
        json_float(json_object_get(b, "min_p"), "min_p", 0, 0.999999f, &j->p.min_p, msg, cap) ||
        json_float(json_object_get(b, "repeat_penalty"), "repeat_penalty", 0.01f, 100,
                   &j->p.repeat_penalty, msg, cap))
        return -1;
    v = -2;
    if (json_int(json_object_get(b, "top_k"), "top_k", 0, 1000000, &v, msg, cap))
        return -1;
    if (v >= 0)
        j->p.top_k = (int32_t)v;
    v = -2;
    if (json_int(json_object_get(b, "repeat_last_n"), "repeat_last_n", -1, ORCH_N_CTX_MAX, &v,
                 msg, cap))
        return -1;
    if (v >= -1)
        j->p.repeat_last_n = (int32_t)v;
    /* what is not supported is refused by name, never dropped */
    /* (a completion's suffix and echo are done: the last two, for chats only) */
    static const char *const unsupported[] = {"logprobs", "top_logprobs", "logit_bias",
                                              "best_of", "n_probs", "suffix", "echo"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported - (chat ? 0 : 2); i++) {
        json_t *u = json_object_get(b, unsupported[i]);
        if (u && !json_is_null(u) && !json_is_false(u) &&
            !(json_is_object(u) && json_object_size(u) == 0) &&
            !(json_is_integer(u) && json_integer_value(u) == (strcmp(unsupported[i], "best_of")
                                                                  ? 0 : 1))) {
            snprintf(msg, cap, "'%s' is not supported by this server%s", unsupported[i],
                     i >= 5 ? " on chats (on /v1/completions it is)" : "");
            return -1;
        }
    }
    return 0;
}

/* Tools, structured output and reasoning of a chat request onto j->cp. */
static int chat_params(struct gen_job *j, json_t *b, char *msg, size_t cap)
{
    /* what this server cannot do is refused by name (README: the fields it
     * ignores, such as user, metadata, store, service_tier) */
    static const char *const refused[] = {"functions", "function_call", "audio",
                                          "web_search_options"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *v = json_object_get(b, refused[i]);
        if (v && !json_is_null(v)) {
            snprintf(msg, cap, "'%s' is not supported by this server%s", refused[i],
                     i < 2 ? " (use 'tools' and 'tool_choice')" : "");
            return -1;
        }
    }
    json_t *mods = json_object_get(b, "modalities");
    size_t mi;
    json_t *mv;
    json_array_foreach(mods, mi, mv) {
        if (!json_is_string(mv) || strcmp(json_string_value(mv), "text") != 0) {
            snprintf(msg, cap, "'modalities': only \"text\" is supported");
            return -1;
        }
    }
    if (gen_tools(j, json_object_get(b, "tools"), msg, cap))
        return -1;
    if (gen_tool_choice(j, json_object_get(b, "tool_choice"), msg, cap))
        return -1;
    json_t *ptc = json_object_get(b, "parallel_tool_calls");
    if (json_kind(ptc, "parallel_tool_calls", 'b', msg, cap))
        return -1;
    j->cp.parallel_tool_calls = json_is_true(ptc);
    /* response_format: text, json_object, json_schema {name, schema, strict} */
    json_t *rf = json_object_get(b, "response_format");
    if (json_kind(rf, "response_format", 'o', msg, cap))
        return -1;
    const char *rft = json_string_value(json_object_get(rf, "type"));
    if (rf && !json_is_null(rf)) {
        if (!rft || (strcmp(rft, "text") && strcmp(rft, "json_object") &&
                     strcmp(rft, "json_schema"))) {
            snprintf(msg, cap, "'response_format.type' must be text, json_object or "
                               "json_schema");
            return -1;
        }
        if (strcmp(rft, "json_object") == 0) {
            json_t *any = json_pack("{s:s}", "type", "object");
            int rc = gen_schema(j, any, "response_format", msg, cap);
            json_decref(any);
            if (rc)
                return -1;
        } else if (strcmp(rft, "json_schema") == 0) {
            json_t *js = json_object_get(rf, "json_schema");
            if (!json_is_object(js)) {
                snprintf(msg, cap, "'response_format.json_schema' must be an object");
                return -1;
            }
            if (gen_schema(j, json_object_get(js, "schema"), "response_format.json_schema.schema",
                           msg, cap))
                return -1;
        }
    }
    /* llama.cpp's own: json_schema, grammar */
    json_t *js = json_object_get(b, "json_schema");
    if (js && !json_is_null(js) && gen_schema(j, js, "json_schema", msg, cap))
        return -1;
    json_t *g = json_object_get(b, "grammar");
    if (json_kind(g, "grammar", 's', msg, cap))
        return -1;
    if (json_is_string(g) && json_string_length(g)) {
        if (j->cp.json_schema || j->cp.tools) {
            snprintf(msg, cap, "'grammar' cannot be combined with a JSON schema or tools");
            return -1;
        }
        j->cp.grammar = json_string_value(g);
    }
    /* reasoning: reasoning_format (none = left in the content), reasoning_effort
     * "none" and chat_template_kwargs.enable_thinking false = not thinking */
    const char *rfmt = json_string_value(json_object_get(b, "reasoning_format"));
    if (rfmt && strcmp(rfmt, "none") == 0)
        j->cp.reasoning = ORCH_REASONING_INLINE;
    const char *effort = json_string_value(json_object_get(b, "reasoning_effort"));
    json_t *kw = json_object_get(b, "chat_template_kwargs");
    if (json_kind(kw, "chat_template_kwargs", 'o', msg, cap))
        return -1;
    if ((effort && strcmp(effort, "none") == 0) ||
        json_is_false(json_object_get(kw, "enable_thinking")))
        j->cp.reasoning = ORCH_REASONING_OFF;
    if (kw && json_object_size(kw) &&
        !(j->cp.template_kwargs = gen_own(j, json_dumps(kw, JSON_COMPACT)))) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    return 0;
}

int oai_chat_setup(struct gen_job *j, json_t *body, char *msg, size_t cap)
{
    return gen_params(j, body, true, msg, cap) ||
                   gen_messages(j, json_object_get(body, "messages"), msg, cap) ||
                   chat_params(j, body, msg, cap)
               ? -1
               : 0;
}

static json_t *usage(const struct orch_gen_result *res)
{
    /* cached_tokens: prompt tokens the engine's prefix reuse did not read again */
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", res->n_prompt,
                     "completion_tokens", res->n_generated, "total_tokens",
                     res->n_prompt + res->n_generated, "prompt_tokens_details", "cached_tokens",
                     res->n_cached);
}

/* One event, in one write: the choices of n > 1 write from their threads. */
static bool sse(struct stream *st, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return false;
    size_t n = strlen(text);
    char *ev = malloc(n + 9);
    bool ok = ev != NULL;
    if (ok) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, text, n);
        memcpy(ev + 6 + n, "\n\n", 3);
        ok = stream_write(st, ev, n + 8);
    }
    free(ev);
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
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", o->index, "delta", delta, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", o->index, "text", text ? text : "",
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

/* A chat's parsed change as a chunk: content, reasoning_content, or a
 * tool call (its index, id, type and name first, then its arguments in
 * pieces), the shape the openai client assembles. */
static void on_delta(struct gen_job *j, const struct orch_chat_delta *d)
{
    struct oai_stream *o = j->api;
    json_t *delta = json_object();
    if (!o->first_sent)
        json_object_set_new(delta, "role", json_string("assistant"));
    if (*d->content)
        json_object_set_new(delta, "content", json_string(d->content));
    if (*d->reasoning)
        json_object_set_new(delta, "reasoning_content", json_string(d->reasoning));
    if (d->tool_index >= 0) {
        json_t *fn = json_object();
        json_t *call = json_pack("{s:i}", "index", d->tool_index);
        if (d->tool_index >= o->n_calls || *d->tool_name) {
            json_object_set_new(call, "id", json_string(d->tool_id));
            json_object_set_new(call, "type", json_string("function"));
            json_object_set_new(fn, "name", json_string(d->tool_name));
            if (d->tool_index >= o->n_calls)
                o->n_calls = d->tool_index + 1;
        }
        json_object_set_new(fn, "arguments", json_string(d->tool_arguments));
        json_object_set_new(call, "function", fn);
        json_object_set_new(delta, "tool_calls", json_pack("[o]", call));
    }
    if (json_object_size(delta) == 0) {
        json_decref(delta);
        return;
    }
    json_t *choice = json_pack("{s:i, s:o, s:n, s:n}", "index", o->index, "delta", delta,
                               "logprobs", "finish_reason");
    o->first_sent = true;
    sse(j->st, json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", o->id, "object",
                         "chat.completion.chunk", "created", (json_int_t)o->created, "model",
                         j->role, "choices", choice));
}

/* The usage of a request's choices: the prompt once, every choice's tokens. */
static json_t *usage_all(struct gen_job *j)
{
    struct oai_stream *o = j->api;
    struct orch_gen_result sum = j->res;
    for (int i = 0; i < o->n_more; i++)
        sum.n_generated += o->more[i]->res.n_generated;
    return usage(&sum);
}

/* The first failed choice's job, or NULL. */
static struct gen_job *failed(struct gen_job *j)
{
    struct oai_stream *o = j->api;
    if (j->rc)
        return j;
    for (int i = 0; i < o->n_more; i++)
        if (o->more[i]->rc)
            return o->more[i];
    return NULL;
}

/* One choice of a stream: the role first (as OpenAI does), the pieces or
 * parsed changes, then its finish chunk. */
static void *stream_choice(void *job)
{
    struct gen_job *j = job;
    struct oai_stream *o = j->api;
    if (o->chat) {
        sse(j->st, chunk(j, "", 0, NULL));
        j->on_delta = on_delta;
    } else {
        j->on_piece = on_piece;
        if (o->echo && !sse(j->st, chunk(j, j->prompt, strlen(j->prompt), NULL)))
            return NULL;
    }
    gen_run(j);
    if (j->rc == ORCH_OK)
        sse(j->st, chunk(j, NULL, 0, finish_openai(j)));
    return NULL;
}

static void *run_job(void *job)
{
    gen_run(job);
    return NULL;
}

/* Runs the other choices on threads of their own and the first here; all
 * of them decode together in the model's engine, the prompt's cells read
 * once and copied to the others. */
static void run_choices(struct gen_job *j, void *(*fn)(void *))
{
    struct oai_stream *o = j->api;
    pthread_t th[OAI_N_MAX];
    bool started[OAI_N_MAX] = {false};
    for (int i = 0; i < o->n_more; i++) {
        o->more[i]->st = j->st;
        started[i] = pthread_create(&th[i], NULL, fn, o->more[i]) == 0;
    }
    fn(j);
    for (int i = 0; i < o->n_more; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fn(o->more[i]); /* no thread to be had: after the others */
    }
}

static void run_stream(struct stream *st, void *job)
{
    struct gen_job *j = job;
    struct oai_stream *o = j->api;
    j->st = st;
    run_choices(j, stream_choice);
    struct gen_job *bad = failed(j);
    if (!bad && o->include_usage) {
        json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", o->id, "object",
                              o->chat ? "chat.completion.chunk" : "text_completion", "created",
                              (json_int_t)o->created, "model", j->role, "choices", "usage",
                              usage_all(j));
        sse(st, u);
    } else if (bad) {
        sse(st, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", bad->err.msg, "type",
                          "server_error", "param", "code"));
    }
    stream_write(st, "data: [DONE]\n\n", 14);
    int64_t out = j->res.n_generated;
    for (int i = 0; i < o->n_more; i++)
        out += o->more[i]->res.n_generated;
    stream_account(st, bad ? status_for(bad->rc) : 200, j->res.n_prompt, out);
}

/* A chat's reply as OpenAI's message: content (null when only tools were
 * called), reasoning_content when the model thought, tool_calls. */
static json_t *chat_message(const struct gen_job *j)
{
    const struct orch_chat_reply *r = &j->reply;
    json_t *m = json_pack("{s:s}", "role", "assistant");
    json_object_set_new(m, "content", r->n_tool_calls && !*r->content ? json_null()
                                                                       : json_string(r->content));
    if (*r->reasoning)
        json_object_set_new(m, "reasoning_content", json_string(r->reasoning));
    if (r->n_tool_calls) {
        json_t *calls = json_array();
        for (size_t i = 0; i < r->n_tool_calls; i++)
            json_array_append_new(
                calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", r->tool_calls[i].id, "type",
                                 "function", "function", "name", r->tool_calls[i].name,
                                 "arguments", r->tool_calls[i].arguments));
        json_object_set_new(m, "tool_calls", calls);
    }
    return m;
}

/* Frees the other choices' jobs with the first's (gen_job.api_free). */
static void free_more(void *api)
{
    struct oai_stream *o = api;
    for (int i = 0; i < o->n_more; i++)
        gen_free(o->more[i]);
}

/* A job for the request, its body checked. NULL with msg (a 400), or with
 * msg empty when out of memory. */
static struct gen_job *completion_job(struct req *r, bool chat, char *msg, size_t cap)
{
    msg[0] = '\0';
    struct gen_job *j = gen_new(r, sizeof(struct oai_stream));
    if (!j)
        return NULL;
    int bad_input = chat ? oai_chat_setup(j, r->json, msg, cap)
                         : gen_params(j, r->json, false, msg, cap);
    json_t *so = json_object_get(r->json, "stream_options");
    if (!bad_input)
        bad_input = json_kind(json_object_get(r->json, "stream"), "stream", 'b', msg, cap) ||
                    json_kind(so, "stream_options", 'o', msg, cap) ||
                    json_kind(json_object_get(so, "include_usage"), "stream_options.include_usage",
                              'b', msg, cap);
    if (!bad_input && !chat) {
        json_t *g = json_object_get(r->json, "grammar");
        json_t *js = json_object_get(r->json, "json_schema");
        bad_input = json_kind(g, "grammar", 's', msg, cap) ||
                    (js && !json_is_null(js) && gen_schema(j, js, "json_schema", msg, cap));
        if (!bad_input && json_is_string(g) && json_string_length(g))
            j->p.grammar = json_string_value(g);
        j->p.json_schema = j->cp.json_schema;
        if (!bad_input && j->p.grammar && j->p.json_schema) {
            snprintf(msg, cap, "'grammar' and 'json_schema' cannot both be given");
            bad_input = -1;
        }
    }
    if (!bad_input && !chat) {
        json_t *p = json_object_get(r->json, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1)
            p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            snprintf(msg, cap, "'prompt' must be a string (or an array of one string)");
            bad_input = -1;
        } else {
            j->prompt = json_string_value(p);
        }
        /* fill-in-the-middle (the model's FIM tokens), and the prompt echoed */
        json_t *sfx = json_object_get(r->json, "suffix"), *echo = json_object_get(r->json, "echo");
        if (!bad_input && sfx && !json_is_null(sfx) && !json_is_string(sfx)) {
            snprintf(msg, cap, "'suffix' must be a string");
            bad_input = -1;
        } else if (!bad_input && json_string_length(sfx)) {
            j->p.suffix = json_string_value(sfx);
        }
        if (!bad_input && json_kind(echo, "echo", 'b', msg, cap))
            bad_input = -1;
        ((struct oai_stream *)j->api)->echo = json_is_true(echo);
    }
    if (bad_input) {
        gen_free(j);
        return NULL;
    }
    struct oai_stream *o = j->api;
    o->chat = chat;
    o->include_usage = json_is_true(json_object_get(so, "include_usage"));
    return j;
}

/* A completion's text: the prompt first when it is echoed. */
static json_t *completion_text(const struct gen_job *j)
{
    const struct oai_stream *o = j->api;
    if (!o->echo)
        return json_stringn(j->res.text, j->res.len);
    size_t n = strlen(j->prompt);
    char *t = malloc(n + j->res.len + 1);
    if (!t)
        return NULL;
    memcpy(t, j->prompt, n);
    memcpy(t + n, j->res.text, j->res.len);
    json_t *s = json_stringn(t, n + j->res.len);
    free(t);
    return s;
}

/* POST /v1/chat/completions (arg 1) and /v1/completions (arg 0). n > 1:
 * that many choices, each a sequence of its own beside the others (a given
 * seed is the first's; choice i samples with seed + i). */
static enum MHD_Result completion(struct req *r)
{
    bool chat = r->route->arg;
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    char msg[300];
    struct gen_job *j = completion_job(r, chat, msg, sizeof msg);
    if (!j)
        return msg[0] ? bad(r, msg) : reply_oai_error(r, 500, "server_error", "out of memory");
    struct oai_stream *o = j->api;
    o->created = (int64_t)time(NULL);
    snprintf(o->id, sizeof o->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&g_next_id, 1));
    json_t *nv = json_object_get(r->json, "n");
    int n = json_is_integer(nv) ? (int)json_integer_value(nv) : 1; /* checked: 1..OAI_N_MAX */
    j->api_free = free_more;
    for (int i = 1; i < n; i++) {
        struct gen_job *k = completion_job(r, chat, msg, sizeof msg);
        if (!k) {
            gen_free(j);
            return reply_oai_error(r, 500, "server_error", "out of memory");
        }
        struct oai_stream *ko = k->api;
        memcpy(ko->id, o->id, sizeof o->id);
        ko->created = o->created;
        ko->index = i;
        if (j->p.seed != ORCH_SEED_RANDOM)
            k->p.seed = (uint32_t)((j->p.seed + (uint32_t)i) % ORCH_SEED_RANDOM);
        o->more[o->n_more++] = k;
    }
    if (json_is_true(json_object_get(r->json, "stream")))
        return reply_stream(r, "text/event-stream", run_stream, j, gen_free);

    run_choices(j, run_job);
    r->tok_in = j->res.n_prompt;
    r->tok_out = j->res.n_generated;
    for (int i = 0; i < o->n_more; i++)
        r->tok_out += o->more[i]->res.n_generated;
    struct gen_job *bad_job = failed(j);
    if (bad_job) {
        int st = status_for(bad_job->rc);
        ret = reply_oai_error(r, st, st < 500 ? "invalid_request_error" : "server_error", "%s",
                              bad_job->err.msg);
        gen_free(j);
        return ret;
    }
    json_t *choices = json_array();
    for (int i = 0; i < n; i++) {
        struct gen_job *c = i ? o->more[i - 1] : j;
        json_array_append_new(
            choices, chat ? json_pack("{s:i, s:o, s:n, s:s}", "index", i, "message",
                                      chat_message(c), "logprobs", "finish_reason",
                                      finish_openai(c))
                          : json_pack("{s:i, s:o, s:n, s:s}", "index", i, "text",
                                      completion_text(c), "logprobs", "finish_reason",
                                      finish_openai(c)));
    }
    json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", o->id, "object",
                            chat ? "chat.completion" : "text_completion", "created",
                            (json_int_t)o->created, "model", j->role, "choices", choices, "usage",
                            usage_all(j));
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
    json_t *dv = json_object_get(r->json, "dimensions");
    if (dv && !json_is_null(dv) && (!json_is_integer(dv) || json_integer_value(dv) < 1))
        return bad(r, "'dimensions' must be a whole number of 1 or more");
    struct embedded em;
    int st;
    char msg[ORCH_ERROR_MSG_MAX];
    if (srv_embed(r, json_object_get(r->json, "input"), true, false, &em, &st, msg, sizeof msg))
        return reply_oai_error(r, st, st < 500 ? "invalid_request_error" : "server_error", "%s",
                               msg);
    size_t n = em.n;
    int32_t dim = em.dim, keep = dim;
    float *v = em.v;
    if (json_is_integer(dv)) {
        /* OpenAI's shortened embeddings: the first `dimensions` components,
         * normalised again (what a Matryoshka-trained model is made for) */
        if (json_integer_value(dv) > dim) {
            free(v);
            return reply_oai_error(r, 400, "invalid_request_error",
                                   "'dimensions' %lld is more than the model's %d",
                                   (long long)json_integer_value(dv), (int)dim);
        }
        keep = (int32_t)json_integer_value(dv);
        for (size_t i = 0; i < n && keep < dim; i++) {
            float *x = v + i * (size_t)dim;
            double sum = 0;
            for (int32_t k = 0; k < keep; k++)
                sum += (double)x[k] * x[k];
            double norm = sqrt(sum);
            for (int32_t k = 0; k < keep && norm > 0; k++)
                x[k] = (float)(x[k] / norm);
        }
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e;
        if (b64) {
            char *s = base64_floats(v + i * (size_t)dim, (size_t)keep);
            e = s ? json_string(s) : json_null();
            free(s);
        } else {
            e = json_array();
            for (int32_t k = 0; k < keep; k++)
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
