//! The lol_html handlers, one named function per purpose, listed in one place ([`settings`]),
//! one selector per element name: tracker scripts and inline surveillance snippets (`script`),
//! tracking pixels and frames, tracker preconnects, `ping` attributes and link decoration
//! (hyperlinks), pixels inside `<noscript>`, loose referrer policies, and the page script first
//! in `<head>`. Every
//! removal is written to the page's [`Removals`], which the record phase reads when the page
//! ends; where the handlers are in the page (held text) is kept apart, in [`ReadState`].

use super::csp::{GpcPlan, PAGE_LIVED_STORAGE, PAGE_SCRIPT};
use super::held::{Held, Step};
use crate::base::lock;
use crate::hygiene::request::strip_query_params;
use crate::hygiene::response::tightened;
use crate::policy::{Overlay, Policy, RequestType};
use crate::respond::surrogates;
use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::send::SendHandlerTypes;
use lol_html::{element, ElementContentHandlers, HandlerResult, Selector};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

pub use crate::exchange::{Kind, Removal};

pub use super::held::MAX_SNIPPET;

/// Records per page beyond this are counted in the receipt but not kept one by one.
const MAX_RECORDS: usize = 256;

type El<'a, 'b> = Element<'a, 'b, SendHandlerTypes>;

/// What was taken out of one page, and whether the GPC script went in.
#[derive(Default)]
pub struct Removals {
    pub list: Vec<Removal>,
    pub gpc_injected: bool,
}

impl Removals {
    fn push(&mut self, kind: Kind, what: &str, rule: Option<Arc<str>>) {
        if self.list.len() < MAX_RECORDS {
            self.list.push(Removal { kind, what: what.chars().take(200).collect(), rule });
        }
    }
}

/// Where the handlers are in the page, between calls: the text of the script or `<noscript>`
/// being read.
#[derive(Default)]
pub struct ReadState {
    script: Held,
    /// The script being read is JavaScript written inline (so its text runs).
    script_is_js: bool,
    noscript: Held,
}

/// One page's handlers: what they know of the page, where they are in it, what they removed.
pub struct Handlers {
    pub policy: Arc<Policy>,
    /// The overlays of the request that fetched the page: each URL in it is decided with them.
    overlay: Overlay,
    pub page_host: String,
    base: Option<url::Url>,
    pub shopping: bool,
    pub gpc: GpcPlan,
    /// The page is a third-party frame decided `ad` or a tracker's page kept unlinkable: its
    /// storage is shimmed to the page's life.
    pub page_lived: bool,
    state: Mutex<ReadState>,
    pub removals: Arc<Mutex<Removals>>,
}

impl Handlers {
    /// A page of `page_host`; its relative URLs resolve against the host's root.
    pub fn new(judge: super::Judge, page_host: String, shopping: bool, gpc: GpcPlan) -> Handlers {
        let base = url::Url::parse(&format!("https://{page_host}/")).ok();
        Handlers {
            policy: judge.policy,
            overlay: judge.overlay,
            page_host,
            base,
            shopping,
            gpc,
            page_lived: false,
            state: Mutex::default(),
            removals: Arc::default(),
        }
    }

    /// The same page, with storage that lives only as long as the page (or not).
    pub fn page_lived(mut self, page_lived: bool) -> Handlers {
        self.page_lived = page_lived;
        self
    }

    fn resolve(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with("data:") || raw.starts_with("javascript:") || raw.starts_with('#') {
            return None;
        }
        // Most tracker URLs in pages are absolute: take them as they are (the decision parses
        // the URL itself, and only on a cache miss) rather than parse them twice.
        if (raw.starts_with("https://") || raw.starts_with("http://")) && !raw.bytes().any(|b| b <= b' ' || b == b'\\')
        {
            return Some(raw.to_string());
        }
        match &self.base {
            Some(b) => b.join(raw).ok().map(String::from),
            None => url::Url::parse(raw).ok().map(String::from),
        }
    }

    /// The absolute URL and the rule, when a URL on the page would be blocked. A social widget
    /// the person may click to load stays in the page: the proxy answers it with its placeholder.
    fn blocked(&self, raw: &str, t: RequestType) -> Option<(String, Option<Arc<str>>)> {
        let abs = self.resolve(raw)?;
        if !abs.starts_with("http") {
            return None;
        }
        self.policy
            .blocks_url(&abs, &self.page_host, t, &self.overlay)
            // A down-voted ad stays for the network to block, so the receipt files it as down-voted.
            .filter(|d| !self.policy.click_to_load(d) && !matches!(d.reason, crate::policy::Reason::DownVoted(_)))
            .map(|d| (abs, d.matched().map(|m| m.rule.clone())))
    }

    fn removed(&self, kind: Kind, what: &str, rule: Option<Arc<str>>) {
        lock(&self.removals).push(kind, what, rule);
    }

    /// An element whose `src` is a tracker's goes.
    fn remove_if_blocked(&self, el: &mut El, t: RequestType, kind: Kind) -> HandlerResult {
        if let Some(src) = el.get_attribute("src") {
            if let Some((abs, rule)) = self.blocked(&src, t) {
                el.remove();
                self.removed(kind, &abs, rule);
            }
        }
        Ok(())
    }

    /// A script from a tracker goes, unless it has a surrogate: then it stays, and the proxy
    /// answers it with the surrogate, so page code calling the tracker's API keeps working.
    /// An inline one is looked at with its text ([`Handlers::script_text`]).
    fn script(&self, el: &mut El) -> HandlerResult {
        let src = el.get_attribute("src");
        {
            let mut st = lock(&self.state);
            // The text of a script with a src (normally none) is not run, so not a snippet.
            st.script_is_js = src.is_none() && is_js_type(el);
            st.script.reset();
        }
        let Some(src) = src else { return Ok(()) };
        if let Some((abs, rule)) = self.blocked(&src, RequestType::Script) {
            if surrogates::for_url(&abs).is_none() {
                el.remove();
                self.removed(Kind::Script, &abs, rule);
            }
        }
        Ok(())
    }

    /// An inline script's text, held (up to MAX_SNIPPET) until its end, then put back, or the
    /// no-op stub in its place when a tracker's signature is in it.
    fn script_text(&self, chunk: &mut TextChunk) -> HandlerResult {
        let mut st = lock(&self.state);
        if !st.script_is_js || st.script.passing() {
            return Ok(());
        }
        // The common case: the whole script in one chunk. Look at it in place and leave it
        // untouched unless it is a tracker's snippet (no copy, no mutation).
        if st.script.is_empty() && chunk.last_in_text_node() {
            let text = chunk.as_str();
            if let Some((family, sig)) =
                self.policy.inline.find(text).filter(|_| self.policy.inline.is_only_tracking(text))
            {
                chunk.replace(surrogates::INLINE_STUB, ContentType::Html);
                self.removed_snippet(&family, sig);
            }
            return Ok(());
        }
        if let Step::Whole(held) = st.script.hold(chunk) {
            match self.policy.inline.find(&held).filter(|_| self.policy.inline.is_only_tracking(&held)) {
                Some((family, sig)) => {
                    chunk.replace(surrogates::INLINE_STUB, ContentType::Html);
                    self.removed_snippet(&family, sig);
                }
                None => chunk.replace(&held, ContentType::Html),
            }
        }
        Ok(())
    }

    fn removed_snippet(&self, family: &str, sig: &str) {
        let rule = Arc::from(format!("inline signature `{sig}`"));
        self.removed(Kind::InlineSnippet, &format!("{family}: {sig}"), Some(rule));
    }

    /// Tracking pixels, in pages and in `<noscript>` blocks alike.
    fn pixel(&self, el: &mut El) -> HandlerResult {
        self.remove_if_blocked(el, RequestType::Image, Kind::Pixel)
    }

    fn frame(&self, el: &mut El) -> HandlerResult {
        self.tighten_policy(el, "referrerpolicy");
        self.remove_if_blocked(el, RequestType::SubFrame, Kind::Frame)
    }

    /// Preconnects and preloads to tracker hosts.
    fn link_hint(&self, el: &mut El) -> HandlerResult {
        let rel = el.get_attribute("rel").unwrap_or_default().to_ascii_lowercase();
        let hints = ["preconnect", "dns-prefetch", "preload", "prefetch", "modulepreload"];
        if !rel.split_ascii_whitespace().any(|r| hints.contains(&r)) {
            return Ok(());
        }
        let t = match el.get_attribute("as").as_deref() {
            Some("script") => RequestType::Script,
            Some("image") => RequestType::Image,
            Some("style") => RequestType::Stylesheet,
            Some("font") => RequestType::Font,
            _ if rel.contains("modulepreload") => RequestType::Script,
            _ => RequestType::Other,
        };
        let Some(href) = el.get_attribute("href").filter(|h| h.starts_with("//") || h.contains("://")) else {
            return Ok(());
        };
        // A preconnect names an origin; a rule for the host decides it.
        let origin_only =
            !href.trim_start_matches("https:").trim_start_matches("http:").trim_start_matches("//").contains('/');
        let probe =
            if t == RequestType::Other && origin_only { format!("{}/", href.trim_end_matches('/')) } else { href };
        if let Some((abs, rule)) = self.blocked(&probe, t) {
            el.remove();
            self.removed(Kind::Preconnect, &abs, rule);
        }
        Ok(())
    }

    /// Hyperlinks: auditing (`ping`) goes, and tracking parameters come out of the link.
    fn hyperlink(&self, el: &mut El) -> HandlerResult {
        if let Some(p) = el.get_attribute("ping") {
            el.remove_attribute("ping");
            self.removed(Kind::Ping, &p, None);
        }
        if let Some(href) = el.get_attribute("href").filter(|h| h.contains('?')) {
            if let Some(clean) = strip_query_params(&href, &self.policy.params, false, self.shopping) {
                if el.set_attribute("href", &clean).is_ok() {
                    self.removed(Kind::LinkDecoration, &href, None);
                }
            }
        }
        Ok(())
    }

    fn noscript(&self, _el: &mut El) -> HandlerResult {
        lock(&self.state).noscript.reset();
        Ok(())
    }

    /// `<noscript>` is raw text to a parser that runs scripts, as lol_html does: hold it (up
    /// to MAX_SNIPPET) and take the tracking pixels out of it with a small rewrite of its own.
    fn noscript_text(&self, chunk: &mut TextChunk) -> HandlerResult {
        let mut st = lock(&self.state);
        // The whole block in one chunk with nothing that loads: leave it as it is.
        if st.noscript.is_empty() && !st.noscript.passing() && chunk.last_in_text_node() {
            let t = chunk.as_str();
            if !has_tag_ci(t, "<img") && !has_tag_ci(t, "<iframe") {
                return Ok(());
            }
        }
        if let Step::Whole(held) = st.noscript.hold(chunk) {
            drop(st);
            chunk.replace(&clean_noscript(self, &held), ContentType::Html);
        }
        Ok(())
    }

    /// The page script (GPC, listed scripts' cookies for the page's life, referrer policies
    /// set later), first thing in `<head>`, where the page's CSP allows it; in an ad's frame or an unlinkable page, before
    /// it, the storage that does not outlive the page.
    fn head(&self, el: &mut El) -> HandlerResult {
        // `<meta name="referrer">`: a frame the parser meets after it loads under its policy,
        // so it is tightened here, as the page arrives.
        if el.tag_name().eq_ignore_ascii_case("meta") {
            self.tighten_policy(el, "content");
            return Ok(());
        }
        if let GpcPlan::Inject { nonce } = &self.gpc {
            let open = match nonce {
                Some(n) => format!("<script nonce=\"{}\">", crate::respond::html_escape(n)),
                None => "<script>".to_string(),
            };
            let mut tag = String::new();
            if self.page_lived {
                tag.push_str(&format!("{open}{PAGE_LIVED_STORAGE}</script>"));
            }
            tag.push_str(&format!("{open}{PAGE_SCRIPT}</script>"));
            el.prepend(&tag, ContentType::Html);
            lock(&self.removals).gpc_injected = true;
        }
        Ok(())
    }

    /// The policy of `<meta name="referrer">` or a frame's own `referrerpolicy`, made no looser
    /// than `strict-origin-when-cross-origin` (a stricter one is kept), so a frame's
    /// `document.referrer` holds at most this page's origin: a frame loads as the parser meets
    /// it, under the policy in force then. A link's `referrerpolicy`, and any policy a script
    /// sets later, are the page script's to tighten (src/rewrite/page.js), before any click;
    /// a selector for every link here cost 3 % of a page's rewrite in callgrind. Images,
    /// scripts and other subresources carry only the Referer, which the proxy cuts.
    fn tighten_policy(&self, el: &mut El, attr: &str) {
        let Some(chosen) = el.get_attribute(attr) else { return };
        // The legacy names a `<meta>` may still use.
        let policy = match chosen.trim().to_ascii_lowercase().as_str() {
            "never" => "no-referrer".to_string(),
            "default" => "strict-origin-when-cross-origin".to_string(),
            "always" => "unsafe-url".to_string(),
            "origin-when-crossorigin" => "origin-when-cross-origin".to_string(),
            p => p.to_string(),
        };
        if let Some(tight) = tightened(&policy).filter(|t| !t.eq_ignore_ascii_case(&policy)) {
            if el.set_attribute(attr, tight).is_ok() {
                self.removed(Kind::ReferrerPolicy, &chosen, None);
            }
        }
    }
}

fn is_js_type(el: &El) -> bool {
    match el.get_attribute("type") {
        None => true,
        Some(t) => {
            let t = t.trim().to_ascii_lowercase();
            t.is_empty() || t == "module" || t.contains("javascript") || t.contains("ecmascript")
        }
    }
}

/// The selectors, parsed once for the life of the process: a page's set-up then only
/// compiles them into lol_html's matcher, so there are as few as the handlers allow (one per
/// element name: a script's handler sees both kinds, a link's both ping and decoration). The
/// rewrite bench's 1 KB page costs 11 % less than with one selector per purpose.
struct Selectors {
    script: Selector,
    img_src: Selector,
    iframe_src: Selector,
    link_hint: Selector,
    hyperlink: Selector,
    noscript: Selector,
    head: Selector,
}

fn selectors() -> &'static Selectors {
    static SELECTORS: OnceLock<Selectors> = OnceLock::new();
    SELECTORS.get_or_init(|| {
        // These are constant selectors that lol_html supports; a typo fails every rewrite test.
        let p = |s: &str| s.parse::<Selector>().expect("constant selector parses");
        Selectors {
            script: p("script"),
            img_src: p("img[src]"),
            iframe_src: p("iframe[src]"),
            link_hint: p("link[rel][href]"),
            hyperlink: p("a[ping], area[ping], a[href*='?'], area[href*='?']"),
            noscript: p("noscript"),
            // `<meta name="referrer">` shares the head's handler.
            head: p("head, meta[name='referrer' i]"),
        }
    })
}

type SendHandlers = ElementContentHandlers<'static, SendHandlerTypes>;

fn on_element(
    sel: &'static Selector,
    f: impl FnMut(&mut El) -> HandlerResult + Send + 'static,
) -> (Cow<'static, Selector>, SendHandlers) {
    (Cow::Borrowed(sel), ElementContentHandlers::default().element(f))
}

fn on_text(
    sel: &'static Selector,
    f: impl FnMut(&mut TextChunk<'_>) -> HandlerResult + Send + 'static,
) -> (Cow<'static, Selector>, SendHandlers) {
    (Cow::Borrowed(sel), ElementContentHandlers::default().text(f))
}

/// The settings for one page: each selector and the named handler it calls.
pub fn settings(page: Arc<Handlers>) -> lol_html::send::Settings<'static, 'static> {
    let s = selectors();
    // Each handler holds the page's handlers and calls one of them by name.
    macro_rules! call {
        ($on:ident, $sel:expr, $f:ident) => {{
            let p = page.clone();
            $on($sel, move |x| p.$f(x))
        }};
    }
    lol_html::send::Settings::new_send()
        .append_element_content_handler(call!(on_element, &s.script, script))
        .append_element_content_handler(call!(on_element, &s.img_src, pixel))
        .append_element_content_handler(call!(on_element, &s.iframe_src, frame))
        .append_element_content_handler(call!(on_element, &s.link_hint, link_hint))
        .append_element_content_handler(call!(on_element, &s.hyperlink, hyperlink))
        .append_element_content_handler(call!(on_text, &s.script, script_text))
        .append_element_content_handler(call!(on_element, &s.noscript, noscript))
        .append_element_content_handler(call!(on_text, &s.noscript, noscript_text))
        .append_element_content_handler(call!(on_element, &s.head, head))
}

/// lol_html with nostalk's selectors and handlers that do nothing: what the selector set
/// itself costs lol_html (every tag lexed, the text of scripts and `<noscript>` decoded),
/// the floor under [`settings`]. For the rewrite bench.
#[doc(hidden)]
pub fn noop_settings() -> lol_html::send::Settings<'static, 'static> {
    // Every field named, so a selector added to `Selectors` cannot be left out of the floor.
    let Selectors { script, img_src, iframe_src, link_hint, hyperlink, noscript, head } = selectors();
    let mut s = lol_html::send::Settings::new_send();
    for el in [script, img_src, iframe_src, link_hint, hyperlink, noscript, head] {
        s = s.append_element_content_handler(on_element(el, |_| Ok(())));
    }
    for t in [script, noscript] {
        s = s.append_element_content_handler(on_text(t, |_| Ok(())));
    }
    s
}

/// Whether the tag opening `needle` (`<` then ASCII) is in `hay`, in any case: a look at each
/// `<` (found with memchr) rather than at every byte.
fn has_tag_ci(hay: &str, needle: &str) -> bool {
    // `match_indices` of one char searches with memchr.
    hay.match_indices('<').any(|(i, _)| {
        hay.as_bytes().get(i..i + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    })
}

/// The content of a `<noscript>` without its tracking pixels and frames.
fn clean_noscript(page: &Handlers, html: &str) -> String {
    let found = std::cell::RefCell::new(Vec::new());
    let check = |el: &mut Element<'_, '_>, t: RequestType| {
        if let Some(src) = el.get_attribute("src") {
            if let Some((abs, rule)) = page.blocked(&src, t) {
                el.remove();
                found.borrow_mut().push((if t == RequestType::Image { Kind::Pixel } else { Kind::Frame }, abs, rule));
            }
        }
        Ok(())
    };
    let settings = lol_html::RewriteStrSettings::new()
        .append_element_content_handler(element!("img[src]", |el| check(el, RequestType::Image)))
        .append_element_content_handler(element!("iframe[src]", |el| check(el, RequestType::SubFrame)));
    let out = lol_html::rewrite_str(html, settings).unwrap_or_else(|_| html.to_string());
    for (kind, abs, rule) in found.into_inner() {
        page.removed(kind, &abs, rule);
    }
    out
}
