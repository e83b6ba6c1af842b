//! The answer a blocked request gets, shaped for its request type so the page does not break:
//! 204 for beacons and fetches, a 1x1 transparent GIF for images, an empty stylesheet, an
//! empty script (or a surrogate of the tracker's API), a small placeholder document for frames;
//! a social widget's placeholder (respond/social.rs); for a navigation blocked by a `$document`
//! rule, a page that says what blocked it with "Go back" and "Open anyway" (uBlock Origin's
//! strict-blocking page); a redirector skipped, a 307 to its destination.

use super::{social, surrogates};
use crate::base::{empty, full, Body};
use crate::exchange::Exchange;
use crate::policy::passes::Passes;
use crate::policy::{Reason, RequestType};
use http::{header, HeaderValue, Response, StatusCode};

/// The smallest transparent GIF (GIF89a, 1x1, one transparent colour).
pub const TRANSPARENT_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The answer to a click in a widget's placeholder frame (the proxy has granted the script).
pub fn widget_clicked() -> Response<Body> {
    let mut r = Response::new(full(social::WIDGET_CLICKED));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `social`: the request is a social widget the person may click to load
/// ([`crate::policy::Policy::click_to_load`]).
pub fn respond(ex: &Exchange, passes: &Passes, social: bool) -> Response<Body> {
    let decision = &ex.decision;
    if let Reason::Bounce { to, .. } = &decision.reason {
        return bounce(to);
    }
    let mut cors = true;
    let (status, content_type, body): (StatusCode, Option<&'static str>, Body) = match ex.request_type {
        RequestType::Image => (StatusCode::OK, Some("image/gif"), full(TRANSPARENT_GIF)),
        RequestType::Stylesheet => (StatusCode::OK, Some("text/css"), full("/* blocked by nostalk */\n")),
        RequestType::Script if social => {
            // The surrogate's settings are for its page alone (a `<script src>` needs no CORS).
            cors = false;
            let js = social::surrogate(&ex.url, &ex.site);
            (StatusCode::OK, Some("application/javascript"), full(js))
        }
        RequestType::Script => {
            let js = surrogates::for_url(&ex.url).unwrap_or("/* blocked by nostalk */\n");
            (StatusCode::OK, Some("application/javascript"), full(js))
        }
        RequestType::SubFrame | RequestType::Document
            if social && crate::policy::passes::widget_script(&ex.url).is_some() =>
        {
            let page = social::widget_button(&ex.url, &ex.site, passes);
            (StatusCode::OK, Some("text/html; charset=utf-8"), full(page))
        }
        RequestType::Document => (StatusCode::OK, Some("text/html; charset=utf-8"), full(strict_page(ex, passes))),
        RequestType::SubFrame if social => {
            let page = social::frame_placeholder(&ex.url, &ex.site, passes);
            (StatusCode::OK, Some("text/html; charset=utf-8"), full(page))
        }
        RequestType::SubFrame => {
            let rule = decision.rule().unwrap_or("");
            let list = match decision.cname() {
                Some(cname) => format!("{}, via CNAME {cname}", decision.list().unwrap_or("")),
                None => decision.list().unwrap_or("").to_string(),
            };
            let page = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Blocked</title></head>\
                 <body style=\"font:13px system-ui,sans-serif;color:#777;margin:4px\">\
                 <span title=\"{}\">nostalk blocked a tracker here ({})</span></body></html>\n",
                super::html_escape(rule),
                super::html_escape(&list)
            );
            (StatusCode::OK, Some("text/html; charset=utf-8"), full(page))
        }
        // Beacons, fetch/XHR, media, fonts, websockets and the rest: nothing to say.
        _ => (StatusCode::NO_CONTENT, None, empty()),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Cross-origin scripts and images must stay usable by the page that asked for them.
    if cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    h.insert("x-nostalk", HeaderValue::from_static("blocked"));
    // A cloaked tracker: the name it hid behind, for the person's developer tools.
    if let Some(v) = decision.cname().and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("x-nostalk-cname", v);
    }
    resp
}

/// A navigation to a redirector goes straight to the destination its URL carries.
fn bounce(to: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let h = resp.headers_mut();
    // The destination came out of a URL http accepted and was re-serialized by the url crate:
    // it is a valid header value; if it were not, the browser gets the error page instead.
    match HeaderValue::from_str(to) {
        Ok(v) => h.insert(header::LOCATION, v),
        Err(_) => return super::failure::Failure::BadDestination.answer(),
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-nostalk", HeaderValue::from_static("bounced"));
    resp
}

/// The page a navigation blocked by a `$document` rule gets: what was blocked, by which rule of
/// which list, "Go back", and "Open anyway" (a one-time pass for this address alone).
fn strict_page(ex: &Exchange, passes: &Passes) -> String {
    let e = super::html_escape;
    let rule = ex.decision.rule().unwrap_or("");
    let list = ex.decision.list().unwrap_or("");
    let shown: String = ex.url.chars().take(300).collect();
    let open = passes.link(&ex.url);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <link rel=\"icon\" href=\"data:,\"><title>nostalk blocked a page</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;\
         margin:3em auto;padding:0 1em;color:#222}}code{{background:#f3f3f3;padding:0 .2em;word-break:break-all}}\
         .b{{display:inline-block;margin:.3em .6em .3em 0;padding:.4em 1em;border:1px solid #888;border-radius:4px;\
         color:#222;background:#f3f3f3;text-decoration:none;font:inherit;cursor:pointer}}</style></head><body>\
         <h1>nostalk blocked this page</h1>\
         <p><b>{host}</b> is on a list of trackers as a page not to be opened.</p>\
         <p>Address: <code>{url}</code></p><p>Rule: <code>{rule}</code> from the list <b>{list}</b></p>\
         <p><button class=\"b\" type=\"button\" onclick=\"history.back()\">Go back</button>\
         <a class=\"b\" id=\"open-anyway\" href=\"{open}\">Open anyway</a></p>\
         <p><small>\"Open anyway\" opens this address this once. To stop blocking {host} for good, add its site \
         to <code>[policy] trusted_sites</code>.</small></p></body></html>\n",
        host = e(&ex.host),
        url = e(&shown),
        rule = e(rule),
        list = e(list),
        open = e(&open),
    )
}
