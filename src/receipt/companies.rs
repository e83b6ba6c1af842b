//! Who is behind a domain: the company and, in plain words, what it does with a request, from
//! our own data file (config/data/companies.txt), for the receipt. Looked up by the host and
//! then each parent domain, so `securepubads.g.doubleclick.net` finds `doubleclick.net`.

use std::collections::HashMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("../../config/data/companies.txt");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Company {
    pub name: &'static str,
    pub what: &'static str,
}

fn table() -> &'static HashMap<&'static str, Company> {
    static TABLE: OnceLock<HashMap<&'static str, Company>> = OnceLock::new();
    TABLE.get_or_init(|| {
        DATA.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut parts = l.splitn(3, '|').map(str::trim);
                let (domain, name, what) = (parts.next()?, parts.next()?, parts.next()?);
                Some((domain, Company { name, what }))
            })
            .collect()
    })
}

/// The company behind `host`, when the data file names it.
pub fn of(host: &str) -> Option<Company> {
    let t = table();
    let mut h = host.trim_end_matches('.');
    loop {
        if let Some(c) = t.get(h) {
            return Some(*c);
        }
        h = h.split_once('.')?.1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_find_their_company_through_parent_domains() {
        assert_eq!(of("securepubads.g.doubleclick.net").map(|c| c.name), Some("Google"));
        assert_eq!(of("www.google-analytics.com").map(|c| c.name), Some("Google"));
        assert_eq!(of("static.hotjar.com").map(|c| c.what.contains("session recording")), Some(true));
        assert_eq!(of("news.example"), None);
        assert_eq!(of(""), None);
    }

    #[test]
    fn every_line_of_the_data_file_is_read() {
        let lines = DATA.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
        assert_eq!(table().len(), lines, "no line is malformed or repeated");
    }
}
