//! Omaha v3 protocol as spoken by Flatcar's update_engine: typed requests
//! written byte-for-byte in update_engine's layout, and tolerant, bounded
//! parsing of responses from Nebraska, go-omaha and the public server.
//!
//! This crate does no I/O. The update agent fills a [`ClientInfo`], builds a
//! [`Request`], POSTs [`Request::to_xml`] with `Content-Type: text/xml`, and
//! hands the body (at most [`MAX_RESPONSE_SIZE`] bytes) to
//! [`parse_update_check`] or [`parse_event_response`]. The [`server`] module
//! is the other side, for mock Omaha servers in tests.
//!
//! ```
//! use omaha::{ClientInfo, InstallSource, Request, UpdateCheck};
//!
//! let client = ClientInfo {
//!     version: "3510.2.0".into(),
//!     board: "amd64-usr".into(),
//!     machine_id: "0f2b6c3e1d9a4e7b8c5d6e7f8a9b0c1d".into(),
//!     boot_id: "2a6fbb0a-6f3e-4c57-9a3f-0b5b0c1e9d11".parse().unwrap(),
//!     ..Default::default()
//! };
//! let xml = Request::update_check(client, InstallSource::Scheduler, None).to_xml();
//! assert!(xml.contains(r#"<event eventtype="3" eventresult="2" previousversion="0.0.0.0"></event>"#));
//!
//! let body = br#"<response protocol="3.0">
//!     <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok">
//!     <updatecheck status="noupdate" PollInterval="3600"></updatecheck></app></response>"#;
//! let resp = omaha::parse_update_check(body, omaha::FLATCAR_APP_ID).unwrap();
//! assert_eq!(resp.outcome, UpdateCheck::NoUpdate);
//! assert_eq!(resp.poll_interval, Some(3600));
//! ```

mod codebase;
mod error;
mod error_code;
pub mod event;
mod log_escape;
pub mod request;
pub mod response;
pub mod server;
mod xml;

pub use codebase::join_url;
pub use error::ResponseError;
pub use event::{
    BaseCode, ErrorCode, ErrorFlags, Event, EventErrorCode, EventResult, EventType, NamedErrorCode,
    UnknownValue,
};
pub use log_escape::LogEscaped;
pub use request::{
    BootId, ClientInfo, DEFAULT_TRACK, FLATCAR_APP_ID, InstallSource, Request, RequestKind,
    UPDATER_VERSION,
};
pub use response::{
    EventResponse, MAX_RESPONSE_SIZE, Package, PostinstallAction, UpdateCheck, UpdateCheckResponse,
    UpdateInfo, parse_event_response, parse_update_check, same_app_id,
};
