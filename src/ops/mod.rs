//! Operations: who may use the proxy (`access`), the person's choices kept across restarts
//! (`choices`), what it has done (`metrics`), what `run` needs
//! from the machine (`preflight`, for `check`), and the process's signals (`signals`: shutdown
//! on SIGINT/SIGTERM).

pub mod access;
pub mod auth;
pub mod choices;
pub mod metrics;
pub mod preflight;
pub mod signals;

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
