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
    /// A migration entry for `pfn` (readable or writable).
    Migration {
        pfn: Pfn,
        write: bool,
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
            Pte::Migration { pfn, write } => format!("migration pfn {pfn:#x}{}", if *write { " write" } else { "" }),
        }
    }
}

/// PTEs per page-table page (x86-64): the split PTE lock covers one table.
pub const PTRS_PER_PTE: u64 = 512;

pub fn pte_table(vpn: u64) -> u64 {
    vpn / PTRS_PER_PTE
}
