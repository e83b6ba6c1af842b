//! Sites and parties: a host's site is its registrable domain (eTLD+1) by the Public Suffix
//! List, compiled in by the `psl` crate. Two hosts are first party to each other when their
//! sites are equal.

/// The registrable domain of `host`, lowercased; the host itself for IP addresses and for names
/// the list does not cover (a bare `localhost`).
pub fn site_of(host: &str) -> String {
    let host = host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']');
    let lower;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = host.to_ascii_lowercase();
        lower.as_str()
    } else {
        host
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host.to_string();
    }
    psl::domain_str(host).unwrap_or(host).to_string()
}

/// The host part of a URL string, without port or credentials.
pub fn host_of_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host =
        if let Some(v6) = authority.strip_prefix('[') { v6.split(']').next()? } else { authority.split(':').next()? };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_follow_the_public_suffix_list() {
        assert_eq!(site_of("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(site_of("a.b.news.test"), "news.test");
        assert_eq!(site_of("Static.Example.COM"), "example.com");
        assert_eq!(site_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(site_of("user.github.io"), "user.github.io");
    }

    #[test]
    fn hosts_come_out_of_urls() {
        assert_eq!(host_of_url("https://u:p@Ads.test:8443/x?y"), Some("Ads.test"));
        assert_eq!(host_of_url("http://[::1]:80/"), Some("::1"));
        assert_eq!(host_of_url("nonsense"), None);
    }
}
