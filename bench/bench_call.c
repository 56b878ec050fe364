/*
 * bench_call.c — the C side of bench/python.sh: the same short calls the
 * Python benchmark makes, in C, on the same model: a greedy generation of
 * N_GEN tokens and an embedding of a batch of N_EMB texts, each REPS times
 * after a warm-up. Prints the medians in microseconds; asserts nothing.
 * usage: bench_call MODEL.gguf [REPS]
 */
#include <orchestra.h>

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>

#define N_GEN 8
#define N_EMB 16

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_call MODEL.gguf [REPS]\n");
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 300;
    struct orch_model_params mp = orch_model_default_params();
    mp.path = argv[1];
    mp.n_threads = 1;
    orch_model *m;
    orch_error err;
    if (orch_model_new(&mp, &m, &err) || orch_model_load(m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = N_GEN;
    const char *texts[N_EMB];
    char buf[N_EMB][32];
    for (int i = 0; i < N_EMB; i++) {
        snprintf(buf[i], sizeof buf[i], "text number %d", i);
        texts[i] = buf[i];
    }
    double *g = malloc((size_t)reps * sizeof *g), *e = malloc((size_t)reps * sizeof *e);
    for (int r = -10; r < reps; r++) {
        double t0 = bench_now_ms();
        struct orch_gen_result res;
        if (orch_model_generate(m, "Once upon a time", &gp, &res, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        orch_gen_result_clear(&res);
        double t1 = bench_now_ms();
        float *v;
        int32_t dim;
        if (orch_model_embed(m, texts, N_EMB, NULL, &v, &dim, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        free(v);
        double t2 = bench_now_ms();
        if (r >= 0) {
            g[r] = (t1 - t0) * 1e3;
            e[r] = (t2 - t1) * 1e3;
        }
    }
    printf("generate %.1f\nembed %.1f\n", bench_median(g, reps), bench_median(e, reps));
    free(g);
    free(e);
    orch_model_free(m);
    return 0;
}
