//! Where the listening socket comes from, and what shutting down does to it. Three ways:
//! bound here (the usual case); handed over by systemd socket activation (`LISTEN_FDS`, as
//! `sd_listen_fds` reads it: fd 3, only when `LISTEN_PID` is this process), so a restart never
//! closes the port and connections queue in the kernel while the new process starts; or bound
//! with `SO_REUSEPORT` (`[server] reuse_port`), so a new process can bind beside the old one
//! before the old one stops. A socket that is shared with another holder is let go of at
//! once on shutdown (the next process accepts what arrives); one bound here alone is kept
//! answering 503 while requests drain (a load balancer sees the replica leaving). Written by
//! hand because the protocol is two environment variables and a file descriptor number; the
//! socket options come from socket2.

use crate::config::Config;
use std::net::SocketAddr;

/// The first file descriptor systemd passes (SD_LISTEN_FDS_START).
const FIRST_PASSED_FD: i32 = 3;

pub struct Listening {
    pub listener: tokio::net::TcpListener,
    /// Another holder (systemd, or a process beside this one on the same port) keeps the
    /// socket open: on shutdown this process stops accepting at once.
    pub shared: bool,
}

/// The socket to serve on: the one systemd passed, else one bound to `[server] listen`.
/// Must be called inside the tokio runtime.
pub fn listen(config: &Config) -> std::io::Result<Listening> {
    if let Some(listener) = passed_by_systemd()? {
        listener.set_nonblocking(true)?;
        return Ok(Listening { listener: tokio::net::TcpListener::from_std(listener)?, shared: true });
    }
    let addr = config.listen_addr();
    let reuse_port = config.server.reuse_port;
    let listener = bind(addr, reuse_port)?;
    Ok(Listening { listener: tokio::net::TcpListener::from_std(listener)?, shared: reuse_port })
}

/// A tokio listener bound to `addr` (dual-stack for `[::]`).
pub fn bind_listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(bind(addr, reuse_port)?)
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // "[::]:PORT" takes IPv4 clients too, whatever the system's default.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// How many sockets systemd passed to the process `me`, from `LISTEN_PID` and `LISTEN_FDS`:
/// none when they are absent, malformed, or meant for another process.
fn passed_count(listen_pid: Option<&str>, listen_fds: Option<&str>, me: u32) -> Option<i32> {
    let pid: u32 = listen_pid?.trim().parse().ok()?;
    let count: i32 = listen_fds?.trim().parse().ok()?;
    (pid == me && count >= 1).then_some(count)
}

/// The listening socket systemd passed, if it passed one to this process.
fn passed_by_systemd() -> std::io::Result<Option<std::net::TcpListener>> {
    let (pid, fds) = (std::env::var("LISTEN_PID").ok(), std::env::var("LISTEN_FDS").ok());
    let Some(count) = passed_count(pid.as_deref(), fds.as_deref(), std::process::id()) else {
        return Ok(None);
    };
    // Children started later (none today) must not think the socket is theirs.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if count > 1 {
        tracing::warn!(count, "systemd passed several sockets; nostalk serves the first");
    }
    let fd = FIRST_PASSED_FD;
    // SAFETY: fd 3 was passed to this process by systemd for it to own (LISTEN_PID is ours);
    // nothing else in the process has taken it, as this runs once at start.
    let socket = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let is_listening_stream = socket.r#type()? == socket2::Type::STREAM && socket.is_listener()?;
    if !is_listening_stream {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the socket systemd passed is not a listening TCP socket",
        ));
    }
    // Not inherited by anything this process starts.
    socket.set_cloexec(true)?;
    Ok(Some(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_reuse_port_a_second_process_can_bind_beside_the_first_and_without_it_cannot() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        assert!(bind(addr, true).is_ok(), "a second reuse_port socket binds the same address");
        let plain = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let err = bind(plain.local_addr().unwrap(), false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn only_sockets_passed_to_this_very_process_are_taken() {
        assert_eq!(passed_count(Some("42"), Some("1"), 42), Some(1));
        assert_eq!(passed_count(Some("42"), Some("2"), 42), Some(2));
        // Meant for another process (a parent that did not clear them), or nothing passed.
        assert_eq!(passed_count(Some("41"), Some("1"), 42), None);
        assert_eq!(passed_count(Some("42"), Some("0"), 42), None);
        assert_eq!(passed_count(None, Some("1"), 42), None);
        assert_eq!(passed_count(Some("42"), None, 42), None);
        assert_eq!(passed_count(Some("x"), Some("1"), 42), None);
    }
}
