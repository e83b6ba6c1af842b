//! Reload without a restart: on SIGHUP, or when the config file changes (looked at every
//! second; a change is taken once the file has stayed the same for a second, so an editor's
//! half-written file is not read), the config file is read again and checked whole; the
//! policy (lists, trusted sites, ad mode and categories, parameters and cookies) is rebuilt
//! from it on a blocking thread, off the hot path, and swapped in at once, so requests in
//! flight finish on the policy they started with and the next ones take the new one. A file
//! with any error is refused, every error logged, and the policy in force stays. What is
//! built once at start (the listener and its address, access lists, the CA, the upstream
//! client, timeouts, subscriptions) changes only on a restart: a reload that changes those
//! sections says so in the log.

use crate::config::Config;
use crate::policy::Policy;
use crate::proxy::state::Shared;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

/// Reload on every SIGHUP for as long as the process runs (the handler is installed now, so
/// a SIGHUP never takes its default action, which ends the process).
pub fn on_sighup(shared: Arc<Shared>, path: Option<PathBuf>) {
    if let Some(p) = &path {
        *crate::base::lock(&shared.config_tables) = tables_of(p);
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot catch SIGHUP; reload needs a restart");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                info!("SIGHUP received: reloading the config");
                let (shared, path) = (shared.clone(), path.clone());
                let _ = tokio::task::spawn_blocking(move || reload(&shared, path.as_deref())).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (shared, path);
}

/// Reload when the file at `path` changes (its modification time or size), once it has stayed
/// unchanged for one look.
pub fn watch(shared: Arc<Shared>, path: PathBuf) {
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        let mut changed_to = None;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = stamp(&path);
            if now == seen {
                changed_to = None;
                continue;
            }
            if changed_to != Some(now) {
                // Changed since the last look: wait until it stays so.
                changed_to = Some(now);
                continue;
            }
            seen = now;
            changed_to = None;
            info!(file = %path.display(), "the config file changed: reloading");
            let (shared, path) = (shared.clone(), path.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&shared, Some(&path))).await;
        }
    });
}

/// Read the config again (or take the one in force when there is no file) and swap in the
/// policy built from it. Returns whether the new policy is in force.
pub fn reload(shared: &Shared, path: Option<&Path>) -> bool {
    let started = std::time::Instant::now();
    let tables = match path.map(|p| (p, whole(shared, p))) {
        Some((p, Err(why))) => {
            warn!(file = %p.display(), "reload refused: {why}; the config in force stays");
            return false;
        }
        Some((_, Ok(tables))) => tables,
        None => None,
    };
    let config = match path {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                for problem in e.to_string().lines() {
                    warn!(file = %p.display(), problem, "config error");
                }
                warn!(file = %p.display(), "reload refused: the config has errors; the one in force stays");
                return false;
            }
        },
        None => (**shared.policy_config.load()).clone(),
    };
    let policy = match Policy::build(&config, &shared.lists.loaded()) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "reload refused: the policy does not build; the one in force stays");
            return false;
        }
    };
    let restart = needs_restart(&shared.config, &config);
    if tables.is_some() {
        *crate::base::lock(&shared.config_tables) = tables;
    }
    shared.policy.store(Arc::new(policy));
    shared.groups.store(Arc::new(crate::ops::groups::Groups::new(&config)));
    shared.policy_config.store(Arc::new(config));
    crate::ops::return_free_memory();
    info!(took = ?started.elapsed(), "config reloaded: the new policy is in force");
    if !restart.is_empty() {
        warn!(sections = ?restart, "these sections changed and take effect only on a restart");
    }
    true
}

/// The tables (`[server]`, `[policy]`...) of a config file's text; None when it is not TOML.
pub fn tables_of(path: &Path) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    Some(table.into_iter().filter(|(_, v)| v.is_table() || v.is_array()).map(|(k, _)| k).collect())
}

/// Whether the file at `path` looks whole: an editor or a deployment that writes the file in
/// place is seen mid-write by the watcher, and an empty file or one cut before its `[policy]`
/// would otherwise drop the policy to the defaults. A file with no table at all, or without one
/// the file in force had, is refused (a section dropped on purpose takes effect on a restart).
/// Returns the file's tables, noted once the file is taken.
fn whole(shared: &Shared, path: &Path) -> Result<Option<BTreeSet<String>>, String> {
    let Some(now) = tables_of(path) else { return Ok(None) };
    if now.is_empty() {
        return Err("the file has no [section] at all (empty, or cut short while being written?)".into());
    }
    let before = crate::base::lock(&shared.config_tables);
    if let Some(missing) = before.as_ref().and_then(|b| b.iter().find(|t| !now.contains(*t))) {
        return Err(format!(
            "the file has lost its [{missing}] (cut short while being written?); restart nostalk to drop a section on purpose"
        ));
    }
    Ok(Some(now))
}

/// The sections of `new` that differ from what the server started with and that a reload
/// does not apply.
fn needs_restart(started: &Config, new: &Config) -> Vec<&'static str> {
    let subscriptions = |c: &Config| c.lists.iter().filter(|l| l.url.is_some()).cloned().collect::<Vec<_>>();
    [
        ("server", started.server != new.server),
        ("ca", started.ca != new.ca),
        ("intercept", started.intercept != new.intercept),
        ("upstream", started.upstream != new.upstream),
        ("rewrite", started.rewrite != new.rewrite),
        ("access", started.access != new.access),
        ("admin", started.admin != new.admin),
        ("receipt", started.receipt != new.receipt),
        ("auth", started.auth != new.auth),
        ("transparent", started.transparent != new.transparent),
        ("learn", started.learn != new.learn),
        ("lists (subscriptions)", subscriptions(started) != subscriptions(new)),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_built_at_start_are_named_when_changed() {
        let a = Config::default();
        let mut b = a.clone();
        b.policy.trusted_sites.push("bank.example".into());
        assert!(needs_restart(&a, &b).is_empty(), "policy changes apply on reload");
        b.server.max_connections = 7;
        b.access.allow.push("10.0.0.0/8".into());
        assert_eq!(needs_restart(&a, &b), ["server", "access"]);
    }
}
