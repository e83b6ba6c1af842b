//! The "not shopping" default and its per-site exception: a site switched to shopping mode
//! (from the proxy's page or `nostalk shop`) gets its first-party tracking cookies and its
//! shopping parameters (affiliate attribution) through until the switch expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Shopping {
    until: Mutex<HashMap<String, Instant>>,
}

impl Shopping {
    /// Switch `site` to shopping for `duration` (zero switches it off).
    pub fn set(&self, site: &str, duration: Duration) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if duration.is_zero() {
            map.remove(site);
        } else {
            map.insert(site.to_string(), Instant::now() + duration);
        }
    }

    pub fn is_shopping(&self, site: &str) -> bool {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return false;
        }
        map.get(site).is_some_and(|t| *t > Instant::now())
    }

    /// Sites in shopping mode now, with the time left.
    pub fn active(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
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
}
