//! The lol_html handlers, listed in one place, one selector per element name: tracker scripts
//! and inline surveillance snippets (`script`), tracking pixels and frames, tracker
//! preconnects, `ping` attributes and link decoration (hyperlinks), pixels inside `<noscript>`,
//! and the GPC script first in `<head>`. Every removal is written to the page's [`Removals`]
//! for the receipt.

use super::csp::{GpcPlan, GPC_SCRIPT};
use crate::hygiene::request::strip_query_params;
use crate::policy::{Policy, RequestType};
use crate::respond::surrogates;
use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::send::SendHandlerTypes;
use lol_html::{element, ElementContentHandlers, Selector};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

/// An inline script longer than this is an application, not a tracker's loader snippet.
pub const MAX_SNIPPET: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Script,
    InlineSnippet,
    Pixel,
    Frame,
    Preconnect,
    Ping,
    LinkDecoration,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Script => "script",
            Kind::InlineSnippet => "inline snippet",
            Kind::Pixel => "pixel",
            Kind::Frame => "frame",
            Kind::Preconnect => "preconnect",
            Kind::Ping => "ping attribute",
            Kind::LinkDecoration => "link decoration",
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

/// What the handlers share while one page streams through.
#[derive(Default)]
pub struct Removals {
    pub list: Vec<Removal>,
    pub gpc_injected: bool,
    script_buf: String,
    script_is_js: bool,
    script_passthrough: bool,
    noscript_buf: String,
    noscript_passthrough: bool,
}

/// Records per page beyond this are counted in the receipt but not kept one by one.
const MAX_RECORDS: usize = 256;

impl Removals {
    fn push(&mut self, kind: Kind, what: &str, rule: Option<Arc<str>>) {
        if self.list.len() < MAX_RECORDS {
            self.list.push(Removal { kind, what: what.chars().take(200).collect(), rule });
        }
    }
}

pub struct PageCtx {
    pub policy: Arc<Policy>,
    pub page_host: String,
    pub base: Option<url::Url>,
    pub shopping: bool,
    pub gpc: GpcPlan,
}

impl PageCtx {
    /// A page of `page_host`; its relative URLs resolve against the host's root.
    pub fn new(policy: Arc<Policy>, page_host: String, shopping: bool, gpc: GpcPlan) -> PageCtx {
        let base = url::Url::parse(&format!("https://{page_host}/")).ok();
        PageCtx { policy, page_host, base, shopping, gpc }
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

    fn blocked(&self, raw: &str, t: RequestType) -> Option<(String, Option<Arc<str>>)> {
        let abs = self.resolve(raw)?;
        if !abs.starts_with("http") {
            return None;
        }
        self.policy.blocks_url(&abs, &self.page_host, t).map(|d| (abs, d.matched().map(|m| m.rule.clone())))
    }
}

fn lock(r: &Mutex<Removals>) -> std::sync::MutexGuard<'_, Removals> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_js_type(el: &Element<'_, '_, lol_html::send::SendHandlerTypes>) -> bool {
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
            head: p("head"),
        }
    })
}

type SendHandlers = ElementContentHandlers<'static, SendHandlerTypes>;

fn on_element(
    sel: &'static Selector,
    f: impl FnMut(&mut Element<'_, '_, SendHandlerTypes>) -> lol_html::HandlerResult + Send + 'static,
) -> (Cow<'static, Selector>, SendHandlers) {
    (Cow::Borrowed(sel), ElementContentHandlers::default().element(f))
}

fn on_text(
    sel: &'static Selector,
    f: impl FnMut(&mut TextChunk<'_>) -> lol_html::HandlerResult + Send + 'static,
) -> (Cow<'static, Selector>, SendHandlers) {
    (Cow::Borrowed(sel), ElementContentHandlers::default().text(f))
}

/// The settings for one page.
pub fn settings(ctx: Arc<PageCtx>, removals: Arc<Mutex<Removals>>) -> lol_html::send::Settings<'static, 'static> {
    type El<'a, 'b> = Element<'a, 'b, lol_html::send::SendHandlerTypes>;
    let (c1, r1) = (ctx.clone(), removals.clone());
    let (c2, r2) = (ctx.clone(), removals.clone());
    let (c3, r3) = (ctx.clone(), removals.clone());
    let (c4, r4) = (ctx.clone(), removals.clone());
    let (c6, r6) = (ctx.clone(), removals.clone());
    let (c8, r8) = (ctx.clone(), removals.clone());
    let (c9, r9) = (ctx.clone(), removals.clone());
    let r10 = removals.clone();
    let (c11, r11) = (ctx.clone(), removals.clone());
    let sel = selectors();

    lol_html::send::Settings::new_send()
        // Scripts. One from a tracker goes, unless it has a surrogate: then it stays, and the
        // proxy answers it with the surrogate, so page code calling the tracker's API keeps
        // working. An inline one is looked at with its text (below): is it JavaScript?
        .append_element_content_handler(on_element(&sel.script, move |el: &mut El| {
            let src = el.get_attribute("src");
            {
                let mut r = lock(&r1);
                // The text of a script with a src (normally none) is not run, so not a snippet.
                r.script_is_js = src.is_none() && is_js_type(el);
                r.script_buf.clear();
                r.script_passthrough = false;
            }
            let Some(src) = src else { return Ok(()) };
            if let Some((abs, rule)) = c1.blocked(&src, RequestType::Script) {
                if surrogates::for_url(&abs).is_none() {
                    el.remove();
                    lock(&r1).push(Kind::Script, &abs, rule);
                }
            }
            Ok(())
        }))
        // Tracking pixels, in pages and in <noscript> blocks alike.
        .append_element_content_handler(on_element(&sel.img_src, move |el: &mut El| {
            if let Some(src) = el.get_attribute("src") {
                if let Some((abs, rule)) = c2.blocked(&src, RequestType::Image) {
                    el.remove();
                    lock(&r2).push(Kind::Pixel, &abs, rule);
                }
            }
            Ok(())
        }))
        .append_element_content_handler(on_element(&sel.iframe_src, move |el: &mut El| {
            if let Some(src) = el.get_attribute("src") {
                if let Some((abs, rule)) = c3.blocked(&src, RequestType::SubFrame) {
                    el.remove();
                    lock(&r3).push(Kind::Frame, &abs, rule);
                }
            }
            Ok(())
        }))
        // Preconnects and preloads to tracker hosts.
        .append_element_content_handler(on_element(&sel.link_hint, move |el: &mut El| {
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
            if let Some(href) = el.get_attribute("href") {
                let href = if href.starts_with("//") || href.contains("://") {
                    href
                } else {
                    return Ok(());
                };
                // A preconnect names an origin; a rule for the host decides it.
                let probe = if matches!(t, RequestType::Other)
                    && !href
                        .trim_start_matches("https:")
                        .trim_start_matches("http:")
                        .trim_start_matches("//")
                        .contains('/')
                {
                    format!("{}/", href.trim_end_matches('/'))
                } else {
                    href
                };
                if let Some((abs, rule)) = c4.blocked(&probe, t) {
                    el.remove();
                    lock(&r4).push(Kind::Preconnect, &abs, rule);
                }
            }
            Ok(())
        }))
        // Hyperlinks: auditing (`ping`) goes, and tracking parameters come out of the link.
        .append_element_content_handler(on_element(&sel.hyperlink, move |el: &mut El| {
            if let Some(p) = el.get_attribute("ping") {
                el.remove_attribute("ping");
                lock(&r6).push(Kind::Ping, &p, None);
            }
            if let Some(href) = el.get_attribute("href").filter(|h| h.contains('?')) {
                if let Some(clean) = strip_query_params(&href, &c6.policy.params, false, c6.shopping) {
                    if el.set_attribute("href", &clean).is_ok() {
                        lock(&r6).push(Kind::LinkDecoration, &href, None);
                    }
                }
            }
            Ok(())
        }))
        // Inline snippets: hold an inline script's text (up to MAX_SNIPPET) until its end,
        // then put it back, or the no-op stub if a tracker's signature is in it.
        .append_element_content_handler(on_text(&sel.script, move |chunk: &mut TextChunk| {
            let mut r = lock(&r8);
            if !r.script_is_js || r.script_passthrough {
                return Ok(());
            }
            // The common case: the whole script in one chunk. Look at it in place and leave it
            // untouched unless it is a tracker's snippet (no copy, no mutation).
            if r.script_buf.is_empty() && chunk.last_in_text_node() {
                if let Some((family, sig)) = c8.policy.inline.find(chunk.as_str()) {
                    let what = format!("{family}: {sig}");
                    chunk.replace(surrogates::INLINE_STUB, ContentType::Html);
                    r.push(Kind::InlineSnippet, &what, Some(Arc::from(format!("inline signature `{sig}`"))));
                }
                return Ok(());
            }
            r.script_buf.push_str(chunk.as_str());
            if r.script_buf.len() > MAX_SNIPPET {
                let held = std::mem::take(&mut r.script_buf);
                chunk.replace(&held, ContentType::Html);
                r.script_passthrough = true;
                return Ok(());
            }
            if !chunk.last_in_text_node() {
                chunk.remove();
                return Ok(());
            }
            let held = std::mem::take(&mut r.script_buf);
            match c8.policy.inline.find(&held) {
                Some((family, sig)) => {
                    chunk.replace(surrogates::INLINE_STUB, ContentType::Html);
                    let what = format!("{family}: {sig}");
                    r.push(Kind::InlineSnippet, &what, Some(Arc::from(format!("inline signature `{sig}`"))));
                }
                None => chunk.replace(&held, ContentType::Html),
            }
            Ok(())
        }))
        // <noscript> is raw text to a parser that runs scripts, as lol_html does: hold it (up
        // to MAX_SNIPPET) and take the tracking pixels out of it with a small rewrite of its own.
        .append_element_content_handler(on_element(&sel.noscript, move |_el: &mut El| {
            let mut r = lock(&r10);
            r.noscript_buf.clear();
            r.noscript_passthrough = false;
            Ok(())
        }))
        .append_element_content_handler(on_text(&sel.noscript, move |chunk: &mut TextChunk| {
            let mut r = lock(&r11);
            if r.noscript_passthrough {
                return Ok(());
            }
            // The whole block in one chunk with nothing that loads: leave it as it is.
            if r.noscript_buf.is_empty() && chunk.last_in_text_node() {
                let t = chunk.as_str();
                if !has_tag_ci(t, "<img") && !has_tag_ci(t, "<iframe") {
                    return Ok(());
                }
            }
            r.noscript_buf.push_str(chunk.as_str());
            if r.noscript_buf.len() > MAX_SNIPPET {
                let held = std::mem::take(&mut r.noscript_buf);
                chunk.replace(&held, ContentType::Html);
                r.noscript_passthrough = true;
                return Ok(());
            }
            if !chunk.last_in_text_node() {
                chunk.remove();
                return Ok(());
            }
            let held = std::mem::take(&mut r.noscript_buf);
            let cleaned = clean_noscript(&c11, &held, &mut r);
            chunk.replace(&cleaned, ContentType::Html);
            Ok(())
        }))
        // Global Privacy Control, first thing in <head>, where the page's CSP allows it.
        .append_element_content_handler(on_element(&sel.head, move |el: &mut El| {
            if let GpcPlan::Inject { nonce } = &c9.gpc {
                let tag = match nonce {
                    Some(n) => format!("<script nonce=\"{}\">{GPC_SCRIPT}</script>", crate::respond::html_escape(n)),
                    None => format!("<script>{GPC_SCRIPT}</script>"),
                };
                el.prepend(&tag, ContentType::Html);
                lock(&r9).gpc_injected = true;
            }
            Ok(())
        }))
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
fn clean_noscript(ctx: &PageCtx, html: &str, removals: &mut Removals) -> String {
    let found = std::cell::RefCell::new(Vec::new());
    let check = |el: &mut Element<'_, '_>, t: RequestType| {
        if let Some(src) = el.get_attribute("src") {
            if let Some((abs, rule)) = ctx.blocked(&src, t) {
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
        removals.push(kind, &abs, rule);
    }
    out
}
