/* forward.h - Kafka side: drains the spool into an idempotent librdkafka producer.
 *
 * Owns a thread, the rd_kafka_t and the forwarder's spool handle; it is the sole
 * caller of rd_kafka_poll. Claims records lane by lane in priority order (then by
 * sequence), keeps at most FORWARD_WINDOW records in flight (none more while Kafka is
 * unreachable: they wait in the spool, for the lanes and retention), deletes a record
 * only after its delivery report says Kafka has it. Transient errors are retried by
 * librdkafka itself in order (message.timeout.ms=0 = forever, so no idempotence gaps);
 * permanent errors (too large, unknown topic, not authorized) dead-letter the record. */
#ifndef SLUICE_FORWARD_H
#define SLUICE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct err;
struct forward;
struct live;
struct spool;

/* Records produced and not yet acknowledged, at most. Each costs about 1 KiB in
 * librdkafka's copies (key, value, headers, message struct), so the window is most of
 * the forwarder's memory: 10,000 put peak RSS in a backlog drain at 34.8 MiB, 4,000 at
 * 26.4 MiB, with the drain rate unchanged within the noise (bench/run-pipeline.sh,
 * 200-byte records, 64 partitions). At 60-80k records/s 4,000 is 50-65 ms in flight,
 * plenty to keep every partition's batches full. It also bounds what a crash sends
 * twice (plus the acknowledgements not yet deleted, at most as many again:
 * forward.c FW_PEND_MAX). */
#define FORWARD_WINDOW 4000

/* Takes sp. cfg borrowed (see forward_set_config). live (borrowed, may be NULL) is
 * the live path shared with the ingest handle's spool (live.h); it must outlive the
 * forwarder. With kafka.bootstrap "embedded" it also starts an in-process mock
 * cluster and logs its bootstrap address. */
int  forward_create(struct forward **out, const struct config *cfg, struct spool *sp,
                    struct live *live, struct err *err);
int  forward_start(struct forward *fw, struct err *err);
/* Any thread: new records are in the spool. Coalesces; never blocks. */
void forward_notify(void *fw);
/* Stops claiming, waits up to flush_ms for in-flight records to be acknowledged
 * (deleting those), leaves the rest in the spool, joins the thread. */
void forward_stop(struct forward *fw, int flush_ms);
void forward_destroy(struct forward *fw);   /* NULL is fine */

void forward_set_config(struct forward *fw, const struct config *cfg);
bool forward_is_connected(const struct forward *fw);
/* Any thread: a counter the forwarder thread bumps on every pass of its loop (which
 * never sleeps more than 50 ms) and every producer re-create retry (1 s apart). If it
 * stops moving for seconds, the thread is wedged; main gates the systemd watchdog on it. */
uint64_t forward_heartbeat(const struct forward *fw);

/* The top-level "txmsgs" (messages transmitted, retransmissions included) of a
 * librdkafka statistics document of len bytes (not NUL-terminated): 0 and *out, or -1
 * when there is none. Exposed for the unit tests. */
int forward_stats_txmsgs(const char *json, size_t len, uint64_t *out);

#endif
