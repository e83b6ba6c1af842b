//! The decide phase: the request's host, type and top page, worked out once, and the one
//! decision on it ([`Policy::decide_for`]: the lists, the group's rules, the person's choices
//! and click), made into the [`Exchange`] every later phase reads. The page's shopping switch
//! is read here, once, from the same overlay. A request that names no host goes no further.
//! A social widget's placeholder frame is decided as the script it stands for. Party is judged
//! against the top page: a request made inside a cross-site frame the client has open belongs
//! to the frame's top page ([`Frames`]).

use crate::exchange::{Done, Exchange, TopPage};
use crate::policy::frames::Frames;
use crate::policy::overlay::{Click, Overlay};
use crate::policy::passes::{self, Passes};
use crate::policy::{party, site, Policy, RequestInfo, RequestType};
use crate::respond::failure::Failure;
use http::{Request, Uri};
use std::net::SocketAddr;

pub fn decide<B>(
    req: &Request<B>,
    uri: &Uri,
    client: Option<SocketAddr>,
    policy: &Policy,
    overlay: &Overlay,
    click: Option<Click<'_>>,
    frames: Option<(&Frames, std::net::IpAddr)>,
) -> Result<Exchange, Failure> {
    let Some(host) = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()) else {
        return Err(Failure::NoHost);
    };
    let span = tracing::Span::current();
    span.record("host", host.as_str());
    let url = url_of(uri);
    let request_type = RequestType::classify(req.headers(), uri.path());
    // A widget's placeholder frame (the surrogate's) is decided as the script it stands for,
    // from the page that holds it, whose rule names the script, and with no click: only its
    // answer differs. (Over plain HTTP a browser sends no Sec-Fetch-Dest, and a frame looks
    // like a document.)
    let widget = match request_type {
        RequestType::SubFrame | RequestType::Document => passes::widget_script(&url),
        _ => None,
    };
    let decided_as = if widget.is_some() { RequestType::Script } else { request_type };
    let mut page_host = party::page_host(req.headers(), &host, decided_as);
    let own_site = site::site_of(&host);
    if let Some((frames, ip)) = frames {
        match request_type {
            RequestType::Document => frames.navigated(ip, &host),
            _ => {
                if let Some(top) = frames.top_of(ip, &page_host) {
                    page_host = top;
                }
                if request_type == RequestType::SubFrame && widget.is_none() && site::site_of(&page_host) != own_site {
                    frames.opened(ip, &host, &page_host);
                }
            }
        }
    }
    let page_site = site::site_of(&page_host);
    let info = RequestInfo {
        url: &url,
        host: &host,
        page_host: Some(&page_host),
        request_type,
        method: req.method().as_str(),
    };
    let decision = match &widget {
        Some(script) => {
            let info = RequestInfo { url: script, request_type: decided_as, ..info };
            policy.decide_for(&info, &own_site, &page_site, overlay, None)
        }
        None => policy.decide_for(&info, &own_site, &page_site, overlay, click),
    };
    span.record("verdict", decision.verdict.as_str());
    Ok(Exchange {
        received: std::time::Instant::now(),
        third_party: page_site != own_site,
        shopping: overlay.shopping(&page_site),
        url,
        host,
        site: own_site,
        request_type,
        method: req.method().clone(),
        page: TopPage { host: page_host, site: page_site },
        decision,
        client,
        user: None,
        group: None,
        done: Done::default(),
    })
}

/// The absolute URL as text, as `Uri`'s Display writes it, without the formatting machinery
/// (it runs once per request).
fn url_of(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let (path, query) = (uri.path(), uri.query());
    let mut url =
        String::with_capacity(scheme.len() + 3 + authority.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    if !scheme.is_empty() {
        url.push_str(scheme);
        url.push_str("://");
    }
    url.push_str(authority);
    url.push_str(path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Takes a pass parameter (`nostalk-pass`) off the request's URI, so no server ever sees it.
/// True when the pass was good for exactly this URL (it is then used up).
pub fn take_pass(uri: Uri, passes: &Passes) -> (Uri, bool) {
    if uri.query().is_none_or(|q| !q.contains(passes::PARAM)) {
        return (uri, false);
    }
    match passes.redeem(&uri.to_string()) {
        Some((clean, good)) => (clean.parse().unwrap_or(uri), good),
        None => (uri, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Verdict;

    fn policy() -> Policy {
        Policy::build(&crate::Config::default(), &[]).unwrap()
    }

    #[test]
    fn the_exchange_holds_page_party_decision_and_shopping() {
        let mut person = crate::policy::overlay::PersonChoices::default();
        person.shopping.insert("news.example".into(), crate::policy::overlay::now_secs() + 60);
        let overlay = Overlay::new(None, std::sync::Arc::new(person));
        let uri: Uri = "https://www.google-analytics.com/g/collect?v=2".parse().unwrap();
        let req = Request::builder()
            .uri(uri.clone())
            .header("sec-fetch-dest", "empty")
            .header("sec-fetch-site", "cross-site")
            .header("referer", "https://www.news.example/story")
            .body(())
            .unwrap();
        let ex = decide(&req, &uri, None, &policy(), &overlay, None, None).unwrap();
        assert_eq!(ex.page, TopPage { host: "www.news.example".into(), site: "news.example".into() });
        assert_eq!((ex.site.as_str(), ex.third_party, ex.shopping), ("google-analytics.com", true, true));
        assert_eq!(ex.decision.verdict, Verdict::Block);
        assert_eq!(ex.decision.list(), Some("nostalk-surveillance"));
    }

    #[test]
    fn the_url_is_written_as_uri_writes_it() {
        for u in [
            "http://a.test",
            "http://a.test/",
            "https://a.test:8443/p/q?x=1&y",
            "http://u:p@a.test/?",
            "http://[::1]:81/x",
        ] {
            let uri: Uri = u.parse().unwrap();
            assert_eq!(url_of(&uri), uri.to_string(), "{u}");
        }
    }

    #[test]
    fn a_request_without_a_host_is_a_400() {
        let uri: Uri = "/just/a/path".parse().unwrap();
        let req = Request::builder().uri(uri.clone()).body(()).unwrap();
        let Err(failure) = decide(&req, &uri, None, &policy(), &Overlay::default(), None, None) else {
            panic!("no host")
        };
        assert_eq!(failure.status(), http::StatusCode::BAD_REQUEST);
    }
}
