//! The names devices gave the household's DHCP server, read from its lease file (dnsmasq's
//! format, as OpenWrt keeps it in `/tmp/dhcp.leases`: `EXPIRY MAC ADDRESS NAME CLIENT-ID` per
//! line, `*` for no name), so the operators' receipt page can say "laptop (192.168.1.20)"
//! rather than an address alone. Read when that page is drawn: the file is small and changes
//! as leases do. Written here because it is one line format and no crate reads it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The lease file: `[receipt] leases`, else OpenWrt's when it exists.
pub fn file(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from("/tmp/dhcp.leases")).filter(|p| p.is_file()),
    }
}

/// Each leased address with the name its device gave (those without a name are left out).
/// A file that cannot be read gives none: the page then shows addresses.
pub fn names(path: &Path) -> HashMap<IpAddr, String> {
    // A lease file holds a line per device; a household's is a few KB at most.
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    parse(&text)
}

fn parse(text: &str) -> HashMap<IpAddr, String> {
    let mut names = HashMap::new();
    for line in text.lines().take(4096) {
        let mut f = line.split_whitespace();
        let (Some(_expiry), Some(_mac), Some(addr), Some(name)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(ip) = addr.parse::<IpAddr>() else { continue };
        if name == "*" || name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            continue;
        }
        names.insert(ip, name.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dnsmasq_lease_file_names_its_devices() {
        let names = parse(
            "1733400000 aa:bb:cc:dd:ee:01 192.168.1.20 laptop 01:aa:bb:cc:dd:ee:01\n\
             1733400000 aa:bb:cc:dd:ee:02 192.168.1.21 * *\n\
             duid 00:01:00:01:2c:aa\n\
             1733400000 1234 fd00::21 phone-2 00:01\n\
             1733400000 aa:bb:cc:dd:ee:03 192.168.1.22 <script> *\n",
        );
        assert_eq!(names.get(&"192.168.1.20".parse().unwrap()).map(String::as_str), Some("laptop"));
        assert_eq!(names.get(&"fd00::21".parse().unwrap()).map(String::as_str), Some("phone-2"));
        assert!(!names.contains_key(&"192.168.1.21".parse().unwrap()), "no name given");
        assert!(!names.contains_key(&"192.168.1.22".parse().unwrap()), "not a host name");
        assert_eq!(names.len(), 2);
    }
}
