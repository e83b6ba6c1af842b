//! A small Chrome DevTools Protocol client for the browser tests: starts Debian's headless
//! Chromium with a debugging port, opens tabs, navigates, evaluates script, clicks with real
//! input events (a page's script cannot tell them from a person's: `isTrusted` is true), and
//! takes screenshots. Written here over tokio-tungstenite rather than taking chromiumoxide,
//! whose generated protocol bindings would double the tests' build time for the six commands
//! these tests send.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Debian's chromium, as scripts/test installs it.
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// True (and a SKIPPED line) when Debian's chromium is not installed.
pub fn chromium_missing() -> bool {
    let missing = !Path::new(CHROMIUM).exists();
    if missing {
        eprintln!("SKIPPED: {CHROMIUM} is missing; scripts/test installs Debian's chromium");
    }
    missing
}

pub fn chromium_flags(profile: &Path, proxy: &str) -> Vec<String> {
    let mut f: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-default-apps",
        "--disable-features=OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,AutofillServerCommunication,MediaRouter",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.push(format!("--user-data-dir={}", profile.display()));
    f.push(format!("--proxy-server={proxy}"));
    f
}

/// A HOME whose NSS database trusts `ca_pem`, and a profile that allows third-party cookies
/// (so that it is the proxy, not the browser, that keeps them from the ad server).
pub fn browser_home(dir: &Path, ca_pem: Option<&Path>) -> (PathBuf, PathBuf) {
    let home = dir.join("home");
    let nssdb = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new("certutil").args(args).output().expect("certutil (libnss3-tools)");
        assert!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    if let Some(ca_pem) = ca_pem {
        run(&["-A", "-d", &db, "-n", "nostalk-test", "-t", "C,,", "-i", ca_pem.to_str().unwrap()]);
    }
    let profile = dir.join("profile");
    std::fs::create_dir_all(profile.join("Default")).unwrap();
    std::fs::write(
        profile.join("Default").join("Preferences"),
        r#"{"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": false}}"#,
    )
    .unwrap();
    (home, profile)
}

/// Trust one more CA in the browser's NSS database under `home` (an origin's own, for a site
/// nostalk passes through untouched).
pub fn trust_in_browser(home: &Path, pem: &Path, nickname: &str) {
    let db = format!("sql:{}", home.join(".pki").join("nssdb").display());
    let out = std::process::Command::new("certutil")
        .args(["-A", "-d", &db, "-n", nickname, "-t", "C,,", "-i", pem.to_str().unwrap()])
        .output()
        .expect("certutil (libnss3-tools)");
    assert!(out.status.success(), "certutil: {}", String::from_utf8_lossy(&out.stderr));
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    child: tokio::process::Child,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Browser {
    /// Chromium with `flags` (the profile among them), driven over its debugging port.
    pub async fn launch(chromium: &str, home: &Path, profile: &Path, flags: Vec<String>) -> Browser {
        let port_file = profile.join("DevToolsActivePort");
        let _ = std::fs::remove_file(&port_file);
        let child = tokio::process::Command::new(chromium)
            .env("HOME", home)
            .args(flags)
            .args(["--remote-debugging-port=0", "--window-size=1000,1400", "about:blank"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium started");
        let started = std::time::Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                if t.lines().count() >= 2 {
                    break t;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(60), "chromium wrote no DevToolsActivePort in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut lines = text.lines();
        let port = lines.next().unwrap().trim();
        let path = lines.next().unwrap().trim();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")).await.expect("devtools");
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(Message::Text(m.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let p = pending.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        Browser { child, out, pending, next: AtomicU64::new(1), reader }
    }

    /// One command; its result, or a panic with the protocol's error.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params).await {
            Ok(v) => v,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// One command; its result, or the protocol's error.
    pub async fn try_call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out.send(msg.to_string()).expect("devtools connection open");
        let v = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in 60 s"))
            .expect("devtools connection open");
        match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v["result"].clone()),
        }
    }

    /// A new tab.
    pub async fn tab(&self) -> Tab<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let target = target["targetId"].as_str().unwrap().to_string();
        let s = self.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true })).await;
        let session = s["sessionId"].as_str().unwrap().to_string();
        let tab = Tab { browser: self, session, target };
        tab.cmd("Page.enable", json!({})).await;
        tab.cmd("Runtime.enable", json!({})).await;
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.start_kill();
    }
}

pub struct Tab<'b> {
    browser: &'b Browser,
    session: String,
    pub target: String,
}

impl Tab<'_> {
    pub async fn cmd(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Navigate, and wait for the new document's load.
    pub async fn goto(&self, url: &str) {
        // The old document answers "complete" until the new one replaces it: mark it.
        self.eval("window.__nostalkOld = true").await;
        self.cmd("Page.navigate", json!({ "url": url })).await;
        self.wait_for("!window.__nostalkOld && document.readyState === 'complete'", 30).await;
    }

    /// The value of a script expression (promises awaited).
    pub async fn eval(&self, expression: &str) -> Value {
        let r = self
            .cmd("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }))
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("script `{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (then returns its value), for at most `secs`.
    pub async fn wait_for(&self, expression: &str, secs: u64) -> Value {
        let started = std::time::Instant::now();
        let guarded = format!("(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()");
        loop {
            // A page navigating away (a click on a link, say) answers with an error until the
            // new document is there: not yet, then.
            let params = json!({ "expression": guarded, "returnByValue": true, "awaitPromise": true });
            let v = match self.browser.try_call(Some(&self.session), "Runtime.evaluate", params).await {
                Ok(r) => r["result"]["value"].clone(),
                Err(_) => Value::Null,
            };
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if started.elapsed() > Duration::from_secs(secs) {
                let html = self.eval("document.documentElement.outerHTML").await;
                panic!("`{expression}` not true within {secs} s; the page:\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A person's click (trusted input events) at the centre of the first element `selector`
    /// finds in the page.
    pub async fn click(&self, selector: &str) {
        let sel = json!(selector);
        let rect = self
            .wait_for(
                &format!(
                    "(() => {{ const e = document.querySelector({sel}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
                     const r = e.getBoundingClientRect(); return r.width > 0 ? [r.left + r.width / 2, r.top + r.height / 2] : null; }})()"
                ),
                20,
            )
            .await;
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        self.click_at(x, y).await;
    }

    pub async fn click_at(&self, x: f64, y: f64) {
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.cmd(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": if kind == "mousePressed" { 1 } else { 0 }, "clickCount": 1 }),
            )
            .await;
        }
    }

    /// The URLs of every frame in the tab, the top one first, then cross-origin frames (which
    /// the page's own script cannot see into; of any tab).
    pub async fn frame_urls(&self) -> Vec<String> {
        fn walk(node: &Value, out: &mut Vec<String>) {
            if let Some(u) = node["frame"]["url"].as_str() {
                out.push(u.to_string());
            }
            if let Some(kids) = node["childFrames"].as_array() {
                for k in kids {
                    walk(k, out);
                }
            }
        }
        let tree = self.cmd("Page.getFrameTree", json!({})).await;
        let mut out = Vec::new();
        walk(&tree["frameTree"], &mut out);
        // A cross-origin frame runs in a process of its own: a target, not in the tree.
        let targets = self.browser.call(None, "Target.getTargets", json!({})).await;
        for t in targets["targetInfos"].as_array().into_iter().flatten() {
            if t["type"] == "iframe" {
                out.extend(t["url"].as_str().map(str::to_string));
            }
        }
        out
    }

    /// Evaluates `expression` inside the cross-origin frame whose URL contains `part`.
    pub async fn eval_in_frame(&self, part: &str, expression: &str) -> Value {
        let targets = self.browser.call(None, "Target.getTargets", json!({})).await;
        let target = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "iframe" && t["url"].as_str().is_some_and(|u| u.contains(part)))
            .unwrap_or_else(|| panic!("no frame of {part}: {targets}"));
        let s = self
            .browser
            .call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))
            .await;
        let session = s["sessionId"].as_str().unwrap();
        let r = self
            .browser
            .call(Some(session), "Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }))
            .await;
        r["result"]["value"].clone()
    }

    /// Waits until a frame whose URL contains `part` has committed, then a moment for it to
    /// lay out; returns its URL.
    pub async fn wait_for_frame(&self, part: &str, secs: u64) -> String {
        let started = std::time::Instant::now();
        loop {
            if let Some(u) = self.frame_urls().await.into_iter().find(|u| u.contains(part)) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return u;
            }
            assert!(started.elapsed() < Duration::from_secs(secs), "no frame of {part} in {secs} s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the tab as it is shown, written to `path`.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        use base64::Engine as _;
        let r = self.cmd("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
        path.to_path_buf()
    }
}
