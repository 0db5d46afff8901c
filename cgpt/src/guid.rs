//! GPT GUIDs (stored mixed-endian on disk) and the partition types this project knows.

use uuid::Uuid;

/// The Flatcar/CoreOS USR partition type, the one GRUB's `gptprio.next` considers.
pub const USR_TYPE: Uuid = Uuid::from_u128(0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6);
/// The ChromeOS kernel type, the one vboot's `cgpt prioritize` considers.
pub const CHROMEOS_KERNEL_TYPE: Uuid = Uuid::from_u128(0xFE3A2A5D_4F32_41A7_B725_ACCC3285A309);
/// Flatcar's fixed unique GUID of USR-A (GRUB picks `vmlinuz-a` by it).
pub const USR_A_UUID: Uuid = Uuid::from_u128(0x7130C94A_213A_4E5A_8E26_6CCE9662F132);
/// Flatcar's fixed unique GUID of USR-B.
pub const USR_B_UUID: Uuid = Uuid::from_u128(0xE03DD35C_7C2D_4A47_B3FE_27F15780A57C);

/// Type aliases with vboot R106's names (what `cgpt show` prints and `-t` accepts),
/// plus Flatcar's aliases for its own types (accepted by `-t`, as in Flatcar's cgpt).
const ALIASES: &[(&str, &str, u128)] = &[
    (
        "firmware",
        "ChromeOS firmware",
        0xCAB6E88E_ABF3_4102_A07A_D4BB9BE3C1D3,
    ),
    (
        "kernel",
        "ChromeOS kernel",
        0xFE3A2A5D_4F32_41A7_B725_ACCC3285A309,
    ),
    (
        "rootfs",
        "ChromeOS rootfs",
        0x3CB8E202_3B7E_47DD_8A3C_7FF2A13CFCEC,
    ),
    ("data", "Linux data", 0x0FC63DAF_8483_4772_8E79_3D69D8477DE4),
    (
        "basicdata",
        "Basic data",
        0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7,
    ),
    (
        "reserved",
        "ChromeOS reserved",
        0x2E0A753D_9E48_43B0_8337_B15192CB1B5E,
    ),
    (
        "efi",
        "EFI System Partition",
        0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B,
    ),
    ("unused", "Unused (nonexistent) partition", 0),
    (
        "minios",
        "ChromeOS miniOS",
        0x09845860_705F_4BB5_B16C_8A8A099CAF52,
    ),
    (
        "hibernate",
        "ChromeOS hibernate",
        0x3F0F8318_F146_4E6B_8222_C28C8F02E0D5,
    ),
];

/// Flatcar-only aliases: accepted as input, never printed (vboot prints these types as GUIDs).
const FLATCAR_ALIASES: &[(&str, u128)] = &[
    ("coreos-usr", 0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6),
    ("coreos-rootfs", 0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6),
    ("flatcar-usr", 0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6),
    ("flatcar-rootfs", 0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6),
    ("coreos-resize", 0x3884DD41_8582_4404_B9A8_E9B84F2DF50E),
    ("flatcar-resize", 0x3884DD41_8582_4404_B9A8_E9B84F2DF50E),
    ("coreos-reserved", 0xC95DC21A_DF0E_4340_8D7B_26CBFA9A03E0),
    ("flatcar-reserved", 0xC95DC21A_DF0E_4340_8D7B_26CBFA9A03E0),
    ("coreos-root-raid", 0xBE9067B9_EA49_4F15_B4F6_F36F8C9E1818),
    ("flatcar-root-raid", 0xBE9067B9_EA49_4F15_B4F6_F36F8C9E1818),
    ("bios", 0x21686148_6449_6E6F_744E_656564454649),
    ("linux-data", 0x0FC63DAF_8483_4772_8E79_3D69D8477DE4),
    ("linux-swap", 0x0657FD6D_A4AB_43C4_84E5_0933C84B4F4F),
    ("linux-boot", 0xBC13C2FF_59E6_4262_A352_B275FD6F7172),
    ("linux-home", 0x933AC7E1_2EB4_4F13_B844_0E14E2AEF915),
    ("linux-lvm", 0xE6D6D379_F507_44C2_A23C_238F2A3DF928),
    ("linux-raid", 0xA19D880F_05FC_4D3B_A006_743F0F84911E),
    ("linux-reserved", 0x8DA63339_0007_60C0_C436_083AC8230908),
    ("mswin-data", 0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7),
    ("chromeos-data", 0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7),
];

/// Decodes a GUID from its 16 on-disk bytes (first three fields little-endian).
pub fn from_disk(bytes: &[u8]) -> Uuid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    Uuid::from_bytes_le(b)
}

/// Encodes a GUID into its 16 on-disk bytes.
pub fn to_disk(guid: &Uuid) -> [u8; 16] {
    guid.to_bytes_le()
}

/// Upper-case hyphenated form, as cgpt and sgdisk print GUIDs.
pub fn upper(guid: &Uuid) -> String {
    guid.hyphenated().to_string().to_uppercase()
}

/// vboot's display name of a type, if it has one.
pub fn type_name(guid: &Uuid) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(_, _, g)| Uuid::from_u128(*g) == *guid)
        .map(|(_, name, _)| *name)
}

/// Parses a type given as a GUID or alias (`-t` of `cgpt add/find`).
pub fn parse_type(s: &str) -> Option<Uuid> {
    ALIASES
        .iter()
        .find(|(alias, _, _)| *alias == s)
        .map(|(_, _, g)| Uuid::from_u128(*g))
        .or_else(|| {
            FLATCAR_ALIASES
                .iter()
                .find(|(a, _)| *a == s)
                .map(|(_, g)| Uuid::from_u128(*g))
        })
        .or_else(|| parse_guid(s))
}

/// Parses a hyphenated GUID, case-insensitively.
pub fn parse_guid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// The alias table as `cgpt add` usage prints it.
pub fn alias_help() -> String {
    ALIASES
        .iter()
        .map(|(a, n, _)| format!("    {a:<11} {n}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_endian_round_trip() {
        // The USR type as it sits on disk (xxd of the reference image).
        let disk = [
            0xF4, 0xF5, 0xFB, 0x5D, 0x48, 0x28, 0xAC, 0x4B, 0xAA, 0x5E, 0x0D, 0x9A, 0x20, 0xB7,
            0x45, 0xA6,
        ];
        assert_eq!(from_disk(&disk), USR_TYPE);
        assert_eq!(to_disk(&USR_TYPE), disk);
        assert_eq!(upper(&USR_TYPE), "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6");
    }

    #[test]
    fn aliases() {
        assert_eq!(parse_type("coreos-usr"), Some(USR_TYPE));
        assert_eq!(parse_type("kernel"), Some(CHROMEOS_KERNEL_TYPE));
        assert_eq!(
            parse_type("5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"),
            Some(USR_TYPE)
        );
        assert_eq!(parse_type("nonsense"), None);
        assert_eq!(type_name(&USR_TYPE), None);
        assert_eq!(
            type_name(&Uuid::nil()),
            Some("Unused (nonexistent) partition")
        );
    }
}
