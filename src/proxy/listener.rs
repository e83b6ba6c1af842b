//! The listener: binds the address, builds the shared state once, accepts connections (checking
//! access first), serves each with hyper's auto HTTP/1.1 + HTTP/2 builder, and shuts down
//! gracefully: on the shutdown signal it stops accepting, lets in-flight connections finish up
//! to the grace deadline, and returns.

use crate::config::Config;
use crate::policy::{subscribe::Subscriptions, Policy};
use crate::proxy::{service, upstream};
use crate::{ops, receipt, tls, Shared};
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
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
        let grace = shared.config.duration(&shared.config.server.shutdown_grace, Duration::from_secs(10));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                tokio::spawn(service::deny(stream, peer));
                continue;
            }
            let _ = stream.set_nodelay(true);
            shared.metrics.inc(&shared.metrics.connections);
            let svc = service::ProxyService::new(shared.clone(), peer, None);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let conn = graceful.watch(conn.into_owned());
            let span = tracing::info_span!("conn", id = conn_id, peer = %peer);
            tokio::spawn(
                async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                .instrument(span),
            );
        }
        drop(listener);
        shared.ready.store(false, std::sync::atomic::Ordering::SeqCst);
        info!(grace = ?grace, "shutting down: no new connections, waiting for in-flight requests");
        tokio::select! {
            _ = graceful.shutdown() => info!("all connections closed"),
            _ = tokio::time::sleep(grace) => warn!("grace period over; closing remaining connections"),
        }
    }
}

/// hyper's server for a connection whose protocol its first bytes tell (the listener, and
/// plain HTTP inside a tunnel): HTTP/1.1 with keep-alive, HTTP/2 with extended CONNECT, both
/// with a timer for their header and keep-alive timeouts.
pub fn auto_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).keep_alive(true);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).enable_connect_protocol();
    builder
}
