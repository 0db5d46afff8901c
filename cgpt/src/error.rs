//! The crate's error type.

use std::io;

use crate::attrs::RangeError;
use crate::header::HeaderProblem;
use crate::table::Health;

/// Everything that can go wrong reading or changing a GPT.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("disk of {0} bytes is too small to hold a GPT")]
    TooSmall(u64),
    #[error(
        "GptValidityCheck() returned 2: GPT_ERROR_INVALID_HEADERS (primary header: {primary}; secondary header: {secondary})"
    )]
    InvalidHeaders {
        primary: HeaderProblem,
        secondary: HeaderProblem,
    },
    #[error(
        "GptValidityCheck() returned 3: GPT_ERROR_INVALID_ENTRIES (primary entries: {primary}; secondary entries: {secondary})"
    )]
    InvalidEntries {
        primary: EntriesProblem,
        secondary: EntriesProblem,
    },
    #[error("the two GPT copies disagree ({0}); run 'cgpt repair' first")]
    NeedsRepair(Health),
    #[error("invalid partition number: {0}")]
    InvalidPartition(u32),
    #[error("partition {0} does not exist (unused entry)")]
    UnusedPartition(u32),
    #[error("partition {index} is not a {expected} partition")]
    WrongType { index: u32, expected: &'static str },
    #[error(transparent)]
    Range(#[from] RangeError),
    #[error("no such partition: no USR partition has priority > 0 and (tries > 0 or successful)")]
    NothingBootable,
    #[error("no USR partition labelled {0}")]
    NoSlot(&'static str),
    #[error("label {0:?} is longer than 36 UTF-16 code units")]
    LabelTooLong(String),
    #[error("refusing to write an invalid table: {0}")]
    BadChange(EntriesProblem),
    #[error(transparent)]
    Grub(#[from] crate::grub::GrubRefusal),
    #[error(
        "GRUB and cgpt read different entries from this disk; refusing to spend a try (run 'cgpt repair')"
    )]
    ReadersDisagree,
    #[error("read-back after writing found {0}")]
    VerifyFailed(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Why an entry array is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntriesProblem {
    #[error("entries CRC {computed:#010x} does not match the header's {stored:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("partition {index} ({first}..={last}) lies outside the usable range")]
    OutsideUsable { index: u32, first: u64, last: u64 },
    #[error("partitions {a} and {b} overlap")]
    Overlap { a: u32, b: u32 },
    #[error("partitions {a} and {b} share a unique GUID")]
    DuplicateGuid { a: u32, b: u32 },
    #[error("its own header is invalid")]
    NoHeader,
}
