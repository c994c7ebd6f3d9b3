//! Every access of kernel code to shared state goes through [`Ctx`]: an explicit load, store,
//! atomic read-modify-write, lock operation or fence, with its memory ordering. Each access is
//! recorded in the step's footprint (for partial-order reduction) and, when a trace is being
//! recorded, in the access log (for the trace today and weak-memory exploration later).
//!
//! Architecture invariant: kernel code reaches shared state only through [`Ctx`], whose kernel
//! reference is private. Each operation is typed and narrow (a PTE, a folio's refcount, one VMA
//! update) and records what it touches; the stepping thread's own registers, frames and lists
//! are reached through [`Ctx::local`], which can give no other thread's. Every load and store of
//! a memory location goes through one path, the location's [`location::Location`] `get` and
//! `set`, so that the value of a location can become a history of stores (weak memory) in one
//! place.

use crate::folio::{Folio, FolioId, PageFlag, ZERO_FOLIO};
use crate::patches::{KernelConfig, Patch};
use crate::pgtable::{pte_table, Pte};
use crate::state::{AnonVmaId, FileId, Kernel, MmId, ThreadId};
use crate::violation::{Violation, ViolationKind};
use location::*;
use mmcheck_explorer::StepEffects;

mod location;
pub mod weak;

pub use location::PmdEntry;
use serde::{Deserialize, Serialize};

/// The ordering of an access, as the kernel's primitives give it: `READ_ONCE`/`WRITE_ONCE` and
/// plain atomics are relaxed; value-returning atomics and `smp_mb()` are full; lock acquisition
/// is acquire and release is release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ordering {
    Relaxed,
    Acquire,
    Release,
    Full,
}

/// The kinds of fence the kernel code issues (include/asm-generic/barrier.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fence {
    /// smp_mb()
    Full,
    /// smp_rmb()
    Read,
    /// smp_wmb()
    Write,
}

/// A shared object, as footprints name it: one memory location (or one lock) of the kernel.
/// Finer objects mean more independence: the refcount, each page's `_mapcount`, the entire
/// mapcount, each flag bit, each page's PageAnonExclusive bit and each page's bytes of a folio
/// are separate objects, as they are separate words (or bits) in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Object {
    Pte(MmId, u64),
    PteLock(MmId, u64),
    MmapLock(MmId),
    /// The VMA tree of an mm (with where the next mapping goes, and whether the mm exited).
    Vmas(MmId),
    Rss(MmId),
    FolioRefcount(FolioId),
    /// One page's `_mapcount` (folio, page index).
    PageMapcount(FolioId, u16),
    /// `_entire_mapcount` of a large folio (its PMD mappings).
    EntireMapcount(FolioId),
    FolioPincount(FolioId),
    FolioFlag(FolioId, PageFlag),
    /// PageAnonExclusive of one page (folio, page index): a bit of that page, not of the folio.
    PageAnonExclusive(FolioId, u16),
    FolioMapping(FolioId),
    FolioData(FolioId, u16),
    /// Whether the folio is allocated: written by allocation and freeing, read by every access.
    FolioAllocated(FolioId),
    /// The page allocator: allocation order decides folio numbers.
    Allocator,
    LruLock,
    Lru,
    AnonVma(AnonVmaId),
    AnonVmaLock(AnonVmaId),
    File(FileId),
    ThreadStatus(ThreadId),
    ScenarioEvent(u8),
    /// `folio->swap`.
    FolioSwap(FolioId),
    /// `si->swap_map[offset]`.
    SwapMap(u32),
    /// The swap cache slot of an entry (swapper_space's xarray).
    SwapCache(u32),
    /// A swap slot's contents on the device.
    SwapData(u32),
    Uffd(u32),
    /// A PMD (mm, pmd index): a huge mapping, or the PTE table it points to (pmd_none()).
    Pmd(MmId, u64),
    /// A page's compound state (PG_head and the order for a head, compound_head for any page),
    /// by pfn.
    PageCompound(u64),
    /// The per-CPU lru_lazyfree folio batch.
    LazyfreeBatch,
    /// A file's page cache slot (`mapping->i_pages` at an index).
    PageCache(FileId, u64),
    /// mm/huge_memory.c: the `huge_zero_folio` pointer.
    HugeZeroFolio,
    /// Under a weak memory model, the order in which stores reach memory: every store writes
    /// it (two stores of different threads never commute there: which came first is visible).
    MemoryOrder,
}

impl Object {
    /// A 64-bit key, `kind << 56 | first << 40 | second`: 8 bits of kind (one per variant,
    /// never reused), 16 bits of the first id (an mm, folio, anon_vma, file, thread, uffd or
    /// event; 0 where there is none) and 40 bits of the second (a vpn, page table or pmd index,
    /// page index within a folio, flag, swap offset, pfn or file index; 0 where there is none:
    /// a vpn of a 48-bit address space needs 36). Injective while the ids fit their fields,
    /// which debug builds check.
    pub fn key(self) -> u64 {
        let (kind, a, b): (u64, u64, u64) = match self {
            Object::Pte(mm, vpn) => (1, mm.into(), vpn),
            Object::PteLock(mm, table) => (2, mm.into(), table),
            Object::MmapLock(mm) => (3, mm.into(), 0),
            Object::Vmas(mm) => (4, mm.into(), 0),
            Object::Rss(mm) => (5, mm.into(), 0),
            Object::FolioRefcount(f) => (6, f.into(), 0),
            Object::PageMapcount(f, page) => (7, f.into(), page.into()),
            Object::FolioPincount(f) => (8, f.into(), 0),
            Object::FolioFlag(f, flag) => (9, f.into(), flag as u64),
            Object::FolioMapping(f) => (10, f.into(), 0),
            Object::FolioData(f, page) => (11, f.into(), page.into()),
            Object::Allocator => (12, 0, 0),
            Object::LruLock => (13, 0, 0),
            Object::Lru => (14, 0, 0),
            Object::AnonVma(av) => (15, av.into(), 0),
            Object::AnonVmaLock(av) => (16, av.into(), 0),
            Object::File(file) => (17, file.into(), 0),
            Object::ThreadStatus(t) => (18, t.into(), 0),
            Object::ScenarioEvent(e) => (19, e.into(), 0),
            Object::FolioAllocated(f) => (20, f.into(), 0),
            Object::FolioSwap(f) => (21, f.into(), 0),
            Object::SwapMap(offset) => (22, 0, offset.into()),
            Object::SwapCache(offset) => (23, 0, offset.into()),
            Object::SwapData(offset) => (24, 0, offset.into()),
            Object::Uffd(uffd) => (25, uffd.into(), 0),
            Object::Pmd(mm, index) => (26, mm.into(), index),
            Object::PageCompound(pfn) => (27, 0, pfn),
            Object::LazyfreeBatch => (28, 0, 0),
            Object::PageCache(file, index) => (29, file.into(), index),
            Object::EntireMapcount(f) => (30, f.into(), 0),
            Object::PageAnonExclusive(f, page) => (31, f.into(), page.into()),
            Object::HugeZeroFolio => (32, 0, 0),
            Object::MemoryOrder => (33, 0, 0),
        };
        debug_assert!(a < 1 << 16 && b < 1 << 40, "{self:?} does not fit its key");
        (kind << 56) | ((a & 0xffff) << 40) | (b & 0xff_ffff_ffff)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessOp {
    Load,
    Store,
    ReadModifyWrite,
    Lock,
    Unlock,
    Fence(Fence),
}

/// One entry of the access log of a recorded step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub op: AccessOp,
    pub object: Option<Object>,
    pub ordering: Ordering,
    /// A load that read a store older than the latest (a weak memory model's outcome).
    pub stale: bool,
}

/// What a recorded step did, for traces: the thread, the kernel function and the step label (as
/// the kernel's code reads), what changed, and the loads that read an older store (under a weak
/// memory model; `accesses` keeps only those).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub thread: ThreadId,
    pub function: &'static str,
    pub label: &'static str,
    pub detail: String,
    pub accesses: Vec<AccessRecord>,
}

pub type Effects = StepEffects<Event, Violation>;

/// The context of one step of one thread: the only door of kernel code to the shared state.
pub struct Ctx<'a> {
    k: &'a mut Kernel,
    pub effects: &'a mut Effects,
    pub thread: ThreadId,
    pub config: &'a KernelConfig,
    log: Vec<AccessRecord>,
    /// Folios whose PG_referenced the step read, in debug builds (checked against
    /// `System::referenced_readers`).
    referenced_reads: Vec<FolioId>,
    /// Under a weak memory model: the step's outcome (which store its first weak load reads,
    /// latest first), whether that load happened, and how many stores it could read.
    pub outcome: u32,
    weak_loaded: bool,
    pub weak_outcomes: u32,
}

/// The stepping thread's own data: no other thread's code reads it, so it needs no record. Its
/// status is not here: other threads read it (join, the scheduler), through [`Ctx`].
pub struct Local<'t> {
    pub pc: &'t mut u32,
    pub registers: &'t mut crate::shared::Shared<Vec<i64>>,
    pub stack: &'t mut Vec<crate::thread::Frame>,
    pub returned: &'t mut Option<i64>,
    pub pages: &'t mut crate::shared::Shared<Vec<crate::folio::Pfn>>,
    pub folio_list: &'t mut crate::shared::Shared<Vec<FolioId>>,
    pub writeback: &'t mut crate::shared::Shared<Vec<FolioId>>,
}

impl<'a> Ctx<'a> {
    pub fn new(k: &'a mut Kernel, effects: &'a mut Effects, thread: ThreadId, config: &'a KernelConfig) -> Self {
        Ctx {
            k,
            effects,
            thread,
            config,
            log: Vec::new(),
            referenced_reads: Vec::new(),
            outcome: 0,
            weak_loaded: false,
            weak_outcomes: 1,
        }
    }

    /// Ends the step: the folios whose PG_referenced it read (debug builds only).
    pub fn finish(self) -> Vec<FolioId> {
        self.referenced_reads
    }

    pub fn patched(&self, patch: Patch) -> bool {
        self.config.applies(patch)
    }

    pub fn recording(&self) -> bool {
        self.effects.record_events
    }

    /// Records the step's event; `detail` is only built when a trace is being recorded (it
    /// describes the state for the reader of a trace and decides nothing).
    pub fn event(&mut self, function: &'static str, label: &'static str, detail: impl FnOnce(&Kernel) -> String) {
        self.effects.labels.push((function, label));
        if self.effects.record_events {
            let detail = detail(self.k);
            // Only the stale loads are kept: a trace marks them, and a long trace of every
            // access would cost gigabytes (the fuzzer's 98,845-step trace took 1.7 GB).
            let mut accesses = std::mem::take(&mut self.log);
            accesses.retain(|access| access.stale);
            self.effects.events.push(Event { thread: self.thread, function, label, detail, accesses });
        }
    }

    fn note(&mut self, op: AccessOp, object: Option<Object>, ordering: Ordering) {
        if let Some(object) = object.filter(|_| self.effects.record_footprint) {
            match op {
                AccessOp::Load => self.effects.footprint.read(object.key()),
                AccessOp::Fence(_) => {}
                _ => {
                    self.effects.footprint.write(object.key());
                    // A store of a weak location moves where every later store stands in the
                    // memory order; any other store stands after it (access/weak.rs).
                    match (self.k.weak.is_some(), weak::is_weak(object)) {
                        (true, true) => self.effects.footprint.write(Object::MemoryOrder.key()),
                        (true, false) => self.effects.footprint.read(Object::MemoryOrder.key()),
                        (false, _) => {}
                    }
                }
            }
        }
        if self.effects.record_events {
            self.log.push(AccessRecord { op, object, ordering, stale: false });
        }
    }

    // ---- the one path of every value: load, store, read-modify-write -------------------------

    /// A load of a location.
    fn load<L: Location>(&mut self, location: L, ordering: Ordering) -> L::Value {
        self.load_with(location, ordering, true)
    }

    /// A load; `may_read_older` lets a weak model give it a store older than the latest (only
    /// for the objects access/weak.rs names).
    fn load_with<L: Location>(&mut self, location: L, ordering: Ordering, may_read_older: bool) -> L::Value {
        let object = location.object();
        self.note(AccessOp::Load, Some(object), ordering);
        let latest = location.get(self.k);
        let thread = self.thread as usize;
        let Some(memory) = self.k.weak.as_deref_mut() else { return latest };
        // The step's first weak load is its choice (see access/weak.rs); later ones read the
        // latest store.
        let candidate = match may_read_older && weak::is_weak(object) && !self.weak_loaded {
            true => {
                self.weak_loaded = true;
                let candidates = memory.candidates(thread, object, ordering);
                self.weak_outcomes = candidates.len() as u32;
                candidates.get(self.outcome as usize).copied()
            }
            false => None,
        };
        match memory.load(thread, object, ordering, candidate) {
            Some(older) => {
                if let Some(record) = self.log.last_mut() {
                    record.stale = true;
                }
                older.get::<L::Value>().expect("a weak location's value has its type")
            }
            None => latest,
        }
    }

    /// A store to a location.
    fn store<L: Location>(&mut self, location: L, value: L::Value, ordering: Ordering) {
        let object = location.object();
        self.note(AccessOp::Store, Some(object), ordering);
        if self.k.weak.is_some() {
            let old = location.get(self.k);
            let memory = self.k.weak.as_deref_mut().expect("checked");
            memory.store(self.thread as usize, AccessOp::Store, object, ordering, &old, &value);
        }
        location.set(self.k, value);
    }

    /// An access that reads and writes a location in one (an atomic RMW, a lock operation, or a
    /// store of part of it): `change` edits the value; an unchanged one is not written back,
    /// which no thread can tell apart and which saves copying shared state.
    fn modify<L: Location, R>(
        &mut self,
        op: AccessOp,
        location: L,
        ordering: Ordering,
        change: impl FnOnce(&mut L::Value) -> R,
    ) -> R {
        let object = location.object();
        self.note(op, Some(object), ordering);
        let old = location.get(self.k);
        let mut value = old.clone();
        let result = change(&mut value);
        let thread = self.thread as usize;
        if let Some(memory) = self.k.weak.as_deref_mut() {
            match value != old {
                true => memory.store(thread, op, object, ordering, &old, &value),
                false => memory.unchanged(thread, op, object, ordering),
            }
        }
        if value != old {
            location.set(self.k, value);
        }
        result
    }

    fn rmw<L: Location, R>(&mut self, location: L, ordering: Ordering, change: impl FnOnce(&mut L::Value) -> R) -> R {
        self.modify(AccessOp::ReadModifyWrite, location, ordering, change)
    }

    // ---- violations --------------------------------------------------------------------------

    /// Reports a violation (the first one of a step wins).
    pub fn violation(&mut self, violation: Violation) {
        if self.effects.violation.is_none() {
            self.effects.violation = Some(violation);
        }
    }

    /// dump_page() / mm/debug.c __dump_folio(): reads every field of the folio.
    pub fn folio_dump(&mut self, folio: FolioId) -> String {
        let nr = self.k.folio(folio).nr_pages();
        for object in folio_objects(folio, nr) {
            self.note(AccessOp::Load, Some(object), Ordering::Relaxed);
        }
        self.k.folio(folio).dump(folio)
    }

    /// A kernel assertion on a folio: `macro_name(text)` with the folio dumped.
    fn folio_assertion(&mut self, kind: ViolationKind, macro_name: &str, folio: FolioId, text: &str) {
        let dump = self.folio_dump(folio);
        self.violation(Violation { kind, message: format!("{macro_name}({text})"), dump: vec![dump] });
    }

    /// VM_BUG_ON_FOLIO(cond, folio): a kernel BUG with the folio dumped.
    pub fn vm_bug_on_folio(&mut self, condition: bool, folio: FolioId, text: &str) -> bool {
        if condition {
            self.folio_assertion(ViolationKind::KernelBug, "VM_BUG_ON_FOLIO", folio, text);
        }
        condition
    }

    /// VM_WARN_ON_FOLIO(cond, folio): a kernel warning with the folio dumped.
    pub fn vm_warn_on_folio(&mut self, condition: bool, folio: FolioId, text: &str) -> bool {
        if condition {
            self.folio_assertion(ViolationKind::KernelWarning, "VM_WARN_ON_FOLIO", folio, text);
        }
        condition
    }

    /// VM_WARN_ON_ONCE_FOLIO / WARN_ON_ONCE: a kernel warning.
    pub fn warn_on_folio(&mut self, condition: bool, folio: FolioId, text: &str) -> bool {
        if condition {
            self.folio_assertion(ViolationKind::KernelWarning, "WARN_ON_ONCE", folio, text);
        }
        condition
    }

    fn check_allocated(&mut self, folio: FolioId, what: &str) {
        if folio == ZERO_FOLIO {
            return;
        }
        if !self.load(Allocated(folio), Ordering::Relaxed) {
            let dump = self.folio_dump(folio);
            let message = format!("{what} of folio {folio} after it was freed");
            self.violation(Violation { kind: ViolationKind::UseAfterFree, message, dump: vec![dump] });
        }
    }

    // ---- the stepping thread -----------------------------------------------------------------

    /// The stepping thread's own registers, frames and lists (no other thread's).
    pub fn local(&mut self) -> Local<'_> {
        let t = self.k.thread_mut(self.thread);
        Local {
            pc: &mut t.pc,
            registers: &mut t.registers,
            stack: &mut t.stack,
            returned: &mut t.returned,
            pages: &mut t.pages,
            folio_list: &mut t.folio_list,
            writeback: &mut t.writeback,
        }
    }

    /// What the stepping thread's top frame waited for, recorded as read (the step's
    /// enabledness depended on it, even if it then returns early without taking it); None
    /// outside the kernel.
    pub fn top_frame_wait(&mut self) -> Option<crate::thread::Wait> {
        let wait = self.k.thread(self.thread).stack.last().map(|frame| frame.wait(self.k, self.thread))?;
        self.observe_wait(wait);
        Some(wait)
    }

    /// The whole state, for the model's own invariant check at a quiescent point (no thread in
    /// the kernel): None elsewhere. A check reads everything, so the step depends on every
    /// write. Whether the point is quiescent reads the other threads' stacks unrecorded: no
    /// kernel code reads them, and every final state is checked again in any case.
    pub fn quiescent_kernel(&mut self) -> Option<&Kernel> {
        if !self.k.threads.iter().all(|t| t.stack.is_empty()) {
            return None;
        }
        self.effects.footprint.read_everything();
        Some(self.k)
    }

    /// kernel/exit.c: do_exit() of the stepping thread (what join waits for).
    pub fn thread_exit(&mut self) {
        self.store(Status(self.thread), crate::thread::ThreadStatus::Done, Ordering::Release);
    }

    /// kernel/sched/core.c: wake_up_new_task(): `child` starts with `registers`, which it reads
    /// only once it runs (after the release of its status).
    pub fn wake_up_new_task(&mut self, child: ThreadId, registers: crate::shared::Shared<Vec<i64>>) {
        self.k.thread_mut(child).registers = registers;
        self.store(Status(child), crate::thread::ThreadStatus::Running, Ordering::Release);
        // The child starts after everything its parent did (clone() orders them).
        if let Some(memory) = self.k.weak.as_deref_mut() {
            memory.inherit(child as usize, self.thread as usize);
        }
    }

    /// Whether `thread` finished (join's read of its status).
    pub fn thread_status_load(&mut self, thread: ThreadId) -> crate::thread::ThreadStatus {
        self.load(Status(thread), Ordering::Acquire)
    }

    // ---- constants of the run ----------------------------------------------------------------

    /// The number of swap map slots (0 without a swap device); a constant of the device.
    pub fn swap_slots(&self) -> u32 {
        self.k.swap.swap_map.len() as u32
    }

    /// The mTHP orders anonymous faults may allocate (sysfs `enabled`); a constant of the run.
    pub fn anon_orders(&self) -> u32 {
        self.k.anon_orders
    }

    /// The number of mms; every mm exists from the start of the run.
    pub fn mm_count(&self) -> MmId {
        self.k.mms.len() as MmId
    }

    // ---- page tables -------------------------------------------------------------------------

    /// ptep_get(): READ_ONCE of the PTE (under the PTE lock, or the MMU's walk: under a weak
    /// model it reads the latest store, as the model has no TLB to be stale).
    pub fn pte_load(&mut self, mm: MmId, vpn: u64) -> Pte {
        self.load_with(PteEntry(mm, vpn), Ordering::Relaxed, false)
    }

    /// ptep_get_lockless() in GUP-fast: READ_ONCE of the PTE with no lock held; under a weak
    /// model it may read an older store (the reader rechecks).
    pub fn pte_load_lockless(&mut self, mm: MmId, vpn: u64) -> Pte {
        self.load(PteEntry(mm, vpn), Ordering::Relaxed)
    }

    /// set_pte_at(): WRITE_ONCE of the PTE. The first entry of a table is where the model's
    /// pte_alloc() happens: the PMD now points to a PTE table (pmd_none() changes).
    pub fn pte_store(&mut self, mm: MmId, vpn: u64, pte: Pte) {
        if !pte.is_none() {
            self.pte_alloc(mm, pte_table(vpn));
        }
        self.store(PteEntry(mm, vpn), pte, Ordering::Relaxed);
    }

    /// mm/memory.c: __pte_alloc(): pmd_populate() of an empty PMD (a table already there is
    /// left alone).
    fn pte_alloc(&mut self, mm: MmId, table: u64) {
        let pmd = self.load(PmdSlot(mm, table), Ordering::Relaxed);
        if !pmd.table {
            self.store(PmdSlot(mm, table), PmdEntry { table: true, ..pmd }, Ordering::Release);
        }
    }

    /// ptep_get_and_clear(): an exchange; relaxed on arm64 (x86's xchg is fully ordered, so the
    /// weaker ordering is the one to model).
    pub fn pte_get_and_clear(&mut self, mm: MmId, vpn: u64) -> Pte {
        self.rmw(PteEntry(mm, vpn), Ordering::Relaxed, |pte| std::mem::replace(pte, Pte::None))
    }

    /// The MMU setting the accessed/dirty bits of a present PTE (a locked RMW on x86).
    pub fn pte_hw_update(&mut self, mm: MmId, vpn: u64, pte: Pte) {
        self.rmw(PteEntry(mm, vpn), Ordering::Full, |old| *old = pte);
    }

    /// The PTEs that are not none in `[first_vpn, last_vpn)`, every PTE of the range read (a
    /// page table walk reads each entry, none or not).
    pub fn pte_entries(&mut self, mm: MmId, first_vpn: u64, last_vpn: u64) -> Vec<(u64, Pte)> {
        (first_vpn..last_vpn)
            .map(|vpn| (vpn, self.load(PteEntry(mm, vpn), Ordering::Relaxed)))
            .filter(|e| !e.1.is_none())
            .collect()
    }

    /// Every migration entry of every mm, as (pfn, mm, vpn, the entry), each read: the model's
    /// stand-in for the rmap walk of remove_migration_ptes(), which must find every entry
    /// naming a page. Only the migration entries are read, for only they decide the result: a
    /// migration entry is made only by a splitter (the stepping thread, under the anon_vma
    /// lock), moved by mremap (whose clear of the old one conflicts with its read here) or
    /// copied by fork (copy_nonpresent_pte(), which reads the parent's: the child's new copy is
    /// the one store this record misses). Reading every PTE instead would make the walk depend
    /// on the MMU's accessed and dirty bits, and bounding it by the VMAs on every VMA change,
    /// neither of which its result does (about twice the states of a THP split).
    pub fn every_migration_entry(&mut self) -> Vec<(crate::folio::Pfn, MmId, u64, Pte)> {
        let mut found = Vec::new();
        for mm in 0..self.mm_count() {
            let vpns: Vec<u64> = self.k.mms[mm as usize]
                .ptes
                .iter()
                .filter(|e| matches!(e.1, Pte::Migration { .. }))
                .map(|e| e.0)
                .collect();
            for vpn in vpns {
                if let pte @ Pte::Migration { pfn, .. } = self.pte_load(mm, vpn) {
                    found.push((pfn, mm, vpn, pte));
                }
            }
        }
        found
    }

    /// Every huge PMD of every mm, each read (as [`Ctx::every_pte_entry`], and for the same
    /// reason not the PMDs that are none: a huge PMD is only made for a new folio or moved, and
    /// a move clears the old one, which is read here).
    pub fn every_huge_pmd(&mut self) -> Vec<(MmId, u64, crate::pgtable::PresentPte)> {
        let slots: Vec<(MmId, u64)> = (0..self.mm_count())
            .flat_map(|mm| self.k.mms[mm as usize].pmds.iter().map(move |e| (mm, e.0)).collect::<Vec<_>>())
            .collect();
        slots.into_iter().filter_map(|(mm, index)| Some((mm, index, self.pmd_load(mm, index)?))).collect()
    }

    /// pmdp_get_lockless() / *pmd of a PMD that maps a THP.
    pub fn pmd_load(&mut self, mm: MmId, index: u64) -> Option<crate::pgtable::PresentPte> {
        self.load(PmdSlot(mm, index), Ordering::Relaxed).huge
    }

    /// set_pmd_at() / pmdp_huge_clear_flush() (None).
    pub fn pmd_store(&mut self, mm: MmId, index: u64, pmd: Option<crate::pgtable::PresentPte>) {
        self.modify(AccessOp::Store, PmdSlot(mm, index), Ordering::Relaxed, |entry| entry.huge = pmd);
    }

    /// pmd_none(): no huge PMD and no PTE table.
    pub fn pmd_none(&mut self, mm: MmId, index: u64) -> bool {
        self.load(PmdSlot(mm, index), Ordering::Relaxed) == PmdEntry::default()
    }

    /// The huge PMDs of the PMDs covering `[first_vpn, last_vpn)`, each huge one read. The
    /// caller holds `mmap_lock` for write, and only holders of `mmap_lock` make a huge PMD, so
    /// no step that could make one in the range is enabled: the PMDs that are none need not be
    /// read, and the walk costs the huge PMDs there are, not the range's length (the kernel's
    /// walk skips the empty upper levels too).
    pub fn huge_pmds(&mut self, mm: MmId, first_vpn: u64, last_vpn: u64) -> Vec<(u64, crate::pgtable::PresentPte)> {
        let per_table = crate::pgtable::PTRS_PER_PTE;
        let (first, last) = (first_vpn / per_table, last_vpn.div_ceil(per_table));
        let indexes: Vec<u64> =
            self.k.mms[mm as usize].pmds.iter().map(|e| e.0).filter(|index| (first..last).contains(index)).collect();
        indexes.into_iter().filter_map(|index| self.pmd_load(mm, index).map(|pmd| (index, pmd))).collect()
    }

    /// The PTEs that are not none in `[first_vpn, last_vpn)`, every PTE of each page table
    /// that exists read, for a caller holding `mmap_lock` for write over a range of any
    /// length: only holders of `mmap_lock` make a page table exist ([`Mm::populated_tables`]),
    /// so the tables that do not are skipped, as the kernel's walk skips none PMDs.
    ///
    /// [`Mm::populated_tables`]: crate::state::Mm::populated_tables
    pub fn pte_entries_write_locked(&mut self, mm: MmId, first_vpn: u64, last_vpn: u64) -> Vec<(u64, Pte)> {
        let per_table = crate::pgtable::PTRS_PER_PTE;
        let tables = self.k.mms[mm as usize].populated_tables(first_vpn, last_vpn);
        let mut entries = Vec::new();
        for table in tables {
            let (first, last) = ((table * per_table).max(first_vpn), ((table + 1) * per_table).min(last_vpn));
            entries.extend(self.pte_entries(mm, first, last));
        }
        entries
    }

    /// The first page in `[first_vpn, last_vpn)` whose page table exists, for a walk under
    /// `mmap_lock` for write that skips the tables that do not (as the kernel's walks skip
    /// none PMDs): only holders of `mmap_lock` make one exist, so none can appear while the
    /// step runs and the skipped entries need not be read.
    pub fn next_mapped_vpn_write_locked(&self, mm: MmId, first_vpn: u64, last_vpn: u64) -> Option<u64> {
        self.k.mms[mm as usize].next_mapped_vpn(first_vpn, last_vpn)
    }

    /// mm/memory.c: free_pgtables(): the PTE tables wholly inside `[start, end)` (addresses)
    /// go; each allocated one's PMD is read and cleared. Under `mmap_lock` for write, which
    /// every pte_alloc() holds at least for read, so the PMDs without a table need not be
    /// read: the cost is the tables there are, not the range's length.
    pub fn free_pgtables(&mut self, mm: MmId, start: u64, end: u64) {
        let table_bytes = crate::pgtable::PTRS_PER_PTE << crate::folio::PAGE_SHIFT;
        let tables = start.div_ceil(table_bytes)..end / table_bytes;
        let allocated: Vec<u64> =
            self.k.mms[mm as usize].pte_tables.iter().copied().filter(|index| tables.contains(index)).collect();
        for index in allocated {
            let pmd = self.load(PmdSlot(mm, index), Ordering::Relaxed);
            if pmd.table {
                self.store(PmdSlot(mm, index), PmdEntry { table: false, ..pmd }, Ordering::Relaxed);
            }
        }
    }

    // ---- locks -------------------------------------------------------------------------------

    pub fn ptl_available(k: &Kernel, mm: MmId, vpn: u64) -> bool {
        k.mms[mm as usize].ptl_owner(pte_table(vpn)).is_none()
    }

    /// pte_offset_map_lock(): spin_lock(ptl) of the table holding `vpn`.
    pub fn ptl_lock(&mut self, mm: MmId, vpn: u64) {
        let thread = self.thread;
        self.modify(AccessOp::Lock, PteLockWord(mm, pte_table(vpn)), Ordering::Acquire, |owner| {
            assert!(owner.is_none(), "ptl taken while held: the scheduler let a blocked thread run");
            *owner = Some(thread);
        });
    }

    /// pte_unmap_unlock(): spin_unlock(ptl).
    pub fn ptl_unlock(&mut self, mm: MmId, vpn: u64) {
        let thread = self.thread;
        self.modify(AccessOp::Unlock, PteLockWord(mm, pte_table(vpn)), Ordering::Release, |owner| {
            if *owner == Some(thread) {
                *owner = None;
            }
        });
    }

    pub fn mmap_read_available(k: &Kernel, mm: MmId) -> bool {
        k.mms[mm as usize].mmap_lock.writer.is_none()
    }

    pub fn mmap_write_available(k: &Kernel, mm: MmId) -> bool {
        let lock = k.mms[mm as usize].mmap_lock;
        lock.writer.is_none() && lock.readers == 0
    }

    /// mmap_read_lock() / mmap_read_unlock().
    pub fn mmap_read_lock(&mut self, mm: MmId) {
        self.modify(AccessOp::Lock, MmapLockWord(mm), Ordering::Acquire, |sem| sem.readers += 1);
    }

    pub fn mmap_read_unlock(&mut self, mm: MmId) {
        self.modify(AccessOp::Unlock, MmapLockWord(mm), Ordering::Release, |sem| sem.readers -= 1);
    }

    /// mmap_write_lock() / mmap_write_unlock().
    pub fn mmap_write_lock(&mut self, mm: MmId) {
        let thread = self.thread;
        self.modify(AccessOp::Lock, MmapLockWord(mm), Ordering::Acquire, |sem| sem.writer = Some(thread));
    }

    pub fn mmap_write_unlock(&mut self, mm: MmId) {
        self.modify(AccessOp::Unlock, MmapLockWord(mm), Ordering::Release, |sem| sem.writer = None);
    }

    pub fn anon_vma_read_available(k: &Kernel, anon_vma: AnonVmaId) -> bool {
        k.anon_vmas[anon_vma as usize].rwsem.writer.is_none()
    }

    /// anon_vma_lock_read() / anon_vma_unlock_read().
    pub fn anon_vma_lock_read(&mut self, anon_vma: AnonVmaId) {
        self.modify(AccessOp::Lock, AnonVmaLockWord(anon_vma), Ordering::Acquire, |sem| sem.readers += 1);
    }

    /// down_read_trylock(): fails while a writer holds the rwsem.
    pub fn anon_vma_trylock_read(&mut self, anon_vma: AnonVmaId) -> bool {
        self.modify(AccessOp::Lock, AnonVmaLockWord(anon_vma), Ordering::Acquire, |sem| {
            let free = sem.writer.is_none();
            if free {
                sem.readers += 1;
            }
            free
        })
    }

    pub fn anon_vma_unlock_read(&mut self, anon_vma: AnonVmaId) {
        self.modify(AccessOp::Unlock, AnonVmaLockWord(anon_vma), Ordering::Release, |sem| sem.readers -= 1);
    }

    pub fn anon_vma_write_available(k: &Kernel, anon_vma: AnonVmaId) -> bool {
        let rwsem = k.anon_vmas[anon_vma as usize].rwsem;
        rwsem.writer.is_none() && rwsem.readers == 0
    }

    /// anon_vma_lock_write() / anon_vma_unlock_write().
    pub fn anon_vma_lock_write(&mut self, anon_vma: AnonVmaId) {
        let thread = self.thread;
        self.modify(AccessOp::Lock, AnonVmaLockWord(anon_vma), Ordering::Acquire, |sem| sem.writer = Some(thread));
    }

    /// anon_vma_trylock_write(): fails while anyone holds the rwsem.
    pub fn anon_vma_trylock_write(&mut self, anon_vma: AnonVmaId) -> bool {
        let thread = self.thread;
        self.modify(AccessOp::Lock, AnonVmaLockWord(anon_vma), Ordering::Acquire, |sem| {
            let free = sem.writer.is_none() && sem.readers == 0;
            if free {
                sem.writer = Some(thread);
            }
            free
        })
    }

    pub fn anon_vma_unlock_write(&mut self, anon_vma: AnonVmaId) {
        self.modify(AccessOp::Unlock, AnonVmaLockWord(anon_vma), Ordering::Release, |sem| sem.writer = None);
    }

    pub fn lru_lock_available(k: &Kernel) -> bool {
        k.lruvec.lru_lock.owner.is_none()
    }

    /// spin_lock_irq(&lruvec->lru_lock) / spin_unlock_irq().
    pub fn lru_lock(&mut self) {
        let thread = self.thread;
        self.modify(AccessOp::Lock, LruLockWord(), Ordering::Acquire, |owner| *owner = Some(thread));
    }

    pub fn lru_unlock(&mut self) {
        self.modify(AccessOp::Unlock, LruLockWord(), Ordering::Release, |owner| *owner = None);
    }

    /// A fence: under sequential consistency it orders nothing more, but it is its own step so
    /// that a weak-memory explorer can give it meaning.
    pub fn fence(&mut self, fence: Fence) {
        self.note(AccessOp::Fence(fence), None, Ordering::Full);
        if let Some(memory) = self.k.weak.as_deref_mut() {
            memory.fence_primitive(self.thread as usize, weak::primitive(AccessOp::Fence(fence), Ordering::Full));
        }
    }

    // ---- folio fields ------------------------------------------------------------------------

    /// folio_ref_count(): atomic_read.
    pub fn ref_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_ref_count");
        self.load(Refcount(folio), Ordering::Relaxed)
    }

    /// folio_ref_add() (relaxed) and the value-returning variants (full): returns the new value.
    pub fn ref_add(&mut self, folio: FolioId, delta: i32, ordering: Ordering) -> i32 {
        self.check_allocated(folio, "folio_ref_add");
        self.rmw(Refcount(folio), ordering, |count| add(count, delta))
    }

    /// atomic_add(delta, &folio->_pincount) (large folios only): returns the new value.
    pub fn pincount_add(&mut self, folio: FolioId, delta: i32, ordering: Ordering) -> i32 {
        self.check_allocated(folio, "folio->_pincount");
        self.rmw(Pincount(folio), ordering, |count| add(count, delta))
    }

    pub fn pincount_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_maybe_dma_pinned");
        self.load(Pincount(folio), Ordering::Relaxed)
    }

    /// folio_ref_add_unless(folio, nr, 0) / folio_try_get(): fails on a frozen or freed folio.
    pub fn ref_add_unless_zero(&mut self, folio: FolioId, delta: i32) -> bool {
        self.rmw(Refcount(folio), Ordering::Full, |count| {
            let live = *count != 0;
            if live {
                *count += delta;
            }
            live
        })
    }

    /// folio_ref_freeze(): atomic_cmpxchg(&refcount, count, 0) == count.
    pub fn ref_freeze(&mut self, folio: FolioId, count: i32) -> bool {
        self.check_allocated(folio, "folio_ref_freeze");
        self.rmw(Refcount(folio), Ordering::Full, |value| {
            let frozen = *value == count;
            if frozen {
                *value = 0;
            }
            frozen
        })
    }

    /// folio_ref_unfreeze(): atomic_set_release.
    pub fn ref_unfreeze(&mut self, folio: FolioId, count: i32) {
        let old =
            self.modify(AccessOp::Store, Refcount(folio), Ordering::Release, |value| std::mem::replace(value, count));
        self.vm_bug_on_folio(old != 0, folio, "folio_ref_count(folio) != 0");
    }

    /// folio_mapcount() for the whole folio (reads every page's `_mapcount` and the entire one).
    pub fn mapcount_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_mapcount");
        let nr = self.folio_nr_pages(folio);
        let pages: i32 = (0..nr).map(|page| self.load(PageMapcount(folio, page), Ordering::Relaxed)).sum();
        pages + self.load(EntireMapcount(folio), Ordering::Relaxed)
    }

    /// atomic_read() of one page's `_mapcount` (plus one): folio_precise_page_mapcount().
    pub fn page_mapcount_load(&mut self, folio: FolioId, page: usize) -> i32 {
        self.check_allocated(folio, "page_mapcount");
        self.load(PageMapcount(folio, page), Ordering::Relaxed)
    }

    /// atomic_inc/dec of a page's `_mapcount` (full: atomic_inc_and_test/add_negative return).
    pub fn page_mapcount_add(&mut self, folio: FolioId, page: usize, delta: i32) -> i32 {
        self.check_allocated(folio, "_mapcount update");
        self.rmw(PageMapcount(folio, page), Ordering::Full, |count| add(count, delta))
    }

    /// folio_entire_mapcount(): atomic_read(&folio->_entire_mapcount) (plus one).
    pub fn entire_mapcount_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_entire_mapcount");
        self.load(EntireMapcount(folio), Ordering::Relaxed)
    }

    /// atomic_add of `_entire_mapcount` (PMD mappings of a large folio).
    pub fn entire_mapcount_add(&mut self, folio: FolioId, delta: i32) -> i32 {
        self.check_allocated(folio, "_entire_mapcount update");
        self.rmw(EntireMapcount(folio), Ordering::Full, |count| add(count, delta))
    }

    /// folio_test_*(): test_bit.
    pub fn flag_test(&mut self, folio: FolioId, flag: PageFlag) -> bool {
        self.check_allocated(folio, flag.name());
        self.note_flag_read(folio, flag);
        self.load(FlagBit(folio, flag), Ordering::Relaxed)
    }

    fn note_flag_read(&mut self, folio: FolioId, flag: PageFlag) {
        if cfg!(debug_assertions) && flag == PageFlag::Referenced {
            self.referenced_reads.push(folio);
        }
    }

    /// folio_set_*() / folio_clear_*(): set_bit / clear_bit (atomic, unordered).
    pub fn flag_store(&mut self, folio: FolioId, flag: PageFlag, value: bool) {
        self.check_allocated(folio, flag.name());
        self.rmw(FlagBit(folio, flag), Ordering::Relaxed, |bit| *bit = value);
    }

    /// folio_test_set_*() / folio_test_clear_*(): test_and_set_bit (fully ordered); returns the
    /// old value.
    pub fn flag_test_and_store(&mut self, folio: FolioId, flag: PageFlag, value: bool) -> bool {
        self.check_allocated(folio, flag.name());
        self.note_flag_read(folio, flag);
        self.rmw(FlagBit(folio, flag), Ordering::Full, |bit| std::mem::replace(bit, value))
    }

    /// folio->mapping and folio->index (written before the folio is visible; read under locks).
    pub fn mapping_load(&mut self, folio: FolioId) -> (crate::folio::Mapping, u64) {
        self.check_allocated(folio, "folio->mapping");
        self.load(MappingIndex(folio), Ordering::Relaxed)
    }

    pub fn mapping_store(&mut self, folio: FolioId, mapping: crate::folio::Mapping, index: u64) {
        self.store(MappingIndex(folio), (mapping, index), Ordering::Relaxed);
    }

    /// SetPageAnonExclusive() / ClearPageAnonExclusive() of one page.
    pub fn anon_exclusive_store(&mut self, folio: FolioId, page: usize, value: bool) {
        self.store(AnonExclusive(folio, page), value, Ordering::Relaxed);
    }

    /// PageAnonExclusive() of one page.
    pub fn anon_exclusive_load(&mut self, folio: FolioId, page: usize) -> bool {
        self.load(AnonExclusive(folio, page), Ordering::Relaxed)
    }

    /// include/linux/mm.h: folio_order(): the order in the head page, which a split clears.
    pub fn folio_order(&mut self, folio: FolioId) -> u8 {
        self.load(FolioOrder(folio), Ordering::Relaxed)
    }

    /// include/linux/mm.h: folio_nr_pages().
    pub fn folio_nr_pages(&mut self, folio: FolioId) -> usize {
        1 << self.folio_order(folio)
    }

    /// include/linux/page-flags.h: folio_test_large().
    pub fn folio_test_large(&mut self, folio: FolioId) -> bool {
        self.folio_order(folio) > 0
    }

    /// Page contents: the bytes a CPU or a device reads and writes.
    pub fn data_load(&mut self, folio: FolioId, page: usize) -> crate::folio::PageData {
        self.check_allocated(folio, "read");
        self.load(PageBytes(folio, page), Ordering::Relaxed)
    }

    pub fn data_fill(&mut self, folio: FolioId, page: usize, start: usize, len: usize, byte: u8) {
        self.check_allocated(folio, "write");
        self.modify(AccessOp::Store, PageBytes(folio, page), Ordering::Relaxed, |data| data.fill(start, len, byte));
    }

    pub fn data_store(&mut self, folio: FolioId, page: usize, data: crate::folio::PageData) {
        self.check_allocated(folio, "write");
        self.store(PageBytes(folio, page), data, Ordering::Relaxed);
    }

    // ---- allocator ---------------------------------------------------------------------------

    /// The page allocator: a new folio with refcount 1 (mm/page_alloc.c: __alloc_pages()).
    /// Allocation makes new locations rather than storing to old ones.
    pub fn alloc_folio(&mut self, order: u8) -> FolioId {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Allocator), Ordering::Full);
        self.k.folios.push(Folio::new(order));
        (self.k.folios.len() - 1) as FolioId
    }

    /// The folios allocated so far: how far a walk of every pfn up to max_pfn finds memory
    /// (the allocator's numbering).
    pub fn folio_count(&mut self) -> FolioId {
        self.note(AccessOp::Load, Some(Object::Allocator), Ordering::Relaxed);
        self.k.folios.len() as FolioId
    }

    /// Back to the allocator (mm/page_alloc.c: free_unref_folios()): every location of the folio
    /// is stored its initial value, for a freed folio's old contents can never be read again
    /// (an access to it is a use-after-free report) and states differing only there are one.
    /// Folio numbers are never reused, so freeing does not touch the allocator's numbering
    /// (the `Allocator` object): it commutes with allocations.
    pub fn free_folio(&mut self, folio: FolioId) {
        let fresh = Folio::new(self.folio_order(folio));
        let relaxed = Ordering::Relaxed;
        self.store(Refcount(folio), 0, relaxed);
        self.store(MappingIndex(folio), (fresh.mapping, fresh.index), relaxed);
        self.store(Allocated(folio), false, relaxed);
        self.store(EntireMapcount(folio), fresh.entire_mapcount, relaxed);
        self.store(Pincount(folio), fresh.pincount, relaxed);
        self.store(FolioSwapEntry(folio), fresh.swap, relaxed);
        for (page, initial) in fresh.pages.iter().enumerate() {
            self.store(PageMapcount(folio, page), initial.mapcount, relaxed);
            self.store(AnonExclusive(folio, page), initial.anon_exclusive, relaxed);
            self.store(PageBytes(folio, page), initial.data.clone(), relaxed);
        }
        for flag in PageFlag::ALL {
            self.store(FlagBit(folio, flag), fresh.test(flag), relaxed);
        }
        debug_assert_eq!(*self.k.folio(folio), Folio { allocated: false, refcount: 0, ..fresh });
    }

    // ---- LRU ---------------------------------------------------------------------------------

    /// include/linux/mm_inline.h: list_add() of a folio on an LRU list (under lru_lock).
    pub fn lru_add(&mut self, folio: FolioId, list: crate::folio::LruList) {
        self.rmw(LruFolios(), Ordering::Relaxed, |folios| folios.push((folio, list)));
    }

    /// include/linux/mm_inline.h: list_del() of a folio from its LRU list (under lru_lock).
    pub fn lru_del(&mut self, folio: FolioId) {
        self.rmw(LruFolios(), Ordering::Relaxed, |folios| folios.retain(|entry| entry.0 != folio));
    }

    /// The folios on the LRU lists, oldest first (a walk under lru_lock).
    pub fn lru_folios(&mut self) -> Vec<FolioId> {
        self.load(LruFolios(), Ordering::Relaxed).iter().map(|entry| entry.0).collect()
    }

    /// mm/swap.c: folio_batch_add() to the lru_lazyfree batch (local_lock'ed per CPU): returns
    /// the folios now in it.
    pub fn lazyfree_add(&mut self, folio: FolioId) -> usize {
        self.rmw(LazyfreeFolios(), Ordering::Relaxed, |batch| {
            batch.make_mut().push(folio);
            batch.len()
        })
    }

    /// mm/swap.c: folio_batch_move_lru() takes the whole lru_lazyfree batch (reinit'ed empty).
    pub fn lazyfree_take(&mut self) -> Vec<FolioId> {
        self.rmw(LazyfreeFolios(), Ordering::Relaxed, |batch| std::mem::take(batch).to_vec())
    }

    // ---- VMAs --------------------------------------------------------------------------------

    /// The VMAs of an mm in address order (a walk of the VMA tree).
    pub fn vmas(&mut self, mm: MmId) -> crate::shared::Shared<Vec<crate::state::Vma>> {
        self.load(VmaList(mm), Ordering::Relaxed).vmas
    }

    /// include/linux/mm.h: vma_lookup(): the VMA containing `address`.
    pub fn vma_lookup(&mut self, mm: MmId, address: u64) -> Option<crate::state::Vma> {
        self.vmas(mm).iter().find(|v| v.contains(address)).cloned()
    }

    /// A store to the VMA tree (under mmap_write_lock); returns what `change` returns.
    fn vmas_change<R>(&mut self, mm: MmId, change: impl FnOnce(&mut Vec<crate::state::Vma>) -> R) -> R {
        self.modify(AccessOp::Store, VmaList(mm), Ordering::Relaxed, |tree| change(tree.vmas.make_mut()))
    }

    /// mm/vma.c: vma_link(): a new VMA enters the tree.
    pub fn vma_insert(&mut self, mm: MmId, vma: crate::state::Vma) {
        self.vmas_change(mm, |vmas| {
            vmas.push(vma);
            vmas.sort_by_key(|v| v.start);
        });
    }

    /// mm/vma.c: do_vmi_align_munmap(): the VMAs in `[start, end)` go, those across its ends
    /// split there.
    pub fn vma_remove_range(&mut self, mm: MmId, start: u64, end: u64) {
        self.vmas_change(mm, |vmas| crate::mm::mmap::remove_vma_range(vmas, start, end));
    }

    /// mm/vma.c: vma_modify(): the VMAs in `[start, end)`, split at its ends, each changed.
    pub fn vma_modify(&mut self, mm: MmId, start: u64, end: u64, change: impl Fn(&mut crate::state::Vma)) {
        self.vmas_change(mm, |vmas| *vmas = crate::mm::mmap::vma_modify(vmas, start, end, change));
    }

    /// A change of the VMA containing `address` in place (vm_flags_set(), vma->vm_end of an
    /// expanded VMA, ...); None without such a VMA.
    pub fn vma_update<R>(
        &mut self,
        mm: MmId,
        address: u64,
        change: impl FnOnce(&mut crate::state::Vma) -> R,
    ) -> Option<R> {
        self.vmas_change(mm, |vmas| vmas.iter_mut().find(|v| v.contains(address)).map(change))
    }

    /// mm/mmap.c: get_unmapped_area() for `length` bytes aligned to `align`: where the model
    /// puts the next mapping (above the last one).
    pub fn get_unmapped_area(&mut self, mm: MmId, length: u64, align: u64) -> u64 {
        self.modify(AccessOp::ReadModifyWrite, VmaList(mm), Ordering::Relaxed, |tree| {
            let start = tree.mmap_next.max(crate::mm::mmap::MMAP_BASE).div_ceil(align) * align;
            tree.mmap_next = start + length + crate::folio::PAGE_SIZE;
            start
        })
    }

    /// kernel/fork.c: dup_mmap(): the child's VMA tree becomes `vmas`, with the parent's base
    /// for the next mapping.
    pub fn dup_mmap_vmas(&mut self, parent: MmId, child: MmId, vmas: Vec<crate::state::Vma>) {
        let mmap_next = self.load(VmaList(parent), Ordering::Relaxed).mmap_next;
        self.modify(AccessOp::Store, VmaList(child), Ordering::Relaxed, |tree| {
            (tree.vmas, tree.mmap_next) = (crate::shared::Shared::new(vmas), mmap_next);
        });
    }

    /// mm/mmap.c: exit_mmap(): every VMA and every PTE table goes (the tables are the ones
    /// populated: storing "none" to an empty PMD would change nothing), and the mm is gone.
    pub fn exit_mmap_teardown(&mut self, mm: MmId) {
        let tables = self.k.mms[mm as usize].pte_tables.clone();
        for &index in tables.iter() {
            self.modify(AccessOp::Store, PmdSlot(mm, index), Ordering::Relaxed, |pmd| pmd.table = false);
        }
        self.modify(AccessOp::Store, VmaList(mm), Ordering::Relaxed, |tree| {
            tree.vmas.make_mut().clear();
            tree.exited = true;
        });
    }

    // ---- mm-wide state -----------------------------------------------------------------------

    /// add_mm_counter(): percpu counters, unordered.
    pub fn rss_add(&mut self, mm: MmId, anon: bool, delta: i64) {
        self.rss_counter_add(mm, if anon { MM_ANONPAGES } else { MM_FILEPAGES }, delta);
    }

    /// add_mm_counter(mm, MM_SWAPENTS, delta).
    pub fn rss_swap_add(&mut self, mm: MmId, delta: i64) {
        self.rss_counter_add(mm, MM_SWAPENTS, delta);
    }

    fn rss_counter_add(&mut self, mm: MmId, counter: usize, delta: i64) {
        self.rmw(RssCounters(mm), Ordering::Relaxed, |rss| rss[counter] += delta);
    }

    pub fn anon_vma_mms(&mut self, anon_vma: AnonVmaId) -> Vec<MmId> {
        self.load(AnonVmaChain(anon_vma), Ordering::Relaxed)
    }

    /// anon_vma_fork(): the child's VMAs join the anon_vma's chain.
    pub fn anon_vma_add_mm(&mut self, anon_vma: AnonVmaId, mm: MmId) {
        self.modify(AccessOp::Store, AnonVmaChain(anon_vma), Ordering::Relaxed, |mms| {
            if !mms.contains(&mm) {
                mms.push(mm);
            }
        });
    }

    /// mm/rmap.c: anon_vma_alloc() (the chain starting with `mm`); a new object, as a folio is.
    pub fn anon_vma_new(&mut self, mm: MmId) -> AnonVmaId {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Allocator), Ordering::Full);
        self.k
            .anon_vmas
            .push(crate::shared::Shared::new(crate::state::AnonVma { mms: vec![mm], rwsem: Default::default() }));
        (self.k.anon_vmas.len() - 1) as AnonVmaId
    }

    pub fn file_block(&mut self, file: FileId, block: u64) -> Option<crate::folio::PageData> {
        self.load(FileBlocks(file), Ordering::Relaxed).get(block).cloned()
    }

    /// i_size_read(), in pages.
    pub fn file_size_pages(&mut self, file: FileId) -> u64 {
        self.load(FileBlocks(file), Ordering::Acquire).len()
    }

    /// i_size_write() of a shrinking truncation: the blocks beyond `pages` go.
    pub fn file_truncate(&mut self, file: FileId, pages: u64) {
        self.modify(AccessOp::Store, FileBlocks(file), Ordering::Release, |blocks| blocks.truncate(pages));
    }

    /// mm/filemap.c: the xa_load() of filemap_get_entry() (lockless under RCU).
    pub fn page_cache_load(&mut self, file: FileId, index: u64) -> Option<FolioId> {
        self.load(PageCacheSlot(file, index), Ordering::Acquire)
    }

    /// xa_store() under xa_lock_irq(&mapping->i_pages).
    pub fn page_cache_store(&mut self, file: FileId, index: u64, folio: Option<FolioId>) {
        self.store(PageCacheSlot(file, index), folio, Ordering::Release);
    }

    /// Records the lock a step waited for (a step's enabledness read it).
    fn observe_wait(&mut self, wait: crate::thread::Wait) {
        use crate::thread::Wait;
        let object = match wait {
            Wait::Nothing => return,
            Wait::MmapRead(mm) | Wait::MmapWrite(mm) => Object::MmapLock(mm),
            Wait::PteLock(mm, vpn) => Object::PteLock(mm, pte_table(vpn)),
            Wait::PtePopulated(mm, vpn) => Object::Pte(mm, vpn),
            Wait::UffdMessage(uffd) => Object::Uffd(uffd),
            Wait::PteLocks((mm_a, a), (mm_b, b)) => {
                self.note(AccessOp::Load, Some(Object::PteLock(mm_b, pte_table(b))), Ordering::Acquire);
                Object::PteLock(mm_a, pte_table(a))
            }
            Wait::AnonVmaRead(anon_vma) | Wait::AnonVmaWrite(anon_vma) => Object::AnonVmaLock(anon_vma),
            Wait::FolioLock(folio) => Object::FolioFlag(folio, PageFlag::Locked),
        };
        self.note(AccessOp::Load, Some(object), Ordering::Acquire);
    }

    // ---- huge pages ----------------------------------------------------------------------------

    /// ClearPageCompound(head): the folio is order 0 from now on (its tails were split off).
    pub fn clear_page_compound(&mut self, folio: FolioId) {
        self.store(FolioOrder(folio), 0, Ordering::Release);
    }

    /// compound_head() of a page by pfn: READ_ONCE(page->compound_head) (and PG_head).
    pub fn page_folio_load(&mut self, pfn: crate::folio::Pfn) -> (FolioId, usize) {
        self.load(CompoundHead(pfn), Ordering::Relaxed)
    }

    /// clear_compound_head(): the page at `pfn` is now the folio `folio`.
    pub fn clear_compound_head(&mut self, pfn: crate::folio::Pfn, folio: FolioId) {
        self.store(CompoundHead(pfn), (folio, 0), Ordering::Release);
    }

    /// mm/huge_memory.c: READ_ONCE(huge_zero_folio) (None before its first use).
    pub fn huge_zero_folio_load(&mut self) -> Option<FolioId> {
        self.load(HugeZeroFolioPointer(), Ordering::Acquire)
    }

    /// mm/huge_memory.c: get_huge_zero_folio()'s cmpxchg of `huge_zero_folio` from NULL.
    pub fn huge_zero_folio_store(&mut self, folio: FolioId) {
        self.store(HugeZeroFolioPointer(), Some(folio), Ordering::Release);
    }

    // ---- swap ----------------------------------------------------------------------------------

    pub fn folio_swap_load(&mut self, folio: FolioId) -> Option<u32> {
        self.check_allocated(folio, "folio->swap read");
        self.load(FolioSwapEntry(folio), Ordering::Relaxed)
    }

    pub fn folio_swap_store(&mut self, folio: FolioId, entry: Option<u32>) {
        self.check_allocated(folio, "folio->swap write");
        self.store(FolioSwapEntry(folio), entry, Ordering::Relaxed);
    }

    /// READ_ONCE(si->swap_map[offset]).
    pub fn swap_map_load(&mut self, offset: u32) -> u8 {
        self.load(SwapMapCount(offset), Ordering::Relaxed)
    }

    /// WRITE_ONCE(si->swap_map[offset]) under the swap cluster lock.
    pub fn swap_map_store(&mut self, offset: u32, value: u8) {
        self.store(SwapMapCount(offset), value, Ordering::Relaxed);
    }

    /// xa_load() of the swap cache (lockless under RCU).
    pub fn swap_cache_load(&mut self, offset: u32) -> Option<FolioId> {
        self.load(SwapCacheSlot(offset), Ordering::Acquire)
    }

    /// xa_store() under xa_lock_irq(i_pages).
    pub fn swap_cache_store(&mut self, offset: u32, folio: Option<FolioId>) {
        self.store(SwapCacheSlot(offset), folio, Ordering::Release);
    }

    /// The device reading a slot (swap_read_folio()).
    pub fn swap_data_load(&mut self, offset: u32) -> crate::folio::PageData {
        self.load(SwapSlotData(offset), Ordering::Relaxed)
    }

    /// The device writing a slot (swap_writepage()).
    pub fn swap_data_store(&mut self, offset: u32, data: crate::folio::PageData) {
        self.store(SwapSlotData(offset), data, Ordering::Relaxed);
    }

    // ---- userfaultfd, scenario events ----------------------------------------------------------

    pub fn uffd_load(&mut self, uffd: u32) -> Option<crate::state::Userfaultfd> {
        self.load(UffdContext(uffd), Ordering::Relaxed)
    }

    pub fn uffd_store(&mut self, uffd: u32, value: crate::state::Userfaultfd) {
        self.store(UffdContext(uffd), Some(value), Ordering::Relaxed);
    }

    /// fs/userfaultfd.c: new_userfaultfd(): the next context, its slot read empty (two threads
    /// making one at once claim the same slot, so their stores conflict).
    pub fn uffd_new(&mut self, value: crate::state::Userfaultfd) -> u32 {
        let uffd = self.k.uffds.len() as u32;
        let existing = self.load(UffdContext(uffd), Ordering::Relaxed);
        debug_assert!(existing.is_none());
        self.uffd_store(uffd, value);
        uffd
    }

    pub fn event_store(&mut self, event: u8) {
        self.store(ScenarioEventBit(event), true, Ordering::Release);
    }

    pub fn event_load(&mut self, event: u8) -> bool {
        self.load(ScenarioEventBit(event), Ordering::Acquire)
    }
}

fn add(count: &mut i32, delta: i32) -> i32 {
    *count += delta;
    *count
}

/// Every object of a folio of `nr_pages` pages.
fn folio_objects(folio: FolioId, nr_pages: usize) -> impl Iterator<Item = Object> {
    let whole = [
        Object::FolioRefcount(folio),
        Object::FolioMapping(folio),
        Object::FolioAllocated(folio),
        Object::EntireMapcount(folio),
        Object::FolioPincount(folio),
        Object::FolioSwap(folio),
        Object::PageCompound(crate::folio::folio_pfn(folio, 0)),
    ];
    let pages = (0..nr_pages as u16).flat_map(move |page| {
        [Object::PageMapcount(folio, page), Object::PageAnonExclusive(folio, page), Object::FolioData(folio, page)]
    });
    let flags = PageFlag::ALL.into_iter().map(move |flag| Object::FolioFlag(folio, flag));
    whole.into_iter().chain(pages).chain(flags)
}
