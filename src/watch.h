/*
 * watch.h — decodes in progress, seen from outside the process: a worker
 * process (worker/child.c) marks each llama_decode's start in a page its
 * supervisor (worker/parent.c) maps too, so that a decode that never ends
 * (an endless loop in a graph op, a wedged process) is seen and the worker
 * killed. Elsewhere (no page attached) the marks cost one load.
 */
#ifndef ORCH_WATCH_H
#define ORCH_WATCH_H

#include "internal.h"

#define ORCH_WATCH_SLOTS 64

/* The shared page: the CLOCK_MONOTONIC start (ns) of each decode in
 * progress, 0 for a free slot. */
struct orch__watch_page {
    _Atomic int64_t since_ns[ORCH_WATCH_SLOTS];
};

/* In the worker, once, before any decode: mark decodes in page.
 * Threads: any. */
void orch__watch_attach(struct orch__watch_page *page);

/* Around a decode: the slot its start is marked in (-1: none, no page or
 * every slot in use), and its end. Threads: the decoding one. */
int orch__watch_begin(void);
void orch__watch_end(int slot);

/* The start of the oldest decode in progress in page, 0 when none.
 * Threads: any (the supervisor's). */
int64_t orch__watch_oldest(const struct orch__watch_page *page);

#endif /* ORCH_WATCH_H */
