/*
 * gguf_edit.h — rewrite a GGUF file's metadata for tests: set, add or remove
 * keys and keep the tensors. Used to build hostile files one condition at a
 * time (tests/test-gguf.c) and by the pre-check's fuzz target.
 */
#ifndef ORCH_GGUF_EDIT_H
#define ORCH_GGUF_EDIT_H

#include <stddef.h>
#include <stdint.h>

enum { GE_U32 = 4, GE_I32 = 5, GE_F32 = 6, GE_BOOL = 7, GE_STR = 8, GE_ARR = 9, GE_U64 = 10,
       GE_REMOVE = -1 };

struct gguf_edit {
    const char *key;     /* "{arch}." at its start is replaced by the file's architecture */
    int type;            /* GE_*; GE_ARR: an array of arr_type */
    int64_t i;           /* integer, bool */
    float f;
    const char *s;       /* string */
    int arr_type;        /* GE_U32, GE_I32 */
    const int64_t *arr;
    size_t n_arr;
};

/* Reads the GGUF file at src, applies the edits (a key that exists is
 * replaced in place, one that does not is appended; GE_REMOVE drops it) and
 * writes the result to dst. general.alignment edits move the data section
 * to the new alignment. Returns 0, or -1 with a message on stderr. */
int gguf_rewrite(const char *src, const char *dst, const struct gguf_edit *edits, size_t n_edits);

/* The same on a file already in memory; *out is malloc'd. */
int gguf_rewrite_mem(const unsigned char *in, size_t n_in, const struct gguf_edit *edits,
                     size_t n_edits, unsigned char **out, size_t *n_out);

#endif
