//! fs/proc/task_mmu.c pagemap_read() (one entry) and fs/proc/page.c kpagecount_read() /
//! kpageflags_read() (stable_page_flags()), for the page an address maps. Only the bits the
//! model can stand behind are reported: the comparable ones of docs/CONFORMANCE.md.

use crate::access::Ctx;
use crate::folio::{PageFlag, Pfn, PAGE_SHIFT, ZERO_FOLIO};
use crate::mm::memory::vm_normal_page;
use crate::pgtable::{Pte, PTRS_PER_PTE};
use crate::state::MmId;
use crate::thread::{Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// include/linux/... PM_* bits of a pagemap entry.
pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_SWAP: u64 = 1 << 62;
pub const PM_FILE: u64 = 1 << 61;
pub const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;
/// The pagemap bits compared with the live kernel (no pfn: it differs between runs).
pub const PAGEMAP_FLAGS: u64 = PM_PRESENT | PM_SWAP | PM_FILE | PM_MMAP_EXCLUSIVE;

/// include/uapi/linux/kernel-page-flags.h: the KPF_* bits the model reports.
pub mod kpf {
    pub const MMAP: u64 = 1 << 11;
    pub const ANON: u64 = 1 << 12;
    pub const SWAPCACHE: u64 = 1 << 13;
    pub const SWAPBACKED: u64 = 1 << 14;
    pub const COMPOUND_HEAD: u64 = 1 << 15;
    pub const COMPOUND_TAIL: u64 = 1 << 16;
    pub const THP: u64 = 1 << 22;
    pub const ZERO_PAGE: u64 = 1 << 24;
    /// The comparable bits (LRU, dirty, referenced and active depend on per-CPU batches and
    /// aging the model drains or does not model).
    pub const COMPARED: u64 = MMAP | ANON | SWAPCACHE | SWAPBACKED | COMPOUND_HEAD | COMPOUND_TAIL | THP | ZERO_PAGE;
}

/// What the PTE (or huge PMD) at `address` holds: the entry and the pfn of a present page.
fn entry_at(ctx: &mut Ctx, mm: MmId, address: u64) -> (Pte, Option<Pfn>) {
    let vpn = address >> PAGE_SHIFT;
    if let Some(pmd) = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address)) {
        let pfn = pmd.pfn + vpn % PTRS_PER_PTE;
        return (Pte::Present(pmd), Some(pfn));
    }
    let pte = ctx.pte_load(mm, vpn);
    let pfn = pte.present().map(|p| p.pfn);
    (pte, pfn)
}

/// pagemap_pte_range() / pagemap_pmd_range() → the entry's flag bits.
pub fn pagemap_flags(ctx: &mut Ctx, mm: MmId, address: u64) -> u64 {
    let Some(vma) = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned() else { return 0 };
    let huge = ctx.pmd_load(mm, crate::mm::huge_memory::pmd_index(address)).is_some();
    let (pte, pfn) = entry_at(ctx, mm, address);
    let mut flags = 0;
    let page = match pte {
        // pagemap_pmd_range(): pmd_page() of a present huge PMD (the huge zero folio too).
        Pte::Present(_) if huge => {
            flags |= PM_PRESENT;
            pfn
        }
        Pte::Present(present) => {
            flags |= PM_PRESENT;
            vm_normal_page(&vma, address, present)
        }
        Pte::Swap { .. } => {
            flags |= PM_SWAP;
            None
        }
        Pte::Migration { pfn, .. } => {
            flags |= PM_SWAP;
            Some(pfn)
        }
        Pte::None => None,
    };
    if let Some(pfn) = page {
        let (folio, index) = ctx.page_folio_load(pfn);
        if !ctx.flag_test(folio, PageFlag::Anon) {
            flags |= PM_FILE;
        }
        let mapcount = ctx.page_mapcount_load(folio, index) + ctx.entire_mapcount_load(folio);
        if flags & PM_PRESENT != 0 && mapcount == 1 && Some(folio) != ctx.huge_zero_folio_load() {
            flags |= PM_MMAP_EXCLUSIVE;
        }
    }
    flags
}

/// The page a present entry maps, for /proc/kpage*: `pfn` read from pagemap as root.
fn mapped_pfn(ctx: &mut Ctx, mm: MmId, address: u64) -> Option<Pfn> {
    entry_at(ctx, mm, address).1
}

/// kpagecount_read(): folio_precise_page_mapcount() of the page (0 for the zero page, whose
/// mapcount is not kept, and for an address mapping nothing).
pub fn kpagecount(ctx: &mut Ctx, mm: MmId, address: u64) -> i64 {
    let Some(pfn) = mapped_pfn(ctx, mm, address) else { return 0 };
    let (folio, page) = ctx.page_folio_load(pfn);
    if folio == ZERO_FOLIO {
        return 0;
    }
    i64::from(ctx.page_mapcount_load(folio, page) + ctx.entire_mapcount_load(folio))
}

/// stable_page_flags(), the compared bits.
pub fn kpageflags(ctx: &mut Ctx, mm: MmId, address: u64) -> i64 {
    let Some(pfn) = mapped_pfn(ctx, mm, address) else { return 0 };
    let (folio, page) = ctx.page_folio_load(pfn);
    if folio == ZERO_FOLIO {
        return kpf::ZERO_PAGE as i64;
    }
    let mut flags = 0;
    if ctx.mapcount_load(folio) > 0 {
        flags |= kpf::MMAP;
    }
    for (flag, bit) in
        [(PageFlag::Anon, kpf::ANON), (PageFlag::Swapcache, kpf::SWAPCACHE), (PageFlag::Swapbacked, kpf::SWAPBACKED)]
    {
        if ctx.flag_test(folio, flag) {
            flags |= bit;
        }
    }
    let order = ctx.folio_order(folio);
    if order > 0 {
        flags |= if page == 0 { kpf::COMPOUND_HEAD } else { kpf::COMPOUND_TAIL };
        if order == crate::mm::huge_memory::HPAGE_PMD_ORDER && ctx.flag_test(folio, PageFlag::Anon) {
            flags |= kpf::THP;
        }
    }
    // "else if (is_huge_zero_folio(folio)) { KPF_ZERO_PAGE; KPF_THP }".
    if Some(folio) == ctx.huge_zero_folio_load() {
        flags |= kpf::ZERO_PAGE | kpf::THP;
    }
    flags as i64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcPageFile {
    Pagemap,
    KpageCount,
    KpageFlags,
}

/// A read of one entry of /proc/self/pagemap, /proc/kpagecount or /proc/kpageflags for the
/// page at `address`, in one step under mmap_read_lock() (pagemap_read() takes it; the
/// kpage* files read by pfn without it: the step is the same from outside).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcPageRead {
    pub mm: MmId,
    pub address: u64,
    pub file: ProcPageFile,
}

impl KernelFunction for ProcPageRead {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let (mm, address) = (self.mm, self.address);
        let value = match self.file {
            ProcPageFile::Pagemap => pagemap_flags(ctx, mm, address) as i64,
            ProcPageFile::KpageCount => kpagecount(ctx, mm, address),
            ProcPageFile::KpageFlags => kpageflags(ctx, mm, address),
        };
        ctx.mmap_read_unlock(self.mm);
        let file = self.file;
        ctx.event("proc", "read", |_| format!("{file:?} of {address:#x}: {value:#x}"));
        Flow::Return(value)
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::MmapRead(self.mm)
    }
}
