/* Owns the FSM's lifetime: open, close, snapshot, restore, rewind and migrating old snapshots. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_internal.h"

int fsm_ensure_config_rows(struct dw_fsm *f)
{
    for (int i = 0; i < f->cfg->n_sites; i++) {
        sqlite3_stmt *s = fsm_stmt(f, ST_SITE_ENSURE);

        fsm_bind_text(s, 1, f->cfg->sites[i].id);
        if (fsm_run(s) != 0)
            return -1;
    }
    for (int i = 0; i < f->cfg->n_groups; i++) {
        sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_ENSURE);

        fsm_bind_text(s, 1, f->cfg->groups[i].id);
        if (fsm_run(s) != 0)
            return -1;
    }
    return 0;
}

int fsm_open_memory_db(sqlite3 **db, char *errmsg, size_t errlen)
{
    if (sqlite3_open_v2(":memory:", db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fsm_set_msg(errmsg, errlen, "sqlite open: %s", *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

int dw_fsm_open(struct dw_fsm **out, const struct dw_config *seed, char *errmsg, size_t errlen)
{
    struct dw_fsm *f = calloc(1, sizeof *f);

    *out = NULL;
    if (f == NULL) {
        fsm_set_msg(errmsg, errlen, "out of memory");
        return -1;
    }
    if (fsm_config_init(f, seed) != 0) {
        fsm_set_msg(errmsg, errlen, "out of memory");
        goto fail;
    }
    if (fsm_open_memory_db(&f->db, errmsg, errlen) != 0)
        goto fail;
    if (sqlite3_exec(f->db, fsm_schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        fsm_set_msg(errmsg, errlen, "schema: %s", sqlite3_errmsg(f->db));
        goto fail;
    }
    if (fsm_prepare_all(f->db, f->st, errmsg, errlen) != 0)
        goto fail;
    if (fsm_ensure_config_rows(f) != 0) {
        fsm_set_msg(errmsg, errlen, "initial rows: %s", sqlite3_errmsg(f->db));
        goto fail;
    }
    fsm_load_counters(f);
    *out = f;
    return 0;
fail:
    dw_fsm_close(f);
    return -1;
}

void dw_fsm_close(struct dw_fsm *f)
{
    if (f == NULL)
        return;
    fsm_finalize_all(f->st);
    sqlite3_close(f->db);
    fsm_config_close(f);
    free(f);
}

int dw_fsm_snapshot(struct dw_fsm *f, void **buf, size_t *len)
{
    sqlite3_int64 size = 0;
    unsigned char *data = sqlite3_serialize(f->db, "main", &size, 0);

    if (data == NULL)
        return -1;
    *buf = data;
    *len = (size_t)size;
    return 0;
}

/* Snapshots of schema 1 (before the Genesys signal) gain the signal columns and the cloud
 * table; in schema 1 the site verdict was the probe verdict. Schema 2 (before the replicated
 * config) gains the empty config table: the leader commits its file's cluster part as version 1.
 * Schema 3 (before failback, maintenance, manual operations and the event journal) gains their
 * columns and tables; a hold then was always after a failure, and events from before were never
 * journaled, so none is notified. Idempotent: a schema 4 database passes untouched. */
static int migrate(sqlite3 *db)
{
    static const char v1_to_v2[] =
        "BEGIN;"
        "ALTER TABLE sites ADD COLUMN probe_verdict TEXT NOT NULL DEFAULT 'unknown';"
        "ALTER TABLE sites ADD COLUMN cloud_verdict TEXT NOT NULL DEFAULT 'unknown';"
        "UPDATE sites SET probe_verdict = verdict;"
        "CREATE TABLE cloud(edge TEXT PRIMARY KEY, state TEXT NOT NULL, ts INTEGER NOT NULL);"
        "UPDATE meta SET value = 2 WHERE key = 'schema';"
        "COMMIT;";
    static const char v2_to_v3[] =
        "BEGIN;"
        "CREATE TABLE config(version INTEGER PRIMARY KEY, doc TEXT NOT NULL, ts INTEGER NOT NULL,"
        " by_operator TEXT NOT NULL, reason TEXT NOT NULL);"
        "UPDATE meta SET value = 3 WHERE key = 'schema';"
        "COMMIT;";
    static const char v3_to_v4[] =
        "BEGIN;"
        "ALTER TABLE groups ADD COLUMN hold_reason TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE groups ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE groups ADD COLUMN fb_failures INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE groups ADD COLUMN fb_retry_at INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE groups ADD COLUMN resync INTEGER NOT NULL DEFAULT 0;"
        "UPDATE groups SET hold_reason = 'failed' WHERE hold <> 0;"
        "ALTER TABLE operations ADD COLUMN operator TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE operations ADD COLUMN request TEXT NOT NULL DEFAULT '';"
        "CREATE TABLE maintenance(scope TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL,"
        " owner TEXT NOT NULL, since INTEGER NOT NULL, expires INTEGER NOT NULL,"
        " PRIMARY KEY(scope, id));"
        "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
        " grp TEXT NOT NULL, summary TEXT NOT NULL);"
        "CREATE TABLE deliveries(event INTEGER NOT NULL, channel TEXT NOT NULL,"
        " ts INTEGER NOT NULL, PRIMARY KEY(event, channel));"
        "UPDATE meta SET value = 4 WHERE key = 'schema';"
        "COMMIT;";
    sqlite3_stmt *s;
    int64_t schema = -1;

    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        schema = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    if (schema == 1 && sqlite3_exec(db, v1_to_v2, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (schema <= 2 && sqlite3_exec(db, v2_to_v3, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (schema <= 3 && sqlite3_exec(db, v3_to_v4, NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    /* older snapshots lack the previous stamp: the last applied time stands in for it */
    if (sqlite3_exec(db, "INSERT OR IGNORE INTO meta(key, value) SELECT 'last_stamp', value"
                         " FROM meta WHERE key = 'last_ts'", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    return 0; /* the caller checks the version */
}

/* The snapshot is loaded into a new connection first, so a bad one leaves the state intact. */
int dw_fsm_restore(struct dw_fsm *f, const void *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st[ST_COUNT] = {0};
    unsigned char *copy;
    struct dw_fsm probe;
    struct dw_config *cfg = NULL;
    int64_t schema;

    if (buf == NULL || len == 0 || fsm_open_memory_db(&db, NULL, 0) != 0)
        return -1;
    copy = sqlite3_malloc64(len);
    if (copy == NULL) {
        sqlite3_close(db);
        return -1;
    }
    memcpy(copy, buf, len);
    /* with FREEONCLOSE, sqlite owns copy from here on, even when this fails */
    if (sqlite3_deserialize(db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
                            SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
            SQLITE_OK ||
        migrate(db) != 0 || fsm_prepare_all(db, st, NULL, 0) != 0) {
        sqlite3_close(db);
        return -1;
    }
    probe = *f;
    probe.db = db;
    memcpy(probe.st, st, sizeof st);
    if (fsm_meta_get(&probe, "schema", &schema) != 0 || schema != FSM_SCHEMA_VERSION ||
        fsm_config_read(db, &cfg) != 0) {
        fsm_finalize_all(st);
        sqlite3_close(db);
        return -1;
    }
    probe.cfg = cfg ? cfg : f->cfg;
    if (fsm_ensure_config_rows(&probe) != 0) {
        fsm_config_discard(cfg);
        fsm_finalize_all(st);
        sqlite3_close(db);
        return -1;
    }
    /* the config first: it can fail (memory), the swap below cannot */
    if (fsm_config_adopt(f, cfg) != 0) {
        fsm_finalize_all(st);
        sqlite3_close(db);
        return -1;
    }
    fsm_finalize_all(f->st);
    sqlite3_close(f->db);
    f->db = db;
    memcpy(f->st, st, sizeof st);
    fsm_load_counters(f);
    return 0;
}

int dw_fsm_rewind(struct dw_fsm *f, const void *buf, size_t len)
{
    unsigned char *copy;
    struct dw_config *cfg = NULL;
    int64_t schema;

    if (buf == NULL || len == 0 || (copy = sqlite3_malloc64(len)) == NULL)
        return -1;
    memcpy(copy, buf, len);
    /* no statement may hold a read transaction open on the database being replaced */
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_reset(f->st[i]);
    /* the statements prepared on the old database are prepared again when next run */
    if (sqlite3_deserialize(f->db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
                            SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
            SQLITE_OK ||
        fsm_meta_get(f, "schema", &schema) != 0 || schema != FSM_SCHEMA_VERSION ||
        fsm_config_read(f->db, &cfg) != 0 || fsm_config_adopt(f, cfg) != 0)
        return -1;
    fsm_load_counters(f);
    f->error[0] = '\0';
    return 0;
}
