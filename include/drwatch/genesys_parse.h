/* Reading the Genesys Cloud API's answers: body bytes in, plain values and a reason out; no I/O. */
#ifndef DRWATCH_GENESYS_PARSE_H
#define DRWATCH_GENESYS_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

/* Numbers from Genesys: true and *out set when v is a JSON number holding an integer in
 * [min, max]. Checked before any cast (casting 1e300 or inf to an integer is undefined); every
 * number read from a response goes through here, and garbage counts as a bad response. */
bool dw_json_int_in(const cJSON *v, long long min, long long max, long long *out);

enum dw_gparse_rc {
    DW_GPARSE_OK = 0,
    DW_GPARSE_BAD,   /* garbage from Genesys; why says what (never empty) */
    DW_GPARSE_NOMEM, /* why is "out of memory" */
};

/* Room for any why a parser writes. */
#define DW_GPARSE_WHY_MAX 128
/* Token lifetimes are 300 s to 48 h; a week leaves room without trusting nonsense. */
#define DW_GPARSE_TOKEN_MAX_TTL_S (7 * 86400)

/* Bodies are read as C strings, as the client always read them: a NUL ends one. */

/* POST oauth/token 200: access_token a non-empty string, expires_in an integer in
 * [1, DW_GPARSE_TOKEN_MAX_TTL_S]. On OK *token is a copy the caller wipes and frees; the
 * parser wipes every other copy it made, whatever the result. */
enum dw_gparse_rc dw_gparse_token(const char *body, size_t len, char **token,
                                  long long *expires_in, char *why, size_t whylen);

struct dw_gparse_settings {
    long long version; /* [0, INT_MAX] */
    int instance;      /* properties.trunk_enabled.value.instance: 1, 0, -1 if not a boolean */
    char *put_body;    /* NULL when instance is the wanted value; else the document with it set,
                          creating what is missing, for the PUT (the caller frees it) */
};

/* GET trunkbasesettings/{id} 2xx: an object, properties (if any) an object, version required. */
enum dw_gparse_rc dw_gparse_settings(const char *body, size_t len, bool wanted,
                                     struct dw_gparse_settings *out, char *why, size_t whylen);

/* PUT trunkbasesettings/{id} 2xx: an object whose version, if any, is in [0, INT_MAX];
 * *version is -1 when it has none. */
enum dw_gparse_rc dw_gparse_put_answer(const char *body, size_t len, long long *version,
                                       char *why, size_t whylen);

#define DW_GPARSE_FIRST_BAD_MAX 128

struct dw_gparse_trunks {
    int n_trunks;         /* object entities whose state is not "deleted" */
    int n_ok;             /* of those, inService:true and connectedStatus.connected:true */
    char first_bad[DW_GPARSE_FIRST_BAD_MAX]; /* "<id> not in service|not connected" of the
                                                first other one; "" if none */
    long long page_count; /* [0, INT_MAX], 1 when absent */
};

/* One page of GET trunks?trunkBase.id=: entities an array, pageCount optional. */
enum dw_gparse_rc dw_gparse_trunks_page(const char *body, size_t len,
                                        struct dw_gparse_trunks *out, char *why, size_t whylen);

/* One page of a listing (edges, trunks): entities an array, pageCount optional ([0, INT_MAX],
 * 1 when absent). On OK *entities is the page's array, the caller's; NULL otherwise. */
enum dw_gparse_rc dw_gparse_list_page(const char *body, size_t len, cJSON **entities,
                                      long long *page_count, char *why, size_t whylen);

/* An error body's " code: message", or the OAuth " error: error_description", or either one
 * alone; "" when it has neither. Always NUL-terminated within outlen (> 0). */
void dw_gparse_error_text(const char *body, size_t len, char *out, size_t outlen);

/* A response header line (no terminator needed): the seconds of "Retry-After: N" (the
 * delta-seconds form, at most DW_GPARSE_RETRY_AFTER_MAX), or -1 for any other header or form (an
 * HTTP-date counts as absent: the client then waits its own back-off). */
#define DW_GPARSE_RETRY_AFTER_MAX 1000000
int dw_gparse_retry_after(const char *line, size_t n);
/* The same for any "name: N" header line (name matched without case): N, clamped to
 * DW_GPARSE_RETRY_AFTER_MAX, or -1. The client reads inin-ratelimit-allowed, -count and -reset
 * (seconds until the rate window resets) with it. */
long dw_gparse_header_num(const char *line, size_t n, const char *name);

#endif
