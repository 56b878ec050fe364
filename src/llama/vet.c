/*
 * llama/vet.c — vetting a model file in a child process before it loads in
 * this one (orch__lm_vet).
 *
 * DESIGN
 * The pre-check (precheck.c) refuses what it can recognise from the header;
 * llama.cpp has more ways to die than a header reader can know (156
 * architectures' graphs). Vetting runs what a request will run — the load,
 * a context, tokenize, detokenize, decodes — in a forked child under a
 * memory limit (RLIMIT_AS; not in sanitizer builds, whose shadow memory
 * needs the address space) and a deadline (the parent kills it). A child
 * that exits 0 passed; one that dies (a signal: GGML_ASSERT's abort, a
 * segfault, a stack overflow), overruns the deadline or exits otherwise
 * fails the file, with the signal and the last line it wrote to stderr
 * (llama.cpp's assert text) as the cause. Verdicts are kept by file
 * identity (vetcache.c), so a file is vetted once until it changes.
 *
 * The child: fork() copies only the calling thread, so it touches nothing
 * another thread may have held locked — no orchestra lock, no log sink of
 * ours (llama.cpp's log goes straight to the pipe), one ggml thread, CPU
 * devices only (a GPU driver is not fork-safe), and _exit() at the end.
 * Probes: every byte value alone and together, '#', words of 2,000
 * letters and of 300 two-byte characters, the text of every special
 * token parsed as special, each token turned back into text, then a
 * prompt decoded and single tokens decoded after it, in a generation
 * context and in an embedding one; then the chat template parsed and
 * rendered with and without a tool (llama.cpp's Jinja engine).
 */
#include "glue.h"
#include "llama_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VET_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VET_SANITIZED 1
#endif
#endif

#define VET_TIMEOUT_S_DEFAULT 120
#define VET_TAIL 2048 /* bytes of the child's stderr kept for the cause */

/* ---- the child ------------------------------------------------------------------ */

static int g_err_fd = 2;

static void child_say(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(g_err_fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void child_log(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN)
        child_say(text);
}

/* Exit codes: 0 passed; VET_REFUSED llama.cpp refused the file or its
 * context by itself (the load in process gives the same error, with its
 * own words: not a vetting failure); VET_FAILED a probe failed. */
enum { VET_REFUSED = 4, VET_FAILED = 3 };

static _Noreturn void child_refused(void)
{
    _exit(VET_REFUSED);
}

static _Noreturn void child_fail(const char *what, const char *detail)
{
    child_say("\nvet: ");
    child_say(what);
    if (detail && *detail) {
        child_say(": ");
        child_say(detail);
    }
    child_say("\n");
    _exit(VET_FAILED);
}

static void child_tokenize(const struct llama_vocab *v, const char *text, size_t len,
                           bool special, llama_token *toks, int32_t cap)
{
    int32_t n;
    if (!orch__glue_tokenize(v, text, (int32_t)len, toks, cap, true, special, &n))
        child_fail("tokenize threw", orch__glue_what());
}

static void child_decode(struct llama_context *ctx, struct llama_batch b, const char *what)
{
    int32_t d;
    if (!orch__glue_decode(ctx, b, &d))
        child_fail(what, orch__glue_what());
    /* a refusal (d != 0) is llama.cpp's own error, not a death: the load in
     * process reports it the same way */
}

static void child_decode_run(struct llama_context *ctx, const llama_token *toks, int32_t n,
                             int32_t n_vocab)
{
    llama_memory_clear(llama_get_memory(ctx), true);
    struct llama_batch b = llama_batch_init(64, 0, 1);
    if (!b.token)
        child_fail("out of memory", NULL);
    int32_t pos = 0;
    for (int32_t i = 0; i < n && i < 48; i++)
        orch__lm_batch_add(&b, toks[i], pos++, 0, i == n - 1 || i == 47);
    child_decode(ctx, b, "decode threw on the prompt");
    /* a few tokens after it, one at a time, each at the next position */
    for (int k = 0; k < 4; k++) {
        b.n_tokens = 0;
        orch__lm_batch_add(&b, (llama_token)((k * 7919 + 3) % n_vocab), pos++, 0, true);
        child_decode(ctx, b, "decode threw after the prompt");
    }
    llama_batch_free(b);
}

static _Noreturn void child_main(const char *path, int err_fd, uint64_t mem_limit,
                                 int timeout_s)
{
    g_err_fd = err_fd;
    /* llama.cpp's assert text goes to stderr: into the pipe; the host's
     * signal handlers (a test runner's, a language runtime's) must not
     * catch the death and carry on as the host; no signal stays blocked
     * (the daemon blocks them in all but its signal thread) */
    dup2(err_fd, 2);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
    }
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CORE, &core);
#ifndef VET_SANITIZED
    /* the limit is on top of what the child inherited (the parent's
     * mappings, other models included) */
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    if (mem_limit && pages) {
        rlim_t lim = (rlim_t)(pages * (unsigned long long)sysconf(_SC_PAGESIZE) + mem_limit);
        struct rlimit as = {lim, lim};
        setrlimit(RLIMIT_AS, &as);
    }
#else
    (void)mem_limit;
#endif
    alarm((unsigned)timeout_s + 1);
    setenv("GGML_NO_BACKTRACE", "1", 1); /* ggml would attach gdb to print one */
    llama_log_set(child_log, NULL);

    ggml_backend_dev_t cpu[2] = {ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU), NULL};
    if (!cpu[0])
        child_fail("no CPU device", "llama.cpp found no CPU backend");
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.devices = cpu;
    struct llama_model *m;
    if (!orch__glue_model_load(path, mp, &m))
        child_fail("load threw", orch__glue_what());
    if (!m)
        child_refused();
    const struct llama_vocab *v = llama_model_get_vocab(m);
    int32_t n_vocab = llama_vocab_n_tokens(v);
    if (n_vocab <= 0)
        child_fail("the model has no vocabulary", NULL);

    enum { CAP = 8192 };
    static llama_token toks[CAP];
    static char text[4096];
    /* tokenize: each byte, then all of them, '#', long words */
    for (int c = 1; c < 256; c++) {
        text[0] = (char)c;
        child_tokenize(v, text, 1, false, toks, CAP);
    }
    for (int c = 1; c < 256; c++)
        text[c - 1] = (char)c;
    child_tokenize(v, text, 255, false, toks, CAP);
    child_tokenize(v, "#", 1, false, toks, CAP);
    child_tokenize(v, "Hello # world, 1234\n\tdone.", 26, false, toks, CAP);
    memset(text, 'a', 2000);
    child_tokenize(v, text, 2000, false, toks, CAP);
    for (int i = 0; i < 300; i++)
        memcpy(text + 2 * i, "\xC3\xA9", 2);
    child_tokenize(v, text, 600, false, toks, CAP);
    /* every token back to text; the special ones' texts parsed as special */
    size_t sp = 0;
    for (llama_token t = 0; t < n_vocab; t++) {
        char piece[256];
        int32_t n;
        if (!orch__glue_token_to_piece(v, t, piece, sizeof piece, false, &n))
            child_fail("token to text threw", orch__glue_what());
        enum llama_token_attr a = llama_vocab_get_attr(v, t);
        if ((a & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED)) && n > 0 &&
            sp + (size_t)n < sizeof text && sp < 1024) {
            memcpy(text + sp, piece, (size_t)n);
            sp += (size_t)n;
        }
    }
    child_tokenize(v, text, sp, true, toks, CAP);

    /* decodes: a generation context and an embedding one */
    int32_t n_prompt;
    if (!orch__glue_tokenize(v, "Once upon a time, # there was", 29, toks, CAP, true, false,
                             &n_prompt) ||
        n_prompt <= 0) {
        toks[0] = 0;
        n_prompt = 1;
    }
    for (int e = 0; e < 2; e++) {
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 256;
        cp.n_batch = cp.n_ubatch = 64;
        cp.n_threads = cp.n_threads_batch = 1;
        cp.no_perf = true;
        cp.embeddings = e == 1;
        struct llama_context *ctx;
        if (!orch__glue_ctx_new(m, cp, &ctx))
            child_fail("context creation threw", orch__glue_what());
        if (!ctx)
            continue; /* refused: the same error in process */
        child_decode_run(ctx, toks, n_prompt, n_vocab);
        llama_free(ctx);
    }
    /* the chat template (part of the file): parsed and rendered, with a tool
     * and without, as a chat would; its errors are answered in process */
    struct orch__chat_tmpls *t;
    if (orch__glue_chat_init(m, NULL, &t)) {
        static const struct orch_tool_call call = {"call1abcd", "probe", "{\"q\": \"#\"}"};
        static const struct orch_chat_message msgs[] = {
            {.role = "system", .content = "Probe."},
            {.role = "user", .content = "Hello # world"},
            {.role = "assistant", .content = "", .tool_calls = &call, .n_tool_calls = 1},
            {.role = "tool", .content = "42", .tool_call_id = "call1abcd"},
            {.role = "user", .content = "Again."},
        };
        struct orch_chat_params cp;
        memset(&cp, 0, sizeof cp); /* the defaults: auto tools, reasoning split */
        for (int k = 0; k < 2; k++) {
            struct orch__glue_applied a;
            cp.tools = k ? "[{\"type\":\"function\",\"function\":{\"name\":\"probe\","
                           "\"parameters\":{\"type\":\"object\"}}}]"
                         : NULL;
            if (orch__glue_chat_apply(t, msgs, k ? 5 : 2, &cp, true, 0, &a))
                orch__glue_applied_clear(&a);
        }
        orch__glue_chat_free(t);
    }
    llama_model_free(m);
    _exit(0);
}

/* ---- the parent ----------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The last non-empty line of the child's output, the likeliest cause. */
static void last_line(char *tail, size_t n, char *out, size_t cap)
{
    while (n && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
        n--;
    size_t start = n;
    while (start && tail[start - 1] != '\n')
        start--;
    size_t len = n - start;
    if (len >= cap)
        len = orch__utf8_complete_len(tail + start, cap - 1);
    memcpy(out, tail + start, len);
    out[len] = '\0';
}

/* Runs the child and waits for it; fills why (empty when it passed). */
static bool run_child(const char *path, uint64_t mem_limit, int timeout_s, char *why, size_t cap)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(why, cap, "cannot make a pipe for the vetting child: %s", strerror(errno));
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        snprintf(why, cap, "cannot start the vetting child: %s", strerror(errno));
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(path, fds[1], mem_limit, timeout_s);
    }
    close(fds[1]);
    char tail[VET_TAIL];
    size_t n_tail = 0;
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    bool timed_out = false;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int r = poll(&p, 1, (int)(left < 1000 ? left : 1000));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char buf[1024];
        ssize_t got = read(fds[0], buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* the child is gone (or closed its end) */
        /* keep the last VET_TAIL bytes (a read is at most half of them) */
        _Static_assert(sizeof buf <= VET_TAIL, "a read fits in the tail");
        size_t g = (size_t)got;
        if (n_tail + g > sizeof tail) {
            size_t drop = n_tail + g - sizeof tail;
            memmove(tail, tail + drop, n_tail - drop);
            n_tail -= drop;
        }
        memcpy(tail + n_tail, buf, g);
        n_tail += g;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    char line[400];
    last_line(tail, n_tail, line, sizeof line);
    if (timed_out) {
        snprintf(why, cap, "it did not finish loading, tokenizing and decoding in %d s (the "
                 "vetting child was killed)%s%s", timeout_s, *line ? "; last output: " : "",
                 line);
        return false;
    }
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == VET_REFUSED)) {
        why[0] = '\0';
        return true;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(why, cap, "it killed the vetting child (%s%s)%s%s",
                 sig == SIGALRM ? "past its deadline, " : "", strsignal(sig),
                 *line ? ": " : "", line);
    } else {
        snprintf(why, cap, "the vetting child failed (exit %d)%s%s", WEXITSTATUS(status),
                 *line ? ": " : "", line);
    }
    return false;
}

int orch__lm_vet(const char *path, const struct orch__vet_opts *opts, orch_error *err)
{
    orch__lm_init();
    struct orch__file_id id;
    int rc = orch__file_identity(path, &id, err);
    if (rc)
        return rc;
    const char *llama = ORCH_LLAMA_VERSION;
    char why[700];
    int known = opts->use_cache ? orch__vet_cache_get(&id, llama, why, sizeof why) : -1;
    if (known == 1)
        return ORCH_OK;
    if (known == 0)
        return orch__err(err, ORCH_EFORMAT, "'%s' failed vetting (a verdict kept until the file "
                         "changes): %s", path, why);
    int timeout_s = opts->timeout_s > 0 ? opts->timeout_s : VET_TIMEOUT_S_DEFAULT;
    const char *env = getenv("ORCH_VET_TIMEOUT");
    if (env && atoi(env) > 0)
        timeout_s = atoi(env);
    int64_t t0 = now_ms();
    bool ok = run_child(path, opts->mem_limit, timeout_s, why, sizeof why);
    int64_t ms = now_ms() - t0;
    orch__log(ok ? ORCH_LOG_INFO : ORCH_LOG_WARN, opts->role, ok ? "vetted" : "vet_failed",
              OF_S("path", path), OF_I("ms", ms), OF_S("cause", why));
    /* a child that could not start says nothing about the file */
    bool about_file = ok || strncmp(why, "cannot ", 7) != 0;
    if (opts->use_cache && about_file)
        orch__vet_cache_put(&id, llama, ok, why);
    if (ok)
        return ORCH_OK;
    return orch__err(err, about_file ? ORCH_EFORMAT : ORCH_EIO, "'%s' failed vetting: %s", path,
                     why);
}
