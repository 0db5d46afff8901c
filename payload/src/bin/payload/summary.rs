//! `payload inspect`'s text output.

use std::io::Write;

/// Prints what `inspect` found, one fact a line.
pub(crate) fn print_summary(s: &payload::inspect::Summary) {
    println!("CrAU major {} minor {} ({})", s.major, s.minor, s.kind);
    println!(
        "file {} bytes: metadata {}, manifest {}, data {}",
        s.file_size, s.metadata_size, s.manifest_size, s.data_size
    );
    if let Some(r) = &s.release {
        println!(
            "release: version {} app {} board {} channel {}",
            r.version.as_deref().unwrap_or("-"),
            r.app_id.as_deref().unwrap_or("-"),
            r.board.as_deref().unwrap_or("-"),
            r.channel.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = s.timestamp {
        println!("timestamp: {t}");
    }
    for p in &s.partitions {
        println!(
            "partition {}: {} bytes, sha256 {}",
            p.name, p.new_size, p.new_sha256
        );
        if let Some(o) = p.old_size {
            println!("  delta from {o} bytes");
        }
        for (ty, st) in &p.operations {
            println!(
                "  {:<14} {:>7} ops {:>12} data bytes {:>5.1}% {:>12} dst bytes",
                ty, st.count, st.data_bytes, st.data_share, st.dst_bytes
            );
        }
    }
    let list = |v: &[payload::inspect::SignatureSummary]| {
        v.iter()
            .map(|s| format!("{}B", s.size))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("metadata signatures: [{}]", list(&s.metadata_signatures));
    println!("payload signatures: [{}]", list(&s.payload_signatures));
    if let Some(k) = &s.metadata_signed_by {
        println!("metadata verified by {k}");
    }
    let _ = std::io::stdout().flush();
}
