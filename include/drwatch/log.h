/* Logging for the I/O layers and the daemon (the core library never logs).
 * One line per event on stderr: "2026-11-25T17:00:00.123Z INFO  component: message". */
#ifndef DRWATCH_LOG_H
#define DRWATCH_LOG_H

enum dw_log_level { DW_LOG_DEBUG = 0, DW_LOG_INFO, DW_LOG_WARN, DW_LOG_ERROR };

void dw_log_set_level(enum dw_log_level min);
void dw_log(enum dw_log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
