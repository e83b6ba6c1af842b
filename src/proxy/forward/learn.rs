//! Learned trackers: what no list names, learned from the traffic the proxy already sees, as
//! Privacy Badger learns in one browser. This phase watches third-party requests that no list
//! decided (reason `NoRule`) and learns a third party's registrable domain as a tracker when it
//! tries to identify the browser:
//!
//! - **cookies**: it sets (nostalk strips it anyway) an identifying cookie on `[learn] sites`
//!   distinct first-party sites (default 3);
//! - **a value that crosses sites**: it receives the same identifying value (a query parameter
//!   or a cookie) from two different first-party sites: learned at once. Where the proxy can
//!   tell clients apart (`[receipt] per_person`), a value that two clients both send is the same
//!   for everyone (a key, a version) and never counts.
//!
//! An identifying value has the shape hygiene/identifier.rs documents (at least ~32 bits of
//! room, not a date, a version or a setting). Path segments are not looked at: a CDN's hashed
//! file name is the same for every site that loads it.
//!
//! What is kept: observations in memory only (the third party, the first-party sites, a keyed
//! hash of the value with a key made at start, never the value; the client's address only with
//! `per_person`), at most [`MAX_OBSERVATIONS`] of each kind, none older than 30 days. A learned
//! tracker goes into the choices store (ops/choices.rs), so it lasts across restarts and a
//! team's replicas share it; the one decision reads it as an overlay (policy/overlay.rs) and
//! decides it like an ad source, with reason `learned`. A third party of the page's own company
//! (receipt/companies.rs), a trusted site's, and one the person said is not a tracker are never
//! learned. Hand-written: no crate keeps such observations.

use crate::exchange::Exchange;
use crate::hygiene::identifier::identifying;
use crate::ops::choices::Choices;
use crate::policy::{Reason, Verdict};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// At most this many third parties with cookie observations, and this many values.
pub const MAX_OBSERVATIONS: usize = 10_000;

/// Observations older than this are forgotten.
const KEEP_SECS: u64 = 30 * 24 * 3600;

/// A value first seen: where, from whom, when; and whether two clients sent it.
struct Seen {
    site: Box<str>,
    client: Option<IpAddr>,
    at: u64,
    common: bool,
}

#[derive(Default)]
struct State {
    /// Third party → first-party sites on which it set an identifying cookie, with when.
    cookies: HashMap<Box<str>, Vec<(Box<str>, u64)>>,
    /// Keyed hash of (third party, value) → where the value was first seen.
    values: HashMap<u64, Seen>,
}

pub struct Learner {
    enabled: bool,
    sites: usize,
    key: std::hash::RandomState,
    choices: Arc<Choices>,
    state: Mutex<State>,
}

impl Learner {
    pub fn new(config: &crate::config::LearnConfig, choices: Arc<Choices>) -> Learner {
        Learner {
            enabled: config.enabled,
            sites: config.sites.max(1),
            key: std::hash::RandomState::new(),
            choices,
            state: Mutex::default(),
        }
    }

    /// How many observations are held: (third parties with cookie sightings, values).
    pub fn observations(&self) -> (usize, usize) {
        let state = crate::base::lock(&self.state);
        (state.cookies.len(), state.values.len())
    }

    /// The heap the observations take, estimated from the tables' capacities and the names
    /// they hold (for the soak benchmark).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let state = crate::base::lock(&self.state);
        let values = state.values.capacity() * (size_of::<u64>() + size_of::<Seen>() + 1)
            + state.values.values().map(|s| s.site.len()).sum::<usize>();
        let cookies = state.cookies.capacity() * (size_of::<Box<str>>() + size_of::<Vec<(Box<str>, u64)>>() + 1)
            + state
                .cookies
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + v.capacity() * size_of::<(Box<str>, u64)>()
                        + v.iter().map(|(s, _)| s.len()).sum::<usize>()
                })
                .sum::<usize>();
        values + cookies
    }

    /// Whether this exchange is one learning looks at: a third party no list decided. The
    /// cheap half, asked first of every request.
    fn watches(&self, ex: &Exchange) -> bool {
        self.enabled
            && ex.decision.reason == Reason::NoRule
            && ex.decision.verdict == Verdict::Allow
            && ex.third_party
            && !ex.page.site.is_empty()
            && ex.site != ex.page.site
    }

    /// The other half, asked only when there is something to note: not learned yet (nor said
    /// not to be a tracker), not of the page's own company.
    fn may_learn(&self, ex: &Exchange) -> bool {
        !self.choices.snapshot().learned.contains_key(ex.site.as_str()) && !same_company(&ex.host, &ex.page.host)
    }

    /// The request's query values and cookies, before hygiene strips anything.
    pub fn request(&self, ex: &Exchange, uri: &http::Uri, headers: &http::HeaderMap) {
        if !self.watches(ex) {
            return;
        }
        let query = uri.query().unwrap_or("").split('&').filter_map(|kv| kv.split_once('='));
        let cookies = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='));
        // At most a few values a request: kept on the stack.
        let mut hashes = [0u64; 8];
        let mut n = 0;
        for (_, v) in query.chain(cookies).filter(|(k, v)| identifying(k, v)).take(hashes.len()) {
            hashes[n] = self.key.hash_one((ex.site.as_str(), v));
            n += 1;
        }
        if n == 0 || !self.may_learn(ex) {
            return;
        }
        let client = ex.client.map(|c| c.ip());
        let now = crate::policy::overlay::now_secs();
        let mut crossed = None;
        {
            let mut state = crate::base::lock(&self.state);
            bound(&mut state.values, now, |s| s.at);
            for &h in &hashes[..n] {
                let seen = state.values.entry(h).or_insert_with(|| Seen {
                    site: Box::from(ex.page.site.as_str()),
                    client,
                    at: now,
                    common: false,
                });
                if now.saturating_sub(seen.at) >= KEEP_SECS {
                    // Forgotten after 30 days: this is a first sighting again.
                    *seen = Seen { site: Box::from(ex.page.site.as_str()), client, at: now, common: false };
                    continue;
                }
                if seen.common {
                    continue;
                }
                if seen.client.is_some() && client.is_some() && seen.client != client {
                    // Two browsers send it: the same for everyone, not an identifier.
                    seen.common = true;
                    continue;
                }
                if *seen.site != *ex.page.site {
                    crossed = Some(format!("{} and {}", seen.site, ex.page.site));
                    break;
                }
            }
        }
        if let Some(sites) = crossed {
            self.learn(&ex.site, &sites);
        }
    }

    /// The response's cookies, before hygiene strips them.
    pub fn response(&self, ex: &Exchange, headers: &http::HeaderMap) {
        if !self.watches(ex) {
            return;
        }
        let sets = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next()?.trim().split_once('='))
            .any(|(k, v)| identifying(k, v));
        if !sets || !self.may_learn(ex) {
            return;
        }
        let now = crate::policy::overlay::now_secs();
        let learned = {
            let mut state = crate::base::lock(&self.state);
            bound(&mut state.cookies, now, |v| v.iter().map(|(_, at)| *at).max().unwrap_or(0));
            if !state.cookies.contains_key(ex.site.as_str()) {
                state.cookies.insert(Box::from(ex.site.as_str()), Vec::new());
            }
            // Just made, when it was not there.
            let sites = state.cookies.get_mut(ex.site.as_str()).expect("inserted above");
            sites.retain(|(_, at)| now.saturating_sub(*at) < KEEP_SECS);
            match sites.iter_mut().find(|(s, _)| **s == *ex.page.site) {
                Some(seen) => seen.1 = now,
                None => sites.push((Box::from(ex.page.site.as_str()), now)),
            }
            (sites.len() >= self.sites).then(|| {
                let names: Vec<&str> = sites.iter().map(|(s, _)| &**s).collect();
                and_list(&names)
            })
        };
        if let Some(sites) = learned {
            self.learn(&ex.site, &sites);
        }
    }

    /// Keep `source` as learned. A SQLite store is written at once (a few milliseconds, once
    /// per tracker), so the next request is decided with it; a shared database on a thread of
    /// its own, since no request waits for it.
    fn learn(&self, source: &str, sites: &str) {
        tracing::info!(tracker = %source, sites = %sites, "learned a tracker: it tried to identify the browser");
        crate::base::lock(&self.state).cookies.remove(source);
        if self.choices.health().is_some() {
            let (choices, source, sites) = (self.choices.clone(), source.to_string(), sites.to_string());
            std::thread::spawn(move || {
                if let Err(e) = choices.learn(&source, &sites) {
                    tracing::warn!(tracker = %source, error = %e, "a learned tracker was not kept");
                }
            });
        } else if let Err(e) = self.choices.learn(source, sites) {
            tracing::warn!(tracker = %source, error = %e, "a learned tracker was not kept");
        }
    }
}

/// Whether two hosts belong to one company by receipt/companies.rs.
fn same_company(host: &str, page_host: &str) -> bool {
    match (crate::receipt::companies::of(host), crate::receipt::companies::of(page_host)) {
        (Some(a), Some(b)) => a.name == b.name,
        _ => false,
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Past [`MAX_OBSERVATIONS`], forget what is older than 30 days, then the older half.
fn bound<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, now: u64, at: impl Fn(&V) -> u64) {
    if map.len() < MAX_OBSERVATIONS {
        return;
    }
    map.retain(|_, v| now.saturating_sub(at(v)) < KEEP_SECS);
    if map.len() >= MAX_OBSERVATIONS {
        let mut times: Vec<u64> = map.values().map(&at).collect();
        let (_, middle, _) = times.select_nth_unstable(MAX_OBSERVATIONS / 2);
        let middle = *middle;
        map.retain(|_, v| at(v) > middle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_company_s_own_domains_are_one_party() {
        assert!(same_company("www.googletagmanager.com", "google-analytics.com"));
        assert!(!same_company("www.googletagmanager.com", "news.example"));
        assert!(!same_company("tracker.example", "news.example"), "unknown to the data: not one company");
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(and_list(&["a"]), "a");
        assert_eq!(and_list(&["a", "b"]), "a and b");
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn observations_stay_bounded_keeping_the_newest() {
        let mut m: HashMap<u64, u64> = (0..MAX_OBSERVATIONS as u64).map(|i| (i, i)).collect();
        bound(&mut m, MAX_OBSERVATIONS as u64, |v| *v);
        assert!(m.len() <= MAX_OBSERVATIONS / 2 + 1 && m.contains_key(&(MAX_OBSERVATIONS as u64 - 1)));
    }
}
