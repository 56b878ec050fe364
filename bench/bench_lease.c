/*
 * bench_lease.c — the cost of a lease on a ready model, and of a load.
 *
 * 1. acquire + release per operation on a READY model, for 1 and 2 threads
 *    (or the thread counts given): ours (one atomic add each way) against a
 *    mutex taken on every call, as the Python wrapper does, and against a
 *    pthread_rwlock read lock. All threads hammer one model.
 * 2. Load time of stories260K through the library against a bare
 *    llama_model_load_from_file() on the same file, alternated, medians.
 *
 * Prints figures and ratios measured in this run; asserts nothing.
 * usage: bench-lease [MODEL.gguf] [-t THREADS]...
 */
#include <orchestra.h>

#include "bench_util.h"

#include <llama.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ITERS 2000000
#define REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}



/* ---- the three ways to hold a model ------------------------------------------ */

enum kind { OURS, MUTEX, RWLOCK };

struct mutex_model { /* the Python wrapper: a lock around every check */
    pthread_mutex_t lock;
    bool loaded;
    long refs;
};

struct rw_model {
    pthread_rwlock_t lock;
    bool loaded;
};

struct shared {
    enum kind kind;
    orch_model *ours;
    struct mutex_model mm;
    struct rw_model rw;
    pthread_barrier_t start;
    atomic_long sink;
};

static void *worker(void *arg)
{
    struct shared *s = arg;
    long seen = 0;
    pthread_barrier_wait(&s->start);
    switch (s->kind) {
    case OURS:
        for (int i = 0; i < ITERS; i++) {
            if (orch_model_acquire(s->ours, NULL) == ORCH_OK) {
                seen++;
                orch_model_release(s->ours);
            }
        }
        break;
    case MUTEX:
        for (int i = 0; i < ITERS; i++) {
            pthread_mutex_lock(&s->mm.lock);
            if (s->mm.loaded) {
                s->mm.refs++;
                seen++;
            }
            pthread_mutex_unlock(&s->mm.lock);
            pthread_mutex_lock(&s->mm.lock);
            s->mm.refs--;
            pthread_mutex_unlock(&s->mm.lock);
        }
        break;
    case RWLOCK:
        for (int i = 0; i < ITERS; i++) {
            pthread_rwlock_rdlock(&s->rw.lock);
            if (s->rw.loaded)
                seen++;
            pthread_rwlock_unlock(&s->rw.lock);
        }
        break;
    }
    atomic_fetch_add(&s->sink, seen);
    return NULL;
}

/* ns per acquire+release per thread */
static double run(struct shared *s, enum kind k, int threads)
{
    s->kind = k;
    pthread_t th[64];
    pthread_barrier_init(&s->start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, s);
    pthread_barrier_wait(&s->start);
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double t = now_s() - t0;
    pthread_barrier_destroy(&s->start);
    return t * 1e9 / ITERS;
}

static void bench_leases(const int *threads, int n_threads)
{
    struct shared s;
    memset(&s, 0, sizeof s);
    char path[] = "/tmp/bench-lease-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "x", 1) != 1) {
        perror("mkstemp");
        exit(1);
    }
    close(fd);
    orch_backend *fake = orch_fake_new(NULL);
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.backend = fake;
    orch_error err;
    if (orch_model_new(&mp, &s.ours, &err) || orch_model_load(s.ours, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    pthread_mutex_init(&s.mm.lock, NULL);
    s.mm.loaded = true;
    pthread_rwlock_init(&s.rw.lock, NULL);
    s.rw.loaded = true;

    printf("acquire+release on a READY model, ns per operation per thread "
           "(median of %d runs of %d ops)\n",
           REPS, ITERS);
    printf("%8s %10s %10s %10s %14s %14s\n", "threads", "ours", "mutex", "rwlock", "ours/mutex",
           "ours/rwlock");
    for (int t = 0; t < n_threads; t++) {
        double v[3][REPS];
        for (int r = 0; r < REPS; r++)
            for (int k = 0; k < 3; k++)
                v[k][r] = run(&s, (enum kind)k, threads[t]);
        double o = bench_median(v[OURS], REPS), m = bench_median(v[MUTEX], REPS),
               w = bench_median(v[RWLOCK], REPS);
        printf("%8d %10.1f %10.1f %10.1f %14.3f %14.3f\n", threads[t], o, m, w, o / m, o / w);
    }
    orch_model_free(s.ours);
    orch_fake_free(fake);
    unlink(path);
}

/* ---- load time --------------------------------------------------------------- */

static void quiet_log(enum ggml_log_level l, const char *t, void *u)
{
    (void)l;
    (void)t;
    (void)u;
}

static void bench_load(const char *model)
{
    enum { N = 21 };
    double ours[N], bare[N];
    orch_log_set_level(ORCH_LOG_OFF);
    for (int i = -2; i < N; i++) { /* two warm-up rounds */
        struct orch_model_params mp = orch_model_default_params();
        mp.path = model;
        orch_model *m;
        orch_error err;
        if (orch_model_new(&mp, &m, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        double t0 = now_s();
        if (orch_model_load(m, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        double t1 = now_s();
        orch_model_free(m);
        /* the library has initialised llama.cpp and its backends by now */
        llama_log_set(quiet_log, NULL);
        double t2 = now_s();
        struct llama_model *lm = llama_model_load_from_file(model, llama_model_default_params());
        double t3 = now_s();
        if (!lm) {
            fprintf(stderr, "bare load failed\n");
            exit(1);
        }
        llama_model_free(lm);
        if (i >= 0) {
            ours[i] = (t1 - t0) * 1e3;
            bare[i] = (t3 - t2) * 1e3;
        }
    }
    double o = bench_median(ours, N), b = bench_median(bare, N);
    printf("\nload of %s (median of %d, alternated)\n", model, N);
    printf("%16s %16s %10s\n", "library ms", "bare llama ms", "ratio");
    printf("%16.3f %16.3f %10.3f\n", o, b, o / b);
}

int main(int argc, char **argv)
{
    int threads[16], n_threads = 0;
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc && n_threads < 16)
            threads[n_threads++] = atoi(argv[++i]);
        else
            model = argv[i];
    }
    if (!n_threads) {
        threads[n_threads++] = 1;
        threads[n_threads++] = 2;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %ld CPUs\n", cpus);
    bench_leases(threads, n_threads);
    if (!model)
        model = getenv("ORCH_TEST_MODEL");
    if (!model)
        model = "../shared/models/stories260K.gguf";
    if (access(model, R_OK) == 0)
        bench_load(model);
    else
        printf("\nload: %s not found; skipped\n", model);
    return 0;
}
