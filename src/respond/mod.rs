//! Answers made here rather than fetched: the right-shaped answer for a blocked request
//! (`blocked`), surrogates of well-known tracker libraries (`surrogates`), error pages with the
//! right status (`error_page`), and the proxy's own pages (`pages`: status, PAC, CA, metrics).

pub mod blocked;
pub mod failure;
pub mod pages;
pub mod receipt_page;
pub mod social;
pub mod surrogates;

use crate::base::{full, Body};
use http::{header, Response, StatusCode};

/// A small readable error page with the right status.
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response<Body> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}}code{{background:#f3f3f3;padding:0 .2em}}</style></head>\
         <body><h1>{code} {title}</h1><p>{detail}</p><p><small>nostalk</small></p></body></html>\n",
        code = status.as_u16(),
        title = html_escape(title),
        detail = html_escape(detail),
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
