//! block/fops.c: __blkdev_direct_IO_simple() for a read: take references on the user buffer's
//! pages with GUP (bio_iov_iter_get_pages()), let the device DMA into them, then
//! bio_release_pages(bio, mark_dirty): dirty each page under its lock and drop the reference.
//!
//! The scenario's file is a regular file on ext4, as the live runner's is: its O_DIRECT read
//! (fs/iomap/direct-io.c: iomap_dio_rw()) builds its bios the same way; it differs when GUP
//! comes back short (see gup_slow_done()).
//!
//! Before a7e689dd1c06 (6.5) the references were FOLL_GET (get_user_pages_fast()); since then
//! they are pins (pin_user_pages_fast() via iov_iter_extract_pages()).

use crate::access::Ctx;
use crate::folio::{FolioId, PageFlag, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO};

/// The modelled block device's logical block size (and DMA alignment).
pub const LOGICAL_BLOCK_SIZE: u64 = 512;
use crate::mm::gup::{gup_put_folio, page_of, GupFast, GupFlags, GupSlow};
use crate::mm::swap::folio_mark_dirty;
use crate::patches::Patch;
use crate::state::{FileId, MmId};
use crate::thread::{errno, Flow, Frame, KernelFunction, ReferencedReads, Thread, Wait};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DioStage {
    Start,
    GupFastDone,
    GupSlowDone,
    /// submit_bio_wait(), page by page: `index` is the page of the bio being transferred.
    Dma {
        index: usize,
    },
    /// bio_release_pages(), page by page (`index`) and folio by folio.
    SetDirtyLock {
        index: usize,
    },
    Unpin {
        index: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirectIo {
    pub mm: MmId,
    pub file: FileId,
    pub buffer: u64,
    pub length: u64,
    pub offset: u64,
    pub nr_pages: u64,
    pub flags: GupFlags,
    pub stage: DioStage,
    /// GUP pinned fewer pages than the buffer spans: the read fails with -EFAULT after the
    /// pinned part is transferred.
    pub short: bool,
}

impl DirectIo {
    pub fn new(mm: MmId, file: FileId, buffer: u64, length: u64, offset: u64) -> Self {
        DirectIo {
            mm,
            file,
            buffer,
            length,
            offset,
            nr_pages: 0,
            flags: GupFlags { write: true, pin: false },
            stage: DioStage::Start,
            short: false,
        }
    }

    fn pages_len(ctx: &mut Ctx) -> usize {
        ctx.local().pages.len()
    }

    /// The buffer's offset into its first page.
    fn head(&self) -> u64 {
        self.buffer % PAGE_SIZE
    }

    /// Alignment and size checks (blkdev_dio_invalid(): the position and length to the logical
    /// block size, the buffer to the DMA alignment), then the GUP of every page the buffer
    /// touches.
    fn start(&mut self, ctx: &mut Ctx) -> Flow {
        let aligned = self.buffer.is_multiple_of(LOGICAL_BLOCK_SIZE)
            && self.length.is_multiple_of(LOGICAL_BLOCK_SIZE)
            && self.offset.is_multiple_of(LOGICAL_BLOCK_SIZE);
        if !aligned {
            return Flow::Return(-errno::EINVAL);
        }
        let file_bytes = ctx.file_size_pages(self.file).saturating_mul(PAGE_SIZE);
        let length = self.length.min(file_bytes.saturating_sub(self.offset));
        if length == 0 {
            return Flow::Return(0);
        }
        self.length = length;
        self.nr_pages = (self.head() + length).div_ceil(PAGE_SIZE);
        self.flags.pin = ctx.patched(Patch::BlockDioPinPages);
        ctx.local().pages.make_mut().clear();
        let (buffer, nr, flags) = (self.buffer, self.nr_pages, self.flags);
        ctx.event("__blkdev_direct_IO_simple", "bio_iov_iter_get_pages", |_| {
            format!(
                "{} {nr} page(s) at {buffer:#x} ({})",
                if flags.pin { "pin_user_pages_fast" } else { "get_user_pages_fast" },
                flags.describe()
            )
        });
        let gup = GupFast::new(self.mm, self.buffer - self.head(), self.nr_pages, self.flags);
        Flow::call(&mut self.stage, DioStage::GupFastDone, Frame::GupFast(gup))
    }

    /// gup_fast_fallback(): the pages the fast path did not get go through the slow path.
    fn gup_fast_done(&mut self, ctx: &mut Ctx) -> Flow {
        let got = Self::pages_len(ctx) as u64;
        if got == self.nr_pages {
            return Flow::goto(&mut self.stage, DioStage::Dma { index: 0 });
        }
        let start = self.buffer - self.head() + got * PAGE_SIZE;
        let gup = GupSlow::new(self.mm, start, self.nr_pages - got, self.flags);
        Flow::call(&mut self.stage, DioStage::GupSlowDone, Frame::GupSlow(gup))
    }

    fn gup_slow_done(&mut self, ctx: &mut Ctx, result: i64) -> Flow {
        if result < 0 && Self::pages_len(ctx) == 0 {
            return Flow::Return(result);
        }
        // A short GUP makes a short bio: transfer what was pinned. The scenario's file is a
        // regular file on ext4 (as the live runner's is): fs/iomap/direct-io.c:
        // iomap_dio_bio_iter() submits the pinned part, the next bio's GUP fails, and
        // __iomap_dio_rw() without IOMAP_DIO_PARTIAL makes the read -EFAULT once that bio
        // completed (a block device's __blkdev_direct_IO_simple() would return it short).
        self.short = (Self::pages_len(ctx) as u64) < self.nr_pages;
        self.nr_pages = Self::pages_len(ctx) as u64;
        self.length = self.length.min(self.nr_pages * PAGE_SIZE - self.head());
        Flow::goto(&mut self.stage, DioStage::Dma { index: 0 })
    }

    /// submit_bio_wait(): the device writes the buffer's part of each page; no page table is
    /// involved.
    fn dma(&mut self, ctx: &mut Ctx, index: usize) -> Flow {
        let pfn = ctx.local().pages[index];
        let (folio, page) = page_of(pfn);
        // The bytes of this page the buffer covers, and where they come from in the file.
        let page_start = index as u64 * PAGE_SIZE;
        let from = page_start.max(self.head());
        let to = (page_start + PAGE_SIZE).min(self.head() + self.length);
        let file_offset = self.offset + from - self.head();
        if from == page_start && to == page_start + PAGE_SIZE && file_offset.is_multiple_of(PAGE_SIZE) {
            let data = ctx.file_block(self.file, file_offset >> PAGE_SHIFT).expect("checked against the file size");
            ctx.data_store(folio, page, data);
        } else {
            self.copy_bytes(ctx, folio, page, (from - page_start) as usize, file_offset, (to - from) as usize);
        }
        let block = file_offset >> PAGE_SHIFT;
        ctx.event("submit_bio_wait", "dma", |k| {
            format!("file offset {file_offset:#x} (block {block}) -> folio {folio}: {}", k.folio(folio).dump(folio))
        });
        let next = match index + 1 {
            end if end == self.nr_pages as usize => DioStage::SetDirtyLock { index: 0 },
            next => DioStage::Dma { index: next },
        };
        Flow::goto(&mut self.stage, next)
    }

    /// `length` file bytes from `file_offset` into the page at `page_offset`, run by run.
    fn copy_bytes(
        &self,
        ctx: &mut Ctx,
        folio: FolioId,
        page: usize,
        page_offset: usize,
        file_offset: u64,
        length: usize,
    ) {
        let mut done = 0;
        while done < length {
            let position = file_offset + done as u64;
            let block = ctx.file_block(self.file, position >> PAGE_SHIFT).expect("checked against the file size");
            let in_block = (position % PAGE_SIZE) as usize;
            let chunk = (PAGE_SIZE as usize - in_block).min(length - done);
            for (at, len, byte) in block.runs_in(in_block, chunk) {
                ctx.data_fill(folio, page, page_offset + done + at, len, byte);
            }
            done += chunk;
        }
    }

    /// bio_release_pages(bio, true): folio_lock(); folio_mark_dirty(); folio_unlock().
    fn set_dirty_lock(&mut self, ctx: &mut Ctx, index: usize) -> Flow {
        let (folio, _) = page_of(ctx.local().pages[index]);
        if folio != ZERO_FOLIO {
            ctx.flag_test_and_store(folio, PageFlag::Locked, true);
            folio_mark_dirty(ctx, folio);
            ctx.flag_store(folio, PageFlag::Locked, false);
        }
        ctx.event("bio_release_pages", "set_page_dirty_lock", |_| format!("folio {folio}"));
        Flow::goto(&mut self.stage, DioStage::Unpin { index })
    }

    /// unpin_user_page() / put_page(): __bio_release_pages() walks the bio folio by folio
    /// (bio_for_each_folio_all()), so the pages of one large folio go in one
    /// unpin_user_folio(folio, nr_pages).
    fn unpin(&mut self, ctx: &mut Ctx, index: usize) -> Flow {
        let pages = &ctx.local().pages;
        let (folio, _) = page_of(pages[index]);
        let run = pages[index..].iter().take_while(|&&pfn| page_of(pfn).0 == folio).count();
        gup_put_folio(ctx, folio, run as i32, self.flags);
        let flags = self.flags;
        let what = match (run, flags.pin) {
            (1, true) => "unpin_user_page",
            (1, false) => "put_page",
            (_, true) => "unpin_user_folio",
            (_, false) => "folio_put_refs",
        };
        ctx.event("bio_release_pages", what, |k| format!("{run} page(s): {}", k.folio(folio).dump(folio)));
        let index = index + run;
        if index == self.nr_pages as usize {
            ctx.local().pages.make_mut().clear();
            return Flow::Return(if self.short { -errno::EFAULT } else { self.length as i64 });
        }
        Flow::goto(&mut self.stage, DioStage::SetDirtyLock { index })
    }
}

impl KernelFunction for DirectIo {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            DioStage::Start => self.start(ctx),
            DioStage::GupFastDone => self.gup_fast_done(ctx),
            DioStage::GupSlowDone => self.gup_slow_done(ctx, returned.unwrap_or(0)),
            DioStage::Dma { index } => self.dma(ctx, index),
            DioStage::SetDirtyLock { index } => self.set_dirty_lock(ctx, index),
            DioStage::Unpin { index } => self.unpin(ctx, index),
        }
    }

    fn wait(&self, k: &crate::state::Kernel, thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            DioStage::SetDirtyLock { index } => Wait::FolioLock(page_of(k.threads[thread as usize].pages[index]).0),
            _ => Wait::Nothing,
        }
    }

    /// GUP's slow path marks what it pins accessed (mm/gup.rs), so this read may still read
    /// PG_referenced of what gets mapped at the addresses it has still to pin, the thread's
    /// `pages` array holding those pinned: before the fast path, the buffer as given (start()
    /// may only shorten it); while the fast path runs, the pages after the ones it got
    /// (gup_fast_fallback() hands exactly those to the slow path). Once the slow path runs, its
    /// own frame knows; once every page is pinned, none.
    fn referenced_reads<'a>(&'a self, thread: &'a Thread, callees: &'a [Frame]) -> ReferencedReads<'a> {
        let (mm, first) = (self.mm, self.buffer - self.head());
        match self.stage {
            DioStage::Start => ReferencedReads::Addresses {
                mm,
                start: first,
                end: (self.buffer + self.length).next_multiple_of(PAGE_SIZE),
            },
            DioStage::GupFastDone => ReferencedReads::Addresses {
                mm,
                start: first + thread.pages.len() as u64 * PAGE_SIZE,
                end: first + self.nr_pages * PAGE_SIZE,
            },
            DioStage::GupSlowDone => match callees.split_first() {
                Some((gup, callees)) => gup.referenced_reads(thread, callees),
                None => ReferencedReads::Nothing,
            },
            DioStage::Dma { .. } | DioStage::SetDirtyLock { .. } | DioStage::Unpin { .. } => ReferencedReads::Nothing,
        }
    }
}
