//! The rewriter after an oversized token: a page with a tag whose attribute is past the
//! rewriter's memory and ends with arbitrary bytes (anything an attacker puts in the
//! attribute's tail: `<!--`, `<textarea>`, `'`, `>`...), then a tracker snippet, a pixel and a
//! decorated link. Never a panic, the page comes out whole, and whatever the tail holds, the
//! rewriter resumes where the tag ends: nothing after it reaches the browser uncleaned.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn policy() -> Arc<nostalk::Policy> {
    static P: OnceLock<Arc<nostalk::Policy>> = OnceLock::new();
    P.get_or_init(|| Arc::new(nostalk::Policy::build(&nostalk::Config::embedded(), &[]).expect("embedded policy")))
        .clone()
}

fn padding() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| vec![b'a'; nostalk::rewrite::MAX_REWRITER_MEMORY + 1024])
}

const AFTER: &[u8] = b"<script>(function(i,s,o,g,r,a,m){i['GoogleAnalyticsObject']=r;})(window,document,'script','//www.google-analytics.com/analytics.js','ga');ga('create','UA-1','auto');</script>\n\
<img src=\"https://www.facebook.com/tr?id=1&ev=PageView\" width=\"1\" height=\"1\">\n\
<a href=\"/next?id=2&utm_source=feed\" ping=\"https://log.news.test/p\">Next</a>\n<p>the end</p></body></html>";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, tail)) = data.split_first() else { return };
    // The first byte picks the quote; the tail keeps inside the attribute (no closing quote).
    let quote = if pick & 1 == 0 { b'"' } else { b'\'' };
    let tail: Vec<u8> = tail.iter().copied().filter(|&b| b != quote).take(4096).collect();
    let mut page = b"<!doctype html><html><head><title>t</title></head><body><div title=".to_vec();
    page.push(quote);
    page.extend_from_slice(padding());
    page.extend_from_slice(&tail);
    page.push(quote);
    page.extend_from_slice(b" class=\"c\">a</div>\n");
    page.extend_from_slice(AFTER);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, "text/html; charset=utf-8".parse().unwrap());
    let (out, _, _) = nostalk::rewrite::rewrite_bytes(&page, policy(), "news.example", &mut headers);
    assert!(out.ends_with(b"<p>the end</p></body></html>"), "the page is whole");
    let out = String::from_utf8_lossy(&out);
    // The last `>a</div>` is the tag's own (the tail may hold the same text before it).
    let rest = &out[out.rfind(">a</div>\n").expect("the tag and its element pass")..];
    assert!(!rest.contains("GoogleAnalyticsObject"), "the snippet after the token: {rest}");
    assert!(!rest.contains("facebook.com/tr"), "the pixel after the token: {rest}");
    assert!(!rest.contains("ping=") && !rest.contains("utm_source"), "the link after the token: {rest}");
});
