#!/usr/bin/env python3
"""IMDSv2 stand-in for sandbox hosts: the part of EC2 instance metadata that
aws-config's IMDS client uses (region, instance profile credentials) plus
instance identity, with IMDSv2's session tokens enforced.

`hostctl sandbox up` runs it with the host's python3 inside the sandbox's
network namespace, bound to 169.254.169.254:80 on that namespace's `lo`.
Standard library only. Logs the request line and status, never tokens or
credentials.
"""

import argparse
import datetime
import json
import secrets
import string
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
# Credentials last an hour and are replaced 15 minutes before they expire,
# roughly as EC2 does, so a long-running client sees a refresh.
CREDENTIALS_LIFETIME = 3600
CREDENTIALS_REFRESH_BEFORE = 900


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


class Metadata:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tokens = {}  # token -> expiry (monotonic)
        self.credentials = None
        self.started = time.time()

    def new_token(self, ttl):
        token = secrets.token_urlsafe(40)
        with self.lock:
            now = time.monotonic()
            self.tokens = {t: e for t, e in self.tokens.items() if e > now}
            self.tokens[token] = now + ttl
        return token

    def valid(self, token):
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def role_credentials(self):
        now = time.time()
        with self.lock:
            c = self.credentials
            if c is None or c["expires"] - now < CREDENTIALS_REFRESH_BEFORE:
                upper = string.ascii_uppercase + string.digits
                c = {
                    "Code": "Success",
                    "LastUpdated": iso(now),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIA" + "".join(secrets.choice(upper) for _ in range(16)),
                    "SecretAccessKey": secrets.token_urlsafe(30),
                    "Token": secrets.token_urlsafe(96),
                    "Expiration": iso(now + CREDENTIALS_LIFETIME),
                    "expires": now + CREDENTIALS_LIFETIME,
                }
                self.credentials = c
        return {k: v for k, v in c.items() if k != "expires"}

    def identity_document(self):
        a = self.args
        return {
            "accountId": a.account_id,
            "architecture": "x86_64",
            "availabilityZone": a.region + "a",
            "imageId": "ami-0sandbox0000000",
            "instanceId": a.instance_id,
            "instanceType": "t3.small",
            "pendingTime": iso(self.started),
            "privateIp": a.private_ip,
            "region": a.region,
            "version": "2017-09-30",
        }

    def get(self, path):
        """(content type, body) for a metadata path, or None for 404."""
        a = self.args
        tags = {"Name": a.name, "Environment": "sandbox"}
        role_prefix = "/latest/meta-data/iam/security-credentials/"
        tags_prefix = "/latest/meta-data/tags/instance/"
        text = {
            "/latest/meta-data/placement/region": a.region,
            "/latest/meta-data/placement/availability-zone": a.region + "a",
            "/latest/meta-data/instance-id": a.instance_id,
            "/latest/meta-data/instance-type": "t3.small",
            "/latest/meta-data/local-ipv4": a.private_ip,
            "/latest/meta-data/hostname": a.name,
            role_prefix: a.role,
            # The key list, as EC2 serves it (with or without the slash).
            tags_prefix: "\n".join(sorted(tags)),
            tags_prefix.rstrip("/"): "\n".join(sorted(tags)),
        }
        if path in text:
            return "text/plain", text[path]
        if path == role_prefix + a.role:
            return "text/plain", json.dumps(self.role_credentials(), indent=2)
        if path == "/latest/dynamic/instance-identity/document":
            return "text/plain", json.dumps(self.identity_document(), indent=2)
        if path.startswith(tags_prefix) and path[len(tags_prefix):] in tags:
            return "text/plain", tags[path[len(tags_prefix):]]
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""

    def reply(self, status, body="", content_type="text/plain", headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def drain(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_PUT(self):
        self.drain()
        if self.path != "/latest/api/token":
            return self.reply(404, "Not Found")
        # Like EC2: a forwarded request is refused (tokens are for this host).
        if self.headers.get("X-Forwarded-For"):
            return self.reply(403, "Forbidden")
        raw = self.headers.get(TTL_HEADER)
        try:
            ttl = int(raw)
        except (TypeError, ValueError):
            return self.reply(400, "Bad Request")
        if not 1 <= ttl <= MAX_TTL:
            return self.reply(400, "Bad Request")
        token = self.server.metadata.new_token(ttl)
        self.reply(200, token, headers=[(TTL_HEADER, str(ttl))])

    def do_GET(self):
        self.drain()
        if not self.server.metadata.valid(self.headers.get(TOKEN_HEADER)):
            return self.reply(401, "Unauthorized")
        found = self.server.metadata.get(self.path.split("?", 1)[0])
        if found is None:
            return self.reply(404, "Not Found")
        content_type, body = found
        self.reply(200, body, content_type)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write("imds: " + (fmt % args) + "\n")
        sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default="169.254.169.254")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--region", required=True)
    p.add_argument("--instance-id", required=True)
    p.add_argument("--role", default="hostd-sandbox")
    p.add_argument("--name", default="sandbox", help="the Name tag and hostname")
    p.add_argument("--account-id", default="123456789012")
    p.add_argument("--private-ip", default="10.231.0.10")
    p.add_argument("--ready-file", help="written once the socket listens")
    args = p.parse_args()
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    server.daemon_threads = True
    server.metadata = Metadata(args)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%s:%d\n" % (args.address, args.port))
    sys.stderr.write("imds: serving on %s:%d\n" % (args.address, args.port))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
