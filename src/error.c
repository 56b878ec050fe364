/*
 * error.c — status codes, their names, and filling orch_error.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *orch_strerror(int code)
{
    switch (code) {
#define XX(name, val, desc)                                                                       \
    case ORCH_##name:                                                                             \
        return desc;
        ORCH_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *orch_err_name(int code)
{
    switch (code) {
#define XX(name, val, desc)                                                                       \
    case ORCH_##name:                                                                             \
        return "ORCH_" #name;
        ORCH_ERRNO_MAP(XX)
#undef XX
    }
    return "ORCH_UNKNOWN";
}

int orch__err(orch_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void orch__err_prefix(orch_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[160], tmp[ORCH_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(tmp, sizeof tmp, "%.150s: %.350s", prefix, err->msg);
    memcpy(err->msg, tmp, sizeof tmp);
}

int orch__err_errno(orch_error *err, int errnum, const char *what, const char *path)
{
    int code;
    switch (errnum) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP:        /* a symlink loop leads to no file */
    case ENAMETOOLONG:
        code = ORCH_ENOENT;
        break;
    case EACCES:
    case EPERM:
        code = ORCH_EACCES;
        break;
    case EISDIR:
        code = ORCH_EISDIR;
        break;
    case ENOMEM:
        code = ORCH_ENOMEM;
        break;
    default:
        code = ORCH_EIO;
        break;
    }
    return orch__err(err, code, "%s '%s': %s", what, path, strerror(errnum));
}

const char *orch_version(void)
{
    return ORCH_VERSION;
}

void orch_free(void *p)
{
    free(p);
}
