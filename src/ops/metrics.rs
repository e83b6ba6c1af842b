//! What `/metrics` says (Prometheus text format): counters of connections and requests, of
//! requests and response bytes by verdict, of the rewriter's removals by kind; gauges of open
//! connections and tunnels; histograms of upstream latency and of time to the response head;
//! list rule counts and ages and build info, read at scrape time. On the hot path nothing but
//! relaxed atomic adds, each to a slot of the counter on a cache line of the adding thread's
//! own: one shared atomic per counter would have every worker thread take the line from the
//! other on each request (about ten adds per request). A scrape sums the slots. Written here
//! rather than with a metrics crate: the set is small and fixed, and plain atomics cost a
//! request less than a registry's labelled lookups.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The verdicts, in the order of the by-verdict arrays.
pub const VERDICTS: [&str; 3] = ["block", "ad", "allow"];
/// How many kinds of removal the rewriter counts (see `exchange::Kind::index`).
pub const REMOVAL_KINDS: usize = 8;

/// How many slots a counter has; threads beyond that share them (still correct, less apart).
const SLOTS: usize = 8;

/// One slot, alone on its cache line.
#[derive(Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

/// A counter added to from every thread: each thread adds to its own slot, a read sums them.
#[derive(Default)]
pub struct Counter {
    slots: [Slot; SLOTS],
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.slots[slot()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count: every slot's sum (a scrape's read; the ordering is that of each slot's load).
    pub fn load(&self, order: Ordering) -> u64 {
        self.slots.iter().map(|s| s.0.load(order)).sum()
    }
}

/// This thread's slot, given in turn as threads first count something.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

#[derive(Default)]
pub struct Metrics {
    pub connections: Counter,
    pub requests: Counter,
    pub blocked: Counter,
    pub ads: Counter,
    pub allowed: Counter,
    pub upstream_errors: Counter,
    pub denied: Counter,
    pub rewrite_removals: Counter,
    /// Body bytes sent to clients, by verdict (`VERDICTS` order).
    pub bytes: [Counter; 3],
    /// The rewriter's removals, by kind.
    pub removals: [Counter; REMOVAL_KINDS],
    /// Tunnels and WebSockets open now.
    pub tunnels: AtomicU64,
    /// From the request sent upstream to the upstream's response head.
    pub upstream_latency: Histogram,
    /// From the request's arrival to its response head going to the client.
    pub first_byte: Histogram,
}

/// What the scrape reads from elsewhere at the moment it is made.
pub struct Scrape<'a> {
    pub receipt_dropped: u64,
    pub open_connections: usize,
    /// The names of the removal kinds, by index.
    pub removal_kinds: [&'static str; REMOVAL_KINDS],
    /// Each list in force: name, verdict class, rules, age (None for the embedded ones).
    pub lists: &'a [(String, &'static str, usize, Option<Duration>)],
}

/// Bucket bounds in seconds; a request to a nearby origin takes a few milliseconds, a slow
/// one seconds.
const BOUNDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A Prometheus histogram of durations with fixed buckets, one atomic per bucket.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is past every bound.
    buckets: [Counter; BOUNDS.len() + 1],
    sum_micros: Counter,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| secs <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].add(1);
        self.sum_micros.add(d.as_micros() as u64);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            match BOUNDS.get(i) {
                Some(le) => _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}"),
                None => _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Decrements the tunnel gauge when the tunnel ends, however it ends.
pub struct TunnelOpen<'a>(&'a AtomicU64);

impl Drop for TunnelOpen<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn inc(&self, c: &Counter) {
        c.add(1);
    }
    pub fn add(&self, c: &Counter, n: u64) {
        if n != 0 {
            c.add(n);
        }
    }
    /// Count a request and give it its id for the DEBUG log: unique, not in order (its number
    /// in its thread's slot, and the slot).
    pub fn count_request(&self) -> u64 {
        let i = slot();
        let n = self.requests.slots[i].0.fetch_add(1, Ordering::Relaxed) + 1;
        n * SLOTS as u64 + i as u64
    }

    /// A tunnel or WebSocket opens; it is counted open until the guard is dropped.
    pub fn tunnel_open(&self) -> TunnelOpen<'_> {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        TunnelOpen(&self.tunnels)
    }

    pub fn render(&self, scrape: &Scrape) -> String {
        let g = |c: &Counter| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut one = |kind: &str, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        one("counter", "nostalk_connections_total", "Client connections accepted.", g(&self.connections));
        one("counter", "nostalk_requests_total", "Requests received, CONNECT included.", g(&self.requests));
        one(
            "counter",
            "nostalk_blocked_total",
            "Requests answered here because they were surveillance.",
            g(&self.blocked),
        );
        one("counter", "nostalk_ads_total", "Ad requests forwarded de-identified.", g(&self.ads));
        one("counter", "nostalk_allowed_total", "Requests forwarded with hygiene.", g(&self.allowed));
        one(
            "counter",
            "nostalk_upstream_errors_total",
            "Requests that failed upstream (502/504).",
            g(&self.upstream_errors),
        );
        one("counter", "nostalk_denied_connections_total", "Connections refused by [access] allow.", g(&self.denied));
        one("counter", "nostalk_rewrite_removals_total", "Things removed from HTML pages.", g(&self.rewrite_removals));
        one(
            "counter",
            "nostalk_receipt_dropped_total",
            "Receipt records dropped to keep requests from waiting.",
            scrape.receipt_dropped,
        );
        one("gauge", "nostalk_open_connections", "Client connections open now.", scrape.open_connections as u64);
        one("gauge", "nostalk_open_tunnels", "Tunnels and WebSockets open now.", self.tunnels.load(Ordering::Relaxed));
        let by_verdict = [g(&self.blocked), g(&self.ads), g(&self.allowed)];
        labelled(
            &mut s,
            "nostalk_requests_by_verdict_total",
            "Requests decided, by verdict.",
            VERDICTS.iter().map(|v| format!("verdict=\"{v}\"")).zip(by_verdict),
        );
        labelled(
            &mut s,
            "nostalk_response_bytes_total",
            "Body bytes sent to clients, by the request's verdict.",
            VERDICTS.iter().map(|v| format!("verdict=\"{v}\"")).zip(self.bytes.iter().map(g)),
        );
        labelled(
            &mut s,
            "nostalk_rewrite_removals_by_kind_total",
            "Things removed from HTML pages, by kind.",
            scrape.removal_kinds.iter().map(|k| format!("kind=\"{k}\"")).zip(self.removals.iter().map(g)),
        );
        self.upstream_latency.render(
            &mut s,
            "nostalk_upstream_latency_seconds",
            "From a request sent upstream to the upstream's response head.",
        );
        self.first_byte.render(
            &mut s,
            "nostalk_time_to_first_byte_seconds",
            "From a request's arrival to its response head going to the client.",
        );
        render_lists(&mut s, scrape.lists);
        let _ = writeln!(
            s,
            "# HELP nostalk_build_info The running build.\n# TYPE nostalk_build_info gauge\n\
             nostalk_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        s
    }
}

/// Each list's rule count, and the age of those that have a copy on disk.
fn render_lists(s: &mut String, lists: &[(String, &'static str, usize, Option<Duration>)]) {
    let _ = writeln!(s, "# HELP nostalk_list_rules Rules in force, by list.\n# TYPE nostalk_list_rules gauge");
    for (name, kind, rules, _) in lists {
        let _ = writeln!(s, "nostalk_list_rules{{list=\"{}\",kind=\"{kind}\"}} {rules}", escape(name));
    }
    let _ = writeln!(
        s,
        "# HELP nostalk_list_age_seconds Age of each downloaded or file list's copy in force.\n\
         # TYPE nostalk_list_age_seconds gauge"
    );
    for (name, _, _, age) in lists {
        if let Some(age) = age {
            let _ = writeln!(s, "nostalk_list_age_seconds{{list=\"{}\"}} {}", escape(name), age.as_secs());
        }
    }
}

fn labelled(s: &mut String, name: &str, help: &str, values: impl Iterator<Item = (String, u64)>) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in values {
        let _ = writeln!(s, "{name}{{{labels}}} {v}");
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_added_to_from_many_threads_sums_every_add() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..12)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(t)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.load(Ordering::SeqCst), 1000 * (0..12).sum::<u64>());
    }

    #[test]
    fn request_ids_are_unique_across_threads() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || (0..500).map(|_| m.count_request()).collect::<Vec<_>>())
            })
            .collect();
        let mut ids: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 5000);
        assert_eq!(m.requests.load(Ordering::SeqCst), 5000);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.001\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.005\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"10\"} 4\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 5\n") && s.contains("x_count 5\n"), "{s}");
        assert!(s.contains("x_sum 20.046\n"), "{s}");
    }
}
