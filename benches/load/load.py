#!/usr/bin/env python3
"""Side-by-side load harness for nostalk (see benches/load/README.md).

Starts an nginx origin on 127.0.0.1 (HTTP and HTTPS), then measures the same load directly
against it and through nostalk, a no-op hudsucker proxy, Privoxy and mitmproxy, one at a
time, each started here on loopback and stopped after. Load client: oha. Every run is
bounded by a duration and a request timeout; everything stays on loopback.

Prints markdown tables of ratios (and writes them to benches/load/results.md): requests/s,
p50/p99 latency, CPU seconds per 10k requests and peak RSS of each proxy; nostalk's memory
idle and with 1,000 open keep-alive connections; start-up time to ready.
"""
import json
import os
import shlex
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "data")
DURATION = os.environ.get("LOAD_DURATION", "5s")
CONNS = int(os.environ.get("LOAD_CONNECTIONS", "50"))
ROUNDS = int(os.environ.get("LOAD_ROUNDS", "3"))
HOST = "localhost"
HTTP_PORT, HTTPS_PORT = 18080, 18443
# "nostalk" runs as people run it: the default config and logging (INFO, to a file here as to
# the journal under systemd); "nostalk-quiet" is the same build with RUST_LOG=warn. They take
# turns on one port.
PORTS = {"nostalk": 18877, "nostalk-quiet": 18877, "hudsucker": 18878, "privoxy": 18118, "mitmproxy": 18879}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_stat(pid):
    """(cpu seconds, VmRSS KiB, VmHWM KiB, user seconds, system seconds) of a process (all its
    threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        user, system = int(parts[11]) / CLK_TCK, int(parts[12]) / CLK_TCK
        cpu = user + system
        rss = hwm = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return cpu, rss, hwm, user, system
    except (OSError, IndexError, ValueError):
        return 0.0, 0, 0, 0.0, 0.0


def make_certs(work):
    """A CA and a certificate for localhost/127.0.0.1 signed by it (openssl), plus a CA for
    the proxies that mint their own (hudsucker, mitmproxy)."""
    def run(*a):
        subprocess.run(a, check=True, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "origin-ca.key", "-out", "origin-ca.pem", "-days", "2", "-subj", "/CN=load origin CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "origin.key", "-out", "origin.csr", "-subj", "/CN=localhost")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", "origin.csr", "-CA", "origin-ca.pem", "-CAkey", "origin-ca.key",
        "-CAcreateserial", "-out", "origin.pem", "-days", "2", "-extfile", "san.ext")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "mitm-ca.key", "-out", "mitm-ca.pem", "-days", "2", "-subj", "/CN=load proxy CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_content(work):
    www = os.path.join(work, "www")
    os.makedirs(www)
    page = None
    pages = os.path.join(SHARED, "pages")
    if os.path.isdir(pages):
        # A real article page of about 100 KB, as its site served it (trackers included).
        sized = sorted((abs(os.path.getsize(os.path.join(pages, n)) - 100_000), n)
                       for n in os.listdir(pages) if n.endswith(".html"))
        with open(os.path.join(pages, sized[0][1]), "rb") as f:
            page = f.read()
    if page is None:
        row = b'<div><p>Words of an article.</p><img src="/i.jpg"><script src="https://www.google-analytics.com/analytics.js"></script></div>\n'
        page = b"<!doctype html><html><head><title>t</title></head><body>" + row * 800 + b"</body></html>"
    small = (b"<!doctype html><html><head><title>Small</title></head><body><h1>Hello</h1>"
             + b"<p>" + b"x" * 850 + b"</p></body></html>\n")
    files = {"1k.html": small[:1024], "100k.html": page[:102400], "1k.bin": os.urandom(1024),
             "100k.bin": os.urandom(102400)}
    for name, data in files.items():
        with open(os.path.join(www, name), "wb") as f:
            f.write(data)
    return www


def start_nginx(work, www):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nb; proxy_temp_path {work}/np; fastcgi_temp_path {work}/nf;
  uwsgi_temp_path {work}/nu; scgi_temp_path {work}/ns;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  types {{ text/html html; application/octet-stream bin; }}
  server {{
    listen 127.0.0.1:{HTTP_PORT};
    listen 127.0.0.1:{HTTPS_PORT} ssl http2;
    ssl_certificate {work}/origin.pem;
    ssl_certificate_key {work}/origin.key;
    # Debian 12's nginx (1.22) offers TLS 1.0-1.2 unless told; origins today speak 1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    root {www};
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(work, "nginx-error.log"), "a"))
    if not (wait_port(HTTP_PORT) and wait_port(HTTPS_PORT)):
        sys.exit("nginx did not start; see " + work + "/nginx-error.log")
    return p


def nostalk_config(work, lists):
    cfg = os.path.join(work, f"nostalk-{lists}.toml")
    extra = ""
    if lists == "easylist":
        for name, verdict in (("easyprivacy", "block"), ("easylist", "ad")):
            extra += (f'\n[[lists]]\nname = "{name}"\npath = "{SHARED}/lists/{name}.txt"\n'
                      f'verdict = "{verdict}"\n')
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{PORTS['nostalk']}"
[ca]
dir = "{work}/nostalk-ca"
[intercept]
# The HTTPS origin listens on a port of its own, not 443.
connect_ports = [443, 80, {HTTPS_PORT}]
[upstream]
extra_roots = ["{work}/origin-ca.pem"]
# The origins run on this machine's loopback, which destination filtering closes by default.
allow = ["127.0.0.0/8"]
[policy]
list_cache_dir = "{work}/nostalk-lists"
# Nothing here reaches the web: the "easylist" runs give the lists by path instead, which is
# what the default subscriptions load once downloaded.
default_subscriptions = false
{extra}""")
    return cfg


def start_proxy(name, work, lists="embedded", binary=None):
    """Start a proxy and wait for its port; `binary` runs another nostalk build (ab.py)."""
    port = PORTS[name]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    if name != "nostalk":
        env["RUST_LOG"] = "warn"
    if name in ("nostalk", "nostalk-quiet"):
        binary = binary or os.path.join(ROOT, "target", "release", "nostalk")
        cmd = [binary, "run", "--config", nostalk_config(work, lists)]
    elif name == "hudsucker":
        cmd = [os.path.join(ROOT, "benches", "load", "hudsucker-noop", "target", "release", "hudsucker-noop"),
               str(port), f"{work}/mitm-ca.pem", f"{work}/mitm-ca.key", f"{work}/origin-ca.pem"]
    elif name == "privoxy":
        conf = os.path.join(work, "privoxy.conf")
        with open(conf, "w") as f:
            # Debian's default action and filter files: what a Privoxy user runs.
            f.write(f"listen-address 127.0.0.1:{port}\nconfdir /etc/privoxy\nlogdir {work}\n"
                    "actionsfile match-all.action\nactionsfile default.action\nactionsfile user.action\n"
                    "filterfile default.filter\nfilterfile user.filter\ntoggle 1\n"
                    "keep-alive-timeout 300\ndefault-server-timeout 60\nsocket-timeout 60\n"
                    "max-client-connections 4096\n")
        cmd = ["privoxy", "--no-daemon", conf]
    elif name == "mitmproxy":
        conf = os.path.join(work, "mitmconf")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "mitmproxy-ca.pem"), "w") as f:
            f.write(open(f"{work}/mitm-ca.key").read() + open(f"{work}/mitm-ca.pem").read())
        cmd = [os.environ.get("MITMDUMP", "mitmdump"), "--listen-host", "127.0.0.1", "-p", str(port), "-q",
               "--set", f"confdir={conf}", "--set", f"ssl_verify_upstream_trusted_ca={work}/origin-ca.pem"]
    else:
        raise ValueError(name)
    started = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"{name}.log"), "w"),
                         env=env)
    if not wait_port(port, 60):
        p.kill()
        log(f"{name} did not start; see {work}/{name}.log")
        return None, 0.0
    return p, time.time() - started


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def oha(url, proxy=None, rate=None, conns=CONNS, duration=DURATION):
    cmd = [os.environ.get("OHA", "oha"), "--no-tui", "--output-format", "json", "-z", duration, "-c", str(conns),
           "-t", "10s", "--insecure"]
    if proxy:
        cmd += ["-x", proxy]
    if rate:
        cmd += ["-q", str(rate)]
    # Extra oha arguments, such as headers: OHA_ARGS='-H "Referer: http://news.test/"'.
    cmd += shlex.split(os.environ.get("OHA_ARGS", ""))
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        j = json.loads(out.stdout)
    except json.JSONDecodeError:
        log("oha failed:", out.stderr[-500:])
        return None
    s = j["summary"]
    total = sum(j.get("statusCodeDistribution", {}).values())
    ok = j.get("statusCodeDistribution", {}).get("200", 0)
    lat = j.get("latencyPercentiles", {})
    r = {"rps": s["requestsPerSec"], "p50": lat.get("p50"), "p99": lat.get("p99"), "requests": total,
         "ok": ok, "errors": sum(j.get("errorDistribution", {}).values()), "size": s.get("sizePerRequest")}
    if total == 0 or ok < 0.99 * total:
        log(f"  not a valid run: {ok} of {total} answered 200 ({j.get('statusCodeDistribution')}, "
            f"{j.get('errorDistribution')})")
        return None
    return r


def run_load(work, targets, scenarios, rounds=ROUNDS):
    """Each target under each load, `rounds` times, the targets taking turns within a round so
    that a slow spell of this shared machine falls on all of them alike. The figure kept for a
    (target, load) is its median-rps round; `rounds_rps` keeps every round's rate."""
    runs = {}
    for rnd in range(rounds):
        for target in targets:
            p = None
            if target != "direct":
                p, _ = start_proxy(target, work)
                if p is None:
                    continue
            proxy = None if target == "direct" else f"http://127.0.0.1:{PORTS[target]}"
            for scheme, path in scenarios:
                port = HTTP_PORT if scheme == "http" else HTTPS_PORT
                url = f"{scheme}://{HOST}:{port}/{path}"
                oha(url, proxy, duration="1s")  # warm-up: connections, leaf certificates
                cpu0, _, _, user0, sys0 = proc_stat(p.pid) if p else (0, 0, 0, 0, 0)
                r = oha(url, proxy)
                if r is None:
                    continue
                cpu1, _, hwm, user1, sys1 = proc_stat(p.pid) if p else (0, 0, 0, 0, 0)
                per10k = lambda a, b: (b - a) / max(r["requests"], 1) * 10_000 if p else None
                r["cpu_per_10k"] = per10k(cpu0, cpu1)
                # User (the proxy's own code) and system (the kernel: mostly the loopback sends
                # and receives, which every proxy pays for twice per request) apart.
                r["user_per_10k"], r["sys_per_10k"] = per10k(user0, user1), per10k(sys0, sys1)
                r["hwm_kib"] = hwm if p else None
                runs.setdefault((target, scheme, path), []).append(r)
                log(f"round {rnd + 1}/{rounds} {target:10} {scheme:5} {path:10} {r['rps']:10.0f} req/s  "
                    f"p99 {1000 * (r['p99'] or 0):7.2f} ms  ok {r['ok']}/{r['requests']}  {r['size']} B/response")
            stop(p)
    results = {}
    for key, rs in runs.items():
        ordered = sorted(rs, key=lambda r: r["rps"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["rounds_rps"] = [r["rps"] for r in rs]
        results[key] = median
    return results


def open_keepalive(port, n, path="1k.bin"):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * n + 100)), hard))
    socks = []
    req = (f"GET http://{HOST}:{HTTP_PORT}/{path} HTTP/1.1\r\nHost: {HOST}:{HTTP_PORT}\r\n\r\n").encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += s.recv(65536)
    return socks


def ready_time(work, lists, tries=5):
    """Milliseconds from spawn to /readyz answering 200 (best of `tries`)."""
    best = None
    for _ in range(tries):
        cmd = [os.path.join(ROOT, "target", "release", "nostalk"), "run", "--config", nostalk_config(work, lists)]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ms = None
        while time.perf_counter() - t0 < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['nostalk']}/readyz", timeout=1) as r:
                    if r.status == 200:
                        ms = (time.perf_counter() - t0) * 1000
                        break
            except OSError:
                time.sleep(0.002)
        stop(p)
        if ms is not None:
            best = ms if best is None else min(best, ms)
    return best


def memory(work):
    out = {}
    for lists in ("embedded", "easylist"):
        if lists == "easylist" and not os.path.isdir(SHARED):
            continue
        out[("ready_ms", lists)] = ready_time(work, lists)
        p, _ = start_proxy("nostalk", work, lists)
        time.sleep(1.0)
        out[("idle", lists)] = proc_stat(p.pid)[1]
        socks = open_keepalive(PORTS["nostalk"], 1000)
        time.sleep(0.5)
        out[("1000", lists)] = proc_stat(p.pid)[1]
        for s in socks:
            s.close()
        stop(p)
    for peer in ("hudsucker", "privoxy", "mitmproxy"):
        p, _ = start_proxy(peer, work)
        if p is None:
            continue
        time.sleep(1.0)
        out[("idle", peer)] = proc_stat(p.pid)[1]
        try:
            socks = open_keepalive(PORTS[peer], 1000)
            time.sleep(0.5)
            out[("1000", peer)] = proc_stat(p.pid)[1]
            for s in socks:
                s.close()
        except OSError as e:
            log(f"{peer}: 1,000 connections failed: {e}")
        stop(p)
    return out


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(results, mem, targets, scenarios):
    lines = []
    machine = f"{os.cpu_count()} CPUs, {os.uname().release}, oha -c {CONNS} -z {DURATION}, {ROUNDS} rounds"
    lines.append(f"Machine: {machine}\n")
    lines.append("### Requests per second (median of the rounds), and nostalk's ratio to each\n")
    head = "| load | " + " | ".join(targets) + " | nostalk / direct | nostalk / hudsucker | nostalk / privoxy | nostalk / mitmproxy | quiet / hudsucker |"
    lines.append(head)
    lines.append("|" + "---|" * (len(targets) + 6))
    for scheme, path in scenarios:
        row = [f"{scheme} {path}"]
        get = lambda t: results.get((t, scheme, path), {}).get("rps")
        for t in targets:
            v = get(t)
            row.append(f"{v:.0f}" if v else "n/a")
        n = get("nostalk")
        for t in ("direct", "hudsucker", "privoxy", "mitmproxy"):
            row.append(ratio(n, get(t)))
        row.append(ratio(get("nostalk-quiet"), get("hudsucker")))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\n### Requests per second in each round\n")
    lines.append("| load | " + " | ".join(targets) + " |")
    lines.append("|" + "---|" * (len(targets) + 1))
    for scheme, path in scenarios:
        row = [f"{scheme} {path}"]
        for t in targets:
            rr = results.get((t, scheme, path), {}).get("rounds_rps")
            row.append(" / ".join(f"{v:.0f}" for v in rr) if rr else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\n### Latency p50 / p99 (ms), CPU seconds per 10k requests, peak RSS (MiB); the median round\n")
    lines.append("| load | target | p50 | p99 | CPU s / 10k | user / system | peak RSS |")
    lines.append("|---|---|---|---|---|---|---|")
    for scheme, path in scenarios:
        for t in targets:
            r = results.get((t, scheme, path))
            if not r:
                continue
            cpu = f"{r['cpu_per_10k']:.2f}" if r.get("cpu_per_10k") is not None else "-"
            split = f"{r['user_per_10k']:.2f} / {r['sys_per_10k']:.2f}" if r.get("user_per_10k") is not None else "-"
            hwm = f"{r['hwm_kib'] / 1024:.1f}" if r.get("hwm_kib") else "-"
            lines.append(f"| {scheme} {path} | {t} | {1000 * (r['p50'] or 0):.2f} | {1000 * (r['p99'] or 0):.2f} | {cpu} | {split} | {hwm} |")
    if mem:
        lines.append("\n### Memory (VmRSS, MiB) and start-up\n")
        lines.append("| | idle | 1,000 keep-alive connections | ready after |")
        lines.append("|---|---|---|---|")
        for who in ("embedded", "easylist", "hudsucker", "privoxy", "mitmproxy"):
            if ("idle", who) not in mem:
                continue
            label = {"embedded": "nostalk, embedded lists", "easylist": "nostalk, + EasyList + EasyPrivacy"}.get(who, who)
            idle = mem[("idle", who)] / 1024
            conns = mem.get(("1000", who))
            ready = mem.get(("ready_ms", who))
            lines.append(f"| {label} | {idle:.1f} | {conns / 1024:.1f} | " if conns else f"| {label} | {idle:.1f} | n/a | ")
            lines[-1] += (f"{ready:.0f} ms |" if ready else "- |")
    return "\n".join(lines)


def latency_at_half(work, results):
    """p99 added over direct at half of nostalk's peak rate, plain HTTP 1 KB."""
    peak = results.get(("nostalk", "http", "1k.bin"), {}).get("rps")
    if not peak:
        return None
    rate = int(peak / 2)
    direct = oha(f"http://{HOST}:{HTTP_PORT}/1k.bin", rate=rate)
    p, _ = start_proxy("nostalk", work)
    oha(f"http://{HOST}:{HTTP_PORT}/1k.bin", f"http://127.0.0.1:{PORTS['nostalk']}", duration="1s")
    through = oha(f"http://{HOST}:{HTTP_PORT}/1k.bin", f"http://127.0.0.1:{PORTS['nostalk']}", rate=rate)
    stop(p)
    if not direct or not through:
        return None
    return rate, direct["p99"] * 1000, through["p99"] * 1000


def main():
    targets = os.environ.get("LOAD_TARGETS", "direct,nostalk,nostalk-quiet,hudsucker,privoxy,mitmproxy").split(",")
    scenarios = [(s, p) for s in ("http", "https") for p in ("1k.bin", "1k.html", "100k.bin", "100k.html")]
    if os.environ.get("LOAD_SCENARIOS"):  # e.g. "http 1k.bin,https 1k.bin"
        wanted = {tuple(w.split()) for w in os.environ["LOAD_SCENARIOS"].split(",")}
        scenarios = [sp for sp in scenarios if sp in wanted]
    work = tempfile.mkdtemp(prefix="nostalk-load-")
    os.chmod(work, 0o755)  # nginx's workers (another user) read the content from here
    log("work dir:", work)
    make_certs(work)
    www = make_content(work)
    nginx = start_nginx(work, www)
    try:
        results = run_load(work, targets, scenarios)
        half = latency_at_half(work, results)
        mem = memory(work) if os.environ.get("LOAD_MEMORY", "1") == "1" else {}
    finally:
        stop(nginx)
    text = report(results, mem, targets, scenarios)
    if half:
        rate, d, n = half
        text += (f"\n\n### p99 latency at half of nostalk's peak rate (plain HTTP 1 KB, {rate} req/s)\n\n"
                 f"direct {d:.2f} ms, through nostalk {n:.2f} ms: {n - d:.2f} ms added\n")
    print(text)
    with open(os.path.join(ROOT, "benches", "load", "results.md"), "w") as f:
        f.write(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
