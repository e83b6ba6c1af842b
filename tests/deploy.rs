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
