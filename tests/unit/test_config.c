/* test_config.c - config loading: defaults, values, ${VAR}s, secrets, printing, and
 * the golden bad configs in tests/data/config/bad (each <name>.yaml has the exact
 * error lines it must produce in <name>.expected, in order). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/jpath.h"
#include "sluice/route.h"
#include "sluice/tmpl.h"

static const char *
data_dir(void)
{
    const char *d = getenv("SLUICE_TEST_DATA");

    ck_assert_msg(d != NULL, "SLUICE_TEST_DATA is not set");
    return d;
}

/* Loads text; fails the test with the diagnostics if it does not load. */
static struct config *
load_ok(const char *text)
{
    struct config_diags d = { 0 };
    struct config *cfg = NULL;
    int rc = config_load_string(&cfg, "test.yaml", text, strlen(text), &d);

    if (rc != 0) {
        config_diags_print(&d, stderr);
        ck_abort_msg("config did not load: rc %d, first: %s", rc, d.n ? d.lines[0] : "-");
    }
    ck_assert_uint_eq(d.n, 0);
    config_diags_fini(&d);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* Loads text expecting failure; returns the diagnostics joined by newlines. */
static char *
load_bad(const char *text)
{
    struct config_diags d = { 0 };
    struct config *cfg = NULL;
    char *out = NULL;
    size_t len = 0;
    FILE *f;
    int rc = config_load_string(&cfg, "t.yaml", text, strlen(text), &d);

    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(cfg);
    f = open_memstream(&out, &len);
    config_diags_print(&d, f);
    fclose(f);
    config_diags_fini(&d);
    return out;
}

static char *
print_to_string(const struct config *cfg, bool effective)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    if (effective)
        config_print_effective(cfg, f);
    else
        config_print_summary(cfg, f);
    fclose(f);
    return out;
}

START_TEST(test_config_defaults)
{
    struct config *cfg;
    const struct config_mqtt *m;

    unsetenv("SLUICE_NOPE");
    cfg = load_ok("instance: edge-1\nkafka:\n  bootstrap: k:9092\n");
    m = &cfg->mqtt;
    ck_assert_str_eq(cfg->path, "test.yaml");
    ck_assert_str_eq(cfg->instance, "edge-1");
    ck_assert_str_eq(m->url, "tcp://127.0.0.1:1883");
    ck_assert_str_eq(m->client_id, "sluice-edge-1");
    ck_assert_ptr_null(m->username);
    ck_assert_ptr_null(m->password);
    ck_assert_ptr_null(m->tls_ca_file);
    ck_assert(m->tls_verify);
    ck_assert(!m->clean_start);
    ck_assert(m->session_expiry_ms == 86400000);
    ck_assert(m->keepalive_ms == 30000);
    ck_assert_str_eq(m->share_group, "");
    ck_assert_int_eq(m->version, 5);
    ck_assert_int_eq(m->qos, 1);
    ck_assert_str_eq(cfg->kafka.bootstrap, "k:9092");
    ck_assert_uint_eq(cfg->kafka.nprops, 0);
    ck_assert(!cfg->kafka.insecure);
    ck_assert_str_eq(cfg->spool.path, "/var/lib/sluice/spool.db");
    ck_assert(cfg->spool.max_bytes == 2ull << 30);
    ck_assert(cfg->spool.max_age_ms == 7 * 86400000LL);
    ck_assert_int_eq(cfg->spool.when_full, WHEN_FULL_DROP_OLDEST);
    ck_assert_int_eq(cfg->spool.durability, DURABILITY_PROCESS);
    ck_assert(cfg->spool.sync_interval_ms == 200);
    ck_assert_uint_eq(cfg->nlanes, 1);
    ck_assert_str_eq(cfg->lanes[0].name, "default");
    ck_assert_int_eq(cfg->lanes[0].priority, 5);
    ck_assert(cfg->lanes[0].max_age_ms == 0);
    ck_assert_uint_eq(cfg->default_lane, 0);
    ck_assert(cfg->forward_max_rate == 0);
    ck_assert_str_eq(cfg->dead_letter_topic, "sluice.dead-letter");
    ck_assert_str_eq(cfg->http_listen, "127.0.0.1:9187");
    ck_assert_int_eq(cfg->log_level, LOG_INFO);
    ck_assert_int_eq(cfg->log_format, LOG_FORMAT_TEXT);
    ck_assert_uint_eq(cfg->nroutes, 0);
    ck_assert_ptr_nonnull(cfg->router);
    ck_assert_uint_eq(router_nsubscriptions(cfg->router), 0);
    config_destroy(cfg);
}
END_TEST

/* An empty file (or only comments) is a valid config: everything has a default. */
START_TEST(test_config_empty_file_is_all_defaults)
{
    struct config *cfg = load_ok("# nothing here\n");

    ck_assert_str_eq(cfg->kafka.bootstrap, "localhost:9092");
    ck_assert_uint_eq(cfg->nroutes, 0);
    ck_assert_uint_eq(cfg->nlanes, 1);
    config_destroy(cfg);
    cfg = load_ok("");
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_instance_defaults_to_host_name)
{
    struct config *cfg = load_ok("kafka: { bootstrap: embedded }\nroutes: []\n");

    ck_assert_ptr_nonnull(cfg->instance);
    ck_assert(strlen(cfg->instance) > 0);
    ck_assert(strncmp(cfg->mqtt.client_id, "sluice-", 7) == 0);
    ck_assert_str_eq(cfg->mqtt.client_id + 7, cfg->instance);
    config_destroy(cfg);
}
END_TEST

static const char full_yaml[] =
    "instance: site-berlin-01\n"
    "mqtt:\n"
    "  url: ssl://broker:8883\n"
    "  client_id: bridge-7\n"
    "  username: bridge\n"
    "  tls: { ca_file: /etc/ca.pem, cert_file: /etc/c.pem, key_file: /etc/k.pem, verify: false }\n"
    "  clean_start: yes\n"
    "  session_expiry: 2h\n"
    "  keepalive: 10s\n"
    "  share_group: berlin\n"
    "  version: \"3.1.1\"\n"
    "  qos: 2\n"
    "kafka:\n"
    "  bootstrap: kafka-1:9092,kafka-2:9092\n"
    "  insecure: true\n"
    "  properties:\n"
    "    compression.type: lz4\n"
    "    linger.ms: 50\n"
    "    enable.ssl.certificate.verification: false\n"
    "spool:\n"
    "  path: /tmp/s.db\n"
    "  max_bytes: 512MiB\n"
    "  max_age: 3d\n"
    "  when_full: backpressure\n"
    "  durability: power\n"
    "  sync_interval: 1s\n"
    "lanes:\n"
    "  urgent: { priority: 0 }\n"
    "  bulk:   { priority: 9, max_age: 1d }\n"
    "forward: { max_rate: 2MiB }\n"
    "dead_letter: { topic: dlq }\n"
    "http: { listen: \"\" }\n"
    "log: { level: debug, format: json }\n"
    "routes:\n"
    "  - name: line-telemetry\n"
    "    match: factory/{site}/{line}/{device}/telemetry\n"
    "    format: json\n"
    "    topic: telemetry.{site}\n"
    "    key: \"{device}\"\n"
    "    timestamp: $.ts\n"
    "    timestamp_unit: ms\n"
    "    lane: bulk\n"
    "    headers: { line: \"{line}\", site: \"{site}\" }\n"
    "  - name: alarms\n"
    "    match: factory/{site}/{line}/{device}/alarm\n"
    "    topic: alarms\n"
    "    key: \"{site}/{device}\"\n"
    "    lane: urgent\n"
    "  - name: rest\n"
    "    match: factory/#\n"
    "    topic: factory.rest\n";

START_TEST(test_config_full_values)
{
    struct config *cfg = load_ok(full_yaml);
    const struct config_route *r;
    struct match m;
    const char *t;

    ck_assert_str_eq(cfg->mqtt.url, "ssl://broker:8883");
    ck_assert_str_eq(cfg->mqtt.client_id, "bridge-7");
    ck_assert_str_eq(cfg->mqtt.tls_ca_file, "/etc/ca.pem");
    ck_assert_str_eq(cfg->mqtt.tls_cert_file, "/etc/c.pem");
    ck_assert_str_eq(cfg->mqtt.tls_key_file, "/etc/k.pem");
    ck_assert(!cfg->mqtt.tls_verify);
    ck_assert(cfg->mqtt.clean_start);
    ck_assert(cfg->mqtt.session_expiry_ms == 7200000);
    ck_assert(cfg->mqtt.keepalive_ms == 10000);
    ck_assert_str_eq(cfg->mqtt.share_group, "berlin");
    ck_assert_int_eq(cfg->mqtt.version, 4);
    ck_assert_int_eq(cfg->mqtt.qos, 2);
    ck_assert(cfg->kafka.insecure);
    ck_assert_uint_eq(cfg->kafka.nprops, 3);
    ck_assert_str_eq(cfg->kafka.props[0].key, "compression.type");
    ck_assert_str_eq(cfg->kafka.props[0].value, "lz4");
    ck_assert_str_eq(cfg->kafka.props[1].value, "50");
    ck_assert_str_eq(cfg->kafka.props[2].value, "false");
    ck_assert(cfg->spool.max_bytes == 512u << 20);
    ck_assert(cfg->spool.max_age_ms == 3 * 86400000LL);
    ck_assert_int_eq(cfg->spool.when_full, WHEN_FULL_BACKPRESSURE);
    ck_assert_int_eq(cfg->spool.durability, DURABILITY_POWER);
    ck_assert(cfg->spool.sync_interval_ms == 1000);
    /* The file's lanes in order, then "default" for routes without a lane. */
    ck_assert_uint_eq(cfg->nlanes, 3);
    ck_assert_str_eq(cfg->lanes[0].name, "urgent");
    ck_assert_int_eq(cfg->lanes[0].priority, 0);
    ck_assert_str_eq(cfg->lanes[1].name, "bulk");
    ck_assert(cfg->lanes[1].max_age_ms == 86400000);
    ck_assert_str_eq(cfg->lanes[2].name, "default");
    ck_assert_uint_eq(cfg->default_lane, 2);
    ck_assert_int_eq(config_lane_index(cfg, "bulk"), 1);
    ck_assert_int_eq(config_lane_index(cfg, "nope"), -1);
    ck_assert(cfg->forward_max_rate == 2u << 20);
    ck_assert_str_eq(cfg->dead_letter_topic, "dlq");
    ck_assert_str_eq(cfg->http_listen, "");
    ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
    ck_assert_int_eq(cfg->log_format, LOG_FORMAT_JSON);

    ck_assert_uint_eq(cfg->nroutes, 3);
    r = &cfg->routes[0];
    ck_assert_str_eq(r->name, "line-telemetry");
    ck_assert_str_eq(r->match, "factory/{site}/{line}/{device}/telemetry");
    ck_assert_str_eq(r->codec->name, "json");
    ck_assert_str_eq(tmpl_text(r->topic), "telemetry.{site}");
    ck_assert_str_eq(tmpl_text(r->key), "{device}");
    ck_assert_str_eq(jpath_text(r->timestamp), "$.ts");
    ck_assert_int_eq(r->timestamp_unit, TS_UNIT_MS);
    ck_assert_uint_eq(r->lane, 1);
    ck_assert_uint_eq(r->nheaders, 2);
    ck_assert_str_eq(r->headers[0].name, "line");
    ck_assert_str_eq(tmpl_text(r->headers[0].value), "{line}");
    ck_assert_int_eq(r->line, 35);
    r = &cfg->routes[1];
    ck_assert_str_eq(r->codec->name, "raw");
    ck_assert_ptr_null(r->timestamp);
    ck_assert_int_eq(r->timestamp_unit, TS_UNIT_AUTO);
    ck_assert_uint_eq(r->lane, 0);
    r = &cfg->routes[2];
    ck_assert_ptr_null(r->key);
    ck_assert_uint_eq(r->nheaders, 0);
    ck_assert_uint_eq(r->lane, 2);

    /* The router sees the routes in file order: first match wins. */
    ck_assert_ptr_nonnull(cfg->router);
    t = "factory/berlin/l1/press-7/alarm";
    ck_assert(router_match(cfg->router, t, strlen(t), &m));
    ck_assert_uint_eq(m.route, 1);
    t = "factory/berlin/l1/press-7/status";
    ck_assert(router_match(cfg->router, t, strlen(t), &m));
    ck_assert_uint_eq(m.route, 2);
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_summary_lists_routes_and_subscriptions)
{
    struct config *cfg = load_ok(full_yaml);
    char *s = print_to_string(cfg, false);

    ck_assert_ptr_nonnull(strstr(s, "line-telemetry"));
    ck_assert_ptr_nonnull(strstr(s, "telemetry.{site}"));
    ck_assert_ptr_nonnull(strstr(s, "{site}/{device}"));
    ck_assert_ptr_nonnull(strstr(s, "lane:   urgent"));
    ck_assert_ptr_nonnull(strstr(s, "subscriptions"));
    /* factory/# covers the other two filters; the share group prefixes it. */
    ck_assert_ptr_nonnull(strstr(s, "  $share/berlin/factory/#\n"));
    ck_assert_ptr_null(strstr(s, "factory/+/+/+/alarm\n"));
    free(s);
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_env_substitution)
{
    struct config *cfg;

    setenv("SLUICE_T_HOST", "broker.example", 1);
    setenv("SLUICE_T_EMPTY", "", 1);
    setenv("SLUICE_T_SIZE", "1GiB", 1);
    unsetenv("SLUICE_T_UNSET");
    cfg = load_ok("mqtt:\n"
                  "  url: tcp://${SLUICE_T_HOST}:1883\n"
                  "  username: ${SLUICE_T_UNSET:-fallback}\n"
                  "  client_id: id-${SLUICE_T_EMPTY:-empty-default}-${SLUICE_T_HOST:-x}\n"
                  "  share_group: \"$${NOT_A_VAR}\"\n"
                  "kafka:\n"
                  "  bootstrap: ${SLUICE_T_UNSET:-embedded}\n"
                  "  properties:\n"
                  "    client.rack: ${SLUICE_T_HOST}\n"
                  "spool:\n"
                  "  max_bytes: ${SLUICE_T_SIZE}\n"
                  "  max_age: ${SLUICE_T_UNSET:-2d}\n"
                  "routes:\n"
                  "  - name: r\n"
                  "    match: a/{x}\n"
                  "    topic: ${SLUICE_T_UNSET:-topic}.{x}\n");
    ck_assert_str_eq(cfg->mqtt.url, "tcp://broker.example:1883");
    ck_assert_str_eq(cfg->mqtt.username, "fallback");
    ck_assert_str_eq(cfg->mqtt.client_id, "id-empty-default-broker.example");
    ck_assert_str_eq(cfg->mqtt.share_group, "${NOT_A_VAR}");
    ck_assert_str_eq(cfg->kafka.bootstrap, "embedded");
    ck_assert_str_eq(cfg->kafka.props[0].value, "broker.example");
    ck_assert(cfg->spool.max_bytes == 1ull << 30);
    ck_assert(cfg->spool.max_age_ms == 2 * 86400000LL);
    ck_assert_str_eq(tmpl_text(cfg->routes[0].topic), "topic.{x}");
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_env_unset_is_located_error)
{
    char *out;

    unsetenv("SLUICE_T_UNSET");
    out = load_bad("kafka:\n  bootstrap: embedded\nspool:\n  path: \"/x/${SLUICE_T_UNSET}/s.db\"\n");
    ck_assert_str_eq(out, "t.yaml:4:9: spool.path: environment variable SLUICE_T_UNSET is not "
                          "set (use ${SLUICE_T_UNSET:-default} for a default)\n");
    free(out);
}
END_TEST

START_TEST(test_config_password_file_reads_secret)
{
    char text[PATH_MAX + 128];
    struct config *cfg;

    snprintf(text, sizeof(text),
             "mqtt:\n  username: u\n  password_file: %s/config/secret.txt\n"
             "kafka: { bootstrap: embedded }\n", data_dir());
    cfg = load_ok(text);
    /* The trailing newline of the file is not part of the secret. */
    ck_assert_str_eq(cfg->mqtt.password, "s3cr3t-from-file");
    config_destroy(cfg);

    /* The path itself may come from the environment. */
    setenv("SLUICE_T_DATA", data_dir(), 1);
    cfg = load_ok("mqtt:\n  password_file: ${SLUICE_T_DATA}/config/secret.txt\n"
                  "kafka: { bootstrap: embedded }\n");
    ck_assert_str_eq(cfg->mqtt.password, "s3cr3t-from-file");
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_secrets_never_printed)
{
    char text[PATH_MAX + 512];
    struct config *cfg;
    char *eff, *sum;

    snprintf(text, sizeof(text),
             "mqtt:\n  username: bridge\n  password_file: %s/config/secret.txt\n"
             "kafka:\n  bootstrap: embedded\n  properties:\n"
             "    sasl.password: kafka-pw-123\n"
             "    ssl.key.password: key-pw-456\n"
             "    sasl.oauthbearer.config: principal=x secret=oauth-789\n"
             "    sasl.oauthbearer.client.secret: client-secret-0\n"
             "    compression.type: lz4\n"
             "routes:\n  - { name: r, match: a/b, topic: ab }\n", data_dir());
    cfg = load_ok(text);
    eff = print_to_string(cfg, true);
    sum = print_to_string(cfg, false);
    for (int i = 0; i < 2; i++) {
        const char *s = i == 0 ? eff : sum;
        ck_assert_ptr_null(strstr(s, "s3cr3t"));
        ck_assert_ptr_null(strstr(s, "kafka-pw-123"));
        ck_assert_ptr_null(strstr(s, "key-pw-456"));
        ck_assert_ptr_null(strstr(s, "oauth-789"));
        ck_assert_ptr_null(strstr(s, "client-secret-0"));
    }
    ck_assert_ptr_nonnull(strstr(eff, "password: \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(eff, "\"sasl.password\": \"<redacted>\""));
    ck_assert_ptr_nonnull(strstr(eff, "\"compression.type\": \"lz4\""));
    free(eff);
    free(sum);
    config_destroy(cfg);

    cfg = load_ok("mqtt: { password: hunter2 }\nkafka: { bootstrap: embedded }\n");
    eff = print_to_string(cfg, true);
    ck_assert_str_eq(cfg->mqtt.password, "hunter2");
    ck_assert_ptr_null(strstr(eff, "hunter2"));
    free(eff);
    config_destroy(cfg);
}
END_TEST

/* The effective config is itself a config that loads to the same effective config. */
START_TEST(test_config_effective_round_trips)
{
    struct config *cfg = load_ok(full_yaml), *again;
    char *first, *second;

    first = print_to_string(cfg, true);
    again = load_ok(first);
    second = print_to_string(again, true);
    ck_assert_str_eq(first, second);
    free(first);
    free(second);
    config_destroy(again);
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_effective_keeps_literal_dollar_brace)
{
    struct config *cfg = load_ok("kafka: { bootstrap: embedded }\n"
                                 "mqtt: { username: \"a$${b}\" }\n"), *again;
    char *s = print_to_string(cfg, true);

    ck_assert_str_eq(cfg->mqtt.username, "a${b}");
    again = load_ok(s);
    ck_assert_str_eq(again->mqtt.username, "a${b}");
    free(s);
    config_destroy(again);
    config_destroy(cfg);
}
END_TEST

START_TEST(test_config_missing_file)
{
    struct config_diags d = { 0 };
    struct config *cfg = (struct config *)1;

    ck_assert_int_eq(config_load(&cfg, "/nonexistent/sluice.yaml", &d), -ENOENT);
    ck_assert_ptr_null(cfg);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_str_eq(d.lines[0], "/nonexistent/sluice.yaml: cannot read: No such file or directory");
    config_diags_fini(&d);
    /* diags may be NULL. */
    ck_assert_int_eq(config_load(&cfg, "/nonexistent/sluice.yaml", NULL), -ENOENT);
}
END_TEST

START_TEST(test_config_directory_is_unreadable)
{
    struct config_diags d = { 0 };
    struct config *cfg;

    ck_assert_int_eq(config_load(&cfg, data_dir(), &d), -EISDIR);
    ck_assert_uint_eq(d.n, 1);
    config_diags_fini(&d);
}
END_TEST

START_TEST(test_config_examples_load)
{
    static const char *const examples[] = { "minimal.yaml", "factory.yaml", "sparkplug.yaml",
                                            "demo.yaml" };
    char path[PATH_MAX];

    unsetenv("SLUICE_KAFKA");
    unsetenv("SLUICE_MQTT_URL");
    unsetenv("SLUICE_SPOOL");
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        struct config_diags d = { 0 };
        struct config *cfg;
        int rc;

        snprintf(path, sizeof(path), "%s/../../config/%s", data_dir(), examples[i]);
        rc = config_load(&cfg, path, &d);
        if (rc != 0)
            config_diags_print(&d, stderr);
        ck_assert_msg(rc == 0, "%s does not load", examples[i]);
        ck_assert_uint_gt(cfg->nroutes, 0);
        config_diags_fini(&d);
        config_destroy(cfg);
    }
}
END_TEST

START_TEST(test_config_demo_defaults_from_environment)
{
    char path[PATH_MAX];
    struct config *cfg;
    struct config_diags d = { 0 };

    snprintf(path, sizeof(path), "%s/../../config/demo.yaml", data_dir());
    unsetenv("SLUICE_KAFKA");
    unsetenv("SLUICE_SPOOL");
    setenv("SLUICE_MQTT_URL", "tcp://10.0.0.1:1884", 1);
    ck_assert_int_eq(config_load(&cfg, path, &d), 0);
    ck_assert_str_eq(cfg->kafka.bootstrap, "embedded");
    ck_assert_str_eq(cfg->spool.path, "/tmp/sluice-demo/spool.db");
    ck_assert_str_eq(cfg->mqtt.url, "tcp://10.0.0.1:1884");
    config_destroy(cfg);
    unsetenv("SLUICE_MQTT_URL");
}
END_TEST

START_TEST(test_config_all_errors_in_one_run)
{
    char *out;

    out = load_bad("mqtt:\n  qos: 7\n  keepalive: soon\nkafka:\n  bootstrap: embedded\n"
                   "  properties: { enable.idempotence: false }\n");
    ck_assert_str_eq(out,
        "t.yaml:2:8: mqtt.qos: expected an integer from 0 to 2, got 7\n"
        "t.yaml:3:14: mqtt.keepalive: invalid duration 'soon' (a whole number with ms, s, m, h or d, e.g. 30s)\n"
        "t.yaml:6:17: kafka.properties.enable.idempotence: sluice always uses enable.idempotence=true\n");
    free(out);
}
END_TEST

START_TEST(test_config_null_values_take_defaults)
{
    struct config *cfg = load_ok("mqtt:\n  url:\n  keepalive: ~\nkafka: { bootstrap: embedded }\n"
                                 "lanes:\n  fast:\nroutes:\n");

    ck_assert_str_eq(cfg->mqtt.url, "tcp://127.0.0.1:1883");
    ck_assert(cfg->mqtt.keepalive_ms == 30000);
    ck_assert_uint_eq(cfg->nlanes, 2);
    ck_assert_int_eq(cfg->lanes[0].priority, 5);
    config_destroy(cfg);
}
END_TEST

static int
has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *
read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    char *data = NULL;
    size_t len = 0;
    FILE *out;
    int c;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    out = open_memstream(&data, &len);
    while ((c = fgetc(f)) != EOF)
        fputc(c, out);
    fclose(out);
    fclose(f);
    return data;
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every tests/data/config/bad/<name>.yaml fails with exactly the lines of
 * <name>.expected. Paths in the lines are relative: the test runs in that directory. */
START_TEST(test_config_bad_files_match_golden)
{
    char dir[PATH_MAX], expected_path[PATH_MAX];
    char *names[256];
    size_t n = 0, failures = 0;
    struct dirent *de;
    DIR *dp;

    unsetenv("SLUICE_TEST_SURELY_UNSET");
    unsetenv("SLUICE_TEST_SURELY_UNSET_TOO");
    unsetenv("SLUICE_TEST_SURELY_UNSET_3");
    unsetenv("SLUICE_KAFKA");
    unsetenv("SLUICE_ID");
    snprintf(dir, sizeof(dir), "%s/config/bad", data_dir());
    ck_assert_int_eq(chdir(dir), 0);
    dp = opendir(".");
    ck_assert_ptr_nonnull(dp);
    while ((de = readdir(dp)) != NULL && n < 256)
        if (has_suffix(de->d_name, ".yaml"))
            names[n++] = strdup(de->d_name);
    closedir(dp);
    qsort(names, n, sizeof(names[0]), name_cmp);
    ck_assert_msg(n >= 30, "only %zu bad configs", n);

    for (size_t i = 0; i < n; i++) {
        struct config_diags d = { 0 };
        struct config *cfg = NULL;
        char *want, *got = NULL;
        size_t len = 0;
        FILE *f;
        int rc;

        snprintf(expected_path, sizeof(expected_path), "%.*s.expected",
                 (int)(strlen(names[i]) - 5), names[i]);
        want = read_all(expected_path);
        rc = config_load(&cfg, names[i], &d);
        f = open_memstream(&got, &len);
        config_diags_print(&d, f);
        fclose(f);
        if (rc != -EINVAL || cfg != NULL || strcmp(want, got) != 0 || d.n == 0) {
            fprintf(stderr, "%s: rc %d\n--- expected\n%s--- got\n%s", names[i], rc, want, got);
            failures++;
        }
        config_destroy(cfg);
        config_diags_fini(&d);
        free(want);
        free(got);
        free(names[i]);
    }
    ck_assert_msg(failures == 0, "%zu of %zu bad configs differ from their .expected", failures, n);
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_empty_file_is_all_defaults);
    tcase_add_test(tc, test_config_instance_defaults_to_host_name);
    tcase_add_test(tc, test_config_full_values);
    tcase_add_test(tc, test_config_summary_lists_routes_and_subscriptions);
    tcase_add_test(tc, test_config_env_substitution);
    tcase_add_test(tc, test_config_env_unset_is_located_error);
    tcase_add_test(tc, test_config_password_file_reads_secret);
    tcase_add_test(tc, test_config_secrets_never_printed);
    tcase_add_test(tc, test_config_effective_round_trips);
    tcase_add_test(tc, test_config_effective_keeps_literal_dollar_brace);
    tcase_add_test(tc, test_config_missing_file);
    tcase_add_test(tc, test_config_directory_is_unreadable);
    tcase_add_test(tc, test_config_examples_load);
    tcase_add_test(tc, test_config_demo_defaults_from_environment);
    tcase_add_test(tc, test_config_all_errors_in_one_run);
    tcase_add_test(tc, test_config_null_values_take_defaults);
    tcase_add_test(tc, test_config_bad_files_match_golden);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
