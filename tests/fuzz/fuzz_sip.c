/* Fuzzes SIP response parsing the way the SIP probe reads a datagram: osip_message_parse, then
 * the same getters it uses to match a response to its probe (src/io/sip.c keeps that static). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <osipparser2/osip_parser.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void trace_sink(const char *fi, int li, osip_trace_level_t level, const char *chfr, va_list ap)
{
    (void)fi, (void)li, (void)level, (void)chfr, (void)ap;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialized;
    const char *buf = (const char *)data;
    osip_message_t *msg = NULL;
    osip_via_t *via = NULL;
    osip_generic_param_t *branch = NULL;
    osip_call_id_t *cid;
    osip_cseq_t *cseq;
    char *cid_str = NULL, *text = NULL;
    size_t text_len;
    char detail[96];

    if (!initialized) {
        initialized = 1;
        parser_init();
        osip_trace_initialize_func(TRACE_LEVEL0, trace_sink);
    }
    /* the probe drops these before parsing */
    if (size == 0 || memchr(buf, '\0', size) != NULL)
        return 0;
    if (osip_message_init(&msg) != 0)
        return 0;
    if (osip_message_parse(msg, buf, size) != 0 || !MSG_IS_RESPONSE(msg))
        goto out;
    cid = osip_message_get_call_id(msg);
    cseq = osip_message_get_cseq(msg);
    if (cid == NULL || cseq == NULL || osip_cseq_get_number(cseq) == NULL ||
        osip_cseq_get_method(cseq) == NULL || osip_message_get_via(msg, 0, &via) < 0 ||
        via == NULL || osip_call_id_to_str(cid, &cid_str) != 0 || cid_str == NULL)
        goto out;
    (void)strcmp(osip_cseq_get_method(cseq), "OPTIONS");
    (void)strtoul(osip_cseq_get_number(cseq), NULL, 10);
    if (osip_via_param_get_byname(via, "branch", &branch) == 0 && branch != NULL &&
        branch->gvalue != NULL)
        (void)strlen(branch->gvalue);
    {
        const char *reason = osip_message_get_reason_phrase(msg);
        snprintf(detail, sizeof detail, "%d %.64s", osip_message_get_status_code(msg),
                 reason ? reason : "");
    }
    /* round trip: what parsed must serialise */
    if (osip_message_to_str(msg, &text, &text_len) == 0)
        osip_free(text);
out:
    osip_free(cid_str);
    osip_message_free(msg);
    return 0;
}
