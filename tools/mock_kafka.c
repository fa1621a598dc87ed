/* mock_kafka.c - sluice-mock-kafka: librdkafka's mock cluster in its own process.
 *
 * The integration tests start this next to sluice, read the one line
 * "BOOTSTRAP host:port,..." from its stdout, point sluice at those addresses, and
 * then inject faults by writing commands on its stdin, one per line; every command
 * is answered with one line, "ok" or "error <text>". Running the cluster in a
 * separate process (rather than sluice's own "embedded" mode) lets a test take Kafka
 * down, slow it, or make it refuse, while sluice keeps running, and kill sluice
 * without losing what Kafka already holds.
 *
 * Threads: main reads stdin and SIGTERM (through a signalfd, with SIGTERM blocked
 * before librdkafka starts its threads); the mock cluster runs on librdkafka's own
 * thread. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MOCK_LINE_MAX 1024

static const char mock_usage[] =
    "usage: sluice-mock-kafka [--brokers N] [--partitions P] [--topic NAME[:PARTITIONS]]...\n"
    "\n"
    "Runs librdkafka's mock Kafka cluster and prints one line, BOOTSTRAP <host:port,...>.\n"
    "  --brokers N        brokers in the cluster (default 3)\n"
    "  --partitions P     partitions of --topic and `topic` without a count (default 8)\n"
    "  --topic NAME[:P]   create a topic at start (repeatable)\n"
    "\n"
    "Topics a client asks for that do not exist are created on demand with librdkafka\n"
    "2.0.2's fixed default of 4 partitions (the mock has no setting for it): create\n"
    "topics with --topic when a test depends on the partition count.\n"
    "\n"
    "Commands on stdin, one per line, each answered with `ok` or `error <text>`:\n"
    "  down <broker_id|all>        take brokers down (connections refused)\n"
    "  up <broker_id|all>          bring them back\n"
    "  rtt <broker_id|all> <ms>    add round-trip latency\n"
    "  errors <Api> <count> <ERR>  the next <count> requests of Api (Produce, Metadata,\n"
    "                              InitProducerId, ... or a number) fail with ERR\n"
    "                              (a librdkafka error name, e.g. NOT_ENOUGH_REPLICAS)\n"
    "  topic <name> [partitions]   create a topic\n"
    "  quit                        exit (so do EOF on stdin and SIGTERM), status 0\n"
    "\n"
    "Memory: the mock keeps only about the last 5 MiB or 100,000 message sets per\n"
    "partition and forgets older ones; size test loads (or partitions) to fit.\n";

struct mock {
    rd_kafka_t              *rk;          /* dummy producer that hosts the cluster */
    rd_kafka_mock_cluster_t *mc;
    int                      brokers;
    int                      partitions;  /* default for --topic and `topic` */
};

/* Kafka protocol API keys by name (rdkafka_protocol.h is not installed). */
static const struct {
    const char *name;
    int16_t     key;
} mock_apis[] = {
    {"Produce", 0},          {"Fetch", 1},             {"ListOffsets", 2},
    {"Metadata", 3},         {"OffsetCommit", 8},      {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},        {"Heartbeat", 12},
    {"LeaveGroup", 13},      {"SyncGroup", 14},        {"DescribeGroups", 15},
    {"ListGroups", 16},      {"SaslHandshake", 17},    {"ApiVersions", 18},
    {"CreateTopics", 19},    {"DeleteTopics", 20},     {"DeleteRecords", 21},
    {"InitProducerId", 22},  {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
    {"TxnOffsetCommit", 28}, {"SaslAuthenticate", 36},
};

static bool
mock_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool
mock_api_key(const char *name, int16_t *out)
{
    long v;

    for (size_t i = 0; i < sizeof(mock_apis) / sizeof(mock_apis[0]); i++) {
        if (strcasecmp(name, mock_apis[i].name) == 0) {
            *out = mock_apis[i].key;
            return true;
        }
    }
    if (mock_parse_int(name, 0, INT16_MAX, &v)) {
        *out = (int16_t)v;
        return true;
    }
    return false;
}

/* Error names as rd_kafka_err2name spells them ("NOT_ENOUGH_REPLICAS",
 * "_TRANSPORT"); an optional "RD_KAFKA_RESP_ERR_" or "ERR_" prefix is accepted,
 * and so is a number. */
static bool
mock_err_code(const char *name, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    long v;

    if (strncasecmp(name, "RD_KAFKA_RESP_ERR_", 18) == 0)
        name += 18;
    else if (strncasecmp(name, "ERR_", 4) == 0)
        name += 4;
    if (mock_parse_int(name, INT_MIN, INT_MAX, &v)) {
        *out = (rd_kafka_resp_err_t)v;
        return true;
    }
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcasecmp(descs[i].name, name) == 0) {
            *out = descs[i].code;
            return true;
        }
    }
    return false;
}

static void
mock_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
mock_reply(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Applies fn-like broker operations to one broker or all of them. */
enum mock_broker_op { MOCK_DOWN, MOCK_UP, MOCK_RTT };

static void
mock_brokers(struct mock *m, const char *which, enum mock_broker_op op, int rtt)
{
    long id, first, last;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (which == NULL) {
        mock_reply("error missing broker id (1..%d or all)", m->brokers);
        return;
    }
    if (strcmp(which, "all") == 0) {
        first = 1;
        last = m->brokers;
    } else if (mock_parse_int(which, 1, m->brokers, &id)) {
        first = last = id;
    } else {
        mock_reply("error bad broker id '%s' (1..%d or all)", which, m->brokers);
        return;
    }
    for (id = first; id <= last && e == RD_KAFKA_RESP_ERR_NO_ERROR; id++) {
        switch (op) {
        case MOCK_DOWN: e = rd_kafka_mock_broker_set_down(m->mc, (int32_t)id); break;
        case MOCK_UP:   e = rd_kafka_mock_broker_set_up(m->mc, (int32_t)id); break;
        case MOCK_RTT:  e = rd_kafka_mock_broker_set_rtt(m->mc, (int32_t)id, rtt); break;
        }
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        mock_reply("error broker %ld: %s", id - 1, rd_kafka_err2str(e));
    else
        mock_reply("ok");
}

static void
mock_topic(struct mock *m, const char *name, const char *parts)
{
    rd_kafka_resp_err_t e;
    long p = m->partitions;

    if (name == NULL || *name == '\0') {
        mock_reply("error missing topic name");
        return;
    }
    if (parts != NULL && !mock_parse_int(parts, 1, 100000, &p)) {
        mock_reply("error bad partition count '%s'", parts);
        return;
    }
    e = rd_kafka_mock_topic_create(m->mc, name, (int)p, m->brokers < 3 ? m->brokers : 3);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        mock_reply("error topic %s: %s", name, rd_kafka_err2str(e));
    else
        mock_reply("ok");
}

static void
mock_errors(struct mock *m, const char *api, const char *count, const char *ename)
{
    rd_kafka_resp_err_t code, *codes;
    int16_t key;
    long n;

    if (api == NULL || count == NULL || ename == NULL) {
        mock_reply("error usage: errors <Api> <count> <ERR_NAME>");
        return;
    }
    if (!mock_api_key(api, &key)) {
        mock_reply("error unknown api '%s'", api);
        return;
    }
    if (!mock_parse_int(count, 0, 1000000, &n)) {
        mock_reply("error bad count '%s'", count);
        return;
    }
    if (!mock_err_code(ename, &code)) {
        mock_reply("error unknown error name '%s'", ename);
        return;
    }
    if (n == 0) {
        rd_kafka_mock_clear_request_errors(m->mc, key);
        mock_reply("ok");
        return;
    }
    if ((codes = malloc((size_t)n * sizeof(*codes))) == NULL) {
        mock_reply("error out of memory");
        return;
    }
    for (long i = 0; i < n; i++)
        codes[i] = code;
    rd_kafka_mock_push_request_errors_array(m->mc, key, (size_t)n, codes);
    free(codes);
    mock_reply("ok");
}

/* Returns false on quit. */
static bool
mock_command(struct mock *m, char *line)
{
    char *save = NULL, *cmd, *a1, *a2, *a3, *extra;
    long ms;

    cmd = strtok_r(line, " \t\r\n", &save);
    if (cmd == NULL) {
        mock_reply("error empty command");
        return true;
    }
    a1 = strtok_r(NULL, " \t\r\n", &save);
    a2 = strtok_r(NULL, " \t\r\n", &save);
    a3 = strtok_r(NULL, " \t\r\n", &save);
    extra = strtok_r(NULL, " \t\r\n", &save);
    if (extra != NULL) {
        mock_reply("error too many arguments");
        return true;
    }
    if (strcmp(cmd, "quit") == 0) {
        mock_reply("ok");
        return false;
    } else if (strcmp(cmd, "down") == 0 && a2 == NULL) {
        mock_brokers(m, a1, MOCK_DOWN, 0);
    } else if (strcmp(cmd, "up") == 0 && a2 == NULL) {
        mock_brokers(m, a1, MOCK_UP, 0);
    } else if (strcmp(cmd, "rtt") == 0 && a3 == NULL) {
        if (!mock_parse_int(a2, 0, INT_MAX, &ms))
            mock_reply("error usage: rtt <broker_id|all> <ms>");
        else
            mock_brokers(m, a1, MOCK_RTT, (int)ms);
    } else if (strcmp(cmd, "errors") == 0) {
        mock_errors(m, a1, a2, a3);
    } else if (strcmp(cmd, "topic") == 0 && a3 == NULL) {
        mock_topic(m, a1, a2);
    } else {
        mock_reply("error unknown command or wrong arguments: %s", cmd);
    }
    return true;
}

static int
mock_create(struct mock *m)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    /* The hosting handle never connects anywhere; it only owns the cluster. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    if ((m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
        fprintf(stderr, "sluice-mock-kafka: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if ((m->mc = rd_kafka_mock_cluster_new(m->rk, m->brokers)) == NULL) {
        fprintf(stderr, "sluice-mock-kafka: cannot create the mock cluster\n");
        return -1;
    }
    return 0;
}

static void
mock_destroy(struct mock *m)
{
    if (m->mc != NULL)
        rd_kafka_mock_cluster_destroy(m->mc);
    if (m->rk != NULL)
        rd_kafka_destroy(m->rk);
}

int
main(int argc, char **argv)
{
    struct mock m = {.brokers = 3, .partitions = 8};
    const char **topics;
    size_t ntopics = 0;
    char line[MOCK_LINE_MAX];
    size_t len = 0;
    sigset_t mask;
    long v;
    int sfd, rc = 0;
    bool run = true;

    if ((topics = calloc((size_t)argc, sizeof(*topics))) == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(mock_usage, stdout);
            free(topics);
            return 0;
        } else if (strcmp(a, "--brokers") == 0 && i + 1 < argc &&
                   mock_parse_int(argv[i + 1], 1, 64, &v)) {
            m.brokers = (int)v;
            i++;
        } else if (strcmp(a, "--partitions") == 0 && i + 1 < argc &&
                   mock_parse_int(argv[i + 1], 1, 100000, &v)) {
            m.partitions = (int)v;
            i++;
        } else if (strcmp(a, "--topic") == 0 && i + 1 < argc) {
            topics[ntopics++] = argv[++i];
        } else {
            fprintf(stderr, "sluice-mock-kafka: bad argument '%s'\n%s", a, mock_usage);
            free(topics);
            return 64;
        }
    }

    /* SIGTERM is read through a signalfd; blocked before librdkafka starts threads so
     * none of them takes it. A test harness that goes away must not kill us by
     * SIGPIPE in the middle of a reply either. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        perror("sluice-mock-kafka: signalfd");
        free(topics);
        return 1;
    }

    if (mock_create(&m) < 0) {
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++) {
        char name[512];
        const char *colon = strrchr(topics[i], ':');
        long p = m.partitions;
        rd_kafka_resp_err_t e;

        snprintf(name, sizeof(name), "%.*s",
                 (int)(colon != NULL ? (size_t)(colon - topics[i]) : strlen(topics[i])),
                 topics[i]);
        if (colon != NULL && !mock_parse_int(colon + 1, 1, 100000, &p)) {
            fprintf(stderr, "sluice-mock-kafka: bad partition count in '%s'\n", topics[i]);
            rc = 64;
            goto out;
        }
        e = rd_kafka_mock_topic_create(m.mc, name, (int)p, m.brokers < 3 ? m.brokers : 3);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "sluice-mock-kafka: topic %s: %s\n", name, rd_kafka_err2str(e));
            rc = 1;
            goto out;
        }
    }
    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(m.mc));
    fflush(stdout);

    /* stdin is read with read(2) rather than stdio so poll(2) sees every byte. */
    while (run) {
        struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        char *nl;
        ssize_t r;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("sluice-mock-kafka: poll");
            rc = 1;
            break;
        }
        if (pfd[1].revents & POLLIN)
            break;
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        r = read(0, line + len, sizeof(line) - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;          /* EOF: the test is done with us */
        len += (size_t)r;
        line[len] = '\0';
        while (run && (nl = memchr(line, '\n', len)) != NULL) {
            size_t used = (size_t)(nl - line) + 1;
            *nl = '\0';
            run = mock_command(&m, line);
            memmove(line, line + used, len - used);
            len -= used;
            line[len] = '\0';
        }
        if (len == sizeof(line) - 1) {
            mock_reply("error line too long");
            len = 0;
        }
    }
out:
    mock_destroy(&m);
    close(sfd);
    free(topics);
    return rc;
}
