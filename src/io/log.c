#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "drwatch/log.h"

static enum dw_log_level min_level = DW_LOG_INFO;
static enum dw_log_format format = DW_LOG_FORMAT_AUTO;
static int journal = -1; /* -1: not decided yet */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"auto", "logfmt", "journal"};

void dw_log_set_level(enum dw_log_level min)
{
    min_level = min;
}

enum dw_log_level dw_log_level(void)
{
    return min_level;
}

const char *dw_log_level_name(enum dw_log_level lvl)
{
    return (unsigned)lvl <= DW_LOG_ERROR ? level_names[lvl] : "?";
}

int dw_log_parse_level(const char *s, enum dw_log_level *out)
{
    for (int i = 0; s != NULL && i <= DW_LOG_ERROR; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum dw_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *dw_log_format_name(enum dw_log_format f)
{
    return (unsigned)f <= DW_LOG_FORMAT_JOURNAL ? format_names[f] : "?";
}

int dw_log_parse_format(const char *s, enum dw_log_format *out)
{
    for (int i = 0; s != NULL && i <= DW_LOG_FORMAT_JOURNAL; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            *out = (enum dw_log_format)i;
            return 0;
        }
    }
    return -1;
}

bool dw_log_journal_decide(enum dw_log_format f, const char *journal_stream, bool have_stat,
                           unsigned long long dev, unsigned long long ino)
{
    unsigned long long d, i;
    char extra;

    if (f != DW_LOG_FORMAT_AUTO)
        return f == DW_LOG_FORMAT_JOURNAL;
    /* systemd's documented check: JOURNAL_STREAM is "dev:ino" of the stream it connected; a
     * child whose stderr was redirected elsewhere inherits the variable but not the stream. */
    if (journal_stream == NULL || !have_stat ||
        sscanf(journal_stream, "%llu:%llu%c", &d, &i, &extra) != 2)
        return false;
    return d == dev && i == ino;
}

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static bool decide_now(void)
{
    struct stat st;
    bool have = fstat(STDERR_FILENO, &st) == 0;

    return dw_log_journal_decide(format, getenv("JOURNAL_STREAM"), have,
                                 have ? (unsigned long long)st.st_dev : 0,
                                 have ? (unsigned long long)st.st_ino : 0);
}

void dw_log_set_format(enum dw_log_format f)
{
    format = f;
    journal = decide_now();
    /* sd_journal_sendv drops lines silently when journald is not running */
    if (journal && access(JOURNAL_SOCKET, W_OK) != 0) {
        journal = 0;
        dw_log(DW_LOG_WARN, "main", "log format journal: no journald at " JOURNAL_SOCKET
               "; logging logfmt to stderr");
    }
}

enum dw_log_format dw_log_format(void)
{
    return format;
}

bool dw_log_to_journal(void)
{
    if (journal < 0)
        journal = decide_now() && access(JOURNAL_SOCKET, W_OK) == 0;
    return journal == 1;
}

static bool needs_quotes(const char *v)
{
    if (*v == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return true;
    }
    return false;
}

/* The escaped form of c into out (at most 4 bytes + NUL); its length. */
static size_t escape_char(unsigned char c, char *out)
{
    switch (c) {
    case '"':
        return (size_t)snprintf(out, 5, "\\\"");
    case '\\':
        return (size_t)snprintf(out, 5, "\\\\");
    case '\n':
        return (size_t)snprintf(out, 5, "\\n");
    case '\r':
        return (size_t)snprintf(out, 5, "\\r");
    case '\t':
        return (size_t)snprintf(out, 5, "\\t");
    default:
        if (c < ' ' || c == 0x7f)
            return (size_t)snprintf(out, 5, "\\x%02x", c);
        out[0] = (char)c;
        out[1] = '\0';
        return 1;
    }
}

/* Appends value quoted into buf. cut: the value does not fit in cap - *len (which holds at
 * least the quotes, the dots and a NUL), so it is cut with "..." at the end. */
static void put_quoted(char *buf, size_t cap, size_t *len, const char *v, bool cut)
{
    size_t n = *len;
    char e[5];

    buf[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        size_t el = escape_char(*p, e);
        /* room for this char and "..." + '"' + NUL after it */
        if (cut && n + el + 5 > cap) {
            if (n + 5 > cap)
                n = cap - 5;
            /* do not leave half a multi-byte UTF-8 sequence before the dots */
            while (n > *len + 1 && ((unsigned char)buf[n - 1] & 0xC0) == 0x80)
                n--;
            if (n > *len + 1 && ((unsigned char)buf[n - 1] & 0xC0) == 0xC0)
                n--;
            memcpy(buf + n, "...\"", 5);
            *len = n + 4;
            return;
        }
        memcpy(buf + n, e, el);
        n += el;
    }
    buf[n++] = '"';
    buf[n] = '\0';
    *len = n;
}

bool dw_logfmt_pair(char *buf, size_t cap, size_t *len, const char *key, const char *value)
{
    size_t n = *len, kl = strlen(key), need = kl + 2; /* " key=" less the space when first */
    char e[5];

    if (value == NULL)
        value = "";
    if (!needs_quotes(value)) {
        need += strlen(value);
    } else {
        need += 2;
        for (const unsigned char *p = (const unsigned char *)value; *p; p++)
            need += escape_char(*p, e);
    }
    if (n + need + 1 > cap)
        return false;
    if (n > 0)
        buf[n++] = ' ';
    memcpy(buf + n, key, kl);
    n += kl;
    buf[n++] = '=';
    if (!needs_quotes(value)) {
        size_t vl = strlen(value);
        memcpy(buf + n, value, vl);
        n += vl;
        buf[n] = '\0';
    } else {
        put_quoted(buf, cap, &n, value, false);
    }
    *len = n;
    return true;
}

static const char *field_value(const struct dw_log_field *f, char *num, size_t numlen)
{
    if (f->is_num) {
        snprintf(num, numlen, "%lld", f->num);
        return num;
    }
    return f->str;
}

size_t dw_logfmt_line(char *buf, size_t cap, int64_t ts_ms, enum dw_log_level lvl,
                      const char *component, const struct dw_log_field *fields, const char *msg)
{
    char ts[64], num[24], tail[DW_LOG_LINE_MAX];
    size_t n = 0, tl = 0;
    time_t secs = (time_t)(ts_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts_ms % 1000));
    buf[0] = '\0';
    dw_logfmt_pair(buf, cap, &n, "ts", ts);
    dw_logfmt_pair(buf, cap, &n, "level", dw_log_level_name(lvl));
    dw_logfmt_pair(buf, cap, &n, "component", component ? component : "-");

    /* Fields first into tail, so a long message is what gets cut; the message always keeps
     * a third of the line. */
    size_t tail_cap = cap / 3 < sizeof tail ? cap / 3 : sizeof tail;
    tail[0] = '\0';
    for (const struct dw_log_field *f = fields; f != NULL && f->key != NULL; f++) {
        const char *v = field_value(f, num, sizeof num);
        size_t kl = f->key != NULL ? strlen(f->key) : 0;
        if (v == NULL || dw_logfmt_pair(tail, tail_cap, &tl, f->key, v))
            continue;
        /* too long: cut, as the message is, rather than lose it; " key=" + '"' + a character
         * + '..."' + NUL must fit */
        if (tl + kl + 10 > tail_cap)
            continue;
        if (tl > 0)
            tail[tl++] = ' ';
        memcpy(tail + tl, f->key, kl);
        tl += kl;
        tail[tl++] = '=';
        put_quoted(tail, tail_cap, &tl, v, true);
    }
    if (msg == NULL)
        msg = "";
    /* " msg=" + the quoted message + " " + tail + "\n" + NUL */
    size_t room = cap - n - tl - 2, base = n;
    if (!dw_logfmt_pair(buf, base + room, &n, "msg", msg)) {
        memcpy(buf + n, " msg=", 5);
        n += 5;
        put_quoted(buf, base + room, &n, msg, true);
    }
    if (tl > 0) {
        buf[n++] = ' ';
        memcpy(buf + n, tail, tl);
        n += tl;
    }
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}

static int priority(enum dw_log_level lvl)
{
    static const int p[] = {7, 6, 4, 3}; /* LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR */
    return (unsigned)lvl <= DW_LOG_ERROR ? p[lvl] : 6;
}

/* Appends "NAME=value" to buf as one iovec; false when full. */
static bool jfield(struct iovec *iov, int *n, int max, char *buf, size_t cap, size_t *used,
                   const char *prefix, const char *name, const char *value)
{
    size_t pl = strlen(prefix), nl = strlen(name), vl = strlen(value);

    if (*n >= max || *used + pl + nl + 1 + vl > cap)
        return false;
    char *p = buf + *used;
    memcpy(p, prefix, pl);
    /* journal field names: upper-case letters, digits and underscores */
    for (size_t i = 0; i < nl; i++)
        p[pl + i] = isalnum((unsigned char)name[i]) ? (char)toupper((unsigned char)name[i]) : '_';
    p[pl + nl] = '=';
    memcpy(p + pl + nl + 1, value, vl);
    iov[*n].iov_base = p;
    iov[*n].iov_len = pl + nl + 1 + vl;
    (*n)++;
    *used += pl + nl + 1 + vl;
    return true;
}

int dw_log_journal_fields(struct iovec *iov, int max, char *buf, size_t cap,
                          enum dw_log_level lvl, const char *component,
                          const struct dw_log_field *fields, const char *msg)
{
    char pr[4], num[24];
    size_t used = 0;
    int n = 0;

    snprintf(pr, sizeof pr, "%d", priority(lvl));
    jfield(iov, &n, max, buf, cap, &used, "", "MESSAGE", msg ? msg : "");
    jfield(iov, &n, max, buf, cap, &used, "", "PRIORITY", pr);
    jfield(iov, &n, max, buf, cap, &used, "", "SYSLOG_IDENTIFIER", "drwatchd");
    jfield(iov, &n, max, buf, cap, &used, "DRWATCH_", "COMPONENT", component ? component : "-");
    for (const struct dw_log_field *f = fields; f != NULL && f->key != NULL; f++) {
        const char *v = field_value(f, num, sizeof num);
        if (v != NULL)
            jfield(iov, &n, max, buf, cap, &used, "DRWATCH_", f->key, v);
    }
    return n;
}

static void emit(enum dw_log_level lvl, const char *component, const struct dw_log_field *fields,
                 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void emit(enum dw_log_level lvl, const char *component, const struct dw_log_field *fields,
                 const char *fmt, va_list ap)
{
    char msg[DW_LOG_LINE_MAX], line[DW_LOG_LINE_MAX];

    if (lvl < min_level)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (dw_log_to_journal()) {
        /* the whole message (up to DW_LOG_LINE_MAX) and the fields after it */
        char jbuf[4 * DW_LOG_LINE_MAX];
        struct iovec iov[24];
        int n = dw_log_journal_fields(iov, 24, jbuf, sizeof jbuf, lvl, component, fields, msg);
        if (sd_journal_sendv(iov, n) == 0)
            return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    size_t len = dw_logfmt_line(line, sizeof line, (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000,
                                lvl, component, fields, msg);
    /* One write per line so concurrent writers sharing a journal do not interleave. */
    if (write(STDERR_FILENO, line, len) < 0)
        return;
}

void dw_log(enum dw_log_level lvl, const char *component, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(lvl, component, NULL, fmt, ap);
    va_end(ap);
}

void dw_log_kv(enum dw_log_level lvl, const char *component, const struct dw_log_field *fields,
               const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(lvl, component, fields, fmt, ap);
    va_end(ap);
}
