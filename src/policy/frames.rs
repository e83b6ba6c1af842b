//! The top page of the cross-site frames each client has open, so party inside a frame is
//! judged against the top-level site, not the frame. A browser tells a request's page only one
//! level up (`Sec-Fetch-Site` and the Referer name the frame that asked), so a tracker's frame
//! would make its own requests, and those to a third party it picks, first party to itself and
//! keep their cookies. The proxy sees each frame's document asked for from its parent: it
//! notes (client, frame host) → top page host when the frame loads, and a later request whose
//! page is that frame is taken as the top page's. A top-level navigation to a host ends its
//! notes for that client (it is a page of its own now). Bounded in entries and in age.

use crate::base::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Frames remembered at most, over all clients.
pub const MAX_FRAMES: usize = 4096;
/// A frame's note is forgotten this long after its document was last asked for.
const FRAME_MEMORY: Duration = Duration::from_secs(30 * 60);

/// (client, frame host) → (top page host, when the frame was last opened).
type Table = HashMap<(IpAddr, Box<str>), (Box<str>, Instant)>;

#[derive(Default)]
pub struct Frames {
    table: Mutex<Table>,
    /// Entries in the table, read without the lock: most requests then skip it.
    len: AtomicUsize,
}

impl Frames {
    /// The top page's host for a request whose page is `page_host`, when that is a frame this
    /// client has open.
    pub fn top_of(&self, client: IpAddr, page_host: &str) -> Option<String> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let table = lock(&self.table);
        let (top, at) = table.get(&(client, Box::from(page_host)))?;
        (at.elapsed() < FRAME_MEMORY).then(|| top.to_string())
    }

    /// A frame of `frame_host` was opened on a page of `top_host`.
    pub fn opened(&self, client: IpAddr, frame_host: &str, top_host: &str) {
        let mut table = lock(&self.table);
        if table.len() >= MAX_FRAMES {
            let now = Instant::now();
            table.retain(|_, (_, at)| now.duration_since(*at) < FRAME_MEMORY);
            if table.len() >= MAX_FRAMES {
                // The oldest note makes room.
                if let Some(oldest) = table.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone()) {
                    table.remove(&oldest);
                }
            }
        }
        table.insert((client, Box::from(frame_host)), (Box::from(top_host), Instant::now()));
        self.len.store(table.len(), Ordering::Relaxed);
    }

    /// The client navigated to `host`: its pages are its own now.
    pub fn navigated(&self, client: IpAddr, host: &str) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut table = lock(&self.table);
        table.remove(&(client, Box::from(host)));
        self.len.store(table.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frames_requests_belong_to_the_top_page_until_its_host_is_navigated_to() {
        let f = Frames::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(f.top_of(a, "frame.tracker.test"), None);
        f.opened(a, "frame.tracker.test", "www.news.test");
        assert_eq!(f.top_of(a, "frame.tracker.test").as_deref(), Some("www.news.test"));
        assert_eq!(f.top_of(b, "frame.tracker.test"), None, "another client's frames are its own");
        f.navigated(a, "frame.tracker.test");
        assert_eq!(f.top_of(a, "frame.tracker.test"), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let f = Frames::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..MAX_FRAMES + 100 {
            f.opened(a, &format!("f{i}.test"), "top.test");
        }
        assert_eq!(lock(&f.table).len(), MAX_FRAMES);
        assert_eq!(f.top_of(a, &format!("f{}.test", MAX_FRAMES + 99)).as_deref(), Some("top.test"));
    }
}
