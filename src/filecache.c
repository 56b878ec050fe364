/*
 * filecache.c — model files as the layers above the reader see them: a
 * file's identity, and the summary of its header (orch_file_info, the
 * vocabulary's memory) that estimates, ps and the daemon's model lists
 * read, kept per identity.
 *
 * DESIGN
 * A config of a thousand roles over three files asked the reader for a
 * thousand headers on every ps, /api/tags and /api/ps (52 us each: the
 * vocabulary's strings are walked). The summary is small and depends only
 * on the file's bytes, so it is kept in a fixed table of CACHE_SLOTS,
 * keyed by identity (device, inode, size, modification time to the
 * nanosecond): a lookup is one stat(). A file that changes gets a new
 * identity and is read again; one that fails to parse is not kept (its
 * error is reported each time). The identity is taken before and after
 * the parse and the summary kept only when they agree, so a file
 * rewritten during the parse is not kept under either. Slots are reused
 * round robin. One mutex guards the table, held only to copy a slot.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

#define CACHE_SLOTS 64

struct slot {
    bool used;
    struct orch__file_id id;
    struct orch__file_summary sum;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot g_slots[CACHE_SLOTS]; /* guarded by g_lock */
static unsigned g_next;                  /* guarded by g_lock: the next slot to reuse */
static _Atomic uint64_t g_parses;

uint64_t orch__file_summary_parses(void)
{
    return atomic_load(&g_parses);
}

int orch__file_identity(const char *path, struct orch__file_id *id, orch_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return orch__err_errno(err, errno, "cannot stat model file", path);
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    id->size = (uint64_t)st.st_size;
    id->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return ORCH_OK;
}

bool orch__file_same(const struct orch__file_id *a, const struct orch__file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

static bool lookup(const struct orch__file_id *id, struct orch__file_summary *out)
{
    bool hit = false;
    pthread_mutex_lock(&g_lock);
    for (unsigned i = 0; i < CACHE_SLOTS && !hit; i++)
        if (g_slots[i].used && orch__file_same(&g_slots[i].id, id)) {
            *out = g_slots[i].sum;
            hit = true;
        }
    pthread_mutex_unlock(&g_lock);
    return hit;
}

static void keep(const struct orch__file_id *id, const struct orch__file_summary *sum)
{
    pthread_mutex_lock(&g_lock);
    unsigned i = 0;
    while (i < CACHE_SLOTS && g_slots[i].used && !orch__file_same(&g_slots[i].id, id))
        i++;
    if (i == CACHE_SLOTS)
        i = g_next++ % CACHE_SLOTS;
    g_slots[i] = (struct slot){.used = true, .id = *id, .sum = *sum};
    pthread_mutex_unlock(&g_lock);
}

int orch__file_summary(const char *path, struct orch__file_summary *out, orch_error *err)
{
    struct orch__file_id before, after;
    bool have_id = path && *path && orch__file_identity(path, &before, NULL) == ORCH_OK;
    if (have_id && lookup(&before, out))
        return ORCH_OK;
    atomic_fetch_add(&g_parses, 1);
    struct orch__gguf *g;
    int rc = orch__gguf_open(path, &g, err); /* names the file and the cause */
    if (rc)
        return rc;
    orch__gguf_fill_info(g, &out->info);
    out->vocab_bytes = orch__gguf_vocab_bytes(g);
    orch__gguf_close(g);
    if (have_id && orch__file_identity(path, &after, NULL) == ORCH_OK &&
        orch__file_same(&before, &after))
        keep(&before, out);
    return ORCH_OK;
}

int orch_file_info(const char *path, struct orch_file_info *out, orch_error *err)
{
    if (!path || !out)
        return orch__err(err, ORCH_EINVAL, "orch_file_info: NULL argument");
    struct orch__file_summary sum;
    int rc = orch__file_summary(path, &sum, err);
    if (rc == ORCH_OK)
        *out = sum.info;
    return rc;
}

int orch_file_chat_template(const char *path, char **out, orch_error *err)
{
    if (!path || !out)
        return orch__err(err, ORCH_EINVAL, "orch_file_chat_template: NULL argument");
    *out = NULL;
    struct orch__gguf *g;
    int rc = orch__gguf_open(path, &g, err);
    if (rc)
        return rc;
    const char *t = orch__gguf_get_str(g, "tokenizer.chat_template");
    if (t && !(*out = orch__strdup(t)))
        rc = orch__err(err, ORCH_ENOMEM, "out of memory reading '%s'", path);
    orch__gguf_close(g);
    return rc;
}

int orch_file_estimate(const char *path, int32_t n_ctx, uint64_t *bytes, orch_error *err)
{
    if (!bytes)
        return orch__err(err, ORCH_EINVAL, "orch_file_estimate: bytes is NULL");
    uint64_t w, c;
    int rc = orch__file_estimate(path, n_ctx, 1, &w, &c, err);
    if (rc == ORCH_OK)
        *bytes = w + c;
    return rc;
}

int orch__file_estimate(const char *path, int32_t n_ctx, int32_t n_seq, uint64_t *weights,
                        uint64_t *context, orch_error *err)
{
    struct orch__file_summary sum;
    int rc = orch__file_summary(path, &sum, err);
    if (rc)
        return rc;
    const struct orch_file_info *fi = &sum.info;
    n_ctx = orch__n_ctx_resolve(n_ctx, fi->n_ctx_train);
    uint64_t kv = 0, compute = 0;
    if (fi->n_layer > 0 && fi->n_embd > 0 && fi->n_head > 0) {
        uint64_t head_dim = (uint64_t)fi->n_embd / (uint64_t)fi->n_head;
        uint64_t kv_dim = head_dim * (uint64_t)(fi->n_head_kv > 0 ? fi->n_head_kv : fi->n_head);
        /* K and V, f16, every layer, every position */
        uint64_t cells = (uint64_t)n_ctx * (uint64_t)(n_seq > 1 ? n_seq : 1);
        kv = 2 * 2 * (uint64_t)fi->n_layer * cells * kv_dim;
        /* compute buffers: logits for a batch of 512 plus activations; a
         * rough upper figure, refined by the accounting after the load */
        uint64_t n_vocab = fi->n_vocab > 0 ? (uint64_t)fi->n_vocab : 32000;
        compute = 512 * 4 * (n_vocab + 4 * (uint64_t)fi->n_embd) + cells * 512 * 4 / 8;
    }
    *weights = fi->tensor_bytes + sum.vocab_bytes;
    *context = kv + compute;
    return ORCH_OK;
}
