//! The answer a blocked request gets, shaped for its request type so the page does not break:
//! 204 for beacons and fetches, a 1x1 transparent GIF for images, an empty stylesheet, an
//! empty script (or a surrogate of the tracker's API), a small placeholder document for frames.

use super::surrogates;
use crate::policy::{Decision, RequestType};
use crate::{empty, full, Body};
use http::{header, HeaderValue, Response, StatusCode};

/// The smallest transparent GIF (GIF89a, 1x1, one transparent colour).
pub const TRANSPARENT_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

pub fn respond(request_type: RequestType, url: &str, decision: &Decision) -> Response<Body> {
    let (status, content_type, body): (StatusCode, Option<&'static str>, Body) = match request_type {
        RequestType::Image => (StatusCode::OK, Some("image/gif"), full(TRANSPARENT_GIF)),
        RequestType::Stylesheet => (StatusCode::OK, Some("text/css"), full("/* blocked by nostalk */\n")),
        RequestType::Script => {
            let js = surrogates::for_url(url).unwrap_or("/* blocked by nostalk */\n");
            (StatusCode::OK, Some("application/javascript"), full(js))
        }
        RequestType::Document | RequestType::SubFrame => {
            let rule = decision.rule().unwrap_or("");
            let list = decision.list().unwrap_or("");
            let page = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Blocked</title></head>\
                 <body style=\"font:13px system-ui,sans-serif;color:#777;margin:4px\">\
                 <span title=\"{}\">nostalk blocked a tracker here ({})</span></body></html>\n",
                super::html_escape(rule),
                super::html_escape(list)
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
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("x-nostalk", HeaderValue::from_static("blocked"));
    resp
}
