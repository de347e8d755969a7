/* Embedded HTTP server (libmicrohttpd in external-select mode, its epoll fd watched by the libuv
 * loop; no extra thread). Handlers may reply later: replies are asynchronous. */
#ifndef DRWATCH_HTTPD_H
#define DRWATCH_HTTPD_H

#include <stddef.h>

#include <uv.h>

struct dw_httpd;
struct dw_httpd_req;

/* Called once per request with the complete body (bounded by max_body; larger bodies get 413
 * without calling the handler). The handler must eventually call dw_httpd_reply exactly once. */
typedef void (*dw_httpd_handler)(void *data, struct dw_httpd_req *req, const char *method,
                                 const char *path, const char *body, size_t body_len);

const char *dw_httpd_header(struct dw_httpd_req *req, const char *name); /* NULL if absent */
void dw_httpd_reply(struct dw_httpd_req *req, unsigned status, const char *content_type,
                    const char *body, size_t len);

/* addr is "a.b.c.d:port". */
int dw_httpd_start(struct dw_httpd **out, uv_loop_t *loop, const char *addr, size_t max_body,
                   dw_httpd_handler handler, void *data, char *errmsg, size_t errlen);
/* Requests still waiting for a reply are answered 503 and freed. */
void dw_httpd_close(struct dw_httpd *h);

#endif
