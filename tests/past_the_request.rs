//! Privacy past the request, in a real browser: Debian's headless Chromium through nostalk,
//! trusting its CA, on local HTTPS origins (tests/support/cdp.rs). A page that loosens its
//! referrer policy every way a page can (`Referrer-Policy: unsafe-url`, `<meta
//! name="referrer">`, `referrerpolicy` on a link) still gives another site its origin only, in
//! the `Referer` the destination's server logs and in the `document.referrer` its script reads:
//! by a link, a scripted navigation, a form POST and a frame. A navigation through a listed
//! tracker's host finds nothing it kept on the next bounce (cookie or `localStorage`), and the
//! receipt names it. A cookie an ad's script writes lives only as long as the page, while the
//! page's own script's cookie stays. A cookie an unlisted third party sets inside a tracker's
//! frame is not sent back.

mod support;

use http::Response;
use std::sync::Arc;
use support::cdp::{browser_home, chromium_flags, chromium_missing, Browser, Tab, CHROMIUM};
use support::*;

/// The person's page, with their account in the URL, loosened by header: a link, a link that
/// asks for `unsafe-url` itself, a scripted navigation, a form POST and a frame, all to
/// dest.test.
const LOOSE_HEADER: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>account</title></head><body>
<a id="link" href="https://dest.test/link">link</a>
<a id="link-attr" referrerpolicy="unsafe-url" href="https://dest.test/link-attr">link with its own policy</a>
<form id="form" method="post" action="https://dest.test/form"><input name="q" value="1"><button id="send">send</button></form>
<button id="script" onclick="location.href='https://dest.test/scripted'">go</button>
<p id="frame-referrer"></p>
<iframe src="https://dest.test/frame"></iframe>
<script>window.addEventListener('message', function (e) { document.getElementById('frame-referrer').textContent = String(e.data); });</script>
</body></html>"#;

/// The same, loosened by `<meta name="referrer">` only.
const LOOSE_META: &str = r#"<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="unsafe-url"><title>account</title></head><body>
<a id="link" href="https://dest.test/meta-link">link</a>
<a id="link-attr" referrerpolicy="unsafe-url" href="https://dest.test/meta-link-attr">link with its own policy</a>
<p id="frame-referrer"></p>
<iframe src="https://dest.test/frame"></iframe>
<script>window.addEventListener('message', function (e) { document.getElementById('frame-referrer').textContent = String(e.data); });
var late = document.createElement('a'); late.id = 'late'; late.href = 'https://dest.test/late'; late.referrerPolicy = 'unsafe-url'; late.textContent = 'late';
document.body.appendChild(late);
var m = document.createElement('meta'); m.name = 'referrer'; m.content = 'unsafe-url'; document.head.appendChild(m);</script>
</body></html>"#;

/// Where the navigations land: the page shows the `document.referrer` its script reads.
const DEST: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>dest</title></head><body>
<p id="referrer"></p><script>document.getElementById('referrer').textContent = 'referrer=' + document.referrer;</script>
</body></html>"#;

const DEST_FRAME: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>
<script>parent.postMessage('frame-referrer=' + document.referrer, '*');</script></body></html>"#;

/// A tracker's page a navigation bounces through: it shows what it found of its last visit,
/// then keeps an ID in a cookie and in `localStorage` (its header cookie comes from the server).
const BOUNCE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>bounce</title></head><body>
<p id="found"></p>
<script>
var found = 'cookie=' + document.cookie + ';storage=' + localStorage.getItem('uid');
document.cookie = 'jsuid=js-4711; max-age=86400; secure; samesite=lax';
localStorage.setItem('uid', 'ls-4711');
document.getElementById('found').textContent = found;
</script></body></html>"#;

/// A shop page: its own script keeps a cookie, an ad's script (ads.test) keeps another, and
/// both are read back as the page opens.
const SHOP: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<p id="at-open"></p><p id="after"></p>
<script>
document.getElementById('at-open').textContent = 'at-open=' + document.cookie;
document.cookie = 'own=basket-1; max-age=86400; secure; samesite=lax';
</script>
<script src="https://ads.test/ad.js"></script>
<script>document.getElementById('after').textContent = 'after=' + document.cookie;</script>
</body></html>"#;

/// The ad's script: the `_fbp` pattern, a first-party cookie written from a third party's code.
const AD_JS: &str = "document.cookie = 'adid=ad-4711; max-age=86400; path=/; secure; samesite=lax';\n\
    if (window.cookieStore) { cookieStore.set({ name: 'adcs', value: 'cs-4711', expires: Date.now() + 86400000 }); }";

/// A page with an ad's frame, which frames an unlisted third party.
const FRAMED: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>framed</title></head><body>
<iframe src="https://ads.test/frame.html" width="300" height="100"></iframe>
</body></html>"#;

const AD_FRAME: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>ad
<iframe src="https://unlisted.test/inner"></iframe></body></html>"#;

const INNER: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>
<img src="/pixel.gif"></body></html>"#;

fn no_store(mut r: Response<OBody>) -> Response<OBody> {
    r.headers_mut().insert("cache-control", "no-store".parse().unwrap());
    r
}

/// The `Referer` each request for `path` at `o` carried.
fn referers(o: &Origin, path: &str) -> Vec<Option<String>> {
    o.seen().iter().filter(|s| s.uri.ends_with(path)).map(|s| s.header("referer")).collect()
}

async fn text_of(tab: &Tab<'_>, id: &str, prefix: &str) -> String {
    let v = tab
        .wait_for(
            &format!("(() => {{ const e = document.getElementById('{id}'); return e && e.textContent.startsWith('{prefix}') ? e.textContent : ''; }})()"),
            20,
        )
        .await;
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_referrers_bounces_tracker_cookies_and_frames_keep_nothing_of_the_person() {
    if chromium_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let news = origin(
        Some(ca.server_config(&["news.test"])),
        handler(|req| async move {
            let r = match req.uri().path() {
                "/header" => {
                    let mut r = html(LOOSE_HEADER);
                    r.headers_mut().insert("referrer-policy", "unsafe-url".parse().unwrap());
                    r
                }
                "/meta" => html(LOOSE_META),
                "/shop" => html(SHOP),
                "/framed" => html(FRAMED),
                _ => html("<!doctype html><title>news</title><p id=news>news</p>"),
            };
            no_store(r)
        }),
    )
    .await;
    let dest = origin(
        Some(ca.server_config(&["dest.test"])),
        handler(
            |req| async move { no_store(if req.uri().path() == "/frame" { html(DEST_FRAME) } else { html(DEST) }) },
        ),
    )
    .await;
    let bounce = origin(
        Some(ca.server_config(&["bounce.test"])),
        handler(|_| async {
            let mut r = no_store(html(BOUNCE));
            r.headers_mut()
                .insert("set-cookie", "hdruid=hdr-4711; Max-Age=86400; Path=/; Secure; SameSite=Lax".parse().unwrap());
            r
        }),
    )
    .await;
    let ads = origin(
        Some(ca.server_config(&["ads.test"])),
        handler(|req| async move {
            no_store(if req.uri().path() == "/ad.js" {
                Response::builder().header("content-type", "application/javascript").body(body(AD_JS)).unwrap()
            } else {
                html(AD_FRAME)
            })
        }),
    )
    .await;
    let unlisted = origin(
        Some(ca.server_config(&["unlisted.test"])),
        handler(|req| async move {
            no_store(if req.uri().path() == "/pixel.gif" {
                Response::builder()
                    .header("content-type", "image/gif")
                    .header("set-cookie", "u=unlisted-4711; Max-Age=86400; Path=/; Secure; SameSite=None")
                    .body(body(nostalk::respond::blocked::TRANSPARENT_GIF))
                    .unwrap()
            } else {
                html(INNER)
            })
        }),
    )
    .await;

    let cfg = block_and_ad_lists(dir.path(), &ca.pem_path, "||bounce.test^\n", "||ads.test^\n");
    let resolve_to = [
        resolve("news.test", 443, &news),
        resolve("dest.test", 443, &dest),
        resolve("bounce.test", 443, &bounce),
        resolve("ads.test", 443, &ads),
        resolve("unlisted.test", 443, &unlisted),
    ];
    let proxy = Proxy::start(&resolve_to, &cfg).await;
    let (home, profile) = browser_home(dir.path(), Some(&proxy.ca_path()));
    let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &proxy.url())).await;
    let tab = browser.tab().await;
    let origin_only = "https://news.test/";

    // 1. Referrers: a frame, a link, a link with its own unsafe-url, a scripted navigation and a
    // form POST from a page that asks for unsafe-url; then a link from one that asks by <meta>.
    tab.goto("https://news.test/header?account=alice-42").await;
    let framed = text_of(&tab, "frame-referrer", "frame-referrer=").await;
    assert_eq!(framed, format!("frame-referrer={origin_only}"), "document.referrer in a cross-site frame");
    let ways = [("#link", "/link"), ("#link-attr", "/link-attr"), ("#script", "/scripted"), ("#send", "/form")];
    for (what, _path) in ways {
        tab.goto("https://news.test/header?account=alice-42").await;
        tab.wait_for("document.getElementById('link')", 20).await;
        tab.click(what).await;
        let seen = text_of(&tab, "referrer", "referrer=").await;
        assert_eq!(seen, format!("referrer={origin_only}"), "document.referrer after {what}");
    }
    // The <meta> page also frames dest.test, and its script adds a link and a <meta> that ask
    // for unsafe-url after the page has loaded.
    for what in ["#link", "#link-attr", "#late"] {
        tab.goto("https://news.test/meta?account=alice-42").await;
        let framed = text_of(&tab, "frame-referrer", "frame-referrer=").await;
        assert_eq!(framed, format!("frame-referrer={origin_only}"), "a frame of a <meta> page");
        tab.click(what).await;
        let seen = text_of(&tab, "referrer", "referrer=").await;
        assert_eq!(seen, format!("referrer={origin_only}"), "document.referrer after {what} on a <meta> page");
    }
    for path in ["/frame", "/link", "/link-attr", "/scripted", "/form", "/meta-link", "/meta-link-attr", "/late"] {
        let got = referers(&dest, path);
        assert!(!got.is_empty(), "{path} reached dest.test: {:?}", dest.seen());
        assert!(
            got.iter().all(|r| r.as_deref() == Some(origin_only)),
            "the Referer dest.test logged for {path}: {got:?}"
        );
    }

    // 2. Unlinkable bouncing: the second bounce finds nothing of the first, and the tracker's
    // server never gets its cookie back.
    tab.goto("https://bounce.test/hop?to=news").await;
    let first = text_of(&tab, "found", "cookie=").await;
    assert_eq!(first, "cookie=;storage=null", "a first bounce");
    tab.goto("https://news.test/").await;
    tab.wait_for("document.getElementById('news')", 20).await;
    tab.goto("https://bounce.test/hop?to=news").await;
    let second = text_of(&tab, "found", "cookie=").await;
    assert_eq!(second, "cookie=;storage=null", "the second bounce finds no UID in cookie or localStorage");
    let sent: Vec<_> = bounce.seen().iter().filter_map(|s| s.header("cookie")).collect();
    assert!(sent.is_empty(), "the tracker got a cookie back: {sent:?}");
    assert!(bounce.seen().iter().all(|s| s.header("referer").is_none()), "a tracker's host gets no Referer");
    tab.goto("http://nostalk.internal/site?name=bounce.test").await;
    let receipt =
        tab.wait_for("document.body.innerText.includes('bounce.test') ? document.body.innerText : ''", 20).await;
    assert!(receipt.as_str().unwrap().contains("bounce kept unlinkable"), "the receipt names it: {receipt}");

    // 3. A cookie an ad's script writes is the page's only; the page's own cookie stays.
    tab.goto("https://news.test/shop").await;
    let after = text_of(&tab, "after", "after=").await;
    assert!(after.contains("own=basket-1") && after.contains("adid=ad-4711"), "within the page both work: {after}");
    tab.goto("https://news.test/").await;
    tab.wait_for("document.getElementById('news')", 20).await;
    tab.goto("https://news.test/shop").await;
    let at_open = text_of(&tab, "at-open", "at-open=").await;
    assert!(at_open.contains("own=basket-1"), "the page's own cookie is kept: {at_open}");
    assert!(!at_open.contains("adid"), "the ad's script's cookie did not outlive its page: {at_open}");
    assert!(!at_open.contains("adcs"), "nor the one it set through cookieStore: {at_open}");
    let last = news.seen().iter().rev().find(|s| s.uri.ends_with("/shop")).and_then(|s| s.header("cookie"));
    assert!(last.as_deref().is_some_and(|c| c.contains("own=basket-1") && !c.contains("adid")), "{last:?}");

    // 4. A cookie an unlisted third party sets inside a tracker's frame is not sent back.
    let pixels = || unlisted.seen().iter().filter(|s| s.uri.ends_with("/pixel.gif")).count();
    for visit in 1..=2 {
        tab.goto("https://news.test/framed").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while pixels() < visit {
            assert!(std::time::Instant::now() < deadline, "the pixel loads: {:?}", unlisted.seen());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let sent: Vec<_> = unlisted.seen().iter().filter_map(|s| s.header("cookie")).collect();
    assert!(sent.is_empty(), "the unlisted third party got its cookie back: {sent:?}");

    drop(tab);
    drop(browser);
    let _ = Arc::strong_count(&proxy.shared);
    proxy.stop().await;
}
