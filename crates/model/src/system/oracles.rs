//! The oracles: the model's invariants at a quiescent point (no thread inside the kernel), and
//! what the final state must satisfy (no deadlock, no leak).

use super::System;
use crate::folio::{pfn_folio, pfn_page, Folio, FolioId, Mapping, PageFlag, ZERO_FOLIO};
use crate::program::Instruction;
use crate::state::{Kernel, MmId, ThreadId};
use crate::thread::ThreadStatus;
use crate::violation::{Violation, ViolationKind};

impl System {
    /// Model invariants at a quiescent point (no thread inside the kernel): every present PTE
    /// maps an allocated folio that its rmap finds, and every page's mapcount equals the number
    /// of PTEs mapping it, each of which holds a reference.
    pub fn check_quiescent(k: &Kernel) -> Option<Violation> {
        let mut mappings = vec![Vec::new(); k.folios.len()];
        for (mm_id, mm) in k.mms.iter().enumerate() {
            for &(vpn, pte) in &mm.ptes {
                let Some(present) = pte.present().filter(|p| !p.special) else { continue };
                let (folio, page) = (pfn_folio(present.pfn), pfn_page(present.pfn));
                let f = k.folio(folio);
                if !f.allocated {
                    return Some(invariant(k, folio, format!("PTE {:#x} maps freed folio {folio}", vpn << 12)));
                }
                if !rmap_finds(k, f, mm_id as MmId, vpn << 12, page) {
                    return Some(invariant(
                        k,
                        folio,
                        format!("PTE {:#x} maps folio {folio}, which its rmap does not find there", vpn << 12),
                    ));
                }
                mappings[folio as usize].push(page);
            }
        }
        if let Some(violation) = check_swap(k).or_else(|| check_page_cache(k)) {
            return Some(violation);
        }
        let mut pmd_mappings = vec![0i32; k.folios.len()];
        for mm in &k.mms {
            for (_, pmd) in mm.pmds.iter().filter(|e| !e.1.special) {
                let folio = pfn_folio(pmd.pfn);
                if !k.folio(folio).allocated {
                    return Some(invariant(k, folio, format!("a huge PMD maps freed folio {folio}")));
                }
                pmd_mappings[folio as usize] += 1;
            }
        }
        for (id, folio) in k.folios.iter().enumerate().skip(1).filter(|(_, f)| f.allocated) {
            if folio.entire_mapcount != pmd_mappings[id] {
                let message = format!(
                    "folio {id}: entire mapcount {} but {} PMD(s) map it",
                    folio.entire_mapcount, pmd_mappings[id]
                );
                return Some(invariant(k, id as FolioId, message));
            }
        }
        for (id, folio) in k.folios.iter().enumerate().skip(1).filter(|(_, f)| f.allocated) {
            let id = id as FolioId;
            for (page, p) in folio.pages.iter().enumerate() {
                let mapped = mappings[id as usize].iter().filter(|&&m| m == page).count() as i32;
                if p.mapcount != mapped {
                    return Some(invariant(
                        k,
                        id,
                        format!("folio {id} page {page}: mapcount {} but {mapped} PTE(s) map it", p.mapcount),
                    ));
                }
            }
            if folio.refcount < folio.mapcount() {
                return Some(invariant(
                    k,
                    id,
                    format!("folio {id}: refcount {} below mapcount {}", folio.refcount, folio.mapcount()),
                ));
            }
        }
        None
    }

    /// A final state in which some thread is not done: no thread can run, so they wait for
    /// each other (or for an event nobody signals).
    pub(super) fn deadlock(&self, k: &Kernel) -> Option<Violation> {
        let blocked: Vec<String> = (0..k.threads.len())
            .filter(|&t| k.threads[t].status != ThreadStatus::Done)
            .map(|t| {
                let waiting = match k.threads[t].stack.last() {
                    Some(frame) => format!("{:?}", frame.wait(k, t as ThreadId)),
                    None => match self.spec.threads[t].program.get(k.threads[t].pc as usize) {
                        Some(Instruction::Join { .. }) => "its threads to finish".to_string(),
                        Some(Instruction::WaitEvent { event }) => format!("an event (#{event}) nobody signals"),
                        _ => "nothing".to_string(),
                    },
                };
                format!("{} ({:?}, waiting for {waiting})", self.spec.threads[t].name, k.threads[t].status)
            })
            .collect();
        if blocked.is_empty() {
            return None;
        }
        Some(Violation::new(ViolationKind::Deadlock, format!("no thread can run: {}", blocked.join(", "))))
    }
}

/// Folios still allocated once every process exited, but for reclaimable cache.
pub(super) fn leaks(k: &Kernel) -> Option<Violation> {
    let leaked: Vec<String> = k
        .folios
        .iter()
        .enumerate()
        .filter(|(id, f)| *id as FolioId != ZERO_FOLIO && f.allocated && !f.test(PageFlag::Reserved))
        // A clean folio only the swap cache or the page cache holds is reclaimable memory,
        // not a leak.
        .filter(|(_, f)| {
            let cached = f.test(PageFlag::Swapcache) || matches!(f.mapping, Mapping::File(_));
            !(cached && f.refcount == f.nr_pages() as i32 && f.mapcount() == 0)
        })
        .map(|(id, f)| f.dump(id as FolioId))
        .collect();
    if !leaked.is_empty() && k.mms.iter().all(|mm| mm.exited) {
        return Some(Violation {
            kind: ViolationKind::Leak,
            message: format!("{} folio(s) still allocated after every process exited", leaked.len()),
            dump: leaked,
        });
    }
    None
}

/// The page cache at a quiescent point: each slot's folio is allocated, says it belongs to
/// that file at that index, and holds the cache's reference; none lies beyond i_size.
fn check_page_cache(k: &Kernel) -> Option<Violation> {
    for (file, f) in k.files.iter().enumerate() {
        for (&index, &folio) in &f.cache {
            if index >= f.blocks.len() {
                let message = format!("file {file}: folio {folio} cached at index {index}, beyond i_size");
                return Some(invariant(k, folio, message));
            }
            let entry = k.folio(folio);
            let ok = entry.allocated
                && entry.mapping == Mapping::File(file as u32)
                && entry.index == index
                && entry.refcount >= entry.nr_pages() as i32 + entry.mapcount();
            if !ok {
                let message = format!("file {file} page cache index {index}: folio {folio} does not belong there");
                return Some(invariant(k, folio, message));
            }
        }
    }
    None
}

/// Swap accounting at a quiescent point: each slot's swap_map count is the number of swap PTEs
/// naming it, SWAP_HAS_CACHE is set exactly when a folio caches it, and that folio says so. The
/// header's slot stays SWAP_MAP_BAD.
fn check_swap(k: &Kernel) -> Option<Violation> {
    use crate::mm::swapfile::{swap_count, SWAP_HAS_CACHE, SWAP_MAP_BAD};
    let mut ptes = vec![0u32; k.swap.swap_map.len()];
    for mm in &k.mms {
        for (_, pte) in &mm.ptes {
            if let crate::pgtable::Pte::Swap { offset, .. } = pte {
                ptes[*offset as usize] += 1;
            }
        }
    }
    for (offset, &map) in k.swap.swap_map.iter().enumerate() {
        // A bad slot (the header's is one) is never handed out; the header's stays bad.
        let bad = map == SWAP_MAP_BAD;
        if (bad || offset == 0) && !(bad && ptes[offset] == 0 && k.swap.cache[offset].is_none()) {
            let message = format!("swap slot {offset:#x}: swap_map {map:#x}, {} swap PTE(s)", ptes[offset]);
            return Some(Violation::new(ViolationKind::Invariant, message));
        }
        if bad {
            continue;
        }
        let cached = k.swap.cache[offset];
        let cache_ok = cached.is_none_or(|f| {
            let folio = k.folio(f);
            let covers =
                folio.swap.is_some_and(|base| (base..base + folio.nr_pages() as u32).contains(&(offset as u32)));
            folio.allocated && folio.test(PageFlag::Swapcache) && covers
        });
        if u32::from(swap_count(map)) != ptes[offset] || (map & SWAP_HAS_CACHE != 0) != cached.is_some() || !cache_ok {
            let message = format!(
                "swap slot {offset:#x}: swap_map {map:#x} but {} swap PTE(s) and swap cache {cached:?}",
                ptes[offset]
            );
            let dump = cached.map(|f| vec![k.folio(f).dump(f)]).unwrap_or_default();
            return Some(Violation { kind: ViolationKind::Invariant, message, dump });
        }
    }
    None
}

fn invariant(k: &Kernel, folio: FolioId, message: String) -> Violation {
    Violation { kind: ViolationKind::Invariant, message, dump: vec![k.folio(folio).dump(folio)] }
}

/// Whether rmap_walk() of `folio` visits `address` in `mm`.
fn rmap_finds(k: &Kernel, folio: &Folio, mm: MmId, address: u64, page: usize) -> bool {
    match folio.mapping {
        Mapping::Anon(anon_vma) => {
            k.anon_vmas[anon_vma as usize].mms.contains(&mm)
                && k.mms[mm as usize].vmas.iter().any(|v| {
                    v.anon_vma == Some(anon_vma) && v.address_of_index(folio.index + page as u64) == Some(address)
                })
        }
        // A driver's page from vm_insert_page(): "there can't and never will be an rmap walk"
        // for it, so there is nothing that must find it.
        Mapping::None => !folio.test(PageFlag::Anon),
        // rmap_walk_file(): a VMA of the file that covers the folio's index at `address`.
        Mapping::File(file) => k.mms[mm as usize]
            .vmas
            .iter()
            .any(|v| v.file == Some(file) && v.address_of_index(folio.index + page as u64) == Some(address)),
    }
}
