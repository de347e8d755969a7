#!/usr/bin/env python3
"""A fake SIP peer for tests/unit/test_sip.c: answers OPTIONS over UDP, TCP or TLS, optionally
preceded by malformed or mismatched responses, so the client's parser and matcher see what a real
UAS (sipp) never sends.

    sip_fake.py --transport udp|tcp|tls --script SCRIPT [--cert PEM --key PEM] [--client-ca PEM]

Listens on 127.0.0.1 (an ephemeral port unless --port), prints "PORT <n>" on stdout once ready,
runs until SIGTERM. Every request is checked against the header set drwatch must send; a request
missing one is answered "400 <what is missing>".

Scripts:
  ok              200 OK
  code:N          N with a generic reason phrase
  silent          never answer
  drop:N          ignore the first N copies of a request (per Call-ID), answer the next with 200;
                  a retransmission whose branch or CSeq differs is answered 500
  bad:K[,K...]    send each malformed/mismatched message K, then the correct 200; K is one of
                  truncated callid branch cseq oversized garbage nul request empty
  huge            (tcp/tls) a response over 64 KiB, then 200
  cut             (tcp/tls) half of a 200, then close
  close           (tcp/tls) close without answering
"""
import argparse
import random
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading

BAD_KINDS = ("truncated", "callid", "branch", "cseq", "oversized", "garbage", "nul", "request",
             "empty")


def parse_request(data):
    """Returns (first line, {lower-case name: first value}) or None."""
    text = data.decode("latin-1")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    if not lines or not lines[0].startswith("OPTIONS "):
        return None
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            hdrs.setdefault(name.strip().lower(), value.strip())
    return lines[0], hdrs


def check_request(first, h):
    """What is wrong with drwatch's request, or None."""
    if not re.fullmatch(r"OPTIONS sips?:\S+ SIP/2\.0", first):
        return "request line"
    via = h.get("via", "")
    if not re.fullmatch(r"SIP/2\.0/(UDP|TCP|TLS) [0-9.]+:\d+;branch=z9hG4bK[0-9a-f]+;rport", via):
        return "Via"
    checks = [
        ("max-forwards", r"70"),
        ("from", r"<sip:drwatch@[0-9.]+>;tag=[0-9a-f]+"),
        ("to", r"<sips?:\S+>"),
        ("call-id", r"[0-9a-f]+@[0-9.]+"),
        ("cseq", r"\d+ OPTIONS"),
        ("contact", r"<sips?:drwatch@[0-9.]+:\d+(;transport=tcp)?>"),
        ("accept", r"application/sdp"),
        ("user-agent", r"drwatch"),
        ("content-length", r"0"),
    ]
    for name, rx in checks:
        if not re.fullmatch(rx, h.get(name, "")):
            return name
    return None


def response(h, code=200, reason="OK", via=None, call_id=None, cseq=None, extra=""):
    return ("SIP/2.0 %d %s\r\n"
            "Via: %s\r\n"
            "From: %s\r\n"
            "To: %s;tag=fake%d\r\n"
            "Call-ID: %s\r\n"
            "CSeq: %s\r\n"
            "%s"
            "Server: sip_fake\r\n"
            "Content-Length: 0\r\n\r\n" % (
                code, reason, via or h["via"], h["from"], h["to"], code,
                call_id or h["call-id"], cseq or h["cseq"], extra)).encode("latin-1")


def bad_message(kind, h, stream):
    """One malformed or mismatched message. On streams each is framed (ends in a blank line) so
    the correct response after it can still be read."""
    if kind == "truncated":  # stops before Call-ID and CSeq
        return ("SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\n\r\n" % (h["via"], h["from"])).encode()
    if kind == "callid":
        return response(h, call_id="0000" + h["call-id"])
    if kind == "branch":
        return response(h, via=re.sub(r"branch=z9hG4bK[0-9a-f]+", "branch=z9hG4bKdeadbeef", h["via"]))
    if kind == "cseq":
        n, method = h["cseq"].split()
        return response(h, cseq="%d %s" % (int(n) + 1, method))
    if kind == "oversized":  # about 60 KB of headers, still under the 64 KiB stream cap
        pad = "".join("X-Pad-%d: %s\r\n" % (i, "a" * 290) for i in range(200))
        return response(h, call_id="big" + h["call-id"], extra=pad)
    if kind == "garbage":
        rnd = random.Random(7)
        body = bytes(rnd.choice([b for b in range(1, 256) if b not in (10, 13)]) for _ in range(700))
        return body + b"\r\n\r\n"
    if kind == "nul":
        good = response(h)
        i = good.index(b"\r\nTo: ") + 6
        return good[:i] + b"\0" + good[i:]
    if kind == "request":  # a request arriving where responses are expected
        return ("OPTIONS sip:drwatch@127.0.0.1 SIP/2.0\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\n"
                "Call-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n" % (
                    h["via"], h["from"], h["to"], h["call-id"], h["cseq"])).encode()
    if kind == "empty":
        return b"\r\n\r\n" if stream else b""
    raise ValueError(kind)


class Peer:
    def __init__(self, script):
        self.script = script
        self.seen = {}  # call-id -> (count, branch, cseq)
        self.lock = threading.Lock()

    def answer(self, data, stream):
        """The list of byte strings to send back for one request, or the string "close"."""
        req = parse_request(data)
        if req is None:
            return []
        first, h = req
        wrong = check_request(first, h)
        if wrong:
            return [response(h, 400, "Bad " + wrong)] if "via" in h else []
        s = self.script
        if s == "ok":
            return [response(h)]
        if s.startswith("code:"):
            code = int(s[5:])
            return [response(h, code, "Code %d" % code)]
        if s == "silent":
            return []
        if s.startswith("drop:"):
            with self.lock:
                cid = h["call-id"]
                branch = re.search(r"branch=([^;]+)", h["via"]).group(1)
                count, b0, c0 = self.seen.get(cid, (0, branch, h["cseq"]))
                self.seen[cid] = (count + 1, b0, c0)
            if (b0, c0) != (branch, h["cseq"]):
                return [response(h, 500, "Retransmission changed")]
            return [] if count < int(s[5:]) else [response(h)]
        if s.startswith("bad:"):
            return [bad_message(k, h, stream) for k in s[4:].split(",")] + [response(h)]
        if s == "huge":
            return [response(h, extra="X-Huge: " + "b" * 70000 + "\r\n"), response(h)]
        if s == "cut":
            good = response(h)
            return [good[:len(good) // 2], "close"]
        if s == "close":
            return ["close"]
        raise ValueError("unknown script " + s)


def serve_udp(sock, peer):
    while True:
        data, addr = sock.recvfrom(65535)
        for msg in peer.answer(data, False):
            if msg != "close":
                sock.sendto(msg, addr)


def make_stream_handler(peer, tls_ctx):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            conn = self.request
            try:
                if tls_ctx is not None:
                    conn = tls_ctx.wrap_socket(conn, server_side=True)
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    req, buf = buf.split(b"\r\n\r\n", 1)
                    for msg in peer.answer(req + b"\r\n\r\n", True):
                        if msg == "close":
                            return
                        conn.sendall(msg)
            except (OSError, ssl.SSLError):
                return
            finally:
                try:
                    conn.close()
                except OSError:
                    pass
    return Handler


class StreamServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    ap.add_argument("--script", default="ok")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    peer = Peer(args.script)

    if args.transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", args.port))
        print("PORT %d" % sock.getsockname()[1], flush=True)
        serve_udp(sock, peer)
        return
    tls_ctx = None
    if args.transport == "tls":
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            tls_ctx.verify_mode = ssl.CERT_REQUIRED
            tls_ctx.load_verify_locations(args.client_ca)
    srv = StreamServer(("127.0.0.1", args.port), make_stream_handler(peer, tls_ctx))
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
