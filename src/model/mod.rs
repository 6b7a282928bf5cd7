//! The model: what warden knows about its programs and its token, as plain data.
//!
//! Everything else depends on this module and it depends on nothing in the crate: the
//! supervisor and the token keeper publish these types, HTTP, the CLI and sdnotify render
//! them (through `crate::present`), and the one readiness rule lives here. Timestamps are
//! typed ([`jiff::Timestamp`]) and become RFC 3339 strings only when serialized, exactly as
//! `/api/v1/status` has always shown them.

pub mod held;
pub mod program;
pub mod readiness;
pub mod time;
pub mod token;

pub use held::HeldNotification;
pub use program::{ExitStatus, Health, ProgramState, ProgramStatus, ProgramsView};
pub use readiness::Readiness;
pub use token::{TokenState, TokenStatus};
