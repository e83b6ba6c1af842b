//! Serving one client connection: hyper's builders with the limits every client connection
//! gets (the auto h1/h2 builder for the listener and plain HTTP in a tunnel, the h1 and h2
//! builders for an intercepted TLS connection whose protocol ALPN chose), and `drive`, which
//! runs a served connection to its end, closing it gracefully when it goes idle or the server
//! shuts down. Used by the listener and by CONNECT alike.

use crate::proxy::limits;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Drive one served connection to its end. When no exchange is in flight and no request has
/// come for the idle timeout, or the server is shutting down, it is closed gracefully
/// (requests in flight finish first); when exchanges are in flight but not a byte of them has
/// moved for the stall limit, it is cut. A transfer whose bytes keep moving is never cut.
pub async fn drive<C, E>(
    conn: C,
    activity: &limits::Activity,
    t: limits::Timeouts,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    graceful: fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let quiet = tokio::select! {
        r = conn.as_mut() => return r,
        q = activity.until_quiet(t.idle, t.stall) => Some(q),
        _ = stop.wait_for(|s| *s) => None,
    };
    match quiet {
        Some(limits::Quiet::Stalled) => {
            tracing::debug!(stall = ?t.stall, "cut a connection whose transfers moved no byte");
            return Ok(());
        }
        // Shutting down: the server's grace period bounds the drain. A connection accepted
        // just before the stop has its first request on the way, and a client does not send
        // a request again when a new connection closes unanswered: wait for that request
        // (briefly) so that it is answered before the connection closes.
        None => {
            tokio::select! {
                r = conn.as_mut() => return r,
                _ = activity.first_exchange(FIRST_REQUEST_AT_STOP) => {}
            }
            graceful(conn.as_mut());
            return conn.await;
        }
        Some(limits::Quiet::Idle) => graceful(conn.as_mut()),
    }
    // An idle connection gets as long again to close; a client that never answers the
    // HTTP/2 goodbye (its ping) is dropped after that.
    tracing::debug!(idle = ?t.idle, "closing an idle connection");
    match tokio::time::timeout(t.idle.min(Duration::from_secs(30)), conn.as_mut()).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// How long a connection that has not yet begun a request may take to send its first when
/// the server begins to stop.
const FIRST_REQUEST_AT_STOP: Duration = Duration::from_secs(2);

/// hyper's server for a connection whose protocol its first bytes tell (the listener, and
/// plain HTTP inside a tunnel): HTTP/1.1 with keep-alive, HTTP/2 with extended CONNECT, both
/// with a timer for their header and keep-alive timeouts.
pub fn auto_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true).max_headers(MAX_HEADERS);
    h2_limits(builder.http2().timer(TokioTimer::new()).enable_connect_protocol());
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

fn h2_limits<E>(h2: &mut auto::Http2Builder<'_, E>) {
    h2.max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
}

/// hyper's HTTP/2 server, with the same limits, for a connection ALPN said speaks h2.
pub fn h2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// hyper's HTTP/1.1 server, with the same limits, for a connection ALPN said speaks h1.
pub fn h1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).max_headers(MAX_HEADERS);
    builder
}

/// Answer each request on `stream` with `answer` (its path tells what to say), with
/// `Connection: close`, and close; the whole exchange bounded by `within`. For clients the
/// proxy does not serve: refused ones, and those that come while it drains.
pub async fn answer_and_close<F>(stream: tokio::net::TcpStream, within: Duration, answer: F)
where
    F: Fn(&http::Uri) -> http::Response<crate::base::Body> + Copy + Send + Sync + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
        let mut r = answer(req.uri());
        r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(r)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(within, conn).await;
}
