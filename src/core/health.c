#include <string.h>

#include "drwatch/health.h"

const char *dw_health_name(enum dw_health h)
{
    switch (h) {
    case DW_UP:
        return "up";
    case DW_DOWN:
        return "down";
    case DW_UNKNOWN:
        break;
    }
    return "unknown";
}

int dw_health_parse(const char *s, enum dw_health *out)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "up") == 0)
        *out = DW_UP;
    else if (strcmp(s, "down") == 0)
        *out = DW_DOWN;
    else if (strcmp(s, "unknown") == 0)
        *out = DW_UNKNOWN;
    else
        return -1;
    return 0;
}
