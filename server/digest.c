/*
 * digest.c — model files' sha256 (nettle), kept per version of a file.
 *
 * Hashing reads the whole file (a 4 GB model takes a few seconds), so the
 * answer is kept by the file's identity and time; a thread that asks while
 * another hashes the same version waits instead of reading it twice.
 */
#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void digests_init(struct digests *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->done, NULL);
}

void digests_free(struct digests *d)
{
    pthread_cond_destroy(&d->done);
    pthread_mutex_destroy(&d->lock);
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool same(const struct digest_entry *e, const struct stat *st)
{
    return e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
           e->mtime_ns == mtime_ns(st);
}

int digest_update_fd(struct sha256_ctx *ctx, int fd)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return -1;
    for (;;) {
        ssize_t k = read(fd, buf, CHUNK);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return -1;
        }
        if (k == 0)
            break;
        sha256_update(ctx, (size_t)k, buf);
    }
    free(buf);
    return 0;
}

void digest_hex(struct sha256_ctx *ctx, char hex[65])
{
    uint8_t md[SHA256_DIGEST_SIZE];
    sha256_digest(ctx, sizeof md, md);
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof md; i++) {
        hex[2 * i] = x[md[i] >> 4];
        hex[2 * i + 1] = x[md[i] & 15];
    }
    hex[64] = '\0';
}

/* Hashes fd to its end into hex; 0 or -1 (errno). */
static int hash_fd(int fd, char hex[65])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    if (digest_update_fd(&ctx, fd) != 0)
        return -1;
    digest_hex(&ctx, hex);
    return 0;
}

/* The entry for st's version, made (evicting the least recently asked
 * one not being hashed) when absent. Called locked. */
static struct digest_entry *slot(struct digests *d, const struct stat *st)
{
    struct digest_entry *victim = NULL;
    for (size_t i = 0; i < d->n; i++) {
        if (same(&d->e[i], st))
            return &d->e[i];
        if (!d->e[i].busy && (!victim || d->e[i].used < victim->used))
            victim = &d->e[i];
    }
    if (d->n < DIGEST_KEEP)
        victim = &d->e[d->n++];
    if (!victim)
        return NULL;
    *victim = (struct digest_entry){.dev = st->st_dev, .ino = st->st_ino, .size = st->st_size,
                                    .mtime_ns = mtime_ns(st)};
    return victim;
}

int digest_sha256(struct digests *d, const char *path, char out[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    pthread_mutex_lock(&d->lock);
    struct digest_entry *e;
    for (;;) {
        e = slot(d, &st);
        if (!e || !e->busy)
            break;
        pthread_cond_wait(&d->done, &d->lock); /* another thread reads this version */
    }
    if (e && e->ok) {
        e->used = ++d->asks;
        memcpy(out, e->hex, 65);
        pthread_mutex_unlock(&d->lock);
        close(fd);
        return 0;
    }
    if (e)
        e->busy = true;
    pthread_mutex_unlock(&d->lock);

    int rc = hash_fd(fd, out);
    int err = errno;
    struct stat after;
    if (rc == 0 && (fstat(fd, &after) != 0 || mtime_ns(&after) != mtime_ns(&st) ||
                    after.st_size != st.st_size)) {
        rc = -1; /* written to while it was read: this hash is of no version */
        err = EAGAIN;
    }
    close(fd);
    pthread_mutex_lock(&d->lock);
    if (e) { /* the entry is this thread's while busy: no one evicted it */
        e->busy = false;
        e->ok = rc == 0;
        e->used = ++d->asks;
        if (rc == 0)
            memcpy(e->hex, out, 65);
        pthread_cond_broadcast(&d->done);
    }
    pthread_mutex_unlock(&d->lock);
    errno = err;
    return rc;
}
