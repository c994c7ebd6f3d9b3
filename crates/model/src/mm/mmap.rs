//! mm/mmap.c and mm/vma.c: mmap() of anonymous memory, of a scenario file or device, munmap(),
//! and exit_mmap() when a process exits.

use crate::access::Ctx;
use crate::drivers::{vma_close, vma_may_split, DeviceKind, DriverMmap};
use crate::folio::{PAGE_SHIFT, PAGE_SIZE};
use crate::mm::memory::Zap;
use crate::program::{map, prot};
use crate::state::{vm_flags, DeviceId, FileId, MmId, Vma};
use crate::thread::{errno, Flow, Frame, KernelFunction, Wait};
use serde::{Deserialize, Serialize};

/// Where the first mapping of a process goes.
pub const MMAP_BASE: u64 = 0x7f00_0000_0000;
/// arch/x86/include/asm/page_64_types.h: TASK_SIZE_MAX with 4-level paging, the end of user
/// address space (access_ok() and the mm syscalls' range checks).
pub const TASK_SIZE: u64 = (1 << 47) - PAGE_SIZE;
/// security/min_addr.c: mmap_min_addr (CONFIG_DEFAULT_MMAP_MIN_ADDR, 4096 on x86; this
/// machine's sysctl too). The modelled process has no CAP_SYS_RAWIO, so cap_mmap_addr() refuses
/// a mapping below it with -EPERM.
pub const MMAP_MIN_ADDR: u64 = 4096;

/// include/linux/mm.h: PAGE_ALIGN(), which wraps to 0 for a length within a page of 2^64 (the
/// syscalls check for that).
pub fn page_align(length: u64) -> u64 {
    length.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}
const PMD_SIZE: u64 = 2 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MmapStage {
    Region,
    /// After the device's mmap handler returned: the VMA mmap_region() made at `start`.
    Unlock {
        start: u64,
    },
}

/// mm/mmap.c: do_mmap() → mmap_region() under mmap_write_lock(): anonymous private memory in
/// one step (nothing else can observe the lock held), a scenario file's mapping (one step too:
/// its `f_op->mmap` only sets `vm_ops`, as generic_file_mmap() does), or a scenario device's
/// mapping, whose `f_op->mmap` (the driver) runs with the lock held.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mmap {
    pub mm: MmId,
    pub length: u64,
    pub prot: u32,
    pub flags: u32,
    pub device: Option<(DeviceId, DeviceKind)>,
    pub file: Option<FileId>,
    pub stage: MmapStage,
}

impl Mmap {
    pub fn new(
        mm: MmId,
        length: u64,
        prot: u32,
        flags: u32,
        device: Option<(DeviceId, DeviceKind)>,
        file: Option<FileId>,
    ) -> Self {
        Mmap { mm, length, prot, flags, device, file, stage: MmapStage::Region }
    }

    /// calc_vm_prot_bits(), and do_mmap()'s MAP_SHARED case: VM_SHARED | VM_MAYSHARE, with
    /// VM_MAYWRITE only if the file is open for writing. A scenario file is (the runner opens it
    /// O_RDWR); a device's file is taken to be open for writing only when mapped writable.
    fn vm_flags(&self) -> u32 {
        let mut flags = 0;
        if self.prot & prot::PROT_READ != 0 {
            flags |= vm_flags::VM_READ;
        }
        if self.prot & prot::PROT_WRITE != 0 {
            flags |= vm_flags::VM_WRITE;
        }
        if self.flags & map::MAP_SHARED != 0 {
            flags |= vm_flags::VM_SHARED | vm_flags::VM_MAYSHARE;
            if self.prot & prot::PROT_WRITE != 0 || self.file.is_some() {
                flags |= vm_flags::VM_MAYWRITE;
            }
        } else {
            flags |= vm_flags::VM_MAYWRITE;
        }
        flags
    }

    /// What the mapping is, for the event.
    fn describe(&self) -> String {
        let shared = if self.flags & map::MAP_SHARED != 0 { "shared" } else { "private" };
        match (self.device, self.file) {
            (Some((id, _)), _) => format!("device {id} ({shared})"),
            (None, Some(id)) => format!("file {id} ({shared})"),
            (None, None) => "anonymous private".to_string(),
        }
    }

    fn region(&mut self, ctx: &mut Ctx) -> Flow {
        if self.length == 0 {
            return Flow::Return(-errno::EINVAL);
        }
        // mm/mmap.c: do_mmap(): "len = PAGE_ALIGN(len); if (!len) return -ENOMEM;", then
        // __get_unmapped_area(): "if (len > TASK_SIZE) return -ENOMEM;".
        let length = page_align(self.length);
        if length == 0 || length > TASK_SIZE {
            return Flow::Return(-errno::ENOMEM);
        }
        ctx.mmap_write_lock(self.mm);
        let flags = self.vm_flags();
        let (device, file) = (self.device.map(|(id, _)| id), self.file);
        let anonymous = device.is_none() && file.is_none();
        // Anonymous mappings of at least a PMD are PMD-aligned (thp_get_unmapped_area()).
        // __get_unmapped_area(): "IS_ALIGNED(len, PMD_SIZE)" anonymous mappings go to
        // thp_get_unmapped_area() (d4148aeab412, 6.12: PMD-aligned sizes only).
        let align = if length.is_multiple_of(PMD_SIZE) && anonymous { PMD_SIZE } else { PAGE_SIZE };
        let start = ctx.get_unmapped_area(self.mm, length, align);
        if !unmapped_area_fits(ctx, start, length) {
            ctx.mmap_write_unlock(self.mm);
            return Flow::Return(-errno::ENOMEM);
        }
        // A file or device mapping's vm_pgoff is the mmap offset (0); an anonymous one's is its
        // address.
        let pgoff = if anonymous { start >> PAGE_SHIFT } else { 0 };
        ctx.vma_insert(
            self.mm,
            Vma {
                start,
                end: start + length,
                pgoff,
                flags,
                anon_vma: None,
                file,
                device,
                uffd: None,
                private_folios: Vec::new(),
            },
        );
        let what = self.describe();
        ctx.event("do_mmap", "mmap_region", |_| format!("[{start:#x}, {:#x}) {what}", start + length));
        let Some((_, kind)) = self.device else {
            ctx.mmap_write_unlock(self.mm);
            return Flow::Return(start as i64);
        };
        // The driver's return resumes this frame at Unlock.
        Flow::call(
            &mut self.stage,
            MmapStage::Unlock { start },
            Frame::DriverMmap(DriverMmap::new(self.mm, start, start + length, kind)),
        )
    }

    /// After `call_mmap()`: on the driver's error, mmap_region() unmaps what it mapped and
    /// frees the VMA.
    fn unlock(&mut self, ctx: &mut Ctx, start: u64, result: i64) -> Flow {
        if result < 0 {
            let vma = ctx.vma_lookup(self.mm, start).expect("the new VMA");
            if vma.private_folios.is_empty()
                && ctx.pte_entries_write_locked(self.mm, vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT).is_empty()
            {
                ctx.vma_remove_range(self.mm, vma.start, vma.end);
            } else {
                ctx.violation(crate::violation::Violation::new(
                    crate::violation::ViolationKind::Invariant,
                    "not modelled: a driver mmap handler failing after it mapped pages",
                ));
            }
        }
        ctx.mmap_write_unlock(self.mm);
        ctx.event("do_mmap", "mmap_write_unlock", |_| errno::name(result).map_or(String::new(), |n| format!("-{n}")));
        Flow::Return(if result < 0 { result } else { start as i64 })
    }
}

impl KernelFunction for Mmap {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        match self.stage {
            MmapStage::Region => self.region(ctx),
            MmapStage::Unlock { start } => self.unlock(ctx, start, returned.expect("the driver returned")),
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        match self.stage {
            MmapStage::Region => Wait::MmapWrite(self.mm),
            MmapStage::Unlock { .. } => Wait::Nothing,
        }
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
        self.start.wrapping_add(page_align(self.length))
    }

    /// mm/vma.c: do_vmi_munmap(): "if ((offset_in_page(start)) || start > TASK_SIZE || len >
    /// TASK_SIZE-start) return -EINVAL;", then "end = start + PAGE_ALIGN(len); if (end == start)
    /// return -EINVAL;".
    fn invalid(&self) -> bool {
        !self.start.is_multiple_of(PAGE_SIZE)
            || self.start > TASK_SIZE
            || self.length > TASK_SIZE - self.start
            || self.end() == self.start
    }
}

/// mm/mmap.c: __get_unmapped_area() searches the whole address space below TASK_SIZE; the
/// model places mappings upward from MMAP_BASE only, so one that does not fit there is a
/// placement the model does not make.
pub fn unmapped_area_fits(ctx: &mut Ctx, start: u64, length: u64) -> bool {
    let fits = start.checked_add(length).is_some_and(|end| end <= TASK_SIZE);
    if !fits {
        ctx.violation(crate::violation::Violation::new(
            crate::violation::ViolationKind::Invariant,
            format!("not modelled: a {length:#x}-byte mapping above the model's mmap base ({start:#x}) would pass TASK_SIZE"),
        ));
    }
    fits
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
                if self.invalid() {
                    return Flow::Return(-errno::EINVAL);
                }
                ctx.mmap_write_lock(self.mm);
                let (start, end) = (self.start, self.end());
                // vma_split(): vm_ops->may_split() refuses before anything is unmapped.
                let splits = ctx
                    .vmas(self.mm)
                    .iter()
                    .any(|v| v.start < end && start < v.end && (v.start < start || v.end > end) && !vma_may_split(v));
                if splits {
                    ctx.mmap_write_unlock(self.mm);
                    ctx.event("do_vmi_munmap", "vm_ops->may_split", |_| "-EINVAL".to_string());
                    return Flow::Return(-errno::EINVAL);
                }
                ctx.event("do_vmi_munmap", "mmap_write_lock", |_| format!("[{start:#x}, {end:#x})"));
                Flow::call(&mut self.stage, MunmapStage::Unmapped, Frame::Zap(Zap::write_locked(self.mm, start, end)))
            }
            MunmapStage::Unmapped => {
                let (start, end) = (self.start, self.end());
                let closed: Vec<Vma> =
                    ctx.vmas(self.mm).iter().filter(|v| v.start >= start && v.end <= end).cloned().collect();
                for vma in &closed {
                    vma_close(ctx, vma);
                }
                ctx.vma_remove_range(self.mm, start, end);
                ctx.free_pgtables(self.mm, start, end);
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
            return Flow::Call(Frame::Zap(Zap::write_locked(self.mm, start, end)));
        }
        let closed: Vec<Vma> = ctx.vmas(self.mm).to_vec();
        for vma in &closed {
            vma_close(ctx, vma);
        }
        ctx.exit_mmap_teardown(self.mm);
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

/// mm/vma.c: vma_modify(): `change` applied to `[start, end)`, VMAs straddling either end split
/// there (the parts outside keep their state).
pub fn vma_modify(vmas: &[Vma], start: u64, end: u64, change: impl Fn(&mut Vma)) -> Vec<Vma> {
    let mut out = Vec::with_capacity(vmas.len() + 2);
    for vma in vmas {
        if vma.end <= start || vma.start >= end || !vma_may_split(vma) {
            out.push(vma.clone());
            continue;
        }
        let pgoff_at = |address: u64| vma.pgoff + ((address - vma.start) >> PAGE_SHIFT);
        if vma.start < start {
            out.push(Vma { end: start, ..vma.clone() });
        }
        let (from, to) = (vma.start.max(start), vma.end.min(end));
        let mut middle = Vma { start: from, end: to, pgoff: pgoff_at(from), ..vma.clone() };
        change(&mut middle);
        out.push(middle);
        if vma.end > end {
            out.push(Vma { start: end, pgoff: pgoff_at(end), ..vma.clone() });
        }
    }
    out
}

/// mm/mprotect.c: do_mprotect_pkey() → mprotect_fixup() → change_protection(), in one step
/// under mmap_write_lock() (nothing else can observe the lock held): VMA by VMA from the start,
/// stopping at a hole with -ENOMEM; PTEs lose write permission, or regain it where
/// can_change_pte_writable() allows (an exclusive anonymous page). Access without VM_READ
/// faults (the MMU checks the VMA's protection here).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mprotect {
    pub mm: MmId,
    pub start: u64,
    pub length: u64,
    pub prot: u32,
}

impl KernelFunction for Mprotect {
    fn step(&mut self, ctx: &mut Ctx, _returned: Option<i64>) -> Flow {
        // mm/mprotect.c: do_mprotect_pkey(): an unaligned start is -EINVAL, a zero length 0, a
        // range that wraps (after PAGE_ALIGN()) -ENOMEM.
        if !self.start.is_multiple_of(PAGE_SIZE) {
            return Flow::Return(-errno::EINVAL);
        }
        if self.length == 0 {
            return Flow::Return(0);
        }
        let end = self.start.wrapping_add(page_align(self.length));
        if end <= self.start {
            return Flow::Return(-errno::ENOMEM);
        }
        ctx.mmap_write_lock(self.mm);
        let vmas = ctx.vmas(self.mm).to_vec();
        let mut result = 0;
        let mut reached = self.start;
        for vma in vmas.iter().filter(|v| v.start < end && v.end > self.start) {
            if vma.start > reached {
                break;
            }
            if self.prot & prot::PROT_WRITE != 0 && vma.flags & vm_flags::VM_MAYWRITE == 0 {
                result = -errno::EACCES;
                break;
            }
            reached = vma.end.min(end);
        }
        if result == 0 && reached < end {
            result = -errno::ENOMEM;
        }
        let (start, limit) = (self.start, if result == -errno::EACCES { self.start } else { reached });
        let mut flags = 0;
        if self.prot & prot::PROT_READ != 0 {
            flags |= vm_flags::VM_READ;
        }
        if self.prot & prot::PROT_WRITE != 0 {
            flags |= vm_flags::VM_WRITE;
        }
        if limit > start {
            ctx.vma_modify(self.mm, start, limit, |vma| {
                vma.flags = (vma.flags & !(vm_flags::VM_READ | vm_flags::VM_WRITE)) | flags;
            });
            change_protection(ctx, self.mm, start, limit, flags & vm_flags::VM_WRITE != 0);
        }
        ctx.mmap_write_unlock(self.mm);
        let prot_bits = self.prot;
        ctx.event("do_mprotect_pkey", "mprotect_fixup", |_| {
            format!("[{start:#x}, {end:#x}) prot {prot_bits:#x}: {result}")
        });
        Flow::Return(result)
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        Wait::MmapWrite(self.mm)
    }
}

/// change_protection() → change_pmd_range() → change_huge_pmd() for a huge PMD the range
/// covers whole (split first otherwise), change_pte_range() for PTEs, under each table's lock
/// (all within this step).
fn change_protection(ctx: &mut Ctx, mm: MmId, start: u64, end: u64, write: bool) {
    let (first, last) = (start >> PAGE_SHIFT, end >> PAGE_SHIFT);
    let per_table = crate::pgtable::PTRS_PER_PTE;
    for (index, pmd) in ctx.huge_pmds(mm, first, last) {
        ctx.ptl_lock(mm, index * per_table);
        if first <= index * per_table && (index + 1) * per_table <= last {
            change_huge_pmd(ctx, mm, index, pmd, write);
        } else if crate::mm::huge_memory::is_huge_zero_pmd(&pmd) {
            crate::mm::huge_memory::__split_huge_zero_page_pmd(ctx, mm, index, pmd);
        } else {
            crate::mm::huge_memory::__split_huge_pmd_locked(ctx, mm, index, pmd);
        }
        ctx.ptl_unlock(mm, index * per_table);
    }
    for (vpn, _) in ctx.pte_entries_write_locked(mm, first, last) {
        if ctx.pmd_load(mm, crate::pgtable::pte_table(vpn)).is_some() {
            continue;
        }
        ctx.ptl_lock(mm, vpn);
        if let crate::pgtable::Pte::Present(present) = ctx.pte_load(mm, vpn) {
            // can_change_pte_writable(): a private mapping's PTE becomes writable only for an
            // exclusive anonymous page.
            let folio = crate::mm::memory::vm_normal_folio(present);
            let upgrade = write
                && folio.is_some_and(|f| {
                    let page = crate::folio::pfn_page(present.pfn);
                    ctx.flag_test(f, crate::folio::PageFlag::Anon) && ctx.anon_exclusive_load(f, page)
                });
            let entry = crate::pgtable::PresentPte { write: upgrade || (write && present.write), ..present };
            if entry != present {
                ctx.pte_store(mm, vpn, crate::pgtable::Pte::Present(entry));
            }
        }
        ctx.ptl_unlock(mm, vpn);
    }
}

/// mm/huge_memory.c: change_huge_pmd(): pmd_modify() to the new protection (a private
/// mapping's is read-only), then "if ((cp_flags & MM_CP_TRY_CHANGE_WRITABLE) &&
/// !pmd_write(entry) && can_change_pmd_writable(vma, addr, entry))" for an exclusive anonymous
/// THP (not the huge zero folio).
fn change_huge_pmd(ctx: &mut Ctx, mm: MmId, index: u64, pmd: crate::pgtable::PresentPte, write: bool) {
    let folio = crate::folio::pfn_folio(pmd.pfn);
    let upgrade = write
        && !crate::mm::huge_memory::is_huge_zero_pmd(&pmd)
        && ctx.flag_test(folio, crate::folio::PageFlag::Anon)
        && ctx.anon_exclusive_load(folio, 0);
    let entry = crate::pgtable::PresentPte { write: upgrade, ..pmd };
    if entry != pmd {
        ctx.pmd_store(mm, index, Some(entry));
    }
}
