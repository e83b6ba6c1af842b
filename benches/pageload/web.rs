//! The simulated web of the page-load benchmark: one origin that answers every host (the
//! page's HTML where a page of ../shared/data/pages lives, a synthetic body shaped by the
//! request anywhere else, the subscription lists at their real paths), behind a link that
//! gives every connection a round trip and a bandwidth. The link is what the browser (direct)
//! or nostalk (proxied) connects to; it tells TLS from plain HTTP by the first byte, so one
//! port serves `http://` and `https://` for every name. Certificates are made per name from
//! the origins' own test CA, which nostalk trusts through `[upstream] extra_roots` and the
//! direct browser through its NSS database.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How the network between the browser's side and the web behaves.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Round-trip time of every connection.
    pub rtt: Duration,
    /// Bytes per second from the web, per response.
    pub bytes_per_sec: f64,
}

/// A response body the origin sends no faster than the shape's bandwidth.
pub type Paced = http_body_util::StreamBody<
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>> + Send>>,
>;

/// `body` in chunks of 16 KiB, each sent once the bandwidth has carried the ones before it.
fn paced(body: Bytes, bytes_per_sec: f64) -> Paced {
    const CHUNK: usize = 16 * 1024;
    let start = Instant::now();
    let stream = futures_util::stream::unfold((body, 0usize), move |(body, sent)| async move {
        if sent >= body.len() {
            return None;
        }
        let end = (sent + CHUNK).min(body.len());
        tokio::time::sleep_until(start + Duration::from_secs_f64(end as f64 / bytes_per_sec)).await;
        Some((Ok(hyper::body::Frame::data(body.slice(sent..end))), (body, end)))
    });
    http_body_util::StreamBody::new(Box::pin(stream))
}

/// One real page, served at `https://{host}/{name}`.
pub struct Page {
    pub name: String,
    pub host: String,
    pub html: Bytes,
}

impl Page {
    pub fn url(&self) -> String {
        format!("https://{}/{}", self.host, self.name)
    }
}

/// What the origin knows: the pages, the lists (to serve and to tell a tracker's script by),
/// the cost a tracker's script is given, and which page is loading.
pub struct Web {
    pages: HashMap<(String, String), Bytes>,
    lists: HashMap<&'static str, Bytes>,
    judge: adblock::Engine,
    /// Main-thread work of a tracker's script, in ms (0: inert, a plain script).
    pub cost_ms: u32,
    pub shape: Shape,
    /// The page now loading (the source a script is judged for).
    pub current: Mutex<String>,
    /// What crossed the link from the web since the last [`Link::reset`].
    pub requests: AtomicU64,
    pub tracker_scripts: AtomicU64,
    /// The tracker scripts served since the last load began (PAGELOAD_TIMING prints them).
    pub tracker_urls: Mutex<Vec<String>>,
}

impl Web {
    pub fn new(pages: &[Page], lists_dir: &Path, cost_ms: u32, shape: Shape) -> Web {
        let mut lists = HashMap::new();
        let mut rules = String::new();
        for name in ["easylist", "easyprivacy"] {
            let text = std::fs::read(lists_dir.join(format!("{name}.txt"))).expect("list snapshot");
            rules.push_str(&String::from_utf8_lossy(&text));
            rules.push('\n');
            lists.insert(name, Bytes::from(text));
        }
        let mut set = adblock::lists::FilterSet::new(false);
        set.add_filter_list(rules, adblock::lists::ParseOptions::default());
        Web {
            pages: pages.iter().map(|p| ((p.host.clone(), format!("/{}", p.name)), p.html.clone())).collect(),
            lists,
            judge: adblock::Engine::new_with_filter_set(set),
            cost_ms,
            shape,
            current: Mutex::new(String::new()),
            requests: AtomicU64::new(0),
            tracker_scripts: AtomicU64::new(0),
            tracker_urls: Mutex::new(Vec::new()),
        }
    }

    /// Whether EasyList or EasyPrivacy blocks `url` as a script of the page now loading.
    fn tracker_script(&self, url: &str) -> bool {
        let source = self.current.lock().unwrap().clone();
        adblock::request::Request::new(url, &source, "script", "GET")
            .map(|r| self.judge.check_network_request(&r).should_block())
            .unwrap_or(false)
    }

    fn answer(&self, req: &Request<Incoming>, scheme: &str) -> Response<Paced> {
        let resp = self.answer_whole(req, scheme);
        let rate = self.shape.bytes_per_sec;
        resp.map(|b| paced(b, rate))
    }

    fn answer_whole(&self, req: &Request<Incoming>, scheme: &str) -> Response<Bytes> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().host())
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let path = req.uri().path().to_string();
        let url = format!("{scheme}://{host}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        let ok = |ct: &str, body: Bytes| {
            Response::builder()
                .header("content-type", ct)
                .header("cache-control", "max-age=3600")
                .body(body)
                .expect("a static head")
        };
        if let Some(html) = self.pages.get(&(host.clone(), path.clone())) {
            return ok("text/html; charset=utf-8", html.clone());
        }
        if host == "easylist.to" {
            for (name, text) in &self.lists {
                if path == format!("/easylist/{name}.txt") {
                    return ok("text/plain", text.clone());
                }
            }
        }
        if req.method() == hyper::Method::POST || path.contains("nostalk-bench-beacon") {
            return Response::builder().status(204).body(Bytes::new()).expect("a static head");
        }
        let dest = req.headers().get("sec-fetch-dest").and_then(|v| v.to_str().ok()).unwrap_or("");
        let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        let kind = match dest {
            "script" => "script",
            "style" => "style",
            "image" => "image",
            "font" => "font",
            "document" | "iframe" | "frame" => "document",
            "" => match ext.as_str() {
                "js" => "script",
                "css" => "style",
                "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "ico" => "image",
                "woff" | "woff2" | "ttf" => "font",
                _ => "other",
            },
            _ => "other",
        };
        let chained = req.uri().query().is_some_and(|q| q.contains("nostalk-bench=chain"));
        let seed = fnv(&url);
        let size = |lo: u64, hi: u64| (lo + seed % (hi - lo)) as usize;
        match kind {
            "script" if self.cost_ms > 0 && (chained || self.tracker_script(&url)) => {
                self.tracker_scripts.fetch_add(1, Ordering::Relaxed);
                self.tracker_urls.lock().unwrap().push(url.clone());
                // A tracker's script: its work, two beacons, and (unless it is the chained
                // one itself) one more script of the tracker's, which does the same.
                let origin = format!("{scheme}://{host}");
                let chain = if chained {
                    String::new()
                } else {
                    format!(
                        "var s = document.createElement('script');\n\
                         s.src = '{origin}/chained.js?nostalk-bench=chain';\n\
                         (document.head || document.documentElement).appendChild(s);\n"
                    )
                };
                let js = format!(
                    "(function () {{\n\
                     var end = performance.now() + {cost};\n\
                     while (performance.now() < end) {{}}\n\
                     try {{ navigator.sendBeacon('{origin}/nostalk-bench-beacon?e=view&cid=' + Math.random(), 'x'); }} catch (e) {{}}\n\
                     new Image().src = '{origin}/nostalk-bench-beacon.gif?e=load&uid=' + Math.random();\n\
                     {chain}}})();\n",
                    cost = self.cost_ms
                );
                ok("application/javascript", padded(js.as_bytes(), b"/*", b"*/", 30_000))
            }
            "script" => ok("application/javascript", padded(b"/* a script */\n", b"/*", b"*/", size(4_000, 60_000))),
            "style" => ok("text/css", padded(b"/* a stylesheet */\n", b"/*", b"*/", size(2_000, 40_000))),
            "image" => ok("image/gif", padded(GIF, b"", b"", size(1_000, 80_000))),
            "font" => ok("font/woff2", padded(b"wOF2", b"", b"", size(20_000, 60_000))),
            "document" => ok(
                "text/html",
                padded(b"<!doctype html><title>frame</title><p>a frame</p>", b"<!--", b"-->", size(1_000, 4_000)),
            ),
            _ => ok("application/json", Bytes::from_static(b"{}")),
        }
    }
}

/// A 1x1 GIF (trailing bytes after it are ignored by decoders).
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// `head`, then a comment (`open` .. `close`, or raw filler when both are empty) up to `size`.
fn padded(head: &[u8], open: &[u8], close: &[u8], size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size.max(head.len()) + 8);
    v.extend_from_slice(head);
    v.extend_from_slice(open);
    while v.len() + close.len() < size {
        v.push(b'x');
    }
    v.extend_from_slice(close);
    Bytes::from(v)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The origins' CA: a certificate per server name, made on first use and kept.
pub struct Certs {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    key: rcgen::KeyPair,
    made: Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
    pub pem_path: PathBuf,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certs")
    }
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "nostalk pageload origins CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join("origins-ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Certs {
            issuer: rcgen::Issuer::new(params, key),
            key: rcgen::KeyPair::generate().unwrap(),
            made: Mutex::new(HashMap::new()),
            pem_path,
        }
    }

    fn for_name(&self, name: &str) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut made = self.made.lock().unwrap();
        if let Some(k) = made.get(name) {
            return Some(k.clone());
        }
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).ok()?;
        let cert = params.signed_by(&self.key, &self.issuer).ok()?;
        let der = rustls::pki_types::PrivateKeyDer::try_from(self.key.serialize_der()).ok()?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).ok()?;
        let k = Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer));
        made.insert(name.to_string(), k.clone());
        Some(k)
    }
}

impl rustls::server::ResolvesServerCert for Certs {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.for_name(hello.server_name().unwrap_or("unnamed.test"))
    }
}

/// The origin's two listeners (TLS and plain), behind the link.
async fn serve_origin(web: Arc<Web>, certs: Arc<Certs>) -> (SocketAddr, SocketAddr) {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(certs);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (tls_listener.local_addr().unwrap(), plain_listener.local_addr().unwrap());
    for (listener, acceptor) in [(tls_listener, Some(acceptor)), (plain_listener, None)] {
        let web = web.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let _ = stream.set_nodelay(true);
                let (web, acceptor) = (web.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let scheme = if acceptor.is_some() { "https" } else { "http" };
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let web = web.clone();
                        async move { Ok::<_, Infallible>(web.answer(&req, scheme)) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(a) => {
                            let Ok(tls) = a.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                });
            }
        });
    }
    addrs
}

/// The link: the one address the simulated web has. Every connection through it waits a
/// round trip before its first bytes reach the origin (TCP's handshake), and half a round
/// trip each way after that. (The bandwidth is the origin's, per response.)
pub struct Link {
    pub addr: SocketAddr,
    pub bytes: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Link {
    pub async fn start(web: Arc<Web>, certs: Arc<Certs>, shape: Shape) -> Link {
        let (tls_addr, plain_addr) = serve_origin(web, certs).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (b, o) = (bytes.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let b = b.clone();
                let task = tokio::spawn(async move {
                    let accepted = Instant::now();
                    let _ = client.set_nodelay(true);
                    let mut first = [0u8; 1];
                    if client.peek(&mut first).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let to = if first[0] == 0x16 { tls_addr } else { plain_addr };
                    let Ok(server) = TcpStream::connect(to).await else { return };
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = relay(cr, sw, accepted + shape.rtt, shape.rtt / 2, None);
                    let down = relay(sr, cw, accepted, shape.rtt / 2, Some(b));
                    tokio::join!(up, down);
                });
                let mut open = o.lock().unwrap();
                open.retain(|t| !t.is_finished());
                open.push(task.abort_handle());
            }
        });
        Link { addr, bytes, open }
    }

    /// Close every connection through the link (a cold start for the next page load, for the
    /// browser's connections and nostalk's pooled ones alike).
    pub fn reset(&self) {
        for t in self.open.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Copies `from` to `to`, each chunk delivered `delay` after it was read (and not before
/// `not_before` + `delay`), counting the bytes in `count` when given.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    not_before: Instant,
    delay: Duration,
    count: Option<Arc<AtomicU64>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = Instant::now().max(not_before) + delay;
            if let Some(c) = &count {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
            if tx.send((at, Bytes::copy_from_slice(&buf[..n]))).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
