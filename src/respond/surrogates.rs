//! No-op surrogates of the best-known tracker libraries' public APIs, written here
//! (src/respond/surrogates/*.js), so that page code calling `gtag()`, `ga()`, `fbq()`,
//! `analytics.track()` or `hj()` keeps working when the library itself is blocked. Also the
//! inline stub the HTML rewriter puts in place of a tracker's loader snippet.

pub const GTAG: &str = include_str!("surrogates/gtag.js");
pub const ANALYTICS_JS: &str = include_str!("surrogates/google-analytics.js");
pub const GTM: &str = include_str!("surrogates/gtm.js");
pub const FBEVENTS: &str = include_str!("surrogates/fbevents.js");
pub const HOTJAR: &str = include_str!("surrogates/hotjar.js");
pub const SEGMENT: &str = include_str!("surrogates/segment.js");
/// Defines every known tracker global as a no-op where the page has not defined it.
pub const INLINE_STUB: &str = include_str!("surrogates/inline-stub.js");

/// The surrogate for a blocked script URL, if one of ours fits it.
pub fn for_url(url: &str) -> Option<&'static str> {
    let u = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let (host, path) = u.split_once('/').unwrap_or((u, ""));
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let on = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if on("googletagmanager.com") {
        return Some(if path.starts_with("gtag/") { GTAG } else { GTM });
    }
    if on("google-analytics.com") {
        return Some(if path.contains("gtag") { GTAG } else { ANALYTICS_JS });
    }
    if path.contains("fbevents.js") || on("connect.facebook.net") {
        return Some(FBEVENTS);
    }
    if on("hotjar.com") {
        return Some(HOTJAR);
    }
    if on("segment.com") || on("segment.io") {
        return Some(SEGMENT);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogates_fit_their_libraries() {
        assert_eq!(for_url("https://www.googletagmanager.com/gtag/js?id=G-1"), Some(GTAG));
        assert_eq!(for_url("https://www.googletagmanager.com/gtm.js?id=GTM-1"), Some(GTM));
        assert_eq!(for_url("https://www.google-analytics.com/analytics.js"), Some(ANALYTICS_JS));
        assert_eq!(for_url("https://connect.facebook.net/en_US/fbevents.js"), Some(FBEVENTS));
        assert_eq!(for_url("https://static.hotjar.com/c/hotjar-1.js?sv=6"), Some(HOTJAR));
        assert_eq!(for_url("https://cdn.segment.com/analytics.js/v1/KEY/analytics.min.js"), Some(SEGMENT));
        assert_eq!(for_url("https://cdn.example.com/app.js"), None);
    }
}
