//! The uncloak phase: a request the lists let through is looked at once more by the names its
//! host resolves through. A first-party name that is a CNAME of a tracker's host (CNAME
//! cloaking, which hides a third party behind the page's own site and its cookies) is decided
//! as that tracker, with the rule and the CNAME named. The lookup is the one the connection
//! would make, cached by the dialer's resolver; the decision on the tracker's name is made with
//! the same overlays as every other ([`Policy::decide_cloaked`]); `[upstream] uncloak = false` skips it.

use crate::exchange::Exchange;
use crate::policy::{Overlay, Policy, RequestInfo};
use crate::proxy::dial::Dialer;

pub async fn uncloak(ex: &mut Exchange, policy: &Policy, overlay: &Overlay, dialer: &Dialer) {
    if ex.decision.reason != crate::policy::Reason::NoRule {
        return;
    }
    let cnames = dialer.cnames(&ex.host).await;
    if cnames.is_empty() {
        return;
    }
    let info = RequestInfo {
        url: &ex.url,
        host: &ex.host,
        page_host: Some(&ex.page.host),
        request_type: ex.request_type,
        method: ex.method.as_str(),
    };
    if let Some(d) = policy.decide_cloaked(&info, &cnames, (&ex.site, &ex.page.site), overlay) {
        tracing::Span::current().record("verdict", d.verdict.as_str());
        ex.decision = d;
    }
}
