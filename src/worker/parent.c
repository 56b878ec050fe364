/*
 * worker/parent.c — the worker backend: each model file a daemon loads
 * runs in a worker process of its own (orch_worker_backend_new), so that
 * what kills llama.cpp kills only the requests on that file.
 *
 * DESIGN
 * The backend sits under the model layer like any other (backend.h): the
 * model layer keeps the budget, leases, single flight, LRU and idle unload;
 * the generation layer keeps stop strings, token limits and streaming; the
 * CPU budget is one for every process (cpu.c shares it). What moves out of
 * the daemon is only what llama.cpp runs: the load, the batching engine,
 * tokenizing, decoding. Roles that share a file share its loaded model,
 * so they share its worker.
 *
 * A request is a socket of its own (socketpair; the worker's end passed over
 * the control socket), read by the request's thread here: pieces as they
 * come, then a done frame. A cancel (the sink refusing a piece) is a
 * half-close; the worker stops within a token. No thread multiplexes.
 *
 * Supervision: a thread per worker reads its stderr (forwarded line by line
 * to ours, the last lines kept) and, once a second, the watch page: a
 * decode in progress past the deadline ($ORCH_WORKER_DECODE_TIMEOUT, 300 s)
 * is a hang, and the worker is killed. At the end of its stderr it reaps the
 * worker, gives the CPU budget back its tokens, and says why it died: the
 * signal, and the last line it wrote (llama.cpp's assert text). Requests in
 * flight end with that reason (ORCH_EDECODE; the load's with ORCH_EFORMAT).
 * The next request starts a new worker and loads again; after
 * WORKER_DEATHS_MAX deaths on one file (by identity: device, inode, size,
 * mtime) the file is refused until it changes.
 *
 * Locks: wm->lock (a model's current worker, its restart) before w->lock
 * (a worker's state, its control socket's writes). The refusal table's own
 * lock is a leaf.
 */
#include "../backend.h"
#include "../cpu.h"
#include "../watch.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKER_DEATHS_MAX       3
#define WORKER_TAIL             2048
#define WORKER_START_MS         30000
#define WORKER_LOAD_IDLE_MS     600000 /* a load that sends nothing for this long hangs */
#define WORKER_DECODE_TIMEOUT_S 300
#define WORKER_EXIT_MS          5000 /* a freed worker's time to exit before SIGKILL */
#define WORKER_DEAD_WAIT_MS     5000 /* a request's wait for the reason of a death */
#define WORKER_IDLE_MAX         16   /* request sockets kept for the next requests */
#define CANCEL_POLL_MS          20   /* how soon a cancel flag reaches the worker */

extern char **environ;

/* One worker started ahead, set up and waiting for a load: a load (a role
 * switch, a restart) does not wait for a process to start and set
 * llama.cpp up. Made after the first load, and again each time one is
 * taken. */
struct spare {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct worker *w; /* NULL = none ready */
    bool starting;    /* a thread is starting one */
    bool closing;     /* the backend is being freed: start no more */
};

struct worker_backend {
    struct orch_backend base; /* first */
    char *exe;
    struct spare *spare;
};

struct worker {
    pid_t pid;
    int ctl;    /* control socket; -1 once closed */
    int err_fd; /* the worker's stderr */
    struct orch__watch_page *watch;
    pthread_t supervisor;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* guarded by lock */
    bool dead, leaving; /* leaving: we asked it to go (its death counts for nothing) */
    char reason[384];
    char tail[WORKER_TAIL];
    size_t tail_len;
    int refs;                  /* guarded by the model's lock */
    int idle[WORKER_IDLE_MAX]; /* request sockets between requests; guarded by lock */
    int n_idle;
};

struct wmodel {
    const struct worker_backend *be;
    pthread_mutex_t lock;
    struct worker *w; /* the current worker; NULL after a failed restart */
    char *path, *role;
    struct wire_load load;
    struct orch__file_id id;
    uint64_t size;
    struct orch_model_info info;
};

/* ---- files refused after repeated deaths ------------------------------------------ */

struct death {
    struct orch__file_id id;
    int n;
    char reason[384];
};

static pthread_mutex_t g_deaths_lock = PTHREAD_MUTEX_INITIALIZER;
static struct death g_deaths[64];
static int g_n_deaths;

static struct death *death_find_locked(const struct orch__file_id *id)
{
    for (int i = 0; i < g_n_deaths; i++)
        if (orch__file_same(&g_deaths[i].id, id))
            return &g_deaths[i];
    return NULL;
}

/* Counts a death of id's worker; returns the count. */
static int death_count(const struct orch__file_id *id, const char *reason)
{
    pthread_mutex_lock(&g_deaths_lock);
    struct death *d = death_find_locked(id);
    if (!d) {
        /* the table is small: the oldest entry goes (a file refused long ago
         * is tried again, and refused again after its deaths) */
        if (g_n_deaths == (int)(sizeof g_deaths / sizeof g_deaths[0]))
            memmove(g_deaths, g_deaths + 1, --g_n_deaths * sizeof g_deaths[0]);
        d = &g_deaths[g_n_deaths++];
        *d = (struct death){.id = *id};
    }
    d->n++;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
    int n = d->n;
    pthread_mutex_unlock(&g_deaths_lock);
    return n;
}

/* ORCH_EFORMAT when path (identity id) is refused, else ORCH_OK. */
static int death_check(const struct orch__file_id *id, const char *path, orch_error *err)
{
    pthread_mutex_lock(&g_deaths_lock);
    struct death *d = death_find_locked(id);
    int rc = ORCH_OK;
    if (d && d->n >= WORKER_DEATHS_MAX)
        rc = orch__err(err, ORCH_EFORMAT,
                       "'%s' is refused: its worker died %d times (last: %s); it is tried "
                       "again when the file changes",
                       path, d->n, d->reason);
    pthread_mutex_unlock(&g_deaths_lock);
    return rc;
}

/* ---- one worker process ----------------------------------------------------------- */

static int64_t decode_timeout_ns(void)
{
    const char *s = getenv("ORCH_WORKER_DECODE_TIMEOUT");
    long v = s && *s ? strtol(s, NULL, 10) : WORKER_DECODE_TIMEOUT_S;
    return (int64_t)(v > 0 ? v : WORKER_DECODE_TIMEOUT_S) * 1000000000;
}

/* Keeps the last WORKER_TAIL bytes the worker wrote. */
static void tail_add(struct worker *w, const char *p, size_t n)
{
    if (n >= WORKER_TAIL) {
        p += n - (WORKER_TAIL - 1);
        n = WORKER_TAIL - 1;
    }
    if (w->tail_len + n >= WORKER_TAIL) {
        size_t drop = w->tail_len + n - (WORKER_TAIL - 1);
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
    memcpy(w->tail + w->tail_len, p, n);
    w->tail_len += n;
    w->tail[w->tail_len] = 0;
}

/* The last non-empty line of the tail, for the reason (into out[cap]). */
static void tail_last_line(const struct worker *w, char *out, size_t cap)
{
    size_t end = w->tail_len;
    while (end &&
           (w->tail[end - 1] == '\n' || w->tail[end - 1] == '\r' || w->tail[end - 1] == ' '))
        end--;
    size_t start = end;
    while (start && w->tail[start - 1] != '\n')
        start--;
    size_t n = end - start;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, w->tail + start, n);
    out[orch__utf8_complete_len(out, n)] = 0;
}

static void *supervise(void *arg)
{
    struct worker *w = arg;
    int64_t deadline_ns = decode_timeout_ns();
    bool hung = false;
    char buf[4096];
    for (;;) {
        struct pollfd p = {.fd = w->err_fd, .events = POLLIN};
        int r = poll(&p, 1, 1000);
        if (r > 0) {
            ssize_t n = read(w->err_fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            ssize_t off = 0;
            while (off < n) { /* the worker's log lines are ours */
                ssize_t wr = write(2, buf + off, (size_t)(n - off));
                if (wr <= 0)
                    break;
                off += wr;
            }
            pthread_mutex_lock(&w->lock);
            tail_add(w, buf, (size_t)n);
            pthread_mutex_unlock(&w->lock);
        }
        int64_t since = orch__watch_oldest(w->watch);
        if (!hung && since && orch__now_ns() - since > deadline_ns) {
            hung = true;
            kill(w->pid, SIGKILL);
        }
    }
    int status = 0;
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    orch__cpu_reclaim((int32_t)w->pid);
    pthread_mutex_lock(&w->lock);
    char last[256];
    tail_last_line(w, last, sizeof last);
    if (hung)
        snprintf(w->reason, sizeof w->reason, "hung: a decode ran past %lld s (killed)",
                 (long long)(deadline_ns / 1000000000));
    else if (WIFSIGNALED(status))
        snprintf(w->reason, sizeof w->reason, "killed by signal %d (%s)%s%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), *last ? ": " : "", last);
    else
        snprintf(w->reason, sizeof w->reason, "exited with code %d%s%s", WEXITSTATUS(status),
                 *last ? ": " : "", last);
    w->dead = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Waits up to ms for w to be dead; true when it is. */
static bool wait_dead(struct worker *w, int64_t ms)
{
    struct timespec until = orch__mono_deadline(orch__now_ns(), ms);
    pthread_mutex_lock(&w->lock);
    while (!w->dead && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
        ;
    bool dead = w->dead;
    pthread_mutex_unlock(&w->lock);
    return dead;
}

/* Ends w (no request is on it): the end of its control socket tells it to
 * exit; SIGKILL when it does not in time. Frees w. */
static void worker_end(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->leaving = true;
    int ctl = w->ctl;
    w->ctl = -1;
    pthread_mutex_unlock(&w->lock);
    if (ctl >= 0)
        close(ctl);
    for (int i = 0; i < w->n_idle; i++)
        close(w->idle[i]);
    w->n_idle = 0;
    if (!wait_dead(w, WORKER_EXIT_MS)) {
        kill(w->pid, SIGKILL);
        wait_dead(w, INT32_MAX);
    }
    pthread_join(w->supervisor, NULL);
    close(w->err_fd);
    munmap(w->watch, sizeof *w->watch);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* fd moved to a number of 10 or more (close-on-exec), for the spawn's
 * dup2s not to step on each other; -1 on failure (fd closed either way). */
static int fd_high(int fd)
{
    if (fd < 0)
        return -1;
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return hi;
}

/* Reads one frame from the worker's control socket within ms.
 * Returns 1, 0 when the worker ended it, -1 error, -2 timeout. */
static int ctl_recv(struct worker *w, int64_t ms, uint8_t *type, char **payload, size_t *len)
{
    struct pollfd p = {.fd = w->ctl, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, (int)ms)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return -2;
    return wire_recv(w->ctl, type, payload, len, NULL);
}

/* Starts a worker and waits for its hello. */
static int worker_start(const struct worker_backend *be, const char *path, struct worker **out,
                        orch_error *err)
{
    int sv[2], ep[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return orch__err_errno(err, errno, "making a worker's socket for", path);
    if (pipe2(ep, O_CLOEXEC) != 0) {
        close(sv[0]);
        close(sv[1]);
        return orch__err_errno(err, errno, "making a worker's pipe for", path);
    }
    struct worker *w = calloc(1, sizeof *w);
    int wfd = memfd_create("orchestra-watch", MFD_CLOEXEC);
    if (w && wfd >= 0 && ftruncate(wfd, sizeof *w->watch) == 0)
        w->watch = mmap(NULL, sizeof *w->watch, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
    int c_ctl = fd_high(sv[1]), c_err = fd_high(ep[1]), c_watch = fd_high(wfd);
    int cpu = orch__cpu_shared_fd();
    int c_cpu = cpu >= 0 ? fcntl(cpu, F_DUPFD_CLOEXEC, 10) : -1;
    int rc = ORCH_OK;
    if (!w || !w->watch || w->watch == MAP_FAILED || c_ctl < 0 || c_err < 0 || c_watch < 0) {
        rc = orch__err(err, ORCH_ENOMEM, "cannot set a worker up for '%s': %s", path,
                       strerror(errno));
    } else {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, c_err, 1);
        posix_spawn_file_actions_adddup2(&fa, c_err, 2);
        posix_spawn_file_actions_adddup2(&fa, c_ctl, 3);
        if (c_cpu >= 0)
            posix_spawn_file_actions_adddup2(&fa, c_cpu, 4);
        posix_spawn_file_actions_adddup2(&fa, c_watch, 5);
        posix_spawn_file_actions_addclosefrom_np(&fa, 6);
        posix_spawnattr_t at;
        posix_spawnattr_init(&at);
        sigset_t none, dflt;
        sigemptyset(&none);
        sigemptyset(&dflt);
        int sigs[] = {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            sigaddset(&dflt, sigs[i]);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dflt);
        posix_spawnattr_setpgroup(&at, 0); /* a terminal's ^C is the daemon's to handle */
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                          POSIX_SPAWN_SETPGROUP);
        const char *level = orch__log_level_name(orch_log_get_level());
        char *argv[] = {be->exe, "__worker", (char *)level,
                        orch__log_format() == ORCH_LOG_JSON ? "json" : "text", NULL};
        int e = posix_spawn(&w->pid, be->exe, &fa, &at, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (e)
            rc = orch__err(err, ORCH_ELOAD, "cannot start a worker ('%s') for '%s': %s", be->exe,
                           path, strerror(e));
    }
    if (c_ctl >= 0)
        close(c_ctl);
    if (c_err >= 0)
        close(c_err);
    if (c_watch >= 0)
        close(c_watch);
    if (c_cpu >= 0)
        close(c_cpu);
    if (rc) {
        close(sv[0]);
        close(ep[0]);
        if (w && w->watch && w->watch != MAP_FAILED)
            munmap(w->watch, sizeof *w->watch);
        free(w);
        return rc;
    }
    w->ctl = sv[0];
    w->err_fd = ep[0];
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->supervisor, NULL, supervise, w) != 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, NULL, 0);
        close(w->ctl);
        close(w->err_fd);
        munmap(w->watch, sizeof *w->watch);
        free(w);
        return orch__err(err, ORCH_ENOMEM, "cannot start a worker's supervisor for '%s'", path);
    }
    uint8_t type = 0;
    char *payload = NULL;
    size_t len = 0;
    uint32_t magic = 0;
    int r = ctl_recv(w, WORKER_START_MS, &type, &payload, &len);
    if (r == 1 && type == W_HELLO && len == sizeof magic)
        memcpy(&magic, payload, sizeof magic);
    free(payload);
    if (magic != WIRE_MAGIC) {
        kill(w->pid, SIGKILL);
        wait_dead(w, INT32_MAX);
        rc = orch__err(err, ORCH_ELOAD, "the worker '%s' for '%s' did not start (%s)", be->exe,
                       path, r == -2 ? "no answer in time" : w->reason);
        worker_end(w);
        return rc;
    }
    *out = w;
    return ORCH_OK;
}

static void *spare_main(void *arg)
{
    const struct worker_backend *be = arg;
    struct spare *sp = be->spare;
    struct worker *w = NULL;
    orch_error err;
    if (worker_start(be, "(a spare worker)", &w, &err) != ORCH_OK)
        w = NULL; /* the next load starts its own and says why */
    pthread_mutex_lock(&sp->lock);
    if (w && !sp->closing && !sp->w) {
        sp->w = w;
        w = NULL;
    }
    sp->starting = false;
    pthread_cond_broadcast(&sp->cond);
    pthread_mutex_unlock(&sp->lock);
    if (w)
        worker_end(w);
    return NULL;
}

/* Starts a spare worker in the background unless one is ready or coming. */
static void spare_kick(const struct worker_backend *be)
{
    struct spare *sp = be->spare;
    pthread_mutex_lock(&sp->lock);
    if (!sp->w && !sp->starting && !sp->closing) {
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        sp->starting = pthread_create(&th, &a, spare_main, (void *)be) == 0;
        pthread_attr_destroy(&a);
    }
    pthread_mutex_unlock(&sp->lock);
}

/* A worker for a load: the spare when one is ready and alive, else a new
 * one; either way the next spare is started. */
static int worker_take(const struct worker_backend *be, const char *path, struct worker **out,
                       orch_error *err)
{
    struct spare *sp = be->spare;
    pthread_mutex_lock(&sp->lock);
    struct worker *w = sp->w;
    sp->w = NULL;
    pthread_mutex_unlock(&sp->lock);
    if (w) {
        pthread_mutex_lock(&w->lock);
        bool dead = w->dead;
        w->leaving = dead; /* a spare's death is no file's */
        pthread_mutex_unlock(&w->lock);
        if (dead) {
            worker_end(w);
            w = NULL;
        }
    }
    int rc = w ? ORCH_OK : worker_start(be, path, &w, err);
    spare_kick(be);
    if (rc == ORCH_OK)
        *out = w;
    return rc;
}

/* The error for a worker that died under a request, counting the death. */
static int died(struct wmodel *wm, struct worker *w, int code, const char *doing, orch_error *err)
{
    if (!wait_dead(w, WORKER_DEAD_WAIT_MS))
        return orch__err(err, code,
                         "the worker for '%s' ended the request %s without "
                         "an answer",
                         wm->path, doing);
    pthread_mutex_lock(&w->lock);
    bool counted = !w->leaving;
    char reason[sizeof w->reason];
    snprintf(reason, sizeof reason, "%s", w->reason);
    w->leaving = true; /* one death, counted once, whoever notices it */
    pthread_mutex_unlock(&w->lock);
    if (counted) {
        int n = death_count(&wm->id, reason);
        orch__log(ORCH_LOG_ERROR, wm->role, "worker_died", OF_S("path", wm->path),
                  OF_I("pid", w->pid), OF_S("reason", reason), OF_I("deaths", n),
                  OF_S("next", n >= WORKER_DEATHS_MAX ? "the file is refused until it changes"
                                                      : "a new worker on the next request"));
    }
    return orch__err(err, code, "the worker for '%s' died %s: %s", wm->path, doing, reason);
}

/* Loads wm's file in w. */
static int worker_load(struct wmodel *wm, struct worker *w, const struct orch__load_req *req,
                       orch_error *err)
{
    struct wire_out o;
    wire_begin(&o, W_LOAD);
    wire_put(&o, &wm->load, sizeof wm->load);
    wire_put_str(&o, wm->path);
    wire_put_str(&o, wm->role);
    if (wire_send(w->ctl, &o) != 0)
        return died(wm, w, ORCH_EFORMAT, "loading", err);
    for (;;) {
        uint8_t type;
        char *payload;
        size_t len;
        int r = ctl_recv(w, WORKER_LOAD_IDLE_MS, &type, &payload, &len);
        if (r == -2) {
            kill(w->pid, SIGKILL);
            return orch__err(err, ORCH_ETIMEDOUT,
                             "loading '%s' made no progress in %d s (the worker was "
                             "killed)",
                             wm->path, WORKER_LOAD_IDLE_MS / 1000);
        }
        if (r != 1)
            return died(wm, w, ORCH_EFORMAT, "loading", err);
        struct wire_in in = {.p = payload, .left = len};
        if (type == W_PROGRESS) {
            float f;
            bool go = !wire_get(&in, &f, sizeof f) || !req || !req->progress ||
                      req->progress(req->ctl, f);
            free(payload);
            if (!go) {
                pthread_mutex_lock(&w->lock);
                w->leaving = true;
                pthread_mutex_unlock(&w->lock);
                kill(w->pid, SIGKILL);
                return orch__err(err, ORCH_ECANCELED, "load of '%s' cancelled", wm->path);
            }
            continue;
        }
        struct wire_loaded l;
        int rc;
        if (type != W_LOADED || !wire_get(&in, &l, sizeof l)) {
            rc = orch__err(err, ORCH_ELOAD,
                           "the worker for '%s' answered a load with "
                           "nonsense",
                           wm->path);
        } else if (l.rc) {
            const char *msg;
            size_t n;
            if (!wire_get_str(&in, &msg, &n))
                msg = "", n = 0;
            rc = orch__err(err, l.rc, "%.*s", (int)n, msg);
        } else {
            wm->size = l.size;
            wm->info = l.info;
            rc = ORCH_OK;
        }
        free(payload);
        return rc;
    }
}

/* The model's worker, with a reference (worker_put), started and loaded
 * again when the last one died. NULL and *err when it cannot be. */
static struct worker *worker_get(struct wmodel *wm, orch_error *err)
{
    pthread_mutex_lock(&wm->lock);
    struct worker *w = wm->w;
    bool dead = false;
    if (w) {
        pthread_mutex_lock(&w->lock);
        dead = w->dead;
        pthread_mutex_unlock(&w->lock);
    }
    if (!w || dead) {
        if (w && w->refs == 0)
            worker_end(w); /* else its last request ends it */
        else if (w)
            w->refs = -w->refs; /* negative: replaced; ended by its last put */
        wm->w = w = NULL;
        int rc = death_check(&wm->id, wm->path, err);
        struct worker *nw = NULL;
        if (rc == ORCH_OK && (rc = worker_take(wm->be, wm->path, &nw, err)) == ORCH_OK &&
            (rc = worker_load(wm, nw, NULL, err)) != ORCH_OK) {
            worker_end(nw);
            nw = NULL;
        }
        if (nw)
            orch__log(ORCH_LOG_INFO, wm->role, "worker_restarted", OF_S("path", wm->path),
                      OF_I("pid", nw->pid));
        wm->w = w = nw;
    }
    if (w)
        w->refs++;
    pthread_mutex_unlock(&wm->lock);
    return w;
}

static void worker_put(struct wmodel *wm, struct worker *w)
{
    pthread_mutex_lock(&wm->lock);
    bool end = false;
    if (w->refs > 0) {
        w->refs--;
    } else {
        w->refs++; /* a replaced worker counts up to 0 */
        end = w->refs == 0;
    }
    pthread_mutex_unlock(&wm->lock);
    if (end)
        worker_end(w);
}

/* A request socket to w: one kept from an earlier request, else a new one
 * (the worker's end passed over its control socket; a thread of the
 * worker serves it). */
static int request_open(struct wmodel *wm, struct worker *w, orch_error *err)
{
    pthread_mutex_lock(&w->lock);
    int kept = w->n_idle ? w->idle[--w->n_idle] : -1;
    pthread_mutex_unlock(&w->lock);
    if (kept >= 0)
        return kept;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        orch__err_errno(err, errno, "making a request socket for", wm->path);
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    int rc = w->ctl >= 0 ? wire_send_fd(w->ctl, W_REQUEST, sv[1]) : -1;
    pthread_mutex_unlock(&w->lock);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        died(wm, w, ORCH_EDECODE, "before a request", err);
        return -1;
    }
    return sv[0];
}

/* After a request: a socket whose request ended cleanly is kept for the
 * next one; a cancelled (half-closed) or broken one is closed. */
static void request_close(struct worker *w, int fd, bool reuse)
{
    pthread_mutex_lock(&w->lock);
    if (reuse && !w->dead && w->ctl >= 0 && w->n_idle < WORKER_IDLE_MAX) {
        w->idle[w->n_idle++] = fd;
        fd = -1;
    }
    pthread_mutex_unlock(&w->lock);
    if (fd >= 0)
        close(fd);
}

/* ---- the ops ----------------------------------------------------------------------- */

static int wb_load(const orch_backend *be, const struct orch__load_req *req, void **out,
                   orch_error *err)
{
    const struct worker_backend *wb = (const struct worker_backend *)be;
    struct orch__file_id id;
    int rc = orch__file_identity(req->path, &id, err);
    if (rc || (rc = death_check(&id, req->path, err)))
        return rc;
    struct wmodel *wm = calloc(1, sizeof *wm);
    if (!wm || !(wm->path = orch__strdup(req->path)) ||
        !(wm->role = orch__strdup(req->role ? req->role : ""))) {
        if (wm)
            free(wm->path);
        free(wm);
        return orch__err(err, ORCH_ENOMEM, "out of memory loading '%s'", req->path);
    }
    wm->be = wb;
    wm->id = id;
    wm->load = (struct wire_load){.n_gpu_layers = req->n_gpu_layers,
                                  .n_ctx = req->n_ctx,
                                  .n_threads = req->n_threads,
                                  .n_batch = req->n_batch,
                                  .n_parallel = req->n_parallel,
                                  .stream_latency_ms = req->stream_latency_ms,
                                  .use_mmap = req->use_mmap,
                                  .use_mlock = req->use_mlock,
                                  .no_repack = req->no_repack,
                                  .vet = req->vet};
    pthread_mutex_init(&wm->lock, NULL);
    struct worker *w = NULL;
    rc = worker_take(wb, req->path, &w, err);
    if (rc == ORCH_OK && (rc = worker_load(wm, w, req, err)) != ORCH_OK)
        worker_end(w);
    if (rc) {
        pthread_mutex_destroy(&wm->lock);
        free(wm->role);
        free(wm->path);
        free(wm);
        return rc;
    }
    wm->w = w;
    *out = wm;
    return ORCH_OK;
}

static void wb_free(const orch_backend *be, void *model)
{
    (void)be;
    struct wmodel *wm = model;
    if (!wm)
        return;
    if (wm->w)
        worker_end(wm->w); /* no lease is out: no request either */
    pthread_mutex_destroy(&wm->lock);
    free(wm->role);
    free(wm->path);
    free(wm);
}

static uint64_t wb_size(void *model)
{
    return ((struct wmodel *)model)->size;
}

static void wb_info(void *model, struct orch_model_info *out)
{
    *out = ((struct wmodel *)model)->info;
}

/* Reads a request's frames until its done frame (pieces to emit, when
 * given); *done and its payload (*tail, malloc'd) on 1; 0 when the worker
 * ended the socket first. */
/* Waits for fd to be readable; a cancel flag set meanwhile is passed on as
 * the half-close (once: *cancelled). */
static void wait_readable(int fd, const int32_t *cancel, bool *cancelled)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (cancel && !*cancelled) {
        if (__atomic_load_n(cancel, __ATOMIC_RELAXED)) {
            *cancelled = true;
            shutdown(fd, SHUT_WR); /* the worker stops within a token */
            return;
        }
        if (poll(&p, 1, CANCEL_POLL_MS) != 0)
            return; /* readable, or an error the read will see */
    }
}

static int read_reply(int fd, struct orch__gen_req *gen, struct wire_done *done, char **tail,
                      size_t *tail_len, bool *cancelled_out)
{
    bool cancelled = false;
    for (;;) {
        uint8_t type;
        char *payload;
        size_t len;
        wait_readable(fd, gen ? gen->params->cancel : NULL, &cancelled);
        if (wire_recv(fd, &type, &payload, &len, NULL) != 1)
            return 0;
        if (type == W_PIECE && gen) {
            if (!cancelled && !gen->emit(gen->sink, payload, len)) {
                cancelled = true;
                shutdown(fd, SHUT_WR); /* the worker stops within a token */
            }
            free(payload);
            continue;
        }
        struct wire_in in = {.p = payload, .left = len};
        if (type != W_DONE || !wire_get(&in, done, sizeof *done)) {
            free(payload);
            return 0;
        }
        memmove(payload, in.p, in.left);
        *tail = payload;
        *tail_len = in.left;
        *cancelled_out = cancelled;
        return 1;
    }
}

/* The error a done frame carries. */
static int done_error(const struct wire_done *d, const char *tail, size_t n, orch_error *err)
{
    struct wire_in in = {.p = tail, .left = n};
    const char *msg = "";
    size_t len = 0;
    wire_get_str(&in, &msg, &len);
    return orch__err(err, d->rc, "%.*s", (int)len, msg);
}

/* One request to wm's worker: the frame o (sent and freed) on a request
 * socket, its reply read (pieces to gen's emit when gen is given) into *d
 * and *tail (malloc'd, the caller frees; NULL on an error). Returns ORCH_OK,
 * the worker's error, or ORCH_EDECODE for a worker that died `doing` it. */
static int call(struct wmodel *wm, struct wire_out *o, struct orch__gen_req *gen,
                const char *doing, struct wire_done *d, char **tail, size_t *n, orch_error *err)
{
    *tail = NULL;
    *n = 0;
    struct worker *w = worker_get(wm, err);
    int fd = w ? request_open(wm, w, err) : -1;
    if (fd < 0) {
        orch__buf_free(&o->b);
        if (w)
            worker_put(wm, w);
        return err->code;
    }
    bool cancelled = false, reuse = false;
    int rc;
    if (wire_send(fd, o) != 0 || read_reply(fd, gen, d, tail, n, &cancelled) != 1) {
        rc = died(wm, w, ORCH_EDECODE, doing, err);
    } else {
        reuse = !cancelled;
        rc = d->rc ? done_error(d, *tail, *n, err) : ORCH_OK;
    }
    if (rc) {
        free(*tail);
        *tail = NULL;
    }
    request_close(w, fd, reuse);
    worker_put(wm, w);
    return rc;
}

/* A batched reply's pieces (uint32_t length, bytes each) through emit, as
 * if they had come one by one. */
static void replay(struct orch__gen_req *req, const char *p, size_t n)
{
    struct wire_in in = {.p = p, .left = n};
    const char *piece;
    size_t len;
    while (wire_get_str(&in, &piece, &len))
        if (!req->emit(req->sink, piece, len))
            break;
}

static int wb_generate(void *model, struct orch__gen_req *req, orch_error *err)
{
    struct wire_gen g = {.params = *req->params,
                         .n_ctx = req->n_ctx,
                         .n_threads = req->n_threads,
                         .n_batch = req->n_batch,
                         .parse_special = req->parse_special,
                         .batch = req->quiet, /* the pieces in the done frame */
                         .constraint_len =
                             req->constraint ? (uint32_t)strlen(req->constraint) : 0,
                         .n_prefix = (uint32_t)req->n_prefix,
                         .want_tokens = req->want_tokens,
                         .has_suffix = req->suffix != NULL,
                         .suffix_len = req->suffix ? (uint32_t)strlen(req->suffix) : 0};
    g.params.context = NULL; /* in the frame, as n_prefix tokens */
    g.params.suffix = NULL;  /* in the frame, after the constraint */
    g.params.stop = NULL; /* the generation layer here applies them */
    g.params.n_stop = 0;
    g.params.on_text = NULL;
    g.params.user_data = NULL;
    g.params.cancel = NULL;
    g.params.grammar = NULL; /* in req->constraint */
    g.params.json_schema = NULL;
    struct wire_out o;
    wire_begin(&o, W_GEN);
    wire_put(&o, &g, sizeof g);
    if (req->n_prefix)
        wire_put(&o, req->prefix, (size_t)req->n_prefix * sizeof *req->prefix);
    if (req->constraint)
        wire_put(&o, req->constraint, g.constraint_len);
    if (req->suffix)
        wire_put(&o, req->suffix, g.suffix_len);
    wire_put(&o, req->prompt, strlen(req->prompt));
    struct wire_done d = {0};
    char *tail;
    size_t n;
    int rc = call(model, &o, req, "generating", &d, &tail, &n, err);
    req->n_prompt = d.n_prompt;
    req->n_generated = d.n_generated;
    req->n_cached = d.n_cached;
    req->eos = d.eos;
    req->ctx_full = d.ctx_full;
    req->prompt_ms = d.prompt_ms;
    req->gen_ms = d.gen_ms;
    size_t tok_bytes = g.want_tokens && d.n_tokens >= 0 ? (size_t)d.n_tokens * sizeof(int32_t) : 0;
    if (rc == ORCH_OK && tok_bytes > n)
        rc = orch__err(err, ORCH_EDECODE, "the worker for '%s' sent %zu bytes for %lld tokens",
                       ((struct wmodel *)model)->path, n, (long long)d.n_tokens);
    if (rc == ORCH_OK && tok_bytes) { /* the tokens end the frame */
        if (!(req->tokens = malloc(tok_bytes)))
            req->tokens_failed = true;
        else
            memcpy(req->tokens, tail + n - tok_bytes, tok_bytes);
        req->n_tokens = req->cap_tokens = req->tokens ? (size_t)d.n_tokens : 0;
    }
    if (rc == ORCH_OK && g.batch)
        replay(req, tail, n - tok_bytes);
    free(tail);
    return rc;
}

static int wb_embed(void *model, struct orch__embed_req *req, orch_error *err)
{
    struct wmodel *wm = model;
    if (req->n_texts > UINT32_MAX)
        return orch__err(err, ORCH_EINVAL, "too many texts");
    struct wire_embed e = {
        .n_ctx = req->n_ctx, .n_threads = req->n_threads, .n_texts = (uint32_t)req->n_texts,
        .truncate = req->truncate};
    struct wire_out o;
    wire_begin(&o, W_EMBED);
    wire_put(&o, &e, sizeof e);
    for (size_t i = 0; i < req->n_texts; i++)
        wire_put_str(&o, req->texts[i]);
    struct wire_done d = {0};
    char *tail;
    size_t n;
    int rc = call(wm, &o, NULL, "embedding", &d, &tail, &n, err);
    if (rc == ORCH_OK && (d.n_embd <= 0 || n != req->n_texts * (size_t)d.n_embd * sizeof(float))) {
        rc = orch__err(err, ORCH_EDECODE,
                       "the worker for '%s' sent %zu bytes of vectors for %zu texts", wm->path, n,
                       req->n_texts);
    } else if (rc == ORCH_OK) {
        req->out = (float *)tail; /* the vectors, moved to the front */
        tail = NULL;
        req->n_embd = d.n_embd;
        req->n_tokens = d.n_tokens;
    }
    free(tail);
    return rc;
}

static int wb_chat_apply(void *model, const struct orch__chat_req *req,
                         struct orch__chat_applied *out, orch_error *err)
{
    struct wmodel *wm = model;
    const struct orch_chat_params *cp = req->params;
    memset(out, 0, sizeof *out);
    struct wire_chat c = {.n_msgs = (uint32_t)req->n_msgs,
                          .add_assistant = req->add_assistant,
                          .parallel_tool_calls = cp->parallel_tool_calls,
                          .tool_choice = (int32_t)cp->tool_choice,
                          .reasoning = (int32_t)cp->reasoning,
                          .now = req->now};
    struct wire_out o;
    wire_begin(&o, W_CHAT);
    wire_put(&o, &c, sizeof c);
    for (size_t i = 0; i < req->n_msgs; i++) {
        uint32_t k = (uint32_t)req->msgs[i].n_tool_calls;
        wire_put(&o, &k, sizeof k);
    }
    const char *strs[WIRE_CHAT_STRS] = {req->template_src, cp->tools,   cp->tool_name,
                                        cp->json_schema,   cp->grammar, cp->template_kwargs};
    for (int i = 0; i < WIRE_CHAT_STRS; i++)
        wire_put_nstr(&o, strs[i]);
    for (size_t i = 0; i < req->n_msgs; i++) {
        const struct orch_chat_message *m = &req->msgs[i];
        wire_put_nstr(&o, m->role);
        wire_put_nstr(&o, m->content);
        wire_put_nstr(&o, m->tool_call_id);
        wire_put_nstr(&o, m->name);
        wire_put_nstr(&o, m->reasoning);
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            wire_put_nstr(&o, m->tool_calls[k].id);
            wire_put_nstr(&o, m->tool_calls[k].name);
            wire_put_nstr(&o, m->tool_calls[k].arguments);
        }
    }
    struct wire_done d = {0};
    char *tail;
    size_t n;
    int rc = call(wm, &o, NULL, "rendering a chat", &d, &tail, &n, err);
    if (rc == ORCH_OK && d.has_text) {
        struct wire_in in = {.p = tail, .left = n};
        char **v = d.n_stops < 1u << 16 ? wire_get_nstrs(&in, 3 + (size_t)d.n_stops) : NULL;
        out->stops = v ? calloc(d.n_stops + 1, sizeof *out->stops) : NULL;
        if (!out->stops) {
            rc = orch__err(err, ORCH_EDECODE, "the worker for '%s' sent a bad chat reply",
                           wm->path);
        } else {
            char **dst[3] = {&out->prompt, &out->constraint, &out->parser};
            for (int i = 0; i < 3; i++)
                if (v[i] && !(*dst[i] = strdup(v[i])))
                    rc = ORCH_ENOMEM;
            for (uint32_t i = 0; i < d.n_stops; i++)
                if (v[3 + i] && (out->stops[out->n_stops] = strdup(v[3 + i])))
                    out->n_stops++;
            if (rc)
                orch__err(err, rc, "out of memory for a chat reply");
        }
        free(v);
        if (rc)
            orch__chat_applied_clear(out);
    }
    free(tail);
    return rc;
}

/* What needs no model runs here, as the llama backend runs it. */
static int wb_constrain(const orch_backend *be, const char *json_schema, const char *grammar,
                        char **out, orch_error *err)
{
    (void)be;
    const orch_backend *lb = orch__backend_pick(NULL);
    return lb->ops->constrain(lb, json_schema, grammar, out, err);
}

static void *wb_parser_new(const orch_backend *be, const char *parser, orch_error *err)
{
    (void)be;
    const orch_backend *lb = orch__backend_pick(NULL);
    return lb->ops->parser_new(lb, parser, err);
}

static int wb_parser_feed(void *parser, const char *text, size_t len, bool partial,
                          const struct orch__chat_delta_sink *sink, orch_error *err)
{
    return orch__backend_pick(NULL)->ops->parser_feed(parser, text, len, partial, sink, err);
}

static int wb_parser_message(void *parser, struct orch_chat_reply *out, orch_error *err)
{
    return orch__backend_pick(NULL)->ops->parser_message(parser, out, err);
}

static void wb_parser_free(void *parser)
{
    orch__backend_pick(NULL)->ops->parser_free(parser);
}

static int wb_estimate(const orch_backend *be, const char *path, int32_t n_ctx, int32_t n_seq,
                       uint64_t *weights, uint64_t *context, orch_error *err)
{
    (void)be; /* our own header reader: safe in the daemon */
    return orch__backend_estimate(orch__backend_pick(NULL), path, n_ctx, n_seq, weights, context,
                                  err);
}

static int32_t wb_faults(const orch_backend *be, const char *path, char *last, size_t cap,
                         bool *refused)
{
    (void)be;
    struct orch__file_id id;
    orch_error err;
    if (orch__file_identity(path, &id, &err) != ORCH_OK)
        return 0;
    pthread_mutex_lock(&g_deaths_lock);
    struct death *d = death_find_locked(&id);
    int32_t n = d ? d->n : 0;
    if (d) {
        snprintf(last, cap, "%s", d->reason);
        *refused = n >= WORKER_DEATHS_MAX;
    }
    pthread_mutex_unlock(&g_deaths_lock);
    return n;
}

static const struct orch_backend_ops wb_ops = {
    .name = "llama.cpp (workers)",
    .load = wb_load,
    .free = wb_free,
    .size = wb_size,
    .info = wb_info,
    .generate = wb_generate,
    .chat_apply = wb_chat_apply,
    .constrain = wb_constrain,
    .parser_new = wb_parser_new,
    .parser_feed = wb_parser_feed,
    .parser_message = wb_parser_message,
    .parser_free = wb_parser_free,
    .embed = wb_embed,
    .estimate = wb_estimate,
    .faults = wb_faults,
};

orch_backend *orch_worker_backend_new(const char *exe)
{
    struct worker_backend *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    char self[4096];
    if (!exe) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            n = 0;
        self[n] = 0;
        exe = self;
    }
    b->base.ops = &wb_ops;
    if (!(b->exe = orch__strdup(exe)) || !(b->spare = calloc(1, sizeof *b->spare))) {
        free(b->exe);
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->spare->lock, NULL);
    pthread_cond_init(&b->spare->cond, NULL);
    return &b->base;
}

void orch_worker_backend_free(orch_backend *be)
{
    struct worker_backend *b = (struct worker_backend *)be;
    if (!b)
        return;
    struct spare *sp = b->spare;
    pthread_mutex_lock(&sp->lock);
    sp->closing = true;
    while (sp->starting)
        pthread_cond_wait(&sp->cond, &sp->lock);
    struct worker *w = sp->w;
    sp->w = NULL;
    pthread_mutex_unlock(&sp->lock);
    if (w)
        worker_end(w);
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
    free(b->exe);
    free(b);
}
