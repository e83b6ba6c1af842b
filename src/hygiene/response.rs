//! Cleaning a response before the browser sees it: no `Set-Cookie` from ads or third parties,
//! no tracking cookies even first party, no `ETag` from ads (a cache-based identifier), no
//! requests for high-entropy client hints from ads or third parties.

use super::request::strips;
use crate::exchange::{Exchange, Stripped};
use crate::policy::Policy;
use http::header::{self, HeaderMap};

/// Clean the headers in place; says what was taken off.
pub fn clean(headers: &mut HeaderMap, ex: &Exchange, policy: &Policy) -> Stripped {
    let mut stripped = Stripped::default();
    if ex.trusted() {
        return stripped;
    }
    let ad = ex.is_ad();
    if ad || ex.third_party {
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
    stripped
}
