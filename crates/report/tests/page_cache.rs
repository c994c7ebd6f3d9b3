//! The page cache under reclaim, each path found by searching every interleaving of the
//! built-in `file-fault-reclaim` (two faults on a cached page of a private file mapping, a
//! copy-on-write fault on another, kswapd reclaiming the page cache) or `conform-file-pageout`.

mod common;

use common::{events_by_label, system};
use mmcheck_explorer::Model;
use mmcheck_model::state::Kernel;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Every reachable step's event details by label (one search of every interleaving).
type Reached = HashMap<&'static str, HashSet<String>>;

/// What one search of every interleaving of `file-fault-reclaim` reached: every step's event
/// details by label, and the page cache indexes of its file in every final state.
struct FileFaultReclaim {
    events: Reached,
    cached_at_the_end: HashSet<Vec<u64>>,
}

/// `file-fault-reclaim`, searched once for the tests that ask about it (no step may violate an
/// oracle).
fn searched() -> &'static FileFaultReclaim {
    static SEARCHED: OnceLock<FileFaultReclaim> = OnceLock::new();
    SEARCHED.get_or_init(|| {
        let source = mmcheck_scenario::builtin("file-fault-reclaim").expect("a built-in scenario");
        let system = system(source, &[]);
        let mut searched = FileFaultReclaim { events: HashMap::new(), cached_at_the_end: HashSet::new() };
        let encoded = |state: &Kernel| {
            let mut bytes = Vec::new();
            system.encode(state, &mut bytes);
            bytes
        };
        let cached = &mut searched.cached_at_the_end;
        let on_state = |state: &Kernel, final_state: bool| {
            if final_state {
                assert!(system.check_final(state).is_none(), "a final state violates an oracle");
                cached.insert(state.files[0].cache.keys().copied().collect());
            }
        };
        let events = &mut searched.events;
        common::walk(&system, encoded, on_state, |effects| {
            for event in &effects.events {
                events.entry(event.label).or_default().insert(event.detail.clone());
            }
            assert!(effects.violation.is_none(), "a step violates an oracle: {}", effects.violation.as_ref().unwrap());
            true
        });
        searched
    })
}

fn file_fault_reclaim() -> &'static Reached {
    &searched().events
}

fn builtin(name: &str) -> Reached {
    let source = mmcheck_scenario::builtin(name).expect("a built-in scenario");
    events_by_label(&system(source, &[]), &[])
}

/// Asserts that some reachable step under `label` has a detail ending in `ending`.
fn reaches(reached: &Reached, label: &str, ending: &str) {
    let details = reached.get(label);
    let found = details.is_some_and(|details| details.iter().any(|d| d.ends_with(ending)));
    assert!(found, "no {label} ending in {ending:?}: {details:?}");
}

#[test]
fn reclaim_takes_unmapped_clean_folios_out_of_the_page_cache() {
    let reached = file_fault_reclaim();
    reaches(reached, "__filemap_remove_folio", "out of the page cache (index 0)");
    reaches(reached, "__filemap_remove_folio", "out of the page cache (index 1)");
    // A fault's reference (filemap_get_folio()) keeps the folio: the freeze fails.
    reaches(reached, "folio_ref_freeze", "refcount 3 != 2, keep");
}

#[test]
fn pageout_unmaps_a_page_cache_folio_through_the_file_mappings() {
    let reached = &builtin("conform-file-pageout");
    reaches(reached, "rmap_walk_file", "1 mapping(s) to walk");
    reaches(reached, "__filemap_remove_folio", "out of the page cache (index 1)");
}

#[test]
fn racing_faults_add_one_folio_and_map_it_once() {
    let reached = file_fault_reclaim();
    // The second thread's readahead finds the pages the first one added: it adds none.
    reaches(reached, "page_cache_ra_unbounded", "added folios []");
    // The second may find it cached and uptodate: do_fault_around() maps it without the
    // filemap_fault() path, or finds it locked and leaves it to filemap_fault().
    reaches(reached, "filemap_map_pages", "mapped [0x7f0000000000]");
    reaches(reached, "filemap_map_pages", "mapped [0x7f0000001000]");
    // finish_fault(): the second to take the PTE lock finds the PTE mapped.
    reaches(reached, "vmf_pte_changed", "mapped meanwhile: VM_FAULT_NOPAGE");
}

#[test]
fn a_user_fault_on_a_folio_reclaim_holds_drops_mmap_lock_and_retries() {
    let reached = file_fault_reclaim();
    reaches(reached, "mmap_read_unlock", "folio locked: sleep for it");
    reaches(reached, "VM_FAULT_RETRY", "unlocked, retry");
}

#[test]
fn a_write_fault_copies_the_cached_page() {
    reaches(file_fault_reclaim(), "copy_mc_user_highpage", "copied from folio 2");
}

#[test]
fn a_buffered_read_waits_for_a_folio_being_read_in_and_races_reclaim() {
    let reached = &builtin("buffered-read-reclaim");
    // filemap_update_page(): the fault's readahead added the folio, not yet uptodate.
    reaches(reached, "folio_put_wait_locked", "AOP_TRUNCATED_PAGE");
    // The fault finds the read's folio instead, or adds its own first.
    reaches(reached, "page_cache_ra_unbounded", "added folios []");
    reaches(reached, "__filemap_remove_folio", "out of the page cache (index 0)");
    // copy_to_user() into the buffer's own folio (written before, so no fault).
    reaches(reached, "copy_to_user", "-> 0x7f0000000000 (folio 1)");
}

/// Two read faults on the second page of a file mapping race ftruncate() of the whole file:
/// each maps the page or gets SIGBUS; nothing else breaks an oracle. (With one fault, its
/// fault-around always maps the page or finds the size gone before it could lock the folio.)
const TRUNCATE_FAULT: &str = r#"
scenario truncate-fault "ftruncate races read faults on a mapping of the file"
file disk size 8K fill 0x79
process p {
  map = mmap(8K, read, private, disk)
  thread reader {
    assert load(map + 4K, 4K) == 0x79
  }
  thread other {
    assert load(map + 4K, 4K) == 0x79
  }
  r = ftruncate(disk, 0)
  assert r == 0
}
"#;

#[test]
fn ftruncate_and_a_racing_fault_end_in_the_page_or_sigbus() {
    let reached = events_by_label(&system(TRUNCATE_FAULT, &[]), &[mmcheck_model::ViolationKind::Fault]);
    let labelled = |label: &str| reached.get(label).cloned().unwrap_or_default();
    // Fault-around found page 0 (read around with page 1) below i_size, then mapped it under
    // the PTE lock after the size and the first unmap pass: truncate_inode_folio() finds it
    // mapped and unmaps it again.
    let unmapped = labelled("unmap_mapping_folio");
    assert!(unmapped.iter().any(|d| d.ends_with("(index 0)")), "{unmapped:?}");
    // The fault found the folio before truncation removed it: under its lock it is no
    // longer the file's ("Did it get truncated?"), and the retry finds the size gone.
    let retried = labelled("folio->mapping != mapping");
    assert!(retried.iter().any(|d| d.ends_with("left the page cache, retry_find")), "{retried:?}");
    // Or, its fault-around having found the folio locked by the other fault, it locked the
    // folio after the size changed: it rechecks i_size under the lock.
    let sizes = labelled("i_size_read");
    assert!(sizes.iter().any(|d| d.ends_with("index 1 truncated: SIGBUS")), "{sizes:?}");
    assert!(sizes.iter().any(|d| d.ends_with("beyond the end of the file")), "{sizes:?}");
}

#[test]
fn a_buffered_read_racing_ftruncate_leaves_nothing_cached_beyond_the_size() {
    // The read looks the page up before the size changes and reads it in after: the readahead
    // reads i_size again (under the invalidate_lock in the kernel), its window is empty, and
    // the quiescent page cache check finds no folio beyond i_size in any interleaving.
    let source = r#"
scenario truncate-read "ftruncate races a buffered read of the page it cuts off"
file disk size 8K fill 0x79
process p {
  buf = mmap(4K, read|write, private|anonymous)
  store(buf, 4K, 0x01)
  thread reader {
    n = pread(disk, buf, 4K, 4K, buffered)
  }
  r = ftruncate(disk, 4K)
  assert r == 0
}
"#;
    let reached = events_by_label(&system(source, &[]), &[]);
    let refused = &reached["page_cache_ra_unbounded"];
    assert!(refused.iter().any(|d| d == "indexes [1, 1): added folios []"), "{refused:?}");
    let removed = &reached["filemap_remove_folio"];
    assert!(removed.iter().any(|d| d.ends_with("(index 1)")), "{removed:?}");
}

#[test]
fn reclaim_can_empty_the_page_cache_or_leave_what_faults_hold() {
    let cached = &searched().cached_at_the_end;
    // Reclaim before the faults: they read both pages back in. After them: both mappings of
    // page 0 unmapped through the rmap and both folios freed.
    assert!(cached.contains(&vec![0, 1]), "{cached:?}");
    assert!(cached.contains(&vec![]), "{cached:?}");
    // Page 1 only copied from (do_cow_fault): reclaim may take it and leave page 0.
    assert!(cached.contains(&vec![0]), "{cached:?}");
}
