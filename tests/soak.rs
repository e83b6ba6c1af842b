//! The soak: the nostalk binary under a bounded mixed load of everything that once held
//! memory or descriptors without end: ordinary requests, 1 MiB downloads and uploads of up to
//! 1 MiB checked by SHA-256, slow clients that trickle a request head, CONNECT tunnels left idle, HTTP/2 connections left idle, and floods of the proxy's
//! own pages and controls. It prints the proxy's RSS and open descriptors every second; after
//! the load, once the idle timeouts have had their turn, descriptors are back to where they
//! started and memory has stopped growing.
//!
//! `SOAK_SECONDS` sets the length of the load (default 8: the short version the suite runs);
//! `scripts/soak` runs it for minutes.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Descriptors the proxy may rightly keep after the load: its pooled keep-alive connections to
/// the origin (one per browsing client, kept for `[upstream] idle_timeout`).
const POOLED: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_mixed_hostile_load_memory_and_descriptors_stay_flat() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    // Pages; 1 MiB downloads of known bytes; uploads answered with their SHA-256.
    let big: &'static [u8] =
        Box::leak((0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect());
    let big_sha = sha256_hex(big);
    let o = origin(
        None,
        handler(move |req| async move {
            match req.uri().path() {
                "/big.bin" => http::Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(body(big))
                    .unwrap(),
                "/upload" => {
                    use http_body_util::BodyExt;
                    let got = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    http::Response::new(body(sha256_hex(&got)))
                }
                _ => html("<html><head></head><body><p>hello</p></body></html>"),
            }
        }),
    )
    .await;
    let (quiet_port, held) = silent_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("soak.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout = \"3s\"\nhandshake_timeout = \"2s\"\ntunnel_idle_timeout = \"3s\"\n\
             [ca]\ndir = {:?}\n[intercept]\npassthrough = [\"quiet.test\"]\n\
             [upstream]\nallow = [\"127.0.0.0/8\"]\nresolve = [\"news.test:80:127.0.0.1:{}\", \"quiet.test:443:127.0.0.1:{quiet_port}\"]\n\
             [policy]\ndefault_subscriptions = false\nlist_cache_dir = {:?}\n\
             [receipt]\nstore = {:?}\n",
            dir.path().join("ca").display().to_string(),
            o.port(),
            dir.path().join("lists").display().to_string(),
            dir.path().join("choices.sqlite3").display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .env("XDG_DATA_HOME", env!("CARGO_TARGET_TMPDIR"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _child = Killed(child);
    wait_port(port).await;
    // Ready, not only bound: the port accepts while the choices store is still being opened
    // (its file, WAL and shared memory), and those descriptors belong to the start.
    let ready = async {
        loop {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
            if r.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), ready).await.expect("the proxy turned ready");
    let proxy = format!("127.0.0.1:{port}");
    let fds_at_start = open_fds(pid);
    let rss_at_start = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Ordinary browsing: 4 clients in a loop.
    for _ in 0..4 {
        let (stop, done, proxy) = (stop.clone(), done.clone(), proxy.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(format!("http://{proxy}")).unwrap())
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) =
                    c.get("http://news.test/story?utm_source=x").header("sec-fetch-dest", "document").send().await
                {
                    let _ = r.bytes().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Downloads of 1 MiB and uploads of up to 1 MiB, every body checked by SHA-256.
    let bad = Arc::new(AtomicU64::new(0));
    for upload in [false, true] {
        let (stop, done, proxy, bad, big_sha) =
            (stop.clone(), done.clone(), proxy.clone(), bad.clone(), big_sha.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(format!("http://{proxy}")).unwrap())
                .build()
                .unwrap();
            let mut i: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_add(1);
                let ok = if upload {
                    let size = (i.wrapping_mul(2_654_435_761) as usize) % (1 << 20) + 1;
                    let data: Vec<u8> = (0..size).map(|k| (k as u32 ^ i) as u8).collect();
                    let want = sha256_hex(&data);
                    match c.post("http://news.test/upload").body(data).send().await {
                        Ok(r) => r.text().await.is_ok_and(|got| got == want),
                        Err(_) => false,
                    }
                } else {
                    match c.get("http://news.test/big.bin").send().await {
                        Ok(r) => r.bytes().await.is_ok_and(|b| sha256_hex(&b) == big_sha),
                        Err(_) => false,
                    }
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else if !stop.load(Ordering::Relaxed) {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Floods of the proxy's own pages and controls, and readers that never read.
    {
        let (stop, done, proxy) = (stop.clone(), done.clone(), proxy.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let page = c.get(format!("http://{proxy}/")).send().await.unwrap().text().await.unwrap();
            let marker = "name=\"token\" value=\"";
            let token = page.split_once(marker).unwrap().1.split('"').next().unwrap().to_string();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let form = [("site", format!("s{i}.test")), ("minutes", "60".into()), ("token", token.clone())];
                let _ = c.post(format!("http://{proxy}/shopping")).form(&form).send().await;
                let _ = c.get(format!("http://{proxy}/")).send().await.map(|r| r.bytes());
                let _ = c.get(format!("http://{proxy}/metrics")).send().await;
                if i.is_multiple_of(20) {
                    // A reader that asks for the receipt and never reads it.
                    if let Ok(mut s) = TcpStream::connect(&proxy).await {
                        let _ = s.write_all(format!("GET / HTTP/1.1\r\nHost: {proxy}\r\n\r\n").as_bytes()).await;
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            drop(s);
                        });
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Slow clients, idle tunnels, idle h2: a few new ones every 100 ms, all left to the proxy's
    // timeouts to close.
    {
        let (stop, proxy) = (stop.clone(), proxy.clone());
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let openers: [&[u8]; 4] = [
                    b"GET http://news.test/ HTTP/1.1\r\nHo",
                    b"CONNECT quiet.test:443 HTTP/1.1\r\nHost: quiet.test:443\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                    b"CONNECT news.test:443 HTTP/1.1\r\nHost: news.test:443\r\n\r\n",
                ];
                for opener in openers {
                    if let Ok(mut s) = TcpStream::connect(&proxy).await {
                        let _ = s.write_all(opener).await;
                        kept.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The clients hold on; only the proxy lets go.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(kept);
        }));
    }

    let mut samples = Vec::new();
    // RSS every 10 s, for the plot (`scripts/soak` draws it).
    let csv_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak-rss.csv");
    let mut csv = String::from("seconds,rss_kib,fds,requests\n");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, fds) = (rss_kib(pid), open_fds(pid));
        samples.push((rss, fds));
        if samples.len() % 10 == 1 {
            csv.push_str(&format!("{},{rss},{fds},{}\n", started.elapsed().as_secs(), done.load(Ordering::Relaxed)));
            let _ = std::fs::write(&csv_path, &csv);
        }
        eprintln!(
            "soak {:>4}s  RSS {:>6.1} MiB  fds {:>5}  requests {}",
            started.elapsed().as_secs(),
            rss as f64 / 1024.0,
            fds,
            done.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    // The load ends; the idle clients still hold their sockets. The proxy's timeouts (3 s idle,
    // 2 s handshake, 3 s tunnel, 30 s for a request head) close them.
    let cooldown = Instant::now();
    let mut end = (0, usize::MAX);
    while cooldown.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        end = (rss_kib(pid), open_fds(pid));
        eprintln!(
            "cooldown {:>3}s  RSS {:>6.1} MiB  fds {:>5}",
            cooldown.elapsed().as_secs(),
            end.0 as f64 / 1024.0,
            end.1
        );
        if end.1 <= fds_at_start + POOLED {
            break;
        }
    }
    let peak_fds = samples.iter().map(|s| s.1).max().unwrap_or(0);
    eprintln!(
        "soak: {} requests in {seconds} s; RSS {:.1} MiB at start, {:.1} at the end; fds {fds_at_start} at start, {peak_fds} at the peak, {} at the end",
        done.load(Ordering::Relaxed),
        rss_at_start as f64 / 1024.0,
        end.0 as f64 / 1024.0,
        end.1
    );
    assert!(done.load(Ordering::Relaxed) > 100, "the load ran");
    assert_eq!(bad.load(Ordering::Relaxed), 0, "every download and upload arrived whole (SHA-256)");
    eprintln!("soak: RSS samples every 10 s in {}", csv_path.display());
    assert!(peak_fds > fds_at_start + 20, "the idle clients held connections open during the load");
    assert!(
        end.1 <= fds_at_start + POOLED,
        "every idle connection was closed: {} fds at the end, {fds_at_start} at start",
        end.1
    );
    // Memory stops growing: the second half of the load ends no higher than 1.25x the first
    // half's peak (allocator caches settle; a table without a bound would keep climbing).
    let half = samples.len() / 2;
    let first_peak = samples[..half.max(1)].iter().map(|s| s.0).max().unwrap_or(0);
    let last = samples.last().map(|s| s.0).unwrap_or(0);
    assert!(
        last as f64 <= first_peak as f64 * 1.25 + 4096.0,
        "RSS kept growing: {first_peak} KiB at the first half's peak, {last} KiB at the end"
    );
    for t in tasks {
        t.abort();
    }
    held.abort();
}
