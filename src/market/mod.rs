//! Market hours: the exchange's calendar ([`calendar`]), and how long each token was not valid
//! while the market was open ([`continuity`], [`strip_file`], [`tracker`]).

pub mod calendar;
pub mod continuity;
pub mod nse_holidays;
pub mod strip_file;
pub mod tracker;

pub use calendar::{MarketCalendar, Session};
