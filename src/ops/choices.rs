//! The person's choices, kept across restarts: down-voted ad sources, shopping switches with
//! their expiry, and sites trusted from the receipt page. The config file stays the person's own
//! and is never rewritten; these live in one small SQLite file (`[receipt] store`).
//!
//! Why SQLite (rusqlite, the library compiled in): `nostalk ads down HOST` must change a choice
//! while the proxy runs, from another process. SQLite takes concurrent readers and writers
//! across processes with its own locking and survives a power cut mid-write (a router's lot);
//! redb, the pure-Rust alternative, locks its file to one process. The proxy reads the store
//! into memory at start and again whenever another process changed it (`PRAGMA data_version`,
//! looked at every two seconds), so the request path reads a snapshot and never the disk.
//!
//! Choices are the household's (made by the operators, `[admin] allow`, or with the CLI) or one
//! device's (`[receipt] per_person`: a device without the operators' rights switches shopping,
//! trust and down-votes for itself alone), each row keyed by its device (`""` for the
//! household). The snapshot is a [`PersonChoices`] per scope (policy/overlay.rs): the decision
//! reads the household's and the asking device's as overlays; nothing here decides. Shopping switches live only here (at most
//! [`MAX_SHOPPING`] at once); a store that cannot be written still switches for this run.

use crate::policy::overlay::{now_secs as now, PersonChoices};
use arc_swap::ArcSwap;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most this many down-voted sources, trusted sites and shopping switches are kept (oldest
/// changes dropped first): a person's choices are a handful.
const MAX_ROWS: i64 = 2000;

/// At most this many sites in shopping mode at once; a person shops on a handful.
pub const MAX_SHOPPING: usize = 200;

/// Why a shopping switch was not set.
#[derive(Debug)]
pub enum ShoppingRefused {
    /// Too many sites are in shopping mode already.
    Full,
    /// It is on for this run, but the store could not keep it for the next start.
    NotKept(String),
}

/// Whose choice: the household's, or one device's (by its address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Household,
    Device(&'a str),
}

impl Scope<'_> {
    fn key(&self) -> &str {
        match self {
            Scope::Household => "",
            Scope::Device(d) => d,
        }
    }
}

/// Every scope's choices, read at once.
#[derive(Debug, Default)]
struct Snapshot {
    household: Arc<PersonChoices>,
    devices: HashMap<String, Arc<PersonChoices>>,
}

pub struct Choices {
    conn: Mutex<Connection>,
    path: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    threshold: u32,
    data_version: Mutex<i64>,
}

impl Choices {
    /// Open (or create, mode 0600) the store at `path`.
    pub fn open(path: &Path, threshold: u32) -> Result<Choices, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Self::with(conn, path, threshold)
    }

    /// A store that lives as long as the process: what the proxy uses when its file cannot be
    /// opened (it says so at start), so the page's controls still work until a restart.
    pub fn in_memory(threshold: u32) -> Choices {
        // An in-memory database needs no file and no space beyond the process's own.
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        Self::with(conn, Path::new(":memory:"), threshold).expect("the schema is created in memory")
    }

    fn with(conn: Connection, path: &Path, threshold: u32) -> Result<Choices, String> {
        conn.busy_timeout(Duration::from_secs(2)).map_err(|e| e.to_string())?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS choice_downvotes (device TEXT NOT NULL, source TEXT NOT NULL, votes INTEGER NOT NULL, changed INTEGER NOT NULL, PRIMARY KEY (device, source));
             CREATE TABLE IF NOT EXISTS choice_trusted (device TEXT NOT NULL, site TEXT NOT NULL, changed INTEGER NOT NULL, PRIMARY KEY (device, site));
             CREATE TABLE IF NOT EXISTS choice_shopping (device TEXT NOT NULL, site TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (device, site));",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        migrate(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let choices = Choices {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            threshold: threshold.max(1),
            data_version: Mutex::new(-1),
        };
        choices.reload().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(choices)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The household's choices.
    pub fn snapshot(&self) -> Arc<PersonChoices> {
        self.snapshot.load().household.clone()
    }

    /// One device's own choices, when it has made any.
    pub fn device(&self, device: &str) -> Option<Arc<PersonChoices>> {
        self.snapshot.load().devices.get(device).cloned()
    }

    /// The choices of `scope` (empty ones for a device that has made none).
    pub fn of(&self, scope: Scope<'_>) -> Arc<PersonChoices> {
        match scope {
            Scope::Household => self.snapshot(),
            Scope::Device(d) => self
                .device(d)
                .unwrap_or_else(|| Arc::new(PersonChoices { threshold: self.threshold, ..Default::default() })),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        crate::base::lock(&self.conn)
    }

    /// Read every choice into a new snapshot.
    pub fn reload(&self) -> rusqlite::Result<()> {
        let s = self.read()?;
        self.snapshot.store(Arc::new(s));
        Ok(())
    }

    fn read(&self) -> rusqlite::Result<Snapshot> {
        let conn = self.conn();
        let mut scopes: HashMap<String, PersonChoices> = HashMap::new();
        let threshold = self.threshold;
        fn of(scopes: &mut HashMap<String, PersonChoices>, device: String, threshold: u32) -> &mut PersonChoices {
            scopes.entry(device).or_insert_with(|| PersonChoices { threshold, ..Default::default() })
        }
        let mut q = conn.prepare("SELECT device, source, votes FROM choice_downvotes")?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?)))? {
            let (d, k, v) = row?;
            of(&mut scopes, d, threshold).downvotes.insert(k, v);
        }
        let mut q = conn.prepare("SELECT device, site FROM choice_trusted")?;
        for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (d, k) = row?;
            of(&mut scopes, d, threshold).trusted.insert(k);
        }
        let mut q = conn.prepare("SELECT device, site, until FROM choice_shopping WHERE until > ?1")?;
        for row in
            q.query_map([now() as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
        {
            let (d, k, v) = row?;
            of(&mut scopes, d, threshold).shopping.insert(k, v.max(0) as u64);
        }
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        *crate::base::lock(&self.data_version) = version;
        let household = Arc::new(scopes.remove("").unwrap_or(PersonChoices { threshold, ..Default::default() }));
        Ok(Snapshot { household, devices: scopes.into_iter().map(|(d, c)| (d, Arc::new(c))).collect() })
    }

    /// Reload when another process (the CLI) changed the store. True when it did.
    pub fn reload_if_changed(&self) -> bool {
        let version: Option<i64> =
            self.conn().query_row("PRAGMA data_version", [], |r| r.get(0)).optional().ok().flatten();
        let known = *crate::base::lock(&self.data_version);
        if version.is_some_and(|v| v != known) {
            return self.reload().is_ok();
        }
        false
    }

    fn write(&self, sql: &str, p: impl rusqlite::Params) -> Result<(), String> {
        let conn = self.conn();
        conn.execute(sql, p).map_err(|e| format!("{}: {e}", self.path.display()))?;
        for table in ["choice_downvotes", "choice_trusted", "choice_shopping"] {
            let _ = conn.execute(
                &format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT -1 OFFSET ?1)"),
                [MAX_ROWS],
            );
        }
        drop(conn);
        self.reload().map_err(|e| e.to_string())
    }

    /// One more down-vote for an ad source; its votes now.
    pub fn downvote(&self, source: &str) -> Result<u32, String> {
        self.downvote_in(Scope::Household, source)
    }

    /// One more down-vote for an ad source in `scope`; its votes there now.
    pub fn downvote_in(&self, scope: Scope<'_>, source: &str) -> Result<u32, String> {
        self.write(
            "INSERT INTO choice_downvotes (device, source, votes, changed) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT(device, source) DO UPDATE SET votes = votes + 1, changed = ?3",
            params![scope.key(), source, now() as i64],
        )?;
        Ok(self.of(scope).downvotes.get(source).copied().unwrap_or(0))
    }

    /// Forget an ad source's down-votes.
    pub fn restore(&self, source: &str) -> Result<(), String> {
        self.restore_in(Scope::Household, source)
    }

    pub fn restore_in(&self, scope: Scope<'_>, source: &str) -> Result<(), String> {
        self.write("DELETE FROM choice_downvotes WHERE device = ?1 AND source = ?2", params![scope.key(), source])
    }

    pub fn set_trusted(&self, site: &str, trusted: bool) -> Result<(), String> {
        self.set_trusted_in(Scope::Household, site, trusted)
    }

    pub fn set_trusted_in(&self, scope: Scope<'_>, site: &str, trusted: bool) -> Result<(), String> {
        if trusted {
            self.write(
                "INSERT INTO choice_trusted (device, site, changed) VALUES (?1, ?2, ?3)
                 ON CONFLICT(device, site) DO UPDATE SET changed = ?3",
                params![scope.key(), site, now() as i64],
            )
        } else {
            self.write("DELETE FROM choice_trusted WHERE device = ?1 AND site = ?2", params![scope.key(), site])
        }
    }

    /// Switch `site` to shopping for `duration` (zero: switched off), kept for the next start.
    /// Refused when [`MAX_SHOPPING`] other sites are on; when the store cannot be written the
    /// switch is still on for this run, and the error says it was not kept.
    pub fn set_shopping(&self, site: &str, duration: Duration) -> Result<(), ShoppingRefused> {
        self.set_shopping_in(Scope::Household, site, duration)
    }

    pub fn set_shopping_in(&self, scope: Scope<'_>, site: &str, duration: Duration) -> Result<(), ShoppingRefused> {
        let snap = self.of(scope);
        let live = snap.shopping.values().filter(|until| **until > now()).count();
        if !duration.is_zero() && live >= MAX_SHOPPING && !snap.is_shopping(site) {
            return Err(ShoppingRefused::Full);
        }
        let until = now() + duration.as_secs().max(1);
        let written = if duration.is_zero() {
            self.write("DELETE FROM choice_shopping WHERE device = ?1 AND site = ?2", params![scope.key(), site])
        } else {
            self.write(
                "INSERT INTO choice_shopping (device, site, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(device, site) DO UPDATE SET until = ?3",
                params![scope.key(), site, until as i64],
            )
        };
        written.map_err(|e| {
            // Not on disk: on in memory all the same, until the next start.
            let mut next = (*self.of(scope)).clone();
            if duration.is_zero() {
                next.shopping.remove(site);
            } else {
                next.shopping.insert(site.to_string(), until);
            }
            let old = self.snapshot.load();
            let mut snap = Snapshot { household: old.household.clone(), devices: old.devices.clone() };
            match scope {
                Scope::Household => snap.household = Arc::new(next),
                Scope::Device(d) => {
                    snap.devices.insert(d.to_string(), Arc::new(next));
                }
            }
            self.snapshot.store(Arc::new(snap));
            ShoppingRefused::NotKept(e)
        })
    }

    /// The shopping switches still on, with the time each has left, by site.
    pub fn shopping_left(&self) -> Vec<(String, Duration)> {
        let now = now();
        let snap = self.snapshot();
        let mut v: Vec<_> = snap
            .shopping
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(site, until)| (site.clone(), Duration::from_secs(until - now)))
            .collect();
        v.sort();
        v
    }

    /// Whether an ad source is down-voted past the threshold.
    pub fn is_downvoted(&self, source: &str) -> bool {
        self.snapshot().is_downvoted(source)
    }
}

/// A store made before devices had choices of their own keeps the household's in tables
/// without a device: move them over once.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let old: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('downvotes', 'trusted', 'shopping')",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS downvotes (source TEXT PRIMARY KEY, votes INTEGER NOT NULL, changed INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS trusted (site TEXT PRIMARY KEY, changed INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS shopping (site TEXT PRIMARY KEY, until INTEGER NOT NULL);
         INSERT OR IGNORE INTO choice_downvotes SELECT '', source, votes, changed FROM downvotes;
         INSERT OR IGNORE INTO choice_trusted SELECT '', site, changed FROM trusted;
         INSERT OR IGNORE INTO choice_shopping SELECT '', site, until FROM shopping;
         DROP TABLE downvotes; DROP TABLE trusted; DROP TABLE shopping;
         COMMIT;",
    )
}

/// Keeps the proxy's snapshot in step with changes the CLI makes while it runs.
pub fn watch(
    choices: Arc<Choices>,
    tasks: &tokio_util::task::TaskTracker,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
            let c = choices.clone();
            let changed = tokio::task::spawn_blocking(move || c.reload_if_changed()).await.unwrap_or(false);
            if changed {
                tracing::info!(store = %choices.path().display(), "choices changed from outside, reloaded");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("choices.sqlite3");
        let c = Choices::open(&path, 2).unwrap();
        assert_eq!(c.downvote("ads.example").unwrap(), 1);
        assert!(!c.is_downvoted("ads.example"), "below the threshold");
        c.downvote("ads.example").unwrap();
        c.set_trusted("shop.example", true).unwrap();
        c.set_shopping("store.example", Duration::from_secs(3600)).unwrap();
        drop(c);
        let c = Choices::open(&path, 2).unwrap();
        assert!(c.is_downvoted("ads.example"));
        assert_eq!(c.snapshot().threshold, 2);
        assert!(c.snapshot().trusted.contains("shop.example"));
        assert!(c.snapshot().is_shopping("store.example"));
        c.restore("ads.example").unwrap();
        assert!(!c.is_downvoted("ads.example"));
        c.set_shopping("store.example", Duration::ZERO).unwrap();
        assert!(c.shopping_left().is_empty());
    }

    #[test]
    fn a_device_s_choices_are_its_own_and_an_older_store_is_moved_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("choices.sqlite3");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE downvotes (source TEXT PRIMARY KEY, votes INTEGER NOT NULL, changed INTEGER NOT NULL);
                 CREATE TABLE trusted (site TEXT PRIMARY KEY, changed INTEGER NOT NULL);
                 CREATE TABLE shopping (site TEXT PRIMARY KEY, until INTEGER NOT NULL);
                 INSERT INTO trusted VALUES ('kept.example', 1);",
            )
            .unwrap();
        }
        let c = Choices::open(&path, 1).unwrap();
        assert!(c.snapshot().trusted.contains("kept.example"), "the household's choice is moved over");
        c.set_trusted_in(Scope::Device("192.168.1.20"), "shop.example", true).unwrap();
        c.set_shopping_in(Scope::Device("192.168.1.20"), "store.example", Duration::from_secs(60)).unwrap();
        c.downvote_in(Scope::Device("192.168.1.21"), "ads.example").unwrap();
        assert!(!c.snapshot().trusted.contains("shop.example"), "not the household's");
        assert!(c.device("192.168.1.20").unwrap().trusted.contains("shop.example"));
        assert!(c.device("192.168.1.20").unwrap().is_shopping("store.example"));
        assert!(c.device("192.168.1.21").unwrap().is_downvoted("ads.example"));
        assert!(c.device("192.168.1.22").is_none());
        drop(c);
        let c = Choices::open(&path, 1).unwrap();
        assert!(c.device("192.168.1.20").unwrap().trusted.contains("shop.example"), "kept across a restart");
        assert!(c.snapshot().trusted.contains("kept.example"));
    }

    #[test]
    fn the_shopping_switches_are_bounded() {
        let c = Choices::in_memory(1);
        for i in 0..MAX_SHOPPING {
            c.set_shopping(&format!("s{i}.test"), Duration::from_secs(60)).unwrap();
        }
        assert!(matches!(c.set_shopping("one-more.test", Duration::from_secs(60)), Err(ShoppingRefused::Full)));
        c.set_shopping("s0.test", Duration::from_secs(120)).expect("a site already on can be set again");
        c.set_shopping("s1.test", Duration::ZERO).unwrap();
        c.set_shopping("one-more.test", Duration::from_secs(60)).unwrap();
        assert_eq!(c.shopping_left().len(), MAX_SHOPPING);
    }

    #[test]
    fn a_change_from_another_process_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("choices.sqlite3");
        let proxy = Choices::open(&path, 1).unwrap();
        let cli = Choices::open(&path, 1).unwrap();
        cli.downvote("ads.example").unwrap();
        assert!(!proxy.is_downvoted("ads.example"));
        assert!(proxy.reload_if_changed());
        assert!(proxy.is_downvoted("ads.example"));
        assert!(!proxy.reload_if_changed(), "nothing new");
    }
}
