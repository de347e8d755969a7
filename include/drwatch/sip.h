/* SIP OPTIONS probes over UDP, TCP and TLS (RFC 3261 §11): a fresh branch, Call-ID, tags and
 * CSeq per request; the response is parsed with libosip2 and matched by Call-ID, CSeq and the
 * top Via branch. Malformed or unmatched datagrams are counted and dropped, never trusted. */
#ifndef DRWATCH_SIP_H
#define DRWATCH_SIP_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"

struct dw_sip;

/* ok: a final response whose code is alive per the spec's alive_codes arrived in time.
 * code: the final status code (0 when none); detail: short text for logs ("timeout",
 * "503 Service Unavailable", "connect: connection refused"), valid during the callback. */
typedef void (*dw_sip_cb)(void *data, bool ok, int code, const char *detail);

/* One client per loop; UDP probes share one socket bound to an ephemeral port on 0.0.0.0 (or
 * local_ip when given, e.g. "127.0.0.1"). */
int dw_sip_init(struct dw_sip **out, uv_loop_t *loop, const char *local_ip, char *errmsg, size_t errlen);
/* In-flight probes complete with ok=false "closed" before this returns; memory is freed after
 * the handles close. */
void dw_sip_close(struct dw_sip *s);

/* Sends one OPTIONS to spec->address over spec->transport and waits spec->timeout_ms. TCP and TLS
 * connect per probe (fresh connection: it measures the real path). Returns 0, or -1 with cb never
 * called. spec must stay valid until cb. */
/* Loads a TLS spec's CA file and client certificate now (at start, not on the loop at the first
 * handshake): later probes with the same settings use the loaded store. 0 for non-TLS specs. */
int dw_sip_prepare(struct dw_sip *s, const struct dw_probe_spec *spec, char *errmsg,
                   size_t errlen);
int dw_sip_probe(struct dw_sip *s, const struct dw_probe_spec *spec, dw_sip_cb cb, void *data);

struct dw_sip_stats {
    uint64_t sent, answered, timeouts, malformed, unmatched, transport_errors;
};
void dw_sip_stats(const struct dw_sip *s, struct dw_sip_stats *out);

#endif
