//! The parent proxy (`[upstream] proxy`): which upstream connections go through it (all but
//! `[upstream] no_proxy`'s names and networks), and the handshake that turns a connection to
//! the parent into a tunnel to the destination: HTTP `CONNECT` for an HTTP parent (an ISP's
//! or a company's proxy), SOCKS5 with the name unresolved for a SOCKS parent (Tor's SOCKS
//! port: no name is ever looked up here, so no DNS query leaves the machine). A plain `http`
//! request goes to an HTTP parent as a proxy request (absolute form, with the parent's
//! credentials), as browsers send it: a parent commonly refuses CONNECT but to port 443.
//!
//! The SOCKS5 handshake is tokio-socks's. The CONNECT handshake is written here: it is one
//! request and one response head, and reading that head with `peek` keeps any byte after it
//! in the socket for the tunnel, which a general HTTP client would not promise.

use crate::config::{parse_cidr, Config, ParentKind, ParentProxy, ResolveEntry};
use base64::Engine;
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response head a parent may answer CONNECT with.
const MAX_HEAD: usize = 8 * 1024;

pub struct Parent {
    proxy: ParentProxy,
    /// The parent's address when `[upstream] resolve` pins it or it is written as one.
    pinned: Option<SocketAddr>,
    no_proxy_names: Vec<String>,
    no_proxy_nets: Vec<ipnet::IpNet>,
}

impl Parent {
    /// The parent `cfg` names, if any (`check` reports a malformed one; none is used then).
    pub fn new(cfg: &Config, resolve: &[ResolveEntry]) -> Option<Parent> {
        let proxy = cfg.parent_proxy()?.ok()?;
        let pinned = match proxy.host.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, proxy.port)),
            Err(_) => ResolveEntry::pinned(resolve, &proxy.host, proxy.port),
        };
        let mut no_proxy_names = Vec::new();
        let mut no_proxy_nets = Vec::new();
        for n in &cfg.upstream.no_proxy {
            match parse_cidr(n) {
                Some(net) => no_proxy_nets.push(net),
                None => no_proxy_names.push(n.trim_start_matches('.').to_ascii_lowercase()),
            }
        }
        Some(Parent { proxy, pinned, no_proxy_names, no_proxy_nets })
    }

    /// Whether a connection to `host` (pinned to `addr` when known without a lookup) goes
    /// through the parent.
    pub fn covers(&self, host: &str, addr: Option<IpAddr>) -> bool {
        if let Some(ip) = addr {
            if self.no_proxy_nets.iter().any(|n| n.contains(&ip)) {
                return false;
            }
        }
        let host = host.trim_end_matches('.');
        !self.no_proxy_names.iter().any(|n| {
            host.len() >= n.len()
                && host[host.len() - n.len()..].eq_ignore_ascii_case(n)
                && (host.len() == n.len() || host.as_bytes()[host.len() - n.len() - 1] == b'.')
        })
    }

    /// For an HTTP parent, the Proxy-Authorization its plain `http` requests carry (`Some(None)`
    /// without credentials); None for a SOCKS parent, which only tunnels.
    pub fn forwards_plain(&self) -> Option<Option<http::HeaderValue>> {
        match self.proxy.kind {
            ParentKind::Http => Some(self.proxy.auth.as_ref().and_then(|(user, pass)| {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                http::HeaderValue::from_str(&format!("Basic {token}")).ok()
            })),
            ParentKind::Socks5 => None,
        }
    }

    /// A tunnel through the parent to `host:port` (a name, given to the parent as it is, or
    /// an address).
    pub async fn open(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let tcp = self.reach().await?;
        match self.proxy.kind {
            ParentKind::Http => self.connect(tcp, host, port).await,
            ParentKind::Socks5 => self.socks5(tcp, host, port).await,
        }
    }

    /// A connection to the parent itself.
    pub async fn reach(&self) -> io::Result<TcpStream> {
        let tcp = match self.pinned {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((self.proxy.host.as_str(), self.proxy.port)).await,
        }
        .map_err(|e| {
            io::Error::new(e.kind(), format!("the parent proxy {}:{}: {e}", self.proxy.host, self.proxy.port))
        })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn connect(&self, mut tcp: TcpStream, host: &str, port: u16) -> io::Result<TcpStream> {
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, pass)) = &self.proxy.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        // Peek until the head's end, then take exactly the head: what follows is the tunnel's.
        let mut buf = vec![0u8; MAX_HEAD];
        let end = loop {
            let n = tcp.peek(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the parent proxy closed the connection"));
            }
            if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if n == MAX_HEAD {
                return Err(io::Error::other("the parent proxy's answer to CONNECT is too long"));
            }
            tcp.readable().await?;
        };
        tcp.read_exact(&mut buf[..end]).await?;
        let status_line = buf[..end].split(|&b| b == b'\r').next().unwrap_or_default();
        let status = std::str::from_utf8(status_line).unwrap_or("").split(' ').nth(1).unwrap_or("");
        match status {
            s if s.starts_with('2') => Ok(tcp),
            "407" => Err(needs_credentials()),
            s => Err(io::Error::other(format!("the parent proxy refused the tunnel to {authority} ({s})"))),
        }
    }

    async fn socks5(&self, tcp: TcpStream, host: &str, port: u16) -> io::Result<TcpStream> {
        use tokio_socks::tcp::Socks5Stream;
        let target = (host, port);
        let stream = match &self.proxy.auth {
            Some((user, pass)) => Socks5Stream::connect_with_password_and_socket(tcp, target, user, pass).await,
            None => Socks5Stream::connect_with_socket(tcp, target).await,
        }
        .map_err(|e| io::Error::other(format!("the SOCKS parent proxy: {e}")))?;
        Ok(stream.into_inner())
    }
}

/// The parent answered 407: what to write, and where.
pub fn needs_credentials() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the parent proxy asks for credentials: write them in [upstream] proxy as http://user:pass@host:port",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(extra: &str) -> Parent {
        let cfg = Config::parse(&format!("[upstream]\nproxy = \"socks5h://127.0.0.1:9050\"\n{extra}")).unwrap();
        Parent::new(&cfg, &cfg.resolve_entries()).unwrap()
    }

    #[test]
    fn no_proxy_names_cover_subdomains_and_networks_cover_addresses() {
        let p = parent("no_proxy = [\"corp.example\", \".lan\", \"10.0.0.0/8\"]");
        assert!(!p.covers("corp.example", None));
        assert!(!p.covers("wiki.corp.example", None));
        assert!(p.covers("notcorp.example", None));
        assert!(!p.covers("printer.lan", None));
        assert!(!p.covers("10.1.2.3", Some("10.1.2.3".parse().unwrap())));
        assert!(p.covers("news.example", Some("93.184.216.34".parse().unwrap())));
        assert_eq!(p.pinned, Some("127.0.0.1:9050".parse().unwrap()));
    }
}
