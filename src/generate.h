/*
 * generate.h — the generation layer (generate.c) for the orchestra: requests
 * on a model the calling thread already holds a lease on.
 */
#ifndef ORCH_GENERATE_H
#define ORCH_GENERATE_H

#include "model.h"

/* The context a request with n_ctx req_n_ctx runs in on m (0: the model's
 * own; ORCH_N_CTX_TRAIN: the trained size), in tokens. Threads: any, with
 * a lease on m. */
int32_t orch__gen_n_ctx(orch_model *m, int32_t req_n_ctx);

/* Whether a request asking for n_ctx and n_threads (0: the model's) runs
 * alone on m, in a context of its own (the rule in backend.h); embed: an
 * embedding request (its context is the model's). *n_ctx_out (may be NULL):
 * the context it runs in, in tokens. Threads: any, with a lease on m. */
bool orch__gen_alone(orch_model *m, int32_t n_ctx, int32_t n_threads, bool embed,
                     int32_t *n_ctx_out);

/* Requests on a model the calling thread holds a lease on.
 * Same arguments, results and errors as the public orch_model_ functions,
 * but errors name no role: the public entry point adds it once. */
int orch__generate_leased(orch_model *m, const char *prompt, bool parse_special,
                          const struct orch_gen_params *params, struct orch_gen_result *res,
                          orch_error *err);
/* orch__generate_leased with a backend's constraint (backend.h; NULL = free). */
int orch__generate_constrained(orch_model *m, const char *prompt, bool parse_special,
                               const char *constraint, const struct orch_gen_params *params,
                               struct orch_gen_result *res, orch_error *err);
int orch__embed_leased(orch_model *m, const char *const *texts, size_t n_texts,
                       const struct orch_embed_params *params, float **out, int32_t *n_embd,
                       orch_error *err);

/* ORCH_EINVAL naming `what` when s is NULL or not UTF-8. */
int orch__check_text(const char *what, const char *s, orch_error *err);
/* rc, with "role 'R': " put before err's message when rc is an error. */
int orch__named(orch_model *m, int rc, orch_error *err);

#endif /* ORCH_GENERATE_H */
