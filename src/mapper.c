/* mapper.c - one MQTT message through the routes into a Kafka-ready record.
 *
 * Steps: router_match (first route in file order) -> codec decode -> render topic,
 * key and header templates -> event time -> struct record. Any failure after a route
 * matched turns the message into a dead letter: the record is readdressed to
 * dead_letter.topic with headers error and error.stage, and keeps the original
 * payload, so nothing accepted is ever silently lost.
 *
 * All scratch space (rendered topic, key, header block, codec output) belongs to the
 * mapper and is reused, so once the buffers have grown to the working size the hot
 * path allocates only what the codec needs (Jansson's document for json).
 *
 * Stateful codecs (Sparkplug's alias maps) get their state from the mapper: created
 * on the first message of a route that needs it, from the config's spool path, and
 * kept across reloads while that path stays the same. Creating it late, on the
 * thread that maps, means the spool has made (and migrated) its file first, and
 * the state belongs to the one thread that uses it. Before every decode the codec
 * is told the current config and the hooks ingest lent us (codec->configure), so a
 * reload's settings apply at once while the state lives on.
 *
 * The deadband (route deadband:) works the same way: its map of last forwarded values
 * is loaded from the spool file on first use. The mapper only decides; the new last
 * value goes to the spool with the record (mapper_state_puts, one transaction) and
 * into memory when ingest reports the append done (mapper_state_committed), so
 * memory never runs ahead of what the spool holds.
 *
 * Aggregates (route aggregate:) differ in one way: their store changes memory at
 * once, because one message can touch several rows (its accumulator, the watermark,
 * every window it closes). That is safe because ingest writes them with
 * spool_append_all, which commits at once and rolls everything back on failure:
 * aggregate state never waits uncommitted, so mapper_state_reset, which empties the
 * store so that the next message reloads it from the spool, restores exactly the
 * committed state. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/aggregate.h"
#include "sluice/buf.h"
#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/deadband.h"
#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/jpath.h"
#include "sluice/log.h"
#include "sluice/mapper.h"
#include "sluice/route.h"
#include "sluice/spool.h"
#include "sluice/tmpl.h"
#include "sluice/units.h"

#define KAFKA_TOPIC_MAX 249
#define MAPPER_KEY_MAX  (64u << 10)    /* keys past this are a route error */
#define MAPPER_HDR_MAX  (64u << 10)    /* one rendered header value */
#define MAPPER_MAX_CODECS 8

struct mapper {
    char                topic[KAFKA_TOPIC_MAX + 2];
    struct buf          key;        /* rendered key */
    struct buf          value;      /* one rendered header value */
    struct buf          hdrs;       /* encoded extra headers */
    struct codec_out    out;        /* the last decode, released on the next call */
    const struct codec *codec;      /* who owns out */
    struct buf          env;        /* the envelope value (route envelope: true) */
    void               *cstate[MAPPER_MAX_CODECS];  /* per codec_table index, or NULL */
    bool                ctried[MAPPER_MAX_CODECS];  /* create was attempted */
    char               *cstate_path;                /* the spool path they were made for */
    bool                read_only;  /* sluice map: codec state is read, never written */
    const struct codec_hooks *hooks;  /* borrowed from ingest, or NULL */
    struct deadband    *db;         /* last forwarded values, created on first use */
    char               *db_path;    /* the spool path db was loaded from */
    bool                db_loaded;  /* db holds what the spool committed */
    struct mapper_deadband_info dbi;  /* the last message's deadband verdict */
    struct buf          state_route;  /* "deadband/<route>" of the pending put */
    struct spool_state_put put;     /* pending: the new last value */
    unsigned char       put_value[DEADBAND_VALUE_LEN];
    double              put_v;
    size_t              nputs;
    struct aggregate_store *agg;    /* open windows, created on first use */
    char               *agg_path;   /* the spool path agg was loaded from */
    struct mapper_aggregate_info agi;  /* the last message's aggregate side */
};

int
mapper_create(struct mapper **out)
{
    struct mapper *mp;

    if ((mp = calloc(1, sizeof(*mp))) == NULL)
        return -ENOMEM;
    buf_init(&mp->key);
    buf_init(&mp->value);
    buf_init(&mp->hdrs);
    buf_init(&mp->env);
    buf_init(&mp->state_route);
    *out = mp;
    return 0;
}

void
mapper_set_read_only(struct mapper *mp)
{
    mp->read_only = true;
}

void
mapper_set_hooks(struct mapper *mp, const struct codec_hooks *hooks)
{
    mp->hooks = hooks;
}

static void
mapper_states_destroy(struct mapper *mp)
{
    for (size_t i = 0; i < MAPPER_MAX_CODECS && codec_table[i] != NULL; i++) {
        if (mp->cstate[i] != NULL)
            codec_table[i]->destroy(mp->cstate[i]);
        mp->cstate[i] = NULL;
        mp->ctried[i] = false;
    }
    free(mp->cstate_path);
    mp->cstate_path = NULL;
}

/* The state codec c decodes with, created on first use; NULL for stateless codecs
 * and when creating failed (logged once; the codec then works without memory). */
static void *
mapper_codec_state(struct mapper *mp, const struct config *cfg, const struct codec *c)
{
    const char *path = cfg->spool.path;
    struct codec_env env = { path, mp->read_only, cfg, mp->hooks };
    struct err e = { 0 };
    size_t i;

    if (c->create == NULL)
        return NULL;
    for (i = 0; i < MAPPER_MAX_CODECS && codec_table[i] != NULL && codec_table[i] != c; i++)
        ;
    if (i == MAPPER_MAX_CODECS || codec_table[i] == NULL)
        return NULL;
    if ((mp->cstate_path == NULL) != (path == NULL) ||
        (path != NULL && strcmp(mp->cstate_path, path) != 0)) {
        mapper_states_destroy(mp);
        if (path != NULL && (mp->cstate_path = strdup(path)) == NULL)
            return NULL;
    }
    if (mp->cstate[i] == NULL && !mp->ctried[i]) {
        mp->ctried[i] = true;
        if (c->create(&mp->cstate[i], &env, &e) < 0) {
            mp->cstate[i] = NULL;
            log_warn("mapper", "%s state: %s (continuing without it)", c->name, e.msg);
        }
    } else if (mp->cstate[i] != NULL && c->configure != NULL) {
        c->configure(mp->cstate[i], &env);   /* the config may be a reloaded one */
    }
    return mp->cstate[i];
}

static void
mapper_release(struct mapper *mp)
{
    if (mp->codec != NULL)
        mp->codec->release(&mp->out);
    mp->codec = NULL;
}

void
mapper_destroy(struct mapper *mp)
{
    if (mp == NULL)
        return;
    mapper_release(mp);
    mapper_states_destroy(mp);
    buf_fini(&mp->env);
    buf_fini(&mp->key);
    buf_fini(&mp->value);
    buf_fini(&mp->hdrs);
    buf_fini(&mp->state_route);
    deadband_destroy(mp->db);
    aggregate_store_destroy(mp->agg);
    free(mp->agg_path);
    free(mp->db_path);
    free(mp);
}

/* Legal Kafka topic names: 1..249 of [A-Za-z0-9._-], and not "." or "..". */
static bool
mapper_is_kafka_topic(const char *t, size_t len)
{
    if (len == 0 || len > KAFKA_TOPIC_MAX)
        return false;
    if ((len == 1 && t[0] == '.') || (len == 2 && t[0] == '.' && t[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Renders t into b, growing it up to max bytes. Returns the length or -errno. */
static int
mapper_render(const struct tmpl *t, const struct capture *caps, const json_t *doc,
              struct buf *b, size_t max, struct err *err)
{
    int rc;

    for (;;) {
        if (b->cap < 64 && (rc = buf_reserve(b, 64)) < 0)
            return rc;
        rc = tmpl_render(t, caps, doc, b->data, b->cap, err);
        if (rc != -ENOSPC)
            break;
        if (b->cap >= max)
            return err_set(err, -ENOSPC, "rendered value is longer than %zu bytes", max);
        if ((rc = buf_reserve(b, b->cap * 2)) < 0)
            return rc;
    }
    if (rc >= 0)
        b->len = (size_t)rc;
    return rc;
}

/* Event time from the route's timestamp path; false when absent or unparsable. */
static bool
mapper_event_time(const struct config_route *r, const json_t *doc, int64_t *out)
{
    const json_t *v;
    const char *s;

    if (r->timestamp == NULL || doc == NULL || (v = jpath_get(r->timestamp, doc)) == NULL)
        return false;
    if (json_is_number(v))
        return units_epoch_to_ms(json_number_value(v), (enum units_epoch)r->timestamp_unit,
                                 out) == 0;
    if (json_is_string(v)) {
        s = json_string_value(v);
        return units_parse_rfc3339(s, json_string_length(v), out) == 0;
    }
    return false;
}

static int
mapper_add_user_props(struct mapper *mp, const struct mapper_msg *msg)
{
    char name[256];
    int rc;

    for (size_t i = 0; i < msg->nuser_props; i++) {
        const struct record_header *h = &msg->user_props[i];
        size_t n = h->name_len < sizeof(name) - 11 ? h->name_len : sizeof(name) - 11;
        memcpy(name, "mqtt.user.", 10);
        memcpy(name + 10, h->name, n);
        if ((rc = record_hdrs_add(&mp->hdrs, name, 10 + n, h->value, h->value_len)) < 0)
            return rc;
    }
    return 0;
}

/* Readdresses rec to the dead-letter topic. The payload, MQTT fields and user
 * properties stay; the route's topic, key and headers are dropped. */
static int
mapper_dead_letter(struct mapper *mp, const struct config *cfg, const struct mapper_msg *msg,
                   struct record *rec, const char *stage, const char *reason,
                   struct err *why)
{
    int rc;

    buf_reset(&mp->hdrs);
    if ((rc = record_hdrs_add(&mp->hdrs, "error", 5, reason, strlen(reason))) < 0 ||
        (rc = record_hdrs_add(&mp->hdrs, "error.stage", 11, stage, strlen(stage))) < 0 ||
        (rc = mapper_add_user_props(mp, msg)) < 0)
        return rc;
    rec->topic = cfg->dead_letter_topic;
    rec->topic_len = strlen(cfg->dead_letter_topic);
    rec->key = NULL;
    rec->key_len = 0;
    rec->value = msg->payload;
    rec->value_len = msg->payload_len;
    rec->hdrs = mp->hdrs.data;
    rec->hdrs_len = mp->hdrs.len;
    rec->dead_letter = true;
    if (why != NULL && why->msg != reason)
        err_set(why, -EBADMSG, "%s", reason);
    return MAPPER_DEAD_LETTER;
}

/* {"topic":T,"captures":{...},"payload":P} into mp->env. P is the codec's value
 * verbatim (JSON for every format that allows envelope), so json payloads are still
 * not re-encoded. Fails (-EBADMSG) only on a topic or capture that is not UTF-8. */
static int
mapper_envelope(struct mapper *mp, const struct config_route *r, const struct match *m,
                const struct mapper_msg *msg, struct err *e)
{
    json_t *o, *caps, *v;
    size_t n;
    int rc = 0;

    if ((o = json_object()) == NULL)
        return -ENOMEM;
    if ((v = json_stringn(msg->topic, msg->topic_len)) == NULL) {
        json_decref(o);
        return err_set(e, -EBADMSG, "envelope: the MQTT topic is not valid UTF-8");
    }
    if (json_object_set_new(o, "topic", v) < 0 || (caps = json_object()) == NULL ||
        json_object_set_new(o, "captures", caps) < 0) {
        json_decref(o);
        return -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < m->ncaptures + mp->out.nextra; i++) {
        const struct capture *c = i < m->ncaptures ? &m->cap[i] : &mp->out.extra[i - m->ncaptures];
        const char *name = i < m->ncaptures ? pattern_capture_name(r->pattern, i)
                                            : r->codec->capture_names[i - m->ncaptures];
        if ((v = json_stringn(c->ptr, c->len)) == NULL || json_object_set_new(caps, name, v) < 0)
            rc = err_set(e, -EBADMSG, "envelope: capture %s is not valid UTF-8", name);
    }
    buf_reset(&mp->env);
    if (rc == 0) {
        /* Keys in a fixed order (topic, captures) so the text is stable. */
        n = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if ((rc = buf_reserve(&mp->env, n + mp->out.value_len + 16)) == 0) {
            mp->env.len = json_dumpb(o, mp->env.data, n, JSON_COMPACT | JSON_PRESERVE_ORDER);
            mp->env.len--;   /* drop the closing brace */
            if ((rc = buf_append(&mp->env, ",\"payload\":", 11)) == 0 &&
                (rc = buf_append(&mp->env, mp->out.value, mp->out.value_len)) == 0)
                rc = buf_append(&mp->env, "}", 1);
        }
    }
    json_decref(o);
    return rc;
}

/* The aggregate store, (re)loaded from the spool file when first needed; NULL when
 * out of memory. */
static struct aggregate_store *
mapper_aggregate_store(struct mapper *mp, const struct config *cfg)
{
    const char *path = cfg->spool.path != NULL ? cfg->spool.path : "";

    if (mp->agg == NULL && aggregate_store_create(&mp->agg) < 0)
        return NULL;
    if (mp->agg_path == NULL || strcmp(mp->agg_path, path) != 0) {
        free(mp->agg_path);
        if ((mp->agg_path = strdup(path)) == NULL)
            return NULL;
        aggregate_store_clear(mp->agg);
    }
    return mp->agg;
}

static void
mapper_aggregate_fill(struct mapper *mp, const struct aggregate_step *step)
{
    mp->agi.aggregate = true;
    mp->agi.late = step->late;
    mp->agi.window_start = step->window_start;
    mp->agi.window_end = step->window_end;
    mp->agi.recs = step->recs;
    mp->agi.nrecs = step->nrecs;
    mp->agi.puts = step->puts;
    mp->agi.nputs = step->nputs;
}

/* Takes a mapped record of an aggregate route into its window: MAPPER_AGGREGATED,
 * MAPPER_LATE, or MAPPER_OK readdressed to late_topic. */
static int
mapper_aggregate_apply(struct mapper *mp, const struct config *cfg, size_t ridx,
                       struct record *rec)
{
    const struct config_route *r = &cfg->routes[ridx];
    struct aggregate_store *st;
    struct aggregate_step step;
    int rc;

    if (mp->read_only) {
        /* `sluice map`: the window only; the open windows are the bridge's business */
        mp->agi.aggregate = true;
        mp->agi.window_start = aggregate_window_start(rec->event_ms, r->agg_window_ms);
        mp->agi.window_end = mp->agi.window_start + r->agg_window_ms;
        return MAPPER_AGGREGATED;
    }
    if ((st = mapper_aggregate_store(mp, cfg)) == NULL)
        return -ENOMEM;
    if ((rc = aggregate_store_accept(st, cfg, ridx, rec, mp->out.doc, rec->ingest_ms,
                                     &step)) < 0) {
        aggregate_store_clear(st);
        return rc;
    }
    mapper_aggregate_fill(mp, &step);
    if (!step.late)
        return MAPPER_AGGREGATED;
    if (r->agg_late_topic == NULL)
        return MAPPER_LATE;
    rec->topic = r->agg_late_topic;
    rec->topic_len = strlen(r->agg_late_topic);
    return MAPPER_OK;
}

/* The deadband map, loaded from the spool file when first needed (again after a
 * reset, or when the spool path changed). NULL only when out of memory. A spool that
 * cannot be read is logged and treated as empty: every key's next value is then
 * forwarded, the safe direction. */
static struct deadband *
mapper_deadband_map(struct mapper *mp, const struct config *cfg)
{
    const char *path = cfg->spool.path;
    struct err e = { 0 };

    if (mp->db == NULL && deadband_create(&mp->db, 0) < 0)
        return NULL;
    if (mp->db_loaded && mp->db_path != NULL && path != NULL && strcmp(mp->db_path, path) == 0)
        return mp->db;
    free(mp->db_path);
    mp->db_path = path != NULL ? strdup(path) : NULL;
    mp->db_loaded = true;
    if (path == NULL) {
        deadband_clear(mp->db);
    } else if (deadband_load(mp->db, path, &e) < 0) {
        log_warn("mapper", "deadband: %s (starting without last values: the next value of "
                 "every key is forwarded)", e.msg);
    } else if (deadband_evictions(mp->db) > 0) {
        log_warn("mapper", "deadband: the spool holds more keys than the %d kept in memory; "
                 "%llu least recently loaded were dropped (their next values are forwarded)",
                 DEADBAND_MAX_KEYS, (unsigned long long)deadband_evictions(mp->db));
    }
    return mp->db;
}

/* Decides the deadband for a mapped record: MAPPER_SUPPRESSED, or MAPPER_OK with the
 * new last value pending in mp->put. */
static int
mapper_deadband_apply(struct mapper *mp, const struct config *cfg,
                      const struct config_route *r, const struct record *rec)
{
    const json_t *v = mp->out.doc != NULL ? jpath_get(r->deadband_field, mp->out.doc) : NULL;
    struct deadband *db;
    enum deadband_verdict vd;
    double x = 0, last = 0;
    int rc;

    if (v == NULL || !json_is_number(v) || !isfinite(x = json_number_value(v))) {
        mp->dbi.verdict = MAPPER_DEADBAND_NOT_NUMERIC;
        return MAPPER_OK;
    }
    if ((db = mapper_deadband_map(mp, cfg)) == NULL)
        return -ENOMEM;
    buf_reset(&mp->state_route);
    if ((rc = buf_printf(&mp->state_route, DEADBAND_STATE_PREFIX "%s", r->name)) < 0)
        return rc;
    vd = deadband_check(db, mp->state_route.data, rec->key, rec->key_len, x,
                        r->deadband_abs, r->deadband_pct, &last);
    mp->dbi.value = x;
    mp->dbi.last = last;
    mp->dbi.band = fabs(last) * r->deadband_pct / 100.0;
    if (r->deadband_abs > mp->dbi.band)
        mp->dbi.band = r->deadband_abs;
    if (vd == DEADBAND_INSIDE) {
        mp->dbi.verdict = MAPPER_DEADBAND_INSIDE;
        return MAPPER_SUPPRESSED;
    }
    mp->dbi.verdict = vd == DEADBAND_FIRST ? MAPPER_DEADBAND_FIRST : MAPPER_DEADBAND_PAST;
    deadband_encode(x, mp->put_value);
    mp->put = (struct spool_state_put){ mp->state_route.data, rec->key, rec->key_len,
                                        mp->put_value, sizeof(mp->put_value) };
    mp->put_v = x;
    mp->nputs = 1;
    return MAPPER_OK;
}

int
mapper_map(struct mapper *mp, const struct config *cfg, const struct mapper_msg *msg,
           struct record *rec, struct err *why)
{
    struct capture caps[ROUTE_MAX_CAPTURES + CODEC_MAX_EXTRA];
    const struct config_route *r;
    struct err e = { 0 };
    struct match m;
    size_t ncaps;
    int64_t ev;
    int rc;

    mapper_release(mp);
    mp->nputs = 0;
    memset(&mp->dbi, 0, sizeof(mp->dbi));
    memset(&mp->agi, 0, sizeof(mp->agi));
    memset(rec, 0, sizeof(*rec));
    rec->mqtt_topic = msg->topic;
    rec->mqtt_topic_len = msg->topic_len;
    rec->qos = (uint8_t)msg->qos;
    rec->retained = msg->retained;
    rec->ingest_ms = msg->arrival_ms;
    rec->event_ms = msg->arrival_ms;
    rec->lane = cfg->lanes[cfg->default_lane].name;

    if (cfg->router == NULL || !router_match(cfg->router, msg->topic, msg->topic_len, &m))
        return MAPPER_NO_ROUTE;
    r = &cfg->routes[m.route];
    rec->route = (uint32_t)m.route;
    rec->lane = cfg->lanes[r->lane].name;

    mp->codec = r->codec;
    if ((rc = r->codec->decode(mapper_codec_state(mp, cfg, r->codec), msg->topic,
                               msg->topic_len, msg->payload, msg->payload_len, &mp->out,
                               &e)) < 0) {
        if (rc == -ENOMEM)
            return rc;
        return mapper_dead_letter(mp, cfg, msg, rec, "decode", e.msg, why);
    }

    ncaps = m.ncaptures;
    memcpy(caps, m.cap, ncaps * sizeof(caps[0]));
    memcpy(caps + ncaps, mp->out.extra, mp->out.nextra * sizeof(caps[0]));

    /* After decoding (the condition reads the document and the codec's captures),
     * before any rendering: a filtered message costs no template work. */
    if (r->where != NULL && !filter_eval(r->where, caps, mp->out.doc))
        return MAPPER_FILTERED;

    rc = tmpl_render(r->topic, caps, mp->out.doc, mp->topic, sizeof(mp->topic), &e);
    if (rc == -ENOSPC)
        err_set(&e, rc, "topic: rendered name is longer than %d bytes", KAFKA_TOPIC_MAX);
    else if (rc < 0)
        err_wrap(&e, "topic");
    else if (!mapper_is_kafka_topic(mp->topic, (size_t)rc))
        rc = err_set(&e, -EINVAL, "topic: \"%.*s\" is not a legal Kafka topic name",
                     rc > 64 ? 64 : rc, mp->topic);
    if (rc < 0)
        return mapper_dead_letter(mp, cfg, msg, rec, "route", e.msg, why);
    rec->topic = mp->topic;
    rec->topic_len = (size_t)rc;

    if (r->key != NULL) {
        if ((rc = mapper_render(r->key, caps, mp->out.doc, &mp->key, MAPPER_KEY_MAX, &e)) < 0) {
            if (rc == -ENOMEM)
                return rc;
            err_wrap(&e, "key");
            return mapper_dead_letter(mp, cfg, msg, rec, "route", e.msg, why);
        }
        if (rc == 0)
            return mapper_dead_letter(mp, cfg, msg, rec, "route", "key: rendered empty", why);
        rec->key = mp->key.data;
        rec->key_len = (size_t)rc;
    }

    buf_reset(&mp->hdrs);
    if (mapper_event_time(r, mp->out.doc, &ev)) {
        rec->event_ms = ev;
    } else if (r->timestamp != NULL) {
        if ((rc = record_hdrs_add(&mp->hdrs, "event.time.source", 17, "arrival", 7)) < 0)
            return rc;
    } else if (mp->out.has_time) {
        rec->event_ms = mp->out.time_ms;   /* the format's own time (Sparkplug) */
    }
    for (size_t i = 0; i < mp->out.nhdrs; i++) {
        const struct record_header *h = &mp->out.hdrs[i];
        if ((rc = record_hdrs_add(&mp->hdrs, h->name, h->name_len, h->value,
                                  h->value_len)) < 0)
            return rc;
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct config_header *h = &r->headers[i];
        if ((rc = mapper_render(h->value, caps, mp->out.doc, &mp->value, MAPPER_HDR_MAX,
                                &e)) < 0) {
            if (rc == -ENOMEM)
                return rc;
            err_wrap(&e, "headers.%s", h->name);
            return mapper_dead_letter(mp, cfg, msg, rec, "route", e.msg, why);
        }
        if ((rc = record_hdrs_add(&mp->hdrs, h->name, strlen(h->name), mp->value.data,
                                  (size_t)rc)) < 0)
            return rc;
    }
    if ((rc = mapper_add_user_props(mp, msg)) < 0)
        return rc;
    rec->hdrs = mp->hdrs.data;
    rec->hdrs_len = mp->hdrs.len;
    rec->value = mp->out.value;
    rec->value_len = mp->out.value_len;
    if (r->envelope) {
        if ((rc = mapper_envelope(mp, r, &m, msg, &e)) == -ENOMEM)
            return rc;
        if (rc < 0)
            return mapper_dead_letter(mp, cfg, msg, rec, "route", e.msg, why);
        rec->value = mp->env.data;
        rec->value_len = mp->env.len;
    }
    if (r->deadband_field != NULL)
        return mapper_deadband_apply(mp, cfg, r, rec);
    if (r->agg_window_ms > 0)
        return mapper_aggregate_apply(mp, cfg, (size_t)rec->route, rec);
    return MAPPER_OK;
}

const struct mapper_aggregate_info *
mapper_aggregate(const struct mapper *mp)
{
    return &mp->agi;
}

static bool
mapper_has_aggregate(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].agg_window_ms > 0)
            return true;
    return false;
}

int
mapper_aggregate_expire(struct mapper *mp, const struct config *cfg, int64_t now_ms,
                        const struct mapper_aggregate_info **out)
{
    struct aggregate_store *st;
    struct aggregate_step step;
    int rc;

    memset(&mp->agi, 0, sizeof(mp->agi));
    *out = &mp->agi;
    if (mp->read_only || (mp->agg == NULL && !mapper_has_aggregate(cfg)))
        return 0;          /* nothing was ever aggregated: nothing to close */
    if ((st = mapper_aggregate_store(mp, cfg)) == NULL)
        return -ENOMEM;
    if ((rc = aggregate_store_expire(st, cfg, now_ms, &step)) < 0) {
        aggregate_store_clear(st);
        return rc;
    }
    mapper_aggregate_fill(mp, &step);
    return 0;
}

const struct mapper_deadband_info *
mapper_deadband(const struct mapper *mp)
{
    return &mp->dbi;
}

size_t
mapper_state_puts(const struct mapper *mp, const struct spool_state_put **puts)
{
    *puts = &mp->put;
    return mp->nputs;
}

void
mapper_state_committed(struct mapper *mp)
{
    if (mp->nputs == 0 || mp->db == NULL)
        return;
    mp->nputs = 0;
    if (deadband_remember(mp->db, mp->put.route, mp->put.key, mp->put.key_len,
                          mp->put_v) < 0) {
        /* Memory now lags the spool: reload from it at the next message. */
        mp->db_loaded = false;
    }
}

void
mapper_state_reset(struct mapper *mp)
{
    mp->nputs = 0;
    mp->db_loaded = false;
    if (mp->db != NULL)
        deadband_clear(mp->db);
    if (mp->agg != NULL)
        aggregate_store_clear(mp->agg);   /* the next message reloads what is committed */
}
