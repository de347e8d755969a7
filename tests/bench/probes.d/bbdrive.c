/* Open-loop load driver for the probe benchmark: GETs BASE + target[k % n] at a fixed rate for a
 * fixed time (libcurl multi, keep-alive to BASE), so blackbox_exporter probes every target once
 * per second. Prints one line per second: "<seconds since start> <sent> <done> <ok> <failed>"
 * (cumulative). A response counts as ok when it is HTTP 200 with "probe_success 1" in the body.
 *
 * usage: bbdrive BASE TARGETS_FILE RATE DURATION_S [MAX_IN_FLIGHT] */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct req {
    CURL *easy;
    char body[4096];
    size_t len;
    int busy;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    struct req *r = ud;
    size_t n = sz * nm, room = sizeof r->body - 1 - r->len;
    if (n < room)
        room = n;
    memcpy(r->body + r->len, p, room);
    r->len += room;
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s BASE TARGETS_FILE RATE DURATION_S [MAX_IN_FLIGHT]\n", argv[0]);
        return 2;
    }
    const char *base = argv[1];
    double rate = atof(argv[3]), duration = atof(argv[4]);
    int max_inflight = argc > 5 ? atoi(argv[5]) : 4000;
    FILE *f = fopen(argv[2], "r");
    if (!f || rate <= 0 || duration <= 0 || max_inflight < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    char **urls = NULL, line[2048];
    size_t n = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            urls = realloc(urls, cap * sizeof *urls);
        }
        if (asprintf(&urls[n++], "%s%s", base, line) < 0)
            return 1;
    }
    fclose(f);
    if (n == 0)
        return 2;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)max_inflight);
    struct req *pool = calloc((size_t)max_inflight, sizeof *pool);
    int *free_idx = malloc((size_t)max_inflight * sizeof *free_idx);
    int n_free = max_inflight;
    for (int i = 0; i < max_inflight; i++) {
        free_idx[i] = max_inflight - 1 - i;
        pool[i].easy = curl_easy_init();
        curl_easy_setopt(pool[i].easy, CURLOPT_PRIVATE, &pool[i]);
        curl_easy_setopt(pool[i].easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(pool[i].easy, CURLOPT_WRITEDATA, &pool[i]);
        curl_easy_setopt(pool[i].easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(pool[i].easy, CURLOPT_TIMEOUT_MS, 5000L);
    }

    unsigned long long sent = 0, done = 0, ok = 0, failed = 0, k = 0;
    double t0 = now_s(), next_report = 1.0;
    int running = 0;
    for (;;) {
        double t = now_s() - t0;
        if (t < duration) {
            unsigned long long due = (unsigned long long)(t * rate);
            while (sent < due && n_free > 0) {
                struct req *r = &pool[free_idx[--n_free]];
                r->len = 0;
                r->busy = 1;
                curl_easy_setopt(r->easy, CURLOPT_URL, urls[k++ % n]);
                curl_multi_add_handle(m, r->easy);
                sent++;
            }
            /* Behind schedule with no free handle: the rate is not reachable; drop the backlog
             * rather than bursting later, so the report shows the rate actually achieved. */
            if (sent < due && n_free == 0)
                sent = due, k = due;
        }
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(m, &q))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct req *r;
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            r->body[r->len] = 0;
            done++;
            if (msg->data.result == CURLE_OK && code == 200 && strstr(r->body, "\nprobe_success 1"))
                ok++;
            else
                failed++;
            curl_multi_remove_handle(m, r->easy);
            r->busy = 0;
            free_idx[n_free++] = (int)(r - pool);
        }
        t = now_s() - t0;
        if (t >= next_report) {
            printf("%.3f %llu %llu %llu %llu\n", t, sent, done, ok, failed);
            fflush(stdout);
            next_report += 1.0;
        }
        if (t >= duration && running == 0)
            break;
        if (t >= duration + 6.0)
            break;
        curl_multi_poll(m, NULL, 0, 1, NULL);
    }
    printf("%.3f %llu %llu %llu %llu\n", now_s() - t0, sent, done, ok, failed);
    for (int i = 0; i < max_inflight; i++) {
        if (pool[i].busy)
            curl_multi_remove_handle(m, pool[i].easy);
        curl_easy_cleanup(pool[i].easy);
    }
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return 0;
}
