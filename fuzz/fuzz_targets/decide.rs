//! URL classification and the decision on arbitrary lines `URL [PAGE [TYPE]]`, as
//! `nostalk explain -` reads them: never a panic, always one of the three verdicts.
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
        if let Ok(e) = nostalk::policy::explain(policy(), url, parts.next(), parts.next()) {
            assert!(matches!(e.decision, nostalk::policy::Verdict::Block | nostalk::policy::Verdict::Ad | nostalk::policy::Verdict::Allow));
        }
    }
});
