//! Cleaning a response before the browser sees it: no `Set-Cookie` from ads or third parties,
//! no tracking cookies even first party, no `ETag` from ads (a cache-based identifier), no
//! requests for high-entropy client hints from ads or third parties.

use super::request::strips;
use super::Context;
use http::header::{self, HeaderMap};

pub fn clean(headers: &mut HeaderMap, ctx: &Context) {
    if ctx.trusted {
        return;
    }
    let ad = ctx.is_ad();
    if ad || ctx.third_party {
        headers.remove(header::SET_COOKIE);
        headers.remove("accept-ch");
        headers.remove("critical-ch");
    } else if headers.contains_key(header::SET_COOKIE) && !ctx.policy.cookies.is_empty() {
        let kept: Vec<_> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| {
                let name = v.to_str().ok().and_then(|s| s.split('=').next()).unwrap_or("").trim();
                !strips(ctx.policy.cookies.check(name), ctx.shopping)
            })
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
    if ad {
        headers.remove(header::ETAG);
    }
}
