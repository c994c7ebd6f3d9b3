//! mm/mremap.c: mremap(2) of anonymous memory in one step under mmap_write_lock() (nothing else
//! can observe the lock held): shrink in place, grow in place when the pages after the mapping
//! are free, or move (move_vma() → move_page_tables() → move_ptes(), each table under both
//! PTE locks). A moved VMA keeps its vm_pgoff and anon_vma, so its folios' rmap still finds
//! them at the new address.

use crate::access::Ctx;
use crate::folio::{PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::Zap;
use crate::mm::mmap::{page_align, MMAP_MIN_ADDR, TASK_SIZE};
use crate::program::mremap::{MREMAP_FIXED, MREMAP_MAYMOVE};
use crate::state::{MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MremapStage {
    Start,
    /// After unmapping what MREMAP_FIXED replaces (or the tail a shrink drops).
    Unmapped,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mremap {
    pub mm: MmId,
    pub address: u64,
    pub old_length: u64,
    pub new_length: u64,
    pub flags: u32,
    pub new_address: u64,
    pub stage: MremapStage,
}

impl Mremap {
    pub fn new(mm: MmId, address: u64, old_length: u64, new_length: u64, flags: u32, new_address: u64) -> Self {
        Mremap {
            mm,
            address,
            old_length: page_align(old_length),
            new_length: page_align(new_length),
            flags,
            new_address,
            stage: MremapStage::Start,
        }
    }

    /// mm/mremap.c (6.18): check_mremap_params(), before the mmap lock: the flags, the
    /// alignment, a zero or oversized new length, and for MREMAP_FIXED a target that is
    /// unaligned, wraps or ends beyond TASK_SIZE, or overlaps the source (6.12 made the same
    /// checks in mremap_to(), after the VMA lookup).
    fn params_invalid(&self) -> bool {
        let fixed = self.flags & MREMAP_FIXED != 0;
        let (to, to_end, old_end) = (
            self.new_address,
            self.new_address.wrapping_add(self.new_length),
            self.address.wrapping_add(self.old_length),
        );
        self.flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0
            || !self.address.is_multiple_of(PAGE_SIZE)
            || self.new_length == 0
            || self.new_length > TASK_SIZE
            || (fixed
                && (to > TASK_SIZE - self.new_length
                    || !to.is_multiple_of(PAGE_SIZE)
                    || self.flags & MREMAP_MAYMOVE == 0
                    || (to < old_end && self.address < to_end)))
    }

    /// do_mremap()'s checks, and the unmapping a fixed move or a shrink starts with.
    fn start(&mut self, ctx: &mut Ctx) -> Flow {
        let fixed = self.flags & MREMAP_FIXED != 0;
        if self.params_invalid() {
            return Flow::Return(-errno::EINVAL);
        }
        ctx.mmap_write_lock(self.mm);
        // vma_to_resize(): the old range must lie in one VMA, not a device's (a file's, never
        // faulted, moves as an anonymous one does). A userfaultfd-registered VMA may move too:
        // mremap_userfaultfd_prep() drops the registration from the moved VMA.
        let (address, old_length) = (self.address, self.old_length);
        let vma = ctx.vma_lookup(self.mm, address);
        if !vma.is_some_and(|v| old_length <= v.end - address && v.device.is_none()) {
            return self.unlock_return(ctx, -errno::EFAULT);
        }
        if fixed {
            let (to, to_end) = (self.new_address, self.new_address + self.new_length);
            // The zap's return resumes this frame at Unmapped.
            return Flow::call(&mut self.stage, MremapStage::Unmapped, Frame::Zap(Zap::new(self.mm, to, to_end)));
        }
        if self.new_length < self.old_length {
            return Flow::call(
                &mut self.stage,
                MremapStage::Unmapped,
                Frame::Zap(Zap::new(self.mm, address + self.new_length, address + old_length)),
            );
        }
        Flow::goto(&mut self.stage, MremapStage::Unmapped)
    }

    /// do_mremap()'s `out:`: mmap_write_unlock(), then the result.
    fn unlock_return(&mut self, ctx: &mut Ctx, result: i64) -> Flow {
        ctx.mmap_write_unlock(self.mm);
        let (address, old, new, flags) = (self.address, self.old_length, self.new_length, self.flags);
        ctx.event("do_mremap", "mmap_write_unlock", |_| {
            format!("{address:#x} {old:#x} -> {new:#x} flags {flags:#x}: {result:#x}")
        });
        Flow::Return(result)
    }

    /// do_mremap() after the unmapping: mremap_to() (MREMAP_FIXED), a shrink, an expansion in
    /// place, or move_vma().
    fn unmapped(&mut self, ctx: &mut Ctx) -> Flow {
        let (address, old_end) = (self.address, self.address + self.old_length);
        let vmas = ctx.vmas(self.mm).to_vec();
        let vma = vmas.iter().find(|v| v.contains(address)).cloned().expect("checked at the start");
        if self.flags & MREMAP_FIXED != 0 {
            let to = self.new_address;
            ctx.vma_remove_range(self.mm, to, to + self.new_length);
            // mremap_to() → vrm_set_new_addr() → get_unmapped_area(MAP_FIXED) →
            // security_mmap_addr() → cap_mmap_addr(): below mmap_min_addr without
            // CAP_SYS_RAWIO, -EPERM (after the target was unmapped).
            if to < MMAP_MIN_ADDR {
                if self.new_length < self.old_length {
                    ctx.violation(crate::violation::Violation::new(
                        crate::violation::ViolationKind::Invariant,
                        "not modelled: a shrinking mremap MREMAP_FIXED below mmap_min_addr (shrink_vma, then -EPERM)",
                    ));
                }
                return self.unlock_return(ctx, -errno::EPERM);
            }
            return self.move_vma(ctx, &vma, to);
        }
        if self.new_length <= self.old_length {
            ctx.vma_remove_range(self.mm, address + self.new_length, old_end);
            return self.unlock_return(ctx, address as i64);
        }
        // vma_expandable(): the VMA ends where the old range ends and nothing follows it.
        let new_end = address + self.new_length;
        // vma_expandable() → get_unmapped_area(MAP_FIXED): "if (addr > TASK_SIZE - len)" it
        // cannot grow there.
        let free_after =
            old_end == vma.end && new_end <= TASK_SIZE && !vmas.iter().any(|v| v.start < new_end && v.end > old_end);
        if free_after {
            ctx.vma_update(self.mm, vma.start, |stored| stored.end = new_end).expect("the VMA");
            return self.unlock_return(ctx, address as i64);
        }
        if self.flags & MREMAP_MAYMOVE == 0 {
            return self.unlock_return(ctx, -errno::ENOMEM);
        }
        // get_unmapped_area(): where the model's mmap would place it (PMD-aligned for an
        // anonymous length that is a multiple of a PMD, as do_mmap()).
        let huge = crate::mm::huge_memory::HPAGE_PMD_SIZE;
        let align = if self.new_length.is_multiple_of(huge) && vma.is_anonymous() { huge } else { PAGE_SIZE };
        let to = ctx.get_unmapped_area(self.mm, self.new_length, align);
        if !crate::mm::mmap::unmapped_area_fits(ctx, to, self.new_length) {
            return self.unlock_return(ctx, -errno::ENOMEM);
        }
        self.move_vma(ctx, &vma, to)
    }

    /// move_vma(): the new VMA (same vm_pgoff, anon_vma and flags), the page tables moved
    /// (move_page_tables()), the old range unmapped.
    fn move_vma(&mut self, ctx: &mut Ctx, vma: &Vma, to: u64) -> Flow {
        let (address, moved) = (self.address, self.old_length.min(self.new_length));
        let pgoff = vma.pgoff + ((address - vma.start) >> PAGE_SHIFT);
        // mremap_userfaultfd_prep(): without UFFD_FEATURE_EVENT_REMAP (the model's UFFDIO_API
        // asks for no feature) the moved VMA is no longer registered.
        let new = Vma { start: to, end: to + self.new_length, pgoff, uffd: None, ..vma.clone() };
        let (first_vpn, pages) = (address >> PAGE_SHIFT, moved >> PAGE_SHIFT);
        let mut page = 0;
        while page < pages {
            // move_page_tables() skips what is empty: the walk costs the entries there are.
            let Some(vpn) = ctx.next_mapped_vpn_write_locked(self.mm, first_vpn + page, first_vpn + pages) else {
                break;
            };
            page = vpn - first_vpn;
            let (from_vpn, to_vpn) = ((address >> PAGE_SHIFT) + page, (to >> PAGE_SHIFT) + page);
            if self.move_huge_pmd(ctx, from_vpn, to_vpn, (moved >> PAGE_SHIFT) - page) {
                page += crate::pgtable::PTRS_PER_PTE;
                continue;
            }
            page += 1;
            ctx.ptl_lock(self.mm, from_vpn);
            if crate::pgtable::pte_table(from_vpn) != crate::pgtable::pte_table(to_vpn) {
                ctx.ptl_lock(self.mm, to_vpn);
            }
            let pte = ctx.pte_get_and_clear(self.mm, from_vpn);
            if !pte.is_none() {
                ctx.pte_store(self.mm, to_vpn, pte);
            }
            ctx.ptl_unlock(self.mm, from_vpn);
            if crate::pgtable::pte_table(from_vpn) != crate::pgtable::pte_table(to_vpn) {
                ctx.ptl_unlock(self.mm, to_vpn);
            }
        }
        ctx.vma_remove_range(self.mm, address, address + self.old_length);
        ctx.vma_insert(self.mm, new);
        // What the old range held beyond the moved part (a shrinking move) is gone with it.
        self.unlock_return(ctx, to as i64)
    }
}

impl Mremap {
    /// move_page_tables() at a huge PMD: "if (extent == HPAGE_PMD_SIZE && move_pgt_entry(HPAGE_PMD,
    /// ...)) continue;" moves the whole PMD under both PMD locks (move_huge_pmd()); otherwise
    /// split_huge_pmd() and the PTEs move one by one. True when the PMD moved.
    fn move_huge_pmd(&mut self, ctx: &mut Ctx, from_vpn: u64, to_vpn: u64, pages_left: u64) -> bool {
        let per_table = crate::pgtable::PTRS_PER_PTE;
        let (mm, from_index, to_index) = (self.mm, from_vpn / per_table, to_vpn / per_table);
        let Some(pmd) = ctx.pmd_load(mm, from_index) else { return false };
        ctx.ptl_lock(mm, from_vpn);
        let whole = from_vpn.is_multiple_of(per_table) && to_vpn.is_multiple_of(per_table) && pages_left >= per_table;
        if whole && ctx.pmd_none(mm, to_index) {
            ctx.ptl_lock(mm, to_vpn);
            ctx.pmd_store(mm, from_index, None);
            ctx.pmd_store(mm, to_index, Some(pmd));
            ctx.ptl_unlock(mm, to_vpn);
            ctx.ptl_unlock(mm, from_vpn);
            ctx.event("move_page_tables", "move_huge_pmd", |_| {
                format!("PMD {:#x} -> {:#x}", from_vpn << PAGE_SHIFT, to_vpn << PAGE_SHIFT)
            });
            return true;
        }
        if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
            crate::mm::huge_memory::__split_huge_zero_page_pmd(ctx, mm, from_index, pmd);
        } else {
            crate::mm::huge_memory::__split_huge_pmd_locked(ctx, mm, from_index, pmd);
        }
        ctx.ptl_unlock(mm, from_vpn);
        ctx.event("move_page_tables", "split_huge_pmd", |_| {
            format!("PMD {:#x}", (from_index * per_table) << PAGE_SHIFT)
        });
        false
    }
}

impl KernelFunction for Mremap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            MremapStage::Start => self.start(ctx),
            MremapStage::Unmapped => self.unmapped(ctx),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            MremapStage::Start => Wait::MmapWrite(self.mm),
            MremapStage::Unmapped => Wait::Nothing,
        }
    }
}
