#!/usr/bin/env python3
"""Simulated Genesys Edge: an HTTP health endpoint whose behaviour tests can switch.

GET /health answers according to the current mode:
  ok       200 "ok\\n"
  slow     sleep delay_ms, then 200
  status   answer with the configured HTTP status (after delay_ms, default 0)
  garbage  write bytes that are not HTTP, then close
  hang     accept and never answer; hold the socket until the client leaves
Control on the same port:
  POST /_ctl/mode  {"mode":..., "delay_ms":N, "status":N}
  GET  /_ctl/stats {"health_requests":N, "mode":..., ...}
  POST /_ctl/reset zero the counters and go back to mode "ok"
Prints "READY <port>" on stdout once listening; exits cleanly on SIGTERM.
"""
import argparse
import json
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "slow", "status", "garbage", "hang")
GARBAGE = b"\x00\xffGARBAGE\r\n\r\n"


class EdgeState:
    def __init__(self, name):
        self.lock = threading.Lock()
        self.name = name
        self.mode = "ok"
        self.delay_ms = 0
        self.status = 503
        self.health_requests = 0
        self.ctl_requests = 0

    def snapshot(self):
        with self.lock:
            return {"name": self.name, "mode": self.mode,
                    "delay_ms": self.delay_ms, "status": self.status,
                    "health_requests": self.health_requests}


class EdgeServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client resetting a kept-alive connection is normal here (probes time out and close).
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, addr, state):
        super().__init__(addr, EdgeHandler)
        self.state = state
        self.stopping = threading.Event()


class EdgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EdgeSim/1.0"

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body, ctype="text/plain"):
        if isinstance(body, (dict, list)):
            body = (json.dumps(body) + "\n").encode()
            ctype = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _hang(self):
        # Hold the connection open without answering until the peer closes it.
        self.close_connection = True
        conn = self.connection
        while not self.server.stopping.is_set():
            try:
                ready, _, _ = select.select([conn], [], [], 0.2)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    if not conn.recv(4096):
                        return
                except OSError:
                    return

    def _health(self):
        st = self.server.state
        with st.lock:
            st.health_requests += 1
            mode, delay, status = st.mode, st.delay_ms, st.status
        if mode == "hang":
            self._hang()
            return
        if mode == "garbage":
            self.close_connection = True
            try:
                self.wfile.write(GARBAGE)
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode in ("slow", "status") and delay > 0:
            time.sleep(delay / 1000.0)
        if mode == "status":
            self._send(status, "status %d\n" % status)
        else:
            self._send(200, "ok\n")

    def _ctl(self, body):
        st = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/_ctl/stats" and self.command == "GET":
            self._send(200, st.snapshot())
        elif path == "/_ctl/mode" and self.command == "POST":
            try:
                req = json.loads(body or b"{}")
                mode = req.get("mode", "ok")
                if mode not in MODES:
                    raise ValueError("unknown mode")
                delay = int(req.get("delay_ms", 1000 if mode == "slow" else 0))
                status = int(req.get("status", 503))
                if delay < 0 or not 100 <= status <= 599:
                    raise ValueError("bad delay_ms or status")
            except (ValueError, TypeError, AttributeError) as e:
                self._send(400, {"error": str(e)})
                return
            with st.lock:
                st.mode, st.delay_ms, st.status = mode, delay, status
            self._send(200, st.snapshot())
        elif path == "/_ctl/reset" and self.command == "POST":
            with st.lock:
                st.mode, st.delay_ms, st.status = "ok", 0, 503
                st.health_requests = 0
            self._send(200, st.snapshot())
        else:
            self._send(404, {"error": "unknown control path"})

    def _dispatch(self):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = self.path.split("?", 1)[0]
        if path.startswith("/_ctl/"):
            self._ctl(body)
        elif path == "/health" and self.command in ("GET", "HEAD"):
            self._health()
        elif path == "/health":
            self._send(405, "method not allowed\n")
        else:
            self._send(404, "not found\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="edge")
    args = ap.parse_args()

    server = EdgeServer((args.host, args.port), EdgeState(args.name))

    def on_signal(_signo, _frame):
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.stopping.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
