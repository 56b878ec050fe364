/*
 * backend.c — the layer that owns backends: which one a model uses, and
 * what the layers above ask of any backend through its ops (a name, an
 * estimate of a load). The backends themselves are backend_fake.c and
 * llama/; this file is the only one above them that names one.
 */
#include "backend.h"

const orch_backend *orch__backend_pick(const orch_backend *asked)
{
    return asked ? asked : orch_backend_llama();
}

const char *orch_backend_name(const orch_backend *be)
{
    return be ? be->ops->name : NULL;
}

int32_t orch__backend_faults(const orch_backend *be, const char *path, char *last, size_t cap,
                             bool *refused)
{
    *refused = false;
    if (cap)
        last[0] = '\0';
    return be->ops->faults ? be->ops->faults(be, path, last, cap, refused) : 0;
}

int orch__backend_estimate(const orch_backend *be, const char *path, int32_t n_ctx,
                           int32_t n_seq, uint64_t *weights, uint64_t *context, orch_error *err)
{
    if (be->ops->estimate)
        return be->ops->estimate(be, path, n_ctx, n_seq, weights, context, err);
    uint64_t size;
    int rc = orch__check_model_file(path, &size, err);
    if (rc == ORCH_OK) {
        *weights = size;
        *context = 0;
    }
    return rc;
}
