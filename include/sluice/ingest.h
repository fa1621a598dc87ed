/* ingest.h - MQTT side: Paho MQTTAsync subscriber feeding the spool.
 *
 * Owns the Paho client and, on Paho's receive thread, the ingest spool handle and a
 * mapper. messageArrived maps the message and appends it to the spool; for QoS 1/2 it
 * returns 1 (which makes Paho send the PUBACK) only after the commit. QoS 0 rows are
 * committed in batches of at most INGEST_QOS0_BATCH_MS by a small flusher thread that
 * shares the spool handle under the ingest mutex.
 *
 * Lock rule: one ingest mutex guards the spool handle, the mapper, the config pointer,
 * the subscription lists and the connection state. The receive thread holds it while
 * it maps and appends one message, the flusher while it commits a QoS 0 batch. Paho
 * holds its own global mutex while it runs our callbacks, so the order is Paho's, then
 * ours: ingest never calls into Paho while holding the ingest mutex. The flusher thread
 * also times the reconnects (jittered exponential backoff, 1 s to 30 s).
 *
 * A failing spool (disk full, I/O error) never acknowledges an uncommitted QoS 1/2
 * message: messageArrived retries with backoff, blocking Paho, until the append
 * succeeds, also while stopping; see ingest_stop and ingest_destroy. */
#ifndef SLUICE_INGEST_H
#define SLUICE_INGEST_H

#include <stdbool.h>

struct config;
struct err;
struct ingest;
struct spool;

#define INGEST_QOS0_BATCH_MS 5

/* Called after every commit so the forwarder can wake up; may be NULL. Runs on the
 * Paho receive or flusher thread: must be cheap and non-blocking. */
typedef void (*ingest_notify_fn)(void *arg);

/* Creates the client for cfg (borrowed: must outlive the ingest or be replaced with
 * ingest_set_config). Takes sp: the ingest closes it. Does not connect yet. */
int  ingest_create(struct ingest **out, const struct config *cfg, struct spool *sp,
                   ingest_notify_fn notify, void *notify_arg, struct err *err);
/* Connects (in the background: reconnects forever with jittered exponential backoff
 * between 1 s and 30 s) and subscribes to the router's subscriptions at mqtt.qos
 * (qos 2 over MQTT 3.1.1 becomes 1: Paho would acknowledge it before our commit). */
int  ingest_start(struct ingest *in, struct err *err);
/* Stops taking messages: unsubscribe is not needed (the persistent session keeps
 * queueing at the broker); disconnects (waiting at most a few seconds), commits any
 * QoS 0 batch, joins the flusher. If a message is stuck retrying a failing spool, it
 * skips the disconnect (which would block on Paho's mutex) and logs it: that message
 * stays unacknowledged and the broker redelivers it after the restart. */
void ingest_stop(struct ingest *in);
/* NULL is fine; stops first if needed. Closes the spool. If a message is still stuck on
 * a failing spool after 5 s, it logs that and returns without freeing anything (Paho's
 * thread still uses it): the process is about to exit anyway. */
void ingest_destroy(struct ingest *in);

/* Swaps the config used for routing (SIGHUP). The old config may be destroyed once
 * this returns: the swap waits for an in-flight message to finish. */
void ingest_set_config(struct ingest *in, const struct config *cfg);

bool ingest_is_connected(const struct ingest *in);

#endif
