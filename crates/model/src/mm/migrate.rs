//! mm/migrate.c: move_pages(2) with `nodes == NULL`, the status query: kernel_move_pages() →
//! do_pages_stat() → do_pages_stat_array(), one address per call here.

use crate::access::Ctx;
use crate::folio::{FolioId, PAGE_SHIFT, ZERO_FOLIO};
use crate::mm::gup::GupFlags;
use crate::mm::pagewalk::folio_walk_start;
use crate::mm::swap::folio_put;
use crate::patches::Patch;
use crate::pgtable::Pte;
use crate::state::MmId;
use crate::thread::{errno, Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// The one memory node of the modelled machine.
pub const NUMA_NODE: i64 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PagesStatStage {
    Lock,
    Stat,
    /// Before 6.12: put_page() of follow_page()'s FOLL_GET reference.
    Put {
        folio: FolioId,
        status: i64,
    },
    Unlock {
        status: i64,
    },
}

/// do_pages_stat_array() for one address, under mmap_read_lock(): the status is the folio's
/// node, -EFAULT (no VMA, or the zero page) or -ENOENT (nothing there).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PagesStat {
    pub mm: MmId,
    pub address: u64,
    pub stage: PagesStatStage,
}

impl PagesStat {
    pub fn new(mm: MmId, address: u64) -> Self {
        PagesStat { mm, address, stage: PagesStatStage::Lock }
    }

    /// Since 46d6a9b4450b (6.12): folio_walk_start(FW_ZEROPAGE) under the PTE lock, no reference.
    fn stat_folio_walk(&mut self, ctx: &mut Ctx, vma: &crate::state::Vma) -> (i64, Option<FolioId>) {
        let status = match folio_walk_start(ctx, self.mm, vma, self.address) {
            Some(walk) if walk.folio == ZERO_FOLIO => -errno::EFAULT,
            Some(_) => NUMA_NODE,
            None => -errno::ENOENT,
        };
        (status, None)
    }

    /// Before 6.12: follow_page(vma, addr, FOLL_GET | FOLL_DUMP) (mm/gup.c follow_page_pte()):
    /// a page the core dump must skip (special, zero) is ERR_PTR(-EFAULT), as is a none PTE
    /// where no fault handler could fill it (no_page_table()); a normal page is referenced
    /// (the folio returned with the status).
    fn stat_follow_page(&mut self, ctx: &mut Ctx, vma: &crate::state::Vma) -> (i64, Option<FolioId>) {
        // follow_pmd_mask() → follow_huge_pmd(): a PMD-mapped THP's page, referenced.
        if let Some(pmd) = ctx.pmd_load(self.mm, crate::mm::huge_memory::pmd_index(self.address)) {
            if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
                // FOLL_DUMP: "Avoid special (like zero) pages in core dumps".
                return (-errno::EFAULT, None);
            }
            let folio = crate::folio::pfn_folio(pmd.pfn);
            crate::mm::gup::try_grab_folio(ctx, folio, 1, GupFlags { write: false, pin: false });
            return (NUMA_NODE, Some(folio));
        }
        match ctx.pte_load(self.mm, self.address >> PAGE_SHIFT) {
            Pte::Present(present) => match crate::mm::memory::vm_normal_page(vma, self.address, present) {
                Some(pfn) => {
                    let folio = crate::folio::pfn_folio(pfn);
                    crate::mm::gup::try_grab_folio(ctx, folio, 1, GupFlags { write: false, pin: false });
                    (NUMA_NODE, Some(folio))
                }
                None => (-errno::EFAULT, None),
            },
            // no_page_table(): "vma_is_anonymous(vma) || !vma->vm_ops->fault" is -EFAULT (an
            // anonymous VMA, or a device's without a fault handler); a file's has ->fault: NULL.
            Pte::None if vma.file.is_some() => (-errno::ENOENT, None),
            Pte::None => (-errno::EFAULT, None),
            Pte::Swap { .. } | Pte::Migration { .. } => (-errno::ENOENT, None),
        }
    }

    /// The status of the page at the address, under its PTE lock.
    fn stat(&mut self, ctx: &mut Ctx) -> Flow {
        let address = self.address;
        let Some(vma) = ctx.vmas(self.mm).iter().find(|v| v.contains(address)).cloned() else {
            return Flow::goto(&mut self.stage, PagesStatStage::Unlock { status: -errno::EFAULT });
        };
        let vpn = address >> PAGE_SHIFT;
        ctx.ptl_lock(self.mm, vpn);
        let folio_walk = ctx.patched(Patch::DoPagesStatFolioWalk);
        let (status, got) = if folio_walk { self.stat_folio_walk(ctx, &vma) } else { self.stat_follow_page(ctx, &vma) };
        ctx.ptl_unlock(self.mm, vpn);
        let function = if folio_walk { "folio_walk_start" } else { "follow_page" };
        ctx.event("do_pages_stat_array", function, |_| {
            format!("{address:#x}: status {}", errno::name(status).map_or(status.to_string(), |n| format!("-{n}")))
        });
        let next = match got {
            Some(folio) => PagesStatStage::Put { folio, status },
            None => PagesStatStage::Unlock { status },
        };
        Flow::goto(&mut self.stage, next)
    }
}

impl KernelFunction for PagesStat {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            PagesStatStage::Lock => {
                ctx.mmap_read_lock(self.mm);
                ctx.event("do_pages_stat_array", "mmap_read_lock", |_| String::new());
                Flow::goto(&mut self.stage, PagesStatStage::Stat)
            }
            PagesStatStage::Stat => self.stat(ctx),
            PagesStatStage::Put { folio, status } => {
                folio_put(ctx, folio);
                ctx.event("do_pages_stat_array", "put_page", |_| format!("folio {folio}"));
                Flow::goto(&mut self.stage, PagesStatStage::Unlock { status })
            }
            PagesStatStage::Unlock { status } => {
                ctx.mmap_read_unlock(self.mm);
                ctx.event("do_pages_stat_array", "mmap_read_unlock", |_| String::new());
                Flow::Return(status)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            PagesStatStage::Lock => Wait::MmapRead(self.mm),
            PagesStatStage::Stat => Wait::PteLock(self.mm, self.address >> PAGE_SHIFT),
            PagesStatStage::Put { .. } | PagesStatStage::Unlock { .. } => Wait::Nothing,
        }
    }
}
