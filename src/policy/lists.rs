//! The lists a policy is built from: our embedded lists (config/lists/, compiled in), lists
//! from files, and subscriptions. Network lists are ABP/uBO syntax and go to the adblock
//! engines; the three data lists (tracking parameters, tracking cookies, inline-script
//! signatures) use a one-entry-per-line format of our own, read here, because no filter syntax
//! covers them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Surveillance rules: a match is `block`.
    Block,
    /// Ad-serving rules: a match is `ad` (or what the ad mode says).
    Ad,
    /// Tagged ad-category rules (`$tag=political`), in force only for blocked categories.
    Categories,
    /// Social widgets (`config/lists/social.txt`): a match is `block` with the category
    /// social, checked before the other engines, and in force unless `[policy] social = "allow"`.
    Social,
    /// Redirectors whose destination is in the URL (`$urlskip`, policy/bounce.rs).
    Bounce,
    Params,
    Cookies,
    Inline,
}

impl ListKind {
    pub fn from_verdict(v: crate::config::ListVerdict) -> ListKind {
        match v {
            crate::config::ListVerdict::Ad => ListKind::Ad,
            crate::config::ListVerdict::Block => ListKind::Block,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Block => "block",
            ListKind::Ad => "ad",
            ListKind::Categories => "categories",
            ListKind::Social => "social",
            ListKind::Bounce => "bounce",
            ListKind::Params => "params",
            ListKind::Cookies => "cookies",
            ListKind::Inline => "inline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Embedded,
    Path(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct ListSource {
    pub name: String,
    pub kind: ListKind,
    pub text: Arc<str>,
    pub origin: Origin,
    pub rule_count: usize,
}

/// What `nostalk lists` and the status page show of a list.
#[derive(Debug, Clone)]
pub struct ListSummary {
    pub name: String,
    pub kind: ListKind,
    pub origin: Origin,
    pub rules: usize,
}

impl ListSource {
    pub fn new(name: &str, kind: ListKind, text: impl Into<Arc<str>>, origin: Origin) -> ListSource {
        let text = text.into();
        let rule_count = count_rules(&text);
        ListSource { name: name.to_string(), kind, text, origin, rule_count }
    }
    /// The same list with its text dropped (kept on disk by its owner), its rule count kept.
    pub fn without_text(self) -> ListSource {
        ListSource { text: Arc::from(""), ..self }
    }

    pub fn summary(&self) -> ListSummary {
        ListSummary { name: self.name.clone(), kind: self.kind, origin: self.origin.clone(), rules: self.rule_count }
    }
}

/// Rules in a list: lines that are not blank, comments (`!`, `#` alone) or the `[Adblock]` header.
pub fn count_rules(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| !(l.is_empty() || l.starts_with('!') || l.starts_with('[') || l.starts_with("# ") || *l == "#"))
        .count()
}

macro_rules! embedded_list {
    ($name:literal, $kind:expr) => {
        ListSource::new(
            concat!("nostalk-", $name),
            $kind,
            include_str!(concat!("../../config/lists/", $name, ".txt")),
            Origin::Embedded,
        )
    };
}

/// Our own lists, compiled in.
pub fn embedded() -> Vec<ListSource> {
    vec![
        embedded_list!("surveillance", ListKind::Block),
        embedded_list!("ads", ListKind::Ad),
        embedded_list!("categories", ListKind::Categories),
        embedded_list!("social", ListKind::Social),
        embedded_list!("bounce", ListKind::Bounce),
        embedded_list!("params", ListKind::Params),
        embedded_list!("cookies", ListKind::Cookies),
        embedded_list!("inline", ListKind::Inline),
    ]
}

/// The rules of `text` whose `$tag=NAME` names one of `tags`, with the tag option taken off so
/// they are always in force; untagged lines (comments, headers) pass as they are.
pub fn select_tagged(text: &str, tags: &[String]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Some((rule, opts)) = line.rsplit_once('$') else {
            if line.trim_start().starts_with('!') || line.trim_start().starts_with('[') {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        let mut keep = false;
        let rest: Vec<&str> = opts
            .split(',')
            .filter(|o| match o.trim().strip_prefix("tag=") {
                Some(t) => {
                    keep |= tags.iter().any(|x| x.eq_ignore_ascii_case(t));
                    false
                }
                None => true,
            })
            .collect();
        if keep {
            out.push_str(rule);
            if !rest.is_empty() {
                out.push('$');
                out.push_str(&rest.join(","));
            }
            out.push('\n');
        }
    }
    out
}

/// A name, or a prefix when it ends in `*`, with the flags `$ad` (only on ad requests) and
/// `$shopping` (let through while the site is in shopping mode).
#[derive(Debug, Clone)]
struct NameRule {
    name: String,
    prefix: bool,
    ad_only: bool,
    shopping: bool,
}

fn parse_name_rules(text: &str, lowercase: bool) -> impl Iterator<Item = NameRule> + '_ {
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('!') || line.starts_with('#') {
            return None;
        }
        let (name, flags) = line.split_once('$').unwrap_or((line, ""));
        let name = name.trim();
        let (name, prefix) = match name.strip_suffix('*') {
            Some(n) => (n, true),
            None => (name, false),
        };
        let name = if lowercase { name.to_ascii_lowercase() } else { name.to_string() };
        Some(NameRule {
            name,
            prefix,
            ad_only: flags.split(',').any(|f| f.trim() == "ad"),
            shopping: flags.split(',').any(|f| f.trim() == "shopping"),
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// Remove it.
    Strip,
    /// Remove it, unless the site is in shopping mode.
    StripUnlessShopping,
    /// Not ours to touch.
    Keep,
}

#[derive(Debug, Default, Clone)]
struct NameSet {
    exact: std::collections::HashMap<String, (bool, bool)>,
    prefixes: Vec<NameRule>,
}

impl NameSet {
    fn extend(&mut self, rules: impl Iterator<Item = NameRule>) {
        for r in rules {
            if r.prefix {
                self.prefixes.push(r);
            } else {
                self.exact.insert(r.name.clone(), (r.ad_only, r.shopping));
            }
        }
    }
    fn check(&self, name: &str, is_ad: bool) -> NameMatch {
        let judge = |ad_only: bool, shopping: bool| {
            if ad_only && !is_ad {
                NameMatch::Keep
            } else if shopping {
                NameMatch::StripUnlessShopping
            } else {
                NameMatch::Strip
            }
        };
        if let Some(&(ad_only, shopping)) = self.exact.get(name) {
            return judge(ad_only, shopping);
        }
        for p in &self.prefixes {
            if name.starts_with(p.name.as_str()) {
                return judge(p.ad_only, p.shopping);
            }
        }
        NameMatch::Keep
    }
    fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len()
    }
}

/// Tracking query parameters (config/lists/params.txt). Names compare case-insensitively.
#[derive(Debug, Default, Clone)]
pub struct ParamList(NameSet);

impl ParamList {
    pub fn extend_from(&mut self, text: &str) {
        self.0.extend(parse_name_rules(text, true));
    }
    pub fn check(&self, name: &str, is_ad: bool) -> NameMatch {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.0.check(&name.to_ascii_lowercase(), is_ad)
        } else {
            self.0.check(name, is_ad)
        }
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// Tracking cookie names (config/lists/cookies.txt), removed even first-party. Case-sensitive,
/// as cookie names are.
#[derive(Debug, Default, Clone)]
pub struct CookieList(NameSet);

impl CookieList {
    pub fn extend_from(&mut self, text: &str) {
        self.0.extend(parse_name_rules(text, false));
    }
    pub fn check(&self, name: &str) -> NameMatch {
        self.0.check(name, false)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// Signatures of inline surveillance snippets (config/lists/inline.txt): `family | text`.
/// Matched with one Aho-Corasick automaton over all of them.
#[derive(Debug, Default, Clone)]
pub struct InlineSignatures {
    entries: Vec<(Arc<str>, String)>,
    automaton: Option<aho_corasick::AhoCorasick>,
    /// Globals a tracker's snippet may define (`defines | NAME` lines): a script that
    /// declares anything else holds the page's own code too.
    globals: HashSet<String>,
}

impl InlineSignatures {
    pub fn extend_from(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('!') || line.starts_with('#') {
                continue;
            }
            match line.split_once(" | ") {
                Some(("defines", names)) => self.globals.extend(names.split_whitespace().map(str::to_string)),
                Some((family, sig)) => self.entries.push((Arc::from(family.trim()), sig.trim().to_string())),
                None => {}
            }
        }
        // A DFA: a few dozen signatures, matched against every inline script of every page.
        // Leftmost-first matching lets aho-corasick search with its SIMD prefilter (Teddy),
        // which the standard match kind cannot use: 4x faster on the inline scripts of the
        // real pages in ../shared/data/pages (1.25 against 5.3 ms for their 3.4 MB).
        self.automaton = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(self.entries.iter().map(|(_, s)| s.as_str()))
            .ok();
    }

    /// The family and signature of the first signature found in `script`.
    pub fn find(&self, script: &str) -> Option<(Arc<str>, &str)> {
        let m = self.automaton.as_ref()?.find(script)?;
        let (family, sig) = &self.entries[m.pattern().as_usize()];
        Some((family.clone(), sig.as_str()))
    }

    /// Whether `script` is a tracker's snippet and nothing else: every name it declares at
    /// its top level is a tracker's global. A script that also defines the page's own
    /// functions or variables (a font loader beside the analytics snippet) is not one, and is
    /// kept whole: its tracker calls reach only what the network side blocks or stubs.
    pub fn is_only_tracking(&self, script: &str) -> bool {
        top_level_names(script).iter().all(|n| self.globals.contains(*n))
    }

    pub fn families(&self) -> std::collections::BTreeSet<&str> {
        self.entries.iter().map(|(f, _)| &**f).collect()
    }
}

/// The names a script declares at its top level: `function NAME`, `var`/`let`/`const` NAME
/// (each of a comma-separated list), `window.NAME =`. A lexical scan, not a parser (no crate
/// gives this without parsing the whole language, and a script is read on every page): strings,
/// template literals and comments are skipped, and anything inside brackets of any kind is
/// not at the top level.
pub fn top_level_names(script: &str) -> Vec<&str> {
    let b = script.as_bytes();
    let word_at = |i: usize| word_end(b, i);
    let skip_space = |i: usize| space_end(b, i);
    let (mut names, mut depth, mut in_decl, mut i) = (Vec::new(), 0usize, false, 0usize);
    while i < b.len() {
        if let Some(after) = skip_literal(script, i) {
            i = after;
            continue;
        }
        let c = b[i];
        match c {
            b'{' | b'(' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b';' if depth == 0 => {
                in_decl = false;
                i += 1;
            }
            b',' if depth == 0 && in_decl => {
                let s = skip_space(i + 1);
                let e = word_at(s);
                if e > s && ident_start(b[s]) {
                    names.push(&script[s..e]);
                }
                i = e.max(i + 1);
            }
            c if ident_start(c) && (i == 0 || !(ident(b[i - 1]) || b[i - 1] == b'.')) => {
                let e = word_at(i);
                let word = &script[i..e];
                i = e;
                if depth > 0 {
                    continue;
                }
                match word {
                    "function" | "var" | "let" | "const" | "class" => {
                        in_decl = matches!(word, "var" | "let" | "const");
                        let s = skip_space(i);
                        let s = if b.get(s) == Some(&b'*') { skip_space(s + 1) } else { s };
                        let e = word_at(s);
                        if e > s && ident_start(b[s]) {
                            names.push(&script[s..e]);
                            i = e;
                        }
                    }
                    "window" if b.get(i) == Some(&b'.') => {
                        let s = i + 1;
                        let e = word_at(s);
                        let after = skip_space(e);
                        if e > s && b.get(after) == Some(&b'=') && b.get(after + 1) != Some(&b'=') {
                            names.push(&script[s..e]);
                        }
                        i = e;
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$'
}

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Where the identifier starting at `i` ends.
fn word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && ident(b[i]) {
        i += 1;
    }
    i
}

/// Where the white space starting at `i` ends.
fn space_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// When a string, template or comment starts at `i`: where it ends.
fn skip_literal(script: &str, mut i: usize) -> Option<usize> {
    let b = script.as_bytes();
    match b[i] {
        c @ (b'\'' | b'"' | b'`') => {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            Some(i + 1)
        }
        b'/' if b.get(i + 1) == Some(&b'/') => {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Some(i)
        }
        b'/' if b.get(i + 1) == Some(&b'*') => Some(script[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2)),
        _ => None,
    }
}

/// A list file's text, refused unread when it is larger than `max` bytes (`[policy]
/// max_list_mb`): a list is parsed whole, and a file of hundreds of megabytes would take
/// gigabytes to parse.
pub fn read_capped(path: &std::path::Path, max: usize) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let too_big = |len: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is {} MB, larger than [policy] max_list_mb = {} (raise it if this list is meant)",
                len.div_ceil(1024 * 1024),
                max / (1024 * 1024)
            ),
        )
    };
    if len > max as u64 {
        return Err(too_big(len));
    }
    let mut text = String::with_capacity(len as usize);
    // A file that grows while it is read is still stopped at the cap.
    f.take(max as u64 + 1).read_to_string(&mut text)?;
    if text.len() > max {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}
