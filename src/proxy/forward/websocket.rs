//! The websocket phase: an upgrade the upstream accepted (101) is spliced to the client's
//! side, byte for byte, in a task the server drains on shutdown; a WebSocket left silent (no
//! frames, not even pings) is closed after `[server] tunnel_idle_timeout`, like a tunnel.

use crate::base::Body;
use crate::ops::metrics::Metrics;
use crate::proxy::limits::{self, Tracked};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// The upstream's side of an upgrade, when it answered 101.
pub fn upgrade_of(resp: &mut Response<Body>) -> Option<OnUpgrade> {
    (resp.status() == StatusCode::SWITCHING_PROTOCOLS).then(|| hyper::upgrade::on(resp))
}

/// Splice both sides once both upgrades complete. Without the client's side (it asked for no
/// upgrade) there is nothing to splice.
pub fn splice(
    client: Option<OnUpgrade>,
    server: OnUpgrade,
    tasks: &TaskTracker,
    idle: Duration,
    metrics: Arc<Metrics>,
) {
    let Some(client) = client else { return };
    tasks.spawn(async move {
        match (client.await, server.await) {
            (Ok(c), Ok(s)) => {
                let _open = metrics.tunnel_open();
                let (mut c, mut s) = (TokioIo::new(c), Tracked::untabled(TokioIo::new(s)));
                if let Err(e) = limits::tunnel(&mut c, &mut s, idle).await {
                    debug!(error = %e, "websocket ended");
                }
            }
            (c, s) => debug!(client = c.is_ok(), server = s.is_ok(), "upgrade did not complete"),
        }
    });
}
