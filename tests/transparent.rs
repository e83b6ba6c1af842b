//! Transparent interception, as a router's LAN meets it: connections a firewall redirected
//! (port 80 to `[transparent] http`, 443 to `[transparent] https`) arrive with no proxy
//! request at all, and are cleaned like proxied ones: trackers kept off, tracking parameters
//! stripped, HTTPS intercepted by the name the client asked for, passthrough hosts spliced
//! untouched with their own certificate.

mod support;

use std::time::Duration;
use support::{handler, origin, resolve, static_origin, OriginCa, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn echo() -> support::Handler {
    handler(|req| async move { http::Response::new(support::body(format!("page {}", req.uri()))) })
}

/// What a client whose port-80 traffic was redirected gets for `head` (no proxy request:
/// origin-form, with a Host).
async fn redirected_http(port: u16, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn redirected_plain_http_is_cleaned_like_proxied_http() {
    let site = origin(None, echo()).await;
    let tracker = static_origin(None, "application/javascript", "track()").await;
    let port = free_port();
    let p = Proxy::start(
        &[resolve("site.test", 80, &site), resolve("www.google-analytics.com", 80, &tracker)],
        &format!("[transparent]\nhttp = \"127.0.0.1:{port}\"\n"),
    )
    .await;
    let answer = redirected_http(
        port,
        "GET /story?id=7&utm_source=mail&fbclid=abc HTTP/1.1\r\nHost: site.test\r\nCookie: a=b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("page /story?id=7"), "tracking parameters stripped on the way: {answer}");
    let answer = redirected_http(
        port,
        "GET /analytics.js HTTP/1.1\r\nHost: www.google-analytics.com\r\nSec-Fetch-Dest: script\r\nReferer: http://site.test/story\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains("x-nostalk: blocked"), "{answer}");
    assert_eq!(tracker.count(), 0, "the tracker got nothing");
    // The proxy's own pages answer only to its own names there too.
    let answer =
        redirected_http(port, "GET /healthz HTTP/1.1\r\nHost: nostalk.internal\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
    p.stop().await;
}

#[tokio::test]
async fn redirected_tls_is_intercepted_by_its_server_name_and_passthrough_hosts_keep_their_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let news = origin(Some(ca.server_config(&["news.test"])), echo()).await;
    let bank = origin(Some(ca.server_config(&["bank.test"])), echo()).await;
    let tracker = static_origin(Some(ca.server_config(&["www.google-analytics.com"])), "text/plain", "").await;
    let port = free_port();
    let extra = format!(
        "[transparent]\nhttps = \"127.0.0.1:{port}\"\n[intercept]\npassthrough = [\"bank.test\"]\n[upstream]\nextra_roots = [{:?}]\n",
        ca.pem_path.display().to_string()
    );
    let p = Proxy::start(
        &[
            resolve("news.test", 443, &news),
            resolve("bank.test", 443, &bank),
            resolve("www.google-analytics.com", 443, &tracker),
        ],
        &extra,
    )
    .await;
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // A client that knows nothing of a proxy: its connection to news.test:443 lands here.
    let client = |root: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .resolve("news.test", at)
            .resolve("bank.test", at)
            .resolve("www.google-analytics.com", at)
            .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let through_nostalk = client(&p.ca_pem);
    let r = through_nostalk.get(format!("https://news.test:{port}/a?utm_medium=x&q=1")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.ends_with("/a?q=1"), "intercepted and cleaned: {text}");
    // A tracker's host is intercepted too, and each request in it decided: the beacon gets its
    // empty answer from nostalk and never reaches the tracker.
    let r = through_nostalk
        .post(format!("https://www.google-analytics.com:{port}/g/collect?v=2&cid=4711"))
        .header("sec-fetch-dest", "empty")
        .header("referer", "https://news.test/")
        .body("en=page_view")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers().get("x-nostalk").map(|v| v.to_str().unwrap())),
        (204, Some("blocked"))
    );
    assert_eq!(tracker.count(), 0);
    // bank.test is spliced untouched: the client sees the bank's own certificate.
    let own_ca_only = client(&ca.pem);
    let r = own_ca_only.get(format!("https://bank.test:{port}/login?utm_source=x")).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.ends_with("/login?utm_source=x"), "nothing changed inside a passthrough tunnel: {text}");
    // A hello without a server name cannot be placed: closed, nothing forwarded.
    let before = news.count() + bank.count();
    let mut raw = tokio::net::TcpStream::connect(at).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: news.test\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut buf)).await.unwrap();
    assert_eq!(news.count() + bank.count(), before);
    p.stop().await;
}
