//! Executes one validated install operation against a target (and source).
//! Source bytes are hashed before they are used; output never exceeds the
//! operation's destination extents.

use crate::extent_writer::{ExtentWriter, extent_ranges};
use crate::proto::{Extent, InstallOperation, OpType};
use crate::sha::sha256;
use crate::storage::Storage;
use std::io::{self, Read, Write};

#[derive(Debug)]
pub enum OpFailure {
    SourceHash,
    SourceIo(io::Error),
    TargetIo(u64, io::Error),
    Data(String),
}

/// Reusable buffers of an applier.
#[derive(Debug, Default)]
pub struct Scratch {
    src: Vec<u8>,
    buf: Vec<u8>,
}

static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

pub fn execute(
    ty: OpType,
    op: &InstallOperation,
    blob: &[u8],
    bs: u64,
    target: &mut dyn Storage,
    source: Option<&mut dyn Storage>,
    scratch: &mut Scratch,
) -> Result<(), OpFailure> {
    let dst = &op.dst_extents;
    match ty {
        OpType::Replace => {
            let mut w = ExtentWriter::new(target, dst, bs);
            w.write_all(blob).map_err(|e| werr(dst, bs, e))?;
            w.finish_padded().map_err(|e| werr(dst, bs, e))?;
        }
        OpType::ReplaceBz => pump(bzip2::read::BzDecoder::new(blob), target, dst, bs, scratch)?,
        OpType::ReplaceXz => pump(
            liblzma::read::XzDecoder::new(blob),
            target,
            dst,
            bs,
            scratch,
        )?,
        OpType::ReplaceZstd => {
            let d = zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(|e| OpFailure::Data(e.to_string()))?;
            pump(d.single_frame(), target, dst, bs, scratch)?
        }
        OpType::Zero | OpType::Discard => write_zeros(target, dst, bs)?,
        OpType::SourceCopy | OpType::Move => {
            read_source(ty, op, bs, target, source, &mut scratch.src)?;
            let mut w = ExtentWriter::new(target, dst, bs);
            w.write_all(&scratch.src).map_err(|e| werr(dst, bs, e))?;
            w.finish_exact()
                .map_err(|e| OpFailure::Data(e.to_string()))?;
        }
        OpType::SourceBsdiff | OpType::BrotliBsdiff | OpType::Bsdiff => {
            read_source(ty, op, bs, target, source, &mut scratch.src)?;
            if !blob.starts_with(b"BSDIFF40") {
                return Err(OpFailure::Data(
                    "patch is not BSDIFF40 (BSDF2 is not supported)".into(),
                ));
            }
            let patch = qbsdiff::Bspatch::new(blob)
                .map_err(|e| OpFailure::Data(format!("bad patch: {e}")))?;
            let cap: u64 = dst.iter().map(|x| x.num() * bs).sum();
            if patch.hint_target_size() > cap {
                return Err(OpFailure::Data(format!(
                    "patch output of {} bytes exceeds the {cap}-byte destination",
                    patch.hint_target_size()
                )));
            }
            scratch.buf.clear();
            patch
                .apply(&scratch.src, &mut scratch.buf)
                .map_err(|e| OpFailure::Data(format!("bspatch: {e}")))?;
            let mut w = ExtentWriter::new(target, dst, bs);
            w.write_all(&scratch.buf).map_err(|e| werr(dst, bs, e))?;
            w.finish_padded().map_err(|e| werr(dst, bs, e))?;
        }
        other => {
            return Err(OpFailure::Data(format!(
                "{} is not supported",
                other.name()
            )));
        }
    }
    Ok(())
}

/// ZERO / DISCARD: zeros over the extents, from a static buffer.
fn write_zeros(target: &mut dyn Storage, dst: &[Extent], bs: u64) -> Result<(), OpFailure> {
    for (start, len) in extent_ranges(dst, bs) {
        let start = start.unwrap_or(0);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64) as usize;
            target
                .write_all_at(&ZEROS[..n], start + done)
                .map_err(|e| OpFailure::TargetIo(start + done, e))?;
            done += n as u64;
        }
    }
    Ok(())
}

/// Decompress a REPLACE_{BZ,XZ,ZSTD} blob into memory, refusing output
/// longer than `cap` (the destination extents).
pub fn decompress(ty: OpType, blob: &[u8], cap: u64) -> Result<Vec<u8>, OpFailure> {
    let mut out = Vec::new();
    decompress_into(ty, blob, cap, &mut out, None)?;
    Ok(out)
}

/// [`decompress`] into a reused buffer (its old contents are dropped). A
/// single-frame zstd blob is decoded in one call with `zstd_ctx` when given;
/// anything else (and any error) goes through the streaming decoders, so the
/// result and the errors are the same as [`execute`]'s.
pub fn decompress_into(
    ty: OpType,
    blob: &[u8],
    cap: u64,
    out: &mut Vec<u8>,
    zstd_ctx: Option<&mut zstd::bulk::Decompressor<'static>>,
) -> Result<(), OpFailure> {
    let too_long =
        || OpFailure::Data("data longer than the operation's destination extents".into());
    out.clear();
    if let (OpType::ReplaceZstd, Some(ctx)) = (ty, zstd_ctx)
        && zstd::zstd_safe::find_frame_compressed_size(blob) == Ok(blob.len())
    {
        out.reserve(cap as usize);
        match ctx.decompress_to_buffer(blob, out) {
            Ok(n) if n as u64 <= cap => return Ok(()),
            Ok(_) => return Err(too_long()),
            Err(_) => out.clear(),
        }
    }
    let r: Box<dyn Read + '_> = match ty {
        OpType::ReplaceBz => Box::new(bzip2::read::BzDecoder::new(blob)),
        OpType::ReplaceXz => Box::new(liblzma::read::XzDecoder::new(blob)),
        OpType::ReplaceZstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(|e| OpFailure::Data(e.to_string()))?
                .single_frame(),
        ),
        other => {
            return Err(OpFailure::Data(format!(
                "{} is not a compressed replace",
                other.name()
            )));
        }
    };
    out.reserve((cap as usize).min(64 << 20));
    r.take(cap + 1)
        .read_to_end(out)
        .map_err(|e| OpFailure::Data(format!("decompressing: {e}")))?;
    if out.len() as u64 > cap {
        return Err(too_long());
    }
    Ok(())
}

/// Write decompressed data to the extents, zero-padding the tail.
pub fn write_padded(
    data: &[u8],
    dst: &[Extent],
    bs: u64,
    target: &mut dyn Storage,
) -> Result<(), OpFailure> {
    let mut w = ExtentWriter::new(target, dst, bs);
    w.write_all(data).map_err(|e| werr(dst, bs, e))?;
    w.finish_padded().map_err(|e| werr(dst, bs, e))?;
    Ok(())
}

/// Read the source extents into `out`; for source operations, check their
/// hash before anything uses them.
fn read_source(
    ty: OpType,
    op: &InstallOperation,
    bs: u64,
    target: &mut dyn Storage,
    source: Option<&mut dyn Storage>,
    out: &mut Vec<u8>,
) -> Result<(), OpFailure> {
    let in_place = matches!(ty, OpType::Move | OpType::Bsdiff);
    let src: &mut dyn Storage = match source {
        _ if in_place => target,
        Some(s) => s,
        None => {
            return Err(OpFailure::Data(
                "no source image given for a delta operation".into(),
            ));
        }
    };
    out.clear();
    for x in &op.src_extents {
        let at = out.len();
        out.resize(at + (x.num() * bs) as usize, 0);
        src.read_exact_at(&mut out[at..], x.start() * bs)
            .map_err(OpFailure::SourceIo)?;
    }
    if !in_place && op.src_sha256_hash.as_deref() != Some(&sha256(out)[..]) {
        return Err(OpFailure::SourceHash);
    }
    Ok(())
}

fn werr(dst: &[Extent], bs: u64, e: io::Error) -> OpFailure {
    if e.kind() == io::ErrorKind::WriteZero || e.kind() == io::ErrorKind::InvalidData {
        OpFailure::Data(e.to_string())
    } else {
        OpFailure::TargetIo(dst.first().map(|x| x.start() * bs).unwrap_or(0), e)
    }
}

/// Stream a decoder's output into the extents, zero-padding the tail.
fn pump(
    mut r: impl Read,
    target: &mut dyn Storage,
    dst: &[Extent],
    bs: u64,
    s: &mut Scratch,
) -> Result<(), OpFailure> {
    s.buf.resize(1 << 20, 0);
    let mut w = ExtentWriter::new(target, dst, bs);
    loop {
        let n = match r.read(&mut s.buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OpFailure::Data(format!("decompressing: {e}"))),
        };
        w.write_all(&s.buf[..n]).map_err(|e| werr(dst, bs, e))?;
    }
    w.finish_padded().map_err(|e| werr(dst, bs, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        ty: OpType,
        src: Vec<Extent>,
        dst: Vec<Extent>,
        src_hash: Option<[u8; 32]>,
    ) -> InstallOperation {
        InstallOperation {
            r#type: ty as i32,
            src_extents: src,
            dst_extents: dst,
            src_sha256_hash: src_hash.map(|h| h.to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn every_replace_kind_and_zero() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (ty, blob) in [
            (OpType::Replace, data.clone()),
            (OpType::ReplaceBz, bz),
            (OpType::ReplaceXz, xz),
            (OpType::ReplaceZstd, zs),
        ] {
            let mut t = vec![7u8; 4 * 4096];
            let o = op(ty, vec![], vec![Extent::new(2, 1), Extent::new(0, 1)], None);
            execute(ty, &o, &blob, 4096, &mut t, None, &mut Scratch::default()).unwrap();
            assert_eq!(&t[8192..12288], &data[..4096], "{ty:?}");
            assert_eq!(&t[..4096], &data[4096..], "{ty:?}");
            assert_eq!(&t[4096..8192], &[7u8; 4096][..]);
        }
        let mut t = vec![7u8; 8192];
        let o = op(OpType::Zero, vec![], vec![Extent::new(1, 1)], None);
        execute(
            OpType::Zero,
            &o,
            &[],
            4096,
            &mut t,
            None,
            &mut Scratch::default(),
        )
        .unwrap();
        assert_eq!(&t[4096..], &[0u8; 4096][..]);
    }

    #[test]
    fn decompression_bomb_is_stopped_at_the_extents() {
        let big = zstd::encode_all(&vec![1u8; 3 * 4096][..], 3).unwrap();
        let mut t = vec![0u8; 8192];
        let o = op(OpType::ReplaceZstd, vec![], vec![Extent::new(0, 1)], None);
        let e = execute(
            OpType::ReplaceZstd,
            &o,
            &big,
            4096,
            &mut t,
            None,
            &mut Scratch::default(),
        )
        .unwrap_err();
        assert!(
            matches!(e, OpFailure::Data(ref s) if s.contains("longer than")),
            "{e:?}"
        );
        assert_eq!(&t[4096..], &[0u8; 4096][..]);
    }

    #[test]
    fn source_copy_checks_hash_first() {
        let mut src: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let good = sha256(&src[4096..]);
        let o = op(
            OpType::SourceCopy,
            vec![Extent::new(1, 1)],
            vec![Extent::new(0, 1)],
            Some(good),
        );
        let mut t = vec![0u8; 4096];
        execute(
            OpType::SourceCopy,
            &o,
            &[],
            4096,
            &mut t,
            Some(&mut src),
            &mut Scratch::default(),
        )
        .unwrap();
        assert_eq!(&t[..], &src[4096..]);
        src[5000] ^= 1;
        let mut t = vec![0u8; 4096];
        let e = execute(
            OpType::SourceCopy,
            &o,
            &[],
            4096,
            &mut t,
            Some(&mut src),
            &mut Scratch::default(),
        );
        assert!(matches!(e, Err(OpFailure::SourceHash)));
        assert_eq!(t, vec![0u8; 4096]);
    }

    #[test]
    fn source_bsdiff_roundtrip() {
        let old: Vec<u8> = (0..8192u32).map(|i| (i * 13 % 256) as u8).collect();
        let mut new = old.clone();
        new[100..200].fill(9);
        let mut patch = Vec::new();
        qbsdiff::Bsdiff::new(&old, &new)
            .compare(&mut patch)
            .unwrap();
        let o = op(
            OpType::SourceBsdiff,
            vec![Extent::new(0, 2)],
            vec![Extent::new(0, 2)],
            Some(sha256(&old)),
        );
        let mut src = old.clone();
        let mut t = Vec::new();
        execute(
            OpType::SourceBsdiff,
            &o,
            &patch,
            4096,
            &mut t,
            Some(&mut src),
            &mut Scratch::default(),
        )
        .unwrap();
        assert_eq!(t, new);
    }

    #[test]
    fn decompress_into_matches_streaming_and_stops_bombs() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let one = zstd::encode_all(&data[..], 3).unwrap();
        let mut two = one.clone();
        two.extend(zstd::encode_all(&b"second frame"[..], 3).unwrap());
        let mut ctx = zstd::bulk::Decompressor::new().unwrap();
        let mut out = vec![1u8; 10];
        for blob in [&one, &two] {
            decompress_into(OpType::ReplaceZstd, blob, 200_000, &mut out, Some(&mut ctx)).unwrap();
            // Only the first frame counts, as in `execute`.
            assert!(out == data);
        }
        // Output longer than the extents: refused on the one-shot path too,
        // even into a buffer with more capacity than the extents.
        let mut big = Vec::with_capacity(1 << 20);
        let e = decompress_into(OpType::ReplaceZstd, &one, 4096, &mut big, Some(&mut ctx));
        assert!(matches!(e, Err(OpFailure::Data(ref s)) if s.contains("longer than")));
        let e = decompress_into(OpType::ReplaceZstd, &one, 4096, &mut out, None);
        assert!(matches!(e, Err(OpFailure::Data(ref s)) if s.contains("longer than")));
        let e = decompress_into(OpType::ReplaceZstd, b"junk", 4096, &mut out, Some(&mut ctx));
        assert!(matches!(e, Err(OpFailure::Data(_))));
    }
}
