//! mm/pagewalk.c: walk_page_test() and folio_walk_start(), the two ways generic code looks at
//! the folios a VMA maps.

use crate::access::Ctx;
use crate::folio::{pfn_folio, pfn_page, FolioId, ZERO_FOLIO};
use crate::mm::memory::vm_normal_page;
use crate::patches::Patch;
use crate::pgtable::Pte;
use crate::state::{vm_flags, MmId, Vma};

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
