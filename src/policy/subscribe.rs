//! List subscriptions: each `[[lists]]` entry with a `url` is fetched through the upstream
//! client, cached on disk with its ETag/Last-Modified, and refreshed in the background on its
//! interval with a conditional request. A download that fails, or a body that is not a filter
//! list (an HTML page, no rules, or under a tenth of the last copy's rules), keeps the last good
//! copy in force and says so in the list's state. A change rebuilds the policy off the hot path
//! and swaps it whole.
//!
//! The network is not this module's: a subscription is given a [`ListFetcher`] (in the server,
//! the proxy's upstream client) and the policy's swap, so the decision model needs nothing of
//! the plumbing above it.

use super::lists::{count_rules, ListKind, ListSource, Origin};
use super::Policy;
use crate::config::{Config, ListConfig};
use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A download in flight.
pub type Fetching<'a> = Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, String>> + Send + 'a>>;

/// How a list's URL is fetched.
pub trait ListFetcher: Send + Sync {
    /// Send `req` (a GET, conditional when a copy is held) and give back the response; a
    /// successful one with its body read whole, up to `limit` bytes (past it, an error). The
    /// error is a reason a person can read.
    fn fetch(&self, req: http::Request<()>, limit: usize) -> Fetching<'_>;
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Meta {
    etag: Option<String>,
    last_modified: Option<String>,
    /// Seconds since the epoch of the last successful check (200 or 304).
    checked: Option<u64>,
    /// Seconds since the epoch when the cached copy was downloaded.
    fetched: Option<u64>,
}

struct Sub {
    cfg: ListConfig,
    kind: ListKind,
    refresh: Duration,
    text_path: PathBuf,
    meta_path: PathBuf,
    state: Mutex<SubState>,
}

struct SubState {
    /// The copy in force. Its text is kept on disk (the list cache) rather than in memory once
    /// written there (`on_disk`): it is read again only for a rebuild, and freed after.
    source: Option<ListSource>,
    on_disk: bool,
    last_error: Option<String>,
    failures: u64,
    meta: Meta,
    status: String,
    last_attempt: Option<SystemTime>,
}

/// What `nostalk lists` shows of a subscription.
#[derive(Debug, Clone)]
pub struct SubSummary {
    pub name: String,
    pub url: String,
    pub rules: usize,
    pub age: Option<Duration>,
    pub state: String,
    /// A copy is in force.
    pub in_force: bool,
    /// Why the last download failed, when it did; None once one succeeds.
    pub last_error: Option<String>,
    /// Failed downloads since start.
    pub failures: u64,
}

pub struct Subscriptions {
    subs: Vec<Sub>,
    /// The largest list text read back from the cache.
    max_bytes: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Updated,
    NotModified,
    Failed(String),
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn safe_file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Subscriptions {
    /// Load the cached copy of every subscribed list; nothing is fetched here.
    pub fn new(cfg: &Config) -> Subscriptions {
        let dir = cfg.list_cache_dir();
        let subs = cfg
            .lists
            .iter()
            .filter(|l| l.url.is_some())
            .map(|l| {
                let base = safe_file_name(&l.name);
                let text_path = dir.join(format!("{base}.txt.gz"));
                let meta_path = dir.join(format!("{base}.meta.json"));
                let kind = ListKind::from_verdict(l.verdict);
                let meta: Meta =
                    std::fs::read(&meta_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
                // The uncompressed copy of an earlier version is read once, then replaced (kept in
                // memory when the cache cannot take the compressed one).
                let max = cfg.max_list_bytes();
                let (text, on_disk) = match super::gz_file::read_text(&text_path, max) {
                    Ok(text) => (Some(text), true),
                    Err(_) => match super::lists::read_capped(&dir.join(format!("{base}.txt")), max) {
                        Ok(text) => {
                            let on_disk =
                                super::gz_file::write(&text_path, text.as_bytes(), super::gz_file::Level::Text).is_ok();
                            if on_disk {
                                let _ = std::fs::remove_file(dir.join(format!("{base}.txt")));
                            }
                            (Some(text), on_disk)
                        }
                        Err(_) => (None, false),
                    },
                };
                let source = text.map(|t| {
                    let src = ListSource::new(&l.name, kind, t, Origin::Url(l.url.clone().unwrap_or_default()));
                    if on_disk {
                        src.without_text()
                    } else {
                        src
                    }
                });
                let status =
                    if source.is_some() { "cached copy loaded".to_string() } else { "not fetched yet".to_string() };
                Sub {
                    refresh: l.refresh.get(),
                    cfg: l.clone(),
                    kind,
                    text_path,
                    meta_path,
                    state: Mutex::new(SubState {
                        on_disk,
                        source,
                        meta,
                        status,
                        last_attempt: None,
                        last_error: None,
                        failures: 0,
                    }),
                }
            })
            .collect();
        Subscriptions { subs, max_bytes: cfg.max_list_bytes() }
    }

    fn lock(sub: &Sub) -> std::sync::MutexGuard<'_, SubState> {
        crate::base::lock(&sub.state)
    }

    /// The lists in force now (last good copies), with their texts (read from the list cache).
    pub fn loaded(&self) -> Vec<ListSource> {
        self.subs
            .iter()
            .filter_map(|s| {
                let (source, on_disk) = {
                    let st = Self::lock(s);
                    (st.source.clone()?, st.on_disk)
                };
                if !on_disk {
                    return Some(source);
                }
                match super::gz_file::read_text(&s.text_path, self.max_bytes) {
                    Ok(text) => Some(ListSource { text: text.into(), ..source }),
                    Err(e) => {
                        tracing::warn!(list = %s.cfg.name, file = %s.text_path.display(), error = %e,
                            "the list's cached copy cannot be read; it is left out until it downloads again");
                        None
                    }
                }
            })
            .collect()
    }

    pub fn summaries(&self) -> Vec<SubSummary> {
        self.subs
            .iter()
            .map(|s| {
                let st = Self::lock(s);
                SubSummary {
                    name: s.cfg.name.clone(),
                    url: s.cfg.url.clone().unwrap_or_default(),
                    rules: st.source.as_ref().map(|x| x.rule_count).unwrap_or(0),
                    age: st.meta.fetched.map(|f| Duration::from_secs(now_secs().saturating_sub(f))),
                    state: st.status.clone(),
                    in_force: st.source.is_some(),
                    last_error: st.last_error.clone(),
                    failures: st.failures,
                }
            })
            .collect()
    }

    fn due(&self, i: usize) -> bool {
        let s = &self.subs[i];
        let st = Self::lock(s);
        if let Some(t) = st.last_attempt {
            return t.elapsed().map(|e| e >= s.refresh).unwrap_or(true);
        }
        match st.meta.checked {
            Some(c) => now_secs().saturating_sub(c) >= s.refresh.as_secs(),
            None => true,
        }
    }

    /// The shortest refresh interval, for the refresher's tick.
    fn tick(&self) -> Duration {
        self.subs
            .iter()
            .map(|s| s.refresh)
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .clamp(Duration::from_millis(200), Duration::from_secs(60))
    }

    /// Fetch list `i` now, conditionally.
    pub async fn refresh(&self, fetcher: &dyn ListFetcher, max_bytes: usize, i: usize) -> Outcome {
        let _low_peak = crate::base::PromptPurge::begin();
        let s = &self.subs[i];
        let url = s.cfg.url.clone().unwrap_or_default();
        let (etag, last_modified) = {
            let mut st = Self::lock(s);
            st.last_attempt = Some(SystemTime::now());
            let have = st.source.is_some();
            (st.meta.etag.clone().filter(|_| have), st.meta.last_modified.clone().filter(|_| have))
        };
        let outcome = match fetch(fetcher, max_bytes, &url, etag.as_deref(), last_modified.as_deref()).await {
            Err(e) => Outcome::Failed(e),
            Ok(Fetched::NotModified) => {
                let mut st = Self::lock(s);
                st.meta.checked = Some(now_secs());
                st.status = "up to date (304)".into();
                let _ = write_meta(&s.meta_path, &st.meta);
                Outcome::NotModified
            }
            Ok(Fetched::Body { text, etag, last_modified }) => {
                let mut st = Self::lock(s);
                let old_rules = st.source.as_ref().map(|x| x.rule_count).unwrap_or(0);
                match check_list(&text, old_rules) {
                    Err(why) => Outcome::Failed(why),
                    Ok(()) => {
                        if let Some(dir) = s.text_path.parent() {
                            let _ = std::fs::create_dir_all(dir);
                        }
                        let on_disk =
                            super::gz_file::write(&s.text_path, text.as_bytes(), super::gz_file::Level::Text).is_ok();
                        st.meta = Meta { etag, last_modified, checked: Some(now_secs()), fetched: Some(now_secs()) };
                        let _ = write_meta(&s.meta_path, &st.meta);
                        let src = ListSource::new(&s.cfg.name, s.kind, text, Origin::Url(url.clone()));
                        st.status = format!("updated: {} rules", src.rule_count);
                        // Kept in memory only when the cache could not take it.
                        st.source = Some(if on_disk { src.without_text() } else { src });
                        st.on_disk = on_disk;
                        Outcome::Updated
                    }
                }
            }
        };
        if let Outcome::Failed(why) = &outcome {
            let mut st = Self::lock(s);
            st.status = if st.source.is_some() {
                format!("update failed ({why}); the last good copy stays in force")
            } else {
                format!("download failed ({why}); not in force")
            };
            st.last_error = Some(why.clone());
            st.failures += 1;
            tracing::warn!(list = %s.cfg.name, reason = %why, "list update rejected");
        } else {
            Self::lock(s).last_error = None;
            tracing::info!(list = %s.cfg.name, outcome = ?outcome, "list checked");
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

fn write_meta(path: &PathBuf, meta: &Meta) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(meta).unwrap_or_default())
}

/// Is this a filter list worth putting in force?
pub fn check_list(text: &str, old_rules: usize) -> Result<(), String> {
    let head = text.trim_start().get(..64).unwrap_or(text.trim_start()).to_ascii_lowercase();
    if head.starts_with("<!doctype") || head.starts_with("<html") || head.starts_with('<') {
        return Err("the download is an HTML page, not a filter list".into());
    }
    let rules = count_rules(text);
    if rules == 0 {
        return Err("the download has no rules".into());
    }
    if old_rules > 0 && rules * 10 < old_rules {
        return Err(format!("the download has {rules} rules, under a tenth of the {old_rules} in force"));
    }
    Ok(())
}

enum Fetched {
    NotModified,
    Body { text: String, etag: Option<String>, last_modified: Option<String> },
}

async fn fetch(
    fetcher: &dyn ListFetcher,
    max_bytes: usize,
    url: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<Fetched, String> {
    let mut req =
        http::Request::get(url).header(http::header::USER_AGENT, concat!("nostalk/", env!("CARGO_PKG_VERSION")));
    if let Some(e) = etag {
        req = req.header(http::header::IF_NONE_MATCH, e);
    }
    if let Some(l) = last_modified {
        req = req.header(http::header::IF_MODIFIED_SINCE, l);
    }
    let req = req.body(()).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(60), fetcher.fetch(req, max_bytes))
        .await
        .map_err(|_| "timed out".to_string())??;
    let status = resp.status();
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let header = |n: http::header::HeaderName| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let etag = header(http::header::ETAG);
    let last_modified = header(http::header::LAST_MODIFIED);
    let text =
        String::from_utf8(resp.into_body().to_vec()).map_err(|_| "the download is not UTF-8 text".to_string())?;
    Ok(Fetched::Body { text, etag, last_modified })
}

/// Where a refreshed list goes: the config the policy is built from (swapped on reload) and
/// the policy's swap.
pub struct PolicySwap {
    pub config: Arc<ArcSwap<Config>>,
    pub policy: Arc<ArcSwap<Policy>>,
}

/// Refresh due lists in the background for as long as the server runs; rebuild and swap the
/// policy when one changed.
pub fn spawn_refresher(lists: Arc<Subscriptions>, fetcher: Arc<dyn ListFetcher>, swap: PolicySwap) {
    if lists.is_empty() {
        return;
    }
    let max_bytes = swap.config.load().max_list_bytes();
    tokio::spawn(async move {
        loop {
            let mut changed = false;
            for i in 0..lists.len() {
                if lists.due(i) && lists.refresh(&*fetcher, max_bytes, i).await == Outcome::Updated {
                    changed = true;
                }
            }
            if changed {
                rebuild(&swap.config.load(), &lists, &swap.policy);
            }
            tokio::time::sleep(lists.tick()).await;
        }
    });
}

/// Build a new policy from config and the lists in force, and swap it in; a failure keeps the
/// policy that works.
pub fn rebuild(config: &Config, lists: &Subscriptions, policy: &ArcSwap<Policy>) {
    let started = std::time::Instant::now();
    match Policy::build(config, &lists.loaded()) {
        Ok(p) => {
            policy.store(Arc::new(p));
            crate::base::return_free_memory();
            tracing::info!(took = ?started.elapsed(), "policy rebuilt and swapped");
        }
        Err(e) => tracing::warn!(error = %e, "policy rebuild failed; the old policy stays"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_list;

    #[test]
    fn broken_downloads_are_refused() {
        assert!(check_list("<!DOCTYPE html><html>oops</html>", 0).is_err());
        assert!(check_list("! only comments\n", 0).is_err());
        assert!(check_list("||a.test^\n", 100).is_err());
        assert!(check_list("||a.test^\n||b.test^\n", 0).is_ok());
    }
}
