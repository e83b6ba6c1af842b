//! Streaming HTML rewriting on the hot path. A `text/html` (or XHTML) response that is not
//! blocked is decoded as a stream (gzip, deflate, br, zstd via async-compression), fed chunk by
//! chunk through lol_html with the handlers in [`handlers`], and sent on as each chunk comes
//! out: identity to loopback clients, gzip (flushed per chunk) to others that accept it. The
//! rewriter's memory is bounded by lol_html's memory settings; pages are never held whole.
//! Everything else passes byte for byte.

pub mod csp;
pub mod handlers;

use crate::config::OutputEncoding;
use crate::policy::Policy;
use crate::{Body, BoxError, Shared};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::header::{self, HeaderMap, HeaderValue};
use http::{response::Parts, Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

pub use handlers::{Kind, Removal, Removals};

/// lol_html's own memory stays under this per page, whatever the page's size.
pub const MAX_REWRITER_MEMORY: usize = 2 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// What the rewriter needs to know about the page.
pub struct Page {
    pub policy: Arc<Policy>,
    pub page_host: String,
    pub page_site: String,
    pub shared: Arc<Shared>,
    pub client_loopback: bool,
    /// Whether the client's Accept-Encoding takes gzip: a rewritten page is re-encoded only then.
    pub client_gzip: bool,
    pub request_id: u64,
}

/// Ask upstream only for encodings the rewriter can decode, and among them only those the
/// client accepts: a response that turns out not to be HTML passes to the client as it came,
/// so it must be in a coding the client asked for (a client that names none gets identity).
/// Returns whether the client accepts gzip. Runs on every document request, so it does not
/// allocate for a client that names none or all four (Chrome and Firefox do).
pub fn limit_accept_encoding(headers: &mut HeaderMap) -> bool {
    // Coding::bit of each accepted coding the rewriter decodes.
    let mut accepted = 0u8;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        for item in v.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            // `q=0` means "not this one"; anything else (or no q) means it is acceptable.
            let refused = parts
                .filter_map(|p| p.split_once('='))
                .any(|(k, q)| k.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0));
            if refused {
                continue;
            }
            accepted |=
                if coding == "*" { Coding::ALL_DECODED } else { Coding::from_name(coding).map_or(0, Coding::bit) };
        }
    }
    match accepted {
        0 => {
            headers.remove(header::ACCEPT_ENCODING);
        }
        Coding::ALL_DECODED => {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate, br, zstd"));
        }
        _ => {
            let names: Vec<&str> =
                Coding::DECODED.iter().filter(|c| accepted & c.bit() != 0).map(|c| c.name()).collect();
            // Always Ok: the names joined are the codings' own, plain ASCII.
            if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
                headers.insert(header::ACCEPT_ENCODING, v);
            }
        }
    }
    accepted & Coding::Gzip.bit() != 0
}

pub fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
        })
        .unwrap_or(false)
}

pub fn is_rewritable(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    method != Method::HEAD
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
        && !status.is_informational()
        && is_html(headers)
        && decoder_for(headers).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The codings the rewriter decodes, in the order upstream is offered them.
    const DECODED: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];
    /// Every bit of `DECODED`.
    const ALL_DECODED: u8 = 0b1111;

    /// A content-coding by its name in Content-Encoding or Accept-Encoding (any case); None
    /// for one the rewriter cannot decode.
    fn from_name(name: &str) -> Option<Coding> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        Some(if name.is_empty() || is("identity") {
            Coding::Identity
        } else if is("gzip") || is("x-gzip") {
            Coding::Gzip
        } else if is("deflate") {
            Coding::Deflate
        } else if is("br") {
            Coding::Brotli
        } else if is("zstd") {
            Coding::Zstd
        } else {
            return None;
        })
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// Its bit in a set of decoded codings (none for identity, which needs no decoding).
    fn bit(self) -> u8 {
        Coding::DECODED.iter().position(|c| *c == self).map_or(0, |i| 1 << i)
    }
}

fn decoder_for(headers: &HeaderMap) -> Option<Coding> {
    let Some(ce) = headers.get(header::CONTENT_ENCODING) else {
        return Some(Coding::Identity);
    };
    Coding::from_name(ce.to_str().ok()?.trim())
}

fn charset_of(headers: &HeaderMap) -> Option<&'static encoding_rs::Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let label = ct.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"'))
    })?;
    encoding_rs::Encoding::for_label(label.as_bytes())
}

/// Rewrite an HTML response as it streams.
pub async fn rewrite_response(mut parts: Parts, body: Body, page: Page) -> Response<Body> {
    let coding = decoder_for(&parts.headers).unwrap_or(Coding::Identity);
    let gpc = csp::plan(&mut parts.headers);
    let shopping = page.shared.shopping.is_shopping(&page.page_site);
    let ctx = Arc::new(handlers::PageCtx::new(page.policy.clone(), page.page_host.clone(), shopping, gpc));
    // Never an encoding the client did not ask for, whatever the config prefers.
    let out_gzip = page.client_gzip
        && match page.shared.config.rewrite.encoding {
            OutputEncoding::Gzip => true,
            OutputEncoding::Identity => false,
            OutputEncoding::Auto => !page.client_loopback,
        };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    // The body changes, so validators and ranges of the original no longer describe it.
    parts.headers.remove(header::ETAG);
    parts.headers.remove(header::ACCEPT_RANGES);
    if out_gzip {
        parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        parts.headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let encoding = charset_of(&parts.headers);
    let removals = Arc::new(Mutex::new(Removals::default()));
    let shared = page.shared.clone();
    let page_site = page.page_site.clone();
    let r = removals.clone();
    let on_end: Box<dyn FnOnce() + Send> = Box::new(move || {
        let r = r.lock().unwrap_or_else(|p| p.into_inner());
        if !r.list.is_empty() {
            tracing::info!(page = %page_site, removed = r.list.len(), "page rewritten");
            if tracing::enabled!(tracing::Level::DEBUG) {
                // What was removed names URLs on the page: DEBUG, like every URL.
                let what: Vec<String> = r
                    .list
                    .iter()
                    .map(|x| format!("{} {} ({})", x.kind.as_str(), x.what, x.rule.as_deref().unwrap_or("signature")))
                    .collect();
                tracing::debug!(page = %page_site, what = ?what, "removed from the page");
            }
        }
        shared.receipt.record_removals(&page_site, &r.list);
        shared.metrics.add(&shared.metrics.rewrite_removals, r.list.len() as u64);
    });
    let mut stream = RewriteStream::new(body, coding, ctx, removals, encoding, out_gzip, on_end);
    if coding == Coding::Identity {
        return Response::from_parts(parts, StreamBody::new(stream).boxed_unsync());
    }
    // A compressed page is decoded before its head is sent: a body that cannot be decoded is
    // then a 502 the person can read, and the connection stays fit for the next request,
    // instead of a reply with nothing in it.
    use futures_util::StreamExt;
    match stream.next().await {
        Some(Err(e)) => crate::respond::error_page(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            &format!("{}: the page's {} body could not be decoded: {e}", page.page_host, coding.name()),
        ),
        first => {
            let body = futures_util::stream::iter(first).chain(stream);
            Response::from_parts(parts, StreamBody::new(body).boxed_unsync())
        }
    }
}

/// The sink lol_html writes rewritten bytes into; drained after every write.
struct Sink(Arc<Mutex<BytesMut>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(chunk);
    }
}

type Rewriter = lol_html::send::HtmlRewriter<'static, Sink>;

/// lol_html set up for one page: nostalk's handlers, a memory ceiling past which the rest of
/// the page passes unchanged, the page's charset; output goes to `out`. The proxy and
/// `rewrite_with` (tests, benches) both make theirs here, so both run the same rewriter.
fn new_rewriter(
    ctx: Arc<handlers::PageCtx>,
    removals: Arc<Mutex<Removals>>,
    encoding: Option<&'static encoding_rs::Encoding>,
    out: Arc<Mutex<BytesMut>>,
) -> Rewriter {
    let memory = lol_html::MemorySettings::new()
        .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
        .with_graceful_bail_out_on_memory_limit_exceeded(true);
    let mut settings = handlers::settings(ctx, removals)
        .with_memory_settings(memory)
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(true);
    if let Some(enc) = encoding.and_then(lol_html::AsciiCompatibleEncoding::new) {
        settings = settings.with_encoding(enc);
    }
    lol_html::send::HtmlRewriter::new(settings, Sink(out))
}

/// The body after decoding, as an AsyncRead.
type Decoded = Pin<Box<dyn AsyncRead + Send>>;

/// Where the page's bytes come from: the body's own frames when it is not encoded (no copy,
/// no read buffer), or a decoder reading them.
enum Input {
    Frames(Body),
    Decoded { reader: Decoded, buf: Vec<u8> },
}

impl Input {
    fn new(body: Body, coding: Coding) -> Input {
        match coding {
            Coding::Identity => Input::Frames(body),
            _ => Input::Decoded { reader: decode(body, coding), buf: vec![0; READ_CHUNK] },
        }
    }
}

fn decode(body: Body, coding: Coding) -> Decoded {
    use async_compression::tokio::bufread as dec;
    use futures_util::TryStreamExt;
    let frames =
        BodyStream::new(body).try_filter_map(|f| async move { Ok(f.into_data().ok()) }).map_err(std::io::Error::other);
    let reader: Pin<Box<dyn AsyncBufRead + Send>> = Box::pin(tokio_util::io::StreamReader::new(frames));
    match coding {
        Coding::Identity => Box::pin(reader),
        Coding::Gzip => Box::pin(dec::GzipDecoder::new(reader)),
        Coding::Deflate => Box::pin(DeflateAny::new(reader)),
        Coding::Brotli => Box::pin(dec::BrotliDecoder::new(reader)),
        Coding::Zstd => Box::pin(dec::ZstdDecoder::new(reader)),
    }
}

/// `Content-Encoding: deflate` is meant to be zlib, and some servers send raw deflate:
/// decide on the first bytes.
struct DeflateAny {
    inner: Option<Pin<Box<dyn AsyncBufRead + Send>>>,
    chosen: Option<Decoded>,
}

impl DeflateAny {
    fn new(inner: Pin<Box<dyn AsyncBufRead + Send>>) -> Self {
        DeflateAny { inner: Some(inner), chosen: None }
    }
}

impl AsyncRead for DeflateAny {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        use async_compression::tokio::bufread as dec;
        if self.chosen.is_none() {
            let inner = self.inner.as_mut().expect("inner is present until chosen");
            let head = match inner.as_mut().poll_fill_buf(cx) {
                Poll::Ready(Ok(b)) => b,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            // A zlib header: CM = 8 and the 16-bit header divisible by 31.
            let zlib =
                head.len() >= 2 && head[0] & 0x0f == 8 && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
            let inner = self.inner.take().expect("inner is present until chosen");
            self.chosen = Some(if zlib {
                Box::pin(dec::ZlibDecoder::new(inner))
            } else {
                Box::pin(dec::DeflateDecoder::new(inner))
            });
        }
        self.chosen.as_mut().expect("chosen above").as_mut().poll_read(cx, buf)
    }
}

struct RewriteStream {
    input: Input,
    rewriter: Option<Rewriter>,
    out: Arc<Mutex<BytesMut>>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// What a fresh rewriter is made of, after one gave up on an oversized token.
    fresh: Fresh,
    done: bool,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

/// What makes a rewriter for the page, kept to start a new one where the last gave up.
struct Fresh {
    ctx: Arc<handlers::PageCtx>,
    removals: Arc<Mutex<Removals>>,
    encoding: Option<&'static encoding_rs::Encoding>,
    /// How many times a rewriter gave up on this page.
    restarts: usize,
}

/// A page whose tokens overflow the rewriter's memory more often than this is cut off with
/// an error rather than cleaned in pieces.
const MAX_RESTARTS: usize = 16;

impl RewriteStream {
    fn new(
        body: Body,
        coding: Coding,
        ctx: Arc<handlers::PageCtx>,
        removals: Arc<Mutex<Removals>>,
        encoding: Option<&'static encoding_rs::Encoding>,
        gzip: bool,
        on_end: Box<dyn FnOnce() + Send>,
    ) -> Self {
        let out = Arc::new(Mutex::new(BytesMut::with_capacity(READ_CHUNK)));
        let rewriter = new_rewriter(ctx.clone(), removals.clone(), encoding, out.clone());
        RewriteStream {
            input: Input::new(body, coding),
            rewriter: Some(rewriter),
            out,
            gzip: gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            fresh: Fresh { ctx, removals, encoding, restarts: 0 },
            done: false,
            on_end: Some(on_end),
        }
    }

    fn take_out(&mut self) -> Option<Bytes> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if out.is_empty() && !(self.done && self.gzip.is_some()) {
            return None;
        }
        let plain = out.split().freeze();
        drop(out);
        match &mut self.gzip {
            None => Some(plain),
            Some(enc) => {
                let _ = enc.write_all(&plain);
                if self.done {
                    let enc = self.gzip.take().expect("checked above");
                    return enc.finish().ok().map(Bytes::from).filter(|b| !b.is_empty());
                }
                // A sync flush, so the browser can render what came so far.
                let _ = enc.flush();
                let bytes = std::mem::take(enc.get_mut());
                (!bytes.is_empty()).then(|| Bytes::from(bytes))
            }
        }
    }

    /// Feed bytes to the rewriter. A token too big for its memory (a 3 MB attribute, say)
    /// makes lol_html give up; it hands on every byte it was given, and a new rewriter takes
    /// the page from there, so cleaning goes on after the oversized token instead of the rest
    /// of the page passing uncleaned. Takes the fields it needs, so the input's buffer can be
    /// fed without a copy.
    fn feed(
        rewriter: &mut Option<Rewriter>,
        fresh: &mut Fresh,
        out: &Arc<Mutex<BytesMut>>,
        data: &[u8],
    ) -> Result<(), std::io::Error> {
        let Some(rw) = rewriter.as_mut() else { return Ok(()) };
        match rw.write(data) {
            Ok(()) => Ok(()),
            Err(lol_html::errors::RewritingError::MemoryLimitExceeded(_)) if fresh.restarts < MAX_RESTARTS => {
                fresh.restarts += 1;
                tracing::debug!(
                    restarts = fresh.restarts,
                    "a token too big for the rewriter passed as it was; cleaning goes on after it"
                );
                *rewriter = Some(new_rewriter(fresh.ctx.clone(), fresh.removals.clone(), fresh.encoding, out.clone()));
                Ok(())
            }
            Err(e) => {
                *rewriter = None;
                tracing::warn!(error = %e, "HTML rewriter failed; the page is cut off here rather than sent on uncleaned");
                Err(std::io::Error::other(format!("the page could not be cleaned: {e}")))
            }
        }
    }

    fn finish(&mut self) {
        if let Some(rw) = self.rewriter.take() {
            if let Err(e) = rw.end() {
                tracing::warn!(error = %e, "HTML rewriter failed at the end of the page");
            }
        }
        self.done = true;
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl Stream for RewriteStream {
    type Item = Result<http_body::Frame<Bytes>, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.take_out() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            // Feed what the input has; Ok(true) once it has ended.
            let ended = match &mut this.input {
                Input::Frames(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => Ok(true),
                    Poll::Ready(Some(Err(e))) => Err(std::io::Error::other(e)),
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Self::feed(&mut this.rewriter, &mut this.fresh, &this.out, &data).map(|()| false),
                        Err(_) => Ok(false),
                    },
                },
                Input::Decoded { reader, buf } => {
                    let mut rb = ReadBuf::new(buf);
                    match reader.as_mut().poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            tracing::warn!(error = %e, "the page's body could not be decoded; the response ends with an error");
                            Err(e)
                        }
                        Poll::Ready(Ok(())) => {
                            let n = rb.filled().len();
                            if n > 0 {
                                Self::feed(&mut this.rewriter, &mut this.fresh, &this.out, &buf[..n]).map(|()| false)
                            } else {
                                Ok(true)
                            }
                        }
                    }
                }
            };
            match ended {
                Err(e) => {
                    this.finish();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Ok(true) => this.finish(),
                Ok(false) => {}
            }
        }
    }
}

impl Drop for RewriteStream {
    fn drop(&mut self) {
        // A page the browser left before its end still has its removals recorded.
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

/// Rewrite a whole page held in memory, in `READ_CHUNK` pieces as the proxy feeds them, handing
/// each piece of output to `out` as it comes (as the proxy hands it to the browser). Returns
/// what was removed and whether the GPC script went in. For tests, benches and tools.
pub fn rewrite_with(
    html: &[u8],
    policy: Arc<Policy>,
    page_host: &str,
    headers: &mut HeaderMap,
    mut out: impl FnMut(&[u8]),
) -> (Vec<Removal>, bool) {
    let gpc = csp::plan(headers);
    let ctx = Arc::new(handlers::PageCtx::new(policy, page_host.to_string(), false, gpc));
    let removals = Arc::new(Mutex::new(Removals::default()));
    let buf = Arc::new(Mutex::new(BytesMut::new()));
    let encoding = charset_of(headers);
    let mut rw = Some(new_rewriter(ctx.clone(), removals.clone(), encoding, buf.clone()));
    let mut fresh = Fresh { ctx, removals: removals.clone(), encoding, restarts: 0 };
    let mut drain = || {
        let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
        out(&b);
        b.clear();
    };
    for chunk in html.chunks(READ_CHUNK) {
        if RewriteStream::feed(&mut rw, &mut fresh, &buf, chunk).is_err() {
            break;
        }
        drain();
    }
    if let Some(rw) = rw {
        let _ = rw.end();
    }
    drain();
    let r = removals.lock().unwrap_or_else(|p| p.into_inner());
    (r.list.clone(), r.gpc_injected)
}

/// Decode a whole body held in memory with the proxy's own decoders (by its Content-Encoding
/// name), up to `limit` bytes of output. For tests and the fuzz targets.
pub fn decode_all(coding: &str, data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let coding = Coding::from_name(coding)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a coding the rewriter decodes"))?;
    let body = crate::full(Bytes::copy_from_slice(data));
    let mut reader = decode(body, coding);
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut cx = Context::from_waker(std::task::Waker::noop());
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match reader.as_mut().poll_read(&mut cx, &mut rb) {
            // An in-memory body never waits; Pending would mean a decoder waiting on nothing.
            Poll::Pending => return Err(std::io::Error::other("decoder stalled")),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Ok(out),
            Poll::Ready(Ok(())) => {
                out.extend_from_slice(rb.filled());
                if out.len() > limit {
                    return Err(std::io::Error::other("decoded body past the limit"));
                }
            }
        }
    }
}

/// [`rewrite_with`], collecting the output: (page, removals, GPC injected).
pub fn rewrite_bytes(
    html: &[u8],
    policy: Arc<Policy>,
    page_host: &str,
    headers: &mut HeaderMap,
) -> (Vec<u8>, Vec<Removal>, bool) {
    let mut page = Vec::with_capacity(html.len() + 1024);
    let (removals, gpc) = rewrite_with(html, policy, page_host, headers, |c| page.extend_from_slice(c));
    (page, removals, gpc)
}

#[cfg(test)]
mod tests;
