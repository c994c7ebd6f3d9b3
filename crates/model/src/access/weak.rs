//! The model's memory under a weak memory model: the engine's messages and each thread's views
//! (`mmcheck_explorer::memory`), kept beside the [`Kernel`] values, which stay the latest store
//! of every location.
//!
//! Which loads are weak. Every access goes through the engine, so every thread's views are
//! what its accesses and fences make them; but only two loads may read a store other than the
//! latest: GUP-fast's lockless PTE reads (`Ctx::pte_load_lockless`, its `ptep_get_lockless()`
//! and recheck) and folio refcount reads (`folio_ref_count()`, which reclaim reads with no lock
//! that orders it), the two the seed race is about. Other PTE reads are under the PTE lock or
//! the MMU's walk, which the model has no TLB for. Every other load reads the latest store, which is stronger than any architecture:
//! the model then shows fewer behaviours, never one the architecture forbids. Within a step,
//! only the first weak load chooses (the step's outcome); later ones read the latest, for the
//! same reason. The model carries no address or data dependencies, so a weak load is ordered
//! after every earlier load of its thread, as if it depended on them all (stronger again). These
//! confinements cost completeness and are said in the verdict's text.
//! A test (tests/weak_memory.rs) shows the store-buffering race the confinement is for.

use super::{AccessOp, Object, Ordering};
use crate::arch::{self, Primitive};
use crate::pgtable::Pte;
use mmcheck_explorer::memory::{FenceKind, Memory, MemoryModel, ReadCandidate, Store, ThreadView};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::hash::Hash;

/// A stored value of a weak location, kept for the loads that read it after newer stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WeakValue {
    Pte(Pte),
    Count(i32),
}

impl WeakValue {
    fn of(value: &dyn Any) -> Option<WeakValue> {
        if let Some(pte) = value.downcast_ref::<Pte>() {
            return Some(WeakValue::Pte(*pte));
        }
        value.downcast_ref::<i32>().map(|&count| WeakValue::Count(count))
    }

    /// The value as the location's type (`None`: not of that type).
    pub fn get<V: Any + Clone>(self) -> Option<V> {
        let boxed: Box<dyn Any> = match self {
            WeakValue::Pte(pte) => Box::new(pte),
            WeakValue::Count(count) => Box::new(count),
        };
        boxed.downcast::<V>().ok().map(|value| *value)
    }
}

/// Whether loads of an object may read older stores.
pub fn is_weak(object: Object) -> bool {
    matches!(object, Object::Pte(..) | Object::FolioRefcount(_))
}

fn is_weak_key(key: u64) -> bool {
    let kind = key >> 56;
    kind == Object::Pte(0, 0).key() >> 56 || kind == Object::FolioRefcount(0).key() >> 56
}

/// The engine's state for one run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeakMemory {
    pub model: MemoryModel,
    memory: Memory,
    views: Vec<ThreadView>,
    /// The values of weak locations' messages; a message's value is an index here.
    values: Vec<WeakValue>,
}

/// A message's value for a location that is not weak: nobody reads it from the message.
const NO_VALUE: u64 = u64::MAX;

impl WeakMemory {
    /// Bytes held on the heap (for memory estimates; a thread view counted at its size).
    pub fn heap_bytes(&self) -> u64 {
        self.memory.heap_bytes()
            + (self.views.capacity() * std::mem::size_of::<ThreadView>()
                + self.values.capacity() * std::mem::size_of::<WeakValue>()) as u64
    }

    pub fn new(model: MemoryModel, threads: usize) -> Self {
        WeakMemory { model, memory: Memory::new([]), views: vec![ThreadView::default(); threads], values: Vec::new() }
    }

    fn ordering(&self, op: AccessOp, ordering: Ordering) -> arch::Ordering {
        arch::ordering(self.model, primitive(op, ordering))
    }

    fn fence(&mut self, thread: usize, kind: Option<FenceKind>) {
        if let Some(kind) = kind {
            self.views[thread].fence(kind);
        }
    }

    /// The stores a weak load of `object` may read, latest first. Its address view is everything
    /// the thread has read: the model carries no dependencies, so every weak load is ordered
    /// after the thread's earlier loads as if its address depended on them (stronger than the
    /// hardware, never weaker: a real dependency, as from a PMD to its PTE, is always honoured).
    pub fn candidates(&self, thread: usize, object: Object, ordering: Ordering) -> Vec<ReadCandidate> {
        let order = self.ordering(AccessOp::Load, ordering).read;
        let view = &self.views[thread];
        self.memory.read_candidates(view, object.key(), order, view.reads(), true)
    }

    /// A load reading `candidate` (or the latest store): returns the older value it read, if it
    /// read one (`None`: the latest, which the kernel state holds).
    pub fn load(
        &mut self,
        thread: usize,
        object: Object,
        ordering: Ordering,
        candidate: Option<ReadCandidate>,
    ) -> Option<WeakValue> {
        let order = self.ordering(AccessOp::Load, ordering);
        self.fence(thread, order.before);
        let key = object.key();
        let older = match is_weak(object) {
            true => {
                let latest = self.memory.latest(key);
                let candidate = candidate.unwrap_or(latest);
                let address_view = self.views[thread].reads();
                self.memory.read(&mut self.views[thread], key, order.read, address_view, candidate);
                (candidate.timestamp != latest.timestamp).then(|| self.values[candidate.value as usize])
            }
            false => {
                self.memory.read_summarised(&mut self.views[thread], key, order.read);
                None
            }
        };
        self.fence(thread, order.after);
        older
    }

    /// A store, or the write of an RMW (`op`), of `value`; `old` is what the location held, its
    /// initial value if the engine has not seen it before.
    pub fn store(
        &mut self,
        thread: usize,
        op: AccessOp,
        object: Object,
        ordering: Ordering,
        old: &dyn Any,
        value: &dyn Any,
    ) {
        let order = self.ordering(op, ordering);
        let key = object.key();
        if !is_weak(object) {
            self.fence(thread, order.before);
            let view = &mut self.views[thread];
            if op != AccessOp::Store {
                self.memory.read_summarised(view, key, order.read);
            }
            self.memory.write_summarised(view, key, order.write);
            self.fence(thread, order.after);
            return;
        }
        let encoded = |values: &mut Vec<WeakValue>, value: &dyn Any| match WeakValue::of(value) {
            Some(weak) => {
                values.push(weak);
                values.len() as u64 - 1
            }
            None => NO_VALUE,
        };
        if self.memory.latest(key).timestamp == 0 {
            let initial = encoded(&mut self.values, old);
            self.memory.set_initial(key, initial);
        }
        let value = encoded(&mut self.values, value);
        self.fence(thread, order.before);
        let view = &mut self.views[thread];
        if op == AccessOp::Store {
            let store = Store::new(key, value, order.write);
            self.memory.write(view, thread as u32, store).expect("the model makes no promises");
        } else {
            // An RMW, lock or unlock reads the latest store and writes right after it.
            let (read, write) = (order.read, order.write);
            let rmw = self.memory.read_modify_write(view, thread as u32, key, read, write, 0, |_| Some(value));
            rmw.expect("the model makes no promises");
        }
        self.fence(thread, order.after);
    }

    /// An RMW that wrote nothing (a failed conditional one, or a lock operation that found the
    /// value it wanted): a load of the latest store.
    pub fn unchanged(&mut self, thread: usize, op: AccessOp, object: Object, ordering: Ordering) {
        let failed = if op == AccessOp::ReadModifyWrite { Primitive::RmwFailed } else { primitive(op, ordering) };
        let order = arch::ordering(self.model, failed);
        self.fence(thread, order.before);
        let key = object.key();
        match is_weak(object) {
            true => {
                let latest = self.memory.latest(key);
                self.memory.read(&mut self.views[thread], key, order.read, 0, latest);
            }
            false => {
                self.memory.read_summarised(&mut self.views[thread], key, order.read);
            }
        }
        self.fence(thread, order.after);
    }

    pub fn fence_primitive(&mut self, thread: usize, primitive: Primitive) {
        let kind = arch::ordering(self.model, primitive).before;
        self.fence(thread, kind);
    }

    /// A new thread starts with its parent's views.
    pub fn inherit(&mut self, child: usize, parent: usize) {
        self.views[child] = self.views[parent].clone();
    }

    /// Forgets the stores no running thread can read any more, and their values (the canonical
    /// form: two runs that differ only in what nobody can see again meet). A thread that has
    /// not started will inherit its parent's views, and one that ended reads nothing: neither
    /// keeps a store alive, and an ended one's views are forgotten.
    pub fn collect(&mut self, running: &[bool]) {
        for (view, _) in self.views.iter_mut().zip(running).filter(|(_, &running)| !running) {
            *view = ThreadView::default();
        }
        let mut readers: Vec<ThreadView> =
            self.views.iter().zip(running).filter(|(_, &running)| running).map(|(v, _)| v.clone()).collect();
        self.memory.collect(&mut readers, is_weak_key);
        let mut readers = readers.into_iter();
        for (view, _) in self.views.iter_mut().zip(running).filter(|(_, &running)| running) {
            *view = readers.next().expect("one per running thread");
        }
        // Renumber the values still referenced, in the order of their messages.
        let mut renumbered = vec![NO_VALUE; self.values.len()];
        let mut kept = Vec::new();
        let indexes: Vec<u64> =
            self.memory.messages().iter().map(|m| m.value).chain(self.memory.initial_values()).collect();
        for index in indexes.into_iter().filter(|&index| index != NO_VALUE) {
            if renumbered[index as usize] == NO_VALUE {
                renumbered[index as usize] = kept.len() as u64;
                kept.push(self.values[index as usize]);
            }
        }
        self.memory.renumber_values(|index| if index == NO_VALUE { NO_VALUE } else { renumbered[index as usize] });
        self.values = kept;
    }
}

/// The primitive of an access, as the table names it: an RMW that is not fully ordered is
/// relaxed (`ptep_get_and_clear()`, `atomic_inc()`: relaxed on arm64, a locked instruction,
/// fully ordered, on x86), locks are spin locks, fences are `smp_mb()`, `smp_rmb()`, `smp_wmb()`.
pub fn primitive(op: AccessOp, ordering: Ordering) -> Primitive {
    use Ordering::*;
    match (op, ordering) {
        (AccessOp::Load, Relaxed | Release) => Primitive::ReadOnce,
        (AccessOp::Load, Acquire | Full) => Primitive::LoadAcquire,
        (AccessOp::Store, Relaxed | Acquire) => Primitive::WriteOnce,
        (AccessOp::Store, Release | Full) => Primitive::StoreRelease,
        (AccessOp::ReadModifyWrite, Relaxed) => Primitive::RmwRelaxed,
        (AccessOp::ReadModifyWrite, Acquire) => Primitive::RmwAcquire,
        (AccessOp::ReadModifyWrite, Release) => Primitive::RmwRelease,
        (AccessOp::ReadModifyWrite, Full) => Primitive::RmwFull,
        (AccessOp::Lock, _) => Primitive::SpinLock,
        (AccessOp::Unlock, _) => Primitive::SpinUnlock,
        (AccessOp::Fence(super::Fence::Full), _) => Primitive::Mb,
        (AccessOp::Fence(super::Fence::Read), _) => Primitive::Rmb,
        (AccessOp::Fence(super::Fence::Write), _) => Primitive::Wmb,
    }
}
