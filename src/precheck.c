/*
 * precheck.c — the model-file pre-check: what the pinned llama.cpp would
 * abort the process on (or spin on, or run out of stack or memory on),
 * recognised from the header before llama.cpp sees the file.
 *
 * DESIGN
 * Each rule is one that llama.cpp itself applies with GGML_ASSERT, GGML_ABORT
 * or an unchecked access, read from the pinned source (file and function in
 * the comment), not a guess at what is plausible: a valid file is never
 * refused for a value llama.cpp handles. Per-architecture graph assertions
 * come from src/arch_rules.h, generated from that source by
 * scripts/gen-arch-rules.py. Reads only the parsed header (gguf.c); no
 * allocation, no global state; thread-safe.
 *
 * The pre-check cannot know every graph of every architecture; what it
 * misses, vetting (vet.c) finds in a child process, and llama.cpp's
 * exceptions are caught in src/llama/glue.cpp.
 */
#include "internal.h"

#include "arch_rules.h"

#include <ggml.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_LAYERS 512   /* llama.cpp's LLAMA_MAX_LAYERS */
#define MAX_EXPERTS 1024 /* llama.cpp's LLAMA_MAX_EXPERTS */
#define MAX_WINDOW (INT64_C(1) << 24) /* tokens; 2^31-1 is a bad_alloc at context creation */

struct lcheck {
    const struct orch__gguf *g;
    const char *path;
    const char *arch;
    orch_error *err;
    char key[160];
};

/* The integer under "<arch>.<suffix>" (or the plain key when arch is NULL). */
static bool lc_int(struct lcheck *c, const char *suffix, int64_t *v)
{
    if (c->arch)
        snprintf(c->key, sizeof c->key, "%s.%s", c->arch, suffix);
    else
        snprintf(c->key, sizeof c->key, "%s", suffix);
    return orch__gguf_get_int(c->g, c->key, v);
}

/* A per-layer value: a scalar for every layer, or an array of n_layer
 * integers. Returns false when absent or not in a form llama.cpp reads
 * (it refuses those itself, without aborting). */
static bool lc_layers(struct lcheck *c, const char *suffix, int64_t n_layer, int64_t *out)
{
    int64_t v;
    if (lc_int(c, suffix, &v)) {
        for (int64_t i = 0; i < n_layer; i++)
            out[i] = v;
        return true;
    }
    uint64_t n;
    const int64_t *ints = orch__gguf_get_ints(c->g, c->key, &n);
    if (!ints || n != (uint64_t)n_layer)
        return false;
    memcpy(out, ints, (size_t)n_layer * sizeof *out);
    return true;
}

static int lc_fail(struct lcheck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lc_fail(struct lcheck *c, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return orch__err(c->err, ORCH_EFORMAT, "'%s': key '%s' %s", c->path, c->key, why);
}

static int64_t max_of(const int64_t *v, int64_t n)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}


/* ---- the vocabulary ------------------------------------------------------------ */

#define MAX_TOKEN_LEN 65536u   /* SentencePiece and BPE: far past any real vocabulary */
#define MAX_TOKEN_LEN_TRIE 4096u /* RWKV, T5: tries freed recursively, a level a byte */
#define MAX_TOKEN_LEN_WPM 256u   /* WordPiece tries every length at every position */
#define MAX_VOCAB_BYTES (UINT64_C(1) << 30) /* 20x a 256k-token BPE vocabulary */

/* What llama.cpp's vocabulary load sets per tokenizer model before reading
 * the keys (llama-vocab.cpp, llama_vocab::impl::load): default special ids
 * (-1: none) and whether tokenize adds them. WPM adds its start and
 * separator tokens unconditionally. */
struct tok_kind {
    const char *model;
    int32_t bos, eos, sep;
    bool add_bos, add_eos, wpm, trie;
};

static const struct tok_kind tok_kinds[] = {
    {"llama", 1, 2, -1, true, false, false, false},
    {"bert", 101, -1, 102, true, false, true, false},
    {"gpt2", 11, 11, -1, false, false, false, false},
    {"hybriddna", 11, 11, -1, false, false, false, false},
    {"whitespace", 11, 11, -1, false, false, false, false},
    {"gemma4", -1, -1, -1, true, false, false, false},
    {"t5", -1, 1, -1, false, true, false, true},
    {"rwkv", -1, -1, -1, false, false, false, true},
    {"plamo2", 1, 2, -1, false, false, false, false},
    {"test", -1, -1, -1, false, false, false, false},
};

/* BPE pre-tokenizers after which llama.cpp adds the start token whatever
 * the file says (gemma4's after the keys, the others before them). */
static bool pre_forces_bos(const char *pre, bool *after_keys)
{
    static const char *const before[] = {"llama3", "llama-v3", "llama-bpe", "falcon3",
                                         "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                                         "jina-v5-nano", "tekken", "chameleon"};
    *after_keys = pre && (strcmp(pre, "gemma4") == 0 ||
                          strcmp(pre, "granite-embed-multi-311m") == 0);
    for (size_t i = 0; pre && i < sizeof before / sizeof before[0]; i++)
        if (strcmp(pre, before[i]) == 0)
            return true;
    return *after_keys;
}

static const struct tok_kind *tok_kind_of(const char *model)
{
    for (size_t i = 0; model && i < sizeof tok_kinds / sizeof tok_kinds[0]; i++)
        if (strcmp(model, tok_kinds[i].model) == 0)
            return &tok_kinds[i];
    return NULL;
}

/* The id llama.cpp ends up with: a default outside the vocabulary is
 * dropped, a key inside it replaces the default, a key outside it is
 * ignored (llama-vocab.cpp, "special tokens"). */
static int64_t special_id(const struct orch__gguf *g, const char *name, int64_t def,
                          int64_t n_vocab)
{
    char key[64];
    int64_t v;
    snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", name);
    if (def >= n_vocab)
        def = -1;
    if (orch__gguf_get_int(g, key, &v) && v >= 0 && v < n_vocab && v <= UINT32_MAX)
        return v;
    return def;
}

static bool flag(const struct orch__gguf *g, const char *key, bool def)
{
    bool v; /* llama.cpp's get_key refuses another type itself */
    return orch__gguf_get_bool(g, key, &v) ? v : def;
}

static int check_vocab(struct lcheck *c)
{
    const struct orch__gguf *g = c->g;
    const struct orch__gguf_vocab *v = orch__gguf_vocab(g);
    c->arch = NULL;
    const char *model = orch__gguf_get_str(g, "tokenizer.ggml.model");
    snprintf(c->key, sizeof c->key, "tokenizer.ggml.model");
    if (model && (strcmp(model, "none") == 0 || strcmp(model, "no_vocab") == 0))
        return lc_fail(c, "is '%s': the model has no vocabulary to tokenize a prompt with "
                          "(llama.cpp aborts on the first tokenize)", model);
    const struct tok_kind *k = tok_kind_of(model);
    if (!k || v->n_tokens < 0)
        return ORCH_OK; /* llama.cpp refuses an unknown model or a missing list itself */
    snprintf(c->key, sizeof c->key, "tokenizer.ggml.tokens");
    if (v->nul_at >= 0)
        return lc_fail(c, "has a NUL byte in token %lld (llama.cpp cuts the text there, and "
                          "two tokens that differ after it abort the load)",
                       (long long)v->nul_at);
    if (v->dup_a >= 0)
        return lc_fail(c, "has tokens %lld and %lld with the same text (llama.cpp asserts "
                          "that every text is one token)",
                       (long long)v->dup_a, (long long)v->dup_b);
    uint64_t max_len = k->wpm ? MAX_TOKEN_LEN_WPM : k->trie ? MAX_TOKEN_LEN_TRIE : MAX_TOKEN_LEN;
    if (v->max_len > max_len)
        return lc_fail(c, "has token %lld of %llu bytes; a %s vocabulary takes tokens up to "
                          "%llu bytes (%s)",
                       (long long)v->max_at, (unsigned long long)v->max_len, model,
                       (unsigned long long)max_len,
                       k->wpm    ? "WordPiece's tokenize is cubic in a token's length"
                       : k->trie ? "the trie is freed a level a byte, on the stack"
                                 : "past any real vocabulary");
    uint64_t mem = orch__gguf_vocab_bytes(g);
    if (mem > MAX_VOCAB_BYTES)
        return lc_fail(c, "has %lld tokens of %llu bytes: llama.cpp would spend about %llu MiB "
                          "on the vocabulary (limit %llu MiB)",
                       (long long)v->n_tokens, (unsigned long long)v->bytes,
                       (unsigned long long)(mem >> 20),
                       (unsigned long long)(MAX_VOCAB_BYTES >> 20));
    if (strcmp(model, "rwkv") == 0 && v->rwkv_lone >= 0)
        return lc_fail(c, "has tokens that begin with byte 0x%02x but no token of that byte "
                          "alone (RWKV's tokenize starts over, without end, on text that "
                          "has it)",
                       v->rwkv_lone);
    snprintf(c->key, sizeof c->key, "tokenizer.ggml.token_type");
    if (k->wpm && v->n_byte_type > 0)
        return lc_fail(c, "types %lld tokens as bytes in a WordPiece vocabulary (llama.cpp "
                          "aborts turning them into text)",
                       (long long)v->n_byte_type);
    if (v->bad_byte_at >= 0)
        return lc_fail(c, "types token %lld as a byte, but it is not spelled <0xXX>",
                       (long long)v->bad_byte_at);

    /* the special tokens tokenize adds must exist (llama-vocab.cpp asserts) */
    int64_t n = v->n_tokens;
    bool add_bos = k->add_bos, add_eos = k->add_eos, after = false;
    if (strcmp(model, "gpt2") == 0 || strcmp(model, "hybriddna") == 0 ||
        strcmp(model, "whitespace") == 0 || strcmp(model, "gemma4") == 0)
        add_bos = pre_forces_bos(orch__gguf_get_str(g, "tokenizer.ggml.pre"), &after) ||
                  strcmp(model, "gemma4") == 0;
    add_bos = flag(g, "tokenizer.ggml.add_bos_token", add_bos) || after ||
              strcmp(model, "gemma4") == 0;
    add_eos = flag(g, "tokenizer.ggml.add_eos_token", add_eos);
    struct {
        const char *name;
        int64_t def;
        bool added;
    } need[] = {{"bos", k->bos, add_bos || k->wpm},
                {"eos", k->eos, add_eos && !k->wpm},
                {"seperator", k->sep, k->wpm}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!need[i].added || special_id(g, need[i].name, need[i].def, n) >= 0)
            continue;
        int64_t id = -1;
        snprintf(c->key, sizeof c->key, "tokenizer.ggml.%s_token_id", need[i].name);
        if (orch__gguf_get_int(g, c->key, &id))
            return lc_fail(c, "is %lld, outside the vocabulary of %lld tokens, while the %s "
                              "token is to be added to every prompt",
                           (long long)id, (long long)n, need[i].name);
        return lc_fail(c, "is absent and the %s vocabulary's default%s is outside its %lld "
                          "tokens, while the token is to be added to every prompt",
                       model, need[i].def >= 0 ? "" : " (none)", (long long)n);
    }
    return ORCH_OK;
}

/* ---- floats ---------------------------------------------------------------------- */

/* Every float of the architecture is finite; epsilons are positive (the
 * norm ops assert eps >= 0 at the first decode, 59 of 63 architectures);
 * the rope base positive and the scaling factor not negative. */
static int check_floats(struct lcheck *c)
{
    uint64_t n_kv = 0;
    size_t al = strlen(c->arch);
    orch__gguf_key(c->g, 0, &n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        const char *key = orch__gguf_key(c->g, i, &n_kv);
        double d;
        if (!key || strncmp(key, c->arch, al) != 0 || key[al] != '.' ||
            !orch__gguf_get_float(c->g, key, &d))
            continue;
        snprintf(c->key, sizeof c->key, "%s", key);
        const char *tail = key + al + 1;
        if (!isfinite(d))
            return lc_fail(c, "is %g; llama.cpp's graph needs a finite value", d);
        if (strstr(tail, "epsilon") && !(d > 0))
            return lc_fail(c, "is %g; an epsilon must be positive (ggml asserts at the first "
                              "decode)", d);
        if (strcmp(tail, "rope.freq_base") == 0 && !(d > 0))
            return lc_fail(c, "is %g; the rotary base must be positive", d);
        if (strcmp(tail, "rope.scaling.factor") == 0 && d < 0)
            return lc_fail(c, "is %g; the rotary scaling factor must not be negative", d);
    }
    return ORCH_OK;
}

/* ---- tensor types ------------------------------------------------------------- */

static bool is_int_type(uint32_t t)
{
    return t == GGML_TYPE_I8 || t == GGML_TYPE_I16 || t == GGML_TYPE_I32 ||
           t == GGML_TYPE_I64 || t == GGML_TYPE_F64;
}

/* Which types the graph can use for a tensor: norms and rotary factors are
 * multiplied in as F32 (ggml asserts otherwise); matrix weights and
 * embeddings need a type with a dot product and a row reader (no integer
 * type, no F64, not Q8_1 or Q8_K, which are only activation formats); other
 * one-dimensional tensors (biases, scales) are added as floats. */
static int check_tensors(struct lcheck *c)
{
    uint64_t n;
    const struct orch__gguf_tensor *ts = orch__gguf_tensors(c->g, &n);
    for (uint64_t i = 0; i < n; i++) {
        const struct orch__gguf_tensor *t = &ts[i];
        const char *why = NULL;
        if (strstr(t->name, "norm") || strstr(t->name, "rope_freqs") ||
            strstr(t->name, "rope_factors")) {
            if (t->type != GGML_TYPE_F32)
                why = "a norm or rotary-factor tensor must be F32";
        } else if (is_int_type(t->type) || t->type == GGML_TYPE_Q8_1 ||
                   t->type == GGML_TYPE_Q8_K) {
            why = "the graph has no arithmetic on that type for a weight";
        } else if (t->n_dims == 1 && t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 &&
                   t->type != GGML_TYPE_BF16) {
            why = "a one-dimensional tensor must be F32, F16 or BF16";
        }
        if (why)
            return orch__err(c->err, ORCH_EFORMAT, "'%s': tensor '%s' has type %s; %s", c->path,
                             t->name, ggml_type_name((enum ggml_type)t->type), why);
    }
    return ORCH_OK;
}

static unsigned arch_flags(const char *arch)
{
    for (size_t i = 0; i < sizeof arch_rules / sizeof arch_rules[0]; i++)
        if (strcmp(arch_rules[i].name, arch) == 0)
            return arch_rules[i].flags;
    return 0;
}

/* ---- hyperparameters ------------------------------------------------------------ */

static int check_hparams(struct lcheck *cp)
{
    struct lcheck c = *cp;
    int64_t n_layer;
    if (!lc_int(&c, "block_count", &n_layer))
        return ORCH_OK; /* absent or not an integer: llama.cpp refuses it */
    if (n_layer < 1 || n_layer > MAX_LAYERS)
        return lc_fail(&c, "is %lld; llama.cpp accepts 1 to %d layers and aborts otherwise",
                       (long long)n_layer, MAX_LAYERS);
    int64_t v;
    if (lc_int(&c, "nextn_predict_layers", &v) && (v < 0 || v > n_layer))
        return lc_fail(&c, "is %lld; it must be from 0 to the block count %lld", (long long)v,
                       (long long)n_layer);
    if (lc_int(&c, "posnet.block_count", &v) && (v < 0 || v > n_layer))
        return lc_fail(&c, "is %lld; it must be from 0 to the block count %lld", (long long)v,
                       (long long)n_layer);
    if (lc_int(&c, "convnext.block_count", &v) && (v < 0 || v > n_layer))
        return lc_fail(&c, "is %lld; it must be from 0 to the block count %lld", (long long)v,
                       (long long)n_layer);

    /* experts (llama.cpp's load_hparams asserts each of these) */
    int64_t n_expert = 0, groups = 0, group_used = 0;
    int64_t used[MAX_LAYERS] = {0};
    if (lc_int(&c, "expert_count", &n_expert) && (n_expert < 0 || n_expert > MAX_EXPERTS))
        return lc_fail(&c, "is %lld; llama.cpp accepts 0 to %d experts and aborts otherwise",
                       (long long)n_expert, MAX_EXPERTS);
    lc_layers(&c, "expert_used_count", n_layer, used);
    int64_t used_max = max_of(used, n_layer);
    if (used_max > n_expert)
        return lc_fail(&c, "is %lld, more than the %lld experts", (long long)used_max,
                       (long long)n_expert);
    if (n_expert > 0 && used_max == 0)
        return lc_fail(&c, "is 0 (or absent) with %lld experts; llama.cpp aborts",
                       (long long)n_expert);
    if (lc_int(&c, "expert_group_count", &groups) &&
        (groups < 0 || (n_expert > 0 ? groups >= n_expert : groups != 0)))
        return lc_fail(&c, "is %lld; it must be below the expert count %lld", (long long)groups,
                       (long long)n_expert);
    if (groups > 1) {
        if (n_expert % groups)
            return lc_fail(&c, "is %lld, which does not divide the %lld experts",
                           (long long)groups, (long long)n_expert);
        if (!lc_int(&c, "expert_group_used_count", &group_used) || group_used < 1 ||
            group_used >= groups)
            return lc_fail(&c, "is %lld; it must be from 1 to the group count %lld minus one",
                           (long long)group_used, (long long)groups);
    }

    unsigned flags = arch_flags(c.arch);
    if (n_expert == 0 && (flags & (ARCH_NEEDS_EXPERTS | ARCH_EXPERTS_PAST_LEAD))) {
        int64_t lead = 0;
        snprintf(c.key, sizeof c.key, "%s.expert_count", c.arch);
        if ((flags & ARCH_NEEDS_EXPERTS) ||
            !lc_int(&c, "leading_dense_block_count", &lead) || lead < n_layer)
            return lc_fail(&c, "is 0 (or absent) in a %s model, whose %s layers are experts "
                               "only (llama.cpp asserts at load)",
                           cp->arch, (flags & ARCH_NEEDS_EXPERTS) ? "feed-forward" : "later");
    }

    /* rope scaling: a name llama.cpp does not know aborts */
    snprintf(c.key, sizeof c.key, "%s.rope.scaling.type", c.arch);
    const char *scaling = orch__gguf_get_str(c.g, c.key);
    if (scaling && strcmp(scaling, "none") != 0 && strcmp(scaling, "linear") != 0 &&
        strcmp(scaling, "yarn") != 0 && strcmp(scaling, "longrope") != 0)
        return lc_fail(&c, "is '%.40s'; llama.cpp knows none, linear, yarn and longrope",
                       scaling);

    /* attention shapes: heads divide the width, KV heads divide the heads,
     * rotary dimensions fit the head (ggml asserts on each in the graph) */
    int64_t n_head[MAX_LAYERS] = {0}, n_head_kv[MAX_LAYERS] = {0};
    if (!lc_layers(&c, "attention.head_count", n_layer, n_head))
        return ORCH_OK;
    if (!lc_layers(&c, "attention.head_count_kv", n_layer, n_head_kv))
        memcpy(n_head_kv, n_head, sizeof n_head);
    for (int64_t il = 0; il < n_layer; il++) {
        if (n_head[il] < 0 || n_head[il] > 65536) {
            lc_int(&c, "attention.head_count", &v);
            return lc_fail(&c, "is %lld at layer %lld; expected 0 to 65536", (long long)n_head[il],
                           (long long)il);
        }
        if (n_head_kv[il] < 0 || n_head_kv[il] > n_head[il] ||
            (n_head_kv[il] > 0 && n_head[il] % n_head_kv[il])) {
            lc_int(&c, "attention.head_count_kv", &v);
            return lc_fail(&c, "is %lld at layer %lld; it must divide the %lld attention heads",
                           (long long)n_head_kv[il], (long long)il, (long long)n_head[il]);
        }
    }
    /* the tensors and the graph take layer 0's key/value heads unless the
     * architecture reads them per layer; the KV cache is sized per layer */
    for (int64_t il = 1; il < n_layer && !(flags & ARCH_LAYER_HEADS); il++)
        if (n_head_kv[il] != n_head_kv[0] && n_head_kv[il] && n_head_kv[0]) {
            if (!lc_layers(&c, "attention.head_count_kv", n_layer, n_head_kv))
                lc_layers(&c, "attention.head_count", n_layer, n_head);
            return lc_fail(&c, "has %lld key/value heads at layer %lld and %lld at layer 0; "
                               "the %s graph takes one count for every layer",
                           (long long)n_head_kv[il], (long long)il, (long long)n_head_kv[0],
                           c.arch);
        }
    if (n_head[0] == 0)
        return ORCH_OK; /* no attention (recurrent models) */
    int64_t n_embd;
    if (!lc_int(&c, "embedding_length", &n_embd))
        return ORCH_OK;
    if (n_embd < 1 || n_embd > (INT64_C(1) << 24))
        return lc_fail(&c, "is %lld; expected 1 to %lld", (long long)n_embd,
                       (long long)(INT64_C(1) << 24));
    int64_t head_k = n_embd / n_head[0], head_v = head_k;
    if (lc_int(&c, "attention.key_length", &head_k) && (head_k < 1 || head_k > 65536))
        return lc_fail(&c, "is %lld; expected 1 to 65536", (long long)head_k);
    if (lc_int(&c, "attention.value_length", &head_v) && (head_v < 1 || head_v > 65536))
        return lc_fail(&c, "is %lld; expected 1 to 65536", (long long)head_v);
    if (head_k < 1) {
        lc_int(&c, "attention.head_count", &v);
        return lc_fail(&c, "is %lld, more than the embedding length %lld: no room for a head",
                       (long long)n_head[0], (long long)n_embd);
    }
    if ((flags & ARCH_KV_EQUAL) && head_k != head_v) {
        lc_int(&c, "attention.key_length", &v);
        return lc_fail(&c, "is %lld but the value length is %lld; the %s graph asserts they are "
                           "equal", (long long)head_k, (long long)head_v, c.arch);
    }
    int64_t n_rot = head_k;
    bool rot_given = lc_int(&c, "rope.dimension_count", &n_rot);
    if (rot_given && (n_rot < 0 || n_rot > head_k || n_rot % 2))
        return lc_fail(&c, "is %lld; it must be even and at most the head size %lld",
                       (long long)n_rot, (long long)head_k);
    if (rot_given && n_rot == 0 && !(flags & ARCH_NO_ROPE))
        return lc_fail(&c, "is 0 in a %s model, which uses rotary positions (the rope op "
                           "never ends on 0 dimensions)", c.arch);
    if ((flags & ARCH_ROT_HEAD) && n_rot != head_v) {
        lc_int(&c, "rope.dimension_count", &v);
        return lc_fail(&c, "is %lld but the head size is %lld; the %s graph asserts they are "
                           "equal", (long long)n_rot, (long long)head_v, c.arch);
    }
    int64_t head_k_swa = head_k;
    lc_int(&c, "attention.key_length_swa", &head_k_swa);
    if (lc_int(&c, "rope.dimension_count_swa", &v) &&
        (v < 0 || v % 2 || v > head_k_swa || (v == 0 && !(flags & ARCH_NO_ROPE))))
        return lc_fail(&c, "is %lld; it must be even, positive and at most the head size %lld",
                       (long long)v, (long long)head_k_swa);
    if (lc_int(&c, "attention.sliding_window", &v) && (v < 0 || v > MAX_WINDOW))
        return lc_fail(&c, "is %lld; expected 0 to %lld tokens", (long long)v,
                       (long long)MAX_WINDOW);
    if (lc_int(&c, "embedding_length_out", &v) && (v < 0 || v > n_embd))
        return lc_fail(&c, "is %lld, more than the embedding length %lld", (long long)v,
                       (long long)n_embd);
    return ORCH_OK;
}

int orch__gguf_check_loadable(const struct orch__gguf *g, const char *path, orch_error *err)
{
    struct lcheck c = {.g = g, .path = path, .err = err};
    const char *arch = orch__gguf_get_str(g, "general.architecture");
    if (!arch && orch__gguf_has(g, "general.architecture")) {
        /* llama.cpp refuses it too, but leaks the header it read */
        snprintf(c.key, sizeof c.key, "general.architecture");
        return lc_fail(&c, "is not a string");
    }
    if (!arch)
        return ORCH_OK; /* llama.cpp refuses the file itself */
    int rc = check_vocab(&c);
    c.arch = arch;
    if (rc == ORCH_OK)
        rc = check_floats(&c);
    if (rc == ORCH_OK)
        rc = check_tensors(&c);
    if (rc == ORCH_OK)
        rc = check_hparams(&c);
    return rc;
}
