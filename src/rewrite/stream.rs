//! The rewriting stream: a page's body read as it arrives (its own frames, or through a
//! decoder), fed chunk by chunk to lol_html, and its output handed on as each chunk comes out,
//! gzipped with a sync flush per chunk when the browser is sent gzip. A token too big for the
//! rewriter's memory passes as it was and a new rewriter takes the page on after it, where the
//! tokenizer's state is known again (resync.rs).

use super::coding::Coding;
use super::decode::{decode, Decoded};
use super::handlers::{self, Handlers};
use super::resync::Resync;
use super::{MAX_REWRITER_MEMORY, READ_CHUNK};
use crate::base::{Body, BoxError};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::Body as _;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// The sink lol_html writes rewritten bytes into; drained after every write.
pub(crate) struct Sink(Arc<Mutex<BytesMut>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        crate::base::lock(&self.0).extend_from_slice(chunk);
    }
}

pub(crate) type Rewriter = lol_html::send::HtmlRewriter<'static, Sink>;

/// lol_html set up for one page: nostalk's handlers, a memory ceiling past which the rest of
/// the page passes unchanged, the page's charset; output goes to `out`. The proxy and
/// `rewrite_with` (tests, benches) both make theirs here, so both run the same rewriter.
pub(crate) fn new_rewriter(
    page: Arc<Handlers>,
    encoding: Option<&'static encoding_rs::Encoding>,
    out: Arc<Mutex<BytesMut>>,
    bail_at: Arc<AtomicUsize>,
) -> Rewriter {
    let memory = lol_html::MemorySettings::new()
        .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
        .with_graceful_bail_out_on_memory_limit_exceeded(true);
    let mut settings =
        handlers::settings(page).with_memory_settings(memory).with_strict(false).with_adjust_charset_on_meta_tag(true);
    if let Some(enc) = encoding.and_then(lol_html::AsciiCompatibleEncoding::new) {
        settings = settings.with_encoding(enc);
    }
    // Giving up, lol_html writes back raw every byte from the oversized token's first: where
    // they begin in the output is noted, for the next rewriter to find the token's end.
    let sink = out.clone();
    settings = settings.append_bail_out_handler(lol_html::bail_out!(move |_, _| {
        bail_at.store(crate::base::lock(&sink).len(), Ordering::Relaxed);
    }));
    lol_html::send::HtmlRewriter::new(settings, Sink(out))
}

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

/// The rewritten page as a stream of body frames: input read (and decoded), fed to lol_html,
/// its output handed on (gzipped per chunk when asked) as soon as it comes out.
pub(crate) struct RewriteStream {
    input: Input,
    rewriter: Option<Rewriter>,
    out: Arc<Mutex<BytesMut>>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// What a fresh rewriter is made of, after one gave up on an oversized token.
    fresh: Fresh,
    done: bool,
}

/// What makes a rewriter for the page, kept to start a new one where the last gave up.
pub(crate) struct Fresh {
    pub(crate) page: Arc<Handlers>,
    pub(crate) encoding: Option<&'static encoding_rs::Encoding>,
    /// How many times a rewriter gave up on this page.
    pub(crate) restarts: usize,
    /// Where, in the output, the last rewriter to give up began writing back raw bytes.
    bail_at: Arc<AtomicUsize>,
    /// Following an oversized token to its end, with no rewriter meanwhile.
    resync: Option<Resync>,
}

impl Fresh {
    pub(crate) fn new(page: Arc<Handlers>, encoding: Option<&'static encoding_rs::Encoding>) -> Fresh {
        Fresh { page, encoding, restarts: 0, bail_at: Arc::default(), resync: None }
    }

    pub(crate) fn rewriter(&self, out: &Arc<Mutex<BytesMut>>) -> Rewriter {
        new_rewriter(self.page.clone(), self.encoding, out.clone(), self.bail_at.clone())
    }
}

/// A page whose tokens overflow the rewriter's memory more often than this is cut off with
/// an error rather than cleaned in pieces.
const MAX_RESTARTS: usize = 16;

impl RewriteStream {
    pub(crate) fn new(
        body: Body,
        coding: Coding,
        page: Arc<Handlers>,
        encoding: Option<&'static encoding_rs::Encoding>,
        gzip: bool,
    ) -> Self {
        let out = Arc::new(Mutex::new(BytesMut::with_capacity(READ_CHUNK)));
        let fresh = Fresh::new(page, encoding);
        RewriteStream {
            input: Input::new(body, coding),
            rewriter: Some(fresh.rewriter(&out)),
            out,
            gzip: gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            fresh,
            done: false,
        }
    }

    fn take_out(&mut self) -> Option<Bytes> {
        let mut out = crate::base::lock(&self.out);
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
    /// makes lol_html give up; it hands on every byte it was given, raw. Those from the
    /// oversized token's first on are taken back and followed to the token's end (and through
    /// the raw text it may open) as the HTML tokenizer would; a new rewriter takes the page
    /// from there, so cleaning goes on after the token instead of the rest of the page passing
    /// uncleaned, or being read from inside the token. Takes the fields it needs, so the
    /// input's buffer can be fed without a copy.
    pub(crate) fn feed(
        rewriter: &mut Option<Rewriter>,
        fresh: &mut Fresh,
        out: &Arc<Mutex<BytesMut>>,
        data: &[u8],
    ) -> Result<(), std::io::Error> {
        if let Some(sync) = &mut fresh.resync {
            let Some(at) = sync.scan(data) else {
                crate::base::lock(out).extend_from_slice(data);
                return Ok(());
            };
            crate::base::lock(out).extend_from_slice(&data[..at]);
            fresh.resync = None;
            *rewriter = Some(fresh.rewriter(out));
            return Self::feed(rewriter, fresh, out, &data[at..]);
        }
        let Some(rw) = rewriter.as_mut() else { return Ok(()) };
        match rw.write(data) {
            Ok(()) => Ok(()),
            Err(lol_html::errors::RewritingError::MemoryLimitExceeded(_)) if fresh.restarts < MAX_RESTARTS => {
                fresh.restarts += 1;
                tracing::debug!(
                    restarts = fresh.restarts,
                    "a token too big for the rewriter passed as it was; cleaning goes on after it"
                );
                *rewriter = None;
                let raw = {
                    let mut o = crate::base::lock(out);
                    let at = fresh.bail_at.load(Ordering::Relaxed).min(o.len());
                    o.split_off(at)
                };
                fresh.resync = Some(Resync::default());
                Self::feed(rewriter, fresh, out, &raw)
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
