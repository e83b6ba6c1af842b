//! Whether the page's Content-Security-Policy lets our scripts run (the page script, and in an
//! ad's frame or an unlinkable page the storage shim), and how: with no policy, or one that allows inline scripts, as they
//! are; with a nonce the policy already carries; with a policy that already lists script
//! hashes, by adding our scripts' hashes to that list.
//! A policy that forbids inline scripts outright (no 'unsafe-inline', no nonce, no hash, or
//! 'none') is never loosened: the script is left out.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, CONTENT_SECURITY_POLICY};
use sha2::Digest;

/// The one script nostalk puts in every page it rewrites (src/rewrite/page.js): it announces
/// Global Privacy Control to the page's own code and to the frames of its own origin whose
/// documents nostalk does not rewrite (a frame showing JSON or text, or `about:blank`), and
/// keeps a cookie that a listed script writes (`document.cookie` or `cookieStore.set` with a
/// script on the call stack whose response the proxy marked listed, `Server-Timing:
/// nostalk;desc=listed`: an ad's, or one the person let through) for the page's life only,
/// so the `_fbp`/`_ga` pattern keeps nothing between visits (the page's own scripts' cookies
/// are untouched); and tightens a referrer policy the page loosens by `<meta name="referrer">`
/// or a link's `referrerpolicy`, as the parser or a script puts it in, to
/// `strict-origin-when-cross-origin`.
pub const PAGE_SCRIPT: &str = include_str!("page.js").trim_ascii_end();

/// In a third-party frame decided `ad`, and on a tracker's page a navigation loads
/// (unlinkable): cookies and Web Storage that live only as long as the page, and no IndexedDB,
/// Cache API or service worker, so it keeps no identifier in the browser between visits.
pub const PAGE_LIVED_STORAGE: &str = include_str!("../respond/surrogates/page-lived-storage.js").trim_ascii_end();

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpcPlan {
    /// Insert `<script>` as it is (or with this nonce).
    Inject { nonce: Option<String> },
    /// Leave it out: the policy forbids inline scripts.
    Skip,
}

/// The CSP hash source of one of our scripts.
pub fn hash_source(script: &str) -> String {
    let digest = sha2::Sha256::digest(script.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The hash sources of both our scripts, as a hash-based policy gets them.
pub fn our_hash_sources() -> String {
    format!("{} {}", hash_source(PAGE_SCRIPT), hash_source(PAGE_LIVED_STORAGE))
}

/// Decide, and add our hash to hash-based policies in `headers` when that is the way in.
pub fn plan(headers: &mut HeaderMap) -> GpcPlan {
    let policies: Vec<String> =
        headers.get_all(CONTENT_SECURITY_POLICY).iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    if policies.is_empty() {
        return GpcPlan::Inject { nonce: None };
    }
    let mut nonce = None;
    let mut rewritten = Vec::with_capacity(policies.len());
    for p in &policies {
        match judge(p) {
            Judgement::Allows => rewritten.push(p.clone()),
            Judgement::Nonce(n) => {
                if nonce.as_ref().is_some_and(|m| m != &n) {
                    return GpcPlan::Skip;
                }
                nonce = Some(n);
                rewritten.push(p.clone());
            }
            Judgement::Hashes(directive) => rewritten.push(add_hash(p, &directive)),
            Judgement::Forbids => return GpcPlan::Skip,
        }
    }
    headers.remove(CONTENT_SECURITY_POLICY);
    for p in rewritten {
        match HeaderValue::from_str(&p) {
            Ok(v) => {
                headers.append(CONTENT_SECURITY_POLICY, v);
            }
            Err(_) => return GpcPlan::Skip,
        }
    }
    GpcPlan::Inject { nonce }
}

enum Judgement {
    Allows,
    Nonce(String),
    /// Uses hashes: add ours to this directive.
    Hashes(String),
    Forbids,
}

fn judge(policy: &str) -> Judgement {
    let directives: Vec<(String, Vec<&str>)> = policy
        .split(';')
        .filter_map(|d| {
            let mut it = d.split_ascii_whitespace();
            let name = it.next()?.to_ascii_lowercase();
            Some((name, it.collect()))
        })
        .collect();
    let find = |n: &str| directives.iter().find(|(name, _)| name == n);
    let Some((name, sources)) = find("script-src-elem").or_else(|| find("script-src")).or_else(|| find("default-src"))
    else {
        return Judgement::Allows;
    };
    let lower: Vec<String> = sources.iter().map(|s| s.to_ascii_lowercase()).collect();
    if lower.iter().any(|s| s == "'none'") && lower.len() == 1 {
        return Judgement::Forbids;
    }
    if let Some(n) = sources.iter().find_map(|s| s.strip_prefix("'nonce-").and_then(|r| r.strip_suffix('\''))) {
        return Judgement::Nonce(n.to_string());
    }
    if lower.iter().any(|s| s.starts_with("'sha256-") || s.starts_with("'sha384-") || s.starts_with("'sha512-")) {
        return Judgement::Hashes(name.clone());
    }
    if lower.iter().any(|s| s == "'unsafe-inline'") && !lower.iter().any(|s| s == "'strict-dynamic'") {
        return Judgement::Allows;
    }
    Judgement::Forbids
}

fn add_hash(policy: &str, directive: &str) -> String {
    let hash = our_hash_sources();
    policy
        .split(';')
        .map(|d| {
            let trimmed = d.trim();
            let name = trimmed.split_ascii_whitespace().next().unwrap_or("");
            if name.eq_ignore_ascii_case(directive) {
                format!("{trimmed} {hash}")
            } else {
                trimmed.to_string()
            }
        })
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(csp: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in csp {
            h.append(CONTENT_SECURITY_POLICY, c.parse().unwrap());
        }
        h
    }

    #[test]
    fn no_policy_or_unsafe_inline_injects_plainly() {
        assert_eq!(plan(&mut with(&[])), GpcPlan::Inject { nonce: None });
        assert_eq!(plan(&mut with(&["script-src 'self' 'unsafe-inline'"])), GpcPlan::Inject { nonce: None });
        assert_eq!(plan(&mut with(&["img-src 'self'"])), GpcPlan::Inject { nonce: None });
    }

    #[test]
    fn a_nonce_policy_lends_its_nonce() {
        let mut h = with(&["default-src 'self'; script-src 'nonce-abc123' 'strict-dynamic'"]);
        assert_eq!(plan(&mut h), GpcPlan::Inject { nonce: Some("abc123".into()) });
        assert_eq!(
            h.get(CONTENT_SECURITY_POLICY).unwrap(),
            "default-src 'self'; script-src 'nonce-abc123' 'strict-dynamic'"
        );
    }

    #[test]
    fn a_hash_policy_gets_our_hash_and_nothing_else() {
        let mut h = with(&["script-src 'sha256-AAAA'; object-src 'none'"]);
        assert_eq!(plan(&mut h), GpcPlan::Inject { nonce: None });
        let v = h.get(CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().to_string();
        let ours = our_hash_sources();
        assert_eq!(v, format!("script-src 'sha256-AAAA' {ours}; object-src 'none'"));
    }

    #[test]
    fn a_strict_policy_is_never_loosened() {
        let mut h = with(&["script-src 'self'"]);
        assert_eq!(plan(&mut h), GpcPlan::Skip);
        assert_eq!(h.get(CONTENT_SECURITY_POLICY).unwrap(), "script-src 'self'");
        assert_eq!(plan(&mut with(&["default-src 'none'"])), GpcPlan::Skip);
        assert_eq!(plan(&mut with(&["script-src 'unsafe-inline'", "script-src 'self'"])), GpcPlan::Skip);
    }
}
