/*
 * watch.c — decodes in progress, marked in a page shared with a
 * supervisor (watch.h).
 */
#include "watch.h"

static _Atomic(struct orch__watch_page *) g_page;

void orch__watch_attach(struct orch__watch_page *page)
{
    atomic_store_explicit(&g_page, page, memory_order_release);
}

int orch__watch_begin(void)
{
    struct orch__watch_page *p = atomic_load_explicit(&g_page, memory_order_acquire);
    if (!p)
        return -1;
    int64_t now = orch__now_ns();
    for (int i = 0; i < ORCH_WATCH_SLOTS; i++) {
        int64_t free_slot = 0;
        if (atomic_compare_exchange_strong(&p->since_ns[i], &free_slot, now))
            return i;
    }
    return -1;
}

void orch__watch_end(int slot)
{
    struct orch__watch_page *p = atomic_load_explicit(&g_page, memory_order_acquire);
    if (p && slot >= 0)
        atomic_store(&p->since_ns[slot], 0);
}

int64_t orch__watch_oldest(const struct orch__watch_page *page)
{
    int64_t oldest = 0;
    for (int i = 0; i < ORCH_WATCH_SLOTS; i++) {
        int64_t t = atomic_load(&page->since_ns[i]);
        if (t && (!oldest || t < oldest))
            oldest = t;
    }
    return oldest;
}
