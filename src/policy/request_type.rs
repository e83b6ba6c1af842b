//! The request type (ABP/uBO's `script`, `image`, ...) of a request, read from what the browser
//! says: `Sec-Fetch-Dest` first, then `Accept`, then the path's extension.

use http::header::HeaderName;
use http::HeaderMap;

// Named once: a lookup by `&str` parses and hashes the name again on every request.
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
const PING_TO: HeaderName = HeaderName::from_static("ping-to");
const PING_FROM: HeaderName = HeaderName::from_static("ping-from");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    Document,
    SubFrame,
    Script,
    Image,
    Stylesheet,
    XmlHttpRequest,
    Ping,
    Media,
    Font,
    Websocket,
    Other,
}

impl RequestType {
    pub const ALL: [RequestType; 11] = [
        RequestType::Document,
        RequestType::SubFrame,
        RequestType::Script,
        RequestType::Image,
        RequestType::Stylesheet,
        RequestType::XmlHttpRequest,
        RequestType::Ping,
        RequestType::Media,
        RequestType::Font,
        RequestType::Websocket,
        RequestType::Other,
    ];

    /// The name adblock and `--type` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Document => "document",
            RequestType::SubFrame => "sub_frame",
            RequestType::Script => "script",
            RequestType::Image => "image",
            RequestType::Stylesheet => "stylesheet",
            RequestType::XmlHttpRequest => "xmlhttprequest",
            RequestType::Ping => "ping",
            RequestType::Media => "media",
            RequestType::Font => "font",
            RequestType::Websocket => "websocket",
            RequestType::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<RequestType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "document" | "main_frame" => RequestType::Document,
            "sub_frame" | "subdocument" | "frame" | "iframe" => RequestType::SubFrame,
            "script" => RequestType::Script,
            "image" | "img" => RequestType::Image,
            "stylesheet" | "css" => RequestType::Stylesheet,
            "xmlhttprequest" | "xhr" | "fetch" => RequestType::XmlHttpRequest,
            "ping" | "beacon" => RequestType::Ping,
            "media" => RequestType::Media,
            "font" => RequestType::Font,
            "websocket" => RequestType::Websocket,
            "other" => RequestType::Other,
            _ => return None,
        })
    }

    pub fn is_document(self) -> bool {
        matches!(self, RequestType::Document | RequestType::SubFrame)
    }

    /// Classify a request from its headers and path.
    pub fn classify(headers: &HeaderMap, path: &str) -> RequestType {
        if headers.contains_key(http::header::UPGRADE) {
            return RequestType::Websocket;
        }
        if let Some(dest) = headers.get(SEC_FETCH_DEST).and_then(|v| v.to_str().ok()) {
            let t = match dest {
                "document" => Some(RequestType::Document),
                "iframe" | "frame" | "fencedframe" => Some(RequestType::SubFrame),
                "script" | "worker" | "sharedworker" | "serviceworker" | "audioworklet" | "paintworklet" => {
                    Some(RequestType::Script)
                }
                "image" => Some(RequestType::Image),
                "style" => Some(RequestType::Stylesheet),
                "font" => Some(RequestType::Font),
                "audio" | "video" | "track" => Some(RequestType::Media),
                "report" => Some(RequestType::Ping),
                "websocket" => Some(RequestType::Websocket),
                // "empty" is fetch/XHR, and also beacons; the ping header tells those apart.
                "empty" => Some(if headers.contains_key(PING_TO) || headers.contains_key(PING_FROM) {
                    RequestType::Ping
                } else {
                    RequestType::XmlHttpRequest
                }),
                _ => None,
            };
            if let Some(t) = t {
                return t;
            }
        }
        if headers.contains_key(PING_TO) {
            return RequestType::Ping;
        }
        if let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) {
            if accept.starts_with("text/html") || accept.starts_with("application/xhtml") {
                return RequestType::Document;
            }
            if accept.starts_with("image/") {
                return RequestType::Image;
            }
            if accept.starts_with("text/css") {
                return RequestType::Stylesheet;
            }
        }
        Self::from_extension(path).unwrap_or(RequestType::Other)
    }

    pub fn from_extension(path: &str) -> Option<RequestType> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let last = path.rsplit('/').next().unwrap_or("");
        let ext = last.rsplit_once('.')?.1;
        // Extensions are short; one on the stack, lower-cased, spares a String per request.
        let mut buf = [0u8; 8];
        let lower = buf.get_mut(..ext.len())?;
        lower.copy_from_slice(ext.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"js" | b"mjs" => RequestType::Script,
            b"css" => RequestType::Stylesheet,
            b"png" | b"gif" | b"jpg" | b"jpeg" | b"webp" | b"avif" | b"svg" | b"ico" | b"bmp" => RequestType::Image,
            b"woff" | b"woff2" | b"ttf" | b"otf" | b"eot" => RequestType::Font,
            b"mp4" | b"webm" | b"mp3" | b"m4a" | b"ogg" | b"m3u8" | b"mpd" | b"ts" => RequestType::Media,
            b"html" | b"htm" => RequestType::Document,
            b"json" => RequestType::XmlHttpRequest,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::tests::headers as h;

    #[test]
    fn sec_fetch_dest_then_accept_then_extension() {
        assert_eq!(RequestType::classify(&h(&[("sec-fetch-dest", "script")]), "/x.png"), RequestType::Script);
        assert_eq!(RequestType::classify(&h(&[("accept", "image/avif,image/*")]), "/x"), RequestType::Image);
        assert_eq!(RequestType::classify(&h(&[]), "/a/b/analytics.js?v=1"), RequestType::Script);
        assert_eq!(RequestType::classify(&h(&[]), "/collect"), RequestType::Other);
        assert_eq!(RequestType::classify(&h(&[("sec-fetch-dest", "empty"), ("ping-to", "x")]), "/"), RequestType::Ping);
    }

    #[test]
    fn extensions_are_read_in_any_case_and_long_ones_are_no_type() {
        assert_eq!(RequestType::from_extension("/PHOTO.JPEG"), Some(RequestType::Image));
        assert_eq!(RequestType::from_extension("/a.Js?x=1.css#y.png"), Some(RequestType::Script));
        assert_eq!(RequestType::from_extension("/font.woff2"), Some(RequestType::Font));
        assert_eq!(RequestType::from_extension("/archive.javascript"), None);
        assert_eq!(RequestType::from_extension("/dir.css/file"), None);
        assert_eq!(RequestType::from_extension("/no-extension"), None);
    }

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in RequestType::ALL {
            assert_eq!(RequestType::parse(t.as_str()), Some(t));
        }
    }
}
