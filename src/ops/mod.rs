//! Operations: who may use the proxy (`access`), what it has done (`metrics`), and the process's
//! signals (`signals`: shutdown on SIGINT/SIGTERM).

pub mod access;
pub mod metrics;
pub mod signals;

/// Give the memory freed after building a policy (list texts, parse trees) back to the system.
/// glibc keeps freed heap pages otherwise, and on a router those pages are the difference.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's heap; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
