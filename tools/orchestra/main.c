/*
 * main.c — the `orchestra` command: global options and subcommands.
 */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: orchestra [-c CONFIG] [-v] [-q] [--log-level L] [--log-json] COMMAND [ARGS]\n"
    "\n"
    "Run several local language models side by side.\n"
    "\n"
    "commands:\n"
    "  generate   complete a prompt, streaming the text to stdout\n"
    "  chat       chat over the model's template, one user line at a time\n"
    "  embed      texts to vectors, one JSON array per text\n"
    "  info       what a GGUF file is, without loading it\n"
    "  mkmodel    write a synthetic Llama GGUF of a given size\n"
    "  ps         the config's roles: state, size, leases, idle unload (needs -c)\n"
    "  preload    load roles under the memory budget, then list them (needs -c)\n"
    "  serve      the roles over HTTP: OpenAI and Ollama APIs (needs -c)\n"
    "  unload     unload roles in a running daemon (orchestra serve)\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   roles from an INI config (see examples/orchestra.ini)\n"
    "  -v, --verbose       log loads and unloads (level info) to stderr\n"
    "  -q, --quiet         no timings on stderr\n"
    "      --log-level L   debug, info, warn (default), error, off\n"
    "      --log-json      log lines as JSON\n"
    "      --version       print the versions of orchestra and of llama.cpp\n"
    "\n"
    "`orchestra COMMAND --help` describes each command.\n"
    "\n"
    "exit codes: 0 success; 1 the operation failed (load, evaluation, memory budget);\n"
    "2 bad command line; 3 bad input (model file, config, text, prompt too long);\n"
    "4 stdout could not be written.\n";

static const struct {
    const char *name;
    int (*fn)(struct cli *, int, char **);
} commands[] = {
    {"generate", cmd_generate}, {"chat", cmd_chat},       {"embed", cmd_embed},
    {"info", cmd_info},         {"mkmodel", cmd_mkmodel}, {"ps", cmd_ps},
    {"preload", cmd_preload},   {"serve", cmd_serve},     {"unload", cmd_unload},
};

int main(int argc, char **argv)
{
    /* a worker process of `orchestra serve` (orch_worker_backend_new) */
    if (argc > 1 && !strcmp(argv[1], "__worker"))
        return orch_worker_main(argc, argv);
    struct cli cli = {0};
    /* a closed stdout is an error we report, not a signal that kills us */
    signal(SIGPIPE, SIG_IGN);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (++i == argc) {
                cli_error("%s needs a FILE", a);
                return EXIT_USAGE;
            }
            cli.config_path = argv[i];
        } else if (!strncmp(a, "--config=", 9)) {
            cli.config_path = a + 9;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            orch_log_set_level(ORCH_LOG_INFO);
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            cli.quiet = true;
        } else if (!strcmp(a, "--log-json")) {
            orch_log_set_format(ORCH_LOG_JSON);
        } else if (!strcmp(a, "--log-level") || !strncmp(a, "--log-level=", 12)) {
            const char *v = a[11] == '=' ? a + 12 : (++i < argc ? argv[i] : NULL);
            int l = orch_log_level_from_string(v);
            if (l < 0) {
                cli_error("--log-level '%s': expected debug, info, warn, error or off",
                          v ? v : "");
                return EXIT_USAGE;
            }
            orch_log_set_level((enum orch_log_level)l);
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (!out_write(usage, strlen(usage)) || !out_ok()) {
                cli_error("cannot write to stdout");
                return EXIT_OUTPUT;
            }
            return EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            char v[1024];
            int k =
                snprintf(v, sizeof v, "orchestra %s\nliborchestra %s\nllama.cpp %s\ndevices %s\n",
                         ORCH_VERSION, orch_version(), orch_llama_version(), orch_llama_devices());
            if (k < 0 || (size_t)k >= sizeof v)
                k = (int)strlen(v);
            if (!out_write(v, (size_t)k) || !out_ok()) {
                cli_error("cannot write to stdout");
                return EXIT_OUTPUT;
            }
            return EXIT_OK;
        } else {
            cli_error("unknown option '%s'", a);
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(argv[i], commands[k].name)) {
            int rc = commands[k].fn(&cli, argc - i, argv + i);
            orch_config_free(cli.cfg);
            return rc;
        }
    cli_error("unknown command '%s'", argv[i]);
    fputs(usage, stderr);
    return EXIT_USAGE;
}
