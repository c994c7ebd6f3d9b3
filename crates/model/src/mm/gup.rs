//! mm/gup.c: get_user_pages and pin_user_pages, fast (lockless) and slow (mmap_lock and PTE
//! lock) paths. The pages found are appended to the calling thread's `pages` array.

use crate::access::{Ctx, Ordering};
use crate::folio::{
    folio_pfn, pfn_folio, pfn_page, FolioId, PageFlag, GUP_PIN_COUNTING_BIAS, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO,
};
use crate::mm::memory::{vm_normal_folio, Fault, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV};
use crate::mm::swap::{folio_mark_dirty, folio_put_refs};
use crate::pgtable::Pte;
use crate::state::{vm_flags, MmId};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// The FOLL_* flags the modelled callers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupFlags {
    pub write: bool,
    /// FOLL_PIN (else FOLL_GET).
    pub pin: bool,
}

impl GupFlags {
    pub fn describe(self) -> &'static str {
        match (self.write, self.pin) {
            (true, true) => "FOLL_PIN|FOLL_WRITE",
            (false, true) => "FOLL_PIN",
            (true, false) => "FOLL_GET|FOLL_WRITE",
            (false, false) => "FOLL_GET",
        }
    }
}

/// mm/gup.c: try_grab_folio() (slow path, under the PTE lock): one atomic add of the whole
/// reference (GUP_PIN_COUNTING_BIAS for a pin on a small folio).
pub(crate) fn try_grab_folio(ctx: &mut Ctx, folio: FolioId, flags: GupFlags) {
    if folio == ZERO_FOLIO {
        return;
    }
    if flags.pin {
        ctx.ref_add(folio, GUP_PIN_COUNTING_BIAS, Ordering::Relaxed);
    } else {
        ctx.ref_add(folio, 1, Ordering::Relaxed);
    }
}

/// mm/gup.c: gup_put_folio(): drop what try_grab_folio*() took.
pub fn gup_put_folio(ctx: &mut Ctx, folio: FolioId, flags: GupFlags) {
    let refs = if flags.pin { GUP_PIN_COUNTING_BIAS } else { 1 };
    folio_put_refs(ctx, folio, refs);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GupFastStage {
    ReadPte,
    Grab,
    PinBias,
    Recheck,
}

/// mm/gup.c: gup_fast() → gup_fast_pte_range() (gup_pte_range() before 6.10), with interrupts
/// off and no lock: snapshot the PTE, grab a reference, re-read the PTE and back off if it
/// changed. Returns how many pages it got; the caller takes the slow path for the rest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupFast {
    pub mm: MmId,
    pub start: u64,
    pub nr_pages: u64,
    pub flags: GupFlags,
    pub index: u64,
    pub stage: GupFastStage,
    pub pte: Pte,
}

impl GupFast {
    pub fn new(mm: MmId, start: u64, nr_pages: u64, flags: GupFlags) -> Self {
        GupFast { mm, start, nr_pages, flags, index: 0, stage: GupFastStage::ReadPte, pte: Pte::None }
    }

    fn address(&self) -> u64 {
        self.start + self.index * PAGE_SIZE
    }

    fn stop(&self) -> Flow {
        Flow::Return(self.index as i64)
    }

    /// ptep_get_lockless(), then pte_access_permitted() and pte_special().
    fn read_pte(&mut self, ctx: &mut Ctx) -> Flow {
        if self.index == self.nr_pages {
            return self.stop();
        }
        let address = self.address();
        self.pte = ctx.pte_load(self.mm, address >> PAGE_SHIFT);
        let pte = self.pte;
        let usable = pte.present().filter(|p| !p.special && (!self.flags.write || p.write));
        ctx.event("gup_fast_pte_range", "ptep_get_lockless", |_| {
            format!(
                "{address:#x}: PTE {}{}",
                pte.describe(),
                if usable.is_some() { "" } else { ": fall back to the slow path" }
            )
        });
        if usable.is_none() {
            return self.stop();
        }
        self.stage = GupFastStage::Grab;
        Flow::Continue
    }

    /// try_grab_folio_fast() → try_get_folio(): folio_ref_try_add(), a fully ordered atomic
    /// that fails on a frozen (refcount 0) folio.
    fn grab(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = pfn_folio(self.pte.present().expect("checked present").pfn);
        let got = ctx.ref_add_unless_zero(folio, 1);
        let flags = self.flags;
        ctx.event("gup_fast_pte_range", "try_grab_folio_fast", |k| {
            if got {
                format!("folio {folio} refcount {} ({})", k.folio(folio).refcount, flags.describe())
            } else {
                format!("folio {folio} frozen: fall back to the slow path")
            }
        });
        if !got {
            return self.stop();
        }
        self.stage = if self.flags.pin { GupFastStage::PinBias } else { GupFastStage::Recheck };
        Flow::Continue
    }

    /// FOLL_PIN on a small folio: "folio_ref_add(folio, refs * (GUP_PIN_COUNTING_BIAS - 1))",
    /// a second atomic after the first reference.
    fn pin_bias(&mut self, ctx: &mut Ctx) -> Flow {
        let folio = pfn_folio(self.pte.present().expect("checked present").pfn);
        ctx.ref_add(folio, GUP_PIN_COUNTING_BIAS - 1, Ordering::Relaxed);
        ctx.fence(crate::access::Fence::Full);
        ctx.event("try_grab_folio_fast", "folio_ref_add pin bias", |k| {
            format!("folio {folio} refcount {}", k.folio(folio).refcount)
        });
        self.stage = GupFastStage::Recheck;
        Flow::Continue
    }

    /// "if (unlikely(pte_val(pte) != pte_val(ptep_get(ptep))))": back off if the PTE changed.
    fn recheck(&mut self, ctx: &mut Ctx) -> Flow {
        let address = self.address();
        let present = self.pte.present().expect("checked present");
        let folio = pfn_folio(present.pfn);
        let now = ctx.pte_load(self.mm, address >> PAGE_SHIFT);
        if now != self.pte {
            gup_put_folio(ctx, folio, self.flags);
            ctx.event("gup_fast_pte_range", "recheck", |_| {
                format!("{address:#x}: PTE changed to {}: put folio {folio}, slow path", now.describe())
            });
            return self.stop();
        }
        ctx.flag_store(folio, PageFlag::Referenced, true);
        ctx.k.thread_mut(ctx.thread).pages.make_mut().push(present.pfn);
        ctx.event("gup_fast_pte_range", "recheck", |_| format!("{address:#x}: PTE unchanged, got folio {folio}"));
        self.index += 1;
        self.stage = GupFastStage::ReadPte;
        Flow::Continue
    }
}

impl KernelFunction for GupFast {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            GupFastStage::ReadPte => self.read_pte(ctx),
            GupFastStage::Grab => self.grab(ctx),
            GupFastStage::PinBias => self.pin_bias(ctx),
            GupFastStage::Recheck => self.recheck(ctx),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::Nothing
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GupSlowStage {
    Lock,
    Follow,
    Faulted,
    Unlock,
}

/// mm/gup.c: __get_user_pages_locked() → __get_user_pages(): under mmap_lock, follow_page_pte()
/// under the PTE lock, faultin_page() when there is no usable PTE, and retry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GupSlow {
    pub mm: MmId,
    pub start: u64,
    pub nr_pages: u64,
    pub flags: GupFlags,
    pub index: u64,
    pub stage: GupSlowStage,
    pub result: i64,
}

impl GupSlow {
    pub fn new(mm: MmId, start: u64, nr_pages: u64, flags: GupFlags) -> Self {
        GupSlow { mm, start, nr_pages, flags, index: 0, stage: GupSlowStage::Lock, result: 0 }
    }

    fn address(&self) -> u64 {
        self.start + self.index * PAGE_SIZE
    }

    fn done(&mut self, result: i64) -> Flow {
        self.result = result;
        self.stage = GupSlowStage::Unlock;
        Flow::Continue
    }

    /// mmap_read_lock(), then gup_vma_lookup() and check_vma_flags().
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let (start, end) = (self.start, self.start + self.nr_pages * PAGE_SIZE);
        let write = self.flags.write;
        let allowed = ctx.vmas(self.mm).iter().filter(|v| v.start < end && v.end > start).all(|v| {
            v.flags & (vm_flags::VM_IO | vm_flags::VM_PFNMAP) == 0 && (!write || v.flags & vm_flags::VM_WRITE != 0)
        });
        ctx.event("__get_user_pages", "mmap_read_lock", |_| format!("[{start:#x}, {end:#x})"));
        if !allowed {
            return self.done(-errno::EFAULT);
        }
        self.stage = if self.nr_pages == 0 { GupSlowStage::Unlock } else { GupSlowStage::Follow };
        Flow::Continue
    }

    /// mm/gup.c: follow_page_pte(), one step under the PTE lock.
    fn follow(&mut self, ctx: &mut Ctx) -> Flow {
        let address = self.address();
        let vpn = address >> PAGE_SHIFT;
        if ctx.pmd_load(self.mm, crate::mm::huge_memory::pmd_index(address)).is_some() {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: GUP of a PMD-mapped THP (follow_huge_pmd)",
            ));
            return self.done(-errno::EFAULT);
        }
        if !ctx.vmas(self.mm).iter().any(|v| v.contains(address)) {
            let got = self.index as i64;
            return self.done(if got > 0 { got } else { -errno::EFAULT });
        }
        ctx.ptl_lock(self.mm, vpn);
        let pte = ctx.pte_load(self.mm, vpn);
        let page = pte.present().and_then(|p| {
            if self.flags.write && !p.write {
                return None;
            }
            // vm_normal_page() is NULL for the zero page, which a read GUP may still return.
            vm_normal_folio(p)
                .or((p.pfn == folio_pfn(ZERO_FOLIO, 0) && !self.flags.write).then_some(ZERO_FOLIO))
                .map(|f| (f, p))
        });
        let Some((folio, present)) = page else {
            ctx.ptl_unlock(self.mm, vpn);
            ctx.event("follow_page_pte", "no_page", |_| format!("{address:#x}: PTE {}: faultin_page", pte.describe()));
            self.stage = GupSlowStage::Faulted;
            return Flow::Call(Frame::Fault(Fault::new(self.mm, address, self.flags.write, false)));
        };
        try_grab_folio(ctx, folio, self.flags);
        // FOLL_TOUCH: "if ((flags & FOLL_WRITE) && !pte_dirty(pte) && !folio_test_dirty(folio))
        // folio_mark_dirty(folio)", then folio_mark_accessed().
        let mut dirtied = false;
        if folio != ZERO_FOLIO {
            if self.flags.write && !present.dirty && !ctx.flag_test(folio, PageFlag::Dirty) {
                dirtied = folio_mark_dirty(ctx, folio);
            }
            ctx.flag_store(folio, PageFlag::Referenced, true);
        }
        ctx.ptl_unlock(self.mm, vpn);
        ctx.k.thread_mut(ctx.thread).pages.make_mut().push(present.pfn);
        let flags = self.flags;
        ctx.event("follow_page_pte", "try_grab_folio", |k| {
            format!(
                "{address:#x}: folio {folio} refcount {} ({}){}",
                k.folio(folio).refcount,
                flags.describe(),
                if dirtied { ", FOLL_TOUCH: folio_mark_dirty" } else { "" }
            )
        });
        self.index += 1;
        if self.index == self.nr_pages {
            return self.done(self.index as i64);
        }
        Flow::Continue
    }

    fn faulted(&mut self, result: i64) -> Flow {
        if result & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS) != 0 {
            let got = self.index as i64;
            return self.done(if got > 0 { got } else { -errno::EFAULT });
        }
        self.stage = GupSlowStage::Follow;
        Flow::Continue
    }
}

impl KernelFunction for GupSlow {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            GupSlowStage::Lock => self.lock(ctx),
            GupSlowStage::Follow => self.follow(ctx),
            GupSlowStage::Faulted => self.faulted(returned.unwrap_or(0)),
            GupSlowStage::Unlock => {
                ctx.mmap_read_unlock(self.mm);
                ctx.event("__get_user_pages", "mmap_read_unlock", |_| String::new());
                Flow::Return(self.result)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            GupSlowStage::Lock => Wait::MmapRead(self.mm),
            GupSlowStage::Follow => Wait::PteLock(self.mm, self.address() >> PAGE_SHIFT),
            _ => Wait::Nothing,
        }
    }
}

/// The page a pfn in the `pages` array names.
pub fn page_of(pfn: crate::folio::Pfn) -> (FolioId, usize) {
    (pfn_folio(pfn), pfn_page(pfn))
}
