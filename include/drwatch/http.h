/* libcurl multi driven by a libuv loop (curl's socket and timer callbacks on uv_poll_t and
 * uv_timer_t), and a small asynchronous HTTP request helper on top. Nothing here blocks. */
#ifndef DRWATCH_HTTP_H
#define DRWATCH_HTTP_H

#include <stddef.h>

#include <curl/curl.h>
#include <uv.h>

struct dw_curlm;

int dw_curlm_init(struct dw_curlm **out, uv_loop_t *loop);
/* Aborts every transfer still running (their callbacks run with CURLE_ABORTED_BY_CALLBACK),
 * then closes its libuv handles; memory is freed in the last close callback. */
void dw_curlm_close(struct dw_curlm *m);

typedef void (*dw_curlm_done_cb)(CURL *easy, CURLcode result, void *data);
/* Starts a transfer on a configured easy handle. The caller keeps ownership of easy: it is
 * removed from the multi handle before cb runs, and cb may clean it up. Returns 0 or -1. */
int dw_curlm_add(struct dw_curlm *m, CURL *easy, dw_curlm_done_cb cb, void *data);

struct dw_http_resp {
    CURLcode curl_code;          /* CURLE_OK when a response arrived */
    const char *error;           /* curl's error text when curl_code != CURLE_OK */
    long status;                 /* HTTP status, 0 without a response */
    const char *body;            /* NUL-terminated, never NULL */
    size_t body_len;
    int retry_after_s;           /* Retry-After header in seconds, -1 if absent */
    long rl_allowed, rl_count, rl_reset_s; /* inin-ratelimit-allowed, -count, -reset (seconds
                                              until the window resets); -1 if absent */
    double total_ms;
    int truncated;               /* body exceeded max_body (transfer aborted) */
};

struct dw_http_opts {
    const char *method;          /* "GET", "POST", "PUT" */
    const char *url;
    const char *const *headers;  /* NULL-terminated "Name: value" list, may be NULL */
    const char *body;            /* may be NULL */
    size_t body_len;
    unsigned timeout_ms;
    size_t max_body;             /* 0 = 1 MiB */
    const char *ca_file;         /* NULL = system default */
    const void *ca_pem;          /* CAs in memory, used instead of ca_file; outlives the job */
    size_t ca_pem_len;
    int fresh_connect;           /* 1 = no connection reuse (health probes measure the real path) */
    const char *basic_user;      /* HTTP Basic credentials (curl encodes them); NULL = none */
    const char *basic_password;
    const char *client_cert;     /* PEM client certificate for mutual TLS; NULL = none */
    const char *client_key;      /* PEM key of client_cert; NULL = in client_cert's file */
    int tls_no_verify;           /* 1 = accept any server certificate and name (lab Edges only) */
    long recv_buffer;            /* curl's receive buffer per transfer, 0 = its default (16 KiB) */
    int direct;                  /* 1 = never through a proxy, whatever http_proxy & co. say;
                                    0 = libcurl's proxy environment applies */
};

/* The response is valid only during cb. Returns 0, or -1 (cb is then never called). */
typedef void (*dw_http_cb)(const struct dw_http_resp *resp, void *data);
int dw_http_request(struct dw_curlm *m, const struct dw_http_opts *opts, dw_http_cb cb, void *data);

/* A request run again and again (periodic probes). The job keeps its own state and body buffer
 * between runs, so a run allocates nothing beyond what libcurl does. opts and every string it
 * points to must stay valid while the job exists. */
struct dw_http_job;
int dw_http_job_new(struct dw_http_job **out, const struct dw_http_opts *opts);
/* Starts one run; -1 (cb never called) when one is already running or it cannot start. */
int dw_http_job_run(struct dw_curlm *m, struct dw_http_job *j, dw_http_cb cb, void *data);
int dw_http_job_running(const struct dw_http_job *j);
/* Cancels a running run without calling its callback. Accepts NULL. */
void dw_http_job_free(struct dw_http_job *j);

#endif
