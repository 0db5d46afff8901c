//! Request building, byte-for-byte in the shape of Flatcar's update_engine
//! 0.4.10 (`omaha_request_action.cc` `GetRequestXml`/`GetAppXml`/`GetAppBody`).

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::event::{Event, EventResult, UnknownValue};

/// Flatcar's Omaha application id (`FLATCAR_RELEASE_APPID` default).
pub const FLATCAR_APP_ID: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";

/// update_engine's `PACKAGE_NAME-PACKAGE_VERSION`, sent as both `version` and
/// `updaterversion`.
pub const UPDATER_VERSION: &str = "update_engine-0.4.10";

/// The track (`GROUP`) used when none is configured.
pub const DEFAULT_TRACK: &str = "stable";

/// A `version` Nebraska treats as a downstream syncer when paired with
/// `installsource="scheduler"`; a node must never send it.
pub const SYNCER_VERSION: &str = "CoreOSUpdateEngine-0.1.0.0";

/// `request@installsource`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum InstallSource {
    /// `scheduler`: a periodic check.
    #[default]
    Scheduler,
    /// `ondemandupdate`: triggered by `AttemptUpdate` (interactive).
    OnDemandUpdate,
}

impl InstallSource {
    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::OnDemandUpdate => "ondemandupdate",
        }
    }
}

impl fmt::Display for InstallSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstallSource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "scheduler" => Ok(Self::Scheduler),
            "ondemandupdate" => Ok(Self::OnDemandUpdate),
            _ => Err(UnknownValue::new("install source", s)),
        }
    }
}

/// The kernel boot id, sent braced (`{…}`).
///
/// Parsing trims whitespace (as read from
/// `/proc/sys/kernel/random/boot_id`) and accepts the value with or without
/// braces; `Display` always writes it braced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BootId(String);

impl BootId {
    /// The id without braces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BootId {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
            .unwrap_or(s);
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.0)
    }
}

/// Who is asking: everything in `<request>`, `<os>` and `<app>` attributes.
///
/// Fill it with struct-update syntax from [`ClientInfo::default`], which holds
/// Flatcar's constant values:
///
/// ```
/// let client = omaha::ClientInfo {
///     version: "3510.2.0".into(),
///     board: "amd64-usr".into(),
///     ..Default::default()
/// };
/// assert_eq!(client.track, "stable");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `request@version` and `request@updaterversion`
    /// ([`UPDATER_VERSION`]).
    pub updater_version: String,
    /// `app@appid` (`FLATCAR_RELEASE_APPID`, default [`FLATCAR_APP_ID`]).
    pub app_id: String,
    /// `app@version` (`FLATCAR_RELEASE_VERSION`); also the first half of
    /// `os@sp`.
    pub version: String,
    /// `uname -m`, the second half of `os@sp` (e.g. `x86_64`).
    pub arch: String,
    /// `app@track` (`GROUP`, default [`DEFAULT_TRACK`]).
    pub track: String,
    /// `app@bootid`.
    pub boot_id: BootId,
    /// `app@oem` (`ID` of oem-release).
    pub oem: String,
    /// `app@oemversion` (`VERSION_ID` of oem-release).
    pub oem_version: String,
    /// `app@alephversion` (first version ever installed).
    pub aleph_version: String,
    /// `app@machineid` (`/etc/machine-id`, trimmed, not braced).
    pub machine_id: String,
    /// `app@machinealias` (`MACHINE_ALIAS`).
    pub machine_alias: String,
    /// `app@board` (`FLATCAR_RELEASE_BOARD`, e.g. `amd64-usr`).
    pub board: String,
    /// `app@delta_okay`: this node takes a delta package (update_engine
    /// always sends `false`).
    pub delta_okay: bool,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            updater_version: UPDATER_VERSION.to_string(),
            app_id: FLATCAR_APP_ID.to_string(),
            version: String::new(),
            arch: "x86_64".to_string(),
            track: DEFAULT_TRACK.to_string(),
            boot_id: BootId::default(),
            oem: String::new(),
            oem_version: String::new(),
            aleph_version: String::new(),
            machine_id: String::new(),
            machine_alias: String::new(),
            board: String::new(),
            delta_okay: false,
        }
    }
}

/// What the `<app>` element carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `<ping active="1">`, `<updatecheck>` and the piggy-backed event
    /// (normally from [`Event::for_update_check`]).
    UpdateCheck {
        /// The piggy-backed event: 3/2 with `previousversion`, or 3/0/44.
        event: Event,
    },
    /// Only `<ping active="1">`: sent by scheduled checks while an update
    /// waits for a reboot.
    Ping,
    /// Only one `<event>`; the server's answer is ignored by update_engine.
    Event(Event),
}

/// One Omaha request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The node's identity.
    pub client: ClientInfo,
    /// `request@installsource`.
    pub install_source: InstallSource,
    /// The `<app>` body.
    pub kind: RequestKind,
}

impl Request {
    /// An update check. `previous_version_pref` is the content of the
    /// `previous-version` pref, `None` if the pref file does not exist; the
    /// piggy-backed event (3/2 or the 3/0/44 rollback report) follows from
    /// it as described at [`Event::for_update_check`].
    pub fn update_check(
        client: ClientInfo,
        install_source: InstallSource,
        previous_version_pref: Option<&str>,
    ) -> Self {
        let event = Event::for_update_check(previous_version_pref, &client.version);
        Self {
            client,
            install_source,
            kind: RequestKind::UpdateCheck { event },
        }
    }

    /// A ping-only request.
    pub fn ping(client: ClientInfo, install_source: InstallSource) -> Self {
        Self {
            client,
            install_source,
            kind: RequestKind::Ping,
        }
    }

    /// An event-only request.
    pub fn event(client: ClientInfo, install_source: InstallSource, event: Event) -> Self {
        Self {
            client,
            install_source,
            kind: RequestKind::Event(event),
        }
    }

    /// The request body, exactly as update_engine lays it out.
    pub fn to_xml(&self) -> String {
        let c = &self.client;
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str("<request protocol=\"3.0\"");
        attr(&mut out, "version", &c.updater_version);
        attr(&mut out, "updaterversion", &c.updater_version);
        attr(&mut out, "installsource", self.install_source.as_str());
        out.push_str(" ismachine=\"1\">\n");

        out.push_str("    <os version=\"Chateau\" platform=\"CoreOS\"");
        attr(&mut out, "sp", &format!("{}_{}", c.version, c.arch));
        out.push_str("></os>\n");

        out.push_str("    <app");
        attr(&mut out, "appid", &c.app_id);
        attr(&mut out, "version", &c.version);
        attr(&mut out, "track", &c.track);
        attr(&mut out, "bootid", &c.boot_id.to_string());
        attr(&mut out, "oem", &c.oem);
        attr(&mut out, "oemversion", &c.oem_version);
        attr(&mut out, "alephversion", &c.aleph_version);
        attr(&mut out, "machineid", &c.machine_id);
        attr(&mut out, "machinealias", &c.machine_alias);
        out.push_str(" lang=\"en-US\"");
        attr(&mut out, "board", &c.board);
        out.push_str(" hardware_class=\"\"");
        attr(
            &mut out,
            "delta_okay",
            if c.delta_okay { "true" } else { "false" },
        );
        out.push_str(" >\n");

        match &self.kind {
            RequestKind::UpdateCheck { event } => {
                out.push_str(PING);
                out.push_str("        <updatecheck></updatecheck>\n");
                write_event(&mut out, event);
            }
            RequestKind::Ping => out.push_str(PING),
            RequestKind::Event(event) => write_event(&mut out, event),
        }
        out.push_str("    </app>\n</request>\n");
        out
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

const PING: &str = "        <ping active=\"1\"></ping>\n";

fn write_event(out: &mut String, event: &Event) {
    out.push_str("        <event");
    attr(out, "eventtype", &event.event_type.to_string());
    attr(out, "eventresult", &event.result.to_string());
    if let Some(prev) = &event.previous_version {
        attr(out, "previousversion", prev);
    } else if event.result != EventResult::Success {
        attr(out, "errorcode", &event.error_code.to_string());
    }
    out.push_str("></event>\n");
}

/// Appends ` name="value"` with `value` escaped.
fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// Escapes like libxml2's `xmlEncodeEntitiesReentrant(NULL, …)`, which
/// update_engine uses: `&`, `<`, `>` become entities, non-ASCII characters
/// become `&#xHEX;`, `\r` becomes `&#13;`, tab and newline are kept, other
/// control characters (not allowed in XML) are dropped.
///
/// One deliberate difference: `"` becomes `&quot;`. libxml2 leaves it alone,
/// which makes update_engine send broken XML for such values.
pub(crate) fn escape_into(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | ' '..='\u{7f}' => out.push(ch),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 => {}
            c => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s);
        out
    }

    #[test]
    fn escaping() {
        let cases: &[(&str, &str)] = &[
            ("plain-1.2_3", "plain-1.2_3"),
            ("a&b", "a&amp;b"),
            ("<x>", "&lt;x&gt;"),
            ("say \"hi\" 'there'", "say &quot;hi&quot; 'there'"),
            ("caf\u{e9}", "caf&#xE9;"),
            ("\u{1F600}", "&#x1F600;"),
            ("a\tb\nc\rd", "a\tb\nc&#13;d"),
            ("nul\u{0}bell\u{7}", "nulbell"),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn boot_id_braces() {
        for input in ["2a6fbb0a-6f3e\n", "{2a6fbb0a-6f3e}", "  2a6fbb0a-6f3e  "] {
            let id: BootId = input.parse().unwrap();
            assert_eq!(id.to_string(), "{2a6fbb0a-6f3e}");
            assert_eq!(id.as_str(), "2a6fbb0a-6f3e");
        }
    }

    #[test]
    fn install_source_pairs() {
        for s in [InstallSource::Scheduler, InstallSource::OnDemandUpdate] {
            assert_eq!(s.to_string().parse::<InstallSource>(), Ok(s));
        }
        assert_eq!(
            "Scheduler"
                .parse::<InstallSource>()
                .unwrap_err()
                .to_string(),
            "unknown install source \"Scheduler\""
        );
    }
}
