//! Client access control: `[access] allow` CIDRs; loopback alone when the list is empty.

use crate::config::{parse_cidr, Config};
use std::net::IpAddr;

pub struct Access {
    allow: Vec<ipnet::IpNet>,
}

impl Access {
    pub fn new(cfg: &Config) -> Access {
        Access { allow: cfg.access.allow.iter().filter_map(|c| parse_cidr(c)).collect() }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if self.allow.is_empty() {
            return ip.is_loopback();
        }
        self.allow.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_alone_by_default_and_cidrs_when_given() {
        let mut cfg = Config::default();
        let a = Access::new(&cfg);
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(!a.allows("192.168.1.5".parse().unwrap()));
        cfg.access.allow = vec!["192.168.1.0/24".into(), "10.0.0.7".into()];
        let a = Access::new(&cfg);
        assert!(a.allows("192.168.1.5".parse().unwrap()));
        assert!(a.allows("::ffff:10.0.0.7".parse().unwrap()));
        assert!(!a.allows("127.0.0.1".parse().unwrap()));
    }
}
