//! One-time passes: a load the person let through with a click. The strict-blocking page's
//! "Open anyway" and a social widget's placeholder carry a link whose URL has a
//! `nostalk-pass=TOKEN` parameter; the token is minted here, bound to exactly that URL, and
//! good once within [`PASS_TTL`]. The forward path takes the parameter off before anything is
//! decided or sent ([`Passes::redeem`]), so no server ever sees it, and a redeemed pass turns
//! that one request's decision into [`super::Reason::LetThrough`].
//!
//! A widget script is never given a pass the page could read: its placeholder is a frame of the
//! social site's origin (`?nostalk-widget=1`), which page script can neither read nor click.
//! A click in it redeems that frame's pass, and the proxy then grants that client that script
//! once ([`Passes::grant`]); the surrogate's load of the script takes the grant
//! ([`Passes::take_grant`]). A page that forges the click's events or messages gets nothing
//! through, since the grant is made only by the frame's navigation.
//!
//! A widget script let through loads more of its own (Twitter's widgets.js makes the tweet's
//! frame): for [`WINDOW_TTL`] after it, requests of the same social site decided `social` from
//! the same page and the same client are let through too ([`Passes::window_open`]), except the
//! script itself again (the next visit's copy of it waits for its own click). Each client's
//! windows are its own: on a shared gateway one person's click opens nothing for another. The
//! tables are bounded; the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The query parameter that carries a pass.
pub const PARAM: &str = "nostalk-pass";
/// The query parameter that marks a widget's placeholder frame (its value `1`).
pub const WIDGET_PARAM: &str = "nostalk-widget";
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
    grants: VecDeque<Grant>,
}

/// A widget script a client's click in its placeholder frame let through, once.
struct Grant {
    client: IpAddr,
    script: String,
    until: Instant,
}

struct Window {
    client: IpAddr,
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

    /// Lets the social site's own loads from `page_site` through for `client` for
    /// [`WINDOW_TTL`], after `script` was let through.
    pub fn open_window(&self, client: IpAddr, page_site: &str, social_site: &str, script: &str) {
        let mut inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        inner.windows.retain(|w| w.until > now);
        if inner.windows.len() >= MAX_WINDOWS {
            inner.windows.pop_front();
        }
        inner.windows.push_back(Window {
            client,
            page_site: page_site.to_string(),
            social_site: social_site.to_string(),
            script: script.to_string(),
            until: now + WINDOW_TTL,
        });
    }

    /// Whether a social load of `url` from `page_site` by `client` is inside a window that
    /// client's click opened.
    pub fn window_open(&self, client: IpAddr, page_site: &str, social_site: &str, url: &str) -> bool {
        let inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        inner.windows.iter().any(|w| {
            w.client == client
                && w.page_site == page_site
                && w.social_site == social_site
                && w.script != url
                && w.until > now
        })
    }

    /// `client` clicked the placeholder of `script`: its next load of that script, within
    /// [`WINDOW_TTL`], is let through.
    pub fn grant(&self, client: IpAddr, script: &str) {
        let mut inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        inner.grants.retain(|g| g.until > now);
        if inner.grants.len() >= MAX_WINDOWS {
            inner.grants.pop_front();
        }
        inner.grants.push_back(Grant { client, script: script.to_string(), until: now + WINDOW_TTL });
    }

    /// Takes `client`'s grant for `script`, when it has one.
    pub fn take_grant(&self, client: IpAddr, script: &str) -> bool {
        let mut inner = crate::base::lock(&self.inner);
        let now = Instant::now();
        match inner.grants.iter().position(|g| g.client == client && g.script == script && g.until > now) {
            Some(i) => {
                inner.grants.remove(i);
                true
            }
            None => false,
        }
    }
}

/// The script a widget placeholder frame's URL stands for (`url` without
/// `nostalk-widget=1`), when it is one.
pub fn widget_script(url: &str) -> Option<String> {
    let (base, _) = url.split_once('#').unwrap_or((url, ""));
    let (path, query) = base.split_once('?')?;
    let marker = format!("{WIDGET_PARAM}=1");
    if !query.split('&').any(|p| p == marker) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| *p != marker).collect();
    Some(if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) })
}

/// The URL of `script`'s placeholder frame.
pub fn widget_frame(script: &str) -> String {
    let base = script.split_once('#').map_or(script, |(b, _)| b);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{WIDGET_PARAM}=1")
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
    fn a_widget_frame_stands_for_its_script_and_a_grant_is_one_clients_once() {
        let script = "https://platform.x.example/widgets.js?v=2";
        let frame = widget_frame(script);
        assert_eq!(frame, "https://platform.x.example/widgets.js?v=2&nostalk-widget=1");
        assert_eq!(widget_script(&frame).as_deref(), Some(script));
        assert_eq!(widget_script(&widget_frame("https://a.example/w.js")).as_deref(), Some("https://a.example/w.js"));
        assert_eq!(widget_script(script), None);
        let p = Passes::default();
        let (me, other): (IpAddr, IpAddr) = ([10, 0, 0, 2].into(), [10, 0, 0, 3].into());
        p.grant(me, script);
        assert!(!p.take_grant(other, script), "another client");
        assert!(!p.take_grant(me, "https://platform.x.example/other.js"), "another script");
        assert!(p.take_grant(me, script));
        assert!(!p.take_grant(me, script), "once");
    }

    #[test]
    fn the_tables_are_bounded() {
        let p = Passes::default();
        let first = p.link("https://x.example/0");
        for i in 1..=MAX_PASSES {
            p.mint(&format!("https://x.example/{i}"));
        }
        assert_eq!(p.redeem(&first).map(|r| r.1), Some(false), "the oldest pass went first");
        let me: IpAddr = [10, 0, 0, 2].into();
        for i in 0..MAX_WINDOWS + 10 {
            p.open_window(me, &format!("page{i}.example"), "social.example", "https://social.example/w.js");
        }
        let frame = "https://social.example/embed";
        assert!(!p.window_open(me, "page0.example", "social.example", frame));
        let last = format!("page{}.example", MAX_WINDOWS + 9);
        assert!(p.window_open(me, &last, "social.example", frame));
        assert!(!p.window_open(me, &last, "social.example", "https://social.example/w.js"), "not the script again");
        assert!(!p.window_open(me, &last, "other.example", frame));
        assert!(!p.window_open([10, 0, 0, 3].into(), &last, "social.example", frame), "another client's click");
    }
}
