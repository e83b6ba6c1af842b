//! The proxy's own pages as answers: the privacy receipt and the proxy's status (`/`, rendered
//! with receipt_page.rs), one site's section (`/site?name=`), the live `/events` stream, the
//! PAC file, the CA, `/metrics` and the health checks. Each takes a narrow view of what it shows
//! ([`ReceiptView`], [`ProxyView`], [`MetricsView`]); who may see which page, and the controls
//! that change the person's choices, are proxy/own_pages.rs and proxy/controls.rs. What the
//! pages render is capped, so no table makes a page without bound.

use super::failure::Failure;
use super::html_escape;
use crate::base::{full, Body};
use crate::policy::overlay::PersonChoices;
use crate::policy::subscribe::SubSummary;
use crate::policy::Policy;
use crate::receipt::Receipt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A plain answer of the proxy's own, never cached.
pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// What the receipt's pages show, and whether this client may use the controls.
pub struct ReceiptView<'a> {
    pub receipt: &'a Receipt,
    pub choices: &'a PersonChoices,
    /// The secret the controls' forms carry.
    pub token: &'a str,
    /// The asker may use the controls (for the household, or for its own device).
    pub may_change: bool,
    /// The asker is an operator: the household's controls (a learned tracker's "Not a tracker").
    pub operator: bool,
    /// The household's choices, whose learned trackers every receipt names.
    pub household: std::sync::Arc<PersonChoices>,
    /// Who sees what, in a sentence, where the receipt is split by device or user.
    pub whose: Option<String>,
    /// For the operators of a household's proxy: each device, with its sites.
    pub devices: Vec<Device>,
}

/// A device on the operators' page: its name (from the DHCP leases) or address, and its sites.
pub struct Device {
    pub address: String,
    pub name: Option<String>,
    pub sites: Vec<String>,
    pub more: usize,
}

impl ReceiptView<'_> {
    fn controls(&self) -> super::receipt_page::Controls<'_> {
        super::receipt_page::Controls {
            token: self.token,
            may_change: self.may_change,
            operator: self.operator,
            choices: self.choices,
            household: &self.household,
        }
    }
}

/// What the status part of `/` shows of the proxy.
pub struct ProxyView<'a> {
    pub policy: &'a Policy,
    pub subscriptions: &'a [SubSummary],
    pub local: SocketAddr,
    pub intercepting: bool,
    /// This client fetched the PAC file from this proxy (kept only where client addresses are).
    pub via_pac: bool,
}

/// What only a scrape of `/metrics` reads.
pub struct MetricsView<'a> {
    pub metrics: &'a crate::ops::metrics::Metrics,
    pub policy: &'a Policy,
    pub subscriptions: &'a [SubSummary],
    pub receipt: &'a Receipt,
    pub choices: &'a PersonChoices,
    pub open_connections: usize,
    /// A shared choices store's state (None for a SQLite file).
    pub store: Option<&'a crate::ops::choices::Health>,
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
pub fn metrics(v: &MetricsView) -> String {
    use crate::policy::lists::Origin;
    let lists: Vec<_> = v
        .policy
        .sources
        .iter()
        .map(|s| {
            let age = match &s.origin {
                Origin::Embedded => None,
                Origin::Path(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()),
                Origin::Url(_) => v.subscriptions.iter().find(|x| x.name == s.name).and_then(|x| x.age),
            };
            (s.name.clone(), s.kind.as_str(), s.rules, age)
        })
        .collect();
    let mut out = v.metrics.render(&crate::ops::metrics::Scrape {
        receipt_dropped: v.receipt.dropped.load(std::sync::atomic::Ordering::Relaxed),
        open_connections: v.open_connections,
        removal_kinds: crate::exchange::Kind::ALL.map(crate::exchange::Kind::as_str),
        lists: &lists,
    });
    subscription_metrics(&mut out, v.subscriptions);
    ad_source_metrics(&mut out, v.receipt, v.choices);
    out.push_str("# HELP nostalk_learned_trackers Third parties learned as trackers (no list names them; they tried to identify the browser on several sites).\n# TYPE nostalk_learned_trackers gauge\n");
    let learned = v.choices.learned.values().filter(|s| !s.is_empty()).count();
    let _ = writeln!(out, "nostalk_learned_trackers {learned}");
    if let Some(store) = v.store {
        out.push_str("# HELP nostalk_choices_store_up Whether the shared choices store answers (1); while it does not (0), the choices last read stay in force.\n# TYPE nostalk_choices_store_up gauge\n");
        let _ = writeln!(out, "nostalk_choices_store_up {}", u8::from(store.is_up()));
    }
    out
}

/// Each subscribed list: whether a copy is in force, its failed downloads, and the last
/// failure's reason (a label of an info-style gauge, present only while the list is failing),
/// so an alert can say which list and why.
fn subscription_metrics(out: &mut String, subscriptions: &[crate::policy::subscribe::SubSummary]) {
    let label = crate::ops::metrics::escape;
    out.push_str("# HELP nostalk_list_subscription_in_force Whether a subscribed list has a copy in force (1) or none yet (0).\n# TYPE nostalk_list_subscription_in_force gauge\n");
    for s in subscriptions {
        let _ =
            writeln!(out, "nostalk_list_subscription_in_force{{list=\"{}\"}} {}", label(&s.name), u8::from(s.in_force));
    }
    out.push_str("# HELP nostalk_list_subscription_failures_total Failed downloads of a subscribed list since start.\n# TYPE nostalk_list_subscription_failures_total counter\n");
    for s in subscriptions {
        let _ = writeln!(out, "nostalk_list_subscription_failures_total{{list=\"{}\"}} {}", label(&s.name), s.failures);
    }
    out.push_str("# HELP nostalk_list_subscription_error 1 while a subscribed list's last download failed, with the reason.\n# TYPE nostalk_list_subscription_error gauge\n");
    for s in subscriptions {
        if let Some(e) = &s.last_error {
            let _ = writeln!(
                out,
                "nostalk_list_subscription_error{{list=\"{}\",error=\"{}\"}} 1",
                label(&s.name),
                label(e)
            );
        }
    }
}

/// Per ad source: requests shown de-identified and blocked as down-voted, and the down-votes,
/// so Prometheus sums them across replicas. Sources are registrable domains (bounded in
/// number by the receipt); a label value is escaped all the same.
fn ad_source_metrics(out: &mut String, receipt: &Receipt, choices: &PersonChoices) {
    let label = crate::ops::metrics::escape;
    out.push_str("# HELP nostalk_ad_source_requests_total Ad requests per ad source: shown de-identified (ad) or blocked as down-voted.\n# TYPE nostalk_ad_source_requests_total counter\n");
    for (source, a) in receipt.ad_sources() {
        let source = label(&source);
        let _ = writeln!(out, "nostalk_ad_source_requests_total{{source=\"{source}\",verdict=\"ad\"}} {}", a.shown);
        let _ = writeln!(
            out,
            "nostalk_ad_source_requests_total{{source=\"{source}\",verdict=\"downvoted\"}} {}",
            a.downvoted
        );
    }
    out.push_str("# HELP nostalk_ad_source_downvotes Down-votes per ad source, as kept in the choices store.\n# TYPE nostalk_ad_source_downvotes gauge\n");
    for (source, votes) in &choices.downvotes {
        let _ = writeln!(out, "nostalk_ad_source_downvotes{{source=\"{}\"}} {votes}", label(source));
    }
}

/// The CA certificate to install: `.crt` with the type phones and Windows open as a CA.
pub fn ca(pem: Option<&str>, crt: bool) -> Result<Response<Body>, Failure> {
    let Some(pem) = pem else {
        return Err(Failure::NotFound("Interception is off, so there is no CA to install."));
    };
    let (content_type, disposition) = if crt {
        ("application/x-x509-ca-cert", "attachment; filename=\"nostalk-ca.crt\"")
    } else {
        ("application/x-pem-file", "attachment; filename=\"nostalk-ca.pem\"")
    };
    let mut r = text(StatusCode::OK, content_type, pem.to_string());
    r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(disposition));
    Ok(r)
}

/// The PAC file (also served as `/wpad.dat`, for automatic proxy discovery) names the address
/// this client reached the proxy on (its Host when that is an address, else the socket's local
/// address), never `0.0.0.0` or `[::]`. The LAN stays direct: plain host names, `.local`,
/// `.lan`, `.home.arpa` and `.internal` names (but the proxy's own `nostalk.internal`), and
/// address literals in the private, shared, link-local and loopback ranges, IPv4 and IPv6.
/// Names are never resolved in the PAC file (`isInNet` is only given literals): the browser
/// would otherwise look up every host itself, outside the proxy's DNS. With `pac_fallback =
/// "none"` (the default) a browser whose proxy is down gets no web rather than the web
/// without protection.
pub fn pac(headers: &http::HeaderMap, local: SocketAddr, fallback: crate::config::PacFallback) -> Response<Body> {
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
    let body = PAC_TEMPLATE.replace("PROXY_LINE", &format!("PROXY {addr}{direct}"));
    text(StatusCode::OK, "application/x-ns-proxy-autoconfig", body)
}

const PAC_TEMPLATE: &str = r#"// nostalk proxy auto-configuration: the web through nostalk, the LAN direct.
function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (host === "nostalk.internal") return "PROXY_LINE";
  // An IPv6 literal has no dot: it is no plain host name.
  var v6 = host.replace(/^\[|\]$/g, "");
  if (v6.indexOf(":") >= 0)
    return (v6 === "::1" || /^f[cd]/.test(v6) || /^fe[89ab]/.test(v6)) ? "DIRECT" : "PROXY_LINE";
  if (isPlainHostName(host) || host === "localhost" || dnsDomainIs(host, ".local") ||
      dnsDomainIs(host, ".lan") || dnsDomainIs(host, ".home.arpa") || dnsDomainIs(host, ".internal"))
    return "DIRECT";
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host) &&
      (isInNet(host, "10.0.0.0", "255.0.0.0") || isInNet(host, "172.16.0.0", "255.240.0.0") ||
       isInNet(host, "192.168.0.0", "255.255.0.0") || isInNet(host, "100.64.0.0", "255.192.0.0") ||
       isInNet(host, "169.254.0.0", "255.255.0.0") || isInNet(host, "127.0.0.0", "255.0.0.0")))
    return "DIRECT";
  return "PROXY_LINE";
}
"#;

/// 303 back to the receipt, at the site's section.
pub fn back_to(site: &str, said: String) -> Response<Body> {
    let mut r = text(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", said);
    let to = format!("/#{}", super::receipt_page::section_id(site));
    // The id is made of [A-Za-z0-9_-] only: a valid header value.
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/")));
    r
}

/// The operators' list of devices: who browsed what, by name where the DHCP server knows one.
fn devices(h: &mut String, devices: &[Device]) {
    if devices.is_empty() {
        return;
    }
    h.push_str("<h2>Devices</h2><ul id=\"device-list\">");
    for d in devices {
        let _ = match &d.name {
            Some(name) => write!(h, "<li class=\"device\"><b>{}</b> ({})", html_escape(name), html_escape(&d.address)),
            None => write!(h, "<li class=\"device\"><b>{}</b>", html_escape(&d.address)),
        };
        let sites: Vec<String> = d.sites.iter().map(|s| html_escape(s)).collect();
        let _ = write!(h, ": {}", if sites.is_empty() { "no sites yet".to_string() } else { sites.join(", ") });
        if d.more > 0 {
            let _ = write!(h, " and {} more", d.more);
        }
        h.push_str("</li>");
    }
    h.push_str("</ul>");
}

/// Server-sent events: the name of each site whose receipt changed, as it changes, and a
/// comment every 15 s to keep the connection open; ends when the proxy shuts down.
pub fn events(receipt: &Receipt, stop: tokio::sync::watch::Receiver<bool>, watcher: Watcher) -> Response<Body> {
    use futures_util::StreamExt;
    use http_body::Frame;
    let rx = receipt.subscribe();
    let state = (rx, stop, true, watcher);
    let stream = futures_util::stream::unfold(state, |(mut rx, mut stop, first, watcher)| async move {
        if first {
            return Some((
                bytes::Bytes::from_static(b"retry: 2000\n: nostalk receipt\n\n"),
                (rx, stop, false, watcher),
            ));
        }
        if *stop.borrow() {
            return None;
        }
        let chunk = tokio::select! {
            got = rx.recv() => match got {
                Ok(site) => changed_sites(&mut rx, site),
                // Missed some: the page has every site anyway after its next fetches.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => bytes::Bytes::from_static(b": lagged\n\n"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep(Duration::from_secs(15)) => bytes::Bytes::from_static(b": keep-alive\n\n"),
            _ = stop.changed() => return None,
        };
        Some((chunk, (rx, stop, false, watcher)))
    });
    let body = http_body_util::StreamBody::new(stream.map(|b| Ok::<_, crate::base::BoxError>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One live receipt stream's place among `[receipt] max_watchers`; given back when the stream
/// ends.
pub struct Watcher(Arc<AtomicUsize>);

impl Watcher {
    /// A place, when fewer than `max` streams are open.
    pub fn join(open: &Arc<AtomicUsize>, max: usize) -> Option<Watcher> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Watcher(open.clone()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sites changed since the last event: the one just heard, and any others already
/// waiting, each named once (a page that loads fifty things names its site once).
fn changed_sites(rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>, first: Arc<str>) -> bytes::Bytes {
    let mut sites = vec![first];
    while let Ok(site) = rx.try_recv() {
        if sites.len() < 64 && !sites.contains(&site) {
            sites.push(site);
        }
    }
    let mut out = String::new();
    for site in sites {
        out.push_str("event: site\ndata: ");
        out.push_str(&site.replace(['\n', '\r'], ""));
        out.push_str("\n\n");
    }
    bytes::Bytes::from(out)
}

/// One site's section alone, for the page's live updates.
pub fn site_fragment(v: &ReceiptView, name: &str) -> Result<Response<Body>, Failure> {
    let r = v.receipt.site(name).ok_or(Failure::NotFound("No receipt for that site."))?;
    let mut h = String::with_capacity(2048);
    super::receipt_page::site_section(&mut h, name, &r, v.receipt.per_person(), &v.controls());
    Ok(text(StatusCode::OK, "text/html; charset=utf-8", h))
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

/// `/`: this browser's state, the receipt (one page of sites), the person's choices and the
/// proxy's lists.
pub fn status_page(v: &ReceiptView, proxy: &ProxyView, proxied: bool, page: usize) -> Response<Body> {
    let mut h = String::with_capacity(16384);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>nostalk: your receipt</title><style>{STYLE}</style></head><body>"
    );
    h.push_str("<h1>nostalk</h1><p>What each site you visit tried, and what it got.</p>");
    this_browser(&mut h, proxied, proxy.intercepting);
    if proxied && proxy.via_pac {
        h.push_str("<p id=\"via-pac\" class=\"b\">This browser found nostalk through its PAC file. If nostalk is not running, a browser set by PAC file cannot fetch it and goes direct: pages load with every tracker in them, without a word. The manual proxy setting fails closed instead: pages stop until nostalk is back.</p>");
    }
    other_devices(&mut h, proxy.local);
    devices(&mut h, &v.devices);
    receipt_sites(&mut h, v, page);
    if !v.receipt.per_person() {
        ad_sources(&mut h, v.receipt);
    }
    choices(&mut h, v);
    shopping(&mut h, v.choices);
    the_proxy(&mut h, proxy);
    if v.may_change {
        let _ = write!(
            h,
            "<form method=\"post\" action=\"/shopping\"><input type=\"hidden\" name=\"token\" value=\"{}\">Let <input name=\"site\" placeholder=\"shop.example\"> keep its shopping cookies for <input name=\"minutes\" value=\"60\" size=\"4\"> minutes <button>Start</button></form>",
            v.token
        );
    }
    h.push_str(super::receipt_page::LIVE_SCRIPT);
    h.push_str("</body></html>\n");
    text(StatusCode::OK, "text/html; charset=utf-8", h)
}

/// One page of the receipt's sites, newest first, with links to the others.
fn receipt_sites(h: &mut String, v: &ReceiptView, page: usize) {
    let (sites, total) = v.receipt.page((page.max(1) - 1) * SITES_PER_PAGE, SITES_PER_PAGE);
    let live = page <= 1;
    h.push_str("<h2>Your receipt</h2>");
    if let Some(whose) = &v.whose {
        let _ = write!(h, "<p id=\"whose\">{}</p>", super::html_escape(whose));
    }
    let _ = write!(h, "<div id=\"sites\" data-live=\"{}\">", if live { 1 } else { 0 });
    if sites.is_empty() {
        h.push_str("<p id=\"no-sites\">Nothing yet: browse a little through nostalk and come back (this page updates itself).</p>");
    }
    let controls = v.controls();
    for (site_name, r) in &sites {
        super::receipt_page::site_section(h, site_name, r, v.receipt.per_person(), &controls);
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
}

/// A gateway that keeps totals only: the ad sources and what each got.
fn ad_sources(h: &mut String, receipt: &Receipt) {
    h.push_str(
        "<h2>Ad sources</h2><p><small>This gateway keeps totals only: no client, no page address.</small></p><ul>",
    );
    for (source, a) in receipt.ad_sources().iter().take(100) {
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

/// The person's down-votes and trusted sites, with a restore button for each down-vote.
fn choices(h: &mut String, v: &ReceiptView) {
    let snap = v.choices;
    if snap.downvotes.is_empty() && snap.trusted.is_empty() {
        return;
    }
    h.push_str("<h2>Your choices</h2><ul class=\"choices\">");
    for (source, votes) in &snap.downvotes {
        let state = if snap.is_downvoted(source) { "blocked (down-voted)" } else { "shown" };
        let _ = write!(h, "<li>ad source <code>{}</code>: {votes} down-vote(s), {state} ", html_escape(source));
        if v.may_change {
            super::receipt_page::form(h, v.token, "/ads/restore", &[("source", source)], "Restore");
        }
        h.push_str("</li>");
    }
    for site_name in &snap.trusted {
        let _ = write!(h, "<li>trusted site <code>{}</code></li>", html_escape(site_name));
    }
    h.push_str("</ul>");
}

/// The shopping switches on now, with the minutes each has left.
fn shopping(h: &mut String, choices: &PersonChoices) {
    let mut active: Vec<_> = choices.shopping.keys().filter_map(|s| Some((s, choices.shopping_left(s)?))).collect();
    if active.is_empty() {
        return;
    }
    active.sort();
    h.push_str("<h2>Shopping mode</h2><ul>");
    for (s, left) in active {
        let _ = write!(h, "<li>{}: {} min left</li>", html_escape(s), left.div_ceil(60));
    }
    h.push_str("</ul>");
}

/// The proxy: where it listens, the rules and lists in force, the subscriptions' state.
fn the_proxy(h: &mut String, p: &ProxyView) {
    let (b, a) = p.policy.rule_counts();
    let _ = write!(
        h,
        "<h2>The proxy</h2><p>Listening on <code>{}</code>. PAC file: <a href=\"/proxy.pac\">/proxy.pac</a>. {b} surveillance rules, {a} ad rules.</p><details><summary>Lists</summary><ul>",
        p.local
    );
    for src in &p.policy.sources {
        let _ = write!(
            h,
            "<li>{} <small>({}, {} entries)</small></li>",
            html_escape(&src.name),
            src.kind.as_str(),
            src.rules
        );
    }
    h.push_str("</ul>");
    for sub in p.subscriptions {
        let _ = write!(h, "<p><small>subscription {}: {}</small></p>", html_escape(&sub.name), html_escape(&sub.state));
    }
    h.push_str("</details>");
}

/// "This browser": whether its traffic goes through nostalk (this page came through its proxy
/// setting), whether it trusts the CA (an image from https://nostalk.internal/, whose
/// certificate the CA signs, loads or not), and how to install the CA on each system, as
/// mitm.it does.
/// How to set up a phone or another device, with this proxy's address.
fn other_devices(h: &mut String, local: SocketAddr) {
    let _ = write!(
        h,
        "<details id=\"devices\"><summary>Set up a phone or another device</summary><dl>\
<dt>Manual proxy (fails closed)</dt><dd>Wi-Fi settings of the network, <i>Proxy</i>, <i>Manual</i>: server <code>{ip}</code>, port <code>{port}</code>. On iPhone: <i>Settings, Wi-Fi, (i), Configure Proxy, Manual</i>; on Android: <i>Wi-Fi, the network, Edit, Advanced, Proxy, Manual</i>.</dd>\
<dt>Automatic (PAC)</dt><dd>The same place, <i>Automatic</i> (iPhone) or <i>Proxy Auto-Config</i> (Android): <code>http://{local}/proxy.pac</code>. The local network stays direct; when nostalk is down the device goes direct too.</dd>\
</dl><p>Then install the CA below on that device.</p></details>",
        ip = local.ip(),
        port = local.port()
    );
}

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
<dt>Debian, Ubuntu</dt><dd><code>sudo cp nostalk-ca.pem /usr/local/share/ca-certificates/nostalk-ca.crt &amp;&amp; sudo update-ca-certificates</code>; Chromium and Chrome on Linux read their own store (a fresh profile has none yet: <code>mkdir -p $HOME/.pki/nssdb &amp;&amp; certutil -N -d sql:$HOME/.pki/nssdb --empty-password</code> first): <code>certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n nostalk -i nostalk-ca.pem</code></dd>\
<dt>Firefox (every system)</dt><dd>Settings, <i>Privacy &amp; Security</i>, <i>View Certificates</i>, <i>Authorities</i>, <i>Import</i>, and tick <i>Trust this CA to identify websites</i>.</dd>\
<dt>iPhone, iPad</dt><dd>Open nostalk-ca.crt in Safari, then <i>Settings, General, VPN &amp; Device Management</i> to install it, and <i>Settings, General, About, Certificate Trust Settings</i> to turn full trust on.</dd>\
<dt>Android</dt><dd><i>Settings, Security, Encryption &amp; credentials, Install a certificate, CA certificate</i>, and pick nostalk-ca.crt. Apps other than the browser may keep trusting only their own CAs.</dd>\
</dl></details>");
}
