#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "drwatch/log.h"
#include "drwatch/metrics.h"
#include "drwatch/strbuf.h"

#define METRICS_MAX_BODY 1024

struct collector {
    dw_metrics_collect_fn fn;
    void *data;
};

struct dw_metrics {
    struct dw_httpd *httpd;
    struct collector *collectors;
    size_t n_collectors, cap_collectors;
    dw_metrics_status_fn status_fn;
    void *status_data;
    bool warned_name, warned_type;
};

struct family {
    char *name;
    char *help;
    enum dw_metric_type type;
    struct dw_strbuf samples;
};

struct dw_metrics_writer {
    struct dw_metrics *m;
    struct family *fams;
    size_t n_fams, cap_fams;
    size_t last;            /* family of the previous sample: collectors usually write runs */
    bool oom;
};

static void buf_str(struct dw_strbuf *b, const char *s)
{
    dw_strbuf_put(b, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also escape the double quote. */
static void buf_escaped(struct dw_strbuf *b, const char *s, bool quote)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\')
            dw_strbuf_put(b, "\\\\", 2);
        else if (*p == '\n')
            dw_strbuf_put(b, "\\n", 2);
        else if (quote && *p == '"')
            dw_strbuf_put(b, "\\\"", 2);
        else
            dw_strbuf_put(b, p, 1);
    }
}

static void fmt_value(char *num, size_t size, double v)
{
    if (isnan(v))
        snprintf(num, size, "NaN");
    else if (isinf(v))
        snprintf(num, size, v > 0 ? "+Inf" : "-Inf");
    else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
        snprintf(num, size, "%lld", (long long)v); /* counters read as integers */
    else
        snprintf(num, size, "%.17g", v);
}

static void buf_value(struct dw_strbuf *b, double v)
{
    char num[40];
    fmt_value(num, sizeof num, v);
    buf_str(b, num);
}

static bool valid_name(const char *s, bool metric)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (metric && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return metric || strncmp(s, "__", 2) != 0; /* "__" label names are reserved */
}

static struct family *find_family(struct dw_metrics_writer *w, const char *name)
{
    if (w->last < w->n_fams && strcmp(w->fams[w->last].name, name) == 0)
        return &w->fams[w->last];
    for (size_t i = 0; i < w->n_fams; i++) {
        if (strcmp(w->fams[i].name, name) == 0) {
            w->last = i;
            return &w->fams[i];
        }
    }
    return NULL;
}

static struct family *add_family(struct dw_metrics_writer *w, const char *name,
                                 enum dw_metric_type type, const char *help)
{
    if (w->n_fams == w->cap_fams) {
        size_t cap = w->cap_fams ? 2 * w->cap_fams : 16;
        struct family *f = realloc(w->fams, cap * sizeof *f);
        if (f == NULL)
            return NULL;
        w->fams = f;
        w->cap_fams = cap;
    }
    struct family *f = &w->fams[w->n_fams];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    f->type = type;
    if (f->name == NULL || f->help == NULL) {
        free(f->name);
        free(f->help);
        return NULL;
    }
    w->last = w->n_fams++;
    return f;
}

/* The family buffer a sample of name goes to, or NULL when the sample is dropped. */
static struct dw_strbuf *sample_buf(struct dw_metrics_writer *w, const char *name,
                                    enum dw_metric_type type, const char *help,
                                    const char *const *labels)
{
    if (w == NULL || w->oom)
        return NULL;
    bool names_ok = valid_name(name, true);
    for (const char *const *l = labels; names_ok && l != NULL && *l != NULL; l += 2)
        names_ok = valid_name(l[0], false) && l[1] != NULL &&
                   (type != DW_METRIC_HISTOGRAM || strcmp(l[0], "le") != 0);
    if (!names_ok) {
        if (!w->m->warned_name)
            dw_log(DW_LOG_WARN, "metrics", "dropping a sample of \"%s\": invalid metric or label name",
                   name != NULL ? name : "(null)");
        w->m->warned_name = true;
        return NULL;
    }
    struct family *f = find_family(w, name);
    if (f == NULL && (f = add_family(w, name, type, help)) == NULL) {
        w->oom = true;
        return NULL;
    }
    if (f->type != type) {
        if (!w->m->warned_type)
            dw_log(DW_LOG_WARN, "metrics", "dropping a sample of \"%s\": written as two types", name);
        w->m->warned_type = true;
        return NULL;
    }
    return &f->samples;
}

/* One line: name+suffix{labels[,le="le"]} value. */
static void sample_line(struct dw_metrics_writer *w, struct dw_strbuf *b, const char *name,
                        const char *suffix, const char *const *labels, const char *le, double value)
{
    buf_str(b, name);
    buf_str(b, suffix);
    bool any = (labels != NULL && labels[0] != NULL) || le != NULL;
    if (any) {
        dw_strbuf_put(b, "{", 1);
        for (const char *const *l = labels; l != NULL && *l != NULL; l += 2) {
            if (l != labels)
                dw_strbuf_put(b, ",", 1);
            buf_str(b, l[0]);
            dw_strbuf_put(b, "=\"", 2);
            buf_escaped(b, l[1], true);
            dw_strbuf_put(b, "\"", 1);
        }
        if (le != NULL) {
            if (labels != NULL && labels[0] != NULL)
                dw_strbuf_put(b, ",", 1);
            buf_str(b, "le=\"");
            buf_str(b, le);
            dw_strbuf_put(b, "\"", 1);
        }
        dw_strbuf_put(b, "}", 1);
    }
    dw_strbuf_put(b, " ", 1);
    buf_value(b, value);
    dw_strbuf_put(b, "\n", 1);
    if (b->oom)
        w->oom = true;
}

void dw_metrics_write(struct dw_metrics_writer *w, const char *name, enum dw_metric_type type,
                      const char *help, const char *const *labels, double value)
{
    if (type == DW_METRIC_HISTOGRAM)
        return; /* dw_metrics_write_histogram */
    struct dw_strbuf *b = sample_buf(w, name, type, help, labels);
    if (b != NULL)
        sample_line(w, b, name, "", labels, NULL, value);
}

void dw_metrics_write_histogram(struct dw_metrics_writer *w, const char *name, const char *help,
                                const char *const *labels, const double *bounds,
                                const uint64_t *counts, int n_bounds, double sum)
{
    struct dw_strbuf *b = sample_buf(w, name, DW_METRIC_HISTOGRAM, help, labels);
    if (b == NULL)
        return;
    uint64_t cum = 0;
    for (int i = 0; i <= n_bounds; i++) {
        char le[40];
        fmt_value(le, sizeof le, i < n_bounds ? bounds[i] : INFINITY);
        cum += counts[i];
        sample_line(w, b, name, "_bucket", labels, le, (double)cum);
    }
    sample_line(w, b, name, "_sum", labels, NULL, sum);
    sample_line(w, b, name, "_count", labels, NULL, (double)cum);
}

char *dw_metrics_render(struct dw_metrics *m, size_t *len)
{
    struct dw_metrics_writer w = {.m = m};
    for (size_t i = 0; i < m->n_collectors; i++)
        m->collectors[i].fn(m->collectors[i].data, &w);

    struct dw_strbuf out = {0};
    dw_strbuf_reserve(&out, 0); /* an empty registry still renders "" */
    for (size_t i = 0; i < w.n_fams; i++) {
        struct family *f = &w.fams[i];
        buf_str(&out, "# HELP ");
        buf_str(&out, f->name);
        dw_strbuf_put(&out, " ", 1);
        buf_escaped(&out, f->help, false);
        buf_str(&out, "\n# TYPE ");
        buf_str(&out, f->name);
        buf_str(&out, f->type == DW_METRIC_COUNTER     ? " counter\n"
                      : f->type == DW_METRIC_HISTOGRAM ? " histogram\n"
                                                       : " gauge\n");
        if (f->samples.p != NULL)
            dw_strbuf_put(&out, f->samples.p, f->samples.len);
        free(f->name);
        free(f->help);
        free(f->samples.p);
    }
    free(w.fams);
    if (w.oom || out.oom) {
        free(out.p);
        return NULL;
    }
    *len = out.len;
    return out.p;
}

void dw_metrics_http_handler(void *data, struct dw_httpd_req *req, const char *method,
                             const char *path, const char *body, size_t body_len)
{
    struct dw_metrics *m = data;
    (void)body;
    (void)body_len;
    bool health = strcmp(path, "/health") == 0, leader = strcmp(path, "/leader") == 0;
    if (strcmp(path, "/metrics") != 0 && !((health || leader) && m->status_fn != NULL)) {
        static const char nf[] = "not found\n";
        dw_httpd_reply(req, 404, "text/plain; charset=utf-8", nf, sizeof nf - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char na[] = "method not allowed\n";
        dw_httpd_reply(req, 405, "text/plain; charset=utf-8", na, sizeof na - 1);
        return;
    }
    if (health || leader) {
        struct dw_metrics_status st = {.role = "", .reason = "", .node_name = "",
                                       .leader_name = ""};
        m->status_fn(m->status_data, &st);
        char *json = dw_metrics_status_json(&st);
        if (json == NULL) {
            static const char oom[] = "out of memory\n";
            dw_httpd_reply(req, 500, "text/plain; charset=utf-8", oom, sizeof oom - 1);
            return;
        }
        bool ok = health ? st.healthy : st.leader;
        dw_httpd_reply(req, ok ? 200 : 503, "application/json", json, strlen(json));
        free(json);
        return;
    }
    size_t len = 0;
    char *text = dw_metrics_render(m, &len);
    if (text == NULL) {
        static const char oom[] = "out of memory\n";
        dw_httpd_reply(req, 500, "text/plain; charset=utf-8", oom, sizeof oom - 1);
        return;
    }
    dw_httpd_reply(req, 200, DW_METRICS_CONTENT_TYPE, text, len);
    free(text);
}

int dw_metrics_start(struct dw_metrics **out, uv_loop_t *loop, const char *addr, char *errmsg,
                     size_t errlen)
{
    *out = NULL;
    struct dw_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    if (addr != NULL && addr[0] != '\0') {
        char err[256];
        if (dw_httpd_start(&m->httpd, loop, addr, METRICS_MAX_BODY, dw_metrics_http_handler, m,
                           err, sizeof err) != 0) {
            snprintf(errmsg, errlen, "metrics: %s", err);
            free(m);
            return -1;
        }
    }
    *out = m;
    return 0;
}

void dw_metrics_close(struct dw_metrics *m)
{
    if (m == NULL)
        return;
    dw_httpd_close(m->httpd); /* calls no handler after this, so m can go now */
    free(m->collectors);
    free(m);
}

int dw_metrics_add(struct dw_metrics *m, dw_metrics_collect_fn fn, void *data)
{
    if (m->n_collectors == m->cap_collectors) {
        size_t cap = m->cap_collectors ? 2 * m->cap_collectors : 8;
        struct collector *c = realloc(m->collectors, cap * sizeof *c);
        if (c == NULL)
            return -1;
        m->collectors = c;
        m->cap_collectors = cap;
    }
    m->collectors[m->n_collectors++] = (struct collector){fn, data};
    return 0;
}

void dw_metrics_remove(struct dw_metrics *m, dw_metrics_collect_fn fn, void *data)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_collectors; i++) {
        if (m->collectors[i].fn == fn && m->collectors[i].data == data) {
            memmove(&m->collectors[i], &m->collectors[i + 1],
                    (m->n_collectors - i - 1) * sizeof *m->collectors);
            m->n_collectors--;
            return;
        }
    }
}

void dw_metrics_set_status(struct dw_metrics *m, dw_metrics_status_fn fn, void *data)
{
    m->status_fn = fn;
    m->status_data = data;
}

static cJSON *member_json(uint64_t id, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "name", name != NULL ? name : "");
    return o;
}

char *dw_metrics_status_json(const struct dw_metrics_status *st)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddBoolToObject(o, "healthy", st->healthy);
    cJSON_AddBoolToObject(o, "is_leader", st->leader);
    cJSON_AddStringToObject(o, "role", st->role != NULL ? st->role : "");
    cJSON_AddItemToObject(o, "node", member_json(st->node_id, st->node_name));
    cJSON_AddItemToObject(o, "leader",
                          st->leader_id ? member_json(st->leader_id, st->leader_name)
                                        : cJSON_CreateNull());
    cJSON_AddNumberToObject(o, "term", (double)st->term);
    cJSON_AddStringToObject(o, "reason", st->reason != NULL ? st->reason : "");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *out = malloc(n + 2); /* a trailing newline for curl users */
    if (out != NULL) {
        memcpy(out, text, n);
        memcpy(out + n, "\n", 2);
    }
    cJSON_free(text);
    return out;
}
