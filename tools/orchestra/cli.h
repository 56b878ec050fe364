/*
 * cli.h — shared pieces of the `orchestra` command. Uses the public header only.
 */
#ifndef ORCH_CLI_H
#define ORCH_CLI_H

#include <orchestra.h>
#include <stdio.h>

/* Exit codes (documented in `orchestra --help` and the README). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,   /* the operation failed: load, evaluation, memory budget */
    EXIT_USAGE = 2,  /* bad command line */
    EXIT_INPUT = 3,  /* bad input: missing or invalid model file, bad text, prompt too long */
    EXIT_OUTPUT = 4, /* stdout could not be written (closed pipe, full disk) */
};

struct cli {
    const char *config_path; /* -c */
    bool quiet;              /* -q: no timings on stderr */
    orch_config *cfg;        /* loaded on demand */
};

/* What a command works on: a model file, or a role of the config. */
struct target {
    orch_model *model;     /* -m FILE */
    orch_orchestra *orch;  /* -c CONFIG --role R */
    const char *role;
};

/* Maps a library status to an exit code. */
int cli_exit_code(int status);

/* Prints "orchestra: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints err's message and returns the exit code for it. */
int cli_fail(int status, const orch_error *err);

/* Parses numbers strictly; prints a usage error and returns false when bad. */
bool cli_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_float(const char *opt, const char *s, double *out);
bool cli_size(const char *opt, const char *s, uint64_t *out); /* 100M, 1.5B, 250000 */

/* ---- options (cli_opts.c) ---------------------------------------------------- */

/* One option of a command. */
struct cli_opt {
    int id;            /* handed to the command's handler; 0 ends a table */
    char shrt;         /* short letter, 0 = none */
    const char *lng;   /* long name, without "--" */
    const char *alias; /* llama.cpp's spelling of it, or NULL */
    const char *arg;   /* the argument in help ("N", "FILE"); NULL = a flag */
    const char *help;
    void (*dflt)(char *buf, size_t cap); /* the library's default, for help; may be NULL */
};

struct cli_cmd {
    const char *name;     /* "generate" */
    const char *synopsis; /* "(-m FILE | --role ROLE) [-p PROMPT] [options]" */
    const char *about;    /* what it does, for help */
    const struct cli_opt *const *tables; /* NULL-terminated */
};

/* Returns EXIT_OK, or an exit code after printing why. */
typedef int (*cli_opt_fn)(void *ctx, int id, const char *arg);

/* Parses argv (argv[0] is the command's name) through cmd's tables, calling
 * on_opt for each option. --help prints the usage (*first_arg = -1).
 * Returns EXIT_OK with *first_arg the index of the first non-option, or
 * EXIT_USAGE / EXIT_OUTPUT / on_opt's code. */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn on_opt, void *ctx,
              int *first_arg);

/* Makes every command take -c / --config FILE after its name too, stored
 * into *slot (main's cli.config_path). Threads: main, before cli_parse. */
void cli_config_slot(const char **slot);

/* Opens the target: a model file (with model params from options) or a role
 * of the config in cli->config_path. Returns an exit code. */
struct target_opts {
    const char *model_path;
    const char *role;
    long n_ctx, n_threads, n_gpu_layers;
    bool have_ctx, have_threads, have_ngl; /* which were given */
    bool embedding;
};
int target_open(struct cli *cli, const struct target_opts *o, struct target *t);
void target_close(struct target *t);

/* Stdout that notices a closed pipe. */
bool out_write(const char *s, size_t n);
bool out_ok(void);

/* Reads all of stdin (max 64 MiB). Returns an exit code; *len excludes the
 * added NUL. Rejects NUL bytes with a message naming the offset. */
int read_stdin(char **out, size_t *len);
/* The same from an open file; `name` is for messages. */
int read_stream(FILE *f, const char *name, char **out, size_t *len);

/* POSTs json to url + path (url: "http://HOST:PORT", the daemon's base) with
 * an optional Bearer key; waits up to timeout_s for the whole answer.
 * Returns EXIT_OK with *status and *body (malloc'd, NUL-terminated; the
 * caller frees it), else an exit code with why[] saying what went wrong. */
int cli_http_post(const char *url, const char *path, const char *api_key, const char *json,
                  int timeout_s, int *status, char **body, char *why, size_t why_cap);
/* The same with a method; json NULL: no body (a GET). */
int cli_http(const char *url, const char *method, const char *path, const char *api_key,
             const char *json, int timeout_s, int *status, char **body, char *why,
             size_t why_cap);

/* Progress bar on stderr when it is a terminal. */
bool cli_progress(const char *role, float progress, void *ud);

int cmd_generate(struct cli *cli, int argc, char **argv);
int cmd_chat(struct cli *cli, int argc, char **argv);
int cmd_embed(struct cli *cli, int argc, char **argv);
int cmd_info(struct cli *cli, int argc, char **argv);
int cmd_mkmodel(struct cli *cli, int argc, char **argv);
int cmd_ps(struct cli *cli, int argc, char **argv);
int cmd_preload(struct cli *cli, int argc, char **argv);
int cmd_unload(struct cli *cli, int argc, char **argv);
int cmd_serve(struct cli *cli, int argc, char **argv);
int cmd_show(struct cli *cli, int argc, char **argv);

#endif
