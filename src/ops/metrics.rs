//! Counters for `/metrics` (Prometheus text format): relaxed atomics, nothing on the hot path
//! but an increment.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub blocked: AtomicU64,
    pub ads: AtomicU64,
    pub allowed: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub denied: AtomicU64,
    pub rewrite_removals: AtomicU64,
}

impl Metrics {
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Count a request and give it its id: its number in the count (one atomic add, not two).
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn render(&self, receipt_dropped: u64) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
        };
        counter("nostalk_connections_total", "Client connections accepted.", g(&self.connections));
        counter("nostalk_requests_total", "Requests received, CONNECT included.", g(&self.requests));
        counter("nostalk_blocked_total", "Requests answered here because they were surveillance.", g(&self.blocked));
        counter("nostalk_ads_total", "Ad requests forwarded de-identified.", g(&self.ads));
        counter("nostalk_allowed_total", "Requests forwarded with hygiene.", g(&self.allowed));
        counter("nostalk_upstream_errors_total", "Requests that failed upstream (502/504).", g(&self.upstream_errors));
        counter("nostalk_denied_connections_total", "Connections refused by [access] allow.", g(&self.denied));
        counter("nostalk_rewrite_removals_total", "Things removed from HTML pages.", g(&self.rewrite_removals));
        counter(
            "nostalk_receipt_dropped_total",
            "Receipt records dropped to keep requests from waiting.",
            receipt_dropped,
        );
        s
    }
}
