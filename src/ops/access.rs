//! Who may do what: `[access] allow` says which clients may use the proxy and read its
//! receipt, `[admin] allow` (and `[admin] token`) which may read `/metrics` and use the
//! controls. Both lists are loopback alone when empty; loopback may always reach the health
//! checks and the admin pages of its own machine.

use crate::config::{parse_cidr, Config};
use std::net::IpAddr;

/// A set of CIDRs, or loopback alone when none is given.
pub struct Cidrs {
    allow: Vec<ipnet::IpNet>,
}

impl Cidrs {
    pub fn new(list: &[String]) -> Cidrs {
        Cidrs { allow: list.iter().filter_map(|c| parse_cidr(c)).collect() }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        if self.allow.is_empty() {
            return ip.is_loopback();
        }
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Whether a client other than this machine's own may be in the set.
    pub fn admits_others(&self) -> bool {
        self.allow.iter().any(|n| !n.network().is_loopback() || n.prefix_len() == 0)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub struct Access {
    users: Cidrs,
    admins: Cidrs,
    token: Option<String>,
}

impl Access {
    pub fn new(cfg: &Config) -> Access {
        Access {
            users: Cidrs::new(&cfg.access.allow),
            admins: Cidrs::new(&cfg.admin.allow),
            token: cfg.admin.token.clone().filter(|t| !t.is_empty()),
        }
    }

    /// May this client connect at all? Its own machine always may: the proxy's host must be
    /// able to check its health and reach its admin pages, whatever `[access] allow` says.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.users.contains(ip) || unmap(ip).is_loopback()
    }

    /// May this client use the proxy (forward, read the receipt)?
    pub fn is_user(&self, ip: IpAddr) -> bool {
        self.users.contains(ip)
    }

    /// Whether this client's address is in `[admin] allow` (a refusal is then for the token).
    pub fn admin_address(&self, ip: IpAddr) -> bool {
        self.admins.contains(ip)
    }

    /// May this client read `/metrics` and use the controls? Its address must be in
    /// `[admin] allow` and, when a token is set, `authorization` must carry it.
    pub fn is_admin(&self, ip: IpAddr, authorization: Option<&[u8]>) -> bool {
        if !self.admins.contains(ip) {
            return false;
        }
        match &self.token {
            None => true,
            Some(t) => authorization
                .and_then(|a| a.strip_prefix(b"Bearer "))
                .is_some_and(|given| constant_time_eq(given, t.as_bytes())),
        }
    }
}

/// Compare without stopping at the first differing byte, so timing says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_alone_by_default_and_cidrs_when_given() {
        let mut cfg = Config::default();
        let a = Access::new(&cfg);
        assert!(a.is_user("127.0.0.1".parse().unwrap()));
        assert!(a.is_user("::1".parse().unwrap()));
        assert!(!a.is_user("192.168.1.5".parse().unwrap()));
        assert!(!Cidrs::new(&cfg.access.allow).admits_others());
        cfg.access.allow = vec!["192.168.1.0/24".into(), "10.0.0.7".into()];
        let a = Access::new(&cfg);
        assert!(a.is_user("192.168.1.5".parse().unwrap()));
        assert!(a.is_user("::ffff:10.0.0.7".parse().unwrap()));
        assert!(!a.is_user("127.0.0.1".parse().unwrap()));
        assert!(a.allows("127.0.0.1".parse().unwrap()), "the proxy's own host is never locked out");
        assert!(Cidrs::new(&cfg.access.allow).admits_others());
    }

    #[test]
    fn admins_need_their_address_and_the_token_when_one_is_set() {
        let mut cfg = Config::default();
        cfg.access.allow = vec!["192.168.1.0/24".into()];
        let a = Access::new(&cfg);
        assert!(a.is_admin("127.0.0.1".parse().unwrap(), None));
        assert!(!a.is_admin("192.168.1.5".parse().unwrap(), None), "a user is not an admin");
        cfg.admin.token = Some("0123456789abcdef".into());
        let a = Access::new(&cfg);
        assert!(!a.is_admin("127.0.0.1".parse().unwrap(), None));
        assert!(!a.is_admin("127.0.0.1".parse().unwrap(), Some(b"Bearer 0123456789abcdeX")));
        assert!(a.is_admin("127.0.0.1".parse().unwrap(), Some(b"Bearer 0123456789abcdef")));
    }
}
