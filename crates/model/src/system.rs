//! The modelled system as the explorer sees it: a fixed table of threads running programs over
//! one [`Kernel`], and the oracles checked after steps and at the end.
//!
//! Architecture invariant: the model is deterministic and knows nothing of the search order.

use crate::access::weak::WeakMemory;
use crate::access::{Ctx, Effects, Event};
use crate::drivers::{order_for, DeviceKind, DeviceSpec};
use crate::folio::{
    folio_pfn, pfn_folio, pfn_page, Folio, FolioId, Mapping, PageData, PageFlag, PAGE_SIZE, ZERO_FOLIO,
};
use crate::mm::madvise::Madvise;
use crate::mm::memory::UserAccess;
use crate::mm::mmap::{ExitMmap, Mmap, Munmap};
use crate::mm::userfaultfd::{MfillAtomic, MovePages, UffdCall, UffdSyscall};
use crate::mm::vmscan::ShrinkInactiveList;
use crate::patches::KernelConfig;
use crate::program::{Instruction, Operand};
use crate::shared::Shared;
use crate::state::{File, Kernel, Mm, MmId, SwapInfo, ThreadId};
use crate::thread::{errno, Flow, Frame, Thread, ThreadStatus};
use crate::violation::{Violation, ViolationKind};
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::{Choice, Model, StepEffects};
use std::ops::Range;

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

/// How a violation message starts when the scenario, not the kernel, is wrong (the CLI exits 2).
pub const SCENARIO_ERROR: &str = "scenario error:";

/// A thread as the scenario declares it.
#[derive(Clone, Debug)]
pub struct ThreadSpec {
    pub name: String,
    /// The address space of a user thread; kernel threads have none.
    pub mm: Option<MmId>,
    pub program: Vec<Instruction>,
    /// Runs from the start (process main threads, kernel threads); others wait for a Spawn.
    pub starts: bool,
    pub registers: usize,
}

/// Everything a run starts from.
#[derive(Clone, Debug, Default)]
pub struct SystemSpec {
    pub threads: Vec<ThreadSpec>,
    pub mms: usize,
    pub files: Vec<crate::state::FileContents>,
    pub devices: Vec<DeviceSpec>,
    /// Slots of the swap device (0: no swap, as on the machines the tool runs on).
    pub swap_pages: u32,
    /// mTHP orders enabled for anonymous memory (bit n: order n, 1 to 8).
    pub anon_orders: u32,
}

pub struct System {
    pub spec: SystemSpec,
    pub config: KernelConfig,
    /// Sequential consistency unless [`System::with_memory_model`] says otherwise.
    pub memory_model: MemoryModel,
}

impl System {
    /// Device memory (of `remap_pfn` devices) is placed right after the zero page, one
    /// PG_reserved folio per device, in declaration order.
    pub fn new(mut spec: SystemSpec, config: KernelConfig) -> Self {
        let mut next: FolioId = ZERO_FOLIO + 1;
        for device in &mut spec.devices {
            if let DeviceKind::RemapPfn { base, .. } = &mut device.kind {
                *base = folio_pfn(next, 0);
                next += 1;
            }
        }
        System { spec, config, memory_model: MemoryModel::Sc }
    }

    /// The same system explored under `memory_model` (access/weak.rs says which loads may read
    /// older stores).
    pub fn with_memory_model(mut self, memory_model: MemoryModel) -> Self {
        self.memory_model = memory_model;
        self
    }

    pub fn thread_name(&self, thread: ThreadId) -> &str {
        &self.spec.threads[thread as usize].name
    }

    fn can_run(&self, k: &Kernel, thread: ThreadId) -> bool {
        let t = &k.threads[thread as usize];
        if t.status != ThreadStatus::Running {
            return false;
        }
        if let Some(frame) = t.stack.last() {
            return frame.wait(k, thread).satisfied(k);
        }
        match self.spec.threads[thread as usize].program.get(t.pc as usize) {
            Some(Instruction::Join { threads }) => {
                threads.iter().all(|&other| k.threads[other as usize].status == ThreadStatus::Done)
            }
            Some(Instruction::WaitEvent { event }) => k.events & (1 << event) != 0,
            _ => true,
        }
    }

    /// One step of `thread`: the next instruction's dispatch, or a step of its top frame.
    fn step_thread(&self, ctx: &mut Ctx, thread: ThreadId) {
        if ctx.top_frame_wait().is_none() {
            self.dispatch(ctx, thread);
            return;
        }
        let local = ctx.local();
        let (mut frame, returned) = (local.stack.pop().expect("a frame"), local.returned.take());
        let flow = frame.step(ctx, returned);
        let local = ctx.local();
        match flow {
            Flow::Continue => local.stack.push(frame),
            Flow::Call(callee) => {
                local.stack.push(frame);
                local.stack.push(callee);
            }
            Flow::Return(value) if !local.stack.is_empty() => *local.returned = Some(value),
            Flow::Return(value) => {
                self.complete(ctx, thread, value);
                if ctx.effects.violation.is_none() {
                    if let Some(violation) = ctx.quiescent_kernel().and_then(Self::check_quiescent) {
                        ctx.violation(violation);
                    }
                }
            }
        }
    }

    /// Runs the instruction at the thread's pc: a local step, or the entry into a syscall.
    fn dispatch(&self, ctx: &mut Ctx, thread: ThreadId) {
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
            Instruction::Pread { file, buffer, length, offset, direct, .. } => {
                let buffer = t.value(*buffer) as u64;
                match crate::fs::read_write::ksys_pread64(buffer, *length, *offset) {
                    Err(error) => {
                        self.complete(ctx, thread, error);
                        ctx.event("ksys_pread64", "rw_verify_area", |_| {
                            format!("-{}", errno::name(error).unwrap_or("?"))
                        });
                        return;
                    }
                    Ok(length) if *direct => {
                        Frame::DirectIo(crate::block::fops::DirectIo::new(mm, *file, buffer, length, *offset))
                    }
                    Ok(length) => {
                        Frame::FilemapRead(crate::mm::filemap::FilemapRead::new(mm, *file, buffer, length, *offset))
                    }
                }
            }
            Instruction::Ftruncate { file, length, .. } => {
                Frame::Truncate(crate::mm::truncate::Truncate::new(*file, *length))
            }
            Instruction::MovePagesStatus { address, .. } => {
                Frame::PagesStat(crate::mm::migrate::PagesStat::new(mm, t.value(*address) as u64))
            }
            Instruction::Smaps { address, field, .. } => {
                Frame::ShowSmap(crate::fs::proc::task_mmu::ShowSmap::new(mm, t.value(*address) as u64, *field))
            }
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
            Instruction::UffdioMove { uffd, to, from, length, allow_src_holes, .. } => {
                if !ctx.patched(crate::patches::Patch::UffdioMove) {
                    // Before adef440691ba, userfaultfd_ioctl() knows no UFFDIO_MOVE.
                    self.complete(ctx, thread, -crate::thread::errno::EINVAL);
                    ctx.event("userfaultfd_ioctl", "UFFDIO_MOVE", |_| "unknown ioctl: -EINVAL".to_string());
                    return;
                }
                Frame::MovePages(MovePages::new(
                    mm,
                    t.value(*uffd),
                    t.value(*to) as u64,
                    t.value(*from) as u64,
                    *length,
                    *allow_src_holes,
                ))
            }
            Instruction::ProcPage { address, file, .. } => Frame::ProcPageRead(crate::fs::proc::page::ProcPageRead {
                mm,
                address: t.value(*address) as u64,
                file: *file,
            }),
            Instruction::Exit => Frame::ExitMmap(ExitMmap { mm, zapped: false }),
            Instruction::Fork { child, child_mm, .. } => {
                Frame::Fork(crate::kernel::fork::Fork::new(mm, *child_mm, *child))
            }
            Instruction::Reclaim => Frame::ShrinkInactiveList(ShrinkInactiveList::new()),
            Instruction::SplitHugePages => Frame::SplitHugePages(crate::mm::huge_memory::SplitHugePages::new()),
            Instruction::Assert { left, comparison, right, text, location } => {
                let (l, r) = (t.value(*left), t.value(*right));
                if t.overflowed(ctx, &spec.name, pc) {
                    return;
                }
                if !comparison.holds(l, r) {
                    let shown = |v: i64| errno::name(v).map_or(v.to_string(), |name| format!("{v} (-{name})"));
                    let message = format!(
                        "line {}: assert {text} failed: {} {} {}",
                        location.line,
                        shown(l),
                        comparison.symbol(),
                        shown(r)
                    );
                    ctx.violation(Violation::new(ViolationKind::Assertion, message));
                }
                *ctx.local().pc += 1;
                ctx.event("user", "assert", |_| format!("{text}: {l} {} {r}", comparison.symbol()));
                return;
            }
            Instruction::Spawn { thread: child } => {
                ctx.wake_up_new_task(*child, registers.clone());
                *ctx.local().pc += 1;
                let name = self.thread_name(*child).to_string();
                ctx.event("clone", "spawn", |_| format!("thread {name} starts"));
                return;
            }
            Instruction::Signal { event } => {
                ctx.event_store(*event);
                *ctx.local().pc += 1;
                ctx.event("user", "signal", |_| String::new());
                return;
            }
            Instruction::WaitEvent { event } => {
                ctx.event_load(*event);
                *ctx.local().pc += 1;
                ctx.event("user", "wait", |_| String::new());
                return;
            }
            Instruction::Join { threads } => {
                for &other in threads {
                    ctx.thread_status_load(other);
                }
                *ctx.local().pc += 1;
                ctx.event("user", "join", |_| "all threads of the process finished".to_string());
                return;
            }
        };
        if !t.overflowed(ctx, &spec.name, pc) {
            ctx.local().stack.push(frame);
        }
    }

    /// Stores a finished syscall's value and moves to the next instruction.
    fn complete(&self, ctx: &mut Ctx, thread: ThreadId, value: i64) {
        let t = ctx.local();
        let dst = self.spec.threads[thread as usize].program[*t.pc as usize].dst();
        if let Some(dst) = dst {
            t.registers.make_mut()[dst as usize] = value;
        }
        *t.pc += 1;
    }

    /// Model invariants at a quiescent point (no thread inside the kernel): every present PTE
    /// maps an allocated folio that its rmap finds, and every page's mapcount equals the number
    /// of PTEs mapping it, each of which holds a reference.
    pub fn check_quiescent(k: &Kernel) -> Option<Violation> {
        let mut mappings = vec![Vec::new(); k.folios.len()];
        for (mm_id, mm) in k.mms.iter().enumerate() {
            for &(vpn, pte) in &mm.ptes {
                let Some(present) = pte.present().filter(|p| !p.special) else { continue };
                let (folio, page) = (pfn_folio(present.pfn), pfn_page(present.pfn));
                let f = k.folio(folio);
                if !f.allocated {
                    return Some(invariant(k, folio, format!("PTE {:#x} maps freed folio {folio}", vpn << 12)));
                }
                if !rmap_finds(k, f, mm_id as MmId, vpn << 12, page) {
                    return Some(invariant(
                        k,
                        folio,
                        format!("PTE {:#x} maps folio {folio}, which its rmap does not find there", vpn << 12),
                    ));
                }
                mappings[folio as usize].push(page);
            }
        }
        if let Some(violation) = check_swap(k).or_else(|| check_page_cache(k)) {
            return Some(violation);
        }
        let mut pmd_mappings = vec![0i32; k.folios.len()];
        for mm in &k.mms {
            for (_, pmd) in mm.pmds.iter().filter(|e| !e.1.special) {
                let folio = pfn_folio(pmd.pfn);
                if !k.folio(folio).allocated {
                    return Some(invariant(k, folio, format!("a huge PMD maps freed folio {folio}")));
                }
                pmd_mappings[folio as usize] += 1;
            }
        }
        for (id, folio) in k.folios.iter().enumerate().skip(1).filter(|(_, f)| f.allocated) {
            if folio.entire_mapcount != pmd_mappings[id] {
                let message = format!(
                    "folio {id}: entire mapcount {} but {} PMD(s) map it",
                    folio.entire_mapcount, pmd_mappings[id]
                );
                return Some(invariant(k, id as FolioId, message));
            }
        }
        for (id, folio) in k.folios.iter().enumerate().skip(1).filter(|(_, f)| f.allocated) {
            let id = id as FolioId;
            for (page, p) in folio.pages.iter().enumerate() {
                let mapped = mappings[id as usize].iter().filter(|&&m| m == page).count() as i32;
                if p.mapcount != mapped {
                    return Some(invariant(
                        k,
                        id,
                        format!("folio {id} page {page}: mapcount {} but {mapped} PTE(s) map it", p.mapcount),
                    ));
                }
            }
            if folio.refcount < folio.mapcount() {
                return Some(invariant(
                    k,
                    id,
                    format!("folio {id}: refcount {} below mapcount {}", folio.refcount, folio.mapcount()),
                ));
            }
        }
        None
    }
}

/// The page cache at a quiescent point: each slot's folio is allocated, says it belongs to
/// that file at that index, and holds the cache's reference; none lies beyond i_size.
fn check_page_cache(k: &Kernel) -> Option<Violation> {
    for (file, f) in k.files.iter().enumerate() {
        for (&index, &folio) in &f.cache {
            if index >= f.blocks.len() {
                let message = format!("file {file}: folio {folio} cached at index {index}, beyond i_size");
                return Some(invariant(k, folio, message));
            }
            let entry = k.folio(folio);
            let ok = entry.allocated
                && entry.mapping == Mapping::File(file as u32)
                && entry.index == index
                && entry.refcount >= entry.nr_pages() as i32 + entry.mapcount();
            if !ok {
                let message = format!("file {file} page cache index {index}: folio {folio} does not belong there");
                return Some(invariant(k, folio, message));
            }
        }
    }
    None
}

/// mm/swapfile.c: setup_swap_map(): every slot free but the header's (SWAP_MAP_BAD).
fn swap_map_initial(pages: u32) -> Vec<u8> {
    let mut map = vec![0; pages as usize];
    if let Some(header) = map.first_mut() {
        *header = crate::mm::swapfile::SWAP_MAP_BAD;
    }
    map
}

/// Swap accounting at a quiescent point: each slot's swap_map count is the number of swap PTEs
/// naming it, SWAP_HAS_CACHE is set exactly when a folio caches it, and that folio says so. The
/// header's slot stays SWAP_MAP_BAD.
fn check_swap(k: &Kernel) -> Option<Violation> {
    use crate::mm::swapfile::{swap_count, SWAP_HAS_CACHE, SWAP_MAP_BAD};
    let mut ptes = vec![0u32; k.swap.swap_map.len()];
    for mm in &k.mms {
        for (_, pte) in &mm.ptes {
            if let crate::pgtable::Pte::Swap { offset, .. } = pte {
                ptes[*offset as usize] += 1;
            }
        }
    }
    for (offset, &map) in k.swap.swap_map.iter().enumerate() {
        // A bad slot (the header's is one) is never handed out; the header's stays bad.
        let bad = map == SWAP_MAP_BAD;
        if (bad || offset == 0) && !(bad && ptes[offset] == 0 && k.swap.cache[offset].is_none()) {
            let message = format!("swap slot {offset:#x}: swap_map {map:#x}, {} swap PTE(s)", ptes[offset]);
            return Some(Violation::new(ViolationKind::Invariant, message));
        }
        if bad {
            continue;
        }
        let cached = k.swap.cache[offset];
        let cache_ok = cached.is_none_or(|f| {
            let folio = k.folio(f);
            let covers =
                folio.swap.is_some_and(|base| (base..base + folio.nr_pages() as u32).contains(&(offset as u32)));
            folio.allocated && folio.test(PageFlag::Swapcache) && covers
        });
        if u32::from(swap_count(map)) != ptes[offset] || (map & SWAP_HAS_CACHE != 0) != cached.is_some() || !cache_ok {
            let message = format!(
                "swap slot {offset:#x}: swap_map {map:#x} but {} swap PTE(s) and swap cache {cached:?}",
                ptes[offset]
            );
            let dump = cached.map(|f| vec![k.folio(f).dump(f)]).unwrap_or_default();
            return Some(Violation { kind: ViolationKind::Invariant, message, dump });
        }
    }
    None
}

fn invariant(k: &Kernel, folio: FolioId, message: String) -> Violation {
    Violation { kind: ViolationKind::Invariant, message, dump: vec![k.folio(folio).dump(folio)] }
}

/// Whether rmap_walk() of `folio` visits `address` in `mm`.
fn rmap_finds(k: &Kernel, folio: &Folio, mm: MmId, address: u64, page: usize) -> bool {
    match folio.mapping {
        Mapping::Anon(anon_vma) => {
            k.anon_vmas[anon_vma as usize].mms.contains(&mm)
                && k.mms[mm as usize].vmas.iter().any(|v| {
                    v.anon_vma == Some(anon_vma) && v.address_of_index(folio.index + page as u64) == Some(address)
                })
        }
        // A driver's page from vm_insert_page(): "there can't and never will be an rmap walk"
        // for it, so there is nothing that must find it.
        Mapping::None => !folio.test(PageFlag::Anon),
        // rmap_walk_file(): a VMA of the file that covers the folio's index at `address`.
        Mapping::File(file) => k.mms[mm as usize]
            .vmas
            .iter()
            .any(|v| v.file == Some(file) && v.address_of_index(folio.index + page as u64) == Some(address)),
    }
}

impl Model for System {
    type State = Kernel;
    type Event = Event;
    type Violation = Violation;

    fn state_bytes(&self, state: &Kernel) -> u64 {
        state.bytes()
    }

    fn step_copy_bytes(&self, state: &Kernel) -> u64 {
        state.folio_bytes_max()
    }

    fn initial_state(&self) -> Kernel {
        let mut zero = Folio::new(0);
        zero.refcount = 1;
        let mut folios = vec![zero];
        for device in &self.spec.devices {
            if let DeviceKind::RemapPfn { pages, .. } = device.kind {
                let mut memory = Folio::new(order_for(pages));
                memory.flags = PageFlag::Reserved.mask();
                for page in &mut memory.pages {
                    page.data = PageData::Fill(device.fill);
                }
                folios.push(memory);
            }
        }
        let files = self.spec.files.iter().map(|blocks| Shared::new(File::new(blocks.clone()))).collect();
        let threads = self.spec.threads.iter().map(|t| Shared::new(Thread::new(t.registers, t.starts))).collect();
        Kernel {
            folios: folios.into_iter().collect(),
            mms: (0..self.spec.mms).map(|_| Shared::new(Mm::default())).collect(),
            anon_vmas: Vec::new(),
            files,
            lruvec: Shared::new(Default::default()),
            lru_lazyfree: Shared::default(),
            swap: Shared::new(SwapInfo {
                swap_map: swap_map_initial(self.spec.swap_pages),
                cache: vec![None; self.spec.swap_pages as usize],
                data: vec![PageData::Fill(0); self.spec.swap_pages as usize],
            }),
            uffds: Vec::new(),
            split_pages: Shared::default(),
            anon_orders: self.spec.anon_orders,
            huge_zero_folio: None,
            weak: self
                .memory_model
                .is_weak()
                .then(|| Box::new(WeakMemory::new(self.memory_model, self.spec.threads.len()))),
            threads,
            events: 0,
        }
    }

    fn enabled_threads(&self, k: &Kernel, out: &mut Vec<ThreadId>) {
        out.extend((0..k.threads.len() as ThreadId).filter(|&t| self.can_run(k, t)));
    }

    /// Under sequential consistency every step has one outcome; under a weak model, one per
    /// store its first weak load may read, found by running the step on a copy.
    fn outcomes(&self, k: &Kernel, thread: ThreadId) -> u32 {
        if k.weak.is_none() {
            return 1;
        }
        let mut probe = k.clone();
        let mut effects = Effects::new(false);
        effects.record_footprint = false;
        let mut ctx = Ctx::new(&mut probe, &mut effects, thread, &self.config);
        self.step_thread(&mut ctx, thread);
        ctx.weak_outcomes.max(1)
    }

    fn step(&self, k: &mut Kernel, choice: Choice, effects: &mut Effects) {
        let thread = choice.thread;
        // The canonical encoding forgets PG_referenced where no thread can read it any more
        // (debug builds check the analysis): every read must be of a folio it counted as read
        // later, and a bit it counted as never read must stay so.
        let before = cfg!(debug_assertions).then(|| (self.referenced_readers(k), k.folios.clone()));
        let mut ctx = Ctx::new(k, effects, thread, &self.config);
        ctx.outcome = choice.outcome;
        self.step_thread(&mut ctx, thread);
        let referenced_reads = ctx.finish();
        if k.weak.is_some() {
            let running: Vec<bool> = k.threads.iter().map(|t| t.status == ThreadStatus::Running).collect();
            k.weak.as_deref_mut().expect("checked").collect(&running);
        }
        if let Some((readers, folios)) = before {
            let Some(readers) = readers else { return };
            // A folio allocated by this step (numbers are never reused) had no bit to forget.
            for &id in referenced_reads.iter().filter(|&&id| (id as usize) < folios.len()) {
                assert!(
                    readers.may_read(id, &folios[id as usize]),
                    "thread {thread} read PG_referenced of folio {id}, which referenced_readers() counted as \
                     never read again: the canonical encoding would forget it"
                );
            }
            // Nor may a bit the encoding forgot come back to life: the two states merged would
            // then differ in what happens next.
            let after = self.referenced_readers(k);
            for (id, folio) in folios.iter().enumerate().map(|(id, folio)| (id as FolioId, folio)) {
                let forgotten = folio.allocated && folio.test(PageFlag::Referenced) && !readers.may_read(id, folio);
                // A folio this step freed has no flags left to read.
                let now = k.folio(id);
                assert!(
                    !forgotten || !now.allocated || after.as_ref().is_some_and(|after| !after.may_read(id, now)),
                    "thread {thread}'s step made PG_referenced of folio {id} read again after \
                     referenced_readers() had counted it as never read: the analysis must only shrink"
                );
            }
        }
    }

    fn changed_objects(&self, before: &Kernel, after: &Kernel, thread: ThreadId, out: &mut Vec<u64>) {
        crate::audit::changed_objects(before, after, thread, out);
    }

    fn object_name(&self, object: u64) -> String {
        crate::audit::object_name(object)
    }

    fn encode(&self, k: &Kernel, out: &mut Vec<u8>) {
        let forgotten = self.referenced_forgotten(k);
        if forgotten.is_empty() {
            out.extend_from_slice(&crate::shared::hash128(k).to_le_bytes());
            return;
        }
        let mut canonical = k.clone();
        for folio in forgotten {
            canonical.folio_mut(folio).flags &= !PageFlag::Referenced.mask();
        }
        out.extend_from_slice(&crate::shared::hash128(&canonical).to_le_bytes());
    }

    /// Where each thread is: its pc, its stack depth and its innermost frame (a kernel
    /// function's progress), which most steps change. FxHash of the innermost frames costs far
    /// less than the state's fingerprint, and the explorer mixes the key before sampling.
    fn sample_key(&self, k: &Kernel) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = rustc_hash::FxHasher::default();
        for thread in &k.threads {
            (thread.pc, thread.stack.len(), thread.stack.last()).hash(&mut hasher);
        }
        hasher.finish()
    }

    fn check_final(&self, k: &Kernel) -> Option<Violation> {
        let blocked: Vec<String> = (0..k.threads.len())
            .filter(|&t| k.threads[t].status != ThreadStatus::Done)
            .map(|t| {
                let waiting = match k.threads[t].stack.last() {
                    Some(frame) => format!("{:?}", frame.wait(k, t as ThreadId)),
                    None => match self.spec.threads[t].program.get(k.threads[t].pc as usize) {
                        Some(Instruction::Join { .. }) => "its threads to finish".to_string(),
                        Some(Instruction::WaitEvent { event }) => format!("an event (#{event}) nobody signals"),
                        _ => "nothing".to_string(),
                    },
                };
                format!("{} ({:?}, waiting for {waiting})", self.spec.threads[t].name, k.threads[t].status)
            })
            .collect();
        if !blocked.is_empty() {
            return Some(Violation::new(ViolationKind::Deadlock, format!("no thread can run: {}", blocked.join(", "))));
        }
        if let Some(violation) = Self::check_quiescent(k) {
            return Some(violation);
        }
        let leaked: Vec<String> = k
            .folios
            .iter()
            .enumerate()
            .filter(|(id, f)| *id as FolioId != ZERO_FOLIO && f.allocated && !f.test(PageFlag::Reserved))
            // A clean folio only the swap cache or the page cache holds is reclaimable memory,
            // not a leak.
            .filter(|(_, f)| {
                let cached = f.test(PageFlag::Swapcache) || matches!(f.mapping, Mapping::File(_));
                !(cached && f.refcount == f.nr_pages() as i32 && f.mapcount() == 0)
            })
            .map(|(id, f)| f.dump(id as FolioId))
            .collect();
        if !leaked.is_empty() && k.mms.iter().all(|mm| mm.exited) {
            return Some(Violation {
                kind: ViolationKind::Leak,
                message: format!("{} folio(s) still allocated after every process exited", leaked.len()),
                dump: leaked,
            });
        }
        None
    }
}

/// Runs a system's threads one after another in a fixed order (lowest enabled thread first),
/// for tests and for the sequential part of conformance.
pub fn run_sequential(system: &System) -> (Kernel, Option<Violation>, Vec<Event>) {
    let mut events = Vec::new();
    let mut effects: Effects = StepEffects::new(true);
    let (k, violation) = run_sequential_with(system, &mut effects, |_, effects| events.append(&mut effects.events));
    (k, violation, events)
}

/// How many events [`run_sequential`] records, counting at most `events_max` and stopping as
/// soon as `out_of_time()` says so (PCT's estimate of a schedule's length: a scenario of
/// millions of steps must not run to its end before the search even starts).
pub fn sequential_events(system: &System, events_max: u64, mut out_of_time: impl FnMut() -> bool) -> u64 {
    let mut k = system.initial_state();
    let mut effects: Effects = StepEffects::new(true);
    let mut enabled = Vec::new();
    let mut events = 0;
    while events < events_max && !out_of_time() {
        enabled.clear();
        system.enabled_threads(&k, &mut enabled);
        let Some(&thread) = enabled.first() else { break };
        effects.footprint.clear();
        effects.violation = None;
        system.step(&mut k, thread.into(), &mut effects);
        events += effects.events.len() as u64;
        effects.events.clear();
        if effects.violation.is_some() {
            break;
        }
    }
    events.min(events_max)
}

/// One step of a sequential run, as [`run_sequential_with`] shows it to its observer.
pub struct SequentialStep<'a> {
    pub thread: ThreadId,
    /// The thread's instruction index before the step.
    pub pc: usize,
    pub kernel: &'a Kernel,
}

/// [`run_sequential`]'s order, showing every step and its effects (the violation included) to
/// `observe` before going on; returns the final state and the violation the run ended with (a
/// step's, or the final-state check's).
pub fn run_sequential_with(
    system: &System,
    effects: &mut Effects,
    mut observe: impl FnMut(SequentialStep<'_>, &mut Effects),
) -> (Kernel, Option<Violation>) {
    let mut k = system.initial_state();
    let mut enabled = Vec::new();
    loop {
        enabled.clear();
        system.enabled_threads(&k, &mut enabled);
        let Some(&thread) = enabled.first() else {
            let violation = system.check_final(&k);
            return (k, violation);
        };
        let pc = k.thread(thread).pc as usize;
        effects.footprint.clear();
        effects.violation = None;
        system.step(&mut k, thread.into(), effects);
        observe(SequentialStep { thread, pc, kernel: &k }, effects);
        if let Some(violation) = effects.violation.take() {
            return (k, Some(violation));
        }
    }
}

/// PG_referenced liveness, for the canonical encoding (the dead-variable reduction of SPIN's
/// data-flow optimisation): a folio's PG_referenced that no thread can read any more cannot
/// change what happens next, so two states that differ only there behave identically and are
/// encoded as one. The model's readers of the bit: folio_check_references() (reclaim),
/// folio_mark_accessed() (GUP's slow path with FOLL_TOUCH, filemap_read(), zapping a young
/// file PTE), smaps and a THP split copying the head's flags; /proc/kpageflags counts too, as
/// the kernel's reports KPF_REFERENCED (the model does not compare that bit yet). The analysis
/// is conservative: an instruction not read against all of them reads every folio's bit.
/// Debug builds check every read against it (`System::step`).
impl System {
    /// Whose PG_referenced some thread may still read, `None` for every folio's.
    pub fn referenced_readers(&self, k: &Kernel) -> Option<ReferencedReaders> {
        let mut readers = ReferencedReaders::default();
        for (index, thread) in k.threads.iter().enumerate() {
            let program = &self.spec.threads[index].program;
            let (current, later) = match thread.status {
                ThreadStatus::Done => continue,
                ThreadStatus::NotStarted => (None, &program[..]),
                ThreadStatus::Running => {
                    let pc = (thread.pc as usize).min(program.len());
                    match thread.stack.is_empty() {
                        true => (None, &program[pc..]),
                        false => (program.get(pc), program.get(pc + 1..).unwrap_or(&[])),
                    }
                }
            };
            for instruction in later {
                match referenced_reads(instruction) {
                    Reads::Nothing => {}
                    Reads::FileFolios => readers.file_folios = true,
                    Reads::Every => return None,
                }
            }
            match current {
                Some(Instruction::Reclaim) => readers.folios.extend_from_slice(reclaim_unread(thread)?),
                Some(Instruction::Pread { direct: true, .. }) => {
                    readers.indexes.extend(self.gup_unpinned_indexes(k, thread)?)
                }
                Some(instruction) => match referenced_reads(instruction) {
                    Reads::Nothing => {}
                    Reads::FileFolios => readers.file_folios = true,
                    Reads::Every => return None,
                },
                None => {}
            }
        }
        Some(readers)
    }

    /// The folio indexes an O_DIRECT read's GUP may still mark accessed: follow_page_pte()
    /// calls folio_mark_accessed() (FOLL_TOUCH) on what is mapped at each address the slow
    /// path has still to pin, and whatever gets mapped there has the index the VMA gives the
    /// address (linear_page_index()). Once every page is pinned, none.
    fn gup_unpinned_indexes(&self, k: &Kernel, thread: &Thread) -> Option<Vec<Range<u64>>> {
        // The innermost GUP frame knows what is left; no frame of the read at all: every index.
        let left = thread.stack.iter().rev().find_map(|frame| match frame {
            Frame::GupSlow(gup) => {
                Some(Some((gup.mm, gup.start + gup.index * PAGE_SIZE, gup.start + gup.nr_pages * PAGE_SIZE)))
            }
            Frame::DirectIo(dio) => Some(dio.gup_range(thread.pages.len() as u64)),
            _ => None,
        })?;
        let Some((mm, mut start, end)) = left else {
            return Some(Vec::new());
        };
        // One range per VMA the addresses fall in (usually one); an address no VMA holds faults.
        // The walk goes from VMA to VMA, so its cost is the VMAs', not the range's length.
        let mm = &k.mms[mm as usize];
        let mut indexes = Vec::new();
        while start < end {
            let Some(vma) = mm.find_vma(start) else {
                // Skip the hole to the next VMA that starts inside the range.
                match mm.vmas.iter().map(|v| v.start).filter(|&s| s > start && s < end).min() {
                    Some(next) => start = next,
                    None => break,
                }
                continue;
            };
            let stop = end.min(vma.end);
            indexes.push(vma.linear_page_index(start)..vma.linear_page_index(stop));
            start = stop;
        }
        Some(indexes)
    }

    /// Allocated folios with PG_referenced set that no thread can read any more.
    fn referenced_forgotten(&self, k: &Kernel) -> Vec<FolioId> {
        let referenced = |(id, folio): &(usize, &Folio)| {
            folio.allocated && folio.test(PageFlag::Referenced) && *id != ZERO_FOLIO as usize
        };
        if !k.folios.iter().enumerate().any(|entry| referenced(&entry)) {
            return Vec::new();
        }
        let Some(readers) = self.referenced_readers(k) else {
            return Vec::new();
        };
        k.folios
            .iter()
            .enumerate()
            .filter(referenced)
            .filter(|&(id, folio)| !readers.may_read(id as FolioId, folio))
            .map(|(id, _)| id as FolioId)
            .collect()
    }
}

/// Whose PG_referenced some thread may still read (`System::referenced_readers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferencedReaders {
    /// Folios by number: those reclaim has still to check.
    pub folios: Vec<FolioId>,
    /// Folios overlapping one of these index ranges: what GUP's slow path may still mark
    /// accessed.
    pub indexes: Vec<Range<u64>>,
    /// Every file folio: zapping a young file PTE and filemap_read() mark it accessed.
    pub file_folios: bool,
}

impl ReferencedReaders {
    pub fn may_read(&self, id: FolioId, folio: &Folio) -> bool {
        let overlaps =
            |range: &Range<u64>| range.start < folio.index + folio.nr_pages() as u64 && folio.index < range.end;
        self.folios.contains(&id)
            || self.indexes.iter().any(overlaps)
            || (self.file_folios && !folio.test(PageFlag::Anon))
    }
}

/// The folios a thread inside `reclaim(all)` may still read PG_referenced of (`None`: any).
fn reclaim_unread(thread: &Thread) -> Option<&[FolioId]> {
    let mut unread = None;
    for frame in &thread.stack {
        unread = match frame {
            Frame::ShrinkInactiveList(shrink) => shrink.referenced_unread(thread),
            Frame::ShrinkFolioList(shrink) => Some(shrink.referenced_unread()),
            _ => unread,
        };
    }
    unread
}

/// Which folios' PG_referenced an instruction's kernel paths may read.
enum Reads {
    Nothing,
    /// File folios only: folio_mark_accessed() from zap_present_folio_ptes() (a young file
    /// PTE) or filemap_read().
    FileFolios,
    Every,
}

/// Only the instructions read against the model's readers say less than `Every`: none of
/// their frames reaches folio_check_references(), smaps_account(), kpageflags or
/// __split_huge_page_tail(), and folio_mark_accessed() only as `FileFolios` says. An O_DIRECT
/// read is `Every` until it starts (its GUP is narrowed down once it runs); a new
/// instruction is `Every` until someone reads its paths.
fn referenced_reads(instruction: &Instruction) -> Reads {
    use crate::fs::proc::page::ProcPageFile;
    use crate::program::Advice;
    match instruction {
        Instruction::Mmap { .. }
        | Instruction::Mremap { .. }
        | Instruction::Mprotect { .. }
        | Instruction::Store { .. }
        | Instruction::Load { .. }
        | Instruction::Madvise { advice: Advice::Free, .. }
        | Instruction::Assert { .. }
        | Instruction::Fork { .. }
        | Instruction::Spawn { .. }
        | Instruction::Join { .. }
        | Instruction::ProcPage { file: ProcPageFile::Pagemap | ProcPageFile::KpageCount, .. }
        | Instruction::Signal { .. }
        | Instruction::WaitEvent { .. } => Reads::Nothing,
        Instruction::Munmap { .. }
        | Instruction::Exit
        | Instruction::Madvise { advice: Advice::DontNeed, .. }
        | Instruction::Ftruncate { .. }
        | Instruction::Pread { direct: false, .. } => Reads::FileFolios,
        _ => Reads::Every,
    }
}
