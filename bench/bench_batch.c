/*
 * bench_batch.c — continuous batching in process, against the same requests
 * with a context each (n_parallel 0: what every request got before the
 * engine), on the synthetic ~100M model, same threads, same run:
 *   1. aggregate generated tokens/s with 1, 4 and 16 concurrent streams of
 *      N_GEN greedy tokens each;
 *   2. time to first token of a new request (a ~200-token prompt) while 4
 *      streams run, against the same request alone;
 *   3. a 5-turn chat (each turn's prompt is the last one plus the reply and
 *      a new question) with prefix reuse and without (no_cache);
 *   4. three roles decoding at once (two on the 100M model, one on
 *      stories260K): total tokens/s and the slowest role's share of its
 *      speed alone, under the CPU budget and with it lifted
 *      (n_threads_total 1024).
 * Prints figures; asserts nothing.
 * usage: bench_batch [-t THREADS] [-n TOKENS] [-s SECTION] [MODEL.gguf]
 */
#include <orchestra.h>

#include "bench_synth.h"
#include "bench_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_threads = 2, g_gen = 64;

static orch_model *open_model(const char *path, const char *role, int n_parallel, int threads)
{
    struct orch_model_params p = orch_model_default_params();
    p.path = path;
    p.role = role;
    p.n_threads = threads;
    p.n_parallel = n_parallel;
    p.n_ctx = 1024;
    orch_model *m = NULL;
    orch_error err = {0};
    if (orch_model_new(&p, &m, &err) || orch_model_load(m, &err)) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        exit(1);
    }
    return m;
}

/* A prompt of about `words` words (several tokens each on the byte-level
 * synthetic vocabulary; one or two on stories260K). */
static char *words_prompt(int words, int seed)
{
    static const char *w[] = {"the", "cat", "sat", "on", "a", "warm", "mat", "and", "looked",
                              "at", "birds", "in", "tall", "green", "trees"};
    char *s = malloc((size_t)words * 8 + 1);
    size_t n = 0;
    for (int i = 0; i < words; i++)
        n += (size_t)sprintf(s + n, "%s%s", i ? " " : "", w[(i * 7 + seed * 3) % 15]);
    return s;
}

/* ---- 1. concurrent streams --------------------------------------------------------- */

struct stream {
    orch_model *m;
    const char *prompt;
    int max_tokens;
    bool no_cache;
    double t_start, t_first, t_end;
    int n;
    atomic_bool started; /* a first piece came */
    double deadline;     /* stop generating then (0 = never) */
};

static bool first_cb(const char *t, size_t n, void *ud)
{
    (void)t;
    (void)n;
    struct stream *s = ud;
    if (s->t_first == 0) {
        s->t_first = bench_now_ms();
        atomic_store(&s->started, true);
    }
    return s->deadline == 0 || bench_now_ms() < s->deadline;
}

static void *stream_main(void *arg)
{
    struct stream *s = arg;
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.max_tokens = s->max_tokens;
    p.no_cache = s->no_cache;
    p.on_text = first_cb;
    p.user_data = s;
    struct orch_gen_result r;
    orch_error err = {0};
    s->t_first = 0;
    s->t_start = bench_now_ms();
    if (orch_model_generate(s->m, s->prompt, &p, &r, &err)) {
        fprintf(stderr, "generate: %s\n", err.msg);
        exit(1);
    }
    s->t_end = bench_now_ms();
    s->n = r.n_generated;
    orch_gen_result_clear(&r);
    return NULL;
}

/* Generated tokens/s of c streams at once. */
static double streams(orch_model *m, int c)
{
    pthread_t th[64];
    struct stream s[64];
    char *prompts[64];
    double t0 = bench_now_ms();
    for (int i = 0; i < c; i++) {
        prompts[i] = words_prompt(12, i);
        s[i] =
            (struct stream){.m = m, .prompt = prompts[i], .max_tokens = g_gen, .no_cache = true};
        pthread_create(&th[i], NULL, stream_main, &s[i]);
    }
    long total = 0;
    for (int i = 0; i < c; i++) {
        pthread_join(th[i], NULL);
        total += s[i].n;
        free(prompts[i]);
    }
    return (double)total / ((bench_now_ms() - t0) / 1e3);
}

static void bench_streams(const char *path)
{
    orch_model *solo = open_model(path, "per-request", 0, g_threads);
    orch_model *eng = open_model(path, "engine", 16, g_threads);
    streams(solo, 1); /* warm both */
    streams(eng, 1);
    printf("\n1. aggregate generated tokens/s, %d greedy tokens per stream\n", g_gen);
    printf("%8s %14s %14s %8s\n", "streams", "a context each", "engine", "ratio");
    int levels[] = {1, 4, 16};
    for (int k = 0; k < 3; k++) {
        int c = levels[k];
        double a[3], b[3];
        for (int r = 0; r < 3; r++) { /* alternate, take the medians */
            a[r] = streams(solo, c);
            b[r] = streams(eng, c);
        }
        double ma = bench_median(a, 3), mb = bench_median(b, 3);
        printf("%8d %14.1f %14.1f %7.2fx\n", c, ma, mb, mb / ma);
    }
    orch_model_free(solo);
    orch_model_free(eng);
}

/* ---- 2. time to first token beside 4 streams --------------------------------------------- */

static double ttft(orch_model *m, int busy)
{
    pthread_t th[8];
    struct stream s[8];
    char *prompts[8];
    for (int i = 0; i < busy; i++) {
        prompts[i] = words_prompt(8, i);
        s[i] = (struct stream){.m = m, .prompt = prompts[i], .max_tokens = 4 * g_gen,
                               .no_cache = true};
        pthread_create(&th[i], NULL, stream_main, &s[i]);
    }
    if (busy) /* let the streams get going */
        for (;;) {
            bool all = true;
            for (int i = 0; i < busy; i++)
                all &= atomic_load(&s[i].started);
            if (all)
                break;
            usleep(1000);
        }
    char *prompt = words_prompt(60, 99);
    struct stream n = {.m = m, .prompt = prompt, .max_tokens = 4, .no_cache = true};
    stream_main(&n);
    for (int i = 0; i < busy; i++) {
        pthread_join(th[i], NULL);
        free(prompts[i]);
    }
    free(prompt);
    return n.t_first - n.t_start;
}

static void bench_ttft(const char *path)
{
    orch_model *solo = open_model(path, "per-request", 0, g_threads);
    orch_model *eng = open_model(path, "engine", 8, g_threads);
    printf("\n2. time to first token of a new ~200-token prompt (ms, median of 3)\n");
    printf("%22s %14s %14s\n", "", "a context each", "engine");
    for (int busy = 0; busy <= 4; busy += 4) {
        double a[3], b[3];
        for (int r = 0; r < 3; r++) {
            a[r] = ttft(solo, busy);
            b[r] = ttft(eng, busy);
        }
        printf("%22s %14.1f %14.1f\n", busy ? "beside 4 streams" : "alone",
               bench_median(a, 3), bench_median(b, 3));
    }
    orch_model_free(solo);
    orch_model_free(eng);
}

/* ---- 3. multi-turn chat -------------------------------------------------------------------- */

static double chat(orch_model *m, bool no_cache, int *evaluated)
{
    struct text {
        char *d;
        size_t n;
    } conv = {malloc(1 << 16), 0};
    conv.n = (size_t)sprintf(conv.d, "A long story about a cat. ");
    double t0 = bench_now_ms();
    *evaluated = 0;
    for (int turn = 0; turn < 5; turn++) {
        char *q = words_prompt(40, turn);
        conv.n += (size_t)sprintf(conv.d + conv.n, "Question: %s Answer:", q);
        free(q);
        struct orch_gen_params p = orch_gen_default_params();
        p.temperature = 0;
        p.max_tokens = 32;
        p.no_cache = no_cache;
        struct orch_gen_result r;
        orch_error err = {0};
        if (orch_model_generate(m, conv.d, &p, &r, &err)) {
            fprintf(stderr, "chat: %s\n", err.msg);
            exit(1);
        }
        *evaluated += r.n_prompt - r.n_cached;
        /* the reply, made plain ASCII so the next prompt stays small */
        for (size_t i = 0; i < r.len && conv.n < 60000; i++)
            conv.d[conv.n++] = (r.text[i] & 0x80) || !r.text[i] ? '?' : r.text[i];
        conv.d[conv.n++] = ' ';
        conv.d[conv.n] = '\0';
        orch_gen_result_clear(&r);
    }
    free(conv.d);
    return bench_now_ms() - t0;
}

static void bench_chat(const char *path)
{
    orch_model *eng = open_model(path, "engine", 4, g_threads);
    printf("\n3. a 5-turn chat, 32 tokens per reply (median of 3)\n");
    double a[3], b[3];
    int ea = 0, eb = 0;
    for (int r = 0; r < 3; r++) {
        a[r] = chat(eng, true, &ea);
        b[r] = chat(eng, false, &eb);
    }
    double ma = bench_median(a, 3), mb = bench_median(b, 3);
    printf("   without prefix reuse: %8.1f ms, %5d prompt tokens evaluated\n", ma, ea);
    printf("   with prefix reuse:    %8.1f ms, %5d prompt tokens evaluated (%.2fx faster)\n", mb,
           eb, ma / mb);
    orch_model_free(eng);
}

/* ---- 4. three roles at once --------------------------------------------------------------- */

struct role_run {
    orch_model *m;
    double seconds;
    int max_tokens;
    long tokens;
    double tps;
};

static void *role_main(void *arg)
{
    struct role_run *r = arg;
    double t0 = bench_now_ms(), end = t0 + r->seconds * 1e3;
    r->tokens = 0;
    int i = 0;
    while (bench_now_ms() < end) {
        char *prompt = words_prompt(10, i++);
        struct stream s = {.m = r->m, .prompt = prompt, .max_tokens = r->max_tokens,
                           .no_cache = true, .deadline = end};
        stream_main(&s);
        r->tokens += s.n;
        free(prompt);
    }
    r->tps = (double)r->tokens / ((bench_now_ms() - t0) / 1e3);
    return NULL;
}

static void three_roles(orch_model *m[3], double alone[3], const char *label, double seconds,
                        int max_tokens)
{
    pthread_t th[3];
    struct role_run r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (struct role_run){.m = m[i], .seconds = seconds, .max_tokens = max_tokens};
        pthread_create(&th[i], NULL, role_main, &r[i]);
    }
    double total = 0, worst = 1e9;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        total += r[i].tps;
        double share = r[i].tps / alone[i];
        if (share < worst)
            worst = share;
    }
    printf("   %-28s total %7.1f tokens/s (%.0f + %.0f + %.0f); slowest role at %.0f%% of "
           "its speed alone\n",
           label, total, r[0].tps, r[1].tps, r[2].tps, worst * 100);
}

static void bench_roles(const char *big, const char *small)
{
    orch_model *m[3] = {open_model(big, "big-a", 4, g_threads),
                        open_model(big, "big-b", 4, g_threads),
                        open_model(small ? small : big, "small", 4, g_threads)};
    double alone[3];
    printf("\n4. three roles decoding at once (%d threads each; %s)\n", g_threads,
           small ? "two on the 100M model, one on stories260K" : "all on the 100M model");
    for (int i = 0; i < 3; i++) {
        struct role_run r = {.m = m[i], .seconds = 3, .max_tokens = 32};
        role_main(&r);
        alone[i] = r.tps;
    }
    printf("   alone: %.1f, %.1f, %.1f tokens/s\n", alone[0], alone[1], alone[2]);
    int32_t before = orch_cpu_budget(0);
    three_roles(m, alone, "under the CPU budget:", 6, 32);
    /* without a budget six compute threads spin on two cores: a decode can
     * take seconds, so this run is short and its requests are too */
    orch_cpu_budget(1024);
    three_roles(m, alone, "budget lifted (1024):", 2, 4);
    orch_cpu_budget(before);
    for (int i = 0; i < 3; i++)
        orch_model_free(m[i]);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int only = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            g_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            only = atoi(argv[++i]);
        else
            path = argv[i];
    }
    static char synth[] = "build/bench/synth-100M.gguf";
    if (!path) {
        if (!bench_ensure_synth(synth, 100000000, 1))
            return 1;
        path = synth;
    }
    const char *small = getenv("ORCH_TEST_MODEL");
    if (!small)
        small = "../shared/models/stories260K.gguf";
    if (access(small, R_OK) != 0)
        small = NULL;
    printf("machine: %ld CPUs; model: %s; %d threads\n", sysconf(_SC_NPROCESSORS_ONLN), path,
           g_threads);
    if (!only || only == 1)
        bench_streams(path);
    if (!only || only == 2)
        bench_ttft(path);
    if (!only || only == 3)
        bench_chat(path);
    if (!only || only == 4)
        bench_roles(path, small);
    return 0;
}
