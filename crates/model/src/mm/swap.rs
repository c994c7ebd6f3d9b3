//! mm/swap.c: reference drops, LRU insertion and the lazyfree move.
//!
//! The kernel batches LRU insertions and moves per CPU (`folio_batch`) and drains the batches
//! later. The model keeps the lazyfree batch (MADV_FREE's folios stay swap-backed, off the
//! LRU and referenced until a drain: /proc/pid/smaps shows it) on one CPU shared by every
//! thread; the other batches (lru_add, deactivate) are drained at once, so their transient
//! references are not modelled (a documented gap).

use crate::access::{Ctx, Ordering};
use crate::folio::{FolioId, LruList, PageFlag, ZERO_FOLIO};

/// include/linux/mm.h: folio_put() → mm/swap.c: __folio_put() when the last reference goes.
pub fn folio_put(ctx: &mut Ctx, folio: FolioId) {
    folio_put_refs(ctx, folio, 1);
}

/// include/linux/mm.h: folio_put_refs().
pub fn folio_put_refs(ctx: &mut Ctx, folio: FolioId, refs: i32) {
    if folio == ZERO_FOLIO {
        return;
    }
    let count = ctx.ref_add(folio, -refs, Ordering::Full);
    // include/linux/page_ref.h: folio_put_testzero(): VM_BUG_ON_FOLIO(folio_ref_count(folio) == 0).
    if ctx.vm_bug_on_folio(count < 0, folio, "folio_ref_count(folio) == 0") {
        return;
    }
    if count == 0 {
        __folio_put(ctx, folio);
    }
}

/// mm/swap.c: __folio_put(): off the LRU (page_cache_release), then back to the allocator.
pub fn __folio_put(ctx: &mut Ctx, folio: FolioId) {
    if ctx.flag_test_and_store(folio, PageFlag::Lru, false) {
        lruvec_del_folio(ctx, folio);
    }
    ctx.free_folio(folio);
}

/// The LRU list a folio belongs on: include/linux/mm_inline.h folio_lru_list().
pub fn folio_lru_list(ctx: &mut Ctx, folio: FolioId) -> LruList {
    let file = !ctx.flag_test(folio, PageFlag::Swapbacked);
    let active = ctx.flag_test(folio, PageFlag::Active);
    match (file, active) {
        (false, false) => LruList::InactiveAnon,
        (false, true) => LruList::ActiveAnon,
        (true, false) => LruList::InactiveFile,
        (true, true) => LruList::ActiveFile,
    }
}

/// include/linux/mm_inline.h: lruvec_add_folio() (caller holds lru_lock).
pub fn lruvec_add_folio(ctx: &mut Ctx, folio: FolioId) {
    let list = folio_lru_list(ctx, folio);
    ctx.lru_add(folio, list);
}

/// include/linux/mm_inline.h: lruvec_del_folio() (caller holds lru_lock).
pub fn lruvec_del_folio(ctx: &mut Ctx, folio: FolioId) {
    ctx.lru_del(folio);
}

/// mm/swap.c: folio_add_lru() with the batch drained at once (lru_add under lru_lock).
pub fn folio_add_lru(ctx: &mut Ctx, folio: FolioId) {
    ctx.lru_lock();
    ctx.flag_store(folio, PageFlag::Lru, true);
    lruvec_add_folio(ctx, folio);
    ctx.lru_unlock();
}

/// mm/swap.c: PAGEVEC_SIZE, the folios a folio_batch holds.
pub const PAGEVEC_SIZE: usize = 31;

/// mm/swap.c: folio_mark_lazyfree(): a clean anonymous folio joins the lazyfree batch with a
/// reference, off the LRU ("if (!folio_test_clear_lru(folio))" it is left alone); a full batch
/// (or a large folio) is moved at once.
pub fn folio_mark_lazyfree(ctx: &mut Ctx, folio: FolioId) {
    let eligible = ctx.flag_test(folio, PageFlag::Anon)
        && ctx.flag_test(folio, PageFlag::Swapbacked)
        && !ctx.flag_test(folio, PageFlag::Swapcache)
        && !ctx.flag_test(folio, PageFlag::Unevictable);
    if !eligible {
        return;
    }
    ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
    if !ctx.flag_test_and_store(folio, PageFlag::Lru, false) {
        folio_put(ctx, folio);
        return;
    }
    let large = ctx.folio_test_large(folio);
    let full = ctx.lazyfree_add(folio) >= PAGEVEC_SIZE;
    if full || large {
        lru_add_drain(ctx);
    }
}

/// mm/swap.c: lru_add_drain() → folio_batch_move_lru(lru_lazyfree): each batched folio, under
/// lru_lock, loses PG_active, PG_referenced and PG_swapbacked, moves to the file LRU and is on
/// the LRU again; then the batch's references go (folios_put()).
pub fn lru_add_drain(ctx: &mut Ctx) {
    let folios = ctx.lazyfree_take();
    if folios.is_empty() {
        return;
    }
    ctx.lru_lock();
    for &folio in &folios {
        let movable = ctx.flag_test(folio, PageFlag::Anon)
            && ctx.flag_test(folio, PageFlag::Swapbacked)
            && !ctx.flag_test(folio, PageFlag::Swapcache)
            && !ctx.flag_test(folio, PageFlag::Unevictable);
        if movable {
            lruvec_del_folio(ctx, folio);
            for flag in [PageFlag::Active, PageFlag::Referenced, PageFlag::Swapbacked] {
                ctx.flag_store(folio, flag, false);
            }
            lruvec_add_folio(ctx, folio);
        }
        ctx.flag_store(folio, PageFlag::Lru, true);
    }
    ctx.lru_unlock();
    for &folio in &folios {
        folio_put(ctx, folio);
    }
    ctx.event("lru_add_drain", "lru_lazyfree", |_| format!("folios {folios:?} moved to the inactive file LRU"));
}

/// Under lru_lock: the folio leaves its list, loses `flags`, and joins the list they now
/// select (the shape of lru_lazyfree() and lru_deactivate()).
fn lru_move_clearing(ctx: &mut Ctx, folio: FolioId, flags: &[PageFlag]) {
    ctx.lru_lock();
    lruvec_del_folio(ctx, folio);
    for &flag in flags {
        ctx.flag_store(folio, flag, false);
    }
    lruvec_add_folio(ctx, folio);
    ctx.lru_unlock();
}

/// mm/swap.c: folio_deactivate() with the batch drained at once (lru_deactivate()): an active
/// folio moves to its inactive list, losing PG_active and PG_referenced.
pub fn folio_deactivate(ctx: &mut Ctx, folio: FolioId) {
    let eligible = ctx.flag_test(folio, PageFlag::Lru)
        && !ctx.flag_test(folio, PageFlag::Unevictable)
        && ctx.flag_test(folio, PageFlag::Active);
    if !eligible {
        return;
    }
    lru_move_clearing(ctx, folio, &[PageFlag::Active, PageFlag::Referenced]);
}

/// mm/swap.c: folio_activate() with the batch drained at once (lru_activate()): an inactive
/// folio on the LRU moves to its active list.
pub fn folio_activate(ctx: &mut Ctx, folio: FolioId) {
    let eligible = ctx.flag_test(folio, PageFlag::Lru)
        && !ctx.flag_test(folio, PageFlag::Unevictable)
        && !ctx.flag_test(folio, PageFlag::Active);
    if !eligible {
        return;
    }
    ctx.lru_lock();
    lruvec_del_folio(ctx, folio);
    ctx.flag_store(folio, PageFlag::Active, true);
    lruvec_add_folio(ctx, folio);
    ctx.lru_unlock();
}

/// mm/swap.c: folio_mark_accessed(), the classic LRU (lru_gen_enabled() false; no dropbehind
/// folios are modelled): inactive,unreferenced -> inactive,referenced -> active,unreferenced
/// -> active,referenced. A folio off the LRU would be looked for in this CPU's lru_add batch
/// (__lru_cache_activate_folio()); the model drains that batch at once, so it is never there.
pub fn folio_mark_accessed(ctx: &mut Ctx, folio: FolioId) {
    if !ctx.flag_test(folio, PageFlag::Referenced) {
        ctx.flag_store(folio, PageFlag::Referenced, true);
    } else if ctx.flag_test(folio, PageFlag::Unevictable) {
        // "Unevictable pages are on the unevictable list ... marking an unevictable page
        // accessed has no effect."
    } else if !ctx.flag_test(folio, PageFlag::Active) {
        if ctx.flag_test(folio, PageFlag::Lru) {
            folio_activate(ctx, folio);
        }
        ctx.flag_store(folio, PageFlag::Referenced, false);
    }
}

/// mm/vmscan.c: folio_isolate_lru(): off the LRU with a reference, if it is on it.
pub fn folio_isolate_lru(ctx: &mut Ctx, folio: FolioId) -> bool {
    if !ctx.flag_test_and_store(folio, PageFlag::Lru, false) {
        return false;
    }
    ctx.ref_add(folio, 1, crate::access::Ordering::Relaxed);
    ctx.lru_lock();
    lruvec_del_folio(ctx, folio);
    ctx.lru_unlock();
    true
}

/// mm/page-writeback.c: folio_mark_dirty() for an anonymous folio outside the swap cache:
/// folio_mapping() is NULL, so it only sets PG_dirty. Returns whether it newly dirtied.
pub fn folio_mark_dirty(ctx: &mut Ctx, folio: FolioId) -> bool {
    if ctx.flag_test(folio, PageFlag::Dirty) {
        return false;
    }
    !ctx.flag_test_and_store(folio, PageFlag::Dirty, true)
}
