/*
 * engine.c — continuous batching: every request on a loaded model shares
 * each llama_decode.
 *
 * DESIGN
 * An engine belongs to one loaded model and is made on its first request.
 * It owns one generation context of n_parallel sequences with n_ctx_seq KV
 * cells each (a stream per sequence: llama.cpp's kv_unified off), one
 * embedding context, and one scheduler thread, the only thread that touches
 * them.
 *
 * A request is a `struct eseq`: its prompt tokens and its sampler chain
 * (made by the caller), handed to the engine through a FIFO queue. Each
 * step the scheduler
 *   1. ends the requests whose callers stopped, set their cancel flag or
 *      say they are gone (cells stay for reuse),
 *   2. gives waiting requests free slots (a slot is a sequence id), the
 *      slot whose cells begin with the longest part of the prompt first,
 *      and drops that slot's cells past the shared part,
 *   3. builds one batch: the next token of every generating sequence, then
 *      chunks of the prompts still being read, oldest first, up to n_batch
 *      tokens in all (chunked prefill: a long prompt never stalls the
 *      streams for more than a step); while sequences generate, the prompt
 *      chunk is also sized so that the step takes at most the model's
 *      stream latency (prompt_room below),
 *   4. decodes it under the CPU budget, samples each sequence that has
 *      logits with its own chain, and posts the token to its request.
 * Requests join between steps; nothing waits for a batch to drain.
 *
 * Text is made on the caller's thread: the scheduler posts token ids to
 * the request and signals it; the caller turns them into pieces and feeds
 * the generic layer's sink (stop strings, streaming, the user's callback).
 * When the sink says stop, the caller marks the request cancelled and
 * returns at once; the scheduler ends it at its next step. A quiet request
 * (the sink reads nothing before the end) is woken once, when it is done,
 * and makes all its text then. The request is
 * reference counted (caller and scheduler), so whichever lets go last
 * frees it, and the caller's lease is back without waiting for a step.
 *
 * Embeddings go through the same thread: each step also packs up to
 * EMBED_PACK_TOKENS tokens of waiting texts, from every thread's request in
 * arrival order, into one decode of the embedding context.
 *
 * LOCKING
 * e->lock guards the queues, `stop`, and every request's shared fields
 * (tokens posted, done, cancelled, refs). The scheduler holds it to take
 * work and to post results, never while decoding. Slots, contexts and
 * batches are the scheduler thread's alone.
 */
#include "llama_int.h"

#include <stdlib.h>
#include <string.h>

struct eseq {
    /* set before submission, read-only after */
    llama_token *prompt;
    int32_t n_prompt;
    int32_t n_ctx;      /* this request's limit: at most the engine's n_ctx_seq */
    int32_t max_tokens;
    bool no_cache;
    bool quiet;                 /* the caller is woken at the end only */
    const int32_t *cancel;      /* the caller's flag (may be NULL), read each step */
    bool (*gone)(void *sink);   /* may be NULL: asked each step */
    void *sink;
    struct orch__lm_smpl *smpl; /* samples on the scheduler only; its kept
                                   tokens are read by the caller too */
    int64_t t_submit;
    /* guarded by the engine's lock */
    pthread_cond_t cond;   /* the caller waits on it */
    llama_token *out;      /* tokens sampled, not yet taken by the caller */
    int32_t n_out, cap_out;
    bool done, eos, ctx_full, cancelled;
    int refs;
    orch_error err;        /* err.code != 0: failed */
    int32_t n_cached;      /* prompt tokens reused from the slot's cells */
    int64_t t_prompt_done; /* 0 until the prompt is read */
    struct eseq *next;
};

struct seq_slot {
    llama_seq_id id;
    struct eseq *q;      /* the request on it; NULL = idle */
    llama_token *cache;  /* the tokens in its cells, by position */
    int32_t n_cache;
    llama_token next;    /* sampled, decoded in the next step */
    bool generating;     /* prompt read: decoding one token per step */
    int32_t n_sampled;
    uint64_t order;      /* admission (prefill order), or last use when idle */
    /* this step */
    bool wait;           /* an older sequence reads the same prompt: copy it after */
    int32_t n_added;     /* tokens in the batch */
    int32_t i_logits;    /* batch index to sample from; -1 = none */
    llama_token sampled;
    int sample_rc;       /* constrained sampling failed (message in sample_err) */
    orch_error sample_err;
};

struct ejob {
    llama_token *const *toks;
    const int32_t *n_toks;
    size_t n_texts;
    uint32_t n_ctx;
    float *out;
    int32_t n_embd;
    /* guarded by the engine's lock */
    size_t next_text;    /* first text not yet packed */
    size_t n_done;
    bool done;
    orch_error err;
    pthread_cond_t cond;
    struct ejob *next;
};

struct engine {
    struct lmodel *lm;
    pthread_mutex_t lock;
    pthread_cond_t cond;          /* the scheduler sleeps on it */
    struct eseq *qhead, *qtail;   /* guarded by lock: waiting for a slot */
    struct ejob *jhead, *jtail;   /* guarded by lock: texts still to pack */
    bool stop;                    /* guarded by lock */
    int n_active;                 /* guarded by lock: slots with a request */
    pthread_t thread;
    /* the scheduler thread's */
    struct llama_context *ctx;
    struct llama_batch batch;
    int32_t batch_cap;
    struct seq_slot *slots;
    struct seq_slot **prefill;        /* n_slots, for sorting */
    int n_slots;
    uint64_t clock;
    struct llama_context *ectx;
    uint32_t ectx_n;
    struct llama_batch ebatch;
    struct orch__cpu_hold cpu;   /* CPU tokens kept between steps */
    /* step times, for sizing prompt chunks beside generating sequences */
    double gen_ns;               /* a step of generating sequences alone (EWMA) */
    double tok_ns;               /* what a prompt token adds to a step (EWMA) */
};

#define STEP_EWMA 0.5 /* a prompt token costs more as its position grows: follow it */
#define STREAM_CHUNK_MIN 16 /* prompt tokens a step reads at least: a long prompt
                               always moves */

/* Prompt tokens this step may read beside n_gen generating sequences: the
 * rest of the batch, or, while sequences generate, what keeps the step
 * within the model's stream latency (stream_latency_ms, 0 =
 * ORCH_STREAM_LATENCY_MS), from the step times measured so far. */
static int32_t prompt_room(const struct engine *e, int32_t n_gen)
{
    int32_t room = e->batch_cap - n_gen;
    int32_t ms = e->lm->stream_latency_ms ? e->lm->stream_latency_ms : ORCH_STREAM_LATENCY_MS;
    if (n_gen == 0 || ms < 0 || e->gen_ns <= 0 || e->tok_ns <= 0)
        return room;
    double target = ms * 1e6;
    double k = (target - e->gen_ns) / e->tok_ns;
    if (k < STREAM_CHUNK_MIN)
        k = STREAM_CHUNK_MIN;
    return k < room ? (int32_t)k : room;
}

/* Learns from a step of n_gen generating tokens and n_prompt prompt ones
 * that took ns. */
static void step_timed(struct engine *e, int32_t n_gen, int32_t n_prompt, int64_t ns)
{
    if (n_prompt == 0) {
        e->gen_ns = e->gen_ns > 0 ? e->gen_ns + STEP_EWMA * ((double)ns - e->gen_ns) : (double)ns;
        return;
    }
    double add = n_gen && e->gen_ns > 0 ? (double)ns - e->gen_ns : (double)ns;
    if (add < (double)ns / 4)
        add = (double)ns / 4; /* a noisy step: not cheaper than a quarter of it */
    double per = add / n_prompt;
    e->tok_ns = e->tok_ns > 0 ? e->tok_ns + STEP_EWMA * (per - e->tok_ns) : per;
}

static void seq_unref(struct eseq *q)
{
    /* with the engine's lock held; frees when the last holder lets go */
    if (--q->refs > 0)
        return;
    orch__lm_smpl_free(q->smpl);
    free(q->prompt);
    free(q->out);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* Ends the request on slot s (lock held). */
static void slot_finish(struct engine *e, struct seq_slot *s)
{
    struct eseq *q = s->q;
    q->done = true;
    pthread_cond_signal(&q->cond);
    seq_unref(q);
    s->q = NULL;
    s->generating = false;
    s->order = ++e->clock;
    e->n_active--;
}

static void slot_fail(struct engine *e, struct seq_slot *s, int code, const char *msg)
{
    orch__err(&s->q->err, code, "%s", msg);
    slot_finish(e, s);
}

/* Forgets a slot's cells (after a failed decode their content is unknown). */
static void slot_clear_cells(struct engine *e, struct seq_slot *s)
{
    llama_memory_seq_rm(llama_get_memory(e->ctx), s->id, -1, -1);
    s->n_cache = 0;
}

/* ---- the generation context ---------------------------------------------------- */

static int make_gen_ctx(struct engine *e, orch_error *err)
{
    struct lmodel *lm = e->lm;
    int64_t cells = (int64_t)lm->n_parallel * lm->n_ctx_seq;
    if (cells > ORCH_N_CTX_MAX)
        return orch__err(err, ORCH_ECTX,
                         "%d sequences of %d tokens make %lld cells, more than %d; lower "
                         "n_parallel or n_ctx",
                         lm->n_parallel, lm->n_ctx_seq, (long long)cells, ORCH_N_CTX_MAX);
    e->batch_cap = lm->n_batch > lm->n_parallel ? lm->n_batch : lm->n_parallel;
    e->ctx = orch__lm_ctx_new(lm, (uint32_t)cells, (uint32_t)e->batch_cap,
                              (uint32_t)lm->n_parallel, false, lm->n_threads, err);
    if (!e->ctx)
        return err->code;
    e->batch = llama_batch_init(e->batch_cap, 0, 1);
    e->slots = calloc((size_t)lm->n_parallel, sizeof *e->slots);
    e->prefill = malloc((size_t)lm->n_parallel * sizeof *e->prefill);
    for (int i = 0; e->slots && i < lm->n_parallel; i++) {
        e->slots[i].id = i;
        e->slots[i].cache = malloc((size_t)lm->n_ctx_seq * sizeof(llama_token));
        if (!e->slots[i].cache) {
            for (int j = 0; j < i; j++)
                free(e->slots[j].cache);
            free(e->slots);
            e->slots = NULL;
            break;
        }
    }
    if (!e->slots || !e->prefill || !e->batch.token) {
        for (int i = 0; e->slots && i < lm->n_parallel; i++)
            free(e->slots[i].cache);
        free(e->slots);
        free(e->prefill);
        e->slots = NULL;
        e->prefill = NULL;
        llama_batch_free(e->batch);
        memset(&e->batch, 0, sizeof e->batch);
        llama_free(e->ctx);
        e->ctx = NULL;
        return orch__err(err, ORCH_ENOMEM, "out of memory making the batch engine");
    }
    e->n_slots = lm->n_parallel;
    return ORCH_OK;
}

static int32_t common_prefix(const llama_token *a, int32_t na, const llama_token *b, int32_t nb)
{
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Puts q on the best idle slot (lock held; one is idle). */
static void seat(struct engine *e, struct eseq *q)
{
    struct seq_slot *best = NULL;
    int32_t best_len = -1;
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *s = &e->slots[i];
        if (s->q)
            continue;
        int32_t len =
            q->no_cache ? 0 : common_prefix(s->cache, s->n_cache, q->prompt, q->n_prompt);
        if (len > best_len || (len == best_len && s->order < best->order)) {
            best = s;
            best_len = len;
        }
    }
    /* keep the shared cells, but read at least the last prompt token again:
     * its logits start the generation */
    int32_t keep = best_len < q->n_prompt - 1 ? best_len : q->n_prompt - 1;
    if (keep < best->n_cache &&
        !llama_memory_seq_rm(llama_get_memory(e->ctx), best->id, keep, -1)) {
        /* this model's memory cannot drop a tail (recurrent): start over */
        llama_memory_seq_rm(llama_get_memory(e->ctx), best->id, -1, -1);
        keep = 0;
    }
    best->n_cache = keep;
    best->q = q;
    best->generating = false;
    best->n_sampled = 0;
    best->order = ++e->clock;
    q->n_cached = keep;
    e->n_active++;
}

/* ---- one generation step ---------------------------------------------------------- */

/* Whether copying a sequence's cells beats reading `gain` prompt tokens
 * again: llama.cpp copies a whole stream between sequences (n_ctx_seq
 * cells of K and V, at most 4 bytes per layer and embedding value each),
 * where reading costs about two operations per weight and token; memory
 * moves about five times faster than a CPU computes. Sliding-window models
 * are never copied: their early cells may be gone. */
static bool worth_copying(const struct engine *e, int32_t gain)
{
    const struct lmodel *lm = e->lm;
    if (gain <= 0 || llama_model_n_swa(lm->model) > 0)
        return false;
    double stream = (double)lm->n_ctx_seq * 4.0 * lm->info.n_layer * lm->info.n_embd;
    return (double)gain * (double)lm->info.n_params >= 5.0 * stream;
}

/* A prompt another sequence holds or is reading: s takes that sequence's
 * cells instead of reading them again (the n > 1 of one request, or the
 * same prompt from several clients). Marks s to wait a step while an older
 * sequence reads the part they share. Scheduler thread. */
static void share_prompt(struct engine *e, struct seq_slot *s, struct seq_slot **older,
                         int n_older)
{
    struct eseq *q = s->q;
    s->wait = false;
    int32_t most = q->n_prompt - 1; /* the last token is read: its logits start it */
    if (q->no_cache || s->n_cache >= most)
        return;
    struct seq_slot *src = NULL;
    int32_t best = s->n_cache;
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *t = &e->slots[i];
        if (t == s || !t->n_cache)
            continue;
        int32_t c = common_prefix(t->cache, t->n_cache, q->prompt, q->n_prompt);
        if (c > best) {
            best = c;
            src = t;
        }
    }
    int32_t keep = best < most ? best : most;
    if (src && worth_copying(e, keep - s->n_cache)) {
        llama_memory_t mem = llama_get_memory(e->ctx);
        llama_memory_seq_cp(mem, src->id, s->id, -1, -1); /* a whole stream */
        /* a memory that did not copy (llama.cpp skips caches that share
         * cells across layers) or cannot drop a tail: read it after all */
        if (llama_memory_seq_pos_max(mem, s->id) < keep - 1 ||
            !llama_memory_seq_rm(mem, s->id, keep, -1)) {
            llama_memory_seq_rm(mem, s->id, -1, -1);
            s->n_cache = q->n_cached = 0;
            return;
        }
        memcpy(s->cache, src->cache, (size_t)keep * sizeof *s->cache);
        s->n_cache = keep;
        q->n_cached = keep;
        return;
    }
    for (int i = 0; i < n_older; i++) {
        struct eseq *o = older[i]->q;
        int32_t c = common_prefix(o->prompt, o->n_prompt, q->prompt, q->n_prompt);
        if (c > older[i]->n_cache && worth_copying(e, (c < most ? c : most) - s->n_cache)) {
            s->wait = true; /* it reads them now; they are copied when it has */
            return;
        }
    }
}

static int by_order(const void *a, const void *b)
{
    const struct seq_slot *x = *(struct seq_slot *const *)a, *y = *(struct seq_slot *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Builds and decodes one batch, then samples and posts (takes the lock to
 * post). Called without the lock. */
static void gen_step(struct engine *e)
{
    struct seq_slot **prefill = e->prefill;
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    int n_prefill = 0;
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *s = &e->slots[i];
        s->n_added = 0;
        s->i_logits = -1;
        if (!s->q)
            continue;
        if (s->generating) {
            s->i_logits = b->n_tokens;
            orch__lm_batch_add(b, s->next, s->n_cache, s->id, true);
            s->n_added = 1;
        } else {
            prefill[n_prefill++] = s;
        }
    }
    qsort(prefill, (size_t)n_prefill, sizeof *prefill, by_order);
    for (int i = 0; i < n_prefill; i++)
        share_prompt(e, prefill[i], prefill, i);
    int32_t n_gen = b->n_tokens, upto = n_gen + prompt_room(e, n_gen);
    for (int i = 0; i < n_prefill && b->n_tokens < upto; i++) {
        struct seq_slot *s = prefill[i];
        struct eseq *q = s->q;
        if (s->wait)
            continue;
        int32_t left = q->n_prompt - s->n_cache;
        int32_t k = left < upto - b->n_tokens ? left : upto - b->n_tokens;
        for (int32_t j = 0; j < k; j++) {
            int32_t pos = s->n_cache + j;
            bool last = pos == q->n_prompt - 1;
            if (last)
                s->i_logits = b->n_tokens;
            orch__lm_batch_add(b, q->prompt[pos], pos, s->id, last);
        }
        s->n_added = k;
    }
    if (b->n_tokens == 0)
        return;

    int64_t t0 = orch__now_ns();
    int d = orch__lm_decode_held(e->lm, &e->cpu, e->ctx, *b, e->lm->n_threads);
    step_timed(e, n_gen, b->n_tokens - n_gen, orch__now_ns() - t0);
    if (d != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "llama_decode failed on a batch of %d tokens (code %d)",
                 b->n_tokens, d);
        pthread_mutex_lock(&e->lock);
        for (int i = 0; i < e->n_slots; i++) {
            struct seq_slot *s = &e->slots[i];
            if (s->q && s->n_added) {
                slot_clear_cells(e, s);
                slot_fail(e, s, ORCH_EDECODE, msg);
            }
        }
        pthread_mutex_unlock(&e->lock);
        return;
    }
    /* the cells now hold what was added */
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *s = &e->slots[i];
        if (!s->n_added)
            continue;
        if (s->generating)
            s->cache[s->n_cache] = s->next;
        else
            memcpy(s->cache + s->n_cache, s->q->prompt + s->n_cache,
                   (size_t)s->n_added * sizeof(llama_token));
        s->n_cache += s->n_added;
    }
    /* sample outside the lock (each chain is this request's alone) */
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *s = &e->slots[i];
        if (s->i_logits >= 0)
            s->sample_rc = orch__lm_smpl_sample(e->lm, s->q->smpl, e->ctx, s->i_logits,
                                                &s->sampled, &s->sample_err);
    }
    int64_t now = orch__now_ns();
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n_slots; i++) {
        struct seq_slot *s = &e->slots[i];
        if (s->i_logits < 0)
            continue;
        struct eseq *q = s->q;
        if (!s->generating)
            q->t_prompt_done = now;
        if (q->cancelled) {
            slot_finish(e, s);
            continue;
        }
        if (s->sample_rc) {
            s->sample_rc = 0;
            slot_fail(e, s, ORCH_EDECODE, s->sample_err.msg);
            continue;
        }
        llama_token tok = s->sampled;
        if (llama_vocab_is_eog(e->lm->vocab, tok)) {
            q->eos = true;
            slot_finish(e, s);
            continue;
        }
        if (q->n_out == q->cap_out) {
            int32_t cap = q->cap_out ? q->cap_out * 2 : 16;
            llama_token *o = realloc(q->out, (size_t)cap * sizeof *o);
            if (!o) {
                slot_fail(e, s, ORCH_ENOMEM, "out of memory posting a token");
                continue;
            }
            q->out = o;
            q->cap_out = cap;
        }
        q->out[q->n_out++] = tok;
        if (!q->quiet)
            pthread_cond_signal(&q->cond);
        s->n_sampled++;
        if (s->n_sampled >= q->max_tokens) {
            slot_finish(e, s);
        } else if (s->n_cache >= q->n_ctx) {
            q->ctx_full = true;
            slot_finish(e, s);
        } else {
            s->next = tok;
            s->generating = true;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

/* ---- one embedding step ------------------------------------------------------------ */

struct packed {
    struct ejob *job;
    size_t text;
};

/* Packs waiting texts, decodes them together, writes their vectors. Called
 * without the lock; takes it to pack and to post. */
static void embed_step(struct engine *e)
{
    struct packed pk[EMBED_SEQ_MAX];
    int n = 0;
    int32_t n_tok = 0;
    uint32_t n_ctx = 0;
    pthread_mutex_lock(&e->lock);
    struct ejob *j = e->jhead;
    if (j)
        n_ctx = j->n_ctx;
    while (j && j->n_ctx == n_ctx) {
        int32_t len = j->n_toks[j->next_text];
        if (!orch__lm_embed_fits(n, n_tok, len, n_ctx))
            break;
        pk[n++] = (struct packed){j, j->next_text};
        n_tok += len;
        if (++j->next_text == j->n_texts) {
            /* every text of j is packed: it leaves the queue */
            e->jhead = j->next;
            if (!e->jhead)
                e->jtail = NULL;
            j = e->jhead;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (!n)
        return;

    orch_error err = {0};
    if (e->ectx && e->ectx_n != n_ctx) {
        llama_free(e->ectx);
        llama_batch_free(e->ebatch);
        e->ectx = NULL;
    }
    if (!e->ectx) {
        orch__lm_cpu_release(e->lm, &e->cpu); /* making a context takes a while */
        e->ectx = orch__lm_ctx_new(e->lm, n_ctx, n_ctx, EMBED_SEQ_MAX, true,
                                   e->lm->n_threads, &err);
        if (e->ectx) {
            e->ectx_n = n_ctx;
            e->ebatch = llama_batch_init((int32_t)n_ctx, 0, 1);
        }
    }
    if (e->ectx) {
        struct llama_batch *b = &e->ebatch;
        float *dst[EMBED_SEQ_MAX];
        size_t ids[EMBED_SEQ_MAX];
        b->n_tokens = 0;
        for (int i = 0; i < n; i++) {
            const struct ejob *job = pk[i].job;
            for (int32_t k = 0; k < job->n_toks[pk[i].text]; k++)
                orch__lm_batch_add(b, job->toks[pk[i].text][k], k, i, true);
            dst[i] = job->out + pk[i].text * (size_t)job->n_embd;
            ids[i] = pk[i].text;
        }
        orch__lm_embed_decode(e->lm, &e->cpu, e->ectx, *b, e->lm->n_threads, n, dst, ids,
                              pk[0].job->n_embd, &err);
    }
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < n; i++) {
        struct ejob *job = pk[i].job;
        if (job->done)
            continue;
        if (err.code) {
            job->err = err;
            if (job->next_text < job->n_texts) {
                /* still queued: take it out */
                struct ejob **pp = &e->jhead, *prev = NULL;
                while (*pp && *pp != job) {
                    prev = *pp;
                    pp = &(*pp)->next;
                }
                if (*pp) {
                    *pp = job->next;
                    if (e->jtail == job)
                        e->jtail = prev;
                }
            }
        } else if (++job->n_done < job->n_texts) {
            continue;
        }
        job->done = true;
        pthread_cond_signal(&job->cond);
    }
    pthread_mutex_unlock(&e->lock);
}

/* ---- the scheduler thread -------------------------------------------------------- */

/* The caller stopped, set its cancel flag, or says it is gone (lock held). */
static bool unwanted(struct eseq *q)
{
    if (!q->cancelled && ((q->cancel && __atomic_load_n(q->cancel, __ATOMIC_RELAXED)) ||
                          (q->gone && q->gone(q->sink))))
        q->cancelled = true;
    return q->cancelled;
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        if (!e->stop && !e->qhead && !e->jhead && e->n_active == 0 && e->cpu.n) {
            /* nothing to do: the CPUs go back before we sleep */
            pthread_mutex_unlock(&e->lock);
            orch__lm_cpu_release(e->lm, &e->cpu);
            pthread_mutex_lock(&e->lock);
            continue;
        }
        while (!e->stop && !e->qhead && !e->jhead && e->n_active == 0)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->stop)
            break;
        if (e->qhead && !e->ctx) {
            orch_error err = {0};
            pthread_mutex_unlock(&e->lock);
            orch__lm_cpu_release(e->lm, &e->cpu); /* making a context takes a while */
            int rc = make_gen_ctx(e, &err);
            pthread_mutex_lock(&e->lock);
            if (rc) {
                /* fail what waits; the next request tries again */
                while (e->qhead) {
                    struct eseq *q = e->qhead;
                    e->qhead = q->next;
                    q->err = err;
                    q->done = true;
                    pthread_cond_signal(&q->cond);
                    seq_unref(q);
                }
                e->qtail = NULL;
                continue;
            }
        }
        /* 1. requests whose callers stopped */
        for (int i = 0; i < e->n_slots; i++)
            if (e->slots[i].q && unwanted(e->slots[i].q))
                slot_finish(e, &e->slots[i]);
        /* 2. waiting requests onto free slots */
        while (e->qhead && e->n_active < e->n_slots) {
            struct eseq *q = e->qhead;
            e->qhead = q->next;
            if (!e->qhead)
                e->qtail = NULL;
            seat(e, q);
        }
        bool embed = e->jhead != NULL;
        bool gen = e->n_active > 0;
        pthread_mutex_unlock(&e->lock);
        if (embed)
            embed_step(e);
        if (gen)
            gen_step(e);
        pthread_mutex_lock(&e->lock);
    }
    /* stopping: no lease is out, so only requests whose callers have gone
     * can be left; end them all */
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].q)
            slot_fail(e, &e->slots[i], ORCH_ECLOSED, "the model was unloaded");
    while (e->qhead) {
        struct eseq *q = e->qhead;
        e->qhead = q->next;
        orch__err(&q->err, ORCH_ECLOSED, "the model was unloaded");
        q->done = true;
        pthread_cond_signal(&q->cond);
        seq_unref(q);
    }
    e->qtail = NULL;
    for (struct ejob *j = e->jhead; j; j = j->next) {
        orch__err(&j->err, ORCH_ECLOSED, "the model was unloaded");
        j->done = true;
        pthread_cond_signal(&j->cond);
    }
    e->jhead = e->jtail = NULL;
    pthread_mutex_unlock(&e->lock);
    orch__lm_cpu_release(e->lm, &e->cpu);
    return NULL;
}

static struct engine *engine_get(struct lmodel *lm, orch_error *err)
{
    pthread_mutex_lock(&lm->pool_lock);
    struct engine *e = lm->engine;
    if (!e && (e = calloc(1, sizeof *e))) {
        e->lm = lm;
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->cond, NULL);
        if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
            pthread_cond_destroy(&e->cond);
            pthread_mutex_destroy(&e->lock);
            free(e);
            e = NULL;
        } else {
            lm->engine = e;
        }
    }
    pthread_mutex_unlock(&lm->pool_lock);
    if (!e)
        orch__err(err, ORCH_ENOMEM, "could not start the batch engine's thread");
    return e;
}

void orch__engine_free(struct engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stop = true;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    for (int i = 0; i < e->n_slots; i++)
        free(e->slots[i].cache);
    free(e->slots);
    free(e->prefill);
    if (e->ctx) {
        llama_batch_free(e->batch);
        llama_free(e->ctx);
    }
    if (e->ectx) {
        llama_batch_free(e->ebatch);
        llama_free(e->ectx);
    }
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* ---- the callers' side --------------------------------------------------------------- */

int orch__engine_generate(struct lmodel *lm, struct orch__gen_req *req, llama_token *toks,
                          int32_t n_toks, struct orch__lm_smpl *smpl, orch_error *err)
{
    struct engine *e = engine_get(lm, err);
    struct eseq *q = e ? calloc(1, sizeof *q) : NULL;
    if (!q) {
        free(toks);
        orch__lm_smpl_free(smpl);
        return e ? orch__err(err, ORCH_ENOMEM, "out of memory submitting a request") : err->code;
    }
    q->prompt = toks;
    q->n_prompt = n_toks;
    q->n_ctx = req->n_ctx;
    q->max_tokens = req->params->max_tokens;
    q->no_cache = req->params->no_cache;
    q->quiet = req->quiet;
    q->cancel = req->params->cancel;
    q->gone = req->gone;
    q->sink = req->sink;
    q->smpl = smpl;
    q->t_submit = orch__now_ns();
    q->refs = 2;
    pthread_cond_init(&q->cond, NULL);

    llama_token *mine = NULL;
    int32_t cap = 0;
    bool stopped = false; /* the sink said stop, or we ran out of memory */
    int rc = ORCH_OK;
    pthread_mutex_lock(&e->lock);
    if (e->qtail)
        e->qtail->next = q;
    else
        e->qhead = q;
    e->qtail = q;
    pthread_cond_signal(&e->cond);
    for (;;) {
        while (q->n_out == 0 && !q->done)
            pthread_cond_wait(&q->cond, &e->lock);
        if (q->n_out == 0)
            break; /* done, and every token taken */
        /* take the posted tokens; make their text outside the lock */
        int32_t n = q->n_out;
        if (n > cap) {
            llama_token *m2 = realloc(mine, (size_t)n * sizeof *m2);
            if (!m2) {
                rc = orch__err(err, ORCH_ENOMEM, "out of memory taking tokens");
                stopped = true;
                break;
            }
            mine = m2;
            cap = n;
        }
        memcpy(mine, q->out, (size_t)n * sizeof *mine);
        q->n_out = 0;
        pthread_mutex_unlock(&e->lock);
        for (int32_t i = 0; i < n && !stopped; i++)
            stopped = !orch__lm_emit_token(lm, req, q->smpl, mine[i]);
        pthread_mutex_lock(&e->lock);
        if (stopped)
            break;
    }
    int64_t now = orch__now_ns();
    int64_t t_prompt = q->t_prompt_done ? q->t_prompt_done : now;
    req->prompt_ms = (double)(t_prompt - q->t_submit) / 1e6;
    req->gen_ms = (double)(now - t_prompt) / 1e6;
    req->n_cached = q->n_cached;
    if (!q->done) {
        q->cancelled = true; /* the scheduler ends it at its next step */
        pthread_cond_signal(&e->cond);
    } else if (!stopped && q->err.code) {
        *err = q->err;
        rc = err->code;
    } else if (!stopped) {
        req->eos = q->eos;
        req->ctx_full = q->ctx_full;
    }
    seq_unref(q);
    pthread_mutex_unlock(&e->lock);
    free(mine);
    return rc;
}

int orch__engine_embed(struct lmodel *lm, llama_token *const *toks, const int32_t *n_toks,
                       size_t n_texts, uint32_t n_ctx, float *out, int32_t n_embd,
                       orch_error *err)
{
    struct engine *e = engine_get(lm, err);
    if (!e)
        return err->code;
    struct ejob j = {.toks = toks, .n_toks = n_toks, .n_texts = n_texts, .n_ctx = n_ctx,
                     .out = out, .n_embd = n_embd};
    pthread_cond_init(&j.cond, NULL);
    pthread_mutex_lock(&e->lock);
    if (e->jtail)
        e->jtail->next = &j;
    else
        e->jhead = &j;
    e->jtail = &j;
    pthread_cond_signal(&e->cond);
    while (!j.done)
        pthread_cond_wait(&j.cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    pthread_cond_destroy(&j.cond);
    if (j.err.code) {
        *err = j.err;
        return err->code;
    }
    return ORCH_OK;
}
