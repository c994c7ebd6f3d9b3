//! Races with reclaim, each found by searching every interleaving:
//! - shrink_folio_list()'s folio_maybe_dma_pinned() checks, on an O_DIRECT read, on the kernel
//!   that has each and on none once it is reverted;
//! - activate_locked's folio_free_swap() when the swap is full, on the same race;
//! - a swap-in fault that finds the folio locked by reclaim drops mmap_lock, waits and retries
//!   (folio_lock_or_retry()).

mod common;

use common::{events, system};
use mmcheck_model::Patch;

/// A swapbacked (dirty, not lazyfree) buffer, made cold so that reclaim does not keep it for
/// its young PTE: reclaim would add it to the swap cache.
const DIO_RECLAIM_SWAP: &str = r#"
scenario dio-reclaim-swap "an O_DIRECT read into a dirty anonymous buffer races reclaim with a swap device"
swap size 2 * 4K
file disk size 4K fill 0x79
process p {
  buf = mmap(4K, read|write, private|anonymous)
  store(buf, 4K, 0x01)
  madvise(buf, 4K, cold)
  signal ready
  thread io {
    n = pread(disk, buf, 4K, 0, direct)
    assert n == 4K
    assert load(buf, 4K) == 0x79
  }
}
kthread kswapd {
  wait ready
  reclaim(all)
}
"#;

const PINNED: &str = "folio_maybe_dma_pinned";

/// The `folio_maybe_dma_pinned` event ending in `outcome` happens in some interleaving with
/// `patch` applied, and in none once it is reverted.
fn pinned_check_only_with(source: &str, patch: Patch, outcome: &str) {
    let fixed = events(&system(source, &[(patch, true)]), PINNED);
    assert!(fixed.iter().any(|d| d.ends_with(outcome)), "{fixed:?}");
    let reverted = events(&system(source, &[(patch, false)]), PINNED);
    assert!(!reverted.iter().any(|d| d.ends_with(outcome)), "{reverted:?}");
}

#[test]
fn a_pinned_folio_is_not_added_to_the_swap_cache_since_5_11() {
    pinned_check_only_with(DIO_RECLAIM_SWAP, Patch::SwapcacheNoPinned, "pinned, keep");
}

#[test]
fn an_unmapped_pinned_folio_is_activated_since_6_4() {
    let source = mmcheck_scenario::builtin("madv-free-dio").expect("madv-free-dio is built in");
    pinned_check_only_with(source, Patch::ReclaimPinnedActivate, "pinned, activate");
}

#[test]
fn an_activated_swap_cache_folio_gives_its_slot_back_when_the_swap_is_full() {
    // A pin taken after add_to_swap() makes try_to_unmap() fail: the folio, in the swap cache,
    // is activated. With one slot (two pages, the first the header) the swap is full and the
    // slot is freed; with two slots it is not.
    let full = events(&system(DIO_RECLAIM_SWAP, &[]), "folio_free_swap");
    assert!(full.iter().any(|d| d.ends_with("swap full, slot freed")), "{full:?}");
    let roomy = DIO_RECLAIM_SWAP.replace("swap size 2 * 4K", "swap size 3 * 4K");
    let half = events(&system(&roomy, &[]), "folio_free_swap");
    assert!(!half.iter().any(|d| d.ends_with("swap full, slot freed")), "{half:?}");
}

#[test]
fn a_swap_in_fault_on_a_folio_reclaim_holds_drops_mmap_lock_and_retries() {
    // fork-swap: the parent and the child fault on a swap entry whose cache folio kswapd may
    // hold locked. On the first try the fault waits without mmap_lock; the retry may not.
    let source = mmcheck_scenario::builtin("fork-swap").expect("fork-swap is built in");
    let system = system(source, &[]);
    let unlocked = events(&system, "mmap_read_unlock");
    assert!(unlocked.iter().any(|d| d.ends_with("locked: wait, retry")), "{unlocked:?}");
    let retried = events(&system, "VM_FAULT_RETRY");
    assert!(retried.iter().any(|d| d.ends_with("unlocked, retry")), "{retried:?}");
}
