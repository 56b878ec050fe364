/*
 * pull.c — Ollama's POST /api/pull on roles. A role whose section names a
 * `source` (an http:// or https:// URL of a GGUF file, a Hugging Face
 * .../resolve/... URL among them) and optionally its `sha256` has its
 * `path` fetched from there (libcurl), with Ollama's streamed progress.
 * A role without a source is refused saying how to give it one.
 *
 * DESIGN
 * One download per destination at a time: the requests for one path follow
 * one `struct pull` (g_pulls, under g_lock) and each reports its progress;
 * the download runs on a thread of its own, and stops when the last request
 * following it leaves or the drain deadline cuts it (jobs.c).
 *
 * The file is written to PATH.partial, locked (flock: another daemon
 * pulling it waits), hashed as it arrives, and resumed with a Range request
 * from what it holds: a transfer cut mid-file is resumed up to PULL_TRIES
 * times within one pull, and one whose clients left is resumed by the next
 * pull. It is then checked (the size the source announced, the sha256 the
 * config gives, else the source's X-Linked-Etag, as Hugging Face sends it;
 * then read as a model) and renamed over PATH, the folder synced: PATH is
 * the old file or the whole new one, never a part of one. What is proven
 * wrong (an HTTP error, a redirect loop, a cut that resuming did not mend, a
 * wrong sha256, too big, not a model) leaves no partial file behind.
 *
 * Limits: a file may be at most the memory budget (a larger model could
 * never load), or the machine's memory without one, and the space free in
 * its folder; a Content-Length past them is refused before the body, a body
 * past them cut. Redirects: 10 at most, to http(s) only. A source silent for
 * PULL_STALL_S fails. A file already at PATH is kept when its sha256 is the
 * configured one, or (no sha256 configured) when the source answers 304 to
 * If-Modified-Since with the file's time (which a pull sets from the
 * source's Last-Modified).
 */
#include "api.h"
#include "jobs.h"
#include "pull.h"
#include "reply.h"
#include "roles.h"
#include "roleset.h"
#include "stream.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define PULL_TRIES 4       /* transfers per pull: the first and resumes after cuts */
#define PULL_REDIRS 10
#define PULL_STALL_S 60    /* a source that sends nothing this long fails */
#define PULL_REPORT_MS 100 /* progress lines at most this often */
#define PULL_BEAT_MS 1000  /* and at least this often (a client that left is seen
                              when a write fails) */

enum phase { PH_START, PH_DOWNLOAD, PH_VERIFY, PH_WRITE };

struct pull {
    struct pull *next;
    struct srv *s;
    char role[ORCH_ROLE_NAME_MAX];
    char path[PATH_MAX];
    char part[PATH_MAX + 16];
    char url[4096];
    char want[65];         /* the sha256 expected; "" = none (yet) */
    const char *want_from; /* where it came from, for messages */
    bool insecure;
    uint64_t limit;        /* bytes the file may have */
    char limit_why[128];
    /* g_lock guards what follows */
    enum phase phase;
    int64_t total, completed; /* bytes; total -1 = not known */
    bool finished;
    int status;               /* once finished: 200, else the error's HTTP status */
    char msg[ORCH_ERROR_MSG_MAX + 512];
    int followers;            /* requests reporting it; 0 = stop */
    int32_t cancel;           /* set by jobs_cut at the drain deadline */
    struct job_link link;
    pthread_t th;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER; /* a pull moved on */
static struct pull *g_pulls;
static bool g_curl_ok;

int pull_global_init(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    return g_curl_ok ? 0 : -1;
}

void pull_global_free(void)
{
    if (g_curl_ok)
        curl_global_cleanup();
    g_curl_ok = false;
}

/* ---- the download ------------------------------------------------------------ */

struct xfer {
    struct pull *p;
    CURL *c;
    int fd;
    struct sha256_ctx sha;
    int64_t have;          /* bytes in the partial file */
    int64_t offset;        /* where this transfer started */
    int64_t announced;     /* the whole file's size the source gave; -1 = none */
    bool range_bad;        /* a 206 for another range than asked */
    bool too_big;
    int werr;              /* errno of a failed write */
};

static bool stop_asked(struct pull *p)
{
    return p->followers == 0 || __atomic_load_n(&p->cancel, __ATOMIC_RELAXED) != 0;
}

/* "Name: value" of a header line, or NULL. */
static const char *header_value(const char *line, size_t n, const char *name, char *buf,
                                size_t cap)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return NULL;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '"'))
        v++;
    while (end > v && strchr(" \t\r\n\"", end[-1]))
        end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return buf;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    char v[160];
    if (header_value(data, n, "X-Linked-Etag", v, sizeof v) && strlen(v) == 64 &&
        strspn(v, "0123456789abcdefABCDEF") == 64 && !x->p->want[0]) {
        /* the sha256 a Hugging Face redirect names, when the config names none */
        pthread_mutex_lock(&g_lock);
        for (int i = 0; i < 64; i++)
            x->p->want[i] = (char)(v[i] | 0x20);
        x->p->want[64] = '\0';
        x->p->want_from = "the source's X-Linked-Etag";
        pthread_mutex_unlock(&g_lock);
    }
    long code = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
    long long a, b, t;
    if (code == 206 && header_value(data, n, "Content-Range", v, sizeof v)) {
        if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &t) != 3 || a != x->offset) {
            x->range_bad = true;
            return 0; /* another range than asked: start again from 0 */
        }
        x->announced = t;
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    if ((uint64_t)x->have + n > x->p->limit) {
        x->too_big = true;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(x->fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            x->werr = w < 0 ? errno : ENOSPC;
            return 0;
        }
        done += (size_t)w;
    }
    sha256_update(&x->sha, n, (const uint8_t *)data);
    x->have += (int64_t)n;
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dlnow, (void)ultotal, (void)ulnow;
    struct xfer *x = arg;
    struct pull *p = x->p;
    pthread_mutex_lock(&g_lock);
    if (x->announced < 0 && dltotal > 0)
        x->announced = x->offset + dltotal;
    p->total = x->announced;
    if (p->completed != x->have || p->phase != PH_DOWNLOAD) {
        p->completed = x->have;
        p->phase = PH_DOWNLOAD;
        pthread_cond_broadcast(&g_cond);
    }
    bool stop = stop_asked(p);
    pthread_mutex_unlock(&g_lock);
    return stop;
}

/* One transfer from x->have on. */
static CURLcode transfer(struct xfer *x, const struct stat *have_file, char *ebuf)
{
    struct pull *p = x->p;
    CURL *c = x->c;
    curl_easy_reset(c);
    x->offset = x->have;
    x->range_bad = false;
    ebuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, p->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)PULL_REDIRS);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)PULL_STALL_S);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "orchestra/" ORCH_VERSION);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(p->limit - (uint64_t)x->have));
    if (x->have > 0)
        curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->have);
    if (have_file) {
        curl_easy_setopt(c, CURLOPT_TIMECONDITION, (long)CURL_TIMECOND_IFMODSINCE);
        curl_easy_setopt(c, CURLOPT_TIMEVALUE_LARGE, (curl_off_t)have_file->st_mtime);
    }
    if (p->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return curl_easy_perform(c);
}

/* Empties the partial file: the next transfer starts from 0. */
static int restart(struct xfer *x)
{
    if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0)
        return -1;
    sha256_init(&x->sha);
    x->have = 0;
    x->announced = -1;
    return 0;
}

static void set_phase(struct pull *p, enum phase ph)
{
    pthread_mutex_lock(&g_lock);
    p->phase = ph;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
}

/* Opens and locks PATH.partial: the fd, or -1 (msg, *status). -2: the
 * request went before the lock came. */
static int open_partial(struct pull *p, char *msg, size_t cap, int *status)
{
    for (;;) {
        int fd = open(p->part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            *status = e == EACCES || e == EROFS || e == EPERM ? 403 : e == ENOSPC ? 507 : 500;
            snprintf(msg, cap, "%s: cannot be written: %s%s",
                     srv_file_name(p->s, p->part), strerror(e),
                     e == ENOENT ? " (its folder does not exist)" : "");
            return -1;
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            pthread_mutex_lock(&g_lock);
            bool stop = stop_asked(p);
            pthread_mutex_unlock(&g_lock);
            if (stop) {
                close(fd);
                return -2;
            }
            usleep(100 * 1000); /* another process pulls it */
        }
        /* the holder may have renamed it meanwhile: then it is not the partial file */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(p->part, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            return fd;
        close(fd);
    }
}

/* fsync of the folder holding path, for the rename to last. */
static void sync_folder(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* The limit's second part: what the folder has free, with what the partial
 * file holds already. */
static void fit_to_disk(struct pull *p, int64_t have)
{
    char dir[sizeof p->part];
    snprintf(dir, sizeof dir, "%s", p->part);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    struct statvfs vf;
    if (statvfs(slash ? dir : ".", &vf) != 0)
        return;
    uint64_t free_b = (uint64_t)vf.f_bavail * vf.f_frsize + (uint64_t)have;
    if (free_b < p->limit) {
        p->limit = free_b;
        char sz[32];
        orch_format_bytes(free_b, sz, sizeof sz);
        snprintf(p->limit_why, sizeof p->limit_why, "the %s free in its folder", sz);
    }
}

/* The whole pull; returns the HTTP status (200, 499 when its clients left),
 * msg saying why for an error. */
static int run(struct pull *p, char *msg, size_t cap)
{
    const char *name = srv_file_name(p->s, p->path);
    struct stat st;
    bool have_file = stat(p->path, &st) == 0 && S_ISREG(st.st_mode);
    if (have_file && p->want[0]) {
        char hex[65];
        if (digest_sha256(&p->s->digests, p->path, hex) == 0 && strcmp(hex, p->want) == 0) {
            pthread_mutex_lock(&g_lock);
            p->total = p->completed = st.st_size;
            pthread_mutex_unlock(&g_lock);
            return 200; /* what the config names is there */
        }
        have_file = false; /* another file: fetched again */
    }
    int status = 500;
    int fd = open_partial(p, msg, cap, &status);
    if (fd == -2)
        return 499;
    if (fd < 0)
        return status;
    struct xfer x = {.p = p, .fd = fd, .announced = -1};
    sha256_init(&x.sha);
    char ebuf[CURL_ERROR_SIZE];
    /* what an abandoned pull left: hashed, and resumed from its end */
    if (lseek(fd, 0, SEEK_SET) != 0 || digest_update_fd(&x.sha, fd) != 0) {
        snprintf(msg, cap, "%s: cannot be read: %s", srv_file_name(p->s, p->part),
                 strerror(errno));
        close(fd);
        return 500;
    }
    x.have = lseek(fd, 0, SEEK_END);
    fit_to_disk(p, x.have);
    if (!(x.c = curl_easy_init())) {
        snprintf(msg, cap, "libcurl cannot start a transfer");
        close(fd);
        return 500;
    }
    CURLcode rc = CURLE_OK;
    int tries = 0;
    bool keep = false; /* the partial file stays, to resume from */
    for (;;) {
        int64_t before = x.have;
        rc = transfer(&x, have_file && x.have == 0 ? &st : NULL, ebuf);
        tries++;
        pthread_mutex_lock(&g_lock);
        bool stop = stop_asked(p);
        pthread_mutex_unlock(&g_lock);
        if (rc == CURLE_OK || stop || tries >= PULL_TRIES)
            break;
        long code = 0;
        curl_easy_getinfo(x.c, CURLINFO_RESPONSE_CODE, &code);
        if (x.range_bad || rc == CURLE_RANGE_ERROR || code == 416) {
            if (restart(&x) != 0)
                break; /* reported below as the write error it is */
            continue;
        }
        bool cut = rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR ||
                   rc == CURLE_GOT_NOTHING || rc == CURLE_OPERATION_TIMEDOUT ||
                   rc == CURLE_SEND_ERROR || rc == CURLE_HTTP2_STREAM;
        if (!cut || x.have == before)
            break; /* no progress: resuming would not mend it */
    }
    long code = 0, unmet = 0;
    curl_off_t filetime = -1;
    curl_easy_getinfo(x.c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x.c, CURLINFO_CONDITION_UNMET, &unmet);
    curl_easy_getinfo(x.c, CURLINFO_FILETIME_T, &filetime);
    curl_easy_cleanup(x.c);
    pthread_mutex_lock(&g_lock);
    bool stopped = stop_asked(p);
    pthread_mutex_unlock(&g_lock);
    char limit[32];
    orch_format_bytes(p->limit, limit, sizeof limit);
    status = 502;
    if (rc != CURLE_OK && stopped && !x.too_big) {
        keep = x.werr == 0; /* the clients left, or the drain: the next pull resumes */
        status = 499;
        snprintf(msg, cap, "the pull of %s was stopped after %lld bytes", name,
                 (long long)x.have);
    } else if (x.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        status = 507;
        snprintf(msg, cap, "%.300s: the file is larger than %s, %s", p->url, limit, p->limit_why);
    } else if (x.werr) {
        status = x.werr == ENOSPC || x.werr == EDQUOT ? 507 : 500;
        snprintf(msg, cap, "%s: cannot be written: %s", srv_file_name(p->s, p->part),
                 strerror(x.werr));
    } else if (rc == CURLE_HTTP_RETURNED_ERROR) {
        snprintf(msg, cap, "%.300s: the source answered HTTP %ld", p->url, code);
    } else if (rc == CURLE_TOO_MANY_REDIRECTS) {
        snprintf(msg, cap, "%.300s: redirected more than %d times", p->url, PULL_REDIRS);
    } else if (rc == CURLE_PARTIAL_FILE || (rc == CURLE_OK && x.announced >= 0 &&
                                            x.have != x.announced && !unmet)) {
        snprintf(msg, cap, "%.300s: the transfer ended after %lld of %lld bytes (%d %s)", p->url,
                 (long long)x.have, (long long)x.announced, tries, tries == 1 ? "try" : "tries");
    } else if (rc != CURLE_OK) {
        snprintf(msg, cap, "%.300s: %s", p->url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
    } else if (unmet) {
        status = 200; /* 304: the file there is the source's */
        pthread_mutex_lock(&g_lock);
        p->total = p->completed = st.st_size;
        pthread_mutex_unlock(&g_lock);
    } else {
        set_phase(p, PH_VERIFY);
        char hex[65];
        digest_hex(&x.sha, hex);
        struct orch_file_info fi;
        orch_error err;
        if (p->want[0] && strcmp(hex, p->want) != 0) {
            snprintf(msg, cap, "%.300s: the file's sha256 is %s, not %s (%s)", p->url, hex,
                     p->want, p->want_from);
        } else if (fsync(fd) != 0) {
            status = 500;
            snprintf(msg, cap, "%s: cannot be written: %s", srv_file_name(p->s, p->part),
                     strerror(errno));
        } else if (orch_file_info(p->part, &fi, &err) != ORCH_OK) {
            snprintf(msg, cap, "%.300s: not a model: %s", p->url, err.msg);
        } else {
            set_phase(p, PH_WRITE);
            if (filetime >= 0) { /* the source's time, for If-Modified-Since next time */
                struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)filetime, 0}};
                futimens(fd, ts);
            }
            if (rename(p->part, p->path) != 0) {
                status = 500;
                snprintf(msg, cap, "%s: cannot be replaced: %s", name, strerror(errno));
            } else {
                sync_folder(p->path);
                status = 200;
                keep = true; /* it is the file now */
            }
        }
    }
    if (!keep)
        unlink(p->part);
    close(fd);
    return status;
}

static void *pull_main(void *arg)
{
    struct pull *p = arg;
    char msg[sizeof p->msg];
    msg[0] = '\0';
    int status = run(p, msg, sizeof msg);
    struct orch_log_field f[] = {{"file", srv_file_name(p->s, p->path), 0},
                                 {"source", p->url, 0},
                                 {"status", NULL, (double)status},
                                 {"bytes", NULL, (double)p->completed},
                                 {"error", msg, 0}};
    orch_log_event(status == 200 ? ORCH_LOG_INFO : ORCH_LOG_WARN, p->role, "pull", f,
                   status == 200 ? 4 : 5);
    pthread_mutex_lock(&g_lock);
    p->status = status;
    snprintf(p->msg, sizeof p->msg, "%s", msg);
    p->finished = true;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* ---- the requests following a pull -------------------------------------------- */

/* Stops following p; the last one out waits for the download to stop and
 * frees it. */
static void unfollow(struct pull *p)
{
    pthread_mutex_lock(&g_lock);
    if (--p->followers > 0) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    for (struct pull **pp = &g_pulls; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    pthread_join(p->th, NULL);
    jobs_remove(p->s, &p->link);
    free(p);
}

/* What a follower has reported so far. */
struct seen {
    int lines;          /* 0: none; 1: manifest; 2: downloading; 3: verify; 4: write */
    int64_t completed;
    int64_t at_ns;
};

static bool put_status(struct stream *st, const char *status)
{
    return stream_ndjson(st, json_pack("{s:s}", "status", status));
}

/* The progress lines Ollama streams, for what changed since `sn`: "pulling
 * manifest", "pulling ID" with completed and total (at most every
 * PULL_REPORT_MS), "verifying sha256 digest", "writing manifest", then
 * "success" or {"error"}. p is a snapshot. False once the client left. */
static bool report(struct stream *st, const struct pull *p, struct seen *sn)
{
    int64_t now = srv_now_ns();
    bool beat = now - sn->at_ns >= PULL_BEAT_MS * 1000000LL;
    if (sn->lines < 1 || (p->phase == PH_START && !p->finished && beat)) {
        if (!put_status(st, "pulling manifest"))
            return false;
        sn->lines = 1;
        sn->at_ns = now;
    }
    bool failed = p->finished && p->status != 200;
    bool past = p->finished || p->phase > PH_DOWNLOAD; /* the bytes are all there */
    bool due = sn->lines < 2 || now - sn->at_ns >= PULL_REPORT_MS * 1000000LL;
    bool news = sn->lines < 2 || p->completed != sn->completed;
    if ((p->phase == PH_DOWNLOAD || (past && !failed)) && sn->lines <= 2 &&
        ((news && (due || past)) || (!past && beat))) {
        const char *slash = strrchr(p->path, '/');
        char id[80];
        snprintf(id, sizeof id, "pulling %.12s",
                 p->want[0] ? p->want : slash ? slash + 1 : p->path);
        json_t *j = json_pack("{s:s,s:I}", "status", id, "completed", (json_int_t)p->completed);
        if (p->want[0]) {
            char digest[80];
            snprintf(digest, sizeof digest, "sha256:%s", p->want);
            json_object_set_new(j, "digest", json_string(digest));
        }
        if (p->total >= 0)
            json_object_set_new(j, "total", json_integer(p->total));
        if (!stream_ndjson(st, j))
            return false;
        sn->lines = 2;
        sn->completed = p->completed;
        sn->at_ns = now;
    }
    if (!failed && sn->lines < 3 && past) {
        if (!put_status(st, "verifying sha256 digest"))
            return false;
        sn->lines = 3;
    }
    if (!failed && sn->lines < 4 && (p->finished || p->phase >= PH_WRITE)) {
        if (!put_status(st, "writing manifest"))
            return false;
        sn->lines = 4;
    }
    if (p->finished)
        return failed ? stream_ndjson(st, json_pack("{s:s}", "error", p->msg))
                      : put_status(st, "success");
    return true;
}

/* Follows p until it finishes or the client leaves (st gone, or *gone
 * set). Reports to st when there is one. Returns the final status (0 when
 * the client left first), with the message into msg. */
static int follow(struct pull *p, struct stream *st, const int32_t *gone, char *msg, size_t cap)
{
    struct seen sn = {0, -1, 0};
    struct pull snap;
    int status = 0;
    memset(&snap, 0, sizeof snap);
    memcpy(snap.path, p->path, sizeof snap.path); /* immutable */
    pthread_mutex_lock(&g_lock);
    for (;;) {
        /* what g_lock guards, field by field (p->link is the jobs list's) */
        snap.phase = p->phase;
        snap.total = p->total;
        snap.completed = p->completed;
        snap.finished = p->finished;
        snap.status = p->status;
        memcpy(snap.want, p->want, sizeof snap.want);
        memcpy(snap.msg, p->msg, sizeof snap.msg);
        pthread_mutex_unlock(&g_lock);
        bool left = (st && (!report(st, &snap, &sn) || stream_gone(st))) ||
                    (gone && __atomic_load_n(gone, __ATOMIC_RELAXED));
        pthread_mutex_lock(&g_lock);
        if (snap.finished) {
            status = snap.status;
            snprintf(msg, cap, "%s", snap.msg);
            break;
        }
        if (left)
            break;
        struct timespec at = srv_realtime_after_ms(st ? PULL_REPORT_MS : 2 * PULL_REPORT_MS);
        if (p->completed == snap.completed && p->phase == snap.phase && !p->finished)
            pthread_cond_timedwait(&g_cond, &g_lock, &at);
    }
    pthread_mutex_unlock(&g_lock);
    return status;
}

struct follower {
    struct pull *p;
};

static void run_stream(struct stream *st, void *arg)
{
    struct follower *f = arg;
    char msg[sizeof f->p->msg];
    int status = follow(f->p, st, NULL, msg, sizeof msg);
    stream_account(st, status ? status : 499, 0, 0);
}

static void follower_free(void *arg)
{
    struct follower *f = arg;
    unfollow(f->p);
    free(f);
}

/* ---- POST /api/pull {model, insecure, stream} ----------------------------------- */

/* The pull for src's path: the one running, or a new one started. NULL
 * with msg and *status when none can start. */
static struct pull *join_or_start(struct srv *s, const char *role,
                                  const struct orch_role_source *src, uint64_t budget,
                                  bool insecure, char *msg, size_t cap, int *status)
{
    pthread_mutex_lock(&g_lock);
    struct pull *p = g_pulls;
    while (p && strcmp(p->path, src->path) != 0)
        p = p->next;
    if (p) {
        p->followers++;
        pthread_mutex_unlock(&g_lock);
        return p;
    }
    if (!(p = calloc(1, sizeof *p)) || strlen(src->url) >= sizeof p->url ||
        strlen(src->path) >= sizeof p->path) {
        pthread_mutex_unlock(&g_lock);
        *status = p ? 400 : 500;
        snprintf(msg, cap, p ? "the source URL or the path of '%s' is too long"
                             : "out of memory", role);
        free(p);
        return NULL;
    }
    p->s = s;
    snprintf(p->role, sizeof p->role, "%s", role);
    snprintf(p->path, sizeof p->path, "%s", src->path);
    snprintf(p->part, sizeof p->part, "%s.partial", src->path);
    snprintf(p->url, sizeof p->url, "%s", src->url);
    if (src->sha256) {
        snprintf(p->want, sizeof p->want, "%s", src->sha256);
        p->want_from = "the sha256 its config section gives";
    }
    p->insecure = insecure;
    char sz[32];
    if (budget) {
        p->limit = budget;
        orch_format_bytes(budget, sz, sizeof sz);
        snprintf(p->limit_why, sizeof p->limit_why,
                 "the memory budget (%s): a larger model could never load", sz);
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        p->limit = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : UINT64_MAX / 2;
        orch_format_bytes(p->limit, sz, sizeof sz);
        snprintf(p->limit_why, sizeof p->limit_why, "this machine's memory (%s)", sz);
    }
    p->total = -1;
    p->followers = 1;
    p->link = (struct job_link){.cancel = &p->cancel, .fd = -1};
    jobs_add(s, &p->link);
    if (pthread_create(&p->th, NULL, pull_main, p) != 0) {
        pthread_mutex_unlock(&g_lock);
        jobs_remove(s, &p->link);
        free(p);
        *status = 500;
        snprintf(msg, cap, "cannot start a thread");
        return NULL;
    }
    p->next = g_pulls;
    g_pulls = p;
    pthread_mutex_unlock(&g_lock);
    return p;
}

static enum MHD_Result pull(struct req *r)
{
    json_t *b = r->json;
    char msg[ORCH_ERROR_MSG_MAX + 512];
    json_t *stream = json_object_get(b, "stream"), *insecure = json_object_get(b, "insecure");
    if (json_kind(stream, "stream", 'b', msg, sizeof msg) ||
        json_kind(insecure, "insecure", 'b', msg, sizeof msg))
        return reply_olm_error(r, 400, "%s", msg);
    const char *name = json_string_value(json_object_get(b, "model"));
    if (!name)
        name = json_string_value(json_object_get(b, "name"));
    if (!name)
        return reply_olm_error(r, 400, "'model' must name a model to pull");
    struct orch_role_ref ref;
    if (srv_lookup_role(r->s, name, &ref) != ORCH_OK)
        return reply_olm_error(r, 404, "no model '%.64s': a pull fetches the file of a role "
                                       "whose config section names its source (path = FILE, "
                                       "source = URL)", name);
    if (!g_curl_ok)
        return reply_olm_error(r, 500, "libcurl did not start: no pulls");
    orch_config *cfg;
    orch_error err;
    if (srv_roles_config(&r->s->opts, &cfg, &err) != ORCH_OK)
        return reply_olm_error(r, 500, "%s", err.msg);
    struct orch_role_source src;
    int status = 400;
    struct pull *p = NULL;
    if (orch_config_role_source(cfg, orch_config_find_role(cfg, ref.name), &src) != ORCH_OK) {
        status = 404;
        snprintf(msg, sizeof msg, "no model '%.64s' in the config as it is now", ref.name);
    } else if (!src.url) {
        snprintf(msg, sizeof msg, "model '%s' has no source to pull from: give its section in "
                 "%s a source = URL of its GGUF file (and its sha256)", ref.name,
                 r->s->opts.config_path ? r->s->opts.config_path : "a config file (-c)");
    } else {
        p = join_or_start(r->s, ref.name, &src, orch_config_budget(cfg),
                          json_is_true(insecure), msg, sizeof msg, &status);
    }
    orch_config_free(cfg);
    if (!p)
        return reply_olm_error(r, status, "%s", msg);
    struct follower *f = malloc(sizeof *f);
    if (f && !json_is_false(stream)) {
        f->p = p;
        return reply_stream(r, "application/x-ndjson", run_stream, f, follower_free);
    }
    free(f);
    /* not streamed: the answer once it is done, or nothing once the client left */
    int32_t gone = 0;
    struct job_link link = {.cancel = &gone, .fd = srv_conn_fd(r->conn)};
    jobs_add(r->s, &link);
    status = follow(p, NULL, &gone, msg, sizeof msg);
    jobs_remove(r->s, &link);
    unfollow(p);
    if (status == 200)
        return reply_json(r, 200, json_pack("{s:s}", "status", "success"));
    return reply_olm_error(r, status ? status : 499, "%s",
                           status ? msg : "the client went away");
}

int pull_routes(struct routes *t)
{
    return routes_add(t, "POST", "/api/pull", pull, NULL, 0, 0);
}
