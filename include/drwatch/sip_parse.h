/* The SIP probe's reading of peer bytes, with no I/O: framing a TCP/TLS stream into messages and
 * parsing a response into what a probe is matched on. src/io/sip.c and the fuzzers share it. */
#ifndef DRWATCH_SIP_PARSE_H
#define DRWATCH_SIP_PARSE_H

#include <stddef.h>

/* The largest message accepted, headers and body together. */
#define DW_SIP_MAX_MSG (64 * 1024)

/* The first message of the bytes received so far on a stream (RFC 3261 §18.3). *skip: the CRLF
 * keep-alives before it (§7.5), to drop whatever the result. Returns the message's length after
 * them (headers and Content-Length body), 0 when more bytes are needed, or -1 when the stream
 * cannot be framed: *why says why. */
long dw_sip_frame(const char *buf, size_t len, size_t *skip, const char **why);

enum dw_sip_kind { DW_SIP_MALFORMED = -1, DW_SIP_REQUEST, DW_SIP_RESPONSE };

/* What a probe checks in a response. A field too long for its buffer is left empty: it cannot be
 * one the probe sent. */
struct dw_sip_resp {
    int code;                 /* 100..699 */
    char call_id[128];
    unsigned long cseq;       /* the CSeq number as strtoul reads it */
    char cseq_method[16];
    char branch[64];          /* of the top Via; empty when it has none */
    char status[80];          /* "code reason", printable, for logs */
};

/* Parses one message (a datagram or a framed stream message) with libosip2. A response with a
 * status code, Call-ID, CSeq and Via fills *r; a request only says so. DW_SIP_MALFORMED: *why
 * says why. */
enum dw_sip_kind dw_sip_parse(const char *buf, size_t len, struct dw_sip_resp *r,
                              const char **why);

#endif
