//! Trusted means untouched: a page of a site trusted in any of the three ways (the config's
//! `[policy] trusted_sites`, a group's `trusted_sites`, the person's "Trust this site" on the
//! receipt) reaches the browser byte for byte as its origin sent it, cookies included, over
//! plain HTTP and through a tunnel, while the same page of a site nobody trusts is cleaned. And
//! `nostalk explain` decides as the proxy does, with the person's choices.

mod support;

use std::time::Duration;
use support::{curl, handler, origin, resolve, Origin, OriginCa, Proxy};

/// A page with everything nostalk would take out: a Meta pixel snippet, a tracker's image, a
/// decorated link, a tracking cookie.
const PAGE: &str = "<!doctype html><html><head><title>News</title>\
<script>!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){n.callMethod?n.callMethod.apply(n,arguments):n.queue.push(arguments)};\
if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;n.version='2.0';n.queue=[];t=b.createElement(e);t.async=!0;t.src=v;\
s=b.getElementsByTagName(e)[0];s.parentNode.insertBefore(t,s)}(window,document,'script','https://connect.facebook.net/en_US/fbevents.js');\
fbq('init','123456789');fbq('track','PageView');</script></head><body><h1>Story</h1>\
<img src=\"https://www.google-analytics.com/collect?v=1&tid=UA-1&cid=555\" width=1 height=1>\
<a href=\"https://shop.test/item?id=3&utm_source=news&fbclid=abc\">buy</a></body></html>\n";

const COOKIE: &str = "_ga=GA1.2.111.222; Path=/";

async fn news(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Origin {
    origin(
        tls,
        handler(|_req| async {
            http::Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("set-cookie", COOKIE)
                .body(support::body(PAGE))
                .unwrap()
        }),
    )
    .await
}

/// The page and its Set-Cookie, as the client got them.
async fn fetch(client: &reqwest::Client, url: &str) -> (String, Option<String>) {
    let r = client.get(url).header("sec-fetch-dest", "document").header("sec-fetch-mode", "navigate").send().await;
    let r = r.unwrap_or_else(|e| panic!("{url}: {e}"));
    let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
    (r.text().await.unwrap(), cookie)
}

fn untouched(what: &str, got: (String, Option<String>)) {
    assert_eq!(got.0, PAGE, "{what}: the page arrives byte for byte");
    assert_eq!(got.1.as_deref(), Some(COOKIE), "{what}: its cookie too");
}

fn cleaned(what: &str, got: (String, Option<String>)) {
    assert_ne!(got.0, PAGE, "{what}: a page nobody trusts is rewritten");
    assert!(!got.0.contains("utm_source"), "{what}: its link is cleaned");
    assert!(got.1.is_none(), "{what}: its tracking cookie is stripped");
}

struct Web {
    ca: OriginCa,
    plain: Origin,
    tls: Origin,
    _dir: tempfile::TempDir,
}

async fn web() -> Web {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let tls = news(Some(ca.server_config(&["news.test", "other.test"]))).await;
    Web { plain: news(None).await, tls, ca, _dir: dir }
}

impl Web {
    fn resolve(&self) -> Vec<String> {
        vec![
            resolve("news.test", 80, &self.plain),
            resolve("news.test", 443, &self.tls),
            resolve("other.test", 80, &self.plain),
            resolve("other.test", 443, &self.tls),
        ]
    }

    fn roots(&self) -> String {
        format!("[upstream]\nextra_roots = [{:?}]\n", self.ca.pem_path.display().to_string())
    }
}

#[tokio::test]
async fn a_site_trusted_in_the_config_is_untouched_over_http_and_https() {
    let w = web().await;
    let cfg = format!("{}[policy]\ntrusted_sites = [\"news.test\"]\n", w.roots());
    let p = Proxy::start(&w.resolve(), &cfg).await;
    let c = p.client(&[&w.ca.pem]);
    untouched("config, http", fetch(&c, "http://news.test/story").await);
    untouched("config, https", fetch(&c, "https://news.test/story").await);
    cleaned("untrusted, http", fetch(&c, "http://other.test/story").await);
    cleaned("untrusted, https", fetch(&c, "https://other.test/story").await);
    p.stop().await;
}

#[tokio::test]
async fn a_site_a_group_trusts_is_untouched_for_its_members_only() {
    let w = web().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    nostalk::ops::auth::set_password(&users, "bob", "battery staple").unwrap();
    let cfg = format!(
        "{}[auth]\nusers = {:?}\n[[groups]]\nname = \"newsroom\"\nmembers = [\"alice\"]\ntrusted_sites = [\"news.test\"]\n",
        w.roots(),
        users.display().to_string()
    );
    let p = Proxy::start(&w.resolve(), &cfg).await;
    let as_user = |user: &str, password: &str| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(p.url()).unwrap().basic_auth(user, password))
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(w.ca.pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (alice, bob) = (as_user("alice", "correct horse"), as_user("bob", "battery staple"));
    untouched("group, http", fetch(&alice, "http://news.test/story").await);
    untouched("group, https", fetch(&alice, "https://news.test/story").await);
    cleaned("not in the group, http", fetch(&bob, "http://news.test/story").await);
    cleaned("not in the group, https", fetch(&bob, "https://news.test/story").await);
    p.stop().await;
}

#[tokio::test]
async fn a_site_the_person_trusts_is_untouched_from_the_next_request_inside_an_open_tunnel_too() {
    let w = web().await;
    let p = Proxy::start(&w.resolve(), &w.roots()).await;
    let c = p.client(&[&w.ca.pem]);
    // Before: the tunnel to news.test is intercepted and its page cleaned.
    cleaned("before, https", fetch(&c, "https://news.test/story").await);
    cleaned("before, http", fetch(&c, "http://news.test/story").await);

    // The person trusts news.test from the receipt page's control.
    let control = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("token", p.shared.page_token.as_str()), ("site", "news.test"), ("trust", "1")];
    let r = control.post(format!("{}/trust", p.url())).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());

    // The same client, on the tunnel it already has open (intercepted), and over plain HTTP.
    untouched("person, in the open tunnel", fetch(&c, "https://news.test/story").await);
    untouched("person, http", fetch(&c, "http://news.test/story").await);
    // A new client's tunnel is passed through.
    untouched("person, new tunnel", fetch(&p.client(&[&w.ca.pem]), "https://news.test/story").await);
    cleaned("untrusted", fetch(&c, "https://other.test/story").await);

    // `nostalk explain` reads the same choices and says the same.
    let config = p.dir.path().join("nostalk.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .args(["explain", "--config", config.to_str().unwrap(), "--json", "https://news.test/story"])
        .output()
        .unwrap();
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((said["decision"].as_str(), said["rule"].as_str()), (Some("allow"), Some("trusted site")), "{said}");
    p.stop().await;
}

#[tokio::test]
async fn curl_gets_a_trusted_page_as_the_origin_sent_it() {
    // A client that asks for gzip: the trusted page is neither re-encoded nor rewritten.
    let w = web().await;
    let cfg = format!("{}[policy]\ntrusted_sites = [\"news.test\"]\n", w.roots());
    let p = Proxy::start(&w.resolve(), &cfg).await;
    let (ok, got, err) = curl(&["-s", "-x", &p.url(), "-H", "accept-encoding: gzip", "http://news.test/"]).await;
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8_lossy(&got), PAGE);
    p.stop().await;
}

/// What `nostalk explain` says of `url` from `page`, with the proxy's config and choices.
fn explain(p: &Proxy, url: &str, page: &str, request_type: &str) -> String {
    let config = p.dir.path().join("nostalk.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .args(["explain", "--config", config.to_str().unwrap(), "--json", "--page", page, "--type", request_type, url])
        .output()
        .unwrap();
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    said["decision"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn explain_and_the_proxy_agree_with_the_lists_and_the_persons_choices() {
    let o = origin(None, handler(|_req| async { http::Response::new(support::body("ok")) })).await;
    let dir = tempfile::tempdir().unwrap();
    let ads = dir.path().join("ads.txt");
    std::fs::write(&ads, "||ads.test^\n").unwrap();
    let cfg = format!("[[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n", ads.display().to_string());
    let hosts = ["ads.test", "www.google-analytics.com", "cdn.test", "news.test", "shop.test"];
    let resolve: Vec<String> = hosts.iter().map(|h| resolve(h, 80, &o)).collect();
    let p = Proxy::start(&resolve, &cfg).await;
    let c = p.client(&[]);
    let requests = [
        ("http://ads.test/ad.js", "http://news.test/", "script"),
        ("http://www.google-analytics.com/collect?v=1", "http://news.test/", "image"),
        ("http://cdn.test/app.js", "http://news.test/", "script"),
        ("http://www.google-analytics.com/collect?v=1", "http://shop.test/", "image"),
    ];
    let proxy_says = |blocked: bool, reached: bool| match (blocked, reached) {
        (true, false) => "block",
        (false, true) => "reached",
        other => panic!("blocked and reached at once: {other:?}"),
    };
    let control = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for round in 0..2 {
        for (url, page, t) in requests {
            let before = o.count();
            let r = c.get(url).header("referer", page).header("sec-fetch-dest", t).send().await.unwrap();
            let blocked = r.headers().get("x-nostalk").is_some_and(|v| v == "blocked");
            let said = proxy_says(blocked, o.count() > before);
            let explained = explain(&p, url, page, t);
            let agree = if said == "block" { explained == "block" } else { explained != "block" };
            assert!(agree, "round {round}: {url} from {page}: the proxy {said}, explain says {explained}");
        }
        // The person's choices change both alike: the ad source down-voted, shop.test trusted.
        let token = p.shared.page_token.clone();
        let down = [("token", token.as_str()), ("source", "ads.test"), ("site", "news.test")];
        assert_eq!(control.post(format!("{}/ads/down", p.url())).form(&down).send().await.unwrap().status(), 303);
        let trust = [("token", token.as_str()), ("site", "shop.test"), ("trust", "1")];
        assert_eq!(control.post(format!("{}/trust", p.url())).form(&trust).send().await.unwrap().status(), 303);
    }
    assert_eq!(explain(&p, "http://ads.test/ad.js", "http://news.test/", "script"), "block", "down-voted");
    assert_eq!(explain(&p, "http://www.google-analytics.com/collect?v=1", "http://shop.test/", "image"), "allow");
    p.stop().await;
}
