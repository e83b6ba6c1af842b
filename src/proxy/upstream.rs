//! The one upstream client: pooled, HTTP/1.1 and HTTP/2 chosen by ALPN (HTTPS origins that
//! speak h2 share one connection each, `h2pool`; other origins get kept HTTP/1.1
//! connections, `h1pool`; upgrades go through hyper-util's pooled client), connecting
//! through the `dial` module's dialer; the response timeout; and the words and status for an
//! upstream failure.

use crate::base::{Body, BoxError};
use crate::config::Config;
use crate::policy::subscribe::{Fetching, ListFetcher};
use crate::proxy::destination::Refused;
use crate::proxy::dial::Dialer;
use crate::proxy::h1pool::{H1Pool, Sent};
use crate::proxy::h2pool::{self, H2Pool};
use http::header::UPGRADE;
use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Subscriptions download their lists through the same client as every request.
impl ListFetcher for Upstream {
    fn fetch(&self, req: Request<()>, limit: usize) -> Fetching<'_> {
        Box::pin(async move {
            let resp = self.request(req.map(|()| crate::base::empty())).await.map_err(|e| classify_error(&*e).1)?;
            let (parts, body) = resp.into_parts();
            let body = if parts.status.is_success() { read_to_limit(body, limit).await? } else { bytes::Bytes::new() };
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// A whole body, at most `limit` bytes. Read by hand rather than through
/// `http_body_util::Limited`: over our boxed body, `Limited`'s error conversion makes the
/// fetcher's future fail rustc's `Send` check ("implementation of `From` is not general
/// enough"), and its message would not say the limit.
async fn read_to_limit(mut body: Body, limit: usize) -> Result<bytes::Bytes, String> {
    use http_body_util::BodyExt;
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > limit {
                return Err(format!("reading the body: larger than {limit} bytes"));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read.freeze())
}

/// Where requests go upstream: HTTPS origins that speak h2 on one shared connection each
/// (`h2pool`), other origins on kept HTTP/1.1 connections (`h1pool`), upgrades through
/// hyper-util's pooled client; and how long to wait for an upstream's response head. Timeouts are read from config once, at start-up.
pub struct Upstream {
    client: Client<Dialer, Body>,
    h1: Arc<H1Pool>,
    h2: Arc<H2Pool>,
    pub response_timeout: Duration,
}

impl Upstream {
    pub fn new(cfg: &Config, dialer: Dialer) -> Upstream {
        let idle = cfg.upstream.idle_timeout.get();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(64)
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(dialer.clone());
        let h1 = Arc::new(H1Pool::new(dialer.clone(), idle));
        Upstream {
            client,
            h2: Arc::new(H2Pool::new(dialer, idle, h1.clone())),
            h1,
            response_timeout: cfg.upstream.response_timeout.get(),
        }
    }

    /// Send a request (absolute URI) upstream: on the origin's shared h2 connection or a kept
    /// HTTP/1.1 one; upgrades, and what those two hand back unsent, through hyper-util's client.
    pub async fn request(&self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let req = if req.headers().contains_key(UPGRADE) {
            req
        } else {
            let https = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
            let via = match req.uri().authority() {
                Some(authority) if https => self.h2.route(authority).await,
                _ => h2pool::Via::Pool,
            };
            match via {
                h2pool::Via::H2(mut send) => match send.try_send_request(req).await {
                    Ok(resp) => return Ok(resp.map(crate::base::boxed)),
                    // Refused unsent (the connection was closing): the general pool sends it,
                    // and the next request dials a new h2 connection.
                    Err(mut e) => match e.take_message() {
                        Some(req) => req,
                        None => return Err(e.into_error().into()),
                    },
                },
                h2pool::Via::Pool => match self.h1.send(req).await? {
                    Sent::Answered(resp) => return Ok(resp),
                    Sent::OfferedH2(req) => req,
                },
            }
        };
        Ok(self.client.request(req).await?.map(crate::base::boxed))
    }

    /// Open the connection to `https://host:port` now, if there is none, for the requests a
    /// tunnel to it is about to carry: a browser's first request inside a new tunnel then
    /// finds it made (or under way) instead of dialing only once the browser's own handshake
    /// with the proxy is done. The upstream's TCP and TLS round trips overlap that handshake,
    /// as they would if the browser dialed the origin itself.
    pub fn preconnect(&self, host: &str, port: u16) {
        if let Some(authority) = crate::proxy::service::tunnel_authority(host, port, true) {
            self.h2.warm(&authority);
        }
    }

    /// How many HTTP/1.1 connections are kept idle (for tests).
    pub fn h1_idle_connections(&self) -> usize {
        self.h1.idle_connections()
    }

    /// How many HTTPS origins have a live shared h2 connection.
    pub fn h2_connections(&self) -> usize {
        self.h2.connections()
    }
}

/// Why an upstream request failed, in words for the error page, and which status to answer.
pub fn classify_error(err: &(dyn std::error::Error + 'static)) -> (http::StatusCode, String) {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut reason = err.to_string();
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return (http::StatusCode::BAD_GATEWAY, format!("the server's certificate was not accepted: {tls}"));
        }
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return (http::StatusCode::FORBIDDEN, refused.to_string());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(refused) = io.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
                return (http::StatusCode::FORBIDDEN, refused.to_string());
            }
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return (http::StatusCode::BAD_GATEWAY, format!("the server's certificate was not accepted: {tls}"));
            }
            if io.kind() == io::ErrorKind::TimedOut {
                return (http::StatusCode::GATEWAY_TIMEOUT, io.to_string());
            }
            reason = io.to_string();
        }
        cur = e.source();
    }
    (http::StatusCode::BAD_GATEWAY, reason)
}
