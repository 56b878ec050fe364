/*
 * worker/child.c — a worker process: one model file loaded with the llama
 * backend, serving the requests its daemon (worker/parent.c) passes it
 * (orch_worker_main).
 *
 * DESIGN
 * The daemon starts `exe __worker LEVEL FORMAT` with the control socket
 * on fd 3, the CPU budget's shared memory on fd 4 (or none), the watch
 * page on fd 5, and stderr a pipe the daemon reads (log lines, and
 * llama.cpp's last words when it aborts). The main thread reads the
 * control socket: a load, then request sockets, each served by a thread of
 * its own so that the model's batching engine sees requests side by side
 * as it does in process. The end of the control socket (the daemon freed
 * the model, or died) ends the process at once: no lease is out then, and
 * nothing here outlives its daemon.
 */
#include "../backend.h"
#include "../cpu.h"
#include "../watch.h"
#include "wire.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define CTL_FD   3
#define CPU_FD   4
#define WATCH_FD 5

static const orch_backend *g_inner;
static void *g_model; /* the loaded model, set once before any request */

/* ---- requests ------------------------------------------------------------------- */

struct sink {
    int fd;
    bool gone; /* the daemon half-closed: the request is cancelled */
    int n_pieces;
    struct wire_out *batch; /* batched: pieces kept for the done frame */
    int32_t max_tokens;     /* batched: the daemon's limit, applied here */
};

#ifdef ORCH_TESTING
/* The suite's hang: with $ORCH_TEST_WORKER_HANG naming a file that exists,
 * the worker removes it and wedges as in an endless decode (marked in the
 * watch page) after a request's third piece. */
static void test_hang(int n_pieces)
{
    const char *flag = getenv("ORCH_TEST_WORKER_HANG");
    if (n_pieces != 3 || !flag || !*flag || unlink(flag) != 0)
        return;
    orch__watch_begin();
    for (;;)
        pause();
}
#else
#define test_hang(n) ((void)(n))
#endif

/* The daemon half-closed the request socket (a cancel), or it broke. */
static bool daemon_left(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* gone() for a batched request: the engine asks between tokens. */
static bool sink_gone(void *ud)
{
    struct sink *s = ud;
    if (!s->gone && daemon_left(s->fd))
        s->gone = true;
    return s->gone;
}

static bool emit_piece(void *ud, const char *piece, size_t len)
{
    struct sink *s = ud;
    test_hang(++s->n_pieces);
    if (s->gone)
        return false;
    if (s->batch) { /* nobody reads pieces one by one: saves a wakeup a token */
        if (sink_gone(s)) /* (a context of its own emits as it goes) */
            return false;
        uint32_t n = (uint32_t)len;
        if (!wire_put(s->batch, &n, sizeof n) || !wire_put(s->batch, piece, len))
            return false;
        return s->n_pieces < s->max_tokens;
    }
    struct wire_out o;
    wire_begin(&o, W_PIECE);
    wire_put(&o, piece, len);
    if (wire_send(s->fd, &o) != 0) {
        s->gone = true;
        return false;
    }
    /* a cancel is the daemon's half-close: the socket reads its end */
    return !sink_gone(s);
}

static void send_done(int fd, struct wire_done *d, const orch_error *err, const void *tail,
                      size_t n)
{
    struct wire_out o;
    wire_begin(&o, W_DONE);
    wire_put(&o, d, sizeof *d);
    if (d->rc)
        wire_put_str(&o, err->msg);
    else
        wire_put(&o, tail, n);
    wire_send(fd, &o);
}

static void serve_gen(int fd, struct wire_in *in)
{
    struct wire_gen g;
    struct wire_done d = {0};
    orch_error err = {0};
    if (!wire_get(in, &g, sizeof g)) {
        d.rc = orch__err(&err, ORCH_EINVAL, "worker: a short generate request");
        send_done(fd, &d, &err, NULL, 0);
        return;
    }
    int32_t *prefix = NULL;
    if (g.n_prefix) {
        size_t bytes = (size_t)g.n_prefix * sizeof *prefix;
        if (g.n_prefix > ORCH_N_CTX_MAX || bytes > in->left || !(prefix = malloc(bytes))) {
            d.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad context");
            send_done(fd, &d, &err, NULL, 0);
            return;
        }
        memcpy(prefix, in->p, bytes);
        in->p += bytes;
        in->left -= bytes;
    }
    char *constraint = NULL;
    if (g.constraint_len) {
        if (g.constraint_len > in->left || !(constraint = strndup(in->p, g.constraint_len))) {
            d.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad constraint");
            send_done(fd, &d, &err, NULL, 0);
            free(prefix);
            return;
        }
        in->p += g.constraint_len;
        in->left -= g.constraint_len;
    }
    char *suffix = NULL;
    if (g.has_suffix) {
        if (g.suffix_len > in->left || !(suffix = strndup(in->p, g.suffix_len))) {
            d.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad suffix");
            send_done(fd, &d, &err, NULL, 0);
            free(constraint);
            free(prefix);
            return;
        }
        in->p += g.suffix_len;
        in->left -= g.suffix_len;
    }
    g.params.suffix = NULL; /* a pointer of the parent's; the text is in suffix */
    char *prompt = malloc(in->left + 1);
    if (!prompt) {
        free(suffix);
        free(constraint);
        free(prefix);
        d.rc = orch__err(&err, ORCH_ENOMEM, "worker: out of memory for the prompt");
        send_done(fd, &d, &err, NULL, 0);
        return;
    }
    memcpy(prompt, in->p, in->left);
    prompt[in->left] = 0;
    struct sink s = {.fd = fd, .max_tokens = g.params.max_tokens};
    struct wire_out out;
    wire_begin(&out, W_DONE);
    wire_put(&out, &d, sizeof d); /* its place; filled in below */
    if (g.batch)
        s.batch = &out;
    struct orch__gen_req req = {.prompt = prompt,
                                .parse_special = g.parse_special,
                                .constraint = constraint,
                                .params = &g.params,
                                .n_ctx = g.n_ctx,
                                .n_threads = g.n_threads,
                                .n_batch = g.n_batch,
                                .emit = emit_piece,
                                .sink = &s,
                                .quiet = g.batch,
                                .gone = g.batch ? sink_gone : NULL,
                                .prefix = prefix,
                                .n_prefix = (int32_t)g.n_prefix,
                                .suffix = suffix,
                                .want_tokens = g.want_tokens != 0};
    d.rc = g_inner->ops->generate(g_model, &req, &err);
    if (d.rc == ORCH_OK && req.tokens_failed)
        d.rc = orch__err(&err, ORCH_ENOMEM, "worker: out of memory keeping the tokens");
    d.n_tokens = (int64_t)req.n_tokens;
    size_t tok_bytes = req.n_tokens * sizeof *req.tokens;
    d.n_prompt = req.n_prompt;
    d.n_generated = req.n_generated;
    d.n_cached = req.n_cached;
    d.eos = req.eos;
    d.ctx_full = req.ctx_full;
    d.prompt_ms = req.prompt_ms;
    d.gen_ms = req.gen_ms;
    if (g.batch && d.rc == ORCH_OK && out.b.data) {
        memcpy(out.b.data + 5, &d, sizeof d); /* after the frame's length and type */
        if (tok_bytes)
            wire_put(&out, req.tokens, tok_bytes); /* after the pieces */
        wire_send(fd, &out);
    } else {
        orch__buf_free(&out.b);
        send_done(fd, &d, &err, req.tokens, tok_bytes);
    }
    free(req.tokens);
    free(prefix);
    free(prompt);
    free(constraint);
    free(suffix);
}

/* n NUL-terminated copies of the strings in `in`, in one block. */
static char **get_strings(struct wire_in *in, uint32_t n)
{
    struct wire_in scan = *in;
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (!wire_get_str(&scan, &s, &len))
            return NULL;
        bytes += len + 1;
    }
    char **v = malloc(n * sizeof *v + bytes + 1);
    if (!v)
        return NULL;
    char *at = (char *)(v + n);
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        wire_get_str(in, &s, &len);
        memcpy(at, s, len);
        at[len] = 0;
        v[i] = at;
        at += len + 1;
    }
    return v;
}

static void serve_embed(int fd, struct wire_in *in)
{
    struct wire_embed e;
    struct wire_done d = {0};
    orch_error err = {0};
    char **texts = NULL;
    if (!wire_get(in, &e, sizeof e) || !(texts = get_strings(in, e.n_texts))) {
        d.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad embedding request");
        send_done(fd, &d, &err, NULL, 0);
        return;
    }
    struct orch__embed_req req = {.texts = (const char *const *)texts,
                                  .n_texts = e.n_texts,
                                  .n_ctx = e.n_ctx,
                                  .n_threads = e.n_threads,
                                  .truncate = e.truncate != 0};
    d.rc = g_inner->ops->embed(g_model, &req, &err);
    d.n_embd = req.n_embd;
    d.n_tokens = req.n_tokens;
    send_done(fd, &d, &err, req.out,
              d.rc ? 0 : (size_t)e.n_texts * (size_t)req.n_embd * sizeof(float));
    free(req.out);
    free(texts);
}

/* The applied request as the done frame's nullable strings. */
static void send_applied(int fd, struct wire_done *d, const orch_error *err,
                         const struct orch__chat_applied *a)
{
    struct wire_out o;
    wire_begin(&o, W_DONE);
    d->has_text = d->rc == ORCH_OK;
    d->n_stops = d->rc == ORCH_OK ? (uint32_t)a->n_stops : 0;
    wire_put(&o, d, sizeof *d);
    if (d->rc) {
        wire_put_str(&o, err->msg);
    } else {
        wire_put_nstr(&o, a->prompt);
        wire_put_nstr(&o, a->constraint);
        wire_put_nstr(&o, a->parser);
        for (size_t i = 0; i < a->n_stops; i++)
            wire_put_nstr(&o, a->stops[i]);
    }
    wire_send(fd, &o);
}

static void serve_chat(int fd, struct wire_in *in)
{
    struct wire_chat c;
    struct wire_done d = {0};
    orch_error err = {0};
    struct orch__chat_applied a = {0};
    uint32_t *n_calls = NULL;
    struct orch_chat_message *m = NULL;
    struct orch_tool_call *calls = NULL;
    char **s = NULL;
    size_t total = 0;
    bool ok = wire_get(in, &c, sizeof c) && c.n_msgs > 0 && c.n_msgs < 1u << 20 &&
              (n_calls = calloc(c.n_msgs, sizeof *n_calls)) &&
              wire_get(in, n_calls, c.n_msgs * sizeof *n_calls);
    for (uint32_t i = 0; ok && i < c.n_msgs; i++)
        ok = (total += n_calls[i]) < 1u << 20;
    ok = ok && (m = calloc(c.n_msgs, sizeof *m)) && (calls = calloc(total + 1, sizeof *calls)) &&
         (s = wire_get_nstrs(in, WIRE_CHAT_STRS + 5 * (size_t)c.n_msgs + 3 * total));
    if (!ok) {
        d.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad chat request");
    } else {
        struct orch_chat_params cp = orch_chat_default_params();
        cp.tools = s[1];
        cp.tool_name = s[2];
        cp.json_schema = s[3];
        cp.grammar = s[4];
        cp.template_kwargs = s[5];
        cp.tool_choice = (enum orch_tool_choice)c.tool_choice;
        cp.reasoning = (enum orch_reasoning)c.reasoning;
        cp.parallel_tool_calls = c.parallel_tool_calls;
        char **at = s + WIRE_CHAT_STRS;
        struct orch_tool_call *call = calls;
        for (uint32_t i = 0; i < c.n_msgs; i++) {
            m[i] = (struct orch_chat_message){.role = at[0], .content = at[1],
                                              .tool_call_id = at[2], .name = at[3],
                                              .reasoning = at[4], .tool_calls = call,
                                              .n_tool_calls = n_calls[i]};
            at += 5;
            for (uint32_t k = 0; k < n_calls[i]; k++, call++, at += 3)
                *call = (struct orch_tool_call){.id = at[0], .name = at[1], .arguments = at[2]};
        }
        struct orch__chat_req req = {.msgs = m, .n_msgs = c.n_msgs,
                                     .add_assistant = c.add_assistant, .template_src = s[0],
                                     .params = &cp, .now = c.now};
        d.rc = g_inner->ops->chat_apply(g_model, &req, &a, &err);
    }
    send_applied(fd, &d, &err, &a);
    orch__chat_applied_clear(&a);
    free(s);
    free(calls);
    free(m);
    free(n_calls);
}

static void *request_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t type;
    char *payload;
    size_t len;
    /* one request after another, until the daemon closes the socket (or
     * half-closes it: a cancel, after which it is not used again) */
    while (wire_recv(fd, &type, &payload, &len, NULL) == 1) {
        struct wire_in in = {.p = payload, .left = len};
        bool known = true;
        if (type == W_GEN && g_inner->ops->generate)
            serve_gen(fd, &in);
        else if (type == W_EMBED && g_inner->ops->embed)
            serve_embed(fd, &in);
        else if (type == W_CHAT && g_inner->ops->chat_apply)
            serve_chat(fd, &in);
        else
            known = false;
        free(payload);
        if (!known)
            break;
    }
    close(fd);
    return NULL;
}

/* ---- the control socket --------------------------------------------------------- */

static bool send_progress(void *ctl, float fraction)
{
    (void)ctl;
    struct wire_out o;
    wire_begin(&o, W_PROGRESS);
    wire_put(&o, &fraction, sizeof fraction);
    return wire_send(CTL_FD, &o) == 0;
}

static void do_load(struct wire_in *in)
{
    struct wire_load l;
    const char *path, *role;
    size_t np, nr;
    struct wire_loaded r = {0};
    orch_error err = {0};
    char *p = NULL, *ro = NULL;
    if (g_model || !wire_get(in, &l, sizeof l) || !wire_get_str(in, &path, &np) ||
        !wire_get_str(in, &role, &nr) || !(p = strndup(path, np)) || !(ro = strndup(role, nr))) {
        r.rc = orch__err(&err, ORCH_EINVAL, "worker: a bad load request");
    } else {
        struct orch__load_req req = {.path = p,
                                     .role = ro,
                                     .n_gpu_layers = l.n_gpu_layers,
                                     .n_ctx = l.n_ctx,
                                     .n_threads = l.n_threads,
                                     .n_batch = l.n_batch,
                                     .n_parallel = l.n_parallel,
                                     .stream_latency_ms = l.stream_latency_ms,
                                     .use_mmap = l.use_mmap,
                                     .use_mlock = l.use_mlock,
                                     .no_repack = l.no_repack,
                                     .vet = l.vet,
                                     .progress = send_progress};
        void *model = NULL;
        r.rc = g_inner->ops->load(g_inner, &req, &model, &err);
        if (r.rc == ORCH_OK) {
            g_model = model;
            r.size = g_inner->ops->size(model);
            g_inner->ops->info(model, &r.info);
        }
    }
    struct wire_out o;
    wire_begin(&o, W_LOADED);
    wire_put(&o, &r, sizeof r);
    if (r.rc)
        wire_put_str(&o, err.msg);
    wire_send(CTL_FD, &o);
    free(p);
    free(ro);
}

int orch_worker_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[1], "__worker") != 0) {
        fprintf(stderr, "%s: __worker is started by orchestra serve, not by hand\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int level = orch_log_level_from_string(argv[2]);
    if (level >= 0)
        orch_log_set_level((enum orch_log_level)level);
    if (!strcmp(argv[3], "json"))
        orch_log_set_format(ORCH_LOG_JSON);
    if (orch__cpu_attach(CPU_FD) != 0 && errno != EBADF)
        fprintf(stderr, "worker: cannot map the CPU budget: %s (a budget of its own)\n",
                strerror(errno));
    void *page = mmap(NULL, sizeof(struct orch__watch_page), PROT_READ | PROT_WRITE, MAP_SHARED,
                      WATCH_FD, 0);
    if (page != MAP_FAILED)
        orch__watch_attach(page);
    g_inner = orch__backend_pick(NULL); /* llama.cpp */
    if (g_inner->ops->setup)
        g_inner->ops->setup(g_inner); /* set up before the hello: a spare is ready */

    struct wire_out o;
    uint32_t magic = WIRE_MAGIC;
    wire_begin(&o, W_HELLO);
    wire_put(&o, &magic, sizeof magic);
    if (wire_send(CTL_FD, &o) != 0)
        return 1;
    for (;;) {
        uint8_t type;
        char *payload;
        size_t len;
        int passed;
        int rc = wire_recv(CTL_FD, &type, &payload, &len, &passed);
        if (rc <= 0)
            _exit(0); /* the daemon is done with this model, or gone */
        struct wire_in in = {.p = payload, .left = len};
        if (type == W_LOAD) {
            do_load(&in);
        } else if (type == W_REQUEST && passed >= 0) {
            pthread_t th;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            if (!g_model || pthread_create(&th, &a, request_main, (void *)(intptr_t)passed) != 0)
                close(passed); /* the daemon reads the end: an error there */
            pthread_attr_destroy(&a);
        } else if (passed >= 0) {
            close(passed);
        }
        free(payload);
    }
}
