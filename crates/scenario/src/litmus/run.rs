//! A compiled litmus test as an explorer [`Model`] on the weak-memory engine: the same
//! explorer, engine and primitive table the mm model uses, not a second interpreter.
//!
//! A thread's step has one outcome per message its load may read (latest first), then one per
//! future store it may promise (arm64 and the LKMM: load buffering), then, while a grace period
//! waits for it outside a critical section, one for passing its quiescent state. An execution
//! that breaks a promise, reads nothing, or ends with a promise outstanding or a thread stuck is
//! not one of the model's and has no final state.

use super::compile::{Compiled, Instr, Operand, RmwOp, ADDRESS_BASE};
use mmcheck_explorer::memory::{BrokenPromise, Memory, MemoryModel, Rcu, ReadCandidate, Store, ThreadView, Timestamp};
use mmcheck_explorer::{Choice, Model, StepEffects, ThreadId};
use mmcheck_model::arch::{ordering, Ordering, Primitive};
use std::cell::RefCell;
use std::hash::{Hash, Hasher};

/// Footprint objects beyond the locations (whose keys are their indices): the memory order
/// (every store appends, so two stores never commute under a weak model) and the grace periods.
const MEMORY_ORDER: u64 = 1 << 40;
const GRACE_PERIODS: u64 = (1 << 40) + 1;

/// spin_lock() as the RMW qspinlock makes: 0 to 1.
const LOCK: RmwOp = RmwOp::CompareExchange { expected: Operand::Constant(0), new: Operand::Constant(1) };

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThreadState {
    pc: usize,
    /// Value and view per register.
    registers: Vec<(i64, Timestamp)>,
    view: ThreadView,
    /// Store instructions promised and not yet run, with their timestamps.
    promised: Vec<(usize, Timestamp)>,
    /// The thread broke a promise or misused a primitive: it stops, and the execution has no
    /// final state. Only its own thread stops, so that discarding disables no other thread's
    /// step (the independence the reduction relies on).
    discarded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    memory: Memory,
    threads: Vec<ThreadState>,
    rcu: Rcu,
    /// Promises made so far (at most [`PROMISES_MAX`]).
    promises_made: u32,
}

/// Promises one execution may make. One breaks any cycle of program order and reads-from
/// (load buffering, S, 2+2W need one); more multiply the states for rarer shapes. A bound on
/// promises only leaves executions out: it costs completeness, never soundness.
pub const PROMISES_MAX: u32 = 1;

/// What a thread's step does, by outcome.
#[derive(Clone, Copy, Debug)]
enum Action {
    Execute(Option<ReadCandidate>),
    Promise(usize),
    Quiesce,
}

/// The final states of every execution, as the condition sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finals {
    /// Executions (final states) whose state satisfies the condition's proposition.
    pub satisfied: u64,
    pub unsatisfied: u64,
    /// Final states left out by the test's `filter`.
    pub filtered: u64,
    /// States where no thread can run but some have not finished (a lock never released).
    pub stuck: u64,
    /// A run-time error (a load from something that is not an address), if one happened.
    pub error: Option<String>,
}

/// A final state's values: registers per thread and shared locations.
pub struct FinalState<'s> {
    pub compiled: &'s Compiled,
    state: &'s State,
}

impl FinalState<'_> {
    pub fn register(&self, thread: usize, name: &str) -> Option<i64> {
        let program = self.compiled.programs.get(thread)?;
        let index = program.registers.iter().position(|r| r == name)?;
        Some(self.state.threads[thread].registers[index].0)
    }

    pub fn global(&self, name: &str) -> Option<i64> {
        let index = self.compiled.location(name)?;
        Some(self.state.memory.final_value(index as u64) as i64)
    }
}

/// Judges a final state: `None` when the filter leaves it out.
pub type Judge<'c> = Box<dyn Fn(&FinalState) -> Option<bool> + 'c>;

pub struct LitmusModel<'c> {
    pub compiled: &'c Compiled,
    pub memory_model: MemoryModel,
    pub judge: Judge<'c>,
    pub finals: RefCell<Finals>,
}

impl<'c> LitmusModel<'c> {
    fn table(&self, primitive: Primitive) -> Ordering {
        ordering(self.memory_model, primitive)
    }

    fn promises_allowed(&self) -> bool {
        matches!(self.memory_model, MemoryModel::Arm64 | MemoryModel::Lkmm)
    }

    fn instr(&self, thread: usize, pc: usize) -> Option<&'c Instr> {
        self.compiled.programs[thread].code.get(pc)
    }

    /// The actions of `thread`'s next step, in outcome order.
    fn actions(&self, state: &State, thread: usize) -> Vec<Action> {
        let mut actions = Vec::new();
        let me = &state.threads[thread];
        if me.discarded {
            return actions;
        }
        let instr = self.instr(thread, me.pc);
        // Promises and quiescent states commute with the thread's local steps (register
        // arithmetic, branches, fences: they read no shared state and no view a promise or a
        // quiescent state changes), so they are offered only before a shared access, keeping
        // local steps local for the reduction.
        let offer = instr.is_none_or(|instr| !is_local(instr));
        if let Some(instr) = instr {
            match instr {
                Instr::Load { address, primitive, .. } => {
                    if let Some((location, address_view)) = self.location(me, address) {
                        let order = self.table(*primitive).read;
                        let weak = self.memory_model.is_weak();
                        let candidates = state.memory.read_candidates(&me.view, location, order, address_view, weak);
                        actions.extend(candidates.into_iter().map(|c| Action::Execute(Some(c))));
                    } else {
                        actions.push(Action::Execute(None));
                    }
                }
                Instr::Lock(address) if !self.lock_free(state, me, address) => {}
                Instr::SynchronizeEnd if !state.rcu.may_end(thread as u32) => {}
                _ => actions.push(Action::Execute(None)),
            }
            if offer && self.promises_allowed() && state.promises_made < PROMISES_MAX {
                actions.extend(self.promisable(me, thread).map(Action::Promise));
            }
        }
        if offer && self.compiled.uses_grace_periods && state.rcu.may_quiesce(thread as u32) {
            actions.push(Action::Quiesce);
        }
        actions
    }

    /// The thread's stores after its program counter, outside loops, with constant address
    /// and value, not promised yet.
    fn promisable<'a>(&'a self, me: &'a ThreadState, thread: usize) -> impl Iterator<Item = usize> + 'a {
        let program = &self.compiled.programs[thread];
        (me.pc + 1..program.code.len()).filter(move |&index| {
            let constant_store = matches!(&program.code[index],
                Instr::Store { address, value, .. } if address.is_constant() && value.is_constant());
            constant_store && !program.in_loop[index] && !me.promised.iter().any(|&(i, _)| i == index)
        })
    }

    fn lock_free(&self, state: &State, me: &ThreadState, address: &Operand) -> bool {
        self.location(me, address).is_some_and(|(location, _)| state.memory.final_value(location) == 0)
    }

    /// The location an address operand names, and the address's view (a dependency).
    fn location(&self, me: &ThreadState, address: &Operand) -> Option<(u64, Timestamp)> {
        let (value, view) = evaluate(address, &me.registers);
        let index = value.checked_sub(ADDRESS_BASE)?;
        (0..self.compiled.locations.len() as i64).contains(&index).then_some((index as u64, view))
    }

    /// A store's footprint: its location and, under a weak model, the memory order (the
    /// store's timestamp depends on every store before it).
    fn note_store(&self, location: u64, effects: &mut Effects) {
        effects.footprint.write(location);
        if self.memory_model.is_weak() {
            effects.footprint.write(MEMORY_ORDER);
        }
    }

    fn fail(&self, state: &mut State, thread: usize, message: String) {
        self.discard(state, thread);
        self.finals.borrow_mut().error.get_or_insert(message);
    }

    fn discard(&self, state: &mut State, thread: usize) {
        state.threads[thread].discarded = true;
    }

    fn execute(&self, state: &mut State, thread: usize, read: Option<ReadCandidate>, effects: &mut Effects) {
        let pc = state.threads[thread].pc;
        let instr = self.instr(thread, pc).expect("an enabled thread has an instruction");
        state.threads[thread].pc += 1;
        let result = match instr {
            Instr::Compute { .. } | Instr::BranchUnless { .. } | Instr::Jump(_) | Instr::Fence(_) => {
                self.local(&mut state.threads[thread], instr);
                Ok(())
            }
            Instr::Load { target, address, primitive } => {
                self.load(state, thread, *target, address, *primitive, read, effects)
            }
            Instr::Store { address, value, primitive } => {
                self.store(state, thread, pc, address, value, *primitive, effects)
            }
            Instr::Rmw { target, address, op, primitive } => {
                self.rmw(state, thread, address, op, *primitive, effects).map(|result| {
                    if let Some(result) = result {
                        state.threads[thread].registers[*target] = result;
                    }
                })
            }
            Instr::Lock(_) | Instr::TryLock { .. } | Instr::Unlock(_) => self.spinlock(state, thread, instr, effects),
            Instr::RcuReadLock | Instr::RcuReadUnlock | Instr::SynchronizeStart | Instr::SynchronizeEnd => {
                self.rcu(state, thread, instr, effects)
            }
        };
        if let Err(message) = result {
            self.fail(state, thread, message);
        }
        if self.compiled.uses_grace_periods && self.instr(thread, state.threads[thread].pc).is_none() {
            // A finished thread is quiescent for good.
            effects.footprint.write(GRACE_PERIODS);
            let me = &mut state.threads[thread];
            state.rcu.quiesce(thread as u32, &mut me.view);
        }
    }

    /// A step of the thread alone: registers, branches and fences.
    fn local(&self, me: &mut ThreadState, instr: &Instr) {
        match instr {
            Instr::Compute { target, value } => me.registers[*target] = evaluate(value, &me.registers),
            Instr::BranchUnless { condition, target } => {
                let (value, view) = evaluate(condition, &me.registers);
                me.view.depend(view);
                if value == 0 {
                    me.pc = *target;
                }
            }
            Instr::Jump(target) => me.pc = *target,
            Instr::Fence(primitive) => {
                if let Some(kind) = self.table(*primitive).before {
                    me.view.fence(kind);
                }
            }
            _ => unreachable!("execute() passes only local instructions"),
        }
    }

    /// spin_lock(), spin_trylock(), spin_unlock(): an RMW and a store of the lock word.
    fn spinlock(&self, state: &mut State, thread: usize, instr: &Instr, effects: &mut Effects) -> Result<(), String> {
        match instr {
            Instr::Lock(address) => self.rmw(state, thread, address, &LOCK, Primitive::SpinLock, effects).map(drop),
            Instr::TryLock { target, address } => {
                self.rmw(state, thread, address, &LOCK, Primitive::SpinLock, effects).map(|result| {
                    if let Some((old, view)) = result {
                        state.threads[thread].registers[*target] = (i64::from(old == 0), view);
                    }
                })
            }
            Instr::Unlock(address) => {
                let unlocked = Operand::Constant(0);
                self.store(state, thread, usize::MAX, address, &unlocked, Primitive::SpinUnlock, effects)
            }
            _ => unreachable!("execute() passes only lock instructions"),
        }
    }

    /// rcu_read_lock(), rcu_read_unlock() and synchronize_rcu()'s two steps.
    fn rcu(&self, state: &mut State, thread: usize, instr: &Instr, effects: &mut Effects) -> Result<(), String> {
        match instr {
            Instr::RcuReadLock => {
                state.rcu.read_lock(thread as u32);
                Ok(())
            }
            Instr::RcuReadUnlock => state.rcu.read_unlock(thread as u32).map_err(|e| format!("{e:?}")),
            Instr::SynchronizeStart => self.synchronize_start(state, thread, effects),
            Instr::SynchronizeEnd => {
                effects.footprint.write(GRACE_PERIODS);
                let view = &mut state.threads[thread].view;
                state.rcu.end(thread as u32, view);
                Ok(())
            }
            _ => unreachable!("execute() passes only RCU instructions"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &self,
        state: &mut State,
        thread: usize,
        target: usize,
        address: &Operand,
        primitive: Primitive,
        read: Option<ReadCandidate>,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let me = &mut state.threads[thread];
        let Some((location, address_view)) = self.location(me, address) else {
            return Err(format!(
                "P{thread} loads from {}, which is not an address",
                evaluate(address, &me.registers).0
            ));
        };
        effects.footprint.read(location);
        let ordering = self.table(primitive);
        if let Some(kind) = ordering.before {
            me.view.fence(kind);
        }
        let candidate = read.expect("a load's outcome is a candidate");
        let post = state.memory.read(&mut me.view, location, ordering.read, address_view, candidate);
        me.registers[target] = (candidate.value as i64, post);
        if let Some(kind) = ordering.after {
            me.view.fence(kind);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        state: &mut State,
        thread: usize,
        pc: usize,
        address: &Operand,
        value: &Operand,
        primitive: Primitive,
        effects: &mut Effects,
    ) -> Result<(), String> {
        let me = &mut state.threads[thread];
        let Some((location, address_view)) = self.location(me, address) else {
            return Err(format!("P{thread} stores to {}, which is not an address", evaluate(address, &me.registers).0));
        };
        self.note_store(location, effects);
        let ordering = self.table(primitive);
        if let Some(kind) = ordering.before {
            me.view.fence(kind);
        }
        let (value, data_view) = evaluate(value, &me.registers);
        let promise = me.promised.iter().position(|&(index, _)| index == pc).map(|i| me.promised.remove(i).1);
        let dependencies = address_view.max(data_view);
        let store = Store {
            location,
            value: value as u64,
            order: ordering.write,
            dependency_view: dependencies,
            promised: promise,
        };
        let stored = state.memory.write(&mut me.view, thread as u32, store);
        if let Some(kind) = ordering.after {
            me.view.fence(kind);
        }
        if stored == Err(BrokenPromise) {
            self.discard(state, thread);
        }
        Ok(())
    }

    /// An RMW; returns its result and the read's view (none: the execution is discarded).
    fn rmw(
        &self,
        state: &mut State,
        thread: usize,
        address: &Operand,
        op: &RmwOp,
        primitive: Primitive,
        effects: &mut Effects,
    ) -> Result<Option<(i64, Timestamp)>, String> {
        let me = &mut state.threads[thread];
        let Some((location, address_view)) = self.location(me, address) else {
            return Err(format!("P{thread} updates {}, which is not an address", evaluate(address, &me.registers).0));
        };
        self.note_store(location, effects);
        // Whether it succeeds decides its ordering: evaluate against the latest value first.
        let latest = state.memory.final_value(location) as i64;
        let (result, new) = apply(op, latest, &me.registers);
        // A failed conditional RMW is a load: unordered (atomic_t.txt) but on x86, where the
        // locked instruction is still a full barrier (the table says which).
        let ordering = self.table(if new.is_some() { primitive } else { Primitive::RmwFailed });
        if let Some(kind) = ordering.before {
            me.view.fence(kind);
        }
        let update = |old: u64| new.filter(|_| old as i64 == latest).map(|v| v as u64);
        let outcome = state.memory.read_modify_write(
            &mut me.view,
            thread as u32,
            location,
            ordering.read,
            ordering.write,
            address_view,
            update,
        );
        if let Some(kind) = ordering.after {
            me.view.fence(kind);
        }
        match outcome {
            Ok((_, post)) => Ok(Some((result, post))),
            Err(BrokenPromise) => {
                self.discard(state, thread);
                Ok(None)
            }
        }
    }

    fn synchronize_start(&self, state: &mut State, thread: usize, effects: &mut Effects) -> Result<(), String> {
        effects.footprint.write(GRACE_PERIODS);
        let everyone = (1u64 << state.threads.len()) - 1;
        let finished: Vec<(u32, ThreadView)> = (0..state.threads.len())
            .filter(|&t| t != thread && self.instr(t, state.threads[t].pc).is_none())
            .map(|t| (t as u32, state.threads[t].view.clone()))
            .collect();
        let finished: Vec<(u32, &ThreadView)> = finished.iter().map(|(t, v)| (*t, v)).collect();
        let view = &mut state.threads[thread].view;
        state.rcu.start(thread as u32, view, everyone, &finished).map_err(|e| format!("{e:?}"))
    }
}

/// A step that reads and writes no shared state and no view other steps look at.
fn is_local(instr: &Instr) -> bool {
    matches!(instr, Instr::Compute { .. } | Instr::BranchUnless { .. } | Instr::Jump(_) | Instr::Fence(_))
}

/// The RMW's result and the value it stores (none: a conditional one that fails).
fn apply(op: &RmwOp, old: i64, registers: &[(i64, Timestamp)]) -> (i64, Option<i64>) {
    let value = |operand: &Operand| evaluate(operand, registers).0;
    match op {
        RmwOp::Exchange(new) => (old, Some(value(new))),
        RmwOp::CompareExchange { expected, new } => (old, (old == value(expected)).then(|| value(new))),
        RmwOp::Add { operand, returns_old } => {
            let new = old.wrapping_add(value(operand));
            (if *returns_old { old } else { new }, Some(new))
        }
        RmwOp::AddUnless { operand, unless } => match old == value(unless) {
            true => (0, None),
            false => (1, Some(old.wrapping_add(value(operand)))),
        },
        RmwOp::AddAndTest(operand) => {
            let new = old.wrapping_add(value(operand));
            (i64::from(new == 0), Some(new))
        }
    }
}

/// An operand's value and view (the largest view of the registers it reads: its dependency).
fn evaluate(operand: &Operand, registers: &[(i64, Timestamp)]) -> (i64, Timestamp) {
    use super::{BinaryOperator as B, UnaryOperator as U};
    match operand {
        Operand::Constant(value) => (*value, 0),
        Operand::Register(index) => registers.get(*index).copied().unwrap_or((0, 0)),
        Operand::Unary(op, a) => {
            let (a, view) = evaluate(a, registers);
            let value = match op {
                U::Not => i64::from(a == 0),
                U::Negate => a.wrapping_neg(),
                U::BitNot => !a,
            };
            (value, view)
        }
        Operand::Binary(op, a, b) => {
            let ((a, left), (b, right)) = (evaluate(a, registers), evaluate(b, registers));
            let value = match op {
                B::Add => a.wrapping_add(b),
                B::Subtract => a.wrapping_sub(b),
                B::Multiply => a.wrapping_mul(b),
                B::Divide => a.checked_div(b).unwrap_or(0),
                B::Remainder => a.checked_rem(b).unwrap_or(0),
                B::BitAnd => a & b,
                B::BitOr => a | b,
                B::BitXor => a ^ b,
                B::ShiftLeft => a.wrapping_shl(b as u32),
                B::ShiftRight => a.wrapping_shr(b as u32),
                B::Equal => i64::from(a == b),
                B::NotEqual => i64::from(a != b),
                B::Less => i64::from(a < b),
                B::LessEqual => i64::from(a <= b),
                B::Greater => i64::from(a > b),
                B::GreaterEqual => i64::from(a >= b),
                B::LogicalAnd => i64::from(a != 0 && b != 0),
                B::LogicalOr => i64::from(a != 0 || b != 0),
            };
            (value, left.max(right))
        }
        Operand::Conditional(c, a, b) => {
            let (c, view) = evaluate(c, registers);
            let (value, chosen) = evaluate(if c != 0 { a } else { b }, registers);
            (value, view.max(chosen))
        }
    }
}

type Effects = StepEffects<String, String>;

/// A hasher that keeps every byte: `derive(Hash)` writes each field in order, with lengths,
/// so the bytes are a canonical encoding of the state.
struct Bytes<'a>(&'a mut Vec<u8>);

impl Hasher for Bytes<'_> {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl Model for LitmusModel<'_> {
    type State = State;
    type Event = String;
    type Violation = String;

    fn initial_state(&self) -> State {
        let initial = self.compiled.initial.iter().enumerate().map(|(i, &v)| (i as u64, v as u64));
        let threads = self
            .compiled
            .programs
            .iter()
            .enumerate()
            .map(|(t, program)| {
                let mut registers = vec![(0, 0); program.registers.len()];
                for &(register, value) in &self.compiled.initial_registers[t] {
                    registers[register] = (value, 0);
                }
                ThreadState { pc: 0, registers, view: ThreadView::default(), promised: Vec::new(), discarded: false }
            })
            .collect();
        let rcu = Rcu::new(self.compiled.programs.len());
        State { memory: Memory::new(initial), threads, rcu, promises_made: 0 }
    }

    fn enabled_threads(&self, state: &State, out: &mut Vec<ThreadId>) {
        out.extend((0..state.threads.len()).filter(|&t| !self.actions(state, t).is_empty()).map(|t| t as ThreadId));
    }

    fn outcomes(&self, state: &State, thread: ThreadId) -> u32 {
        self.actions(state, thread as usize).len() as u32
    }

    fn step(&self, state: &mut State, choice: Choice, effects: &mut Effects) {
        let thread = choice.thread as usize;
        let action = self.actions(state, thread)[choice.outcome as usize];
        let local = self.instr(thread, state.threads[thread].pc).is_some_and(is_local);
        if self.compiled.uses_grace_periods && !local {
            // Whether a grace period waits for this thread decides its outcomes.
            effects.footprint.read(GRACE_PERIODS);
        }
        if effects.record_events {
            effects.events.push(format!("P{thread} {action:?} at {}", state.threads[thread].pc));
        }
        match action {
            Action::Execute(read) => self.execute(state, thread, read, effects),
            Action::Promise(index) => {
                let Instr::Store { address, value, .. } = &self.compiled.programs[thread].code[index] else {
                    unreachable!("only stores are promised")
                };
                let me = &mut state.threads[thread];
                let (location, _) = self.location(me, address).expect("a constant address");
                self.note_store(location, effects);
                let value = evaluate(value, &me.registers).0 as u64;
                let timestamp = state.memory.promise(&mut me.view, thread as u32, location, value);
                me.promised.push((index, timestamp));
                state.promises_made += 1;
            }
            Action::Quiesce => {
                effects.footprint.write(GRACE_PERIODS);
                let me = &mut state.threads[thread];
                state.rcu.quiesce(thread as u32, &mut me.view);
            }
        }
    }

    fn encode(&self, state: &State, out: &mut Vec<u8>) {
        if self.memory_model.is_weak() {
            state.hash(&mut Bytes(out));
            return;
        }
        // Under sequential consistency a load reads the latest store and views order nothing:
        // the state is the locations' values and each thread's place and register values, and
        // stores to different locations commute.
        let mut bytes = Bytes(out);
        for location in 0..self.compiled.locations.len() as u64 {
            state.memory.final_value(location).hash(&mut bytes);
        }
        for thread in &state.threads {
            thread.pc.hash(&mut bytes);
            thread.registers.iter().for_each(|(value, _)| value.hash(&mut bytes));
            thread.discarded.hash(&mut bytes);
        }
        state.rcu.hash(&mut bytes);
    }

    fn check_final(&self, state: &State) -> Option<String> {
        let mut finals = self.finals.borrow_mut();
        if state.threads.iter().any(|t| t.discarded || t.view.has_promises()) {
            return None;
        }
        let finished = (0..state.threads.len()).all(|t| self.instr(t, state.threads[t].pc).is_none());
        if !finished {
            finals.stuck += 1;
            return None;
        }
        match (self.judge)(&FinalState { compiled: self.compiled, state }) {
            None => finals.filtered += 1,
            Some(true) => finals.satisfied += 1,
            Some(false) => finals.unsatisfied += 1,
        }
        None
    }
}
