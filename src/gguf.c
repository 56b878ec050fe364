/*
 * gguf.c — a defensive reader for GGUF headers (metadata and tensor table).
 *
 * DESIGN
 * Files named by users are untrusted: every count, length and type is checked
 * against the bytes that remain in the file before anything is allocated or
 * skipped, integer arithmetic is checked for overflow, and typed lookups
 * check the stored type first (gguf's own typed getters abort the process on
 * a mismatch). The reader keeps scalar and string values (strings up to
 * STR_KEEP_MAX bytes; longer ones are skipped and read as absent) and, for
 * arrays, only their element type and count. It never reads tensor data; it
 * checks that the data section the table describes fits in the file.
 * No global state; each parse is independent and thread-safe.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MAX_KV 1000000u
#define MAX_TENSORS 10000000u
#define MAX_KEY_LEN 65535u
#define STR_KEEP_MAX (1u << 20)
#define MAX_DIMS 4

enum gtype {
    GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR,
    GT_U64, GT_I64, GT_F64, GT_COUNT
};

static const uint8_t gtype_size[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 8 /* min: len */, 12, 8, 8, 8};

struct kv {
    char *key;
    enum gtype type;
    enum gtype arr_type;
    uint64_t arr_n;
    int64_t i;     /* integer / bool value */
    double d;      /* float value */
    char *s;       /* string value, NULL when too long */
};

struct orch__gguf {
    uint32_t version;
    uint64_t file_bytes;
    uint64_t n_kv, n_tensors;
    struct kv *kvs;
    uint64_t tensor_bytes;
    uint64_t n_params;
    int dominant_type;
};

/* ggml tensor types: block size (elements) and bytes per block. */
struct ttype {
    const char *name;
    uint32_t blck;
    uint32_t size;
};

static const struct ttype ttypes[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 36},     [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
};
#define N_TTYPES (sizeof ttypes / sizeof ttypes[0])

struct reader {
    const unsigned char *map; /* the whole file, read-only */
    const char *path;
    uint64_t pos, size;
    orch_error *err;
};

static int cut_short(struct reader *r, const char *what)
{
    return orch__err(r->err, ORCH_EFORMAT,
                     "'%s': file cut short: %s at byte %" PRIu64 " runs past the end (%" PRIu64
                     " bytes)",
                     r->path, what, r->pos, r->size);
}

static int rd(struct reader *r, void *dst, size_t n, const char *what)
{
    if (n > r->size - r->pos)
        return cut_short(r, what);
    memcpy(dst, r->map + r->pos, n);
    r->pos += n;
    return ORCH_OK;
}

static int skip(struct reader *r, uint64_t n, const char *what)
{
    if (n > r->size - r->pos)
        return cut_short(r, what);
    r->pos += n;
    return ORCH_OK;
}

static int rd_u32(struct reader *r, uint32_t *v, const char *what)
{
    return rd(r, v, 4, what);
}

static int rd_u64(struct reader *r, uint64_t *v, const char *what)
{
    return rd(r, v, 8, what);
}

/* Reads a string; *out is malloc'd (NUL-terminated) when keep and the length
 * is at most keep_max, else NULL and the bytes are skipped. */
static int rd_str(struct reader *r, char **out, bool keep, uint64_t keep_max, const char *what)
{
    uint64_t len;
    int rc = rd_u64(r, &len, what);
    if (rc)
        return rc;
    if (len > r->size - r->pos)
        return orch__err(r->err, ORCH_EFORMAT,
                         "'%s': %s at byte %" PRIu64 " claims %" PRIu64
                         " bytes but only %" PRIu64 " remain",
                         r->path, what, r->pos, len, r->size - r->pos);
    *out = NULL;
    if (!keep || len > keep_max)
        return skip(r, len, what);
    char *s = malloc(len + 1);
    if (!s)
        return orch__err(r->err, ORCH_ENOMEM, "'%s': out of memory reading %s", r->path, what);
    rc = rd(r, s, len, what);
    if (rc) {
        free(s);
        return rc;
    }
    s[len] = '\0';
    *out = s;
    return ORCH_OK;
}

static int rd_scalar(struct reader *r, enum gtype t, struct kv *kv, const char *key)
{
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    int rc = rd(r, &v, gtype_size[t], key);
    if (rc)
        return rc;
    switch (t) {
    case GT_U8: kv->i = v.u8; break;
    case GT_I8: kv->i = v.i8; break;
    case GT_U16: kv->i = v.u16; break;
    case GT_I16: kv->i = v.i16; break;
    case GT_U32: kv->i = v.u32; break;
    case GT_I32: kv->i = v.i32; break;
    case GT_BOOL:
        if (v.u8 > 1)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': key '%s': bool value %u is not 0 or 1",
                             r->path, key, v.u8);
        kv->i = v.u8;
        break;
    case GT_U64: kv->i = v.u64 > INT64_MAX ? INT64_MAX : (int64_t)v.u64; break;
    case GT_I64: kv->i = v.i64; break;
    case GT_F32: kv->d = v.f32; break;
    case GT_F64: kv->d = v.f64; break;
    default: break;
    }
    return ORCH_OK;
}

static int rd_kv(struct reader *r, struct kv *kv, uint64_t idx)
{
    int rc = rd_str(r, &kv->key, true, MAX_KEY_LEN, "a key name");
    if (rc)
        return rc;
    if (!kv->key)
        return orch__err(r->err, ORCH_EFORMAT, "'%s': key %" PRIu64 " has an absurd name length",
                         r->path, idx);
    uint32_t t;
    if ((rc = rd_u32(r, &t, kv->key)))
        return rc;
    if (t >= GT_COUNT)
        return orch__err(r->err, ORCH_EFORMAT, "'%s': key '%s' has unknown value type %u",
                         r->path, kv->key, t);
    kv->type = (enum gtype)t;
    if (t == GT_STR)
        return rd_str(r, &kv->s, true, STR_KEEP_MAX, kv->key);
    if (t != GT_ARR)
        return rd_scalar(r, kv->type, kv, kv->key);

    uint32_t et;
    uint64_t n;
    if ((rc = rd_u32(r, &et, kv->key)) || (rc = rd_u64(r, &n, kv->key)))
        return rc;
    if (et >= GT_COUNT || et == GT_ARR)
        return orch__err(r->err, ORCH_EFORMAT, "'%s': array '%s' has unsupported element type %u",
                         r->path, kv->key, et);
    kv->arr_type = (enum gtype)et;
    kv->arr_n = n;
    uint64_t min = gtype_size[et];
    if (n > (r->size - r->pos) / min)
        return orch__err(r->err, ORCH_EFORMAT,
                         "'%s': array '%s' claims %" PRIu64 " elements; the file has room for "
                         "at most %" PRIu64,
                         r->path, kv->key, n, (r->size - r->pos) / min);
    if (et != GT_STR)
        return skip(r, n * min, kv->key);
    for (uint64_t i = 0; i < n; i++) {
        char *s;
        if ((rc = rd_str(r, &s, false, 0, kv->key)))
            return rc;
    }
    return ORCH_OK;
}

static const struct kv *find(const struct orch__gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0)
            return &g->kvs[i];
    return NULL;
}

const char *orch__gguf_get_str(const struct orch__gguf *g, const char *key)
{
    const struct kv *kv = find(g, key);
    return kv && kv->type == GT_STR ? kv->s : NULL;
}

bool orch__gguf_get_int(const struct orch__gguf *g, const char *key, int64_t *v)
{
    const struct kv *kv = find(g, key);
    if (!kv)
        return false;
    switch (kv->type) {
    case GT_U8: case GT_I8: case GT_U16: case GT_I16: case GT_U32: case GT_I32:
    case GT_U64: case GT_I64:
        *v = kv->i;
        return true;
    default:
        return false;
    }
}

int64_t orch__gguf_array_len(const struct orch__gguf *g, const char *key)
{
    const struct kv *kv = find(g, key);
    return kv && kv->type == GT_ARR ? (int64_t)kv->arr_n : -1;
}

static int rd_tensors(struct reader *r, struct orch__gguf *g, uint64_t alignment)
{
    uint64_t counts[N_TTYPES] = {0};
    uint64_t data_end = 0; /* relative to the data section */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        /* the name, straight from the map: "tensor 'blk.0.attn_q.weight'"
         * labels any error below (no allocation, no printf per tensor) */
        uint64_t name_len;
        int rc = rd_u64(r, &name_len, "a tensor name");
        if (rc)
            return rc;
        if (name_len > 64 * 1024 || name_len > r->size - r->pos)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': tensor %" PRIu64 " has an absurd name length %" PRIu64,
                             r->path, i, name_len);
        char label[96] = "tensor '";
        size_t shown = name_len < 80 ? (size_t)name_len : 80;
        memcpy(label + 8, r->map + r->pos, shown);
        memcpy(label + 8 + shown, "'", 2);
        r->pos += name_len;
        uint32_t n_dims, type;
        if ((rc = rd_u32(r, &n_dims, label)))
            return rc;
        if (n_dims == 0 || n_dims > MAX_DIMS)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': %s has %u dimensions (expected 1..%d)",
                             r->path, label, n_dims, MAX_DIMS);
        uint64_t ne = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t dim = 0;
            if ((rc = rd_u64(r, &dim, label)))
                return rc;
            if (dim == 0 || dim > (UINT64_C(1) << 40) || ne > UINT64_MAX / dim)
                return orch__err(r->err, ORCH_EFORMAT, "'%s': %s has an absurd size %" PRIu64
                                 " in dimension %u", r->path, label, dim, d);
            ne *= dim;
        }
        if ((rc = rd_u32(r, &type, label)))
            return rc;
        if (type >= N_TTYPES || !ttypes[type].name)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': %s has unknown type %u", r->path, label,
                             type);
        uint64_t offset;
        if ((rc = rd_u64(r, &offset, label)))
            return rc;
        const struct ttype *tt = &ttypes[type];
        if (ne % tt->blck)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': %s has %" PRIu64 " elements, not a multiple of %s's block %u",
                             r->path, label, ne, tt->name, tt->blck);
        uint64_t nbytes = ne / tt->blck * tt->size;
        if (offset % alignment || offset > UINT64_MAX - nbytes)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': %s has a bad data offset %" PRIu64,
                             r->path, label, offset);
        if (offset + nbytes > data_end)
            data_end = offset + nbytes;
        g->tensor_bytes += nbytes;
        g->n_params += ne;
        counts[type] += nbytes;
    }
    uint64_t data_start = (r->pos + alignment - 1) / alignment * alignment;
    if (g->n_tensors && (data_start > r->size || data_end > r->size - data_start))
        return orch__err(r->err, ORCH_EFORMAT,
                         "'%s': file cut short: tensor data ends at byte %" PRIu64
                         " but the file has %" PRIu64 " bytes",
                         r->path, data_start + data_end, r->size);
    g->dominant_type = -1;
    for (size_t t = 0; t < N_TTYPES; t++)
        if (counts[t] && (g->dominant_type < 0 || counts[t] > counts[g->dominant_type]))
            g->dominant_type = (int)t;
    return ORCH_OK;
}

void orch__gguf_close(struct orch__gguf *g)
{
    if (!g)
        return;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].s);
    }
    free(g->kvs);
    free(g);
}

int orch__gguf_open(const char *path, struct orch__gguf **out, orch_error *err)
{
    *out = NULL;
    uint64_t size;
    int rc = orch__check_model_file(path, &size, err);
    if (rc)
        return rc;
    /* mapped, not read: only the header's pages are touched, and skipping
     * a vocabulary of strings costs no system calls */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return orch__err_errno(err, errno, "cannot open model file", path);
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return orch__err_errno(err, map_errno, "cannot map model file", path);
    struct reader r = {.map = map, .path = path, .pos = 0, .size = size, .err = err};
    struct orch__gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(map, (size_t)size);
        return orch__err(err, ORCH_ENOMEM, "'%s': out of memory", path);
    }
    g->file_bytes = size;
    uint32_t magic = 0;
    if ((rc = rd_u32(&r, &magic, "magic")))
        goto fail;
    if (magic != GGUF_MAGIC) {
        rc = orch__err(err, ORCH_EFORMAT, "'%s' is not a GGUF file (magic bytes %02x %02x %02x %02x)",
                       path, magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >> 24);
        goto fail;
    }
    if ((rc = rd_u32(&r, &g->version, "version")))
        goto fail;
    if (g->version < 2 || g->version > 3) {
        rc = orch__err(err, ORCH_EFORMAT, "'%s': unsupported GGUF version %u (expected 2 or 3)",
                       path, g->version);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(&r, &n_tensors, "tensor count")) || (rc = rd_u64(&r, &n_kv, "key count")))
        goto fail;
    /* a key takes at least 12 bytes, a tensor at least 8+4+8+4+8 */
    if (n_kv > MAX_KV || n_tensors > MAX_TENSORS) {
        rc = orch__err(err, ORCH_EFORMAT,
                       "'%s': absurd %s count %" PRIu64 " in the header (at most %u)", path,
                       n_kv > MAX_KV ? "key" : "tensor", n_kv > MAX_KV ? n_kv : n_tensors,
                       n_kv > MAX_KV ? MAX_KV : MAX_TENSORS);
        goto fail;
    }
    if (n_kv > (size - r.pos) / 12 || n_tensors > (size - r.pos) / 32) {
        rc = orch__err(err, ORCH_EFORMAT,
                       "'%s': file cut short: the header lists %" PRIu64 " keys and %" PRIu64
                       " tensors but only %" PRIu64 " bytes follow",
                       path, n_kv, n_tensors, size - r.pos);
        goto fail;
    }
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    if (!g->kvs) {
        rc = orch__err(err, ORCH_ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* so that close frees what was read */
        if ((rc = rd_kv(&r, &g->kvs[i], i)))
            goto fail;
    }
    g->n_tensors = n_tensors;
    int64_t alignment = 32;
    const struct kv *al = find(g, "general.alignment");
    if (al) {
        if (al->type != GT_U32 || al->i == 0 || (al->i & (al->i - 1))) {
            rc = orch__err(err, ORCH_EFORMAT,
                           "'%s': general.alignment must be a u32 power of two", path);
            goto fail;
        }
        alignment = al->i;
    }
    if ((rc = rd_tensors(&r, g, (uint64_t)alignment)))
        goto fail;
    munmap(map, (size_t)size);
    *out = g;
    return ORCH_OK;
fail:
    munmap(map, (size_t)size);
    orch__gguf_close(g);
    return rc;
}

static int64_t arch_int(const struct orch__gguf *g, const char *arch, const char *suffix)
{
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return orch__gguf_get_int(g, key, &v) ? v : -1;
}

void orch__gguf_fill_info(const struct orch__gguf *g, struct orch_file_info *out)
{
    memset(out, 0, sizeof *out);
    out->gguf_version = g->version;
    out->file_bytes = g->file_bytes;
    out->tensor_bytes = g->tensor_bytes;
    out->n_tensors = g->n_tensors;
    out->n_kv = g->n_kv;
    out->n_params = g->n_params;
    const char *arch = orch__gguf_get_str(g, "general.architecture");
    snprintf(out->arch, sizeof out->arch, "%s", arch ? arch : "");
    const char *name = orch__gguf_get_str(g, "general.name");
    snprintf(out->name, sizeof out->name, "%s", name ? name : "");
    snprintf(out->file_type, sizeof out->file_type, "%s",
             g->dominant_type >= 0 ? ttypes[g->dominant_type].name : "");
    const char *a = arch ? arch : "";
    out->n_ctx_train = arch_int(g, a, "context_length");
    out->n_embd = arch_int(g, a, "embedding_length");
    out->n_layer = arch_int(g, a, "block_count");
    out->n_head = arch_int(g, a, "attention.head_count");
    out->n_head_kv = arch_int(g, a, "attention.head_count_kv");
    if (out->n_head_kv < 0)
        out->n_head_kv = out->n_head;
    out->n_vocab = orch__gguf_array_len(g, "tokenizer.ggml.tokens");
    out->has_chat_template = orch__gguf_get_str(g, "tokenizer.chat_template") != NULL;
}

int orch_file_info(const char *path, struct orch_file_info *out, orch_error *err)
{
    if (!path || !out)
        return orch__err(err, ORCH_EINVAL, "orch_file_info: NULL argument");
    struct orch__gguf *g;
    int rc = orch__gguf_open(path, &g, err);
    if (rc)
        return rc;
    orch__gguf_fill_info(g, out);
    orch__gguf_close(g);
    return ORCH_OK;
}

int orch_file_estimate(const char *path, int32_t n_ctx, uint64_t *bytes, orch_error *err)
{
    if (!bytes)
        return orch__err(err, ORCH_EINVAL, "orch_file_estimate: bytes is NULL");
    uint64_t w, c;
    int rc = orch__gguf_estimate(path, n_ctx, &w, &c, err);
    if (rc == ORCH_OK)
        *bytes = w + c;
    return rc;
}

int orch__gguf_estimate(const char *path, int32_t n_ctx, uint64_t *weights, uint64_t *context,
                        orch_error *err)
{
    struct orch_file_info fi;
    int rc = orch_file_info(path, &fi, err);
    if (rc)
        return rc;
    if (n_ctx <= 0)
        n_ctx = fi.n_ctx_train > 0 ? (int32_t)(fi.n_ctx_train < ORCH_N_CTX_MAX ? fi.n_ctx_train
                                                                               : ORCH_N_CTX_MAX)
                                   : 2048;
    uint64_t kv = 0, compute = 0;
    if (fi.n_layer > 0 && fi.n_embd > 0 && fi.n_head > 0) {
        uint64_t head_dim = (uint64_t)fi.n_embd / (uint64_t)fi.n_head;
        uint64_t kv_dim = head_dim * (uint64_t)(fi.n_head_kv > 0 ? fi.n_head_kv : fi.n_head);
        /* K and V, f16, every layer, every position */
        kv = 2 * 2 * (uint64_t)fi.n_layer * (uint64_t)n_ctx * kv_dim;
        /* compute buffers: logits for a batch of 512 plus activations; a
         * rough upper figure, refined by the accounting after the load */
        uint64_t n_vocab = fi.n_vocab > 0 ? (uint64_t)fi.n_vocab : 32000;
        compute = 512 * 4 * (n_vocab + 4 * (uint64_t)fi.n_embd) +
                  (uint64_t)n_ctx * 512 * 4 / 8;
    }
    *weights = fi.tensor_bytes;
    *context = kv + compute;
    return ORCH_OK;
}
