//! Cleaning a response before the browser sees it: no `Set-Cookie` from ads, third parties or
//! a tracker's host a navigation loads (unlinkable), no tracking cookies even first party, no
//! `ETag` from ads (a cache-based identifier), no requests for high-entropy client hints from
//! ads or third parties; a `Referrer-Policy` looser than `strict-origin-when-cross-origin`
//! tightened to it; and a script decided `ad` (or a listed one the person let through) marked
//! with `Server-Timing: nostalk;desc=listed`, which the page script reads to keep the cookies
//! that script writes for the page's life only.

use super::request::strips;
use crate::exchange::{Exchange, Stripped};
use crate::policy::{Policy, Reason, RequestType, Verdict};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");
/// The mark the page script looks for on a script's resource timing entry.
pub const LISTED_MARK: &str = "nostalk;desc=listed";

/// Clean the headers in place; says what was taken off.
pub fn clean(headers: &mut HeaderMap, ex: &Exchange, policy: &Policy) -> Stripped {
    let mut stripped = Stripped::default();
    if ex.trusted() {
        return stripped;
    }
    let ad = ex.is_ad();
    tighten_referrer_policy(headers);
    if ad || ex.third_party || ex.decision.is_unlinkable() {
        stripped.set_cookies = headers.remove(header::SET_COOKIE).is_some();
        stripped.client_hints |= headers.remove("accept-ch").is_some();
        stripped.client_hints |= headers.remove("critical-ch").is_some();
    } else if headers.contains_key(header::SET_COOKIE) && !policy.cookies.is_empty() {
        let before = headers.get_all(header::SET_COOKIE).iter().count();
        let kept: Vec<_> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| {
                let name = v.to_str().ok().and_then(|s| s.split('=').next()).unwrap_or("").trim();
                !strips(policy.cookies.check(name), ex.shopping)
            })
            .cloned()
            .collect();
        stripped.set_cookies = kept.len() != before;
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
    if ad {
        stripped.validators = headers.remove(header::ETAG).is_some();
    }
    if ex.request_type == RequestType::Script && listed_script(ex) {
        headers.append(SERVER_TIMING, HeaderValue::from_static(LISTED_MARK));
        headers.insert(TIMING_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    stripped
}

/// A script the lists name that runs in the page: an ad's, or one the person let through.
fn listed_script(ex: &Exchange) -> bool {
    ex.decision.verdict == Verdict::Ad || ex.decision.reason == Reason::LetThrough
}

/// The policies a page may keep: each sends another site at most the origin, never over a
/// downgrade. Anything else (`unsafe-url`, `no-referrer-when-downgrade`, `origin`,
/// `origin-when-cross-origin`) is looser.
pub fn strict_enough(policy: &str) -> bool {
    ["no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"]
        .iter()
        .any(|p| policy.eq_ignore_ascii_case(p))
}

/// The policy a page's chosen one becomes: kept when strict enough, else the browsers'
/// default, `strict-origin-when-cross-origin`. None for a token that is no policy (browsers
/// ignore it, and so do we).
pub fn tightened(policy: &str) -> Option<&str> {
    let p = policy.trim();
    if strict_enough(p) {
        return Some(p);
    }
    ["unsafe-url", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin"]
        .iter()
        .any(|l| p.eq_ignore_ascii_case(l))
        .then_some("strict-origin-when-cross-origin")
}

/// The `Referrer-Policy` header, its last policy that browsers know (the one they apply) made
/// no looser than `strict-origin-when-cross-origin`.
fn tighten_referrer_policy(headers: &mut HeaderMap) {
    let Some(applied) = headers
        .get_all(header::REFERRER_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .rfind(|p| tightened(p).is_some())
    else {
        return;
    };
    if strict_enough(applied.trim()) {
        return;
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(values: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::REFERRER_POLICY, v.parse().unwrap());
        }
        tighten_referrer_policy(&mut h);
        let all: Vec<_> = h.get_all(header::REFERRER_POLICY).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        (!all.is_empty()).then(|| all.join(" | "))
    }

    #[test]
    fn a_loose_referrer_policy_is_tightened_and_a_strict_one_kept() {
        assert_eq!(policy_of(&["unsafe-url"]).as_deref(), Some("strict-origin-when-cross-origin"));
        assert_eq!(policy_of(&["no-referrer-when-downgrade"]).as_deref(), Some("strict-origin-when-cross-origin"));
        assert_eq!(policy_of(&["origin"]).as_deref(), Some("strict-origin-when-cross-origin"));
        // The last policy browsers know is the one they apply.
        assert_eq!(policy_of(&["no-referrer, unsafe-url"]).as_deref(), Some("strict-origin-when-cross-origin"));
        assert_eq!(policy_of(&["unsafe-url", "no-referrer"]).as_deref(), Some("unsafe-url | no-referrer"));
        assert_eq!(policy_of(&["same-origin, made-up"]).as_deref(), Some("same-origin, made-up"));
        assert_eq!(policy_of(&["no-referrer"]).as_deref(), Some("no-referrer"));
        assert_eq!(policy_of(&[]), None);
    }
}
