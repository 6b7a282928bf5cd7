//! warden: a supervisor for trading stacks. See README.md for the theory of operation.

pub mod client;
pub mod config;
pub mod config_watch;
pub mod control;
pub mod handover;
pub mod health;
pub mod http;
pub mod log_sink;
pub mod logs;
pub mod memtrim;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod present;
pub mod process_group;
pub mod program;
pub mod reaper;
pub mod rlimit;
pub mod sandbox;
pub mod sdnotify;
pub mod signals;
pub mod supervisor;
pub mod token;
