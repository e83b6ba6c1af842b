//! Reaching an upstream: host names resolved through `[upstream] resolve` first, then our own
//! resolver (hickory, asking `[upstream] dns` or the system's servers, with the system's
//! getaddrinfo as the fallback when no `dns` is set); the CNAME chain a name resolves through,
//! for uncloaking (the answers are cached, addresses and chain alone and bounded in bytes, so
//! the lookup the connection makes next is free and no hostile answer is held whole);
//! every address passed through destination filtering; TCP within the connect
//! timeout; rustls verifying against webpki roots plus `[upstream] extra_roots`. The one
//! dialer every upstream connection and tunnel goes through (the pooled client, `h2pool`,
//! CONNECT).
//!
//! The connector is written here (not hyper-rustls's) because resolve overrides map
//! host *and port* to an address and port, which hyper-util's resolver interface cannot express.

use crate::config::{Config, ResolveEntry};
use crate::proxy::destination::{Destinations, Refused};
use crate::proxy::parent::Parent;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
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

/// Host → what it resolved to, bounded by the bytes it holds.
type NameCache = quick_cache::sync::Cache<String, Resolved, ResolvedBytes, foldhash::fast::RandomState>;

/// A host's answer as the dialer keeps it: its addresses and the CNAME chain it went through.
#[derive(Clone)]
struct Resolved {
    until: std::time::Instant,
    addrs: Arc<[std::net::IpAddr]>,
    chain: Arc<[String]>,
}

/// The names cache holds at most this many bytes: a hostile zone's chains (60 KB each) cannot
/// make it grow past it, however many names are asked for.
const NAME_CACHE_BYTES: u64 = 1 << 20;
/// At most this many names of a chain are kept and checked: real chains have a handful, a
/// longer one is a hostile zone's, and its first names are the ones a tracker hides behind.
pub const MAX_CHAIN: usize = 16;
/// At most this many addresses of a name are kept.
const MAX_ADDRS: usize = 16;

/// A cached answer's weight: the bytes of its host, addresses and names.
#[derive(Clone)]
struct ResolvedBytes;

impl quick_cache::Weighter<String, Resolved> for ResolvedBytes {
    fn weight(&self, host: &String, r: &Resolved) -> u64 {
        64 + host.len() as u64 + 16 * r.addrs.len() as u64 + r.chain.iter().map(|n| 32 + n.len() as u64).sum::<u64>()
    }
}

/// Name overrides and how to reach an upstream.
#[derive(Clone)]
pub struct Dialer {
    resolve: Arc<Vec<ResolveEntry>>,
    dns: Arc<TokioResolver>,
    /// `[upstream] dns` is set: its answer is final (no getaddrinfo fallback).
    dns_only: bool,
    /// Each host's answer (addresses and CNAME chain), as last looked up: most requests go to
    /// a host asked for a moment ago, and the answer then costs a hash lookup instead of a
    /// resolver query. The resolver keeps no cache of its own: a whole answer (a hostile
    /// zone's 60 KB of chain) is never held, only what is kept here.
    names: Arc<NameCache>,
    destinations: Arc<Destinations>,
    connect_timeout: Duration,
    tls: TlsConnector,
    /// `[upstream] proxy`: the parent the connections it covers go through.
    parent: Option<Arc<Parent>>,
}

impl Dialer {
    pub fn new(cfg: &Config, tls: rustls::ClientConfig) -> Dialer {
        let resolve = cfg.resolve_entries();
        let (dns, dns_only) = crate::proxy::resolver::build(cfg, &resolve, &tls);
        Dialer {
            parent: Parent::new(cfg, &resolve).map(Arc::new),
            resolve: Arc::new(resolve),
            dns: Arc::new(dns),
            dns_only,
            names: Arc::new(quick_cache::sync::Cache::with(
                4096,
                NAME_CACHE_BYTES,
                ResolvedBytes,
                foldhash::fast::RandomState::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            )),
            destinations: Arc::new(Destinations::new(cfg)),
            connect_timeout: cfg.upstream.connect_timeout.get(),
            tls: TlsConnector::from(Arc::new(tls)),
        }
    }

    /// The addresses for host:port, overrides first, and among them only those destination
    /// filtering lets through (a refusal is an `io::Error` carrying [`Refused`]).
    pub async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = if let Some(addr) = ResolveEntry::pinned(&self.resolve, host, port) {
            vec![addr]
        } else if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            match self.resolved(host).await {
                Ok(r) => r.addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                Err(e) if self.dns_only => return Err(io::Error::new(io::ErrorKind::NotFound, e)),
                // The system's resolver knows what ours may not (/etc/hosts in nsswitch, mDNS,
                // numeric forms like 2130706433, which destination filtering then judges).
                Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
            }
        };
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")));
        }
        self.destinations.filter(addrs).map_err(|r| io::Error::new(io::ErrorKind::PermissionDenied, r))
    }

    /// The names `host` resolves through (its CNAME chain, in order), none for an override
    /// or an address. A failed lookup has no chain: the connection reports the failure.
    pub async fn cnames(&self, host: &str) -> Arc<[String]> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_ok() || ResolveEntry::names(&self.resolve, host) {
            return Arc::from([]);
        }
        // A name the parent resolves is never looked up here (no query leaves for it).
        if self.parent.as_ref().is_some_and(|p| p.covers(host, None)) {
            return Arc::from([]);
        }
        match self.resolved(host).await {
            Ok(r) => r.chain,
            Err(_) => Arc::from([]),
        }
    }

    /// `host`'s answer, from the cache while it is fresh (its TTL, at most [`NAME_MEMORY`]),
    /// else from the resolver. Only its first addresses and names are kept.
    async fn resolved(&self, host: &str) -> Result<Resolved, hickory_resolver::ResolveError> {
        let now = std::time::Instant::now();
        if let Some(r) = self.names.get(host) {
            if r.until > now {
                return Ok(r);
            }
        }
        // Boxed: the resolver's future is large, and most requests find the answer known.
        let lookup = Box::pin(self.dns.lookup_ip(host)).await?;
        let chain: Arc<[String]> = lookup
            .as_lookup()
            .records()
            .iter()
            .filter_map(|r| match r.data() {
                RData::CNAME(target) => Some(target.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .take(MAX_CHAIN)
            .collect();
        let addrs: Arc<[std::net::IpAddr]> = lookup.iter().take(MAX_ADDRS).collect();
        let until = lookup.valid_until().min(now + NAME_MEMORY);
        let r = Resolved { until, addrs, chain };
        self.names.insert(host.to_string(), r.clone());
        Ok(r)
    }

    /// What to ask the parent for, when it covers `host`: the name as it is (the parent
    /// resolves it), or the address it is written as or pinned to by `[upstream] resolve`
    /// (which destination filtering judges first).
    fn through_parent(&self, parent: &Parent, host: &str, port: u16) -> io::Result<Option<(String, u16)>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let pinned = ResolveEntry::pinned(&self.resolve, host, port)
            .or_else(|| host.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, port)));
        if !parent.covers(host, pinned.map(|a| a.ip())) {
            return Ok(None);
        }
        match pinned {
            Some(addr) => {
                let addr = self
                    .destinations
                    .filter(vec![addr])
                    .map_err(|r| io::Error::new(io::ErrorKind::PermissionDenied, r))?;
                // Filtering a single address leaves it or refuses: index 0 exists.
                Ok(Some((addr[0].ip().to_string(), addr[0].port())))
            }
            None => Ok(Some((host.to_string(), port))),
        }
    }

    /// For a plain `http` request to `host:port` that an HTTP parent covers: how it is sent
    /// (as a proxy request to the parent). None when it goes direct or through a SOCKS parent.
    pub fn plain_via_parent(&self, host: &str, port: u16) -> io::Result<Option<ViaParent>> {
        let Some(parent) = self.parent.as_deref() else { return Ok(None) };
        let Some(auth) = parent.forwards_plain() else { return Ok(None) };
        Ok(self.through_parent(parent, host, port)?.map(|(to, to_port)| ViaParent { to, to_port, auth }))
    }

    /// A connection to the parent proxy, for requests [`Dialer::plain_via_parent`] sends there.
    pub async fn to_parent(&self) -> io::Result<TokioIo<MaybeTls>> {
        let parent = self.parent.as_deref().ok_or_else(|| io::Error::other("no parent proxy"))?;
        match tokio::time::timeout(self.connect_timeout, parent.reach()).await {
            Ok(tcp) => Ok(TokioIo::new(MaybeTls::Plain(tcp?))),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "reaching the parent proxy timed out")),
        }
    }

    /// Whether an address written in the request itself may be reached (checked before a
    /// tunnel is opened, without a lookup).
    pub fn check_literal(&self, host: &str) -> Result<(), Refused> {
        match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            Ok(ip) => self.destinations.check(ip),
            Err(_) => Ok(()),
        }
    }

    /// A TCP connection to host:port, trying each address, within the connect timeout; or a
    /// tunnel to it through the parent proxy that covers it.
    pub async fn tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        if let Some(parent) = self.parent.as_deref() {
            if let Some((to, to_port)) = self.through_parent(parent, host, port)? {
                return match tokio::time::timeout(self.connect_timeout, parent.open(&to, to_port)).await {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("reaching {host}:{port} through the parent proxy timed out"),
                    )),
                };
            }
        }
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

/// A plain `http` request sent to an HTTP parent: its target as the parent is to reach it
/// (the address `[upstream] resolve` pins, or the name), and the parent's credentials.
pub struct ViaParent {
    pub to: String,
    pub to_port: u16,
    pub auth: Option<http::HeaderValue>,
}

/// How long a host's answer is taken as known at most (DNS answers of trackers' CNAMEs live
/// minutes; a changed chain is seen within this).
const NAME_MEMORY: Duration = Duration::from_secs(60);

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
