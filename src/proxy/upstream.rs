//! The one upstream client: pooled, HTTP/1.1 and HTTP/2 chosen by ALPN (HTTPS origins that
//! speak h2 share one connection each, `h2pool`), rustls verifying against webpki roots plus
//! `[upstream] extra_roots`, host names resolved through `[upstream] resolve` first, then the
//! system resolver, with a connect timeout.
//!
//! The connector is written here (not hyper-rustls's) because resolve overrides map
//! host *and port* to an address and port, which hyper-util's resolver interface cannot express.

use crate::config::{Config, ResolveEntry};
use crate::proxy::destination::{Destinations, Refused};
use crate::proxy::h2pool::{self, H2Pool};
use crate::{Body, BoxError};
use http::header::UPGRADE;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Name overrides and how to reach an upstream.
#[derive(Clone)]
pub struct Dialer {
    resolve: Arc<Vec<ResolveEntry>>,
    destinations: Arc<Destinations>,
    connect_timeout: Duration,
    tls: TlsConnector,
}

impl Dialer {
    pub fn new(cfg: &Config, tls: rustls::ClientConfig) -> Dialer {
        Dialer {
            resolve: Arc::new(cfg.resolve_entries()),
            destinations: Arc::new(Destinations::new(cfg)),
            connect_timeout: cfg.upstream.connect_timeout.get(),
            tls: TlsConnector::from(Arc::new(tls)),
        }
    }

    /// The addresses for host:port, overrides first, and among them only those destination
    /// filtering lets through (a refusal is an `io::Error` carrying [`Refused`]).
    pub async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = if let Some(e) = self.resolve.iter().find(|e| e.port == port && e.host.eq_ignore_ascii_case(host)) {
            vec![e.addr]
        } else if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port)).await?.collect()
        };
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")));
        }
        self.destinations.filter(addrs).map_err(|r| io::Error::new(io::ErrorKind::PermissionDenied, r))
    }

    /// Whether an address written in the request itself may be reached (checked before a
    /// tunnel is opened, without a lookup).
    pub fn check_literal(&self, host: &str) -> Result<(), Refused> {
        match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            Ok(ip) => self.destinations.check(ip),
            Err(_) => Ok(()),
        }
    }

    /// A TCP connection to host:port, trying each address, within the connect timeout.
    pub async fn tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let addrs = self.lookup(host, port).await?;
        let attempt = async {
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::other("no address")))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {host}:{port} timed out"))),
        }
    }

    pub async fn connect(self, uri: http::Uri) -> io::Result<TokioIo<MaybeTls>> {
        let https = uri.scheme_str() == Some("https") || uri.scheme_str() == Some("wss");
        let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in URI"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = self.tcp(host, port).await?;
        if !https {
            return Ok(TokioIo::new(MaybeTls::Plain(tcp)));
        }
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(TokioIo::new(MaybeTls::Tls(Box::new(tls))))
    }
}

impl tower_service::Service<http::Uri> for Dialer {
    type Response = TokioIo<MaybeTls>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<MaybeTls>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A plain or TLS upstream stream.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// Whether ALPN chose HTTP/2 (for the pool and for `h2pool` alike).
    pub fn is_h2(&self) -> bool {
        matches!(self, MaybeTls::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }
}

impl Connection for MaybeTls {
    fn connected(&self) -> Connected {
        if self.is_h2() {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Where requests go upstream: HTTPS origins that speak h2 on one shared connection each
/// (`h2pool`), everything else through hyper-util's pooled client; and how long to wait for an
/// upstream's response head. Timeouts are read from config once, at start-up.
pub struct Upstream {
    client: Client<Dialer, Body>,
    h2: Arc<H2Pool>,
    pub response_timeout: Duration,
}

impl Upstream {
    pub fn new(cfg: &Config, dialer: Dialer) -> Upstream {
        let idle = cfg.upstream.idle_timeout.get();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(64)
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(dialer.clone());
        Upstream {
            client,
            h2: Arc::new(H2Pool::new(dialer, idle)),
            response_timeout: cfg.upstream.response_timeout.get(),
        }
    }

    /// Send a request (absolute URI) upstream.
    pub async fn request(&self, req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        let fast = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) && !req.headers().contains_key(UPGRADE);
        if let (true, Some(authority)) = (fast, req.uri().authority()) {
            if let h2pool::Route::H2(mut send) = self.h2.route(authority).await {
                match send.try_send_request(req).await {
                    Ok(resp) => return Ok(resp),
                    // Refused unsent (the connection was closing): the pool sends it, and the
                    // next request dials a new h2 connection.
                    Err(mut e) => match e.take_message() {
                        Some(req) => return Ok(self.client.request(req).await?),
                        None => return Err(e.into_error().into()),
                    },
                }
            }
        }
        Ok(self.client.request(req).await?)
    }

    /// How many HTTPS origins have a live shared h2 connection.
    pub fn h2_connections(&self) -> usize {
        self.h2.connections()
    }
}

/// Why an upstream request failed, in words for the error page, and which status to answer.
pub fn classify_error(err: &(dyn std::error::Error + 'static)) -> (http::StatusCode, String) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut reason = err.to_string();
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return (http::StatusCode::BAD_GATEWAY, format!("the server's certificate was not accepted: {tls}"));
        }
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return (http::StatusCode::FORBIDDEN, refused.to_string());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(refused) = io.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
                return (http::StatusCode::FORBIDDEN, refused.to_string());
            }
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return (http::StatusCode::BAD_GATEWAY, format!("the server's certificate was not accepted: {tls}"));
            }
            if io.kind() == io::ErrorKind::TimedOut {
                return (http::StatusCode::GATEWAY_TIMEOUT, io.to_string());
            }
            reason = io.to_string();
        }
        cur = e.source();
    }
    (http::StatusCode::BAD_GATEWAY, reason)
}
