//! The modelled kernel's shared state: physical memory, address spaces, reverse maps, files,
//! the LRU and the threads. Everything here is plain data: cloned per explored state, hashed
//! into the state's fingerprint, and accessed by the kernel code only through [`crate::access::Ctx`].
//!
//! Locks are runtime data (an owner or a reader count), never Rust types: an interleaving that
//! takes them in a buggy order must be representable.

use crate::folio::{Folio, FolioId, LruList, PageData};
use crate::pgtable::Pte;
use crate::shared::{ChunkedVec, Shared};
use crate::thread::Thread;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type MmId = u32;
pub type FileId = u32;
pub type AnonVmaId = u32;
pub type ThreadId = u32;
pub type DeviceId = u32;

/// include/linux/spinlock.h: a spinlock (or any exclusive lock), owned by one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpinLock {
    pub owner: Option<ThreadId>,
}

/// include/linux/rwsem.h: a reader-writer semaphore (mmap_lock, anon_vma->rwsem).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RwSem {
    pub writer: Option<ThreadId>,
    pub readers: u8,
}

/// include/linux/mm.h: vm_flags bits used by the modelled paths.
pub mod vm_flags {
    pub const VM_READ: u32 = 0x1;
    pub const VM_WRITE: u32 = 0x2;
    pub const VM_EXEC: u32 = 0x4;
    pub const VM_SHARED: u32 = 0x8;
    pub const VM_MAYWRITE: u32 = 0x20;
    pub const VM_MAYSHARE: u32 = 0x80;
    pub const VM_PFNMAP: u32 = 0x400;
    pub const VM_LOCKED: u32 = 0x2000;
    pub const VM_IO: u32 = 0x4000;
    /// include/linux/mm.h: "Wipe VMA contents in child" (MADV_WIPEONFORK).
    pub const VM_WIPEONFORK: u32 = 0x0200_0000;
    pub const VM_MIXEDMAP: u32 = 0x1000_0000;
    pub const VM_HUGEPAGE: u32 = 0x2000_0000;
    pub const VM_NOHUGEPAGE: u32 = 0x4000_0000;
}

/// include/linux/mm_types.h: struct vm_area_struct (the fields read here).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// In pages: for anonymous VMAs `start >> PAGE_SHIFT`, for file VMAs the file offset.
    pub pgoff: u64,
    pub flags: u32,
    pub anon_vma: Option<AnonVmaId>,
    pub file: Option<FileId>,
    /// The scenario device whose `mmap` handler set this VMA up (its `vm_file`).
    pub device: Option<DeviceId>,
    /// `vm_userfaultfd_ctx`: the userfaultfd this VMA is registered with (missing mode).
    pub uffd: Option<u32>,
    /// The driver's pages for this mapping (what a driver keeps in `vm_private_data` and
    /// frees in `vm_ops->close`).
    pub private_folios: Vec<FolioId>,
}

impl Vma {
    /// include/linux/pagemap.h: linear_page_index().
    pub fn linear_page_index(&self, address: u64) -> u64 {
        ((address - self.start) >> crate::folio::PAGE_SHIFT) + self.pgoff
    }

    /// mm/internal.h: vma_address(): where a page with `index` is mapped, if in this VMA.
    pub fn address_of_index(&self, index: u64) -> Option<u64> {
        let pages = (self.end - self.start) >> crate::folio::PAGE_SHIFT;
        (index >= self.pgoff && index < self.pgoff + pages)
            .then(|| self.start + ((index - self.pgoff) << crate::folio::PAGE_SHIFT))
    }

    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// include/linux/mm.h: vma_is_anonymous(): no vm_ops, so neither a file's nor a driver's.
    pub fn is_anonymous(&self) -> bool {
        self.file.is_none() && self.device.is_none()
    }

    /// include/linux/mm.h: is_cow_mapping(): private and possibly writable.
    pub fn is_cow_mapping(&self) -> bool {
        self.flags & (vm_flags::VM_SHARED | vm_flags::VM_MAYWRITE) == vm_flags::VM_MAYWRITE
    }

    /// mm/mmap.c: vm_get_page_prot() / vma_wants_writenotify(): PTEs of a private mapping are
    /// installed read-only (COW); a shared writable one's are writable (no dirty tracking is
    /// modelled).
    pub fn page_prot_write(&self) -> bool {
        self.flags & vm_flags::VM_SHARED != 0 && self.flags & vm_flags::VM_WRITE != 0
    }
}

/// include/linux/mm_types.h: struct mm_struct.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mm {
    pub vmas: Shared<Vec<Vma>>,
    /// The PTEs that are not none.
    pub ptes: crate::pgtable::PageTable,
    pub mmap_lock: RwSem,
    /// Split PTE locks held: (page table index, owner).
    pub ptl_held: Vec<(u64, ThreadId)>,
    /// MM_ANONPAGES and MM_FILEPAGES rss counters.
    pub rss_anon: i64,
    pub rss_file: i64,
    /// MM_SWAPENTS.
    pub rss_swap: i64,
    /// Where the next mmap without a hint goes (mm->mmap_base grows down in Linux; up here).
    pub mmap_next: u64,
    pub exited: bool,
    /// Huge PMDs mapping a THP: (pmd index = vpn / 512, the entry).
    pub pmds: Shared<Vec<(u64, crate::pgtable::PresentPte)>>,
    /// PTE tables allocated (pte_alloc()), by pmd index: a huge PMD needs `pmd_none()`.
    pub pte_tables: Shared<Vec<u64>>,
}

impl Mm {
    pub fn find_vma(&self, address: u64) -> Option<&Vma> {
        self.vmas.iter().find(|v| v.contains(address))
    }

    pub fn pte(&self, vpn: u64) -> Pte {
        self.ptes.get(vpn)
    }

    pub fn pmd(&self, index: u64) -> Option<crate::pgtable::PresentPte> {
        self.pmds.iter().find(|e| e.0 == index).map(|e| e.1)
    }

    /// The page tables (pmd indexes) of `[first_vpn, last_vpn)` that exist: an allocated PTE
    /// table, a huge PMD, or PTEs. Found from what exists, whatever the range's length. Only
    /// `mmap_lock` holders make a table exist (pte_alloc(), a huge fault, a move); a table
    /// that exists may have none PTEs for a while (try_to_unmap_one() clears a PTE under the
    /// table's lock and may set it back), so a walk skips only the tables that do not exist,
    /// as zap_pmd_range() skips none PMDs.
    pub fn populated_tables(&self, first_vpn: u64, last_vpn: u64) -> Vec<u64> {
        let per_table = crate::pgtable::PTRS_PER_PTE;
        let tables = first_vpn / per_table..last_vpn.div_ceil(per_table);
        let mut populated: Vec<u64> = self
            .pte_tables
            .iter()
            .copied()
            .chain(self.pmds.iter().map(|e| e.0))
            .filter(|table| tables.contains(table))
            .chain(self.ptes.range(first_vpn, last_vpn).map(|e| e.0 / per_table))
            .collect();
        populated.sort_unstable();
        populated.dedup();
        populated
    }

    /// The first page in `[first_vpn, last_vpn)` whose page table exists
    /// ([`Mm::populated_tables`]).
    pub fn next_mapped_vpn(&self, first_vpn: u64, last_vpn: u64) -> Option<u64> {
        let table = *self.populated_tables(first_vpn, last_vpn).first()?;
        Some((table * crate::pgtable::PTRS_PER_PTE).max(first_vpn))
    }

    pub fn ptl_owner(&self, table: u64) -> Option<ThreadId> {
        self.ptl_held.iter().find(|e| e.0 == table).map(|e| e.1)
    }
}

/// include/linux/rmap.h: struct anon_vma. The VMAs it covers are found through the mms listed
/// here (the anon_vma_chain's role): every VMA of those mms whose `anon_vma` is this one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnonVma {
    pub mms: Vec<MmId>,
    pub rwsem: RwSem,
}

/// A file's bytes on the device, page by page: the pages that differ from its fill, so that a
/// file of any size costs what was written to it, not its length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileContents {
    pages: u64,
    fill: PageData,
    /// Pages (below `pages`) whose contents are not `fill`.
    differing: BTreeMap<u64, PageData>,
}

impl FileContents {
    /// `pages` pages, each filled with `byte`.
    pub fn filled(pages: u64, byte: u8) -> FileContents {
        FileContents { pages, fill: PageData::Fill(byte), differing: BTreeMap::new() }
    }

    /// The size in pages.
    pub fn len(&self) -> u64 {
        self.pages
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// Page `index`'s contents, if the file has that page.
    pub fn get(&self, index: u64) -> Option<&PageData> {
        (index < self.pages).then(|| self.differing.get(&index).unwrap_or(&self.fill))
    }

    /// Drops the pages from `pages` on (a shrinking truncation).
    pub fn truncate(&mut self, pages: u64) {
        self.pages = self.pages.min(pages);
        self.differing.split_off(&self.pages);
    }

    /// Every page in order (as long as the file: for writing it out, not for the model).
    pub fn iter(&self) -> impl Iterator<Item = &PageData> {
        (0..self.pages).map(|index| self.get(index).expect("below the size"))
    }

    /// The pages whose bytes are not all zero, in order: what a sparse copy of the file
    /// writes (with a zero fill, only the pages written to are visited).
    pub fn nonzero_pages(&self) -> Box<dyn Iterator<Item = (u64, &PageData)> + '_> {
        if self.fill.is_zero() {
            Box::new(self.differing.iter().map(|(&index, data)| (index, data)).filter(|(_, data)| !data.is_zero()))
        } else {
            Box::new((0..self.pages).filter_map(|index| Some((index, self.get(index)?))).filter(|(_, d)| !d.is_zero()))
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> u64 {
        self.differing.len() as u64 * (std::mem::size_of::<(u64, PageData)>() as u64 + 64)
            + self.differing.values().chain([&self.fill]).map(page_data_heap_bytes).sum::<u64>()
    }
}

/// Heap bytes of a page's contents (its runs).
pub fn page_data_heap_bytes(data: &PageData) -> u64 {
    match data {
        PageData::Fill(_) => 0,
        PageData::Runs(runs) => (runs.capacity() * std::mem::size_of::<(u16, u8)>()) as u64,
    }
}

impl<'a> IntoIterator for &'a FileContents {
    type Item = &'a PageData;
    type IntoIter = Box<dyn Iterator<Item = &'a PageData> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Pages given one by one; the first page's contents (or zeroes) are the fill.
impl From<Vec<PageData>> for FileContents {
    fn from(pages: Vec<PageData>) -> FileContents {
        let fill = pages.first().cloned().unwrap_or(PageData::Fill(0));
        let differing = (0u64..).zip(pages.iter()).filter(|(_, data)| **data != fill).map(|(i, d)| (i, d.clone()));
        FileContents { pages: pages.len() as u64, differing: differing.collect(), fill }
    }
}

/// A file on a block device: its bytes per page (what O_DIRECT reads and writes; their number
/// is i_size in pages), and its page cache (include/linux/fs.h: `mapping->i_pages`, the
/// folios cached by page index; an index not there is an empty slot).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct File {
    pub blocks: FileContents,
    pub cache: BTreeMap<u64, FolioId>,
}

impl File {
    pub fn new(blocks: FileContents) -> File {
        File { blocks, cache: BTreeMap::new() }
    }

    /// The folio cached at `index`, if any.
    pub fn cached(&self, index: u64) -> Option<FolioId> {
        self.cache.get(&index).copied()
    }
}

/// include/linux/swap.h: struct swap_info_struct of the one swap device, with its swap cache
/// (mm/swap_state.c: the swapper_space xarray, one slot per swap entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwapInfo {
    /// `swap_map[offset]`: the number of swap PTEs naming the slot, plus SWAP_HAS_CACHE.
    pub swap_map: Vec<u8>,
    /// The swap cache: the folio caching each slot.
    pub cache: Vec<Option<FolioId>>,
    /// The slots' contents on the device.
    pub data: Vec<PageData>,
}

/// mm/userfaultfd.c: struct userfaultfd_ctx (the parts modelled).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Userfaultfd {
    pub mm: MmId,
    /// UFFDIO_API done (UFFD_FEATURE_INITIALIZED).
    pub initialized: bool,
    /// Page-fault messages not read yet: the faulting addresses (page-aligned).
    pub messages: Vec<u64>,
}

/// mm/vmscan.c / include/linux/mmzone.h: the lruvec of the one node, under `lru_lock`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lruvec {
    pub lru_lock: SpinLock,
    /// (folio, list) in insertion order: the head of each list is its last entry.
    pub folios: Vec<(FolioId, LruList)>,
}

/// The whole modelled machine at one instant. Its parts are shared between states and copied
/// on write (`Arc::make_mut`): a step copies only the folios, address spaces and thread it
/// changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Kernel {
    pub folios: ChunkedVec<Folio>,
    pub mms: Vec<Shared<Mm>>,
    pub anon_vmas: Vec<Shared<AnonVma>>,
    pub files: Vec<Shared<File>>,
    pub lruvec: Shared<Lruvec>,
    /// mm/swap.c: the per-CPU `lru_lazyfree` folio_batch. The model runs every thread on one
    /// CPU, so there is one batch, drained by any thread's lru_add_drain().
    pub lru_lazyfree: Shared<Vec<FolioId>>,
    pub swap: Shared<SwapInfo>,
    pub uffds: Vec<Shared<Userfaultfd>>,
    /// Pages split off a THP (`clear_compound_head()` made them folios of their own): the old
    /// pfn and the new folio. Everything that still holds such a pfn (a migration entry) finds
    /// the page here.
    pub split_pages: Shared<Vec<(crate::folio::Pfn, FolioId)>>,
    /// /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/enabled = always: the mTHP orders
    /// anonymous faults may allocate (bit n: order n). A constant of the run.
    pub anon_orders: u32,
    /// mm/huge_memory.c: the huge zero folio, allocated on first use (PG_reserved, never
    /// freed).
    pub huge_zero_folio: Option<FolioId>,
    pub threads: Vec<Shared<Thread>>,
    /// Scenario events set by `signal` (one bit each).
    pub events: u64,
    /// Under a weak memory model, the stores loads may still read and every thread's views
    /// (`None` under sequential consistency).
    pub weak: Option<Box<crate::access::weak::WeakMemory>>,
}

impl Kernel {
    /// page_folio(pfn_to_page(pfn)): the folio a page belongs to *now*, and its index in it.
    pub fn page_folio(&self, pfn: crate::folio::Pfn) -> (FolioId, usize) {
        match self.split_pages.binary_search_by_key(&pfn, |e| e.0) {
            Ok(at) => (self.split_pages[at].1, 0),
            Err(_) => (crate::folio::pfn_folio(pfn), crate::folio::pfn_page(pfn)),
        }
    }

    pub fn folio(&self, id: FolioId) -> &Folio {
        &self.folios[id as usize]
    }

    pub fn folio_mut(&mut self, id: FolioId) -> &mut Folio {
        self.folios.make_mut(id as usize)
    }

    pub fn mm_mut(&mut self, id: MmId) -> &mut Mm {
        self.mms[id as usize].make_mut()
    }

    pub fn anon_vma_mut(&mut self, id: AnonVmaId) -> &mut AnonVma {
        self.anon_vmas[id as usize].make_mut()
    }

    pub fn thread(&self, id: ThreadId) -> &Thread {
        &self.threads[id as usize]
    }

    pub fn thread_mut(&mut self, id: ThreadId) -> &mut Thread {
        self.threads[id as usize].make_mut()
    }
}

/// Bytes of a vector's heap buffer.
fn vec_bytes<T>(items: &[T]) -> u64 {
    std::mem::size_of_val(items) as u64
}

impl Kernel {
    /// Bytes this state holds, every heap part included and counted as if nothing were shared
    /// (the explorer's memory estimate, `Model::state_bytes`).
    /// The largest folio's bytes: a step that changes a folio clones it whole (its pages
    /// included), and every state on a search's stack may hold such a copy (a THP's is 512
    /// pages).
    pub fn folio_bytes_max(&self) -> u64 {
        self.folios.iter().map(folio_bytes).max().unwrap_or(0)
    }

    pub fn bytes(&self) -> u64 {
        let folios: u64 = self.folios.iter().map(folio_bytes).sum();
        let mms: u64 = self.mms.iter().map(|mm| mm_bytes(mm)).sum();
        let anon_vmas: u64 =
            self.anon_vmas.iter().map(|a| std::mem::size_of::<AnonVma>() as u64 + vec_bytes(&a.mms)).sum();
        // A B-tree entry costs about its key and value and a share of a node.
        let entry = std::mem::size_of::<(u64, FolioId)>() as u64 + 16;
        let files: u64 = self
            .files
            .iter()
            .map(|f| std::mem::size_of::<File>() as u64 + f.blocks.heap_bytes() + f.cache.len() as u64 * entry)
            .sum();
        let swap = vec_bytes(&self.swap.swap_map)
            + vec_bytes(&self.swap.cache)
            + vec_bytes(&self.swap.data)
            + self.swap.data.iter().map(page_data_heap_bytes).sum::<u64>();
        let threads: u64 = self
            .threads
            .iter()
            .map(|t| {
                std::mem::size_of::<Thread>() as u64
                    + vec_bytes(&t.stack)
                    + vec_bytes(&t.registers)
                    + vec_bytes(&t.pages)
                    + vec_bytes(&t.folio_list)
                    + vec_bytes(&t.writeback)
            })
            .sum();
        let lists = vec_bytes(&self.lruvec.folios)
            + vec_bytes(&self.lru_lazyfree)
            + vec_bytes(&self.split_pages)
            + self
                .uffds
                .iter()
                .map(|u| std::mem::size_of::<Userfaultfd>() as u64 + vec_bytes(&u.messages))
                .sum::<u64>();
        let weak = self
            .weak
            .as_ref()
            .map_or(0, |w| std::mem::size_of::<crate::access::weak::WeakMemory>() as u64 + w.heap_bytes());
        std::mem::size_of::<Kernel>() as u64 + folios + mms + anon_vmas + files + swap + threads + lists + weak
    }
}

fn mm_bytes(mm: &Mm) -> u64 {
    let vmas: u64 = mm.vmas.iter().map(|v| std::mem::size_of::<Vma>() as u64 + vec_bytes(&v.private_folios)).sum();
    std::mem::size_of::<Mm>() as u64
        + vmas
        + mm.ptes.len() as u64 * std::mem::size_of::<(u64, Pte)>() as u64
        + vec_bytes(&mm.ptl_held)
        + vec_bytes(&mm.pmds)
        + vec_bytes(&mm.pte_tables)
}

/// A folio's bytes, its pages and their contents included.
fn folio_bytes(folio: &Folio) -> u64 {
    let pages = folio.pages.iter().map(|p| page_data_heap_bytes(&p.data)).sum::<u64>();
    std::mem::size_of::<Folio>() as u64 + vec_bytes(&folio.pages) + pages
}
