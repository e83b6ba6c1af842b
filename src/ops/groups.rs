//! `[[groups]]`: which group's rules (its ad mode, the sites it trusts) a request is decided
//! with. A group names its `members` (users of `[auth]`) and its `networks` (client address
//! ranges: a floor, a VLAN, a lab); a signed-in user's group wins over a network's, and among
//! networks the narrowest that holds the client. Built from the config at start and again on
//! every reload (swapped whole in `Shared`), and read by `Shared::overlay`, the one place a
//! request's overlays are put together.

use crate::config::{parse_cidr, Config};
use crate::policy::overlay::GroupRules;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Default)]
pub struct Groups {
    by_user: HashMap<String, Arc<GroupRules>>,
    /// Narrowest first.
    by_network: Vec<(ipnet::IpNet, Arc<GroupRules>)>,
}

impl Groups {
    pub fn new(config: &Config) -> Groups {
        let mut groups = Groups::default();
        for g in &config.groups {
            let rules = Arc::new(GroupRules {
                name: g.name.clone(),
                ads: g.ads,
                trusted: g
                    .trusted_sites
                    .iter()
                    .map(|s| crate::policy::site::site_of(&s.to_ascii_lowercase()))
                    .collect(),
            });
            for m in &g.members {
                groups.by_user.insert(m.clone(), rules.clone());
            }
            // `check` names a network that does not parse; none is used then.
            for net in g.networks.iter().filter_map(|n| parse_cidr(n)) {
                groups.by_network.push((net, rules.clone()));
            }
        }
        groups.by_network.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        groups
    }

    /// The group `user` (when signed in) or the client at `ip` belongs to.
    pub fn of(&self, user: Option<&str>, ip: IpAddr) -> Option<Arc<GroupRules>> {
        if let Some(g) = user.and_then(|u| self.by_user.get(u)) {
            return Some(g.clone());
        }
        if self.by_network.is_empty() {
            return None;
        }
        let ip = crate::ops::access::unmap(ip);
        self.by_network.iter().find(|(net, _)| net.contains(&ip)).map(|(_, g)| g.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_s_group_wins_and_the_narrowest_network_holds() {
        let cfg = Config::parse(
            "[auth]\nusers = \"/dev/null\"\n\
             [[groups]]\nname = \"floor\"\nnetworks = [\"10.1.0.0/16\"]\n\
             [[groups]]\nname = \"lab\"\nnetworks = [\"10.1.2.0/24\", \"fd00:1::/64\"]\nads = \"block\"\n\
             [[groups]]\nname = \"staff\"\nmembers = [\"alice\"]\n",
        )
        .unwrap();
        let g = Groups::new(&cfg);
        let name = |user: Option<&str>, ip: &str| g.of(user, ip.parse().unwrap()).map(|r| r.name.clone());
        assert_eq!(name(None, "10.1.2.3").as_deref(), Some("lab"));
        assert_eq!(name(None, "10.1.9.9").as_deref(), Some("floor"));
        assert_eq!(name(None, "::ffff:10.1.2.3").as_deref(), Some("lab"), "an IPv4 client on a dual-stack socket");
        assert_eq!(name(None, "fd00:1::5").as_deref(), Some("lab"));
        assert_eq!(name(Some("alice"), "10.1.2.3").as_deref(), Some("staff"), "the user's group wins");
        assert_eq!(name(Some("bob"), "10.1.2.3").as_deref(), Some("lab"));
        assert_eq!(name(None, "192.168.1.1"), None);
    }
}
