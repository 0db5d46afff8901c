//! `cargo run --release --bin demo [-- --fail-health]`: the whole A/B update on
//! a generated disk image, in a temporary directory, needing nothing but cargo.
//!
//! A GPT disk image with USR-A (running 3510.2.0) and an empty USR-B, a signing
//! key, a signed payload of 3600.0.0, an Omaha server on 127.0.0.1 serving it;
//! the real agent installs the update into USR-B, the disk "reboots" through
//! GRUB's gptprio rules, and the real health gate blesses USR-B, or, with
//! `--fail-health`, marks it bad and the node falls back to USR-A. Run as root,
//! the release also carries extension images (the node's OEM image and a
//! default extension, fetched and verified before the commit point; reading
//! the new image needs a read-only loop mount). Nothing touches a real disk
//! or reboots the machine: the reboot command is a stand-in.

use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, lifecycle, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome as InstallOutcome};
use update_agent::denylist::DenyList;
use update_agent::fsm::Operation;
use update_agent::health::{self, Outcome};

const NEW: &str = "3600.0.0";
const DELTA: &str = "delta-3510.2.0.gz";

fn main() -> Result<()> {
    let fail_health = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--fail-health") => true,
        Some(other) => bail!("unknown argument {other:?} (the only option is --fail-health)"),
    };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo(fail_health))?;
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn say(text: &str) {
    println!("    {text}");
}

fn table(node: &Node) -> Result<()> {
    let mut disk = cgpt::FileDisk::open_ro(&node.disk)?;
    println!(
        "    {:<6} {:>8} {:>5} {:>10}  PARTUUID",
        "slot", "priority", "tries", "successful"
    );
    for s in cgpt::slot::read_slots(&mut disk)? {
        let a = s.entry.attrs;
        println!(
            "    {:<6} {:>8} {:>5} {:>10}  {}",
            s.slot.label(),
            a.priority(),
            a.tries(),
            u8::from(a.successful()),
            s.entry.unique_guid
        );
    }
    Ok(())
}

async fn demo(fail_health: bool) -> Result<()> {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    step(1, "A Flatcar-like node in a temporary directory");
    say(&format!("root {}", node.root().display()));
    say(&format!(
        "disk image {} (sparse GPT: EFI, USR-A, USR-B, OEM, ROOT)",
        node.disk.display()
    ));
    say(&format!(
        "USR-A runs {RUNNING}; USR-B is empty. The node trusts an Ed25519 and an RSA key."
    ));
    table(&node)?;

    let with_extensions = e2e::dbus_bus::is_root();
    let (usr, kernel, sizes) = publish(&server, &node, with_extensions);
    install(&server, &node, &usr, &kernel).await?;
    show_savings(&server, sizes)?;
    if with_extensions {
        show_extensions(&server, &node)?;
    }
    let booted = reboot_into_new(&node)?;
    gate(&server, &node, booted, fail_health).await?;
    step(6, "Final slot table");
    table(&node)?;
    Ok(())
}

/// Extension packages the server offers: (package, image seed).
const EXTENSIONS: [(&str, u64); 4] = [
    ("oem-azure.gz", 61),
    ("oem-gce.gz", 62),
    ("flatcar-podman.gz", 63),
    ("flatcar-zfs.gz", 64),
];

/// Step 2: the release side.
/// Returns the new USR image and kernel, and the sizes of the delta and
/// the full payload.
fn publish(
    server: &OmahaServer,
    node: &Node,
    with_extensions: bool,
) -> (Vec<u8>, Vec<u8>, (usize, usize)) {
    step(
        2,
        &format!(
            "Release side: image {NEW}, signed payload, Omaha server on {}",
            server.addr()
        ),
    );
    let (old_usr, old_kernel) = images(RUNNING, with_extensions);
    // The demo's USR-A holds the running release the new one was built from.
    node.write_slot(Slot::A, &old_usr);
    let (usr, kernel) = images(NEW, with_extensions);
    let payload = node.payload(NEW, BOARD, &usr, &kernel);
    let parts = [
        (&usr[..], Some(&old_usr[..])),
        (&kernel[..], Some(&old_kernel[..])),
    ];
    let delta = fixture::signed_v2(&node.key, NEW, BOARD, parts);
    say(&format!(
        "full payload: {} bytes for a {USR_MIB} MiB USR image and a kernel",
        payload.len()
    ));
    say(&format!(
        "delta from {RUNNING}: {} bytes, offered as {DELTA} next to it",
        delta.len()
    ));
    server.serve_file(PAYLOAD_NAME, payload.clone());
    server.serve_file(DELTA, delta.clone());
    let mut spec = UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &payload)
        .with_package(DELTA, &delta);
    if with_extensions {
        let oem = node.path("/usr/share/oem/oem-release");
        let _ = std::fs::create_dir_all(oem.parent().unwrap_or(node.root()));
        let _ = std::fs::write(oem, "ID=azure\n");
        for (name, seed) in EXTENSIONS {
            let package = fixture::sysext_payload_v1(&fixture::image_bytes(seed, 256 << 10));
            server.serve_file(name, package.clone());
            spec = spec.with_package(name, &package);
        }
        say("extension packages offered: oem-azure, oem-gce, flatcar-podman, flatcar-zfs;");
        say("this is an Azure node, and the new image enables podman by default.");
    } else {
        say("(run as root to see the extension images too: the new image is loop-mounted)");
    }
    server.push(Reply::Update(spec));
    (usr, kernel, (delta.len(), payload.len()))
}

/// A release's USR image and kernel: a real file system listing the
/// `azure` OEM and enabling `podman` by default when `fs` (as Flatcar's
/// images do; reading it needs a loop mount), else raw bytes; releases
/// share most blocks, as consecutive OS releases do.
fn images(version: &str, fs: bool) -> (Vec<u8>, Vec<u8>) {
    let len = (USR_MIB << 20) as usize;
    let seed: u64 = version.bytes().map(u64::from).sum();
    let usr = if fs {
        // What changed between the releases: one new 256 KiB file.
        let changed: String = fixture::image_bytes(seed, 128 << 10)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fixture::usr_fs_image_with(
            version,
            BOARD,
            len,
            42,
            4 << 20,
            &[
                ("share/flatcar/oems/azure", "azure\n"),
                ("share/flatcar/enabled-sysext.conf", "podman\n"),
                ("lib/changed-in-this-release", &changed),
            ],
        )
    } else {
        let mut usr = fixture::image_bytes(42, len);
        for block in usr.chunks_mut(4096).skip(seed as usize % 16).step_by(16) {
            block.copy_from_slice(&fixture::image_bytes(seed, 4096));
        }
        usr
    };
    (
        usr,
        format!("kernel of {version}\n").repeat(4096).into_bytes(),
    )
}

/// After step 3: what went over the wire.
fn show_savings(server: &OmahaServer, (delta, full): (usize, usize)) -> Result<()> {
    let fetched = |name: &str| server.gets().iter().any(|r| r.path.ends_with(name));
    if !fetched(DELTA) || fetched(PAYLOAD_NAME) {
        bail!("expected the delta alone to be downloaded");
    }
    let saved = 100.0 * (1.0 - delta as f64 / full as f64);
    say(&format!(
        "downloaded the {delta}-byte delta instead of the {full}-byte full payload: {saved:.0}% fewer bytes"
    ));
    say("(the booted USR-A and vmlinuz-a were its read-only source; USR-A is unchanged)");
    Ok(())
}

/// After step 3: the extension images next to USR.
fn show_extensions(server: &OmahaServer, node: &Node) -> Result<()> {
    let placed = [
        "/usr/share/oem/sysext/oem-azure-3600.0.0.raw",
        "/etc/flatcar/sysext/flatcar-podman-3600.0.0.raw",
    ];
    for path in placed {
        let len = std::fs::metadata(node.path(path))
            .with_context(|| format!("{path} was not placed"))?
            .len();
        say(&format!("placed {path} ({len} bytes, verified)"));
    }
    let fetched: Vec<String> = server.gets().iter().map(|r| r.path.clone()).collect();
    let skipped: Vec<&str> = EXTENSIONS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !fetched.iter().any(|p| p.ends_with(n)))
        .collect();
    say(&format!("never downloaded: {}", skipped.join(", ")));
    Ok(())
}

/// Step 3: the agent installs.
async fn install(server: &OmahaServer, node: &Node, usr: &[u8], kernel: &[u8]) -> Result<()> {
    step(
        3,
        "The agent checks, streams the payload into USR-B, verifies, flips the flags",
    );
    lifecycle::install_stand_ins(node);
    lifecycle::configure(node, Slot::A);
    let mut daemon =
        Daemon::new(Root::new(node.root()), None).context("loading the agent's settings")?;
    let a_before = node.slot_hash(Slot::A);
    let rx = daemon.handle().subscribe();
    let bar = spawn_bar(rx);
    let outcome = daemon.run_once().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bar).await;
    if outcome
        != (InstallOutcome::Updated {
            version: NEW.into(),
        })
    {
        bail!("the install did not complete: {outcome:?}");
    }
    say(&format!("server saw: {}", omaha_log(server).join(", ")));
    if node.read_slot(Slot::B) != usr || node.slot_hash(Slot::A) != a_before {
        bail!("USR-B does not hold the new image, or USR-A changed");
    }
    if std::fs::read(node.path("/boot/flatcar/vmlinuz-b"))? != kernel {
        bail!("vmlinuz-b is not the new kernel");
    }
    say(
        "Checked: USR-B holds the new image byte for byte, vmlinuz-b is the new kernel, USR-A is unchanged.",
    );
    table(node)?;

    Ok(())
}

/// The status as a progress bar on a terminal, as lines otherwise.
fn spawn_bar(
    mut rx: tokio::sync::watch::Receiver<update_agent::fsm::Status>,
) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stdout().is_terminal();
    tokio::spawn(async move {
        let mut last = None;
        while rx.changed().await.is_ok() {
            let s = rx.borrow().clone();
            let pct = (s.progress * 100.0).round() as u32;
            if tty && last != Some((s.operation, pct)) {
                let filled = (pct / 5) as usize;
                print!(
                    "\r    {:<36} [{:<20}] {pct:>3}%",
                    s.operation.as_str(),
                    "#".repeat(filled)
                );
                let _ = std::io::stdout().flush();
            } else if !tty && last.map(|(op, _)| op) != Some(s.operation) {
                println!("    {:<36} {pct:>3}%", s.operation.as_str());
            }
            last = Some((s.operation, pct));
            if s.operation == Operation::UpdatedNeedReboot {
                break;
            }
        }
        if tty {
            println!();
        }
    })
}

/// Step 4: GRUB's rule picks the new slot.
fn reboot_into_new(node: &Node) -> Result<Slot> {
    step(
        4,
        "Reboot: GRUB's gptprio.next picks the highest-priority bootable slot",
    );
    let version = |s: Slot| {
        if s == Slot::A {
            RUNNING.to_string()
        } else {
            NEW.to_string()
        }
    };
    let booted = lifecycle::reboot(node, 2, version)?;
    say(&format!("GRUB boots {booted} and spends its one try."));
    table(node)?;

    Ok(booted)
}

/// Step 5: the health gate blesses the slot or falls back.
async fn gate(server: &OmahaServer, node: &Node, booted: Slot, fail_health: bool) -> Result<()> {
    let version = |s: Slot| {
        if s == Slot::A {
            RUNNING.to_string()
        } else {
            NEW.to_string()
        }
    };
    step(5, "Post-boot health gate");
    if fail_health {
        lifecycle::add_check(
            node,
            "required",
            "50-app",
            "echo 'app: cannot reach its database' >&2; exit 1",
        );
        say("A required check fails (--fail-health).");
    } else {
        lifecycle::add_check(node, "required", "50-app", "exit 0");
        say("The required checks run.");
    }
    let gate = health::run_node(&Root::new(node.root()), None).await?;
    match &gate {
        Outcome::Blessed => say(&format!(
            "All checks passed: {booted} is marked good; USR-A stays as fallback."
        )),
        Outcome::FellBack {
            to,
            failures,
            reboot,
        } => {
            say(&format!("Failed: {}", failures.join("; ")));
            let reboot = match reboot {
                health::RebootResult::Issued => {
                    "the node reboots (a harmless stand-in command here)".to_string()
                }
                other => format!("no reboot: {other:?}"),
            };
            say(&format!(
                "{booted} gets priority 0 and {NEW} goes on the deny list; {reboot}."
            ));
            let back = lifecycle::reboot(node, 3, version)?;
            say(&format!("GRUB falls back to {back} (expected {to})."));
            let denied = DenyList::in_dir(&node.path("/var/lib/update_engine")).entries()?;
            say(&format!(
                "deny list: {}",
                denied
                    .iter()
                    .map(|d| d.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        other => bail!("unexpected gate outcome {other:?}"),
    }
    say(&format!("server saw: {}", omaha_log(server).join(", ")));

    Ok(())
}
