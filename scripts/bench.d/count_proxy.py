#!/usr/bin/python3
"""A counting HTTP proxy in front of one registry on 127.0.0.1, for scripts/bench.

Forwards every request unchanged -- repeated headers included, since skopeo sends one Accept
line per manifest type and a registry that sees only the last one refuses OCI manifests --
and appends one JSON line per request to the log: {"method", "path", "status", "bytes"},
bytes being the response body bytes sent to the client. Listens on 127.0.0.1 only, writes
its port to --port-file, and exits when its parent goes away. Python 3 standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import socketserver
import sys
import threading
import time

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade",
}
PIECE = 1 << 20


class Proxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream_port, log_path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.upstream_port = upstream_port
        self.log_lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)

    def record(self, entry):
        with self.log_lock:
            self.log.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection
    # waits for the client's delayed ACK (40 ms) on every response. Registries set
    # TCP_NODELAY (Go does by default), so the proxy must too, or it measures itself.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        entry = {"method": self.command, "path": self.path, "status": 0, "bytes": 0}
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                                  timeout=120)
            upstream.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
            for key, value in self.headers.items():  # every line, duplicates included
                if key.lower() not in HOP_BY_HOP:
                    upstream.putheader(key, value)
            upstream.endheaders(body)
            resp = upstream.getresponse()
            entry["status"] = resp.status
            chunked = resp.getheader("Content-Length") is None and self.command != "HEAD"
            buffered = resp.read() if chunked else None
            self.send_response_only(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() in HOP_BY_HOP or (chunked and key.lower() == "content-length"):
                    continue
                self.send_header(key, value)
            if chunked:
                self.send_header("Content-Length", str(len(buffered)))
            self.end_headers()
            if self.command != "HEAD":
                while True:
                    if buffered is not None:
                        data, buffered = buffered, b""
                    else:
                        data = resp.read(PIECE)
                    if not data:
                        break
                    self.wfile.write(data)
                    entry["bytes"] += len(data)
            self.wfile.flush()
            upstream.close()
        except OSError as e:
            entry["error"] = str(e)
            self.close_connection = True
        finally:
            self.server.record(entry)

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET


def watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    proxy = Proxy(args.upstream_port, args.log)
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
