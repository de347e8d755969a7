/* A growing string for views and reports built piece by piece. */
#ifndef DRWATCH_STRBUF_H
#define DRWATCH_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialise; p is malloc'd (free it). After a failed allocation it stays as it was, with
 * oom set, and further adds do nothing. */
struct dw_strbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

void dw_strbuf_add(struct dw_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room for extra more bytes (and the terminator), so p is never NULL after it succeeds. */
void dw_strbuf_reserve(struct dw_strbuf *b, size_t extra);
/* Appends n bytes of s. */
void dw_strbuf_put(struct dw_strbuf *b, const char *s, size_t n);

#endif
