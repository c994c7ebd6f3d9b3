//! Every access of kernel code to shared state goes through [`Ctx`]: an explicit load, store,
//! atomic read-modify-write, lock operation or fence, with its memory ordering. Each access is
//! recorded in the step's footprint (for partial-order reduction) and, when a trace is being
//! recorded, in the access log (for the trace today and weak-memory exploration later).
//!
//! Architecture invariant: kernel code never reads or writes [`Kernel`] fields that another
//! thread can see except through these methods. Thread-local data (a thread's registers and
//! frames) is free.

use crate::folio::{Folio, FolioId, PageFlag, ZERO_FOLIO};
use crate::patches::{KernelConfig, Patch};
use crate::pgtable::{pte_table, Pte};
use crate::state::{AnonVmaId, FileId, Kernel, MmId, ThreadId};
use crate::violation::{Violation, ViolationKind};
use mmcheck_explorer::StepEffects;
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

/// A shared object, as footprints name it. Finer objects mean more independence: the refcount,
/// the mapcount, each flag bit and each page's bytes of a folio are separate objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Object {
    Pte(MmId, u64),
    PteLock(MmId, u64),
    MmapLock(MmId),
    Vmas(MmId),
    Rss(MmId),
    FolioRefcount(FolioId),
    FolioMapcount(FolioId),
    FolioPincount(FolioId),
    FolioFlag(FolioId, PageFlag),
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
    /// A huge PMD (mm, pmd index).
    Pmd(MmId, u64),
    /// A page's compound state (PG_head / compound_head), by pfn.
    PageCompound(u64),
    /// The per-CPU lru_lazyfree folio batch.
    LazyfreeBatch,
    /// A file's page cache slot (`mapping->i_pages` at an index).
    PageCache(FileId, u64),
}

impl Object {
    /// A 64-bit key: 8 bits of kind, 24 of the first id, 32 of the second.
    pub fn key(self) -> u64 {
        let (kind, a, b): (u64, u64, u64) = match self {
            Object::Pte(mm, vpn) => (1, mm.into(), vpn),
            Object::PteLock(mm, table) => (2, mm.into(), table),
            Object::MmapLock(mm) => (3, mm.into(), 0),
            Object::Vmas(mm) => (4, mm.into(), 0),
            Object::Rss(mm) => (5, mm.into(), 0),
            Object::FolioRefcount(f) => (6, f.into(), 0),
            Object::FolioMapcount(f) => (7, f.into(), 0),
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
        };
        (kind << 56) | ((a & 0xff_ffff) << 32) | (b & 0xffff_ffff)
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
}

/// What a recorded step did, for traces: the thread, the kernel function and the step label (as
/// the kernel's code reads), what changed, and the accesses it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub thread: ThreadId,
    pub function: &'static str,
    pub label: &'static str,
    pub detail: String,
    pub accesses: Vec<AccessRecord>,
}

pub type Effects = StepEffects<Event, Violation>;

/// The context of one step of one thread.
pub struct Ctx<'a> {
    pub k: &'a mut Kernel,
    pub effects: &'a mut Effects,
    pub thread: ThreadId,
    pub config: &'a KernelConfig,
    log: Vec<AccessRecord>,
    /// Folios whose PG_referenced the step read, in debug builds (checked against
    /// `System::referenced_readers`).
    pub referenced_reads: Vec<FolioId>,
}

impl<'a> Ctx<'a> {
    pub fn new(k: &'a mut Kernel, effects: &'a mut Effects, thread: ThreadId, config: &'a KernelConfig) -> Self {
        Ctx { k, effects, thread, config, log: Vec::new(), referenced_reads: Vec::new() }
    }

    pub fn patched(&self, patch: Patch) -> bool {
        self.config.applies(patch)
    }

    pub fn recording(&self) -> bool {
        self.effects.record_events
    }

    /// Records the step's event; `detail` is only built when a trace is being recorded.
    pub fn event(&mut self, function: &'static str, label: &'static str, detail: impl FnOnce(&Kernel) -> String) {
        if self.effects.record_events {
            let detail = detail(self.k);
            let accesses = std::mem::take(&mut self.log);
            self.effects.events.push(Event { thread: self.thread, function, label, detail, accesses });
        }
    }

    fn note(&mut self, op: AccessOp, object: Option<Object>, ordering: Ordering) {
        if let Some(object) = object.filter(|_| self.effects.record_footprint) {
            match op {
                AccessOp::Load => self.effects.footprint.read(object.key()),
                AccessOp::Fence(_) => {}
                _ => self.effects.footprint.write(object.key()),
            }
        }
        if self.effects.record_events {
            self.log.push(AccessRecord { op, object, ordering });
        }
    }

    /// Reports a violation (the first one of a step wins).
    pub fn violation(&mut self, violation: Violation) {
        if self.effects.violation.is_none() {
            self.effects.violation = Some(violation);
        }
    }

    /// A kernel assertion on a folio: `macro_name(text)` with the folio dumped.
    fn folio_assertion(&mut self, kind: ViolationKind, macro_name: &str, folio: FolioId, text: &str) {
        let dump = self.k.folio(folio).dump(folio);
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
        self.note(AccessOp::Load, Some(Object::FolioAllocated(folio)), Ordering::Relaxed);
        if !self.k.folio(folio).allocated {
            let dump = self.k.folio(folio).dump(folio);
            let message = format!("{what} of folio {folio} after it was freed");
            self.violation(Violation { kind: ViolationKind::UseAfterFree, message, dump: vec![dump] });
        }
    }

    // ---- page tables -------------------------------------------------------------------------

    /// ptep_get() / ptep_get_lockless(): READ_ONCE of the PTE.
    pub fn pte_load(&mut self, mm: MmId, vpn: u64) -> Pte {
        self.note(AccessOp::Load, Some(Object::Pte(mm, vpn)), Ordering::Relaxed);
        self.k.mms[mm as usize].pte(vpn)
    }

    /// set_pte_at(): WRITE_ONCE of the PTE.
    pub fn pte_store(&mut self, mm: MmId, vpn: u64, pte: Pte) {
        self.note(AccessOp::Store, Some(Object::Pte(mm, vpn)), Ordering::Relaxed);
        let table = pte_table(vpn);
        if !pte.is_none() && self.k.mms[mm as usize].pte_tables.binary_search(&table).is_err() {
            // pte_alloc(): the PMD now points to a PTE table (pmd_none() changes).
            self.note(AccessOp::Store, Some(Object::Pmd(mm, table)), Ordering::Release);
        }
        self.k.mm_mut(mm).set_pte(vpn, pte);
    }

    /// ptep_get_and_clear(): an exchange; relaxed on arm64 (x86's xchg is fully ordered, so the
    /// weaker ordering is the one to model).
    pub fn pte_get_and_clear(&mut self, mm: MmId, vpn: u64) -> Pte {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Pte(mm, vpn)), Ordering::Relaxed);
        let old = self.k.mms[mm as usize].pte(vpn);
        self.k.mm_mut(mm).set_pte(vpn, Pte::None);
        old
    }

    /// The MMU setting the accessed/dirty bits of a present PTE (a locked RMW on x86).
    pub fn pte_hw_update(&mut self, mm: MmId, vpn: u64, pte: Pte) {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Pte(mm, vpn)), Ordering::Full);
        self.k.mm_mut(mm).set_pte(vpn, pte);
    }

    // ---- locks -------------------------------------------------------------------------------

    pub fn ptl_available(k: &Kernel, mm: MmId, vpn: u64) -> bool {
        k.mms[mm as usize].ptl_owner(pte_table(vpn)).is_none()
    }

    /// pte_offset_map_lock(): spin_lock(ptl) of the table holding `vpn`.
    pub fn ptl_lock(&mut self, mm: MmId, vpn: u64) {
        let table = pte_table(vpn);
        self.note(AccessOp::Lock, Some(Object::PteLock(mm, table)), Ordering::Acquire);
        let thread = self.thread;
        let held = &mut self.k.mm_mut(mm).ptl_held;
        assert!(held.iter().all(|e| e.0 != table), "ptl taken while held: the scheduler let a blocked thread run");
        held.push((table, thread));
        held.sort_unstable();
    }

    /// pte_unmap_unlock(): spin_unlock(ptl).
    pub fn ptl_unlock(&mut self, mm: MmId, vpn: u64) {
        let table = pte_table(vpn);
        self.note(AccessOp::Unlock, Some(Object::PteLock(mm, table)), Ordering::Release);
        let thread = self.thread;
        self.k.mm_mut(mm).ptl_held.retain(|e| !(e.0 == table && e.1 == thread));
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
        self.note(AccessOp::Lock, Some(Object::MmapLock(mm)), Ordering::Acquire);
        self.k.mm_mut(mm).mmap_lock.readers += 1;
    }

    pub fn mmap_read_unlock(&mut self, mm: MmId) {
        self.note(AccessOp::Unlock, Some(Object::MmapLock(mm)), Ordering::Release);
        self.k.mm_mut(mm).mmap_lock.readers -= 1;
    }

    /// mmap_write_lock() / mmap_write_unlock().
    pub fn mmap_write_lock(&mut self, mm: MmId) {
        self.note(AccessOp::Lock, Some(Object::MmapLock(mm)), Ordering::Acquire);
        self.k.mm_mut(mm).mmap_lock.writer = Some(self.thread);
    }

    pub fn mmap_write_unlock(&mut self, mm: MmId) {
        self.note(AccessOp::Unlock, Some(Object::MmapLock(mm)), Ordering::Release);
        self.k.mm_mut(mm).mmap_lock.writer = None;
    }

    pub fn anon_vma_read_available(k: &Kernel, anon_vma: AnonVmaId) -> bool {
        k.anon_vmas[anon_vma as usize].rwsem.writer.is_none()
    }

    /// anon_vma_lock_read() / anon_vma_unlock_read().
    pub fn anon_vma_lock_read(&mut self, anon_vma: AnonVmaId) {
        self.note(AccessOp::Lock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Acquire);
        self.k.anon_vma_mut(anon_vma).rwsem.readers += 1;
    }

    /// down_read_trylock(): fails while a writer holds the rwsem.
    pub fn anon_vma_trylock_read(&mut self, anon_vma: AnonVmaId) -> bool {
        self.note(AccessOp::Lock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Acquire);
        if self.k.anon_vmas[anon_vma as usize].rwsem.writer.is_some() {
            return false;
        }
        self.k.anon_vma_mut(anon_vma).rwsem.readers += 1;
        true
    }

    pub fn anon_vma_unlock_read(&mut self, anon_vma: AnonVmaId) {
        self.note(AccessOp::Unlock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Release);
        self.k.anon_vma_mut(anon_vma).rwsem.readers -= 1;
    }

    pub fn anon_vma_write_available(k: &Kernel, anon_vma: AnonVmaId) -> bool {
        let rwsem = k.anon_vmas[anon_vma as usize].rwsem;
        rwsem.writer.is_none() && rwsem.readers == 0
    }

    /// anon_vma_lock_write() / anon_vma_trylock_write() / anon_vma_unlock_write().
    pub fn anon_vma_lock_write(&mut self, anon_vma: AnonVmaId) {
        self.note(AccessOp::Lock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Acquire);
        let thread = self.thread;
        self.k.anon_vma_mut(anon_vma).rwsem.writer = Some(thread);
    }

    pub fn anon_vma_trylock_write(&mut self, anon_vma: AnonVmaId) -> bool {
        self.note(AccessOp::Lock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Acquire);
        if !Self::anon_vma_write_available(self.k, anon_vma) {
            return false;
        }
        let thread = self.thread;
        self.k.anon_vma_mut(anon_vma).rwsem.writer = Some(thread);
        true
    }

    pub fn anon_vma_unlock_write(&mut self, anon_vma: AnonVmaId) {
        self.note(AccessOp::Unlock, Some(Object::AnonVmaLock(anon_vma)), Ordering::Release);
        self.k.anon_vma_mut(anon_vma).rwsem.writer = None;
    }

    pub fn lru_lock_available(k: &Kernel) -> bool {
        k.lruvec.lru_lock.owner.is_none()
    }

    /// spin_lock_irq(&lruvec->lru_lock) / spin_unlock_irq().
    pub fn lru_lock(&mut self) {
        self.note(AccessOp::Lock, Some(Object::LruLock), Ordering::Acquire);
        self.k.lruvec.make_mut().lru_lock.owner = Some(self.thread);
    }

    pub fn lru_unlock(&mut self) {
        self.note(AccessOp::Unlock, Some(Object::LruLock), Ordering::Release);
        self.k.lruvec.make_mut().lru_lock.owner = None;
    }

    /// A fence: under sequential consistency it orders nothing more, but it is its own step so
    /// that a weak-memory explorer can give it meaning.
    pub fn fence(&mut self, fence: Fence) {
        self.note(AccessOp::Fence(fence), None, Ordering::Full);
    }

    // ---- folio fields ------------------------------------------------------------------------

    /// folio_ref_count(): atomic_read.
    pub fn ref_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_ref_count");
        self.note(AccessOp::Load, Some(Object::FolioRefcount(folio)), Ordering::Relaxed);
        self.k.folio(folio).refcount
    }

    /// folio_ref_add() (relaxed) and the value-returning variants (full): returns the new value.
    pub fn ref_add(&mut self, folio: FolioId, delta: i32, ordering: Ordering) -> i32 {
        self.check_allocated(folio, "folio_ref_add");
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioRefcount(folio)), ordering);
        let f = self.k.folio_mut(folio);
        f.refcount += delta;
        f.refcount
    }

    /// atomic_add(delta, &folio->_pincount) (large folios only): returns the new value.
    pub fn pincount_add(&mut self, folio: FolioId, delta: i32, ordering: Ordering) -> i32 {
        self.check_allocated(folio, "folio->_pincount");
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioPincount(folio)), ordering);
        let f = self.k.folio_mut(folio);
        f.pincount += delta;
        f.pincount
    }

    pub fn pincount_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_maybe_dma_pinned");
        self.note(AccessOp::Load, Some(Object::FolioPincount(folio)), Ordering::Relaxed);
        self.k.folio(folio).pincount
    }

    /// folio_ref_add_unless(folio, nr, 0) / folio_try_get(): fails on a frozen or freed folio.
    pub fn ref_add_unless_zero(&mut self, folio: FolioId, delta: i32) -> bool {
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioRefcount(folio)), Ordering::Full);
        let f = self.k.folio_mut(folio);
        if f.refcount == 0 {
            return false;
        }
        f.refcount += delta;
        true
    }

    /// folio_ref_freeze(): atomic_cmpxchg(&refcount, count, 0) == count.
    pub fn ref_freeze(&mut self, folio: FolioId, count: i32) -> bool {
        self.check_allocated(folio, "folio_ref_freeze");
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioRefcount(folio)), Ordering::Full);
        let f = self.k.folio_mut(folio);
        if f.refcount != count {
            return false;
        }
        f.refcount = 0;
        true
    }

    /// folio_ref_unfreeze(): atomic_set_release.
    pub fn ref_unfreeze(&mut self, folio: FolioId, count: i32) {
        self.vm_bug_on_folio(self.k.folio(folio).refcount != 0, folio, "folio_ref_count(folio) != 0");
        self.note(AccessOp::Store, Some(Object::FolioRefcount(folio)), Ordering::Release);
        self.k.folio_mut(folio).refcount = count;
    }

    /// folio_mapcount() for the whole folio (reads every page's `_mapcount`).
    pub fn mapcount_load(&mut self, folio: FolioId) -> i32 {
        self.check_allocated(folio, "folio_mapcount");
        self.note(AccessOp::Load, Some(Object::FolioMapcount(folio)), Ordering::Relaxed);
        self.k.folio(folio).mapcount()
    }

    /// atomic_read() of one page's `_mapcount` (plus one): folio_precise_page_mapcount().
    pub fn page_mapcount_load(&mut self, folio: FolioId, page: usize) -> i32 {
        self.check_allocated(folio, "page_mapcount");
        self.note(AccessOp::Load, Some(Object::FolioMapcount(folio)), Ordering::Relaxed);
        self.k.folio(folio).pages[page].mapcount
    }

    /// atomic_inc/dec of a page's `_mapcount` (full: atomic_inc_and_test/add_negative return).
    pub fn page_mapcount_add(&mut self, folio: FolioId, page: usize, delta: i32) -> i32 {
        self.check_allocated(folio, "_mapcount update");
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioMapcount(folio)), Ordering::Full);
        let p = &mut self.k.folio_mut(folio).pages[page];
        p.mapcount += delta;
        p.mapcount
    }

    /// folio_test_*(): test_bit.
    pub fn flag_test(&mut self, folio: FolioId, flag: PageFlag) -> bool {
        self.check_allocated(folio, flag.name());
        self.note_flag_read(folio, flag);
        self.note(AccessOp::Load, Some(Object::FolioFlag(folio, flag)), Ordering::Relaxed);
        self.k.folio(folio).test(flag)
    }

    fn note_flag_read(&mut self, folio: FolioId, flag: PageFlag) {
        if cfg!(debug_assertions) && flag == PageFlag::Referenced {
            self.referenced_reads.push(folio);
        }
    }

    /// folio_set_*() / folio_clear_*(): set_bit / clear_bit (atomic, unordered).
    pub fn flag_store(&mut self, folio: FolioId, flag: PageFlag, value: bool) {
        self.check_allocated(folio, flag.name());
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioFlag(folio, flag)), Ordering::Relaxed);
        let f = self.k.folio_mut(folio);
        if value {
            f.flags |= flag.mask();
        } else {
            f.flags &= !flag.mask();
        }
    }

    /// folio_test_set_*() / folio_test_clear_*(): test_and_set_bit (fully ordered); returns the
    /// old value.
    pub fn flag_test_and_store(&mut self, folio: FolioId, flag: PageFlag, value: bool) -> bool {
        self.check_allocated(folio, flag.name());
        self.note_flag_read(folio, flag);
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioFlag(folio, flag)), Ordering::Full);
        let f = self.k.folio_mut(folio);
        let old = f.test(flag);
        if value {
            f.flags |= flag.mask();
        } else {
            f.flags &= !flag.mask();
        }
        old
    }

    /// folio->mapping and folio->index (written before the folio is visible; read under locks).
    pub fn mapping_load(&mut self, folio: FolioId) -> (crate::folio::Mapping, u64) {
        self.check_allocated(folio, "folio->mapping");
        self.note(AccessOp::Load, Some(Object::FolioMapping(folio)), Ordering::Relaxed);
        let f = self.k.folio(folio);
        (f.mapping, f.index)
    }

    pub fn mapping_store(&mut self, folio: FolioId, mapping: crate::folio::Mapping, index: u64) {
        self.note(AccessOp::Store, Some(Object::FolioMapping(folio)), Ordering::Relaxed);
        let f = self.k.folio_mut(folio);
        f.mapping = mapping;
        f.index = index;
    }

    pub fn anon_exclusive_store(&mut self, folio: FolioId, page: usize, value: bool) {
        self.note(AccessOp::Store, Some(Object::FolioFlag(folio, PageFlag::Anon)), Ordering::Relaxed);
        self.k.folio_mut(folio).pages[page].anon_exclusive = value;
    }

    pub fn anon_exclusive_load(&mut self, folio: FolioId, page: usize) -> bool {
        self.note(AccessOp::Load, Some(Object::FolioFlag(folio, PageFlag::Anon)), Ordering::Relaxed);
        self.k.folio(folio).pages[page].anon_exclusive
    }

    /// Page contents: the bytes a CPU or a device reads and writes.
    pub fn data_load(&mut self, folio: FolioId, page: usize) -> crate::folio::PageData {
        self.check_allocated(folio, "read");
        self.note(AccessOp::Load, Some(Object::FolioData(folio, page as u16)), Ordering::Relaxed);
        self.k.folio(folio).pages[page].data.clone()
    }

    pub fn data_fill(&mut self, folio: FolioId, page: usize, start: usize, len: usize, byte: u8) {
        self.check_allocated(folio, "write");
        self.note(AccessOp::Store, Some(Object::FolioData(folio, page as u16)), Ordering::Relaxed);
        self.k.folio_mut(folio).pages[page].data.fill(start, len, byte);
    }

    pub fn data_store(&mut self, folio: FolioId, page: usize, data: crate::folio::PageData) {
        self.check_allocated(folio, "write");
        self.note(AccessOp::Store, Some(Object::FolioData(folio, page as u16)), Ordering::Relaxed);
        self.k.folio_mut(folio).pages[page].data = data;
    }

    // ---- allocator, LRU, mm-wide state -------------------------------------------------------

    /// The page allocator: a new folio with refcount 1 (mm/page_alloc.c: __alloc_pages()).
    pub fn alloc_folio(&mut self, order: u8) -> FolioId {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Allocator), Ordering::Full);
        self.k.folios.push(Folio::new(order));
        (self.k.folios.len() - 1) as FolioId
    }

    /// Back to the allocator (mm/page_alloc.c: free_unref_folios()).
    /// Folio numbers are never reused, so freeing does not touch the allocator's numbering
    /// (the `Allocator` object): it commutes with allocations.
    pub fn free_folio(&mut self, folio: FolioId) {
        self.note(AccessOp::Store, Some(Object::FolioRefcount(folio)), Ordering::Relaxed);
        self.note(AccessOp::Store, Some(Object::FolioMapping(folio)), Ordering::Relaxed);
        self.note(AccessOp::Store, Some(Object::FolioAllocated(folio)), Ordering::Relaxed);
        self.note(AccessOp::Store, Some(Object::FolioMapcount(folio)), Ordering::Relaxed);
        self.note(AccessOp::Store, Some(Object::FolioPincount(folio)), Ordering::Relaxed);
        self.note(AccessOp::Store, Some(Object::FolioSwap(folio)), Ordering::Relaxed);
        for page in 0..self.k.folio(folio).nr_pages() {
            self.note(AccessOp::Store, Some(Object::FolioData(folio, page as u16)), Ordering::Relaxed);
        }
        for flag in PageFlag::ALL {
            self.note(AccessOp::Store, Some(Object::FolioFlag(folio, flag)), Ordering::Relaxed);
        }
        // A freed folio's old contents can never be read again (an access to it is a
        // use-after-free report): forget them, so that states differing only there are one.
        let f = self.k.folio_mut(folio);
        let order = f.order;
        *f = Folio::new(order);
        f.allocated = false;
        f.refcount = 0;
    }

    /// The lru_lazyfree folio batch (local_lock'ed per CPU).
    pub fn lazyfree_batch(&mut self) -> &mut Vec<FolioId> {
        self.note(AccessOp::ReadModifyWrite, Some(Object::LazyfreeBatch), Ordering::Relaxed);
        self.k.lru_lazyfree.make_mut()
    }

    /// The LRU lists, under lru_lock.
    pub fn lru(&mut self) -> &mut Vec<(FolioId, crate::folio::LruList)> {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Lru), Ordering::Relaxed);
        &mut self.k.lruvec.make_mut().folios
    }

    pub fn vmas(&mut self, mm: MmId) -> &[crate::state::Vma] {
        self.note(AccessOp::Load, Some(Object::Vmas(mm)), Ordering::Relaxed);
        &self.k.mms[mm as usize].vmas
    }

    pub fn vmas_mut(&mut self, mm: MmId) -> &mut crate::state::Mm {
        self.note(AccessOp::Store, Some(Object::Vmas(mm)), Ordering::Relaxed);
        self.k.mm_mut(mm)
    }

    /// add_mm_counter(): percpu counters, unordered.
    pub fn rss_add(&mut self, mm: MmId, anon: bool, delta: i64) {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Rss(mm)), Ordering::Relaxed);
        let m = self.k.mm_mut(mm);
        if anon {
            m.rss_anon += delta;
        } else {
            m.rss_file += delta;
        }
    }

    /// add_mm_counter(mm, MM_SWAPENTS, delta).
    pub fn rss_swap_add(&mut self, mm: MmId, delta: i64) {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Rss(mm)), Ordering::Relaxed);
        self.k.mm_mut(mm).rss_swap += delta;
    }

    pub fn anon_vma_mms(&mut self, anon_vma: AnonVmaId) -> Vec<MmId> {
        self.note(AccessOp::Load, Some(Object::AnonVma(anon_vma)), Ordering::Relaxed);
        self.k.anon_vmas[anon_vma as usize].mms.clone()
    }

    /// anon_vma_fork(): the child's VMAs join the anon_vma's chain.
    pub fn anon_vma_add_mm(&mut self, anon_vma: AnonVmaId, mm: MmId) {
        self.note(AccessOp::Store, Some(Object::AnonVma(anon_vma)), Ordering::Relaxed);
        let mms = &mut self.k.anon_vma_mut(anon_vma).mms;
        if !mms.contains(&mm) {
            mms.push(mm);
        }
    }

    pub fn anon_vma_new(&mut self, mm: MmId) -> AnonVmaId {
        self.note(AccessOp::ReadModifyWrite, Some(Object::Allocator), Ordering::Full);
        self.k
            .anon_vmas
            .push(crate::shared::Shared::new(crate::state::AnonVma { mms: vec![mm], rwsem: Default::default() }));
        (self.k.anon_vmas.len() - 1) as AnonVmaId
    }

    pub fn file_block(&mut self, file: FileId, block: usize) -> Option<crate::folio::PageData> {
        self.note(AccessOp::Load, Some(Object::File(file)), Ordering::Relaxed);
        self.k.files[file as usize].blocks.get(block).cloned()
    }

    /// i_size_read(), in pages.
    pub fn file_size_pages(&mut self, file: FileId) -> u64 {
        self.note(AccessOp::Load, Some(Object::File(file)), Ordering::Acquire);
        self.k.files[file as usize].blocks.len() as u64
    }

    /// i_size_write() of a shrinking truncation: the blocks beyond `pages` go.
    pub fn file_truncate(&mut self, file: FileId, pages: u64) {
        self.note(AccessOp::Store, Some(Object::File(file)), Ordering::Release);
        let f = self.k.files[file as usize].make_mut();
        f.blocks.truncate(pages as usize);
    }

    /// mm/filemap.c: the xa_load() of filemap_get_entry() (lockless under RCU).
    pub fn page_cache_load(&mut self, file: FileId, index: u64) -> Option<FolioId> {
        self.note(AccessOp::Load, Some(Object::PageCache(file, index)), Ordering::Acquire);
        self.k.files[file as usize].cache.get(index as usize).copied().flatten()
    }

    /// xa_store() under xa_lock_irq(&mapping->i_pages).
    pub fn page_cache_store(&mut self, file: FileId, index: u64, folio: Option<FolioId>) {
        self.note(AccessOp::Store, Some(Object::PageCache(file, index)), Ordering::Release);
        self.k.files[file as usize].make_mut().cache[index as usize] = folio;
    }

    pub fn thread_status_store(&mut self, thread: ThreadId) {
        self.note(AccessOp::Store, Some(Object::ThreadStatus(thread)), Ordering::Release);
    }

    /// Records the lock a step waited for (a step's enabledness read it).
    pub fn observe_wait(&mut self, wait: crate::thread::Wait) {
        use crate::thread::Wait;
        let object = match wait {
            Wait::Nothing => return,
            Wait::MmapRead(mm) | Wait::MmapWrite(mm) => Object::MmapLock(mm),
            Wait::PteLock(mm, vpn) => Object::PteLock(mm, pte_table(vpn)),
            Wait::PtePopulated(mm, vpn) => Object::Pte(mm, vpn),
            Wait::UffdMessage(uffd) => Object::Uffd(uffd),
            Wait::PteLocks(mm, a, b) => {
                self.note(AccessOp::Load, Some(Object::PteLock(mm, pte_table(b))), Ordering::Acquire);
                Object::PteLock(mm, pte_table(a))
            }
            Wait::AnonVmaRead(anon_vma) | Wait::AnonVmaWrite(anon_vma) => Object::AnonVmaLock(anon_vma),
            Wait::FolioLock(folio) => Object::FolioFlag(folio, PageFlag::Locked),
        };
        self.note(AccessOp::Load, Some(object), Ordering::Acquire);
    }

    // ---- huge pages ------------------------------------------------------------------------------

    /// pmdp_get_lockless() / *pmd of a PMD that maps a THP.
    pub fn pmd_load(&mut self, mm: MmId, index: u64) -> Option<crate::pgtable::PresentPte> {
        self.note(AccessOp::Load, Some(Object::Pmd(mm, index)), Ordering::Relaxed);
        self.k.mms[mm as usize].pmd(index)
    }

    /// set_pmd_at() / pmdp_huge_clear_flush() (None).
    pub fn pmd_store(&mut self, mm: MmId, index: u64, pmd: Option<crate::pgtable::PresentPte>) {
        self.note(AccessOp::Store, Some(Object::Pmd(mm, index)), Ordering::Relaxed);
        let m = self.k.mm_mut(mm);
        let pmds = m.pmds.make_mut();
        pmds.retain(|e| e.0 != index);
        if let Some(pmd) = pmd {
            pmds.push((index, pmd));
            pmds.sort_by_key(|e| e.0);
        }
    }

    /// pmd_none(): no huge PMD and no PTE table.
    pub fn pmd_none(&mut self, mm: MmId, index: u64) -> bool {
        self.note(AccessOp::Load, Some(Object::Pmd(mm, index)), Ordering::Relaxed);
        let m = &self.k.mms[mm as usize];
        m.pmd(index).is_none() && m.pte_tables.binary_search(&index).is_err()
    }

    /// free_pgtables(): the PTE tables wholly inside `[start, end)` go, so their PMDs become
    /// none (pmd_none() reads them).
    pub fn free_pte_tables(&mut self, mm: MmId, start: u64, end: u64) {
        let table_bytes = crate::pgtable::PTRS_PER_PTE << crate::folio::PAGE_SHIFT;
        let inside = |table: u64| table * table_bytes >= start && (table + 1) * table_bytes <= end;
        let freed: Vec<u64> = self.k.mms[mm as usize].pte_tables.iter().copied().filter(|&t| inside(t)).collect();
        for &table in &freed {
            self.note(AccessOp::Store, Some(Object::Pmd(mm, table)), Ordering::Release);
        }
        if !freed.is_empty() {
            self.k.mm_mut(mm).pte_tables.make_mut().retain(|&table| !inside(table));
        }
    }

    /// ClearPageCompound(head): the folio is order 0 from now on (its tails were split off).
    pub fn clear_page_compound(&mut self, folio: FolioId) {
        let pfn = crate::folio::folio_pfn(folio, 0);
        self.note(AccessOp::Store, Some(Object::PageCompound(pfn)), Ordering::Release);
        let f = self.k.folio_mut(folio);
        f.order = 0;
        f.pages.truncate(1);
    }

    /// atomic_add of `_entire_mapcount` (PMD mappings of a large folio).
    pub fn entire_mapcount_add(&mut self, folio: FolioId, delta: i32) -> i32 {
        self.check_allocated(folio, "_entire_mapcount update");
        self.note(AccessOp::ReadModifyWrite, Some(Object::FolioMapcount(folio)), Ordering::Full);
        let f = self.k.folio_mut(folio);
        f.entire_mapcount += delta;
        f.entire_mapcount
    }

    /// compound_head() of a page by pfn: READ_ONCE(page->compound_head) (and PG_head).
    pub fn page_folio_load(&mut self, pfn: crate::folio::Pfn) -> (FolioId, usize) {
        self.note(AccessOp::Load, Some(Object::PageCompound(pfn)), Ordering::Relaxed);
        self.k.page_folio(pfn)
    }

    /// clear_compound_head(): the page at `pfn` is now the folio `folio`.
    pub fn clear_compound_head(&mut self, pfn: crate::folio::Pfn, folio: FolioId) {
        self.note(AccessOp::Store, Some(Object::PageCompound(pfn)), Ordering::Release);
        let split = self.k.split_pages.make_mut();
        if let Err(at) = split.binary_search_by_key(&pfn, |e| e.0) {
            split.insert(at, (pfn, folio));
        }
    }

    // ---- swap ----------------------------------------------------------------------------------

    pub fn folio_swap_load(&mut self, folio: FolioId) -> Option<u32> {
        self.check_allocated(folio, "folio->swap read");
        self.note(AccessOp::Load, Some(Object::FolioSwap(folio)), Ordering::Relaxed);
        self.k.folio(folio).swap
    }

    pub fn folio_swap_store(&mut self, folio: FolioId, entry: Option<u32>) {
        self.check_allocated(folio, "folio->swap write");
        self.note(AccessOp::Store, Some(Object::FolioSwap(folio)), Ordering::Relaxed);
        self.k.folio_mut(folio).swap = entry;
    }

    /// READ_ONCE(si->swap_map[offset]).
    pub fn swap_map_load(&mut self, offset: u32) -> u8 {
        self.note(AccessOp::Load, Some(Object::SwapMap(offset)), Ordering::Relaxed);
        self.k.swap.swap_map[offset as usize]
    }

    /// WRITE_ONCE(si->swap_map[offset]) under the swap cluster lock.
    pub fn swap_map_store(&mut self, offset: u32, value: u8) {
        self.note(AccessOp::Store, Some(Object::SwapMap(offset)), Ordering::Relaxed);
        self.k.swap.make_mut().swap_map[offset as usize] = value;
    }

    /// The number of swap map slots (0 without a swap device); a constant of the device.
    pub fn swap_slots(&self) -> u32 {
        self.k.swap.swap_map.len() as u32
    }

    /// xa_load() of the swap cache (lockless under RCU).
    pub fn swap_cache_load(&mut self, offset: u32) -> Option<FolioId> {
        self.note(AccessOp::Load, Some(Object::SwapCache(offset)), Ordering::Acquire);
        self.k.swap.cache[offset as usize]
    }

    /// xa_store() under xa_lock_irq(i_pages).
    pub fn swap_cache_store(&mut self, offset: u32, folio: Option<FolioId>) {
        self.note(AccessOp::Store, Some(Object::SwapCache(offset)), Ordering::Release);
        self.k.swap.make_mut().cache[offset as usize] = folio;
    }

    /// The device reading a slot (swap_read_folio()).
    pub fn swap_data_load(&mut self, offset: u32) -> crate::folio::PageData {
        self.note(AccessOp::Load, Some(Object::SwapData(offset)), Ordering::Relaxed);
        self.k.swap.data[offset as usize].clone()
    }

    /// The device writing a slot (swap_writepage()).
    pub fn swap_data_store(&mut self, offset: u32, data: crate::folio::PageData) {
        self.note(AccessOp::Store, Some(Object::SwapData(offset)), Ordering::Relaxed);
        self.k.swap.make_mut().data[offset as usize] = data;
    }

    pub fn uffd_load(&mut self, uffd: u32) -> Option<crate::state::Userfaultfd> {
        self.note(AccessOp::Load, Some(Object::Uffd(uffd)), Ordering::Relaxed);
        self.k.uffds.get(uffd as usize).map(|u| (**u).clone())
    }

    pub fn uffd_store(&mut self, uffd: u32, value: crate::state::Userfaultfd) {
        self.note(AccessOp::Store, Some(Object::Uffd(uffd)), Ordering::Relaxed);
        match self.k.uffds.get_mut(uffd as usize) {
            Some(existing) => *existing.make_mut() = value,
            None => self.k.uffds.push(crate::shared::Shared::new(value)),
        }
    }

    pub fn event_store(&mut self, event: u8) {
        self.note(AccessOp::Store, Some(Object::ScenarioEvent(event)), Ordering::Release);
        self.k.events |= 1 << event;
    }

    pub fn event_load(&mut self, event: u8) -> bool {
        self.note(AccessOp::Load, Some(Object::ScenarioEvent(event)), Ordering::Acquire);
        self.k.events & (1 << event) != 0
    }

    pub fn thread_status_load(&mut self, thread: ThreadId) {
        self.note(AccessOp::Load, Some(Object::ThreadStatus(thread)), Ordering::Acquire);
    }
}
