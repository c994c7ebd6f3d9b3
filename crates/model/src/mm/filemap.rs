//! mm/filemap.c: the page cache of the scenario's files: lookup (filemap_get_entry()), a new
//! folio added and read for a fault (page_cache_ra_unbounded() → filemap_add_folio(), then
//! read_pages() and the read's completion), and removal (__filemap_remove_folio()).
//!
//! Modelled: clean, order-0 page cache folios of a read-only file (faults and reclaim). Not
//! modelled: writes to the page cache (buffered writes, shared writable mappings, writeback),
//! large folios, readahead beyond the faulting page, fault-around (do_read_fault()'s
//! do_fault_around() → filemap_map_pages(): a read fault maps only its own page here),
//! truncation, and the i_mmap tree's lock.

use crate::access::{Ctx, Ordering};
use crate::folio::{FolioId, Mapping, PageFlag};
use crate::mm::swap::{folio_add_lru, folio_put};
use crate::state::FileId;

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

/// The file's size in pages (i_size_read() >> PAGE_SHIFT): a constant of the run.
pub fn file_pages(ctx: &Ctx, file: FileId) -> u64 {
    ctx.k.files[file as usize].blocks.len() as u64
}

/// mm/readahead.c: page_cache_ra_unbounded(): filemap_alloc_folio(), then mm/filemap.c:
/// filemap_add_folio() → __filemap_add_folio(): the folio locked, the cache's reference
/// ("folio_ref_add(folio, nr)"), mapping and index set, the slot stored under xa_lock; then
/// folio_add_lru(). `None` is -EEXIST: another thread added a folio first (the one allocated
/// for it is freed again, so none is allocated here).
pub fn filemap_add_folio(ctx: &mut Ctx, file: FileId, index: u64) -> Option<FolioId> {
    if ctx.page_cache_load(file, index).is_some() {
        return None;
    }
    let folio = ctx.alloc_folio(0);
    ctx.flag_store(folio, PageFlag::Locked, true);
    ctx.ref_add(folio, 1, Ordering::Relaxed);
    ctx.mapping_store(folio, Mapping::File(file), index);
    ctx.page_cache_store(file, index, Some(folio));
    folio_add_lru(ctx, folio);
    Some(folio)
}

/// The read of a new folio: read_pages() submits it and drops readahead's reference; the
/// block device's completion, folio_end_read(), marks the folio uptodate and unlocks it (one
/// step here, after the submission).
pub fn filemap_read_done(ctx: &mut Ctx, folio: FolioId, file: FileId, index: u64) {
    let data = ctx.file_block(file, index as usize).expect("the caller checked the file's size");
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
