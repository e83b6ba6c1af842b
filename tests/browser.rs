//! End to end in a real browser: Debian's headless Chromium, through nostalk, trusting its CA,
//! loads a page from a local HTTPS origin that pulls in Google's tag, the Facebook pixel, a
//! beacon and an ad slot. The page must render and its own code run; the trackers (local
//! servers answering to the real trackers' names) must receive nothing; the ad server must
//! receive the ad requests with no cookie and no identifier.

mod support;

use http::Response;
use std::time::Duration;
use support::cdp::{browser_home, chromium_flags, chromium_missing, Browser, CHROMIUM};
use support::*;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Local news</title>
<script src="https://www.googletagmanager.com/gtag/js?id=G-TEST1"></script>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date()); gtag('config', 'G-TEST1');</script>
<script src="https://connect.facebook.net/en_US/fbevents.js"></script>
</head><body>
<h1>The river rose overnight</h1>
<p>Residents on the east bank were asked to move their cars before noon.</p>
<img src="https://www.facebook.com/tr?id=123456&ev=PageView&noscript=1" width="1" height="1" alt="">
<div id="slot"><img id="ad" alt="advert" src="https://ads.test/creative.svg?slot=top&uid=4711&gclid=click-1"></div>
<p id="status">script did not run</p>
<p id="ad-status">ad not shown</p>
<pre id="errors"></pre>
<script src="/app.js"></script>
</body></html>
"#;

const APP_JS: &str = r#"
window.addEventListener('error', e => { document.getElementById('errors').textContent += 'error: ' + e.message + '\n'; });
try {
  gtag('event', 'read_article', { section: 'local' });
  fbq('track', 'ViewContent');
  navigator.sendBeacon('https://www.google-analytics.com/g/collect?v=2&tid=G-TEST1&cid=555.666', 'en=scroll');
  document.getElementById('status').textContent = 'calls ok, gpc=' + navigator.globalPrivacyControl;
} catch (e) {
  document.getElementById('status').textContent = 'page script failed: ' + e;
}
const ad = document.getElementById('ad');
const shown = () => {
  document.getElementById('ad-status').textContent = 'ad shown ' + ad.naturalWidth + 'x' + ad.naturalHeight;
  fetch('https://ads.test/impression?slot=top&uid=4711', { credentials: 'include', mode: 'no-cors' });
};
if (ad.complete && ad.naturalWidth) { shown(); } else { ad.addEventListener('load', shown); }
"#;

const AD_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="250"><rect width="300" height="250" fill="#fc0"/><text x="20" y="130">Buy a boat</text></svg>"##;

const TRACKER_NAMES: [&str; 4] =
    ["www.googletagmanager.com", "connect.facebook.net", "www.facebook.com", "www.google-analytics.com"];

#[tokio::test]
async fn a_page_with_trackers_and_an_ad_in_headless_chromium() {
    if chromium_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let news = origin(
        Some(ca.server_config(&["news.test"])),
        handler(|req| async move {
            let (ct, text) =
                if req.uri().path() == "/app.js" { ("application/javascript", APP_JS) } else { ("text/html", PAGE) };
            Response::builder().header("content-type", ct).body(body(text)).unwrap()
        }),
    )
    .await;
    let ads = origin(
        Some(ca.server_config(&["ads.test"])),
        handler(|_req| async move {
            Response::builder()
                .header("content-type", "image/svg+xml")
                .header("set-cookie", "adid=visitor-4711; Path=/; Secure; SameSite=None; Max-Age=3600")
                .header("cache-control", "no-store")
                .header("access-control-allow-origin", "*")
                .body(body(AD_SVG))
                .unwrap()
        }),
    )
    .await;
    let tracker = static_origin(Some(ca.server_config(&TRACKER_NAMES)), "application/javascript", "").await;

    let ad_list = dir.path().join("ads.txt");
    std::fs::write(&ad_list, "||ads.test^\n").unwrap();
    let mut resolve_to = vec![resolve("news.test", 443, &news), resolve("ads.test", 443, &ads)];
    resolve_to.extend(TRACKER_NAMES.iter().map(|n| resolve(n, 443, &tracker)));
    let cfg = format!(
        "[upstream]\nextra_roots = [{:?}]\n\n[[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        ca.pem_path.display().to_string(),
        ad_list.display().to_string()
    );
    let proxy = Proxy::start(&resolve_to, &cfg).await;

    let (home, profile) = browser_home(dir.path(), Some(&proxy.ca_path()));
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.env("HOME", &home)
        .args(chromium_flags(&profile, &proxy.url()))
        .args(["--virtual-time-budget=5000", "--dump-dom", "https://news.test/"])
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium started");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);

    assert!(dom.contains("The river rose overnight"), "the page rendered:\n{dom}\n{log}");
    assert!(dom.contains("calls ok, gpc=true"), "gtag() and fbq() ran without error and GPC is set:\n{dom}");
    assert!(dom.contains("<pre id=\"errors\"></pre>"), "no script error on the page:\n{dom}");
    assert!(dom.contains("ad shown 300x250"), "the ad appeared:\n{dom}");
    assert!(!dom.contains("facebook.com/tr"), "the pixel was taken out of the page:\n{dom}");

    assert_eq!(tracker.count(), 0, "the trackers received nothing: {:?}", tracker.seen());
    let seen = ads.seen();
    assert!(seen.iter().any(|s| s.uri.contains("/creative.svg")), "the ad was fetched: {seen:?}");
    // The impression fetch runs after the creative loaded, when a cookie set by the creative
    // would be sent back if the proxy let it through.
    let waited = std::time::Instant::now();
    while !ads.seen().iter().any(|s| s.uri.contains("/impression")) && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = ads.seen();
    assert!(seen.iter().any(|s| s.uri.contains("/impression")), "the impression was fetched: {seen:?}");
    for s in &seen {
        assert_eq!(s.header("cookie"), None, "no cookie reached the ad server: {s:?}");
        assert!(!s.uri.contains("uid=") && !s.uri.contains("gclid="), "no identifier: {}", s.uri);
        assert!(s.uri.contains("slot=top"), "the ad's own parameters kept: {}", s.uri);
        if let Some(r) = s.header("referer") {
            assert_eq!(r, "https://news.test/", "only the page as Referer");
        }
    }
    proxy.stop().await;
}

/// What Chromium shows of http://nostalk.internal/ through the proxy, with or without
/// nostalk's CA in its certificate store.
async fn status_page_in_chromium(trust_ca: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[], "").await;
    let (home, profile) = browser_home(dir.path(), trust_ca.then(|| proxy.ca_path()).as_deref());
    // Driven over the DevTools protocol in real time: the page keeps a live connection open
    // (its updates), which a --dump-dom run on virtual time would wait on for ever.
    let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &proxy.url())).await;
    let tab = browser.tab().await;
    tab.goto("http://nostalk.internal/").await;
    // The CA check settles once its image loads or fails.
    tab.wait_for("!document.getElementById('ca').textContent.startsWith('Checking')", 30).await;
    let dom = tab.eval("document.documentElement.outerHTML").await.as_str().unwrap_or_default().to_string();
    drop(tab);
    drop(browser);
    proxy.stop().await;
    dom
}

#[tokio::test]
async fn the_status_page_at_nostalk_internal_says_the_browser_goes_through_nostalk_and_whether_it_trusts_the_ca() {
    if chromium_missing() {
        return;
    }
    let dom = status_page_in_chromium(true).await;
    assert!(dom.contains("This page came through nostalk"), "reached by its name through the proxy:\n{dom}");
    assert!(dom.contains("This browser trusts nostalk's CA"), "{dom}");
    assert!(dom.contains("Install nostalk's CA") && dom.contains("/ca.crt"), "the CA offered per system:\n{dom}");

    let dom = status_page_in_chromium(false).await;
    assert!(dom.contains("This page came through nostalk"), "{dom}");
    assert!(dom.contains("does not trust nostalk's CA yet"), "{dom}");
}
