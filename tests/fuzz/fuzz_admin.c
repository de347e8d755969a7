/* Fuzzes the admin socket's byte stream: dw_admin_lines (splitting, buffering, the line limit)
 * and dw_admin_request, fed in chunks, with a handler that defers some requests.
 * Input: byte 0 picks the chunking, byte 1 the line limit (< 0x80: DW_ADMIN_MAX_LINE, else a
 * small one so over-long lines are reachable), the rest is what the client sends.
 * Checked: the lines handed over are exactly the stream's complete non-empty lines, in order,
 * none while a request waits for its answer and never an unfinished one; one reply per request,
 * in order, each a single line; errors name what is wrong; the buffer stays bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond))                                                                          \
            abort();                                                                          \
    } while (0)

struct session {
    struct dw_admin_lines in;
    const char *stream; /* all the client sends; fed..size is not sent yet */
    size_t size, fed;
    size_t tail;        /* where the line in progress (after the last '\n' sent) begins */
    size_t expect;      /* where the next line the handler should see begins */
    uint32_t rng;
    unsigned requests;  /* lines handed over */
    unsigned replies;   /* replies sent, in request order */
    int waiting;        /* a deferred request is not answered yet */
    int closed;         /* an over-long line was refused: the connection is closing */
};

static uint32_t next_rand(struct session *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 17;
    s->rng ^= s->rng << 5;
    return s->rng;
}

/* A reply goes out as one line: nothing in it may split it in two. */
static void send_reply(struct session *s, cJSON *reply)
{
    char *text = cJSON_PrintUnformatted(reply);
    CHECK(text != NULL && strchr(text, '\n') == NULL);
    cJSON_free(text);
    cJSON_Delete(reply);
    s->replies++;
    CHECK(s->replies == s->requests);
}

static void send_error(struct session *s, const char *error)
{
    cJSON *r = cJSON_CreateObject();
    CHECK(r != NULL);
    cJSON_AddFalseToObject(r, "ok");
    cJSON_AddStringToObject(r, "error", error);
    send_reply(s, r);
}

/* Judged from the line afresh: an accepted request is one object, nothing after it, with a
 * string cmd and v absent or 1; an error names a field that is really wrong. */
static void check_verdict(const char *line, size_t len, const char *error)
{
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(line, len, &end, false);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "v");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    size_t rest = req != NULL ? len - (size_t)(end - line) : 0;

    while (rest > 0 && (unsigned char)line[len - rest] <= ' ')
        rest--;
    int v_ok = v == NULL || (cJSON_IsNumber(v) && v->valuedouble == DW_ADMIN_VERSION);

    if (error == NULL)
        CHECK(cJSON_IsObject(req) && rest == 0 && v_ok && cJSON_IsString(cmd));
    else if (strncmp(error, "request: ", 9) == 0)
        CHECK(!cJSON_IsObject(req) || rest > 0);
    else if (strncmp(error, "v: ", 3) == 0)
        CHECK(cJSON_IsObject(req) && rest == 0 && !v_ok);
    else if (strncmp(error, "cmd: ", 5) == 0)
        CHECK(cJSON_IsObject(req) && rest == 0 && !cJSON_IsString(cmd));
    else
        abort();
    cJSON_Delete(req);
}

static int on_line(void *data, const char *line, size_t len)
{
    struct session *s = data;
    const char *p = s->stream + s->expect, *end = s->stream + s->fed;
    const char *nl;

    CHECK(!s->waiting && !s->closed);
    /* the reference split: skip empty lines; the line must be complete in what was sent */
    while ((nl = memchr(p, '\n', (size_t)(end - p))) == p)
        p++;
    CHECK(nl != NULL && (size_t)(nl - p) == len);
    s->expect = (size_t)(nl + 1 - s->stream);
    s->requests++;
    if (line == NULL) {
        CHECK(len > s->in.max_line);
        s->closed = 1;
        send_error(s, "request: line too long");
        return 1;
    }
    CHECK(len <= s->in.max_line && memcmp(line, p, len) == 0);

    const char *error = NULL;
    cJSON *req = dw_admin_request(line, len, &error);
    CHECK((req == NULL) == (error != NULL));
    check_verdict(line, len, error);
    if (req == NULL) {
        send_error(s, error);
        return 0;
    }
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    /* Like the daemon: changes wait for a commit, queries are answered at once. */
    char c0 = cmd->valuestring[0];
    if (c0 == 'c' || c0 == 'm' || c0 == 'h' || (next_rand(s) & 7) == 0) {
        cJSON_Delete(req);
        s->waiting = 1;
        return 1;
    }
    cJSON *r = cJSON_CreateObject();
    CHECK(r != NULL);
    cJSON_AddTrueToObject(r, "ok");
    cJSON_AddStringToObject(r, "cmd", cmd->valuestring); /* echoed: may hold any byte */
    cJSON_Delete(req);
    send_reply(s, r);
    return 0;
}

static void drain(struct session *s)
{
    int too_long = dw_admin_lines_drain(&s->in, s->waiting, on_line, s);
    if (s->closed)
        return;
    /* refused exactly when nothing waits and the line in progress is already too long */
    CHECK(too_long == (!s->waiting && s->fed - s->tail > s->in.max_line));
    if (too_long) {
        s->requests++;
        s->closed = 1;
        send_error(s, "request: line too long");
    }
}

static void answer_deferred(struct session *s)
{
    cJSON *r = cJSON_CreateObject();
    CHECK(r != NULL);
    cJSON_AddTrueToObject(r, "ok");
    s->waiting = 0;
    send_reply(s, r);
    drain(s); /* the lines that waited, as the daemon's resume does */
}

static size_t chunk_size(struct session *s, unsigned mode)
{
    switch (mode) {
    case 0:
        return 1;
    case 1:
        return 1 + next_rand(s) % 16;
    case 2:
        return 1 + next_rand(s) % 512;
    default:
        return s->size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct session s = {0};

    if (size < 2)
        return 0;
    unsigned mode = data[0] & 3;
    size_t max_line = data[1] < 0x80 ? DW_ADMIN_MAX_LINE : 1 + (size_t)(data[1] & 0x7f) * 8;
    dw_admin_lines_init(&s.in, max_line);
    s.stream = (const char *)data + 2;
    s.size = size - 2;
    s.rng = 0x9e3779b9u ^ data[0];

    while (s.fed < s.size && !s.closed) {
        /* A waiting client is not read once a line's worth is buffered (the daemon pauses). */
        if (s.waiting && (s.in.len > s.in.max_line || (next_rand(&s) & 3) == 0)) {
            answer_deferred(&s);
            continue;
        }
        char *at;
        size_t room, n = chunk_size(&s, mode);
        CHECK(dw_admin_lines_room(&s.in, &at, &room) == 0 && room >= DW_ADMIN_READ_CHUNK);
        if (n > room)
            n = room;
        if (n > s.size - s.fed)
            n = s.size - s.fed;
        memcpy(at, s.stream + s.fed, n);
        const char *nl = memrchr(s.stream + s.fed, '\n', n);
        if (nl != NULL)
            s.tail = (size_t)(nl + 1 - s.stream);
        s.in.len += n;
        s.fed += n;
        drain(&s);
        /* bounded: the line in progress, or a line's worth waiting plus one read */
        CHECK(s.closed || s.in.len <= s.in.max_line + n);
        CHECK(s.closed || s.waiting || s.in.len == s.fed - s.tail);
    }
    /* The client stops sending: what was deferred is answered, the lines behind it handled. */
    while (s.waiting && !s.closed)
        answer_deferred(&s);
    CHECK(s.replies == s.requests);
    if (!s.closed) {
        /* every complete line was handled; the unfinished one never is */
        CHECK(s.in.len == s.fed - s.tail && s.expect <= s.tail);
        for (size_t i = s.expect; i < s.tail; i++)
            CHECK(s.stream[i] == '\n'); /* only empty lines were passed over */
    }
    dw_admin_lines_free(&s.in);
    return 0;
}
