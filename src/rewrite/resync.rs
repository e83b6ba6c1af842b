//! Finding where HTML's tokenizer state is known again after lol_html gave up on a token too
//! big for its memory (a 3 MB attribute, say). lol_html hands back, raw, every byte from the
//! oversized token's first one; a new rewriter started anywhere inside that token would read
//! the rest of it as markup, and a `<!--` or `<textarea>` in an attribute's tail would make it
//! read the rest of the page as a comment or text, so that snippets, pixels and decorations
//! after it reached the browser. [`Resync`] follows the token the way the HTML tokenizer does
//! (its quotes, a comment's end, and the raw text a `<script>`, `<style>` or `<textarea>` start
//! tag opens) and says at which byte the data state begins again: the new rewriter starts
//! there. Written here because lol_html exposes no tokenizer state, and this is the few states
//! of the spec's tokenizer that a token's end depends on.

/// Where in the oversized token the scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the token's first byte.
    Start,
    /// After `<`.
    Open,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// Inside `<!-- ... -->`: the dashes just seen.
    Comment(u8),
    /// `<!DOCTYPE ...>`, `<?...>`, `</ ...>` oddities: until `>`.
    Bogus,
    /// A tag's name (its first bytes kept, for the raw text elements).
    Name,
    /// Between attributes, or in one's name.
    Attrs,
    /// After `=`.
    BeforeValue,
    Quoted(u8),
    Unquoted,
    /// Inside the raw text a start tag opened, until its end tag: bytes of `</name` matched.
    Raw(usize),
}

/// The elements whose content the tokenizer reads as text until their end tag.
const RAW: [&[u8]; 9] =
    [b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes", b"noscript"];

pub struct Resync {
    state: State,
    end_tag: bool,
    name: [u8; 8],
    name_len: usize,
    /// The raw text element the tag opened, when it is one.
    raw: Option<&'static [u8]>,
}

impl Default for Resync {
    fn default() -> Self {
        Resync { state: State::Start, end_tag: false, name: [0; 8], name_len: 0, raw: None }
    }
}

impl Resync {
    /// Follow `bytes`, which continue the oversized token. Some(n): the data state begins at
    /// `bytes[n]`; None: the token goes on past `bytes`.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.step(b) {
                return Some(i + 1);
            }
            // Not a token after all (text that lol_html held): the data state is here.
            if self.state == State::Start {
                return Some(i);
            }
        }
        None
    }

    /// One byte; true when it ended the token (and any raw text it opened).
    fn step(&mut self, b: u8) -> bool {
        use State::*;
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
        self.state = match self.state {
            Start if b == b'<' => Open,
            Start => return false,
            Open => match b {
                b'!' => Bang,
                b'/' => {
                    self.end_tag = true;
                    Name
                }
                b'?' => Bogus,
                c if c.is_ascii_alphabetic() => {
                    self.push_name(c);
                    Name
                }
                // `<` followed by anything else is text.
                _ => return true,
            },
            Bang if b == b'-' => BangDash,
            Bang => Bogus,
            BangDash if b == b'-' => Comment(0),
            BangDash => Bogus,
            Comment(dashes) => match b {
                b'-' => Comment(dashes.saturating_add(1)),
                b'>' if dashes >= 2 => return true,
                _ => Comment(0),
            },
            Bogus if b == b'>' => return true,
            Bogus => Bogus,
            Name if b == b'>' => return self.tag_ends(),
            Name if space || b == b'/' => Attrs,
            Name => {
                self.push_name(b);
                Name
            }
            Attrs => match b {
                b'>' => return self.tag_ends(),
                b'=' => BeforeValue,
                _ => Attrs,
            },
            BeforeValue => match b {
                b'"' | b'\'' => Quoted(b),
                b'>' => return self.tag_ends(),
                _ if space => BeforeValue,
                _ => Unquoted,
            },
            Quoted(q) if b == q => Attrs,
            Quoted(q) => Quoted(q),
            Unquoted if b == b'>' => return self.tag_ends(),
            Unquoted if space => Attrs,
            Unquoted => Unquoted,
            Raw(matched) => return self.raw_text(matched, b),
        };
        false
    }

    fn push_name(&mut self, c: u8) {
        if self.name_len < self.name.len() {
            self.name[self.name_len] = c.to_ascii_lowercase();
        }
        self.name_len += 1;
    }

    /// A tag's `>`: the token ends, unless it opened raw text.
    fn tag_ends(&mut self) -> bool {
        let name = &self.name[..self.name_len.min(self.name.len())];
        self.raw = if self.end_tag || self.name_len > self.name.len() {
            None
        } else {
            RAW.iter().copied().find(|r| *r == name)
        };
        match self.raw {
            Some(_) => {
                self.state = State::Raw(0);
                false
            }
            None => true,
        }
    }

    /// Inside raw text: `matched` bytes of `</name` seen; the end tag ends at its `>`.
    fn raw_text(&mut self, matched: usize, b: u8) -> bool {
        let name = self.raw.unwrap_or(b"");
        let want = 2 + name.len();
        self.state = if matched == want {
            // `</name` seen: a space, `/` or `>` makes it the end tag.
            match b {
                b'>' => return true,
                b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'/' => {
                    self.end_tag = true;
                    self.raw = None;
                    State::Attrs
                }
                _ => State::Raw(usize::from(b == b'<')),
            }
        } else {
            let expected = match matched {
                0 => b'<',
                1 => b'/',
                n => name[n - 2],
            };
            if b.to_ascii_lowercase() == expected {
                State::Raw(matched + 1)
            } else {
                State::Raw(usize::from(b == b'<'))
            }
        };
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the data state begins after the token at the start of `html`.
    fn end(html: &str) -> Option<usize> {
        Resync::default().scan(html.as_bytes())
    }

    #[test]
    fn a_tags_end_is_found_past_quotes_that_hold_markup() {
        let html = r#"<div title="a <!-- b > <textarea> c" data-x='d "> e' f=g>after"#;
        assert_eq!(&html[end(html).unwrap()..], "after");
        assert_eq!(&"<img src=x alt=y>rest"[end("<img src=x alt=y>rest").unwrap()..], "rest");
        assert_eq!(&"</p >rest"[end("</p >rest").unwrap()..], "rest");
    }

    #[test]
    fn a_comment_ends_at_its_own_end_and_raw_text_at_its_end_tag() {
        let html = "<!-- a > b -- > c -->after";
        assert_eq!(&html[end(html).unwrap()..], "after");
        let html = "<textarea title=\"x\"><script>alert(1)</script></textareax></textarea >after";
        assert_eq!(&html[end(html).unwrap()..], "after");
        let html = "<SCRIPT>if (a </b) {} </script>after";
        assert_eq!(&html[end(html).unwrap()..], "after");
        let html = "<!doctype html>after";
        assert_eq!(&html[end(html).unwrap()..], "after");
    }

    #[test]
    fn the_end_is_found_across_chunks_and_text_is_data_at_once() {
        let mut r = Resync::default();
        assert_eq!(r.scan(b"<div title=\"aaaa"), None);
        assert_eq!(r.scan(b"aa>aa\">bbb"), Some(7), "a `>` inside quotes ends nothing");
        assert_eq!(end("plain text"), Some(0));
        assert_eq!(end("< not a tag"), Some(2));
    }
}
