/*
 * openai.h — what the Responses API (responses.c) takes from the chat
 * completions path: a chat-completions body's checks onto a job.
 */
#ifndef ORCH_SRV_OPENAI_H
#define ORCH_SRV_OPENAI_H

#include "gen.h"

/* The body of a chat completion (messages, sampling, tools, tool_choice,
 * response_format, reasoning fields) checked and set onto j, as
 * /v1/chat/completions takes it. The strings are body's: j must keep it.
 * Returns 0, or -1 with msg[cap] saying which field is wrong.
 * Threads: the request's. */
int oai_chat_setup(struct gen_job *j, json_t *body, char *msg, size_t cap);

#endif /* ORCH_SRV_OPENAI_H */
