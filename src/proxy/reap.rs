//! The sweeper both upstream pools share (`h1pool`, `h2pool`): a pool that keeps connections
//! implements [`Swept`], and one task per pool drops what has sat unused past the idle time.
//! It sits below the pools and the upstream client, so neither imports the other for it.

use std::time::Duration;

/// A pool whose unused connections a task sweeps away (`h1pool`, `h2pool`).
pub(crate) trait Swept: Send + Sync + 'static {
    /// How long a connection may sit unused.
    fn idle(&self) -> Duration;
    /// Drop what has expired or was closed; false when nothing is left.
    fn sweep(&self) -> bool;
}

/// Sweep every half idle time while the pool has connections (and exists); a pool starts
/// this when it keeps its first connection, and again after the task has ended.
pub(crate) async fn reap<P: Swept>(pool: std::sync::Weak<P>) {
    loop {
        let Some(period) = pool.upgrade().map(|p| p.idle() / 2) else { return };
        tokio::time::sleep(period.max(Duration::from_millis(100))).await;
        match pool.upgrade() {
            Some(p) if p.sweep() => {}
            _ => return,
        }
    }
}
