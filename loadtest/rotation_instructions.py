#!/usr/bin/env python3
"""Instructions one `POST /api/refresh/` costs restful-auth, per thread (README, "Refresh tokens
on SQLite"): runs the binary under valgrind's callgrind on a fresh SQLite file, logs SESSIONS
sessions of one account in, and has each rotate its refresh token ROTATIONS times, all at once
(so the writer commits them in groups, as under load). Prints the instructions per rotation of
each busy thread and in all.

    python3 loadtest/rotation_instructions.py target/release/restful-auth [ROTATIONS] [SESSIONS]

Callgrind counts instructions, not time: the count repeats (within about 2%: token digests
fall at random in the index) whatever else the machine does, so two builds can be compared on
a busy machine. It does not count the kernel's work (sockets, log writes) nor waiting; the
load benchmark (`cargo run --release -p loadtest`) measures throughput. Needs valgrind
(`callgrind_control`). Standard library only.
"""

import http.client
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

EMAIL = "rotations@example.org"
PASSWORD = "rotation count passphrase, not a secret"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(connection, path, body):
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    if response.status not in (200, 201):
        raise SystemExit(f"{path}: {response.status} {answer!r}")
    return json.loads(answer)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    rotations = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    port = free_port()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="rotation-instructions-"))
    profile = workdir / "callgrind.out"
    service = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={profile}", binary,
            "--bind", f"127.0.0.1:{port}",
            "--database-url", f"sqlite://{workdir / 'db.sqlite3'}",
            "--log-level", "warn", "--access-log", "off", "--metrics-bind", "off",
            "--throttle-register-ip", "off", "--throttle-login-account", "off",
            "--throttle-login-account-ip", "off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                health.request("GET", "/healthz")
                if health.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service did not start under valgrind within 120 s")
            time.sleep(0.5)

        def connect():
            return http.client.HTTPConnection("127.0.0.1", port, timeout=600)

        post(connect(), "/api/register/", {"username": EMAIL, "email": EMAIL, "password": PASSWORD})
        slots = []
        for _ in range(sessions):
            connection = connect()
            tokens = post(connection, "/api/login/", {"email": EMAIL, "password": PASSWORD})
            slots.append([connection, tokens["refresh_token"]])
        # Every session has rotated before counting starts, as under load; a connection left
        # idle while the others log in under valgrind may have been closed: a new one serves.
        for slot in slots:
            slot[0] = connect()
            for _ in range(3):
                slot[1] = post(slot[0], "/api/refresh/", {"refresh_token": slot[1]})["refresh_token"]
        subprocess.run(["callgrind_control", "--zero", str(service.pid)], check=True,
                       capture_output=True)

        def rotate(slot):
            for _ in range(rotations):
                slot[1] = post(slot[0], "/api/refresh/", {"refresh_token": slot[1]})["refresh_token"]

        threads = [threading.Thread(target=rotate, args=(slot,)) for slot in slots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        subprocess.run(["callgrind_control", "--dump", str(service.pid)], check=True,
                       capture_output=True)
    finally:
        service.terminate()
        service.wait()

    total_rotations = rotations * sessions
    total = 0
    print(f"{total_rotations} rotations ({sessions} sessions at once), instructions per rotation:")
    for dump in sorted(workdir.glob("callgrind.out.1-*")):
        text = dump.read_text(errors="replace")
        count = next(int(line.split()[1]) for line in text.splitlines()
                     if line.startswith(("summary:", "totals:")))
        name = thread_name(text)
        total += count
        if count >= total_rotations * 100:
            print(f"  {name:<24} {count // total_rotations:>9,}")
    print(f"  {'all threads':<24} {total // total_rotations:>9,}")


def thread_name(profile_text):
    """The thread's entry function (in a build with symbols, e.g. `CARGO_PROFILE_RELEASE_STRIP=none`),
    else callgrind's number of the thread."""
    for marker, name in (
        ("run_writer", "SQLite writer"),
        ("run_checkpointer", "SQLite checkpointer"),
        ("multi_thread::worker", "tokio worker"),
    ):
        if marker in profile_text:
            return name
    number = next((line.split()[1] for line in profile_text.splitlines()
                   if line.startswith("thread:")), "?")
    return f"thread {number}"


if __name__ == "__main__":
    main()
