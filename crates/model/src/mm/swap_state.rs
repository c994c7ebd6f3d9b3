//! mm/swap_state.c: the swap cache (swapper_space): adding reclaimed folios, looking entries
//! up, deleting them, and swap-in reading a slot into a new cache folio.

use crate::access::{Ctx, Ordering};
use crate::folio::{FolioId, PageFlag};
use crate::mm::swap::{folio_add_lru, folio_mark_dirty};
use crate::mm::swapfile::{__swap_count, folio_alloc_swap_slots, put_swap_folio, SWAP_HAS_CACHE};

/// mm/swap_state.c: add_to_swap() (folio_alloc_swap() since 6.16): a slot for a locked
/// anonymous folio, which joins the swap cache (+1 reference, PG_swapcache, folio->swap) and
/// is dirtied ("the page will be written out"). False without a free slot.
pub fn add_to_swap(ctx: &mut Ctx, folio: FolioId) -> bool {
    let nr = ctx.folio_nr_pages(folio) as u32;
    let Some(offset) = folio_alloc_swap_slots(ctx, nr) else {
        return false;
    };
    add_to_swap_cache(ctx, folio, offset);
    folio_mark_dirty(ctx, folio);
    true
}

/// add_to_swap_cache(): under xa_lock_irq(i_pages); a large folio takes one slot per page and
/// one reference per page.
pub fn add_to_swap_cache(ctx: &mut Ctx, folio: FolioId, offset: u32) {
    let locked = ctx.flag_test(folio, PageFlag::Locked);
    ctx.vm_bug_on_folio(!locked, folio, "!folio_test_locked(folio)");
    let in_cache = ctx.flag_test(folio, PageFlag::Swapcache);
    ctx.vm_bug_on_folio(in_cache, folio, "folio_test_swapcache(folio)");
    let swapbacked = ctx.flag_test(folio, PageFlag::Swapbacked);
    ctx.vm_bug_on_folio(!swapbacked, folio, "!folio_test_swapbacked(folio)");
    let nr = ctx.folio_nr_pages(folio) as u32;
    ctx.ref_add(folio, nr as i32, Ordering::Relaxed);
    ctx.flag_store(folio, PageFlag::Swapcache, true);
    ctx.folio_swap_store(folio, Some(offset));
    for slot in offset..offset + nr {
        ctx.swap_cache_store(slot, Some(folio));
    }
}

/// __delete_from_swap_cache(): under xa_lock_irq(i_pages); the caller drops the references.
pub fn __delete_from_swap_cache(ctx: &mut Ctx, folio: FolioId, offset: u32) {
    let locked = ctx.flag_test(folio, PageFlag::Locked);
    ctx.vm_bug_on_folio(!locked, folio, "!folio_test_locked(folio)");
    let writeback = ctx.flag_test(folio, PageFlag::Writeback);
    ctx.vm_bug_on_folio(writeback, folio, "folio_test_writeback(folio)");
    let nr = ctx.folio_nr_pages(folio) as u32;
    for slot in offset..offset + nr {
        let cached = ctx.swap_cache_load(slot);
        ctx.vm_bug_on_folio(cached != Some(folio), folio, "entry != folio");
        ctx.swap_cache_store(slot, None);
    }
    ctx.folio_swap_store(folio, None);
    ctx.flag_store(folio, PageFlag::Swapcache, false);
}

/// put_swap_folio() for every slot of the folio.
pub fn put_swap_folio_nr(ctx: &mut Ctx, offset: u32, nr: u32) {
    for slot in offset..offset + nr {
        put_swap_folio(ctx, slot);
    }
}

/// delete_from_swap_cache(): out of the cache, the slots' cache bits and the cache's references.
pub fn delete_from_swap_cache(ctx: &mut Ctx, folio: FolioId, offset: u32) {
    let nr = ctx.folio_nr_pages(folio) as u32;
    __delete_from_swap_cache(ctx, folio, offset);
    put_swap_folio_nr(ctx, offset, nr);
    ctx.ref_add(folio, -(nr as i32), Ordering::Full);
}

/// swap_cache_get_folio() / filemap_get_folio(swap_address_space(entry), ...): a lockless
/// lookup that takes a reference (folio_try_get()).
pub fn swap_cache_get_folio(ctx: &mut Ctx, offset: u32) -> Option<FolioId> {
    let folio = ctx.swap_cache_load(offset)?;
    ctx.ref_add_unless_zero(folio, 1).then_some(folio)
}

/// mm/swapfile.c: folio_free_swap(): a swap cache folio no swap PTE needs any more leaves the
/// cache (and is dirtied: its slot is gone).
pub fn folio_free_swap(ctx: &mut Ctx, folio: FolioId) -> bool {
    if !ctx.flag_test(folio, PageFlag::Swapcache) || ctx.flag_test(folio, PageFlag::Writeback) {
        return false;
    }
    let offset = ctx.folio_swap_load(folio).expect("PG_swapcache folios have folio->swap");
    // folio_swapped(): any of its entries still named by a swap PTE.
    let nr = ctx.folio_nr_pages(folio) as u32;
    if (offset..offset + nr).any(|slot| __swap_count(ctx, slot) > 0) {
        return false;
    }
    delete_from_swap_cache(ctx, folio, offset);
    ctx.flag_store(folio, PageFlag::Dirty, true);
    true
}

/// swapin_readahead() → __read_swap_cache_async() for one slot, with a synchronous read:
/// swapcache_prepare() claims the slot's cache bit (false: someone else is reading it in), a
/// new folio joins the swap cache and the LRU, and the device fills it. The caller gets a
/// reference.
pub fn read_swap_cache(ctx: &mut Ctx, offset: u32) -> Option<FolioId> {
    let map = ctx.swap_map_load(offset);
    if map & SWAP_HAS_CACHE != 0 || map == 0 {
        return None;
    }
    ctx.swap_map_store(offset, map | SWAP_HAS_CACHE);
    let folio = ctx.alloc_folio(0);
    ctx.flag_store(folio, PageFlag::Locked, true);
    ctx.flag_store(folio, PageFlag::Swapbacked, true);
    add_to_swap_cache(ctx, folio, offset);
    folio_add_lru(ctx, folio);
    let data = ctx.swap_data_load(offset);
    ctx.data_store(folio, 0, data);
    ctx.flag_store(folio, PageFlag::Uptodate, true);
    ctx.flag_store(folio, PageFlag::Locked, false);
    Some(folio)
}
