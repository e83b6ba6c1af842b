//! Cleaning a request before it leaves: tracking parameters out of the URL (identifier
//! parameters too for ads), cookies (all for ads and third parties, tracking names even first
//! party), the Referer (the origin at most to another site, navigations and frames included, and
//! to ads; none to a tracker's host a navigation loads, which keeps no cookie either), high-entropy
//! client hints and `X-Client-Data`, cache validators for ads; `Sec-GPC: 1` always, `DNT: 1` on
//! request.

use crate::exchange::{Exchange, Stripped};
use crate::policy::lists::{NameMatch, ParamList};
use crate::policy::Policy;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

/// High-entropy client hints and browser-experiment headers: enough to tell one person from
/// another, and nothing an ad or a third party needs.
pub const HIGH_ENTROPY_HEADERS: [HeaderName; 10] = [
    HeaderName::from_static("sec-ch-ua-full-version"),
    HeaderName::from_static("sec-ch-ua-full-version-list"),
    HeaderName::from_static("sec-ch-ua-platform-version"),
    HeaderName::from_static("sec-ch-ua-arch"),
    HeaderName::from_static("sec-ch-ua-bitness"),
    HeaderName::from_static("sec-ch-ua-model"),
    HeaderName::from_static("sec-ch-ua-wow64"),
    HeaderName::from_static("sec-ch-ua-form-factors"),
    HeaderName::from_static("x-client-data"),
    HeaderName::from_static("device-memory"),
];

/// Clean the headers in place. Returns the URL with tracking parameters removed (None when
/// none were), and what was taken off.
pub fn clean(headers: &mut HeaderMap, uri: &Uri, ex: &Exchange, policy: &Policy) -> (Option<Uri>, Stripped) {
    let mut stripped = Stripped::default();
    headers.insert("sec-gpc", HeaderValue::from_static("1"));
    if policy.dnt {
        headers.insert("dnt", HeaderValue::from_static("1"));
    }
    if ex.trusted() {
        return (None, stripped);
    }
    let ad = ex.is_ad();
    // A navigation through a tracker's host keeps no cookie of it (unlinkable bouncing).
    let unlinkable = ex.decision.is_unlinkable();
    // Cookies.
    if ad || ex.third_party || unlinkable {
        stripped.cookies = headers.remove(header::COOKIE).is_some();
    } else {
        stripped.cookies = filter_cookie_header(headers, ex, policy);
    }
    // Referer: the floor. Whole only within the page's own site; the origin at most to another
    // site (navigations and frames too) and to an ad; none to a tracker's host.
    if unlinkable {
        stripped.referer = headers.remove(header::REFERER).is_some();
    } else if let Some(r) = headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
        let block = ex.decision.verdict == crate::policy::Verdict::Block;
        let to_origin = ad || block || ex.third_party || cross_site_referer(r, ex);
        if let Some(t) = to_origin.then(|| referer_origin(r)).flatten().filter(|t| t != r) {
            stripped.referer = true;
            match HeaderValue::from_str(&t) {
                Ok(v) => headers.insert(header::REFERER, v),
                Err(_) => headers.remove(header::REFERER),
            };
        }
    }
    if ad || ex.third_party {
        for h in &HIGH_ENTROPY_HEADERS {
            stripped.client_hints |= headers.remove(h).is_some();
        }
    }
    if ad {
        // Cache validators replay an identifier the server chose (ETag tracking).
        stripped.validators = headers.remove(header::IF_NONE_MATCH).is_some();
        headers.remove(header::IF_MODIFIED_SINCE);
    }
    let clean = strip_params(uri, ex, policy);
    stripped.params = clean.is_some();
    (clean, stripped)
}

/// Take the tracking cookies out of a first-party `Cookie`; true when any went.
fn filter_cookie_header(headers: &mut HeaderMap, ex: &Exchange, policy: &Policy) -> bool {
    if policy.cookies.is_empty() || !headers.contains_key(header::COOKIE) {
        return false;
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for v in headers.get_all(header::COOKIE).iter() {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split('=').next().unwrap_or("").trim();
            if strips(policy.cookies.check(name), ex.shopping) {
                removed = true;
            } else {
                kept.push(pair);
            }
        }
    }
    if !removed {
        return false;
    }
    let joined = kept.join("; ");
    headers.remove(header::COOKIE);
    if !joined.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
    true
}

pub fn strips(m: NameMatch, shopping: bool) -> bool {
    match m {
        NameMatch::Strip => true,
        NameMatch::StripUnlessShopping => !shopping,
        NameMatch::Keep => false,
    }
}

/// The URL without tracking parameters, or None when nothing was removed. A learned tracker's
/// request also loses every parameter whose value has an identifier's shape (hygiene/
/// identifier.rs): the names it learned to use are its own, on no list.
pub fn strip_params(uri: &Uri, ex: &Exchange, policy: &Policy) -> Option<Uri> {
    uri.query()?;
    let url = uri.to_string();
    let listed = strip_query_params(&url, &policy.params, ex.is_ad(), ex.shopping);
    if !ex.decision.is_learned() {
        return listed?.parse().ok();
    }
    strip_identifiers(listed.as_deref().unwrap_or(&url)).or(listed)?.parse().ok()
}

/// `url` without the query parameters whose values have an identifier's shape, or None when it
/// has none.
pub fn strip_identifiers(url: &str) -> Option<String> {
    let (before_fragment, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (base, query) = before_fragment.split_once('?')?;
    let keep = |pair: &&str| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        !super::identifier::identifying(name, value)
    };
    if query.split('&').all(|p| keep(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).filter(keep).collect();
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    Some(format!("{base}{query}{fragment}"))
}

/// `url` (absolute or relative) without the parameters the list names, or None when it has none
/// of them. The other parameters and the fragment stay exactly as they were.
pub fn strip_query_params(url: &str, params: &ParamList, ad: bool, shopping: bool) -> Option<String> {
    let (before_fragment, fragment) = match url.find('#') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let (base, query) = before_fragment.split_once('?')?;
    let keep = |pair: &&str| {
        let name = pair.split('=').next().unwrap_or("");
        !strips(params.check(name, ad), shopping)
    };
    if query.split('&').filter(|p| !p.is_empty()).all(|p| keep(&p)) {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    let mut first = true;
    for pair in query.split('&').filter(|p| !p.is_empty()).filter(keep) {
        out.push(if first { '?' } else { '&' });
        out.push_str(pair);
        first = false;
    }
    out.push_str(fragment);
    Some(out)
}

/// Whether a Referer names a page of another site than the request's (a navigation or a
/// frame's document is its own page, so its party says nothing of where it came from).
fn cross_site_referer(referer: &str, ex: &Exchange) -> bool {
    match crate::policy::site::host_of_url(referer) {
        Some(h) if h.eq_ignore_ascii_case(&ex.host) => false,
        Some(h) => crate::policy::site::site_of(&h.to_ascii_lowercase()) != ex.site,
        None => true,
    }
}

/// `scheme://host[:port]/` of a Referer.
pub fn referer_origin(referer: &str) -> Option<String> {
    let u: Uri = referer.parse().ok()?;
    Some(format!("{}://{}/", u.scheme_str()?, u.authority()?.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_brave_and_adguard_strip_are_stripped_and_a_sites_own_stay() {
        let policy = crate::policy::Policy::build(&crate::Config::default(), &[]).unwrap();
        // A sample of what Brave's query filter and AdGuard's URL-tracking protection strip.
        for name in [
            "fb_source",
            "fbclid",
            "mc_eid",
            "_hsenc",
            "igshid",
            "srsltid",
            "gclid",
            "msclkid",
            "yclid",
            "ttclid",
            "twclid",
            "fb_ref",
            "fb_action_ids",
            "__tn__",
            "mibextid",
            "_bhlid",
            "_branch_match_id",
            "ck_subscriber_id",
            "vgo_ee",
            "oly_enc_id",
            "rb_clickid",
            "wickedid",
            "ml_subscriber_hash",
            "_kx",
            "__s",
            "ns_campaign",
            "wt_mc",
            "xtor",
            "guccounter",
            "ScCid",
            "li_fat_id",
            "epik",
            "mkt_tok",
            "utm_id",
            "stm_source",
        ] {
            let url = format!("https://news.example/story?id=7&{name}=x1");
            assert_eq!(
                strip_query_params(&url, &policy.params, false, false).as_deref(),
                Some("https://news.example/story?id=7"),
                "{name}"
            );
        }
        // Names sites use for themselves are kept on ordinary requests.
        for name in ["ref", "source", "cid", "sid", "si", "eid", "page", "q", "lang"] {
            let url = format!("https://shop.example/p?{name}=1");
            assert_eq!(strip_query_params(&url, &policy.params, false, false), None, "{name}");
        }
    }

    #[test]
    fn a_learned_tracker_s_identifiers_go_and_its_settings_stay() {
        assert_eq!(
            strip_identifiers("https://t.example/s.js?uid=Zk29xQ7pLm3v8R&page=2&v=3f2a9b8c7d6e#x").as_deref(),
            Some("https://t.example/s.js?page=2&v=3f2a9b8c7d6e#x")
        );
        assert_eq!(
            strip_identifiers("https://t.example/s.js?cid=aZ19kQ02xLp").as_deref(),
            Some("https://t.example/s.js")
        );
        assert_eq!(strip_identifiers("https://t.example/s.js?page=2&lang=en"), None);
    }

    #[test]
    fn tracking_params_go_and_the_rest_stays_in_order() {
        let mut p = ParamList::default();
        p.extend_from("utm_*\nfbclid\nuid$ad\nawc$shopping\n");
        let strip = |u: &str, ad, shop| strip_query_params(u, &p, ad, shop);
        assert_eq!(
            strip("https://a.test/x?id=7&utm_source=n&FBCLID=1#top", false, false).as_deref(),
            Some("https://a.test/x?id=7#top")
        );
        assert_eq!(strip("/x?utm_medium=a", false, false).as_deref(), Some("/x"));
        assert_eq!(strip("/x?id=7&uid=9", false, false), None);
        assert_eq!(strip("/x?id=7&uid=9", true, false).as_deref(), Some("/x?id=7"));
        assert_eq!(strip("/x?awc=1", false, true), None);
        assert_eq!(strip("/x?awc=1", false, false).as_deref(), Some("/x"));
        assert_eq!(strip("/x?plain=1", false, false), None);
    }

    #[test]
    fn referers_are_trimmed_to_the_origin() {
        assert_eq!(
            referer_origin("https://news.test:8443/story/1?user=42").as_deref(),
            Some("https://news.test:8443/")
        );
        assert_eq!(referer_origin("not a url"), None);
    }
}
