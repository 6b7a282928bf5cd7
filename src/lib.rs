//! warden: a supervisor for trading stacks. See README.md for the theory of operation.

pub mod config;
pub mod metrics;
pub mod notify;
pub mod sandbox;
pub mod token;
