//! mm/gup.c: get_user_pages and pin_user_pages, fast (lockless) and slow (mmap_lock and PTE
//! lock) paths. The pages found are appended to the calling thread's `pages` array.

use crate::access::{Ctx, Ordering};
use crate::folio::{
    folio_pfn, pfn_folio, pfn_page, FolioId, PageFlag, GUP_PIN_COUNTING_BIAS, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO,
};
use crate::mm::memory::{vm_normal_folio, Fault, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV};
use crate::mm::swap::{folio_mark_dirty, folio_put_refs};
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{vm_flags, MmId};
use crate::thread::{errno, Flow, Frame, KernelFunction, ReferencedReads, Thread, Wait};
use serde::{Deserialize, Serialize};

/// The FOLL_* flags the modelled callers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupFlags {
    pub write: bool,
    /// FOLL_PIN (else FOLL_GET).
    pub pin: bool,
}

impl GupFlags {
    pub fn describe(self) -> &'static str {
        match (self.write, self.pin) {
            (true, true) => "FOLL_PIN|FOLL_WRITE",
            (false, true) => "FOLL_PIN",
            (true, false) => "FOLL_GET|FOLL_WRITE",
            (false, false) => "FOLL_GET",
        }
    }
}

/// include/linux/mm.h: folio_has_pincount(): large folios count pins in `_pincount`.
fn folio_has_pincount(ctx: &mut Ctx, folio: FolioId) -> bool {
    ctx.folio_test_large(folio)
}

/// include/linux/mm.h: folio_maybe_dma_pinned(): `_pincount` for a large folio, the refcount
/// bias for a small one.
pub fn folio_maybe_dma_pinned(ctx: &mut Ctx, folio: FolioId) -> bool {
    if folio_has_pincount(ctx, folio) {
        return ctx.pincount_load(folio) > 0;
    }
    ctx.ref_load(folio) >= GUP_PIN_COUNTING_BIAS
}

/// mm/gup.c: try_grab_folio() (slow path, under the PTE lock): FOLL_GET takes `refs`
/// references; FOLL_PIN takes `refs` and `refs` pins on a large folio, `refs` times
/// GUP_PIN_COUNTING_BIAS on a small one, nothing on the zero page ("it's not going anywhere").
pub(crate) fn try_grab_folio(ctx: &mut Ctx, folio: FolioId, refs: i32, flags: GupFlags) {
    if !flags.pin {
        ctx.ref_add(folio, refs, Ordering::Relaxed);
    } else if folio == ZERO_FOLIO {
    } else if folio_has_pincount(ctx, folio) {
        ctx.ref_add(folio, refs, Ordering::Relaxed);
        ctx.pincount_add(folio, refs, Ordering::Relaxed);
    } else {
        ctx.ref_add(folio, refs * GUP_PIN_COUNTING_BIAS, Ordering::Relaxed);
    }
}

/// mm/gup.c: gup_put_folio(): drop what try_grab_folio*() took.
pub fn gup_put_folio(ctx: &mut Ctx, folio: FolioId, refs: i32, flags: GupFlags) {
    let mut refs = refs;
    if flags.pin {
        if folio == ZERO_FOLIO {
            return;
        }
        if folio_has_pincount(ctx, folio) {
            ctx.pincount_add(folio, -refs, Ordering::Relaxed);
        } else {
            refs *= GUP_PIN_COUNTING_BIAS;
        }
    }
    folio_put_refs(ctx, folio, refs);
}

/// The entry gup_fast() read locklessly: a PTE, or the huge PMD (gup_fast_pmd_leaf()) as a
/// present entry naming the page of the THP at the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FastEntry {
    pub pte: PresentPte,
    /// Pages the entry covers: 1 for a PTE, up to the PMD's end for a huge PMD.
    pub refs: u64,
    pub pmd: bool,
}

impl FastEntry {
    /// The function of mm/gup.c that handles the entry.
    fn function(self) -> &'static str {
        if self.pmd {
            "gup_fast_pmd_leaf"
        } else {
            "gup_fast_pte_range"
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GupFastStage {
    ReadPte,
    Grab(FastEntry),
    /// The entry and the folio grabbed (page_folio() of the page when the reference was taken).
    PinBias(FastEntry, FolioId),
    Recheck(FastEntry, FolioId),
}

/// mm/gup.c: gup_fast_folio_allowed(), as built with CONFIG_SECRETMEM=y (as the live kernel is). No
/// modelled caller passes FOLL_LONGTERM, so a file folio is never refused for its writeback
/// ("reject_file_backed"); a large folio is never secretmem's, so it is allowed at once. A
/// small folio's mapping is read once ("mapping = READ_ONCE(folio->mapping)", under the grabbed
/// reference): none (a driver's page, a folio truncated meanwhile) falls back to the slow path,
/// an anonymous one is allowed, and a file one too (the model has no secretmem mapping). The
/// slab and hugetlb tests before it have no folio to refuse here.
fn gup_fast_folio_allowed(ctx: &mut Ctx, folio: FolioId) -> bool {
    if ctx.folio_test_large(folio) {
        return true;
    }
    !matches!(ctx.mapping_load(folio).0, crate::folio::Mapping::None)
}

/// mm/internal.h: gup_must_unshare() for a read-only entry mapping `page` of `folio`: a
/// FOLL_PIN without FOLL_WRITE of an anonymous page that is not exclusive must unshare it first
/// (the huge zero folio is not anonymous; a R/O pin of a file page is FOLL_LONGTERM's concern,
/// which no modelled caller passes).
fn gup_must_unshare(ctx: &mut Ctx, flags: GupFlags, folio: FolioId, page: usize) -> bool {
    if flags.write || !flags.pin || !ctx.flag_test(folio, PageFlag::Anon) {
        return false;
    }
    // "Paired with a memory barrier in folio_try_share_anon_rmap_*()."
    ctx.fence(crate::access::Fence::Read);
    !ctx.anon_exclusive_load(folio, page)
}

/// The pages of the range from `address` that the huge PMD covering it maps (record_subpages()).
fn pmd_pages(address: u64, pages_left: u64) -> u64 {
    let pmd_end = (address | (crate::mm::huge_memory::HPAGE_PMD_NR * PAGE_SIZE - 1)) + 1;
    pages_left.min((pmd_end - address) / PAGE_SIZE)
}

/// The PMD covering `address` as the entry of its page: the pfn of that page of the THP.
fn huge_entry(ctx: &mut Ctx, mm: MmId, address: u64) -> Option<PresentPte> {
    let pmd = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address))?;
    Some(PresentPte { pfn: pmd.pfn + (address >> PAGE_SHIFT) % PTRS_PER_PTE, ..pmd })
}

/// mm/gup.c: gup_fast() → gup_fast_pte_range() (gup_pte_range() before 6.10), with interrupts
/// off and no lock: snapshot the PTE, grab a reference, re-read the PMD and the PTE and back
/// off if either changed (or the page must be unshared). Returns how many pages it got; the
/// caller takes the slow path for the rest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupFast {
    pub mm: MmId,
    pub start: u64,
    pub nr_pages: u64,
    pub flags: GupFlags,
    pub index: u64,
    pub stage: GupFastStage,
}

impl GupFast {
    pub fn new(mm: MmId, start: u64, nr_pages: u64, flags: GupFlags) -> Self {
        GupFast { mm, start, nr_pages, flags, index: 0, stage: GupFastStage::ReadPte }
    }

    fn address(&self) -> u64 {
        self.start + self.index * PAGE_SIZE
    }

    /// gup_fast_pmd_range(): pmdp_get_lockless(), a huge PMD going to gup_fast_pmd_leaf();
    /// otherwise gup_fast_pte_range()'s ptep_get_lockless(); then pte_access_permitted() and
    /// pte_special().
    fn read_pte(&mut self, ctx: &mut Ctx) -> Flow {
        if self.index == self.nr_pages {
            return Flow::Return(self.index as i64);
        }
        let address = self.address();
        let huge = huge_entry(ctx, self.mm, address);
        let pmd = huge.is_some();
        let refs = if pmd { pmd_pages(address, self.nr_pages - self.index) } else { 1 };
        let pte = match huge {
            Some(entry) => Pte::Present(entry),
            None => ctx.pte_load_lockless(self.mm, address >> PAGE_SHIFT),
        };
        let usable = pte.present().filter(|p| !p.special && (!self.flags.write || p.write));
        let function = if pmd { "gup_fast_pmd_leaf" } else { "gup_fast_pte_range" };
        ctx.event(function, "ptep_get_lockless", |_| {
            format!(
                "{address:#x}: PTE {}{}",
                pte.describe(),
                if usable.is_some() { "" } else { ": fall back to the slow path" }
            )
        });
        match usable {
            Some(pte) => Flow::goto(&mut self.stage, GupFastStage::Grab(FastEntry { pte, refs, pmd })),
            None => Flow::Return(self.index as i64),
        }
    }

    /// try_grab_folio_fast() → try_get_folio(): folio_ref_try_add() of every page the entry
    /// covers, a fully ordered atomic that fails on a frozen (refcount 0) folio.
    fn grab(&mut self, ctx: &mut Ctx, entry: FastEntry) -> Flow {
        // try_get_folio(): "folio = page_folio(page)", re-checked after the reference is taken
        // (a split may have made the page a folio of its own).
        let (folio, _) = ctx.page_folio_load(entry.pte.pfn);
        let got = ctx.ref_add_unless_zero(folio, entry.refs as i32);
        let flags = self.flags;
        ctx.event(entry.function(), "try_grab_folio_fast", |k| {
            if got {
                format!("folio {folio} refcount {} ({})", k.folio(folio).refcount, flags.describe())
            } else {
                format!("folio {folio} frozen: fall back to the slow path")
            }
        });
        if !got {
            return Flow::Return(self.index as i64);
        }
        let next =
            if self.flags.pin { GupFastStage::PinBias(entry, folio) } else { GupFastStage::Recheck(entry, folio) };
        Flow::goto(&mut self.stage, next)
    }

    /// FOLL_PIN: "atomic_add(refs, &folio->_pincount)" on a large folio, else
    /// "folio_ref_add(folio, refs * (GUP_PIN_COUNTING_BIAS - 1))": a second atomic after the
    /// references.
    fn pin_bias(&mut self, ctx: &mut Ctx, entry: FastEntry, folio: FolioId) -> Flow {
        let refs = entry.refs as i32;
        if folio_has_pincount(ctx, folio) {
            ctx.pincount_add(folio, refs, Ordering::Relaxed);
        } else {
            ctx.ref_add(folio, refs * (GUP_PIN_COUNTING_BIAS - 1), Ordering::Relaxed);
        }
        ctx.fence(crate::access::Fence::Full);
        ctx.event("try_grab_folio_fast", "folio_ref_add pin bias", |k| {
            format!("folio {folio} refcount {}", k.folio(folio).refcount)
        });
        Flow::goto(&mut self.stage, GupFastStage::Recheck(entry, folio))
    }

    /// The checks after the grab, in the kernel's order (gup_fast_pte_range() and
    /// gup_fast_pmd_leaf() alike): back off if the entry changed, then
    /// gup_fast_folio_allowed(), then gup_must_unshare() for a read-only entry; else
    /// folio_set_referenced() and the pages are recorded.
    fn recheck(&mut self, ctx: &mut Ctx, entry: FastEntry, folio: FolioId) -> Flow {
        let address = self.address();
        let function = entry.function();
        if let Some(now) = self.entry_changed(ctx, entry) {
            gup_put_folio(ctx, folio, entry.refs as i32, self.flags);
            ctx.event(function, "recheck", |_| format!("{address:#x}: {now}: put folio {folio}, slow path"));
            return Flow::Return(self.index as i64);
        }
        if !gup_fast_folio_allowed(ctx, folio) {
            gup_put_folio(ctx, folio, entry.refs as i32, self.flags);
            ctx.event(function, "gup_fast_folio_allowed", |_| {
                format!("{address:#x}: folio {folio} has no mapping: put, slow path")
            });
            return Flow::Return(self.index as i64);
        }
        // "if (!pte_write(pte) && gup_must_unshare(NULL, flags, page))"; gup_fast_pmd_leaf()
        // asks of the head page ("&folio->page").
        let page = if entry.pmd { 0 } else { pfn_page(entry.pte.pfn) };
        if !entry.pte.write && gup_must_unshare(ctx, self.flags, folio, page) {
            gup_put_folio(ctx, folio, entry.refs as i32, self.flags);
            ctx.event(function, "gup_must_unshare", |_| {
                format!("{address:#x}: folio {folio} not exclusive: put, slow path")
            });
            return Flow::Return(self.index as i64);
        }
        ctx.flag_store(folio, PageFlag::Referenced, true);
        let pfns = (0..entry.refs).map(|page| entry.pte.pfn + page);
        ctx.local().pages.make_mut().extend(pfns);
        let refs = entry.refs;
        ctx.event(function, "recheck", |_| match entry.pmd {
            true => format!("{address:#x}: PMD unchanged, got THP folio {folio} ({refs} page(s))"),
            false => format!("{address:#x}: PTE unchanged, got folio {folio}"),
        });
        self.index += entry.refs;
        Flow::goto(&mut self.stage, GupFastStage::ReadPte)
    }

    /// gup_fast_pmd_leaf(): "if (unlikely(pmd_val(orig) != pmd_val(pmdp_get_lockless(pmdp))))";
    /// gup_fast_pte_range(): "if (unlikely(pmd_val(pmd) != pmd_val(pmdp_get_lockless(pmdp))) ||
    /// unlikely(pte_val(pte) != pte_val(ptep_get(ptep))))", the PMD read as a page table (no
    /// huge PMD). What changed, if anything.
    fn entry_changed(&self, ctx: &mut Ctx, entry: FastEntry) -> Option<String> {
        let (mm, address) = (self.mm, self.address());
        let pmd = huge_entry(ctx, mm, address);
        if entry.pmd {
            return (pmd != Some(entry.pte))
                .then(|| format!("PMD changed to {}", pmd.map_or(Pte::None, Pte::Present).describe()));
        }
        if let Some(huge) = pmd {
            return Some(format!("PMD changed to huge {}", Pte::Present(huge).describe()));
        }
        let now = ctx.pte_load_lockless(mm, address >> PAGE_SHIFT);
        (now != Pte::Present(entry.pte)).then(|| format!("PTE changed to {}", now.describe()))
    }
}

impl KernelFunction for GupFast {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            GupFastStage::ReadPte => self.read_pte(ctx),
            GupFastStage::Grab(entry) => self.grab(ctx, entry),
            GupFastStage::PinBias(entry, folio) => self.pin_bias(ctx, entry, folio),
            GupFastStage::Recheck(entry, folio) => self.recheck(ctx, entry, folio),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::Nothing
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GupSlowStage {
    Lock,
    Follow,
    /// __get_user_pages(): "if (page_increm > 1) try_grab_folio(folio, page_increm - 1, ...)"
    /// for the rest of a huge PMD's pages (`rest` of them), after the PMD lock is dropped.
    GrabRest {
        folio: FolioId,
        rest: u64,
    },
    Faulted,
    /// mmap_read_unlock(), then return what `__get_user_pages()` got.
    Unlock {
        result: i64,
    },
}

/// mm/gup.c: __get_user_pages_locked() → __get_user_pages(): under mmap_lock, follow_page_pte()
/// under the PTE lock, faultin_page() when there is no usable PTE, and retry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupSlow {
    pub mm: MmId,
    pub start: u64,
    pub nr_pages: u64,
    pub flags: GupFlags,
    pub index: u64,
    pub stage: GupSlowStage,
}

impl GupSlow {
    pub fn new(mm: MmId, start: u64, nr_pages: u64, flags: GupFlags) -> Self {
        GupSlow { mm, start, nr_pages, flags, index: 0, stage: GupSlowStage::Lock }
    }

    fn address(&self) -> u64 {
        self.start + self.index * PAGE_SIZE
    }

    /// mmap_read_lock(), then gup_vma_lookup() and check_vma_flags().
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let (start, end) = (self.start, self.start + self.nr_pages * PAGE_SIZE);
        let write = self.flags.write;
        let allowed = ctx.vmas(self.mm).iter().filter(|v| v.start < end && v.end > start).all(|v| {
            v.flags & (vm_flags::VM_IO | vm_flags::VM_PFNMAP) == 0 && (!write || v.flags & vm_flags::VM_WRITE != 0)
        });
        ctx.event("__get_user_pages", "mmap_read_lock", |_| format!("[{start:#x}, {end:#x})"));
        if !allowed {
            return Flow::goto(&mut self.stage, GupSlowStage::Unlock { result: -errno::EFAULT });
        }
        let next = if self.nr_pages == 0 { GupSlowStage::Unlock { result: 0 } } else { GupSlowStage::Follow };
        Flow::goto(&mut self.stage, next)
    }

    /// mm/gup.c: follow_pmd_mask(): a huge PMD goes to follow_huge_pmd() under the PMD lock,
    /// otherwise follow_page_pte(), one step under the PTE lock.
    fn follow(&mut self, ctx: &mut Ctx) -> Flow {
        let address = self.address();
        let vpn = address >> PAGE_SHIFT;
        if !ctx.vmas(self.mm).iter().any(|v| v.contains(address)) {
            let got = self.index as i64;
            return Flow::goto(
                &mut self.stage,
                GupSlowStage::Unlock { result: if got > 0 { got } else { -errno::EFAULT } },
            );
        }
        ctx.ptl_lock(self.mm, vpn);
        if let Some(entry) = huge_entry(ctx, self.mm, address) {
            return self.follow_huge_pmd(ctx, entry);
        }
        let pte = ctx.pte_load(self.mm, vpn);
        let page = pte.present().and_then(|p| {
            if self.flags.write && !p.write {
                return None;
            }
            // vm_normal_page() is NULL for the zero page, which a read GUP may still return.
            vm_normal_folio(p)
                .or((p.pfn == folio_pfn(ZERO_FOLIO, 0) && !self.flags.write).then_some(ZERO_FOLIO))
                .map(|f| (f, p))
        });
        let Some((folio, present)) = page else {
            ctx.ptl_unlock(self.mm, vpn);
            ctx.event("follow_page_pte", "no_page", |_| format!("{address:#x}: PTE {}: faultin_page", pte.describe()));
            return Flow::call(
                &mut self.stage,
                GupSlowStage::Faulted,
                Frame::Fault(Fault::new(self.mm, address, self.flags.write, false)),
            );
        };
        try_grab_folio(ctx, folio, 1, self.flags);
        // FOLL_TOUCH: "if ((flags & FOLL_WRITE) && !pte_dirty(pte) && !folio_test_dirty(folio))
        // folio_mark_dirty(folio)", then folio_mark_accessed().
        let mut dirtied = false;
        if folio != ZERO_FOLIO {
            if self.flags.write && !present.dirty && !ctx.flag_test(folio, PageFlag::Dirty) {
                dirtied = folio_mark_dirty(ctx, folio);
            }
            crate::mm::swap::folio_mark_accessed(ctx, folio);
        }
        ctx.ptl_unlock(self.mm, vpn);
        ctx.local().pages.make_mut().push(present.pfn);
        let flags = self.flags;
        ctx.event("follow_page_pte", "try_grab_folio", |k| {
            format!(
                "{address:#x}: folio {folio} refcount {} ({}){}",
                k.folio(folio).refcount,
                flags.describe(),
                if dirtied { ", FOLL_TOUCH: folio_mark_dirty" } else { "" }
            )
        });
        self.index += 1;
        if self.index == self.nr_pages {
            return Flow::goto(&mut self.stage, GupSlowStage::Unlock { result: self.index as i64 });
        }
        // The next page, in the next step.
        Flow::Continue
    }

    /// mm/huge_memory.c: follow_huge_pmd() under the PMD lock: no page for a write through a
    /// read-only PMD (faultin_page() unshares or splits it), else one reference on the THP and
    /// touch_pmd() (FOLL_TOUCH); the caller records every page up to the PMD's end.
    fn follow_huge_pmd(&mut self, ctx: &mut Ctx, entry: PresentPte) -> Flow {
        let (mm, address) = (self.mm, self.address());
        let vpn = address >> PAGE_SHIFT;
        if self.flags.write && !entry.write {
            ctx.ptl_unlock(mm, vpn);
            ctx.event("follow_huge_pmd", "can_follow_write_pmd", |_| format!("{address:#x}: read-only: faultin_page"));
            return Flow::call(
                &mut self.stage,
                GupSlowStage::Faulted,
                Frame::Fault(Fault::new(mm, address, true, false)),
            );
        }
        let folio = pfn_folio(entry.pfn);
        if !entry.write && gup_must_unshare(ctx, self.flags, folio, 0) {
            ctx.ptl_unlock(mm, vpn);
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: FOLL_PIN of a shared THP (gup_must_unshare, FAULT_FLAG_UNSHARE)",
            ));
            return Flow::goto(&mut self.stage, GupSlowStage::Unlock { result: -errno::EFAULT });
        }
        try_grab_folio(ctx, folio, 1, self.flags);
        // touch_pmd(): "pmd_mkyoung(*pmd); if (write) pmd_mkdirty()".
        let index = crate::mm::huge_memory::pmd_index(address);
        if let Some(pmd) = ctx.pmd_load(mm, index) {
            let touched = PresentPte { young: true, dirty: pmd.dirty || self.flags.write, ..pmd };
            ctx.pmd_store(mm, index, Some(touched));
        }
        ctx.ptl_unlock(mm, vpn);
        let refs = pmd_pages(address, self.nr_pages - self.index);
        ctx.local().pages.make_mut().extend((0..refs).map(|page| entry.pfn + page));
        let flags = self.flags;
        ctx.event("follow_huge_pmd", "try_grab_folio", |k| {
            format!(
                "{address:#x}: THP folio {folio} refcount {} ({}), {refs} page(s)",
                k.folio(folio).refcount,
                flags.describe()
            )
        });
        Flow::goto(&mut self.stage, GupSlowStage::GrabRest { folio, rest: refs - 1 })
    }

    /// __get_user_pages(): the references on the rest of the huge PMD's pages.
    fn grab_rest(&mut self, ctx: &mut Ctx, folio: FolioId, rest: u64) -> Flow {
        if rest > 0 {
            try_grab_folio(ctx, folio, rest as i32, self.flags);
            ctx.event("__get_user_pages", "try_grab_folio page_increm", |k| {
                format!("THP folio {folio}: {rest} more, refcount {}", k.folio(folio).refcount)
            });
        }
        self.index += rest + 1;
        if self.index == self.nr_pages {
            return Flow::goto(&mut self.stage, GupSlowStage::Unlock { result: self.index as i64 });
        }
        Flow::goto(&mut self.stage, GupSlowStage::Follow)
    }

    /// faultin_page() returned: a fault that failed ends the GUP, else follow the page again.
    fn faulted(&mut self, result: i64) -> Flow {
        if result & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS) != 0 {
            let got = self.index as i64;
            return Flow::goto(
                &mut self.stage,
                GupSlowStage::Unlock { result: if got > 0 { got } else { -errno::EFAULT } },
            );
        }
        Flow::goto(&mut self.stage, GupSlowStage::Follow)
    }
}

impl KernelFunction for GupSlow {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            GupSlowStage::Lock => self.lock(ctx),
            GupSlowStage::Follow => self.follow(ctx),
            GupSlowStage::GrabRest { folio, rest } => self.grab_rest(ctx, folio, rest),
            GupSlowStage::Faulted => self.faulted(returned.unwrap_or(0)),
            GupSlowStage::Unlock { result } => {
                ctx.mmap_read_unlock(self.mm);
                ctx.event("__get_user_pages", "mmap_read_unlock", |_| String::new());
                Flow::Return(result)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            GupSlowStage::Lock => Wait::MmapRead(self.mm),
            GupSlowStage::Follow => Wait::PteLock(self.mm, self.address() >> PAGE_SHIFT),
            _ => Wait::Nothing,
        }
    }

    /// follow_page_pte() marks what it pins accessed (FOLL_TOUCH): whatever gets mapped at the
    /// addresses still to pin. The modelled caller (block/fops.c's direct IO) reads no
    /// PG_referenced once GUP returned.
    fn referenced_reads<'a>(&'a self, _thread: &'a Thread, _callees: &'a [Frame]) -> ReferencedReads<'a> {
        ReferencedReads::Addresses {
            mm: self.mm,
            start: self.start + self.index * PAGE_SIZE,
            end: self.start + self.nr_pages * PAGE_SIZE,
        }
    }
}

/// The page a pfn in the `pages` array names.
pub fn page_of(pfn: crate::folio::Pfn) -> (FolioId, usize) {
    (pfn_folio(pfn), pfn_page(pfn))
}
