//! The privacy receipt as HTML: per site, in plain words, what the site tried and what it got.
//! A headline ("34 tracking requests to 9 companies, none reached them; 6 ads shown, sent
//! without cookies or identifiers"), then the trackers kept off grouped by company (each with
//! its rule and list), the ads shown de-identified with what was taken off them, the allowed
//! requests that lost cookies or parameters, and what the rewriter took out of the pages; the
//! person's controls beside them (shopping, trust, down-vote). One site's section is also served
//! alone (`/site?name=`), which is how the page's script updates itself live from `/events`.
//! Everything a site sent (hosts, rules, URLs) is escaped here, and nothing else renders it.

use super::html_escape as e;
use crate::exchange::Stripped;
use crate::policy::overlay::PersonChoices;
use crate::receipt::{companies, SiteReceipt, Why};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A company's trackers on one site: what it does (when known), and its hosts.
type Company<'a> = (Option<&'static str>, Vec<(&'a String, &'a crate::receipt::Tracker)>);

/// What the controls need: the page's token, and whether this client may use them.
pub struct Controls<'a> {
    pub token: &'a str,
    /// The asker may use the controls (for the household, or for its own device).
    pub may_change: bool,
    /// The asker changes the household's choices (a learned tracker's "Not a tracker").
    pub operator: bool,
    pub choices: &'a PersonChoices,
    /// The household's choices: the learned trackers.
    pub household: &'a PersonChoices,
}

/// The element id of a site's section.
pub fn section_id(site: &str) -> String {
    let safe: String = site.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("site-{safe}")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What was taken off an ad or a cleaned request, in words.
fn stripped_words(s: &Stripped, ad: bool) -> String {
    let mut w = Vec::new();
    match (s.cookies, s.set_cookies) {
        (true, true) => w.push("cookies removed both ways"),
        (true, false) => w.push("cookies removed"),
        (false, true) => w.push("cookies removed (the ones it tried to set)"),
        (false, false) if ad => w.push("sent without cookies"),
        _ => {}
    }
    if s.params {
        w.push("identifier parameters removed");
    } else if ad {
        w.push("no identifier parameters");
    }
    if s.client_hints {
        w.push("client hints removed");
    }
    if s.referer {
        w.push("the Referer cut to the page's address");
    }
    if s.validators {
        w.push("cache validators removed");
    }
    w.join(", ")
}

/// The headline of a site's receipt.
pub fn headline(r: &SiteReceipt, per_person: bool) -> String {
    let t = &r.totals;
    let mut parts = Vec::new();
    if t.blocked > 0 {
        if per_person {
            let companies: std::collections::BTreeSet<String> = r
                .trackers
                .keys()
                .map(|h| companies::of(h).map_or_else(|| crate::policy::site::site_of(h), |c| c.name.to_string()))
                .collect();
            parts.push(format!(
                "{} to {}, none reached them",
                plural(t.blocked, "tracking request", "tracking requests"),
                plural(companies.len() as u64, "company", "companies")
            ));
        } else {
            parts.push(format!("{} kept off the network", plural(t.blocked, "tracking request", "tracking requests")));
        }
    }
    if t.ads > 0 {
        parts.push(format!("{} shown, sent without cookies or identifiers", plural(t.ads, "ad", "ads")));
    }
    if t.cleaned > 0 {
        parts.push(format!("{} lost cookies or tracking parameters", plural(t.cleaned, "request", "requests")));
    }
    if t.removed > 0 {
        parts.push(format!("{} taken out of its pages", plural(t.removed, "tracking element", "tracking elements")));
    }
    if parts.is_empty() {
        return "Nothing to report.".into();
    }
    let mut h = parts.join("; ");
    h.push('.');
    // Sentence case.
    if let Some(first) = h.get(..1) {
        h = first.to_ascii_uppercase() + &h[1..];
    }
    h
}

/// A control: a POST form to `action` carrying the page's token and `fields`.
pub fn form(h: &mut String, token: &str, action: &str, fields: &[(&str, &str)], button: &str) {
    let _ = write!(
        h,
        "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"token\" value=\"{}\">",
        e(token)
    );
    for (k, v) in fields {
        let _ = write!(h, "<input type=\"hidden\" name=\"{k}\" value=\"{}\">", e(v));
    }
    let _ = write!(h, "<button>{button}</button></form>");
}

/// One site's section: its headline, the person's controls, then what it tried, part by part.
pub fn site_section(h: &mut String, site: &str, r: &SiteReceipt, per_person: bool, c: &Controls) {
    let ago = r.last_seen.map(|t| t.elapsed().as_secs()).unwrap_or(0);
    let ago = match ago {
        0..=59 => "just now".to_string(),
        60..=3599 => format!("{} min ago", ago / 60),
        _ => format!("{} h ago", ago / 3600),
    };
    let _ = write!(
        h,
        "<section class=\"site\" id=\"{}\" data-site=\"{}\"><h3>{}</h3><p class=\"when\">{ago}</p><p class=\"headline\">{}</p>",
        section_id(site),
        e(site),
        e(site),
        e(&headline(r, per_person))
    );
    site_controls(h, site, c);
    if per_person {
        trackers(h, site, r, c);
        ads(h, site, r, c);
        cleaned(h, r);
        removed(h, r);
        if r.other_hosts > 0 {
            let _ = write!(
                h,
                "<p><small>and {} to other hosts, counted but not named</small></p>",
                plural(r.other_hosts, "request", "requests")
            );
        }
    }
    h.push_str("</section>");
}

/// The site's shopping switch and trust, for a client who may use the controls.
fn site_controls(h: &mut String, site: &str, c: &Controls) {
    if !c.may_change {
        return;
    }
    h.push_str("<div class=\"controls\">");
    match c.choices.shopping_left(site).map(|secs| secs.div_ceil(60)) {
        Some(left) => {
            let _ = write!(h, "<span>Shopping mode: on, {left} min left.</span>");
            form(h, c.token, "/shopping", &[("site", site), ("minutes", "0")], "Stop shopping mode");
        }
        None => {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/shopping\"><input type=\"hidden\" name=\"token\" value=\"{}\"><input type=\"hidden\" name=\"site\" value=\"{}\">\
                 <select name=\"minutes\" aria-label=\"for how long\"><option value=\"30\">30 min</option><option value=\"60\" selected>1 hour</option><option value=\"1440\">1 day</option><option value=\"10080\">1 week</option></select> <button>Shopping mode</button></form>",
                e(c.token),
                e(site)
            );
        }
    }
    if c.choices.trusted.contains(site) {
        form(h, c.token, "/trust", &[("site", site), ("trust", "0")], "Stop trusting this site");
    } else {
        form(h, c.token, "/trust", &[("site", site), ("trust", "1")], "Trust this site");
    }
    h.push_str("</div>");
}

/// The trackers kept off the network, grouped by company, each with its rule and list.
fn trackers(h: &mut String, site: &str, r: &SiteReceipt, c: &Controls) {
    if r.trackers.is_empty() {
        return;
    }
    // Grouped by company.
    let mut by_company: BTreeMap<String, Company<'_>> = BTreeMap::new();
    for (host, t) in &r.trackers {
        let (name, what) = match companies::of(host) {
            Some(co) => (co.name.to_string(), Some(co.what)),
            None => (crate::policy::site::site_of(host), None),
        };
        by_company.entry(name).or_insert((what, Vec::new())).1.push((host, t));
    }
    let _ = write!(
        h,
        "<details open class=\"trackers\"><summary>Kept off the network: {}</summary><ul>",
        plural(r.totals.blocked, "request", "requests")
    );
    for (company, (what, hosts)) in &by_company {
        let _ = write!(h, "<li><b>{}</b>", e(company));
        if let Some(w) = what {
            let _ = write!(h, " <span class=\"what\">{}</span>", e(w));
        }
        h.push_str("<ul>");
        for (host, t) in hosts {
            let why = match t.why {
                Why::Blocked => "blocked",
                Why::Social => "social widget, held for a click",
                Why::DownVoted => "down-voted",
                Why::Bounced => "redirector skipped",
                Why::Unlinkable => "bounce kept unlinkable",
                Why::Refused => "refused at the tunnel",
                Why::Learned => "learned tracker's beacon",
            };
            let _ = write!(h, "<li><code>{}</code> &times;{} <span class=\"why\">{why}</span>", e(host), t.count);
            if !t.rule.is_empty() {
                let _ = write!(h, " <small>rule <code>{}</code> from <b>{}</b></small>", e(&t.rule), e(&t.list));
            }
            if let Some(cname) = &t.cname {
                let _ = write!(h, " <small>hidden behind the CNAME <code>{}</code></small>", e(cname));
            }
            if t.why == Why::DownVoted && c.may_change {
                let source = crate::policy::site::site_of(host);
                form(h, c.token, "/ads/restore", &[("source", &source), ("site", site)], "Restore");
            }
            if t.why == Why::Learned && c.operator {
                let source = crate::policy::site::site_of(host);
                form(h, c.token, "/learned/forget", &[("source", &source), ("site", site)], "Not a tracker");
            }
            h.push_str("</li>");
        }
        h.push_str("</ul></li>");
    }
    h.push_str("</ul></details>");
}

/// The ads shown de-identified, by source, with a down-vote per source.
fn ads(h: &mut String, site: &str, r: &SiteReceipt, c: &Controls) {
    if r.ads.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<details open class=\"ads\"><summary>Ads shown, de-identified: {}</summary><ul>",
        plural(r.totals.ads, "request", "requests")
    );
    // By source (the ad host's site), with a down-vote per source.
    let mut by_source: BTreeMap<String, Vec<(&String, &crate::receipt::Cleaned)>> = BTreeMap::new();
    for (host, a) in &r.ads {
        by_source.entry(crate::policy::site::site_of(host)).or_default().push((host, a));
    }
    for (source, hosts) in &by_source {
        let company = companies::of(source).map(|co| co.name).unwrap_or("");
        let _ = write!(h, "<li class=\"ad-source\" data-source=\"{}\"><b>{}</b> ", e(source), e(source));
        if !company.is_empty() {
            let _ = write!(h, " <span class=\"what\">{}</span>", e(company));
        }
        if let Some(sites) = c.household.learned(source) {
            let _ = write!(h, " <span class=\"learned\">learned: tried to identify you on {}</span>", e(sites));
            if c.operator {
                form(h, c.token, "/learned/forget", &[("source", source), ("site", site)], "Not a tracker");
            }
        }
        let votes = c.choices.downvotes.get(source).copied().unwrap_or(0);
        if c.may_change {
            if votes > 0 {
                let _ = write!(h, " <small>{votes} of {} down-votes</small>", c.choices.threshold);
                form(h, c.token, "/ads/restore", &[("source", source), ("site", site)], "Restore");
            }
            form(h, c.token, "/ads/down", &[("source", source), ("site", site)], "This ad annoys me (down-vote)");
        }
        h.push_str("<ul>");
        for (host, a) in hosts {
            let _ = write!(
                h,
                "<li><code>{}</code> &times;{}: {}</li>",
                e(host),
                a.count,
                e(&stripped_words(&a.stripped, true))
            );
        }
        h.push_str("</ul></li>");
    }
    h.push_str("</ul></details>");
}

/// The requests let through but cleaned, with what each lost.
fn cleaned(h: &mut String, r: &SiteReceipt) {
    if r.cleaned.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<details class=\"cleaned\"><summary>Allowed, but cleaned: {}</summary><ul>",
        plural(r.totals.cleaned, "request", "requests")
    );
    for (host, cl) in &r.cleaned {
        let _ = write!(
            h,
            "<li><code>{}</code> &times;{}: {}</li>",
            e(host),
            cl.count,
            e(&stripped_words(&cl.stripped, false))
        );
    }
    h.push_str("</ul></details>");
}

/// What the rewriter took out of the site's pages.
fn removed(h: &mut String, r: &SiteReceipt) {
    if r.totals.removed == 0 {
        return;
    }
    let kinds: Vec<String> = r.removed_by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let _ =
        write!(h, "<details class=\"removed\"><summary>Taken out of its pages: {}</summary><ul>", e(&kinds.join(", ")));
    for rm in r.removed.iter().rev() {
        let host = crate::policy::site::host_of_url(&rm.what);
        let who = host.and_then(companies::of).map(|co| format!(" ({})", co.name)).unwrap_or_default();
        let rule = match &rm.rule {
            Some(rule) => format!("rule {rule}"),
            None => "a tracker's signature".to_string(),
        };
        let _ = write!(
            h,
            "<li>{}: <code>{}</code>{} <small>{}</small></li>",
            rm.kind.as_str(),
            e(&rm.what),
            e(&who),
            e(&rule)
        );
    }
    h.push_str("</ul></details>");
}

/// The page's script: new requests appear while it is open. `/events` says which site changed;
/// that site's section is fetched and put in place (or at the top, when new).
pub const LIVE_SCRIPT: &str = "<script>(function(){if(!window.EventSource)return;var list=document.getElementById('sites');if(!list||list.getAttribute('data-live')!=='1')return;\
var pending={},es=new EventSource('/events');es.addEventListener('site',function(ev){var s=ev.data;if(pending[s])return;pending[s]=setTimeout(function(){delete pending[s];\
fetch('/site?name='+encodeURIComponent(s),{credentials:'same-origin'}).then(function(r){return r.ok?r.text():''}).then(function(html){if(!html)return;\
var t=document.createElement('div');t.innerHTML=html;var fresh=t.firstElementChild;if(!fresh)return;var old=document.getElementById(fresh.id);\
if(old){old.replaceWith(fresh);}else{list.insertBefore(fresh,list.firstChild);var none=document.getElementById('no-sites');if(none)none.remove();}});},300);});})();</script>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::{Totals, Tracker};
    use std::sync::Arc;

    #[test]
    fn the_headline_says_it_in_plain_words() {
        let mut r =
            SiteReceipt { totals: Totals { blocked: 34, ads: 6, cleaned: 0, removed: 0 }, ..Default::default() };
        for host in ["www.google-analytics.com", "stats.g.doubleclick.net", "static.hotjar.com"] {
            let t = Tracker { count: 1, rule: Arc::from(""), list: Arc::from(""), cname: None, why: Why::Blocked };
            r.trackers.insert(host.into(), t);
        }
        assert_eq!(
            headline(&r, true),
            "34 tracking requests to 2 companies, none reached them; 6 ads shown, sent without cookies or identifiers."
        );
        assert_eq!(headline(&SiteReceipt::default(), true), "Nothing to report.");
    }

    #[test]
    fn what_a_site_sent_is_escaped() {
        let mut r = SiteReceipt::default();
        r.totals.blocked = 1;
        let t = Tracker {
            count: 1,
            rule: Arc::from("<script>x</script>"),
            list: Arc::from("l"),
            cname: None,
            why: Why::Blocked,
        };
        r.trackers.insert("<img src=x onerror=alert(1)>".into(), t);
        let snap = PersonChoices::default();
        let c = Controls { token: "t", may_change: true, operator: true, choices: &snap, household: &snap };
        let mut h = String::new();
        site_section(&mut h, "<b>evil</b>", &r, true, &c);
        assert!(!h.contains("<script>x") && !h.contains("<img src=x") && !h.contains("<b>evil"), "{h}");
    }
}
