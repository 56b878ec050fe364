/*
 * ollama.c — the Ollama-compatible API: /api/version, /api/tags, /api/ps,
 * /api/show, /api/generate and /api/chat (NDJSON streams by default),
 * /api/embed and the older /api/embeddings. Model names are role names.
 *
 * keep_alive (a duration such as "5m" or seconds): after the request the
 * role's model stays loaded that long when idle (orch_role_keep_alive);
 * negative keeps it loaded; 0 unloads it when the request ends. Not given:
 * the role's idle_ttl decides. An empty prompt (or no messages) with
 * keep_alive only loads or unloads.
 */
#include "api.h"
#include "gen.h"
#include "roles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static enum MHD_Result bad(struct req *r, const char *msg)
{
    return reply_olm_error(r, 400, "%s", msg);
}

/* "292.80K", "7.24B" */
static void param_size(uint64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000ull)
        snprintf(buf, cap, "%.2fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, cap, "%.2fM", (double)n / 1e6);
    else
        snprintf(buf, cap, "%.2fK", (double)n / 1e3);
}

/* A role's model as Ollama describes one (from the file's header). */
static json_t *details(const struct orch_file_info *fi)
{
    char ps[32];
    param_size(fi->n_params, ps, sizeof ps);
    return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format", "gguf",
                     "family", fi->arch, "families", fi->arch, "parameter_size", ps,
                     "quantization_level", fi->file_type);
}

/* t as Ollama writes times (UTC, to the second) */
static json_t *iso_time(time_t t)
{
    char when[64];
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(when);
}

/* What of a loaded model is on a GPU, as Ollama reports it: nothing
 * without a GPU device or with no layer offloaded; else its offloaded
 * layers' share of its bytes (llama.cpp offloads the last n_gpu_layers
 * repeating layers, and past them the output: all of it). An estimate, as
 * Ollama's is: llama.cpp does not report a model's bytes per device. */
static uint64_t size_vram(const struct orch_role_status *rs, const struct orch_file_info *fi)
{
    const char *dev = orch_llama_devices();
    if (rs->n_gpu_layers == 0 || (!strstr(dev, "(gpu,") && !strstr(dev, "(igpu,")))
        return 0;
    if (rs->n_gpu_layers < 0 || fi->n_layer <= 0 || rs->n_gpu_layers > fi->n_layer)
        return rs->bytes;
    return (uint64_t)((double)rs->bytes * (double)rs->n_gpu_layers / (double)fi->n_layer);
}

static json_t *model_entry(struct srv *s, const struct orch_role_status *rs, bool ps)
{
    struct orch_file_info fi;
    orch_error err;
    memset(&fi, 0, sizeof fi);
    orch_file_info(rs->path, &fi, &err);
    struct stat st;
    memset(&st, 0, sizeof st);
    stat(rs->path, &st);
    char dg[65];
    if (digest_sha256(&s->digests, rs->path, dg) != 0)
        dg[0] = '\0'; /* unreadable now: its error shows when it loads */
    json_t *e = json_pack("{s:s, s:s, s:I, s:s, s:o}", "name", rs->role, "model", rs->role, "size",
                          (json_int_t)(ps ? rs->bytes : fi.file_bytes), "digest", dg, "details",
                          details(&fi));
    if (rs->n_faults) { /* ours: the worker processes that ran the file died */
        json_object_set_new(e, "worker_deaths", json_integer(rs->n_faults));
        json_object_set_new(e, "worker_fault", json_string(rs->fault));
        json_object_set_new(e, "refused", json_boolean(rs->refused));
    }
    if (ps) {
        time_t t =
            time(NULL) + (rs->unload_in_ms >= 0 ? rs->unload_in_ms / 1000 : 100 * 365 * 86400L);
        json_object_set_new(e, "expires_at", iso_time(t));
        json_object_set_new(e, "size_vram", json_integer((json_int_t)size_vram(rs, &fi)));
        json_object_set_new(e, "context_length", json_integer(rs->n_ctx));
    } else {
        json_object_set_new(e, "modified_at", iso_time(st.st_mtime));
    }
    return e;
}

/* The roles' status into *st (the caller frees it); on an error, the reply
 * is sent into *ret and NULL returned. */
static struct orch_role_status *fetch_status(struct req *r, size_t *n, enum MHD_Result *ret)
{
    struct orch_role_status *st;
    orch_error err;
    int rc = orch_status(r->s->o, &st, n, NULL, &err);
    if (rc) {
        *ret = reply_olm_error(r, status_for(rc), "%s", err.msg);
        return NULL;
    }
    return st;
}

/* GET /api/ps (arg 1) and /api/tags (arg 0) */
static enum MHD_Result list(struct req *r)
{
    bool ps = r->route->arg;
    size_t n;
    enum MHD_Result ret;
    struct orch_role_status *st = fetch_status(r, &n, &ret);
    if (!st)
        return ret;
    json_t *models = json_array();
    for (size_t i = 0; i < n; i++)
        if (!ps || st[i].state == ORCH_STATE_READY)
            json_array_append_new(models, model_entry(r->s, &st[i], ps));
    free(st);
    return reply_json(r, 200, json_pack("{s:o}", "models", models));
}

/* POST /api/show */
static enum MHD_Result show(struct req *r)
{
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    size_t n;
    struct orch_role_status *st = fetch_status(r, &n, &ret);
    if (!st)
        return ret;
    orch_error err;
    const struct orch_role_status *rs = st;
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].role, r->ref.name) == 0)
            rs = &st[i];
    struct orch_file_info fi;
    memset(&fi, 0, sizeof fi);
    orch_file_info(rs->path, &fi, &err);
    const struct orch_gen_params g = r->ref.gen; /* found once, by srv_take_model */
    char params[512];
    int k = snprintf(
        params, sizeof params,
        "temperature %g\ntop_p %g\ntop_k %d\nmin_p %g\nrepeat_penalty %g\nnum_predict %d\n",
        (double)g.temperature, (double)g.top_p, g.top_k, (double)g.min_p, (double)g.repeat_penalty,
        g.max_tokens);
    for (size_t i = 0; i < g.n_stop && k > 0 && (size_t)k < sizeof params; i++)
        k += snprintf(params + k, sizeof params - (size_t)k, "stop \"%s\"\n", g.stop[i]);
    char key[64];
    json_t *info = json_pack("{s:s, s:I}", "general.architecture", fi.arch,
                             "general.parameter_count", (json_int_t)fi.n_params);
    snprintf(key, sizeof key, "%s.context_length", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_ctx_train));
    snprintf(key, sizeof key, "%s.embedding_length", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_embd));
    snprintf(key, sizeof key, "%s.block_count", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_layer));
    /* the rest of what Ollama lists that the header gives */
    snprintf(key, sizeof key, "%s.attention.head_count", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_head));
    snprintf(key, sizeof key, "%s.attention.head_count_kv", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_head_kv));
    snprintf(key, sizeof key, "%s.vocab_size", fi.arch);
    json_object_set_new(info, key, json_integer(fi.n_vocab));
    json_t *gname = fi.name[0] ? json_string(fi.name) : NULL; /* NULL: not UTF-8 */
    if (gname)
        json_object_set_new(info, "general.name", gname);
    /* the template the role's chats render with, and what it reads: a
     * template that refers to its tools takes them, one that refers to
     * thinking can think (Ollama looks at its templates' variables too) */
    char *tmpl = NULL;
    orch_role_chat_template(r->s->o, r->ref.name, &tmpl, NULL);
    json_t *caps = json_pack("[s,s]", "completion", "embedding");
    if (tmpl && strstr(tmpl, "tools"))
        json_array_append_new(caps, json_string("tools"));
    if (tmpl && (strstr(tmpl, "enable_thinking") || strstr(tmpl, "reasoning_content") ||
                 strstr(tmpl, "<think>") || strstr(tmpl, "thinking")))
        json_array_append_new(caps, json_string("thinking"));
    json_t *tj = json_string(tmpl ? tmpl : ""); /* NULL: not UTF-8 */
    json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "modelfile", "", "parameters",
                            params, "template", tj ? tj : json_string(""), "details",
                            details(&fi), "model_info", info, "capabilities", caps);
    free(tmpl);
    json_object_set_new(out, "path", json_string(srv_file_name(r->s, rs->path)));
    struct stat fst;
    if (stat(rs->path, &fst) == 0)
        json_object_set_new(out, "modified_at", iso_time(fst.st_mtime));
    free(st);
    return reply_json(r, 200, out);
}

/* Ollama's options (and keep_alive) onto the job. */
static int options(struct gen_job *j, json_t *b, char *msg, size_t cap)
{
    json_t *o = json_object_get(b, "options");
    if (o && !json_is_object(o) && !json_is_null(o)) {
        snprintf(msg, cap, "'options' must be an object");
        return -1;
    }
    long long v;
    if (json_float(json_object_get(o, "temperature"), "temperature", 0, 100, &j->p.temperature,
                   msg, cap) ||
        json_float(json_object_get(o, "top_p"), "top_p", 0, 1, &j->p.top_p, msg, cap) ||
        json_float(json_object_get(o, "min_p"), "min_p", 0, 0.999999f, &j->p.min_p, msg, cap) ||
        json_float(json_object_get(o, "repeat_penalty"), "repeat_penalty", 0.000001f, 100,
                   &j->p.repeat_penalty, msg, cap) ||
        json_float(json_object_get(o, "presence_penalty"), "presence_penalty", -2, 2,
                   &j->p.presence_penalty, msg, cap) ||
        json_float(json_object_get(o, "frequency_penalty"), "frequency_penalty", -2, 2,
                   &j->p.frequency_penalty, msg, cap))
        return -1;
    /* samplers this server does not have: refused unless at their no-op value
     * (the runner's settings, num_gpu, num_thread, num_batch, use_mmap, ...,
     * are the role's config and ignored here, as unknown options are) */
    static const struct {
        const char *name;
        double off;
    } absent[] = {{"typical_p", 1}, {"tfs_z", 1}, {"mirostat", 0}};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        json_t *x = json_object_get(o, absent[i].name);
        bool off = json_is_number(x) && json_number_value(x) == absent[i].off;
        if (x && !json_is_null(x) && !off) {
            snprintf(msg, cap, "option '%s' is not supported by this server", absent[i].name);
            return -1;
        }
    }
    if (j->p.top_p <= 0)
        j->p.top_p = 1e-6f;
    v = -3;
    if (json_int(json_object_get(o, "top_k"), "top_k", 0, 1000000, &v, msg, cap))
        return -1;
    if (v != -3)
        j->p.top_k = (int32_t)v;
    v = -3;
    if (json_int(json_object_get(o, "num_predict"), "num_predict", -2, ORCH_N_CTX_MAX, &v, msg,
                 cap))
        return -1;
    if (v == -1 || v == -2) /* unbounded / fill the context: up to the context */
        j->p.max_tokens = ORCH_N_CTX_MAX;
    else if (v > 0)
        j->p.max_tokens = (int32_t)v;
    else if (v == 0) {
        snprintf(msg, cap, "'num_predict' must not be 0");
        return -1;
    }
    v = 0;
    if (json_int(json_object_get(o, "num_ctx"), "num_ctx", 1, ORCH_N_CTX_MAX, &v, msg, cap))
        return -1;
    if (v)
        j->p.n_ctx = (int32_t)v;
    v = -1;
    if (json_int(json_object_get(o, "seed"), "seed", -1, 0xFFFFFFFELL, &v, msg, cap))
        return -1;
    if (v >= 0)
        j->p.seed = (uint32_t)v;
    v = -3;
    if (json_int(json_object_get(o, "repeat_last_n"), "repeat_last_n", -1, ORCH_N_CTX_MAX, &v, msg,
                 cap))
        return -1;
    if (v != -3)
        j->p.repeat_last_n = (int32_t)v;
    if (json_stops(json_object_get(o, "stop"), j->stops, &j->p.n_stop, msg, cap))
        return -1;
    if (j->p.n_stop)
        j->p.stop = j->stops;
    return 0;
}

#define KEEP_NOT_GIVEN INT64_MIN

/* Milliseconds from a client's double: past any clock (or not a number
 * at all) is forever (-1), never an overflow. */
static int64_t keep_ms_of(double ms)
{
    return ms > -1e15 && ms < 1e15 ? (int64_t)ms : -1;
}

/* keep_alive: a number of seconds, or a duration ("5m", "300s", "1h", "-1").
 * Returns 0 (*ms set; negative = keep; KEEP_NOT_GIVEN) or -1 with msg. */
static int keep_alive(json_t *v, int64_t *ms, char *msg, size_t cap)
{
    *ms = KEEP_NOT_GIVEN; /* the role's idle_ttl decides */
    if (!v || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        *ms = keep_ms_of(json_number_value(v) * 1000);
        return 0;
    }
    const char *s = json_string_value(v);
    char *end;
    double x = s ? strtod(s, &end) : NAN;
    if (!s || end == s || isnan(x)) {
        snprintf(msg, cap, "'keep_alive' must be seconds or a duration such as \"5m\"");
        return -1;
    }
    double mult = 1000;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (*end && strcmp(end, "s") != 0) {
        snprintf(msg, cap, "'keep_alive' \"%.20s\": expected a duration such as \"5m\" or \"30s\"",
                 s);
        return -1;
    }
    *ms = keep_ms_of(x * mult);
    return 0;
}

struct olm {
    bool chat;
    int64_t keep_ms;
    char model[64];
};

/* A chat's tool calls as Ollama gives them: arguments as an object. */
static json_t *olm_tool_calls(const struct orch_chat_reply *r)
{
    json_t *calls = json_array();
    for (size_t i = 0; i < r->n_tool_calls; i++) {
        json_t *args = json_loads(r->tool_calls[i].arguments, JSON_DECODE_ANY, NULL);
        json_array_append_new(calls, json_pack("{s:{s:i, s:s, s:o}}", "function", "index", (int)i,
                                               "name", r->tool_calls[i].name, "arguments",
                                               args ? args : json_object()));
    }
    return calls;
}

/* /api/generate's context: the tokens an earlier reply gave, before this
 * prompt; and this reply's, asked for. 0, or -1 with msg. */
static int context_field(struct gen_job *j, json_t *b, char *msg, size_t cap)
{
    j->p.return_context = true;
    json_t *c = json_object_get(b, "context");
    if (!c || json_is_null(c) || (json_is_array(c) && !json_array_size(c)))
        return 0;
    size_t n = json_array_size(c);
    if (!json_is_array(c) || n > ORCH_N_CTX_MAX) {
        snprintf(msg, cap, "'context' must be the array of tokens an earlier reply gave");
        return -1;
    }
    int32_t *t = malloc(n * sizeof *t);
    if (!t || !gen_own(j, (char *)t)) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(c, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX) {
            snprintf(msg, cap, "'context[%zu]' must be a token: a whole number of 0 or more", i);
            return -1;
        }
        t[i] = (int32_t)json_integer_value(v);
    }
    j->p.context = t;
    j->p.n_context = n;
    return 0;
}

/* Ollama's chat fields: tools (and tool_choice, which Ollama lacks: ours),
 * format ("json" or a schema), think (false: not thinking); on /api/chat,
 * generate's context is refused too. */
static int chat_fields(struct gen_job *j, json_t *b, bool chat, char *msg, size_t cap)
{
    /* generate's fields this server does not have, refused by name */
    static const char *const refused[] = {"template", "images", "suffix", "context"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused - (chat ? 0 : 2); i++) {
        json_t *v = json_object_get(b, refused[i]);
        bool empty = !v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)) ||
                     (json_is_array(v) && !json_array_size(v));
        if (!empty) {
            snprintf(msg, cap, "'%s' is not supported by this server", refused[i]);
            return -1;
        }
    }
    if (gen_tools(j, json_object_get(b, "tools"), msg, cap) ||
        gen_tool_choice(j, json_object_get(b, "tool_choice"), msg, cap))
        return -1;
    json_t *f = json_object_get(b, "format");
    const char *fs = json_string_value(f);
    if (fs && strcmp(fs, "json") == 0) {
        json_t *any = json_object(); /* any JSON value */
        int rc = gen_schema(j, any, "format", msg, cap);
        json_decref(any);
        if (rc)
            return -1;
    } else if (json_is_object(f)) {
        if (gen_schema(j, f, "format", msg, cap))
            return -1;
    } else if (f && !json_is_null(f) && !(fs && !*fs)) {
        snprintf(msg, cap, "'format' must be \"json\" or a JSON schema");
        return -1;
    }
    json_t *think = json_object_get(b, "think");
    const char *level = json_string_value(think);
    if (json_kind(think, "think", 'b', msg, cap) && !level)
        return -1;
    if (json_is_false(think))
        j->cp.reasoning = ORCH_REASONING_OFF;
    if (level) { /* "low", "medium", "high": GPT-OSS's reasoning effort */
        json_t *kw = json_pack("{s:s}", "reasoning_effort", level);
        j->cp.template_kwargs = gen_own(j, json_dumps(kw, JSON_COMPACT));
        json_decref(kw);
    }
    return 0;
}

/* The final object of a reply, with Ollama's timings (nanoseconds). */
static json_t *final_obj(struct gen_job *j, bool streamed)
{
    struct olm *o = j->api;
    char now[64];
    rfc3339_now(now, sizeof now);
    json_t *out = json_pack("{s:s, s:s}", "model", o->model, "created_at", now);
    const char *text = streamed ? "" : j->chat ? j->reply.content : j->res.text;
    size_t len = strlen(text);
    const char *thinking = !streamed && j->chat ? j->reply.reasoning : "";
    if (o->chat) {
        json_t *m = json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len);
        if (*thinking)
            json_object_set_new(m, "thinking", json_string(thinking));
        if (!streamed && j->reply.n_tool_calls)
            json_object_set_new(m, "tool_calls", olm_tool_calls(&j->reply));
        json_object_set_new(out, "message", m);
    } else {
        json_object_set_new(out, "response", json_stringn(text, len));
        if (*thinking)
            json_object_set_new(out, "thinking", json_string(thinking));
    }
    json_object_set_new(out, "done", json_true());
    json_object_set_new(out, "done_reason",
                        json_string(j->res.finish == ORCH_FINISH_LENGTH ? "length" : "stop"));
    json_object_set_new(out, "total_duration", json_integer((json_int_t)(j->total_ms * 1e6)));
    json_object_set_new(out, "load_duration",
                        json_integer((json_int_t)(j->res.load_wait_ms * 1e6)));
    json_object_set_new(out, "prompt_eval_count", json_integer(j->res.n_prompt));
    json_object_set_new(out, "prompt_eval_duration",
                        json_integer((json_int_t)(j->res.prompt_ms * 1e6)));
    json_object_set_new(out, "eval_count", json_integer(j->res.n_generated));
    json_object_set_new(out, "eval_duration", json_integer((json_int_t)(j->res.gen_ms * 1e6)));
    if (j->p.return_context) { /* generate's: the conversation's tokens, to send back */
        json_t *c = json_array();
        for (size_t i = 0; i < j->res.n_context; i++)
            json_array_append_new(c, json_integer(j->res.context[i]));
        json_object_set_new(out, "context", c);
    }
    return out;
}

static bool on_piece(struct gen_job *j, const char *text, size_t n)
{
    struct olm *o = j->api;
    char now[64];
    rfc3339_now(now, sizeof now);
    json_t *e = o->chat ? json_pack("{s:s, s:s, s:{s:s, s:s%}, s:b}", "model", o->model,
                                    "created_at", now, "message", "role", "assistant", "content",
                                    text, n, "done", 0)
                        : json_pack("{s:s, s:s, s:s%, s:b}", "model", o->model, "created_at", now,
                                    "response", text, n, "done", 0);
    return stream_ndjson(j->st, e);
}

/* A chat's parsed change: content and thinking as they grow (a tool call
 * comes whole, before the last object, as Ollama sends it). */
static void on_delta(struct gen_job *j, const struct orch_chat_delta *d)
{
    struct olm *o = j->api;
    if (!*d->content && !*d->reasoning)
        return;
    char now[64];
    rfc3339_now(now, sizeof now);
    json_t *e = json_pack("{s:s, s:s}", "model", o->model, "created_at", now);
    json_t *body = o->chat ? json_pack("{s:s, s:s}", "role", "assistant", "content", d->content)
                           : NULL;
    if (o->chat) {
        if (*d->reasoning)
            json_object_set_new(body, "thinking", json_string(d->reasoning));
        json_object_set_new(e, "message", body);
    } else {
        json_object_set_new(e, "response", json_string(d->content));
        if (*d->reasoning)
            json_object_set_new(e, "thinking", json_string(d->reasoning));
    }
    json_object_set_new(e, "done", json_false());
    stream_ndjson(j->st, e);
}

static void after(struct gen_job *j)
{
    struct olm *o = j->api;
    if (o->keep_ms != KEEP_NOT_GIVEN)
        orch_role_keep_alive(j->s->o, j->role, o->keep_ms, NULL);
}

static void run_stream(struct stream *st, void *job)
{
    struct gen_job *j = job;
    j->st = st;
    if (j->chat)
        j->on_delta = on_delta;
    else
        j->on_piece = on_piece;
    gen_run(j);
    if (j->rc == ORCH_OK && j->reply.n_tool_calls) {
        struct olm *o = j->api;
        char now[64];
        rfc3339_now(now, sizeof now);
        stream_ndjson(st, json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:b}", "model", o->model,
                             "created_at", now, "message", "role", "assistant", "content", "",
                             "tool_calls", olm_tool_calls(&j->reply), "done", 0));
    }
    if (j->rc == ORCH_OK)
        stream_ndjson(st, final_obj(j, true));
    else
        stream_ndjson(st, json_pack("{s:s}", "error", j->err.msg));
    stream_account(st, j->rc == ORCH_OK ? 200 : status_for(j->rc), j->res.n_prompt,
                   j->res.n_generated);
    after(j);
}

/* POST /api/chat (arg 1) and /api/generate (arg 0) */
static enum MHD_Result generate(struct req *r)
{
    bool chat = r->route->arg;
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    struct gen_job *j = gen_new(r, sizeof(struct olm));
    if (!j)
        return reply_olm_error(r, 500, "out of memory");
    struct olm *o = j->api;
    o->chat = chat;
    snprintf(o->model, sizeof o->model, "%s", r->ref.name);
    char msg[300];
    if (options(j, r->json, msg, sizeof msg) ||
        keep_alive(json_object_get(r->json, "keep_alive"), &o->keep_ms, msg, sizeof msg) ||
        json_kind(json_object_get(r->json, "stream"), "stream", 'b', msg, sizeof msg) ||
        json_kind(json_object_get(r->json, "system"), "system", 's', msg, sizeof msg)) {
        gen_free(j);
        return bad(r, msg);
    }
    json_t *body = r->json;
    bool empty;
    if (chat) {
        json_t *ms = json_object_get(body, "messages");
        empty = !ms || json_is_null(ms) || (json_is_array(ms) && json_array_size(ms) == 0);
        if (!empty && gen_messages(j, ms, msg, sizeof msg)) {
            gen_free(j);
            return bad(r, msg);
        }
    } else {
        json_t *p = json_object_get(body, "prompt");
        if (p && !json_is_string(p) && !json_is_null(p)) {
            gen_free(j);
            return bad(r, "'prompt' must be a string");
        }
        j->prompt = json_is_string(p) ? json_string_value(p) : "";
        json_t *sfx = json_object_get(body, "suffix");
        if (sfx && !json_is_string(sfx) && !json_is_null(sfx)) {
            gen_free(j);
            return bad(r, "'suffix' must be a string");
        }
        if (json_string_length(sfx)) /* fill-in-the-middle: the FIM tokens, no template */
            j->p.suffix = json_string_value(sfx);
        empty = !*j->prompt && !j->p.suffix;
        const char *system = json_string_value(json_object_get(body, "system"));
        json_t *raw = json_object_get(body, "raw");
        if (json_kind(raw, "raw", 'b', msg, sizeof msg)) {
            gen_free(j);
            return bad(r, msg);
        }
        if (!empty && !json_is_true(raw) && !j->p.suffix) {
            /* through the model's template as one user turn (and the system
             * message), as Ollama does unless raw */
            size_t n = system && *system ? 2 : 1;
            j->msgs = calloc(n, sizeof *j->msgs);
            if (j->msgs) {
                j->n_msgs = n; /* gen_free frees what was copied */
                if (n == 2)
                    j->msgs[0] = (struct orch_chat_message){"system", strdup(system)};
                j->msgs[n - 1] = (struct orch_chat_message){"user", strdup(j->prompt)};
                j->chat = true;
                j->cp.prompt_without_template = true; /* Ollama's default: {{ .Prompt }} */
            }
            if (!j->msgs || !j->msgs[0].content || !j->msgs[n - 1].content) {
                gen_free(j);
                return reply_olm_error(r, 500, "out of memory");
            }
        }
    }
    if (!empty && (chat_fields(j, body, chat, msg, sizeof msg) ||
                   (!chat && context_field(j, body, msg, sizeof msg)))) {
        gen_free(j);
        return bad(r, msg);
    }
    if (!empty && !j->chat && j->cp.tools) {
        gen_free(j);
        return bad(r, "'tools' need the model's template ('raw' is true)");
    }
    if (!j->chat)
        j->p.json_schema = j->cp.json_schema; /* raw: the format constrains the text alone */
    if (empty) {
        /* load (or, with keep_alive 0, unload) without generating */
        orch_error err;
        int rc = ORCH_OK;
        const char *reason = "load";
        if (o->keep_ms == 0) {
            reason = "unload";
            rc = orch_role_keep_alive(r->s->o, r->ref.name, 0, &err);
        } else {
            orch_model *m;
            rc = orch_role_acquire(r->s->o, r->ref.name, &m, &err);
            if (rc == ORCH_OK)
                orch_role_release(r->s->o, m);
            if (rc == ORCH_OK && o->keep_ms != KEEP_NOT_GIVEN)
                rc = orch_role_keep_alive(r->s->o, r->ref.name, o->keep_ms, &err);
        }
        if (rc) {
            gen_free(j);
            return reply_olm_error(r, status_for(rc), "%s", err.msg);
        }
        char now[64];
        rfc3339_now(now, sizeof now);
        json_t *out = json_pack("{s:s, s:s, s:b, s:s}", "model", r->ref.name, "created_at", now,
                                "done", 1, "done_reason", reason);
        json_object_set_new(out, chat ? "message" : "response",
                            chat ? json_pack("{s:s, s:s}", "role", "assistant", "content", "")
                                 : json_string(""));
        gen_free(j);
        return reply_json(r, 200, out);
    }
    json_t *stream = json_object_get(body, "stream");
    if (!json_is_false(stream)) /* Ollama streams unless told not to */
        return reply_stream(r, "application/x-ndjson", run_stream, j, gen_free);
    gen_run(j);
    r->tok_in = j->res.n_prompt;
    r->tok_out = j->res.n_generated;
    if (j->rc) {
        ret = reply_olm_error(r, status_for(j->rc), "%s", j->err.msg);
        after(j);
        gen_free(j);
        return ret;
    }
    json_t *out = final_obj(j, false);
    after(j);
    gen_free(j);
    return reply_json(r, 200, out);
}

/* POST /api/embeddings (arg 1: the older shape) and /api/embed (arg 0) */
static enum MHD_Result embed(struct req *r)
{
    bool legacy = r->route->arg;
    enum MHD_Result ret;
    if (srv_take_model(r, &ret) < 0)
        return ret;
    int64_t t0 = srv_now_ns();
    int64_t keep_ms;
    char msg[300];
    if (keep_alive(json_object_get(r->json, "keep_alive"), &keep_ms, msg, sizeof msg))
        return bad(r, msg);
    json_t *input = json_object_get(r->json, legacy ? "prompt" : "input");
    if (!legacy && (!input || (json_is_array(input) && json_array_size(input) == 0) ||
                    (json_is_string(input) && !json_string_length(input)))) {
        /* no text: Ollama loads the model and answers no vectors */
        const char *name = r->ref.name;
        orch_error err;
        int rc = orch_preload(r->s->o, &name, 1, &err);
        if (rc)
            return reply_olm_error(r, status_for(rc), "%s", err.msg);
        if (keep_ms != KEEP_NOT_GIVEN)
            orch_role_keep_alive(r->s->o, r->ref.name, keep_ms, NULL);
        int64_t dt = srv_now_ns() - t0;
        return reply_json(r, 200,
                          json_pack("{s:s, s:[], s:I, s:I, s:I}", "model", r->ref.name,
                                    "embeddings", "total_duration", (json_int_t)dt,
                                    "load_duration", (json_int_t)dt, "prompt_eval_count",
                                    (json_int_t)0));
    }
    struct embedded em;
    int st;
    char err_msg[ORCH_ERROR_MSG_MAX];
    json_t *tr = json_object_get(r->json, "truncate"); /* Ollama's default: true */
    if (tr && !json_is_boolean(tr) && !json_is_null(tr))
        return bad(r, "'truncate' must be true or false");
    if (srv_embed(r, input, !legacy, !json_is_false(tr), &em, &st, err_msg, sizeof err_msg))
        return reply_olm_error(r, st, "%s", err_msg);
    size_t n = em.n;
    int32_t dim = em.dim;
    float *v = em.v;
    if (keep_ms != KEEP_NOT_GIVEN)
        orch_role_keep_alive(r->s->o, r->ref.name, keep_ms, NULL);
    json_t *vecs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array();
        for (int32_t k = 0; k < dim; k++)
            json_array_append_new(e, json_real(v[i * (size_t)dim + (size_t)k]));
        json_array_append_new(vecs, e);
    }
    free(v);
    if (legacy) {
        json_t *one = json_incref(json_array_get(vecs, 0));
        json_decref(vecs);
        return reply_json(r, 200, json_pack("{s:o}", "embedding", one));
    }
    json_t *out = json_pack("{s:s, s:o, s:I, s:I, s:I}", "model", r->ref.name, "embeddings", vecs,
                            "total_duration", (json_int_t)(srv_now_ns() - t0), "load_duration",
                            (json_int_t)0, "prompt_eval_count", (json_int_t)em.n_tokens);
    return reply_json(r, 200, out);
}

/* GET /api/version */
static enum MHD_Result version(struct req *r)
{
    return reply_json(r, 200, json_pack("{s:s}", "version", ORCH_VERSION));
}

int ollama_routes(struct routes *t)
{
    return routes_add(t, "GET", "/api/version", version, NULL, 0, 0) ||
           routes_add(t, "GET", "/api/tags", list, NULL, 0, 0) ||
           routes_add(t, "GET", "/api/ps", list, NULL, 1, 0) ||
           routes_add(t, "POST", "/api/show", show, NULL, 0, 0) ||
           routes_add(t, "POST", "/api/generate", generate, NULL, 0, 0) ||
           routes_add(t, "POST", "/api/chat", generate, NULL, 1, 0) ||
           routes_add(t, "POST", "/api/embed", embed, NULL, 0, 0) ||
           routes_add(t, "POST", "/api/embeddings", embed, NULL, 1, 0)
               ? -1
               : 0;
}
