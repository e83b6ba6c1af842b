//! The send phase: the cleaned request to the upstream through the pooled client, within
//! `[upstream] response_timeout`. A failure is answered here with a page the person can read
//! (502 with the reason, 504 on the timeout) and marked in the Exchange for the record.

use crate::exchange::Exchange;
use crate::proxy::upstream::{self, Upstream};
use crate::respond;
use crate::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::info;

pub async fn send(
    upstream: &Upstream,
    req: Request<Body>,
    ex: &mut Exchange,
) -> Result<Response<Incoming>, Response<Body>> {
    let timeout = upstream.response_timeout;
    let failed = match tokio::time::timeout(timeout, upstream.request(req)).await {
        Ok(Ok(resp)) => return Ok(resp),
        Ok(Err(e)) => {
            let (status, reason) = upstream::classify_error(&*e);
            info!(host = %ex.host, error = %reason, status = status.as_u16(), "upstream failed");
            let title = status.canonical_reason().unwrap_or("Bad Gateway");
            respond::error_page(status, title, &format!("{}: {reason}", ex.host))
        }
        Err(_) => {
            info!(host = %ex.host, after = ?timeout, "upstream timed out");
            let detail = format!("{} did not answer within {} s", ex.host, timeout.as_secs());
            respond::error_page(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout", &detail)
        }
    };
    ex.done.upstream_failed = true;
    Err(failed)
}
