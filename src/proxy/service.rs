//! The per-connection service: takes each request a client sends and routes it to one of three
//! places: CONNECT handling, the proxy's own pages (origin-form requests, or host
//! `nostalk.localhost`), or forwarding. Inside an intercepted CONNECT the same service runs
//! with the tunnel's host, so requests there are forwarded to that host over TLS.

use crate::proxy::{connect, forward};
use crate::respond::{self, pages};
use crate::{Body, Shared};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tracing::Instrument;

pub const LOCAL_HOST: &str = "nostalk.localhost";

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
        let (scheme, default_port) = if tls { (Scheme::HTTPS, 443) } else { (Scheme::HTTP, 80) };
        let authority = if port == default_port { host.parse() } else { format!("{host}:{port}").parse() };
        Tunnel { scheme, authority: authority.ok() }
    }

    /// The absolute URL of a request made inside the tunnel.
    fn uri(&self, req: &Uri) -> Result<Uri, String> {
        let authority = self.authority.clone().ok_or("the tunnel's host is not a valid authority")?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        parts.path_and_query = Some(req.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
        Uri::from_parts(parts).map_err(|e| format!("cannot make a URL of this request: {e}"))
    }
}

#[derive(Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tunnel: Option<Arc<Tunnel>>,
}

impl ProxyService {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, tunnel: Option<Arc<Tunnel>>) -> Self {
        ProxyService { shared, peer, tunnel }
    }
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        let id = this.shared.metrics.count_request();
        let span = tracing::info_span!("req", id, method = %req.method(), host = tracing::field::Empty, verdict = tracing::field::Empty);
        Box::pin(async move { Ok(this.handle(req, id).await) }.instrument(span))
    }
}

/// Where a request goes.
enum Route {
    Connect,
    Local,
    Upstream(Uri),
    Bad(String),
}

impl ProxyService {
    async fn handle(self, req: Request<Incoming>, id: u64) -> Response<Body> {
        match self.route(&req) {
            Route::Connect => connect::handle(self.shared, req, self.peer).await,
            Route::Local => pages::serve(&self.shared, req).await,
            Route::Upstream(uri) => forward::forward(&self.shared, req, uri, self.peer, id).await,
            Route::Bad(why) => {
                tracing::info!(reason = %why, "bad request");
                respond::error_page(StatusCode::BAD_REQUEST, "Bad Request", &why)
            }
        }
    }

    fn route(&self, req: &Request<Incoming>) -> Route {
        if req.method() == Method::CONNECT {
            return if self.tunnel.is_some() {
                Route::Bad("CONNECT inside a tunnel is not supported".into())
            } else {
                Route::Connect
            };
        }
        if let Some(t) = &self.tunnel {
            return match t.uri(req.uri()) {
                Ok(uri) => Route::Upstream(uri),
                Err(why) => Route::Bad(why),
            };
        }
        let uri = req.uri();
        match (uri.scheme_str(), uri.host()) {
            (Some("http") | Some("https") | Some("ws") | Some("wss"), Some(host)) => {
                if self.is_us(host, uri.port_u16()) {
                    Route::Local
                } else {
                    Route::Upstream(uri.clone())
                }
            }
            (Some(other), _) => Route::Bad(format!("the scheme `{other}` is not proxied")),
            (None, _) => Route::Local,
        }
    }

    fn is_us(&self, host: &str, port: Option<u16>) -> bool {
        if host.eq_ignore_ascii_case(LOCAL_HOST) {
            return true;
        }
        let listen = self.shared.listen;
        port.unwrap_or(80) == listen.port()
            && (host.parse::<std::net::IpAddr>().ok() == Some(listen.ip())
                || (listen.ip().is_loopback() && host.eq_ignore_ascii_case("localhost")))
    }
}

/// Answer a client that the access list refuses: 403 to each request, then close.
pub async fn deny(stream: tokio::net::TcpStream, peer: SocketAddr) {
    tracing::info!(peer = %peer, "refused a client outside [access] allow");
    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
        let mut r = respond::error_page(StatusCode::FORBIDDEN, "Forbidden", "This proxy does not serve your address.");
        r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        Ok::<_, Infallible>(r)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
}
