/* codec_sparkplug.c - Sparkplug B (3.0) payloads to JSON, with host alias state.
 *
 * Topics: spBv1.0/{group}/{type}/{edge_node}[/{device}] and spBv1.0/STATE/{host}.
 * The codec offers templates the captures group, type, edge_node and device ("" for
 * edge node messages; STATE messages give type "STATE" and the host id as
 * edge_node).
 *
 * Payloads are protobuf (schemas/sparkplug_b.proto, compiled by protoc-c). The Kafka
 * value is a compact JSON text:
 *   {"timestamp":T,"seq":S,"uuid":U,"metrics":[{"name","alias","timestamp","type",
 *    "value","is_historical","is_transient","is_null","metadata","properties"}],
 *    "body":"<base64>"}
 * with absent optional fields left out. Values follow the datatype, named as in the
 * specification ("Int32", "DataSet", "FloatArray"...): integers are sign-corrected
 * to their width, arrays (packed little-endian in bytes_value, 3.0 section 6.4.17)
 * become JSON arrays, DataSets {"num_of_columns","columns","types","rows"}, Templates
 * {"version","template_ref","is_definition","metrics","parameters"}, property sets
 * {"key":{"type","value"}}. What cannot be read as its datatype (an unknown
 * datatype, an array whose length is not a multiple of its element) keeps its raw
 * bytes as base64 rather than failing the message: a host must not drop data it
 * does not understand. NaN and infinities become the strings "NaN", "Infinity",
 * "-Infinity", as in protobuf's JSON mapping. STATE payloads are JSON in 3.0 and pass
 * through unchanged (the 2.x texts ONLINE/OFFLINE become {"online":true|false}).
 *
 * State (sparkplug_state.h): NBIRTH/DBIRTH teach the alias -> (name, datatype) maps;
 * DATA, DEATH and CMD metrics that carry only an alias get their name (and datatype,
 * when the DATA omits it) back. Each edge node's seq must count up by one modulo 256
 * from its NBIRTH; a gap, or DATA from a node or device without a known BIRTH, is
 * counted (metrics.sparkplug_seq_gaps, sparkplug_unknown_alias) and marked with the
 * header sparkplug.warning (seq-gap, no-birth, unknown-alias). The record still goes
 * to Kafka: the data is valid, only its names are missing.
 *
 * BIRTH durability. A BIRTH's alias map must be on disk before the BIRTH is
 * committed to the spool: otherwise a crash after the BIRTH went to Kafka but before
 * its aliases were written leaves every later DATA nameless (and the edge node will
 * not send another BIRTH by itself). BIRTHs usually come at QoS 0, and ingest keeps
 * QoS 0 rows in an open spool transaction whose write lock our own connection would
 * wait for in vain. So before a BIRTH the codec calls hooks.before_write, with which
 * ingest commits that batch; the alias rows are then written (waiting up to
 * SPARKPLUG_STATE_BIRTH_BUSY_MS for the forwarder's deletes), and only then does the
 * mapper hand the BIRTH record to the spool. Writing the alias rows through the
 * spool's own transaction would save that commit, but would tie the state to the
 * spool's connection and batching; BIRTHs are rare, one commit each is cheap.
 *
 * Rebirth requests (config sparkplug.request_rebirth). DATA from a node without a
 * known BIRTH, with a seq gap or with an alias its BIRTH did not define makes the
 * codec ask the node for its BIRTHs again, as a Sparkplug host does: an NCMD on
 * spBv1.0/{group}/NCMD/{edge_node} with the one metric "Node Control/Rebirth" =
 * true, published at QoS 0 through hooks.publish (ingest queues it and sends it
 * after the message, never blocking the receive thread), at most once per
 * rebirth_interval per edge node. Counted in metrics.sparkplug_rebirths.
 *
 * Hostile payloads: protobuf-c unpacks nested messages recursively without a bound,
 * and Template -> Metric -> Template nests without one, so the wire is first walked
 * with the generated descriptors and anything nested deeper than SPB_MAX_DEPTH, or
 * malformed, is rejected (-EBADMSG) before protobuf-c sees it. Payloads over
 * CODEC_SPARKPLUG_MAX_BYTES are rejected too. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparkplug_b.pb-c.h"
#include "sluice/buf.h"
#include "sluice/clock.h"
#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/metrics.h"
#include "sluice/sparkplug_state.h"

#define SPB_MAX_DEPTH   32                  /* nested protobuf messages */
#define SPB_MAX_LEVEL   256                 /* one topic level, as sluice keys go */
#define CODEC_SPARKPLUG_MAX_BYTES (16u << 20)

typedef Org__Eclipse__Tahu__Protobuf__Payload             SpbPayload;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric     SpbMetric;
typedef Org__Eclipse__Tahu__Protobuf__Payload__DataSet    SpbDataSet;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Template   SpbTemplate;
typedef Org__Eclipse__Tahu__Protobuf__Payload__PropertySet SpbPropertySet;
typedef Org__Eclipse__Tahu__Protobuf__Payload__PropertyValue SpbPropertyValue;
typedef Org__Eclipse__Tahu__Protobuf__Payload__MetaData   SpbMetaData;

enum spb_type {
    SPB_NBIRTH, SPB_NDEATH, SPB_NDATA, SPB_NCMD,
    SPB_DBIRTH, SPB_DDEATH, SPB_DDATA, SPB_DCMD, SPB_STATE,
};
static const char *const spb_type_names[] = {
    "NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD", "STATE",
};

static const char *const spb_capture_names[] = { "group", "type", "edge_node", "device" };

/* Sparkplug DataType names, by number (3.0 section 6.4.16). */
static const char *const spb_datatype_names[] = {
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float", "Double", "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes",
    "File", "Template", "PropertySet", "PropertySetList", "Int8Array", "Int16Array",
    "Int32Array", "Int64Array", "UInt8Array", "UInt16Array", "UInt32Array", "UInt64Array",
    "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
};
#define SPB_NDATATYPES (sizeof(spb_datatype_names) / sizeof(spb_datatype_names[0]))

enum {
    DT_INT8 = 1, DT_INT16, DT_INT32, DT_INT64, DT_UINT8, DT_UINT16, DT_UINT32, DT_UINT64,
    DT_FLOAT, DT_DOUBLE, DT_BOOLEAN, DT_STRING, DT_DATETIME, DT_TEXT, DT_UUID, DT_DATASET,
    DT_BYTES, DT_FILE, DT_TEMPLATE, DT_PROPERTYSET, DT_PROPERTYSETLIST, DT_INT8_ARRAY,
    DT_INT16_ARRAY, DT_INT32_ARRAY, DT_INT64_ARRAY, DT_UINT8_ARRAY, DT_UINT16_ARRAY,
    DT_UINT32_ARRAY, DT_UINT64_ARRAY, DT_FLOAT_ARRAY, DT_DOUBLE_ARRAY, DT_BOOLEAN_ARRAY,
    DT_STRING_ARRAY, DT_DATETIME_ARRAY,
};

/* One value of any of the oneofs (Metric, DataSetValue, Parameter, PropertyValue). */
struct spb_val {
    enum { V_NONE, V_U32, V_U64, V_FLOAT, V_DOUBLE, V_BOOL, V_STRING, V_BYTES, V_OTHER } kind;
    uint64_t       u;
    double         d;
    float          f;
    bool           b;
    const char    *s;
    ProtobufCBinaryData bytes;
};

/* ---- a small JSON writer ---------------------------------------------------- */

struct jw {
    struct buf *b;
    int         rc;          /* first error, sticky */
    int         depth;
    bool        need_comma[SPB_MAX_DEPTH * 4 + 8];
    bool        after_key;
};

static void
jw_put(struct jw *w, const char *s, size_t n)
{
    if (w->rc == 0)
        w->rc = buf_append(w->b, s, n);
}

static void
jw_lit(struct jw *w, const char *s)
{
    jw_put(w, s, strlen(s));
}

/* Separator before a value (or key) at the current level. */
static void
jw_pre(struct jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->need_comma[w->depth])
        jw_put(w, ",", 1);
    w->need_comma[w->depth] = true;
}

static void
jw_open(struct jw *w, char c)
{
    jw_pre(w);
    jw_put(w, &c, 1);
    if ((size_t)w->depth + 1 < sizeof(w->need_comma)) {
        w->depth++;
        w->need_comma[w->depth] = false;
    } else if (w->rc == 0) {
        w->rc = -EBADMSG;
    }
}

static void
jw_close(struct jw *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    jw_put(w, &c, 1);
}

/* A JSON string of n bytes. Invalid UTF-8 (protobuf-c does not check proto2
 * strings) becomes U+FFFD, so the output is always valid JSON. */
static void
jw_strn(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;

    jw_put(w, "\"", 1);
    while (i < n) {
        unsigned char c = p[i];
        size_t len = 0;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            run++;
            continue;
        }
        jw_put(w, s + i - run, run);
        run = 0;
        if (c < 0x80) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            if (c == '"')
                jw_put(w, "\\\"", 2);
            else if (c == '\\')
                jw_put(w, "\\\\", 2);
            else if (c == '\n')
                jw_put(w, "\\n", 2);
            else if (c == '\t')
                jw_put(w, "\\t", 2);
            else if (c == '\r')
                jw_put(w, "\\r", 2);
            else
                jw_put(w, e, 6);
            i++;
            continue;
        }
        /* Multi-byte: check the sequence (no overlongs, no surrogates, <= U+10FFFF). */
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4;
        if (len > 0 && i + len <= n) {
            bool ok = true;
            for (size_t k = 1; k < len; k++)
                ok = ok && (p[i + k] & 0xc0) == 0x80;
            if (ok && len == 3 && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] > 0x9f)))
                ok = false;
            if (ok && len == 4 && ((c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] > 0x8f)))
                ok = false;
            if (ok) {
                jw_put(w, s + i, len);
                i += len;
                continue;
            }
        }
        jw_put(w, "\\ufffd", 6);
        i++;
    }
    jw_put(w, s + i - run, run);
    jw_put(w, "\"", 1);
}

static void
jw_str(struct jw *w, const char *s)
{
    jw_pre(w);
    jw_strn(w, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static void
jw_key(struct jw *w, const char *k)
{
    jw_pre(w);
    jw_strn(w, k, strlen(k));
    jw_put(w, ":", 1);
    w->after_key = true;
}

static void
jw_u64(struct jw *w, uint64_t v)
{
    char t[24];
    jw_pre(w);
    jw_put(w, t, (size_t)snprintf(t, sizeof(t), "%" PRIu64, v));
}

static void
jw_i64(struct jw *w, int64_t v)
{
    char t[24];
    jw_pre(w);
    jw_put(w, t, (size_t)snprintf(t, sizeof(t), "%" PRId64, v));
}

static void
jw_bool(struct jw *w, bool v)
{
    jw_pre(w);
    jw_lit(w, v ? "true" : "false");
}

static void
jw_null(struct jw *w)
{
    jw_pre(w);
    jw_lit(w, "null");
}

static bool
jw_nonfinite(struct jw *w, double v)
{
    if (isfinite(v))
        return false;
    jw_str(w, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    return true;
}

/* Shortest text that reads back as the same double. */
static void
jw_double(struct jw *w, double v)
{
    char t[40];
    int n = 0;

    if (jw_nonfinite(w, v))
        return;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(t, sizeof(t), "%.*g", prec, v);
        if (strtod(t, NULL) == v)
            break;
    }
    jw_pre(w);
    jw_put(w, t, (size_t)n);
}

/* Shortest text that reads back as the same float: 0.1f is 0.1, not 0.100000001. */
static void
jw_float(struct jw *w, float v)
{
    char t[40];
    int n = 0;

    if (jw_nonfinite(w, v))
        return;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(t, sizeof(t), "%.*g", prec, (double)v);
        if (strtof(t, NULL) == v)
            break;
    }
    jw_pre(w);
    jw_put(w, t, (size_t)n);
}

static void
jw_base64(struct jw *w, const uint8_t *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];

    jw_pre(w);
    jw_put(w, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? tab[v & 63] : '=';
        jw_put(w, q, 4);
    }
    jw_put(w, "\"", 1);
}

/* ---- values ---------------------------------------------------------------- */

static void
spb_datatype(struct jw *w, uint32_t dt)
{
    char t[24];

    if (dt < SPB_NDATATYPES) {
        jw_str(w, spb_datatype_names[dt]);
    } else {
        snprintf(t, sizeof(t), "Unknown(%" PRIu32 ")", dt);
        jw_str(w, t);
    }
}

/* A value by its own kind, for datatypes we cannot (or need not) interpret. */
static void
spb_value_raw(struct jw *w, const struct spb_val *v)
{
    switch (v->kind) {
    case V_U32:
    case V_U64:    jw_u64(w, v->u); break;
    case V_FLOAT:  jw_float(w, v->f); break;
    case V_DOUBLE: jw_double(w, v->d); break;
    case V_BOOL:   jw_bool(w, v->b); break;
    case V_STRING: jw_str(w, v->s); break;
    case V_BYTES:  jw_base64(w, v->bytes.data, v->bytes.len); break;
    default:       jw_null(w); break;
    }
}

static uint64_t
spb_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

/* Arrays packed little-endian in bytes (3.0 section 6.4.17). False when the bytes
 * do not form an array of the type, so the caller keeps them as base64. */
static bool
spb_array(struct jw *w, uint32_t dt, const ProtobufCBinaryData *bin)
{
    static const uint8_t width[] = {
        [DT_INT8_ARRAY] = 1, [DT_INT16_ARRAY] = 2, [DT_INT32_ARRAY] = 4,
        [DT_INT64_ARRAY] = 8, [DT_UINT8_ARRAY] = 1, [DT_UINT16_ARRAY] = 2,
        [DT_UINT32_ARRAY] = 4, [DT_UINT64_ARRAY] = 8, [DT_FLOAT_ARRAY] = 4,
        [DT_DOUBLE_ARRAY] = 8, [DT_DATETIME_ARRAY] = 8,
    };
    const uint8_t *p = bin->data;
    size_t n = bin->len;

    if (dt == DT_STRING_ARRAY) {
        /* UTF-8 strings, each terminated by a NUL. */
        if (n > 0 && p[n - 1] != '\0')
            return false;
        jw_open(w, '[');
        for (size_t i = 0; i < n;) {
            const uint8_t *z = memchr(p + i, 0, n - i);
            size_t len = (size_t)(z - (p + i));
            jw_pre(w);
            jw_strn(w, (const char *)p + i, len);
            i += len + 1;
        }
        jw_close(w, ']');
        return true;
    }
    if (dt == DT_BOOLEAN_ARRAY) {
        /* A 4-byte little-endian count, then the booleans packed one per bit, the
         * first in the most significant bit of the first byte. */
        uint64_t count;
        if (n < 4)
            return false;
        count = spb_le(p, 4);
        if ((count + 7) / 8 != n - 4)
            return false;
        jw_open(w, '[');
        for (uint64_t i = 0; i < count; i++)
            jw_bool(w, (p[4 + i / 8] >> (7 - i % 8)) & 1);
        jw_close(w, ']');
        return true;
    }
    if (dt >= sizeof(width) || width[dt] == 0 || n % width[dt] != 0)
        return false;
    jw_open(w, '[');
    for (size_t i = 0; i < n; i += width[dt]) {
        uint64_t v = spb_le(p + i, width[dt]);
        switch (dt) {
        case DT_INT8_ARRAY:   jw_i64(w, (int8_t)v); break;
        case DT_INT16_ARRAY:  jw_i64(w, (int16_t)v); break;
        case DT_INT32_ARRAY:  jw_i64(w, (int32_t)v); break;
        case DT_INT64_ARRAY:
        case DT_DATETIME_ARRAY: jw_i64(w, (int64_t)v); break;
        case DT_FLOAT_ARRAY: {
            uint32_t u = (uint32_t)v;
            float f;
            memcpy(&f, &u, sizeof(f));
            jw_float(w, f);
            break;
        }
        case DT_DOUBLE_ARRAY: {
            double d;
            memcpy(&d, &v, sizeof(d));
            jw_double(w, d);
            break;
        }
        default:              jw_u64(w, v); break;
        }
    }
    jw_close(w, ']');
    return true;
}

/* A scalar or array value as its datatype says; anything else by its own kind. */
static void
spb_value(struct jw *w, uint32_t dt, const struct spb_val *v)
{
    bool num = v->kind == V_U32 || v->kind == V_U64;

    switch (dt) {
    case DT_INT8:   if (num) { jw_i64(w, (int8_t)v->u); return; } break;
    case DT_INT16:  if (num) { jw_i64(w, (int16_t)v->u); return; } break;
    case DT_INT32:  if (num) { jw_i64(w, (int32_t)v->u); return; } break;
    case DT_UINT8:  if (num) { jw_u64(w, (uint8_t)v->u); return; } break;
    case DT_UINT16: if (num) { jw_u64(w, (uint16_t)v->u); return; } break;
    case DT_UINT32: if (num) { jw_u64(w, (uint32_t)v->u); return; } break;
    case DT_INT64:
    case DT_DATETIME: if (num) { jw_i64(w, (int64_t)v->u); return; } break;
    case DT_UINT64: if (num) { jw_u64(w, v->u); return; } break;
    case DT_FLOAT:
        if (v->kind == V_FLOAT) { jw_float(w, v->f); return; }
        break;
    case DT_DOUBLE:
        if (v->kind == V_DOUBLE) { jw_double(w, v->d); return; }
        break;
    default:
        if (dt >= DT_INT8_ARRAY && dt <= DT_DATETIME_ARRAY && v->kind == V_BYTES &&
            spb_array(w, dt, &v->bytes))
            return;
        break;
    }
    spb_value_raw(w, v);
}

static void spb_metrics(struct jw *w, SpbMetric **m, size_t n,
                        const struct sparkplug_scope *sc, bool *unknown);

static void
spb_propertyset(struct jw *w, const SpbPropertySet *ps);

static void
spb_propertyvalue(struct jw *w, const SpbPropertyValue *pv)
{
    struct spb_val v = { .kind = V_NONE };

    jw_open(w, '{');
    if (pv->has_type) {
        jw_key(w, "type");
        spb_datatype(w, pv->type);
    }
    jw_key(w, "value");
    switch (pv->value_case) {
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_INT_VALUE:
        v.kind = V_U32; v.u = pv->int_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_LONG_VALUE:
        v.kind = V_U64; v.u = pv->long_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_FLOAT_VALUE:
        v.kind = V_FLOAT; v.f = pv->float_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_DOUBLE_VALUE:
        v.kind = V_DOUBLE; v.d = pv->double_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_BOOLEAN_VALUE:
        v.kind = V_BOOL; v.b = pv->boolean_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_STRING_VALUE:
        v.kind = V_STRING; v.s = pv->string_value; break;
    default: break;
    }
    if (pv->has_is_null && pv->is_null)
        jw_null(w);
    else if (pv->value_case == ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_PROPERTYSET_VALUE)
        spb_propertyset(w, pv->propertyset_value);
    else if (pv->value_case == ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_PROPERTYSETS_VALUE) {
        jw_open(w, '[');
        for (size_t i = 0; i < pv->propertysets_value->n_propertyset; i++)
            spb_propertyset(w, pv->propertysets_value->propertyset[i]);
        jw_close(w, ']');
    } else
        spb_value(w, pv->has_type ? pv->type : 0, &v);
    jw_close(w, '}');
}

/* {"key":{"type","value"}, ...}; keys and values pair up to the shorter list. */
static void
spb_propertyset(struct jw *w, const SpbPropertySet *ps)
{
    size_t n = ps->n_keys < ps->n_values ? ps->n_keys : ps->n_values;

    jw_open(w, '{');
    for (size_t i = 0; i < n; i++) {
        jw_key(w, ps->keys[i] != NULL ? ps->keys[i] : "");
        spb_propertyvalue(w, ps->values[i]);
    }
    jw_close(w, '}');
}

static void
spb_metadata(struct jw *w, const SpbMetaData *md)
{
    jw_open(w, '{');
    if (md->has_is_multi_part) { jw_key(w, "is_multi_part"); jw_bool(w, md->is_multi_part); }
    if (md->content_type != NULL) { jw_key(w, "content_type"); jw_str(w, md->content_type); }
    if (md->has_size) { jw_key(w, "size"); jw_u64(w, md->size); }
    if (md->has_seq) { jw_key(w, "seq"); jw_u64(w, md->seq); }
    if (md->file_name != NULL) { jw_key(w, "file_name"); jw_str(w, md->file_name); }
    if (md->file_type != NULL) { jw_key(w, "file_type"); jw_str(w, md->file_type); }
    if (md->md5 != NULL) { jw_key(w, "md5"); jw_str(w, md->md5); }
    if (md->description != NULL) { jw_key(w, "description"); jw_str(w, md->description); }
    jw_close(w, '}');
}

static void
spb_dataset(struct jw *w, const SpbDataSet *ds)
{
    jw_open(w, '{');
    if (ds->has_num_of_columns) {
        jw_key(w, "num_of_columns");
        jw_u64(w, ds->num_of_columns);
    }
    jw_key(w, "columns");
    jw_open(w, '[');
    for (size_t i = 0; i < ds->n_columns; i++)
        jw_str(w, ds->columns[i]);
    jw_close(w, ']');
    jw_key(w, "types");
    jw_open(w, '[');
    for (size_t i = 0; i < ds->n_types; i++)
        spb_datatype(w, ds->types[i]);
    jw_close(w, ']');
    jw_key(w, "rows");
    jw_open(w, '[');
    for (size_t r = 0; r < ds->n_rows; r++) {
        const Org__Eclipse__Tahu__Protobuf__Payload__DataSet__Row *row = ds->rows[r];
        jw_open(w, '[');
        for (size_t c = 0; c < row->n_elements; c++) {
            const Org__Eclipse__Tahu__Protobuf__Payload__DataSet__DataSetValue *e =
                row->elements[c];
            struct spb_val v = { .kind = V_NONE };
            switch (e->value_case) {
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_INT_VALUE:
                v.kind = V_U32; v.u = e->int_value; break;
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_LONG_VALUE:
                v.kind = V_U64; v.u = e->long_value; break;
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_FLOAT_VALUE:
                v.kind = V_FLOAT; v.f = e->float_value; break;
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_DOUBLE_VALUE:
                v.kind = V_DOUBLE; v.d = e->double_value; break;
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_BOOLEAN_VALUE:
                v.kind = V_BOOL; v.b = e->boolean_value; break;
            case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__DATA_SET__DATA_SET_VALUE__VALUE_STRING_VALUE:
                v.kind = V_STRING; v.s = e->string_value; break;
            default: break;
            }
            spb_value(w, c < ds->n_types ? ds->types[c] : 0, &v);
        }
        jw_close(w, ']');
    }
    jw_close(w, ']');
    jw_close(w, '}');
}

static void
spb_template(struct jw *w, const SpbTemplate *t)
{
    bool unknown = false;

    jw_open(w, '{');
    if (t->version != NULL) { jw_key(w, "version"); jw_str(w, t->version); }
    if (t->template_ref != NULL) { jw_key(w, "template_ref"); jw_str(w, t->template_ref); }
    if (t->has_is_definition) { jw_key(w, "is_definition"); jw_bool(w, t->is_definition); }
    jw_key(w, "metrics");
    /* Template members are named; aliases are an edge node's, not a template's. */
    spb_metrics(w, t->metrics, t->n_metrics, NULL, &unknown);
    jw_key(w, "parameters");
    jw_open(w, '[');
    for (size_t i = 0; i < t->n_parameters; i++) {
        const Org__Eclipse__Tahu__Protobuf__Payload__Template__Parameter *p = t->parameters[i];
        struct spb_val v = { .kind = V_NONE };
        switch (p->value_case) {
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_INT_VALUE:
            v.kind = V_U32; v.u = p->int_value; break;
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_LONG_VALUE:
            v.kind = V_U64; v.u = p->long_value; break;
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_FLOAT_VALUE:
            v.kind = V_FLOAT; v.f = p->float_value; break;
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_DOUBLE_VALUE:
            v.kind = V_DOUBLE; v.d = p->double_value; break;
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_BOOLEAN_VALUE:
            v.kind = V_BOOL; v.b = p->boolean_value; break;
        case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__TEMPLATE__PARAMETER__VALUE_STRING_VALUE:
            v.kind = V_STRING; v.s = p->string_value; break;
        default: break;
        }
        jw_open(w, '{');
        if (p->name != NULL) { jw_key(w, "name"); jw_str(w, p->name); }
        if (p->has_type) { jw_key(w, "type"); spb_datatype(w, p->type); }
        jw_key(w, "value");
        spb_value(w, p->has_type ? p->type : 0, &v);
        jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_close(w, '}');
}

static void
spb_metric(struct jw *w, const SpbMetric *m, const struct sparkplug_scope *sc, bool *unknown)
{
    const struct sparkplug_metric_def *def = NULL;
    const char *name = m->name;
    uint32_t dt = m->has_datatype ? m->datatype : 0;
    struct spb_val v = { .kind = V_NONE };

    if (name == NULL && m->has_alias) {
        if ((def = sparkplug_scope_by_alias(sc, m->alias)) != NULL)
            name = def->name;
        else
            *unknown = true;
    } else if (name != NULL && !m->has_datatype) {
        def = sparkplug_scope_by_name(sc, name);
    }
    if (!m->has_datatype && def != NULL)
        dt = def->datatype;

    jw_open(w, '{');
    if (name != NULL) { jw_key(w, "name"); jw_str(w, name); }
    if (m->has_alias) { jw_key(w, "alias"); jw_u64(w, m->alias); }
    if (m->has_timestamp) { jw_key(w, "timestamp"); jw_u64(w, m->timestamp); }
    jw_key(w, "type");
    spb_datatype(w, dt);
    jw_key(w, "value");
    switch (m->value_case) {
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_INT_VALUE:
        v.kind = V_U32; v.u = m->int_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_LONG_VALUE:
        v.kind = V_U64; v.u = m->long_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_FLOAT_VALUE:
        v.kind = V_FLOAT; v.f = m->float_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE:
        v.kind = V_DOUBLE; v.d = m->double_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE:
        v.kind = V_BOOL; v.b = m->boolean_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_STRING_VALUE:
        v.kind = V_STRING; v.s = m->string_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BYTES_VALUE:
        v.kind = V_BYTES; v.bytes = m->bytes_value; break;
    case ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_EXTENSION_VALUE:
        v.kind = V_OTHER; break;
    default: break;
    }
    if (m->has_is_null && m->is_null)
        jw_null(w);
    else if (m->value_case == ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_DATASET_VALUE)
        spb_dataset(w, m->dataset_value);
    else if (m->value_case == ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_TEMPLATE_VALUE)
        spb_template(w, m->template_value);
    else
        spb_value(w, dt, &v);
    if (m->has_is_historical && m->is_historical) { jw_key(w, "is_historical"); jw_bool(w, true); }
    if (m->has_is_transient && m->is_transient) { jw_key(w, "is_transient"); jw_bool(w, true); }
    if (m->has_is_null && m->is_null) { jw_key(w, "is_null"); jw_bool(w, true); }
    if (m->metadata != NULL) { jw_key(w, "metadata"); spb_metadata(w, m->metadata); }
    if (m->properties != NULL) { jw_key(w, "properties"); spb_propertyset(w, m->properties); }
    jw_close(w, '}');
}

static void
spb_metrics(struct jw *w, SpbMetric **m, size_t n, const struct sparkplug_scope *sc,
            bool *unknown)
{
    jw_open(w, '[');
    for (size_t i = 0; i < n; i++)
        spb_metric(w, m[i], sc, unknown);
    jw_close(w, ']');
}

/* ---- wire pre-check ---------------------------------------------------------- */

static bool
spb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;

    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Walks one message's wire format, following the fields the descriptor says are
 * messages. False when malformed or nested deeper than SPB_MAX_DEPTH. */
static bool
spb_wire_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
            int depth)
{
    if (depth > SPB_MAX_DEPTH)
        return false;
    while (p < end) {
        uint64_t tag, len;
        const ProtobufCFieldDescriptor *f;
        if (!spb_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
            return false;
        switch (tag & 7) {
        case 0:
            if (!spb_varint(&p, end, &len))
                return false;
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        case 2:
            if (!spb_varint(&p, end, &len) || len > (uint64_t)(end - p))
                return false;
            f = protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !spb_wire_ok(f->descriptor, p, p + len, depth + 1))
                return false;
            p += len;
            break;
        default:
            return false;   /* groups (3, 4) are not in this schema */
        }
    }
    return true;
}

/* ---- the codec ---------------------------------------------------------------- */

/* Splits topic into at most 6 levels; false when it has more or a level is long. */
static size_t
spb_levels(const char *topic, size_t len, const char *lv[6], size_t ll[6])
{
    size_t n = 0, start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i == len || topic[i] == '/') {
            if (n == 6 || i - start > SPB_MAX_LEVEL)
                return 0;
            lv[n] = topic + start;
            ll[n++] = i - start;
            start = i + 1;
        }
    }
    return n;
}

static void
spb_release(struct codec_out *out)
{
    if (out->doc != NULL)
        json_decref(out->doc);
    free(out->owned);
    memset(out, 0, sizeof(*out));
}

/* The host behaviour env asks for. `sluice map` (read_only) never publishes. */
static void
spb_configure(void *state, const struct codec_env *env)
{
    const struct codec_hooks *hk = env->read_only ? NULL : env->hooks;
    struct sparkplug_host host = { hk, 0, 0 };

    if (hk != NULL && hk->publish != NULL && env->cfg != NULL &&
        env->cfg->sparkplug.request_rebirth)
        host.rebirth_interval_ms = env->cfg->sparkplug.rebirth_interval_ms;
    if (hk != NULL && hk->before_write != NULL)
        host.birth_busy_ms = SPARKPLUG_STATE_BIRTH_BUSY_MS;
    sparkplug_state_set_host(state, &host);
}

static int
spb_create(void **state, const struct codec_env *env, struct err *err)
{
    int rc;

    /* Opening writes too (journal mode, CREATE TABLE), and would otherwise wait in
     * vain for a QoS 0 batch that is open on this very thread. */
    if (!env->read_only && env->state_path != NULL && env->hooks != NULL &&
        env->hooks->before_write != NULL)
        env->hooks->before_write(env->hooks->arg);
    rc = sparkplug_state_open((struct sparkplug_state **)state, env->state_path,
                              env->read_only, err);
    if (rc == 0)
        spb_configure(*state, env);
    return rc;
}

/* Publishes the Rebirth NCMD to (group, edge) when the host asks for rebirths and
 * none went to that node within the interval. Best effort: a lost command is
 * repeated by the node's next unnamed DATA after the interval. */
static void
spb_request_rebirth(struct sparkplug_state *st, const char *group, const char *edge)
{
    const struct sparkplug_host *host = sparkplug_state_host(st);
    SpbPayload pl = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
    SpbMetric m = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__INIT;
    SpbMetric *mv[1] = { &m };
    char topic[2 * SPB_MAX_LEVEL + 32];
    uint8_t wire[128];
    uint64_t now;
    size_t n;

    if (host->rebirth_interval_ms <= 0 || host->hooks == NULL || host->hooks->publish == NULL)
        return;
    if (!sparkplug_state_rebirth_due(st, group, edge, clock_mono_ms(),
                                     host->rebirth_interval_ms))
        return;
    now = (uint64_t)clock_wall_ms();
    /* Sparkplug 3.0: an NCMD carries a timestamp and no seq. */
    m.name = (char *)"Node Control/Rebirth";
    m.has_timestamp = true;
    m.timestamp = now;
    m.has_datatype = true;
    m.datatype = DT_BOOLEAN;
    m.value_case = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE;
    m.boolean_value = true;
    pl.has_timestamp = true;
    pl.timestamp = now;
    pl.n_metrics = 1;
    pl.metrics = mv;
    if (org__eclipse__tahu__protobuf__payload__get_packed_size(&pl) > sizeof(wire))
        return;
    n = org__eclipse__tahu__protobuf__payload__pack(&pl, wire);
    snprintf(topic, sizeof(topic), "spBv1.0/%s/NCMD/%s", group, edge);
    if (host->hooks->publish(host->hooks->arg, topic, wire, n) == 0)
        metrics_add(&metrics.sparkplug_rebirths, 1);
}

static void
spb_destroy(void *state)
{
    sparkplug_state_close(state);
}

/* Takes b's text as the value and parses it for templates. */
static int
spb_finish(struct codec_out *out, struct buf *b, struct err *err)
{
    json_error_t jerr;

    if (buf_append_str(b, "", 0) < 0) {
        buf_fini(b);
        return err_set(err, -ENOMEM, "sparkplug: out of memory");
    }
    out->owned = b->data;
    out->value = b->data;
    out->value_len = b->len;
    out->doc = json_loadb(b->data, b->len, JSON_DECODE_ANY, &jerr);
    if (out->doc == NULL)   /* an integer past INT64_MAX: Jansson wants a real */
        out->doc = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL,
                              &jerr);
    if (out->doc == NULL)
        return err_set(err, -EBADMSG, "sparkplug: internal JSON error: %s", jerr.text);
    return 0;
}

static int
spb_state_msg(const void *payload, size_t len, struct codec_out *out, struct err *err)
{
    json_error_t jerr;
    const json_t *ts;

    if ((len == 6 && memcmp(payload, "ONLINE", 6) == 0) ||
        (len == 7 && memcmp(payload, "OFFLINE", 7) == 0)) {
        /* Sparkplug 2.x hosts publish plain text. */
        bool on = len == 6;
        out->value = on ? "{\"online\":true}" : "{\"online\":false}";
        out->value_len = strlen(out->value);
        out->doc = json_pack("{s:b}", "online", on);
        return out->doc != NULL ? 0 : err_set(err, -ENOMEM, "sparkplug: out of memory");
    }
    if (len > CODEC_JSON_MAX_BYTES)
        return err_set(err, -EBADMSG, "sparkplug: STATE payload of %zu bytes is too large", len);
    out->doc = json_loadb(payload, len, JSON_DECODE_ANY, &jerr);
    if (out->doc == NULL)
        return err_set(err, -EBADMSG, "sparkplug: STATE payload is not JSON: %s at byte %d",
                       jerr.text, jerr.position);
    out->value = payload;
    out->value_len = len;
    if ((ts = json_object_get(out->doc, "timestamp")) != NULL && json_is_integer(ts) &&
        json_integer_value(ts) >= 0) {
        out->has_time = true;
        out->time_ms = json_integer_value(ts);
    }
    return 0;
}

static int
spb_decode(void *state, const char *topic, size_t topic_len, const void *payload,
           size_t len, struct codec_out *out, struct err *err)
{
    struct sparkplug_state *st = state;
    const struct sparkplug_scope *sc = NULL;
    const struct codec_hooks *hooks;
    const char *lv[6];
    size_t ll[6], nlv;
    char group[SPB_MAX_LEVEL + 1], edge[SPB_MAX_LEVEL + 1], dev[SPB_MAX_LEVEL + 1];
    enum spb_type type = SPB_STATE;
    SpbPayload *pl;
    struct buf b;
    struct jw w;
    bool unknown = false, gap = false, nobirth = false, device;
    int rc;

    memset(out, 0, sizeof(*out));
    nlv = spb_levels(topic, topic_len, lv, ll);
    if (nlv < 3 || ll[0] != 7 || memcmp(lv[0], "spBv1.0", 7) != 0)
        return err_set(err, -EBADMSG, "sparkplug: topic is not in the spBv1.0 namespace "
                       "(spBv1.0/group/type/edge_node[/device] or spBv1.0/STATE/host)");
    if (nlv == 3 && ll[1] == 5 && memcmp(lv[1], "STATE", 5) == 0) {
        out->nextra = 4;
        out->extra[0] = (struct capture){ "", 0 };
        out->extra[1] = (struct capture){ lv[1], ll[1] };
        out->extra[2] = (struct capture){ lv[2], ll[2] };
        out->extra[3] = (struct capture){ "", 0 };
        return spb_state_msg(payload, len, out, err);
    }
    for (size_t i = 0; i < SPB_STATE; i++) {
        if (ll[2] == strlen(spb_type_names[i]) && memcmp(lv[2], spb_type_names[i], ll[2]) == 0)
            type = (enum spb_type)i;
    }
    device = type >= SPB_DBIRTH && type <= SPB_DCMD;
    if (type == SPB_STATE || nlv != (device ? 5u : 4u) || ll[1] == 0 || ll[3] == 0 ||
        (device && ll[4] == 0))
        return err_set(err, -EBADMSG, "sparkplug: topic \"%.*s\" is not a Sparkplug B "
                       "message topic", (int)(topic_len > 128 ? 128 : topic_len), topic);
    out->nextra = 4;
    out->extra[0] = (struct capture){ lv[1], ll[1] };
    out->extra[1] = (struct capture){ lv[2], ll[2] };
    out->extra[2] = (struct capture){ lv[3], ll[3] };
    out->extra[3] = device ? (struct capture){ lv[4], ll[4] } : (struct capture){ "", 0 };

    if (len > CODEC_SPARKPLUG_MAX_BYTES)
        return err_set(err, -EBADMSG, "sparkplug: payload of %zu bytes is over the %u byte "
                       "limit", len, CODEC_SPARKPLUG_MAX_BYTES);
    if (!spb_wire_ok(&org__eclipse__tahu__protobuf__payload__descriptor, payload,
                     (const uint8_t *)payload + len, 0))
        return err_set(err, -EBADMSG, "sparkplug: %s payload is not a valid Sparkplug B "
                       "protobuf (malformed or nested deeper than %d)",
                       spb_type_names[type], SPB_MAX_DEPTH);
    pl = org__eclipse__tahu__protobuf__payload__unpack(NULL, len, payload);
    if (pl == NULL)
        return err_set(err, -EBADMSG, "sparkplug: %s payload is not a valid Sparkplug B "
                       "protobuf", spb_type_names[type]);

    snprintf(group, sizeof(group), "%.*s", (int)ll[1], lv[1]);
    snprintf(edge, sizeof(edge), "%.*s", (int)ll[3], lv[3]);
    snprintf(dev, sizeof(dev), "%.*s", device ? (int)ll[4] : 0, device ? lv[4] : "");
    /* A NUL inside a level would truncate the scope key; such topics get no state. */
    if (st != NULL && (strlen(group) != ll[1] || strlen(edge) != ll[3] ||
                       (device && strlen(dev) != ll[4])))
        st = NULL;

    if (st != NULL) {
        sparkplug_state_flush(st);
        /* Births first, so the BIRTH's own metrics count as known. */
        if (type == SPB_NBIRTH || type == SPB_DBIRTH) {
            struct sparkplug_metric_def *defs = calloc(pl->n_metrics ? pl->n_metrics : 1,
                                                       sizeof(*defs));
            size_t n = 0;
            if (defs == NULL) {
                org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
                return err_set(err, -ENOMEM, "sparkplug: out of memory");
            }
            for (size_t i = 0; i < pl->n_metrics; i++) {
                const SpbMetric *m = pl->metrics[i];
                if (m->name == NULL)
                    continue;
                defs[n++] = (struct sparkplug_metric_def){ m->name, m->has_alias, m->alias,
                                                           m->has_datatype ? m->datatype : 0 };
            }
            hooks = sparkplug_state_host(st)->hooks;
            if (hooks != NULL && hooks->before_write != NULL)
                hooks->before_write(hooks->arg);   /* see "BIRTH durability" on top */
            rc = sparkplug_state_birth(st, group, edge, dev, defs, n);
            free(defs);
            if (rc == -ENOMEM) {
                org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
                return err_set(err, -ENOMEM, "sparkplug: out of memory");
            }
        }
        /* seq: one counter per edge node over its BIRTH, DATA and device DEATH
         * messages; NDEATH carries none and CMDs come from hosts. */
        if (pl->has_seq && type != SPB_NDEATH && type != SPB_NCMD && type != SPB_DCMD)
            gap = !sparkplug_state_seq(st, group, edge, pl->seq, type == SPB_NBIRTH);
        sc = sparkplug_state_find(st, group, edge, dev);
        nobirth = sc == NULL && (type == SPB_NDATA || type == SPB_DDATA);
    }

    buf_init(&b);
    memset(&w, 0, sizeof(w));
    w.b = &b;
    jw_open(&w, '{');
    if (pl->has_timestamp) {
        jw_key(&w, "timestamp");
        jw_u64(&w, pl->timestamp);
        if (pl->timestamp <= (uint64_t)INT64_MAX) {
            out->has_time = true;
            out->time_ms = (int64_t)pl->timestamp;
        }
    }
    if (pl->has_seq) {
        jw_key(&w, "seq");
        jw_u64(&w, pl->seq);
    }
    if (pl->uuid != NULL) {
        jw_key(&w, "uuid");
        jw_str(&w, pl->uuid);
    }
    jw_key(&w, "metrics");
    spb_metrics(&w, pl->metrics, pl->n_metrics, sc, &unknown);
    if (pl->has_body) {
        jw_key(&w, "body");
        jw_base64(&w, pl->body.data, pl->body.len);
    }
    jw_close(&w, '}');
    org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
    if (w.rc < 0) {
        buf_fini(&b);
        return err_set(err, w.rc, "sparkplug: %s", w.rc == -ENOMEM ? "out of memory" :
                       "payload nested too deeply");
    }
    if ((rc = spb_finish(out, &b, err)) < 0)
        return rc;

    /* Only DATA is judged: a CMD by alias to an unknown node is the sender's issue. */
    if (type != SPB_NDATA && type != SPB_DDATA && type != SPB_DDEATH)
        unknown = false;
    if (st != NULL && (gap || nobirth || unknown)) {
        static const char *const texts[] = {
            "", "unknown-alias", "no-birth", "no-birth", "seq-gap", "seq-gap,unknown-alias",
            "seq-gap,no-birth", "seq-gap,no-birth",
        };
        const char *t = texts[(gap ? 4 : 0) | (nobirth ? 2 : 0) | (unknown ? 1 : 0)];
        if (gap)
            metrics_add(&metrics.sparkplug_seq_gaps, 1);
        if (nobirth || unknown)
            metrics_add(&metrics.sparkplug_unknown_alias, 1);
        out->hdrs[0] = (struct record_header){ "sparkplug.warning", 17, t, strlen(t) };
        out->nhdrs = 1;
        if (type == SPB_NDATA || type == SPB_DDATA)
            spb_request_rebirth(st, group, edge);
    }
    return 0;
}

const struct codec codec_sparkplug = {
    .name = "sparkplug",
    .capture_names = spb_capture_names,
    .ncapture_names = sizeof(spb_capture_names) / sizeof(spb_capture_names[0]),
    .create = spb_create,
    .destroy = spb_destroy,
    .configure = spb_configure,
    .decode = spb_decode,
    .release = spb_release,
};
