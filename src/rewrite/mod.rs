//! Streaming HTML rewriting on the hot path. A `text/html` (or XHTML) response that is not
//! blocked is decoded as a stream (`coding` negotiates, `decode` reads gzip, deflate, br and
//! zstd via async-compression), fed chunk by chunk through lol_html with the named handlers in
//! [`handlers`] (`stream`), and sent on as each chunk comes out: identity or gzip (flushed per
//! chunk), as the proxy's rewrite phase chose. The rewriter's memory is bounded by lol_html's
//! memory settings; pages are never held whole. What was removed is left in the page's
//! [`Removals`] for the record phase. Everything else passes byte for byte.

pub mod coding;
pub mod csp;
mod decode;
pub mod handlers;
mod held;
mod resync;
mod stream;

use crate::base::Body;
use crate::policy::{Overlay, Policy};
use bytes::BytesMut;
use coding::{charset_of, coding_of, Coding};
use handlers::Handlers;
use http::header::{self, HeaderMap, HeaderValue};
use http::{response::Parts, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use std::sync::{Arc, Mutex};
use stream::{Fresh, RewriteStream};

pub use coding::limit_accept_encoding;
pub use decode::decode_all;
pub use handlers::{Kind, Removal, Removals};

/// lol_html's own memory stays under this per page, whatever the page's size.
pub const MAX_REWRITER_MEMORY: usize = 2 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// The one decision ([`Policy::decide_for`]), as the rewriter asks it of each URL in a page:
/// the policy and the overlays of the request that fetched the page.
pub struct Judge {
    pub policy: Arc<Policy>,
    pub overlay: Overlay,
}

/// What the rewriter needs to know about the page.
pub struct Page {
    pub judge: Judge,
    /// The host of the page being rewritten: its relative URLs resolve against it, and the
    /// decisions on its URLs take it as their page.
    pub host: String,
    /// The top page's site is switched to shopping (links keep their shopping parameters).
    pub shopping: bool,
    /// Send the rewritten page gzipped (the client accepts gzip and the config wants it).
    pub gzip: bool,
    /// The page is a third-party frame decided `ad`, or a tracker's page a navigation loads
    /// (unlinkable): its storage is shimmed to the page's life.
    pub page_lived: bool,
}

pub fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
        })
        .unwrap_or(false)
}

pub fn is_rewritable(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    method != Method::HEAD
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
        && !status.is_informational()
        && is_html(headers)
        && coding_of(headers).is_some()
}

/// Rewrite an HTML response as it streams. Returns the response and the page's removals,
/// filled in as the page goes through.
pub async fn rewrite_response(mut parts: Parts, body: Body, page: Page) -> (Response<Body>, Arc<Mutex<Removals>>) {
    let coding = coding_of(&parts.headers).unwrap_or(Coding::Identity);
    let gpc = csp::plan(&mut parts.headers);
    let handlers = Arc::new(Handlers::new(page.judge, page.host, page.shopping, gpc).page_lived(page.page_lived));
    let removals = handlers.removals.clone();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    // The body changes, so validators and ranges of the original no longer describe it.
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::ACCEPT_RANGES);
    if page.gzip {
        parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        parts.headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let encoding = charset_of(&parts.headers);
    let host = handlers.page_host.clone();
    let mut stream = RewriteStream::new(body, coding, handlers, encoding, page.gzip);
    if coding == Coding::Identity {
        return (Response::from_parts(parts, StreamBody::new(stream).boxed_unsync()), removals);
    }
    // A compressed page is decoded before its head is sent: a body that cannot be decoded is
    // then a 502 the person can read, and the connection stays fit for the next request,
    // instead of a reply with nothing in it.
    use futures_util::StreamExt;
    let resp = match stream.next().await {
        Some(Err(e)) => {
            crate::respond::failure::Failure::Undecodable { host, coding: coding.name(), error: e.to_string() }.answer()
        }
        first => {
            let body = futures_util::stream::iter(first).chain(stream);
            Response::from_parts(parts, StreamBody::new(body).boxed_unsync())
        }
    };
    (resp, removals)
}

/// Rewrite a whole page held in memory, in `READ_CHUNK` pieces as the proxy feeds them, handing
/// each piece of output to `out` as it comes (as the proxy hands it to the browser). Returns
/// what was removed and whether the GPC script went in. For tests, benches and tools.
pub fn rewrite_with(
    html: &[u8],
    policy: Arc<Policy>,
    page_host: &str,
    headers: &mut HeaderMap,
    mut out: impl FnMut(&[u8]),
) -> (Vec<Removal>, bool) {
    let gpc = csp::plan(headers);
    let judge = Judge { policy, overlay: Overlay::default() };
    let page = Arc::new(Handlers::new(judge, page_host.to_string(), false, gpc));
    let removals = page.removals.clone();
    let buf = Arc::new(Mutex::new(BytesMut::new()));
    let encoding = charset_of(headers);
    let mut fresh = Fresh::new(page, encoding);
    let mut rw = Some(fresh.rewriter(&buf));
    let mut drain = || {
        let mut b = crate::base::lock(&buf);
        out(&b);
        b.clear();
    };
    for chunk in html.chunks(READ_CHUNK) {
        if RewriteStream::feed(&mut rw, &mut fresh, &buf, chunk).is_err() {
            break;
        }
        drain();
    }
    if let Some(rw) = rw {
        let _ = rw.end();
    }
    drain();
    let r = crate::base::lock(&removals);
    (r.list.clone(), r.gpc_injected)
}

/// [`rewrite_with`], collecting the output: (page, removals, GPC injected).
pub fn rewrite_bytes(
    html: &[u8],
    policy: Arc<Policy>,
    page_host: &str,
    headers: &mut HeaderMap,
) -> (Vec<u8>, Vec<Removal>, bool) {
    let mut page = Vec::with_capacity(html.len() + 1024);
    let (removals, gpc) = rewrite_with(html, policy, page_host, headers, |c| page.extend_from_slice(c));
    (page, removals, gpc)
}

#[cfg(test)]
mod tests;
