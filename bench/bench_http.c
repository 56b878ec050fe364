/*
 * bench_http.c — an HTTP load generator for OpenAI-compatible servers:
 * C concurrent clients, each on a kept-alive loopback connection, send
 * POST /v1/completions until N requests are done; prints requests per
 * second, p50 and p99 latency, and generated tokens per second (from the
 * responses' usage). Used by bench/http.sh to put `orchestra serve` and
 * llama.cpp's llama-server side by side; asserts nothing.
 * usage: bench_http PORT CONCURRENCY REQUESTS MODEL MAX_TOKENS [EXTRA]
 * EXTRA: JSON members added to each request's body, such as
 * '"grammar":"root ::= ..."' (bench/grammar.sh); the default sampling is
 * greedy, EXTRA may set "temperature" and "seed" instead.
 */
#include "bench_net.h"
#include "bench_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct shared {
    int port;
    char body[8192];
    atomic_int next;
    int total;
    double *lat;
    atomic_long tokens;
    atomic_int failed;
};

/* One request; returns the completion tokens, or -1. */
static long post(int fd, const char *json)
{
    char resp[1 << 16];
    const char *body;
    if (bench_post(fd, "/v1/completions", json, resp, sizeof resp, &body) != 200)
        return -1;
    const char *ct = strstr(body, "\"completion_tokens\":");
    return ct ? atol(ct + 20) : 0;
}

static void *client(void *arg)
{
    struct shared *s = arg;
    int fd = bench_connect(s->port);
    for (;;) {
        int i = atomic_fetch_add(&s->next, 1);
        if (i >= s->total)
            break;
        double t0 = bench_now_ms();
        long t = fd >= 0 ? post(fd, s->body) : -1;
        s->lat[i] = bench_now_ms() - t0;
        if (t < 0) {
            atomic_fetch_add(&s->failed, 1);
            if (fd >= 0)
                close(fd);
            fd = bench_connect(s->port);
        } else {
            atomic_fetch_add(&s->tokens, t);
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: bench_http PORT CONCURRENCY REQUESTS MODEL MAX_TOKENS [EXTRA]\n");
        return 2;
    }
    struct shared s = {.port = atoi(argv[1]), .total = atoi(argv[3])};
    int conc = atoi(argv[2]);
    const char *extra = argc == 7 ? argv[6] : "\"temperature\":0";
    if ((size_t)snprintf(s.body, sizeof s.body,
                         "{\"model\":\"%s\",\"prompt\":\"Once upon a time there was\","
                         "\"max_tokens\":%d,%s}",
                         argv[4], atoi(argv[5]), extra) >= sizeof s.body) {
        fprintf(stderr, "bench_http: EXTRA is too long\n");
        return 2;
    }
    s.lat = calloc((size_t)s.total, sizeof *s.lat);
    pthread_t th[256];
    if (conc > 256)
        conc = 256;
    double t0 = bench_now_ms();
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, client, &s);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    double secs = (bench_now_ms() - t0) / 1e3;
    printf("%4d clients %5d requests: %7.2f req/s  p50 %8.1f ms  p99 %8.1f ms  %7.1f tok/s%s\n",
           conc, s.total, s.total / secs, bench_pct(s.lat, s.total, 0.5),
           bench_pct(s.lat, s.total, 0.99), (double)atomic_load(&s.tokens) / secs,
           atomic_load(&s.failed) ? "  (some failed)" : "");
    free(s.lat);
    return atomic_load(&s.failed) ? 1 : 0;
}
