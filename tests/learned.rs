//! Learned trackers, as a person meets them: third parties no list names, seen through the
//! proxy on local sites (`*.test`), learned when they try to identify the browser and then
//! decided like an ad source (reason `learned`, pixels blocked); what is not learned (two
//! sites, a CDN's hashed file, a value every browser sends, a trusted site); and the ways back
//! (`nostalk learned forget`, the receipt's "Not a tracker"), across a restart.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::{handler, origin, Origin, Proxy};

/// One origin for every host: `/id.js` sets a new identifying cookie each time (as a tracker
/// does for a browser it has not seen), anything else answers a small body and sets nothing.
async fn web() -> Origin {
    let n = Arc::new(AtomicU64::new(0));
    origin(
        None,
        handler(move |req| {
            let n = n.fetch_add(1, Ordering::Relaxed);
            async move {
                let mut r = http::Response::new(support::body("ok"));
                if req.uri().path() == "/id.js" {
                    let id = format!("tid=Zq{:012x}x{n}; Path=/; Max-Age=31536000", 0x9a3f_71c2_u64 * (n + 7));
                    r.headers_mut().insert("set-cookie", http::HeaderValue::from_str(&id).unwrap());
                }
                r
            }
        }),
    )
    .await
}

const HOSTS: &[&str] = &[
    "tracker.test",
    "cdn.test",
    "sync.test",
    "shared.test",
    "widget.test",
    "pair.test",
    "news.test",
    "shop.test",
    "blog.test",
    "fourth.test",
    "fifth.test",
    "sixth.test",
    "seventh.test",
];

fn resolve(o: &Origin) -> Vec<String> {
    HOSTS.iter().map(|h| format!("{h}:80:127.0.0.1:{}", o.port())).collect()
}

/// A load of `url` by the page `page` (its Referer) as the browser's `dest`; true when it reached
/// the origin.
async fn load(o: &Origin, c: &reqwest::Client, url: &str, page: &str, dest: &str) -> bool {
    let before = o.count();
    let r = c.get(url).header("referer", page).header("sec-fetch-dest", dest).send().await.unwrap();
    let _ = r.bytes().await;
    o.count() > before
}

/// A POST of a fetch's type from `page` with `headers`: (what nostalk's answer says of it,
/// whether it reached the origin).
async fn post(o: &Origin, c: &reqwest::Client, url: &str, page: &str, headers: &[(&str, &str)]) -> (String, bool) {
    let before = o.count();
    let mut req = c.post(url).header("referer", page).header("sec-fetch-dest", "empty").body("{\"e\":\"view\"}");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let said = r.headers().get("x-nostalk").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (said, o.count() > before)
}

/// What `nostalk explain` says of `url` from `page`: (decision, rule).
fn explain(p: &Proxy, url: &str, page: &str, dest: &str) -> (String, String) {
    let config = p.dir.path().join("nostalk.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .args(["explain", "--config", config.to_str().unwrap(), "--json", url, "--page", page, "--type", dest])
        .output()
        .unwrap();
    let said: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (said["decision"].as_str().unwrap_or("").to_string(), said["rule"].as_str().unwrap_or("").to_string())
}

fn nostalk_learned(p: &Proxy, args: &[&str]) -> String {
    let config = p.dir.path().join("nostalk.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .arg("learned")
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_third_party_that_sets_identifying_cookies_on_three_sites_is_learned_and_its_pixel_blocked() {
    let o = web().await;
    let p = Proxy::start(&resolve(&o), "").await;
    let c = p.client(&[]);
    for page in ["http://news.test/a", "http://shop.test/b"] {
        assert!(load(&o, &c, "http://tracker.test/id.js", page, "script").await);
    }
    // Two sites: not yet. Its pixel still reaches it, and explain says no rule.
    assert!(load(&o, &c, "http://tracker.test/pixel.gif?e=view", "http://blog.test/", "image").await);
    assert_eq!(explain(&p, "http://tracker.test/pixel.gif?e=view", "http://blog.test/", "image").0, "allow");
    assert!(nostalk_learned(&p, &[]).contains("no tracker learned yet"));
    // The third site.
    assert!(load(&o, &c, "http://tracker.test/id.js", "http://blog.test/c", "script").await);

    // From the fourth request on: its script is an ad source's (forwarded, no cookie either way),
    // its pixel and its pings are blocked.
    let before = o.count();
    let r = c
        .get("http://tracker.test/id.js")
        .header("referer", "http://fourth.test/")
        .header("sec-fetch-dest", "script")
        .header("cookie", "tid=Zq00000000abcd")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none(), "no cookie is set");
    assert_eq!(o.count(), before + 1, "the script loads");
    assert!(o.seen().last().unwrap().header("cookie").is_none(), "and no cookie reaches it");
    assert!(!load(&o, &c, "http://tracker.test/pixel.gif?e=view", "http://fourth.test/", "image").await);
    // A ping (`<a ping>`), as Chromium sends it, and a beacon (`navigator.sendBeacon`: a POST
    // of a fetch's type) are blocked too.
    let ping = [("ping-from", "http://fourth.test/"), ("ping-to", "http://elsewhere.test/")];
    let page = "http://fourth.test/";
    assert_eq!(post(&o, &c, "http://tracker.test/ping", page, &ping).await, ("blocked".into(), false), "a ping");
    assert_eq!(post(&o, &c, "http://tracker.test/collect", page, &[]).await, ("blocked".into(), false), "a beacon");
    // Its identifiers are taken off its URLs, whatever their names; its settings stay.
    assert!(load(&o, &c, "http://tracker.test/s.js?xq=Zk29xQ7pLm3v8R&page=2", "http://fourth.test/", "script").await);
    assert!(o.seen().last().unwrap().uri.ends_with("/s.js?page=2"), "{}", o.seen().last().unwrap().uri);
    let (decision, rule) = explain(&p, "http://tracker.test/id.js", "http://fourth.test/", "script");
    assert_eq!(decision, "ad");
    assert_eq!(rule, "learned: tried to identify you on news.test, shop.test and blog.test");
    assert_eq!(explain(&p, "http://tracker.test/pixel.gif?e=view", "http://fourth.test/", "image").0, "block");
    assert!(nostalk_learned(&p, &[])
        .contains("tracker.test  learned: tried to identify you on news.test, shop.test and blog.test"));
    // Its own site's requests (first party) are not touched.
    assert!(load(&o, &c, "http://tracker.test/pixel.gif?e=view", "http://tracker.test/", "image").await);

    // The metrics count it; the receipt names it with a "Not a tracker" button.
    let metrics = c.get(format!("{}/metrics", p.url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\nnostalk_learned_trackers 1\n"), "{metrics}");
    let receipt = c.get(format!("{}/site?name=fourth.test", p.url())).send().await.unwrap().text().await.unwrap();
    assert!(receipt.contains("learned: tried to identify you on news.test, shop.test and blog.test"), "{receipt}");
    assert!(receipt.contains("action=\"/learned/forget\""), "{receipt}");

    // "Not a tracker": forgotten, and not learned again however often it sets cookies.
    let control = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("token", p.shared.page_token.as_str()), ("source", "tracker.test"), ("site", "fourth.test")];
    let r = control.post(format!("{}/learned/forget", p.url())).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert!(load(&o, &c, "http://tracker.test/pixel.gif?e=view", "http://fourth.test/", "image").await);
    for page in ["http://fifth.test/", "http://sixth.test/", "http://seventh.test/", "http://news.test/"] {
        load(&o, &c, "http://tracker.test/id.js", page, "script").await;
    }
    assert!(load(&o, &c, "http://tracker.test/pixel.gif?e=view", "http://fourth.test/", "image").await);
    assert_eq!(explain(&p, "http://tracker.test/id.js", "http://fourth.test/", "script").0, "allow");
    p.stop().await;
}

#[tokio::test]
async fn a_cdn_s_hashed_files_and_versions_are_not_learned_nor_is_a_third_party_on_two_sites() {
    let o = web().await;
    let p = Proxy::start(&resolve(&o), "").await;
    let c = p.client(&[]);
    for page in ["http://news.test/", "http://shop.test/", "http://blog.test/", "http://fourth.test/"] {
        load(&o, &c, "http://cdn.test/static/app.3f2a9b8c7d6e41a0.js?v=3f2a9b8c7d6e", page, "script").await;
        load(&o, &c, "http://cdn.test/static/styles.9f8e7d6c5b4a.css", page, "style").await;
    }
    for page in ["http://news.test/", "http://shop.test/"] {
        load(&o, &c, "http://pair.test/id.js", page, "script").await;
    }
    assert!(p.shared.choices.learned().is_empty(), "{:?}", p.shared.choices.learned());
    assert!(load(&o, &c, "http://pair.test/pixel.gif?e=1", "http://blog.test/", "image").await);
    p.stop().await;
}

#[tokio::test]
async fn a_value_sent_from_two_sites_by_one_client_is_learned_at_once_and_a_restart_keeps_it() {
    let o = web().await;
    let p = Proxy::start(&resolve(&o), "").await;
    let c = p.client(&[]);
    let synced = "http://sync.test/s.js?uid=Zk29xQ7pLm3v8R";
    assert!(load(&o, &c, synced, "http://news.test/", "script").await);
    assert!(p.shared.choices.learned().is_empty(), "one site");
    assert!(load(&o, &c, synced, "http://shop.test/", "script").await);
    assert_eq!(p.shared.choices.learned(), vec![("sync.test".to_string(), "news.test and shop.test".to_string())]);
    assert!(!load(&o, &c, "http://sync.test/p.gif?uid=Zk29xQ7pLm3v8R", "http://blog.test/", "image").await);

    // A restart keeps it.
    let resolve_to = resolve(&o);
    let dir = p.stop_keeping_dir().await;
    let p = Proxy::start_in(dir, &resolve_to, "").await;
    let c = p.client(&[]);
    assert!(!load(&o, &c, "http://sync.test/p.gif?uid=1", "http://blog.test/", "image").await);
    // And the command line forgets it; the running proxy sees that within seconds.
    assert!(nostalk_learned(&p, &["forget", "sync.test"]).contains("sync.test: forgotten"));
    let mut back = false;
    for _ in 0..50 {
        if load(&o, &c, "http://sync.test/p.gif?uid=1", "http://blog.test/", "image").await {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the forgotten tracker's pixel loads again");
    p.stop().await;
}

#[tokio::test]
async fn a_value_two_browsers_both_send_is_not_an_identifier_and_a_trusted_site_is_never_learned() {
    let o = web().await;
    let p = Proxy::start(&resolve(&o), "").await;
    let browser = |ip: [u8; 4]| p.client_builder(&[]).local_address(std::net::IpAddr::from(ip)).build().unwrap();
    let (one, two) = (browser([127, 0, 0, 1]), browser([127, 0, 0, 2]));
    // An API key in every site's HTML: the same from two browsers, so the same for everyone.
    let keyed = "http://shared.test/api.js?key=AIzaSyD4x9Qm2Lp7";
    assert!(load(&o, &one, keyed, "http://news.test/", "script").await);
    assert!(load(&o, &two, keyed, "http://news.test/", "script").await);
    assert!(load(&o, &one, keyed, "http://shop.test/", "script").await);
    assert!(load(&o, &two, keyed, "http://blog.test/", "script").await);
    assert!(p.shared.choices.learned().is_empty(), "{:?}", p.shared.choices.learned());

    // A site the person trusts is never learned, whatever it sets.
    let control = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("token", p.shared.page_token.as_str()), ("site", "widget.test"), ("trust", "1")];
    assert_eq!(control.post(format!("{}/trust", p.url())).form(&form).send().await.unwrap().status(), 303);
    for page in ["http://news.test/", "http://shop.test/", "http://blog.test/", "http://fourth.test/"] {
        load(&o, &one, "http://widget.test/id.js", page, "script").await;
    }
    assert!(p.shared.choices.learned().is_empty(), "{:?}", p.shared.choices.learned());
    p.stop().await;
}
