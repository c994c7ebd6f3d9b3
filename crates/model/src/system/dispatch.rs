//! Instruction dispatch: the next instruction of a thread with no kernel frame runs as a local
//! step (assert, spawn, signal, wait, join) or enters a syscall by pushing its frame.

use super::{System, SCENARIO_ERROR};
use crate::access::Ctx;
use crate::arch::x86::mm::fault::UserAccess;
use crate::mm::madvise::Madvise;
use crate::mm::mmap::{ExitMmap, Mmap, Munmap};
use crate::mm::userfaultfd::{MfillAtomic, MovePages, UffdCall, UffdSyscall};
use crate::mm::vmscan::ShrinkInactiveList;
use crate::program::{Instruction, Operand};
use crate::state::{MmId, ThreadId};
use crate::thread::{errno, Frame};
use crate::violation::{Violation, ViolationKind};

/// A thread's registers while its next instruction's operands are evaluated: `buf + 4K` is the
/// register's value plus a constant, an address computation that must fit in 64 bits (the
/// scenario's constant arithmetic is checked when it is built; a register's value is known only
/// now). An overflow is the scenario's bug, not the kernel's: the run ends as a scenario error.
struct Operands<'a> {
    registers: &'a [i64],
    /// The first overflowing `(register value, offset)`.
    overflow: std::cell::Cell<Option<(i64, i64)>>,
}

impl Operands<'_> {
    fn value(&self, operand: Operand) -> i64 {
        match operand {
            Operand::Constant(value) => value,
            Operand::Register(register, offset) => {
                let value = self.registers[register as usize];
                value.checked_add(offset).unwrap_or_else(|| {
                    self.overflow.set(self.overflow.get().or(Some((value, offset))));
                    0
                })
            }
        }
    }

    /// Whether an operand overflowed; if so the run ends with a scenario error naming the
    /// thread and instruction.
    fn overflowed(&self, ctx: &mut Ctx, thread: &str, pc: u32) -> bool {
        let Some((value, offset)) = self.overflow.get() else { return false };
        let message = format!(
            "{SCENARIO_ERROR} thread {thread}, instruction {}: a variable's value {value} plus {offset} does not fit in a signed 64-bit integer",
            pc + 1
        );
        ctx.violation(Violation::new(ViolationKind::Invariant, message));
        true
    }
}

impl System {
    /// Runs the instruction at the thread's pc: a local step, or the entry into a syscall.
    pub(super) fn dispatch(&self, ctx: &mut Ctx, thread: ThreadId) {
        let spec = &self.spec.threads[thread as usize];
        let (pc, registers) = {
            let local = ctx.local();
            (*local.pc, local.registers.clone())
        };
        let t = Operands { registers: &registers, overflow: std::cell::Cell::new(None) };
        let Some(instruction) = spec.program.get(pc as usize) else {
            ctx.thread_exit();
            ctx.event("do_exit", "exit", |_| "thread finished".to_string());
            return;
        };
        let mm = spec.mm.unwrap_or(0);
        let frame = match instruction {
            Instruction::Mmap { .. }
            | Instruction::Munmap { .. }
            | Instruction::Mremap { .. }
            | Instruction::Mprotect { .. }
            | Instruction::Store { .. }
            | Instruction::Load { .. }
            | Instruction::Madvise { .. } => self.memory_syscall(mm, &t, instruction),
            Instruction::Pread { .. } => match self.pread(ctx, thread, mm, &t, instruction) {
                Some(frame) => frame,
                None => return,
            },
            Instruction::Userfaultfd { .. }
            | Instruction::UffdioApi { .. }
            | Instruction::UffdioRegister { .. }
            | Instruction::UffdRead { .. }
            | Instruction::UffdioFill { .. } => uffd_syscall(mm, &t, instruction),
            Instruction::UffdioMove { .. } => match self.uffdio_move(ctx, thread, mm, &t, instruction) {
                Some(frame) => frame,
                None => return,
            },
            Instruction::Ftruncate { .. }
            | Instruction::MovePagesStatus { .. }
            | Instruction::Smaps { .. }
            | Instruction::ProcPage { .. }
            | Instruction::Exit
            | Instruction::Fork { .. }
            | Instruction::Reclaim
            | Instruction::SplitHugePages => task_syscall(mm, &t, instruction),
            Instruction::Assert { .. } => return user_assert(ctx, &t, &spec.name, pc, instruction),
            Instruction::Spawn { thread: child } => return self.spawn(ctx, *child, &registers),
            Instruction::Signal { event } => return signal(ctx, *event),
            Instruction::WaitEvent { event } => return wait_event(ctx, *event),
            Instruction::Join { threads } => return join(ctx, threads),
        };
        if !t.overflowed(ctx, &spec.name, pc) {
            ctx.local().stack.push(frame);
        }
    }

    /// The address-space syscalls and the user accesses that enter the kernel.
    fn memory_syscall(&self, mm: MmId, t: &Operands, instruction: &Instruction) -> Frame {
        match instruction {
            Instruction::Mmap { length, prot, flags, device, file, .. } => {
                let device = device.map(|id| (id, self.spec.devices[id as usize].kind));
                Frame::Mmap(Mmap::new(mm, *length, *prot, *flags, device, *file))
            }
            Instruction::Munmap { address, length, .. } => {
                Frame::Munmap(Munmap::new(mm, t.value(*address) as u64, *length))
            }
            Instruction::Mremap { address, old_length, new_length, flags, new_address, .. } => {
                Frame::Mremap(crate::mm::mremap::Mremap::new(
                    mm,
                    t.value(*address) as u64,
                    *old_length,
                    *new_length,
                    *flags,
                    t.value(*new_address) as u64,
                ))
            }
            Instruction::Mprotect { address, length, prot, .. } => Frame::Mprotect(crate::mm::mmap::Mprotect {
                mm,
                start: t.value(*address) as u64,
                length: *length,
                prot: *prot,
            }),
            Instruction::Store { address, length, byte, location } => {
                Frame::UserAccess(UserAccess::new(mm, t.value(*address) as u64, *length, true, *byte, *location))
            }
            Instruction::Load { address, length, expect, location } => {
                Frame::UserAccess(UserAccess::new(mm, t.value(*address) as u64, *length, false, *expect, *location))
            }
            Instruction::Madvise { address, length, advice, .. } => {
                Frame::Madvise(Madvise::new(mm, t.value(*address) as u64, *length, *advice))
            }
            other => unreachable!("dispatch() sends {other:?} elsewhere"),
        }
    }

    /// fs/read_write.c: ksys_pread64(): rw_verify_area() fails the call at once; otherwise
    /// O_DIRECT goes to the block device's direct IO, the rest to filemap_read(). `None`: the
    /// call is over.
    fn pread(&self, ctx: &mut Ctx, thread: ThreadId, mm: MmId, t: &Operands, pread: &Instruction) -> Option<Frame> {
        let Instruction::Pread { file, buffer, length, offset, direct, .. } = pread else {
            unreachable!("dispatch() sends only pread() here")
        };
        let buffer = t.value(*buffer) as u64;
        match crate::fs::read_write::ksys_pread64(buffer, *length, *offset) {
            Err(error) => {
                self.complete(ctx, thread, error);
                ctx.event("ksys_pread64", "rw_verify_area", |_| format!("-{}", errno::name(error).unwrap_or("?")));
                None
            }
            Ok(length) if *direct => {
                Some(Frame::DirectIo(crate::block::fops::DirectIo::new(mm, *file, buffer, length, *offset)))
            }
            Ok(length) => {
                Some(Frame::FilemapRead(crate::mm::filemap::FilemapRead::new(mm, *file, buffer, length, *offset)))
            }
        }
    }

    /// fs/userfaultfd.c: userfaultfd_ioctl(UFFDIO_MOVE), which kernels before adef440691ba do not
    /// know. `None`: the call is over.
    fn uffdio_move(
        &self,
        ctx: &mut Ctx,
        thread: ThreadId,
        mm: MmId,
        t: &Operands,
        uffdio_move: &Instruction,
    ) -> Option<Frame> {
        let Instruction::UffdioMove { uffd, to, from, length, allow_src_holes, .. } = uffdio_move else {
            unreachable!("dispatch() sends only UFFDIO_MOVE here")
        };
        if !ctx.patched(crate::patches::Patch::UffdioMove) {
            // Before adef440691ba, userfaultfd_ioctl() knows no UFFDIO_MOVE.
            self.complete(ctx, thread, -errno::EINVAL);
            ctx.event("userfaultfd_ioctl", "UFFDIO_MOVE", |_| "unknown ioctl: -EINVAL".to_string());
            return None;
        }
        Some(Frame::MovePages(MovePages::new(
            mm,
            t.value(*uffd),
            t.value(*to) as u64,
            t.value(*from) as u64,
            *length,
            *allow_src_holes,
        )))
    }

    /// kernel/fork.c: wake_up_new_task() of a thread of this process.
    fn spawn(&self, ctx: &mut Ctx, child: ThreadId, registers: &crate::shared::Shared<Vec<i64>>) {
        ctx.wake_up_new_task(child, registers.clone());
        *ctx.local().pc += 1;
        let name = self.thread_name(child).to_string();
        ctx.event("clone", "spawn", |_| format!("thread {name} starts"));
    }
}

/// fs/userfaultfd.c: userfaultfd() and the ioctls of a userfaultfd but UFFDIO_MOVE.
fn uffd_syscall(mm: MmId, t: &Operands, instruction: &Instruction) -> Frame {
    match instruction {
        Instruction::Userfaultfd { .. } => Frame::UffdSyscall(UffdSyscall { mm, call: UffdCall::Userfaultfd }),
        Instruction::UffdioApi { uffd, api, .. } => {
            Frame::UffdSyscall(UffdSyscall { mm, call: UffdCall::Api { fd: t.value(*uffd), api: *api } })
        }
        Instruction::UffdioRegister { uffd, address, length, .. } => Frame::UffdSyscall(UffdSyscall {
            mm,
            call: UffdCall::Register { fd: t.value(*uffd), start: t.value(*address) as u64, length: *length },
        }),
        Instruction::UffdRead { uffd, .. } => {
            Frame::UffdSyscall(UffdSyscall { mm, call: UffdCall::Read { fd: t.value(*uffd) } })
        }
        Instruction::UffdioFill { uffd, to, from, length, .. } => Frame::MfillAtomic(MfillAtomic::new(
            mm,
            t.value(*uffd),
            t.value(*to) as u64,
            from.map(|f| t.value(f) as u64),
            *length,
        )),
        other => unreachable!("dispatch() sends {other:?} elsewhere"),
    }
}

/// The syscalls of files, of /proc, of the process (fork, exit) and of the machine (reclaim,
/// the debugfs THP split).
fn task_syscall(mm: MmId, t: &Operands, instruction: &Instruction) -> Frame {
    match instruction {
        Instruction::Ftruncate { file, length, .. } => {
            Frame::Truncate(crate::mm::truncate::Truncate::new(*file, *length))
        }
        Instruction::MovePagesStatus { address, .. } => {
            Frame::PagesStat(crate::mm::migrate::PagesStat::new(mm, t.value(*address) as u64))
        }
        Instruction::Smaps { address, field, .. } => {
            Frame::ShowSmap(crate::fs::proc::task_mmu::ShowSmap::new(mm, t.value(*address) as u64, *field))
        }
        Instruction::ProcPage { address, file, .. } => Frame::ProcPageRead(crate::fs::proc::page::ProcPageRead {
            mm,
            address: t.value(*address) as u64,
            file: *file,
        }),
        Instruction::Exit => Frame::ExitMmap(ExitMmap { mm, zapped: false }),
        Instruction::Fork { child, child_mm, .. } => Frame::Fork(crate::kernel::fork::Fork::new(mm, *child_mm, *child)),
        Instruction::Reclaim => Frame::ShrinkInactiveList(ShrinkInactiveList::new()),
        Instruction::SplitHugePages => Frame::SplitHugePages(crate::mm::huge_memory::SplitHugePages::new()),
        other => unreachable!("dispatch() sends {other:?} elsewhere"),
    }
}

/// The scenario's `assert`: a violation if the comparison does not hold.
fn user_assert(ctx: &mut Ctx, t: &Operands, thread: &str, pc: u32, assert: &Instruction) {
    let Instruction::Assert { condition, text, location } = assert else {
        unreachable!("dispatch() sends only assert here")
    };
    let held = condition.holds(&mut |operand| t.value(operand));
    if t.overflowed(ctx, thread, pc) {
        return;
    }
    // A single comparison shows its two values; a compound condition says it did not hold.
    let values = condition.as_comparison().map(|(left, comparison, right)| (t.value(left), comparison, t.value(right)));
    if !held {
        let shown = |v: i64| errno::name(v).map_or(v.to_string(), |name| format!("{v} (-{name})"));
        let why = match values {
            Some((l, comparison, r)) => format!(": {} {} {}", shown(l), comparison.symbol(), shown(r)),
            None => String::new(),
        };
        let message = format!("line {}: assert {text} failed{why}", location.line);
        ctx.violation(Violation::new(ViolationKind::Assertion, message));
    }
    *ctx.local().pc += 1;
    ctx.event("user", "assert", |_| match values {
        Some((l, comparison, r)) => format!("{text}: {l} {} {r}", comparison.symbol()),
        None => format!("{text}: {}", if held { "holds" } else { "does not hold" }),
    });
}

/// The scenario's `signal`: sets an event another thread may wait for.
fn signal(ctx: &mut Ctx, event: u8) {
    ctx.event_store(event);
    *ctx.local().pc += 1;
    ctx.event("user", "signal", |_| String::new());
}

/// The scenario's `wait`: runs once the event is set (System::can_run()).
fn wait_event(ctx: &mut Ctx, event: u8) {
    ctx.event_load(event);
    *ctx.local().pc += 1;
    ctx.event("user", "wait", |_| String::new());
}

/// The scenario's `join`: runs once the threads are done (System::can_run()).
fn join(ctx: &mut Ctx, threads: &[ThreadId]) {
    for &other in threads {
        ctx.thread_status_load(other);
    }
    *ctx.local().pc += 1;
    ctx.event("user", "join", |_| "all threads of the process finished".to_string());
}
