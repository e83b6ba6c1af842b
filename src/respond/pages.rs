//! The proxy's own pages, for requests addressed to the proxy itself: `/` (the privacy receipt,
//! rendered by receipt_page.rs, and the proxy's status), `/site?name=` (one site's receipt) and
//! `/events` (server-sent events: which site changed), `/proxy.pac`, `/ca.pem`, `/metrics`,
//! `/healthz`, `/readyz`, and the controls `POST /shopping` (the per-site shopping switch),
//! `POST /trust`, `POST /ads/down` and `/ads/restore` (kept in the choices store), and
//! `POST /lists/refresh` (download the subscribed lists now).
//!
//! Who may see what: the health checks, the PAC file and the CA for every client that may
//! connect; the receipt for `[access] allow` clients; `/metrics` and the controls for
//! `[admin] allow` clients (with `[admin] token` when set). A control is a POST that must
//! carry the token the proxy's own page put in its form, and come same-origin
//! (`Sec-Fetch-Site`, `Origin`): a page on another site cannot flip a switch through the
//! proxy, even with a form or a `text/plain` fetch a browser sends without preflight. What
//! the pages render is capped, so no table makes a page without bound.

use super::{error_page, html_escape};
use crate::policy::site;
use crate::{full, Body, Shared};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A new secret for the pages' forms: 128 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    // The OS's random source does not fail on any system this runs on; if it ever did, the
    // token would be the process's start time, still unknown to a web page.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b.copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The metrics, with what only a scrape reads: the lists in force, open connections.
fn metrics(shared: &Shared) -> String {
    use crate::policy::lists::Origin;
    let policy = shared.policy.load();
    let subscribed = shared.lists.summaries();
    let lists: Vec<_> = policy
        .sources
        .iter()
        .map(|s| {
            let age = match &s.origin {
                Origin::Embedded => None,
                Origin::Path(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()),
                Origin::Url(_) => subscribed.iter().find(|x| x.name == s.name).and_then(|x| x.age),
            };
            (s.name.clone(), s.kind.as_str(), s.rules, age)
        })
        .collect();
    let mut out = shared.metrics.render(&crate::ops::metrics::Scrape {
        receipt_dropped: shared.receipt.dropped.load(Ordering::Relaxed),
        open_connections: shared.conns.open(),
        removal_kinds: crate::exchange::Kind::ALL.map(crate::exchange::Kind::as_str),
        lists: &lists,
    });
    ad_source_metrics(&mut out, shared);
    out
}

/// Per ad source: requests shown de-identified and blocked as down-voted, and the down-votes,
/// so Prometheus sums them across replicas. Sources are registrable domains (bounded in
/// number by the receipt); a label value is escaped all the same.
fn ad_source_metrics(out: &mut String, shared: &Shared) {
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "");
    out.push_str("# HELP nostalk_ad_source_requests_total Ad requests per ad source: shown de-identified (ad) or blocked as down-voted.\n# TYPE nostalk_ad_source_requests_total counter\n");
    for (source, a) in shared.receipt.ad_sources() {
        let _ = writeln!(
            out,
            "nostalk_ad_source_requests_total{{source=\"{}\",verdict=\"ad\"}} {}",
            label(&source),
            a.shown
        );
        let _ = writeln!(
            out,
            "nostalk_ad_source_requests_total{{source=\"{}\",verdict=\"downvoted\"}} {}",
            label(&source),
            a.downvoted
        );
    }
    out.push_str("# HELP nostalk_ad_source_downvotes Down-votes per ad source, as kept in the choices store.\n# TYPE nostalk_ad_source_downvotes gauge\n");
    for (source, votes) in &shared.choices.snapshot().downvotes {
        let _ = writeln!(out, "nostalk_ad_source_downvotes{{source=\"{}\"}} {votes}", label(source));
    }
}

/// Answer a request to the proxy's own pages. `proxied`: the browser sent it through its
/// proxy setting (not straight to the listen address).
pub async fn serve(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
    proxied: bool,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let ip = peer.ip();
    let user = shared.access.is_user(ip);
    let admin = shared.access.is_admin(ip, req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()));
    let forbidden = |what: &str| {
        error_page(StatusCode::FORBIDDEN, "Forbidden", &format!("{what} is for the proxy's operators ([admin] allow)."))
    };
    match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") if user || admin => {
            let page = req.uri().query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "page").and_then(|(_, v)| v.parse().ok())
            });
            status_page(shared, local, admin, proxied, page.unwrap_or(1))
        }
        (&Method::GET | &Method::HEAD, "/") => {
            error_page(StatusCode::FORBIDDEN, "Forbidden", "This proxy does not serve your address.")
        }
        (&Method::GET | &Method::HEAD, "/proxy.pac") => pac(req.headers(), local, shared.config.server.pac_fallback),
        (&Method::GET | &Method::HEAD, "/ca.pem" | "/ca.crt") => match &shared.ca {
            Some(ca) => {
                // The same PEM; `.crt` with the type phones and Windows open as a CA to install.
                let (content_type, disposition) = if path == "/ca.crt" {
                    ("application/x-x509-ca-cert", "attachment; filename=\"nostalk-ca.crt\"")
                } else {
                    ("application/x-pem-file", "attachment; filename=\"nostalk-ca.pem\"")
                };
                let mut r = text(StatusCode::OK, content_type, ca.cert_pem.clone());
                r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(disposition));
                r
            }
            None => {
                error_page(StatusCode::NOT_FOUND, "Not Found", "Interception is off, so there is no CA to install.")
            }
        },
        (&Method::GET, "/metrics") if admin => text(StatusCode::OK, "text/plain; version=0.0.4", metrics(shared)),
        (&Method::GET, "/metrics") => forbidden("/metrics"),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
        // Loaded by the status page over https://nostalk.internal/: it loads only when the
        // browser trusts the CA that signed nostalk's certificate for that name.
        (&Method::GET, "/ca-check.gif") => text(StatusCode::OK, "image/gif", crate::respond::blocked::TRANSPARENT_GIF),
        (&Method::GET, "/readyz") => {
            if shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n")
            }
        }
        (&Method::GET, "/events") if user || admin => events(shared),
        (&Method::GET, "/site") if user || admin => {
            let name = req.uri().query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "name").map(|(_, v)| v.into_owned())
            });
            site_fragment(shared, name.as_deref().unwrap_or(""), admin)
        }
        (&Method::GET, "/events" | "/site") => {
            error_page(StatusCode::FORBIDDEN, "Forbidden", "This proxy does not serve your address.")
        }
        (&Method::POST, "/shopping" | "/lists/refresh" | "/trust" | "/ads/down" | "/ads/restore") if admin => {
            match control_form(shared, req).await {
                Ok(form) => match path.as_str() {
                    "/shopping" => shopping(shared, &form).await,
                    "/trust" => trust(shared, &form).await,
                    "/ads/down" | "/ads/restore" => ad_vote(shared, &form, path == "/ads/down").await,
                    _ => refresh_lists(shared).await,
                },
                Err(refused) => refused,
            }
        }
        (&Method::POST, "/shopping" | "/trust" | "/ads/down" | "/ads/restore") => forbidden("This control"),
        (&Method::POST, "/lists/refresh") => forbidden("Refreshing the lists"),
        (
            _,
            "/" | "/proxy.pac" | "/ca.pem" | "/ca.crt" | "/ca-check.gif" | "/metrics" | "/healthz" | "/readyz"
            | "/shopping" | "/lists/refresh" | "/trust" | "/ads/down" | "/ads/restore" | "/events" | "/site",
        ) => error_page(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", "This page does not take that method."),
        _ => error_page(
            StatusCode::NOT_FOUND,
            "Not Found",
            "This is nostalk, a proxy. Its pages are /, /proxy.pac, /ca.pem, /metrics, /healthz and /readyz.",
        ),
    }
}

/// A control must come from the proxy's own page: a browser says where a request came from
/// (`Sec-Fetch-Site`, and `Origin` on a POST), and anything but the same origin, or a request
/// the person typed or sent from a shell (no such headers, or `none`), is refused.
fn same_origin(headers: &http::HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !(site == "same-origin" || site == "none") {
            return Err("A page on another site cannot use the proxy's controls.");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Err("A page on another origin cannot use the proxy's controls.");
        }
    }
    Ok(())
}

/// The PAC file names the address this client reached the proxy on (its Host when that is
/// an address, else the socket's local address), never `0.0.0.0` or `[::]`.
/// With `pac_fallback = "none"` (the default) a browser whose proxy is down gets no web rather
/// than the web without protection.
fn pac(headers: &http::HeaderMap, local: SocketAddr, fallback: crate::config::PacFallback) -> Response<Body> {
    let from_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<SocketAddr>().ok())
        .filter(|a| !a.ip().is_unspecified());
    let addr = from_host.unwrap_or(local);
    let direct = match fallback {
        crate::config::PacFallback::None => "",
        crate::config::PacFallback::Direct => "; DIRECT",
    };
    let body = format!(
        "// nostalk proxy auto-configuration\nfunction FindProxyForURL(url, host) {{\n  if (isPlainHostName(host) || host === \"localhost\" || shExpMatch(host, \"127.*\") || host === \"[::1]\") return \"DIRECT\";\n  return \"PROXY {addr}{direct}\";\n}}\n"
    );
    text(StatusCode::OK, "application/x-ns-proxy-autoconfig", body)
}

/// The form of a control request, once it is known to come from the proxy's own page: sent
/// same-origin, read within 4 KB, carrying the page's token. Otherwise the 403 (or 400) it gets.
async fn control_form(shared: &Shared, req: Request<Incoming>) -> Result<bytes::Bytes, Response<Body>> {
    if let Err(why) = same_origin(req.headers()) {
        tracing::info!(reason = why, "refused a control request");
        return Err(error_page(StatusCode::FORBIDDEN, "Forbidden", why));
    }
    let Ok(collected) = http_body_util::Limited::new(req.into_body(), 4096).collect().await else {
        return Err(error_page(StatusCode::BAD_REQUEST, "Bad Request", "The form could not be read."));
    };
    let form = collected.to_bytes();
    let token_ok =
        url::form_urlencoded::parse(&form).any(|(k, v)| k == "token" && v.as_bytes() == shared.page_token.as_bytes());
    if !token_ok {
        tracing::info!("refused a control request without the page's token");
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This control works only from the proxy's own page (its token is missing or stale).",
        ));
    }
    Ok(form)
}

/// Download every subscribed list now, swap in the policy when one changed, and
/// say what each list got.
async fn refresh_lists(shared: &Shared) -> Response<Body> {
    use crate::policy::subscribe::{self, Outcome};
    let max_bytes = shared.policy_config.load().max_list_bytes();
    let (mut report, mut changed) = (String::new(), false);
    for (i, summary) in shared.lists.summaries().into_iter().enumerate() {
        let outcome = shared.lists.refresh(&*shared.upstream, max_bytes, i).await;
        changed |= outcome == Outcome::Updated;
        let said = match outcome {
            Outcome::Updated => "updated".to_string(),
            Outcome::NotModified => "up to date".to_string(),
            Outcome::Failed(why) => format!("failed ({why}); the copy in force stays"),
        };
        let _ = writeln!(report, "{}: {said}", summary.name);
    }
    if shared.lists.is_empty() {
        report.push_str("no subscribed lists\n");
    }
    if changed {
        let (config, lists, policy) = (shared.policy_config.load_full(), shared.lists.clone(), shared.policy.clone());
        // The engines are built off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || subscribe::rebuild(&config, &lists, &policy)).await;
    }
    text(StatusCode::OK, "text/plain; charset=utf-8", report)
}

/// `site=example.com&minutes=30` (minutes=0 switches it off).
async fn shopping(shared: &Shared, form: &[u8]) -> Response<Body> {
    let Some(name) = form_value(form, "site") else {
        return error_page(StatusCode::BAD_REQUEST, "Bad Request", "Say which site: site=example.com");
    };
    let minutes: u64 = form_value(form, "minutes").and_then(|m| m.parse().ok()).unwrap_or(60);
    let s = site::site_of(&name);
    let duration = Duration::from_secs(minutes.min(7 * 24 * 60) * 60);
    if !shared.shopping.set(&s, duration) {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Too many sites are in shopping mode; switch one off first.",
        );
    }
    let store = keep(shared, {
        let s = s.clone();
        move |c| c.set_shopping(&s, duration)
    });
    if let Err(e) = store.await {
        tracing::warn!(error = %e, "the shopping switch is on, but could not be kept for the next start");
    }
    tracing::info!(site = %s, minutes, "shopping switch set");
    back_to(&s, format!("{s}: shopping for {minutes} minutes\n"))
}

/// 303 back to the receipt, at the site's section.
fn back_to(site: &str, said: String) -> Response<Body> {
    let mut r = text(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", said);
    let to = format!("/#{}", super::receipt_page::section_id(site));
    // The id is made of [A-Za-z0-9_-] only: a valid header value.
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/")));
    r
}

/// A change to the choices store, made on the blocking pool (SQLite writes to disk).
async fn keep(
    shared: &Shared,
    change: impl FnOnce(&crate::ops::choices::Choices) -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let choices = shared.choices.clone();
    tokio::task::spawn_blocking(move || change(&choices)).await.unwrap_or_else(|e| Err(e.to_string()))
}

/// The answer when a choice could not be written to the store.
fn not_kept(e: &str) -> Response<Body> {
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &format!("could not keep it: {e}"))
}

/// A form field's value, trimmed and lowercase; None when absent or empty.
fn form_value(form: &[u8], key: &str) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// `site=example.com&trust=1` (0 stops trusting it).
async fn trust(shared: &Shared, form: &[u8]) -> Response<Body> {
    let Some(name) = form_value(form, "site") else {
        return error_page(StatusCode::BAD_REQUEST, "Bad Request", "Say which site: site=example.com");
    };
    let s = site::site_of(&name);
    let on = form_value(form, "trust").as_deref() != Some("0");
    let stored = keep(shared, {
        let s = s.clone();
        move |c| c.set_trusted(&s, on)
    });
    if let Err(e) = stored.await {
        return not_kept(&e);
    }
    tracing::info!(site = %s, trusted = on, "trusted site set from the page");
    let said = if on { format!("{s}: trusted\n") } else { format!("{s}: no longer trusted\n") };
    back_to(&s, said)
}

/// `source=ads.example&site=news.example`: one more down-vote, or (restore) none.
async fn ad_vote(shared: &Shared, form: &[u8], down: bool) -> Response<Body> {
    let Some(source) = form_value(form, "source").map(|h| site::site_of(&h)) else {
        return error_page(StatusCode::BAD_REQUEST, "Bad Request", "Say which ad source: source=ads.example");
    };
    let page = form_value(form, "site").unwrap_or_default();
    let result = keep(shared, {
        let source = source.clone();
        move |c| if down { c.downvote(&source).map(|_| ()) } else { c.restore(&source) }
    });
    if let Err(e) = result.await {
        return not_kept(&e);
    }
    tracing::info!(source = %source, down, "ad source vote");
    back_to(&page, format!("{source}: {}\n", if down { "down-voted" } else { "restored" }))
}

/// Server-sent events: the name of each site whose receipt changed, as it changes, and a
/// comment every 15 s to keep the connection open; ends when the proxy shuts down.
fn events(shared: &Shared) -> Response<Body> {
    use futures_util::StreamExt;
    use http_body::Frame;
    let rx = shared.receipt.subscribe();
    let stop = shared.shutdown.subscribe();
    let stream = futures_util::stream::unfold((rx, stop, true), |(mut rx, mut stop, first)| async move {
        if first {
            return Some((bytes::Bytes::from_static(b"retry: 2000\n: nostalk receipt\n\n"), (rx, stop, false)));
        }
        if *stop.borrow() {
            return None;
        }
        let chunk = tokio::select! {
            got = rx.recv() => match got {
                Ok(site) => bytes::Bytes::from(format!("event: site\ndata: {}\n\n", site.replace(['\n', '\r'], ""))),
                // Missed some: the page has every site anyway after its next fetches.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => bytes::Bytes::from_static(b": lagged\n\n"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep(Duration::from_secs(15)) => bytes::Bytes::from_static(b": keep-alive\n\n"),
            _ = stop.changed() => return None,
        };
        Some((chunk, (rx, stop, false)))
    });
    let body = http_body_util::StreamBody::new(stream.map(|b| Ok::<_, crate::BoxError>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn controls<'a>(
    shared: &'a Shared,
    admin: bool,
    site_name: &str,
    snap: &'a crate::ops::choices::Snapshot,
) -> super::receipt_page::Controls<'a> {
    let shopping_left = shared.shopping.left(site_name).map(|left| left.as_secs() / 60 + 1);
    super::receipt_page::Controls {
        token: &shared.page_token,
        admin,
        choices: snap,
        threshold: shared.choices.threshold(),
        shopping_left,
    }
}

/// One site's section alone, for the page's live updates.
fn site_fragment(shared: &Shared, name: &str, admin: bool) -> Response<Body> {
    let Some(r) = shared.receipt.site(name) else {
        return error_page(StatusCode::NOT_FOUND, "Not Found", "No receipt for that site.");
    };
    let snap = shared.choices.snapshot();
    let mut h = String::with_capacity(2048);
    super::receipt_page::site_section(
        &mut h,
        name,
        &r,
        shared.receipt.per_person(),
        &controls(shared, admin, name, &snap),
    );
    text(StatusCode::OK, "text/html; charset=utf-8", h)
}

/// Sites shown on one page of the receipt.
const SITES_PER_PAGE: usize = 20;

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:52em;margin:1.5em auto;padding:0 1em;color:#222}\
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em}h3{font-size:1.1em;margin:0}\
.site{border:1px solid #ddd;border-radius:8px;padding:.7em 1em;margin:.8em 0}.when{color:#777;margin:0;font-size:.85em}\
.headline{font-weight:600;margin:.3em 0}.what{color:#555;font-size:.9em}.why{color:#b00}small{color:#666}\
code{background:#f3f3f3;padding:0 .2em;word-break:break-all}ul{padding-left:1.2em}summary{cursor:pointer;margin:.3em 0}\
.controls form,.ad-source form,.trackers form,.choices form{display:inline-block;margin:.2em .4em .2em 0}button,select{font:inherit;font-size:.9em}\
.b{color:#b00}.ok{color:#070}";

fn status_page(shared: &Shared, local: SocketAddr, admin: bool, proxied: bool, page: usize) -> Response<Body> {
    let policy = shared.policy.load();
    let per_person = shared.receipt.per_person();
    let mut h = String::with_capacity(16384);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>nostalk: your receipt</title><style>{STYLE}</style></head><body>"
    );
    h.push_str("<h1>nostalk</h1><p>What each site you visit tried, and what it got.</p>");
    this_browser(&mut h, proxied, shared.ca.is_some());
    let (sites, total) = shared.receipt.page((page.max(1) - 1) * SITES_PER_PAGE, SITES_PER_PAGE);
    let live = page <= 1;
    let _ = write!(h, "<h2>Your receipt</h2><div id=\"sites\" data-live=\"{}\">", if live { 1 } else { 0 });
    if sites.is_empty() {
        h.push_str("<p id=\"no-sites\">Nothing yet: browse a little through nostalk and come back (this page updates itself).</p>");
    }
    let snap = shared.choices.snapshot();
    for (site_name, r) in &sites {
        super::receipt_page::site_section(&mut h, site_name, r, per_person, &controls(shared, admin, site_name, &snap));
    }
    h.push_str("</div>");
    let pages = total.div_ceil(SITES_PER_PAGE).max(1);
    if pages > 1 {
        let _ = write!(h, "<p>Page {} of {pages}.", page.min(pages));
        if page > 1 {
            let _ = write!(h, " <a href=\"/?page={}\">Newer</a>", page - 1);
        }
        if page < pages {
            let _ = write!(h, " <a href=\"/?page={}\">Older</a>", page + 1);
        }
        h.push_str("</p>");
    }
    if !per_person {
        h.push_str(
            "<h2>Ad sources</h2><p><small>This gateway keeps totals only: no client, no page address.</small></p><ul>",
        );
        for (source, a) in shared.receipt.ad_sources().iter().take(100) {
            let _ = write!(
                h,
                "<li><code>{}</code>: {} shown de-identified, {} blocked as down-voted</li>",
                html_escape(source),
                a.shown,
                a.downvoted
            );
        }
        h.push_str("</ul>");
    }
    if !snap.downvotes.is_empty() || !snap.trusted.is_empty() {
        h.push_str("<h2>Your choices</h2><ul class=\"choices\">");
        for (source, votes) in &snap.downvotes {
            let state = if *votes >= shared.choices.threshold() { "blocked (down-voted)" } else { "shown" };
            let _ = write!(h, "<li>ad source <code>{}</code>: {votes} down-vote(s), {state} ", html_escape(source));
            if admin {
                super::receipt_page::form(&mut h, &shared.page_token, "/ads/restore", &[("source", source)], "Restore");
            }
            h.push_str("</li>");
        }
        for site_name in &snap.trusted {
            let _ = write!(h, "<li>trusted site <code>{}</code></li>", html_escape(site_name));
        }
        h.push_str("</ul>");
    }
    let active = shared.shopping.active();
    if !active.is_empty() {
        h.push_str("<h2>Shopping mode</h2><ul>");
        for (s, left) in active {
            let _ = write!(h, "<li>{}: {} min left</li>", html_escape(&s), left.as_secs() / 60 + 1);
        }
        h.push_str("</ul>");
    }
    let (b, a) = policy.rule_counts();
    let _ = write!(
        h,
        "<h2>The proxy</h2><p>Listening on <code>{local}</code>. PAC file: <a href=\"/proxy.pac\">/proxy.pac</a>. {b} surveillance rules, {a} ad rules.</p><details><summary>Lists</summary><ul>"
    );
    for src in &policy.sources {
        let _ = write!(
            h,
            "<li>{} <small>({}, {} entries)</small></li>",
            html_escape(&src.name),
            src.kind.as_str(),
            src.rules
        );
    }
    h.push_str("</ul>");
    for sub in shared.lists.summaries() {
        let _ = write!(h, "<p><small>subscription {}: {}</small></p>", html_escape(&sub.name), html_escape(&sub.state));
    }
    h.push_str("</details>");
    if admin {
        let _ = write!(
            h,
            "<form method=\"post\" action=\"/shopping\"><input type=\"hidden\" name=\"token\" value=\"{}\">Let <input name=\"site\" placeholder=\"shop.example\"> keep its shopping cookies for <input name=\"minutes\" value=\"60\" size=\"4\"> minutes <button>Start</button></form>",
            shared.page_token
        );
    }
    h.push_str(super::receipt_page::LIVE_SCRIPT);
    h.push_str("</body></html>\n");
    text(StatusCode::OK, "text/html; charset=utf-8", h)
}

/// "This browser": whether its traffic goes through nostalk (this page came through its proxy
/// setting), whether it trusts the CA (an image from https://nostalk.internal/, whose
/// certificate the CA signs, loads or not), and how to install the CA on each system, as
/// mitm.it does.
fn this_browser(h: &mut String, proxied: bool, intercepting: bool) {
    h.push_str("<h2>This browser</h2>");
    if proxied {
        h.push_str("<p id=\"through\" class=\"ok\">&#10003; This page came through nostalk: this browser's web traffic goes through it.</p>");
    } else {
        h.push_str("<p id=\"through\" class=\"b\">This page was opened directly, not through the proxy, so this browser's traffic may not go through nostalk. Set its proxy (or the PAC file above), then open <a href=\"http://nostalk.internal/\">http://nostalk.internal/</a>: that name answers only through nostalk.</p>");
    }
    if !intercepting {
        return;
    }
    if proxied {
        h.push_str("<p id=\"ca\">Checking whether this browser trusts nostalk's CA&hellip;</p>\
<img id=\"ca-probe\" src=\"https://nostalk.internal/ca-check.gif\" alt=\"\" width=\"1\" height=\"1\">\
<script>(function(){var p=document.getElementById('ca-probe'),c=document.getElementById('ca');\
function say(ok){c.className=ok?'ok':'b';c.textContent=ok?'\\u2713 This browser trusts nostalk\\'s CA: HTTPS pages are cleaned too.':'This browser does not trust nostalk\\'s CA yet: HTTPS pages will show certificate errors. Install it as below.';}\
if(p.complete&&p.naturalWidth){say(true);}else{p.onload=function(){say(true)};p.onerror=function(){say(false)};}})();</script>");
    }
    h.push_str("<details><summary>Install nostalk's CA</summary><p>Download it: <a href=\"/ca.pem\">nostalk-ca.pem</a> (computers) or <a href=\"/ca.crt\">nostalk-ca.crt</a> (phones, Windows). Anyone holding its key can read your HTTPS traffic; it never leaves this machine.</p><dl>\
<dt>Windows</dt><dd>Open nostalk-ca.crt, <i>Install Certificate</i>, <i>Current User</i>, <i>Place all certificates in the following store</i>: <i>Trusted Root Certification Authorities</i>. Or: <code>certutil -user -addstore Root nostalk-ca.crt</code></dd>\
<dt>macOS</dt><dd><code>security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db nostalk-ca.pem</code>, or open it in Keychain Access and set <i>Always Trust</i>.</dd>\
<dt>Debian, Ubuntu</dt><dd><code>sudo cp nostalk-ca.pem /usr/local/share/ca-certificates/nostalk-ca.crt &amp;&amp; sudo update-ca-certificates</code>; Chromium and Chrome on Linux read their own store: <code>certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n nostalk -i nostalk-ca.pem</code></dd>\
<dt>Firefox (every system)</dt><dd>Settings, <i>Privacy &amp; Security</i>, <i>View Certificates</i>, <i>Authorities</i>, <i>Import</i>, and tick <i>Trust this CA to identify websites</i>.</dd>\
<dt>iPhone, iPad</dt><dd>Open nostalk-ca.crt in Safari, then <i>Settings, General, VPN &amp; Device Management</i> to install it, and <i>Settings, General, About, Certificate Trust Settings</i> to turn full trust on.</dd>\
<dt>Android</dt><dd><i>Settings, Security, Encryption &amp; credentials, Install a certificate, CA certificate</i>, and pick nostalk-ca.crt. Apps other than the browser may keep trusting only their own CAs.</dd>\
</dl></details>");
}
