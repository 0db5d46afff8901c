//! An independent model of Flatcar GRUB's GPT reader and `gptprio.next`
//! (flatcar/grub 2.02-coreos `grub-core/lib/gpt.c`, `commands/gptprio.c`),
//! written over raw bytes so it shares no code with the crate it checks.
#![allow(dead_code)]

const SS: u64 = 512;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The 92 bytes GRUB reads of a header.
#[derive(Clone)]
struct Hdr([u8; 92]);

impl Hdr {
    fn at(img: &[u8], lba: u64) -> Option<Hdr> {
        let off = usize::try_from(lba.checked_mul(SS)?).ok()?;
        img.get(off..off + 92).map(|b| Hdr(b.try_into().unwrap()))
    }
    fn header_lba(&self) -> u64 {
        u64_at(&self.0, 24)
    }
    fn alternate(&self) -> u64 {
        u64_at(&self.0, 32)
    }
    fn start(&self) -> u64 {
        u64_at(&self.0, 40)
    }
    fn end(&self) -> u64 {
        u64_at(&self.0, 48)
    }
    fn partitions(&self) -> u64 {
        u64_at(&self.0, 72)
    }
    fn maxpart(&self) -> u32 {
        u32_at(&self.0, 80)
    }
    fn entry_size(&self) -> u32 {
        u32_at(&self.0, 84)
    }
    fn entries_crc(&self) -> u32 {
        u32_at(&self.0, 88)
    }
    fn entries_bytes(&self) -> u64 {
        u64::from(self.maxpart()) * u64::from(self.entry_size())
    }
    fn entries_sectors(&self) -> u64 {
        self.entries_bytes().div_ceil(SS)
    }

    /// grub_gpt_header_check.
    fn check(&self) -> Result<(), &'static str> {
        if &self.0[0..8] != b"EFI PART" {
            return Err("invalid GPT signature");
        }
        if u32_at(&self.0, 8) != 0x0001_0000 {
            return Err("unknown GPT version");
        }
        let mut z = self.0;
        z[16..20].fill(0);
        if crc32fast::hash(&z) != u32_at(&self.0, 16) {
            return Err("invalid GPT header crc32");
        }
        let size = u32_at(&self.0, 12);
        if !(92..=512).contains(&size) {
            return Err("invalid GPT header size");
        }
        let es = self.entry_size();
        if es < 128 || !es.is_multiple_of(128) || !(es / 128).is_power_of_two() {
            return Err("invalid GPT entry size");
        }
        if self.entries_bytes() < 16384 {
            return Err("invalid GPT entry table size");
        }
        if self.start() > self.end() {
            return Err("invalid usable sectors");
        }
        Ok(())
    }

    fn check_primary(&self) -> Result<(), &'static str> {
        self.check()?;
        if self.header_lba() != 1 {
            return Err("invalid primary GPT LBA");
        }
        let e = self.partitions();
        if e <= 1 || e.wrapping_add(self.entries_sectors()) > self.start() {
            return Err("invalid entries location");
        }
        if self.alternate() <= self.end() {
            return Err("invalid backup GPT LBA");
        }
        Ok(())
    }

    fn check_backup(&self, valid_primary: Option<&Hdr>) -> Result<(), &'static str> {
        self.check()?;
        if self.alternate() != 1 {
            return Err("invalid primary GPT LBA");
        }
        let e = self.partitions();
        if e <= self.end() || e.wrapping_add(self.entries_sectors()) > self.header_lba() {
            return Err("invalid entries location");
        }
        if self.header_lba() <= self.end() {
            return Err("invalid backup GPT LBA");
        }
        if let Some(p) = valid_primary {
            let same = p.0[12..16] == self.0[12..16]
                && p.header_lba() == self.alternate()
                && p.alternate() == self.header_lba()
                && p.0[40..56] == self.0[40..56]
                && p.0[56..72] == self.0[56..72]
                && p.0[80..92] == self.0[80..92];
            if !same {
                return Err("backup GPT out of sync");
            }
        }
        Ok(())
    }

    fn entries<'a>(&self, img: &'a [u8]) -> Result<&'a [u8], &'static str> {
        let off = self.partitions().checked_mul(SS).ok_or("out of disk")? as usize;
        let ents = img
            .get(off..off + self.entries_bytes() as usize)
            .ok_or("attempt to read outside of disk")?;
        if crc32fast::hash(ents) != self.entries_crc() {
            return Err("invalid GPT entry crc32");
        }
        Ok(ents)
    }
}

/// What GRUB's reader makes of a disk: the entries (and their stride) it would
/// use, or the error it stops with (the primary's, as GRUB reports it).
pub fn grub_read(img: &[u8]) -> Result<(Vec<u8>, u32), &'static str> {
    let total = img.len() as u64 / SS;
    let p = Hdr::at(img, 1).ok_or("short read")?;
    let p_hdr_ok = p.check_primary().is_ok();
    let p_ents = if p_hdr_ok {
        p.entries(img)
    } else {
        Err("primary header invalid")
    };
    let primary_err = p.check_primary().err().or(p_ents.err());
    let b_lba = if p_hdr_ok { p.alternate() } else { total - 1 };
    let backup = (|| {
        if b_lba >= total {
            return Err("backup GPT beyond last disk sector");
        }
        let b = Hdr::at(img, b_lba).ok_or("short read")?;
        b.check_backup(p_hdr_ok.then_some(&p))?;
        if b.header_lba() != b_lba {
            return Err("invalid backup GPT LBA");
        }
        let ents = b.entries(img)?;
        if let Ok(pe) = p_ents
            && pe != ents
        {
            return Err("backup GPT out of sync");
        }
        Ok((b, ents))
    })();
    let (entries, stride) = match (p_ents, &backup) {
        (Ok(e), _) => (e.to_vec(), p.entry_size()),
        (Err(_), Ok((b, e))) => (e.to_vec(), b.entry_size()),
        (Err(_), Err(_)) => return Err(primary_err.unwrap_or("no valid GPT")),
    };
    // grub_gpt_repair + grub_gpt_update regenerate the missing copy and
    // re-check both; a backup whose usable area starts before LBA 34 cannot
    // get a primary at LBA 2 and GRUB gives up.
    if p_ents.is_ok() && backup.is_err() {
        let bh = p.alternate().max(total - 1);
        let e = bh - p.entries_sectors();
        if e <= p.end() {
            return Err("Generated invalid GPT backup header");
        }
    }
    if p_ents.is_err() {
        let (b, _) = backup.as_ref().unwrap();
        let mut np = b.clone();
        np.0[24..32].copy_from_slice(&b.alternate().to_le_bytes());
        np.0[32..40].copy_from_slice(&b.header_lba().to_le_bytes());
        np.0[72..80].copy_from_slice(&2u64.to_le_bytes());
        np.0[12..16].copy_from_slice(&92u32.to_le_bytes());
        np.0[16..20].fill(0);
        let crc = crc32fast::hash(&np.0);
        np.0[16..20].copy_from_slice(&crc.to_le_bytes());
        np.check_primary()
            .map_err(|_| "Generated invalid GPT primary header")?;
    }
    Ok((entries, stride))
}

/// GRUB `gptprio.next` on a disk image: the chosen partition's unique GUID
/// (lower case) and whether GRUB would write, or GRUB's error.
pub fn grub_next(img: &[u8]) -> Result<(String, bool), &'static str> {
    const USR: [u8; 16] = [
        0xF4, 0xF5, 0xFB, 0x5D, 0x48, 0x28, 0xAC, 0x4B, 0xAA, 0x5E, 0x0D, 0x9A, 0x20, 0xB7, 0x45,
        0xA6,
    ];
    let (entries, stride) = grub_read(img)?;
    let mut best: Option<&[u8]> = None;
    for e in entries.chunks_exact(stride as usize) {
        if e[0..16] != USR {
            continue;
        }
        let a = u64_at(e, 48);
        let (prio, tries, ok) = ((a >> 48) & 15, (a >> 52) & 15, (a >> 56) & 1);
        let old = best.map_or(0, |b| (u64_at(b, 48) >> 48) & 15);
        if (tries > 0 || ok == 1) && prio > old {
            best = Some(e);
        }
    }
    let e = best.ok_or("no such partition")?;
    let g = uuid::Uuid::from_bytes_le(e[16..32].try_into().unwrap());
    Ok((g.hyphenated().to_string(), (u64_at(e, 48) >> 52) & 15 > 0))
}
