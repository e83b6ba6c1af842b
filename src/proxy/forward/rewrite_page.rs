//! The rewrite_page phase: an HTML page the client will render is handed to the streaming
//! rewriter (crate::rewrite), which takes the top page's shopping switch from the Exchange;
//! here it is also chosen how the rewritten page travels (gzip or identity), and whether the
//! page is an ad's frame or a tracker's page kept unlinkable (whose storage the rewriter shims
//! to the page's life).

use crate::base::Body;
use crate::config::OutputEncoding;
use crate::exchange::Exchange;
use crate::policy::{RequestType, Verdict};
use crate::rewrite::{self, Removals};
use http::response::Parts;
use http::{Method, Response};
use std::sync::{Arc, Mutex};

/// Whether this response is a page the rewriter takes.
pub fn wanted(method: &Method, parts: &Parts) -> bool {
    rewrite::is_rewritable(method, parts.status, &parts.headers)
}

/// Gzip the rewritten page? Never when the client did not ask for it, whatever the config
/// prefers; on `auto`, for clients on other machines only (loopback gains nothing from it).
pub fn gzip_out(client_gzip: bool, choice: OutputEncoding, client_loopback: bool) -> bool {
    client_gzip
        && match choice {
            OutputEncoding::Gzip => true,
            OutputEncoding::Identity => false,
            OutputEncoding::Auto => !client_loopback,
        }
}

pub async fn rewrite_page(
    parts: Parts,
    body: Body,
    ex: &Exchange,
    judge: rewrite::Judge,
    gzip: bool,
) -> (Response<Body>, Arc<Mutex<Removals>>) {
    let ad_frame = ex.request_type == RequestType::SubFrame && ex.decision.verdict == Verdict::Ad;
    let page_lived = ad_frame || ex.decision.is_unlinkable();
    let page = rewrite::Page { judge, host: ex.host.clone(), shopping: ex.shopping, gzip, page_lived };
    rewrite::rewrite_response(parts, body, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_only_when_asked_for_and_chosen() {
        assert!(!gzip_out(false, OutputEncoding::Gzip, false), "never a coding the client did not ask for");
        assert!(gzip_out(true, OutputEncoding::Auto, false));
        assert!(!gzip_out(true, OutputEncoding::Auto, true), "identity to loopback on auto");
        assert!(gzip_out(true, OutputEncoding::Gzip, true));
        assert!(!gzip_out(true, OutputEncoding::Identity, false));
    }
}
