//! Page table entries: arch/x86/include/asm/pgtable.h and include/linux/swapops.h, reduced to
//! the bits the modelled code paths test. The PTE level is modelled; a PMD level for THP can be
//! added beside it (a `Pmd` entry kind per 2 MiB table) without changing the PTE users.

use crate::folio::Pfn;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresentPte {
    pub pfn: Pfn,
    pub write: bool,
    pub dirty: bool,
    pub young: bool,
    /// pte_special(): no refcounted struct page behind it (zero page, PFN maps).
    pub special: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pte {
    None,
    Present(PresentPte),
    /// A swap entry (type, offset) with the exclusive bit.
    Swap {
        offset: u32,
        exclusive: bool,
    },
    /// A migration entry for `pfn`: writable, readable-exclusive (`exclusive`, the page was
    /// PageAnonExclusive) or readable (include/linux/swapops.h).
    Migration {
        pfn: Pfn,
        write: bool,
        exclusive: bool,
        /// The PTE's young and dirty bits (2e3468778dbe, 6.1; always clear before).
        young: bool,
        dirty: bool,
    },
}

impl Pte {
    pub fn present(&self) -> Option<PresentPte> {
        match self {
            Pte::Present(present) => Some(*present),
            _ => None,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Pte::None)
    }

    pub fn describe(&self) -> String {
        match self {
            Pte::None => "none".to_string(),
            Pte::Present(p) => format!(
                "pfn {:#x}{}{}{}{}",
                p.pfn,
                if p.write { " write" } else { " ro" },
                if p.dirty { " dirty" } else { "" },
                if p.young { " young" } else { "" },
                if p.special { " special" } else { "" }
            ),
            Pte::Swap { offset, exclusive } => {
                format!("swap {offset:#x}{}", if *exclusive { " exclusive" } else { "" })
            }
            Pte::Migration { pfn, write, exclusive, .. } => format!(
                "migration pfn {pfn:#x}{}",
                if *write {
                    " write"
                } else if *exclusive {
                    " exclusive"
                } else {
                    ""
                }
            ),
        }
    }
}

/// PTEs per page-table page (x86-64): the split PTE lock covers one table.
pub const PTRS_PER_PTE: u64 = 512;

pub fn pte_table(vpn: u64) -> u64 {
    vpn / PTRS_PER_PTE
}

/// Up to `PTE_CHUNK` (vpn, PTE) entries, sorted by vpn.
type PteChunk = crate::shared::Shared<Vec<(u64, Pte)>>;

/// PTEs per chunk of a [`PageTable`]: a PTE change copies and rehashes one chunk.
const PTE_CHUNK: u64 = 16;

/// The PTEs of an address space that are not none, in chunks of 16 virtual pages shared
/// between states (copy on write).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PageTable {
    /// (vpn / PTE_CHUNK, the chunk's entries sorted by vpn), sorted by chunk.
    chunks: Vec<(u64, PteChunk)>,
}

impl PageTable {
    pub fn get(&self, vpn: u64) -> Pte {
        let Ok(chunk) = self.chunks.binary_search_by_key(&(vpn / PTE_CHUNK), |c| c.0) else {
            return Pte::None;
        };
        let entries = &self.chunks[chunk].1;
        match entries.binary_search_by_key(&vpn, |e| e.0) {
            Ok(index) => entries[index].1,
            Err(_) => Pte::None,
        }
    }

    pub fn set(&mut self, vpn: u64, pte: Pte) {
        let key = vpn / PTE_CHUNK;
        let chunk = match self.chunks.binary_search_by_key(&key, |c| c.0) {
            Ok(chunk) => chunk,
            Err(_) if pte.is_none() => return,
            Err(at) => {
                self.chunks.insert(at, (key, crate::shared::Shared::new(Vec::new())));
                at
            }
        };
        let entries = self.chunks[chunk].1.make_mut();
        match (entries.binary_search_by_key(&vpn, |e| e.0), pte) {
            (Ok(index), Pte::None) => {
                entries.remove(index);
            }
            (Ok(index), pte) => entries[index].1 = pte,
            (Err(_), Pte::None) => {}
            (Err(index), pte) => entries.insert(index, (vpn, pte)),
        }
        if entries.is_empty() {
            self.chunks.remove(chunk);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u64, Pte)> {
        self.chunks.iter().flat_map(|c| c.1.iter())
    }

    /// The entries in `[first_vpn, last_vpn)`, found from the chunks that exist: the cost is
    /// theirs, not the range's length.
    pub fn range(&self, first_vpn: u64, last_vpn: u64) -> impl Iterator<Item = &(u64, Pte)> {
        let from = self.chunks.partition_point(|c| c.0 < first_vpn / PTE_CHUNK);
        self.chunks[from..]
            .iter()
            .take_while(move |c| c.0 <= last_vpn.saturating_sub(1) / PTE_CHUNK && last_vpn > first_vpn)
            .flat_map(|c| c.1.iter())
            .filter(move |e| first_vpn <= e.0 && e.0 < last_vpn)
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.1.len()).sum()
    }
}

impl std::ops::Index<usize> for PageTable {
    type Output = (u64, Pte);

    fn index(&self, index: usize) -> &(u64, Pte) {
        self.iter().nth(index).expect("index within the PTEs that are not none")
    }
}

impl<'a> IntoIterator for &'a PageTable {
    type Item = &'a (u64, Pte);
    type IntoIter = Box<dyn Iterator<Item = &'a (u64, Pte)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
