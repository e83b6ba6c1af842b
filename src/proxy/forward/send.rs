//! The send phase: the cleaned request to the upstream through the pooled client, within
//! `[upstream] response_timeout`. A failure is a [`Failure`] (502 with the reason, 504 on the
//! timeout), marked in the Exchange for the record.

use crate::base::Body;
use crate::exchange::Exchange;
use crate::proxy::upstream::{self, Upstream};
use crate::respond::failure::Failure;
use http::{Request, Response};

pub async fn send(upstream: &Upstream, req: Request<Body>, ex: &mut Exchange) -> Result<Response<Body>, Failure> {
    let timeout = upstream.response_timeout;
    let sent = std::time::Instant::now();
    let failed = match tokio::time::timeout(timeout, upstream.request(req)).await {
        Ok(Ok(resp)) => {
            ex.done.upstream_latency = Some(sent.elapsed());
            return Ok(resp);
        }
        Ok(Err(e)) => {
            let (status, reason) = upstream::classify_error(&*e);
            Failure::Upstream { host: ex.host.clone(), status, reason }
        }
        Err(_) => Failure::UpstreamTimeout { host: ex.host.clone(), secs: timeout.as_secs() },
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
        let req = Request::get("http://127.0.0.1:9/").body(crate::base::empty()).unwrap();
        let Err(page) = send(&upstream, req, &mut ex).await else { panic!("loopback is not reached") };
        assert_eq!(page.status(), http::StatusCode::FORBIDDEN);
        assert!(ex.done.upstream_failed);
    }
}
