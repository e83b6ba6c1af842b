#!/usr/bin/env python3
"""A/B of nostalk builds under one load, for deciding whether a change is worth keeping.

    cp target/release/nostalk /tmp/nostalk-before      # then make the change and build
    OHA=~/.cargo/bin/oha python3 benches/load/ab.py https://localhost:18443/1k.bin \\
        /tmp/nostalk-before target/release/nostalk hudsucker

Starts the harness's nginx origin (load.py), then runs each binary in turn (`hudsucker` names
the no-op peer, built by ./benches/load/run), ROUNDS times (default 5), oha for DUR (default
4s) after a 1 s warm-up, and prints each one's median requests/s and median CPU microseconds
per request (user + system, from /proc), every round's figures beside it. Taking turns within
a round puts a slow spell of this shared machine on every build alike; CPU per request moves
less than requests/s between rounds. Loopback only; every run bounded by its duration.
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402


def start(binary, work):
    if binary == "hudsucker":
        p, _ = load.start_proxy("hudsucker", work)
        return p, load.PORTS["hudsucker"]
    p, _ = load.start_proxy("nostalk", work, binary=binary)
    if p is None:
        sys.exit(f"{binary} did not start")
    return p, load.PORTS["nostalk"]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    url, binaries = sys.argv[1], sys.argv[2:]
    rounds = int(os.environ.get("ROUNDS", "5"))
    duration = os.environ.get("DUR", "4s")
    work = tempfile.mkdtemp(prefix="nostalk-ab-")
    os.chmod(work, 0o755)
    load.make_certs(work)
    nginx = load.start_nginx(work, load.make_content(work))
    rps = {b: [] for b in binaries}
    cpu_us = {b: [] for b in binaries}
    try:
        for _ in range(rounds):
            for b in binaries:
                p, port = start(b, work)
                proxy = f"http://127.0.0.1:{port}"
                load.oha(url, proxy, duration="1s")
                before = load.proc_stat(p.pid)[0]
                r = load.oha(url, proxy, duration=duration)
                after = load.proc_stat(p.pid)[0]
                load.stop(p)
                if r:
                    rps[b].append(r["rps"])
                    cpu_us[b].append(1e6 * (after - before) / max(r["requests"], 1))
                time.sleep(0.5)
    finally:
        load.stop(nginx)
    for b in binaries:
        if not rps[b]:
            print(f"{b}: no valid run")
            continue
        print(f"{b}\n  req/s  median {statistics.median(rps[b]):8.0f}  rounds {[round(v) for v in rps[b]]}\n"
              f"  CPU us/request median {statistics.median(cpu_us[b]):5.1f}  rounds {[round(v, 1) for v in cpu_us[b]]}")


if __name__ == "__main__":
    main()
