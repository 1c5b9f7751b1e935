"""The dashboard's cost to an idle control plane: CPU of `flotilla up` over 60 s with no
browser, then over 60 s with one headless Chromium on the overview (polling every 2 s).

    bench/dashboard/run.sh [path/to/flotilla]

CPU is read from /proc/<pid>/stat (user + system time) of the control plane, and of every
chromium process for the second figure. Runs with the Selenium venv that
scripts/test-tools.sh installs; reuses the browser test's driver setup.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../crates/cli/tests/dashboard"))
import browser  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def chromium_seconds():
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"chromium" in open(f"/proc/{pid}/cmdline", "rb").read():
                total += cpu_seconds(pid)
        except OSError:
            pass  # a process that ended while we looked
    return total


def measure(label, pid, seconds):
    c0, b0, t0 = cpu_seconds(pid), chromium_seconds(), time.monotonic()
    time.sleep(seconds)
    c1, b1, t1 = cpu_seconds(pid), chromium_seconds(), time.monotonic()
    dt = t1 - t0
    print(f"| {label} | {100 * (c1 - c0) / dt:.2f} % | {100 * (b1 - b0) / dt:.2f} % |", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("flotilla")
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    api = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, FLOTILLA_SERVER__LISTEN=f"127.0.0.1:{api}",
                   FLOTILLA_STORAGE__DATA_DIR=data, FLOTILLA_GATEWAY__LISTEN=f"127.0.0.1:{free_port()}")
        up = subprocess.Popen([args.flotilla, "up"], env=env, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{api}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{base}/ready", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            for name in ["users", "orders"]:
                post(f"{base}/api/v1/registry/instances",
                     {"name": name, "address": "127.0.0.1", "port": 9, "status": "passing"})
            print("| control plane | its CPU (one core = 100 %) | chromium's CPU |\n|---|---|---|")
            measure("idle, no browser", up.pid, args.seconds)
            opts = argparse.Namespace(chromium="/usr/bin/chromium", driver="/usr/bin/chromedriver")
            driver = browser.chromium(opts)
            try:
                driver.get(f"{base}/ui/")
                time.sleep(3)
                measure("idle, one browser on the overview", up.pid, args.seconds)
            finally:
                driver.quit()
        finally:
            up.terminate()
            up.wait()


if __name__ == "__main__":
    main()
