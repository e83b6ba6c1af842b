//! One request's exchange: what is known about it, made once when it is decided, and what each
//! later phase did to it. The URL, request type, top page (host and site), party, the
//! [`Decision`] with its typed reason and the page's shopping switch are filled in by the
//! decide phase and only read after; cleaning the request and the response, sending, and
//! rewriting write what they did into [`Done`] (what was stripped, what was removed from the
//! page, the status, the bytes). The record phase (proxy/forward/record.rs) writes the
//! receipt, the metrics and the decision log from the finished exchange, and nothing else does.
//!
//! It sits just above the policy: hygiene, rewrite and the receipt read it; it reads nothing of
//! theirs.

use crate::policy::{Decision, RequestType, Verdict};
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request, decided.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When the request was decided (its arrival, near enough).
    pub received: Instant,
    /// The absolute URL as the client asked for it.
    pub url: String,
    /// The request's host, lowercase, without brackets.
    pub host: String,
    /// The request's site (registrable domain).
    pub site: String,
    pub request_type: RequestType,
    pub method: Method,
    /// The top-level page the request was made for.
    pub page: TopPage,
    /// The request's site is not the page's.
    pub third_party: bool,
    pub decision: Decision,
    /// The page's site was switched to shopping when the request was decided.
    pub shopping: bool,
    /// Who asked, where the config keeps that (`[receipt] per_person`); None on a gateway.
    pub client: Option<SocketAddr>,
    /// The signed-in user and group, where the config logs them (`[auth] log_users`).
    pub user: Option<Arc<crate::ops::auth::Who>>,
    /// The name of the group whose rules decided it (logged with the user).
    pub group: Option<String>,
    /// What the phases did.
    pub done: Done,
}

/// The top-level page of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopPage {
    pub host: String,
    pub site: String,
}

/// What the phases after the decision did.
#[derive(Debug, Clone, Default)]
pub struct Done {
    pub stripped: Stripped,
    /// What the rewriter took out of the page.
    pub removals: Vec<Removal>,
    /// The status the client got.
    pub status: Option<StatusCode>,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// The upstream could not be reached or did not answer in time.
    pub upstream_failed: bool,
    /// From the request sent upstream to the upstream's response head.
    pub upstream_latency: Option<Duration>,
    /// From the request's arrival to its response head going to the client.
    pub first_byte: Option<Duration>,
}

/// What hygiene took off the request and the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stripped {
    /// `Cookie` removed whole or in part.
    pub cookies: bool,
    /// `Set-Cookie` removed whole or in part.
    pub set_cookies: bool,
    /// Tracking or identifier parameters removed from the URL.
    pub params: bool,
    /// The Referer cut to the page's context or origin.
    pub referer: bool,
    /// High-entropy client hints and experiment headers removed.
    pub client_hints: bool,
    /// Cache validators (`If-None-Match`, `ETag`) removed: they replay an identifier.
    pub validators: bool,
}

impl Stripped {
    /// Everything either took off.
    pub fn merge(&mut self, other: Stripped) {
        self.cookies |= other.cookies;
        self.set_cookies |= other.set_cookies;
        self.params |= other.params;
        self.referer |= other.referer;
        self.client_hints |= other.client_hints;
        self.validators |= other.validators;
    }
}

impl Exchange {
    /// An exchange as the tests need one: `url` on `host`, made for a page of `page_site`,
    /// with `decision`; third party when the sites differ.
    #[cfg(test)]
    pub(crate) fn sample(url: &str, page_site: &str, decision: Decision) -> Exchange {
        let host = crate::policy::site::host_of_url(url).unwrap_or_default().to_string();
        let site = crate::policy::site::site_of(&host);
        Exchange {
            received: Instant::now(),
            url: url.to_string(),
            third_party: site != page_site,
            host,
            site,
            request_type: RequestType::Other,
            method: Method::GET,
            page: TopPage { host: page_site.to_string(), site: page_site.to_string() },
            decision,
            shopping: false,
            client: None,
            user: None,
            group: None,
            done: Done::default(),
        }
    }

    pub fn is_ad(&self) -> bool {
        self.decision.verdict == Verdict::Ad
    }

    /// A trusted site's request: nothing is cleaned.
    pub fn trusted(&self) -> bool {
        self.decision.is_trusted()
    }
}

/// What the rewriter takes out of pages, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Script,
    InlineSnippet,
    Pixel,
    Frame,
    Preconnect,
    Ping,
    LinkDecoration,
    /// A referrer policy looser than `strict-origin-when-cross-origin`, tightened.
    ReferrerPolicy,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Script,
        Kind::InlineSnippet,
        Kind::Pixel,
        Kind::Frame,
        Kind::Preconnect,
        Kind::Ping,
        Kind::LinkDecoration,
        Kind::ReferrerPolicy,
    ];

    /// Its place in [`Kind::ALL`] (and in the metrics' by-kind counters).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Script => "script",
            Kind::InlineSnippet => "inline snippet",
            Kind::Pixel => "pixel",
            Kind::Frame => "frame",
            Kind::Preconnect => "preconnect",
            Kind::Ping => "ping attribute",
            Kind::LinkDecoration => "link decoration",
            Kind::ReferrerPolicy => "referrer policy",
        }
    }
}

/// One thing taken out of a page, and why.
#[derive(Debug, Clone)]
pub struct Removal {
    pub kind: Kind,
    pub what: String,
    pub rule: Option<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn every_kind_has_its_place_in_all() {
        assert!(Kind::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
        assert_eq!(Kind::ALL.len(), crate::ops::metrics::REMOVAL_KINDS);
    }
}
