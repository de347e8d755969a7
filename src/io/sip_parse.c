/* Owns the SIP probe's parsing of peer bytes: stream framing and response fields (no I/O). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <osipparser2/osip_parser.h>
#include <osipparser2/osip_port.h>

#include "drwatch/sip_parse.h"

static const char too_big[] = "over 65536 bytes";
_Static_assert(DW_SIP_MAX_MSG == 65536, "too_big names the limit");

long dw_sip_frame(const char *buf, size_t len, size_t *skip, const char **why)
{
    const char *end;
    size_t hlen, clen = 0;

    /* RFC 3261 §7.5: CRLFs before a message are ignored (keep-alives) */
    for (*skip = 0; *skip < len && (buf[*skip] == '\r' || buf[*skip] == '\n'); (*skip)++)
        ;
    buf += *skip;
    len -= *skip;
    end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        *why = too_big;
        return len > DW_SIP_MAX_MSG ? -1 : 0;
    }
    hlen = (size_t)(end - buf) + 4;
    /* Content-Length (or its compact form "l"); absent means no body */
    for (const char *line = memmem(buf, hlen, "\r\n", 2); line && line < end;
         line = memmem(line + 2, (size_t)(end - line), "\r\n", 2)) {
        const char *h = line + 2, *c;
        size_t nlen;
        if (h >= end)
            break;
        c = memchr(h, ':', (size_t)(end - h));
        if (c == NULL)
            continue;
        nlen = (size_t)(c - h);
        while (nlen > 0 && (h[nlen - 1] == ' ' || h[nlen - 1] == '\t'))
            nlen--;
        if ((nlen == 14 && strncasecmp(h, "Content-Length", 14) == 0) ||
            (nlen == 1 && (h[0] == 'l' || h[0] == 'L'))) {
            const char *d = c + 1;
            while (d < end && (*d == ' ' || *d == '\t'))
                d++;
            if (d >= end || *d < '0' || *d > '9') {
                *why = "bad Content-Length";
                return -1;
            }
            for (; d < end && *d >= '0' && *d <= '9'; d++) {
                clen = clen * 10 + (size_t)(*d - '0');
                if (clen > DW_SIP_MAX_MSG) {
                    *why = too_big;
                    return -1;
                }
            }
            break;
        }
    }
    if (hlen + clen > DW_SIP_MAX_MSG) {
        *why = too_big;
        return -1;
    }
    return len < hlen + clen ? 0 : (long)(hlen + clen);
}

static void osip_sink(const char *fi, int li, osip_trace_level_t level, const char *chfr, va_list ap)
{
    (void)fi, (void)li, (void)level, (void)chfr, (void)ap;
}

static void osip_once(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    parser_init();
    /* the library prints traces to stdout otherwise, which is our log stream */
    osip_trace_initialize_func(TRACE_LEVEL0, osip_sink);
}

/* Empty when src does not fit: a cut value could falsely equal one we sent. */
static void copy_field(char *dst, size_t dstlen, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (n >= dstlen)
        n = 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

enum dw_sip_kind dw_sip_parse(const char *buf, size_t len, struct dw_sip_resp *r,
                              const char **why)
{
    osip_message_t *msg = NULL;
    osip_via_t *via = NULL;
    osip_generic_param_t *branch = NULL;
    osip_call_id_t *cid;
    osip_cseq_t *cseq;
    char *cid_str = NULL;
    enum dw_sip_kind k = DW_SIP_MALFORMED;

    memset(r, 0, sizeof *r);
    *why = NULL;
    if (len == 0 || memchr(buf, '\0', len) != NULL) {
        *why = len == 0 ? "empty" : "NUL byte";
        return DW_SIP_MALFORMED;
    }
    osip_once();
    if (osip_message_init(&msg) != 0) {
        *why = "out of memory";
        return DW_SIP_MALFORMED;
    }
    if (osip_message_parse(msg, buf, len) != 0) {
        *why = "not a SIP message";
        goto out;
    }
    if (!MSG_IS_RESPONSE(msg)) {
        k = DW_SIP_REQUEST;
        goto out;
    }
    r->code = osip_message_get_status_code(msg);
    cid = osip_message_get_call_id(msg);
    cseq = osip_message_get_cseq(msg);
    if (r->code < 100 || r->code > 699)
        *why = "status code out of range";
    else if (cid == NULL || osip_call_id_to_str(cid, &cid_str) != 0 || cid_str == NULL)
        *why = "no Call-ID";
    else if (cseq == NULL || osip_cseq_get_number(cseq) == NULL ||
             osip_cseq_get_method(cseq) == NULL)
        *why = "no CSeq";
    else if (osip_message_get_via(msg, 0, &via) < 0 || via == NULL)
        *why = "no Via";
    if (*why)
        goto out;

    copy_field(r->call_id, sizeof r->call_id, cid_str);
    r->cseq = strtoul(osip_cseq_get_number(cseq), NULL, 10);
    copy_field(r->cseq_method, sizeof r->cseq_method, osip_cseq_get_method(cseq));
    if (osip_via_param_get_byname(via, "branch", &branch) == 0 && branch != NULL)
        copy_field(r->branch, sizeof r->branch, branch->gvalue);
    {
        const char *reason = osip_message_get_reason_phrase(msg);
        size_t n;
        snprintf(r->status, sizeof r->status, "%d %.64s", r->code, reason ? reason : "");
        n = strlen(r->status);
        while (n > 0 && r->status[n - 1] == ' ')
            r->status[--n] = '\0';
        for (size_t i = 0; i < n; i++) /* reason phrases are peer input: keep logs printable */
            if ((unsigned char)r->status[i] < 0x20 || (unsigned char)r->status[i] == 0x7f)
                r->status[i] = '?';
    }
    k = DW_SIP_RESPONSE;
out:
    osip_free(cid_str);
    osip_message_free(msg);
    return k;
}
