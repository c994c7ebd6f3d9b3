//! A view-based operational memory model after Promising-ARM (Pulte, Pichon-Pharabod, Kang,
//! Lee and Hur, "Promising-ARM/RISC-V: a simpler and faster operational concurrency model",
//! PLDI 2019), which is proven equivalent to the ARMv8 axiomatic model.
//!
//! Memory is one list of messages (stores) in the order they reached memory: a message's
//! *timestamp* is its position plus one, and timestamp 0 is every location's initial value.
//! Each thread holds *views*, timestamps below which it has seen everything relevant:
//! - `coherence[l]`: the latest message of `l` the thread has read or written (and the views
//!   those accesses carried): it may never read an older message of `l` again;
//! - `read_old`, `write_old`: the largest views of the reads and writes it has done;
//! - `read_new`, `write_new`: lower bounds for its next reads and writes, raised by fences and
//!   acquires;
//! - `release`: the view of its last release store (an RCsc acquire is ordered after it);
//! - `control`: the views of the loads its branches and addresses depended on (`vCAP`).
//!
//! A load of `l` with pre-view `v` (its address's view, `read_new`, and for an RCsc acquire
//! `release`) may read any message `t` of `l` such that no message of `l` lies in
//! `(t, coherence[l] ⊔ v]`: that is every choice the explorer offers. A store appends a
//! message: stores reach memory in the order the threads run them, so the memory order is the
//! interleaving's and the model is multi-copy-atomic (as ARMv8 and x86 are; the LKMM is not).
//!
//! Promises (a store made visible before the thread's earlier instructions have run) give load
//! buffering. A front end that knows a thread's future stores may [`Memory::promise`] one; the
//! store that fulfils it must then fit the views it would have had (`fulfil` checks
//! `write_new ⊔ control ⊔ dependencies < t` and `coherence[l] < t`), otherwise the execution
//! is discarded. Promising-ARM shows that checking at fulfilment and discarding executions that
//! end with a promise outstanding gives exactly the model's behaviours; its certification step
//! only avoids dead ends.
//!
//! Soundness (no outcome the architecture forbids): every run of this engine is a run of
//! Promising-ARM restricted (no promises where the front end makes none), with each access
//! given an ordering at least as strong as the table says; x86-TSO is the same machine with
//! every load an (RCpc) acquire and every store a release, which leaves only a store followed by
//! a load of another location unordered, and a load reading its own store early (forwarding).

use serde::{Deserialize, Serialize};

/// A position in memory: 0 is the initial value of every location, `t > 0` the `t`-th message.
pub type Timestamp = u32;

/// The ordering an access carries, as the model's primitive table assigns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessOrder {
    /// `READ_ONCE`, `WRITE_ONCE`, relaxed atomics: ordered only by coherence and dependencies.
    Relaxed,
    /// An RCpc acquire (ARMv8.3 `ldapr`, the LKMM's `smp_load_acquire`, every x86 load): later
    /// accesses are ordered after it.
    AcquirePc,
    /// An RCsc acquire (ARMv8 `ldar`): also ordered after the thread's earlier release stores.
    AcquireSc,
    /// A release store (`stlr`, `smp_store_release`, every x86 store): ordered after every
    /// earlier access.
    Release,
}

impl AccessOrder {
    fn acquires(self) -> bool {
        matches!(self, AccessOrder::AcquirePc | AccessOrder::AcquireSc)
    }
}

/// The fences the engine knows, by what they order (the table maps each primitive to one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FenceKind {
    /// Every earlier access before every later one (`dmb ish`, `mfence`, `smp_mb()`).
    Full,
    /// Earlier loads before later loads and stores (`dmb ishld`: arm64's `smp_rmb()`).
    LoadAny,
    /// Earlier loads before later loads only (the LKMM's `smp_rmb()`).
    LoadLoad,
    /// Earlier stores before later stores (`dmb ishst`, `smp_wmb()`).
    StoreStore,
    /// Later loads after the loads earlier branches and addresses depended on (`isb`).
    Instruction,
}

/// One store in memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub location: u64,
    pub value: u64,
    pub thread: u32,
    /// A promise not yet fulfilled by its thread's store.
    pub promised: bool,
}

/// A message a load may read, as an outcome of the load's step (outcome 0 is the latest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadCandidate {
    pub timestamp: Timestamp,
    pub value: u64,
}

/// One thread's views (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ThreadView {
    /// Sorted by location.
    coherence: Vec<(u64, Timestamp)>,
    read_old: Timestamp,
    write_old: Timestamp,
    read_new: Timestamp,
    write_new: Timestamp,
    release: Timestamp,
    control: Timestamp,
    /// Per location, the thread's last store and the view of its address and data: a load of
    /// it from this thread reads it early (forwarding) and takes that view, not its timestamp.
    forward: Vec<(u64, Timestamp, Timestamp)>,
    /// Timestamps of the thread's outstanding promises.
    promises: Vec<Timestamp>,
}

impl ThreadView {
    fn coherence(&self, location: u64) -> Timestamp {
        match self.coherence.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.coherence[index].1,
            Err(_) => 0,
        }
    }

    fn raise_coherence(&mut self, location: u64, view: Timestamp) {
        match self.coherence.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.coherence[index].1 = self.coherence[index].1.max(view),
            Err(index) => self.coherence.insert(index, (location, view)),
        }
    }

    fn set_forward(&mut self, location: u64, timestamp: Timestamp, view: Timestamp) {
        match self.forward.binary_search_by_key(&location, |&(l, _, _)| l) {
            Ok(index) => self.forward[index] = (location, timestamp, view),
            Err(index) => self.forward.insert(index, (location, timestamp, view)),
        }
    }

    fn forwarded(&self, location: u64, timestamp: Timestamp) -> Option<Timestamp> {
        let index = self.forward.binary_search_by_key(&location, |&(l, _, _)| l).ok()?;
        let (_, stored, view) = self.forward[index];
        (stored == timestamp).then_some(view)
    }

    /// Renumbers every view with `renumber`; a forwarding entry or promise whose message is gone
    /// (`kept` false) is dropped.
    fn renumber(&mut self, renumber: &impl Fn(Timestamp) -> Timestamp, kept: impl Fn(Timestamp) -> bool) {
        for (_, view) in &mut self.coherence {
            *view = renumber(*view);
        }
        for view in [
            &mut self.read_old,
            &mut self.write_old,
            &mut self.read_new,
            &mut self.write_new,
            &mut self.release,
            &mut self.control,
        ] {
            *view = renumber(*view);
        }
        self.forward.retain(|&(_, stored, _)| kept(stored));
        for (_, stored, view) in &mut self.forward {
            *stored = renumber(*stored);
            *view = renumber(*view);
        }
        for promise in &mut self.promises {
            *promise = renumber(*promise);
        }
    }

    /// Everything the thread has read: a load given this as its address view is ordered after
    /// every earlier load (as if its address depended on them all).
    pub fn reads(&self) -> Timestamp {
        self.read_old
    }

    /// Everything the thread has read or written: what a full fence orders later accesses after.
    pub fn everything(&self) -> Timestamp {
        self.read_old.max(self.write_old)
    }

    /// Everything the thread's later accesses are ordered after or have seen: its accesses and
    /// what fences and synchronisation made it absorb. What it passes on to a thread that
    /// synchronises with it (an RCU grace period's start, a quiescent state), so that such
    /// orderings chain.
    pub fn known(&self) -> Timestamp {
        self.everything().max(self.read_new).max(self.write_new)
    }

    /// Orders the thread's later accesses after `view` (a synchronisation the front end models,
    /// such as an RCU quiescent state acknowledging a grace period).
    pub fn absorb(&mut self, view: Timestamp) {
        self.read_new = self.read_new.max(view);
        self.write_new = self.write_new.max(view);
    }

    /// A branch or an address computed from values with this view (a control or address
    /// dependency): later stores, and loads after an `isb`, are ordered after it.
    pub fn depend(&mut self, view: Timestamp) {
        self.control = self.control.max(view);
    }

    pub fn has_promises(&self) -> bool {
        !self.promises.is_empty()
    }

    pub fn fence(&mut self, kind: FenceKind) {
        let (read, write) = match kind {
            FenceKind::Full => (self.everything(), self.everything()),
            FenceKind::LoadAny => (self.read_old, self.read_old),
            FenceKind::LoadLoad => (self.read_old, 0),
            FenceKind::StoreStore => (0, self.write_old),
            FenceKind::Instruction => (self.control, 0),
        };
        self.read_new = self.read_new.max(read);
        self.write_new = self.write_new.max(write);
    }
}

/// A store as the engine takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    pub location: u64,
    pub value: u64,
    pub order: AccessOrder,
    /// The view of its address and data (its dependencies).
    pub dependency_view: Timestamp,
    /// The timestamp the thread promised it at, if it did.
    pub promised: Option<Timestamp>,
}

impl Store {
    /// A store with no dependencies and no promise.
    pub fn new(location: u64, value: u64, order: AccessOrder) -> Self {
        Store { location, value, order, dependency_view: 0, promised: None }
    }
}

/// A store that cannot take the timestamp its promise reserved: the execution is not one of the
/// model's and is discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenPromise;

/// The messages, and every location's initial value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Memory {
    messages: Vec<Message>,
    /// Sorted by location; a location not listed starts at 0.
    initial: Vec<(u64, u64)>,
    /// Locations whose loads always read the latest store keep no messages, only where their
    /// latest store stands in the memory order (the number of messages before it), sorted by
    /// location. Stores to two such locations then commute: neither moves the other.
    summaries: Vec<(u64, Timestamp)>,
    /// Each location's latest message, sorted by location (an index of `messages`).
    latest: Vec<(u64, Timestamp)>,
}

impl Memory {
    pub fn new(initial: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut initial: Vec<(u64, u64)> = initial.into_iter().collect();
        initial.sort_unstable();
        initial.dedup_by_key(|&mut (location, _)| location);
        Memory { messages: Vec::new(), initial, summaries: Vec::new(), latest: Vec::new() }
    }

    /// Where the latest store to a summarised location stands (0: none yet).
    fn summary(&self, location: u64) -> Timestamp {
        match self.summaries.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.summaries[index].1,
            Err(_) => 0,
        }
    }

    /// A load of a summarised location (it reads the latest store): returns its post-view.
    pub fn read_summarised(&self, view: &mut ThreadView, location: u64, order: AccessOrder) -> Timestamp {
        let pre = self.pre_view(view, order, 0);
        let post = pre.max(self.summary(location));
        view.read_old = view.read_old.max(post);
        if order.acquires() {
            view.read_new = view.read_new.max(post);
            view.write_new = view.write_new.max(post);
        }
        post
    }

    /// A store to a summarised location: it stands after every message so far.
    pub fn write_summarised(&mut self, view: &mut ThreadView, location: u64, order: AccessOrder) {
        let timestamp = self.messages.len() as Timestamp;
        match self.summaries.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.summaries[index].1 = timestamp,
            Err(index) => self.summaries.insert(index, (location, timestamp)),
        }
        view.write_old = view.write_old.max(timestamp);
        if order == AccessOrder::Release {
            view.release = view.release.max(timestamp);
        }
    }

    /// Bytes held on the heap (for memory estimates).
    pub fn heap_bytes(&self) -> u64 {
        let pair = std::mem::size_of::<(u64, u64)>();
        (self.messages.capacity() * std::mem::size_of::<Message>()
            + (self.initial.capacity() + self.summaries.capacity() + self.latest.capacity()) * pair) as u64
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Gives `location` an initial value (timestamp 0) if it has none yet: a model that learns
    /// of a location only when it is first stored to records what it held before.
    pub fn set_initial(&mut self, location: u64, value: u64) {
        if let Err(index) = self.initial.binary_search_by_key(&location, |&(l, _)| l) {
            self.initial.insert(index, (location, value));
        }
    }

    /// The initial values given by [`Memory::new`] and [`Memory::set_initial`].
    pub fn initial_values(&self) -> impl Iterator<Item = u64> + '_ {
        self.initial.iter().map(|&(_, value)| value)
    }

    /// Maps every message's and initial value (a model keeping values elsewhere renumbers
    /// them).
    pub fn renumber_values(&mut self, renumber: impl Fn(u64) -> u64) {
        for message in &mut self.messages {
            message.value = renumber(message.value);
        }
        for (_, value) in &mut self.initial {
            *value = renumber(*value);
        }
    }

    /// The latest message of `location`: its timestamp and value.
    pub fn latest(&self, location: u64) -> ReadCandidate {
        let timestamp = self.latest_at(location, Timestamp::MAX);
        ReadCandidate { timestamp, value: self.value_at(location, timestamp).expect("a message of the location") }
    }

    /// Forgets the messages no thread can read any more and renumbers the rest, so that two
    /// states that differ only in stores nobody can see again are one state.
    ///
    /// A message of `l` is dead when, for every thread in `readers`, a newer message of `l` lies
    /// at or below what the thread has already seen of `l` (`coherence[l] ⊔ read_new`: those
    /// only grow), and for every location `weak(l)` says no load reads anything but the latest.
    /// A promise is never dead. Views are renumbered to the number of live messages at or
    /// below them: every comparison the engine makes (a view against a message's timestamp, the
    /// largest of two views) gives the same answer before and after. The values of dead
    /// messages are returned (oldest first) so that a model keeping a message's value elsewhere
    /// can drop it.
    pub fn collect(&mut self, readers: &mut [ThreadView], weak: impl Fn(u64) -> bool) -> Vec<u64> {
        let live = self.liveness(readers, &weak);
        if live.iter().all(|&l| l) {
            return Vec::new();
        }
        let mut rank = Vec::with_capacity(live.len() + 1);
        rank.push(0);
        for &alive in &live {
            rank.push(rank.last().expect("starts with 0") + Timestamp::from(alive));
        }
        let renumber = |t: Timestamp| rank[(t as usize).min(live.len())];
        for view in readers.iter_mut() {
            view.renumber(&renumber, |t| t == 0 || live[t as usize - 1]);
        }
        for (_, timestamp) in &mut self.summaries {
            *timestamp = renumber(*timestamp);
        }
        let mut dead = Vec::new();
        let mut kept = Vec::with_capacity(live.len());
        for (message, alive) in std::mem::take(&mut self.messages).into_iter().zip(live) {
            match alive {
                true => kept.push(message),
                false => dead.push(message.value),
            }
        }
        self.messages = kept;
        self.reindex();
        dead
    }

    /// Per message, whether some thread may still read it (see [`Memory::collect`]): per
    /// location, the oldest message any reader may read is the latest one at or below what it
    /// has seen of the location.
    fn liveness(&self, readers: &[ThreadView], weak: &impl Fn(u64) -> bool) -> Vec<bool> {
        let mut by_location: Vec<(u64, Vec<Timestamp>)> = Vec::new();
        for (index, message) in self.messages.iter().enumerate() {
            match by_location.binary_search_by_key(&message.location, |(l, _)| *l) {
                Ok(at) => by_location[at].1.push(index as Timestamp + 1),
                Err(at) => by_location.insert(at, (message.location, vec![index as Timestamp + 1])),
            }
        }
        let mut live = vec![false; self.messages.len()];
        for (location, timestamps) in &by_location {
            let oldest_readable = match weak(*location) {
                false => *timestamps.last().expect("one message at least"),
                true => readers
                    .iter()
                    .map(|view| {
                        let seen = view.coherence(*location).max(view.read_new);
                        let below = timestamps.partition_point(|&t| t <= seen);
                        if below == 0 {
                            0
                        } else {
                            timestamps[below - 1]
                        }
                    })
                    .min()
                    .unwrap_or(*timestamps.last().expect("one message at least")),
            };
            for &t in timestamps {
                let message = &self.messages[t as usize - 1];
                live[t as usize - 1] = t >= oldest_readable || message.promised;
            }
        }
        live
    }

    fn initial_value(&self, location: u64) -> u64 {
        match self.initial.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.initial[index].1,
            Err(_) => 0,
        }
    }

    /// The value of the message at `timestamp` if it is a store to `location` (0: the initial).
    fn value_at(&self, location: u64, timestamp: Timestamp) -> Option<u64> {
        match timestamp {
            0 => Some(self.initial_value(location)),
            t => Some(&self.messages[t as usize - 1]).filter(|m| m.location == location).map(|m| m.value),
        }
    }

    /// The latest message of `location` at or before `bound`.
    fn latest_at(&self, location: u64, bound: Timestamp) -> Timestamp {
        let latest = match self.latest.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.latest[index].1,
            Err(_) => return 0,
        };
        if latest <= bound {
            return latest;
        }
        let bound = (bound as usize).min(self.messages.len());
        self.messages[..bound].iter().rposition(|m| m.location == location).map_or(0, |i| i as Timestamp + 1)
    }

    /// Appends a message and indexes it as its location's latest.
    fn append(&mut self, message: Message) -> Timestamp {
        let location = message.location;
        self.messages.push(message);
        let timestamp = self.messages.len() as Timestamp;
        match self.latest.binary_search_by_key(&location, |&(l, _)| l) {
            Ok(index) => self.latest[index].1 = timestamp,
            Err(index) => self.latest.insert(index, (location, timestamp)),
        }
        timestamp
    }

    /// Rebuilds the index of each location's latest message.
    fn reindex(&mut self) {
        self.latest.clear();
        for (index, message) in self.messages.iter().enumerate() {
            match self.latest.binary_search_by_key(&message.location, |&(l, _)| l) {
                Ok(at) => self.latest[at].1 = index as Timestamp + 1,
                Err(at) => self.latest.insert(at, (message.location, index as Timestamp + 1)),
            }
        }
    }

    /// The value a location holds at the end: its last message in memory order.
    pub fn final_value(&self, location: u64) -> u64 {
        let latest = self.latest_at(location, Timestamp::MAX);
        self.value_at(location, latest).expect("a message of the location")
    }

    /// The messages a load of `location` by `thread` may read, latest first: `weak` false gives
    /// only the latest (sequential consistency).
    pub fn read_candidates(
        &self,
        view: &ThreadView,
        location: u64,
        order: AccessOrder,
        address_view: Timestamp,
        weak: bool,
    ) -> Vec<ReadCandidate> {
        let latest = self.latest_at(location, Timestamp::MAX);
        let oldest = match weak {
            true => self.latest_at(location, view.coherence(location).max(self.pre_view(view, order, address_view))),
            false => latest,
        };
        let mut candidates = Vec::new();
        let mut timestamp = latest;
        loop {
            let own_promise = view.promises.contains(&timestamp);
            if !own_promise {
                let value = self.value_at(location, timestamp).expect("a message of the location");
                candidates.push(ReadCandidate { timestamp, value });
            }
            if timestamp <= oldest {
                break;
            }
            timestamp = self.latest_at(location, timestamp - 1);
        }
        candidates
    }

    fn pre_view(&self, view: &ThreadView, order: AccessOrder, address_view: Timestamp) -> Timestamp {
        let release = if order == AccessOrder::AcquireSc { view.release } else { 0 };
        address_view.max(view.read_new).max(release)
    }

    /// Reads `candidate` (one of [`Memory::read_candidates`]); returns the load's post-view,
    /// the view its value carries into dependencies.
    pub fn read(
        &self,
        view: &mut ThreadView,
        location: u64,
        order: AccessOrder,
        address_view: Timestamp,
        candidate: ReadCandidate,
    ) -> Timestamp {
        let pre = self.pre_view(view, order, address_view);
        let read = view.forwarded(location, candidate.timestamp).unwrap_or(candidate.timestamp);
        let post = pre.max(read);
        view.raise_coherence(location, post);
        view.read_old = view.read_old.max(post);
        if order.acquires() {
            view.read_new = view.read_new.max(post);
            view.write_new = view.write_new.max(post);
        }
        post
    }

    /// The view a store must be ordered after.
    fn write_pre_view(view: &ThreadView, order: AccessOrder, dependency_view: Timestamp) -> Timestamp {
        let release = if order == AccessOrder::Release { view.everything() } else { 0 };
        dependency_view.max(view.control).max(view.write_new).max(release)
    }

    /// A store by `thread`: fulfils its promise at `store.promised`, or appends a new message.
    pub fn write(&mut self, view: &mut ThreadView, thread: u32, store: Store) -> Result<Timestamp, BrokenPromise> {
        let Store { location, value, order, dependency_view, promised } = store;
        let pre = Self::write_pre_view(view, order, dependency_view);
        let timestamp = match promised {
            Some(t) => {
                let message = &self.messages[t as usize - 1];
                assert!(message.promised && message.thread == thread && message.location == location);
                if message.value != value || pre >= t || view.coherence(location) >= t {
                    return Err(BrokenPromise);
                }
                self.messages[t as usize - 1].promised = false;
                view.promises.retain(|&p| p != t);
                t
            }
            None => self.append(Message { location, value, thread, promised: false }),
        };
        view.raise_coherence(location, timestamp);
        view.write_old = view.write_old.max(timestamp);
        if order == AccessOrder::Release {
            view.release = view.release.max(timestamp);
        }
        view.set_forward(location, timestamp, dependency_view);
        Ok(timestamp)
    }

    /// Makes a future store of the thread visible now; its store must fulfil it.
    pub fn promise(&mut self, view: &mut ThreadView, thread: u32, location: u64, value: u64) -> Timestamp {
        let timestamp = self.append(Message { location, value, thread, promised: true });
        view.promises.push(timestamp);
        timestamp
    }

    /// An atomic read-modify-write: reads the latest message of `location` (no store may come
    /// between its read and its write) and, when `update` gives a new value, stores it right
    /// after. Returns the old value, and the read's post-view; when the latest message is the
    /// thread's own outstanding promise (a later store of its own) the execution is not one of
    /// the model's.
    #[allow(clippy::too_many_arguments)]
    pub fn read_modify_write(
        &mut self,
        view: &mut ThreadView,
        thread: u32,
        location: u64,
        read_order: AccessOrder,
        write_order: AccessOrder,
        address_view: Timestamp,
        update: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(u64, Timestamp), BrokenPromise> {
        let latest = self.latest_at(location, Timestamp::MAX);
        if view.promises.contains(&latest) {
            return Err(BrokenPromise);
        }
        let old = self.value_at(location, latest).expect("a message of the location");
        let candidate = ReadCandidate { timestamp: latest, value: old };
        let post = self.read(view, location, read_order, address_view, candidate);
        if let Some(new) = update(old) {
            let store = Store { dependency_view: post, ..Store::new(location, new, write_order) };
            self.write(view, thread, store)?;
        }
        Ok((old, post))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: u64 = 1;
    const Y: u64 = 2;

    fn latest_value(memory: &Memory, view: &ThreadView, location: u64) -> Vec<u64> {
        memory.read_candidates(view, location, AccessOrder::Relaxed, 0, true).iter().map(|c| c.value).collect()
    }

    #[test]
    fn a_load_reads_any_store_not_older_than_its_views() {
        let mut memory = Memory::new([(X, 0)]);
        let mut writer = ThreadView::default();
        let reader = ThreadView::default();
        memory.write(&mut writer, 0, Store::new(X, 1, AccessOrder::Relaxed)).unwrap();
        memory.write(&mut writer, 0, Store::new(X, 2, AccessOrder::Relaxed)).unwrap();
        assert_eq!(latest_value(&memory, &reader, X), vec![2, 1, 0], "latest first, then older");
        assert_eq!(latest_value(&memory, &writer, X), vec![2], "its own latest store: coherence");
        let sc = memory.read_candidates(&reader, X, AccessOrder::Relaxed, 0, false);
        assert_eq!(sc.len(), 1, "sequential consistency reads the latest");
    }

    #[test]
    fn reading_a_store_forbids_older_ones_of_that_location_only() {
        let mut memory = Memory::new([]);
        let (mut writer, mut reader) = (ThreadView::default(), ThreadView::default());
        memory.write(&mut writer, 0, Store::new(X, 1, AccessOrder::Relaxed)).unwrap();
        memory.write(&mut writer, 0, Store::new(Y, 1, AccessOrder::Relaxed)).unwrap();
        let candidate = memory.read_candidates(&reader, Y, AccessOrder::Relaxed, 0, true)[0];
        memory.read(&mut reader, Y, AccessOrder::Relaxed, 0, candidate);
        assert_eq!(latest_value(&memory, &reader, Y), vec![1]);
        assert_eq!(latest_value(&memory, &reader, X), vec![1, 0], "a relaxed read orders nothing");
        let candidate = memory.read_candidates(&reader, Y, AccessOrder::AcquirePc, 0, true)[0];
        memory.read(&mut reader, Y, AccessOrder::AcquirePc, 0, candidate);
        assert_eq!(latest_value(&memory, &reader, X), vec![1], "an acquire orders later loads");
    }

    #[test]
    fn a_full_fence_orders_a_store_before_a_later_load() {
        let mut memory = Memory::new([]);
        let (mut zero, mut one) = (ThreadView::default(), ThreadView::default());
        memory.write(&mut zero, 0, Store::new(X, 1, AccessOrder::Relaxed)).unwrap();
        memory.write(&mut one, 1, Store::new(Y, 1, AccessOrder::Relaxed)).unwrap();
        assert_eq!(latest_value(&memory, &one, X), vec![1, 0], "store buffering");
        let mut wmb = one.clone();
        wmb.fence(FenceKind::StoreStore);
        assert_eq!(latest_value(&memory, &wmb, X), vec![1, 0], "smp_wmb() does not order a later load");
        // The store to y reached memory after the store to x: behind a full fence, the thread
        // that stored y sees x; the other may still miss y (it stored first), but not both.
        one.fence(FenceKind::Full);
        assert_eq!(latest_value(&memory, &one, X), vec![1]);
        zero.fence(FenceKind::Full);
        assert_eq!(latest_value(&memory, &zero, Y), vec![1, 0]);
    }

    #[test]
    fn a_promise_is_kept_only_where_its_store_could_have_gone() {
        let mut memory = Memory::new([]);
        let mut thread = ThreadView::default();
        let promised = memory.promise(&mut thread, 0, Y, 1);
        assert!(thread.has_promises());
        assert!(memory.read_candidates(&thread, Y, AccessOrder::Relaxed, 0, true).iter().all(|c| c.value == 0));
        // A load that reads a later message, then a store that depends on it: too late.
        let mut other = ThreadView::default();
        memory.write(&mut other, 1, Store::new(X, 1, AccessOrder::Relaxed)).unwrap();
        let mut broken = thread.clone();
        let mut broken_memory = memory.clone();
        let candidate = broken_memory.read_candidates(&broken, X, AccessOrder::Relaxed, 0, true)[0];
        let post = broken_memory.read(&mut broken, X, AccessOrder::Relaxed, 0, candidate);
        let store = Store { dependency_view: post, promised: Some(promised), ..Store::new(Y, 1, AccessOrder::Relaxed) };
        let result = broken_memory.write(&mut broken, 0, store);
        assert_eq!(result, Err(BrokenPromise), "a data dependency on a later message breaks it");
        let store = Store { promised: Some(promised), ..Store::new(Y, 1, AccessOrder::Relaxed) };
        assert_eq!(memory.write(&mut thread, 0, store), Ok(promised));
        assert!(!thread.has_promises());
    }

    #[test]
    fn collecting_forgets_what_nobody_can_read_and_keeps_every_answer() {
        let mut memory = Memory::new([]);
        let mut views = vec![ThreadView::default(), ThreadView::default()];
        for value in 1..=3 {
            memory.write(&mut views[0], 0, Store::new(X, value, AccessOrder::Relaxed)).unwrap();
            memory.write(&mut views[0], 0, Store::new(Y, value, AccessOrder::Relaxed)).unwrap();
        }
        // Thread 1 has seen nothing: every store of x may still be read by it.
        let before = latest_value(&memory, &views[1], X);
        let dead = memory.collect(&mut views, |location| location == X);
        assert_eq!(dead, vec![1, 2], "y is read only at its latest: its older stores go");
        assert_eq!(latest_value(&memory, &views[1], X), before);
        assert_eq!(latest_value(&memory, &views[0], X), vec![3], "its own stores: coherence");
        let candidate = memory.read_candidates(&views[1], X, AccessOrder::Relaxed, 0, true)[1];
        memory.read(&mut views[1], X, AccessOrder::Relaxed, 0, candidate);
        assert_eq!(memory.collect(&mut views, |location| location == X), vec![1], "x=1 is behind both now");
        assert_eq!(latest_value(&memory, &views[1], X), vec![3, 2]);
    }

    #[test]
    fn a_read_modify_write_reads_the_latest_and_stores_right_after() {
        let mut memory = Memory::new([(X, 5)]);
        let (mut zero, mut one) = (ThreadView::default(), ThreadView::default());
        let increment = |v: u64| Some(v + 1);
        let relaxed = AccessOrder::Relaxed;
        let (old, _) = memory.read_modify_write(&mut zero, 0, X, relaxed, relaxed, 0, increment).unwrap();
        assert_eq!(old, 5);
        let (old, _) = memory.read_modify_write(&mut one, 1, X, relaxed, relaxed, 0, increment).unwrap();
        assert_eq!(old, 6, "never a lost update");
        assert_eq!(memory.final_value(X), 7);
    }
}
