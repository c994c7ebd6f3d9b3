//! mm/memory.c: page faults (handle_mm_fault → handle_pte_fault → do_anonymous_page /
//! do_wp_page / do_swap_page / do_fault), zapping PTE ranges (zap_pte_range with the
//! mmu_gather's deferred reference drops), and inserting pages (vm_insert_page,
//! remap_pfn_range). The user access that faults, through the MMU, is in
//! arch/x86/mm/fault.rs.
//!
//! A fault is one frame, [`Fault`]: the dispatcher (handle_mm_fault(), __handle_mm_fault(),
//! handle_pte_fault(): take mmap_lock, read the PMD and the PTE, decide) holds in its stage the
//! function it called, each a machine of its own whose stages carry their data:
//! [`DoAnonymousPage`], [`DoWpPage`] (wp_page_copy() or reuse), [`DoSwapPage`], [`DoFault`]
//! (do_read_fault() / do_cow_fault() with do_fault_around(), finish_fault() and
//! mm/filemap.c's filemap_fault(), `FilemapFault` in filemap.rs), and mm/huge_memory.c's
//! `DoHugePmdAnonymousPage` and `DoHugePmdWpPage` (huge_memory.rs). They share the fault's
//! [`Vmf`] (struct vm_fault) and end a step with an [`Outcome`]: continue, return a
//! VM_FAULT_* value, or retry with mmap_lock dropped.
//!
//! Why not `Flow::Call` for them: a call pushes the callee and ends the caller's step, the
//! callee's first step is a step of its own, and the caller sees its return value only at its
//! next step. Calling each function as a frame would add a step (an interleaving point) per
//! call and per return, which the kernel does not have there, and change every state count.
//! Run inside the dispatcher's step, each function's steps are the atomic steps the fault had
//! before.

use crate::access::Ctx;
use crate::folio::{
    folio_pfn, pfn_folio, pfn_page, FolioId, Mapping, PageData, PageFlag, Pfn, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO,
};
use crate::mm::filemap::{
    fault_around_window, filemap_map_pages_first, filemap_map_pages_locked, FilemapFault, FilemapOutcome,
};
use crate::mm::huge_memory::{DoHugePmdAnonymousPage, DoHugePmdWpPage};
use crate::mm::rmap::{
    folio_add_anon_rmap_pte, folio_add_file_rmap_pte, folio_add_new_anon_rmap, folio_remove_rmap_pte,
};
use crate::mm::swap::{folio_add_lru, folio_mark_dirty, folio_put};
use crate::mm::swap_state::{folio_free_swap, read_swap_cache, swap_cache_get_folio};
use crate::mm::swapfile::{free_swap_and_cache, swap_free, vm_swap_full};
use crate::pgtable::{pte_table, PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{vm_flags, FileId, MmId, Vma};
use crate::thread::{errno, Flow, KernelFunction, Wait};
use crate::violation::{Violation, ViolationKind};
use serde::{Deserialize, Serialize};

pub const VM_FAULT_SIGSEGV: i64 = 0x40;
pub const VM_FAULT_SIGBUS: i64 = 0x2;
/// The fault dropped mmap_lock and must be retried (here: after handle_userfault()).
pub const VM_FAULT_RETRY: i64 = 0x400;

/// mm/memory.c: vm_normal_page() with pte_special() (x86, arm64): a special PTE has no
/// refcounted page behind it (the zero page, PFN maps).
pub fn vm_normal_folio(pte: PresentPte) -> Option<FolioId> {
    (!pte.special).then(|| pfn_folio(pte.pfn))
}

/// The fault's `struct vm_fault` (include/linux/mm.h): what handle_mm_fault() was asked and
/// what it read, for every function it calls. It lives as long as the fault, and so do the
/// snapshots `orig_pte` and `orig_pmd` taken on the way in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vmf {
    pub mm: MmId,
    pub address: u64,
    pub write: bool,
    /// A user fault takes mmap_lock; GUP's faultin_page() already holds it.
    pub lock_mmap: bool,
    /// FAULT_FLAG_TRIED: the user fault is retried after a VM_FAULT_RETRY, so it may no
    /// longer drop mmap_lock to wait (fault_flag_allow_retry_first() is false).
    pub tried: bool,
    /// handle_pte_fault()'s lockless snapshot of the PTE (vmf->orig_pte); none before it.
    pub orig_pte: Pte,
    /// do_huge_pmd_wp_page()'s orig_pmd: the read-only huge PMD a write fault found.
    pub orig_pmd: Option<PresentPte>,
    /// do_fault() in a file VMA: the file and vmf->pgoff (linear_page_index()).
    pub pgoff: Option<(FileId, u64)>,
}

impl Vmf {
    fn new(mm: MmId, address: u64, write: bool, lock_mmap: bool) -> Vmf {
        Vmf { mm, address, write, lock_mmap, tried: false, orig_pte: Pte::None, orig_pmd: None, pgoff: None }
    }

    /// A file fault's file and page index.
    pub fn pgoff(&self) -> (FileId, u64) {
        self.pgoff.expect("set by do_fault()")
    }

    pub fn vpn(&self) -> u64 {
        self.address >> PAGE_SHIFT
    }

    /// The fault's VMA, which read_pte() found: mmap_lock keeps it.
    pub fn vma(&self, ctx: &mut Ctx) -> Vma {
        ctx.vmas(self.mm).iter().find(|v| v.contains(self.address)).cloned().expect("checked by read_pte")
    }

    /// The present PTE a write-protect fault read.
    fn orig_present(&self) -> PresentPte {
        self.orig_pte.present().expect("a write-protect fault on a present PTE")
    }

    /// Whether folio_lock_or_retry() may drop mmap_lock and retry: a user fault
    /// (FAULT_FLAG_ALLOW_RETRY) on its first try. GUP's faults here hold mmap_lock throughout
    /// (FOLL_UNLOCKABLE's retry is not modelled) and lock the folio as __folio_lock() does.
    pub fn allow_retry_first(&self) -> bool {
        self.lock_mmap && !self.tried
    }
}

/// How a step of a function handle_mm_fault() calls ends.
pub enum Outcome {
    /// Its next step comes next (its stage set by `Flow::goto`).
    Continue,
    /// It returned this VM_FAULT_* value, mmap_lock held as the fault took it.
    Return(i64),
    /// VM_FAULT_RETRY with mmap_lock dropped: the fault puts the folio it held (if any) and
    /// starts over.
    Retry(Option<FolioId>),
}

impl From<Flow> for Outcome {
    fn from(flow: Flow) -> Outcome {
        match flow {
            Flow::Continue => Outcome::Continue,
            Flow::Return(result) => Outcome::Return(result),
            Flow::Call(_) => unreachable!("the fault's functions run inside its frame (see the module doc)"),
        }
    }
}

/// Where handle_mm_fault() is: taking mmap_lock, reading the page tables, inside one of the
/// functions it calls (each its own machine, whose stages hold their data), or unlocking.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultStage {
    LockMmap,
    ReadPte,
    Anonymous(DoAnonymousPage),
    Wp(DoWpPage),
    Swap(DoSwapPage),
    File(DoFault),
    HugeAnonymous(DoHugePmdAnonymousPage),
    HugeWp(DoHugePmdWpPage),
    /// mmap_read_unlock(), then return `result`.
    Unlock {
        result: i64,
    },
}

/// mm/memory.c: handle_mm_fault() → __handle_mm_fault() → handle_pte_fault(): the dispatcher
/// of a fault (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fault {
    pub vmf: Vmf,
    pub stage: FaultStage,
}

impl Fault {
    pub fn new(mm: MmId, address: u64, write: bool, lock_mmap: bool) -> Fault {
        let stage = if lock_mmap { FaultStage::LockMmap } else { FaultStage::ReadPte };
        Fault { vmf: Vmf::new(mm, address, write, lock_mmap), stage }
    }

    /// handle_mm_fault() returns `result`: a user fault unlocks mmap_lock first (its next
    /// step), GUP's returns now.
    fn handle_mm_fault_returns(&mut self, result: i64) -> Flow {
        if self.vmf.lock_mmap {
            Flow::goto(&mut self.stage, FaultStage::Unlock { result })
        } else {
            Flow::Return(result)
        }
    }

    /// arch/x86/mm/fault.c: lock_mm_and_find_vma() and access_error().
    fn lock_mmap(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.vmf.mm);
        let address = self.vmf.address;
        ctx.event("lock_mm_and_find_vma", "mmap_read_lock", |_| format!("{address:#x}"));
        Flow::goto(&mut self.stage, FaultStage::ReadPte)
    }

    /// mm/memory.c: handle_pte_fault(): the lockless snapshot of the PTE decides the path.
    fn read_pte(&mut self, ctx: &mut Ctx) -> Flow {
        let (mm, address, write) = (self.vmf.mm, self.vmf.address, self.vmf.write);
        let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned();
        let Some(vma) = vma else {
            return self.handle_mm_fault_returns(VM_FAULT_SIGSEGV);
        };
        let allowed = if write { vma.flags & vm_flags::VM_WRITE != 0 } else { vma.flags & vm_flags::VM_READ != 0 };
        if !allowed {
            return self.handle_mm_fault_returns(VM_FAULT_SIGSEGV);
        }
        // __handle_mm_fault(): a huge PMD maps the address, or one may be made for it.
        let index = crate::mm::huge_memory::pmd_index(address);
        if let Some(pmd) = ctx.pmd_load(mm, index) {
            return self.huge_pmd_fault(pmd);
        }
        if crate::mm::huge_memory::thp_fault_allowed(&vma, address) && ctx.pmd_none(mm, index) {
            if !write {
                // do_huge_pmd_anonymous_page(): a read fault maps the huge zero folio.
                crate::mm::huge_memory::do_huge_pmd_anonymous_read(ctx, &self.vmf);
                return self.handle_mm_fault_returns(0);
            }
            let huge = DoHugePmdAnonymousPage::new(None);
            return Flow::goto(&mut self.stage, FaultStage::HugeAnonymous(huge));
        }
        self.vmf.orig_pte = ctx.pte_load(mm, self.vmf.vpn());
        let orig = self.vmf.orig_pte;
        ctx.event("handle_pte_fault", "ptep_get_lockless", |_| format!("PTE {}", orig.describe()));
        // do_pte_missing() → do_fault(): a device VMA has vm_ops but no ->fault: SIGBUS.
        if orig.is_none() && vma.device.is_some() {
            return self.handle_mm_fault_returns(VM_FAULT_SIGBUS);
        }
        match vma.file {
            Some(file) if orig.is_none() => match do_fault(ctx, &mut self.vmf, &vma, file) {
                Ok(fault) => Flow::goto(&mut self.stage, FaultStage::File(fault)),
                Err(result) => self.handle_mm_fault_returns(result),
            },
            _ => self.handle_pte_fault(ctx),
        }
    }

    /// __handle_mm_fault() on a huge PMD: a write to a read-only one is do_huge_pmd_wp_page(),
    /// which for the huge zero PMD is do_huge_zero_wp_pmd(): a new THP replaces it (a failed
    /// allocation would split it instead). Otherwise the access is retried.
    fn huge_pmd_fault(&mut self, pmd: PresentPte) -> Flow {
        if !self.vmf.write || pmd.write {
            return self.handle_mm_fault_returns(0);
        }
        if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
            let huge = DoHugePmdAnonymousPage::new(Some(pmd));
            return Flow::goto(&mut self.stage, FaultStage::HugeAnonymous(huge));
        }
        self.vmf.orig_pmd = Some(pmd);
        Flow::goto(&mut self.stage, FaultStage::HugeWp(DoHugePmdWpPage::new()))
    }

    /// handle_pte_fault() past the file VMA's missing page: do_anonymous_page(), do_wp_page()
    /// or do_swap_page().
    fn handle_pte_fault(&mut self, ctx: &mut Ctx) -> Flow {
        let next = match self.vmf.orig_pte {
            Pte::None => FaultStage::Anonymous(DoAnonymousPage::new(self.vmf.write)),
            Pte::Present(p) if self.vmf.write && !p.write => FaultStage::Wp(DoWpPage { stage: WpStage::Lock }),
            // Someone else resolved it (or only the accessed bit was missing): retry the access.
            Pte::Present(_) => return self.handle_mm_fault_returns(0),
            Pte::Swap { .. } => FaultStage::Swap(DoSwapPage { stage: SwapStage::Lookup }),
            Pte::Migration { pfn, .. } => {
                // do_swap_page() → migration_entry_wait(): sleep until the folio under
                // migration (or split) is unlocked, then retry the fault.
                let (folio, _) = ctx.page_folio_load(pfn);
                FaultStage::Swap(DoSwapPage { stage: SwapStage::MigrationWait { folio } })
            }
        };
        Flow::goto(&mut self.stage, next)
    }

    /// VM_FAULT_RETRY with mmap_lock dropped: the folio held (if any) goes and
    /// arch/x86/mm/fault.c: do_user_addr_fault() starts over with FAULT_FLAG_TRIED.
    fn retry(&mut self, ctx: &mut Ctx, folio: Option<FolioId>) -> Flow {
        if let Some(folio) = folio {
            folio_put(ctx, folio);
        }
        let Vmf { mm, address, write, .. } = self.vmf;
        ctx.event("do_user_addr_fault", "VM_FAULT_RETRY", |_| match folio {
            Some(folio) => format!("{address:#x}: folio {folio} unlocked, retry"),
            None => format!("{address:#x}: retry"),
        });
        self.vmf = Vmf { tried: true, ..Vmf::new(mm, address, write, true) };
        Flow::goto(&mut self.stage, FaultStage::LockMmap)
    }
}

impl KernelFunction for Fault {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        let vmf = &self.vmf;
        let outcome = match &mut self.stage {
            FaultStage::LockMmap => return self.lock_mmap(ctx),
            FaultStage::ReadPte => return self.read_pte(ctx),
            FaultStage::Anonymous(anonymous) => anonymous.step(ctx, vmf),
            FaultStage::Wp(wp) => wp.step(ctx, vmf),
            FaultStage::Swap(swap) => swap.step(ctx, vmf),
            FaultStage::File(fault) => fault.step(ctx, vmf),
            FaultStage::HugeAnonymous(huge) => huge.step(ctx, vmf),
            FaultStage::HugeWp(huge) => huge.step(ctx, vmf),
            FaultStage::Unlock { result } => {
                ctx.mmap_read_unlock(vmf.mm);
                ctx.event("handle_mm_fault", "mmap_read_unlock", |_| String::new());
                return Flow::Return(*result);
            }
        };
        match outcome {
            Outcome::Continue => Flow::Continue,
            Outcome::Return(result) => self.handle_mm_fault_returns(result),
            Outcome::Retry(folio) => self.retry(ctx, folio),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        let vmf = &self.vmf;
        match &self.stage {
            FaultStage::LockMmap => Wait::MmapRead(vmf.mm),
            FaultStage::ReadPte | FaultStage::Unlock { .. } => Wait::Nothing,
            FaultStage::Anonymous(anonymous) => anonymous.wait(vmf),
            FaultStage::Wp(wp) => wp.wait(vmf),
            FaultStage::Swap(swap) => swap.wait(vmf),
            FaultStage::File(fault) => fault.wait(vmf),
            FaultStage::HugeAnonymous(huge) => huge.wait(vmf),
            FaultStage::HugeWp(huge) => huge.wait(vmf),
        }
    }
}

/// mm/memory.c: do_anonymous_page(): a read fault maps the zero page, a write fault a new
/// folio.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoAnonymousPage {
    pub stage: AnonymousStage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnonymousStage {
    /// A read fault: the zero page, under the PTE lock.
    ZeroSetPte,
    /// vmf_anon_prepare() and alloc_anon_folio().
    Alloc,
    /// Under the PTE lock: the new folio, referenced, mapped.
    SetPte { folio: FolioId },
}

impl DoAnonymousPage {
    fn new(write: bool) -> Self {
        DoAnonymousPage { stage: if write { AnonymousStage::Alloc } else { AnonymousStage::ZeroSetPte } }
    }

    fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match self.stage {
            AnonymousStage::ZeroSetPte => anon_zero_set_pte(ctx, vmf),
            AnonymousStage::Alloc => {
                let folio = alloc_anon_folio(ctx, vmf);
                Flow::goto(&mut self.stage, AnonymousStage::SetPte { folio }).into()
            }
            AnonymousStage::SetPte { folio } => anon_set_pte(ctx, vmf, folio),
        }
    }

    fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            AnonymousStage::Alloc => Wait::Nothing,
            AnonymousStage::ZeroSetPte | AnonymousStage::SetPte { .. } => Wait::PteLock(vmf.mm, vmf.vpn()),
        }
    }
}

/// do_anonymous_page()'s handle_userfault(): a user fault sleeps and retries (VM_FAULT_RETRY),
/// GUP's is SIGBUS.
fn userfault_result(vmf: &Vmf) -> Outcome {
    Outcome::Return(if vmf.lock_mmap { VM_FAULT_RETRY } else { VM_FAULT_SIGBUS })
}

/// mm/memory.c: do_anonymous_page(), read fault: map the zero page, special and read-only.
fn anon_zero_set_pte(ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
    let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
    ctx.ptl_lock(mm, vpn);
    if ctx.pte_load(mm, vpn).is_none() {
        if userfaultfd_missing(ctx, mm, address, vmf.lock_mmap) {
            ctx.ptl_unlock(mm, vpn);
            ctx.event("handle_userfault", "UFFD_EVENT_PAGEFAULT", |_| format!("{address:#x}: message queued, sleep"));
            return userfault_result(vmf);
        }
        let entry =
            PresentPte { pfn: folio_pfn(ZERO_FOLIO, 0), write: false, dirty: false, young: true, special: true };
        ctx.pte_store(mm, vpn, Pte::Present(entry));
    }
    ctx.ptl_unlock(mm, vpn);
    ctx.event("do_anonymous_page", "set_pte_at zero page", |_| {
        format!("{address:#x} -> zero page (special, read-only)")
    });
    Outcome::Return(0)
}

/// mm/memory.c: do_anonymous_page(): vmf_anon_prepare() and alloc_anon_folio().
fn alloc_anon_folio(ctx: &mut Ctx, vmf: &Vmf) -> FolioId {
    anon_vma_prepare(ctx, vmf.mm, vmf.address);
    let order = alloc_anon_folio_order(ctx, vmf.mm, vmf.address);
    let folio = ctx.alloc_folio(order);
    if order > 0 {
        ctx.flag_store(folio, PageFlag::LargeRmappable, true);
    }
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.event("do_anonymous_page", "alloc_anon_folio", |_| {
        format!("folio {folio} (order {order}, zeroed, refcount 1)")
    });
    folio
}

/// mm/memory.c: do_anonymous_page() under the PTE lock: vmf_pte_changed() (pte_range_none()
/// for a large folio), rmap, LRU, the PTEs.
fn anon_set_pte(ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
    let (mm, vpn) = (vmf.mm, vmf.vpn());
    let nr = ctx.folio_nr_pages(folio) as u64;
    let first = vpn & !(nr - 1);
    let address = first << PAGE_SHIFT;
    ctx.ptl_lock(mm, vpn);
    if !(first..first + nr).all(|v| ctx.pte_load(mm, v).is_none()) {
        // release: someone else mapped it first.
        ctx.ptl_unlock(mm, vpn);
        folio_put(ctx, folio);
        ctx.event("do_anonymous_page", "vmf_pte_changed", |_| {
            format!("{address:#x} already mapped: folio {folio} released")
        });
        return Outcome::Return(0);
    }
    if userfaultfd_missing(ctx, mm, vmf.address, vmf.lock_mmap) {
        ctx.ptl_unlock(mm, vpn);
        folio_put(ctx, folio);
        let fault = vmf.address;
        ctx.event("handle_userfault", "UFFD_EVENT_PAGEFAULT", |_| format!("{fault:#x}: message queued, sleep"));
        return userfault_result(vmf);
    }
    if nr > 1 {
        ctx.ref_add(folio, nr as i32 - 1, crate::access::Ordering::Relaxed);
    }
    ctx.rss_add(mm, true, nr as i64);
    folio_add_new_anon_rmap(ctx, folio, mm, address);
    folio_add_lru(ctx, folio);
    let writable = ctx.vmas(mm).iter().any(|v| v.contains(address) && v.flags & vm_flags::VM_WRITE != 0);
    for page in 0..nr {
        let entry = PresentPte {
            pfn: folio_pfn(folio, page as usize),
            write: writable,
            dirty: writable,
            young: true,
            special: false,
        };
        ctx.pte_store(mm, first + page, Pte::Present(entry));
    }
    ctx.ptl_unlock(mm, vpn);
    ctx.event("do_anonymous_page", "set_ptes", |k| {
        format!("{address:#x} -> folio {folio} ({nr} PTEs): {}", k.folio(folio).dump(folio))
    });
    Outcome::Return(0)
}

/// mm/memory.c: do_wp_page(): under the PTE lock, reuse an exclusive anonymous page or copy
/// it (wp_page_copy()).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoWpPage {
    pub stage: WpStage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WpStage {
    /// do_wp_page() under the PTE lock: pte_same(), then reuse or copy.
    Lock,
    /// wp_page_copy(): allocate and copy. `old` is referenced (ZERO_FOLIO: no normal page).
    CopyAlloc { old: FolioId },
    /// wp_page_copy() under the PTE lock: `new` replaces the old mapping.
    CopySetPte { new: FolioId, old: FolioId },
    /// wp_page_copy()'s "if (old_folio) folio_put(old_folio)".
    PutOld { old: FolioId },
}

impl DoWpPage {
    fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match self.stage {
            WpStage::Lock => self.wp_lock(ctx, vmf),
            WpStage::CopyAlloc { old } => {
                let new = wp_copy_alloc(ctx, vmf, old);
                Flow::goto(&mut self.stage, WpStage::CopySetPte { new, old }).into()
            }
            WpStage::CopySetPte { new, old } => {
                wp_copy_set_pte(ctx, vmf, new, old);
                Flow::goto(&mut self.stage, WpStage::PutOld { old }).into()
            }
            WpStage::PutOld { old } => {
                folio_put(ctx, old);
                ctx.event("wp_page_copy", "folio_put old", |_| format!("folio {old}"));
                Outcome::Return(0)
            }
        }
    }

    fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            WpStage::Lock | WpStage::CopySetPte { .. } => Wait::PteLock(vmf.mm, vmf.vpn()),
            WpStage::CopyAlloc { .. } | WpStage::PutOld { .. } => Wait::Nothing,
        }
    }

    /// mm/memory.c: do_wp_page(): under the PTE lock, reuse an exclusive anonymous page or copy.
    fn wp_lock(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
        ctx.ptl_lock(mm, vpn);
        let pte = ctx.pte_load(mm, vpn);
        if pte != vmf.orig_pte {
            ctx.ptl_unlock(mm, vpn);
            ctx.event("do_wp_page", "pte_same", |_| format!("{address:#x}: PTE changed, retry"));
            return Outcome::Return(0);
        }
        let present = vmf.orig_present();
        let vma = vmf.vma(ctx);
        let folio = vm_normal_page(&vma, address, present).map(pfn_folio);
        // do_wp_page(): no normal page in a shared PFN/mixed map is wp_pfn_shared() (a
        // pfn_mkwrite handler; the modelled drivers install writable PTEs there instead).
        if folio.is_none() && vma.flags & vm_flags::VM_SHARED != 0 {
            ctx.ptl_unlock(mm, vpn);
            return Outcome::Return(VM_FAULT_SIGBUS);
        }
        if vma.file.is_some() && vma.flags & vm_flags::VM_SHARED != 0 {
            ctx.ptl_unlock(mm, vpn);
            let message = format!("not modelled: a write to a shared file mapping at {address:#x} (wp_page_shared)");
            ctx.violation(Violation::new(ViolationKind::Invariant, message));
            return Outcome::Return(VM_FAULT_SIGBUS);
        }
        if let Some(folio) = folio {
            if wp_page_reuse(ctx, vmf, folio, present) {
                return Outcome::Return(0);
            }
            ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
        }
        ctx.ptl_unlock(mm, vpn);
        ctx.event("do_wp_page", "wp_page_copy", |_| format!("{address:#x}: copy on write"));
        Flow::goto(&mut self.stage, WpStage::CopyAlloc { old: folio.unwrap_or(ZERO_FOLIO) }).into()
    }
}

/// mm/memory.c: wp_can_reuse_anon_folio() / PageAnonExclusive: reuse in place, then
/// wp_page_reuse() makes the PTE writable and drops the PTE lock. False (the lock held) if the
/// folio must be copied.
fn wp_page_reuse(ctx: &mut Ctx, vmf: &Vmf, folio: FolioId, present: PresentPte) -> bool {
    let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
    let page = pfn_page(present.pfn);
    let anon = ctx.flag_test(folio, PageFlag::Anon);
    let exclusive = anon && ctx.anon_exclusive_load(folio, page);
    // wp_can_reuse_anon_folio(): a folio only this mapping holds is reused, under its
    // lock: "folio_move_anon_rmap(folio, vma); SetPageAnonExclusive(page)".
    let reusable = exclusive || (anon && wp_can_reuse_anon_folio(ctx, folio));
    if !reusable {
        return false;
    }
    if !exclusive {
        let anon_vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).and_then(|v| v.anon_vma);
        let (_, index) = ctx.mapping_load(folio);
        if let Some(anon_vma) = anon_vma {
            ctx.mapping_store(folio, Mapping::Anon(anon_vma), index);
        }
        ctx.anon_exclusive_store(folio, page, true);
        ctx.flag_store(folio, PageFlag::Locked, false);
    }
    let entry = PresentPte { write: true, dirty: true, young: true, ..present };
    ctx.pte_store(mm, vpn, Pte::Present(entry));
    ctx.ptl_unlock(mm, vpn);
    ctx.event("do_wp_page", "wp_page_reuse", |_| format!("{address:#x}: folio {folio} exclusive, made writable"));
    true
}

/// mm/memory.c: wp_page_copy(): allocate and copy (the zero page needs no copy).
fn wp_copy_alloc(ctx: &mut Ctx, vmf: &Vmf, old: FolioId) -> FolioId {
    anon_vma_prepare(ctx, vmf.mm, vmf.address);
    let folio = ctx.alloc_folio(0);
    let pfn = vmf.orig_present().pfn;
    // __wp_page_copy_user(): copy the page, or with no normal page, what the old PTE maps
    // (a raw pfn's memory; the zero page reads as zeroes).
    let data =
        if pfn_folio(pfn) == ZERO_FOLIO { PageData::Fill(0) } else { ctx.data_load(pfn_folio(pfn), pfn_page(pfn)) };
    ctx.data_store(folio, 0, data);
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.event("wp_page_copy", "__wp_page_copy_user", |_| {
        if old == ZERO_FOLIO {
            format!("folio {folio} copied from pfn {pfn:#x} (no normal page)")
        } else {
            format!("folio {folio} copied from folio {old}")
        }
    });
    folio
}

/// mm/memory.c: wp_page_copy() under the PTE lock: replace the old mapping (or, with the PTE
/// changed, release the copy).
fn wp_copy_set_pte(ctx: &mut Ctx, vmf: &Vmf, folio: FolioId, old: FolioId) {
    let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
    ctx.ptl_lock(mm, vpn);
    if ctx.pte_load(mm, vpn) != vmf.orig_pte {
        ctx.ptl_unlock(mm, vpn);
        folio_put(ctx, folio);
        return;
    }
    if old == ZERO_FOLIO {
        ctx.rss_add(mm, true, 1);
    } else {
        let page = pfn_page(vmf.orig_present().pfn);
        if !ctx.flag_test(old, PageFlag::Anon) {
            // A driver's (or page cache) page replaced by an anonymous copy.
            ctx.rss_add(mm, false, -1);
            ctx.rss_add(mm, true, 1);
        }
        folio_remove_rmap_pte(ctx, old, page);
    }
    folio_add_new_anon_rmap(ctx, folio, mm, address);
    folio_add_lru(ctx, folio);
    let entry = PresentPte { pfn: folio_pfn(folio, 0), write: true, dirty: true, young: true, special: false };
    ctx.pte_store(mm, vpn, Pte::Present(entry));
    ctx.ptl_unlock(mm, vpn);
    ctx.event("wp_page_copy", "set_pte_at", |_| format!("{address:#x} -> folio {folio} (was folio {old})"));
    // The old mapping's reference goes with the one taken for the copy.
    if old != ZERO_FOLIO {
        folio_put(ctx, old);
    }
}

/// mm/memory.c: do_swap_page(): the swap cache folio (or one read in), locked, mapped under
/// the PTE lock; on a migration entry, migration_entry_wait().
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoSwapPage {
    pub stage: SwapStage,
}

/// The folio of every stage but the first is the swap cache folio, referenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SwapStage {
    /// swap_cache_get_folio(), or swapin_readahead() on a miss.
    Lookup,
    /// folio_lock_or_retry().
    Lock { folio: FolioId },
    /// __folio_lock_or_retry() on a first try: mmap_lock dropped, folio_wait_locked().
    RetryWait { folio: FolioId },
    /// Under the PTE lock, the folio locked: map it.
    Map { folio: FolioId },
    /// migration_entry_wait(): the folio under migration (not referenced), until unlocked.
    MigrationWait { folio: FolioId },
}

impl DoSwapPage {
    fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match self.stage {
            SwapStage::Lookup => match swap_lookup(ctx, vmf) {
                Some(folio) => Flow::goto(&mut self.stage, SwapStage::Lock { folio }).into(),
                None => Outcome::Return(0),
            },
            SwapStage::Lock { folio } => self.swap_lock(ctx, vmf, folio),
            // folio_wait_locked() returned: do_swap_page() "goto out_release" drops the folio,
            // and arch/x86/mm/fault.c: do_user_addr_fault() retries with FAULT_FLAG_TRIED.
            SwapStage::RetryWait { folio } => Outcome::Retry(Some(folio)),
            SwapStage::Map { folio } => swap_map(ctx, vmf, folio),
            SwapStage::MigrationWait { folio } => {
                let address = vmf.address;
                ctx.event("migration_entry_wait", "folio_wait_bit", |_| {
                    format!("{address:#x}: folio {folio} unlocked, retry the fault")
                });
                Outcome::Return(0)
            }
        }
    }

    fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            SwapStage::Lookup => Wait::Nothing,
            SwapStage::Lock { .. } if vmf.allow_retry_first() => Wait::Nothing,
            SwapStage::Lock { folio } | SwapStage::RetryWait { folio } | SwapStage::MigrationWait { folio } => {
                Wait::FolioLock(folio)
            }
            SwapStage::Map { .. } => Wait::PteLock(vmf.mm, vmf.vpn()),
        }
    }

    /// folio_lock_or_retry(), then "the folio is still the swap cache folio of this entry".
    /// include/linux/pagemap.h: folio_lock_or_retry(): folio_trylock(), else
    /// mm/filemap.c: __folio_lock_or_retry(): on a first try drop mmap_lock, wait for the folio
    /// and return VM_FAULT_RETRY; on a retried one, sleep for the lock with mmap_lock held
    /// (the step waited until the folio was unlocked).
    fn swap_lock(&mut self, ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
        if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
            assert!(vmf.allow_retry_first(), "a blocking folio_lock() waits until the folio is unlocked");
            ctx.mmap_read_unlock(vmf.mm);
            ctx.event("__folio_lock_or_retry", "mmap_read_unlock", |_| format!("folio {folio} locked: wait, retry"));
            return Flow::goto(&mut self.stage, SwapStage::RetryWait { folio }).into();
        }
        // "folio_test_swapcache(folio) && page_swap_entry(page).val == entry.val".
        let offset = swap_offset(vmf);
        let nr = ctx.folio_nr_pages(folio) as u32;
        let still = ctx.flag_test(folio, PageFlag::Swapcache)
            && ctx.folio_swap_load(folio).is_some_and(|base| (base..base + nr).contains(&offset));
        if !still {
            swap_release(ctx, folio);
            ctx.event("do_swap_page", "out_page", |_| format!("folio {folio} left the swap cache, retry"));
            return Outcome::Return(0);
        }
        ctx.event("do_swap_page", "folio_lock", |_| format!("folio {folio}"));
        Flow::goto(&mut self.stage, SwapStage::Map { folio }).into()
    }
}

/// The swap entry's offset in do_swap_page()'s swap PTE.
fn swap_offset(vmf: &Vmf) -> u32 {
    match vmf.orig_pte {
        Pte::Swap { offset, .. } => offset,
        _ => unreachable!("do_swap_page on a swap PTE"),
    }
}

/// mm/memory.c: do_swap_page(): swap_cache_get_folio(), or swapin_readahead() on a miss.
fn swap_lookup(ctx: &mut Ctx, vmf: &Vmf) -> Option<FolioId> {
    let (offset, address) = (swap_offset(vmf), vmf.address);
    let cached = swap_cache_get_folio(ctx, offset);
    let folio = cached.or_else(|| read_swap_cache(ctx, offset));
    ctx.event("do_swap_page", if cached.is_some() { "swap_cache_get_folio" } else { "swapin_readahead" }, |k| {
        match folio {
            Some(f) => format!("{address:#x}: swap entry {offset:#x} -> {}", k.folio(f).dump(f)),
            None => format!("{address:#x}: swap entry {offset:#x} gone, retry"),
        }
    });
    folio
}

/// do_swap_page()'s out_release with the folio locked: folio_unlock(), folio_put().
fn swap_release(ctx: &mut Ctx, folio: FolioId) {
    ctx.flag_store(folio, PageFlag::Locked, false);
    folio_put(ctx, folio);
}

/// do_swap_page() under the PTE lock: pte_same() ("out_nomap" if not), then the pages to map
/// (swap_pte_batch()) and swap_map_folio().
fn swap_map(ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
    let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
    ctx.ptl_lock(mm, vpn);
    if ctx.pte_load(mm, vpn) != vmf.orig_pte {
        ctx.ptl_unlock(mm, vpn);
        swap_release(ctx, folio);
        ctx.event("do_swap_page", "out_nomap", |_| format!("{address:#x}: PTE changed, retry"));
        return Outcome::Return(0);
    }
    let vma = vmf.vma(ctx);
    let Pte::Swap { exclusive, .. } = vmf.orig_pte else { unreachable!("a swap PTE") };
    let base = ctx.folio_swap_load(folio).expect("checked under the folio lock");
    let (first_page, nr_pages) = swap_pte_batch(ctx, vmf, &vma, folio, base, exclusive);
    swap_map_folio(ctx, vmf, &vma, folio, base, first_page..first_page + nr_pages, exclusive);
    Outcome::Return(0)
}

/// do_swap_page() under the PTE lock, past pte_same(): swap_free(), maybe folio_free_swap(),
/// then map `pages` of the folio -- one page, or for a large swap cache folio whose every page
/// the neighbouring PTEs still name in order, the whole folio (6.10+) -- exclusive iff the
/// swap PTE was (or the folio has no other user).
fn swap_map_folio(
    ctx: &mut Ctx,
    vmf: &Vmf,
    vma: &Vma,
    folio: FolioId,
    base: u32,
    pages: std::ops::Range<usize>,
    exclusive: bool,
) {
    let (mm, vpn, offset) = (vmf.mm, vmf.vpn(), swap_offset(vmf));
    let (first_page, nr_pages) = (pages.start, pages.len());
    let first_address = (vpn - (offset - base) as u64 + first_page as u64) << PAGE_SHIFT;
    let anon = ctx.flag_test(folio, PageFlag::Anon);
    let page_exclusive = ctx.anon_exclusive_load(folio, (offset - base) as usize);
    if anon && page_exclusive {
        ctx.violation(Violation::new(
            ViolationKind::KernelBug,
            "BUG_ON(folio_test_anon(folio) && PageAnonExclusive(page)) in do_swap_page()",
        ));
    }
    for page in pages.clone() {
        swap_free(ctx, base + page as u32);
    }
    // should_try_to_free_swap(): swap full, or a write fault on a folio only we hold.
    let nr = ctx.folio_nr_pages(folio) as i32;
    if ctx.flag_test(folio, PageFlag::Swapcache) && (vm_swap_full(ctx) || (vmf.write && ctx.ref_load(folio) == 1 + nr))
    {
        folio_free_swap(ctx, folio);
    }
    ctx.rss_add(mm, true, nr_pages as i64);
    ctx.rss_swap_add(mm, -(nr_pages as i64));
    let exclusive = exclusive || ctx.ref_load(folio) == 1;
    // "if (!folio_test_ksm(folio) && (exclusive || folio_ref_count(folio) == 1))": since
    // c18160dba5ff (6.11) a VM_WRITE VMA maps it writable on any fault, dirty on a write
    // one; before, only a write fault made it writable (and dirty).
    let may_write = exclusive && vma.flags & vm_flags::VM_WRITE != 0;
    let writable = may_write && (vmf.write || ctx.patched(crate::patches::Patch::SwapinExclusiveWritable));
    let dirty = may_write && vmf.write;
    if !anon {
        // __folio_add_anon_rmap() of a folio read in just now: __folio_set_anon().
        let anon_vma = vma.anon_vma.expect("a swap PTE implies a prepared anon_vma");
        ctx.flag_store(folio, PageFlag::Anon, true);
        ctx.mapping_store(folio, Mapping::Anon(anon_vma), vma.linear_page_index(first_address));
    }
    if nr_pages > 1 {
        ctx.ref_add(folio, nr_pages as i32 - 1, crate::access::Ordering::Relaxed);
    }
    for page in pages {
        let page_address = first_address + ((page - first_page) as u64) * PAGE_SIZE;
        folio_add_anon_rmap_pte(ctx, folio, page, vma, page_address, exclusive);
        let entry = PresentPte { pfn: folio_pfn(folio, page), write: writable, dirty, young: true, special: false };
        ctx.pte_store(mm, page_address >> PAGE_SHIFT, Pte::Present(entry));
    }
    ctx.flag_store(folio, PageFlag::Locked, false);
    ctx.ptl_unlock(mm, vpn);
    ctx.event("do_swap_page", "set_pte_at", |k| {
        format!(
            "{first_address:#x} -> folio {folio}{}{}: {}",
            if nr_pages > 1 { format!(" ({nr_pages} pages)") } else { String::new() },
            if exclusive { " exclusive" } else { "" },
            k.folio(folio).dump(folio)
        )
    });
}

/// The pages do_swap_page() maps: all of a large folio when the PTEs around the fault name
/// its entries in order, inside the VMA and the PMD (swap_pte_batch()); else the one page.
fn swap_pte_batch(ctx: &mut Ctx, vmf: &Vmf, vma: &Vma, folio: FolioId, base: u32, exclusive: bool) -> (usize, usize) {
    let index = (swap_offset(vmf) - base) as usize;
    let nr = ctx.folio_nr_pages(folio);
    if nr == 1 {
        return (0, 1);
    }
    let start = vmf.address - (index as u64) * PAGE_SIZE;
    let end = start + nr as u64 * PAGE_SIZE;
    let pmd_start = vmf.address & !(crate::mm::huge_memory::HPAGE_PMD_SIZE - 1);
    if start < vma.start.max(pmd_start) || end > vma.end.min(pmd_start + crate::mm::huge_memory::HPAGE_PMD_SIZE) {
        return (index, 1);
    }
    let batch = (0..nr).all(|page| {
        ctx.pte_load(vmf.mm, (start >> PAGE_SHIFT) + page as u64) == Pte::Swap { offset: base + page as u32, exclusive }
    });
    if batch {
        (0, nr)
    } else {
        (index, 1)
    }
}

/// mm/memory.c: do_fault() in a file VMA: do_read_fault() (do_fault_around() first), or for
/// a write to a private mapping do_cow_fault(); both through __do_fault() →
/// mm/filemap.c: filemap_fault() (filemap.rs), then finish_fault().
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DoFault {
    /// do_cow_fault()'s vmf->cow_page, preallocated (refcount 1); none in do_read_fault().
    pub cow: Option<FolioId>,
    pub stage: DoFaultStage,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DoFaultStage {
    /// do_read_fault(): do_fault_around() first: the first page to map.
    Around,
    /// filemap_map_pages() under the PTE lock: the first folio found (index, folio, locked
    /// and referenced) and the window's last index.
    AroundMap { first: (u64, FolioId), end: u64 },
    /// __do_fault() → filemap_fault().
    Filemap(FilemapFault),
    /// finish_fault() under the PTE lock: the page cache folio, locked and referenced.
    SetPte { folio: FolioId },
}

/// mm/memory.c: do_fault() in a file VMA, up to its first step: do_read_fault(), or for a
/// write to a private mapping do_cow_fault() (vmf_anon_prepare() and folio_prealloc() come
/// first). do_shared_fault() (page_mkwrite, dirty tracking, writeback) is not modelled.
fn do_fault(ctx: &mut Ctx, vmf: &mut Vmf, vma: &Vma, file: FileId) -> Result<DoFault, i64> {
    if vmf.write && vma.flags & vm_flags::VM_SHARED != 0 {
        let message =
            format!("not modelled: a write fault in a shared file mapping at {:#x} (do_shared_fault)", vmf.address);
        ctx.violation(Violation::new(ViolationKind::Invariant, message));
        return Err(VM_FAULT_SIGBUS);
    }
    vmf.pgoff = Some((file, vma.linear_page_index(vmf.address)));
    let cow = vmf.write.then(|| {
        anon_vma_prepare(ctx, vmf.mm, vmf.address);
        let folio = ctx.alloc_folio(0);
        ctx.event("do_cow_fault", "folio_prealloc", |_| format!("folio {folio} for the private copy"));
        folio
    });
    // should_fault_around(): a read fault, outside a userfaultfd WP/minor VMA (not modelled).
    let stage = if vmf.write { DoFaultStage::Filemap(FilemapFault::new()) } else { DoFaultStage::Around };
    Ok(DoFault { cow, stage })
}

impl DoFault {
    fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        match &mut self.stage {
            DoFaultStage::Around => self.do_fault_around(ctx, vmf),
            DoFaultStage::AroundMap { first, end } => {
                // filemap_map_pages() under the PTE lock; VM_FAULT_NOPAGE when the faulting
                // page was among those mapped.
                let (first, end) = (*first, *end);
                let vma = vmf.vma(ctx);
                if filemap_map_pages_locked(ctx, vmf.mm, &vma, vmf.address, first, end) {
                    return Outcome::Return(0);
                }
                Flow::goto(&mut self.stage, DoFaultStage::Filemap(FilemapFault::new())).into()
            }
            DoFaultStage::Filemap(filemap) => match filemap.step(ctx, vmf) {
                FilemapOutcome::Continue => Outcome::Continue,
                FilemapOutcome::Locked(folio) => {
                    self.cow_copy(ctx, folio);
                    Flow::goto(&mut self.stage, DoFaultStage::SetPte { folio }).into()
                }
                FilemapOutcome::Error(result) => {
                    self.cow_free(ctx);
                    Outcome::Return(result)
                }
                FilemapOutcome::Retry(folio) => {
                    self.cow_free(ctx);
                    Outcome::Retry(folio)
                }
            },
            DoFaultStage::SetPte { folio } => {
                let folio = *folio;
                self.finish_fault(ctx, vmf, folio)
            }
        }
    }

    fn wait(&self, vmf: &Vmf) -> Wait {
        match &self.stage {
            DoFaultStage::Around => Wait::Nothing,
            // filemap_map_pages() takes the lock of the table the window lies in.
            DoFaultStage::AroundMap { .. } | DoFaultStage::SetPte { .. } => Wait::PteLock(vmf.mm, vmf.vpn()),
            DoFaultStage::Filemap(filemap) => filemap.wait(vmf),
        }
    }

    /// do_read_fault(): "if (should_fault_around(vmf)) { ret = do_fault_around(vmf); if (ret)
    /// return ret; }": filemap_map_pages() finds the first cached page of the window it can
    /// map without sleeping, then maps it and the others under the PTE lock.
    fn do_fault_around(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> Outcome {
        let vma = vmf.vma(ctx);
        let (start, end) = fault_around_window(&vma, vmf.address);
        let next = match filemap_map_pages_first(ctx, vmf.pgoff().0, start, end) {
            Some(first) => DoFaultStage::AroundMap { first, end },
            None => {
                ctx.event("do_fault_around", "filemap_map_pages", |_| format!("indexes [{start}, {end}]: none to map"));
                DoFaultStage::Filemap(FilemapFault::new())
            }
        };
        Flow::goto(&mut self.stage, next).into()
    }

    /// do_cow_fault(): copy_mc_user_highpage(), __folio_mark_uptodate().
    fn cow_copy(&mut self, ctx: &mut Ctx, folio: FolioId) {
        if let Some(copy) = self.cow {
            let data = ctx.data_load(folio, 0);
            ctx.data_store(copy, 0, data);
            ctx.flag_store(copy, PageFlag::Uptodate, true);
            ctx.event("do_cow_fault", "copy_mc_user_highpage", |_| format!("folio {copy} copied from folio {folio}"));
        }
    }

    /// An error before the folio is mapped, or a retry: do_cow_fault() frees its preallocated
    /// folio.
    fn cow_free(&mut self, ctx: &mut Ctx) {
        if let Some(copy) = self.cow.take() {
            folio_put(ctx, copy);
        }
    }

    /// finish_fault() → set_pte_range() under the PTE lock ("vmf_pte_changed()": someone
    /// mapped it first, VM_FAULT_NOPAGE), then do_read_fault()'s folio_unlock() (its
    /// reference is now the PTE's) or do_cow_fault()'s folio_unlock() and folio_put() (the
    /// copy is mapped instead).
    fn finish_fault(&mut self, ctx: &mut Ctx, vmf: &Vmf, folio: FolioId) -> Outcome {
        let (mm, vpn, address) = (vmf.mm, vmf.vpn(), vmf.address);
        ctx.ptl_lock(mm, vpn);
        if !ctx.pte_load(mm, vpn).is_none() {
            ctx.ptl_unlock(mm, vpn);
            ctx.flag_store(folio, PageFlag::Locked, false);
            folio_put(ctx, folio);
            ctx.event("finish_fault", "vmf_pte_changed", |_| format!("{address:#x} mapped meanwhile: VM_FAULT_NOPAGE"));
            self.cow_free(ctx);
            return Outcome::Return(0);
        }
        let mapped = match self.cow.take() {
            Some(copy) => {
                ctx.rss_add(mm, true, 1);
                folio_add_new_anon_rmap(ctx, copy, mm, address);
                folio_add_lru(ctx, copy);
                let entry =
                    PresentPte { pfn: folio_pfn(copy, 0), write: true, dirty: true, young: true, special: false };
                ctx.pte_store(mm, vpn, Pte::Present(entry));
                copy
            }
            None => {
                ctx.rss_add(mm, false, 1);
                folio_add_file_rmap_pte(ctx, folio, 0);
                let entry =
                    PresentPte { pfn: folio_pfn(folio, 0), write: false, dirty: false, young: true, special: false };
                ctx.pte_store(mm, vpn, Pte::Present(entry));
                folio
            }
        };
        ctx.ptl_unlock(mm, vpn);
        ctx.flag_store(folio, PageFlag::Locked, false);
        if mapped != folio {
            folio_put(ctx, folio);
        }
        ctx.event("finish_fault", "set_pte_range", |k| format!("{address:#x} -> {}", k.folio(mapped).dump(mapped)));
        Outcome::Return(0)
    }
}

/// mm/memory.c: alloc_anon_folio(): the largest enabled mTHP order whose naturally aligned range
/// lies in the VMA with every PTE none (read without the lock, as pte_range_none() there is);
/// order 0 for a userfaultfd-armed VMA or when none fits.
fn alloc_anon_folio_order(ctx: &mut Ctx, mm: MmId, address: u64) -> u8 {
    let enabled = ctx.anon_orders();
    let Some(vma) = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned() else { return 0 };
    if enabled == 0 || vma.uffd.is_some() {
        return 0;
    }
    for order in (1..crate::mm::huge_memory::HPAGE_PMD_ORDER).rev() {
        if enabled & (1 << order) == 0 {
            continue;
        }
        let size = PAGE_SIZE << order;
        let start = address & !(size - 1);
        if start < vma.start || start + size > vma.end {
            continue;
        }
        let first = start >> PAGE_SHIFT;
        if (first..first + (1 << order)).all(|vpn| ctx.pte_load(mm, vpn).is_none()) {
            return order;
        }
    }
    0
}

/// do_anonymous_page(): "Deliver the page fault to userland, check inside PT lock". For a user
/// fault, fs/userfaultfd.c handle_userfault() queues a message for the handler; the faulting
/// thread then sleeps (UserAccess waits for the PTE) and retries. A fault from GUP is not
/// modelled.
fn userfaultfd_missing(ctx: &mut Ctx, mm: MmId, address: u64, user: bool) -> bool {
    let Some(uffd) = ctx.vmas(mm).iter().find(|v| v.contains(address)).and_then(|v| v.uffd) else {
        return false;
    };
    if !user {
        ctx.violation(Violation::new(
            ViolationKind::Invariant,
            "not modelled: a missing fault from GUP in a userfaultfd-registered VMA (handle_userfault)",
        ));
        return true;
    }
    if let Some(mut state) = ctx.uffd_load(uffd) {
        state.messages.push(address & !(PAGE_SIZE - 1));
        ctx.uffd_store(uffd, state);
    }
    true
}

/// mm/rmap.c: __anon_vma_prepare(): the VMA's anon_vma, made on its first anonymous fault.
pub fn anon_vma_prepare(ctx: &mut Ctx, mm: MmId, address: u64) -> u32 {
    let existing = ctx.vmas(mm).iter().find(|v| v.contains(address)).and_then(|v| v.anon_vma);
    if let Some(anon_vma) = existing {
        return anon_vma;
    }
    let anon_vma = ctx.anon_vma_new(mm);
    ctx.vma_update(mm, address, |vma| vma.anon_vma = Some(anon_vma));
    anon_vma
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ZapStage {
    ZapTable,
    TlbFinish,
}

/// mm/memory.c: zap_page_range_single() / unmap_vmas() → zap_pte_range(), one PTE table per
/// step under its lock, then mm/mmu_gather.c: tlb_finish_mmu() dropping the mappings'
/// references after the TLB flush, one folio per step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Zap {
    pub mm: MmId,
    pub start: u64,
    pub end: u64,
    /// The next virtual page number to zap.
    pub cursor: u64,
    pub stage: ZapStage,
    /// Folios whose reference the mmu_gather holds until the flush.
    pub gathered: Vec<FolioId>,
    /// The caller holds `mmap_lock` for write: the tables with nothing mapped are skipped, as
    /// zap_pmd_range() skips none PMDs (no thread can fill them meanwhile).
    pub write_locked: bool,
}

impl Zap {
    pub fn new(mm: MmId, start: u64, end: u64) -> Zap {
        let stage = if start < end { ZapStage::ZapTable } else { ZapStage::TlbFinish };
        Zap { mm, start, end, cursor: start >> PAGE_SHIFT, stage, gathered: Vec::new(), write_locked: false }
    }

    /// A zap under `mmap_lock` for write (munmap): it costs the tables that have entries, not
    /// the range's length.
    pub fn write_locked(mm: MmId, start: u64, end: u64) -> Zap {
        Zap { write_locked: true, ..Zap::new(mm, start, end) }
    }

    fn zap_table(&mut self, ctx: &mut Ctx, table: u64) {
        let (mm, end_vpn) = (self.mm, self.end >> PAGE_SHIFT);
        let first = self.cursor.max(table * PTRS_PER_PTE);
        let last = end_vpn.min((table + 1) * PTRS_PER_PTE);
        ctx.ptl_lock(mm, first);
        // zap_pmd_range(): a huge PMD is zapped whole, or split first when the range covers part.
        if let Some(pmd) = ctx.pmd_load(mm, table) {
            if first == table * PTRS_PER_PTE && last == (table + 1) * PTRS_PER_PTE {
                let folio = crate::mm::huge_memory::zap_huge_pmd(ctx, mm, table, pmd);
                self.gathered.extend(folio);
                ctx.ptl_unlock(mm, first);
                self.cursor = last;
                ctx.event("zap_huge_pmd", "pmdp_huge_get_and_clear", |_| match folio {
                    Some(folio) => format!("THP folio {folio}"),
                    None => "the huge zero folio".to_string(),
                });
                return;
            }
            if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
                crate::mm::huge_memory::__split_huge_zero_page_pmd(ctx, mm, table, pmd);
            } else {
                crate::mm::huge_memory::__split_huge_pmd_locked(ctx, mm, table, pmd);
            }
            ctx.event("__split_huge_pmd", "__split_huge_pmd_locked", |_| {
                format!("PMD {:#x} -> 512 PTEs", (table * PTRS_PER_PTE) << PAGE_SHIFT)
            });
        }
        // Under the table's lock its set of PTEs is stable: every writer of a PTE but the MMU
        // (which only sets bits of present ones) holds it.
        let mut zapped = 0;
        for (vpn, _) in ctx.pte_entries(mm, first, last) {
            let pte = ctx.pte_get_and_clear(mm, vpn);
            if let Pte::Swap { offset, .. } = pte {
                // zap_nonpresent_ptes(): free_swap_and_cache().
                ctx.rss_swap_add(mm, -1);
                free_swap_and_cache(ctx, offset);
                continue;
            }
            if let Pte::Migration { .. } = pte {
                // zap_nonpresent_ptes(): the page's rmap and reference went with the migration.
                ctx.rss_add(mm, true, -1);
                continue;
            }
            let Some(present) = pte.present() else { continue };
            zapped += 1;
            let Some(folio) = vm_normal_folio(present) else { continue };
            let anon = matches!(ctx.mapping_load(folio).0, Mapping::Anon(_));
            // zap_present_folio_ptes(): an anonymous PTE's dirty and young bits are dropped; a
            // file one's are kept ("if (pte_young(ptent) && likely(vma_has_recency(vma)))
            // folio_mark_accessed(folio)": no VMA is VM_SEQ_READ or VM_RAND_READ here).
            if !anon && present.dirty {
                folio_mark_dirty(ctx, folio);
            }
            if !anon && present.young {
                crate::mm::swap::folio_mark_accessed(ctx, folio);
            }
            ctx.rss_add(mm, anon, -1);
            folio_remove_rmap_pte(ctx, folio, pfn_page(present.pfn));
            self.gathered.push(folio);
        }
        ctx.ptl_unlock(mm, first);
        self.cursor = last;
        ctx.event("zap_pte_range", "clear ptes", |_| {
            format!("{zapped} PTEs in [{:#x}, {:#x})", first << PAGE_SHIFT, last << PAGE_SHIFT)
        });
    }
}

impl Zap {
    /// A write-locked zap's next page with entries from the cursor (`Some(None)`: none left),
    /// by `find` (mm, first vpn, last vpn); `None` for a zap that walks every table.
    fn next_mapped(&self, find: impl FnOnce(MmId, u64, u64) -> Option<u64>) -> Option<Option<u64>> {
        self.write_locked.then(|| find(self.mm, self.cursor, self.end >> PAGE_SHIFT))
    }
}

impl KernelFunction for Zap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            ZapStage::ZapTable => {
                // zap_page_range_single(), unmap_region() and exit_mmap() start with
                // lru_add_drain().
                if self.cursor == self.start >> PAGE_SHIFT {
                    crate::mm::swap::lru_add_drain(ctx);
                }
                let end_vpn = self.end >> PAGE_SHIFT;
                // Under mmap_lock for write the next table with entries, found and zapped in one
                // step (what is empty now stays empty: only mmap_lock holders fill it).
                if let Some(next) =
                    self.next_mapped(|mm, first, last| ctx.next_mapped_vpn_write_locked(mm, first, last))
                {
                    self.cursor = next.unwrap_or(end_vpn);
                    if self.cursor >= end_vpn {
                        return Flow::goto(&mut self.stage, ZapStage::TlbFinish);
                    }
                }
                // Every table of the range in turn: its lock orders this step against any
                // thread that fills a PTE of it.
                self.zap_table(ctx, pte_table(self.cursor));
                if self.cursor >= end_vpn {
                    return Flow::goto(&mut self.stage, ZapStage::TlbFinish);
                }
                Flow::Continue
            }
            ZapStage::TlbFinish => {
                let Some(folio) = self.gathered.pop() else {
                    return Flow::Return(0);
                };
                // free_pages_and_swap_cache() → folios_put_refs(): the references a batch holds
                // on one folio go in one atomic.
                let mut refs = 1;
                while self.gathered.last() == Some(&folio) {
                    self.gathered.pop();
                    refs += 1;
                }
                crate::mm::swap::folio_put_refs(ctx, folio, refs);
                ctx.event("tlb_finish_mmu", "folio_put", |k| {
                    format!(
                        "{}{}",
                        if refs > 1 { format!("{refs} refs: ") } else { String::new() },
                        k.folio(folio).dump(folio)
                    )
                });
                Flow::Continue
            }
        }
    }

    fn wait(&self, k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            ZapStage::ZapTable => {
                match self.next_mapped(|mm, first, last| k.mms[mm as usize].next_mapped_vpn(first, last)) {
                    Some(None) => Wait::Nothing,
                    Some(Some(vpn)) => Wait::PteLock(self.mm, vpn),
                    None => Wait::PteLock(self.mm, self.cursor),
                }
            }
            ZapStage::TlbFinish => Wait::Nothing,
        }
    }
}

/// x86-64 and arm64 select CONFIG_ARCH_HAS_PTE_SPECIAL: special PTEs mark raw pfns.
pub const ARCH_HAS_PTE_SPECIAL: bool = true;

/// mm/memory.c: vm_normal_page(): the page behind a present PTE that the caller may treat as
/// a normal, refcounted page, or None for raw pfns (PFN maps, mixed maps' pfns) and the zero
/// page.
pub fn vm_normal_page(vma: &Vma, address: u64, pte: PresentPte) -> Option<Pfn> {
    vm_normal_page_arch(vma, address, pte, ARCH_HAS_PTE_SPECIAL)
}

/// vm_normal_page() for an architecture with or without pte_special(). Without it, a
/// VM_PFNMAP mapping tells raw pfns from COWed anonymous pages by linearity: remap_pfn_range()
/// set `vm_pgoff` to the first pfn of a COW mapping, so a pfn where the linear one would be is
/// raw, and any other pfn in a COW mapping is an anonymous page.
pub fn vm_normal_page_arch(vma: &Vma, address: u64, pte: PresentPte, has_pte_special: bool) -> Option<Pfn> {
    let pfn = pte.pfn;
    let is_zero_pfn = pfn_folio(pfn) == ZERO_FOLIO;
    if has_pte_special {
        // "if (likely(!pte_special(pte))) goto check_pfn;" then VM_PFNMAP|VM_MIXEDMAP and
        // the zero pfn return NULL (anything else special is print_bad_pte()).
        return (!pte.special).then_some(pfn);
    }
    if vma.flags & (vm_flags::VM_PFNMAP | vm_flags::VM_MIXEDMAP) != 0 {
        if vma.flags & vm_flags::VM_MIXEDMAP != 0 {
            // pfn_valid(): every modelled pfn has a struct page.
            return (!is_zero_pfn).then_some(pfn);
        }
        let offset = (address - vma.start) >> PAGE_SHIFT;
        if pfn == vma.pgoff + offset || !vma.is_cow_mapping() {
            return None;
        }
    }
    (!is_zero_pfn).then_some(pfn)
}

/// mm/memory.c: validate_page_before_insert(): only a driver's own, referenced, non-anonymous
/// pages may be inserted (the zero page only where vm_mixed_zeropage_allowed()).
fn validate_page_before_insert(ctx: &mut Ctx, vma: &Vma, pfn: Pfn) -> i64 {
    let folio = pfn_folio(pfn);
    if ctx.ref_load(folio) == 0 {
        return -errno::EINVAL;
    }
    if folio == ZERO_FOLIO {
        return if vma.is_cow_mapping() || vma.flags & (vm_flags::VM_WRITE | vm_flags::VM_MAYWRITE) == 0 {
            0
        } else {
            -errno::EINVAL
        };
    }
    if ctx.flag_test(folio, PageFlag::Anon) {
        return -errno::EINVAL;
    }
    0
}

/// mm/memory.c: insert_page_into_pte_locked() with `mkwrite` false, under the PTE lock.
fn insert_page_into_pte_locked(ctx: &mut Ctx, mm: MmId, vma: &Vma, address: u64, pfn: Pfn) -> i64 {
    let vpn = address >> PAGE_SHIFT;
    if !ctx.pte_load(mm, vpn).is_none() {
        return -errno::EBUSY;
    }
    let folio = pfn_folio(pfn);
    let zero = folio == ZERO_FOLIO;
    if !zero {
        ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
        ctx.rss_add(mm, false, 1);
        folio_add_file_rmap_pte(ctx, folio, pfn_page(pfn));
    }
    // mk_pte(page, vma->vm_page_prot): the protection carries _PAGE_ACCESSED.
    let entry = PresentPte { pfn, write: vma.page_prot_write() && !zero, dirty: false, young: true, special: zero };
    ctx.pte_store(mm, vpn, Pte::Present(entry));
    0
}

/// mm/memory.c: vm_insert_page() → insert_page(): one page under its PTE lock. The caller
/// (a driver's mmap handler) holds mmap_lock for writing, so VM_MIXEDMAP may be set here.
pub fn vm_insert_page(ctx: &mut Ctx, mm: MmId, address: u64, pfn: Pfn) -> i64 {
    let Some(vma) = vma_for_insert(ctx, mm, address) else {
        return -errno::EFAULT;
    };
    let mut result = validate_page_before_insert(ctx, &vma, pfn);
    if result == 0 {
        ctx.ptl_lock(mm, address >> PAGE_SHIFT);
        result = insert_page_into_pte_locked(ctx, mm, &vma, address, pfn);
        ctx.ptl_unlock(mm, address >> PAGE_SHIFT);
    }
    ctx.event("vm_insert_page", "insert_page_into_pte_locked", |k| {
        let folio = pfn_folio(pfn);
        format!("{address:#x} -> pfn {pfn:#x} = {}: {}", k.folio(folio).dump(folio), errno_or_ok(result))
    });
    result
}

/// mm/memory.c: vm_insert_pages() → insert_pages(): the pages of one PTE table under one
/// hold of its lock (insert_page_in_batch_locked() each).
pub fn vm_insert_pages_table(ctx: &mut Ctx, mm: MmId, addresses: &[u64], pfns: &[Pfn]) -> i64 {
    let Some(vma) = vma_for_insert(ctx, mm, addresses[0]) else {
        return -errno::EFAULT;
    };
    let vpn = addresses[0] >> PAGE_SHIFT;
    ctx.ptl_lock(mm, vpn);
    let mut result = 0;
    for (&address, &pfn) in addresses.iter().zip(pfns) {
        result = validate_page_before_insert(ctx, &vma, pfn);
        if result == 0 {
            result = insert_page_into_pte_locked(ctx, mm, &vma, address, pfn);
        }
        if result < 0 {
            break;
        }
    }
    ctx.ptl_unlock(mm, vpn);
    let (first, count) = (addresses[0], addresses.len());
    ctx.event("vm_insert_pages", "insert_pages", |_| {
        format!("{count} page(s) from {first:#x}: {}", errno_or_ok(result))
    });
    result
}

/// vm_insert_page()'s prologue: the address must be inside the VMA; a VMA that is not yet
/// VM_MIXEDMAP becomes one (vm_flags_set(), legal under the mmap write lock).
fn vma_for_insert(ctx: &mut Ctx, mm: MmId, address: u64) -> Option<Vma> {
    let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned()?;
    if vma.flags & vm_flags::VM_MIXEDMAP != 0 {
        return Some(vma);
    }
    ctx.vma_update(mm, vma.start, |stored| {
        stored.flags |= vm_flags::VM_MIXEDMAP;
        stored.clone()
    })
}

/// mm/memory.c: remap_pfn_range() → remap_pfn_range_internal() → remap_pte_range() for the
/// part of `[from, to)` in one PTE table, under its lock. On the first call, the VMA becomes
/// VM_IO|VM_PFNMAP, and a COW mapping (which must be mapped whole) records its first pfn in
/// `vm_pgoff`, which is what lets vm_normal_page() without pte_special() tell raw pfns from
/// COWed pages.
pub fn remap_pfn_range_table(
    ctx: &mut Ctx,
    mm: MmId,
    vma_start: u64,
    from: u64,
    to: u64,
    pfn: Pfn,
    first: bool,
) -> i64 {
    if first {
        ctx.vma_update(mm, vma_start, |vma| {
            if vma.is_cow_mapping() {
                vma.pgoff = pfn;
            }
            vma.flags |= vm_flags::VM_IO | vm_flags::VM_PFNMAP;
        })
        .expect("the driver's VMA");
    }
    let vma = ctx.vmas(mm).iter().find(|v| v.start == vma_start).cloned().expect("the driver's VMA");
    ctx.ptl_lock(mm, from >> PAGE_SHIFT);
    for (index, address) in (from..to).step_by(PAGE_SIZE as usize).enumerate() {
        let vpn = address >> PAGE_SHIFT;
        // remap_pte_range(): BUG_ON(!pte_none(ptep_get(pte))).
        if !ctx.pte_load(mm, vpn).is_none() {
            ctx.violation(Violation::new(ViolationKind::KernelBug, "BUG_ON(!pte_none(ptep_get(pte)))"));
            break;
        }
        let entry = PresentPte {
            pfn: pfn + index as u64,
            write: vma.page_prot_write(),
            dirty: false,
            young: true,
            special: true,
        };
        ctx.pte_store(mm, vpn, Pte::Present(entry));
    }
    ctx.ptl_unlock(mm, from >> PAGE_SHIFT);
    ctx.event("remap_pfn_range", "remap_pte_range", |_| format!("[{from:#x}, {to:#x}) -> pfn {pfn:#x}.. (special)"));
    0
}

fn errno_or_ok(result: i64) -> String {
    if result == 0 {
        "ok".to_string()
    } else {
        errno::name(result).map_or(result.to_string(), |name| format!("-{name}"))
    }
}

/// mm/memory.c: wp_can_reuse_anon_folio() for a small folio, under the PTE lock: cheap checks,
/// a drain of the per-CPU LRU batches for a folio off the LRU (a batch holds a reference), then
/// under the folio lock the swap cache is dropped and only our mapping's reference may be
/// left. True with the folio still locked. Large folios (the mapcount-based
/// __wp_can_reuse_large_anon_folio()) are not reused by the model.
fn wp_can_reuse_anon_folio(ctx: &mut Ctx, folio: FolioId) -> bool {
    if ctx.folio_test_large(folio) || ctx.ref_load(folio) > 3 {
        return false;
    }
    if !ctx.flag_test(folio, PageFlag::Lru) {
        crate::mm::swap::lru_add_drain(ctx);
    }
    let swapcache = i32::from(ctx.flag_test(folio, PageFlag::Swapcache));
    if ctx.ref_load(folio) > 1 + swapcache || ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
        return false;
    }
    if swapcache == 1 {
        folio_free_swap(ctx, folio);
    }
    if ctx.ref_load(folio) != 1 {
        ctx.flag_store(folio, PageFlag::Locked, false);
        return false;
    }
    true
}
