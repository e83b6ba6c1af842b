//! The bottom of the house: the body type every stage passes along (streamed, never collected
//! whole) with its three constructors, a poison-tolerant lock, and giving freed memory back to
//! the system. Everything may import it;
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

/// Give the memory freed after building a policy (list texts, parse trees) back to the system.
/// The binary allocates with mimalloc (see main.rs), which otherwise returns freed pages only
/// as later allocations pass by, and never in an idle process; glibc's heap (tests, and any
/// build without it) keeps freed pages too. On a router those pages are the difference.
pub fn return_free_memory() {
    // SAFETY: mi_collect only frees and purges mimalloc's own empty pages; it has no
    // preconditions and is a no-op when mimalloc holds nothing.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's heap; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
