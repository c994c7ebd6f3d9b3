//! mm/madvise.c: do_madvise() for MADV_DONTNEED, MADV_FREE, MADV_COLD and MADV_PAGEOUT on
//! anonymous memory, MADV_POPULATE_(READ|WRITE), and MADV_HUGEPAGE (madvise_update_vma():
//! VM_HUGEPAGE, under the mmap write lock): one function per behaviour, as
//! madvise_vma_behavior() dispatches; FREE, COLD and PAGEOUT walk the page tables with their
//! walk ops (madvise_free_walk_ops, cold_walk_ops) in mm/pagewalk.rs's [`PteWalk`].

use crate::access::Ctx;
use crate::folio::{PageFlag, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::{vm_normal_folio, Zap};
use crate::mm::pagewalk::{NoMore, PmdDone, PteWalk, WalkOps, Walked};
use crate::mm::swap::folio_mark_lazyfree;
use crate::pgtable::{PresentPte, Pte};
use crate::program::Advice;
use crate::state::{vm_flags, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MadviseStage {
    Lock,
    /// madvise_walk_vmas(): the next VMA's part of the range, to madvise_vma_behavior().
    NextRange,
    /// walk_page_range() with the behaviour's walk ops (madvise_free_walk_ops, cold_walk_ops):
    /// lock a table, one PTE per step, unlock at the end of the table or of the range.
    Walk(PteWalk<NoMore>),
    /// madvise_populate() → faultin_page_range(): the page `cursor` of `cursor..end` (page
    /// numbers), faulted in if it needs it.
    Populate {
        cursor: u64,
        end: u64,
    },
    Unlock,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Madvise {
    pub mm: MmId,
    pub start: u64,
    pub length: u64,
    pub advice: Advice,
    pub stage: MadviseStage,
    /// The parts of the range covered by VMAs, still to do (madvise_walk_vmas()'s iterator).
    pub ranges: Vec<(u64, u64)>,
    pub result: i64,
}

impl Madvise {
    pub fn new(mm: MmId, start: u64, length: u64, advice: Advice) -> Self {
        Madvise { mm, start, length, advice, stage: MadviseStage::Lock, ranges: Vec::new(), result: 0 }
    }

    /// do_madvise(): argument checks, madvise_lock() (mmap_read_lock(), or mmap_write_lock() for
    /// MADV_HUGEPAGE), madvise_walk_vmas() (a hole in the
    /// range gives -ENOMEM after the rest is done).
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        // mm/madvise.c: do_madvise(): "if (len_in && !len) return -EINVAL;" (PAGE_ALIGN()
        // wrapped), "if (end < start) return -EINVAL;".
        let length = crate::mm::mmap::page_align(self.length);
        let end = self.start.wrapping_add(length);
        if !self.start.is_multiple_of(PAGE_SIZE) || (self.length != 0 && length == 0) || end < self.start {
            return Flow::Return(-errno::EINVAL);
        }
        if end == self.start {
            return Flow::Return(0);
        }
        if madvise_need_mmap_write(self.advice) {
            ctx.mmap_write_lock(self.mm);
        } else {
            ctx.mmap_read_lock(self.mm);
        }
        let start = self.start;
        let vmas = ctx.vmas(self.mm).to_vec();
        let mut covered = 0;
        for vma in vmas.iter().filter(|v| v.start < end && v.end > start) {
            let range = (vma.start.max(start), vma.end.min(end));
            covered += range.1 - range.0;
            self.ranges.push(range);
        }
        if covered != end - start {
            self.result = -errno::ENOMEM;
        }
        if matches!(self.advice, Advice::PopulateRead | Advice::PopulateWrite) {
            self.populate_ranges(&vmas, start);
        }
        // madvise_cold() and madvise_pageout() start with lru_add_drain() (madvise_free_single_vma()
        // drains per VMA, in next_range()).
        if matches!(self.advice, Advice::Cold | Advice::PageOut) {
            crate::mm::swap::lru_add_drain(ctx);
        }
        let advice = self.advice;
        // madvise_lock(): madvise_need_mmap_write() behaviours take mmap_write_lock_killable().
        let label = if madvise_need_mmap_write(advice) { "mmap_write_lock" } else { "mmap_read_lock" };
        ctx.event("do_madvise", label, |_| format!("{} [{start:#x}, {end:#x})", advice.name()));
        Flow::goto(&mut self.stage, MadviseStage::NextRange)
    }

    /// madvise_update_vma() → hugepage_madvise(): VM_HUGEPAGE on the range (VMAs split at its
    /// ends; a driver's VMA keeps its flags: hugepage_madvise() leaves VM_PFNMAP/MIXEDMAP alone
    /// in effect, as no THP can be faulted there).
    fn hugepage_madvise(&mut self, ctx: &mut Ctx, start: u64, end: u64) -> Flow {
        ctx.vma_modify(self.mm, start, end, |vma| {
            vma.flags = (vma.flags | vm_flags::VM_HUGEPAGE) & !vm_flags::VM_NOHUGEPAGE;
        });
        ctx.event("madvise_update_vma", "VM_HUGEPAGE", |_| format!("[{start:#x}, {end:#x})"));
        Flow::Continue
    }

    /// madvise_vma_behavior(): MADV_WIPEONFORK sets VM_WIPEONFORK, "only supported on
    /// anonymous memory" (a file or shared VMA ends the walk with -EINVAL); MADV_KEEPONFORK
    /// clears it (its VM_DROPPABLE refusal has no VMA to refuse in the model). Then
    /// madvise_update_vma() splits the VMA at the range's ends.
    fn wipeonfork(&mut self, ctx: &mut Ctx, start: u64, end: u64) -> Flow {
        let wipe = self.advice == Advice::WipeOnFork;
        let vma = ctx.vmas(self.mm).iter().find(|v| v.contains(start)).cloned().expect("a range of a VMA");
        if wipe && (vma.file.is_some() || vma.device.is_some() || vma.flags & vm_flags::VM_SHARED != 0) {
            self.result = -errno::EINVAL;
            self.ranges.clear();
            ctx.event("madvise_vma_behavior", "-EINVAL", |_| {
                format!("MADV_WIPEONFORK [{start:#x}, {end:#x}): not anonymous")
            });
            return Flow::goto(&mut self.stage, MadviseStage::Unlock);
        }
        ctx.vma_modify(self.mm, start, end, |vma| {
            vma.flags = if wipe { vma.flags | vm_flags::VM_WIPEONFORK } else { vma.flags & !vm_flags::VM_WIPEONFORK };
        });
        let label = if wipe { "VM_WIPEONFORK" } else { "~VM_WIPEONFORK" };
        ctx.event("madvise_update_vma", label, |_| format!("[{start:#x}, {end:#x})"));
        Flow::Continue
    }

    /// madvise_walk_vmas(): the next part of the range, to madvise_vma_behavior().
    fn next_range(&mut self, ctx: &mut Ctx) -> Flow {
        if self.ranges.is_empty() {
            return Flow::goto(&mut self.stage, MadviseStage::Unlock);
        }
        let (start, end) = self.ranges.remove(0);
        self.madvise_vma_behavior(ctx, start, end)
    }

    /// madvise_vma_behavior(): one VMA's part of the range, by behaviour (the populates are
    /// madvise_populate()'s, VMA by VMA in the model as in the kernel).
    fn madvise_vma_behavior(&mut self, ctx: &mut Ctx, start: u64, end: u64) -> Flow {
        let advice = self.advice;
        if advice == Advice::HugePage {
            return self.hugepage_madvise(ctx, start, end);
        }
        if matches!(advice, Advice::WipeOnFork | Advice::KeepOnFork) {
            return self.wipeonfork(ctx, start, end);
        }
        if matches!(advice, Advice::PopulateRead | Advice::PopulateWrite) {
            return Flow::goto(
                &mut self.stage,
                MadviseStage::Populate { cursor: start >> PAGE_SHIFT, end: end >> PAGE_SHIFT },
            );
        }
        let vma = ctx.vmas(self.mm).iter().find(|v| v.contains(start)).cloned().expect("a range of a VMA");
        match advice {
            Advice::DontNeed => self.madvise_dontneed_single_vma(ctx, &vma, start, end),
            Advice::Free => self.madvise_free_single_vma(ctx, &vma, start, end),
            Advice::Cold => self.madvise_cold(start, end),
            Advice::PageOut => self.madvise_pageout(start, end),
            Advice::HugePage
            | Advice::PopulateRead
            | Advice::PopulateWrite
            | Advice::WipeOnFork
            | Advice::KeepOnFork => unreachable!("handled above"),
        }
    }

    /// madvise_dontneed_free(): a VMA madvise_dontneed_free_valid_vma() refuses ends the walk
    /// with -EINVAL (madvise_walk_vmas(): a VMA's error is the result).
    fn dontneed_free_invalid(&mut self, ctx: &mut Ctx, start: u64, end: u64) -> Flow {
        self.result = -errno::EINVAL;
        self.ranges.clear();
        let advice = self.advice.name();
        ctx.event("madvise_dontneed_free", "-EINVAL", |_| format!("{advice} [{start:#x}, {end:#x})"));
        Flow::goto(&mut self.stage, MadviseStage::Unlock)
    }

    /// madvise_dontneed_single_vma() → zap_page_range_single().
    fn madvise_dontneed_single_vma(&mut self, ctx: &mut Ctx, vma: &Vma, start: u64, end: u64) -> Flow {
        if !self.dontneed_free_valid(vma) {
            return self.dontneed_free_invalid(ctx, start, end);
        }
        Flow::Call(Frame::Zap(Zap::new(self.mm, start, end)))
    }

    /// madvise_free_single_vma(): lru_add_drain(), then walk_page_range() with
    /// madvise_free_walk_ops.
    fn madvise_free_single_vma(&mut self, ctx: &mut Ctx, vma: &Vma, start: u64, end: u64) -> Flow {
        if !self.dontneed_free_valid(vma) {
            return self.dontneed_free_invalid(ctx, start, end);
        }
        crate::mm::swap::lru_add_drain(ctx);
        Flow::goto(&mut self.stage, MadviseStage::Walk(PteWalk::new(start >> PAGE_SHIFT, end >> PAGE_SHIFT)))
    }

    /// madvise_cold() → madvise_cold_page_range(): walk_page_range() with cold_walk_ops
    /// (lru_add_drain() was done at the start, in lock()).
    fn madvise_cold(&mut self, start: u64, end: u64) -> Flow {
        Flow::goto(&mut self.stage, MadviseStage::Walk(PteWalk::new(start >> PAGE_SHIFT, end >> PAGE_SHIFT)))
    }

    /// madvise_pageout() → madvise_pageout_page_range(): walk_page_range() with cold_walk_ops,
    /// `pageout` set (lru_add_drain() was done at the start, in lock()).
    fn madvise_pageout(&mut self, start: u64, end: u64) -> Flow {
        Flow::goto(&mut self.stage, MadviseStage::Walk(PteWalk::new(start >> PAGE_SHIFT, end >> PAGE_SHIFT)))
    }

    /// One step of the page-table walk, with the behaviour's walk ops.
    fn walk(&mut self, ctx: &mut Ctx) -> Flow {
        let MadviseStage::Walk(walk) = &mut self.stage else { unreachable!("the walk's stage") };
        let walked = match self.advice {
            Advice::Free | Advice::Cold | Advice::PageOut => {
                walk.step(ctx, &mut MadviseWalk { mm: self.mm, advice: self.advice })
            }
            Advice::DontNeed
            | Advice::HugePage
            | Advice::PopulateRead
            | Advice::PopulateWrite
            | Advice::WipeOnFork
            | Advice::KeepOnFork => {
                unreachable!("only MADV_FREE, COLD and PAGEOUT walk")
            }
        };
        match walked {
            Walked::Walking(None) => Flow::Continue,
            Walked::Walking(Some(callee)) => Flow::Call(callee),
            Walked::Done(callee) => {
                let next = Flow::goto(&mut self.stage, MadviseStage::NextRange);
                callee.map_or(next, Flow::Call)
            }
        }
    }

    /// madvise_dontneed_free_valid_vma(): not VM_PFNMAP or VM_LOCKED; and for MADV_FREE,
    /// madvise_free_single_vma(): "MADV_FREE works for only anon vma at the moment".
    fn dontneed_free_valid(&self, vma: &Vma) -> bool {
        vma.flags & (vm_flags::VM_PFNMAP | vm_flags::VM_LOCKED) == 0
            && (self.advice != Advice::Free || vma.is_anonymous())
    }

    /// madvise_populate(): VMA by VMA from the start until a hole (-ENOMEM there, after the
    /// pages before it are populated) or a VMA that forbids the access (-EINVAL:
    /// "Incompatible mappings / permissions").
    fn populate_ranges(&mut self, vmas: &[Vma], start: u64) {
        let write = self.advice == Advice::PopulateWrite;
        let mut expected = start;
        let mut kept = Vec::new();
        for &(from, to) in &self.ranges {
            if from != expected {
                self.result = -errno::ENOMEM;
                break;
            }
            let vma = vmas.iter().find(|v| v.contains(from)).expect("a range of a VMA");
            let needed = if write { vm_flags::VM_WRITE } else { vm_flags::VM_READ };
            if vma.flags & needed == 0 || vma.flags & (vm_flags::VM_IO | vm_flags::VM_PFNMAP) != 0 {
                self.result = -errno::EINVAL;
                break;
            }
            kept.push((from, to));
            expected = to;
        }
        self.ranges = kept;
    }

    /// faultin_page_range(): GUP with FOLL_TOUCH and no reference kept: a page that is not
    /// mapped (or, for MADV_POPULATE_WRITE, not writable) is faulted in, one per step.
    fn populate(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        let MadviseStage::Populate { cursor, end } = &mut self.stage else { unreachable!("the populate stage") };
        if let Some(result) = returned {
            if result & (crate::mm::memory::VM_FAULT_SIGSEGV | crate::mm::memory::VM_FAULT_SIGBUS) != 0 {
                self.result = -errno::EFAULT;
                self.ranges.clear();
                return Flow::goto(&mut self.stage, MadviseStage::Unlock);
            }
        }
        if *cursor == *end {
            return Flow::goto(&mut self.stage, MadviseStage::NextRange);
        }
        let (mm, vpn) = (self.mm, *cursor);
        let address = vpn << PAGE_SHIFT;
        let write = self.advice == Advice::PopulateWrite;
        let huge = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address));
        let mapped = match huge {
            Some(pmd) => !write || pmd.write,
            None => ctx.pte_load(mm, vpn).present().is_some_and(|p| !write || p.write),
        };
        if mapped {
            *cursor += 1;
            return Flow::Continue;
        }
        ctx.event("faultin_page_range", "faultin_page", |_| format!("{address:#x}"));
        Flow::Call(Frame::Fault(crate::mm::memory::Fault::new(mm, address, write, false)))
    }
}

/// The kernel function that walks the PTEs for an advice.
fn pte_range_function(advice: Advice) -> &'static str {
    match advice {
        Advice::Free => "madvise_free_pte_range",
        _ => "madvise_cold_or_pageout_pte_range",
    }
}

/// pte_offset_map_lock() in madvise_free_pte_range() / madvise_cold_or_pageout_pte_range().
fn pte_table_locked(ctx: &mut Ctx, advice: Advice, cursor: u64) {
    let address = cursor << PAGE_SHIFT;
    ctx.event(pte_range_function(advice), "pte_offset_map_lock", |_| format!("{address:#x}"));
}

/// pte_unmap_unlock() in madvise_free_pte_range() / madvise_cold_or_pageout_pte_range().
fn pte_table_unlocked(ctx: &mut Ctx, advice: Advice) {
    ctx.event(pte_range_function(advice), "pte_unmap_unlock", |_| String::new());
}

/// madvise_free_huge_pmd() / the huge PMD branch of madvise_cold_or_pageout_pte_range(), under
/// the PMD lock: a THP mapped only here and covered whole (`cursor..end` is the range's part of
/// the table) is marked lazyfree, or aged and deactivated (COLD), or isolated for reclaim
/// (PAGEOUT); the huge zero PMD and shared THPs are left alone; part of a THP would be split
/// first (not modelled).
fn huge_pmd(ctx: &mut Ctx, mm: MmId, advice: Advice, index: u64, pmd: PresentPte, cursor: u64, end: u64) {
    let first = index * crate::pgtable::PTRS_PER_PTE;
    let address = first << PAGE_SHIFT;
    let function = if advice == Advice::Free { "madvise_free_huge_pmd" } else { pte_range_function(advice) };
    let folio = crate::folio::pfn_folio(pmd.pfn);
    if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) || ctx.mapcount_load(folio) != 1 {
        ctx.event(function, "pmd", |_| format!("{address:#x}: huge zero or shared THP: skipped"));
        return;
    }
    let whole = cursor == first && end == first + crate::pgtable::PTRS_PER_PTE;
    if !whole {
        let message = format!("not modelled: {} of part of a PMD-mapped THP (split_folio)", advice.name());
        ctx.violation(crate::violation::Violation::new(crate::violation::ViolationKind::Invariant, message));
        return;
    }
    let what = match advice {
        Advice::Free => free_huge_pmd(ctx, mm, index, pmd),
        _ => cold_huge_pmd(ctx, mm, advice == Advice::PageOut, index, pmd),
    };
    ctx.event(function, "pmd", |k| format!("{address:#x}: {what} {}", k.folio(folio).dump(folio)));
}

/// madvise_free_huge_pmd(): "if (!folio_trylock(folio)) goto out;", clear the folio's dirty
/// flag, make the PMD old and clean, folio_mark_lazyfree().
fn free_huge_pmd(ctx: &mut Ctx, mm: MmId, index: u64, pmd: PresentPte) -> &'static str {
    let folio = crate::folio::pfn_folio(pmd.pfn);
    if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
        return "folio locked: skipped";
    }
    ctx.flag_store(folio, PageFlag::Dirty, false);
    ctx.flag_store(folio, PageFlag::Locked, false);
    if pmd.young || pmd.dirty {
        ctx.pmd_store(mm, index, Some(PresentPte { young: false, dirty: false, ..pmd }));
    }
    folio_mark_lazyfree(ctx, folio);
    "lazyfree"
}

/// The huge PMD branch of madvise_cold_or_pageout_pte_range(): COLD makes the PMD old; both
/// clear PG_referenced; COLD deactivates, PAGEOUT isolates for reclaim_pages().
fn cold_huge_pmd(ctx: &mut Ctx, mm: MmId, pageout: bool, index: u64, pmd: PresentPte) -> &'static str {
    let folio = crate::folio::pfn_folio(pmd.pfn);
    if !pageout && pmd.young {
        ctx.pmd_store(mm, index, Some(PresentPte { young: false, ..pmd }));
    }
    ctx.flag_store(folio, PageFlag::Referenced, false);
    if !pageout {
        crate::mm::swap::folio_deactivate(ctx, folio);
        return "deactivated";
    }
    if crate::mm::swap::folio_isolate_lru(ctx, folio) {
        ctx.local().folio_list.make_mut().push(folio);
        return "isolated";
    }
    "not on the LRU: skipped"
}

/// mm/madvise.c: the walk ops of the behaviours that walk page tables: madvise_free_walk_ops,
/// whose pmd_entry is madvise_free_pte_range(), and cold_walk_ops, whose pmd_entry is
/// madvise_cold_or_pageout_pte_range() (6.10 and later: MADV_PAGEOUT leaves the young bit and
/// reclaim_pages() ignores references). They share the huge PMD branch and the table's lock and
/// unlock; a PTE's work is the behaviour's.
struct MadviseWalk {
    mm: MmId,
    /// MADV_FREE, MADV_COLD or MADV_PAGEOUT (madvise_walk_private's `pageout`).
    advice: Advice,
}

impl MadviseWalk {
    /// One PTE of madvise_free_pte_range().
    fn free_pte_entry(&mut self, ctx: &mut Ctx, vpn: u64) -> Option<NoMore> {
        let mm = self.mm;
        let address = vpn << PAGE_SHIFT;
        let pte = ctx.pte_load(mm, vpn);
        let mut what = "none";
        if let Some((present, folio)) = pte.present().and_then(|p| vm_normal_folio(p).map(|f| (p, f))) {
            if ctx.folio_test_large(folio) {
                let message = format!("not modelled: {} of a large folio (split_folio)", Advice::Free.name());
                ctx.violation(crate::violation::Violation::new(crate::violation::ViolationKind::Invariant, message));
                return None;
            }
            what = "lazyfree";
            if ctx.flag_test(folio, PageFlag::Swapcache) || ctx.flag_test(folio, PageFlag::Dirty) {
                // "if (!folio_trylock(folio)) continue;" and "If the folio is shared with others,
                // we mustn't clear the folio's dirty flag."
                if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
                    what = "folio locked: skipped";
                } else if ctx.mapcount_load(folio) != 1 {
                    ctx.flag_store(folio, PageFlag::Locked, false);
                    what = "shared: skipped";
                } else {
                    ctx.flag_store(folio, PageFlag::Dirty, false);
                    ctx.flag_store(folio, PageFlag::Locked, false);
                }
            }
            if what == "lazyfree" {
                if present.young || present.dirty {
                    // clear_young_dirty_ptes(): mkold, mkclean.
                    ctx.pte_store(mm, vpn, Pte::Present(PresentPte { young: false, dirty: false, ..present }));
                }
                folio_mark_lazyfree(ctx, folio);
            }
        } else if !pte.is_none() && pte.present().is_none() {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: MADV_FREE of a swap entry",
            ));
        }
        ctx.event("madvise_free_pte_range", "pte", |k| {
            let detail = pte.present().and_then(vm_normal_folio).map(|f| k.folio(f).dump(f)).unwrap_or_default();
            format!("{address:#x}: {what} {detail}")
        });
        None
    }

    /// One PTE of madvise_cold_or_pageout_pte_range().
    fn cold_pte_entry(&mut self, ctx: &mut Ctx, vpn: u64, end: u64) -> Option<NoMore> {
        let mm = self.mm;
        let address = vpn << PAGE_SHIFT;
        let pageout = self.advice == Advice::PageOut;
        let pte = ctx.pte_load(mm, vpn);
        let mut what = "skipped";
        if let Some((present, folio)) = pte.present().and_then(|p| vm_normal_folio(p).map(|f| (p, f))) {
            let nr = ctx.folio_nr_pages(folio) as u64;
            if nr > 1 {
                // folio_pte_batch(): the whole large folio mapped from here, inside the range,
                // is handled at its first PTE and its other PTEs skipped; anything less would
                // be split first.
                let page = crate::folio::pfn_page(present.pfn) as u64;
                if page != 0 {
                    ctx.event("madvise_cold_or_pageout_pte_range", "pte", |_| format!("{address:#x}: batched"));
                    return None;
                }
                let whole = vpn + nr <= end
                    && (1..nr).all(|i| ctx.pte_load(mm, vpn + i).present().is_some_and(|p| p.pfn == present.pfn + i));
                if !whole {
                    let message =
                        format!("not modelled: {} of part of a large folio (split_folio)", self.advice.name());
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        message,
                    ));
                    return None;
                }
            }
            // "Do not interfere with other mappings of this folio": "if (!folio_test_lru(folio)
            // || folio_mapcount(folio) != folio_nr_pages(folio)) continue;"
            if ctx.flag_test(folio, PageFlag::Lru) && ctx.mapcount_load(folio) == nr as i32 {
                if !pageout && present.young {
                    ctx.pte_store(mm, vpn, Pte::Present(PresentPte { young: false, ..present }));
                }
                ctx.flag_store(folio, PageFlag::Referenced, false);
                if ctx.flag_test(folio, PageFlag::Active) {
                    ctx.flag_store(folio, PageFlag::Workingset, true);
                }
                if !pageout {
                    crate::mm::swap::folio_deactivate(ctx, folio);
                    what = "deactivated";
                } else if crate::mm::swap::folio_isolate_lru(ctx, folio) {
                    ctx.local().folio_list.make_mut().push(folio);
                    what = "isolated";
                }
            }
        }
        ctx.event("madvise_cold_or_pageout_pte_range", "pte", |_| format!("{address:#x}: {what}"));
        None
    }
}

impl WalkOps for MadviseWalk {
    type More = NoMore;

    fn mm(&self) -> MmId {
        self.mm
    }

    fn existing_only(&self) -> bool {
        false
    }

    fn pmd_entry(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte, cursor: u64, end: u64) -> PmdDone {
        huge_pmd(ctx, self.mm, self.advice, index, pmd, cursor, end);
        PmdDone::Locked
    }

    fn pte_table_locked(&mut self, ctx: &mut Ctx, cursor: u64, _end: u64) {
        pte_table_locked(ctx, self.advice, cursor);
    }

    fn pte_entry(&mut self, ctx: &mut Ctx, vpn: u64, end: u64) -> Option<NoMore> {
        match self.advice {
            Advice::Free => self.free_pte_entry(ctx, vpn),
            _ => self.cold_pte_entry(ctx, vpn, end),
        }
    }

    fn pte_entry_more(&mut self, _ctx: &mut Ctx, more: NoMore) {
        match more {}
    }

    /// For MADV_PAGEOUT, reclaim_pages() of what the table isolated.
    fn pte_table_unlocked(&mut self, ctx: &mut Ctx) -> Option<Frame> {
        pte_table_unlocked(ctx, self.advice);
        if self.advice == Advice::PageOut && !ctx.local().folio_list.is_empty() {
            return Some(Frame::ShrinkInactiveList(crate::mm::vmscan::ShrinkInactiveList::reclaim_pages()));
        }
        None
    }
}

impl KernelFunction for Madvise {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            MadviseStage::Lock => self.lock(ctx),
            MadviseStage::NextRange => self.next_range(ctx),
            MadviseStage::Walk(_) => self.walk(ctx),
            MadviseStage::Populate { .. } => self.populate(ctx, returned),
            MadviseStage::Unlock => {
                // madvise_unlock(): the lock madvise_lock() took.
                let label = if madvise_need_mmap_write(self.advice) {
                    ctx.mmap_write_unlock(self.mm);
                    "mmap_write_unlock"
                } else {
                    ctx.mmap_read_unlock(self.mm);
                    "mmap_read_unlock"
                };
                ctx.event("do_madvise", label, |_| String::new());
                Flow::Return(self.result)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match &self.stage {
            MadviseStage::Lock if madvise_need_mmap_write(self.advice) => Wait::MmapWrite(self.mm),
            MadviseStage::Lock => Wait::MmapRead(self.mm),
            MadviseStage::Walk(walk) => walk.wait(self.mm),
            _ => Wait::Nothing,
        }
    }
}

/// mm/madvise.c: get_lock_mode() (madvise_need_mmap_write() in older kernels): "Any behaviour
/// which results in changes to the vma->vm_flags needs to take mmap_lock for writing", the
/// default case (MADVISE_MMAP_WRITE_LOCK), as MADV_HUGEPAGE, MADV_WIPEONFORK and
/// MADV_KEEPONFORK do. (6.18 takes only the VMA's read lock for MADV_DONTNEED and MADV_FREE;
/// the model takes mmap_read_lock for every other behaviour.)
fn madvise_need_mmap_write(advice: Advice) -> bool {
    matches!(advice, Advice::HugePage | Advice::WipeOnFork | Advice::KeepOnFork)
}
