/*
 * worker/wire.c — frames over Unix stream sockets (wire.h).
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void wire_begin(struct wire_out *o, uint8_t type)
{
    o->b = (struct orch__buf){0};
    uint32_t len = 0;
    if (orch__buf_append(&o->b, (const char *)&len, sizeof len) ||
        orch__buf_append(&o->b, (const char *)&type, 1))
        orch__buf_free(&o->b);
}

bool wire_put(struct wire_out *o, const void *p, size_t n)
{
    if (!o->b.data)
        return false;
    if (n && orch__buf_append(&o->b, p, n)) {
        orch__buf_free(&o->b);
        return false;
    }
    return true;
}

bool wire_put_str(struct wire_out *o, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    uint32_t len = (uint32_t)n;
    return n < WIRE_FRAME_MAX && wire_put(o, &len, sizeof len) && wire_put(o, s, n);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int wire_send(int fd, struct wire_out *o)
{
    if (!o->b.data) {
        errno = ENOMEM;
        return -1;
    }
    if (o->b.len - 4 > WIRE_FRAME_MAX) {
        orch__buf_free(&o->b);
        errno = EMSGSIZE;
        return -1;
    }
    uint32_t len = (uint32_t)(o->b.len - 4);
    memcpy(o->b.data, &len, sizeof len);
    int rc = write_all(fd, o->b.data, o->b.len);
    orch__buf_free(&o->b);
    return rc;
}

int wire_send_fd(int fd, uint8_t type, int passed)
{
    char frame[5];
    uint32_t len = 1;
    memcpy(frame, &len, 4);
    frame[4] = (char)type;
    struct iovec iov = {.iov_base = frame, .iov_len = sizeof frame};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &passed, sizeof(int));
    for (;;) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        /* a stream socket takes 5 bytes whole or not at all in practice;
         * the rest, if any, goes plainly */
        return write_all(fd, frame + w, sizeof frame - (size_t)w);
    }
}

/* Reads exactly n bytes; the first read may carry a passed socket.
 * Returns 1, 0 at end of stream before any byte, -1 on error. */
static int read_all(int fd, char *p, size_t n, int *passed)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r;
        if (passed && *passed < 0) {
            struct iovec iov = {.iov_base = p + got, .iov_len = n - got};
            union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
            } c;
            struct msghdr m = {.msg_iov = &iov,
                               .msg_iovlen = 1,
                               .msg_control = c.buf,
                               .msg_controllen = sizeof c.buf};
            r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
            if (r > 0)
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
                    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
                        memcpy(passed, CMSG_DATA(h), sizeof(int));
        } else {
            r = recv(fd, p + got, n - got, 0);
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            if (got == 0)
                return 0;
            errno = EPROTO; /* cut mid-frame */
            return -1;
        }
        got += (size_t)r;
    }
    return 1;
}

int wire_recv(int fd, uint8_t *type, char **payload, size_t *len, int *passed)
{
    if (passed)
        *passed = -1;
    *payload = NULL;
    char head[5];
    int rc = read_all(fd, head, sizeof head, passed);
    if (rc <= 0)
        return rc;
    uint32_t n;
    memcpy(&n, head, 4);
    if (n < 1 || n > WIRE_FRAME_MAX) {
        errno = EPROTO;
        return -1;
    }
    *type = (uint8_t)head[4];
    *len = n - 1;
    *payload = malloc(*len + 1);
    if (!*payload) {
        errno = ENOMEM;
        return -1;
    }
    if (*len && (rc = read_all(fd, *payload, *len, NULL)) != 1) {
        if (rc == 0)
            errno = EPROTO;
        free(*payload);
        *payload = NULL;
        return -1;
    }
    (*payload)[*len] = 0;
    return 1;
}

bool wire_get(struct wire_in *in, void *out, size_t n)
{
    if (in->left < n)
        return false;
    memcpy(out, in->p, n);
    in->p += n;
    in->left -= n;
    return true;
}

bool wire_get_str(struct wire_in *in, const char **s, size_t *n)
{
    uint32_t len;
    if (!wire_get(in, &len, sizeof len) || in->left < len)
        return false;
    *s = in->p;
    *n = len;
    in->p += len;
    in->left -= len;
    return true;
}

bool wire_put_nstr(struct wire_out *o, const char *s)
{
    if (s)
        return wire_put_str(o, s);
    uint32_t none = WIRE_NULL;
    return wire_put(o, &none, sizeof none);
}

char **wire_get_nstrs(struct wire_in *in, size_t n)
{
    struct wire_in scan = *in;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t len;
        if (!wire_get(&scan, &len, sizeof len))
            return NULL;
        if (len == WIRE_NULL)
            continue;
        if (scan.left < len)
            return NULL;
        scan.p += len;
        scan.left -= len;
        bytes += (size_t)len + 1;
    }
    if (n > (SIZE_MAX - bytes - 1) / sizeof(char *))
        return NULL;
    char **v = malloc((n ? n : 1) * sizeof *v + bytes + 1);
    if (!v)
        return NULL;
    char *at = (char *)(v + n);
    for (size_t i = 0; i < n; i++) {
        uint32_t len = WIRE_NULL;
        wire_get(in, &len, sizeof len);
        if (len == WIRE_NULL) {
            v[i] = NULL;
            continue;
        }
        memcpy(at, in->p, len);
        at[len] = 0;
        in->p += len;
        in->left -= len;
        v[i] = at;
        at += len + 1;
    }
    return v;
}
