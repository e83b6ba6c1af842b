//! The per-connection service: takes each request a client sends and routes it to one of three
//! places: CONNECT handling, the proxy's own pages, or forwarding. The own pages answer only
//! requests addressed to the proxy by its own names (`nostalk.internal`, `nostalk.localhost`,
//! its listen address): an origin-form request whose Host is some other name reached the
//! proxy because that name resolves to it (DNS rebinding) and is refused, never served.
//! Inside an intercepted CONNECT the same service runs with the tunnel's host, so requests
//! there are forwarded to that host over TLS.

use crate::base::Body;
use crate::ops::auth::Who;
use crate::proxy::limits::{Activity, Timed};
use crate::proxy::state::Shared;
use crate::proxy::{connect, forward};
use crate::respond::failure::Failure;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tracing::Instrument;

/// The names the proxy answers for itself, whatever they resolve to.
pub const LOCAL_HOSTS: [&str; 2] = ["nostalk.internal", "nostalk.localhost"];

pub fn is_local_name(host: &str) -> bool {
    LOCAL_HOSTS.iter().any(|n| host.eq_ignore_ascii_case(n))
}

/// The host an intercepted (or plain-HTTP-in-CONNECT) tunnel was opened to: the scheme and
/// authority every request inside it is sent to, parsed once for the tunnel's life.
#[derive(Debug, Clone)]
pub struct Tunnel {
    scheme: Scheme,
    /// None when host:port is not a valid authority; each request then gets a 400.
    authority: Option<Authority>,
}

impl Tunnel {
    pub fn new(host: &str, port: u16, tls: bool) -> Tunnel {
        let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
        Tunnel { scheme, authority: tunnel_authority(host, port, tls) }
    }

    /// A tunnel to the proxy's own name.
    fn is_local(&self) -> bool {
        self.authority.as_ref().is_some_and(|a| is_local_name(a.host()))
    }

    /// The absolute URL of a request made inside the tunnel.
    fn uri(&self, req: &Uri) -> Result<Uri, String> {
        let authority = self.authority.clone().ok_or("the tunnel's host is not a valid authority")?;
        absolute(self.scheme.clone(), authority, req)
    }
}

/// The authority of the requests inside a tunnel to host:port (the port left out when it is
/// the scheme's own, as a browser writes the URL).
pub fn tunnel_authority(host: &str, port: u16, tls: bool) -> Option<Authority> {
    let default_port = if tls { 443 } else { 80 };
    let authority = if port == default_port { host.parse() } else { format!("{host}:{port}").parse() };
    authority.ok()
}

#[derive(Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The address the client reached the proxy on (for the PAC file's and pages' links).
    local: SocketAddr,
    tunnel: Option<Arc<Tunnel>>,
    /// The connection's clock of use (for the idle timeout).
    activity: Arc<Activity>,
    /// Inside an intercepted tunnel: who opened it (`[auth]`), for every request in it.
    who: Option<Arc<Who>>,
    /// A connection a firewall redirected here (`[transparent] http`): its requests are
    /// origin-form, for the host their Host header names.
    transparent: bool,
}

impl ProxyService {
    pub fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        local: SocketAddr,
        tunnel: Option<Arc<Tunnel>>,
        activity: Arc<Activity>,
    ) -> Self {
        ProxyService { shared, peer, local, tunnel, activity, who: None, transparent: false }
    }

    /// The service of a connection redirected here by a firewall.
    pub fn transparent(mut self) -> Self {
        self.transparent = true;
        self
    }

    /// The service of a tunnel opened by `who`.
    pub fn signed_in(mut self, who: Option<Arc<Who>>) -> Self {
        self.who = who;
        self
    }

    /// Who sent `req`: inside a tunnel, who opened it; otherwise from its credentials, when
    /// `[auth]` asks for them. `Err` is the 407 to answer with.
    async fn sign_in(&self, req: &Request<ClientBody>) -> Result<Option<Arc<Who>>, Response<Body>> {
        let Some(auth) = &self.shared.auth else { return Ok(None) };
        if self.tunnel.is_some() {
            return Ok(self.who.clone());
        }
        match auth.check(req.headers().get(http::header::PROXY_AUTHORIZATION), Some(self.peer.ip())).await {
            Some(who) => Ok(Some(who)),
            None => {
                let mut r = Failure::AuthRequired.answer();
                if let Some(v) = auth.challenge() {
                    r.headers_mut().insert(http::header::PROXY_AUTHENTICATE, v);
                }
                Err(r)
            }
        }
    }
}

/// A connection's service as hyper holds it. Each request clones this Arc, whose count only
/// this connection's requests touch; cloning the ProxyService itself would clone the shared
/// state's Arc, a cache line every thread's requests would write.
#[derive(Clone)]
pub struct Serving(Arc<ProxyService>);

impl ProxyService {
    pub fn serving(self) -> Serving {
        Serving(Arc::new(self))
    }
}

/// A client's request body, timed: each frame that arrives touches the connection's clock.
pub type ClientBody = Timed<Incoming>;

impl hyper::service::Service<Request<Incoming>> for Serving {
    type Response = Response<Timed<Body>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Timed<Body>>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // The exchange is in flight until both its bodies are done; their frames keep the
        // connection from going idle, however long they take.
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, Timed::new(body, self.0.activity.begin()));
        let answered = self.0.activity.begin();
        let this = self.0.clone();
        let id = this.shared.metrics.count_request();
        // A DEBUG span: at INFO, a span per request would cost its fields' formatting on every
        // request whether or not anything is logged; the INFO events name their host themselves.
        let span = tracing::debug_span!("req", id, method = %req.method(), host = tracing::field::Empty, verdict = tracing::field::Empty);
        let handled = async move { Ok(this.handle(req).await.map(|b| Timed::new(b, answered))) };
        // Each wrapping moves the whole future once more; at INFO the span is off.
        if span.is_disabled() {
            Box::pin(handled)
        } else {
            Box::pin(handled.instrument(span))
        }
    }
}

/// Where a request goes.
enum Route {
    Connect,
    Local,
    Upstream(Uri),
    /// Not served: a bad request, or not for this client.
    Fail(Failure),
}

impl ProxyService {
    async fn handle(self: Arc<Self>, req: Request<ClientBody>) -> Response<Body> {
        match self.route(&req) {
            Route::Connect => match self.sign_in(&req).await {
                // Boxed, like the pages below: the forwarding path is the one each request takes,
                // and the future of a request is as large as its largest branch.
                Ok(who) => Box::pin(connect::handle(self.shared.clone(), req, self.peer, self.local, who)).await,
                Err(challenge) => challenge,
            },
            Route::Local => {
                // Absolute-form, or inside a tunnel: the browser sent this through its proxy
                // setting, so its web traffic goes through nostalk.
                let proxied = self.tunnel.is_some() || req.uri().scheme().is_some();
                let who = self.who.clone();
                Box::pin(crate::proxy::own_pages::serve(&self.shared, req, self.peer, self.local, proxied, who)).await
            }
            Route::Upstream(uri) => match self.sign_in(&req).await {
                Ok(who) => forward::forward(&self.shared, req, uri, self.peer, who).await,
                Err(challenge) => challenge,
            },
            Route::Fail(failure) => failure.answer(),
        }
    }

    fn route(&self, req: &Request<ClientBody>) -> Route {
        let user = self.shared.access.is_user(self.peer.ip());
        if req.method() == Method::CONNECT {
            return if self.tunnel.is_some() {
                Route::Fail(Failure::BadRequest("CONNECT inside a tunnel is not supported".into()))
            } else if !user {
                Route::Fail(Failure::NotForwarded(self.peer.ip()))
            } else {
                Route::Connect
            };
        }
        if let Some(t) = &self.tunnel {
            // https://nostalk.internal/: the proxy's own pages, over its own certificate (the
            // status page loads one image this way to see whether the browser trusts the CA).
            if t.is_local() {
                return Route::Local;
            }
            return match t.uri(req.uri()) {
                Ok(uri) => Route::Upstream(uri),
                Err(why) => Route::Fail(Failure::BadRequest(why.into())),
            };
        }
        let uri = req.uri();
        match (uri.scheme_str(), uri.host()) {
            (Some("http") | Some("https") | Some("ws") | Some("wss"), Some(host)) => {
                if let Err(why) = valid_port(uri.authority()) {
                    return Route::Fail(Failure::BadRequest(why.into()));
                }
                if self.is_us(host, uri.port_u16()) {
                    Route::Local
                } else if !user {
                    Route::Fail(Failure::NotForwarded(self.peer.ip()))
                } else {
                    Route::Upstream(uri.clone())
                }
            }
            (Some(other), _) => Route::Fail(Failure::BadRequest(format!("the scheme `{other}` is not proxied").into())),
            (None, _) if self.transparent => self.transparent_route(req, user),
            (None, _) => match req.headers().get(http::header::HOST).map(|h| h.to_str()) {
                // HTTP/1.0 without a Host: only the proxy itself can be meant.
                None => Route::Local,
                Some(Ok(h)) if self.is_our_host_header(h) => Route::Local,
                Some(_) => Route::Fail(Failure::Refused(
                    "This is nostalk. Its pages answer only to its own names (nostalk.internal, or the address it listens on), not to a name that merely leads here.".into(),
                )),
            },
        }
    }

    /// An origin-form request on a redirected connection: for the host its Host names (the
    /// proxy's own pages only under the proxy's own names).
    fn transparent_route(&self, req: &Request<ClientBody>, user: bool) -> Route {
        let Some(Ok(authority)) = req.headers().get(http::header::HOST).map(|h| h.as_bytes().try_into()) else {
            return Route::Fail(Failure::BadRequest(
                "a request without a valid Host header cannot be forwarded".into(),
            ));
        };
        let authority: Authority = authority;
        if let Err(why) = valid_port(Some(&authority)) {
            return Route::Fail(Failure::BadRequest(why.into()));
        }
        if is_local_name(authority.host()) {
            return Route::Local;
        }
        if !user {
            return Route::Fail(Failure::NotForwarded(self.peer.ip()));
        }
        match absolute(Scheme::HTTP, authority, req.uri()) {
            Ok(uri) => Route::Upstream(uri),
            Err(why) => Route::Fail(Failure::BadRequest(why.into())),
        }
    }

    /// An absolute-form request to the proxy itself: one of its names (any port), or the
    /// address and port it listens on.
    fn is_us(&self, host: &str, port: Option<u16>) -> bool {
        if is_local_name(host) {
            return true;
        }
        let listen = self.shared.listen;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host.parse::<std::net::IpAddr>().ok().map(crate::ops::access::unmap);
        port.unwrap_or(80) == listen.port()
            && (ip.is_some_and(|ip| ip == listen.ip() || (listen.ip().is_unspecified() && ip == self.local.ip()))
                || (listen.ip().is_loopback() && host.eq_ignore_ascii_case("localhost")))
    }

    /// The Host of an origin-form request: the proxy's names, an address (a client that
    /// typed the address meant this machine), or `localhost`; never another name.
    fn is_our_host_header(&self, value: &str) -> bool {
        let Ok(authority) = value.parse::<Authority>() else { return false };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        is_local_name(host) || host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost")
    }
}

/// The absolute URL of an origin-form request sent to `authority` over `scheme`.
fn absolute(scheme: Scheme, authority: Authority, req: &Uri) -> Result<Uri, String> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(req.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    Uri::from_parts(parts).map_err(|e| format!("cannot make a URL of this request: {e}"))
}

/// A port that is there must be a number from 1 to 65535: `:99999` or `:abc` is a 400, never
/// quietly the scheme's default.
pub fn valid_port(authority: Option<&Authority>) -> Result<(), String> {
    let Some(a) = authority else { return Ok(()) };
    // Byte scans, not str patterns: this runs on every request.
    let s = a.as_str();
    let host_port = s.bytes().rposition(|b| b == b'@').map_or(s, |at| &s[at + 1..]);
    let port = match host_port.bytes().rposition(|b| b == b']') {
        Some(i) => host_port[i + 1..].strip_prefix(':'),
        None => host_port.bytes().position(|b| b == b':').map(|i| &host_port[i + 1..]),
    };
    match port {
        None | Some("") => Ok(()),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n != 0) => Ok(()),
        Some(p) => Err(format!("`{p}` is not a port (1 to 65535)")),
    }
}

/// Answer a client that the access list refuses: 403 to each request, then close.
pub async fn deny(stream: tokio::net::TcpStream, peer: SocketAddr, log_peer: bool) {
    if log_peer {
        tracing::info!(peer = %peer, "refused a client outside [access] allow");
    } else {
        tracing::info!("refused a client outside [access] allow");
    }
    let ip = peer.ip();
    let refuse =
        move |_: &Uri| crate::respond::error_page(StatusCode::FORBIDDEN, "Forbidden", &Failure::NotServed(ip).detail());
    crate::proxy::serve::answer_and_close(stream, std::time::Duration::from_secs(10), refuse).await;
}

#[cfg(test)]
mod tests {
    use super::valid_port;

    #[test]
    fn ports_out_of_range_or_not_numbers_are_refused() {
        let check = |s: &str| valid_port(Some(&s.parse().unwrap()));
        assert!(check("a.test").is_ok());
        assert!(check("a.test:8080").is_ok());
        assert!(check("[::1]:443").is_ok());
        assert!(check("user:pw@a.test:81").is_ok());
        assert!(check("a.test:99999").is_err());
        assert!(check("a.test:0").is_err());
        assert!(check("[::1]:70000").is_err());
    }
}
