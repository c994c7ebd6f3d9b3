//! herd7's C litmus format (the Linux-kernel memory model's test language), parsed to a plain
//! AST. This module only parses: primitives such as `READ_ONCE` or `spin_lock` stay generic
//! calls ([`ExprKind::Call`]) so that the interpreter running tests on a weak-memory engine
//! decides which ones it supports.
//!
//! A test reads:
//!
//! ```text
//! C MP+pooncerelease+poacquireonce       <- header: architecture and name
//! (* Result: Never *)                     <- preamble: comments, doc string, `key=value` lines
//! { x=0; int *p=&y; 0:r1=x; }             <- initial state
//! P0(int *x, int *y) { WRITE_ONCE(*x, 1); smp_store_release(y, 1); }
//! P1(int *x, int *y) { int r0 = smp_load_acquire(y); int r1 = READ_ONCE(*x); }
//! locations [x; 1:r0]                     <- optional: extra locations to print
//! filter (1:r0=1)                         <- optional: executions to keep
//! exists (1:r0=1 /\ 1:r1=0)               <- the condition: exists, ~exists or forall
//! ```
//!
//! `(* ... *)` comments are allowed outside thread code (herd reads them there); inside a
//! thread `(*x` is a dereference, so only `//` and `/* */` comments are. Only the `C`
//! architecture is accepted: LISA and assembly tests have another syntax.

mod check;
mod code;
mod compile;
mod lexer;
mod parser;
mod preamble;
mod run;

use std::fmt;

pub use check::{check, Observed, Status, TestRun};
pub use parser::parse;

/// A place in the source: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The source text a node comes from: `start` is its first character, `end` is just past
/// its last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

/// Why a test did not parse, and where. Display gives `line:column: message`; callers prefix
/// the file name: `format!("{file}:{error}")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LitmusError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl LitmusError {
    pub(crate) fn at(position: Position, message: impl Into<String>) -> Self {
        LitmusError { line: position.line, column: position.column, message: message.into() }
    }
}

impl fmt::Display for LitmusError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for LitmusError {}

/// A whole litmus test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LitmusTest {
    /// The name on the header line (`C NAME`), which may hold `+`, `-`, `.` and `/`.
    pub name: String,
    pub name_span: Span,
    /// The verdict the header comment's `Result:` line announces, if it has one.
    pub expected: Option<Expected>,
    /// Every comment of the preamble (between the header line and the initial state), without
    /// its delimiters, in order.
    pub comments: Vec<String>,
    /// The preamble's quoted string, which herd shows as the test's documentation.
    pub doc: Option<String>,
    /// The preamble's `key=value` lines (generated tests carry `Com=`, `Orig=`, ...).
    pub info: Vec<(String, String)>,
    pub init: Vec<InitEntry>,
    pub threads: Vec<ThreadDecl>,
    /// `locations [x; 0:r1]`: extra locations herd prints in each final state.
    pub locations: Vec<Location>,
    /// `filter PROP`: only executions whose final state satisfies it count.
    pub filter: Option<Prop>,
    pub condition: Condition,
}

/// The `Result:` line of the header comment: `Result: Never`, `Result: Sometimes DATARACE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub result: ExpectedResult,
    /// The words after the verdict, as written (`DATARACE`).
    pub flags: Vec<String>,
    pub span: Span,
}

/// What herd7 with the LKMM says about the condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedResult {
    /// No execution satisfies the condition.
    Never,
    /// Some executions do, some do not.
    Sometimes,
    /// Every execution does.
    Always,
    /// Anything else, as written without trailing punctuation (`Maybe`, `DEADLOCK`, `Flag`).
    Other(String),
}

/// A C type as litmus tests write it: `int`, `atomic_t`, `struct srcu_struct *`,
/// `volatile int *`, `intptr_t **`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    /// The base type's words joined by one space: `int`, `unsigned long`, `struct srcu_struct`.
    pub base: String,
    /// `volatile` or `const` before the stars (the corpus never qualifies a pointer itself).
    pub qualifiers: Vec<String>,
    /// How many `*` follow the base type.
    pub pointers: usize,
}

/// One entry of the initial-state block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitEntry {
    /// The type the entry declares (`int *y=&z;`, `atomic_t v = ATOMIC_INIT(1);`), if any.
    pub declared_type: Option<Type>,
    pub target: Location,
    /// `None` for a declaration without a value (`spinlock_t s;`), which herd sets to zero.
    pub value: Option<InitValue>,
    pub span: Span,
}

/// The value an initial-state entry gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitValue {
    Integer(i64),
    /// The address of a location: `p=y` and `p=&y` alike.
    Address(String),
    /// An initialiser macro such as `ATOMIC_INIT(1)`, left for the interpreter.
    Call {
        name: String,
        args: Vec<InitValue>,
    },
}

/// A shared location or a thread's register, as the initial state, `locations` and the
/// condition name them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// A shared variable: `x`.
    Global(String),
    /// `thread:register`: `0:r1`.
    Register { thread: usize, name: String },
}

/// `P<index>(params) { body }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadDecl {
    pub index: usize,
    /// The parameters: each names a shared location, with the type of a pointer to it.
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub param_type: Type,
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

/// A statement of thread code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StmtKind {
    /// `int r0 = READ_ONCE(*x);`, `int r0; int r1;`, `int r0, r1;`: one entry per name.
    Declaration(Vec<Declarator>),
    /// `r1 = e;` (a register) or `*x = e;` (a plain store through a pointer). `operator` is
    /// set for compound assignments: `r1 += e` has `Some(BinaryOperator::Add)`.
    Assign {
        target: Expr,
        operator: Option<BinaryOperator>,
        value: Expr,
    },
    /// An expression evaluated for its effect, usually a call: `smp_mb();`.
    Expression(Expr),
    If {
        condition: Expr,
        then_branch: Box<Stmt>,
        else_branch: Option<Box<Stmt>>,
    },
    While {
        condition: Expr,
        body: Box<Stmt>,
    },
    /// `do body while (condition);`
    DoWhile {
        body: Box<Stmt>,
        condition: Expr,
    },
    /// `{ ... }`
    Block(Vec<Stmt>),
    /// `;`
    Empty,
}

/// One name of a declaration, with its full type (`int *p, r;` gives `int *` and `int`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declarator {
    pub declared_type: Type,
    pub name: String,
    pub init: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    /// The source of the expression; for a parenthesised one, without the parentheses.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    Integer(i64),
    /// A register, parameter or other name.
    Name(String),
    /// `*e`: a load (or, as an assignment's target, a store).
    Deref(Box<Expr>),
    /// `&e`.
    AddressOf(Box<Expr>),
    Unary {
        operator: UnaryOperator,
        operand: Box<Expr>,
    },
    Binary {
        operator: BinaryOperator,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `condition ? then_value : else_value`.
    Conditional {
        condition: Box<Expr>,
        then_value: Box<Expr>,
        else_value: Box<Expr>,
    },
    /// `(type)e`: `(intptr_t *)r1`, `(void *)0`.
    Cast {
        target_type: Type,
        value: Box<Expr>,
    },
    /// Every call, primitive or not: `READ_ONCE(*x)`, `smp_mb()`, `atomic_add(1, v)`.
    Call {
        name: String,
        args: Vec<Expr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOperator {
    /// `!`
    Not,
    /// `-`
    Negate,
    /// `~`
    BitNot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOperator {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
    BitAnd,
    BitOr,
    BitXor,
    ShiftLeft,
    ShiftRight,
    Equal,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    LogicalAnd,
    LogicalOr,
}

/// The final condition. A test without one gets herd's default, `forall true`, with an
/// empty span at the end of the test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    pub prop: Prop,
    pub span: Span,
}

impl Condition {
    /// What herd assumes when a test has no condition: `forall true`, empty span at `at`.
    pub(crate) fn herd_default(at: Position) -> Self {
        Condition { kind: ConditionKind::Forall, prop: Prop::True, span: Span { start: at, end: at } }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    /// `exists P`, also written `final P` or just `(P)`: some execution ends in a state
    /// satisfying P.
    Exists,
    /// `~exists P` (or `not exists P`): none does.
    NotExists,
    /// `forall P`: every one does.
    Forall,
}

/// A proposition about a final state. Binding, loosest first as herd has it: `\/`, `/\`,
/// `=>` (right-associative), `~`/`not`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prop {
    True,
    False,
    /// `~P`
    Not(Box<Prop>),
    /// `P /\ Q`
    And(Box<Prop>, Box<Prop>),
    /// `P \/ Q`
    Or(Box<Prop>, Box<Prop>),
    /// `P => Q`
    Implies(Box<Prop>, Box<Prop>),
    Atom(Atom),
}

/// `location = value` or `location != value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom {
    pub location: Location,
    /// True for `!=`.
    pub negated: bool,
    pub value: Value,
    pub span: Span,
}

/// The right-hand side of an atom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    /// A location's address: `1:r1=y` holds when r1 points to y.
    Address(String),
    /// Another location's final value: a register (`0:r1=0:r4`) or, written with a star, a
    /// shared variable (`x=*y`).
    Location(Location),
}
