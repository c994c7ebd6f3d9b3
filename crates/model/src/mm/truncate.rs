//! mm/truncate.c: ftruncate() shrinking a file, as truncate_setsize() does it: i_size_write(),
//! then truncate_pagecache(): unmap_mapping_range() zaps every mapping of the file beyond the
//! new size (private copies too: `even_cows`), truncate_inode_pages() takes each cached folio
//! beyond it out of the page cache under the folio lock (truncate_inode_folio(): unmapped again
//! if a fault mapped it meanwhile), and a second unmap_mapping_range() catches faults that
//! raced. truncate_inode_pages_range() is one pass here, locking each folio and sleeping for
//! it if need be (the kernel's first pass trylocks and skips busy folios, its second locks
//! them; the folios removed are the same). Growing a file is not modelled.

use crate::access::Ctx;
use crate::folio::{FolioId, Mapping, PageFlag, PAGE_SHIFT};
use crate::mm::filemap::{__filemap_remove_folio, mapping_vmas};
use crate::mm::memory::Zap;
use crate::mm::swap::{folio_put, folio_put_refs};
use crate::state::{FileId, Kernel, MmId, ThreadId};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use crate::violation::{Violation, ViolationKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TruncateStage {
    SetSize,
    /// unmap_mapping_range(): one zap per range.
    Unmap {
        pass: UnmapPass,
    },
    /// truncate_inode_pages_range(): the next cached index beyond the size.
    Pages,
    /// folio_lock() of the folio find_lock_entries() referenced, then truncate_inode_folio().
    LockFolio {
        folio: FolioId,
    },
    /// unmap_mapping_folio() done: filemap_remove_folio(), folio_unlock(), folio_put().
    RemoveFolio {
        folio: FolioId,
    },
}

/// Which unmap_mapping_range() an Unmap stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnmapPass {
    /// truncate_pagecache()'s first, before the page cache is emptied.
    First,
    /// truncate_inode_folio() → unmap_mapping_folio() of the locked folio it holds.
    Folio(FolioId),
    /// truncate_pagecache()'s second, after the page cache ("in case of COW").
    Second,
}

/// An ftruncate() that shrinks `file` to `pages` pages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Truncate {
    pub file: FileId,
    pub pages: u64,
    /// The size before, in pages: the page cache indexes to empty are `pages..old_pages`.
    pub old_pages: u64,
    pub stage: TruncateStage,
    /// Ranges (mm, start, end) still to zap.
    pub ranges: Vec<(MmId, u64, u64)>,
    pub index: u64,
}

impl Truncate {
    pub fn new(file: FileId, length: u64) -> Self {
        Truncate {
            file,
            pages: length >> PAGE_SHIFT,
            old_pages: 0,
            stage: TruncateStage::SetSize,
            ranges: Vec::new(),
            index: 0,
        }
    }

    /// i_size_write() (the blocks beyond go with it).
    fn set_size(&mut self, ctx: &mut Ctx) -> Flow {
        self.old_pages = ctx.file_size_pages(self.file);
        if self.pages > self.old_pages {
            ctx.violation(Violation::new(ViolationKind::Invariant, "not modelled: ftruncate() growing a file"));
            return Flow::Return(-errno::EINVAL);
        }
        ctx.file_truncate(self.file, self.pages);
        let (pages, old) = (self.pages, self.old_pages);
        ctx.event("truncate_setsize", "i_size_write", |_| format!("{old} -> {pages} pages"));
        self.unmap_mapping_range(ctx, self.pages, None, UnmapPass::First)
    }

    /// include/linux/mm.h: unmap_mapping_range() → unmap_mapping_pages(): the ranges of every
    /// VMA of the file that map indexes from `first` (or just `only`), read from the i_mmap
    /// tree, are zapped one after another.
    fn unmap_mapping_range(&mut self, ctx: &mut Ctx, first: u64, only: Option<u64>, pass: UnmapPass) -> Flow {
        self.ranges.clear();
        for (mm, vma) in mapping_vmas(ctx, self.file) {
            let vma_pages = (vma.end - vma.start) >> PAGE_SHIFT;
            let from = first.max(vma.pgoff);
            let to = only.map_or(vma.pgoff + vma_pages, |index| (index + 1).min(vma.pgoff + vma_pages));
            if from < to {
                let start = vma.start + ((from - vma.pgoff) << PAGE_SHIFT);
                self.ranges.push((mm, start, start + ((to - from) << PAGE_SHIFT)));
            }
        }
        Flow::goto(&mut self.stage, TruncateStage::Unmap { pass })
    }

    /// One range's zap_page_range_single(), then what follows the pass.
    fn unmap(&mut self, ctx: &mut Ctx, pass: UnmapPass) -> Flow {
        if let Some((mm, start, end)) = self.ranges.pop() {
            ctx.event("unmap_mapping_range", "zap_page_range_single", |_| format!("mm {mm} [{start:#x}, {end:#x})"));
            return Flow::Call(Frame::Zap(Zap::new(mm, start, end)));
        }
        match pass {
            // unmap_mapping_folio() of the folio truncate_inode_folio() holds.
            UnmapPass::Folio(folio) => Flow::goto(&mut self.stage, TruncateStage::RemoveFolio { folio }),
            UnmapPass::First => {
                self.index = self.pages;
                Flow::goto(&mut self.stage, TruncateStage::Pages)
            }
            UnmapPass::Second => Flow::Return(0),
        }
    }

    /// truncate_inode_pages_range(): find_lock_entries() looks each index up and references
    /// the folio; the lock is taken next, sleeping if need be.
    fn pages(&mut self, ctx: &mut Ctx) -> Flow {
        while self.index < self.old_pages {
            let index = self.index;
            if let Some(folio) = ctx.page_cache_load(self.file, index) {
                if ctx.ref_add_unless_zero(folio, 1) {
                    return Flow::goto(&mut self.stage, TruncateStage::LockFolio { folio });
                }
            }
            self.index += 1;
        }
        self.unmap_mapping_range(ctx, self.pages, None, UnmapPass::Second)
    }

    /// folio_lock(); truncate_inode_folio(): "if (folio->mapping != mapping) return" (someone
    /// else removed it), "if (folio_mapped(folio)) unmap_mapping_folio(folio)".
    fn lock_folio(&mut self, ctx: &mut Ctx, folio: FolioId) -> Flow {
        ctx.flag_store(folio, PageFlag::Locked, true);
        if ctx.mapping_load(folio) != (Mapping::File(self.file), self.index) {
            return self.release(ctx, folio);
        }
        if ctx.mapcount_load(folio) > 0 {
            let index = self.index;
            ctx.event("truncate_inode_folio", "unmap_mapping_folio", |_| format!("folio {folio} (index {index})"));
            return self.unmap_mapping_range(ctx, index, Some(index), UnmapPass::Folio(folio));
        }
        Flow::goto(&mut self.stage, TruncateStage::RemoveFolio { folio })
    }

    /// filemap_remove_folio() (the page cache's reference goes), folio_unlock(), folio_put().
    fn remove_folio(&mut self, ctx: &mut Ctx, folio: FolioId) -> Flow {
        let index = self.index;
        __filemap_remove_folio(ctx, folio, self.file, index);
        folio_put_refs(ctx, folio, 1);
        ctx.event("truncate_inode_folio", "filemap_remove_folio", |_| format!("folio {folio} (index {index})"));
        self.release(ctx, folio)
    }

    /// folio_unlock(), folio_put(), and on to the next index.
    fn release(&mut self, ctx: &mut Ctx, folio: FolioId) -> Flow {
        ctx.flag_store(folio, PageFlag::Locked, false);
        folio_put(ctx, folio);
        self.index += 1;
        Flow::goto(&mut self.stage, TruncateStage::Pages)
    }
}

impl KernelFunction for Truncate {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            TruncateStage::SetSize => self.set_size(ctx),
            TruncateStage::Unmap { pass } => self.unmap(ctx, pass),
            TruncateStage::Pages => self.pages(ctx),
            TruncateStage::LockFolio { folio } => self.lock_folio(ctx, folio),
            TruncateStage::RemoveFolio { folio } => self.remove_folio(ctx, folio),
        }
    }

    fn wait(&self, _k: &Kernel, _thread: ThreadId) -> Wait {
        match self.stage {
            TruncateStage::LockFolio { folio } => Wait::FolioLock(folio),
            _ => Wait::Nothing,
        }
    }
}
