//! `warden sandbox …`: local stand-ins for Kite Connect and a trading backend (SPEC §8).

pub mod backend;
pub mod kite;
