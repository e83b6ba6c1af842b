//! The proxy's own pages, for requests addressed to the proxy itself: `/` (status and the
//! privacy receipt), `/proxy.pac`, `/ca.pem`, `/metrics`, `/healthz`, `/readyz`, and
//! `POST /shopping` (the per-site shopping switch).

use super::{error_page, html_escape};
use crate::policy::{site, Verdict};
use crate::{full, Body, Shared};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn serve(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => status_page(shared),
        (&Method::GET | &Method::HEAD, "/proxy.pac") => pac(shared),
        (&Method::GET | &Method::HEAD, "/ca.pem") => match &shared.ca {
            Some(ca) => {
                let mut r = text(StatusCode::OK, "application/x-pem-file", ca.cert_pem.clone());
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"nostalk-ca.pem\""),
                );
                r
            }
            None => {
                error_page(StatusCode::NOT_FOUND, "Not Found", "Interception is off, so there is no CA to install.")
            }
        },
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(shared.receipt.dropped.load(Ordering::Relaxed)),
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            if shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n")
            }
        }
        (&Method::POST, "/shopping") => shopping(shared, req).await,
        (_, "/" | "/proxy.pac" | "/ca.pem" | "/metrics" | "/healthz" | "/readyz" | "/shopping") => {
            error_page(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", "This page does not take that method.")
        }
        _ => error_page(
            StatusCode::NOT_FOUND,
            "Not Found",
            "This is nostalk, a proxy. Its pages are /, /proxy.pac, /ca.pem, /metrics, /healthz and /readyz.",
        ),
    }
}

fn pac(shared: &Shared) -> Response<Body> {
    let addr = shared.listen;
    let body = format!(
        "// nostalk proxy auto-configuration\nfunction FindProxyForURL(url, host) {{\n  if (isPlainHostName(host) || host === \"localhost\" || shExpMatch(host, \"127.*\") || host === \"[::1]\") return \"DIRECT\";\n  return \"PROXY {addr}; DIRECT\";\n}}\n"
    );
    text(StatusCode::OK, "application/x-ns-proxy-autoconfig", body)
}

/// `site=example.com&minutes=30` (minutes=0 switches it off).
async fn shopping(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let limited = http_body_util::Limited::new(req.into_body(), 4096);
    let Ok(collected) = limited.collect().await else {
        return error_page(StatusCode::BAD_REQUEST, "Bad Request", "The form could not be read.");
    };
    let form = collected.to_bytes();
    let mut site_name = None;
    let mut minutes = 60u64;
    for (k, v) in url::form_urlencoded::parse(&form) {
        match &*k {
            "site" => site_name = Some(v.trim().to_ascii_lowercase()),
            "minutes" => minutes = v.trim().parse().unwrap_or(60),
            _ => {}
        }
    }
    let Some(name) = site_name.filter(|s| !s.is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "Bad Request", "Say which site: site=example.com");
    };
    let s = site::site_of(&name);
    shared.shopping.set(&s, Duration::from_secs(minutes.min(7 * 24 * 60) * 60));
    tracing::info!(site = %s, minutes, "shopping switch set");
    let mut r = text(StatusCode::SEE_OTHER, "text/plain", format!("{s}: shopping for {minutes} minutes\n"));
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

fn status_page(shared: &Shared) -> Response<Body> {
    let policy = shared.policy.load();
    let mut h = String::with_capacity(8192);
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>nostalk</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2em .5em;border-bottom:1px solid #eee;vertical-align:top}.b{color:#b00}.a{color:#a60}small{color:#777}</style></head><body>");
    let _ = write!(
        h,
        "<h1>nostalk</h1><p>Listening on <code>{}</code>. PAC file: <a href=\"/proxy.pac\">/proxy.pac</a>.",
        shared.listen
    );
    if shared.ca.is_some() {
        h.push_str(" Looking inside HTTPS: install the <a href=\"/ca.pem\">CA certificate</a> in your browser.</p>");
    } else {
        h.push_str(" HTTPS is tunnelled untouched (interception is off).</p>");
    }
    let (b, a) = policy.rule_counts();
    let _ = write!(h, "<h2>Lists</h2><p>{b} surveillance rules, {a} ad rules.</p><ul>");
    for s in &policy.sources {
        let _ =
            write!(h, "<li>{} <small>({}, {} entries)</small></li>", html_escape(&s.name), s.kind.as_str(), s.rules);
    }
    h.push_str("</ul>");
    for sub in shared.lists.summaries() {
        let _ = write!(h, "<p><small>subscription {}: {}</small></p>", html_escape(&sub.name), html_escape(&sub.state));
    }
    h.push_str("<h2>Shopping</h2><form method=\"post\" action=\"/shopping\">Let <input name=\"site\" placeholder=\"shop.example\"> keep its shopping cookies for <input name=\"minutes\" value=\"60\" size=\"4\"> minutes <button>Start</button></form><ul>");
    for (s, left) in shared.shopping.active() {
        let _ = write!(h, "<li>{}: {} min left</li>", html_escape(&s), left.as_secs() / 60 + 1);
    }
    h.push_str("</ul><h2>Receipt</h2><p>What each site tried, and what got through.</p><table><tr><th>site</th><th>blocked</th><th>ads, de-identified</th><th>removed from its pages</th></tr>");
    for (site_name, r) in shared.receipt.snapshot() {
        let mut blocked = String::new();
        let mut ads = String::new();
        for ((host, verdict), n) in &r.requests {
            let line = format!("{} ×{n}<br>", html_escape(host));
            match verdict {
                Verdict::Block => blocked.push_str(&line),
                _ => ads.push_str(&line),
            }
        }
        let removed: String = r.removed.iter().map(|(k, n)| format!("{k} ×{n}<br>")).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"b\">{blocked}</td><td class=\"a\">{ads}</td><td>{removed}</td></tr>",
            html_escape(&site_name)
        );
    }
    h.push_str("</table></body></html>\n");
    text(StatusCode::OK, "text/html; charset=utf-8", h)
}
