//! Operations: who may use the proxy (`access`), what it has done (`metrics`), and the process's
//! signals (`signals`: shutdown on SIGINT/SIGTERM).

pub mod access;
pub mod metrics;
pub mod signals;
