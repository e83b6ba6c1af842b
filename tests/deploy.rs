//! What deploy/ ships, checked as an operator would: the Kubernetes manifests validated against
//! Kubernetes' own schemas (kubernetes-validate, strict: no unknown field), with what the
//! gateway needs in them; the config they carry accepted by nostalk; the OpenWrt init script
//! and the container file well-formed.

use std::path::Path;
use std::process::Command;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_kubernetes_manifests_pass_strict_schema_validation() {
    let mut files: Vec<_> = std::fs::read_dir(MANIFESTS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        // kustomize's own file, not a Kubernetes object: checked by the kustomize test.
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let out = match Command::new("kubernetes-validate").arg("--strict").args(&files).output() {
        Ok(out) => out,
        Err(_) => {
            eprintln!("SKIPPED: kubernetes-validate is not installed (./scripts/test installs it)");
            return;
        }
    };
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    for kind in ["configmap", "secret", "deployment", "service", "poddisruptionbudget", "horizontalpodautoscaler"] {
        assert!(said.contains(&format!("passed for resource {kind}/")), "{kind} was not validated: {said}");
    }
}

/// `kubectl apply -k deploy/kubernetes` applies what a team needs and not the empty Secret:
/// kustomize builds it (kubectl's built-in kustomize), and the built manifests pass the same
/// strict schema validation.
#[test]
fn kustomize_builds_the_gateway_without_the_empty_secret_and_it_validates() {
    let built = match Command::new("kubectl").args(["kustomize", MANIFESTS]).output() {
        Ok(out) => out,
        Err(_) => {
            eprintln!("SKIPPED: kubectl is not installed (./scripts/test installs Debian's kubernetes-client)");
            return;
        }
    };
    let yaml = String::from_utf8_lossy(&built.stdout).to_string();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    for needed in [
        "kind: ConfigMap",
        "kind: Deployment",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "type: LoadBalancer",
        "sessionAffinity: ClientIP",
        "externalTrafficPolicy: Local",
        "image: nostalk:0.1.0",
        "name: PGPASSWORD",
    ] {
        assert!(yaml.contains(needed), "the kustomize build lacks `{needed}`:\n{yaml}");
    }
    assert!(!yaml.contains("kind: Secret"), "the empty Secret is not applied over a real one");
    assert!(!yaml.contains(":latest"), "an image by tag, not :latest");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("built.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let Ok(out) = Command::new("kubernetes-validate").arg("--strict").arg(&file).output() else {
        eprintln!("SKIPPED (validation only): kubernetes-validate is not installed");
        return;
    };
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("passed for resource service/nostalk"), "{said}");
}

#[test]
fn the_deployment_has_what_a_gateway_needs() {
    let d = read("deploy/kubernetes/deployment.yaml");
    for needed in [
        "replicas: 3",
        "path: /readyz",
        "path: /healthz",
        "limits:",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "secretName: nostalk-ca",
        "name: nostalk-config",
    ] {
        assert!(d.contains(needed), "deployment.yaml lacks `{needed}`");
    }
    let d = read("deploy/kubernetes/disruption.yaml");
    assert!(d.contains("kind: PodDisruptionBudget") && d.contains("kind: HorizontalPodAutoscaler"));
    assert!(d.contains("name: cpu"));
}

/// The config the ConfigMap carries: the block under `nostalk.toml: |`, de-indented.
fn configmap_config() -> String {
    let text = read("deploy/kubernetes/configmap.yaml");
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("nostalk.toml: |")).skip(1);
    let mut out = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("    ") {
            break;
        }
        out.push_str(line.strip_prefix("    ").unwrap_or(line));
        out.push('\n');
    }
    out
}

#[test]
fn the_configmaps_config_is_one_nostalk_accepts_and_keeps_no_per_person_history() {
    let text = configmap_config();
    let cfg = nostalk::config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(!cfg.receipt.per_person);
    assert_eq!(cfg.server.listen, "0.0.0.0:8877");
    assert!(
        cfg.server.shutdown_grace.get() < std::time::Duration::from_secs(30),
        "drains within the pod's grace period"
    );
}

#[test]
fn the_openwrt_init_script_is_valid_shell_and_reloads_with_sighup() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/openwrt/nostalk/files/nostalk.init");
    let out = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("USE_PROCD=1") && text.contains("procd_open_instance"));
    assert!(text.contains("reload_service") && text.contains("HUP"));
    let makefile = read("deploy/openwrt/nostalk/Makefile");
    assert!(makefile.contains("BuildPackage,nostalk"), "an OpenWrt SDK package");
}

#[test]
fn the_openwrt_package_keeps_the_ca_the_choices_and_the_list_cache_on_flash() {
    // The package installs router.toml with three lines moved from /var (RAM on OpenWrt) to
    // /etc: run its sed on router.toml, and the result must move both and stay valid.
    let makefile = read("deploy/openwrt/nostalk/Makefile");
    let exprs: Vec<String> = makefile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sed -e ").or_else(|| l.trim().strip_prefix("-e ")))
        .map(|l| l.trim_end_matches(" \\").trim().trim_matches('\'').to_string())
        .collect();
    assert_eq!(exprs.len(), 3, "{exprs:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sed")
        .args(exprs.iter().flat_map(|e| ["-e", e.as_str()]))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/router.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let installed = String::from_utf8(out.stdout).unwrap();
    assert!(installed.contains("dir = \"/etc/nostalk/ca\""), "{installed}");
    assert!(installed.contains("store = \"/etc/nostalk/choices.sqlite3\""), "{installed}");
    assert!(installed.contains("list_cache_dir = \"/etc/nostalk/lists\""), "the list cache survives a reboot");
    let path = dir.path().join("nostalk.toml");
    std::fs::write(&path, installed).unwrap();
    nostalk::Config::load(&path).expect("the installed config is valid");
    assert!(makefile.contains("/etc/nostalk/ca/nostalk-ca.key") && makefile.contains("/etc/nostalk/choices.sqlite3"));
}

#[test]
fn the_container_runs_a_static_binary_as_non_root() {
    let c = read("deploy/container/Containerfile");
    assert!(c.contains("-musl"), "a static (musl) build");
    assert!(c.contains("USER 65532"), "non-root");
    assert!(c.lines().any(|l| l.starts_with("FROM") && (l.contains("distroless") || l.contains("scratch"))));
}

#[test]
fn the_containers_own_config_is_one_nostalk_accepts() {
    let text = read("deploy/container/nostalk.toml");
    let cfg = nostalk::config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.server.listen, "0.0.0.0:8877", "reachable from outside the container");
    assert!(
        read("deploy/container/Containerfile").contains("COPY deploy/container/nostalk.toml /etc/nostalk/nostalk.toml")
    );
}

#[test]
fn the_openwrt_firewall_rules_send_ports_80_and_443_to_the_transparent_listeners_of_router_toml() {
    let redirect = read("deploy/openwrt/nostalk/files/nostalk-redirect.nft");
    let router = read("config/examples/router.toml");
    // The ports the rules redirect to are the ones router.toml's [transparent] names.
    let uncommented: String = router
        .lines()
        .map(|l| {
            if l.starts_with("# [transparent]") || l.starts_with("# http") || l.starts_with("# https") {
                &l[2..]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = nostalk::config::Config::parse(&uncommented).unwrap_or_else(|e| panic!("{e}"));
    let port = |a: &Option<String>| a.as_deref().unwrap().rsplit(':').next().unwrap().to_string();
    assert!(redirect.contains(&format!(
        "tcp dport 80 fib daddr type != local counter redirect to :{}",
        port(&cfg.transparent.http)
    )));
    assert!(redirect.contains(&format!(
        "tcp dport 443 fib daddr type != local counter redirect to :{}",
        port(&cfg.transparent.https)
    )));
    assert!(read("deploy/openwrt/nostalk/files/nostalk-noquic.nft").contains("udp dport 443"));
    assert!(read("deploy/openwrt/nostalk/Makefile").contains("nostalk-redirect.nft"));
}

/// The uid and gid the test gives the unit's `nostalk` user (as `useradd --system` would give
/// one): not root, owning nothing on this machine.
const SERVICE_ID: u32 = 64901;

/// A one-answer origin for the gateway to reach: every request gets `hello`.
fn hello_origin() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Bounded: the test makes two requests through the proxy.
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
        }
    });
    port
}

/// `cmd` as the unit runs it: the service's uid and gid, no other group, umask 0077.
fn as_service(cmd: &str) -> Command {
    let mut c = Command::new("setpriv");
    let id = SERVICE_ID.to_string();
    c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--", "sh", "-c"]);
    c.arg(format!("umask 0077; exec {cmd}"));
    c
}

fn curl_through(port: u16, extra: &[&str], url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-x"])
        .arg(format!("http://127.0.0.1:{port}"))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// README.md's "A team, on a gateway", line by line as root would type it, in a temporary root;
/// then what systemd does with deploy/systemd/nostalk.service: the state directory made the
/// service user's (StateDirectory=, 0700), `ExecStartPre` and `ExecStart` run as that
/// unprivileged user with the unit's umask. The config is changed only to stay on loopback.
#[test]
fn the_team_s_systemd_steps_give_a_gateway_that_checks_and_serves_as_its_own_unprivileged_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid(2) only reads the process's user id.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        println!("SKIPPED: running the steps as an unprivileged user needs root and setpriv");
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["usr/local/bin", "etc/systemd/system", "var/lib"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let r = root.display().to_string();

    // The README's block, run in order.
    let readme = read("README.md");
    let block = readme.split("### A team, on a gateway\n\n```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let (mut ran, mut user_made) = (0, false);
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("useradd ") {
            assert!(line.contains("--system") && line.ends_with(" nostalk"), "{line}");
            user_made = true;
            continue;
        }
        if line.starts_with("systemctl ") {
            continue; // what systemd does is below
        }
        let line = line
            .replace("target/release/nostalk", env!("CARGO_BIN_EXE_nostalk"))
            .replace(" /etc/", &format!(" {r}/etc/"))
            .replace(" /usr/local/bin/", &format!(" {r}/usr/local/bin/"))
            .replace("-g nostalk", &format!("-g {SERVICE_ID}"));
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &line])
            .current_dir(manifest)
            .env("PATH", format!("{r}/usr/local/bin:{}", std::env::var("PATH").unwrap_or_default()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        ran += 1;
    }
    assert!(user_made && ran >= 5, "the README's team block changed shape: {block}");
    let users = root.join("etc/nostalk/users");
    let meta = std::fs::metadata(&users).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o640, 0, SERVICE_ID), "the users file");
    assert!(std::fs::read_to_string(&users).unwrap().starts_with("alice:$argon2id$"));

    // Only what keeps the gateway on loopback changes in the installed config.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origin = hello_origin();
    let cfg_path = root.join("etc/nostalk/nostalk.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    for from in ["\"0.0.0.0:8877\"", "[\"10.0.0.0/8\"]", "https://easylist.to/", "[upstream]\n"] {
        assert!(cfg.contains(from), "team.toml no longer has {from}");
    }
    let cfg = cfg
        .replace("\"/etc/nostalk/", &format!("\"{r}/etc/nostalk/"))
        .replace("\"/var/lib/nostalk/", &format!("\"{r}/var/lib/nostalk/"))
        .replace("\"0.0.0.0:8877\"", &format!("\"127.0.0.1:{port}\""))
        .replace("[\"10.0.0.0/8\"]", "[\"127.0.0.1/32\"]")
        .replace("https://easylist.to/", "http://127.0.0.1:9/")
        .replace(
            "[upstream]\n",
            &format!("[upstream]\nresolve = [\"site.test:80:127.0.0.1:{origin}\"]\nallow = [\"127.0.0.0/8\"]\n"),
        );
    std::fs::write(&cfg_path, cfg).unwrap();

    // systemd: StateDirectory=nostalk with StateDirectoryMode=0700, the service user's.
    let state = root.join("var/lib/nostalk");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(SERVICE_ID), Some(SERVICE_ID)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/nostalk.service")).unwrap();
    let exec = |key: &str| {
        let line = unit.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in the unit"));
        line.replace("/usr/local/bin/", &format!("{r}/usr/local/bin/")).replace(" /etc/", &format!(" {r}/etc/"))
    };
    assert!(unit.contains("\nUser=nostalk\n") && unit.contains("\nUMask=0077\n"));

    let check = as_service(&exec("ExecStartPre=")).output().unwrap();
    assert!(check.status.success(), "the unit's check: {}", String::from_utf8_lossy(&check.stderr));
    let mut run = as_service(&exec("ExecStart=")).stderr(std::process::Stdio::null()).spawn().unwrap();
    let ready = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}/readyz"))
            .output()
            .unwrap();
        out.stdout == b"200"
    });
    let anonymous = curl_through(port, &[], "http://site.test/");
    let alice = curl_through(port, &["--proxy-user", "alice:a long passphrase"], "http://site.test/");
    let wrong = curl_through(port, &["--proxy-user", "alice:guess"], "http://site.test/");
    let _ = run.kill();
    let _ = run.wait();
    assert!(ready, "the gateway never turned ready");
    assert_eq!((anonymous.as_str(), alice.as_str(), wrong.as_str()), ("407", "200", "407"));
    // The CA the service made is its own, readable by it alone.
    let key = std::fs::metadata(state.join("ca/nostalk-ca.key")).unwrap();
    assert_eq!((key.uid(), key.mode() & 0o777), (SERVICE_ID, 0o600));

    // The control: a users file root's alone (as `nostalk passwd` made it before) stops the
    // unit at its check, naming the file.
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let check = as_service(&exec("ExecStartPre=")).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success() && err.contains("users") && err.contains("ermission denied"), "{err}");
}
