//! Acting on each verdict, seen from the servers' side: local origins record what they receive.
//! Trackers receive nothing and the page gets an answer of the right shape; ad servers receive
//! no Cookie, no identifier parameter and only the page's context as Referer; allowed origins
//! keep their own session cookie and lose the tracking ones; the shopping switch lets a site's
//! shopping cookies and parameters through for its duration.

mod support;

use hickory_resolver::proto as nostalk_dns;
use http::Response;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An origin that records requests and answers with cookies and an ETag of its own.
async fn cookie_setting_origin(content_type: &'static str, text: &'static str) -> Origin {
    origin(
        None,
        handler(move |_req| async move {
            Response::builder()
                .header("content-type", content_type)
                .header("set-cookie", "session=abc; Path=/")
                .header("set-cookie", "_ga=GA1.2.111.222; Path=/")
                .header("set-cookie", "_shopify_y=shop-1; Path=/")
                .header("etag", "\"user-4711\"")
                .body(body(text))
                .unwrap()
        }),
    )
    .await
}

struct Web {
    news: Origin,
    cdn: Origin,
    tracker: Origin,
    ads: Origin,
    proxy: Proxy,
}

/// news.test (the page), cdn.test (an ordinary third party), tracker.test (a surveillance list
/// names it) and ads.test (an ad list names it), all local, behind one proxy.
async fn web(extra_toml: &str) -> Web {
    let news = cookie_setting_origin("text/plain", "news").await;
    let cdn = cookie_setting_origin("text/css", "body{}").await;
    let tracker = cookie_setting_origin("image/gif", "GIF89a").await;
    let ads = cookie_setting_origin("image/png", "an ad").await;
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("block.txt");
    let ad = dir.path().join("ad.txt");
    std::fs::write(&block, "! test surveillance list\n||tracker.test^\n").unwrap();
    std::fs::write(&ad, "! test ad list\n||ads.test^\n").unwrap();
    let toml = format!(
        "{extra_toml}\n[[lists]]\nname = \"test-block\"\npath = {:?}\nverdict = \"block\"\n\n[[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        block.display().to_string(),
        ad.display().to_string()
    );
    let proxy = Proxy::start_in(
        dir,
        &[
            resolve("news.test", 80, &news),
            resolve("www.news.test", 80, &news),
            resolve("cdn.test", 80, &cdn),
            resolve("tracker.test", 80, &tracker),
            resolve("ads.test", 80, &ads),
        ],
        &toml,
    )
    .await;
    Web { news, cdn, tracker, ads, proxy }
}

fn no_redirects(p: &Proxy) -> reqwest::Client {
    p.client_builder(&[]).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn blocked_requests_never_leave_and_get_an_answer_of_their_shape() {
    let w = web("").await;
    let c = w.proxy.client(&[]);
    let page = "http://news.test/story";
    let get = |dest: &'static str, path: &'static str| {
        c.get(format!("http://tracker.test{path}"))
            .header("sec-fetch-dest", dest)
            .header("sec-fetch-site", "cross-site")
            .header("referer", page)
            .send()
    };
    // Image: a 1x1 transparent GIF.
    let r = get("image", "/pixel.gif?uid=1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.headers()["x-nostalk"], "blocked");
    let gif = r.bytes().await.unwrap();
    assert!(gif.starts_with(b"GIF89a") && gif[6..10] == [1, 0, 1, 0], "1x1 GIF");
    // Script: an empty script.
    let r = get("script", "/t.js").await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "application/javascript"));
    assert!(r.text().await.unwrap().trim_start().starts_with("/*"));
    // Stylesheet: an empty stylesheet.
    let r = get("style", "/t.css").await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()), (200, "text/css"));
    // Frame: a small placeholder document naming the rule.
    let r = get("iframe", "/frame.html").await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("nostalk blocked") && html.contains("||tracker.test^"), "{html}");
    // fetch/XHR: 204.
    let r = get("empty", "/api/track").await.unwrap();
    assert_eq!(r.status(), 204);
    // A beacon (POST with a body) and an <a ping>: 204, and the body goes nowhere.
    let r = c
        .post("http://tracker.test/collect")
        .header("sec-fetch-dest", "empty")
        .header("content-type", "text/plain")
        .body("{\"event\":\"scroll\",\"user\":42}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c.post("http://tracker.test/ping").header("content-type", "text/ping").body("PING").send().await.unwrap();
    assert_eq!(r.status(), 204);
    // curl, as a user would, asking for the tracker's script (a navigation to the tracker's
    // host is a page of its own: a_navigation_through_a_listed_trackers_host_...).
    let (ok, out, err) = curl(&["-x", &w.proxy.url(), "-i", "http://tracker.test/t.js"]).await;
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("x-nostalk: blocked"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(w.tracker.count(), 0, "the tracker received nothing: {:?}", w.tracker.seen());
}

#[tokio::test]
async fn blocked_tracker_libraries_are_answered_with_working_surrogates() {
    let tracker = static_origin(None, "application/javascript", "/* the real library */").await;
    let names = ["www.googletagmanager.com", "connect.facebook.net", "static.hotjar.com", "cdn.segment.com"];
    let resolve: Vec<String> = names.iter().map(|n| resolve(n, 80, &tracker)).collect();
    let p = Proxy::start(&resolve, "").await;
    let c = p.client(&[]);
    for (url, api) in [
        ("http://www.googletagmanager.com/gtag/js?id=G-1", "gtag"),
        ("http://www.googletagmanager.com/gtm.js?id=GTM-1", "dataLayer"),
        ("http://connect.facebook.net/en_US/fbevents.js", "fbq"),
        ("http://static.hotjar.com/c/hotjar-1.js?sv=6", "hj"),
        ("http://cdn.segment.com/analytics.js/v1/KEY/analytics.min.js", "analytics"),
    ] {
        let r = c
            .get(url)
            .header("sec-fetch-dest", "script")
            .header("sec-fetch-site", "cross-site")
            .header("referer", "https://news.test/")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers().get("x-nostalk").map(|v| v.to_str().unwrap()), Some("blocked"), "{url}");
        let js = r.text().await.unwrap();
        assert!(js.contains(api) && !js.contains("the real library"), "{url}: {js}");
    }
    assert_eq!(tracker.count(), 0);
}

#[tokio::test]
async fn without_interception_a_connect_to_a_blocked_host_is_refused_at_once() {
    let w = web("[intercept]\nenabled = false\n").await;
    // The page this client just opened: the refused tunnel is filed under it in the receipt.
    let r = w.proxy.client(&[]).get("http://news.test/").header("sec-fetch-dest", "document").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = tokio::net::TcpStream::connect(w.proxy.addr).await.unwrap();
    s.write_all(b"CONNECT tracker.test:443 HTTP/1.1\r\nHost: tracker.test:443\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // curl gives up at once with the proxy's refusal.
    let (ok, _, err) = curl(&["-x", &w.proxy.url(), "https://tracker.test/"]).await;
    assert!(!ok && err.contains("403"), "{err}");
    assert_eq!(w.tracker.count(), 0);
    let news = w.proxy.shared.receipt.site("news.test").expect("filed under the page");
    let t = &news.trackers["tracker.test"];
    assert_eq!((t.why, &*t.rule, &*t.list), (nostalk::receipt::Why::Refused, "||tracker.test^", "test-block"));
    assert!(w.proxy.shared.receipt.site("tracker.test").is_none(), "not a site of its own");
}

#[tokio::test]
async fn a_shared_gateway_keeps_totals_and_exports_ad_sources_to_metrics() {
    let w = web("[receipt]\nper_person = false\n").await;
    let c = w.proxy.client(&[]);
    for _ in 0..2 {
        let r = c
            .get("http://ads.test/banner.png?uid=1")
            .header("sec-fetch-dest", "image")
            .header("referer", "http://news.test/story")
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "an ad");
    }
    let r = c
        .get("http://tracker.test/p.gif")
        .header("sec-fetch-dest", "image")
        .header("referer", "http://news.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-nostalk"], "blocked");
    let site = w.proxy.shared.receipt.site("news.test").unwrap();
    assert_eq!((site.totals.ads, site.totals.blocked), (2, 1));
    assert!(site.trackers.is_empty() && site.ads.is_empty(), "no hosts kept on a shared gateway");
    let m = reqwest::get(format!("{}/metrics", w.proxy.url())).await.unwrap().text().await.unwrap();
    assert!(m.contains("nostalk_ad_source_requests_total{source=\"ads.test\",verdict=\"ad\"} 2"), "{m}");
    // A down-vote shows there too, and the source is then blocked as down-voted.
    w.proxy.shared.choices.downvote("ads.test").unwrap();
    let r = c
        .get("http://ads.test/banner.png")
        .header("sec-fetch-dest", "image")
        .header("referer", "http://news.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-nostalk"], "blocked");
    let m = reqwest::get(format!("{}/metrics", w.proxy.url())).await.unwrap().text().await.unwrap();
    assert!(m.contains("nostalk_ad_source_requests_total{source=\"ads.test\",verdict=\"downvoted\"} 1"), "{m}");
    assert!(m.contains("nostalk_ad_source_downvotes{source=\"ads.test\"} 1"), "{m}");
}

#[tokio::test]
async fn with_interception_a_trackers_host_is_opened_and_each_request_in_it_decided() {
    let w = web("").await;
    let ca = w.proxy.ca_path();
    let ca = ca.to_str().unwrap();
    // A pixel inside the tunnel gets its GIF, never leaving the proxy.
    let (ok, gif, err) = curl(&[
        "-x",
        &w.proxy.url(),
        "--cacert",
        ca,
        "-H",
        "sec-fetch-dest: image",
        "-H",
        "referer: https://news.test/",
        "https://tracker.test/p.gif?uid=1",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(gif.starts_with(b"GIF89a"), "{}", String::from_utf8_lossy(&gif));
    assert_eq!(w.tracker.count(), 0);
}

#[tokio::test]
async fn a_navigation_through_a_listed_trackers_host_that_redirects_back_completes() {
    let news = cookie_setting_origin("text/plain", "signed in, welcome back").await;
    let tracker = origin(
        None,
        handler(|_req| async move {
            Response::builder()
                .status(302)
                .header("location", "http://news.test/done?result=ok")
                .body(body(""))
                .unwrap()
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "||tracker.test^\n").unwrap();
    let toml =
        format!("[[lists]]\nname = \"test-block\"\npath = {:?}\nverdict = \"block\"\n", list.display().to_string());
    let proxy =
        Proxy::start_in(dir, &[resolve("news.test", 80, &news), resolve("tracker.test", 80, &tracker)], &toml).await;
    let r = proxy
        .client(&[])
        .get("http://tracker.test/sso?return=news")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().as_str(), "http://news.test/done?result=ok");
    assert_eq!(r.text().await.unwrap(), "signed in, welcome back");
    assert_eq!(tracker.count(), 1, "the hop through the tracker's host was made");
    // The same host as a page's subresource is still kept off the network.
    let pixel = proxy
        .client(&[])
        .get("http://tracker.test/p.gif")
        .header("sec-fetch-dest", "image")
        .header("referer", "http://news.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(pixel.headers().get("x-nostalk").unwrap(), "blocked");
    assert_eq!(tracker.count(), 1);
}

#[tokio::test]
async fn navigations_to_another_site_carry_the_origin_only_and_a_trackers_host_keeps_nothing() {
    let w = web("").await;
    let c = no_redirects(&w.proxy);
    let go = |url: &'static str, dest: &'static str, referer: &'static str| {
        c.get(url)
            .header("sec-fetch-dest", dest)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-site", "cross-site")
            .header("referer", referer)
            .header("cookie", "session=abc; uid=4711")
            .send()
    };
    // A link from another site, and a frame of another site: the origin only.
    go("http://news.test/a", "document", "http://cdn.test/account/alice?id=42").await.unwrap();
    go("http://news.test/f", "iframe", "http://cdn.test/account/alice?id=42").await.unwrap();
    // Within the site, the whole page.
    let same = c
        .get("http://news.test/b")
        .header("sec-fetch-dest", "document")
        .header("referer", "http://www.news.test/story/1?page=2")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    let referers: Vec<_> = w.news.seen().iter().map(|s| (s.uri.clone(), s.header("referer"))).collect();
    assert_eq!(
        referers,
        [
            ("/a".to_string(), Some("http://cdn.test/".to_string())),
            ("/f".to_string(), Some("http://cdn.test/".to_string())),
            ("/b".to_string(), Some("http://www.news.test/story/1?page=2".to_string())),
        ]
    );
    // A navigation through a tracker's host (no `$document` rule): it loads, with no cookie and
    // no Referer sent, and no cookie or client-hint request set.
    let hop = go("http://tracker.test/hop?to=news", "document", "http://news.test/story").await.unwrap();
    assert_eq!(hop.status(), 200, "the hop loads");
    assert!(hop.headers().get("set-cookie").is_none(), "the tracker sets no cookie");
    let seen = w.tracker.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("cookie"), None, "the tracker gets no cookie");
    assert_eq!(seen[0].header("referer"), None, "the tracker gets no Referer");
}

#[tokio::test]
async fn a_navigation_a_document_rule_blocks_says_why_and_open_anyway_opens_it_once() {
    let page = cookie_setting_origin("text/plain", "the page itself").await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "! strict\n||strict.test^$document\n").unwrap();
    let toml =
        format!("[[lists]]\nname = \"test-strict\"\npath = {:?}\nverdict = \"block\"\n", list.display().to_string());
    let proxy = Proxy::start_in(dir, &[resolve("strict.test", 80, &page)], &toml).await;
    let c = no_redirects(&proxy);
    let nav = |url: String| c.get(url).header("sec-fetch-dest", "document").header("sec-fetch-mode", "navigate").send();
    let r = nav("http://strict.test/offer?id=7".into()).await.unwrap();
    assert_eq!(r.headers().get("x-nostalk").unwrap(), "blocked");
    let html = r.text().await.unwrap();
    assert!(html.contains("nostalk blocked this page") && html.contains("<b>test-strict</b>"), "{html}");
    assert!(html.contains("||strict.test^$document") && html.contains("Go back"), "{html}");
    assert_eq!(page.count(), 0);
    let open =
        html.split("id=\"open-anyway\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    assert!(open.starts_with("http://strict.test/offer?id=7&nostalk-pass="), "{open}");
    let r = nav(open.clone()).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "the page itself");
    let seen = page.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/offer?id=7", "the pass never reaches the server");
    // That navigation only: the same link again, or the address again, is blocked.
    assert_eq!(nav(open).await.unwrap().headers().get("x-nostalk").unwrap(), "blocked");
    assert_eq!(
        nav("http://strict.test/offer?id=7".into()).await.unwrap().headers().get("x-nostalk").unwrap(),
        "blocked"
    );
    assert_eq!(page.count(), 1);
}

#[tokio::test]
async fn a_click_trackers_url_lands_on_its_destination_and_the_tracker_sees_nothing() {
    let w = web("").await;
    let tracker = &w.tracker;
    let p = Proxy::start(&[resolve("l.facebook.com", 80, tracker), resolve("news.test", 80, &w.news)], "").await;
    let url = "http://l.facebook.com/l.php?u=http%3A%2F%2Fnews.test%2Fstory%3Fid%3D3&h=AT0xyz";
    let r = no_redirects(&p).get(url).header("sec-fetch-dest", "document").send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers().get("location").unwrap(), "http://news.test/story?id=3");
    assert_eq!(r.headers().get("x-nostalk").unwrap(), "bounced");
    // A browser follows it to the page.
    let r = p.client(&[]).get(url).header("sec-fetch-dest", "document").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "news");
    assert_eq!(tracker.count(), 0, "the redirector was never contacted");
}

#[tokio::test]
async fn ads_are_forwarded_without_cookies_identifiers_or_the_persons_referer() {
    let w = web("").await;
    let c = w.proxy.client(&[]);
    let r = c
        .get("http://ads.test/slot/top.png?slot=top&size=300x250&uid=4711&gclid=abc&ppid=p-9")
        .header("sec-fetch-dest", "image")
        .header("sec-fetch-site", "cross-site")
        .header("referer", "http://news.test/story/42?user=alice&session=s1")
        .header("cookie", "adid=999; IDE=xyz")
        .header("x-client-data", "CIa2yQEIpbbJAQ==")
        .header("sec-ch-ua-model", "\"Pixel 9\"")
        .header("if-none-match", "\"user-4711\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-nostalk"), None, "the ad is shown, not blocked");
    assert!(r.headers().get("set-cookie").is_none(), "no cookie back to the browser");
    assert!(r.headers().get("etag").is_none(), "no ETag to replay");
    assert_eq!(r.text().await.unwrap(), "an ad");
    let seen = w.ads.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.uri, "/slot/top.png?slot=top&size=300x250", "identifier parameters removed, the slot kept");
    assert_eq!(s.header("cookie"), None);
    assert_eq!(s.header("referer").as_deref(), Some("http://news.test/"), "the page's origin only");
    assert_eq!(s.header("sec-gpc").as_deref(), Some("1"));
    assert_eq!(s.header("x-client-data"), None);
    assert_eq!(s.header("sec-ch-ua-model"), None);
    assert_eq!(s.header("if-none-match"), None);
}

#[tokio::test]
async fn ads_are_blocked_in_block_mode() {
    let w = web("[policy]\nads = \"block\"\n").await;
    let r = w.proxy.client(&[]).get("http://ads.test/a.png").header("sec-fetch-dest", "image").send().await.unwrap();
    assert_eq!(r.headers()["x-nostalk"], "blocked");
    assert_eq!(w.ads.count(), 0);
}

#[tokio::test]
async fn allowed_first_party_keeps_its_session_and_loses_tracking_cookies() {
    let w = web("[policy]\ndnt = true\n").await;
    let c = w.proxy.client(&[]);
    let r = c
        .get("http://news.test/api/comments?id=7")
        .header("sec-fetch-dest", "empty")
        .header("sec-fetch-site", "same-origin")
        .header("referer", "http://news.test/story/42?ref=home")
        .header("cookie", "session=abc; _ga=GA1.2.111.222; _fbp=fb.1.2.3; _gcl_au=1.1.5; theme=dark")
        .send()
        .await
        .unwrap();
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(set, ["session=abc; Path=/"], "the site's own cookie comes back, the tracking ones do not");
    assert_eq!(
        r.headers().get("etag").map(|v| v.to_str().unwrap()),
        Some("\"user-4711\""),
        "first party keeps caching"
    );
    let s = &w.news.seen()[0];
    assert_eq!(s.header("cookie").as_deref(), Some("session=abc; theme=dark"));
    assert_eq!(s.header("referer").as_deref(), Some("http://news.test/story/42?ref=home"), "same-site Referer kept");
    assert_eq!(s.header("sec-gpc").as_deref(), Some("1"));
    assert_eq!(s.header("dnt").as_deref(), Some("1"));
}

#[tokio::test]
async fn allowed_third_parties_get_no_cookies_and_only_the_origin_as_referer() {
    let w = web("").await;
    let r = w
        .proxy
        .client(&[])
        .get("http://cdn.test/site.css?v=3&utm_source=news")
        .header("sec-fetch-dest", "style")
        .header("sec-fetch-site", "cross-site")
        .header("referer", "http://news.test/story/42?user=alice")
        .header("cookie", "cdnsession=1")
        .header("x-client-data", "CIa2yQEIpbbJAQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no third-party cookie back");
    assert_eq!(r.text().await.unwrap(), "body{}");
    let s = &w.cdn.seen()[0];
    assert_eq!(s.uri, "/site.css?v=3", "the tracking parameter is gone, the version stays");
    assert_eq!(s.header("cookie"), None);
    assert_eq!(s.header("referer").as_deref(), Some("http://news.test/"));
    assert_eq!(s.header("x-client-data"), None);
}

#[tokio::test]
async fn a_navigation_to_a_decorated_url_is_redirected_to_the_clean_one() {
    let w = web("").await;
    let c = no_redirects(&w.proxy);
    let r = c
        .get("http://news.test/story/42?id=7&utm_source=twitter&fbclid=IwAR0abc#top")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "http://news.test/story/42?id=7");
    assert_eq!(w.news.count(), 0, "the decorated URL never reached the site");
    // A browser follows it; the site sees the clean URL only.
    let r = w.proxy.client(&[]).get("http://news.test/story/42?gclid=x").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "news");
    assert_eq!(w.news.seen()[0].uri, "/story/42");
}

#[tokio::test]
async fn the_shopping_switch_lets_a_site_keep_its_shopping_cookies_until_it_expires() {
    let w = web("").await;
    let c = w.proxy.client(&[]);
    let send = || {
        c.get("http://www.news.test/cart?irclickid=aff-1&utm_source=mail")
            .header("sec-fetch-dest", "empty")
            .header("sec-fetch-site", "same-origin")
            .header("cookie", "session=abc; _shopify_y=shop-1; _ga=GA1")
            .send()
    };
    // Not shopping (the default): shopping attribution is stripped too.
    let r = send().await.unwrap();
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(set, ["session=abc; Path=/"]);
    let s = &w.news.seen()[0];
    assert_eq!((s.uri.as_str(), s.header("cookie").as_deref()), ("/cart", Some("session=abc")));

    // Switch shopping on for the site from the proxy's own page (the form posts here, with
    // the page's token).
    let page = reqwest::get(format!("{}/", w.proxy.url())).await.unwrap().text().await.unwrap();
    let token = page.split_once("name=\"token\" value=\"").unwrap().1.split('"').next().unwrap().to_string();
    let r = no_redirects(&w.proxy)
        .post(format!("{}/shopping", w.proxy.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("site=news.test&minutes=30&token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let status = reqwest::get(format!("{}/", w.proxy.url())).await.unwrap().text().await.unwrap();
    assert!(status.contains("news.test"), "the status page lists the switch");
    let r = send().await.unwrap();
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(set, ["session=abc; Path=/", "_shopify_y=shop-1; Path=/"]);
    let s = &w.news.seen()[1];
    assert_eq!(s.uri, "/cart?irclickid=aff-1", "shopping attribution kept, campaign tracking still gone");
    assert_eq!(s.header("cookie").as_deref(), Some("session=abc; _shopify_y=shop-1"), "_ga still goes");

    // Switched off (minutes=0: expired at once): back to not shopping.
    no_redirects(&w.proxy)
        .post(format!("{}/shopping", w.proxy.url()))
        .body(format!("site=news.test&minutes=0&token={token}"))
        .send()
        .await
        .unwrap();
    send().await.unwrap();
    assert_eq!(w.news.seen()[2].header("cookie").as_deref(), Some("session=abc"));
}

/// A DNS server on loopback: `metrics.news.test` is a CNAME of `collector.tracker.test` (a
/// listed tracker), `cdn.news.test` one of `edge.cdn.test` (listed nowhere); both end at
/// 127.0.0.1. Every other name does not exist.
async fn cname_dns() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use nostalk_dns::op::{Message, MessageType, ResponseCode};
    use nostalk_dns::rr::rdata::{A, CNAME};
    use nostalk_dns::rr::{Name, RData, Record, RecordType};
    use nostalk_dns::serialize::binary::BinEncodable;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        // Bounded: a test asks a handful of questions.
        for _ in 0..200 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else { return };
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let mut r = Message::new();
            r.set_id(q.id()).set_message_type(MessageType::Response).set_op_code(q.op_code());
            r.set_recursion_desired(true).set_recursion_available(true);
            r.add_queries(q.queries().to_vec());
            let Some(query) = q.queries().first() else { continue };
            let target = match query.name().to_ascii().as_str() {
                "metrics.news.test." => Some("collector.tracker.test."),
                "cdn.news.test." => Some("edge.cdn.test."),
                _ => None,
            };
            match target {
                Some(t) => {
                    let t = Name::from_ascii(t).unwrap();
                    r.add_answer(Record::from_rdata(query.name().clone(), 60, RData::CNAME(CNAME(t.clone()))));
                    if query.query_type() == RecordType::A {
                        r.add_answer(Record::from_rdata(t, 60, RData::A(A::new(127, 0, 0, 1))));
                    }
                }
                None => {
                    r.set_response_code(ResponseCode::NXDomain);
                }
            }
            let _ = sock.send_to(&r.to_bytes().unwrap(), from).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_first_party_name_whose_cname_is_a_trackers_is_decided_as_that_tracker() {
    let (dns, _dns_task) = cname_dns().await;
    let w = web(&format!("[upstream]\ndns = \"{dns}\"\n")).await;
    let c = w.proxy.client(&[]);
    let r = c
        .get("http://metrics.news.test/collect?e=pageview")
        .header("sec-fetch-dest", "image")
        .header("sec-fetch-site", "same-site")
        .header("referer", "http://news.test/story")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-nostalk").unwrap(), "blocked");
    assert_eq!(r.headers().get("x-nostalk-cname").unwrap(), "collector.tracker.test");
    assert!(r.bytes().await.unwrap().starts_with(b"GIF89a"));
    // A frame says which rule, and which name the tracker hid behind.
    let r = c
        .get("http://metrics.news.test/frame")
        .header("sec-fetch-dest", "iframe")
        .header("referer", "http://news.test/story")
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("||tracker.test^") && html.contains("via CNAME collector.tracker.test"), "{html}");
    // A CNAME that no list names is an ordinary request, resolved by the same server.
    let r = c
        .get(format!("http://cdn.news.test:{}/style.css", w.cdn.port()))
        .header("sec-fetch-dest", "style")
        .header("referer", "http://news.test/story")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-nostalk"), None);
    assert_eq!(r.text().await.unwrap(), "body{}");
    assert_eq!(w.tracker.count(), 0);
}
