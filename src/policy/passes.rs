//! One-time passes: a load the person let through with a click. The strict-blocking page's
//! "Open anyway" and a social widget's placeholder carry a link whose URL has a
//! `nostalk-pass=TOKEN` parameter; the token is minted here, bound to exactly that URL, and
//! good once within [`PASS_TTL`]. The forward path takes the parameter off before anything is
//! decided or sent ([`Passes::redeem`]), so no server ever sees it, and a redeemed pass turns
//! that one request's decision into [`super::Reason::LetThrough`].
//!
//! A widget script let through this way loads more of its own (Twitter's widgets.js makes the
//! tweet's frame): for [`WINDOW_TTL`] after it, requests of the same social site decided
//! `social` from the same page are let through too ([`Passes::window_open`]), except the script
//! itself again (the next visit's copy of it waits for its own click). Both tables are bounded;
//! the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The query parameter that carries a pass.
pub const PARAM: &str = "nostalk-pass";
/// How long a minted pass may wait for its click.
pub const PASS_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a widget's own loads are let through after its script was.
pub const WINDOW_TTL: Duration = Duration::from_secs(60);
/// At most this many passes wait at once (a page full of widgets mints one each).
const MAX_PASSES: usize = 4096;
const MAX_WINDOWS: usize = 256;

#[derive(Default)]
pub struct Passes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// token → (the URL it lets through, when it was minted)
    passes: HashMap<String, (String, Instant)>,
    order: VecDeque<String>,
    windows: VecDeque<Window>,
}

struct Window {
    page_site: String,
    social_site: String,
    /// The script that opened it, which it does not let through again.
    script: String,
    until: Instant,
}

impl Passes {
    /// A new token good once for `url`.
    pub fn mint(&self, url: &str) -> String {
        let mut b = [0u8; 16];
        // Without randomness no pass can be trusted: an unguessable-enough fallback would be a
        // lie, so the token is then one no request can redeem (it is never stored).
        if getrandom::fill(&mut b).is_err() {
            return "unavailable".into();
        }
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let mut inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        while inner.order.len() >= MAX_PASSES {
            if let Some(old) = inner.order.pop_front() {
                inner.passes.remove(&old);
            }
        }
        inner.passes.insert(token.clone(), (strip(url).0, now));
        inner.order.push_back(token.clone());
        token
    }

    /// `url` with a fresh pass for it added as its last parameter.
    pub fn link(&self, url: &str) -> String {
        let token = self.mint(url);
        let (base, fragment) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url, None),
        };
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut out = format!("{base}{sep}{PARAM}={token}");
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }

    /// Takes a pass parameter off `url`. Returns the URL without it (None when it had none)
    /// and whether the pass was good for exactly that URL (it is then used up).
    pub fn redeem(&self, url: &str) -> Option<(String, bool)> {
        let (clean, token) = strip(url);
        let token = token?;
        let mut inner = crate::base::lock(&self.inner);
        let good = match inner.passes.get(&token) {
            Some((bound, minted)) => *bound == clean && minted.elapsed() < PASS_TTL,
            None => false,
        };
        if good {
            inner.passes.remove(&token);
            inner.order.retain(|t| *t != token);
        }
        Some((clean, good))
    }

    /// Lets the social site's own loads from `page_site` through for [`WINDOW_TTL`], after
    /// `script` was let through with a pass.
    pub fn open_window(&self, page_site: &str, social_site: &str, script: &str) {
        let mut inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        inner.windows.retain(|w| w.until > now);
        if inner.windows.len() >= MAX_WINDOWS {
            inner.windows.pop_front();
        }
        inner.windows.push_back(Window {
            page_site: page_site.to_string(),
            social_site: social_site.to_string(),
            script: script.to_string(),
            until: now + WINDOW_TTL,
        });
    }

    /// Whether a social load of `url` from `page_site` is inside a window a widget opened.
    pub fn window_open(&self, page_site: &str, social_site: &str, url: &str) -> bool {
        let inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        inner
            .windows
            .iter()
            .any(|w| w.page_site == page_site && w.social_site == social_site && w.script != url && w.until > now)
    }
}

/// `url` without its pass parameter, and the token it carried.
fn strip(url: &str) -> (String, Option<String>) {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let Some((path, query)) = base.split_once('?') else { return (url.to_string(), None) };
    let mut token = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix(PARAM).and_then(|r| r.strip_prefix('=')) {
            Some(t) => {
                token = Some(t.to_string());
                false
            }
            None => true,
        })
        .collect();
    if token.is_none() {
        return (url.to_string(), None);
    }
    let mut out = path.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_good_once_and_only_for_its_url() {
        let p = Passes::default();
        let link = p.link("https://tracker.example/go?to=1");
        assert!(link.starts_with("https://tracker.example/go?to=1&nostalk-pass="), "{link}");
        assert_eq!(p.redeem(&link), Some(("https://tracker.example/go?to=1".into(), true)));
        assert_eq!(p.redeem(&link), Some(("https://tracker.example/go?to=1".into(), false)), "used up");
        // A token moved to another URL lets nothing through, and is taken off all the same.
        let link = p.link("https://a.example/");
        let token = link.rsplit('=').next().unwrap();
        let other = format!("https://b.example/?x=1&{PARAM}={token}");
        assert_eq!(p.redeem(&other), Some(("https://b.example/?x=1".into(), false)));
        assert_eq!(p.redeem("https://a.example/?q=1"), None);
    }

    #[test]
    fn a_fragment_stays_after_the_query() {
        let p = Passes::default();
        let link = p.link("https://x.example/p#top");
        assert!(link.starts_with("https://x.example/p?nostalk-pass=") && link.ends_with("#top"), "{link}");
        assert_eq!(p.redeem(&link), Some(("https://x.example/p#top".into(), true)));
    }

    #[test]
    fn the_tables_are_bounded() {
        let p = Passes::default();
        let first = p.link("https://x.example/0");
        for i in 1..=MAX_PASSES {
            p.mint(&format!("https://x.example/{i}"));
        }
        assert_eq!(p.redeem(&first).map(|r| r.1), Some(false), "the oldest pass went first");
        for i in 0..MAX_WINDOWS + 10 {
            p.open_window(&format!("page{i}.example"), "social.example", "https://social.example/w.js");
        }
        let frame = "https://social.example/embed";
        assert!(!p.window_open("page0.example", "social.example", frame));
        let last = format!("page{}.example", MAX_WINDOWS + 9);
        assert!(p.window_open(&last, "social.example", frame));
        assert!(!p.window_open(&last, "social.example", "https://social.example/w.js"), "not the script again");
        assert!(!p.window_open(&last, "other.example", frame));
    }
}
