//! Configuration: the TOML schema (serde), its validation, and the embedded default.
//!
//! A config file is parsed in two steps: serde turns the TOML into [`Config`] (unknown keys and
//! wrong types are errors, reported with the line toml gives), then [`Config::validate`] checks
//! the values that TOML cannot (addresses, CIDRs, durations, resolve entries), and reports each
//! problem with its key and the line of that key, found with `toml_edit`'s spans.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration, also the commented reference for every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub ca: CaConfig,
    pub intercept: InterceptConfig,
    pub upstream: UpstreamConfig,
    pub policy: PolicyConfig,
    pub rewrite: RewriteConfig,
    pub access: AccessConfig,
    pub lists: Vec<ListConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub log_format: String,
    pub shutdown_grace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    pub enabled: bool,
    pub passthrough: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub resolve: Vec<String>,
    pub extra_roots: Vec<PathBuf>,
    pub connect_timeout: String,
    pub response_timeout: String,
    pub idle_timeout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub embedded_lists: bool,
    pub ads: String,
    pub blocked_ad_categories: Vec<String>,
    pub trusted_sites: Vec<String>,
    pub dnt: bool,
    pub decision_cache: usize,
    pub list_cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    pub enabled: bool,
    pub encoding: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub name: String,
    pub url: Option<String>,
    pub path: Option<PathBuf>,
    #[serde(default = "default_verdict")]
    pub verdict: String,
    #[serde(default = "default_refresh")]
    pub refresh: String,
}

fn default_verdict() -> String {
    "block".into()
}
fn default_refresh() -> String {
    "24h".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: "127.0.0.1:8877".into(), log_format: "pretty".into(), shutdown_grace: "10s".into() }
    }
}
impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig { enabled: true, passthrough: Vec::new() }
    }
}
impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            resolve: Vec::new(),
            extra_roots: Vec::new(),
            connect_timeout: "10s".into(),
            response_timeout: "60s".into(),
            idle_timeout: "90s".into(),
        }
    }
}
impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            embedded_lists: true,
            ads: "ad".into(),
            blocked_ad_categories: Vec::new(),
            trusted_sites: Vec::new(),
            dnt: false,
            decision_cache: 20_000,
            list_cache_dir: None,
        }
    }
}
impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig { enabled: true, encoding: "auto".into() }
    }
}

/// One problem in a config file: the key it is about, the line of that key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// One `[upstream] resolve` entry: `host:port:address[:port]` (curl's --resolve, with an
/// optional target port as in --connect-to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveEntry {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

impl ResolveEntry {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not host:port:address[:port]");
        let (host, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        let addr = addr.trim_start_matches('[');
        let addr: SocketAddr = if let Some((ip, p)) = addr.split_once(']') {
            // [v6]:port or [v6]
            let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
            let p = p.trim_start_matches(':');
            let p = if p.is_empty() { port } else { p.parse().map_err(|_| bad())? };
            SocketAddr::new(ip, p)
        } else if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
            SocketAddr::new(ip, port)
        } else {
            addr.parse().map_err(|_| bad())?
        };
        Ok(ResolveEntry { host: host.to_ascii_lowercase(), port, addr })
    }
}

/// Parse "10s", "24h", "500ms".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like \"10s\" or \"24h\": {e}"))
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        // The embedded default is checked by a unit test; it cannot fail to parse.
        Config::parse(DEFAULT_TOML).expect("embedded default config is valid")
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut cfg = Config::parse(&text)?;
        cfg.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = match toml::from_str(text) {
            Ok(cfg) => cfg,
            Err(e) => {
                let line = e.span().map(|span| line_of(text, span.start));
                let key = key_at(text, e.span().map(|s| s.start)).unwrap_or_else(|| "(file)".into());
                return Err(ConfigError::Invalid(vec![ConfigIssue {
                    key,
                    line,
                    message: e.message().trim().to_string(),
                }]));
            }
        };
        let issues = cfg.validate(text);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.upstream.extra_roots.iter_mut().for_each(fix);
        for l in &mut self.lists {
            if let Some(p) = &mut l.path {
                fix(p);
            }
        }
        if let Some(d) = &mut self.ca.dir {
            fix(d);
        }
        if let Some(d) = &mut self.policy.list_cache_dir {
            fix(d);
        }
    }

    /// Semantic checks; each issue carries the key and its line in `text`.
    pub fn validate(&self, text: &str) -> Vec<ConfigIssue> {
        let doc = text.parse::<toml_edit::ImDocument<String>>().ok();
        let mut issues = Vec::new();
        let mut push = |path: &[&str], index: Option<usize>, message: String| {
            let line = doc.as_ref().and_then(|d| span_line(d, text, path, index));
            let mut key = path.join(".");
            if let Some(i) = index {
                key = format!("{key}[{i}]");
            }
            issues.push(ConfigIssue { key, line, message });
        };
        if let Err(e) = self.server.listen.parse::<SocketAddr>() {
            push(
                &["server", "listen"],
                None,
                format!("`{}` is not an address like 127.0.0.1:8877: {e}", self.server.listen),
            );
        }
        if !matches!(self.server.log_format.as_str(), "pretty" | "json") {
            push(
                &["server", "log_format"],
                None,
                format!("`{}` must be \"pretty\" or \"json\"", self.server.log_format),
            );
        }
        for (path, value) in [
            (["server", "shutdown_grace"], &self.server.shutdown_grace),
            (["upstream", "connect_timeout"], &self.upstream.connect_timeout),
            (["upstream", "response_timeout"], &self.upstream.response_timeout),
            (["upstream", "idle_timeout"], &self.upstream.idle_timeout),
        ] {
            if let Err(e) = parse_duration(value) {
                push(&path, None, e);
            }
        }
        for (i, r) in self.upstream.resolve.iter().enumerate() {
            if let Err(e) = ResolveEntry::parse(r) {
                push(&["upstream", "resolve"], Some(i), e);
            }
        }
        for (i, c) in self.access.allow.iter().enumerate() {
            if parse_cidr(c).is_none() {
                push(&["access", "allow"], Some(i), format!("`{c}` is not an address or CIDR like 192.168.1.0/24"));
            }
        }
        if !matches!(self.policy.ads.as_str(), "ad" | "block" | "allow") {
            push(&["policy", "ads"], None, format!("`{}` must be \"ad\", \"block\" or \"allow\"", self.policy.ads));
        }
        if !matches!(self.rewrite.encoding.as_str(), "auto" | "identity" | "gzip") {
            push(
                &["rewrite", "encoding"],
                None,
                format!("`{}` must be \"auto\", \"identity\" or \"gzip\"", self.rewrite.encoding),
            );
        }
        for (i, l) in self.lists.iter().enumerate() {
            if l.url.is_none() == l.path.is_none() {
                push(&["lists"], Some(i), format!("list `{}` needs exactly one of `url` or `path`", l.name));
            }
            if let Some(u) = &l.url {
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
                    push(&["lists"], Some(i), format!("list `{}`: url `{u}` is not an http(s) URL", l.name));
                }
            }
            if !matches!(l.verdict.as_str(), "block" | "ad") {
                push(
                    &["lists"],
                    Some(i),
                    format!("list `{}`: verdict `{}` must be \"block\" or \"ad\"", l.name, l.verdict),
                );
            }
            if let Err(e) = parse_duration(&l.refresh) {
                push(&["lists"], Some(i), format!("list `{}`: refresh {e}", l.name));
            }
            if l.name.trim().is_empty() {
                push(&["lists"], Some(i), "a list needs a name".into());
            }
        }
        issues
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() checked it; parse() only returns validated configs.
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8877)))
    }

    pub fn duration(&self, value: &str, fallback: Duration) -> Duration {
        parse_duration(value).unwrap_or(fallback)
    }

    pub fn resolve_entries(&self) -> Vec<ResolveEntry> {
        self.upstream.resolve.iter().filter_map(|r| ResolveEntry::parse(r).ok()).collect()
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.ca.dir.clone().unwrap_or_else(default_ca_dir)
    }

    pub fn list_cache_dir(&self) -> PathBuf {
        self.policy
            .list_cache_dir
            .clone()
            .unwrap_or_else(|| dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("nostalk").join("lists"))
    }
}

pub fn default_ca_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("nostalk").join("ca")
}

/// An address or a CIDR; a bare address is a /32 or /128.
pub fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The dotted key whose line holds `offset`, for parse errors: the nearest `[table]` header
/// above plus the key on that line.
fn key_at(text: &str, offset: Option<usize>) -> Option<String> {
    let offset = offset?;
    let line_no = line_of(text, offset);
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line_no {
            let key = t.split('=').next().unwrap_or("").trim();
            return Some(if t.starts_with('[') || key.is_empty() {
                table
            } else if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

fn span_line(doc: &toml_edit::ImDocument<String>, text: &str, path: &[&str], index: Option<usize>) -> Option<usize> {
    let mut item: &toml_edit::Item = doc.as_item();
    let mut span = None;
    for k in path {
        let table = item.as_table_like()?;
        let (key, value) = table.get_key_value(k)?;
        span = key.span().or(span);
        item = value;
    }
    if let Some(i) = index {
        if let Some(arr) = item.as_array() {
            span = arr.get(i).and_then(|v| v.span()).or(span);
        } else if let Some(arr) = item.as_array_of_tables() {
            span = arr.get(i).and_then(|t| t.span()).or(span);
        }
    }
    span.map(|s| line_of(text, s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let cfg = Config::embedded();
        assert_eq!(cfg.server.listen, "127.0.0.1:8877");
        assert!(cfg.policy.embedded_lists);
    }

    #[test]
    fn resolve_entries_take_curl_form_and_target_port() {
        let e = ResolveEntry::parse("tracker.test:80:127.0.0.1:9001").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.addr.to_string().as_str()), ("tracker.test", 80, "127.0.0.1:9001"));
        let e = ResolveEntry::parse("a.test:443:127.0.0.1").unwrap();
        assert_eq!(e.addr.to_string(), "127.0.0.1:443");
        let e = ResolveEntry::parse("a.test:443:[::1]:8443").unwrap();
        assert_eq!(e.addr.to_string(), "[::1]:8443");
        assert!(ResolveEntry::parse("nonsense").is_err());
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let text =
            "[server]\nlisten = \"127.0.0.1:8877\"\n\n[upstream]\nresolve = [\"ok.test:80:127.0.0.1\", \"broken\"]\n";
        let Err(ConfigError::Invalid(issues)) = Config::parse(text) else { panic!("should fail") };
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "upstream.resolve[1]");
        assert_eq!(issues[0].line, Some(5));
    }

    #[test]
    fn unknown_keys_are_errors_with_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n";
        let Err(ConfigError::Invalid(issues)) = Config::parse(text) else { panic!("should fail") };
        assert_eq!(issues[0].line, Some(3));
        assert!(issues[0].message.contains("listn"), "{}", issues[0].message);
    }
}
