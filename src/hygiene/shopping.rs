//! The "not shopping" default and its per-site exception: a site switched to shopping mode
//! (from the proxy's page or `nostalk shop`) gets its first-party tracking cookies and its
//! shopping parameters (affiliate attribution) through until the switch expires. At most
//! `MAX_SITES` switches are held: expired ones are dropped when a new one is set, and past
//! the cap a new site is refused (the person switches one off first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many sites in shopping mode at once; a person shops on a handful.
pub const MAX_SITES: usize = 200;

#[derive(Default)]
pub struct Shopping {
    until: Mutex<HashMap<String, Instant>>,
}

impl Shopping {
    /// Switch `site` to shopping for `duration` (zero switches it off). False when the table
    /// is full of live switches and `site` is not among them.
    pub fn set(&self, site: &str, duration: Duration) -> bool {
        let mut map = crate::lock(&self.until);
        if duration.is_zero() {
            map.remove(site);
            return true;
        }
        let now = Instant::now();
        if map.len() >= MAX_SITES {
            map.retain(|_, t| *t > now);
        }
        if map.len() >= MAX_SITES && !map.contains_key(site) {
            return false;
        }
        map.insert(site.to_string(), now + duration);
        true
    }

    pub fn is_shopping(&self, site: &str) -> bool {
        let map = crate::lock(&self.until);
        if map.is_empty() {
            return false;
        }
        map.get(site).is_some_and(|t| *t > Instant::now())
    }

    /// The time `site`'s switch has left, when it is on.
    pub fn left(&self, site: &str) -> Option<Duration> {
        let map = crate::lock(&self.until);
        map.get(site).and_then(|t| t.checked_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    /// Sites in shopping mode now, with the time left.
    pub fn active(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let map = crate::lock(&self.until);
        let mut v: Vec<_> = map.iter().filter(|(_, t)| **t > now).map(|(s, t)| (s.clone(), *t - now)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_expire() {
        let s = Shopping::default();
        assert!(!s.is_shopping("shop.test"));
        s.set("shop.test", Duration::from_secs(60));
        assert!(s.is_shopping("shop.test"));
        s.set("shop.test", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!s.is_shopping("shop.test"));
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Shopping::default();
        for i in 0..MAX_SITES {
            assert!(s.set(&format!("s{i}.test"), Duration::from_secs(60)));
        }
        assert!(!s.set("one-more.test", Duration::from_secs(60)));
        assert!(s.set("s0.test", Duration::from_secs(120)), "a site already on can be set again");
        assert!(s.set("s1.test", Duration::ZERO));
        assert!(s.set("one-more.test", Duration::from_secs(60)));
        assert_eq!(s.active().len(), MAX_SITES);
    }
}
