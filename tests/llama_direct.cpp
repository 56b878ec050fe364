/*
 * llama_direct.cpp — the tests' reference for chat templates: llama.cpp's
 * own chat layer called directly, as llama-server calls it (OpenAI JSON
 * messages and tools through common_chat_msgs_parse_oaicompat and
 * common_chat_tools_parse_oaicompat, then common_chat_templates_apply), so
 * that what the library renders through its C bridge can be compared with
 * it. Test code only.
 */
#include "llama-common/chat.h"

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" char *test_llama_render(const char *gguf, const char *messages_json,
                                   const char *tools_json, char **error);

static char *dup(const std::string &s)
{
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

char *test_llama_render(const char *gguf, const char *messages_json, const char *tools_json,
                        char **error)
{
    *error = nullptr;
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true; /* the template and the tokens it names */
    llama_model *model = llama_model_load_from_file(gguf, mp);
    if (!model) {
        *error = dup("llama.cpp cannot load the file");
        return nullptr;
    }
    struct unload {
        llama_model *m;
        ~unload() { llama_model_free(m); }
    } guard{model};
    try {
        auto t = common_chat_templates_init(model, "");
        common_chat_templates_inputs in;
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(messages_json));
        in.tools = common_chat_tools_parse_oaicompat(common_json::parse(tools_json));
        in.tool_choice = in.tools.empty() ? COMMON_CHAT_TOOL_CHOICE_NONE
                                          : COMMON_CHAT_TOOL_CHOICE_AUTO;
        in.add_generation_prompt = true;
        in.use_jinja = true;
        in.reasoning_format = COMMON_REASONING_FORMAT_AUTO;
        in.enable_thinking = true;
        return dup(common_chat_templates_apply(t.get(), in).prompt);
    } catch (const std::exception &e) {
        *error = dup(e.what());
        return nullptr;
    }
}
