//! The resolver the dialer asks (hickory): `[upstream] dns` alone when set (a plain server
//! over UDP and TCP, DNS over TLS, or DNS over HTTPS), else the system's configuration. A
//! DoT or DoH server named by host is found once when the resolver is built, through
//! `[upstream] resolve` or the system's resolver (the bootstrap such a server needs), and
//! its certificate is checked against that name with the same roots as every upstream
//! (webpki's and `[upstream] extra_roots`). When that server cannot be found, no other is
//! asked in its place: names then fail to resolve, and nothing leaks to a plain server.

use crate::config::{Config, DnsServer, ResolveEntry};
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The resolver for `cfg`, and whether its answer is final (a `dns` is set: no getaddrinfo
/// fallback). `tls` is the upstream client configuration, whose roots DoT and DoH trust.
pub fn build(cfg: &Config, resolve: &[ResolveEntry], tls: &rustls::ClientConfig) -> (TokioResolver, bool) {
    let provider = TokioConnectionProvider::default();
    let (mut builder, dns_only) = match cfg.dns_server() {
        Some(Ok(server)) => {
            let mut rc = ResolverConfig::new();
            for ns in name_servers(&server, resolve) {
                rc.add_name_server(ns);
            }
            (Resolver::builder_with_config(rc, provider), true)
        }
        // `check` reports a bad server; the system's servers meanwhile. With no system
        // configuration, no server is asked and getaddrinfo answers.
        _ => match Resolver::builder_tokio() {
            Ok(b) => (b, false),
            Err(_) => (Resolver::builder_with_config(ResolverConfig::new(), provider), false),
        },
    };
    let opts = builder.options_mut();
    // No cache in the resolver: it would hold whole answers, however large (the dialer keeps
    // a bounded one).
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    let mut dns_tls = tls.clone();
    // hickory sets ALPN itself for DoH ("h2"); DoT has none.
    dns_tls.alpn_protocols.clear();
    opts.tls_config = dns_tls;
    (builder.build(), dns_only)
}

/// The name servers for one `[upstream] dns` value: none when a DoT or DoH server's host
/// cannot be found (logged).
fn name_servers(server: &DnsServer, resolve: &[ResolveEntry]) -> Vec<NameServerConfig> {
    let (host, port, protocol, path) = match server {
        DnsServer::Plain(addr) => {
            return vec![NameServerConfig::new(*addr, Protocol::Udp), NameServerConfig::new(*addr, Protocol::Tcp)];
        }
        DnsServer::Tls { host, port } => (host, *port, Protocol::Tls, None),
        DnsServer::Https { host, port, path } => (host, *port, Protocol::Https, Some(path.clone())),
    };
    let addrs = find(host, port, resolve);
    if addrs.is_empty() {
        tracing::error!(server = %host, "the DNS server in [upstream] dns cannot be found: no name will resolve until it can (restart or reload)");
    }
    addrs
        .into_iter()
        .map(|addr| {
            let mut ns = NameServerConfig::new(addr, protocol);
            ns.tls_dns_name = Some(host.clone());
            ns.http_endpoint = path.clone();
            ns.trust_negative_responses = true;
            ns
        })
        .collect()
}

/// Where a DoT or DoH server is: its address, `[upstream] resolve`'s pin, or the system's
/// answer for its name (at most 4 addresses).
fn find(host: &str, port: u16, resolve: &[ResolveEntry]) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    if let Some(addr) = ResolveEntry::pinned(resolve, host, port) {
        return vec![addr];
    }
    (host, port).to_socket_addrs().map(|a| a.take(4).collect()).unwrap_or_default()
}
