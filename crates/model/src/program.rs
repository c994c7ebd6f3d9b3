//! The programs threads run: syscall-like instructions compiled from scenarios. The model
//! executes them; the scenario crate only produces them. Values live in per-thread registers.

use crate::state::{FileId, ThreadId};
use serde::{Deserialize, Serialize};

pub type Register = u16;

/// A place in a scenario file, for reports: (line, column), 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceLocation {
    pub line: u32,
    pub column: u32,
}

/// A runtime value: a constant or a register plus a constant (`buf + 4K`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operand {
    Constant(i64),
    Register(Register, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

/// An assertion's condition: comparisons of values, the left one optionally a bit test
/// (`f & KPF_ZERO_PAGE != 0`), joined by `&&`, `||` and `!` (the scenario builder keeps the tree
/// within EXPRESSION_DEPTH_MAX levels).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    Compare { left: Operand, mask: Option<Operand>, comparison: Comparison, right: Operand },
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

impl Condition {
    /// Whether it holds, with `value` giving an operand's value; `&&` and `||` short-circuit.
    pub fn holds(&self, value: &mut impl FnMut(Operand) -> i64) -> bool {
        match self {
            Condition::Compare { left, mask, comparison, right } => {
                let left = value(*left) & mask.map_or(-1, &mut *value);
                comparison.holds(left, value(*right))
            }
            Condition::Not(inner) => !inner.holds(value),
            Condition::And(a, b) => a.holds(value) && b.holds(value),
            Condition::Or(a, b) => a.holds(value) || b.holds(value),
        }
    }

    /// A single comparison without a mask: its values are shown as `left op right`.
    pub fn as_comparison(&self) -> Option<(Operand, Comparison, Operand)> {
        match self {
            Condition::Compare { left, mask: None, comparison, right } => Some((*left, *comparison, *right)),
            _ => None,
        }
    }
}

impl Comparison {
    pub fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Comparison::Equal => left == right,
            Comparison::NotEqual => left != right,
            Comparison::Less => left < right,
            Comparison::LessEqual => left <= right,
            Comparison::Greater => left > right,
            Comparison::GreaterEqual => left >= right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
            Comparison::Less => "<",
            Comparison::LessEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterEqual => ">=",
        }
    }
}

/// include/uapi/asm-generic/mman-common.h: the madvise advice values modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Advice {
    DontNeed,
    Free,
    Cold,
    PageOut,
    HugePage,
    PopulateRead,
    PopulateWrite,
    WipeOnFork,
    KeepOnFork,
}

impl Advice {
    pub fn name(self) -> &'static str {
        match self {
            Advice::DontNeed => "MADV_DONTNEED",
            Advice::Free => "MADV_FREE",
            Advice::Cold => "MADV_COLD",
            Advice::PageOut => "MADV_PAGEOUT",
            Advice::HugePage => "MADV_HUGEPAGE",
            Advice::PopulateRead => "MADV_POPULATE_READ",
            Advice::PopulateWrite => "MADV_POPULATE_WRITE",
            Advice::WipeOnFork => "MADV_WIPEONFORK",
            Advice::KeepOnFork => "MADV_KEEPONFORK",
        }
    }
}

pub mod prot {
    pub const PROT_READ: u32 = 0x1;
    pub const PROT_WRITE: u32 = 0x2;
}

pub mod mremap {
    pub const MREMAP_MAYMOVE: u32 = 1;
    pub const MREMAP_FIXED: u32 = 2;
}

pub mod map {
    pub const MAP_SHARED: u32 = 0x1;
    pub const MAP_PRIVATE: u32 = 0x2;
    pub const MAP_ANONYMOUS: u32 = 0x20;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Instruction {
    /// `dst = mmap(NULL, length, prot, flags, -1, 0)`.
    /// With `device`, the mapping of a scenario device (its file's mmap handler); with `file`,
    /// of a scenario file from offset 0 (`flags` MAP_SHARED or MAP_PRIVATE).
    Mmap {
        dst: Register,
        length: u64,
        prot: u32,
        flags: u32,
        device: Option<crate::state::DeviceId>,
        file: Option<FileId>,
    },
    Munmap {
        dst: Option<Register>,
        address: Operand,
        length: u64,
    },
    /// `mremap(old, old_length, new_length, flags, new_address)`: `dst` gets the new address
    /// or a negative errno. `flags`: MREMAP_MAYMOVE (1) and MREMAP_FIXED (2).
    Mremap {
        dst: Option<Register>,
        address: Operand,
        old_length: u64,
        new_length: u64,
        flags: u32,
        new_address: Operand,
    },
    /// `mprotect(address, length, prot)`.
    Mprotect {
        dst: Option<Register>,
        address: Operand,
        length: u64,
        prot: u32,
    },
    /// User stores of `byte` over `[address, address + length)`.
    Store {
        address: Operand,
        length: u64,
        byte: u8,
        location: SourceLocation,
    },
    /// User loads over the range, checked against `expect` (a data-loss violation otherwise).
    Load {
        address: Operand,
        length: u64,
        expect: u8,
        location: SourceLocation,
    },
    Madvise {
        dst: Option<Register>,
        address: Operand,
        length: u64,
        advice: Advice,
    },
    /// `dst = pread(file, buffer, length, offset)` with O_DIRECT when `direct`.
    Pread {
        dst: Option<Register>,
        file: FileId,
        buffer: Operand,
        length: u64,
        offset: u64,
        direct: bool,
    },
    /// `dst = ftruncate(file, length)`: shrink the file to `length` bytes (a multiple of the
    /// page size, at most its size).
    Ftruncate {
        dst: Option<Register>,
        file: FileId,
        length: u64,
    },
    /// `assert CONDITION` on register values.
    Assert {
        condition: Condition,
        text: String,
        location: SourceLocation,
    },
    /// fork(): `child` (the main thread of a new process whose address space is `child_mm`)
    /// starts with a copy of the address space and of this thread's registers.
    Fork {
        dst: Option<Register>,
        child: ThreadId,
        child_mm: u32,
    },
    /// Starts a thread of the same process; it gets a copy of this thread's registers.
    Spawn {
        thread: ThreadId,
    },
    /// Waits for these threads to finish (a process's main thread before exit).
    Join {
        threads: Vec<ThreadId>,
    },
    /// exit_mmap(): the process's address space goes away.
    Exit,
    /// `move_pages(0, 1, &address, NULL, status, 0)`: `dst` gets status[0] (the node, or a
    /// negative errno).
    MovePagesStatus {
        dst: Option<Register>,
        address: Operand,
    },
    /// Reads the entry of /proc/self/pagemap (its compared flag bits), /proc/kpagecount or
    /// /proc/kpageflags (its compared bits) for the page at `address`.
    ProcPage {
        dst: Option<Register>,
        address: Operand,
        file: crate::fs::proc::page::ProcPageFile,
    },
    /// Reads one field (kB) of /proc/self/smaps for the VMA holding `address`.
    Smaps {
        dst: Option<Register>,
        address: Operand,
        field: crate::fs::proc::task_mmu::SmapsField,
    },
    /// `dst = userfaultfd(0)`: a new userfaultfd of the process.
    Userfaultfd {
        dst: Option<Register>,
    },
    /// `ioctl(uffd, UFFDIO_API)` with `uffdio_api.api = api` (UFFD_API, 0xAA, unless the
    /// scenario names another).
    UffdioApi {
        dst: Option<Register>,
        uffd: Operand,
        api: u64,
    },
    /// `ioctl(uffd, UFFDIO_REGISTER)` of a range in missing mode.
    UffdioRegister {
        dst: Option<Register>,
        uffd: Operand,
        address: Operand,
        length: u64,
    },
    /// `read(uffd)`: `dst` gets the faulting address of the next UFFD_EVENT_PAGEFAULT message.
    UffdRead {
        dst: Option<Register>,
        uffd: Operand,
    },
    /// `ioctl(uffd, UFFDIO_COPY)` (from `from`) or `ioctl(uffd, UFFDIO_ZEROPAGE)` (`from` None):
    /// `dst` gets the bytes filled, or a negative errno.
    UffdioFill {
        dst: Option<Register>,
        uffd: Operand,
        to: Operand,
        from: Option<Operand>,
        length: u64,
    },
    /// `ioctl(uffd, UFFDIO_MOVE)`: `dst` gets the bytes moved, or a negative errno.
    UffdioMove {
        dst: Option<Register>,
        uffd: Operand,
        to: Operand,
        from: Operand,
        length: u64,
        allow_src_holes: bool,
    },
    /// debugfs `split_huge_pages` ("1"): split_huge_pages_all() splits every THP on the LRU.
    SplitHugePages,
    /// A reclaim pass as kswapd runs it: isolate every LRU folio and shrink the list.
    Reclaim,
    /// User-level synchronisation between scenario threads (an eventfd or a pipe write): sets
    /// the event.
    Signal {
        event: u8,
    },
    /// Blocks until the event is set.
    WaitEvent {
        event: u8,
    },
}

impl Instruction {
    /// The register the instruction's result goes to, if it has one.
    pub fn dst(&self) -> Option<Register> {
        match self {
            Instruction::Mmap { dst, .. } => Some(*dst),
            Instruction::Munmap { dst, .. }
            | Instruction::Mprotect { dst, .. }
            | Instruction::Mremap { dst, .. }
            | Instruction::Madvise { dst, .. }
            | Instruction::Pread { dst, .. }
            | Instruction::Ftruncate { dst, .. }
            | Instruction::MovePagesStatus { dst, .. }
            | Instruction::Smaps { dst, .. }
            | Instruction::ProcPage { dst, .. }
            | Instruction::Userfaultfd { dst }
            | Instruction::UffdioApi { dst, .. }
            | Instruction::UffdioRegister { dst, .. }
            | Instruction::UffdioFill { dst, .. }
            | Instruction::UffdioMove { dst, .. }
            | Instruction::UffdRead { dst, .. }
            | Instruction::Fork { dst, .. } => *dst,
            Instruction::Store { .. }
            | Instruction::Load { .. }
            | Instruction::Assert { .. }
            | Instruction::Spawn { .. }
            | Instruction::Join { .. }
            | Instruction::Exit
            | Instruction::SplitHugePages
            | Instruction::Reclaim
            | Instruction::Signal { .. }
            | Instruction::WaitEvent { .. } => None,
        }
    }
}
