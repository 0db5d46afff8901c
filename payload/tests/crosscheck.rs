//! Cross-checks with independent tools: Debian's bspatch applies our
//! SOURCE_BSDIFF blobs, and our applier reads Debian bsdiff's patches.
//! The tools are required (CI installs the `bsdiff` package); a missing
//! tool fails the test instead of skipping it.

mod common;
use common::*;
use payload::proto::OpType;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is required for this test: apt-get install bsdiff"
    );
}

#[test]
fn debian_bspatch_applies_our_source_bsdiff_blobs() {
    require("/usr/bin/bspatch");
    let (old, new) = (old_image(), new_image());
    let p = delta(&new, &old, &[ed_key()]);
    let mut r = payload::hashing_reader::HashingReader::new(Cursor::new(&p));
    let m = payload::apply::read_metadata(&mut r, None, &Default::default()).unwrap();
    let ds = m.header.data_start() as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for op in &m.plan.partitions[0].ops {
        if op.r#type != OpType::SourceBsdiff as i32 {
            continue;
        }
        let (o, l) = (
            op.data_offset.unwrap() as usize,
            op.data_length.unwrap() as usize,
        );
        let src: Vec<u8> = op
            .src_extents
            .iter()
            .flat_map(|x| {
                old[(x.start() * 4096) as usize..((x.start() + x.num()) * 4096) as usize].to_vec()
            })
            .collect();
        let want: Vec<u8> = op
            .dst_extents
            .iter()
            .flat_map(|x| {
                new[(x.start() * 4096) as usize..((x.start() + x.num()) * 4096) as usize].to_vec()
            })
            .collect();
        let (fo, fn_, fp) = (
            dir.path().join("old"),
            dir.path().join("new"),
            dir.path().join("patch"),
        );
        std::fs::write(&fo, &src).unwrap();
        std::fs::write(&fp, &p[ds + o..ds + o + l]).unwrap();
        let st = Command::new("/usr/bin/bspatch")
            .arg(&fo)
            .arg(&fn_)
            .arg(&fp)
            .status()
            .unwrap();
        assert!(st.success(), "bspatch failed on op at data offset {o}");
        assert!(
            std::fs::read(&fn_).unwrap() == want,
            "bspatch output differs for op at {o}"
        );
        checked += 1;
    }
    assert!(
        checked >= 1,
        "the delta has no SOURCE_BSDIFF operation to check"
    );
}

#[test]
fn our_applier_reads_debian_bsdiff_patches() {
    require("/usr/bin/bsdiff");
    let old = text(11, 64 * 1024);
    let mut new = old.clone();
    new[5000..5100].fill(b'#');
    new[40_000..40_010].copy_from_slice(b"0123456789");
    let dir = tempfile::tempdir().unwrap();
    let (fo, fn_, fp) = (
        dir.path().join("old"),
        dir.path().join("new"),
        dir.path().join("patch"),
    );
    std::fs::write(&fo, &old).unwrap();
    std::fs::write(&fn_, &new).unwrap();
    assert!(
        Command::new("/usr/bin/bsdiff")
            .arg(&fo)
            .arg(&fn_)
            .arg(&fp)
            .status()
            .unwrap()
            .success()
    );
    let patch = std::fs::read(&fp).unwrap();
    let op = payload::proto::InstallOperation {
        r#type: OpType::SourceBsdiff as i32,
        src_extents: vec![payload::proto::Extent::new(0, 16)],
        dst_extents: vec![payload::proto::Extent::new(0, 16)],
        src_sha256_hash: Some(sha(&old).to_vec()),
        ..Default::default()
    };
    let mut src = old.clone();
    let mut t = Vec::new();
    payload::ops::execute(
        OpType::SourceBsdiff,
        &op,
        &patch,
        4096,
        &mut t,
        Some(&mut src),
        &mut Default::default(),
    )
    .unwrap();
    assert!(t == new);
}
