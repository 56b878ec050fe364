/*
 * fuzz-precheck.c — libFuzzer target for the model-file pre-check.
 *
 * The rule it checks: whatever the pre-check accepts, llama.cpp must load,
 * make a context for and evaluate one token on without aborting the process
 * (an abort is a crash here). Inputs are structured: each 8-byte record
 * edits one metadata key of a small valid model (which key, which type,
 * which value), so the fuzzer explores the hyperparameters that llama.cpp
 * asserts on rather than tensor bytes; a record with its top bit set instead
 * overwrites raw header bytes. Build: cmake -DORCH_FUZZ=ON with clang; run:
 * fuzz-precheck -runs=N -seed=1 (scripts/test.sh does, for a bounded time).
 */
#include "gguf_edit.h"
#include "internal.h"

#include <llama.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char *g_base;
static size_t g_base_len;
static char g_path[256];

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
    llama_log_set(quiet, NULL);
    llama_backend_init();
    const char *dir = getenv("ORCH_GGML_BACKEND_DIR");
    if (dir && *dir)
        ggml_backend_load_all_from_path(dir);
    if (ggml_backend_dev_count() == 0)
        ggml_backend_load_all();
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
static const char *const strings[] = {"llama",  "none",  "linear", "yarn",  "longrope",
                                      "bogus",  "gpt2",  "qwen2",  "gemma", "bert",
                                      "falcon", "mamba", ""};
static const int64_t smalls[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 33, 64, 127, 128, 129, 256,
                                 512, 513, 1024, 1025, 2048, 4096, 65536, 1000000000, 0xFFFFFFFF};

#define N(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_EDITS = 8 };
    struct gguf_edit edits[MAX_EDITS];
    int64_t arrs[MAX_EDITS][4];
    size_t n = 0;
    unsigned char *file = NULL;
    size_t len = 0;
    const uint8_t *raw = NULL;
    size_t n_raw = 0;
    for (size_t at = 0; at + 8 <= size && n < MAX_EDITS; at += 8) {
        const uint8_t *r = data + at;
        if (r[0] & 0x80) { /* raw header bytes from here on */
            raw = r + 1;
            n_raw = size - at - 1;
            break;
        }
        struct gguf_edit *e = &edits[n];
        memset(e, 0, sizeof *e);
        e->key = keys[r[0] % N(keys)];
        uint32_t v32;
        memcpy(&v32, r + 4, 4);
        int64_t v = (r[2] & 1) ? (int64_t)v32 : smalls[r[3] % N(smalls)];
        switch (r[1] % 7) {
        case 0: e->type = GE_U32; e->i = v; break;
        case 1: e->type = GE_I32; e->i = v; break;
        case 2: e->type = GE_BOOL; e->i = v & 1; break;
        case 3: e->type = GE_STR; e->s = strings[r[3] % N(strings)]; break;
        case 4: e->type = GE_F32; e->f = (float)v / 16.0f; break;
        case 5:
            e->type = GE_ARR;
            e->arr_type = GE_U32;
            for (int k = 0; k < 4; k++)
                arrs[n][k] = smalls[(r[3] + r[4 + k]) % N(smalls)];
            e->arr = arrs[n];
            e->n_arr = 1 + r[2] % 4;
            break;
        default: e->type = GE_REMOVE; break;
        }
        n++;
    }
    if (gguf_rewrite_mem(g_base, g_base_len, edits, n, &file, &len) != 0)
        return 0;
    for (size_t i = 0; i + 1 < n_raw && i < 64; i += 2) /* (offset, byte) pairs in the header */
        file[raw[i] % (len < 256 ? len : 256)] = raw[i + 1];
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
    /* accepted: llama.cpp must not abort on it */
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *m = llama_model_load_from_file(g_path, mp);
    if (!m)
        return 0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_ubatch = 64;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    if (ctx) {
        llama_token t = 1;
        llama_decode(ctx, llama_batch_get_one(&t, 1));
        llama_free(ctx);
    }
    llama_model_free(m);
    return 0;
}
