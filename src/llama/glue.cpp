/*
 * glue.cpp — see glue.h. The only C++ file of the project: a try/catch
 * around each llama.cpp call that can throw, nothing else.
 */
#include "glue.h"

#include <cstdio>
#include <exception>
#include <new>

static thread_local char g_what[512];

static void keep(const char *what)
{
    std::snprintf(g_what, sizeof g_what, "%s", what && *what ? what : "unknown exception");
}

/* Runs f, catching every exception: false (and the text kept) when one came. */
template <typename F> static bool guarded(F f)
{
    try {
        f();
        return true;
    } catch (const std::bad_alloc &) {
        keep("out of memory (std::bad_alloc)");
    } catch (const std::exception &e) {
        keep(e.what());
    } catch (...) {
        keep("an exception that is not a std::exception");
    }
    return false;
}

extern "C" {

const char *orch__glue_what(void)
{
    return g_what;
}

bool orch__glue_model_load(const char *path, struct llama_model_params mp,
                           struct llama_model **out)
{
    *out = nullptr;
    return guarded([&] { *out = llama_model_load_from_file(path, mp); });
}

bool orch__glue_ctx_new(struct llama_model *m, struct llama_context_params cp,
                        struct llama_context **out)
{
    *out = nullptr;
    return guarded([&] { *out = llama_init_from_model(m, cp); });
}

bool orch__glue_tokenize(const struct llama_vocab *v, const char *text, int32_t len,
                         llama_token *toks, int32_t cap, bool add_special, bool parse_special,
                         int32_t *out)
{
    *out = INT32_MIN;
    return guarded(
        [&] { *out = llama_tokenize(v, text, len, toks, cap, add_special, parse_special); });
}

bool orch__glue_decode(struct llama_context *ctx, struct llama_batch b, int32_t *out)
{
    *out = -3;
    return guarded([&] { *out = llama_decode(ctx, b); });
}

bool orch__glue_token_to_piece(const struct llama_vocab *v, llama_token tok, char *buf,
                               int32_t cap, int32_t *out)
{
    *out = 0;
    return guarded([&] { *out = llama_token_to_piece(v, tok, buf, cap, 0, false); });
}

bool orch__glue_chat_template(const char *tmpl, const struct llama_chat_message *msgs,
                              size_t n, bool add_assistant, char *buf, int32_t cap, int32_t *out)
{
    *out = -1;
    return guarded(
        [&] { *out = llama_chat_apply_template(tmpl, msgs, n, add_assistant, buf, cap); });
}

} /* extern "C" */
