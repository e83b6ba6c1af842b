//! The clean_response phase: hop-by-hop headers out (kept on a 101, which the WebSocket
//! splice needs), then hygiene on the response (`Set-Cookie`, `ETag`, client-hint requests),
//! what it stripped written into the Exchange.

use crate::exchange::Exchange;
use crate::hygiene;
use crate::policy::Policy;
use crate::proxy::headers;
use http::response::Parts;
use http::StatusCode;

pub fn clean_response(parts: &mut Parts, ex: &mut Exchange, policy: &Policy) {
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop(&mut parts.headers, false);
    }
    let stripped = hygiene::response::clean(&mut parts.headers, ex, policy);
    ex.done.stripped.merge(stripped);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Verdict};
    use http::{header, Response};

    fn third_party_ad() -> Exchange {
        Exchange::sample(
            "https://ads.example/b.png",
            "news.example",
            Decision { verdict: Verdict::Ad, ad_class: true, ..Decision::allow() },
        )
    }

    fn parts(status: StatusCode) -> Parts {
        let resp = Response::builder()
            .status(status)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SET_COOKIE, "uid=42")
            .header(header::ETAG, "\"person-42\"")
            .body(())
            .unwrap();
        resp.into_parts().0
    }

    #[test]
    fn an_ads_cookie_and_etag_go_and_what_went_is_noted() {
        let policy = Policy::build(&crate::Config::default(), &[]).unwrap();
        let mut ex = third_party_ad();
        let mut p = parts(StatusCode::OK);
        clean_response(&mut p, &mut ex, &policy);
        assert!(!p.headers.contains_key(header::SET_COOKIE) && !p.headers.contains_key(header::ETAG));
        assert!(!p.headers.contains_key(header::CONNECTION), "hop-by-hop headers go");
        assert!(ex.done.stripped.set_cookies && ex.done.stripped.validators);
        // A 101 keeps what the WebSocket splice needs.
        let mut p = parts(StatusCode::SWITCHING_PROTOCOLS);
        clean_response(&mut p, &mut ex, &policy);
        assert_eq!(p.headers[header::UPGRADE], "websocket");
    }
}
