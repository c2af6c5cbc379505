#!/usr/bin/env python3
"""Resident memory of restful-auth with many live sessions in use (README, "Live sessions in
memory"): starts the binary on a fresh SQLite file, adds COUNT live sessions of one account
straight to the database (a login per session would cost COUNT password hashes), calls
`GET /api/me/` once with an access token of each, and prints the service's VmRSS before and
after, with and without the session cache.

    python3 loadtest/session_memory.py target/release/restful-auth 100000

Standard library only. The tokens are HS256, signed with the `--secret-key` the service is
started with, carrying the claims of a token the service itself issued.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

PASSWORD = "session memory passphrase, not a secret"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def call(connection, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


def measure(binary, count, cache_size):
    workdir = tempfile.mkdtemp(prefix="restful-auth-memory-")
    database = os.path.join(workdir, "memory.sqlite3")
    port = free_port()
    secret = secrets.token_hex(32)
    service = subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}", "--database-url", f"sqlite://{database}",
         "--secret-key", secret, "--session-cache-size", str(cache_size),
         "--log-level", "warn", "--access-token-lifetime", "1h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                call(connection, "GET", "/healthz")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        credentials = {"email": "memory@example.org", "password": PASSWORD}
        status, _ = call(connection, "POST", "/api/register/", credentials)
        assert status == 201, status
        status, tokens = call(connection, "POST", "/api/login/", credentials)
        assert status == 200, status
        header, payload, _ = tokens["access_token"].split(".")
        claims = json.loads(unb64(payload))

        now = int(time.time())
        sessions = [uuid.uuid4() for _ in range(count)]
        db = sqlite3.connect(database, timeout=30)
        db.executemany(
            "INSERT INTO sessions (id, user_id, created_at, last_seen_at, amr)"
            " VALUES (?, ?, ?, ?, 'pwd')",
            [(sid.bytes, claims["user_id"], now, now) for sid in sessions])
        db.commit()
        db.close()

        # Past the reload interval: the service has seen the outside write.
        time.sleep(3)
        before = rss_kib(service.pid)
        key = secret.encode()
        started = time.time()
        for sid in sessions:
            forged = dict(claims, sid=str(sid), jti=uuid.uuid4().hex)
            signed = header + "." + b64(json.dumps(forged, separators=(",", ":")).encode())
            signature = hmac.new(key, signed.encode(), hashlib.sha256).digest()
            status, _ = call(connection, "GET", "/api/me/", token=signed + "." + b64(signature))
            assert status == 200, status
        elapsed = time.time() - started
        after = rss_kib(service.pid)
        return before, after, rss_kib(service.pid, "VmHWM"), elapsed
    finally:
        service.terminate()
        service.wait()


def main():
    binary, count = sys.argv[1], int(sys.argv[2])
    print(f"{count} live sessions, each asked for once with its own access token")
    for cache_size in (100_000, 0):
        before, after, peak, elapsed = measure(binary, count, cache_size)
        grown = after - before
        print(f"--session-cache-size {cache_size}: VmRSS {before / 1024:.1f} MiB before, "
              f"{after / 1024:.1f} MiB after (+{grown / 1024:.1f} MiB, "
              f"{grown * 1024 / count:.0f} bytes per session), peak {peak / 1024:.1f} MiB; "
              f"{count / elapsed:.0f} requests/s from this script")


if __name__ == "__main__":
    main()
