//! CONNECT: only to `[intercept] connect_ports`, to a host name or an address destination
//! filtering allows (else 403); a blocked host is refused at once (403); a host on the passthrough list, a trusted
//! site, or every host when interception is off, is tunnelled byte for byte; all others are
//! intercepted: the client's TLS is terminated with a leaf minted for the host (ALPN h2 and
//! http/1.1), and the requests inside are served by the same service as plain ones. A client
//! that speaks plain HTTP inside the tunnel (ws:// through CONNECT) is served without TLS.
//! Every wait is bounded: the client's first bytes and TLS handshake by
//! `[server] handshake_timeout`, an intercepted connection by the idle timeout, a tunnel by
//! `[server] tunnel_idle_timeout`.

use crate::base::{empty, Body};
use crate::exchange::{Done, Exchange, TopPage};
use crate::ops::auth::Who;
use crate::policy::{Decision, RequestInfo, RequestType, Verdict};
use crate::proxy::forward;
use crate::proxy::limits::{self, Activity, Tracked};
use crate::proxy::serve::{self, drive};
use crate::proxy::service::ClientBody;
use crate::proxy::service::{ProxyService, Tunnel};
use crate::proxy::state::Shared;
use crate::respond::failure::Failure;
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::timeout;
use tracing::{debug, Instrument};

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<ClientBody>,
    peer: SocketAddr,
    local: SocketAddr,
    who: Option<Arc<Who>>,
) -> Response<Body> {
    let (host, port) = match target(&shared, &req) {
        Ok(t) => t,
        Err(failure) => return failure.answer(),
    };
    match plan(&shared, &host, peer, who.as_ref()) {
        Plan::Refuse => Failure::TrackerTunnel(host).answer(),
        Plan::Intercept { warm } => {
            if warm && port != 80 {
                shared.upstream.preconnect(&host, port);
            }
            spawn_intercepted(shared, req, host, port, ClientSide { peer, local, who });
            Response::new(empty())
        }
        Plan::PassThrough => pass_through(&shared, req, &host, port).await,
    }
}

/// What becomes of a tunnel to `host`.
pub(crate) enum Plan {
    /// A tracker's host that cannot be intercepted (no CA, or passthrough): refused, recorded.
    Refuse,
    /// Its TLS is terminated here and its requests served like plain ones. `warm`: the host
    /// is not blocked, so its upstream connection may be opened while the client's handshake
    /// with the proxy goes on (a tracker's host is never connected to before a request
    /// inside the tunnel is allowed).
    Intercept { warm: bool },
    /// Passed through byte for byte: passthrough list, trusted site, or no CA.
    PassThrough,
}

/// Decide a tunnel to `host` on the host alone (only rules that match the bare host can
/// refuse one) by the one decision, with the overlays of `who` (their group) and the person's
/// choices; a refusal is recorded here.
pub(crate) fn plan(shared: &Shared, host: &str, peer: SocketAddr, who: Option<&Arc<Who>>) -> Plan {
    let policy = shared.policy.load();
    let url = format!("https://{host}/");
    let info = RequestInfo { url: &url, host, page_host: None, request_type: RequestType::Other, method: "CONNECT" };
    let site = crate::policy::site::site_of(host);
    let overlay = shared.overlay(who.map(|w| &**w), peer.ip());
    let decision = policy.decide_for(&info, &site, &site, &overlay, None);
    // With the CA, a tracker's host is intercepted like any other: each request inside is
    // decided on its own, so a blocked script gets its surrogate, a frame its placeholder, and
    // a navigation through the host goes on (only a `$document` rule blocks one). Without
    // interception only the whole host can be blocked, here.
    let intercept = shared.ca.is_some() && !is_passthrough(&shared.config.intercept.passthrough, host);
    if decision.verdict == Verdict::Block && !intercept {
        let client = shared.config.receipt.per_person.then_some(peer);
        let mut ex = tunnel_exchange(host, url, decision, client);
        // Filed under the page that caused it: the one this client opened last, if recently.
        if let Some(page) = client.and_then(|c| shared.receipt.recent_page(c.ip())) {
            ex.third_party = page != ex.site;
            ex.page = TopPage { host: page.clone(), site: page };
        }
        ex.done.status = Some(StatusCode::FORBIDDEN);
        let mine = shared.own_receipt(who.map(|w| &**w), peer.ip());
        forward::record(&ex, &shared.receipt, mine.as_deref(), &shared.metrics);
        return Plan::Refuse;
    }
    // A trusted site (the config's, the group's or the person's) is decided TrustedSite: its
    // tunnel is passed through, so its pages reach the browser as the origin sent them.
    if intercept && !decision.is_trusted() {
        Plan::Intercept { warm: decision.verdict != Verdict::Block }
    } else {
        Plan::PassThrough
    }
}

/// The host and port a CONNECT asks for, when a tunnel may be opened to them: a valid port in
/// `[intercept] connect_ports`, a host a leaf could be made for, an address destination
/// filtering allows. Otherwise the 400 or 403 the client gets.
fn target(shared: &Shared, req: &Request<ClientBody>) -> Result<(String, u16), Failure> {
    let Some(authority) = req.uri().authority() else {
        return Err(Failure::BadRequest("CONNECT needs host:port".into()));
    };
    crate::proxy::service::valid_port(Some(authority)).map_err(|why| Failure::BadRequest(why.into()))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    // An address, or a name a leaf could be made for (no wildcard, no empty label).
    if !crate::tls::is_mintable_name(&host) {
        return Err(Failure::BadRequest("CONNECT needs a host name or address".into()));
    }
    let port = authority.port_u16().unwrap_or(443);
    tracing::Span::current().record("host", host.as_str());
    if !shared.config.intercept.connect_ports.contains(&port) {
        return Err(Failure::PortNotAllowed(port));
    }
    if let Err(refused) = shared.dialer.check_literal(&host) {
        return Err(Failure::Destination { host, why: refused.to_string() });
    }
    Ok((host, port))
}

/// A tunnel passed through byte for byte. The upstream is connected first, so an unreachable
/// host is a 502 (504 on a timeout, 403 when destination filtering refuses its address) and
/// not a dead tunnel.
async fn pass_through(shared: &Shared, req: Request<ClientBody>, host: &str, port: u16) -> Response<Body> {
    let upstream = match shared.dialer.tcp(host, port).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Failure::Destination { host: host.to_string(), why: e.to_string() }.answer();
        }
        Err(e) => {
            let status =
                if e.kind() == io::ErrorKind::TimedOut { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            let reason = format!("cannot reach port {port}: {e}");
            return Failure::Upstream { host: host.to_string(), status, reason }.answer();
        }
    };
    let span = tracing::debug_span!("tunnel", host = %host, port);
    let idle = shared.timeouts.tunnel_idle;
    let metrics = shared.metrics.clone();
    shared.tasks.spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let _open = metrics.tunnel_open();
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = Tracked::untabled(upstream);
                    match limits::tunnel(&mut client, &mut upstream, idle).await {
                        Ok((up, down)) => debug!(up, down, "tunnel closed"),
                        Err(e) => debug!(error = %e, "tunnel ended"),
                    }
                }
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    Response::new(empty())
}

/// Serve the tunnel's requests here, once the client's side of the CONNECT is upgraded.
fn spawn_intercepted(shared: Arc<Shared>, req: Request<ClientBody>, host: String, port: u16, at: ClientSide) {
    let span = tracing::debug_span!("intercept", host = %host, port);
    let tasks = shared.tasks.clone();
    tasks.spawn(
        async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => return debug!(error = %e, "upgrade failed"),
            };
            if let Err(e) = serve_intercepted(shared, TokioIo::new(upgraded), host, port, at).await {
                debug!(error = %e, "intercepted connection ended");
            }
        }
        .instrument(span),
    );
}

/// The Exchange of a CONNECT refused at once. A tunnel names no page: it is filed under its
/// own host.
fn tunnel_exchange(host: &str, url: String, decision: Decision, client: Option<SocketAddr>) -> Exchange {
    Exchange {
        received: std::time::Instant::now(),
        url,
        host: host.to_string(),
        site: crate::policy::site::site_of(host),
        request_type: RequestType::Other,
        method: http::Method::CONNECT,
        page: TopPage { host: host.to_string(), site: host.to_string() },
        third_party: false,
        decision,
        shopping: false,
        client,
        user: None,
        group: None,
        done: Done::default(),
    }
}

fn is_passthrough(list: &[String], host: &str) -> bool {
    list.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        match p.strip_prefix('.') {
            Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
            None => host == p,
        }
    })
}

/// The client's address, the proxy's address it reached, and who signed in (`[auth]`).
pub(crate) struct ClientSide {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub who: Option<Arc<Who>>,
}

/// Serve a tunnel's bytes: TLS terminated with a leaf for the name the client asks for (or
/// plain HTTP), and the requests inside served like plain ones.
pub(crate) async fn serve_intercepted<S>(
    shared: Arc<Shared>,
    mut io: S,
    host: String,
    port: u16,
    at: ClientSide,
) -> Result<(), crate::base::BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (handshake, idle) = (shared.timeouts.handshake, shared.timeouts);
    let mut stop = shared.shutdown.subscribe();
    let activity = Arc::new(Activity::default());
    let mut first = [0u8; 1];
    let n = timeout(handshake, io.read(&mut first)).await.map_err(|_| "no bytes after CONNECT")??;
    if n == 0 {
        return Ok(());
    }
    let io = Prefixed { prefix: Some(first[0]), inner: io };
    if first[0] != 0x16 {
        // Not a TLS handshake: plain HTTP inside the tunnel, h1 or h2 as its first bytes say.
        let builder = serve::auto_builder();
        let tunnel = Some(Arc::new(Tunnel::new(&host, port, false)));
        let svc = ProxyService::new(shared, at.peer, at.local, tunnel, activity.clone()).signed_in(at.who);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc.serving());
        drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await?;
        return Ok(());
    }
    let ca = shared.ca.clone().ok_or("interception without a CA")?;
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let tls = timeout(handshake, async {
        let start = acceptor.await?;
        // The leaf is for the name the client asks for (SNI), else the CONNECT host; never a
        // wildcard or an empty name.
        let name = start.client_hello().server_name().map(str::to_ascii_lowercase).unwrap_or_else(|| host.clone());
        if !crate::tls::is_mintable_name(&name) {
            return Err(format!("no certificate is made for the name `{name}`").into());
        }
        let config = ca.server_config(&name)?;
        Ok::<_, crate::base::BoxError>((start.into_stream(config).await?, name))
    })
    .await
    .map_err(|_| "TLS handshake timed out")?;
    let (tls, name) = tls?;
    let tunnel = Some(Arc::new(Tunnel::new(&name, port, true)));
    let svc = ProxyService::new(shared, at.peer, at.local, tunnel, activity.clone()).signed_in(at.who);
    // ALPN has said which protocol the client speaks; serving it directly spares every read
    // the auto builder's look at the first bytes.
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        let conn = serve::h2_builder().serve_connection(TokioIo::new(tls), svc.serving());
        drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await?;
    } else {
        let conn = serve::h1_builder().serve_connection(TokioIo::new(tls), svc.serving()).with_upgrades();
        drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await?;
    }
    Ok(())
}

/// A stream with one byte already read from it put back in front.
struct Prefixed<S> {
    prefix: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(b) = self.prefix.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passthrough_matches_host_and_dot_suffix() {
        let list = vec!["bank.test".to_string(), ".pinned.test".to_string()];
        assert!(super::is_passthrough(&list, "bank.test"));
        assert!(!super::is_passthrough(&list, "www.bank.test"));
        assert!(super::is_passthrough(&list, "api.pinned.test"));
        assert!(super::is_passthrough(&list, "pinned.test"));
        assert!(!super::is_passthrough(&list, "notpinned.test"));
    }
}
