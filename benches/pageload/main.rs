//! The page-load benchmark: the 65 real pages of ../shared/data/pages loaded in headless
//! Chromium, directly and through the release binary as people run it (the embedded default
//! config, which subscribes to EasyList and EasyPrivacy), taking turns, on a simulated web
//! (web.rs: one origin for every host, a round trip and a bandwidth per connection). Each
//! load is cold: a fresh browser context, and every connection through the link closed, the
//! browser's and nostalk's pooled ones alike. A third load of each page, direct again, measures
//! the benchmark's own noise. Scripts of hosts EasyList or EasyPrivacy block stand for a
//! tracker's cost (`--cost` ms of main-thread work, two beacons, a chained script).
//!
//! `cargo bench --bench pageload -- [--rtt 40] [--mbit 20] [--cost 15] [--rounds 3]
//! [--warmup 1] [--only NAME,...] [--json] [--log debug]`, with `NOSTALK_BIN=path` to run
//! another build and `PAGELOAD_TIMING=1` to print each load's navigation and resource timings;
//! BENCHMARKS.md has the model, its limits and the figures.

#[path = "../../tests/support/cdp.rs"]
mod cdp;
mod report;
mod web;

use bytes::Bytes;
use cdp::Browser;
use report::{Mode, Sample};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use web::{Link, Page, Shape, Web};

struct Args {
    rtt_ms: u64,
    mbit: f64,
    cost_ms: u32,
    rounds: usize,
    warmup: usize,
    only: Vec<String>,
    json: bool,
    log: Option<String>,
}

fn args() -> Args {
    let mut a =
        Args { rtt_ms: 40, mbit: 20.0, cost_ms: 15, rounds: 3, warmup: 1, only: vec![], json: false, log: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rtt" => a.rtt_ms = value().parse().expect("--rtt MS"),
            "--mbit" => a.mbit = value().parse().expect("--mbit N"),
            "--cost" => a.cost_ms = value().parse().expect("--cost MS"),
            "--rounds" => a.rounds = value().parse().expect("--rounds N"),
            "--warmup" => a.warmup = value().parse().expect("--warmup N"),
            "--only" => a.only.extend(value().split(',').map(str::to_string)),
            "--json" => a.json = true,
            "--log" => a.log = Some(value()),
            // What cargo bench passes to every bench target.
            "--bench" => {}
            other => panic!("unknown flag {other}: see the comment at the top of benches/pageload/main.rs"),
        }
    }
    assert!(a.rounds > 0 && a.mbit > 0.0);
    a
}

fn pages(data: &Path, only: &[String]) -> Vec<Page> {
    let mut pages = Vec::new();
    for e in std::fs::read_dir(data.join("pages")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "html") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let html = std::fs::read(&path).unwrap();
        let host = canonical_host(&String::from_utf8_lossy(&html)).unwrap_or_else(|| "pages.test".into());
        pages.push(Page { name, host, html: Bytes::from(html) });
    }
    pages.sort_by(|a, b| a.name.cmp(&b.name));
    pages
}

/// The host of a page's canonical (or og:url) link, where its site serves it.
fn canonical_host(html: &str) -> Option<String> {
    for marker in ["rel=\"canonical\"", "property=\"og:url\"", "rel='canonical'"] {
        let Some(i) = html.find(marker) else { continue };
        let tag_start = html[..i].rfind('<')?;
        let tag_end = i + html[i..].find('>')?;
        let tag = &html[tag_start..tag_end];
        for attr in ["href=\"", "content=\"", "href='"] {
            if let Some(j) = tag.find(attr) {
                let v = &tag[j + attr.len()..];
                let v = &v[..v.find(['"', '\'']).unwrap_or(v.len())];
                if let Ok(u) = url::Url::parse(v) {
                    return u.host_str().map(str::to_ascii_lowercase);
                }
            }
        }
    }
    None
}

/// nostalk as people run it: `nostalk run` on the embedded default, with only what reaches
/// the simulated web added (every name to the link, loopback allowed, the origins' CA).
struct Nostalk {
    child: std::process::Child,
    port: u16,
    ca_pem: PathBuf,
}

impl Drop for Nostalk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_nostalk(dir: &Path, link: &Link, origins_ca: &Path, log: Option<&str>) -> Nostalk {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let l = link.addr.port();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[ca]\ndir = {ca:?}\n\n[upstream]\n\
         resolve = [\"*:443:127.0.0.1:{l}\", \"*:80:127.0.0.1:{l}\"]\nallow = [\"127.0.0.0/8\"]\nextra_roots = [{roots:?}]\n",
        ca = dir.join("ca").display().to_string(),
        roots = origins_ca.display().to_string(),
    );
    let config = dir.join("nostalk.toml");
    std::fs::write(&config, toml).unwrap();
    let home = dir.join("nostalk-home");
    std::fs::create_dir_all(&home).unwrap();
    // NOSTALK_BIN: another build of nostalk, for a before-and-after run.
    let bin = std::env::var_os("NOSTALK_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_nostalk").into());
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .env("HOME", &home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("nostalk.log")).unwrap());
    match log {
        Some(level) => cmd.env("RUST_LOG", level),
        None => cmd.env_remove("RUST_LOG"),
    };
    let n =
        Nostalk { child: cmd.spawn().expect("nostalk started"), port, ca_pem: dir.join("ca").join("nostalk-ca.pem") };
    // Ready once both subscriptions are in force (downloaded from the simulated web).
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
            let text = r.text().await.unwrap_or_default();
            let loaded = |name: &str| {
                text.lines().any(|l| {
                    l.starts_with(&format!("nostalk_list_rules{{list=\"{name}\""))
                        && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) > 0.0
                })
            };
            if loaded("easylist") && loaded("easyprivacy") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "nostalk did not load EasyList and EasyPrivacy in 120 s; its log: {}",
            dir.join("nostalk.log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    n
}

/// The CPU time a process has spent, user and system, all threads (/proc/PID/stat's utime and
/// stime, in the kernel's USER_HZ ticks of 10 ms); 0 where it cannot be read.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime and stime are the stat file's fields 14 and 15: 12 and 13 after the name.
    f.get(11).zip(f.get(12)).map(|(u, s)| (u + s) * 10.0).unwrap_or(0.0)
}

/// A browser: its own HOME (trusting both CAs) and profile.
async fn browser(dir: &Path, name: &str, cas: &[&Path], route: &str) -> Browser {
    let d = dir.join(name);
    let (home, profile) = cdp::browser_home(&d, None);
    for (i, ca) in cas.iter().enumerate() {
        cdp::trust_in_browser(&home, ca, &format!("ca-{i}"));
    }
    let mut flags: Vec<String> =
        cdp::chromium_flags(&profile, "x").into_iter().filter(|f| !f.starts_with("--proxy-server")).collect();
    flags.push(route.to_string());
    Browser::launch(cdp::CHROMIUM, &home, &profile, flags).await
}

/// One cold load of `page`: a fresh browser context on a link with no connection open.
async fn load(b: &Browser, page: &Page, w: &Web, link: &Link, nostalk: Option<u32>) -> Option<Sample> {
    link.reset();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let cpu_before = nostalk.map(cpu_ms);
    *w.current.lock().unwrap() = page.url();
    w.requests.store(0, Ordering::Relaxed);
    w.tracker_scripts.store(0, Ordering::Relaxed);
    w.tracker_urls.lock().unwrap().clear();
    link.bytes.store(0, Ordering::Relaxed);
    let ctx = b.call(None, "Target.createBrowserContext", json!({})).await;
    let ctx = ctx["browserContextId"].as_str()?.to_string();
    let t = b.call(None, "Target.createTarget", json!({ "url": "about:blank", "browserContextId": ctx })).await;
    let target = t["targetId"].as_str()?.to_string();
    let s = b.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true })).await;
    let session = s["sessionId"].as_str()?.to_string();
    b.call(Some(&session), "Page.navigate", json!({ "url": page.url() })).await;
    let probe = "(() => { const n = performance.getEntriesByType('navigation')[0]; \
                 if (!n || !(n.loadEventEnd > 0) || !location.href.startsWith('http')) return null; \
                 const p = performance.getEntriesByName('first-contentful-paint')[0]; \
                 return [n.loadEventEnd, p ? p.startTime : -1, n.responseStart, n.responseEnd, n.domainLookupStart, n.connectStart, n.secureConnectionStart, n.connectEnd, n.requestStart, n.nextHopProtocol]; })()";
    let started = Instant::now();
    let mut got = None;
    while started.elapsed() < Duration::from_secs(30) {
        let r =
            b.try_call(Some(&session), "Runtime.evaluate", json!({ "expression": probe, "returnByValue": true })).await;
        if let Ok(v) = r {
            if let Some(a) = v["result"]["value"].as_array() {
                got = Some(a.iter().map(|x| x.as_f64().unwrap_or(-1.0)).collect::<Vec<_>>());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the page sends once loaded (beacons, chained scripts) counts in its requests.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fcp = got.as_ref().map(|g| g[1]).unwrap_or(-1.0);
    if got.is_some() && fcp < 0.0 {
        let v = b
            .try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": "(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime", "returnByValue": true }),
            )
            .await;
        fcp = v.ok().and_then(|v| v["result"]["value"].as_f64()).unwrap_or(-1.0);
    }
    let requests = w.requests.load(Ordering::Relaxed);
    let bytes = link.bytes.load(Ordering::Relaxed);
    let trackers = w.tracker_scripts.load(Ordering::Relaxed);
    let cpu = match (nostalk, cpu_before) {
        (Some(pid), Some(before)) => cpu_ms(pid) - before,
        _ => 0.0,
    };
    if std::env::var_os("PAGELOAD_TIMING").is_some() {
        eprintln!("{} {:?}", page.name, got);
        let r = b
            .try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": "(() => { const n = performance.getEntriesByType('navigation')[0]; return JSON.stringify([n.responseEnd, n.domInteractive, n.domContentLoadedEventStart, n.domContentLoadedEventEnd, n.domComplete, n.loadEventStart, n.loadEventEnd].map(Math.round)); })()", "returnByValue": true }),
            )
            .await;
        if let Ok(v) = r {
            eprintln!(
                "  end, interactive, dcl start/end, complete, load start/end: {}",
                v["result"]["value"].as_str().unwrap_or("")
            );
        }
        eprintln!("tracker scripts run: {:?}", w.tracker_urls.lock().unwrap());
        let r = b
            .try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": "performance.getEntriesByType('resource').map(r => [r.name.slice(0, 90), Math.round(r.startTime), Math.round(r.connectStart), Math.round(r.connectEnd), Math.round(r.requestStart), Math.round(r.responseStart), Math.round(r.responseEnd), r.nextHopProtocol].join(' ')).join('\\n')", "returnByValue": true }),
            )
            .await;
        if let Ok(v) = r {
            eprintln!("{}", v["result"]["value"].as_str().unwrap_or(""));
        }
    }
    let _ = b.try_call(None, "Target.disposeBrowserContext", json!({ "browserContextId": ctx })).await;
    let g = got?;
    Some(Sample { load: g[0], fcp, ttfb: g[2], html_end: g[3], requests, bytes, trackers, cpu_ms: cpu })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if !data.join("pages").is_dir() {
        eprintln!("SKIPPED: {} is absent (the pages and lists this benchmark loads)", data.display());
        return;
    }
    if cdp::chromium_missing() {
        return;
    }
    let pages = pages(&data, &a.only);
    assert!(!pages.is_empty(), "no page matches --only {:?}", a.only);
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape { rtt: Duration::from_millis(a.rtt_ms), bytes_per_sec: a.mbit * 1e6 / 8.0 };
    let w = Arc::new(Web::new(&pages, &data.join("lists"), a.cost_ms, shape));
    let certs = Arc::new(web::Certs::new(dir.path()));
    let link = Link::start(w.clone(), certs.clone(), shape).await;
    let nostalk = start_nostalk(dir.path(), &link, &certs.pem_path, a.log.as_deref()).await;
    let cas = [certs.pem_path.as_path(), nostalk.ca_pem.as_path()];
    let direct =
        browser(dir.path(), "direct", &cas, &format!("--host-resolver-rules=MAP * 127.0.0.1:{}", link.addr.port()))
            .await;
    let pid = nostalk.child.id();
    let proxied =
        browser(dir.path(), "proxied", &cas, &format!("--proxy-server=http://127.0.0.1:{}", nostalk.port)).await;
    eprintln!(
        "pageload: {} pages, rtt {} ms, {} Mbit/s, tracker cost {} ms, {} warm-up + {} rounds; nostalk log {}",
        pages.len(),
        a.rtt_ms,
        a.mbit,
        a.cost_ms,
        a.warmup,
        a.rounds,
        dir.path().join("nostalk.log").display()
    );
    for _ in 0..a.warmup {
        for p in &pages {
            load(&direct, p, &w, &link, None).await;
            load(&proxied, p, &w, &link, Some(pid)).await;
        }
    }
    let mut results = report::Results::new(pages.iter().map(|p| p.name.clone()).collect(), a.rounds);
    for round in 0..a.rounds {
        for (i, p) in pages.iter().enumerate() {
            // Taking turns: the second direct load comes first in odd rounds.
            let order = if round % 2 == 0 {
                [Mode::Direct, Mode::Nostalk, Mode::Direct2]
            } else {
                [Mode::Direct2, Mode::Nostalk, Mode::Direct]
            };
            for m in order {
                let (b, watch) = if m == Mode::Nostalk { (&proxied, Some(pid)) } else { (&direct, None) };
                let s = load(b, p, &w, &link, watch).await;
                results.put(i, round, m, s);
            }
        }
        eprintln!("round {} of {} done", round + 1, a.rounds);
    }
    let settings = json!({
        "rtt_ms": a.rtt_ms, "mbit": a.mbit, "tracker_cost_ms": a.cost_ms, "rounds": a.rounds, "warmup": a.warmup,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results.json(settings)).unwrap());
    } else {
        print!("{}", results.table(&settings));
    }
    if a.log.is_some() {
        let keep = std::env::temp_dir().join("nostalk-pageload.log");
        let _ = std::fs::copy(dir.path().join("nostalk.log"), &keep);
        eprintln!("nostalk's log: {}", keep.display());
    }
    drop(nostalk);
}
