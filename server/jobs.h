/*
 * jobs.h — the generations the daemon is running, each with a cancel flag
 * (orch_gen_params.cancel): all of them cut at once at the drain deadline,
 * one cut when its client leaves before its answer.
 */
#ifndef ORCH_SRV_JOBS_H
#define ORCH_SRV_JOBS_H

#include "state.h"

/* What a job's cancel flag says once set. */
enum { JOB_CLIENT_GONE = 1, JOB_CUT = 2 };

/* Starts the thread that watches the clients of non-streamed jobs (their
 * sockets: a client that closes, or resets, is gone). Returns 0, or -1
 * when it cannot. Threads: the daemon's main thread, once. */
int jobs_start(struct srv *s);
/* Stops and joins it. Threads: the main thread, after the transport stopped. */
void jobs_stop(struct srv *s);

/* Registers l (its cancel flag and, fd >= 0, the client's socket to watch)
 * until jobs_remove(); after jobs_cut() a job starts cut. l is the caller's
 * until removed. Threads: any. */
void jobs_add(struct srv *s, struct job_link *l);
void jobs_remove(struct srv *s, struct job_link *l);

/* Sets every registered flag, and those of jobs added later, to JOB_CUT.
 * Returns how many were running. Threads: any. */
int64_t jobs_cut(struct srv *s);

#endif /* ORCH_SRV_JOBS_H */
