//! Hop-by-hop headers (RFC 9110 7.6.1): the fixed set plus every header the `Connection`
//! header names, removed before a message is forwarded in either direction.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The fixed hop-by-hop set, as header names (no parsing on the hot path).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop headers. With `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay
/// (a WebSocket handshake must reach the origin). Runs twice per request: one pass over the
/// names finds which are there (most messages carry one or none), and only those are removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Bit i: HOP_BY_HOP[i] is present; bit 8: Upgrade.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::UPGRADE {
            present |= 1 << 8;
        }
    }
    if present & 1 != 0 {
        // Connection is removed here with all its values (it is first in HOP_BY_HOP); the
        // names it lists are removed by name, parsed in place. Only a second Connection
        // header allocates (an empty Vec does not).
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        headers.remove(header::CONNECTION);
        for value in first.iter().chain(&rest) {
            for name in value.to_str().unwrap_or("").split(',').map(str::trim) {
                let kept = name.is_empty() || (keep_upgrade && name.eq_ignore_ascii_case("upgrade"));
                if !kept {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(n);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & (1 << 8) != 0 {
        headers.remove(header::UPGRADE);
    }
}

pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn every_connection_header_counts_and_names_are_matched_without_case() {
        let mut h = HeaderMap::new();
        h.append("connection", "X-One".parse().unwrap());
        h.append("connection", "x-two, close".parse().unwrap());
        h.insert("x-one", "1".parse().unwrap());
        h.insert("x-two", "2".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        // A name that is not a header name is skipped, not an error.
        let mut h = HeaderMap::new();
        h.insert("connection", "bad name, x-three".parse().unwrap());
        h.insert("x-three", "3".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_as_it_was() {
        let mut h = HeaderMap::new();
        h.insert("accept", "*/*".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
        // Upgrade alone (no Connection naming it) is still hop-by-hop without keep_upgrade.
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }
}
