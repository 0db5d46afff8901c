//! locksmith's reboot semaphore: key layout, JSON value and the pure lock/unlock/set-max logic
//! (`lock/semaphore.go`, `lock/etcd.go`). The etcd client applies these with compare-and-swap.

use serde::{Deserialize, Serialize};

/// The key without a group.
pub const KEY: &str = "coreos.com/updateengine/rebootlock/semaphore";
const GROUPS_PREFIX: &str = "coreos.com/updateengine/rebootlock/groups/";

/// A semaphore value bigger than this is refused before parsing.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// The key for `group` (`None`: the default key). Groups are escaped as Go's `url.QueryEscape`.
pub fn key(group: Option<&str>) -> String {
    match group {
        None => KEY.to_owned(),
        Some(g) => format!("{GROUPS_PREFIX}{}/semaphore", query_escape(g)),
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, everything else `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `{"semaphore":1,"max":1,"holders":null}`: free slots, slots, sorted holder ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    pub semaphore: i64,
    pub max: i64,
    pub holders: Option<Vec<String>>,
}

impl Default for Semaphore {
    /// The value locksmith creates when the key is absent.
    fn default() -> Self {
        Semaphore {
            semaphore: 1,
            max: 1,
            holders: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SemaphoreError {
    #[error("semaphore is at 0 ({max} of {max} slots held by {holders:?})")]
    Full { max: i64, holders: Vec<String> },
    #[error("{0} already holds the lock")]
    AlreadyHeld(String),
    #[error("{0} does not hold the lock")]
    NotHeld(String),
    #[error("max must be at least 1, got {0}")]
    BadMax(i64),
    #[error("semaphore value is not locksmith's JSON: {0}")]
    Decode(String),
    /// The stored counts are so far out of range that the change would
    /// overflow (a corrupted or hostile key; found by fuzzing).
    #[error("semaphore counts out of range (semaphore {semaphore}, max {max})")]
    OutOfRange { semaphore: i64, max: i64 },
}

impl Semaphore {
    /// Decodes a stored value (bounded; untrusted).
    pub fn decode(bytes: &[u8]) -> Result<Self, SemaphoreError> {
        if bytes.len() > MAX_VALUE_LEN {
            return Err(SemaphoreError::Decode(format!("{} bytes", bytes.len())));
        }
        serde_json::from_slice(bytes).map_err(|e| SemaphoreError::Decode(e.to_string()))
    }

    /// Encodes as locksmith does (field order semaphore, max, holders).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The holder ids (empty when `null`).
    pub fn holders(&self) -> &[String] {
        self.holders.as_deref().unwrap_or(&[])
    }

    /// Takes a slot for `id`.
    pub fn lock(&mut self, id: &str) -> Result<(), SemaphoreError> {
        if self.holders().iter().any(|h| h == id) {
            return Err(SemaphoreError::AlreadyHeld(id.to_owned()));
        }
        if self.semaphore <= 0 {
            return Err(SemaphoreError::Full {
                max: self.max,
                holders: self.holders().to_vec(),
            });
        }
        self.semaphore -= 1;
        let holders = self.holders.get_or_insert_with(Vec::new);
        holders.push(id.to_owned());
        holders.sort();
        Ok(())
    }

    /// Gives back `id`'s slot.
    pub fn unlock(&mut self, id: &str) -> Result<(), SemaphoreError> {
        let holders = self.holders.get_or_insert_with(Vec::new);
        let Some(pos) = holders.iter().position(|h| h == id) else {
            return Err(SemaphoreError::NotHeld(id.to_owned()));
        };
        let Some(semaphore) = self.semaphore.checked_add(1) else {
            return Err(SemaphoreError::OutOfRange {
                semaphore: self.semaphore,
                max: self.max,
            });
        };
        holders.remove(pos);
        self.semaphore = semaphore;
        Ok(())
    }

    /// Changes the number of slots, moving the free count by the same amount (`locksmithctl set-max`).
    pub fn set_max(&mut self, max: i64) -> Result<(), SemaphoreError> {
        if max < 1 {
            return Err(SemaphoreError::BadMax(max));
        }
        self.semaphore = self
            .max
            .checked_sub(max)
            .and_then(|diff| self.semaphore.checked_sub(diff))
            .ok_or(self.out_of_range())?;
        self.max = max;
        Ok(())
    }

    fn out_of_range(&self) -> SemaphoreError {
        SemaphoreError::OutOfRange {
            semaphore: self.semaphore,
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_out_of_range_are_errors_not_overflows() {
        let mut s = Semaphore::decode(br#"{"semaphore":0,"max":-9223372036854775808}"#).unwrap();
        assert!(matches!(
            s.set_max(1),
            Err(SemaphoreError::OutOfRange { .. })
        ));
        let mut s =
            Semaphore::decode(br#"{"semaphore":9223372036854775807,"max":1,"holders":["a"]}"#)
                .unwrap();
        assert!(matches!(
            s.unlock("a"),
            Err(SemaphoreError::OutOfRange { .. })
        ));
        assert_eq!(s.holders(), ["a"], "nothing changed");
    }

    #[test]
    fn default_value_is_locksmiths() {
        assert_eq!(
            Semaphore::default().encode(),
            br#"{"semaphore":1,"max":1,"holders":null}"#
        );
        let s = Semaphore::decode(br#"{"semaphore":0,"max":1,"holders":["abc"]}"#).unwrap();
        assert_eq!(s.holders(), ["abc"]);
    }

    #[test]
    fn keys() {
        assert_eq!(key(None), "coreos.com/updateengine/rebootlock/semaphore");
        assert_eq!(
            key(Some("web a/b")),
            "coreos.com/updateengine/rebootlock/groups/web+a%2Fb/semaphore"
        );
    }

    #[test]
    fn lock_unlock_counts_and_sorts() {
        let mut s = Semaphore::default();
        s.set_max(2).unwrap();
        assert_eq!((s.semaphore, s.max), (2, 2));
        s.lock("n2").unwrap();
        assert_eq!(s.lock("n2"), Err(SemaphoreError::AlreadyHeld("n2".into())));
        s.lock("n1").unwrap();
        assert_eq!(s.holders(), ["n1", "n2"]);
        assert!(matches!(
            s.lock("n3"),
            Err(SemaphoreError::Full { max: 2, .. })
        ));
        assert_eq!(s.unlock("n3"), Err(SemaphoreError::NotHeld("n3".into())));
        s.unlock("n2").unwrap();
        assert_eq!((s.semaphore, s.holders()), (1, &["n1".to_string()][..]));
        assert_eq!(s.encode(), br#"{"semaphore":1,"max":2,"holders":["n1"]}"#);
    }

    #[test]
    fn set_max_with_holders_keeps_accounting() {
        let mut s = Semaphore {
            semaphore: 0,
            max: 2,
            holders: Some(vec!["a".into(), "b".into()]),
        };
        s.set_max(1).unwrap();
        assert_eq!((s.semaphore, s.max), (-1, 1));
        assert!(s.lock("c").is_err());
        assert_eq!(s.set_max(0), Err(SemaphoreError::BadMax(0)));
    }

    #[test]
    fn decode_rejects_garbage_and_huge() {
        assert!(Semaphore::decode(b"{\"semaphore\":\"x\"}").is_err());
        assert!(Semaphore::decode(&vec![b' '; MAX_VALUE_LEN + 1]).is_err());
    }
}
