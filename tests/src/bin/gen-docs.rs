//! `cargo run -p e2e --bin gen-docs`: writes the man pages and shell
//! completions of every shipped binary to `docs/man/` and
//! `docs/completions/` ([`e2e::docs`]); `tests/docs_generated.rs` fails
//! until they are committed.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = e2e::dbus_bus::workspace().join("docs");
    e2e::docs::write(&dir).with_context(|| format!("writing under {}", dir.display()))?;
    println!(
        "wrote {}/man and {}/completions",
        dir.display(),
        dir.display()
    );
    Ok(())
}
