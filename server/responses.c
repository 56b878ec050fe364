/*
 * responses.c — OpenAI's Responses API (POST /v1/responses), streamed and
 * not, onto the chat path: the request becomes a chat-completions body
 * (instructions and input items as messages, flat function tools,
 * text.format as response_format, max_output_tokens), which openai.c's
 * checks and the model's template take as they take any chat; the parsed
 * reply becomes output items (reasoning, message, function_call).
 *
 * Nothing is stored: previous_response_id and conversation are refused
 * (send the history in input), and store is accepted and reported false.
 * A stream is the event sequence OpenAI documents: response.created and
 * .in_progress; per item output_item.added, its deltas (output_text,
 * reasoning_text, function_call_arguments), their .done events and
 * output_item.done; then response.completed (or .incomplete at
 * max_output_tokens, .failed on an error), each with a sequence_number.
 */
#include "api.h"
#include "gen.h"
#include "openai.h"
#include "roles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic uint64_t g_next_id = 1;

enum item_kind { IT_REASONING, IT_MESSAGE, IT_CALL };

struct item {
    enum item_kind kind;
    char id[96];
    char call_id[80];
    char *name;
    char *text;   /* the text, the reasoning or the call's arguments so far */
    size_t len, cap;
};

struct resp {
    char id[48];
    int64_t created;
    json_t *req;      /* the request (for the fields a response echoes) */
    int64_t seq;      /* the next event's sequence_number */
    struct item *items;
    size_t n_items;
    int open;         /* the item receiving deltas; -1: none */
    int n_calls;      /* tool calls begun */
    bool failed;      /* out of memory while streaming */
};

static enum MHD_Result bad(struct req *r, const char *msg)
{
    return reply_oai_error(r, 400, "invalid_request_error", "%s", msg);
}

/* ---- the request as a chat ------------------------------------------------------- */

/* A content value (a string, or an array of input_text / output_text /
 * text parts) as one string; NULL with msg when a part is not text. */
static char *content_text(json_t *c, const char *where, char *msg, size_t cap)
{
    if (json_is_string(c))
        return strdup(json_string_value(c));
    if (!json_is_array(c)) {
        snprintf(msg, cap, "%s.content must be a string or an array of text parts", where);
        return NULL;
    }
    size_t total = 1, i;
    json_t *p;
    json_array_foreach(c, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *t = json_string_value(json_object_get(p, "text"));
        if (!type || (strcmp(type, "input_text") && strcmp(type, "output_text") &&
                      strcmp(type, "text")) || !t) {
            snprintf(msg, cap, "%s.content[%zu]: only text parts (input_text, output_text) are "
                               "supported, not %s", where, i, type ? type : "an untyped part");
            return NULL;
        }
        total += strlen(t);
    }
    char *out = malloc(total), *w = out;
    if (!out) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    json_array_foreach(c, i, p) {
        const char *t = json_string_value(json_object_get(p, "text"));
        size_t n = strlen(t);
        memcpy(w, t, n);
        w += n;
    }
    *w = '\0';
    return out;
}

/* Appends a message {role, content} with content taken (freed). */
static int add_message(json_t *msgs, const char *role, char *content)
{
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    free(content);
    return m ? json_array_append_new(msgs, m) : -1;
}

/* input (a string, or an array of items) after instructions, as
 * chat-completions messages. 0, or -1 with msg. */
static int input_messages(json_t *b, json_t *msgs, char *msg, size_t cap)
{
    json_t *ins = json_object_get(b, "instructions");
    if (ins && !json_is_null(ins)) {
        if (!json_is_string(ins)) {
            snprintf(msg, cap, "'instructions' must be a string");
            return -1;
        }
        if (add_message(msgs, "system", strdup(json_string_value(ins))))
            goto oom;
    }
    json_t *in = json_object_get(b, "input");
    if (json_is_string(in)) {
        if (add_message(msgs, "user", strdup(json_string_value(in))))
            goto oom;
        return 0;
    }
    if (!json_is_array(in) || !json_array_size(in)) {
        snprintf(msg, cap, "'input' must be a string or a non-empty array of items");
        return -1;
    }
    json_t *calls_of = NULL; /* the assistant message function_call items join */
    size_t i;
    json_t *it;
    json_array_foreach(in, i, it) {
        char where[48];
        snprintf(where, sizeof where, "input[%zu]", i);
        if (!json_is_object(it)) {
            snprintf(msg, cap, "%s must be an object", where);
            return -1;
        }
        const char *type = json_string_value(json_object_get(it, "type"));
        const char *role = json_string_value(json_object_get(it, "role"));
        if (!type || strcmp(type, "message") == 0) {
            if (!role || (strcmp(role, "user") && strcmp(role, "assistant") &&
                          strcmp(role, "system") && strcmp(role, "developer"))) {
                snprintf(msg, cap, "%s.role must be user, assistant, system or developer", where);
                return -1;
            }
            char *text = content_text(json_object_get(it, "content"), where, msg, cap);
            if (!text)
                return -1;
            if (add_message(msgs, strcmp(role, "developer") == 0 ? "system" : role, text))
                goto oom;
            calls_of = NULL;
            if (strcmp(role, "assistant") == 0) /* calls after it are its */
                calls_of = json_array_get(msgs, json_array_size(msgs) - 1);
        } else if (strcmp(type, "function_call") == 0) {
            const char *call_id = json_string_value(json_object_get(it, "call_id"));
            const char *name = json_string_value(json_object_get(it, "name"));
            const char *args = json_string_value(json_object_get(it, "arguments"));
            if (!call_id || !name || !args) {
                snprintf(msg, cap, "%s: a function_call needs call_id, name and arguments "
                                   "(JSON text)", where);
                return -1;
            }
            if (!calls_of) { /* calls in a row are one assistant turn */
                calls_of = json_pack("{s:s, s:s}", "role", "assistant", "content", "");
                if (!calls_of || json_array_append_new(msgs, calls_of))
                    goto oom;
            }
            json_t *tc = json_object_get(calls_of, "tool_calls");
            if (!tc) {
                tc = json_array();
                json_object_set_new(calls_of, "tool_calls", tc);
            }
            if (json_array_append_new(tc, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", call_id,
                                                    "type", "function", "function", "name", name,
                                                    "arguments", args)))
                goto oom;
        } else if (strcmp(type, "function_call_output") == 0) {
            const char *call_id = json_string_value(json_object_get(it, "call_id"));
            json_t *out = json_object_get(it, "output");
            char *text = call_id ? content_text(out, where, msg, cap) : NULL;
            if (!call_id) {
                snprintf(msg, cap, "%s: a function_call_output needs call_id and output", where);
                return -1;
            }
            if (!text)
                return -1;
            json_t *m = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id,
                                  "content", text);
            free(text);
            if (!m || json_array_append_new(msgs, m))
                goto oom;
            calls_of = NULL;
        } else if (strcmp(type, "reasoning") == 0) {
            continue; /* a model's earlier thinking: templates drop it from history */
        } else {
            snprintf(msg, cap, "%s: items of type '%s' are not supported (message, "
                               "function_call, function_call_output, reasoning)", where, type);
            return -1;
        }
    }
    return 0;
oom:
    snprintf(msg, cap, "out of memory");
    return -1;
}

/* Responses' flat function tools ({type, name, description, parameters,
 * strict}) as chat tools; tool_choice's {type: function, name} too. */
static int tools_of(json_t *b, json_t *cb, char *msg, size_t cap)
{
    json_t *tools = json_object_get(b, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            snprintf(msg, cap, "'tools' must be an array of tools");
            return -1;
        }
        json_t *out = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function") != 0) {
                json_decref(out);
                snprintf(msg, cap, "tools[%zu]: only function tools are supported, not %s", i,
                         type ? type : "an untyped tool");
                return -1;
            }
            json_t *f = json_object();
            const char *keys[] = {"name", "description", "parameters", "strict"};
            for (size_t k = 0; k < 4; k++) {
                json_t *v = json_object_get(t, keys[k]);
                if (v && !json_is_null(v))
                    json_object_set(f, keys[k], v);
            }
            json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", f));
        }
        json_object_set_new(cb, "tools", out);
    }
    json_t *tc = json_object_get(b, "tool_choice");
    if (json_is_object(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name = json_string_value(json_object_get(tc, "name"));
        if (!type || strcmp(type, "function") != 0 || !name) {
            snprintf(msg, cap, "'tool_choice' must be auto, none, required or {\"type\": "
                               "\"function\", \"name\"}");
            return -1;
        }
        json_object_set_new(cb, "tool_choice", json_pack("{s:s, s:{s:s}}", "type", "function",
                                                         "function", "name", name));
    } else if (tc && !json_is_null(tc)) {
        json_object_set(cb, "tool_choice", tc);
    }
    return 0;
}

/* text.format ({type: text | json_object | json_schema, name, schema,
 * strict}) as response_format. */
static int format_of(json_t *b, json_t *cb, char *msg, size_t cap)
{
    json_t *text = json_object_get(b, "text");
    if (text && !json_is_null(text) && !json_is_object(text)) {
        snprintf(msg, cap, "'text' must be an object");
        return -1;
    }
    json_t *f = json_object_get(text, "format");
    if (!f || json_is_null(f))
        return 0;
    const char *type = json_string_value(json_object_get(f, "type"));
    if (!type) {
        snprintf(msg, cap, "'text.format.type' must be text, json_object or json_schema");
        return -1;
    }
    if (strcmp(type, "json_schema") == 0) {
        json_t *js = json_object();
        const char *keys[] = {"name", "schema", "strict"};
        for (size_t k = 0; k < 3; k++) {
            json_t *v = json_object_get(f, keys[k]);
            if (v)
                json_object_set(js, keys[k], v);
        }
        json_object_set_new(cb, "response_format",
                            json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", js));
    } else {
        json_object_set_new(cb, "response_format", json_pack("{s:s}", "type", type));
    }
    return 0;
}

/* The chat-completions body the request means; NULL with msg. */
static json_t *chat_body(json_t *b, char *msg, size_t cap)
{
    static const char *const refused[] = {"previous_response_id", "conversation", "prompt"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *v = json_object_get(b, refused[i]);
        if (v && !json_is_null(v)) {
            snprintf(msg, cap, "'%s' is not supported: this server stores no responses or "
                               "prompts; send the whole history in 'input'", refused[i]);
            return NULL;
        }
    }
    if (json_is_true(json_object_get(b, "background"))) {
        snprintf(msg, cap, "'background' is not supported: responses are not stored");
        return NULL;
    }
    json_t *cb = json_object(), *msgs = json_array();
    json_object_set_new(cb, "messages", msgs);
    if (input_messages(b, msgs, msg, cap) || tools_of(b, cb, msg, cap) ||
        format_of(b, cb, msg, cap)) {
        json_decref(cb);
        return NULL;
    }
    /* the sampling fields chat takes under the same names */
    static const char *const same[] = {"temperature", "top_p", "parallel_tool_calls", "seed",
                                       "top_k", "min_p", "repeat_penalty", "presence_penalty",
                                       "frequency_penalty", "stop", "chat_template_kwargs"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        json_t *v = json_object_get(b, same[i]);
        if (v)
            json_object_set(cb, same[i], v);
    }
    json_t *mot = json_object_get(b, "max_output_tokens");
    if (mot)
        json_object_set(cb, "max_tokens", mot);
    json_t *tl = json_object_get(b, "top_logprobs");
    if (tl && !json_is_null(tl) && !(json_is_integer(tl) && json_integer_value(tl) == 0))
        json_object_set(cb, "top_logprobs", tl); /* refused by name there */
    json_t *reasoning = json_object_get(b, "reasoning");
    const char *effort = json_string_value(json_object_get(reasoning, "effort"));
    if (effort)
        json_object_set_new(cb, "reasoning_effort", json_string(effort));
    return cb;
}

/* ---- output items ---------------------------------------------------------------- */

static json_t *item_json(const struct item *it, bool done)
{
    const char *status = done ? "completed" : "in_progress";
    switch (it->kind) {
    case IT_REASONING:
        return json_pack("{s:s, s:s, s:[], s:o, s:s}", "type", "reasoning", "id", it->id,
                         "summary", "content",
                         done ? json_pack("[{s:s, s:s%}]", "type", "reasoning_text", "text",
                                          it->text ? it->text : "", it->len)
                              : json_array(),
                         "status", status);
    case IT_MESSAGE:
        return json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "message", "id", it->id, "status",
                         status, "role", "assistant", "content",
                         done ? json_pack("[{s:s, s:s%, s:[], s:[]}]", "type", "output_text",
                                          "text", it->text ? it->text : "", it->len,
                                          "annotations", "logprobs")
                              : json_array());
    case IT_CALL:
        return json_pack("{s:s, s:s, s:s, s:s, s:s%, s:s}", "type", "function_call", "id", it->id,
                         "call_id", it->call_id, "name", it->name ? it->name : "", "arguments",
                         done && it->text ? it->text : "", done ? it->len : 0, "status", status);
    }
    return NULL;
}

static struct item *item_new(struct resp *o, enum item_kind kind, const char *call_id,
                             const char *name)
{
    struct item *n = realloc(o->items, (o->n_items + 1) * sizeof *n);
    if (!n)
        return NULL;
    o->items = n;
    struct item *it = &n[o->n_items];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    static const char *const prefix[] = {"rs", "msg", "fc"};
    if (kind == IT_CALL) {
        snprintf(it->call_id, sizeof it->call_id, "%.72s", call_id && *call_id ? call_id : "");
        if (!*it->call_id)
            snprintf(it->call_id, sizeof it->call_id, "call_%s_%zu", o->id + 5, o->n_items);
        snprintf(it->id, sizeof it->id, "fc_%s", it->call_id);
        it->name = strdup(name ? name : "");
        if (!it->name)
            return NULL;
    } else {
        snprintf(it->id, sizeof it->id, "%s_%s_%zu", prefix[kind], o->id + 5, o->n_items);
    }
    o->n_items++;
    return it;
}

static bool item_append(struct item *it, const char *s, size_t n)
{
    if (it->len + n + 1 > it->cap) {
        size_t cap = it->cap ? it->cap : 256;
        while (cap < it->len + n + 1)
            cap *= 2;
        char *t = realloc(it->text, cap);
        if (!t)
            return false;
        it->text = t;
        it->cap = cap;
    }
    memcpy(it->text + it->len, s, n);
    it->len += n;
    it->text[it->len] = '\0';
    return true;
}

static void resp_free(void *api)
{
    struct resp *o = api;
    for (size_t i = 0; i < o->n_items; i++) {
        free(o->items[i].name);
        free(o->items[i].text);
    }
    free(o->items);
}

/* The items of a reply that was not streamed: its reasoning, its text,
 * its calls. false when out of memory. */
static bool items_of_reply(struct resp *o, const struct orch_chat_reply *r)
{
    struct item *it;
    if (*r->reasoning && (!(it = item_new(o, IT_REASONING, NULL, NULL)) ||
                          !item_append(it, r->reasoning, strlen(r->reasoning))))
        return false;
    if ((*r->content || !r->n_tool_calls) && (!(it = item_new(o, IT_MESSAGE, NULL, NULL)) ||
                                              !item_append(it, r->content, strlen(r->content))))
        return false;
    for (size_t i = 0; i < r->n_tool_calls; i++)
        if (!(it = item_new(o, IT_CALL, r->tool_calls[i].id, r->tool_calls[i].name)) ||
            !item_append(it, r->tool_calls[i].arguments, strlen(r->tool_calls[i].arguments)))
            return false;
    return true;
}

/* A float as the decimal it was written as (0.95, not 0.949999988). */
static double shortest(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

/* The response object: status in_progress (no job yet), or the job's. */
static json_t *response_json(struct gen_job *j, const char *status)
{
    struct resp *o = j->api;
    json_t *b = o->req;
    json_t *out = json_pack("{s:s, s:s, s:I, s:s, s:s, s:n}", "id", o->id, "object", "response",
                            "created_at", (json_int_t)o->created, "status", status, "model",
                            j->role, "error");
    json_t *output = json_array();
    if (strcmp(status, "in_progress") != 0)
        for (size_t i = 0; i < o->n_items; i++)
            json_array_append_new(output, item_json(&o->items[i], true));
    json_object_set_new(out, "output", output);
    json_object_set_new(out, "incomplete_details",
                        strcmp(status, "incomplete") == 0
                            ? json_pack("{s:s}", "reason", "max_output_tokens")
                            : json_null());
    if (strcmp(status, "failed") == 0)
        json_object_set_new(out, "error", json_pack("{s:s, s:s}", "code", "server_error",
                                                    "message", j->err.msg));
    /* the request's settings, echoed as OpenAI does */
    json_t *ins = json_object_get(b, "instructions");
    json_object_set_new(out, "instructions", ins ? json_incref(ins) : json_null());
    json_object_set_new(out, "max_output_tokens", json_integer(j->p.max_tokens));
    json_object_set_new(out, "temperature", json_real(shortest(j->p.temperature)));
    json_object_set_new(out, "top_p", json_real(shortest(j->p.top_p)));
    json_object_set_new(out, "parallel_tool_calls", json_boolean(j->cp.parallel_tool_calls));
    json_t *tc = json_object_get(b, "tool_choice");
    json_object_set_new(out, "tool_choice", tc ? json_incref(tc) : json_string("auto"));
    json_t *tools = json_object_get(b, "tools");
    json_object_set_new(out, "tools", json_is_array(tools) ? json_incref(tools) : json_array());
    json_t *text = json_object_get(b, "text");
    json_object_set_new(out, "text", json_is_object(text) ? json_incref(text)
                                                          : json_pack("{s:{s:s}}", "format",
                                                                      "type", "text"));
    json_object_set_new(out, "previous_response_id", json_null());
    json_object_set_new(out, "store", json_false());
    json_object_set_new(out, "truncation", json_string("disabled"));
    json_t *md = json_object_get(b, "metadata");
    json_object_set_new(out, "metadata", json_is_object(md) ? json_incref(md) : json_object());
    if (strcmp(status, "in_progress") != 0)
        json_object_set_new(out, "usage",
                            json_pack("{s:i, s:{s:i}, s:i, s:i}", "input_tokens", j->res.n_prompt,
                                      "input_tokens_details", "cached_tokens", j->res.n_cached,
                                      "output_tokens", j->res.n_generated, "total_tokens",
                                      j->res.n_prompt + j->res.n_generated));
    else
        json_object_set_new(out, "usage", json_null());
    return out;
}

static const char *final_status(const struct gen_job *j)
{
    if (j->rc)
        return "failed";
    return j->res.finish == ORCH_FINISH_LENGTH ? "incomplete" : "completed";
}

/* ---- streaming ------------------------------------------------------------------ */

/* One event: "event: TYPE" and its data, with type and sequence_number set. */
static void event(struct gen_job *j, const char *type, json_t *data)
{
    struct resp *o = j->api;
    if (!data) {
        o->failed = true;
        return;
    }
    json_object_set_new(data, "type", json_string(type));
    json_object_set_new(data, "sequence_number", json_integer(o->seq++));
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (!text) {
        o->failed = true;
        return;
    }
    char head[96];
    int n = snprintf(head, sizeof head, "event: %s\ndata: ", type);
    if (!stream_write(j->st, head, (size_t)n) || !stream_write(j->st, text, strlen(text)) ||
        !stream_write(j->st, "\n\n", 2))
        o->failed = true;
    free(text);
}

static json_t *at(const struct item *it, int index)
{
    return json_pack("{s:s, s:i}", "item_id", it->id, "output_index", index);
}

static void close_open(struct gen_job *j)
{
    struct resp *o = j->api;
    if (o->open < 0)
        return;
    int idx = o->open;
    struct item *it = &o->items[idx];
    o->open = -1;
    const char *text = it->text ? it->text : "";
    json_t *d;
    switch (it->kind) {
    case IT_REASONING:
        d = at(it, idx);
        json_object_set_new(d, "content_index", json_integer(0));
        json_object_set_new(d, "text", json_stringn(text, it->len));
        event(j, "response.reasoning_text.done", d);
        d = at(it, idx);
        json_object_set_new(d, "content_index", json_integer(0));
        json_object_set_new(d, "part", json_pack("{s:s, s:s%}", "type", "reasoning_text", "text",
                                                 text, it->len));
        event(j, "response.content_part.done", d);
        break;
    case IT_MESSAGE:
        d = at(it, idx);
        json_object_set_new(d, "content_index", json_integer(0));
        json_object_set_new(d, "text", json_stringn(text, it->len));
        json_object_set_new(d, "logprobs", json_array());
        event(j, "response.output_text.done", d);
        d = at(it, idx);
        json_object_set_new(d, "content_index", json_integer(0));
        json_object_set_new(d, "part", json_pack("{s:s, s:s%, s:[]}", "type", "output_text",
                                                 "text", text, it->len, "annotations"));
        event(j, "response.content_part.done", d);
        break;
    case IT_CALL:
        d = at(it, idx);
        json_object_set_new(d, "name", json_string(it->name));
        json_object_set_new(d, "arguments", json_stringn(text, it->len));
        event(j, "response.function_call_arguments.done", d);
        break;
    }
    event(j, "response.output_item.done",
          json_pack("{s:i, s:o}", "output_index", idx, "item", item_json(it, true)));
}

/* The item of kind k receiving deltas now, opened (and the one before it
 * closed) when it is not the open one. NULL when out of memory. */
static struct item *open_item(struct gen_job *j, enum item_kind k, const char *call_id,
                              const char *name, bool new_call)
{
    struct resp *o = j->api;
    if (o->open >= 0 && o->items[o->open].kind == k && !new_call)
        return &o->items[o->open];
    close_open(j);
    struct item *it = item_new(o, k, call_id, name);
    if (!it) {
        o->failed = true;
        return NULL;
    }
    o->open = (int)(o->n_items - 1);
    event(j, "response.output_item.added",
          json_pack("{s:i, s:o}", "output_index", o->open, "item", item_json(it, false)));
    if (k != IT_CALL) { /* the one part a text or a reasoning has */
        json_t *d = at(it, o->open);
        json_object_set_new(d, "content_index", json_integer(0));
        json_object_set_new(d, "part", k == IT_MESSAGE
                                           ? json_pack("{s:s, s:s, s:[]}", "type", "output_text",
                                                       "text", "", "annotations")
                                           : json_pack("{s:s, s:s}", "type", "reasoning_text",
                                                       "text", ""));
        event(j, "response.content_part.added", d);
    }
    return it;
}

static void delta_event(struct gen_job *j, struct item *it, const char *type, const char *s)
{
    struct resp *o = j->api;
    if (!item_append(it, s, strlen(s))) {
        o->failed = true;
        return;
    }
    json_t *d = at(it, o->open);
    if (it->kind != IT_CALL)
        json_object_set_new(d, "content_index", json_integer(0));
    json_object_set_new(d, "delta", json_string(s));
    if (it->kind == IT_MESSAGE)
        json_object_set_new(d, "logprobs", json_array());
    event(j, type, d);
}

static void on_delta(struct gen_job *j, const struct orch_chat_delta *d)
{
    struct resp *o = j->api;
    struct item *it;
    if (*d->reasoning && (it = open_item(j, IT_REASONING, NULL, NULL, false)))
        delta_event(j, it, "response.reasoning_text.delta", d->reasoning);
    if (*d->content && (it = open_item(j, IT_MESSAGE, NULL, NULL, false)))
        delta_event(j, it, "response.output_text.delta", d->content);
    if (d->tool_index >= 0) {
        bool fresh = d->tool_index >= o->n_calls;
        if (fresh)
            o->n_calls = d->tool_index + 1;
        it = open_item(j, IT_CALL, d->tool_id, d->tool_name, fresh);
        if (it && *d->tool_arguments)
            delta_event(j, it, "response.function_call_arguments.delta", d->tool_arguments);
    }
}

static void run_stream(struct stream *st, void *job)
{
    struct gen_job *j = job;
    struct resp *o = j->api;
    j->st = st;
    o->open = -1;
    event(j, "response.created", json_pack("{s:o}", "response", response_json(j, "in_progress")));
    event(j, "response.in_progress",
          json_pack("{s:o}", "response", response_json(j, "in_progress")));
    j->on_delta = on_delta;
    gen_run(j);
    close_open(j);
    const char *status = final_status(j);
    char type[40];
    snprintf(type, sizeof type, "response.%s", status);
    event(j, type, json_pack("{s:o}", "response", response_json(j, status)));
    stream_account(st, j->rc == ORCH_OK ? 200 : status_for(j->rc), j->res.n_prompt,
                   j->res.n_generated);
}

/* POST /v1/responses */
static enum MHD_Result responses(struct req *r)
{
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    char msg[300];
    if (json_kind(json_object_get(r->json, "stream"), "stream", 'b', msg, sizeof msg))
        return bad(r, msg);
    json_t *cb = chat_body(r->json, msg, sizeof msg);
    if (!cb)
        return bad(r, msg);
    struct gen_job *j = gen_new(r, sizeof(struct resp));
    if (!j) {
        json_decref(cb);
        return reply_oai_error(r, 500, "server_error", "out of memory");
    }
    struct resp *o = j->api;
    o->req = j->keep;             /* the request, for what the response echoes */
    j->keep = json_pack("[O, o]", r->json, cb); /* and the chat body the job's strings are in */
    j->api_free = resp_free;
    if (!j->keep) {
        json_decref(cb);
        gen_free(j);
        return reply_oai_error(r, 500, "server_error", "out of memory");
    }
    json_decref(o->req); /* held by j->keep from here on */
    if (oai_chat_setup(j, cb, msg, sizeof msg)) {
        gen_free(j);
        return bad(r, msg);
    }
    o->created = (int64_t)time(NULL);
    snprintf(o->id, sizeof o->id, "resp_%llx%06llx", (unsigned long long)o->created,
             (unsigned long long)atomic_fetch_add(&g_next_id, 1));
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
    if (!items_of_reply(o, &j->reply)) {
        gen_free(j);
        return reply_oai_error(r, 500, "server_error", "out of memory");
    }
    json_t *out = response_json(j, final_status(j));
    gen_free(j);
    return reply_json(r, 200, out);
}

int responses_routes(struct routes *t)
{
    return routes_add(t, "POST", "/v1/responses", responses, NULL, 0, 0);
}
