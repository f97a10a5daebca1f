#!/usr/bin/python3
"""A counting, fault-injecting HTTP proxy for the integration tests (see blob_proxy.h).

Listens on 127.0.0.1 only and forwards every request unchanged (Host header and repeated
header lines included, so
registry URLs in Location headers keep naming the proxy) to one upstream registry on
127.0.0.1. For each request it appends one JSON line to the log file:

  {"method", "path", "range", "status", "bytes", "digest", "start", "flipped", "aborted"}

where bytes counts the response body bytes actually sent to the client, digest is the blob
digest of a /v2/<repo>/blobs/<digest> path ("" otherwise) and start is the blob offset of the
body's first byte (from Content-Range, 0 for a whole-blob 200, -1 when not a blob body).

Faults: the control file (JSON, re-read on every request, replaced atomically by the test)
may hold {"flips": [{"digest": "sha256:...", "offset": N}]}: the lowest bit of blob byte N is
inverted in every response body that carries it; and {"faults": [{"path": S, "mode": M,
"after": N}]} for GET responses whose path contains S (the first fault that matches):
  stall    N body bytes are sent, then nothing, until the client goes away (an extra log
           line with "stalled": true is written when the silence starts, before the request's
           own line at its end);
  cut      N body bytes are sent, then the connection is closed (a truncated body);
  endless  the body is sent without Content-Length and followed by zeros without end (an
           over-long body), until the client goes away;
  status   the request is answered with HTTP "status" (an error body as registries send it,
           and "Retry-After" when the fault has "retry_after"), without asking the registry;
           401 is the registry's own answer to the request without its Authorization (so it
           carries the registry's Bearer challenge): the token is refused, as when it expired.
A fault with "times": N applies to the first N requests it matches only (each fault has an
"id" under which the proxy counts them); without it, to every one. A missing or empty file
means pass-through.

Redirects: with {"redirect_blobs": "http://127.0.0.1:PORT"} in the control file, GET and
HEAD of /v2/<repo>/blobs/<digest> are answered 307 with Location: that origin + the path,
as registries send blob downloads to a CDN.

Every log line also carries "authorization": the request's Authorization header ("" when
none), so a test can see which credentials reached which host.

Paging: with {"tags_page_size": N} in the control file, GET /v2/<repo>/tags/list answers with
at most N tags (fewer when the request's ?n= asks for fewer) after the request's ?last=, in
lexical order, and a Link: <...?n=N&last=...>; rel="next" header while more remain: the
pagination of the distribution spec, as Docker Hub and distribution 3 serve it (distribution
2.8 always sends the whole list in one page).

The proxy exits when its parent (the test binary) goes away, so it never outlives a test.
Python 3 standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import select
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade",
}
TAGS_PATH = re.compile(r"^(/v2/.+/tags/list)(?:\?(.*))?$")
BLOB_PATH = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})(?:\?.*)?$")
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
PIECE = 1 << 20


class Proxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, upstream_port, log_path, control_path):
        super().__init__(addr, Handler)
        self.upstream_port = upstream_port
        self.control_path = control_path
        self.log_lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)
        self.fault_lock = threading.Lock()
        self.fault_uses = {}  # fault id -> requests it was applied to

    def control(self):
        if not self.control_path:
            return {}
        try:
            with open(self.control_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def flips(self, digest):
        if not digest:
            return []
        return [int(x["offset"]) for x in self.control().get("flips", [])
                if x.get("digest") == digest]

    def fault(self, path):
        for x in self.control().get("faults", []):
            if x.get("path", "") not in path:
                continue
            times = int(x.get("times", 0) or 0)
            if times > 0:
                with self.fault_lock:
                    used = self.fault_uses.get(x.get("id"), 0)
                    if used >= times:
                        continue
                    self.fault_uses[x.get("id")] = used + 1
            return x
        return None

    def record(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.log_lock:
            self.log.write(line + "\n")
            self.log.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection
    # waits for the client's delayed ACK (40 ms) on every response. Registries set
    # TCP_NODELAY (Go does by default), so the proxy must too, or it measures itself.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # the JSON log is the record; keep stderr quiet
        pass

    def do_GET(self):
        self.forward()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

    def forward(self):
        server = self.server
        self._logged = None
        page_size = int(server.control().get("tags_page_size", 0) or 0)
        tags = TAGS_PATH.match(self.path)
        if page_size > 0 and tags and self.command == "GET":
            self.page_tags(tags.group(1), urllib.parse.parse_qs(tags.group(2) or ""), page_size)
            return
        entry = {"method": self.command, "path": self.path,
                 "range": self.headers.get("Range", ""), "status": 0, "bytes": 0,
                 "digest": "", "start": -1, "flipped": False, "aborted": False,
                 "authorization": self.headers.get("Authorization", "")}
        redirect = server.control().get("redirect_blobs", "")
        if redirect and self.command in ("GET", "HEAD") and BLOB_PATH.match(self.path):
            entry["status"] = 307
            self.send_response(307)
            self.send_header("Location", redirect + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.log_entry(entry)
            return
        fault = server.fault(self.path) if self.command == "GET" else None
        mode = fault["mode"] if fault else ""
        if mode == "status" and int(fault.get("status", 0)) != 401:
            self.answer_status(entry, fault)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port,
                                                  timeout=120)
            # Every header line, repeated ones included: skopeo sends one Accept line per
            # manifest type, and a registry that saw only the last would refuse OCI manifests.
            upstream.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() in HOP_BY_HOP:
                    continue
                if mode == "status" and key.lower() == "authorization":
                    continue  # the 401 fault: the registry refuses the request
                upstream.putheader(key, value)
            upstream.endheaders(body)
            resp = upstream.getresponse()
            entry["status"] = resp.status
            m = BLOB_PATH.match(self.path)
            if m and self.command == "GET" and resp.status in (200, 206):
                entry["digest"] = m.group(1)
                entry["start"] = 0
                if resp.status == 206:
                    cr = CONTENT_RANGE.match(resp.getheader("Content-Range", ""))
                    entry["start"] = int(cr.group(1)) if cr else -1
            flips = server.flips(entry["digest"]) if entry["start"] >= 0 else []
            after = int(fault.get("after", 0)) if fault else -1
            if mode:
                entry["fault"] = mode

            declared = resp.getheader("Content-Length")
            chunked = declared is None and self.command != "HEAD"
            buffered = resp.read() if chunked else None
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                    continue
                self.send_header(k, v)
            if mode == "endless":
                self.send_header("Connection", "close")
                self.close_connection = True
            elif chunked:
                self.send_header("Content-Length", str(len(buffered)))
            elif declared is not None:
                self.send_header("Content-Length", declared)
            if self.command == "HEAD" or declared == "0" or (chunked and not buffered):
                self.log_entry(entry)  # the headers are the whole response
            self.end_headers()
            if self.command == "HEAD":
                upstream.close()
                return
            pos = entry["start"] if entry["start"] >= 0 else 0
            pending = b""  # the last piece read, sent once the next one is known
            while True:
                if buffered is not None:
                    data, buffered = buffered, None
                else:
                    data = resp.read(PIECE)
                if not data:
                    break
                if after >= 0 and mode in ("stall", "cut"):
                    room = after - entry["bytes"]
                    if room <= 0:
                        break
                    data = data[:room]
                if flips:
                    piece = bytearray(data)
                    for off in flips:
                        if pos <= off < pos + len(piece):
                            piece[off - pos] ^= 1
                            entry["flipped"] = True
                    data = bytes(piece)
                if pending:
                    self.wfile.write(pending)
                entry["bytes"] += len(data)
                pos += len(data)
                pending = data
            if mode == "stall":
                if pending:
                    self.wfile.write(pending)
                self.wfile.flush()
                upstream.close()
                server.record(dict(entry, stalled=True))
                self.wait_for_client_to_leave()
                self.close_connection = True
                return
            if mode == "endless":
                if pending:
                    self.wfile.write(pending)
                upstream.close()
                zeros = bytes(PIECE)
                while True:
                    self.wfile.write(zeros)
                    entry["bytes"] += len(zeros)
            self.log_entry(entry)
            if pending:
                self.wfile.write(pending)
            self.wfile.flush()
            upstream.close()
            if mode == "cut":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            entry["aborted"] = True
            entry["error"] = str(e)
            self.close_connection = True
        finally:
            self.log_entry(entry)

    def answer_status(self, entry, fault):
        """The "status" fault: an error answer of the proxy's own."""
        status = int(fault["status"])
        codes = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}
        body = json.dumps({"errors": [{"code": codes.get(status, "UNKNOWN"),
                                       "message": "injected by the test's fault proxy"}]})
        data = body.encode()
        entry["status"] = status
        entry["fault"] = "status"
        try:
            if self.headers.get("Content-Length"):
                self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if fault.get("retry_after"):
                self.send_header("Retry-After", str(fault["retry_after"]))
            self.end_headers()
            entry["bytes"] = len(data)
            self.log_entry(entry)
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as e:
            entry["aborted"] = True
            entry["error"] = str(e)
            self.close_connection = True
        finally:
            self.log_entry(entry)

    def wait_for_client_to_leave(self):
        """Sends nothing until the client closes the connection (or an hour passes)."""
        deadline = time.time() + 3600
        while time.time() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if readable:
                try:
                    if not self.connection.recv(65536):
                        return
                except OSError:
                    return

    def log_entry(self, entry):
        """Logs the request once. Called before the response's last bytes go out, so a
        client that has its whole response finds the request in the log (a failure while
        those bytes are sent is then not logged)."""
        if getattr(self, "_logged", None) is entry:
            return
        self._logged = entry
        self.server.record(entry)


    def page_tags(self, path, query, page_size):
        """One page of the upstream's whole tags list (see the module doc)."""
        server = self.server
        self._logged = None
        entry = {"method": self.command, "path": self.path, "range": "", "status": 0,
                 "bytes": 0, "digest": "", "start": -1, "flipped": False, "aborted": False}
        try:
            upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port,
                                                  timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request("GET", path, headers=headers)
            resp = upstream.getresponse()
            body = resp.read()
            upstream.close()
            status = resp.status
            extra = []
            content_type = resp.getheader("Content-Type", "application/json")
            if status == 200:
                doc = json.loads(body)
                all_tags = sorted(doc.get("tags") or [])
                n = page_size
                if "n" in query:
                    n = min(n, int(query["n"][0]))
                last = query.get("last", [""])[0]
                rest = [t for t in all_tags if t > last] if last else all_tags
                doc["tags"] = rest[:n]
                if len(rest) > n:
                    nxt = urllib.parse.urlencode({"n": n, "last": rest[n - 1]})
                    extra.append(("Link", "<%s?%s>; rel=\"next\"" % (path, nxt)))
                body = json.dumps(doc).encode()
                content_type = "application/json"
            entry["status"] = status
            self.send_response_only(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            entry["bytes"] = len(body)
            self.log_entry(entry)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError, ValueError) as e:
            entry["aborted"] = True
            entry["error"] = str(e)
            self.close_connection = True
        finally:
            self.log_entry(entry)


def watch_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--control", default="")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    proxy = Proxy(("127.0.0.1", 0), args.upstream_port, args.log, args.control)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(proxy.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
