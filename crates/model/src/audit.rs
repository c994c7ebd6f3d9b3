//! The footprint audit's diff of two kernels ([`mmcheck_explorer::Model::changed_objects`]):
//! which [`Object`]s hold a different value, named with the keys the footprints use. The
//! explorer asserts, in debug builds, that a step writes every object it changed.
//!
//! One function per kind of state, and one per object whose split is under way (the per-page
//! PageAnonExclusive bit, the per-page and entire mapcounts): when an object is split, only its
//! function changes.

use crate::access::Object;
use crate::folio::{folio_pfn, Folio, FolioId, PageFlag};
use crate::shared::Shared;
use crate::state::{Kernel, Mm, MmId, ThreadId};
use std::collections::BTreeMap;

/// Appends the key of every object whose value differs between `before` and `after`; the data
/// of `thread` (registers, frames) is its own and not named, but its status is.
pub fn changed_objects(before: &Kernel, after: &Kernel, thread: ThreadId, out: &mut Vec<u64>) {
    let mut note = |object: Object| out.push(object.key());
    folios(before, after, &mut note);
    for mm in 0..before.mms.len().min(after.mms.len()) {
        if !Shared::ptr_eq(&before.mms[mm], &after.mms[mm]) {
            address_space(mm as MmId, &before.mms[mm], &after.mms[mm], &mut note);
        }
    }
    reverse_maps_and_files(before, after, &mut note);
    lru_and_swap(before, after, &mut note);
    threads_and_events(before, after, thread, &mut note);
}

/// A readable name of an object key (the inverse of [`Object::key`], for the audit's messages).
pub fn object_name(key: u64) -> String {
    const KINDS: [&str; 30] = [
        "?",
        "Pte",
        "PteLock",
        "MmapLock",
        "Vmas",
        "Rss",
        "FolioRefcount",
        "FolioMapcount",
        "FolioPincount",
        "FolioFlag",
        "FolioMapping",
        "FolioData",
        "Allocator",
        "LruLock",
        "Lru",
        "AnonVma",
        "AnonVmaLock",
        "File",
        "ThreadStatus",
        "ScenarioEvent",
        "FolioAllocated",
        "FolioSwap",
        "SwapMap",
        "SwapCache",
        "SwapData",
        "Uffd",
        "Pmd",
        "PageCompound",
        "LazyfreeBatch",
        "PageCache",
    ];
    let kind = KINDS.get((key >> 56) as usize).copied().unwrap_or("?");
    let (a, b) = ((key >> 32) & 0xff_ffff, key & 0xffff_ffff);
    match kind {
        "FolioFlag" => format!("{kind}({a}, {})", PageFlag::ALL.get(b as usize).map_or("?", |f| f.name())),
        _ => format!("{kind}({a}, {b:#x})"),
    }
}

fn folios(before: &Kernel, after: &Kernel, note: &mut impl FnMut(Object)) {
    if before.folios.len() != after.folios.len() || before.huge_zero_folio != after.huge_zero_folio {
        // Folio numbers come from the allocator (the huge zero folio is allocated once).
        note(Object::Allocator);
    }
    for id in before.folios.differing(&after.folios) {
        folio(id as FolioId, &before.folios[id], &after.folios[id], note);
    }
}

fn folio(id: FolioId, before: &Folio, after: &Folio, note: &mut impl FnMut(Object)) {
    let mut differs = |changed: bool, object: Object| {
        if changed {
            note(object);
        }
    };
    differs(before.allocated != after.allocated, Object::FolioAllocated(id));
    differs(
        before.order != after.order || before.pages.len() != after.pages.len(),
        Object::PageCompound(folio_pfn(id, 0)),
    );
    differs(before.refcount != after.refcount, Object::FolioRefcount(id));
    differs(before.pincount != after.pincount, Object::FolioPincount(id));
    differs((before.mapping, before.index) != (after.mapping, after.index), Object::FolioMapping(id));
    differs(before.swap != after.swap, Object::FolioSwap(id));
    for flag in PageFlag::ALL {
        differs(before.test(flag) != after.test(flag), Object::FolioFlag(id, flag));
    }
    differs(before.entire_mapcount != after.entire_mapcount, entire_mapcount_object(id));
    for (page, (b, a)) in before.pages.iter().zip(&after.pages).enumerate() {
        differs(b.mapcount != a.mapcount, page_mapcount_object(id, page));
        differs(b.anon_exclusive != a.anon_exclusive, anon_exclusive_object(id, page));
        differs(b.data != a.data, Object::FolioData(id, page as u16));
    }
}

/// `_entire_mapcount`.
fn entire_mapcount_object(folio: FolioId) -> Object {
    Object::EntireMapcount(folio)
}

/// A page's `_mapcount`.
fn page_mapcount_object(folio: FolioId, page: usize) -> Object {
    Object::PageMapcount(folio, page as u16)
}

/// PageAnonExclusive of a page: a bit of that page, not of the folio.
fn anon_exclusive_object(folio: FolioId, page: usize) -> Object {
    Object::PageAnonExclusive(folio, page as u16)
}

fn address_space(mm: MmId, before: &Mm, after: &Mm, note: &mut impl FnMut(Object)) {
    if *before.vmas != *after.vmas || before.mmap_next != after.mmap_next || before.exited != after.exited {
        note(Object::Vmas(mm));
    }
    if before.mmap_lock != after.mmap_lock {
        note(Object::MmapLock(mm));
    }
    if (before.rss_anon, before.rss_file, before.rss_swap) != (after.rss_anon, after.rss_file, after.rss_swap) {
        note(Object::Rss(mm));
    }
    if before.ptes != after.ptes {
        differing_entries(before.ptes.iter().copied(), after.ptes.iter().copied(), |vpn| note(Object::Pte(mm, vpn)));
    }
    differing_entries(before.ptl_held.iter().copied(), after.ptl_held.iter().copied(), |table| {
        note(Object::PteLock(mm, table))
    });
    // pmd_none() reads both the huge PMD and whether a PTE table is allocated.
    differing_entries(before.pmds.iter().copied(), after.pmds.iter().copied(), |index| note(Object::Pmd(mm, index)));
    let tables = |m: &Mm| m.pte_tables.iter().map(|&table| (table, ())).collect::<Vec<_>>();
    differing_entries(tables(before).into_iter(), tables(after).into_iter(), |table| note(Object::Pmd(mm, table)));
}

/// Calls `changed` with every key whose value differs between two lists of (key, value).
fn differing_entries<V: PartialEq>(
    before: impl Iterator<Item = (u64, V)>,
    after: impl Iterator<Item = (u64, V)>,
    mut changed: impl FnMut(u64),
) {
    let before: BTreeMap<u64, V> = before.collect();
    let after: BTreeMap<u64, V> = after.collect();
    for (key, value) in &before {
        if after.get(key) != Some(value) {
            changed(*key);
        }
    }
    for key in after.keys().filter(|key| !before.contains_key(key)) {
        changed(*key);
    }
}

/// Calls `changed` with every index whose value differs between two slices (an index only one
/// has differs).
fn differing_slots<V: PartialEq>(before: &[V], after: &[V], mut changed: impl FnMut(u64)) {
    for index in 0..before.len().max(after.len()) {
        if before.get(index) != after.get(index) {
            changed(index as u64);
        }
    }
}

fn reverse_maps_and_files(before: &Kernel, after: &Kernel, note: &mut impl FnMut(Object)) {
    if before.anon_vmas.len() != after.anon_vmas.len() || before.mms.len() != after.mms.len() {
        note(Object::Allocator);
    }
    for (id, (b, a)) in before.anon_vmas.iter().zip(&after.anon_vmas).enumerate() {
        if b.mms != a.mms {
            note(Object::AnonVma(id as u32));
        }
        if b.rwsem != a.rwsem {
            note(Object::AnonVmaLock(id as u32));
        }
    }
    for (id, (b, a)) in before.files.iter().zip(&after.files).enumerate() {
        if b.blocks != a.blocks {
            note(Object::File(id as u32));
        }
        let cache = |f: &crate::state::File| f.cache.clone().into_iter();
        differing_entries(cache(b), cache(a), |index| note(Object::PageCache(id as u32, index)));
    }
    differing_slots(&before.uffds, &after.uffds, |uffd| note(Object::Uffd(uffd as u32)));
    let split = |k: &Kernel| k.split_pages.to_vec();
    differing_entries(split(before).into_iter(), split(after).into_iter(), |pfn| note(Object::PageCompound(pfn)));
}

fn lru_and_swap(before: &Kernel, after: &Kernel, note: &mut impl FnMut(Object)) {
    if before.lruvec.lru_lock != after.lruvec.lru_lock {
        note(Object::LruLock);
    }
    if before.lruvec.folios != after.lruvec.folios {
        note(Object::Lru);
    }
    if *before.lru_lazyfree != *after.lru_lazyfree {
        note(Object::LazyfreeBatch);
    }
    let (b, a) = (&before.swap, &after.swap);
    differing_slots(&b.swap_map, &a.swap_map, |offset| note(Object::SwapMap(offset as u32)));
    differing_slots(&b.cache, &a.cache, |offset| note(Object::SwapCache(offset as u32)));
    differing_slots(&b.data, &a.data, |offset| note(Object::SwapData(offset as u32)));
}

/// Another thread's data changed by a step is shared with it (a spawn sets the child's status
/// and registers): the audit names it by the thread's status object.
fn threads_and_events(before: &Kernel, after: &Kernel, thread: ThreadId, note: &mut impl FnMut(Object)) {
    for (id, (b, a)) in before.threads.iter().zip(&after.threads).enumerate() {
        let changed = match id as ThreadId == thread {
            true => b.status != a.status,
            false => !Shared::ptr_eq(b, a) && **b != **a,
        };
        if changed {
            note(Object::ThreadStatus(id as ThreadId));
        }
    }
    for event in (0..64u8).filter(|&e| (before.events ^ after.events) & (1 << e) != 0) {
        note(Object::ScenarioEvent(event));
    }
}
