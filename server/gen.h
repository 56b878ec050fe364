/*
 * gen.h — one generation or embedding request as both APIs run it: the
 * role's defaults under the request's parameters, chat messages from JSON,
 * the text streamed piece by piece.
 */
#ifndef ORCH_SRV_GEN_H
#define ORCH_SRV_GEN_H

#include "reply.h"
#include "stream.h"

struct gen_job {
    struct srv *s;
    json_t *keep;          /* a reference to the request's JSON: the strings below are its */
    char role[ORCH_ROLE_NAME_MAX]; /* canonical, from the request's r->ref */
    int role_index;
    bool chat;
    const char *prompt;
    struct orch_chat_message *msgs;
    size_t n_msgs;
    struct orch_gen_params p;
    const char *stops[SRV_STOPS_MAX];
    /* a chat: what it asks beyond sampling (tools, constraint, reasoning);
     * the strings are the job's (owned) */
    struct orch_chat_params cp;
    char *owned[8];
    size_t n_owned;
    struct orch_chat_reply reply; /* a chat's reply, parsed */
    /* streaming: each piece of text goes to on_piece (return false to stop);
     * a chat's parsed changes to on_delta */
    struct stream *st;
    bool (*on_piece)(struct gen_job *j, const char *text, size_t n);
    void (*on_delta)(struct gen_job *j, const struct orch_chat_delta *d);
    void *api;             /* the API's own state for formatting; malloc'd, freed with the job */
    void (*api_free)(void *api); /* NULL, or frees what api points to (not api) */
    int64_t t0_ns;
    int fd;                /* the client's socket */
    int32_t cancel;        /* p.cancel: JOB_CLIENT_GONE or JOB_CUT once set (jobs.h) */
    struct job_link link;
    /* results */
    int rc;
    orch_error err;
    struct orch_gen_result res;
    double total_ms;
};

/* A job for the request's role (taken with srv_take_model: the role's
 * defaults come from r->ref, no second lookup), the request's JSON kept,
 * with api_size zeroed bytes of API state in j->api. Returns NULL when out
 * of memory. */
struct gen_job *gen_new(struct req *r, size_t api_size);
void gen_free(void *job);
/* Runs the generation (or chat) with the job's params. */
void gen_run(struct gen_job *j);
#define SRV_EMBED_INPUTS_MAX 2048 /* texts in one embedding request */
/* Embeddings of `in` (a string, or when arrays are allowed an array of 1 to
 * SRV_EMBED_INPUTS_MAX non-empty strings) with the request's role; truncate: a text past
 * the embedding context keeps its first tokens (else it is a 400). Returns 0 with out
 * filled (out->v: n x dim floats, malloc'd) and r->tok_in set, or -1 with *status
 * and msg. */
struct embedded {
    float *v;
    int32_t dim;
    size_t n;
    int64_t n_tokens;
};
int srv_embed(struct req *r, json_t *in, bool arrays, bool truncate, struct embedded *out,
              int *status, char *msg, size_t cap);

/* Chat messages from a JSON array of {role, content} (content: a string, or
 * OpenAI's array of {type: "text", text} parts joined; an assistant's
 * tool_calls, OpenAI's with arguments as JSON text or Ollama's as an
 * object; a tool message's tool_call_id and name / tool_name; reasoning as
 * reasoning_content or thinking). 0, or -1 with msg. */
int gen_messages(struct gen_job *j, json_t *messages, char *msg, size_t cap);

/* A string the job keeps until it is freed (json_dumps output): the job
 * owns s. Returns s, or NULL (s freed) when the job holds too many. */
char *gen_own(struct gen_job *j, char *s);

/* The request's tools (an array; null or absent = none) onto j->cp: as
 * JSON text for the chat layer. 0, or -1 with msg. */
int gen_tools(struct gen_job *j, json_t *tools, char *msg, size_t cap);

/* tool_choice ("auto", "none", "required", {"function": {"name"}}; after
 * gen_tools) onto j->cp. 0, or -1 with msg. */
int gen_tool_choice(struct gen_job *j, json_t *tc, char *msg, size_t cap);

/* A JSON schema the reply must follow, as text onto j->cp.json_schema
 * (nesting bounded: a schema is compiled by recursion). 0, or -1 with msg. */
int gen_schema(struct gen_job *j, json_t *schema, const char *field, char *msg, size_t cap);

#endif /* ORCH_SRV_GEN_H */
