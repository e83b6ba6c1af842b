//! A real PostgreSQL server for the tests of the shared choices store: Debian's package
//! (`./scripts/test` installs it), a new cluster in a temporary directory, listening on a free
//! loopback port with trust authentication, run as the `postgres` user when the tests run as
//! root (PostgreSQL refuses to run as root). Stopped (fast shutdown) when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The newest installed server's bin directory (`/usr/lib/postgresql/N/bin`).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` user (or `nobody`), when the tests run as root.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    ["postgres", "nobody"].iter().find_map(|name| {
        let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
        let f: Vec<&str> = line.split(':').collect();
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
}

impl Postgres {
    /// A new cluster, started; None (with a message) when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            eprintln!("SKIPPED: PostgreSQL is not installed (./scripts/test installs Debian's postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let owner = unprivileged();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = Self::as_owner(owner, Command::new(bin.join("initdb")))
            .args(["-D", data.to_str().unwrap(), "-U", "nostalk", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut pg = Postgres { port, bin, dir, owner, child: None };
        pg.run();
        Some(pg)
    }

    fn as_owner(owner: Option<(u32, u32)>, mut cmd: Command) -> Command {
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Start the server (again) and wait until it takes connections.
    pub fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid)).unwrap();
        }
        let child = Self::as_owner(self.owner, Command::new(self.bin.join("postgres")))
            .args(["-D", self.data().to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-k", self.dir.path().to_str().unwrap(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "PostgreSQL did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (fast shutdown: clients are disconnected) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The connection URL nostalk's `[receipt] store` takes.
    pub fn url(&self) -> String {
        format!("postgres://nostalk@127.0.0.1:{}/postgres", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
