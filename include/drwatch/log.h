/* Logging for the I/O layers and the daemon (the core library never logs).
 * One line per event (docs/logging.md): logfmt on stderr,
 *   ts=2026-11-25T17:00:00.123Z level=info component=fsm msg="site DOWN" site=site-a
 * or journald's native fields when stderr is the journal. */
#ifndef DRWATCH_LOG_H
#define DRWATCH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum dw_log_level { DW_LOG_DEBUG = 0, DW_LOG_INFO, DW_LOG_WARN, DW_LOG_ERROR };
enum dw_log_format { DW_LOG_FORMAT_AUTO = 0, DW_LOG_FORMAT_LOGFMT, DW_LOG_FORMAT_JOURNAL };

/* A structured field: a string (str, NULL skips the field) or, with is_num, a number. Lists end
 * with DW_LOG_END. */
struct dw_log_field {
    const char *key;
    const char *str;
    long long num;
    bool is_num;
};
#define DW_LS(k, v) ((struct dw_log_field){.key = (k), .str = (v)})
#define DW_LI(k, v) ((struct dw_log_field){.key = (k), .num = (long long)(v), .is_num = true})
#define DW_LOG_END ((struct dw_log_field){.key = NULL})
#define DW_LOG_FIELDS(...) ((const struct dw_log_field[]){__VA_ARGS__, DW_LOG_END})

void dw_log_set_level(enum dw_log_level min);
enum dw_log_level dw_log_level(void);
/* "debug", "info", "warn", "error"; 0 or -1 when s is none of them. */
int dw_log_parse_level(const char *s, enum dw_log_level *out);
const char *dw_log_level_name(enum dw_log_level lvl);
/* "auto", "logfmt", "journal"; 0 or -1. */
int dw_log_parse_format(const char *s, enum dw_log_format *out);
const char *dw_log_format_name(enum dw_log_format f);
/* Chooses the writer: auto means the journal when stderr is connected to it; with no journald
 * running, logfmt on stderr (and a warning). */
void dw_log_set_format(enum dw_log_format f);
enum dw_log_format dw_log_format(void);      /* as set */
bool dw_log_to_journal(void);                 /* what auto resolved to */

/* msg= the formatted text. */
void dw_log(enum dw_log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with fields: dw_log_kv(DW_LOG_INFO, "fsm", DW_LOG_FIELDS(DW_LS("site", id),
 * DW_LI("op", op)), "site %s", "DOWN"). */
void dw_log_kv(enum dw_log_level lvl, const char *component, const struct dw_log_field *fields,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The pure parts, for tests. */
#define DW_LOG_LINE_MAX 2048
/* One logfmt line with its newline into buf (cap >= 256); returns its length. ts_ms: Unix ms.
 * A message too long for the line is cut (ending in "...") with its quoting intact; fields
 * are kept whole where they fit. */
size_t dw_logfmt_line(char *buf, size_t cap, int64_t ts_ms, enum dw_log_level lvl,
                      const char *component, const struct dw_log_field *fields, const char *msg);
/* Appends key=value to buf at *len, quoting and escaping value when it needs it; false (buf
 * unchanged) when it does not fit. */
bool dw_logfmt_pair(char *buf, size_t cap, size_t *len, const char *key, const char *value);
/* Whether to write to the journal: format, the JOURNAL_STREAM variable (or NULL) and stderr's
 * device and inode (have_stat false when fstat failed). */
bool dw_log_journal_decide(enum dw_log_format f, const char *journal_stream, bool have_stat,
                           unsigned long long dev, unsigned long long ino);
/* The journal fields (MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=drwatchd, DRWATCH_COMPONENT=,
 * DRWATCH_<KEY>= per field) as iovecs pointing into buf; returns how many (at most max). */
int dw_log_journal_fields(struct iovec *iov, int max, char *buf, size_t cap,
                          enum dw_log_level lvl, const char *component,
                          const struct dw_log_field *fields, const char *msg);

#endif
