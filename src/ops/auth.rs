//! Proxy authentication for a team (`[auth]`, `[[groups]]`): who a proxied request is from,
//! from its `Proxy-Authorization: Basic` header, checked against the users file (one
//! `user:$argon2id$...` line per user, as `nostalk passwd` writes it); and the policy of that
//! user's group (its [`GroupRules`], which the decision applies: policy/overlay.rs). Argon2 is slow on
//! purpose, so a credential once verified is remembered by its SHA-256 (never the password),
//! and checks run on the blocking pool two at a time, so a flood of wrong passwords costs at
//! most two threads. The file is re-read when it changes (checked at most every few seconds):
//! a user added by `nostalk passwd` can sign in without a reload, and one removed is
//! forgotten. The Basic scheme and the file format are a few lines each, written here; the
//! hashing is the argon2 crate's.
//!
//! Guessing is slow and says nothing: a name not in the file is checked against a dummy hash
//! of the same cost, so timing tells no one which names exist. Each client gets
//! [`FREE_TRIES`] wrong passwords; past them it must wait, twice as long after each further
//! failure (up to [`LONGEST_WAIT`]), and a try made sooner is refused without hashing at all,
//! so a flood costs the proxy nothing and other users' sign-ins do not queue behind it. A
//! client's slate is wiped by its right password, or after [`FORGET_FAILURES`] without one.

use crate::config::Config;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often, at most, the users file is looked at for changes.
const RECHECK: Duration = Duration::from_secs(2);
/// Verified credentials remembered.
const REMEMBERED: usize = 4096;
/// Password checks running at once.
const CHECKS_AT_ONCE: usize = 2;

/// Wrong passwords a client may try before it has to wait.
pub const FREE_TRIES: u32 = 5;
/// The first wait past the free tries; it doubles with each further failure.
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest a client is made to wait between tries.
pub const LONGEST_WAIT: Duration = Duration::from_secs(60);
/// A client's failures are forgotten after this long without one.
const FORGET_FAILURES: Duration = Duration::from_secs(15 * 60);
/// Clients whose failures are kept (the longest quiet are dropped first past it).
const MAX_FAILING_CLIENTS: usize = 4096;

/// Who sent a request, once authenticated.
#[derive(Debug)]
pub struct Who {
    pub user: String,
}

struct Users {
    modified: Option<SystemTime>,
    looked: Instant,
    hashes: HashMap<String, String>,
}

pub struct Auth {
    path: PathBuf,
    realm: String,
    /// Name the user and group in the decision log.
    pub log_users: bool,
    /// Name a guessing client's address in the log (not with `[receipt] per_person = false`,
    /// where no client address is kept anywhere).
    log_clients: bool,
    users: Mutex<Users>,
    remembered: quick_cache::sync::Cache<[u8; 32], Arc<Who>>,
    checks: Arc<tokio::sync::Semaphore>,
    /// A hash of no one's password, checked for a name not in the file (same cost).
    dummy: String,
    /// Per client: wrong passwords in a row, and when the last came.
    failures: Mutex<HashMap<std::net::IpAddr, (u32, Instant)>>,
}

impl Auth {
    /// The authenticator `[auth]` asks for, or None when it asks for none.
    pub fn new(config: &Config) -> Result<Option<Auth>, String> {
        let Some(path) = &config.auth.users else { return Ok(None) };
        let (hashes, modified) = read_users(path)?;
        Ok(Some(Auth {
            path: path.clone(),
            realm: config.auth.realm.replace(['"', '\\'], ""),
            log_users: config.auth.log_users,
            log_clients: config.receipt.per_person,
            users: Mutex::new(Users { modified, looked: Instant::now(), hashes }),
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
            checks: Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)),
            dummy: hash_password(&format!("{:x}", rand_u64()))?,
            failures: Mutex::default(),
        }))
    }

    /// Who the request's `Proxy-Authorization` names, if its password is right. `client`'s
    /// wrong tries are counted; one made before its wait is over is refused unchecked.
    pub async fn check(
        &self,
        header: Option<&http::HeaderValue>,
        client: Option<std::net::IpAddr>,
    ) -> Option<Arc<Who>> {
        let header = header?.as_bytes();
        self.look_for_changes();
        let key: [u8; 32] = sha2::Sha256::digest(header).into();
        if let Some(who) = self.remembered.get(&key) {
            return Some(who);
        }
        let (user, password) = parse_basic(header)?;
        if let Some(c) = client {
            if self.must_wait(c) {
                if self.log_clients {
                    tracing::debug!(client = %c, "a sign-in refused unchecked: too many wrong passwords");
                } else {
                    tracing::debug!("a sign-in refused unchecked: too many wrong passwords");
                }
                return None;
            }
        }
        let known = crate::base::lock(&self.users).hashes.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.dummy.clone());
        let _permit = self.checks.acquire().await.ok()?;
        let right = tokio::task::spawn_blocking(move || verify(&password, &hash)).await.unwrap_or(false);
        if !right || known.is_none() {
            if let Some(c) = client {
                self.failed(c);
            }
            return None;
        }
        if let Some(c) = client {
            crate::base::lock(&self.failures).remove(&c);
        }
        let who = Arc::new(Who { user });
        self.remembered.insert(key, who.clone());
        Some(who)
    }

    /// Whether `client` has failed past its free tries and its wait is not over.
    fn must_wait(&self, client: std::net::IpAddr) -> bool {
        let failures = crate::base::lock(&self.failures);
        match failures.get(&client) {
            Some(&(n, last)) if n >= FREE_TRIES && last.elapsed() < FORGET_FAILURES => last.elapsed() < wait_after(n),
            _ => false,
        }
    }

    fn failed(&self, client: std::net::IpAddr) {
        let mut failures = crate::base::lock(&self.failures);
        if failures.len() >= MAX_FAILING_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, (_, last)| last.elapsed() < FORGET_FAILURES);
            if failures.len() >= MAX_FAILING_CLIENTS {
                if let Some(quietest) = failures.iter().min_by_key(|(_, (_, last))| *last).map(|(ip, _)| *ip) {
                    failures.remove(&quietest);
                }
            }
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET_FAILURES {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        if entry.0 == FREE_TRIES {
            if self.log_clients {
                tracing::warn!(client = %client, "{FREE_TRIES} wrong passwords in a row; this client must now wait between tries");
            } else {
                tracing::warn!("{FREE_TRIES} wrong passwords in a row; a client must now wait between tries");
            }
        }
    }

    /// Re-read the users file when it changed; forget every remembered credential then.
    fn look_for_changes(&self) {
        let mut users = crate::base::lock(&self.users);
        if users.looked.elapsed() < RECHECK {
            return;
        }
        users.looked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == users.modified {
            return;
        }
        match read_users(&self.path) {
            Ok((hashes, modified)) => {
                tracing::info!(users = hashes.len(), file = %self.path.display(), "the users file changed; re-read");
                *users = Users { modified, looked: Instant::now(), hashes };
            }
            Err(e) => {
                // Nobody signs in against a file that cannot be read.
                tracing::warn!(error = %e, "the users file cannot be read; no one is let in until it can");
                *users = Users { modified, looked: Instant::now(), hashes: HashMap::new() };
            }
        }
        self.remembered.clear();
    }

    /// The `Proxy-Authenticate` value of the 407 a browser answers with its password prompt.
    pub fn challenge(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(&format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)).ok()
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// How long a client that has failed `n` times must wait after its last failure.
fn wait_after(n: u32) -> Duration {
    if n < FREE_TRIES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_TRIES).min(16);
    (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT)
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // A dummy nobody's password matches: without randomness, a fixed one of 16 bytes of
    // nothing still matches no real password's hash by accident.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// The argon2id hash (PHC string) of a password, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

type UserHashes = HashMap<String, String>;

fn read_users(path: &Path) -> Result<(UserHashes, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut hashes = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if !user.is_empty() && PasswordHash::new(hash).is_ok() => {
                hashes.insert(user.to_string(), hash.to_string());
            }
            _ => return Err(format!("{}:{}: not a `user:argon2-hash` line", path.display(), n + 1)),
        }
    }
    Ok((hashes, modified))
}

/// Add `user` with `password` to the users file, or change their password. A new file is
/// readable by its owner alone; a file that exists keeps its mode and group (an operator who
/// made it the service's group's to read, 0640 root:nostalk, keeps it so).
pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), String> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err("a user name cannot be empty or hold `:` or a line break".into());
    }
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let kept = std::fs::metadata(path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.mode() & 0o777, m.gid())
    });
    let hash = hash_password(password)?;
    let mut out: Vec<String> =
        old.lines().filter(|l| l.split_once(':').is_none_or(|(u, _)| u != user)).map(str::to_string).collect();
    out.push(format!("{user}:{hash}"));
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        if let Some((mode, gid)) = kept {
            // The group first, then the mode: the hashes are never readable by a group they
            // were not meant for, even for a moment.
            std::os::unix::fs::fchown(&f, None, Some(gid)).map_err(|e| format!("{}: {e}", tmp.display()))?;
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        f.write_all((out.join("\n") + "\n").as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> http::HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        http::HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    fn config(users: &Path, groups: &str) -> Config {
        Config::parse(&format!("[auth]\nusers = {:?}\n{groups}", users.display().to_string())).unwrap()
    }

    #[tokio::test]
    async fn the_right_password_names_the_user_and_a_wrong_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        set_password(&users, "alice", "correct horse").unwrap();
        set_password(&users, "bob", "battery staple").unwrap();
        let cfg = config(&users, "[[groups]]\nname = \"kids\"\nmembers = [\"alice\"]\nads = \"block\"\n");
        let auth = Auth::new(&cfg).unwrap().unwrap();
        let who = auth.check(Some(&basic("alice", "correct horse")), None).await.unwrap();
        assert_eq!(who.user, "alice");
        let who = auth.check(Some(&basic("bob", "battery staple")), None).await.unwrap();
        assert_eq!(who.user, "bob");
        assert!(auth.check(Some(&basic("alice", "battery staple")), None).await.is_none());
        assert!(auth.check(Some(&basic("carol", "x")), None).await.is_none());
        assert!(auth.check(None, None).await.is_none());
        assert!(auth.check(Some(&http::HeaderValue::from_static("Bearer abc")), None).await.is_none());
        // The file keeps hashes, never a password, and is its owner's alone.
        let text = std::fs::read_to_string(&users).unwrap();
        assert!(text.contains("alice:$argon2id$") && !text.contains("correct horse"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&users).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_users_file_made_the_service_group_s_keeps_its_group_and_mode_when_a_password_changes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, "").unwrap();
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o640)).unwrap();
        // The group of a service user where the test may give one (as root), else the caller's own.
        // SAFETY: geteuid(2) and getegid(2) only read the process's ids.
        let gid = if unsafe { libc::geteuid() } == 0 { 64901 } else { unsafe { libc::getegid() } };
        std::os::unix::fs::chown(&users, None, Some(gid)).unwrap();
        set_password(&users, "alice", "correct horse").unwrap();
        set_password(&users, "bob", "battery staple").unwrap();
        let meta = std::fs::metadata(&users).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.gid()), (0o640, gid));
        assert!(std::fs::read_to_string(&users).unwrap().lines().count() == 2);
    }

    #[tokio::test]
    async fn a_client_past_its_free_tries_waits_longer_after_each_failure_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        set_password(&users, "alice", "correct horse").unwrap();
        let auth = Auth::new(&config(&users, "")).unwrap().unwrap();
        let (flooder, alice): (std::net::IpAddr, std::net::IpAddr) = ([10, 0, 0, 66].into(), [10, 0, 0, 2].into());
        for _ in 0..FREE_TRIES {
            assert!(auth.check(Some(&basic("alice", "guess")), Some(flooder)).await.is_none());
        }
        assert!(auth.must_wait(flooder), "past the free tries, the next must wait");
        // Even the right password is not looked at until the wait is over.
        assert!(auth.check(Some(&basic("alice", "correct horse")), Some(flooder)).await.is_none());
        assert!(auth.check(Some(&basic("alice", "correct horse")), Some(alice)).await.is_some(), "another client");
        assert_eq!(wait_after(FREE_TRIES), FIRST_WAIT);
        assert_eq!(wait_after(FREE_TRIES + 2), FIRST_WAIT * 4);
        assert_eq!(wait_after(FREE_TRIES + 40), LONGEST_WAIT);
        tokio::time::sleep(FIRST_WAIT).await;
        assert!(auth.check(Some(&basic("alice", "correct horse")), Some(flooder)).await.is_some(), "after the wait");
        assert!(!auth.must_wait(flooder), "the right password wipes the slate");
    }

    #[test]
    fn a_changed_password_replaces_the_old_line() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        set_password(&users, "alice", "one").unwrap();
        set_password(&users, "alice", "two").unwrap();
        let (hashes, _) = read_users(&users).unwrap();
        assert_eq!(hashes.len(), 1);
        assert!(verify("two", &hashes["alice"]) && !verify("one", &hashes["alice"]));
        assert!(set_password(&users, "a:b", "x").is_err());
        std::fs::write(&users, "alice:plaintext\n").unwrap();
        assert!(read_users(&users).unwrap_err().contains(":1:"));
    }
}
