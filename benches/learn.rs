//! The learning phase (src/proxy/forward/learn.rs) at soak scale: 100,000 synthetic
//! third-party requests across 5,000 first-party sites and 20,000 third parties, each carrying
//! an identifying query value and cookie never seen before, a quarter of them answered with an
//! identifying `Set-Cookie`: the worst case for the learner's memory. Prints the cost per
//! request with learning on against the same requests with it off (the baseline, in the same
//! run, alternating), the observations held, the resident memory they take, how many third
//! parties were learned, and the size of the choices store on disk.
//!
//! Run: `cargo bench --bench learn`.

use http::{HeaderMap, HeaderValue, Method, Uri};
use nostalk::config::LearnConfig;
use nostalk::exchange::{Done, Exchange, TopPage};
use nostalk::ops::choices::Choices;
use nostalk::policy::{Decision, RequestType};
use nostalk::proxy::forward::learn::{Learner, MAX_OBSERVATIONS};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: usize = 100_000;
const SITES: usize = 5_000;
const THIRD_PARTIES: usize = 20_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4)
}

struct Synthetic {
    ex: Exchange,
    uri: Uri,
    request: HeaderMap,
    response: HeaderMap,
}

/// A value that looks like an identifier and is new each time.
fn id(i: usize, salt: u64) -> String {
    let x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    format!("{x:016x}Zq{}", i % 97)
}

fn requests() -> Vec<Synthetic> {
    (0..REQUESTS)
        .map(|i| {
            let site = format!("site{}.test", i % SITES);
            let tp = format!("tp{}.test", (i * 7919) % THIRD_PARTIES);
            let uri: Uri = format!("http://{tp}/p.js?uid={}&v=3", id(i, 1)).parse().unwrap();
            let mut request = HeaderMap::new();
            request.insert("cookie", HeaderValue::from_str(&format!("sid={}", id(i, 2))).unwrap());
            let mut response = HeaderMap::new();
            if i % 4 == 0 {
                response.insert("set-cookie", HeaderValue::from_str(&format!("tid={}; Path=/", id(i, 3))).unwrap());
            }
            let ex = Exchange {
                received: Instant::now(),
                url: uri.to_string(),
                host: tp.clone(),
                site: tp,
                request_type: RequestType::Script,
                method: Method::GET,
                page: TopPage { host: format!("www.{site}"), site },
                third_party: true,
                decision: Decision::allow(),
                shopping: false,
                client: None,
                user: None,
                group: None,
                done: Done::default(),
            };
            Synthetic { ex, uri, request, response }
        })
        .collect()
}

fn pass(learner: &Learner, reqs: &[Synthetic]) -> f64 {
    let start = Instant::now();
    for r in reqs {
        learner.request(&r.ex, &r.uri, &r.request);
        learner.response(&r.ex, &r.response);
    }
    start.elapsed().as_nanos() as f64 / reqs.len() as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of benchmarks; there is one, unnamed
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("choices.sqlite3");
    let choices = Arc::new(Choices::open(&store, 1).unwrap());
    let reqs = requests();
    // The tables every request path loads once (the companies, the public suffixes), first.
    pass(&Learner::new(&LearnConfig::default(), choices.clone()), &reqs[..100]);
    let rss_before = rss_kib();
    let mut on_ns = Vec::new();
    let mut off_ns = Vec::new();
    let mut held = (0, 0);
    let mut peak_rss = rss_before;
    let mut heap = 0;
    for round in 0..3 {
        // A fresh learner each round: the first 100,000 requests are the costly ones.
        let on = Learner::new(&LearnConfig::default(), choices.clone());
        let off = Learner::new(&LearnConfig { enabled: false, ..LearnConfig::default() }, choices.clone());
        off_ns.push(pass(&off, &reqs));
        if round == 0 {
            println!("  after a pass with learning off: resident {} KiB", rss_kib());
        }
        on_ns.push(pass(&on, &reqs));
        held = on.observations();
        peak_rss = peak_rss.max(rss_kib());
        heap = heap.max(on.heap_bytes());
        println!(
            "round {round}: learning off {:.0} ns/request, on {:.0} ns/request; resident {} KiB",
            off_ns[round],
            on_ns[round],
            rss_kib()
        );
    }
    // The shape of the load harness's A/B: one third party asked from one page with the same
    // identifier every time (a lookup, never an insert).
    let same: Vec<Synthetic> = (0..REQUESTS)
        .map(|_| {
            let mut r = requests().swap_remove(0);
            r.uri = "http://localhost/1k.bin?uid=Zk29xQ7pLm3v8R".parse().unwrap();
            r
        })
        .take(1)
        .collect();
    let same: Vec<&Synthetic> = std::iter::repeat_n(&same[0], REQUESTS).collect();
    let on = Learner::new(&LearnConfig::default(), choices.clone());
    let off = Learner::new(&LearnConfig { enabled: false, ..LearnConfig::default() }, choices.clone());
    let time = |l: &Learner| {
        let start = Instant::now();
        for r in &same {
            l.request(&r.ex, &r.uri, &r.request);
            l.response(&r.ex, &r.response);
        }
        start.elapsed().as_nanos() as f64 / same.len() as f64
    };
    let (mut same_on, mut same_off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        same_off.push(time(&off));
        same_on.push(time(&on));
    }
    same_on.sort_by(f64::total_cmp);
    same_off.sort_by(f64::total_cmp);
    println!(
        "the same identifier from one page, {REQUESTS} times: learning on {:.0} ns/request, off {:.0} ns/request",
        same_on[1], same_off[1]
    );
    on_ns.sort_by(f64::total_cmp);
    off_ns.sort_by(f64::total_cmp);
    let (on, off) = (on_ns[1], off_ns[1]);
    let learned = choices.learned().len();
    let store_kib = std::fs::metadata(&store).map_or(0, |m| m.len() / 1024)
        + std::fs::metadata(dir.path().join("choices.sqlite3-wal")).map_or(0, |m| m.len() / 1024);
    println!("{REQUESTS} third-party requests across {SITES} sites and {THIRD_PARTIES} third parties:");
    println!("  median cost: learning on {on:.0} ns/request, off {off:.0} ns/request (the baseline), {:.2}x", on / off);
    println!(
        "  observations held: {} third parties with cookies, {} values (bound {MAX_OBSERVATIONS} each)",
        held.0, held.1
    );
    println!(
        "  the observations' tables: {} KiB (capacity x entry size + names); the process's resident memory {} KiB before, {} KiB at peak (+{} KiB, the allocator's share included)",
        heap / 1024,
        rss_before,
        peak_rss,
        peak_rss - rss_before
    );
    println!("  learned: {learned} third parties; the store on disk: {store_kib} KiB");
}
