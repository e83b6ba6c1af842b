//! The second attacker's pass, each finding reproduced against the real binary on loopback and
//! shown closed: transfers cut by a clock that measured the request instead of silence, the
//! proxy's pages framed by a site, click-to-load fired by page script, the receipt read with
//! no sign-in, the rewriter desynchronised by an oversized token, passwords guessed at speed,
//! clients taking unbounded resources, and the smaller ones (an empty reload, a loose CA key).

mod support;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use support::*;

/// An origin whose body is `chunks` pieces of 1 KiB, one every `every`.
async fn trickling_origin(chunks: usize, every: Duration) -> Origin {
    origin(
        None,
        handler(move |_req| async move {
            let stream = futures_util::stream::unfold(0usize, move |i| async move {
                if i == chunks {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(every).await;
                }
                Some((
                    Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; 1024]))),
                    i + 1,
                ))
            });
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(http_body_util::StreamBody::new(stream).boxed())
                .unwrap()
        }),
    )
    .await
}

/// An origin that reads the whole request body and answers its length.
async fn counting_origin() -> Origin {
    origin(
        None,
        handler(|req| async move {
            match req.into_body().collect().await {
                Ok(b) => Response::new(body(b.to_bytes().len().to_string())),
                Err(e) => Response::builder().status(500).body(body(e.to_string())).unwrap(),
            }
        }),
    )
    .await
}

#[tokio::test]
async fn a_download_whose_bytes_keep_moving_outlives_the_idle_timeout() {
    // 16 KiB over 7.5 s with a 2 s idle timeout: before, the clock ran from the request's
    // start and the download was cut at 4 s.
    let o = trickling_origin(16, Duration::from_millis(500)).await;
    let p = Binary::start(&[resolve("slow.test", 80, &o)], "[server]\nidle_timeout = \"2s\"\n").await;
    let c = p.client(&[]);
    let got = c.get("http://slow.test/big.bin").send().await.unwrap().bytes().await;
    let got = got.expect("the whole download arrives");
    assert_eq!(got.len(), 16 * 1024);
    assert!(got.chunks(1024).enumerate().all(|(i, c)| c.iter().all(|&b| b == b'a' + (i % 26) as u8)));
}

#[tokio::test]
async fn an_upload_whose_bytes_keep_moving_outlives_the_idle_timeout() {
    let o = counting_origin().await;
    let p = Binary::start(&[resolve("up.test", 80, &o)], "[server]\nidle_timeout = \"2s\"\n").await;
    let c = p.client(&[]);
    let stream = futures_util::stream::unfold(0usize, |i| async move {
        if i == 16 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![b'u'; 1024])), i + 1))
    });
    let r = c.post("http://up.test/upload").body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (16 * 1024).to_string(), "the origin got every byte of the upload");
}

#[tokio::test]
async fn an_intercepted_https_download_over_h2_outlives_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let tls = ca.server_config(&["slow.test"]);
    let o = origin(
        Some(tls),
        handler(|_req| async move {
            let stream = futures_util::stream::unfold(0usize, |i| async move {
                if i == 12 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b's'; 1024]))), i + 1))
            });
            Response::new(http_body_util::StreamBody::new(stream).boxed())
        }),
    )
    .await;
    let p = Binary::start(
        &[resolve("slow.test", 443, &o)],
        &format!(
            "[server]\nidle_timeout = \"2s\"\n[upstream]\nextra_roots = [{:?}]\n",
            ca.pem_path.display().to_string()
        ),
    )
    .await;
    let c = p.client(&[]);
    let r = c.get("https://slow.test/stream").send().await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2, "the browser side of the tunnel speaks h2");
    assert_eq!(r.bytes().await.expect("the whole download arrives").len(), 12 * 1024);
}

#[tokio::test]
async fn a_transfer_that_stops_moving_is_cut_after_the_idle_timeout() {
    // 1 KiB, then silence for a minute: the connection is cut once nothing has moved for the
    // idle timeout (here also the response timeout), not held for the origin's whole silence.
    let o = trickling_origin(2, Duration::from_secs(60)).await;
    let p = Binary::start(
        &[resolve("stuck.test", 80, &o)],
        "[server]\nidle_timeout = \"2s\"\n[upstream]\nresponse_timeout = \"2s\"\n",
    )
    .await;
    let c = p.client(&[]);
    let started = Instant::now();
    let r = c.get("http://stuck.test/stuck.bin").send().await.unwrap();
    let got = r.bytes().await;
    let took = started.elapsed();
    assert!(got.is_err(), "a stalled body ends in an error, not a short success");
    assert!(took < Duration::from_secs(20), "cut after {took:?}, not held for the origin's silence");
}

const FRAMING_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>win a prize</title>
<style>body{margin:0} #decoy{position:fixed;left:0;top:0;width:100vw;height:100vh;font-size:40px}
iframe{position:fixed;left:0;top:0;width:100vw;height:100vh;border:0;opacity:0.01}</style></head>
<body><button id="decoy">Click to win</button>
<iframe src="http://nostalk.internal/site?name=news.test"></iframe></body></html>"#;

/// A page that hooks `addEventListener` before the widget's surrogate runs, keeps every click
/// and message listener the surrogate adds, and can call them with forged events.
const FORGING_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>forger</title>
<script>
window.captured = [];
const add = EventTarget.prototype.addEventListener;
EventTarget.prototype.addEventListener = function (type, fn, opts) {
  if (type === 'click' || type === 'message') { window.captured.push([type, fn]); }
  return add.call(this, type, fn, opts);
};
window.forge = function () {
  const f = document.querySelector('[data-nostalk-placeholder] iframe');
  const source = f ? f.contentWindow : null;
  for (const [type, fn] of window.captured) {
    try {
      fn.call(window, { isTrusted: true, type: type, data: 'nostalk-widget-go', source: source, origin: 'http://platform.twitter.com',
        target: document.body, preventDefault() {}, stopPropagation() {} });
    } catch (e) {}
  }
  window.postMessage('nostalk-widget-go', '*');
  // The frame's URL is the page's to read: it carries no pass.
  return [window.captured.length, f ? f.src : ''];
};
</script></head><body>
<blockquote class="twitter-tweet"><p>The river is at its highest in ten years.</p></blockquote>
<script async src="http://platform.twitter.com/widgets.js"></script>
</body></html>"#;

#[tokio::test]
async fn in_chromium_a_site_cannot_frame_the_receipt_nor_load_a_widget_without_the_persons_click() {
    use support::cdp::{browser_home, chromium_flags, chromium_missing, Browser, CHROMIUM};
    if chromium_missing() {
        return;
    }
    let news = origin(
        None,
        handler(|req| async move {
            match req.uri().path() {
                "/frame" => html(FRAMING_PAGE),
                "/forge" => html(FORGING_PAGE),
                _ => html(
                    "<!doctype html><title>news</title><p>hello</p>\
                     <img src=\"http://www.google-analytics.com/collect?v=1&cid=42\" width=1 height=1>",
                ),
            }
        }),
    )
    .await;
    let twitter = origin(
        None,
        handler(|_req| async move {
            Response::builder()
                .header("content-type", "application/javascript")
                .body(body("document.title = 'widget loaded';"))
                .unwrap()
        }),
    )
    .await;
    let p = Binary::start(&[resolve("news.test", 80, &news), resolve("platform.twitter.com", 80, &twitter)], "").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, p.ca_pem()).unwrap();
    let (home, profile) = browser_home(dir.path(), Some(&ca));
    let browser = Browser::launch(CHROMIUM, &home, &profile, chromium_flags(&profile, &p.url())).await;
    let tab = browser.tab().await;

    // 2. The receipt framed invisibly over a decoy: the person's real click trusts nothing.
    tab.goto("http://news.test/hello").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tab.goto("http://nostalk.internal/site?name=news.test").await;
    let at = tab
        .wait_for(
            "(() => { const b = document.querySelector(\"form[action='/trust'] button\"); if (!b) return null; \
             const r = b.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2, b.textContent]; })()",
            20,
        )
        .await;
    assert_eq!(at[2], "Trust this site");
    tab.goto("http://news.test/frame").await;
    tab.wait_for("document.getElementById('decoy')", 20).await;
    // The frame was refused: Chromium shows its error page in its place, not the receipt.
    let started = Instant::now();
    let frames = loop {
        let f = tab.frame_urls().await;
        if f.len() > 1 || started.elapsed() > Duration::from_secs(10) {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(frames.iter().any(|f| f.starts_with("http://nostalk.internal")), "{frames:?}");
    let inside = tab.eval_in_frame("nostalk.internal", "location.href + ' | ' + document.body.innerText").await;
    assert!(inside.as_str().unwrap_or("").starts_with("chrome-error:"), "the receipt showed in the frame: {inside}");
    tab.click_at(at[0].as_f64().unwrap(), at[1].as_f64().unwrap()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    tab.goto("http://nostalk.internal/site?name=news.test").await;
    let label = tab.wait_for("(() => { const b = document.querySelector(\"form[action='/trust'] button\"); return b && b.textContent; })()", 20).await;
    assert_eq!(label, "Trust this site", "the click through the frame changed nothing");

    // 3. Click-to-load: forged events and messages load nothing; the person's click does.
    tab.goto("http://news.test/forge").await;
    tab.wait_for_frame("nostalk-widget=1", 20).await;
    let forged = tab.eval("forge()").await;
    assert!(forged[0].as_u64().unwrap() >= 1, "the page caught the surrogate's listener: {forged}");
    assert!(!forged[1].as_str().unwrap().contains("nostalk-pass"), "{forged}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        twitter.count(),
        0,
        "no forged event reached the network: {:?}",
        twitter.seen().iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
    assert_ne!(tab.eval("document.title").await, "widget loaded");
    // The forged message put the widget back; the refused script's surrogate holds it again.
    tab.wait_for_frame("nostalk-widget=1", 20).await;
    tab.wait_for("document.querySelector('[data-nostalk-placeholder] iframe')", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    tab.click("[data-nostalk-placeholder] iframe").await;
    tab.wait_for("document.title === 'widget loaded'", 20).await;
    let seen: Vec<String> = twitter.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ends_with("/widgets.js"), "the script, with no pass or marker: {seen:?}");
    drop(tab);
    drop(browser);
}

#[tokio::test]
async fn the_proxys_pages_refuse_to_be_framed_and_a_control_from_a_frame_is_refused() {
    let p = Binary::start(&[], "").await;
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/", "/site?name=none.test", "/metrics", "/nowhere"] {
        let r = c.get(format!("{}{path}", p.url())).send().await.unwrap();
        assert_eq!(r.headers().get("x-frame-options").map(|v| v.to_str().unwrap()), Some("DENY"), "{path}");
        assert_eq!(
            r.headers().get("content-security-policy").map(|v| v.to_str().unwrap()),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
    }
    let page = c.get(p.url()).send().await.unwrap().text().await.unwrap();
    let token = page.split("name=\"token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = format!("token={token}&site=news.test&trust=1");
    let post = |dest: &'static str| {
        c.post(format!("{}/trust", p.url()))
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-dest", dest)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
    };
    let framed = post("iframe").await.unwrap();
    assert_eq!(framed.status(), 403, "a form sent from inside a frame");
    assert!(framed.text().await.unwrap().contains("tab of its own"));
    let top = post("document").await.unwrap();
    assert!(
        top.status().is_redirection() || top.status() == 200,
        "the same form at the top of its tab: {}",
        top.status()
    );
}

/// A users file with alice and bob; the config that asks for it, with 127.0.0.9 the only
/// admin address (the tests' other clients are users).
fn team(dir: &std::path::Path) -> String {
    let users = dir.join("users");
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    nostalk::ops::auth::set_password(&users, "bob", "battery staple").unwrap();
    format!(
        "[auth]\nusers = {:?}\n[access]\nallow = [\"127.0.0.0/8\"]\n[admin]\nallow = [\"127.0.0.9/32\"]\n",
        users.display().to_string()
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A client from `from` (a loopback address), straight to the proxy's own pages.
fn from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `user` loads a tracker from a page of `site`, through the proxy: the receipt files it.
async fn browse(p: &Binary, user: &str, password: &str, site: &str) {
    let c = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(p.url()).unwrap().basic_auth(user, password))
        .build()
        .unwrap();
    let r = c
        .get("http://www.google-analytics.com/collect?v=1&cid=42")
        .header("referer", format!("http://{site}/story"))
        .header("sec-fetch-dest", "image")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-nostalk").map(|v| v.to_str().unwrap()), Some("blocked"));
}

#[tokio::test]
async fn with_auth_the_receipt_needs_a_sign_in_and_shows_a_user_only_their_own_sites() {
    let dir = tempfile::tempdir().unwrap();
    let p = Binary::start(&[], &team(dir.path())).await;
    browse(&p, "alice", "correct horse", "news.test").await;
    browse(&p, "bob", "battery staple", "blog.test").await;
    let anyone = from([127, 0, 0, 1]);
    for path in ["/", "/site?name=news.test", "/events"] {
        let r = anyone.get(format!("{}{path}", p.url())).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} straight, with no sign-in");
        assert!(r.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap().starts_with("Basic")));
    }
    // Through the proxy setting, the browser is asked for the proxy's credentials.
    let proxied = reqwest::Client::builder().proxy(reqwest::Proxy::http(p.url()).unwrap()).build().unwrap();
    let r = proxied.get("http://nostalk.internal/").send().await.unwrap();
    assert_eq!(r.status(), 407);
    let r = anyone.get(p.url()).header("authorization", basic("alice", "wrong")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a wrong password");

    let alice = anyone.get(p.url()).header("authorization", basic("alice", "correct horse")).send().await.unwrap();
    assert_eq!(alice.status(), 200);
    let page = alice.text().await.unwrap();
    assert!(page.contains("news.test") && !page.contains("blog.test"), "alice sees her sites alone");
    let r = anyone
        .get(format!("{}/site?name=blog.test", p.url()))
        .header("authorization", basic("alice", "correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "bob's site is not in alice's receipt");
    let bob = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(p.url()).unwrap().basic_auth("bob", "battery staple"))
        .build()
        .unwrap();
    let page = bob.get("http://nostalk.internal/").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("blog.test") && !page.contains("news.test"), "bob, through the proxy setting");
    let admin = from([127, 0, 0, 9]);
    let page = admin.get(p.url()).header("authorization", basic("bob", "battery staple")).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("blog.test") && page.contains("news.test"), "an admin sees all");

    // The live stream: alice hears of her own sites, not of bob's.
    let mut events = anyone
        .get(format!("{}/events", p.url()))
        .header("authorization", basic("alice", "correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    browse(&p, "bob", "battery staple", "bobs-shop.test").await;
    browse(&p, "alice", "correct horse", "alices-paper.test").await;
    let mut heard = String::new();
    let started = Instant::now();
    while !heard.contains("alices-paper.test") && started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), events.chunk()).await {
            Ok(Ok(Some(c))) => heard.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    assert!(heard.contains("alices-paper.test") && !heard.contains("bobs-shop.test"), "{heard}");
}

#[tokio::test]
async fn a_password_check_costs_the_same_for_any_name_and_a_guessing_client_is_made_to_wait() {
    let dir = tempfile::tempdir().unwrap();
    let p = Binary::start(&[], &team(dir.path())).await;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    // Three wrong tries each, from clients of their own (under the free tries).
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let r =
            from([127, 0, 0, 3]).get(p.url()).header("authorization", basic("alice", "guess")).send().await.unwrap();
        known.push(started.elapsed());
        assert_eq!(r.status(), 401);
        let started = Instant::now();
        let r =
            from([127, 0, 0, 4]).get(p.url()).header("authorization", basic("mallory", "guess")).send().await.unwrap();
        unknown.push(started.elapsed());
        assert_eq!(r.status(), 401);
    }
    let (known, unknown) = (median(known), median(unknown));
    assert!(unknown * 3 > known, "a name not in the file costs as much to check: {unknown:?} against {known:?}");

    // A guessing client: past its free tries, even the right password waits.
    let guesser = from([127, 0, 0, 5]);
    for _ in 0..nostalk::ops::auth::FREE_TRIES + 20 {
        let r = guesser.get(p.url()).header("authorization", basic("alice", "guess")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = guesser.get(p.url()).header("authorization", basic("alice", "correct horse")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the guesser is made to wait, whatever it sends");
    // Meanwhile another client signs in at once.
    let r = from([127, 0, 0, 6]).get(p.url()).header("authorization", basic("alice", "correct horse")).send().await;
    assert_eq!(r.unwrap().status(), 200);
}

#[tokio::test]
async fn after_an_oversized_attribute_the_rewriter_resumes_where_the_tag_ends_whatever_its_tail_holds() {
    const AFTER: &str = "<script>(function(i,s,o,g,r,a,m){i['GoogleAnalyticsObject']=r;})(window,document,'script','//www.google-analytics.com/analytics.js','ga');ga('create','UA-1','auto');</script>\n\
         <img src=\"https://www.facebook.com/tr?id=1&ev=PageView\" width=\"1\" height=\"1\">\n\
         <a href=\"/next?id=2&utm_source=feed\" ping=\"https://log.news.test/p\">Next</a>\n<p>the end</p></body></html>";
    // The tails an attacker's attribute ends with: each would make a rewriter started inside
    // the attribute read the rest of the page as a comment, text, script or style.
    let tails = ["<!--", "<textarea>", "<script>", "<style>", "<title>", "x' y=\"<!--", "--><xmp>"];
    let padding = "a".repeat(3 * 1024 * 1024);
    let pages: Vec<String> = tails
        .iter()
        .map(|tail| {
            format!(
                "<!doctype html><html><head><title>t</title></head><body><div title=\"{padding}{tail}\" class=\"c\">a</div>\n{AFTER}"
            )
        })
        .collect();
    let pages: &'static [String] = Box::leak(pages.into_boxed_slice());
    let o = origin(
        None,
        handler(move |req| async move {
            let i: usize = req.uri().path().trim_start_matches('/').parse().unwrap_or(0);
            Response::builder().header("content-type", "text/html; charset=utf-8").body(body(pages[i].clone())).unwrap()
        }),
    )
    .await;
    let p = Binary::start(&[resolve("padded.test", 80, &o)], "").await;
    let c = p.client(&[]);
    for (i, tail) in tails.iter().enumerate() {
        let r = c.get(format!("http://padded.test/{i}")).header("sec-fetch-dest", "document").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(
            html.contains(&format!("{padding}{tail}\" class=\"c\">a</div>")),
            "{tail}: the oversized tag passes whole"
        );
        assert!(html.ends_with("<p>the end</p></body></html>"), "{tail}: the page is whole");
        let rest = &html[html.find("</div>").unwrap()..];
        assert!(!rest.contains("GoogleAnalyticsObject"), "{tail}: the snippet after it is removed: {rest}");
        assert!(!rest.contains("facebook.com/tr"), "{tail}: the pixel after it is removed");
        assert!(
            !rest.contains("ping=") && !rest.contains("utm_source"),
            "{tail}: the link after it is cleaned: {rest}"
        );
    }
}

/// A hostile DNS server on loopback: every name under `chain.test` is a CNAME chain of 350
/// links of 170-byte names (an answer of about 60 KB, over TCP once UDP says truncated),
/// ending at 127.0.0.1. Answers `limit` questions at most.
async fn chain_dns(limit: usize, links: usize) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::rdata::{A, CNAME};
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    use hickory_resolver::proto::serialize::binary::BinEncodable;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = move |q: &Message, full: bool| -> Vec<u8> {
        let mut r = Message::new();
        r.set_id(q.id()).set_message_type(MessageType::Response).set_op_code(q.op_code());
        r.set_recursion_desired(true).set_recursion_available(true);
        r.add_queries(q.queries().to_vec());
        let Some(query) = q.queries().first() else { return r.to_bytes().unwrap() };
        let asked = query.name().to_ascii();
        // A name of the chain itself (the resolver asking on from where it stopped following
        // the chain): its address.
        if asked.split('.').count() != 4 {
            if query.query_type() == RecordType::A {
                r.add_answer(Record::from_rdata(query.name().clone(), 3600, RData::A(A::new(127, 0, 0, 1))));
            }
            return r.to_bytes().unwrap();
        }
        if !full {
            r.set_truncated(true);
            return r.to_bytes().unwrap();
        }
        let base = asked.split_once('.').map_or("chain.test.", |(_, b)| b).to_string();
        let first = asked.split('.').next().unwrap_or("n").to_string();
        let mut from = query.name().clone();
        for i in 0..links {
            // Labels of their own, so that name compression cannot shorten the answer.
            let label = |k: u32| format!("{i:04}{k}{}", "x".repeat(44));
            let to = Name::from_ascii(format!("{}.{}.{}.{first}.{base}", label(1), label(2), label(3))).unwrap();
            r.add_answer(Record::from_rdata(from.clone(), 3600, RData::CNAME(CNAME(to.clone()))));
            from = to;
        }
        if query.query_type() == RecordType::A {
            r.add_answer(Record::from_rdata(from, 3600, RData::A(A::new(127, 0, 0, 1))));
        }
        r.to_bytes().unwrap()
    };
    // One port for both: a free UDP port's TCP twin may be another test's, so try again.
    let mut tries = 0;
    let (udp, tcp, addr) = loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("port {addr} taken for TCP ({e}); another");
            }
            Err(e) => panic!("no port free for both UDP and TCP: {e}"),
        }
    };
    let task = tokio::spawn(async move {
        let udp_side = async {
            let mut buf = vec![0u8; 1500];
            for _ in 0..limit {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else { return };
                if let Ok(q) = Message::from_vec(&buf[..n]) {
                    let _ = udp.send_to(&answer(&q, false), from).await;
                }
            }
        };
        let tcp_side = async {
            for _ in 0..limit {
                let Ok((mut s, _)) = tcp.accept().await else { return };
                tokio::spawn(async move {
                    let answer = answer;
                    for _ in 0..64 {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let Ok(q) = Message::from_vec(&q) else { return };
                        let a = answer(&q, true);
                        let mut out = (a.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&a);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        };
        tokio::join!(udp_side, tcp_side);
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_huge_cname_chains_cost_bounded_memory() {
    let names = 1200;
    let (dns, _dns) = chain_dns(names * 16, 350).await;
    let o = static_origin(None, "text/plain", "ok").await;
    let p = Binary::start(&[], &format!("[upstream]\ndns = \"{dns}\"\nidle_timeout = \"2s\"\n")).await;
    let c = p.client(&[]);
    // Warm up (the allocator, the pools), then the hostile names.
    for _ in 0..20 {
        let _ = c.get(format!("http://127.0.0.1:{}/warm", o.port())).send().await;
    }
    let before = rss_kib(p.child.id());
    let mut answered = 0;
    for i in 0..names {
        // Each name is uncloaked (its chain looked up) before it is dialled.
        if let Ok(r) = c.get(format!("http://n{i}.chain.test:{}/x", o.port())).send().await {
            answered += usize::from(r.status() == 200);
        }
    }
    // Pooled connections to each name go after the upstream idle timeout (2 s here).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(p.child.id());
    eprintln!("RSS {before} KiB before, {after} KiB after {names} names with 60 KB chains ({answered} answered)");
    assert!(answered > names / 2, "the names resolve through their chains: {answered}");
    assert!(after.saturating_sub(before) < 64 * 1024, "{} KiB more for {names} names", after - before);
}

#[tokio::test]
async fn live_receipt_streams_are_bounded_by_max_watchers() {
    let p = Binary::start(&[], "[receipt]\nmax_watchers = 2\n").await;
    let c = from([127, 0, 0, 1]);
    let events = || c.get(format!("{}/events", p.url())).send();
    let first = events().await.unwrap();
    let second = events().await.unwrap();
    assert_eq!((first.status(), second.status()), (http::StatusCode::OK, http::StatusCode::OK));
    let third = events().await.unwrap();
    assert_eq!(third.status(), 429, "past max_watchers");
    assert!(third.text().await.unwrap().contains("Too many receipt pages"));
    drop(first);
    // The place is given back once the stream's connection is gone.
    let started = Instant::now();
    loop {
        let r = events().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "a closed stream gives its place back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ad_sources_are_kept_by_traffic_so_junk_names_cannot_crowd_out_real_ones() {
    let (dns, _dns) = chain_dns(20_000, 0).await;
    let o = static_origin(None, "image/gif", "GIF89a").await;
    let dir = tempfile::tempdir().unwrap();
    let ads = dir.path().join("ads.txt");
    std::fs::write(&ads, "/adserve/*$third-party\n").unwrap();
    let p = Binary::start(
        &[],
        &format!(
            "[upstream]\ndns = \"{dns}\"\n[[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n",
            ads.display().to_string()
        ),
    )
    .await;
    let c = p.client(&[]);
    let ad = |host: String| {
        c.get(format!("http://{host}:{}/adserve/banner.gif", o.port()))
            .header("referer", "http://news.test/story")
            .header("sec-fetch-dest", "image")
            .send()
    };
    for i in 0..700 {
        let r = ad(format!("junk{i}.test")).await.unwrap();
        assert_eq!(r.status(), 200, "junk{i}: {}", r.text().await.unwrap_or_default());
    }
    for _ in 0..5 {
        ad("realads.test".to_string()).await.unwrap();
    }
    let metrics = from([127, 0, 0, 1]).get(format!("{}/metrics", p.url())).send().await.unwrap().text().await.unwrap();
    let labels = metrics.lines().filter(|l| l.starts_with("nostalk_ad_source_requests_total{")).count();
    assert!(labels <= 2 * nostalk::receipt::MAX_AD_SOURCES, "{labels} labels");
    assert!(
        metrics.contains("nostalk_ad_source_requests_total{source=\"realads.test\",verdict=\"ad\"} 5"),
        "a real source is counted after 700 junk names"
    );
}

#[tokio::test]
async fn max_connections_is_held_below_the_open_file_limit_so_new_clients_still_get_in() {
    // Default max_connections (4096), a 1,024 open-file limit: 1,100 idle connections would
    // have taken every descriptor; now the least recently active are shed.
    let p = Binary::start_limited(&[], "", Some(1024)).await;
    let mut idle = Vec::new();
    for _ in 0..1100 {
        match tokio::net::TcpStream::connect(p.addr()).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connecting: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let r = c.get(format!("{}/healthz", p.url())).send().await.expect("a new client is served");
    assert_eq!(r.status(), 200);
    drop(idle);
}

#[tokio::test]
async fn a_reload_of_an_empty_or_cut_short_file_is_refused_and_the_policy_stays() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "||custom-tracker.test^\n").unwrap();
    let p = Binary::start(
        &[],
        &format!("[[lists]]\nname = \"mine\"\npath = {:?}\nverdict = \"block\"\n", list.display().to_string()),
    )
    .await;
    let c = p.client(&[]);
    let blocked = || async {
        let r = c.get("http://custom-tracker.test/p.gif").header("sec-fetch-dest", "image").send().await.unwrap();
        r.headers().get("x-nostalk").is_some_and(|v| v == "blocked")
    };
    assert!(blocked().await);
    let whole = std::fs::read_to_string(p.config_path()).unwrap();
    // The file without its lists (as a write cut short would leave a file whose lists came last).
    let lists_at = whole.find("[[lists]]").unwrap();
    let lists_end = lists_at + whole[lists_at..].find("\n[").unwrap() + 1;
    let cut = format!("{}{}", &whole[..lists_at], &whole[lists_end..]);
    for (what, text) in [("empty", ""), ("without its lists", cut.as_str())] {
        std::fs::write(p.config_path(), text).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(blocked().await, "{what}: the policy in force stays");
    }
    // The whole file again is taken.
    std::fs::write(p.config_path(), whole.replace("custom-tracker.test", "x")).unwrap();
    std::fs::write(&list, "||other-tracker.test^\n").unwrap();
    unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!blocked().await, "a whole file is reloaded");
}

#[test]
fn run_refuses_a_ca_directory_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let nostalk = || std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"));
    let out = nostalk().args(["ca", "init", "--dir", ca_dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = dir.path().join("c.toml");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[ca]\ndir = {:?}\n[policy]\ndefault_subscriptions = false\n",
        ca_dir.display().to_string()
    );
    std::fs::write(&cfg, toml).unwrap();
    let out =
        nostalk().args(["run", "--config", cfg.to_str().unwrap()]).env("XDG_DATA_HOME", dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "run must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 700") && err.contains("written by other users"), "says why and how to fix it: {err}");
}
