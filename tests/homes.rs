//! A laptop and a home: the PAC file (and `/wpad.dat`, the same file for automatic proxy
//! discovery) sends the web through nostalk and leaves the LAN direct. Headless Chromium loads
//! the real PAC file from the proxy (`--proxy-pac-url`): a plain host name and a `.local` name
//! reach their device directly, a public name goes through nostalk (its origin sees the
//! `Sec-GPC` nostalk adds). The PAC's address ranges are checked by running the file in
//! Chromium's JavaScript with the PAC helper functions written out as the PAC format defines
//! them, for literals no loopback test can reach (192.168.x, 10.x, fd00::, a public address).

mod support;

use base64::Engine as _;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use support::cdp::{browser_home, chromium_flags, chromium_missing, Browser, CHROMIUM};
use support::*;

/// The PAC format's helpers, as browsers define them, for literal addresses only (the file
/// never hands them a name).
const PAC_HELPERS: &str = r#"
function isPlainHostName(h) { return h.indexOf('.') < 0; }
function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) === d; }
function shExpMatch(s, p) { return new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$').test(s); }
function toNum(ip) { return ip.split('.').reduce(function (a, b) { return a * 256 + Number(b); }, 0); }
function isInNet(h, net, mask) {
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(h)) { throw new Error('the PAC file resolved a name: ' + h); }
  var m = toNum(mask); return (toNum(h) & m) >>> 0 === (toNum(net) & m) >>> 0;
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pac_file_sends_the_web_through_nostalk_and_leaves_the_lan_direct() {
    let device =
        origin(None, handler(|_| async { html("<!doctype html><title>device</title><p id=device>on the LAN</p>") }))
            .await;
    let proxy = Proxy::start(&[resolve("news.test", 80, &device)], "").await;
    let c = reqwest::Client::new();
    let pac = c.get(format!("{}/proxy.pac", proxy.url())).send().await.unwrap();
    assert_eq!(pac.headers()["content-type"], "application/x-ns-proxy-autoconfig");
    let pac = pac.text().await.unwrap();
    let wpad = c.get(format!("{}/wpad.dat", proxy.url())).send().await.unwrap().text().await.unwrap();
    assert_eq!(wpad, pac, "/wpad.dat is the PAC file");
    let proxy_line = format!("PROXY {}", proxy.addr);
    assert!(
        pac.contains(&format!("return \"{proxy_line}\";\n}}")),
        "the web through nostalk, no DIRECT fallback: {pac}"
    );
    if chromium_missing() {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (_home, profile) = browser_home(dir.path(), None);
    let mut flags: Vec<String> =
        chromium_flags(&profile, &proxy.url()).into_iter().filter(|f| !f.starts_with("--proxy-server=")).collect();
    flags.push(format!("--proxy-pac-url={}/proxy.pac", proxy.url()));
    // The LAN's names, as its DNS or mDNS would answer them.
    flags.push("--host-resolver-rules=MAP nas 127.0.0.1, MAP printer.local 127.0.0.1".into());
    let browser = Browser::launch(CHROMIUM, &dir.path().join("home"), &profile, flags).await;
    let tab = browser.tab().await;
    let port = device.port();
    for (url, through) in [
        (format!("http://nas:{port}/"), false),
        (format!("http://printer.local:{port}/"), false),
        ("http://news.test/".to_string(), true),
    ] {
        let before = device.count();
        tab.goto(&url).await;
        tab.wait_for("document.getElementById('device')", 20).await;
        let seen = device.seen();
        let last = seen.get(before..).and_then(|s| s.iter().find(|r| r.uri.ends_with('/') || r.uri == "/"));
        let last = last.unwrap_or_else(|| panic!("{url} reached the device: {seen:?}"));
        assert_eq!(last.header("sec-gpc").is_some(), through, "{url}: through nostalk = {through}");
    }

    // The status page tells this browser that it came through a PAC file, and what that means
    // when nostalk is down; it shows a phone's settings with this proxy's address.
    tab.goto("http://nostalk.internal/").await;
    let text = tab.wait_for("document.getElementById('via-pac') ? document.body.innerText : ''", 20).await;
    let text = text.as_str().unwrap();
    assert!(text.contains("found nostalk through its PAC file") && text.contains("goes direct"), "{text}");
    let devices = tab.eval("document.getElementById('devices').textContent").await;
    assert!(devices.as_str().unwrap().contains(&format!("http://{}/proxy.pac", proxy.addr)), "{devices}");

    // The address ranges, run in Chromium's JavaScript.
    let script = format!(
        "(() => {{ {PAC_HELPERS}\n{pac}\nreturn ['192.168.1.1', '10.2.3.4', '172.20.0.9', '169.254.1.1', '127.0.0.2', '[fd00::1]', 'fe80::1', \
         '93.184.216.34', '[2001:db8::1]', 'nostalk.internal', 'router.lan', 'nas.home.arpa', 'news.example'].map(h => h + '=' + FindProxyForURL('http://' + h + '/', h)).join('|'); }})()"
    );
    let got = tab.eval(&script).await;
    let got = match got {
        Value::String(s) => s,
        other => panic!("the PAC file ran: {other}"),
    };
    for (host, want) in [
        ("192.168.1.1", "DIRECT"),
        ("10.2.3.4", "DIRECT"),
        ("172.20.0.9", "DIRECT"),
        ("169.254.1.1", "DIRECT"),
        ("127.0.0.2", "DIRECT"),
        ("[fd00::1]", "DIRECT"),
        ("fe80::1", "DIRECT"),
        ("93.184.216.34", proxy_line.as_str()),
        ("[2001:db8::1]", proxy_line.as_str()),
        ("nostalk.internal", proxy_line.as_str()),
        ("router.lan", "DIRECT"),
        ("nas.home.arpa", "DIRECT"),
        ("news.example", proxy_line.as_str()),
    ] {
        assert!(got.split('|').any(|p| p == format!("{host}={want}")), "{host} should be {want}: {got}");
    }
    drop(tab);
    drop(browser);
    proxy.stop().await;
}

/// The body of a refusal through the proxy, or straight from it.
async fn refusal(c: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut r = c.get(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn each_refusal_names_the_address_the_key_and_the_file() {
    let token = "a-token-of-twenty-chars";
    let b = Binary::start(&[], &format!("[admin]\nallow = [\"127.0.0.1/32\"]\ntoken = \"{token}\"\n")).await;
    let c = b.client(&[]);
    // A destination the proxy does not forward to.
    let (status, text) = refusal(&c, "http://[fe80::1]:8080/", None).await;
    assert_eq!(status, 403);
    assert!(text.contains("fe80::1") && text.contains("[upstream] allow") && text.contains("fe80::1/128"), "{text}");
    // An operator's page with the address allowed and no token: the token is what is missing.
    let direct = reqwest::Client::new();
    let (status, text) = refusal(&direct, &format!("{}/metrics", b.url()), None).await;
    assert_eq!(status, 403);
    assert!(text.contains("[admin] token") && text.contains("Authorization: Bearer"), "{text}");
    let (status, _) = refusal(&direct, &format!("{}/metrics", b.url()), Some(token)).await;
    assert_eq!(status, 200, "with the token, /metrics opens");
    drop(b);

    // A client outside [access] allow, and outside [admin] allow.
    let b = Binary::start(&[], "[access]\nallow = [\"10.9.9.9/32\"]\n[admin]\nallow = [\"10.9.9.9/32\"]\n").await;
    let (status, text) = refusal(&b.client(&[]), "http://news.test/", None).await;
    assert_eq!(status, 403);
    assert!(text.contains("127.0.0.1") && text.contains("[access] allow") && text.contains("127.0.0.1/32"), "{text}");
    let (status, text) = refusal(&reqwest::Client::new(), &format!("{}/metrics", b.url()), None).await;
    assert_eq!(status, 403);
    assert!(text.contains("127.0.0.1") && text.contains("[admin] allow"), "{text}");
}

#[tokio::test]
async fn each_device_sees_its_own_sites_and_an_admin_sees_every_device() {
    let beacon = origin(None, handler(|_| async { http::Response::new(body("counted")) })).await;
    let dir = tempfile::tempdir().unwrap();
    // The router's DHCP server knows the first device by the name it gave.
    let leases = dir.path().join("dhcp.leases");
    std::fs::write(&leases, "1733400000 aa:bb:cc:dd:ee:02 127.0.0.2 kitchen-tablet 01:aa:bb:cc:dd:ee:02\n").unwrap();
    let b = Binary::start(
        &[resolve("www.google-analytics.com", 80, &beacon)],
        &format!("[admin]\nallow = [\"127.0.0.1/32\"]\n[receipt]\nleases = {:?}\n", leases.display().to_string()),
    )
    .await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .proxy(reqwest::Proxy::http(b.url()).unwrap())
            .build()
            .unwrap()
    };
    let straight =
        |ip: &str| reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    // Each device browses a page of its own, whose analytics beacon nostalk blocks.
    for (ip, page) in [("127.0.0.2", "http://kitchen.test/recipes"), ("127.0.0.3", "http://study.test/thesis")] {
        let r = from(ip)
            .get("http://www.google-analytics.com/g/collect?v=2&tid=G-1")
            .header("referer", page)
            .header("sec-fetch-dest", "empty")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-nostalk"], "blocked");
    }
    let receipt = |ip: &'static str| {
        let c = straight(ip);
        let url = format!("{}/", b.url());
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let kitchen = receipt("127.0.0.2").await;
    assert!(kitchen.contains("kitchen.test") && !kitchen.contains("study.test"), "{kitchen}");
    assert!(
        kitchen.contains("shows only this device") && kitchen.contains("(127.0.0.2)"),
        "the page says who sees what"
    );
    let study = receipt("127.0.0.3").await;
    assert!(study.contains("study.test") && !study.contains("kitchen.test"), "{study}");
    let admin = receipt("127.0.0.1").await;
    assert!(admin.contains("study.test") && admin.contains("kitchen.test"), "{admin}");
    assert!(admin.contains("every device"), "{admin}");
    // The operators see each device, by the name its DHCP lease gave where there is one.
    let devices =
        admin.split("<ul id=\"device-list\">").nth(1).expect("a list of devices").split("</ul>").next().unwrap();
    assert!(devices.contains("<b>kitchen-tablet</b> (127.0.0.2): kitchen.test"), "{devices}");
    assert!(devices.contains("<b>127.0.0.3</b>: study.test"), "{devices}");
    assert!(!study.contains("id=\"device-list\""), "a device does not see the others");

    // A device uses the controls for itself: the kitchen trusts its own site, so the beacon
    // on that site goes out from the kitchen, and stays blocked for the study on the same site
    // and for the household.
    let token = kitchen.split("name=\"token\" value=\"").nth(1).expect("the device's page has controls");
    let token = token.split('"').next().unwrap().to_string();
    let no_redirects = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .post(format!("{}/trust", b.url()))
        .form(&[("token", token.as_str()), ("site", "kitchen.test"), ("trust", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "back to the page");
    assert!(r.text().await.unwrap().contains("for this device"), "the answer says whom it is for");
    let beacon_from = |ip: &'static str| {
        let c = from(ip);
        async move {
            let r = c
                .get("http://www.google-analytics.com/g/collect?v=2&tid=G-1")
                .header("referer", "http://kitchen.test/recipes")
                .header("sec-fetch-dest", "empty")
                .send()
                .await
                .unwrap();
            r.headers().get("x-nostalk").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
        }
    };
    let before = beacon.count();
    assert_ne!(beacon_from("127.0.0.2").await, "blocked", "the kitchen trusts kitchen.test");
    assert_eq!(beacon.count(), before + 1, "and the beacon reached its server");
    assert_eq!(beacon_from("127.0.0.3").await, "blocked", "the study made no such choice");
    assert_eq!(beacon_from("127.0.0.1").await, "blocked", "nor the household");
    assert_eq!(beacon.count(), before + 1);
    assert!(receipt("127.0.0.2").await.contains("Stop trusting this site"), "the kitchen's page shows its choice");
    assert!(!receipt("127.0.0.1").await.contains("Stop trusting this site"), "not the household's");
    // Refreshing the lists stays the operators'.
    let r = straight("127.0.0.2")
        .post(format!("{}/lists/refresh", b.url()))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_gateway_that_keeps_no_client_address_logs_none() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra = format!(
        "[receipt]\nper_person = false\n[auth]\nusers = {:?}\n[access]\nallow = [\"127.0.0.0/8\"]\n[admin]\nallow = [\"127.0.0.1/32\"]\n",
        users.display().to_string()
    );
    let toml = compose_config(dir.path(), &[], &extra, true, &format!("\"127.0.0.1:{port}\""));
    let cfg = dir.path().join("nostalk.toml");
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("XDG_DATA_HOME", dir.path())
        .env("RUST_LOG", "nostalk=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let proxy = format!("http://127.0.0.1:{port}");
    let from = |ip: &str, auth: Option<&str>| {
        let mut p = reqwest::Proxy::all(&proxy).unwrap();
        if let Some(a) = auth {
            p = p.basic_auth("alice", a);
        }
        reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().unwrap()).proxy(p).build().unwrap()
    };
    let started = std::time::Instant::now();
    while reqwest::get(format!("{proxy}/healthz")).await.is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the proxy did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Six wrong passwords, a request with no credentials, an operator's page from a user.
    for _ in 0..6 {
        let r = from("127.0.0.5", Some("wrong")).get("http://news.test/").send().await.unwrap();
        assert_eq!(r.status(), 407);
    }
    let r = from("127.0.0.6", None).get("http://news.test/").send().await.unwrap();
    assert_eq!(r.status(), 407);
    let direct =
        reqwest::Client::builder().local_address("127.0.0.6".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let r = direct.get(format!("{proxy}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("127.0.0.6"), "the page names the address to its own client");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("wrong passwords in a row"), "the guessing was logged: {text}");
    for ip in ["127.0.0.5", "127.0.0.6"] {
        assert!(!text.contains(ip), "the log names the client {ip}:\n{text}");
    }
}

#[test]
fn the_service_units_run_this_binary_and_go_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("my config.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"127.0.0.1:8877\"\n").unwrap();
    let nostalk = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nostalk"))
            .args(args)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_nostalk")).unwrap();

    // systemd: a user unit under XDG_CONFIG_HOME that runs this binary with the config.
    let (ok, said) =
        nostalk(&["service", "install", "--manager", "systemd", "--no-enable", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{said}");
    let unit_path = dir.path().join("xdg/systemd/user/nostalk.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    assert_eq!(exec, format!("{} run --config \"{}\"", exe.display(), cfg.display()), "{unit}");
    assert!(unit.contains("Restart=always") && unit.contains("WantedBy=default.target"), "{unit}");
    assert!(said.contains("systemctl --user enable --now nostalk.service"), "the steps to enable it: {said}");
    if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        let v = std::process::Command::new("systemd-analyze")
            .args(["verify", unit_path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(v.status.success(), "systemd-analyze verify: {}", String::from_utf8_lossy(&v.stderr));
    } else {
        eprintln!("SKIPPED: systemd-analyze verify (no systemd here)");
    }
    let (_, status) = nostalk(&["service", "status", "--manager", "systemd"]);
    assert!(status.contains("installed:"), "{status}");

    // launchd: an agent whose plist a parser reads back.
    let (ok, said) = nostalk(&["service", "install", "--manager", "launchd", "--no-enable"]);
    assert!(ok, "{said}");
    let plist = dir.path().join("Library/LaunchAgents/org.nostalk.proxy.plist");
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys,json; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
            plist.to_str().unwrap(),
        ])
        .output();
    if let Some(out) = parsed.ok().filter(|o| o.status.success()) {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Label"], "org.nostalk.proxy");
        assert_eq!(v["ProgramArguments"], serde_json::json!([exe.display().to_string(), "run"]));
        assert_eq!(
            (v["RunAtLoad"].clone(), v["KeepAlive"].clone()),
            (serde_json::json!(true), serde_json::json!(true))
        );
    } else {
        panic!("python3's plistlib could not read {}", plist.display());
    }

    // Both go again.
    for m in ["systemd", "launchd"] {
        let (ok, said) = nostalk(&["service", "uninstall", "--manager", m]);
        assert!(ok, "{said}");
    }
    assert!(!unit_path.exists() && !plist.exists());
    let (_, status) = nostalk(&["service", "status", "--manager", "systemd"]);
    assert!(status.contains("not installed"), "{status}");
}

/// A parent proxy as the test runs it: an HTTP proxy that answers `CONNECT` to port 443 and
/// forwards proxy requests for plain `http` (checking the credentials when `auth` is given) or a SOCKS5 server (no authentication), recording each
/// destination asked for and reaching it through `names` (the parent's own DNS).
async fn parent_proxy(
    socks: bool,
    auth: Option<&'static str>,
    names: Vec<(String, u16)>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (log, names) = (log.clone(), names.clone());
            tokio::spawn(async move {
                let mut forward = None;
                let (host, port) = if socks {
                    let mut greet = [0u8; 2];
                    s.read_exact(&mut greet).await.unwrap();
                    let mut methods = vec![0u8; greet[1] as usize];
                    s.read_exact(&mut methods).await.unwrap();
                    s.write_all(&[5, 0]).await.unwrap();
                    let mut req = [0u8; 4];
                    s.read_exact(&mut req).await.unwrap();
                    assert_eq!(req[3], 3, "the name is handed to the parent unresolved (socks5h)");
                    let len = s.read_u8().await.unwrap() as usize;
                    let mut name = vec![0u8; len];
                    s.read_exact(&mut name).await.unwrap();
                    (String::from_utf8(name).unwrap(), s.read_u16().await.unwrap())
                } else {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        head.push(s.read_u8().await.unwrap());
                    }
                    let head = String::from_utf8(head).unwrap();
                    let target = head.split(' ').nth(1).unwrap().to_string();
                    if let Some(a) = auth {
                        let want = format!(
                            "proxy-authorization: basic {}",
                            base64::engine::general_purpose::STANDARD.encode(a)
                        );
                        if !head.to_ascii_lowercase().contains(&want.to_ascii_lowercase()) {
                            s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await.unwrap();
                            return;
                        }
                    }
                    match target.strip_prefix("http://") {
                        // A proxy request (absolute form): the origin gets it in origin form.
                        Some(rest) => {
                            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                            let (h, p) = authority.rsplit_once(':').unwrap_or((authority, "80"));
                            forward = Some(head.replacen(&target, if path.is_empty() { "/" } else { path }, 1));
                            (h.to_string(), p.parse().unwrap())
                        }
                        None => {
                            let (h, p) = target.rsplit_once(':').unwrap();
                            // As Squid's default configuration: CONNECT only to port 443.
                            if p != "443" {
                                s.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await.unwrap();
                                return;
                            }
                            (h.to_string(), p.parse().unwrap())
                        }
                    }
                };
                log.lock().unwrap().push(format!("{host}:{port}"));
                let to = names.iter().find(|(n, _)| *n == host).map(|(_, p)| *p).unwrap_or(port);
                let mut up = tokio::net::TcpStream::connect(("127.0.0.1", to)).await.unwrap();
                if socks {
                    s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await.unwrap();
                } else if let Some(head) = &forward {
                    up.write_all(head.as_bytes()).await.unwrap();
                } else {
                    s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.unwrap();
                }
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (port, asked)
}

#[tokio::test]
async fn every_upstream_connection_goes_through_the_parent_proxy_but_no_proxy_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let page = handler(|_| async { html("<!doctype html><p>through</p>") });
    let plain = origin(None, page.clone()).await;
    let inside = origin(Some(ca.server_config(&["inside.test"])), page.clone()).await;
    let tunnel = origin(Some(ca.server_config(&["tunnel.test"])), page.clone()).await;
    let direct = origin(None, page).await;
    let names = vec![
        ("plain.test".to_string(), plain.port()),
        ("inside.test".to_string(), inside.port()),
        ("tunnel.test".to_string(), tunnel.port()),
    ];
    for (socks, url) in [(false, "http://u:p%40ss@127.0.0.1"), (true, "socks5h://127.0.0.1")] {
        let (port, asked) = parent_proxy(socks, if socks { None } else { Some("u:p@ss") }, names.clone()).await;
        let toml = format!(
            "[intercept]\npassthrough = [\"tunnel.test\"]\n[upstream]\nproxy = \"{url}:{port}\"\nno_proxy = [\"direct.test\"]\nextra_roots = [{:?}]\n",
            ca.pem_path.display().to_string()
        );
        let proxy = Proxy::start(&[resolve("direct.test", 80, &direct)], &toml).await;
        let c = proxy.client(&[&ca.pem]);
        let direct_before = direct.count();
        // Plain HTTP (the pool), HTTPS opened by nostalk (intercepted), a tunnel nostalk does
        // not open (passthrough), and a no_proxy name.
        for u in ["http://plain.test/", "https://inside.test/", "https://tunnel.test/", "http://direct.test/"] {
            let r = c.get(u).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}: {u}");
            assert!(r.text().await.unwrap().contains("through"));
        }
        let asked = asked.lock().unwrap().clone();
        for want in ["plain.test:80", "inside.test:443", "tunnel.test:443"] {
            assert!(asked.iter().any(|a| a == want), "{url}: {want} through the parent: {asked:?}");
        }
        assert!(!asked.iter().any(|a| a.starts_with("direct.test")), "no_proxy goes direct: {asked:?}");
        assert_eq!(direct.count(), direct_before + 1, "direct.test reached without the parent");
        proxy.stop().await;
    }
    // Without the credentials the parent wants, the page says where they go.
    let (port, _) = parent_proxy(false, Some("u:p@ss"), names.clone()).await;
    let proxy = Proxy::start(&[], &format!("[upstream]\nproxy = \"http://127.0.0.1:{port}\"\n")).await;
    let r = proxy.client(&[]).get("http://plain.test/").send().await.unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("[upstream] proxy"), "{text}");
}

/// The answer a test DNS server gives: every `*.test` name is 127.0.0.1 (A), with no AAAA.
/// The names asked go in `asked`.
fn dns_answer(query: &[u8], asked: &Mutex<Vec<String>>) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    let req = Message::from_vec(query).unwrap();
    let mut resp = Message::new();
    resp.set_id(req.id()).set_message_type(MessageType::Response).set_recursion_available(true);
    resp.set_recursion_desired(req.recursion_desired());
    resp.add_queries(req.queries().to_vec());
    for q in req.queries() {
        asked.lock().unwrap().push(q.name().to_ascii().trim_end_matches('.').to_string());
        if q.query_type() == RecordType::A {
            resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A::new(127, 0, 0, 1))));
        }
    }
    resp.to_vec().unwrap()
}

#[tokio::test]
async fn names_are_resolved_over_dns_over_tls_and_over_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = OriginCa::new(dir.path());
    let site = origin(None, handler(|_| async { html("<!doctype html><p>resolved privately</p>") })).await;

    // DNS over TLS: length-prefixed messages in a TLS stream.
    let dot_asked = Arc::new(Mutex::new(Vec::new()));
    let dot = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dot_port = dot.local_addr().unwrap().port();
    let (tls, asked) = (ca.server_config(&["dns.test"]), dot_asked.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = dot.accept().await else { return };
            let (tls, asked) = (tls.clone(), asked.clone());
            tokio::spawn(async move {
                let Ok(mut s) = tokio_rustls::TlsAcceptor::from(tls).accept(s).await else { return };
                while let Ok(len) = s.read_u16().await {
                    let mut q = vec![0u8; len as usize];
                    s.read_exact(&mut q).await.unwrap();
                    let a = dns_answer(&q, &asked);
                    s.write_u16(a.len() as u16).await.unwrap();
                    s.write_all(&a).await.unwrap();
                }
            });
        }
    });
    // DNS over HTTPS: a POST of the message to /dns-query, over HTTP/2.
    let doh_asked = Arc::new(Mutex::new(Vec::new()));
    let asked = doh_asked.clone();
    let doh = origin(
        Some(ca.server_config(&["dns.test"])),
        handler(move |req| {
            let asked = asked.clone();
            async move {
                use http_body_util::BodyExt;
                let q = req.into_body().collect().await.unwrap().to_bytes();
                let mut r = http::Response::new(body(dns_answer(&q, &asked)));
                r.headers_mut().insert("content-type", "application/dns-message".parse().unwrap());
                r
            }
        }),
    )
    .await;

    let roots = ca.pem_path.display().to_string();
    for (dns, port, asked) in [("tls://dns.test", dot_port, &dot_asked), ("https://dns.test", doh.port(), &doh_asked)] {
        let toml = format!("[upstream]\ndns = \"{dns}:{port}\"\nextra_roots = [{roots:?}]\n");
        // The server's own name is found through `resolve` (the bootstrap); the site's is not.
        let pin = format!("dns.test:{port}:127.0.0.1:{port}");
        let proxy = Proxy::start(&[pin], &toml).await;
        let r = proxy.client(&[]).get(format!("http://private.test:{}/", site.port())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{dns}");
        assert!(r.text().await.unwrap().contains("resolved privately"));
        assert!(asked.lock().unwrap().iter().any(|n| n == "private.test"), "{dns}: {:?}", asked.lock().unwrap());
        proxy.stop().await;
    }
    assert!(!doh.seen().is_empty() && doh.seen().iter().all(|s| s.uri.contains("/dns-query")));
    // A server whose certificate is not for its name is not asked: the name does not resolve.
    let toml = format!("[upstream]\ndns = \"tls://other.test:{dot_port}\"\nextra_roots = [{roots:?}]\n");
    let proxy = Proxy::start(&[format!("other.test:{dot_port}:127.0.0.1:{dot_port}")], &toml).await;
    let before = dot_asked.lock().unwrap().len();
    let r = proxy.client(&[]).get(format!("http://private.test:{}/", site.port())).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(dot_asked.lock().unwrap().len(), before, "no query reached a server with the wrong certificate");
}

/// The OpenWrt package's `nostalk-wpad`, run as on a router against the real binary, with
/// `uci`, `wget` and dnsmasq's init script written out as small stand-ins that keep uci's
/// lists in files (and `wget` as curl): `enable` has dnsmasq announce the PAC file by DHCP
/// option 252 and by the name `wpad.lan`, the file uhttpd serves on port 80 is nostalk's own
/// PAC naming the router's address, and `disable` takes all of it back.
#[tokio::test]
async fn the_openwrt_package_announces_the_pac_file_by_dhcp_and_by_the_wpad_name() {
    use std::os::unix::fs::PermissionsExt;
    let proxy = Binary::start(&[], "").await;
    let dir = tempfile::tempdir().unwrap();
    let (bin, state, www, run, initd) = ["bin", "state", "www", "run", "init.d"].map(|d| dir.path().join(d)).into();
    for d in [&bin, &state, &www, &run, &initd] {
        std::fs::create_dir(d).unwrap();
    }
    let stub = |path: std::path::PathBuf, text: &str| {
        std::fs::write(&path, format!("#!/bin/sh\n{text}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stub(
        bin.join("uci"),
        r#"echo "uci $*" >> "$STATE/log"
[ "$1" = -q ] && shift
key() { echo "$1" | tr -c 'a-z0-9\n' _; }
case "$1" in
  get) case "$2" in
         network.lan.ipaddr) echo 127.0.0.1/8 ;;
         "dhcp.@dnsmasq[0].domain") echo lan ;;
         *) f="$STATE/$(key "$2")"; [ -s "$f" ] && tr '\n' ' ' < "$f" ;;
       esac ;;
  add_list) echo "${2#*=}" >> "$STATE/$(key "${2%%=*}")" ;;
  del_list) f="$STATE/$(key "${2%%=*}")"; grep -vxF "${2#*=}" "$f" > "$f.new"; mv "$f.new" "$f" ;;
esac
"#,
    );
    stub(
        bin.join("wget"),
        "# wget -q -O FILE URL, as OpenWrt's uclient-fetch takes it\nexec curl -fsS -o \"$3\" \"$4\"\n",
    );
    stub(initd.join("dnsmasq"), "echo \"dnsmasq $1\" >> \"$STATE/log\"\n");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/openwrt/nostalk/files/nostalk-wpad");
    let wpad = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg(&script)
            .arg(cmd)
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
            .env("STATE", &state)
            .env("NOSTALK_CONF", proxy.config_path())
            .env("NOSTALK_WWW", &www)
            .env("NOSTALK_RUN", &run)
            .env("NOSTALK_INITD", &initd)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "nostalk-wpad {cmd}: {text}");
        text
    };
    let url = format!("http://127.0.0.1:{}/wpad.dat", proxy.port);
    let said = wpad("enable");
    assert!(said.contains(&url), "{said}");
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    assert!(log.contains(&format!("uci add_list dhcp.lan.dhcp_option=252,{url}")), "{log}");
    assert!(log.contains("uci add_list dhcp.@dnsmasq[0].address=/wpad.lan/127.0.0.1"), "{log}");
    assert!(log.contains("uci commit dhcp") && log.contains("dnsmasq restart"), "{log}");
    // What uhttpd serves as http://wpad.lan/wpad.dat: a link to nostalk's PAC file in RAM.
    let served = www.join("wpad.dat");
    assert!(std::fs::symlink_metadata(&served).unwrap().file_type().is_symlink());
    let pac = std::fs::read_to_string(&served).unwrap();
    assert!(pac.contains("FindProxyForURL"), "{pac}");
    assert!(pac.contains(&format!("PROXY 127.0.0.1:{}", proxy.port)), "names the router's address: {pac}");
    // Enabling again does not announce twice.
    wpad("enable");
    let options = std::fs::read_to_string(state.join("dhcp_lan_dhcp_option")).unwrap();
    assert_eq!(options.lines().filter(|l| l.starts_with("252,")).count(), 1, "{options}");

    wpad("disable");
    let options = std::fs::read_to_string(state.join("dhcp_lan_dhcp_option")).unwrap();
    let names = std::fs::read_to_string(state.join("dhcp__dnsmasq_0__address")).unwrap();
    assert!(!options.contains("252,") && !names.contains("/wpad."), "{options} {names}");
    assert!(std::fs::symlink_metadata(&served).is_err(), "the served file is gone");
}
