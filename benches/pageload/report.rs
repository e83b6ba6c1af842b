//! The page-load benchmark's figures: each page's loads by round and way (direct, through
//! nostalk, direct again), their per-page means, the medians over pages, and which pages are
//! faster or slower in every round, against the noise that two direct loads of the same page
//! show. Printed as a table, or as JSON with every sample.

use serde_json::{json, Value};
use std::fmt::Write;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Direct,
    Nostalk,
    Direct2,
}

/// One page load, in ms from navigation start (FCP -1 when nothing was painted); requests and
/// bytes as the web saw them; the CPU time nostalk's process spent on it (0 for a direct load).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub load: f64,
    pub fcp: f64,
    pub ttfb: f64,
    pub html_end: f64,
    pub requests: u64,
    pub bytes: u64,
    pub trackers: u64,
    pub cpu_ms: f64,
}

pub struct Results {
    names: Vec<String>,
    /// [page][round][mode]
    samples: Vec<Vec<[Option<Sample>; 3]>>,
}

fn idx(m: Mode) -> usize {
    match m {
        Mode::Direct => 0,
        Mode::Nostalk => 1,
        Mode::Direct2 => 2,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A page with every load of every round.
struct Full<'a> {
    name: &'a str,
    rounds: Vec<[Sample; 3]>,
}

impl Full<'_> {
    fn mean(&self, m: Mode, f: impl Fn(&Sample) -> f64) -> f64 {
        self.rounds.iter().map(|r| f(&r[idx(m)])).sum::<f64>() / self.rounds.len() as f64
    }
    /// The spread of the two direct loads: the most they differ in any round.
    fn noise(&self) -> f64 {
        self.rounds.iter().map(|r| (r[0].load - r[2].load).abs()).fold(0.0, f64::max)
    }
    fn every(&self, f: impl Fn(&[Sample; 3]) -> bool) -> bool {
        self.rounds.iter().all(f)
    }
}

impl Results {
    pub fn new(names: Vec<String>, rounds: usize) -> Results {
        let samples = names.iter().map(|_| vec![[None; 3]; rounds]).collect();
        Results { names, samples }
    }

    pub fn put(&mut self, page: usize, round: usize, m: Mode, s: Option<Sample>) {
        self.samples[page][round][idx(m)] = s;
    }

    fn full(&self) -> Vec<Full<'_>> {
        self.names
            .iter()
            .zip(&self.samples)
            .filter_map(|(name, rounds)| {
                let rounds: Option<Vec<[Sample; 3]>> = rounds.iter().map(|r| Some([r[0]?, r[1]?, r[2]?])).collect();
                Some(Full { name, rounds: rounds? })
            })
            .collect()
    }

    fn failed(&self) -> Vec<&str> {
        let full: Vec<&str> = self.full().iter().map(|f| f.name).collect();
        self.names.iter().map(String::as_str).filter(|n| !full.contains(n)).collect()
    }

    /// The totals, as one JSON object (the table prints the same figures).
    fn totals(&self) -> Value {
        let full = self.full();
        let med = |m: Mode, f: &dyn Fn(&Sample) -> f64| median(full.iter().map(|p| p.mean(m, f)).collect());
        let delta_from_direct = |m: Mode, f: &dyn Fn(&Sample) -> f64| {
            median(full.iter().map(|p| p.mean(m, f) - p.mean(Mode::Direct, f)).collect())
        };
        let delta = |f: &dyn Fn(&Sample) -> f64| delta_from_direct(Mode::Nostalk, f);
        // Direct again against direct: the same delta with nothing changed, the noise.
        let noise_delta = |f: &dyn Fn(&Sample) -> f64| delta_from_direct(Mode::Direct2, f);
        let sum = |m: Mode, f: &dyn Fn(&Sample) -> f64| full.iter().map(|p| p.mean(m, f)).sum::<f64>();
        let names =
            |pred: &dyn Fn(&Full) -> bool| -> Vec<&str> { full.iter().filter(|p| pred(p)).map(|p| p.name).collect() };
        let load = |s: &Sample| s.load;
        let (ld, lp, ld2) = (med(Mode::Direct, &load), med(Mode::Nostalk, &load), med(Mode::Direct2, &load));
        // The same ratio taken in each round alone: how far one round's figure moves.
        let rounds = full.first().map_or(0, |p| p.rounds.len());
        let in_round = |r: usize, m: Mode| median(full.iter().map(|p| p.rounds[r][idx(m)].load).collect());
        let round_ratios: Vec<f64> =
            (0..rounds).map(|r| in_round(r, Mode::Nostalk) / in_round(r, Mode::Direct)).collect();
        json!({
            "pages": full.len(),
            "failed": self.failed(),
            "load_ms": { "direct": ld, "nostalk": lp, "direct_again": ld2, "ratio": lp / ld, "noise_ratio": ld2 / ld,
                         "median_page_ratio": median(full.iter().map(|p| p.mean(Mode::Nostalk, load) / p.mean(Mode::Direct, load)).collect()),
                         "ratio_by_round": round_ratios },
            "fcp_ms": { "direct": med(Mode::Direct, &|s| s.fcp), "nostalk": med(Mode::Nostalk, &|s| s.fcp),
                        "median_delta": delta(&|s| s.fcp),
                        "noise_median_delta": noise_delta(&|s| s.fcp) },
            "html_first_byte_ms": { "direct": med(Mode::Direct, &|s| s.ttfb), "nostalk": med(Mode::Nostalk, &|s| s.ttfb),
                                    "median_delta": delta(&|s| s.ttfb),
                                    "noise_median_delta": noise_delta(&|s| s.ttfb) },
            "html_end_ms": { "direct": med(Mode::Direct, &|s| s.html_end), "nostalk": med(Mode::Nostalk, &|s| s.html_end),
                             "median_delta": delta(&|s| s.html_end) },
            "requests": { "direct": sum(Mode::Direct, &|s| s.requests as f64), "nostalk": sum(Mode::Nostalk, &|s| s.requests as f64) },
            "bytes": { "direct": sum(Mode::Direct, &|s| s.bytes as f64), "nostalk": sum(Mode::Nostalk, &|s| s.bytes as f64) },
            "tracker_scripts": { "direct": sum(Mode::Direct, &|s| s.trackers as f64), "nostalk": sum(Mode::Nostalk, &|s| s.trackers as f64) },
            "nostalk_cpu_ms": { "per_page_median": med(Mode::Nostalk, &|s| s.cpu_ms),
                                "per_request": sum(Mode::Nostalk, &|s| s.cpu_ms) / sum(Mode::Nostalk, &|s| s.requests as f64),
                                "all_pages": sum(Mode::Nostalk, &|s| s.cpu_ms) },
            "noise_ms_median": median(full.iter().map(|p| p.noise()).collect()),
            "faster_every_round": names(&|p| p.every(|r| r[1].load < r[0].load)),
            "slower_every_round": names(&|p| p.every(|r| r[1].load > r[0].load)),
            "direct_again_slower_every_round": names(&|p| p.every(|r| r[2].load > r[0].load)),
            "slower_beyond_noise": names(&|p| { let n = p.noise(); p.every(|r| r[1].load - (r[0].load + r[2].load) / 2.0 > n) }),
            "html_first_byte_later_every_round_by_1ms": names(&|p| p.every(|r| r[1].ttfb > r[0].ttfb.max(r[2].ttfb) + 1.0)),
        })
    }

    pub fn json(&self, settings: Value) -> Value {
        let pages: Vec<Value> = self
            .names
            .iter()
            .zip(&self.samples)
            .map(|(name, rounds)| {
                let one = |s: &Option<Sample>| {
                    s.map(|s| {
                        json!({ "load": s.load, "fcp": s.fcp, "html_first_byte": s.ttfb, "html_end": s.html_end,
                                      "requests": s.requests, "bytes": s.bytes, "tracker_scripts": s.trackers, "cpu_ms": s.cpu_ms })
                    })
                };
                let rounds: Vec<Value> = rounds
                    .iter()
                    .map(|r| json!({ "direct": one(&r[0]), "nostalk": one(&r[1]), "direct_again": one(&r[2]) }))
                    .collect();
                json!({ "page": name, "rounds": rounds })
            })
            .collect();
        json!({ "settings": settings, "totals": self.totals(), "pages": pages })
    }

    pub fn table(&self, settings: &Value) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "pageload {settings}");
        let _ = writeln!(
            o,
            "{:<44} {:>7} {:>7} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>4} {:>4} {:>6} {:>6}  every round",
            "page (ms; means over rounds)",
            "load",
            "nostalk",
            "x",
            "fcp",
            "n",
            "ttfb",
            "n",
            "end",
            "n",
            "req",
            "n",
            "KB",
            "n"
        );
        for p in self.full() {
            let m = |mode, f: fn(&Sample) -> f64| p.mean(mode, f);
            let (d, n) = (Mode::Direct, Mode::Nostalk);
            let noise = p.noise();
            let verdict = if p.every(|r| r[1].load - (r[0].load + r[2].load) / 2.0 > noise) {
                "SLOWER beyond noise"
            } else if p.every(|r| r[1].load > r[0].load) {
                "slower"
            } else if p.every(|r| r[1].load < r[0].load) {
                "faster"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "{:<44} {:>7.0} {:>7.0} {:>5.2} {:>6.0} {:>6.0} {:>6.1} {:>6.1} {:>6.1} {:>6.1} {:>4.0} {:>4.0} {:>6.0} {:>6.0}  {verdict}",
                p.name.chars().take(44).collect::<String>(),
                m(d, |s| s.load),
                m(n, |s| s.load),
                m(n, |s| s.load) / m(d, |s| s.load),
                m(d, |s| s.fcp),
                m(n, |s| s.fcp),
                m(d, |s| s.ttfb),
                m(n, |s| s.ttfb),
                m(d, |s| s.html_end),
                m(n, |s| s.html_end),
                m(d, |s| s.requests as f64),
                m(n, |s| s.requests as f64),
                m(d, |s| s.bytes as f64) / 1024.0,
                m(n, |s| s.bytes as f64) / 1024.0,
            );
        }
        let t = self.totals();
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let list = |v: &Value| {
            let a = v.as_array().cloned().unwrap_or_default();
            format!("{} {:?}", a.len(), a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect::<Vec<_>>())
        };
        let _ = writeln!(o, "\npages measured: {}; failed: {}", t["pages"], t["failed"]);
        let _ = writeln!(
            o,
            "load, median over pages: direct {:.0} ms, nostalk {:.0} ms = {:.2}x (median page ratio {:.2}x); direct again {:.0} ms = {:.2}x",
            f(&t["load_ms"]["direct"]),
            f(&t["load_ms"]["nostalk"]),
            f(&t["load_ms"]["ratio"]),
            f(&t["load_ms"]["median_page_ratio"]),
            f(&t["load_ms"]["direct_again"]),
            f(&t["load_ms"]["noise_ratio"]),
        );
        let by_round: Vec<String> = t["load_ms"]["ratio_by_round"]
            .as_array()
            .map(|a| a.iter().map(|v| format!("{:.2}x", v.as_f64().unwrap_or(f64::NAN))).collect())
            .unwrap_or_default();
        let _ = writeln!(o, "  the same ratio in each round alone: {}", by_round.join(", "));
        let _ = writeln!(
            o,
            "first contentful paint, median: direct {:.0} ms, nostalk {:.0} ms; median page delta {:+.1} ms (direct again {:+.1} ms)",
            f(&t["fcp_ms"]["direct"]),
            f(&t["fcp_ms"]["nostalk"]),
            f(&t["fcp_ms"]["median_delta"]),
            f(&t["fcp_ms"]["noise_median_delta"])
        );
        let _ = writeln!(
            o,
            "HTML first byte, median: direct {:.1} ms, nostalk {:.1} ms; median page delta {:+.1} ms (direct again {:+.1} ms)",
            f(&t["html_first_byte_ms"]["direct"]),
            f(&t["html_first_byte_ms"]["nostalk"]),
            f(&t["html_first_byte_ms"]["median_delta"]),
            f(&t["html_first_byte_ms"]["noise_median_delta"]),
        );
        let _ = writeln!(
            o,
            "HTML end, median: direct {:.1} ms, nostalk {:.1} ms; median page delta {:+.1} ms",
            f(&t["html_end_ms"]["direct"]),
            f(&t["html_end_ms"]["nostalk"]),
            f(&t["html_end_ms"]["median_delta"]),
        );
        let (rd, rn) = (f(&t["requests"]["direct"]), f(&t["requests"]["nostalk"]));
        let (bd, bn) = (f(&t["bytes"]["direct"]), f(&t["bytes"]["nostalk"]));
        let _ = writeln!(o, "requests: direct {rd:.0}, nostalk {rn:.0} ({:.0}% fewer)", 100.0 * (1.0 - rn / rd));
        let _ = writeln!(
            o,
            "bytes: direct {:.0} KB, nostalk {:.0} KB ({:.0}% fewer)",
            bd / 1024.0,
            bn / 1024.0,
            100.0 * (1.0 - bn / bd)
        );
        let _ = writeln!(
            o,
            "tracker scripts run: direct {:.0}, nostalk {:.0}",
            f(&t["tracker_scripts"]["direct"]),
            f(&t["tracker_scripts"]["nostalk"])
        );
        let _ = writeln!(
            o,
            "nostalk's CPU time: {:.0} ms for all pages, median {:.1} ms a page, {:.2} ms a request",
            f(&t["nostalk_cpu_ms"]["all_pages"]),
            f(&t["nostalk_cpu_ms"]["per_page_median"]),
            f(&t["nostalk_cpu_ms"]["per_request"])
        );
        let _ = writeln!(
            o,
            "noise (two direct loads of a page, the most they differ in a round), median: {:.0} ms",
            f(&t["noise_ms_median"])
        );
        let _ = writeln!(o, "faster in every round: {}", list(&t["faster_every_round"]));
        let _ = writeln!(o, "slower in every round: {}", list(&t["slower_every_round"]));
        let _ = writeln!(
            o,
            "  (direct again slower than direct in every round, what chance gives: {})",
            list(&t["direct_again_slower_every_round"])
        );
        let _ = writeln!(o, "slower beyond noise in every round: {}", list(&t["slower_beyond_noise"]));
        let _ = writeln!(
            o,
            "HTML first byte later than both direct loads by >1 ms in every round: {}",
            list(&t["html_first_byte_later_every_round_by_1ms"])
        );
        o
    }
}
