/*
 * digest.h — the sha256 of model files, as Ollama names its models by one:
 * computed once per version of a file and kept for the daemon's life.
 */
#ifndef ORCH_SRV_DIGEST_H
#define ORCH_SRV_DIGEST_H

#include <nettle/sha2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define DIGEST_KEEP 256 /* files remembered; past it the least recently asked goes */

struct digest_entry {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    uint64_t used;   /* the last ask, in asks */
    bool busy;       /* a thread is hashing it */
    bool ok;
    char hex[65];
};

struct digests {
    pthread_mutex_t lock;
    pthread_cond_t done; /* a hash finished */
    struct digest_entry e[DIGEST_KEEP];
    size_t n;
    uint64_t asks;
};

/* Threads: digests_init and digests_free at start and stop only. */
void digests_init(struct digests *d);
void digests_free(struct digests *d);

/* The sha256 of the file at path into out (64 lowercase hex digits and a
 * NUL). A file whose device, inode, size and mtime are unchanged is not
 * read again; threads asking for one file at once wait for one reading.
 * Returns 0, or -1 with errno set (the file cannot be opened or read; it
 * changed while it was read: EAGAIN). Threads: any. */
int digest_sha256(struct digests *d, const char *path, char out[65]);

/* Incremental hashing (a download hashed as it is written): adds what fd
 * holds from its offset to its end to ctx. 0, or -1 with errno. */
int digest_update_fd(struct sha256_ctx *ctx, int fd);
/* ctx's digest as 64 lowercase hex digits and a NUL (ctx is reset). */
void digest_hex(struct sha256_ctx *ctx, char hex[65]);

#endif /* ORCH_SRV_DIGEST_H */
