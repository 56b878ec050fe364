/*
 * route.c — the route table. A handful of routes: a linear scan is the
 * fastest and simplest lookup (the table is immutable once the daemon
 * listens, so lookups take no lock).
 */
#include "route.h"

#include <stdio.h>
#include <string.h>

int routes_add(struct routes *t, const char *method, const char *path, route_fn fn,
               const char *endpoint, int arg, unsigned flags)
{
    if (t->n == ROUTES_MAX)
        return -1;
    t->r[t->n++] = (struct route){method, path, fn, endpoint ? endpoint : path, arg, flags};
    return 0;
}

bool route_takes_body(const struct route *rt)
{
    return strcmp(rt->method, "POST") == 0 || strcmp(rt->method, "DELETE") == 0;
}

static bool path_matches(const struct route *rt, const char *path, bool prefix)
{
    if (prefix != ((rt->flags & ROUTE_PREFIX) != 0))
        return false;
    if (!prefix)
        return strcmp(rt->path, path) == 0;
    size_t n = strlen(rt->path);
    return strncmp(rt->path, path, n) == 0 && path[n];
}

const struct route *routes_find(const struct routes *t, const char *method, const char *path,
                                bool *path_known, char *allow, size_t cap)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    size_t used = 0;
    *path_known = false;
    if (cap)
        allow[0] = '\0';
    for (int prefix = 0; prefix < 2; prefix++)
        for (size_t i = 0; i < t->n; i++) {
            const struct route *rt = &t->r[i];
            if (!path_matches(rt, path, prefix))
                continue;
            if (strcmp(rt->method, m) == 0)
                return rt;
            *path_known = true;
            if (!strstr(allow, rt->method) && used < cap) {
                int k = snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", rt->method);
                used = k > 0 && (size_t)k < cap - used ? used + (size_t)k : cap;
            }
        }
    return NULL;
}
