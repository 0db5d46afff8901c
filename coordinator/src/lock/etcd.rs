//! locksmith's semaphore on etcd's v3 API, through etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/auth/authenticate`; served by etcd ≥ 3.4 on the client port).
//!
//! Every write is a transaction comparing the key's `mod_revision` with the one read (or
//! `create_revision == 0` to create it), the v3 form of locksmith's `PrevIndex` CAS.

use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Acquire, Lock, LockError, Release, http_client};
use crate::config::{Auth, Config};
use crate::semaphore::{self, Semaphore, SemaphoreError};

/// How many times a CAS is retried at once when another node wrote in between.
const CAS_TRIES: u32 = 64;

/// A minimal etcd v3 KV client over the JSON gateway.
#[derive(Debug)]
pub struct EtcdClient {
    http: reqwest::Client,
    endpoints: Vec<String>,
    auth: Option<Auth>,
    token: Mutex<Option<String>>,
}

#[derive(Debug, Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
}

/// A stored value and the revision to compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl EtcdClient {
    /// A client for the endpoints, TLS and auth of `config`.
    pub fn new(config: &Config) -> Result<Self, LockError> {
        Ok(EtcdClient {
            http: http_client(&config.tls)?,
            endpoints: config.endpoints.clone(),
            auth: config.auth.clone(),
            token: Mutex::new(None),
        })
    }

    async fn authenticate(&self, endpoint: &str, auth: &Auth) -> Result<String, LockError> {
        let url = format!("{endpoint}/v3/auth/authenticate");
        let body = json!({ "name": auth.username, "password": auth.password });
        let resp = self.http.post(&url).json(&body).send().await;
        let fail = |reason: String| LockError::Auth {
            user: auth.username.clone(),
            reason,
        };
        let resp = resp.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", text.trim())));
        }
        parse_auth_token(text.as_bytes()).map_err(fail)
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, LockError> {
        let mut last_err = None;
        for endpoint in &self.endpoints {
            match self.call_one(endpoint, path, body).await {
                Err(LockError::Unreachable { source, .. }) => last_err = Some(source),
                other => return other,
            }
        }
        match last_err {
            Some(source) => Err(LockError::Unreachable {
                endpoints: self.endpoints.join(","),
                source,
            }),
            None => Err(LockError::Protocol {
                url: path.into(),
                reason: "no endpoints configured".into(),
            }),
        }
    }

    async fn call_one(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value, LockError> {
        let url = format!("{endpoint}{path}");
        for attempt in 0..2 {
            let mut req = self.http.post(&url).json(body);
            if let Some(auth) = &self.auth {
                let cached = self.token.lock().map(|t| t.clone()).unwrap_or(None);
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let t = self.authenticate(endpoint, auth).await?;
                        if let Ok(mut slot) = self.token.lock() {
                            *slot = Some(t.clone());
                        }
                        t
                    }
                };
                req = req.header("Authorization", token);
            }
            let resp = req.send().await.map_err(|source| LockError::Unreachable {
                endpoints: url.clone(),
                source,
            })?;
            let status = resp.status();
            let text = resp.text().await.map_err(|source| LockError::Unreachable {
                endpoints: url.clone(),
                source,
            })?;
            if status.is_success() {
                return serde_json::from_str(&text).map_err(|e| LockError::Protocol {
                    url: url.clone(),
                    reason: e.to_string(),
                });
            }
            let token_problem =
                status == reqwest::StatusCode::UNAUTHORIZED || text.contains("auth token");
            if attempt == 0 && self.auth.is_some() && token_problem {
                if let Ok(mut slot) = self.token.lock() {
                    *slot = None; // expired: authenticate again once
                }
                continue;
            }
            return Err(LockError::Http {
                url,
                status: status.as_u16(),
                body: text.trim().chars().take(400).collect(),
            });
        }
        Err(LockError::Auth {
            user: self
                .auth
                .as_ref()
                .map(|a| a.username.clone())
                .unwrap_or_default(),
            reason: "token refused twice".into(),
        })
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>, LockError> {
        let v = self
            .call("/v3/kv/range", &json!({ "key": B64.encode(key) }))
            .await?;
        let proto = |reason: String| LockError::Protocol {
            url: "/v3/kv/range".into(),
            reason,
        };
        range_from_value(v).map_err(proto)
    }

    /// Writes `value` if the key is still at `mod_revision` (`None`: if it does not exist).
    pub async fn compare_and_put(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: Option<i64>,
    ) -> Result<bool, LockError> {
        let k = B64.encode(key);
        let compare = match mod_revision {
            Some(rev) => {
                json!({ "key": k, "result": "EQUAL", "target": "MOD", "mod_revision": rev.to_string() })
            }
            None => {
                json!({ "key": k, "result": "EQUAL", "target": "CREATE", "create_revision": "0" })
            }
        };
        let body = json!({
            "compare": [compare],
            "success": [{ "request_put": { "key": k, "value": B64.encode(value) } }],
        });
        let v = self.call("/v3/kv/txn", &body).await?;
        txn_from_value(v).map_err(|reason| LockError::Protocol {
            url: "/v3/kv/txn".into(),
            reason,
        })
    }
}

// The gateway's answers as pure functions over bytes, so they can be fuzzed
// and tested without a server; the client decodes the same way.

/// The token of a `/v3/auth/authenticate` answer.
pub fn parse_auth_token(body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no token in the answer".into())
}

/// The first key of a `/v3/kv/range` answer (`None`: no such key).
pub fn parse_range(body: &[u8]) -> Result<Option<Versioned>, String> {
    range_from_value(serde_json::from_slice(body).map_err(|e| e.to_string())?)
}

/// Whether a `/v3/kv/txn` answer says the comparison held.
pub fn parse_txn(body: &[u8]) -> Result<bool, String> {
    txn_from_value(serde_json::from_slice(body).map_err(|e| e.to_string())?)
}

fn range_from_value(v: Value) -> Result<Option<Versioned>, String> {
    let r: RangeResponse = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let Some(kv) = r.kvs.into_iter().next() else {
        return Ok(None);
    };
    let value = B64.decode(kv.value.as_bytes()).map_err(|e| e.to_string())?;
    let mod_revision = kv
        .mod_revision
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| "bad mod_revision".to_string())?;
    Ok(Some(Versioned {
        value,
        mod_revision,
    }))
}

fn txn_from_value(v: Value) -> Result<bool, String> {
    let r: TxnResponse = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Ok(r.succeeded)
}

/// This node's view of one semaphore key.
#[derive(Debug)]
pub struct EtcdLock {
    client: EtcdClient,
    key: String,
    id: String,
}

impl EtcdLock {
    pub fn new(client: EtcdClient, group: Option<&str>, id: &str) -> Self {
        EtcdLock {
            client,
            key: semaphore::key(group),
            id: id.to_owned(),
        }
    }

    /// The key in use.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the semaphore, creating locksmith's default value when absent.
    pub async fn read(&self) -> Result<(Semaphore, i64), LockError> {
        for _ in 0..CAS_TRIES {
            if let Some(v) = self.client.get(&self.key).await? {
                let sem = Semaphore::decode(&v.value).map_err(|source| LockError::Semaphore {
                    key: self.key.clone(),
                    source,
                })?;
                return Ok((sem, v.mod_revision));
            }
            self.client
                .compare_and_put(&self.key, &Semaphore::default().encode(), None)
                .await?;
        }
        Err(LockError::Contended {
            key: self.key.clone(),
            tries: CAS_TRIES,
        })
    }

    /// Applies `change` with compare-and-swap, retrying while others write in between.
    /// The inner `Err` is the semaphore's own verdict (full, not held...), written nowhere.
    pub async fn update<F>(&self, change: F) -> Result<Result<Semaphore, SemaphoreError>, LockError>
    where
        F: Fn(&mut Semaphore) -> Result<(), SemaphoreError>,
    {
        for _ in 0..CAS_TRIES {
            let (mut sem, rev) = self.read().await?;
            if let Err(e) = change(&mut sem) {
                return Ok(Err(e));
            }
            if self
                .client
                .compare_and_put(&self.key, &sem.encode(), Some(rev))
                .await?
            {
                return Ok(Ok(sem));
            }
            tracing::debug!(key = %self.key, "semaphore changed under us, retrying");
        }
        Err(LockError::Contended {
            key: self.key.clone(),
            tries: CAS_TRIES,
        })
    }

    /// Releases `holder`'s slot (admin force-release uses another node's id).
    pub async fn unlock_holder(&self, holder: &str) -> Result<Release, LockError> {
        match self.update(|s| s.unlock(holder)).await? {
            Ok(_) => Ok(Release::Released),
            Err(SemaphoreError::NotHeld(_)) => Ok(Release::NotHeld),
            Err(source) => Err(LockError::Semaphore {
                key: self.key.clone(),
                source,
            }),
        }
    }
}

impl Lock for EtcdLock {
    async fn acquire(&self) -> Result<Acquire, LockError> {
        match self.update(|s| s.lock(&self.id)).await? {
            Ok(_) | Err(SemaphoreError::AlreadyHeld(_)) => Ok(Acquire::Acquired),
            Err(e @ SemaphoreError::Full { .. }) => Ok(Acquire::Busy(e.to_string())),
            Err(source) => Err(LockError::Semaphore {
                key: self.key.clone(),
                source,
            }),
        }
    }

    async fn release(&self) -> Result<Release, LockError> {
        self.unlock_holder(&self.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_answers() {
        let range = br#"{"header":{"revision":"7"},"kvs":[{"key":"eA==","mod_revision":"7","value":"e30="}],"count":"1"}"#;
        assert_eq!(
            parse_range(range),
            Ok(Some(Versioned {
                value: b"{}".to_vec(),
                mod_revision: 7
            }))
        );
        assert_eq!(parse_range(br#"{"header":{}}"#), Ok(None));
        assert!(parse_range(br#"{"kvs":[{"value":"!"}]}"#).is_err());
        assert!(parse_range(br#"{"kvs":[{"mod_revision":"x"}]}"#).is_err());
        assert_eq!(parse_txn(br#"{"succeeded":true}"#), Ok(true));
        assert_eq!(parse_txn(b"{}"), Ok(false));
        assert_eq!(parse_auth_token(br#"{"token":"t.1"}"#), Ok("t.1".into()));
        assert!(parse_auth_token(b"{}").is_err());
        assert!(parse_auth_token(b"[").is_err());
    }
}
