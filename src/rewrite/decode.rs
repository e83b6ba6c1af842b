//! The decoders for the codings the rewriter reads (gzip, deflate in either framing, br,
//! zstd), from async-compression, reading a body's frames as a stream; and `decode_all`, the
//! same decoders over a body held in memory, for tests and the fuzz targets.

use super::coding::Coding;
use super::READ_CHUNK;
use crate::base::Body;
use bytes::Bytes;
use http_body_util::BodyStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// The body after decoding, as an AsyncRead.
pub(crate) type Decoded = Pin<Box<dyn AsyncRead + Send>>;

pub(crate) fn decode(body: Body, coding: Coding) -> Decoded {
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

/// Decode a whole body held in memory with the proxy's own decoders (by its Content-Encoding
/// name), up to `limit` bytes of output. For tests and the fuzz targets.
pub fn decode_all(coding: &str, data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let coding = Coding::from_name(coding)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a coding the rewriter decodes"))?;
    let body = crate::base::full(Bytes::copy_from_slice(data));
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
