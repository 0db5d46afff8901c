//! ChromeOS/Flatcar GPT priority attributes, read and written crash-safely.
//!
//! The crate decides which USR slot the bootloader boots. [`Gpt`] reads both GPT
//! copies and judges them with vboot's rules; [`Gpt::write`] writes in the one
//! order that no crash can turn into a table some reader rejects; [`ops`] holds the
//! pure selection logic (vboot `prioritize`, GRUB `gptprio.next`, `find`); [`slot`]
//! is the A/B model the update agent uses.

pub mod attrs;
pub mod blockdev;
pub mod create;
pub mod disk;
pub mod entry;
pub mod error;
pub mod grub;
pub mod guid;
pub mod header;
pub mod image;
pub mod ops;
pub mod pmbr;
pub mod resize;
pub mod slot;
pub mod table;
#[cfg(feature = "cli")]
pub mod usage;

pub use attrs::Attributes;
pub use disk::{Disk, FileDisk, MemDisk};
pub use entry::Entry;
pub use error::Error;
pub use header::Which;
pub use slot::{Slot, SlotState};
pub use table::{Gpt, Health, WriteMode};
