//! The privacy receipt, in a real browser: Debian's headless Chromium through nostalk (set as
//! ../shared/TESTING.md says, no bypass list), driven over the DevTools protocol. A local page
//! with a tracker, an ad and a decorated link; the receipt shows the tracker kept off with its
//! company, rule and list, and the ad with its cookies removed; with the receipt open in
//! another tab, a new visit appears without a reload; a down-voted ad source is then blocked
//! with "down-voted"; after a restart the down-vote, the shopping switch and a trusted site are
//! still in force. A cross-site POST to a control is refused. Screenshots go to
//! target/screenshots/ (docs/receipt.png is one of them).

mod support;

use http::Response;
use std::path::Path;
use support::cdp::{browser_home, chromium_flags, chromium_missing, trust_in_browser, Browser, CHROMIUM};
use support::*;

const NEWS: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Local news</title>
<script async src="https://www.google-analytics.com/analytics.js"></script></head><body>
<h1>The river rose overnight</h1>
<img id="ad" src="https://ads.test/creative.svg?slot=top&uid=4711" width="300" height="250" alt="ad">
<p><a id="shop" href="https://shop.test/boots?utm_source=news&fbclid=abc123">Boots for the flood</a></p>
</body></html>"#;

const BLOG: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>A blog</title>
<script async src="https://www.google-analytics.com/analytics.js"></script></head><body><p>Notes.</p></body></html>"#;

const AD_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="250"><rect width="300" height="250" fill="#fc0"/><text x="20" y="130">Buy a boat</text></svg>"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_shows_each_site_live_takes_down_votes_and_keeps_choices_across_a_restart() {
    if chromium_missing() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(work.path());
    let news = origin(Some(ca.server_config(&["news.test"])), handler(|_| async { html(NEWS) })).await;
    let blog = origin(Some(ca.server_config(&["blog.test"])), handler(|_| async { html(BLOG) })).await;
    let ads = origin(
        Some(ca.server_config(&["ads.test"])),
        handler(|_| async {
            Response::builder()
                .header("content-type", "image/svg+xml")
                .header("set-cookie", "adid=visitor-4711; Path=/; Secure; SameSite=None; Max-Age=3600")
                .header("cache-control", "no-store")
                .body(body(AD_SVG))
                .unwrap()
        }),
    )
    .await;
    let tracker =
        static_origin(Some(ca.server_config(&["www.google-analytics.com"])), "application/javascript", "").await;
    let ad_list = work.path().join("ads.txt");
    std::fs::write(&ad_list, "||ads.test^\n").unwrap();
    let cfg = format!(
        "[upstream]\nextra_roots = [{:?}]\n\n[[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        ca.pem_path.display().to_string(),
        ad_list.display().to_string()
    );
    let resolve_to = [
        resolve("news.test", 443, &news),
        resolve("blog.test", 443, &blog),
        resolve("ads.test", 443, &ads),
        resolve("www.google-analytics.com", 443, &tracker),
    ];
    let proxy = Proxy::start(&resolve_to, &cfg).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots");
    let (home, profile) = browser_home(work.path(), Some(&proxy.ca_path()));
    // A trusted site is passed through untouched: the browser meets its own certificate.
    trust_in_browser(&home, &ca.pem_path, "origins");

    {
        let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &proxy.url())).await;
        let page = browser.tab().await;
        page.goto("https://news.test/").await;
        page.wait_for("document.getElementById('ad').naturalWidth === 300", 20).await;
        page.goto("https://blog.test/").await;

        // The receipt, in another tab.
        let receipt = browser.tab().await;
        receipt.goto("http://nostalk.internal/").await;
        let news_section = "document.getElementById('site-news_test')";
        let text = receipt.wait_for(&format!("{news_section} && {news_section}.innerText"), 20).await;
        let text = text.as_str().unwrap().to_string();
        assert!(text.contains("1 tracking request to 1 company, none reached them"), "{text}");
        assert!(text.contains("1 ad shown, sent without cookies or identifiers"), "{text}");
        assert!(text.contains("Google") && text.contains("Google Analytics"), "the company and what it does: {text}");
        assert!(text.contains("||google-analytics.com^") && text.contains("nostalk-surveillance"), "{text}");
        assert!(text.contains("ads.test") && text.contains("cookies removed"), "{text}");
        assert!(text.contains("link decoration"), "what the rewriter took out: {text}");
        receipt.screenshot(&shots.join("receipt.png")).await;
        assert_eq!(tracker.count(), 0);

        // Live: a new visit appears in the open receipt without a reload.
        receipt.eval("window.__stillHere = 1").await;
        page.goto("https://news.test/?again").await;
        receipt.wait_for(&format!("{news_section}.innerText.includes('2 tracking requests')"), 20).await;
        assert_eq!(receipt.eval("window.__stillHere").await, 1, "updated in place, not reloaded");

        // A cross-site POST to a control, from the news page (a text/plain fetch, which a
        // browser sends without asking first): refused, nothing changes. Even with the page's
        // token, which no other site can read, a cross-site request is refused.
        let status = page
            .eval("fetch('https://nostalk.internal/ads/down', {method: 'POST', mode: 'no-cors', body: 'source=ads.test', headers: {'content-type': 'text/plain'}}).then(() => 'sent', () => 'failed')")
            .await;
        assert!(status == "sent" || status == "failed", "{status}");
        let forged = proxy
            .client(&[])
            .post("http://nostalk.internal/ads/down")
            .header("origin", "https://news.test")
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("source=ads.test&token={}", proxy.shared.page_token))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403);
        assert!(proxy.shared.choices.snapshot().downvotes.is_empty(), "a page on another site cannot vote");

        // Down-vote the ad source from the receipt; the next visit's ad is blocked as down-voted.
        receipt.click("#site-news_test .ad-source form[action='/ads/down'] button").await;
        let waited = std::time::Instant::now();
        while proxy.shared.choices.snapshot().downvotes.is_empty() && waited.elapsed().as_secs() < 20 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(proxy.shared.choices.snapshot().downvotes.get("ads.test"), Some(&1));
        let ad_requests = ads.count();
        page.goto("https://news.test/?after-vote").await;
        receipt.goto("http://nostalk.internal/").await;
        let text = receipt
            .wait_for(&format!("{news_section}.innerText.includes('down-voted') && {news_section}.innerText"), 20)
            .await;
        assert!(text.as_str().unwrap().contains("ads.test"), "{text}");
        assert_eq!(ads.count(), ad_requests, "the down-voted source got nothing");

        // Shopping mode for news.test, and trust blog.test, from their sections.
        receipt.click("#site-news_test form[action='/shopping'] button").await;
        receipt
            .wait_for("document.readyState === 'complete' && document.body.innerText.includes('Shopping mode: on')", 20)
            .await;
        receipt.click("#site-blog_test form[action='/trust'] button").await;
        receipt
            .wait_for(
                "document.readyState === 'complete' && document.body.innerText.includes('trusted site blog.test')",
                20,
            )
            .await;
        receipt.screenshot(&shots.join("receipt-choices.png")).await;
    }

    // A restart: the choices are still in force.
    let dir = proxy.stop_keeping_dir().await;
    let proxy = Proxy::start_in(dir, &resolve_to, &cfg).await;
    let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &proxy.url())).await;
    let page = browser.tab().await;
    let (ad_requests, tracker_requests) = (ads.count(), tracker.count());
    page.goto("https://news.test/").await;
    page.goto("https://blog.test/").await;
    page.wait_for("document.readyState === 'complete'", 20).await;
    page.goto("http://nostalk.internal/").await;
    let text = page.wait_for("document.getElementById('site-news_test') && document.body.innerText", 20).await;
    let text = text.as_str().unwrap();
    assert!(text.contains("ad source ads.test: 1 down-vote(s), blocked (down-voted)"), "{text}");
    assert!(text.contains("trusted site blog.test"), "{text}");
    assert!(text.contains("Shopping mode: on"), "{text}");
    assert_eq!(ads.count(), ad_requests, "still down-voted after the restart");
    assert_eq!(tracker.count(), tracker_requests + 1, "blog.test is still trusted: its analytics went through");
    drop(page);
    drop(browser);
    proxy.stop().await;
}
