//! Destination filtering, as Squid's and Privoxy's guides advise for shared proxies: the
//! addresses a request may be sent to, checked on the address a name resolved to (so a
//! decimal `2130706433`, `0`, or a name rebound to 127.0.0.1 are all caught). Never by
//! default: loopback, link-local, unspecified, multicast and broadcast; the private ranges
//! too when the proxy serves other machines (`[access] allow` beyond loopback), so a LAN
//! client cannot reach what listens on the gateway or beside it. `[upstream] deny` adds
//! CIDRs, `[upstream] allow` lets CIDRs through whatever else says.
//!
//! The rule is one per proxy, not per client, because upstream connections are pooled across
//! clients: a connection opened for one must be fit for all.

use crate::config::{parse_cidr, Config};
use crate::ops::access::unmap;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone)]
pub struct Destinations {
    allow: Vec<ipnet::IpNet>,
    deny: Vec<ipnet::IpNet>,
    private_denied: bool,
}

/// The error a refused destination gives: a 403 with its reason.
#[derive(Debug, thiserror::Error)]
#[error(
    "{addr} is not a destination this proxy forwards to ({why}). To reach it through nostalk, add it to \
     [upstream] allow in nostalk's config file, e.g. allow = [\"{addr}/{bits}\"], and reload.",
    bits = if addr.is_ipv4() { 32 } else { 128 }
)]
pub struct Refused {
    pub addr: IpAddr,
    pub why: &'static str,
}

impl Destinations {
    pub fn new(cfg: &Config) -> Destinations {
        let cidrs = |l: &[String]| l.iter().filter_map(|c| parse_cidr(c)).collect();
        Destinations {
            allow: cidrs(&cfg.upstream.allow),
            deny: cidrs(&cfg.upstream.deny),
            private_denied: crate::ops::access::Cidrs::new(&cfg.access.allow).admits_others(),
        }
    }

    /// Whether `ip` may be connected to; the reason when not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = unmap(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let refuse = |why| Err(Refused { addr: ip, why });
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return refuse("[upstream] deny");
        }
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_loopback() {
                    return refuse("loopback: the proxy's own host");
                }
                if v4.is_unspecified() || v4.octets()[0] == 0 {
                    return refuse("unspecified: the proxy's own host");
                }
                if v4.is_link_local() {
                    return refuse("link-local");
                }
                if v4.is_multicast() || v4.is_broadcast() {
                    return refuse("multicast or broadcast");
                }
                // 100.64.0.0/10 (carrier-grade NAT) is as local as the private ranges.
                let cgnat = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
                if self.private_denied && (v4.is_private() || cgnat) {
                    return refuse("a private range, and this proxy serves other machines");
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_loopback() || v6.is_unspecified() {
                    return refuse("loopback: the proxy's own host");
                }
                let seg0 = v6.segments()[0];
                if seg0 & 0xffc0 == 0xfe80 {
                    return refuse("link-local");
                }
                if v6.is_multicast() {
                    return refuse("multicast or broadcast");
                }
                if self.private_denied && seg0 & 0xfe00 == 0xfc00 {
                    return refuse("a private range, and this proxy serves other machines");
                }
            }
        }
        Ok(())
    }

    /// The addresses among `addrs` that may be connected to; the first refusal when none may.
    pub fn filter(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first_refusal = None;
        let ok: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check(a.ip()) {
                Ok(()) => true,
                Err(r) => {
                    first_refusal.get_or_insert(r);
                    false
                }
            })
            .collect();
        match (ok.is_empty(), first_refusal) {
            (true, Some(r)) => Err(r),
            _ => Ok(ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(toml: &str) -> Destinations {
        Destinations::new(&Config::parse(toml).unwrap())
    }

    #[test]
    fn the_proxy_hosts_own_addresses_are_refused_by_default() {
        let d = dest("");
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
        ] {
            assert!(d.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "192.168.1.1", "10.1.2.3"] {
            assert!(d.check(ip.parse().unwrap()).is_ok(), "{ip}: a one-person proxy may reach the LAN");
        }
    }

    #[test]
    fn private_ranges_close_when_other_machines_are_served() {
        let d = dest("[access]\nallow = [\"192.168.1.0/24\"]\n");
        for ip in ["192.168.1.1", "10.1.2.3", "172.16.0.1", "100.64.0.1", "fd00::1"] {
            assert!(d.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
        assert!(d.check("93.184.216.34".parse().unwrap()).is_ok());
    }

    #[test]
    fn allow_and_deny_cidrs() {
        let d = dest("[upstream]\nallow = [\"127.0.0.0/8\"]\ndeny = [\"93.184.216.0/24\"]\n");
        assert!(d.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(d.check("93.184.216.34".parse().unwrap()).is_err());
        let addrs = vec!["127.0.0.1:80".parse().unwrap(), "93.184.216.34:80".parse().unwrap()];
        assert_eq!(d.filter(addrs).unwrap().len(), 1);
    }
}
