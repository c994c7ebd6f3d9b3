//! mm/rmap.c: adding and removing anonymous rmaps, and the rmap walks of reclaim:
//! try_to_unmap() / try_to_unmap_one() and folio_referenced() / folio_referenced_one().

use crate::access::{Ctx, Fence};
use crate::folio::{folio_pfn, FolioId, Mapping, PageFlag};
use crate::mm::swap::{folio_mark_dirty, folio_put};
use crate::patches::Patch;
use crate::pgtable::{PresentPte, Pte};
use crate::state::{AnonVmaId, MmId, Vma};
use crate::thread::{Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// mm/rmap.c: folio_add_new_anon_rmap() with RMAP_EXCLUSIVE for a new folio mapped by PTEs from
/// `address` (the folio's first page): it becomes anonymous (mapping = the VMA's anon_vma, index
/// = linear_page_index), swap-backed, and each page is mapped once and exclusive.
pub fn folio_add_new_anon_rmap(ctx: &mut Ctx, folio: FolioId, mm: MmId, address: u64) {
    let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned().expect("fault inside a VMA");
    let anon_vma = vma.anon_vma.expect("anon_vma_prepare() ran");
    ctx.flag_store(folio, PageFlag::Swapbacked, true);
    ctx.flag_store(folio, PageFlag::Anon, true);
    ctx.mapping_store(folio, Mapping::Anon(anon_vma), vma.linear_page_index(address));
    for page in 0..ctx.folio_nr_pages(folio) {
        ctx.page_mapcount_add(folio, page, 1);
        ctx.anon_exclusive_store(folio, page, true);
    }
}

/// include/linux/rmap.h: __folio_rmap_sanity_checks() for one PTE: what every rmap add and
/// remove asserts about the folio.
pub fn __folio_rmap_sanity_checks(ctx: &mut Ctx, folio: FolioId, page: usize, caller: &str) {
    let large = ctx.folio_test_large(folio);
    // 68f0320824fa added the check; 9c5938694cd0 turned it into a TODO, because
    // vm_insert_page() passes driver-allocated compound pages that are not rmappable.
    if ctx.patched(Patch::RmapLargeRmappableWarning) && !ctx.patched(Patch::RmapSilenceLargeRmappableWarning) {
        let rmappable = ctx.flag_test(folio, PageFlag::LargeRmappable);
        let text = format!(
            "folio_test_large(folio) && !folio_test_large_rmappable(folio)) in __folio_rmap_sanity_checks() from {caller}("
        );
        ctx.vm_warn_on_folio(large && !rmappable, folio, &text);
    }
    let text = format!("page_folio(page) != folio) in __folio_rmap_sanity_checks() from {caller}(");
    let nr = ctx.folio_nr_pages(folio);
    ctx.vm_warn_on_folio(page >= nr, folio, &text);
}

/// mm/rmap.c: folio_add_file_rmap_pte() → __folio_add_file_rmap() → __folio_add_rmap(): one
/// PTE mapping more of a page that is not anonymous (page cache, or a driver's page from
/// vm_insert_page()). The PTE lock is held.
pub fn folio_add_file_rmap_pte(ctx: &mut Ctx, folio: FolioId, page: usize) {
    __folio_rmap_sanity_checks(ctx, folio, page, "folio_add_file_rmap_pte");
    ctx.page_mapcount_add(folio, page, 1);
}

/// mm/rmap.c: __page_check_anon_rmap() (CONFIG_DEBUG_VM): the folio's anon rmap (mapping and
/// index) must be where the page is being mapped. The model's anon_vmas are their own roots
/// (fork shares the parent's).
fn __page_check_anon_rmap(ctx: &mut Ctx, folio: FolioId, page: usize, vma: &Vma, address: u64) {
    let (mapping, index) = ctx.mapping_load(folio);
    let root_differs = match mapping {
        Mapping::Anon(anon_vma) => Some(anon_vma) != vma.anon_vma,
        _ => true,
    };
    if ctx.vm_bug_on_folio(root_differs, folio, "folio_anon_vma(folio)->root != vma->anon_vma->root") {
        return;
    }
    let pgoff = index + page as u64;
    let linear = vma.linear_page_index(address);
    if pgoff != linear {
        let dump = ctx.folio_dump(folio);
        ctx.violation(crate::violation::Violation {
            kind: crate::violation::ViolationKind::KernelBug,
            message: format!(
                "VM_BUG_ON_PAGE(page_pgoff(folio, page) != linear_page_index(vma, address)): {pgoff:#x} != {linear:#x} at {address:#x}"
            ),
            dump: vec![dump],
        });
    }
}

/// mm/rmap.c: folio_add_anon_rmap_pte() → __folio_add_anon_rmap(): one more PTE mapping of a
/// page of an anonymous folio (swap-in), under the PTE lock and the folio lock.
pub fn folio_add_anon_rmap_pte(ctx: &mut Ctx, folio: FolioId, page: usize, vma: &Vma, address: u64, exclusive: bool) {
    let anon = ctx.flag_test(folio, PageFlag::Anon);
    ctx.vm_warn_on_folio(!anon, folio, "!folio_test_anon(folio)");
    __folio_rmap_sanity_checks(ctx, folio, page, "folio_add_anon_rmap_pte");
    ctx.page_mapcount_add(folio, page, 1);
    __page_check_anon_rmap(ctx, folio, page, vma, address);
    if exclusive {
        ctx.anon_exclusive_store(folio, page, true);
    }
}

/// mm/rmap.c: folio_move_anon_rmap(): the folio now belongs to `vma`'s anon_vma (its only
/// mapping moved there). The folio lock is held.
pub fn folio_move_anon_rmap(ctx: &mut Ctx, folio: FolioId, vma: &Vma) {
    let locked = ctx.flag_test(folio, PageFlag::Locked);
    ctx.vm_bug_on_folio(!locked, folio, "!folio_test_locked(folio)");
    let anon_vma = vma.anon_vma.expect("VM_BUG_ON_VMA(!anon_vma, vma)");
    let (_, index) = ctx.mapping_load(folio);
    ctx.mapping_store(folio, Mapping::Anon(anon_vma), index);
}

/// mm/rmap.c: folio_remove_rmap_pte() → __folio_remove_rmap(): one PTE mapping less.
pub fn folio_remove_rmap_pte(ctx: &mut Ctx, folio: FolioId, page: usize) {
    __folio_rmap_sanity_checks(ctx, folio, page, "folio_remove_rmap_pte");
    let mapcount = ctx.page_mapcount_add(folio, page, -1);
    // mm/memory.c: print_bad_pte() when a mapcount goes negative.
    ctx.vm_bug_on_folio(mapcount < 0, folio, "page_mapcount(page) < 0");
}

/// include/linux/rmap.h: folio_try_share_anon_rmap_pte() → __folio_try_share_anon_rmap(): the
/// exclusive `page`, whose PTE the caller cleared ("clear PTE first"), becomes possibly
/// shared, unless the folio may be pinned: smp_mb() (paired with GUP-fast's pin, its
/// smp_mb__after_atomic() and its re-check of the PTE), folio_maybe_dma_pinned() → -EBUSY, else
/// ClearPageAnonExclusive() and smp_mb__after_atomic() (paired with gup_must_unshare()'s
/// smp_rmb()).
pub fn folio_try_share_anon_rmap_pte(ctx: &mut Ctx, folio: FolioId, page: usize) -> Result<(), i64> {
    ctx.fence(Fence::Full);
    if crate::mm::gup::folio_maybe_dma_pinned(ctx, folio) {
        return Err(-crate::thread::errno::EBUSY);
    }
    ctx.anon_exclusive_store(folio, page, false);
    ctx.fence(Fence::Full);
    Ok(())
}

/// One place an rmap walk visits: (mm, address, page of the folio mapped there).
pub type RmapTarget = (MmId, u64, usize);

/// What rmap_walk_anon() got from folio_lock_anon_vma_read().
pub enum AnonVmaLocked {
    /// The anon_vma is read-locked; the mappings to visit.
    Walk(AnonVmaId, Vec<RmapTarget>),
    /// No anon_vma, or the folio is no longer mapped: nothing to walk.
    Nothing,
    /// `rwc->try_lock` and a writer holds the anon_vma: "rwc->contended = true".
    Contended,
}

/// mm/rmap.c: rmap_walk_anon() up to its VMA loop: folio_lock_anon_vma_read(folio, rwc) (the
/// mapping, "if (!folio_mapped(folio)) goto out;", down_read_trylock() or, without
/// `rwc->try_lock`, anon_vma_lock_read()), then the mappings to visit.
pub fn folio_lock_anon_vma_read(ctx: &mut Ctx, folio: FolioId, try_lock: bool) -> AnonVmaLocked {
    let (mapping, index) = ctx.mapping_load(folio);
    let Mapping::Anon(anon_vma) = mapping else {
        return AnonVmaLocked::Nothing;
    };
    if ctx.mapcount_load(folio) == 0 {
        return AnonVmaLocked::Nothing;
    }
    if try_lock {
        if !ctx.anon_vma_trylock_read(anon_vma) {
            return AnonVmaLocked::Contended;
        }
    } else {
        ctx.anon_vma_lock_read(anon_vma);
    }
    let nr = ctx.folio_nr_pages(folio);
    AnonVmaLocked::Walk(anon_vma, rmap_walk_anon_targets(ctx, anon_vma, index, nr))
}

/// What folio_lock_anon_vma_read() waits for: the folio's anon_vma, if a writer holds it.
fn anon_vma_read_wait(k: &crate::state::Kernel, folio: FolioId) -> Wait {
    match k.folio(folio).mapping {
        Mapping::Anon(anon_vma) => Wait::AnonVmaRead(anon_vma),
        _ => Wait::Nothing,
    }
}

/// The mappings an anonymous rmap walk visits: mm/rmap.c rmap_walk_anon() over the anon_vma's
/// VMAs, with vma_address() of the folio's index in each.
fn rmap_walk_anon_targets(ctx: &mut Ctx, anon_vma: AnonVmaId, index: u64, nr: usize) -> Vec<RmapTarget> {
    let mut vmas = Vec::new();
    for mm in ctx.anon_vma_mms(anon_vma) {
        vmas.extend(ctx.vmas(mm).iter().filter(|v| v.anon_vma == Some(anon_vma)).map(|v| (mm, v.clone())));
    }
    vma_targets(&vmas, index, nr)
}

/// mm/internal.h: vma_address() of each of the folio's `nr` pages in each of `vmas`.
fn vma_targets(vmas: &[(MmId, Vma)], index: u64, nr: usize) -> Vec<RmapTarget> {
    let mut targets = Vec::new();
    for (mm, vma) in vmas {
        for page in 0..nr {
            if let Some(address) = vma.address_of_index(index + page as u64) {
                targets.push((*mm, address, page));
            }
        }
    }
    targets
}

/// mm/rmap.c: rmap_walk_file() over `mapping->i_mmap` (filemap.rs mapping_vmas()): every
/// VMA of the file covering the folio's index; every visit re-checks the PTE under its lock.
fn rmap_walk_file_targets(ctx: &mut Ctx, file: u32, index: u64, nr: usize) -> Vec<RmapTarget> {
    vma_targets(&crate::mm::filemap::mapping_vmas(ctx, file), index, nr)
}

/// The mappings of a page cache folio to walk, if it is one and still mapped.
fn file_rmap_targets(ctx: &mut Ctx, folio: FolioId) -> Option<Vec<RmapTarget>> {
    let (Mapping::File(file), index) = ctx.mapping_load(folio) else {
        return None;
    };
    if ctx.mapcount_load(folio) == 0 {
        return Some(Vec::new());
    }
    let nr = ctx.folio_nr_pages(folio);
    Some(rmap_walk_file_targets(ctx, file, index, nr))
}

/// What try_to_unmap_one() read for the lazyfree decision: the PTE it cleared and the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    pub pteval: Pte,
    pub ref_count: i32,
    /// 0 where the check reads no mapcount (v1).
    pub map_count: i32,
}

/// try_to_unmap_one()'s stages; those between the PTE clear and the decision hold what it
/// read (`pteval`: the PTE cleared, restored should the folio stay), which goes with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnmapStage {
    LockAnonVma,
    /// page_vma_mapped_walk(): take the PTE lock, check the PTE maps the folio.
    WalkLock,
    ClearPte,
    MarkDirty {
        pteval: Pte,
    },
    SmpMb {
        pteval: Pte,
    },
    ReadRefcount {
        pteval: Pte,
    },
    ReadMapcount {
        pteval: Pte,
        ref_count: i32,
    },
    SmpRmb(Snapshot),
    CheckDirty(Snapshot),
    /// The swap branch: store the swap location in the PTE.
    SwapPte {
        pteval: Pte,
    },
    RemoveRmap,
    Put,
    WalkDone,
    UnlockAnonVma,
}

/// Which lazyfree check try_to_unmap_one() has. The merged 6c8e2a256915 wins over the
/// unmerged postings should a kernel apply both (KernelConfig::conflict refuses that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LazyfreeCheck {
    /// Before the fix: "if (!PageDirty(page))".
    DirtyOnly,
    /// v1 (20211211022115.1547617-1-mfo@canonical.com): refcount == 2.
    V1,
    /// v2 (20220105233440.63361-1-mfo@canonical.com): ref_count - 1 == map_count.
    V2,
    /// 6c8e2a256915 (v3/v4): smp_mb(), then ref_count == 1 + map_count.
    Merged,
}

/// mm/rmap.c: try_to_unmap_one(): the form of its "MADV_FREE page check" on this kernel.
fn lazyfree_check(ctx: &Ctx) -> LazyfreeCheck {
    if ctx.patched(Patch::MadvFreeGupRace) {
        LazyfreeCheck::Merged
    } else if ctx.patched(Patch::MadvFreeRefcountCheckV2) {
        LazyfreeCheck::V2
    } else if ctx.patched(Patch::MadvFreeRefcountCheckV1) {
        LazyfreeCheck::V1
    } else {
        LazyfreeCheck::DirtyOnly
    }
}

/// mm/rmap.c: try_to_unmap() → rmap_walk_anon() → try_to_unmap_one() for an anonymous folio.
/// The caller (reclaim) holds the folio lock and the isolation reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TryToUnmap {
    pub folio: FolioId,
    pub stage: UnmapStage,
    pub anon_vma: Option<AnonVmaId>,
    pub targets: Vec<RmapTarget>,
    pub target: usize,
    pub ret: bool,
}

impl TryToUnmap {
    pub fn new(folio: FolioId) -> TryToUnmap {
        TryToUnmap { folio, stage: UnmapStage::LockAnonVma, anon_vma: None, targets: Vec::new(), target: 0, ret: true }
    }

    fn current(&self) -> (MmId, u64) {
        let (mm, address, _) = self.targets[self.target];
        (mm, address)
    }

    /// The page of the folio the current target maps.
    fn page(&self) -> usize {
        self.targets[self.target].2
    }

    fn next_target(&mut self) -> Flow {
        self.target += 1;
        let next = if self.target < self.targets.len() { UnmapStage::WalkLock } else { UnmapStage::UnlockAnonVma };
        Flow::goto(&mut self.stage, next)
    }

    /// The first mapping to walk, if any.
    fn walk(&mut self, targets: Vec<RmapTarget>) -> Flow {
        self.targets = targets;
        let next = if self.targets.is_empty() { UnmapStage::UnlockAnonVma } else { UnmapStage::WalkLock };
        Flow::goto(&mut self.stage, next)
    }

    /// mm/rmap.c: folio_lock_anon_vma_read(), or rmap_walk_file()'s VMAs for a page cache
    /// folio.
    fn lock_anon_vma(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        if let Some(targets) = file_rmap_targets(ctx, folio) {
            let count = targets.len();
            ctx.event("try_to_unmap", "rmap_walk_file", |_| format!("folio {folio}: {count} mapping(s) to walk"));
            return self.walk(targets);
        }
        let AnonVmaLocked::Walk(anon_vma, targets) = folio_lock_anon_vma_read(ctx, folio, false) else {
            ctx.event("try_to_unmap", "rmap_walk", |_| format!("folio {folio}: no anon_vma or not mapped"));
            return Flow::Return(1);
        };
        self.anon_vma = Some(anon_vma);
        let count = targets.len();
        ctx.event("try_to_unmap", "anon_vma_lock_read", |_| format!("folio {folio}: {count} VMA(s) to walk"));
        self.walk(targets)
    }

    /// mm/page_vma_mapped.c: page_vma_mapped_walk(): map and lock the PTE, check it maps us.
    fn walk_lock(&mut self, ctx: &mut Ctx) -> Flow {
        let (mm, address) = self.current();
        let vpn = address >> crate::folio::PAGE_SHIFT;
        ctx.ptl_lock(mm, vpn);
        let pte = ctx.pte_load(mm, vpn);
        let folio = self.folio;
        let maps_folio = pte.present().is_some_and(|p| !p.special && p.pfn == folio_pfn(folio, self.page()));
        if !maps_folio {
            ctx.ptl_unlock(mm, vpn);
            ctx.event("try_to_unmap_one", "page_vma_mapped_walk", |_| {
                format!("{address:#x}: PTE {} does not map folio {folio}", pte.describe())
            });
            return self.next_target();
        }
        ctx.event("try_to_unmap_one", "pvmw_lock", |_| format!("{address:#x}: PTE lock, PTE {}", pte.describe()));
        Flow::goto(&mut self.stage, UnmapStage::ClearPte)
    }

    /// ptep_clear_flush() / ptep_get_and_clear(): "Nuke the page table entry."
    fn clear_pte(&mut self, ctx: &mut Ctx) -> Flow {
        let (mm, address) = self.current();
        let pteval = ctx.pte_get_and_clear(mm, address >> crate::folio::PAGE_SHIFT);
        let folio = self.folio;
        ctx.event("try_to_unmap_one", "clear_pte", |k| {
            format!(
                "{address:#x}: PTE cleared (was {}); folio {folio} refcount {}",
                pteval.describe(),
                k.folio(folio).refcount
            )
        });
        let dirty = pteval.present().is_some_and(|p| p.dirty);
        let next = if dirty { UnmapStage::MarkDirty { pteval } } else { self.after_clear(ctx, pteval) };
        Flow::goto(&mut self.stage, next)
    }

    /// "Set the dirty flag on the folio now the PTE is gone."
    fn mark_dirty(&mut self, ctx: &mut Ctx, pteval: Pte) -> Flow {
        folio_mark_dirty(ctx, self.folio);
        let folio = self.folio;
        ctx.event("try_to_unmap_one", "folio_mark_dirty", |_| format!("folio {folio}: PTE was dirty"));
        let next = self.after_clear(ctx, pteval);
        Flow::goto(&mut self.stage, next)
    }

    /// The anonymous branch: lazyfree (MADV_FREE) folios are checked, others would be swapped.
    /// A file folio's mapping just goes: "dec_mm_counter(mm, mm_counter_file(folio))".
    fn after_clear(&mut self, ctx: &mut Ctx, pteval: Pte) -> UnmapStage {
        let folio = self.folio;
        if !ctx.flag_test(folio, PageFlag::Anon) {
            let (mm, _) = self.current();
            ctx.rss_add(mm, false, -1);
            return UnmapStage::RemoveRmap;
        }
        let swapbacked = ctx.flag_test(folio, PageFlag::Swapbacked);
        let swapcache = ctx.flag_test(folio, PageFlag::Swapcache);
        if ctx.warn_on_folio(
            swapbacked != swapcache,
            folio,
            "folio_test_swapbacked(folio) != folio_test_swapcache(folio)",
        ) {
            self.ret = false;
            return UnmapStage::WalkDone;
        }
        if swapbacked {
            return UnmapStage::SwapPte { pteval };
        }
        // MADV_FREE page check.
        match lazyfree_check(ctx) {
            LazyfreeCheck::Merged => UnmapStage::SmpMb { pteval },
            // v1 and v2 read the refcount right after the PTE clear: no smp_mb() between.
            LazyfreeCheck::V1 | LazyfreeCheck::V2 => UnmapStage::ReadRefcount { pteval },
            LazyfreeCheck::DirtyOnly => UnmapStage::CheckDirty(Snapshot { pteval, ref_count: 0, map_count: 0 }),
        }
    }

    /// "Store the swap location in the pte", in the kernel's order: swap_duplicate() (a
    /// failure restores the PTE), then, for an exclusive page, folio_try_share_anon_rmap_pte()
    /// (a maybe-pinned folio gives the swap reference back: swap_free(), and the PTE is
    /// restored), then the counters and the swap PTE, exclusive iff the page was.
    fn swap_pte(&mut self, ctx: &mut Ctx, pteval: Pte) -> Flow {
        let (folio, page, (mm, address)) = (self.folio, self.page(), self.current());
        // page_swap_entry(subpage): the folio's entry plus the page's index.
        let offset = ctx.folio_swap_load(folio).expect("swapbacked == swapcache was checked") + page as u32;
        let anon_exclusive = ctx.anon_exclusive_load(folio, page);
        // "if (swap_duplicate(entry) < 0) { set_pte_at(mm, address, pvmw.pte, pteval); goto
        // walk_abort; }"
        if !crate::mm::swapfile::swap_duplicate(ctx, offset) {
            return self.abort(ctx, pteval, "swap_duplicate failed");
        }
        // "See folio_try_share_anon_rmap(): clear PTE first." "if (anon_exclusive &&
        // folio_try_share_anon_rmap_pte(folio, subpage)) { swap_free(entry); set_pte_at(...);
        // goto walk_abort; }"
        if anon_exclusive && folio_try_share_anon_rmap_pte(ctx, folio, page).is_err() {
            crate::mm::swapfile::swap_free(ctx, offset);
            return self.abort(ctx, pteval, "maybe DMA-pinned");
        }
        ctx.rss_add(mm, true, -1);
        ctx.rss_swap_add(mm, 1);
        ctx.pte_store(mm, address >> crate::folio::PAGE_SHIFT, Pte::Swap { offset, exclusive: anon_exclusive });
        ctx.event("try_to_unmap_one", "set_pte_at swap", |_| {
            format!("{address:#x}: swap entry {offset:#x}{}", if anon_exclusive { " exclusive" } else { "" })
        });
        Flow::goto(&mut self.stage, UnmapStage::RemoveRmap)
    }

    /// walk_abort: the PTE is restored and the walk ends with "ret = false".
    fn abort(&mut self, ctx: &mut Ctx, pteval: Pte, why: &str) -> Flow {
        let folio = self.folio;
        self.restore_pte(ctx, pteval);
        self.ret = false;
        ctx.event("try_to_unmap_one", "set_pte_at", |_| format!("folio {folio}: {why}: PTE restored"));
        Flow::goto(&mut self.stage, UnmapStage::WalkDone)
    }

    fn restore_pte(&mut self, ctx: &mut Ctx, pteval: Pte) {
        let (mm, address) = self.current();
        ctx.pte_store(mm, address >> crate::folio::PAGE_SHIFT, pteval);
    }

    /// The lazyfree decision, in the three forms the kernel has had (and the two unmerged
    /// postings before the merged one).
    fn check_dirty(&mut self, ctx: &mut Ctx, snapshot: Snapshot) -> Flow {
        let folio = self.folio;
        let dirty = ctx.flag_test(folio, PageFlag::Dirty);
        let Snapshot { pteval, ref_count, map_count } = snapshot;
        let check = lazyfree_check(ctx);
        let discard = match check {
            // Before 6c8e2a256915: only the dirty flag is looked at.
            LazyfreeCheck::DirtyOnly => !dirty,
            // v1: "if (refcount == 2 && !PageDirty(page))".
            LazyfreeCheck::V1 => ref_count == 2 && !dirty,
            // v2: "if ((ref_count - 1 == map_count) && !PageDirty(page))".
            LazyfreeCheck::V2 => ref_count - 1 == map_count && !dirty,
            // "The only page refs must be one from isolation plus the rmap(s)."
            LazyfreeCheck::Merged => ref_count == 1 + map_count && !dirty,
        };
        if discard {
            let (mm, _) = self.current();
            ctx.rss_add(mm, true, -1);
            ctx.event("try_to_unmap_one", "discard", |_| match check {
                LazyfreeCheck::DirtyOnly => format!("folio {folio} clean (PageDirty only is checked): discard"),
                LazyfreeCheck::V1 => format!("folio {folio} clean, refcount {ref_count} == 2: discard"),
                LazyfreeCheck::V2 | LazyfreeCheck::Merged => {
                    format!("folio {folio} clean, refcount {ref_count} == 1 + mapcount {map_count}: discard")
                }
            });
            return Flow::goto(&mut self.stage, UnmapStage::RemoveRmap);
        }
        self.restore_pte(ctx, pteval);
        let set_swapbacked = !ctx.patched(Patch::LazyfreeSwapbackedIffDirty) || dirty;
        if set_swapbacked {
            ctx.flag_store(folio, PageFlag::Swapbacked, true);
        }
        self.ret = false;
        ctx.event("try_to_unmap_one", "set_pte_at", |_| {
            format!(
                "folio {folio} {}: PTE restored{} (refcount {ref_count}, mapcount {map_count})",
                if dirty { "redirtied" } else { "has an extra reference" },
                if set_swapbacked { ", folio_set_swapbacked" } else { "" }
            )
        });
        Flow::goto(&mut self.stage, UnmapStage::WalkDone)
    }

    /// 6c8e2a256915: "Synchronize with gup_pte_range(): clear PTE; barrier; read refcount."
    fn smp_mb(&mut self, ctx: &mut Ctx, pteval: Pte) -> Flow {
        ctx.fence(Fence::Full);
        ctx.event("try_to_unmap_one", "smp_mb", |_| String::new());
        Flow::goto(&mut self.stage, UnmapStage::ReadRefcount { pteval })
    }

    /// folio_ref_count(folio); page_ref_count(page) in v1 and v2 (the head page's).
    fn read_refcount(&mut self, ctx: &mut Ctx, pteval: Pte) -> Flow {
        let folio = self.folio;
        let ref_count = ctx.ref_load(folio);
        ctx.event("try_to_unmap_one", "read_refcount", |_| format!("folio {folio} refcount {ref_count}"));
        // v1 reads no mapcount: "int refcount = page_ref_count(page); ... smp_rmb();".
        let next = if lazyfree_check(ctx) == LazyfreeCheck::V1 {
            UnmapStage::SmpRmb(Snapshot { pteval, ref_count, map_count: 0 })
        } else {
            UnmapStage::ReadMapcount { pteval, ref_count }
        };
        Flow::goto(&mut self.stage, next)
    }

    /// folio_mapcount(folio); v2's page_mapcount() of the head page.
    fn read_mapcount(&mut self, ctx: &mut Ctx, pteval: Pte, ref_count: i32) -> Flow {
        let folio = self.folio;
        let map_count = if lazyfree_check(ctx) == LazyfreeCheck::V2 {
            // v2: "int map_count = page_mapcount(page);" of the head page `page`
            // (include/linux/mm.h, 5.16: its _mapcount + 1, through __page_mapcount()
            // with the compound mapcount for a compound page).
            let head = ctx.page_mapcount_load(folio, 0);
            if ctx.folio_test_large(folio) {
                head + ctx.entire_mapcount_load(folio)
            } else {
                head
            }
        } else {
            ctx.mapcount_load(folio)
        };
        ctx.event("try_to_unmap_one", "read_mapcount", |_| format!("folio {folio} mapcount {map_count}"));
        Flow::goto(&mut self.stage, UnmapStage::SmpRmb(Snapshot { pteval, ref_count, map_count }))
    }

    /// smp_rmb() between the counts and the dirty flag.
    fn smp_rmb(&mut self, ctx: &mut Ctx, snapshot: Snapshot) -> Flow {
        ctx.fence(Fence::Read);
        ctx.event("try_to_unmap_one", "smp_rmb", |_| String::new());
        Flow::goto(&mut self.stage, UnmapStage::CheckDirty(snapshot))
    }

    /// mm/rmap.c: folio_remove_rmap_pte() of the unmapped page ("discard:").
    fn remove_rmap(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        folio_remove_rmap_pte(ctx, folio, self.page());
        ctx.event("try_to_unmap_one", "folio_remove_rmap_pte", |k| {
            format!("folio {folio} mapcount {}", k.folio(folio).mapcount())
        });
        Flow::goto(&mut self.stage, UnmapStage::Put)
    }

    /// folio_put(): the mapping's reference.
    fn put(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        folio_put(ctx, folio);
        ctx.event("try_to_unmap_one", "folio_put", |k| format!("folio {folio} refcount {}", k.folio(folio).refcount));
        Flow::goto(&mut self.stage, UnmapStage::WalkDone)
    }

    /// mm/page_vma_mapped.c: page_vma_mapped_walk_done(): the PTE lock goes; a failed unmap
    /// ends the walk ("ret = false; break;").
    fn walk_done(&mut self, ctx: &mut Ctx) -> Flow {
        let (mm, address) = self.current();
        ctx.ptl_unlock(mm, address >> crate::folio::PAGE_SHIFT);
        ctx.event("try_to_unmap_one", "page_vma_mapped_walk_done", |_| format!("{address:#x}: PTE unlock"));
        if !self.ret {
            return Flow::goto(&mut self.stage, UnmapStage::UnlockAnonVma);
        }
        self.next_target()
    }

    /// rmap_walk_anon(): anon_vma_unlock_read(); rmap_walk_file() has nothing to drop.
    fn unlock_anon_vma(&mut self, ctx: &mut Ctx) -> Flow {
        if let Some(anon_vma) = self.anon_vma {
            ctx.anon_vma_unlock_read(anon_vma);
            ctx.event("try_to_unmap", "anon_vma_unlock_read", |_| String::new());
        } else {
            ctx.event("try_to_unmap", "rmap_walk_file done", |_| String::new());
        }
        Flow::Return(i64::from(self.ret))
    }
}

impl KernelFunction for TryToUnmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            UnmapStage::LockAnonVma => self.lock_anon_vma(ctx),
            UnmapStage::WalkLock => self.walk_lock(ctx),
            UnmapStage::ClearPte => self.clear_pte(ctx),
            UnmapStage::MarkDirty { pteval } => self.mark_dirty(ctx, pteval),
            UnmapStage::SmpMb { pteval } => self.smp_mb(ctx, pteval),
            UnmapStage::ReadRefcount { pteval } => self.read_refcount(ctx, pteval),
            UnmapStage::ReadMapcount { pteval, ref_count } => self.read_mapcount(ctx, pteval, ref_count),
            UnmapStage::SmpRmb(snapshot) => self.smp_rmb(ctx, snapshot),
            UnmapStage::CheckDirty(snapshot) => self.check_dirty(ctx, snapshot),
            UnmapStage::SwapPte { pteval } => self.swap_pte(ctx, pteval),
            UnmapStage::RemoveRmap => self.remove_rmap(ctx),
            UnmapStage::Put => self.put(ctx),
            UnmapStage::WalkDone => self.walk_done(ctx),
            UnmapStage::UnlockAnonVma => self.unlock_anon_vma(ctx),
        }
    }

    fn wait(&self, k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            // UFFDIO_MOVE takes the anon_vma for writing.
            UnmapStage::LockAnonVma => anon_vma_read_wait(k, self.folio),
            UnmapStage::WalkLock => {
                let (mm, address) = self.current();
                Wait::PteLock(mm, address >> crate::folio::PAGE_SHIFT)
            }
            _ => Wait::Nothing,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReferencedStage {
    LockAnonVma,
    ReferencedOne,
    UnlockAnonVma,
}

/// mm/rmap.c: folio_referenced() → folio_referenced_one(): count and clear the young bits of the
/// PTEs mapping the folio (ptep_clear_flush_young_notify), one mapping per step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FolioReferenced {
    pub folio: FolioId,
    pub stage: ReferencedStage,
    pub anon_vma: Option<AnonVmaId>,
    pub targets: Vec<RmapTarget>,
    pub target: usize,
    /// The VMAs (mm, start) in which some PTE of the folio was young: "pra->referenced++" once
    /// per VMA.
    pub young_vmas: Vec<(MmId, u64)>,
}

impl FolioReferenced {
    pub fn new(folio: FolioId) -> FolioReferenced {
        FolioReferenced {
            folio,
            stage: ReferencedStage::LockAnonVma,
            anon_vma: None,
            targets: Vec::new(),
            target: 0,
            young_vmas: Vec::new(),
        }
    }

    /// The first mapping to walk, if any.
    fn walk(&mut self, targets: Vec<RmapTarget>) -> Flow {
        self.targets = targets;
        let next =
            if self.targets.is_empty() { ReferencedStage::UnlockAnonVma } else { ReferencedStage::ReferencedOne };
        Flow::goto(&mut self.stage, next)
    }

    /// folio_referenced(): "if (!pra.mapcount) return 0;", then rmap_walk_file() or
    /// rmap_walk_anon()'s folio_lock_anon_vma_read() with "rwc.try_lock = true".
    fn lock_anon_vma(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        if ctx.mapcount_load(folio) == 0 {
            return Flow::Return(0);
        }
        if let Some(targets) = file_rmap_targets(ctx, folio) {
            ctx.event("folio_referenced", "rmap_walk_file", |_| format!("folio {folio}"));
            return self.walk(targets);
        }
        // A contended anon_vma makes folio_referenced() return -1 ("rmap lock contention:
        // rotate").
        let (anon_vma, targets) = match folio_lock_anon_vma_read(ctx, folio, true) {
            AnonVmaLocked::Walk(anon_vma, targets) => (anon_vma, targets),
            AnonVmaLocked::Nothing => return Flow::Return(0),
            AnonVmaLocked::Contended => {
                ctx.event("folio_referenced", "anon_vma_trylock_read", |_| format!("folio {folio}: contended"));
                return Flow::Return(-1);
            }
        };
        self.anon_vma = Some(anon_vma);
        ctx.event("folio_referenced", "anon_vma_lock_read", |_| format!("folio {folio}"));
        self.walk(targets)
    }

    /// mm/rmap.c: folio_referenced_one() of one mapping under its PTE lock:
    /// ptep_clear_flush_young_notify(), "pra->referenced++" once per VMA.
    fn referenced_one(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = self.folio;
        let (mm, address, page) = self.targets[self.target];
        let vpn = address >> crate::folio::PAGE_SHIFT;
        ctx.ptl_lock(mm, vpn);
        let pte = ctx.pte_load(mm, vpn);
        let mut young = false;
        if let Some(present) = pte.present().filter(|p| !p.special && p.pfn == folio_pfn(folio, page)) {
            if present.young {
                young = true;
                let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).map(|v| (mm, v.start));
                if let Some(vma) = vma.filter(|v| !self.young_vmas.contains(v)) {
                    self.young_vmas.push(vma);
                }
                ctx.pte_store(mm, vpn, Pte::Present(PresentPte { young: false, ..present }));
            }
        }
        ctx.ptl_unlock(mm, vpn);
        ctx.event("folio_referenced_one", "ptep_clear_flush_young", |_| {
            format!("{address:#x}: {}", if young { "young" } else { "old" })
        });
        self.target += 1;
        let next = match self.target == self.targets.len() {
            true => ReferencedStage::UnlockAnonVma,
            false => ReferencedStage::ReferencedOne,
        };
        Flow::goto(&mut self.stage, next)
    }

    /// rmap_walk_anon(): anon_vma_unlock_read(); the VMAs referenced.
    fn unlock_anon_vma(&mut self, ctx: &mut Ctx) -> Flow {
        if let Some(anon_vma) = self.anon_vma {
            ctx.anon_vma_unlock_read(anon_vma);
        }
        let referenced = self.young_vmas.len() as i64;
        ctx.event("folio_referenced", "anon_vma_unlock_read", |_| format!("referenced in {referenced} VMA(s)"));
        Flow::Return(referenced)
    }
}

impl KernelFunction for FolioReferenced {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            ReferencedStage::LockAnonVma => self.lock_anon_vma(ctx),
            ReferencedStage::ReferencedOne => self.referenced_one(ctx),
            ReferencedStage::UnlockAnonVma => self.unlock_anon_vma(ctx),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            ReferencedStage::ReferencedOne => {
                let (mm, address, _) = self.targets[self.target];
                Wait::PteLock(mm, address >> crate::folio::PAGE_SHIFT)
            }
            _ => Wait::Nothing,
        }
    }
}
