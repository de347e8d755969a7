/* Fuzzes the peer channel's POST /v1/propose body check, dw_peer_check_proposal (what follows the
 * HTTP layer and the credential check). Input: byte 0 picks the authenticated sender (low two
 * bits, 1..4) and this node (next two bits); the rest is the body.
 * Checked: an accepted body is a valid observe entry naming the sender; a refused one gets 400
 * (not a valid entry) or 403 (another type, or another node's observation) with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/entry.h"
#include "drwatch/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dw_peer_verdict v;
    char err[256];

    if (size < 1)
        return 0;
    uint64_t sender = 1 + (data[0] & 3), self = 1 + ((data[0] >> 2) & 3);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    memset(&v, 0xa5, sizeof v); /* every field must be set */
    dw_peer_check_proposal(body, len, sender, self, &v);
    char *stamped = dw_entry_stamp(body, len, 0, self, err, sizeof err);
    cJSON *e = cJSON_ParseWithLength(body, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(e, "node");
    int observe = cJSON_IsString(type) && strcmp(type->valuestring, "observe") == 0;
    int own = cJSON_IsNumber(node) && node->valuedouble == (double)sender;

    int reason = memchr(v.reason, '\0', sizeof v.reason) != NULL && v.reason[0] != '\0';
    int ok;

    if (v.status == 0)
        ok = !v.identity && stamped != NULL && observe && own;
    else if (v.status == 400)
        ok = reason && !v.identity && stamped == NULL;
    else if (v.status == 403 && v.identity)
        ok = reason && stamped != NULL && observe && !own;
    else
        ok = reason && v.status == 403 && stamped != NULL && !observe;
    if (!ok)
        abort();
    free(stamped);
    cJSON_Delete(e);
    return 0;
}
