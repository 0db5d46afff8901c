//! End-to-end test support. The tests themselves live in `tests/tests/`.
//!
//! [`omaha_server`] is an in-process Omaha and payload server for driving
//! the update agent over real HTTP on 127.0.0.1.

pub mod dbus_bus;
pub mod omaha_server;

pub use omaha_server::{OmahaServer, RecordedRequest, Reply, UpdateSpec};
