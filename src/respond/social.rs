//! Social widgets, click to load: what a blocked social frame or widget script is answered
//! with when `[policy] social = "click"`. A frame gets a small document with a button that
//! loads that frame, once, through a one-time pass; a widget script gets a surrogate
//! (surrogates/social.js) that puts a placeholder where the page expected each widget. The
//! placeholder's button is a frame of the social site's origin (the script's URL with
//! `nostalk-widget=1`), so page script can neither read its pass nor click it: only a person's
//! click in it makes the proxy grant that client the script (see policy/passes.rs). The
//! network is named for the person from its site; the page's own elements the network's
//! script would turn into widgets are found by the selectors each network documents.

use crate::policy::passes::Passes;

/// The surrogate of a widget script: shared code plus its settings (network, the one-time
/// link to the real script, which elements are widgets).
const SURROGATE: &str = include_str!("surrogates/social.js");

/// A network's name and the elements its script turns into widgets.
fn network(site: &str) -> (&'static str, &'static str) {
    match site {
        "facebook.net" | "facebook.com" => (
            "Facebook",
            ".fb-like,.fb-share-button,.fb-page,.fb-post,.fb-video,.fb-comments,.fb-follow,.fb-send,.fb-quote,.fb-save,.fb-group,.fb-comment-embed",
        ),
        "twitter.com" | "x.com" => (
            "X (Twitter)",
            "blockquote.twitter-tweet,blockquote.twitter-video,a.twitter-timeline,a.twitter-share-button,a.twitter-follow-button,a.twitter-hashtag-button,a.twitter-mention-button",
        ),
        "linkedin.com" => ("LinkedIn", "script[type^='IN/']"),
        "pinterest.com" => ("Pinterest", "a[data-pin-do]"),
        "instagram.com" => ("Instagram", "blockquote.instagram-media"),
        "threads.net" | "threads.com" => ("Threads", "blockquote.text-post-media"),
        "tiktok.com" => ("TikTok", "blockquote.tiktok-embed"),
        "reddit.com" | "redditmedia.com" => ("Reddit", "blockquote.reddit-card,blockquote.reddit-embed-bq"),
        "tumblr.com" => ("Tumblr", ".tumblr-post"),
        "bsky.app" => ("Bluesky", "blockquote.bluesky-embed"),
        "disqus.com" | "disquscdn.com" => ("Disqus", "#disqus_thread"),
        "spot.im" | "openweb.com" => ("OpenWeb comments", "[data-spotim-module],[data-openweb-ad-module]"),
        "sharethis.com" => ("ShareThis", ".sharethis-inline-share-buttons,.sharethis-sticky-share-buttons,.sharethis-inline-follow-buttons"),
        "addthis.com" => ("AddThis", ".addthis_inline_share_toolbox,.addthis_toolbox,.addthis_sharing_toolbox"),
        "addtoany.com" => ("AddToAny", ".a2a_kit"),
        "vk.com" => ("VK", "[id^='vk_']"),
        "telegram.org" => ("Telegram", "script[data-telegram-post],script[data-telegram-login]"),
        _ => ("social", ""),
    }
}

/// The script that stands in for a blocked widget script. It carries no pass: its
/// placeholders' buttons are frames the page cannot reach into.
pub fn surrogate(url: &str, site: &str) -> String {
    let (name, selector) = network(site);
    let settings = serde_json::json!({
        "network": name,
        "selector": selector,
        "script": url,
        "frame": crate::policy::passes::widget_frame(url),
    });
    // JSON is a JavaScript expression; `</` is escaped so no `</script>` can appear in it.
    let settings = settings.to_string().replace("</", "<\\/");
    SURROGATE.replacen("__NOSTALK_SOCIAL__", &settings, 1)
}

/// The button of a widget's placeholder, as the frame (of the social site's origin) the
/// surrogate put in the page: a link that loads, with a pass, the click's answer below.
pub fn widget_button(url: &str, site: &str, passes: &Passes) -> String {
    let (name, _) = network(site);
    let name = if name == "social" { site } else { name };
    let e = super::html_escape;
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Load the {name} widget</title></head>\
         <body style=\"margin:0;font:14px/1.4 system-ui,sans-serif\"><a id=\"nostalk-load\" href=\"{link}\" \
         style=\"display:flex;align-items:center;justify-content:center;box-sizing:border-box;height:100vh;\
         border:1px solid #888;border-radius:4px;background:#fff;color:#222;text-decoration:none\">\
         Load this {name} widget</a></body></html>\n",
        name = e(name),
        link = e(&passes.link(url)),
    )
}

/// What the placeholder frame shows once clicked: it tells the surrogate in the page, which
/// then loads the script the proxy now lets through for this client, once.
pub const WIDGET_CLICKED: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Loading</title></head>\
<body style=\"margin:0;font:14px/1.4 system-ui,sans-serif;color:#555\">Loading the widget\u{2026}\
<script>parent.postMessage('nostalk-widget-go','*');</script></body></html>\n";

/// The document a blocked social frame gets: what was kept off, and a button that loads this
/// frame (and nothing else) once.
pub fn frame_placeholder(url: &str, site: &str, passes: &Passes) -> String {
    let (name, _) = network(site);
    let name = if name == "social" { site } else { name };
    let e = super::html_escape;
    // The whole placeholder is the link: a frame may be small, and any click in it loads it.
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name} widget</title></head>\
         <body data-nostalk-placeholder=\"{name}\" style=\"margin:0;font:12px/1.35 system-ui,sans-serif\">\
         <a id=\"nostalk-load\" href=\"{link}\" style=\"display:block;box-sizing:border-box;min-height:100vh;\
         padding:.4em .6em;color:#333;background:#f7f7f7;border:1px solid #ccc;border-radius:6px;text-decoration:none\">\
         <span style=\"display:block;margin:0 0 .5em\">nostalk kept {name} from loading here, so it did not learn \
         you read this page.</span><span style=\"display:inline-block;padding:.3em .8em;border:1px solid #888;\
         border-radius:4px;background:#fff;color:#222\">Load this {name} widget</span></a></body></html>\n",
        name = e(name),
        link = e(&passes.link(url)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_surrogate_carries_no_pass_and_nothing_unescaped() {
        let url = "https://platform.twitter.com/widgets.js?x=</script><b>";
        let js = surrogate(url, "twitter.com");
        assert!(js.contains("\"network\":\"X (Twitter)\"") && js.contains("blockquote.twitter-tweet"), "{js}");
        assert!(!js.contains("</script>") && !js.contains("__NOSTALK_SOCIAL__"), "{js}");
        assert!(!js.contains("nostalk-pass"), "the page can read the surrogate's settings: {js}");
        assert!(js.contains("widgets.js?x=<\\/script><b>&nostalk-widget=1"), "{js}");
    }

    #[test]
    fn the_widget_button_links_to_its_frame_once() {
        let passes = Passes::default();
        let frame = "https://platform.twitter.com/widgets.js?nostalk-widget=1";
        let page = widget_button(frame, "twitter.com", &passes);
        assert!(page.contains("Load this X (Twitter) widget"), "{page}");
        let href = page.split("href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        assert_eq!(passes.redeem(&href), Some((frame.to_string(), true)));
    }

    #[test]
    fn the_frame_placeholder_links_to_its_frame_once() {
        let passes = Passes::default();
        let page = frame_placeholder("https://www.facebook.com/plugins/like.php?href=a&b=1", "facebook.com", &passes);
        assert!(page.contains("Load this Facebook widget"), "{page}");
        let href = page.split("href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        assert_eq!(passes.redeem(&href).map(|r| r.1), Some(true));
    }
}
