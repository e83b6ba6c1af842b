//! The typed values a config file holds besides plain numbers and strings: durations written
//! as "10s" or "24h" ([`Dur`]), and every choice among fixed words as an enum ([`LogFormat`],
//! [`AdMode`], [`SocialMode`], [`OutputEncoding`], [`ListVerdict`], [`PacFallback`]). serde reads and checks
//! them while the file is parsed, so a wrong word or duration is reported by `check` with its
//! key and line like any other error, and nothing later re-matches a string with a fallback.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration, written in the file as humantime reads it ("500ms", "10s", "24h").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// Parse "10s", "24h", "500ms".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like \"10s\" or \"24h\": {e}"))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// `[server] log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// `[policy] ads`: what to do with ads as a whole: forward them de-identified (`ad`, the
/// default), block them, or allow them with only ordinary hygiene.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdMode {
    Block,
    #[default]
    Ad,
    Allow,
}

/// `[policy] social`: what to do with social widgets (config/lists/social.txt): put a
/// placeholder the person can click to load that one widget (`click`, the default), block
/// them outright, or leave them to the other lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocialMode {
    #[default]
    Click,
    Block,
    Allow,
}

/// `[rewrite] encoding`: how a rewritten page goes to the browser. `auto` gzips it for
/// clients on other machines and sends identity to loopback; never an encoding the client did
/// not ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputEncoding {
    #[default]
    Auto,
    Identity,
    Gzip,
}

/// `[[lists]] verdict`: what a match in the list decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListVerdict {
    #[default]
    Block,
    Ad,
}

/// `[server] pac_fallback`: fail closed (`none`, the default: no proxy, no web, and the person
/// notices) or go direct (`direct`: the web keeps working, unprotected, without a word).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacFallback {
    #[default]
    None,
    Direct,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        d: Dur,
        a: AdMode,
    }

    #[test]
    fn durations_and_words_are_read_and_refused() {
        let t: T = toml::from_str("d = \"90s\"\na = \"block\"\n").unwrap();
        assert_eq!((t.d.get(), t.a), (Duration::from_secs(90), AdMode::Block));
        let e = toml::from_str::<T>("d = \"soon\"\na = \"ad\"\n").err().unwrap();
        assert!(e.message().contains("not a duration"), "{e}");
        let e = toml::from_str::<T>("d = \"1s\"\na = \"sometimes\"\n").err().unwrap();
        assert!(e.message().contains("sometimes"), "{e}");
    }
}
