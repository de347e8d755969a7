/* Fuzzes the config parser: any bytes in, either a valid config or a list of errors out. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fuzzed paths are never opened: a made-up filesystem answers, so the file rules still run.
 * Paths naming "bad" fail; every secret is distinct and long enough. */
static int fake_readable(const char *path, char *msg, size_t len)
{
    if (!strstr(path, "bad"))
        return 0;
    snprintf(msg, len, "cannot read \"%s\": fake", path);
    return -1;
}

static bool fake_exists(const char *path)
{
    return strstr(path, "bad") != NULL;
}

static int fake_secret(const char *path, char *out, size_t out_len, char *msg, size_t len)
{
    if (fake_readable(path, msg, len) != 0)
        return -1;
    snprintf(out, out_len, "secret-for-%s", path);
    return 0;
}

static const struct dw_config_files fake_files = {
    .readable = fake_readable,
    .directory = fake_readable,
    .exists = fake_exists,
    .read_secret = fake_secret,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* both are large: keep them off the fuzzer's stack */
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_config_errors *errs = calloc(1, sizeof *errs);

    if (cfg == NULL || errs == NULL)
        abort();
    if (dw_config_parse_with((const char *)data, size, &fake_files, cfg, errs) == 0) {
        /* the cluster part of a valid file is a valid committed document */
        cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
        cJSON *cluster = dw_config_cluster_doc(doc);
        char *text = cluster ? cJSON_PrintUnformatted(cluster) : NULL;
        dw_config_free(cfg);
        if (text && dw_config_parse_cluster(text, strlen(text), cfg, errs) != 0)
            abort();
        dw_config_free(cfg);
        free(text);
        cJSON_Delete(cluster);
        cJSON_Delete(doc);
    } else if (errs->n < 1 || errs->n > DW_CFG_MAX_ERRORS) {
        abort(); /* a refusal always says why */
    }
    free(errs);
    free(cfg);
    return 0;
}
