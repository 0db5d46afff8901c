//! The FleetLock protocol (Zincati's client, Airlock's server): `POST /v1/pre-reboot` to take
//! a slot, `POST /v1/steady-state` to give it back, both with the header
//! `fleet-lock-protocol: true` and the body `{"client_params":{"id":…,"group":…}}`.
//! 200 means yes; anything else carries `{"kind":…,"value":…}`.

use serde::Deserialize;
use serde_json::json;

use super::{Acquire, Lock, LockError, Release};

/// The header every FleetLock request carries.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";

#[derive(Debug, Deserialize)]
struct ErrorBody {
    kind: String,
    value: String,
}

/// A FleetLock client for one node.
#[derive(Debug)]
pub struct FleetLock {
    http: reqwest::Client,
    base: String,
    group: String,
    id: String,
}

impl FleetLock {
    pub fn new(http: reqwest::Client, base_url: &str, group: &str, id: &str) -> Self {
        FleetLock {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            group: group.to_owned(),
            id: id.to_owned(),
        }
    }

    /// POSTs to `/v1/{op}`; `Ok(Ok(()))` on 200, `Ok(Err((kind, value)))` on a protocol refusal.
    async fn post(&self, op: &str) -> Result<Result<(), (String, String)>, LockError> {
        let url = format!("{}/v1/{op}", self.base);
        let body = json!({ "client_params": { "id": self.id, "group": self.group } });
        let resp = self
            .http
            .post(&url)
            .header(PROTOCOL_HEADER, "true")
            .json(&body)
            .send()
            .await
            .map_err(|source| LockError::Unreachable {
                endpoints: url.clone(),
                source,
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::OK {
            return Ok(Ok(()));
        }
        let text = resp.text().await.unwrap_or_default();
        match parse_refusal(text.as_bytes()) {
            Some(refusal) if !status.is_server_error() => Ok(Err(refusal)),
            _ => Err(LockError::Http {
                url,
                status: status.as_u16(),
                body: text.trim().chars().take(400).collect(),
            }),
        }
    }
}

impl Lock for FleetLock {
    async fn acquire(&self) -> Result<Acquire, LockError> {
        Ok(match self.post("pre-reboot").await? {
            Ok(()) => Acquire::Acquired,
            Err((kind, value)) => Acquire::Busy(format!("{kind}: {value}")),
        })
    }

    async fn release(&self) -> Result<Release, LockError> {
        match self.post("steady-state").await? {
            // The protocol does not say whether we held a slot; release is idempotent.
            Ok(()) => Ok(Release::Released),
            Err((kind, value)) => Err(LockError::Protocol {
                url: format!("{}/v1/steady-state", self.base),
                reason: format!("{kind}: {value}"),
            }),
        }
    }
}

/// The `(kind, value)` of a FleetLock refusal body (`None`: not one). A pure
/// function over bytes, so it can be fuzzed and tested without a server.
pub fn parse_refusal(body: &[u8]) -> Option<(String, String)> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|e| (e.kind, e.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_bodies() {
        assert_eq!(
            parse_refusal(br#"{"kind":"failed_lock","value":"full"}"#),
            Some(("failed_lock".into(), "full".into()))
        );
        assert_eq!(parse_refusal(br#"{"kind":"x"}"#), None);
        assert_eq!(parse_refusal(b"<html>"), None);
    }
}
