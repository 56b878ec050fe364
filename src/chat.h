/*
 * chat.h — the chat layer (chat.c) for the orchestra: chat requests on a
 * model the calling thread already holds a lease on.
 */
#ifndef ORCH_CHAT_H
#define ORCH_CHAT_H

#include "generate.h"

/* Same arguments, results and errors as the public orch_model_ functions
 * (cp NULL: the defaults; template_src: a template's text replacing the
 * model's, or NULL), but errors name no role. */
int orch__chat_format_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                             const struct orch_chat_params *cp, const char *template_src,
                             bool add_assistant, char **out, orch_error *err);
int orch__chat_ext_leased(orch_model *m, const struct orch_chat_message *msgs, size_t n_msgs,
                          const struct orch_chat_params *chat, const char *template_src,
                          const struct orch_gen_params *params, struct orch_chat_result *res,
                          orch_error *err);

#endif /* ORCH_CHAT_H */
