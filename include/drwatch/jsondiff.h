/* Structural differences between two JSON documents, and key-sorted copies (config review). */
#ifndef DRWATCH_JSONDIFF_H
#define DRWATCH_JSONDIFF_H

#include <cJSON.h>

/* Paths join object keys with '.' from the root, without a leading dot
 * ("cluster.election_timeout_ms"); the root itself is "". Arrays whose elements are all objects
 * with a string "id", each id once, are matched by id: "sites[site-a].edges[e1].health_url";
 * when the ids both sides share come in another order, that is one difference at the array's
 * own path, its values arrays of the ids (the order of failover targets matters). Other arrays
 * are matched by index: "expect_status[1]". Values of different JSON types at a path are one
 * difference; numbers compare by value. */

/* old_v/new_v: NULL when the path is absent on that side; valid only during the call. */
typedef void (*dw_json_diff_cb)(void *data, const char *path, const cJSON *old_v,
                                const cJSON *new_v);

/* Calls cb for every leaf difference between a and b (either may be NULL: absent), in a
 * deterministic order (object keys and matched ids sorted); returns how many, or -1 when out
 * of memory. */
int dw_json_diff(const cJSON *a, const cJSON *b, dw_json_diff_cb cb, void *data);

/* Human text, one line per difference: "path: OLD -> NEW", "path: added NEW",
 * "path: removed (was OLD)" (the root's path shows as "(root)"); values unformatted JSON, each
 * cut to 120 chars ending in "..."; at most max_lines lines (no limit when negative), then
 * "... and N more". malloc'd, "" when equal; NULL on OOM. */
char *dw_json_diff_text(const cJSON *a, const cJSON *b, int max_lines);

/* A deep copy with every object's keys sorted by name (recursively); arrays keep their order.
 * NULL on OOM (or when doc is NULL). */
cJSON *dw_json_sorted(const cJSON *doc);

#endif
