//! The send phase: the cleaned request to the upstream through the pooled client, within
//! `[upstream] response_timeout`. A failure is answered here with a page the person can read
//! (502 with the reason, 504 on the timeout) and marked in the Exchange for the record.

use crate::exchange::Exchange;
use crate::proxy::upstream::{self, Upstream};
use crate::respond;
use crate::Body;
use http::{Request, Response, StatusCode};
use tracing::info;

pub async fn send(
    upstream: &Upstream,
    req: Request<Body>,
    ex: &mut Exchange,
) -> Result<Response<Body>, Response<Body>> {
    let timeout = upstream.response_timeout;
    let sent = std::time::Instant::now();
    let failed = match tokio::time::timeout(timeout, upstream.request(req)).await {
        Ok(Ok(resp)) => {
            ex.done.upstream_latency = Some(sent.elapsed());
            return Ok(resp);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Decision;
    use crate::proxy::dial::Dialer;

    #[tokio::test]
    async fn a_destination_refused_is_a_page_with_its_status_and_the_exchange_marked() {
        // Default destination filtering: loopback is never reached.
        let cfg = crate::Config::default();
        let tls = crate::tls::upstream_client_config(&[]).unwrap();
        let upstream = Upstream::new(&cfg, Dialer::new(&cfg, tls));
        let mut ex = Exchange::sample("http://127.0.0.1:9/", "127.0.0.1", Decision::allow());
        let req = Request::get("http://127.0.0.1:9/").body(crate::empty()).unwrap();
        let Err(page) = send(&upstream, req, &mut ex).await else { panic!("loopback is not reached") };
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert!(ex.done.upstream_failed);
    }
}
