//! mm/filemap.c: the page cache of the scenario's files: lookup (filemap_get_entry()), a new
//! folio added and read for a fault or a read (page_cache_ra_unbounded() → filemap_add_folio(),
//! then read_pages() and the read's completion), removal (__filemap_remove_folio()), and the
//! buffered read, filemap_read().
//!
//! Modelled: clean, order-0 page cache folios of a read-only file (faults and reclaim). Not
//! modelled: writes to the page cache (buffered writes, shared writable mappings, writeback),
//! a buffered read's batch lookup of several folios (one page per lookup here),
//! large folios, readahead beyond the faulting page, and the i_mmap tree's lock. Truncation is
//! in mm/truncate.rs.
//! A read fault first maps what is cached around it (do_fault_around() →
//! filemap_map_pages()).

use crate::access::{Ctx, Ordering};
use crate::folio::{folio_pfn, pfn_folio, pfn_page, FolioId, Mapping, PageFlag, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::{Fault, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV};
use crate::mm::swap::{folio_add_lru, folio_put};
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::state::{vm_flags, FileId, Kernel, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
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
        Some(_) => Lookup::Frozen,
    }
}

/// The file's size in pages (i_size_read() >> PAGE_SHIFT; ftruncate() changes it).
pub fn file_pages(ctx: &mut Ctx, file: FileId) -> u64 {
    ctx.file_size_pages(file)
}

/// mm/readahead.c: page_cache_ra_unbounded(): filemap_alloc_folio(), then mm/filemap.c:
/// filemap_add_folio() → __filemap_add_folio(): the folio locked, the cache's reference
/// ("folio_ref_add(folio, nr)"), mapping and index set, the slot stored under xa_lock; then
/// folio_add_lru(). The error says why nothing was added, and the caller looks up again:
/// "-EEXIST", another thread added a folio first (the one allocated for it is freed again, so
/// none is allocated here); or "beyond i_size" (do_page_cache_ra(): "if (index > end_index)
/// return", read under the invalidate_lock that ftruncate() holds across
/// truncate_pagecache(), so no folio is added beyond a new size).
pub fn filemap_add_folio(ctx: &mut Ctx, file: FileId, index: u64) -> Result<FolioId, &'static str> {
    if index >= file_pages(ctx, file) {
        return Err("beyond i_size");
    }
    if ctx.page_cache_load(file, index).is_some() {
        return Err("-EEXIST");
    }
    let folio = ctx.alloc_folio(0);
    ctx.flag_store(folio, PageFlag::Locked, true);
    ctx.ref_add(folio, 1, Ordering::Relaxed);
    ctx.mapping_store(folio, Mapping::File(file), index);
    ctx.page_cache_store(file, index, Some(folio));
    folio_add_lru(ctx, folio);
    Ok(folio)
}

/// filemap_add_folio() for `function` (a readahead), with its event; `None` when nothing
/// was added and the caller looks up again.
pub fn readahead(ctx: &mut Ctx, function: &'static str, file: FileId, index: u64) -> Option<FolioId> {
    match filemap_add_folio(ctx, file, index) {
        Ok(folio) => {
            ctx.event(function, "filemap_add_folio", |k| k.folio(folio).dump(folio));
            Some(folio)
        }
        Err(why) => {
            ctx.event("filemap_add_folio", why, |_| format!("index {index}: not added, retry"));
            None
        }
    }
}

/// The read of a new folio: read_pages() submits it and drops readahead's reference; the
/// block device's completion, folio_end_read(), marks the folio uptodate and unlocks it (one
/// step here, after the submission).
pub fn filemap_read_done(ctx: &mut Ctx, folio: FolioId, file: FileId, index: u64) {
    // A page ftruncate() cut off since the read was submitted reads as zeroes (the block
    // device's read_folio zero-fills beyond i_size); truncation then removes the folio.
    let data = ctx.file_block(file, index as usize).unwrap_or(crate::folio::PageData::Fill(0));
    ctx.data_store(folio, 0, data);
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.flag_store(folio, PageFlag::Locked, false);
    folio_put(ctx, folio);
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
    /// The page cache folio being copied from (referenced), or read in.
    pub folio: Option<FolioId>,
}

impl FilemapRead {
    pub fn new(mm: MmId, file: FileId, buffer: u64, length: u64, offset: u64) -> Self {
        FilemapRead { mm, file, buffer, length, offset, done: 0, stage: ReadStage::Lookup, folio: None }
    }

    fn index(&self) -> u64 {
        (self.offset + self.done) >> PAGE_SHIFT
    }

    /// filemap_get_pages(): "if (unlikely(iocb->ki_pos >= i_size_read(inode)))" the read
    /// ends; otherwise the page's folio, referenced and uptodate.
    fn lookup(&mut self, ctx: &mut Ctx) -> Flow {
        let end = file_pages(ctx, self.file) * PAGE_SIZE;
        self.length = self.length.min(end.saturating_sub(self.offset));
        // A truncation may have cut the file below what was already copied.
        if self.done >= self.length {
            return Flow::Return(self.done as i64);
        }
        let (file, index) = (self.file, self.index());
        match filemap_get_folio(ctx, file, index) {
            Lookup::Found(folio) if ctx.flag_test(folio, PageFlag::Uptodate) => {
                self.folio = Some(folio);
                ctx.event("filemap_get_pages", "filemap_get_read_batch", |_| format!("index {index}: folio {folio}"));
                self.stage = ReadStage::Copy;
            }
            Lookup::Found(folio) => {
                self.folio = Some(folio);
                ctx.event("filemap_update_page", "folio_trylock", |_| format!("folio {folio} not uptodate: wait"));
                self.stage = ReadStage::WaitLocked;
            }
            Lookup::Missing => {
                ctx.event("filemap_get_pages", "filemap_get_read_batch", |_| format!("index {index}: not cached"));
                self.stage = ReadStage::Readahead;
            }
            Lookup::Frozen => {
                ctx.event("filemap_get_entry", "folio_try_get", |_| format!("index {index}: refcount frozen, repeat"));
            }
        }
        Flow::Continue
    }

    /// copy_to_user() of this page cache page's bytes into one user page: through the page
    /// table (a missing or read-only PTE faults, as a user write would), setting the accessed
    /// and dirty bits.
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
        let vpn = address >> PAGE_SHIFT;
        let pte = ctx.pte_load(self.mm, vpn);
        let writable = ctx.vmas(self.mm).iter().any(|v| v.contains(address) && v.flags & vm_flags::VM_WRITE != 0);
        let Some(present) = pte.present().filter(|p| p.write && writable) else {
            ctx.event("copy_to_user", "fault", |_| format!("write {address:#x}: PTE {}", pte.describe()));
            return Flow::Call(Frame::Fault(Fault::new(self.mm, address, true, true)));
        };
        if !present.young || !present.dirty {
            ctx.pte_hw_update(self.mm, vpn, Pte::Present(PresentPte { young: true, dirty: true, ..present }));
        }
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
            self.stage = ReadStage::Lookup;
        }
        Flow::Continue
    }
}

impl KernelFunction for FilemapRead {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            ReadStage::Lookup => self.lookup(ctx),
            ReadStage::Readahead => {
                self.folio = readahead(ctx, "page_cache_sync_readahead", self.file, self.index());
                self.stage = if self.folio.is_some() { ReadStage::ReadDone } else { ReadStage::Lookup };
                Flow::Continue
            }
            ReadStage::ReadDone => {
                let folio = self.folio.take().expect("added by readahead");
                filemap_read_done(ctx, folio, self.file, self.index());
                ctx.event("folio_end_read", "folio_mark_uptodate", |k| k.folio(folio).dump(folio));
                self.stage = ReadStage::Lookup;
                Flow::Continue
            }
            ReadStage::WaitLocked => {
                let folio = self.folio.take().expect("looked up");
                folio_put(ctx, folio);
                ctx.event("filemap_update_page", "folio_put_wait_locked", |_| {
                    format!("folio {folio}: AOP_TRUNCATED_PAGE")
                });
                self.stage = ReadStage::Lookup;
                Flow::Continue
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

/// mm/memory.c: do_fault_around(): the window of FAULT_AROUND_PAGES aligned pages around a
/// read fault, clamped to the VMA and the PTE table, handed to filemap_map_pages(). Whether
/// the faulting page itself got mapped (VM_FAULT_NOPAGE).
pub fn do_fault_around(ctx: &mut Ctx, mm: MmId, vma: &Vma, address: u64) -> bool {
    let pte_off = (address >> PAGE_SHIFT) % PTRS_PER_PTE;
    let pgoff = vma.linear_page_index(address);
    let vma_off = pgoff - vma.pgoff;
    let vma_pages = (vma.end - vma.start) >> PAGE_SHIFT;
    let from_pte = (pte_off / FAULT_AROUND_PAGES * FAULT_AROUND_PAGES).max(pte_off - pte_off.min(vma_off));
    let to_pte = (from_pte + FAULT_AROUND_PAGES).min(PTRS_PER_PTE).min(pte_off + vma_pages - vma_off) - 1;
    filemap_map_pages(ctx, mm, vma, address, pgoff + from_pte - pte_off, pgoff + to_pte - pte_off)
}

/// mm/filemap.c: next_uptodate_folio(): a cached folio to map without sleeping: referenced,
/// not locked (folio_trylock() succeeds), still this file's and uptodate, within i_size.
fn next_uptodate_folio(ctx: &mut Ctx, file: FileId, index: u64) -> Option<FolioId> {
    let folio = ctx.page_cache_load(file, index)?;
    if !ctx.ref_add_unless_zero(folio, 1) {
        return None;
    }
    if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
        folio_put(ctx, folio);
        return None;
    }
    let usable = ctx.mapping_load(folio) == (Mapping::File(file), index) && ctx.flag_test(folio, PageFlag::Uptodate);
    if !usable {
        ctx.flag_store(folio, PageFlag::Locked, false);
        folio_put(ctx, folio);
        return None;
    }
    Some(folio)
}

/// mm/filemap.c: filemap_map_pages() over [start, end] (one step here: it runs under RCU and
/// then the PTE lock, taking folios only by trylock): each cached, uptodate, unlocked folio
/// whose PTE is none is mapped read-only (filemap_map_order0_folio() → set_pte_range(); the
/// reference taken becomes the PTE's); the others are left alone.
fn filemap_map_pages(ctx: &mut Ctx, mm: MmId, vma: &Vma, address: u64, start: u64, end: u64) -> bool {
    let file = vma.file.expect("a file VMA");
    // "file_end = DIV_ROUND_UP(i_size_read(mapping->host), PAGE_SIZE) - 1".
    let end = end.min(file_pages(ctx, file).saturating_sub(1));
    let folios: Vec<(u64, FolioId)> =
        (start..=end).filter_map(|index| next_uptodate_folio(ctx, file, index).map(|folio| (index, folio))).collect();
    let Some(&(first, _)) = folios.first() else {
        return false;
    };
    let vpn_of = |index: u64| vma.address_of_index(index).expect("within the VMA") >> PAGE_SHIFT;
    ctx.ptl_lock(mm, vpn_of(first));
    let mut mapped = Vec::new();
    for &(index, folio) in &folios {
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
    }
    ctx.ptl_unlock(mm, vpn_of(first));
    let fault_page = address & !(PAGE_SIZE - 1);
    ctx.event("do_fault_around", "filemap_map_pages", |_| {
        let list: Vec<String> = mapped.iter().map(|a| format!("{a:#x}")).collect();
        format!("indexes [{start}, {end}]: mapped [{}]", list.join(", "))
    });
    mapped.contains(&fault_page)
}
