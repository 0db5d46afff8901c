//! Where the partitions of a payload go: one [`Slot`] (target, optional
//! source) per partition name.

use crate::storage::Storage;
use std::collections::BTreeMap;

/// Where one partition of the payload goes.
pub struct Slot {
    pub target: Box<dyn Storage>,
    /// The old slot, for delta operations.
    pub source: Option<Box<dyn Storage>>,
    /// Shrink a regular-file target to the new size (kernel files).
    pub truncate: bool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Slot {{ source: {}, truncate: {} }}",
            self.source.is_some(),
            self.truncate
        )
    }
}

impl Slot {
    pub fn new(target: impl Storage + 'static) -> Self {
        Slot {
            target: Box::new(target),
            source: None,
            truncate: false,
        }
    }
    pub fn with_source(mut self, source: impl Storage + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Targets by partition name ("usr", "kernel", extra images).
#[derive(Debug, Default)]
pub struct Slots {
    map: BTreeMap<String, Slot>,
    /// Consume (and verify) but do not write partitions without a slot.
    pub skip_missing: bool,
}

impl Slots {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, name: impl Into<String>, slot: Slot) -> &mut Self {
        self.map.insert(name.into(), slot);
        self
    }
    pub fn take(&mut self, name: &str) -> Option<Slot> {
        self.map.remove(name)
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Slot> {
        self.map.get_mut(name)
    }
    /// Whether `name` has a slot (the pipeline decompresses only for those).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
}
