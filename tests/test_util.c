/*
 * test_util.c — helpers for the tests.
 */
#include "test.h"
#include "internal.h"

#include <fcntl.h>
#include <llama.h>
#include <math.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ORCH_SOURCE_DIR
#define ORCH_SOURCE_DIR "."
#endif

const char *test_model_path(void)
{
    static char path[4096];
    const char *env = getenv("ORCH_TEST_MODEL");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/../shared/models/stories260K.gguf", ORCH_SOURCE_DIR);
    return access(path, R_OK) == 0 ? path : NULL;
}

void test_assert_same_embedding(const float *a, const float *b, int dim, const char *what,
                                const char *file, int line)
{
    double dot = 0, na = 0, nb = 0, worst = -1;
    int at = 0;
    for (int i = 0; i < dim; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        double d = fabs((double)a[i] - b[i]);
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    double cosine = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
    if (dim > 0 && cosine >= ORCH_EMBED_MIN_COSINE)
        return;
    print_error("%s:%d: %s: cosine %.9f < %.9f; largest difference %.3g at [%d]: %.9g vs %.9g\n",
                file, line, what, cosine, ORCH_EMBED_MIN_COSINE, worst, at, dim > 0 ? a[at] : 0.0,
                dim > 0 ? b[at] : 0.0);
    fail();
}

void test_note_skip(const char *test, const char *why)
{
    print_message("SKIP: %s: %s\n", test, why);
    const char *log = getenv("ORCH_TEST_SKIP_LOG");
    FILE *f = log && *log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "%s: %s\n", test, why);
        fclose(f);
    }
}

static char g_tmp[256];

const char *test_tmpdir(void)
{
    if (!g_tmp[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(g_tmp, sizeof g_tmp, "%s/orch-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(g_tmp)) {
            perror("mkdtemp");
            abort();
        }
    }
    return g_tmp;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    chmod(p, 0700);
    return remove(p);
}

void test_tmpdir_cleanup(void)
{
    if (g_tmp[0]) {
        nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        g_tmp[0] = '\0';
    }
}

int test_teardown(void **state)
{
    (void)state;
    test_tmpdir_cleanup();
    return 0;
}

static char *ring_path(const char *name)
{
    static char ring[64][512];
    static int next;
    char *p = ring[next++ % 64];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    return p;
}

const char *test_write_file(const char *name, const void *data, size_t n)
{
    char *p = ring_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        abort();
    }
    if (n && fwrite(data, 1, n, f) != n)
        abort();
    fclose(f);
    return p;
}

const char *test_sparse_file(const char *name, uint64_t size)
{
    char *p = ring_path(name);
    int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        perror(p);
        abort();
    }
    close(fd);
    return p;
}

const char *test_synth_file(const char *name, const struct orch_synth_params *sp)
{
    char *p = ring_path(name);
    orch_error err = {0};
    if (orch_synth_model(p, sp, &err) != ORCH_OK) {
        fprintf(stderr, "test_synth_file: %s\n", err.msg);
        abort();
    }
    return p;
}

static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static char *cap_buf;
static size_t cap_len;
static enum orch_log_level cap_prev;

static void cap_sink(enum orch_log_level level, const char *line, void *ud)
{
    (void)level;
    (void)ud;
    pthread_mutex_lock(&cap_lock);
    size_t n = strlen(line);
    char *b = realloc(cap_buf, cap_len + n + 2);
    if (b) {
        memcpy(b + cap_len, line, n);
        b[cap_len + n] = '\n';
        b[cap_len + n + 1] = '\0';
        cap_buf = b;
        cap_len += n + 1;
    }
    pthread_mutex_unlock(&cap_lock);
}

void test_log_capture_start(enum orch_log_level level)
{
    pthread_mutex_lock(&cap_lock);
    free(cap_buf);
    cap_buf = calloc(1, 1);
    cap_len = 0;
    pthread_mutex_unlock(&cap_lock);
    cap_prev = orch_log_get_level();
    orch_log_set_level(level);
    orch_log_set_sink(cap_sink, NULL);
}

char *test_log_capture_stop(void)
{
    orch_log_set_sink(NULL, NULL);
    orch_log_set_level(cap_prev);
    pthread_mutex_lock(&cap_lock);
    char *b = cap_buf;
    cap_buf = NULL;
    cap_len = 0;
    pthread_mutex_unlock(&cap_lock);
    return b;
}

orch_model *test_model_new(const char *path, const orch_backend *be, const char *role)
{
    struct orch_model_params p = orch_model_default_params();
    p.path = path;
    p.backend = be;
    p.role = role;
    p.n_threads = 1;
    orch_model *m = NULL;
    orch_error err = {0};
    int rc = orch_model_new(&p, &m, &err);
    if (rc)
        print_error("orch_model_new: %s\n", err.msg);
    assert_int_equal(rc, ORCH_OK);
    return m;
}

void test_assert_refused(const char *name, int rc, const orch_error *err, const char *needle,
                         const char *path)
{
    if (rc != ORCH_EFORMAT || !strstr(err->msg, needle) || !strstr(err->msg, path))
        print_error("case '%s': got %s '%s'\n  expected ORCH_EFORMAT with '%s'\n", name,
                    orch_err_name(rc), err->msg, needle);
    assert_int_equal(rc, ORCH_EFORMAT);
    assert_non_null(strstr(err->msg, needle));
    assert_non_null(strstr(err->msg, path));
}

/* ---- threads that must end in time ------------------------------------------------ */

/* A sanitizer runs our code several times slower, and a busy machine (ctest
 * runs tests side by side) slows llama.cpp's thread barriers far more: the
 * deadline is a hang detector, so it stretches rather than fails early. */
static int hang_seconds(int seconds)
{
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    return seconds * 5;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
    return seconds * 5;
#else
    return seconds;
#endif
#else
    return seconds;
#endif
}

static bool timed_join(pthread_t th, int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

bool test_join_within(pthread_t th, int seconds)
{
    if (timed_join(th, hang_seconds(seconds)))
        return true;
    /* The thread still runs on its test's data (often the test's stack):
     * returning into the next test would report its writes as that test's
     * races. A hang ends the process here, named. */
    fprintf(stderr, "a thread did not end within %d s: a hang\n", hang_seconds(seconds));
    fflush(NULL);
    _exit(1);
}

bool test_run_within(void *(*fn)(void *), void *arg, int seconds)
{
    pthread_t th;
    if (pthread_create(&th, NULL, fn, arg) != 0)
        return false;
    return test_join_within(th, seconds);
}

void test_run_progressing(void *(*fn)(void *), void *arg, const atomic_int *progress,
                          int stall_seconds, const char *what)
{
    pthread_t th;
    if (pthread_create(&th, NULL, fn, arg) != 0) {
        fprintf(stderr, "%s: pthread_create failed\n", what);
        _exit(1);
    }
    int seen = atomic_load(progress), still = 0;
    while (!timed_join(th, 1)) {
        int now = atomic_load(progress);
        still = now == seen ? still + 1 : 0;
        seen = now;
        if (still >= stall_seconds) {
            fprintf(stderr, "%s: no progress for %d s (stuck at %d)\n", what, stall_seconds, now);
            fflush(NULL);
            _exit(1);
        }
    }
}

/* ---- pause points ----------------------------------------------------------------- */

static pthread_mutex_t g_pause_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_pause_cond = PTHREAD_COND_INITIALIZER;
static struct {
    bool armed, parked, go;
    const void *obj;
} g_pause[ORCH_PAUSE_N_POINTS];

static void pause_hook(enum orch__pause_point point, const void *obj)
{
    pthread_mutex_lock(&g_pause_lock);
    if (g_pause[point].armed && (!g_pause[point].obj || g_pause[point].obj == obj)) {
        g_pause[point].armed = false;
        g_pause[point].parked = true;
        pthread_cond_broadcast(&g_pause_cond);
        while (!g_pause[point].go)
            pthread_cond_wait(&g_pause_cond, &g_pause_lock);
        g_pause[point].go = false;
        g_pause[point].parked = false;
    }
    pthread_mutex_unlock(&g_pause_lock);
}

void test_pause_arm(int point, const void *obj)
{
    pthread_mutex_lock(&g_pause_lock);
    g_pause[point].armed = true;
    g_pause[point].obj = obj;
    g_pause[point].go = false;
    pthread_mutex_unlock(&g_pause_lock);
    atomic_store(&orch__pause_hook, pause_hook);
}

void test_pause_wait(int point)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&g_pause_lock);
    int rc = 0;
    while (!g_pause[point].parked && rc == 0)
        rc = pthread_cond_timedwait(&g_pause_cond, &g_pause_lock, &ts);
    bool parked = g_pause[point].parked;
    pthread_mutex_unlock(&g_pause_lock);
    if (!parked) {
        print_error("no thread reached pause point %d within 10 s\n", point);
        fail();
    }
}

void test_pause_go(int point)
{
    pthread_mutex_lock(&g_pause_lock);
    g_pause[point].go = true;
    pthread_cond_broadcast(&g_pause_cond);
    pthread_mutex_unlock(&g_pause_lock);
}

void test_pause_off(void)
{
    pthread_mutex_lock(&g_pause_lock);
    for (int i = 0; i < ORCH_PAUSE_N_POINTS; i++) {
        g_pause[i].armed = false;
        if (g_pause[i].parked)
            g_pause[i].go = true;
    }
    pthread_cond_broadcast(&g_pause_cond);
    pthread_mutex_unlock(&g_pause_lock);
}

char *test_llama_greedy(const char *path, const char *prompt, int n_predict)
{
    /* a load through the library sets llama.cpp up as it does (the CPU
     * backend from $ORCH_GGML_BACKEND_DIR) */
    orch_model *om = test_model_new(path, NULL, "reference");
    orch_error err = {0};
    assert_int_equal(orch_model_load(om, &err), ORCH_OK);
    orch_model_free(om);
    struct llama_model_params mp = llama_model_default_params();
    /* the layers the library offloads (llama.cpp's default is all of them) */
    const char *ngl = getenv("ORCH_TEST_NGL");
    mp.n_gpu_layers = ngl && *ngl ? (int32_t)strtol(ngl, NULL, 10) : 0;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    assert_non_null(model);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    assert_non_null(ctx);
    int cap = (int)strlen(prompt) + 2;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    int n = llama_tokenize(vocab, prompt, (int)strlen(prompt), toks, cap, true, false);
    assert_true(n > 0);
    struct llama_sampler *s = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(s, llama_sampler_init_greedy());
    assert_int_equal(llama_decode(ctx, llama_batch_get_one(toks, n)), 0);
    size_t out_cap = 64 * (size_t)n_predict + 1, len = 0;
    char *out = calloc(1, out_cap);
    for (int i = 0; i < n_predict; i++) {
        llama_token t = llama_sampler_sample(s, ctx, -1);
        if (llama_vocab_is_eog(vocab, t))
            break;
        char piece[64];
        int k = llama_token_to_piece(vocab, t, piece, sizeof piece, 0, false);
        assert_true(k >= 0 && len + (size_t)k < out_cap);
        memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
        if (n + i + 1 >= (int)cp.n_ctx)
            break;
        assert_int_equal(llama_decode(ctx, llama_batch_get_one(&t, 1)), 0);
    }
    free(toks);
    llama_sampler_free(s);
    llama_free(ctx);
    llama_model_free(model);
    return out;
}
