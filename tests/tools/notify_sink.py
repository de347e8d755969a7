#!/usr/bin/env python3
"""A notification receiver for tests: records every POST (path, headers, raw body, answer) and
answers like the service its path names:
  /slack/...      200 "ok"                      (Slack incoming webhook)
  /pagerduty/...  202 {"status":"success",...}  (PagerDuty Events API v2)
  anything else   200 "ok"                      (a webhook)
Control on the same port:
  GET  /_ctl/requests        [{"t","method","path","headers","body","status"}, ...]
  POST /_ctl/fail            {"path_prefix": "/slack", "status": 500, "count": N,
                              "retry_after": S (optional)}: the next N matching requests get it
  POST /_ctl/clear           forget the faults
  POST /_ctl/reset           forget requests and faults
Binds 127.0.0.1; prints "READY <port>" on stdout once listening; exits cleanly on SIGTERM."""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []  # [{"path_prefix", "status", "count", "retry_after"}]

    def answer(self, path):
        """(status, extra headers, body) for a POST to path; consumes a fault if one matches."""
        with self.lock:
            for f in self.faults:
                if f["count"] > 0 and path.startswith(f["path_prefix"]):
                    f["count"] -= 1
                    hdrs = {"Retry-After": str(f["retry_after"])} if f.get("retry_after") else {}
                    return f["status"], hdrs, json.dumps({"error": "injected"}).encode()
        if path.startswith("/pagerduty"):
            return 202, {}, json.dumps({"status": "success", "message": "Event processed"}).encode()
        return 200, {}, b"ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, body, headers=None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        sink = self.server.sink
        if self.path == "/_ctl/requests":
            with sink.lock:
                data = json.dumps(sink.requests).encode()
            self._reply(200, data)
        else:
            self._reply(404, b"{}")

    def do_POST(self):
        sink = self.server.sink
        raw = self._body()
        if self.path == "/_ctl/fail":
            f = json.loads(raw)
            with sink.lock:
                sink.faults.append({"path_prefix": f.get("path_prefix", "/"),
                                    "status": int(f.get("status", 500)),
                                    "count": int(f.get("count", 1)),
                                    "retry_after": f.get("retry_after")})
            self._reply(200, b"{}")
            return
        if self.path in ("/_ctl/reset", "/_ctl/clear"):
            with sink.lock:
                if self.path == "/_ctl/reset":
                    sink.requests.clear()
                sink.faults.clear()
            self._reply(200, b"{}")
            return
        status, hdrs, body = sink.answer(self.path)
        with sink.lock:
            sink.requests.append({"t": time.time(), "method": "POST", "path": self.path,
                                  "headers": {k: v for k, v in self.headers.items()},
                                  "body": raw.decode("utf-8", "replace"), "status": status})
        self._reply(status, body, hdrs)


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.sink = Sink()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print(f"READY {srv.server_address[1]}", flush=True)
    srv.serve_forever()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
