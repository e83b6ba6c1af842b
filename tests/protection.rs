//! Protection out of the box, in a real browser: Debian's headless Chromium, driven over the
//! DevTools protocol (tests/support/cdp.rs), through nostalk, trusting its CA, on local HTTPS
//! origins that answer to the real social networks' names. A page with a Facebook Like frame
//! and a tweet embed shows two placeholders and the networks see nothing until a person
//! clicks; each click loads that widget and no other. GPC is set inside a cross-site frame and
//! in a same-origin frame showing JSON; an ad's frame keeps nothing in its storage from one
//! visit to the next. A navigation hops through a listed tracker's host and comes back; one
//! a `$document` rule blocks shows why, and "Open anyway" arrives; a click tracker's URL lands
//! on its destination without the tracker seeing a request.

mod support;

use http::Response;
use std::path::Path;
use std::sync::Arc;
use support::cdp::{browser_home, chromium_flags, chromium_missing, Browser, CHROMIUM};
use support::*;

const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Local news</title></head><body>
<h1>The river rose overnight</h1>
<p id="results"></p>
<iframe id="like" src="https://www.facebook.com/plugins/like.php?href=https%3A%2F%2Fnews.test%2F&width=300" width="320" height="90"></iframe>
<blockquote class="twitter-tweet"><p>The river is at its highest in ten years.</p><a href="https://twitter.com/riverwatch/status/1">riverwatch</a></blockquote>
<script async src="https://platform.twitter.com/widgets.js" charset="utf-8"></script>
<iframe id="xsite" src="https://widgets.test/frame.html" width="200" height="40"></iframe>
<iframe id="adframe" src="https://ads.test/frame.html" width="300" height="60"></iframe>
<iframe id="json" src="/data.json" width="200" height="40" onload="document.getElementById('gpc-json').textContent = 'json-gpc=' + this.contentWindow.navigator.globalPrivacyControl"></iframe>
<p id="gpc-json"></p>
<a id="to-strict" href="https://strict.test/offer">an offer</a>
<script>
window.addEventListener('message', function (e) {
  var p = document.createElement('span');
  p.className = 'msg';
  p.textContent = String(e.data) + ' ';
  document.getElementById('results').appendChild(p);
});
</script>
</body></html>"#;

/// A stand-in for widgets.js: each tweet blockquote becomes a frame of platform.twitter.com,
/// as the real one does.
const WIDGETS_JS: &str = r#"(function () {
  var q = document.querySelectorAll('blockquote.twitter-tweet');
  for (var i = 0; i < q.length; i++) {
    var f = document.createElement('iframe');
    f.className = 'rendered-tweet';
    f.src = 'https://platform.twitter.com/embed/Tweet.html?id=1';
    q[i].parentNode.replaceChild(f, q[i]);
  }
})();"#;

const EMBED: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>tweet
<script>parent.postMessage('tweet-rendered', '*');</script></body></html>"#;

const LIKE: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>Like 1.2k
<script>parent.postMessage('like-loaded', '*');</script></body></html>"#;

const XSITE: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>
<script>parent.postMessage('xsite-gpc=' + navigator.globalPrivacyControl, '*');</script></body></html>"#;

const AD_FRAME: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>Buy a boat
<script>
var before = localStorage.getItem('adid');
var cookie = document.cookie.indexOf('adc=') >= 0;
localStorage.setItem('adid', 'visitor-4711');
document.cookie = 'adc=visitor-4711; max-age=86400; secure; samesite=none';
parent.postMessage('ad-before=' + before + ',cookie=' + cookie, '*');
</script></body></html>"#;

/// The path and query an origin saw (HTTP/2 requests carry the whole URL).
fn paths(o: &Origin) -> Vec<String> {
    o.seen()
        .iter()
        .map(|s| {
            s.uri.split_once("://").map_or(s.uri.as_str(), |(_, r)| &r[r.find('/').unwrap_or(r.len())..]).to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_widgets_wait_for_a_click_frames_get_gpc_ad_frames_forget_and_navigations_go_on() {
    if chromium_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let news = origin(
        Some(ca.server_config(&["news.test"])),
        handler(|req| async move {
            match req.uri().path() {
                "/data.json" => {
                    Response::builder().header("content-type", "application/json").body(body("{\"ok\":true}")).unwrap()
                }
                "/back" => html("<!doctype html><title>back</title><p id=back>signed in, back on the news</p>"),
                "/landed" => html("<!doctype html><title>landed</title><p id=landed>the advertised page</p>"),
                _ => html(PAGE),
            }
        }),
    )
    .await;
    let facebook =
        origin(Some(ca.server_config(&["www.facebook.com", "l.facebook.com"])), handler(|_| async { html(LIKE) }))
            .await;
    let twitter = origin(
        Some(ca.server_config(&["platform.twitter.com"])),
        handler(|req| async move {
            if req.uri().path() == "/widgets.js" {
                Response::builder().header("content-type", "application/javascript").body(body(WIDGETS_JS)).unwrap()
            } else {
                html(EMBED)
            }
        }),
    )
    .await;
    let widgets = origin(Some(ca.server_config(&["widgets.test"])), handler(|_| async { html(XSITE) })).await;
    let ads = origin(Some(ca.server_config(&["ads.test"])), handler(|_| async { html(AD_FRAME) })).await;
    let tracker = origin(
        Some(ca.server_config(&["tracker.test"])),
        handler(|_| async {
            Response::builder().status(302).header("location", "https://news.test/back").body(body("")).unwrap()
        }),
    )
    .await;
    let strict = origin(
        Some(ca.server_config(&["strict.test"])),
        handler(|_| async { html("<!doctype html><title>offer</title><p id=offer>the offer itself</p>") }),
    )
    .await;

    let cfg =
        block_and_ad_lists(dir.path(), &ca.pem_path, "||tracker.test^\n||strict.test^$document\n", "||ads.test^\n");
    let resolve_to = [
        resolve("news.test", 443, &news),
        resolve("www.facebook.com", 443, &facebook),
        resolve("l.facebook.com", 443, &facebook),
        resolve("platform.twitter.com", 443, &twitter),
        resolve("widgets.test", 443, &widgets),
        resolve("ads.test", 443, &ads),
        resolve("tracker.test", 443, &tracker),
        resolve("strict.test", 443, &strict),
    ];
    let proxy = Proxy::start(&resolve_to, &cfg).await;
    let (home, profile) = browser_home(dir.path(), Some(&proxy.ca_path()));
    let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &proxy.url())).await;
    let tab = browser.tab().await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots");

    // The page, with both widgets held back.
    tab.goto("https://news.test/").await;
    tab.wait_for("document.querySelector('[data-nostalk-placeholder]')", 20).await;
    let msgs = tab.wait_for("(() => { const t = document.getElementById('results').textContent; return t.includes('xsite-gpc=') && t.includes('ad-before=') && document.getElementById('gpc-json').textContent ? t : ''; })()", 20).await;
    let msgs = msgs.as_str().unwrap().to_string();
    assert!(msgs.contains("xsite-gpc=true"), "GPC inside a cross-site frame: {msgs}");
    assert!(msgs.contains("ad-before=null,cookie=false"), "a first visit: {msgs}");
    let json_gpc = tab.eval("document.getElementById('gpc-json').textContent").await;
    assert_eq!(json_gpc, "json-gpc=true", "GPC in a same-origin frame showing JSON");
    let placeholder = tab.eval("document.querySelector('[data-nostalk-placeholder] iframe').title").await;
    assert!(placeholder.as_str().unwrap().contains("Load this X (Twitter) widget"), "{placeholder}");
    tab.screenshot(&shots.join("social-placeholders.png")).await;
    assert_eq!(facebook.count(), 0, "Facebook saw nothing before the click: {:?}", facebook.seen());
    assert_eq!(twitter.count(), 0, "X saw nothing before the click: {:?}", twitter.seen());

    // Click the Like frame's placeholder: that widget loads, and nothing of X.
    let r = tab.eval("(() => { const r = document.getElementById('like').getBoundingClientRect(); return [r.left + 20, r.top + 20]; })()").await;
    tab.click_at(r[0].as_f64().unwrap(), r[1].as_f64().unwrap()).await;
    tab.wait_for("document.getElementById('results').textContent.includes('like-loaded')", 20).await;
    assert_eq!(paths(&facebook), ["/plugins/like.php?href=https%3A%2F%2Fnews.test%2F&width=300"], "no pass reaches it");
    assert_eq!(twitter.count(), 0, "one click loads one widget: {:?}", twitter.seen());

    // Click the tweet's placeholder: widgets.js loads once, then the tweet's own frame.
    tab.wait_for_frame("nostalk-widget=1", 20).await;
    tab.click("[data-nostalk-placeholder] iframe").await;
    tab.wait_for("document.getElementById('results').textContent.includes('tweet-rendered')", 20).await;
    assert_eq!(paths(&twitter), ["/widgets.js", "/embed/Tweet.html?id=1"], "no pass reaches the network");
    assert_eq!(facebook.count(), 1);
    tab.screenshot(&shots.join("social-loaded.png")).await;

    // The next visit: the ad's frame finds nothing it kept, and the widgets wait again.
    tab.goto("https://news.test/").await;
    let msgs = tab.wait_for("(() => { const t = document.getElementById('results').textContent; return t.includes('ad-before=') ? t : ''; })()", 20).await;
    assert!(msgs.as_str().unwrap().contains("ad-before=null,cookie=false"), "the ad kept nothing: {msgs}");
    assert_eq!(twitter.count(), 2, "the widgets wait for a click again");

    // A flow that hops through a listed tracker's host comes back.
    tab.goto("https://tracker.test/sso?return=news").await;
    tab.wait_for("document.getElementById('back')", 20).await;
    assert_eq!(tracker.count(), 1);

    // A `$document` rule: the page says why; "Open anyway" arrives, that once.
    tab.goto("https://news.test/").await;
    tab.click("#to-strict").await;
    tab.wait_for("document.title === 'nostalk blocked a page'", 20).await;
    let text = tab.eval("document.body.innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("||strict.test^$document") && text.contains("test-block"), "{text}");
    assert_eq!(strict.count(), 0, "{:?}", strict.seen());
    tab.screenshot(&shots.join("strict-blocking.png")).await;
    tab.click("#open-anyway").await;
    tab.wait_for("document.getElementById('offer')", 20).await;
    // The page arrived without the pass (its favicon may follow: the person opened the page).
    let seen = paths(&strict);
    assert_eq!(seen.first().map(String::as_str), Some("/offer"), "{seen:?}");
    assert!(seen.iter().all(|p| !p.contains("nostalk-pass")), "{seen:?}");

    // A click tracker's URL lands on its destination; the tracker saw nothing.
    let before = facebook.count();
    tab.goto("https://l.facebook.com/l.php?u=https%3A%2F%2Fnews.test%2Flanded&h=AT0").await;
    tab.wait_for("document.getElementById('landed')", 20).await;
    assert_eq!(facebook.count(), before, "l.facebook.com received nothing");

    drop(tab);
    drop(browser);
    let _ = Arc::strong_count(&proxy.shared);
    proxy.stop().await;
}
