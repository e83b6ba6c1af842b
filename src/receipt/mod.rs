//! The transparency record, per site (the page's): which trackers were kept off the network
//! (with rule, list and company), which ads went out de-identified and what was taken off them,
//! which allowed requests lost cookies or parameters, and what the rewriter took out of the
//! pages. It lives in memory and is bounded: at most `MAX_SITES` sites (the least recently
//! seen dropped first, counted in `dropped`), `MAX_HOSTS_PER_SITE` hosts per table (requests to
//! more are counted, not named), a ring of `MAX_RECENT` removals per site.
//!
//! Off the hot path: a request only *tries* the table's lock. When it is busy (another request
//! filing at the same moment, a page being read out), the record goes to a short backlog that
//! whoever holds the table next files first, so nothing is lost to a moment's contention; past
//! `MAX_BACKLOG` waiting records, one is counted as dropped. Each record tells the pages' live
//! view which site changed (a broadcast channel; nothing is sent when no one listens).
//!
//! On a gateway shared by many (`[receipt] per_person = false`) only totals are kept: per site,
//! and per ad source, never hosts, pages' URLs or anything tied to a client.
//!
//! With `[auth]`, each signed-in user also has a receipt of their own ([`PerUser`]), the one
//! the receipt pages show them: a user sees only their own sites, an admin the whole.

pub mod companies;

use crate::base::lock;
use crate::exchange::{Exchange, Kind, Removal, Stripped};
use crate::policy::{Reason, RequestType, Verdict};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many sites are kept; the receipt is for recent browsing, not an archive.
pub const MAX_SITES: usize = 2000;
/// At most this many hosts are named per table of a site; the rest are counted.
pub const MAX_HOSTS_PER_SITE: usize = 100;
/// At most this many ad sources are counted (for the aggregate view and /metrics).
pub const MAX_AD_SOURCES: usize = 500;
const MAX_RECENT: usize = 30;
/// Records waiting for a busy table; a page load makes a few dozen at once.
const MAX_BACKLOG: usize = 1024;
/// A CONNECT refused this soon after a client's navigation is filed under that page.
const PAGE_MEMORY: Duration = Duration::from_secs(60);
const MAX_CLIENT_PAGES: usize = 256;

/// A number below `n`, from a cheap per-thread generator (no secret depends on it).
fn rand_below(n: u64) -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) });
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x % n.max(1)
    })
}

/// At most this many users' own receipts are kept (the least recently created goes first).
pub const MAX_USER_RECEIPTS: usize = 1000;
/// At most this many sites in one user's own receipt.
pub const MAX_SITES_PER_USER: usize = 200;

/// Each signed-in user's own receipt (`[auth]`), kept beside the whole one.
#[derive(Default)]
pub struct PerUser {
    map: Mutex<UserReceipts>,
}

/// The receipts by user, and the users in the order their receipts were made.
type UserReceipts = (HashMap<String, Arc<Receipt>>, VecDeque<String>);

impl PerUser {
    /// `user`'s own receipt, made on first use.
    pub fn of(&self, user: &str) -> Arc<Receipt> {
        let mut guard = lock(&self.map);
        let (map, order) = &mut *guard;
        if let Some(r) = map.get(user) {
            return r.clone();
        }
        if map.len() >= MAX_USER_RECEIPTS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
        let r = Arc::new(Receipt::with_capacity(true, MAX_SITES_PER_USER));
        map.insert(user.to_string(), r.clone());
        order.push_back(user.to_string());
        r
    }
}

impl PerUser {
    /// The receipts whose key starts with `prefix`, by key.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Arc<Receipt>)> {
        let guard = lock(&self.map);
        let mut v: Vec<_> =
            guard.0.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, r)| (k.clone(), r.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Why a tracker was kept off the network, as the receipt says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Blocked,
    Social,
    DownVoted,
    /// A learned tracker's beacon or pixel.
    Learned,
    Bounced,
    /// A navigation through a tracker's host, loaded with no cookies, no Referer and storage
    /// that dies with the page.
    Unlinkable,
    /// Refused at CONNECT (no interception): the whole host.
    Refused,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    pub count: u64,
    pub rule: Arc<str>,
    pub list: Arc<str>,
    pub cname: Option<Arc<str>>,
    pub why: Why,
}

#[derive(Debug, Clone, Default)]
pub struct Cleaned {
    pub count: u64,
    /// What was taken off, over all of them.
    pub stripped: Stripped,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub blocked: u64,
    pub ads: u64,
    pub cleaned: u64,
    pub removed: u64,
}

#[derive(Debug, Default, Clone)]
pub struct SiteReceipt {
    pub totals: Totals,
    /// Tracker host → what was kept off.
    pub trackers: BTreeMap<String, Tracker>,
    /// Ad host → how often, and what was taken off.
    pub ads: BTreeMap<String, Cleaned>,
    /// Allowed host that lost cookies or parameters → how often, and what.
    pub cleaned: BTreeMap<String, Cleaned>,
    /// What the rewriter took out of the pages, most recent last.
    pub removed: VecDeque<Removal>,
    pub removed_by_kind: BTreeMap<&'static str, u64>,
    /// Requests to hosts past `MAX_HOSTS_PER_SITE`.
    pub other_hosts: u64,
    /// When the site was last seen (a sequence number: larger is more recent).
    pub last: u64,
    pub last_seen: Option<Instant>,
}

/// An ad source's totals: requests shown de-identified, and requests blocked as down-voted.
#[derive(Debug, Default, Clone, Copy)]
pub struct AdSource {
    pub shown: u64,
    pub downvoted: u64,
}

pub struct Receipt {
    per_person: bool,
    max_sites: usize,
    sites: Mutex<HashMap<String, SiteReceipt>>,
    /// Records that found `sites` busy, filed by the next holder (locked only to push or take).
    backlog: Mutex<Vec<Exchange>>,
    ad_sources: Mutex<BTreeMap<String, AdSource>>,
    client_pages: Mutex<HashMap<IpAddr, (String, Instant)>>,
    clock: AtomicU64,
    pub dropped: AtomicU64,
    changed: tokio::sync::broadcast::Sender<Arc<str>>,
}

impl Default for Receipt {
    fn default() -> Self {
        Receipt::new(true)
    }
}

impl Receipt {
    pub fn new(per_person: bool) -> Receipt {
        Receipt::with_capacity(per_person, MAX_SITES)
    }

    /// A receipt of at most `max_sites` sites.
    pub fn with_capacity(per_person: bool, max_sites: usize) -> Receipt {
        Receipt {
            per_person,
            max_sites,
            sites: Mutex::default(),
            backlog: Mutex::default(),
            ad_sources: Mutex::default(),
            client_pages: Mutex::default(),
            clock: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            changed: tokio::sync::broadcast::channel(64).0,
        }
    }

    pub fn per_person(&self) -> bool {
        self.per_person
    }

    /// The sites that change from now on, one name per record.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.changed.subscribe()
    }

    /// File a finished exchange under its page's site.
    pub fn record(&self, ex: &Exchange) {
        let d = &ex.decision;
        let stripped = ex.done.stripped;
        let lost = stripped.cookies || stripped.set_cookies || stripped.params;
        let removals = &ex.done.removals;
        if let (Some(client), RequestType::Document) = (ex.client, ex.request_type) {
            if self.per_person {
                self.note_page(client.ip(), &ex.page.site);
            }
        }
        let interesting = d.verdict != Verdict::Allow || lost || !removals.is_empty() || d.is_unlinkable();
        if !interesting {
            return;
        }
        if d.verdict == Verdict::Ad || matches!(d.reason, Reason::DownVoted(_)) {
            self.count_ad_source(&ex.site, d.verdict == Verdict::Ad);
        }
        let held = match self.sites.try_lock() {
            Ok(sites) => Some(sites),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        match held {
            Some(mut sites) => {
                self.file_backlog(&mut sites);
                self.file(&mut sites, ex);
            }
            None => {
                let mut backlog = lock(&self.backlog);
                if backlog.len() < MAX_BACKLOG {
                    backlog.push(ex.clone());
                } else {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.changed.receiver_count() > 0 {
            let _ = self.changed.send(Arc::from(ex.page.site.as_str()));
        }
    }

    fn tracker(entry: &mut SiteReceipt, ex: &Exchange) {
        let d = &ex.decision;
        if let Some(t) = entry.trackers.get_mut(&ex.host) {
            t.count += 1;
            return;
        }
        if entry.trackers.len() >= MAX_HOSTS_PER_SITE {
            entry.other_hosts += 1;
            return;
        }
        let why = match &d.reason {
            Reason::Social(_) => Why::Social,
            Reason::DownVoted(_) => Why::DownVoted,
            Reason::Bounce { .. } => Why::Bounced,
            Reason::Unlinkable(_) => Why::Unlinkable,
            Reason::Learned(_) => Why::Learned,
            _ if ex.method == http::Method::CONNECT => Why::Refused,
            _ => Why::Blocked,
        };
        let tracker = Tracker {
            count: 1,
            rule: d.rule().map_or_else(|| Arc::from(""), Arc::from),
            list: d.list().map_or_else(|| Arc::from(""), Arc::from),
            cname: d.cname().map(Arc::from),
            why,
        };
        entry.trackers.insert(ex.host.clone(), tracker);
    }

    fn cleaned(entry: &mut SiteReceipt, ex: &Exchange, ad: bool) {
        let table = if ad { &mut entry.ads } else { &mut entry.cleaned };
        if let Some(c) = table.get_mut(&ex.host) {
            c.count += 1;
            c.stripped.merge(ex.done.stripped);
        } else if table.len() < MAX_HOSTS_PER_SITE {
            table.insert(ex.host.clone(), Cleaned { count: 1, stripped: ex.done.stripped });
        } else {
            entry.other_hosts += 1;
        }
    }

    fn removed(entry: &mut SiteReceipt, removals: &[Removal]) {
        for r in removals {
            *entry.removed_by_kind.entry(r.kind.as_str()).or_default() += 1;
            // Link decoration and referrer policies are counted, not listed: they name the
            // page's own links and choices.
            if matches!(r.kind, Kind::LinkDecoration | Kind::ReferrerPolicy) {
                continue;
            }
            if entry.removed.len() >= MAX_RECENT {
                entry.removed.pop_front();
            }
            entry.removed.push_back(r.clone());
        }
    }

    fn count_ad_source(&self, source: &str, shown: bool) {
        // Locked, not tried: held only for one entry's count, or a clone of the table.
        let mut sources = lock(&self.ad_sources);
        if !sources.contains_key(source) && sources.len() >= MAX_AD_SOURCES {
            // Kept by traffic, not first come: a new source takes the place of the one counted
            // least, so a flood of junk names cannot keep real sources from being counted (a
            // junk name stays only while it is counted more than a real one).
            let least = sources
                .iter()
                .min_by_key(|(_, s)| s.shown + s.downvoted)
                .map(|(k, s)| (k.clone(), s.shown + s.downvoted));
            match least {
                Some((name, count)) if count <= 1 => {
                    sources.remove(&name);
                }
                Some((name, _)) if rand_below(8) == 0 => {
                    sources.remove(&name);
                }
                _ => return,
            }
        }
        let s = sources.entry(source.to_string()).or_default();
        if shown {
            s.shown += 1;
        } else {
            s.downvoted += 1;
        }
    }

    /// Every ad source counted, by name.
    pub fn ad_sources(&self) -> BTreeMap<String, AdSource> {
        lock(&self.ad_sources).clone()
    }

    fn note_page(&self, client: IpAddr, site: &str) {
        // Locked, not tried: held only to set or read one client's entry.
        let mut pages = lock(&self.client_pages);
        if pages.len() >= MAX_CLIENT_PAGES && !pages.contains_key(&client) {
            let now = Instant::now();
            pages.retain(|_, (_, at)| now.duration_since(*at) < PAGE_MEMORY);
            if pages.len() >= MAX_CLIENT_PAGES {
                return;
            }
        }
        pages.insert(client, (site.to_string(), Instant::now()));
    }

    /// The site of the page this client opened last, if it did within a minute: the page a
    /// tunnel refused now was most likely asked for.
    pub fn recent_page(&self, client: IpAddr) -> Option<String> {
        let pages = lock(&self.client_pages);
        pages.get(&client).filter(|(_, at)| at.elapsed() < PAGE_MEMORY).map(|(s, _)| s.clone())
    }

    /// The records that found the table busy, filed now by the one holding it.
    fn file_backlog(&self, sites: &mut HashMap<String, SiteReceipt>) {
        let waiting = std::mem::take(&mut *lock(&self.backlog));
        for ex in &waiting {
            self.file(sites, ex);
        }
    }

    /// File one exchange under its page's site, the entry made (and the least recently seen
    /// site dropped, when the table is full) if need be.
    fn file(&self, sites: &mut HashMap<String, SiteReceipt>, ex: &Exchange) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let site = ex.page.site.as_str();
        if !sites.contains_key(site) && sites.len() >= self.max_sites {
            if let Some(oldest) = sites.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone()) {
                sites.remove(&oldest);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let entry = sites.entry(site.to_string()).or_default();
        entry.last = now;
        entry.last_seen = Some(Instant::now());
        let d = &ex.decision;
        let stripped = ex.done.stripped;
        let lost = stripped.cookies || stripped.set_cookies || stripped.params;
        let per_person = self.per_person;
        entry.totals.removed += ex.done.removals.len() as u64;
        match d.verdict {
            Verdict::Block => {
                entry.totals.blocked += 1;
                if per_person {
                    Self::tracker(entry, ex);
                }
            }
            Verdict::Ad => {
                entry.totals.ads += 1;
                if per_person {
                    Self::cleaned(entry, ex, true);
                }
            }
            Verdict::Allow if d.is_unlinkable() => {
                entry.totals.cleaned += 1;
                if per_person {
                    Self::tracker(entry, ex);
                }
            }
            Verdict::Allow if lost => {
                entry.totals.cleaned += 1;
                if per_person {
                    Self::cleaned(entry, ex, false);
                }
            }
            Verdict::Allow => {}
        }
        if per_person {
            Self::removed(entry, &ex.done.removals);
        }
    }

    /// `n` sites from `offset`, the most recently seen first, and how many sites there are.
    pub fn page(&self, offset: usize, n: usize) -> (Vec<(String, SiteReceipt)>, usize) {
        let mut sites = lock(&self.sites);
        self.file_backlog(&mut sites);
        let mut order: Vec<(u64, &String)> = sites.iter().map(|(k, v)| (v.last, k)).collect();
        order.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
        let page = order.iter().skip(offset).take(n).map(|(_, k)| ((*k).clone(), sites[*k].clone())).collect();
        (page, sites.len())
    }

    /// One site's receipt.
    pub fn site(&self, site: &str) -> Option<SiteReceipt> {
        let mut sites = lock(&self.sites);
        self.file_backlog(&mut sites);
        sites.get(site).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Matched};

    fn blocked(page_site: &str, host: &str) -> Exchange {
        let m = Matched { rule: Arc::from("||tracker.test^"), list: Arc::from("test") };
        Exchange::sample(
            &format!("https://{host}/t.js"),
            page_site,
            Decision { verdict: Verdict::Block, reason: Reason::Rule(m), ad_class: false },
        )
    }

    #[test]
    fn hosts_per_site_and_sites_are_bounded() {
        let r = Receipt::new(true);
        for i in 0..(MAX_HOSTS_PER_SITE + 50) {
            r.record(&blocked("news.test", &format!("t{i}.tracker.test")));
        }
        let (sites, _) = r.page(0, 10);
        assert_eq!(sites[0].1.trackers.len(), MAX_HOSTS_PER_SITE);
        assert_eq!(sites[0].1.other_hosts, 50);
        assert_eq!(sites[0].1.totals.blocked, MAX_HOSTS_PER_SITE as u64 + 50);
        for i in 0..(MAX_SITES + 10) {
            r.record(&blocked(&format!("s{i}.test"), "t.tracker.test"));
        }
        let (first, total) = r.page(0, 1);
        assert_eq!(total, MAX_SITES);
        assert_eq!(first[0].0, format!("s{}.test", MAX_SITES + 9), "most recent first");
    }

    #[test]
    fn records_made_while_the_table_is_busy_are_filed_not_lost() {
        let r = std::sync::Arc::new(Receipt::new(true));
        {
            // The table held, as while another request files or a page is read out.
            let _held = r.sites.lock().unwrap();
            let r2 = r.clone();
            std::thread::spawn(move || {
                r2.record(&blocked("news.test", "a.tracker.test"));
                r2.record(&blocked("news.test", "b.tracker.test"));
            })
            .join()
            .unwrap();
        }
        let s = r.site("news.test").expect("filed once the table was free");
        assert_eq!(s.totals.blocked, 2);
        assert!(s.trackers.contains_key("a.tracker.test") && s.trackers.contains_key("b.tracker.test"));
        assert_eq!(r.dropped.load(Ordering::Relaxed), 0);
        // Filed once: a later record does not file the backlog again.
        r.record(&blocked("news.test", "a.tracker.test"));
        assert_eq!(r.site("news.test").unwrap().totals.blocked, 3);
    }

    #[test]
    fn a_shared_gateway_keeps_totals_only() {
        let r = Receipt::new(false);
        r.record(&blocked("news.test", "t.tracker.test"));
        let mut ad = blocked("news.test", "ads.test");
        ad.decision.verdict = Verdict::Ad;
        ad.done.stripped.set_cookies = true;
        r.record(&ad);
        let s = r.site("news.test").unwrap();
        assert_eq!((s.totals.blocked, s.totals.ads), (1, 1));
        assert!(s.trackers.is_empty() && s.ads.is_empty() && s.removed.is_empty());
        assert_eq!(r.ad_sources().get("ads.test").map(|a| a.shown), Some(1));
    }

    #[test]
    fn each_record_says_which_site_changed() {
        let r = Receipt::new(true);
        let mut rx = r.subscribe();
        r.record(&blocked("news.test", "t.tracker.test"));
        assert_eq!(&*rx.try_recv().unwrap(), "news.test");
    }
}
