//! The ChromeOS/Flatcar attribute bits in a GPT entry's 64-bit attribute field.
//!
//! Priority is bits 48-51, tries 52-55, successful 56. Every setter clears only
//! its own field, so UEFI bits (0-2) and any other bit (60, 62, 63, ...) survive.

use std::fmt;

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_SHIFT: u32 = 56;
const NIBBLE: u64 = 0xf;

/// Bit 0: UEFI "required partition".
pub const REQUIRED_BIT: u32 = 0;
/// Bit 1: UEFI "no block IO protocol" (cgpt calls it `efi_ignore`).
pub const EFI_IGNORE_BIT: u32 = 1;
/// Bit 2: legacy BIOS bootable.
pub const LEGACY_BOOT_BIT: u32 = 2;

/// Highest value of the 4-bit priority and tries fields.
pub const MAX_NIBBLE: u8 = 15;

/// A value outside the range of an attribute field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value for {field} must be between 0 and {max}, got {value}")]
pub struct RangeError {
    /// The field name (`priority`, `tries`, `successful`).
    pub field: &'static str,
    /// The largest allowed value.
    pub max: u8,
    /// The rejected value.
    pub value: u64,
}

/// The 64-bit attribute field of one GPT entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Attributes(pub u64);

impl Attributes {
    /// Priority, 0-15 (0 = never boot).
    pub fn priority(self) -> u8 {
        ((self.0 >> PRIORITY_SHIFT) & NIBBLE) as u8
    }

    /// Remaining boot attempts, 0-15.
    pub fn tries(self) -> u8 {
        ((self.0 >> TRIES_SHIFT) & NIBBLE) as u8
    }

    /// Whether the slot has booted successfully.
    pub fn successful(self) -> bool {
        (self.0 >> SUCCESSFUL_SHIFT) & 1 == 1
    }

    /// Sets the priority, keeping every other bit.
    pub fn set_priority(&mut self, value: u64) -> Result<(), RangeError> {
        self.set_field("priority", PRIORITY_SHIFT, NIBBLE, value)
    }

    /// Sets tries, keeping every other bit.
    pub fn set_tries(&mut self, value: u64) -> Result<(), RangeError> {
        self.set_field("tries", TRIES_SHIFT, NIBBLE, value)
    }

    /// Sets the successful bit, keeping every other bit.
    pub fn set_successful(&mut self, value: u64) -> Result<(), RangeError> {
        self.set_field("successful", SUCCESSFUL_SHIFT, 1, value)
    }

    /// Returns a copy with priority, tries and successful set.
    pub fn with_pts(
        mut self,
        priority: u8,
        tries: u8,
        successful: bool,
    ) -> Result<Self, RangeError> {
        self.set_priority(priority.into())?;
        self.set_tries(tries.into())?;
        self.set_successful(successful.into())?;
        Ok(self)
    }

    /// Reads one single-bit flag.
    pub fn bit(self, bit: u32) -> bool {
        (self.0 >> bit) & 1 == 1
    }

    /// Sets or clears one single-bit flag.
    pub fn set_bit(&mut self, bit: u32, on: bool) {
        if on {
            self.0 |= 1 << bit;
        } else {
            self.0 &= !(1 << bit);
        }
    }

    /// The 16 bits 48-63, as vboot's `cgpt show -A` prints and `cgpt add -A` sets them.
    pub fn gpt_att(self) -> u16 {
        (self.0 >> 48) as u16
    }

    /// Replaces bits 48-63 (vboot `cgpt add -A` semantics), keeping bits 0-47.
    pub fn set_gpt_att(&mut self, value: u16) {
        self.0 = (self.0 & 0x0000_ffff_ffff_ffff) | (u64::from(value) << 48);
    }

    fn set_field(
        &mut self,
        field: &'static str,
        shift: u32,
        mask: u64,
        value: u64,
    ) -> Result<(), RangeError> {
        if value > mask {
            return Err(RangeError {
                field,
                max: mask as u8,
                value,
            });
        }
        self.0 = (self.0 & !(mask << shift)) | (value << shift);
        Ok(())
    }
}

impl fmt::Display for Attributes {
    /// Flatcar's cgpt style: `priority=1 tries=0 successful=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority={} tries={} successful={}",
            self.priority(),
            self.tries(),
            u8::from(self.successful())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_encodings() {
        // P T S -> u64, from the reference's table (checked against real tools).
        let rows = [
            (1, 0, true, 0x0101_0000_0000_0000u64),
            (2, 1, false, 0x0012_0000_0000_0000),
            (2, 0, false, 0x0002_0000_0000_0000),
            (2, 0, true, 0x0102_0000_0000_0000),
            (0, 0, false, 0),
        ];
        for (p, t, s, raw) in rows {
            let a = Attributes(0).with_pts(p, t, s).unwrap();
            assert_eq!(a.0, raw, "P{p} T{t} S{s}");
            assert_eq!((a.priority(), a.tries(), a.successful()), (p, t, s));
        }
        assert_eq!(Attributes(0x0101_0000_0000_0000).gpt_att(), 0x101);
        assert_eq!(
            Attributes(0x0101_0000_0000_0000).to_string(),
            "priority=1 tries=0 successful=1"
        );
    }

    #[test]
    fn range_errors() {
        let mut a = Attributes(0);
        assert_eq!(
            a.set_priority(16).unwrap_err().to_string(),
            "value for priority must be between 0 and 15, got 16"
        );
        assert!(a.set_tries(16).is_err());
        assert!(a.set_successful(2).is_err());
        assert_eq!(a, Attributes(0), "a rejected value changes nothing");
    }

    #[test]
    fn gpt_att_keeps_low_bits() {
        let mut a = Attributes(0x1000_0000_0000_0005);
        a.set_gpt_att(0x12);
        assert_eq!(a.0, 0x0012_0000_0000_0005);
    }

    proptest! {
        #[test]
        fn setters_keep_other_bits(raw: u64, p in 0u64..16, t in 0u64..16, s in 0u64..2) {
            let mut a = Attributes(raw);
            a.set_priority(p).unwrap();
            a.set_tries(t).unwrap();
            a.set_successful(s).unwrap();
            let fields = (NIBBLE << 48) | (NIBBLE << 52) | (1 << 56);
            prop_assert_eq!(a.0 & !fields, raw & !fields);
            prop_assert_eq!(u64::from(a.priority()), p);
            prop_assert_eq!(u64::from(a.tries()), t);
            prop_assert_eq!(u64::from(a.successful()), s);
        }

        #[test]
        fn out_of_range_is_rejected_and_harmless(raw: u64, v in 16u64..) {
            let mut a = Attributes(raw);
            prop_assert!(a.set_priority(v).is_err());
            prop_assert!(a.set_tries(v).is_err());
            prop_assert!(a.set_successful(v).is_err());
            prop_assert_eq!(a.0, raw);
        }
    }
}
