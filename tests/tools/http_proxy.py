#!/usr/bin/env python3
"""A forwarding HTTP proxy for tests: the egress proxy a site may put between drwatchd and the
Genesys API. It forwards absolute-URI requests (`GET http://host:port/path HTTP/1.1`) to
127.0.0.1 targets only and records each one; `GET /_proxy/log` (a relative URI, so not proxied)
returns the record as JSON: [{"method", "url", "status"}].

usage: http_proxy.py [--port 0]    prints "READY <port>" once listening; exits on SIGTERM."""
import argparse
import http.client
import json
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade"}


class Proxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.log = []

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.path == "/_proxy/log":
            with self.server.lock:
                return self.reply(200, json.dumps(self.server.log).encode())
        u = urllib.parse.urlsplit(self.path)
        if u.scheme != "http" or u.hostname != "127.0.0.1":
            # Only loopback targets: a test proxy must never reach out anywhere else.
            return self.reply(403, b'{"error": "only http://127.0.0.1 targets"}')
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        path = u.path + ("?" + u.query if u.query else "")
        # Recorded before the answer goes back, so whoever got an answer finds it in the log.
        entry = {"method": self.command, "url": self.path, "status": 502}
        with self.server.lock:
            self.server.log.append(entry)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", u.port or 80, timeout=30)
            conn.request(self.command, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            entry["status"] = r.status
            self.send_response(r.status, r.reason)
            for k, v in r.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
        except OSError as e:
            self.reply(502, json.dumps({"error": str(e)}).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = Proxy(("127.0.0.1", args.port))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("READY %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
