/*
 * glue.h — llama.cpp's calls that can throw, behind a C interface.
 *
 * llama.cpp is C++ and some of its C entry points let exceptions escape:
 * llama_tokenize on a SentencePiece vocabulary without byte tokens
 * (std::out_of_range), on a malformed T5 charsmap (std::runtime_error), an
 * allocation that fails (std::bad_alloc). An exception that reaches C code
 * ends the process (std::terminate). Every call from src/llama/ that can
 * throw goes through one of these instead: each catches everything, returns
 * false and keeps the exception's text for orch__glue_what().
 *
 * Threads: any; the text is per thread. No allocation on the normal path.
 * This and glue.cpp are the project's only C++; nothing above src/llama/
 * includes this header.
 */
#ifndef ORCH_LLAMA_GLUE_H
#define ORCH_LLAMA_GLUE_H

#include <llama.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The text of the last exception caught on this thread ("" when none);
 * valid until this thread's next glue call that catches one. */
const char *orch__glue_what(void);

/* Each returns true with llama.cpp's own result in *out, or false when the
 * call threw (*out then holds the failure value named). */
bool orch__glue_model_load(const char *path, struct llama_model_params mp,
                           struct llama_model **out);                     /* NULL */
bool orch__glue_ctx_new(struct llama_model *m, struct llama_context_params cp,
                        struct llama_context **out);                      /* NULL */
bool orch__glue_tokenize(const struct llama_vocab *v, const char *text, int32_t len,
                         llama_token *toks, int32_t cap, bool add_special, bool parse_special,
                         int32_t *out);                                   /* INT32_MIN */
bool orch__glue_decode(struct llama_context *ctx, struct llama_batch b, int32_t *out); /* -3 */
bool orch__glue_token_to_piece(const struct llama_vocab *v, llama_token tok, char *buf,
                               int32_t cap, int32_t *out);                /* 0 */
bool orch__glue_chat_template(const char *tmpl, const struct llama_chat_message *msgs,
                              size_t n, bool add_assistant, char *buf, int32_t cap,
                              int32_t *out);                              /* -1 */

#ifdef __cplusplus
}
#endif

#endif
