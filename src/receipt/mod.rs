//! The transparency record: per site (the page's), which hosts were blocked, which ads went out
//! de-identified, and what the rewriter took out of its pages. Off the hot path: a request
//! only *tries* the lock; when it is busy, or the table is full, the record is counted as
//! dropped and the request goes on without waiting.

use crate::policy::{Decision, RequestType, Verdict};
use crate::rewrite::Removal;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// At most this many sites are kept; the receipt is for recent browsing, not an archive.
pub const MAX_SITES: usize = 2000;
const MAX_RECENT: usize = 20;

#[derive(Debug, Default, Clone)]
pub struct SiteReceipt {
    /// (host, verdict) → requests.
    pub requests: BTreeMap<(String, Verdict), u64>,
    /// What the rewriter removed, by kind.
    pub removed: BTreeMap<&'static str, u64>,
    pub recent_removals: Vec<String>,
}

#[derive(Default)]
pub struct Receipt {
    sites: Mutex<HashMap<String, SiteReceipt>>,
    pub dropped: AtomicU64,
}

impl Receipt {
    pub fn new() -> Receipt {
        Receipt::default()
    }

    pub fn record(&self, page_site: Option<&str>, host: &str, decision: &Decision, _t: RequestType) {
        if decision.verdict == Verdict::Allow && !decision.ad_class {
            return; // Ordinary resources are not what a receipt is for.
        }
        let site = page_site.unwrap_or(host);
        let Ok(mut sites) = self.sites.try_lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !sites.contains_key(site) && sites.len() >= MAX_SITES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = sites.entry(site.to_string()).or_default();
        *entry.requests.entry((host.to_string(), decision.verdict)).or_default() += 1;
    }

    pub fn record_removals(&self, page_site: &str, removals: &[Removal]) {
        if removals.is_empty() {
            return;
        }
        let Ok(mut sites) = self.sites.try_lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !sites.contains_key(page_site) && sites.len() >= MAX_SITES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = sites.entry(page_site.to_string()).or_default();
        for r in removals {
            *entry.removed.entry(r.kind.as_str()).or_default() += 1;
            if entry.recent_removals.len() >= MAX_RECENT {
                entry.recent_removals.remove(0);
            }
            entry.recent_removals.push(format!("{}: {}", r.kind.as_str(), r.what));
        }
    }

    /// A copy of the receipt, sites sorted by name.
    pub fn snapshot(&self) -> Vec<(String, SiteReceipt)> {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = sites.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
