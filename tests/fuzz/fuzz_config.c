/* Fuzzes the config parser: any bytes in, either a valid config or a list of errors out. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "drwatch/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* both are large: keep them off the fuzzer's stack */
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);

    if (cfg == NULL || errs == NULL)
        abort();
    if (dw_config_parse((const char *)data, size, cfg, errs) == 0) {
        dw_config_topology_digest(cfg);
        dw_config_free(cfg);
    } else if (errs->n < 1 || errs->n > DW_CFG_MAX_ERRORS) {
        abort(); /* a refusal always says why */
    }
    free(errs);
    free(cfg);
    return 0;
}
