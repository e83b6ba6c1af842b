//! The HTML rewriter on the proxy's path: compressed pages in every encoding, bodies that are
//! not HTML passing byte for byte, the first bytes of a page flowing before the origin has
//! finished, CSP cases end to end, and the 65 real pages in ../shared/data/pages (visible text
//! kept, blocked services gone, nothing else taken out).

mod support;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use nostalk::policy::{RequestInfo, RequestType, Verdict};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const PAGE: &str = r#"<!doctype html><html><head><title>Story</title>
<script async src="https://www.google-analytics.com/analytics.js"></script>
<script src="/static/app.js"></script>
<link rel="preconnect" href="https://www.google-analytics.com">
</head><body><h1>The harbour reopens</h1>
<p>Boats returned on Monday. <a href="/next?id=2&utm_source=feed" ping="https://log.news.test/p">Next</a></p>
<img src="https://www.facebook.com/tr?id=1&ev=PageView" width="1" height="1">
<img src="/photos/harbour.jpg" alt="The harbour">
<noscript><img src="https://www.facebook.com/tr?id=1&ev=PageView&noscript=1"></noscript>
</body></html>"#;

async fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" | "zstd" => {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            if coding == "br" {
                async_compression::tokio::bufread::BrotliEncoder::new(data).read_to_end(&mut out).await.unwrap();
            } else {
                async_compression::tokio::bufread::ZstdEncoder::new(data).read_to_end(&mut out).await.unwrap();
            }
            out
        }
        other => panic!("no encoder for {other}"),
    }
}

fn gunzip(data: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(data).read_to_string(&mut s).unwrap();
    s
}

fn assert_cleaned(html: &str) {
    assert!(html.contains("<h1>The harbour reopens</h1>"), "{html}");
    assert!(html.contains("/static/app.js") && html.contains("/photos/harbour.jpg"), "page resources kept: {html}");
    assert!(!html.contains("facebook.com/tr"), "pixels gone: {html}");
    assert!(!html.contains("rel=\"preconnect\""), "tracker preconnect gone: {html}");
    assert!(!html.contains("ping="), "ping gone: {html}");
    assert!(html.contains("/next?id=2\""), "link decoration gone: {html}");
    assert!(html.contains("globalPrivacyControl"), "GPC script added: {html}");
}

async fn encoded_origin(coding: &'static str) -> Origin {
    let page = Bytes::from(encode(coding, PAGE.as_bytes()).await);
    origin(
        None,
        handler(move |_req| {
            let page = page.clone();
            async move {
                Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .header("content-encoding", coding)
                    .header("content-length", page.len())
                    .body(body(page))
                    .unwrap()
            }
        }),
    )
    .await
}

#[tokio::test]
async fn compressed_pages_in_every_encoding_are_decoded_rewritten_and_sent_on() {
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let o = encoded_origin(coding).await;
        // Default encoding choice: identity to a loopback client.
        let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
        let r = p.client(&[]).get("http://news.test/story").header("sec-fetch-dest", "document").send().await.unwrap();
        assert_eq!(r.status(), 200, "{coding}");
        assert_eq!(r.headers().get("content-encoding"), None, "{coding}: identity to loopback");
        let body = r.bytes().await.unwrap();
        assert_cleaned(std::str::from_utf8(&body).unwrap());
        // Re-encoded with gzip when configured so (the default for clients on other machines),
        // to a client that accepts gzip.
        let p = Proxy::start(&[resolve("news.test", 80, &o)], "[rewrite]\nencoding = \"gzip\"\n").await;
        let story = || p.client(&[]).get("http://news.test/story").header("sec-fetch-dest", "document");
        let r = story().header("accept-encoding", "gzip, br").send().await.unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip", "{coding}");
        assert_eq!(r.headers().get("content-length"), None, "{coding}: no stale length");
        assert_cleaned(&gunzip(&r.bytes().await.unwrap()));
        // A client that accepts no coding gets the page as it is, whatever the config prefers.
        let r = story().send().await.unwrap();
        assert_eq!(r.headers().get("content-encoding"), None, "{coding}");
        assert_cleaned(std::str::from_utf8(&r.bytes().await.unwrap()).unwrap());
        // curl decodes it as a browser would.
        let (ok, out, err) = curl(&["-x", &p.url(), "--compressed", "http://news.test/story"]).await;
        assert!(ok, "{err}");
        assert_cleaned(std::str::from_utf8(&out).unwrap());
    }
}

/// curl without `--compressed` through the proxy, to an origin that compresses whatever the
/// client allows (as CDNs do): a JSON answer, which is not rewritten, must still come in a
/// coding curl asked for, that is none; with `--compressed` it comes compressed and decoded.
#[tokio::test]
async fn what_passes_unrewritten_comes_in_a_coding_the_client_asked_for() {
    const JSON: &str = r#"{"items":[1,2,3],"next":null}"#;
    let o = origin(
        None,
        handler(|req| async move {
            let ae = req.headers().get("accept-encoding").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let r = Response::builder().header("content-type", "application/json");
            if ae.contains("br") {
                r.header("content-encoding", "br").body(body(Bytes::from(encode("br", JSON.as_bytes()).await))).unwrap()
            } else {
                r.body(body(Bytes::from_static(JSON.as_bytes()))).unwrap()
            }
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("api.test", 80, &o)], "").await;
    let (ok, out, err) = curl(&["-x", &p.url(), "http://api.test/items"]).await;
    assert!(ok, "{err}");
    assert_eq!(std::str::from_utf8(&out).unwrap_or("(not text)"), JSON);
    let (ok, out, err) = curl(&["-x", &p.url(), "--compressed", "-D", "-", "http://api.test/items"]).await;
    assert!(ok, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(out.to_ascii_lowercase().contains("content-encoding: br"), "{out}");
    assert!(out.ends_with(JSON), "{out}");
}

#[tokio::test]
async fn bodies_that_are_not_html_pass_byte_for_byte() {
    let mut blob = vec![0u8; 3 * 1024 * 1024 + 17];
    rand::Rng::fill(&mut rand::rng(), &mut blob[..]);
    let blob = Bytes::from(blob);
    let script = Bytes::from_static(b"document.write('<img src=\"https://www.facebook.com/tr?id=1\">');\n");
    let gz_css = Bytes::from(encode("gzip", b"body { background: url(https://www.facebook.com/tr?id=1) }").await);
    let (b, s, g) = (blob.clone(), script.clone(), gz_css.clone());
    let o = origin(
        None,
        handler(move |req| {
            let (b, s, g) = (b.clone(), s.clone(), g.clone());
            async move {
                let r = Response::builder();
                match req.uri().path() {
                    "/blob" => r.header("content-type", "application/octet-stream").body(body(b)),
                    "/app.js" => r.header("content-type", "application/javascript").body(body(s)),
                    _ => r.header("content-type", "text/css").header("content-encoding", "gzip").body(body(g)),
                }
                .unwrap()
            }
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    let c = p.client(&[]);
    for (path, want, dest) in
        [("/blob", &blob, "document"), ("/app.js", &script, "script"), ("/s.css", &gz_css, "style")]
    {
        let r = c.get(format!("http://news.test{path}")).header("sec-fetch-dest", dest).send().await.unwrap();
        let ce = r.headers().get("content-encoding").cloned();
        let got = r.bytes().await.unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(want), "{path} is byte-identical");
        assert_eq!(ce.is_some(), path == "/s.css", "{path}: the encoding passes as it was");
    }
}

#[tokio::test]
async fn the_first_rewritten_bytes_arrive_before_the_origin_has_finished() {
    let o = origin(
        None,
        handler(|_req| async move {
            let chunks = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => Some((
                        Bytes::from_static(
                            b"<!doctype html><html><head><title>Live</title></head><body><p>first part</p>\n",
                        ),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Some((Bytes::from_static(b"<p>second part</p></body></html>"), 2))
                    }
                    _ => None,
                }
            });
            let stream = futures_util::StreamExt::map(chunks, |c| Ok::<_, std::io::Error>(hyper::body::Frame::data(c)));
            Response::builder().header("content-type", "text/html").body(StreamBody::new(stream).boxed()).unwrap()
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("live.test", 80, &o)], "").await;
    let start = Instant::now();
    let mut r = p.client(&[]).get("http://live.test/").header("sec-fetch-dest", "document").send().await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first part") {
        got.extend_from_slice(&r.chunk().await.unwrap().expect("more body"));
    }
    let first = start.elapsed();
    assert!(String::from_utf8_lossy(&got).contains("globalPrivacyControl"), "it went through the rewriter");
    while let Some(c) = r.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert!(first < Duration::from_millis(500), "first part after {first:?}");
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(String::from_utf8_lossy(&got).ends_with("<p>second part</p></body></html>"));
}

async fn csp_origin(csp: &'static str) -> Origin {
    origin(
        None,
        handler(move |_req| async move {
            let mut r = Response::builder().header("content-type", "text/html");
            if !csp.is_empty() {
                r = r.header("content-security-policy", csp);
            }
            r.body(body("<html><head><title>t</title></head><body>hi</body></html>")).unwrap()
        }),
    )
    .await
}

#[tokio::test]
async fn the_gpc_script_follows_the_pages_content_security_policy() {
    // (CSP header, script expected, header expected after)
    let cases: [(&str, Option<&str>, Option<&str>); 4] = [
        ("", Some("<script>"), None),
        (
            "script-src 'self' 'nonce-abc123'",
            Some("<script nonce=\"abc123\">"),
            Some("script-src 'self' 'nonce-abc123'"),
        ),
        ("script-src 'self'", None, Some("script-src 'self'")),
        ("default-src 'none'", None, Some("default-src 'none'")),
    ];
    for (csp, script, after) in cases {
        let o = csp_origin(csp).await;
        let p = Proxy::start(&[resolve("csp.test", 80, &o)], "").await;
        let r = p.client(&[]).get("http://csp.test/").header("sec-fetch-dest", "document").send().await.unwrap();
        let header = r.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_string());
        let html = r.text().await.unwrap();
        assert_eq!(header.as_deref(), after, "{csp}: the policy is never weakened");
        match script {
            Some(tag) => {
                assert!(html.contains(&format!("<head>{tag}")), "{csp}: first in head: {html}");
                assert!(html.contains("globalPrivacyControl"));
            }
            None => assert!(!html.contains("globalPrivacyControl"), "{csp}: no inline script: {html}"),
        }
    }
}

/// The visible text of a page: text outside script, style, noscript, template and head.
fn visible_text(html: &[u8]) -> String {
    use lol_html::{element, HtmlRewriter, Settings};
    let hidden = std::rc::Rc::new(std::cell::Cell::new(0i32));
    let out = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
    let (h1, o) = (hidden.clone(), out.clone());
    let settings = Settings::new()
        .append_element_content_handler(element!("script, style, noscript, template, head, title, iframe", move |el| {
            h1.set(h1.get() + 1);
            let h = h1.clone();
            let on_end: lol_html::EndTagHandler<'static> = Box::new(move |_end| {
                h.set(h.get() - 1);
                Ok(())
            });
            el.on_end_tag(on_end)?;
            Ok(())
        }))
        .append_document_content_handler(lol_html::doc_text!(move |t| {
            if hidden.get() == 0 {
                o.borrow_mut().push_str(t.as_str());
                o.borrow_mut().push(' ');
            }
            Ok(())
        }));
    let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
    rw.write(html).unwrap();
    rw.end().unwrap();
    let s = out.borrow().split_whitespace().collect::<Vec<_>>().join(" ");
    s
}

/// (tag, absolute URL) of every script[src], img[src] and iframe[src].
fn resources(html: &[u8], base: &url::Url) -> Vec<(&'static str, String)> {
    use lol_html::{element, HtmlRewriter, Settings};
    let found = Arc::new(Mutex::new(Vec::new()));
    let mut settings = Settings::new();
    for tag in ["script", "img", "iframe"] {
        let f = found.clone();
        settings = settings.append_element_content_handler(element!(format!("{tag}[src]"), move |el| {
            let src = el.get_attribute("src").unwrap_or_default();
            if let Ok(u) = base.join(src.trim()) {
                if u.scheme().starts_with("http") {
                    f.lock().unwrap().push((tag, u.to_string()));
                }
            }
            Ok(())
        }));
    }
    let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
    rw.write(html).unwrap();
    rw.end().unwrap();
    let v = found.lock().unwrap().clone();
    v
}

fn without_query(u: &str) -> &str {
    u.split(['?', '#']).next().unwrap_or(u)
}

/// An origin serving each page at `/NAME` as text/html (an empty body for any other path).
async fn pages_origin(pages: Vec<(String, Bytes)>) -> Origin {
    let pages = Arc::new(pages);
    origin(
        None,
        handler(move |req| {
            let pages = pages.clone();
            async move {
                let name = req.uri().path().trim_start_matches('/');
                let page = pages.iter().find(|p| p.0 == name).map(|p| p.1.clone()).unwrap_or_default();
                Response::builder().header("content-type", "text/html").body(body(page)).unwrap()
            }
        }),
    )
    .await
}

#[tokio::test]
async fn the_real_pages_keep_their_text_and_lose_only_blocked_services() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("pages");
    let mut pages: Vec<(String, String, Bytes)> = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "html") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let host = canonical_host(&text).unwrap_or_else(|| "pages.test".into());
            pages.push((path.file_name().unwrap().to_string_lossy().into_owned(), host, Bytes::from(bytes)));
        }
    }
    pages.sort();
    let o = pages_origin(pages.iter().map(|(name, _, page)| (name.clone(), page.clone())).collect()).await;
    let mut hosts: Vec<String> = pages.iter().map(|p| p.1.clone()).collect();
    hosts.sort();
    hosts.dedup();
    let resolve_to: Vec<String> = hosts.iter().map(|h| resolve(h, 80, &o)).collect();
    let p = Proxy::start(&resolve_to, "").await;
    let policy = p.shared.policy.load_full();
    let c = p.client(&[]);
    let (mut removed_total, mut kept_total) = (0usize, 0usize);
    for (name, host, original) in pages.iter() {
        let r = c.get(format!("http://{host}/{name}")).header("sec-fetch-dest", "document").send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let after = r.bytes().await.unwrap();
        // What a reader sees is all still there.
        assert_eq!(visible_text(original), visible_text(&after), "{name}: visible text changed");
        let base = url::Url::parse(&format!("http://{host}/{name}")).unwrap();
        let blocked = |tag: &str, u: &str| {
            let t = match tag {
                "script" => RequestType::Script,
                "img" => RequestType::Image,
                _ => RequestType::SubFrame,
            };
            let h = nostalk::policy::site::host_of_url(u).unwrap_or("").to_ascii_lowercase();
            let info = RequestInfo { url: u, host: &h, page_host: Some(host), request_type: t, method: "GET" };
            let d = policy.decide(&info);
            // A social widget stays in the page, answered with its click-to-load placeholder
            // (tests/protection.rs); a script with a surrogate stays, answered with it.
            d.verdict == Verdict::Block
                && !d.is_social()
                && !(tag == "script" && nostalk::respond::surrogates::for_url(u).is_some())
        };
        let before = resources(original, &base);
        let after_res = resources(&after, &base);
        // Every script, pixel and frame of a blocked service is gone.
        for (tag, u) in &after_res {
            assert!(!blocked(tag, u), "{name}: <{tag} src={u}> of a blocked service is still there");
        }
        // Nothing else was taken out.
        let mut left: Vec<(&str, &str)> = after_res.iter().map(|(t, u)| (*t, without_query(u))).collect();
        for (tag, u) in &before {
            if blocked(tag, u) {
                removed_total += 1;
                continue;
            }
            let i = left.iter().position(|(t, a)| t == tag && *a == without_query(u));
            assert!(i.is_some(), "{name}: <{tag} src={u}> was removed but is not blocked");
            left.swap_remove(i.unwrap_or(0));
            kept_total += 1;
        }
    }
    eprintln!(
        "{} real pages: {removed_total} blocked scripts, pixels and frames removed; {kept_total} others kept",
        pages.len()
    );
    assert!(removed_total > 0, "the real pages carry trackers; some must have gone");
}

/// A page in windows-1251 whose inline script spans two chunks (so the rewriter holds it and
/// puts it back): its Cyrillic bytes must come out as they went in, whether the charset is
/// named in Content-Type or only in `<meta charset>`.
#[tokio::test]
async fn pages_in_other_charsets_keep_their_bytes() {
    // "Привет" in windows-1251.
    const PRIVET: &[u8] = &[0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2];
    for header_charset in [true, false] {
        let mut first = b"<!doctype html><html><head><meta charset=\"windows-1251\"><title>t</title></head><body>\
                          <p>text</p><script>var greeting = '"
            .to_vec();
        first.extend_from_slice(PRIVET);
        let mut second = PRIVET.to_vec();
        second.extend_from_slice(b"';</script><img src=\"https://www.facebook.com/tr?id=1\"><p>end</p></body></html>");
        let (a, b) = (Bytes::from(first), Bytes::from(second));
        let o = origin(
            None,
            handler(move |_req| {
                let (a, b) = (a.clone(), b.clone());
                async move {
                    let chunks = futures_util::stream::iter(
                        [a, b].map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(c))),
                    );
                    let ct = if header_charset { "text/html; charset=windows-1251" } else { "text/html" };
                    Response::builder()
                        .header("content-type", ct)
                        .body(BodyExt::boxed(StreamBody::new(chunks)))
                        .unwrap()
                }
            }),
        )
        .await;
        let p = Proxy::start(&[resolve("ru.test", 80, &o)], "").await;
        let r = p.client(&[]).get("http://ru.test/").header("sec-fetch-dest", "document").send().await.unwrap();
        let out = r.bytes().await.unwrap();
        let mut want = b"var greeting = '".to_vec();
        want.extend_from_slice(PRIVET);
        want.extend_from_slice(PRIVET);
        want.extend_from_slice(b"';");
        assert!(
            out.windows(want.len()).any(|w| w == want.as_slice()),
            "charset in header: {header_charset}: {}",
            String::from_utf8_lossy(&out)
        );
        assert!(!out.windows(15).any(|w| w == b"facebook.com/tr"), "the pixel is gone");
    }
}

/// Real pages whose one inline script holds both the site's own code and an analytics
/// snippet (Medium's font loader beside Google Analytics, Breitbart's ad slots beside it,
/// BuzzFeed's page tracker setup): the script is kept whole, so the page still works; a script
/// that is the snippet and nothing else (the same pages' and others') is still taken out.
#[tokio::test]
async fn a_script_with_the_pages_own_code_is_kept_and_a_bare_snippet_is_removed() {
    let Some(data) = shared_data() else { return };
    let pages = ["medium-1.html", "breitbart.html", "buzzfeed-1.html", "toc-missing.html", "ars-1.html"]
        .iter()
        .map(|n| (n.to_string(), Bytes::from(std::fs::read(data.join("pages").join(n)).unwrap())))
        .collect();
    let o = pages_origin(pages).await;
    let p = Proxy::start(&[resolve("pages.test", 80, &o)], "").await;
    let c = p.client(&[]);
    let get = |name: &'static str| {
        let c = c.clone();
        async move {
            let r =
                c.get(format!("http://pages.test/{name}")).header("sec-fetch-dest", "document").send().await.unwrap();
            r.text().await.unwrap()
        }
    };
    // Mixed: the page's own code and the snippet stay together.
    for (name, own, snippet) in [
        ("medium-1.html", "function _asyncScript(u)", "_gaq.push([\"_trackPageview\"])"),
        ("breitbart.html", "googletag.defineSlot(\"/1003622/Breitbart.ROS.Top.Leader\"", "ga('send', 'pageview')"),
        ("buzzfeed-1.html", "function GAPageLoad()", "_gaq.push(['_setAccount', 'UA-1740781-1'])"),
    ] {
        let html = get(name).await;
        assert!(html.contains(own), "{name}: the page's own code was taken out");
        assert!(html.contains(snippet), "{name}: the script was cut, not kept whole");
    }
    // Bare snippets: gone.
    let html = get("toc-missing.html").await;
    assert!(!html.contains("ga('create'"), "a bare Google Analytics snippet is removed");
    let html = get("ars-1.html").await;
    assert!(!html.contains("googletagmanager.com/gtm.js"), "a bare Tag Manager snippet is removed");
    p.stop().await;
}
