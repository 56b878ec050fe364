/*
 * worker/wire.h — the frames a daemon and its worker processes exchange
 * over Unix stream sockets (worker/parent.c, worker/child.c).
 *
 * A frame is a 4-byte length (host order: both ends are the same build on
 * the same machine), a 1-byte type, and length - 1 bytes of payload. The
 * payloads are the structs below, copied as they are, then strings or
 * bytes. A worker is the same executable as its daemon (it checks
 * WIRE_MAGIC first), so the structs agree.
 *
 * Sockets: one control socket per worker (load, then request sockets
 * passed over it with SCM_RIGHTS); one socket per request, closed by both
 * when it ends. A request's client side half-closes (SHUT_WR) to cancel.
 */
#ifndef ORCH_WORKER_WIRE_H
#define ORCH_WORKER_WIRE_H

#include "../internal.h"

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC     0x4f524331u /* "ORC1" */
#define WIRE_FRAME_MAX (UINT32_C(1) << 30)

enum wire_type {
    /* control socket, daemon to worker */
    W_LOAD = 'L',    /* struct wire_load, path\0, role\0 */
    W_REQUEST = 'R', /* a request socket rides along (SCM_RIGHTS); no payload */
    /* control socket, worker to daemon */
    W_HELLO = 'h',    /* uint32_t WIRE_MAGIC, first thing a worker sends */
    W_PROGRESS = 'p', /* float fraction */
    W_LOADED = 'l',   /* struct wire_loaded */
    /* request socket, daemon to worker: the request */
    W_GEN = 'G',   /* struct wire_gen, prompt bytes */
    W_EMBED = 'M', /* struct wire_embed, then per text: uint32_t len, bytes */
    W_CHAT = 'C',  /* struct wire_chat, n_msgs uint32_t tool-call counts, then
                      nullable strings: the request's six (wire_chat_strs),
                      per message five (role, content, tool_call_id, name,
                      reasoning) and three per tool call (id, name, arguments) */
    /* request socket, worker to daemon */
    W_PIECE = 't', /* piece bytes */
    W_DONE = 'd',  /* struct wire_done, then the error message, the text or the vectors */
};

struct wire_load {
    int32_t n_gpu_layers, n_ctx, n_threads, n_batch, n_parallel, stream_latency_ms;
    uint8_t use_mmap, use_mlock, no_repack, vet;
};

struct wire_loaded {
    int32_t rc; /* ORCH_OK, else an error message follows */
    uint64_t size;
    struct orch_model_info info;
};

struct wire_gen {
    struct orch_gen_params params; /* pointers zeroed */
    int32_t n_ctx, n_threads, n_batch;
    uint8_t parse_special;
    uint8_t batch; /* pieces in the done frame (uint32_t len, bytes each), not one by one */
    uint32_t constraint_len; /* 0: none; else that many bytes before the prompt's */
    uint32_t n_prefix;       /* int32_t tokens before the constraint (gen_req.prefix) */
    uint8_t want_tokens;     /* the done frame ends with its n_tokens int32_t tokens */
    uint8_t has_suffix;      /* suffix_len bytes follow the constraint's (gen_req.suffix) */
    uint32_t suffix_len;
};

struct wire_embed {
    int32_t n_ctx, n_threads;
    uint32_t n_texts;
    uint8_t truncate;
};

struct wire_chat {
    uint32_t n_msgs;
    uint8_t add_assistant, parallel_tool_calls;
    int32_t tool_choice, reasoning;
    int64_t now;
};
/* template_src, tools, tool_name, json_schema, grammar, template_kwargs */
#define WIRE_CHAT_STRS 6

struct wire_done {
    int32_t rc; /* ORCH_OK, else an error message follows */
    int32_t n_prompt, n_generated, n_cached;
    uint8_t eos, ctx_full;
    double prompt_ms, gen_ms;
    int32_t n_embd; /* embed: n_texts * n_embd floats follow */
    int64_t n_tokens; /* embed: the texts' tokens; gen with want_tokens: the tokens
                         that end the frame */
    uint8_t has_text; /* chat: nullable strings follow: prompt, constraint,
                         parser, then n_stops stop strings */
    uint32_t n_stops;
};

/* A frame being built: wire_begin, wire_put..., wire_send. */
struct wire_out {
    struct orch__buf b;
};

void wire_begin(struct wire_out *o, uint8_t type);
/* Appends; false when out of memory (the frame is then dropped at send). */
bool wire_put(struct wire_out *o, const void *p, size_t n);
bool wire_put_str(struct wire_out *o, const char *s); /* uint32_t length, bytes */
/* A string that may be NULL: as wire_put_str, NULL as the length WIRE_NULL. */
#define WIRE_NULL UINT32_MAX
bool wire_put_nstr(struct wire_out *o, const char *s);
/* Writes the frame (all of it, retrying short writes and EINTR) and frees
 * it. Returns 0, or -1 (errno; ENOMEM when a put failed). Threads: one
 * writer per socket at a time. */
int wire_send(int fd, struct wire_out *o);
/* Sends a frame of no payload with fd attached (SCM_RIGHTS). */
int wire_send_fd(int fd, uint8_t type, int passed);

/* A frame read: *type, and its payload in a malloc'd buffer (*payload,
 * *len; NUL-terminated one past the end). Returns 1, 0 at end of stream,
 * -1 on an error (errno; EPROTO for a frame past WIRE_FRAME_MAX).
 * passed: where a socket passed along is stored (may be NULL; -1 when
 * none came). */
int wire_recv(int fd, uint8_t *type, char **payload, size_t *len, int *passed);

/* Reading a payload: fixed parts and strings, bounds-checked. */
struct wire_in {
    const char *p;
    size_t left;
};
bool wire_get(struct wire_in *in, void *out, size_t n);
/* A uint32_t length and that many bytes: *s points into the payload (not
 * NUL-terminated unless the bytes were). */
bool wire_get_str(struct wire_in *in, const char **s, size_t *n);
/* n strings put by wire_put_nstr, as NUL-terminated malloc'd copies in one
 * block (free() the array; NULL entries stay NULL), or NULL when short. */
char **wire_get_nstrs(struct wire_in *in, size_t n);

#endif /* ORCH_WORKER_WIRE_H */
