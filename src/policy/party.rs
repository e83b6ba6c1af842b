//! Which page a request belongs to, for party and for `domain=` rules: a navigation is its own
//! page; otherwise `Sec-Fetch-Site` says same-site or cross-site, the Referer names the page's
//! host, and a request with no word of its page is taken as its own page (first party).

use super::RequestType;
use http::HeaderMap;

const SEC_FETCH_SITE: http::header::HeaderName = http::header::HeaderName::from_static("sec-fetch-site");

/// Stands for a page that is known to be of another site but whose host was not sent.
pub const UNKNOWN_CROSS_SITE_PAGE: &str = "unknown-page.invalid";

pub fn page_host(headers: &HeaderMap, host: &str, request_type: RequestType) -> String {
    if request_type == RequestType::Document {
        return host.to_string();
    }
    let referer_host = headers
        .get(http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(super::site::host_of_url)
        .map(str::to_ascii_lowercase);
    match headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()) {
        Some("same-origin") | Some("none") => host.to_string(),
        Some("same-site") => referer_host.unwrap_or_else(|| host.to_string()),
        Some("cross-site") => referer_host
            .filter(|r| super::site::site_of(r) != super::site::site_of(host))
            .unwrap_or_else(|| UNKNOWN_CROSS_SITE_PAGE.to_string()),
        _ => referer_host.unwrap_or_else(|| host.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::tests::headers as h;

    #[test]
    fn the_page_comes_from_fetch_metadata_then_referer() {
        let t = RequestType::Script;
        assert_eq!(
            page_host(&h(&[("sec-fetch-site", "cross-site"), ("referer", "https://news.test/a")]), "tracker.test", t),
            "news.test"
        );
        assert_eq!(page_host(&h(&[("sec-fetch-site", "cross-site")]), "tracker.test", t), UNKNOWN_CROSS_SITE_PAGE);
        assert_eq!(page_host(&h(&[("sec-fetch-site", "same-origin")]), "news.test", t), "news.test");
        assert_eq!(page_host(&h(&[("referer", "https://www.news.test/")]), "cdn.test", t), "www.news.test");
        assert_eq!(page_host(&h(&[]), "news.test", t), "news.test");
        assert_eq!(page_host(&h(&[("referer", "https://a.test/")]), "b.test", RequestType::Document), "b.test");
    }
}
