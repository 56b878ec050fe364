/*
 * config.h — the parsed configuration, shared by config.c and orchestra.c.
 */
#ifndef ORCH_CONFIG_H
#define ORCH_CONFIG_H

#include "internal.h"

/* One section. In a parsed config `set` says which keys the section gave;
 * orch__config_resolve() fills every field (borrowing the strings). */
struct orch__role_cfg {
    char *name;
    int line;            /* line of the section header, 0 when not from a file */
    unsigned set;        /* bit per key (see the key table in config.c) */
    char *path;
    char *fallback;
    char *fallback_where;  /* "file:line" or "environment ORCH_X_FALLBACK", for messages */
    int32_t n_ctx;
    int32_t n_ctx_max;   /* a request's n_ctx past it is ORCH_ECTX; 0 = no limit */
    int32_t n_gpu_layers;
    int32_t n_threads;
    int32_t n_parallel;
    int32_t stream_latency_ms; /* orch_model_params.stream_latency_ms */
    bool repack;
    bool vet;            /* load, tokenize and decode in a child first (orch_model_params) */
    bool embedding;
    bool pin;
    int64_t idle_ttl_s;
    struct orch_gen_params gen; /* temperature, top_p, top_k, min_p, repeat_penalty, max_tokens */
    char **stop;
    size_t n_stop;
    char *chat_template;   /* a Jinja chat template file replacing the model's; NULL */
    char *source;          /* the URL /api/pull fetches path from; NULL (never inherited) */
    char *sha256;          /* the file's sha256, lowercase hex; NULL (never inherited) */
    int32_t reasoning;     /* enum orch_reasoning for chats that do not say; 0 = split */
    char **aliases;        /* other names the role answers to (never from [defaults]) */
    size_t n_aliases;
};

struct orch_config {
    char *name;                    /* file name, for messages */
    char *base_dir;                /* the file's folder: relative paths in it
                                      are relative to it; NULL = none */
    struct orch__role_cfg defaults;
    struct orch__role_cfg *roles;  /* in file order */
    size_t n_roles;
    size_t *index;                 /* roles by name: open addressing, index + 1
                                      (0 = empty); index_cap slots, a power of 2 */
    size_t index_cap;
    uint64_t budget;               /* bytes, 0 = none */
    int64_t load_timeout_ms;       /* how long a load waits for memory; default 60 s */
    int32_t n_threads_total;       /* the process's CPU budget; 0 = one per CPU;
                                      -1 = not set (leave it as it is) */
};

/* Index of `role`, or (size_t)-1. */
size_t orch__config_find(const orch_config *cfg, const char *role);

/* For each role, the index of the role whose path serves it (following
 * fallbacks), in n log n. Returns ORCH_OK, or ORCH_ECONFIG naming where a
 * fallback to a missing role or a cycle was written, or ORCH_ENOMEM.
 * model_of holds n_roles entries. */
int orch__config_model_roles(const orch_config *cfg, size_t *model_of, orch_error *err);

/* Index of the role named `name` or having it as an alias, or (size_t)-1. */
size_t orch__config_find_any(const orch_config *cfg, const char *name);

/* "a, b, c": the config's role names, for messages. */
void orch__config_role_list(const orch_config *cfg, char *buf, size_t cap);

/* Effective settings of role i: its own, else [defaults], else built-in.
 * Strings are borrowed from cfg. */
void orch__config_resolve(const orch_config *cfg, size_t i, struct orch__role_cfg *out);

#endif /* ORCH_CONFIG_H */
