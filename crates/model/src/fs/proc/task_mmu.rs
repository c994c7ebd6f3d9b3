//! fs/proc/task_mmu.c: /proc/PID/smaps for the VMA holding an address: show_smap() →
//! smap_gather_stats() → walk_page_vma() with smaps_pte_range() per PTE table (under its lock)
//! → smaps_pte_entry() → smaps_account(). mmap_lock is held for reading throughout (m_start()).

use crate::access::Ctx;
use crate::folio::{pfn_folio, pfn_page, FolioId, PageFlag, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::vm_normal_page;
use crate::mm::pagewalk::walk_page_vma_walks;
use crate::pgtable::{pte_table, Pte, PTRS_PER_PTE};
use crate::state::{MmId, Vma};
use crate::thread::{errno, Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// fs/proc/task_mmu.c: PSS_SHIFT, the fixed-point shift of proportional sizes.
const PSS_SHIFT: u32 = 12;

/// The smaps fields a scenario can read (in kB, as the file prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SmapsField {
    Rss,
    Pss,
    SharedClean,
    SharedDirty,
    PrivateClean,
    PrivateDirty,
    Referenced,
    Anonymous,
    LazyFree,
    Swap,
}

impl SmapsField {
    pub const ALL: [(&'static str, SmapsField); 10] = [
        ("Rss", SmapsField::Rss),
        ("Pss", SmapsField::Pss),
        ("Shared_Clean", SmapsField::SharedClean),
        ("Shared_Dirty", SmapsField::SharedDirty),
        ("Private_Clean", SmapsField::PrivateClean),
        ("Private_Dirty", SmapsField::PrivateDirty),
        ("Referenced", SmapsField::Referenced),
        ("Anonymous", SmapsField::Anonymous),
        ("LazyFree", SmapsField::LazyFree),
        ("Swap", SmapsField::Swap),
    ];

    pub fn by_name(name: &str) -> Option<SmapsField> {
        Self::ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, f)| *f)
    }
}

/// fs/proc/task_mmu.c: struct mem_size_stats (bytes; `pss` in bytes << PSS_SHIFT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemSizeStats {
    pub resident: u64,
    pub shared_clean: u64,
    pub shared_dirty: u64,
    pub private_clean: u64,
    pub private_dirty: u64,
    pub referenced: u64,
    pub anonymous: u64,
    pub lazyfree: u64,
    pub swap: u64,
    pub pss: u64,
}

impl MemSizeStats {
    /// show_smap() / __show_smap(): the field in kB.
    pub fn field_kb(&self, field: SmapsField) -> i64 {
        let bytes = match field {
            SmapsField::Rss => self.resident,
            SmapsField::Pss => self.pss >> PSS_SHIFT,
            SmapsField::SharedClean => self.shared_clean,
            SmapsField::SharedDirty => self.shared_dirty,
            SmapsField::PrivateClean => self.private_clean,
            SmapsField::PrivateDirty => self.private_dirty,
            SmapsField::Referenced => self.referenced,
            SmapsField::Anonymous => self.anonymous,
            SmapsField::LazyFree => self.lazyfree,
            SmapsField::Swap => self.swap,
        };
        (bytes >> 10) as i64
    }

    /// smaps_page_accumulate().
    fn page_accumulate(&mut self, size: u64, pss: u64, dirty: bool, private: bool) {
        self.pss += pss;
        match (dirty, private) {
            (true, true) => self.private_dirty += size,
            (true, false) => self.shared_dirty += size,
            (false, true) => self.private_clean += size,
            (false, false) => self.shared_clean += size,
        }
    }
}

/// smaps_account() for one PTE-mapped page (`compound` false), as of 6.18: a folio with
/// refcount 1, or one behind a non-present entry, is private without reading mapcounts.
fn smaps_account(
    ctx: &mut Ctx,
    mss: &mut MemSizeStats,
    folio: FolioId,
    page: usize,
    young: bool,
    dirty: bool,
    present: bool,
) {
    let size = PAGE_SIZE;
    if ctx.flag_test(folio, PageFlag::Anon) {
        mss.anonymous += size;
        if !ctx.flag_test(folio, PageFlag::Swapbacked) && !dirty && !ctx.flag_test(folio, PageFlag::Dirty) {
            mss.lazyfree += size;
        }
    }
    mss.resident += size;
    if young || ctx.flag_test(folio, PageFlag::Referenced) {
        mss.referenced += size;
    }
    let dirty = dirty || ctx.flag_test(folio, PageFlag::Dirty);
    if ctx.ref_load(folio) == 1 || !present {
        mss.page_accumulate(size, size << PSS_SHIFT, dirty, true);
        return;
    }
    // folio_precise_page_mapcount(): a snapshot, without the folio lock.
    let mapcount = ctx.page_mapcount_load(folio, page);
    let mut pss = size << PSS_SHIFT;
    if mapcount >= 2 {
        pss /= mapcount as u64;
    }
    mss.page_accumulate(size, pss, dirty, mapcount < 2);
}

/// smaps_pte_entry().
fn smaps_pte_entry(ctx: &mut Ctx, mss: &mut MemSizeStats, mm: MmId, vma: &Vma, address: u64) {
    let (page, young, dirty, present) = match ctx.pte_load(mm, address >> PAGE_SHIFT) {
        Pte::Present(pte) => (vm_normal_page(vma, address, pte), pte.young, pte.dirty, true),
        Pte::None => return,
        Pte::Swap { .. } => {
            mss.swap += PAGE_SIZE;
            return;
        }
        // A migration entry names its page: accounted as not present.
        Pte::Migration { pfn, .. } => (Some(pfn), false, false, false),
    };
    if let Some(pfn) = page {
        smaps_account(ctx, mss, pfn_folio(pfn), pfn_page(pfn), young, dirty, present);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SmapStage {
    Lock,
    Walk,
    Unlock,
}

/// A read of one field of the smaps block of the VMA holding `address`. The value is in kB;
/// -ENOENT if no VMA holds the address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShowSmap {
    pub mm: MmId,
    pub address: u64,
    pub field: SmapsField,
    pub stage: SmapStage,
    pub vma_start: u64,
    pub vma_end: u64,
    /// The next address smaps_pte_range() visits.
    pub cursor: u64,
    pub mss: MemSizeStats,
    pub result: i64,
}

impl ShowSmap {
    pub fn new(mm: MmId, address: u64, field: SmapsField) -> Self {
        ShowSmap {
            mm,
            address,
            field,
            stage: SmapStage::Lock,
            vma_start: 0,
            vma_end: 0,
            cursor: 0,
            mss: MemSizeStats::default(),
            result: 0,
        }
    }

    /// m_start(): mmap_read_lock(), then the VMA; smap_gather_stats() → walk_page_vma().
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let address = self.address;
        let vma = ctx.vmas(self.mm).iter().find(|v| v.contains(address)).cloned();
        ctx.event("show_smap", "mmap_read_lock", |_| format!("{address:#x}"));
        self.stage = SmapStage::Unlock;
        let Some(vma) = vma else {
            self.result = -errno::ENOENT;
            return Flow::Continue;
        };
        (self.vma_start, self.vma_end, self.cursor) = (vma.start, vma.end, vma.start);
        if walk_page_vma_walks(ctx, &vma) {
            self.stage = SmapStage::Walk;
        }
        Flow::Continue
    }

    /// smaps_pte_range(): one PTE table under its lock.
    fn walk(&mut self, ctx: &mut Ctx) -> Flow {
        let vma = ctx.vmas(self.mm).iter().find(|v| v.start == self.vma_start).cloned().expect("mmap_lock held");
        let table = pte_table(self.cursor >> PAGE_SHIFT);
        let end = self.vma_end.min(((table + 1) * PTRS_PER_PTE) << PAGE_SHIFT);
        let first = self.cursor;
        ctx.ptl_lock(self.mm, first >> PAGE_SHIFT);
        // Under the table's lock its set of PTEs is stable (the MMU only sets bits).
        let addresses: Vec<u64> = ctx.k.mms[self.mm as usize]
            .ptes
            .iter()
            .map(|e| e.0 << PAGE_SHIFT)
            .filter(|&a| a >= first && a < end)
            .collect();
        for address in addresses {
            let mut mss = self.mss;
            smaps_pte_entry(ctx, &mut mss, self.mm, &vma, address);
            self.mss = mss;
        }
        ctx.ptl_unlock(self.mm, first >> PAGE_SHIFT);
        let rss = self.mss.resident >> 10;
        ctx.event("smaps_pte_range", "smaps_pte_entry", |_| format!("[{first:#x}, {end:#x}): Rss so far {rss} kB"));
        self.cursor = end;
        if self.cursor == self.vma_end {
            self.stage = SmapStage::Unlock;
        }
        Flow::Continue
    }
}

impl KernelFunction for ShowSmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            SmapStage::Lock => self.lock(ctx),
            SmapStage::Walk => self.walk(ctx),
            SmapStage::Unlock => {
                ctx.mmap_read_unlock(self.mm);
                if self.result == 0 {
                    self.result = self.mss.field_kb(self.field);
                }
                let (field, result) = (self.field, self.result);
                ctx.event("show_smap", "mmap_read_unlock", |_| format!("{field:?}: {result} kB"));
                Flow::Return(self.result)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            SmapStage::Lock => Wait::MmapRead(self.mm),
            SmapStage::Walk => Wait::PteLock(self.mm, self.cursor >> PAGE_SHIFT),
            SmapStage::Unlock => Wait::Nothing,
        }
    }
}
