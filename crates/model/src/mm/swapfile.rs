//! mm/swapfile.c: swap slots and their counts (`swap_map`) on the one swap device.

use crate::access::Ctx;
use crate::folio::{FolioId, PageFlag};
use crate::mm::swap::folio_put;
use crate::mm::swap_state::{folio_free_swap, swap_cache_get_folio};

/// include/linux/swap.h: SWAP_HAS_CACHE, the swap_map bit of a slot with a swap cache folio.
pub const SWAP_HAS_CACHE: u8 = 0x40;
/// include/linux/swap.h: SWAP_MAP_MAX (continuation counts are not modelled).
pub const SWAP_MAP_MAX: u8 = 0x3e;
/// include/linux/swap.h: SWAP_MAP_BAD, a slot never to be used: swapon (setup_swap_map())
/// marks slot 0, which holds the swap header.
pub const SWAP_MAP_BAD: u8 = 0x3f;

/// swap_count(): the number of swap PTEs naming the slot.
pub fn swap_count(map: u8) -> u8 {
    map & !SWAP_HAS_CACHE
}

/// folio_alloc_swap() → cluster_alloc_swap_entry(): `nr` free slots, naturally aligned (a large
/// folio's entries are contiguous), taken with SWAP_HAS_CACHE (the swap cache will hold them).
pub fn folio_alloc_swap_slots(ctx: &mut Ctx, nr: u32) -> Option<u32> {
    let slots = ctx.swap_slots();
    let base =
        (0..slots / nr).map(|i| i * nr).find(|&base| (base..base + nr).all(|offset| ctx.swap_map_load(offset) == 0))?;
    for offset in base..base + nr {
        ctx.swap_map_store(offset, SWAP_HAS_CACHE);
    }
    Some(base)
}

/// swap_duplicate() → __swap_duplicate(entry, 1): one more swap PTE names the slot.
pub fn swap_duplicate(ctx: &mut Ctx, offset: u32) -> bool {
    let map = ctx.swap_map_load(offset);
    let count = swap_count(map);
    if (count == 0 && map & SWAP_HAS_CACHE == 0) || count >= SWAP_MAP_MAX {
        return false;
    }
    ctx.swap_map_store(offset, map + 1);
    true
}

/// swap_free() → __swap_entry_free(): one swap PTE fewer; the new map value (0: slot free).
pub fn swap_free(ctx: &mut Ctx, offset: u32) -> u8 {
    let map = ctx.swap_map_load(offset);
    // swap_entry_put(): "VM_BUG_ON(!count)" in spirit: a slot freed twice is a swap_map underflow.
    if swap_count(map) == 0 {
        ctx.violation(crate::violation::Violation::new(
            crate::violation::ViolationKind::KernelBug,
            format!("swap_free: swap_map[{offset:#x}] = {map:#x} has no PTE reference to drop (Bad swap file entry)"),
        ));
        return map;
    }
    ctx.swap_map_store(offset, map - 1);
    map - 1
}

/// put_swap_folio(): the swap cache lets go of the slot (clear SWAP_HAS_CACHE).
pub fn put_swap_folio(ctx: &mut Ctx, offset: u32) {
    let map = ctx.swap_map_load(offset);
    ctx.swap_map_store(offset, map & !SWAP_HAS_CACHE);
}

/// __swap_count(): whether any swap PTE still names the slot (folio_swapped()).
pub fn __swap_count(ctx: &mut Ctx, offset: u32) -> u8 {
    swap_count(ctx.swap_map_load(offset))
}

/// vm_swap_full(): "nr_swap_pages * 2 < total_swap_pages": free slots below half of the good
/// ones (SWAP_MAP_BAD slots, the header's, count in neither).
pub fn vm_swap_full(ctx: &mut Ctx) -> bool {
    let (free, good) = (0..ctx.swap_slots())
        .map(|offset| ctx.swap_map_load(offset))
        .fold((0, 0), |(free, good), map| (free + u32::from(map == 0), good + u32::from(map != SWAP_MAP_BAD)));
    free * 2 < good
}

/// free_swap_and_cache(): a swap PTE was zapped. When only the swap cache is left, try to
/// reclaim the cache folio (__try_to_reclaim_swap(TTRS_UNMAPPED | TTRS_FULL)).
pub fn free_swap_and_cache(ctx: &mut Ctx, offset: u32) {
    if swap_free(ctx, offset) != SWAP_HAS_CACHE {
        return;
    }
    let Some(folio) = swap_cache_get_folio(ctx, offset) else { return };
    __try_to_reclaim_swap(ctx, folio);
    folio_put(ctx, folio);
}

fn __try_to_reclaim_swap(ctx: &mut Ctx, folio: FolioId) {
    if ctx.flag_test_and_store(folio, PageFlag::Locked, true) {
        return;
    }
    if ctx.mapcount_load(folio) == 0 {
        folio_free_swap(ctx, folio);
    }
    ctx.flag_store(folio, PageFlag::Locked, false);
}
