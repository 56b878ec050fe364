/*
 * chat.c — chat on a managed model, whatever the backend: messages checked,
 * rendered by the backend's template engine (or a plain transcript), the
 * reply generated under the constraint the request asks for (tools, JSON
 * schema, grammar) and parsed into content, reasoning and tool calls.
 *
 * DESIGN
 * A backend with a chat layer (chat_apply, backend.h) renders a request
 * into a prompt, a constraint for its sampler, stop strings and a parser
 * for the reply. The generation layer (generate.c) runs the prompt as any
 * other, with the constraint; the text it delivers is fed, as it grows, to
 * the parser, whose changes go to the caller's on_delta. The parser runs in
 * the caller's process: it reads text only, never the model.
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

struct orch_chat_params orch_chat_default_params(void)
{
    struct orch_chat_params p;
    memset(&p, 0, sizeof p);
    p.tool_choice = ORCH_TOOLS_AUTO;
    p.reasoning = ORCH_REASONING_DEFAULT;
    return p;
}

void orch__chat_applied_clear(struct orch__chat_applied *a)
{
    if (!a)
        return;
    free(a->prompt);
    free(a->constraint);
    free(a->parser);
    for (size_t i = 0; i < a->n_stops; i++)
        free(a->stops[i]);
    free(a->stops);
    memset(a, 0, sizeof *a);
}

static void reply_clear(struct orch_chat_reply *r)
{
    free(r->content);
    free(r->reasoning);
    for (size_t i = 0; i < r->n_tool_calls; i++) {
        free((char *)r->tool_calls[i].id);
        free((char *)r->tool_calls[i].name);
        free((char *)r->tool_calls[i].arguments);
    }
    free(r->tool_calls);
    memset(r, 0, sizeof *r);
}

void orch_chat_result_clear(struct orch_chat_result *res)
{
    if (!res)
        return;
    orch_gen_result_clear(&res->gen);
    reply_clear(&res->reply);
}

/* ---- the request ------------------------------------------------------------ */

static bool is_role(const char *r, const char *name)
{
    return strcmp(r, name) == 0;
}

static int check_opt_text(const char *what, size_t i, const char *s, orch_error *err)
{
    if (!s)
        return ORCH_OK;
    int rc = orch__check_text(what, s, err);
    if (rc)
        orch__err_prefix(err, "message %zu", i);
    return rc;
}

static int check_message(const struct orch_chat_message *m, size_t i, orch_error *err)
{
    const char *r = m->role;
    if (!r || (!is_role(r, "system") && !is_role(r, "user") && !is_role(r, "assistant") &&
               !is_role(r, "tool")))
        return orch__err(err, ORCH_EINVAL,
                         "message %zu has chat role '%s' (expected system, user, assistant or "
                         "tool)", i, r ? r : "(null)");
    if (!m->content && !(is_role(r, "assistant") && m->n_tool_calls))
        return orch__err(err, ORCH_EINVAL, "message %zu (%s) has no content", i, r);
    if (m->n_tool_calls && !is_role(r, "assistant"))
        return orch__err(err, ORCH_EINVAL, "message %zu: only an assistant message has tool "
                         "calls (this one is %s)", i, r);
    if (m->n_tool_calls && !m->tool_calls)
        return orch__err(err, ORCH_EINVAL, "message %zu: n_tool_calls is %zu but tool_calls "
                         "is NULL", i, m->n_tool_calls);
    int rc = check_opt_text("the content", i, m->content, err);
    if (!rc)
        rc = check_opt_text("tool_call_id", i, m->tool_call_id, err);
    if (!rc)
        rc = check_opt_text("the tool name", i, m->name, err);
    if (!rc)
        rc = check_opt_text("the reasoning", i, m->reasoning, err);
    for (size_t k = 0; k < m->n_tool_calls && !rc; k++) {
        const struct orch_tool_call *c = &m->tool_calls[k];
        if (!c->name || !c->name[0])
            return orch__err(err, ORCH_EINVAL, "message %zu: tool call %zu has no name", i, k);
        rc = check_opt_text("a tool call's name", i, c->name, err);
        if (!rc)
            rc = check_opt_text("a tool call's id", i, c->id, err);
        if (!rc)
            rc = check_opt_text("a tool call's arguments", i, c->arguments, err);
    }
    return rc;
}

/* Every tool message answers a call made earlier in the conversation (by
 * its id, when it gives one and the calls had ids). */
static int check_tool_ids(const struct orch_chat_message *msgs, size_t n, orch_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_role(msgs[i].role, "tool") || !msgs[i].tool_call_id)
            continue;
        bool found = false;
        for (size_t j = 0; j < i && !found; j++)
            for (size_t k = 0; k < msgs[j].n_tool_calls && !found; k++)
                found = msgs[j].tool_calls[k].id &&
                        strcmp(msgs[j].tool_calls[k].id, msgs[i].tool_call_id) == 0;
        if (!found)
            return orch__err(err, ORCH_EINVAL,
                             "message %zu answers tool call '%s', which no earlier assistant "
                             "message made", i, msgs[i].tool_call_id);
    }
    return ORCH_OK;
}

static int check_chat(const struct orch_chat_message *msgs, size_t n,
                      const struct orch_chat_params *cp, orch_error *err)
{
    if (!msgs || n == 0)
        return orch__err(err, ORCH_EINVAL, "a chat needs at least one message");
    for (size_t i = 0; i < n; i++) {
        int rc = check_message(&msgs[i], i, err);
        if (rc)
            return rc;
    }
    int rc = check_tool_ids(msgs, n, err);
    if (rc)
        return rc;
    if (cp->tool_choice > ORCH_TOOLS_FUNCTION)
        return orch__err(err, ORCH_EINVAL, "tool_choice %d is not one of enum orch_tool_choice",
                         (int)cp->tool_choice);
    if (cp->tool_choice == ORCH_TOOLS_FUNCTION && (!cp->tool_name || !cp->tool_name[0]))
        return orch__err(err, ORCH_EINVAL, "tool_choice names a function but tool_name is empty");
    if ((cp->tool_choice == ORCH_TOOLS_REQUIRED || cp->tool_choice == ORCH_TOOLS_FUNCTION) &&
        !cp->tools)
        return orch__err(err, ORCH_EINVAL, "tool_choice requires a tool call but no tools are "
                         "given");
    if (cp->reasoning > ORCH_REASONING_OFF)
        return orch__err(err, ORCH_EINVAL, "reasoning %d is not one of enum orch_reasoning",
                         (int)cp->reasoning);
    if (cp->grammar && (cp->json_schema || cp->tools))
        return orch__err(err, ORCH_EINVAL, "a grammar cannot be combined with a JSON schema or "
                         "tools");
    const char *texts[] = {cp->tools, cp->tool_name, cp->json_schema, cp->grammar,
                           cp->template_kwargs};
    static const char *const names[] = {"tools", "tool_name", "json_schema", "grammar",
                                        "template_kwargs"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        if (texts[i] && (rc = orch__check_text(names[i], texts[i], err)) != ORCH_OK)
            return rc;
    return ORCH_OK;
}

static const char *role_title(const char *role)
{
    if (is_role(role, "system"))
        return "System";
    if (is_role(role, "user"))
        return "User";
    if (is_role(role, "tool"))
        return "Tool";
    return "Assistant";
}

static int transcript(const struct orch_chat_message *msgs, size_t n, bool add_assistant,
                      char **out)
{
    struct orch__buf b = {0};
    int rc = ORCH_OK;
    for (size_t i = 0; i < n && rc == ORCH_OK; i++) {
        const char *t = role_title(msgs[i].role);
        const char *c = msgs[i].content ? msgs[i].content : "";
        rc = orch__buf_append(&b, t, strlen(t));
        if (!rc)
            rc = orch__buf_append(&b, ": ", 2);
        if (!rc)
            rc = orch__buf_append(&b, c, strlen(c));
        if (!rc)
            rc = orch__buf_append(&b, "\n", 1);
    }
    if (!rc && add_assistant)
        rc = orch__buf_append(&b, "Assistant:", 10);
    if (!rc)
        rc = orch__buf_append(&b, "", 0);
    if (rc) {
        orch__buf_free(&b);
        return rc;
    }
    *out = b.data;
    return ORCH_OK;
}

/* Renders the request: the backend's template, else a transcript with the
 * constraint a schema or grammar asks for. */
static int apply(orch_model *m, const struct orch_chat_message *msgs, size_t n,
                 const struct orch_chat_params *cp, const char *template_src,
                 bool add_assistant, struct orch__chat_applied *out, orch_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = check_chat(msgs, n, cp, err);
    if (rc)
        return rc;
    const orch_backend *be = orch__model_backend(m);
    if (be->ops->chat_apply) {
        struct orch__chat_req req = {.msgs = msgs,
                                     .n_msgs = n,
                                     .add_assistant = add_assistant,
                                     .template_src = template_src,
                                     .params = cp};
        rc = be->ops->chat_apply(orch__model_backend_obj(m), &req, out, err);
    } else if (cp->tools || cp->json_schema || cp->grammar || template_src) {
        rc = orch__err(err, ORCH_ENOTSUP, "backend %s has no chat templates, tools or grammars",
                       be->ops->name);
    }
    if (rc == ORCH_OK && !out->prompt && cp->prompt_without_template && n == 1 &&
        is_role(msgs[0].role, "user") && !(out->prompt = orch__strdup(msgs[0].content)))
        rc = orch__err(err, ORCH_ENOMEM, "out of memory formatting chat");
    if (rc == ORCH_OK && !out->prompt && transcript(msgs, n, add_assistant, &out->prompt))
        rc = orch__err(err, ORCH_ENOMEM, "out of memory formatting chat");
    if (rc)
        orch__chat_applied_clear(out);
    return rc;
}

int orch__chat_format_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                             const struct orch_chat_params *cp, const char *template_src,
                             bool add_assistant, char **out, orch_error *err)
{
    struct orch_chat_params defaults = orch_chat_default_params();
    struct orch__chat_applied a;
    *out = NULL;
    int rc = apply(m, msgs, n_msgs, cp ? cp : &defaults, template_src, add_assistant, &a, err);
    if (rc == ORCH_OK) {
        *out = a.prompt;
        a.prompt = NULL;
    }
    orch__chat_applied_clear(&a);
    return rc;
}

int orch_model_chat_format(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                           bool add_assistant, char **out, orch_error *err)
{
    if (!m || !out)
        return orch__err(err, ORCH_EINVAL, "orch_model_chat_format: NULL argument");
    *out = NULL;
    int rc = orch__model_acquire(m, err);
    if (rc == ORCH_OK) {
        rc = orch__chat_format_leased(m, msgs, n_msgs, NULL, NULL, add_assistant, out, err);
        orch_model_release(m);
    }
    return orch__named(m, rc, err);
}

int orch_model_chat_render(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                           const struct orch_chat_params *chat, const char *template_src,
                           bool add_assistant, char **out, orch_error *err)
{
    if (!m || !out)
        return orch__err(err, ORCH_EINVAL, "orch_model_chat_render: NULL argument");
    *out = NULL;
    int rc = orch__model_acquire(m, err);
    if (rc == ORCH_OK) {
        rc = orch__chat_format_leased(m, msgs, n_msgs, chat, template_src, add_assistant, out,
                                      err);
        orch_model_release(m);
    }
    return orch__named(m, rc, err);
}

/* ---- the reply ----------------------------------------------------------------- */

/* Between the generation's text and the parser: the text so far, fed to the
 * parser as it grows; the caller's own text callback still runs. */
struct chat_sink {
    const struct orch_gen_params *user;   /* the caller's params */
    const struct orch_chat_params *cp;
    const orch_backend *be;
    void *parser;                         /* NULL: the text is the content */
    struct orch__buf text;
    int rc;
    orch_error err;
};

static void on_change(void *ud, const struct orch_chat_delta *d)
{
    struct chat_sink *s = ud;
    if (s->cp->on_delta)
        s->cp->on_delta(d, s->cp->user_data);
}

static bool chat_on_text(const char *text, size_t len, void *ud)
{
    struct chat_sink *s = ud;
    if (s->user->on_text && !s->user->on_text(text, len, s->user->user_data))
        return false;
    if (!s->cp->on_delta)
        return true; /* parsed once at the end */
    if (orch__buf_append(&s->text, text, len) != ORCH_OK) {
        s->rc = orch__err(&s->err, ORCH_ENOMEM, "out of memory parsing the reply");
        return false;
    }
    if (!s->parser) {
        char *piece = strndup(text, len);
        if (!piece) {
            s->rc = orch__err(&s->err, ORCH_ENOMEM, "out of memory parsing the reply");
            return false;
        }
        struct orch_chat_delta d = {.content = piece, .reasoning = "", .tool_index = -1,
                                    .tool_id = "", .tool_name = "", .tool_arguments = ""};
        on_change(s, &d);
        free(piece);
        return true;
    }
    struct orch__chat_delta_sink ds = {.fn = on_change, .ud = s};
    int rc = s->be->ops->parser_feed(s->parser, s->text.data, s->text.len, true, &ds, &s->err);
    if (rc) {
        s->rc = rc;
        return false;
    }
    return true;
}

static int plain_reply(const char *text, struct orch_chat_reply *r, orch_error *err)
{
    memset(r, 0, sizeof *r);
    r->content = orch__strdup(text);
    r->reasoning = orch__strdup("");
    if (!r->content || !r->reasoning) {
        reply_clear(r);
        return orch__err(err, ORCH_ENOMEM, "out of memory for the reply");
    }
    return ORCH_OK;
}

/* The whole text, parsed once more as final (the last changes to on_delta),
 * into the reply. */
static int finish_reply(struct chat_sink *s, const char *text, size_t len,
                        struct orch_chat_reply *r, orch_error *err)
{
    if (!s->parser)
        return plain_reply(text, r, err);
    struct orch__chat_delta_sink ds = {.fn = on_change, .ud = s};
    int rc = s->be->ops->parser_feed(s->parser, text, len, false, &ds, err);
    if (rc == ORCH_OK)
        rc = s->be->ops->parser_message(s->parser, r, err);
    return rc;
}

/* The caller's stop strings and the template's. */
static const char **all_stops(const struct orch_gen_params *p, const struct orch__chat_applied *a,
                              size_t *n)
{
    *n = p->n_stop + a->n_stops;
    const char **v = malloc((*n ? *n : 1) * sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < p->n_stop; i++)
        v[i] = p->stop[i];
    for (size_t i = 0; i < a->n_stops; i++)
        v[p->n_stop + i] = a->stops[i];
    return v;
}

int orch__chat_ext_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                          const struct orch_chat_params *chat, const char *template_src,
                          const struct orch_gen_params *params, struct orch_chat_result *res,
                          orch_error *err)
{
    struct orch_chat_params cdef = orch_chat_default_params();
    struct orch_gen_params gdef = orch_gen_default_params();
    struct orch_chat_params cmerged;
    const struct orch_chat_params *cp = chat ? chat : &cdef;
    const struct orch_gen_params *gp = params ? params : &gdef;
    struct orch__chat_applied a;
    res->gen.finish = ORCH_FINISH_ERROR;
    if (gp->grammar || gp->json_schema) {
        /* the sampling params' constraint is the chat's (one of them) */
        if (cp->grammar || cp->json_schema)
            return orch__err(err, ORCH_EINVAL, "a grammar or schema is given in both the chat "
                             "and the sampling params");
        cmerged = *cp;
        cmerged.grammar = gp->grammar;
        cmerged.json_schema = gp->json_schema;
        cp = &cmerged;
    }
    int rc = apply(m, msgs, n_msgs, cp, template_src, true, &a, err);
    if (rc)
        return rc;
    const orch_backend *be = orch__model_backend(m);
    struct chat_sink s = {.user = gp, .cp = cp, .be = be};
    if (a.parser && !(s.parser = be->ops->parser_new(be, a.parser, err))) {
        orch__chat_applied_clear(&a);
        return ORCH_EINVAL;
    }
    size_t n_stop;
    const char **stops = all_stops(gp, &a, &n_stop);
    if (!stops) {
        rc = orch__err(err, ORCH_ENOMEM, "out of memory for stop strings");
    } else {
        struct orch_gen_params p = *gp;
        p.stop = stops;
        p.n_stop = n_stop;
        p.grammar = NULL; /* in the applied constraint now */
        p.json_schema = NULL;
        if (gp->on_text || cp->on_delta) {
            p.on_text = chat_on_text;
            p.user_data = &s;
        }
        rc = orch__generate_constrained(m, a.prompt, true, a.constraint, &p, &res->gen, err);
        if (s.rc) {
            orch__err(err, s.rc, "%s", s.err.msg);
            rc = s.rc;
        }
        if (rc == ORCH_OK)
            rc = finish_reply(&s, res->gen.text, res->gen.len, &res->reply, err);
    }
    free(stops);
    orch__buf_free(&s.text);
    if (s.parser)
        be->ops->parser_free(s.parser);
    orch__chat_applied_clear(&a);
    if (rc) {
        orch_chat_result_clear(res);
        res->gen.finish = ORCH_FINISH_ERROR;
    }
    return rc;
}

int orch_model_chat_ext(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                        const struct orch_chat_params *chat, const char *template_src,
                        const struct orch_gen_params *params, struct orch_chat_result *res,
                        orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_model_chat_ext: res is NULL");
    memset(res, 0, sizeof *res);
    res->gen.finish = ORCH_FINISH_ERROR;
    if (!m)
        return orch__err(err, ORCH_EINVAL, "orch_model_chat_ext: model is NULL");
    int64_t t0 = orch__now_ns();
    int rc = orch__model_acquire(m, err);
    if (rc == ORCH_OK) {
        double wait = orch__ms_since(t0);
        rc = orch__chat_ext_leased(m, msgs, n_msgs, chat, template_src, params, res, err);
        res->gen.load_wait_ms = wait;
        orch_model_release(m);
    }
    return orch__named(m, rc, err);
}

int orch_model_chat(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                    const struct orch_gen_params *params, struct orch_gen_result *res,
                    orch_error *err)
{
    if (!res)
        return orch__err(err, ORCH_EINVAL, "orch_model_chat: res is NULL");
    struct orch_chat_result r;
    int rc = orch_model_chat_ext(m, msgs, n_msgs, NULL, NULL, params, &r, err);
    *res = r.gen; /* the text as generated; the parsed reply is not asked for */
    r.gen = (struct orch_gen_result){0};
    orch_chat_result_clear(&r);
    return rc;
}
