//! `update_engine_client`: Flatcar's CLI with Flatcar's flags and output,
//! plus what Flatcar lacks (`-channel`, `-rollback`, `-cancel`, `-json`,
//! `-deny_list`, `-clear_deny_list`) and honest exit codes: `-update` exits 1
//! when the update failed, and every error names its cause.
//!
//! The bus comes from `DBUS_SYSTEM_BUS_ADDRESS` (else the system bus socket),
//! as for every D-Bus client.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::pin::pin;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use update_agent::dbus::client::{
    AgentProxy, ManagerProxy, WireStatus, glog_prefix, status_block, watch_lines,
};
use update_agent::dbus::{AGENT_INTERFACE, BUS_NAME, MANAGER_INTERFACE};
use update_agent::fsm::Operation;
use zbus::proxy::CacheProperties;

/// update_engine_client polls every 5 s during `-update`.
const POLL: Duration = Duration::from_secs(5);

#[path = "update_engine_client/bar.rs"]
mod bar;

use update_agent::client_args::{Args, USAGE, parse};

/// A failure with its cause in words.
#[derive(Debug)]
struct Failure(String);

fn uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Turns a D-Bus error into a sentence that names the cause.
fn explain(e: &zbus::Error, call: &str) -> Failure {
    let (name, message) = match e {
        zbus::Error::MethodError(name, msg, _) => {
            (name.as_str().to_string(), msg.clone().unwrap_or_default())
        }
        zbus::Error::FDO(f) => (
            zbus::DBusError::name(&**f).as_str().to_string(),
            f.to_string(),
        ),
        zbus::Error::InputOutput(io) => {
            return Failure(format!(
                "cannot connect to the system bus ({}): {io}; is dbus running?",
                bus_address()
            ));
        }
        zbus::Error::Address(a) => {
            return Failure(format!("bad system bus address {:?}: {a}", bus_address()));
        }
        other => return Failure(format!("{call}: {other}")),
    };
    let text = match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            format!("the update engine is not running ({BUS_NAME} has no owner on the system bus)")
        }
        "org.freedesktop.DBus.Error.AccessDenied" => {
            let who = if call.starts_with(MANAGER_INTERFACE) {
                "root or user core"
            } else {
                "root"
            };
            format!(
                "permission denied: the D-Bus policy does not let uid {} call {call} (needs {who})",
                uid()
            )
        }
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface"
        | "org.freedesktop.DBus.Error.UnknownObject" => {
            format!(
                "{call} is not supported by the running update engine (Flatcar's update_engine lacks {AGENT_INTERFACE})"
            )
        }
        "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => {
            format!("the update engine did not answer {call} in time")
        }
        _ if !message.is_empty() => format!("{call} failed: {message}"),
        _ => format!("{call} failed: {name}"),
    };
    Failure(text)
}

fn bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/var/run/dbus/system_bus_socket".into())
}

fn log_info(line: u32, msg: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let prefix = glog_prefix(
        'I',
        now,
        std::process::id(),
        "update_engine_client.rs",
        line,
    );
    eprintln!("{prefix}{msg}");
}

struct Client {
    manager: ManagerProxy<'static>,
    agent: AgentProxy<'static>,
}

/// Connection attempts before giving up (Flatcar's client: 4).
const CONNECT_TRIES: u32 = 4;

impl Client {
    /// Connects, retrying as Flatcar's client does (4 tries, 10 s apart;
    /// `UPDATE_ENGINE_CLIENT_RETRY_MS` changes the wait) while the bus is
    /// down or the engine has not taken its name yet, e.g. right after
    /// boot or a restart of the engine.
    async fn connect() -> Result<Self, Failure> {
        let delay = std::env::var("UPDATE_ENGINE_CLIENT_RETRY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_millis,
            );
        let mut tries = 1;
        loop {
            match Self::try_connect().await {
                Ok(client) => return Ok(client),
                Err(e) if tries < CONNECT_TRIES => {
                    tries += 1;
                    eprintln!("update_engine_client: {}; retrying in {delay:?}", e.0);
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: the bus, and the engine's name owned on it.
    async fn try_connect() -> Result<Self, Failure> {
        let conn = zbus::Connection::system()
            .await
            .map_err(|e| explain(&e, "connecting"))?;
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(|e| explain(&e, "creating the proxy"))?;
        let owned = dbus
            .name_has_owner(BUS_NAME.try_into().expect("a valid bus name"))
            .await
            .map_err(|e| explain(&zbus::Error::from(e), "NameHasOwner"))?;
        if !owned {
            return Err(Failure(format!(
                "the update engine is not running ({BUS_NAME} has no owner on the system bus)"
            )));
        }
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| explain(&e, "creating the proxy"))?;
        let agent = AgentProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| explain(&e, "creating the proxy"))?;
        Ok(Self { manager, agent })
    }

    async fn status(&self) -> Result<WireStatus, Failure> {
        self.manager
            .get_status()
            .await
            .map(WireStatus::from)
            .map_err(|e| explain(&e, &format!("{MANAGER_INTERFACE}.GetStatus")))
    }

    async fn last_error(&self) -> Option<(String, String, u32)> {
        let kind = self.agent.last_error_kind().await.ok()?;
        let message = self.agent.last_error_message().await.ok()?;
        let code = self.agent.last_error_code().await.ok()?;
        Some((kind, message, code))
    }
}

fn agent_call(method: &str) -> String {
    format!("{AGENT_INTERFACE}.{method}")
}

/// `-json`'s `schema_version`: raised only when a field changes meaning or
/// goes away (added fields keep it). The schema is
/// `docs/status.schema.json`.
const STATUS_SCHEMA_VERSION: u32 = 1;

/// `-json` (without `-deny_list`): the Manager's status plus, when the
/// engine has the agent's interface and the caller may read it, the node's
/// slots, schedule, deny list and last error.
async fn status_json(client: &Client) -> Result<serde_json::Value, Failure> {
    let s = client.status().await?;
    let staged = s.operation() == Some(Operation::UpdatedNeedReboot);
    let mut v = serde_json::json!({
        "schema_version": STATUS_SCHEMA_VERSION,
        "current_operation": s.current_operation,
        "progress": s.progress,
        "new_version": s.new_version,
        "new_size": s.new_size,
        "last_checked_time": s.last_checked_time,
        "staged_version": if staged { Some(&s.new_version) } else { None },
    });
    let a = &client.agent;
    let (Ok(channel), Ok(current), Ok(slot)) = (
        a.channel().await,
        a.current_version().await,
        a.booted_slot().await,
    ) else {
        return Ok(v);
    };
    v["channel"] = channel.into();
    v["current_version"] = current.into();
    v["booted_slot"] = slot.into();
    let next = a.next_check_time().await.unwrap_or(0);
    v["next_check_time"] = (next > 0).then_some(next).into();
    v["slots"] = a
        .slots()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(label, priority, tries, successful, version)| {
            serde_json::json!({
                "label": label,
                "priority": priority,
                "tries": tries,
                "successful": successful,
                "version": (!version.is_empty()).then_some(version),
            })
        })
        .collect();
    v["deny_list"] = deny_json(a.deny_list().await.unwrap_or_default());
    if let Some((kind, message, code)) = client.last_error().await {
        v["last_error"] = (!kind.is_empty())
            .then(|| error_json(&kind, &message, code))
            .into();
    }
    Ok(v)
}

fn deny_json(entries: Vec<(String, u64, String)>) -> serde_json::Value {
    entries
        .into_iter()
        .map(|(v, since, reason)| serde_json::json!({"version": v, "since": since, "reason": reason}))
        .collect()
}

/// The last error with its code decoded: the base code's number and name,
/// and the flag bits by name.
fn error_json(kind: &str, message: &str, code: u32) -> serde_json::Value {
    let named = omaha::NamedErrorCode(code);
    let name = named.base().map_or("Unknown".to_string(), |b| b.name());
    serde_json::json!({
        "kind": kind,
        "message": message,
        "code": code,
        // `9 DownloadTransferError [TestOmahaUrl]`: the code and its flags by name.
        "code_name": named.to_string(),
        "base_code": named.base_code(),
        "name": name,
        "flags": named.flags().names().collect::<Vec<_>>(),
    })
}

async fn run(args: Args) -> Result<ExitCode, Failure> {
    if args.help {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.version {
        println!("update_engine_client {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::connect().await?;
    if let Some(channel) = &args.channel {
        client
            .agent
            .set_channel(channel)
            .await
            .map_err(|e| explain(&e, &agent_call("SetChannel")))?;
        log_info(
            line!(),
            &format!("Channel set to {channel}; the next update check uses it."),
        );
    }
    if let Some(code) = manager_action(&client, &args).await? {
        return Ok(code);
    }
    if let Some(code) = agent_action(&client, &args).await? {
        return Ok(code);
    }
    if args.channel.is_none() {
        log_info(line!(), "Done.");
    }
    Ok(ExitCode::SUCCESS)
}

/// update_engine's own actions (`com.coreos.update1.Manager`); `None` when
/// none was asked for.
async fn manager_action(client: &Client, args: &Args) -> Result<Option<ExitCode>, Failure> {
    if args.reset_status {
        client
            .manager
            .reset_status()
            .await
            .map_err(|e| explain(&e, &format!("{MANAGER_INTERFACE}.ResetStatus")))?;
        log_info(
            line!(),
            "ResetStatus succeeded; the partition table was restored, the next boot stays on the current slot.",
        );
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.status || (args.json && !args.deny_list) {
        if args.json {
            println!("{}", status_json(client).await?);
        } else {
            print!("{}", status_block(&client.status().await?));
        }
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.check_for_update {
        client
            .manager
            .attempt_update()
            .await
            .map_err(|e| explain(&e, &format!("{MANAGER_INTERFACE}.AttemptUpdate")))?;
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.update {
        return update(client).await.map(Some);
    }
    if args.watch_for_updates {
        return watch(client).await.map(Some);
    }
    Ok(None)
}

/// The agent's own actions (rollback, cancel, the deny list); `None`
/// when none was asked for.
async fn agent_action(client: &Client, args: &Args) -> Result<Option<ExitCode>, Failure> {
    if args.rollback {
        client
            .agent
            .rollback()
            .await
            .map_err(|e| explain(&e, &agent_call("Rollback")))?;
        log_info(
            line!(),
            "Rollback staged: the next boot uses the previous slot (once).",
        );
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.cancel {
        client
            .agent
            .cancel()
            .await
            .map_err(|e| explain(&e, &agent_call("Cancel")))?;
        log_info(line!(), "Update canceled.");
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.deny_list {
        let list = client
            .agent
            .deny_list()
            .await
            .map_err(|e| explain(&e, &format!("{AGENT_INTERFACE}.DenyList")))?;
        if args.json {
            println!("{}", deny_json(list));
        } else {
            for (version, since, reason) in list {
                println!("{version}\t{since}\t{reason}");
            }
        }
        return Ok(Some(ExitCode::SUCCESS));
    }
    if let Some(version) = &args.undeny {
        let removed = client
            .agent
            .undeny(version)
            .await
            .map_err(|e| explain(&e, &agent_call("Undeny")))?;
        let text = if removed {
            format!("{version} removed from the deny list.")
        } else {
            format!("{version} was not on the deny list.")
        };
        log_info(line!(), &text);
        return Ok(Some(ExitCode::SUCCESS));
    }
    if args.clear_deny_list {
        client
            .agent
            .clear_deny_list()
            .await
            .map_err(|e| explain(&e, &agent_call("ClearDenyList")))?;
        log_info(line!(), "Deny list cleared.");
        return Ok(Some(ExitCode::SUCCESS));
    }
    Ok(None)
}

/// `-update`: AttemptUpdate, then the status every 5 s (and at once when a
/// signal says the update ended) until IDLE or UPDATED_NEED_REBOOT.
async fn update(client: &Client) -> Result<ExitCode, Failure> {
    let call = format!("{MANAGER_INTERFACE}.AttemptUpdate");
    let mut signals = client
        .manager
        .receive_status_update()
        .await
        .map_err(|e| explain(&e, "subscribing to StatusUpdate"))?;
    let error_before = client.last_error().await;
    client
        .manager
        .attempt_update()
        .await
        .map_err(|e| explain(&e, &call))?;
    // A bar on a terminal; status blocks otherwise, as update_engine_client.
    let bar = std::io::stdout().is_terminal().then(bar::Bar::stdout);
    let mut saw_error_event = false;
    let mut seen_active = false;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    let status = loop {
        let woke = match select(pin!(ticker.tick()), pin!(signals.next())).await {
            Either::Left(_) => None,
            Either::Right((signal, _)) => Some(signal),
        };
        let poll_now = match woke {
            None => true,
            Some(None) => {
                return Err(Failure(
                    "the update engine left the bus during the update".into(),
                ));
            }
            Some(Some(signal)) => {
                let Ok(a) = signal.args() else { continue };
                let s = WireStatus {
                    last_checked_time: a.last_checked_time,
                    progress: a.progress,
                    current_operation: a.current_operation.clone(),
                    new_version: a.new_version.clone(),
                    new_size: a.new_size,
                };
                let op = s.operation();
                saw_error_event |= op == Some(Operation::ReportingErrorEvent);
                if let Some(bar) = &bar {
                    bar.show(&s);
                }
                let done = matches!(op, Some(Operation::Idle | Operation::UpdatedNeedReboot));
                seen_active |= !done;
                done && seen_active
            }
        };
        if !poll_now {
            continue;
        }
        let s = client.status().await?;
        let op = s.operation();
        saw_error_event |= op == Some(Operation::ReportingErrorEvent);
        match &bar {
            Some(bar) => bar.show(&s),
            None => print!("{}", status_block(&s)),
        }
        if matches!(op, Some(Operation::Idle | Operation::UpdatedNeedReboot)) {
            break s;
        }
        seen_active = true;
    };
    if let Some(bar) = &bar {
        bar.finish();
        print!("{}", status_block(&status));
    }
    if status.operation() == Some(Operation::UpdatedNeedReboot) {
        log_info(line!(), "Update succeeded -- reboot needed.");
        return Ok(ExitCode::SUCCESS);
    }
    let error_after = client.last_error().await;
    Ok(verdict(
        saw_error_event,
        error_before.as_ref(),
        error_after.as_ref(),
    ))
}

/// The exit status of an `-update` that ended in IDLE: a failure when an
/// error event was seen or the engine has a new last error.
fn verdict(
    saw_error_event: bool,
    error_before: Option<&(String, String, u32)>,
    error_after: Option<&(String, String, u32)>,
) -> ExitCode {
    let new_error = error_after.filter(|e| !e.0.is_empty() && Some(*e) != error_before);
    if saw_error_event || new_error.is_some() {
        let why = match error_after {
            Some((kind, message, code)) if !kind.is_empty() => {
                format!("{message} ({kind}, error {})", omaha::NamedErrorCode(*code))
            }
            _ => "the engine reported an error event (no details: the engine lacks the LastError properties)".into(),
        };
        eprintln!("update_engine_client: the update failed: {why}");
        return ExitCode::FAILURE;
    }
    log_info(line!(), "No update available");
    ExitCode::SUCCESS
}

/// `-watch_for_updates`: log each signal as update_engine_client does.
async fn watch(client: &Client) -> Result<ExitCode, Failure> {
    let mut signals = client
        .manager
        .receive_status_update()
        .await
        .map_err(|e| explain(&e, "subscribing to StatusUpdate"))?;
    // The log lines go to stderr; on a terminal a bar below them.
    let bar = std::io::stderr().is_terminal().then(bar::Bar::stderr);
    while let Some(signal) = signals.next().await {
        let Ok(a) = signal.args() else { continue };
        let s = WireStatus {
            last_checked_time: a.last_checked_time,
            progress: a.progress,
            current_operation: a.current_operation.clone(),
            new_version: a.new_version.clone(),
            new_size: a.new_size,
        };
        match &bar {
            Some(bar) => {
                bar.suspend(|| watch_lines(&s).iter().for_each(|l| log_info(line!(), l)));
                bar.show(&s);
            }
            None => watch_lines(&s).iter().for_each(|l| log_info(line!(), l)),
        }
    }
    Err(Failure(
        "the signal stream ended (bus connection lost)".into(),
    ))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("update_engine_client: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(Failure(why)) => {
            eprintln!("update_engine_client: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_take_one_or_two_dashes_and_gflags_values() {
        assert!(p(&["-status"]).unwrap().status);
        assert!(p(&["--status"]).unwrap().status);
        assert!(p(&["--update=true"]).unwrap().update);
        assert!(!p(&["-update=false"]).unwrap().update);
        assert!(!p(&["-update", "-noupdate"]).unwrap().update);
        assert_eq!(
            p(&["-channel", "beta"]).unwrap().channel.as_deref(),
            Some("beta")
        );
        assert_eq!(
            p(&["--channel=alpha"]).unwrap().channel.as_deref(),
            Some("alpha")
        );
    }

    #[test]
    fn bad_flags_are_errors() {
        assert_eq!(
            p(&["-bogus"]).unwrap_err(),
            "ERROR: unknown command line flag 'bogus'"
        );
        assert_eq!(
            p(&["-channel"]).unwrap_err(),
            "ERROR: flag '-channel' is missing its argument"
        );
        assert!(p(&["status"]).is_err());
        assert!(p(&["-status=maybe"]).is_err());
    }
}
