/*
 * bench_orchestra.c — roles under load and under a budget.
 *
 * 1. Latency of acquire + a short generation (8 greedy tokens) on a ready
 *    role, p50 and p99: idle; while another role's slow load is in flight
 *    (a 3 s fake load); and while a large synthetic model loads and unloads
 *    for real in a loop beside it.
 * 2. Switch time from role A to role B under a budget that holds one of
 *    them: acquire of B (evicting A, loading B) through the orchestra,
 *    against a bare llama_model_free(A) + llama_model_load_from_file(B).
 *    (bench/switch.sh puts llama-server's router on the same files.)
 *
 * Prints figures; asserts nothing.
 * usage: bench-orchestra [STORIES.gguf] [--switch A.gguf B.gguf]
 */
#include <orchestra.h>

#include "bench_synth.h"
#include "bench_util.h"

#include <llama.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define N_LAT 300




static void die(const orch_error *err)
{
    fprintf(stderr, "bench-orchestra: %s\n", err->msg);
    exit(1);
}

static void ensure_synth(const char *path, uint64_t n_params, uint32_t seed)
{
    if (!bench_ensure_synth(path, n_params, seed))
        exit(1);
}

/* one request: acquire + 8 greedy tokens + release */
static double request(orch_orchestra *o)
{
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.max_tokens = 8;
    struct orch_gen_result res;
    orch_error err;
    double t0 = bench_now_ms();
    if (orch_generate(o, "fast", "Once upon a time", &p, &res, &err))
        die(&err);
    double t = bench_now_ms() - t0;
    orch_gen_result_clear(&res);
    return t;
}

static void measure(orch_orchestra *o, const char *label, double *p50, double *p99)
{
    double v[N_LAT];
    for (int i = 0; i < N_LAT; i++)
        v[i] = request(o);
    *p50 = bench_pct(v, N_LAT, 0.50);
    *p99 = bench_pct(v, N_LAT, 0.99);
    printf("  %-44s p50 %7.3f ms   p99 %7.3f ms\n", label, *p50, *p99);
}

struct loader {
    orch_orchestra *o;
    const char *role;
    atomic_int stop;
    int loads;
};

static void *load_once(void *arg)
{
    struct loader *l = arg;
    const char *roles[] = {l->role};
    orch_error err;
    if (orch_preload(l->o, roles, 1, &err))
        die(&err);
    return NULL;
}

static void *load_loop(void *arg)
{
    struct loader *l = arg;
    const char *roles[] = {l->role};
    orch_error err;
    while (!atomic_load(&l->stop)) {
        if (orch_preload(l->o, roles, 1, &err))
            die(&err);
        orch_unload(l->o, l->role, &err);
        l->loads++;
    }
    return NULL;
}

static void bench_latency(const char *stories, const char *big)
{
    /* "slow" needs a file of its own (the fake backend only stats it) */
    char text[2048];
    snprintf(text, sizeof text,
             "[defaults]\nidle_ttl = -1\nn_threads = 1\nn_ctx = 256\n"
             "[fast]\npath = %s\n[slow]\npath = %s.fake\n[big]\npath = %s\n",
             stories, big, big);
    char fakepath[1024];
    snprintf(fakepath, sizeof fakepath, "%s.fake", big);
    FILE *f = fopen(fakepath, "w");
    if (!f || fputs("fake", f) < 0 || fclose(f)) {
        perror(fakepath);
        exit(1);
    }
    orch_config *cfg;
    orch_error err;
    if (orch_config_parse(text, "bench.ini", false, &cfg, &err))
        die(&err);
    struct orch_fake_params fp = orch_fake_default_params();
    fp.load_ms = 3000;
    orch_backend *fake = orch_fake_new(&fp);
    struct orch_role_backend rb[] = {{"slow", fake}};
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.role_backends = rb;
    op.n_role_backends = 1;
    orch_orchestra *o;
    if (orch_open(cfg, &op, &o, &err))
        die(&err);
    orch_config_free(cfg);
    for (int i = 0; i < 50; i++) /* warm: loads fast, fills the context pool */
        request(o);

    printf("\nacquire + 8-token greedy generation on a ready role (stories260K, 1 thread), %d "
           "requests each\n",
           N_LAT);
    double i50, i99, s50, s99, b50, b99, j50, j99;
    measure(o, "idle", &i50, &i99);
    struct loader sl = {.o = o, .role = "slow"};
    pthread_t th;
    pthread_create(&th, NULL, load_once, &sl);
    usleep(10000);
    double t0 = bench_now_ms();
    measure(o, "while another role loads (3 s fake load)", &s50, &s99);
    bool overlapped = bench_now_ms() - t0 < 2900;
    pthread_join(th, NULL);
    struct loader bl = {.o = o, .role = "big"};
    pthread_create(&th, NULL, load_loop, &bl);
    usleep(10000);
    measure(o, "while a big model loads/unloads in a loop", &b50, &b99);
    atomic_store(&bl.stop, 1);
    pthread_join(th, NULL);
    measure(o, "idle again", &j50, &j99);
    printf("  ratios to idle: fake load p50 %.3f p99 %.3f%s; real loads (%d of them) p50 %.3f "
           "p99 %.3f\n",
           s50 / i50, s99 / i99, overlapped ? "" : " (load ended before the run: not overlapped)",
           bl.loads, b50 / i50, b99 / i99);
    orch_close(o);
    orch_fake_free(fake);
    unlink(fakepath);
}

static void quiet_log(enum ggml_log_level l, const char *t, void *u)
{
    (void)l;
    (void)t;
    (void)u;
}

static void bench_switch(const char *a, const char *b)
{
    uint64_t ea, eb;
    orch_error err;
    if (orch_file_estimate(a, 512, &ea, &err) || orch_file_estimate(b, 512, &eb, &err))
        die(&err);
    uint64_t budget = (ea > eb ? ea : eb) * 3 / 2;
    /* SWITCH_REPACK=false: weights kept as the file has them, on both
     * sides (the `repack` role key; llama.cpp's use_extra_bufts) */
    const char *rp = getenv("SWITCH_REPACK");
    bool repack = !(rp && !strcmp(rp, "false"));
    char text[2048];
    snprintf(text, sizeof text,
             "[defaults]\nmemory_budget = %llu\nidle_ttl = -1\nn_ctx = 512\nrepack = %s\n"
             "[a]\npath = %s\n[b]\npath = %s\n",
             (unsigned long long)budget, repack ? "true" : "false", a, b);
    orch_config *cfg;
    if (orch_config_parse(text, "switch.ini", false, &cfg, &err))
        die(&err);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.no_reaper = true;
    orch_orchestra *o;
    if (orch_open(cfg, &op, &o, &err))
        die(&err);
    orch_config_free(cfg);
    llama_log_set(quiet_log, NULL);

    enum { N = 11 };
    double ours[N], bare[N];
    const char *roles[] = {"a", "b"};
    orch_model *m;
    if (orch_role_acquire(o, "a", &m, &err))
        die(&err);
    orch_role_release(o, m);
    for (int i = -1; i < N; i++) {
        /* ours: a is loaded; acquiring b evicts a and loads b, and back */
        const char *to = roles[(i + 1) % 2 == 0 ? 1 : 0];
        double t0 = bench_now_ms();
        if (orch_role_acquire(o, to, &m, &err))
            die(&err);
        double t1 = bench_now_ms();
        orch_role_release(o, m);
        /* bare: free one, load the other */
        struct llama_model_params lp = llama_model_default_params();
        lp.use_extra_bufts = repack;
        struct llama_model *x = llama_model_load_from_file(to == roles[1] ? a : b, lp);
        double t2 = bench_now_ms();
        llama_model_free(x);
        struct llama_model *y = llama_model_load_from_file(to == roles[1] ? b : a, lp);
        double t3 = bench_now_ms();
        llama_model_free(y);
        if (i >= 0) {
            ours[i] = t1 - t0;
            bare[i] = t3 - t2;
        }
    }
    struct orch_budget_status bs;
    struct orch_role_status *st;
    size_t n;
    orch_status(o, &st, &n, &bs, &err);
    free(st);
    double o50 = bench_pct(ours, N, 0.5), b50 = bench_pct(bare, N, 0.5);
    printf("\nswitch between two models under a budget that holds one (%.1f MiB budget, "
           "%lld evictions)\n  %s\n  %s\n",
           (double)budget / (1 << 20), (long long)bs.n_evictions, a, b);
    printf("  %-40s %10.2f ms (median of %d)\n", "orchestra: acquire B (evict A, load B)", o50, N);
    printf("  %-40s %10.2f ms\n", "bare: llama_model_free + load", b50);
    printf("  ratio orchestra / bare: %.3f\n", o50 / b50);
    printf("SWITCH_MS %.3f\n", o50);
    orch_close(o);
}

int main(int argc, char **argv)
{
    const char *stories = getenv("ORCH_TEST_MODEL");
    const char *sa = NULL, *sb = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--switch") && i + 2 < argc) {
            sa = argv[++i];
            sb = argv[++i];
        } else {
            stories = argv[i];
        }
    }
    if (!stories)
        stories = "../shared/models/stories260K.gguf";
    orch_log_set_level(ORCH_LOG_OFF);
    printf("machine: %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
    ensure_synth("build/bench/synth-300M.gguf", 300000000, 5);
    if (access(stories, R_OK) == 0)
        bench_latency(stories, "build/bench/synth-300M.gguf");
    else
        printf("latency: %s not found; skipped\n", stories);
    if (!sa) {
        ensure_synth("build/bench/switch-a.gguf", 80000000, 11);
        ensure_synth("build/bench/switch-b.gguf", 80000000, 12);
        sa = "build/bench/switch-a.gguf";
        sb = "build/bench/switch-b.gguf";
    }
    bench_switch(sa, sb);
    return 0;
}
