//! The typed values a config file holds besides plain numbers and strings: durations written
//! as "10s" or "24h" ([`Dur`]), and every choice among fixed words as an enum ([`LogFormat`],
//! [`AdMode`], [`SocialMode`], [`OutputEncoding`], [`ListVerdict`], [`PacFallback`]). serde reads and checks
//! them while the file is parsed, so a wrong word or duration is reported by `check` with its
//! key and line like any other error, and nothing later re-matches a string with a fallback.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration, written in the file as humantime reads it ("500ms", "10s", "24h").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parse "10s", "24h", "500ms".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like \"10s\" or \"24h\": {e}"))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// `[server] log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[policy] ads`: what to do with ads as a whole: forward them de-identified (`ad`, the
/// default), block them, or allow them with only ordinary hygiene.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdMode {
    Block,
    #[default]
    Ad,
    Allow,
}

/// `[policy] social`: what to do with social widgets (config/lists/social.txt): put a
/// placeholder the person can click to load that one widget (`click`, the default), block
/// them outright, or leave them to the other lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocialMode {
    #[default]
    Click,
    Block,
    Allow,
}

/// `[rewrite] encoding`: how a rewritten page goes to the browser. `auto` gzips it for
/// clients on other machines and sends identity to loopback; never an encoding the client did
/// not ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputEncoding {
    #[default]
    Auto,
    Identity,
    Gzip,
}

/// `[[lists]] verdict`: what a match in the list decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListVerdict {
    #[default]
    Block,
    Ad,
}

/// `[server] pac_fallback`: fail closed (`none`, the default: no proxy, no web, and the person
/// notices) or go direct (`direct`: the web keeps working, unprotected, without a word).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacFallback {
    #[default]
    None,
    Direct,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        d: Dur,
        a: AdMode,
    }

    #[test]
    fn durations_and_words_are_read_and_refused() {
        let t: T = toml::from_str("d = \"90s\"\na = \"block\"\n").unwrap();
        assert_eq!((t.d.get(), t.a), (Duration::from_secs(90), AdMode::Block));
        let e = toml::from_str::<T>("d = \"soon\"\na = \"ad\"\n").err().unwrap();
        assert!(e.message().contains("not a duration"), "{e}");
        let e = toml::from_str::<T>("d = \"1s\"\na = \"sometimes\"\n").err().unwrap();
        assert!(e.message().contains("sometimes"), "{e}");
    }

    #[test]
    fn dns_servers_in_their_three_forms() {
        assert_eq!(DnsServer::parse("9.9.9.9").unwrap(), DnsServer::Plain("9.9.9.9:53".parse().unwrap()));
        assert_eq!(DnsServer::parse("127.0.0.1:5353").unwrap(), DnsServer::Plain("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(
            DnsServer::parse("tls://dns.quad9.net").unwrap(),
            DnsServer::Tls { host: "dns.quad9.net".into(), port: 853 }
        );
        assert_eq!(
            DnsServer::parse("https://dns.test:8443").unwrap(),
            DnsServer::Https { host: "dns.test".into(), port: 8443, path: "/dns-query".into() }
        );
        assert_eq!(
            DnsServer::parse("https://[2620:fe::fe]/q").unwrap(),
            DnsServer::Https { host: "2620:fe::fe".into(), port: 443, path: "/q".into() }
        );
        assert!(DnsServer::parse("quic://x").is_err());
        assert!(DnsServer::parse("dns.quad9.net").is_err());
    }

    #[test]
    fn parent_proxies_with_and_without_credentials() {
        let p = ParentProxy::parse("socks5h://127.0.0.1:9050").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port, p.auth), (ParentKind::Socks5, "127.0.0.1", 9050, None));
        let p = ParentProxy::parse("http://me:p%40ss@Proxy.Corp:3128/").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ParentKind::Http, "proxy.corp", 3128));
        assert_eq!(p.auth, Some(("me".into(), "p@ss".into())));
        assert!(ParentProxy::parse("socks5://127.0.0.1:9050").unwrap_err().contains("socks5h"));
        assert!(ParentProxy::parse("ftp://x").is_err());
        assert!(ParentProxy::parse("http://:3128").is_err());
    }
}

/// `[upstream] dns`: where names are resolved. A plain address ("9.9.9.9", "127.0.0.1:5353",
/// UDP and TCP), DNS over TLS ("tls://dns.quad9.net", port 853 unless given) or DNS over HTTPS
/// ("https://dns.quad9.net/dns-query", port 443, path `/dns-query` unless given). A server
/// named by host is found once at start through `[upstream] resolve` or the system's resolver
/// (the bootstrap every DoH client needs), and its certificate is checked against that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServer {
    Plain(std::net::SocketAddr),
    Tls { host: String, port: u16 },
    Https { host: String, port: u16, path: String },
}

impl DnsServer {
    pub fn parse(s: &str) -> Result<DnsServer, String> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a DNS server like \"9.9.9.9\", \"127.0.0.1:5353\", \"tls://dns.quad9.net\" or \
                 \"https://dns.quad9.net/dns-query\": {why}"
            )
        };
        if let Some(rest) = s.strip_prefix("tls://") {
            let (host, port) = host_port(rest.trim_end_matches('/'), 853).map_err(|e| bad(&e))?;
            return Ok(DnsServer::Tls { host, port });
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let (authority, path) = match rest.find('/') {
                Some(i) if i + 1 < rest.len() => (&rest[..i], rest[i..].to_string()),
                Some(i) => (&rest[..i], "/dns-query".to_string()),
                None => (rest, "/dns-query".to_string()),
            };
            let (host, port) = host_port(authority, 443).map_err(|e| bad(&e))?;
            return Ok(DnsServer::Https { host, port, path });
        }
        if s.contains("://") {
            return Err(bad("the scheme is neither tls:// nor https://"));
        }
        s.parse::<std::net::SocketAddr>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
            .map(DnsServer::Plain)
            .map_err(|_| bad("a plain server is written as an address"))
    }
}

/// `[upstream] proxy`: the parent every upstream connection goes through: an HTTP proxy
/// ("http://[user:pass@]host:port", tunnels made with CONNECT) or a SOCKS5 proxy
/// ("socks5h://[user:pass@]host:port", names resolved by the parent, as Tor needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProxy {
    pub kind: ParentKind,
    pub host: String,
    pub port: u16,
    pub auth: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentKind {
    Http,
    Socks5,
}

impl ParentProxy {
    pub fn parse(s: &str) -> Result<ParentProxy, String> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a parent proxy like \"http://proxy.corp:3128\" or \"socks5h://127.0.0.1:9050\": {why}"
            )
        };
        let (kind, rest, default_port) = if let Some(r) = s.strip_prefix("http://") {
            (ParentKind::Http, r, 8080)
        } else if let Some(r) = s.strip_prefix("socks5h://") {
            (ParentKind::Socks5, r, 1080)
        } else if s.starts_with("socks5://") {
            return Err(bad("write socks5h:// (names are resolved by the parent, none leaks to a DNS server)"));
        } else {
            return Err(bad("the scheme is neither http:// nor socks5h://"));
        };
        let rest = rest.trim_end_matches('/');
        let (auth, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned();
                (Some((decode(user), decode(pass))), authority)
            }
            None => (None, rest),
        };
        let (host, port) = host_port(authority, default_port).map_err(|e| bad(&e))?;
        Ok(ParentProxy { kind, host, port, auth })
    }
}

/// "host", "host:port", "[v6]" or "[v6]:port", with `default` as the port when none is given.
fn host_port(s: &str, default: u16) -> Result<(String, u16), String> {
    if s.is_empty() || s.contains('/') {
        return Err("no host".into());
    }
    if let Some(v6) = s.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|e| format!("{ip}: {e}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
            None if after.is_empty() => default,
            None => return Err("text after the address".into()),
        };
        return Ok((ip.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some(("", _)) => Err("no host".into()),
        Some((h, p)) if !h.contains(':') => {
            Ok((h.to_ascii_lowercase(), p.parse().map_err(|_| format!("`{p}` is not a port"))?))
        }
        Some(_) => Err("write an IPv6 address in brackets".into()),
        None => Ok((s.to_ascii_lowercase(), default)),
    }
}
