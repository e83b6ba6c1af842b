//! The command line as a user runs it: check, explain, ca, lists, and run with a clean stop.

mod support;

use nostalk::config::ListVerdict;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn nostalk() -> Command {
    // The default choices store and CA live in the user's data directory: the test binary's own.
    let mut c = Command::new(env!("CARGO_BIN_EXE_nostalk"));
    c.env("XDG_DATA_HOME", env!("CARGO_TARGET_TMPDIR"));
    c
}

/// A config for a test run: the tests reach nothing but loopback, so no default
/// subscription is fetched from the web.
fn offline(toml: &str) -> String {
    match toml.find("[policy]\n") {
        Some(i) => format!("{}[policy]\ndefault_subscriptions = false\n{}", &toml[..i], &toml[i + 9..]),
        None => format!("{toml}\n[policy]\ndefault_subscriptions = false\n"),
    }
}

#[test]
fn check_accepts_a_valid_file_and_names_key_and_line_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, nostalk::config::DEFAULT_TOML).unwrap();
    let out = nostalk().args(["check", "--config", good.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"127.0.0.1:8877\"\n\n[policy]\nads = \"sometimes\"\n").unwrap();
    let out = nostalk().args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5") && err.contains("policy.ads"), "{err}");

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[server]\nlisten = \"127.0.0.1:8877\"\nnot toml at all\n").unwrap();
    let out = nostalk().args(["check", "--config", broken.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
}

#[test]
fn check_reports_every_error_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"127.0.0.1:8877\"\nlistn = 3\n\n[sevrer]\nx = 1\n\n[policy]\nads = \"sometimes\"\n\n[access]\nallow = [\"not-a-cidr\"]\n",
    )
    .unwrap();
    let out = nostalk().args(["check", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("listn"), "an unknown key: {err}");
    assert!(err.contains("line 5") && err.contains("sevrer"), "an unknown section: {err}");
    assert!(err.contains("line 9") && err.contains("policy.ads"), "a bad value: {err}");
    assert!(err.contains("line 12") && err.contains("access.allow[0]"), "a bad CIDR: {err}");
}

#[test]
fn explain_prints_decision_rule_list_site_and_party_as_json() {
    let out = nostalk()
        .args(["explain", "https://www.google-analytics.com/analytics.js", "--page", "https://news.example/", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "block");
    assert_eq!(v["list"], "nostalk-surveillance");
    assert_eq!(v["site"], "google-analytics.com");
    assert_eq!(v["party"], "third");
    assert!(v["rule"].as_str().unwrap().contains("google-analytics.com"));
}

/// `explain --user` and `--client` decide as the running gateway would for that person: the
/// user's group or the client network's, and the user's own choices from the store.
#[test]
fn explain_for_a_user_or_a_client_applies_their_group_and_their_own_choices() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    nostalk::ops::auth::set_password(&users, "bob", "battery staple").unwrap();
    std::fs::write(dir.path().join("ads.txt"), "||ads.test^\n").unwrap();
    let store = dir.path().join("choices.sqlite3");
    let config = dir.path().join("nostalk.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nusers = {:?}\n[receipt]\nstore = {:?}\n[policy]\ndefault_subscriptions = false\n\
             [[groups]]\nname = \"strict\"\nmembers = [\"alice\"]\nads = \"block\"\n\
             [[groups]]\nname = \"lab\"\nnetworks = [\"10.9.0.0/16\"]\nads = \"block\"\n\
             [[lists]]\nname = \"team-ads\"\npath = {:?}\nverdict = \"ad\"\n",
            users.display().to_string(),
            store.display().to_string(),
            dir.path().join("ads.txt").display().to_string()
        ),
    )
    .unwrap();
    // Bob down-voted the ad source for himself (as his receipt page's control keeps it).
    let choices = nostalk::ops::choices::Choices::open(&store, 1).unwrap();
    choices.downvote_in(nostalk::ops::choices::Scope::Device("user bob"), "ads.test").unwrap();
    drop(choices);
    let explain = |who: &[&str]| {
        let mut args = vec!["explain", "http://ads.test/ad.js", "--page", "http://news.test/", "--json", "--config"];
        args.push(config.to_str().unwrap());
        args.extend_from_slice(who);
        let out = nostalk().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["decision"].as_str().unwrap().to_string(), v["group"].as_str().map(str::to_string))
    };
    assert_eq!(explain(&[]).0, "ad", "nobody in particular: the ad, de-identified");
    assert_eq!(explain(&["--user", "alice"]), ("block".into(), Some("strict".into())), "alice's group blocks ads");
    assert_eq!(explain(&["--client", "10.9.3.4"]), ("block".into(), Some("lab".into())), "the lab's network does");
    assert_eq!(explain(&["--user", "alice", "--client", "10.9.3.4"]).1, Some("strict".into()), "her own group wins");
    assert_eq!(explain(&["--user", "bob"]), ("block".into(), None), "bob's own down-vote");
    assert_eq!(explain(&["--user", "carol"]), ("ad".into(), None), "not carol's");
}

#[test]
fn explain_reads_requests_from_stdin_in_order() {
    let mut child = nostalk().args(["explain", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"https://securepubads.g.doubleclick.net/tag/js/gpt.js https://news.example/ script\n\
              https://news.example/style.css https://news.example/ stylesheet\n\
              https://bat.bing.com/bat.js https://news.example/\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let decisions: Vec<&str> = lines.iter().map(|v| v["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["ad", "allow", "block"]);
}

#[test]
fn ca_init_makes_a_private_key_and_export_prints_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let out = nostalk().args(["ca", "init", "--dir", ca_dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca_dir.join(nostalk::tls::CA_KEY_FILE)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = nostalk().args(["ca", "export", "--dir", ca_dir.to_str().unwrap()]).output().unwrap();
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(pem, std::fs::read_to_string(ca_dir.join(nostalk::tls::CA_CERT_FILE)).unwrap());
}

#[test]
fn the_ca_is_private_under_any_umask_and_an_exposed_key_stops_run_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("state").join("ca");
    let out = Command::new("sh")
        .args([
            "-c",
            "umask 000 && exec \"$0\" ca init --dir \"$1\"",
            env!("CARGO_BIN_EXE_nostalk"),
            ca_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&ca_dir.join(nostalk::tls::CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&ca_dir.join(nostalk::tls::CA_CERT_FILE)), 0o600);
    std::fs::set_permissions(ca_dir.join(nostalk::tls::CA_KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[ca]\ndir = {:?}\n", ca_dir.display().to_string()),
    )
    .unwrap();
    let out = nostalk().args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains(nostalk::tls::CA_KEY_FILE), "{err}");
}

#[test]
fn lists_shows_each_list_with_its_rules() {
    let out = nostalk().args(["lists"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("nostalk-surveillance")).expect(&text);
    let rules: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rules >= 300, "{line}");
}

#[test]
fn run_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, offline(&format!("[ca]\ndir = {:?}\n", dir.path().join("ca").display().to_string()))).unwrap();
    let mut child = nostalk()
        .args(["run", "--config", cfg.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut log = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") {
            break;
        }
    }
    assert!(log.contains("created a local CA"), "the first start says where the CA is and how to trust it:\n{log}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: nostalk.localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_example_configs_are_valid_and_subscribe_to_easylist_and_easyprivacy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join("examples");
    for name in ["laptop.toml", "router.toml", "team.toml"] {
        // The file as shipped, with the system directories it names moved into a temporary
        // root (a test writes nothing to /etc or /var/lib); the team's users file made as
        // README.md makes it.
        let root = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let etc = root.path().join("etc/nostalk");
        std::fs::create_dir_all(&etc).unwrap();
        let text = text
            .replace("\"/etc/nostalk/", &format!("\"{}/", etc.display()))
            .replace("\"/var/lib/nostalk/", &format!("\"{}/var/lib/nostalk/", root.path().display()));
        let inside = format!("\"{}/", root.path().display());
        let outside = text.lines().find(|l| !l.starts_with('#') && l.replace(&inside, "").contains("\"/"));
        assert!(outside.is_none(), "{name}: a system path left in: {outside:?}");
        if name == "team.toml" {
            std::fs::write(etc.join("users"), "").unwrap();
        }
        let path = etc.join(name);
        std::fs::write(&path, &text).unwrap();
        let out = nostalk().args(["check", "--config", path.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        let cfg = nostalk::Config::load(&path).unwrap();
        let subscribed: Vec<(&str, ListVerdict)> =
            cfg.lists.iter().filter(|l| l.url.is_some()).map(|l| (l.name.as_str(), l.verdict)).collect();
        assert!(subscribed.contains(&("easyprivacy", ListVerdict::Block)), "{name}: {subscribed:?}");
        assert!(subscribed.contains(&("easylist", ListVerdict::Ad)), "{name}: {subscribed:?}");
    }
}

/// `nostalk run` on a free loopback port with a CA in a temporary directory; `server_extra`
/// goes in its `[server]` table (and may open other tables after it).
fn run_binary(server_extra: &str, stderr: Stdio) -> (tempfile::TempDir, u16, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("c.toml");
    let ca = dir.path().join("ca").display().to_string();
    std::fs::write(
        &cfg,
        offline(&format!("[ca]\ndir = {ca:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}")),
    )
    .unwrap();
    let child = nostalk().args(["run", "--config", cfg.to_str().unwrap()]).stderr(stderr).spawn().unwrap();
    (dir, port, child)
}

/// Run the binary with `extra` config, send it one blocked tracker request, stop it; returns
/// the decision line and every line it logged.
fn log_of_one_block(extra: &str) -> (serde_json::Value, String) {
    let (_dir, port, mut child) = run_binary(&format!("log_format = \"json\"\n{extra}"), Stdio::piped());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening") => break,
            Some(Ok(_)) => continue,
            _ => panic!("nostalk ended before listening"),
        }
    }
    // A blocked tracker: answered here, no network needed.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"GET http://www.google-analytics.com/analytics.js?cid=PERSON123 HTTP/1.1\r\nHost: www.google-analytics.com\r\n\
          Sec-Fetch-Dest: script\r\nSec-Fetch-Site: cross-site\r\nReferer: http://news.example/story\r\nConnection: close\r\n\
          Proxy-Authorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\n\r\n",
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.contains("x-nostalk: blocked"), "{resp}");
    // SAFETY: kill(2) on our own child's pid; it drains, flushes its log and exits.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut decision = None;
    let mut all = String::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        all.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "decision" {
            decision = Some(v);
        }
    }
    let _ = child.wait();
    (decision.expect("a decision line was logged"), all)
}

#[test]
fn a_block_is_logged_as_json_with_decision_rule_list_site_and_host_and_never_the_path_or_query() {
    let (d, all) = log_of_one_block("");
    let f = &d["fields"];
    assert_eq!(f["decision"], "block", "{d}");
    assert!(f.get("url").is_none(), "no URL at INFO: {d}");
    assert_eq!(f["host"], "www.google-analytics.com", "{d}");
    assert!(!all.contains("PERSON123") && !all.contains("analytics.js"), "no path or query in the log: {all}");
    assert!(f["rule"].as_str().is_some_and(|r| r.contains("google-analytics.com")), "{d}");
    assert_eq!(f["list"], "nostalk-surveillance");
    assert_eq!(f["site"], "google-analytics.com");
    assert_eq!(f["party"], "third");
}

#[test]
fn a_shared_gateway_logs_no_client_address_next_to_what_was_browsed() {
    let (d, _) = log_of_one_block("");
    assert!(
        d["fields"]["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")),
        "one person's proxy names its client: {d}"
    );
    let (d, all_shared) = log_of_one_block("[receipt]\nper_person = false\n");
    assert_eq!(d["fields"]["decision"], "block");
    assert!(d["fields"].get("client").is_none(), "{d}");
    assert!(
        !all_shared.contains("\"client\"") && !all_shared.contains("\"peer\""),
        "no client address at all: {all_shared}"
    );
}

#[test]
fn nostalk_shop_switches_a_site_through_the_running_proxys_own_controls() {
    let (_dir, port, mut child) = run_binary("", Stdio::null());
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the proxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let proxy = format!("127.0.0.1:{port}");
    let out = nostalk().args(["shop", "shop.test", "--minutes", "5", "--proxy", &proxy]).output().unwrap();
    let mut page = String::new();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {proxy}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    s.read_to_string(&mut page).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shop.test: shopping for 5 minutes"));
    assert!(page.contains("<li>shop.test: 5 min left</li>"), "{page}");
}

#[test]
fn an_address_in_use_is_said_once_and_every_argument_has_help() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = {addr:?}\n[ca]\ndir = {:?}\n", dir.path().join("ca").display().to_string()),
    )
    .unwrap();
    let out = nostalk().args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    for (args, arg) in [
        (vec!["run", "--help"], "--config"),
        (vec!["explain", "--help"], "--json"),
        (vec!["ca", "init", "--help"], "--dir"),
        (vec!["shop", "--help"], "<SITE>"),
    ] {
        let out = nostalk().args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help.lines().find(|l| l.trim_start().starts_with(arg)).unwrap_or_else(|| panic!("{args:?}: {help}"));
        assert!(line.trim().len() > arg.len() + 12, "{args:?}: `{arg}` has no help: {line}");
    }
}

/// Lines the binary logs, as they come, with a way to wait for one.
struct LogLines(std::sync::mpsc::Receiver<String>);

impl LogLines {
    fn of(child: &mut std::process::Child) -> LogLines {
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LogLines(rx)
    }

    /// Wait (at most 20 s) for a line that holds `text`.
    fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        while let Some(left) = Duration::from_secs(20).checked_sub(started.elapsed()) {
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        panic!("no log line with `{text}` within 20 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_policy_under_load_and_a_broken_file_is_refused_with_the_old_policy_kept() {
    let o = support::origin(None, support::handler(|_req| async { http::Response::new(support::body("page")) })).await;
    let lists = tempfile::tempdir().unwrap();
    let rules = lists.path().join("rules.txt");
    std::fs::write(&rules, "||unrelated.test^\n").unwrap();
    let port = o.addr.port();
    let extra = format!(
        "[upstream]\nresolve = [\"site.test:80:127.0.0.1:{port}\", \"tracker.test:80:127.0.0.1:{port}\"]\n\
         allow = [\"127.0.0.0/8\"]\n[policy]\nembedded_lists = false\n\
         [[lists]]\nname = \"local\"\npath = {rules:?}\n"
    );
    let (dir, proxy_port, child) = run_binary(&extra, Stdio::piped());
    let mut child = Running(child);
    let log = LogLines::of(&mut child.0);
    log.wait_for("listening");
    let pid = child.0.id() as i32;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://127.0.0.1:{proxy_port}")).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let blocked = |c: reqwest::Client| async move {
        let r = c.get("http://tracker.test/t.js").send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.headers().get("x-nostalk").is_some_and(|v| v == "blocked")
    };
    assert!(!blocked(client.clone()).await, "not listed yet");

    // A load of ordinary requests runs through every reload, until told to stop (bounded in
    // count and time all the same).
    let load_client = client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_load = stop.clone();
    let load = tokio::spawn(async move {
        let (mut sent, mut failed) = (0, 0);
        let started = Instant::now();
        while !stop_load.load(std::sync::atomic::Ordering::SeqCst)
            && sent < 50_000
            && started.elapsed() < Duration::from_secs(60)
        {
            sent += 1;
            let ok = match load_client.get("http://site.test/").send().await {
                Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|t| t == "page"),
                Err(_) => false,
            };
            if !ok {
                failed += 1;
            }
        }
        (sent, failed)
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&rules, "||tracker.test^\n").unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    log.wait_for("config reloaded");
    assert!(blocked(client.clone()).await, "the reloaded list is in force");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken file is refused whole: the list file changed back is not read, the policy
    // that blocks tracker.test stays.
    std::fs::write(&rules, "||unrelated.test^\n").unwrap();
    let cfg_path = dir.path().join("c.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("embedded_lists = false", "embedded_lists = \"maybe\"")).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let refused = log.wait_for("reload refused");
    assert!(refused.contains("config has errors"), "{refused}");
    assert!(blocked(client.clone()).await, "the old policy is still in force");
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(!load.is_finished(), "the load ran through both reloads");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "no request failed across the reloads ({sent} sent)");
    eprintln!("{sent} requests through two reloads, none failed");
    assert!(child.0.try_wait().unwrap().is_none(), "SIGHUP does not end the process");
}

#[test]
fn check_runs_the_preflight_and_reports_every_problem_of_the_machine_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"192.0.2.1:8877\"\n[ca]\ndir = {:?}\n[upstream]\nextra_roots = [{:?}]\n\
             [[lists]]\nname = \"mine\"\npath = {:?}\n",
            a_file.join("ca").display().to_string(),
            dir.path().join("missing-root.pem").display().to_string(),
            dir.path().join("missing-list.txt").display().to_string(),
        ),
    )
    .unwrap();
    let out = nostalk().args(["check", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lists: `mine`: cannot read") && err.contains("missing-list.txt"), "{err}");
    assert!(err.contains("upstream.extra_roots") && err.contains("missing-root.pem"), "{err}");
    assert!(err.contains("ca.dir") && err.contains("not a directory"), "{err}");
    assert!(err.contains("server.listen: cannot listen on 192.0.2.1:8877"), "{err}");
    assert!(!err.contains("(os error 99): Cannot assign"), "one OS error message, not two: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_refresh_makes_a_running_proxy_download_now_and_put_the_new_rules_in_force() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let version = std::sync::Arc::new(AtomicUsize::new(1));
    let v = version.clone();
    let lists =
        support::origin(
            None,
            support::handler(move |_req| {
                let text = if v.load(Ordering::SeqCst) == 1 { "||nothing.test^\n" } else { "||tracker.test^\n" };
                async move {
                    http::Response::builder().header("content-type", "text/plain").body(support::body(text)).unwrap()
                }
            }),
        )
        .await;
    let tracker = support::static_origin(None, "image/gif", "GIF89a").await;
    let resolve = [support::resolve("lists.test", 80, &lists), support::resolve("tracker.test", 80, &tracker)];
    let cfg = "[[lists]]\nname = \"sub\"\nurl = \"http://lists.test/l.txt\"\nverdict = \"block\"\nrefresh = \"24h\"\n";
    let p = support::Proxy::start(&resolve, cfg).await;
    let started = Instant::now();
    while !p.shared.lists.summaries()[0].state.starts_with("updated") {
        assert!(started.elapsed() < Duration::from_secs(20), "the first download");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let blocked = |p: &support::Proxy| {
        let c = p.client(&[]);
        async move { c.get("http://tracker.test/p.gif").send().await.unwrap().headers().contains_key("x-nostalk") }
    };
    assert!(!blocked(&p).await, "not in the list yet");

    version.store(2, Ordering::SeqCst);
    let addr = p.addr.to_string();
    let out =
        tokio::task::spawn_blocking(move || nostalk().args(["lists", "--refresh", "--proxy", &addr]).output().unwrap())
            .await
            .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(said.trim(), "sub: updated");
    assert!(blocked(&p).await, "the new rules are in force when the command returns");
    assert_eq!(tracker.count(), 1, "only the request before the refresh reached the tracker");
}

#[test]
fn an_edited_config_file_is_reloaded_without_a_signal() {
    let lists = tempfile::tempdir().unwrap();
    let rules = lists.path().join("rules.txt");
    std::fs::write(&rules, "||tracker.test^\n").unwrap();
    // tracker.test is named to a loopback address that destination filtering refuses: an
    // unlisted request is answered 403 here, with no lookup and no network.
    let extra = "[upstream]\nresolve = [\"tracker.test:80:127.0.0.1:9\"]\n[policy]\nembedded_lists = false\n";
    let (dir, port, child) = run_binary(extra, Stdio::piped());
    let mut child = Running(child);
    let log = LogLines::of(&mut child.0);
    log.wait_for("listening");
    let explain_blocked = |port: u16| {
        // A tracker request, answered here either way.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET http://tracker.test/t.gif HTTP/1.1\r\nHost: tracker.test\r\nSec-Fetch-Dest: image\r\nConnection: close\r\n\r\n")
            .unwrap();
        // A blocked image is answered with a GIF: bytes, not text.
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        String::from_utf8_lossy(&resp).contains("x-nostalk: blocked")
    };
    assert!(!explain_blocked(port));
    let cfg_path = dir.path().join("c.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, format!("{cfg}\n[[lists]]\nname = \"mine\"\npath = {:?}\n", rules.display().to_string()))
        .unwrap();
    log.wait_for("the config file changed");
    log.wait_for("config reloaded");
    assert!(explain_blocked(port), "the edited file's list is in force");
    drop(child);
}

/// A child process stopped (SIGTERM, then waited for) however the test ends, so a failed
/// assertion does not leave it running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn the_systemd_units_verify_and_the_service_is_rated_2_or_below_by_systemd_analyze_security() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let unit = include_str!("../deploy/systemd/nostalk.service");
    // The units as installed, with this build's binary where they name /usr/local/bin/nostalk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nostalk.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/nostalk", env!("CARGO_BIN_EXE_nostalk"))).unwrap();
    let socket = dir.path().join("nostalk.socket");
    std::fs::write(&socket, include_str!("../deploy/systemd/nostalk.socket")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).arg(&socket).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("nostalk."), "systemd-analyze verify has something to say about the units: {said}");
    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let level: f64 = said
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for nostalk.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(level <= 2.0, "exposure {level}: {said}");
}

/// `nostalk run` started as systemd starts a socket-activated service: the listening socket
/// is fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` is the process's own pid (set by a shell that
/// then execs nostalk, keeping its pid).
fn run_socket_activated(cfg: &std::path::Path, socket: &std::net::TcpListener) -> Running {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = socket.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_nostalk"), "run", "--config"])
        .arg(cfg)
        .env("LISTEN_FDS", "1")
        .stderr(Stdio::piped());
    // SAFETY: dup2(2) is async-signal-safe; it only places the test's listening socket at fd 3
    // (without close-on-exec) in the child before exec.
    unsafe {
        cmd.pre_exec(move || if libc::dup2(fd, 3) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    Running(cmd.spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_by_socket_hand_over_fails_no_request() {
    let o = support::origin(None, support::handler(|_req| async { http::Response::new(support::body("page")) })).await;
    // The test holds the listening socket, as systemd does for a .socket unit.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = socket.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let ca = dir.path().join("ca").display().to_string();
    std::fs::write(
        &cfg,
        offline(&format!(
            "[ca]\ndir = {ca:?}\n[server]\nlisten = \"127.0.0.1:1\"\nshutdown_grace = \"5s\"\n\
             [upstream]\nresolve = [\"site.test:80:127.0.0.1:{}\"]\nallow = [\"127.0.0.0/8\"]\n",
            o.addr.port()
        )),
    )
    .unwrap();

    let mut old = run_socket_activated(&cfg, &socket);
    let old_log = LogLines::of(&mut old.0);
    let listening = old_log.wait_for("listening");
    assert!(
        listening.contains(&format!("127.0.0.1:{proxy_port}")),
        "serves the passed socket, not [server] listen: {listening}"
    );

    // A new connection for every request, so each one is accepted by whichever process is
    // accepting at that moment.
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://127.0.0.1:{proxy_port}")).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let old_gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop_load, old_gone_load) = (stop.clone(), old_gone.clone());
    let load = tokio::spawn(async move {
        let (mut sent, mut failed, mut after) = (0, 0, 0);
        let started = Instant::now();
        while !stop_load.load(std::sync::atomic::Ordering::SeqCst)
            && sent < 50_000
            && started.elapsed() < Duration::from_secs(60)
        {
            sent += 1;
            let ok = match client.get("http://site.test/").send().await {
                Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|t| t == "page"),
                Err(_) => false,
            };
            if !ok {
                failed += 1;
            } else if old_gone_load.load(std::sync::atomic::Ordering::SeqCst) {
                after += 1;
            }
        }
        (sent, failed, after)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process starts on the same socket while the old one serves, then the old one
    // is told to stop.
    let mut new = run_socket_activated(&cfg, &socket);
    let new_log = LogLines::of(&mut new.0);
    new_log.wait_for("listening");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(old.0.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    while old.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "the old process ends once its requests are done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old_gone.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed, after) = load.await.unwrap();
    assert_eq!(failed, 0, "no request failed across the hand-over ({sent} sent)");
    assert!(after > 0, "the new process served once the old one had gone");
    eprintln!("{sent} requests across the hand-over, {after} after the old process ended, none failed");
    drop(socket);
}

#[test]
fn passwd_adds_a_user_with_an_argon2_hash_and_check_names_a_broken_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let mut child = nostalk()
        .args(["passwd", "alice", "--file"])
        .arg(&users)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice can now sign in"));
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.starts_with("alice:$argon2id$") && !text.contains("correct horse"), "{text}");

    let cfg = dir.path().join("c.toml");
    std::fs::write(&users, "alice:not-a-hash\n").unwrap();
    std::fs::write(
        &cfg,
        format!("[auth]\nusers = {:?}\n[server]\nlisten = \"127.0.0.1:0\"\n", users.display().to_string()),
    )
    .unwrap();
    let out = nostalk().args(["check", "--config"]).arg(&cfg).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("auth.users") && said.contains("users:1"), "{said}");
}

#[test]
fn the_user_and_group_are_in_the_decision_log_only_when_the_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    // The raw request of log_of_one_block signs in as alice:correct horse.
    nostalk::ops::auth::set_password(&users, "alice", "correct horse").unwrap();
    let auth = |log: bool| {
        format!(
            "[auth]\nusers = {:?}\nlog_users = {log}\n[[groups]]\nname = \"strict\"\nmembers = [\"alice\"]\n",
            users.display().to_string()
        )
    };
    let (d, all) = log_of_one_block(&auth(false));
    assert_eq!(d["fields"]["decision"], "block");
    assert!(d["fields"].get("user").is_none() && !all.contains("alice"), "{all}");
    let (d, _) = log_of_one_block(&auth(true));
    assert_eq!((d["fields"]["user"].as_str(), d["fields"]["group"].as_str()), (Some("alice"), Some("strict")), "{d}");
}

#[test]
fn ads_down_blocks_an_ad_source_for_explain_and_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nostalk.toml");
    let store = dir.path().join("choices.sqlite3");
    std::fs::write(&cfg, offline(&format!("[receipt]\nstore = {:?}\n", store.display().to_string()))).unwrap();
    let run = |args: &[&str]| {
        let out = nostalk().args(args).args(["--config", cfg.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = "https://securepubads.g.doubleclick.net/gampad/ads?iu=/1/news";
    let page = "https://news.example/";
    assert!(run(&["explain", url, "--page", page, "--type", "script"]).starts_with("ad "));
    assert!(run(&["ads"]).contains("no ad source is down-voted"));
    let said = run(&["ads", "down", "securepubads.g.doubleclick.net"]);
    assert!(said.contains("doubleclick.net: 1 down-vote(s); its ads are now blocked"), "{said}");
    let e = run(&["explain", url, "--page", page, "--type", "script"]);
    assert!(e.starts_with("block ") && e.contains("list:  down-voted"), "{e}");
    assert!(run(&["ads"]).contains("doubleclick.net  1 down-vote(s)  blocked (down-voted)"));
    run(&["ads", "restore", "doubleclick.net"]);
    assert!(run(&["explain", url, "--page", page, "--type", "script"]).starts_with("ad "));
}
