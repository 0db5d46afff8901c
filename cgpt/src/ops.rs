//! Pure slot-selection logic over entries: vboot's `prioritize`, GRUB's
//! `gptprio.next`, and `find`. Nothing here does I/O; the results are attribute
//! changes for [`crate::Gpt::set_attributes`].

use uuid::Uuid;

use crate::attrs::{Attributes, MAX_NIBBLE};
use crate::entry::Entry;
use crate::error::Error;

/// Group number vboot uses to lift the target above every real priority.
const TARGET_GROUP: u8 = 99;

/// vboot's `cgpt prioritize` over the entries of `slot_type`.
///
/// Entries are grouped by priority; the target (`target`, a 1-based index) gets a
/// group of its own above all others, or with `friends` its whole group is lifted.
/// Groups are then renumbered from `max_priority` (default: the number of groups,
/// at most 15) downwards, never below 1; a group at priority 0 stays at 0.
/// Returns the new attributes of every entry of the type.
pub fn prioritize(
    entries: &[Entry],
    slot_type: &Uuid,
    target: Option<u32>,
    max_priority: Option<u8>,
    friends: bool,
) -> Vec<(u32, Attributes)> {
    let slots: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.type_guid == *slot_type)
        .collect();
    let orig_target_prio = target
        .and_then(|t| slots.iter().find(|e| e.index == t))
        .map(|e| e.attrs.priority());
    // (group priority, member indices), one group per distinct priority.
    let mut groups: Vec<(u8, Vec<u32>)> = Vec::new();
    for e in &slots {
        let mut p = e.attrs.priority();
        if Some(e.index) == target || (friends && orig_target_prio == Some(p) && target.is_some()) {
            p = TARGET_GROUP;
        }
        match groups.iter_mut().find(|(gp, _)| *gp == p) {
            Some((_, members)) => members.push(e.index),
            None => groups.push((p, vec![e.index])),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.0));
    if groups.last().is_some_and(|(p, _)| *p == 0) {
        groups.pop();
    }
    let mut prio = max_priority.unwrap_or_else(|| groups.len().min(MAX_NIBBLE.into()) as u8);
    let mut out = Vec::new();
    for (_, members) in &groups {
        for &i in members {
            let mut a = slots
                .iter()
                .find(|e| e.index == i)
                .expect("member of slots")
                .attrs;
            a.set_priority(prio.into()).expect("priority within 1..=15");
            out.push((i, a));
        }
        prio = prio.saturating_sub(1).max(1);
    }
    out
}

/// What GRUB's `gptprio.next` picks and how it changes the chosen entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextChoice {
    /// The chosen entry, as it was before the decrement.
    pub entry: Entry,
    /// New attributes when tries were decremented (GRUB then writes the table).
    pub new_attrs: Option<Attributes>,
}

/// GRUB `gptprio.next`: among USR-typed entries with tries > 0 or successful, the
/// strictly highest non-zero priority wins, ties going to the lowest index; tries
/// drop by one if non-zero, even when successful is set.
pub fn choose_next(entries: &[Entry]) -> Result<NextChoice, Error> {
    let mut best: Option<&Entry> = None;
    for e in entries.iter().filter(|e| e.is_usr()) {
        let a = e.attrs;
        let best_prio = best.map_or(0, |b| b.attrs.priority());
        if (a.tries() > 0 || a.successful()) && a.priority() > best_prio {
            best = Some(e);
        }
    }
    let entry = best.ok_or(Error::NothingBootable)?.clone();
    let new_attrs = (entry.attrs.tries() > 0).then(|| {
        let mut a = entry.attrs;
        a.set_tries(u64::from(a.tries() - 1))
            .expect("smaller tries");
        a
    });
    Ok(NextChoice { entry, new_attrs })
}

/// Criteria of `cgpt find`; every given one must match.
#[derive(Debug, Clone, Default)]
pub struct FindQuery {
    /// Partition type.
    pub type_guid: Option<Uuid>,
    /// Unique GUID.
    pub unique_guid: Option<Uuid>,
    /// Exact label.
    pub label: Option<String>,
}

/// The used entries matching `q`, in index order.
pub fn find<'a>(entries: &'a [Entry], q: &FindQuery) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| e.is_used())
        .filter(|e| q.type_guid.is_none_or(|t| t == e.type_guid))
        .filter(|e| q.unique_guid.is_none_or(|u| u == e.unique_guid))
        .filter(|e| q.label.as_ref().is_none_or(|l| *l == e.label))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guid::USR_TYPE;
    use proptest::prelude::*;

    fn usr(index: u32, p: u8, t: u8, s: bool) -> Entry {
        Entry {
            index,
            type_guid: USR_TYPE,
            unique_guid: Uuid::from_u128(index.into()),
            first_lba: u64::from(index) * 100,
            last_lba: u64::from(index) * 100 + 99,
            attrs: Attributes(0).with_pts(p, t, s).unwrap(),
            label: format!("USR-{index}"),
        }
    }

    fn apply(entries: &mut [Entry], changes: &[(u32, Attributes)]) {
        for (i, a) in changes {
            entries.iter_mut().find(|e| e.index == *i).unwrap().attrs = *a;
        }
    }

    fn prios(entries: &[Entry]) -> Vec<u8> {
        entries.iter().map(|e| e.attrs.priority()).collect()
    }

    #[test]
    fn prioritize_reference_table() {
        // (A prio, B prio, target, -P, -f) -> (A, B); observed with Flatcar's cgpt.
        type Row = (u8, u8, Option<u32>, Option<u8>, bool, [u8; 2]);
        let rows: &[Row] = &[
            (1, 0, Some(4), None, false, [1, 2]),
            (2, 2, Some(4), None, false, [1, 2]),
            (15, 15, Some(4), None, false, [1, 2]),
            (5, 3, None, None, false, [2, 1]),
            (5, 3, Some(4), None, false, [1, 2]),
            (5, 3, Some(4), Some(9), false, [8, 9]),
            (5, 5, Some(4), None, true, [1, 1]),
            (0, 0, Some(4), None, false, [0, 1]),
        ];
        for &(a, b, target, max, friends, want) in rows {
            let mut es = vec![usr(3, a, 0, true), usr(4, b, 1, false)];
            let changes = prioritize(&es, &USR_TYPE, target, max, friends);
            apply(&mut es, &changes);
            assert_eq!(
                prios(&es),
                want,
                "A{a} B{b} target {target:?} -P {max:?} -f {friends}"
            );
        }
    }

    #[test]
    fn prioritize_ignores_other_types() {
        let mut other = usr(1, 7, 0, false);
        other.type_guid = crate::guid::CHROMEOS_KERNEL_TYPE;
        let es = vec![other, usr(3, 1, 0, true), usr(4, 0, 0, false)];
        let changes = prioritize(&es, &USR_TYPE, Some(4), None, false);
        assert!(changes.iter().all(|(i, _)| *i != 1));
    }

    #[test]
    fn grub_gptprio_test_table() {
        // tests/gptprio_test.in of Flatcar's GRUB: A(2)=P3 T3, B(3)=P2 T2, C(4)=P1 T0 S1.
        let mut es = vec![usr(2, 3, 3, false), usr(3, 2, 2, false), usr(4, 1, 0, true)];
        let want = [
            (2, 2),
            (2, 1),
            (2, 0),
            (3, 1),
            (3, 0),
            (4, 0),
            (4, 0),
            (4, 0),
        ];
        for (step, (idx, tries_after)) in want.into_iter().enumerate() {
            let c = choose_next(&es).unwrap();
            assert_eq!(c.entry.index, idx, "step {step}");
            if let Some(a) = c.new_attrs {
                apply(&mut es, &[(idx, a)]);
            } else {
                assert!(idx == 4, "only C is chosen without a write");
            }
            let e = es.iter().find(|e| e.index == idx).unwrap();
            assert_eq!(e.attrs.tries(), tries_after, "step {step}");
        }
        let pts: Vec<_> = es
            .iter()
            .map(|e| (e.attrs.priority(), e.attrs.tries(), e.attrs.successful()))
            .collect();
        assert_eq!(pts, vec![(3, 0, false), (2, 0, false), (1, 0, true)]);
    }

    #[test]
    fn next_semantics_edges() {
        // Tie goes to the lowest index.
        assert_eq!(
            choose_next(&[usr(3, 2, 0, true), usr(4, 2, 1, false)])
                .unwrap()
                .entry
                .index,
            3
        );
        // Priority 0 never wins, even when successful.
        assert!(matches!(
            choose_next(&[usr(3, 0, 0, true)]),
            Err(Error::NothingBootable)
        ));
        // Tries drop even when successful.
        let c = choose_next(&[usr(4, 2, 3, true)]).unwrap();
        assert_eq!(c.new_attrs.unwrap().tries(), 2);
        // All exhausted: an error, not a fallback.
        assert!(choose_next(&[usr(3, 1, 0, false), usr(4, 2, 0, false)]).is_err());
        // Non-USR types are ignored.
        let mut k = usr(1, 9, 9, true);
        k.type_guid = crate::guid::CHROMEOS_KERNEL_TYPE;
        assert!(choose_next(&[k]).is_err());
    }

    #[test]
    fn find_matches_all_criteria() {
        let es = vec![usr(3, 1, 0, true), usr(4, 2, 1, false)];
        let q = FindQuery {
            type_guid: Some(USR_TYPE),
            label: Some("USR-4".into()),
            ..Default::default()
        };
        let hits: Vec<u32> = find(&es, &q).iter().map(|e| e.index).collect();
        assert_eq!(hits, vec![4]);
        assert_eq!(
            find(
                &es,
                &FindQuery {
                    type_guid: Some(USR_TYPE),
                    ..Default::default()
                }
            )
            .len(),
            2
        );
    }

    fn arb_slot() -> impl Strategy<Value = (u8, u8, bool)> {
        (0u8..16, 0u8..16, any::<bool>())
    }

    proptest! {
        /// Prioritizing a slot never leaves both slots unbootable when one was
        /// bootable before, and the target always ends strictly on top when it was
        /// itself bootable.
        #[test]
        fn prioritize_keeps_a_bootable_slot(a in arb_slot(), b in arb_slot(), target in 3u32..5, max in proptest::option::of(1u8..16)) {
            let mut es = vec![usr(3, a.0, a.1, a.2), usr(4, b.0, b.1, b.2)];
            let before = choose_next(&es).is_ok();
            let changes = prioritize(&es, &USR_TYPE, Some(target), max, false);
            apply(&mut es, &changes);
            prop_assert!(!before || choose_next(&es).is_ok());
            let t = es.iter().find(|e| e.index == target).unwrap();
            let o = es.iter().find(|e| e.index != target).unwrap();
            prop_assert!(t.attrs.priority() >= 1);
            prop_assert!(o.attrs.priority() == 0 || t.attrs.priority() > o.attrs.priority() || t.attrs.priority() == 1);
            // Only priorities change.
            for (i, a) in &changes {
                let e = es.iter().find(|e| e.index == *i).unwrap();
                prop_assert_eq!(e.attrs.0 & !(0xf << 48), a.0 & !(0xf << 48));
            }
        }

        /// next always picks an eligible USR slot of maximal priority and lowers
        /// only its tries, by exactly one.
        #[test]
        fn next_picks_an_eligible_maximum(a in arb_slot(), b in arb_slot()) {
            let es = vec![usr(3, a.0, a.1, a.2), usr(4, b.0, b.1, b.2)];
            let eligible: Vec<&Entry> = es.iter().filter(|e| e.attrs.priority() > 0 && (e.attrs.tries() > 0 || e.attrs.successful())).collect();
            match choose_next(&es) {
                Err(_) => prop_assert!(eligible.is_empty()),
                Ok(c) => {
                    let max = eligible.iter().map(|e| e.attrs.priority()).max().unwrap();
                    prop_assert_eq!(c.entry.attrs.priority(), max);
                    let first = eligible.iter().find(|e| e.attrs.priority() == max).unwrap();
                    prop_assert_eq!(c.entry.index, first.index);
                    match c.new_attrs {
                        Some(n) => {
                            prop_assert_eq!(n.tries() + 1, c.entry.attrs.tries());
                            prop_assert_eq!(n.0 & !(0xf << 52), c.entry.attrs.0 & !(0xf << 52));
                        }
                        None => prop_assert_eq!(c.entry.attrs.tries(), 0),
                    }
                }
            }
        }
    }
}
