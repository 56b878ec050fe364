/*
 * main.c — the `orchestra` command: global options and subcommands.
 */
#include "cli.h"

#include <signal.h>
#include <sys/stat.h>
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
    "  serve      the roles over HTTP: OpenAI and Ollama APIs (-c, or -m FILE...)\n"
    "  unload     unload roles in a running daemon (orchestra serve)\n"
    "\n"
    "ollama's verbs:\n"
    "  run MODEL [PROMPT]   chat with a role or a file; with PROMPT, one reply and exit\n"
    "  list                 = ps\n"
    "  show MODEL           = info, for a role's file or a file\n"
    "  stop ROLE...         = unload\n"
    "  help [COMMAND]       this text, or COMMAND --help\n"
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

static int cmd_help(struct cli *cli, int argc, char **argv);
static int cmd_run(struct cli *cli, int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(struct cli *, int, char **);
} commands[] = {
    {"generate", cmd_generate},
    {"chat", cmd_chat},
    {"embed", cmd_embed},
    {"info", cmd_info},
    {"mkmodel", cmd_mkmodel},
    {"ps", cmd_ps},
    {"preload", cmd_preload},
    {"serve", cmd_serve},
    {"unload", cmd_unload},
    /* ollama's verbs */
    {"run", cmd_run},
    {"list", cmd_ps},
    {"show", cmd_show},
    {"stop", cmd_unload},
    {"help", cmd_help},
};

static int print_usage(void)
{
    if (!out_write(usage, strlen(usage)) || !out_ok()) {
        cli_error("cannot write to stdout");
        return EXIT_OUTPUT;
    }
    return EXIT_OK;
}

/* help [COMMAND]: the usage, or COMMAND --help */
static int cmd_help(struct cli *cli, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
        return print_usage();
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(argv[1], commands[k].name) && commands[k].fn != cmd_help) {
            char *sub[] = {argv[1], (char *)"--help", NULL};
            return commands[k].fn(cli, 2, sub);
        }
    cli_error("help: unknown command '%s'", argv[1]);
    return EXIT_USAGE;
}

/* Whether an option word of chat's takes the next word as its value: all
 * but --help do, unless the value is attached (-n5, --temp=0). */
static bool cli_opt_takes_value(const char *a)
{
    if (!strcmp(a, "-h") || !strcmp(a, "--help"))
        return false;
    return a[1] == '-' ? true : a[2] == '\0';
}

/* run MODEL [PROMPT...] [chat options]: chat with MODEL (a model file when
 * one is there, else a role of the config; ollama's ":latest" is implied);
 * the words of PROMPT make one message: its reply, then exit. */
static int cmd_run(struct cli *cli, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            static const char h[] =
                "usage: orchestra run MODEL [PROMPT...] [chat options]\n"
                "Chats with MODEL: a model file, else a role of the config (-c). With PROMPT,\n"
                "prints the reply to it and exits; without, reads a message per line of stdin.\n"
                "The options are chat's (orchestra chat --help).\n";
            return out_write(h, sizeof h - 1) && out_ok() ? EXIT_OK : EXIT_OUTPUT;
        }
        cli_error("run: give a MODEL (a role of the config, or a model file)");
        return EXIT_USAGE;
    }
    struct stat st;
    bool file = stat(argv[1], &st) == 0 && S_ISREG(st.st_mode);
    char **sub = calloc((size_t)argc + 4, sizeof *sub);
    size_t words = 0;
    for (int i = 2; i < argc; i++)
        words += argv[i][0] == '-' ? 0 : strlen(argv[i]) + 1;
    char *prompt = words ? malloc(words) : NULL;
    if (!sub || (words && !prompt)) {
        free(sub);
        free(prompt);
        cli_error("out of memory");
        return EXIT_FAIL;
    }
    for (int i = 2; i < argc; i++) /* a -c after the command counts here too */
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            cli->config_path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            cli->config_path = argv[i] + 9;
    /* NAME:latest is the role NAME unless a role has the whole name */
    char bare[256];
    const char *model = argv[1];
    size_t ml = strlen(model);
    orch_error err;
    if (!file && cli->config_path && ml > 7 && ml - 7 < sizeof bare &&
        !strcmp(model + ml - 7, ":latest") &&
        (cli->cfg || orch_config_load(cli->config_path, &cli->cfg, &err) == ORCH_OK) &&
        orch_config_find_role(cli->cfg, model) == (size_t)-1) {
        memcpy(bare, model, ml - 7);
        bare[ml - 7] = '\0';
        model = bare;
    }
    int n = 0;
    sub[n++] = (char *)"chat";
    sub[n++] = (char *)(file ? "--model" : "--role");
    sub[n++] = (char *)model;
    /* options go to chat as they are (with their values); other words are the prompt */
    size_t used = 0;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            sub[n++] = argv[i];
            if (!strchr(argv[i], '=') && i + 1 < argc && cli_opt_takes_value(argv[i]))
                sub[n++] = argv[++i];
        } else {
            size_t l = strlen(argv[i]);
            if (used)
                prompt[used++] = ' ';
            memcpy(prompt + used, argv[i], l);
            used += l;
        }
    }
    if (used) {
        prompt[used] = '\0';
        sub[n++] = (char *)"--prompt";
        sub[n++] = prompt;
    }
    int rc = cmd_chat(cli, n, sub);
    free(prompt);
    free(sub);
    return rc;
}

int main(int argc, char **argv)
{
    /* a worker process of `orchestra serve` (orch_worker_backend_new) */
    if (argc > 1 && !strcmp(argv[1], "__worker"))
        return orch_worker_main(argc, argv);
    struct cli cli = {0};
    cli_config_slot(&cli.config_path);
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
            return print_usage();
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
