//! Content codings between upstream, the rewriter and the browser: which codings upstream is
//! offered (only those the rewriter decodes, and among them only those the client accepts),
//! which coding a response is in, and its charset. The decoders themselves are in `decode`.

use http::header::{self, HeaderMap, HeaderValue};

/// Ask upstream only for encodings the rewriter can decode, and among them only those the
/// client accepts: a response that turns out not to be HTML passes to the client as it came,
/// so it must be in a coding the client asked for (a client that names none gets identity).
/// Returns whether the client accepts gzip. Runs on every document request, so it does not
/// allocate for a client that names none or all four (Chrome and Firefox do).
pub fn limit_accept_encoding(headers: &mut HeaderMap) -> bool {
    // Coding::bit of each accepted coding the rewriter decodes.
    let mut accepted = 0u8;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        for item in v.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            // `q=0` means "not this one"; anything else (or no q) means it is acceptable.
            let refused = parts
                .filter_map(|p| p.split_once('='))
                .any(|(k, q)| k.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0));
            if refused {
                continue;
            }
            accepted |=
                if coding == "*" { Coding::ALL_DECODED } else { Coding::from_name(coding).map_or(0, Coding::bit) };
        }
    }
    match accepted {
        0 => {
            headers.remove(header::ACCEPT_ENCODING);
        }
        Coding::ALL_DECODED => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br, zstd"));
        }
        _ => {
            let names: Vec<&str> =
                Coding::DECODED.iter().filter(|c| accepted & c.bit() != 0).map(|c| c.name()).collect();
            // Always Ok: the names joined are the codings' own, plain ASCII.
            if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
                headers.insert(header::ACCEPT_ENCODING, v);
            }
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
