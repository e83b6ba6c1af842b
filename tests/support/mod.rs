//! Test support: the proxy started in-process on 127.0.0.1, and local origins (HTTP and HTTPS,
//! h1 and h2) that record what they receive, named through `[upstream] resolve`.
#![allow(dead_code)]

pub mod cdp;
pub mod lists;
pub mod postgres;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub type OBody = BoxBody<Bytes, std::io::Error>;
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<OBody>> + Send>> + Send + Sync>;

pub fn body(b: impl Into<Bytes>) -> OBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An HTML page as an origin answers it.
pub fn html(text: &'static str) -> Response<OBody> {
    Response::builder().header("content-type", "text/html; charset=utf-8").body(body(text)).unwrap()
}

/// What an origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// A copy of `headers` that owns its bytes: hyper's header values are slices of the
/// connection's read buffer, so keeping them would keep every buffer (a long soak's origin
/// then held gigabytes of request bodies).
fn owned(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_bytes(value.as_bytes()) {
            out.append(name.clone(), v);
        }
    }
    out
}

/// A local origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A test CA of the origins' own (not nostalk's), and its PEM on disk for `extra_roots`.
pub struct OriginCa {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem_path: PathBuf,
    pub pem: String,
}

impl OriginCa {
    pub fn new(dir: &Path) -> OriginCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "test origins CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let pem_path = dir.join(format!("origin-ca-{}.pem", rand::random::<u32>()));
        std::fs::write(&pem_path, &pem).unwrap();
        OriginCa { issuer: rcgen::Issuer::new(params, key), pem_path, pem }
    }

    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<OBody>> + Send + 'static,
{
    Arc::new(move |r| Box::pin(f(r)))
}

/// Start an origin; with `tls`, it serves HTTPS (h2 or http/1.1 by ALPN).
pub async fn origin(tls: Option<Arc<rustls::ServerConfig>>, h: Handler) -> Origin {
    origin_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), tls, h)
}

/// An origin on a listener the test bound (to reuse a port, say).
pub fn origin_on(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, h: Handler) -> Origin {
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (seen.clone(), connections.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            c2.fetch_add(1, Ordering::SeqCst);
            let (seen, h, tls) = (s2.clone(), h.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, h) = (seen.clone(), h.clone());
                    async move {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            uri: req.uri().to_string(),
                            version: req.version(),
                            headers: owned(req.headers()),
                        });
                        Ok::<_, Infallible>(h(req).await)
                    }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // As many headers as a proxy may pass on (the proxy's own limit is under test).
                builder.http1().max_headers(1000);
                match tls {
                    None => {
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                    Some(cfg) => {
                        let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await else { return };
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await;
                    }
                }
            });
        }
    });
    Origin { addr, seen, connections, _task: task }
}

/// An origin that answers every request with `status`, `content_type` and `text`.
pub async fn static_origin(
    tls: Option<Arc<rustls::ServerConfig>>,
    content_type: &'static str,
    text: &'static str,
) -> Origin {
    origin(
        tls,
        handler(move |_req| async move {
            Response::builder().header("content-type", content_type).body(body(text)).unwrap()
        }),
    )
    .await
}

/// The config a test proxy runs with: the caller's `extra`, with `resolve`, the CA, list cache
/// and choices store in `dir`, listening on `listen` ("127.0.0.1:0" unless `extra` names one).
pub fn compose_config(dir: &Path, resolve: &[String], extra_toml: &str, reach_loopback: bool, listen: &str) -> String {
    let resolve_toml: Vec<String> = resolve.iter().map(|r| format!("{r:?}")).collect();
    let mut upstream_lines = format!("resolve = [{}]", resolve_toml.join(", "));
    if reach_loopback {
        upstream_lines.push_str("\nallow = [\"127.0.0.0/8\", \"::1/128\"]");
    }
    // The caller's own `[server]` keys go in the one `[server]` table, before the defaults
    // they leave out.
    let (before, server_keys, after) = match extra_toml.split_once("[server]\n") {
        None => (extra_toml, "", ""),
        Some((before, rest)) => {
            let end = rest.find("\n[").map(|i| i + 1).unwrap_or(rest.len());
            (before, &rest[..end], &rest[end..])
        }
    };
    let mut server = server_keys.to_string();
    for (key, default) in [("listen", listen), ("shutdown_grace", "\"2s\"")] {
        if !server_keys.lines().any(|l| l.trim_start().starts_with(key)) {
            server.push_str(&format!("{key} = {default}\n"));
        }
    }
    let mut toml = format!("{before}\n[server]\n{server}[ca]\ndir = {:?}\n", dir.join("ca").display().to_string(),);
    toml.push_str(after);
    // Tests reach nothing but loopback: no default subscription to fetch from the web.
    let cache =
        format!("list_cache_dir = {:?}\ndefault_subscriptions = false", dir.join("lists").display().to_string());
    if toml.contains("[policy]") {
        toml = toml.replacen("[policy]", &format!("[policy]\n{cache}"), 1);
    } else {
        toml.push_str(&format!("\n[policy]\n{cache}\n"));
    }
    // The person's choices go in the temp dir too: no test sees another's down-votes.
    let store = format!("store = {:?}", dir.join("choices.sqlite3").display().to_string());
    if extra_toml.contains("\nstore = ") {
        // The caller's own store (a shared database).
    } else if toml.contains("[receipt]") {
        toml = toml.replacen("[receipt]", &format!("[receipt]\n{store}"), 1);
    } else {
        toml.push_str(&format!("\n[receipt]\n{store}\n"));
    }
    // `[upstream]` may come from the caller; resolve goes in it either way.
    if toml.contains("[upstream]") {
        toml = toml.replacen("[upstream]", &format!("[upstream]\n{upstream_lines}"), 1);
    } else {
        toml.push_str(&format!("\n[upstream]\n{upstream_lines}\n"));
    }
    toml
}

/// The proxy, running in-process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub shared: Arc<nostalk::proxy::state::Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Start with a config: `resolve` entries are added, the CA and list cache go in a temp dir.
    pub async fn start(resolve: &[String], extra_toml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, resolve, extra_toml).await
    }

    pub async fn start_in(dir: tempfile::TempDir, resolve: &[String], extra_toml: &str) -> Proxy {
        Self::start_with(dir, resolve, extra_toml, true).await
    }

    /// Start with the default destination filtering: the test's own origins on loopback are
    /// not reachable (the other starts let `[upstream]` reach 127.0.0.0/8, where they run).
    pub async fn start_strict(resolve: &[String], extra_toml: &str) -> Proxy {
        Self::start_with(tempfile::tempdir().unwrap(), resolve, extra_toml, false).await
    }

    async fn start_with(dir: tempfile::TempDir, resolve: &[String], extra_toml: &str, reach_loopback: bool) -> Proxy {
        let toml = compose_config(dir.path(), resolve, extra_toml, reach_loopback, "\"127.0.0.1:0\"");
        let path = dir.path().join("nostalk.toml");
        std::fs::write(&path, &toml).unwrap();
        let cfg = nostalk::Config::load(&path).unwrap_or_else(|e| panic!("test config invalid: {e}\n{toml}"));
        let server = nostalk::Server::bind(cfg).await.unwrap();
        let addr = server.local_addr();
        let shared = server.shared();
        let ca_pem =
            std::fs::read_to_string(dir.path().join("ca").join(nostalk::tls::CA_CERT_FILE)).unwrap_or_default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Proxy { addr, dir, ca_pem, shared, stop: Some(tx), task: Some(task) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca").join(nostalk::tls::CA_CERT_FILE)
    }

    /// A reqwest client through the proxy, trusting nostalk's CA and `extra` roots.
    pub fn client(&self, extra: &[&str]) -> reqwest::Client {
        self.client_builder(extra).build().unwrap()
    }

    pub fn client_builder(&self, extra: &[&str]) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .timeout(std::time::Duration::from_secs(30));
        if !self.ca_pem.is_empty() {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap());
        }
        for pem in extra {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        b
    }

    /// Send the shutdown signal and return at once (the server drains in the background).
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
    }

    /// Stop, keeping the directory (CA, list cache, choices store) for the next start.
    pub async fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        self.stop().await;
        dir
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `host:port:127.0.0.1:origin_port` for the resolve list.
pub fn resolve(host: &str, port: u16, origin: &Origin) -> String {
    format!("{host}:{port}:127.0.0.1:{}", origin.port())
}

/// Run curl without blocking the test's runtime; returns (exit ok, stdout bytes, stderr).
pub async fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (scripts/test installs it)");
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `../shared/data`, or None (with a message) when it is not beside the repo.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/data is not beside the repository; this test needs its real data");
        None
    }
}

/// A page's own host, from its canonical link or og:url, as it was served.
pub fn canonical_host(html: &str) -> Option<String> {
    for marker in ["rel=\"canonical\" href=\"", "property=\"og:url\" content=\""] {
        if let Some(i) = html.find(marker) {
            let rest = &html[i + marker.len()..];
            let u = url::Url::parse(&rest[..rest.find('"')?]).ok()?;
            return u.host_str().map(str::to_ascii_lowercase);
        }
    }
    None
}

/// An origin that accepts connections and never says a word (held until the task is
/// dropped): the far side of tunnels left idle. Returns its port.
pub async fn silent_origin() -> (u16, tokio::task::JoinHandle<()>) {
    let quiet = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = quiet.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = std::collections::VecDeque::new();
        while let Ok((s, _)) = quiet.accept().await {
            held.push_back(s);
            if held.len() > 2000 {
                held.pop_front();
            }
        }
    });
    (port, task)
}

/// The release binary, `nostalk run`, on a free loopback port with the test config (see
/// [`compose_config`]); stopped with SIGTERM when dropped.
pub struct Binary {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub child: std::process::Child,
}

impl Binary {
    pub async fn start(resolve: &[String], extra_toml: &str) -> Binary {
        Self::start_limited(resolve, extra_toml, None).await
    }

    /// [`Binary::start`], with the process's open-file limit set to `nofile` when given.
    pub async fn start_limited(resolve: &[String], extra_toml: &str, nofile: Option<u64>) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let toml = compose_config(dir.path(), resolve, extra_toml, true, &format!("\"127.0.0.1:{port}\""));
        let path = dir.path().join("nostalk.toml");
        std::fs::write(&path, &toml).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"));
        cmd.args(["run", "--config", path.to_str().unwrap()])
            .env("XDG_DATA_HOME", dir.path())
            .env("RUST_LOG", std::env::var("NOSTALK_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::null());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let b = Binary { port, dir, child };
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the proxy did not start:\n{toml}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        b
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nostalk.toml")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca").join(nostalk::tls::CA_CERT_FILE)).unwrap()
    }

    /// A reqwest client through the binary, trusting its CA and `extra` roots.
    pub fn client(&self, extra: &[&str]) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .timeout(std::time::Duration::from_secs(60))
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).unwrap());
        for pem in extra {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A process's resident memory, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The config of a browser test: the origins' CA trusted upstream, and a block list and an ad
/// list of `block` and `ads` rules, written into `dir` (test-block and test-ads, as the
/// receipt names them).
pub fn block_and_ad_lists(dir: &Path, origin_ca: &Path, block: &str, ads: &str) -> String {
    let (block_path, ad_path) = (dir.join("block.txt"), dir.join("ads.txt"));
    std::fs::write(&block_path, block).unwrap();
    std::fs::write(&ad_path, ads).unwrap();
    format!(
        "[upstream]\nextra_roots = [{:?}]\n\n[[lists]]\nname = \"test-block\"\npath = {:?}\nverdict = \"block\"\n\n\
         [[lists]]\nname = \"test-ads\"\npath = {:?}\nverdict = \"ad\"\n",
        origin_ca.display().to_string(),
        block_path.display().to_string(),
        ad_path.display().to_string()
    )
}
