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
    for (size_t i = 0; i < j->n_msgs; i++)
        free((char *)j->msgs[i].content);
    free(j->msgs);
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

void gen_run(struct gen_job *j)
{
    if (j->on_piece || j->st) {
        j->p.on_text = on_text;
        j->p.user_data = j;
    }
    /* a stream sees its client leave by its writes (stream.c); the others
     * are watched (jobs.c) */
    j->link = (struct job_link){.cancel = &j->cancel, .fd = j->st ? -1 : j->fd};
    j->p.cancel = &j->cancel;
    jobs_add(j->s, &j->link);
    j->rc = j->chat ? orch_chat(j->s->o, j->role, j->msgs, j->n_msgs, &j->p, &j->res, &j->err)
                    : orch_generate(j->s->o, j->role, j->prompt, &j->p, &j->res, &j->err);
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

int gen_messages(struct gen_job *j, json_t *messages, char *msg, size_t cap)
{
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
        json_t *c = json_object_get(m, "content");
        if (!json_is_object(m) || !role) {
            snprintf(msg, cap, "messages[%zu] needs a 'role'", i);
            return -1;
        }
        if (strcmp(role, "developer") == 0) /* OpenAI's newer name for system */
            role = "system";
        if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
            strcmp(role, "assistant") != 0) {
            snprintf(msg, cap,
                     "messages[%zu] has role '%.40s' (expected system, user or assistant)", i,
                     role);
            return -1;
        }
        char *text = NULL;
        if (json_is_string(c)) {
            text = strdup(json_string_value(c));
        } else if (json_is_array(c)) { /* [{type: "text", text}, ...] */
            size_t len = 0, k;
            json_t *part;
            json_array_foreach(c, k, part) {
                const char *t = json_string_value(json_object_get(part, "text"));
                if (!t) {
                    snprintf(msg, cap, "messages[%zu].content[%zu]: only text parts are supported",
                             i, k);
                    return -1;
                }
                len += strlen(t);
            }
            text = malloc(len + 1);
            if (text) {
                text[0] = '\0';
                json_array_foreach (c, k, part)
                    strcat(text, json_string_value(json_object_get(part, "text")));
            }
        } else if (!c || json_is_null(c)) {
            text = strdup("");
        } else {
            snprintf(msg, cap, "messages[%zu].content must be a string or an array of text parts",
                     i);
            return -1;
        }
        if (!text) {
            snprintf(msg, cap, "out of memory");
            return -1;
        }
        j->msgs[i] = (struct orch_chat_message){role, text};
        j->n_msgs = i + 1;
    }
    j->chat = true;
    return 0;
}

int srv_embed(struct req *r, json_t *in, bool arrays, struct embedded *out, int *status,
              char *msg, size_t cap)
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
