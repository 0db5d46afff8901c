//! The man pages and shell completions of every shipped binary, rendered
//! from the definitions the binaries parse with: clap's for `update-agent`,
//! `update-coordinator`, `locksmithctl` and `payload`; the printed usage
//! texts for `update_engine_client` (gflags syntax) and `cgpt` (getopt
//! syntax, vboot's messages), read by one parser ([`usage_options`]) into a
//! docs-only `clap::Command`. `cargo run -p e2e --bin gen-docs` writes them to
//! `docs/man/` and `docs/completions/`; `tests/docs_generated.rs` checks
//! the committed files are current.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_complete::Shell;

/// Every shipped binary's command line.
pub fn commands() -> Vec<Command> {
    vec![
        update_agent::cli::Cli::command(),
        client_command(),
        coordinator::cli::CoordinatorArgs::command(),
        coordinator::cli::LocksmithctlArgs::command(),
        payload::cli::Cli::command(),
        cgpt_command(),
    ]
}

/// `cgpt` as its usage texts describe it: one subcommand per command, one
/// option per `-X [VALUE]  help` line, and the drive.
pub fn cgpt_command() -> Command {
    let mut cmd = Command::new("cgpt")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Edit and inspect GPT partition tables and the USR slots' boot attributes")
        .long_about(
            "Edit and inspect GPT partition tables, and the priority, tries and successful \
             attributes GRUB's gptprio reads, with vboot cgpt's commands, options and \
             messages. DRIVE is a disk image, a whole-disk device, or a partition device \
             such as /dev/sda4 (meaning the disk /dev/sda with -i 4).",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .subcommand_required(true);
    for (name, about, text) in cgpt::usage::commands() {
        let mut sub = Command::new(name)
            .about(about)
            .long_about(text.trim().to_string())
            .disable_help_flag(true);
        for opt in usage_options(&text) {
            let flag = opt.name.chars().next().expect("an option has a name");
            let arg = Arg::new(opt.name.to_string()).short(flag);
            sub = sub.arg(opt.describe(arg));
        }
        sub = sub.arg(Arg::new("DRIVE").required(true));
        cmd = cmd.subcommand(sub);
    }
    cmd
}

/// `update_engine_client` as its `-help` text describes it: one long
/// option per flag (gflags takes one dash or two, which clap cannot
/// express, so the binary parses with `client_args::parse`).
pub fn client_command() -> Command {
    let mut cmd = Command::new("update_engine_client")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Talk to the update engine over D-Bus (com.coreos.update1)")
        .long_about(
            "Talk to the update engine over D-Bus (com.coreos.update1), as Flatcar's \
             update_engine_client does. Flags take one dash or two (gflags): -status and \
             --status are the same; boolean flags also take =true/=false and a no prefix \
             (-nojson). Only the first action given runs.",
        )
        .disable_help_flag(true)
        .disable_version_flag(true);
    for mut opt in usage_options(update_agent::client_args::USAGE) {
        // `-help, -version` share a line and have no help of their own.
        match opt.name {
            "help" if opt.help.is_empty() => opt.help = "Print this help.".into(),
            "version" if opt.help.is_empty() => opt.help = "Print the version.".into(),
            _ => {}
        }
        let arg = Arg::new(opt.name.to_string()).long(opt.name.to_string());
        cmd = cmd.arg(opt.describe(arg));
    }
    cmd
}

/// One option of a usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageOption<'a> {
    /// Without the dash: `i`, `channel`.
    pub name: &'a str,
    /// `NUM` of `-i NUM`; `None` for a flag.
    pub value: Option<&'a str>,
    /// The help, continuation lines joined.
    pub help: String,
}

impl UsageOption<'_> {
    /// `arg` with this option's help and value (or a flag's action).
    fn describe(self, arg: Arg) -> Arg {
        let arg = arg.help(self.help);
        match self.value {
            Some(v) => arg.value_name(v.to_string()).num_args(1),
            None => arg.action(ArgAction::SetTrue),
        }
    }
}

/// The `  -NAME [VALUE]  help` lines of a usage text (`cgpt`'s and
/// `update_engine_client`'s): continuation lines are joined, several names
/// may share a line (`-help, -version`), and an option indented under
/// another (`cgpt show -i`'s field selectors) says so in its help.
pub fn usage_options(text: &str) -> Vec<UsageOption<'_>> {
    let mut opts: Vec<UsageOption<'_>> = Vec::new();
    let mut parent = "";
    for line in text.lines() {
        let spec = line
            .strip_prefix("  -")
            .filter(|_| !line.starts_with("   "));
        if let Some(spec) = spec {
            let (head, help) = spec.split_once("  ").unwrap_or((spec, ""));
            for name_value in head.trim().split(", -") {
                let (name, value) = match name_value.split_once(' ') {
                    Some((n, v)) if v.starts_with(|c: char| c.is_ascii_uppercase()) => (n, Some(v)),
                    _ => (name_value, None),
                };
                parent = name;
                let help = help.trim().to_string();
                opts.push(UsageOption { name, value, help });
            }
        } else if let Some((name, help)) = nested_option(line) {
            let help = format!("With -{parent}: print only the {help}.");
            opts.push(UsageOption {
                name,
                value: None,
                help,
            });
        } else if line.starts_with("       ")
            && let Some(last) = opts.last_mut()
        {
            last.help.push(' ');
            last.help.push_str(line.trim());
        }
    }
    opts
}

/// An indented `-X  help` line (an option listed under another one).
fn nested_option(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("     ")?.trim_start().strip_prefix('-')?;
    let flag = rest
        .get(..1)
        .filter(|f| f.chars().all(|c| c.is_ascii_alphabetic()))?;
    let help = rest[1..].strip_prefix("  ")?.trim();
    Some((flag, help))
}

/// Every file: `man/<page>.1` (one per command and subcommand) and
/// `completions/{bash,zsh,fish}/<file>`, path → contents.
pub fn render() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        // Built, global options (`update-agent --root`) reach the
        // subcommands' pages; the completions take the unbuilt command
        // (building names the subcommands `update-agent config`, which
        // clap_complete's bash script then spells inconsistently).
        let mut built = cmd.clone();
        built.build();
        man_pages(&built, &name, &name, &mut files);
        files.insert(format!("completions/bash/{name}"), bash_completion(&cmd));
        for (shell, file) in [
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            files.insert(format!("completions/{shell}/{file}"), out);
        }
    }
    files
}

/// The bash completion. clap_complete's bash script never completes past
/// a subcommand of a hyphenated bin name (clap-rs/clap#6421, open): the
/// script is generated for the name with `_` (a valid function name, too)
/// and registered for the real one. The script matches the command word
/// through `$1`, so only the `complete` lines name it.
fn bash_completion(cmd: &Command) -> Vec<u8> {
    let name = cmd.get_name();
    let alias = name.replace('-', "_");
    let mut out = Vec::new();
    clap_complete::generate(Shell::Bash, &mut cmd.clone(), &alias, &mut out);
    let text = String::from_utf8(out).expect("clap_complete writes UTF-8");
    let suffix = format!(" {alias}");
    text.lines()
        .map(|l| match l.trim_start().starts_with("complete ") {
            true => l
                .strip_suffix(&suffix)
                .map_or(l.to_string(), |c| format!("{c} {name}")),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
        .into_iter()
        .chain(*b"\n")
        .collect()
}

/// `page.1` for `cmd` and `page-sub.1` for each visible subcommand; the
/// synopsis names the command as typed (`cgpt show`), the title as the
/// page (`cgpt-show`).
fn man_pages(cmd: &Command, page: &str, typed: &str, files: &mut BTreeMap<String, Vec<u8>>) {
    let mut cmd = cmd
        .clone()
        .display_name(page.to_string())
        .bin_name(typed.to_string());
    if cmd.get_version().is_none() {
        // The footer names the version, as on the top page.
        cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .expect("render into memory");
    files.insert(format!("man/{page}.1"), out);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        man_pages(
            sub,
            &format!("{page}-{name}"),
            &format!("{typed} {name}"),
            files,
        );
    }
}

/// Writes [`render`]'s files under `dir`, replacing `man/` and
/// `completions/` (so a removed page does not linger).
pub fn write(dir: &Path) -> std::io::Result<()> {
    for sub in ["man", "completions"] {
        match std::fs::remove_dir_all(dir.join(sub)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    for (path, data) in render() {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file under dir"))?;
        std::fs::write(path, data)?;
    }
    Ok(())
}
