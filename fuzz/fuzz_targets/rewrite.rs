//! The rewriter on arbitrary bytes: the first byte picks the content coding and the charset,
//! the rest is the body as an origin would send it. Never a panic; whatever comes out of the
//! decoder goes through the HTML rewriter.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn policy() -> Arc<nostalk::Policy> {
    static P: OnceLock<Arc<nostalk::Policy>> = OnceLock::new();
    P.get_or_init(|| Arc::new(nostalk::Policy::build(&nostalk::Config::embedded(), &[]).expect("embedded policy")))
        .clone()
}

const CODINGS: [&str; 5] = ["identity", "gzip", "deflate", "br", "zstd"];
const CHARSETS: [&str; 4] = ["utf-8", "windows-1252", "shift_jis", "iso-2022-jp"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let coding = CODINGS[(pick & 0x07) as usize % CODINGS.len()];
    let charset = CHARSETS[((pick >> 3) & 0x03) as usize];
    let decoded = match nostalk::rewrite::decode_all(coding, body, 8 << 20) {
        Ok(d) => d,
        Err(_) => return,
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, format!("text/html; charset={charset}").parse().unwrap());
    if pick & 0x20 != 0 {
        headers.insert("content-security-policy", "script-src 'self' 'nonce-abc'".parse().unwrap());
    }
    let _ = nostalk::rewrite::rewrite_bytes(&decoded, policy(), "news.example", &mut headers);
});
