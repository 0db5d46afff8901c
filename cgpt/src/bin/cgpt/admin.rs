//! The table-shaping verbs: `resize` (Flatcar's), `create`, `boot` and `legacy`
//! (vboot's).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cgpt::create::{self, LegacyMode};
use cgpt::disk::Disk as _;
use cgpt::pmbr::{BOOTCODE_LEN, Pmbr};
use cgpt::resize::{self, Grown};
use cgpt::{FileDisk, Gpt};
use lexopt::prelude::*;

use super::args::{UsageError, num_in};
use super::{drive, help, open, partition, positional, usage};

/// `cgpt resize [-m BYTES] PARTITION` (Flatcar): PARTITION is a partition
/// device; an image file takes `-i N` instead.
pub fn cmd_resize(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut min, mut index, mut drv) = (resize::DEFAULT_MIN_BYTES, None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('m') => min = num_in('m', p.value()?, 0, u64::from(u32::MAX))?,
            Short('i') => index = Some(num_in('i', p.value()?, 1, 128)? as u32),
            Short('h') => return help(usage::RESIZE),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    if drv.is_none() {
        bail!("missing partition argument");
    }
    let target = drive(drv)?;
    let index = partition(index, &target)?
        .context("not a partition device (give -i N for a disk image)")?;
    let mut disk = open(&target.disk, true)?;
    let notify_kernel = target.partition.is_some() && disk.is_block_device();
    let file = disk
        .file()
        .try_clone()
        .context("duplicating the disk handle")?;
    resize::grow(&mut disk, index, min, |g: &Grown| {
        if !notify_kernel {
            return Ok(());
        }
        let len = (g.new_last_lba - g.first_lba + 1) * g.sector_size;
        cgpt::blockdev::resize_partition(&file, g.index, g.first_lba * g.sector_size, len)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `cgpt create [-z] [-p PADDING] DRIVE`.
pub fn cmd_create(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut zap, mut padding, mut drv) = (false, 0, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('z') => zap = true,
            Short('p') => padding = num_in('p', p.value()?, 0, u64::from(u32::MAX))?,
            Short('h') => return help(usage::CREATE),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let mut disk = open(&target.disk, true)?;
    if zap {
        create::zap(&mut disk)?;
    } else {
        create::create(&mut disk, &uuid::Uuid::new_v4(), padding)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// LBA 0 as vboot's PMBR.
pub fn read_pmbr(disk: &mut FileDisk) -> Result<Pmbr> {
    let mut buf = [0u8; 512];
    disk.read_at(0, &mut buf).context("Unable to read PMBR")?;
    Ok(Pmbr::from_bytes(&buf))
}

/// `cgpt boot [-i N] [-b FILE] [-p] DRIVE`: prints (and with options first sets)
/// the PMBR boot GUID; only LBA 0 is ever written.
pub fn cmd_boot(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut index, mut bootfile, mut make_pmbr, mut drv) = (None, None, false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('i') => index = Some(num_in('i', p.value()?, 1, u64::from(u32::MAX))? as u32),
            Short('b') => bootfile = Some(p.value()?),
            Short('p') => make_pmbr = true,
            Short('h') => return help(usage::BOOT),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let write = make_pmbr || index.is_some() || bootfile.is_some();
    let mut disk = open(&target.disk, write)?;
    let mut mbr = read_pmbr(&mut disk)?;
    if make_pmbr {
        let sectors = disk.size_bytes().context("reading the disk size")? / 512;
        mbr.make_protective(sectors);
    }
    if let Some(i) = index {
        let gpt = Gpt::read(&mut disk)?;
        mbr.set_boot_guid(&gpt.entry(i)?.unique_guid);
    }
    if let Some(f) = &bootfile {
        let code =
            std::fs::read(f).with_context(|| format!("Can't read {}", f.to_string_lossy()))?;
        if code.is_empty() {
            bail!("problem reading {}: empty file", f.to_string_lossy());
        }
        mbr.set_bootcode(&code[..code.len().min(BOOTCODE_LEN)]);
    }
    println!("{}", cgpt::guid::upper(&mbr.boot_guid()));
    if write {
        disk.write_at(0, mbr.as_bytes())
            .context("writing the PMBR")?;
        disk.sync().context("writing the PMBR (sync)")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cgpt legacy [-e|-p] DRIVE`.
pub fn cmd_legacy(mut p: lexopt::Parser) -> Result<ExitCode> {
    let (mut mode, mut drv) = (LegacyMode::ChromeOs, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('e') => mode = LegacyMode::EfiPart,
            Short('p') => mode = LegacyMode::IgnorePrimary,
            Short('h') => return help(usage::LEGACY),
            Value(v) => positional(&mut drv, v)?,
            other => return Err(UsageError::from(other.unexpected()).into()),
        }
    }
    let target = drive(drv)?;
    let mut disk = open(&target.disk, true)?;
    create::legacy(&mut disk, mode)?;
    Ok(ExitCode::SUCCESS)
}
