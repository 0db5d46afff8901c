//! `cgpt`: command-line compatible with vboot's and Flatcar's cgpt for what
//! Flatcar's scripts and admins use (`create add boot show repair find
//! prioritize legacy next resize`).
//!
//! Exit codes are 0 and 1, as in cgpt; unlike cgpt, every failure exits 1
//! (cgpt returns 0 from a refused `prioritize` and a failed `repair`).

mod admin;
mod args;
mod show;
use cgpt::usage;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cgpt::blockdev::{self, Target};
use cgpt::ops::{self, FindQuery};
use cgpt::{Attributes, Entry, FileDisk, Gpt, WriteMode, attrs, guid};
use lexopt::prelude::*;

use args::{UsageError, num_in};

const COMMANDS: [&str; 10] = [
    "create",
    "add",
    "boot",
    "show",
    "repair",
    "find",
    "prioritize",
    "legacy",
    "next",
    "resize",
];

fn main() -> ExitCode {
    tracing_init();
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(cmd) = argv.first().and_then(|c| c.to_str()) else {
        print!("{}", usage::TOP);
        return ExitCode::FAILURE;
    };
    // Like cgpt, any unique prefix names a command.
    let matches: Vec<&str> = COMMANDS
        .iter()
        .copied()
        .filter(|c| c.starts_with(cmd))
        .collect();
    let (name, help) = match matches.as_slice() {
        [one] => (*one, usage_of(one)),
        _ => {
            eprintln!("ERROR: unknown command: {cmd}");
            print!("{}", usage::TOP);
            return ExitCode::FAILURE;
        }
    };
    let parser = lexopt::Parser::from_args(argv[1..].to_vec());
    let result = match name {
        "add" => cmd_add(parser),
        "show" => cmd_show(parser),
        "repair" => cmd_repair(parser),
        "find" => cmd_find(parser),
        "prioritize" => cmd_prioritize(parser),
        "create" => admin::cmd_create(parser),
        "boot" => admin::cmd_boot(parser),
        "legacy" => admin::cmd_legacy(parser),
        "resize" => admin::cmd_resize(parser),
        _ => cmd_next(parser),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("ERROR: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                print!("{help}");
            }
            ExitCode::FAILURE
        }
    }
}

fn tracing_init() {
    // Quiet unless asked: cgpt's output is parsed by scripts.
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CGPT_LOG").unwrap_or_else(|_| "off".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn usage_of(cmd: &str) -> String {
    match cmd {
        "add" => usage::add(),
        "show" => usage::SHOW.into(),
        "repair" => usage::REPAIR.into(),
        "find" => usage::FIND.into(),
        "prioritize" => usage::PRIORITIZE.into(),
        "create" => usage::CREATE.into(),
        "boot" => usage::BOOT.into(),
        "legacy" => usage::LEGACY.into(),
        "resize" => usage::RESIZE.into(),
        _ => usage::NEXT.into(),
    }
}

/// The single DRIVE argument, resolved from a partition device to disk + index.
fn drive(drive: Option<OsString>) -> Result<Target> {
    let drive = drive.ok_or_else(|| UsageError("missing drive argument".into()))?;
    let path = PathBuf::from(drive);
    blockdev::resolve(&path).with_context(|| format!("Can't open {}", path.display()))
}

fn open(path: &Path, write: bool) -> Result<FileDisk> {
    let r = if write {
        FileDisk::open_rw(path)
    } else {
        FileDisk::open_ro(path)
    };
    r.with_context(|| format!("Can't open {}", path.display()))
}

/// `-i` from the command line and from a partition device must agree.
fn partition(flag: Option<u32>, target: &Target) -> Result<Option<u32>> {
    match (flag, target.partition) {
        (Some(a), Some(b)) if a != b => {
            bail!("-i {a} contradicts the partition device (partition {b})")
        }
        (a, b) => Ok(a.or(b)),
    }
}

fn warn_health(gpt: &Gpt) {
    let h = gpt.health();
    if h.is_clean() {
        return;
    }
    if h.primary_header.is_some() {
        eprintln!("WARNING: Primary GPT header is invalid");
    }
    if h.secondary_header.is_some() {
        eprintln!("WARNING: Secondary GPT header is invalid");
    }
    eprintln!("WARNING: One of the GPT headers/entries is invalid ({h})\n");
}

fn positional(slot: &mut Option<OsString>, v: OsString) -> Result<()> {
    if slot.replace(v).is_some() {
        return Err(UsageError("too many arguments".into()).into());
    }
    Ok(())
}

fn cmd_show(mut p: lexopt::Parser) -> Result<ExitCode> {
    let mut o = show::ShowOpts::default();
    let mut drv = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('n') => o.numeric = true,
            Short('v') => o.verbose = true,
            Short('q') => o.quick = true,
            Short('d') => o.debug = true,
            Short('i') => {
                o.partition = Some(num_in('i', p.value()?, 0, u64::from(u32::MAX))? as u32)
            }
            Short(c @ ('b' | 's' | 't' | 'u' | 'l' | 'S' | 'T' | 'P' | 'R' | 'B' | 'A')) => {
                o.field = Some(c)
            }
            Short('h') => return help(usage::SHOW),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    o.partition = partition(o.partition, &target)?;
    if o.field.is_some() && o.partition.is_none() {
        return Err(UsageError("-i required when displaying a single item".into()).into());
    }
    let mut disk = open(&target.disk, false)?;
    let gpt = Gpt::read(&mut disk)?;
    warn_health(&gpt);
    let pmbr = admin::read_pmbr(&mut disk)?;
    print!("{}", show::render(&gpt, &pmbr, &o)?);
    Ok(ExitCode::SUCCESS)
}

fn help(text: &str) -> Result<ExitCode> {
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct AddOpts {
    index: Option<u32>,
    begin: Option<u64>,
    size: Option<u64>,
    type_guid: Option<uuid::Uuid>,
    unique: Option<uuid::Uuid>,
    label: Option<String>,
    successful: Option<u64>,
    tries: Option<u64>,
    priority: Option<u64>,
    required: Option<u64>,
    legacy_boot: Option<u64>,
    raw: Option<u64>,
}

fn cmd_add(mut p: lexopt::Parser) -> Result<ExitCode> {
    let mut o = AddOpts::default();
    let mut drv = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('i') => o.index = Some(num_in('i', p.value()?, 0, u64::from(u32::MAX))? as u32),
            Short('b') => o.begin = Some(num_in('b', p.value()?, 0, u64::MAX)?),
            Short('s') => o.size = Some(num_in('s', p.value()?, 0, u64::MAX)?),
            Short('t') => o.type_guid = Some(args::type_guid(p.value()?)?),
            Short('u') => o.unique = Some(args::unique_guid(p.value()?)?),
            Short('l') => o.label = Some(args::string(p.value()?)?),
            Short('S') => o.successful = Some(num_in('S', p.value()?, 0, 1)?),
            Short('T') => o.tries = Some(num_in('T', p.value()?, 0, 15)?),
            Short('P') => o.priority = Some(num_in('P', p.value()?, 0, 15)?),
            Short('R') => o.required = Some(num_in('R', p.value()?, 0, 1)?),
            Short('B') => o.legacy_boot = Some(num_in('B', p.value()?, 0, 1)?),
            Short('A') => o.raw = Some(num_in('A', p.value()?, 0, 0xffff)?),
            Short('h') => return help(&usage::add()),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    if o.raw.is_some() && (o.priority.is_some() || o.tries.is_some() || o.successful.is_some()) {
        // vboot silently lets -A win; an admin mixing them made a mistake worth naming.
        return Err(UsageError("-A cannot be combined with -P, -T or -S".into()).into());
    }
    let target = drive(drv)?;
    let index = partition(o.index.filter(|&i| i != 0), &target)?;
    let mut disk = open(&target.disk, true)?;
    let mut gpt = Gpt::read(&mut disk)?;
    if !gpt.health().is_clean() {
        warn_health(&gpt);
        bail!("please run 'cgpt repair' before adding anything.");
    }
    let index = match index {
        Some(i) => i,
        None => gpt
            .all_entries()
            .iter()
            .find(|e| !e.is_used())
            .map(|e| e.index)
            .context("no unused entry left")?,
    };
    let mut e: Entry = gpt.entry(index)?;
    if !e.is_used() && (o.type_guid.is_none() || o.begin.is_none() || o.size.is_none()) {
        bail!("-t, -b, and -s options are required for new partitions");
    }
    apply_add(&mut e, &o)?;
    gpt.set_entry(&e)?;
    gpt.write(&mut disk, WriteMode::RequireClean)?;
    Ok(ExitCode::SUCCESS)
}

fn apply_add(e: &mut Entry, o: &AddOpts) -> Result<()> {
    if let Some(b) = o.begin {
        let len = e.sectors();
        e.first_lba = b;
        e.last_lba = b + len.max(1) - 1;
    }
    if let Some(s) = o.size {
        if s == 0 {
            bail!("partition size must be at least 1 sector");
        }
        e.last_lba = e
            .first_lba
            .checked_add(s - 1)
            .context("partition end overflows")?;
    }
    if let Some(t) = o.type_guid {
        e.type_guid = t;
    }
    if let Some(u) = o.unique {
        e.unique_guid = u;
    } else if e.unique_guid.is_nil() {
        e.unique_guid = uuid::Uuid::new_v4();
    }
    if let Some(l) = &o.label {
        e.label = l.clone();
    }
    let a: &mut Attributes = &mut e.attrs;
    if let Some(v) = o.raw {
        a.set_gpt_att(v as u16);
    }
    if let Some(v) = o.successful {
        a.set_successful(v)?;
    }
    if let Some(v) = o.tries {
        a.set_tries(v)?;
    }
    if let Some(v) = o.priority {
        a.set_priority(v)?;
    }
    if let Some(v) = o.required {
        a.set_bit(attrs::REQUIRED_BIT, v == 1);
    }
    if let Some(v) = o.legacy_boot {
        a.set_bit(attrs::LEGACY_BOOT_BIT, v == 1);
    }
    Ok(())
}

fn cmd_prioritize(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut index, mut max, mut friends, mut drv) = (None, None, false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('i') => index = Some(num_in('i', p.value()?, 1, 128)? as u32),
            Short('P') => max = Some(num_in('P', p.value()?, 1, 15)? as u8),
            Short('f') => friends = true,
            Short('h') => return help(usage::PRIORITIZE),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let index = partition(index, &target)?;
    let mut disk = open(&target.disk, true)?;
    let mut gpt = Gpt::read(&mut disk)?;
    if !gpt.health().is_clean() {
        warn_health(&gpt);
        bail!("please run 'cgpt repair' before reordering the priority.");
    }
    let entries = gpt.entries();
    // The slot type: the -i partition's (USR or ChromeOS kernel), else USR if the
    // disk has any USR partition, else ChromeOS kernel (vboot's behaviour).
    let slot_type = match index {
        Some(i) => {
            let e = gpt.used_entry(i)?;
            if !e.is_usr() && e.type_guid != guid::CHROMEOS_KERNEL_TYPE {
                bail!("partition {i} is not a Flatcar USR or ChromeOS kernel partition");
            }
            e.type_guid
        }
        None if entries.iter().any(Entry::is_usr) => guid::USR_TYPE,
        None => guid::CHROMEOS_KERNEL_TYPE,
    };
    for (i, a) in ops::prioritize(&entries, &slot_type, index, max, friends) {
        gpt.set_attributes(i, a)?;
    }
    gpt.write(&mut disk, WriteMode::RequireClean)?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_next(mut p: lexopt::Parser) -> Result<ExitCode> {
    let mut drv = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') => return help(usage::NEXT),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let mut disk = open(&target.disk, true)?;
    let chosen = cgpt::slot::boot_next(&mut disk)?;
    println!("{}", chosen.unique_guid.hyphenated());
    Ok(ExitCode::SUCCESS)
}

fn cmd_find(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut q, mut numeric, mut one, mut verbose, mut drv) =
        (FindQuery::default(), false, false, false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('t') => q.type_guid = Some(args::type_guid(p.value()?)?),
            Short('u') => q.unique_guid = Some(args::unique_guid(p.value()?)?),
            Short('l') => q.label = Some(args::string(p.value()?)?),
            Short('n') => numeric = true,
            Short('1') => one = true,
            Short('v') => verbose = true,
            Short('h') => return help(usage::FIND),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    if q.type_guid.is_none() && q.unique_guid.is_none() && q.label.is_none() {
        return Err(UsageError("you must specify at least one of -t, -u, or -l".into()).into());
    }
    // Unlike cgpt we never scan every disk of the machine: DRIVE is required.
    let target = drive(drv)?;
    let mut disk = open(&target.disk, false)?;
    let gpt = Gpt::read(&mut disk)?;
    let entries = gpt.entries();
    let hits = ops::find(&entries, &q);
    let name = target.disk.display().to_string();
    let sep = if name.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    for e in &hits {
        if numeric {
            println!("{}", e.index);
        } else {
            println!("{name}{sep}{}", e.index);
        }
        if verbose {
            print!("{}", show::entry_text(e, false));
        }
    }
    let ok = if one {
        hits.len() == 1
    } else {
        !hits.is_empty()
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_repair(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut verbose, mut drv) = (false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('v') => verbose = true,
            Short('h') => return help(usage::REPAIR),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let mut disk = open(&target.disk, true)?;
    let gpt = Gpt::read(&mut disk)?;
    warn_health(&gpt);
    if verbose {
        println!("GptValidityCheck() returned 0: GPT_SUCCESS");
    }
    for line in gpt.repair(&mut disk)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
