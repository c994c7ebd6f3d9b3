//! Device drivers declared by a scenario: a character device whose `mmap` file operation maps
//! memory into the caller's VMA the two ways drivers do it:
//! - pages the driver allocated, with `vm_insert_page()` / `vm_insert_pages()` (VM_MIXEDMAP;
//!   e.g. TCP zerocopy receive, many camera and GPU drivers);
//! - raw device memory, with `remap_pfn_range()` (VM_PFNMAP|VM_IO; e.g. /dev/mem).
//!
//! The driver frees its pages in `vm_ops->close`, as drivers that allocate per mapping do.

use crate::access::Ctx;
use crate::folio::{folio_pfn, FolioId, Pfn, PAGE_SHIFT};
use crate::mm::memory::{remap_pfn_range_table, vm_insert_page, vm_insert_pages_table};
use crate::mm::swap::folio_put;
use crate::pgtable::{pte_table, PTRS_PER_PTE};
use crate::state::{MmId, Vma};
use crate::thread::{errno, Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// What a scenario device's `mmap` handler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceKind {
    /// Allocate pages and map each with `vm_insert_page()` (or all with `vm_insert_pages()`
    /// when `batched`). `compound`: one `alloc_pages(GFP_KERNEL | __GFP_COMP, order)` whose
    /// subpages are mapped (a large folio that is not large_rmappable); otherwise one order-0
    /// page per page of the mapping.
    InsertPage { order: u8, compound: bool, batched: bool },
    /// Device memory at `base` (PG_reserved pages, `pages` of them) mapped with
    /// `remap_pfn_range()`.
    RemapPfn { base: Pfn, pages: u64 },
}

/// A device as the scenario declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: String,
    /// For RemapPfn, `base` is assigned by [`crate::System::new`].
    pub kind: DeviceKind,
    /// The byte device memory holds at boot (RemapPfn).
    pub fill: u8,
}

/// The order of the smallest folio that holds `pages` pages.
pub fn order_for(pages: u64) -> u8 {
    pages.next_power_of_two().trailing_zeros() as u8
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DriverStage {
    Alloc,
    /// vm_insert_page() / vm_insert_pages() from `cursor` (the next address to map).
    Insert {
        cursor: u64,
    },
    /// remap_pfn_range() from `cursor`; `pfn` is what the VMA's start maps (its `pfn`
    /// argument, set at the first step).
    Remap {
        cursor: u64,
        pfn: Pfn,
    },
}

/// The device's `file_operations.mmap`, called by mmap_region() under mmap_write_lock():
/// allocation, then one PTE (or one PTE table, for the batched and pfn calls) per step, each
/// under its PTE lock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DriverMmap {
    pub mm: MmId,
    pub start: u64,
    pub end: u64,
    pub kind: DeviceKind,
    pub stage: DriverStage,
}

impl DriverMmap {
    pub fn new(mm: MmId, start: u64, end: u64, kind: DeviceKind) -> Self {
        let stage = match kind {
            DeviceKind::InsertPage { .. } => DriverStage::Alloc,
            DeviceKind::RemapPfn { .. } => DriverStage::Remap { cursor: start, pfn: 0 },
        };
        DriverMmap { mm, start, end, kind, stage }
    }

    fn pages(&self) -> u64 {
        (self.end - self.start) >> PAGE_SHIFT
    }

    fn vma(&self, ctx: &mut Ctx) -> Vma {
        ctx.vmas(self.mm).iter().find(|v| v.start == self.start).cloned().expect("mmap_region made the VMA")
    }

    /// The driver's pages: alloc_pages(), kept in vm_private_data.
    fn alloc(&mut self, ctx: &mut Ctx) -> Flow {
        let DeviceKind::InsertPage { order, compound, .. } = self.kind else { unreachable!("insert devices only") };
        let pages = self.pages();
        if compound && pages > 1 << order {
            return Flow::Return(-errno::EINVAL);
        }
        let folios: Vec<FolioId> =
            if compound { vec![ctx.alloc_folio(order)] } else { (0..pages).map(|_| ctx.alloc_folio(0)).collect() };
        let start = self.start;
        ctx.vma_update(self.mm, start, |vma| vma.private_folios = folios.clone()).expect("the VMA");
        ctx.event("driver mmap", "alloc_pages", |k| {
            let gfp = if compound { "GFP_KERNEL | __GFP_COMP" } else { "GFP_KERNEL" };
            let dumps: Vec<String> = folios.iter().map(|&f| k.folio(f).dump(f)).collect();
            format!("{gfp}: {}", dumps.join("; "))
        });
        Flow::goto(&mut self.stage, DriverStage::Insert { cursor: start })
    }

    /// The page the driver maps at `address`: subpage i of its compound page, or its i-th page.
    fn page_at(&self, vma: &Vma, address: u64) -> Pfn {
        let index = ((address - self.start) >> PAGE_SHIFT) as usize;
        match self.kind {
            DeviceKind::InsertPage { compound: true, .. } => folio_pfn(vma.private_folios[0], index),
            _ => folio_pfn(vma.private_folios[index], 0),
        }
    }

    /// vm_insert_page() of one page, or vm_insert_pages() of a table's worth (batched).
    fn insert(&mut self, ctx: &mut Ctx, cursor: u64, batched: bool) -> Flow {
        let vma = self.vma(ctx);
        let table_end = ((pte_table(cursor >> PAGE_SHIFT) + 1) * PTRS_PER_PTE) << PAGE_SHIFT;
        let end = if batched { self.end.min(table_end) } else { cursor + (1 << PAGE_SHIFT) };
        let addresses: Vec<u64> = (cursor..end).step_by(1 << PAGE_SHIFT).collect();
        let pfns: Vec<Pfn> = addresses.iter().map(|&a| self.page_at(&vma, a)).collect();
        let result = if batched {
            vm_insert_pages_table(ctx, self.mm, &addresses, &pfns)
        } else {
            vm_insert_page(ctx, self.mm, addresses[0], pfns[0])
        };
        self.advance(result, end, DriverStage::Insert { cursor: end })
    }

    /// After mapping up to `end`: the driver returns an error at once, or 0 when done, or goes
    /// on at `next`.
    fn advance(&mut self, result: i64, end: u64, next: DriverStage) -> Flow {
        if result < 0 {
            return Flow::Return(result);
        }
        if end == self.end {
            return Flow::Return(0);
        }
        Flow::goto(&mut self.stage, next)
    }

    /// remap_pfn_range(), one PTE table per step.
    fn remap(&mut self, ctx: &mut Ctx, cursor: u64, mut pfn: Pfn) -> Flow {
        let DeviceKind::RemapPfn { base, pages } = self.kind else { unreachable!("pfn devices only") };
        if self.pages() > pages {
            return Flow::Return(-errno::EINVAL);
        }
        let first = cursor == self.start;
        if first {
            // The driver maps its memory from the mmap offset on: `base + vma->vm_pgoff`.
            pfn = base + self.vma(ctx).pgoff;
        }
        let table_pfn = pfn + ((cursor - self.start) >> PAGE_SHIFT);
        let table_end = ((pte_table(cursor >> PAGE_SHIFT) + 1) * PTRS_PER_PTE) << PAGE_SHIFT;
        let end = self.end.min(table_end);
        let result = remap_pfn_range_table(ctx, self.mm, self.start, cursor, end, table_pfn, first);
        self.advance(result, end, DriverStage::Remap { cursor: end, pfn })
    }
}

impl KernelFunction for DriverMmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match (self.stage, self.kind) {
            (DriverStage::Alloc, _) => self.alloc(ctx),
            (DriverStage::Insert { cursor }, DeviceKind::InsertPage { batched, .. }) => {
                self.insert(ctx, cursor, batched)
            }
            (DriverStage::Remap { cursor, pfn }, _) => self.remap(ctx, cursor, pfn),
            (DriverStage::Insert { .. }, DeviceKind::RemapPfn { .. }) => {
                unreachable!("pfn devices do not insert pages")
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            DriverStage::Alloc => Wait::Nothing,
            DriverStage::Insert { cursor } | DriverStage::Remap { cursor, .. } => {
                Wait::PteLock(self.mm, cursor >> PAGE_SHIFT)
            }
        }
    }
}

/// mm/vma.c: vma_close() → the driver's `vm_ops->close`: it frees the pages it allocated for
/// this mapping (`__free_pages()`: the allocation's reference).
pub fn vma_close(ctx: &mut Ctx, vma: &Vma) {
    for &folio in &vma.private_folios {
        folio_put(ctx, folio);
    }
}

/// `vm_ops->may_split`: the driver's pages belong to the whole mapping, so a munmap that
/// would split the VMA is refused (as drivers with per-mapping buffers do).
pub fn vma_may_split(vma: &Vma) -> bool {
    vma.device.is_none()
}
