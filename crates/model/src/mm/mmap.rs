//! mm/mmap.c and mm/vma.c: mmap() of anonymous memory, munmap(), and exit_mmap() when a
//! process exits.

use crate::access::Ctx;
use crate::folio::{PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::Zap;
use crate::program::{map, prot};
use crate::state::{vm_flags, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// Where the first mapping of a process goes.
pub const MMAP_BASE: u64 = 0x7f00_0000_0000;
const PMD_SIZE: u64 = 2 << 20;

/// mm/mmap.c: do_mmap() → mmap_region() for MAP_PRIVATE|MAP_ANONYMOUS, in one step under
/// mmap_write_lock() (nothing else can observe the lock held).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mmap {
    pub mm: MmId,
    pub length: u64,
    pub prot: u32,
    pub flags: u32,
}

impl KernelFunction for Mmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        if self.length == 0 {
            return Flow::Return(-errno::EINVAL);
        }
        let length = self.length.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        ctx.mmap_write_lock(self.mm);
        let mm = ctx.vmas_mut(self.mm);
        // Anonymous mappings of at least a PMD are PMD-aligned (thp_get_unmapped_area()).
        let align = if length >= PMD_SIZE { PMD_SIZE } else { PAGE_SIZE };
        let start = mm.mmap_next.max(MMAP_BASE).div_ceil(align) * align;
        mm.mmap_next = start + length + PAGE_SIZE;
        let mut flags = vm_flags::VM_MAYWRITE;
        if self.prot & prot::PROT_READ != 0 {
            flags |= vm_flags::VM_READ;
        }
        if self.prot & prot::PROT_WRITE != 0 {
            flags |= vm_flags::VM_WRITE;
        }
        if self.flags & map::MAP_SHARED != 0 {
            flags |= vm_flags::VM_SHARED;
        }
        mm.vmas.make_mut().push(Vma {
            start,
            end: start + length,
            pgoff: start >> PAGE_SHIFT,
            flags,
            anon_vma: None,
            file: None,
        });
        mm.vmas.make_mut().sort_by_key(|v| v.start);
        ctx.mmap_write_unlock(self.mm);
        ctx.event("do_mmap", "mmap_region", |_| format!("[{start:#x}, {:#x}) anonymous private", start + length));
        Flow::Return(start as i64)
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::MmapWrite(self.mm)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MunmapStage {
    Lock,
    Unmapped,
}

/// mm/vma.c: do_vmi_munmap(): under mmap_write_lock(), zap the range, then remove the VMAs
/// (splitting those that straddle an end).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Munmap {
    pub mm: MmId,
    pub start: u64,
    pub length: u64,
    pub stage: MunmapStage,
}

impl Munmap {
    pub fn new(mm: MmId, start: u64, length: u64) -> Self {
        Munmap { mm, start, length, stage: MunmapStage::Lock }
    }

    fn end(&self) -> u64 {
        self.start + self.length.div_ceil(PAGE_SIZE) * PAGE_SIZE
    }
}

/// Removes `[start, end)` from the VMA list, splitting VMAs that straddle either end.
pub fn remove_vma_range(vmas: &mut Vec<Vma>, start: u64, end: u64) {
    let mut kept = Vec::with_capacity(vmas.len() + 1);
    for vma in vmas.drain(..) {
        if vma.end <= start || vma.start >= end {
            kept.push(vma);
            continue;
        }
        if vma.start < start {
            kept.push(Vma { end: start, ..vma.clone() });
        }
        if vma.end > end {
            let pgoff = vma.pgoff + ((end - vma.start) >> PAGE_SHIFT);
            kept.push(Vma { start: end, pgoff, ..vma.clone() });
        }
    }
    *vmas = kept;
}

impl KernelFunction for Munmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        match self.stage {
            MunmapStage::Lock => {
                if !self.start.is_multiple_of(PAGE_SIZE) || self.length == 0 {
                    return Flow::Return(-errno::EINVAL);
                }
                ctx.mmap_write_lock(self.mm);
                let (start, end) = (self.start, self.end());
                ctx.event("do_vmi_munmap", "mmap_write_lock", |_| format!("[{start:#x}, {end:#x})"));
                self.stage = MunmapStage::Unmapped;
                Flow::Call(Frame::Zap(Zap::new(self.mm, start, end)))
            }
            MunmapStage::Unmapped => {
                let (start, end) = (self.start, self.end());
                remove_vma_range(ctx.vmas_mut(self.mm).vmas.make_mut(), start, end);
                ctx.mmap_write_unlock(self.mm);
                ctx.event("do_vmi_munmap", "mmap_write_unlock", |_| String::new());
                Flow::Return(0)
            }
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            MunmapStage::Lock => Wait::MmapWrite(self.mm),
            MunmapStage::Unmapped => Wait::Nothing,
        }
    }
}

/// kernel/exit.c: do_exit() → mmput() → mm/mmap.c: exit_mmap(): unmap everything.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExitMmap {
    pub mm: MmId,
    pub zapped: bool,
}

impl KernelFunction for ExitMmap {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        if !self.zapped {
            ctx.mmap_write_lock(self.mm);
            self.zapped = true;
            ctx.event("exit_mmap", "mmap_write_lock", |_| String::new());
            let (start, end) = {
                let vmas = ctx.vmas(self.mm);
                (vmas.first().map_or(0, |v| v.start), vmas.last().map_or(0, |v| v.end))
            };
            return Flow::Call(Frame::Zap(Zap::new(self.mm, start, end)));
        }
        let mm = ctx.vmas_mut(self.mm);
        mm.vmas.make_mut().clear();
        mm.exited = true;
        ctx.mmap_write_unlock(self.mm);
        ctx.event("exit_mmap", "free_pgtables", |_| String::new());
        Flow::Return(0)
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        if self.zapped {
            Wait::Nothing
        } else {
            Wait::MmapWrite(self.mm)
        }
    }
}
