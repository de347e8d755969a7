/* JSON structural diff, its text form, and key-sorted deep copies: pure, cJSON only. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/strbuf.h"
#include "drwatch/jsondiff.h"

#define VALUE_MAX 120

/* A child of an object (by its key) or of an id-matched array (by its id). */
struct entry {
    const char *key;
    const cJSON *item;
    int pos; /* index among its siblings */
};

static int entry_cmp(const void *x, const void *y)
{
    const struct entry *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c != 0 ? c : (a->pos > b->pos) - (a->pos < b->pos);
}

/* c's children sorted by key, or by "id" when by_id; *n how many. NULL (n 0) for none or OOM:
 * *oom tells which. */
static struct entry *sorted_entries(const cJSON *c, bool by_id, int *n, bool *oom)
{
    int count = cJSON_GetArraySize(c);
    *n = 0;
    *oom = false;
    if (count == 0)
        return NULL;
    struct entry *e = malloc((size_t)count * sizeof *e);
    if (e == NULL) {
        *oom = true;
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, c) {
        const char *key = it->string;
        if (by_id)
            key = cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring;
        e[*n] = (struct entry){key != NULL ? key : "", it, *n};
        (*n)++;
    }
    qsort(e, (size_t)*n, sizeof *e, entry_cmp);
    return e;
}

/* Arrays of objects each with a string "id", no id twice. */
static bool id_array(const cJSON *arr, bool *oom)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsObject(it) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "id")))
            return false;
    }
    int n;
    struct entry *e = sorted_entries(arr, true, &n, oom);
    bool unique = true;
    for (int i = 1; i < n && unique; i++)
        unique = strcmp(e[i - 1].key, e[i].key) != 0;
    free(e);
    return unique && !*oom;
}

struct differ {
    dw_json_diff_cb cb;
    void *data;
    struct dw_strbuf path; /* oom here or anywhere in the walk */
    int count;
};

static void emit(struct differ *d, const cJSON *old_v, const cJSON *new_v)
{
    d->count++;
    d->cb(d->data, d->path.p, old_v, new_v);
}

static void path_pop(struct differ *d, size_t saved)
{
    d->path.len = saved;
    d->path.p[saved] = '\0';
}

/* Booleans are one type whatever their value. */
static int json_type(const cJSON *v)
{
    return cJSON_IsBool(v) ? cJSON_True | cJSON_False : v->type & 0xFF;
}

/* a and b of the same json_type(), neither an object nor an array. */
static bool leaf_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble;
    if (cJSON_IsString(a) || cJSON_IsRaw(a))
        return strcmp(a->valuestring ? a->valuestring : "", b->valuestring ? b->valuestring : "") == 0;
    return (a->type & 0xFF) == (b->type & 0xFF); /* true/false; null */
}

static void diff_value(struct differ *d, const cJSON *a, const cJSON *b);

/* Walks two sorted entry lists side by side; a key both have is compared below it. Ids go in
 * the path in brackets, keys after a dot. */
static void diff_entries(struct differ *d, const struct entry *ea, int na, const struct entry *eb,
                         int nb, bool ids)
{
    int i = 0, j = 0;
    while ((i < na || j < nb) && !d->path.oom) {
        int c = i == na ? 1 : j == nb ? -1 : strcmp(ea[i].key, eb[j].key);
        const char *key = c <= 0 ? ea[i].key : eb[j].key;
        size_t saved = d->path.len;
        if (ids)
            dw_strbuf_add(&d->path, "[%s]", key);
        else
            dw_strbuf_add(&d->path, "%s%s", saved > 0 ? "." : "", key);
        if (d->path.oom)
            return;
        if (c < 0)
            emit(d, ea[i].item, NULL);
        else if (c > 0)
            emit(d, NULL, eb[j].item);
        else
            diff_value(d, ea[i].item, eb[j].item);
        path_pop(d, saved);
        /* a key given twice counts once, as cJSON's lookups see only the first */
        if (c <= 0)
            for (i++; i < na && strcmp(ea[i].key, key) == 0; i++)
                ;
        if (c >= 0)
            for (j++; j < nb && strcmp(eb[j].key, key) == 0; j++)
                ;
    }
}

static cJSON *ids_of(const cJSON *arr)
{
    cJSON *ids = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (ids == NULL)
            return NULL;
        cJSON *s = cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(it, "id")->valuestring);
        if (s == NULL || !cJSON_AddItemToArray(ids, s)) {
            cJSON_Delete(s);
            cJSON_Delete(ids);
            return NULL;
        }
    }
    return ids;
}

/* Do the ids both sides have come in the same order on both? */
static bool same_order(const struct entry *ea, int na, const struct entry *eb, int nb, bool *oom)
{
    int *pos_b = malloc((size_t)(na > 0 ? na : 1) * sizeof *pos_b); /* by position in a */
    if (pos_b == NULL) {
        *oom = true;
        return true;
    }
    for (int k = 0; k < na; k++)
        pos_b[k] = -1;
    for (int i = 0, j = 0; i < na && j < nb;) {
        int c = strcmp(ea[i].key, eb[j].key);
        if (c == 0)
            pos_b[ea[i].pos] = eb[j].pos;
        i += c <= 0;
        j += c >= 0;
    }
    int last = -1;
    bool same = true;
    for (int k = 0; k < na && same; k++) {
        if (pos_b[k] < 0)
            continue;
        same = pos_b[k] > last;
        last = pos_b[k];
    }
    free(pos_b);
    return same;
}

/* Objects key by key, or id arrays id by id; in those, shared ids in another order are one
 * difference first. */
static void diff_children(struct differ *d, const cJSON *a, const cJSON *b, bool by_id)
{
    int na, nb;
    bool oom_a, oom_b;
    struct entry *ea = sorted_entries(a, by_id, &na, &oom_a);
    struct entry *eb = sorted_entries(b, by_id, &nb, &oom_b);
    d->path.oom = d->path.oom || oom_a || oom_b;
    if (by_id && !d->path.oom && !same_order(ea, na, eb, nb, &d->path.oom)) {
        cJSON *ids_a = ids_of(a), *ids_b = ids_of(b);
        if (ids_a == NULL || ids_b == NULL)
            d->path.oom = true;
        else
            emit(d, ids_a, ids_b);
        cJSON_Delete(ids_a);
        cJSON_Delete(ids_b);
    }
    if (!d->path.oom)
        diff_entries(d, ea, na, eb, nb, by_id);
    free(ea);
    free(eb);
}

static void diff_by_index(struct differ *d, const cJSON *a, const cJSON *b)
{
    const cJSON *x = a->child, *y = b->child;
    for (int i = 0; (x != NULL || y != NULL) && !d->path.oom; i++) {
        size_t saved = d->path.len;
        dw_strbuf_add(&d->path, "[%d]", i);
        if (d->path.oom)
            return;
        if (y == NULL)
            emit(d, x, NULL);
        else if (x == NULL)
            emit(d, NULL, y);
        else
            diff_value(d, x, y);
        path_pop(d, saved);
        x = x != NULL ? x->next : NULL;
        y = y != NULL ? y->next : NULL;
    }
}

static void diff_value(struct differ *d, const cJSON *a, const cJSON *b)
{
    if (json_type(a) != json_type(b)) {
        emit(d, a, b);
        return;
    }
    if (cJSON_IsObject(a)) {
        diff_children(d, a, b, false);
    } else if (cJSON_IsArray(a)) {
        bool oom = false;
        bool by_id = id_array(a, &oom) && id_array(b, &oom);
        d->path.oom = d->path.oom || oom;
        if (d->path.oom)
            return;
        if (by_id)
            diff_children(d, a, b, true);
        else
            diff_by_index(d, a, b);
    } else if (!leaf_equal(a, b)) {
        emit(d, a, b);
    }
}

int dw_json_diff(const cJSON *a, const cJSON *b, dw_json_diff_cb cb, void *data)
{
    struct differ d = {.cb = cb, .data = data};
    if (a == NULL && b == NULL)
        return 0;
    dw_strbuf_add(&d.path, "%s", ""); /* the root's path: "" */
    if (d.path.oom)
        return -1;
    if (a == NULL || b == NULL)
        emit(&d, a, b);
    else
        diff_value(&d, a, b);
    free(d.path.p);
    return d.path.oom ? -1 : d.count;
}

struct text {
    struct dw_strbuf out;
    int lines, max_lines;
};

/* v as unformatted JSON cut to VALUE_MAX chars, the cut never inside a UTF-8 sequence. */
static char *value_text(const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    if (s == NULL || strlen(s) <= VALUE_MAX)
        return s;
    size_t cut = VALUE_MAX - 3;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    memcpy(s + cut, "...", 4);
    return s;
}

static void text_line(void *data, const char *path, const cJSON *old_v, const cJSON *new_v)
{
    struct text *t = data;
    if (t->out.oom || (t->max_lines >= 0 && t->lines >= t->max_lines))
        return;
    t->lines++;
    char *o = old_v != NULL ? value_text(old_v) : NULL;
    char *n = new_v != NULL ? value_text(new_v) : NULL;
    const char *p = path[0] != '\0' ? path : "(root)";
    if ((old_v != NULL && o == NULL) || (new_v != NULL && n == NULL))
        t->out.oom = true;
    else if (o == NULL)
        dw_strbuf_add(&t->out, "%s: added %s\n", p, n);
    else if (n == NULL)
        dw_strbuf_add(&t->out, "%s: removed (was %s)\n", p, o);
    else
        dw_strbuf_add(&t->out, "%s: %s -> %s\n", p, o, n);
    free(o);
    free(n);
}

char *dw_json_diff_text(const cJSON *a, const cJSON *b, int max_lines)
{
    struct text t = {.max_lines = max_lines};
    int count = dw_json_diff(a, b, text_line, &t);
    if (count > t.lines)
        dw_strbuf_add(&t.out, "... and %d more\n", count - t.lines);
    if (count < 0 || t.out.oom) {
        free(t.out.p);
        return NULL;
    }
    return t.out.p != NULL ? t.out.p : strdup("");
}

cJSON *dw_json_sorted(const cJSON *doc)
{
    if (doc == NULL)
        return NULL;
    if (!cJSON_IsObject(doc) && !cJSON_IsArray(doc))
        return cJSON_Duplicate(doc, false);
    int n = 0;
    bool oom = false;
    struct entry *e = cJSON_IsObject(doc) ? sorted_entries(doc, false, &n, &oom) : NULL;
    cJSON *copy = oom ? NULL : cJSON_IsObject(doc) ? cJSON_CreateObject() : cJSON_CreateArray();
    const cJSON *it = doc->child;
    for (int i = 0; copy != NULL && (e != NULL ? i < n : it != NULL); i++) {
        const cJSON *src = e != NULL ? e[i].item : it;
        cJSON *c = dw_json_sorted(src);
        bool added = c != NULL && (cJSON_IsObject(doc) ? cJSON_AddItemToObject(copy, e[i].key, c)
                                                       : cJSON_AddItemToArray(copy, c));
        if (!added) {
            cJSON_Delete(c);
            cJSON_Delete(copy);
            copy = NULL;
        }
        it = it->next;
    }
    free(e);
    return copy;
}
