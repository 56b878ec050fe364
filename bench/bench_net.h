/*
 * bench_net.h — a minimal HTTP/1.1 client for the benchmarks: kept-alive
 * loopback connections, one POST at a time, Content-Length responses.
 */
#ifndef ORCH_BENCH_NET_H
#define ORCH_BENCH_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connection to 127.0.0.1:port, or -1. */
static inline int bench_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* POSTs a JSON body on fd and reads the whole response into resp[cap].
 * Returns the HTTP status (-1 on a broken connection); *body points at the
 * response body inside resp. */
static inline int bench_post(int fd, const char *path, const char *json, char *resp, size_t cap,
                             const char **body)
{
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, strlen(json), json);
    if (write(fd, req, (size_t)n) != n)
        return -1;
    size_t got = 0;
    long want = -1;
    char *hdr_end = NULL;
    for (;;) {
        ssize_t r = read(fd, resp + got, cap - got - 1);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        resp[got] = '\0';
        if (!hdr_end && (hdr_end = strstr(resp, "\r\n\r\n"))) {
            const char *cl = strcasestr(resp, "Content-Length:");
            want = cl ? atol(cl + 15) : 0;
        }
        if (hdr_end && (long)(got - (size_t)(hdr_end + 4 - resp)) >= want)
            break;
    }
    *body = hdr_end + 4;
    return atoi(resp + 9);
}

#endif
