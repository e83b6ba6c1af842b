//! The choices store in PostgreSQL (`[receipt] store = "postgres://..."`), which a team's
//! replicas share: a down-vote, a trusted site or a shopping switch made through one replica is
//! in force on every other within a second or two. This module owns the connection, the schema
//! and the change notifications; ops/choices.rs keeps the snapshot the decisions read and
//! decides nothing here.
//!
//! Each write is one transaction that ends with `NOTIFY nostalk_choices`. Each replica keeps a
//! listener thread with its own connection (`LISTEN nostalk_choices`) that reads every choice
//! again when told, and hands the rows to ops/choices.rs, which swaps in a new snapshot. The
//! request path never waits for the database: it reads that snapshot. When the database is
//! unreachable the snapshot stays as last read, [`PgStore::health`] says so (the `/readyz`
//! detail and `/metrics`), writes fail with a clear message, and the listener connects again
//! every two seconds. The sync `postgres` client runs its own small runtime, so its calls are
//! made on the listener thread, the CLI's thread or the blocking pool, never on a request's task.
//! A password missing from the URL is read from `PGPASSWORD`, as libpq does, so a Kubernetes
//! Secret can hold it apart from the config.

use super::choices::{Change, Rows};
use postgres::{Client, Config, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The notification channel every write ends with.
const CHANNEL: &str = "nostalk_choices";

/// At most this many rows per table (a team's people each keep a handful), the oldest changes
/// dropped first.
const MAX_ROWS: i64 = 100_000;

/// Whether the database answers, and why not when it does not.
#[derive(Debug, Default)]
pub struct Health {
    up: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn set(&self, error: Option<String>) {
        self.up.store(error.is_none(), Ordering::Relaxed);
        *crate::base::lock(&self.error) = error;
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The last failure's reason while the database is down.
    pub fn error(&self) -> Option<String> {
        crate::base::lock(&self.error).clone()
    }
}

pub struct PgStore {
    config: Config,
    name: String,
    writer: Mutex<Option<Client>>,
    health: Arc<Health>,
}

impl PgStore {
    /// A store for `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`); it connects when first
    /// used, so a database that is down at start is no reason not to serve.
    pub fn new(url: &str) -> Result<PgStore, String> {
        let mut config: Config = url.parse().map_err(|e| format!("not a PostgreSQL connection URL: {e}"))?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        config
            .connect_timeout(Duration::from_secs(2))
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(Duration::from_secs(10))
            .application_name("nostalk");
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        // Named without its password, for logs and messages.
        let name = format!("postgres://{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""));
        Ok(PgStore { config, name, writer: Mutex::new(None), health: Arc::default() })
    }

    /// The store's name, without a password.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    fn connect(&self) -> Result<Client, String> {
        let failed = |e: postgres::Error| format!("{}: {}", self.name, describe(&e));
        let mut client = self.config.connect(NoTls).map_err(failed)?;
        schema(&mut client).map_err(failed)?;
        Ok(client)
    }

    /// Every choice, read now.
    pub fn read(&self) -> Result<Rows, String> {
        self.with_writer(read)
    }

    /// Apply one change and tell every replica; every choice as it now is.
    pub fn apply(&self, change: Change<'_>) -> Result<Rows, String> {
        self.with_writer(|c| {
            let mut tx = c.transaction()?;
            write(&mut tx, change)?;
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])?;
            tx.commit()?;
            read(c)
        })
    }

    /// Run `f` on the writing connection, made anew when missing or closed; once more on a new
    /// connection when it fails on one the server closed (a restart of the database).
    fn with_writer<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>) -> Result<T, String> {
        let mut writer = crate::base::lock(&self.writer);
        let mut attempt = |writer: &mut Option<Client>| -> Result<Result<T, postgres::Error>, String> {
            let client = match writer {
                Some(c) if !c.is_closed() => c,
                _ => writer.insert(self.connect()?),
            };
            let done = f(client);
            if done.is_err() {
                *writer = None;
            }
            Ok(done)
        };
        let done = match attempt(&mut writer)? {
            Err(e) if e.is_closed() => attempt(&mut writer)?,
            done => done,
        };
        done.map_err(|e| format!("{}: {}", self.name, describe(&e)))
    }

    /// Follow other replicas' changes on a thread of its own until `stop`: `on_rows` gets every
    /// choice at each (re)connection and after each notification.
    pub fn listen(self: &Arc<Self>, on_rows: impl Fn(Rows) + Send + 'static, stop: Arc<AtomicBool>) {
        let store = self.clone();
        let spawned = std::thread::Builder::new().name("choices-listen".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = store.follow(&on_rows, &stop) {
                    if store.health.is_up() || store.health.error().is_none() {
                        tracing::warn!(store = %store.name, error = %e, "the choices store is unreachable: serving the choices last read, trying again every 2 s");
                    }
                    store.health.set(Some(e));
                }
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the choices store's listener: other replicas' changes are seen at restart");
        }
    }

    /// One connection's life: listen, read, and read again on each notification.
    fn follow(&self, on_rows: &impl Fn(Rows), stop: &AtomicBool) -> Result<(), String> {
        let mut client = self.connect()?;
        let failed = |e: postgres::Error| format!("{}: {}", self.name, describe(&e));
        client.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(failed)?;
        on_rows(read(&mut client).map_err(failed)?);
        if !self.health.is_up() {
            tracing::info!(store = %self.name, "the choices store is reachable; choices read");
        }
        self.health.set(None);
        let mut checked = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut told = false;
            {
                use postgres::fallible_iterator::FallibleIterator;
                let mut notes = client.notifications();
                // Wait for one (up to half a second), then take the others already here: one
                // read for a burst of changes, and none of the wait after the first.
                if notes.timeout_iter(Duration::from_millis(500)).next().map_err(failed)?.is_some() {
                    told = true;
                    while notes.iter().next().map_err(failed)?.is_some() {}
                }
            }
            if client.is_closed() {
                return Err(format!("{}: the connection was closed", self.name));
            }
            if told {
                on_rows(read(&mut client).map_err(failed)?);
            } else if checked.elapsed() > Duration::from_secs(5) {
                // A connection cut without a word (a partition) is found within seconds.
                client.is_valid(Duration::from_secs(2)).map_err(failed)?;
                checked = Instant::now();
            }
        }
        Ok(())
    }
}

/// An error as the database said it ("db error" alone says nothing), or as the client saw it.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// The tables, made once by whichever replica comes first (an advisory lock orders them).
fn schema(c: &mut Client) -> Result<(), postgres::Error> {
    c.batch_execute(
        "BEGIN;
         SELECT pg_advisory_xact_lock(7364726);
         CREATE TABLE IF NOT EXISTS choice_downvotes (device TEXT NOT NULL, source TEXT NOT NULL, votes INTEGER NOT NULL, changed BIGINT NOT NULL, PRIMARY KEY (device, source));
         CREATE TABLE IF NOT EXISTS choice_trusted (device TEXT NOT NULL, site TEXT NOT NULL, changed BIGINT NOT NULL, PRIMARY KEY (device, site));
         CREATE TABLE IF NOT EXISTS choice_shopping (device TEXT NOT NULL, site TEXT NOT NULL, until BIGINT NOT NULL, PRIMARY KEY (device, site));
         CREATE TABLE IF NOT EXISTS choice_learned (device TEXT NOT NULL, source TEXT NOT NULL, changed BIGINT NOT NULL, sites TEXT NOT NULL, PRIMARY KEY (device, source));
         COMMIT;",
    )
}

fn read(c: &mut Client) -> Result<Rows, postgres::Error> {
    let mut rows = Rows::default();
    for r in c.query("SELECT device, source, votes FROM choice_downvotes", &[])? {
        rows.downvotes.push((r.get(0), r.get(1), r.get::<_, i32>(2).max(0) as u32));
    }
    for r in c.query("SELECT device, site FROM choice_trusted", &[])? {
        rows.trusted.push((r.get(0), r.get(1)));
    }
    let now = crate::policy::overlay::now_secs() as i64;
    for r in c.query("SELECT device, site, until FROM choice_shopping WHERE until > $1", &[&now])? {
        rows.shopping.push((r.get(0), r.get(1), r.get::<_, i64>(2).max(0) as u64));
    }
    for r in c.query("SELECT source, sites FROM choice_learned WHERE device = ''", &[])? {
        rows.learned.push((r.get(0), r.get(1)));
    }
    Ok(rows)
}

fn write(tx: &mut postgres::Transaction<'_>, change: Change<'_>) -> Result<(), postgres::Error> {
    let st = change.statement();
    match (st.time, st.text) {
        (Some(t), Some(text)) => tx.execute(st.sql, &[&st.scope, &st.key, &t, &text])?,
        (Some(t), None) => tx.execute(st.sql, &[&st.scope, &st.key, &t])?,
        (None, _) => tx.execute(st.sql, &[&st.scope, &st.key])?,
    };
    let Some(table) = st.grows else { return Ok(()) };
    if table == "choice_shopping" {
        let now = crate::policy::overlay::now_secs() as i64;
        tx.execute("DELETE FROM choice_shopping WHERE until <= $1", &[&now])?;
    }
    let order = if table == "choice_shopping" { "until" } else { "changed" };
    tx.execute(
        &format!("DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} ORDER BY {order} DESC OFFSET $1)"),
        &[&MAX_ROWS],
    )?;
    Ok(())
}
