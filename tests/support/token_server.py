#!/usr/bin/python3
"""Bearer token server for imgfs integration tests (docker "token authentication" spec).

docker-registry, configured with `auth: token:` and this server's certificate as its
rootcertbundle, answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`.
A client then asks GET <realm>?service=S&scope=repository:NAME:pull[,push] with Basic
credentials; this server checks them and returns {"token": JWT, "access_token": JWT, ...}.

The JWT is RS256-signed with `openssl dgst -sha256 -sign` (no Python packages beyond the
standard library) and carries the certificate in its `x5c` header, which is how
distribution 2.x finds the verifying key: it checks the chain against the rootcertbundle,
then the signature, then iss == issuer, service in aud, nbf <= now <= exp, and the
requested action in `access`.

Requests without credentials or with wrong ones get 401, so a client that has no
credentials sees a clear authentication failure instead of a useless anonymous token.

OAuth2, as docker speaks it: a GET with offline_token=true (docker login) also returns a
"refresh_token", which docker stores as the `identitytoken`; a POST of the form
grant_type=refresh_token&refresh_token=..&service=..&scope=.. (space-separated scopes)
trades one for an access token, and grant_type=password&username=..&password=.. works too.
An unknown refresh token or grant gets 400 {"error": "invalid_grant"}, as OAuth2 servers
answer.

Usage: token_server.py --key K --cert C --issuer I --service S --users u:p[,u:p]
                       --port-file F   (the listening port is written there once ready)
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    def __init__(self, key, cert, issuer, service):
        self.key = key
        self.issuer = issuer
        self.service = service
        der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode("ascii")

    def issue(self, subject, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing_input.encode("ascii"), check=True,
                                   capture_output=True).stdout
        return signing_input + "." + b64url(signature)


def parse_scopes(values):
    """`repository:name:pull,push` (possibly several scope params) -> access claims."""
    access = []
    for value in values:
        for scope in value.split(" "):
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            # Repository names may contain ':' only in a host:port prefix; the type is the
            # first field and the actions the last.
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]),
                           "actions": [a for a in parts[-1].split(",") if a]})
    return access


def make_handler(issuer, users, path):
    refresh_tokens = {}  # refresh token -> user

    def new_refresh_token(user):
        token = uuid.uuid4().hex
        refresh_tokens[token] = user
        return token

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("token-server: " + (fmt % args) + "\n")
            sys.stderr.flush()

        def reply(self, code, body, extra_headers=()):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra_headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if urlparse(self.path).path != path:
                self.reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            field = lambda name: form.get(name, [""])[0]
            user = None
            if field("grant_type") == "refresh_token":
                user = refresh_tokens.get(field("refresh_token"))
            elif field("grant_type") == "password":
                if users.get(field("username")) == field("password"):
                    user = field("username")
            if user is None:
                self.reply(400, {"error": "invalid_grant"})
                return
            if field("service") and field("service") != issuer.service:
                self.reply(400, {"error": "unknown service"})
                return
            token = issuer.issue(user, parse_scopes(field("scope").split(" ")))
            body = {"access_token": token, "expires_in": 600, "scope": field("scope")}
            if field("access_type") == "offline":
                body["refresh_token"] = new_refresh_token(user)
            self.reply(200, body)

        def do_GET(self):
            url = urlparse(self.path)
            if url.path != path:
                self.reply(404, {"error": "not found"})
                return
            query = parse_qs(url.query)
            unauthorized = (401, {"errors": [{"code": "UNAUTHORIZED",
                                              "message": "authentication required"}]},
                            [("WWW-Authenticate", 'Basic realm="imgfs-test-token"')])
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                self.reply(*unauthorized)
                return
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except Exception:  # malformed header: same answer as wrong credentials
                self.reply(*unauthorized)
                return
            if users.get(user) != password:
                self.reply(*unauthorized)
                return
            if query.get("service", [issuer.service])[0] != issuer.service:
                self.reply(400, {"error": "unknown service"})
                return
            token = issuer.issue(user, parse_scopes(query.get("scope", [])))
            body = {"token": token, "access_token": token, "expires_in": 600,
                    "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if query.get("offline_token", [""])[0] == "true":
                body["refresh_token"] = new_refresh_token(user)
            self.reply(200, body)

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--path", default="/token")
    args = ap.parse_args()
    users = dict(u.split(":", 1) for u in args.users.split(",") if u)
    issuer = TokenIssuer(args.key, args.cert, args.issuer, args.service)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(issuer, users, args.path))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)  # atomic: the reader never sees a partial number
    server.serve_forever()


if __name__ == "__main__":
    main()
