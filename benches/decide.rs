//! Decisions per second on the 8,276 real requests in ../shared/data/requests, with EasyList
//! and EasyPrivacy loaded: nostalk's `decide` with a warm cache, without the cache, and the
//! adblock engine called bare (one engine, both lists, optimized) in the same run, as the
//! baseline. Also prints the memory the engines take (resident set growth while building).
//!
//! Run: `cargo bench --bench decide` (skips with a message when ../shared is absent).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nostalk::policy::{party::UNKNOWN_CROSS_SITE_PAGE, site, Policy, RequestInfo, RequestType};
use std::hint::black_box;

#[path = "../tests/support/lists.rs"]
mod lists;
use std::path::PathBuf;

// The allocator the nostalk binary ships with (src/main.rs), for the baseline and nostalk alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Req {
    url: String,
    host: String,
    page: String,
    source: String,
    raw_type: String,
    t: RequestType,
}

fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/data is not beside the repository");
        None
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

fn load(data: &std::path::Path) -> Vec<Req> {
    let text = std::fs::read_to_string(data.join("requests/brave-matching-test-requests.json")).unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    v.iter()
        .filter_map(|r| {
            let url = r["url"].as_str()?.to_string();
            let host = site::host_of_url(&url)?.to_ascii_lowercase();
            let source = r["sourceUrl"].as_str()?.to_string();
            let page =
                site::host_of_url(&source).map(str::to_ascii_lowercase).unwrap_or(UNKNOWN_CROSS_SITE_PAGE.into());
            let raw_type = r["type"].as_str()?.to_string();
            let t = lists::dataset_type(&raw_type);
            Some(Req { url, host, page, source, raw_type, t })
        })
        .collect()
}

fn info(r: &Req) -> RequestInfo<'_> {
    RequestInfo { url: &r.url, host: &r.host, page_host: Some(&r.page), request_type: r.t, method: "GET" }
}

fn bench(c: &mut Criterion) {
    let Some(data) = data() else { return };
    let reqs = load(&data);

    nostalk::ops::return_free_memory();
    let before = rss_kib();
    let t = std::time::Instant::now();
    let bare = {
        let mut rules = std::fs::read_to_string(data.join("lists/easylist.txt")).unwrap();
        rules.push('\n');
        rules.push_str(&std::fs::read_to_string(data.join("lists/easyprivacy.txt")).unwrap());
        let mut set = adblock::lists::FilterSet::new(false);
        set.add_filter_list(rules, adblock::lists::ParseOptions::default());
        adblock::Engine::new_with_filter_set(set)
    };
    let bare_ms = t.elapsed().as_millis();
    // What the engine holds, not what building it passed through: freed pages handed back
    // first, as the proxy does after a build.
    nostalk::ops::return_free_memory();
    let bare_kib = rss_kib().saturating_sub(before);
    let before = rss_kib();
    let t = std::time::Instant::now();
    let policy = lists::easylist_easyprivacy_policy(&data);
    let ours_ms = t.elapsed().as_millis();
    nostalk::ops::return_free_memory();
    let ours_kib = rss_kib().saturating_sub(before);
    eprintln!("engines, EasyList + EasyPrivacy: adblock bare {bare_kib} KiB built in {bare_ms} ms; nostalk policy {ours_kib} KiB built in {ours_ms} ms");
    let embedded_before = rss_kib();
    let embedded = Policy::build(&nostalk::Config::default(), &[]).unwrap();
    nostalk::ops::return_free_memory();
    eprintln!("engines, embedded lists only: {} KiB", rss_kib().saturating_sub(embedded_before));
    drop(embedded);

    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(reqs.len() as u64));
    g.sample_size(20);
    g.bench_function("adblock engine bare (baseline)", |b| {
        b.iter(|| {
            for r in &reqs {
                let req = adblock::request::Request::new(&r.url, &r.source, &r.raw_type, "GET");
                if let Ok(req) = req {
                    black_box(bare.check_network_request(&req));
                }
            }
        })
    });
    g.bench_function("nostalk decide, uncached", |b| {
        b.iter(|| {
            for r in &reqs {
                black_box(policy.decide_uncached(&info(r)));
            }
        })
    });
    // Warm: every request has been decided once (a page loaded again, a second tab).
    for r in &reqs {
        policy.decide(&info(r));
    }
    g.bench_function("nostalk decide, cached", |b| {
        b.iter(|| {
            for r in &reqs {
                black_box(policy.decide(&info(r)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
