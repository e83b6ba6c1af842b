//! `check`'s preflight: what `run` needs from the machine, looked at without changing it. The
//! files the config names are there and readable (lists, extra trust roots), the CA directory
//! is usable by the user running the check (its key loads, or the directory can be made), the
//! list cache and the choices store can be written, and the listen address can be bound. Every problem is reported,
//! not only the first. An address already in use is a warning, not an error: a running nostalk
//! holds it, and checking a file before a reload is what `check` is for.

use crate::config::Config;
use crate::tls::{self, CertificateAuthority};
use std::path::Path;

/// One thing `run` would meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// An error stops `run`; a warning does not.
    pub error: bool,
    pub message: String,
}

pub fn check(cfg: &Config) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut error = |message: String| found.push(Finding { error: true, message });
    for l in &cfg.lists {
        if let Some(p) = &l.path {
            if let Err(e) = std::fs::File::open(p) {
                error(format!("lists: `{}`: cannot read {}: {e}", l.name, p.display()));
            }
        }
    }
    if let Err(e) = crate::ops::auth::Auth::new(cfg) {
        error(format!("auth.users: {e}"));
    }
    for root in &cfg.upstream.extra_roots {
        if let Err(e) = tls::upstream_client_config(std::slice::from_ref(root)) {
            error(format!("upstream.extra_roots: {e}"));
        }
    }
    if cfg.intercept.enabled {
        let dir = cfg.ca_dir();
        if dir.join(tls::CA_KEY_FILE).exists() {
            if let Err(e) = CertificateAuthority::load(&dir) {
                error(format!("ca.dir: the CA in {} cannot be used: {e}", dir.display()));
            }
        } else if let Err(e) = can_create(&dir) {
            error(format!("ca.dir: no CA in {} and none can be made there: {e}", dir.display()));
        }
    }
    if cfg.lists.iter().any(|l| l.url.is_some()) {
        if let Err(e) = can_create(&cfg.list_cache_dir()) {
            error(format!("policy.list_cache_dir: {}: {e}", cfg.list_cache_dir().display()));
        }
    }
    // The choices store: run keeps going without it (in memory), so a warning.
    let store = cfg.store_path();
    let store_ok = if crate::ops::choices::is_postgres(&store) {
        // Only its form: a database that is down now is no reason not to start (the choices
        // last read, none at first, are in force until it answers).
        if let Err(e) = crate::ops::choices_pg::PgStore::new(store.to_str().unwrap_or_default()) {
            error(format!("receipt.store: {e}"));
        }
        Ok(())
    } else {
        match store.parent() {
            Some(dir) if store.exists() => {
                std::fs::OpenOptions::new().write(true).open(&store).map(|_| ()).or_else(|_| can_create(dir))
            }
            Some(dir) => can_create(dir),
            None => Ok(()),
        }
    };
    if let Err(e) = store_ok {
        found.push(Finding {
            error: false,
            message: format!(
                "receipt.store: {} cannot be written ({e}): your choices would last only until a restart",
                store.display()
            ),
        });
    }
    let addr = cfg.listen_addr();
    match std::net::TcpListener::bind(addr) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => found.push(Finding {
            error: false,
            message: format!("server.listen: {addr} is in use now (by a running nostalk, if this file is for it)"),
        }),
        Err(e) => found.push(Finding { error: true, message: format!("server.listen: cannot listen on {addr}: {e}") }),
    }
    found
}

/// Whether `dir` exists as a directory this user can write, or could be made: its nearest
/// existing ancestor is a directory this user can write and enter.
fn can_create(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return writable(at),
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(_) => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => return Ok(()),
            },
        }
    }
}

#[cfg(unix)]
fn writable(dir: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return Err(format!("{} is not a path", dir.display()));
    };
    // SAFETY: access(2) reads the NUL-terminated path and touches nothing else.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(format!("{} is not writable by this user: {}", dir.display(), std::io::Error::last_os_error()))
    }
}

#[cfg(not(unix))]
fn writable(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_made_where_an_ancestor_is_writable_not_under_a_file() {
        let t = tempfile::tempdir().unwrap();
        assert!(can_create(&t.path().join("a/b/c")).is_ok());
        let file = t.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = can_create(&file.join("ca")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }
}
