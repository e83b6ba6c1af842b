//! Process signals: the future that completes on SIGINT or SIGTERM, for graceful shutdown.
//! The handlers are installed when `shutdown()` is called, not when its future is first
//! polled, so a signal that comes right after the proxy says it is listening is never lost to
//! the default action (which would end the process without draining).

use std::future::Future;

/// Install the handlers now (inside the runtime); the returned future completes on the first
/// SIGINT or SIGTERM.
pub fn shutdown() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    };
    async move {
        #[cfg(unix)]
        {
            let (Ok(mut term), Ok(mut int)) = handlers else {
                // Without signal handlers, Ctrl-C still ends the process the default way.
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
