//! Configuration: the TOML schema (serde), its validation, and the embedded default.
//!
//! A config file is parsed in two steps: serde turns the TOML into [`Config`] (unknown keys,
//! wrong types, words not among a key's choices and bad durations are errors, reported with the
//! line toml gives; the typed values are in [`values`]), then [`Config::validate`] checks the
//! values serde cannot (addresses, CIDRs, resolve entries, ranges), and reports each
//! problem with its key and the line of that key, found with `toml_edit`'s spans.

pub mod values;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
pub use values::{
    parse_duration, AdMode, DnsServer, Dur, ListVerdict, LogFormat, OutputEncoding, PacFallback, ParentKind,
    ParentProxy, SocialMode,
};

/// The embedded default configuration, also the commented reference for every key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub ca: CaConfig,
    pub intercept: InterceptConfig,
    pub upstream: UpstreamConfig,
    pub policy: PolicyConfig,
    pub rewrite: RewriteConfig,
    pub access: AccessConfig,
    pub admin: AdminConfig,
    pub receipt: ReceiptConfig,
    pub auth: AuthConfig,
    pub groups: Vec<GroupConfig>,
    pub transparent: TransparentConfig,
    pub learn: LearnConfig,
    pub lists: Vec<ListConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub log_format: LogFormat,
    pub shutdown_grace: Dur,
    /// A client connection with no bytes either way for this long is closed (gracefully:
    /// requests in flight finish first).
    pub idle_timeout: Dur,
    /// How long a client may take to finish a TLS handshake, or to send its first bytes
    /// after CONNECT.
    pub handshake_timeout: Dur,
    /// A tunnel (CONNECT passed through untouched) with no bytes either way for this long is
    /// closed.
    pub tunnel_idle_timeout: Dur,
    /// At most this many client connections; past it the least recently active is shed.
    pub max_connections: usize,
    /// What the PAC file tells a browser to do when the proxy does not answer.
    pub pac_fallback: PacFallback,
    /// Bind with SO_REUSEPORT, so a new nostalk can bind the same address before the old one
    /// stops (a restart with no refused connection; see deploy/README.md).
    pub reuse_port: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    pub enabled: bool,
    pub passthrough: Vec<String>,
    /// CONNECT is accepted only to these ports.
    pub connect_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub resolve: Vec<String>,
    /// The DNS server names are resolved with ("IP", "IP:PORT", "tls://HOST[:PORT]",
    /// "https://HOST[:PORT][/PATH]"); the system's when absent.
    pub dns: Option<String>,
    /// A parent proxy every upstream connection goes through ("http://[user:pass@]host:port"
    /// or "socks5h://[user:pass@]host:port"); none when absent.
    pub proxy: Option<String>,
    /// Destinations reached directly, not through `proxy`: names (a name covers its
    /// subdomains) and CIDRs (for addresses written in a URL or pinned by `resolve`).
    pub no_proxy: Vec<String>,
    /// Check every CNAME a name resolves through against the lists (CNAME uncloaking).
    pub uncloak: bool,
    pub extra_roots: Vec<PathBuf>,
    pub connect_timeout: Dur,
    pub response_timeout: Dur,
    pub idle_timeout: Dur,
    /// Destinations never reached (besides the defaults: loopback, link-local, unspecified,
    /// multicast, and private ranges when the proxy serves other machines).
    pub deny: Vec<String>,
    /// Destinations reached even when a default or `deny` would refuse them.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub embedded_lists: bool,
    pub ads: AdMode,
    /// Social widgets: click to load, block, or allow.
    pub social: SocialMode,
    pub blocked_ad_categories: Vec<String>,
    pub trusted_sites: Vec<String>,
    pub dnt: bool,
    pub decision_cache: usize,
    pub list_cache_dir: Option<PathBuf>,
    /// The largest list file taken, downloaded or read from a path, in megabytes.
    pub max_list_mb: usize,
    /// Subscribe to EasyPrivacy (`block`) and EasyList (`ad`) besides the `[[lists]]` given:
    /// fetched in the background, cached on disk, refreshed daily, the embedded lists in force
    /// until they arrive. False on a machine offline or short of flash.
    pub default_subscriptions: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    pub enabled: bool,
    pub encoding: OutputEncoding,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub allow: Vec<String>,
}

/// Who operates the proxy: `/metrics` and the controls answer only these clients.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Loopback alone when empty.
    pub allow: Vec<String>,
    /// When set, `/metrics` and the controls also need `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiptConfig {
    /// Keep and log what each client browsed (one person's proxy); false on a shared gateway.
    pub per_person: bool,
    /// Where the person's choices are kept (down-votes, shopping switches, trusted sites).
    pub store: Option<PathBuf>,
    /// Down-votes after which an ad source is blocked.
    pub downvotes_to_block: u32,
    /// At most this many live receipt pages (`/events` streams) at once.
    pub max_watchers: usize,
    /// A DHCP server's lease file (dnsmasq's format), whose names the operators' page shows
    /// beside each device's address; OpenWrt's `/tmp/dhcp.leases` when absent and present.
    pub leases: Option<PathBuf>,
}

impl Default for ReceiptConfig {
    fn default() -> Self {
        ReceiptConfig { per_person: true, store: None, downvotes_to_block: 1, max_watchers: 32, leases: None }
    }
}

/// Learned trackers (ops/learn.rs): a third party seen trying to identify the browser on this
/// many first-party sites is decided like an ad source from then on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnConfig {
    pub enabled: bool,
    /// Distinct first-party sites on which a third party set an identifying cookie.
    pub sites: usize,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig { enabled: true, sites: 3 }
    }
}

/// Proxy authentication for a team: with `users` set, every proxied request (and every
/// CONNECT) needs `Proxy-Authorization: Basic` with a user and password from that file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `user:argon2-hash` lines, as `nostalk passwd` writes them; no authentication when absent.
    pub users: Option<PathBuf>,
    /// The realm the browser's password prompt names.
    pub realm: String,
    /// Name the user and group in the decision log (off: who browsed what stays unwritten).
    pub log_users: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { users: None, realm: "nostalk".into(), log_users: false }
    }
}

/// Transparent interception (`[transparent]`): addresses where connections a firewall
/// redirected (a router's LAN, ports 80 and 443) are served as if the client had asked the
/// proxy. Off when absent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransparentConfig {
    /// Plain HTTP redirected here (from port 80): each request's Host says where it goes.
    pub http: Option<String>,
    /// TLS redirected here (from port 443): the ClientHello's server name says where it goes.
    pub https: Option<String>,
}

/// A group of users with its own policy on top of the proxy's: `[[groups]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// User names from the `[auth] users` file.
    #[serde(default)]
    pub members: Vec<String>,
    /// Client address ranges (CIDR) whose requests this group's rules decide; a signed-in
    /// user's own group wins over a network's.
    #[serde(default)]
    pub networks: Vec<String>,
    /// What this group's ads get, instead of `[policy] ads`.
    pub ads: Option<AdMode>,
    /// Sites this group trusts, besides `[policy] trusted_sites`.
    #[serde(default)]
    pub trusted_sites: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    pub name: String,
    pub url: Option<String>,
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub verdict: ListVerdict,
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
}

/// What `[policy] default_subscriptions` subscribes to: (name, URL, verdict).
pub const DEFAULT_SUBSCRIPTIONS: [(&str, &str, ListVerdict); 2] = [
    ("easyprivacy", "https://easylist.to/easylist/easyprivacy.txt", ListVerdict::Block),
    ("easylist", "https://easylist.to/easylist/easylist.txt", ListVerdict::Ad),
];

impl Config {
    /// `[upstream] dns`, parsed.
    pub fn dns_server(&self) -> Option<Result<DnsServer, String>> {
        self.upstream.dns.as_deref().map(DnsServer::parse)
    }

    /// `[upstream] proxy`, parsed.
    pub fn parent_proxy(&self) -> Option<Result<ParentProxy, String>> {
        self.upstream.proxy.as_deref().map(ParentProxy::parse)
    }

    /// Add the default subscriptions the file does not already have (by name or URL).
    fn add_default_subscriptions(&mut self) {
        if !self.policy.default_subscriptions {
            return;
        }
        for (name, url, verdict) in DEFAULT_SUBSCRIPTIONS {
            if self.lists.iter().any(|l| l.name == name || l.url.as_deref() == Some(url)) {
                continue;
            }
            self.lists.push(ListConfig {
                name: name.into(),
                url: Some(url.into()),
                path: None,
                verdict,
                refresh: default_refresh(),
            });
        }
    }
}

fn default_refresh() -> Dur {
    Dur::secs(24 * 3600)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8877".into(),
            log_format: LogFormat::Pretty,
            shutdown_grace: Dur::secs(10),
            idle_timeout: Dur::secs(120),
            handshake_timeout: Dur::secs(10),
            tunnel_idle_timeout: Dur::secs(600),
            max_connections: 4096,
            pac_fallback: PacFallback::None,
            reuse_port: false,
        }
    }
}
impl Default for InterceptConfig {
    fn default() -> Self {
        InterceptConfig { enabled: true, passthrough: Vec::new(), connect_ports: vec![443, 80] }
    }
}
impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            resolve: Vec::new(),
            dns: None,
            proxy: None,
            no_proxy: Vec::new(),
            uncloak: true,
            extra_roots: Vec::new(),
            connect_timeout: Dur::secs(10),
            response_timeout: Dur::secs(60),
            idle_timeout: Dur::secs(90),
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }
}
impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            embedded_lists: true,
            ads: AdMode::Ad,
            social: SocialMode::Click,
            blocked_ad_categories: Vec::new(),
            trusted_sites: Vec::new(),
            dnt: false,
            decision_cache: 20_000,
            list_cache_dir: None,
            max_list_mb: 32,
            default_subscriptions: true,
        }
    }
}
impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig { enabled: true, encoding: OutputEncoding::Auto }
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
/// optional target port as in --connect-to). A host of `*` pins every name on that port that
/// no entry names itself (as curl's `--resolve '*:443:...'`): a test bed or a benchmark that
/// sends a whole simulated web to one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveEntry {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

impl ResolveEntry {
    /// The address `entries` pins `host:port` to, if any (the one lookup every user of
    /// `[upstream] resolve` makes: the dialer, the parent proxy, the DNS server's bootstrap).
    pub fn pinned(entries: &[ResolveEntry], host: &str, port: u16) -> Option<std::net::SocketAddr> {
        entries
            .iter()
            .find(|e| e.port == port && e.host.eq_ignore_ascii_case(host))
            .or_else(|| entries.iter().find(|e| e.port == port && e.host == "*"))
            .map(|e| e.addr)
    }

    /// Whether `entries` pin `host` on some port (its name is then never looked up).
    pub fn names(entries: &[ResolveEntry], host: &str) -> bool {
        entries.iter().any(|e| e.host == "*" || e.host.eq_ignore_ascii_case(host))
    }

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

/// The largest decision cache a config may ask for (each entry is a few hundred bytes).
pub const MAX_DECISION_CACHE: usize = 1_000_000;
/// The largest `max_list_mb`: EasyList and EasyPrivacy together are about 3 MB.
pub const MAX_LIST_MB: usize = 256;

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
    /// Every problem is reported in one pass: a key serde refuses (unknown, or of the wrong
    /// type) is noted and blanked out of a working copy of the text (its lines kept, so later
    /// line numbers stay true), and parsing goes on, so one mistake does not hide the next.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut issues = Vec::new();
        let mut work = text.to_string();
        // Each round blanks at least one key, so this ends; the cap is for safety only.
        for _ in 0..64 {
            match toml::from_str::<Config>(&work) {
                Ok(mut cfg) => {
                    issues.extend(cfg.validate(text));
                    cfg.add_default_subscriptions();
                    return if issues.is_empty() { Ok(cfg) } else { Err(ConfigError::Invalid(issues)) };
                }
                Err(e) => {
                    let start = e.span().map(|s| s.start);
                    let line = start.map(|s| line_of(&work, s));
                    let key = key_at(&work, start).unwrap_or_else(|| "(file)".into());
                    issues.push(ConfigIssue { key, line, message: e.message().trim().to_string() });
                    match start.and_then(|s| blank_item_at(&work, s)) {
                        Some(next) if next != work => work = next,
                        // A syntax error, or nothing left to blank: nothing more can be read.
                        _ => break,
                    }
                }
            }
        }
        Err(ConfigError::Invalid(issues))
    }

    fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.upstream.extra_roots.iter_mut().for_each(fix);
        if let Some(p) = &mut self.auth.users {
            fix(p);
        }
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
        for (i, r) in self.upstream.resolve.iter().enumerate() {
            if let Err(e) = ResolveEntry::parse(r) {
                push(&["upstream", "resolve"], Some(i), e);
            }
        }
        if let Some(Err(e)) = self.dns_server() {
            push(&["upstream", "dns"], None, e);
        }
        if let Some(Err(e)) = self.parent_proxy() {
            push(&["upstream", "proxy"], None, e);
        }
        for (i, n) in self.upstream.no_proxy.iter().enumerate() {
            if parse_cidr(n).is_none() && (n.is_empty() || n.contains(['/', ':', ' ', '*'])) {
                push(
                    &["upstream", "no_proxy"],
                    Some(i),
                    format!("`{n}` is neither a name like \"corp.example\" nor a CIDR like \"10.0.0.0/8\""),
                );
            }
        }
        for (path, list) in [
            (["access", "allow"], &self.access.allow),
            (["admin", "allow"], &self.admin.allow),
            (["upstream", "allow"], &self.upstream.allow),
            (["upstream", "deny"], &self.upstream.deny),
        ] {
            for (i, c) in list.iter().enumerate() {
                if parse_cidr(c).is_none() {
                    push(&path, Some(i), format!("`{c}` is not an address or CIDR like 192.168.1.0/24"));
                }
            }
        }
        if self.admin.token.as_deref().is_some_and(|t| t.len() < 16) {
            push(&["admin", "token"], None, "the token must be at least 16 characters".into());
        }
        if self.server.max_connections == 0 {
            push(&["server", "max_connections"], None, "must be at least 1".into());
        }
        if self.intercept.connect_ports.contains(&0) {
            push(&["intercept", "connect_ports"], None, "0 is not a port".into());
        }
        if self.policy.decision_cache > MAX_DECISION_CACHE {
            push(&["policy", "decision_cache"], None, format!("at most {MAX_DECISION_CACHE} decisions can be cached"));
        }
        if !(1..=MAX_LIST_MB).contains(&self.policy.max_list_mb) {
            push(&["policy", "max_list_mb"], None, format!("must be between 1 and {MAX_LIST_MB}"));
        }
        for (key, addr) in [("http", &self.transparent.http), ("https", &self.transparent.https)] {
            if let Some(a) = addr {
                if a.parse::<SocketAddr>().is_err() {
                    push(&["transparent", key], None, format!("`{a}` is not an address like 0.0.0.0:8080"));
                }
                if self.auth.users.is_some() {
                    push(
                        &["transparent", key],
                        None,
                        "a transparent listener cannot ask for a password ([auth] users): its clients do not know they use a proxy".into(),
                    );
                }
            }
        }
        self.validate_groups_and_lists(&mut push);
        issues
    }

    /// [`Config::validate`]'s checks of `[[groups]]` and `[[lists]]`.
    fn validate_groups_and_lists(&self, push: &mut impl FnMut(&[&str], Option<usize>, String)) {
        let mut grouped = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            if g.name.trim().is_empty() {
                push(&["groups"], Some(i), "a group needs a name".into());
            }
            if self.auth.users.is_none() && !g.members.is_empty() {
                push(
                    &["groups"],
                    Some(i),
                    format!("group `{}` has members, which need [auth] users: without it no one is known", g.name),
                );
            }
            if g.members.is_empty() && g.networks.is_empty() {
                push(&["groups"], Some(i), format!("group `{}` needs `members` or `networks`", g.name));
            }
            for n in &g.networks {
                if parse_cidr(n).is_none() {
                    push(
                        &["groups"],
                        Some(i),
                        format!("group `{}`: `{n}` is not a network (write it as 10.1.0.0/16 or fd00::/64)", g.name),
                    );
                }
            }
            for m in &g.members {
                if !grouped.insert(m.as_str()) {
                    push(&["groups"], Some(i), format!("`{m}` is in more than one group"));
                }
            }
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
            if l.name.trim().is_empty() {
                push(&["lists"], Some(i), "a list needs a name".into());
            }
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() checked it; parse() only returns validated configs.
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8877)))
    }

    pub fn resolve_entries(&self) -> Vec<ResolveEntry> {
        self.upstream.resolve.iter().filter_map(|r| ResolveEntry::parse(r).ok()).collect()
    }

    pub fn max_list_bytes(&self) -> usize {
        self.policy.max_list_mb.clamp(1, MAX_LIST_MB) * 1024 * 1024
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.ca.dir.clone().unwrap_or_else(default_ca_dir)
    }

    /// The choices store: `[receipt] store`, or `choices.sqlite3` in the user's data directory.
    pub fn store_path(&self) -> PathBuf {
        self.receipt.store.clone().unwrap_or_else(|| {
            dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("nostalk").join("choices.sqlite3")
        })
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

/// `text` with the table or key-value that holds byte `offset` replaced by spaces (newlines
/// kept), or None when the text does not parse as TOML at all.
fn blank_item_at(text: &str, offset: usize) -> Option<String> {
    let doc = text.parse::<toml_edit::ImDocument<String>>().ok()?;
    let range = innermost_span(doc.as_table(), offset)?;
    let mut out = text.as_bytes().to_vec();
    for b in &mut out[range] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    String::from_utf8(out).ok()
}

/// The span (from key to end of value, or a whole `[table]`) of the innermost item that holds
/// `offset`.
fn innermost_span(table: &dyn toml_edit::TableLike, offset: usize) -> Option<std::ops::Range<usize>> {
    for (key, item) in table.iter() {
        let Some((k, _)) = table.get_key_value(key) else { continue };
        let key_span = k.span();
        let (item_span, inner): (Option<std::ops::Range<usize>>, Option<&dyn toml_edit::TableLike>) = match item {
            toml_edit::Item::Table(t) => (t.span(), Some(t as &dyn toml_edit::TableLike)),
            toml_edit::Item::Value(v) => (v.span(), v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike)),
            toml_edit::Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    if t.span().is_some_and(|s| s.contains(&offset)) {
                        return innermost_span(t, offset).or(t.span());
                    }
                }
                (a.span(), None)
            }
            toml_edit::Item::None => (None, None),
        };
        let whole = match (key_span.clone(), item_span.clone()) {
            (Some(k), Some(v)) if matches!(item, toml_edit::Item::Value(_)) => {
                Some(k.start.min(v.start)..k.end.max(v.end))
            }
            (_, Some(v)) => Some(v),
            (Some(k), None) => Some(k),
            _ => None,
        };
        if let Some(w) = whole {
            if w.contains(&offset) || key_span.as_ref().is_some_and(|k| k.contains(&offset)) {
                if let Some(t) = inner {
                    if let Some(r) = innermost_span(t, offset) {
                        return Some(r);
                    }
                }
                return Some(w);
            }
        }
    }
    None
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
    fn a_wildcard_resolve_entry_pins_every_other_name_on_its_port() {
        let entries: Vec<ResolveEntry> = ["a.test:443:127.0.0.1:9001", "*:443:127.0.0.1:9002"]
            .iter()
            .map(|s| ResolveEntry::parse(s).unwrap())
            .collect();
        let at = |h: &str, p: u16| ResolveEntry::pinned(&entries, h, p).map(|a| a.port());
        assert_eq!(at("a.test", 443), Some(9001), "a named entry wins over the wildcard");
        assert_eq!(at("other.example", 443), Some(9002));
        assert_eq!(at("other.example", 80), None, "the wildcard pins its own port only");
        assert!(ResolveEntry::names(&entries, "other.example"));
        assert!(!ResolveEntry::names(&entries[..1], "other.example"));
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
    fn easylist_and_easyprivacy_are_subscribed_by_default_once_and_can_be_turned_off() {
        let subs = |c: &Config| -> Vec<(String, Option<String>, ListVerdict)> {
            c.lists.iter().map(|l| (l.name.clone(), l.url.clone(), l.verdict)).collect()
        };
        let c = Config::embedded();
        assert_eq!(
            subs(&c),
            DEFAULT_SUBSCRIPTIONS.iter().map(|(n, u, v)| (n.to_string(), Some(u.to_string()), *v)).collect::<Vec<_>>()
        );
        assert!(c.lists.iter().all(|l| l.refresh.get() == std::time::Duration::from_secs(86400)), "refreshed daily");
        assert!(c.policy.embedded_lists, "the embedded lists stay in force beside them");
        let off = Config::parse("[policy]\ndefault_subscriptions = false\n").unwrap();
        assert!(off.lists.is_empty());
        // A file that subscribes to one itself (another name, its own refresh) is not given it twice.
        let own = Config::parse(
            "[[lists]]\nname = \"privacy\"\nurl = \"https://easylist.to/easylist/easyprivacy.txt\"\nrefresh = \"12h\"\n",
        )
        .unwrap();
        let names: Vec<_> = own.lists.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["privacy", "easylist"]);
    }

    #[test]
    fn unknown_keys_are_errors_with_line() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n";
        let Err(ConfigError::Invalid(issues)) = Config::parse(text) else { panic!("should fail") };
        assert_eq!(issues[0].line, Some(3));
        assert!(issues[0].message.contains("listn"), "{}", issues[0].message);
    }
}
