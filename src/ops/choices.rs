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

pub use super::choices_pg::Health;
use super::choices_pg::PgStore;
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

/// Every choice, as rows: (scope, ad source, votes), (scope, site), (scope, site, until).
#[derive(Debug, Default)]
pub struct Rows {
    pub downvotes: Vec<(String, String, u32)>,
    pub trusted: Vec<(String, String)>,
    pub shopping: Vec<(String, String, u64)>,
    /// (learned tracker, the sites it was seen identifying on; "" when not a tracker).
    pub learned: Vec<(String, String)>,
}

/// One change to the choices, as either store applies it.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Downvote {
        scope: &'a str,
        source: &'a str,
        now: i64,
    },
    Restore {
        scope: &'a str,
        source: &'a str,
    },
    Trust {
        scope: &'a str,
        site: &'a str,
        now: i64,
    },
    Distrust {
        scope: &'a str,
        site: &'a str,
    },
    Shop {
        scope: &'a str,
        site: &'a str,
        until: i64,
    },
    StopShopping {
        scope: &'a str,
        site: &'a str,
    },
    /// A third party learned as a tracker (ops/learn.rs), with the sites it was seen on.
    Learn {
        source: &'a str,
        sites: &'a str,
        now: i64,
    },
    /// The person says a third party is not a tracker: forgotten, and never learned again.
    NotTracker {
        source: &'a str,
        now: i64,
    },
}

/// One change as SQL that both stores run: `$1` is the scope, `$2` the source or site, `$3`
/// the time when the change has one (SQLite numbers `$N` parameters by first use, PostgreSQL by
/// N; they agree because each statement uses them in order).
pub(crate) struct Statement<'a> {
    pub sql: &'static str,
    pub scope: &'a str,
    pub key: &'a str,
    pub time: Option<i64>,
    /// `$4`, for the one change that has text.
    pub text: Option<&'a str>,
    /// The table an addition grew (to prune back to `MAX_ROWS`), `None` for a removal.
    pub grows: Option<&'static str>,
}

impl<'a> Change<'a> {
    pub(crate) fn statement(self) -> Statement<'a> {
        let (sql, scope, key, time, grows) = match self {
            Change::Downvote { scope, source, now } => (
                "INSERT INTO choice_downvotes (device, source, votes, changed) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (device, source) DO UPDATE SET votes = choice_downvotes.votes + 1, changed = $3",
                scope,
                source,
                Some(now),
                Some("choice_downvotes"),
            ),
            Change::Restore { scope, source } => {
                ("DELETE FROM choice_downvotes WHERE device = $1 AND source = $2", scope, source, None, None)
            }
            Change::Trust { scope, site, now } => (
                "INSERT INTO choice_trusted (device, site, changed) VALUES ($1, $2, $3)
                 ON CONFLICT (device, site) DO UPDATE SET changed = $3",
                scope,
                site,
                Some(now),
                Some("choice_trusted"),
            ),
            Change::Distrust { scope, site } => {
                ("DELETE FROM choice_trusted WHERE device = $1 AND site = $2", scope, site, None, None)
            }
            Change::Shop { scope, site, until } => (
                "INSERT INTO choice_shopping (device, site, until) VALUES ($1, $2, $3)
                 ON CONFLICT (device, site) DO UPDATE SET until = $3",
                scope,
                site,
                Some(until),
                Some("choice_shopping"),
            ),
            Change::StopShopping { scope, site } => {
                ("DELETE FROM choice_shopping WHERE device = $1 AND site = $2", scope, site, None, None)
            }
            Change::Learn { source, sites, now } => return Statement::learned(source, now, sites),
            Change::NotTracker { source, now } => return Statement::learned(source, now, ""),
        };
        Statement { sql, scope, key, time, text: None, grows }
    }
}

impl<'a> Statement<'a> {
    /// A learned tracker's row (the household's: learning is not per device), with the sites it
    /// was seen on ("" for one that is not a tracker).
    fn learned(source: &'a str, now: i64, sites: &'a str) -> Statement<'a> {
        Statement {
            sql: "INSERT INTO choice_learned (device, source, changed, sites) VALUES ($1, $2, $3, $4)
                  ON CONFLICT (device, source) DO UPDATE SET changed = $3, sites = $4",
            scope: "",
            key: source,
            time: Some(now),
            text: Some(sites),
            grows: Some("choice_learned"),
        }
    }
}

/// Every scope's choices, read at once.
#[derive(Debug, Default)]
struct Snapshot {
    household: Arc<PersonChoices>,
    devices: HashMap<String, Arc<PersonChoices>>,
}

impl Snapshot {
    fn of(rows: Rows, threshold: u32) -> Snapshot {
        let mut scopes: HashMap<String, PersonChoices> = HashMap::new();
        let blank = || PersonChoices { threshold, ..Default::default() };
        for (d, k, v) in rows.downvotes {
            scopes.entry(d).or_insert_with(blank).downvotes.insert(k, v);
        }
        for (d, k) in rows.trusted {
            scopes.entry(d).or_insert_with(blank).trusted.insert(k);
        }
        for (d, k, v) in rows.shopping {
            scopes.entry(d).or_insert_with(blank).shopping.insert(k, v);
        }
        let household = scopes.entry(String::new()).or_insert_with(blank);
        household.learned = rows.learned.into_iter().map(|(k, v)| (k, Arc::from(v))).collect();
        let household = Arc::new(scopes.remove("").unwrap_or_else(blank));
        Snapshot { household, devices: scopes.into_iter().map(|(d, c)| (d, Arc::new(c))).collect() }
    }
}

/// Where the choices are kept: a SQLite file on one machine, or a PostgreSQL database a team's
/// replicas share (ops/choices_pg.rs).
enum Backend {
    Sqlite { conn: Mutex<Connection>, data_version: Mutex<i64> },
    Postgres(Arc<PgStore>),
}

pub struct Choices {
    backend: Backend,
    path: PathBuf,
    snapshot: Arc<ArcSwap<Snapshot>>,
    threshold: u32,
}

/// Whether `store` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres(store: &Path) -> bool {
    store.to_str().is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

impl Choices {
    /// Open the store `[receipt] store` names: a PostgreSQL database (`postgres://...`), or a
    /// SQLite file at `path`, created mode 0600 when missing.
    pub fn open(path: &Path, threshold: u32) -> Result<Choices, String> {
        if is_postgres(path) {
            return Self::postgres(path.to_str().unwrap_or_default(), threshold);
        }
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

    /// A shared store in PostgreSQL. Its first read is tried at once (on a thread of its own,
    /// which may wait for the database's connect timeout, 2 s); a database that is down at start
    /// leaves the choices empty until the listener reaches it ([`watch`]).
    fn postgres(url: &str, threshold: u32) -> Result<Choices, String> {
        let pg = Arc::new(PgStore::new(url).map_err(|e| format!("[receipt] store: {e}"))?);
        let first = std::thread::scope(|s| s.spawn(|| pg.read()).join());
        let snapshot = match first {
            Ok(Ok(rows)) => {
                pg.health().set(None);
                Snapshot::of(rows, threshold.max(1))
            }
            Ok(Err(e)) => {
                tracing::warn!(store = %pg.name(), error = %e, "the choices store is unreachable at start: no choices are in force until it answers");
                pg.health().set(Some(e));
                Snapshot::default()
            }
            Err(_) => Snapshot::default(),
        };
        Ok(Choices {
            path: PathBuf::from(pg.name()),
            backend: Backend::Postgres(pg),
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            threshold: threshold.max(1),
        })
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
             CREATE TABLE IF NOT EXISTS choice_shopping (device TEXT NOT NULL, site TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (device, site));
             CREATE TABLE IF NOT EXISTS choice_learned (device TEXT NOT NULL, source TEXT NOT NULL, changed INTEGER NOT NULL, sites TEXT NOT NULL, PRIMARY KEY (device, source));",
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        migrate(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let choices = Choices {
            backend: Backend::Sqlite { conn: Mutex::new(conn), data_version: Mutex::new(-1) },
            path: path.to_path_buf(),
            snapshot: Arc::default(),
            threshold: threshold.max(1),
        };
        choices.reload().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(choices)
    }

    /// The store's file, or its database's name (without a password).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Whether a shared store answers, and the last failure's reason when it does not; None
    /// for a SQLite file.
    pub fn health(&self) -> Option<&Arc<Health>> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg.health()),
            Backend::Sqlite { .. } => None,
        }
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

    /// Read every choice into a new snapshot.
    pub fn reload(&self) -> Result<(), String> {
        let rows = match &self.backend {
            Backend::Sqlite { conn, data_version } => {
                let conn = crate::base::lock(conn);
                let rows = read_sqlite(&conn).map_err(|e| e.to_string())?;
                let version: i64 =
                    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
                *crate::base::lock(data_version) = version;
                rows
            }
            Backend::Postgres(pg) => pg.read()?,
        };
        self.snapshot.store(Arc::new(Snapshot::of(rows, self.threshold)));
        Ok(())
    }

    /// Reload when another process (the CLI) changed a SQLite store. True when it did. (A shared
    /// store is followed by its listener instead.)
    pub fn reload_if_changed(&self) -> bool {
        let Backend::Sqlite { conn, data_version } = &self.backend else { return false };
        let version: Option<i64> =
            crate::base::lock(conn).query_row("PRAGMA data_version", [], |r| r.get(0)).optional().ok().flatten();
        let known = *crate::base::lock(data_version);
        if version.is_some_and(|v| v != known) {
            return self.reload().is_ok();
        }
        false
    }

    fn write(&self, change: Change<'_>) -> Result<(), String> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let conn = crate::base::lock(conn);
                write_sqlite(&conn, change).map_err(|e| format!("{}: {e}", self.path.display()))?;
                drop(conn);
                self.reload()
            }
            Backend::Postgres(pg) => {
                let rows = pg.apply(change)?;
                self.snapshot.store(Arc::new(Snapshot::of(rows, self.threshold)));
                Ok(())
            }
        }
    }

    /// One more down-vote for an ad source; its votes now.
    pub fn downvote(&self, source: &str) -> Result<u32, String> {
        self.downvote_in(Scope::Household, source)
    }

    /// One more down-vote for an ad source in `scope`; its votes there now.
    pub fn downvote_in(&self, scope: Scope<'_>, source: &str) -> Result<u32, String> {
        self.write(Change::Downvote { scope: scope.key(), source, now: now() as i64 })?;
        Ok(self.of(scope).downvotes.get(source).copied().unwrap_or(0))
    }

    /// Forget an ad source's down-votes.
    pub fn restore(&self, source: &str) -> Result<(), String> {
        self.restore_in(Scope::Household, source)
    }

    pub fn restore_in(&self, scope: Scope<'_>, source: &str) -> Result<(), String> {
        self.write(Change::Restore { scope: scope.key(), source })
    }

    pub fn set_trusted(&self, site: &str, trusted: bool) -> Result<(), String> {
        self.set_trusted_in(Scope::Household, site, trusted)
    }

    pub fn set_trusted_in(&self, scope: Scope<'_>, site: &str, trusted: bool) -> Result<(), String> {
        if trusted {
            self.write(Change::Trust { scope: scope.key(), site, now: now() as i64 })
        } else {
            self.write(Change::Distrust { scope: scope.key(), site })
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
            self.write(Change::StopShopping { scope: scope.key(), site })
        } else {
            self.write(Change::Shop { scope: scope.key(), site, until: until as i64 })
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

    /// Learn `source` as a tracker, seen on `sites` ("a, b and c").
    pub fn learn(&self, source: &str, sites: &str) -> Result<(), String> {
        self.write(Change::Learn { source, sites, now: now() as i64 })
    }

    /// Forget a learned tracker, and never learn it again: the person says it is not one.
    pub fn not_a_tracker(&self, source: &str) -> Result<(), String> {
        self.write(Change::NotTracker { source, now: now() as i64 })
    }

    /// The learned trackers with the sites each was seen on, by name.
    pub fn learned(&self) -> Vec<(String, String)> {
        let snap = self.snapshot();
        let mut v: Vec<_> =
            snap.learned.iter().filter(|(_, s)| !s.is_empty()).map(|(k, s)| (k.clone(), s.to_string())).collect();
        v.sort();
        v
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

fn read_sqlite(conn: &Connection) -> rusqlite::Result<Rows> {
    let mut rows = Rows::default();
    let mut q = conn.prepare("SELECT device, source, votes FROM choice_downvotes")?;
    for row in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        rows.downvotes.push(row?);
    }
    let mut q = conn.prepare("SELECT device, site FROM choice_trusted")?;
    for row in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        rows.trusted.push(row?);
    }
    let mut q = conn.prepare("SELECT device, site, until FROM choice_shopping WHERE until > ?1")?;
    for row in q.query_map([now() as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))? {
        rows.shopping.push(row?);
    }
    let mut q = conn.prepare("SELECT source, sites FROM choice_learned WHERE device = ''")?;
    for row in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
        rows.learned.push(row?);
    }
    Ok(rows)
}

fn write_sqlite(conn: &Connection, change: Change<'_>) -> rusqlite::Result<()> {
    let st = change.statement();
    match (st.time, st.text) {
        (Some(t), Some(text)) => conn.execute(st.sql, params![st.scope, st.key, t, text]),
        (Some(t), None) => conn.execute(st.sql, params![st.scope, st.key, t]),
        (None, _) => conn.execute(st.sql, params![st.scope, st.key]),
    }?;
    if let Some(table) = st.grows {
        let _ = conn.execute(
            &format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT -1 OFFSET ?1)"
            ),
            [MAX_ROWS],
        );
    }
    Ok(())
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

/// Keeps the proxy's snapshot in step with changes made elsewhere: the CLI's, on a SQLite file
/// (looked for every two seconds), or other replicas', on a shared store (told at once).
pub fn watch(
    choices: Arc<Choices>,
    tasks: &tokio_util::task::TaskTracker,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Backend::Postgres(pg) = &choices.backend {
        let (snapshot, threshold) = (choices.snapshot.clone(), choices.threshold);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        pg.listen(move |rows| snapshot.store(Arc::new(Snapshot::of(rows, threshold))), stopped.clone());
        tasks.spawn(async move {
            let _ = stop.changed().await;
            stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        return;
    }
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
