//! What sits on top of the lists, as data the decision reads: a group's rules (`[[groups]]`: the
//! sites it trusts, its ad mode), the person's choices (sites trusted from the receipt,
//! down-voted ad sources, shopping switches) and the one-time passes of their clicks. The lists'
//! verdict and every overlay are combined in one place, [`super::Policy::decide_for`], which every
//! path calls: forwarded requests, CONNECT and transparent tunnels, `explain`, social
//! click-to-load and each URL the rewriter judges inside a page. A new overlay (a per-device
//! choice, a learned tracker) is a field here and a step in [`Overlay::apply`], nowhere else.
//!
//! ops/auth.rs builds the [`GroupRules`] of the signed-in user; ops/choices.rs keeps the store
//! and publishes a [`PersonChoices`] snapshot (swapped whole on every change) for the
//! household and for each device that made choices of its own (`[receipt] per_person`): a
//! request is decided with the household's and its own device's together.

use super::passes::Passes;
use super::{AdMode, Decision, Matched, Reason, RequestType, Verdict};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A group's policy on top of the proxy's.
#[derive(Debug, Default)]
pub struct GroupRules {
    pub name: String,
    /// Replaces `[policy] ads` for what an ad list matched.
    pub ads: Option<AdMode>,
    /// Sites (registrable domains) the group trusts, besides `[policy] trusted_sites`.
    pub trusted: HashSet<String>,
}

/// The person's choices, as one immutable snapshot of the store.
#[derive(Debug, Clone)]
pub struct PersonChoices {
    /// Ad source (registrable domain) → down-votes.
    pub downvotes: HashMap<String, u32>,
    pub trusted: HashSet<String>,
    /// Site → when its shopping switch expires (seconds since the epoch).
    pub shopping: HashMap<String, u64>,
    /// Down-votes that block an ad source (`[receipt] downvotes_to_block`).
    pub threshold: u32,
    /// Learned trackers (the household's alone): third party → the sites it was seen trying
    /// to identify the browser on ("" for one the person said is not a tracker).
    pub learned: HashMap<String, Arc<str>>,
}

impl Default for PersonChoices {
    fn default() -> Self {
        PersonChoices {
            downvotes: HashMap::new(),
            trusted: HashSet::new(),
            shopping: HashMap::new(),
            threshold: 1,
            learned: HashMap::new(),
        }
    }
}

/// Seconds since the epoch, as the shopping switches' expiry is kept.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl PersonChoices {
    /// Whether an ad source is down-voted past the threshold.
    pub fn is_downvoted(&self, source: &str) -> bool {
        self.downvotes.get(source).is_some_and(|v| *v >= self.threshold.max(1))
    }

    /// Whether `site` is switched to shopping now.
    pub fn is_shopping(&self, site: &str) -> bool {
        !self.shopping.is_empty() && self.shopping.get(site).is_some_and(|until| *until > now_secs())
    }

    /// The sites a learned tracker was seen identifying the browser on, when `source` is one.
    pub fn learned(&self, source: &str) -> Option<&str> {
        self.learned.get(source).map(|s| &**s).filter(|s| !s.is_empty())
    }

    /// The time `site`'s shopping switch has left, in whole seconds, when it is on.
    pub fn shopping_left(&self, site: &str) -> Option<u64> {
        self.shopping.get(site).map(|until| until.saturating_sub(now_secs())).filter(|s| *s > 0)
    }
}

/// A request's click: the pass it carried, the client who sent it, and the store whose
/// grants and widget windows it may take or open.
#[derive(Clone, Copy)]
pub struct Click<'a> {
    pub passes: &'a Passes,
    /// The request carried a good pass for exactly its URL (now used up).
    pub redeemed: bool,
    pub client: std::net::IpAddr,
}

/// Everything on top of the lists for one request.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub group: Option<Arc<GroupRules>>,
    /// The household's choices.
    pub person: Arc<PersonChoices>,
    /// The asking device's own choices, when it made any.
    pub device: Option<Arc<PersonChoices>>,
}

impl Overlay {
    pub fn new(group: Option<Arc<GroupRules>>, person: Arc<PersonChoices>) -> Overlay {
        Overlay { group, person, device: None }
    }

    /// With the asking device's own choices on top of the household's.
    pub fn with_device(mut self, device: Option<Arc<PersonChoices>>) -> Overlay {
        self.device = device;
        self
    }

    /// The household's choices and the device's, for a test of either.
    fn choices(&self) -> impl Iterator<Item = &PersonChoices> {
        std::iter::once(&*self.person).chain(self.device.as_deref())
    }

    /// Whether the group, the household or the device trusts the request's site or its page's.
    pub fn trusts(&self, site: &str, page_site: &str) -> bool {
        let trusted = |set: &HashSet<String>| set.contains(site) || set.contains(page_site);
        self.group.as_ref().is_some_and(|g| trusted(&g.trusted)) || self.choices().any(|c| trusted(&c.trusted))
    }

    /// Whether the page's site is switched to shopping (by the household or the device).
    pub fn shopping(&self, page_site: &str) -> bool {
        self.choices().any(|c| c.is_shopping(page_site))
    }

    /// The lists' decision with the overlays applied, in order: trust (the group's, the
    /// person's), the group's ad mode, the person's down-votes, then the person's click.
    pub fn apply(&self, mut d: Decision, at: Sites<'_>, click: Option<Click<'_>>) -> Decision {
        if self.trusts(at.site, at.page_site) {
            d = Decision::trusted_site();
        } else {
            if d.reason == Reason::NoRule && at.site != at.page_site {
                if let Some(sites) = self.person.learned(at.site) {
                    d = learned(sites, at, self.group.as_ref().and_then(|g| g.ads).unwrap_or(at.ads));
                }
            }
            let learned = matches!(d.reason, Reason::Learned(_));
            if let (true, false, Some(mode)) = (d.ad_class, learned, self.group.as_ref().and_then(|g| g.ads)) {
                d.verdict = match mode {
                    AdMode::Ad => Verdict::Ad,
                    AdMode::Block => Verdict::Block,
                    AdMode::Allow => Verdict::Allow,
                };
            }
            if d.verdict == Verdict::Ad && self.choices().any(|c| c.is_downvoted(at.site)) {
                let rule = d.matched().map(|m| m.rule.clone()).unwrap_or_else(|| Arc::from(at.site));
                let matched = Matched { rule, list: Arc::from("down-voted") };
                d = Decision { verdict: Verdict::Block, reason: Reason::DownVoted(matched), ad_class: true };
            }
        }
        match click {
            Some(c) => let_through(d, at, c),
            None => d,
        }
    }
}

/// The request's site and its top page's, with what the click rules need of the request.
#[derive(Clone, Copy)]
pub struct Sites<'a> {
    pub site: &'a str,
    pub page_site: &'a str,
    pub url: &'a str,
    pub request_type: RequestType,
    /// `[policy] ads`: what an ad source's request gets (a learned tracker's too).
    pub ads: AdMode,
    /// A POST (a `sendBeacon`'s shape, when its type is a fetch's).
    pub post: bool,
}

/// A learned tracker's request: an ad source's (forwarded with nothing that identifies), but
/// its beacons blocked: pings, images that carry a query (a pixel's report), and POSTs of a
/// fetch's type (`navigator.sendBeacon`).
fn learned(sites: &str, at: Sites<'_>, ads: AdMode) -> Decision {
    let beacon = match at.request_type {
        RequestType::Ping => true,
        RequestType::Image => at.url.contains('?'),
        RequestType::XmlHttpRequest | RequestType::Other => at.post,
        _ => false,
    };
    let matched =
        Matched { rule: Arc::from(format!("learned: tried to identify you on {sites}")), list: Arc::from("learned") };
    let verdict = match ads {
        _ if beacon => Verdict::Block,
        AdMode::Ad => Verdict::Ad,
        AdMode::Block => Verdict::Block,
        AdMode::Allow => Verdict::Allow,
    };
    Decision { verdict, reason: Reason::Learned(matched), ad_class: true }
}

/// The person's click overrides the lists for this one request: a pass it carried, or the
/// grant its click in a widget's placeholder frame made for this script. A widget script let
/// through opens a short window for the same social site's own loads from this page by this
/// client (the frames it makes), and those are let through too.
fn let_through(d: Decision, at: Sites<'_>, click: Click<'_>) -> Decision {
    let script = d.is_social() && at.request_type == RequestType::Script;
    if click.redeemed || (script && click.passes.take_grant(click.client, at.url)) {
        if script {
            click.passes.open_window(click.client, at.page_site, at.site, at.url);
        }
        return Decision::let_through();
    }
    if d.is_social() && click.passes.window_open(click.client, at.page_site, at.site, at.url) {
        return Decision::let_through();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad() -> Decision {
        let m = Matched { rule: Arc::from("||ads.example^"), list: Arc::from("nostalk-ads") };
        Decision { verdict: Verdict::Ad, reason: Reason::Rule(m), ad_class: true }
    }

    fn tracker() -> Decision {
        let m = Matched { rule: Arc::from("||t.example^"), list: Arc::from("nostalk-surveillance") };
        Decision { verdict: Verdict::Block, reason: Reason::Rule(m), ad_class: false }
    }

    fn at<'a>(site: &'a str, page_site: &'a str) -> Sites<'a> {
        Sites {
            site,
            page_site,
            url: "https://x.example/",
            request_type: RequestType::Script,
            ads: AdMode::Ad,
            post: false,
        }
    }

    fn person(f: impl FnOnce(&mut PersonChoices)) -> Arc<PersonChoices> {
        let mut p = PersonChoices::default();
        f(&mut p);
        Arc::new(p)
    }

    #[test]
    fn no_overlay_leaves_the_lists_verdict() {
        let o = Overlay::default();
        assert_eq!(o.apply(tracker(), at("t.example", "news.example"), None), tracker());
        assert_eq!(o.apply(ad(), at("ads.example", "news.example"), None), ad());
    }

    #[test]
    fn a_groups_ad_mode_and_trusted_sites_apply() {
        let group = GroupRules { name: "g".into(), ads: Some(AdMode::Block), trusted: ["shop.example".into()].into() };
        let o = Overlay::new(Some(Arc::new(group)), Arc::default());
        assert_eq!(o.apply(ad(), at("ads.example", "news.example"), None).verdict, Verdict::Block);
        assert_eq!(o.apply(tracker(), at("t.example", "news.example"), None).verdict, Verdict::Block);
        assert!(o.apply(tracker(), at("t.example", "shop.example"), None).is_trusted(), "by the page's site");
        assert!(o.apply(tracker(), at("shop.example", "news.example"), None).is_trusted(), "by its own site");
        let lenient = GroupRules { name: "h".into(), ads: Some(AdMode::Ad), trusted: HashSet::new() };
        let o = Overlay::new(Some(Arc::new(lenient)), Arc::default());
        let mut blocked_ad = ad();
        blocked_ad.verdict = Verdict::Block;
        assert_eq!(o.apply(blocked_ad, at("ads.example", "news.example"), None).verdict, Verdict::Ad);
    }

    #[test]
    fn a_learned_third_party_is_an_ad_source_with_its_beacons_blocked_and_its_own_site_untouched() {
        let o = Overlay::new(
            None,
            person(|p| {
                p.learned.insert("t.example".into(), Arc::from("a.example, b.example and c.example"));
                p.learned.insert("no.example".into(), Arc::from(""));
            }),
        );
        let allow = Decision::allow();
        let script = o.apply(allow.clone(), at("t.example", "news.example"), None);
        assert_eq!(script.verdict, Verdict::Ad);
        assert_eq!(script.list(), Some("learned"));
        assert_eq!(script.rule(), Some("learned: tried to identify you on a.example, b.example and c.example"));
        let pixel = Sites {
            url: "https://t.example/p.gif?e=1",
            request_type: RequestType::Image,
            ..at("t.example", "news.example")
        };
        assert_eq!(o.apply(allow.clone(), pixel, None).verdict, Verdict::Block);
        let ping = Sites { request_type: RequestType::Ping, ..at("t.example", "news.example") };
        assert_eq!(o.apply(allow.clone(), ping, None).verdict, Verdict::Block);
        let beacon = Sites { request_type: RequestType::XmlHttpRequest, post: true, ..at("t.example", "news.example") };
        assert_eq!(o.apply(allow.clone(), beacon, None).verdict, Verdict::Block, "sendBeacon");
        let fetch = Sites { request_type: RequestType::XmlHttpRequest, ..at("t.example", "news.example") };
        assert_eq!(o.apply(allow.clone(), fetch, None).verdict, Verdict::Ad, "a GET fetch");
        let blocking = Sites { ads: AdMode::Block, ..at("t.example", "news.example") };
        assert_eq!(o.apply(allow.clone(), blocking, None).verdict, Verdict::Block, "[policy] ads = block");
        assert_eq!(o.apply(allow.clone(), at("t.example", "t.example"), None), allow, "its own site's pages");
        assert_eq!(o.apply(allow.clone(), at("no.example", "news.example"), None), allow, "not a tracker");
        assert_eq!(o.apply(tracker(), at("t.example", "news.example"), None), tracker(), "a list's rule stays");
    }

    #[test]
    fn the_persons_down_votes_and_trust_apply() {
        let o = Overlay::new(
            None,
            person(|p| {
                p.threshold = 2;
                p.downvotes.insert("ads.example".into(), 1);
                p.trusted.insert("shop.example".into());
            }),
        );
        assert_eq!(o.apply(ad(), at("ads.example", "news.example"), None).verdict, Verdict::Ad, "below the threshold");
        assert!(o.apply(ad(), at("ads.example", "shop.example"), None).is_trusted());
        let o = Overlay::new(
            None,
            person(|p| {
                p.downvotes.insert("ads.example".into(), 1);
            }),
        );
        let d = o.apply(ad(), at("ads.example", "news.example"), None);
        assert_eq!((d.verdict, d.list(), d.rule()), (Verdict::Block, Some("down-voted"), Some("||ads.example^")));
        assert_eq!(o.apply(tracker(), at("ads.example", "news.example"), None), tracker(), "only an ad is down-voted");
    }

    #[test]
    fn a_group_lets_an_ad_through_before_a_down_vote_blocks_it() {
        let group = GroupRules { name: "g".into(), ads: Some(AdMode::Allow), trusted: HashSet::new() };
        let o = Overlay::new(
            Some(Arc::new(group)),
            person(|p| {
                p.downvotes.insert("ads.example".into(), 5);
            }),
        );
        assert_eq!(o.apply(ad(), at("ads.example", "news.example"), None).verdict, Verdict::Allow);
    }

    #[test]
    fn a_click_lets_one_request_through_and_opens_a_widgets_window() {
        let passes = Passes::default();
        let me: std::net::IpAddr = [10, 0, 0, 2].into();
        let social = Decision {
            verdict: Verdict::Block,
            reason: Reason::Social(Matched { rule: Arc::from("||social.example^"), list: Arc::from("s") }),
            ad_class: false,
        };
        let o = Overlay::default();
        let script = at("social.example", "news.example");
        let d = o.apply(social.clone(), script, Some(Click { passes: &passes, redeemed: true, client: me }));
        assert_eq!(d.reason, Reason::LetThrough);
        let frame = Sites { url: "https://social.example/frame", request_type: RequestType::SubFrame, ..script };
        let d = o.apply(social.clone(), frame, Some(Click { passes: &passes, redeemed: false, client: me }));
        assert_eq!(d.reason, Reason::LetThrough, "the widget's own frame, within the window");
        let other = at("social.example", "other.example");
        assert!(o
            .apply(social.clone(), other, Some(Click { passes: &passes, redeemed: false, client: me }))
            .is_social());
        let you: std::net::IpAddr = [10, 0, 0, 9].into();
        assert!(
            o.apply(social.clone(), frame, Some(Click { passes: &passes, redeemed: false, client: you })).is_social(),
            "another client of the gateway: the window is not theirs"
        );
        // A click in the widget's placeholder frame grants that client the script once.
        let page = at("social.example", "blog.example");
        assert!(o
            .apply(social.clone(), page, Some(Click { passes: &passes, redeemed: false, client: me }))
            .is_social());
        passes.grant(me, page.url);
        assert!(o
            .apply(social.clone(), page, Some(Click { passes: &passes, redeemed: false, client: you }))
            .is_social());
        let d = o.apply(social.clone(), page, Some(Click { passes: &passes, redeemed: false, client: me }));
        assert_eq!(d.reason, Reason::LetThrough);
        assert!(
            o.apply(social, page, Some(Click { passes: &passes, redeemed: false, client: me })).is_social(),
            "once"
        );
    }

    #[test]
    fn shopping_is_read_from_the_snapshot() {
        let o = Overlay::new(
            None,
            person(|p| {
                p.shopping.insert("shop.example".into(), now_secs() + 60);
            }),
        );
        assert!(o.shopping("shop.example"));
        assert!(!o.shopping("news.example"));
        let expired = person(|p| {
            p.shopping.insert("shop.example".into(), now_secs() - 1);
        });
        assert!(!expired.is_shopping("shop.example"));
        assert_eq!(expired.shopping_left("shop.example"), None);
    }
}
