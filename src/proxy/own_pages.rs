//! Requests addressed to the proxy itself: who may see which of its pages, and the narrow view
//! each page gets of the shared state. The pages are rendered in respond/pages.rs; the controls
//! that change the person's choices are proxy/controls.rs.
//!
//! Every answer refuses to be framed (`X-Frame-Options: DENY`, `frame-ancestors 'none'`).
//!
//! Who may see what: the health checks, the PAC file and the CA for every client that may
//! connect; the receipt (`/`, `/site`, `/events`) for `[access] allow` clients; `/metrics` and
//! the controls for `[admin] allow` clients (with `[admin] token` when set). With `[auth]`, the
//! receipt and the controls also need the proxy's credentials, and a user reads only their own
//! receipt; an admin reads the whole.

use crate::base::Body;
use crate::ops::auth::Who;
use crate::proxy::controls;
use crate::proxy::service::ClientBody;
use crate::proxy::state::Shared;
use crate::receipt::Receipt;
use crate::respond::failure::Failure;
use crate::respond::pages::{self, MetricsView, ProxyView, ReceiptView};
use http::{header, Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Who is asking, as the pages tell clients apart.
#[derive(Clone, Copy)]
struct Asker<'a> {
    ip: std::net::IpAddr,
    user: bool,
    admin: bool,
    /// Whose own choices the asker's page shows and its controls change ([`Shared::person_scope`]).
    scope: Option<&'a str>,
}

/// Answer a request to the proxy's own pages. `proxied`: the browser sent it through its
/// proxy setting (not straight to the listen address).
pub async fn serve(
    shared: &Shared,
    req: Request<ClientBody>,
    peer: SocketAddr,
    local: SocketAddr,
    proxied: bool,
    tunnel_who: Option<Arc<Who>>,
) -> Response<Body> {
    let ip = peer.ip();
    let asker = Asker {
        ip,
        user: shared.access.is_user(ip),
        admin: shared.access.is_admin(ip, req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())),
        scope: None,
    };
    let (receipt, scope) = match readers_receipt(shared, &req, asker, proxied, tunnel_who).await {
        Ok(r) => r,
        Err(mut denied) => {
            not_framed(denied.headers_mut());
            return denied;
        }
    };
    let asker = Asker { scope: scope.as_deref(), ..asker };
    let answer = if req.method() == Method::POST && controls::is_control(req.uri().path()) {
        controls::serve(shared, req, asker.admin, ip, asker.scope).await
    } else {
        page(shared, &req, asker, local, proxied, &receipt)
    };
    let mut answer = answer.unwrap_or_else(Failure::answer);
    not_framed(answer.headers_mut());
    answer
}

/// The receipt the asker may read. Without `[auth]`, the whole one (for the clients the
/// access lists let read it). With `[auth]`, the receipt pages and the controls need the same
/// credentials as the proxy (through the proxy setting, `Proxy-Authorization`; asked for
/// straight, `Authorization`): an admin then reads the whole receipt, a user only their own.
/// With it, whose own choices the asker has ([`Shared::person_scope`]).
async fn readers_receipt(
    shared: &Shared,
    req: &Request<ClientBody>,
    asker: Asker<'_>,
    proxied: bool,
    tunnel_who: Option<Arc<Who>>,
) -> Result<(Arc<Receipt>, Option<String>), Response<Body>> {
    let path = req.uri().path();
    if !(matches!(path, "/" | "/site" | "/events") || controls::is_control(path)) {
        return Ok((shared.receipt.clone(), None));
    }
    let Some(auth) = &shared.auth else {
        // Each device of a household reads its own sites; the admins read every device's.
        let receipt = match shared.own_receipt(None, asker.ip) {
            Some(own) if !asker.admin => own,
            _ => shared.receipt.clone(),
        };
        return Ok((receipt, shared.person_scope(None, asker.ip)));
    };
    let who = match tunnel_who {
        Some(who) => Some(who),
        None => {
            let h = req.headers();
            let given = if proxied { h.get(header::PROXY_AUTHORIZATION) } else { h.get(header::AUTHORIZATION) };
            auth.check(given, Some(asker.ip)).await
        }
    };
    match who {
        Some(who) if asker.admin => Ok((shared.receipt.clone(), shared.person_scope(Some(&who), asker.ip))),
        Some(who) => Ok((shared.user_receipts.of(&who.user), shared.person_scope(Some(&who), asker.ip))),
        None => {
            let (failure, challenge) = if proxied {
                (Failure::AuthRequired, header::PROXY_AUTHENTICATE)
            } else {
                (Failure::SignInRequired, header::WWW_AUTHENTICATE)
            };
            let mut r = failure.answer();
            if let Some(v) = auth.challenge() {
                r.headers_mut().insert(challenge, v);
            }
            Err(r)
        }
    }
}

/// No other page may frame the proxy's own: a site that framed the receipt invisibly over a
/// decoy could have a real click press one of its controls.
fn not_framed(h: &mut http::HeaderMap) {
    h.insert(header::X_FRAME_OPTIONS, http::HeaderValue::from_static("DENY"));
    h.append(header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static("frame-ancestors 'none'"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
}

/// The pages a GET (or HEAD) reads.
fn page(
    shared: &Shared,
    req: &Request<ClientBody>,
    asker: Asker<'_>,
    local: SocketAddr,
    proxied: bool,
    receipt: &Receipt,
) -> Result<Response<Body>, Failure> {
    let path = req.uri().path();
    let reader = asker.user || asker.admin;
    let get = req.method() == Method::GET;
    let head = req.method() == Method::HEAD;
    match path {
        "/" if (get || head) && reader => {
            let page = query_value(req, "page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let choices = askers_choices(shared, asker);
            let view = receipt_view(shared, receipt, &choices, asker);
            let policy = shared.policy.load();
            let subscriptions = shared.lists.summaries();
            let proxy = ProxyView {
                policy: &policy,
                subscriptions: &subscriptions,
                local,
                intercepting: shared.ca.is_some(),
                via_pac: shared.pac_clients.has(asker.ip),
            };
            Ok(pages::status_page(&view, &proxy, proxied, page))
        }
        "/proxy.pac" | "/wpad.dat" if get || head => {
            if shared.config.receipt.per_person {
                shared.pac_clients.saw(asker.ip);
            }
            Ok(pages::pac(req.headers(), local, shared.config.server.pac_fallback))
        }
        "/ca.pem" | "/ca.crt" if get || head => {
            pages::ca(shared.ca.as_ref().map(|ca| ca.cert_pem.as_str()), path == "/ca.crt")
        }
        "/metrics" if get && asker.admin => Ok(metrics(shared)),
        "/metrics" if get => Err(Failure::ForOperators {
            what: "/metrics",
            ip: asker.ip,
            token: shared.access.admin_address(asker.ip),
        }),
        "/healthz" if get => Ok(pages::text(StatusCode::OK, "text/plain", "ok\n")),
        // Loaded by the status page over https://nostalk.internal/: it loads only when the
        // browser trusts the CA that signed nostalk's certificate for that name.
        "/ca-check.gif" if get => {
            Ok(pages::text(StatusCode::OK, "image/gif", crate::respond::blocked::TRANSPARENT_GIF))
        }
        "/readyz" if get => Ok(if shared.ready.load(Ordering::SeqCst) {
            // A shared store that does not answer is no reason to leave the balancer: the
            // choices last read stay in force. The detail says so.
            match shared.choices.health().filter(|h| !h.is_up()) {
                Some(h) => pages::text(
                    StatusCode::OK,
                    "text/plain",
                    format!(
                        "ready; the choices store is unreachable ({}): the choices last read are in force\n",
                        h.error().unwrap_or_default()
                    ),
                ),
                None => pages::text(StatusCode::OK, "text/plain", "ready\n"),
            }
        } else {
            pages::text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n")
        }),
        "/events" if get && reader => {
            let watcher = pages::Watcher::join(&shared.watchers, shared.config.receipt.max_watchers).ok_or(
                Failure::TooMany("Too many receipt pages are open for live updates; close one, or reload later."),
            )?;
            Ok(pages::events(receipt, shared.shutdown.subscribe(), watcher))
        }
        "/site" if get && reader => {
            let choices = askers_choices(shared, asker);
            pages::site_fragment(
                &receipt_view(shared, receipt, &choices, asker),
                &query_value(req, "name").unwrap_or_default(),
            )
        }
        // As before the move: HEAD of the live pages is a 405, not a refusal.
        "/" if get || head => Err(Failure::NotServed(asker.ip)),
        "/events" | "/site" if get => Err(Failure::NotServed(asker.ip)),
        _ if is_own_path(path) => Err(Failure::MethodNotAllowed),
        _ => Err(Failure::NotFound(
            "This is nostalk, a proxy. Its pages are /, /proxy.pac (also /wpad.dat), /ca.pem, /metrics, /healthz and /readyz.",
        )),
    }
}

/// The paths the proxy answers, with some method.
pub(crate) fn is_own_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/proxy.pac"
            | "/wpad.dat"
            | "/ca.pem"
            | "/ca.crt"
            | "/ca-check.gif"
            | "/metrics"
            | "/healthz"
            | "/readyz"
            | "/events"
            | "/site"
    ) || controls::is_control(path)
}

fn receipt_view<'a>(
    shared: &'a Shared,
    receipt: &'a Receipt,
    choices: &'a crate::policy::overlay::PersonChoices,
    asker: Asker<'_>,
) -> ReceiptView<'a> {
    let admin = asker.admin;
    let whose = match (&shared.auth, shared.config.receipt.per_person, admin) {
        (None, true, true) => Some(
            "You see the sites of every device that browses through this proxy, and your controls change the \
             whole household's choices; each other device sees only its own sites, and its controls change it alone."
                .to_string(),
        ),
        (None, true, false) => Some(format!(
            "This receipt shows only this device's sites ({}), and its controls (shopping mode, trust, down-votes) \
             change this device alone. The household's operators ([admin] allow) see every device and set the \
             household's choices.",
            crate::ops::access::unmap(asker.ip)
        )),
        (Some(_), _, true) => Some("You see every user's sites.".to_string()),
        (Some(_), _, false) => Some(
            "Your own sites only; your controls (shopping mode, trust, down-votes) change your own choices, \
             which follow you to every gateway that shares this one's store."
                .to_string(),
        ),
        (None, false, _) => None,
    };
    let may_change = admin || asker.scope.is_some();
    let devices = if admin && shared.per_device() { devices(shared) } else { Vec::new() };
    let household = shared.choices.snapshot();
    ReceiptView { receipt, choices, token: &shared.page_token, may_change, operator: admin, household, whose, devices }
}

/// Each device that browsed through a household's proxy, with the name the DHCP server has
/// for it (`[receipt] leases`), for the operators' page.
fn devices(shared: &Shared) -> Vec<pages::Device> {
    const SITES_SHOWN: usize = 12;
    let names = crate::ops::leases::file(shared.config.receipt.leases.as_deref())
        .map(|f| crate::ops::leases::names(&f))
        .unwrap_or_default();
    let prefix = crate::proxy::state::DEVICE_KEY_PREFIX;
    shared
        .user_receipts
        .with_prefix(prefix)
        .into_iter()
        .map(|(key, r)| {
            let address = key[prefix.len()..].to_string();
            let name = address.parse().ok().and_then(|ip: std::net::IpAddr| names.get(&ip).cloned());
            let (sites, total) = r.page(0, SITES_SHOWN);
            pages::Device {
                address,
                name,
                sites: sites.into_iter().map(|(s, _)| s).collect(),
                more: total.saturating_sub(SITES_SHOWN),
            }
        })
        .collect()
}

/// The choices the asker's page shows and its controls change: the household's for the
/// operators, a device's own elsewhere on a household proxy.
fn askers_choices(shared: &Shared, asker: Asker<'_>) -> Arc<crate::policy::overlay::PersonChoices> {
    match asker.scope {
        Some(scope) if !asker.admin => shared.choices.of(crate::ops::choices::Scope::Device(scope)),
        _ => shared.choices.snapshot(),
    }
}

fn metrics(shared: &Shared) -> Response<Body> {
    let (policy, subscriptions, choices) = (shared.policy.load(), shared.lists.summaries(), shared.choices.snapshot());
    let view = MetricsView {
        metrics: &shared.metrics,
        policy: &policy,
        subscriptions: &subscriptions,
        receipt: &shared.receipt,
        choices: &choices,
        open_connections: shared.conns.open(),
        store: shared.choices.health().map(|h| &**h),
    };
    pages::text(StatusCode::OK, "text/plain; version=0.0.4", pages::metrics(&view))
}

/// A query parameter's value.
fn query_value(req: &Request<ClientBody>, key: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}
