/*
 * llama/chat.c — the llama backend's chat ops (backend.h): requests
 * rendered by llama.cpp's own chat layer (common/chat.h, through glue.cpp)
 * with the model's Jinja template or a role's override, the constraints a
 * request's tools, schema or grammar ask for, and the parsers of replies.
 *
 * DESIGN
 * A model's templates are parsed on its first chat (not at load: a switch
 * between roles pays nothing for them) and kept with the model. Overrides
 * are kept by their text, up to CHAT_OVERRIDES per model; past that one is
 * parsed for the request and freed after it. Templates are read-only once
 * made, so any number of requests render at once; lm->chat_lock guards only
 * making them. A model without a template gets the generic layer's plain
 * transcript, unless the request carries tools (then llama.cpp's ChatML, as
 * llama-server does): a schema or grammar still constrains the reply.
 */
#include "glue.h"
#include "llama_int.h"

#include <stdlib.h>
#include <string.h>

void orch__lm_chat_free(struct lmodel *lm)
{
    orch__glue_chat_free(lm->chat.tmpls);
    for (int i = 0; i < lm->chat.n_ovr; i++) {
        free(lm->chat.ovr[i].src);
        orch__glue_chat_free(lm->chat.ovr[i].t);
    }
    memset(&lm->chat, 0, sizeof lm->chat);
}

static int tmpl_error(orch_error *err, const char *what)
{
    return orch__err(err, ORCH_EINVAL, "the chat template does not parse: %s", what);
}

/* The templates for src (NULL: the model's). *owned: made for this request
 * only (the caller frees it). */
static int templates(struct lmodel *lm, const char *src, struct orch__chat_tmpls **out,
                     bool *owned, orch_error *err)
{
    *owned = false;
    pthread_mutex_lock(&lm->chat.lock);
    int rc = ORCH_OK;
    if (!src) {
        if (!lm->chat.tmpls && !orch__glue_chat_init(lm->model, NULL, &lm->chat.tmpls))
            rc = tmpl_error(err, orch__glue_what());
        *out = lm->chat.tmpls;
        pthread_mutex_unlock(&lm->chat.lock);
        return rc;
    }
    for (int i = 0; i < lm->chat.n_ovr; i++)
        if (strcmp(lm->chat.ovr[i].src, src) == 0) {
            *out = lm->chat.ovr[i].t;
            pthread_mutex_unlock(&lm->chat.lock);
            return ORCH_OK;
        }
    struct orch__chat_tmpls *t = NULL;
    if (!orch__glue_chat_init(lm->model, src, &t)) {
        rc = tmpl_error(err, orch__glue_what());
    } else if (lm->chat.n_ovr < CHAT_OVERRIDES &&
               (lm->chat.ovr[lm->chat.n_ovr].src = strdup(src))) {
        lm->chat.ovr[lm->chat.n_ovr++].t = t;
    } else {
        *owned = true;
    }
    *out = t;
    pthread_mutex_unlock(&lm->chat.lock);
    return rc;
}

int orch__lm_constrain(const orch_backend *be, const char *json_schema, const char *grammar,
                        char **out, orch_error *err)
{
    (void)be;
    *out = NULL;
    if (!json_schema && !grammar)
        return ORCH_OK;
    if (!orch__glue_constraint(json_schema, grammar, out))
        return orch__err(err, ORCH_EINVAL, "the %s cannot be used: %s",
                         grammar ? "grammar" : "JSON schema", orch__glue_what());
    return ORCH_OK;
}

int orch__lm_chat_apply(void *model, const struct orch__chat_req *req,
                        struct orch__chat_applied *out, orch_error *err)
{
    struct lmodel *lm = model;
    const struct orch_chat_params *cp = req->params;
    memset(out, 0, sizeof *out);
    struct orch__chat_tmpls *t;
    bool owned;
    int rc = templates(lm, req->template_src, &t, &owned, err);
    if (rc)
        return rc;
    if (!orch__glue_chat_has_template(t) && !cp->tools) {
        /* the caller renders a transcript; the reply may still be constrained */
        rc = orch__lm_constrain(NULL, cp->json_schema, cp->grammar, &out->constraint, err);
    } else {
        struct orch__glue_applied a;
        if (orch__glue_chat_apply(t, req->msgs, req->n_msgs, cp, req->add_assistant, req->now,
                                  &a)) {
            out->prompt = a.prompt;
            out->constraint = a.constraint;
            out->parser = a.parser;
            out->stops = a.stops;
            out->n_stops = a.n_stops;
        } else {
            rc = orch__err(err, ORCH_EINVAL, "the chat request cannot be rendered: %s",
                           orch__glue_what());
        }
    }
    if (owned)
        orch__glue_chat_free(t);
    return rc;
}

void *orch__lm_parser_new(const orch_backend *be, const char *parser, orch_error *err)
{
    (void)be;
    struct orch__chat_parser *p = NULL;
    if (!orch__glue_parser_new(parser, &p))
        orch__err(err, ORCH_EINVAL, "the reply parser cannot be made: %s", orch__glue_what());
    return p;
}

struct delta_bridge {
    const struct orch__chat_delta_sink *sink;
};

static void bridge(void *ud, const struct orch_chat_delta *d)
{
    const struct delta_bridge *b = ud;
    if (b->sink && b->sink->fn)
        b->sink->fn(b->sink->ud, d);
}

int orch__lm_parser_feed(void *parser, const char *text, size_t len, bool partial,
                          const struct orch__chat_delta_sink *sink, orch_error *err)
{
    struct delta_bridge b = {sink};
    if (!orch__glue_parser_feed(parser, text, len, partial, bridge, &b))
        return orch__err(err, ORCH_ENOMEM, "parsing the reply failed: %s", orch__glue_what());
    return ORCH_OK;
}

int orch__lm_parser_message(void *parser, struct orch_chat_reply *out, orch_error *err)
{
    if (!orch__glue_parser_message(parser, out))
        return orch__err(err, ORCH_ENOMEM, "the parsed reply cannot be kept: %s",
                         orch__glue_what());
    return ORCH_OK;
}

void orch__lm_parser_free(void *parser)
{
    orch__glue_parser_free(parser);
}
