//! Footprints: which shared objects a step read and wrote. Two steps of different threads are
//! independent (they commute and neither enables or disables the other) when no object is
//! written by one and accessed by the other. Locks are objects too: acquiring and releasing
//! writes them, so two acquisitions of one lock are dependent.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    accesses: Vec<Access>,
    /// The step read the whole state (an oracle over everything): it depends on every write.
    reads_everything: bool,
}

impl Footprint {
    pub fn clear(&mut self) {
        self.accesses.clear();
        self.reads_everything = false;
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

    fn push(&mut self, access: Access) {
        if let Some(existing) = self.accesses.iter_mut().find(|a| a.object == access.object) {
            if access.kind == AccessKind::Write {
                existing.kind = AccessKind::Write;
            }
            return;
        }
        self.accesses.push(access);
    }

    /// A step with no shared access: it commutes with every step of every other thread.
    pub fn is_local(&self) -> bool {
        self.accesses.is_empty() && !self.reads_everything
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
        self.accesses.iter().any(|a| {
            other
                .accesses
                .iter()
                .any(|b| a.object == b.object && (a.kind == AccessKind::Write || b.kind == AccessKind::Write))
        })
    }
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
}
