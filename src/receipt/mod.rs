//! The transparency record: per site (the page's), which hosts were blocked, which ads went out
//! de-identified, and what the rewriter took out of its pages. Off the hot path: a request
//! only *tries* the lock; when it is busy, the record is counted as dropped and the request
//! goes on without waiting. Every table is bounded: at most `MAX_SITES` sites (the least
//! recently seen is dropped for a new one), `MAX_HOSTS_PER_SITE` hosts per site (requests to
//! more are counted, not named), `MAX_RECENT` removals per site.

use crate::exchange::{Exchange, Removal};
use crate::policy::Verdict;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// At most this many sites are kept; the receipt is for recent browsing, not an archive.
pub const MAX_SITES: usize = 2000;
/// At most this many hosts are named per site; a page that calls on more has the rest counted.
pub const MAX_HOSTS_PER_SITE: usize = 100;
const MAX_RECENT: usize = 20;

#[derive(Debug, Default, Clone)]
pub struct SiteReceipt {
    /// (host, verdict) → requests.
    pub requests: BTreeMap<(String, Verdict), u64>,
    /// What the rewriter removed, by kind.
    pub removed: BTreeMap<&'static str, u64>,
    pub recent_removals: Vec<String>,
    /// Requests to hosts past `MAX_HOSTS_PER_SITE`.
    pub other_hosts: u64,
    /// When the site was last seen (a sequence number: larger is more recent).
    pub last: u64,
}

#[derive(Default)]
pub struct Receipt {
    sites: Mutex<HashMap<String, SiteReceipt>>,
    clock: AtomicU64,
    pub dropped: AtomicU64,
}

impl Receipt {
    pub fn new() -> Receipt {
        Receipt::default()
    }

    /// File a finished exchange under its page's site: the request, when it was blocked or
    /// an ad (ordinary resources are not what a receipt is for), and what was removed from
    /// the page it brought.
    pub fn record(&self, ex: &Exchange) {
        let decision = &ex.decision;
        let request = decision.verdict != Verdict::Allow || decision.ad_class;
        let removals = &ex.done.removals;
        if !request && removals.is_empty() {
            return;
        }
        self.with_site(&ex.page.site, |entry| {
            if request {
                let key = (ex.host.clone(), decision.verdict);
                if let Some(n) = entry.requests.get_mut(&key) {
                    *n += 1;
                } else if entry.requests.len() < MAX_HOSTS_PER_SITE {
                    entry.requests.insert(key, 1);
                } else {
                    entry.other_hosts += 1;
                }
            }
            Self::removed(entry, removals);
        });
    }

    fn removed(entry: &mut SiteReceipt, removals: &[Removal]) {
        for r in removals {
            *entry.removed.entry(r.kind.as_str()).or_default() += 1;
            if entry.recent_removals.len() >= MAX_RECENT {
                entry.recent_removals.remove(0);
            }
            entry.recent_removals.push(format!("{}: {}", r.kind.as_str(), r.what));
        }
    }

    /// Run `f` on the site's entry, made (and the least recently seen site dropped, when the
    /// table is full) if need be; counted as dropped when the lock is busy.
    fn with_site(&self, site: &str, f: impl FnOnce(&mut SiteReceipt)) {
        let Ok(mut sites) = self.sites.try_lock() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        if !sites.contains_key(site) && sites.len() >= MAX_SITES {
            if let Some(oldest) = sites.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone()) {
                sites.remove(&oldest);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let entry = sites.entry(site.to_string()).or_default();
        entry.last = now;
        f(entry);
    }

    /// `n` sites from `offset`, the most recently seen first, and how many sites there are.
    pub fn page(&self, offset: usize, n: usize) -> (Vec<(String, SiteReceipt)>, usize) {
        let sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<(u64, &String)> = sites.iter().map(|(k, v)| (v.last, k)).collect();
        order.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
        let page = order.iter().skip(offset).take(n).map(|(_, k)| ((*k).clone(), sites[*k].clone())).collect();
        (page, sites.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Decision;

    fn blocked(page_site: &str, host: &str) -> Exchange {
        Exchange::sample(
            &format!("https://{host}/t.js"),
            page_site,
            Decision { verdict: Verdict::Block, ..Decision::allow() },
        )
    }

    #[test]
    fn hosts_per_site_and_sites_are_bounded() {
        let r = Receipt::new();
        for i in 0..(MAX_HOSTS_PER_SITE + 50) {
            r.record(&blocked("news.test", &format!("t{i}.tracker.test")));
        }
        let (sites, _) = r.page(0, 10);
        assert_eq!(sites[0].1.requests.len(), MAX_HOSTS_PER_SITE);
        assert_eq!(sites[0].1.other_hosts, 50);
        for i in 0..(MAX_SITES + 10) {
            r.record(&blocked(&format!("s{i}.test"), "t.tracker.test"));
        }
        let (first, total) = r.page(0, 1);
        assert_eq!(total, MAX_SITES);
        assert_eq!(first[0].0, format!("s{}.test", MAX_SITES + 9), "most recent first");
    }
}
