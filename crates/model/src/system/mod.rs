//! The modelled system as the explorer sees it: a fixed table of threads running programs over
//! one [`Kernel`], and the oracles checked after steps and at the end.
//!
//! Architecture invariant: the model is deterministic and knows nothing of the search order.
//!
//! dispatch.rs runs a thread's next instruction, oracles.rs checks states, referenced.rs is the
//! PG_referenced liveness analysis of the canonical encoding.

mod dispatch;
mod oracles;
mod referenced;

pub use referenced::ReferencedReaders;

use crate::access::weak::WeakMemory;
use crate::access::{Ctx, Effects, Event};
use crate::drivers::{order_for, DeviceKind, DeviceSpec};
use crate::folio::{folio_pfn, Folio, FolioId, PageData, PageFlag, ZERO_FOLIO};
use crate::patches::KernelConfig;
use crate::program::Instruction;
use crate::shared::Shared;
use crate::state::{File, Kernel, Mm, MmId, SwapInfo, ThreadId};
use crate::thread::{Flow, Thread, ThreadStatus};
use crate::violation::Violation;
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::{Choice, Model, StepEffects};

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

    /// Stores a finished syscall's value and moves to the next instruction.
    fn complete(&self, ctx: &mut Ctx, thread: ThreadId, value: i64) {
        let t = ctx.local();
        let dst = self.spec.threads[thread as usize].program[*t.pc as usize].dst();
        if let Some(dst) = dst {
            t.registers.make_mut()[dst as usize] = value;
        }
        *t.pc += 1;
    }
}

/// mm/swapfile.c: setup_swap_map(): every slot free but the header's (SWAP_MAP_BAD).
fn swap_map_initial(pages: u32) -> Vec<u8> {
    let mut map = vec![0; pages as usize];
    if let Some(header) = map.first_mut() {
        *header = crate::mm::swapfile::SWAP_MAP_BAD;
    }
    map
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
            self.check_referenced_step(k, thread, readers, &folios, &referenced_reads);
        }
    }

    fn changed_objects(&self, before: &Kernel, after: &Kernel, thread: ThreadId, out: &mut Vec<u64>) {
        crate::audit::changed_objects(before, after, thread, out);
    }

    fn object_name(&self, object: u64) -> String {
        crate::audit::object_name(object)
    }

    fn encode(&self, k: &Kernel, out: &mut Vec<u8>) {
        self.encode_canonical(k, out);
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
        self.deadlock(k).or_else(|| Self::check_quiescent(k)).or_else(|| oracles::leaks(k))
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
