//! Footprints: which shared objects a step read and wrote. Two steps of different threads are
//! independent (they commute and neither enables or disables the other) when no object is
//! written by one and accessed by the other. Locks are objects too: acquiring and releasing
//! writes them, so two acquisitions of one lock are dependent.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
/// Ordered: a write is the stronger access.
pub enum AccessKind {
    Read,
    Write,
}

/// One access of a step: an object named by the model (an opaque key) and its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    pub object: u64,
    pub kind: AccessKind,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// In the order made; after [`Footprint::normalize`], sorted by object, one entry each.
    accesses: Vec<Access>,
    /// The step read the whole state (an oracle over everything): it depends on every write.
    reads_everything: bool,
    normalized: bool,
}

impl Footprint {
    pub fn clear(&mut self) {
        self.accesses.clear();
        self.reads_everything = false;
        self.normalized = true;
    }

    /// Marks the step as reading every object.
    pub fn read_everything(&mut self) {
        self.reads_everything = true;
    }

    pub fn read(&mut self, object: u64) {
        self.push(Access { object, kind: AccessKind::Read });
    }

    pub fn write(&mut self, object: u64) {
        self.push(Access { object, kind: AccessKind::Write });
    }

    /// Appends; steps that touch many objects (a THP split) stay linear, and
    /// [`Footprint::normalize`] merges repeats once the step is done.
    fn push(&mut self, access: Access) {
        if self.accesses.last() == Some(&access) {
            return;
        }
        self.accesses.push(access);
        self.normalized = false;
    }

    /// Sorts by object and keeps one access per object (a write if there was any).
    pub fn normalize(&mut self) {
        if self.normalized {
            return;
        }
        // Writes sort after reads of the same object, so the last of each run is the strongest.
        self.accesses.sort_unstable_by_key(|a| (a.object, a.kind == AccessKind::Write));
        self.accesses.dedup_by(|later, earlier| {
            if later.object == earlier.object {
                earlier.kind = later.kind.max(earlier.kind);
                true
            } else {
                false
            }
        });
        self.normalized = true;
    }

    /// Adds every access of `other` (the union of two steps' footprints).
    pub fn extend(&mut self, other: &Footprint) {
        self.reads_everything |= other.reads_everything;
        for &access in &other.accesses {
            self.push(access);
        }
    }

    /// A step with no shared access: it commutes with every step of every other thread.
    pub fn is_local(&self) -> bool {
        self.accesses.is_empty() && !self.reads_everything
    }

    /// Whether the footprint writes `object` (the footprint audit's question).
    pub fn writes(&self, object: u64) -> bool {
        self.accesses.iter().any(|a| a.object == object && a.kind == AccessKind::Write)
    }

    pub fn accesses(&self) -> &[Access] {
        &self.accesses
    }

    /// Dependence of two steps of *different* threads.
    pub fn conflicts_with(&self, other: &Footprint) -> bool {
        let writes = |f: &Footprint| f.accesses.iter().any(|a| a.kind == AccessKind::Write);
        if (self.reads_everything && (writes(other) || other.reads_everything))
            || (other.reads_everything && writes(self))
        {
            return true;
        }
        if self.normalized && other.normalized {
            return merge_conflict(&self.accesses, &other.accesses);
        }
        self.accesses.iter().any(|a| {
            other
                .accesses
                .iter()
                .any(|b| a.object == b.object && (a.kind == AccessKind::Write || b.kind == AccessKind::Write))
        })
    }
}

/// Two footprints sorted by object conflict when some object is in both with a write.
fn merge_conflict(a: &[Access], b: &[Access]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].object.cmp(&b[j].object) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if a[i].kind == AccessKind::Write || b[j].kind == AccessKind::Write {
                    return true;
                }
                i += 1;
                j += 1;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commute_writes_do_not() {
        let mut a = Footprint::default();
        let mut b = Footprint::default();
        a.read(1);
        b.read(1);
        assert!(!a.conflicts_with(&b));
        b.write(1);
        assert!(a.conflicts_with(&b));
        assert!(b.conflicts_with(&a));
        let mut c = Footprint::default();
        c.write(2);
        assert!(!c.conflicts_with(&a));
        assert!(Footprint::default().is_local());
    }

    #[test]
    fn normalized_footprints_give_the_same_answers() {
        let mut a = Footprint::default();
        for object in [5, 3, 5, 9, 3] {
            a.read(object);
        }
        a.write(3);
        let mut b = Footprint::default();
        b.read(3);
        b.read(7);
        let mut c = Footprint::default();
        c.read(5);
        c.read(9);
        let unnormalized = (a.conflicts_with(&b), a.conflicts_with(&c));
        a.normalize();
        b.normalize();
        c.normalize();
        assert_eq!(unnormalized, (true, false));
        assert_eq!((a.conflicts_with(&b), a.conflicts_with(&c)), (true, false));
        assert_eq!(a.accesses().len(), 3, "one access per object");
        assert_eq!(a.accesses()[0], Access { object: 3, kind: AccessKind::Write });
    }
}
