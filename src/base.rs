//! The bottom of the house: the body type every stage passes along (streamed, never collected
//! whole) with its three constructors, and a poison-tolerant lock. Everything may import it;
//! it imports nothing of the crate.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

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
