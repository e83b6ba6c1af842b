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
