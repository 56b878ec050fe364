/*
 * log.c — structured, one-line-per-event logging.
 *
 * DESIGN
 * The settings (sink, level, format) are process-wide and read on every log
 * call without a lock: level and format are relaxed atomics (a line formatted
 * under a just-changed setting is harmless), and the sink and its user data
 * are published together as one pointer to an immutable pair, swapped with
 * release/acquire. Old pairs are kept (never freed) so that a thread still
 * writing through one stays safe; they are a few bytes and change rarely.
 * A line is formatted into a stack buffer and handed to the sink in one call,
 * so lines from different threads never interleave.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

struct log_sink {
    orch_log_fn fn;
    void *user_data;
    struct log_sink *prev; /* kept alive; see DESIGN */
};

static _Atomic int g_level = -1; /* -1: not yet read from the environment */
static _Atomic int g_format = -1;
static struct log_sink *_Atomic g_sink; /* NULL = stderr */
static pthread_mutex_t g_sink_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

int orch_log_level_from_string(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i <= ORCH_LOG_OFF; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return ORCH_LOG_WARN;
    return -1;
}

static int level_now(void)
{
    int l = atomic_load_explicit(&g_level, memory_order_relaxed);
    if (l < 0) {
        l = orch_log_level_from_string(getenv("ORCH_LOG_LEVEL"));
        if (l < 0)
            l = ORCH_LOG_WARN;
        int expect = -1;
        /* relaxed: only this one value is published; a racing setter wins */
        atomic_compare_exchange_strong_explicit(&g_level, &expect, l, memory_order_relaxed,
                                                memory_order_relaxed);
        l = atomic_load_explicit(&g_level, memory_order_relaxed);
    }
    return l;
}

static int format_now(void)
{
    int f = atomic_load_explicit(&g_format, memory_order_relaxed);
    if (f < 0) {
        const char *e = getenv("ORCH_LOG_FORMAT");
        f = (e && strcasecmp(e, "json") == 0) ? ORCH_LOG_JSON : ORCH_LOG_LOGFMT;
        int expect = -1;
        atomic_compare_exchange_strong_explicit(&g_format, &expect, f, memory_order_relaxed,
                                                memory_order_relaxed);
        f = atomic_load_explicit(&g_format, memory_order_relaxed);
    }
    return f;
}

void orch_log_set_level(enum orch_log_level level)
{
    if ((int)level < ORCH_LOG_DEBUG || level > ORCH_LOG_OFF)
        return;
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

enum orch_log_level orch_log_get_level(void)
{
    return (enum orch_log_level)level_now();
}

const char *orch__log_level_name(enum orch_log_level level)
{
    return (int)level >= 0 && level <= ORCH_LOG_OFF ? level_names[level] : "warn";
}

enum orch_log_format orch__log_format(void)
{
    return (enum orch_log_format)format_now();
}

void orch_log_set_format(enum orch_log_format format)
{
    if (format != ORCH_LOG_LOGFMT && format != ORCH_LOG_JSON)
        return;
    atomic_store_explicit(&g_format, (int)format, memory_order_relaxed);
}

void orch_log_set_sink(orch_log_fn fn, void *user_data)
{
    pthread_mutex_lock(&g_sink_lock);
    struct log_sink *old = atomic_load_explicit(&g_sink, memory_order_relaxed);
    struct log_sink *s = NULL;
    if (fn) {
        s = malloc(sizeof *s);
        if (!s) {
            pthread_mutex_unlock(&g_sink_lock);
            return;
        }
        s->fn = fn;
        s->user_data = user_data;
        s->prev = old;
    } else if (old) {
        /* Back to stderr: keep the chain reachable through a static so that
         * leak checkers see it as live, as it may still be in use. */
        static struct log_sink *retired;
        struct log_sink *tail = old;
        while (tail->prev)
            tail = tail->prev;
        tail->prev = retired;
        retired = old;
    }
    /* release; pairs with the acquire in orch__log_emit() */
    atomic_store_explicit(&g_sink, s, memory_order_release);
    pthread_mutex_unlock(&g_sink_lock);
}

bool orch__log_enabled(enum orch_log_level level)
{
    return (int)level >= level_now() && level < ORCH_LOG_OFF;
}

static long thread_id(void)
{
    static _Thread_local long tid;
    if (!tid)
        tid = (long)syscall(SYS_gettid);
    return tid;
}

/* Appends printf output to buf at *pos, never past cap. */
static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos = (*pos + (size_t)n < cap - 1) ? *pos + (size_t)n : cap - 1;
}

static void put_json_str(char *buf, size_t cap, size_t *pos, const char *s)
{
    put(buf, cap, pos, "\"");
    for (; s && *s && *pos < cap - 8; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            put(buf, cap, pos, "\\%c", c);
        else if (c == '\n')
            put(buf, cap, pos, "\\n");
        else if (c == '\t')
            put(buf, cap, pos, "\\t");
        else if (c < 0x20)
            put(buf, cap, pos, "\\u%04x", c);
        else
            buf[(*pos)++] = (char)c;
    }
    buf[*pos] = '\0';
    put(buf, cap, pos, "\"");
}

static bool logfmt_needs_quotes(const char *s)
{
    if (!*s)
        return true;
    for (; *s; s++)
        if (*s == ' ' || *s == '"' || *s == '=' || *s == '\\' || (unsigned char)*s < 0x20)
            return true;
    return false;
}

static void put_logfmt_str(char *buf, size_t cap, size_t *pos, const char *s)
{
    if (!s)
        s = "";
    if (!logfmt_needs_quotes(s)) {
        put(buf, cap, pos, "%s", s);
        return;
    }
    /* same escaping as JSON strings: readable and unambiguous */
    put_json_str(buf, cap, pos, s);
}

static void put_value(char *buf, size_t cap, size_t *pos, const struct orch__field *f, bool json)
{
    switch (f->type) {
    case ORCH__F_STR:
        if (json)
            put_json_str(buf, cap, pos, f->v.s ? f->v.s : "");
        else
            put_logfmt_str(buf, cap, pos, f->v.s);
        break;
    case ORCH__F_INT:
        put(buf, cap, pos, "%lld", f->v.i);
        break;
    case ORCH__F_UINT:
        put(buf, cap, pos, "%llu", f->v.u);
        break;
    case ORCH__F_DBL:
        put(buf, cap, pos, "%.3f", f->v.d);
        break;
    case ORCH__F_BOOL:
        put(buf, cap, pos, "%s", f->v.i ? "true" : "false");
        break;
    }
}

static void write_line(enum orch_log_level level, const char *line)
{
    /* acquire; pairs with the release in orch_log_set_sink() */
    struct log_sink *s = atomic_load_explicit(&g_sink, memory_order_acquire);
    if (s) {
        s->fn(level, line, s->user_data);
    } else {
        /* one write: lines from several threads do not interleave */
        size_t n = strlen(line);
        char tmp[LINE_MAX_BYTES + 2];
        memcpy(tmp, line, n);
        tmp[n] = '\n';
        ssize_t w = write(STDERR_FILENO, tmp, n + 1);
        (void)w;
    }
}

static void put_prefix(char *buf, size_t cap, size_t *pos, enum orch_log_level level,
                       const char *role, const char *event, bool json)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[96];
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (json) {
        put(buf, cap, pos, "{\"ts\":\"%s\",\"level\":\"%s\",\"thread\":%ld,\"role\":", stamp,
            level_names[level], thread_id());
        put_json_str(buf, cap, pos, role ? role : "-");
        put(buf, cap, pos, ",\"event\":");
        put_json_str(buf, cap, pos, event);
    } else {
        put(buf, cap, pos, "%s level=%s thread=%ld role=", stamp, level_names[level], thread_id());
        put_logfmt_str(buf, cap, pos, role ? role : "-");
        put(buf, cap, pos, " event=");
        put_logfmt_str(buf, cap, pos, event);
    }
}

void orch__log_emit(enum orch_log_level level, const char *role, const char *event,
                    const struct orch__field *fields, size_t n_fields)
{
    char buf[LINE_MAX_BYTES];
    size_t pos = 0;
    bool json = format_now() == ORCH_LOG_JSON;
    buf[0] = '\0';
    put_prefix(buf, sizeof buf, &pos, level, role, event, json);
    for (size_t i = 0; i < n_fields; i++) {
        if (json) {
            put(buf, sizeof buf, &pos, ",");
            put_json_str(buf, sizeof buf, &pos, fields[i].key);
            put(buf, sizeof buf, &pos, ":");
        } else {
            put(buf, sizeof buf, &pos, " %s=", fields[i].key);
        }
        put_value(buf, sizeof buf, &pos, &fields[i], json);
    }
    if (json)
        put(buf, sizeof buf, &pos, "}");
    write_line(level, buf);
}

void orch__log_text(enum orch_log_level level, const char *source, const char *text)
{
    if (!orch__log_enabled(level))
        return;
    /* strip the trailing newline llama.cpp puts on its lines */
    char msg[LINE_MAX_BYTES / 2];
    snprintf(msg, sizeof msg, "%s", text ? text : "");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || isspace((unsigned char)msg[n - 1])))
        msg[--n] = '\0';
    if (!n)
        return;
    struct orch__field f[] = {OF_S("msg", msg)};
    orch__log_emit(level, source, "backend_log", f, 1);
}

void orch_log_event(enum orch_log_level level, const char *role, const char *event,
                    const struct orch_log_field *fields, size_t n_fields)
{
    if (!orch__log_enabled(level) || !event)
        return;
    struct orch__field f[32];
    size_t n = n_fields < 32 ? n_fields : 32;
    for (size_t i = 0; i < n; i++) {
        f[i].key = fields[i].key ? fields[i].key : "field";
        if (fields[i].str) {
            f[i].type = ORCH__F_STR;
            f[i].v.s = fields[i].str;
        } else if (fields[i].num == (double)(long long)fields[i].num) {
            f[i].type = ORCH__F_INT;
            f[i].v.i = (long long)fields[i].num;
        } else {
            f[i].type = ORCH__F_DBL;
            f[i].v.d = fields[i].num;
        }
    }
    orch__log_emit(level, role, event, f, n);
}
