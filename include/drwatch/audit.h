/* The audit trail in the log (docs/logging.md): what the FSM recorded while applying an entry
 * (verdicts, operations, steps, holds, maintenance), logged on every node once the entry is
 * committed, with its fields (site=, group=, op=, step=, target=, ...). */
#ifndef DRWATCH_AUDIT_H
#define DRWATCH_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "drwatch/fsm.h"
#include "drwatch/log.h"

struct dw_audit_rec;

struct dw_audit {
    struct dw_audit_rec *v;
    int n, cap;
    int64_t since; /* records stamped earlier (replayed at start, or caught up) log at debug */
};

void dw_audit_init(struct dw_audit *a, int64_t since_ms);
void dw_audit_free(struct dw_audit *a);
/* The dw_fsm_record_cb: keeps the record until dw_audit_end. */
void dw_audit_record(void *a, const struct dw_fsm_record *rec);
/* After dw_fsm_apply: logs what an applied entry recorded; of one that was not applied, only
 * the "rejected" row (the rest was rolled back). */
void dw_audit_end(struct dw_audit *a, bool applied);

/* How one record is logged, for tests: level, msg and fields (pointing into store and rec). */
#define DW_AUDIT_FIELDS 12
struct dw_audit_line {
    enum dw_log_level level;
    char msg[48];
    struct dw_log_field f[DW_AUDIT_FIELDS + 1];
    char store[8][96];
};
void dw_audit_describe(const struct dw_fsm_record *rec, struct dw_audit_line *out);

#endif
