//! Litmus thread code compiled to a flat list of steps: every shared access, fence, lock and
//! RCU operation is one step; register arithmetic and branches are local steps. An expression
//! holding several accesses (`r = READ_ONCE(*x) + READ_ONCE(*y)`) becomes one step per access,
//! left to right, into temporary registers.

use super::{BinaryOperator, Expr, ExprKind, InitValue, LitmusTest, Location, Position, Stmt, StmtKind, UnaryOperator};
use mmcheck_model::arch::Primitive;
use std::collections::BTreeMap;

/// An address is a location's index above this base, so that it never equals a small integer.
pub const ADDRESS_BASE: i64 = 1 << 32;

/// A construct the front end does not run, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub construct: String,
    pub position: Position,
}

/// A pure expression over registers and constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    Constant(i64),
    Register(usize),
    Unary(UnaryOperator, Box<Operand>),
    Binary(BinaryOperator, Box<Operand>, Box<Operand>),
    Conditional(Box<Operand>, Box<Operand>, Box<Operand>),
}

impl Operand {
    /// Whether its value is known before the thread runs (a store of it may be promised).
    pub fn is_constant(&self) -> bool {
        match self {
            Operand::Constant(_) => true,
            Operand::Register(_) => false,
            Operand::Unary(_, a) => a.is_constant(),
            Operand::Binary(_, a, b) => a.is_constant() && b.is_constant(),
            Operand::Conditional(a, b, c) => a.is_constant() && b.is_constant() && c.is_constant(),
        }
    }
}

/// What an RMW computes from the old value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RmwOp {
    /// Stores the operand; returns the old value.
    Exchange(Operand),
    /// Stores `new` if the old value is `expected`; returns the old value.
    CompareExchange { expected: Operand, new: Operand },
    /// Adds the operand; returns the old value (`fetch`) or the new one.
    Add { operand: Operand, returns_old: bool },
    /// Adds `operand` unless the old value is `unless`; returns whether it added.
    AddUnless { operand: Operand, unless: Operand },
    /// Adds the operand and returns whether the new value is zero (`atomic_dec_and_test()`).
    AddAndTest(Operand),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instr {
    Load {
        target: usize,
        address: Operand,
        primitive: Primitive,
    },
    Store {
        address: Operand,
        value: Operand,
        primitive: Primitive,
    },
    /// `primitive` orders a successful one; a failed conditional RMW is a plain load.
    Rmw {
        target: usize,
        address: Operand,
        op: RmwOp,
        primitive: Primitive,
    },
    Fence(Primitive),
    Compute {
        target: usize,
        value: Operand,
    },
    /// Goes to `target` when the condition is zero: a control dependency on its registers.
    BranchUnless {
        condition: Operand,
        target: usize,
    },
    Jump(usize),
    Lock(Operand),
    TryLock {
        target: usize,
        address: Operand,
    },
    Unlock(Operand),
    RcuReadLock,
    RcuReadUnlock,
    /// `synchronize_rcu()`: the start, then (a separate step, once every other thread has
    /// passed a quiescent state) the end.
    SynchronizeStart,
    SynchronizeEnd,
}

/// One thread, compiled.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub code: Vec<Instr>,
    /// Register names (temporaries are named `$N`).
    pub registers: Vec<String>,
    /// Instructions inside a loop: a store there is never promised.
    pub in_loop: Vec<bool>,
}

/// A test compiled: shared locations, their initial values, the threads.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub locations: Vec<String>,
    pub initial: Vec<i64>,
    pub programs: Vec<Program>,
    /// Initial register values, per thread.
    pub initial_registers: Vec<Vec<(usize, i64)>>,
    pub uses_grace_periods: bool,
}

impl Compiled {
    pub fn location(&self, name: &str) -> Option<usize> {
        self.locations.iter().position(|l| l == name)
    }

    pub fn address(&self, name: &str) -> Option<i64> {
        self.location(name).map(|index| ADDRESS_BASE + index as i64)
    }
}

/// The most threads a test may have: the explorer's thread sets hold 32, and the RCU grace
/// periods a bit per thread.
pub const THREADS_MAX: usize = 16;

pub fn compile(test: &LitmusTest) -> Result<Compiled, Unsupported> {
    if test.threads.len() > THREADS_MAX {
        let position = test.threads[THREADS_MAX].span.start;
        return Err(unsupported(format!("more than {THREADS_MAX} threads"), position));
    }
    let locations = collect_locations(test);
    let mut compiled = Compiled {
        initial: vec![0; locations.len()],
        locations,
        programs: Vec::new(),
        initial_registers: vec![Vec::new(); test.threads.len()],
        uses_grace_periods: false,
    };
    for (index, thread) in test.threads.iter().enumerate() {
        if thread.index != index {
            return Err(unsupported("threads not numbered P0, P1, ... in order", thread.span.start));
        }
        let mut builder =
            Builder { compiled: &compiled, program: Program::default(), names: BTreeMap::new(), loops: 0 };
        for stmt in &thread.body {
            builder.statement(stmt)?;
        }
        let program = builder.program;
        compiled.uses_grace_periods |= program.code.contains(&Instr::SynchronizeStart);
        compiled.programs.push(program);
    }
    initialise(test, &mut compiled)?;
    Ok(compiled)
}

fn unsupported(construct: impl Into<String>, position: Position) -> Unsupported {
    Unsupported { construct: construct.into(), position }
}

/// Every shared location: the initial state's, the threads' parameters and the condition's.
fn collect_locations(test: &LitmusTest) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    };
    for entry in &test.init {
        if let Location::Global(name) = &entry.target {
            add(name);
        }
        if let Some(InitValue::Address(name)) = &entry.value {
            add(name);
        }
    }
    for thread in &test.threads {
        for param in &thread.params {
            add(&param.name);
        }
    }
    let mut globals = Vec::new();
    prop_globals(&test.condition.prop, &mut globals);
    if let Some(filter) = &test.filter {
        prop_globals(filter, &mut globals);
    }
    for name in &globals {
        add(name);
    }
    names
}

fn prop_globals(prop: &super::Prop, out: &mut Vec<String>) {
    use super::{Prop, Value};
    match prop {
        Prop::True | Prop::False => {}
        Prop::Not(p) => prop_globals(p, out),
        Prop::And(a, b) | Prop::Or(a, b) | Prop::Implies(a, b) => {
            prop_globals(a, out);
            prop_globals(b, out);
        }
        Prop::Atom(atom) => {
            if let Location::Global(name) = &atom.location {
                out.push(name.clone());
            }
            match &atom.value {
                Value::Address(name) | Value::Location(Location::Global(name)) => out.push(name.clone()),
                _ => {}
            }
        }
    }
}

fn initialise(test: &LitmusTest, compiled: &mut Compiled) -> Result<(), Unsupported> {
    for entry in &test.init {
        let value = match &entry.value {
            None => 0,
            Some(InitValue::Integer(value)) => *value,
            Some(InitValue::Address(name)) => compiled.address(name).expect("collected"),
            Some(InitValue::Call { name, args }) if name == "ATOMIC_INIT" => match args[..] {
                [InitValue::Integer(value)] => value,
                _ => return Err(unsupported("ATOMIC_INIT of a non-integer", entry.span.start)),
            },
            Some(InitValue::Call { name, .. }) => {
                return Err(unsupported(format!("initialiser {name}"), entry.span.start))
            }
        };
        match &entry.target {
            Location::Global(name) => {
                let index = compiled.location(name).expect("collected");
                compiled.initial[index] = value;
            }
            Location::Register { thread, name } => {
                let Some(program) = compiled.programs.get_mut(*thread) else {
                    return Err(unsupported(
                        format!("register of a thread P{thread} the test lacks"),
                        entry.span.start,
                    ));
                };
                let register = match program.registers.iter().position(|r| r == name) {
                    Some(register) => register,
                    None => {
                        program.registers.push(name.clone());
                        program.registers.len() - 1
                    }
                };
                compiled.initial_registers[*thread].push((register, value));
            }
        }
    }
    Ok(())
}

struct Builder<'c> {
    compiled: &'c Compiled,
    program: Program,
    /// Register name to index.
    names: BTreeMap<String, usize>,
    loops: usize,
}

impl Builder<'_> {
    fn emit(&mut self, instr: Instr) -> usize {
        self.program.code.push(instr);
        self.program.in_loop.push(self.loops > 0);
        self.program.code.len() - 1
    }

    fn register(&mut self, name: &str) -> usize {
        if let Some(&index) = self.names.get(name) {
            return index;
        }
        self.program.registers.push(name.to_string());
        let index = self.program.registers.len() - 1;
        self.names.insert(name.to_string(), index);
        index
    }

    fn temporary(&mut self) -> usize {
        let name = format!("${}", self.program.registers.len());
        self.register(&name)
    }

    fn statement(&mut self, stmt: &Stmt) -> Result<(), Unsupported> {
        match &stmt.kind {
            StmtKind::Declaration(declarators) => {
                for declarator in declarators {
                    let target = self.register(&declarator.name);
                    let value = match &declarator.init {
                        Some(init) => self.expression(init)?,
                        None => Operand::Constant(0),
                    };
                    self.emit(Instr::Compute { target, value });
                }
            }
            StmtKind::Assign { target, operator, value } => self.assign(target, *operator, value)?,
            StmtKind::Expression(expr) => {
                self.expression(expr)?;
            }
            StmtKind::If { condition, then_branch, else_branch } => {
                let condition = self.expression(condition)?;
                let branch = self.emit(Instr::BranchUnless { condition, target: 0 });
                self.statement(then_branch)?;
                let skip_else = else_branch.as_ref().map(|_| self.emit(Instr::Jump(0)));
                self.patch(branch);
                if let (Some(else_branch), Some(skip_else)) = (else_branch, skip_else) {
                    self.statement(else_branch)?;
                    self.patch(skip_else);
                }
            }
            StmtKind::While { condition, body } => {
                self.loops += 1;
                let top = self.program.code.len();
                let condition = self.expression(condition)?;
                let exit = self.emit(Instr::BranchUnless { condition, target: 0 });
                self.statement(body)?;
                self.emit(Instr::Jump(top));
                self.loops -= 1;
                self.patch(exit);
            }
            StmtKind::DoWhile { body, condition } => {
                self.loops += 1;
                let top = self.program.code.len();
                self.statement(body)?;
                let condition = self.expression(condition)?;
                let exit = self.emit(Instr::BranchUnless { condition, target: 0 });
                self.emit(Instr::Jump(top));
                self.loops -= 1;
                self.patch(exit);
            }
            StmtKind::Block(stmts) => {
                for stmt in stmts {
                    self.statement(stmt)?;
                }
            }
            StmtKind::Empty => {}
        }
        Ok(())
    }

    /// Points the branch or jump at `index` to the next instruction.
    fn patch(&mut self, index: usize) {
        let next = self.program.code.len();
        match &mut self.program.code[index] {
            Instr::BranchUnless { target, .. } | Instr::Jump(target) => *target = next,
            _ => unreachable!("only branches are patched"),
        }
    }

    fn assign(&mut self, target: &Expr, operator: Option<BinaryOperator>, value: &Expr) -> Result<(), Unsupported> {
        let value = self.expression(value)?;
        match &target.kind {
            ExprKind::Name(name) if self.is_register(name) || self.compiled.location(name).is_none() => {
                let register = self.register(name);
                let value = match operator {
                    Some(op) => Operand::Binary(op, Box::new(Operand::Register(register)), Box::new(value)),
                    None => value,
                };
                self.emit(Instr::Compute { target: register, value });
            }
            ExprKind::Deref(address) if operator.is_none() => {
                let address = self.expression(address)?;
                self.emit(Instr::Store { address, value, primitive: Primitive::WriteOnce });
            }
            _ => return Err(unsupported("this assignment", target.span.start)),
        }
        Ok(())
    }

    fn is_register(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Lowers an expression: its accesses become steps, its value an operand.
    fn expression(&mut self, expr: &Expr) -> Result<Operand, Unsupported> {
        Ok(match &expr.kind {
            ExprKind::Integer(value) => Operand::Constant(*value),
            ExprKind::Name(name) if self.is_register(name) => Operand::Register(self.names[name]),
            ExprKind::Name(name) => match self.compiled.address(name) {
                Some(address) => Operand::Constant(address),
                // An undeclared register: herd starts it at zero.
                None => Operand::Register(self.register(name)),
            },
            ExprKind::Deref(address) => {
                let address = self.expression(address)?;
                self.load(address, Primitive::ReadOnce)
            }
            ExprKind::AddressOf(inner) => match &inner.kind {
                ExprKind::Deref(address) => self.expression(address)?,
                ExprKind::Name(name) => match self.compiled.address(name) {
                    Some(address) => Operand::Constant(address),
                    None => return Err(unsupported("the address of a register", expr.span.start)),
                },
                _ => return Err(unsupported("this address-of", expr.span.start)),
            },
            ExprKind::Unary { operator, operand } => Operand::Unary(*operator, Box::new(self.expression(operand)?)),
            ExprKind::Binary { operator: BinaryOperator::LogicalAnd | BinaryOperator::LogicalOr, left, right }
                if has_access(right) =>
            {
                return Err(unsupported("a shared access behind && or ||", left.span.start));
            }
            ExprKind::Binary { operator, left, right } => {
                let left = self.expression(left)?;
                Operand::Binary(*operator, Box::new(left), Box::new(self.expression(right)?))
            }
            ExprKind::Conditional { condition, then_value, else_value } => {
                if has_access(then_value) || has_access(else_value) {
                    return Err(unsupported("a shared access in a conditional expression", expr.span.start));
                }
                let condition = self.expression(condition)?;
                let then_value = self.expression(then_value)?;
                Operand::Conditional(Box::new(condition), Box::new(then_value), Box::new(self.expression(else_value)?))
            }
            ExprKind::Cast { value, .. } => self.expression(value)?,
            ExprKind::Call { name, args } => self.call(name, args, expr.span.start)?,
        })
    }

    fn load(&mut self, address: Operand, primitive: Primitive) -> Operand {
        let target = self.temporary();
        self.emit(Instr::Load { target, address, primitive });
        Operand::Register(target)
    }

    fn rmw(&mut self, address: Operand, op: RmwOp, primitive: Primitive) -> Operand {
        let target = self.temporary();
        self.emit(Instr::Rmw { target, address, op, primitive });
        Operand::Register(target)
    }

    /// The address an lvalue argument names: `*p` is `p`'s value.
    fn lvalue(&mut self, arg: &Expr) -> Result<Operand, Unsupported> {
        match &arg.kind {
            ExprKind::Deref(address) => self.expression(address),
            _ => Err(unsupported("an access to something other than *pointer", arg.span.start)),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], position: Position) -> Result<Operand, Unsupported> {
        let arity = |n: usize| match args.len() == n {
            true => Ok(()),
            false => Err(unsupported(format!("{name} with {} arguments", args.len()), position)),
        };
        let done = Operand::Constant(0);
        if let Some(primitive) = fence_primitive(name) {
            arity(0)?;
            self.emit(Instr::Fence(primitive));
            return Ok(done);
        }
        if let Some((primitive, lvalue)) = load_primitive(name) {
            arity(1)?;
            let address = if lvalue { self.lvalue(&args[0])? } else { self.expression(&args[0])? };
            return Ok(self.load(address, primitive));
        }
        if let Some((primitive, lvalue)) = store_primitive(name) {
            arity(2)?;
            let address = if lvalue { self.lvalue(&args[0])? } else { self.expression(&args[0])? };
            let value = self.expression(&args[1])?;
            self.emit(Instr::Store { address, value, primitive });
            return Ok(done);
        }
        if let Some((base, primitive)) = rmw_primitive(name) {
            return self.rmw_call(name, base, primitive, args, position);
        }
        match name {
            "spin_lock" | "spin_unlock" | "spin_trylock" => {
                arity(1)?;
                let address = self.expression(&args[0])?;
                Ok(match name {
                    "spin_lock" => {
                        self.emit(Instr::Lock(address));
                        done
                    }
                    "spin_unlock" => {
                        self.emit(Instr::Unlock(address));
                        done
                    }
                    _ => {
                        let target = self.temporary();
                        self.emit(Instr::TryLock { target, address });
                        Operand::Register(target)
                    }
                })
            }
            "rcu_read_lock" | "rcu_read_unlock" | "synchronize_rcu" | "synchronize_rcu_expedited" => {
                arity(0)?;
                match name {
                    "rcu_read_lock" => self.emit(Instr::RcuReadLock),
                    "rcu_read_unlock" => self.emit(Instr::RcuReadUnlock),
                    _ => {
                        self.emit(Instr::SynchronizeStart);
                        self.emit(Instr::SynchronizeEnd)
                    }
                };
                Ok(done)
            }
            _ => Err(unsupported(name, position)),
        }
    }

    fn rmw_call(
        &mut self,
        name: &str,
        base: &str,
        primitive: Primitive,
        args: &[Expr],
        position: Position,
    ) -> Result<Operand, Unsupported> {
        let operands = |builder: &mut Self, skip: usize| -> Result<Vec<Operand>, Unsupported> {
            args.iter().skip(skip).map(|arg| builder.expression(arg)).collect()
        };
        let wrong = || unsupported(format!("{name} with {} arguments", args.len()), position);
        let one = Operand::Constant(1);
        let minus_one = Operand::Constant(-1);
        // (pointer argument index, operation)
        let (pointer, op) = match (base, args.len()) {
            ("xchg" | "atomic_xchg", 2) => (0, RmwOp::Exchange(operands(self, 1)?.remove(0))),
            ("cmpxchg" | "atomic_cmpxchg", 3) => {
                let mut values = operands(self, 1)?;
                let new = values.pop().expect("three arguments");
                (0, RmwOp::CompareExchange { expected: values.pop().expect("three arguments"), new })
            }
            ("atomic_add" | "atomic_add_return" | "atomic_fetch_add", 2) => {
                let operand = self.expression(&args[0])?;
                (1, RmwOp::Add { operand, returns_old: base == "atomic_fetch_add" })
            }
            ("atomic_sub" | "atomic_sub_return" | "atomic_fetch_sub", 2) => {
                let operand = Operand::Unary(UnaryOperator::Negate, Box::new(self.expression(&args[0])?));
                (1, RmwOp::Add { operand, returns_old: base == "atomic_fetch_sub" })
            }
            ("atomic_inc" | "atomic_inc_return" | "atomic_fetch_inc", 1) => {
                (0, RmwOp::Add { operand: one, returns_old: base == "atomic_fetch_inc" })
            }
            ("atomic_dec" | "atomic_dec_return" | "atomic_fetch_dec", 1) => {
                (0, RmwOp::Add { operand: minus_one, returns_old: base == "atomic_fetch_dec" })
            }
            ("atomic_dec_and_test", 1) => (0, RmwOp::AddAndTest(minus_one)),
            ("atomic_inc_and_test", 1) => (0, RmwOp::AddAndTest(one)),
            ("atomic_sub_and_test", 2) => {
                let operand = Operand::Unary(UnaryOperator::Negate, Box::new(self.expression(&args[0])?));
                (1, RmwOp::AddAndTest(operand))
            }
            ("atomic_add_unless", 3) => {
                let mut values = operands(self, 1)?;
                let unless = values.pop().expect("three arguments");
                (0, RmwOp::AddUnless { operand: values.pop().expect("three arguments"), unless })
            }
            ("atomic_inc_not_zero", 1) => (0, RmwOp::AddUnless { operand: one, unless: Operand::Constant(0) }),
            _ => return Err(wrong()),
        };
        let address = self.expression(&args[pointer])?;
        Ok(self.rmw(address, op, primitive))
    }
}

fn has_access(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Integer(_) | ExprKind::Name(_) => false,
        ExprKind::Deref(_) | ExprKind::Call { .. } => true,
        ExprKind::AddressOf(inner) => match &inner.kind {
            ExprKind::Deref(address) => has_access(address),
            _ => has_access(inner),
        },
        ExprKind::Unary { operand, .. } => has_access(operand),
        ExprKind::Binary { left, right, .. } => has_access(left) || has_access(right),
        ExprKind::Conditional { condition, then_value, else_value } => {
            has_access(condition) || has_access(then_value) || has_access(else_value)
        }
        ExprKind::Cast { value, .. } => has_access(value),
    }
}

fn fence_primitive(name: &str) -> Option<Primitive> {
    use Primitive::*;
    Some(match name {
        "smp_mb" => Mb,
        "smp_rmb" => Rmb,
        "smp_wmb" => Wmb,
        "smp_mb__before_atomic" | "smp_mb__after_atomic" | "smp_mb__after_spinlock" | "smp_mb__after_unlock_lock" => {
            MbAroundAtomic
        }
        "barrier" => Barrier,
        _ => return None,
    })
}

/// Loads: the primitive, and whether the argument is an lvalue (`READ_ONCE(*x)`) rather than a
/// pointer (`smp_load_acquire(x)`), as linux-kernel.def writes them.
fn load_primitive(name: &str) -> Option<(Primitive, bool)> {
    use Primitive::*;
    Some(match name {
        "READ_ONCE" | "rcu_dereference" | "rcu_access_pointer" => (ReadOnce, true),
        "smp_load_acquire" => (LoadAcquire, false),
        "atomic_read" => (ReadOnce, false),
        "atomic_read_acquire" => (LoadAcquire, false),
        _ => return None,
    })
}

fn store_primitive(name: &str) -> Option<(Primitive, bool)> {
    use Primitive::*;
    Some(match name {
        "WRITE_ONCE" => (WriteOnce, true),
        "rcu_assign_pointer" => (StoreRelease, true),
        "smp_store_release" => (StoreRelease, false),
        "atomic_set" => (WriteOnce, false),
        "atomic_set_release" => (StoreRelease, false),
        _ => return None,
    })
}

/// An RMW's base name and its ordering from its suffix (Documentation/atomic_t.txt: the plain
/// value-returning form is fully ordered; those returning nothing are relaxed).
fn rmw_primitive(name: &str) -> Option<(&str, Primitive)> {
    const BASES: [&str; 21] = [
        "xchg",
        "cmpxchg",
        "atomic_xchg",
        "atomic_cmpxchg",
        "atomic_add",
        "atomic_sub",
        "atomic_inc",
        "atomic_dec",
        "atomic_add_return",
        "atomic_sub_return",
        "atomic_inc_return",
        "atomic_dec_return",
        "atomic_fetch_add",
        "atomic_fetch_sub",
        "atomic_fetch_inc",
        "atomic_fetch_dec",
        "atomic_dec_and_test",
        "atomic_inc_and_test",
        "atomic_sub_and_test",
        "atomic_add_unless",
        "atomic_inc_not_zero",
    ];
    let (base, primitive) = match name.rsplit_once('_') {
        Some((base, "relaxed")) => (base, Primitive::RmwRelaxed),
        Some((base, "acquire")) => (base, Primitive::RmwAcquire),
        Some((base, "release")) => (base, Primitive::RmwRelease),
        _ => (name, Primitive::RmwFull),
    };
    let base = BASES.iter().find(|&&b| b == base)?;
    let returns_nothing = matches!(*base, "atomic_add" | "atomic_sub" | "atomic_inc" | "atomic_dec");
    let primitive = if returns_nothing { Primitive::RmwRelaxed } else { primitive };
    Some((base, primitive))
}
