//! The rewriter's removals, one kind at a time, on small HTML.

use super::*;
use crate::config::Config;

fn run(html: &str) -> (String, Vec<Removal>, bool) {
    run_with(html, &mut HeaderMap::new())
}

fn run_with(html: &str, headers: &mut HeaderMap) -> (String, Vec<Removal>, bool) {
    let policy = Arc::new(Policy::build(&Config::default(), &[]).unwrap());
    let (out, removals, gpc) = rewrite_bytes(html.as_bytes(), policy, "news.example", headers);
    (String::from_utf8(out).unwrap(), removals, gpc)
}

#[test]
fn tracker_scripts_go_and_page_scripts_stay() {
    let (out, r, _) = run(
        r#"<script src="https://cdn.example/app.js"></script><script src="https://static.chartbeat.com/js/chartbeat.js"></script>"#,
    );
    assert!(out.contains("cdn.example/app.js"));
    assert!(!out.contains("chartbeat"), "{out}");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, Kind::Script);
    assert!(r[0].rule.as_deref().unwrap().contains("chartbeat"));
}

#[test]
fn scripts_with_a_surrogate_stay_for_the_surrogate() {
    let (out, r, _) = run(r#"<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>"#);
    assert!(out.contains("googletagmanager.com/gtag/js"), "{out}");
    assert!(r.is_empty());
}

#[test]
fn pixels_frames_and_noscript_pixels_go() {
    let html = r#"<p>text</p><img src="https://www.facebook.com/tr?id=1&ev=PageView" width=1 height=1><img src="/logo.png"><iframe src="https://bat.bing.com/action/0"></iframe><noscript><img height="1" width="1" src="https://px.ads.linkedin.com/collect/?pid=1"></noscript>"#;
    let (out, r, _) = run(html);
    assert!(out.contains("<p>text</p>") && out.contains("/logo.png"));
    assert!(!out.contains("facebook.com/tr"), "{out}");
    assert!(!out.contains("bat.bing.com"), "{out}");
    assert!(!out.contains("px.ads.linkedin.com"), "{out}");
    let kinds: Vec<Kind> = r.iter().map(|x| x.kind).collect();
    assert!(kinds.contains(&Kind::Pixel) && kinds.contains(&Kind::Frame), "{kinds:?}");
}

#[test]
fn noscript_pixels_in_upper_case_go_and_other_noscript_stays() {
    let html = r#"<noscript><IMG SRC="https://www.facebook.com/tr?id=1&ev=PageView" HEIGHT=1></noscript><noscript><p>Turn on JavaScript &lt;img&gt;</p></noscript>"#;
    let (out, r, _) = run(html);
    assert!(!out.contains("facebook.com/tr"), "{out}");
    assert!(out.contains("<noscript><p>Turn on JavaScript &lt;img&gt;</p></noscript>"), "{out}");
    assert_eq!(r.iter().map(|x| x.kind).collect::<Vec<_>>(), vec![Kind::Pixel]);
}

#[test]
fn the_leftmost_of_several_signatures_in_a_script_names_it() {
    // Two trackers' signatures in one snippet: it goes, named once, by the one written first.
    let (out, r, _) = run("<script>var _paq = []; _paq.push(['trackPageView']); fbq('init', '1');</script>");
    assert!(!out.contains("_paq.push(") && !out.contains("fbq("), "{out}");
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].what.starts_with("matomo:"), "{:?}", r[0]);
}

#[test]
fn pixels_are_found_however_their_url_is_written() {
    // Absolute (taken as written), protocol-relative, upper-case scheme and padded with spaces
    // (resolved against the page): each is the same tracker and goes; the page's own stays.
    let html = r#"<img src="https://www.facebook.com/tr?id=1"><img src="//www.facebook.com/tr?id=2"><img src="HTTPS://www.facebook.com/tr?id=3"><img src="  https://www.facebook.com/tr?id=4 "><img src="/tr?id=5">"#;
    let (out, r, _) = run(html);
    assert!(!out.contains("facebook.com"), "{out}");
    assert!(out.contains(r#"src="/tr?id=5""#), "{out}");
    assert_eq!(r.len(), 4, "{r:?}");
    assert!(r.iter().all(|x| x.kind == Kind::Pixel && x.what.starts_with("https://www.facebook.com/tr?id=")));
}

#[test]
fn ping_attributes_and_link_decoration_go() {
    let (out, r, _) =
        run(r#"<a href="https://shop.example/item?id=7&utm_source=news&fbclid=abc" ping="https://t.example/p">x</a>"#);
    assert_eq!(out, r#"<a href="https://shop.example/item?id=7">x</a>"#);
    assert_eq!(r.len(), 2);
}

#[test]
fn tracker_preconnects_go_and_others_stay() {
    let (out, _, _) = run(
        r#"<link rel="preconnect" href="https://www.google-analytics.com"><link rel="preconnect" href="https://fonts.gstatic.com"><link rel="dns-prefetch" href="//connect.facebook.net">"#,
    );
    assert!(!out.contains("google-analytics"), "{out}");
    assert!(out.contains("fonts.gstatic.com"));
}

#[test]
fn inline_snippets_become_the_stub_and_other_inline_scripts_stay() {
    let snippet = "<script>!function(f,b,e,v,n,t,s){n=f.fbq=function(){};t=b.createElement(e);t.src=v}(window,document,'script','https://connect.facebook.net/en_US/fbevents.js');fbq('init', '123');</script>";
    let app = "<script>window.app = { start: function(){ return 42; } };</script>";
    let json = r#"<script type="application/ld+json">{"gtag('config'": 1}</script>"#;
    // A script with a src is its file, not its text (which browsers ignore): it stays.
    let with_src = r#"<script src="/app.js">fbq('init', '1');</script>"#;
    let (out, r, _) = run(&format!("{snippet}{app}{json}{with_src}"));
    assert!(!out.contains("fbq('init', '123')"), "{out}");
    assert!(out.contains("a tracker snippet stood here"));
    assert!(out.contains(app), "{out}");
    assert!(out.contains(json), "{out}");
    assert!(out.contains(with_src), "{out}");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, Kind::InlineSnippet);
}

#[test]
fn large_inline_scripts_pass_whole() {
    let big = format!("<script>var x = '{}'; gtag('config', 'G-1');</script>", "a".repeat(handlers::MAX_SNIPPET + 10));
    let (out, r, _) = run(&big);
    assert_eq!(out, big);
    assert!(r.is_empty());
}

#[test]
fn gpc_goes_first_in_head_as_the_csp_allows() {
    let (out, _, gpc) = run("<html><head><title>t</title></head><body></body></html>");
    assert!(gpc);
    assert!(out.starts_with(&format!("<html><head><script>{}</script><title>", csp::PAGE_SCRIPT)), "{out}");

    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_SECURITY_POLICY, "script-src 'nonce-r4nd0m'".parse().unwrap());
    let (out, _, gpc) = run_with("<head></head>", &mut h);
    assert!(gpc && out.contains("<script nonce=\"r4nd0m\">"), "{out}");

    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_SECURITY_POLICY, "script-src 'self'".parse().unwrap());
    let (out, _, gpc) = run_with("<head></head>", &mut h);
    assert!(!gpc);
    assert_eq!(out, "<head></head>");
}

#[test]
fn html_is_known_by_its_type_in_any_case_and_only_known_codings_are_rewritten() {
    use crate::policy::tests::headers as h;
    let ok = |headers: &HeaderMap| is_rewritable(&Method::GET, StatusCode::OK, headers);
    assert!(ok(&h(&[("content-type", "Text/HTML; charset=utf-8")])));
    assert!(ok(&h(&[("content-type", " application/XHTML+xml")])));
    assert!(!ok(&h(&[("content-type", "text/htmlx")])));
    assert!(!ok(&h(&[("content-type", "application/json")])));
    assert!(ok(&h(&[("content-type", "text/html"), ("content-encoding", "GZIP")])));
    assert!(ok(&h(&[("content-type", "text/html"), ("content-encoding", " br ")])));
    assert!(!ok(&h(&[("content-type", "text/html"), ("content-encoding", "compress")])));
    assert!(!is_rewritable(&Method::HEAD, StatusCode::OK, &h(&[("content-type", "text/html")])));
}

#[test]
fn upstream_is_asked_only_for_codings_both_the_client_and_the_rewriter_take() {
    let ask = |client: Option<&str>| {
        let mut h = HeaderMap::new();
        if let Some(c) = client {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(c).unwrap());
        }
        let gzip = limit_accept_encoding(&mut h);
        (h.get(header::ACCEPT_ENCODING).map(|v| v.to_str().unwrap().to_string()), gzip)
    };
    // A browser: the shared-dictionary codings the rewriter cannot decode are left out.
    assert_eq!(ask(Some("gzip, deflate, br, zstd, dcb, dcz")), (Some("gzip, deflate, br, zstd".into()), true));
    assert_eq!(ask(Some("br;q=1.0, gzip;q=0, deflate; q=0.5")), (Some("deflate, br".into()), false));
    assert_eq!(ask(Some("X-GZIP")), (Some("gzip".into()), true));
    assert_eq!(ask(Some("*")), (Some("gzip, deflate, br, zstd".into()), true));
    // curl without --compressed, wget: nothing, or identity alone: the origin sends identity.
    assert_eq!(ask(None), (None, false));
    assert_eq!(ask(Some("identity")), (None, false));
}

#[test]
fn a_frames_loose_referrer_policy_is_tightened_and_a_strict_one_kept() {
    let (out, r, _) = run(concat!(
        r#"<iframe referrerpolicy="no-referrer" src="https://f.example/"></iframe>"#,
        r#"<iframe referrerpolicy="unsafe-url" src="https://g.example/"></iframe>"#,
        r#"<img referrerpolicy="origin" src="https://img.example/x.png">"#,
    ));
    assert!(out.contains(r#"<iframe referrerpolicy="no-referrer""#), "a stricter choice is kept: {out}");
    assert!(out.contains(r#"<iframe referrerpolicy="strict-origin-when-cross-origin" src="https://g"#), "{out}");
    assert!(out.contains(r#"<img referrerpolicy="origin""#), "an image's Referer is the proxy's to cut: {out}");
    assert_eq!(r.iter().filter(|r| r.kind == Kind::ReferrerPolicy).count(), 1);
}

#[test]
fn a_loose_meta_referrer_is_tightened_and_a_strict_one_kept() {
    let (out, r, _) =
        run(r#"<head><meta name="Referrer" content="unsafe-url"><meta name="referrer" content="never"></head>"#);
    assert!(out.contains(r#"<meta name="Referrer" content="strict-origin-when-cross-origin">"#), "{out}");
    assert!(out.contains(r#"content="never""#), "the legacy name of no-referrer is kept: {out}");
    assert_eq!(r.iter().filter(|r| r.kind == Kind::ReferrerPolicy).count(), 1);
}
