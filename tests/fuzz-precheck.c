/*
 * fuzz-precheck.c — libFuzzer target for the model-file pre-check.
 *
 * The rule it checks: whatever the pre-check accepts runs in this process
 * without isolation, so llama.cpp must load it, make a context, tokenize
 * fuzzed text and decode several tokens at several positions without
 * ending the process (an abort, a segfault or an escaped exception is a
 * crash here; exceptions caught by src/llama/glue.cpp are errors, fine).
 * Inputs are structured: each 8-byte record is one edit of a small valid
 * model — a metadata key (integers, negative / NaN / huge floats, strings),
 * a tensor's type, a token's text (a duplicate, a NUL, a long one), a
 * special id, the tokenizer model, or the architecture (its keys renamed:
 * a consistent set) — and the bytes after a record with its top bit set
 * are the text to tokenize. It loads llama.cpp's CPU backend as the library
 * does and aborts when no device is found; at exit it prints how many
 * inputs reached a decode and fails when none did, so a run that never
 * reached llama.cpp cannot pass. Build: cmake -DORCH_FUZZ=ON with clang;
 * run: fuzz-precheck -runs=N -seed=1 (scripts/test.sh does).
 */
#include "gguf_edit.h"
#include "internal.h"
#include "llama/glue.h"
#include "llama/llama_int.h"

#include <ggml.h>
#include <llama.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char *g_base;
static unsigned long g_execs, g_accepted, g_loaded, g_decoded;

/* At exit: what the run reached. None decoded: the run proved nothing. */
static void report(void)
{
    fprintf(stderr,
            "fuzz: %lu inputs, %lu accepted by the pre-check, %lu loaded by llama.cpp, "
            "%lu decoded\n",
            g_execs, g_accepted, g_loaded, g_decoded);
    if (g_execs >= 100 && g_decoded == 0) {
        fprintf(stderr, "fuzz: no input reached a decode: the target is not exercising "
                        "llama.cpp\n");
        _exit(1);
    }
}
static size_t g_base_len;
static char g_path[256];

#define N_VOCAB SYNTH_N_VOCAB
static char g_long[70000];
static struct synth_vocab g_v;

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)level;
    (void)text;
    (void)ud;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    orch_log_set_level(ORCH_LOG_OFF);
    orch__lm_init(); /* the backends, found as the library finds them */
    llama_log_set(quiet, NULL);
    if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)) {
        fprintf(stderr,
                "fuzz: llama.cpp found no CPU device (%zu devices): this run could "
                "not reach llama.cpp\n",
                ggml_backend_dev_count());
        abort();
    }
    atexit(report);
    const char *tmp = getenv("TMPDIR");
    char base[256];
    snprintf(base, sizeof base, "%s/fuzz-base-%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(g_path, sizeof g_path, "%s/fuzz-case-%d.gguf", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    struct orch_synth_params sp = orch_synth_default_params();
    sp.n_params = 1000000;
    orch_error err;
    if (orch_synth_model(base, &sp, &err) != ORCH_OK) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
    FILE *f = fopen(base, "rb");
    fseek(f, 0, SEEK_END);
    g_base_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g_base = malloc(g_base_len);
    if (fread(g_base, 1, g_base_len, f) != g_base_len)
        abort();
    fclose(f);
    remove(base);
    for (size_t i = 0; i < sizeof g_long; i++)
        g_long[i] = (char)('a' + i % 26);
    return 0;
}

static const char *const keys[] = {
    "{arch}.block_count",
    "{arch}.context_length",
    "{arch}.embedding_length",
    "{arch}.feed_forward_length",
    "{arch}.attention.head_count",
    "{arch}.attention.head_count_kv",
    "{arch}.attention.key_length",
    "{arch}.attention.value_length",
    "{arch}.rope.dimension_count",
    "{arch}.rope.scaling.type",
    "{arch}.rope.freq_base",
    "{arch}.expert_count",
    "{arch}.expert_used_count",
    "{arch}.expert_group_count",
    "{arch}.expert_group_used_count",
    "{arch}.nextn_predict_layers",
    "{arch}.attention.layer_norm_rms_epsilon",
    "{arch}.vocab_size",
    "general.alignment",
    "general.architecture",
    "tokenizer.ggml.model",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "{arch}.pooling_type",
    "{arch}.attention.causal",
    "{arch}.attention.sliding_window",
    "{arch}.rope.scaling.factor",
    "{arch}.rope.scaling.original_context_length",
    "tokenizer.ggml.padding_token_id",
    "{arch}.expert_shared_count",
};
static const char *const strings[] = {"llama",  "none",   "linear",   "yarn",  "longrope",
                                      "bogus",  "gpt2",   "qwen2",    "gemma", "bert",
                                      "falcon", "mamba",  "",         "t5",    "rwkv",
                                      "llama3", "gemma4", "no_vocab", "plamo2"};
/* architectures to swap to (keys renamed) */
static const char *const archs[] = {
    "qwen2",     "qwen3",    "gemma",    "gemma2",   "gemma3",  "phi3",       "mistral3",
    "granite",   "olmo",     "stablelm", "gptneox",  "bert",    "nomic-bert", "starcoder2",
    "internlm2", "deepseek", "minicpm",  "exaone",   "cohere2", "smollm3",    "mamba",
    "rwkv6",     "t5",       "falcon",   "baichuan", "bloom"};
static const char *const float_keys[] = {"{arch}.attention.layer_norm_rms_epsilon",
                                         "{arch}.attention.layer_norm_epsilon",
                                         "{arch}.rope.freq_base",
                                         "{arch}.rope.scaling.factor",
                                         "{arch}.attn_logit_softcapping",
                                         "{arch}.final_logit_softcapping",
                                         "{arch}.attention.scale",
                                         "{arch}.logit_scale"};
static const float floats[] = {-1.0f, -1e-5f, 0.0f, 1e-30f,   1e-5f,     1.0f,
                               1e30f, 3e38f,  NAN,  INFINITY, -INFINITY, 10000.0f};
static const char *const tensor_names[] = {
    "output_norm.weight",  "*attn_norm.weight", "*ffn_norm.weight", "token_embd.weight",
    "output.weight",       "*attn_q.weight",    "*attn_k.weight",   "*attn_v.weight",
    "*attn_output.weight", "*ffn_up.weight",    "*ffn_gate.weight", "*ffn_down.weight",
    "blk.0.attn_q.weight"};
static const char *const special_keys[] = {
    "tokenizer.ggml.bos_token_id",     "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token",    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_sep_token",    "tokenizer.ggml.pre"};

/* the synthetic vocabulary (synth.c), rebuilt for token edits */
static void vocab_reset(void)
{
    synth_vocab_reset(&g_v);
}
static const int64_t smalls[] = {0,   1,    2,    3,    4,    5,     7,          8,         16,
                                 31,  32,   33,   64,   127,  128,   129,        256,       512,
                                 513, 1024, 1025, 2048, 4096, 65536, 1000000000, 0xFFFFFFFF};

#define N(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_EDITS = 8 };
    struct gguf_edit edits[MAX_EDITS + 2];
    struct gguf_tensor_edit tedits[MAX_EDITS];
    int64_t arrs[MAX_EDITS][4];
    size_t n = 0, nt = 0;
    bool vocab = false, rename = false;
    const char *text = "Once upon a time, # there was";
    size_t text_len = strlen(text);
    g_execs++;
    vocab_reset();
    for (size_t at = 0, rec = 0; at + 8 <= size && rec < MAX_EDITS; at += 8, rec++) {
        const uint8_t *r = data + at;
        if (r[0] & 0x80) { /* the rest is the text to tokenize */
            text = (const char *)r + 1;
            text_len = size - at - 1;
            break;
        }
        uint32_t v32;
        memcpy(&v32, r + 4, 4);
        int64_t v = (r[2] & 1) ? (int64_t)v32 : smalls[r[3] % N(smalls)];
        struct gguf_edit *e = &edits[n];
        memset(e, 0, sizeof *e);
        switch (r[0] % 8) {
        case 0:
        case 1: /* an integer, string, bool or array key */
            e->key = keys[r[1] % N(keys)];
            switch (r[1] / N(keys) % 6) {
            case 0:
                e->type = GE_U32;
                e->i = v;
                break;
            case 1:
                e->type = GE_I32;
                e->i = v;
                break;
            case 2:
                e->type = GE_BOOL;
                e->i = v & 1;
                break;
            case 3:
                e->type = GE_STR;
                e->s = strings[r[3] % N(strings)];
                break;
            case 4:
                e->type = GE_ARR;
                e->arr_type = GE_U32;
                for (int k = 0; k < 4; k++)
                    arrs[n][k] = smalls[(r[3] + r[4 + k]) % N(smalls)];
                e->arr = arrs[n];
                e->n_arr = 1 + r[2] % 4;
                break;
            default:
                e->type = GE_REMOVE;
                break;
            }
            n++;
            break;
        case 2: /* a float: negative, NaN, huge */
            e->key = float_keys[r[1] % N(float_keys)];
            e->type = GE_F32;
            e->f = (r[2] & 1) ? floats[r[3] % N(floats)] : (float)(int32_t)v32 / 65536.0f;
            n++;
            break;
        case 3: /* a tensor's type */
            tedits[nt++] = (struct gguf_tensor_edit){tensor_names[r[1] % N(tensor_names)],
                                                     r[2] % GGML_TYPE_COUNT, 0};
            break;
        case 4: { /* a token's text: a duplicate, a NUL inside, a long one, empty */
            int i = 3 + (int)(v32 % (N_VOCAB - 3)), j = 3 + (int)(r[3] * 7 % (N_VOCAB - 3));
            vocab = true;
            switch (r[1] % 4) {
            case 0:
                g_v.tok[i] = g_v.tok[j], g_v.len[i] = g_v.len[j];
                break;
            case 1:
                /* in its own buffer again (an earlier record may have pointed it
                 * at g_long, which has no NUL) */
                g_v.tok[i] = g_v.buf[i];
                g_v.buf[i][1] = '\0', g_v.len[i] = strnlen(g_v.buf[i] + 2, 13) + 2;
                break;
            case 2:
                g_v.tok[i] = g_long, g_v.len[i] = (size_t)(r[2] << 8 | r[3]) % sizeof g_long;
                break;
            default:
                g_v.len[i] = 0;
                break;
            }
            break;
        }
        case 5: /* a token's type */
            vocab = true;
            g_v.types[v32 % N_VOCAB] = r[1] % 8;
            break;
        case 6: /* a special id or flag */
            e->key = special_keys[r[1] % N(special_keys)];
            if (strstr(e->key, "add_"))
                e->type = GE_BOOL, e->i = r[2] & 1;
            else if (strstr(e->key, ".pre"))
                e->type = GE_STR, e->s = strings[r[3] % N(strings)];
            else if (r[2] & 2)
                e->type = GE_REMOVE;
            else
                e->type = GE_U32, e->i = v;
            n++;
            break;
        default: /* another architecture, its keys renamed */
            e->key = "general.architecture";
            e->type = GE_STR;
            e->s = archs[r[1] % N(archs)];
            rename = true;
            n++;
            break;
        }
    }
    if (vocab) {
        edits[n++] =
            (struct gguf_edit){"tokenizer.ggml.tokens", GE_ARR,
                               .arr_type = GE_STR,      .strs = (const char *const *)g_v.tok,
                               .lens = g_v.len,           .n_arr = N_VOCAB};
        edits[n++] = (struct gguf_edit){"tokenizer.ggml.token_type", GE_ARR, .arr_type = GE_I32,
                                        .arr = g_v.types, .n_arr = N_VOCAB};
    }
    unsigned char *file = NULL;
    size_t len = 0;
    struct gguf_edits ex = {.kv = edits, .n_kv = n, .t = tedits, .n_t = nt, .rename_arch = rename};
    if (gguf_rewrite_ex(g_base, g_base_len, &ex, &file, &len) != 0)
        return 0;
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(file, 1, len, f) != len)
        abort();
    fclose(f);
    free(file);

    orch_error err;
    struct orch__gguf *g;
    if (orch__gguf_open(g_path, &g, &err) != ORCH_OK)
        return 0;
    int rc = orch__gguf_check_loadable(g, g_path, &err);
    orch__gguf_close(g);
    if (rc != ORCH_OK)
        return 0;
    g_accepted++;
    /* accepted: it runs here, unisolated; llama.cpp must not end the process */
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *m;
    if (!orch__glue_model_load(g_path, mp, &m) || !m)
        return 0;
    g_loaded++;
    const struct llama_vocab *voc = llama_model_get_vocab(m);
    int32_t n_vocab = llama_vocab_n_tokens(voc);
    llama_token toks[512];
    int32_t nt_text = 0;
    if (text_len > 2000)
        text_len = 2000;
    for (int special = 0; special < 2; special++)
        if (!orch__glue_tokenize(voc, text, (int32_t)text_len, toks, 512, true, special, &nt_text))
            nt_text = 0;
    for (int32_t i = 0; i < nt_text && i < 512; i++) {
        char piece[64];
        int32_t np;
        for (int sp = 0; sp < 2; sp++) /* as text, and a format's marker as its text */
            orch__glue_token_to_piece(voc, toks[i], piece, sizeof piece, sp, &np);
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = cp.n_ubatch = 64;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx;
    if (orch__glue_ctx_new(m, cp, &ctx) && ctx && n_vocab > 0) {
        if (nt_text <= 0 || nt_text > 32) {
            toks[0] = 1 % n_vocab;
            nt_text = nt_text > 32 ? 32 : 1;
        }
        int32_t d;
        struct llama_batch b = llama_batch_init(64, 0, 1);
        for (int32_t i = 0; i < nt_text; i++)
            orch__lm_batch_add(&b, toks[i] % n_vocab, i, 0, i == nt_text - 1);
        orch__glue_decode(ctx, b, &d);
        for (int k = 0; k < 3; k++) { /* single tokens at the next positions */
            b.n_tokens = 0;
            orch__lm_batch_add(&b, (llama_token)((k * 31 + 2) % n_vocab), nt_text + k, 0, true);
            orch__glue_decode(ctx, b, &d);
        }
        llama_batch_free(b);
        g_decoded++;
        llama_free(ctx);
    }
    llama_model_free(m);
    return 0;
}
