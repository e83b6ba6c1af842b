#!/usr/bin/env python3
"""Size and memory of the builds a router runs (see BENCHMARKS.md, "The router build").

For each nostalk binary given (default: the release build and the router profile build, and
the static musl router builds when present), on the default logging: the binary's size; with
the embedded lists and with EasyList + EasyPrivacy (from ../shared/data), started cold (no
compiled-engine cache) and warm (the cache the cold start wrote): time to /readyz, RSS idle
one second after, the peak RSS of the start (VmHWM); and RSS with 500 open keep-alive
connections through it to a local nginx. And the first download as a household meets it: the
two lists subscribed by URL from a local HTTP server, the cache empty, measured once both are in
force (time from start, RSS idle after, the peak of the whole first run), then the next start
on the cache that download left. Everything on loopback; every wait is bounded.

Usage: python3 benches/load/router.py [[LABEL=]BINARY ...]
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the harness: nginx origin, certificates, configs, /proc readings)

ROOT = load.ROOT
PORT = load.PORTS["nostalk"]


def default_binaries():
    out = [("release (glibc)", os.path.join(ROOT, "target", "release", "nostalk"))]
    for label, path in (
        ("router (glibc)", os.path.join(ROOT, "target", "router", "nostalk")),
        ("router, x86_64 musl", os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "router", "nostalk")),
    ):
        if os.path.exists(path):
            out.append((label, path))
    return out


def start(binary, cfg):
    """Spawn, wait for /readyz 200 (at most 30 s); (process, ms to ready) or (None, None)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < 30:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz", timeout=1) as r:
                if r.status == 200:
                    return p, (time.perf_counter() - t0) * 1000
        except OSError:
            time.sleep(0.002)
    load.stop(p)
    return None, None


def measure(binary, work, lists, warm, conns):
    cfg = load.nostalk_config(work, lists)
    cache = os.path.join(work, "nostalk-lists")
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    ready = []
    for i in range(3):
        if not warm:
            shutil.rmtree(cache, ignore_errors=True)
        p, ms = start(binary, cfg)
        if p is None:
            return None
        ready.append(ms)
        if i < 2:
            load.stop(p)
    time.sleep(1.0)
    _, idle, hwm, _, _ = load.proc_stat(p.pid)
    socks = load.open_keepalive(PORT, conns)
    time.sleep(0.5)
    _, with_conns, _, _, _ = load.proc_stat(p.pid)
    for s in socks:
        s.close()
    load.stop(p)
    return statistics.median(ready), idle / 1024, hwm / 1024, with_conns / 1024


LISTS_PORT = PORT + 40


def serve_lists():
    """A local HTTP server for ../shared/data/lists (the lists' real server, on loopback)."""
    import functools
    import http.server
    import threading
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=os.path.join(load.SHARED, "lists"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", LISTS_PORT), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def download_config(work):
    cfg = os.path.join(work, "nostalk-download.toml")
    with open(load.nostalk_config(work, "embedded")) as f:
        text = f.read()
    text = text.replace("[upstream]\n", f'[upstream]\nresolve = ["lists.test:{LISTS_PORT}:127.0.0.1:{LISTS_PORT}"]\n', 1)
    for name, verdict in (("easyprivacy", "block"), ("easylist", "ad")):
        text += (f'\n[[lists]]\nname = "{name}"\nurl = "http://lists.test:{LISTS_PORT}/{name}.txt"\n'
                 f'verdict = "{verdict}"\n')
    with open(cfg, "w") as f:
        f.write(text)
    return cfg


def measure_download(binary, work):
    """First download, then a start on its cache: [(start label, ms, idle MiB, peak MiB)]."""
    cfg = download_config(work)
    cache = os.path.join(work, "nostalk-lists")
    shutil.rmtree(cache, ignore_errors=True)
    rows = []
    t0 = time.perf_counter()
    p, _ = start(binary, cfg)
    if p is None:
        return rows
    # In force once both engines are compiled (and cached).
    while time.perf_counter() - t0 < 60:
        names = os.listdir(cache) if os.path.isdir(cache) else []
        if sum(n.startswith("engine-") and n.endswith(".gz") for n in names) >= 2:
            break
        time.sleep(0.02)
    in_force = (time.perf_counter() - t0) * 1000
    time.sleep(1.5)
    _, idle, hwm, _, _ = load.proc_stat(p.pid)
    load.stop(p)
    rows.append(("first download", in_force, idle / 1024, hwm / 1024))
    p, ms = start(binary, cfg)
    if p is None:
        return rows
    time.sleep(1.0)
    _, idle, hwm, _, _ = load.proc_stat(p.pid)
    load.stop(p)
    rows.append(("start on that cache", ms, idle / 1024, hwm / 1024))
    return rows


def main():
    # Arguments: BINARY or LABEL=BINARY.
    binaries = [tuple(a.split("=", 1)) if "=" in a else (os.path.basename(a), a) for a in sys.argv[1:]]
    binaries = binaries or default_binaries()
    conns = int(os.environ.get("ROUTER_CONNECTIONS", "500"))
    work = tempfile.mkdtemp(prefix="nostalk-router-")
    os.chmod(work, 0o755)
    load.make_certs(work)
    www = load.make_content(work)
    nginx = load.start_nginx(work, www)
    rows = []
    downloads = []
    lists_server = serve_lists() if os.path.isdir(load.SHARED) else None
    try:
        for label, binary in binaries:
            if lists_server:
                downloads += [(label, *r) for r in measure_download(binary, work)]
            size = os.path.getsize(binary) / 1e6
            for lists in ("embedded", "easylist"):
                if lists == "easylist" and not os.path.isdir(load.SHARED):
                    continue
                for warm in ((False,) if lists == "embedded" else (False, True)):
                    m = measure(binary, work, lists, warm, conns)
                    if m:
                        rows.append((label, size, lists, warm, *m))
    finally:
        if lists_server:
            lists_server.shutdown()
        load.stop(nginx)
        shutil.rmtree(work, ignore_errors=True)
    print(f"| build | size (MB) | lists | start | ready (ms) | RSS idle (MiB) | peak RSS at start (MiB) | RSS, {conns} connections (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, size, lists, warm, ms, idle, hwm, with_conns in rows:
        lists_label = "embedded" if lists == "embedded" else "+ EasyList + EasyPrivacy"
        start_label = "cached engine" if warm else "parse lists"
        print(f"| {label} | {size:.1f} | {lists_label} | {start_label} | {ms:.0f} | {idle:.1f} | {hwm:.1f} | {with_conns:.1f} |")
    if downloads:
        print()
        print("| build | EasyList + EasyPrivacy by URL | lists in force / ready (ms) | RSS idle (MiB) | peak RSS (MiB) | peak - idle (MiB) |")
        print("|---|---|---|---|---|---|")
        for label, what, ms, idle, hwm in downloads:
            print(f"| {label} | {what} | {ms:.0f} | {idle:.1f} | {hwm:.1f} | {hwm - idle:.1f} |")


if __name__ == "__main__":
    main()
