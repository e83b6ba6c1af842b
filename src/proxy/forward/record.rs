//! The record phase: the one place that writes the receipt, the metrics and the decision log,
//! from the finished Exchange. A forwarded response is finished when its body ends (or the
//! client leaves before its end): the body is wrapped to count its bytes and to record then,
//! with what the rewriter removed from the page by that point. At INFO the log says what
//! nostalk did (a block, an ad de-identified): decision, rule, list, site and host, never the
//! path, query or credentials, which are a person's browsing in detail; at DEBUG, every
//! request with its full URL.

use crate::base::{Body, BoxError};
use crate::exchange::Exchange;
use crate::ops::metrics::Metrics;
use crate::policy::Verdict;
use crate::proxy::state::Shared;
use crate::receipt::Receipt;
use crate::rewrite::Removals;
use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tracing::{debug, info};

/// Where finished exchanges are written. Borrowed: most exchanges are recorded at once, and
/// only a body still streaming takes its own handles (each clone of a shared Arc is an
/// atomic add on a line every thread's requests touch).
#[derive(Clone, Copy)]
pub struct Books<'a> {
    pub receipt: &'a Arc<Receipt>,
    /// The signed-in user's own receipt (`[auth]`).
    pub mine: Option<&'a Arc<Receipt>>,
    pub metrics: &'a Arc<Metrics>,
}

impl<'a> Books<'a> {
    pub fn of(shared: &'a Shared, mine: Option<&'a Arc<Receipt>>) -> Books<'a> {
        Books { receipt: &shared.receipt, mine, metrics: &shared.metrics }
    }
}

/// Write a finished exchange into the receipt (and the user's own), the metrics and the log.
pub fn record(ex: &Exchange, receipt: &Receipt, mine: Option<&Receipt>, metrics: &Metrics) {
    log(ex);
    receipt.record(ex);
    if let Some(mine) = mine {
        mine.record(ex);
    }
    let (count, verdict) = match ex.decision.verdict {
        Verdict::Block => (&metrics.blocked, 0),
        Verdict::Ad => (&metrics.ads, 1),
        Verdict::Allow => (&metrics.allowed, 2),
    };
    metrics.inc(count);
    metrics.add(&metrics.bytes[verdict], ex.done.bytes);
    if ex.done.upstream_failed {
        metrics.inc(&metrics.upstream_errors);
    }
    if let Some(d) = ex.done.upstream_latency {
        metrics.upstream_latency.observe(d);
    }
    if let Some(d) = ex.done.first_byte {
        metrics.first_byte.observe(d);
    }
    metrics.add(&metrics.rewrite_removals, ex.done.removals.len() as u64);
    for r in &ex.done.removals {
        metrics.inc(&metrics.removals[r.kind.index()]);
    }
}

/// The response, its body wrapped so the exchange is recorded when it ends. A body whose size
/// is known and that no rewriter is still reading (a block's answer, most upstream responses)
/// has nothing left to tell: it is recorded now and goes on unwrapped.
pub fn finish(
    resp: Response<Body>,
    mut ex: Exchange,
    books: Books<'_>,
    removals: Option<Arc<Mutex<Removals>>>,
) -> Response<Body> {
    ex.done.status = Some(resp.status());
    ex.done.first_byte = Some(ex.received.elapsed());
    if let (None, Some(bytes)) = (&removals, resp.body().size_hint().exact()) {
        ex.done.bytes = bytes;
        record(&ex, books.receipt, books.mine.map(|m| &**m), books.metrics);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let span = tracing::Span::current();
    let (receipt, mine, metrics) = (books.receipt.clone(), books.mine.cloned(), books.metrics.clone());
    let body = Recorded { body, pending: Some(Box::new(Pending { ex, receipt, mine, metrics, removals, span })) };
    Response::from_parts(parts, body.boxed_unsync())
}

/// What is written when the body ends.
struct Pending {
    ex: Exchange,
    receipt: Arc<Receipt>,
    mine: Option<Arc<Receipt>>,
    metrics: Arc<Metrics>,
    removals: Option<Arc<Mutex<Removals>>>,
    span: tracing::Span,
}

struct Recorded {
    body: Body,
    pending: Option<Box<Pending>>,
}

impl Recorded {
    fn done(&mut self) {
        let Some(mut p) = self.pending.take() else { return };
        let _in_span = p.span.enter();
        if let Some(r) = &p.removals {
            p.ex.done.removals = std::mem::take(&mut crate::base::lock(r).list);
        }
        record(&p.ex, &p.receipt, p.mine.as_deref(), &p.metrics);
    }
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(p)) = (frame.data_ref(), self.pending.as_mut()) {
                    p.ex.done.bytes += data.len() as u64;
                }
            }
            Poll::Ready(_) => self.done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // A body the client left before its end, or one the server stopped polling once it
        // said it had ended, is recorded with what went so far.
        self.done();
    }
}

fn log(ex: &Exchange) {
    let d = &ex.decision;
    let (rule, list) = (d.rule().unwrap_or(""), d.list().unwrap_or(""));
    let party = if ex.third_party { "third" } else { "first" };
    let t = ex.request_type.as_str();
    if d.verdict == Verdict::Allow {
        debug!(url = %ex.url, decision = "allow", rule, list, site = %ex.site, party, r#type = t, "decision");
    } else {
        info!(
            client = ex.client.map(tracing::field::display),
            user = ex.user.as_ref().map(|w| w.user.as_str()),
            group = ex.user.as_ref().and(ex.group.as_deref()),
            host = %ex.host,
            decision = d.verdict.as_str(),
            rule,
            list,
            cname = d.cname(),
            site = %ex.site,
            party,
            r#type = t,
            "decision"
        );
        debug!(url = %ex.url, "decided URL");
    }
    let removals = &ex.done.removals;
    if !removals.is_empty() {
        info!(page = %ex.page.site, removed = removals.len(), "page rewritten");
        if tracing::enabled!(tracing::Level::DEBUG) {
            // What was removed names URLs on the page: DEBUG, like every URL.
            let what: Vec<String> = removals
                .iter()
                .map(|x| format!("{} {} ({})", x.kind.as_str(), x.what, x.rule.as_deref().unwrap_or("signature")))
                .collect();
            debug!(page = %ex.page.site, what = ?what, "removed from the page");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Kind, Removal};
    use crate::policy::Decision;
    use std::sync::atomic::Ordering;

    fn exchange(verdict: Verdict) -> Exchange {
        Exchange::sample(
            "https://ads.example/banner.png",
            "news.example",
            Decision { verdict, ad_class: verdict == Verdict::Ad, ..Decision::allow() },
        )
    }

    #[tokio::test]
    async fn a_finished_exchange_is_written_once_with_its_bytes_and_removals() {
        let (receipt, metrics) = (Arc::default(), Arc::default());
        let books = Books { receipt: &receipt, mine: None, metrics: &metrics };
        let removals = Arc::new(Mutex::new(Removals::default()));
        removals.lock().unwrap().list.push(Removal { kind: Kind::Pixel, what: "t.example/p".into(), rule: None });
        let resp =
            finish(Response::new(crate::base::full("twelve bytes")), exchange(Verdict::Ad), books, Some(removals));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 12);
        let m = books.metrics;
        assert_eq!(m.ads.load(Ordering::Relaxed), 1, "recorded once, though the body was polled and dropped");
        assert_eq!(m.rewrite_removals.load(Ordering::Relaxed), 1);
        let (sites, _) = books.receipt.page(0, 10);
        assert_eq!(sites[0].0, "news.example");
        assert_eq!(sites[0].1.ads["ads.example"].count, 1);
        assert_eq!(sites[0].1.removed_by_kind["pixel"], 1);
    }

    #[test]
    fn a_body_the_client_left_is_recorded_when_dropped() {
        let (receipt, metrics) = (Arc::default(), Arc::default());
        let books = Books { receipt: &receipt, mine: None, metrics: &metrics };
        let unknown_length = crate::base::boxed(http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >()));
        let resp = finish(Response::new(unknown_length), exchange(Verdict::Block), books, None);
        assert_eq!(books.metrics.blocked.load(Ordering::Relaxed), 0, "not finished while its body is open");
        drop(resp);
        assert_eq!(books.metrics.blocked.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_body_of_known_size_is_recorded_at_once_with_its_size() {
        let (receipt, metrics) = (Arc::default(), Arc::default());
        let books = Books { receipt: &receipt, mine: None, metrics: &metrics };
        let resp = finish(Response::new(crate::base::full("1234567")), exchange(Verdict::Ad), books, None);
        assert_eq!(books.metrics.ads.load(Ordering::Relaxed), 1);
        drop(resp);
        assert_eq!(books.metrics.ads.load(Ordering::Relaxed), 1, "recorded once");
    }
}
