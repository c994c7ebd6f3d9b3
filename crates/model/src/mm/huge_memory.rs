//! mm/huge_memory.c: PMD-mapped anonymous THPs (their faults: do_huge_pmd_anonymous_page()
//! and do_huge_pmd_wp_page(), machines that memory.rs's fault runs), splitting the
//! PMD into PTEs (__split_huge_pmd_locked()), zapping it (zap_huge_pmd()), and splitting the
//! folio itself (split_huge_page_to_list(): unmap to migration entries, freeze, tear the
//! compound page down tail by tail, remap), driven here by debugfs `split_huge_pages`.
//!
//! The PMD lock is modelled as the lock of the PTE table the PMD covers (one per 2 MiB), and
//! __split_huge_page()'s lruvec lock is taken per tail step instead of across the loop. A page
//! split off a THP becomes a folio of its own with a new model pfn; the old pfn still resolves
//! to it (`Kernel::page_folio`) for whoever holds a migration entry naming it.

use crate::access::{Ctx, Ordering};
use crate::folio::{folio_pfn, FolioId, Mapping, PageFlag, Pfn, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::{anon_vma_prepare, Outcome, Vmf};
use crate::mm::swap::{folio_add_lru, folio_mark_dirty, folio_put, lruvec_add_folio};
use crate::patches::Patch;
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{vm_flags, AnonVmaId, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// HPAGE_PMD_ORDER on x86-64 with 4 KiB pages.
pub const HPAGE_PMD_ORDER: u8 = 9;
pub const HPAGE_PMD_NR: u64 = 1 << HPAGE_PMD_ORDER;
pub const HPAGE_PMD_SIZE: u64 = HPAGE_PMD_NR * PAGE_SIZE;

/// The pmd index (and PTE table) of an address.
pub fn pmd_index(address: u64) -> u64 {
    (address >> PAGE_SHIFT) / PTRS_PER_PTE
}

/// __thp_vma_allowable_orders() for a fault with THP "madvise" mode: a MADV_HUGEPAGE,
/// anonymous, not userfaultfd-registered VMA holding the whole aligned 2 MiB range.
pub fn thp_fault_allowed(vma: &Vma, address: u64) -> bool {
    let start = address & !(HPAGE_PMD_SIZE - 1);
    vma.flags & vm_flags::VM_HUGEPAGE != 0
        && vma.is_anonymous()
        && vma.uffd.is_none()
        && vma.start <= start
        && start + HPAGE_PMD_SIZE <= vma.end
}

/// mm_get_huge_zero_folio(): the huge zero folio, allocated (zeroed, PG_reserved) the first
/// time it is needed.
pub fn mm_get_huge_zero_folio(ctx: &mut Ctx) -> FolioId {
    if let Some(folio) = ctx.huge_zero_folio_load() {
        return folio;
    }
    let folio = ctx.alloc_folio(HPAGE_PMD_ORDER);
    ctx.flag_store(folio, PageFlag::Reserved, true);
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.huge_zero_folio_store(folio);
    folio
}

/// Whether a huge PMD maps the huge zero folio (pmd_special() / is_huge_zero_pmd()).
pub fn is_huge_zero_pmd(pmd: &PresentPte) -> bool {
    pmd.special
}

/// do_huge_pmd_anonymous_page() for a read fault: set_huge_zero_folio() under the PMD lock
/// if the PMD is still none (read-only, special, no rmap, no rss).
pub fn do_huge_zero_pmd(ctx: &mut Ctx, mm: MmId, address: u64) -> bool {
    let index = pmd_index(address);
    let start = address & !(HPAGE_PMD_SIZE - 1);
    let zero = mm_get_huge_zero_folio(ctx);
    ctx.ptl_lock(mm, start >> PAGE_SHIFT);
    let none = ctx.pmd_none(mm, index);
    if none {
        let pmd = PresentPte { pfn: folio_pfn(zero, 0), write: false, dirty: false, young: true, special: true };
        ctx.pmd_store(mm, index, Some(pmd));
    }
    ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
    none
}

/// __split_huge_zero_page_pmd(): the huge zero PMD becomes 512 PTEs of the small zero page.
pub fn __split_huge_zero_page_pmd(ctx: &mut Ctx, mm: MmId, index: u64, pmd: PresentPte) {
    for page in 0..HPAGE_PMD_NR {
        let entry = PresentPte { pfn: folio_pfn(crate::folio::ZERO_FOLIO, 0), ..pmd };
        ctx.pte_store(mm, index * PTRS_PER_PTE + page, Pte::Present(entry));
    }
    ctx.pmd_store(mm, index, None);
}

/// __do_huge_pmd_anonymous_page() under the PMD lock: a new THP mapped by the PMD, if the PMD is
/// still none. The folio was allocated (and prepared) by the caller.
pub fn do_huge_pmd_set(ctx: &mut Ctx, mm: MmId, address: u64, folio: FolioId) -> bool {
    do_huge_pmd_replace(ctx, mm, address, folio, None)
}

/// Maps a new THP by the PMD if the PMD still holds `expected` (none, or the huge zero PMD that
/// do_huge_zero_wp_pmd() replaces).
pub fn do_huge_pmd_replace(
    ctx: &mut Ctx,
    mm: MmId,
    address: u64,
    folio: FolioId,
    expected: Option<PresentPte>,
) -> bool {
    let index = pmd_index(address);
    let start = address & !(HPAGE_PMD_SIZE - 1);
    ctx.ptl_lock(mm, start >> PAGE_SHIFT);
    let unchanged = match expected {
        None => ctx.pmd_none(mm, index),
        Some(pmd) => ctx.pmd_load(mm, index) == Some(pmd),
    };
    if !unchanged {
        ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
        folio_put(ctx, folio);
        return false;
    }
    let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned().expect("fault inside a VMA");
    let anon_vma = vma.anon_vma.expect("anon_vma_prepare() ran");
    // folio_add_new_anon_rmap(folio, vma, haddr, RMAP_EXCLUSIVE) at PMD level.
    ctx.flag_store(folio, PageFlag::Swapbacked, true);
    ctx.flag_store(folio, PageFlag::Anon, true);
    ctx.mapping_store(folio, Mapping::Anon(anon_vma), vma.linear_page_index(start));
    ctx.entire_mapcount_add(folio, 1);
    ctx.anon_exclusive_store(folio, 0, true);
    folio_add_lru(ctx, folio);
    ctx.rss_add(mm, true, HPAGE_PMD_NR as i64);
    let pmd = PresentPte { pfn: folio_pfn(folio, 0), write: true, dirty: true, young: true, special: false };
    ctx.pmd_store(mm, index, Some(pmd));
    ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
    true
}

/// __split_huge_pmd_locked() for an anonymous THP, under the PMD lock: 512 PTEs replace the
/// PMD; each page gains a PTE mapping and a reference, the folio loses its PMD mapping.
pub fn __split_huge_pmd_locked(ctx: &mut Ctx, mm: MmId, index: u64, pmd: PresentPte) {
    let folio = crate::folio::pfn_folio(pmd.pfn);
    // "if (pmd_dirty(old_pmd)) { dirty = true; folio_set_dirty(folio); }"
    if pmd.dirty {
        ctx.flag_store(folio, PageFlag::Dirty, true);
    }
    let exclusive = ctx.anon_exclusive_load(folio, 0);
    ctx.ref_add(folio, HPAGE_PMD_NR as i32 - 1, Ordering::Relaxed);
    for page in 0..HPAGE_PMD_NR as usize {
        ctx.page_mapcount_add(folio, page, 1);
        if exclusive {
            ctx.anon_exclusive_store(folio, page, true);
        }
        let entry = PresentPte { pfn: folio_pfn(folio, page), ..pmd };
        ctx.pte_store(mm, index * PTRS_PER_PTE + page as u64, Pte::Present(entry));
    }
    ctx.entire_mapcount_add(folio, -1);
    ctx.pmd_store(mm, index, None);
}

/// zap_huge_pmd(): the whole PMD goes; the caller's mmu_gather drops its reference.
pub fn zap_huge_pmd(ctx: &mut Ctx, mm: MmId, index: u64, pmd: PresentPte) -> Option<FolioId> {
    let folio = crate::folio::pfn_folio(pmd.pfn);
    ctx.pmd_store(mm, index, None);
    if is_huge_zero_pmd(&pmd) {
        return None;
    }
    let mapcount = ctx.entire_mapcount_add(folio, -1);
    ctx.vm_bug_on_folio(mapcount < 0, folio, "folio_entire_mapcount(folio) < 0");
    ctx.rss_add(mm, true, -(HPAGE_PMD_NR as i64));
    Some(folio)
}

/// do_huge_pmd_anonymous_page() for a read fault: the huge zero folio (set_huge_zero_folio()).
pub fn do_huge_pmd_anonymous_read(ctx: &mut Ctx, vmf: &Vmf) {
    let mapped = do_huge_zero_pmd(ctx, vmf.mm, vmf.address);
    let address = vmf.address;
    ctx.event("do_huge_pmd_anonymous_page", "set_huge_zero_folio", |_| {
        format!("{address:#x}: {}", if mapped { "huge zero PMD" } else { "PMD populated meanwhile" })
    });
}

/// mm/huge_memory.c: do_huge_pmd_anonymous_page() for a write fault: a THP, zeroed, mapped by
/// the PMD. Also do_huge_pmd_wp_page() → do_huge_zero_wp_pmd(), whose THP replaces the huge
/// zero PMD.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoHugePmdAnonymousPage {
    pub stage: HugeAnonymousStage,
}

/// `zero_pmd`: the huge zero PMD do_huge_zero_wp_pmd() replaces; none for a missing PMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HugeAnonymousStage {
    /// vma_alloc_folio().
    Alloc { zero_pmd: Option<PresentPte> },
    /// __do_huge_pmd_anonymous_page() under the PMD lock: set_pmd_at() the new folio.
    SetPmd { folio: FolioId, zero_pmd: Option<PresentPte> },
}

impl DoHugePmdAnonymousPage {
    pub fn new(zero_pmd: Option<PresentPte>) -> Self {
        DoHugePmdAnonymousPage { stage: HugeAnonymousStage::Alloc { zero_pmd } }
    }

    pub fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match self.stage {
            HugeAnonymousStage::Alloc { zero_pmd } => {
                let folio = huge_alloc(ctx, vmf);
                Flow::goto(&mut self.stage, HugeAnonymousStage::SetPmd { folio, zero_pmd }).into()
            }
            HugeAnonymousStage::SetPmd { folio, zero_pmd } => {
                huge_set_pmd(ctx, vmf, folio, zero_pmd);
                Outcome::Return(0)
            }
        }
    }

    pub fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            HugeAnonymousStage::Alloc { .. } => Wait::Nothing,
            HugeAnonymousStage::SetPmd { .. } => Wait::PteLock(vmf.mm, vmf.vpn()),
        }
    }
}

/// do_huge_pmd_anonymous_page(): a THP, zeroed (a read fault maps the huge zero folio
/// instead: do_huge_pmd_anonymous_read()).
fn huge_alloc(ctx: &mut Ctx, vmf: &Vmf) -> FolioId {
    anon_vma_prepare(ctx, vmf.mm, vmf.address);
    let folio = ctx.alloc_folio(HPAGE_PMD_ORDER);
    ctx.flag_store(folio, PageFlag::LargeRmappable, true);
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.event("do_huge_pmd_anonymous_page", "vma_alloc_folio", |_| format!("folio {folio} (order 9, zeroed)"));
    folio
}

/// __do_huge_pmd_anonymous_page(): set_pmd_at() if the PMD is still what the fault saw.
fn huge_set_pmd(ctx: &mut Ctx, vmf: &Vmf, folio: FolioId, zero_pmd: Option<PresentPte>) {
    let mapped = do_huge_pmd_replace(ctx, vmf.mm, vmf.address, folio, zero_pmd);
    let address = vmf.address & !(HPAGE_PMD_SIZE - 1);
    ctx.event("__do_huge_pmd_anonymous_page", "set_pmd_at", |k| {
        if mapped {
            format!("{address:#x} -> THP folio {folio}: {}", k.folio(folio).dump(folio))
        } else {
            format!("{address:#x}: PMD populated meanwhile, folio {folio} released")
        }
    });
}

/// mm/huge_memory.c: do_huge_pmd_wp_page() of an anonymous THP, under the PMD lock: reuse
/// it if the head is exclusive; otherwise under the folio lock, reuse it if only this
/// mapping holds it, or fall back to splitting the PMD so that the PTE-level do_wp_page()
/// copies the one page. The PMD read (orig_pmd) is the fault's `vmf.orig_pmd`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoHugePmdWpPage {
    pub stage: HugeWpStage,
}

/// `folio`: the THP orig_pmd maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HugeWpStage {
    /// Under the PMD lock: pmd_same(), the exclusive check, folio_trylock().
    Lock,
    /// "folio_get(); spin_unlock(); folio_lock()" after a failed trylock.
    FolioLock { folio: FolioId },
    /// "spin_lock(vmf->ptl); if (!pmd_same()) ..." with the folio locked.
    Relock { folio: FolioId },
    /// "fallback: __split_huge_pmd()", after the PMD lock was dropped.
    Fallback,
}

impl Default for DoHugePmdWpPage {
    fn default() -> Self {
        DoHugePmdWpPage::new()
    }
}

impl DoHugePmdWpPage {
    pub fn new() -> Self {
        DoHugePmdWpPage { stage: HugeWpStage::Lock }
    }

    pub fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match self.stage {
            HugeWpStage::Lock => self.huge_wp(ctx, vmf),
            HugeWpStage::FolioLock { folio } => {
                ctx.flag_store(folio, PageFlag::Locked, true);
                Flow::goto(&mut self.stage, HugeWpStage::Relock { folio }).into()
            }
            HugeWpStage::Relock { folio } => self.huge_wp_relock(ctx, vmf, folio),
            HugeWpStage::Fallback => huge_wp_fallback(ctx, vmf),
        }
    }

    pub fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            HugeWpStage::Lock | HugeWpStage::Relock { .. } | HugeWpStage::Fallback => {
                Wait::PteLock(vmf.mm, huge_start(vmf) >> PAGE_SHIFT)
            }
            HugeWpStage::FolioLock { folio } => Wait::FolioLock(folio),
        }
    }

    /// do_huge_pmd_wp_page() under the PMD lock.
    fn huge_wp(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        let (mm, start) = (vmf.mm, huge_start(vmf));
        ctx.ptl_lock(mm, start >> PAGE_SHIFT);
        if !huge_same(ctx, vmf) {
            ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
            return Outcome::Return(0);
        }
        let folio = crate::folio::pfn_folio(orig_pmd(vmf).pfn);
        // "Early check when only holding the PT lock."
        if ctx.anon_exclusive_load(folio, 0) {
            return huge_reuse(ctx, vmf);
        }
        if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
            ctx.ref_add(folio, 1, Ordering::Relaxed);
            ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
            ctx.event("do_huge_pmd_wp_page", "folio_trylock", |_| format!("THP folio {folio} busy: folio_lock"));
            return Flow::goto(&mut self.stage, HugeWpStage::FolioLock { folio }).into();
        }
        self.huge_wp_locked(ctx, vmf, folio)
    }

    /// "spin_lock(vmf->ptl); if (unlikely(!pmd_same(*vmf->pmd, orig_pmd)))": the folio is
    /// locked and referenced.
    fn huge_wp_relock(&mut self, ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
        let (mm, start) = (vmf.mm, huge_start(vmf));
        ctx.ptl_lock(mm, start >> PAGE_SHIFT);
        if !huge_same(ctx, vmf) {
            ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
            ctx.flag_store(folio, PageFlag::Locked, false);
            folio_put(ctx, folio);
            return Outcome::Return(0);
        }
        folio_put(ctx, folio);
        self.huge_wp_locked(ctx, vmf, folio)
    }

    /// With the PMD and folio locks: "Recheck after temporarily dropping the PT lock", then
    /// reuse only with no additional reference.
    fn huge_wp_locked(&mut self, ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
        let (mm, start) = (vmf.mm, huge_start(vmf));
        let exclusive = ctx.anon_exclusive_load(folio, 0);
        let alone = !exclusive && ctx.ref_load(folio) == 1;
        if alone {
            let vma = vmf.vma(ctx);
            crate::mm::rmap::folio_move_anon_rmap(ctx, folio, &vma);
            ctx.anon_exclusive_store(folio, 0, true);
        }
        ctx.flag_store(folio, PageFlag::Locked, false);
        if exclusive || alone {
            return huge_reuse(ctx, vmf);
        }
        ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
        ctx.event("do_huge_pmd_wp_page", "unlock_fallback", |_| format!("{start:#x}: THP folio {folio} shared"));
        Flow::goto(&mut self.stage, HugeWpStage::Fallback).into()
    }
}

fn huge_start(vmf: &Vmf) -> u64 {
    vmf.address & !(HPAGE_PMD_SIZE - 1)
}

fn orig_pmd(vmf: &Vmf) -> PresentPte {
    vmf.orig_pmd.expect("do_huge_pmd_wp_page() on the huge PMD read")
}

/// Whether the PMD still is orig_pmd ("pmd_same(*vmf->pmd, orig_pmd)").
fn huge_same(ctx: &mut Ctx, vmf: &Vmf) -> bool {
    ctx.pmd_load(vmf.mm, pmd_index(vmf.address)) == vmf.orig_pmd
}

/// "reuse:": the PMD made young, dirty and writable; the PMD lock is held.
fn huge_reuse(ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
    let (mm, start) = (vmf.mm, huge_start(vmf));
    let pmd = orig_pmd(vmf);
    ctx.pmd_store(mm, pmd_index(vmf.address), Some(PresentPte { write: true, dirty: true, young: true, ..pmd }));
    ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
    let folio = crate::folio::pfn_folio(pmd.pfn);
    ctx.event("do_huge_pmd_wp_page", "reuse", |_| format!("{start:#x}: THP folio {folio} made writable"));
    Outcome::Return(0)
}

/// __split_huge_pmd(): under the PMD lock again, whatever huge PMD is there now is split;
/// the fault returns VM_FAULT_FALLBACK and is retried at the PTE level.
fn huge_wp_fallback(ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
    let (mm, start) = (vmf.mm, huge_start(vmf));
    let index = pmd_index(vmf.address);
    ctx.ptl_lock(mm, start >> PAGE_SHIFT);
    if let Some(pmd) = ctx.pmd_load(mm, index) {
        if is_huge_zero_pmd(&pmd) {
            __split_huge_zero_page_pmd(ctx, mm, index, pmd);
        } else {
            __split_huge_pmd_locked(ctx, mm, index, pmd);
        }
    }
    ctx.ptl_unlock(mm, start >> PAGE_SHIFT);
    ctx.event("do_huge_pmd_wp_page", "fallback: __split_huge_pmd", |_| format!("{start:#x}"));
    Outcome::Return(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SplitPagesStage {
    Next,
    Lock,
    Split,
    Done,
}

/// mm/huge_memory.c: split_huge_pages_all() (debugfs `split_huge_pages`, "1"): every THP on
/// the LRU in turn: get_page_unless_zero(), lock_page(), split_huge_page(), unlock, put.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SplitHugePages {
    pub stage: SplitPagesStage,
    /// The next folio number to look at (the pfn scan).
    pub cursor: FolioId,
    pub current: Option<FolioId>,
    pub split: u32,
}

impl SplitHugePages {
    pub fn new() -> Self {
        SplitHugePages { stage: SplitPagesStage::Next, cursor: 0, current: None, split: 0 }
    }

    fn next(&mut self, ctx: &mut Ctx) -> Flow {
        while self.cursor < ctx.folio_count() {
            let folio = self.cursor;
            self.cursor += 1;
            if !ctx.folio_test_large(folio) {
                continue;
            }
            if !ctx.ref_add_unless_zero(folio, 1) {
                continue;
            }
            if !ctx.flag_test(folio, PageFlag::Lru) || !ctx.flag_test(folio, PageFlag::Anon) {
                folio_put(ctx, folio);
                continue;
            }
            self.current = Some(folio);
            ctx.event("split_huge_pages_all", "get_page_unless_zero", |k| k.folio(folio).dump(folio));
            return Flow::goto(&mut self.stage, SplitPagesStage::Lock);
        }
        let split = self.split;
        ctx.event("split_huge_pages_all", "done", |_| format!("{split} THP(s) split"));
        Flow::Return(i64::from(split))
    }
}

impl Default for SplitHugePages {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelFunction for SplitHugePages {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            SplitPagesStage::Next => self.next(ctx),
            SplitPagesStage::Lock => {
                let folio = self.current.expect("referenced");
                ctx.flag_store(folio, PageFlag::Locked, true);
                ctx.event("split_huge_pages_all", "lock_page", |_| format!("folio {folio}"));
                Flow::call(&mut self.stage, SplitPagesStage::Split, Frame::SplitHugePage(SplitHugePage::new(folio)))
            }
            SplitPagesStage::Split => {
                if returned == Some(0) {
                    self.split += 1;
                }
                Flow::goto(&mut self.stage, SplitPagesStage::Done)
            }
            SplitPagesStage::Done => {
                // unlock_page(); put_page(): the head page, now an order-0 folio if split.
                let folio = self.current.take().expect("referenced");
                ctx.flag_store(folio, PageFlag::Locked, false);
                folio_put(ctx, folio);
                ctx.event("split_huge_pages_all", "put_page", |_| format!("folio {folio}"));
                Flow::goto(&mut self.stage, SplitPagesStage::Next)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            SplitPagesStage::Lock => Wait::FolioLock(self.current.expect("referenced")),
            _ => Wait::Nothing,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SplitStage {
    LockAnonVma,
    CanSplit,
    Unmap,
    Freeze,
    LockLruvec,
    /// __split_huge_page_tail() of `tail`, counting down to 1.
    Tail,
    ClearCompound,
    /// remap_page(): remove_migration_ptes() of the next page with a migration entry.
    Remap,
    UnlockTails,
    Unlock,
}

/// mm/huge_memory.c: split_huge_page_to_list() of an anonymous PTE-mapped THP; the caller holds
/// the folio lock and a reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SplitHugePage {
    pub folio: FolioId,
    pub stage: SplitStage,
    pub anon_vma: Option<AnonVmaId>,
    /// The (mm, VMA start) mappings the rmap walk visits.
    pub targets: Vec<(MmId, u64)>,
    pub target: usize,
    pub tail: usize,
    /// The folio each page became (index = page), filled as tails are split off.
    pub pages: Vec<FolioId>,
    /// The old pfn of each page with a migration entry, still to remap.
    pub remap: Vec<usize>,
    pub result: i64,
}

impl SplitHugePage {
    pub fn new(folio: FolioId) -> Self {
        SplitHugePage {
            folio,
            stage: SplitStage::LockAnonVma,
            anon_vma: None,
            targets: Vec::new(),
            target: 0,
            tail: 0,
            pages: Vec::new(),
            remap: Vec::new(),
            result: 0,
        }
    }

    fn old_pfn(&self, page: usize) -> Pfn {
        folio_pfn(self.folio, page)
    }

    /// page_get_anon_vma() and anon_vma_lock_write(), then the VMAs the rmap walk visits.
    fn lock_anon_vma(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        if ctx.flag_test(folio, PageFlag::Writeback) {
            self.result = -errno::EBUSY;
            return Flow::Return(self.result);
        }
        let (Mapping::Anon(anon_vma), index) = ctx.mapping_load(folio) else {
            self.result = -errno::EBUSY;
            return Flow::Return(self.result);
        };
        ctx.anon_vma_lock_write(anon_vma);
        self.anon_vma = Some(anon_vma);
        let nr = ctx.folio_nr_pages(folio) as u64;
        for mm in ctx.anon_vma_mms(anon_vma) {
            let vmas = ctx.vmas(mm).to_vec();
            for vma in vmas.iter().filter(|v| v.anon_vma == Some(anon_vma)) {
                if (0..nr).any(|i| vma.address_of_index(index + i).is_some()) {
                    self.targets.push((mm, vma.start));
                }
            }
        }
        ctx.event("split_huge_page_to_list", "anon_vma_lock_write", |_| format!("folio {folio}"));
        Flow::goto(&mut self.stage, SplitStage::CanSplit)
    }

    /// can_split_huge_page(): "total_mapcount(page) == page_count(page) - extra_pins - 1".
    fn can_split(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        let mapcount = ctx.mapcount_load(folio);
        let refcount = ctx.ref_load(folio);
        if mapcount != refcount - 1 {
            self.result = Self::busy(ctx);
            let result = self.result;
            ctx.event("split_huge_page_to_list", "can_split_huge_page", |_| {
                format!(
                    "folio {folio}: mapcount {mapcount}, refcount {refcount}: {}",
                    errno::name(result).unwrap_or("error")
                )
            });
            return Flow::goto(&mut self.stage, SplitStage::Unlock);
        }
        let pmd_mapped = ctx.every_huge_pmd().iter().any(|e| crate::folio::pfn_folio(e.2.pfn) == folio);
        if pmd_mapped {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: splitting a PMD-mapped THP (unmap_page with TTU_SPLIT_HUGE_PMD)",
            ));
            self.result = -errno::EBUSY;
            return Flow::goto(&mut self.stage, SplitStage::Unlock);
        }
        Flow::goto(&mut self.stage, SplitStage::Unmap)
    }

    /// unmap_page() → try_to_migrate() → try_to_migrate_one() for one VMA, under the PTE lock of
    /// the table (page_vma_mapped_walk()): each PTE mapping a page becomes a migration entry.
    fn unmap(&mut self, ctx: &mut Ctx) -> Flow {
        let Some(&(mm, vma_start)) = self.targets.get(self.target) else {
            return Flow::goto(&mut self.stage, SplitStage::Freeze);
        };
        self.target += 1;
        let folio = self.folio;
        // exit_mmap() may have zapped and removed the VMA meanwhile (free_pgtables() waits for
        // the anon_vma lock only to unlink it).
        let Some(vma) = ctx.vmas(mm).iter().find(|v| v.start == vma_start).cloned() else {
            return Flow::Continue;
        };
        let (_, index) = ctx.mapping_load(folio);
        let nr = ctx.folio_nr_pages(folio);
        let addresses: Vec<(usize, u64)> =
            (0..nr).filter_map(|i| vma.address_of_index(index + i as u64).map(|a| (i, a))).collect();
        let Some(&(_, first)) = addresses.first() else { return Flow::Continue };
        ctx.ptl_lock(mm, first >> PAGE_SHIFT);
        let mut unmapped = 0;
        for (page, address) in addresses {
            let vpn = address >> PAGE_SHIFT;
            let Pte::Present(present) = ctx.pte_load(mm, vpn) else { continue };
            if present.special || present.pfn != self.old_pfn(page) {
                continue;
            }
            if !self.try_to_migrate_pte(ctx, mm, vpn, page, present) {
                // "ret = false; page_vma_mapped_walk_done(); break": the rmap walk stops.
                self.target = self.targets.len();
                break;
            }
            unmapped += 1;
        }
        ctx.ptl_unlock(mm, first >> PAGE_SHIFT);
        ctx.event("try_to_migrate_one", "set_pte_at migration", |k| {
            format!("{unmapped} PTE(s) -> migration entries: {}", k.folio(folio).dump(folio))
        });
        Flow::Continue
    }

    /// try_to_migrate_one() for one PTE: clear it, move its dirty bit to the folio, and install
    /// a migration entry; false (PTE restored) when the page is exclusive but maybe pinned.
    fn try_to_migrate_pte(&mut self, ctx: &mut Ctx, mm: MmId, vpn: u64, page: usize, present: PresentPte) -> bool {
        let folio = self.folio;
        ctx.pte_get_and_clear(mm, vpn);
        // "Set the dirty flag on the folio now the pte is gone."
        if present.dirty {
            folio_mark_dirty(ctx, folio);
        }
        // folio_try_share_anon_rmap_pte(): "smp_mb(); if (folio_maybe_dma_pinned(folio))
        // return -EBUSY;" otherwise the entry, not the page, carries exclusivity while the page
        // is unmapped (make_readable_exclusive_migration_entry()).
        let exclusive = ctx.anon_exclusive_load(folio, page);
        if exclusive {
            ctx.fence(crate::access::Fence::Full);
            if crate::mm::gup::folio_maybe_dma_pinned(ctx, folio) {
                ctx.pte_store(mm, vpn, Pte::Present(present));
                return false;
            }
            ctx.anon_exclusive_store(folio, page, false);
        }
        let write = present.write;
        let (young, dirty) =
            if ctx.patched(Patch::MigrationEntryYoungDirty) { (present.young, present.dirty) } else { (false, false) };
        let entry = Pte::Migration { pfn: present.pfn, write, exclusive: exclusive && !write, young, dirty };
        ctx.pte_store(mm, vpn, entry);
        crate::mm::rmap::folio_remove_rmap_pte(ctx, folio, page);
        ctx.ref_add(folio, -1, Ordering::Full);
        true
    }

    /// split_huge_page_to_list(): an unexpected reference fails the split: -EAGAIN since
    /// fd4a7ac32918 (6.2), -EBUSY before.
    fn busy(ctx: &Ctx) -> i64 {
        if ctx.patched(Patch::ThpSplitEagain) {
            -errno::EAGAIN
        } else {
            -errno::EBUSY
        }
    }

    /// page_ref_freeze(head, 1 + extra_pins): only the caller's reference may be left.
    fn freeze(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        let frozen = ctx.ref_freeze(folio, 1);
        ctx.event("split_huge_page_to_list", "page_ref_freeze", |k| {
            if frozen {
                format!("folio {folio} frozen")
            } else {
                format!("folio {folio}: refcount {} != 1: fails, remap", k.folio(folio).refcount)
            }
        });
        let nr = ctx.folio_nr_pages(folio);
        self.pages = vec![folio; nr];
        self.remap = (0..nr).rev().collect();
        if !frozen {
            self.result = Self::busy(ctx);
            return Flow::goto(&mut self.stage, SplitStage::Remap);
        }
        self.tail = nr - 1;
        Flow::goto(&mut self.stage, SplitStage::LockLruvec)
    }

    /// Whether a migration entry names the page (someone can reach it through a page table).
    fn reachable(&self, entries: &[(Pfn, MmId, u64, Pte)], page: usize) -> bool {
        entries.iter().any(|e| e.0 == self.old_pfn(page))
    }

    /// __split_huge_page_tail() for tails counting down, under the lruvec lock with IRQs off.
    /// Tails no page table names can be reached by nobody else, so a run of them is split off
    /// together with the next reachable one.
    fn tails(&mut self, ctx: &mut Ctx) -> Flow {
        // The kernel holds the lruvec lock across the whole loop; here each step takes it,
        // which other LRU users cannot tell apart (they never run between two tails either way
        // unless they touch no LRU state).
        ctx.lru_lock();
        let entries = ctx.every_migration_entry();
        let mut split = Vec::new();
        while self.tail >= 1 {
            let tail = self.tail;
            self.__split_huge_page_tail(ctx, tail);
            split.push(tail);
            self.tail -= 1;
            if self.reachable(&entries, tail) {
                break;
            }
        }
        ctx.lru_unlock();
        let head = self.folio;
        ctx.event("__split_huge_page_tail", "clear_compound_head", |_| {
            let shown = if split.len() > 3 {
                format!("{} tails down to {}", split.len(), split[split.len() - 1])
            } else {
                format!("tails {split:?}")
            };
            format!("folio {head}: {shown}")
        });
        if self.tail == 0 {
            return Flow::goto(&mut self.stage, SplitStage::ClearCompound);
        }
        Flow::Continue
    }

    fn __split_huge_page_tail(&mut self, ctx: &mut Ctx, tail: usize) {
        let head = self.folio;
        let mapcount = ctx.page_mapcount_load(head, tail);
        ctx.vm_bug_on_folio(mapcount != 0, head, "atomic_read(&page_tail->_mapcount) != -1");
        let new = ctx.alloc_folio(0);
        // The tail comes out frozen (refcount 0), with the head's flags (PG_locked included).
        ctx.ref_freeze(new, 1);
        for flag in [
            PageFlag::Referenced,
            PageFlag::Swapbacked,
            PageFlag::Uptodate,
            PageFlag::Active,
            PageFlag::Workingset,
            PageFlag::Locked,
            PageFlag::Dirty,
            PageFlag::Anon,
        ] {
            if ctx.flag_test(head, flag) {
                ctx.flag_store(new, flag, true);
            }
        }
        let (mapping, index) = ctx.mapping_load(head);
        ctx.mapping_store(new, mapping, index + tail as u64);
        let data = ctx.data_load(head, tail);
        ctx.data_store(new, 0, data);
        ctx.fence(crate::access::Fence::Write);
        ctx.clear_compound_head(self.old_pfn(tail), new);
        ctx.ref_unfreeze(new, 1);
        // lru_add_page_tail(): onto the LRU beside the head (the lruvec lock is held).
        ctx.flag_store(new, PageFlag::Lru, true);
        lruvec_add_folio(ctx, new);
        self.pages[tail] = new;
    }

    /// ClearPageCompound(head); unlock the lruvec; page_ref_inc(head).
    fn clear_compound(&mut self, ctx: &mut Ctx) -> Flow {
        let head = self.folio;
        ctx.clear_page_compound(head);
        ctx.ref_unfreeze(head, 1);
        ctx.event("__split_huge_page", "ClearPageCompound", |k| k.folio(head).dump(head));
        Flow::goto(&mut self.stage, SplitStage::Remap)
    }

    /// remove_migration_ptes() → remove_migration_pte(), one migration entry per step under
    /// its PTE lock: it becomes a present PTE of the page's folio, which gains the mapping and
    /// its reference.
    fn remap(&mut self, ctx: &mut Ctx) -> Flow {
        let Some(&page) = self.remap.last() else {
            return Flow::goto(
                &mut self.stage,
                if self.result < 0 { SplitStage::Unlock } else { SplitStage::UnlockTails },
            );
        };
        let pfn = self.old_pfn(page);
        let Some((_, mm, vpn, entry)) = ctx.every_migration_entry().into_iter().find(|e| e.0 == pfn) else {
            self.remap.pop();
            return Flow::Continue;
        };
        let folio = self.pages[page];
        let folio_page = if folio == self.folio { page } else { 0 };
        ctx.ptl_lock(mm, vpn);
        let mut zero = false;
        if ctx.pte_load(mm, vpn) == entry {
            zero = self.try_to_map_unused_to_zeropage(ctx, mm, vpn, folio, folio_page);
            if !zero {
                self.remove_migration_pte(ctx, mm, vpn, folio, folio_page, entry);
            }
        }
        ctx.ptl_unlock(mm, vpn);
        ctx.event("remove_migration_pte", "set_pte_at", |_| {
            let target = if zero { "the shared zero page".to_string() } else { format!("folio {folio}") };
            format!("{:#x}: page {page} of the THP -> {target}", vpn << PAGE_SHIFT)
        });
        Flow::Continue
    }

    /// mm/migrate.c: remove_migration_pte() for one entry: the page's folio gains the mapping
    /// and a reference; exclusivity, and since 2e3468778dbe (6.1) the young and dirty bits,
    /// come back from the entry (before, the PTE came back old and clean).
    fn remove_migration_pte(&self, ctx: &mut Ctx, mm: MmId, vpn: u64, folio: FolioId, page: usize, entry: Pte) {
        let Pte::Migration { write, exclusive, young, dirty, .. } = entry else { unreachable!("a migration entry") };
        ctx.ref_add(folio, 1, Ordering::Relaxed);
        ctx.page_mapcount_add(folio, page, 1);
        // "if (folio_test_anon(folio) && !is_readable_migration_entry(entry))
        // rmap_flags |= RMAP_EXCLUSIVE;"
        if write || exclusive {
            ctx.anon_exclusive_store(folio, page, true);
        }
        // "if (folio_test_dirty(folio) && is_migration_entry_dirty(entry)) pte_mkdirty()".
        let dirty = dirty && ctx.flag_test(folio, PageFlag::Dirty);
        let present = PresentPte { pfn: folio_pfn(folio, page), write, dirty, young, special: false };
        ctx.pte_store(mm, vpn, Pte::Present(present));
    }

    /// mm/migrate.c: try_to_map_unused_to_zeropage() (b1f202060afe, 6.12): after a successful
    /// split, a zero-filled page is mapped to the shared zero page instead and its folio
    /// loses the mapping (and is freed with the split's last reference).
    fn try_to_map_unused_to_zeropage(&self, ctx: &mut Ctx, mm: MmId, vpn: u64, folio: FolioId, page: usize) -> bool {
        if self.result < 0 || !ctx.patched(Patch::ThpSplitRemapZeropage) {
            return false;
        }
        let locked = ctx.vmas(mm).iter().any(|v| v.contains(vpn << PAGE_SHIFT) && v.flags & vm_flags::VM_LOCKED != 0);
        if locked || !ctx.data_load(folio, page).is_zero() {
            return false;
        }
        let zero = PresentPte {
            pfn: folio_pfn(crate::folio::ZERO_FOLIO, 0),
            write: false,
            dirty: false,
            young: true,
            special: true,
        };
        ctx.pte_store(mm, vpn, Pte::Present(zero));
        ctx.rss_add(mm, true, -1);
        true
    }

    /// "unlock_page(subpage); put_page(subpage)" for every page but the head: tails nobody
    /// mapped again are freed. One step: only the LRU could reach those pages meanwhile.
    fn unlock_tails(&mut self, ctx: &mut Ctx) -> Flow {
        for &folio in &self.pages[1..] {
            ctx.flag_store(folio, PageFlag::Locked, false);
            folio_put(ctx, folio);
        }
        let tails = &self.pages[1..];
        ctx.event("__split_huge_page", "unlock_page, put_page", |k| {
            let freed = tails.iter().filter(|&&f| !k.folio(f).allocated).count();
            format!("{freed} unmapped tail(s) freed")
        });
        Flow::goto(&mut self.stage, SplitStage::Unlock)
    }
}

impl KernelFunction for SplitHugePage {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            SplitStage::LockAnonVma => self.lock_anon_vma(ctx),
            SplitStage::CanSplit => self.can_split(ctx),
            SplitStage::Unmap => self.unmap(ctx),
            SplitStage::Freeze => self.freeze(ctx),
            SplitStage::LockLruvec => {
                ctx.event("__split_huge_page", "lock_page_lruvec", |_| String::new());
                Flow::goto(&mut self.stage, SplitStage::Tail)
            }
            SplitStage::Tail => self.tails(ctx),
            SplitStage::ClearCompound => self.clear_compound(ctx),
            SplitStage::Remap => self.remap(ctx),
            SplitStage::UnlockTails => self.unlock_tails(ctx),
            SplitStage::Unlock => {
                if let Some(anon_vma) = self.anon_vma.take() {
                    ctx.anon_vma_unlock_write(anon_vma);
                }
                let result = self.result;
                ctx.event("split_huge_page_to_list", "anon_vma_unlock_write", |_| format!("returns {result}"));
                Flow::Return(result)
            }
        }
    }

    fn wait(&self, k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            SplitStage::Remap => {
                match self.remap.last().and_then(|&page| migration_entries(k, self.old_pfn(page)).first().copied()) {
                    Some((mm, vpn, _)) => Wait::PteLock(mm, vpn),
                    None => Wait::Nothing,
                }
            }
            SplitStage::LockAnonVma => match k.folio(self.folio).mapping {
                Mapping::Anon(anon_vma) => Wait::AnonVmaWrite(anon_vma),
                _ => Wait::Nothing,
            },
            SplitStage::Unmap => match self.targets.get(self.target) {
                Some(&(mm, start)) => {
                    let vma = k.mms[mm as usize].vmas.iter().find(|v| v.start == start);
                    let index = k.folio(self.folio).index;
                    match vma.and_then(|v| (0..HPAGE_PMD_NR).find_map(|i| v.address_of_index(index + i))) {
                        Some(address) => Wait::PteLock(mm, address >> PAGE_SHIFT),
                        None => Wait::Nothing,
                    }
                }
                None => Wait::Nothing,
            },
            _ => Wait::Nothing,
        }
    }
}

/// The migration entries naming `pfn`: (mm, vpn, the entry), for enabledness.
fn migration_entries(k: &crate::state::Kernel, pfn: Pfn) -> Vec<(MmId, u64, Pte)> {
    let mut found = Vec::new();
    for (mm, m) in k.mms.iter().enumerate() {
        for &(vpn, pte) in &m.ptes {
            if matches!(pte, Pte::Migration { pfn: p, .. } if p == pfn) {
                found.push((mm as MmId, vpn, pte));
            }
        }
    }
    found
}
