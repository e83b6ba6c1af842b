//! A team gateway's own features, as its users meet them: proxy authentication (407 until a
//! right password, over plain requests and CONNECT alike) and a group's policy applied to its
//! members only, inside intercepted tunnels too; a group by client network, changed by a
//! reload under load.

mod support;

use std::time::Duration;
use support::{handler, origin, resolve, Binary, OriginCa, Proxy};
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

/// A group by network (a lab on 127.0.0.2) blocks its clients' ads over plain HTTP and inside
/// an intercepted tunnel, without any sign-in; the client next door (127.0.0.3) gets them
/// de-identified. Moving the lab to 127.0.0.3 in the file applies on reload, and a load from a
/// third client runs through that reload with no request failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_by_network_applies_over_http_and_inside_a_tunnel_and_changes_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let plain = origin(None, page_handler()).await;
    let tls = origin(Some(ca.server_config(&["news.test"])), page_handler()).await;
    let ads = dir.path().join("ads.txt");
    std::fs::write(&ads, "||ads.test^\n||news.test/ads/\n").unwrap();
    let group = |net: &str| {
        format!(
            "[upstream]\nextra_roots = [{:?}]\n[[groups]]\nname = \"lab\"\nnetworks = [\"{net}\"]\nads = \"block\"\n\
             [[lists]]\nname = \"team-ads\"\npath = {:?}\nverdict = \"ad\"\n",
            ca.pem_path.display().to_string(),
            ads.display().to_string()
        )
    };
    let b = Binary::start(&[resolve("ads.test", 80, &plain), resolve("news.test", 443, &tls)], &group("127.0.0.2/32"))
        .await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .proxy(reqwest::Proxy::all(b.url()).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(b.ca_pem().as_bytes()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let (lab, next_door) = (from("127.0.0.2"), from("127.0.0.3"));
    let blocked = |c: reqwest::Client, url: &'static str| async move {
        let r = c.get(url).header("sec-fetch-dest", "script").send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        r.headers().get("x-nostalk").is_some_and(|v| v == "blocked")
    };
    for url in ["http://ads.test/ad.js", "https://news.test/ads/ad.js"] {
        assert!(blocked(lab.clone(), url).await, "{url}: the lab's ads are blocked");
        assert!(!blocked(next_door.clone(), url).await, "{url}: next door's are shown de-identified");
    }
    assert_eq!((plain.count(), tls.count()), (1, 1), "only next door's ads reached the ad servers");

    // A load of page requests from a third client runs through the reload.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop_load, load_client) = (stop.clone(), from("127.0.0.4"));
    let load = tokio::spawn(async move {
        let (mut sent, mut failed) = (0u32, 0u32);
        let started = std::time::Instant::now();
        while !stop_load.load(std::sync::atomic::Ordering::SeqCst)
            && sent < 20_000
            && started.elapsed() < Duration::from_secs(60)
        {
            sent += 1;
            let ok = match load_client.get("https://news.test/story").send().await {
                Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|t| t == "page"),
                Err(_) => false,
            };
            failed += u32::from(!ok);
        }
        (sent, failed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cfg = std::fs::read_to_string(b.config_path()).unwrap();
    std::fs::write(b.config_path(), cfg.replace("127.0.0.2/32", "127.0.0.3/32")).unwrap();
    // The file is watched: the change applies without a signal, within a few seconds.
    let started = std::time::Instant::now();
    while !blocked(next_door.clone(), "http://ads.test/ad.js").await {
        assert!(started.elapsed() < Duration::from_secs(20), "the moved group applies on reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for url in ["http://ads.test/ad.js", "https://news.test/ads/ad.js"] {
        assert!(blocked(next_door.clone(), url).await, "{url}: now next door is the lab");
        assert!(!blocked(lab.clone(), url).await, "{url}: and the old lab's ads are shown");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "no request failed across the reload ({sent} sent)");
    assert!(sent > 10, "the load ran ({sent})");
}

/// Two gateway processes on one PostgreSQL database, as a team's replicas run: carol's
/// down-vote through replica A blocks the ad for her through replica B within 2 s, and for
/// her alone; with the database stopped B keeps serving her choices and says the store is
/// unreachable in /readyz and /metrics; once the database is back a change through A reaches B
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_person_s_choices_through_postgresql_and_serve_while_it_is_down() {
    let Some(mut pg) = support::postgres::Postgres::start() else { return };
    let o = origin(None, page_handler()).await;
    let resolve_to = [resolve("ads.test", 80, &o), resolve("news.test", 80, &o), resolve("sync.test", 80, &o)];
    let shared = tempfile::tempdir().unwrap();
    let users = shared.path().join("users");
    nostalk::ops::auth::set_password(&users, "carol", "correct horse").unwrap();
    nostalk::ops::auth::set_password(&users, "dave", "battery staple").unwrap();
    let ads = shared.path().join("ads.txt");
    std::fs::write(&ads, "||ads.test^\n").unwrap();
    let config = format!(
        "[auth]\nusers = {:?}\n\n[admin]\ntoken = \"operators-only-token-1234\"\n\n[receipt]\nstore = {:?}\n\n\
         [[lists]]\nname = \"team-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        users.display().to_string(),
        pg.url(),
        ads.display().to_string()
    );
    let a = Binary::start(&resolve_to, &config).await;
    let b = Binary::start(&resolve_to, &config).await;
    let through = |replica: &Binary, user: &str, password: &str| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(replica.url()).unwrap().basic_auth(user, password))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let ad_blocked = |client: reqwest::Client| async move {
        let r = client.get("http://ads.test/ad.js").header("referer", "http://news.test/").send().await.unwrap();
        assert!(r.status().is_success() || r.status() == 403, "{}", r.status());
        r.headers().get("x-nostalk").is_some_and(|v| v == "blocked")
    };
    let (carol_a, carol_b, dave_b) = (
        through(&a, "carol", "correct horse"),
        through(&b, "carol", "correct horse"),
        through(&b, "dave", "battery staple"),
    );
    assert!(!ad_blocked(carol_b.clone()).await, "an ad is shown de-identified before any down-vote");

    // Carol down-votes the ad source on replica A's receipt page.
    let control = |client: &reqwest::Client, path: &'static str| {
        let client = client.clone();
        async move {
            let page = client.get("http://nostalk.internal/").send().await.unwrap().text().await.unwrap();
            let marker = "name=\"token\" value=\"";
            let at = page.find(marker).expect("carol's page offers her the controls") + marker.len();
            let token = page[at..at + page[at..].find('"').unwrap()].to_string();
            let form = [("token", token.as_str()), ("source", "ads.test"), ("site", "news.test")];
            let r = client.post(format!("http://nostalk.internal{path}")).form(&form).send().await.unwrap();
            assert_eq!(r.status(), 303, "{path}: {}", r.text().await.unwrap());
        }
    };
    control(&carol_a, "/ads/down").await;
    let changed = std::time::Instant::now();
    while !ad_blocked(carol_b.clone()).await {
        assert!(changed.elapsed() < Duration::from_secs(2), "replica B did not see carol's down-vote within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("replica B saw the down-vote {:?} after replica A kept it", changed.elapsed());
    assert!(ad_blocked(carol_a.clone()).await, "on replica A too");
    assert!(!ad_blocked(dave_b.clone()).await, "carol's choice is hers: dave still gets the ad de-identified");

    // What replica A learns (a value sent from two sites: a cross-site identifier) is in force
    // on replica B too: its pixel is blocked there for dave.
    let pixel_blocked = |client: reqwest::Client| async move {
        let r = client
            .get("http://sync.test/p.gif?e=view")
            .header("referer", "http://blog.test/")
            .header("sec-fetch-dest", "image")
            .send()
            .await
            .unwrap();
        r.headers().get("x-nostalk").is_some_and(|v| v == "blocked")
    };
    assert!(!pixel_blocked(dave_b.clone()).await, "nothing learned yet");
    for page in ["http://news.test/", "http://shop.test/"] {
        let r = carol_a
            .get("http://sync.test/s.js?uid=Zk29xQ7pLm3v8R")
            .header("referer", page)
            .header("sec-fetch-dest", "script")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let learned = std::time::Instant::now();
    while !pixel_blocked(dave_b.clone()).await {
        assert!(learned.elapsed() < Duration::from_secs(2), "replica B did not see what A learned within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("replica B blocked the learned tracker's pixel {:?} after replica A learned it", learned.elapsed());

    // The database stops: B serves on from the choices it last read, and says so.
    pg.stop();
    let metrics = |replica: &Binary| {
        let url = format!("{}/metrics", replica.url());
        async move {
            let r = reqwest::Client::new().get(url).bearer_auth("operators-only-token-1234").send().await.unwrap();
            r.text().await.unwrap()
        }
    };
    let stopped = std::time::Instant::now();
    loop {
        let ready = reqwest::get(format!("{}/readyz", b.url())).await.unwrap();
        assert_eq!(ready.status(), 200, "a replica stays in the balancer while the store is down");
        if ready.text().await.unwrap().contains("the choices store is unreachable") {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(15), "/readyz never said the store is down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metrics(&b).await.contains("nostalk_choices_store_up 0"));
    for _ in 0..5 {
        assert!(ad_blocked(carol_b.clone()).await, "carol's down-vote stays in force with the database down");
        assert!(!ad_blocked(dave_b.clone()).await);
        let page = dave_b.get("http://news.test/").send().await.unwrap();
        assert_eq!(page.status(), 200, "pages are served with the database down");
    }

    // Back: both replicas reconnect, and carol's restore through A reaches B.
    pg.run();
    let back = std::time::Instant::now();
    while !(metrics(&a).await.contains("nostalk_choices_store_up 1")
        && metrics(&b).await.contains("nostalk_choices_store_up 1"))
    {
        assert!(back.elapsed() < Duration::from_secs(15), "the replicas did not reconnect:\n{}", pg.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("both replicas reconnected {:?} after the database was back", back.elapsed());
    control(&carol_a, "/ads/restore").await;
    let changed = std::time::Instant::now();
    while ad_blocked(carol_b.clone()).await {
        assert!(changed.elapsed() < Duration::from_secs(2), "replica B did not see carol's restore within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
