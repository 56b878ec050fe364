/*
 * bench_synth.h — the synthetic models the benchmarks run on, made once.
 */
#ifndef ORCH_BENCH_SYNTH_H
#define ORCH_BENCH_SYNTH_H

#include <orchestra.h>
#include <stdio.h>
#include <sys/stat.h>

/* Writes a synthetic model of n_params at path unless a file is there.
 * Returns false (after printing why) when it cannot. */
static inline bool bench_ensure_synth(const char *path, uint64_t n_params, uint32_t seed)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return true;
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = n_params;
    sp.seed = seed;
    orch_error err;
    fprintf(stderr, "writing %s ...\n", path);
    if (orch_synth_model(path, &sp, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    return true;
}

#endif
