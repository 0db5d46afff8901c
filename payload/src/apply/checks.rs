//! The checks around the operations: before the first write (release
//! binding, every slot present and large enough) and after the last (payload
//! signature, each written partition read back and re-hashed).

use super::slots::Slots;
use crate::error::{PayloadError, Result};
use crate::keys::{Keyring, SigCheck};
use crate::plan::Plan;
use crate::proto::{InstallOperation, OpType};
use crate::sha::{ResumableSha256, sha256};
use crate::storage::Storage;
use std::sync::mpsc;

/// What the engine binds to the Omaha answer; checked before any write.
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    pub version: Option<String>,
    pub app_id: Option<String>,
    pub board: Option<String>,
    /// Downgrade protection: the payload's timestamp must be at least this.
    pub min_timestamp: Option<i64>,
    /// Accept a CrAU v1 payload (Flatcar's format), which carries no release
    /// info or timestamp: the fields above are then not checked here, and
    /// the caller must bind the payload to its release another way (by the
    /// whole-file hash from the server and by what the written image says
    /// of itself). [`crate::ApplyReport::major`] tells which case it was.
    pub v1_unbound: bool,
}

/// The payload's release info and timestamp against what Omaha announced.
pub(super) fn check_release(e: &Expectations, plan: &Plan) -> Result<()> {
    if plan.major == 1 && e.v1_unbound {
        return Ok(());
    }
    let rel = plan.release.clone().unwrap_or_default();
    for (what, want, got) in [
        ("version", &e.version, &rel.version),
        ("app id", &e.app_id, &rel.app_id),
        ("board", &e.board, &rel.board),
    ] {
        if let Some(want) = want
            && Some(want) != got.as_ref()
        {
            return Err(PayloadError::ReleaseMismatch(format!(
                "{what} {:?} in the payload, {want:?} expected",
                got.as_deref().unwrap_or("")
            )));
        }
    }
    if let Some(min) = e.min_timestamp
        && plan.timestamp.unwrap_or(i64::MIN) < min
    {
        return Err(PayloadError::ReleaseMismatch(format!(
            "payload timestamp {} is older than {min} (downgrade)",
            plan.timestamp.unwrap_or(0)
        )));
    }
    Ok(())
}

/// Every slot found and sized before the first write. Returns the
/// partitions that will be verified but not written (`skip_missing`).
pub(super) fn check_slots(plan: &Plan, slots: &mut Slots) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    let skip_missing = slots.skip_missing;
    for p in &plan.partitions {
        match slots.get_mut(&p.name) {
            None if skip_missing => skipped.push(p.name.clone()),
            None => return Err(PayloadError::UnknownPartition(p.name.clone())),
            Some(slot) => {
                let cap = slot
                    .target
                    .capacity()
                    .map_err(|e| target_err(&p.name, 0, e))?;
                if cap.is_some_and(|c| c < p.new_size) {
                    return Err(PayloadError::InvalidManifest(format!(
                        "partition {}: target holds {} bytes, the image needs {}",
                        p.name,
                        cap.unwrap_or(0),
                        p.new_size
                    )));
                }
                if p.old.is_some() && slot.source.is_none() && p.ops.iter().any(needs_source) {
                    return Err(PayloadError::InvalidManifest(format!(
                        "partition {}: delta payload but no source slot given",
                        p.name
                    )));
                }
            }
        }
    }
    Ok(skipped)
}

fn needs_source(op: &InstallOperation) -> bool {
    matches!(
        OpType::try_from(op.r#type),
        Ok(OpType::SourceCopy | OpType::SourceBsdiff | OpType::BrotliBsdiff)
    )
}

/// The payload signature over header + manifest + blobs (`signed`, the
/// digest) against the keyring; returns the signer's name.
pub(super) fn check_payload_signature(
    keys: &Keyring,
    signed: &[u8; 32],
    sig: &[u8],
) -> Result<String> {
    keys.verify_blob(signed, sig).map_err(|e| {
        sig_err(
            e,
            PayloadError::PayloadSignatureInvalid,
            PayloadError::PayloadSignatureMismatch,
        )
    })
}

/// A signature check's failure as the error of the signature at hand
/// (metadata or payload): `parse` for an unreadable blob, `mismatch` for a
/// wrong signature; keyring errors stay as they are.
pub(super) fn sig_err(
    e: SigCheck,
    parse: fn(String) -> PayloadError,
    mismatch: PayloadError,
) -> PayloadError {
    match e {
        SigCheck::Keyring(e) => e,
        SigCheck::Parse(s) => parse(s),
        SigCheck::Mismatch => mismatch,
    }
}

/// After every check passed: truncate kernel files, sync, then read each
/// written partition back and compare it with `new_partition_info`. Returns
/// the partitions written, with their sizes.
pub(super) fn check_written(plan: &Plan, slots: &mut Slots) -> Result<Vec<(String, u64)>> {
    let mut written = Vec::new();
    for p in &plan.partitions {
        let Some(slot) = slots.get_mut(&p.name) else {
            continue;
        };
        if slot.truncate {
            slot.target
                .truncate(p.new_size)
                .map_err(|e| target_err(&p.name, p.new_size, e))?;
        }
        slot.target.sync().map_err(|e| target_err(&p.name, 0, e))?;
        if hash_storage(slot.target.as_mut(), p.new_size).map_err(|e| target_err(&p.name, 0, e))?
            != p.new_hash
        {
            return Err(PayloadError::PartitionHashMismatch {
                partition: p.name.clone(),
            });
        }
        written.push((p.name.clone(), p.new_size));
    }
    Ok(written)
}

/// SHA-256 of `[0, len)` of a storage, read back from it. A helper thread
/// reads the next 4 MiB while this one hashes the last (two buffers).
pub fn hash_storage(s: &mut dyn Storage, len: u64) -> std::io::Result<[u8; 32]> {
    const CHUNK: u64 = 4 << 20;
    if len <= CHUNK {
        let mut buf = vec![0u8; len as usize];
        s.read_exact_at(&mut buf, 0)?;
        return Ok(sha256(&buf));
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        let _ = empty_tx.send(vec![0u8; CHUNK as usize]);
    }
    std::thread::scope(|sc| {
        sc.spawn(move || {
            let mut off = 0u64;
            while off < len {
                let Ok(mut buf) = empty_rx.recv() else {
                    return;
                };
                let n = (len - off).min(CHUNK) as usize;
                buf.resize(n, 0);
                let r = s.read_exact_at(&mut buf, off).map(|()| buf);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
                off += n as u64;
            }
        });
        let mut h = ResumableSha256::new();
        let mut got = 0u64;
        while got < len {
            let buf = full_rx
                .recv()
                .map_err(|_| std::io::Error::other("read-back thread stopped"))??;
            h.update(&buf);
            got += buf.len() as u64;
            let _ = empty_tx.send(buf);
        }
        Ok(h.digest())
    })
}

pub(super) fn target_err(partition: &str, offset: u64, source: std::io::Error) -> PayloadError {
    PayloadError::TargetIo {
        partition: partition.into(),
        offset,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_storage_reads_back_any_length() {
        let data: Vec<u8> = (0..(9 << 20) + 123u32).map(|i| (i % 251) as u8).collect();
        for len in [0usize, 1, 4 << 20, (4 << 20) + 1, data.len()] {
            let mut v = data.clone();
            assert_eq!(
                hash_storage(&mut v, len as u64).unwrap(),
                sha256(&data[..len])
            );
        }
        let mut short = vec![0u8; 5 << 20];
        assert!(hash_storage(&mut short, 9 << 20).is_err());
    }
}
