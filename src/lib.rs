//! warden: a supervisor for trading stacks. See README.md for the theory of operation.

pub mod client;
pub mod config;
pub mod config_watch;
pub mod control;
pub mod doctor;
pub mod handover;
pub mod health;
pub mod http;
pub mod journal;
pub mod log_sink;
pub mod logs;
pub mod market;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod present;
pub mod process_group;
pub mod program;
pub mod reaper;
pub mod rlimit;
// Tooling, not supervision: the release image builds without it (README "Lean build").
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sdnotify;
pub mod signals;
pub mod supervisor;
pub mod token;
