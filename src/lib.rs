//! nostalk: a forwarding web proxy that takes the surveillance out and lets ads through only
//! de-identified. This is the library's front door: [`Server`] (bind, then run until a shutdown
//! signal), [`config::Config`], and [`policy::Policy`]. The path of a request is:
//! accept → access → proxy (h1/h2, CONNECT, intercept) → policy.decide → respond (block) or
//! hygiene → upstream → hygiene → rewrite (HTML) → client, with each decision recorded in the
//! receipt. See ARCHITECTURE.md.

pub mod config;
pub mod exchange;
pub mod hygiene;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod receipt;
pub mod respond;
pub mod rewrite;
pub mod tls;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use policy::Policy;
pub use proxy::listener::Server;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every stage passes along: streamed, never collected whole.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A mutex's guard, taken even when an earlier holder panicked. Each step under nostalk's
/// locks leaves what they guard consistent, so a poisoned lock says nothing wrong about its
/// contents, and one request's panic must not turn every later request into another.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Any body of bytes (an upstream's, a client's) as the body every stage passes along.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// What every connection shares: the config it started with, the policy (swapped whole on
/// reload), the CA, the upstream client, and the ops state.
pub struct Shared {
    pub config: Config,
    pub policy: Arc<ArcSwap<Policy>>,
    /// The config the policy was last built from: the start's, or the last reload's.
    pub policy_config: Arc<ArcSwap<Config>>,
    pub ca: Option<Arc<tls::CertificateAuthority>>,
    pub dialer: proxy::dial::Dialer,
    pub upstream: Arc<proxy::upstream::Upstream>,
    pub listen: SocketAddr,
    pub access: ops::access::Access,
    /// Proxy authentication and groups (`[auth]`); None when the config asks for none.
    pub auth: Option<Arc<ops::auth::Auth>>,
    pub metrics: Arc<ops::metrics::Metrics>,
    pub receipt: Arc<receipt::Receipt>,
    pub shopping: hygiene::shopping::Shopping,
    /// The person's choices kept across restarts (down-votes, shopping, trusted sites).
    pub choices: Arc<ops::choices::Choices>,
    /// One-time passes: loads the person let through with a click ("Open anyway", a social
    /// widget's placeholder).
    pub passes: policy::passes::Passes,
    pub lists: Arc<policy::subscribe::Subscriptions>,
    /// The `[server]` timeouts, parsed once.
    pub timeouts: proxy::limits::Timeouts,
    /// Every open client connection, for the connection limit.
    pub conns: Arc<proxy::limits::ConnTable>,
    /// The secret the proxy's own pages put in their forms; a control without it is refused.
    pub page_token: String,
    /// Set to true when the server begins to shut down; connections close gracefully.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The connection tasks, waited for when draining.
    pub tasks: tokio_util::task::TaskTracker,
    pub ready: std::sync::atomic::AtomicBool,
}
