//! warden: a supervisor for trading stacks. See README.md for the theory of operation.

pub mod config;
pub mod sandbox;
pub mod token;
