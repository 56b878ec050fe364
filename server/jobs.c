/*
 * jobs.c — the generations the daemon is running: a list of their cancel
 * flags, cut all at once at the drain deadline, and a thread that watches
 * the clients of non-streamed ones.
 *
 * DESIGN
 * A non-streamed request's connection thread is inside orch_generate until
 * the answer is made, so nobody reads its socket: a client that leaves
 * would keep its generation, its lease and its queue place to the last
 * token. The watcher polls those sockets (every JOBS_POLL_MS while any is
 * registered, asleep otherwise; woken by the first job after a sleep, it
 * waits a slice before it looks, so a stream of short requests wakes it
 * once a slice at most) and sets the flag of a job whose client
 * closed or reset; the generation stops within a token (the batching engine
 * reads the flag between steps). A closed client and one that half-closed
 * after its request look alike here: both are taken as gone, as Ollama's
 * and llama-server's servers do (a streamed request is told apart by its
 * writes: stream.c).
 *
 * LOCKING
 * jobs.t.lock guards the list, `cut` and `stop`. The watcher polls without
 * it, on copies of the sockets, and finds a job again by its id before it
 * sets a flag: a job that ended meanwhile (its socket perhaps reused) is
 * not touched.
 */
#include "jobs.h"
#include "reply.h"

#include <poll.h>
#include <stdlib.h>

#define JOBS_POLL_MS 50

static void *watch_main(void *arg)
{
    struct srv *s = arg;
    struct jobs *js = &s->jobs;
    struct pollfd *fds = malloc((size_t)js->cap * sizeof *fds);
    uint64_t *ids = malloc((size_t)js->cap * sizeof *ids);
    pthread_mutex_lock(&js->t.lock);
    while (!js->t.stop && fds && ids) {
        int n = 0;
        for (struct job_link *l = js->head; l && n < js->cap; l = l->next)
            if (l->fd >= 0 && !__atomic_load_n(l->cancel, __ATOMIC_RELAXED)) {
                fds[n] = (struct pollfd){.fd = l->fd, .events = POLLRDHUP};
                ids[n++] = l->id;
            }
        if (!n) {
            js->idle = true;
            pthread_cond_wait(&js->t.cond, &js->t.lock);
            js->idle = false;
            /* a job came: a short one ends before it is worth watching (and
             * the jobs after it, in this slice, wake nobody) */
            struct timespec ts = srv_realtime_after_ms(JOBS_POLL_MS);
            if (!js->t.stop)
                pthread_cond_timedwait(&js->t.cond, &js->t.lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&js->t.lock);
        int k = poll(fds, (nfds_t)n, JOBS_POLL_MS);
        pthread_mutex_lock(&js->t.lock);
        for (int i = 0; i < n && k > 0; i++) {
            if (!(fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
                continue;
            for (struct job_link *l = js->head; l; l = l->next)
                if (l->id == ids[i]) {
                    int32_t none = 0;
                    __atomic_compare_exchange_n(l->cancel, &none, JOB_CLIENT_GONE, false,
                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
                    break;
                }
        }
    }
    pthread_mutex_unlock(&js->t.lock);
    free(fds);
    free(ids);
    return NULL;
}

int jobs_start(struct srv *s)
{
    s->jobs.cap = (int)s->opts.conn_max + 64;
    return srv_thread_start(&s->jobs.t, watch_main, s);
}

void jobs_stop(struct srv *s)
{
    srv_thread_stop(&s->jobs.t);
}

void jobs_add(struct srv *s, struct job_link *l)
{
    struct jobs *js = &s->jobs;
    pthread_mutex_lock(&js->t.lock);
    l->id = ++js->next_id;
    l->prev = NULL;
    l->next = js->head;
    if (js->head)
        js->head->prev = l;
    js->head = l;
    if (js->cut)
        __atomic_store_n(l->cancel, JOB_CUT, __ATOMIC_RELAXED);
    if (l->fd >= 0 && js->idle)
        pthread_cond_signal(&js->t.cond);
    pthread_mutex_unlock(&js->t.lock);
}

void jobs_remove(struct srv *s, struct job_link *l)
{
    struct jobs *js = &s->jobs;
    pthread_mutex_lock(&js->t.lock);
    if (l->prev)
        l->prev->next = l->next;
    else
        js->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    pthread_mutex_unlock(&js->t.lock);
}

int64_t jobs_cut(struct srv *s)
{
    struct jobs *js = &s->jobs;
    int64_t n = 0;
    pthread_mutex_lock(&js->t.lock);
    js->cut = true;
    for (struct job_link *l = js->head; l; l = l->next, n++)
        __atomic_store_n(l->cancel, JOB_CUT, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&js->t.lock);
    return n;
}
