/*
 * vetcache.c — vetting verdicts, kept across runs (see orch__vet_cache_get).
 *
 * DESIGN
 * One text file of lines "v1 LLAMA DEV INO SIZE MTIME_NS ok|bad REASON": a
 * file is known by its identity (device, inode, size, modification time to
 * the nanosecond) under one llama.cpp version, so an edited or replaced file
 * is vetted again, and so is every file after llama.cpp changes. Lines are
 * appended with one write() on an O_APPEND descriptor (shorter than
 * PIPE_BUF, so concurrent processes do not interleave within a line); the
 * last line for an identity wins. The file is read whole at each lookup:
 * small (a line a vetted file), and only on a load.
 * Where: $ORCH_VET_CACHE, else $XDG_CACHE_HOME/orchestra/vetted, else
 * $HOME/.cache/orchestra/vetted; none of those: no cache (every load vets).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool cache_path(char *buf, size_t cap)
{
    const char *env = getenv("ORCH_VET_CACHE");
    if (env && *env)
        return (size_t)snprintf(buf, cap, "%s", env) < cap;
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg)
        return (size_t)snprintf(buf, cap, "%s/orchestra/vetted", xdg) < cap;
    const char *home = getenv("HOME");
    if (home && *home)
        return (size_t)snprintf(buf, cap, "%s/.cache/orchestra/vetted", home) < cap;
    return false;
}

int orch__vet_cache_get(const struct orch__file_id *id, const char *llama, char *reason,
                        size_t cap)
{
    char path[4096];
    if (!cache_path(path, sizeof path))
        return -1;
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[1024], want[256];
    snprintf(want, sizeof want, "v1 %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " ", llama,
             id->dev, id->ino, id->size, id->mtime_ns);
    size_t n = strlen(want);
    int verdict = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, n) != 0)
            continue;
        const char *v = line + n;
        bool ok = strncmp(v, "ok", 2) == 0, bad = strncmp(v, "bad", 3) == 0;
        if (!ok && !bad)
            continue;
        verdict = ok ? 1 : 0;
        const char *why = v + (ok ? 2 : 3);
        why += *why == ' ';
        size_t len = strcspn(why, "\n");
        if (reason && cap) {
            len = len < cap - 1 ? len : cap - 1;
            memcpy(reason, why, len);
            reason[len] = '\0';
        }
    }
    fclose(f);
    return verdict;
}

void orch__vet_cache_put(const struct orch__file_id *id, const char *llama, bool ok,
                         const char *reason)
{
    char path[4096];
    if (!cache_path(path, sizeof path))
        return;
    /* the folders up to the file, as far as they are missing */
    for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(path, 0700);
        *s = '/';
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        orch__log(ORCH_LOG_WARN, NULL, "vet_cache_unwritable", OF_S("file", path),
                  OF_S("cause", strerror(errno)));
        return;
    }
    char line[512];
    int n = snprintf(line, sizeof line, "v1 %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64
                     " %s ", llama, id->dev, id->ino, id->size, id->mtime_ns, ok ? "ok" : "bad");
    /* the reason on one line, cut on a character boundary to fit */
    size_t room = sizeof line - 2 - (size_t)n, len = strlen(reason ? reason : "");
    if (len > room)
        len = orch__utf8_complete_len(reason, room);
    for (size_t i = 0; i < len; i++)
        line[n + i] = reason[i] == '\n' ? ' ' : reason[i];
    n += (int)len;
    line[n++] = '\n';
    if (write(fd, line, (size_t)n) != n)
        orch__log(ORCH_LOG_WARN, NULL, "vet_cache_unwritable", OF_S("file", path),
                  OF_S("cause", strerror(errno)));
    close(fd);
}
