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

/// While one is held, mimalloc gives freed memory back to the system at once rather than after
/// its purge delay (10 ms, during which a freed page is kept for reuse). Held while a policy is
/// built and while lists download: a build allocates and frees tens of megabytes in growing
/// buffers within a second, and with the delay the freed ones stayed resident beside the new,
/// a first download of EasyList and EasyPrivacy then peaking 40 MB above idle instead of 11
/// (BENCHMARKS.md, "A router's first download"). The hot path keeps the delay.
pub struct PromptPurge(());

/// How many [`PromptPurge`] are held.
static PROMPT_PURGES: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e`, and its default (milliseconds).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
const PURGE_DELAY_DEFAULT: std::os::raw::c_long = 10;

impl PromptPurge {
    pub fn begin() -> PromptPurge {
        let mut held = lock(&PROMPT_PURGES);
        if *held == 0 {
            // SAFETY: setting an option is a store into mimalloc's option table; no preconditions.
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
        }
        *held += 1;
        PromptPurge(())
    }
}

impl Drop for PromptPurge {
    fn drop(&mut self) {
        let mut held = lock(&PROMPT_PURGES);
        *held -= 1;
        if *held == 0 {
            // SAFETY: as in `begin`.
            unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_DEFAULT) };
        }
    }
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
