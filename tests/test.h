/*
 * test.h — helpers shared by the tests (cmocka).
 */
#ifndef ORCH_TEST_H
#define ORCH_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka must follow the headers above */
#include <cmocka.h>

#include <orchestra.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The real model: $ORCH_TEST_MODEL, else ../shared/models/stories260K.gguf
 * beside the source tree. NULL when absent. */
const char *test_model_path(void);

/* Skips the current test with a clear message when the real model is absent,
 * and notes the skip in $ORCH_TEST_SKIP_LOG (scripts/test.sh counts them and
 * fails when the model was there). */
#define REQUIRE_MODEL(var)                                                                    \
    const char *var = test_model_path();                                                      \
    if (!var) {                                                                               \
        test_note_skip(__func__, "real model not found (set ORCH_TEST_MODEL or put "         \
                                 "stories260K.gguf in ../shared/models)");                   \
        skip();                                                                               \
    }

/* Prints "SKIP: test: why" and appends the same line to $ORCH_TEST_SKIP_LOG. */
void test_note_skip(const char *test, const char *why);

/* A fresh temporary directory, removed by test_tmpdir_cleanup(). */
const char *test_tmpdir(void);
void test_tmpdir_cleanup(void);

/* Group teardown: removes the temporary directory. */
int test_teardown(void **state);

/* Writes `n` bytes to dir/name; returns the path (static buffer ring). */
const char *test_write_file(const char *name, const void *data, size_t n);

/* A file of `size` bytes (sparse) for the fake backend. */
const char *test_sparse_file(const char *name, uint64_t size);

/* A synthetic model (orch_synth_model) of sp at dir/name; returns the path
 * (static buffer ring); aborts the test program when it cannot be written. */
const char *test_synth_file(const char *name, const struct orch_synth_params *sp);

/* Asserts rc == expected and prints err's message when not. */
#define assert_rc(rc, expected, err)                                                          \
    do {                                                                                      \
        int rc__ = (rc);                                                                      \
        if (rc__ != (expected))                                                               \
            print_error("got %s, expected %s: %s\n", orch_err_name(rc__),                     \
                        orch_err_name(expected), (err).msg);                                  \
        assert_int_equal(rc__, (expected));                                                   \
    } while (0)

/* Asserts that a and b (dim floats each, unit length) are embeddings of one
 * text as orch_model_embed() promises: cosine similarity at least
 * ORCH_EMBED_MIN_COSINE. On failure prints the cosine, the largest
 * component difference and both values there. */
#define assert_same_embedding(a, b, dim, what) \
    test_assert_same_embedding((a), (b), (dim), (what), __FILE__, __LINE__)
void test_assert_same_embedding(const float *a, const float *b, int dim, const char *what,
                                const char *file, int line);

/* Log capture: lines collected while enabled. */
void test_log_capture_start(enum orch_log_level level);
/* Returns the captured text (all lines, '\n'-joined) and stops capturing;
 * the caller frees it. */
char *test_log_capture_stop(void);

/* A hostile file's case `name` was refused as bad input: rc is
 * ORCH_EFORMAT and the message names the cause (needle) and the file
 * (path); else what came instead is printed and the test fails. */
void test_assert_refused(const char *name, int rc, const orch_error *err, const char *needle,
                         const char *path);

/* Runs fn(arg) on a new thread and joins it within `seconds` (five times
 * that under a sanitizer): true when it ended, false when it could not be
 * started. A thread that does not end is a hang: the message says so and
 * the test process exits 1, so no stray thread outlives its test. */
bool test_run_within(void *(*fn)(void *), void *arg, int seconds);
/* Joins th within `seconds`, as test_run_within does. */
bool test_join_within(pthread_t th, int seconds);
/* Runs fn(arg) on a new thread and joins it, however long it takes, as
 * long as *progress keeps changing: a hang is no progress, not a slow
 * machine (a sanitizer build on a loaded CPU). When *progress stands still
 * for stall_seconds the thread cannot be stopped and still uses the
 * caller's memory, so this prints `what` and ends the process with
 * status 1. */
void test_run_progressing(void *(*fn)(void *), void *arg, const atomic_int *progress,
                          int stall_seconds, const char *what);

/* Pause points (src/internal.h, test builds): force an interleaving.
 * test_pause_arm(P, obj): the next thread to reach P (on obj; NULL = any)
 * parks there. test_pause_wait(P): until a thread is parked at P (fails the
 * test after 10 s). test_pause_go(P): lets it go on. test_pause_off():
 * disarms everything and removes the hook. */
void test_pause_arm(int point, const void *obj);
void test_pause_wait(int point);
void test_pause_go(int point);
void test_pause_off(void);

/* llama.cpp's own greedy decoding of `prompt` (n_predict tokens at most, a
 * 2048-token context, one thread), written with nothing but llama.h: the
 * reference the library's greedy output must equal. The caller frees it. */
char *test_llama_greedy(const char *path, const char *prompt, int n_predict);

/* A model for a path with the given backend (NULL = llama.cpp), 1 thread. */
orch_model *test_model_new(const char *path, const orch_backend *be, const char *role);

#endif
