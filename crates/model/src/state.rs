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

/// A file on a block device: its bytes per page (what O_DIRECT reads and writes), and its page
/// cache (include/linux/fs.h: `mapping->i_pages`, one slot per page index).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct File {
    pub blocks: Vec<PageData>,
    pub cache: Vec<Option<FolioId>>,
}

impl File {
    pub fn new(blocks: Vec<PageData>) -> File {
        let cache = vec![None; blocks.len()];
        File { blocks, cache }
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
