//! End-to-end test support. The tests themselves live in `tests/tests/`.
//!
//! [`omaha_server`] is an in-process Omaha and payload server for driving
//! the update agent over real HTTP on 127.0.0.1.

pub mod dbus_bus;
pub mod docs;
pub mod fixture;
pub mod lifecycle;
pub mod omaha_server;
pub mod sim;

pub use omaha_server::{OmahaServer, RecordedRequest, Reply, UpdateSpec, test_ca_pem};

/// The Omaha POSTs a server saw, compactly: `check`, `ping`, or the
/// event as `type/result[/code]`.
pub fn omaha_log(server: &OmahaServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| match &r.omaha_request().kind {
            omaha::RequestKind::UpdateCheck { .. } => "check".to_string(),
            omaha::RequestKind::Ping => "ping".to_string(),
            omaha::RequestKind::Event(e) => {
                let base = format!("{}/{}", e.event_type.code(), e.result.code());
                if e.result == omaha::EventResult::Success {
                    base
                } else {
                    format!("{base}/{}", e.error_code.to_u32())
                }
            }
        })
        .collect()
}
