//! Transparent interception (`[transparent] http`, `https`): connections a firewall redirected
//! here (a router sending its LAN's ports 80 and 443 to nostalk) are served as if the client
//! had asked the proxy. Plain HTTP goes to the per-connection service, which reads each
//! request's Host. TLS is peeked at, not read: the ClientHello's server name (SNI) is the host,
//! and the tunnel is then planned as a CONNECT to it would be: a tracker's host is closed, a
//! passthrough or trusted host is spliced byte for byte to its port 443 (the peeked bytes are
//! still in the socket), any other is intercepted. A hello with no server name cannot be
//! placed and is closed. Written here because the peek is a few lines over rustls's Acceptor.

use crate::proxy::connect::{self, ClientSide, Plan};
use crate::proxy::limits::{self, Activity, Tracked};
use crate::proxy::serve::{self, drive};
use crate::proxy::service::ProxyService;
use crate::proxy::state::Shared;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::debug;

/// Which kind of redirected traffic a listener takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Https,
}

/// The most of a ClientHello that is looked at for its server name.
const MAX_HELLO: usize = 16 * 1024;

/// Serve one redirected connection.
pub async fn serve(shared: Arc<Shared>, stream: Tracked<TcpStream>, peer: SocketAddr, local: SocketAddr, mode: Mode) {
    let result = match mode {
        Mode::Http => serve_http(shared, stream, peer, local).await,
        Mode::Https => serve_https(shared, stream, peer, local).await,
    };
    if let Err(e) = result {
        debug!(error = %e, "redirected connection ended");
    }
}

async fn serve_http(
    shared: Arc<Shared>,
    stream: Tracked<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<(), crate::base::BoxError> {
    let activity = Arc::new(Activity::default());
    let (idle, mut stop) = (shared.timeouts, shared.shutdown.subscribe());
    let svc = ProxyService::new(shared, peer, local, None, activity.clone()).transparent();
    let conn = serve::h1_builder().serve_connection(TokioIo::new(stream), svc.serving()).with_upgrades();
    drive(conn, &activity, idle, &mut stop, |c| c.graceful_shutdown()).await?;
    Ok(())
}

async fn serve_https(
    shared: Arc<Shared>,
    stream: Tracked<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<(), crate::base::BoxError> {
    let name = tokio::time::timeout(shared.timeouts.handshake, server_name(stream.get_ref()))
        .await
        .map_err(|_| "no TLS ClientHello in time")??;
    let Some(host) = name.filter(|h| crate::tls::is_mintable_name(h)) else {
        return Err("a TLS connection without a server name cannot be placed".into());
    };
    tracing::Span::current().record("host", host.as_str());
    match connect::plan(&shared, &host, peer, None) {
        Plan::Refuse => Ok(()),
        Plan::Intercept { warm } => {
            if warm {
                shared.upstream.preconnect(&host, 443);
            }
            connect::serve_intercepted(shared, stream, host, 443, ClientSide { peer, local, who: None }).await
        }
        Plan::PassThrough => {
            let mut upstream = Tracked::untabled(shared.dialer.tcp(&host, 443).await?);
            let _open = shared.metrics.tunnel_open();
            let mut client = stream;
            limits::tunnel(&mut client, &mut upstream, shared.timeouts.tunnel_idle).await?;
            Ok(())
        }
    }
}

/// The server name of the ClientHello waiting in `stream`, read without consuming it. None
/// when the hello names no server; an error when what arrives is not TLS.
async fn server_name(stream: &TcpStream) -> Result<Option<String>, crate::base::BoxError> {
    let mut buf = vec![0u8; MAX_HELLO];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err("closed before its ClientHello".into());
        }
        let mut acceptor = rustls::server::Acceptor::default();
        acceptor.read_tls(&mut &buf[..n])?;
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted.client_hello().server_name().map(str::to_ascii_lowercase)),
            Ok(None) if n < MAX_HELLO => {
                // Part of the hello so far: wait for the rest (peek returns at once while
                // anything is waiting, so pause between looks).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(None) => return Err("a ClientHello larger than 16 KiB".into()),
            Err((e, _)) => return Err(format!("not a TLS ClientHello: {e}").into()),
        }
    }
}
