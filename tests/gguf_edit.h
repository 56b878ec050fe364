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
    int arr_type;        /* GE_U32, GE_I32 (arr), GE_F32 (farr), GE_STR (strs) */
    const int64_t *arr;
    size_t n_arr;
    const float *farr;
    const char *const *strs;
    const size_t *lens;  /* GE_STR: each string's length (NULL: strlen; lets one hold NUL) */
};

/* A change to the tensor table: every tensor whose name is `name` (or ends
 * with it when it starts with '*') gets ggml type `type` (its data refilled
 * from its old bytes, cycled) or is dropped. */
struct gguf_tensor_edit {
    const char *name;
    int type;            /* a ggml type; -1 keeps it */
    int remove;
};

/* Everything one rewrite does; rename_arch: when general.architecture is
 * edited, keys under the old architecture's prefix move to the new one (a
 * consistent key set, as a converter would write it). */
struct gguf_edits {
    const struct gguf_edit *kv;
    size_t n_kv;
    const struct gguf_tensor_edit *t;
    size_t n_t;
    int rename_arch;
};

/* Reads the GGUF file at src, applies the edits (a key that exists is
 * replaced in place, one that does not is appended; GE_REMOVE drops it) and
 * writes the result to dst. general.alignment edits move the data section
 * to the new alignment. Returns 0, or -1 with a message on stderr. */
int gguf_rewrite(const char *src, const char *dst, const struct gguf_edit *edits, size_t n_edits);

/* All of struct gguf_edits on a file in memory; *out is malloc'd. Returns 0,
 * or -1 (also when a new type does not fit a tensor's row length). */
int gguf_rewrite_ex(const unsigned char *in, size_t n_in, const struct gguf_edits *e,
                    unsigned char **out, size_t *n_out);
int gguf_rewrite_file(const char *src, const char *dst, const struct gguf_edits *e);

/* The same on a file already in memory; *out is malloc'd. */
int gguf_rewrite_mem(const unsigned char *in, size_t n_in, const struct gguf_edit *edits,
                     size_t n_edits, unsigned char **out, size_t *n_out);

/* The synthetic model's vocabulary (orch_synth_model, 1M parameters), as
 * the hostile-file builders rewrite it: <unk> <s> </s>, the 256 byte
 * tokens, then words; a builder changes a token, then writes tok/len and
 * types as the file's token arrays. */
#define SYNTH_N_VOCAB 2048
struct synth_vocab {
    char *tok[SYNTH_N_VOCAB];
    size_t len[SYNTH_N_VOCAB];
    int64_t types[SYNTH_N_VOCAB];
    char buf[SYNTH_N_VOCAB][16];
};
/* Puts v back to the synthetic model's vocabulary. */
void synth_vocab_reset(struct synth_vocab *v);

#endif
