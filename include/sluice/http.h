/* http.h - the metrics and health endpoints, and the client `sluice health` uses.
 *
 * The server is libmicrohttpd with its own internal polling thread on http.listen:
 *   /metrics  Prometheus text exposition 0.0.4 of struct metrics plus spool gauges
 *   /healthz  200 "ok" while the process serves requests (liveness)
 *   /readyz   200 when MQTT is connected and the spool takes appends, else 503;
 *             the body is {"mqtt":"connected|disconnected","kafka":"...","spool":"ok|full|failing"}
 * Its thread owns nothing the bridge uses: it reads the atomic counters, copies of
 * the route and lane names (swapped under a mutex by http_set_config), and its own
 * read-only spool handle for the spool gauges (see http.c for why). */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>

struct buf;
struct config;
struct err;
struct http;

/* Binds cfg->http_listen ("host:port"; port 0 picks a free one, logged) and starts the
 * server thread. cfg is borrowed: the listen address, spool path and names are copied.
 * With http_listen "" it sets *out = NULL and returns 0 (endpoints off). Errors: the
 * bind's -errno (-EADDRINUSE...) or -ENOTSUP (built without libmicrohttpd), with a
 * sentence naming the address. Returns owned *out: stop and free with http_stop. */
int  http_start(struct http **out, const struct config *cfg, struct err *err);
/* Main thread (SIGHUP): takes the route and lane names of cfg (borrowed, copied).
 * A changed http.listen takes effect only after a restart (logged). NULL h is fine. */
void http_set_config(struct http *h, const struct config *cfg);
/* Stops the thread (an in-flight request completes), closes the listen socket and
 * the spool handle, frees h. NULL is fine. */
void http_stop(struct http *h);

/* The URL of path on the server listening at listen ("host:port"), for a client on
 * the same host: wildcard hosts (0.0.0.0, ::) become loopback. Writes at most outlen
 * bytes. 0, -EINVAL (listen is "", port 0 or not host:port) or -ENAMETOOLONG. */
int  http_local_url(const char *listen, const char *path, char *out, size_t outlen);
/* GET url ("http://HOST[:PORT]/PATH", HOST a name, an IPv4 address or [IPv6]) over a
 * plain socket, HTTP/1.0, within timeout_ms overall. Returns 0 with the status code
 * and the body appended to body (at most 64 KiB kept), or -errno with a sentence. */
int  http_get(const char *url, int timeout_ms, int *status, struct buf *body,
              struct err *err);

#endif
