//! The shape of an identifier: whether a query parameter's or a cookie's value looks like one
//! (a browser's or a person's ID) rather than a setting, a version or a date. Learning
//! (proxy/forward/learn.rs) notes only such values; a learned tracker's requests lose every
//! query parameter of this shape (hygiene/request.rs).
//!
//! The shape: 8 to 512 bytes, not a date or a Unix time, not under a cache-busting or locale
//! name (`v`, `ts`, `lang`, ...), at least 5 different characters, and either two kinds of
//! character (letters and digits, or two cases) or at least 16 of one kind; that is at least
//! ~32 bits of room, the bar Privacy Badger sets for a cookie. Hand-written: a few lines no
//! crate offers.

/// Names whose values are cache keys, versions or settings, the same for everyone who asks.
const NOT_IDS: &[&str] = &[
    "v",
    "ver",
    "version",
    "_",
    "cb",
    "t",
    "ts",
    "time",
    "timestamp",
    "rnd",
    "rand",
    "random",
    "nocache",
    "cache",
    "cachebuster",
    "hash",
    "h",
    "build",
    "rev",
    "lang",
    "locale",
    "hl",
    "format",
    "callback",
    "jsonp",
    "expires",
    "path",
    "domain",
    "samesite",
    "max-age",
];

/// Whether a value under `name` has an identifier's shape (see the module's comment).
pub fn identifying(name: &str, value: &str) -> bool {
    let value = value.trim_matches('"');
    if !(8..=512).contains(&value.len()) {
        return false;
    }
    let name = name.trim();
    if name.len() <= 11 && NOT_IDS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return false;
    }
    // One pass: which ASCII characters occur, and of which kinds.
    let (mut seen, mut digits, mut lower, mut upper, mut date_like) = (0u128, 0usize, false, false, true);
    for b in value.bytes() {
        seen |= 1u128 << (b & 0x7f);
        match b {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'z' => lower = true,
            b'A'..=b'Z' => upper = true,
            _ => {}
        }
        date_like &= b.is_ascii_digit() || b"-:T Z.+/".contains(&b);
    }
    if date_like && digits < value.len() {
        return false; // a date or a time
    }
    if digits == value.len() && (value.len() == 10 || value.len() == 13) {
        return false; // a Unix time, in seconds or milliseconds
    }
    if seen.count_ones() < 5 {
        return false;
    }
    let kinds = usize::from(lower) + usize::from(upper) + usize::from(digits > 0);
    kinds >= 2 || value.len() >= 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_have_an_identifier_s_shape_and_settings_do_not() {
        for id in ["3f2a9b8c-1d4e-4f5a-9b6c-7d8e9f0a1b2c", "GA1.2.1234567890.1700000000", "aZ19kQ02xLp", "x7f3k2m9q1w8"]
        {
            assert!(identifying("uid", id), "{id}");
        }
        for not in [
            "1",
            "true",
            "en-US",
            "accepted",
            "2026-12-06",
            "2026-12-06T10:00:00Z",
            "1700000000",
            "1700000000123",
            "00000000",
            "aaaaaaaa",
        ] {
            assert!(!identifying("x", not), "{not}");
        }
        assert!(!identifying("v", "3f2a9b8c7d6e"), "a version");
        assert!(!identifying("lang", "de-DE-1996x"), "a locale");
    }
}
