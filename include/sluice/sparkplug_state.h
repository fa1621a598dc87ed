/* sparkplug_state.h - what a Sparkplug host remembers: metric aliases per edge node
 * and device, and each edge node's last sequence number.
 *
 * Sparkplug DATA messages name their metrics by alias only; the names and datatypes
 * come once, in the NBIRTH/DBIRTH. So that DATA after a sluice restart still resolves,
 * every BIRTH's alias map is written to a table of its own (sparkplug_alias) inside the
 * spool's SQLite file, through this module's own connection; lookups are served from
 * memory (loaded at open). The spool's schema version (user_version) is not touched.
 *
 * Writes wait for the lock only as long as host.birth_busy_ms says (default 0:
 * never), because the thread that calls us may itself hold the spool's write
 * transaction (a QoS 0 batch) and would wait for itself. Ingest ends that
 * transaction before every BIRTH (codec_hooks.before_write), so there the codec sets
 * a wait of SPARKPLUG_STATE_BIRTH_BUSY_MS (the forwarder's deletes are short) and a
 * BIRTH's aliases are on disk before the BIRTH itself is appended, let alone acked.
 * A BIRTH that still cannot be written stays pending and is retried on the next call
 * (and at close); memory is updated at once either way. Sequence numbers and
 * Rebirth request times live in memory only (a write per DATA message is not worth
 * it): after a restart the first message of each edge node starts over.
 *
 * Threads: one state per mapper, used by one thread at a time; no locking inside. */
#ifndef SLUICE_SPARKPLUG_STATE_H
#define SLUICE_SPARKPLUG_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct codec_hooks;
struct err;
struct sparkplug_scope;
struct sparkplug_state;

/* One metric of a BIRTH. */
struct sparkplug_metric_def {
    const char *name;       /* never NULL */
    bool        has_alias;
    uint64_t    alias;
    uint32_t    datatype;   /* Sparkplug DataType, 0 when unknown */
};

/* How the host behaves, chosen by the codec's surroundings (codec_env) and kept
 * here because the state is the codec's only per-instance object. */
#define SPARKPLUG_STATE_BIRTH_BUSY_MS 1000
struct sparkplug_host {
    const struct codec_hooks *hooks;   /* borrowed or NULL: no publishing, no barrier */
    int64_t rebirth_interval_ms;       /* 0: never request a rebirth */
    int     birth_busy_ms;             /* how long a BIRTH write waits for the lock */
};
/* Copies host; hooks stays borrowed. */
void sparkplug_state_set_host(struct sparkplug_state *st, const struct sparkplug_host *host);
/* Returns borrowed, valid until the next set_host or close; never NULL. */
const struct sparkplug_host *sparkplug_state_host(const struct sparkplug_state *st);

/* Opens the state kept in the SQLite file path (borrowed), or a memory-only state
 * when path is NULL. read_only: load the table if the file and table exist, and
 * never create or write anything (`sluice map`); a missing file is an empty state.
 * Returns 0 and owned *out (free with sparkplug_state_close), or -errno + sentence. */
int  sparkplug_state_open(struct sparkplug_state **out, const char *path, bool read_only,
                          struct err *err);
/* Writes pending BIRTHs (waiting up to a second for the lock), then frees. NULL is
 * fine. */
void sparkplug_state_close(struct sparkplug_state *st);

/* Replaces the alias map of (group, edge_node, device) (borrowed; device "" for the
 * edge node itself) with defs[0..n) (copied). Returns 0 (the write may still be
 * pending, see above), -ENOMEM, or -ENOSPC when the state already tracks
 * SPARKPLUG_STATE_MAX_SCOPES nodes and devices (the BIRTH is then not remembered). */
#define SPARKPLUG_STATE_MAX_SCOPES 65536
int  sparkplug_state_birth(struct sparkplug_state *st, const char *group,
                           const char *edge_node, const char *device,
                           const struct sparkplug_metric_def *defs, size_t n);

/* Returns borrowed, valid until the next birth for the same scope or close; NULL
 * when no BIRTH of (group, edge_node, device) is known. */
const struct sparkplug_scope *sparkplug_state_find(const struct sparkplug_state *st,
                                                   const char *group, const char *edge_node,
                                                   const char *device);
/* Returns borrowed (valid as the scope) or NULL. */
const struct sparkplug_metric_def *sparkplug_scope_by_alias(const struct sparkplug_scope *sc,
                                                            uint64_t alias);
const struct sparkplug_metric_def *sparkplug_scope_by_name(const struct sparkplug_scope *sc,
                                                           const char *name);

/* Feeds the edge node's sequence number of one message (NBIRTH: reset = true starts
 * the sequence). Returns false when seq does not follow the previous one (mod 256),
 * true otherwise, including when no earlier message is known. */
bool sparkplug_state_seq(struct sparkplug_state *st, const char *group,
                         const char *edge_node, uint64_t seq, bool reset);

/* Rate limit of Rebirth requests: returns true (and remembers now_ms, a monotonic
 * time) when no request for the edge node was made in the last interval_ms; false
 * otherwise, or when the node cannot be tracked (past the scope limit). */
bool sparkplug_state_rebirth_due(struct sparkplug_state *st, const char *group,
                                 const char *edge_node, int64_t now_ms, int64_t interval_ms);

/* Retries the pending BIRTH writes without waiting for the lock. Cheap when nothing
 * is pending: the codec calls it for every message. */
void sparkplug_state_flush(struct sparkplug_state *st);

/* BIRTHs remembered in memory but not yet written (tests, diagnostics). */
size_t sparkplug_state_pending(const struct sparkplug_state *st);

#endif
