//! Decisions on representative requests with the embedded lists and user settings.

use super::*;
use crate::config::Config;

/// Request or response headers from (name, value) pairs, for unit tests.
pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut m = http::HeaderMap::new();
    for (k, v) in pairs {
        // Constant test header values, all visible ASCII.
        m.insert(*k, v.parse().unwrap());
    }
    m
}

fn policy_with(edit: impl FnOnce(&mut Config)) -> Policy {
    let mut cfg = Config::default();
    edit(&mut cfg);
    Policy::build(&cfg, &[]).unwrap()
}

fn ex(p: &Policy, url: &str, page: Option<&str>, t: &str) -> Explanation {
    explain(p, url, page, Some(t), &Default::default()).unwrap()
}

#[test]
fn trackers_are_blocked_with_rule_and_list() {
    let p = policy_with(|_| {});
    let e = ex(&p, "https://www.google-analytics.com/g/collect?v=2&tid=G-1", Some("https://news.example/"), "ping");
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(e.list.as_deref(), Some("nostalk-surveillance"));
    assert!(e.rule.as_deref().unwrap().contains("google-analytics.com"), "{:?}", e.rule);
    assert_eq!(e.party, "third");
    assert_eq!(e.site, "google-analytics.com");
    for url in [
        "https://connect.facebook.net/en_US/fbevents.js",
        "https://static.hotjar.com/c/hotjar-123.js?sv=6",
        "https://cdn.segment.com/analytics.js/v1/k/analytics.min.js",
        "https://www.clarity.ms/tag/abc",
        "https://bat.bing.com/bat.js",
        "https://sb.scorecardresearch.com/beacon.js",
    ] {
        assert_eq!(ex(&p, url, Some("https://news.example/"), "script").decision, Verdict::Block, "{url}");
    }
}

#[test]
fn ad_servers_are_ads_and_ordinary_resources_are_allowed() {
    let p = policy_with(|_| {});
    let e = ex(&p, "https://securepubads.g.doubleclick.net/tag/js/gpt.js", Some("https://news.example/"), "script");
    assert_eq!(e.decision, Verdict::Ad);
    assert_eq!(e.list.as_deref(), Some("nostalk-ads"));
    let e = ex(&p, "https://cdn.jsdelivr.net/npm/jquery@3/dist/jquery.min.js", Some("https://news.example/"), "script");
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.rule, None);
    let e = ex(&p, "https://fonts.gstatic.com/s/roboto/v30/x.woff2", Some("https://news.example/"), "font");
    assert_eq!(e.decision, Verdict::Allow);
    // The ad company's sync endpoint is surveillance, though its ad server is an ad.
    let e = ex(&p, "https://cm.g.doubleclick.net/pixel?google_nid=x", Some("https://news.example/"), "image");
    assert_eq!(e.decision, Verdict::Block);
}

#[test]
fn third_party_only_rules_leave_the_vendor_site_alone() {
    let p = policy_with(|_| {});
    assert_eq!(ex(&p, "https://www.hotjar.com/pricing", None, "document").decision, Verdict::Allow);
    assert_eq!(
        ex(&p, "https://script.hotjar.com/modules.js", Some("https://shop.example/"), "script").decision,
        Verdict::Block
    );
}

#[test]
fn ad_mode_changes_what_an_ad_becomes() {
    let url = "https://ib.adnxs.com/ut/v3/prebid";
    let page = Some("https://news.example/");
    assert_eq!(
        ex(&policy_with(|c| c.policy.ads = AdMode::Block), url, page, "xmlhttprequest").decision,
        Verdict::Block
    );
    assert_eq!(
        ex(&policy_with(|c| c.policy.ads = AdMode::Allow), url, page, "xmlhttprequest").decision,
        Verdict::Allow
    );
    assert_eq!(ex(&policy_with(|_| {}), url, page, "xmlhttprequest").decision, Verdict::Ad);
}

#[test]
fn trusted_sites_are_excepted() {
    let p = policy_with(|c| c.policy.trusted_sites = vec!["bank.example".into()]);
    let e = ex(&p, "https://www.google-analytics.com/analytics.js", Some("https://www.bank.example/"), "script");
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.rule.as_deref(), Some("trusted site"));
    assert_eq!(e.list.as_deref(), Some("config"));
}

#[test]
fn blocked_categories_turn_their_ads_into_blocks() {
    let url = "https://ads.example/ads/political/banner.png";
    let page = Some("https://news.example/");
    assert_ne!(ex(&policy_with(|_| {}), url, page, "image").decision, Verdict::Block);
    let p = policy_with(|c| c.policy.blocked_ad_categories = vec!["political".into()]);
    let e = ex(&p, url, page, "image");
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(e.list.as_deref(), Some("nostalk-categories"));
}

#[test]
fn decisions_from_the_cache_equal_fresh_ones() {
    let p = policy_with(|_| {});
    let info = RequestInfo {
        url: "https://www.googletagmanager.com/gtm.js?id=GTM-1",
        host: "www.googletagmanager.com",
        page_host: Some("news.example"),
        request_type: RequestType::Script,
        method: "GET",
    };
    let first = p.decide(&info);
    let second = p.decide(&info);
    assert_eq!(first, second);
    assert_eq!(first, p.decide_uncached(&info));
    // Same URL from another page is a different key, decided afresh.
    let other = RequestInfo { page_host: Some("googletagmanager.com"), ..info.clone() };
    assert_eq!(p.decide(&other).verdict, Verdict::Block);
}

#[test]
fn embedded_lists_meet_their_size() {
    let p = policy_with(|_| {});
    let (block, ad) = p.rule_counts();
    assert!(block >= 300, "surveillance + categories rules: {block}");
    assert!(ad >= 150, "ad rules: {ad}");
    assert!(p.inline.families().len() >= 10);
    assert!(!p.params.is_empty() && !p.cookies.is_empty());
}

#[test]
fn embedded_lists_can_be_turned_off() {
    let p = policy_with(|c| c.policy.embedded_lists = false);
    assert_eq!(
        ex(&p, "https://www.google-analytics.com/analytics.js", Some("https://a.example/"), "script").decision,
        Verdict::Allow
    );
}

#[test]
fn a_url_in_raw_unicode_is_decided_as_its_ascii_form_and_never_panics() {
    let policy = Policy::build(&Config::embedded(), &[]).unwrap();
    // Found by the `decide` fuzz target: a host with a non-ASCII character made the filter
    // engine slice inside a character.
    let crash = "https://www.google-analytics.co\u{0}\u{0}j google-anal\u{618}google-analytics.com.e://x";
    let _ = policy.blocks_url(crash, "news.example", RequestType::Image, &Default::default());
    let _ = crate::policy::explain(&policy, crash, Some("https://news.example/"), None, &Default::default());
    // A tracker written with a Unicode host is decided by its punycode form like any other.
    let d = policy.blocks_url(
        "https://www.google-analytics.com/ça/collect?v=1",
        "news.example",
        RequestType::Image,
        &Default::default(),
    );
    assert!(d.is_some(), "still blocked with a non-ASCII path");
    let e = crate::policy::explain(
        &policy,
        "https://bücher.example/",
        Some("https://news.example/"),
        None,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(e.decision, Verdict::Allow);
}

#[test]
fn an_engine_built_from_a_list_file_is_cached_and_read_back_with_its_rules_and_lists_named() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("mine.txt");
    std::fs::write(&list, "||tracker-one.example^\n||tracker-two.example/pixel\n").unwrap();
    let cache = dir.path().join("cache");
    let cfg = Config::parse(&format!(
        "[policy]\nlist_cache_dir = {:?}\n[[lists]]\nname = \"mine\"\npath = {:?}\nverdict = \"block\"\n",
        cache.display().to_string(),
        list.display().to_string()
    ))
    .unwrap();
    let cached = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let check = |p: &Policy| {
        let e = ex(p, "https://tracker-two.example/pixel?u=1", Some("https://news.example/"), "image");
        assert_eq!(e.decision, Verdict::Block);
        assert_eq!((e.rule.as_deref(), e.list.as_deref()), (Some("||tracker-two.example/pixel"), Some("mine")));
        // The embedded lists are in the same engine, after the file's list.
        let e = ex(p, "https://www.google-analytics.com/g/collect", Some("https://news.example/"), "ping");
        assert_eq!(e.list.as_deref(), Some("nostalk-surveillance"));
    };
    check(&Policy::build(&cfg, &[]).unwrap());
    let files = cached();
    assert_eq!(files.len(), 1, "one engine cached (the ad class holds embedded lists only): {files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("engine-block-"));

    // Read back: the same decisions, the same file.
    check(&Policy::build(&cfg, &[]).unwrap());
    assert_eq!(cached(), files);

    // A damaged file is not trusted: the engine is built again and the file rewritten.
    std::fs::write(&files[0], b"not an engine").unwrap();
    check(&Policy::build(&cfg, &[]).unwrap());
    assert!(std::fs::read(&files[0]).unwrap().len() > 100);

    // A changed list is another engine; the old file goes.
    std::fs::write(&list, "||tracker-two.example/pixel\n").unwrap();
    check(&Policy::build(&cfg, &[]).unwrap());
    let now = cached();
    assert_eq!(now.len(), 1);
    assert_ne!(now, files);
}

#[test]
fn the_names_a_script_declares_at_its_top_level_tell_a_bare_snippet_from_page_code() {
    let ga = "(function(i,s,o,g,r,a,m){i['GoogleAnalyticsObject']=r;i[r]=i[r]||function(){(i[r].q=i[r].q||[]).push(arguments)}})(window,document,'script','//www.google-analytics.com/analytics.js','ga'); ga('create', 'UA-1', 'auto');";
    assert!(lists::top_level_names(ga).is_empty());
    let gtag = "window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date());";
    assert_eq!(lists::top_level_names(gtag), ["dataLayer", "gtag"]);
    let mixed = "var a = 1, b = f(1, 2), c; /* var no */ 'var no2'; function load(u) { var inner = u; } let x = `{`; window.y == 2; window.z = 3;";
    assert_eq!(lists::top_level_names(mixed), ["a", "b", "c", "load", "x", "z"]);
    let p = policy_with(|_| {});
    assert!(p.inline.is_only_tracking(ga) && p.inline.is_only_tracking(gtag));
    assert!(!p.inline.is_only_tracking(&format!("{gtag} function loadFonts() {{}}")));
}

/// A policy of the embedded lists plus one block list of `rules`.
fn policy_with_block_list(rules: &str) -> Policy {
    let mut cfg = Config::default();
    cfg.policy.default_subscriptions = false;
    let extra = ListSource::new("test-block", ListKind::Block, rules, lists::Origin::Embedded);
    Policy::build(&cfg, &[extra]).unwrap()
}

#[test]
fn a_navigation_is_blocked_only_by_a_rule_that_names_documents() {
    let p = policy_with_block_list("||tracker.example^\n||strict.example^$document\n");
    // A tracker's host, as a page of its own: loaded (kept unlinkable), its rule named.
    let nav = ex(&p, "https://tracker.example/login?next=/", None, "document");
    assert_eq!((nav.decision, nav.rule.as_deref()), (Verdict::Allow, Some("||tracker.example^")));
    assert_eq!(
        ex(&p, "https://tracker.example/p.gif", Some("https://news.example/"), "image").decision,
        Verdict::Block
    );
    // The same for a subscribed list's or our own host rules.
    assert_eq!(ex(&p, "https://www.google-analytics.com/", None, "document").decision, Verdict::Allow);
    // A rule that says `$document` blocks the navigation, and names itself.
    let strict = ex(&p, "https://strict.example/", None, "document");
    assert_eq!((strict.decision, strict.rule.as_deref()), (Verdict::Block, Some("||strict.example^$document")));
    assert!(names_document("||x.example^$document") && names_document("||x.example^$script,doc"));
    assert!(!names_document("||x.example^$third-party") && !names_document("||x.example^"));
    assert!(!names_document("||x.example^$~document"));
}

#[test]
fn social_widgets_are_their_own_category_and_follow_the_social_setting() {
    let page = Some("https://news.example/story");
    let p = policy_with(|c| c.policy.default_subscriptions = false);
    for (url, t) in [
        ("https://platform.twitter.com/widgets.js", "script"),
        ("https://connect.facebook.net/en_US/sdk.js", "script"),
        ("https://www.facebook.com/plugins/like.php?href=https%3A%2F%2Fnews.example", "sub_frame"),
        ("https://platform.linkedin.com/in.js", "script"),
        ("https://newsdesk.disqus.com/embed.js", "script"),
    ] {
        let info_host = site::host_of_url(url).unwrap().to_string();
        let info = RequestInfo {
            url,
            host: &info_host,
            page_host: Some("news.example"),
            request_type: RequestType::parse(t).unwrap(),
            method: "GET",
        };
        let d = p.decide_uncached(&info);
        assert!(d.is_social() && d.verdict == Verdict::Block, "{url}: {d:?}");
        assert_eq!(d.list(), Some("nostalk-social"));
    }
    // The pixel on the same host stays a surveillance rule; the network's own site works.
    let pixel = ex(&p, "https://connect.facebook.net/en_US/fbevents.js", page, "script");
    assert_eq!(pixel.list.as_deref(), Some("nostalk-surveillance"));
    assert_eq!(
        ex(&p, "https://platform.twitter.com/widgets.js", Some("https://twitter.com/home"), "script").decision,
        Verdict::Allow
    );
    // "allow" leaves widgets to the other lists.
    let p = policy_with(|c| {
        c.policy.default_subscriptions = false;
        c.policy.social = SocialMode::Allow;
    });
    assert_eq!(ex(&p, "https://platform.twitter.com/widgets.js", page, "script").decision, Verdict::Allow);
}

#[test]
fn a_navigation_to_a_redirector_is_sent_to_its_destination() {
    let p = policy_with(|c| c.policy.default_subscriptions = false);
    let url = "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2Fitem%3Fid%3D3&h=AT1";
    let host = "l.facebook.com";
    let info = RequestInfo { url, host, page_host: None, request_type: RequestType::Document, method: "GET" };
    let d = p.decide_uncached(&info);
    let Reason::Bounce { matched, to } = &d.reason else { panic!("{d:?}") };
    assert_eq!((&**to, &*matched.list), ("https://shop.example/item?id=3", "nostalk-bounce"));
    assert_eq!(d.verdict, Verdict::Block);
    // Only navigations: the same URL fetched by a page is decided as usual.
    let fetch = RequestInfo { request_type: RequestType::XmlHttpRequest, page_host: Some("news.example"), ..info };
    assert!(!matches!(p.decide_uncached(&fetch).reason, Reason::Bounce { .. }));
}

#[test]
fn a_navigation_to_a_listed_host_loads_kept_unlinkable() {
    let p = policy_with(|c| c.policy.default_subscriptions = false);
    let url = "https://www.google-analytics.com/optout";
    let host = "www.google-analytics.com";
    let info = RequestInfo { url, host, page_host: None, request_type: RequestType::Document, method: "GET" };
    let d = p.decide_uncached(&info);
    assert_eq!(d.verdict, Verdict::Allow, "a navigation is blocked only by a $document rule");
    assert!(d.is_unlinkable(), "{d:?}");
    assert_eq!(d.list(), Some("nostalk-surveillance"));
    // An ordinary site's page is no bounce.
    let page = RequestInfo { url: "https://news.example/", host: "news.example", ..info };
    assert!(!p.decide_uncached(&page).is_unlinkable());
}
