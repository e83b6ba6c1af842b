//! How long and how many: every client connection is registered in a [`ConnTable`] for as long
//! as its socket lives (through upgrades and tunnels), with the time of its last byte either
//! way. Past `[server] max_connections` the least recently active connection is shed (its
//! socket fails its next read or write at once). A connection's clock of use ([`Activity`]),
//! touched by each request and by every frame of a request or response body ([`Timed`]), lets
//! the listener close a connection that has had nothing in flight for `[server] idle_timeout`
//! and cut one whose transfers moved no byte for as long: the timeout measures silence, so a
//! download or upload of any length lives while its bytes move. Tunnels are closed after
//! `[server] tunnel_idle_timeout` with no bytes either way. Written here because hyper has no
//! idle timeout for HTTP/2 servers and tokio's copy has none for tunnels.

use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The `[server]` waits, read from config once at start rather than on every connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    /// How long an exchange in flight may go without a byte moving: the idle timeout, but never
    /// shorter than the upstream's response timeout (the wait for an answer has its own limit).
    pub stall: Duration,
    pub handshake: Duration,
    pub tunnel_idle: Duration,
}

impl Timeouts {
    pub fn new(cfg: &crate::Config) -> Timeouts {
        Timeouts {
            idle: cfg.server.idle_timeout.get(),
            stall: cfg.server.idle_timeout.get().max(cfg.upstream.response_timeout.get()),
            handshake: cfg.server.handshake_timeout.get(),
            tunnel_idle: cfg.server.tunnel_idle_timeout.get(),
        }
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// A connection's clock of use: touched when a request comes, whenever a byte of a request or
/// response body moves, and when an exchange ends; with the count of exchanges in flight.
/// Idle means nothing in flight and no request for the idle timeout; stalled means exchanges
/// in flight but not one byte of them moved for as long.
#[derive(Debug)]
pub struct Activity {
    last: AtomicU64,
    busy: AtomicU32,
    /// Whether any exchange has begun on this connection.
    begun: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { last: AtomicU64::new(now_ms()), busy: AtomicU32::new(0), begun: AtomicBool::new(false) }
    }
}

/// Why a connection is to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing in flight, and no request for the idle timeout: close gracefully.
    Idle,
    /// Exchanges in flight, and not a byte of them moved for the stall limit: cut.
    Stalled,
}

impl Activity {
    pub fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Completes once nothing has touched this for `limit`.
    pub async fn quiet_for(&self, limit: Duration) {
        loop {
            let idle = self.idle();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }

    /// An exchange begins: the connection is busy until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.begun.store(true, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Completes once the connection's first exchange has begun, or after `within`.
    pub async fn first_exchange(&self, within: Duration) {
        let until = Instant::now() + within;
        while !self.begun.load(Ordering::Relaxed) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Completes when the connection has gone idle (nothing in flight for `idle`) or stalled
    /// (exchanges in flight with no byte moved for `stall`).
    pub async fn until_quiet(&self, idle: Duration, stall: Duration) -> Quiet {
        loop {
            let quiet = self.idle();
            let (limit, why) =
                if self.busy.load(Ordering::Relaxed) > 0 { (stall, Quiet::Stalled) } else { (idle, Quiet::Idle) };
            if quiet >= limit {
                return why;
            }
            // Look again by the shorter limit at the latest: the count may change meanwhile.
            let wait = (limit - quiet).min(idle).max(Duration::from_millis(10));
            tokio::time::sleep(wait).await;
        }
    }
}

/// One exchange in flight on a connection (held by its request body and its response body);
/// ending it touches the connection's clock, whose idle time then starts.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A body that touches its connection's clock whenever a frame of it moves, and keeps its
/// exchange counted as in flight until it is dropped: a long download or upload is not idle
/// for as long as its bytes flow, however long it takes.
#[derive(Debug)]
pub struct Timed<B> {
    inner: B,
    exchange: InFlight,
}

impl<B> Timed<B> {
    pub fn new(inner: B, exchange: InFlight) -> Timed<B> {
        Timed { inner, exchange }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Timed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &r {
            self.exchange.0.touch();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One connection's entry in the table.
#[derive(Debug, Default)]
pub struct ConnState {
    io: Activity,
    shed: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl ConnState {
    fn shed(&self) {
        self.shed.store(true, Ordering::SeqCst);
        self.read_waker.wake();
        self.write_waker.wake();
    }
}

/// The open client connections.
pub struct ConnTable {
    max: usize,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    shed_total: AtomicU64,
}

impl ConnTable {
    pub fn new(max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max: max.max(1),
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            shed_total: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        crate::base::lock(&self.conns)
    }

    /// Register a new connection's socket; when the table is full, the least recently active
    /// connection is shed first to make room.
    pub fn admit<S>(self: &Arc<Self>, io: S) -> Tracked<S> {
        let state = Arc::new(ConnState::default());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.lock();
        if conns.len() >= self.max {
            if let Some((&oldest, _)) = conns.iter().min_by_key(|(_, c)| c.io.last.load(Ordering::Relaxed)) {
                if let Some(c) = conns.remove(&oldest) {
                    c.shed();
                    self.shed_total.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(idle = ?c.io.idle(), "connection limit reached: shed the least recently active");
                }
            }
        }
        conns.insert(id, state.clone());
        drop(conns);
        Tracked { inner: io, state, table: Some((self.clone(), id)) }
    }

    pub fn open(&self) -> usize {
        self.lock().len()
    }

    pub fn shed_total(&self) -> u64 {
        self.shed_total.load(Ordering::Relaxed)
    }
}

/// A socket whose every byte is timed, and which fails at once once shed. Leaves its table
/// when dropped.
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
    table: Option<(Arc<ConnTable>, u64)>,
}

impl<S> Tracked<S> {
    /// A stream timed on its own (a tunnel's upstream side), in no table.
    pub fn untabled(inner: S) -> Tracked<S> {
        Tracked { inner, state: Arc::new(ConnState::default()), table: None }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection's entry, whose clock can be waited on to go quiet.
    pub fn quiet_clock(&self) -> Arc<ConnState> {
        self.state.clone()
    }
}

impl ConnState {
    pub async fn quiet_for(&self, limit: Duration) {
        self.io.quiet_for(limit).await
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        if let Some((table, id)) = self.table.take() {
            table.lock().remove(&id);
        }
    }
}

fn shed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection shed: the proxy is at its connection limit")
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.state.shed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(shed_error()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.state.io.touch(),
            Poll::Pending => {
                self.state.read_waker.register(cx.waker());
                // Shed between the check above and the registration: wake now.
                if self.state.shed.load(Ordering::SeqCst) {
                    return Poll::Ready(Err(shed_error()));
                }
            }
            _ => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.state.shed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(shed_error()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, r)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.state.shed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(shed_error()));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Tracked<S> {
    fn after_write(&self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.state.io.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.state.write_waker.register(cx.waker());
                if self.state.shed.load(Ordering::SeqCst) {
                    return Poll::Ready(Err(shed_error()));
                }
                Poll::Pending
            }
        }
    }
}

/// Copy both ways between a client and an upstream until either ends, or no byte has passed
/// for `idle`. Returns the bytes each way when it ended by itself.
pub async fn tunnel<A, B>(client: &mut A, upstream: &mut Tracked<B>, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = upstream.quiet_clock();
    tokio::select! {
        r = tokio::io::copy_bidirectional(client, upstream) => r,
        _ = clock.quiet_for(idle) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("tunnel idle for {idle:?}"))),
    }
}

/// Raise this process's open-file soft limit to its hard limit: every connection is a
/// descriptor (two when forwarded), and 1,024, a common default, is a few hundred browsers.
/// Returns the soft limit in force after.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own; no other preconditions.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, u32 elsewhere.
                return Some(lim.rlim_max as u64);
            }
            tracing::debug!("could not raise the open-file limit");
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, u32 elsewhere.
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Descriptors kept aside from client connections: the listener, logs, the store, lists,
/// DNS, and the upstream side of connections being set up.
const SPARE_FDS: u64 = 64;

/// The connection limit the process can hold: `max_connections`, but never more than its
/// open-file limit allows (each client connection may hold two descriptors, its own and its
/// upstream's), so shedding the least recently active connection, not running out of
/// descriptors, is what happens at the limit. Says so when it lowers the limit.
pub fn connection_limit(max_connections: usize, fd_limit: Option<u64>) -> usize {
    let Some(fds) = fd_limit else { return max_connections };
    let fit = (fds.saturating_sub(SPARE_FDS) / 2).max(1) as usize;
    if fit < max_connections {
        tracing::warn!(
            max_connections,
            open_file_limit = fds,
            using = fit,
            "max_connections is more than the open-file limit allows; raise the limit (LimitNOFILE=) or lower max_connections"
        );
        return fit;
    }
    max_connections
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_connection_limit_fits_the_open_file_limit() {
        assert_eq!(connection_limit(4096, Some(1024)), 480);
        assert_eq!(connection_limit(100, Some(1024)), 100);
        assert_eq!(connection_limit(4096, None), 4096);
        assert_eq!(connection_limit(10, Some(10)), 1);
    }

    #[tokio::test]
    async fn past_the_limit_the_least_recently_active_connection_is_shed() {
        let table = ConnTable::new(2);
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let (c, _c_peer) = tokio::io::duplex(64);
        let mut a = table.admit(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut b = table.admit(b);
        tokio::time::sleep(Duration::from_millis(20)).await;
        // a speaks, so b is now the least recently active.
        a_peer.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        a.read_exact(&mut one).await.unwrap();
        let reading_b = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            b.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _c = table.admit(c);
        let r = tokio::time::timeout(Duration::from_secs(5), reading_b).await.unwrap().unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted, "b was shed while waiting to read");
        assert_eq!(table.open(), 2);
        assert_eq!(table.shed_total(), 1);
        a_peer.write_all(b"y").await.unwrap();
        a.read_exact(&mut one).await.unwrap();
        b_peer.write_all(b"z").await.ok();
    }
}
