//! mm/readahead.c: the readahead that adds page cache folios for a fault or a read
//! (do_page_cache_ra() → page_cache_ra_unbounded(), with mm/filemap.c's filemap_add_folio()),
//! its window sizes, and the completion of the reads it submits (read_pages(),
//! folio_end_read()).

use crate::access::{Ctx, Ordering};
use crate::folio::{FolioId, Mapping, PageFlag};
use crate::mm::swap::{folio_add_lru, folio_put};
use crate::state::FileId;

/// include/linux/mm.h: VM_READAHEAD_PAGES (128 KiB), a file's default `ra_pages`.
pub const RA_PAGES: u64 = 32;

/// mm/readahead.c: do_page_cache_ra() → page_cache_ra_unbounded() over `count` pages from
/// `start`, clamped to i_size ("if (index > end_index) return", read under the
/// invalidate_lock that ftruncate() holds across truncate_pagecache(), so nothing is added
/// beyond a new size): for each index not cached, filemap_alloc_folio() and mm/filemap.c:
/// filemap_add_folio() → __filemap_add_folio(): the folio locked, the cache's reference
/// ("folio_ref_add(folio, nr)"), mapping and index set, the slot stored under xa_lock, then
/// folio_add_lru(); a cached index is skipped. One step here; read_pages() submits the reads
/// and [`read_pages_done`] completes them. The folios added, in index order.
pub fn page_cache_ra(ctx: &mut Ctx, function: &'static str, file: FileId, start: u64, count: u64) -> Vec<FolioId> {
    let end = (start + count).min(ctx.file_size_pages(file));
    let mut added = Vec::new();
    for index in start..end {
        if ctx.page_cache_load(file, index).is_some() {
            continue;
        }
        let folio = ctx.alloc_folio(0);
        ctx.flag_store(folio, PageFlag::Locked, true);
        ctx.ref_add(folio, 1, Ordering::Relaxed);
        ctx.mapping_store(folio, Mapping::File(file), index);
        ctx.page_cache_store(file, index, Some(folio));
        folio_add_lru(ctx, folio);
        added.push(folio);
    }
    ctx.event(function, "page_cache_ra_unbounded", |_| format!("indexes [{start}, {end}): added folios {added:?}"));
    added
}

/// mm/readahead.c: get_init_ra_size(): the first window of a sequential read of `size` pages.
pub fn get_init_ra_size(size: u64, max: u64) -> u64 {
    let size = size.next_power_of_two();
    if size <= max / 32 {
        size * 4
    } else if size <= max / 4 {
        size * 2
    } else {
        max
    }
}

/// The reads of folios readahead added: read_pages() drops readahead's references and the
/// block device's completion, folio_end_read(), marks each uptodate and unlocks it (one step
/// here, after the submission). A page ftruncate() cut off since then reads as zeroes (the
/// read_folio of a block device zero-fills beyond i_size); truncation then removes the folio.
pub fn read_pages_done(ctx: &mut Ctx, file: FileId, folios: &[FolioId]) {
    for &folio in folios {
        let (_, index) = ctx.mapping_load(folio);
        let data = ctx.file_block(file, index).unwrap_or(crate::folio::PageData::Fill(0));
        ctx.data_store(folio, 0, data);
        ctx.flag_store(folio, PageFlag::Uptodate, true);
        ctx.flag_store(folio, PageFlag::Locked, false);
        folio_put(ctx, folio);
    }
    ctx.event("folio_end_read", "folio_mark_uptodate", |_| format!("folios {folios:?}"));
}
