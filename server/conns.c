/*
 * conns.c — the daemon's connections: who may hold a slot, and for how long.
 *
 * DESIGN
 * libmicrohttpd runs a thread per connection up to a hard limit and closes
 * (resets) what comes past it, and its idle timer restarts with every byte:
 * 64 clients sending a byte every few seconds held every slot forever, and
 * everyone else, /health included, got resets. Here:
 *  - a connection waiting for a request (between requests, or while its
 *    headers trickle in) may do so for --idle-timeout in all, and a body may
 *    take as long again, however the bytes come: the reaper shuts the
 *    socket down past that (the connection's thread sees its end and goes);
 *  - at --max-connections, a new connection evicts the one that has waited
 *    longest for a request, at least EVICT_AFTER_MS (an idle kept-alive
 *    client, or a slow one that never finished its headers), so a client
 *    that is ready always gets in;
 *  - when no connection can be evicted, up to three times as many again are
 *    taken and answered at once: 503 with Retry-After and Connection: close
 *    (/health is answered as usual); only past that does libmicrohttpd close
 *    connections unanswered.
 *
 * LOCKING
 * conns.t.lock guards the list and its counts. A connection's entry is made
 * at MHD's STARTED notification and freed at CLOSED, both before libmicro-
 * httpd closes the socket, so a socket shut down under the lock is still
 * that connection's.
 */
#include "conns.h"
#include "reply.h"

#include <stdlib.h>
#include <sys/socket.h>

#define CONNS_TICK_MS 1000
#define EVICT_AFTER_MS 1000 /* a connection this new is about to send its request */

struct conn {
    struct conn *prev, *next;
    int fd;
    int state;
    int64_t since_ns; /* in this state since */
    bool cut;         /* shut down by us, closing */
    bool over;        /* taken past the cap: answered 503 */
};

static void cut(struct srv *s, struct conn *c, const char *why)
{
    if (!c->over)
        s->conns.n_live--; /* its slot is free: the socket is on its way out */
    c->cut = true;
    shutdown(c->fd, SHUT_RDWR);
    s->conns.n_cut++;
    struct orch_log_field f[] = {{"why", why, 0}};
    orch_log_event(ORCH_LOG_INFO, NULL, "connection_cut", f, 1);
}

unsigned conns_hard_limit(const struct srv *s)
{
    return 4 * s->opts.conn_max;
}

enum MHD_Result conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct srv *s = cls;
    struct conns *cs = &s->conns;
    pthread_mutex_lock(&cs->t.lock);
    if (cs->n_live >= s->opts.conn_max) {
        struct conn *oldest = NULL;
        int64_t before = srv_now_ns() - (int64_t)EVICT_AFTER_MS * 1000000;
        for (struct conn *c = cs->head; c; c = c->next)
            if (c->state == CONN_WAITING && !c->cut && !c->over && c->since_ns < before &&
                (!oldest || c->since_ns < oldest->since_ns))
                oldest = c;
        if (oldest)
            cut(s, oldest, "evicted: the longest wait for a request, at the connection cap");
        else
            cs->next_over = true;
    }
    pthread_mutex_unlock(&cs->t.lock);
    return MHD_YES;
}

void conns_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode what)
{
    struct srv *s = cls;
    struct conns *cs = &s->conns;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn *c = calloc(1, sizeof *c);
        pthread_mutex_lock(&cs->t.lock);
        if (c) {
            c->fd = srv_conn_fd(conn);
            c->since_ns = srv_now_ns();
            c->over = cs->next_over;
            c->next = cs->head;
            if (cs->head)
                cs->head->prev = c;
            cs->head = c;
            if (!c->over)
                cs->n_live++;
            if (cs->idle)
                pthread_cond_signal(&cs->t.cond);
        }
        cs->next_over = false;
        pthread_mutex_unlock(&cs->t.lock);
        *socket_context = c;
        return;
    }
    struct conn *c = *socket_context;
    if (!c)
        return;
    pthread_mutex_lock(&cs->t.lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (!c->over && !c->cut)
        cs->n_live--;
    pthread_mutex_unlock(&cs->t.lock);
    free(c);
    *socket_context = NULL;
}

bool conns_mark(struct srv *s, struct MHD_Connection *conn, int state)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *c = ci ? ci->socket_context : NULL;
    if (!c)
        return false;
    pthread_mutex_lock(&s->conns.t.lock);
    c->state = state;
    c->since_ns = srv_now_ns();
    bool over = c->over;
    pthread_mutex_unlock(&s->conns.t.lock);
    return over;
}

static void *reaper_main(void *arg)
{
    struct srv *s = arg;
    struct conns *cs = &s->conns;
    int64_t limit = (int64_t)s->opts.timeout_s * 1000000000;
    pthread_mutex_lock(&cs->t.lock);
    while (!cs->t.stop) {
        if (!cs->head) {
            cs->idle = true;
            pthread_cond_wait(&cs->t.cond, &cs->t.lock);
            cs->idle = false;
            continue;
        }
        int64_t now = srv_now_ns();
        for (struct conn *c = cs->head; c; c = c->next) {
            if (c->cut || c->state == CONN_BUSY || now - c->since_ns <= limit)
                continue;
            cut(s, c, c->state == CONN_WAITING ? "no whole request within the idle timeout"
                                               : "no whole body within the idle timeout");
        }
        struct timespec ts = srv_realtime_after_ms(CONNS_TICK_MS);
        pthread_cond_timedwait(&cs->t.cond, &cs->t.lock, &ts);
    }
    pthread_mutex_unlock(&cs->t.lock);
    return NULL;
}

int conns_start(struct srv *s)
{
    return srv_thread_start(&s->conns.t, reaper_main, s);
}

void conns_stop(struct srv *s)
{
    srv_thread_stop(&s->conns.t);
}
