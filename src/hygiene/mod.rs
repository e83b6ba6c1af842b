//! What a verdict does to a request and its response, besides blocking: cookies, query
//! parameters, Referer, client hints, `Sec-GPC`/`DNT` on the way out; `Set-Cookie`, `ETag` and
//! client-hint requests on the way back. `shopping` holds the per-site shopping switches.

pub mod request;
pub mod response;
pub mod shopping;

use crate::policy::{Decision, Policy, RequestType, Verdict};

/// Everything hygiene needs to know about one request.
pub struct Context<'a> {
    pub decision: &'a Decision,
    pub policy: &'a Policy,
    pub request_type: RequestType,
    pub host: &'a str,
    pub page_host: &'a str,
    pub third_party: bool,
    /// The page's site is in shopping mode.
    pub shopping: bool,
    /// A trusted site: nothing is cleaned.
    pub trusted: bool,
}

impl Context<'_> {
    pub fn is_ad(&self) -> bool {
        self.decision.verdict == Verdict::Ad
    }
}
