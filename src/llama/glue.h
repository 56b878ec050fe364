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
 * includes this header. The chat layer below hands over JSON text and C
 * structs only: no C++ or llama.cpp common/ type leaves glue.cpp.
 */
#ifndef ORCH_LLAMA_GLUE_H
#define ORCH_LLAMA_GLUE_H

#include <llama.h>
#include <orchestra.h>

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
                               int32_t cap, bool special, int32_t *out);  /* 0 */
bool orch__glue_chat_template(const char *tmpl, const struct llama_chat_message *msgs,
                              size_t n, bool add_assistant, char *buf, int32_t cap,
                              int32_t *out);                              /* -1 */

/* ---- llama.cpp's chat layer (common/chat.h), pinned with llama.cpp ---------------
 * Each returns false when llama.cpp threw (the text in orch__glue_what(),
 * e.g. the template's own error or the schema's); what it returns is the
 * caller's (free() the strings, the _free functions the objects). */

struct orch__chat_tmpls; /* a model's chat templates (or an override) */
struct orch__chat_parser; /* one reply being parsed into a message */

/* The model's templates (override_src: a template's text that replaces
 * them, or NULL). A model without one gets llama.cpp's ChatML default, which
 * orch__glue_chat_has_template() tells apart. Threads: any; rendering
 * (init, apply) takes one process-wide lock: llama.cpp's chat layer formats
 * dates through std::localtime. */
bool orch__glue_chat_init(const struct llama_model *m, const char *override_src,
                          struct orch__chat_tmpls **out);
void orch__glue_chat_free(struct orch__chat_tmpls *t);
bool orch__glue_chat_has_template(const struct orch__chat_tmpls *t);

/* What a request rendered into (all malloc'd; orch__glue_applied_clear). */
struct orch__glue_applied {
    char *prompt;
    char *constraint; /* NULL: no grammar; else JSON for orch__glue_grammar_new */
    char *parser;     /* JSON for orch__glue_parser_new */
    char **stops;     /* the format's stop strings */
    size_t n_stops;
};
void orch__glue_applied_clear(struct orch__glue_applied *a);

/* Renders a request (orchestra.h's messages and chat params; now: seconds
 * since the epoch for templates that print a date, 0 = now): the prompt,
 * the grammar a required tool call, a schema or a grammar asks for, the
 * parser for the reply. */
bool orch__glue_chat_apply(const struct orch__chat_tmpls *t, const struct orch_chat_message *msgs,
                           size_t n, const struct orch_chat_params *cp, bool add_assistant,
                           int64_t now, struct orch__glue_applied *out);

/* A constraint for free text: a JSON schema's grammar (llama.cpp's
 * json-schema-to-grammar), or a GBNF grammar's (grammar non-NULL). */
bool orch__glue_constraint(const char *json_schema, const char *grammar, char **out);

/* Receives each change (orchestra.h's struct orch_chat_delta). */
typedef void (*orch__glue_delta_fn)(void *ud, const struct orch_chat_delta *d);

/* A parser for replies to one applied request (its "parser" JSON). Feed it
 * the whole text so far (partial while generating, then once not partial):
 * fn gets each change since the last feed. A final text that does not parse
 * becomes the content. Threads: one at a time per parser. */
bool orch__glue_parser_new(const char *parser_json, struct orch__chat_parser **out);
bool orch__glue_parser_feed(struct orch__chat_parser *p, const char *text, size_t len,
                            bool partial, orch__glue_delta_fn fn, void *ud);
/* The message so far, every string malloc'd (orch_chat_result_clear's way). */
bool orch__glue_parser_message(const struct orch__chat_parser *p, struct orch_chat_reply *out);
void orch__glue_parser_free(struct orch__chat_parser *p);

/* A grammar sampler from an applied request's constraint (JSON: grammar,
 * grammar_lazy, triggers, grammar_kind, generation_prompt); false with the
 * reason when the grammar does not compile. */
bool orch__glue_grammar_new(const struct llama_vocab *v, const char *spec_json,
                            struct llama_sampler **out);
/* Samples position idx of ctx through chain under grammar, and accepts the
 * token into both (an end-of-generation token is not fed to the grammar).
 * False (reason kept) when the grammar allows no token or rejects one. */
bool orch__glue_sample(struct llama_sampler *chain, struct llama_sampler *grammar,
                       struct llama_context *ctx, int32_t idx, const struct llama_vocab *v,
                       llama_token *out);

#ifdef __cplusplus
}
#endif

#endif
