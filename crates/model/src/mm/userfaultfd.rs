//! fs/userfaultfd.c and mm/userfaultfd.c: userfaultfd(2), UFFDIO_API, UFFDIO_REGISTER (missing
//! mode) and UFFDIO_MOVE: move_pages() → move_pages_pte() → move_present_pte() /
//! move_swap_pte(). Missing-fault delivery (handle_userfault()) is not modelled: a fault that
//! would need it is reported as such.

use crate::access::Ctx;
use crate::folio::{pfn_folio, FolioId, PageFlag, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO};
use crate::mm::memory::{anon_vma_prepare, vm_normal_folio};
use crate::mm::rmap::folio_move_anon_rmap;
use crate::mm::swap::folio_put;
use crate::mm::swap_state::swap_cache_get_folio;
use crate::mm::swapfile::SWAP_HAS_CACHE;
use crate::patches::Patch;
use crate::pgtable::{PresentPte, Pte};
use crate::state::{vm_flags, AnonVmaId, MmId, Userfaultfd, Vma};
use crate::thread::{errno, Flow, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// File descriptors of userfaultfds start here (0-2 are the standard streams).
pub const UFFD_FD_BASE: i64 = 3;

fn uffd_of(fd: i64) -> Option<u32> {
    u32::try_from(fd - UFFD_FD_BASE).ok()
}

/// fs/userfaultfd.c: userfaultfd(2) → new_userfaultfd(): a context for the caller's mm.
pub fn sys_userfaultfd(ctx: &mut Ctx, mm: MmId) -> i64 {
    let uffd = ctx.uffd_new(Userfaultfd { mm, initialized: false, messages: Vec::new() });
    let fd = UFFD_FD_BASE + i64::from(uffd);
    ctx.event("userfaultfd", "new_userfaultfd", |_| format!("fd {fd}"));
    fd
}

/// include/uapi/linux/userfaultfd.h: UFFD_API.
pub const UFFD_API: u64 = 0xaa;

/// fs/userfaultfd.c: userfaultfd_api(): once per context; a wrong api number fails with EINVAL
/// before the context's features are set (the cmpxchg), so a later correct call still succeeds.
pub fn userfaultfd_api(ctx: &mut Ctx, fd: i64, api: u64) -> i64 {
    let Some(uffd) = uffd_of(fd) else { return -errno::EINVAL };
    let Some(mut state) = ctx.uffd_load(uffd) else { return -errno::EINVAL };
    let result = if api != UFFD_API || state.initialized {
        -errno::EINVAL
    } else {
        state.initialized = true;
        ctx.uffd_store(uffd, state);
        0
    };
    ctx.event("userfaultfd_api", "UFFDIO_API", |_| format!("fd {fd}: {result}"));
    result
}

/// fs/userfaultfd.c: userfaultfd_read() → userfaultfd_ctx_read(): the oldest pending
/// UFFD_EVENT_PAGEFAULT message (the caller slept until there was one).
pub fn userfaultfd_read(ctx: &mut Ctx, fd: i64) -> i64 {
    let Some(uffd) = uffd_of(fd) else { return -errno::EINVAL };
    let Some(mut state) = ctx.uffd_load(uffd) else { return -errno::EINVAL };
    if state.messages.is_empty() {
        return -errno::EAGAIN;
    }
    let address = state.messages.remove(0);
    ctx.uffd_store(uffd, state);
    ctx.event("userfaultfd_read", "UFFD_EVENT_PAGEFAULT", |_| format!("fd {fd}: fault at {address:#x}"));
    address as i64
}

/// fs/userfaultfd.c: validate_unaligned_range(): a non-zero multiple of the page size, inside
/// TASK_SIZE, not wrapping; validate_range() also wants `start` page-aligned.
fn range_valid(start: u64, length: u64, start_aligned: bool) -> bool {
    let task_size = crate::mm::mmap::TASK_SIZE;
    (!start_aligned || start.is_multiple_of(PAGE_SIZE))
        && length.is_multiple_of(PAGE_SIZE)
        && length != 0
        && start < task_size
        && length <= task_size - start
}

/// The mm a userfaultfd acts on (`ctx->mm`, the mm of the process that created it, whoever
/// makes the ioctl), for the scheduler: `fallback` when the fd names no context.
pub fn uffd_mm(k: &crate::state::Kernel, fd: i64, fallback: MmId) -> MmId {
    uffd_of(fd).and_then(|uffd| k.uffds.get(uffd as usize)).map_or(fallback, |state| state.mm)
}

/// fs/userfaultfd.c: userfaultfd_register() in missing mode (the scenario's length rounded up
/// to pages, as the live runner passes it), on `ctx->mm` (whichever process makes the ioctl),
/// under mmap_write_lock(): some VMA must meet the range ("vma = vma_find(&vmi, end); if (!vma)":
/// -EINVAL; holes between VMAs are allowed), every one must be anonymous (vma_can_userfault():
/// -EINVAL) and not registered with another userfaultfd ("cur->vm_userfaultfd_ctx.ctx != ctx":
/// -EBUSY), checked VMA by VMA in order; VMAs are split at the range's ends.
pub fn userfaultfd_register(ctx: &mut Ctx, fd: i64, start: u64, length: u64) -> i64 {
    let Some(uffd) = uffd_of(fd) else { return -errno::EINVAL };
    let Some(state) = ctx.uffd_load(uffd).filter(|u| u.initialized) else { return -errno::EINVAL };
    let length = crate::mm::mmap::page_align(length);
    if !range_valid(start, length, true) {
        return -errno::EINVAL;
    }
    let (mm, end) = (state.mm, start + length);
    ctx.mmap_write_lock(mm);
    let vmas = ctx.vmas(mm).to_vec();
    let in_range: Vec<&Vma> = vmas.iter().filter(|v| v.start < end && start < v.end).collect();
    let refused = in_range.iter().find_map(|v| {
        if !v.is_anonymous() {
            Some(-errno::EINVAL)
        } else if v.uffd.is_some_and(|other| other != uffd) {
            Some(-errno::EBUSY)
        } else {
            None
        }
    });
    let result = match refused {
        _ if in_range.is_empty() => -errno::EINVAL,
        Some(error) => error,
        None => {
            ctx.vma_modify(mm, start, end, |vma| vma.uffd = Some(uffd));
            0
        }
    };
    ctx.mmap_write_unlock(mm);
    ctx.event("userfaultfd_register", "UFFDIO_REGISTER", |_| format!("[{start:#x}, {end:#x}) missing: {result}"));
    result
}

/// What move_pages_pte() keeps across `goto retry`: src_folio (referenced, and locked from its
/// folio lock on), the PTE it was found at (src_folio_pte) and src_anon_vma once write-locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SrcFolio {
    pub folio: FolioId,
    pub pte: Pte,
    pub anon_vma: Option<AnonVmaId>,
}

/// The swap entry orig_src_pte holds on the swap path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwapEntry {
    pub offset: u32,
    pub exclusive: bool,
}

impl SwapEntry {
    fn pte(self) -> Pte {
        Pte::Swap { offset: self.offset, exclusive: self.exclusive }
    }
}

/// move_pages_pte()'s steps, each with the locals it needs (`held`: what the retry kept;
/// `present` / `swap`: orig_src_pte on that path). orig_dst_pte is none past DstPte (anything
/// else is -EEXIST there), so the steps after it compare the destination with none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MoveStage {
    Lock,
    /// `retry:` the destination PTE.
    DstPte {
        held: Option<SrcFolio>,
    },
    SrcPte {
        held: Option<SrcFolio>,
    },
    PresentPin {
        present: PresentPte,
    },
    PresentFolioLock {
        held: SrcFolio,
    },
    /// split_folio() of a large src_folio, then `goto retry`.
    SplitFolio {
        held: SrcFolio,
    },
    SplitDone {
        held: SrcFolio,
    },
    AnonVma {
        held: SrcFolio,
        present: PresentPte,
    },
    AnonVmaLock {
        held: SrcFolio,
    },
    MovePresent {
        held: Option<SrcFolio>,
        present: PresentPte,
    },
    SwapLookup {
        swap: SwapEntry,
    },
    SwapTrylock {
        held: SrcFolio,
        swap: SwapEntry,
    },
    SwapFolioLock {
        held: SrcFolio,
    },
    MoveSwap {
        held: Option<SrcFolio>,
        swap: SwapEntry,
    },
    /// `out:` with move_pages_pte()'s result.
    Out {
        err: i64,
        held: Option<SrcFolio>,
    },
    Unlock {
        err: i64,
    },
}

/// UFFDIO_MOVE: mm/userfaultfd.c move_pages(), one page per move_pages_pte() call, each split
/// into steps at its locks and lockless reads as the kernel takes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MovePages {
    pub mm: MmId,
    pub fd: i64,
    pub dst_start: u64,
    pub src_start: u64,
    pub length: u64,
    pub allow_src_holes: bool,
    pub stage: MoveStage,
    pub moved: u64,
}

impl MovePages {
    pub fn new(mm: MmId, fd: i64, dst_start: u64, src_start: u64, length: u64, allow_src_holes: bool) -> Self {
        MovePages { mm, fd, dst_start, src_start, length, allow_src_holes, stage: MoveStage::Lock, moved: 0 }
    }

    fn dst_addr(&self) -> u64 {
        self.dst_start + self.moved
    }

    fn src_addr(&self) -> u64 {
        self.src_start + self.moved
    }

    fn vma(&self, ctx: &mut Ctx, address: u64) -> Vma {
        ctx.vmas(self.mm).iter().find(|v| v.contains(address)).cloned().expect("checked under mmap_lock")
    }

    /// uffd_move_lock() (the mmap_lock fallback), then move_pages()'s checks and
    /// validate_move_areas(); find_vma_and_prepare_anon() prepares the destination's anon_vma.
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        ctx.mmap_read_lock(self.mm);
        let err = self.validate(ctx);
        let (dst, src, length) = (self.dst_start, self.src_start, self.length);
        ctx.event("move_pages", "uffd_move_lock", |_| {
            format!(
                "UFFDIO_MOVE {length:#x} bytes {src:#x} -> {dst:#x}{}",
                if err < 0 { format!(": {err}") } else { String::new() }
            )
        });
        if err < 0 {
            return Flow::goto(&mut self.stage, MoveStage::Unlock { err });
        }
        Flow::goto(&mut self.stage, MoveStage::DstPte { held: None })
    }

    fn validate(&mut self, ctx: &mut Ctx) -> i64 {
        let Some(uffd) = uffd_of(self.fd) else { return -errno::EINVAL };
        let Some(state) = ctx.uffd_load(uffd) else { return -errno::EINVAL };
        let (dst, src, length) = (self.dst_start, self.src_start, self.length);
        if !state.initialized || state.mm != self.mm || (dst | src | length) & (PAGE_SIZE - 1) != 0 || length == 0 {
            return -errno::EINVAL;
        }
        let vmas = ctx.vmas(self.mm).to_vec();
        let (Some(src_vma), Some(dst_vma)) =
            (vmas.iter().find(|v| v.contains(src)).cloned(), vmas.iter().find(|v| v.contains(dst)).cloned())
        else {
            return -errno::ENOENT;
        };
        if src_vma.flags & vm_flags::VM_SHARED != 0 || src + length > src_vma.end {
            return -errno::EINVAL;
        }
        if dst_vma.flags & vm_flags::VM_SHARED != 0 || dst + length > dst_vma.end {
            return -errno::EINVAL;
        }
        // validate_move_areas().
        let access = vm_flags::VM_READ | vm_flags::VM_WRITE | vm_flags::VM_EXEC;
        let movable = |v: &Vma| {
            v.flags & (vm_flags::VM_PFNMAP | vm_flags::VM_IO | vm_flags::VM_MIXEDMAP) == 0 && v.is_anonymous()
        };
        if src_vma.flags & access != dst_vma.flags & access
            || src_vma.flags & vm_flags::VM_WRITE == 0
            || !movable(&src_vma)
            || !movable(&dst_vma)
            || dst_vma.uffd != Some(uffd)
        {
            return -errno::EINVAL;
        }
        anon_vma_prepare(ctx, self.mm, dst);
        0
    }

    /// "spin_lock(dst_ptl); orig_dst_pte = ptep_get(dst_pte); spin_unlock(dst_ptl);"
    fn dst_pte(&mut self, ctx: &mut Ctx, held: Option<SrcFolio>) -> Flow {
        if held.is_none() {
            if let Some(flow) = self.huge_pmds(ctx) {
                return flow;
            }
        }
        let (mm, vpn) = (self.mm, self.dst_addr() >> PAGE_SHIFT);
        ctx.ptl_lock(mm, vpn);
        let orig_dst_pte = ctx.pte_load(mm, vpn);
        ctx.ptl_unlock(mm, vpn);
        let address = self.dst_addr();
        ctx.event("move_pages_pte", "ptep_get dst", |_| format!("{address:#x}: PTE {}", orig_dst_pte.describe()));
        if !orig_dst_pte.is_none() {
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EEXIST, held });
        }
        Flow::goto(&mut self.stage, MoveStage::SrcPte { held })
    }

    /// The source PTE, read the same way, decides the path.
    fn src_pte(&mut self, ctx: &mut Ctx, held: Option<SrcFolio>) -> Flow {
        let (mm, vpn) = (self.mm, self.src_addr() >> PAGE_SHIFT);
        ctx.ptl_lock(mm, vpn);
        let orig_src_pte = ctx.pte_load(mm, vpn);
        ctx.ptl_unlock(mm, vpn);
        let (address, pte) = (self.src_addr(), orig_src_pte);
        ctx.event("move_pages_pte", "ptep_get src", |_| format!("{address:#x}: PTE {}", pte.describe()));
        if pte.is_none() {
            return Flow::goto(
                &mut self.stage,
                MoveStage::Out { err: if self.allow_src_holes { 0 } else { -errno::ENOENT }, held },
            );
        }
        // "If PTE changed after we locked the folio them start over".
        if held.is_some_and(|held| held.pte != pte) {
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
        }
        let next = match (pte, held) {
            (Pte::Present(present), _) if pfn_folio(present.pfn) == ZERO_FOLIO => {
                MoveStage::MovePresent { held, present }
            }
            (Pte::Present(present), None) => MoveStage::PresentPin { present },
            (Pte::Present(present), Some(held)) => MoveStage::AnonVma { held, present },
            (Pte::Swap { offset, exclusive }, _) => {
                // Before c50f8e6053b0 move_swap_pte() checked this itself: the same outcome.
                if !exclusive {
                    return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held });
                }
                let swap = SwapEntry { offset, exclusive };
                if ctx.patched(Patch::UffdMoveSwapcache) && held.is_none() {
                    MoveStage::SwapLookup { swap }
                } else {
                    MoveStage::MoveSwap { held, swap }
                }
            }
            (Pte::Migration { .. }, _) => {
                ctx.violation(crate::violation::Violation::new(
                    crate::violation::ViolationKind::Invariant,
                    "not modelled: UFFDIO_MOVE meeting a migration entry (migration_entry_wait)",
                ));
                return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
            }
            (Pte::None, _) => unreachable!("handled above"),
        };
        Flow::goto(&mut self.stage, next)
    }

    /// "Pin the page while holding the lock to be sure the page isn't freed under us."
    fn present_pin(&mut self, ctx: &mut Ctx, present: PresentPte) -> Flow {
        let (mm, vpn) = (self.mm, self.src_addr() >> PAGE_SHIFT);
        ctx.ptl_lock(mm, vpn);
        if ctx.pte_load(mm, vpn) != Pte::Present(present) {
            ctx.ptl_unlock(mm, vpn);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held: None });
        }
        let folio = vm_normal_folio(present);
        let exclusive = folio.is_some_and(|f| ctx.anon_exclusive_load(f, 0));
        let Some(folio) = folio.filter(|_| exclusive) else {
            ctx.ptl_unlock(mm, vpn);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held: None });
        };
        let locked = !ctx.flag_test_and_store(folio, PageFlag::Locked, true);
        // 37b338eed105: "We avoid waiting for folio lock with a raised refcount for large
        // folios because extra refcounts will result in split_folio() failing later".
        if !locked && ctx.folio_test_large(folio) && ctx.patched(Patch::UffdMoveLargeFolioTrylock) {
            ctx.ptl_unlock(mm, vpn);
            ctx.event("move_pages_pte", "folio_trylock", |_| format!("large folio {folio} busy: -EAGAIN"));
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held: None });
        }
        ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
        let held = SrcFolio { folio, pte: Pte::Present(present), anon_vma: None };
        ctx.ptl_unlock(mm, vpn);
        ctx.event("move_pages_pte", "folio_trylock", |_| {
            format!("folio {folio}: {}", if locked { "locked" } else { "busy, folio_lock and retry" })
        });
        if !locked {
            return Flow::goto(&mut self.stage, MoveStage::PresentFolioLock { held });
        }
        if !ctx.flag_test(folio, PageFlag::Anon) {
            ctx.warn_on_folio(true, folio, "!folio_test_anon(src_folio)");
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held: Some(held) });
        }
        if ctx.folio_test_large(folio) {
            // "at this point we have src_folio locked": a large one is split_folio()ed first.
            return Flow::goto(&mut self.stage, MoveStage::SplitFolio { held });
        }
        Flow::goto(&mut self.stage, MoveStage::AnonVma { held, present })
    }

    /// "split_folio() can block": split_huge_page_to_list_to_order() with the folio locked and
    /// our reference held.
    fn split_folio(&mut self, ctx: &mut Ctx, held: SrcFolio) -> Flow {
        let folio = held.folio;
        ctx.event("move_pages_pte", "split_folio", |k| k.folio(folio).dump(folio));
        // The callee's return resumes this frame at SplitDone.
        self.stage = MoveStage::SplitDone { held };
        Flow::Call(crate::thread::Frame::SplitHugePage(crate::mm::huge_memory::SplitHugePage::new(folio)))
    }

    /// "have to reacquire the folio after it got split": unlock, put, `goto retry`.
    fn split_done(&mut self, ctx: &mut Ctx, held: SrcFolio, returned: Option<i64>) -> Flow {
        let err = returned.unwrap_or(0);
        if err < 0 {
            return Flow::goto(&mut self.stage, MoveStage::Out { err, held: Some(held) });
        }
        ctx.flag_store(held.folio, PageFlag::Locked, false);
        folio_put(ctx, held.folio);
        Flow::goto(&mut self.stage, MoveStage::DstPte { held: None })
    }

    /// move_pages(): a PMD-mapped THP at the source is split first (split_huge_pmd()) unless
    /// the whole PMD moves onto a none PMD (move_pages_huge_pmd(), not modelled); a shared THP
    /// is -EBUSY before any split; a destination PMD fails with EEXIST.
    fn huge_pmds(&mut self, ctx: &mut Ctx) -> Option<Flow> {
        use crate::mm::huge_memory::{is_huge_zero_pmd, pmd_index, HPAGE_PMD_NR};
        let (mm, dst, src) = (self.mm, self.dst_addr(), self.src_addr());
        if ctx.pmd_load(mm, pmd_index(dst)).is_some() {
            return Some(Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EEXIST, held: None }));
        }
        let index = pmd_index(src);
        let pmd = ctx.pmd_load(mm, index)?;
        let whole = HPAGE_PMD_NR * PAGE_SIZE;
        let splits = !(src.is_multiple_of(whole) && dst.is_multiple_of(whole) && self.length - self.moved >= whole);
        if splits || !ctx.pmd_none(mm, pmd_index(dst)) {
            // "if (!is_huge_zero_folio(folio) && !PageAnonExclusive(&folio->page)) -EBUSY".
            let folio = pfn_folio(pmd.pfn);
            if !is_huge_zero_pmd(&pmd) && !ctx.anon_exclusive_load(folio, 0) {
                return Some(Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held: None }));
            }
        } else {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: UFFDIO_MOVE of a whole PMD-mapped THP (move_pages_huge_pmd)",
            ));
            return Some(Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held: None }));
        }
        let first = index * crate::pgtable::PTRS_PER_PTE;
        ctx.ptl_lock(mm, first);
        if is_huge_zero_pmd(&pmd) {
            crate::mm::huge_memory::__split_huge_zero_page_pmd(ctx, mm, index, pmd);
        } else {
            crate::mm::huge_memory::__split_huge_pmd_locked(ctx, mm, index, pmd);
        }
        ctx.ptl_unlock(mm, first);
        ctx.event("move_pages", "split_huge_pmd", |_| format!("PMD {:#x} -> 512 PTEs", first << PAGE_SHIFT));
        Some(Flow::Continue)
    }

    /// folio_lock() after a failed trylock, then `goto retry`.
    fn folio_lock_and_retry(&mut self, ctx: &mut Ctx, held: SrcFolio) -> Flow {
        let folio = held.folio;
        ctx.flag_store(folio, PageFlag::Locked, true);
        ctx.event("move_pages_pte", "folio_lock", |_| format!("folio {folio}: retry"));
        Flow::goto(&mut self.stage, MoveStage::DstPte { held: Some(held) })
    }

    /// folio_get_anon_vma() and anon_vma_trylock_write(): "folio_referenced walks the anon_vma
    /// chain without the folio lock".
    fn anon_vma(&mut self, ctx: &mut Ctx, mut held: SrcFolio, present: PresentPte) -> Flow {
        if held.anon_vma.is_some() {
            return Flow::goto(&mut self.stage, MoveStage::MovePresent { held: Some(held), present });
        }
        let (mapping, _) = ctx.mapping_load(held.folio);
        let mapped = ctx.mapcount_load(held.folio) > 0;
        let crate::folio::Mapping::Anon(anon_vma) = mapping else {
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held: Some(held) });
        };
        if !mapped {
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held: Some(held) });
        }
        if !ctx.anon_vma_trylock_write(anon_vma) {
            return Flow::goto(&mut self.stage, MoveStage::AnonVmaLock { held });
        }
        held.anon_vma = Some(anon_vma);
        Flow::goto(&mut self.stage, MoveStage::MovePresent { held: Some(held), present })
    }

    /// anon_vma_lock_write() after a failed trylock, then `goto retry`.
    fn anon_vma_lock_and_retry(&mut self, ctx: &mut Ctx, mut held: SrcFolio) -> Flow {
        let crate::folio::Mapping::Anon(anon_vma) = ctx.mapping_load(held.folio).0 else {
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held: Some(held) });
        };
        ctx.anon_vma_lock_write(anon_vma);
        held.anon_vma = Some(anon_vma);
        Flow::goto(&mut self.stage, MoveStage::DstPte { held: Some(held) })
    }

    /// double_pt_lock() of both PTE tables: (dst vpn, src vpn).
    fn double_pt_lock(&self, ctx: &mut Ctx) -> (u64, u64) {
        let (dst, src) = (self.dst_addr() >> PAGE_SHIFT, self.src_addr() >> PAGE_SHIFT);
        let (first, second) = if dst <= src { (dst, src) } else { (src, dst) };
        ctx.ptl_lock(self.mm, first);
        if crate::pgtable::pte_table(first) != crate::pgtable::pte_table(second) {
            ctx.ptl_lock(self.mm, second);
        }
        (dst, src)
    }

    fn double_pt_unlock(&self, ctx: &mut Ctx, (dst, src): (u64, u64)) {
        ctx.ptl_unlock(self.mm, src);
        if crate::pgtable::pte_table(dst) != crate::pgtable::pte_table(src) {
            ctx.ptl_unlock(self.mm, dst);
        }
    }

    /// "if (!pte_same(ptep_get(src_pte), orig_src_pte) || !pte_same(ptep_get(dst_pte),
    /// orig_dst_pte))": orig_dst_pte is none here.
    fn ptes_stable(&self, ctx: &mut Ctx, (dst, src): (u64, u64), orig_src_pte: Pte) -> bool {
        ctx.pte_load(self.mm, src) == orig_src_pte && ctx.pte_load(self.mm, dst) == Pte::None
    }

    /// move_present_pte() (and move_zeropage_pte() for the zero page) under both PTE locks.
    fn move_present(&mut self, ctx: &mut Ctx, held: Option<SrcFolio>, present: PresentPte) -> Flow {
        let vpns = self.double_pt_lock(ctx);
        if !self.ptes_stable(ctx, vpns, Pte::Present(present)) {
            self.double_pt_unlock(ctx, vpns);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
        }
        let (dst_addr, src_addr) = (self.dst_addr(), self.src_addr());
        let entry = match held {
            None => present,
            Some(SrcFolio { folio, .. }) => {
                let pinned = crate::mm::gup::folio_maybe_dma_pinned(ctx, folio);
                if pinned || !ctx.anon_exclusive_load(folio, 0) {
                    self.double_pt_unlock(ctx, vpns);
                    return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held });
                }
                let dst_vma = self.vma(ctx, dst_addr);
                folio_move_anon_rmap(ctx, folio, &dst_vma);
                let (mapping, _) = ctx.mapping_load(folio);
                ctx.mapping_store(folio, mapping, dst_vma.linear_page_index(dst_addr));
                // The destination PTE is made from vm_page_prot (young) and writable; before
                // 75cb1cca2c88 (6.15) "Follow mremap() behavior and treat the entry dirty".
                let dirty = present.dirty || !ctx.patched(Patch::UffdMoveKeepDirty);
                PresentPte { write: true, dirty, young: true, ..present }
            }
        };
        ctx.pte_get_and_clear(self.mm, vpns.1);
        ctx.pte_store(self.mm, vpns.0, Pte::Present(entry));
        self.double_pt_unlock(ctx, vpns);
        let what = if held.is_some() { "move_present_pte" } else { "move_zeropage_pte" };
        ctx.event("move_pages_pte", what, |_| {
            format!("{src_addr:#x} -> {dst_addr:#x}: PTE {}", Pte::Present(entry).describe())
        });
        Flow::goto(&mut self.stage, MoveStage::Out { err: 0, held })
    }

    /// c50f8e6053b0: "Verify the existence of the swapcache": a lockless lookup with a reference.
    fn swap_lookup(&mut self, ctx: &mut Ctx, swap: SwapEntry) -> Flow {
        let offset = swap.offset;
        let folio = swap_cache_get_folio(ctx, offset);
        ctx.event("move_pages_pte", "filemap_get_folio", |_| match folio {
            Some(f) => format!("swap entry {offset:#x}: swap cache folio {f}"),
            None => format!("swap entry {offset:#x}: not in the swap cache"),
        });
        let Some(folio) = folio else {
            return Flow::goto(&mut self.stage, MoveStage::MoveSwap { held: None, swap });
        };
        // "For large folios, return -EBUSY immediately, as split_folio() also returns -EBUSY
        // when attempting to split unmapped large folios in the swapcache."
        if ctx.folio_test_large(folio) {
            folio_put(ctx, folio);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EBUSY, held: None });
        }
        let held = SrcFolio { folio, pte: swap.pte(), anon_vma: None };
        Flow::goto(&mut self.stage, MoveStage::SwapTrylock { held, swap })
    }

    /// folio_trylock() of the swap cache folio.
    fn swap_trylock(&mut self, ctx: &mut Ctx, held: SrcFolio, swap: SwapEntry) -> Flow {
        let folio = held.folio;
        if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
            ctx.event("move_pages_pte", "folio_trylock", |_| format!("folio {folio} busy: folio_lock and retry"));
            return Flow::goto(&mut self.stage, MoveStage::SwapFolioLock { held });
        }
        Flow::goto(&mut self.stage, MoveStage::MoveSwap { held: Some(held), swap })
    }

    /// move_swap_pte(), in the form of the kernel selected.
    fn move_swap(&mut self, ctx: &mut Ctx, held: Option<SrcFolio>, swap: SwapEntry) -> Flow {
        let offset = swap.offset;
        let race_fix = ctx.patched(Patch::UffdMoveSwapcacheRace);
        // 0ea148a79919: "Check if the folio still belongs to the target swap entry after
        // acquiring the lock."
        if let Some(SrcFolio { folio, .. }) = held.filter(|_| race_fix) {
            let same = ctx.flag_test(folio, PageFlag::Swapcache) && ctx.folio_swap_load(folio) == Some(offset);
            if !same {
                return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
            }
        }
        let vpns = self.double_pt_lock(ctx);
        if !self.ptes_stable(ctx, vpns, swap.pte()) {
            self.double_pt_unlock(ctx, vpns);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
        }
        let dst_addr = self.dst_addr();
        if let Some(SrcFolio { folio, .. }) = held {
            // "The src_folio resides in the swapcache, requiring an update to its index and
            // mapping to align with the dst_vma".
            let dst_vma = self.vma(ctx, dst_addr);
            folio_move_anon_rmap(ctx, folio, &dst_vma);
            let (mapping, _) = ctx.mapping_load(folio);
            ctx.mapping_store(folio, mapping, dst_vma.linear_page_index(dst_addr));
        } else if race_fix && ctx.swap_map_load(offset) & SWAP_HAS_CACHE != 0 {
            self.double_pt_unlock(ctx, vpns);
            return Flow::goto(&mut self.stage, MoveStage::Out { err: -errno::EAGAIN, held });
        }
        let pte = ctx.pte_get_and_clear(self.mm, vpns.1);
        ctx.pte_store(self.mm, vpns.0, pte);
        self.double_pt_unlock(ctx, vpns);
        let (src_addr, folio) = (self.src_addr(), held.map(|held| held.folio));
        ctx.event("move_swap_pte", "set_pte_at", |_| {
            format!(
                "{src_addr:#x} -> {dst_addr:#x}: {}{}",
                pte.describe(),
                folio.map_or(String::new(), |f| format!(", folio {f} moved to the destination's anon_vma and index"))
            )
        });
        Flow::goto(&mut self.stage, MoveStage::Out { err: 0, held })
    }

    /// `out:` of move_pages_pte(), then move_pages()'s loop: -EAGAIN retries the same page.
    fn finish_page(&mut self, ctx: &mut Ctx, err: i64, held: Option<SrcFolio>) -> Flow {
        if let Some(held) = held {
            if let Some(anon_vma) = held.anon_vma {
                ctx.anon_vma_unlock_write(anon_vma);
            }
            ctx.flag_store(held.folio, PageFlag::Locked, false);
            folio_put(ctx, held.folio);
        }
        let next = match err {
            0 => {
                self.moved += PAGE_SIZE;
                if self.moved == self.length {
                    MoveStage::Unlock { err }
                } else {
                    MoveStage::DstPte { held: None }
                }
            }
            err if err == -errno::EAGAIN => MoveStage::DstPte { held: None },
            err => MoveStage::Unlock { err },
        };
        Flow::goto(&mut self.stage, next)
    }
}

impl KernelFunction for MovePages {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            MoveStage::Lock => self.lock(ctx),
            MoveStage::SplitFolio { held } => self.split_folio(ctx, held),
            MoveStage::SplitDone { held } => self.split_done(ctx, held, returned),
            MoveStage::DstPte { held } => self.dst_pte(ctx, held),
            MoveStage::SrcPte { held } => self.src_pte(ctx, held),
            MoveStage::PresentPin { present } => self.present_pin(ctx, present),
            MoveStage::PresentFolioLock { held } | MoveStage::SwapFolioLock { held } => {
                self.folio_lock_and_retry(ctx, held)
            }
            MoveStage::AnonVma { held, present } => self.anon_vma(ctx, held, present),
            MoveStage::AnonVmaLock { held } => self.anon_vma_lock_and_retry(ctx, held),
            MoveStage::MovePresent { held, present } => self.move_present(ctx, held, present),
            MoveStage::SwapLookup { swap } => self.swap_lookup(ctx, swap),
            MoveStage::SwapTrylock { held, swap } => self.swap_trylock(ctx, held, swap),
            MoveStage::MoveSwap { held, swap } => self.move_swap(ctx, held, swap),
            MoveStage::Out { err, held } => self.finish_page(ctx, err, held),
            MoveStage::Unlock { err } => {
                ctx.mmap_read_unlock(self.mm);
                let result = if self.moved > 0 { self.moved as i64 } else { err };
                ctx.event("move_pages", "uffd_move_unlock", |_| format!("returns {result}"));
                Flow::Return(result)
            }
        }
    }

    fn wait(&self, k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        let (dst, src) = (self.dst_addr() >> PAGE_SHIFT, self.src_addr() >> PAGE_SHIFT);
        match self.stage {
            MoveStage::Lock => Wait::MmapRead(self.mm),
            MoveStage::DstPte { held: None } if src_pmd_mapped(k, self.mm, src) => {
                Wait::PteLocks((self.mm, dst), (self.mm, src))
            }
            MoveStage::DstPte { .. } => Wait::PteLock(self.mm, dst),
            MoveStage::SrcPte { .. } | MoveStage::PresentPin { .. } => Wait::PteLock(self.mm, src),
            MoveStage::PresentFolioLock { held } | MoveStage::SwapFolioLock { held } => Wait::FolioLock(held.folio),
            MoveStage::AnonVmaLock { held } => match k.folio(held.folio).mapping {
                crate::folio::Mapping::Anon(anon_vma) => Wait::AnonVmaWrite(anon_vma),
                _ => Wait::Nothing,
            },
            MoveStage::MovePresent { .. } | MoveStage::MoveSwap { .. } => {
                Wait::PteLocks((self.mm, dst), (self.mm, src))
            }
            _ => Wait::Nothing,
        }
    }
}

/// The userfaultfd calls that run in one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UffdCall {
    Userfaultfd,
    Api {
        fd: i64,
        api: u64,
    },
    Register {
        fd: i64,
        start: u64,
        length: u64,
    },
    /// read(2): the next page-fault message's address.
    Read {
        fd: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UffdSyscall {
    pub mm: MmId,
    pub call: UffdCall,
}

impl KernelFunction for UffdSyscall {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        Flow::Return(match self.call {
            UffdCall::Userfaultfd => sys_userfaultfd(ctx, self.mm),
            UffdCall::Api { fd, api } => userfaultfd_api(ctx, fd, api),
            UffdCall::Register { fd, start, length } => userfaultfd_register(ctx, fd, start, length),
            UffdCall::Read { fd } => userfaultfd_read(ctx, fd),
        })
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.call {
            UffdCall::Register { fd, .. } => Wait::MmapWrite(uffd_mm(_k, fd, self.mm)),
            UffdCall::Read { fd } => match uffd_of(fd) {
                Some(uffd) if (uffd as usize) < _k.uffds.len() => Wait::UffdMessage(uffd),
                _ => Wait::Nothing,
            },
            _ => Wait::Nothing,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MfillStage {
    Lock,
    Page,
    /// mfill_atomic()'s `out:` with its error (the pages done are the result if any).
    Unlock {
        err: i64,
    },
}

/// UFFDIO_COPY (`src` Some) and UFFDIO_ZEROPAGE: mm/userfaultfd.c mfill_atomic(), one page per
/// step (mfill_atomic_pte_copy() / mfill_atomic_pte_zeropage() → mfill_atomic_install_pte()
/// under the PTE lock), then the sleeping faults wake (they wait for the PTE).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MfillAtomic {
    /// The mm filled: the caller's until the lock step reads `ctx->mm`.
    pub mm: MmId,
    /// The caller's mm, which copy_from_user() reads the source from.
    pub src_mm: MmId,
    pub fd: i64,
    pub dst: u64,
    pub src: Option<u64>,
    pub length: u64,
    pub done: u64,
    pub stage: MfillStage,
}

impl MfillAtomic {
    pub fn new(mm: MmId, fd: i64, dst: u64, src: Option<u64>, length: u64) -> Self {
        MfillAtomic { mm, src_mm: mm, fd, dst, src, length, done: 0, stage: MfillStage::Lock }
    }

    /// fs/userfaultfd.c: userfaultfd_copy() / userfaultfd_zeropage(): validate_unaligned_range()
    /// of the source, validate_range() of the destination (-EINVAL); then mfill_atomic() on
    /// `ctx->mm`, whichever process makes the ioctl.
    fn args_valid(&self) -> bool {
        self.src.is_none_or(|src| range_valid(src, self.length, false)) && range_valid(self.dst, self.length, true)
    }

    /// uffd_mfill_lock() → validate_dst_vma(): the destination must lie in one VMA registered
    /// with a userfaultfd ("if (!dst_vma->vm_userfaultfd_ctx.ctx)": any context, not only this
    /// one). The wake after the fill is modelled by the PTE (a sleeping fault waits for it), not
    /// by the context whose queue it sleeps on.
    fn lock(&mut self, ctx: &mut Ctx) -> Flow {
        let uffd = uffd_of(self.fd);
        let state = uffd.and_then(|u| ctx.uffd_load(u));
        if let Some(state) = &state {
            self.mm = state.mm;
        }
        ctx.mmap_read_lock(self.mm);
        let (dst, length) = (self.dst, self.length);
        let registered = ctx.vmas(self.mm).iter().any(|v| v.contains(dst) && length <= v.end - dst && v.uffd.is_some());
        let mut err = if state.is_none() || !self.args_valid() {
            -errno::EINVAL
        } else if !registered {
            -errno::ENOENT
        } else {
            0
        };
        if err == 0 && self.src.is_some_and(|src| !src.is_multiple_of(PAGE_SIZE)) {
            ctx.violation(crate::violation::Violation::new(
                crate::violation::ViolationKind::Invariant,
                "not modelled: UFFDIO_COPY from an unaligned source",
            ));
            err = -errno::EINVAL;
        }
        if err != 0 {
            return Flow::goto(&mut self.stage, MfillStage::Unlock { err });
        }
        anon_vma_prepare(ctx, self.mm, dst);
        Flow::goto(&mut self.stage, MfillStage::Page)
    }

    /// copy_from_user() of the source page through the caller's page tables (a source that is
    /// not mapped fails: the retry with faults enabled is not modelled), or the zero page.
    fn source(&self, ctx: &mut Ctx) -> Result<Option<crate::folio::PageData>, i64> {
        let Some(src) = self.src else { return Ok(None) };
        let address = src + self.done;
        let vpn = address >> PAGE_SHIFT;
        let huge = ctx.pmd_load(self.src_mm, crate::mm::huge_memory::pmd_index(address));
        let pfn = match (huge, ctx.pte_load(self.src_mm, vpn)) {
            (Some(pmd), _) => pmd.pfn + (vpn % crate::pgtable::PTRS_PER_PTE),
            (None, Pte::Present(present)) => present.pfn,
            _ => return Err(-errno::EFAULT),
        };
        let (folio, page) = ctx.page_folio_load(pfn);
        Ok(Some(ctx.data_load(folio, page)))
    }

    /// One page: mfill_atomic_pte_copy() / mfill_atomic_pte_zeropage() →
    /// mfill_atomic_install_pte() under the PTE lock.
    fn page(&mut self, ctx: &mut Ctx) -> Flow {
        let (mm, address) = (self.mm, self.dst + self.done);
        let vpn = address >> PAGE_SHIFT;
        let data = match self.source(ctx) {
            Ok(data) => data,
            Err(err) => return Flow::goto(&mut self.stage, MfillStage::Unlock { err }),
        };
        let folio = data.map(|data| {
            let folio = ctx.alloc_folio(0);
            ctx.data_store(folio, 0, data);
            ctx.flag_store(folio, PageFlag::Uptodate, true);
            folio
        });
        let vma = ctx.vmas(mm).iter().find(|v| v.contains(address)).cloned().expect("checked under mmap_lock");
        ctx.ptl_lock(mm, vpn);
        if !ctx.pte_load(mm, vpn).is_none() {
            ctx.ptl_unlock(mm, vpn);
            if let Some(folio) = folio {
                folio_put(ctx, folio);
            }
            ctx.event("mfill_atomic_install_pte", "pte_none", |_| format!("{address:#x}: -EEXIST"));
            return Flow::goto(&mut self.stage, MfillStage::Unlock { err: -errno::EEXIST });
        }
        let entry = match folio {
            Some(folio) => {
                crate::mm::rmap::folio_add_new_anon_rmap(ctx, folio, mm, address);
                crate::mm::swap::folio_add_lru(ctx, folio);
                ctx.rss_add(mm, true, 1);
                let write = vma.flags & vm_flags::VM_WRITE != 0;
                PresentPte { pfn: crate::folio::folio_pfn(folio, 0), write, dirty: true, young: true, special: false }
            }
            None => PresentPte {
                pfn: crate::folio::folio_pfn(ZERO_FOLIO, 0),
                write: false,
                dirty: false,
                young: true,
                special: true,
            },
        };
        ctx.pte_store(mm, vpn, Pte::Present(entry));
        ctx.ptl_unlock(mm, vpn);
        let what = if folio.is_some() { "mfill_atomic_pte_copy" } else { "mfill_atomic_pte_zeropage" };
        ctx.event(what, "set_pte_at", |_| format!("{address:#x} -> {}", Pte::Present(entry).describe()));
        self.done += PAGE_SIZE;
        if self.done == self.length {
            return Flow::goto(&mut self.stage, MfillStage::Unlock { err: 0 });
        }
        Flow::Continue
    }
}

impl KernelFunction for MfillAtomic {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            MfillStage::Lock => self.lock(ctx),
            MfillStage::Page => self.page(ctx),
            MfillStage::Unlock { err } => {
                ctx.mmap_read_unlock(self.mm);
                let result = if self.done > 0 { self.done as i64 } else { err };
                ctx.event("mfill_atomic", "mmap_read_unlock", |_| format!("returns {result}"));
                Flow::Return(result)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            MfillStage::Lock => Wait::MmapRead(uffd_mm(_k, self.fd, self.mm)),
            MfillStage::Page => Wait::PteLock(self.mm, (self.dst + self.done) >> PAGE_SHIFT),
            MfillStage::Unlock { .. } => Wait::Nothing,
        }
    }
}

/// Whether a PMD maps the page at `vpn` (move_pages() splits it before the PTE path).
fn src_pmd_mapped(k: &crate::state::Kernel, mm: MmId, vpn: u64) -> bool {
    let index = vpn / crate::pgtable::PTRS_PER_PTE;
    k.mms[mm as usize].pmds.iter().any(|e| e.0 == index)
}
