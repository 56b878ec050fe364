/*
 * model.h — the model layer's internals (model.c) for the layers above it:
 * generate.c runs requests on the backend object behind a lease, orchestra.c
 * sets its budget hooks and unloads by policy. Nothing here is public.
 */
#ifndef ORCH_MODEL_H
#define ORCH_MODEL_H

#include "backend.h"

/* The backend model behind a lease, its backend and its settings. */
void *orch__model_backend_obj(orch_model *m);
const orch_backend *orch__model_backend(const orch_model *m);
const struct orch_model_params *orch__model_params(const orch_model *m);

/* Hooks the orchestra sets on its models (before any use). All are called
 * with no lock of the model held. */
struct orch__model_hooks {
    /* before a backend load, on the loading thread; an error fails the load
     * without running it (nothing was admitted) */
    int (*admit)(void *ud, orch_model *m, orch_error *err);
    /* after a successful load */
    void (*loaded)(void *ud, orch_model *m, uint64_t bytes);
    /* after an admitted load failed (no lock held), or as the backend model
     * is freed (with the model's lock held: take no model lock in it) */
    void (*gone)(void *ud, orch_model *m);
};
void orch__model_set_hooks(orch_model *m, const struct orch__model_hooks *hooks, void *ud);
void *orch__model_hooks_ud(const orch_model *m);

/* orch_model_load / orch_model_acquire without the "role 'x': " prefix on
 * errors: for callers that add their own (the orchestra names the role the
 * request asked for). */
int orch__model_load(orch_model *m, orch_error *err);
int orch__model_acquire(orch_model *m, orch_error *err);

/* True while a load in flight has been asked to stop (orch_model_cancel_load
 * or the progress callback); the admit hook polls it while it waits. */
bool orch__model_load_cancelled(const orch_model *m);

/* Leases out now (relaxed read; a hint). */
int64_t orch__model_n_leases(const orch_model *m);

/* Waits until the model is neither LOADING nor DRAINING. */
void orch__model_wait_unloaded(orch_model *m);

/* Unload with a reason for the log ("explicit", "idle", "budget", "close"). */
int orch__model_unload_reason(orch_model *m, const char *reason);

/* Unloads only if READY with no lease out, atomically with respect to
 * acquire (no lease can slip in). Returns true when it unloaded. */
bool orch__model_unload_if_idle(orch_model *m, const char *reason);

#endif /* ORCH_MODEL_H */
