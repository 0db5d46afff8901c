//! Tolerant parsing of Omaha v3 responses, following update_engine's
//! `OmahaRequestAction::ParseResponse`: only the `<app>` with our appid, its
//! first `<manifest>` and postinstall `<action>` are read; element order and
//! unknown elements or attributes do not matter. Unlike update_engine, what
//! could point the downloader elsewhere (another product's app, a package
//! name leaving its codebase, a non-http(s) codebase) is refused here.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::codebase::{check_package_name, join_url, parse_codebase};
use crate::error::{ResponseError, quote_cut};
use crate::event::parse_decimal;
use crate::xml::{Element, parse_document};

/// Largest response body accepted, in bytes.
pub const MAX_RESPONSE_SIZE: usize = 1024 * 1024;

/// Deepest element nesting accepted (an Omaha response needs 6).
pub const MAX_DEPTH: usize = 32;

/// Most elements accepted in one response.
pub const MAX_ELEMENTS: usize = 10_000;

/// `MaxFailureCountPerUrl` when the action does not set it.
pub const DEFAULT_MAX_FAILURE_COUNT_PER_URL: u32 = 10;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// A SHA-1 digest.
pub type Sha1Digest = [u8; 20];

/// A parsed update-check response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCheckResponse {
    /// `response@server`, e.g. `nebraska`.
    pub server: Option<String>,
    /// `app@appid` of the app that was read, as the server spelled it (it
    /// matches ours, see [`same_app_id`]).
    pub app_id: Option<String>,
    /// `updatecheck@PollInterval` in seconds: overrides the next check
    /// interval when > 0.
    pub poll_interval: Option<u32>,
    /// Whether there is an update.
    pub outcome: UpdateCheck,
}

/// The outcome of an update check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateCheck {
    /// `status="noupdate"`.
    NoUpdate,
    /// `status="ok"`.
    Update(Box<UpdateInfo>),
}

/// Everything needed to download and install an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInfo {
    /// `manifest@version`: the new version.
    pub version: String,
    /// `url@codebase`s in order: the fallback list. Each was checked to be an
    /// absolute http(s) URL with a host.
    pub urls: Vec<String>,
    /// The first package: the OS payload.
    pub payload: Package,
    /// The other packages of the manifest, in order (sysext/OEM payloads such
    /// as `oem-azure.gz`, consumed by postinst).
    pub extra_packages: Vec<Package>,
    /// The postinstall action.
    pub postinstall: PostinstallAction,
    /// `manifest@is_floor="true"` (multi-manifest responses to syncers).
    pub is_floor: bool,
    /// `manifest@floor_reason`.
    pub floor_reason: Option<String>,
    /// `manifest@is_target="true"`.
    pub is_target: bool,
    /// Number of further `<manifest>`s after the first (ignored, as
    /// update_engine does).
    pub ignored_manifests: usize,
}

impl UpdateInfo {
    /// The payload's download URLs in fallback order: each codebase joined
    /// with the payload name by [`join_url`].
    pub fn payload_urls(&self) -> Vec<String> {
        self.package_urls(&self.payload)
    }

    /// `package`'s download URLs in fallback order, joined by [`join_url`].
    /// A codebase or name that [`join_url`] refuses is left out; for an
    /// `UpdateInfo` from [`parse_update_check`] none is, since parsing
    /// refuses them first.
    pub fn package_urls(&self, package: &Package) -> Vec<String> {
        self.urls
            .iter()
            .filter_map(|base| join_url(base, &package.name).ok())
            .collect()
    }

    /// The package called `name` (payload or extra).
    pub fn package(&self, name: &str) -> Option<&Package> {
        std::iter::once(&self.payload)
            .chain(&self.extra_packages)
            .find(|p| p.name == name)
    }
}

/// One `<package>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `name`: file name appended to each codebase as one path segment.
    /// Checked to be a plain file name: not empty, `.` or `..`, no `/`,
    /// `\` or control characters.
    pub name: String,
    /// `size` in bytes.
    pub size: u64,
    /// `hash`: SHA-1 (base64 on the wire), if present and non-empty.
    pub sha1: Option<Sha1Digest>,
    /// `hash_sha256`: SHA-256 (hex from Nebraska, base64 from go-omaha), if
    /// present and non-empty.
    pub sha256: Option<Sha256Digest>,
    /// `required="true"`.
    pub required: bool,
}

/// The `<action event="postinstall">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostinstallAction {
    /// `sha256`: SHA-256 of the whole payload file (base64 on the wire).
    pub sha256: Sha256Digest,
    /// `DisablePayloadBackoff="true"`.
    pub disable_payload_backoff: bool,
    /// `IsDeltaPayload="true"`.
    pub is_delta_payload: bool,
    /// `MaxFailureCountPerUrl`, default
    /// [`DEFAULT_MAX_FAILURE_COUNT_PER_URL`].
    pub max_failure_count_per_url: u32,
    /// `needsadmin` (`true`/`false`), ignored by update_engine.
    pub needs_admin: Option<bool>,
    /// Every other attribute, verbatim (e.g. `MetadataSize`, `deadline`,
    /// `ChromeOSVersion`); update_engine ignores them.
    pub other_attributes: BTreeMap<String, String>,
}

/// A parsed response to an event-only (or ping-only) request.
/// update_engine ignores these; this is for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventResponse {
    /// `response@server`.
    pub server: Option<String>,
    /// `app@appid`.
    pub app_id: Option<String>,
    /// `event@status` of each `<event>` in the first app.
    pub event_statuses: Vec<String>,
    /// `ping@status`, if there is a `<ping>`.
    pub ping_status: Option<String>,
}

/// Parses an update-check response body, reading the `<app>` whose appid
/// matches `app_id` (the one sent in the request, see [`same_app_id`]).
///
/// Errors: see [`ResponseError`]. An `error-*` status (Nebraska sends those
/// with HTTP 200) on `<app>` or `<updatecheck>` is
/// [`ResponseError::ServerError`] naming the server's status; no app for
/// `app_id` is [`ResponseError::AppNotFound`].
pub fn parse_update_check(body: &[u8], app_id: &str) -> Result<UpdateCheckResponse, ResponseError> {
    let root = parse_root(body)?;
    let app = our_app(&root, app_id)?;
    let updatecheck = app
        .child("updatecheck")
        .ok_or(ResponseError::MissingElement {
            path: "response/app/updatecheck",
        })?;

    let poll_interval = match updatecheck.attr("PollInterval") {
        None => None,
        Some(v) => Some(parse_decimal::<u32>(v).ok_or_else(|| {
            ResponseError::invalid(
                "updatecheck",
                "PollInterval",
                v,
                "expected a decimal number of seconds",
            )
        })?),
    };

    let outcome = match updatecheck.attr("status") {
        None => {
            return Err(ResponseError::MissingAttribute {
                element: "updatecheck",
                attribute: "status",
            });
        }
        Some("noupdate") => UpdateCheck::NoUpdate,
        Some("ok") => UpdateCheck::Update(Box::new(parse_update(updatecheck)?)),
        Some(other) => {
            return Err(ResponseError::ServerError {
                element: "updatecheck",
                status: other.to_string(),
            });
        }
    };

    Ok(UpdateCheckResponse {
        server: root.attr("server").map(str::to_string),
        app_id: app.attr("appid").map(str::to_string),
        poll_interval,
        outcome,
    })
}

/// Parses the response to an event-only or ping-only request: checks the
/// envelope and the status of the app for `app_id`, and collects the
/// statuses.
pub fn parse_event_response(body: &[u8], app_id: &str) -> Result<EventResponse, ResponseError> {
    let root = parse_root(body)?;
    let app = our_app(&root, app_id)?;
    Ok(EventResponse {
        server: root.attr("server").map(str::to_string),
        app_id: app.attr("appid").map(str::to_string),
        event_statuses: app
            .children_named("event")
            .map(|e| e.attr("status").unwrap_or_default().to_string())
            .collect(),
        ping_status: app
            .child("ping")
            .map(|p| p.attr("status").unwrap_or_default().to_string()),
    })
}

/// Size check, UTF-8 check, XML parse, `<response protocol="3.x">`.
fn parse_root(body: &[u8]) -> Result<Element, ResponseError> {
    let root = parse_bounded(body)?;
    if root.name != "response" {
        return Err(ResponseError::NotAResponse {
            root: crate::error::quote_cut(&root.name),
        });
    }
    match root.attr("protocol") {
        Some(p) if p.starts_with("3.") => Ok(root),
        other => Err(ResponseError::UnsupportedProtocol {
            found: other.map(crate::error::quote_cut),
        }),
    }
}

/// Size check, UTF-8 check, XML parse into a tree.
pub(crate) fn parse_bounded(body: &[u8]) -> Result<Element, ResponseError> {
    if body.len() > MAX_RESPONSE_SIZE {
        return Err(ResponseError::TooLarge {
            size: body.len(),
            max: MAX_RESPONSE_SIZE,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| ResponseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(ResponseError::Empty);
    }
    parse_document(text)
}

/// Whether two appids name the same app: GUIDs are compared without
/// surrounding braces and ignoring ASCII case, so
/// `{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}` matches
/// `e96281a6-d1af-4bde-9a0a-97b76e56dc57`.
pub fn same_app_id(a: &str, b: &str) -> bool {
    fn bare(id: &str) -> &str {
        let id = id.trim();
        id.strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(id)
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// Most appids quoted in [`ResponseError::AppNotFound`].
const MAX_QUOTED_APPS: usize = 4;

/// The first `<app>` whose appid matches `app_id`, rejecting an `error-*`
/// (any non-`ok`) status on it.
fn our_app<'a>(root: &'a Element, app_id: &str) -> Result<&'a Element, ResponseError> {
    let mut apps = root.children_named("app").peekable();
    if apps.peek().is_none() {
        return Err(ResponseError::MissingElement {
            path: "response/app",
        });
    }
    let app = apps
        .find(|a| a.attr("appid").is_some_and(|id| same_app_id(id, app_id)))
        .ok_or_else(|| ResponseError::AppNotFound {
            want: quote_cut(app_id),
            found: root
                .children_named("app")
                .take(MAX_QUOTED_APPS)
                .map(|a| quote_cut(a.attr("appid").unwrap_or_default()))
                .collect(),
        })?;
    match app.attr("status") {
        None | Some("ok") => Ok(app),
        Some(other) => Err(ResponseError::ServerError {
            element: "app",
            status: other.to_string(),
        }),
    }
}

fn parse_update(updatecheck: &Element) -> Result<UpdateInfo, ResponseError> {
    let urls = updatecheck
        .child("urls")
        .into_iter()
        .flat_map(|u| u.children_named("url"))
        .map(|url| {
            let codebase = required_non_empty(url, "url", "codebase")?;
            parse_codebase(codebase)?;
            Ok(codebase.to_string())
        })
        .collect::<Result<Vec<_>, ResponseError>>()?;
    if urls.is_empty() {
        return Err(ResponseError::MissingElement {
            path: "response/app/updatecheck/urls/url",
        });
    }

    let mut manifests = updatecheck.children_named("manifest");
    let manifest = manifests.next().ok_or(ResponseError::MissingElement {
        path: "response/app/updatecheck/manifest",
    })?;
    let ignored_manifests = manifests.count();
    let version = required_non_empty(manifest, "manifest", "version")?;
    if version.chars().any(char::is_control) {
        // It is logged, shown by `-status` and written to prefs.
        return Err(ResponseError::invalid(
            "manifest",
            "version",
            version,
            "must not contain control characters",
        ));
    }
    let version = version.to_string();

    let mut packages = manifest
        .child("packages")
        .into_iter()
        .flat_map(|p| p.children_named("package"))
        .map(parse_package);
    let payload = packages.next().ok_or(ResponseError::MissingElement {
        path: "response/app/updatecheck/manifest/packages/package",
    })??;
    if payload.size == 0 {
        return Err(ResponseError::invalid(
            "package",
            "size",
            "0",
            "the payload size must be greater than 0",
        ));
    }
    let extra_packages = packages.collect::<Result<Vec<_>, _>>()?;

    let action = manifest
        .child("actions")
        .into_iter()
        .flat_map(|a| a.children_named("action"))
        .find(|a| a.attr("event") == Some("postinstall"))
        .ok_or(ResponseError::MissingElement {
            path: "response/app/updatecheck/manifest/actions/action[@event=\"postinstall\"]",
        })?;
    let postinstall = parse_postinstall(action)?;

    Ok(UpdateInfo {
        version,
        urls,
        payload,
        extra_packages,
        postinstall,
        is_floor: manifest.attr("is_floor") == Some("true"),
        floor_reason: manifest.attr("floor_reason").map(str::to_string),
        is_target: manifest.attr("is_target") == Some("true"),
        ignored_manifests,
    })
}

fn parse_package(el: &Element) -> Result<Package, ResponseError> {
    let name = required(el, "package", "name")?;
    check_package_name(name)?;
    let size = required(el, "package", "size")?;
    let size = parse_decimal::<u64>(size).ok_or_else(|| {
        ResponseError::invalid(
            "package",
            "size",
            size,
            "expected a decimal number of bytes",
        )
    })?;
    let sha1 = match el.attr("hash") {
        None | Some("") => None,
        Some(v) => Some(decode_base64_digest::<20>(v).ok_or_else(|| {
            ResponseError::invalid("package", "hash", v, "expected a base64 SHA-1 digest")
        })?),
    };
    let sha256 = match el.attr("hash_sha256") {
        None | Some("") => None,
        Some(v) => Some(decode_sha256(v).ok_or_else(|| {
            ResponseError::invalid(
                "package",
                "hash_sha256",
                v,
                "expected a hex or base64 SHA-256 digest",
            )
        })?),
    };
    Ok(Package {
        name: name.to_string(),
        size,
        sha1,
        sha256,
        required: el.attr("required") == Some("true"),
    })
}

fn parse_postinstall(el: &Element) -> Result<PostinstallAction, ResponseError> {
    let sha256 = required(el, "action", "sha256")?;
    let sha256 = decode_base64_digest::<32>(sha256).ok_or_else(|| {
        ResponseError::invalid(
            "action",
            "sha256",
            sha256,
            "expected a base64 SHA-256 digest",
        )
    })?;
    let max_failure_count_per_url = match el.attr("MaxFailureCountPerUrl") {
        None => DEFAULT_MAX_FAILURE_COUNT_PER_URL,
        Some(v) => parse_decimal::<u32>(v).ok_or_else(|| {
            ResponseError::invalid(
                "action",
                "MaxFailureCountPerUrl",
                v,
                "expected a decimal number",
            )
        })?,
    };
    const KNOWN: &[&str] = &[
        "event",
        "sha256",
        "DisablePayloadBackoff",
        "IsDeltaPayload",
        "MaxFailureCountPerUrl",
        "needsadmin",
    ];
    Ok(PostinstallAction {
        sha256,
        disable_payload_backoff: el.attr("DisablePayloadBackoff") == Some("true"),
        is_delta_payload: el.attr("IsDeltaPayload") == Some("true"),
        max_failure_count_per_url,
        needs_admin: match el.attr("needsadmin") {
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        },
        other_attributes: el
            .attrs
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn required<'a>(
    el: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ResponseError> {
    el.attr(attribute)
        .ok_or(ResponseError::MissingAttribute { element, attribute })
}

fn required_non_empty<'a>(
    el: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ResponseError> {
    let v = required(el, element, attribute)?;
    if v.trim().is_empty() {
        return Err(ResponseError::invalid(
            element,
            attribute,
            v,
            "must not be empty",
        ));
    }
    Ok(v)
}

/// Decodes a SHA-256 digest given as 64 hex digits or as base64.
pub fn decode_sha256(value: &str) -> Option<Sha256Digest> {
    if value.len() == 64 {
        let mut out = [0u8; 32];
        hex::decode_to_slice(value, &mut out).ok()?;
        return Some(out);
    }
    decode_base64_digest::<32>(value)
}

/// Decodes a base64 (standard alphabet, padded) digest of exactly `N` bytes.
pub fn decode_base64_digest<const N: usize>(value: &str) -> Option<[u8; N]> {
    // Base64 of N bytes is 4 * ceil(N / 3) characters; checking the length
    // first bounds the allocation.
    if value.len() != N.div_ceil(3) * 4 {
        return None;
    }
    BASE64.decode(value).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let hex_value = "043bb7c00bece5f1ee2a08431809962301a212aa7ec0260bef9761b2cc05c14a";
        let d = decode_sha256(hex_value).unwrap();
        assert_eq!(hex::encode(d), hex_value);
        assert_eq!(decode_sha256(&hex_value.to_uppercase()), Some(d));
        let b64 = BASE64.encode(d);
        assert_eq!(decode_sha256(&b64), Some(d));
        assert_eq!(decode_sha256(&hex_value[..62]), None);
        assert_eq!(decode_sha256("zz"), None);
        assert_eq!(decode_base64_digest::<20>("8yZZKNwpVInJ8Xin1XJgWh89CqU="),
            Some(*b"\xf3\x26\x59\x28\xdc\x29\x54\x89\xc9\xf1\x78\xa7\xd5\x72\x60\x5a\x1f\x3d\x0a\xa5"));
        assert_eq!(
            decode_base64_digest::<32>("8yZZKNwpVInJ8Xin1XJgWh89CqU="),
            None
        );
    }

    #[test]
    fn app_ids() {
        let flatcar = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";
        assert!(same_app_id(
            flatcar,
            "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}"
        ));
        assert!(same_app_id(flatcar, "e96281a6-d1af-4bde-9a0a-97b76e56dc57"));
        assert!(same_app_id("E96281A6-D1AF-4BDE-9A0A-97B76E56DC57", flatcar));
        assert!(!same_app_id(
            flatcar,
            "{e96281a6-d1af-4bde-9a0a-97b76e56dc58}"
        ));
        assert!(!same_app_id(
            flatcar,
            "{{e96281a6-d1af-4bde-9a0a-97b76e56dc57}}"
        ));
        assert!(!same_app_id(flatcar, ""));
    }
}
