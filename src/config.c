/* config.c - YAML -> a fresh struct config; every error as FILE:LINE:COL.
 *
 * Design. libyaml's document API loads the whole file into a node tree whose nodes
 * carry start marks, so every error can point at the exact key or value. The tree is
 * then walked by small schema tables, one per section: each row names a key, its type,
 * its default (written as the user would type it, so defaults go through the same
 * converters as user values and print back identically), the offset of its slot in
 * the destination struct, and a line of help. The walker is the only code that looks
 * at YAML node types, reports unknown keys with a did-you-mean, substitutes ${VAR}s
 * and reads *_file secrets; sections that are not plain key/value tables (kafka
 * properties, lanes, routes, headers) are kept as nodes and checked afterwards in
 * that order, because routes name lanes and properties depend on kafka.insecure.
 *
 * Errors never stop the walk: each one becomes a located line in a list, the walk
 * goes on with the default in place, and at the end the list is sorted by position,
 * so a user fixing a config sees all of its problems, in file order, in one run. Only
 * a config without any error gets a router and is returned; a half-built one is
 * destroyed (config_destroy accepts any state).
 *
 * Secrets (mqtt.password, password_file contents, kafka properties) are wiped with
 * explicit_bzero when the config is destroyed, and so are the raw file text and the
 * YAML scalars they were read from. They are printed only as "<redacted>".
 *
 * Threads: config_load touches no global state besides getenv; a loaded config is
 * immutable and may be read from any thread. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "sluice/aggregate.h"
#include "sluice/buf.h"
#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/jpath.h"
#include "sluice/route.h"
#include "sluice/tmpl.h"
#include "sluice/units.h"

#define CONFIG_MAX_BYTES  (4u << 20)   /* a config larger than this is a mistake */
#define SECRET_MAX_BYTES  (64u << 10)
#define KEYPATH_MAX       256
#define NAME_MAX_LEN      64           /* lane names fit spool_lane_stats.name */
#define KAFKA_TOPIC_MAX   249

/* ---------------------------------------------------------------------------
 * Schema tables
 * ------------------------------------------------------------------------- */

enum ftype {
    F_STR,          /* char *, ${VAR}s substituted */
    F_SECRET,       /* char *, printed as <redacted>, wiped on destroy */
    F_SECRET_FILE,  /* a path; the file's contents go to the char * at off */
    F_BOOL,         /* bool */
    F_INT,          /* int in [min, max] */
    F_DURATION,     /* int64_t milliseconds */
    F_SIZE,         /* uint64_t bytes */
    F_ENUM,         /* int, one of enums[] */
    F_SECTION,      /* a nested mapping described by sub[] (same base struct) */
    F_MAP,          /* a mapping checked after the walk (properties, lanes, headers) */
    F_LIST,         /* a sequence checked after the walk (routes) */
};

struct enum_name {
    const char *name;
    int         value;
};

struct field {
    const char             *name;
    enum ftype              type;
    const char             *def;    /* default as typed in YAML; NULL = NULL/0/false */
    size_t                  off;    /* slot in the table's base struct */
    const char             *help;   /* one line, printed by `check --print` */
    const struct enum_name *enums;  /* F_ENUM: NULL-terminated */
    const struct field     *sub;    /* F_SECTION: NULL-name-terminated */
    int                     min, max;  /* F_INT */
};

/* Row builders: most rows need only name, type, default, slot and help. */
#define FIELD(n, t, d, o, h)               { n, t, d, o, h, NULL, NULL, 0, 0 }
#define FIELD_INT(n, d, o, lo, hi, h)      { n, F_INT, d, o, h, NULL, NULL, lo, hi }
#define FIELD_ENUM(n, d, o, e, h)          { n, F_ENUM, d, o, h, e, NULL, 0, 0 }
#define FIELD_SECTION(n, sub, h)           { n, F_SECTION, NULL, 0, h, NULL, sub, 0, 0 }
#define FIELD_END                          { NULL, F_STR, NULL, 0, NULL, NULL, NULL, 0, 0 }

#define CO(m) offsetof(struct config, m)

static const struct enum_name mqtt_versions[] = { { "5", 5 }, { "3.1.1", 4 }, { NULL, 0 } };
static const struct enum_name when_full_names[] = {
    { "drop_oldest", WHEN_FULL_DROP_OLDEST }, { "backpressure", WHEN_FULL_BACKPRESSURE },
    { NULL, 0 } };
static const struct enum_name durability_names[] = {
    { "process", DURABILITY_PROCESS }, { "power", DURABILITY_POWER }, { NULL, 0 } };
static const struct enum_name on_corrupt_names[] = {
    { "fail", ON_CORRUPT_FAIL }, { "quarantine", ON_CORRUPT_QUARANTINE }, { NULL, 0 } };
static const struct enum_name log_level_names[] = {
    { "error", LOG_ERROR }, { "warn", LOG_WARN }, { "info", LOG_INFO },
    { "debug", LOG_DEBUG }, { NULL, 0 } };
static const struct enum_name log_format_names[] = {
    { "text", LOG_FORMAT_TEXT }, { "json", LOG_FORMAT_JSON }, { NULL, 0 } };
static const struct enum_name ts_unit_names[] = {
    { "auto", TS_UNIT_AUTO }, { "s", TS_UNIT_S }, { "ms", TS_UNIT_MS },
    { "us", TS_UNIT_US }, { "ns", TS_UNIT_NS }, { NULL, 0 } };

static const struct field tls_fields[] = {
    FIELD("ca_file", F_STR, NULL, CO(mqtt.tls_ca_file),
          "CA certificates (PEM) that sign the broker's certificate"),
    FIELD("cert_file", F_STR, NULL, CO(mqtt.tls_cert_file),
          "client certificate (PEM) for mutual TLS"),
    FIELD("key_file", F_STR, NULL, CO(mqtt.tls_key_file),
          "client private key (PEM) for mutual TLS"),
    FIELD("verify", F_BOOL, "true", CO(mqtt.tls_verify),
          "verify the broker's certificate and host name"),
    FIELD_END,
};

static const struct field mqtt_fields[] = {
    FIELD("url", F_STR, "tcp://127.0.0.1:1883", CO(mqtt.url),
          "broker URL: tcp, ssl, mqtt, mqtts, ws or wss"),
    FIELD("client_id", F_STR, NULL, CO(mqtt.client_id),
          "MQTT client id; default sluice-<instance>"),
    FIELD("username", F_STR, NULL, CO(mqtt.username),
          "user name for the broker"),
    FIELD("password", F_SECRET, NULL, CO(mqtt.password),
          "password for the broker (prefer password_file)"),
    FIELD("password_file", F_SECRET_FILE, NULL, CO(mqtt.password),
          "file holding the broker password"),
    FIELD_SECTION("tls", tls_fields, "TLS settings for ssl/mqtts/wss URLs"),
    FIELD("clean_start", F_BOOL, "false", CO(mqtt.clean_start),
          "false keeps a persistent session the broker queues into"),
    FIELD("session_expiry", F_DURATION, "1d", CO(mqtt.session_expiry_ms),
          "how long the broker keeps the session while sluice is away"),
    FIELD("keepalive", F_DURATION, "30s", CO(mqtt.keepalive_ms),
          "MQTT keepalive interval"),
    FIELD("share_group", F_STR, "", CO(mqtt.share_group),
          "shared subscription group, to split load over instances"),
    FIELD_ENUM("version", "5", CO(mqtt.version), mqtt_versions,
               "protocol version: 5 or \"3.1.1\""),
    FIELD_INT("qos", "1", CO(mqtt.qos), 0, 2,
              "subscription QoS"),
    FIELD_END,
};

static const struct field kafka_fields[] = {
    FIELD("bootstrap", F_STR, "localhost:9092", CO(kafka.bootstrap),
          "host:port list, or 'embedded' for the in-process dev broker"),
    FIELD("properties", F_MAP, NULL, 0,
          "librdkafka properties, passed as is"),
    FIELD("insecure", F_BOOL, "false", CO(kafka.insecure),
          "allow turning off TLS certificate verification"),
    FIELD_END,
};

static const struct field spool_fields[] = {
    FIELD("path", F_STR, "/var/lib/sluice/spool.db", CO(spool.path),
          "the SQLite spool file"),
    FIELD("max_bytes", F_SIZE, "2GiB", CO(spool.max_bytes),
          "spool size limit; 0 = none"),
    FIELD("max_age", F_DURATION, "7d", CO(spool.max_age_ms),
          "record age limit; 0 = none"),
    FIELD_ENUM("when_full", "drop_oldest", CO(spool.when_full), when_full_names,
               "drop_oldest or backpressure"),
    FIELD_ENUM("durability", "process", CO(spool.durability), durability_names,
               "process (WAL fsync every sync_interval) or power (fsync before every ack)"),
    FIELD("sync_interval", F_DURATION, "200ms", CO(spool.sync_interval_ms),
          "the most a power cut can lose with durability process"),
    FIELD_ENUM("on_corrupt", "fail", CO(spool.on_corrupt), on_corrupt_names,
               "a damaged spool at start: fail (exit 74) or quarantine (move aside, start fresh)"),
    FIELD_END,
};

static const struct field forward_fields[] = {
    FIELD("max_rate", F_SIZE, "0", CO(forward_max_rate),
          "uplink cap in bytes per second; 0 = none"),
    FIELD_END,
};

static const struct field dead_letter_fields[] = {
    FIELD("topic", F_STR, "sluice.dead-letter", CO(dead_letter_topic),
          "Kafka topic for undecodable and rejected records"),
    FIELD_END,
};

static const struct field http_fields[] = {
    FIELD("listen", F_STR, "127.0.0.1:9187", CO(http_listen),
          "host:port for /metrics /healthz /readyz; \"\" = off"),
    FIELD_END,
};

static const struct field log_fields[] = {
    FIELD_ENUM("level", "info", CO(log_level), log_level_names,
               "error, warn, info or debug"),
    FIELD_ENUM("format", "text", CO(log_format), log_format_names,
               "text or json"),
    FIELD_END,
};

static const struct field sparkplug_fields[] = {
    FIELD("request_rebirth", F_BOOL, "false", CO(sparkplug.request_rebirth),
          "publish a Rebirth NCMD for DATA sluice cannot name (no BIRTH, seq gap...)"),
    FIELD("rebirth_interval", F_DURATION, "30s", CO(sparkplug.rebirth_interval_ms),
          "at most one Rebirth request per edge node per this interval"),
    FIELD_END,
};

static const struct field root_fields[] = {
    FIELD("instance", F_STR, NULL, CO(instance),
          "names this bridge; default: the host name"),
    FIELD_SECTION("mqtt", mqtt_fields, "the MQTT broker to subscribe to"),
    FIELD_SECTION("kafka", kafka_fields, "the Kafka cluster to produce to"),
    FIELD_SECTION("spool", spool_fields, "the durable local buffer"),
    FIELD("lanes", F_MAP, NULL, 0,
          "drain order during catch-up"),
    FIELD_SECTION("forward", forward_fields, "the uplink to Kafka"),
    FIELD_SECTION("dead_letter", dead_letter_fields, "where bad records go"),
    FIELD_SECTION("http", http_fields, "metrics and health endpoints"),
    FIELD_SECTION("log", log_fields, "log lines on stderr"),
    FIELD_SECTION("sparkplug", sparkplug_fields, "Sparkplug B host behaviour"),
    FIELD("routes", F_LIST, NULL, 0,
          "MQTT topic -> Kafka record rules, first match wins"),
    FIELD_END,
};

#define LO(m) offsetof(struct config_lane, m)

static const struct enum_name compact_names[] = {
    { "none", COMPACT_NONE }, { "latest_per_key", COMPACT_LATEST_PER_KEY }, { NULL, 0 } };

static const struct field lane_fields[] = {
    FIELD_INT("priority", "5", LO(priority), 0, 9,
              "lower drains first"),
    FIELD("max_age", F_DURATION, "0", LO(max_age_ms),
          "record age limit for this lane; 0 = spool.max_age"),
    FIELD_ENUM("compact", "none", LO(compact), compact_names,
               "latest_per_key: keep only the newest waiting record per Kafka key"),
    FIELD_END,
};

/* A route as written, before compiling: the walker fills it, route_build compiles. */
struct route_src {
    char *name, *match, *format, *topic, *key, *timestamp, *lane, *where;
    char *db_field, *db_abs, *db_pct;   /* deadband: section, numbers checked later */
    char *agg_window, *agg_lateness, *agg_late, *agg_late_topic;   /* aggregate: */
    int   ts_unit;
    bool  envelope;
};

#define RO(m) offsetof(struct route_src, m)

static const struct field deadband_fields[] = {
    FIELD("field", F_STR, NULL, RO(db_field),
          "JSON path of the numeric value"),
    FIELD("abs", F_STR, NULL, RO(db_abs),
          "forward when the value moved more than this"),
    FIELD("pct", F_STR, NULL, RO(db_pct),
          "... or more than this percent of the last forwarded value"),
    FIELD_END,
};

static const struct field aggregate_fields[] = {
    FIELD("window", F_STR, NULL, RO(agg_window),
          "tumbling window length by event time, e.g. 1m"),
    FIELD("lateness", F_STR, NULL, RO(agg_lateness),
          "how long after its end a window still takes records; default 0"),
    FIELD("late", F_STR, NULL, RO(agg_late),
          "drop: late records are counted and dropped (default)"),
    FIELD("late_topic", F_STR, NULL, RO(agg_late_topic),
          "send late records, as they are, to this Kafka topic instead"),
    FIELD("fields", F_MAP, NULL, 0,
          "output name -> { fn: count|sum|avg|min|max|first|last, field: JSON path }"),
    FIELD_END,
};

static const struct field route_fields[] = {
    FIELD("name", F_STR, NULL, RO(name),
          "route name, used in metrics"),
    FIELD("match", F_STR, NULL, RO(match),
          "MQTT topic pattern with {captures}"),
    FIELD("format", F_STR, "raw", RO(format),
          "payload format"),
    FIELD("topic", F_STR, NULL, RO(topic),
          "Kafka topic template"),
    FIELD("key", F_STR, NULL, RO(key),
          "Kafka key template"),
    FIELD("timestamp", F_STR, NULL, RO(timestamp),
          "JSON path of the event time"),
    FIELD_ENUM("timestamp_unit", "auto", RO(ts_unit), ts_unit_names,
               "auto, s, ms, us or ns"),
    FIELD("lane", F_STR, NULL, RO(lane),
          "spool lane; default: default"),
    FIELD("envelope", F_BOOL, "false", RO(envelope),
          "value = {topic, captures, payload} (json, sparkplug)"),
    FIELD("headers", F_MAP, NULL, 0,
          "extra Kafka headers: name -> template"),
    FIELD("where", F_STR, NULL, RO(where),
          "keep only messages this condition holds for (see README: Reducing what leaves the site)"),
    FIELD_SECTION("deadband", deadband_fields,
                  "forward a value only when it moved past a band, per Kafka key"),
    FIELD_SECTION("aggregate", aggregate_fields,
                  "one record per Kafka key and event-time window instead of every message"),
    FIELD_END,
};

/* ---------------------------------------------------------------------------
 * The loader: one run of config_load
 * ------------------------------------------------------------------------- */

struct diag {
    int    line, col;   /* 1-based */
    size_t seq;         /* emission order, breaks ties in the sort */
    char  *text;
};

/* Every key the walker accepted, so later checks can point at it. */
struct seen {
    char        *path;
    yaml_node_t *key, *value;
};

struct loader {
    const char      *name;
    const char      *text;
    size_t           len;
    yaml_document_t *doc;
    struct config   *cfg;
    struct diag     *diags;
    size_t           ndiags, capdiags;
    struct seen     *seen;
    size_t           nseen, capseen;
    bool             oom;
};

static void diag_at(struct loader *ld, int line, int col, const char *path, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
static void diag(struct loader *ld, const yaml_node_t *at, const char *path, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

static void diag_vat(struct loader *ld, int line, int col, const char *path, const char *fmt,
                     va_list ap) __attribute__((format(printf, 5, 0)));

static void
diag_vat(struct loader *ld, int line, int col, const char *path, const char *fmt, va_list ap)
{
    char msg[1024];
    struct buf b;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    buf_init(&b);
    if (path != NULL && path[0] != '\0')
        buf_printf(&b, "%s:%d:%d: %s: %s", ld->name, line, col, path, msg);
    else
        buf_printf(&b, "%s:%d:%d: %s", ld->name, line, col, msg);
    if (b.data == NULL) {
        ld->oom = true;
        return;
    }
    if (ld->ndiags == ld->capdiags) {
        size_t cap = ld->capdiags ? ld->capdiags * 2 : 16;
        struct diag *d = realloc(ld->diags, cap * sizeof(*d));
        if (d == NULL) {
            buf_fini(&b);
            ld->oom = true;
            return;
        }
        ld->diags = d;
        ld->capdiags = cap;
    }
    ld->diags[ld->ndiags] = (struct diag){ line, col, ld->ndiags, b.data };
    ld->ndiags++;
}

static void
diag_at(struct loader *ld, int line, int col, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_vat(ld, line, col, path, fmt, ap);
    va_end(ap);
}

/* at may be NULL: the problem has no place in the file (a missing section). */
static void
diag(struct loader *ld, const yaml_node_t *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    int line = 1, col = 1;

    if (at != NULL) {
        line = (int)at->start_mark.line + 1;
        col = (int)at->start_mark.column + 1;
    }
    va_start(ap, fmt);
    diag_vat(ld, line, col, path, fmt, ap);
    va_end(ap);
}

static int
diag_cmp(const void *a, const void *b)
{
    const struct diag *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
record_seen(struct loader *ld, const char *path, yaml_node_t *key, yaml_node_t *value)
{
    char *p;

    if (ld->nseen == ld->capseen) {
        size_t cap = ld->capseen ? ld->capseen * 2 : 64;
        struct seen *s = realloc(ld->seen, cap * sizeof(*s));
        if (s == NULL) {
            ld->oom = true;
            return;
        }
        ld->seen = s;
        ld->capseen = cap;
    }
    if ((p = strdup(path)) == NULL) {
        ld->oom = true;
        return;
    }
    ld->seen[ld->nseen++] = (struct seen){ p, key, value };
}

static const struct seen *
find_seen(const struct loader *ld, const char *path)
{
    for (size_t i = 0; i < ld->nseen; i++)
        if (strcmp(ld->seen[i].path, path) == 0)
            return &ld->seen[i];
    return NULL;
}

/* The value node at path, or NULL when the key was not in the file. */
static yaml_node_t *
node_at(const struct loader *ld, const char *path)
{
    const struct seen *s = find_seen(ld, path);

    return s != NULL ? s->value : NULL;
}

static char *
xstrdup(struct loader *ld, const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        ld->oom = true;
    return p;
}

static void
free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* ---------------------------------------------------------------------------
 * YAML helpers
 * ------------------------------------------------------------------------- */

static const char *
scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: the key is there but says nothing, which
 * reads as "use the default". */
static bool
is_null(const yaml_node_t *n)
{
    const char *s;

    if (n == NULL)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = scalar(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static const char *
node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:  return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_SCALAR_NODE:   return "a scalar";
    default:                 return "nothing";
    }
}

/* parent.key; key paths longer than cap are cut short: they only label messages. */
static void
child_path(char *out, size_t cap, const char *parent, const char *key)
{
    size_t lp = strlen(parent), lk = strlen(key), off = 0;

    if (lp > 0) {
        lp = lp < cap - 1 ? lp : cap - 1;
        memcpy(out, parent, lp);
        off = lp;
        if (off < cap - 1)
            out[off++] = '.';
    }
    lk = lk < cap - 1 - off ? lk : cap - 1 - off;
    memcpy(out + off, key, lk);
    out[off + lk] = '\0';
}

/* Levenshtein distance ignoring case, for did-you-mean; long strings are "far". */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[NAME_MAX_LEN + 1], cur[NAME_MAX_LEN + 1];

    if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) !=
                                        tolower((unsigned char)b[j - 1]));
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
    }
    return prev[lb];
}

/* ---------------------------------------------------------------------------
 * ${VAR} substitution
 * ------------------------------------------------------------------------- */

/* Replaces ${NAME} and ${NAME:-default} (the default also applies when NAME is set
 * but empty, as in sh). "$${" is a literal "${". Returns an owned string in *out, or
 * -EINVAL after reporting the problem at the scalar. The result may be a secret:
 * scratch memory is wiped. */
static int
substitute(struct loader *ld, const yaml_node_t *n, const char *path, char **out)
{
    const char *p = scalar(n);
    struct buf b;
    int rc = 0;

    *out = NULL;
    buf_init(&b);
    if (buf_append_str(&b, "", 0) < 0)
        goto oom;
    while (*p != '\0') {
        const char *open = strstr(p, "${"), *close, *name_end, *val;
        char name[128];
        size_t nlen;

        if (open == NULL) {
            if (buf_append_str(&b, p, strlen(p)) < 0)
                goto oom;
            break;
        }
        if (open > p && open[-1] == '$') {
            /* "$${": emit everything up to and including one '$' then "{". */
            if (buf_append_str(&b, p, (size_t)(open - p) - 1) < 0 ||
                buf_append_str(&b, "${", 2) < 0)
                goto oom;
            p = open + 2;
            continue;
        }
        if (buf_append_str(&b, p, (size_t)(open - p)) < 0)
            goto oom;
        if ((close = strchr(open + 2, '}')) == NULL) {
            diag(ld, n, path, "unterminated '${' (write '$${' for a literal '${')");
            rc = -EINVAL;
            goto done;
        }
        name_end = open + 2;
        while (name_end < close && (isalnum((unsigned char)*name_end) || *name_end == '_'))
            name_end++;
        nlen = (size_t)(name_end - (open + 2));
        if (nlen == 0 || nlen >= sizeof(name) || isdigit((unsigned char)open[2]) ||
            (name_end != close && strncmp(name_end, ":-", 2) != 0)) {
            diag(ld, n, path, "bad variable reference '%.*s' (use ${NAME} or ${NAME:-default})",
                 (int)(close - open + 1), open);
            rc = -EINVAL;
            goto done;
        }
        memcpy(name, open + 2, nlen);
        name[nlen] = '\0';
        val = getenv(name);
        if (name_end != close && (val == NULL || val[0] == '\0')) {
            if (buf_append_str(&b, name_end + 2, (size_t)(close - name_end - 2)) < 0)
                goto oom;
        } else if (val != NULL) {
            if (buf_append_str(&b, val, strlen(val)) < 0)
                goto oom;
        } else {
            diag(ld, n, path, "environment variable %s is not set (use ${%s:-default} for a default)",
                 name, name);
            rc = -EINVAL;
        }
        p = close + 1;
    }
    if (rc == 0) {
        if ((*out = strdup(b.data)) == NULL)
            goto oom;
    }
done:
    if (b.data != NULL)
        explicit_bzero(b.data, b.cap);
    buf_fini(&b);
    return rc;
oom:
    ld->oom = true;
    rc = -ENOMEM;
    goto done;
}

/* ---------------------------------------------------------------------------
 * Scalar conversion
 * ------------------------------------------------------------------------- */

static char **
str_slot(void *base, const struct field *f)
{
    return (char **)((char *)base + f->off);
}

static void
enum_list(const struct enum_name *e, char *out, size_t cap)
{
    size_t off = 0;

    out[0] = '\0';
    for (; e->name != NULL && off < cap; e++)
        off += (size_t)snprintf(out + off, cap - off, "%s%s", off ? ", " : "", e->name);
}

static const char *
enum_name_of(const struct enum_name *e, int v)
{
    for (; e->name != NULL; e++)
        if (e->value == v)
            return e->name;
    return "?";
}

/* Reads a secret file: contents minus trailing newlines. */
static int
read_secret_file(const char *path, char **out, struct err *err)
{
    char *data = NULL;
    size_t len = 0;
    ssize_t n;
    int fd, rc;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
    if ((data = malloc(SECRET_MAX_BYTES + 1)) == NULL) {
        close(fd);
        return err_set(err, -ENOMEM, "out of memory");
    }
    while ((n = read(fd, data + len, SECRET_MAX_BYTES + 1 - len)) > 0) {
        len += (size_t)n;
        if (len > SECRET_MAX_BYTES)
            break;
    }
    if (n < 0) {
        rc = err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (len > SECRET_MAX_BYTES) {
        rc = err_set(err, -EFBIG, "%s is larger than %u bytes", path, SECRET_MAX_BYTES);
        goto fail;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    data[len] = '\0';
    if (len == 0) {
        rc = err_set(err, -EINVAL, "%s is empty", path);
        goto fail;
    }
    close(fd);
    *out = data;
    return 0;
fail:
    close(fd);
    explicit_bzero(data, SECRET_MAX_BYTES + 1);
    free(data);
    return rc;
}

/* Converts text (already substituted) into f's slot. at/path locate errors; at is
 * NULL for defaults, which cannot fail. Returns 0 or -EINVAL (reported). */
static int
set_value(struct loader *ld, const struct field *f, const char *text, void *base,
          const yaml_node_t *at, const char *path)
{
    void *slot = (char *)base + f->off;
    char list[256];
    struct err e;

    switch (f->type) {
    case F_STR:
    case F_SECRET: {
        char *copy = xstrdup(ld, text);
        if (copy == NULL)
            return -ENOMEM;
        free_secret(*str_slot(base, f));
        *str_slot(base, f) = copy;
        return 0;
    }
    case F_SECRET_FILE: {
        char *secret;
        int rc;
        err_clear(&e);
        if ((rc = read_secret_file(text, &secret, &e)) < 0) {
            if (rc == -ENOMEM)
                ld->oom = true;
            diag(ld, at, path, "%s", e.msg);
            return rc;
        }
        free_secret(*str_slot(base, f));
        *str_slot(base, f) = secret;
        return 0;
    }
    case F_BOOL: {
        static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(text, yes[i]) == 0) {
                *(bool *)slot = true;
                return 0;
            }
            if (strcasecmp(text, no[i]) == 0) {
                *(bool *)slot = false;
                return 0;
            }
        }
        diag(ld, at, path, "expected true or false, got '%s'", text);
        return -EINVAL;
    }
    case F_INT: {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(text, &end, 10);
        if (text[0] == '\0' || *end != '\0' || errno != 0 || isspace((unsigned char)text[0])) {
            diag(ld, at, path, "expected an integer, got '%s'", text);
            return -EINVAL;
        }
        if (v < f->min || v > f->max) {
            diag(ld, at, path, "expected an integer from %d to %d, got %s", f->min, f->max, text);
            return -EINVAL;
        }
        *(int *)slot = (int)v;
        return 0;
    }
    case F_DURATION:
        if (units_parse_duration(text, (int64_t *)slot) < 0) {
            diag(ld, at, path,
                 "invalid duration '%s' (a whole number with ms, s, m, h or d, e.g. 30s)", text);
            return -EINVAL;
        }
        return 0;
    case F_SIZE:
        if (units_parse_size(text, (uint64_t *)slot) < 0) {
            diag(ld, at, path,
                 "invalid size '%s' (a whole number of bytes, or with KiB, MiB or GiB, e.g. 2GiB)",
                 text);
            return -EINVAL;
        }
        return 0;
    case F_ENUM:
        for (const struct enum_name *en = f->enums; en->name != NULL; en++) {
            if (strcmp(text, en->name) == 0) {
                *(int *)slot = en->value;
                return 0;
            }
        }
        enum_list(f->enums, list, sizeof(list));
        diag(ld, at, path, "unknown value '%s' (expected one of: %s)", text, list);
        return -EINVAL;
    default:
        return 0;
    }
}

static void
apply_defaults(struct loader *ld, const struct field *tab, void *base)
{
    for (const struct field *f = tab; f->name != NULL; f++) {
        if (f->type == F_SECTION)
            apply_defaults(ld, f->sub, base);
        else if (f->def != NULL)
            (void)set_value(ld, f, f->def, base, NULL, f->name);
    }
}

static void
free_fields(const struct field *tab, void *base)
{
    for (const struct field *f = tab; f->name != NULL; f++) {
        if (f->type == F_SECTION) {
            free_fields(f->sub, base);
        } else if (f->type == F_STR || f->type == F_SECRET) {
            free_secret(*str_slot(base, f));   /* wiping a non-secret costs nothing */
            *str_slot(base, f) = NULL;
        }
    }
}

/* ---------------------------------------------------------------------------
 * The table walker
 * ------------------------------------------------------------------------- */

static const char *
type_word(const struct field *f)
{
    switch (f->type) {
    case F_STR:
    case F_SECRET:      return "a string";
    case F_SECRET_FILE: return "a file name";
    case F_BOOL:        return "true or false";
    case F_INT:         return "an integer";
    case F_DURATION:    return "a duration (e.g. 30s)";
    case F_SIZE:        return "a size (e.g. 2GiB)";
    case F_ENUM:        return "a single value";
    case F_SECTION:
    case F_MAP:         return "a mapping";
    case F_LIST:        return "a list";
    }
    return "?";
}

static void
unknown_key(struct loader *ld, const yaml_node_t *key, const char *path,
            const struct field *tab)
{
    const char *name = scalar(key), *best = NULL;
    size_t bestd = SIZE_MAX;
    char known[512];
    size_t off = 0;

    for (const struct field *f = tab; f->name != NULL; f++) {
        size_t d = edit_distance(name, f->name);
        if (d < bestd) {
            bestd = d;
            best = f->name;
        }
        if (off < sizeof(known))
            off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s",
                                    off ? ", " : "", f->name);
    }
    if (best != NULL && bestd <= 2 && bestd < strlen(name))
        diag(ld, key, path, "unknown key (did you mean '%s'?)", best);
    else
        diag(ld, key, path, "unknown key (known keys: %s)", known);
}

/* Reports the second of two equal keys in one mapping. Returns true if duplicate. */
static bool
duplicate_key(struct loader *ld, yaml_node_pair_t *first, yaml_node_pair_t *pair,
              const char *path, const char *what)
{
    yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);

    for (yaml_node_pair_t *q = first; q < pair; q++) {
        yaml_node_t *qk = yaml_document_get_node(ld->doc, q->key);
        if (qk->type == YAML_SCALAR_NODE && strcmp(scalar(qk), scalar(k)) == 0) {
            diag(ld, k, path, "duplicate %s '%s' (first at line %d)", what, scalar(k),
                 (int)qk->start_mark.line + 1);
            return true;
        }
    }
    return false;
}

/* Walks mapping node against tab, writing into base. path is the mapping's key path
 * ("" for the root). Reports every problem and carries on. */
static void
walk_map(struct loader *ld, yaml_node_t *node, const struct field *tab, void *base,
         const char *path)
{
    yaml_node_pair_t *pair, *first;

    if (is_null(node))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        diag(ld, node, path[0] ? path : NULL, "expected a mapping, got %s", node_kind(node));
        return;
    }
    first = node->data.mapping.pairs.start;
    for (pair = first; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ld->doc, pair->value);
        const struct field *f;
        char kpath[KEYPATH_MAX];
        char *text;

        if (k->type != YAML_SCALAR_NODE) {
            diag(ld, k, path[0] ? path : NULL, "keys must be plain names, got %s", node_kind(k));
            continue;
        }
        child_path(kpath, sizeof(kpath), path, scalar(k));
        if (duplicate_key(ld, first, pair, kpath, "key"))
            continue;
        for (f = tab; f->name != NULL; f++)
            if (strcmp(f->name, scalar(k)) == 0)
                break;
        if (f->name == NULL) {
            unknown_key(ld, k, kpath, tab);
            continue;
        }
        record_seen(ld, kpath, k, v);
        switch (f->type) {
        case F_SECTION:
            walk_map(ld, v, f->sub, base, kpath);
            continue;
        case F_MAP:
            if (!is_null(v) && v->type != YAML_MAPPING_NODE)
                diag(ld, v, kpath, "expected a mapping, got %s", node_kind(v));
            continue;
        case F_LIST:
            if (!is_null(v) && v->type != YAML_SEQUENCE_NODE)
                diag(ld, v, kpath, "expected a list, got %s", node_kind(v));
            continue;
        default:
            break;
        }
        if (v->type != YAML_SCALAR_NODE) {
            diag(ld, v, kpath, "expected %s, got %s", type_word(f), node_kind(v));
            continue;
        }
        if (is_null(v))
            continue;
        if (substitute(ld, v, kpath, &text) < 0)
            continue;
        (void)set_value(ld, f, text, base, v, kpath);
        free_secret(text);
    }
}

/* ---------------------------------------------------------------------------
 * Checks after the walk
 * ------------------------------------------------------------------------- */

static bool
is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

static bool
is_name(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[i]))
            return false;
    return true;
}

static bool
is_kafka_topic(const char *s)
{
    return is_name(s, KAFKA_TOPIC_MAX) && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static void
check_instance(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    char host[256];

    if (cfg->instance == NULL) {
        /* The host name, with anything a Kafka header or client id would trip on
         * replaced: it is a default, so it must not be an error. */
        if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "sluice");
        host[sizeof(host) - 1] = '\0';
        host[NAME_MAX_LEN] = '\0';
        for (char *p = host; *p != '\0'; p++)
            if (!is_name_char(*p))
                *p = '-';
        cfg->instance = xstrdup(ld, host);
        return;
    }
    if (!is_name(cfg->instance, NAME_MAX_LEN))
        diag(ld, node_at(ld, "instance"), "instance",
             "'%s' is not a valid instance name (1 to %d letters, digits, '.', '_' or '-')",
             cfg->instance, NAME_MAX_LEN);
}

static void
check_mqtt(struct loader *ld)
{
    static const char *const schemes[] = { "tcp", "ssl", "mqtt", "mqtts", "ws", "wss" };
    struct config_mqtt *m = &ld->cfg->mqtt;
    const char *sep;
    size_t slen;
    bool ok = false;

    if (m->client_id == NULL && ld->cfg->instance != NULL) {
        size_t n = strlen(ld->cfg->instance) + sizeof("sluice-");
        if ((m->client_id = malloc(n)) == NULL)
            ld->oom = true;
        else
            snprintf(m->client_id, n, "sluice-%s", ld->cfg->instance);
    } else if (m->client_id != NULL && m->client_id[0] == '\0') {
        diag(ld, node_at(ld, "mqtt.client_id"), "mqtt.client_id", "must not be empty");
    }

    sep = strstr(m->url, "://");
    if (sep == NULL || sep == m->url || sep[3] == '\0') {
        diag(ld, node_at(ld, "mqtt.url"), "mqtt.url",
             "'%s' is not a broker URL (expected scheme://host:port, e.g. tcp://127.0.0.1:1883)",
             m->url);
    } else {
        slen = (size_t)(sep - m->url);
        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
            if (strlen(schemes[i]) == slen && strncmp(m->url, schemes[i], slen) == 0)
                ok = true;
        if (!ok)
            diag(ld, node_at(ld, "mqtt.url"), "mqtt.url",
                 "unknown scheme '%.*s' (expected tcp, ssl, mqtt, mqtts, ws or wss)",
                 (int)slen, m->url);
    }

    if (node_at(ld, "mqtt.password") != NULL && node_at(ld, "mqtt.password_file") != NULL)
        diag(ld, node_at(ld, "mqtt.password_file"), "mqtt.password_file",
             "set password or password_file, not both");
    if (m->share_group[0] != '\0' && strpbrk(m->share_group, "/+#") != NULL)
        diag(ld, node_at(ld, "mqtt.share_group"), "mqtt.share_group",
             "'%s' must not contain '/', '+' or '#'", m->share_group);
    /* MQTT carries keepalive in 16 bits and session expiry in 32 bits of seconds. */
    if (m->keepalive_ms > 65535 * 1000LL)
        diag(ld, node_at(ld, "mqtt.keepalive"), "mqtt.keepalive", "must be at most 65535s");
    if (m->session_expiry_ms > 4294967295LL * 1000)
        diag(ld, node_at(ld, "mqtt.session_expiry"), "mqtt.session_expiry",
             "must be at most 4294967295s");
}

static void
check_misc(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    const char *colon, *port;
    char *end;
    long p;

    /* An empty value only: a value that failed ${VAR} substitution kept the
     * default and has been reported already. */
    if (cfg->kafka.bootstrap[0] == '\0')
        diag(ld, node_at(ld, "kafka.bootstrap"), "kafka.bootstrap",
             "must not be empty (host:port[,host:port...], or 'embedded' to try sluice out)");
    if (cfg->spool.path[0] == '\0')
        diag(ld, node_at(ld, "spool.path"), "spool.path", "must not be empty");
    if (cfg->spool.sync_interval_ms <= 0)
        diag(ld, node_at(ld, "spool.sync_interval"), "spool.sync_interval",
             "must be greater than 0");
    if (cfg->sparkplug.rebirth_interval_ms < 1000)
        diag(ld, node_at(ld, "sparkplug.rebirth_interval"), "sparkplug.rebirth_interval",
             "must be at least 1s (it rate-limits the Rebirth requests to each edge node)");
    if (!is_kafka_topic(cfg->dead_letter_topic))
        diag(ld, node_at(ld, "dead_letter.topic"), "dead_letter.topic",
             "'%s' is not a legal Kafka topic name (1 to 249 letters, digits, '.', '_' or '-')",
             cfg->dead_letter_topic);
    if (cfg->http_listen[0] != '\0') {
        colon = strrchr(cfg->http_listen, ':');
        port = colon != NULL ? colon + 1 : "";
        errno = 0;
        p = strtol(port, &end, 10);
        if (colon == NULL || colon == cfg->http_listen || *port == '\0' || *end != '\0' ||
            errno != 0 || p < 0 || p > 65535)   /* 0: any free port, logged */
            diag(ld, node_at(ld, "http.listen"), "http.listen",
                 "'%s' is not host:port (e.g. 127.0.0.1:9187; \"\" turns the endpoint off)",
                 cfg->http_listen);
    }
}

/* Property keys whose values are secrets: never printed. */
static bool
is_secret_property(const char *key)
{
    static const char *const words[] = { "password", "secret", "oauthbearer.config",
                                         "ssl.key.pem", "jaas", "token", "credential" };

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(key, words[i]) != NULL)
            return true;
    return false;
}

static void
build_properties(struct loader *ld)
{
    struct config_kafka *k = &ld->cfg->kafka;
    yaml_node_t *map = node_at(ld, "kafka.properties");
    yaml_node_pair_t *pair, *first;
    size_t n;

    if (is_null(map) || map->type != YAML_MAPPING_NODE)
        return;
    first = map->data.mapping.pairs.start;
    n = (size_t)(map->data.mapping.pairs.top - first);
    if (n == 0)
        return;
    if ((k->props = calloc(n, sizeof(*k->props))) == NULL) {
        ld->oom = true;
        return;
    }
    for (pair = first; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(ld->doc, pair->value);
        char path[KEYPATH_MAX];
        const char *key;
        char *val;

        if (kn->type != YAML_SCALAR_NODE) {
            diag(ld, kn, "kafka.properties", "keys must be plain names, got %s", node_kind(kn));
            continue;
        }
        key = scalar(kn);
        child_path(path, sizeof(path), "kafka.properties", key);
        if (duplicate_key(ld, first, pair, path, "property"))
            continue;
        if (strcmp(key, "acks") == 0 || strcmp(key, "request.required.acks") == 0) {
            diag(ld, kn, path, "sluice always uses acks=all");
            continue;
        }
        if (strcmp(key, "enable.idempotence") == 0) {
            diag(ld, kn, path, "sluice always uses enable.idempotence=true");
            continue;
        }
        if (strcmp(key, "bootstrap.servers") == 0 || strcmp(key, "metadata.broker.list") == 0) {
            diag(ld, kn, path, "set kafka.bootstrap instead");
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE || is_null(vn)) {
            diag(ld, vn, path, "expected a value (librdkafka properties are strings), got %s",
                 is_null(vn) ? "nothing" : node_kind(vn));
            continue;
        }
        if (substitute(ld, vn, path, &val) < 0)
            continue;
        /* Every spelling librdkafka reads as false (rd_kafka_anyconf_set_prop0:
         * "false", "f", any case, or "0"); anything else it rejects itself. */
        if (strcmp(key, "enable.ssl.certificate.verification") == 0 && !k->insecure &&
            (strcasecmp(val, "false") == 0 || strcasecmp(val, "f") == 0 ||
             strcmp(val, "0") == 0)) {
            diag(ld, vn, path, "turning off certificate verification needs kafka.insecure: true");
            free_secret(val);
            continue;
        }
        if ((k->props[k->nprops].key = xstrdup(ld, key)) == NULL) {
            free_secret(val);
            continue;
        }
        k->props[k->nprops++].value = val;
    }
}

static void
add_lane(struct loader *ld, const char *name, int priority)
{
    struct config *cfg = ld->cfg;
    struct config_lane *l = realloc(cfg->lanes, (cfg->nlanes + 1) * sizeof(*l));

    if (l == NULL) {
        ld->oom = true;
        return;
    }
    cfg->lanes = l;
    l = &cfg->lanes[cfg->nlanes];
    memset(l, 0, sizeof(*l));
    if ((l->name = xstrdup(ld, name)) == NULL)
        return;
    l->priority = priority;
    cfg->nlanes++;
}

/* Lanes from the file, then "default" (priority 5) unless the file defines it:
 * routes without a lane go there, so it always exists. */
static void
build_lanes(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    yaml_node_t *map = node_at(ld, "lanes");
    int idx;

    if (!is_null(map) && map->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *first = map->data.mapping.pairs.start;
        for (yaml_node_pair_t *pair = first; pair < map->data.mapping.pairs.top; pair++) {
            yaml_node_t *kn = yaml_document_get_node(ld->doc, pair->key);
            yaml_node_t *vn = yaml_document_get_node(ld->doc, pair->value);
            char path[KEYPATH_MAX];
            size_t before = cfg->nlanes;

            if (kn->type != YAML_SCALAR_NODE) {
                diag(ld, kn, "lanes", "lane names must be plain names, got %s", node_kind(kn));
                continue;
            }
            child_path(path, sizeof(path), "lanes", scalar(kn));
            if (duplicate_key(ld, first, pair, path, "lane"))
                continue;
            if (!is_name(scalar(kn), NAME_MAX_LEN - 1)) {
                diag(ld, kn, path, "'%s' is not a valid lane name (1 to %d letters, digits, '.', '_' or '-')",
                     scalar(kn), NAME_MAX_LEN - 1);
                continue;
            }
            add_lane(ld, scalar(kn), 5);
            if (cfg->nlanes == before)
                continue;
            apply_defaults(ld, lane_fields, &cfg->lanes[before]);
            walk_map(ld, vn, lane_fields, &cfg->lanes[before], path);
        }
    }
    if ((idx = config_lane_index(cfg, "default")) < 0) {
        add_lane(ld, "default", 5);
        idx = (int)cfg->nlanes - 1;
    }
    cfg->default_lane = idx < 0 ? 0 : (size_t)idx;
}

static bool
is_reserved_header(const char *name)
{
    return strncmp(name, "mqtt.", 5) == 0 || strncmp(name, "sluice.", 7) == 0 ||
           strcmp(name, "event.time") == 0 || strcmp(name, "ingest.time") == 0 ||
           strcmp(name, "error") == 0;
}

static void
route_src_free(struct route_src *rs)
{
    free_fields(route_fields, rs);
}

/* Compiles one template; reports tmpl_compile's sentence at the template's node. */
static struct tmpl *
compile_tmpl(struct loader *ld, const char *text, const char *const *names, size_t nnames,
             const yaml_node_t *at, const char *path)
{
    struct tmpl *t = NULL;
    struct err e;
    int rc;

    err_clear(&e);
    if ((rc = tmpl_compile(&t, text, names, nnames, &e)) < 0) {
        if (rc == -ENOMEM)
            ld->oom = true;
        diag(ld, at, path, "%s", e.msg);
        return NULL;
    }
    return t;
}

static void
build_headers(struct loader *ld, struct config_route *r, const char *rpath,
              const char *const *names, size_t nnames, bool raw)
{
    char hpath[KEYPATH_MAX], path[KEYPATH_MAX];
    yaml_node_t *map;
    yaml_node_pair_t *first;
    size_t n;

    child_path(hpath, sizeof(hpath), rpath, "headers");
    map = node_at(ld, hpath);
    if (is_null(map) || map->type != YAML_MAPPING_NODE)
        return;
    first = map->data.mapping.pairs.start;
    n = (size_t)(map->data.mapping.pairs.top - first);
    if (n == 0 || (r->headers = calloc(n, sizeof(*r->headers))) == NULL) {
        ld->oom = n != 0;
        return;
    }
    for (yaml_node_pair_t *pair = first; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(ld->doc, pair->value);
        struct config_header *h;
        char *text;

        if (kn->type != YAML_SCALAR_NODE || scalar(kn)[0] == '\0') {
            diag(ld, kn, hpath, "header names must be non-empty strings");
            continue;
        }
        child_path(path, sizeof(path), hpath, scalar(kn));
        if (duplicate_key(ld, first, pair, path, "header"))
            continue;
        if (is_reserved_header(scalar(kn))) {
            diag(ld, kn, path, "header '%s' is set by sluice itself", scalar(kn));
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE) {
            diag(ld, vn, path, "expected a template string, got %s", node_kind(vn));
            continue;
        }
        if (substitute(ld, vn, path, &text) < 0)
            continue;
        h = &r->headers[r->nheaders];
        if ((h->value = compile_tmpl(ld, text, names, nnames, vn, path)) != NULL) {
            if (raw && tmpl_uses_json(h->value))
                diag(ld, vn, path, "format raw has no JSON document to read '$.' paths from (use format: json)");
            if ((h->name = xstrdup(ld, scalar(kn))) == NULL) {
                tmpl_destroy(h->value);
                h->value = NULL;
            } else {
                r->nheaders++;
            }
        }
        free(text);
    }
}

/* Compiles the route's where: condition. An error points at the offending token
 * when the scalar sits on one line and its text is the file's text (plain, or quoted
 * without escapes, and no ${VAR}); otherwise at the scalar, the column within the
 * condition being in the message either way. */
static void
build_where(struct loader *ld, struct config_route *r, const char *rpath, const char *text,
            const char *const *names, size_t nnames, bool raw)
{
    char path[KEYPATH_MAX];
    const yaml_node_t *at;
    size_t col = 1, span, quotes;
    int line, c;
    struct err e;
    int rc;

    child_path(path, sizeof(path), rpath, "where");
    at = node_at(ld, path);
    err_clear(&e);
    if ((rc = filter_compile(&r->where, text, names, nnames, !raw, &e, &col)) == 0)
        return;
    if (rc == -ENOMEM)
        ld->oom = true;
    if (at == NULL) {
        diag(ld, NULL, path, "%s", e.msg);
        return;
    }
    line = (int)at->start_mark.line + 1;
    c = (int)at->start_mark.column + 1;
    quotes = at->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 0 : 1;
    span = at->end_mark.index - at->start_mark.index;
    if (at->start_mark.line == at->end_mark.line && span == strlen(text) + 2 * quotes &&
        (at->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
         at->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
         at->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
        strcmp(scalar(at), text) == 0)
        c += (int)(quotes + col - 1);
    diag_at(ld, line, c, path, "%s", e.msg);
}

static void
codec_names(char *out, size_t cap)
{
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; codec_table[i] != NULL && off < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%s%s", off ? ", " : "",
                                codec_table[i]->name);
}

static bool
route_key_absent(const struct loader *ld, const char *rpath, const char *key)
{
    char path[KEYPATH_MAX];

    child_path(path, sizeof(path), rpath, key);
    return is_null(node_at(ld, path));
}

/* One band of deadband: (abs or pct): a finite number >= 0. */
static bool
deadband_number(struct loader *ld, const char *dpath, const char *key, const char *text,
                double *out)
{
    char path[KEYPATH_MAX], *end;
    double v;

    child_path(path, sizeof(path), dpath, key);
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(v) || v < 0) {
        diag(ld, node_at(ld, path), path, "expected a number >= 0, got '%s'", text);
        return false;
    }
    *out = v;
    return true;
}

static void
build_deadband(struct loader *ld, struct config_route *r, const char *rpath,
               const struct route_src *rs, bool raw)
{
    char dpath[KEYPATH_MAX], path[KEYPATH_MAX];
    const yaml_node_t *at;
    struct err e;
    bool ok = true;
    int rc;

    child_path(dpath, sizeof(dpath), rpath, "deadband");
    if (is_null(at = node_at(ld, dpath)) || at->type != YAML_MAPPING_NODE)
        return;
    if (rs->db_field == NULL && route_key_absent(ld, dpath, "field")) {
        diag(ld, at, dpath, "missing required key 'field' (the JSON path of the value)");
        ok = false;
    }
    if (rs->db_abs == NULL && rs->db_pct == NULL && route_key_absent(ld, dpath, "abs") &&
        route_key_absent(ld, dpath, "pct")) {
        diag(ld, at, dpath, "give the band: abs (an amount), pct (a percent of the last "
                            "forwarded value) or both");
        ok = false;
    }
    if (rs->db_abs != NULL && !deadband_number(ld, dpath, "abs", rs->db_abs, &r->deadband_abs))
        ok = false;
    if (rs->db_pct != NULL && !deadband_number(ld, dpath, "pct", rs->db_pct, &r->deadband_pct))
        ok = false;
    if (rs->db_field != NULL) {
        child_path(path, sizeof(path), dpath, "field");
        err_clear(&e);
        if (raw) {
            diag(ld, node_at(ld, path), path,
                 "format raw has no JSON document to read the value from (use format: json)");
            ok = false;
        } else if ((rc = jpath_compile(&r->deadband_field, rs->db_field, &e)) < 0) {
            if (rc == -ENOMEM)
                ld->oom = true;
            diag(ld, node_at(ld, path), path, "%s", e.msg);
            ok = false;
        }
    }
    if (!ok) {
        jpath_destroy(r->deadband_field);
        r->deadband_field = NULL;
    }
}

/* A window or lateness: a duration; window > 0. */
static bool
aggregate_duration(struct loader *ld, const char *apath, const char *key, const char *text,
                   bool positive, int64_t *out)
{
    char path[KEYPATH_MAX];
    int64_t v;

    child_path(path, sizeof(path), apath, key);
    if (units_parse_duration(text, &v) < 0 || v < 0 || (positive && v == 0)) {
        diag(ld, node_at(ld, path), path, "expected a duration%s such as 1m or 30s, got '%s'",
             positive ? " above 0" : "", text);
        return false;
    }
    *out = v;
    return true;
}

/* The fields: mapping of aggregate:, name -> { fn, field }. */
static bool
build_aggregate_fields(struct loader *ld, struct config_route *r, const char *apath)
{
    char fpath[KEYPATH_MAX], path[KEYPATH_MAX], sub[KEYPATH_MAX];
    yaml_node_t *map;
    yaml_node_pair_t *first;
    size_t n;
    bool ok = true;

    child_path(fpath, sizeof(fpath), apath, "fields");
    map = node_at(ld, fpath);
    if (is_null(map)) {
        diag(ld, node_at(ld, apath), apath, "missing required key 'fields' (output name -> "
                                            "{ fn, field })");
        return false;
    }
    if (map->type != YAML_MAPPING_NODE) {
        diag(ld, map, fpath, "expected a mapping of output names, got %s", node_kind(map));
        return false;
    }
    first = map->data.mapping.pairs.start;
    n = (size_t)(map->data.mapping.pairs.top - first);
    if (n == 0) {
        diag(ld, map, fpath, "give at least one output field");
        return false;
    }
    if (n > AGGREGATE_MAX_FIELDS) {
        diag(ld, map, fpath, "at most %d output fields", AGGREGATE_MAX_FIELDS);
        return false;
    }
    if ((r->agg_fields = calloc(n, sizeof(*r->agg_fields))) == NULL) {
        ld->oom = true;
        return false;
    }
    for (yaml_node_pair_t *pair = first; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(ld->doc, pair->value);
        const char *fn_text = NULL, *field_text = NULL;
        yaml_node_t *fn_node = NULL, *field_node = NULL;
        struct config_agg_field *f;
        enum aggregate_fn fn;
        struct err e;
        int rc;

        if (kn->type != YAML_SCALAR_NODE || scalar(kn)[0] == '\0') {
            diag(ld, kn, fpath, "output names must be non-empty strings");
            ok = false;
            continue;
        }
        child_path(path, sizeof(path), fpath, scalar(kn));
        if (duplicate_key(ld, first, pair, path, "output field")) {
            ok = false;
            continue;
        }
        if (strcmp(scalar(kn), "window_start") == 0 || strcmp(scalar(kn), "window_end") == 0) {
            diag(ld, kn, path, "'%s' is set by sluice itself", scalar(kn));
            ok = false;
            continue;
        }
        if (vn->type != YAML_MAPPING_NODE) {
            diag(ld, vn, path, "expected { fn: ..., field: ... }, got %s", node_kind(vn));
            ok = false;
            continue;
        }
        for (yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k2 = yaml_document_get_node(ld->doc, p->key);
            yaml_node_t *v2 = yaml_document_get_node(ld->doc, p->value);
            const char *name = k2->type == YAML_SCALAR_NODE ? scalar(k2) : "";
            child_path(sub, sizeof(sub), path, name);
            if (v2->type != YAML_SCALAR_NODE) {
                diag(ld, v2, sub, "expected a string, got %s", node_kind(v2));
                ok = false;
            } else if (strcmp(name, "fn") == 0) {
                fn_text = scalar(v2);
                fn_node = v2;
            } else if (strcmp(name, "field") == 0) {
                field_text = scalar(v2);
                field_node = v2;
            } else {
                diag(ld, k2, sub, "unknown key '%s' (expected fn or field)", name);
                ok = false;
            }
        }
        child_path(sub, sizeof(sub), path, "fn");
        if (fn_text == NULL) {
            diag(ld, vn, path, "missing required key 'fn' (count, sum, avg, min, max, first "
                               "or last)");
            ok = false;
            continue;
        }
        if (!aggregate_fn_parse(fn_text, &fn)) {
            diag(ld, fn_node, sub, "unknown function '%s' (expected count, sum, avg, min, "
                                   "max, first or last)", fn_text);
            ok = false;
            continue;
        }
        if (field_text == NULL && fn != AGGREGATE_COUNT) {
            diag(ld, vn, path, "missing required key 'field' (the JSON path %s reads)",
                 aggregate_fn_name(fn));
            ok = false;
            continue;
        }
        f = &r->agg_fields[r->nagg_fields];
        f->fn = (int)fn;
        if (field_text != NULL) {
            child_path(sub, sizeof(sub), path, "field");
            err_clear(&e);
            if ((rc = jpath_compile(&f->field, field_text, &e)) < 0) {
                if (rc == -ENOMEM)
                    ld->oom = true;
                diag(ld, field_node, sub, "%s", e.msg);
                ok = false;
                continue;
            }
        }
        if ((f->name = xstrdup(ld, scalar(kn))) == NULL) {
            jpath_destroy(f->field);
            f->field = NULL;
            ok = false;
            continue;
        }
        r->nagg_fields++;
    }
    return ok;
}

static void
config_route_aggregate_free(struct config_route *r)
{
    for (size_t i = 0; i < r->nagg_fields; i++) {
        free(r->agg_fields[i].name);
        jpath_destroy(r->agg_fields[i].field);
    }
    free(r->agg_fields);
    free(r->agg_late_topic);
    r->agg_fields = NULL;
    r->nagg_fields = 0;
    r->agg_late_topic = NULL;
    r->agg_window_ms = 0;
}

static void
build_aggregate(struct loader *ld, struct config_route *r, const char *rpath,
                const struct route_src *rs, bool raw)
{
    char apath[KEYPATH_MAX], path[KEYPATH_MAX];
    const yaml_node_t *at;
    bool ok = true;

    child_path(apath, sizeof(apath), rpath, "aggregate");
    if (is_null(at = node_at(ld, apath)) || at->type != YAML_MAPPING_NODE)
        return;
    if (raw) {
        diag(ld, at, apath, "format raw has no JSON document to aggregate (use format: json)");
        ok = false;
    }
    child_path(path, sizeof(path), rpath, "deadband");
    if (!is_null(node_at(ld, path))) {
        diag(ld, at, apath, "a route takes deadband: or aggregate:, not both");
        ok = false;
    }
    if (rs->agg_window == NULL) {
        diag(ld, at, apath, "missing required key 'window' (a duration, e.g. 1m)");
        ok = false;
    } else if (!aggregate_duration(ld, apath, "window", rs->agg_window, true,
                                   &r->agg_window_ms)) {
        ok = false;
    }
    if (rs->agg_lateness != NULL &&
        !aggregate_duration(ld, apath, "lateness", rs->agg_lateness, false,
                            &r->agg_lateness_ms))
        ok = false;
    if (rs->agg_late != NULL && strcmp(rs->agg_late, "drop") != 0) {
        child_path(path, sizeof(path), apath, "late");
        diag(ld, node_at(ld, path), path, "expected drop, got '%s' (or give late_topic)",
             rs->agg_late);
        ok = false;
    }
    if (rs->agg_late_topic != NULL) {
        child_path(path, sizeof(path), apath, "late_topic");
        if (rs->agg_late != NULL) {
            diag(ld, node_at(ld, path), path, "give late: drop or late_topic, not both");
            ok = false;
        } else if (!is_kafka_topic(rs->agg_late_topic)) {
            diag(ld, node_at(ld, path), path,
                 "'%s' is not a legal Kafka topic name (1 to 249 letters, digits, '.', '_' "
                 "or '-')", rs->agg_late_topic);
            ok = false;
        } else if ((r->agg_late_topic = xstrdup(ld, rs->agg_late_topic)) == NULL) {
            ok = false;
        }
    }
    if (!build_aggregate_fields(ld, r, apath))
        ok = false;
    if (!ok)
        config_route_aggregate_free(r);
}

static void
build_route(struct loader *ld, yaml_node_t *node, size_t idx)
{
    struct config *cfg = ld->cfg;
    struct config_route *r = &cfg->routes[cfg->nroutes];
    struct route_src rs;
    const char *names[ROUTE_MAX_CAPTURES + CODEC_MAX_EXTRA + 8];
    char rpath[64], path[KEYPATH_MAX], list[256];
    size_t nnames = 0;
    bool ok_captures = true, raw;
    struct err e;
    int rc, lane;

    memset(&rs, 0, sizeof(rs));
    memset(r, 0, sizeof(*r));
    snprintf(rpath, sizeof(rpath), "routes[%zu]", idx);
    r->line = (int)node->start_mark.line + 1;
    if (is_null(node) || node->type != YAML_MAPPING_NODE) {
        diag(ld, node, rpath, "expected a mapping (a route), got %s",
             is_null(node) ? "nothing" : node_kind(node));
        return;
    }
    apply_defaults(ld, route_fields, &rs);
    walk_map(ld, node, route_fields, &rs, rpath);
    cfg->nroutes++;   /* from here on config_destroy owns what r holds */

    /* Missing only when the key is absent or empty: a value of the wrong type or
     * with a failed ${VAR} was reported already. */
    if (rs.name == NULL && route_key_absent(ld, rpath, "name"))
        diag(ld, node, rpath, "missing required key 'name'");
    if (rs.match == NULL && route_key_absent(ld, rpath, "match"))
        diag(ld, node, rpath, "missing required key 'match' (the MQTT topic pattern)");
    if (rs.topic == NULL && route_key_absent(ld, rpath, "topic"))
        diag(ld, node, rpath, "missing required key 'topic' (the Kafka topic template)");

    /* Name: unique, and a bounded label for metrics. */
    if (rs.name != NULL) {
        child_path(path, sizeof(path), rpath, "name");
        if (!is_name(rs.name, NAME_MAX_LEN)) {
            diag(ld, node_at(ld, path), path,
                 "'%s' is not a valid route name (1 to %d letters, digits, '.', '_' or '-')",
                 rs.name, NAME_MAX_LEN);
        } else {
            for (size_t i = 0; i + 1 < cfg->nroutes; i++) {
                if (cfg->routes[i].name != NULL && strcmp(cfg->routes[i].name, rs.name) == 0) {
                    diag(ld, node_at(ld, path), path, "duplicate route name '%s' (first at line %d)",
                         rs.name, cfg->routes[i].line);
                    break;
                }
            }
        }
        r->name = rs.name;
        rs.name = NULL;
    }

    if (rs.match != NULL) {
        child_path(path, sizeof(path), rpath, "match");
        err_clear(&e);
        if ((rc = pattern_compile(&r->pattern, rs.match, &e)) < 0) {
            if (rc == -ENOMEM)
                ld->oom = true;
            diag(ld, node_at(ld, path), path, "%s", e.msg);
            ok_captures = false;
        } else {
            for (size_t i = 0; i < pattern_ncaptures(r->pattern); i++)
                names[nnames++] = pattern_capture_name(r->pattern, i);
        }
        r->match = rs.match;
        rs.match = NULL;
    } else {
        ok_captures = false;
    }

    child_path(path, sizeof(path), rpath, "format");
    if ((r->codec = codec_find(rs.format)) == NULL) {
        codec_names(list, sizeof(list));
        diag(ld, node_at(ld, path), path, "unknown format '%s' (known: %s)", rs.format, list);
        ok_captures = false;
    } else {
        for (size_t i = 0; i < r->codec->ncapture_names && nnames < sizeof(names) / sizeof(names[0]); i++)
            names[nnames++] = r->codec->capture_names[i];
    }
    raw = r->codec != NULL && strcmp(r->codec->name, "raw") == 0;

    /* Templates name captures: only meaningful once pattern and codec are known,
     * otherwise every {capture} would be a second, misleading error. */
    if (ok_captures) {
        if (rs.topic != NULL) {
            child_path(path, sizeof(path), rpath, "topic");
            r->topic = compile_tmpl(ld, rs.topic, names, nnames, node_at(ld, path), path);
            if (r->topic != NULL && tmpl_is_literal(r->topic) && !is_kafka_topic(rs.topic))
                diag(ld, node_at(ld, path), path,
                     "'%s' is not a legal Kafka topic name (1 to 249 letters, digits, '.', '_' or '-')",
                     rs.topic);
            if (r->topic != NULL && raw && tmpl_uses_json(r->topic))
                diag(ld, node_at(ld, path), path,
                     "format raw has no JSON document to read '$.' paths from (use format: json)");
        }
        if (rs.key != NULL) {
            child_path(path, sizeof(path), rpath, "key");
            r->key = compile_tmpl(ld, rs.key, names, nnames, node_at(ld, path), path);
            if (r->key != NULL && raw && tmpl_uses_json(r->key))
                diag(ld, node_at(ld, path), path,
                     "format raw has no JSON document to read '$.' paths from (use format: json)");
        } else if (r->codec != NULL && strcmp(r->codec->name, "sparkplug") == 0) {
            /* Sparkplug's natural identity: one partition per device keeps its order. */
            child_path(path, sizeof(path), rpath, "key");
            r->key = compile_tmpl(ld, "{group}/{edge_node}/{device}", names, nnames,
                                  node_at(ld, rpath), path);
        }
        build_headers(ld, r, rpath, names, nnames, raw);
        if (rs.where != NULL)
            build_where(ld, r, rpath, rs.where, names, nnames, raw);
    }

    build_deadband(ld, r, rpath, &rs, raw);
    build_aggregate(ld, r, rpath, &rs, raw);

    if (rs.timestamp != NULL) {
        child_path(path, sizeof(path), rpath, "timestamp");
        err_clear(&e);
        if ((rc = jpath_compile(&r->timestamp, rs.timestamp, &e)) < 0) {
            if (rc == -ENOMEM)
                ld->oom = true;
            diag(ld, node_at(ld, path), path, "%s", e.msg);
        } else if (raw) {
            diag(ld, node_at(ld, path), path,
                 "format raw has no JSON document to read the event time from (use format: json)");
        }
    }
    r->timestamp_unit = (enum config_ts_unit)rs.ts_unit;
    r->envelope = rs.envelope;
    if (rs.envelope && raw) {
        child_path(path, sizeof(path), rpath, "envelope");
        diag(ld, node_at(ld, path), path,
             "format raw cannot be wrapped in a JSON envelope (use format: json)");
    }

    if (rs.lane != NULL) {
        child_path(path, sizeof(path), rpath, "lane");
        if ((lane = config_lane_index(cfg, rs.lane)) < 0) {
            size_t off = 0;
            list[0] = '\0';
            for (size_t i = 0; i < cfg->nlanes && off < sizeof(list); i++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                        off ? ", " : "", cfg->lanes[i].name);
            diag(ld, node_at(ld, path), path, "unknown lane '%s' (lanes: %s)", rs.lane, list);
            lane = (int)cfg->default_lane;
        }
        r->lane = (size_t)lane;
    } else {
        r->lane = cfg->default_lane;
    }
    route_src_free(&rs);
}

static void
build_routes(struct loader *ld)
{
    yaml_node_t *seq = node_at(ld, "routes");
    size_t n;

    if (is_null(seq) || seq->type != YAML_SEQUENCE_NODE)
        return;
    n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0)
        return;
    if ((ld->cfg->routes = calloc(n, sizeof(*ld->cfg->routes))) == NULL) {
        ld->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        build_route(ld, yaml_document_get_node(ld->doc, seq->data.sequence.items.start[i]), i);
}

static int
build_router(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    struct pattern **pats = NULL;
    struct err e;
    int rc;

    if (cfg->nroutes > 0 && (pats = calloc(cfg->nroutes, sizeof(*pats))) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nroutes; i++)
        pats[i] = cfg->routes[i].pattern;
    err_clear(&e);
    if ((rc = router_create(&cfg->router, pats, cfg->nroutes, &e)) < 0)
        diag(ld, NULL, "routes", "%s", e.msg);
    free(pats);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------- */

static void
diag_syntax(struct loader *ld, const yaml_parser_t *p)
{
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;

    if (p->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) carry only a byte offset. */
        line = 1;
        col = 1;
        for (size_t i = 0; i < p->problem_offset && i < ld->len; i++) {
            if (ld->text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
    }
    if (p->context != NULL)
        diag_at(ld, line, col, NULL, "yaml: %s (%s at line %d)",
                p->problem ? p->problem : "syntax error", p->context,
                (int)p->context_mark.line + 1);
    else
        diag_at(ld, line, col, NULL, "yaml: %s", p->problem ? p->problem : "syntax error");
}

static void
wipe_document(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n != NULL && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value != NULL)
            explicit_bzero(n->data.scalar.value, n->data.scalar.length);
}

static int
finish_diags(struct loader *ld, struct config_diags *diags)
{
    if (ld->oom)
        diag_at(ld, 1, 1, NULL, "out of memory");
    if (ld->ndiags > 1)
        qsort(ld->diags, ld->ndiags, sizeof(*ld->diags), diag_cmp);
    if (diags != NULL && ld->ndiags > 0) {
        char **lines = realloc(diags->lines, (diags->n + ld->ndiags) * sizeof(*lines));
        if (lines != NULL) {
            diags->lines = lines;
            for (size_t i = 0; i < ld->ndiags; i++) {
                diags->lines[diags->n++] = ld->diags[i].text;
                ld->diags[i].text = NULL;
            }
        }
    }
    for (size_t i = 0; i < ld->ndiags; i++)
        free(ld->diags[i].text);
    free(ld->diags);
    for (size_t i = 0; i < ld->nseen; i++)
        free(ld->seen[i].path);
    free(ld->seen);
    return ld->oom ? -ENOMEM : ld->ndiags > 0 ? -EINVAL : 0;
}

int
config_load_string(struct config **out, const char *name, const char *text, size_t len,
                   struct config_diags *diags)
{
    struct loader ld = { 0 };
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct config *cfg;
    yaml_node_t *root;
    int rc;

    *out = NULL;
    ld.name = name;
    ld.text = text;
    ld.len = len;
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->path = strdup(name)) == NULL) {
        free(cfg);
        diag_at(&ld, 1, 1, NULL, "out of memory");
        finish_diags(&ld, diags);
        return -ENOMEM;
    }
    ld.cfg = cfg;
    if (!yaml_parser_initialize(&parser)) {
        config_destroy(cfg);
        diag_at(&ld, 1, 1, NULL, "out of memory");
        finish_diags(&ld, diags);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        diag_syntax(&ld, &parser);
        yaml_parser_delete(&parser);
        config_destroy(cfg);
        return finish_diags(&ld, diags);
    }
    ld.doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (root != NULL) {
        /* A second document is almost always a stray "---": say so. */
        if (!yaml_parser_load(&parser, &extra)) {
            diag_syntax(&ld, &parser);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2 != NULL)
                diag(&ld, r2, NULL, "yaml: a config is one YAML document; this is a second one");
            wipe_document(&extra);
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&parser);

    apply_defaults(&ld, root_fields, cfg);
    if (root != NULL && !is_null(root) && root->type != YAML_MAPPING_NODE) {
        /* Nothing else can be said about a file that is not a mapping. */
        diag(&ld, root, NULL, "the config must be a mapping of sections, got %s",
             node_kind(root));
    } else {
        walk_map(&ld, root, root_fields, cfg, "");
        check_instance(&ld);
        check_mqtt(&ld);
        check_misc(&ld);
        build_properties(&ld);
        build_lanes(&ld);
        build_routes(&ld);
        if (ld.ndiags == 0 && !ld.oom && build_router(&ld) == -ENOMEM)
            ld.oom = true;
    }

    wipe_document(&doc);
    yaml_document_delete(&doc);
    if ((rc = finish_diags(&ld, diags)) < 0) {
        config_destroy(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int
config_load(struct config **out, const char *path, struct config_diags *diags)
{
    struct stat st;
    char *text = NULL, **lines;
    size_t len = 0;
    ssize_t n = 0;
    int fd, rc = 0;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
        rc = -errno;
    else if (S_ISDIR(st.st_mode))
        rc = -EISDIR;
    else if ((text = malloc(CONFIG_MAX_BYTES + 1)) == NULL)
        rc = -ENOMEM;
    while (rc == 0 && (n = read(fd, text + len, CONFIG_MAX_BYTES + 1 - len)) > 0) {
        len += (size_t)n;
        if (len > CONFIG_MAX_BYTES)
            rc = -EFBIG;
    }
    if (rc == 0 && n < 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0) {
        rc = config_load_string(out, path, text, len, diags);
    } else if (diags != NULL &&
               (lines = realloc(diags->lines, (diags->n + 1) * sizeof(*lines))) != NULL) {
        struct buf b;
        diags->lines = lines;
        buf_init(&b);
        if (rc == -EFBIG)
            buf_printf(&b, "%s: cannot read: larger than %u bytes", path, CONFIG_MAX_BYTES);
        else
            buf_printf(&b, "%s: cannot read: %s", path, strerror(-rc));
        if (b.data != NULL)
            diags->lines[diags->n++] = b.data;
    }
    if (text != NULL) {
        explicit_bzero(text, len);   /* it may hold a password */
        free(text);
    }
    return rc;
}

void
config_diags_fini(struct config_diags *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->lines[i]);
    free(d->lines);
    d->lines = NULL;
    d->n = 0;
}

void
config_diags_print(const struct config_diags *d, FILE *f)
{
    for (size_t i = 0; d != NULL && i < d->n; i++)
        fprintf(f, "%s\n", d->lines[i]);
}

void
config_destroy(struct config *cfg)
{
    if (cfg == NULL)
        return;
    router_destroy(cfg->router);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct config_route *r = &cfg->routes[i];
        free(r->name);
        free(r->match);
        pattern_destroy(r->pattern);
        tmpl_destroy(r->topic);
        tmpl_destroy(r->key);
        jpath_destroy(r->timestamp);
        filter_destroy(r->where);
        jpath_destroy(r->deadband_field);
        config_route_aggregate_free(r);
        for (size_t j = 0; j < r->nheaders; j++) {
            free(r->headers[j].name);
            tmpl_destroy(r->headers[j].value);
        }
        free(r->headers);
    }
    free(cfg->routes);
    for (size_t i = 0; i < cfg->nlanes; i++)
        free(cfg->lanes[i].name);
    free(cfg->lanes);
    for (size_t i = 0; i < cfg->kafka.nprops; i++) {
        free(cfg->kafka.props[i].key);
        free_secret(cfg->kafka.props[i].value);
    }
    free(cfg->kafka.props);
    free_fields(root_fields, cfg);   /* wipes mqtt.password */
    free(cfg->path);
    free(cfg);
}

int
config_lane_index(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nlanes; i++)
        if (strcmp(cfg->lanes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---------------------------------------------------------------------------
 * Printing
 * ------------------------------------------------------------------------- */

/* A YAML double-quoted scalar that loads back to s: escapes, and "${" as "$${" so
 * the substitution does not run twice. */
static void
print_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else if (*p == '$' && p[1] == '{')
            fputs("$$", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void
print_fields(FILE *f, const struct config *cfg, const struct field *tab, const void *base,
             int indent);

static void
print_props(FILE *f, const struct config *cfg, int indent)
{
    if (cfg->kafka.nprops == 0) {
        fprintf(f, "%*sproperties: {}\n", indent, "");
        return;
    }
    fprintf(f, "%*sproperties:\n", indent, "");
    for (size_t i = 0; i < cfg->kafka.nprops; i++) {
        fprintf(f, "%*s", indent + 2, "");
        print_quoted(f, cfg->kafka.props[i].key);
        fputs(": ", f);
        if (is_secret_property(cfg->kafka.props[i].key))
            fputs("\"<redacted>\"", f);
        else
            print_quoted(f, cfg->kafka.props[i].value);
        fputc('\n', f);
    }
}

static void
print_lanes(FILE *f, const struct config *cfg)
{
    fputs("lanes:\n", f);
    for (size_t i = 0; i < cfg->nlanes; i++) {
        fputs("  ", f);
        print_quoted(f, cfg->lanes[i].name);
        fputs(":\n", f);
        print_fields(f, cfg, lane_fields, &cfg->lanes[i], 4);
    }
}

static void
print_routes(FILE *f, const struct config *cfg)
{
    if (cfg->nroutes == 0) {
        fputs("routes: []\n", f);
        return;
    }
    fputs("routes:\n", f);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        fputs("  - name: ", f);
        print_quoted(f, r->name);
        fputs("\n    match: ", f);
        print_quoted(f, r->match);
        fprintf(f, "\n    format: %s\n    topic: ", r->codec->name);
        print_quoted(f, tmpl_text(r->topic));
        fputc('\n', f);
        if (r->key != NULL) {
            fputs("    key: ", f);
            print_quoted(f, tmpl_text(r->key));
            fputc('\n', f);
        }
        if (r->timestamp != NULL) {
            fputs("    timestamp: ", f);
            print_quoted(f, jpath_text(r->timestamp));
            fprintf(f, "\n    timestamp_unit: %s\n",
                    enum_name_of(ts_unit_names, (int)r->timestamp_unit));
        }
        if (r->envelope)
            fputs("    envelope: true\n", f);
        if (r->where != NULL) {
            fputs("    where: ", f);
            print_quoted(f, filter_text(r->where));
            fputc('\n', f);
        }
        if (r->deadband_field != NULL) {
            fputs("    deadband:\n      field: ", f);
            print_quoted(f, jpath_text(r->deadband_field));
            fprintf(f, "\n      abs: %.17g\n      pct: %.17g\n", r->deadband_abs,
                    r->deadband_pct);
        }
        if (r->agg_window_ms > 0) {
            char d[32];
            units_render_duration(r->agg_window_ms, d, sizeof(d));
            fprintf(f, "    aggregate:\n      window: %s\n", d);
            units_render_duration(r->agg_lateness_ms, d, sizeof(d));
            fprintf(f, "      lateness: %s\n", d);
            if (r->agg_late_topic != NULL) {
                fputs("      late_topic: ", f);
                print_quoted(f, r->agg_late_topic);
                fputc('\n', f);
            } else {
                fputs("      late: drop\n", f);
            }
            fputs("      fields:\n", f);
            for (size_t j = 0; j < r->nagg_fields; j++) {
                const struct config_agg_field *af = &r->agg_fields[j];
                fputs("        ", f);
                print_quoted(f, af->name);
                fprintf(f, ": { fn: %s", aggregate_fn_name((enum aggregate_fn)af->fn));
                if (af->field != NULL) {
                    fputs(", field: ", f);
                    print_quoted(f, jpath_text(af->field));
                }
                fputs(" }\n", f);
            }
        }
        fputs("    lane: ", f);
        print_quoted(f, cfg->lanes[r->lane].name);
        fputc('\n', f);
        if (r->nheaders > 0) {
            fputs("    headers:\n", f);
            for (size_t j = 0; j < r->nheaders; j++) {
                fputs("      ", f);
                print_quoted(f, r->headers[j].name);
                fputs(": ", f);
                print_quoted(f, tmpl_text(r->headers[j].value));
                fputc('\n', f);
            }
        }
    }
}

static void
print_fields(FILE *f, const struct config *cfg, const struct field *tab, const void *base,
             int indent)
{
    for (const struct field *fd = tab; fd->name != NULL; fd++) {
        const void *slot = (const char *)base + fd->off;
        char buf[64];

        switch (fd->type) {
        case F_SECTION:
            fprintf(f, "%*s%s:\n", indent, "", fd->name);
            print_fields(f, cfg, fd->sub, base, indent + 2);
            continue;
        case F_MAP:       /* kafka.properties and lanes; route headers print with routes */
            if (tab == kafka_fields)
                print_props(f, cfg, indent);
            else if (tab == root_fields)
                print_lanes(f, cfg);
            continue;
        case F_LIST:
            print_routes(f, cfg);
            continue;
        case F_SECRET_FILE:
            continue;     /* its contents print as the secret it fills */
        case F_STR:
            if (*(char *const *)slot == NULL)
                continue;
            fprintf(f, "%*s%s: ", indent, "", fd->name);
            print_quoted(f, *(char *const *)slot);
            break;
        case F_SECRET:
            if (*(char *const *)slot == NULL)
                continue;
            fprintf(f, "%*s%s: \"<redacted>\"", indent, "", fd->name);
            break;
        case F_BOOL:
            fprintf(f, "%*s%s: %s", indent, "", fd->name, *(const bool *)slot ? "true" : "false");
            break;
        case F_INT:
            fprintf(f, "%*s%s: %d", indent, "", fd->name, *(const int *)slot);
            break;
        case F_DURATION:
            units_render_duration(*(const int64_t *)slot, buf, sizeof(buf));
            fprintf(f, "%*s%s: %s", indent, "", fd->name, buf);
            break;
        case F_SIZE:
            units_render_size(*(const uint64_t *)slot, buf, sizeof(buf));
            fprintf(f, "%*s%s: %s", indent, "", fd->name, buf);
            break;
        case F_ENUM:
            fprintf(f, "%*s%s: %s", indent, "", fd->name,
                    enum_name_of(fd->enums, *(const int *)slot));
            break;
        }
        fprintf(f, "    # %s\n", fd->help);
    }
}

void
config_print_effective(const struct config *cfg, FILE *f)
{
    fprintf(f, "# effective configuration of %s: defaults applied, ${VAR}s substituted,\n"
               "# secrets redacted\n", cfg->path);
    print_fields(f, cfg, root_fields, cfg, 0);
}

void
config_print_summary(const struct config *cfg, FILE *f)
{
    size_t nsubs = cfg->router != NULL ? router_nsubscriptions(cfg->router) : 0;

    fprintf(f, "%s: ok\n", cfg->path);
    fprintf(f, "routes (%zu, first match wins):\n", cfg->nroutes);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        fprintf(f, "  %zu. %s\n", i + 1, r->name);
        fprintf(f, "       match:  %s\n", r->match);
        fprintf(f, "       format: %s\n", r->codec->name);
        fprintf(f, "       topic:  %s\n", tmpl_text(r->topic));
        fprintf(f, "       key:    %s\n", r->key != NULL ? tmpl_text(r->key) : "(none)");
        if (r->timestamp != NULL)
            fprintf(f, "       time:   %s (%s)\n", jpath_text(r->timestamp),
                    enum_name_of(ts_unit_names, (int)r->timestamp_unit));
        if (r->where != NULL)
            fprintf(f, "       where:  %s\n", filter_text(r->where));
        if (r->deadband_field != NULL)
            fprintf(f, "       deadband: %s moved more than max(abs %g, %g%% of the last "
                       "forwarded) per key\n", jpath_text(r->deadband_field),
                    r->deadband_abs, r->deadband_pct);
        if (r->agg_window_ms > 0) {
            char d[32], l[32];
            units_render_duration(r->agg_window_ms, d, sizeof(d));
            units_render_duration(r->agg_lateness_ms, l, sizeof(l));
            fprintf(f, "       aggregate: one record per key and %s window (lateness %s, "
                       "late records %s%s), %zu field(s)\n", d, l,
                    r->agg_late_topic != NULL ? "to " : "dropped",
                    r->agg_late_topic != NULL ? r->agg_late_topic : "", r->nagg_fields);
        }
        fprintf(f, "       lane:   %s (priority %d%s)\n", cfg->lanes[r->lane].name,
                cfg->lanes[r->lane].priority,
                cfg->lanes[r->lane].compact == COMPACT_LATEST_PER_KEY
                    ? ", compact: latest_per_key" : "");
    }
    fprintf(f, "subscriptions (qos %d):\n", cfg->mqtt.qos);
    for (size_t i = 0; i < nsubs; i++) {
        if (cfg->mqtt.share_group[0] != '\0')
            fprintf(f, "  $share/%s/%s\n", cfg->mqtt.share_group,
                    router_subscription(cfg->router, i));
        else
            fprintf(f, "  %s\n", router_subscription(cfg->router, i));
    }
    if (nsubs == 0)
        fputs("  (none: no routes)\n", f);
}
