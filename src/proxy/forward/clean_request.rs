//! The clean_request phase: hygiene on the request (cookies, parameters, Referer, client
//! hints, `Sec-GPC`), what it stripped written into the Exchange; a navigation to a decorated
//! URL answered with a 307 to the clean one instead of being sent; hop-by-hop headers out; for
//! a response that will be rewritten, upstream offered only codings the rewriter decodes.

use crate::base::{empty, Body, BoxError};
use crate::exchange::Exchange;
use crate::hygiene;
use crate::policy::{Policy, RequestType};
use crate::proxy::headers;
use crate::rewrite;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use tracing::debug;

/// The request as it goes upstream, and what the later phases need to know of the client's.
pub struct Outbound {
    pub request: Request<Body>,
    pub method: Method,
    /// The client's side of a WebSocket upgrade, when it asked for one.
    pub client_upgrade: Option<OnUpgrade>,
    /// Some when an HTML response is to be rewritten: whether the client accepts gzip.
    pub rewrite: Option<bool>,
}

/// What becomes of the request once cleaned: sent on, or answered here (a navigation to its
/// clean URL).
pub enum Cleaned {
    Send(Outbound),
    Answer(Response<Body>),
}

pub fn clean_request<B>(
    mut req: Request<B>,
    uri: Uri,
    ex: &mut Exchange,
    policy: &Policy,
    rewrite_enabled: bool,
) -> Cleaned
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let (clean_uri, stripped) = hygiene::request::clean(&mut parts.headers, &uri, ex, policy);
    ex.done.stripped.merge(stripped);
    if let Some(clean) = &clean_uri {
        // A navigation to a decorated URL is sent to the clean one, so the address bar and
        // the history hold no identifier.
        if ex.request_type == RequestType::Document && parts.method == Method::GET {
            debug!(to = %clean, "redirecting a navigation to its clean URL");
            return Cleaned::Answer(redirect(clean));
        }
    }
    // Documents and frames, and requests that say nothing of what they are for (curl, old
    // clients): their HTML is rewritten. A fetch or script that asks for HTML is left alone.
    let client_wants_html = ex.request_type.is_document() || ex.request_type == RequestType::Other;
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::EXPECT);
    // A trusted site's page is not rewritten: it reaches the browser as its origin sent it.
    let rewrite = (rewrite_enabled && client_wants_html && !ex.trusted())
        .then(|| rewrite::limit_accept_encoding(&mut parts.headers));
    parts.uri = clean_uri.unwrap_or(uri);
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    let body = if upgrade { empty() } else { crate::base::boxed(body) };
    Cleaned::Send(Outbound { request: Request::from_parts(parts, body), method, client_upgrade, rewrite })
}

fn redirect(to: &Uri) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(v) = header::HeaderValue::from_str(&to.to_string()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn run(uri: &str, dest: &str) -> (Cleaned, Exchange) {
        let policy = Policy::build(&crate::Config::default(), &[]).unwrap();
        let uri: Uri = uri.parse().unwrap();
        let req = Request::builder()
            .uri(uri.clone())
            .header("sec-fetch-dest", dest)
            .header("sec-fetch-site", "cross-site")
            .header("referer", "https://news.example/story?user=42")
            .header("cookie", "session=1")
            .header("connection", "keep-alive")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let overlay = crate::policy::Overlay::default();
        let mut ex = super::super::decide::decide(&req, &uri, None, &policy, &overlay, None, None).unwrap();
        (clean_request(req, uri, &mut ex, &policy, true), ex)
    }

    #[test]
    fn a_decorated_navigation_is_redirected_to_its_clean_url() {
        let (out, ex) = run("https://shop.example/item?id=3&utm_source=mail&fbclid=x", "document");
        let Cleaned::Answer(resp) = out else { panic!("a navigation to a decorated URL is redirected") };
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(resp.headers()[header::LOCATION], "https://shop.example/item?id=3");
        assert!(ex.done.stripped.params);
    }

    #[test]
    fn a_third_party_request_loses_cookie_referer_path_and_hop_by_hop_headers() {
        let (out, ex) = run("https://cdn.example/app.js?utm_campaign=x", "script");
        let Cleaned::Send(out) = out else { panic!("a script is sent on") };
        let h = out.request.headers();
        assert!(!h.contains_key(header::COOKIE) && !h.contains_key(header::CONNECTION));
        assert_eq!(h[header::REFERER], "https://news.example/");
        assert_eq!(out.request.uri(), "https://cdn.example/app.js");
        assert_eq!(out.rewrite, None, "a script's response is not rewritten");
        let s = ex.done.stripped;
        assert!(s.cookies && s.referer && s.params, "{s:?}");
    }
}
