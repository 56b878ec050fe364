/*
 * bench_chat.c — what the chat layer costs, in process, each against its
 * baseline in the same run:
 *   1. template rendering: one request of a 50-turn conversation with a
 *      tool through three real templates (llama.cpp's Jinja engine), per
 *      request, against the generation that follows a short chat;
 *   2. constrained generation: tokens per second under a GBNF grammar
 *      (every token checked, the whole vocabulary when a pick breaks it)
 *      against free sampling, on the synthetic 100M model, 1 and 4 streams.
 * Prints figures and ratios; asserts nothing.
 * usage: bench_chat TEMPLATES_DIR [THREADS]
 */
#include "bench_synth.h"
#include "bench_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = 0;
    fclose(f);
    return s;
}

static orch_model *open_model(const char *path, int32_t n_threads)
{
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.role = "bench";
    mp.n_threads = n_threads;
    mp.n_ctx = 2048;
    orch_model *m;
    orch_error err;
    if (orch_model_new(&mp, &m, &err) || orch_model_load(m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return m;
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"The "
    "weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
    "\"string\"}},\"required\":[\"city\"]}}}]";

static void bench_render(const char *dir)
{
    static const char *const files[] = {"Qwen-Qwen2.5-7B-Instruct.jinja",
                                        "meta-llama-Llama-3.1-8B-Instruct.jinja",
                                        "openai-gpt-oss-120b.jinja"};
    struct orch_chat_message msgs[101];
    msgs[0] = (struct orch_chat_message){.role = "system", .content = "You are terse."};
    for (int i = 1; i < 101; i++)
        msgs[i] = (struct orch_chat_message){
            .role = i % 2 ? "user" : "assistant",
            .content = i % 2 ? "Tell me one more thing about the sea, in two sentences."
                             : "The sea covers most of the planet. It holds most of its water."};
    struct orch_chat_params cp = orch_chat_default_params();
    cp.tools = TOOLS;
    printf("== rendering a 50-turn conversation with a tool (median of 50)\n");
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        char *tmpl = read_text(path);
        if (!tmpl) {
            fprintf(stderr, "no %s\n", path);
            exit(1);
        }
        struct orch_synth_params sp = orch_synth_default_params();
        sp.n_params = 100000;
        sp.chat_template = tmpl;
        orch_error err;
        if (orch_synth_model("build/bench/chat-tiny.gguf", &sp, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        orch_model *m = open_model("build/bench/chat-tiny.gguf", 1);
        double t[50];
        size_t len = 0;
        for (int i = 0; i < 50; i++) {
            char *out;
            double t0 = bench_now_ms();
            if (orch_model_chat_render(m, msgs, 101, &cp, NULL, true, &out, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                exit(1);
            }
            t[i] = bench_now_ms() - t0;
            len = strlen(out);
            free(out);
        }
        /* the same without the tool, and a 2-message chat: what a long
         * history costs beside a short one */
        double t2[50];
        for (int i = 0; i < 50; i++) {
            char *out;
            double t0 = bench_now_ms();
            orch_model_chat_render(m, msgs, 2, NULL, NULL, true, &out, &err);
            t2[i] = bench_now_ms() - t0;
            free(out);
        }
        printf("%-40s %7.3f ms (%zu bytes of prompt); 2 messages %6.3f ms; ratio %.1f\n",
               files[f], bench_pct(t, 50, 0.5), len, bench_pct(t2, 50, 0.5),
               bench_pct(t, 50, 0.5) / bench_pct(t2, 50, 0.5));
        orch_model_free(m);
        free(tmpl);
    }
}

struct job {
    orch_model *m;
    const char *grammar;
    uint32_t seed;
    int32_t tokens;
    double ms;
};

static void *run(void *arg)
{
    struct job *j = arg;
    struct orch_gen_params gp = orch_gen_default_params();
    gp.max_tokens = j->tokens;
    gp.temperature = 0.8f;
    gp.seed = j->seed;
    gp.grammar = j->grammar;
    gp.no_cache = true;
    struct orch_gen_result res;
    orch_error err;
    double t0 = bench_now_ms();
    if (orch_model_generate(j->m, "Once upon a time there was", &gp, &res, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    j->ms = bench_now_ms() - t0;
    j->tokens = res.n_generated;
    orch_gen_result_clear(&res);
    return NULL;
}

/* Tokens per second of `streams` requests at once, n rounds. */
static double rate(orch_model *m, const char *grammar, int streams, int rounds)
{
    long tokens = 0;
    double t0 = bench_now_ms();
    for (int r = 0; r < rounds; r++) {
        struct job jobs[16];
        pthread_t th[16];
        for (int i = 0; i < streams; i++) {
            jobs[i] = (struct job){m, grammar, (uint32_t)(100 * r + i + 1), 64, 0};
            pthread_create(&th[i], NULL, run, &jobs[i]);
        }
        for (int i = 0; i < streams; i++) {
            pthread_join(th[i], NULL);
            tokens += jobs[i].tokens;
        }
    }
    return (double)tokens / ((bench_now_ms() - t0) / 1e3);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_chat TEMPLATES_DIR [THREADS]\n");
        return 2;
    }
    int32_t threads = argc > 2 ? atoi(argv[2]) : 2;
    orch_log_set_level(ORCH_LOG_WARN);
    bench_render(argv[1]);
    if (!bench_ensure_synth("build/bench/synth-100M.gguf", 100000000ull, 1))
        return 1;
    orch_model *m = open_model("build/bench/synth-100M.gguf", threads);
    /* a grammar that never ends (64 tokens each way) over most of the
     * vocabulary's pieces: words of letters and spaces */
    const char *g = "root ::= [a-z ]+";
    rate(m, NULL, 1, 1); /* warm */
    printf("== constrained (%s) against free sampling, 64 tokens, %d threads\n", g, threads);
    for (int streams = 1; streams <= 4; streams *= 4) {
        int rounds = streams == 1 ? 4 : 2;
        double free1 = rate(m, NULL, streams, rounds), con = rate(m, g, streams, rounds);
        double free2 = rate(m, NULL, streams, rounds);
        double fr = (free1 + free2) / 2;
        printf("%d stream%s: free %.1f tok/s, constrained %.1f tok/s: %.3f of free\n", streams,
               streams > 1 ? "s" : "", fr, con, con / fr);
    }
    orch_model_free(m);
    return 0;
}
