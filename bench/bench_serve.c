/*
 * bench_serve.c — what the daemon adds to a request: one short greedy
 * completion through HTTP (POST /v1/completions on a kept-alive loopback
 * connection to `orchestra serve`) against the same request in process
 * (orch_generate on an orchestra over the same config), alternated, in one
 * run, through two daemons: the default (each model file in a worker
 * process) and --in-process, and with -b through a third, another build's
 * `serve --in-process` (the baseline: what a change is held to). Prints p50
 * and p99 of each and the added milliseconds.
 * usage: bench_serve [MODEL.gguf] [-n REQUESTS] [-b BASELINE_ORCHESTRA]
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

/* `bin serve` on cfg (in_process: --in-process), its port to port_file. */
static pid_t start_daemon(const char *bin, const char *cfg, const char *port_file,
                          bool in_process)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(bin, "orchestra", "-c", cfg, "serve", "--port", "0", "--port-file", port_file,
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

/* One daemon the requests go to, and its latencies. */
struct side {
    const char *label, *bin;
    bool in_process;
    pid_t pid;
    int fd;
    char port_file[64];
    double *t;
};

static void stop_sides(struct side *sd, int n_sides)
{
    for (int d = 0; d < n_sides; d++) {
        if (sd[d].fd >= 0)
            close(sd[d].fd);
        if (sd[d].pid > 0) {
            kill(sd[d].pid, SIGTERM);
            int st;
            waitpid(sd[d].pid, &st, 0);
        }
        remove(sd[d].port_file);
        free(sd[d].t);
    }
}

int main(int argc, char **argv)
{
    const char *model = "../shared/models/stories260K.gguf", *baseline = NULL;
    int n = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc)
            baseline = argv[++i];
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
    struct side sd[3] = {
        {"HTTP, serve (a worker per file)", ORCH_BIN, false},
        {"HTTP, serve --in-process", ORCH_BIN, true},
        {"HTTP, baseline --in-process", baseline, true},
    };
    int n_sides = baseline ? 3 : 2, ok = 1;
    for (int d = 0; d < n_sides; d++) {
        snprintf(sd[d].port_file, sizeof sd[d].port_file, "%s.%d.port", cfg_path, d);
        sd[d].pid = start_daemon(sd[d].bin, cfg_path, sd[d].port_file, sd[d].in_process);
        int port = wait_port(sd[d].port_file);
        sd[d].fd = port ? bench_connect(port) : -1;
        sd[d].t = malloc((size_t)n * sizeof *sd[d].t);
        ok &= sd[d].fd >= 0 && sd[d].t;
    }
    orch_config *cfg;
    orch_orchestra *o;
    orch_error err;
    if (!ok || orch_config_load(cfg_path, &cfg, &err) || orch_open(cfg, NULL, &o, &err)) {
        fprintf(stderr, "bench_serve: cannot start (%s)\n", !ok ? "daemon" : err.msg);
        stop_sides(sd, n_sides);
        return 1;
    }
    static const char body[] =
        "{\"model\":\"story\",\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}";
    struct orch_gen_params gp = orch_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 8;
    double *lib = malloc((size_t)n * sizeof *lib);
    char resp[65536];
    /* warm every side: load the model on each */
    for (int d = 0; d < n_sides; d++)
        http_post(sd[d].fd, "/v1/completions", body, resp, sizeof resp);
    struct orch_gen_result res;
    orch_generate(o, "story", "Once upon a time", &gp, &res, &err);
    orch_gen_result_clear(&res);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double t0;
        for (int d = 0; d < n_sides; d++) {
            t0 = bench_now_ms();
            bad += http_post(sd[d].fd, "/v1/completions", body, resp, sizeof resp) != 200;
            sd[d].t[i] = bench_now_ms() - t0;
        }
        t0 = bench_now_ms();
        bad += orch_generate(o, "story", "Once upon a time", &gp, &res, &err) != ORCH_OK;
        lib[i] = bench_now_ms() - t0;
        orch_gen_result_clear(&res);
    }
    double p50[3], p99[3], l50 = bench_pct(lib, n, 0.5), l99 = bench_pct(lib, n, 0.99);
    for (int d = 0; d < n_sides; d++) {
        p50[d] = bench_pct(sd[d].t, n, 0.5);
        p99[d] = bench_pct(sd[d].t, n, 0.99);
    }
    printf("one greedy completion of 8 tokens (stories260K, 1 thread), %d requests each, "
           "alternated\n",
           n);
    printf("%34s %10s %10s\n", "", "p50 ms", "p99 ms");
    printf("%34s %10.3f %10.3f\n", "library, in process", l50, l99);
    for (int d = n_sides - 1; d >= 0; d--)
        printf("%34s %10.3f %10.3f\n", sd[d].label, p50[d], p99[d]);
    printf("%34s %10.3f %10.3f\n", "added by the daemon (in process)", p50[1] - l50,
           p99[1] - l99);
    printf("%34s %10.3f %10.3f\n", "added by the daemon (workers)", p50[0] - l50, p99[0] - l99);
    printf("%34s %10.3f %10.3f\n", "added by the worker", p50[0] - p50[1], p99[0] - p99[1]);
    if (baseline)
        printf("%34s %10.3f %10.3f\n", "workers against the baseline", p50[0] - p50[2],
               p99[0] - p99[2]);
    if (bad)
        printf("(%d requests failed)\n", bad);
    orch_close(o);
    orch_config_free(cfg);
    stop_sides(sd, n_sides);
    remove(cfg_path);
    free(lib);
    return bad ? 1 : 0;
}
