/* config.h - the YAML configuration, parsed and validated into a fresh struct.
 *
 * config_load reads the whole file, substitutes ${VAR} / ${VAR:-default} in every
 * string scalar, reads *_file secrets, applies defaults, validates every section of
 * SPEC.md, compiles route patterns, templates and the router, and reports every
 * problem it finds (not just the first) as "FILE:LINE:COL: key.path: message".
 * A config is immutable once loaded: readers on other threads borrow it, and a reload
 * builds a new one and swaps the pointer (see main.c). */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/log.h"

struct codec;
struct filter;
struct jpath;
struct pattern;
struct router;
struct tmpl;

enum config_when_full  { WHEN_FULL_DROP_OLDEST = 0, WHEN_FULL_BACKPRESSURE };
enum config_durability { DURABILITY_PROCESS = 0, DURABILITY_POWER };
enum config_on_corrupt { ON_CORRUPT_FAIL = 0, ON_CORRUPT_QUARANTINE };
enum config_ts_unit    { TS_UNIT_AUTO = 0, TS_UNIT_S, TS_UNIT_MS, TS_UNIT_US, TS_UNIT_NS };
enum config_compact    { COMPACT_NONE = 0, COMPACT_LATEST_PER_KEY };

struct config_kv {
    char *key;
    char *value;
};

struct config_mqtt {
    char    *url;              /* default tcp://127.0.0.1:1883 */
    char    *client_id;        /* default "sluice-<instance>" */
    char    *username;         /* NULL when unset */
    char    *password;         /* secret: NULL when unset; wiped on destroy */
    char    *tls_ca_file, *tls_cert_file, *tls_key_file;  /* NULL when unset */
    bool     tls_verify;       /* default true */
    bool     clean_start;      /* default false */
    int64_t  session_expiry_ms;/* default 1d */
    int64_t  keepalive_ms;     /* default 30s */
    char    *share_group;      /* "" when unset */
    int      version;          /* 5 (default) or 4 for MQTT 3.1.1; key "version": 5 | "3.1.1" */
    int      qos;              /* subscription QoS, default 1 */
};

struct config_kafka {
    char             *bootstrap;   /* default localhost:9092; "embedded" = in-process mock cluster */
    struct config_kv *props;       /* passed to librdkafka as is */
    size_t            nprops;
    bool              insecure;    /* allow disabling TLS certificate verification */
};

struct config_spool {
    char                  *path;             /* default /var/lib/sluice/spool.db */
    uint64_t               max_bytes;        /* default 2GiB; 0 = unbounded */
    int64_t                max_age_ms;       /* default 7d; 0 = unbounded */
    enum config_when_full  when_full;        /* default drop_oldest */
    enum config_durability durability;       /* default process */
    int64_t                sync_interval_ms; /* default 200ms */
    enum config_on_corrupt on_corrupt;       /* default fail: a damaged spool exits 74 */
};

/* Sparkplug host behaviour, for every route with format: sparkplug. */
struct config_sparkplug {
    bool     request_rebirth;      /* publish a Rebirth NCMD for DATA sluice cannot name */
    int64_t  rebirth_interval_ms;  /* at most one per edge node per this; default 30s */
};

struct config_lane {
    char    *name;
    int      priority;     /* lower drains first; default 5 */
    int64_t  max_age_ms;   /* 0 = the spool's max_age */
    enum config_compact compact;  /* latest_per_key: a newer record supersedes the
                                     waiting one of the same Kafka key */
};

struct config_header {
    char        *name;
    struct tmpl *value;
};

/* One output field of a route's aggregate: section. */
struct config_agg_field {
    char               *name;          /* the output JSON member */
    int                 fn;            /* enum aggregate_fn */
    struct jpath       *field;         /* NULL: count of records */
};

struct config_route {
    char                *name;
    char                *match;        /* the pattern text */
    struct pattern      *pattern;      /* compiled */
    const struct codec  *codec;        /* raw (default) | json | ... */
    struct tmpl         *topic;        /* Kafka topic template */
    struct tmpl         *key;          /* Kafka key template; NULL = no key */
    struct jpath        *timestamp;    /* event time path; NULL = arrival time */
    enum config_ts_unit  timestamp_unit;
    bool                 envelope;     /* value = {"topic","captures","payload"} */
    size_t               lane;         /* index into config.lanes */
    struct config_header *headers;
    size_t               nheaders;
    struct filter       *where;        /* keep only messages it holds for; NULL = all */
    struct jpath        *deadband_field; /* deadband: the value; NULL = no deadband */
    double               deadband_abs;   /* band: max(abs, pct % of |last forwarded|) */
    double               deadband_pct;
    int64_t              agg_window_ms;  /* aggregate: tumbling window; 0 = no aggregate */
    int64_t              agg_lateness_ms;
    char                *agg_late_topic; /* late records go here raw; NULL = drop them */
    struct config_agg_field *agg_fields;
    size_t               nagg_fields;
    int                  line;         /* where the route starts in the file (1-based) */
};

struct config {
    char               *path;          /* the file it was loaded from */
    char               *instance;      /* default: the host name */
    struct config_mqtt  mqtt;
    struct config_kafka kafka;
    struct config_spool spool;
    struct config_lane *lanes;         /* at least one: "default" (priority 5) if none given */
    size_t              nlanes;
    size_t              default_lane;  /* routes without lane: go here */
    uint64_t            forward_max_rate;  /* bytes/s, 0 = none */
    struct config_sparkplug sparkplug;
    char               *dead_letter_topic; /* default "sluice.dead-letter" */
    char               *http_listen;       /* default 127.0.0.1:9187; "" = off */
    enum log_level      log_level;
    enum log_format     log_format;
    struct config_route *routes;
    size_t               nroutes;
    struct router       *router;        /* over routes[i].pattern, in file order */
};

/* A list of located error lines, "FILE:LINE:COL: key.path: message". */
struct config_diags {
    char  **lines;   /* owned */
    size_t  n;
};
void config_diags_fini(struct config_diags *d);
void config_diags_print(const struct config_diags *d, FILE *f);

/* Loads path. Returns 0 and owned *out (free with config_destroy), or a negative
 * errno with every problem in diags (-EINVAL invalid, -ENOENT/-EACCES/-EIO unreadable,
 * one line naming the path). */
int  config_load(struct config **out, const char *path, struct config_diags *diags);
/* Same from memory; name is used in the error lines. For tests and fuzzing. */
int  config_load_string(struct config **out, const char *name, const char *text,
                        size_t len, struct config_diags *diags);
void config_destroy(struct config *cfg);   /* NULL and half-built configs are fine */

/* Index of a lane by name, or -1. */
int  config_lane_index(const struct config *cfg, const char *name);

/* `sluice check` output: routes (match, format, topic, key, lane) and the MQTT
 * subscriptions they imply. */
void config_print_summary(const struct config *cfg, FILE *f);
/* `sluice check --print`: the effective config as YAML after defaults and ${VAR}s,
 * with secrets shown as "<redacted>". */
void config_print_effective(const struct config *cfg, FILE *f);

#endif
