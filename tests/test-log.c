/*
 * test-log.c — log lines: timestamp, level, thread, role, event, fields;
 * logfmt and JSON; level threshold; sinks from many threads at once.
 */
#include "test.h"
#include "internal.h"

#include <jansson.h>
#include <pthread.h>
#include <regex.h>

static void test_logfmt_line(void **state)
{
    (void)state;
    orch_log_set_format(ORCH_LOG_LOGFMT);
    test_log_capture_start(ORCH_LOG_INFO);
    orch__log(ORCH_LOG_INFO, "coder", "load_end", OF_S("path", "/m/a b.gguf"), OF_D("ms", 12.5),
              OF_U("bytes", 1171200), OF_B("ok", true), OF_I("n", -3));
    char *log = test_log_capture_stop();
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "level=info thread=[0-9]+ role=coder event=load_end "
                             "path=\"/m/a b.gguf\" ms=12.500 bytes=1171200 ok=true n=-3\n$",
                             REG_EXTENDED),
                     0);
    if (regexec(&re, log, 0, NULL, 0) != 0)
        print_error("line: %s", log);
    assert_int_equal(regexec(&re, log, 0, NULL, 0), 0);
    regfree(&re);
    free(log);
}

static void test_json_line(void **state)
{
    (void)state;
    orch_log_set_format(ORCH_LOG_JSON);
    test_log_capture_start(ORCH_LOG_DEBUG);
    orch__log(ORCH_LOG_WARN, "emb\"ed", "evict", OF_S("why", "line\nbreak"), OF_U("bytes", 42));
    char *log = test_log_capture_stop();
    orch_log_set_format(ORCH_LOG_LOGFMT);
    json_error_t je;
    json_t *o = json_loads(log, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "role")), "emb\"ed");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "evict");
    assert_string_equal(json_string_value(json_object_get(o, "why")), "line\nbreak");
    assert_int_equal(json_integer_value(json_object_get(o, "bytes")), 42);
    assert_true(json_integer_value(json_object_get(o, "thread")) > 0);
    assert_int_equal(strlen(json_string_value(json_object_get(o, "ts"))), 24);
    json_decref(o);
    free(log);
}

static void test_level_threshold(void **state)
{
    (void)state;
    test_log_capture_start(ORCH_LOG_WARN);
    orch__log(ORCH_LOG_INFO, "r", "hidden", OF_I("x", 1));
    orch__log(ORCH_LOG_DEBUG, "r", "hidden", OF_I("x", 1));
    orch__log(ORCH_LOG_ERROR, "r", "shown", OF_I("x", 1));
    char *log = test_log_capture_stop();
    assert_null(strstr(log, "hidden"));
    assert_non_null(strstr(log, "event=shown"));
    free(log);
    assert_int_equal(orch_log_level_from_string("debug"), ORCH_LOG_DEBUG);
    assert_int_equal(orch_log_level_from_string("OFF"), ORCH_LOG_OFF);
    assert_int_equal(orch_log_level_from_string("loud"), -1);
    assert_int_equal(orch_log_level_from_string(NULL), -1);
}

static void *log_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++)
        orch__log(ORCH_LOG_INFO, "t", "tick", OF_I("i", i), OF_S("pad", "xxxxxxxxxxxxxxxx"));
    return NULL;
}

/* Lines from 8 threads never interleave; each thread id appears. */
static void test_threads_whole_lines(void **state)
{
    (void)state;
    test_log_capture_start(ORCH_LOG_INFO);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, log_many, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    char *log = test_log_capture_stop();
    int lines = 0;
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n")) {
        lines++;
        assert_non_null(strstr(l, "event=tick"));
        assert_non_null(strstr(l, "pad=xxxxxxxxxxxxxxxx"));
    }
    assert_int_equal(lines, 8 * 500);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_level_threshold),
        cmocka_unit_test(test_threads_whole_lines),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
