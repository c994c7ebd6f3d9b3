//! Threads and their kernel call stacks.
//!
//! A thread runs its program one instruction at a time; an instruction that enters the kernel
//! pushes a [`Frame`], the resumable state of one kernel function. One step of the thread runs
//! one atomic step of its top frame: up to the next lock acquisition or release or the next
//! lockless access to shared state. A frame calls another by pushing it and resumes with the
//! callee's return value.
//!
//! A critical section whose body is a single step is taken, run and released in that one step:
//! nothing else can observe the lock held between them, so this loses no interleaving.

use crate::access::Ctx;
use crate::arch::x86::mm::fault::UserAccess;
use crate::block::fops::DirectIo;
use crate::folio::{FolioId, Pfn};
use crate::mm::gup::{GupFast, GupSlow};
use crate::mm::madvise::Madvise;
use crate::mm::memory::{Fault, Zap};
use crate::mm::mmap::{ExitMmap, Mmap, Munmap};
use crate::mm::rmap::{FolioReferenced, TryToUnmap};
use crate::mm::vmscan::{ShrinkFolioList, ShrinkInactiveList};
use crate::shared::Shared;
use crate::state::{AnonVmaId, Kernel, MmId, ThreadId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThreadStatus {
    NotStarted,
    Running,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Thread {
    pub status: ThreadStatus,
    pub pc: u32,
    pub registers: Shared<Vec<i64>>,
    pub stack: Vec<Frame>,
    /// The return value of the frame that just returned, for its caller's next step.
    pub returned: Option<i64>,
    /// The `pages` array GUP fills (thread-local, as the kernel's is on the caller's stack).
    pub pages: Shared<Vec<Pfn>>,
    /// The folio list reclaim isolated and then returns to the LRU.
    pub folio_list: Shared<Vec<FolioId>>,
    /// Folios whose swap writeback this thread submitted and whose completion is pending.
    pub writeback: Shared<Vec<FolioId>>,
}

impl Thread {
    pub fn new(registers: usize, started: bool) -> Thread {
        Thread {
            status: if started { ThreadStatus::Running } else { ThreadStatus::NotStarted },
            pc: 0,
            registers: Shared::new(vec![0; registers]),
            stack: Vec::new(),
            returned: None,
            pages: Shared::default(),
            folio_list: Shared::default(),
            writeback: Shared::default(),
        }
    }
}

/// What a frame's step asks of the thread.
pub enum Flow {
    /// Stay on this frame: its next step comes next.
    Continue,
    /// Push a callee; this frame resumes with its return value.
    Call(Frame),
    /// Pop this frame, returning a value to the caller (or to the instruction).
    Return(i64),
}

impl Flow {
    /// The one spelling of "go to the next stage": sets a frame's stage (with the data that
    /// stage needs) and stays on the frame, whose next step runs it. It is the kernel's
    /// `goto label;` at a step boundary.
    pub fn goto<S>(stage: &mut S, next: S) -> Flow {
        *stage = next;
        Flow::Continue
    }

    /// The one spelling of a call: sets the stage the frame resumes at when `callee` returns
    /// (the stage reads the return value), and pushes the callee.
    pub fn call<S>(stage: &mut S, resume: S, callee: Frame) -> Flow {
        *stage = resume;
        Flow::Call(callee)
    }
}

/// What a frame's next step must wait for: a blocked thread is not enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Nothing,
    MmapRead(MmId),
    MmapWrite(MmId),
    PteLock(MmId, u64),
    /// Asleep until the PTE is populated (a userfault resolved by the handler).
    PtePopulated(MmId, u64),
    /// read() on a userfaultfd: until a message is queued.
    UffdMessage(u32),
    /// double_pt_lock() or copy_pte_range()'s dst_ptl and src_ptl: the PTE locks of two
    /// tables, of one mm or two (or one lock, if they share it).
    PteLocks((MmId, u64), (MmId, u64)),
    AnonVmaRead(AnonVmaId),
    AnonVmaWrite(AnonVmaId),
    /// folio_lock(): sleeps until PG_locked is clear.
    FolioLock(FolioId),
}

impl Wait {
    pub fn satisfied(self, k: &Kernel) -> bool {
        match self {
            Wait::Nothing => true,
            Wait::MmapRead(mm) => Ctx::mmap_read_available(k, mm),
            Wait::MmapWrite(mm) => Ctx::mmap_write_available(k, mm),
            Wait::PteLock(mm, vpn) => Ctx::ptl_available(k, mm, vpn),
            Wait::PtePopulated(mm, vpn) => !k.mms[mm as usize].pte(vpn).is_none(),
            Wait::UffdMessage(uffd) => k.uffds.get(uffd as usize).is_some_and(|u| !u.messages.is_empty()),
            Wait::PteLocks((mm_a, a), (mm_b, b)) => Ctx::ptl_available(k, mm_a, a) && Ctx::ptl_available(k, mm_b, b),
            Wait::AnonVmaRead(anon_vma) => Ctx::anon_vma_read_available(k, anon_vma),
            Wait::AnonVmaWrite(anon_vma) => Ctx::anon_vma_write_available(k, anon_vma),
            Wait::FolioLock(folio) => !k.folio(folio).test(crate::folio::PageFlag::Locked),
        }
    }
}

/// The kernel functions a thread can be inside, each a resumable state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Frame {
    UserAccess(UserAccess),
    Fault(Fault),
    Zap(Zap),
    Mmap(Mmap),
    Munmap(Munmap),
    Mprotect(crate::mm::mmap::Mprotect),
    Mremap(crate::mm::mremap::Mremap),
    ExitMmap(ExitMmap),
    Madvise(Madvise),
    GupFast(GupFast),
    GupSlow(GupSlow),
    DirectIo(DirectIo),
    FilemapRead(crate::mm::filemap::FilemapRead),
    Truncate(crate::mm::truncate::Truncate),
    ShrinkInactiveList(ShrinkInactiveList),
    ShrinkFolioList(ShrinkFolioList),
    TryToUnmap(TryToUnmap),
    FolioReferenced(FolioReferenced),
    Fork(crate::kernel::fork::Fork),
    DriverMmap(crate::drivers::DriverMmap),
    PagesStat(crate::mm::migrate::PagesStat),
    MovePages(crate::mm::userfaultfd::MovePages),
    UffdSyscall(crate::mm::userfaultfd::UffdSyscall),
    MfillAtomic(crate::mm::userfaultfd::MfillAtomic),
    SplitHugePages(crate::mm::huge_memory::SplitHugePages),
    SplitHugePage(crate::mm::huge_memory::SplitHugePage),
    ShowSmap(crate::fs::proc::task_mmu::ShowSmap),
    ProcPageRead(crate::fs::proc::page::ProcPageRead),
}

macro_rules! each_frame {
    ($frame:expr, $inner:ident => $body:expr) => {
        match $frame {
            Frame::UserAccess($inner) => $body,
            Frame::Fault($inner) => $body,
            Frame::Zap($inner) => $body,
            Frame::Mmap($inner) => $body,
            Frame::Munmap($inner) => $body,
            Frame::Mprotect($inner) => $body,
            Frame::Mremap($inner) => $body,
            Frame::ExitMmap($inner) => $body,
            Frame::Madvise($inner) => $body,
            Frame::GupFast($inner) => $body,
            Frame::GupSlow($inner) => $body,
            Frame::DirectIo($inner) => $body,
            Frame::FilemapRead($inner) => $body,
            Frame::Truncate($inner) => $body,
            Frame::ShrinkInactiveList($inner) => $body,
            Frame::ShrinkFolioList($inner) => $body,
            Frame::TryToUnmap($inner) => $body,
            Frame::FolioReferenced($inner) => $body,
            Frame::Fork($inner) => $body,
            Frame::DriverMmap($inner) => $body,
            Frame::PagesStat($inner) => $body,
            Frame::MovePages($inner) => $body,
            Frame::UffdSyscall($inner) => $body,
            Frame::MfillAtomic($inner) => $body,
            Frame::SplitHugePages($inner) => $body,
            Frame::SplitHugePage($inner) => $body,
            Frame::ShowSmap($inner) => $body,
            Frame::ProcPageRead($inner) => $body,
        }
    };
}

/// The interface of every frame.
pub trait KernelFunction {
    /// Runs one atomic step. `returned` is the value of a callee that just returned.
    fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow;
    /// What the next step waits for.
    fn wait(&self, k: &Kernel, thread: ThreadId) -> Wait;
    /// Whose PG_referenced this frame, the frames it calls (`callees`, innermost last) and its
    /// callers may still read before the instruction that entered the kernel is over, for the
    /// canonical encoding's liveness analysis (system/referenced.rs). The default knows nothing
    /// narrower than the instruction does.
    fn referenced_reads<'a>(&'a self, _thread: &'a Thread, _callees: &'a [Frame]) -> ReferencedReads<'a> {
        ReferencedReads::Every
    }
}

/// Which folios' PG_referenced a kernel path may still read ([`KernelFunction::referenced_reads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferencedReads<'a> {
    Nothing,
    /// File folios only: folio_mark_accessed() from zap_present_folio_ptes() (a young file
    /// PTE) or filemap_read().
    FileFolios,
    /// These folios (reclaim's, from the one folio_check_references() has still to see).
    Folios(&'a [FolioId]),
    /// Whatever gets mapped at `[start, end)` in `mm`: GUP's slow path marks what it pins
    /// accessed (follow_page_pte() with FOLL_TOUCH).
    Addresses {
        mm: MmId,
        start: u64,
        end: u64,
    },
    Every,
}

impl Frame {
    pub fn step(&mut self, ctx: &mut Ctx, returned: Option<i64>) -> Flow {
        each_frame!(self, frame => frame.step(ctx, returned))
    }

    pub fn wait(&self, k: &Kernel, thread: ThreadId) -> Wait {
        each_frame!(self, frame => frame.wait(k, thread))
    }

    pub fn referenced_reads<'a>(&'a self, thread: &'a Thread, callees: &'a [Frame]) -> ReferencedReads<'a> {
        each_frame!(self, frame => frame.referenced_reads(thread, callees))
    }
}

/// The errno values the modelled syscalls return (negated, as the kernel does).
pub mod errno {
    pub const ENOENT: i64 = 2;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EEXIST: i64 = 17;
    pub const EINVAL: i64 = 22;
    pub const EACCES: i64 = 13;
    pub const EPERM: i64 = 1;

    /// Every errno of include/uapi/asm-generic/errno-base.h and errno.h (x86-64 and arm64 use
    /// them both), by name and value.
    pub const ALL: &[(&str, i64)] = &[
        ("EPERM", 1),
        ("ENOENT", 2),
        ("ESRCH", 3),
        ("EINTR", 4),
        ("EIO", 5),
        ("ENXIO", 6),
        ("E2BIG", 7),
        ("ENOEXEC", 8),
        ("EBADF", 9),
        ("ECHILD", 10),
        ("EAGAIN", 11),
        ("ENOMEM", 12),
        ("EACCES", 13),
        ("EFAULT", 14),
        ("ENOTBLK", 15),
        ("EBUSY", 16),
        ("EEXIST", 17),
        ("EXDEV", 18),
        ("ENODEV", 19),
        ("ENOTDIR", 20),
        ("EISDIR", 21),
        ("EINVAL", 22),
        ("ENFILE", 23),
        ("EMFILE", 24),
        ("ENOTTY", 25),
        ("ETXTBSY", 26),
        ("EFBIG", 27),
        ("ENOSPC", 28),
        ("ESPIPE", 29),
        ("EROFS", 30),
        ("EMLINK", 31),
        ("EPIPE", 32),
        ("EDOM", 33),
        ("ERANGE", 34),
        ("EDEADLK", 35),
        ("ENAMETOOLONG", 36),
        ("ENOLCK", 37),
        ("ENOSYS", 38),
        ("ENOTEMPTY", 39),
        ("ELOOP", 40),
        ("ENOMSG", 42),
        ("EIDRM", 43),
        ("ECHRNG", 44),
        ("EL2NSYNC", 45),
        ("EL3HLT", 46),
        ("EL3RST", 47),
        ("ELNRNG", 48),
        ("EUNATCH", 49),
        ("ENOCSI", 50),
        ("EL2HLT", 51),
        ("EBADE", 52),
        ("EBADR", 53),
        ("EXFULL", 54),
        ("ENOANO", 55),
        ("EBADRQC", 56),
        ("EBADSLT", 57),
        ("EBFONT", 59),
        ("ENOSTR", 60),
        ("ENODATA", 61),
        ("ETIME", 62),
        ("ENOSR", 63),
        ("ENONET", 64),
        ("ENOPKG", 65),
        ("EREMOTE", 66),
        ("ENOLINK", 67),
        ("EADV", 68),
        ("ESRMNT", 69),
        ("ECOMM", 70),
        ("EPROTO", 71),
        ("EMULTIHOP", 72),
        ("EDOTDOT", 73),
        ("EBADMSG", 74),
        ("EOVERFLOW", 75),
        ("ENOTUNIQ", 76),
        ("EBADFD", 77),
        ("EREMCHG", 78),
        ("ELIBACC", 79),
        ("ELIBBAD", 80),
        ("ELIBSCN", 81),
        ("ELIBMAX", 82),
        ("ELIBEXEC", 83),
        ("EILSEQ", 84),
        ("ERESTART", 85),
        ("ESTRPIPE", 86),
        ("EUSERS", 87),
        ("ENOTSOCK", 88),
        ("EDESTADDRREQ", 89),
        ("EMSGSIZE", 90),
        ("EPROTOTYPE", 91),
        ("ENOPROTOOPT", 92),
        ("EPROTONOSUPPORT", 93),
        ("ESOCKTNOSUPPORT", 94),
        ("EOPNOTSUPP", 95),
        ("EPFNOSUPPORT", 96),
        ("EAFNOSUPPORT", 97),
        ("EADDRINUSE", 98),
        ("EADDRNOTAVAIL", 99),
        ("ENETDOWN", 100),
        ("ENETUNREACH", 101),
        ("ENETRESET", 102),
        ("ECONNABORTED", 103),
        ("ECONNRESET", 104),
        ("ENOBUFS", 105),
        ("EISCONN", 106),
        ("ENOTCONN", 107),
        ("ESHUTDOWN", 108),
        ("ETOOMANYREFS", 109),
        ("ETIMEDOUT", 110),
        ("ECONNREFUSED", 111),
        ("EHOSTDOWN", 112),
        ("EHOSTUNREACH", 113),
        ("EALREADY", 114),
        ("EINPROGRESS", 115),
        ("ESTALE", 116),
        ("EUCLEAN", 117),
        ("ENOTNAM", 118),
        ("ENAVAIL", 119),
        ("EISNAM", 120),
        ("EREMOTEIO", 121),
        ("EDQUOT", 122),
        ("ENOMEDIUM", 123),
        ("EMEDIUMTYPE", 124),
        ("ECANCELED", 125),
        ("ENOKEY", 126),
        ("EKEYEXPIRED", 127),
        ("EKEYREVOKED", 128),
        ("EKEYREJECTED", 129),
        ("EOWNERDEAD", 130),
        ("ENOTRECOVERABLE", 131),
        ("ERFKILL", 132),
        ("EHWPOISON", 133),
    ];

    /// The names errno.h defines as another's value.
    const ALIASES: &[(&str, i64)] = &[("EWOULDBLOCK", EAGAIN), ("EDEADLOCK", 35)];

    /// The errno a name stands for (positive), for scenarios: `assert s == -ENOENT`.
    pub fn by_name(name: &str) -> Option<i64> {
        ALL.iter().chain(ALIASES).find(|(n, _)| *n == name).map(|&(_, value)| value)
    }

    /// The name of a negated errno (`-2` is ENOENT), as the kernel's headers spell it.
    pub fn name(value: i64) -> Option<&'static str> {
        let errno = value.checked_neg()?;
        ALL.iter().find(|&&(_, e)| e == errno).map(|&(name, _)| name)
    }
}
