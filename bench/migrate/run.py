#!/usr/bin/env python3
"""How fast `flotilla migrate` copies an event store to PostgreSQL, in two shapes of the same
5,000 events: one stream (the copy appends runs of up to 500 events at once) and 100 streams
written round robin (every event is its own append: the worst case, since the copy keeps the
global order and so appends one run at a time).

Usage: bench/migrate/run.py [path/to/flotilla]   (default: $CARGO_TARGET_DIR/debug/flotilla)
Needs PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth) and NATS on 127.0.0.1:4222.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

EVENTS = 5000
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", "target")
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TARGET_DIR, "debug", "flotilla")
# The platform's own settings must not leak in from the caller's environment.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(data, streams):
    port = free_port()
    env = dict(ENV, FLOTILLA_SERVER__LISTEN=f"127.0.0.1:{port}",
               FLOTILLA_STORAGE__DATA_DIR=data, FLOTILLA_GATEWAY__ENABLED="false")
    up = subprocess.Popen([BIN, "up"], env=env, stderr=subprocess.PIPE, text=True)
    for line in up.stderr:
        if "service ready" in line:
            break
    # Keep reading its log so a full pipe never stalls it.
    threading.Thread(target=lambda: [None for _ in up.stderr], daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"events": [{"type": "Placed", "data": {"n": 1, "note": "x" * 100}}]})
    for i in range(EVENTS):
        conn.request("POST", f"/api/v1/streams/s-{i % streams}", body,
                     {"content-type": "application/json"})
        res = conn.getresponse()
        res.read()
        assert res.status == 201, res.status
    up.terminate()
    assert up.wait() == 0


def config(path, data, name):
    pg = "postgres://root@127.0.0.1:5432/test"
    with open(path, "w") as f:
        f.write(f'[storage]\ndata_dir = "{data}"\n'
                f'[eventstore]\nkind = "postgres"\nurl = "{pg}"\nschema = "{name}"\n'
                f'[bus]\nkind = "nats"\nurl = "nats://127.0.0.1:4222"\nprefix = "{name}"\n'
                f'[registry.catalog]\nkind = "postgres"\nurl = "{pg}"\nschema = "{name}"\n')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for shape, streams in [("one stream", 1), ("100 streams round robin", 100)]:
            name = f"migbench_{os.getpid()}_{streams}"
            data = os.path.join(tmp, f"data-{streams}")
            fill(data, streams)
            target = os.path.join(tmp, f"{name}.toml")
            config(target, os.path.join(tmp, f"target-{streams}"), name)
            started = time.monotonic()
            out = subprocess.run([BIN, "migrate", "--data-dir", data, "--to", target],
                                 env=ENV, capture_output=True, text=True)
            took = time.monotonic() - started
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "root", "-d", "test", "-q", "-c",
                            f"DROP SCHEMA IF EXISTS {name} CASCADE"], capture_output=True)
            assert out.returncode == 0, out.stdout + out.stderr
            print(f"{shape}: {EVENTS} events migrated and verified in {took:.2f} s "
                  f"({EVENTS / took:.0f} events/s)")


if __name__ == "__main__":
    main()
