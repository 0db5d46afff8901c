//! The committed man pages and shell completions (`docs/man/`,
//! `docs/completions/`) are what the binaries' own definitions render
//! ([`e2e::docs`]), Debian's groff reads every page without a warning, the
//! bash and fish completions complete in a real bash and fish, zsh parses
//! its scripts, and the real `cgpt` accepts exactly the options its pages
//! document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::dbus_bus::workspace;

const REGENERATE: &str = "run `cargo run -p e2e --bin gen-docs` and commit docs/";

/// Every file under `dir`, relative path → contents.
fn committed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir.parent().unwrap()).unwrap();
                files.insert(rel.display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn committed_pages_and_completions_are_current() {
    let docs = workspace().join("docs");
    let mut on_disk = committed(&docs.join("man"));
    on_disk.extend(committed(&docs.join("completions")));
    let rendered = e2e::docs::render();
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&on_disk), names(&rendered), "{REGENERATE}");
    for (path, data) in &rendered {
        assert!(on_disk[path] == *data, "docs/{path} is stale: {REGENERATE}");
    }
    // One page per binary, and one per subcommand.
    for page in [
        "update-agent",
        "update-agent-config-show",
        "update_engine_client",
        "update-coordinator",
        "locksmithctl",
        "payload",
        "payload-generate",
        "cgpt",
        "cgpt-add",
    ] {
        assert!(rendered.contains_key(&format!("man/{page}.1")), "{page}");
    }
}

fn man_pages() -> Vec<PathBuf> {
    let dir = workspace().join("docs/man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    pages
}

/// `groff -man -ww -z`: every warning enabled, no output.
#[test]
fn groff_reads_every_page_without_a_warning() {
    let pages = man_pages();
    assert!(pages.len() > 6);
    for page in pages {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("run groff (apt-get install groff-base)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            page.display()
        );
    }
    // The text the pages carry: update_engine_client's explains gflags.
    let out = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .arg(workspace().join("docs/man/update_engine_client.1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\n'], "");
    assert!(text.contains("one dash or two"), "{text}");
}

/// What bash offers for `WORDS…<TAB>`, with the completion file sourced
/// the way bash-completion loads it.
fn complete(bin: &str, words: &[&str]) -> Vec<String> {
    let file = workspace().join("docs/completions/bash").join(bin);
    let script = format!(
        r#"source "$1"
f=$(complete -p {bin} | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_WORDS=({bin} {words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$f" {bin} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script, "complete"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    assert_eq!(complete("update-agent", &["con"]), ["config"]);
    assert!(complete("update-agent", &["config", "sh"]).contains(&"show".to_string()));
    assert!(complete("update-agent", &["--metrics"]).contains(&"--metrics-socket".to_string()));
    assert_eq!(complete("update_engine_client", &["--sta"]), ["--status"]);
    assert!(complete("payload", &["gen"]).contains(&"generate".to_string()));
    assert!(complete("locksmithctl", &["set"]).contains(&"set-max".to_string()));
    assert!(complete("cgpt", &["pri"]).contains(&"prioritize".to_string()));
    assert!(complete("cgpt", &["add", "-"]).contains(&"-P".to_string()));
    assert!(complete("update-coordinator", &["--no"]).contains(&"--no-metrics".to_string()));
}

/// cgpt's man page and completions come from its usage texts, so the real
/// `cgpt` must accept exactly the options they document: each documented
/// one is known to the parser (with a value where one is documented), and
/// every other letter is refused as unrecognized.
#[test]
fn cgpt_accepts_exactly_the_documented_options() {
    let cgpt = e2e::dbus_bus::build_bins(&["-p", "cgpt", "--bin", "cgpt"]).join("cgpt");
    let drive = "/nonexistent/cgpt-docs-test.img";
    let stderr = |args: &[&str]| {
        let out = Command::new(&cgpt).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let doc = e2e::docs::cgpt_command();
    for sub in doc.get_subcommands() {
        let name = sub.get_name();
        let mut documented = vec!['h'];
        for arg in sub
            .get_arguments()
            .filter_map(|a| a.get_short().map(|s| (s, a)))
        {
            let (flag, arg) = arg;
            documented.push(flag);
            let flag_arg = format!("-{flag}");
            let mut args = vec![name, flag_arg.as_str()];
            if arg.get_value_names().is_some() {
                args.push("1");
            }
            args.push(drive);
            let err = stderr(&args);
            assert!(
                !err.contains("unrecognized option"),
                "cgpt {name} {flag_arg} is documented but refused: {err}"
            );
        }
        for flag in ('a'..='z').chain('A'..='Z') {
            if documented.contains(&flag) {
                continue;
            }
            let flag_arg = format!("-{flag}");
            let err = stderr(&[name, &flag_arg, drive]);
            assert!(
                err.contains(&format!("unrecognized option: -{flag}")),
                "cgpt {name} accepts {flag_arg}, which its usage does not document: {err}"
            );
        }
    }
}

/// What fish offers for `LINE<TAB>` (`complete -C`), the completion file
/// sourced.
fn fish_complete(bin: &str, line: &str) -> Vec<String> {
    let file = workspace()
        .join("docs/completions/fish")
        .join(format!("{bin}.fish"));
    // fish keeps history and config under HOME: a scratch one.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("fish")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .arg("-c")
        .arg(format!("source {}; complete -C '{line}'", file.display()))
        .output()
        .expect("run fish (apt-get install fish)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn fish_completes_and_zsh_parses_every_script() {
    assert_eq!(
        fish_complete("update-agent", "update-agent con"),
        ["config"]
    );
    assert!(fish_complete("update-agent", "update-agent config sh").contains(&"show".into()));
    assert_eq!(
        fish_complete("update_engine_client", "update_engine_client --sta"),
        ["--status"]
    );
    assert!(fish_complete("cgpt", "cgpt pri").contains(&"prioritize".into()));
    let dir = workspace().join("docs/completions/zsh");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("zsh")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("run zsh (apt-get install zsh)");
        assert!(out.status.success(), "{}: {out:?}", path.display());
        n += 1;
    }
    assert_eq!(n, 6, "one zsh script per binary");
}

/// `update_engine_client`'s pages come from its `-help` text: the
/// documented flags are exactly the parsed ones. Every documented flag
/// parses, and every field of the parser's `Args` is documented.
#[test]
fn update_engine_client_documents_exactly_the_flags_it_parses() {
    use update_agent::client_args::{Args, parse};
    let cmd = e2e::docs::client_command();
    let docs: Vec<_> = cmd.get_arguments().collect();
    for a in &docs {
        let name = a.get_id().as_str();
        let mut argv = vec![format!("-{name}")];
        if a.get_value_names().is_some() {
            argv.push("x".into());
        }
        parse(argv).unwrap_or_else(|e| panic!("-{name} is documented: {e}"));
        assert!(
            a.get_help().is_some_and(|h| !h.to_string().is_empty()),
            "-{name} has no help"
        );
    }
    let fields = format!("{:?}", Args::default());
    let mut fields: Vec<&str> = fields
        .trim_start_matches("Args { ")
        .trim_end_matches(" }")
        .split(", ")
        .map(|kv| kv.split(':').next().unwrap())
        .collect();
    let mut documented: Vec<&str> = docs.iter().map(|a| a.get_id().as_str()).collect();
    documented.sort_unstable();
    fields.sort_unstable();
    assert_eq!(documented, fields);
    let channel = docs.iter().find(|a| a.get_id() == "channel").unwrap();
    let names: Vec<&str> = channel
        .get_value_names()
        .unwrap()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(names, ["NAME"]);
    let help = channel.get_help().unwrap().to_string();
    assert!(help.contains("may be combined"), "{help}");
    assert!(parse(["-nosuchflag".to_string()]).is_err());
}
