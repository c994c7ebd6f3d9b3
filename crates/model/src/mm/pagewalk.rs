//! mm/pagewalk.c: walk_page_test() and folio_walk_start(), the two ways generic code looks at
//! the folios a VMA maps, and walk_page_range() with a PTE-level pmd_entry ([`PteWalk`] with
//! its [`WalkOps`]).

use crate::access::Ctx;
use crate::folio::{pfn_folio, pfn_page, FolioId, ZERO_FOLIO};
use crate::mm::memory::vm_normal_page;
use crate::patches::Patch;
use crate::pgtable::{PresentPte, Pte};
use crate::state::{vm_flags, MmId, Vma};
use crate::thread::{Frame, Wait};
use serde::{Deserialize, Serialize};

/// mm/pagewalk.c: walk_page_test() without a `test_walk` op: a VM_PFNMAP VMA is skipped
/// (VM_IO is not: "walk_page_test() skips VM_PFNMAP (but not VM_IO :)").
pub fn walk_page_test(vma: &Vma) -> bool {
    vma.flags & vm_flags::VM_PFNMAP == 0
}

/// mm/pagewalk.c: walk_page_vma(): whether the walk visits the VMA's page tables. Before
/// c31783eeae7b (6.2) it called walk_page_test() and so skipped PFN maps.
pub fn walk_page_vma_walks(ctx: &Ctx, vma: &Vma) -> bool {
    ctx.patched(Patch::WalkPageVmaNoTestWalk) || walk_page_test(vma)
}

/// What folio_walk_start() found: the folio and the page of it `address` maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioWalk {
    pub folio: FolioId,
    pub page: usize,
}

/// mm/pagewalk.c: folio_walk_start() at PTE level with FW_ZEROPAGE, called with the PTE lock
/// held by the caller's step (folio_walk_end() drops it at the end of the same step). Only
/// present PTEs are considered; what vm_normal_page() rejects is "nothing", except the zero
/// page, which FW_ZEROPAGE asks for.
pub fn folio_walk_start(ctx: &mut Ctx, mm: MmId, vma: &Vma, address: u64) -> Option<FolioWalk> {
    // The unmerged proposal (patch 06/19 v1 of "mm: Support huge pfnmaps"): "It has no folio
    // backing the mappings at all.." -- which hides anonymous folios COWed into private PFN maps.
    if ctx.patched(Patch::FolioWalkPfnmapEarlyReturn) && vma.flags & (vm_flags::VM_IO | vm_flags::VM_PFNMAP) != 0 {
        return None;
    }
    // The PMD level: a huge PMD maps a THP (vm_normal_page_pmd(): no huge PFN maps here).
    if let Some(pmd) = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address)) {
        if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
            // FW_ZEROPAGE: the huge zero folio counts as the zero page.
            return Some(FolioWalk { folio: ZERO_FOLIO, page: 0 });
        }
        let pfn = pmd.pfn + ((address >> crate::folio::PAGE_SHIFT) % crate::pgtable::PTRS_PER_PTE);
        return Some(FolioWalk { folio: pfn_folio(pfn), page: pfn_page(pfn) });
    }
    let Pte::Present(present) = ctx.pte_load(mm, address >> crate::folio::PAGE_SHIFT) else {
        return None;
    };
    match vm_normal_page(vma, address, present) {
        Some(pfn) => Some(FolioWalk { folio: pfn_folio(pfn), page: pfn_page(pfn) }),
        None if pfn_folio(present.pfn) == ZERO_FOLIO => Some(FolioWalk { folio: ZERO_FOLIO, page: 0 }),
        None => None,
    }
}

/// include/linux/pagewalk.h: struct mm_walk_ops, for walks whose pmd_entry locks a PTE table
/// and visits its PTEs (madvise_free_pte_range(), madvise_cold_or_pageout_pte_range(),
/// smaps_pte_range()). [`PteWalk`] steps through the range; these are what it does at each
/// point, under the table's lock (the model's PMD lock is its table's lock).
pub trait WalkOps {
    /// A PTE's work that takes a second step of its own (smaps' 5.16 __page_mapcount()).
    type More;
    /// The mm walked.
    fn mm(&self) -> MmId;
    /// Whether the walk visits only the PTEs that exist (collected when the table is locked:
    /// under its lock the set is stable) rather than every PTE of the range.
    fn existing_only(&self) -> bool;
    /// The huge PMD branch of pmd_entry at table `index`, with its lock held (`cursor`..`end`
    /// is the part of the range in the table).
    fn pmd_entry(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte, cursor: u64, end: u64) -> PmdDone;
    /// pte_offset_map_lock() took the table's lock; `cursor`..`end` is what the walk visits.
    fn pte_table_locked(&mut self, ctx: &mut Ctx, cursor: u64, end: u64);
    /// pte_entry for the PTE at `vpn` (`end`: the end of the range walked).
    fn pte_entry(&mut self, ctx: &mut Ctx, vpn: u64, end: u64) -> Option<Self::More>;
    /// The second step of a PTE whose pte_entry asked for one.
    fn pte_entry_more(&mut self, ctx: &mut Ctx, more: Self::More);
    /// pte_unmap_unlock() dropped the table's lock: a callee to run now, if any.
    fn pte_table_unlocked(&mut self, ctx: &mut Ctx) -> Option<Frame>;
}

/// How the huge PMD branch of a pmd_entry ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmdDone {
    /// The op dropped the lock in its step: the walk goes on at the next table.
    Unlocked,
    /// The lock is dropped at the walk's next step.
    Locked,
}

/// `WalkOps::More` for walks without a second step per PTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoMore {}

/// The PTEs of a locked table the walk has still to visit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entries {
    /// Every PTE from `next` to the table's end.
    Every { next: u64 },
    /// The PTEs that existed when the table was locked (last first).
    Existing(Vec<u64>),
}

impl Entries {
    /// The next PTE to visit, taken off the list.
    fn take(&mut self, table_end: u64) -> Option<u64> {
        match self {
            Entries::Every { next } if *next < table_end => {
                *next += 1;
                Some(*next - 1)
            }
            Entries::Every { .. } => None,
            Entries::Existing(entries) => entries.pop(),
        }
    }
}

/// Where a [`PteWalk`] is: each variant is one step of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WalkAt<M> {
    /// pmd_trans_huge_lock() / pte_offset_map_lock() of the table holding `cursor`.
    Lock { cursor: u64 },
    /// pte_entry of the PTE at `vpn`, in the locked table.
    Pte { vpn: u64, entries: Entries, table_end: u64 },
    /// The second step of the PTE just visited.
    More { entries: Entries, table_end: u64, more: M },
    /// pte_unmap_unlock(); the walk goes on at `table_end`.
    Unlock { table_end: u64 },
}

/// mm/pagewalk.c: walk_page_range() of the pages `cursor..end` (page numbers) with a pmd_entry
/// that takes the table's lock: one table at a time, locked in one step, one PTE per step,
/// unlocked in a step of its own (a huge PMD in its lock's step). Held in its caller's stage,
/// whose step delegates to [`PteWalk::step`]: the walk adds no step of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PteWalk<M> {
    /// The end of the range walked (a page number).
    pub end: u64,
    pub at: WalkAt<M>,
}

/// What a step of a [`PteWalk`] leaves to its caller.
pub enum Walked {
    /// The walk goes on at the caller's next step (after the callee, if any).
    Walking(Option<Frame>),
    /// The walk is over: the caller goes on (after the callee, if any).
    Done(Option<Frame>),
}

impl<M> PteWalk<M> {
    /// walk_page_range() of the pages `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        PteWalk { end, at: WalkAt::Lock { cursor: start } }
    }

    /// The end of the table holding `cursor`, or of the range.
    fn table_end(&self, cursor: u64) -> u64 {
        ((crate::pgtable::pte_table(cursor) + 1) * crate::pgtable::PTRS_PER_PTE).min(self.end)
    }

    /// After a table's last step: the next table or the end of the walk.
    fn next_table(&mut self, table_end: u64, call: Option<Frame>) -> Walked {
        if table_end >= self.end {
            return Walked::Done(call);
        }
        self.at = WalkAt::Lock { cursor: table_end };
        Walked::Walking(call)
    }

    /// After a PTE (or the lock): the next one, or the unlock.
    fn next_pte(mut entries: Entries, table_end: u64) -> WalkAt<M> {
        match entries.take(table_end) {
            Some(vpn) => WalkAt::Pte { vpn, entries, table_end },
            None => WalkAt::Unlock { table_end },
        }
    }

    /// One step of the walk.
    pub fn step<O: WalkOps<More = M>>(&mut self, ctx: &mut Ctx, ops: &mut O) -> Walked {
        let mm = ops.mm();
        match std::mem::replace(&mut self.at, WalkAt::Unlock { table_end: 0 }) {
            WalkAt::Lock { cursor } => {
                let table_end = self.table_end(cursor);
                ctx.ptl_lock(mm, cursor);
                let index = crate::pgtable::pte_table(cursor);
                if let Some(pmd) = ctx.pmd_load(mm, index) {
                    return match ops.pmd_entry(ctx, index, pmd, cursor, table_end) {
                        PmdDone::Unlocked => self.next_table(table_end, None),
                        PmdDone::Locked => {
                            self.at = WalkAt::Unlock { table_end };
                            Walked::Walking(None)
                        }
                    };
                }
                let entries = if ops.existing_only() {
                    let mut existing: Vec<u64> = ctx.pte_entries(mm, cursor, table_end).iter().map(|e| e.0).collect();
                    existing.reverse();
                    Entries::Existing(existing)
                } else {
                    Entries::Every { next: cursor }
                };
                ops.pte_table_locked(ctx, cursor, table_end);
                self.at = Self::next_pte(entries, table_end);
                Walked::Walking(None)
            }
            WalkAt::Pte { vpn, entries, table_end } => {
                self.at = match ops.pte_entry(ctx, vpn, self.end) {
                    Some(more) => WalkAt::More { entries, table_end, more },
                    None => Self::next_pte(entries, table_end),
                };
                Walked::Walking(None)
            }
            WalkAt::More { entries, table_end, more } => {
                ops.pte_entry_more(ctx, more);
                self.at = Self::next_pte(entries, table_end);
                Walked::Walking(None)
            }
            WalkAt::Unlock { table_end } => {
                ctx.ptl_unlock(mm, table_end - 1);
                let call = ops.pte_table_unlocked(ctx);
                self.next_table(table_end, call)
            }
        }
    }

    /// What the walk's next step waits for.
    pub fn wait(&self, mm: MmId) -> Wait {
        match self.at {
            WalkAt::Lock { cursor } => Wait::PteLock(mm, cursor),
            _ => Wait::Nothing,
        }
    }
}
