/*
 * stream.h — a streamed response (SSE for OpenAI, NDJSON for Ollama): a
 * producer runs on a thread of its own and appends to a buffer that MHD's
 * content reader drains. The reader notices a client that went away (poll
 * on the socket) and stream_write() then returns false, so the producer
 * stops (a generation's text callback returns false and its lease comes
 * back within a token). The stream logs and counts the request when it
 * ends (access.c), with what the producer reported.
 */
#ifndef ORCH_SRV_STREAM_H
#define ORCH_SRV_STREAM_H

#include "state.h"

struct stream;
typedef void (*stream_fn)(struct stream *st, void *job);

/* Starts `run(st, job)` on a thread of its own and answers the request with
 * its output (200, ctype). job_free(job), when not NULL, runs once the
 * stream is done, whatever happened. Returns MHD's answer. */
enum MHD_Result reply_stream(struct req *r, const char *ctype, stream_fn run, void *job,
                             void (*job_free)(void *job));

/* Appends to the response. Returns false once the client has gone: stop.
 * Threads: the producer's. */
bool stream_write(struct stream *st, const char *data, size_t n);

/* Appends j as one NDJSON line (Ollama's streams) and releases j (NULL:
 * false). Returns as stream_write. Threads: the producer's. */
bool stream_ndjson(struct stream *st, json_t *j);

/* True once the client has gone. Threads: any. */
bool stream_gone(struct stream *st);

/* The request's accounting, written by the producer before it returns. */
void stream_account(struct stream *st, int status, int64_t tok_in, int64_t tok_out);

#endif /* ORCH_SRV_STREAM_H */
