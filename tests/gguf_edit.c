/*
 * gguf_edit.c — see gguf_edit.h. Trusts its input only as far as tests need:
 * every read is bounds-checked, and a file it cannot walk is an error.
 */
#include "gguf_edit.h"

#include <ggml.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rd {
    const unsigned char *p;
    size_t n, pos;
    bool bad;
};

static uint64_t rd_n(struct rd *r, size_t n)
{
    uint64_t v = 0;
    if (r->bad || n > r->n - r->pos) {
        r->bad = true;
        return 0;
    }
    memcpy(&v, r->p + r->pos, n);
    r->pos += n;
    return v;
}

static void rd_skip(struct rd *r, uint64_t n)
{
    if (r->bad || n > r->n - r->pos)
        r->bad = true;
    else
        r->pos += n;
}

static const size_t scalar_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static void skip_value(struct rd *r, uint32_t type)
{
    if (type == GE_STR) {
        rd_skip(r, rd_n(r, 8));
    } else if (type == GE_ARR) {
        uint32_t et = (uint32_t)rd_n(r, 4);
        uint64_t n = rd_n(r, 8);
        if (et == GE_STR) {
            for (uint64_t i = 0; i < n && !r->bad; i++)
                rd_skip(r, rd_n(r, 8));
        } else if (et < 13 && scalar_size[et] && n <= (r->n - r->pos) / scalar_size[et]) {
            rd_skip(r, n * scalar_size[et]);
        } else {
            r->bad = true;
        }
    } else if (type < 13 && scalar_size[type]) {
        rd_skip(r, scalar_size[type]);
    } else {
        r->bad = true;
    }
}

struct out {
    unsigned char *p;
    size_t n, cap;
    bool oom;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->oom)
        return;
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->n + n)
            cap *= 2;
        unsigned char *q = realloc(o->p, cap);
        if (!q) {
            o->oom = true;
            return;
        }
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void put_u32(struct out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(struct out *o, uint64_t v) { put(o, &v, 8); }
static void put_str(struct out *o, const char *s)
{
    put_u64(o, strlen(s));
    put(o, s, strlen(s));
}

static void edit_key(const struct gguf_edit *e, const char *arch, char *buf, size_t cap)
{
    if (strncmp(e->key, "{arch}.", 7) == 0)
        snprintf(buf, cap, "%s.%s", arch, e->key + 7);
    else
        snprintf(buf, cap, "%s", e->key);
}

static void put_edit(struct out *o, const struct gguf_edit *e, const char *key)
{
    put_str(o, key);
    put_u32(o, (uint32_t)e->type);
    switch (e->type) {
    case GE_U32:
    case GE_I32:
        put_u32(o, (uint32_t)e->i);
        break;
    case GE_U64:
        put_u64(o, (uint64_t)e->i);
        break;
    case GE_F32:
        put(o, &e->f, 4);
        break;
    case GE_BOOL: {
        unsigned char b = (unsigned char)(e->i != 0);
        put(o, &b, 1);
        break;
    }
    case GE_STR:
        put_str(o, e->s ? e->s : "");
        break;
    case GE_ARR:
        put_u32(o, (uint32_t)e->arr_type);
        put_u64(o, e->n_arr);
        for (size_t i = 0; i < e->n_arr; i++) {
            if (e->arr_type == GE_STR) {
                size_t n = e->lens ? e->lens[i] : strlen(e->strs[i]);
                put_u64(o, n);
                put(o, e->strs[i], n);
            } else if (e->arr_type == GE_F32) {
                put(o, &e->farr[i], 4);
            } else {
                put_u32(o, (uint32_t)e->arr[i]);
            }
        }
        break;
    }
}

static const struct gguf_tensor_edit *tensor_edit(const struct gguf_edits *e, const char *name)
{
    const struct gguf_tensor_edit *hit = NULL;
    for (size_t i = 0; i < e->n_t; i++) {
        const char *pat = e->t[i].name;
        size_t n = strlen(name), m = strlen(pat);
        if (strcmp(pat, name) == 0 ||
            (pat[0] == '*' && m - 1 <= n && strcmp(name + n - (m - 1), pat + 1) == 0))
            hit = &e->t[i];
    }
    return hit;
}

struct tinfo {
    size_t name_at, name_len;
    uint32_t n_dims, type, new_type;
    uint64_t ne[4], nbytes, new_bytes;
    int drop;
};

/* The tensor table, rewritten (types, drops, offsets), then the data. */
static void put_tensors(struct out *o, const unsigned char *in, struct tinfo *ts, uint64_t n,
                        uint64_t align)
{
    uint64_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (ts[i].drop)
            continue;
        put_u64(o, ts[i].name_len);
        put(o, in + ts[i].name_at, ts[i].name_len);
        put_u32(o, ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims; d++)
            put_u64(o, ts[i].ne[d]);
        put_u32(o, ts[i].new_type);
        put_u64(o, off);
        off += (ts[i].new_bytes + align - 1) / align * align;
    }
    static const unsigned char zeros[4096];
    size_t pad = (size_t)((align - o->n % align) % align);
    while (pad) {
        size_t m = pad < sizeof zeros ? pad : sizeof zeros;
        put(o, zeros, m);
        pad -= m;
    }
}

static int put_data(struct out *o, const unsigned char *in, size_t n_in, const struct tinfo *ts,
                    const uint64_t *old_off, uint64_t n, size_t data, uint64_t align)
{
    static const unsigned char zeros[4096];
    for (uint64_t i = 0; i < n; i++) {
        if (ts[i].drop)
            continue;
        const unsigned char *src = in + data + old_off[i];
        if (data + old_off[i] + ts[i].nbytes > n_in || !ts[i].nbytes)
            return -1;
        for (uint64_t k = 0; k < ts[i].new_bytes;) {
            uint64_t m = ts[i].new_bytes - k < ts[i].nbytes ? ts[i].new_bytes - k : ts[i].nbytes;
            put(o, src, m);
            k += m;
        }
        size_t pad = (size_t)((align - ts[i].new_bytes % align) % align);
        while (pad) {
            size_t m = pad < sizeof zeros ? pad : sizeof zeros;
            put(o, zeros, m);
            pad -= m;
        }
    }
    return 0;
}

int gguf_rewrite_mem(const unsigned char *in, size_t n_in, const struct gguf_edit *edits,
                     size_t n_edits, unsigned char **out_p, size_t *n_out)
{
    struct gguf_edits e = {.kv = edits, .n_kv = n_edits};
    return gguf_rewrite_ex(in, n_in, &e, out_p, n_out);
}

int gguf_rewrite_ex(const unsigned char *in, size_t n_in, const struct gguf_edits *ex,
                    unsigned char **out_p, size_t *n_out)
{
    const struct gguf_edit *edits = ex->kv;
    size_t n_edits = ex->n_kv;
    struct rd r = {.p = in, .n = n_in};
    uint32_t magic = (uint32_t)rd_n(&r, 4), version = (uint32_t)rd_n(&r, 4);
    uint64_t n_tensors = rd_n(&r, 8), n_kv = rd_n(&r, 8);
    if (r.bad || magic != 0x46554747u || n_kv > 100000)
        return -1;
    size_t *k_start = calloc(n_kv + 1, sizeof *k_start), *k_end = calloc(n_kv + 1, sizeof *k_end);
    size_t *k_type = calloc(n_kv + 1, sizeof *k_type);
    char **keys = calloc(n_kv + 1, sizeof *keys);
    struct tinfo *ts = calloc(n_tensors + 1, sizeof *ts);
    uint64_t *old_off = calloc(n_tensors + 1, sizeof *old_off);
    char arch[64] = "llama", old_arch[64] = "";
    uint64_t old_align = 32, new_align = 32;
    int rc = -1;
    struct out o = {0};
    if (!k_start || !k_end || !keys || !k_type || !ts || !old_off || n_tensors > 100000)
        goto done;
    for (uint64_t i = 0; i < n_kv && !r.bad; i++) {
        k_start[i] = r.pos;
        uint64_t len = rd_n(&r, 8);
        if (r.bad || len > r.n - r.pos || len > 4096)
            goto done;
        keys[i] = strndup((const char *)in + r.pos, len);
        r.pos += len;
        k_type[i] = r.pos;
        uint32_t type = (uint32_t)rd_n(&r, 4);
        size_t vpos = r.pos;
        skip_value(&r, type);
        k_end[i] = r.pos;
        if (!r.bad && type == GE_STR && strcmp(keys[i], "general.architecture") == 0) {
            uint64_t sl;
            memcpy(&sl, in + vpos, 8);
            snprintf(arch, sizeof arch, "%.*s", (int)(sl < 63 ? sl : 63), in + vpos + 8);
        }
        if (!r.bad && type == GE_U32 && strcmp(keys[i], "general.alignment") == 0) {
            uint32_t a;
            memcpy(&a, in + vpos, 4);
            old_align = new_align = a ? a : 1;
        }
    }
    snprintf(old_arch, sizeof old_arch, "%s", arch);
    for (uint64_t t = 0; t < n_tensors && !r.bad; t++) {
        struct tinfo *ti = &ts[t];
        ti->name_len = (size_t)rd_n(&r, 8);
        ti->name_at = r.pos;
        rd_skip(&r, ti->name_len);
        ti->n_dims = (uint32_t)rd_n(&r, 4);
        if (ti->n_dims > 4 || ti->name_len > 200)
            goto done;
        uint64_t ne = 1;
        for (uint32_t d = 0; d < ti->n_dims; d++)
            ne *= (ti->ne[d] = rd_n(&r, 8));
        ti->type = ti->new_type = (uint32_t)rd_n(&r, 4);
        old_off[t] = rd_n(&r, 8);
        if (r.bad || ti->type >= GGML_TYPE_COUNT || !ggml_blck_size((enum ggml_type)ti->type))
            goto done;
        ti->nbytes = ggml_row_size((enum ggml_type)ti->type, (int64_t)ti->ne[0]) *
                     (ti->ne[0] ? ne / ti->ne[0] : 0);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)ti->name_len, in + ti->name_at);
        const struct gguf_tensor_edit *te = tensor_edit(ex, name);
        ti->drop = te && te->remove;
        if (te && te->type >= 0) {
            if (te->type >= GGML_TYPE_COUNT || ggml_blck_size((enum ggml_type)te->type) <= 0 ||
                ggml_type_size((enum ggml_type)te->type) == 0 ||
                ti->ne[0] % (uint64_t)ggml_blck_size((enum ggml_type)te->type))
                goto done;
            ti->new_type = (uint32_t)te->type;
        }
        ti->new_bytes = ggml_row_size((enum ggml_type)ti->new_type, (int64_t)ti->ne[0]) *
                        (ti->ne[0] ? ne / ti->ne[0] : 0);
    }
    if (r.bad)
        goto done;
    size_t infos_end = r.pos;
    size_t data = n_tensors ? (infos_end + old_align - 1) / old_align * old_align : infos_end;
    if (data > n_in)
        data = n_in;
    for (size_t e = 0; e < n_edits; e++) {
        if (strcmp(edits[e].key, "general.architecture") == 0 && edits[e].type == GE_STR)
            snprintf(arch, sizeof arch, "%s", edits[e].s);
        if (strcmp(edits[e].key, "general.alignment") == 0 && edits[e].type == GE_U32)
            /* past 1 MiB keep the old padding: the file is refused anyway,
             * and the editor should not write gigabytes of zeros */
            new_align = edits[e].i < 1           ? 1
                        : edits[e].i > (1 << 20) ? old_align
                                                 : (uint64_t)edits[e].i;
    }
    /* count the keys */
    uint64_t count = n_kv;
    bool *used = calloc(n_edits + 1, sizeof *used);
    if (!used)
        goto done;
    char key[256];
    bool rename = ex->rename_arch && strcmp(arch, old_arch) != 0;
    size_t old_len = strlen(old_arch);
    uint64_t n_kept = 0;
    for (uint64_t t = 0; t < n_tensors; t++)
        n_kept += !ts[t].drop;
    for (size_t e = 0; e < n_edits; e++) {
        edit_key(&edits[e], arch, key, sizeof key);
        bool found = false;
        for (uint64_t i = 0; i < n_kv; i++)
            found |= strcmp(keys[i], key) == 0;
        if (!found && edits[e].type != GE_REMOVE)
            count++;
        if (found && edits[e].type == GE_REMOVE)
            count--;
    }
    put_u32(&o, magic);
    put_u32(&o, version);
    put_u64(&o, n_kept);
    put_u64(&o, count);
    for (uint64_t i = 0; i < n_kv; i++) {
        const struct gguf_edit *hit = NULL;
        for (size_t e = 0; e < n_edits; e++) {
            edit_key(&edits[e], arch, key, sizeof key);
            if (strcmp(keys[i], key) == 0) {
                hit = &edits[e];
                used[e] = true;
            }
        }
        bool moved = rename && strncmp(keys[i], old_arch, old_len) == 0 &&
                     keys[i][old_len] == '.';
        if (!hit && moved) {
            snprintf(key, sizeof key, "%s%s", arch, keys[i] + old_len);
            put_str(&o, key);
            put(&o, in + k_type[i], k_end[i] - k_type[i]);
        } else if (!hit) {
            put(&o, in + k_start[i], k_end[i] - k_start[i]);
        } else if (hit->type != GE_REMOVE) {
            put_edit(&o, hit, keys[i]);
        }
    }
    for (size_t e = 0; e < n_edits; e++) {
        if (used[e] || edits[e].type == GE_REMOVE)
            continue;
        edit_key(&edits[e], arch, key, sizeof key);
        put_edit(&o, &edits[e], key);
    }
    free(used);
    if (n_tensors) {
        put_tensors(&o, in, ts, n_tensors, new_align);
        if (put_data(&o, in, n_in, ts, old_off, n_tensors, data, new_align))
            goto done;
    }
    if (o.oom)
        goto done;
    *out_p = o.p;
    *n_out = o.n;
    o.p = NULL;
    rc = 0;
done:
    for (uint64_t i = 0; keys && i < n_kv; i++)
        free(keys[i]);
    free(keys);
    free(k_start);
    free(k_end);
    free(k_type);
    free(ts);
    free(old_off);
    free(o.p);
    return rc;
}

int gguf_rewrite(const char *src, const char *dst, const struct gguf_edit *edits, size_t n_edits)
{
    struct gguf_edits e = {.kv = edits, .n_kv = n_edits};
    return gguf_rewrite_file(src, dst, &e);
}

int gguf_rewrite_file(const char *src, const char *dst, const struct gguf_edits *ex)
{
    FILE *f = fopen(src, "rb");
    if (!f) {
        perror(src);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *in = malloc(n > 0 ? (size_t)n : 1);
    if (!in || fread(in, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(in);
        fprintf(stderr, "%s: cannot read\n", src);
        return -1;
    }
    fclose(f);
    unsigned char *out;
    size_t n_out;
    int rc = gguf_rewrite_ex(in, (size_t)n, ex, &out, &n_out);
    free(in);
    if (rc) {
        fprintf(stderr, "%s: not a GGUF file this editor can walk\n", src);
        return -1;
    }
    FILE *g = fopen(dst, "wb");
    if (!g || fwrite(out, 1, n_out, g) != n_out) {
        perror(dst);
        if (g)
            fclose(g);
        free(out);
        return -1;
    }
    fclose(g);
    free(out);
    return 0;
}

void synth_vocab_reset(struct synth_vocab *v)
{
    for (int i = 0; i < SYNTH_N_VOCAB; i++) {
        static const char *const special[] = {"<unk>", "<s>", "</s>"};
        if (i < 3)
            snprintf(v->buf[i], sizeof v->buf[i], "%s", special[i]);
        else if (i < 259)
            snprintf(v->buf[i], sizeof v->buf[i], "<0x%02X>", i - 3);
        else
            snprintf(v->buf[i], sizeof v->buf[i], "w%d", i);
        v->tok[i] = v->buf[i];
        v->len[i] = strlen(v->tok[i]);
        v->types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
}
