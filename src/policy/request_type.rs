//! The request type (ABP/uBO's `script`, `image`, ...) of a request, read from what the browser
//! says: `Sec-Fetch-Dest` first, then `Accept`, then the path's extension.

use http::HeaderMap;

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
        if let Some(dest) = headers.get("sec-fetch-dest").and_then(|v| v.to_str().ok()) {
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
                "empty" => Some(if headers.contains_key("ping-to") || headers.contains_key("ping-from") {
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
        if headers.contains_key("ping-to") {
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
        let ext = last.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "js" | "mjs" => RequestType::Script,
            "css" => RequestType::Stylesheet,
            "png" | "gif" | "jpg" | "jpeg" | "webp" | "avif" | "svg" | "ico" | "bmp" => RequestType::Image,
            "woff" | "woff2" | "ttf" | "otf" | "eot" => RequestType::Font,
            "mp4" | "webm" | "mp3" | "m4a" | "ogg" | "m3u8" | "mpd" | "ts" => RequestType::Media,
            "html" | "htm" => RequestType::Document,
            "json" => RequestType::XmlHttpRequest,
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
    fn every_type_round_trips_through_its_name() {
        for t in RequestType::ALL {
            assert_eq!(RequestType::parse(t.as_str()), Some(t));
        }
    }
}
