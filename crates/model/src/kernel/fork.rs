//! kernel/fork.c: fork() of an address space: dup_mm() → dup_mmap() under mmap_write_lock(),
//! anon_vma_fork() and mm/memory.c: copy_page_range() → copy_present_pte().
//!
//! Modelled coarsely: one step per PTE table (under the parent's PTE lock; the child's table is
//! not yet reachable by anyone). The child's VMAs share the parent's anon_vma (anon_vma_fork()
//! links the child's VMAs into the parent's chain; the child's own new anon_vma is not
//! modelled). `mm->write_protect_seq`, which orders fork against GUP-fast pins, is not
//! modelled yet.

use crate::access::Ctx;
use crate::folio::{folio_pfn, pfn_page, PageData, PageFlag, PAGE_SHIFT};
use crate::mm::memory::vm_normal_folio;
use crate::mm::rmap::folio_add_new_anon_rmap;
use crate::mm::swap::folio_add_lru;
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{vm_flags, MmId, ThreadId};
use crate::thread::{Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForkStage {
    DupMmap,
    /// copy_page_range(): the table holding page `cursor`, up to `end` (the end of the
    /// parent's mappings).
    CopyTable {
        cursor: u64,
        end: u64,
    },
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fork {
    pub parent: MmId,
    pub child: MmId,
    pub child_thread: ThreadId,
    pub stage: ForkStage,
}

impl Fork {
    pub fn new(parent: MmId, child: MmId, child_thread: ThreadId) -> Self {
        Fork { parent, child, child_thread, stage: ForkStage::DupMmap }
    }

    /// dup_mmap(): copy the VMAs; anon_vma_fork() links the child into their anon_vmas.
    fn dup_mmap(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_write_lock(self.parent);
        let vmas = ctx.vmas(self.parent).to_vec();
        let unsupported = if vmas.iter().any(|v| v.device.is_some()) {
            Some("a device mapping (vm_ops->open, VM_PFNMAP/MIXEDMAP copies)")
        } else {
            None
        };
        if let Some(what) = unsupported {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                format!("not modelled: fork() of {what}"),
            ));
        }
        // dup_userfaultfd(): without UFFD_FEATURE_EVENT_FORK the child's VMAs are unregistered.
        // dup_mmap() (mm/mmap.c in 6.18, kernel/fork.c before): "VM_WIPEONFORK gets a clean
        // slate in the child. Don't prepare anon_vma until fault since we don't copy page for
        // current vma": no anon_vma_fork(), and no copy_page_range() (vma_needs_copy() below).
        let wiped = |v: &crate::state::Vma| v.flags & vm_flags::VM_WIPEONFORK != 0;
        let child_vmas: Vec<crate::state::Vma> = vmas
            .iter()
            .map(|v| crate::state::Vma { uffd: None, anon_vma: if wiped(v) { None } else { v.anon_vma }, ..v.clone() })
            .collect();
        ctx.dup_mmap_vmas(self.parent, self.child, child_vmas);
        let mut anon_vmas: Vec<u32> = vmas.iter().filter(|v| !wiped(v)).filter_map(|v| v.anon_vma).collect();
        anon_vmas.dedup();
        for anon_vma in anon_vmas {
            ctx.anon_vma_add_mm(anon_vma, self.child);
        }
        let cursor = vmas.first().map_or(0, |v| v.start >> PAGE_SHIFT);
        let end = vmas.last().map_or(0, |v| v.end >> PAGE_SHIFT);
        let count = vmas.len();
        ctx.event("dup_mmap", "mmap_write_lock", |_| format!("{count} VMA(s) copied"));
        Flow::goto(&mut self.stage, if cursor < end { ForkStage::CopyTable { cursor, end } } else { ForkStage::Done })
    }

    /// copy_pte_range() for one table: copy_present_pte() for each present PTE, under the
    /// child's PTE lock (pte_alloc_map_lock(dst_mm)) and the parent's (spin_lock_nested()):
    /// reclaim's rmap walk of the child's new mapping takes the child's lock, and its
    /// release orders the copy's reference and rmap before what that walk reads.
    fn copy_table(&mut self, ctx: &mut Ctx, cursor: u64, end: u64) -> Flow {
        let (parent, child) = (self.parent, self.child);
        let first = cursor;
        let last = end.min((first / PTRS_PER_PTE + 1) * PTRS_PER_PTE);
        ctx.ptl_lock(child, first);
        ctx.ptl_lock(parent, first);
        if let Some(pmd) = ctx.pmd_load(parent, first / PTRS_PER_PTE) {
            if vma_needs_copy(ctx, parent, first << PAGE_SHIFT) {
                self.copy_huge_pmd(ctx, first / PTRS_PER_PTE, pmd);
            }
        }
        let mut copied = 0;
        for (vpn, _) in ctx.pte_entries(parent, first, last) {
            if !vma_needs_copy(ctx, parent, vpn << PAGE_SHIFT) {
                continue;
            }
            let pte = ctx.pte_load(parent, vpn);
            if matches!(pte, Pte::Swap { .. } | Pte::Migration { .. }) {
                copied += 1;
                self.copy_nonpresent_pte(ctx, vpn, pte);
                continue;
            }
            let Some(present) = pte.present() else { continue };
            copied += 1;
            self.copy_present_pte(ctx, vpn, present);
        }
        ctx.ptl_unlock(parent, first);
        ctx.ptl_unlock(child, first);
        ctx.event("copy_pte_range", "copy ptes", move |_| {
            format!("{copied} PTE(s) in [{:#x}, {:#x})", first << PAGE_SHIFT, last << PAGE_SHIFT)
        });
        let next = if last >= end { ForkStage::Done } else { ForkStage::CopyTable { cursor: last, end } };
        Flow::goto(&mut self.stage, next)
    }

    /// mm/huge_memory.c: copy_huge_pmd(): the child maps the same THP by PMD, both write-protected
    /// (folio_try_dup_anon_rmap_pmd(): the head loses PageAnonExclusive). The huge zero PMD is
    /// copied as it is. A THP that may be pinned is split first in the kernel (not modelled).
    fn copy_huge_pmd(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte) {
        let child = self.child;
        if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
            ctx.pmd_store(child, index, Some(pmd));
            return;
        }
        let folio = crate::folio::pfn_folio(pmd.pfn);
        // folio_try_dup_anon_rmap_pmd(): only an exclusive THP can be pinned for DMA.
        let exclusive = ctx.anon_exclusive_load(folio, 0);
        if exclusive && crate::mm::gup::folio_maybe_dma_pinned(ctx, folio) {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: fork() of a maybe-pinned PMD-mapped THP (split by copy_huge_pmd)",
            ));
            return;
        }
        ctx.anon_exclusive_store(folio, 0, false);
        ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
        ctx.entire_mapcount_add(folio, 1);
        ctx.rss_add(child, true, crate::mm::huge_memory::HPAGE_PMD_NR as i64);
        let protected = PresentPte { write: false, ..pmd };
        ctx.pmd_store(self.parent, index, Some(protected));
        ctx.pmd_store(child, index, Some(PresentPte { young: false, ..protected }));
    }

    /// mm/memory.c: copy_nonpresent_pte(): a swap entry gains a swap_map count and becomes
    /// shared ("Mark the swap entry as shared": the parent's loses its exclusive bit); a
    /// writable or exclusive migration entry of a COW mapping becomes readable in both.
    fn copy_nonpresent_pte(&mut self, ctx: &mut Ctx, vpn: u64, pte: Pte) {
        let (parent, child) = (self.parent, self.child);
        let entry = match pte {
            Pte::Swap { offset, exclusive } => {
                if !crate::mm::swapfile::swap_duplicate(ctx, offset) {
                    // add_swap_count_continuation() and retry: continuation counts are not
                    // modelled.
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        "not modelled: fork() needing a swap count continuation (add_swap_count_continuation)",
                    ));
                    return;
                }
                if exclusive {
                    ctx.pte_store(parent, vpn, Pte::Swap { offset, exclusive: false });
                }
                ctx.rss_swap_add(child, 1);
                Pte::Swap { offset, exclusive: false }
            }
            Pte::Migration { pfn, write, exclusive, young, dirty } => {
                ctx.rss_add(child, true, 1);
                let cow = ctx.vmas(parent).iter().any(|v| v.contains(vpn << PAGE_SHIFT) && v.is_cow_mapping());
                if (write || exclusive) && cow {
                    let readable = Pte::Migration { pfn, write: false, exclusive: false, young, dirty };
                    ctx.pte_store(parent, vpn, readable);
                    readable
                } else {
                    pte
                }
            }
            _ => unreachable!("a swap or migration entry"),
        };
        ctx.pte_store(child, vpn, entry);
    }

    /// mm/memory.c: copy_present_pte(); a page cache page is shared
    /// (folio_dup_file_rmap_pte(), MM_FILEPAGES).
    fn copy_present_pte(&mut self, ctx: &mut Ctx, vpn: u64, pte: PresentPte) {
        let (parent, child) = (self.parent, self.child);
        let address = vpn << PAGE_SHIFT;
        let cow = ctx.vmas(parent).iter().any(|v| {
            v.contains(address) && v.flags & (vm_flags::VM_SHARED | vm_flags::VM_MAYWRITE) == vm_flags::VM_MAYWRITE
        });
        let Some(folio) = vm_normal_folio(pte) else {
            // The zero page (special): the PTE is copied as it is.
            ctx.pte_store(child, vpn, Pte::Present(pte));
            return;
        };
        let page = pfn_page(pte.pfn);
        // folio_try_dup_anon_rmap_pte(): an exclusive page that may be pinned cannot be
        // shared: the child gets a copy (copy_present_page()). The kernel also requires
        // MMF_HAS_PINNED on the mm (folio_needs_cow_for_dma()); the model assumes it is set
        // whenever the folio looks pinned.
        if ctx.anon_exclusive_load(folio, page) {
            let pinned = crate::mm::gup::folio_maybe_dma_pinned(ctx, folio);
            if pinned {
                let copy = ctx.alloc_folio(0);
                let data: PageData = ctx.data_load(folio, page);
                ctx.data_store(copy, 0, data);
                ctx.flag_store(copy, PageFlag::Uptodate, true);
                folio_add_new_anon_rmap(ctx, copy, child, address);
                folio_add_lru(ctx, copy);
                ctx.rss_add(child, true, 1);
                let entry =
                    PresentPte { pfn: folio_pfn(copy, 0), write: pte.write, dirty: true, young: true, special: false };
                ctx.pte_store(child, vpn, Pte::Present(entry));
                return;
            }
            ctx.anon_exclusive_store(folio, page, false);
        }
        ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
        ctx.page_mapcount_add(folio, page, 1);
        let anon = ctx.flag_test(folio, PageFlag::Anon);
        ctx.rss_add(child, anon, 1);
        let mut entry = pte;
        if cow && pte.write {
            // ptep_set_wrprotect() in the parent, pte_wrprotect() for the child.
            ctx.pte_store(parent, vpn, Pte::Present(PresentPte { write: false, ..pte }));
            entry.write = false;
        }
        entry.young = false;
        ctx.pte_store(child, vpn, Pte::Present(entry));
    }

    /// mmap_write_unlock(); the child starts with a copy of the parent's registers.
    fn done(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_write_unlock(self.parent);
        let registers = ctx.local().registers.clone();
        ctx.wake_up_new_task(self.child_thread, registers);
        ctx.event("kernel_clone", "wake_up_new_task", |_| "the child runs".to_string());
        Flow::Return(i64::from(self.child_thread) + 1)
    }
}

impl KernelFunction for Fork {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            ForkStage::DupMmap => self.dup_mmap(ctx),
            ForkStage::CopyTable { cursor, end } => self.copy_table(ctx, cursor, end),
            ForkStage::Done => self.done(ctx),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: ThreadId) -> Wait {
        match self.stage {
            ForkStage::DupMmap => Wait::MmapWrite(self.parent),
            ForkStage::CopyTable { cursor, .. } => Wait::PteLocks((self.child, cursor), (self.parent, cursor)),
            ForkStage::Done => Wait::Nothing,
        }
    }
}

/// mm/memory.c: vma_needs_copy(): a VMA with no anon_vma (a file mapping never written
/// privately) is not copied: the child faults its pages in from the page cache.
fn vma_needs_copy(ctx: &mut Ctx, mm: crate::state::MmId, address: u64) -> bool {
    let pfn_map = vm_flags::VM_PFNMAP | vm_flags::VM_MIXEDMAP;
    // dup_mmap(): "if (!(tmp->vm_flags & VM_WIPEONFORK)) retval = copy_page_range(tmp, mpnt);"
    let copied = |v: &crate::state::Vma| v.flags & vm_flags::VM_WIPEONFORK == 0;
    ctx.vmas(mm)
        .iter()
        .find(|v| v.contains(address))
        .is_some_and(|v| copied(v) && (v.anon_vma.is_some() || v.flags & pfn_map != 0))
}
