//! HTTP/1.1 connections to origins, kept for reuse: plain-HTTP origins, and HTTPS origins that
//! do not offer h2 (those that do share one h2 connection, `h2pool`). A request takes an idle
//! connection to its origin (or dials one), sends on it, and its response body hands the
//! connection back the moment the body ends. Upgrades stay with hyper-util's pooled client
//! (`upstream`), and so does a request whose dial found the origin choosing h2 after all.
//!
//! Written here because hyper-util's legacy pool, made for both protocols, costs on every
//! HTTP/1 request a clone of the whole client, a checkout future raced against a lazily built
//! connect future, and a spawned task that waits for the connection to be ready again before
//! putting it back (one task and two wake-ups per request). Here the response body puts the
//! connection back as it ends, and a request takes the map's lock for one lookup. Measured in
//! BENCHMARKS.md with benches/load/ab.py. Idle connections are dropped after
//! `[upstream] idle_timeout`, and at most 64 are kept per origin, as before.

use crate::base::{Body, BoxError};
use crate::proxy::dial::{Dialer, MaybeTls};
use crate::proxy::reap::{self, Swept};
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// At most this many idle connections are kept per origin (hyper-util's setting before).
const MAX_IDLE_PER_ORIGIN: usize = 64;

/// How long a request waits for a kept connection to be ready before it dials its own. A
/// connection given back is ready within microseconds unless it is still sending a request
/// body the origin did not wait for.
const READY_WAIT: Duration = Duration::from_millis(250);

struct Idle {
    send: SendRequest<Body>,
    since: Instant,
}

/// An origin: its authority, over TLS or not (the same host and port may be either).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    authority: Authority,
}

/// What became of a request given to the pool.
pub enum Sent {
    Answered(Response<Body>),
    /// The dial found the origin choosing HTTP/2: the request as it came, for a client that
    /// speaks it.
    OfferedH2(Request<Body>),
}

struct Map {
    /// foldhash, seeded per process: a lookup runs per request, and the keys are names web
    /// pages choose.
    idle: HashMap<Origin, Vec<Idle>, foldhash::fast::RandomState>,
    /// A task drops expired connections while there are any.
    reaper: bool,
}

pub struct H1Pool {
    map: Mutex<Map>,
    dialer: Dialer,
    idle: Duration,
}

impl H1Pool {
    pub fn new(dialer: Dialer, idle: Duration) -> H1Pool {
        H1Pool { map: Mutex::new(Map { idle: HashMap::default(), reaper: false }), dialer, idle }
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        crate::base::lock(&self.map)
    }

    /// Send a request with an absolute `http` or `https` URI, on a kept connection to its
    /// origin when there is one. A kept connection the origin was closing as the request went
    /// out (the request comes back unsent) is left for the next one, then a new dial.
    pub async fn send(self: &Arc<Self>, mut req: Request<Body>) -> Result<Sent, BoxError> {
        let authority = req.uri().authority().cloned().ok_or("the request has no host")?;
        let origin = Origin { tls: req.uri().scheme() == Some(&http::uri::Scheme::HTTPS), authority };
        let dial_uri = req.uri().clone();
        let host = origin.authority.host();
        let port = origin.authority.port_u16().unwrap_or(if origin.tls { 443 } else { 80 });
        let via_parent = if origin.tls { None } else { self.dialer.plain_via_parent(host, port)? };
        match &via_parent {
            Some(via) => to_proxy_form(&mut req, &origin.authority, via),
            None => to_origin_form(&mut req, &origin.authority),
        }
        loop {
            let (mut send, kept) = match self.checkout(&origin) {
                Some(send) => (send, true),
                // Boxed: a dial's future is most of this one's size, and most requests need none.
                None => match Box::pin(self.dial(dial_uri.clone(), via_parent.is_some())).await? {
                    Some(send) => (send, false),
                    None => {
                        *req.uri_mut() = dial_uri;
                        return Ok(Sent::OfferedH2(req));
                    }
                },
            };
            // A kept connection is handed back as its last body ends, a moment before hyper
            // marks it ready; an error here means the origin closed it meanwhile. One that is
            // not ready soon is still sending an earlier request's body (the origin answered
            // before reading it all, and the client is slow to send the rest): it is left to
            // finish that on its own, and closes after.
            let ready = if kept {
                match tokio::time::timeout(READY_WAIT, send.ready()).await {
                    Ok(ready) => ready,
                    Err(_) => continue,
                }
            } else {
                send.ready().await
            };
            if let Err(e) = ready {
                if kept {
                    continue;
                }
                return Err(e.into());
            }
            match send.try_send_request(req).await {
                // The parent's own challenge is not passed on: the browser would ask its person
                // for the parent's password as if it were this proxy's.
                Ok(resp)
                    if via_parent.is_some() && resp.status() == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED =>
                {
                    return Err(crate::proxy::parent::needs_credentials().into());
                }
                Ok(resp) => {
                    let back = Back { pool: self.clone(), origin, send };
                    // A response without a body (HEAD, 204, 304) may never be polled: its
                    // connection goes back now.
                    let back = if resp.body().is_end_stream() {
                        back.give();
                        None
                    } else {
                        Some(back)
                    };
                    return Ok(Sent::Answered(resp.map(|body| crate::base::boxed(Pooled { body, back }))));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if kept => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A live connection to `origin`, if any: among the few most recently used, one that is
    /// ready for a request, else the most recent (ready a moment later). Dead ones met on the
    /// way are dropped; the reaper drops the rest.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Body>> {
        let mut map = self.lock();
        let list = map.idle.get_mut(origin)?;
        let now = Instant::now();
        let alive = |i: &Idle| !i.send.is_closed() && now.duration_since(i.since) < self.idle;
        while list.last().is_some_and(|i| !alive(i)) {
            list.pop();
        }
        let newest = list.len().checked_sub(1)?;
        let recent = newest.saturating_sub(3)..=newest;
        let at = recent.rev().find(|&at| alive(&list[at]) && list[at].send.is_ready()).unwrap_or(newest);
        Some(list.remove(at).send)
    }

    /// A new connection; None when TLS's ALPN chose h2 (the origin began offering it since
    /// `h2pool` last looked, or that pool's dial had failed).
    async fn dial(&self, uri: Uri, to_parent: bool) -> Result<Option<SendRequest<Body>>, BoxError> {
        let io = if to_parent { self.dialer.to_parent().await? } else { self.dialer.clone().connect(uri).await? };
        if io.inner().is_h2() {
            return Ok(None);
        }
        let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Some(send))
    }

    /// Keep a TLS connection to `https://{authority}` that `h2pool`'s dial made and found
    /// without h2, for the next request to it.
    pub async fn adopt(self: &Arc<Self>, authority: &Authority, io: TokioIo<MaybeTls>) {
        match hyper::client::conn::http1::handshake(io).await {
            Ok((send, conn)) => {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream connection ended");
                    }
                });
                self.put(Origin { tls: true, authority: authority.clone() }, send);
            }
            Err(e) => tracing::debug!(error = %e, "upstream HTTP/1.1 handshake failed"),
        }
    }

    fn put(self: &Arc<Self>, origin: Origin, send: SendRequest<Body>) {
        if send.is_closed() {
            return;
        }
        let mut map = self.lock();
        let list = map.idle.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle { send, since: Instant::now() });
        }
        if !map.reaper {
            map.reaper = true;
            tokio::spawn(reap::reap(Arc::downgrade(self)));
        }
    }

    /// How many idle connections are kept (for tests).
    pub fn idle_connections(&self) -> usize {
        self.lock().idle.values().map(Vec::len).sum()
    }
}

/// What an origin server is sent: the path and query (origin form), a Host header when the
/// request has none, HTTP/1.1.
fn to_origin_form(req: &mut Request<Body>, authority: &Authority) {
    if !req.headers().contains_key(http::header::HOST) {
        // An Authority is valid header text, with a port only when the URL had one.
        let host = authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, h)| h);
        if let Ok(v) = HeaderValue::from_str(host) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    if req.version() != Version::HTTP_10 {
        *req.version_mut() = Version::HTTP_11;
    }
}

/// What an HTTP parent proxy is sent: the absolute URL (with the address `[upstream] resolve`
/// pins in place of the name, the name staying in Host), and the parent's credentials.
fn to_proxy_form(req: &mut Request<Body>, authority: &Authority, via: &crate::proxy::dial::ViaParent) {
    to_origin_form(req, authority);
    let target = if via.to.contains(':') {
        format!("[{}]:{}", via.to, via.to_port)
    } else {
        format!("{}:{}", via.to, via.to_port)
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = Uri::try_from(format!("http://{target}{path}")) {
        *req.uri_mut() = uri;
    }
    if let Some(auth) = &via.auth {
        req.headers_mut().insert(http::header::PROXY_AUTHORIZATION, auth.clone());
    }
}

/// A connection on its way back to the pool once its response body has ended.
struct Back {
    pool: Arc<H1Pool>,
    origin: Origin,
    send: SendRequest<Body>,
}

impl Back {
    fn give(self) {
        self.pool.put(self.origin, self.send);
    }
}

/// An origin's response body that gives its connection back when it ends. Dropped before its
/// end (the client went away), the connection is dropped with it: hyper closes it, as a
/// half-read response cannot be followed by another.
struct Pooled {
    body: Incoming,
    back: Option<Back>,
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                this.back = None;
                false
            }
            Poll::Pending => false,
        };
        if ended {
            if let Some(back) = this.back.take() {
                back.give();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Swept for H1Pool {
    fn idle(&self) -> Duration {
        self.idle
    }

    /// Drop connections idle longer than the idle time or closed by their origin; false when
    /// none are left.
    fn sweep(&self) -> bool {
        let mut map = self.lock();
        let now = Instant::now();
        for list in map.idle.values_mut() {
            list.retain(|i| !i.send.is_closed() && now.duration_since(i.since) < self.idle);
        }
        map.idle.retain(|_, list| !list.is_empty());
        map.reaper = !map.idle.is_empty();
        map.reaper
    }
}
