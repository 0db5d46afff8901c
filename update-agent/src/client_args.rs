//! `update_engine_client`'s flags, parsed with gflags' syntax as Flatcar's
//! client does. In the library so that the man page and completions
//! (`e2e::docs`, `cargo run -p e2e --bin gen-docs`) are generated from
//! [`USAGE`], the text `-help` prints; `e2e/docs_generated` keeps it and
//! [`parse`] in step.

/// The help text (`-help`).
pub const USAGE: &str = "\
update_engine_client: talks to the update engine over D-Bus (com.coreos.update1).

Flatcar's flags (one dash or two; only the first action given runs):
  -reset_status       Forget an update waiting for reboot; the next boot stays
                      on the current slot.
  -status             Print the status as five KEY=VALUE lines.
  -check_for_update   Ask for an update check and return at once.
  -update             Check, wait for the update to finish, printing the status
                      every 5 s (a progress bar on a terminal). Exit status is 0
                      if the update succeeded or there was none, and 1 if it failed.
  -watch_for_updates  Log every StatusUpdate signal to stderr; never returns.
New:
  -channel NAME       Switch the release channel (GROUP in /etc/flatcar/update.conf);
                      may be combined with an action, which then runs after it.
  -json               Print the status as JSON (alone, or with -status/-deny_list).
  -rollback           Boot the previous slot next (once; falls back if it fails).
  -cancel             Stop a running update check or download.
  -deny_list          Print the versions that will never be installed.
  -undeny VERSION     Allow VERSION again (remove it from the deny list).
  -clear_deny_list    Empty the deny list.
  -help, -version
";

/// The parsed flags (see [`USAGE`]).
#[allow(missing_docs)]
#[derive(Debug, Default)]
pub struct Args {
    pub reset_status: bool,
    pub status: bool,
    pub check_for_update: bool,
    pub update: bool,
    pub watch_for_updates: bool,
    pub json: bool,
    pub rollback: bool,
    pub cancel: bool,
    pub deny_list: bool,
    pub clear_deny_list: bool,
    pub help: bool,
    pub version: bool,
    pub channel: Option<String>,
    pub undeny: Option<String>,
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "true" | "1" | "yes" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "f" | "n" => Ok(false),
        _ => Err(format!(
            "ERROR: illegal value '{v}' specified for bool flag '{name}'"
        )),
    }
}

/// gflags syntax: `-flag`, `--flag`, `-flag=true|false`, `-noflag`,
/// `-channel NAME`, `-channel=NAME`.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!(
                "ERROR: unexpected argument '{arg}' (flags start with -)"
            ));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "channel" || name == "undeny" {
            let v = match value {
                Some(v) => v.to_string(),
                None => it
                    .next()
                    .ok_or_else(|| format!("ERROR: flag '-{name}' is missing its argument"))?,
            };
            *if name == "channel" {
                &mut args.channel
            } else {
                &mut args.undeny
            } = Some(v);
            continue;
        }
        let (flag, negated) = match name.strip_prefix("no") {
            Some(rest) if flag_slot(&mut Args::default(), rest).is_some() => (rest, true),
            _ => (name, false),
        };
        let mut on = parse_bool(flag, value.unwrap_or(""))?;
        if negated {
            if value.is_some() {
                return Err(format!("ERROR: flag '{name}' does not take a value"));
            }
            on = false;
        }
        match flag_slot(&mut args, flag) {
            Some(slot) => *slot = on,
            None => return Err(format!("ERROR: unknown command line flag '{name}'")),
        }
    }
    Ok(args)
}

fn flag_slot<'a>(args: &'a mut Args, name: &str) -> Option<&'a mut bool> {
    Some(match name {
        "reset_status" => &mut args.reset_status,
        "status" => &mut args.status,
        "check_for_update" => &mut args.check_for_update,
        "update" => &mut args.update,
        "watch_for_updates" => &mut args.watch_for_updates,
        "json" => &mut args.json,
        "rollback" => &mut args.rollback,
        "cancel" => &mut args.cancel,
        "deny_list" => &mut args.deny_list,
        "clear_deny_list" => &mut args.clear_deny_list,
        "help" | "helpfull" | "helpshort" => &mut args.help,
        "version" => &mut args.version,
        _ => return None,
    })
}
