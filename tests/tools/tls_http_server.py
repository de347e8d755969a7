#!/usr/bin/env python3
"""A small HTTP(S) server for probe tests, answering by path:
  /status/<code>   that status with body "status <code>\\n"
  /body/<text>     200 with body <text>
  /sleep/<ms>      200 after <ms> milliseconds
  /garbage         bytes that are not HTTP, then close
  anything else    200 "ok\\n"
Options: --cert/--key serve TLS; --client-ca also requires a client certificate signed by it.
Prints "READY <port>" on stdout once listening on 127.0.0.1; exits on SIGTERM.
"""
import argparse
import signal
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # Handshake here, in the request's thread: a stalled client never blocks accept().
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5)
            self.request.do_handshake()
        super().setup()

    def do_GET(self):
        parts = self.path.split("/")
        if self.path == "/garbage":
            self.wfile.write(b"\x00\xffGARBAGE\r\n\r\n")
            self.close_connection = True
            return
        code, body = 200, b"ok\n"
        if len(parts) >= 3 and parts[1] == "status" and parts[2].isdigit():
            code = int(parts[2])
            body = b"status %d\n" % code
        elif len(parts) >= 3 and parts[1] == "body":
            body = "/".join(parts[2:]).encode()
        elif len(parts) >= 3 and parts[1] == "sleep" and parts[2].isdigit():
            time.sleep(int(parts[2]) / 1000.0)
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # failed handshakes are what some tests are about


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("READY %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
