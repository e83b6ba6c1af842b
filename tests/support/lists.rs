//! The policy of EasyPrivacy (`block`) and EasyList (`ad`) from `../shared/data/lists` and
//! nothing else: the judge and the load the tests and benches measure nostalk against. Shared by
//! tests (through `support`) and benches (by path).

use nostalk::config::{Dur, ListVerdict};
use nostalk::policy::Policy;
use std::path::Path;

pub fn easylist_easyprivacy_policy(data: &Path) -> Policy {
    let mut cfg = nostalk::Config::default();
    cfg.policy.embedded_lists = false;
    let list = |name: &str, verdict: ListVerdict| nostalk::config::ListConfig {
        name: name.into(),
        url: None,
        path: Some(data.join("lists").join(format!("{name}.txt"))),
        verdict,
        refresh: Dur::secs(24 * 3600),
    };
    cfg.lists = vec![list("easyprivacy", ListVerdict::Block), list("easylist", ListVerdict::Ad)];
    Policy::build(&cfg, &[]).expect("the list snapshots in ../shared parse")
}

/// A request type of adblock-rust's test data (../shared/data/requests), as nostalk names it.
pub fn dataset_type(t: &str) -> nostalk::policy::RequestType {
    use nostalk::policy::RequestType;
    match t {
        "xhr" | "fetch" => RequestType::XmlHttpRequest,
        "subdocument" => RequestType::SubFrame,
        "beacon" => RequestType::Ping,
        other => RequestType::parse(other).unwrap_or(RequestType::Other),
    }
}
