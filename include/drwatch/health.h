/* Health states shared by the detector, the site verdicts and the FSM. */
#ifndef DRWATCH_HEALTH_H
#define DRWATCH_HEALTH_H

enum dw_health { DW_UNKNOWN = 0, DW_UP = 1, DW_DOWN = 2 };

/* "unknown", "up", "down" */
const char *dw_health_name(enum dw_health h);
/* Returns -1 for anything else. */
int dw_health_parse(const char *s, enum dw_health *out);

#endif
