//! URL classification and the decision on arbitrary lines `URL [PAGE [TYPE]]`, as
//! `nostalk explain -` reads them (with `document`, the bounce list's destinations too): never
//! a panic, always one of the three verdicts. A one-time pass taken off any URL leaves a URL
//! without the pass parameter.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn policy() -> &'static nostalk::Policy {
    static P: OnceLock<nostalk::Policy> = OnceLock::new();
    P.get_or_init(|| nostalk::Policy::build(&nostalk::Config::embedded(), &[]).expect("the embedded policy builds"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines().take(8) {
        let mut parts = line.split_whitespace();
        let Some(url) = parts.next() else { continue };
        if let Ok(e) = nostalk::policy::explain(policy(), url, parts.next(), parts.next(), &Default::default()) {
            assert!(matches!(e.decision, nostalk::policy::Verdict::Block | nostalk::policy::Verdict::Ad | nostalk::policy::Verdict::Allow));
        }
        let passes = nostalk::policy::passes::Passes::default();
        if let Some((clean, good)) = passes.redeem(url) {
            assert!(!good, "no pass was minted");
            let before_fragment = clean.split('#').next().unwrap_or("");
            let query = before_fragment.split_once('?').map_or("", |(_, q)| q);
            assert!(!query.split('&').any(|p| p.starts_with("nostalk-pass=")), "{clean}");
        }
    }
});
