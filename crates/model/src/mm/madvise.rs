//! mm/madvise.c: do_madvise() for MADV_DONTNEED, MADV_FREE, MADV_COLD and MADV_PAGEOUT on
//! anonymous memory, and MADV_HUGEPAGE (madvise_update_vma(): VM_HUGEPAGE, under the mmap
//! write lock).

use crate::access::Ctx;
use crate::folio::{PageFlag, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::{vm_normal_folio, Zap};
use crate::mm::swap::folio_mark_lazyfree;
use crate::pgtable::{PresentPte, Pte};
use crate::program::Advice;
use crate::state::{vm_flags, MmId};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MadviseStage {
    Lock,
    NextRange,
    /// The page-table walk (walk_page_range() with the advice's pmd_entry): lock a table,
    /// one PTE per step, unlock at the end of the table or of the range.
    TableLock,
    Pte,
    TableUnlock,
    /// MADV_POPULATE_*: fault in the page at the cursor if it needs it.
    Populate,
    Unlock,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Madvise {
    pub mm: MmId,
    pub start: u64,
    pub length: u64,
    pub advice: Advice,
    pub stage: MadviseStage,
    /// The parts of the range covered by VMAs, still to do.
    pub ranges: Vec<(u64, u64)>,
    pub cursor: u64,
    pub range_end: u64,
    pub result: i64,
}

impl Madvise {
    pub fn new(mm: MmId, start: u64, length: u64, advice: Advice) -> Self {
        Madvise {
            mm,
            start,
            length,
            advice,
            stage: MadviseStage::Lock,
            ranges: Vec::new(),
            cursor: 0,
            range_end: 0,
            result: 0,
        }
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
        if self.advice == Advice::HugePage {
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
        let label = if advice == Advice::HugePage { "mmap_write_lock" } else { "mmap_read_lock" };
        ctx.event("do_madvise", label, |_| format!("{} [{start:#x}, {end:#x})", advice.name()));
        self.stage = MadviseStage::NextRange;
        Flow::Continue
    }

    /// madvise_update_vma() → hugepage_madvise(): VM_HUGEPAGE on the range (VMAs split at its
    /// ends; a driver's VMA keeps its flags: hugepage_madvise() leaves VM_PFNMAP/MIXEDMAP alone
    /// in effect, as no THP can be faulted there).
    fn hugepage(&mut self, ctx: &mut Ctx, start: u64, end: u64) -> Flow {
        ctx.vma_modify(self.mm, start, end, |vma| {
            vma.flags = (vma.flags | vm_flags::VM_HUGEPAGE) & !vm_flags::VM_NOHUGEPAGE;
        });
        ctx.event("madvise_update_vma", "VM_HUGEPAGE", |_| format!("[{start:#x}, {end:#x})"));
        Flow::Continue
    }

    fn next_range(&mut self, ctx: &mut Ctx) -> Flow {
        if self.ranges.is_empty() {
            self.stage = MadviseStage::Unlock;
            return Flow::Continue;
        }
        let (start, end) = self.ranges.remove(0);
        if self.advice == Advice::HugePage {
            return self.hugepage(ctx, start, end);
        }
        if matches!(self.advice, Advice::PopulateRead | Advice::PopulateWrite) {
            self.cursor = start >> PAGE_SHIFT;
            self.range_end = end >> PAGE_SHIFT;
            self.stage = MadviseStage::Populate;
            return Flow::Continue;
        }
        let vma = ctx.vmas(self.mm).iter().find(|v| v.contains(start)).cloned().expect("a range of a VMA");
        if matches!(self.advice, Advice::DontNeed | Advice::Free) && !self.dontneed_free_valid(&vma) {
            // madvise_walk_vmas(): a VMA's error ends the walk and is the result.
            self.result = -errno::EINVAL;
            self.ranges.clear();
            self.stage = MadviseStage::Unlock;
            let advice = self.advice.name();
            ctx.event("madvise_dontneed_free", "-EINVAL", |_| format!("{advice} [{start:#x}, {end:#x})"));
            return Flow::Continue;
        }
        if self.advice == Advice::DontNeed {
            // madvise_dontneed_single_vma() → zap_page_range_single().
            return Flow::Call(Frame::Zap(Zap::new(self.mm, start, end)));
        }
        if self.advice == Advice::Free {
            crate::mm::swap::lru_add_drain(ctx);
        }
        self.cursor = start >> PAGE_SHIFT;
        self.range_end = end >> PAGE_SHIFT;
        self.stage = MadviseStage::TableLock;
        Flow::Continue
    }

    /// madvise_dontneed_free_valid_vma(): not VM_PFNMAP or VM_LOCKED; and for MADV_FREE,
    /// madvise_free_single_vma(): "MADV_FREE works for only anon vma at the moment".
    fn dontneed_free_valid(&self, vma: &crate::state::Vma) -> bool {
        vma.flags & (vm_flags::VM_PFNMAP | vm_flags::VM_LOCKED) == 0
            && (self.advice != Advice::Free || vma.is_anonymous())
    }

    /// madvise_populate(): VMA by VMA from the start until a hole (-ENOMEM there, after the
    /// pages before it are populated) or a VMA that forbids the access (-EINVAL:
    /// "Incompatible mappings / permissions").
    fn populate_ranges(&mut self, vmas: &[crate::state::Vma], start: u64) {
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
        if let Some(result) = returned {
            if result & (crate::mm::memory::VM_FAULT_SIGSEGV | crate::mm::memory::VM_FAULT_SIGBUS) != 0 {
                self.result = -errno::EFAULT;
                self.ranges.clear();
                self.stage = MadviseStage::Unlock;
                return Flow::Continue;
            }
        }
        if self.cursor == self.range_end {
            self.stage = MadviseStage::NextRange;
            return Flow::Continue;
        }
        let (mm, vpn) = (self.mm, self.cursor);
        let address = vpn << PAGE_SHIFT;
        let write = self.advice == Advice::PopulateWrite;
        let huge = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address));
        let mapped = match huge {
            Some(pmd) => !write || pmd.write,
            None => ctx.pte_load(mm, vpn).present().is_some_and(|p| !write || p.write),
        };
        if mapped {
            self.cursor += 1;
            return Flow::Continue;
        }
        ctx.event("faultin_page_range", "faultin_page", |_| format!("{address:#x}"));
        Flow::Call(Frame::Fault(crate::mm::memory::Fault::new(mm, address, write, false)))
    }

    /// The kernel function that walks the PTEs for this advice.
    fn pte_range_function(&self) -> &'static str {
        match self.advice {
            Advice::Free => "madvise_free_pte_range",
            _ => "madvise_cold_or_pageout_pte_range",
        }
    }

    /// pte_offset_map_lock() of the table holding the cursor; a huge PMD there is handled
    /// whole under the same lock (the model's PMD lock is its table's lock).
    fn table_lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.ptl_lock(self.mm, self.cursor);
        let index = crate::pgtable::pte_table(self.cursor);
        if let Some(pmd) = ctx.pmd_load(self.mm, index) {
            self.huge_pmd(ctx, index, pmd);
            self.cursor = ((index + 1) * crate::pgtable::PTRS_PER_PTE).min(self.range_end);
            self.stage = MadviseStage::TableUnlock;
            return Flow::Continue;
        }
        let address = self.cursor << PAGE_SHIFT;
        ctx.event(self.pte_range_function(), "pte_offset_map_lock", |_| format!("{address:#x}"));
        self.stage = MadviseStage::Pte;
        Flow::Continue
    }

    /// One PTE under the table's lock, then on to the next.
    fn pte(&mut self, ctx: &mut Ctx) -> Flow {
        match self.advice {
            Advice::Free => self.free_pte(ctx),
            Advice::Cold | Advice::PageOut => self.cold_pte(ctx),
            Advice::DontNeed | Advice::HugePage | Advice::PopulateRead | Advice::PopulateWrite => {
                unreachable!("only MADV_FREE, COLD and PAGEOUT walk")
            }
        }
        self.cursor += 1;
        if self.cursor.is_multiple_of(crate::pgtable::PTRS_PER_PTE) || self.cursor == self.range_end {
            self.stage = MadviseStage::TableUnlock;
        }
        Flow::Continue
    }

    /// pte_unmap_unlock(); for MADV_PAGEOUT, reclaim_pages() of what the table isolated.
    fn table_unlock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.ptl_unlock(self.mm, self.cursor - 1);
        ctx.event(self.pte_range_function(), "pte_unmap_unlock", |_| String::new());
        self.stage = if self.cursor == self.range_end { MadviseStage::NextRange } else { MadviseStage::TableLock };
        if self.advice == Advice::PageOut && !ctx.local().folio_list.is_empty() {
            return Flow::Call(Frame::ShrinkInactiveList(crate::mm::vmscan::ShrinkInactiveList::reclaim_pages()));
        }
        Flow::Continue
    }

    /// madvise_free_huge_pmd() / the huge PMD branch of madvise_cold_or_pageout_pte_range(),
    /// under the PMD lock: a THP mapped only here and covered whole is marked lazyfree, or
    /// aged and deactivated (COLD), or isolated for reclaim (PAGEOUT); the huge zero PMD and
    /// shared THPs are left alone; part of a THP would be split first (not modelled).
    fn huge_pmd(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte) {
        let first = index * crate::pgtable::PTRS_PER_PTE;
        let address = first << PAGE_SHIFT;
        let function = if self.advice == Advice::Free { "madvise_free_huge_pmd" } else { self.pte_range_function() };
        let folio = crate::folio::pfn_folio(pmd.pfn);
        if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) || ctx.mapcount_load(folio) != 1 {
            ctx.event(function, "pmd", |_| format!("{address:#x}: huge zero or shared THP: skipped"));
            return;
        }
        let whole = self.cursor == first && first + crate::pgtable::PTRS_PER_PTE <= self.range_end;
        if !whole {
            let message = format!("not modelled: {} of part of a PMD-mapped THP (split_folio)", self.advice.name());
            ctx.violation(crate::violation::Violation::new(crate::violation::ViolationKind::Invariant, message));
            return;
        }
        let what = match self.advice {
            Advice::Free => self.free_huge_pmd(ctx, index, pmd),
            _ => self.cold_huge_pmd(ctx, index, pmd),
        };
        ctx.event(function, "pmd", |k| format!("{address:#x}: {what} {}", k.folio(folio).dump(folio)));
    }

    /// madvise_free_huge_pmd(): "if (!folio_trylock(folio)) goto out;", clear the folio's dirty
    /// flag, make the PMD old and clean, folio_mark_lazyfree().
    fn free_huge_pmd(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte) -> &'static str {
        let folio = crate::folio::pfn_folio(pmd.pfn);
        if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
            return "folio locked: skipped";
        }
        ctx.flag_store(folio, PageFlag::Dirty, false);
        ctx.flag_store(folio, PageFlag::Locked, false);
        if pmd.young || pmd.dirty {
            ctx.pmd_store(self.mm, index, Some(PresentPte { young: false, dirty: false, ..pmd }));
        }
        folio_mark_lazyfree(ctx, folio);
        "lazyfree"
    }

    /// The huge PMD branch of madvise_cold_or_pageout_pte_range(): COLD makes the PMD old;
    /// both clear PG_referenced; COLD deactivates, PAGEOUT isolates for reclaim_pages().
    fn cold_huge_pmd(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte) -> &'static str {
        let folio = crate::folio::pfn_folio(pmd.pfn);
        let pageout = self.advice == Advice::PageOut;
        if !pageout && pmd.young {
            ctx.pmd_store(self.mm, index, Some(PresentPte { young: false, ..pmd }));
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

    /// One PTE of madvise_free_pte_range().
    fn free_pte(&mut self, ctx: &mut Ctx) {
        let (mm, vpn) = (self.mm, self.cursor);
        let address = vpn << PAGE_SHIFT;
        let pte = ctx.pte_load(mm, vpn);
        let mut what = "none";
        if let Some((present, folio)) = pte.present().and_then(|p| vm_normal_folio(p).map(|f| (p, f))) {
            if ctx.folio_test_large(folio) {
                let message = format!("not modelled: {} of a large folio (split_folio)", self.advice.name());
                ctx.violation(crate::violation::Violation::new(crate::violation::ViolationKind::Invariant, message));
                return;
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
    }

    /// One PTE of madvise_cold_or_pageout_pte_range() (6.10 and later: MADV_PAGEOUT leaves the
    /// young bit and reclaim_pages() ignores references).
    fn cold_pte(&mut self, ctx: &mut Ctx) {
        let (mm, vpn) = (self.mm, self.cursor);
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
                    return;
                }
                let whole = vpn + nr <= self.range_end
                    && (1..nr).all(|i| ctx.pte_load(mm, vpn + i).present().is_some_and(|p| p.pfn == present.pfn + i));
                if !whole {
                    let message =
                        format!("not modelled: {} of part of a large folio (split_folio)", self.advice.name());
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        message,
                    ));
                    return;
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
    }
}

impl KernelFunction for Madvise {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            MadviseStage::Lock => self.lock(ctx),
            MadviseStage::NextRange => self.next_range(ctx),
            MadviseStage::TableLock => self.table_lock(ctx),
            MadviseStage::Pte => self.pte(ctx),
            MadviseStage::TableUnlock => self.table_unlock(ctx),
            MadviseStage::Populate => self.populate(ctx, _returned),
            MadviseStage::Unlock => {
                // madvise_unlock(): the lock madvise_lock() took.
                let label = if self.advice == Advice::HugePage {
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
        match self.stage {
            MadviseStage::Lock if self.advice == Advice::HugePage => Wait::MmapWrite(self.mm),
            MadviseStage::Lock => Wait::MmapRead(self.mm),
            MadviseStage::TableLock => Wait::PteLock(self.mm, self.cursor),
            _ => Wait::Nothing,
        }
    }
}
