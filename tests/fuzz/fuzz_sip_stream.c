/* Fuzzes the SIP-over-TCP/TLS stream framer (dw_sip_frame) as the probe's stream reader uses it:
 * the input arrives in chunks whose sizes come from a hash of the input, each complete message is
 * consumed and parsed with dw_sip_parse. A frame must fit the bytes held and the cap, a wait must
 * not hold more than the cap, and the frames must not depend on how the bytes were split. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/sip_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    size_t *frames; /* start and length of each message, in pairs */
    size_t n, cap;
    bool bad;       /* the framer gave up ... */
    size_t at;      /* ... at this offset; else the bytes left over (a truncated message) */
};

static void record(struct outcome *o, size_t start, size_t len)
{
    if (o->n + 2 > o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->frames = realloc(o->frames, o->cap * sizeof *o->frames);
        if (o->frames == NULL)
            abort();
    }
    o->frames[o->n++] = start;
    o->frames[o->n++] = len;
}

static void parse(const uint8_t *msg, size_t len)
{
    char *copy = malloc(len); /* exact size: ASan sees a read past the frame */
    struct dw_sip_resp r;
    const char *why;

    if (copy == NULL)
        abort();
    memcpy(copy, msg, len);
    if ((dw_sip_parse(copy, len, &r, &why) == DW_SIP_MALFORMED) != (why != NULL))
        abort();
    free(copy);
}

/* Frames what is held after a chunk: buf[off, held) are the bytes not yet consumed, and the
 * allocation ends where they do. Returns false when the framer gave up. */
static bool consume(const char *buf, size_t held, size_t *off, size_t base, bool parse_frames,
                    struct outcome *o)
{
    while (*off < held) {
        size_t avail = held - *off, skip = SIZE_MAX;
        const char *why = NULL;
        long n = dw_sip_frame(buf + *off, avail, &skip, &why);

        if (skip > avail)
            abort();
        if (n < 0) {
            if (why == NULL)
                abort();
            o->bad = true;
            o->at = base + *off + skip;
            return false;
        }
        *off += skip;
        if (n == 0) { /* waits for more: what it holds must stay under the cap */
            if (held - *off > DW_SIP_MAX_MSG)
                abort();
            return true;
        }
        if ((size_t)n > held - *off || n > DW_SIP_MAX_MSG)
            abort();
        if (parse_frames)
            parse((const uint8_t *)buf + *off, (size_t)n);
        record(o, base + *off, (size_t)n);
        *off += (size_t)n;
    }
    return true;
}

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Reads data as the stream does, in chunks of 1..max bytes (max 0: all at once). */
static void read_stream(const uint8_t *data, size_t size, uint64_t seed, size_t max,
                        bool parse_frames, struct outcome *o)
{
    size_t start = 0, got = 0; /* data[start, got) is held */

    while (got < size) {
        size_t chunk = max ? 1 + (size_t)(next(&seed) % max) : size, held, off = 0;
        char *buf;

        got += chunk < size - got ? chunk : size - got;
        held = got - start;
        buf = malloc(held);
        if (buf == NULL)
            abort();
        memcpy(buf, data + start, held);
        if (!consume(buf, held, &off, start, parse_frames, o)) {
            free(buf);
            return;
        }
        start += off;
        free(buf);
    }
    o->at = size - start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole = {0}, split = {0};
    uint64_t seed = 14695981039346656037u; /* FNV-1a: every input has its own split */
    size_t max;

    if (size == 0)
        return 0;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 1099511628211u;
    seed |= 1;
    /* 1 to 64 KiB, but at most ~64 chunks: each chunk copies what is held */
    max = (size_t)1 << ((seed >> 59) % 17);
    if (max < size / 64 + 1)
        max = size / 64 + 1;
    read_stream(data, size, seed, max, true, &split);
    read_stream(data, size, seed, 0, false, &whole);
    if (split.bad != whole.bad || split.at != whole.at || split.n != whole.n ||
        (split.n && memcmp(split.frames, whole.frames, split.n * sizeof *split.frames) != 0))
        abort();
    free(split.frames);
    free(whole.frames);
    return 0;
}
