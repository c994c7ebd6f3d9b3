//! mm/filemap.c: the page cache of the scenario's files: lookup (filemap_get_entry()), removal
//! (__filemap_remove_folio()), the buffered read (filemap_read()) and fault-around
//! (filemap_map_pages()). Readahead, which adds folios and reads them, is mm/readahead.rs.
//!
//! Modelled: clean, order-0 page cache folios of a read-only file (faults and reclaim). Not
//! modelled: writes to the page cache (buffered writes, shared writable mappings, writeback),
//! a buffered read's batch lookup of several folios (one page per lookup here), asynchronous
//! readahead (PG_readahead marks) and the readahead state's sequential-stream detection (each
//! read starts with a fresh `file_ra_state`, as the live runner's reads do), large folios, and
//! the i_mmap tree's lock. Truncation is in mm/truncate.rs.
//! A read fault first maps what is cached around it (do_fault_around() →
//! filemap_map_pages()), then filemap_fault() (`FilemapFault`, a machine of its own that the
//! fault's frame runs: memory.rs's module doc says why) finds, reads and locks the page.

use crate::access::Ctx;
use crate::arch::x86::mm::fault::mmu_access;
use crate::folio::{folio_pfn, pfn_folio, pfn_page, FolioId, Mapping, PageFlag, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::{Fault, Vmf, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV};
use crate::mm::readahead::{get_init_ra_size, page_cache_ra, read_pages_done, RA_PAGES};
use crate::mm::swap::folio_put;
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{FileId, Kernel, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use crate::violation::{Violation, ViolationKind};
use serde::{Deserialize, Serialize};

/// What filemap_get_entry() found in a page cache slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The folio, with the reference folio_try_get() took.
    Found(FolioId),
    Missing,
    /// "if (!folio_try_get(folio)) goto repeat;": its refcount is frozen at zero while it
    /// leaves the cache.
    Frozen,
}

/// mm/filemap.c: filemap_get_entry(): xa_load() under RCU, then folio_try_get(); the reload
/// that follows it sees the same slot (one step here).
pub fn filemap_get_folio(ctx: &mut Ctx, file: FileId, index: u64) -> Lookup {
    match ctx.page_cache_load(file, index) {
        None => Lookup::Missing,
        Some(folio) if ctx.ref_add_unless_zero(folio, 1) => Lookup::Found(folio),
        Some(_) => {
            ctx.event("filemap_get_entry", "folio_try_get", |_| format!("index {index}: refcount frozen, repeat"));
            Lookup::Frozen
        }
    }
}

/// include/linux/fs.h: the VMAs in `mapping->i_mmap`: every VMA of the file, in any mm
/// (vma_interval_tree_foreach() without the interval bound). Read without i_mmap_rwsem (not
/// modelled): a file's VMAs change only under mmap_lock held for writing, in one step.
pub fn mapping_vmas(ctx: &mut Ctx, file: FileId) -> Vec<(MmId, Vma)> {
    let mut vmas = Vec::new();
    for mm in 0..ctx.mm_count() {
        vmas.extend(ctx.vmas(mm).iter().filter(|v| v.file == Some(file)).map(|v| (mm, v.clone())));
    }
    vmas
}

/// mm/filemap.c: __filemap_remove_folio() → page_cache_delete(): the slot cleared and
/// "folio->mapping = NULL" (the caller holds xa_lock and has frozen the cache's reference).
pub fn __filemap_remove_folio(ctx: &mut Ctx, folio: FolioId, file: FileId, index: u64) {
    ctx.page_cache_store(file, index, None);
    ctx.mapping_store(folio, Mapping::None, index);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReadStage {
    /// filemap_get_pages(): look the page up.
    Lookup,
    /// page_cache_sync_readahead(): a new folio for the page.
    Readahead,
    /// The read of a folio readahead added completes.
    ReadDone,
    /// filemap_update_page(): the folio is not uptodate: sleep until it is unlocked
    /// (folio_put_wait_locked()), then look it up again (AOP_TRUNCATED_PAGE).
    WaitLocked,
    /// copy_folio_to_iter(): copy_to_user(), one user page per step.
    Copy,
}

/// mm/filemap.c: filemap_read() of a buffered pread(): for each page of the range,
/// filemap_get_pages() (filemap_get_read_batch(), page_cache_sync_readahead(),
/// filemap_update_page()) and copy_folio_to_iter(), whose copy_to_user() may fault; then
/// folio_put(). Returns the bytes copied (-EFAULT if none could be).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilemapRead {
    pub mm: MmId,
    pub file: FileId,
    pub buffer: u64,
    pub length: u64,
    pub offset: u64,
    /// Bytes copied so far.
    pub done: u64,
    pub stage: ReadStage,
    /// The page cache folio being copied from (referenced).
    pub folio: Option<FolioId>,
    /// The folios readahead added whose reads are pending.
    pub ra_folios: Vec<FolioId>,
}

impl FilemapRead {
    pub fn new(mm: MmId, file: FileId, buffer: u64, length: u64, offset: u64) -> Self {
        FilemapRead {
            mm,
            file,
            buffer,
            length,
            offset,
            done: 0,
            stage: ReadStage::Lookup,
            folio: None,
            ra_folios: Vec::new(),
        }
    }

    fn index(&self) -> u64 {
        (self.offset + self.done) >> PAGE_SHIFT
    }

    /// filemap_get_pages(): "if (unlikely(iocb->ki_pos >= i_size_read(inode)))" the read
    /// ends; otherwise the page's folio, referenced and uptodate.
    fn lookup(&mut self, ctx: &mut Ctx) -> Flow {
        let end = ctx.file_size_pages(self.file) * PAGE_SIZE;
        self.length = self.length.min(end.saturating_sub(self.offset));
        // A truncation may have cut the file below what was already copied.
        if self.done >= self.length {
            return Flow::Return(self.done as i64);
        }
        let (file, index) = (self.file, self.index());
        let next = match filemap_get_folio(ctx, file, index) {
            Lookup::Found(folio) if ctx.flag_test(folio, PageFlag::Uptodate) => {
                self.folio = Some(folio);
                ctx.event("filemap_get_pages", "filemap_get_read_batch", |_| format!("index {index}: folio {folio}"));
                // filemap_read(): "When a read accesses the same folio several times, only mark
                // it as accessed the first time": every folio of the read once. The read starts
                // from last_pos = ra->prev_pos, and each pread opens the file afresh (as the
                // live runner does), so file_ra_state_init() left it at -1: the first folio is
                // marked too.
                crate::mm::swap::folio_mark_accessed(ctx, folio);
                ReadStage::Copy
            }
            Lookup::Found(folio) => {
                self.folio = Some(folio);
                ctx.event("filemap_update_page", "folio_trylock", |_| format!("folio {folio} not uptodate: wait"));
                ReadStage::WaitLocked
            }
            Lookup::Missing => {
                ctx.event("filemap_get_pages", "filemap_get_read_batch", |_| format!("index {index}: not cached"));
                ReadStage::Readahead
            }
            // A folio being frozen: look it up again.
            Lookup::Frozen => return Flow::Continue,
        };
        Flow::goto(&mut self.stage, next)
    }

    /// mm/readahead.c: page_cache_sync_ra() for the rest of the read (`req_count` pages): at
    /// the start of the file or for an oversized read ("req_count > max_pages"), the initial
    /// window get_init_ra_size() (at most `max_pages`); elsewhere, with no readahead history
    /// ("Standalone, small random read"), the request as is.
    fn readahead(&mut self, ctx: &mut Ctx) -> Flow {
        let index = self.index();
        let last_index = (self.offset + self.length).div_ceil(PAGE_SIZE);
        let request = last_index - index;
        let count = if index == 0 || request > RA_PAGES { get_init_ra_size(request, RA_PAGES) } else { request };
        self.ra_folios = page_cache_ra(ctx, "page_cache_sync_ra", self.file, index, count);
        Flow::goto(&mut self.stage, if self.ra_folios.is_empty() { ReadStage::Lookup } else { ReadStage::ReadDone })
    }

    /// copy_to_user() of this page cache page's bytes into one user page, through the MMU
    /// (arch/x86/mm/fault.rs mmu_access(): a missing or read-only entry faults, as a user write would).
    fn copy(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        let folio = self.folio.expect("looked up");
        if returned == Some(VM_FAULT_RETRY) {
            // handle_userfault() queued a message: the copy would sleep until it is resolved.
            let message = "not modelled: a buffered read into a userfaultfd-registered buffer";
            ctx.violation(crate::violation::Violation::new(crate::violation::ViolationKind::Invariant, message));
            return Flow::Return(-errno::EFAULT);
        }
        if returned.is_some_and(|r| r & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS) != 0) {
            // The uncopied rest is the short count; nothing copied is -EFAULT.
            folio_put(ctx, self.folio.take().expect("looked up"));
            ctx.event("filemap_read", "copy_folio_to_iter", |_| "fault: short read".to_string());
            return Flow::Return(if self.done == 0 { -errno::EFAULT } else { self.done as i64 });
        }
        let address = self.buffer + self.done;
        let present = match mmu_access(ctx, self.mm, address, true) {
            Ok(present) => present,
            Err(pte) => {
                ctx.event("copy_to_user", "fault", |_| format!("write {address:#x}: PTE {}", pte.describe()));
                return Flow::Call(Frame::Fault(Fault::new(self.mm, address, true, true)));
            }
        };
        let position = self.offset + self.done;
        let (from, to) = ((position % PAGE_SIZE) as usize, (address % PAGE_SIZE) as usize);
        let chunk = (PAGE_SIZE as usize - from).min(PAGE_SIZE as usize - to).min((self.length - self.done) as usize);
        let source = ctx.data_load(folio, 0);
        let (user_folio, user_page) = (pfn_folio(present.pfn), pfn_page(present.pfn));
        for (at, len, byte) in source.runs_in(from, chunk) {
            ctx.data_fill(user_folio, user_page, to + at, len, byte);
        }
        ctx.event("copy_folio_to_iter", "copy_to_user", |_| {
            format!("{chunk} bytes of folio {folio} -> {address:#x} (folio {user_folio})")
        });
        self.done += chunk as u64;
        let page_done = (self.offset + self.done).is_multiple_of(PAGE_SIZE) || self.done == self.length;
        if page_done {
            folio_put(ctx, self.folio.take().expect("looked up"));
            return Flow::goto(&mut self.stage, ReadStage::Lookup);
        }
        Flow::Continue
    }
}

impl KernelFunction for FilemapRead {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            ReadStage::Lookup => self.lookup(ctx),
            ReadStage::Readahead => self.readahead(ctx),
            ReadStage::ReadDone => {
                let folios = std::mem::take(&mut self.ra_folios);
                read_pages_done(ctx, self.file, &folios);
                Flow::goto(&mut self.stage, ReadStage::Lookup)
            }
            ReadStage::WaitLocked => {
                let folio = self.folio.take().expect("looked up");
                folio_put(ctx, folio);
                ctx.event("filemap_update_page", "folio_put_wait_locked", |_| {
                    format!("folio {folio}: AOP_TRUNCATED_PAGE")
                });
                Flow::goto(&mut self.stage, ReadStage::Lookup)
            }
            ReadStage::Copy => self.copy(ctx, returned),
        }
    }

    fn wait(&self, _k: &Kernel, _thread: crate::state::ThreadId) -> Wait {
        match (self.stage, self.folio) {
            (ReadStage::WaitLocked, Some(folio)) => Wait::FolioLock(folio),
            _ => Wait::Nothing,
        }
    }
}

/// mm/memory.c: fault_around_bytes (64 KiB by default) in pages.
pub const FAULT_AROUND_PAGES: u64 = 16;

/// mm/memory.c: do_fault_around(): the window [start, end] of FAULT_AROUND_PAGES aligned
/// pages around a read fault, clamped to the VMA and the PTE table, that it hands to
/// filemap_map_pages().
pub fn fault_around_window(vma: &Vma, address: u64) -> (u64, u64) {
    let pte_off = (address >> PAGE_SHIFT) % PTRS_PER_PTE;
    let pgoff = vma.linear_page_index(address);
    let vma_off = pgoff - vma.pgoff;
    let vma_pages = (vma.end - vma.start) >> PAGE_SHIFT;
    let from_pte = (pte_off / FAULT_AROUND_PAGES * FAULT_AROUND_PAGES).max(pte_off - pte_off.min(vma_off));
    let to_pte = (from_pte + FAULT_AROUND_PAGES).min(PTRS_PER_PTE).min(pte_off + vma_pages - vma_off) - 1;
    (pgoff + from_pte - pte_off, pgoff + to_pte - pte_off)
}

/// mm/filemap.c: next_uptodate_folio(): a cached folio to map without sleeping: referenced
/// (folio_try_get()), not locked (folio_trylock()), still this file's and uptodate, and below
/// i_size ("if (xas->xa_index >= max_idx) goto unlock").
fn next_uptodate_folio(ctx: &mut Ctx, file: FileId, index: u64) -> Option<FolioId> {
    let folio = ctx.page_cache_load(file, index)?;
    if !ctx.ref_add_unless_zero(folio, 1) {
        return None;
    }
    if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
        folio_put(ctx, folio);
        return None;
    }
    let usable = ctx.mapping_load(folio) == (Mapping::File(file), index)
        && ctx.flag_test(folio, PageFlag::Uptodate)
        && index < ctx.file_size_pages(file);
    if !usable {
        ctx.flag_store(folio, PageFlag::Locked, false);
        folio_put(ctx, folio);
        return None;
    }
    Some(folio)
}

/// mm/filemap.c: filemap_map_pages() up to the PTE lock: "end_pgoff = min(end_pgoff,
/// file_end)", then under RCU the first folio next_uptodate_folio() finds in [start, end]
/// (index, folio), locked and referenced.
pub fn filemap_map_pages_first(ctx: &mut Ctx, file: FileId, start: u64, end: u64) -> Option<(u64, FolioId)> {
    let end = end.min(ctx.file_size_pages(file).saturating_sub(1));
    (start..=end).find_map(|index| next_uptodate_folio(ctx, file, index).map(|folio| (index, folio)))
}

/// mm/filemap.c: filemap_map_pages() under the PTE lock: the first folio, then each further
/// one next_uptodate_folio() finds up to `end`, is mapped read-only if its PTE is none
/// (filemap_map_order0_folio() → set_pte_range(); the reference taken becomes the PTE's,
/// otherwise it is dropped) and unlocked. Whether the faulting page got mapped
/// (VM_FAULT_NOPAGE).
pub fn filemap_map_pages_locked(
    ctx: &mut Ctx,
    mm: MmId,
    vma: &Vma,
    address: u64,
    first: (u64, FolioId),
    end: u64,
) -> bool {
    let file = vma.file.expect("a file VMA");
    let vpn_of = |index: u64| vma.address_of_index(index).expect("within the VMA") >> PAGE_SHIFT;
    ctx.ptl_lock(mm, vpn_of(first.0));
    let mut mapped = Vec::new();
    let mut next = Some(first);
    while let Some((index, folio)) = next {
        let vpn = vpn_of(index);
        if ctx.pte_load(mm, vpn).is_none() {
            ctx.rss_add(mm, false, 1);
            crate::mm::rmap::folio_add_file_rmap_pte(ctx, folio, 0);
            let entry =
                PresentPte { pfn: folio_pfn(folio, 0), write: false, dirty: false, young: true, special: false };
            ctx.pte_store(mm, vpn, Pte::Present(entry));
            mapped.push(vpn << PAGE_SHIFT);
        } else {
            folio_put(ctx, folio);
        }
        ctx.flag_store(folio, PageFlag::Locked, false);
        next = (index + 1..=end).find_map(|index| next_uptodate_folio(ctx, file, index).map(|folio| (index, folio)));
    }
    ctx.ptl_unlock(mm, vpn_of(first.0));
    ctx.event("do_fault_around", "filemap_map_pages", |_| {
        let list: Vec<String> = mapped.iter().map(|a| format!("{a:#x}")).collect();
        format!("indexes [{}, {end}]: mapped [{}]", first.0, list.join(", "))
    });
    mapped.contains(&(address & !(PAGE_SIZE - 1)))
}

/// mm/filemap.c: filemap_fault(), run by mm/memory.c: do_read_fault() and do_cow_fault()
/// inside their fault's frame (memory.rs: `DoFault`): beyond i_size SIGBUS;
/// filemap_get_folio(), or on a miss do_sync_mmap_readahead() and "goto retry_find"; then
/// lock_folio_maybe_drop_mmap() and the checks under the folio lock.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilemapFault {
    /// filemap_fault()'s `fpin`: maybe_unlock_mmap_for_io() dropped mmap_lock, so the fault
    /// ends in VM_FAULT_RETRY once it holds the folio.
    pub fpin: bool,
    pub stage: FilemapFaultStage,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilemapFaultStage {
    /// filemap_get_folio() (and "retry_find").
    Lookup,
    /// do_sync_mmap_readahead(): the read-around window into the page cache.
    Readahead,
    /// The reads readahead submitted complete: the folios it added.
    ReadDone { folios: Vec<FolioId> },
    /// lock_folio_maybe_drop_mmap() and the checks under the folio lock: the page cache
    /// folio, referenced.
    Lock { folio: FolioId },
}

/// How a step of filemap_fault() ends.
pub enum FilemapOutcome {
    /// Its next step comes next.
    Continue,
    /// "return ret | VM_FAULT_LOCKED": the folio, locked and referenced.
    Locked(FolioId),
    /// An error with mmap_lock held.
    Error(i64),
    /// out_retry with mmap_lock dropped: VM_FAULT_RETRY, the folio held (if any) to put.
    Retry(Option<FolioId>),
}

impl From<Flow> for FilemapOutcome {
    fn from(flow: Flow) -> FilemapOutcome {
        match flow {
            Flow::Continue => FilemapOutcome::Continue,
            Flow::Return(_) | Flow::Call(_) => unreachable!("filemap_fault() runs inside the fault's frame"),
        }
    }
}

impl FilemapFault {
    pub fn new() -> FilemapFault {
        FilemapFault { fpin: false, stage: FilemapFaultStage::Lookup }
    }

    pub fn step(&mut self, ctx: &mut Ctx, vmf: &Vmf) -> FilemapOutcome {
        let (file, index) = vmf.pgoff();
        match &mut self.stage {
            FilemapFaultStage::Lookup => self.lookup(ctx, vmf, file, index),
            FilemapFaultStage::Readahead => self.readahead(ctx, vmf, file, index),
            FilemapFaultStage::ReadDone { folios } => {
                // The read-around's reads complete; filemap_fault() looks the page up again.
                let folios = std::mem::take(folios);
                read_pages_done(ctx, file, &folios);
                Flow::goto(&mut self.stage, FilemapFaultStage::Lookup).into()
            }
            FilemapFaultStage::Lock { folio } => {
                let folio = *folio;
                self.lock(ctx, vmf, (file, index), folio)
            }
        }
    }

    pub fn wait(&self, vmf: &Vmf) -> Wait {
        match self.stage {
            // A first try only tries the lock; with mmap_lock dropped, or held by GUP or a retry,
            // it sleeps for it.
            FilemapFaultStage::Lock { .. } if vmf.allow_retry_first() && !self.fpin => Wait::Nothing,
            FilemapFaultStage::Lock { folio } => Wait::FolioLock(folio),
            FilemapFaultStage::Lookup | FilemapFaultStage::Readahead | FilemapFaultStage::ReadDone { .. } => {
                Wait::Nothing
            }
        }
    }

    /// mm/filemap.c: filemap_fault(): beyond i_size SIGBUS; filemap_get_folio(), or on a miss
    /// do_sync_mmap_readahead() and "goto retry_find". (The kernel reads i_size on entry and
    /// again under the folio lock; a retry here reads it again before the lookup, so a fault
    /// that lost a race with ftruncate() never adds a folio beyond the new size.)
    fn lookup(&mut self, ctx: &mut Ctx, vmf: &Vmf, file: FileId, index: u64) -> FilemapOutcome {
        if index >= ctx.file_size_pages(file) {
            let address = vmf.address;
            ctx.event("filemap_fault", "i_size_read", |_| format!("{address:#x}: beyond the end of the file"));
            return self.error(VM_FAULT_SIGBUS);
        }
        match filemap_get_folio(ctx, file, index) {
            Lookup::Found(folio) => {
                ctx.event("filemap_fault", "filemap_get_folio", |k| {
                    format!("index {index}: {}", k.folio(folio).dump(folio))
                });
                Flow::goto(&mut self.stage, FilemapFaultStage::Lock { folio }).into()
            }
            Lookup::Missing => {
                ctx.event("filemap_fault", "filemap_get_folio", |_| format!("index {index}: not cached"));
                Flow::goto(&mut self.stage, FilemapFaultStage::Readahead).into()
            }
            Lookup::Frozen => FilemapOutcome::Continue,
        }
    }

    /// mm/filemap.c: maybe_unlock_mmap_for_io(): a user fault's first try drops mmap_lock
    /// before it sleeps for I/O or a folio lock (FAULT_FLAG_ALLOW_RETRY without
    /// FAULT_FLAG_RETRY_NOWAIT), and ends in VM_FAULT_RETRY. GUP's faults keep it.
    fn maybe_unlock_mmap_for_io(&mut self, ctx: &mut Ctx, vmf: &Vmf, why: &'static str) {
        if vmf.allow_retry_first() && !self.fpin {
            ctx.mmap_read_unlock(vmf.mm);
            self.fpin = true;
            ctx.event("maybe_unlock_mmap_for_io", "mmap_read_unlock", |_| why.to_string());
        }
    }

    /// mm/filemap.c: do_sync_mmap_readahead(): mmap read-around, `ra_pages` centred on the
    /// fault ("ra->start = max_t(long, 0, vmf->pgoff - ra->ra_pages / 2)"), after
    /// maybe_unlock_mmap_for_io(); then "goto retry_find".
    fn readahead(&mut self, ctx: &mut Ctx, vmf: &Vmf, file: FileId, index: u64) -> FilemapOutcome {
        self.maybe_unlock_mmap_for_io(ctx, vmf, "read-around I/O");
        let start = index.saturating_sub(RA_PAGES / 2);
        let folios = page_cache_ra(ctx, "do_sync_mmap_readahead", file, start, RA_PAGES);
        let next = if folios.is_empty() { FilemapFaultStage::Lookup } else { FilemapFaultStage::ReadDone { folios } };
        Flow::goto(&mut self.stage, next).into()
    }

    /// mm/filemap.c: lock_folio_maybe_drop_mmap(): folio_trylock(), else
    /// maybe_unlock_mmap_for_io() and sleep for the lock (the step waits until the folio is
    /// unlocked); then "Did it get truncated?" (folio->mapping changed: retry_find), the
    /// uptodate check, "if (fpin) { folio_unlock(folio); goto out_retry; }" and the i_size
    /// recheck under the lock. (do_cow_fault()'s copy follows in the same step.)
    fn lock(&mut self, ctx: &mut Ctx, vmf: &Vmf, (file, index): (FileId, u64), folio: FolioId) -> FilemapOutcome {
        if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
            assert!(vmf.allow_retry_first(), "a blocking folio_lock() waits until the folio is unlocked");
            self.maybe_unlock_mmap_for_io(ctx, vmf, "folio locked: sleep for it");
            return FilemapOutcome::Continue;
        }
        if ctx.mapping_load(folio) != (Mapping::File(file), index) {
            ctx.flag_store(folio, PageFlag::Locked, false);
            folio_put(ctx, folio);
            ctx.event("filemap_fault", "folio->mapping != mapping", |_| {
                format!("folio {folio} left the page cache, retry_find")
            });
            return Flow::goto(&mut self.stage, FilemapFaultStage::Lookup).into();
        }
        if !ctx.flag_test(folio, PageFlag::Uptodate) {
            // page_not_uptodate: only a failed read leaves a cached folio so; reads never fail here.
            let message = format!("not modelled: folio {folio} not uptodate in filemap_fault (page_not_uptodate)");
            ctx.violation(Violation::new(ViolationKind::Invariant, message));
        }
        if self.fpin {
            ctx.flag_store(folio, PageFlag::Locked, false);
            return FilemapOutcome::Retry(Some(folio));
        }
        // "Found the page and have a reference on it. We must recheck i_size under page lock
        // to avoid a race with truncate."
        if index >= ctx.file_size_pages(file) {
            ctx.flag_store(folio, PageFlag::Locked, false);
            folio_put(ctx, folio);
            ctx.event("filemap_fault", "i_size_read", |_| format!("index {index} truncated: SIGBUS"));
            return self.error(VM_FAULT_SIGBUS);
        }
        ctx.event("filemap_fault", "lock_folio_maybe_drop_mmap", |_| format!("folio {folio}"));
        FilemapOutcome::Locked(folio)
    }

    /// An error before the folio is mapped. With mmap_lock dropped the fault is retried
    /// instead (out_retry), and the retry finds the error again with the lock held.
    fn error(&self, result: i64) -> FilemapOutcome {
        if self.fpin {
            FilemapOutcome::Retry(None)
        } else {
            FilemapOutcome::Error(result)
        }
    }
}

impl Default for FilemapFault {
    fn default() -> Self {
        FilemapFault::new()
    }
}
