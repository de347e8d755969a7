/* SIP OPTIONS probes on the libuv loop.
 *
 * TLS uses OpenSSL (libssl) through memory BIOs: libcurl on our target systems is built against
 * OpenSSL, so the daemon already links and loads it; a second TLS stack (GnuTLS) would add a
 * dependency, a second CA-store configuration and a second set of security updates to follow.
 *
 * UDP probes share one socket and are found again by Call-ID (hash table), then checked against
 * CSeq and the top Via branch. TCP and TLS probes own their connection; messages on it are framed
 * by Content-Length and capped at DW_SIP_MAX_MSG (both parsers: src/io/sip_parse.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "drwatch/sip.h"
#include "drwatch/sip_parse.h"

#define SIP_T1_MS 500
#define SIP_T2_MS 4000
#define N_BUCKETS 4096
#define DETAIL_MAX 320

/* An SSL_CTX per distinct TLS setting: loading CA stores per probe would cost milliseconds. */
struct tls_ctx {
    struct tls_ctx *next;
    char ca_file[DW_PATH_MAX], client_cert[DW_PATH_MAX], client_key[DW_PATH_MAX];
    bool verify;
    SSL_CTX *ctx;
    char err[DETAIL_MAX]; /* non-empty: loading failed, every probe using it fails the same way */
};

struct probe {
    struct probe *prev, *next; /* in-flight list */
    struct probe *hnext;       /* UDP Call-ID bucket */
    struct dw_sip *s;
    const struct dw_probe_spec *spec;
    dw_sip_cb cb;
    void *data;
    bool done;
    int open_handles;

    struct sockaddr_in dst;
    char call_id_rand[33], branch[40], tag[17];
    char call_id[96];
    unsigned cseq;
    char *req;
    size_t req_len;

    uv_timer_t timeout;
    char err[DETAIL_MAX];    /* set before a 0 ms timeout: the probe failed before any I/O */

    /* udp */
    uv_timer_t retrans;
    bool retrans_init;
    unsigned retrans_ms;

    /* tcp/tls */
    uv_tcp_t tcp;
    bool tcp_init;
    uv_connect_t connect;
    char *msg;               /* received (plaintext) bytes not yet consumed */
    size_t msg_len, msg_cap;
    SSL *ssl;
    BIO *rbio, *wbio;        /* network -> ssl, ssl -> network */
    bool hs_done;
};

struct dw_sip {
    uv_loop_t *loop;
    uv_udp_t udp;
    char local_ip[INET_ADDRSTRLEN]; /* "" when bound to 0.0.0.0 */
    unsigned udp_port;
    struct probe *probes;
    struct probe *buckets[N_BUCKETS];
    struct tls_ctx *tls;
    unsigned cseq;
    int refs; /* udp handle + probes not yet freed */
    bool closing;
    struct dw_sip_stats stats;
    char rbuf[DW_SIP_MAX_MSG];
};

struct wreq {
    uv_write_t req;
    char data[];
};

struct usend {
    uv_udp_send_t req;
    struct dw_sip *s;
    char data[];
};

/* ---- helpers ---- */

static int rand_hex(char *out, size_t nbytes)
{
    unsigned char b[32];
    size_t got = 0;

    if (nbytes > sizeof b)
        return -1;
    while (got < nbytes) {
        ssize_t r = getrandom(b + got, nbytes - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    return 0;
}

static unsigned hash_str(const char *str)
{
    uint32_t h = 2166136261u;

    for (; *str; str++)
        h = (h ^ (unsigned char)*str) * 16777619u;
    return h % N_BUCKETS;
}

static void bucket_add(struct dw_sip *s, struct probe *p)
{
    unsigned h = hash_str(p->call_id);

    p->hnext = s->buckets[h];
    s->buckets[h] = p;
}

static void bucket_del(struct dw_sip *s, struct probe *p)
{
    for (struct probe **pp = &s->buckets[hash_str(p->call_id)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == p) {
            *pp = p->hnext;
            return;
        }
    }
}

static struct probe *bucket_find(struct dw_sip *s, const char *call_id)
{
    for (struct probe *p = s->buckets[hash_str(call_id)]; p; p = p->hnext)
        if (strcmp(p->call_id, call_id) == 0)
            return p;
    return NULL;
}

static void sip_maybe_free(struct dw_sip *s)
{
    if (!s->closing || s->refs > 0)
        return;
    while (s->tls) {
        struct tls_ctx *t = s->tls;
        s->tls = t->next;
        SSL_CTX_free(t->ctx);
        free(t);
    }
    free(s);
}

static bool code_alive(const struct dw_probe_spec *spec, int code)
{
    if (spec->n_alive_codes <= 0)
        return code >= 200 && code <= 699;
    for (int i = 0; i < spec->n_alive_codes && i < DW_MAX_CODES; i++) {
        int c = spec->alive_codes[i];
        if ((c >= 1 && c <= 6 && code / 100 == c) || c == code)
            return true;
    }
    return false;
}

/* ---- probe lifetime ---- */

static void on_probe_handle_closed(uv_handle_t *h)
{
    struct probe *p = h->data;
    struct dw_sip *s = p->s;

    if (--p->open_handles > 0)
        return;
    SSL_free(p->ssl); /* frees both BIOs */
    free(p->msg);
    free(p->req);
    free(p);
    s->refs--;
    sip_maybe_free(s);
}

static void probe_finish(struct probe *p, bool ok, int code, const char *detail)
{
    struct dw_sip *s = p->s;

    if (p->done)
        return;
    p->done = true;
    if (p->prev)
        p->prev->next = p->next;
    else
        s->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->spec->transport == DW_SIP_UDP)
        bucket_del(s, p);

    p->cb(p->data, ok, code, detail);

    uv_close((uv_handle_t *)&p->timeout, on_probe_handle_closed);
    if (p->retrans_init)
        uv_close((uv_handle_t *)&p->retrans, on_probe_handle_closed);
    if (p->tcp_init)
        uv_close((uv_handle_t *)&p->tcp, on_probe_handle_closed);
}

static void probe_fail(struct probe *p, uint64_t *counter, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void probe_fail(struct probe *p, uint64_t *counter, const char *fmt, ...)
{
    char detail[DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (counter)
        (*counter)++;
    probe_finish(p, false, 0, detail);
}

static void on_timeout(uv_timer_t *t)
{
    struct probe *p = t->data;

    if (p->err[0]) {
        char detail[DETAIL_MAX];
        memcpy(detail, p->err, sizeof detail);
        probe_fail(p, &p->s->stats.transport_errors, "%s", detail);
    } else {
        probe_fail(p, &p->s->stats.timeouts, "timeout");
    }
}

/* Fails the probe from the loop rather than inside dw_sip_probe, so cb never runs re-entrantly. */
static void probe_defer_error(struct probe *p, const char *detail)
{
    snprintf(p->err, sizeof p->err, "%s", detail);
    uv_timer_stop(&p->timeout);
    uv_timer_start(&p->timeout, on_timeout, 0, 0);
}

/* ---- request ---- */

static int build_request(struct probe *p, const char *ip, unsigned port)
{
    const struct dw_probe_spec *spec = p->spec;
    static const char *const tnames[] = {"UDP", "TCP", "TLS"};
    const char *contact_suffix = spec->transport == DW_SIP_TCP ? ";transport=tcp" : "";
    char uri[DW_URL_MAX + 8];
    int n;

    if (spec->request_uri[0])
        snprintf(uri, sizeof uri, "%s", spec->request_uri);
    else
        snprintf(uri, sizeof uri, "%s:%s", spec->transport == DW_SIP_TLS ? "sips" : "sip",
                 spec->address);
    snprintf(p->call_id, sizeof p->call_id, "%s@%s", p->call_id_rand, ip);

    n = asprintf(&p->req,
                 "OPTIONS %s SIP/2.0\r\n"
                 "Via: SIP/2.0/%s %s:%u;branch=%s;rport\r\n"
                 "Max-Forwards: 70\r\n"
                 "From: <sip:drwatch@%s>;tag=%s\r\n"
                 "To: <%s>\r\n"
                 "Call-ID: %s\r\n"
                 "CSeq: %u OPTIONS\r\n"
                 "Contact: <%s:drwatch@%s:%u%s>\r\n"
                 "Accept: application/sdp\r\n"
                 "User-Agent: drwatch\r\n"
                 "Content-Length: 0\r\n"
                 "\r\n",
                 uri, tnames[spec->transport], ip, port, p->branch, ip, p->tag, uri, p->call_id,
                 p->cseq, spec->transport == DW_SIP_TLS ? "sips" : "sip", ip, port, contact_suffix);
    if (n < 0) {
        p->req = NULL;
        return -1;
    }
    p->req_len = (size_t)n;
    return 0;
}

/* ---- responses ---- */

enum verdict { V_MALFORMED, V_UNMATCHED, V_PROVISIONAL, V_FINAL };

/* Parses one message; *pp is the probe it answers (for UDP, found by Call-ID; for streams, the
 * connection's probe, checked). Fills code and a printable "code reason". */
static enum verdict classify(struct dw_sip *s, const char *buf, size_t len, struct probe **pp,
                             int *code, char *detail, size_t detail_len)
{
    struct dw_sip_resp r;
    const char *why;
    struct probe *p;

    switch (dw_sip_parse(buf, len, &r, &why)) {
    case DW_SIP_MALFORMED:
        return V_MALFORMED;
    case DW_SIP_REQUEST:
        return V_UNMATCHED; /* nobody asked us, nobody gets an answer */
    case DW_SIP_RESPONSE:
        break;
    }
    p = *pp ? *pp : bucket_find(s, r.call_id);
    if (p == NULL || strcmp(p->call_id, r.call_id) != 0 || strcmp(r.cseq_method, "OPTIONS") != 0 ||
        r.cseq != p->cseq || strcmp(r.branch, p->branch) != 0)
        return V_UNMATCHED;
    *pp = p;
    *code = r.code;
    snprintf(detail, detail_len, "%s", r.status);
    return r.code < 200 ? V_PROVISIONAL : V_FINAL;
}

/* Applies one parsed message to the stats and its probe. */
static void handle_message(struct dw_sip *s, struct probe *conn, const char *buf, size_t len)
{
    struct probe *p = conn;
    char detail[DETAIL_MAX] = "";
    int code = 0;

    switch (classify(s, buf, len, &p, &code, detail, sizeof detail)) {
    case V_MALFORMED:
        s->stats.malformed++;
        return;
    case V_UNMATCHED:
        s->stats.unmatched++;
        return;
    case V_PROVISIONAL:
        /* RFC 3261 §17.1.2.2: after a provisional answer, retransmit at T2 */
        p->retrans_ms = SIP_T2_MS;
        return;
    case V_FINAL:
        s->stats.answered++;
        probe_finish(p, code_alive(p->spec, code), code, detail);
        return;
    }
}

/* ---- UDP ---- */

static void on_usent(uv_udp_send_t *req, int status)
{
    struct usend *u = (struct usend *)req;

    if (status < 0 && status != UV_ECANCELED)
        u->s->stats.transport_errors++;
    free(u);
}

static int udp_send(struct probe *p)
{
    struct dw_sip *s = p->s;
    uv_buf_t b = uv_buf_init(p->req, (unsigned)p->req_len);
    struct usend *u;
    int r;

    r = uv_udp_try_send(&s->udp, &b, 1, (const struct sockaddr *)&p->dst);
    if (r >= 0)
        return 0;
    if (r != UV_EAGAIN)
        return r;
    /* the socket buffer is full: queue a copy, the probe may be gone before the send completes */
    u = malloc(sizeof *u + p->req_len);
    if (u == NULL)
        return UV_ENOMEM;
    u->s = s;
    memcpy(u->data, p->req, p->req_len);
    b = uv_buf_init(u->data, (unsigned)p->req_len);
    r = uv_udp_send(&u->req, &s->udp, &b, 1, (const struct sockaddr *)&p->dst, on_usent);
    if (r < 0)
        free(u);
    return r;
}

static void on_retrans(uv_timer_t *t)
{
    struct probe *p = t->data;
    int r = udp_send(p);

    if (r < 0) {
        probe_fail(p, &p->s->stats.transport_errors, "send: %s", uv_strerror(r));
        return;
    }
    /* RFC 3261 Timer E: T1 doubling, capped at T2 */
    p->retrans_ms = p->retrans_ms * 2 > SIP_T2_MS ? SIP_T2_MS : p->retrans_ms * 2;
    uv_timer_start(&p->retrans, on_retrans, p->retrans_ms, 0);
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct dw_sip *s = h->data;

    (void)suggested;
    *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                        unsigned flags)
{
    struct dw_sip *s = h->data;

    if (nread < 0) {
        s->stats.transport_errors++;
        return;
    }
    if (addr == NULL) /* nothing more to read */
        return;
    if (s->closing)
        return;
    if (flags & UV_UDP_PARTIAL) {
        s->stats.malformed++;
        return;
    }
    handle_message(s, NULL, buf->base, (size_t)nread);
}

/* The source address the kernel would use towards dst: connect() on a UDP socket only looks up
 * the route, nothing is sent and nothing blocks. */
static int route_source(const struct sockaddr_in *dst, char *ip, size_t iplen)
{
    struct sockaddr_in src;
    socklen_t sl = sizeof src;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r = -1;

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) == 0 &&
        getsockname(fd, (struct sockaddr *)&src, &sl) == 0 &&
        inet_ntop(AF_INET, &src.sin_addr, ip, (socklen_t)iplen) != NULL)
        r = 0;
    close(fd);
    return r;
}

static void udp_start(struct probe *p)
{
    struct dw_sip *s = p->s;
    char ip[INET_ADDRSTRLEN];
    int r;

    if (s->local_ip[0])
        snprintf(ip, sizeof ip, "%s", s->local_ip);
    else if (route_source(&p->dst, ip, sizeof ip) != 0) {
        probe_defer_error(p, "send: no route");
        return;
    }
    if (build_request(p, ip, s->udp_port) != 0) {
        probe_defer_error(p, "out of memory");
        return;
    }
    bucket_add(s, p);
    r = udp_send(p);
    if (r < 0) {
        char d[DETAIL_MAX];
        snprintf(d, sizeof d, "send: %s", uv_strerror(r));
        probe_defer_error(p, d);
        return;
    }
    p->retrans_ms = SIP_T1_MS;
    uv_timer_start(&p->retrans, on_retrans, p->retrans_ms, 0);
}

/* ---- TCP and TLS ---- */

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error or the timeout */
    free(req);
}

static int stream_write(struct probe *p, const char *data, size_t len)
{
    struct wreq *w = malloc(sizeof *w + len);
    uv_buf_t b;
    int r;

    if (w == NULL)
        return UV_ENOMEM;
    memcpy(w->data, data, len);
    b = uv_buf_init(w->data, (unsigned)len);
    r = uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_written);
    if (r < 0)
        free(w);
    return r;
}

/* Sends what OpenSSL queued in its outgoing memory BIO. */
static int tls_flush(struct probe *p)
{
    char buf[16384];
    int n;

    while ((n = BIO_read(p->wbio, buf, sizeof buf)) > 0) {
        int r = stream_write(p, buf, (size_t)n);
        if (r < 0)
            return r;
    }
    return 0;
}

static void tls_error_text(struct probe *p, const char *what, char *out, size_t outlen)
{
    long vr = SSL_get_verify_result(p->ssl);
    unsigned long e = ERR_peek_last_error();
    char ebuf[128] = "";

    if (vr != X509_V_OK) {
        snprintf(out, outlen, "tls: certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        return;
    }
    if (e != 0)
        ERR_error_string_n(e, ebuf, sizeof ebuf);
    snprintf(out, outlen, "tls: %s%s%s", what, ebuf[0] ? ": " : "", ebuf);
}

static void stream_consume(struct probe *p)
{
    struct dw_sip *s = p->s;

    while (!p->done && p->msg_len > 0) {
        size_t skip;
        const char *why;
        long n = dw_sip_frame(p->msg, p->msg_len, &skip, &why);

        if (n < 0) {
            probe_fail(p, &s->stats.malformed, "malformed response: %s", why);
            return;
        }
        if (skip) {
            memmove(p->msg, p->msg + skip, p->msg_len - skip);
            p->msg_len -= skip;
        }
        if (n == 0)
            return;
        handle_message(s, p, p->msg, (size_t)n);
        if (p->done)
            return;
        memmove(p->msg, p->msg + n, p->msg_len - (size_t)n);
        p->msg_len -= (size_t)n;
    }
}

static int msg_append(struct probe *p, const char *data, size_t len)
{
    if (p->msg_len + len > p->msg_cap) {
        size_t cap = p->msg_cap ? p->msg_cap : 2048;
        char *m;
        while (cap < p->msg_len + len)
            cap *= 2;
        m = realloc(p->msg, cap);
        if (m == NULL)
            return -1;
        p->msg = m;
        p->msg_cap = cap;
    }
    memcpy(p->msg + p->msg_len, data, len);
    p->msg_len += len;
    return 0;
}

/* Advances the handshake, then moves decrypted bytes into p->msg. Returns -1 when p finished. */
static int tls_pump(struct probe *p)
{
    struct dw_sip *s = p->s;
    char detail[DETAIL_MAX];
    char buf[16384];
    int r;

    if (!p->hs_done) {
        ERR_clear_error();
        r = SSL_do_handshake(p->ssl);
        if (r == 1) {
            p->hs_done = true;
            if (SSL_write(p->ssl, p->req, (int)p->req_len) <= 0) {
                tls_error_text(p, "write", detail, sizeof detail);
                probe_fail(p, &s->stats.transport_errors, "%s", detail);
                return -1;
            }
        } else if (SSL_get_error(p->ssl, r) != SSL_ERROR_WANT_READ) {
            tls_error_text(p, "handshake failed", detail, sizeof detail);
            tls_flush(p); /* let the peer see our alert */
            probe_fail(p, &s->stats.transport_errors, "%s", detail);
            return -1;
        }
    }
    while (p->hs_done) {
        ERR_clear_error();
        r = SSL_read(p->ssl, buf, sizeof buf);
        if (r > 0) {
            if (msg_append(p, buf, (size_t)r) != 0) {
                probe_fail(p, &s->stats.transport_errors, "out of memory");
                return -1;
            }
            continue;
        }
        r = SSL_get_error(p->ssl, r);
        if (r == SSL_ERROR_WANT_READ)
            break;
        if (r == SSL_ERROR_ZERO_RETURN) {
            probe_fail(p, &s->stats.transport_errors, "connection closed");
            return -1;
        }
        tls_error_text(p, "read", detail, sizeof detail);
        probe_fail(p, &s->stats.transport_errors, "%s", detail);
        return -1;
    }
    r = tls_flush(p);
    if (r < 0) {
        probe_fail(p, &s->stats.transport_errors, "write: %s", uv_strerror(r));
        return -1;
    }
    return 0;
}

static void on_stream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct probe *p = h->data;

    (void)suggested;
    *buf = uv_buf_init(p->s->rbuf, sizeof p->s->rbuf);
}

static void on_stream_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    struct probe *p = h->data;
    struct dw_sip *s = p->s;

    if (p->done || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && p->msg_len > 0)
            probe_fail(p, &s->stats.malformed, "truncated response");
        else if (nread == UV_EOF)
            probe_fail(p, &s->stats.transport_errors, "connection closed");
        else
            probe_fail(p, &s->stats.transport_errors, "read: %s", uv_strerror((int)nread));
        return;
    }
    if (p->ssl) {
        if (BIO_write(p->rbio, buf->base, (int)nread) != (int)nread) {
            probe_fail(p, &s->stats.transport_errors, "out of memory");
            return;
        }
        if (tls_pump(p) != 0)
            return;
    } else if (msg_append(p, buf->base, (size_t)nread) != 0) {
        probe_fail(p, &s->stats.transport_errors, "out of memory");
        return;
    }
    stream_consume(p);
}

static struct tls_ctx *tls_ctx_get(struct dw_sip *s, const struct dw_probe_spec *spec)
{
    struct tls_ctx *t;
    SSL_CTX *ctx;

    for (t = s->tls; t; t = t->next)
        if (t->verify == spec->verify_tls && strcmp(t->ca_file, spec->ca_file) == 0 &&
            strcmp(t->client_cert, spec->client_cert) == 0 &&
            strcmp(t->client_key, spec->client_key) == 0)
            return t;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->verify = spec->verify_tls;
    snprintf(t->ca_file, sizeof t->ca_file, "%s", spec->ca_file);
    snprintf(t->client_cert, sizeof t->client_cert, "%s", spec->client_cert);
    snprintf(t->client_key, sizeof t->client_key, "%s", spec->client_key);
    t->next = s->tls;
    s->tls = t;

    ERR_clear_error();
    ctx = t->ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(t->err, sizeof t->err, "tls: cannot create context");
        return t;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (t->verify) {
        int ok = t->ca_file[0] ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL)
                               : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1)
            snprintf(t->err, sizeof t->err, "tls: cannot load CA file %s", t->ca_file);
    }
    if (!t->err[0] && t->client_cert[0]) {
        const char *key = t->client_key[0] ? t->client_key : t->client_cert;
        if (SSL_CTX_use_certificate_chain_file(ctx, t->client_cert) != 1)
            snprintf(t->err, sizeof t->err, "tls: cannot load client certificate %s",
                     t->client_cert);
        else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_check_private_key(ctx) != 1)
            snprintf(t->err, sizeof t->err, "tls: cannot load client key %s", key);
    }
    return t;
}

static int tls_setup(struct probe *p, char *err, size_t errlen)
{
    const struct dw_probe_spec *spec = p->spec;
    struct tls_ctx *t = tls_ctx_get(p->s, spec);
    struct in_addr ip;

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (t->err[0]) {
        snprintf(err, errlen, "%s", t->err);
        return -1;
    }
    p->ssl = SSL_new(t->ctx);
    p->rbio = BIO_new(BIO_s_mem());
    p->wbio = BIO_new(BIO_s_mem());
    if (p->ssl == NULL || p->rbio == NULL || p->wbio == NULL) {
        BIO_free(p->rbio);
        BIO_free(p->wbio);
        p->rbio = p->wbio = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    SSL_set_bio(p->ssl, p->rbio, p->wbio);
    SSL_set_connect_state(p->ssl);
    if (spec->tls_server_name[0]) {
        bool is_ip = inet_pton(AF_INET, spec->tls_server_name, &ip) == 1;
        if (!is_ip)
            SSL_set_tlsext_host_name(p->ssl, spec->tls_server_name);
        if (spec->verify_tls) {
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl),
                                                           spec->tls_server_name)
                           : SSL_set1_host(p->ssl, spec->tls_server_name);
            if (ok != 1) {
                snprintf(err, errlen, "tls: bad server name");
                return -1;
            }
        }
    }
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct probe *p = req->data;
    struct dw_sip *s = p->s;
    struct sockaddr_in local;
    int len = sizeof local;
    char ip[INET_ADDRSTRLEN], err[DETAIL_MAX];
    int r;

    if (p->done) /* cancelled by close */
        return;
    if (status < 0) {
        probe_fail(p, &s->stats.transport_errors, "connect: %s", uv_strerror(status));
        return;
    }
    if (uv_tcp_getsockname(&p->tcp, (struct sockaddr *)&local, &len) != 0 ||
        uv_ip4_name(&local, ip, sizeof ip) != 0) {
        probe_fail(p, &s->stats.transport_errors, "connect: no local address");
        return;
    }
    if (build_request(p, ip, ntohs(local.sin_port)) != 0) {
        probe_fail(p, &s->stats.transport_errors, "out of memory");
        return;
    }
    r = uv_read_start((uv_stream_t *)&p->tcp, on_stream_alloc, on_stream_read);
    if (r < 0) {
        probe_fail(p, &s->stats.transport_errors, "read: %s", uv_strerror(r));
        return;
    }
    if (p->spec->transport == DW_SIP_TLS) {
        if (tls_setup(p, err, sizeof err) != 0) {
            probe_fail(p, &s->stats.transport_errors, "%s", err);
            return;
        }
        tls_pump(p); /* ClientHello */
        return;
    }
    r = stream_write(p, p->req, p->req_len);
    if (r < 0)
        probe_fail(p, &s->stats.transport_errors, "write: %s", uv_strerror(r));
}

static void tcp_start(struct probe *p)
{
    struct dw_sip *s = p->s;
    char d[DETAIL_MAX];
    int r;

    if (s->local_ip[0]) {
        struct sockaddr_in la;
        uv_ip4_addr(s->local_ip, 0, &la);
        r = uv_tcp_bind(&p->tcp, (const struct sockaddr *)&la, 0);
        if (r < 0)
            goto fail;
    }
    p->connect.data = p;
    r = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&p->dst, on_connect);
    if (r == 0)
        return;
fail:
    snprintf(d, sizeof d, "connect: %s", uv_strerror(r));
    probe_defer_error(p, d);
}

/* ---- public ---- */

int dw_sip_init(struct dw_sip **out, uv_loop_t *loop, const char *local_ip, char *errmsg, size_t errlen)
{
    struct dw_sip *s;
    struct sockaddr_in addr;
    int len = sizeof addr;
    int r;

    *out = NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    s->loop = loop;
    /* CSeq values need only be unique per Call-ID; a random start keeps them apart across runs */
    if (getrandom(&s->cseq, sizeof s->cseq, 0) != sizeof s->cseq) {
        snprintf(errmsg, errlen, "getrandom: %s", strerror(errno));
        free(s);
        return -1;
    }
    s->cseq %= 1000000;
    if (local_ip && local_ip[0] && strcmp(local_ip, "0.0.0.0") != 0)
        snprintf(s->local_ip, sizeof s->local_ip, "%s", local_ip);
    if (uv_ip4_addr(s->local_ip[0] ? s->local_ip : "0.0.0.0", 0, &addr) != 0) {
        snprintf(errmsg, errlen, "bad local address \"%s\"", local_ip);
        free(s);
        return -1;
    }
    r = uv_udp_init(loop, &s->udp);
    if (r < 0) {
        snprintf(errmsg, errlen, "udp: %s", uv_strerror(r));
        free(s);
        return -1;
    }
    s->udp.data = s;
    s->refs = 1;
    r = uv_udp_bind(&s->udp, (const struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_udp_getsockname(&s->udp, (struct sockaddr *)&addr, &len);
    if (r == 0)
        r = uv_udp_recv_start(&s->udp, on_udp_alloc, on_udp_recv);
    if (r < 0) {
        snprintf(errmsg, errlen, "udp bind %s: %s", s->local_ip[0] ? s->local_ip : "0.0.0.0",
                 uv_strerror(r));
        dw_sip_close(s);
        return -1;
    }
    s->udp_port = ntohs(addr.sin_port);
    *out = s;
    return 0;
}

static void on_udp_closed(uv_handle_t *h)
{
    struct dw_sip *s = h->data;

    s->refs--;
    sip_maybe_free(s);
}

void dw_sip_close(struct dw_sip *s)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    while (s->probes)
        probe_finish(s->probes, false, 0, "closed");
    uv_close((uv_handle_t *)&s->udp, on_udp_closed);
}

static bool uri_ok(const char *u)
{
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || *u == '<' || *u == '>' || *u == 0x7f)
            return false;
    return true;
}

int dw_sip_prepare(struct dw_sip *s, const struct dw_probe_spec *spec, char *errmsg,
                   size_t errlen)
{
    struct tls_ctx *t;

    if (spec->transport != DW_SIP_TLS)
        return 0;
    t = tls_ctx_get(s, spec);
    if (t == NULL || t->err[0]) {
        snprintf(errmsg, errlen, "%s", t ? t->err : "out of memory");
        return -1;
    }
    return 0;
}

int dw_sip_probe(struct dw_sip *s, const struct dw_probe_spec *spec, dw_sip_cb cb, void *data)
{
    struct probe *p;
    char host[DW_ADDR_MAX];
    char *colon;
    long port;
    int r;

    if (s == NULL || s->closing || spec == NULL || cb == NULL || spec->transport < DW_SIP_UDP ||
        spec->transport > DW_SIP_TLS || !uri_ok(spec->request_uri))
        return -1;
    snprintf(host, sizeof host, "%s", spec->address);
    colon = strrchr(host, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    port = strtol(colon + 1, NULL, 10);
    if (port < 1 || port > 65535)
        return -1;

    p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    if (uv_ip4_addr(host, (int)port, &p->dst) != 0 || rand_hex(p->call_id_rand, 16) != 0 ||
        rand_hex(p->branch + 7, 12) != 0 || rand_hex(p->tag, 8) != 0) {
        free(p);
        return -1;
    }
    memcpy(p->branch, "z9hG4bK", 7); /* RFC 3261 §8.1.1.7 magic cookie */
    p->s = s;
    p->spec = spec;
    p->cb = cb;
    p->data = data;
    p->cseq = ++s->cseq;

    r = uv_timer_init(s->loop, &p->timeout);
    if (r < 0) {
        free(p);
        return -1;
    }
    p->timeout.data = p;
    p->open_handles = 1;
    if (spec->transport == DW_SIP_UDP) {
        uv_timer_init(s->loop, &p->retrans);
        p->retrans.data = p;
        p->retrans_init = true;
        p->open_handles++;
    } else if (uv_tcp_init(s->loop, &p->tcp) == 0) {
        p->tcp.data = p;
        p->tcp_init = true;
        p->open_handles++;
    }
    s->refs++;
    p->next = s->probes;
    if (s->probes)
        s->probes->prev = p;
    s->probes = p;
    s->stats.sent++;

    /* the loop's cached time may be stale when called from outside a callback */
    uv_update_time(s->loop);
    uv_timer_start(&p->timeout, on_timeout, spec->timeout_ms ? spec->timeout_ms : 1000, 0);
    if (spec->transport == DW_SIP_UDP)
        udp_start(p);
    else if (p->tcp_init)
        tcp_start(p);
    else
        probe_defer_error(p, "connect: cannot create socket");
    return 0;
}

void dw_sip_stats(const struct dw_sip *s, struct dw_sip_stats *out)
{
    if (s == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->stats;
}
