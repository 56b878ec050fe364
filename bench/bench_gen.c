/*
 * bench_gen.c — generation and embedding speed through the library against
 * bare llama.cpp loops on the same model, threads and batch.
 *
 * For each model (stories260K; a synthetic ~100M-parameter model, made in
 * the build folder when absent):
 *   - prompt tokens/s and generated tokens/s: a 128-token prompt then 128
 *     greedy tokens, through orch_model_generate() against a bare loop
 *     (llama_decode of the prompt in n_batch chunks, then sample + decode one
 *     token at a time) with its context made once outside the timing;
 *   - whole-request time of the same (the library's includes tokenizing,
 *     taking a pooled context and making the sampler);
 *   - embeddings/s for 256 short texts: one orch_model_embed() call against
 *     a bare loop that decodes one text at a time.
 * Runs are alternated and medians reported. Prints figures; asserts nothing.
 * usage: bench-gen [-t THREADS] [-ngl LAYERS] [MODEL.gguf ...]
 *   -ngl: layers offloaded to a GPU, the same on both sides (default 0)
 */
#include <orchestra.h>

#include "bench_synth.h"
#include "bench_util.h"

#include <llama.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define N_PROMPT_WORDS 128
#define N_GEN 128
#define REPS 7
#define N_EMB 256

static void quiet_log(enum ggml_log_level l, const char *t, void *u)
{
    (void)l;
    (void)t;
    (void)u;
}

struct bare {
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct llama_context *ctx;
    struct llama_context *ectx;
};

struct timing {
    double prompt_ms, gen_ms, total_ms;
    int n_prompt, n_gen;
};

static void bare_generate(struct bare *b, const char *prompt, int n_batch, struct timing *t)
{
    double t0 = bench_now_ms();
    llama_token toks[4096];
    int n = llama_tokenize(b->vocab, prompt, (int)strlen(prompt), toks, 4096, true, false);
    llama_memory_clear(llama_get_memory(b->ctx), true);
    struct llama_sampler *s = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(s, llama_sampler_init_greedy());
    double tp = bench_now_ms();
    for (int i = 0; i < n; i += n_batch) {
        int k = n - i < n_batch ? n - i : n_batch;
        if (llama_decode(b->ctx, llama_batch_get_one(toks + i, k))) {
            fprintf(stderr, "decode failed\n");
            exit(1);
        }
    }
    double tg = bench_now_ms();
    int gen = 0;
    char out[16384];
    size_t len = 0;
    for (; gen < N_GEN; gen++) {
        llama_token tok = llama_sampler_sample(s, b->ctx, -1);
        if (llama_vocab_is_eog(b->vocab, tok))
            break;
        char piece[256];
        int k = llama_token_to_piece(b->vocab, tok, piece, sizeof piece, 0, false);
        if (k > 0 && len + (size_t)k < sizeof out) {
            memcpy(out + len, piece, (size_t)k);
            len += (size_t)k;
        }
        if (llama_decode(b->ctx, llama_batch_get_one(&tok, 1))) {
            fprintf(stderr, "decode failed\n");
            exit(1);
        }
    }
    double te = bench_now_ms();
    llama_sampler_free(s);
    t->prompt_ms = tg - tp;
    t->gen_ms = te - tg;
    t->total_ms = te - t0;
    t->n_prompt = n;
    t->n_gen = gen;
}

static void lib_generate(orch_model *m, const char *prompt, int threads, struct timing *t)
{
    struct orch_gen_params p = orch_gen_default_params();
    p.temperature = 0;
    p.no_cache = true; /* the same prompt every run: read it each time, as the bare loop does */
    p.max_tokens = N_GEN;
    p.n_threads = threads;
    struct orch_gen_result res;
    orch_error err;
    double t0 = bench_now_ms();
    if (orch_model_generate(m, prompt, &p, &res, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    t->total_ms = bench_now_ms() - t0;
    t->prompt_ms = res.prompt_ms;
    t->gen_ms = res.gen_ms;
    t->n_prompt = res.n_prompt;
    t->n_gen = res.n_generated;
    orch_gen_result_clear(&res);
}

static double bare_embed(struct bare *b, const char *const *texts, int n, int n_embd, float *out)
{
    double t0 = bench_now_ms();
    struct llama_batch batch = llama_batch_init(512, 0, 1);
    for (int i = 0; i < n; i++) {
        llama_token toks[512];
        int k = llama_tokenize(b->vocab, texts[i], (int)strlen(texts[i]), toks, 512, true, false);
        batch.n_tokens = k;
        for (int j = 0; j < k; j++) {
            batch.token[j] = toks[j];
            batch.pos[j] = j;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = 1;
        }
        llama_memory_clear(llama_get_memory(b->ectx), true);
        if (llama_decode(b->ectx, batch)) {
            fprintf(stderr, "embed decode failed\n");
            exit(1);
        }
        const float *e = llama_get_embeddings_seq(b->ectx, 0);
        double norm = 0;
        for (int d = 0; d < n_embd; d++)
            norm += (double)e[d] * e[d];
        norm = sqrt(norm);
        for (int d = 0; d < n_embd; d++)
            out[(size_t)i * n_embd + d] = (float)(e[d] / norm);
    }
    llama_batch_free(batch);
    return bench_now_ms() - t0;
}

static void bench_model(const char *path, int threads, int ngl)
{
    orch_log_set_level(ORCH_LOG_OFF);
    struct orch_model_params mp = orch_model_default_params();
    mp.path = path;
    mp.n_threads = threads;
    mp.n_gpu_layers = ngl;
    mp.n_ctx = 512;
    mp.n_batch = 512;
    orch_model *m;
    orch_error err;
    if (orch_model_new(&mp, &m, &err) || orch_model_load(m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    llama_log_set(quiet_log, NULL);
    struct bare b;
    struct llama_model_params lmp = llama_model_default_params();
    lmp.n_gpu_layers = ngl; /* llama.cpp's default is every layer */
    b.model = llama_model_load_from_file(path, lmp);
    b.vocab = llama_model_get_vocab(b.model);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    b.ctx = llama_init_from_model(b.model, cp);
    cp.embeddings = true;
    cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    b.ectx = llama_init_from_model(b.model, cp);

    /* a prompt of about N_PROMPT_WORDS words */
    static const char *words[] = {"the", "little", "dog", "ran", "to", "a", "big", "tree", "and",
                                  "saw", "bird"};
    char prompt[8192] = "Once upon a time";
    for (int i = 0; i < N_PROMPT_WORDS - 4; i++) {
        strcat(prompt, " ");
        strcat(prompt, words[i % 11]);
    }

    double lp[REPS], lg[REPS], lt[REPS], bp[REPS], bg[REPS], bt[REPS];
    struct timing tl, tb;
    lib_generate(m, prompt, threads, &tl); /* warm-up both */
    bare_generate(&b, prompt, 512, &tb);
    for (int r = 0; r < REPS; r++) {
        lib_generate(m, prompt, threads, &tl);
        bare_generate(&b, prompt, 512, &tb);
        lp[r] = tl.n_prompt * 1e3 / tl.prompt_ms;
        lg[r] = tl.n_gen * 1e3 / tl.gen_ms;
        lt[r] = tl.total_ms;
        bp[r] = tb.n_prompt * 1e3 / tb.prompt_ms;
        bg[r] = tb.n_gen * 1e3 / tb.gen_ms;
        bt[r] = tb.total_ms;
    }
    if (tl.n_gen != tb.n_gen || tl.n_prompt != tb.n_prompt)
        printf("  (note: token counts differ: lib %d+%d, bare %d+%d)\n", tl.n_prompt, tl.n_gen,
               tb.n_prompt, tb.n_gen);
    double mlp = bench_median(lp, REPS), mlg = bench_median(lg, REPS),
           mlt = bench_median(lt, REPS);
    double mbp = bench_median(bp, REPS), mbg = bench_median(bg, REPS),
           mbt = bench_median(bt, REPS);

    /* embeddings */
    char *buf[N_EMB];
    const char *texts[N_EMB];
    for (int i = 0; i < N_EMB; i++) {
        buf[i] = malloc(64);
        snprintf(buf[i], 64, "a short text number %d about %s", i, words[i % 11]);
        texts[i] = buf[i];
    }
    int n_embd = llama_model_n_embd(b.model);
    float *bare_out = malloc(sizeof(float) * N_EMB * (size_t)n_embd);
    double le[REPS], be[REPS];
    struct orch_embed_params ep = orch_embed_default_params();
    ep.n_threads = threads;
    double maxdiff = 0;
    for (int r = -1; r < REPS; r++) {
        float *v;
        int32_t dim;
        double t0 = bench_now_ms();
        if (orch_model_embed(m, texts, N_EMB, &ep, &v, &dim, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        double tl_ms = bench_now_ms() - t0;
        double tb_ms = bare_embed(&b, texts, N_EMB, n_embd, bare_out);
        for (size_t i = 0; i < (size_t)N_EMB * (size_t)n_embd; i++)
            maxdiff = fmax(maxdiff, fabs((double)v[i] - bare_out[i]));
        free(v);
        if (r >= 0) {
            le[r] = N_EMB * 1e3 / tl_ms;
            be[r] = N_EMB * 1e3 / tb_ms;
        }
    }
    double mle = bench_median(le, REPS), mbe = bench_median(be, REPS);

    struct orch_model_info info;
    orch_model_info(m, &info, &err);
    printf("\n%s: %.1fM params, %d threads, %d GPU layers, n_batch 512, %d prompt + %d generated "
           "tokens\n",
           path, (double)info.n_params / 1e6, threads, ngl, tl.n_prompt, tl.n_gen);
    printf("  %-28s %12s %12s %8s\n", "", "library", "bare llama", "ratio");
    printf("  %-28s %12.0f %12.0f %8.3f\n", "prompt tokens/s", mlp, mbp, mlp / mbp);
    printf("  %-28s %12.0f %12.0f %8.3f\n", "generated tokens/s", mlg, mbg, mlg / mbg);
    printf("  %-28s %12.2f %12.2f %8.3f\n", "whole request ms (lower=better)", mlt, mbt,
           mbt / mlt);
    printf("  %-28s %12.0f %12.0f %8.3f   (max |diff| of vectors %.2g)\n",
           "embeddings/s (256 texts)", mle, mbe, mle / mbe, maxdiff);

    for (int i = 0; i < N_EMB; i++)
        free(buf[i]);
    free(bare_out);
    llama_free(b.ctx);
    llama_free(b.ectx);
    llama_model_free(b.model);
    orch_model_free(m);
}

int main(int argc, char **argv)
{
    int threads = 0, ngl = 0;
    const char *models[8];
    int n_models = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-ngl") && i + 1 < argc)
            ngl = atoi(argv[++i]);
        else if (n_models < 8)
            models[n_models++] = argv[i];
    }
    if (!n_models) {
        const char *story = getenv("ORCH_TEST_MODEL");
        if (!story)
            story = "../shared/models/stories260K.gguf";
        if (access(story, R_OK) == 0)
            models[n_models++] = story;
        static char synth[] = "build/bench/synth-100M.gguf";
        if (!bench_ensure_synth(synth, 100000000, 1))
            return 1;
        models[n_models++] = synth;
    }
    printf("machine: %ld CPUs\n", sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 0; i < n_models; i++) {
        /* tiny models run fastest on one thread; larger ones use every CPU */
        struct stat st;
        int t = threads ? threads
                        : (stat(models[i], &st) == 0 && st.st_size < 16 << 20
                               ? 1
                               : orch_default_n_threads());
        bench_model(models[i], t, ngl);
    }
    return 0;
}
