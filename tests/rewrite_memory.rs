//! The rewriter's memory does not grow with the page: a 50 MB HTML page, full of trackers and
//! inline scripts, streams through the proxy and the process's peak resident memory grows by
//! about what a 5 MB page made it grow, not by the page's size. One test alone in this binary,
//! so the peak (VmHWM) is this test's own.

mod support;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use support::*;

const CHUNK: &str = r#"<div class="story"><h2>Headline</h2><p>Some words about the day, long enough to be a paragraph of an article that someone wrote.</p>
<img src="https://www.facebook.com/tr?id=1&ev=PageView" width="1" height="1"><a href="/more?id=3&utm_source=x" ping="https://t.test/p">more</a>
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date());</script>
<img src="/photo.jpg" alt="photo"></div>
"#;

/// Peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A page of about `mb` MB, generated as it is sent (the origin never holds it either).
async fn big_page_origin() -> Origin {
    origin(
        None,
        handler(|req| async move {
            let mb: usize = req.uri().path().trim_start_matches('/').parse().unwrap_or(1);
            let repeats = mb * 1024 * 1024 / CHUNK.len();
            let head = futures_util::stream::once(async {
                Bytes::from_static(b"<!doctype html><html><head><title>Big</title></head><body>\n")
            });
            // 64 chunks a frame: frames of about 30 KB.
            let middle = futures_util::stream::iter(0..repeats.div_ceil(64)).map(|_| Bytes::from(CHUNK.repeat(64)));
            let tail = futures_util::stream::once(async { Bytes::from_static(b"</body></html>\n") });
            let s = head.chain(middle).chain(tail).map(|b| Ok::<_, std::io::Error>(hyper::body::Frame::data(b)));
            Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(BodyExt::boxed(StreamBody::new(s)))
                .unwrap()
        }),
    )
    .await
}

async fn fetch_counting(p: &Proxy, mb: usize) -> (usize, bool) {
    let mut r =
        p.client(&[]).get(format!("http://big.test/{mb}")).header("sec-fetch-dest", "document").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (mut n, mut saw_pixel) = (0usize, false);
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len();
        saw_pixel |= c.windows(15).any(|w| w == b"facebook.com/tr");
    }
    (n, saw_pixel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_page_streams_through_the_rewriter_in_flat_memory() {
    let Some(_) = vm_hwm_kib() else {
        eprintln!("SKIPPED: /proc/self/status has no VmHWM on this system");
        return;
    };
    let o = big_page_origin().await;
    let p = Proxy::start(&[resolve("big.test", 80, &o)], "").await;
    // Warm up: the runtime, the TLS-free client and server paths, one page through the rewriter.
    let (n, pixel) = fetch_counting(&p, 1).await;
    assert!(n > 600_000 && !pixel, "{n} bytes, pixel left: {pixel}");
    let before = vm_hwm_kib().unwrap();
    let (n5, pixel) = fetch_counting(&p, 5).await;
    assert!(n5 > 3_500_000 && !pixel, "{n5} bytes");
    let after5 = vm_hwm_kib().unwrap();
    let (n50, pixel) = fetch_counting(&p, 50).await;
    assert!(n50 > 35_000_000 && !pixel, "the 50 MB page came through, rewritten: {n50} bytes");
    let after50 = vm_hwm_kib().unwrap();
    let grew5 = after5.saturating_sub(before);
    let grew50 = after50.saturating_sub(before);
    eprintln!("peak RSS: {before} KiB before; +{grew5} KiB after a 5 MB page; +{grew50} KiB after a 50 MB page");
    // Buffering the page would add at least its 50 MB; streaming adds a few MB at most.
    assert!(grew50 < 16 * 1024, "peak memory grew {grew50} KiB for a 50 MB page (5 MB page: {grew5} KiB)");
}
