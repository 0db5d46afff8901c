//! The on-node A/B update agent: a drop-in replacement for Flatcar's
//! update_engine.
//!
//! Pure policy lives in [`fsm`] (the status state machine) and [`schedule`]
//! (check timing and backoff); I/O lives in [`config`] (Flatcar's
//! `update.conf` lookup and the agent's TOML settings), [`prefs`] (the
//! update_engine prefs directory) and [`omaha_client`] (the HTTP client).

pub mod config;
pub mod daemon;
pub mod dbus;
pub mod denylist;
pub mod download;
pub mod fsm;
mod fsutil;
pub mod health;
pub mod http;
pub mod install;
pub mod omaha_client;
pub mod prefs;
pub mod schedule;
pub mod slots;

pub use fsutil::write_atomic;
