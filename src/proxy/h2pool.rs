//! HTTP/2 connections to HTTPS origins: one per authority, shared by every request to it, each
//! request sent straight on the connection's `SendRequest`. Plain HTTP, origins that do not
//! offer h2 and those whose h2 dial failed go to kept HTTP/1.1 connections (`h1pool`, which
//! reports a dial's error); upgrades go through hyper-util's pooled client.
//!
//! Written here because hyper-util's pool, made for both protocols, costs on every request a
//! clone of the whole client, a checkout future raced against a lazily built connect future,
//! and a boxed response future; here a request takes the map's lock for one lookup and clones
//! the sender (measured in BENCHMARKS.md with benches/load/ab.py). The first request to an
//! authority waits for the dial; requests after it find the connection ready. Entries unused
//! for `[upstream] idle_timeout` are dropped (closing the connection once its streams end),
//! so the map stays as small as the set of origins in use.

use crate::base::Body;
use crate::proxy::dial::Dialer;
use crate::proxy::h1pool::H1Pool;
use crate::proxy::reap::{self, Swept};
use http::uri::Authority;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What to do with a request to one authority.
pub enum Via {
    /// Send it on this HTTP/2 connection.
    H2(SendRequest<Body>),
    /// Send it through the general pool: kept HTTP/1.1 connections (`h1pool`).
    Pool,
}

enum State {
    /// A dial is under way; its sender is dropped when it ends. Requests wait for it, unless
    /// the pool has been serving this origin meanwhile (a re-check): then they stay there.
    Connecting {
        done: watch::Receiver<()>,
        pool_meanwhile: bool,
    },
    Ready(SendRequest<Body>),
    /// The origin did not offer h2, or the dial failed: the general pool serves it until
    /// then, when a dial looks again (an origin may turn h2 on, or come back up).
    Pool(Instant),
}

/// How long an origin that answered without h2 is left to the general pool before asking again.
const NOT_H2_RECHECK: Duration = Duration::from_secs(600);
/// How long after a failed dial the general pool alone serves an origin.
const FAILED_RECHECK: Duration = Duration::from_secs(10);

struct Entry {
    state: State,
    last_used: Instant,
}

struct Map {
    /// foldhash, seeded per process: a lookup runs per request, and the keys are names web
    /// pages choose.
    entries: HashMap<Authority, Entry, foldhash::fast::RandomState>,
    /// A task drops idle entries while there are any.
    reaper: bool,
}

pub struct H2Pool {
    map: Mutex<Map>,
    dialer: Dialer,
    idle: Duration,
    /// Where a dial that finds an origin without h2 leaves its connection, for the request
    /// waiting on the dial to take.
    h1: Arc<H1Pool>,
}

impl H2Pool {
    pub fn new(dialer: Dialer, idle: Duration, h1: Arc<H1Pool>) -> H2Pool {
        H2Pool { map: Mutex::new(Map { entries: HashMap::default(), reaper: false }), dialer, idle, h1 }
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        crate::base::lock(&self.map)
    }

    /// Where a request to `https://{authority}` goes; dials (once per authority) when it is
    /// not known yet.
    pub async fn route(self: &Arc<Self>, authority: &Authority) -> Via {
        loop {
            let mut wait = {
                let mut map = self.lock();
                let now = Instant::now();
                match map.entries.get_mut(authority) {
                    Some(e) => {
                        e.last_used = now;
                        match &e.state {
                            State::Ready(s) if !s.is_closed() => return Via::H2(s.clone()),
                            State::Ready(_) => {
                                // The origin closed it (GOAWAY, idle, error): dial again.
                                self.dial(&mut map, authority, now, false)
                            }
                            State::Pool(until) if now < *until => return Via::Pool,
                            State::Pool(_) => {
                                // Time to look again; the pool keeps serving meanwhile.
                                self.dial(&mut map, authority, now, true);
                                return Via::Pool;
                            }
                            State::Connecting { pool_meanwhile: true, .. } => return Via::Pool,
                            State::Connecting { done, .. } => done.clone(),
                        }
                    }
                    None => self.dial(&mut map, authority, now, false),
                }
            };
            // Err: the dial ended (its sender dropped); look again.
            let _ = wait.changed().await;
        }
    }

    /// Dial `authority` now when it has no connection and none is under way (a tunnel to it
    /// has just opened); requests to it then wait for this dial.
    pub fn warm(self: &Arc<Self>, authority: &Authority) {
        let mut map = self.lock();
        let dial = match map.entries.get(authority) {
            None => true,
            Some(e) => matches!(&e.state, State::Ready(s) if s.is_closed()),
        };
        if dial {
            let _ = self.dial(&mut map, authority, Instant::now(), false);
        }
    }

    /// Start a dial in its own task (so a cancelled request cannot leave it half done) and
    /// mark the authority as connecting.
    fn dial(
        self: &Arc<Self>,
        map: &mut Map,
        authority: &Authority,
        now: Instant,
        pool_meanwhile: bool,
    ) -> watch::Receiver<()> {
        let (tx, rx) = watch::channel(());
        let state = State::Connecting { done: rx.clone(), pool_meanwhile };
        map.entries.insert(authority.clone(), Entry { state, last_used: now });
        if !map.reaper {
            map.reaper = true;
            tokio::spawn(reap::reap(Arc::downgrade(self)));
        }
        let this = self.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let state = this.connect(&authority).await;
            if let Some(e) = this.lock().entries.get_mut(&authority) {
                e.state = state;
            }
            drop(tx);
        });
        rx
    }

    async fn connect(&self, authority: &Authority) -> State {
        let failed = || State::Pool(Instant::now() + FAILED_RECHECK);
        let Ok(uri) = http::Uri::builder().scheme("https").authority(authority.clone()).path_and_query("/").build()
        else {
            return failed();
        };
        let io = match self.dialer.clone().connect(uri).await {
            Ok(io) if io.inner().is_h2() => io,
            Ok(io) => {
                // Kept for the request that waited on this dial, which now goes to the
                // general pool: without it, that request would dial a second time.
                self.h1.adopt(authority, io).await;
                return State::Pool(Instant::now() + NOT_H2_RECHECK);
            }
            // No connection: the pool dials again and reports its own error.
            Err(_) => return failed(),
        };
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        match builder.handshake(io).await {
            Ok((send, conn)) => {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream h2 connection ended");
                    }
                });
                State::Ready(send)
            }
            Err(e) => {
                tracing::debug!(error = %e, "upstream h2 handshake failed");
                failed()
            }
        }
    }

    /// How many authorities have a live h2 connection (for tests).
    pub fn connections(&self) -> usize {
        self.lock().entries.values().filter(|e| matches!(&e.state, State::Ready(s) if !s.is_closed())).count()
    }
}

impl Swept for H2Pool {
    fn idle(&self) -> Duration {
        self.idle
    }

    /// Drop entries unused for the idle time and connections the origin closed; false when
    /// none are left.
    fn sweep(&self) -> bool {
        let mut map = self.lock();
        let now = Instant::now();
        map.entries.retain(|_, e| {
            now.duration_since(e.last_used) < self.idle && !matches!(&e.state, State::Ready(s) if s.is_closed())
        });
        map.reaper = !map.entries.is_empty();
        map.reaper
    }
}
