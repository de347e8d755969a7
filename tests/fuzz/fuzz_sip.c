/* Fuzzes SIP response parsing as the SIP probe reads a datagram: dw_sip_parse, the very function
 * src/io/sip.c matches responses with. A refusal must say why; a response must come out with a
 * valid code, terminated fields and a printable status line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/sip_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_terminated(const char *field, size_t size)
{
    if (memchr(field, '\0', size) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dw_sip_resp r;
    const char *why;
    enum dw_sip_kind k = dw_sip_parse((const char *)data, size, &r, &why);

    if ((k == DW_SIP_MALFORMED) != (why != NULL))
        abort();
    if (k != DW_SIP_RESPONSE)
        return 0;
    if (r.code < 100 || r.code > 699)
        abort();
    check_terminated(r.call_id, sizeof r.call_id);
    check_terminated(r.cseq_method, sizeof r.cseq_method);
    check_terminated(r.branch, sizeof r.branch);
    check_terminated(r.status, sizeof r.status);
    if (strtol(r.status, NULL, 10) != r.code)
        abort();
    for (const char *c = r.status; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            abort();
    return 0;
}
