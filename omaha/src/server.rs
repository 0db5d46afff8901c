//! The server side, for mock Omaha servers in tests: parse what a node sent
//! back into a typed [`Request`], and answer in Nebraska's compact layout.

use crate::error::{ResponseError, quote_cut};
use crate::event::{Event, EventErrorCode, UnknownValue};
use crate::request::{BootId, ClientInfo, InstallSource, Request, RequestKind, escape_into};
use crate::response::{
    DEFAULT_MAX_FAILURE_COUNT_PER_URL, Package, UpdateCheck, UpdateCheckResponse, parse_bounded,
};
use crate::xml::Element;

/// Why a request body was rejected by [`parse_request`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestParseError {
    /// Size, encoding or XML-level failure (shared with response parsing).
    #[error(transparent)]
    Document(#[from] ResponseError),
    /// The root element is not `<request>`.
    #[error("not an Omaha request: root element is <{root}>")]
    NotARequest {
        /// The root element's name.
        root: String,
    },
    /// A required element is missing.
    #[error("missing element {path}")]
    MissingElement {
        /// Path of the element.
        path: &'static str,
    },
    /// A required attribute is missing.
    #[error("missing attribute {attribute} on <{element}>")]
    MissingAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
    },
    /// An attribute did not hold a known value.
    #[error("invalid {attribute} attribute on <{element}>")]
    InvalidAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// What was wrong.
        #[source]
        source: UnknownValue,
    },
}

impl RequestParseError {
    /// A stable, machine-readable name for the failure class.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Document(e) => e.error_kind(),
            Self::NotARequest { .. } => "not_a_request",
            Self::MissingElement { .. } => "missing_element",
            Self::MissingAttribute { .. } => "missing_attribute",
            Self::InvalidAttribute { .. } => "invalid_attribute",
        }
    }
}

/// Parses a request body as sent by update_engine (or by this crate).
///
/// The body kind follows from the `<app>` children: `<updatecheck>` (with its
/// first `<event>`) is an update check, else an `<event>` is an event
/// request, else a `<ping>` is ping-only. Missing `<app>` attributes read as
/// empty strings.
pub fn parse_request(body: &[u8]) -> Result<Request, RequestParseError> {
    let root = parse_bounded(body)?;
    if root.name != "request" {
        return Err(RequestParseError::NotARequest {
            root: quote_cut(&root.name),
        });
    }
    let install_source = match root.attr("installsource") {
        None => InstallSource::default(),
        Some(v) => v
            .parse()
            .map_err(|source| invalid("request", "installsource", source))?,
    };
    let app = root.child("app").ok_or(RequestParseError::MissingElement {
        path: "request/app",
    })?;
    let text = |el: &Element, name: &str| el.attr(name).unwrap_or_default().to_string();
    let version = text(app, "version");
    let sp = root
        .child("os")
        .and_then(|os| os.attr("sp"))
        .unwrap_or_default();
    let arch = sp
        .strip_prefix(version.as_str())
        .and_then(|rest| rest.strip_prefix('_'))
        .or_else(|| sp.split_once('_').map(|(_, arch)| arch))
        .unwrap_or_default()
        .to_string();
    let client = ClientInfo {
        updater_version: text(&root, "version"),
        app_id: app
            .attr("appid")
            .ok_or(RequestParseError::MissingAttribute {
                element: "app",
                attribute: "appid",
            })?
            .to_string(),
        arch,
        track: text(app, "track"),
        boot_id: app
            .attr("bootid")
            .unwrap_or_default()
            .parse::<BootId>()
            .unwrap_or_default(),
        oem: text(app, "oem"),
        oem_version: text(app, "oemversion"),
        aleph_version: text(app, "alephversion"),
        machine_id: text(app, "machineid"),
        machine_alias: text(app, "machinealias"),
        board: text(app, "board"),
        delta_okay: app.attr("delta_okay") == Some("true"),
        version,
    };

    let event = app.child("event").map(parse_event).transpose()?;
    let kind = match (app.child("updatecheck"), event, app.child("ping")) {
        (Some(_), Some(event), _) => RequestKind::UpdateCheck { event },
        (Some(_), None, _) => {
            return Err(RequestParseError::MissingElement {
                path: "request/app/event",
            });
        }
        (None, Some(event), _) => RequestKind::Event(event),
        (None, None, Some(_)) => RequestKind::Ping,
        (None, None, None) => {
            return Err(RequestParseError::MissingElement {
                path: "request/app/{updatecheck,event,ping}",
            });
        }
    };
    Ok(Request {
        client,
        install_source,
        kind,
    })
}

fn parse_event(el: &Element) -> Result<Event, RequestParseError> {
    let required = |attribute: &'static str| {
        el.attr(attribute)
            .ok_or(RequestParseError::MissingAttribute {
                element: "event",
                attribute,
            })
    };
    Ok(Event {
        event_type: required("eventtype")?
            .parse()
            .map_err(|e| invalid("event", "eventtype", e))?,
        result: required("eventresult")?
            .parse()
            .map_err(|e| invalid("event", "eventresult", e))?,
        error_code: match el.attr("errorcode") {
            None => EventErrorCode::SUCCESS,
            Some(v) => v.parse().map_err(|e| invalid("event", "errorcode", e))?,
        },
        previous_version: el.attr("previousversion").map(str::to_string),
    })
}

fn invalid(
    element: &'static str,
    attribute: &'static str,
    source: UnknownValue,
) -> RequestParseError {
    RequestParseError::InvalidAttribute {
        element,
        attribute,
        source,
    }
}

/// Which per-request status elements the answer echoes: Nebraska answers a
/// `<ping>` with `<ping status="ok">` and an `<event>` with
/// `<event status="ok">`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Echo {
    /// Write `<ping status="ok">`.
    pub ping: bool,
    /// Write `<event status="ok">`.
    pub event: bool,
}

impl Echo {
    /// The echo Nebraska gives `request`.
    pub fn for_request(request: &Request) -> Self {
        match request.kind {
            RequestKind::UpdateCheck { .. } => Self {
                ping: true,
                event: true,
            },
            RequestKind::Ping => Self {
                ping: true,
                event: false,
            },
            RequestKind::Event(_) => Self {
                ping: false,
                event: true,
            },
        }
    }
}

/// Writes `response` in Nebraska's compact layout (hex `hash_sha256`,
/// base64 `hash` and `sha256`).
pub fn update_check_response_xml(response: &UpdateCheckResponse, echo: Echo) -> String {
    let mut out = header(response.server.as_deref());
    open_app(&mut out, response.app_id.as_deref(), "ok", echo);
    out.push_str("<updatecheck");
    match &response.outcome {
        UpdateCheck::NoUpdate => attr(&mut out, "status", "noupdate"),
        UpdateCheck::Update(_) => attr(&mut out, "status", "ok"),
    }
    if let Some(poll) = response.poll_interval {
        attr(&mut out, "PollInterval", &poll.to_string());
    }
    out.push_str("><urls>");
    if let UpdateCheck::Update(info) = &response.outcome {
        for url in &info.urls {
            out.push_str("<url");
            attr(&mut out, "codebase", url);
            out.push_str("></url>");
        }
        out.push_str("</urls><manifest");
        attr(&mut out, "version", &info.version);
        if info.is_floor {
            attr(&mut out, "is_floor", "true");
        }
        if let Some(reason) = &info.floor_reason {
            attr(&mut out, "floor_reason", reason);
        }
        if info.is_target {
            attr(&mut out, "is_target", "true");
        }
        out.push_str("><packages>");
        for package in std::iter::once(&info.payload).chain(&info.extra_packages) {
            write_package(&mut out, package);
        }
        out.push_str("</packages><actions><action event=\"postinstall\"");
        let pi = &info.postinstall;
        attr(&mut out, "sha256", &base64(&pi.sha256));
        if pi.disable_payload_backoff {
            attr(&mut out, "DisablePayloadBackoff", "true");
        }
        if pi.is_delta_payload {
            attr(&mut out, "IsDeltaPayload", "true");
        }
        if pi.max_failure_count_per_url != DEFAULT_MAX_FAILURE_COUNT_PER_URL {
            attr(
                &mut out,
                "MaxFailureCountPerUrl",
                &pi.max_failure_count_per_url.to_string(),
            );
        }
        if let Some(admin) = pi.needs_admin {
            attr(&mut out, "needsadmin", if admin { "true" } else { "false" });
        }
        for (k, v) in &pi.other_attributes {
            attr(&mut out, k, v);
        }
        out.push_str("></action></actions></manifest></updatecheck>");
    } else {
        out.push_str("</urls></updatecheck>");
    }
    close_app(&mut out, echo);
    out
}

/// An answer carrying a Nebraska-style error: `<app status="{status}">` and
/// `<updatecheck status="error-internal">`.
pub fn error_response_xml(app_id: &str, status: &str, echo: Echo) -> String {
    let mut out = header(Some("nebraska"));
    open_app(&mut out, Some(app_id), status, echo);
    out.push_str("<updatecheck status=\"error-internal\"><urls></urls></updatecheck>");
    close_app(&mut out, echo);
    out
}

/// The answer to an event-only request.
pub fn event_response_xml(app_id: &str) -> String {
    let mut out = header(Some("nebraska"));
    let echo = Echo {
        ping: false,
        event: true,
    };
    open_app(&mut out, Some(app_id), "ok", echo);
    close_app(&mut out, echo);
    out
}

fn header(server: Option<&str>) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response protocol=\"3.0\"");
    if let Some(server) = server {
        attr(&mut out, "server", server);
    }
    out.push_str("><daystart elapsed_seconds=\"0\"></daystart>");
    out
}

fn open_app(out: &mut String, app_id: Option<&str>, status: &str, echo: Echo) {
    out.push_str("<app");
    if let Some(id) = app_id {
        attr(out, "appid", id);
    }
    attr(out, "status", status);
    out.push('>');
    if echo.ping {
        out.push_str("<ping status=\"ok\"></ping>");
    }
}

fn close_app(out: &mut String, echo: Echo) {
    if echo.event {
        out.push_str("<event status=\"ok\"></event>");
    }
    out.push_str("</app></response>");
}

fn write_package(out: &mut String, package: &Package) {
    out.push_str("<package");
    attr(out, "name", &package.name);
    if let Some(sha1) = &package.sha1 {
        attr(out, "hash", &base64(sha1));
    }
    if let Some(sha256) = &package.sha256 {
        attr(out, "hash_sha256", &hex::encode(sha256));
    }
    attr(out, "size", &package.size.to_string());
    attr(
        out,
        "required",
        if package.required { "true" } else { "false" },
    );
    out.push_str("></package>");
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}
