/*
 * cli_opts.c — option parsing and --help for every command, from tables.
 *
 * A command lists its options in tables (its own first, then shared ones:
 * the model options, the sampling options). The same tables drive getopt
 * and the help text, and a help line shows the library's real default,
 * computed when printed. A short letter belongs to the first table that
 * names it (embed's -t TEXT shadows the model table's -t THREADS).
 * llama.cpp's own spellings are accepted where they do not clash: long
 * aliases (--ctx-size, --n-predict, --n-gpu-layers) and its single-dash
 * "-ngl".
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS   64
#define OPT_CONFIG 1999 /* -c / --config after the command: the global option */

/* Where -c FILE after a command goes (main's struct cli); set once at start. */
static const char **g_config_slot;

void cli_config_slot(const char **slot)
{
    g_config_slot = slot;
}

static size_t collect(const struct cli_cmd *cmd, const struct cli_opt **all)
{
    size_t n = 0;
    for (const struct cli_opt *const *t = cmd->tables; *t; t++)
        for (const struct cli_opt *o = *t; o->id && n < MAX_OPTS; o++)
            all[n++] = o;
    return n;
}

/* The short letter an option really gets (0 when an earlier one took it). */
static char short_of(const struct cli_opt **all, size_t i)
{
    if (!all[i]->shrt)
        return 0;
    for (size_t k = 0; k < i; k++)
        if (all[k]->shrt == all[i]->shrt)
            return 0;
    return all[i]->shrt;
}

/* snprintf's count, cut to what it wrote into a buffer of cap bytes. */
static size_t written(int k, size_t cap)
{
    return k < 0 ? 0 : (size_t)k < cap ? (size_t)k : cap - 1;
}

static bool print_help(const struct cli_cmd *cmd, const struct cli_opt **all, size_t n)
{
    bool ok = true;
    char line[512];
    int k = snprintf(line, sizeof line, "usage: orchestra %s %s\n", cmd->name, cmd->synopsis);
    ok = out_write(line, written(k, sizeof line)) && out_write(cmd->about, strlen(cmd->about)) &&
         out_write("\n", 1); /* the about text is as long as it needs */
    if (n && ok)
        ok = out_write("\noptions:\n", 10);
    for (size_t i = 0; i < n && ok; i++) {
        const struct cli_opt *o = all[i];
        char left[96], dflt[96] = "";
        char s = short_of(all, i);
        int w = snprintf(left, sizeof left, "  %c%c%s--%s", s ? '-' : ' ', s ? s : ' ',
                         s ? ", " : "  ", o->lng);
        if (o->alias)
            w += snprintf(left + w, sizeof left - (size_t)w, ", --%s", o->alias);
        if (o->arg)
            snprintf(left + w, sizeof left - (size_t)w, " %s", o->arg);
        if (o->dflt) {
            char v[64];
            o->dflt(v, sizeof v);
            snprintf(dflt, sizeof dflt, " (default %s)", v);
        }
        k = snprintf(line, sizeof line, "%-30s %s%s\n", left, o->help, dflt);
        if (strlen(left) >= 30) /* long names: help on the next line */
            k = snprintf(line, sizeof line, "%s\n%31s%s%s\n", left, "", o->help, dflt);
        ok = out_write(line, written(k, sizeof line));
    }
    if (ok && g_config_slot) {
        static const char c[] =
            "  -c, --config FILE            roles from an INI config (also before the "
            "command)\n";
        ok = out_write(c, sizeof c - 1);
    }
    if (ok)
        ok = out_write("  -h, --help                   this text\n", 41);
    return ok;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn on_opt, void *ctx,
              int *first_arg)
{
    const struct cli_opt *all[MAX_OPTS];
    size_t n = collect(cmd, all);
    struct option longs[2 * MAX_OPTS + 3];
    char shorts[2 * MAX_OPTS + 4] = "h";
    size_t nl = 0, ns = 1;
    for (size_t i = 0; i < n; i++) {
        int has = all[i]->arg ? required_argument : no_argument;
        longs[nl++] = (struct option){all[i]->lng, has, 0, all[i]->id};
        if (all[i]->alias)
            longs[nl++] = (struct option){all[i]->alias, has, 0, all[i]->id};
        char s = short_of(all, i);
        if (s) {
            shorts[ns++] = s;
            if (all[i]->arg)
                shorts[ns++] = ':';
        }
    }
    longs[nl++] = (struct option){"help", no_argument, 0, 'h'};
    bool short_c = g_config_slot != NULL; /* unless a command's own table has -c */
    for (size_t i = 0; i < n; i++)
        short_c = short_c && short_of(all, i) != 'c';
    if (g_config_slot) /* the global -c, also after the command */
        longs[nl++] = (struct option){"config", required_argument, 0, OPT_CONFIG};
    if (short_c) {
        shorts[ns++] = 'c';
        shorts[ns++] = ':';
    }
    longs[nl] = (struct option){0, 0, 0, 0};
    shorts[ns] = '\0';
    /* llama.cpp's "-ngl" would read as -n "gl" */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-ngl") == 0)
            argv[i] = (char *)"--ngl";
    optind = 0;
    opterr = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (opt == 'h') {
            if (!print_help(cmd, all, n) || !out_ok()) {
                cli_error("cannot write to stdout");
                return EXIT_OUTPUT;
            }
            *first_arg = -1;
            return EXIT_OK;
        }
        if (opt == '?') {
            fprintf(stderr, "try 'orchestra %s --help'\n", cmd->name);
            return EXIT_USAGE;
        }
        if ((short_c && opt == 'c') || opt == OPT_CONFIG) {
            *g_config_slot = optarg;
            continue;
        }
        for (size_t i = 0; i < n && opt < 256; i++) /* a short letter: its option's id */
            if (short_of(all, i) == opt) {
                opt = all[i]->id;
                break;
            }
        int r = on_opt(ctx, opt, optarg);
        if (r != EXIT_OK)
            return r;
    }
    *first_arg = optind;
    return EXIT_OK;
}
