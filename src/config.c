/*
 * config.c — roles from an INI file (parsed by libinih), the environment
 * on top, and validation at open rather than at first use.
 *
 * DESIGN
 * One table (`keys`) says every key: its type, where it lives (a role's
 * section or, for [defaults]-only keys, the config) with its offset and
 * width, its range, and whether roles inherit it. The file, the environment
 * and orch_config_set() all go through set_key(), so they accept and reject
 * the same things with the same messages; orch__config_resolve() walks the
 * same table: a role's effective value is its own if set, else [defaults]'
 * if set, else the built-in default. A new key is one line in the table
 * (and a field in struct orch__role_cfg).
 *
 * libinih gives no line numbers to its handler (Debian builds it without
 * INI_HANDLER_LINENO), so it reads the text through ini_parse_stream() and
 * a reader of our own that counts the lines it hands over: the handler's
 * key is on the reader's current line. The reader also refuses what inih
 * would silently mangle: lines past its buffer (it would split them) and
 * section names past its 49 bytes (it would cut them, making two roles
 * one). Fallbacks are resolved once, in n log n, for validation and for
 * orch_open() alike (orch__config_model_roles()).
 * A config is immutable once validated and may be shared between threads.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define INIH_MAX_LINE 200    /* Debian's libinih: INI_MAX_LINE */
#define INIH_MAX_SECTION 50  /* its MAX_SECTION: names up to 49 bytes */
#define ROLE_NAME_MAX (INIH_MAX_SECTION - 1)

enum ktype {
    K_STR, K_PATH, K_INT, K_FLOAT, K_BOOL, K_STOP, K_BUDGET, K_SECONDS, K_ALIAS, K_REASONING,
    K_URL, K_SHA256
};

/* Where a key's value lives: in a role's section (struct orch__role_cfg,
 * inherited from [defaults]) or in the config itself ([defaults] only). */
enum kbase { IN_ROLE, IN_CONFIG };

struct key {
    const char *name;
    enum ktype type;
    enum kbase base;
    size_t off, width;   /* the field: its offset in the base and its size in bytes */
    size_t off2, width2; /* a field set and inherited with it (a fallback's "where",
                            the count of stop strings); width2 0 = none */
    double min, max;     /* for numbers */
    bool min_open;       /* min excluded */
    bool zero_refused;   /* 0 is in [min, max] but not allowed */
    bool not_inherited;  /* a role does not take [defaults]' value (aliases) */
    const char *expect;  /* what the value must be, for messages */
};

#define ROLE(f)                                                                                   \
    IN_ROLE, offsetof(struct orch__role_cfg, f), sizeof(((struct orch__role_cfg *)0)->f)
#define CONF(f) IN_CONFIG, offsetof(struct orch_config, f), sizeof(((struct orch_config *)0)->f)
#define WITH(f) offsetof(struct orch__role_cfg, f), sizeof(((struct orch__role_cfg *)0)->f)
#define ALONE 0, 0
/* A key's bit in a section's `set` is its index in this table. */
static const struct key keys[] = {
    {"path", K_PATH, ROLE(path), ALONE, 0, 0, false, false, false, "a file path"},
    {"n_ctx", K_INT, ROLE(n_ctx), ALONE, -1, ORCH_N_CTX_MAX, false, true, false,
     "a context size from 1 to 4194304 tokens, or -1 for the model's trained size"},
    {"n_ctx_max", K_INT, ROLE(n_ctx_max), ALONE, 0, ORCH_N_CTX_MAX, false, false, false,
     "the most context a request may ask for, from 1 to 4194304 tokens, or 0 for no limit "
     "but the memory budget"},
    {"n_gpu_layers", K_INT, ROLE(n_gpu_layers), ALONE, -1, 100000, false, false, false,
     "a layer count, or -1 for all"},
    {"n_threads", K_INT, ROLE(n_threads), ALONE, 0, 1024, false, false, false,
     "a thread count from 1 to 1024, or 0 for one per CPU"},
    {"embedding", K_BOOL, ROLE(embedding), ALONE, 0, 0, false, false, false, "true or false"},
    {"fallback", K_STR, ROLE(fallback), WITH(fallback_where), 0, 0, false, false, false,
     "a role name"},
    {"pin", K_BOOL, ROLE(pin), ALONE, 0, 0, false, false, false, "true or false"},
    {"idle_ttl", K_INT, ROLE(idle_ttl_s), ALONE, -1e12, 1e12, false, false, false,
     "seconds (0 = unload when the last lease returns, negative = never)"},
    {"temperature", K_FLOAT, ROLE(gen.temperature), ALONE, 0, 100, false, false, false,
     "a number from 0 (greedy) to 100"},
    {"top_p", K_FLOAT, ROLE(gen.top_p), ALONE, 0, 1, true, false, false, "a number in (0, 1]"},
    {"top_k", K_INT, ROLE(gen.top_k), ALONE, 0, 1000000, false, false, false,
     "a whole number, 0 = off"},
    {"min_p", K_FLOAT, ROLE(gen.min_p), ALONE, 0, 0.999999, false, false, false,
     "a number in [0, 1)"},
    {"repeat_penalty", K_FLOAT, ROLE(gen.repeat_penalty), ALONE, 0, 100, true, false, false,
     "a number above 0 (1 = off)"},
    {"max_tokens", K_INT, ROLE(gen.max_tokens), ALONE, 1, ORCH_N_CTX_MAX, false, false, false,
     "a token count of at least 1"},
    {"stop", K_STOP, ROLE(stop), WITH(n_stop), 0, 0, false, false, false, "a non-empty string"},
    {"alias", K_ALIAS, ROLE(aliases), WITH(n_aliases), 0, 0, false, false, true,
     "another name for the role: letters, digits, '_', '-', '.', ':' and '/'"},
    {"n_parallel", K_INT, ROLE(n_parallel), ALONE, 0, ORCH_N_PARALLEL_MAX, false, false, false,
     "a count of requests decoded together from 1 to 64, or 0 for a context per request"},
    {"stream_latency", K_INT, ROLE(stream_latency_ms), ALONE, -1, 60000, false, false, false,
     "milliseconds a step reading prompts may take beside generating sequences: 0 = the "
     "default (250), -1 = no limit, or 1 to 60000"},
    {"repack", K_BOOL, ROLE(repack), ALONE, 0, 0, false, false, false,
     "true (weights repacked for this CPU at load) or false (kept as the file has them)"},
    {"vet", K_BOOL, ROLE(vet), ALONE, 0, 0, false, false, false,
     "true (the file is loaded, tokenized and decoded in a child process first) or false"},
    {"reasoning", K_REASONING, ROLE(reasoning), ALONE, 0, 0, false, false, false,
     "split (a thinking model's reasoning apart from the answer), inline or off"},
    {"chat_template", K_PATH, ROLE(chat_template), ALONE, 0, 0, false, false, false,
     "a Jinja chat template file (it replaces the model's own)"},
    {"source", K_URL, ROLE(source), ALONE, 0, 0, false, false, true,
     "an http:// or https:// URL of the GGUF file (where /api/pull fetches the role's path)"},
    {"sha256", K_SHA256, ROLE(sha256), ALONE, 0, 0, false, false, true,
     "the file's sha256: 64 hexadecimal digits"},
    {"n_threads_total", K_INT, CONF(n_threads_total), ALONE, 0, 1024, false, false, false,
     "a thread count from 1 to 1024 shared by every model, or 0 for one per CPU"},
    {"memory_budget", K_BUDGET, CONF(budget), ALONE, 0, 0, false, false, false,
     "bytes with an optional K, M, G or T suffix, or a percentage of RAM such as 75%"},
    {"load_timeout", K_SECONDS, CONF(load_timeout_ms), ALONE, 0, 86400, false, false, false,
     "seconds from 0 to 86400"},
};
#undef ROLE
#undef CONF
#undef WITH
#undef ALONE
#define N_KEYS (sizeof keys / sizeof keys[0])
_Static_assert(N_KEYS <= 32, "a section's `set` has a bit per key");

#define ROLE_IDLE_TTL_S 300 /* a role's idle_ttl when neither it nor [defaults] sets one */

/* ---- helpers ---------------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t c = d[i - 1][j - 1] +
                       (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t x = d[i - 1][j] + 1, y = d[i][j - 1] + 1;
            d[i][j] = c < x ? (c < y ? c : y) : (x < y ? x : y);
        }
    return d[la][lb];
}

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static const char *nearest_key(const char *name)
{
    const char *best = keys[0].name;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t d = edit_distance(name, keys[i].name);
        if (d < bd) {
            bd = d;
            best = keys[i].name;
        }
    }
    return best;
}

static void role_cfg_clear(struct orch__role_cfg *r)
{
    free(r->name);
    free(r->path);
    free(r->fallback);
    free(r->fallback_where);
    free(r->chat_template);
    free(r->source);
    free(r->sha256);
    for (size_t i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->stop);
    for (size_t i = 0; i < r->n_aliases; i++)
        free(r->aliases[i]);
    free(r->aliases);
    memset(r, 0, sizeof *r);
}

static int parse_budget(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || !(x >= 0) || isinf(x))
        return -1;
    while (*end == ' ')
        end++;
    double mult = 1;
    if (*end == '%') {
        if (x > 100)
            return -1;
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages <= 0 || psz <= 0)
            return -1;
        *out = (uint64_t)((double)pages * (double)psz * x / 100.0);
        return end[1] ? -1 : 0;
    }
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; break;
    case 'M': mult = 1024.0 * 1024; break;
    case 'G': mult = 1024.0 * 1024 * 1024; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
    case '\0': break;
    default: return -1;
    }
    if (*end) {
        end++;
        if (toupper((unsigned char)*end) == 'I')
            end++;
        if (toupper((unsigned char)*end) == 'B')
            end++;
        if (*end)
            return -1;
    }
    if (x * mult > 1.8e19)
        return -1;
    *out = (uint64_t)(x * mult);
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *t[] = {"true", "yes", "on", "1"}, *f[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, t[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(v, f[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

/* ---- the config --------------------------------------------------------- */

/* The roles by name (cfg->index): a thousand sections were a million
 * compares. FNV-1a; linear probing; at most half full. */
static size_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return (size_t)h;
}

/* The slot of `name` in the index: its role's, or the empty one it would take. */
static size_t *index_slot(const orch_config *cfg, const char *name)
{
    size_t mask = cfg->index_cap - 1;
    for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
        size_t *s = &cfg->index[i];
        if (!*s || strcmp(cfg->roles[*s - 1].name, name) == 0)
            return s;
    }
}

/* Room in the index for one more role; false when out of memory. */
static bool index_grow(orch_config *cfg)
{
    if ((cfg->n_roles + 1) * 2 <= cfg->index_cap)
        return true;
    size_t cap = cfg->index_cap ? cfg->index_cap * 2 : 64;
    size_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return false;
    free(cfg->index);
    cfg->index = idx;
    cfg->index_cap = cap;
    for (size_t i = 0; i < cfg->n_roles; i++)
        *index_slot(cfg, cfg->roles[i].name) = i + 1;
    return true;
}

static struct orch__role_cfg *get_section(orch_config *cfg, const char *section, bool create,
                                          int line)
{
    if (strcmp(section, "defaults") == 0)
        return &cfg->defaults;
    size_t *slot = cfg->index_cap ? index_slot(cfg, section) : NULL;
    if (slot && *slot)
        return &cfg->roles[*slot - 1];
    if (!create || !index_grow(cfg))
        return NULL;
    struct orch__role_cfg *r = realloc(cfg->roles, (cfg->n_roles + 1) * sizeof *r);
    if (!r)
        return NULL;
    cfg->roles = r;
    r = &cfg->roles[cfg->n_roles];
    memset(r, 0, sizeof *r);
    r->name = orch__strdup(section);
    if (!r->name)
        return NULL;
    r->line = line;
    cfg->n_roles++;
    *index_slot(cfg, r->name) = cfg->n_roles;
    return r;
}

/* A string value into *p (a path relative to the config file's folder);
 * where it was set into the companion field, when the key has one. */
static int store_str(const orch_config *cfg, const struct key *k, char *base, const char *where,
                     const char *section, const char *value, orch_error *err)
{
    if (!*value)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] %s is empty (expected %s)", where, section,
                         k->name, k->expect);
    char *s;
    if (k->type == K_PATH && cfg->base_dir && value[0] != '/') {
        /* one rule: a relative path, from the file or the environment, is
         * relative to the config file's folder */
        size_t n = strlen(cfg->base_dir) + strlen(value) + 2;
        s = malloc(n);
        if (s)
            snprintf(s, n, "%s/%s", cfg->base_dir, value);
    } else {
        s = orch__strdup(value);
    }
    char *w = k->width2 ? orch__strdup(where) : NULL;
    if (!s || (k->width2 && !w)) {
        free(s);
        free(w);
        return orch__err(err, ORCH_ENOMEM, "%s: out of memory", where);
    }
    char **p = (char **)(base + k->off);
    free(*p);
    *p = s;
    if (k->width2) { /* where it was set, for messages about it */
        char **wp = (char **)(base + k->off2);
        free(*wp);
        *wp = w;
    }
    return ORCH_OK;
}

/* A number in the key's range, written at the key's width. */
static int store_number(const struct key *k, char *base, const char *where, const char *section,
                        const char *value, orch_error *err)
{
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    bool bad = end == value || *end || errno || isnan(x) || x < k->min || x > k->max ||
               (k->type == K_INT && x != floor(x)) || (k->min_open && x == k->min) ||
               (k->zero_refused && x == 0);
    if (bad)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] %s = '%s': expected %s", where, section,
                         k->name, value, k->expect);
    char *p = base + k->off;
    if (k->type == K_FLOAT)
        *(float *)p = (float)x;
    else if (k->type == K_SECONDS)
        *(int64_t *)p = (int64_t)(x * 1000); /* held in milliseconds */
    else if (k->width == sizeof(int64_t))
        *(int64_t *)p = (int64_t)x;
    else
        *(int32_t *)p = (int32_t)x;
    return ORCH_OK;
}

/* One more string of a list key (stop, alias); the count is the companion. */
static int store_list(const struct key *k, char *base, bool is_defaults, const char *where,
                      const char *section, const char *value, orch_error *err)
{
    if (k->type == K_STOP && !*value)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] stop is empty (expected %s)", where,
                         section, k->expect);
    if (k->type == K_ALIAS && is_defaults)
        return orch__err(err, ORCH_ECONFIG, "%s: [defaults] alias: an alias names one role",
                         where);
    /* model names clients send: "gpt-4o-mini", "llama3.2:3b", "org/name" */
    bool ok = k->type == K_STOP || (*value && strlen(value) <= 127);
    for (const char *c = value; ok && k->type == K_ALIAS && *c; c++)
        ok = isalnum((unsigned char)*c) || strchr("_-.:/", *c);
    if (!ok)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] alias = '%s': expected %s", where, section,
                         value, k->expect);
    char ***vp = (char ***)(base + k->off);
    size_t *np = (size_t *)(base + k->off2);
    char **v = realloc(*vp, (*np + 1) * sizeof *v);
    if (!v)
        return orch__err(err, ORCH_ENOMEM, "%s: out of memory", where);
    *vp = v;
    if (!(v[*np] = orch__strdup(value)))
        return orch__err(err, ORCH_ENOMEM, "%s: out of memory", where);
    (*np)++;
    return ORCH_OK;
}

/* Checks a section name: length and characters. */
static int check_section(const char *where, const char *section, orch_error *err)
{
    size_t slen = strlen(section);
    if (slen > ROLE_NAME_MAX)
        return orch__err(err, ORCH_ECONFIG,
                         "%s: role name '%.40s...' is %zu bytes; at most %d are "
                         "allowed",
                         where, section, slen, ROLE_NAME_MAX);
    for (const char *c = section; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return orch__err(err, ORCH_ECONFIG,
                             "%s: role name '%s' may hold only letters, digits, '_' and '-'",
                             where, section);
    return ORCH_OK;
}

/* `where` is "file:line" or "environment ORCH_X"; used in every message. */
static int set_key(orch_config *cfg, const char *where, const char *section, const char *name,
                   const char *value, int line, orch_error *err)
{
    if (!*section)
        return orch__err(err, ORCH_ECONFIG,
                         "%s: key '%s' is outside any section (expected [defaults] or a [role])",
                         where, name);
    bool is_defaults = strcmp(section, "defaults") == 0;
    int rc = check_section(where, section, err);
    if (rc)
        return rc;
    const struct key *k = find_key(name);
    if (!k)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] unknown key '%s' (did you mean '%s'?)",
                         where, section, name, nearest_key(name));
    if (k->base == IN_CONFIG && !is_defaults)
        return orch__err(err, ORCH_ECONFIG, "%s: [%s] key '%s' belongs in [defaults]", where,
                         section, name);
    struct orch__role_cfg *r = get_section(cfg, section, true, line);
    if (!r)
        return orch__err(err, ORCH_ENOMEM, "%s: out of memory", where);
    char *base = k->base == IN_ROLE ? (char *)r : (char *)cfg;
    switch (k->type) {
    case K_URL:
        if (strncasecmp(value, "http://", 7) != 0 && strncasecmp(value, "https://", 8) != 0) {
            rc = orch__err(err, ORCH_ECONFIG, "%s: [%s] %s = '%s': expected %s", where, section,
                           name, value, k->expect);
            break;
        }
        rc = store_str(cfg, k, base, where, section, value, err);
        break;
    case K_SHA256: {
        char hex[65];
        size_t n = strlen(value);
        for (size_t i = 0; i < n && i < 64; i++)
            hex[i] = (char)tolower((unsigned char)value[i]);
        hex[n < 64 ? n : 64] = '\0';
        if (n != 64 || strspn(hex, "0123456789abcdef") != 64) {
            rc = orch__err(err, ORCH_ECONFIG, "%s: [%s] %s = '%s': expected %s", where, section,
                           name, value, k->expect);
            break;
        }
        rc = store_str(cfg, k, base, where, section, hex, err);
        break;
    }
    case K_STR:
    case K_PATH:
        rc = store_str(cfg, k, base, where, section, value, err);
        break;
    case K_INT:
    case K_FLOAT:
    case K_SECONDS:
        rc = store_number(k, base, where, section, value, err);
        break;
    case K_BOOL:
        if (parse_bool(value, (bool *)(base + k->off)) != 0)
            rc = orch__err(err, ORCH_ECONFIG, "%s: [%s] %s = '%s': expected %s", where, section,
                           name, value, k->expect);
        break;
    case K_STOP:
    case K_ALIAS:
        rc = store_list(k, base, is_defaults, where, section, value, err);
        break;
    case K_REASONING: {
        static const char *const names[] = {"split", "inline", "off"};
        int32_t *v = (int32_t *)(base + k->off);
        *v = 0;
        for (int i = 0; i < 3; i++)
            if (strcmp(value, names[i]) == 0)
                *v = ORCH_REASONING_SPLIT + i;
        if (!*v)
            rc = orch__err(err, ORCH_ECONFIG, "%s: [%s] %s = '%s': expected %s", where, section,
                           name, value, k->expect);
        break;
    }
    case K_BUDGET:
        if (parse_budget(value, (uint64_t *)(base + k->off)) != 0)
            rc = orch__err(err, ORCH_ECONFIG, "%s: [defaults] memory_budget = '%s': expected %s",
                           where, value, k->expect);
        break;
    }
    if (rc == ORCH_OK)
        r->set |= 1u << (k - keys);
    return rc;
}

/* ---- parsing the file ---------------------------------------------------- */

struct parse_ctx {
    orch_config *cfg;
    const char *name;
    const char *p;  /* the rest of the text */
    int lineno;     /* of the line last handed to inih */
    orch_error *err;
    int rc;
};

/* Checks a "[name]" line and records where the role starts. */
static int section_line(struct parse_ctx *pc, const char *s, size_t len)
{
    const char *close = memchr(s, ']', len);
    if (!close)
        return ORCH_OK; /* inih reports it on this line */
    size_t n = (size_t)(close - s - 1);
    if (n > ROLE_NAME_MAX)
        return orch__err(pc->err, ORCH_ECONFIG,
                         "%s:%d: role name '%.40s...' is %zu bytes; at most %d are allowed",
                         pc->name, pc->lineno, s + 1, n, ROLE_NAME_MAX);
    char sec[INIH_MAX_SECTION];
    memcpy(sec, s + 1, n);
    sec[n] = '\0';
    if (strcmp(sec, "defaults") != 0 && !get_section(pc->cfg, sec, true, pc->lineno))
        return orch__err(pc->err, ORCH_ENOMEM, "%s: out of memory", pc->name);
    return ORCH_OK;
}

/* inih's line reader: hands over one line, counting them. Returns NULL (the
 * end, for inih) at the end of the text or on an error kept in pc->rc. */
static char *read_line(char *str, int num, void *stream)
{
    struct parse_ctx *pc = stream;
    if (!*pc->p || pc->rc != ORCH_OK)
        return NULL;
    const char *eol = strchr(pc->p, '\n');
    size_t len = eol ? (size_t)(eol - pc->p) + 1 : strlen(pc->p);
    pc->lineno++;
    if (len > (size_t)num - 1 || len >= INIH_MAX_LINE - 1) {
        pc->rc =
            orch__err(pc->err, ORCH_ECONFIG, "%s:%d: line is %zu bytes; at most %d are allowed",
                      pc->name, pc->lineno, len, INIH_MAX_LINE - 2);
        return NULL;
    }
    memcpy(str, pc->p, len);
    str[len] = '\0';
    pc->p += len;
    const char *s = str;
    if (pc->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '[') {
        pc->rc = section_line(pc, s, len - (size_t)(s - str));
        if (pc->rc != ORCH_OK)
            return NULL;
    }
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *pc = user;
    if (pc->rc != ORCH_OK)
        return 0;
    char where[600];
    snprintf(where, sizeof where, "%s:%d", pc->name, pc->lineno);
    pc->rc = set_key(pc->cfg, where, section, name, value, pc->lineno, pc->err);
    return pc->rc == ORCH_OK;
}

int orch_config_new(orch_config **out, orch_error *err)
{
    if (!out)
        return orch__err(err, ORCH_EINVAL, "orch_config_new: out is NULL");
    orch_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->name = orch__strdup("(config)"))) {
        free(cfg);
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    }
    cfg->load_timeout_ms = 60000;
    cfg->n_threads_total = -1;
    *out = cfg;
    return ORCH_OK;
}

void orch_config_free(orch_config *cfg)
{
    if (!cfg)
        return;
    role_cfg_clear(&cfg->defaults);
    for (size_t i = 0; i < cfg->n_roles; i++)
        role_cfg_clear(&cfg->roles[i]);
    free(cfg->roles);
    free(cfg->index);
    free(cfg->name);
    free(cfg->base_dir);
    free(cfg);
}

int orch_config_set(orch_config *cfg, const char *section, const char *key, const char *value,
                    orch_error *err)
{
    if (!cfg || !section || !key || !value)
        return orch__err(err, ORCH_EINVAL, "orch_config_set: NULL argument");
    return set_key(cfg, cfg->name, section, key, value, 0, err);
}

int orch_config_set_fallback(orch_config *cfg, const char *key, const char *value,
                             orch_error *err)
{
    if (!cfg || !key || !value)
        return orch__err(err, ORCH_EINVAL, "orch_config_set_fallback: NULL argument");
    for (size_t k = 0; k < N_KEYS; k++)
        if (strcmp(keys[k].name, key) == 0 && (cfg->defaults.set & (1u << k)))
            return ORCH_OK; /* [defaults] says so itself */
    return set_key(cfg, cfg->name, "defaults", key, value, 0, err);
}

/* "ORCH_" + upper-cased name with '-' as '_' */
static void env_name(char *var, size_t cap, const char *role, const char *key)
{
    if (role)
        snprintf(var, cap, "ORCH_%s_%s", role, key);
    else
        snprintf(var, cap, "ORCH_%s", key);
    for (char *c = var; *c; c++)
        *c = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
}

/* A variable shaped like a role setting that matches no role and key of
 * this config: an error, as the same line in the file would be. Other
 * ORCH_ variables (ORCH_LOG_LEVEL, ...) are not ours to judge. */
static int check_env_names(orch_config *cfg, orch_error *err)
{
    extern char **environ;
    char var[200], list[300];
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        if (len >= sizeof var || strncmp(*e, "ORCH_", 5) != 0)
            continue;
        memcpy(var, *e, len);
        var[len] = '\0';
        bool known = false;
        for (size_t k = 0; k < N_KEYS && !known; k++) {
            char v[200];
            env_name(v, sizeof v, NULL, keys[k].name);
            known = strcmp(v, var) == 0;
            for (size_t r = 0; r < cfg->n_roles && !known; r++) {
                env_name(v, sizeof v, cfg->roles[r].name, keys[k].name);
                known = strcmp(v, var) == 0;
            }
        }
        if (known)
            continue;
        /* ORCH_<ROLE>_<something> for a role of this config: a bad key */
        for (size_t r = 0; r < cfg->n_roles; r++) {
            char prefix[200];
            env_name(prefix, sizeof prefix, cfg->roles[r].name, "");
            size_t pl = strlen(prefix);
            if (strncmp(var, prefix, pl) == 0 && var[pl]) {
                char key[160];
                snprintf(key, sizeof key, "%s", var + pl);
                for (char *c = key; *c; c++)
                    *c = (char)tolower((unsigned char)*c);
                return orch__err(err, ORCH_ECONFIG,
                                 "environment %s: [%s] unknown key '%s' (did you mean '%s'?)", var,
                                 cfg->roles[r].name, key, nearest_key(key));
            }
        }
        /* ORCH_<X>_<role key> for an X that is no role of this config */
        for (size_t k = 0; k < N_KEYS; k++) {
            char suffix[100];
            env_name(suffix, sizeof suffix, "", keys[k].name); /* "ORCH__KEY" */
            const char *tail = suffix + 5;                       /* "_KEY" */
            size_t tl = strlen(tail);
            if ((keys[k].base == IN_CONFIG) || len <= 5 + tl || strcmp(var + len - tl, tail) != 0)
                continue;
            orch__config_role_list(cfg, list, sizeof list);
            return orch__err(err, ORCH_ECONFIG,
                             "environment %s: no role '%.*s' in %s for its %s (roles: %s)", var,
                             (int)(len - 5 - tl), var + 5, cfg->name, keys[k].name, list);
        }
    }
    return ORCH_OK;
}

/* ORCH_<ROLE>_<KEY> for each role, ORCH_<KEY> for [defaults]. */
static int apply_env(orch_config *cfg, orch_error *err)
{
    int rc = check_env_names(cfg, err);
    if (rc)
        return rc;
    /* the environment's ORCH_ names, to skip the roles none of them names
     * (a thousand roles by thirty keys were 30,000 getenv scans) */
    extern char **environ;
    const char *ours[64];
    size_t n_ours = 0;
    bool many = false;
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "ORCH_", 5) == 0) {
            if (n_ours == sizeof ours / sizeof ours[0])
                many = true;
            else
                ours[n_ours++] = *e;
        }
    if (!n_ours)
        return ORCH_OK;
    size_t n_roles = cfg->n_roles;
    for (size_t r = 0; r <= n_roles; r++) {
        const char *section = r < n_roles ? cfg->roles[r].name : "defaults";
        if (r < n_roles && !many) {
            char prefix[160];
            env_name(prefix, sizeof prefix, section, "");
            size_t pl = strlen(prefix), i = 0;
            while (i < n_ours && strncmp(ours[i], prefix, pl) != 0)
                i++;
            if (i == n_ours)
                continue;
        }
        for (size_t k = 0; k < N_KEYS; k++) {
            char var[160];
            if (r < n_roles && (keys[k].base == IN_CONFIG))
                continue;
            env_name(var, sizeof var, r < n_roles ? section : NULL, keys[k].name);
            const char *v = getenv(var);
            if (!v)
                continue;
            char where[200];
            snprintf(where, sizeof where, "environment %s", var);
            if (keys[k].type == K_STOP) {
                /* the variable replaces the list */
                struct orch__role_cfg *sec = get_section(cfg, section, false, 0);
                if (sec) {
                    for (size_t i = 0; i < sec->n_stop; i++)
                        free(sec->stop[i]);
                    sec->n_stop = 0;
                }
            }
            rc = set_key(cfg, where, section, keys[k].name, v, 0, err);
            if (rc)
                return rc;
        }
    }
    return ORCH_OK;
}

static int parse_impl(const char *text, const char *name, const char *base_dir, bool use_env,
                      orch_config **out, orch_error *err)
{
    if (!text || !out)
        return orch__err(err, ORCH_EINVAL, "orch_config_parse: NULL argument");
    *out = NULL;
    if (!name)
        name = "(config)";
    orch_config *cfg;
    int rc = orch_config_new(&cfg, err);
    if (rc)
        return rc;
    free(cfg->name);
    cfg->name = orch__strdup(name);
    cfg->base_dir = base_dir ? orch__strdup(base_dir) : NULL;
    if (!cfg->name || (base_dir && !cfg->base_dir)) {
        orch_config_free(cfg);
        return orch__err(err, ORCH_ENOMEM, "out of memory");
    }
    struct parse_ctx pc = {.cfg = cfg, .name = name, .p = text, .err = err, .rc = ORCH_OK};
    int line = ini_parse_stream(read_line, &pc, handler, &pc);
    if (pc.rc)
        rc = pc.rc;
    else if (line > 0)
        rc = orch__err(err, ORCH_ECONFIG,
                       "%s:%d: syntax error (expected [section], key = value, or a comment)", name,
                       line);
    else if (line < 0)
        rc = orch__err(err, ORCH_ENOMEM, "%s: out of memory parsing", name);
    if (rc == ORCH_OK && use_env)
        rc = apply_env(cfg, err);
    if (rc == ORCH_OK)
        rc = orch_config_validate(cfg, err);
    if (rc) {
        orch_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return ORCH_OK;
}

int orch_config_parse(const char *text, const char *name, bool use_env, orch_config **out,
                      orch_error *err)
{
    return parse_impl(text, name, NULL, use_env, out, err);
}

int orch_config_load(const char *path, orch_config **out, orch_error *err)
{
    if (!path || !out)
        return orch__err(err, ORCH_EINVAL, "orch_config_load: NULL argument");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return orch__err_errno(err, errno, "cannot open config file", path);
    if (S_ISDIR(st.st_mode))
        return orch__err(err, ORCH_EISDIR, "config file '%s' is a directory", path);
    if (!S_ISREG(st.st_mode)) /* a FIFO would block the open forever */
        return orch__err(err, ORCH_ECONFIG, "config file '%s' is not a regular file", path);
    if (st.st_size > 1 << 20)
        return orch__err(err, ORCH_ECONFIG, "config file '%s' is larger than 1 MiB", path);
    /* O_NONBLOCK: should the path turn into a FIFO after the stat, the open
     * still does not wait for a writer */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return orch__err_errno(err, e, "cannot open config file", path);
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t n = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!text)
        return orch__err(err, ORCH_ENOMEM, "out of memory reading '%s'", path);
    if (rerr) {
        free(text);
        return orch__err(err, ORCH_EIO, "cannot read config file '%s'", path);
    }
    text[n] = '\0';
    if (memchr(text, '\0', n)) {
        free(text);
        return orch__err(err, ORCH_ECONFIG, "config file '%s' holds a NUL byte", path);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int rc = parse_impl(text, path, dir, true, out, err);
    free(text);
    return rc;
}

static const char *role_name_at(const void *ctx, size_t i)
{
    return ((const orch_config *)ctx)->roles[i].name;
}

void orch__config_role_list(const orch_config *cfg, char *buf, size_t cap)
{
    orch__join_names(buf, cap, cfg->n_roles, role_name_at, cfg);
}

struct named {
    const char *name;
    size_t index;
};

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* Index of the role `name` in the sorted table, or (size_t)-1. */
static size_t find_sorted(const struct named *sorted, size_t n, const char *name)
{
    struct named key = {name, 0};
    const struct named *hit = name ? bsearch(&key, sorted, n, sizeof key, cmp_named) : NULL;
    return hit ? hit->index : (size_t)-1;
}

int orch__config_model_roles(const orch_config *cfg, size_t *model_of, orch_error *err)
{
    size_t n = cfg->n_roles;
    struct named *sorted = malloc((n ? n : 1) * sizeof *sorted);
    size_t *chain = malloc((n ? n : 1) * sizeof *chain);
    unsigned char *state = calloc(n ? n : 1, 1); /* 0 new, 1 on the chain, 2 resolved */
    int rc = ORCH_OK;
    if (!sorted || !chain || !state) {
        rc = orch__err(err, ORCH_ENOMEM, "%s: out of memory", cfg->name);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = (struct named){cfg->roles[i].name, i};
    qsort(sorted, n, sizeof *sorted, cmp_named);
    /* each role is put on a chain once: linear in the roles after the sort */
    for (size_t i = 0; i < n && rc == ORCH_OK; i++) {
        size_t len = 0, cur = i;
        while (state[cur] == 0) {
            state[cur] = 1;
            chain[len++] = cur;
            struct orch__role_cfg r;
            orch__config_resolve(cfg, cur, &r);
            if (r.path) {
                model_of[cur] = cur;
                state[cur] = 2;
                break;
            }
            size_t next = find_sorted(sorted, n, r.fallback);
            if (next == (size_t)-1) {
                char list[300];
                orch__config_role_list(cfg, list, sizeof list);
                rc = orch__err(
                    err, ORCH_ECONFIG, "%s: [%s] fallback = %s: no such role (roles: %s)",
                    r.fallback_where ? r.fallback_where : cfg->name, r.name, r.fallback, list);
                goto done;
            }
            if (state[next] == 1) {
                struct orch__role_cfg x;
                orch__config_resolve(cfg, next, &x);
                rc = orch__err(err, ORCH_ECONFIG,
                               "%s: [%s] fallback = %s: fallback cycle %s -> ... -> %s never "
                               "reaches a role with a path",
                               r.fallback_where ? r.fallback_where : cfg->name, r.name, r.fallback,
                               x.name, r.name);
                goto done;
            }
            cur = next;
        }
        for (size_t k = 0; k < len; k++) {
            model_of[chain[k]] = model_of[cur];
            state[chain[k]] = 2;
        }
    }
done:
    free(sorted);
    free(chain);
    free(state);
    return rc;
}

int orch_config_validate(const orch_config *cfg, orch_error *err)
{
    if (!cfg)
        return orch__err(err, ORCH_EINVAL, "orch_config_validate: config is NULL");
    if (cfg->n_roles == 0)
        return orch__err(err, ORCH_ECONFIG,
                         "%s: no roles defined (add a section such as [reasoning] "
                         "with a path)",
                         cfg->name);
    for (size_t i = 0; i < cfg->n_roles; i++) {
        struct orch__role_cfg r;
        orch__config_resolve(cfg, i, &r);
        if (!r.path && !r.fallback)
            return orch__err(err, ORCH_ECONFIG, "%s:%d: [%s] needs a path or a fallback",
                             cfg->name, r.line, r.name);
        if ((r.source || r.sha256) && !r.path)
            return orch__err(err, ORCH_ECONFIG, "%s:%d: [%s] has a %s but no path (the file "
                             "a pull writes and the role loads)", cfg->name, r.line, r.name,
                             r.source ? "source" : "sha256");
    }
    /* every alias names one role, and no alias is another role's name */
    for (size_t i = 0; i < cfg->n_roles; i++)
        for (size_t a = 0; a < cfg->roles[i].n_aliases; a++) {
            const char *al = cfg->roles[i].aliases[a];
            size_t owner = orch__config_find(cfg, al); /* a role of that name first */
            if (owner == (size_t)-1)
                owner = orch__config_find_any(cfg, al);
            if (owner != i)
                return orch__err(err, ORCH_ECONFIG, "%s:%d: [%s] alias '%s' is already the name "
                                 "or an alias of [%s]", cfg->name, cfg->roles[i].line,
                                 cfg->roles[i].name, al, cfg->roles[owner].name);
            for (size_t b = 0; b < a; b++)
                if (strcmp(cfg->roles[i].aliases[b], al) == 0)
                    return orch__err(err, ORCH_ECONFIG, "%s:%d: [%s] alias '%s' given twice",
                                     cfg->name, cfg->roles[i].line, cfg->roles[i].name, al);
        }
    size_t *model_of = malloc(cfg->n_roles * sizeof *model_of);
    if (!model_of)
        return orch__err(err, ORCH_ENOMEM, "%s: out of memory", cfg->name);
    int rc = orch__config_model_roles(cfg, model_of, err);
    free(model_of);
    return rc;
}

size_t orch__config_find_any(const orch_config *cfg, const char *name)
{
    if (!name)
        return (size_t)-1;
    for (size_t i = 0; i < cfg->n_roles; i++) {
        if (strcmp(cfg->roles[i].name, name) == 0)
            return i;
        for (size_t a = 0; a < cfg->roles[i].n_aliases; a++)
            if (strcmp(cfg->roles[i].aliases[a], name) == 0)
                return i;
    }
    return (size_t)-1;
}

size_t orch_config_find_role(const orch_config *cfg, const char *name)
{
    return cfg ? orch__config_find_any(cfg, name) : (size_t)-1;
}

size_t orch_config_role_n_aliases(const orch_config *cfg, size_t i)
{
    return cfg && i < cfg->n_roles ? cfg->roles[i].n_aliases : 0;
}

const char *orch_config_role_alias(const orch_config *cfg, size_t i, size_t k)
{
    return cfg && i < cfg->n_roles && k < cfg->roles[i].n_aliases ? cfg->roles[i].aliases[k]
                                                                  : NULL;
}

size_t orch__config_find(const orch_config *cfg, const char *role)
{
    if (!role || !cfg->index_cap)
        return (size_t)-1;
    size_t at = *index_slot(cfg, role);
    return at ? at - 1 : (size_t)-1;
}

void orch__config_resolve(const orch_config *cfg, size_t i, struct orch__role_cfg *out)
{
    const struct orch__role_cfg *r = &cfg->roles[i], *d = &cfg->defaults;
    /* the built-in defaults, then each key's value from the role, else [defaults] */
    memset(out, 0, sizeof *out);
    out->gen = orch_gen_default_params();
    out->n_ctx = ORCH_N_CTX_DEFAULT;
    out->idle_ttl_s = ROLE_IDLE_TTL_S;
    out->n_parallel = orch_model_default_params().n_parallel;
    out->repack = true;
    out->name = r->name;
    out->line = r->line;
    for (size_t k = 0; k < N_KEYS; k++) {
        const struct key *key = &keys[k];
        unsigned bit = 1u << k;
        const struct orch__role_cfg *from = NULL;
        if (r->set & bit)
            from = r;
        else if ((d->set & bit) && !key->not_inherited)
            from = d;
        if (key->base != IN_ROLE || !from)
            continue;
        memcpy((char *)out + key->off, (const char *)from + key->off, key->width);
        if (key->width2)
            memcpy((char *)out + key->off2, (const char *)from + key->off2, key->width2);
    }
    out->set = r->set;
}

size_t orch_config_n_roles(const orch_config *cfg)
{
    return cfg ? cfg->n_roles : 0;
}

const char *orch_config_role_name(const orch_config *cfg, size_t i)
{
    return cfg && i < cfg->n_roles ? cfg->roles[i].name : NULL;
}

int orch_config_role_source(const orch_config *cfg, size_t i, struct orch_role_source *out)
{
    memset(out, 0, sizeof *out);
    if (!cfg || i >= cfg->n_roles)
        return ORCH_ENOROLE;
    struct orch__role_cfg r;
    orch__config_resolve(cfg, i, &r);
    out->path = r.path;
    out->url = r.source;
    out->sha256 = r.sha256;
    return ORCH_OK;
}

uint64_t orch_config_budget(const orch_config *cfg)
{
    return cfg ? cfg->budget : 0;
}
