/*
 * synth.c — writes synthetic Llama-architecture GGUF models with random
 * weights, for tests and benchmarks that need models of a given size.
 *
 * DESIGN
 * The shape is solved from the parameter target: a layer count by size
 * class, then the width d from 12·L·d² + 2·V·d ≈ n_params (attention 4d²,
 * SwiGLU feed-forward 3·d·(8d/3) per layer; embeddings and output 2·V·d),
 * rounded to whole 64-wide heads. The vocabulary is SentencePiece-style
 * ("llama"): <unk>, <s>, </s>, the 256 byte tokens, then letter pieces, so
 * any text tokenizes. Weights are uniform in ±1/sqrt(fan_in) from an
 * xorshift stream seeded by (seed, tensor index): the file is a function of
 * the parameters alone. The file is written to PATH.tmp and renamed, so a
 * reader never sees half a model; an existing PATH must be a regular file.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ALIGN 32
#define T_F32 0
#define T_F16 1
#define T_Q4_0 2 /* blocks of 32: an F16 scale, 16 bytes of 4-bit values */
#define Q4_BLOCK 32
#define Q4_BYTES 18

struct synth_params_solved {
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    bool f16;
};

struct tensor {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
    uint64_t offset;
    float scale; /* 0 = all ones (norms) */
};

struct orch_synth_params orch_synth_default_params(void)
{
    struct orch_synth_params p = {.n_params = 100000000ull, .seed = 1, .f16 = true,
                                  .n_ctx_train = ORCH_N_CTX_DEFAULT};
    return p;
}

static void solve(uint64_t target, struct synth_params_solved *s)
{
    s->n_vocab = target < 20000000ull ? 2048 : 32000;
    s->n_layer = target < 10000000ull     ? 4
                 : target < 300000000ull  ? 12
                 : target < 3000000000ull ? 22
                                          : 32;
    double L = s->n_layer, V = s->n_vocab, P = (double)target;
    double d = (-2 * V + sqrt(4 * V * V + 48 * L * P)) / (24 * L);
    uint32_t heads = (uint32_t)lround(d / 64.0);
    if (heads < 1)
        heads = 1;
    s->n_embd = heads * 64;
    s->n_head = heads;
    s->n_head_kv = heads;
    s->n_ff = (uint32_t)((8 * s->n_embd / 3 + 31) / 32 * 32);
}

/* ---- buffered writer ------------------------------------------------------ */

struct w {
    FILE *f;
    const char *path;
    uint64_t pos;
    int err;
};

static void put(struct w *w, const void *p, size_t n)
{
    if (w->err)
        return;
    if (fwrite(p, 1, n, w->f) != n)
        w->err = errno ? errno : EIO;
    w->pos += n;
}

static void put_u32(struct w *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(struct w *w, uint64_t v) { put(w, &v, 8); }
static void put_f32(struct w *w, float v) { put(w, &v, 4); }

static void put_str(struct w *w, const char *s)
{
    uint64_t n = strlen(s);
    put_u64(w, n);
    put(w, s, n);
}

static void put_pad(struct w *w)
{
    static const char zeros[ALIGN];
    size_t pad = (size_t)((ALIGN - w->pos % ALIGN) % ALIGN);
    put(w, zeros, pad);
}

static void kv_str(struct w *w, const char *k, const char *v)
{
    put_str(w, k);
    put_u32(w, 8);
    put_str(w, v);
}

static void kv_u32(struct w *w, const char *k, uint32_t v)
{
    put_str(w, k);
    put_u32(w, 4);
    put_u32(w, v);
}

static void kv_f32(struct w *w, const char *k, float v)
{
    put_str(w, k);
    put_u32(w, 6);
    put_f32(w, v);
}

static void kv_bool(struct w *w, const char *k, bool v)
{
    uint8_t b = v;
    put_str(w, k);
    put_u32(w, 7);
    put(w, &b, 1);
}

/* ---- vocabulary ------------------------------------------------------------ */

/* Token i's text into buf. */
static void token_text(uint32_t i, char *buf, size_t cap)
{
    static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz";
    if (i == 0) {
        snprintf(buf, cap, "<unk>");
    } else if (i == 1) {
        snprintf(buf, cap, "<s>");
    } else if (i == 2) {
        snprintf(buf, cap, "</s>");
    } else if (i < 259) {
        snprintf(buf, cap, "<0x%02X>", i - 3);
    } else {
        /* pieces: "▁x", "x", "▁xy", "xy", ... in order of letter frequency */
        uint32_t k = i - 259;
        bool space = (k % 2) == 0;
        k /= 2;
        char word[8];
        int n = 0;
        if (k < 26) {
            word[n++] = letters[k];
        } else if (k < 26 + 26 * 26) {
            k -= 26;
            word[n++] = letters[k / 26];
            word[n++] = letters[k % 26];
        } else {
            k -= 26 + 26 * 26;
            word[n++] = letters[(k / 676) % 26];
            word[n++] = letters[(k / 26) % 26];
            word[n++] = letters[k % 26];
            if (k >= 26 * 676) {
                word[n++] = letters[(k / 17576) % 26];
            }
        }
        word[n] = '\0';
        snprintf(buf, cap, "%s%s", space ? "\xE2\x96\x81" : "", word);
    }
}

static const char *const fim_text[3] = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"};

/* The vocabulary; with fim, its last three tokens are fim_text's. */
static void put_vocab(struct w *w, uint32_t n_vocab, bool fim)
{
    char buf[32];
    put_str(w, "tokenizer.ggml.tokens");
    put_u32(w, 9);
    put_u32(w, 8);
    put_u64(w, n_vocab);
    for (uint32_t i = 0; i < n_vocab; i++) {
        token_text(i, buf, sizeof buf);
        put_str(w, fim && i >= n_vocab - 3 ? fim_text[i - (n_vocab - 3)] : buf);
    }
    put_str(w, "tokenizer.ggml.scores");
    put_u32(w, 9);
    put_u32(w, 6);
    put_u64(w, n_vocab);
    for (uint32_t i = 0; i < n_vocab; i++)
        put_f32(w, i < 259 ? 0.0f : -(float)(i - 259) / 16.0f);
    put_str(w, "tokenizer.ggml.token_type");
    put_u32(w, 9);
    put_u32(w, 5);
    put_u64(w, n_vocab);
    for (uint32_t i = 0; i < n_vocab; i++)
        put_u32(w, i == 0 ? 2 : i < 3 || (fim && i >= n_vocab - 3) ? 3 : i < 259 ? 6 : 1);
}

/* ---- weights ----------------------------------------------------------------- */

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffff;
    if (exp <= 0)
        return (uint16_t)sign; /* tiny: flush to zero */
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
    if (mant & 0x1000)
        h++; /* round half up */
    return (uint16_t)h;
}

/* Q4_0 data of random values in [-scale, scale]: one scale a block, each
 * element (q - 8) * d with q a random nibble. */
static void put_q4_0(struct w *w, const struct tensor *t, uint64_t n, uint64_t s)
{
    uint16_t d = f32_to_f16(t->scale / 8.0f);
    unsigned char block[Q4_BYTES];
    memcpy(block, &d, 2);
    for (uint64_t i = 0; i < n / Q4_BLOCK && !w->err; i++) {
        for (int j = 0; j < 16; j += 8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            memcpy(block + 2 + j, &s, 8);
        }
        put(w, block, sizeof block);
    }
    put_pad(w);
}

static void put_tensor_data(struct w *w, const struct tensor *t, uint64_t seed)
{
    uint64_t n = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!s)
        s = 1;
    if (t->type == T_Q4_0) {
        put_q4_0(w, t, n, s);
        return;
    }
    enum { CHUNK = 1 << 16 };
    static _Thread_local union {
        float f[CHUNK];
        uint16_t h[CHUNK];
    } buf;
    for (uint64_t i = 0; i < n && !w->err; i += CHUNK) {
        size_t m = n - i < CHUNK ? (size_t)(n - i) : CHUNK;
        for (size_t j = 0; j < m; j++) {
            float v = 1.0f;
            if (t->scale != 0.0f) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                v = ((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * t->scale;
            }
            if (t->type == T_F16)
                buf.h[j] = f32_to_f16(v);
            else
                buf.f[j] = v;
        }
        put(w, t->type == T_F16 ? (void *)buf.h : (void *)buf.f, m * (t->type == T_F16 ? 2 : 4));
    }
    put_pad(w);
}

static uint64_t tensor_bytes(const struct tensor *t)
{
    uint64_t n = t->ne[0] * (t->n_dims > 1 ? t->ne[1] : 1);
    uint64_t b = t->type == T_Q4_0 ? n / Q4_BLOCK * Q4_BYTES : n * (t->type == T_F16 ? 2 : 4);
    return (b + ALIGN - 1) / ALIGN * ALIGN;
}

int orch_synth_model(const char *path, const struct orch_synth_params *params, orch_error *err)
{
    if (!path || !*path || !params)
        return orch__err(err, ORCH_EINVAL, "orch_synth_model: NULL argument");
    if (params->n_params < 100000ull || params->n_params > 200000000000ull)
        return orch__err(err, ORCH_EINVAL,
                         "'%s': n_params %llu is out of range (expected 100K..200B)", path,
                         (unsigned long long)params->n_params);
    if (params->n_ctx_train < 0 || params->n_ctx_train > ORCH_N_CTX_MAX)
        return orch__err(err, ORCH_EINVAL, "'%s': n_ctx_train %d is out of range", path,
                         params->n_ctx_train);
    /* the target: a new file, or a regular one to replace; never a device,
     * a FIFO, a directory or a symlink (rename would replace the link) —
     * checked before gigabytes are written */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return orch__err(err, S_ISDIR(st.st_mode) ? ORCH_EISDIR : ORCH_EINVAL,
                         "'%s' exists and is not a regular file; refusing to replace it", path);
    struct synth_params_solved s;
    solve(params->n_params, &s);
    s.f16 = params->f16;
    s.n_ctx = params->n_ctx_train ? (uint32_t)params->n_ctx_train : ORCH_N_CTX_DEFAULT;
    uint32_t mt = params->q4_0 ? T_Q4_0 : s.f16 ? T_F16 : T_F32;
    uint64_t d = s.n_embd, kvd = (uint64_t)s.n_head_kv * 64;

    size_t n_t = 3 + 9 * (size_t)s.n_layer;
    struct tensor *ts = calloc(n_t, sizeof *ts);
    if (!ts)
        return orch__err(err, ORCH_ENOMEM, "'%s': out of memory", path);
    size_t k = 0;
#define T2(nm, a, b, ty, sc)                                                                      \
    ts[k++] = (struct tensor){.n_dims = 2, .ne = {(a), (b)}, .type = (ty), .scale = (sc)},        \
    snprintf(ts[k - 1].name, 64, "%s", nm)
#define T1(nm, a)                                                                                 \
    ts[k++] = (struct tensor){.n_dims = 1, .ne = {(a), 1}, .type = T_F32, .scale = 0},            \
    snprintf(ts[k - 1].name, 64, "%s", nm)
    float sd = 1.0f / sqrtf((float)d), sf = 1.0f / sqrtf((float)s.n_ff);
    T2("token_embd.weight", d, s.n_vocab, mt, 1.0f);
    T1("output_norm.weight", d);
    T2("output.weight", d, s.n_vocab, mt, sd);
    for (uint32_t l = 0; l < s.n_layer; l++) {
        char nm[64];
#define NM(x) (snprintf(nm, sizeof nm, "blk.%u." x, l), nm)
        T1(NM("attn_norm.weight"), d);
        T2(NM("attn_q.weight"), d, d, mt, sd);
        T2(NM("attn_k.weight"), d, kvd, mt, sd);
        T2(NM("attn_v.weight"), d, kvd, mt, sd);
        T2(NM("attn_output.weight"), d, d, mt, sd);
        T1(NM("ffn_norm.weight"), d);
        T2(NM("ffn_gate.weight"), d, s.n_ff, mt, sd);
        T2(NM("ffn_up.weight"), d, s.n_ff, mt, sd);
        T2(NM("ffn_down.weight"), (uint64_t)s.n_ff, d, mt, sf);
#undef NM
    }
#undef T1
#undef T2
    uint64_t off = 0, n_total = 0;
    for (size_t i = 0; i < n_t; i++) {
        ts[i].offset = off;
        off += tensor_bytes(&ts[i]);
        n_total += ts[i].ne[0] * (ts[i].n_dims > 1 ? ts[i].ne[1] : 1);
    }

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(ts);
        return orch__err(err, ORCH_EINVAL, "path too long: '%s'", path);
    }
    struct w w = {.f = fopen(tmp, "wb"), .path = tmp};
    if (!w.f) {
        free(ts);
        return orch__err_errno(err, errno, "cannot create", tmp);
    }
    char name[64];
    snprintf(name, sizeof name, "orchestra-synth-%.0fM", (double)n_total / 1e6);

    put_u32(&w, 0x46554747u);
    put_u32(&w, 3);
    put_u64(&w, n_t);
    put_u64(&w, 21 + (params->chat_template ? 1 : 0) + (params->fim ? 3 : 0));
    kv_str(&w, "general.architecture", "llama");
    kv_str(&w, "general.name", name);
    kv_u32(&w, "general.file_type", params->q4_0 ? 2 : s.f16 ? 1 : 0); /* llama_ftype */
    kv_u32(&w, "llama.context_length", s.n_ctx);
    kv_u32(&w, "llama.embedding_length", s.n_embd);
    kv_u32(&w, "llama.block_count", s.n_layer);
    kv_u32(&w, "llama.feed_forward_length", s.n_ff);
    kv_u32(&w, "llama.attention.head_count", s.n_head);
    kv_u32(&w, "llama.attention.head_count_kv", s.n_head_kv);
    kv_u32(&w, "llama.rope.dimension_count", 64);
    kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_f32(&w, "llama.rope.freq_base", 10000.0f);
    kv_u32(&w, "llama.vocab_size", s.n_vocab);
    kv_str(&w, "tokenizer.ggml.model", "llama");
    put_vocab(&w, s.n_vocab, params->fim); /* 3 keys */
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(&w, "tokenizer.ggml.unknown_token_id", 0);
    kv_bool(&w, "tokenizer.ggml.add_bos_token", true);
    if (params->chat_template)
        kv_str(&w, "tokenizer.chat_template", params->chat_template);
    if (params->fim) {
        kv_u32(&w, "tokenizer.ggml.fim_pre_token_id", s.n_vocab - 3);
        kv_u32(&w, "tokenizer.ggml.fim_suf_token_id", s.n_vocab - 2);
        kv_u32(&w, "tokenizer.ggml.fim_mid_token_id", s.n_vocab - 1);
    }
    for (size_t i = 0; i < n_t; i++) {
        put_str(&w, ts[i].name);
        put_u32(&w, ts[i].n_dims);
        for (uint32_t dd = 0; dd < ts[i].n_dims; dd++)
            put_u64(&w, ts[i].ne[dd]);
        put_u32(&w, ts[i].type);
        put_u64(&w, ts[i].offset);
    }
    put_pad(&w);
    for (size_t i = 0; i < n_t && !w.err; i++)
        put_tensor_data(&w, &ts[i], (uint64_t)params->seed * 1000003ull + i);
    free(ts);
    if (fclose(w.f) != 0 && !w.err)
        w.err = errno ? errno : EIO;
    if (w.err) {
        remove(tmp);
        return orch__err_errno(err, w.err, "cannot write", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return orch__err_errno(err, e, "cannot rename into place", path);
    }
    orch__log(ORCH_LOG_INFO, "synth", "model_written", OF_S("path", path),
              OF_U("n_params", n_total), OF_U("n_embd", s.n_embd), OF_U("n_layer", s.n_layer),
              OF_U("n_vocab", s.n_vocab), OF_U("bytes", w.pos));
    return ORCH_OK;
}
