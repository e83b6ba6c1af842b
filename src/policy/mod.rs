//! The decision model: every request gets exactly one [`Decision`] (block, ad or allow) with the
//! rule and the list that made it. Lists compile into one immutable [`Policy`]: one adblock
//! engine per verdict class (surveillance lists → block, ad lists → ad), the user's settings
//! (trusted sites, ad mode, blocked ad categories), and the data the other stages read (tracking
//! parameters, tracking cookies, inline-script signatures). A Policy is never mutated: reload
//! builds a new one and swaps it whole. The lists' verdict and every overlay on top of it (a
//! group's rules, the person's choices and clicks: [`overlay`]) are combined in one call,
//! [`Policy::decide_for`], which every path makes.
//!
//! Matching is the adblock crate's (Brave's adblock-rust); we write no filter engine.

pub mod bounce;
mod engine_cache;
pub mod frames;
mod gz_file;
pub mod lists;
pub mod overlay;
pub mod party;
pub mod passes;
pub mod request_type;
pub mod site;
pub mod subscribe;

use crate::config::Config;
use adblock::lists::{FilterSet, ParseOptions, RuleTypes};
use adblock::request::Request as AbRequest;
use adblock::Engine;
use lists::{ListKind, ListSource};
pub use overlay::{Click, Overlay, Sites};
pub use request_type::RequestType;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Block,
    Ad,
    Allow,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Block => "block",
            Verdict::Ad => "ad",
            Verdict::Allow => "allow",
        }
    }
}

pub use crate::config::{AdMode, SocialMode};

/// The one decision a request gets, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// Whether an ad-class list matched, whatever the verdict became (ad mode, category).
    pub ad_class: bool,
}

/// Why a decision is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No rule matched: an ordinary request.
    NoRule,
    /// A rule of a block or ad list matched.
    Rule(Matched),
    /// A rule of an ad category the config blocks (`[policy] blocked_ad_categories`).
    AdCategory(Matched),
    /// An exception rule (`@@`) let the request through.
    Exception(Matched),
    /// The request's site or its page's site is trusted in the config.
    TrustedSite,
    /// A social widget (a rule of a social list): blocked, and with `[policy] social =
    /// "click"` shown as a placeholder that loads it on a click.
    Social(Matched),
    /// A navigation to a redirector whose destination is in its URL: sent straight there.
    Bounce { matched: Matched, to: Arc<str> },
    /// The person let this one load through with a click ([`passes`]).
    LetThrough,
    /// The host is a name of the page's own site that resolves, through `cname`, to a host a
    /// rule matches (CNAME cloaking): decided as that host.
    Cloaked { cname: Arc<str>, matched: Matched },
    /// An ad source the person down-voted past the threshold (`[receipt]
    /// downvotes_to_block`): blocked until restored. The rule is the ad rule that matched; the
    /// list is "down-voted".
    DownVoted(Matched),
    /// A top-level navigation to a host a list names, by a rule that does not name documents:
    /// it loads (a flow through it goes on), kept unlinkable: no cookies either way, no Referer,
    /// and its page's storage lives only as long as the page (unlinkable bouncing).
    Unlinkable(Matched),
    /// A third party no list names that nostalk saw trying to identify the browser on several
    /// sites (ops/learn.rs): decided like an ad source. The rule says on which sites; the list
    /// is "learned".
    Learned(Matched),
}

/// A rule that matched, and the list it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub rule: Arc<str>,
    pub list: Arc<str>,
}

impl Decision {
    pub fn allow() -> Decision {
        Decision { verdict: Verdict::Allow, reason: Reason::NoRule, ad_class: false }
    }

    /// The list rule behind the decision, if one is.
    pub fn matched(&self) -> Option<&Matched> {
        match &self.reason {
            Reason::Rule(m)
            | Reason::AdCategory(m)
            | Reason::Exception(m)
            | Reason::Social(m)
            | Reason::DownVoted(m)
            | Reason::Learned(m)
            | Reason::Unlinkable(m) => Some(m),
            Reason::Bounce { matched, .. } | Reason::Cloaked { matched, .. } => Some(matched),
            Reason::NoRule | Reason::TrustedSite | Reason::LetThrough => None,
        }
    }

    /// The rule's text, as the logs and `explain` name it ("trusted site" for a trusted one).
    pub fn rule(&self) -> Option<&str> {
        match &self.reason {
            Reason::TrustedSite => Some("trusted site"),
            Reason::LetThrough => Some("let through once"),
            _ => self.matched().map(|m| &*m.rule),
        }
    }

    /// The list the rule came from ("config" for a trusted site).
    pub fn list(&self) -> Option<&str> {
        match &self.reason {
            Reason::TrustedSite => Some("config"),
            Reason::LetThrough => Some("your click"),
            _ => self.matched().map(|m| &*m.list),
        }
    }

    /// A trusted site's request: nothing is cleaned.
    pub fn is_trusted(&self) -> bool {
        self.reason == Reason::TrustedSite
    }

    /// The CNAME a cloaked tracker was found behind.
    pub fn cname(&self) -> Option<&str> {
        match &self.reason {
            Reason::Cloaked { cname, .. } => Some(cname),
            _ => None,
        }
    }

    /// A navigation to a listed host, loaded but kept unlinkable ([`Reason::Unlinkable`]).
    pub fn is_unlinkable(&self) -> bool {
        matches!(self.reason, Reason::Unlinkable(_))
    }

    /// A third party learned as a tracker (proxy/forward/learn.rs).
    pub fn is_learned(&self) -> bool {
        matches!(self.reason, Reason::Learned(_))
    }

    /// A social widget kept off the network.
    pub fn is_social(&self) -> bool {
        matches!(self.reason, Reason::Social(_))
    }

    /// A trusted site's request (the config's, a group's, or one trusted from the receipt).
    pub fn trusted_site() -> Decision {
        Decision { verdict: Verdict::Allow, reason: Reason::TrustedSite, ad_class: false }
    }

    /// The person's click let this request through, whatever the lists say.
    pub fn let_through() -> Decision {
        Decision { verdict: Verdict::Allow, reason: Reason::LetThrough, ad_class: false }
    }
}

/// Whether a rule applies to top-level documents by its own word (`$document`, `$doc`, `$all`),
/// as ABP and uBO syntax read it: a navigation is blocked only by such a rule.
pub fn names_document(rule: &str) -> bool {
    // Options follow the last `$` (a `$` inside a regex pattern comes before it).
    let Some((_, options)) = rule.rsplit_once('$') else { return false };
    options.split(',').any(|o| matches!(o.trim(), "document" | "doc" | "all"))
}

/// What the policy needs to know of one request.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    /// The full URL, scheme included.
    pub url: &'a str,
    /// The request's host (lowercase).
    pub host: &'a str,
    /// The top-level page's host, when known.
    pub page_host: Option<&'a str>,
    pub request_type: RequestType,
    pub method: &'a str,
}

impl RequestInfo<'_> {
    pub fn site(&self) -> String {
        site::site_of(self.host)
    }
    pub fn page_site(&self) -> Option<String> {
        self.page_host.map(site::site_of)
    }
    /// Third party when the page is known and of another site.
    pub fn third_party(&self) -> bool {
        match self.page_host {
            Some(page) => site::site_of(page) != site::site_of(self.host),
            None => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("list {name}: {message}")]
    List { name: String, message: String },
}

/// A compiled engine and the names and kinds of the lists in it, by adblock's source index.
struct ClassEngine {
    engine: Engine,
    lists: Vec<(Arc<str>, ListKind)>,
    rules: usize,
}

impl ClassEngine {
    /// The engine of `sources`: read from the compiled-engine cache in `cache_dir` when one
    /// was built from exactly these lists, else built (and cached, when a list in it is not
    /// embedded: those are the large ones).
    fn build(sources: &[&ListSource], class: &'static str, cache_dir: &Path) -> ClassEngine {
        // adblock numbers the sources in the order they are added, one per list.
        let lists: Vec<(Arc<str>, ListKind)> = sources.iter().map(|s| (Arc::from(s.name.as_str()), s.kind)).collect();
        let rules = sources.iter().map(|s| s.rule_count).sum();
        let cacheable = sources.iter().any(|s| !matches!(s.origin, lists::Origin::Embedded));
        let cache = cacheable.then(|| {
            let parts = sources.iter().map(|s| (s.name.as_str(), s.kind.as_str(), &*s.text));
            engine_cache::CacheFile::new(cache_dir, class, parts)
        });
        if let Some(engine) = cache.as_ref().and_then(engine_cache::CacheFile::load) {
            return ClassEngine { engine, lists, rules };
        }
        let mut set = FilterSet::new(true);
        let opts = ParseOptions { rule_types: RuleTypes::NetworkOnly, ..ParseOptions::default() };
        for src in sources {
            set.add_filter_list(src.text.to_string(), opts);
        }
        // Without the optimizer, no two rules are fused, so every match names its own rule and
        // list (BENCHMARKS.md measures what that costs).
        let engine = Engine::new_with_filter_set_no_optimize(set);
        if let Some(cache) = &cache {
            cache.store(&engine);
        }
        ClassEngine { engine, lists, rules }
    }

    fn check(&self, req: &AbRequest) -> adblock::blocker::BlockerResult {
        self.engine.check_network_request(req)
    }

    /// The rule that matched, its list, and whether that list is of ad categories. The
    /// engine keeps every rule's text and source (no optimizer), so both are always known;
    /// the placeholders are for an engine that one day does not.
    fn describe(&self, info: &adblock::sourcemap::FilterRuleDebugInfo) -> (Matched, bool) {
        let rule = info.raw_line.as_deref().map_or_else(|| Arc::from("(rule text not kept)"), Arc::from);
        let (list, kind) = info
            .source_location
            .as_ref()
            .and_then(|loc| self.lists.get(loc.source_index as usize).cloned())
            .unwrap_or_else(|| (Arc::from("(unknown list)"), ListKind::Block));
        (Matched { rule, list }, kind == ListKind::Categories)
    }
}

/// The compiled policy: immutable, shared by every request through one `Arc`.
pub struct Policy {
    social: ClassEngine,
    block: ClassEngine,
    ad: ClassEngine,
    pub ad_mode: AdMode,
    pub social_mode: SocialMode,
    pub bounce: bounce::BounceList,
    trusted_sites: HashSet<String>,
    pub blocked_categories: Vec<String>,
    pub params: lists::ParamList,
    pub cookies: lists::CookieList,
    pub inline: lists::InlineSignatures,
    pub dnt: bool,
    pub sources: Vec<lists::ListSummary>,
    cache: Option<quick_cache::sync::Cache<String, Decision>>,
}

impl Policy {
    /// Build from config and the subscribed lists loaded so far.
    pub fn build(cfg: &Config, subscribed: &[ListSource]) -> Result<Policy, PolicyError> {
        let _low_peak = crate::base::PromptPurge::begin();
        let mut sources: Vec<ListSource> = Vec::new();
        if cfg.policy.embedded_lists {
            sources.extend(lists::embedded());
        }
        for l in &cfg.lists {
            if let Some(path) = &l.path {
                let text = lists::read_capped(path, cfg.max_list_bytes()).map_err(|e| PolicyError::List {
                    name: l.name.clone(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                sources.push(ListSource::new(
                    &l.name,
                    ListKind::from_verdict(l.verdict),
                    text,
                    lists::Origin::Path(path.clone()),
                ));
            }
        }
        sources.extend(subscribed.iter().cloned());

        let blocked_categories: Vec<String> = cfg.policy.blocked_ad_categories.clone();
        // Category rules carry `$tag=NAME`: those of blocked categories go in untagged, the
        // rest stay out (the engine is rebuilt when the setting changes).
        let categories: Vec<ListSource> = sources
            .iter()
            .filter(|s| s.kind == ListKind::Categories)
            .map(|s| {
                let text = lists::select_tagged(&s.text, &blocked_categories);
                ListSource::new(&s.name, ListKind::Categories, text, s.origin.clone())
            })
            .collect();
        let block_sources: Vec<&ListSource> = sources
            .iter()
            .filter(|s| s.kind == ListKind::Block)
            .chain(categories.iter().filter(|c| c.rule_count > 0))
            .collect();
        let ad_sources: Vec<&ListSource> = sources.iter().filter(|s| s.kind == ListKind::Ad).collect();
        let social_mode = cfg.policy.social;
        let social_sources: Vec<&ListSource> = match social_mode {
            SocialMode::Allow => Vec::new(),
            SocialMode::Click | SocialMode::Block => sources.iter().filter(|s| s.kind == ListKind::Social).collect(),
        };
        let cache_dir = cfg.list_cache_dir();
        let social = ClassEngine::build(&social_sources, "social", &cache_dir);
        let block = ClassEngine::build(&block_sources, "block", &cache_dir);
        let ad = ClassEngine::build(&ad_sources, "ad", &cache_dir);

        let mut params = lists::ParamList::default();
        let mut cookies = lists::CookieList::default();
        let mut inline = lists::InlineSignatures::default();
        let mut bounce = bounce::BounceList::default();
        for s in &sources {
            match s.kind {
                ListKind::Bounce => bounce.extend_from(&s.text, &s.name),
                ListKind::Params => params.extend_from(&s.text),
                ListKind::Cookies => cookies.extend_from(&s.text),
                ListKind::Inline => inline.extend_from(&s.text),
                _ => {}
            }
        }
        let ad_mode = cfg.policy.ads;
        let cache = (cfg.policy.decision_cache > 0).then(|| quick_cache::sync::Cache::new(cfg.policy.decision_cache));
        Ok(Policy {
            social,
            block,
            ad,
            ad_mode,
            social_mode,
            bounce,
            trusted_sites: cfg.policy.trusted_sites.iter().map(|s| site::site_of(s)).collect(),
            blocked_categories,
            params,
            cookies,
            inline,
            dnt: cfg.policy.dnt,
            sources: sources.iter().map(ListSource::summary).collect(),
            cache,
        })
    }

    /// Rules loaded per verdict class: (block, ad).
    pub fn rule_counts(&self) -> (usize, usize) {
        (self.block.rules, self.ad.rules)
    }

    pub fn is_trusted(&self, site: &str) -> bool {
        self.trusted_sites.contains(site)
    }

    /// The one decision for a request: the lists' verdict with every overlay applied (the
    /// group's rules, the person's choices, the person's click). Every path decides through it.
    pub fn decide_for(
        &self,
        info: &RequestInfo,
        site: &str,
        page_site: &str,
        overlay: &Overlay,
        click: Option<Click<'_>>,
    ) -> Decision {
        let d = self.decide_with_sites(info, site, page_site);
        overlay.apply(d, self.sites(info, site, page_site), click)
    }

    /// The decision on a request the lists left alone whose host resolves through `cnames`
    /// ([`Policy::uncloak`]), with the overlays applied as [`Policy::decide_for`] applies them.
    pub fn decide_cloaked(
        &self,
        info: &RequestInfo,
        cnames: &[String],
        at: (&str, &str),
        overlay: &Overlay,
    ) -> Option<Decision> {
        let d = self.uncloak(info, cnames)?;
        let (site, page_site) = at;
        Some(overlay.apply(d, self.sites(info, site, page_site), None))
    }

    /// What the overlays read of a request, beside its sites.
    fn sites<'a>(&self, info: &RequestInfo<'a>, site: &'a str, page_site: &'a str) -> Sites<'a> {
        Sites {
            site,
            page_site,
            url: info.url,
            request_type: info.request_type,
            ads: self.ad_mode,
            post: info.method.eq_ignore_ascii_case("POST"),
        }
    }

    /// The lists' decision alone, from the cache when the exact same request was decided.
    pub fn decide(&self, info: &RequestInfo) -> Decision {
        self.cached(info, || self.decide_uncached(info))
    }

    /// [`Policy::decide`] for a caller that has worked out the request's site and its page's
    /// already (the proxy's decide phase): they are not worked out again.
    pub fn decide_with_sites(&self, info: &RequestInfo, site: &str, page_site: &str) -> Decision {
        self.cached(info, || {
            if !is_ascii_request(info) {
                return self.decide_normalized(info);
            }
            self.decide_sited(info, site, Some(page_site))
        })
    }

    fn cached(&self, info: &RequestInfo, miss: impl FnOnce() -> Decision) -> Decision {
        let Some(cache) = &self.cache else {
            return miss();
        };
        let mut key = String::with_capacity(info.url.len() + 24);
        key.push_str(info.request_type.as_str());
        key.push('|');
        key.push_str(info.page_host.unwrap_or(""));
        key.push('|');
        key.push_str(info.method);
        key.push('|');
        key.push_str(info.url);
        if let Some(d) = cache.get(&key) {
            return d;
        }
        let d = miss();
        cache.insert(key, d.clone());
        d
    }

    pub fn decide_uncached(&self, info: &RequestInfo) -> Decision {
        if !is_ascii_request(info) {
            return self.decide_normalized(info);
        }
        self.decide_sited(info, &info.site(), info.page_site().as_deref())
    }

    /// The decision, given the request's site and its page's (the request is ASCII).
    fn decide_sited(&self, info: &RequestInfo, site: &str, page_site: Option<&str>) -> Decision {
        if self.is_trusted(site) || page_site.is_some_and(|p| self.is_trusted(p)) {
            return Decision::trusted_site();
        }
        // A top-level document: a redirector is skipped, and only a rule that names documents
        // blocks it (ABP's and uBO's `$document`); otherwise it is loaded and cleaned like any
        // first-party page, so a flow that passes through a tracker's domain goes on.
        let top_level = info.request_type == RequestType::Document;
        if top_level && info.method == "GET" {
            if let Some((matched, to)) = self.bounce.destination(info.url) {
                return Decision { verdict: Verdict::Block, reason: Reason::Bounce { matched, to }, ad_class: false };
            }
        }
        let third_party = page_site.is_some_and(|p| p != site);
        let source_host = info.page_host.unwrap_or(info.host);
        let req = AbRequest::preparsed(
            info.url,
            info.host,
            source_host,
            info.request_type.as_str(),
            third_party,
            info.method,
        );

        let applies = |m: &Matched| !top_level || names_document(&m.rule);
        if !top_level && self.social.rules > 0 {
            let s = self.social.check(&req);
            if let Some(m) = s.filter.as_ref().filter(|_| s.should_block()).map(|f| self.social.describe(f).0) {
                return Decision { verdict: Verdict::Block, reason: Reason::Social(m), ad_class: false };
            }
        }
        let b = self.block.check(&req);
        let described = b.filter.as_ref().filter(|_| b.should_block()).map(|f| self.block.describe(f));
        // A navigation a rule names without `$document`: loaded, but kept unlinkable.
        let mut unlinkable = None;
        match described {
            Some((m, category)) if applies(&m) => {
                let reason = if category { Reason::AdCategory(m) } else { Reason::Rule(m) };
                return Decision { verdict: Verdict::Block, reason, ad_class: false };
            }
            Some((m, _)) => unlinkable = Some(m),
            None => {}
        }
        let a = self.ad.check(&req);
        let described = a.filter.as_ref().filter(|_| a.should_block()).map(|f| self.ad.describe(f).0);
        let (described, passed) = match described {
            Some(m) if applies(&m) => (Some(m), None),
            other => (None, other),
        };
        unlinkable = unlinkable.or(passed);
        if let Some(m) = described {
            let reason = Reason::Rule(m);
            let verdict = match self.ad_mode {
                AdMode::Ad => Verdict::Ad,
                AdMode::Block => Verdict::Block,
                AdMode::Allow => Verdict::Allow,
            };
            return Decision { verdict, reason, ad_class: true };
        }
        let exception = b
            .exception
            .as_ref()
            .map(|ex| self.block.describe(ex))
            .or_else(|| a.exception.as_ref().map(|ex| self.ad.describe(ex)));
        match (exception, unlinkable) {
            (Some((m, _)), _) => Decision { verdict: Verdict::Allow, reason: Reason::Exception(m), ad_class: false },
            (None, Some(m)) => Decision { verdict: Verdict::Allow, reason: Reason::Unlinkable(m), ad_class: false },
            (None, None) => Decision::allow(),
        }
    }

    /// A request whose URL or hosts are not ASCII (an address a page wrote with raw Unicode,
    /// say), decided as a browser would send it: the host in punycode, the rest percent-encoded.
    /// The filter engine takes ASCII only (it slices host names by byte, and a page could
    /// otherwise make it panic); what cannot be made a URL is not a request, and is allowed.
    fn decide_normalized(&self, info: &RequestInfo) -> Decision {
        let Ok(url) = url::Url::parse(info.url) else { return Decision::allow() };
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else { return Decision::allow() };
        let page_host = info.page_host.and_then(|p| url::Host::parse(p).ok()).map(|h| h.to_string());
        let info = RequestInfo { url: url.as_str(), host: &host, page_host: page_host.as_deref(), ..*info };
        if !is_ascii_request(&info) {
            return Decision::allow();
        }
        self.decide_sited(&info, &info.site(), info.page_site().as_deref())
    }

    /// The decision on a request the lists left alone (`Reason::NoRule`) whose host resolves
    /// through `cnames`: the first name of the chain a rule blocks (or marks an ad) decides it,
    /// as uBlock Origin does on Firefox.
    pub fn uncloak(&self, info: &RequestInfo, cnames: &[String]) -> Option<Decision> {
        // The URL as if it were asked of each CNAME's host: same scheme, path and query.
        let (scheme, path) = match info.url.split_once("://") {
            Some((scheme, rest)) => (scheme, rest.find('/').map_or("/", |i| &rest[i..])),
            None => ("https", "/"),
        };
        for cname in cnames {
            let url = format!("{scheme}://{cname}{path}");
            let as_cname = RequestInfo { url: &url, host: cname, ..info.clone() };
            let d = self.decide_uncached(&as_cname);
            if d.verdict != Verdict::Allow {
                let matched = d.matched()?.clone();
                let cname: Arc<str> = Arc::from(cname.as_str());
                return Some(Decision {
                    verdict: d.verdict,
                    reason: Reason::Cloaked { cname, matched },
                    ad_class: d.ad_class,
                });
            }
        }
        None
    }

    /// Whether a blocked request is a social widget the person may click to load (`[policy]
    /// social = "click"`): the rewriter leaves it in the page and the proxy answers it with its
    /// placeholder.
    pub fn click_to_load(&self, d: &Decision) -> bool {
        self.social_mode == SocialMode::Click && d.is_social()
    }

    /// Whether a URL found inside a page (script src, img src, ...) would be blocked, decided
    /// as the request for it will be ([`Policy::decide_for`]).
    pub fn blocks_url(
        &self,
        url: &str,
        page_host: &str,
        request_type: RequestType,
        overlay: &Overlay,
    ) -> Option<Decision> {
        let host = site::host_of_url(url)?.to_ascii_lowercase();
        let info = RequestInfo { url, host: &host, page_host: Some(page_host), request_type, method: "GET" };
        let (own, page) = (site::site_of(&host), site::site_of(page_host));
        let d = self.decide_for(&info, &own, &page, overlay, None);
        (d.verdict == Verdict::Block).then_some(d)
    }
}

/// The filter engine takes ASCII only: a request that is not is normalised first.
fn is_ascii_request(info: &RequestInfo) -> bool {
    info.url.is_ascii() && info.host.is_ascii() && info.page_host.is_none_or(|p| p.is_ascii())
}

/// The explain output: the decision plus the request's site and party.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub url: String,
    pub decision: Verdict,
    pub rule: Option<String>,
    pub list: Option<String>,
    pub site: String,
    pub party: &'static str,
    #[serde(rename = "type")]
    pub request_type: &'static str,
}

impl Explanation {
    pub fn new(info: &RequestInfo, d: &Decision) -> Explanation {
        Explanation {
            url: info.url.to_string(),
            decision: d.verdict,
            rule: d.rule().map(str::to_string),
            list: d.list().map(str::to_string),
            site: info.site(),
            party: if info.third_party() { "third" } else { "first" },
            request_type: info.request_type.as_str(),
        }
    }
}

/// Explain one request given as strings, as `nostalk explain` does, decided by the one call
/// the proxy makes ([`Policy::decide_for`]) with the overlays that apply.
pub fn explain(
    policy: &Policy,
    url: &str,
    page: Option<&str>,
    request_type: Option<&str>,
    overlay: &Overlay,
) -> Result<Explanation, String> {
    let host = site::host_of_url(url).ok_or_else(|| format!("`{url}` is not an absolute URL"))?.to_ascii_lowercase();
    let page_host = match page {
        Some(p) => {
            Some(site::host_of_url(p).ok_or_else(|| format!("`{p}` is not an absolute URL"))?.to_ascii_lowercase())
        }
        None => None,
    };
    let request_type = match request_type {
        Some(t) => RequestType::parse(t).ok_or_else(|| format!("`{t}` is not a request type"))?,
        None => {
            let path = url.split_once("://").map(|x| x.1).unwrap_or(url);
            let path = path.find('/').map(|i| &path[i..]).unwrap_or("/");
            RequestType::from_extension(path).unwrap_or(if page.is_none() {
                RequestType::Document
            } else {
                RequestType::Other
            })
        }
    };
    let info = RequestInfo { url, host: &host, page_host: page_host.as_deref(), request_type, method: "GET" };
    let own_site = info.site();
    let page_site = info.page_site().unwrap_or_else(|| own_site.clone());
    let d = policy.decide_for(&info, &own_site, &page_site, overlay, None);
    Ok(Explanation::new(&info, &d))
}

#[cfg(test)]
pub(crate) mod tests;
