//! Every failure a client can meet, as a typed cause, and the one place that turns a cause into
//! its status, its small readable page and its log line ([`Failure::answer`]). Phases and
//! handlers return a `Failure`; none builds an error page of its own. A redirect or a blocked
//! request's shaped answer is not a failure: those are answers, made in `blocked.rs` and the
//! phases that decide them.

use super::error_page;
use crate::base::Body;
use http::{Response, StatusCode};
use std::borrow::Cow;

/// Why a request got no answer from the web.
#[derive(Debug)]
pub enum Failure {
    /// A request that names no host.
    NoHost,
    /// Malformed: the reason says what.
    BadRequest(Cow<'static, str>),
    /// A client outside `[access] allow`, asking for the proxy's pages.
    NotServed(std::net::IpAddr),
    /// A client outside `[access] allow`, asking to be forwarded.
    NotForwarded(std::net::IpAddr),
    /// Refused by the routing (a loop back to the proxy, an address it does not forward to).
    Refused(Cow<'static, str>),
    /// A CONNECT to a port outside `[intercept] connect_ports`.
    PortNotAllowed(u16),
    /// Destination filtering refused the address (`[upstream] allow`).
    Destination { host: String, why: String },
    /// A tunnel to a tracker's host that cannot be intercepted.
    TrackerTunnel(String),
    /// A page or control for the proxy's operators (`[admin] allow`, and `[admin] token` when
    /// set): `token` when the address is allowed and only the token was missing or wrong.
    ForOperators { what: &'static str, ip: std::net::IpAddr, token: bool },
    /// A control request not from the proxy's own page.
    ControlRefused(&'static str),
    /// The upstream could not be reached, or failed mid-answer.
    Upstream { host: String, status: StatusCode, reason: String },
    /// The upstream did not answer in time.
    UpstreamTimeout { host: String, secs: u64 },
    /// A page's body could not be decoded for rewriting.
    Undecodable { host: String, coding: &'static str, error: String },
    /// A redirector's destination is not a URL.
    BadDestination,
    /// One of the proxy's own paths that does not exist.
    NotFound(&'static str),
    /// One of the proxy's own paths asked with a method it does not take.
    MethodNotAllowed,
    /// A choice could not be written to the store.
    NotKept(String),
    /// Too many of something the person holds (shopping switches).
    TooMany(&'static str),
    /// The proxy wants the user's name and password (`[auth]`).
    AuthRequired,
    /// The proxy's receipt, asked for straight (not through the proxy setting), wants the
    /// user's name and password (`[auth]`).
    SignInRequired,
}

/// One address as a CIDR the config takes.
fn one_address(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(_) => format!("{ip}/32"),
        std::net::IpAddr::V6(_) => format!("{ip}/128"),
    }
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        use Failure::*;
        match self {
            NoHost | BadRequest(_) => StatusCode::BAD_REQUEST,
            NotServed(_)
            | NotForwarded(_)
            | Refused(_)
            | PortNotAllowed(_)
            | Destination { .. }
            | TrackerTunnel(_)
            | ForOperators { .. }
            | ControlRefused(_) => StatusCode::FORBIDDEN,
            Upstream { status, .. } => *status,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Undecodable { .. } | BadDestination => StatusCode::BAD_GATEWAY,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotKept(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            SignInRequired => StatusCode::UNAUTHORIZED,
        }
    }

    /// What the page says, in words a person can act on.
    pub fn detail(&self) -> Cow<'_, str> {
        use Failure::*;
        match self {
            NoHost => "the request names no host".into(),
            BadRequest(why) | Refused(why) => Cow::Borrowed(why),
            NotServed(ip) => format!(
                "This proxy does not serve your address, {ip}. Its operator can add it to [access] allow in \
                 nostalk's config file, e.g. allow = [\"{}\"], and reload.",
                one_address(*ip)
            )
            .into(),
            NotForwarded(ip) => format!(
                "This proxy does not forward for your address, {ip}. Its operator can add it to [access] allow \
                 in nostalk's config file, e.g. allow = [\"{}\"], and reload.",
                one_address(*ip)
            )
            .into(),
            PortNotAllowed(port) => {
                format!("nostalk opens tunnels only to the ports in [intercept] connect_ports, not to {port}.").into()
            }
            Destination { why, .. } => Cow::Borrowed(why),
            TrackerTunnel(host) => format!("nostalk blocks {host}: it is a tracker.").into(),
            ForOperators { what, token: true, .. } => format!(
                "{what} needs the operators' token: send it as `Authorization: Bearer TOKEN`, TOKEN being \
                 [admin] token in nostalk's config file."
            )
            .into(),
            ForOperators { what, ip, token: false } => format!(
                "{what} is for the proxy's operators, and your address, {ip}, is not one of theirs: its operator \
                 can add it to [admin] allow in nostalk's config file, e.g. allow = [\"{}\"].",
                one_address(*ip)
            )
            .into(),
            ControlRefused(why) | NotFound(why) | TooMany(why) => Cow::Borrowed(why),
            Upstream { host, reason, .. } => format!("{host}: {reason}").into(),
            UpstreamTimeout { host, secs } => format!("{host} did not answer within {secs} s").into(),
            Undecodable { host, coding, error } => {
                format!("{host}: the page's {coding} body could not be decoded: {error}").into()
            }
            BadDestination => "the redirect's destination is not a URL".into(),
            MethodNotAllowed => "This page does not take that method.".into(),
            NotKept(e) => format!("could not keep it: {e}").into(),
            AuthRequired => "This proxy needs your user name and password.".into(),
            SignInRequired => "The receipt is yours alone: sign in with your proxy user name and password.".into(),
        }
    }

    /// The cause's name in the log.
    fn kind(&self) -> &'static str {
        use Failure::*;
        match self {
            NoHost => "no host",
            BadRequest(_) => "bad request",
            NotServed(_) | NotForwarded(_) => "client not served",
            Refused(_) => "refused",
            PortNotAllowed(_) => "port not allowed",
            Destination { .. } => "destination not forwarded to",
            TrackerTunnel(_) => "tracker tunnel",
            ForOperators { .. } => "for operators",
            ControlRefused(_) => "control refused",
            Upstream { .. } => "upstream failed",
            UpstreamTimeout { .. } => "upstream timed out",
            Undecodable { .. } => "undecodable page",
            BadDestination => "bad redirect destination",
            NotFound(_) => "not found",
            MethodNotAllowed => "method not allowed",
            NotKept(_) => "choice not kept",
            TooMany(_) => "too many",
            AuthRequired => "authentication required",
            SignInRequired => "sign-in required",
        }
    }

    /// The client's answer: the status, a small page that says why, and one log line.
    pub fn answer(self) -> Response<Body> {
        let status = self.status();
        let detail = self.detail();
        match &self {
            // A miss of the proxy's own pages is no event.
            Failure::NotFound(_) | Failure::MethodNotAllowed => {
                tracing::debug!(cause = self.kind(), status = status.as_u16(), detail = %detail, "answered");
            }
            // The page names the client's address; the log does not (a gateway with `[receipt]
            // per_person = false` keeps no client address anywhere).
            Failure::NotServed(_) | Failure::NotForwarded(_) | Failure::ForOperators { .. } => {
                tracing::info!(cause = self.kind(), status = status.as_u16(), "answered");
            }
            _ => tracing::info!(cause = self.kind(), status = status.as_u16(), detail = %detail, "answered"),
        }
        error_page(status, status.canonical_reason().unwrap_or("Error"), &detail)
    }
}

impl From<Failure> for Response<Body> {
    fn from(f: Failure) -> Self {
        f.answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn page(f: Failure) -> (StatusCode, String) {
        let r = f.answer();
        let status = r.status();
        (status, String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn each_cause_has_its_status_and_says_why() {
        let (s, body) = page(Failure::PortNotAllowed(25)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(body.contains("403 Forbidden") && body.contains("connect_ports, not to 25"), "{body}");
        let (s, body) = page(Failure::UpstreamTimeout { host: "slow.test".into(), secs: 30 }).await;
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.contains("slow.test did not answer within 30 s"), "{body}");
        let (s, body) = page(Failure::TrackerTunnel("t.test".into())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(body.contains("nostalk blocks t.test: it is a tracker."));
        let (s, body) = page(Failure::BadRequest("<script>".into())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"), "escaped: {body}");
    }
}
