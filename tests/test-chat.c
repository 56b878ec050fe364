/*
 * test-chat.c — chat through llama.cpp's chat layer: the real templates of
 * the pinned source (models/templates) on synthetic random-weight models,
 * tool calls a grammar enforces, structured output, bad input.
 *
 * A random-weight model writes noise; what these tests hold is that the
 * grammar leaves it no choice: a required tool call parses, a schema's JSON
 * validates. Each model is tiny (about 100k parameters), so the suite runs
 * a template in well under a second.
 */
#include "test.h"

#include <dirent.h>
#include <jansson.h>

/* llama_direct.cpp: llama.cpp's own rendering of OpenAI JSON (NULL with
 * *error set when it refuses). */
char *test_llama_render(const char *gguf, const char *messages_json, const char *tools_json,
                        char **error);

static const char *templates_dir(void)
{
    const char *d = getenv("ORCH_TEST_TEMPLATES");
    return d && *d ? d : ORCH_TEMPLATES_DIR;
}

/* The text of a template file (the caller frees it), or NULL. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = 0;
    fclose(f);
    return s;
}

/* A tiny model carrying `tmpl` (NULL: none), loaded. */
static orch_model *model_with(const char *name, const char *tmpl)
{
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 100000;
    sp.chat_template = tmpl;
    sp.n_ctx_train = 4096;
    const char *path = test_synth_file(name, &sp);
    return test_model_new(path, NULL, name);
}

static const char *TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
    "\"The weather in a city\", \"parameters\": {\"type\": \"object\", \"properties\": "
    "{\"city\": {\"type\": \"string\", \"enum\": [\"Paris\", \"Rome\", \"Oslo\"]}}, "
    "\"required\": [\"city\"]}}}]";

/* A conversation with every kind of message: system, two user turns, an
 * assistant tool call and its result (an id of 9 letters and digits, which
 * Mistral's templates require). */
static const struct orch_tool_call CALL = {"call1abcd", "get_weather", "{\"city\": \"Paris\"}"};
static const struct orch_chat_message CONVO[] = {
    {.role = "system", .content = "You are a helpful assistant."},
    {.role = "user", .content = "What is the weather in Paris?"},
    {.role = "assistant", .content = "", .tool_calls = &CALL, .n_tool_calls = 1},
    {.role = "tool", .content = "{\"temperature\": 21}", .tool_call_id = "call1abcd",
     .name = "get_weather"},
    {.role = "assistant", .content = "It is 21 degrees in Paris."},
    {.role = "user", .content = "And in Rome?"},
};
#define N_CONVO (sizeof CONVO / sizeof CONVO[0])

static struct orch_gen_params sampling(uint32_t seed, int32_t max_tokens)
{
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0.8f;
    gp.seed = seed;
    gp.max_tokens = max_tokens;
    gp.n_threads = 1;
    return gp;
}

/* The call's arguments are a JSON object whose city is one the schema allows. */
static void assert_weather_call(const struct orch_chat_reply *r, const char *tmpl)
{
    if (r->n_tool_calls < 1)
        print_error("%s: no tool call; content '%s'\n", tmpl, r->content);
    assert_true(r->n_tool_calls >= 1);
    assert_string_equal(r->tool_calls[0].name, "get_weather");
    assert_true(r->tool_calls[0].id && r->tool_calls[0].id[0]);
    json_error_t je;
    json_t *args = json_loads(r->tool_calls[0].arguments, 0, &je);
    if (!args)
        print_error("%s: arguments '%s' are not JSON\n", tmpl, r->tool_calls[0].arguments);
    assert_non_null(args);
    const char *city = json_string_value(json_object_get(args, "city"));
    assert_non_null(city);
    assert_true(strcmp(city, "Paris") == 0 || strcmp(city, "Rome") == 0 ||
                strcmp(city, "Oslo") == 0);
    json_decref(args);
}

/* The conversation above as OpenAI's JSON, for llama.cpp's own path. */
static const char *CONVO_JSON =
    "[{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"},"
    "{\"role\": \"user\", \"content\": \"What is the weather in Paris?\"},"
    "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"call1abcd\", "
    "\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": "
    "\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
    "{\"role\": \"tool\", \"content\": \"{\\\"temperature\\\": 21}\", \"tool_call_id\": "
    "\"call1abcd\", \"name\": \"get_weather\"},"
    "{\"role\": \"assistant\", \"content\": \"It is 21 degrees in Paris.\"},"
    "{\"role\": \"user\", \"content\": \"And in Rome?\"}]";

/* Every template of the pinned source renders the whole conversation with
 * a tool through a model carrying it in its GGUF (the library's path, the
 * C bridge) exactly as llama.cpp's own chat layer renders it from OpenAI's
 * JSON; where llama.cpp refuses (a template without tools or system
 * messages raises), the library refuses too, with the template's words. */
static void test_every_template_renders(void **state)
{
    (void)state;
    DIR *d = opendir(templates_dir());
    if (!d)
        print_error("no templates in %s (scripts/setup.sh puts them there)\n", templates_dir());
    assert_non_null(d);
    struct dirent *de;
    int n = 0, same = 0, refused = 0;
    struct orch_chat_params cp = orch_chat_default_params();
    cp.tools = TOOLS;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 7 || strcmp(de->d_name + len - 6, ".jinja") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", templates_dir(), de->d_name);
        char *tmpl = read_text(path);
        assert_non_null(tmpl);
        orch_model *m = model_with("t.gguf", tmpl);
        const char *gguf = orch_model_path(m);
        char *out = NULL, *why = NULL;
        orch_error err = {0};
        int rc = orch_model_chat_render(m, CONVO, N_CONVO, &cp, NULL, true, &out, &err);
        char *ref = test_llama_render(gguf, CONVO_JSON, TOOLS, &why);
        if ((rc == ORCH_OK) != (ref != NULL) || (ref && strcmp(out, ref) != 0)) {
            print_error("%s: library %s: %s\nllama.cpp %s: %s\n", de->d_name,
                        orch_err_name(rc), rc ? err.msg : out, ref ? "renders" : "refuses",
                        ref ? ref : why);
            fail();
        }
        if (ref) {
            assert_non_null(strstr(out, "And in Rome?"));
            same++;
        } else {
            assert_int_equal(rc, ORCH_EINVAL);
            assert_non_null(strstr(err.msg, "t.gguf"));
            refused++;
        }
        free(out);
        free(ref);
        free(why);
        orch_model_free(m);
        free(tmpl);
        n++;
    }
    closedir(d);
    print_message("%d templates: %d render as llama.cpp renders them, %d refused by both\n", n,
                  same, refused);
    assert_true(n >= 60);
    assert_true(same >= n - 1); /* 69 of 70: Gemma 2 has no system role */
}

/* A required tool call on each family the issue names parses, with its
 * arguments valid against the tool's schema; alone and streamed (the
 * deltas add up to the reply). */
struct deltas {
    struct json_t *calls; /* index -> {"id", "name", "arguments"} */
    char content[4096];
};

static void on_delta(const struct orch_chat_delta *d, void *ud)
{
    struct deltas *s = ud;
    strncat(s->content, d->content, sizeof s->content - strlen(s->content) - 1);
    if (d->tool_index < 0)
        return;
    while (json_array_size(s->calls) <= (size_t)d->tool_index)
        json_array_append_new(s->calls, json_pack("{s:s,s:s,s:s}", "id", "", "name", "",
                                                  "arguments", ""));
    json_t *c = json_array_get(s->calls, (size_t)d->tool_index);
    const char *keys[] = {"id", "name", "arguments"};
    const char *add[] = {d->tool_id, d->tool_name, d->tool_arguments};
    for (int i = 0; i < 3; i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s%s", json_string_value(json_object_get(c, keys[i])), add[i]);
        json_object_set_new(c, keys[i], json_string(buf));
    }
}

static const char *const FAMILIES[] = {
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "Qwen-Qwen3-0.6B.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "ibm-granite-granite-4.0.jinja",
    "openai-gpt-oss-120b.jinja",
    "meetkai-functionary-medium-v3.2.jinja",
};

static void test_required_tool_call_parses(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof FAMILIES / sizeof *FAMILIES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", templates_dir(), FAMILIES[f]);
        char *tmpl = read_text(path);
        if (!tmpl)
            print_error("missing template %s\n", path);
        assert_non_null(tmpl);
        orch_model *m = model_with("f.gguf", tmpl);
        for (int mode = 0; mode < 3; mode++) {
            struct orch_chat_params cp = orch_chat_default_params();
            cp.tools = TOOLS;
            cp.tool_choice = mode == 2 ? ORCH_TOOLS_FUNCTION : ORCH_TOOLS_REQUIRED;
            cp.tool_name = "get_weather";
            struct deltas ds = {.calls = json_array()};
            if (mode == 1) {
                cp.on_delta = on_delta;
                cp.user_data = &ds;
            }
            struct orch_gen_params gp = sampling(7 + (uint32_t)f, 400);
            struct orch_chat_result res;
            orch_error err = {0};
            int rc = orch_model_chat_ext(m, CONVO, 2, &cp, NULL, &gp, &res, &err);
            if (rc)
                print_error("%s: %s\n", FAMILIES[f], err.msg);
            assert_int_equal(rc, ORCH_OK);
            assert_weather_call(&res.reply, FAMILIES[f]);
            if (mode == 1) { /* the streamed pieces are the reply */
                assert_string_equal(ds.content, res.reply.content);
                assert_int_equal(json_array_size(ds.calls), res.reply.n_tool_calls);
                json_t *c0 = json_array_get(ds.calls, 0);
                assert_string_equal(json_string_value(json_object_get(c0, "name")),
                                    res.reply.tool_calls[0].name);
                assert_string_equal(json_string_value(json_object_get(c0, "arguments")),
                                    res.reply.tool_calls[0].arguments);
                assert_string_equal(json_string_value(json_object_get(c0, "id")),
                                    res.reply.tool_calls[0].id);
            }
            json_decref(ds.calls);
            orch_chat_result_clear(&res);
        }
        orch_model_free(m);
        free(tmpl);
    }
}

/* A reply under a JSON schema is JSON valid against it; under a grammar,
 * a sentence of it; with and without a template. */
static void test_structured_output(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", templates_dir(), "Qwen-Qwen2.5-7B-Instruct.jinja");
    char *tmpl = read_text(path);
    assert_non_null(tmpl);
    orch_model *models[2] = {model_with("s1.gguf", tmpl), model_with("s2.gguf", NULL)};
    for (int k = 0; k < 2; k++) {
        struct orch_chat_params cp = orch_chat_default_params();
        cp.json_schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": "
                         "\"string\", \"maxLength\": 12}, \"age\": {\"type\": \"integer\", "
                         "\"minimum\": 0, \"maximum\": 150}}, \"required\": [\"name\", \"age\"], "
                         "\"additionalProperties\": false}";
        struct orch_gen_params gp = sampling(3, 300);
        struct orch_chat_result res;
        orch_error err = {0};
        assert_rc(orch_model_chat_ext(models[k], CONVO, 2, &cp, NULL, &gp, &res, &err), ORCH_OK,
                  err);
        json_error_t je;
        json_t *o = json_loads(res.reply.content, 0, &je);
        if (!o)
            print_error("not JSON: '%s'\n", res.reply.content);
        assert_non_null(o);
        assert_true(json_is_string(json_object_get(o, "name")));
        assert_true(json_is_integer(json_object_get(o, "age")));
        json_int_t age = json_integer_value(json_object_get(o, "age"));
        assert_true(age >= 0 && age <= 150);
        assert_int_equal(json_object_size(o), 2);
        json_decref(o);
        orch_chat_result_clear(&res);

        cp = orch_chat_default_params();
        cp.grammar = "root ::= (\"yes\" | \"no\") \".\"";
        assert_rc(orch_model_chat_ext(models[k], CONVO, 2, &cp, NULL, &gp, &res, &err), ORCH_OK,
                  err);
        assert_true(strcmp(res.reply.content, "yes.") == 0 ||
                    strcmp(res.reply.content, "no.") == 0);
        orch_chat_result_clear(&res);
        orch_model_free(models[k]);
    }
    free(tmpl);
}

/* Bad input is ORCH_EINVAL saying why, and the model's next request works. */
static void test_bad_input_is_refused(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", templates_dir(), "Qwen-Qwen2.5-7B-Instruct.jinja");
    char *tmpl = read_text(path);
    assert_non_null(tmpl);
    orch_model *m = model_with("b.gguf", tmpl);
    struct {
        const char *what, *schema, *grammar, *tools, *needle;
    } cases[] = {
        {"schema that is not JSON", "{\"type\": ", NULL, NULL, "JSON schema"},
        {"schema of an unknown type", "{\"type\": \"bogus\"}", NULL, NULL, "schema"},
        {"grammar that does not parse", NULL, "root ::= \"unterminated", NULL, "grammar"},
        {"grammar naming a rule it lacks", NULL, "root ::= missing-rule", NULL, "grammar"},
        {"grammar without root", NULL, "start ::= \"x\"", NULL, "grammar"},
        {"tool without a name", NULL, NULL,
         "[{\"type\": \"function\", \"function\": {\"parameters\": {}}}]", "no name"},
        {"tools that are not a list", NULL, NULL, "{\"a\": 1}", "tools"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct orch_chat_params cp = orch_chat_default_params();
        cp.json_schema = cases[i].schema;
        cp.grammar = cases[i].grammar;
        cp.tools = cases[i].tools;
        struct orch_gen_params gp = sampling(1, 16);
        struct orch_chat_result res;
        orch_error err = {0};
        int rc = orch_model_chat_ext(m, CONVO, 2, &cp, NULL, &gp, &res, &err);
        if (rc != ORCH_EINVAL || !strstr(err.msg, cases[i].needle))
            print_error("%s: got %s '%s'\n", cases[i].what, orch_err_name(rc), err.msg);
        assert_int_equal(rc, ORCH_EINVAL);
        assert_non_null(strstr(err.msg, cases[i].needle));
        assert_null(res.gen.text);
    }
    /* a tool result answering a call nobody made */
    struct orch_chat_message bad[] = {
        {.role = "user", .content = "hi"},
        {.role = "tool", .content = "42", .tool_call_id = "call_9"},
    };
    struct orch_chat_result res;
    orch_error err = {0};
    struct orch_gen_params gp = sampling(1, 16);
    assert_rc(orch_model_chat_ext(m, bad, 2, NULL, NULL, &gp, &res, &err), ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "call_9"));
    /* a template override that raises */
    assert_rc(orch_model_chat_ext(m, CONVO, 2, NULL, "{{ raise_exception('no thanks') }}", &gp,
                                  &res, &err),
              ORCH_EINVAL, err);
    assert_non_null(strstr(err.msg, "no thanks"));
    /* a grammar that can only go on forever ends at max_tokens */
    struct orch_chat_params cp = orch_chat_default_params();
    cp.grammar = "root ::= \"a\" root";
    gp.max_tokens = 40;
    assert_rc(orch_model_chat_ext(m, CONVO, 2, &cp, NULL, &gp, &res, &err), ORCH_OK, err);
    assert_int_equal(res.gen.finish, ORCH_FINISH_LENGTH);
    assert_true(strspn(res.reply.content, "a") == strlen(res.reply.content));
    orch_chat_result_clear(&res);
    /* and the next plain request works */
    assert_rc(orch_model_chat_ext(m, CONVO, 2, NULL, NULL, &gp, &res, &err), ORCH_OK, err);
    assert_non_null(res.gen.text);
    orch_chat_result_clear(&res);
    orch_model_free(m);
    free(tmpl);
}

/* Gemma 4 writes its arguments in its own notation, which llama.cpp's
 * grammar does not hold to the tool's schema: a required call still comes
 * back named and parses into a JSON object (its keys are the model's). */
static void test_required_call_gemma4(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", templates_dir(), "google-gemma-4-31B-it.jinja");
    char *tmpl = read_text(path);
    assert_non_null(tmpl);
    orch_model *m = model_with("g4.gguf", tmpl);
    for (uint32_t seed = 1; seed <= 3; seed++) {
        struct orch_chat_params cp = orch_chat_default_params();
        cp.tools = TOOLS;
        cp.tool_choice = ORCH_TOOLS_REQUIRED;
        struct orch_gen_params gp = sampling(seed, 400);
        struct orch_chat_result res;
        orch_error err = {0};
        assert_rc(orch_model_chat_ext(m, CONVO, 2, &cp, NULL, &gp, &res, &err), ORCH_OK, err);
        if (res.reply.n_tool_calls != 1)
            print_error("gemma 4: %zu calls; text '%s'\n", res.reply.n_tool_calls, res.gen.text);
        assert_int_equal(res.reply.n_tool_calls, 1);
        assert_string_equal(res.reply.tool_calls[0].name, "get_weather");
        json_error_t je;
        json_t *args = json_loads(res.reply.tool_calls[0].arguments, 0, &je);
        if (!json_is_object(args))
            print_error("gemma 4: arguments '%s'\n", res.reply.tool_calls[0].arguments);
        assert_true(json_is_object(args));
        json_decref(args);
        orch_chat_result_clear(&res);
    }
    orch_model_free(m);
    free(tmpl);
}

/* Constrained and free requests batched together: each gets what it gets
 * alone (greedy: the same text). */
struct side {
    orch_model *m;
    bool constrained;
    char *text;
};

static void *run_side(void *arg)
{
    struct side *s = arg;
    struct orch_chat_params cp = orch_chat_default_params();
    if (s->constrained)
        cp.json_schema = "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": "
                         "\"integer\"}}, \"required\": [\"n\"]}";
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 48;
    struct orch_chat_result res;
    orch_error err = {0};
    if (orch_model_chat_ext(s->m, CONVO, 2, &cp, NULL, &gp, &res, &err) == ORCH_OK) {
        s->text = strdup(res.gen.text);
        orch_chat_result_clear(&res);
    }
    return NULL;
}

static void test_constrained_beside_free(void **state)
{
    (void)state;
    /* a real template: the two render at once on one model's templates too */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", templates_dir(), "Qwen-Qwen2.5-7B-Instruct.jinja");
    char *tmpl = read_text(path);
    assert_non_null(tmpl);
    orch_model *m = model_with("c.gguf", tmpl);
    free(tmpl);
    struct side alone[2] = {{m, true, NULL}, {m, false, NULL}};
    run_side(&alone[0]);
    run_side(&alone[1]);
    assert_non_null(alone[0].text);
    assert_non_null(alone[1].text);
    for (int round = 0; round < 3; round++) {
        struct side both[2] = {{m, true, NULL}, {m, false, NULL}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, run_side, &both[i]), 0);
        for (int i = 0; i < 2; i++)
            assert_true(test_join_within(th[i], 120));
        for (int i = 0; i < 2; i++) {
            assert_non_null(both[i].text);
            assert_string_equal(both[i].text, alone[i].text);
            free(both[i].text);
        }
    }
    free(alone[0].text);
    free(alone[1].text);
    orch_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_template_renders),
        cmocka_unit_test(test_required_tool_call_parses),
        cmocka_unit_test(test_required_call_gemma4),
        cmocka_unit_test(test_structured_output),
        cmocka_unit_test(test_bad_input_is_refused),
        cmocka_unit_test(test_constrained_beside_free),
    };
    return cmocka_run_group_tests(tests, NULL, test_teardown);
}
