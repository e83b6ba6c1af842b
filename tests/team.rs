//! A team gateway's own features, as its users meet them: proxy authentication (407 until a
//! right password, over plain requests and CONNECT alike) and a group's policy applied to its
//! members only, inside intercepted tunnels too.

mod support;

use std::time::Duration;
use support::{handler, origin, resolve, OriginCa, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn page_handler() -> support::Handler {
    handler(|_req| async { http::Response::new(support::body("page")) })
}

/// A users file with alice (group `strict`, whose ads are blocked) and bob (no group), and
/// a list of ads: all of `ads.test`, and `news.test/ads/`.
fn team_config(dir: &std::path::Path, extra: &str) -> String {
    let users = dir.join("users");
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    nostalk::ops::auth::set_password(&users, "bob", "battery staple").unwrap();
    let ads = dir.join("ads.txt");
    std::fs::write(&ads, "||ads.test^\n||news.test/ads/\n").unwrap();
    format!(
        "[auth]\nusers = {:?}\n{extra}\n[[groups]]\nname = \"strict\"\nmembers = [\"alice\"]\nads = \"block\"\n\
         trusted_sites = [\"partner.test\"]\n\
         [[lists]]\nname = \"team-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        users.display().to_string(),
        ads.display().to_string()
    )
}

fn as_user(p: &Proxy, user: &str, password: &str, extra_roots: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(p.url()).unwrap().basic_auth(user, password))
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    for pem in extra_roots {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn connect_status(p: &Proxy, authorization: Option<&str>) -> String {
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let auth = authorization.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn without_a_right_password_the_proxy_answers_407_and_with_one_it_forwards() {
    let o = origin(None, page_handler()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Proxy::start(&[resolve("site.test", 80, &o)], &team_config(dir.path(), "")).await;

    let anonymous = reqwest::Client::builder().proxy(reqwest::Proxy::http(p.url()).unwrap()).build().unwrap();
    let r = anonymous.get("http://site.test/").send().await.unwrap();
    assert_eq!(r.status(), 407);
    let challenge = r.headers().get("proxy-authenticate").unwrap().to_str().unwrap().to_string();
    assert!(challenge.starts_with("Basic realm=\"nostalk\""), "{challenge}");
    assert_eq!(o.count(), 0, "nothing reached the origin");

    let wrong = as_user(&p, "alice", "battery staple", &[]);
    assert_eq!(wrong.get("http://site.test/").send().await.unwrap().status(), 407);
    let nobody = as_user(&p, "mallory", "correct horse", &[]);
    assert_eq!(nobody.get("http://site.test/").send().await.unwrap().status(), 407);

    let alice = as_user(&p, "alice", "correct horse", &[]);
    for _ in 0..3 {
        let r = alice.get("http://site.test/").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "page");
    }
    assert!(o.seen().iter().all(|s| s.header("proxy-authorization").is_none()), "the password never goes upstream");

    // CONNECT too: 407 without credentials, 200 with them.
    assert!(connect_status(&p, None).await.starts_with("HTTP/1.1 407"));
    let token = "YWxpY2U6Y29ycmVjdCBob3JzZQ=="; // alice:correct horse
    let answer = connect_status(&p, Some(&format!("Basic {token}"))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The proxy's own pages (PAC file, CA, health) need no password: a browser fetches the
    // PAC file before it knows it needs one.
    let pac = anonymous.get(format!("{}/proxy.pac", p.url())).send().await.unwrap();
    assert_eq!(pac.status(), 200);
    p.stop().await;
}

#[tokio::test]
async fn a_groups_policy_applies_to_its_members_only_and_inside_their_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let plain = origin(None, page_handler()).await;
    let tls = origin(Some(ca.server_config(&["news.test"])), page_handler()).await;
    let extra = format!("[upstream]\nextra_roots = [{:?}]\n", ca.pem_path.display().to_string());
    let cfg = team_config(dir.path(), &extra);
    let p = Proxy::start(&[resolve("ads.test", 80, &plain), resolve("news.test", 443, &tls)], &cfg).await;
    let alice = as_user(&p, "alice", "correct horse", &[&ca.pem]);
    let bob = as_user(&p, "bob", "battery staple", &[&ca.pem]);
    let blocked = |r: &reqwest::Response| r.headers().get("x-nostalk").is_some_and(|v| v == "blocked");

    // Bob's ads come through de-identified (the proxy's `ad`); alice's group blocks them,
    // over plain HTTP and inside a tunnel she opened (news.test is intercepted, its /ads/ is
    // on the list).
    for url in ["http://ads.test/ad.js", "https://news.test/ads/ad.js"] {
        let r = bob.get(url).header("sec-fetch-dest", "script").send().await.unwrap();
        assert!(!blocked(&r), "{url}: bob's ad is shown");
        assert_eq!(r.text().await.unwrap(), "page");
        let r = alice.get(url).header("sec-fetch-dest", "script").send().await.unwrap();
        assert!(blocked(&r), "{url}: alice's group blocks ads");
    }
    assert_eq!((plain.count(), tls.count()), (1, 1), "only bob's ads reached the ad servers");
    // The page itself is everyone's.
    let r = alice.get("https://news.test/story").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "page");
    p.stop().await;
}
