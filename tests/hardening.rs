//! The proxy attacked as a web page or a hostile client would attack it, each case on
//! loopback: pages that try to drive or read the proxy's own pages, connections that never
//! end, tables that would grow without bound, destinations on the proxy's own host, pages
//! built to walk around the rewriter, bodies that cannot be decoded, and the smaller holes
//! (ports, names, header counts).

mod support;

use http::Response;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send raw bytes to the proxy and read what comes back until it closes or goes quiet.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Whether the peer closed `s` within `within` (reading EOF or an error).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// An address of this machine that is not loopback, for a client the access list does not
/// name; None (with a message) on a machine with loopback alone.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the interface a packet would leave by.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.254:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        eprintln!("SKIPPED: this machine has no address but loopback");
        return None;
    }
    Some(ip)
}

fn token_of(page: &str) -> String {
    let marker = "name=\"token\" value=\"";
    let rest = &page[page.find(marker).expect("the page offers the controls") + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test]
async fn a_cross_site_page_cannot_switch_shopping_on_through_the_proxy() {
    let p = Proxy::start(&[], "").await;
    // What a page on evil.test makes a browser send: a text/plain POST needs no preflight.
    let evil =
        "POST http://nostalk.localhost/shopping HTTP/1.1\r\nHost: nostalk.localhost\r\nOrigin: http://evil.test\r\n\
         Sec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\nContent-Length: 31\r\nConnection: close\r\n\r\n\
         site=evil.test&minutes=10080&x=";
    let r = raw(p.addr, evil.as_bytes()).await;
    assert_eq!(status_of(&r), 403, "{r}");
    // Without those headers (curl, a script) but also without the page's token.
    let body = "site=evil.test&minutes=10080";
    let no_token = format!(
        "POST /shopping HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        p.addr,
        body.len()
    );
    let r = raw(p.addr, no_token.as_bytes()).await;
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(p.shared.choices.shopping_left().is_empty(), "no switch was set");

    // The proxy's own page, same-origin, with its token: the switch works.
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = c.get(format!("{}/", p.url())).send().await.unwrap().text().await.unwrap();
    let form = [("site", "shop.test"), ("minutes", "30"), ("token", &token_of(&page))];
    let r = c
        .post(format!("{}/shopping", p.url()))
        .header("origin", p.url())
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(p.shared.choices.shopping_left().len(), 1);
    // The same form from another origin is refused, token or not.
    let r =
        c.post(format!("{}/shopping", p.url())).header("origin", "http://evil.test").form(&form).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_name_that_merely_resolves_to_the_proxy_gets_none_of_its_pages() {
    let p = Proxy::start_strict(&[], "").await;
    // DNS rebinding: the browser connects to the proxy's address under a page's own name.
    for path in ["/", "/metrics", "/proxy.pac"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: rebind.test:{}\r\nConnection: close\r\n\r\n", p.addr.port());
        let r = raw(p.addr, req.as_bytes()).await;
        assert_eq!(status_of(&r), 403, "{path}: {r}");
        assert!(!r.contains("Receipt") && !r.contains("nostalk_requests_total"), "{r}");
    }
    // Through the proxy, a name resolved to the proxy's own address is a destination on the
    // proxy's host, and refused like any other.
    let strict = Proxy::start_strict(&[format!("rebind.test:{0}:127.0.0.1:{0}", p.addr.port())], "").await;
    let r = strict.client(&[]).get(format!("http://rebind.test:{}/", p.addr.port())).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains("Receipt"));
    // Its own names and its address still work.
    let r = raw(p.addr, format!("GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", p.addr).as_bytes()).await;
    assert_eq!(status_of(&r), 200, "{r}");
    let via = p.client(&[]).get("http://nostalk.internal/healthz").send().await.unwrap();
    assert_eq!(via.status(), 200);
}

#[tokio::test]
async fn metrics_and_controls_are_for_admins_and_the_receipt_for_users() {
    let Some(ip) = non_loopback_ip() else { return };
    let p = Proxy::start(&[], &format!("[server]\nlisten = \"0.0.0.0:0\"\n[access]\nallow = [\"{ip}/32\"]\n")).await;
    let lan = SocketAddr::new(ip, p.addr.port());
    let local = SocketAddr::from(([127, 0, 0, 1], p.addr.port()));
    let get = |a: SocketAddr, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n");
    // A user on the LAN: the receipt, with controls for its own device alone (a household's
    // proxy, per_person), and the PAC file (naming the address it used), not the operator's
    // pages.
    let r = raw(lan, get(lan, "/").as_bytes()).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("name=\"token\"") && r.contains("change this device alone"), "{r}");
    assert_eq!(status_of(&raw(lan, get(lan, "/metrics").as_bytes()).await), 403);
    let pac = raw(lan, get(lan, "/proxy.pac").as_bytes()).await;
    assert!(pac.contains(&format!("PROXY {lan}")) && !pac.contains("PROXY 0.0.0.0"), "{pac}");
    let post = format!(
        "POST /shopping HTTP/1.1\r\nHost: {lan}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\nConnection: close\r\n\r\nsite=shop.test"
    );
    assert_eq!(status_of(&raw(lan, post.as_bytes()).await), 403, "not without the page's token");
    // The proxy's own host is not locked out by the allow list: health and operator pages.
    assert_eq!(status_of(&raw(local, get(local, "/healthz").as_bytes()).await), 200);
    assert_eq!(status_of(&raw(local, get(local, "/metrics").as_bytes()).await), 200);
    // but it is not a user: it may not forward.
    let fwd = raw(local, b"GET http://news.test/ HTTP/1.1\r\nHost: news.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&fwd), 403, "{fwd}");
}

#[tokio::test]
async fn an_admin_token_guards_metrics() {
    let p = Proxy::start(&[], "[admin]\ntoken = \"0123456789abcdef-secret\"\n").await;
    let c = reqwest::Client::new();
    assert_eq!(c.get(format!("{}/metrics", p.url())).send().await.unwrap().status(), 403);
    let r = c.get(format!("{}/metrics", p.url())).bearer_auth("0123456789abcdef-secret").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connections_that_go_quiet_are_closed() {
    let p = Proxy::start(
        &[],
        "[server]\nhandshake_timeout = \"1s\"\nidle_timeout = \"2s\"\ntunnel_idle_timeout = \"2s\"\n[intercept]\npassthrough = [\"quiet.test\"]\n",
    )
    .await;
    // CONNECT, then silence.
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    silent.write_all(b"CONNECT news.test:443 HTTP/1.1\r\nHost: news.test:443\r\n\r\n").await.unwrap();
    // CONNECT, then one byte of a TLS handshake.
    let mut one_byte = TcpStream::connect(p.addr).await.unwrap();
    one_byte.write_all(b"CONNECT news.test:443 HTTP/1.1\r\nHost: news.test:443\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    one_byte.write_all(&[0x16]).await.unwrap();
    // An HTTP/2 connection (prior knowledge) that says hello and then nothing.
    let mut h2 = TcpStream::connect(p.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // A tunnel to a passthrough host whose origin never speaks.
    let (quiet_port, held) = silent_origin().await;
    let tp = Proxy::start(
        &[format!("quiet.test:443:127.0.0.1:{quiet_port}")],
        "[server]\ntunnel_idle_timeout = \"2s\"\n[intercept]\npassthrough = [\"quiet.test\"]\n",
    )
    .await;
    let mut tunnel = TcpStream::connect(tp.addr).await.unwrap();
    tunnel.write_all(b"CONNECT quiet.test:443 HTTP/1.1\r\nHost: quiet.test:443\r\n\r\n").await.unwrap();
    let mut head = [0u8; 19];
    tunnel.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));

    let limit = Duration::from_secs(8);
    let started = Instant::now();
    let (a, b, c, d) = tokio::join!(
        closed_within(&mut silent, limit),
        closed_within(&mut one_byte, limit),
        closed_within(&mut h2, limit),
        closed_within(&mut tunnel, limit)
    );
    assert!(a, "CONNECT then silence was not closed");
    assert!(b, "CONNECT then one TLS byte was not closed");
    assert!(c, "an idle HTTP/2 connection was not closed");
    assert!(d, "an idle tunnel was not closed");
    eprintln!("four quiet connections closed within {:?}", started.elapsed());
    held.abort();
}

#[tokio::test]
async fn past_the_connection_limit_the_least_recently_active_connection_is_shed() {
    let p = Proxy::start(&[], "[server]\nmax_connections = 4\n").await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let s = TcpStream::connect(p.addr).await.unwrap();
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A fifth client is served, and the oldest idle connection is the one let go.
    let r =
        raw(p.addr, format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", p.addr).as_bytes()).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(closed_within(&mut idle[0], Duration::from_secs(3)).await, "the oldest idle connection was shed");
    assert!(!closed_within(&mut idle[3], Duration::from_millis(300)).await, "the newest is kept");
    // The open-file limit was raised to what the system allows.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(lim.rlim_cur, lim.rlim_max);
}

#[tokio::test]
async fn tables_stay_bounded_and_pages_stay_small() {
    let p = Proxy::start(&[], "").await;
    // 5,000 distinct blocked tracker hosts under one page.
    let c = p.client(&[]);
    let mut asks = Vec::new();
    for i in 0..5000 {
        let url = format!("http://t{i}.google-analytics.com/collect");
        asks.push(c.get(url).header("referer", "http://news.test/story").header("sec-fetch-dest", "image").send());
        if asks.len() == 100 {
            for r in futures_util::future::join_all(asks.drain(..)).await {
                r.unwrap();
            }
        }
    }
    let page = reqwest::get(format!("{}/", p.url())).await.unwrap().text().await.unwrap();
    assert!(page.contains("news.test"), "the site is in the receipt");
    assert!(page.contains("requests to other hosts"), "hosts past the cap are counted, not named");
    let named = page.matches(".google-analytics.com</code> &times;").count();
    assert_eq!(named, nostalk::receipt::MAX_HOSTS_PER_SITE, "at most the cap of hosts is named");
    assert!(page.len() < 64 * 1024, "the receipt page is {} bytes", page.len());
    // Many shopping switches: the table has a ceiling and says so.
    let token = token_of(&page);
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut last = 0;
    for i in 0..260 {
        let form = [("site", format!("s{i}.test")), ("minutes", "60".into()), ("token", token.clone())];
        last = c.post(format!("{}/shopping", p.url())).form(&form).send().await.unwrap().status().as_u16();
    }
    assert_eq!(last, 429);
    assert_eq!(p.shared.choices.shopping_left().len(), nostalk::ops::choices::MAX_SHOPPING);
}

#[tokio::test]
async fn a_list_file_past_the_size_cap_is_refused_with_the_key_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..100_000 {
        writeln!(f, "||tracker{i}.example^").unwrap();
    }
    drop(f);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[ca]\ndir = {:?}\n[policy]\nmax_list_mb = 1\n[[lists]]\nname = \"huge\"\npath = {:?}\n",
        dir.path().join("ca").display().to_string(),
        path.display().to_string()
    );
    let cfg = nostalk::Config::parse(&toml).unwrap();
    let Err(e) = nostalk::Server::bind(cfg).await else { panic!("a 2 MB list past a 1 MB cap must be refused") };
    assert!(e.to_string().contains("max_list_mb"), "{e}");
}

#[tokio::test]
async fn nothing_on_the_proxys_own_host_is_reachable_through_it() {
    let o = static_origin(None, "text/plain", "a service bound to loopback\n").await;
    let port = o.port();
    let p = Proxy::start_strict(&[], "").await;
    for host in
        ["127.0.0.1".to_string(), "2130706433".into(), "0".into(), "localhost".into(), "[::ffff:127.0.0.1]".into()]
    {
        let req = format!("GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        let r = raw(p.addr, req.as_bytes()).await;
        assert_eq!(status_of(&r), 403, "{host}: {r}");
        assert!(!r.contains("bound to loopback"), "{host}: {r}");
    }
    assert_eq!(o.count(), 0, "the loopback service saw nothing");
    // CONNECT: only to the allowed ports, and never to the proxy's host, tunnelled or not.
    let r = raw(p.addr, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n").await;
    assert_eq!(status_of(&r), 403, "{r}");
    let r = raw(p.addr, b"CONNECT news.test:8443 HTTP/1.1\r\nHost: news.test:8443\r\n\r\n").await;
    assert_eq!(status_of(&r), 403, "{r}");
    let off = Proxy::start_strict(&[format!("db.test:443:127.0.0.1:{port}")], "[intercept]\nenabled = false\n").await;
    for target in ["127.0.0.1:443", "db.test:443"] {
        let r = raw(off.addr, format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&r), 403, "{target}: {r}");
    }
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_oversized_token_does_not_stop_the_cleaning_after_it() {
    let padding = "x".repeat(3 * 1024 * 1024);
    let page: &'static str = Box::leak(
        format!(
            "<!doctype html><html><head><title>t</title></head><body><a title=\"{padding}\" href=\"/a\">a</a>\n\
             <script>(function(i,s,o,g,r,a,m){{i['GoogleAnalyticsObject']=r;}})(window,document,'script','//www.google-analytics.com/analytics.js','ga');ga('create','UA-1','auto');</script>\n\
             <img src=\"https://www.facebook.com/tr?id=1&ev=PageView\" width=\"1\" height=\"1\">\n\
             <a href=\"/next?id=2&utm_source=feed\" ping=\"https://log.news.test/p\">Next</a>\n<p>the end</p></body></html>"
        )
        .into_boxed_str(),
    );
    let o = static_origin(None, "text/html; charset=utf-8", page).await;
    let p = Proxy::start(&[resolve("padded.test", 80, &o)], "").await;
    let r = p.client(&[]).get("http://padded.test/").header("sec-fetch-dest", "document").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&padding), "the oversized token passes whole");
    assert!(html.ends_with("<p>the end</p></body></html>"), "the page is whole");
    assert!(!html.contains("GoogleAnalyticsObject"), "the snippet after the padding is removed");
    assert!(!html.contains("facebook.com/tr"), "the pixel after the padding is removed");
    assert!(!html.contains("ping="), "the ping after the padding is removed");
    assert!(html.contains("/next?id=2\""), "the link after the padding is cleaned");
}

#[tokio::test]
async fn a_body_that_cannot_be_decoded_is_a_502_and_the_next_request_is_served() {
    let o = origin(
        None,
        handler(|req| async move {
            if req.uri().path() == "/broken" {
                Response::builder()
                    .header("content-type", "text/html")
                    .header("content-encoding", "br")
                    .body(body(&b"this is not brotli at all, just bytes \x00\x01\x02"[..]))
                    .unwrap()
            } else {
                Response::builder().header("content-type", "text/plain").body(body("fine\n")).unwrap()
            }
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("broken.test", 80, &o)], "").await;
    let two = b"GET http://broken.test/broken HTTP/1.1\r\nHost: broken.test\r\nAccept-Encoding: br\r\n\r\n\
                GET http://broken.test/ok HTTP/1.1\r\nHost: broken.test\r\nConnection: close\r\n\r\n";
    let r = raw(p.addr, two).await;
    assert_eq!(status_of(&r), 502, "{r}");
    assert!(r.contains("could not be decoded"), "{r}");
    assert!(r.contains("fine\n"), "the pipelined request is served: {r}");
}

#[tokio::test]
async fn bad_ports_names_and_header_counts() {
    let o = static_origin(None, "text/plain", "ok\n").await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    for target in ["http://news.test:99999/", "http://news.test:abc/", "http://news.test:0/"] {
        let r =
            raw(p.addr, format!("GET {target} HTTP/1.1\r\nHost: news.test\r\nConnection: close\r\n\r\n").as_bytes())
                .await;
        assert_eq!(status_of(&r), 400, "{target}: {r}");
    }
    for target in ["news.test:99999", "*.test:443"] {
        let r = raw(p.addr, format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await;
        assert_eq!(status_of(&r), 400, "{target}: {r}");
    }
    assert_eq!(o.count(), 0);
    // A browser with many cookies and client hints: 150 headers pass; 300 are a 431.
    let many = |n: usize| {
        let mut req = "GET http://news.test/ HTTP/1.1\r\nHost: news.test\r\nConnection: close\r\n".to_string();
        for i in 0..n {
            req.push_str(&format!("x-h{i}: {i}\r\n"));
        }
        req + "\r\n"
    };
    assert_eq!(status_of(&raw(p.addr, many(150).as_bytes()).await), 200);
    assert_eq!(status_of(&raw(p.addr, many(300).as_bytes()).await), 431);
}

#[tokio::test]
async fn the_pac_file_fails_closed_unless_told_to_go_direct() {
    let p = Proxy::start(&[], "").await;
    let pac = reqwest::get(format!("{}/proxy.pac", p.url())).await.unwrap().text().await.unwrap();
    assert!(pac.contains(&format!("return \"PROXY {}\";", p.addr)), "{pac}");
    let p = Proxy::start(&[], "[server]\npac_fallback = \"direct\"\n").await;
    let pac = reqwest::get(format!("{}/proxy.pac", p.url())).await.unwrap().text().await.unwrap();
    assert!(pac.contains(&format!("return \"PROXY {}; DIRECT\";", p.addr)), "{pac}");
}

#[tokio::test]
async fn a_pac_file_names_the_address_its_client_reached_never_the_wildcard_and_no_direct() {
    // Listening on every address, as on a router; the client reaches one of them (127.0.0.3
    // stands for the router's LAN address: any 127/8 address reaches this machine).
    let p = Proxy::start(&[], "[server]\nlisten = \"0.0.0.0:0\"\n").await;
    let port = p.addr.port();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for head in [
        format!("GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.3:{port}\r\nConnection: close\r\n\r\n"),
        "GET /proxy.pac HTTP/1.0\r\n\r\n".to_string(),
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.3", port)).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut pac = String::new();
        s.read_to_string(&mut pac).await.unwrap();
        assert!(pac.contains(&format!("return \"PROXY 127.0.0.3:{port}\";")), "{pac}");
        assert!(!pac.contains("PROXY 0.0.0.0") && !pac.contains("; DIRECT"), "no fallback to going direct: {pac}");
    }
}
