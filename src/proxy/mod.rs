//! Network plumbing: the listener, the per-connection service (hyper, auto h1/h2), CONNECT
//! (tunnel or intercept), forwarding one request, hop-by-hop headers, and the upstream client.

pub mod connect;
pub mod controls;
pub mod destination;
pub mod dial;
pub mod forward;
pub mod h1pool;
pub mod h2pool;
pub mod headers;
pub mod limits;
pub mod listener;
pub mod own_pages;
pub mod parent;
pub mod reap;
pub mod reload;
pub mod resolver;
pub mod serve;
pub mod service;
pub mod socket;
pub mod state;
pub mod transparent;
pub mod upstream;
