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

#include <ggml.h>

#include <ctype.h>
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
/* Real models have well under a thousand keys and a few thousand tensors
 * (5,019 keys load in 0.1 s); llama.cpp checks both for duplicates in time
 * that grows with the square of the count (1,000,000 keys: over 40
 * minutes), so counts past these limits are refused as hostile. */
#define MAX_KV 16384u
#define MAX_TENSORS 16384u
#define MAX_KEY_LEN 65535u
#define MAX_TENSOR_NAME 63u  /* GGML_MAX_NAME - 1 */
#define STR_KEEP_MAX (1u << 20)
#define INTS_KEEP_MAX 4096u  /* integer arrays up to this length keep their values */
#define MAX_DIMS 4
#define MIN_ALIGNMENT 32u    /* ggml's TENSOR_ALIGNMENT: less aborts the process */

enum gtype {
    GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR,
    GT_U64, GT_I64, GT_F64, GT_COUNT
};

static const uint8_t gtype_size[GT_COUNT] = {1,  1, 2, 2, 4, 4, 4, 1, 8 /* min: len */,
                                             12, 8, 8, 8};

struct kv {
    char *key;
    enum gtype type;
    enum gtype arr_type;
    uint64_t arr_n;
    uint64_t arr_pos; /* where an array's elements start in the file */
    int64_t *ints; /* an integer array's values, when short enough */
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
    struct orch__gguf_vocab vocab;
    struct orch__gguf_tensor *tensors;
};

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
    kv->arr_pos = r->pos;
    uint64_t min = gtype_size[et];
    if (n > (r->size - r->pos) / min)
        return orch__err(r->err, ORCH_EFORMAT,
                         "'%s': array '%s' claims %" PRIu64 " elements; the file has room for "
                         "at most %" PRIu64,
                         r->path, kv->key, n, (r->size - r->pos) / min);
    bool is_int = et <= GT_I32 || et == GT_U64 || et == GT_I64;
    if (is_int && et != GT_BOOL && n <= INTS_KEEP_MAX) {
        kv->ints = malloc((n ? n : 1) * sizeof *kv->ints);
        if (!kv->ints)
            return orch__err(r->err, ORCH_ENOMEM, "'%s': out of memory reading '%s'", r->path,
                             kv->key);
        for (uint64_t i = 0; i < n; i++) {
            struct kv one = {0};
            if ((rc = rd_scalar(r, (enum gtype)et, &one, kv->key)))
                return rc;
            kv->ints[i] = one.i;
        }
        return ORCH_OK;
    }
    if (et != GT_STR)
        return skip(r, n * min, kv->key);
    for (uint64_t i = 0; i < n; i++) {
        char *s;
        if ((rc = rd_str(r, &s, false, 0, kv->key)))
            return rc;
    }
    return ORCH_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(const struct kv *const *)a)->key, (*(const struct kv *const *)b)->key);
}

/* Duplicate keys, found in n log n (llama.cpp refuses them too, in n^2). */
static int check_unique_keys(const struct orch__gguf *g, const char *path, orch_error *err)
{
    if (g->n_kv < 2)
        return ORCH_OK;
    const struct kv **sorted = malloc(g->n_kv * sizeof *sorted);
    if (!sorted)
        return orch__err(err, ORCH_ENOMEM, "'%s': out of memory", path);
    for (uint64_t i = 0; i < g->n_kv; i++)
        sorted[i] = &g->kvs[i];
    qsort(sorted, g->n_kv, sizeof *sorted, cmp_key);
    int rc = ORCH_OK;
    for (uint64_t i = 1; i < g->n_kv && rc == ORCH_OK; i++)
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
            rc = orch__err(err, ORCH_EFORMAT, "'%s': key '%s' appears twice", path,
                           sorted[i]->key);
    free(sorted);
    return rc;
}

static const struct kv *find(const struct orch__gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0)
            return &g->kvs[i];
    return NULL;
}

bool orch__gguf_has(const struct orch__gguf *g, const char *key)
{
    return find(g, key) != NULL;
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

bool orch__gguf_get_bool(const struct orch__gguf *g, const char *key, bool *v)
{
    const struct kv *kv = find(g, key);
    if (!kv || kv->type != GT_BOOL)
        return false;
    *v = kv->i != 0;
    return true;
}

bool orch__gguf_get_float(const struct orch__gguf *g, const char *key, double *v)
{
    const struct kv *kv = find(g, key);
    if (!kv || (kv->type != GT_F32 && kv->type != GT_F64))
        return false;
    *v = kv->d;
    return true;
}

int64_t orch__gguf_array_len(const struct orch__gguf *g, const char *key)
{
    const struct kv *kv = find(g, key);
    return kv && kv->type == GT_ARR ? (int64_t)kv->arr_n : -1;
}

const int64_t *orch__gguf_get_ints(const struct orch__gguf *g, const char *key, uint64_t *n)
{
    const struct kv *kv = find(g, key);
    if (!kv || kv->type != GT_ARR || !kv->ints)
        return NULL;
    *n = kv->arr_n;
    return kv->ints;
}

const char *orch__gguf_key(const struct orch__gguf *g, uint64_t i, uint64_t *n_kv)
{
    *n_kv = g->n_kv;
    return i < g->n_kv ? g->kvs[i].key : NULL;
}

const struct orch__gguf_vocab *orch__gguf_vocab(const struct orch__gguf *g)
{
    return &g->vocab;
}

const struct orch__gguf_tensor *orch__gguf_tensors(const struct orch__gguf *g, uint64_t *n)
{
    *n = g->tensors ? g->n_tensors : 0;
    return g->tensors;
}

uint64_t orch__gguf_vocab_bytes(const struct orch__gguf *g)
{
    const struct orch__gguf_vocab *v = &g->vocab;
    if (v->n_tokens <= 0)
        return 0;
    const char *model = orch__gguf_get_str(g, "tokenizer.ggml.model");
    bool trie = model && (strcmp(model, "rwkv") == 0 || strcmp(model, "t5") == 0);
    /* per token: its entry, its map node and its piece cache (about 200
     * bytes with the strings' headers) and its text three times; a trie
     * (RWKV, T5) about 200 bytes a byte of text (measured: a 24 MB RWKV
     * vocabulary took 4.7 GB); a BPE merge about 160 */
    uint64_t b = (uint64_t)v->n_tokens * 200 + v->bytes * 3;
    if (trie)
        b += v->bytes * 200;
    int64_t merges = orch__gguf_array_len(g, "tokenizer.ggml.merges");
    if (merges > 0)
        b += (uint64_t)merges * 160;
    return b;
}

/* ---- the vocabulary, read once while the file is mapped -------------------- */

static uint64_t fnv1a(const unsigned char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The text llama.cpp files token i under: its own, or "[EMPTY_i]" for an
 * empty one (llama-vocab.cpp's load). */
static const unsigned char *token_text(const unsigned char *p, uint64_t len, int64_t i,
                                       char *buf, size_t cap, uint64_t *out_len)
{
    if (len) {
        *out_len = len;
        return p;
    }
    *out_len = (uint64_t)snprintf(buf, cap, "[EMPTY_%lld]", (long long)i);
    return (const unsigned char *)buf;
}

/* Finds two tokens with the same text (llama.cpp asserts on them at load)
 * with a hash table of token indices; pos/len locate each text in map. */
static int find_duplicate(const unsigned char *map, const uint64_t *pos, const uint64_t *len,
                          int64_t n, struct orch__gguf_vocab *v)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    int64_t *slot = malloc(cap * sizeof *slot);
    if (!slot)
        return -1;
    memset(slot, 0xff, cap * sizeof *slot);
    for (int64_t i = 0; i < n && v->dup_a < 0; i++) {
        char ba[32], bb[32];
        uint64_t la, lb;
        const unsigned char *a = token_text(map + pos[i], len[i], i, ba, sizeof ba, &la);
        uint64_t h = fnv1a(a, la) & (cap - 1);
        for (; slot[h] >= 0; h = (h + 1) & (cap - 1)) {
            int64_t j = slot[h];
            const unsigned char *b = token_text(map + pos[j], len[j], j, bb, sizeof bb, &lb);
            if (la == lb && memcmp(a, b, la) == 0) {
                v->dup_a = j;
                v->dup_b = i;
                break;
            }
        }
        slot[h] = i;
    }
    free(slot);
    return 0;
}

static bool spelled_byte(const unsigned char *p, uint64_t n)
{
    return n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && isxdigit(p[3]) &&
           isxdigit(p[4]);
}

/* The length (0, 1, or 2 for more) and first byte of token text s as the
 * RWKV tokenizer unescapes it (llama-vocab.cpp, llama_unescape_rwkv_token:
 * \t \n \r, \xHH, and \c for any other c). */
static int rwkv_unescaped(const unsigned char *s, uint64_t n, unsigned char *first)
{
    int out = 0, hex = 0;
    unsigned acc = 0;
    bool esc = false;
    for (uint64_t i = 0; i < n && out < 2; i++) {
        unsigned char c = s[i], o;
        if (hex) {
            acc = (acc << 4) + (unsigned)(c >= 'a' ? c - 'a' + 10 : c - '0');
            if (--hex)
                continue;
            o = (unsigned char)acc;
            acc = 0;
        } else if (esc) {
            esc = false;
            if (c == 'x') {
                hex = 2;
                continue;
            }
            o = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
        } else if (c == '\\') {
            esc = true;
            continue;
        } else {
            o = c;
        }
        if (out++ == 0)
            *first = o;
    }
    return out;
}

/* Reads the facts of struct orch__gguf_vocab from the mapped file (the
 * arrays' bounds were checked when the keys were read). */
static int scan_vocab(struct reader *r, struct orch__gguf *g)
{
    struct orch__gguf_vocab *v = &g->vocab;
    *v = (struct orch__gguf_vocab){.n_tokens = -1, .max_at = -1, .nul_at = -1, .dup_a = -1,
                                   .dup_b = -1, .bad_byte_at = -1, .rwkv_lone = -1};
    const struct kv *tk = find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GT_ARR || tk->arr_type != GT_STR || tk->arr_n > INT32_MAX)
        return ORCH_OK; /* llama.cpp refuses these itself */
    int64_t n = (int64_t)tk->arr_n;
    uint64_t *pos = malloc((size_t)(n ? n : 1) * sizeof *pos);
    uint64_t *len = malloc((size_t)(n ? n : 1) * sizeof *len);
    int rc = ORCH_OK;
    if (!pos || !len) {
        rc = orch__err(r->err, ORCH_ENOMEM, "'%s': out of memory reading the vocabulary",
                       r->path);
        goto done;
    }
    v->n_tokens = n;
    uint64_t at = tk->arr_pos;
    uint8_t starts[32] = {0}, alone[32] = {0}; /* byte sets, for rwkv_lone */
    for (int64_t i = 0; i < n; i++) {
        memcpy(&len[i], r->map + at, 8);
        pos[i] = at + 8;
        at = pos[i] + len[i];
        v->bytes += len[i];
        if (len[i] > v->max_len) {
            v->max_len = len[i];
            v->max_at = i;
        }
        if (v->nul_at < 0 && memchr(r->map + pos[i], 0, len[i]))
            v->nul_at = i;
        unsigned char b;
        int k = rwkv_unescaped(r->map + pos[i], len[i], &b);
        if (k >= 1)
            starts[b / 8] |= (uint8_t)(1u << b % 8);
        if (k == 1)
            alone[b / 8] |= (uint8_t)(1u << b % 8);
    }
    for (int b = 0; b < 256 && v->rwkv_lone < 0; b++)
        if ((starts[b / 8] & ~alone[b / 8]) >> b % 8 & 1)
            v->rwkv_lone = b;
    const struct kv *ty = find(g, "tokenizer.ggml.token_type");
    if (ty && ty->type == GT_ARR && ty->arr_type == GT_I32 && ty->arr_n >= (uint64_t)n) {
        for (int64_t i = 0; i < n; i++) {
            int32_t t;
            memcpy(&t, r->map + ty->arr_pos + 4 * (uint64_t)i, 4);
            if (t != 6)
                continue;
            v->n_byte_type++;
            if (v->bad_byte_at < 0 && !spelled_byte(r->map + pos[i], len[i]))
                v->bad_byte_at = i;
        }
    }
    if (find_duplicate(r->map, pos, len, n, v))
        rc = orch__err(r->err, ORCH_ENOMEM, "'%s': out of memory reading the vocabulary",
                       r->path);
done:
    free(pos);
    free(len);
    return rc;
}

static int rd_tensors(struct reader *r, struct orch__gguf *g, uint64_t alignment)
{
    uint64_t counts[GGML_TYPE_COUNT] = {0};
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors)
        return orch__err(r->err, ORCH_ENOMEM, "'%s': out of memory", r->path);
    uint64_t data_end = 0; /* relative to the data section */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        /* the name, straight from the map: "tensor 'blk.0.attn_q.weight'"
         * labels any error below (no allocation, no printf per tensor) */
        uint64_t name_len;
        int rc = rd_u64(r, &name_len, "a tensor name");
        if (rc)
            return rc;
        if (name_len > MAX_TENSOR_NAME || name_len > r->size - r->pos)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': tensor %" PRIu64 " has a name of %" PRIu64
                             " bytes (llama.cpp's limit: %u)",
                             r->path, i, name_len, MAX_TENSOR_NAME);
        char label[96] = "tensor '";
        size_t shown = name_len < 80 ? (size_t)name_len : 80;
        memcpy(label + 8, r->map + r->pos, shown);
        struct orch__gguf_tensor *ti = &g->tensors[i];
        memcpy(ti->name, r->map + r->pos, (size_t)name_len); /* at most 63 */
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
            ti->ne[d] = dim;
        }
        ti->n_dims = n_dims;
        if ((rc = rd_u32(r, &type, label)))
            return rc;
        /* ggml's own table: every type the linked ggml knows, none it does not */
        if (type >= GGML_TYPE_COUNT || ggml_blck_size((enum ggml_type)type) <= 0 ||
            ggml_type_size((enum ggml_type)type) == 0)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': %s has type %u, which this llama.cpp's ggml does not know",
                             r->path, label, type);
        ti->type = type;
        uint64_t offset;
        if ((rc = rd_u64(r, &offset, label)))
            return rc;
        uint64_t blck = (uint64_t)ggml_blck_size((enum ggml_type)type);
        uint64_t tsize = ggml_type_size((enum ggml_type)type);
        if (ne % blck)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': %s has %" PRIu64
                             " elements, not a multiple of %s's block %" PRIu64,
                             r->path, label, ne, ggml_type_name((enum ggml_type)type), blck);
        if (ne / blck > UINT64_MAX / tsize)
            return orch__err(r->err, ORCH_EFORMAT,
                             "'%s': %s has %" PRIu64 " elements of %s: its size in bytes "
                             "overflows 64 bits", r->path, label, ne,
                             ggml_type_name((enum ggml_type)type));
        uint64_t nbytes = ne / blck * tsize;
        if (offset % alignment || offset > UINT64_MAX - nbytes)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': %s has a bad data offset %" PRIu64,
                             r->path, label, offset);
        if (offset + nbytes > data_end)
            data_end = offset + nbytes;
        if (nbytes > UINT64_MAX - g->tensor_bytes || ne > UINT64_MAX - g->n_params)
            return orch__err(r->err, ORCH_EFORMAT, "'%s': tensor sizes add up past 64 bits at %s",
                             r->path, label);
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
    for (size_t t = 0; t < GGML_TYPE_COUNT; t++)
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
        free(g->kvs[i].ints);
    }
    free(g->kvs);
    free(g->tensors);
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
        rc = orch__err(err, ORCH_EFORMAT,
                       "'%s' is not a GGUF file (magic bytes %02x %02x %02x %02x)", path,
                       magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >> 24);
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
                       "'%s': absurd %s count %" PRIu64 " in the header (limit %u; llama.cpp's "
                       "duplicate check grows with its square)", path,
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
    if ((rc = check_unique_keys(g, path, err)) || (rc = scan_vocab(&r, g)))
        goto fail;
    g->n_tensors = n_tensors;
    int64_t alignment = 32;
    const struct kv *al = find(g, "general.alignment");
    if (al) {
        /* llama.cpp takes any power of two; the data section must still
         * fit in the file (rd_tensors checks) */
        if (al->type != GT_U32 || al->i < MIN_ALIGNMENT || (al->i & (al->i - 1))) {
            rc = orch__err(err, ORCH_EFORMAT,
                           "'%s': key 'general.alignment' is %lld; expected a u32 power of two "
                           "from %u (ggml aborts on data aligned to less than %u bytes)",
                           path, (long long)al->i, MIN_ALIGNMENT, MIN_ALIGNMENT);
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

/* Copies src into dst[cap], cut on a UTF-8 character boundary. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = orch__utf8_complete_len(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
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
    copy_text(out->arch, sizeof out->arch, arch ? arch : "");
    const char *name = orch__gguf_get_str(g, "general.name");
    copy_text(out->name, sizeof out->name, name ? name : "");
    snprintf(out->file_type, sizeof out->file_type, "%s",
             g->dominant_type >= 0 ? ggml_type_name((enum ggml_type)g->dominant_type) : "");
    for (char *p = out->file_type; *p; p++) /* "F16", as the GGUF world writes it */
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
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
