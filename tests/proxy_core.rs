//! The forwarding proxy core, end to end: plain HTTP, CONNECT tunnels, interception, large
//! bodies, keep-alive, HTTP/2 both sides, WebSocket, error answers, streaming, local pages.

mod support;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use std::time::{Duration, Instant};
use support::*;

fn echo_handler() -> Handler {
    handler(|req| async move {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let data = req.into_body().collect().await.unwrap().to_bytes();
        let text = format!("{method} {path} {} {}", data.len(), sha256_hex(&data));
        Response::builder().header("content-type", "text/plain").body(body(text)).unwrap()
    })
}

#[tokio::test]
async fn plain_http_get_and_post_reach_the_origin() {
    let o = origin(None, echo_handler()).await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    let c = p.client(&[]);
    let r = c.get("http://news.test/hello").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), format!("GET /hello 0 {}", sha256_hex(b"")));
    let r = c.post("http://news.test/form").body("a=1&b=2").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("POST /form 7 {}", sha256_hex(b"a=1&b=2")));
    // curl too, as a user would.
    let (ok, out, err) = curl(&["-x", &p.url(), "-d", "x=y", "http://news.test/curl"]).await;
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), format!("POST /curl 3 {}", sha256_hex(b"x=y")));
    // No header that identifies the user was added.
    let seen = o.seen();
    assert!(seen.iter().all(|s| s.header("via").is_none() && s.header("x-forwarded-for").is_none()));
    assert!(seen.iter().all(|s| s.header("proxy-connection").is_none()));
    assert_eq!(seen[0].header("sec-gpc").as_deref(), Some("1"));
}

#[tokio::test]
async fn https_through_a_tunnel_for_passthrough_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let o = origin(Some(ca.server_config(&["bank.test"])), echo_handler()).await;
    let p = Proxy::start(&[resolve("bank.test", 443, &o)], "[intercept]\npassthrough = [\"bank.test\"]\n").await;
    // The client trusts only the origin's CA: the tunnel must carry the origin's own certificate.
    let c = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(p.url()).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = c.post("https://bank.test/pay").body("10").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("POST /pay 2 {}", sha256_hex(b"10")));
    let (ok, out, err) =
        curl(&["-x", &p.url(), "--cacert", ca.pem_path.to_str().unwrap(), "https://bank.test/curl"]).await;
    assert!(ok, "{err}");
    assert!(String::from_utf8(out).unwrap().starts_with("GET /curl 0"));
}

#[tokio::test]
async fn interception_off_tunnels_every_connect() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let o = origin(Some(ca.server_config(&["shop.test"])), echo_handler()).await;
    let p = Proxy::start(&[resolve("shop.test", 443, &o)], "[intercept]\nenabled = false\n").await;
    assert!(p.ca_pem.is_empty(), "no CA is made when interception is off");
    let (ok, out, err) =
        curl(&["-x", &p.url(), "--cacert", ca.pem_path.to_str().unwrap(), "https://shop.test/x"]).await;
    assert!(ok, "{err}");
    assert!(String::from_utf8(out).unwrap().starts_with("GET /x 0"));
}

/// An HTTPS origin for `host` (h2 or http/1.1 by ALPN) with a certificate from a test CA, and
/// the proxy trusting that CA upstream; `upstream` adds lines to `[upstream]`. The directory
/// holds the CA and must live as long as the test.
async fn https_origin_and_proxy(host: &str, h: Handler, upstream: &str) -> (tempfile::TempDir, Origin, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let o = origin(Some(ca.server_config(&[host])), h).await;
    let extra = format!("[upstream]\n{upstream}extra_roots = [{:?}]\n", ca.pem_path.display().to_string());
    let p = Proxy::start(&[resolve(host, 443, &o)], &extra).await;
    (dir, o, p)
}

#[tokio::test]
async fn intercepted_https_get_and_post_with_upstream_verified_by_extra_roots() {
    let (_dir, _origin, p) = https_origin_and_proxy("news.test", echo_handler(), "").await;
    // The client trusts only nostalk's CA: it sees nostalk's leaf.
    let c = p.client(&[]);
    let r = c.get("https://news.test/a").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("GET /a 0 {}", sha256_hex(b"")));
    let r = c.post("https://news.test/b").body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("POST /b 1000 {}", sha256_hex(&[7u8; 1000])));
    let (ok, out, err) =
        curl(&["-x", &p.url(), "--cacert", p.ca_path().to_str().unwrap(), "https://news.test/curl"]).await;
    assert!(ok, "{err}");
    assert!(String::from_utf8(out).unwrap().starts_with("GET /curl 0"));
}

/// An origin that takes a POST's body whole and answers its length and SHA-256, and streams
/// `download` to a GET in 64 KB chunks.
fn upload_download_handler(download: Bytes) -> Handler {
    handler(move |req| {
        let dl = download.clone();
        async move {
            if req.method() == http::Method::POST {
                let data = req.into_body().collect().await.unwrap().to_bytes();
                return Response::new(body(format!("{} {}", data.len(), sha256_hex(&data))));
            }
            let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> =
                dl.chunks(64 * 1024).map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c)))).collect();
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))))
                .unwrap()
        }
    })
}

const BIG: usize = 20 * 1024 * 1024;

fn big_body() -> (Bytes, String) {
    let big: Bytes = (0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let sha = sha256_hex(&big);
    (big, sha)
}

#[tokio::test]
async fn twenty_megabytes_each_way_keep_their_sha256() {
    let (big, big_sha) = big_body();
    let o = origin(None, upload_download_handler(big.clone())).await;
    let p = Proxy::start(&[resolve("files.test", 80, &o)], "").await;
    let c = p.client(&[]);
    let r = c.post("http://files.test/up").body(big.clone()).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), format!("{BIG} {big_sha}"));
    let r = c.get("http://files.test/down").send().await.unwrap();
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), BIG);
    assert_eq!(sha256_hex(&got), big_sha);
    // A chunked upload from curl, with Expect: 100-continue.
    let path = p.dir.path().join("big.bin");
    std::fs::write(&path, &big).unwrap();
    let (ok, out, err) = curl(&[
        "-x",
        &p.url(),
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", path.display()),
        "http://files.test/up",
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), format!("{BIG} {big_sha}"));
}

#[tokio::test]
async fn twenty_megabytes_each_way_over_intercepted_https_to_an_h2_origin() {
    let (big, big_sha) = big_body();
    let (_dir, o, p) = https_origin_and_proxy("files.test", upload_download_handler(big.clone()), "").await;
    // Two at once each way, so the streams share the connection's flow-control window.
    let c = p.client(&[]);
    let up = |path: &'static str| c.post(format!("https://files.test/{path}")).body(big.clone()).send();
    let down = |path: &'static str| c.get(format!("https://files.test/{path}")).send();
    let (u1, u2, d1, d2) = tokio::join!(up("up1"), up("up2"), down("down1"), down("down2"));
    for u in [u1, u2] {
        assert_eq!(u.unwrap().text().await.unwrap(), format!("{BIG} {big_sha}"));
    }
    for d in [d1, d2] {
        let got = d.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), BIG);
        assert_eq!(sha256_hex(&got), big_sha);
    }
    assert!(o.seen().iter().all(|s| s.version == http::Version::HTTP_2));
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection() {
    let o = static_origin(None, "text/plain", "ok").await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    let c = p.client(&[]);
    for i in 0..20 {
        let r = c.get(format!("http://news.test/{i}")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(o.count(), 20);
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one upstream connection for 20 requests");
    assert_eq!(p.shared.metrics.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one client connection too");
}

#[tokio::test]
async fn bodiless_answers_give_their_upstream_connection_back() {
    // HEAD, 204 and 304 have no body for the client to read to its end: their connection
    // must go back to the pool all the same, not be dropped and dialled again.
    let o = origin(
        None,
        handler(|req| async move {
            let status = match req.uri().path() {
                "/none" => 204,
                "/same" => 304,
                _ => 200,
            };
            Response::builder().status(status).body(body(if status == 200 { "full" } else { "" })).unwrap()
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    let c = p.client(&[]);
    for _ in 0..3 {
        assert_eq!(c.head("http://news.test/page").send().await.unwrap().status(), 200);
        assert_eq!(c.get("http://news.test/none").send().await.unwrap().status(), 204);
        assert_eq!(c.get("http://news.test/same").send().await.unwrap().status(), 304);
        assert_eq!(c.get("http://news.test/page").send().await.unwrap().text().await.unwrap(), "full");
    }
    assert_eq!(o.count(), 12);
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one upstream connection for 12 requests");
    assert_eq!(p.shared.upstream.h1_idle_connections(), 1);
}

#[tokio::test]
async fn an_idle_http1_connection_is_let_go_after_the_idle_timeout() {
    let o = static_origin(None, "text/plain", "ok").await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "[upstream]\nidle_timeout = \"1s\"\n").await;
    let c = p.client(&[]);
    assert_eq!(c.get("http://news.test/a").send().await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(p.shared.upstream.h1_idle_connections(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.shared.upstream.h1_idle_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(p.shared.upstream.h1_idle_connections(), 0, "the idle connection was dropped");
    assert_eq!(c.get("http://news.test/b").send().await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 2, "a new connection after the idle one went");
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_costs_only_that_upstream_connection() {
    let big = Bytes::from(vec![b'x'; 8 << 20]);
    let o = origin(
        None,
        handler(move |req| {
            let big = big.clone();
            async move {
                let b = if req.uri().path() == "/big" { big } else { Bytes::from_static(b"small") };
                Response::builder().header("content-type", "application/octet-stream").body(body(b)).unwrap()
            }
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    {
        let c = p.client(&[]);
        let mut r = c.get("http://news.test/big").send().await.unwrap();
        let first = r.chunk().await.unwrap().unwrap();
        assert!(!first.is_empty());
        // Dropped here, with most of 8 MB unread.
    }
    let c = p.client(&[]);
    for _ in 0..3 {
        assert_eq!(c.get("http://news.test/small").send().await.unwrap().text().await.unwrap(), "small");
    }
    assert_eq!(
        o.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the half-read connection is not reused; one new connection serves the rest"
    );
}

/// What a hand-written origin does after its one answer on a connection.
#[derive(Clone, Copy)]
enum AfterAnswer {
    /// Closes the socket a moment later, without a word.
    Close,
    /// Keeps the connection open, reading (and ignoring) whatever comes, until the peer leaves.
    Listen,
}

/// An origin that answers the first request head on each connection with
/// `connection N` (keep-alive implied), without reading any body, then does `after`.
/// Returns its address and how many connections it has taken.
async fn one_answer_origin(
    after: AfterAnswer,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let text = format!("connection {n}");
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len());
                let _ = s.write_all(answer.as_bytes()).await;
                match after {
                    AfterAnswer::Close => tokio::time::sleep(Duration::from_millis(50)).await,
                    AfterAnswer::Listen => while matches!(s.read(&mut buf).await, Ok(k) if k > 0) {},
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_kept_connection_the_origin_closed_without_a_word_is_replaced() {
    use std::sync::atomic::Ordering;
    // An origin that answers one request per connection with keep-alive implied, then closes
    // the socket: the proxy's kept connection is dead when the next request comes.
    let (addr, connections) = one_answer_origin(AfterAnswer::Close).await;
    let p = Proxy::start(&[format!("news.test:80:{addr}")], "").await;
    let c = p.client(&[]);
    for i in 1..=4 {
        let r = c.get(format!("http://news.test/{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert!(r.text().await.unwrap().starts_with("connection "));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 4, "a new connection for each, no request lost");
}

#[tokio::test]
async fn an_answer_that_came_before_its_upload_ended_does_not_hold_up_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An origin that answers as soon as it has a request's head, without reading its body, and
    // keeps the connection open. A client that then stalls mid-upload keeps that connection
    // busy sending; the next request to the origin must not wait for it.
    let (addr, connections) = one_answer_origin(AfterAnswer::Listen).await;
    let p = Proxy::start(&[format!("news.test:80:{addr}")], "").await;
    let mut uploader = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    uploader
        .write_all(
            b"POST http://news.test/upload HTTP/1.1\r\nhost: news.test\r\ncontent-length: 1000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).ends_with("connection 1") {
        let k = tokio::time::timeout(Duration::from_secs(10), uploader.read(&mut buf)).await.unwrap().unwrap();
        assert!(k > 0, "the proxy closed the uploader's connection");
        answer.extend_from_slice(&buf[..k]);
    }
    // The uploader stays, with 990 bytes unsent.
    let c = p.client(&[]);
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        c.get("http://news.test/next").send().await.unwrap().text().await.unwrap()
    })
    .await
    .expect("the next request was held up by the stalled upload");
    assert_eq!(next, "connection 2", "answered on a connection of its own");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(uploader);
}

#[tokio::test]
async fn http2_to_the_client_and_to_the_upstream() {
    let (_dir, o, p) = https_origin_and_proxy("news.test", echo_handler(), "").await;
    let c = p.client(&[]);
    let r = c.get("https://news.test/h2").send().await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2, "the browser side speaks h2 via ALPN");
    assert!(r.text().await.unwrap().starts_with("GET /h2"));
    assert_eq!(o.seen()[0].version, http::Version::HTTP_2, "the upstream side speaks h2 via ALPN");
}

#[tokio::test]
async fn requests_to_an_h2_origin_share_one_connection_even_when_they_arrive_together() {
    let (_dir, o, p) = https_origin_and_proxy("news.test", echo_handler(), "").await;
    // Separate clients, so the requests come on separate client connections, all at once,
    // before any upstream connection exists.
    let clients: Vec<_> = (0..16).map(|_| p.client(&[])).collect();
    let answers = futures_util::future::join_all(
        clients.iter().enumerate().map(|(i, c)| async move { c.get(format!("https://news.test/{i}")).send().await }),
    )
    .await;
    for (i, r) in answers.into_iter().enumerate() {
        let text = r.unwrap().text().await.unwrap();
        assert!(text.starts_with(&format!("GET /{i} 0 ")), "{text}");
    }
    let seen = o.seen();
    assert_eq!(seen.len(), 16);
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_2));
    assert_eq!(
        o.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one h2 connection upstream for 16 requests"
    );
    assert_eq!(p.shared.upstream.h2_connections(), 1);
}

#[tokio::test]
async fn an_idle_h2_connection_is_let_go_after_the_idle_timeout() {
    let (_dir, o, p) = https_origin_and_proxy("news.test", echo_handler(), "idle_timeout = \"1s\"\n").await;
    let c = p.client(&[]);
    assert_eq!(c.get("https://news.test/a").send().await.unwrap().status(), 200);
    assert_eq!(p.shared.upstream.h2_connections(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.shared.upstream.h2_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(p.shared.upstream.h2_connections(), 0, "the idle connection was dropped");
    assert_eq!(c.get("https://news.test/b").send().await.unwrap().status(), 200);
    assert_eq!(o.connections.load(std::sync::atomic::Ordering::SeqCst), 2, "a new connection after the idle one went");
}

#[tokio::test]
async fn an_https_origin_without_h2_is_reached_over_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let mut cfg = (*ca.server_config(&["news.test"])).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let o = origin(Some(std::sync::Arc::new(cfg)), echo_handler()).await;
    let extra = format!("[upstream]\nextra_roots = [{:?}]\n", ca.pem_path.display().to_string());
    let p = Proxy::start(&[resolve("news.test", 443, &o)], &extra).await;
    let c = p.client(&[]);
    for i in 0..3 {
        let r = c.get(format!("https://news.test/h1/{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().starts_with(&format!("GET /h1/{i} 0 ")));
    }
    assert!(o.seen().iter().all(|s| s.version == http::Version::HTTP_11));
    assert_eq!(p.shared.upstream.h2_connections(), 0);
    assert_eq!(
        o.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one connection: the dial that found no h2 is kept for HTTP/1.1, not dialed again"
    );
    assert_eq!(p.shared.upstream.h1_idle_connections(), 1);
}

#[tokio::test]
async fn plain_and_tls_connections_to_the_same_host_and_port_are_kept_apart() {
    // https://news.test:8443 is a TLS origin (HTTP/1.1 only). After a request to it leaves a
    // kept TLS connection, http://news.test:8443 (the same authority) must not be sent on
    // that connection: it is dialled in the clear, and the TLS origin cannot answer it.
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let mut cfg = (*ca.server_config(&["news.test"])).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let o = origin(Some(std::sync::Arc::new(cfg)), handler(|_| async { Response::new(body("over tls")) })).await;
    let extra = format!(
        "[upstream]\nextra_roots = [{:?}]\n[intercept]\nconnect_ports = [443, 8443]\n",
        ca.pem_path.display().to_string()
    );
    let p = Proxy::start(&[format!("news.test:8443:{}", o.addr)], &extra).await;
    let c = p.client(&[]);
    assert_eq!(c.get("https://news.test:8443/").send().await.unwrap().text().await.unwrap(), "over tls");
    assert_eq!(p.shared.upstream.h1_idle_connections(), 1);
    let r = c.get("http://news.test:8443/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "the plain request did not ride the TLS connection");
    assert_eq!(c.get("https://news.test:8443/").send().await.unwrap().text().await.unwrap(), "over tls");
}

#[tokio::test]
async fn an_https_origin_that_was_down_is_served_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    // A port with nothing on it yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let extra = format!("[upstream]\nextra_roots = [{:?}]\n", ca.pem_path.display().to_string());
    let p = Proxy::start(&[format!("news.test:443:{addr}")], &extra).await;
    let c = p.client(&[]);
    let r = c.get("https://news.test/down").send().await.unwrap();
    assert_eq!(r.status(), 502, "refused while the origin is down");
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let o = origin_on(listener, Some(ca.server_config(&["news.test"])), echo_handler());
    let r = c.get("https://news.test/up").send().await.unwrap();
    assert_eq!(r.status(), 200, "served as soon as it is back");
    assert!(r.text().await.unwrap().starts_with("GET /up 0 "));
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn an_h2_origin_that_closes_its_connection_is_dialled_again() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let tls = tokio_rustls::TlsAcceptor::from(ca.server_config(&["news.test"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    // Each connection answers one request, then says GOAWAY and closes.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = conns.fetch_add(1, Ordering::SeqCst) + 1;
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else { return };
                let served = std::sync::Arc::new(tokio::sync::Notify::new());
                let s2 = served.clone();
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    s2.notify_one();
                    let text = format!("connection {n} {}", req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(Response::new(body(text))) }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = served.notified() => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    let extra = format!("[upstream]\nextra_roots = [{:?}]\n", ca.pem_path.display().to_string());
    let p = Proxy::start(&[format!("news.test:443:{addr}")], &extra).await;
    let c = p.client(&[]);
    for i in 1..=3 {
        let r = c.get(format!("https://news.test/{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        let text = r.text().await.unwrap();
        assert!(text.ends_with(&format!(" /{i}")), "{text}");
        // Let the GOAWAY reach the proxy before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connections.load(Ordering::SeqCst) >= 3, "a new connection after each GOAWAY");
}

#[tokio::test]
async fn websocket_echo_through_connect() {
    use futures_util::SinkExt;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else { return };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let _ = ws.send(m).await;
                    }
                }
            });
        }
    });
    let p = Proxy::start(&[format!("chat.test:80:127.0.0.1:{ws_port}")], "").await;
    // As browsers do for ws:// through a proxy: CONNECT, then the handshake inside.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"CONNECT chat.test:80 HTTP/1.1\r\nHost: chat.test:80\r\n\r\n").await.unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let (mut ws, _) = tokio_tungstenite::client_async("ws://chat.test/echo", reader.into_inner()).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello through nostalk")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.into_text().unwrap().as_str(), "hello through nostalk");
}

#[tokio::test]
async fn malformed_requests_get_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = Proxy::start(&[], "").await;
    for raw in [&b"GET ftp://files.test/x HTTP/1.1\r\nHost: files.test\r\n\r\n"[..], b"THIS IS NOT HTTP\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
}

#[tokio::test]
async fn unreachable_upstream_gets_502_page() {
    // A port that was free a moment ago and is closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let p = Proxy::start(&[format!("gone.test:80:127.0.0.1:{port}")], "").await;
    let r = p.client(&[]).get("http://gone.test/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let text = r.text().await.unwrap();
    assert!(text.contains("502") && text.contains("gone.test"), "{text}");
}

#[tokio::test]
async fn slow_upstream_gets_504_page() {
    let o = origin(
        None,
        handler(|_req| async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Response::new(body("late"))
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("slow.test", 80, &o)], "[upstream]\nresponse_timeout = \"1s\"\n").await;
    let started = Instant::now();
    let r = p.client(&[]).get("http://slow.test/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(4), "answered at the timeout, not when the origin was done");
    assert!(r.text().await.unwrap().contains("did not answer"));
}

#[tokio::test]
async fn untrusted_upstream_certificate_gets_502_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let untrusted = OriginCa::new(dir.path());
    let o = origin(Some(untrusted.server_config(&["evil.test"])), echo_handler()).await;
    let p = Proxy::start(&[resolve("evil.test", 443, &o)], "").await;
    let r = p.client(&[]).get("https://evil.test/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let text = r.text().await.unwrap();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("UnknownIssuer") || text.contains("unknown issuer"), "{text}");
}

#[tokio::test]
async fn first_chunk_reaches_the_client_before_the_origin_finishes() {
    let o = origin(
        None,
        handler(|_req| async {
            let s = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => {
                        Some((Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"first chunk\n"))), 1))
                    }
                    1 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        Some((Ok(http_body::Frame::data(Bytes::from_static(b"the rest\n"))), 2))
                    }
                    _ => None,
                }
            });
            Response::builder().header("content-type", "text/plain").body(BodyExt::boxed(StreamBody::new(s))).unwrap()
        }),
    )
    .await;
    let p = Proxy::start(&[resolve("stream.test", 80, &o)], "").await;
    let started = Instant::now();
    let r = p.client(&[]).get("http://stream.test/").send().await.unwrap();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"first chunk\n");
    assert!(first_at < Duration::from_millis(500), "first chunk after {first_at:?}");
    let mut rest = Vec::new();
    while let Some(c) = stream.next().await {
        rest.extend_from_slice(&c.unwrap());
    }
    assert_eq!(rest, b"the rest\n");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn the_proxy_serves_its_own_pages() {
    let p = Proxy::start(&[], "").await;
    let c = reqwest::Client::new();
    let pac = c.get(format!("{}/proxy.pac", p.url())).send().await.unwrap();
    assert_eq!(pac.headers()["content-type"], "application/x-ns-proxy-autoconfig");
    assert!(pac.text().await.unwrap().contains(&format!("PROXY {}", p.addr)));
    let ca = c.get(format!("{}/ca.pem", p.url())).send().await.unwrap().text().await.unwrap();
    assert_eq!(ca, p.ca_pem);
    let status = c.get(format!("{}/", p.url())).send().await.unwrap().text().await.unwrap();
    assert!(status.contains("nostalk") && status.contains("Your receipt"));
    assert_eq!(c.get(format!("{}/healthz", p.url())).send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("{}/readyz", p.url())).send().await.unwrap().status(), 200);
    let m = c.get(format!("{}/metrics", p.url())).send().await.unwrap().text().await.unwrap();
    // Six requests so far, this one included: each counted once.
    assert!(m.lines().any(|l| l == "nostalk_requests_total 6"), "{m}");
    // Through the proxy, by name.
    let via = p.client(&[]).get("http://nostalk.localhost/proxy.pac").send().await.unwrap();
    assert_eq!(via.status(), 200);
    assert_eq!(c.get(format!("{}/nope", p.url())).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn clients_outside_the_access_list_are_refused() {
    // This machine's own loopback is never locked out (health checks), but it is not a user
    // of a proxy whose list names others: it cannot forward.
    let p = Proxy::start(&[], "[access]\nallow = [\"10.9.9.0/24\"]\n").await;
    let r = reqwest::Client::new().get(format!("{}/healthz", p.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = p.client(&[]).get("http://news.test/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A client from another machine outside the list is refused at the door.
    let Ok(udp) = std::net::UdpSocket::bind("0.0.0.0:0") else { return };
    let lan = udp.connect("10.255.255.254:9").ok().and_then(|()| udp.local_addr().ok()).map(|a| a.ip());
    let Some(ip) = lan.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) else {
        eprintln!("SKIPPED (in part): this machine has no address but loopback");
        return;
    };
    let p = Proxy::start(&[], "[server]\nlisten = \"0.0.0.0:0\"\n[access]\nallow = [\"10.9.9.0/24\"]\n").await;
    let r = reqwest::Client::new().get(format!("http://{ip}:{}/healthz", p.addr.port())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_readyz_is_503_while_requests_in_flight_finish_then_the_listener_closes() {
    let o = origin(
        None,
        handler(|_req| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::new(body("the slow page"))
        }),
    )
    .await;
    let mut p = Proxy::start(&[resolve("slow.test", 80, &o)], "[server]\nshutdown_grace = \"10s\"\n").await;
    let client = p.client(&[]);
    let in_flight = tokio::spawn(async move { client.get("http://slow.test/").send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.begin_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = reqwest::Client::new();
    let ready = probe.get(format!("{}/readyz", p.url())).send().await.expect("the listener still answers");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "a load balancer sees the replica leave");
    assert_eq!(probe.get(format!("{}/healthz", p.url())).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(in_flight.await.unwrap().unwrap(), "the slow page", "the request in flight finished");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(p.addr).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(5), "the listener closes once the requests drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_parse_and_count_what_the_traffic_did() {
    const PAGE: &str = "<html><head><script src=\"https://static.chartbeat.com/js/chartbeat.js\"></script></head><body>news</body></html>";
    let o = static_origin(None, "text/html", PAGE).await;
    let p = Proxy::start(&[resolve("news.test", 80, &o)], "").await;
    let c = p.client(&[]);
    let page = c.get("http://news.test/story").header("sec-fetch-dest", "document").send().await.unwrap();
    assert!(!page.text().await.unwrap().contains("chartbeat"));
    let tracker = c
        .get("http://www.google-analytics.com/collect?v=1")
        .header("sec-fetch-dest", "image")
        .header("referer", "http://news.test/story")
        .send()
        .await
        .unwrap();
    assert_eq!(tracker.headers()["x-nostalk"], "blocked");

    let text = reqwest::Client::new().get(format!("{}/metrics", p.url())).send().await.unwrap().text().await.unwrap();
    // Every line is a HELP or TYPE comment or a sample: a name, labels maybe, a number.
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = key.split('{').next().unwrap();
        assert!(name.starts_with("nostalk_") && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
        assert!(samples.insert(key.to_string(), value).is_none(), "a sample twice: {line}");
    }
    let get = |k: &str| *samples.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(get(&format!("nostalk_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert_eq!(get("nostalk_requests_by_verdict_total{verdict=\"block\"}"), 1.0);
    assert_eq!(get("nostalk_requests_by_verdict_total{verdict=\"allow\"}"), 1.0);
    assert!(get("nostalk_response_bytes_total{verdict=\"allow\"}") >= (PAGE.len() - 100) as f64);
    assert_eq!(get("nostalk_rewrite_removals_by_kind_total{kind=\"script\"}"), 1.0);
    assert_eq!(get("nostalk_upstream_latency_seconds_count"), 1.0);
    assert_eq!(get("nostalk_time_to_first_byte_seconds_count"), 2.0);
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("nostalk_time_to_first_byte_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.last() == Some(&2.0), "{buckets:?}");
    assert!(get("nostalk_open_connections") >= 1.0, "the scrape's own connection is open");
    assert_eq!(get("nostalk_open_tunnels"), 0.0);
    assert!(get("nostalk_list_rules{list=\"nostalk-surveillance\",kind=\"block\"}") > 100.0);
}

#[tokio::test]
async fn a_dual_stack_listener_names_an_ipv4_clients_address_as_ipv4_in_the_pac_file() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED: this machine has no IPv6");
        return;
    }
    let p = Proxy::start(&[], "[server]\nlisten = \"[::]:0\"\n").await;
    let port = p.addr.port();
    // HTTP/1.0 without a Host: the PAC file is built from the address the client reached.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /proxy.pac HTTP/1.0\r\n\r\n").await.unwrap();
    let mut pac = String::new();
    s.read_to_string(&mut pac).await.unwrap();
    assert!(pac.contains(&format!("PROXY 127.0.0.1:{port}\"")), "{pac}");
    assert!(!pac.contains("ffff"), "{pac}");
}

/// A CONNECT through the proxy, answered: the client's side of a tunnel to `host`, before any
/// byte of TLS.
async fn open_tunnel(p: &Proxy, host: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    s
}

/// One GET over TLS inside an open tunnel, trusting the proxy's CA; the response as text.
async fn get_in_tunnel(s: tokio::net::TcpStream, host: &str, ca_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let cfg =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(name, s).await.unwrap();
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A browser's first request in a new tunnel does not wait for the proxy to dial only once the
/// browser's own handshake with it is done: the upstream connection is opened as the CONNECT
/// is answered (its round trips overlap that handshake), and the request uses it. One
/// connection to each origin in all, whether it speaks h2 or only HTTP/1.1. A blocked host is
/// not connected to before a request inside the tunnel is allowed.
#[tokio::test]
async fn a_tunnel_connects_upstream_as_it_opens_and_its_first_request_uses_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let shop = origin(Some(ca.server_config(&["shop.test"])), handler(|_| async { html("the shop") })).await;
    let mut h1_only = (*ca.server_config(&["old.test", "tracker.test"])).clone();
    h1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h1_only = std::sync::Arc::new(h1_only);
    let old = origin(Some(h1_only.clone()), handler(|_| async { html("the old site") })).await;
    let tracker = origin(Some(h1_only), handler(|_| async { html("tracked") })).await;
    let block = dir.path().join("block.txt");
    std::fs::write(&block, "||tracker.test^\n").unwrap();
    let toml = format!(
        "[upstream]\nextra_roots = [{:?}]\n\n[[lists]]\nname = \"test-block\"\npath = {:?}\nverdict = \"block\"\n",
        ca.pem_path.display().to_string(),
        block.display().to_string()
    );
    let hosts =
        [resolve("shop.test", 443, &shop), resolve("old.test", 443, &old), resolve("tracker.test", 443, &tracker)];
    let p = Proxy::start_in(dir, &hosts, &toml).await;
    let connections = |o: &Origin| o.connections.load(std::sync::atomic::Ordering::SeqCst);
    for (host, o, text) in [("shop.test", &shop, "the shop"), ("old.test", &old, "the old site")] {
        let s = open_tunnel(&p, host).await;
        let started = Instant::now();
        while connections(o) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{host}: no upstream connection while the client is silent"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answer = get_in_tunnel(s, host, &p.ca_pem).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(text), "{host}: {answer}");
        assert_eq!(connections(o), 1, "{host}: the first request went on the connection opened at CONNECT");
    }
    let s = open_tunnel(&p, "tracker.test").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connections(&tracker), 0, "a blocked host is connected to before any request");
    drop(s);
    assert_eq!(shop.count() + old.count(), 2);
}
