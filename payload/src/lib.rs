//! CrAU update payloads (major versions 1 and 2): parsing, signature checks,
//! generation and a streaming, verifying apply.
//!
//! Entry points:
//! - [`apply`] / [`Applier`]: stream a payload into slots, verifying as it goes;
//! - [`Checkpoint`] + [`Applier::resume`]: continue an interrupted apply;
//! - [`generate`]: build full and delta payloads; [`write`]: sign and write them;
//! - [`PayloadError::flatcar_code`]: Flatcar's error code for any failure.

pub mod apply;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod extent_writer;
pub mod generate;
pub mod hashing_reader;
pub mod header;
pub mod inspect;
pub mod keys;
pub mod mapped;
pub mod ops;
pub mod plan;
pub mod proto;
pub mod sha;
pub mod storage;
pub mod write;

pub use apply::{
    Applier, ApplyOptions, ApplyReport, Checkpoint, Expectations, Progress, Slot, Slots, apply,
    verify,
};
pub use error::{PayloadError, Result};
pub use header::Limits;
pub use keys::{Keyring, PublicKey, SigningKey};
pub use plan::{MINOR_DELTA, MINOR_FULL, MINOR_ZSTD};
pub use storage::Storage;
