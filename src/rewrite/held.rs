//! Holding an element's text until its end. lol_html hands a `<script>`'s or `<noscript>`'s
//! text in chunks; a decision on the whole (is it a tracker's snippet? which pixels does it
//! load?) needs all of it. [`Held`] takes each chunk out of the output and keeps it, up to
//! `MAX_SNIPPET`; at the last chunk it hands the whole text over, and the caller puts back what
//! it makes of it. Text that outgrows the limit is an application, not a snippet: what was held
//! goes back where it was and the rest passes untouched.

use lol_html::html_content::{ContentType, TextChunk};

/// Text longer than this is not held: an inline script this long is an application, not a
/// tracker's loader snippet.
pub const MAX_SNIPPET: usize = 16 * 1024;

/// One element's text, held (for the element being read; reset at each new element).
#[derive(Default)]
pub struct Held {
    buf: String,
    passthrough: bool,
}

/// What to do with a chunk after [`Held::hold`].
pub enum Step {
    /// Leave the chunk as it is.
    Pass,
    /// The chunk was taken out and held; more text follows.
    Wait,
    /// The element's whole text: replace the last chunk with what the caller makes of it.
    Whole(String),
}

impl Held {
    /// Start on a new element.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.passthrough = false;
    }

    /// Whether nothing of this element's text is held (the chunk at hand is its first).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the text outgrew the limit and is passing untouched.
    pub fn passing(&self) -> bool {
        self.passthrough
    }

    /// Hold one chunk.
    pub fn hold(&mut self, chunk: &mut TextChunk) -> Step {
        if self.passthrough {
            return Step::Pass;
        }
        self.buf.push_str(chunk.as_str());
        if self.buf.len() > MAX_SNIPPET {
            let held = std::mem::take(&mut self.buf);
            chunk.replace(&held, ContentType::Html);
            self.passthrough = true;
            return Step::Pass;
        }
        if !chunk.last_in_text_node() {
            chunk.remove();
            return Step::Wait;
        }
        Step::Whole(std::mem::take(&mut self.buf))
    }
}
