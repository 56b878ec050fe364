/*
 * cli_http.c — the one HTTP request the command makes: a POST of a small
 * JSON body to a running `orchestra serve` (plain HTTP, the daemon's own
 * loopback default), reading the whole answer.
 */
#include "cli.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* "http://HOST[:PORT]" (a trailing '/' allowed) into host and port. */
static bool parse_url(const char *url, char *host, size_t cap, char *port, size_t pcap)
{
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7, *end = h + strcspn(h, "/");
    if (end[0] == '/' && end[1])
        return false; /* a base URL, no path */
    const char *colon = memchr(h, ':', (size_t)(end - h));
    size_t hl = (size_t)((colon ? colon : end) - h);
    if (!hl || hl >= cap)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);
        if (!pl || pl >= pcap || strspn(colon + 1, "0123456789") < pl)
            return false;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
    } else {
        snprintf(port, pcap, "80");
    }
    return true;
}

int cli_http_post(const char *url, const char *path, const char *api_key, const char *json,
                  int timeout_s, int *status, char **body, char *why, size_t why_cap)
{
    return cli_http(url, "POST", path, api_key, json, timeout_s, status, body, why, why_cap);
}

int cli_http(const char *url, const char *method, const char *path, const char *api_key,
             const char *json, int timeout_s, int *status, char **body, char *why,
             size_t why_cap)
{
    *body = NULL;
    char host[256], port[16];
    if (!parse_url(url, host, sizeof host, port, sizeof port)) {
        snprintf(why, why_cap, "'%s' is not a daemon URL (expected http://HOST:PORT)", url);
        return EXIT_USAGE;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) {
        snprintf(why, why_cap, "%s: %s", url, gai_strerror(g));
        return EXIT_FAIL;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = timeout_s};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(why, why_cap, "cannot reach the daemon at %s: %s", url, strerror(err));
        return EXIT_FAIL;
    }
    char auth[600] = "";
    if (api_key && *api_key)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.500s\r\n", api_key);
    size_t jl = json ? strlen(json) : 0;
    char head[1024];
    int hn = json ? snprintf(head, sizeof head,
                             "%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json"
                             "\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                             method, path, host, port, auth, jl)
                  : snprintf(head, sizeof head,
                             "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%sConnection: close\r\n\r\n",
                             method, path, host, port, auth);
    bool sent = hn > 0 && (size_t)hn < sizeof head && write(fd, head, (size_t)hn) == hn &&
                (!jl || write(fd, json, jl) == (ssize_t)jl);
    size_t cap = 4096, len = 0;
    char *resp = sent ? malloc(cap) : NULL;
    while (resp) {
        if (len + 1 == cap) {
            char *r2 = cap < (1u << 20) ? realloc(resp, cap * 2) : NULL;
            if (!r2) {
                free(resp);
                resp = NULL;
                break;
            }
            resp = r2;
            cap *= 2;
        }
        ssize_t r = read(fd, resp + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    int rerr = errno;
    close(fd);
    char *sep = resp ? (resp[len] = '\0', strstr(resp, "\r\n\r\n")) : NULL;
    if (!sep || strncmp(resp, "HTTP/1.", 7) != 0 || len < 12) {
        snprintf(why, why_cap, "no answer from the daemon at %s%s%s", url, rerr ? ": " : "",
                 rerr ? strerror(rerr) : "");
        free(resp);
        return EXIT_FAIL;
    }
    *status = atoi(resp + 9);
    memmove(resp, sep + 4, strlen(sep + 4) + 1);
    *body = resp;
    return EXIT_OK;
}
