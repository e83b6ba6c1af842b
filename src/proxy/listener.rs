//! The listener: binds the address, builds the shared state once, accepts connections (checking
//! access first, registering each in the connection table), serves each with hyper's auto
//! HTTP/1.1 + HTTP/2 builder until it ends or no request has used it for the idle timeout, and
//! shuts down gracefully: on the shutdown signal `/readyz` turns 503 and open connections are
//! closed as their requests finish; while they drain (up to the grace deadline) the listener
//! still answers, 503 to all but `/healthz`, then it closes and `run` returns.

use crate::config::Config;
use crate::policy::subscribe::{self, Subscriptions};
use crate::policy::Policy;
use crate::proxy::state::Shared;
use crate::proxy::{dial, limits, reload, serve, service, socket, transparent, upstream};
use crate::{ops, tls};
use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
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
    #[error("[auth] users: {0}")]
    Auth(String),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
}

pub struct Server {
    listener: TcpListener,
    /// Another holder keeps the socket open (systemd, or SO_REUSEPORT): let go of it at once
    /// on shutdown instead of answering 503 on it.
    shared_socket: bool,
    shared: Arc<Shared>,
    /// The file SIGHUP re-reads; None when running on the embedded default.
    config_path: Option<std::path::PathBuf>,
    /// `[transparent]` listeners, for connections a firewall redirected.
    transparent: Vec<(TcpListener, transparent::Mode)>,
}

impl Server {
    /// Bind and build everything a request needs; nothing is served until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let addr = config.listen_addr();
        let socket::Listening { listener, shared: shared_socket } =
            socket::listen(&config).map_err(|source| StartError::Bind { addr, source })?;
        let listen = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let mut redirected = Vec::new();
        for (a, mode) in
            [(&config.transparent.http, transparent::Mode::Http), (&config.transparent.https, transparent::Mode::Https)]
        {
            if let Some(a) = a {
                // validate() checked it.
                let addr: SocketAddr = a.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
                let l = socket::bind_listener(addr, false).map_err(|source| StartError::Bind { addr, source })?;
                redirected.push((l, mode));
            }
        }

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
        let dialer = dial::Dialer::new(&config, client_tls);
        let upstream_client = upstream::Upstream::new(&config, dialer.clone());
        let lists = Arc::new(Subscriptions::new(&config));
        let policy = Policy::build(&config, &lists.loaded())?;
        ops::return_free_memory();
        let max_connections = limits::connection_limit(config.server.max_connections, limits::raise_fd_limit());
        let threshold = config.receipt.downvotes_to_block;
        let choices = match ops::choices::Choices::open(&config.store_path(), threshold) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the choices store: down-votes, shopping switches and sites trusted from the page last until the proxy stops");
                ops::choices::Choices::in_memory(threshold)
            }
        };
        let choices = Arc::new(choices);
        let shared = Arc::new(Shared {
            learner: crate::proxy::forward::learn::Learner::new(&config.learn, choices.clone()),
            access: ops::access::Access::new(&config),
            auth: ops::auth::Auth::new(&config).map_err(StartError::Auth)?.map(Arc::new),
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            policy_config: Arc::new(ArcSwap::from_pointee(config.clone())),
            groups: ArcSwap::from_pointee(ops::groups::Groups::new(&config)),
            ca,
            dialer,
            upstream: Arc::new(upstream_client),
            listen,
            metrics: Arc::default(),
            receipt: Arc::new(crate::receipt::Receipt::new(config.receipt.per_person)),
            user_receipts: crate::receipt::PerUser::default(),
            watchers: Arc::default(),
            config_tables: Default::default(),
            choices,
            passes: Default::default(),
            frames: Default::default(),
            pac_clients: Default::default(),
            lists,
            timeouts: limits::Timeouts::new(&config),
            conns: limits::ConnTable::new(max_connections),
            page_token: crate::respond::pages::new_token(),
            shutdown: tokio::sync::watch::channel(false).0,
            tasks: tokio_util::task::TaskTracker::new(),
            config,
            ready: std::sync::atomic::AtomicBool::new(true),
        });
        Ok(Server { listener, shared_socket, shared, config_path: None, transparent: redirected })
    }

    /// The config file to re-read on SIGHUP (without one, SIGHUP rebuilds the policy from
    /// the config in force, re-reading the list files it names).
    pub fn reload_from(mut self, path: &std::path::Path) -> Server {
        self.config_path = Some(path.to_path_buf());
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serve until `shutdown` completes, then drain for up to `[server] shutdown_grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared_socket, shared, config_path, transparent } = self;
        for (l, mode) in transparent {
            tokio::spawn(accept_redirected(shared.clone(), l, mode));
        }
        if let Some(path) = &config_path {
            reload::watch(shared.clone(), path.clone());
        }
        reload::on_sighup(shared.clone(), config_path);
        let swap = subscribe::PolicySwap { config: shared.policy_config.clone(), policy: shared.policy.clone() };
        subscribe::spawn_refresher(shared.lists.clone(), shared.upstream.clone(), swap);
        ops::choices::watch(shared.choices.clone(), &shared.tasks, shared.shutdown.subscribe());
        let grace = shared.config.server.shutdown_grace.get();
        let idle = shared.timeouts;
        let builder = Arc::new(serve::auto_builder());
        info!(listen = %shared.listen, "nostalk is listening; PAC file at http://{}/proxy.pac", shared.listen);
        tokio::pin!(shutdown);
        let mut conn_id: u64 = 0;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = next_connection(&listener) => accepted,
            };
            let Some((stream, local, peer)) = accepted.and_then(|(stream, peer)| let_in(&shared, stream, peer)) else {
                continue;
            };
            conn_id += 1;
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
                    let conn = builder.serve_connection_with_upgrades(io, svc.serving());
                    if let Err(e) = serve::drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                .instrument(span),
            );
        }
        if shared_socket {
            // The next process (or systemd, holding the socket) takes what arrives from now on.
            drop(listener);
            drain(None, &shared, grace).await;
        } else {
            drain(Some(listener), &shared, grace).await;
        }
    }
}

/// The next connection on `listener`; None after a failed accept, once a short pause has
/// passed (out of file descriptors and the like: never spin).
async fn next_connection(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// A connection let in, with the proxy's address it reached and its client's; None when
/// `[access]` refuses its client (answered 403 and closed, counted).
fn let_in(
    shared: &Shared,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(tokio::net::TcpStream, SocketAddr, SocketAddr)> {
    if !shared.access.allows(peer.ip()) {
        shared.metrics.inc(&shared.metrics.denied);
        shared.tasks.spawn(service::deny(stream, peer, shared.config.receipt.per_person));
        return None;
    }
    let _ = stream.set_nodelay(true);
    // On a dual-stack listener an IPv4 client comes as ::ffff:a.b.c.d: the pages and the PAC
    // file name the address as that client knows it.
    let (local, peer) = (unmapped(stream.local_addr().unwrap_or(shared.listen)), unmapped(peer));
    shared.metrics.inc(&shared.metrics.connections);
    Some((stream, local, peer))
}

/// Accept connections a firewall redirected to a `[transparent]` listener until shutdown.
async fn accept_redirected(shared: Arc<Shared>, listener: TcpListener, mode: transparent::Mode) {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, mode = ?mode, "taking redirected connections");
    }
    let mut stop = shared.shutdown.subscribe();
    if *stop.borrow() {
        return;
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = next_connection(&listener) => accepted,
        };
        let Some((stream, local, peer)) = accepted.and_then(|(stream, peer)| let_in(&shared, stream, peer)) else {
            continue;
        };
        let stream = shared.conns.admit(stream);
        let span = tracing::debug_span!("redirected", host = tracing::field::Empty);
        shared.tasks.spawn(transparent::serve(shared.clone(), stream, peer, local, mode).instrument(span));
    }
}

/// Shut down: `/readyz` turns 503 and open connections close as their requests finish. A
/// listener of this process's own stays open while they drain, so a load balancer's probe of
/// `/readyz` is answered 503 (the replica is leaving) rather than refused; then it closes.
async fn drain(listener: Option<TcpListener>, shared: &Shared, grace: Duration) {
    shared.ready.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = shared.shutdown.send(true);
    shared.tasks.close();
    info!(grace = ?grace, "shutting down: /readyz says 503, waiting for in-flight requests");
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shared.tasks.wait() => {
                info!("all connections closed");
                break;
            }
            _ = &mut deadline => {
                warn!("grace period over; closing remaining connections");
                break;
            }
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(draining(stream));
                }
            }
        }
    }
    drop(listener);
}

/// The next connection on `listener`; never, without one.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// A connection that arrives while the server drains: `/healthz` is still 200 (the process
/// is alive), everything else, `/readyz` first, is 503 with `Connection: close`.
async fn draining(stream: tokio::net::TcpStream) {
    let answer = |uri: &http::Uri| {
        let (status, text) = match uri.path() {
            "/healthz" => (http::StatusCode::OK, "ok\n"),
            _ => (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        };
        let mut r = http::Response::new(crate::base::full(text));
        *r.status_mut() = status;
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        r
    };
    serve::answer_and_close(stream, Duration::from_secs(5), answer).await;
}

fn unmapped(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(ops::access::unmap(a.ip()), a.port())
}
