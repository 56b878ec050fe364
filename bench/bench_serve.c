/*
 * bench_serve.c — what the daemon adds to a request: one short greedy
 * completion through HTTP (POST /v1/completions on a kept-alive loopback
 * connection to `orchestra serve`) against the same request in process
 * (orch_generate on an orchestra over the same config), alternated, in one
 * run, through two daemons: the default (each model file in a worker
 * process) and --in-process. Prints p50 and p99 of each and the added
 * milliseconds.
 * usage: bench_serve [MODEL.gguf] [-n REQUESTS]
 */
#include <orchestra.h>

#include "bench_net.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ORCH_BIN
#define ORCH_BIN "orchestra"
#endif

/* One request on a kept-alive connection; returns the HTTP status. */
static int http_post(int fd, const char *path, const char *json, char *resp, size_t cap)
{
    const char *body;
    return bench_post(fd, path, json, resp, cap, &body);
}

/* `orchestra serve` on cfg (in_process: --in-process), its port to port_file. */
static pid_t start_daemon(const char *cfg, const char *port_file, bool in_process)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(ORCH_BIN, "orchestra", "-c", cfg, "serve", "--port", "0", "--port-file", port_file,
              in_process ? "--in-process" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The port a daemon wrote, or 0 after 5 s. */
static int wait_port(const char *port_file)
{
    int port = 0;
    for (int i = 0; i < 500 && !port; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (!port)
            usleep(10000);
    }
    return port;
}

int main(int argc, char **argv)
{
    const char *model = "../shared/models/stories260K.gguf";
    int n = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else
            model = argv[i];
    }
    if (access(model, R_OK) != 0) {
        printf("bench_serve: %s not found; nothing measured\n", model);
        return 0;
    }
    char abs_model[4096];
    if (!realpath(model, abs_model)) {
        printf("bench_serve: %s not found; nothing measured\n", model);
        return 0;
    }
    model = abs_model;
    char cfg_path[] = "/tmp/bench-serve-XXXXXX";
    int cfd = mkstemp(cfg_path);
    char ini[1200];
    int k = snprintf(ini, sizeof ini,
                     "[defaults]\nn_threads = 1\nidle_ttl = -1\n[story]\npath = %s\n", model);
    if (write(cfd, ini, (size_t)k) != k)
        return 1;
    close(cfd);
    pid_t pid[2];
    int port[2];
    char port_file[2][64];
    for (int d = 0; d < 2; d++) {
        snprintf(port_file[d], sizeof port_file[d], "%s.%d.port", cfg_path, d);
        pid[d] = start_daemon(cfg_path, port_file[d], d == 1);
        port[d] = wait_port(port_file[d]);
    }
    int fd = port[0] ? bench_connect(port[0]) : -1;    /* workers (the default) */
    int fd_in = port[1] ? bench_connect(port[1]) : -1; /* --in-process */
    orch_config *cfg;
    orch_orchestra *o;
    orch_error err;
    if (fd < 0 || fd_in < 0 || orch_config_load(cfg_path, &cfg, &err) ||
        orch_open(cfg, NULL, &o, &err)) {
        fprintf(stderr, "bench_serve: cannot start (%s)\n",
                fd < 0 || fd_in < 0 ? "daemon" : err.msg);
        kill(pid[0], SIGTERM);
        kill(pid[1], SIGTERM);
        return 1;
    }
    static const char body[] =
        "{\"model\":\"story\",\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}";
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 8;
    double *http = malloc((size_t)n * sizeof *http), *lib = malloc((size_t)n * sizeof *lib);
    double *inproc = malloc((size_t)n * sizeof *inproc);
    char resp[65536];
    /* warm both: load the model on each side */
    http_post(fd, "/v1/completions", body, resp, sizeof resp);
    http_post(fd_in, "/v1/completions", body, resp, sizeof resp);
    struct orch_gen_result res;
    orch_generate(o, "story", "Once upon a time", &gp, &res, &err);
    orch_gen_result_clear(&res);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double t0 = bench_now_ms();
        bad += http_post(fd, "/v1/completions", body, resp, sizeof resp) != 200;
        http[i] = bench_now_ms() - t0;
        t0 = bench_now_ms();
        bad += http_post(fd_in, "/v1/completions", body, resp, sizeof resp) != 200;
        inproc[i] = bench_now_ms() - t0;
        t0 = bench_now_ms();
        bad += orch_generate(o, "story", "Once upon a time", &gp, &res, &err) != ORCH_OK;
        lib[i] = bench_now_ms() - t0;
        orch_gen_result_clear(&res);
    }
    double h50 = bench_pct(http, n, 0.5), h99 = bench_pct(http, n, 0.99);
    double l50 = bench_pct(lib, n, 0.5), l99 = bench_pct(lib, n, 0.99);
    double i50 = bench_pct(inproc, n, 0.5), i99 = bench_pct(inproc, n, 0.99);
    printf("one greedy completion of 8 tokens (stories260K, 1 thread), %d requests each, "
           "alternated\n",
           n);
    printf("%34s %10s %10s\n", "", "p50 ms", "p99 ms");
    printf("%34s %10.3f %10.3f\n", "library, in process", l50, l99);
    printf("%34s %10.3f %10.3f\n", "HTTP, serve --in-process", i50, i99);
    printf("%34s %10.3f %10.3f\n", "HTTP, serve (a worker per file)", h50, h99);
    printf("%34s %10.3f %10.3f\n", "added by the daemon (in process)", i50 - l50, i99 - l99);
    printf("%34s %10.3f %10.3f\n", "added by the daemon (workers)", h50 - l50, h99 - l99);
    printf("%34s %10.3f %10.3f\n", "added by the worker", h50 - i50, h99 - i99);
    if (bad)
        printf("(%d requests failed)\n", bad);
    close(fd);
    close(fd_in);
    orch_close(o);
    orch_config_free(cfg);
    for (int d = 0; d < 2; d++) {
        kill(pid[d], SIGTERM);
        int st;
        waitpid(pid[d], &st, 0);
        remove(port_file[d]);
    }
    remove(cfg_path);
    free(inproc);
    free(http);
    free(lib);
    return bad ? 1 : 0;
}
