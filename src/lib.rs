//! nostalk: a forwarding web proxy that takes the surveillance out and lets ads through only
//! de-identified. This is the library's front door: [`Server`] (bind, then run until a shutdown
//! signal), [`config::Config`], and [`policy::Policy`]. The path of a request is:
//! accept → access → proxy (h1/h2, CONNECT, intercept) → policy.decide → respond (block) or
//! hygiene → upstream → hygiene → rewrite (HTML) → client, with each decision recorded in the
//! receipt. See ARCHITECTURE.md.

pub mod base;
pub mod config;
pub mod exchange;
pub mod hygiene;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod receipt;
pub mod respond;
pub mod rewrite;
pub mod tls;

pub use config::Config;
pub use policy::Policy;
pub use proxy::listener::Server;
