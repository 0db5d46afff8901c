//! `cgpt show`: vboot's layout, with Flatcar's `Attr:` line for USR entries.

use std::fmt::Write as _;

use cgpt::create::IGNORED_SIGNATURE;
use cgpt::guid::{self, CHROMEOS_KERNEL_TYPE};
use cgpt::header::{Header, Which};
use cgpt::pmbr::Pmbr;
use cgpt::table::parse_entries;
use cgpt::{Entry, Gpt};

/// What `show` prints.
#[derive(Debug, Default)]
pub struct ShowOpts {
    pub numeric: bool,
    pub verbose: bool,
    pub quick: bool,
    /// `-d`: drive details, both headers and both tables, valid or not.
    pub debug: bool,
    pub partition: Option<u32>,
    /// One field of `-i N` (`b s t u l S T P R B A`).
    pub field: Option<char>,
}

/// One row: start and size as vboot's `%12 PRId64` (signed), the part column
/// (a number, `INVALID`, `IGNORED` or blank), then the contents.
fn row(out: &mut String, start: u64, size: u64, part: &str, contents: &str) {
    let (start, size) = (start as i64, size as i64);
    let _ = writeln!(out, "{start:>12}{size:>12}{part:>8}  {contents}");
}

fn more(out: &mut String, text: &str) {
    let _ = writeln!(out, "{:34}{text}", "");
}

/// vboot prints `ending - starting + 1` in C's wrapping arithmetic, so an
/// unused (all-zero) entry is 1 sector.
fn row_size(e: &Entry) -> u64 {
    e.last_lba.wrapping_sub(e.first_lba).wrapping_add(1)
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
        row_size(e),
        &e.index.to_string(),
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

fn header_details(out: &mut String, h: &Header, entries: &[u8], numeric: bool) {
    let sig = if numeric {
        let hex: Vec<String> = h.signature().iter().map(|b| format!("{b:02X}")).collect();
        format!("[{}]", hex.join("-"))
    } else {
        format!("[{}]", String::from_utf8_lossy(h.signature()))
    };
    // vboot's HeaderCrc covers `size` bytes as stored (none for a zeroed header).
    let size = (h.header_size() as usize).min(h.as_bytes().len());
    let mut bytes = h.as_bytes()[..size].to_vec();
    if size >= 20 {
        bytes[16..20].fill(0);
    }
    let crc_mark = if crc32fast::hash(&bytes) == h.header_crc() {
        ""
    } else {
        "(INVALID)"
    };
    let n = (h.num_entries().wrapping_mul(h.entry_size())) as usize;
    let ent_ok = entries
        .get(..n)
        .is_some_and(|e| crc32fast::hash(e) == h.entries_crc());
    more(out, &format!("Sig: {sig}"));
    more(out, &format!("Rev: {:#010x}", h.revision()));
    more(out, &format!("Size: {} (blocks)", h.header_size() as i32));
    more(
        out,
        &format!("Header CRC: {:#010x} {crc_mark}", h.header_crc()),
    );
    more(out, &format!("My LBA: {}", h.my_lba() as i64));
    more(out, &format!("Alternate LBA: {}", h.alternate_lba() as i64));
    more(out, &format!("First LBA: {}", h.first_usable_lba() as i64));
    more(out, &format!("Last LBA: {}", h.last_usable_lba() as i64));
    more(out, &format!("Disk UUID: {}", guid::upper(&h.disk_guid())));
    more(out, &format!("Entries LBA: {}", h.entries_lba() as i64));
    more(
        out,
        &format!("Number of entries: {}", h.num_entries() as i32),
    );
    more(out, &format!("Size of entry: {}", h.entry_size() as i32));
    let mark = if ent_ok { "" } else { "INVALID" };
    more(
        out,
        &format!("Entries CRC: {:#010x} {mark}", h.entries_crc()),
    );
}

/// One field of one entry, printed bare (`cgpt show -i N -P` and friends).
pub fn field(e: &Entry, f: char) -> String {
    let a = e.attrs;
    match f {
        'b' => (e.first_lba as i64).to_string(),
        's' if e.first_lba == 0 && e.last_lba == 0 => "0".to_string(),
        's' => (row_size(e) as i64).to_string(),
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

/// One entry's rows without the title (`cgpt find -v`).
pub fn entry_text(e: &Entry, numeric: bool) -> String {
    let mut out = String::new();
    entry_details(&mut out, e, numeric);
    out
}

const TITLE: &str = "       start        size    part  contents\n";

/// Renders the whole `show` output, following vboot's `GptShow`.
pub fn render(gpt: &Gpt, pmbr: &Pmbr, opts: &ShowOpts) -> Result<String, cgpt::Error> {
    let mut out = String::new();
    if let Some(i) = opts.partition {
        let e = gpt.entry(i)?;
        match opts.field {
            Some(f) => {
                let _ = writeln!(out, "{}", field(&e, f));
            }
            None => {
                out.push_str(TITLE);
                entry_details(&mut out, &e, opts.numeric);
            }
        }
        return Ok(out);
    }
    if opts.quick {
        for e in gpt.entries() {
            let ty = type_text(&e, opts.numeric);
            row(
                &mut out,
                e.first_lba,
                row_size(&e),
                &e.index.to_string(),
                &ty,
            );
        }
        return Ok(out);
    }
    let geom = gpt.geometry();
    if opts.verbose || opts.debug {
        let _ = writeln!(out, "Drive details:");
        let _ = writeln!(
            out,
            "    Total Size (bytes): {}",
            geom.sectors * geom.sector_size
        );
        let _ = writeln!(out, "    LBA Size (bytes): {}", geom.sector_size);
        let _ = writeln!(out, "    Drive Size (blocks): {}\n", geom.sectors);
    }
    out.push_str(TITLE);
    row(&mut out, 0, 1, "", &pmbr.describe());
    let primary_ignored = gpt.raw_header(Which::Primary).signature() == IGNORED_SIGNATURE;
    if primary_ignored {
        row(&mut out, 1, 1, "IGNORED", "Pri GPT header");
    } else {
        copy_rows(&mut out, gpt, Which::Primary, opts, false);
    }
    copy_rows(&mut out, gpt, Which::Secondary, opts, primary_ignored);
    Ok(out)
}

/// The rows of one copy: for the primary header then table, for the secondary
/// table then header (vboot's order), with entries and header details where
/// vboot shows them.
fn copy_rows(out: &mut String, gpt: &Gpt, which: Which, opts: &ShowOpts, p_ignored: bool) {
    let geom = gpt.geometry();
    let h = gpt.health();
    let (hdr_ok, ent_ok) = match which {
        Which::Primary => (h.primary_header.is_none(), h.primary_entries.is_none()),
        Which::Secondary => (h.secondary_header.is_none(), h.secondary_entries.is_none()),
    };
    let hdr = gpt.raw_header(which);
    let ents = gpt.raw_entries(which);
    let mark = |ok: bool| if ok { "" } else { "INVALID" };
    let table_sectors =
        u64::from(hdr.num_entries().wrapping_mul(hdr.entry_size())).div_ceil(geom.sector_size);
    let p_hdr = gpt.raw_header(Which::Primary);
    let (show_entries, show_header) = match which {
        Which::Primary => (opts.debug || ent_ok, opts.debug || (hdr_ok && opts.verbose)),
        Which::Secondary => (
            opts.debug
                || p_ignored
                || (ent_ok
                    && (h.primary_entries.is_some() || ents != gpt.raw_entries(Which::Primary))),
            opts.debug
                || p_ignored
                || (hdr_ok
                    && (h.primary_header.is_some() || !synonymous(p_hdr, hdr))
                    && opts.verbose),
        ),
    };
    let header_row = |out: &mut String| match (which, hdr_ok) {
        (Which::Primary, _) => row(out, 1, 1, mark(hdr_ok), "Pri GPT header"),
        (Which::Secondary, true) => row(out, geom.last_lba(), 1, "", "Sec GPT header"),
        // vboot prints LBA 1 for an invalid secondary header.
        (Which::Secondary, false) => row(out, 1, 1, "INVALID", "Sec GPT header"),
    };
    let name = if which == Which::Primary {
        "Pri GPT table"
    } else {
        "Sec GPT table"
    };
    if which == Which::Primary {
        header_row(out);
        if show_header {
            header_details(out, hdr, ents, opts.numeric);
        }
    }
    row(out, hdr.entries_lba(), table_sectors, mark(ent_ok), name);
    if show_entries {
        for e in parse_entries(ents).iter().filter(|e| e.is_used()) {
            entry_details(out, e, opts.numeric);
        }
    }
    if which == Which::Secondary {
        header_row(out);
        if show_header {
            header_details(out, hdr, ents, opts.numeric);
        }
    }
}

/// vboot's `IsSynonymous`: the copies describe the same disk layout.
fn synonymous(a: &Header, b: &Header) -> bool {
    a.first_usable_lba() == b.first_usable_lba()
        && a.last_usable_lba() == b.last_usable_lba()
        && a.num_entries() == b.num_entries()
        && a.entry_size() == b.entry_size()
        && a.disk_guid() == b.disk_guid()
}
