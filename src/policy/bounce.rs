//! Bounce tracking: redirectors whose destination is in their own URL (click trackers, ad-click
//! URLs, affiliate links, e-mail link wrappers). A top-level navigation to one goes straight to
//! the destination, the redirector never contacted, as uBlock Origin's `$urlskip` and Brave's
//! debouncing do.
//!
//! The list (config/lists/bounce.txt, or any list of kind bounce) is in uBO's `$urlskip`
//! syntax, the subset that redirectors need: `||host/path$urlskip=STEPS`, where the host matches
//! itself and its subdomains, the path is a prefix in which `*` stands for any run of
//! characters, and the steps are `?name` (the value of a query parameter, percent-decoded),
//! then any of `-base64` (decode base64), `-uricomponent` (percent-decode once more) and
//! `+https` (prefix `https://` when the value has no scheme). Written here because the adblock
//! crate reads `$urlskip` rules but does not apply them.

use super::Matched;
use base64::Engine as _;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Rule {
    host: String,
    path: String,
    param: String,
    steps: Vec<Step>,
    text: Arc<str>,
    list: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Base64,
    UriComponent,
    Https,
}

/// The redirectors of every bounce list, in the lists' order.
#[derive(Debug, Default, Clone)]
pub struct BounceList {
    rules: Vec<Rule>,
}

impl BounceList {
    pub fn extend_from(&mut self, text: &str, list: &str) {
        let list: Arc<str> = Arc::from(list);
        for line in text.lines().map(str::trim) {
            if let Some(rule) = parse(line, &list) {
                self.rules.push(rule);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The destination of a navigation to `url`, with the rule that found it, when `url` is a
    /// listed redirector's and carries an http(s) destination.
    pub fn destination(&self, url: &str) -> Option<(Matched, Arc<str>)> {
        if self.rules.is_empty() {
            return None;
        }
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?;
        let path = parsed.path();
        for rule in &self.rules {
            let on_host = host == rule.host || host.strip_suffix(&rule.host).is_some_and(|h| h.ends_with('.'));
            if !on_host || !glob_prefix(&rule.path, path) {
                continue;
            }
            let Some(value) = parsed.query_pairs().find(|(k, _)| *k == rule.param).map(|(_, v)| v.into_owned()) else {
                continue;
            };
            if let Some(to) = apply(&rule.steps, value) {
                let matched = Matched { rule: rule.text.clone(), list: rule.list.clone() };
                return Some((matched, Arc::from(to.as_str())));
            }
        }
        None
    }
}

fn parse(line: &str, list: &Arc<str>) -> Option<Rule> {
    let (pattern, options) = line.strip_prefix("||")?.split_once('$')?;
    let steps_text = options.split(',').find_map(|o| o.strip_prefix("urlskip="))?;
    let (host, path) = match pattern.find('/') {
        Some(i) => (&pattern[..i], &pattern[i..]),
        None => (pattern.trim_end_matches('^'), "/"),
    };
    let mut words = steps_text.split_whitespace();
    let param = words.next()?.strip_prefix('?')?.to_string();
    let mut steps = Vec::new();
    for w in words {
        steps.push(match w {
            "-base64" => Step::Base64,
            "-uricomponent" => Step::UriComponent,
            "+https" => Step::Https,
            _ => return None,
        });
    }
    if host.is_empty() || param.is_empty() {
        return None;
    }
    Some(Rule {
        host: host.to_ascii_lowercase(),
        path: path.trim_end_matches('^').to_string(),
        param,
        steps,
        text: Arc::from(line),
        list: list.clone(),
    })
}

/// Whether `path` starts with `pattern`, where `*` in the pattern stands for any run of
/// characters.
fn glob_prefix(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return true };
    let Some(mut rest) = path.strip_prefix(first) else { return false };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The destination after the steps, when it is an absolute http(s) URL.
fn apply(steps: &[Step], mut value: String) -> Option<String> {
    for step in steps {
        value = match step {
            Step::Base64 => {
                let t = value.trim_end_matches('=');
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(t)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                    .ok()?;
                String::from_utf8(bytes).ok()?
            }
            Step::UriComponent => url::form_urlencoded::parse(format!("x={value}").as_bytes()).next()?.1.into_owned(),
            Step::Https if !value.contains("://") => format!("https://{}", value.trim_start_matches('/')),
            Step::Https => value,
        };
    }
    let to = url::Url::parse(value.trim()).ok()?;
    matches!(to.scheme(), "http" | "https").then(|| to.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> BounceList {
        let mut l = BounceList::default();
        l.extend_from(text, "test");
        l
    }

    #[test]
    fn a_redirector_gives_its_destination() {
        let l = list("||l.facebook.com/l.php$urlskip=?u\n||google.com/url$urlskip=?q\n");
        let (m, to) =
            l.destination("https://l.facebook.com/l.php?u=https%3A%2F%2Fnews.example%2Fa%3Fb%3D1&h=AT0").unwrap();
        assert_eq!(&*to, "https://news.example/a?b=1");
        assert_eq!(&*m.rule, "||l.facebook.com/l.php$urlskip=?u");
        let (_, to) = l.destination("https://www.google.com/url?sa=t&q=http://example.org/").unwrap();
        assert_eq!(&*to, "http://example.org/");
        // Not the redirector's path, no destination, or a destination that is not a web URL.
        assert!(l.destination("https://l.facebook.com/other?u=https%3A%2F%2Fx.example").is_none());
        assert!(l.destination("https://l.facebook.com/l.php?h=1").is_none());
        assert!(l.destination("https://l.facebook.com/l.php?u=javascript:alert(1)").is_none());
        assert!(l.destination("https://notgoogle.com/url?q=https://x.example/").is_none());
    }

    #[test]
    fn steps_decode_and_complete_the_destination() {
        let l = list(
            "||deref.example/*/dereferrer/$urlskip=?redirectUrl\n\
             ||b64.example/go$urlskip=?d -base64\n\
             ||share.example/r.cfm$urlskip=?urllink +https\n",
        );
        let (_, to) = l
            .destination("https://deref.example/mail/client/abc/dereferrer/?redirectUrl=https%3A%2F%2Fx.example%2F")
            .unwrap();
        assert_eq!(&*to, "https://x.example/");
        let enc = base64::engine::general_purpose::STANDARD.encode("https://y.example/p");
        let (_, to) = l.destination(&format!("https://b64.example/go?d={enc}")).unwrap();
        assert_eq!(&*to, "https://y.example/p");
        let (_, to) = l.destination("https://www.share.example/r.cfm?b=1&urllink=shop.example%2Fitem").unwrap();
        assert_eq!(&*to, "https://shop.example/item");
    }

    #[test]
    fn the_embedded_list_parses_whole() {
        let text = include_str!("../../config/lists/bounce.txt");
        let rules = super::super::lists::count_rules(text);
        assert_eq!(list(text).len(), rules, "every rule in bounce.txt is understood");
    }
}
