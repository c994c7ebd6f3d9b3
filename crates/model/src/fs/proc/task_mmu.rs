//! fs/proc/task_mmu.c: /proc/PID/smaps for the VMA holding an address: show_smap() →
//! smap_gather_stats() → walk_page_vma() (mm/pagewalk.rs's [`PteWalk`] with smaps_walk_ops:
//! smaps_pte_range() per PTE table, under its lock) → smaps_pte_entry() → smaps_account(). mmap_lock is held for reading throughout (m_start()).

use crate::access::Ctx;
use crate::folio::{pfn_folio, PageFlag, Pfn, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::vm_normal_page;
use crate::mm::pagewalk::{walk_page_vma_walks, PmdDone, PteWalk, WalkOps, Walked};
use crate::mm::swapfile::swap_count;
use crate::patches::Patch;
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{MmId, Vma};
use crate::thread::{errno, Flow, KernelFunction, Wait};
use crate::violation::{Violation, ViolationKind};
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
    AnonHugePages,
    Swap,
    SwapPss,
}

impl SmapsField {
    pub const ALL: [(&'static str, SmapsField); 12] = [
        ("Rss", SmapsField::Rss),
        ("Pss", SmapsField::Pss),
        ("Shared_Clean", SmapsField::SharedClean),
        ("Shared_Dirty", SmapsField::SharedDirty),
        ("Private_Clean", SmapsField::PrivateClean),
        ("Private_Dirty", SmapsField::PrivateDirty),
        ("Referenced", SmapsField::Referenced),
        ("Anonymous", SmapsField::Anonymous),
        ("LazyFree", SmapsField::LazyFree),
        ("AnonHugePages", SmapsField::AnonHugePages),
        ("Swap", SmapsField::Swap),
        ("SwapPss", SmapsField::SwapPss),
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
    pub anonymous_thp: u64,
    pub swap: u64,
    /// Shifted by PSS_SHIFT, as `pss`.
    pub swap_pss: u64,
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
            SmapsField::AnonHugePages => self.anonymous_thp,
            SmapsField::Swap => self.swap,
            SmapsField::SwapPss => self.swap_pss >> PSS_SHIFT,
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

/// One PTE's page as smaps_pte_entry() found it, while its accounting is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SmapsEntry {
    pub pfn: Pfn,
    pub young: bool,
    pub dirty: bool,
    /// False for a migration entry.
    pub present: bool,
}

/// smaps_pte_entry(): the page a PTE names, if smaps accounts it.
fn smaps_pte_entry(ctx: &mut Ctx, mss: &mut MemSizeStats, mm: MmId, vma: &Vma, address: u64) -> Option<SmapsEntry> {
    match ctx.pte_load(mm, address >> PAGE_SHIFT) {
        Pte::Present(pte) => {
            let pfn = vm_normal_page(vma, address, pte)?;
            Some(SmapsEntry { pfn, young: pte.young, dirty: pte.dirty, present: true })
        }
        Pte::None => None,
        Pte::Swap { offset, .. } => {
            // "mapcount = swp_swapcount(swpent)": the swap PTEs naming the slot share it.
            mss.swap += PAGE_SIZE;
            mss.swap_pss += pss_of(i32::from(swap_count(ctx.swap_map_load(offset))));
            None
        }
        // A migration entry names its page: pfn_swap_entry_to_page().
        Pte::Migration { pfn, .. } => Some(SmapsEntry { pfn, young: false, dirty: false, present: false }),
    }
}

/// smaps_account() for one PTE-mapped page (`compound` false), up to the point where it needs
/// the page's mapcount. The page is looked up now (page_folio()): a split may be under way.
/// Returns true when the mapcount must still be read through the compound page (5.16's
/// page_mapcount() → __page_mapcount()).
fn smaps_account(ctx: &mut Ctx, mss: &mut MemSizeStats, entry: SmapsEntry) -> bool {
    let size = PAGE_SIZE;
    let (folio, page) = ctx.page_folio_load(entry.pfn);
    if ctx.flag_test(folio, PageFlag::Anon) {
        mss.anonymous += size;
        if !ctx.flag_test(folio, PageFlag::Swapbacked) && !entry.dirty && !ctx.flag_test(folio, PageFlag::Dirty) {
            mss.lazyfree += size;
        }
    }
    mss.resident += size;
    if entry.young || ctx.flag_test(folio, PageFlag::Referenced) {
        mss.referenced += size;
    }
    let dirty = entry.dirty || ctx.flag_test(folio, PageFlag::Dirty);
    let count = ctx.ref_load(folio);
    // 24d7275ce279: "if ((page_count(page) == 1) || migration)"; today "folio_ref_count(folio)
    // == 1 || !present".
    let fixed = ctx.patched(Patch::SmapsMigrationNoMapcount);
    if count == 1 || (fixed && !entry.present) {
        mss.page_accumulate(size, size << PSS_SHIFT, dirty, true);
        return false;
    }
    let compound = ctx.folio_test_large(folio);
    if compound && !fixed {
        return true;
    }
    // folio_precise_page_mapcount() (page_mapcount() of an order-0 page before folios).
    let mapcount = ctx.page_mapcount_load(folio, page) + if compound { ctx.entire_mapcount_load(folio) } else { 0 };
    mss.page_accumulate(size, pss_of(mapcount), dirty, mapcount < 2);
    false
}

fn pss_of(mapcount: i32) -> u64 {
    let pss = PAGE_SIZE << PSS_SHIFT;
    if mapcount >= 2 {
        pss / mapcount as u64
    } else {
        pss
    }
}

/// mm/util.c (5.16): __page_mapcount() as page_mapcount() calls it for a compound page:
/// "page = compound_head(page); ret += atomic_read(compound_mapcount_ptr(page)) + 1; if
/// (PageDoubleMap(page)) ret--;" -- PageDoubleMap() is a PF_SECOND flag, which asserts the page
/// it is given is a head: VM_BUG_ON_PGFLAGS(!PageHead(page), page).
fn __page_mapcount(ctx: &mut Ctx, mss: &mut MemSizeStats, entry: SmapsEntry) {
    let (folio, page) = ctx.page_folio_load(entry.pfn);
    let mapcount = ctx.page_mapcount_load(folio, page);
    if !ctx.folio_test_large(folio) {
        let dump = ctx.folio_dump(folio);
        ctx.violation(Violation {
            kind: ViolationKind::KernelBug,
            message: format!(
                "VM_BUG_ON_PGFLAGS(!PageHead(page)) in PageDoubleMap() from __page_mapcount(): pfn {:#x} is no longer part of a compound page",
                entry.pfn
            ),
            dump: vec![dump],
        });
        return;
    }
    let total = mapcount + ctx.entire_mapcount_load(folio);
    let dirty = entry.dirty || ctx.flag_test(folio, PageFlag::Dirty);
    mss.page_accumulate(PAGE_SIZE, pss_of(total), dirty, total < 2);
}

/// smaps_pmd_entry() → smaps_account(compound = true) for a PMD-mapped THP.
fn smaps_pmd_entry(ctx: &mut Ctx, mss: &mut MemSizeStats, pmd: crate::pgtable::PresentPte) {
    // vm_normal_page_pmd(): the huge zero folio is not accounted.
    if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
        return;
    }
    let folio = pfn_folio(pmd.pfn);
    let size = crate::mm::huge_memory::HPAGE_PMD_SIZE;
    let anon = ctx.flag_test(folio, PageFlag::Anon);
    let dirty = pmd.dirty || ctx.flag_test(folio, PageFlag::Dirty);
    if anon {
        mss.anonymous += size;
        mss.anonymous_thp += size;
        // "if (!folio_test_swapbacked(folio) && !dirty && !folio_test_dirty(folio))".
        if !ctx.flag_test(folio, PageFlag::Swapbacked) && !dirty {
            mss.lazyfree += size;
        }
    }
    mss.resident += size;
    if pmd.young || ctx.flag_test(folio, PageFlag::Referenced) {
        mss.referenced += size;
    }
    if ctx.ref_load(folio) == 1 {
        mss.page_accumulate(size, size << PSS_SHIFT, dirty, true);
        return;
    }
    for page in 0..ctx.folio_nr_pages(folio) {
        let mapcount = ctx.page_mapcount_load(folio, page) + ctx.entire_mapcount_load(folio);
        mss.page_accumulate(PAGE_SIZE, pss_of(mapcount), dirty, mapcount < 2);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SmapStage {
    Lock,
    /// smap_gather_stats() → walk_page_vma() of the VMA at `vma_start` with smaps_walk_ops
    /// (smaps_pte_range(): a table's lock, or a huge PMD, then one PTE per step).
    Walk {
        vma_start: u64,
        walk: PteWalk<SmapsEntry>,
    },
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
    pub mss: MemSizeStats,
    pub result: i64,
}

impl ShowSmap {
    pub fn new(mm: MmId, address: u64, field: SmapsField) -> Self {
        ShowSmap { mm, address, field, stage: SmapStage::Lock, mss: MemSizeStats::default(), result: 0 }
    }

    /// m_start(): mmap_read_lock(), then the VMA; smap_gather_stats() → walk_page_vma().
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let address = self.address;
        let vma = ctx.vmas(self.mm).iter().find(|v| v.contains(address)).cloned();
        ctx.event("show_smap", "mmap_read_lock", |_| format!("{address:#x}"));
        let Some(vma) = vma else {
            self.result = -errno::ENOENT;
            return Flow::goto(&mut self.stage, SmapStage::Unlock);
        };
        if !walk_page_vma_walks(ctx, &vma) {
            return Flow::goto(&mut self.stage, SmapStage::Unlock);
        }
        let walk = PteWalk::new(vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT);
        Flow::goto(&mut self.stage, SmapStage::Walk { vma_start: vma.start, walk })
    }

    /// One step of walk_page_vma() with smaps_walk_ops.
    fn walk(&mut self, ctx: &mut Ctx) -> Flow {
        let SmapStage::Walk { vma_start, walk } = &mut self.stage else { unreachable!("the walk's stage") };
        let mut ops = SmapsWalk { mm: self.mm, vma_start: *vma_start, mss: &mut self.mss };
        match walk.step(ctx, &mut ops) {
            Walked::Walking(_) => Flow::Continue,
            Walked::Done(_) => Flow::goto(&mut self.stage, SmapStage::Unlock),
        }
    }
}

/// fs/proc/task_mmu.c: smaps_walk_ops, whose pmd_entry is smaps_pte_range(): the PTEs that
/// exist, each to smaps_pte_entry() → smaps_account().
struct SmapsWalk<'a> {
    mm: MmId,
    vma_start: u64,
    mss: &'a mut MemSizeStats,
}

impl SmapsWalk<'_> {
    fn vma(&self, ctx: &mut Ctx) -> Vma {
        ctx.vmas(self.mm).iter().find(|v| v.start == self.vma_start).cloned().expect("mmap_lock held")
    }
}

impl WalkOps for SmapsWalk<'_> {
    /// 5.16's __page_mapcount() of the entry's page, a lockless read of its compound state.
    type More = SmapsEntry;

    fn mm(&self) -> MmId {
        self.mm
    }

    fn existing_only(&self) -> bool {
        true
    }

    /// smaps_pte_range(): pmd_trans_huge_lock() → smaps_pmd_entry(), spin_unlock().
    fn pmd_entry(&mut self, ctx: &mut Ctx, index: u64, pmd: PresentPte, cursor: u64, _end: u64) -> PmdDone {
        smaps_pmd_entry(ctx, self.mss, pmd);
        ctx.ptl_unlock(self.mm, cursor);
        ctx.event("smaps_pmd_entry", "smaps_account", |_| {
            format!("THP at {:#x}", (index * PTRS_PER_PTE) << PAGE_SHIFT)
        });
        PmdDone::Unlocked
    }

    /// smaps_pte_range(): pte_offset_map_lock() (under the table's lock its set of PTEs is
    /// stable: the MMU only sets bits).
    fn pte_table_locked(&mut self, ctx: &mut Ctx, cursor: u64, end: u64) {
        let (first, end) = (cursor << PAGE_SHIFT, end << PAGE_SHIFT);
        ctx.event("smaps_pte_range", "pte_offset_map_lock", |_| format!("[{first:#x}, {end:#x})"));
    }

    /// smaps_pte_entry() of one PTE.
    fn pte_entry(&mut self, ctx: &mut Ctx, vpn: u64, _end: u64) -> Option<SmapsEntry> {
        let address = vpn << PAGE_SHIFT;
        let vma = self.vma(ctx);
        let found = smaps_pte_entry(ctx, self.mss, self.mm, &vma, address);
        let compound = found.is_some_and(|entry| smaps_account(ctx, self.mss, entry));
        ctx.event("smaps_pte_entry", "smaps_account", |k| match found {
            Some(entry) => {
                let (folio, _) = k.page_folio(entry.pfn);
                format!(
                    "{address:#x}: {} pfn {:#x}{}",
                    if entry.present { "page" } else { "migration entry for" },
                    entry.pfn,
                    if compound {
                        format!(": folio {folio} refcount {}, compound: page_mapcount()", k.folio(folio).refcount)
                    } else {
                        String::new()
                    }
                )
            }
            None => format!("{address:#x}: nothing to account"),
        });
        found.filter(|_| compound)
    }

    /// 5.16's __page_mapcount() of the page smaps_account() left.
    fn pte_entry_more(&mut self, ctx: &mut Ctx, entry: SmapsEntry) {
        __page_mapcount(ctx, self.mss, entry);
        let pfn = entry.pfn;
        ctx.event("__page_mapcount", "compound_head", |k| {
            let (folio, _) = k.page_folio(pfn);
            format!("pfn {pfn:#x}: head folio {folio}")
        });
    }

    /// smaps_pte_range(): pte_unmap_unlock().
    fn pte_table_unlocked(&mut self, ctx: &mut Ctx) -> Option<crate::thread::Frame> {
        let rss = self.mss.resident >> 10;
        ctx.event("smaps_pte_range", "pte_unmap_unlock", |_| format!("Rss so far {rss} kB"));
        None
    }
}

impl KernelFunction for ShowSmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            SmapStage::Lock => self.lock(ctx),
            SmapStage::Walk { .. } => self.walk(ctx),
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
        match &self.stage {
            SmapStage::Lock => Wait::MmapRead(self.mm),
            SmapStage::Walk { walk, .. } => walk.wait(self.mm),
            SmapStage::Unlock => Wait::Nothing,
        }
    }
}
