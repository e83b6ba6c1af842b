//! The proxy's own pages, for requests addressed to the proxy itself: `/` (status and the
//! privacy receipt), `/proxy.pac`, `/ca.pem`, `/metrics`, `/healthz`, `/readyz`, and the
//! controls `POST /shopping` (the per-site shopping switch) and `POST /lists/refresh`
//! (download the subscribed lists now).
//!
//! Who may see what: the health checks, the PAC file and the CA for every client that may
//! connect; the receipt for `[access] allow` clients; `/metrics` and the controls for
//! `[admin] allow` clients (with `[admin] token` when set). A control is a POST that must
//! carry the token the proxy's own page put in its form, and come same-origin
//! (`Sec-Fetch-Site`, `Origin`): a page on another site cannot flip a switch through the
//! proxy, even with a form or a `text/plain` fetch a browser sends without preflight. What
//! the pages render is capped, so no table makes a page without bound.

use super::{error_page, html_escape};
use crate::policy::{site, Verdict};
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
    shared.metrics.render(&crate::ops::metrics::Scrape {
        receipt_dropped: shared.receipt.dropped.load(Ordering::Relaxed),
        open_connections: shared.conns.open(),
        removal_kinds: crate::exchange::Kind::ALL.map(crate::exchange::Kind::as_str),
        lists: &lists,
    })
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
        (&Method::POST, "/shopping" | "/lists/refresh") if admin => match control_form(shared, req).await {
            Ok(form) if path == "/shopping" => shopping(shared, &form),
            Ok(_) => refresh_lists(shared).await,
            Err(refused) => refused,
        },
        (&Method::POST, "/shopping") => forbidden("The shopping switch"),
        (&Method::POST, "/lists/refresh") => forbidden("Refreshing the lists"),
        (
            _,
            "/" | "/proxy.pac" | "/ca.pem" | "/ca.crt" | "/ca-check.gif" | "/metrics" | "/healthz" | "/readyz"
            | "/shopping" | "/lists/refresh",
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
fn shopping(shared: &Shared, form: &[u8]) -> Response<Body> {
    let mut site_name = None;
    let mut minutes = 60u64;
    for (k, v) in url::form_urlencoded::parse(form) {
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
    if !shared.shopping.set(&s, Duration::from_secs(minutes.min(7 * 24 * 60) * 60)) {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Too many sites are in shopping mode; switch one off first.",
        );
    }
    tracing::info!(site = %s, minutes, "shopping switch set");
    let mut r = text(StatusCode::SEE_OTHER, "text/plain", format!("{s}: shopping for {minutes} minutes\n"));
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

/// Sites shown on one page of the receipt.
const SITES_PER_PAGE: usize = 50;

fn status_page(shared: &Shared, local: SocketAddr, admin: bool, proxied: bool, page: usize) -> Response<Body> {
    let policy = shared.policy.load();
    let mut h = String::with_capacity(8192);
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>nostalk</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.2em .5em;border-bottom:1px solid #eee;vertical-align:top}.b{color:#b00}.ok{color:#070}.a{color:#a60}small{color:#777}</style></head><body>");
    let _ = write!(
        h,
        "<h1>nostalk</h1><p>Listening on <code>{local}</code>. PAC file: <a href=\"/proxy.pac\">/proxy.pac</a>."
    );
    if shared.ca.is_some() {
        h.push_str(" Looking inside HTTPS: install the <a href=\"/ca.pem\">CA certificate</a> in your browser.</p>");
    } else {
        h.push_str(" HTTPS is tunnelled untouched (interception is off).</p>");
    }
    this_browser(&mut h, proxied, shared.ca.is_some());
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
    h.push_str("<h2>Shopping</h2>");
    if admin {
        let _ = write!(
            h,
            "<form method=\"post\" action=\"/shopping\"><input type=\"hidden\" name=\"token\" value=\"{}\">Let <input name=\"site\" placeholder=\"shop.example\"> keep its shopping cookies for <input name=\"minutes\" value=\"60\" size=\"4\"> minutes <button>Start</button></form>",
            shared.page_token
        );
    }
    h.push_str("<ul>");
    for (s, left) in shared.shopping.active() {
        let _ = write!(h, "<li>{}: {} min left</li>", html_escape(&s), left.as_secs() / 60 + 1);
    }
    h.push_str("</ul><h2>Receipt</h2><p>What each site tried, and what got through.</p><table><tr><th>site</th><th>blocked</th><th>ads, de-identified</th><th>removed from its pages</th></tr>");
    let (sites, total) = shared.receipt.page((page.max(1) - 1) * SITES_PER_PAGE, SITES_PER_PAGE);
    for (site_name, r) in sites {
        let mut blocked = String::new();
        let mut ads = String::new();
        for ((host, verdict), n) in &r.requests {
            let line = format!("{} ×{n}<br>", html_escape(host));
            match verdict {
                Verdict::Block => blocked.push_str(&line),
                _ => ads.push_str(&line),
            }
        }
        if r.other_hosts > 0 {
            let _ = write!(blocked, "<small>and {} requests to other hosts</small>", r.other_hosts);
        }
        let removed: String = r.removed.iter().map(|(k, n)| format!("{k} ×{n}<br>")).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"b\">{blocked}</td><td class=\"a\">{ads}</td><td>{removed}</td></tr>",
            html_escape(&site_name)
        );
    }
    h.push_str("</table>");
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
