/*
 * util.c — clocks, strings, UTF-8 checks, a growable buffer, file checks.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t orch__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double orch__ms_since(int64_t start_ns)
{
    return (double)(orch__now_ns() - start_ns) / 1e6;
}

struct timespec orch__mono_deadline(int64_t start_ns, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int64_t ns = ms > (INT64_MAX - start_ns) / 1000000 ? INT64_MAX : start_ns + ms * 1000000;
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000),
                             .tv_nsec = (long)(ns % 1000000000)};
}

void orch_format_bytes(uint64_t b, char *buf, size_t cap)
{
    if (!buf || !cap)
        return;
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / (1ull << 20));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

int32_t orch__n_ctx_resolve(int32_t asked, int64_t n_ctx_train)
{
    int64_t n = asked > 0 ? asked : n_ctx_train > 0 ? n_ctx_train : ORCH_N_CTX_DEFAULT;
    return n < ORCH_N_CTX_MAX ? (int32_t)n : ORCH_N_CTX_MAX;
}

char *orch__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Length of the UTF-8 sequence led by byte c, 0 when c cannot lead one. */
static int utf8_seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

size_t orch__utf8_check(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (s[i] == 0)
            return i + 1;
        int n = utf8_seq_len(s[i]);
        if (n == 0 || i + (size_t)n > len)
            return i + 1;
        for (int k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i + 1;
        /* overlongs and surrogates */
        if (n == 3 && ((s[i] == 0xE0 && s[i + 1] < 0xA0) || (s[i] == 0xED && s[i + 1] >= 0xA0)))
            return i + 1;
        if (n == 4 && ((s[i] == 0xF0 && s[i + 1] < 0x90) || (s[i] == 0xF4 && s[i + 1] >= 0x90)))
            return i + 1;
        i += (size_t)n;
    }
    return 0;
}

int orch__utf8_repair(struct orch__buf *b, bool final)
{
    if (!b->len || orch__utf8_check(b->data, b->len) == 0)
        return ORCH_OK; /* the common case: nothing to do, no copy */
    struct orch__buf out = {0};
    const unsigned char *s = (const unsigned char *)b->data;
    size_t i = 0, len = b->len;
    int rc = ORCH_OK;
    while (i < len && rc == ORCH_OK) {
        int n = s[i] ? utf8_seq_len(s[i]) : 1; /* NUL is text here */
        bool ok = n > 0;
        size_t have = ok && i + (size_t)n > len ? len - i : (size_t)n;
        for (size_t k = 1; ok && k < have; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && have == (size_t)n && n >= 3)
            ok = !((n == 3 &&
                    ((s[i] == 0xE0 && s[i + 1] < 0xA0) || (s[i] == 0xED && s[i + 1] >= 0xA0))) ||
                   (n == 4 &&
                    ((s[i] == 0xF0 && s[i + 1] < 0x90) || (s[i] == 0xF4 && s[i + 1] >= 0x90))));
        if (ok && have < (size_t)n && !final) { /* a character still arriving */
            rc = orch__buf_append(&out, (const char *)s + i, have);
            break;
        }
        if (ok && have == (size_t)n) {
            rc = orch__buf_append(&out, (const char *)s + i, (size_t)n);
            i += (size_t)n;
        } else {
            rc = orch__buf_append(&out, "\xEF\xBF\xBD", 3); /* U+FFFD */
            i++;
        }
    }
    if (rc) {
        orch__buf_free(&out);
        return rc;
    }
    orch__buf_free(b);
    *b = out;
    if (!b->data) /* all of it was an empty tail */
        return orch__buf_append(b, "", 0);
    return ORCH_OK;
}

size_t orch__utf8_complete_len(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    /* look back at most 3 bytes for a lead byte whose sequence runs past the end */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = s[len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: keep looking for the lead */
        int n = utf8_seq_len(c);
        if (n > (int)back)
            return len - back;
        return len;
    }
    return len;
}

int orch__buf_append(struct orch__buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return ORCH_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return ORCH_OK;
}

void orch__buf_free(struct orch__buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int orch__check_model_file(const char *path, uint64_t *size_out, orch_error *err)
{
    struct stat st;
    if (!path || !*path)
        return orch__err(err, ORCH_EINVAL, "model path is empty");
    if (stat(path, &st) != 0)
        return orch__err_errno(err, errno, "cannot open model file", path);
    if (S_ISDIR(st.st_mode))
        return orch__err(err, ORCH_EISDIR, "model file '%s' is a directory", path);
    if (!S_ISREG(st.st_mode))
        return orch__err(err, ORCH_EFORMAT, "model file '%s' is not a regular file", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return orch__err_errno(err, errno, "cannot read model file", path);
    close(fd);
    if (st.st_size == 0)
        return orch__err(err, ORCH_EFORMAT, "model file '%s' is empty", path);
    if (size_out)
        *size_out = (uint64_t)st.st_size;
    return ORCH_OK;
}

void orch__join_names(char *buf, size_t cap, size_t n,
                      const char *(*name_at)(const void *ctx, size_t i), const void *ctx)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *name = name_at(ctx, i);
        size_t need = strlen(name) + (i ? 2 : 0);
        /* keep room for ", ..." */
        if (pos + need + 6 > cap) {
            snprintf(buf + pos, cap - pos, "%s...", i ? ", " : "");
            return;
        }
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s", i ? ", " : "", name);
    }
}

static _Atomic unsigned g_next_slot;
static _Thread_local int t_slot = -1;

unsigned orch__thread_slot(void)
{
    if (t_slot < 0)
        t_slot = (int)(atomic_fetch_add_explicit(&g_next_slot, 1, memory_order_relaxed) % 4096);
    return (unsigned)t_slot;
}

#ifdef ORCH_TESTING
int (*orch__fault_hook)(int id);
_Atomic(orch__pause_fn) orch__pause_hook;
#endif
