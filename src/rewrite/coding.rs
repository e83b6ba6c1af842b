//! Content codings between upstream, the rewriter and the browser: which codings upstream is
//! offered (only those the rewriter decodes, and among them only those the client accepts),
//! which coding a response is in, and its charset. The decoders themselves are in `decode`.

use http::header::{self, HeaderMap, HeaderValue};

/// The header for each set of `Coding::DECODED` bits (gzip 1, deflate 2, br 4, zstd 8), in
/// that order: a static value, so narrowing the header allocates nothing.
const ACCEPTED: [&str; 16] = [
    "",
    "gzip",
    "deflate",
    "gzip, deflate",
    "br",
    "gzip, br",
    "deflate, br",
    "gzip, deflate, br",
    "zstd",
    "gzip, zstd",
    "deflate, zstd",
    "gzip, deflate, zstd",
    "br, zstd",
    "gzip, br, zstd",
    "deflate, br, zstd",
    "gzip, deflate, br, zstd",
];

/// Ask upstream only for encodings the rewriter can decode, and among them only those the
/// client accepts: a response that turns out not to be HTML passes to the client as it came,
/// so it must be in a coding the client asked for (a client that names none gets identity).
/// Returns whether the client accepts gzip. Runs on every document request, and allocates
/// nothing.
pub fn limit_accept_encoding(headers: &mut HeaderMap) -> bool {
    // Coding::bit of each accepted coding the rewriter decodes.
    let mut accepted = 0u8;
    // Split as bytes: the header is short, and str patterns cost more than the scan.
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        for item in v.as_bytes().split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            // `q=0` means "not this one"; anything else (or no q) means it is acceptable.
            let refused = parts.any(|p| {
                let Some(eq) = p.iter().position(|&b| b == b'=') else { return false };
                let q = std::str::from_utf8(p[eq + 1..].trim_ascii()).ok().and_then(|q| q.parse::<f32>().ok());
                p[..eq].trim_ascii().eq_ignore_ascii_case(b"q") && q.is_some_and(|q| q <= 0.0)
            });
            if refused {
                continue;
            }
            accepted |= match coding {
                b"*" => Coding::ALL_DECODED,
                name => std::str::from_utf8(name).ok().and_then(Coding::from_name).map_or(0, Coding::bit),
            };
        }
    }
    match accepted {
        0 => {
            headers.remove(header::ACCEPT_ENCODING);
        }
        Coding::ALL_DECODED => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br, zstd"));
        }
        some => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED[usize::from(some)]));
        }
    }
    accepted & Coding::Gzip.bit() != 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The codings the rewriter decodes, in the order upstream is offered them.
    const DECODED: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];
    /// Every bit of `DECODED`.
    const ALL_DECODED: u8 = 0b1111;

    /// A content-coding by its name in Content-Encoding or Accept-Encoding (any case); None
    /// for one the rewriter cannot decode.
    pub(crate) fn from_name(name: &str) -> Option<Coding> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        Some(if name.is_empty() || is("identity") {
            Coding::Identity
        } else if is("gzip") || is("x-gzip") {
            Coding::Gzip
        } else if is("deflate") {
            Coding::Deflate
        } else if is("br") {
            Coding::Brotli
        } else if is("zstd") {
            Coding::Zstd
        } else {
            return None;
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// Its bit in a set of decoded codings (none for identity, which needs no decoding).
    fn bit(self) -> u8 {
        Coding::DECODED.iter().position(|c| *c == self).map_or(0, |i| 1 << i)
    }
}

/// The coding a response is in; None for one the rewriter cannot decode.
pub(crate) fn coding_of(headers: &HeaderMap) -> Option<Coding> {
    let Some(ce) = headers.get(header::CONTENT_ENCODING) else {
        return Some(Coding::Identity);
    };
    Coding::from_name(ce.to_str().ok()?.trim())
}

/// The charset named in a response's Content-Type, if lol_html knows it.
pub(crate) fn charset_of(headers: &HeaderMap) -> Option<&'static encoding_rs::Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let label = ct.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"'))
    })?;
    encoding_rs::Encoding::for_label(label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_set_of_codings_has_its_names_in_order() {
        for bits in 0..16u8 {
            let names: Vec<&str> = Coding::DECODED.iter().filter(|c| bits & c.bit() != 0).map(|c| c.name()).collect();
            assert_eq!(ACCEPTED[usize::from(bits)], names.join(", "), "bits {bits:04b}");
        }
    }

    #[test]
    fn the_header_keeps_only_what_both_sides_take() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=1.0, compress, gzip;q=0, zstd"));
        assert!(!limit_accept_encoding(&mut h));
        assert_eq!(h[header::ACCEPT_ENCODING], "br, zstd");
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("compress"));
        limit_accept_encoding(&mut h);
        assert!(!h.contains_key(header::ACCEPT_ENCODING));
    }
}
