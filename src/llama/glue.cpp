/*
 * glue.cpp — see glue.h. The only C++ file of the project: a try/catch
 * around each llama.cpp call that can throw, and the bridge to llama.cpp's
 * common/ chat layer (templates, tool calls, JSON schemas, grammars), whose
 * C++ types end here: what crosses to C is JSON text and C structs.
 */
#include "glue.h"

#include "llama-common/chat.h"
#include "llama-common/json-schema-to-grammar.h"
#include "llama-common/log.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <vector>

using json = common_json;

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
                               int32_t cap, bool special, int32_t *out)
{
    *out = 0;
    return guarded([&] { *out = llama_token_to_piece(v, tok, buf, cap, 0, special); });
}

bool orch__glue_chat_template(const char *tmpl, const struct llama_chat_message *msgs,
                              size_t n, bool add_assistant, char *buf, int32_t cap, int32_t *out)
{
    *out = -1;
    return guarded(
        [&] { *out = llama_chat_apply_template(tmpl, msgs, n, add_assistant, buf, cap); });
}

/* ---- the chat layer ------------------------------------------------------------- */

struct orch__chat_tmpls {
    common_chat_templates_ptr t;
    bool has_template; /* the model's own (or the override), not llama.cpp's ChatML default */
};

struct orch__chat_parser {
    common_chat_parser_params params;
    common_chat_msg msg;       /* the message parsed so far */
    std::vector<std::string> ids; /* tool call ids given so far */
    unsigned long serial;
};

/* llama.cpp's chat layer is not safe to run on two threads at once: every
 * apply formats the date through std::localtime (one static struct tm per
 * process; TSan saw it race, and tzset's first run with it). Rendering runs
 * under this lock, which only a model's own concurrent chats share (the
 * daemon runs each model file in a process of its own). */
static std::mutex g_render_lock;

static void quiet_common_log()
{
    static std::once_flag once;
    std::call_once(once, [] { common_log_set_verbosity_thold(-1); });
}

static char *dup_out(const std::string &s)
{
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (!p)
        throw std::bad_alloc();
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = 0;
    return p;
}

bool orch__glue_chat_init(const struct llama_model *m, const char *override_src,
                          struct orch__chat_tmpls **out)
{
    *out = nullptr;
    quiet_common_log();
    return guarded([&] {
        auto *t = new orch__chat_tmpls;
        std::string ov = override_src ? override_src : "";
        try {
            std::lock_guard<std::mutex> hold(g_render_lock);
            t->t = common_chat_templates_init(m, ov);
        } catch (...) {
            delete t;
            throw;
        }
        t->has_template = !ov.empty() || (m && llama_model_chat_template(m, nullptr) != nullptr);
        *out = t;
    });
}

void orch__glue_chat_free(struct orch__chat_tmpls *t)
{
    delete t;
}

bool orch__glue_chat_has_template(const struct orch__chat_tmpls *t)
{
    return t && t->has_template;
}

static std::string str(const char *s)
{
    return s ? std::string(s) : std::string();
}

/* JSON text a caller gave, or an error that says which. */
static json parse_named(const char *what, const char *text)
{
    try {
        return json::parse(text);
    } catch (const std::exception &e) {
        throw std::invalid_argument(std::string(what) + " is not valid JSON: " + e.what());
    }
}

/* The request (glue.h) as llama.cpp's inputs: a named tool choice becomes
 * "required" over that tool alone. */
static common_chat_templates_inputs inputs_from(const struct orch_chat_message *msgs, size_t n,
                                                const struct orch_chat_params *cp,
                                                bool add_assistant, int64_t now)
{
    common_chat_templates_inputs in;
    for (size_t i = 0; i < n; i++) {
        const struct orch_chat_message &m = msgs[i];
        common_chat_msg msg;
        msg.role = str(m.role);
        msg.content = str(m.content);
        msg.tool_call_id = str(m.tool_call_id);
        msg.tool_name = str(m.name);
        msg.reasoning_content = str(m.reasoning);
        for (size_t k = 0; k < m.n_tool_calls; k++) {
            common_chat_tool_call tc;
            tc.id = str(m.tool_calls[k].id);
            tc.name = str(m.tool_calls[k].name);
            tc.arguments = m.tool_calls[k].arguments ? m.tool_calls[k].arguments : "{}";
            msg.tool_calls.push_back(tc);
        }
        in.messages.push_back(msg);
    }
    json tools = cp->tools ? parse_named("tools", cp->tools) : json::array();
    if (!tools.is_array())
        throw std::invalid_argument("tools must be a JSON array");
    in.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
    if (cp->tool_choice == ORCH_TOOLS_NONE) {
        in.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    } else if (cp->tool_choice == ORCH_TOOLS_REQUIRED) {
        in.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    } else if (cp->tool_choice == ORCH_TOOLS_FUNCTION) {
        std::string name = str(cp->tool_name);
        json only = json::array();
        for (const auto &tl : tools)
            if (tl.is_object() && tl.contains("function") && tl.at("function").is_object() &&
                tl.at("function").value("name", "") == name)
                only.push_back(tl);
        if (only.empty())
            throw std::invalid_argument("tool_choice names the function '" + name +
                                        "', which is not among the tools");
        tools = only;
        in.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    }
    for (size_t i = 0; i < tools.size(); i++) {
        const json &tl = tools.at(i);
        if (!tl.is_object() || !tl.contains("function") || !tl.at("function").is_object())
            throw std::invalid_argument("tool " + std::to_string(i) +
                                        " is not {\"type\": \"function\", \"function\": {...}}");
        const json &f = tl.at("function");
        if (!f.contains("name") || !f.at("name").is_string() || f.value("name", "").empty())
            throw std::invalid_argument("tool " + std::to_string(i) + " has no name");
    }
    in.tools = common_chat_tools_parse_oaicompat(tools);
    if (in.tools.empty())
        in.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
    in.parallel_tool_calls = cp->parallel_tool_calls;
    if (cp->json_schema)
        in.json_schema = parse_named("the JSON schema", cp->json_schema).dump();
    in.grammar = str(cp->grammar);
    in.add_generation_prompt = add_assistant;
    in.use_jinja = true;
    in.reasoning_format = cp->reasoning == ORCH_REASONING_INLINE ? COMMON_REASONING_FORMAT_NONE
                                                                 : COMMON_REASONING_FORMAT_AUTO;
    in.enable_thinking = cp->reasoning != ORCH_REASONING_OFF;
    if (in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED)
        in.enable_thinking = false; /* a required call is the whole reply (strict_root) */
    if (cp->template_kwargs) {
        json kw = parse_named("template_kwargs", cp->template_kwargs);
        if (!kw.is_object())
            throw std::invalid_argument("template_kwargs must be a JSON object");
        for (const auto &kv : kw.items())
            in.chat_template_kwargs[kv.key()] = kv.value().dump();
    }
    if (now > 0) /* a fixed time (templates print dates; tests compare) */
        in.now = std::chrono::system_clock::time_point(std::chrono::seconds(now));
    return in;
}

static const char *grammar_kind(const common_chat_params &p,
                                const common_chat_templates_inputs &in)
{
    if (p.grammar.empty())
        return "";
    if (!in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE)
        return "tool_calls";
    return in.grammar.empty() ? "output" : "user";
}

static char **dup_list(const std::vector<std::string> &v)
{
    char **l = static_cast<char **>(std::calloc(v.size() + 1, sizeof *l));
    if (!l)
        throw std::bad_alloc();
    for (size_t i = 0; i < v.size(); i++) {
        l[i] = static_cast<char *>(std::malloc(v[i].size() + 1));
        if (!l[i]) {
            for (size_t k = 0; k < i; k++)
                std::free(l[k]);
            std::free(l);
            throw std::bad_alloc();
        }
        std::memcpy(l[i], v[i].c_str(), v[i].size() + 1);
    }
    return l;
}

static std::string gbnf_literal(const std::string &t)
{
    std::string o = "\"";
    for (char c : t) {
        if (c == '"' || c == '\\')
            o += '\\', o += c;
        else if (c == '\n')
            o += "\\n";
        else if (c == '\r')
            o += "\\r";
        else if (c == '\t')
            o += "\\t";
        else
            o += c;
    }
    return o + "\"";
}

/* A group "(a | b | ...)" without the alternatives that let free text in
 * (they use an until-N rule: Functionary's "all\n" route); as it is when
 * that would leave none. */
static std::string without_free_text(const std::string &e)
{
    if (e.size() < 2 || e.front() != '(' || e.back() != ')')
        return e;
    std::vector<std::string> alts;
    std::string cur;
    int depth = 0;
    bool quoted = false;
    for (size_t k = 1; k + 1 < e.size(); k++) {
        char c = e[k];
        if (quoted && c == '\\' && k + 2 < e.size()) {
            cur += c;
            cur += e[++k];
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        else if (!quoted && c == '(')
            depth++;
        else if (!quoted && c == ')')
            depth--;
        if (!quoted && depth == 0 && c == '|') {
            alts.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    alts.push_back(cur);
    std::string out;
    for (const auto &a : alts)
        if (a.find("until-") == std::string::npos)
            out += (out.empty() ? "" : " |") + a;
    return out.empty() || alts.size() < 2 ? e : "(" + out + ")";
}

/* A required tool call, strictly: llama.cpp's grammars for tool_choice
 * "required" let the reply begin with free text or a thinking block
 * (until-N?, (thought | ), (start any)*) before the call, which a weak
 * model never leaves. The root rule keeps only its mandatory parts after
 * the generation prompt (what the template put after the prompt, matched
 * as one literal), so the reply is the call. A root with alternatives at
 * its top, or nothing mandatory but literals, is kept as it is. */
static std::string strict_root(const std::string &g, const std::string &gen_prompt)
{
    size_t at = g.compare(0, 9, "root ::= ") == 0 ? 0 : g.find("\nroot ::= ");
    if (at == std::string::npos)
        return g;
    size_t body = at + (at ? 10 : 9), end = g.find('\n', body);
    if (end == std::string::npos)
        end = g.size();
    std::string rule = g.substr(body, end - body);
    std::vector<std::string> parts;
    size_t i = 0;
    while (i < rule.size()) { /* top-level elements: quoted, grouped or names */
        while (i < rule.size() && rule[i] == ' ')
            i++;
        if (i >= rule.size())
            break;
        size_t j = i;
        int depth = 0;
        bool quoted = false;
        for (; j < rule.size(); j++) {
            char c = rule[j];
            if (quoted) {
                if (c == '\\')
                    j++;
                else if (c == '"')
                    quoted = false;
            } else if (c == '"') {
                quoted = true;
            } else if (c == '(') {
                depth++;
            } else if (c == ')') {
                depth--;
            } else if (c == ' ' && depth == 0) {
                break;
            } else if (c == '|' && depth == 0) {
                return g; /* alternatives at the top: leave it as it is */
            }
        }
        parts.push_back(rule.substr(i, j - i));
        i = j;
    }
    std::string kept = gen_prompt.empty() ? "" : gbnf_literal(gen_prompt);
    bool named = false, lead = true;
    for (const auto &e : parts) {
        char last = e.empty() ? 0 : e.back();
        bool optional = last == '?' || last == '*' ||
                        (e.size() > 2 && e.front() == '(' && e.find("| )") != std::string::npos);
        if (optional || (lead && (e.front() == '"' || e == "start")))
            continue; /* free text, or the generation prompt (matched above) */
        lead = false;
        named = named || (e.front() != '"' && e != "space");
        kept += (kept.empty() ? "" : " ") + without_free_text(e);
    }
    if (!named)
        return g;
    std::string out = g.substr(0, body) + kept + g.substr(end);
    /* a character class repeated without end (a format's "json" word after
     * <|constrain|>, a key name) ends within 64 */
    std::string bounded;
    bool quoted = false;
    for (size_t k = 0; k < out.size(); k++) {
        char c = out[k];
        if (quoted && c == '\\' && k + 1 < out.size()) {
            bounded += c;
            bounded += out[++k];
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        if (!quoted && c == '+' && k > 0 && out[k - 1] == ']' && (k + 1 >= out.size() ||
                                                                  out[k + 1] != '{'))
            bounded += "{1,64}";
        else
            bounded += c;
        if (c == '\n')
            quoted = false;
    }
    return bounded;
}

/* One call where the caller did not ask for parallel calls: llama.cpp's
 * "tool-calls ::= (tool-call space)+" allows any number, which a weak model
 * repeats to the token limit. */
static std::string one_call(const std::string &g)
{
    size_t at = g.compare(0, 14, "tool-calls ::= ") == 0 ? 0 : g.find("\ntool-calls ::= ");
    if (at == std::string::npos)
        return g;
    size_t end = g.find('\n', at + 1);
    if (end == std::string::npos)
        end = g.size();
    if (end < 2 || g[end - 1] != '+' || g[end - 2] != ')')
        return g;
    return g.substr(0, end - 1) + g.substr(end);
}

/* Free strings the format puts around the arguments (Mistral's call "id")
 * end within 64 characters: in the rules of the call itself (tool-...),
 * not in those of the tool's own schema (tool-...-schema...). */
static std::string bounded_ids(const std::string &g)
{
    std::string out;
    size_t at = 0;
    while (at < g.size()) {
        size_t end = g.find('\n', at);
        if (end == std::string::npos)
            end = g.size();
        std::string line = g.substr(at, end - at);
        size_t eq = line.find(" ::= ");
        if (line.compare(0, 5, "tool-") == 0 && eq != std::string::npos &&
            line.substr(0, eq).find("schema") == std::string::npos) {
            const std::string open = ")* \"\\\"\"";
            for (size_t k = line.find(open); k != std::string::npos; k = line.find(open, k))
                line.replace(k, 2, "){0,64}"), k += 7;
        }
        out += line;
        if (end < g.size())
            out += '\n';
        at = end + 1;
    }
    return out;
}

/* Gemma 4's arguments are its own notation, not JSON under the tool's
 * schema (llama.cpp's grammar leaves their strings free, until <|"|>): a
 * string ends within 256 characters and holds no '<', so that a call ends. */
static std::string bounded_gemma4(const std::string &g)
{
    const std::string rule = "\ngemma4-string-content ::= ";
    size_t at = g.find(rule);
    if (at == std::string::npos)
        return g;
    size_t body = at + rule.size(), end = g.find('\n', body);
    if (end == std::string::npos)
        end = g.size();
    return g.substr(0, body) + "[^<]{0,256}" + g.substr(end);
}

/* A template that opens a thinking block after the prompt and cannot be
 * told not to (DeepSeek R1's): the block closed empty, as a model that
 * chose not to think would, so that a required call comes at once. */
static void close_thinking(common_chat_params &p)
{
    if (p.thinking_start_tag.empty() || p.thinking_end_tags.empty())
        return;
    size_t open = p.generation_prompt.rfind(p.thinking_start_tag);
    if (open == std::string::npos)
        return;
    for (const auto &end : p.thinking_end_tags)
        if (p.generation_prompt.find(end, open) != std::string::npos)
            return;
    std::string close = "\n" + p.thinking_end_tags.front() + "\n\n";
    p.prompt += close;
    p.generation_prompt += close;
}

static std::string constraint_json(const common_chat_params &p, const char *kind,
                                   bool prefill = true)
{
    json trig = json::array();
    for (const auto &g : p.grammar_triggers) {
        json one = json::object();
        one["type"] = (int)g.type;
        one["value"] = g.value;
        one["token"] = (int)g.token;
        trig.push_back(one);
    }
    json o = json::object();
    o["grammar"] = p.grammar;
    o["grammar_kind"] = std::string(kind);
    o["grammar_lazy"] = p.grammar_lazy;
    o["prefill"] = prefill && !p.grammar_lazy &&
                   (std::string(kind) == "tool_calls" || std::string(kind) == "output");
    o["triggers"] = trig;
    o["preserved_tokens"] = p.preserved_tokens;
    o["generation_prompt"] = p.generation_prompt;
    return o.dump();
}

void orch__glue_applied_clear(struct orch__glue_applied *a)
{
    std::free(a->prompt);
    std::free(a->constraint);
    std::free(a->parser);
    for (size_t i = 0; i < a->n_stops; i++)
        std::free(a->stops[i]);
    std::free(a->stops);
    std::memset(a, 0, sizeof *a);
}

bool orch__glue_chat_apply(const struct orch__chat_tmpls *t, const struct orch_chat_message *msgs,
                           size_t n, const struct orch_chat_params *cp, bool add_assistant,
                           int64_t now, struct orch__glue_applied *out)
{
    std::memset(out, 0, sizeof *out);
    bool ok = guarded([&] {
        common_chat_templates_inputs in = inputs_from(msgs, n, cp, add_assistant, now);
        common_chat_params p;
        {
            std::lock_guard<std::mutex> hold(g_render_lock);
            p = common_chat_templates_apply(t->t.get(), in);
        }
        bool tools = !in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
        bool prefill = !p.grammar_lazy;
        if (p.grammar.empty() && !in.grammar.empty()) {
            /* the caller's own grammar: as given, from the reply's start */
            p.grammar = in.grammar;
            p.grammar_lazy = false;
            prefill = false;
        } else if (p.grammar.empty() && !in.json_schema.empty()) {
            p.grammar = json_schema_to_grammar(json::parse(in.json_schema));
            p.grammar_lazy = false;
            prefill = false;
        }
        if (tools && in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && !p.grammar.empty()) {
            /* the call at once, whether or not the model would get to it */
            close_thinking(p);
            std::string strict = strict_root(p.grammar, p.generation_prompt);
            if (!in.parallel_tool_calls)
                strict = one_call(strict);
            strict = bounded_ids(strict);
            strict = bounded_gemma4(strict);
            if (strict != p.grammar)
                prefill = true; /* the strict root starts with the generation prompt */
            p.grammar = strict;
            p.grammar_lazy = false; /* a lazy root starts at its trigger: from the start now */
        }
        json parser = json::object();
        parser["format"] = (int)p.format;
        parser["generation_prompt"] = p.generation_prompt;
        parser["reasoning_format"] = (int)in.reasoning_format;
        parser["parse_tool_calls"] = tools;
        parser["parser"] = p.parser;
        out->prompt = dup_out(p.prompt);
        if (!p.grammar.empty())
            out->constraint = dup_out(constraint_json(p, grammar_kind(p, in), prefill));
        out->parser = dup_out(parser.dump());
        out->stops = dup_list(p.additional_stops);
        out->n_stops = p.additional_stops.size();
    });
    if (!ok)
        orch__glue_applied_clear(out);
    return ok;
}

bool orch__glue_constraint(const char *json_schema, const char *grammar, char **out)
{
    *out = nullptr;
    quiet_common_log();
    return guarded([&] {
        common_chat_params p;
        p.grammar = grammar ? std::string(grammar)
                            : json_schema_to_grammar(parse_named("the JSON schema", json_schema));
        *out = dup_out(constraint_json(p, grammar ? "user" : "output"));
    });
}

bool orch__glue_parser_new(const char *parser_json, struct orch__chat_parser **out)
{
    *out = nullptr;
    quiet_common_log();
    return guarded([&] {
        json j = json::parse(parser_json);
        auto *p = new orch__chat_parser();
        try {
            p->params.format = (common_chat_format)j.value("format", 0);
            p->params.generation_prompt = j.value("generation_prompt", std::string());
            p->params.reasoning_format = (common_reasoning_format)j.value("reasoning_format", 0);
            p->params.parse_tool_calls = j.value("parse_tool_calls", false);
            std::string arena = j.value("parser", std::string());
            if (!arena.empty())
                p->params.parser.load(arena);
        } catch (...) {
            delete p;
            throw;
        }
        p->serial = 0;
        *out = p;
    });
}

void orch__glue_parser_free(struct orch__chat_parser *p)
{
    delete p;
}

static void fill_delta(const common_chat_msg_diff &d, struct orch_chat_delta *o)
{
    o->content = d.content_delta.c_str();
    o->reasoning = d.reasoning_content_delta.c_str();
    o->tool_index = d.tool_call_index == std::string::npos ? -1 : (int32_t)d.tool_call_index;
    o->tool_id = d.tool_call_delta.id.c_str();
    o->tool_name = d.tool_call_delta.name.c_str();
    o->tool_arguments = d.tool_call_delta.arguments.c_str();
}

bool orch__glue_parser_feed(struct orch__chat_parser *p, const char *text, size_t len,
                            bool partial, orch__glue_delta_fn fn, void *ud)
{
    return guarded([&] {
        std::string in(text, len);
        common_chat_msg m;
        try {
            m = common_chat_parse(in, partial, p->params);
        } catch (const std::exception &) {
            if (partial)
                return; /* more text may make it parse */
            /* the model did not follow its format: its text is the content */
            m = common_chat_msg();
            m.role = "assistant";
            m.content = in;
        }
        if (m.empty() && partial)
            return;
        m.set_tool_call_ids(p->ids, [p] { return "call_" + std::to_string(++p->serial); });
        for (const auto &d : common_chat_msg_diff::compute_diffs(p->msg, m)) {
            struct orch_chat_delta o;
            fill_delta(d, &o);
            if (fn)
                fn(ud, &o);
        }
        p->msg = m;
    });
}

bool orch__glue_parser_message(const struct orch__chat_parser *p, struct orch_chat_reply *out)
{
    std::memset(out, 0, sizeof *out);
    bool ok = guarded([&] {
        out->content = dup_out(p->msg.content);
        out->reasoning = dup_out(p->msg.reasoning_content);
        size_t n = p->msg.tool_calls.size();
        out->tool_calls =
            static_cast<struct orch_tool_call *>(std::calloc(n ? n : 1, sizeof *out->tool_calls));
        if (!out->tool_calls)
            throw std::bad_alloc();
        for (size_t i = 0; i < n; i++) {
            const auto &c = p->msg.tool_calls[i];
            out->n_tool_calls = i + 1;
            out->tool_calls[i].id = dup_out(c.id);
            out->tool_calls[i].name = dup_out(c.name);
            out->tool_calls[i].arguments = dup_out(c.arguments.empty() ? "{}" : c.arguments);
        }
    });
    if (!ok) {
        std::free(out->content);
        std::free(out->reasoning);
        for (size_t i = 0; i < out->n_tool_calls; i++) {
            std::free((void *)out->tool_calls[i].id);
            std::free((void *)out->tool_calls[i].name);
            std::free((void *)out->tool_calls[i].arguments);
        }
        std::free(out->tool_calls);
        std::memset(out, 0, sizeof *out);
    }
    return ok;
}

/* ---- grammar-constrained sampling -------------------------------------------------- */

/* The tokens of what the template put after the prompt, as the grammar
 * must see them: a tokenizer that adds a space prefix (SentencePiece) puts
 * bytes in front that are not in the text; the tokens that make exactly
 * those are left out (llama.cpp's common_sampler drops a leading space
 * token the same way). */
static std::vector<llama_token> prefill_tokens(const struct llama_vocab *v, const std::string &pre)
{
    std::vector<llama_token> pt(pre.size() + 8);
    int32_t n = llama_tokenize(v, pre.data(), (int32_t)pre.size(), pt.data(), (int32_t)pt.size(),
                               false, true);
    if (n < 0)
        throw std::runtime_error("the generation prompt does not tokenize");
    pt.resize((size_t)n);
    std::vector<std::string> pieces;
    std::string all;
    for (llama_token t : pt) {
        char buf[256];
        int32_t k = llama_token_to_piece(v, t, buf, sizeof buf, 0, true);
        pieces.emplace_back(buf, k > 0 ? (size_t)k : 0);
        all += pieces.back();
    }
    size_t extra = all.size() > pre.size() && all.compare(all.size() - pre.size(), pre.size(),
                                                          pre) == 0
                       ? all.size() - pre.size()
                       : 0;
    size_t skip = 0, at = 0;
    while (skip < pieces.size() && at + pieces[skip].size() <= extra)
        at += pieces[skip++].size();
    return std::vector<llama_token>(pt.begin() + (long)skip, pt.end());
}

bool orch__glue_grammar_new(const struct llama_vocab *v, const char *spec_json,
                            struct llama_sampler **out)
{
    *out = nullptr;
    return guarded([&] {
        json j = json::parse(spec_json);
        std::string g = j.value("grammar", std::string());
        bool lazy = j.value("grammar_lazy", false);
        std::vector<std::string> pats;
        std::vector<llama_token> toks;
        for (const auto &t : j.value("triggers", json::array())) {
            int type = t.value("type", 0);
            std::string val = t.value("value", std::string());
            switch (type) {
            case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: pats.push_back(regex_escape(val)); break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: pats.push_back(val); break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL:
                pats.push_back(val.empty() ? "^$"
                                           : (val.front() != '^' ? "^" : "") + val +
                                                 (val.back() != '$' ? "$" : ""));
                break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN: toks.push_back(t.value("token", -1)); break;
            default: throw std::invalid_argument("unknown grammar trigger type");
            }
        }
        std::vector<const char *> pc;
        for (const auto &x : pats)
            pc.push_back(x.c_str());
        llama_sampler *s = lazy ? llama_sampler_init_grammar_lazy_patterns(
                                      v, g.c_str(), "root", pc.data(), pc.size(), toks.data(),
                                      toks.size())
                                : llama_sampler_init_grammar(v, g.c_str(), "root");
        if (!s)
            throw std::invalid_argument("the grammar does not parse");
        /* what the template already put after the prompt (a tool-call or
         * output grammar starts there) */
        std::string pre = j.value("generation_prompt", std::string());
        if (!pre.empty() && j.value("prefill", false)) {
            try {
                for (llama_token t : prefill_tokens(v, pre))
                    llama_sampler_accept(s, t);
            } catch (...) {
                llama_sampler_free(s);
                throw;
            }
        }
        *out = s;
    });
}

bool orch__glue_sample(struct llama_sampler *chain, struct llama_sampler *grammar,
                       struct llama_context *ctx, int32_t idx, const struct llama_vocab *v,
                       llama_token *out)
{
    *out = LLAMA_TOKEN_NULL;
    return guarded([&] {
        static thread_local std::vector<llama_token_data> cur;
        const float *logits = llama_get_logits_ith(ctx, idx);
        int32_t n = llama_vocab_n_tokens(v);
        if (!logits)
            throw std::runtime_error("no logits for this sequence");
        auto fill = [&] {
            cur.resize((size_t)n);
            for (int32_t i = 0; i < n; i++)
                cur[(size_t)i] = llama_token_data{i, logits[i], 0.0f};
            return llama_token_data_array{cur.data(), (size_t)n, -1, false};
        };
        llama_token_data_array a = fill();
        llama_sampler_apply(chain, &a);
        llama_token tok = a.data[a.selected].id;
        /* the chain's pick, checked alone (cheap); else the grammar over the
         * whole vocabulary first, then the chain (llama.cpp's common_sampler) */
        llama_token_data one = {tok, 1.0f, 0.0f};
        llama_token_data_array a1 = {&one, 1, -1, false};
        llama_sampler_apply(grammar, &a1);
        if (std::isinf(one.logit) && one.logit < 0) {
            a = fill();
            llama_sampler_apply(grammar, &a);
            bool any = false;
            for (size_t i = 0; i < a.size && !any; i++)
                any = !(std::isinf(a.data[i].logit) && a.data[i].logit < 0);
            if (!any)
                throw std::runtime_error("the grammar allows no token here");
            llama_sampler_apply(chain, &a);
            tok = a.data[a.selected].id;
        }
        /* an end token ends the request: never fed to the grammar (llama.cpp
         * aborts on one the grammar is not complete for) */
        if (!llama_vocab_is_eog(v, tok))
            llama_sampler_accept(grammar, tok);
        llama_sampler_accept(chain, tok);
        *out = tok;
    });
}

} /* extern "C" */
