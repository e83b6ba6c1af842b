#!/usr/bin/env python3
"""User-space instructions per request of proxy builds, counted by callgrind: an A/B that the
machine's noise cannot move (requests/s on this shared 2-core machine spread by 20 % between
rounds; the instruction count of a build repeats within 1 %).

    python3 benches/load/instructions.py http://localhost:18080/1k.bin 3000 \\
        /tmp/nostalk-before target/release/nostalk hudsucker

Starts the harness's nginx origin (load.py), then each proxy under `valgrind --tool=callgrind`
(the default config and logging, as people run it; `hudsucker` names the no-op peer built by
./benches/load/run), warms it with 300 requests, zeroes the counters, sends N requests with oha
(10 connections, keep-alive), dumps the counters and prints instructions per request. Kernel
work (the syscalls, the same for every proxy here: benches/load/README.md) is not counted;
for where the instructions go, run `callgrind_annotate` on the dump it names (a build with
symbols: `CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only`).
Loopback only; needs valgrind (apt-get install valgrind).
"""
import glob
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402

OHA = os.environ.get("OHA", "oha")


def command(binary, work):
    if binary == "hudsucker":
        cmd = [os.path.join(load.ROOT, "benches", "load", "hudsucker-noop", "target", "release", "hudsucker-noop"),
               str(load.PORTS["hudsucker"]), f"{work}/mitm-ca.pem", f"{work}/mitm-ca.key", f"{work}/origin-ca.pem"]
        return cmd, load.PORTS["hudsucker"], dict(os.environ, RUST_LOG="warn")
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    return [binary, "run", "--config", load.nostalk_config(work, "embedded")], load.PORTS["nostalk"], env


def oha(proxy, url, n):
    return subprocess.run([OHA, "--no-tui", "-n", str(n), "-c", "10", "--insecure", "-x", proxy, url],
                          capture_output=True, text=True, timeout=600)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    url, n, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    work = tempfile.mkdtemp(prefix="nostalk-instructions-")
    os.chmod(work, 0o755)
    load.make_certs(work)
    nginx = load.start_nginx(work, load.make_content(work))
    try:
        for b in binaries:
            out = f"{work}/callgrind.{os.path.basename(b)}"
            cmd, port, env = command(b, work)
            p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
                                 stdout=subprocess.DEVNULL, stderr=open(f"{out}.log", "w"), env=env)
            try:
                if not load.wait_port(port, 300):
                    print(f"{b}: did not start; see {out}.log")
                    continue
                proxy = f"http://127.0.0.1:{port}"
                oha(proxy, url, 300)
                subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
                r = oha(proxy, url, n)
                subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
            finally:
                p.send_signal(signal.SIGINT)
                p.wait(120)
            ok = "[200] {} responses".format(n) in r.stdout
            dumps = sorted((f for f in glob.glob(out + ".*") if not f.endswith(".log")), key=os.path.getmtime)
            total = None
            for line in open(dumps[0], errors="replace"):
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
                    break
            status = "" if ok else "  (not every request answered 200: see oha's output)"
            print(f"{b}: {total / n:8.0f} instructions per request   ({dumps[0]}){status}", flush=True)
    finally:
        load.stop(nginx)


if __name__ == "__main__":
    main()
