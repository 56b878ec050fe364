/*
 * cli_util.c — exit codes, number parsing, opening targets, stdout, stdin,
 * the progress bar.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_exit_code(int status)
{
    switch (status) {
    case ORCH_OK:
        return EXIT_OK;
    case ORCH_EINVAL:
    case ORCH_ENOENT:
    case ORCH_EACCES:
    case ORCH_EISDIR:
    case ORCH_EFORMAT:
    case ORCH_ECTX:
    case ORCH_ENOROLE:
    case ORCH_ECONFIG:
        return EXIT_INPUT;
    default:
        return EXIT_FAIL;
    }
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("orchestra: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_fail(int status, const orch_error *err)
{
    cli_error("%s", err && err->msg[0] ? err->msg : orch_strerror(status));
    return cli_exit_code(status);
}

bool cli_int(const char *opt, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        cli_error("%s '%s': expected a whole number from %ld to %ld", opt, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) {
        cli_error("%s '%s': expected a number", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_size(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mult = 1;
    if (end != s && *end && !end[1]) {
        switch (*end) {
        case 'k': case 'K': mult = 1e3; end++; break;
        case 'm': case 'M': mult = 1e6; end++; break;
        case 'b': case 'B': case 'g': case 'G': mult = 1e9; end++; break;
        default: break;
        }
    }
    if (end == s || *end || errno || !(v > 0) || v * mult > 1e12) {
        cli_error("%s '%s': expected a count such as 250000, 100M or 1B", opt, s);
        return false;
    }
    *out = (uint64_t)(v * mult);
    return true;
}

int target_open(struct cli *cli, const struct target_opts *o, struct target *t)
{
    orch_error err = {0};
    int rc;
    memset(t, 0, sizeof *t);
    if (o->model_path && o->role) {
        cli_error("give either -m FILE or --role ROLE, not both");
        return EXIT_USAGE;
    }
    if (o->model_path) {
        struct orch_model_params mp = orch_model_default_params();
        mp.path = o->model_path;
        if (o->have_ctx)
            mp.n_ctx = (int32_t)o->n_ctx; /* -1: the model's trained size */
        if (o->have_threads)
            mp.n_threads = (int32_t)o->n_threads;
        if (o->have_ngl)
            mp.n_gpu_layers = (int32_t)o->n_gpu_layers;
        mp.embedding = o->embedding;
        mp.progress = cli_progress;
        rc = orch_model_new(&mp, &t->model, &err);
        return rc ? cli_fail(rc, &err) : EXIT_OK;
    }
    if (!cli->config_path) {
        cli_error("no model: give -m FILE, or -c CONFIG with --role ROLE");
        return EXIT_USAGE;
    }
    if (!cli->cfg && (rc = orch_config_load(cli->config_path, &cli->cfg, &err)))
        return cli_fail(rc, &err);
    struct orch_orchestra_params op = orch_orchestra_default_params();
    op.progress = cli_progress;
    op.no_reaper = true; /* one-shot process */
    rc = orch_open(cli->cfg, &op, &t->orch, &err);
    if (rc)
        return cli_fail(rc, &err);
    t->role = o->role;
    if (!t->role && !o->embedding) {
        /* first role of the config; embed leaves it NULL: the role marked
         * for embeddings */
        t->role = orch_config_role_name(cli->cfg, 0);
    }
    return EXIT_OK;
}

void target_close(struct target *t)
{
    orch_model_free(t->model);
    orch_close(t->orch);
    memset(t, 0, sizeof *t);
}

static bool g_out_failed;

bool out_write(const char *s, size_t n)
{
    if (g_out_failed)
        return false;
    if (n && fwrite(s, 1, n, stdout) != n)
        g_out_failed = true;
    if (!g_out_failed && fflush(stdout) != 0)
        g_out_failed = true;
    return !g_out_failed;
}

bool out_ok(void)
{
    if (!g_out_failed && fflush(stdout) != 0)
        g_out_failed = true;
    return !g_out_failed;
}

int read_stream(FILE *f, const char *name, char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        cli_error("out of memory reading %s", name);
        return EXIT_FAIL;
    }
    for (;;) {
        if (n + 1 == cap) {
            if (cap >= (64u << 20)) {
                free(buf);
                cli_error("%s is larger than 64 MiB", name);
                return EXIT_INPUT;
            }
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                cli_error("out of memory reading %s", name);
                return EXIT_FAIL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        cli_error("cannot read %s: %s", name, strerror(errno));
        return EXIT_INPUT;
    }
    buf[n] = '\0';
    const char *nul = memchr(buf, '\0', n);
    if (nul) {
        cli_error("%s holds a NUL byte at offset %zu; text input must not", name,
                  (size_t)(nul - buf));
        free(buf);
        return EXIT_INPUT;
    }
    *out = buf;
    *len = n;
    return EXIT_OK;
}

int read_stdin(char **out, size_t *len)
{
    return read_stream(stdin, "stdin", out, len);
}

bool cli_progress(const char *role, float progress, void *ud)
{
    (void)ud;
    static int last = -1;
    if (!isatty(STDERR_FILENO))
        return true;
    int pct = (int)(progress * 100.0f);
    if (pct == last)
        return true;
    last = pct;
    int width = 30, fill = pct * width / 100;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : ' ';
    bar[width] = '\0';
    fprintf(stderr, "\rloading %s [%s] %3d%%", role, bar, pct);
    if (pct >= 100) {
        fputs("\r\033[K", stderr);
        last = -1;
    }
    fflush(stderr);
    return true;
}
