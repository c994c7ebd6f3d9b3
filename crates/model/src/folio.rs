//! Folios and pages: include/linux/mm_types.h (struct folio, struct page),
//! include/linux/page-flags.h (the flags), include/linux/page_ref.h (the refcount).
//!
//! A folio here is the unit the kernel reference-counts and maps. Page frame numbers encode the
//! folio and the page inside it (`pfn = folio << PFN_FOLIO_SHIFT | page`), so a folio's pfns are
//! contiguous and `pfn_folio` is a shift. Folios are never reused: a freed folio keeps its slot,
//! which is how an access to a freed folio is detected.

use serde::{Deserialize, Serialize};

pub type FolioId = u32;
pub type Pfn = u64;

pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_SHIFT: u32 = 12;
/// Bits of a pfn that name the page inside its folio (orders up to 9: 2 MiB).
pub const PFN_FOLIO_SHIFT: u32 = 9;
/// The shared zero page is folio 0.
pub const ZERO_FOLIO: FolioId = 0;
/// include/linux/mm.h: GUP_PIN_COUNTING_BIAS.
pub const GUP_PIN_COUNTING_BIAS: i32 = 1024;

pub fn pfn_folio(pfn: Pfn) -> FolioId {
    (pfn >> PFN_FOLIO_SHIFT) as FolioId
}

pub fn pfn_page(pfn: Pfn) -> usize {
    (pfn & ((1 << PFN_FOLIO_SHIFT) - 1)) as usize
}

pub fn folio_pfn(folio: FolioId, page: usize) -> Pfn {
    (u64::from(folio) << PFN_FOLIO_SHIFT) | page as u64
}

/// include/linux/page-flags.h: enum pageflags (those the modelled paths read or write), and
/// PageAnonExclusive which lives per page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum PageFlag {
    Locked = 0,
    Referenced,
    Uptodate,
    Dirty,
    Lru,
    Active,
    Workingset,
    Writeback,
    Swapbacked,
    Swapcache,
    Anon,
    LargeRmappable,
    Unevictable,
    /// PG_reserved: memory the page allocator never hands out (device memory behind raw
    /// pfns here); never freed, never on the LRU.
    Reserved,
}

impl PageFlag {
    pub const ALL: [PageFlag; 14] = [
        PageFlag::Locked,
        PageFlag::Referenced,
        PageFlag::Uptodate,
        PageFlag::Dirty,
        PageFlag::Lru,
        PageFlag::Active,
        PageFlag::Workingset,
        PageFlag::Writeback,
        PageFlag::Swapbacked,
        PageFlag::Swapcache,
        PageFlag::Anon,
        PageFlag::LargeRmappable,
        PageFlag::Unevictable,
        PageFlag::Reserved,
    ];

    /// The name `dump_page` prints (mm/debug.c, include/trace/events/mmflags.h).
    pub fn name(self) -> &'static str {
        match self {
            PageFlag::Locked => "locked",
            PageFlag::Referenced => "referenced",
            PageFlag::Uptodate => "uptodate",
            PageFlag::Dirty => "dirty",
            PageFlag::Lru => "lru",
            PageFlag::Active => "active",
            PageFlag::Workingset => "workingset",
            PageFlag::Writeback => "writeback",
            PageFlag::Swapbacked => "swapbacked",
            PageFlag::Swapcache => "swapcache",
            PageFlag::Anon => "anon",
            PageFlag::LargeRmappable => "large_rmappable",
            PageFlag::Unevictable => "unevictable",
            PageFlag::Reserved => "reserved",
        }
    }

    pub fn mask(self) -> u32 {
        1 << (self as u8)
    }
}

/// What `folio->mapping` points at (the PAGE_MAPPING_ANON bit distinguishes anon_vma).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mapping {
    None,
    Anon(u32),
    File(u32),
}

/// Byte contents of one page, run-length encoded: reads return exactly what was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PageData {
    Fill(u8),
    /// Sorted runs `(start, byte)`; the first starts at 0; each runs to the next start.
    Runs(Vec<(u16, u8)>),
}

impl PageData {
    /// Whether every byte is zero (pages_identical(page, ZERO_PAGE(0))).
    pub fn is_zero(&self) -> bool {
        self.runs().iter().all(|&(_, byte)| byte == 0)
    }

    pub fn runs(&self) -> Vec<(u16, u8)> {
        match self {
            PageData::Fill(byte) => vec![(0, *byte)],
            PageData::Runs(runs) => runs.clone(),
        }
    }

    /// The bytes of `[start, start + len)` as runs: (offset from `start`, length, byte).
    pub fn runs_in(&self, start: usize, len: usize) -> Vec<(usize, usize, u8)> {
        let runs = self.runs();
        let mut out = Vec::new();
        for (index, &(run_start, byte)) in runs.iter().enumerate() {
            let run_end = runs.get(index + 1).map_or(PAGE_SIZE as usize, |r| usize::from(r.0));
            let (from, to) = (usize::from(run_start).max(start), run_end.min(start + len));
            if from < to {
                out.push((from - start, to - from, byte));
            }
        }
        out
    }

    /// Writes `byte` over `[start, start + len)` (within the page).
    pub fn fill(&mut self, start: usize, len: usize, byte: u8) {
        if start == 0 && len == PAGE_SIZE as usize {
            *self = PageData::Fill(byte);
            return;
        }
        let end = start + len;
        let old = self.runs();
        let byte_at = |offset: usize| old.iter().rev().find(|(s, _)| usize::from(*s) <= offset).map_or(0, |r| r.1);
        let mut runs: Vec<(u16, u8)> = old.iter().copied().filter(|(s, _)| usize::from(*s) < start).collect();
        runs.push((start as u16, byte));
        if end < PAGE_SIZE as usize {
            runs.push((end as u16, byte_at(end)));
            runs.extend(old.iter().copied().filter(|(s, _)| usize::from(*s) > end));
        }
        runs.dedup_by(|later, earlier| later.1 == earlier.1);
        *self = if runs.len() == 1 { PageData::Fill(runs[0].1) } else { PageData::Runs(runs) };
    }

    /// The first offset in `[start, start + len)` whose byte differs from `byte`, with that byte.
    pub fn first_mismatch(&self, start: usize, len: usize, byte: u8) -> Option<(usize, u8)> {
        let runs = self.runs();
        for (index, &(run_start, run_byte)) in runs.iter().enumerate() {
            let run_end = runs.get(index + 1).map_or(PAGE_SIZE as usize, |r| usize::from(r.0));
            let from = usize::from(run_start).max(start);
            let to = run_end.min(start + len);
            if from < to && run_byte != byte {
                return Some((from, run_byte));
            }
        }
        None
    }
}

/// One struct page of a folio: the fields kept per page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Page {
    /// Number of PTE mappings of this page (the kernel stores `_mapcount` as this minus one).
    pub mapcount: i32,
    pub anon_exclusive: bool,
    pub data: PageData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LruList {
    InactiveAnon,
    ActiveAnon,
    InactiveFile,
    ActiveFile,
}

impl LruList {
    pub fn name(self) -> &'static str {
        match self {
            LruList::InactiveAnon => "inactive_anon",
            LruList::ActiveAnon => "active_anon",
            LruList::InactiveFile => "inactive_file",
            LruList::ActiveFile => "active_file",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Folio {
    /// False once the folio went back to the page allocator.
    pub allocated: bool,
    pub order: u8,
    pub flags: u32,
    pub refcount: i32,
    /// `_entire_mapcount`: PMD mappings of a large folio.
    pub entire_mapcount: i32,
    /// `_pincount` of a large folio (small folios count pins in the refcount bias).
    pub pincount: i32,
    pub mapping: Mapping,
    pub index: u64,
    /// `folio->swap`: the swap entry (offset) while PG_swapcache is set.
    pub swap: Option<u32>,
    pub pages: Vec<Page>,
}

impl Folio {
    pub fn new(order: u8) -> Folio {
        let page = Page { mapcount: 0, anon_exclusive: false, data: PageData::Fill(0) };
        Folio {
            allocated: true,
            order,
            flags: 0,
            refcount: 1,
            entire_mapcount: 0,
            pincount: 0,
            mapping: Mapping::None,
            index: 0,
            swap: None,
            pages: vec![page; 1 << order],
        }
    }

    pub fn nr_pages(&self) -> usize {
        self.pages.len()
    }

    pub fn test(&self, flag: PageFlag) -> bool {
        self.flags & flag.mask() != 0
    }

    /// include/linux/mm.h: folio_mapcount(): every PTE mapping plus every PMD mapping (a PMD
    /// mapping counts once, as `_large_mapcount` does).
    pub fn mapcount(&self) -> i32 {
        self.pages.iter().map(|p| p.mapcount).sum::<i32>() + self.entire_mapcount
    }

    /// `dump_page()`-style line: mm/debug.c __dump_folio().
    pub fn dump(&self, id: FolioId) -> String {
        let flags: Vec<&str> = PageFlag::ALL.iter().filter(|f| self.test(**f)).map(|f| f.name()).collect();
        let mapping = match self.mapping {
            Mapping::None => "mapping:0".to_string(),
            Mapping::Anon(anon_vma) => format!("mapping:anon_vma{anon_vma}"),
            Mapping::File(file) => format!("mapping:file{file}"),
        };
        // __dump_folio(): "entire_mapcount:%d pincount:%d" for large folios.
        let large = if self.order > 0 {
            format!(" entire_mapcount:{} pincount:{}", self.entire_mapcount, self.pincount)
        } else {
            String::new()
        };
        format!(
            "page: refcount:{} mapcount:{}{large} {} index:{:#x} pfn:{:#x} order:{} flags: {}{}",
            self.refcount,
            self.mapcount(),
            mapping,
            self.index,
            folio_pfn(id, 0),
            self.order,
            if flags.is_empty() { "none".to_string() } else { flags.join("|") },
            if self.allocated { "" } else { " (freed)" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_data_reads_what_was_written() {
        let mut data = PageData::Fill(0);
        data.fill(10, 20, 7);
        assert_eq!(data.first_mismatch(10, 20, 7), None);
        assert_eq!(data.first_mismatch(0, 11, 0), Some((10, 7)));
        assert_eq!(data.first_mismatch(30, 4066, 0), None);
        data.fill(0, 4096, 9);
        assert_eq!(data, PageData::Fill(9));
        data.fill(4000, 96, 1);
        data.fill(0, 4000, 1);
        assert_eq!(data, PageData::Fill(1));
    }

    #[test]
    fn pfn_round_trip() {
        let pfn = folio_pfn(12, 3);
        assert_eq!(pfn_folio(pfn), 12);
        assert_eq!(pfn_page(pfn), 3);
    }
}
