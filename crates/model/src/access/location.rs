//! The memory locations of the modelled kernel, each with the type of value it holds. A
//! location names its [`Object`] and is the one place its value is read from ([`Location::get`])
//! and written to ([`Location::set`]) in [`Kernel`]; [`super::Ctx`] reaches every value through
//! these two paths only, so that a weak-memory model can later give a location a history of
//! stored values by changing them, not their callers.

use super::Object;
use crate::folio::{folio_pfn, FolioId, LruList, Mapping, PageData, PageFlag, Pfn};
use crate::pgtable::{PresentPte, Pte};
use crate::state::{AnonVmaId, FileId, Kernel, MmId, RwSem, ThreadId, Userfaultfd, Vma};

pub(super) trait Location: Copy {
    type Value: Clone + PartialEq + 'static;
    fn object(self) -> Object;
    fn get(self, k: &Kernel) -> Self::Value;
    fn set(self, k: &mut Kernel, value: Self::Value);
}

/// Declares a location type: its fields, its value's type, its object, and its get and set.
macro_rules! location {
    ($(#[$doc:meta])* $name:ident ($($field:ident: $ty:ty),*) -> $value:ty, $object:expr,
     |$k:ident| $get:expr, |$km:ident, $v:ident| $set:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(super) struct $name($(pub $ty),*);
        impl Location for $name {
            type Value = $value;
            fn object(self) -> Object {
                let $name($($field),*) = self;
                $object
            }
            fn get(self, $k: &Kernel) -> $value {
                let $name($($field),*) = self;
                $get
            }
            fn set(self, $km: &mut Kernel, $v: $value) {
                let $name($($field),*) = self;
                $set
            }
        }
    };
}

location!(
    /// A PTE.
    PteEntry(mm: MmId, vpn: u64) -> Pte, Object::Pte(mm, vpn),
    |k| k.mms[mm as usize].pte(vpn),
    |k, pte| k.mm_mut(mm).ptes.set(vpn, pte)
);

/// A PMD: a huge mapping, or whether it points to a PTE table (pte_alloc() happened).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmdEntry {
    pub huge: Option<PresentPte>,
    pub table: bool,
}

location!(
    /// A PMD, by pmd index (`vpn / PTRS_PER_PTE`): the huge entry and the PTE table bit.
    PmdSlot(mm: MmId, index: u64) -> PmdEntry, Object::Pmd(mm, index),
    |k| {
        let m = &k.mms[mm as usize];
        PmdEntry { huge: m.pmd(index), table: m.pte_tables.binary_search(&index).is_ok() }
    },
    |k, entry| {
        let m = k.mm_mut(mm);
        let pmds = m.pmds.make_mut();
        pmds.retain(|e| e.0 != index);
        if let Some(huge) = entry.huge {
            pmds.push((index, huge));
            pmds.sort_by_key(|e| e.0);
        }
        match (m.pte_tables.binary_search(&index), entry.table) {
            (Err(at), true) => m.pte_tables.make_mut().insert(at, index),
            (Ok(at), false) => {
                m.pte_tables.make_mut().remove(at);
            }
            _ => {}
        }
    }
);

location!(
    /// A split PTE lock's owner, by page table index.
    PteLockWord(mm: MmId, table: u64) -> Option<ThreadId>, Object::PteLock(mm, table),
    |k| k.mms[mm as usize].ptl_owner(table),
    |k, owner| {
        let held = &mut k.mm_mut(mm).ptl_held;
        held.retain(|e| e.0 != table);
        if let Some(owner) = owner {
            held.push((table, owner));
            held.sort_unstable();
        }
    }
);

location!(
    MmapLockWord(mm: MmId) -> RwSem, Object::MmapLock(mm),
    |k| k.mms[mm as usize].mmap_lock,
    |k, sem| k.mm_mut(mm).mmap_lock = sem
);

/// What the VMA tree of an mm holds: the VMAs, where get_unmapped_area() places the next
/// mapping, and whether exit_mmap() tore the address space down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmaTree {
    pub vmas: crate::shared::Shared<Vec<Vma>>,
    pub mmap_next: u64,
    pub exited: bool,
}

location!(
    VmaList(mm: MmId) -> VmaTree, Object::Vmas(mm),
    |k| {
        let m = &k.mms[mm as usize];
        VmaTree { vmas: m.vmas.clone(), mmap_next: m.mmap_next, exited: m.exited }
    },
    |k, tree| {
        let m = k.mm_mut(mm);
        (m.vmas, m.mmap_next, m.exited) = (tree.vmas, tree.mmap_next, tree.exited);
    }
);

/// include/linux/mm_types_task.h: the rss counters, indexed by MM_ANONPAGES, MM_FILEPAGES and
/// MM_SWAPENTS.
pub const MM_ANONPAGES: usize = 0;
pub const MM_FILEPAGES: usize = 1;
pub const MM_SWAPENTS: usize = 2;

location!(
    RssCounters(mm: MmId) -> [i64; 3], Object::Rss(mm),
    |k| {
        let m = &k.mms[mm as usize];
        [m.rss_anon, m.rss_file, m.rss_swap]
    },
    |k, rss| {
        let m = k.mm_mut(mm);
        [m.rss_anon, m.rss_file, m.rss_swap] = rss;
    }
);

/// Declares a location that is one field of a folio.
macro_rules! folio_field {
    ($(#[$doc:meta])* $name:ident, $object:ident, $field:ident: $value:ty) => {
        location!(
            $(#[$doc])* $name(folio: FolioId) -> $value, Object::$object(folio),
            |k| k.folio(folio).$field,
            |k, value| k.folio_mut(folio).$field = value
        );
    };
}

/// Declares a location that is one field of one page of a folio.
macro_rules! page_field {
    ($(#[$doc:meta])* $name:ident, $object:ident, $field:ident: $value:ty) => {
        location!(
            $(#[$doc])* $name(folio: FolioId, page: usize) -> $value, Object::$object(folio, page as u16),
            |k| k.folio(folio).pages[page].$field,
            |k, value| k.folio_mut(folio).pages[page].$field = value
        );
    };
}

folio_field!(Refcount, FolioRefcount, refcount: i32);
folio_field!(Pincount, FolioPincount, pincount: i32);
folio_field!(EntireMapcount, EntireMapcount, entire_mapcount: i32);
folio_field!(Allocated, FolioAllocated, allocated: bool);
folio_field!(FolioSwapEntry, FolioSwap, swap: Option<u32>);
page_field!(
    /// A page's `_mapcount` (plus one).
    PageMapcount, PageMapcount, mapcount: i32
);
page_field!(
    /// PageAnonExclusive of one page (a bit of the page's own flags, not the folio's).
    AnonExclusive, PageAnonExclusive, anon_exclusive: bool
);

location!(
    FlagBit(folio: FolioId, flag: PageFlag) -> bool, Object::FolioFlag(folio, flag),
    |k| k.folio(folio).test(flag),
    |k, value| {
        let f = k.folio_mut(folio);
        if value {
            f.flags |= flag.mask();
        } else {
            f.flags &= !flag.mask();
        }
    }
);

location!(
    /// `folio->mapping` and `folio->index`.
    MappingIndex(folio: FolioId) -> (Mapping, u64), Object::FolioMapping(folio),
    |k| (k.folio(folio).mapping, k.folio(folio).index),
    |k, value| {
        let f = k.folio_mut(folio);
        (f.mapping, f.index) = value;
    }
);

location!(
    PageBytes(folio: FolioId, page: usize) -> PageData, Object::FolioData(folio, page as u16),
    |k| k.folio(folio).pages[page].data.clone(),
    |k, data| k.folio_mut(folio).pages[page].data = data
);

location!(
    /// The folio's order, kept in its head page (PG_head and `_flags_1`): splitting makes it 0
    /// and drops the tail pages.
    FolioOrder(folio: FolioId) -> u8, Object::PageCompound(folio_pfn(folio, 0)),
    |k| k.folio(folio).order,
    |k, order| {
        let f = k.folio_mut(folio);
        f.order = order;
        f.pages.truncate(1 << order);
    }
);

location!(
    /// A page's `compound_head`: the folio it belongs to and its index there. Only a page split
    /// off a THP changes it, to the folio of its own (index 0); a head page's never changes, so
    /// this location and [`FolioOrder`] of its folio never hold conflicting values.
    CompoundHead(pfn: Pfn) -> (FolioId, usize), Object::PageCompound(pfn),
    |k| k.page_folio(pfn),
    |k, head| {
        let folio = head.0;
        let split = k.split_pages.make_mut();
        if let Err(at) = split.binary_search_by_key(&pfn, |e| e.0) {
            split.insert(at, (pfn, folio));
        }
    }
);

location!(
    SwapMapCount(offset: u32) -> u8, Object::SwapMap(offset),
    |k| k.swap.swap_map[offset as usize],
    |k, count| k.swap.make_mut().swap_map[offset as usize] = count
);

location!(
    SwapCacheSlot(offset: u32) -> Option<FolioId>, Object::SwapCache(offset),
    |k| k.swap.cache[offset as usize],
    |k, folio| k.swap.make_mut().cache[offset as usize] = folio
);

location!(
    SwapSlotData(offset: u32) -> PageData, Object::SwapData(offset),
    |k| k.swap.data[offset as usize].clone(),
    |k, data| k.swap.make_mut().data[offset as usize] = data
);

location!(
    LruFolios() -> Vec<(FolioId, LruList)>, Object::Lru,
    |k| k.lruvec.folios.clone(),
    |k, folios| k.lruvec.make_mut().folios = folios
);

location!(
    LruLockWord() -> Option<ThreadId>, Object::LruLock,
    |k| k.lruvec.lru_lock.owner,
    |k, owner| k.lruvec.make_mut().lru_lock.owner = owner
);

location!(
    LazyfreeFolios() -> crate::shared::Shared<Vec<FolioId>>, Object::LazyfreeBatch,
    |k| k.lru_lazyfree.clone(),
    |k, batch| k.lru_lazyfree = batch
);

location!(
    /// The mms an anon_vma's chain reaches.
    AnonVmaChain(anon_vma: AnonVmaId) -> Vec<MmId>, Object::AnonVma(anon_vma),
    |k| k.anon_vmas[anon_vma as usize].mms.clone(),
    |k, mms| k.anon_vma_mut(anon_vma).mms = mms
);

location!(
    AnonVmaLockWord(anon_vma: AnonVmaId) -> RwSem, Object::AnonVmaLock(anon_vma),
    |k| k.anon_vmas[anon_vma as usize].rwsem,
    |k, sem| k.anon_vma_mut(anon_vma).rwsem = sem
);

location!(
    /// A file's blocks on the device (its size is their number).
    FileBlocks(file: FileId) -> crate::state::FileContents, Object::File(file),
    |k| k.files[file as usize].blocks.clone(),
    |k, blocks| k.files[file as usize].make_mut().blocks = blocks
);

location!(
    PageCacheSlot(file: FileId, index: u64) -> Option<FolioId>, Object::PageCache(file, index),
    |k| k.files[file as usize].cached(index),
    |k, folio| {
        let cache = &mut k.files[file as usize].make_mut().cache;
        match folio {
            Some(folio) => cache.insert(index, folio),
            None => cache.remove(&index),
        };
    }
);

location!(
    /// A userfaultfd context (None before userfaultfd(2) made it).
    UffdContext(uffd: u32) -> Option<Userfaultfd>, Object::Uffd(uffd),
    |k| k.uffds.get(uffd as usize).map(|u| (**u).clone()),
    |k, value| {
        let value = value.expect("a userfaultfd context is never freed");
        match k.uffds.get_mut(uffd as usize) {
            Some(existing) => *existing.make_mut() = value,
            None => k.uffds.push(crate::shared::Shared::new(value)),
        }
    }
);

location!(
    ScenarioEventBit(event: u8) -> bool, Object::ScenarioEvent(event),
    |k| k.events & (1 << event) != 0,
    |k, value| {
        if value {
            k.events |= 1 << event;
        } else {
            k.events &= !(1 << event);
        }
    }
);

location!(
    /// mm/huge_memory.c: `huge_zero_folio`.
    HugeZeroFolioPointer() -> Option<FolioId>, Object::HugeZeroFolio,
    |k| k.huge_zero_folio,
    |k, folio| k.huge_zero_folio = folio
);

location!(
    /// A thread's status (NotStarted, Running, Done), which Join and the scheduler read.
    Status(thread: ThreadId) -> crate::thread::ThreadStatus, Object::ThreadStatus(thread),
    |k| k.thread(thread).status,
    |k, status| k.thread_mut(thread).status = status
);
