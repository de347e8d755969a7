/* Fuzzes the cloud view: the input, parsed by cJSON, is the Genesys edge list and the trunk list
 * (and, when it is an object with "edges" and "trunks", those two). */
#include <stdint.h>
#include <stdlib.h>

#include <cJSON.h>

#include "drwatch/cloudview.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ids[] = {"e1", "e2", "e1", "", "3f1c9b2e-8a4d-4c1e-9f7a-1b2c3d4e5f60"};
#define N_IDS ((int)(sizeof ids / sizeof ids[0]))

static void derive(const cJSON *edges, const cJSON *trunks)
{
    struct dw_cloud_edge out[N_IDS];
    int ignored = 0;

    if (dw_cloudview_derive(edges, trunks, ids, N_IDS, out, &ignored) == 0 && ignored < 0)
        abort();
    for (int i = 0; i < N_IDS; i++)
        if (dw_cloud_why_name(out[i].why) == NULL)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    cJSON *empty = cJSON_CreateArray();

    if (empty == NULL)
        abort();
    if (j != NULL) {
        derive(j, empty);
        derive(empty, j);
        derive(j, j);
        derive(cJSON_GetObjectItemCaseSensitive(j, "edges"),
               cJSON_GetObjectItemCaseSensitive(j, "trunks"));
    }
    cJSON_Delete(j);
    cJSON_Delete(empty);
    return 0;
}
