//! `cgpt show`: vboot's layout, with Flatcar's `Attr:` line for USR entries.

use std::fmt::Write as _;

use cgpt::guid::{self, CHROMEOS_KERNEL_TYPE};
use cgpt::header::{Header, Which};
use cgpt::{Entry, Gpt};

/// What `show` prints.
#[derive(Debug, Default)]
pub struct ShowOpts {
    pub numeric: bool,
    pub verbose: bool,
    pub quick: bool,
    pub partition: Option<u32>,
    /// One field of `-i N` (`b s t u l S T P R B A`).
    pub field: Option<char>,
}

fn row(out: &mut String, start: u64, size: u64, part: Option<u32>, contents: &str) {
    let part = part.map(|p| p.to_string()).unwrap_or_default();
    let _ = writeln!(out, "{start:>12}{size:>12}{part:>8}  {contents}");
}

fn more(out: &mut String, text: &str) {
    let _ = writeln!(out, "{:34}{text}", "");
}

fn type_text(e: &Entry, numeric: bool) -> String {
    match guid::type_name(&e.type_guid) {
        Some(name) if !numeric => name.to_string(),
        _ => guid::upper(&e.type_guid),
    }
}

fn entry_details(out: &mut String, e: &Entry, numeric: bool) {
    row(
        out,
        e.first_lba,
        e.sectors(),
        Some(e.index),
        &format!("Label: \"{}\"", e.label),
    );
    more(out, &format!("Type: {}", type_text(e, numeric)));
    more(out, &format!("UUID: {}", guid::upper(&e.unique_guid)));
    let a = e.attrs;
    if numeric {
        more(out, &format!("Attr: [{:x}]", a.gpt_att()));
    } else if e.is_usr() || e.type_guid == CHROMEOS_KERNEL_TYPE {
        // Flatcar's cgpt shows the boot attributes of USR entries (vboot only of kernels).
        more(out, &format!("Attr: {a}"));
    } else {
        let mut flags = String::new();
        for (bit, name) in [(0, "required"), (1, "efi_ignore"), (2, "legacy_boot")] {
            if a.bit(bit) {
                flags.push_str(&format!("{name}=1 "));
            }
        }
        if !flags.is_empty() {
            more(out, &format!("Attr: {flags}"));
        }
    }
}

fn header_details(out: &mut String, h: &Header) {
    let sig = String::from_utf8_lossy(h.signature()).into_owned();
    let crc_mark = if h.computed_crc() == h.header_crc() {
        ""
    } else {
        "INVALID"
    };
    more(out, &format!("Sig: [{sig}]"));
    more(out, &format!("Rev: {:#010x}", h.revision()));
    more(out, &format!("Size: {} (blocks)", h.header_size()));
    more(
        out,
        &format!("Header CRC: {:#010x} {crc_mark}", h.header_crc()),
    );
    more(out, &format!("My LBA: {}", h.my_lba()));
    more(out, &format!("Alternate LBA: {}", h.alternate_lba()));
    more(out, &format!("First LBA: {}", h.first_usable_lba()));
    more(out, &format!("Last LBA: {}", h.last_usable_lba()));
    more(out, &format!("Disk UUID: {}", guid::upper(&h.disk_guid())));
    more(out, &format!("Entries LBA: {}", h.entries_lba()));
    more(out, &format!("Number of entries: {}", h.num_entries()));
    more(out, &format!("Size of entry: {}", h.entry_size()));
    more(out, &format!("Entries CRC: {:#010x} ", h.entries_crc()));
}

/// One field of one entry, printed bare (`cgpt show -i N -P` and friends).
pub fn field(e: &Entry, f: char) -> String {
    let a = e.attrs;
    match f {
        'b' => e.first_lba.to_string(),
        's' => e.sectors().to_string(),
        't' => guid::upper(&e.type_guid),
        'u' => guid::upper(&e.unique_guid),
        'l' => e.label.clone(),
        'S' => u8::from(a.successful()).to_string(),
        'T' => a.tries().to_string(),
        'P' => a.priority().to_string(),
        'R' => u8::from(a.bit(0)).to_string(),
        'B' => u8::from(a.bit(2)).to_string(),
        // C's printf("%#x") prints a bare 0 for zero.
        'A' if a.gpt_att() == 0 => "0".to_string(),
        'A' => format!("{:#x}", a.gpt_att()),
        _ => unreachable!("option parser only passes known fields"),
    }
}

/// Renders the whole `show` output.
pub fn render(gpt: &Gpt, opts: &ShowOpts) -> Result<String, cgpt::Error> {
    let mut out = String::new();
    if let Some(i) = opts.partition {
        let e = gpt.entry(i)?;
        match opts.field {
            Some(f) => {
                let _ = writeln!(out, "{}", field(&e, f));
            }
            None if opts.quick => row(
                &mut out,
                e.first_lba,
                e.sectors(),
                Some(i),
                &type_text(&e, opts.numeric),
            ),
            None => entry_details(&mut out, &e, opts.numeric),
        }
        return Ok(out);
    }
    if opts.quick {
        for e in gpt.entries() {
            row(
                &mut out,
                e.first_lba,
                e.sectors(),
                Some(e.index),
                &type_text(&e, opts.numeric),
            );
        }
        return Ok(out);
    }
    let geom = gpt.geometry();
    let health = gpt.health();
    if opts.verbose {
        let _ = writeln!(out, "Drive details:");
        let _ = writeln!(
            out,
            "    Total Size (bytes): {}",
            geom.sectors * geom.sector_size
        );
        let _ = writeln!(out, "    LBA Size (bytes): {}", geom.sector_size);
        let _ = writeln!(out, "    Drive Size (blocks): {}\n", geom.sectors);
    }
    let _ = writeln!(out, "       start        size    part  contents");
    row(&mut out, 0, 1, None, "PMBR");
    let es = geom.entries_sectors();
    let invalid = |bad: bool, what: &str| {
        if bad {
            format!("INVALID {what}")
        } else {
            what.to_string()
        }
    };
    row(
        &mut out,
        1,
        1,
        None,
        &invalid(health.primary_header.is_some(), "Pri GPT header"),
    );
    if opts.verbose {
        header_details(&mut out, gpt.raw_header(Which::Primary));
    }
    let p_lba = match health.primary_header {
        None => gpt.raw_header(Which::Primary).entries_lba(),
        Some(_) => geom.default_entries_lba(Which::Primary),
    };
    row(
        &mut out,
        p_lba,
        es,
        None,
        &invalid(health.primary_entries.is_some(), "Pri GPT table"),
    );
    for e in gpt.entries() {
        entry_details(&mut out, &e, opts.numeric);
    }
    let s_lba = geom.default_entries_lba(Which::Secondary);
    row(
        &mut out,
        s_lba,
        es,
        None,
        &invalid(health.secondary_entries.is_some(), "Sec GPT table"),
    );
    row(
        &mut out,
        geom.last_lba(),
        1,
        None,
        &invalid(health.secondary_header.is_some(), "Sec GPT header"),
    );
    if opts.verbose && health.secondary_header.is_some() {
        header_details(&mut out, gpt.raw_header(Which::Secondary));
    }
    Ok(out)
}
