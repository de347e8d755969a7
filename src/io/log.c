#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "drwatch/log.h"

static enum dw_log_level min_level = DW_LOG_INFO;

void dw_log_set_level(enum dw_log_level min)
{
    min_level = min;
}

void dw_log(enum dw_log_level lvl, const char *component, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (lvl < min_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), names[lvl], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line so concurrent writers sharing a journal do not interleave. */
    fprintf(stderr, "%s\n", line);
}
