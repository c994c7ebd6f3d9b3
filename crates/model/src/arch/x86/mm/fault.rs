//! arch/x86/mm/fault.c and the MMU: a user access walks the page tables in hardware (a
//! lockless read that sets the accessed and dirty bits), and a missing or read-only
//! translation enters exc_page_fault() → do_user_addr_fault() → handle_mm_fault().

use crate::access::Ctx;
use crate::folio::{pfn_folio, pfn_page, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO};
use crate::mm::memory::{Fault, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV};
use crate::pgtable::{PresentPte, Pte, PTRS_PER_PTE};
use crate::program::SourceLocation;
use crate::state::{vm_flags, MmId};
use crate::thread::{Flow, Frame, KernelFunction, Wait};
use crate::violation::{Violation, ViolationKind};
use serde::{Deserialize, Serialize};

/// User loads and stores over a range, page by page. The MMU walks the page table (a lockless
/// read) and sets the accessed and dirty bits; a missing or read-only translation faults.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserAccess {
    pub mm: MmId,
    pub address: u64,
    pub length: u64,
    pub done: u64,
    pub write: bool,
    /// The byte stored, or the byte every load must return.
    pub byte: u8,
    pub location: SourceLocation,
    /// Asleep in handle_userfault() until the handler resolves the page.
    pub userfault: bool,
}

impl UserAccess {
    pub fn new(mm: MmId, address: u64, length: u64, write: bool, byte: u8, location: SourceLocation) -> Self {
        UserAccess { mm, address, length, done: 0, write, byte, location, userfault: false }
    }

    fn check_load(&self, ctx: &mut Ctx, address: u64, pte: PresentPte, offset: usize, chunk: usize) {
        let folio = pfn_folio(pte.pfn);
        let data = ctx.data_load(folio, pfn_page(pte.pfn));
        if let Some((at, got)) = data.first_mismatch(offset, chunk, self.byte) {
            let at_address = (address & !(PAGE_SIZE - 1)) + at as u64;
            let why = if folio == ZERO_FOLIO {
                "the PTE maps the shared zero page: the page had been unmapped and the read fault mapped the zero page"
                    .to_string()
            } else {
                format!("the PTE maps folio {folio}, whose bytes differ")
            };
            let message = format!(
                "line {}: load at {:#x}: expected {:#04x}, read {:#04x}; {}",
                self.location.line, at_address, self.byte, got, why
            );
            let dump = if folio == ZERO_FOLIO { Vec::new() } else { vec![ctx.folio_dump(folio)] };
            ctx.violation(Violation { kind: ViolationKind::DataLoss, message, dump });
        }
    }
}

impl KernelFunction for UserAccess {
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        if returned == Some(VM_FAULT_RETRY) {
            self.userfault = true;
            return Flow::Continue;
        }
        self.userfault = false;
        if let Some(result) = returned {
            if result & (VM_FAULT_SIGSEGV | VM_FAULT_SIGBUS) != 0 {
                let signal = if result & VM_FAULT_SIGSEGV != 0 { "SIGSEGV" } else { "SIGBUS" };
                let message =
                    format!("line {}: user access at {:#x} got {signal}", self.location.line, self.address + self.done);
                ctx.violation(Violation::new(ViolationKind::Fault, message));
                return Flow::Return(-1);
            }
        }
        let address = self.address + self.done;
        if address >= crate::mm::mmap::TASK_SIZE {
            // arch/x86/mm/fault.c: do_user_addr_fault(): past TASK_SIZE is the kernel's half (or
            // not canonical, a #GP): SIGSEGV, with no walk of the user's page tables.
            let message = format!("line {}: user access at {address:#x} got SIGSEGV", self.location.line);
            ctx.violation(Violation::new(ViolationKind::Fault, message));
            return Flow::Return(-1);
        }
        let offset = (address & (PAGE_SIZE - 1)) as usize;
        let chunk = (PAGE_SIZE - offset as u64).min(self.length - self.done) as usize;
        let present = match mmu_access(ctx, self.mm, address, self.write) {
            Ok(present) => present,
            Err(pte) => {
                let write = self.write;
                ctx.event("exc_page_fault", "fault", |_| {
                    format!("{} {address:#x}: PTE {}", if write { "write" } else { "read" }, pte.describe())
                });
                return Flow::Call(Frame::Fault(Fault::new(self.mm, address, self.write, true)));
            }
        };
        let folio = pfn_folio(present.pfn);
        if self.write {
            ctx.data_fill(folio, pfn_page(present.pfn), offset, chunk, self.byte);
        } else {
            self.check_load(ctx, address, present, offset, chunk);
        }
        let (write, byte) = (self.write, self.byte);
        ctx.event("user", if write { "store" } else { "load" }, |_| {
            format!(
                "{} {chunk} bytes at {address:#x} (folio {folio}){}",
                if write { "store" } else { "load" },
                if write { format!(" = {byte:#04x}") } else { String::new() }
            )
        });
        self.done += chunk as u64;
        if self.done == self.length {
            Flow::Return(0)
        } else {
            Flow::Continue
        }
    }

    fn wait(&self, _k: &crate::state::Kernel, _thread: crate::state::ThreadId) -> Wait {
        if self.userfault {
            // userfaultfd_wake() after UFFDIO_COPY/ZEROPAGE resolved the page.
            return Wait::PtePopulated(self.mm, (self.address + self.done) >> PAGE_SHIFT);
        }
        Wait::Nothing
    }
}

/// The MMU's walk for one access at `address`, by the user or by the kernel's
/// copy_to_user()/copy_from_user(): the PMD first (a huge PMD maps the page directly), then the
/// PTE; the VMA's protection (PROT_NONE, read-only) forbids an access even through a present
/// entry. On success the accessed bit (and for a write the dirty bit) is set and the page's
/// entry returned; otherwise the entry the access faults on.
pub fn mmu_access(ctx: &mut Ctx, mm: MmId, address: u64, write: bool) -> Result<PresentPte, Pte> {
    let vpn = address >> PAGE_SHIFT;
    let index = crate::mm::huge_memory::pmd_index(address);
    let huge = ctx.pmd_load(mm, index);
    let pte = match huge {
        Some(pmd) => Pte::Present(PresentPte { pfn: pmd.pfn + (vpn % PTRS_PER_PTE), ..pmd }),
        None => ctx.pte_load(mm, vpn),
    };
    let vma_flags = ctx.vmas(mm).iter().find(|v| v.contains(address)).map_or(0, |v| v.flags);
    let permitted = if write { vma_flags & vm_flags::VM_WRITE != 0 } else { vma_flags & vm_flags::VM_READ != 0 };
    let Some(present) = pte.present().filter(|p| permitted && (!write || p.write)) else {
        return Err(pte);
    };
    if !present.young || (write && !present.dirty) {
        let dirty = present.dirty || write;
        match huge {
            Some(pmd) => ctx.pmd_store(mm, index, Some(PresentPte { young: true, dirty, ..pmd })),
            None => ctx.pte_hw_update(mm, vpn, Pte::Present(PresentPte { young: true, dirty, ..present })),
        }
    }
    Ok(present)
}
