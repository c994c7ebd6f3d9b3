//! mm/vmscan.c: reclaim as kswapd runs it on the one node: isolate_lru_folios(),
//! shrink_folio_list() and move_folios_to_lru().
//!
//! Modelled: the anonymous and lazyfree paths (references, add_to_swap() onto the swap device
//! or activation without one, try_to_unmap, pageout() to swap with asynchronous writeback, the
//! lazyfree refcount freeze, __remove_mapping() from the swap cache, the folio_maybe_dma_pinned()
//! checks, activate_locked's folio_free_swap() when the swap is more than half full), and
//! clean page cache folios (try_to_unmap through the file's mappings, __remove_mapping()).
//! Not modelled: writeback of dirty page cache folios, dirty throttling, mlock
//! (activate_locked's folio_free_swap() of an mlocked folio).
//!
//! Swap writeback completes after the pass: the reclaiming thread runs end_swap_bio_write()
//! for each written folio once the list is back on the LRU (the interrupt that completes the
//! bio is not a thread of its own), so a written folio stays in the swap cache, clean.

use crate::access::Ctx;
use crate::folio::{FolioId, PageFlag};
use crate::mm::gup::folio_maybe_dma_pinned;
use crate::mm::rmap::{FolioReferenced, TryToUnmap};
use crate::mm::swap::{__folio_put, lruvec_add_folio};
use crate::mm::swap_state::{__delete_from_swap_cache, add_to_swap, folio_free_swap, put_swap_folio_nr};
use crate::mm::swapfile::vm_swap_full;
use crate::patches::Patch;
use crate::shared::Shared;
use crate::thread::{Flow, Frame, KernelFunction, ReferencedReads, Thread, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShrinkInactiveStage {
    Isolate,
    Shrink,
    Putback,
    EndWriteback,
}

/// mm/vmscan.c: shrink_inactive_list() over every LRU list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShrinkInactiveList {
    pub stage: ShrinkInactiveStage,
    /// reclaim_pages() (MADV_PAGEOUT) skips folio_check_references().
    pub ignore_references: bool,
}

impl ShrinkInactiveList {
    pub fn new() -> Self {
        ShrinkInactiveList { stage: ShrinkInactiveStage::Isolate, ignore_references: false }
    }

    /// mm/vmscan.c: reclaim_pages() → reclaim_folio_list(): shrink the folios already
    /// isolated into the thread's folio list, ignoring references, then put them back.
    pub fn reclaim_pages() -> Self {
        ShrinkInactiveList { stage: ShrinkInactiveStage::Shrink, ignore_references: true }
    }

    /// mm/vmscan.c: isolate_lru_folios() under lru_lock: folio_try_get() then
    /// folio_test_clear_lru(); the reference taken is the isolation reference.
    fn isolate(&mut self, ctx: &mut Ctx) -> Flow {
        // shrink_inactive_list(): "lru_add_drain();" before isolating.
        crate::mm::swap::lru_add_drain(ctx);
        ctx.lru_lock();
        let candidates: Vec<FolioId> = ctx.lru_folios();
        let mut isolated = Vec::new();
        for folio in candidates {
            if !ctx.ref_add_unless_zero(folio, 1) {
                continue;
            }
            if !ctx.flag_test_and_store(folio, PageFlag::Lru, false) {
                crate::mm::swap::folio_put(ctx, folio);
                continue;
            }
            ctx.lru_del(folio);
            isolated.push(folio);
        }
        ctx.lru_unlock();
        let list = format!("{isolated:?}");
        *ctx.local().folio_list = crate::shared::Shared::new(isolated);
        ctx.event("isolate_lru_folios", "isolate", |_| format!("folios {list}"));
        Flow::goto(&mut self.stage, ShrinkInactiveStage::Shrink)
    }

    /// mm/vmscan.c: move_folios_to_lru(): back on the LRU; the isolation reference is dropped
    /// and a folio whose last reference that was is freed.
    fn putback(&mut self, ctx: &mut Ctx) -> Flow {
        let kept = std::mem::take(ctx.local().folio_list).to_vec();
        ctx.lru_lock();
        let mut freed = Vec::new();
        for &folio in &kept {
            ctx.flag_store(folio, PageFlag::Lru, true);
            lruvec_add_folio(ctx, folio);
            let count = ctx.ref_add(folio, -1, crate::access::Ordering::Full);
            if ctx.vm_bug_on_folio(count < 0, folio, "folio_ref_count(folio) == 0") {
                break;
            }
            if count == 0 {
                freed.push(folio);
            }
        }
        ctx.lru_unlock();
        for &folio in &freed {
            __folio_put(ctx, folio);
        }
        ctx.event("move_folios_to_lru", "putback", |_| {
            format!(
                "folios {kept:?} back on the LRU{}",
                if freed.is_empty() { String::new() } else { format!(", freed {freed:?}") }
            )
        });
        if ctx.local().writeback.is_empty() {
            return Flow::Return(0);
        }
        Flow::goto(&mut self.stage, ShrinkInactiveStage::EndWriteback)
    }

    /// mm/page_io.c: end_swap_bio_write() → folio_end_writeback(), one folio per step.
    fn end_writeback(&mut self, ctx: &mut Ctx) -> Flow {
        let Some(folio) = ctx.local().writeback.make_mut().pop() else {
            return Flow::Return(0);
        };
        ctx.flag_store(folio, PageFlag::Writeback, false);
        ctx.event("end_swap_bio_write", "folio_end_writeback", |k| k.folio(folio).dump(folio));
        if ctx.local().writeback.is_empty() {
            return Flow::Return(0);
        }
        Flow::Continue
    }
}

impl Default for ShrinkInactiveList {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelFunction for ShrinkInactiveList {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            ShrinkInactiveStage::Isolate => self.isolate(ctx),
            ShrinkInactiveStage::Shrink => {
                let list = ctx.local().folio_list.to_vec();
                let mut shrink = ShrinkFolioList::new(list);
                shrink.ignore_references = self.ignore_references;
                Flow::call(&mut self.stage, ShrinkInactiveStage::Putback, Frame::ShrinkFolioList(shrink))
            }
            ShrinkInactiveStage::Putback => self.putback(ctx),
            ShrinkInactiveStage::EndWriteback => self.end_writeback(ctx),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::Nothing
    }

    /// The folios whose PG_referenced this reclaim may still read: before isolation, any folio
    /// on the LRU; once isolated, the thread's folio list, which the shrink_folio_list() it
    /// calls narrows down while it runs (see [`ShrinkFolioList`]'s); putback and writeback
    /// completion read none.
    fn referenced_reads<'a>(&'a self, thread: &'a Thread, callees: &'a [Frame]) -> ReferencedReads<'a> {
        if let Some((shrink, callees)) = callees.split_first() {
            return shrink.referenced_reads(thread, callees);
        }
        match self.stage {
            ShrinkInactiveStage::Isolate => ReferencedReads::Every,
            ShrinkInactiveStage::Shrink => ReferencedReads::Folios(&thread.folio_list[..]),
            ShrinkInactiveStage::Putback | ShrinkInactiveStage::EndWriteback => ReferencedReads::Nothing,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShrinkStage {
    Trylock,
    CheckReferences,
    References,
    AnonSwap,
    Mapped,
    Unmapped,
    Dirty,
    Pageout,
    Lazyfree,
    RemoveMapping,
    LazyfreeDirtyRecheck,
    FreeIt,
    ActivateLocked,
    KeepLocked,
    Keep,
}

/// mm/vmscan.c: folio_check_references() outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FolioReferences {
    Activate,
    Keep,
    Reclaim,
    ReclaimClean,
}

/// mm/vmscan.c: shrink_folio_list(), one folio at a time, one step per check of shared state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShrinkFolioList {
    pub list: Shared<Vec<FolioId>>,
    pub index: usize,
    pub stage: ShrinkStage,
    pub kept: Shared<Vec<FolioId>>,
    pub ignore_references: bool,
}

impl ShrinkFolioList {
    pub fn new(list: Vec<FolioId>) -> Self {
        ShrinkFolioList {
            list: Shared::new(list),
            index: 0,
            stage: ShrinkStage::Trylock,
            kept: Shared::default(),
            ignore_references: false,
        }
    }

    fn folio(&self) -> FolioId {
        self.list[self.index]
    }

    fn next_folio(&mut self, ctx: &mut Ctx) -> Flow {
        self.index += 1;
        if self.index < self.list.len() {
            return Flow::goto(&mut self.stage, ShrinkStage::Trylock);
        }
        *ctx.local().folio_list = std::mem::take(&mut self.kept);
        Flow::Return(0)
    }

    /// folio_check_references() after folio_referenced(): mm/vmscan.c.
    fn references(&mut self, ctx: &mut Ctx, referenced_ptes: i64) -> Flow {
        let folio = self.folio();
        // "rmap lock contention: rotate".
        if referenced_ptes == -1 {
            ctx.event("folio_check_references", "references", |_| format!("folio {folio}: Keep (rmap lock contended)"));
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        let referenced_folio = ctx.flag_test_and_store(folio, PageFlag::Referenced, false);
        let swapbacked = ctx.flag_test(folio, PageFlag::Swapbacked);
        let outcome = if referenced_ptes > 0 {
            // "All mapped folios start out with page table references from the instantiating
            // fault, so we need to look twice if a mapped file/anon folio is used more than
            // once. Mark it and spare it for another trip around the inactive list."
            ctx.flag_store(folio, PageFlag::Referenced, true);
            if referenced_folio || referenced_ptes > 1 {
                FolioReferences::Activate
            } else {
                FolioReferences::Keep
            }
        } else if referenced_folio && !swapbacked {
            FolioReferences::ReclaimClean
        } else {
            FolioReferences::Reclaim
        };
        ctx.event("folio_check_references", "references", |_| {
            format!("folio {folio}: {outcome:?} ({referenced_ptes} young PTEs, PG_referenced {referenced_folio})")
        });
        match outcome {
            FolioReferences::Activate => Flow::goto(&mut self.stage, ShrinkStage::ActivateLocked),
            FolioReferences::Keep => Flow::goto(&mut self.stage, ShrinkStage::KeepLocked),
            FolioReferences::Reclaim | FolioReferences::ReclaimClean => {
                Flow::goto(&mut self.stage, ShrinkStage::AnonSwap)
            }
        }
    }

    /// "Anonymous process memory has backing store?" add_to_swap() (folio_alloc_swap() since
    /// 6.16); without a free slot (or a swap device) the folio is activated.
    fn anon_swap(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        let anon = ctx.flag_test(folio, PageFlag::Anon);
        let swapbacked = ctx.flag_test(folio, PageFlag::Swapbacked);
        if anon && swapbacked && !ctx.flag_test(folio, PageFlag::Swapcache) {
            // feb889fb40fa: "if (folio_maybe_dma_pinned(folio)) goto keep_locked;" a pinned
            // folio's swap copy could go stale under the DMA.
            if ctx.patched(Patch::SwapcacheNoPinned) && folio_maybe_dma_pinned(ctx, folio) {
                ctx.event("shrink_folio_list", "folio_maybe_dma_pinned", |_| format!("folio {folio}: pinned, keep"));
                return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
            }
            if !add_to_swap(ctx, folio) {
                if ctx.folio_test_large(folio) && ctx.swap_slots() > 0 {
                    // "Fallback to swap normal pages": split_folio_to_list().
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        "not modelled: splitting a large folio that found no contiguous swap slots",
                    ));
                }
                ctx.event("shrink_folio_list", "add_to_swap", |_| format!("folio {folio}: no swap slot, activate"));
                return Flow::goto(&mut self.stage, ShrinkStage::ActivateLocked);
            }
            ctx.event("shrink_folio_list", "add_to_swap", |k| k.folio(folio).dump(folio));
        }
        Flow::goto(&mut self.stage, ShrinkStage::Mapped)
    }

    /// "The folio is mapped into the page tables of one or more processes. Try to unmap it."
    fn mapped(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        let mapcount = ctx.mapcount_load(folio);
        ctx.event("shrink_folio_list", "folio_mapped", |_| format!("folio {folio} mapcount {mapcount}"));
        if mapcount > 0 {
            return Flow::call(&mut self.stage, ShrinkStage::Unmapped, Frame::TryToUnmap(TryToUnmap::new(folio)));
        }
        Flow::goto(&mut self.stage, ShrinkStage::Dirty)
    }

    fn unmapped(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        let mapcount = ctx.mapcount_load(folio);
        ctx.event("shrink_folio_list", "folio_mapped", |_| {
            format!("folio {folio} mapcount {mapcount} after try_to_unmap")
        });
        if mapcount > 0 {
            return Flow::goto(&mut self.stage, ShrinkStage::ActivateLocked);
        }
        Flow::goto(&mut self.stage, ShrinkStage::Dirty)
    }

    /// A dirty swap cache folio is written out by pageout(); any other dirty anonymous folio
    /// (no backing store) is activated, as the kernel does.
    fn dirty(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        // d824ec2a1546: "Folio is unmapped now so it cannot be newly pinned anymore. No point
        // in trying to reclaim folio if it is pinned."
        if ctx.patched(Patch::ReclaimPinnedActivate) && folio_maybe_dma_pinned(ctx, folio) {
            ctx.event("shrink_folio_list", "folio_maybe_dma_pinned", |_| format!("folio {folio}: pinned, activate"));
            return Flow::goto(&mut self.stage, ShrinkStage::ActivateLocked);
        }
        if ctx.flag_test(folio, PageFlag::Dirty) {
            if ctx.flag_test(folio, PageFlag::Swapcache) {
                return Flow::goto(&mut self.stage, ShrinkStage::Pageout);
            }
            ctx.event("shrink_folio_list", "folio_test_dirty", |_| format!("folio {folio} dirty: activate"));
            return Flow::goto(&mut self.stage, ShrinkStage::ActivateLocked);
        }
        Flow::goto(&mut self.stage, ShrinkStage::Lazyfree)
    }

    /// mm/vmscan.c: pageout() → folio_clear_dirty_for_io() → mm/page_io.c: swap_writepage():
    /// a folio no swap PTE needs leaves the cache instead; otherwise writeback starts, the
    /// folio is unlocked and the write is submitted (PAGE_SUCCESS; "goto keep" while under
    /// writeback).
    fn pageout(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        // is_page_cache_freeable(): "folio_ref_count(folio) == 1 + folio_nr_pages(folio)" (the
        // isolation and the swap cache's references), else PAGE_KEEP.
        let freeable = 1 + ctx.folio_nr_pages(folio) as i32;
        if ctx.ref_load(folio) != freeable {
            ctx.event("pageout", "is_page_cache_freeable", |k| {
                format!("folio {folio}: refcount {} != {freeable}: keep", k.folio(folio).refcount)
            });
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        ctx.flag_store(folio, PageFlag::Dirty, false);
        if folio_free_swap(ctx, folio) {
            ctx.flag_store(folio, PageFlag::Locked, false);
            ctx.event("swap_writepage", "folio_free_swap", |_| format!("folio {folio}: no swap PTE left, not written"));
            return Flow::goto(&mut self.stage, ShrinkStage::Keep);
        }
        let offset = ctx.folio_swap_load(folio).expect("a swap cache folio");
        ctx.flag_store(folio, PageFlag::Writeback, true);
        ctx.flag_store(folio, PageFlag::Locked, false);
        for page in 0..ctx.folio_nr_pages(folio) {
            let data = ctx.data_load(folio, page);
            ctx.swap_data_store(offset + page as u32, data);
        }
        ctx.local().writeback.make_mut().push(folio);
        ctx.event("pageout", "swap_writepage", |_| format!("folio {folio} -> swap slot {offset:#x}, under writeback"));
        Flow::goto(&mut self.stage, ShrinkStage::Keep)
    }

    /// mm/vmscan.c: __remove_mapping() of a clean swap cache or page cache folio, under
    /// xa_lock_irq(i_pages): only the isolation and the cache's references may be left.
    fn remove_mapping(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        let nr = ctx.folio_nr_pages(folio) as u32;
        // "refcount = 1 + folio_nr_pages(folio)": isolation plus the swap cache's.
        let expected = 1 + nr as i32;
        let frozen = ctx.ref_freeze(folio, expected);
        if frozen && ctx.flag_test(folio, PageFlag::Dirty) {
            ctx.ref_unfreeze(folio, expected);
            ctx.event("__remove_mapping", "folio_test_dirty", |_| format!("folio {folio} redirtied, keep"));
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        if !frozen {
            ctx.event("__remove_mapping", "folio_ref_freeze", |k| {
                format!("folio {folio}: refcount {} != {expected}, keep", k.folio(folio).refcount)
            });
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        if let (crate::folio::Mapping::File(file), index) = ctx.mapping_load(folio) {
            crate::mm::filemap::__filemap_remove_folio(ctx, folio, file, index);
            ctx.event("__remove_mapping", "__filemap_remove_folio", |_| {
                format!("folio {folio} out of the page cache (index {index})")
            });
            return Flow::goto(&mut self.stage, ShrinkStage::FreeIt);
        }
        let offset = ctx.folio_swap_load(folio).expect("a swap cache folio");
        __delete_from_swap_cache(ctx, folio, offset);
        put_swap_folio_nr(ctx, offset, nr);
        ctx.event("__remove_mapping", "__delete_from_swap_cache", |_| {
            format!("folio {folio} out of the swap cache (slot {offset:#x})")
        });
        Flow::goto(&mut self.stage, ShrinkStage::FreeIt)
    }

    /// "if (folio_test_anon(folio) && !folio_test_swapbacked(folio))": a lazyfree folio is
    /// freed without IO if only the isolation reference is left.
    fn lazyfree(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        let anon = ctx.flag_test(folio, PageFlag::Anon);
        let swapbacked = ctx.flag_test(folio, PageFlag::Swapbacked);
        if anon && swapbacked && ctx.flag_test(folio, PageFlag::Swapcache) {
            return Flow::goto(&mut self.stage, ShrinkStage::RemoveMapping);
        }
        if !anon && matches!(ctx.mapping_load(folio).0, crate::folio::Mapping::File(_)) {
            return Flow::goto(&mut self.stage, ShrinkStage::RemoveMapping);
        }
        if !anon || swapbacked {
            // "else if (!mapping || !__remove_mapping(...))": no mapping to remove from.
            ctx.event("shrink_folio_list", "folio_mapping", |_| {
                format!("folio {folio}: no mapping to remove from, keep")
            });
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        let frozen = ctx.ref_freeze(folio, 1);
        ctx.event("shrink_folio_list", "folio_ref_freeze", |k| {
            format!(
                "folio {folio}: {}",
                if frozen {
                    "frozen at 1".to_string()
                } else {
                    format!("refcount {} != 1, keep", k.folio(folio).refcount)
                }
            )
        });
        if !frozen {
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        if ctx.patched(Patch::LazyfreeNoDirtyRecheck) {
            Flow::goto(&mut self.stage, ShrinkStage::FreeIt)
        } else {
            Flow::goto(&mut self.stage, ShrinkStage::LazyfreeDirtyRecheck)
        }
    }

    /// Before d17be2d9ff6c: "if (PageDirty(page)) { page_ref_unfreeze(page, 1); goto keep_locked; }"
    fn lazyfree_dirty_recheck(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        if ctx.flag_test(folio, PageFlag::Dirty) {
            ctx.ref_unfreeze(folio, 1);
            ctx.event("shrink_page_list", "page_ref_unfreeze", |_| format!("folio {folio} dirty after freeze, keep"));
            return Flow::goto(&mut self.stage, ShrinkStage::KeepLocked);
        }
        Flow::goto(&mut self.stage, ShrinkStage::FreeIt)
    }

    /// activate_locked: "Not a candidate for swapping, so reclaim swap space": a swap cache
    /// folio gives its slot back when the swap is more than half full (mem_cgroup_swap_full()
    /// is vm_swap_full() without a memcg swap limit); then the folio goes to the active list.
    fn activate_locked(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        if ctx.flag_test(folio, PageFlag::Swapcache) && vm_swap_full(ctx) && folio_free_swap(ctx, folio) {
            ctx.event("shrink_folio_list", "folio_free_swap", |_| format!("folio {folio}: swap full, slot freed"));
        }
        let active = ctx.flag_test(folio, PageFlag::Active);
        ctx.vm_bug_on_folio(active, folio, "folio_test_active(folio)");
        ctx.flag_store(folio, PageFlag::Active, true);
        ctx.event("shrink_folio_list", "activate_locked", |_| format!("folio {folio}"));
        Flow::goto(&mut self.stage, ShrinkStage::KeepLocked)
    }

    /// folio_unlock(); free_it: the folio (refcount frozen at 0) goes to the allocator.
    fn free_it(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio();
        ctx.flag_store(folio, PageFlag::Locked, false);
        ctx.free_folio(folio);
        ctx.event("shrink_folio_list", "free_it", |_| format!("folio {folio} freed"));
        self.next_folio(ctx)
    }
}

impl KernelFunction for ShrinkFolioList {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        if self.list.is_empty() {
            return self.next_folio(ctx);
        }
        let folio = self.folio();
        match self.stage {
            ShrinkStage::Trylock => {
                if ctx.entire_mapcount_load(folio) > 0 {
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        "not modelled: reclaim of a PMD-mapped THP (split_huge_pmd in try_to_unmap)",
                    ));
                }
                let was_locked = ctx.flag_test_and_store(folio, PageFlag::Locked, true);
                // "if (folio_test_writeback(folio))": a folio still being written is not
                // reclaimed now (cases 1 and 2: folio_set_reclaim(); activate_locked).
                let writeback = !was_locked && ctx.flag_test(folio, PageFlag::Writeback);
                ctx.event("shrink_folio_list", "folio_trylock", |_| {
                    let state = match (was_locked, writeback) {
                        (true, _) => "busy, keep",
                        (false, true) => "locked, under writeback: activate",
                        (false, false) => "locked",
                    };
                    format!("folio {folio}: {state}")
                });
                Flow::goto(
                    &mut self.stage,
                    match (was_locked, writeback, self.ignore_references) {
                        (true, _, _) => ShrinkStage::Keep,
                        (false, true, _) => ShrinkStage::ActivateLocked,
                        (false, false, false) => ShrinkStage::CheckReferences,
                        (false, false, true) => ShrinkStage::AnonSwap,
                    },
                )
            }
            ShrinkStage::CheckReferences => Flow::call(
                &mut self.stage,
                ShrinkStage::References,
                Frame::FolioReferenced(FolioReferenced::new(folio)),
            ),
            ShrinkStage::References => self.references(ctx, returned.unwrap_or(0)),
            ShrinkStage::AnonSwap => self.anon_swap(ctx),
            ShrinkStage::Mapped => self.mapped(ctx),
            ShrinkStage::Unmapped => self.unmapped(ctx),
            ShrinkStage::Dirty => self.dirty(ctx),
            ShrinkStage::Pageout => self.pageout(ctx),
            ShrinkStage::Lazyfree => self.lazyfree(ctx),
            ShrinkStage::RemoveMapping => self.remove_mapping(ctx),
            ShrinkStage::LazyfreeDirtyRecheck => self.lazyfree_dirty_recheck(ctx),
            ShrinkStage::FreeIt => self.free_it(ctx),
            ShrinkStage::ActivateLocked => self.activate_locked(ctx),
            ShrinkStage::KeepLocked => {
                ctx.flag_store(folio, PageFlag::Locked, false);
                ctx.event("shrink_folio_list", "keep_locked", |_| format!("folio_unlock folio {folio}"));
                Flow::goto(&mut self.stage, ShrinkStage::Keep)
            }
            ShrinkStage::Keep => {
                self.kept.make_mut().push(folio);
                self.next_folio(ctx)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::Nothing
    }

    /// The folios whose PG_referenced this shrink may still read: folio_check_references() is
    /// the only reader (its folio_referenced() callee included), reached for a folio once, from
    /// `Trylock` through `References`; the index only moves forward, and the caller's putback
    /// reads none.
    fn referenced_reads<'a>(&'a self, _thread: &'a Thread, _callees: &'a [Frame]) -> ReferencedReads<'a> {
        let checked =
            !matches!(self.stage, ShrinkStage::Trylock | ShrinkStage::CheckReferences | ShrinkStage::References);
        ReferencedReads::Folios(&self.list[(self.index + usize::from(checked)).min(self.list.len())..])
    }
}
