//! The listener: binds the address, builds the shared state once, accepts connections (checking
//! access first, registering each in the connection table), serves each with hyper's auto
//! HTTP/1.1 + HTTP/2 builder until it ends or no request has used it for the idle timeout, and
//! shuts down gracefully: on the shutdown signal `/readyz` turns 503, it stops accepting, lets
//! in-flight connections finish up to the grace deadline, and returns.

use crate::config::Config;
use crate::policy::{subscribe::Subscriptions, Policy};
use crate::proxy::{limits, service, upstream};
use crate::{ops, receipt, tls, Shared};
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("certificate authority in {dir}: {source}")]
    Ca { dir: std::path::PathBuf, source: tls::TlsError },
    #[error("upstream trust roots: {0}")]
    Roots(tls::TlsError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Bind and build everything a request needs; nothing is served until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let listen = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;

        let ca = if config.intercept.enabled {
            let dir = config.ca_dir();
            let (ca, created) = tls::CertificateAuthority::load_or_create(&dir)
                .map_err(|source| StartError::Ca { dir: dir.clone(), source })?;
            if created {
                info!(dir = %dir.display(), "created a local CA; trust {} in your browser (or open http://{listen}/ca.pem through the proxy)", dir.join(tls::CA_CERT_FILE).display());
            } else {
                info!(cert = %dir.join(tls::CA_CERT_FILE).display(), "using the local CA");
            }
            Some(Arc::new(ca))
        } else {
            None
        };
        let client_tls = tls::upstream_client_config(&config.upstream.extra_roots).map_err(StartError::Roots)?;
        let dialer = upstream::Dialer::new(&config, client_tls);
        let upstream_client = upstream::Upstream::new(&config, dialer.clone());
        let lists = Arc::new(Subscriptions::new(&config));
        let policy = Policy::build(&config, &lists.loaded())?;
        ops::return_free_memory();
        limits::raise_fd_limit();
        let shared = Arc::new(Shared {
            access: ops::access::Access::new(&config),
            policy: ArcSwap::from_pointee(policy),
            ca,
            dialer,
            upstream: upstream_client,
            listen,
            metrics: ops::metrics::Metrics::default(),
            receipt: receipt::Receipt::new(),
            shopping: Default::default(),
            lists,
            timeouts: limits::Timeouts::new(&config),
            conns: limits::ConnTable::new(config.server.max_connections),
            page_token: crate::respond::pages::new_token(),
            shutdown: tokio::sync::watch::channel(false).0,
            tasks: tokio_util::task::TaskTracker::new(),
            config,
            ready: std::sync::atomic::AtomicBool::new(true),
        });
        Ok(Server { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serve until `shutdown` completes, then drain for up to `[server] shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared } = self;
        crate::policy::subscribe::spawn_refresher(shared.clone());
        let grace = shared.config.server.shutdown_grace.get();
        let idle = shared.timeouts.idle;
        let builder = Arc::new(auto_builder());
        info!(listen = %shared.listen, "nostalk is listening; PAC file at http://{}/proxy.pac", shared.listen);
        tokio::pin!(shutdown);
        let mut conn_id: u64 = 0;
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment, never spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            conn_id += 1;
            if !shared.access.allows(peer.ip()) {
                shared.metrics.inc(&shared.metrics.denied);
                shared.tasks.spawn(service::deny(stream, peer));
                continue;
            }
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(shared.listen);
            shared.metrics.inc(&shared.metrics.connections);
            let activity = Arc::new(limits::Activity::default());
            let svc = service::ProxyService::new(shared.clone(), peer, local, None, activity.clone());
            let io = TokioIo::new(shared.conns.admit(stream));
            let builder = builder.clone();
            let mut stop = shared.shutdown.subscribe();
            // DEBUG spans only: an INFO span is entered and left on every poll of the
            // connection (a quarter of the throughput, measured); INFO events name what they
            // are about themselves.
            let span = tracing::debug_span!("conn", id = conn_id);
            shared.tasks.spawn(
                async move {
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    if let Err(e) = drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                .instrument(span),
            );
        }
        shared.ready.store(false, std::sync::atomic::Ordering::SeqCst);
        drop(listener);
        let _ = shared.shutdown.send(true);
        shared.tasks.close();
        info!(grace = ?grace, "shutting down: no new connections, waiting for in-flight requests");
        tokio::select! {
            _ = shared.tasks.wait() => info!("all connections closed"),
            _ = tokio::time::sleep(grace) => warn!("grace period over; closing remaining connections"),
        }
    }
}

/// Drive one served connection to its end; when no request has used it for `idle`, or the
/// server is shutting down, it is closed gracefully (requests in flight finish first).
pub async fn drive<C, E>(
    conn: C,
    activity: &limits::Activity,
    idle: Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    graceful: fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let idle_close = tokio::select! {
        r = conn.as_mut() => return r,
        _ = activity.quiet_for(idle) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    graceful(conn.as_mut());
    if !idle_close {
        // Shutting down: the server's grace period bounds the drain.
        return conn.await;
    }
    // An idle connection gets as long again to close; a client that never answers the
    // HTTP/2 goodbye (its ping) is dropped after that.
    tracing::debug!(?idle, "closing an idle connection");
    match tokio::time::timeout(idle.min(Duration::from_secs(30)), conn.as_mut()).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// hyper's server for a connection whose protocol its first bytes tell (the listener, and
/// plain HTTP inside a tunnel): HTTP/1.1 with keep-alive, HTTP/2 with extended CONNECT, both
/// with a timer for their header and keep-alive timeouts.
pub fn auto_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).keep_alive(true).max_headers(MAX_HEADERS);
    h2_limits(builder.http2().timer(hyper_util::rt::TokioTimer::new()).enable_connect_protocol());
    builder
}

/// Request headers a client may send on HTTP/1.1: a browser with many cookies and client
/// hints sends 60 or more; past this a request gets 431.
pub const MAX_HEADERS: usize = 200;

/// HTTP/2 limits for client connections: a header list as large as browsers send (64 KB,
/// hyper's default is 16 KB), and keep-alive pings that find a peer that went away while
/// its streams were open.
/// (The auto builder's HTTP/2 side and hyper's own HTTP/2 builder, for intercepted
/// connections, are different types; both take these.)
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

pub fn h2_limits<E>(h2: &mut hyper_util::server::conn::auto::Http2Builder<'_, E>) {
    h2.max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
}
