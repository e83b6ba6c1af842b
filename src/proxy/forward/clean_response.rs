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
