//! Operations: who may use the proxy (`access`), the person's choices kept across restarts
//! (`choices`), what it has done (`metrics`), what `run` needs
//! from the machine (`preflight`, for `check`), starting with the person's session
//! (`service`), and the process's signals (`signals`: shutdown on SIGINT/SIGTERM).

pub mod access;
pub mod auth;
pub mod choices;
pub mod choices_pg;
pub mod groups;
pub mod leases;
pub mod metrics;
pub mod preflight;
pub mod service;
pub mod signals;

pub use crate::base::return_free_memory;
