//! Parser (text → AST with byte spans) and builder (AST + parameter values → model threads).

use crate::lexer::{tokenize, Token, TokenKind};
use crate::{char_start, filled_file, Diagnostic, Expectation, KernelRange, Outcome, Scenario};
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_model::drivers::{DeviceKind, DeviceSpec};
use mmcheck_model::folio::PAGE_SIZE;
use mmcheck_model::fs::proc::page::ProcPageFile;
use mmcheck_model::fs::proc::task_mmu::SmapsField;
use mmcheck_model::mm::userfaultfd::UFFD_API;
use mmcheck_model::patches::{KernelConfig, Patch, PATCHES};
use mmcheck_model::program::{map, mremap, prot, Advice, Comparison, Instruction, Operand, SourceLocation};
use mmcheck_model::thread::errno;
use mmcheck_model::{KernelVersion, SystemSpec, ThreadSpec, ViolationKind};
use std::collections::BTreeMap;

type Span = (usize, usize);

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Number(i64, Span),
    Name(String, Span),
    Binary(Box<Expr>, char, Box<Expr>, Span),
    /// `a|b|c`: flag names.
    Flags(Vec<(String, Span)>, Span),
}

impl Ast {
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

impl Expr {
    /// Operators from this node to its deepest leaf. Recursive, but the parser keeps every
    /// tree within EXPRESSION_DEPTH_MAX.
    fn depth(&self) -> usize {
        match self {
            Expr::Binary(left, _, right, _) => 1 + left.depth().max(right.depth()),
            _ => 0,
        }
    }

    fn span(&self) -> Span {
        match self {
            Expr::Number(_, s) | Expr::Name(_, s) | Expr::Binary(_, _, _, s) | Expr::Flags(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    name: String,
    arguments: Vec<Expr>,
    span: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum Statement {
    Call {
        destination: Option<(String, Span)>,
        call: Call,
    },
    Assert {
        left: Expr,
        comparison: Comparison,
        right: Expr,
        text: String,
        span: Span,
    },
    AssertLoad {
        call: Call,
        comparison: Comparison,
        expect: Expr,
        span: Span,
    },
    Thread {
        name: String,
        body: Vec<Statement>,
        span: Span,
    },
    /// `fork NAME { ... }`: a child process running the block.
    Fork {
        name: String,
        body: Vec<Statement>,
        span: Span,
    },
    /// `signal NAME` / `wait NAME`.
    Event {
        signal: bool,
        name: String,
        span: Span,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct FileDecl {
    name: String,
    size: Expr,
    fill: Expr,
}

/// `device NAME insert_page [compound order EXPR]`, `device NAME insert_pages ...` or
/// `device NAME remap_pfn size EXPR fill EXPR`.
#[derive(Clone, Debug)]
pub(crate) struct DeviceDecl {
    name: String,
    method: (String, Span),
    compound: bool,
    order: Option<Expr>,
    size: Option<Expr>,
    fill: Option<Expr>,
}

#[derive(Clone, Debug)]
pub(crate) struct ThreadDecl {
    name: String,
    /// `process NAME` / `kthread NAME`, where an error about the thread points.
    span: Span,
    kernel: bool,
    body: Vec<Statement>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Ast {
    source: String,
    files: Vec<FileDecl>,
    devices: Vec<DeviceDecl>,
    /// `swap size EXPR`: the swap device's size in bytes.
    swap: Option<Expr>,
    /// `mthp SIZE`: an mTHP size enabled ("always") for anonymous memory.
    mthp: Vec<Expr>,
    threads: Vec<ThreadDecl>,
}

/// The language's limits (docs/SCENARIOS.md, "Limits"). Each is far above what a scenario
/// needs and low enough that parsing, building and the model's allocations stay small and the
/// parser's and evaluator's recursion stays within a test thread's stack.
pub mod limits {
    /// A scenario's text.
    pub const SOURCE_BYTES_MAX: usize = 1 << 20;
    /// Parentheses, unary minus signs and `{` blocks open at once.
    pub const NESTING_MAX: usize = 256;
    /// Operators in one expression's tree from its root to its deepest leaf (`1 + 2 + 3` is 2).
    pub const EXPRESSION_DEPTH_MAX: usize = 256;
    /// A name: a parameter, variable, thread, file, event or flag.
    pub const IDENTIFIER_BYTES_MAX: usize = 64;
    /// Threads of all processes and kernel threads (the explorer keeps a set of threads per
    /// visited state in a 32-bit word).
    pub const THREADS_MAX: usize = 32;
    /// Variables a process (with its threads) defines: each is a register every state holds.
    pub const VARIABLES_MAX: usize = 256;
    /// `file` declarations.
    pub const FILES_MAX: usize = 64;
    /// `device` declarations.
    pub const DEVICES_MAX: usize = 64;
    /// A length (mmap, store, load, madvise, pread...), a file's size or a truncation: 1 TiB.
    pub const SIZE_BYTES_MAX: i64 = 1 << 40;
}

use limits::*;

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses, unary minus signs and blocks open now (at most NESTING_MAX).
    nesting: usize,
}

/// Parses a scenario. Parameters keep their declared values; `Scenario::system` checks that
/// the scenario builds.
pub fn parse(source: &str) -> Result<Scenario, Diagnostic> {
    if source.len() > SOURCE_BYTES_MAX {
        return Err(Diagnostic::new(
            format!("a scenario is at most {} KiB (this is {} bytes)", SOURCE_BYTES_MAX >> 10, source.len()),
            char_start(source, SOURCE_BYTES_MAX),
            source.len(),
        ));
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser { source, tokens, at: 0, nesting: 0 };
    let scenario = parser.scenario()?;
    // Build once with the declared parameters so that errors show now, with their place.
    build(&scenario.ast, &scenario.parameters)?;
    Ok(scenario)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &TokenKind {
        &self.tokens[self.at].kind
    }

    fn token(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, Diagnostic> {
        let token = self.token();
        Err(Diagnostic::new(message, token.start, token.end.max(token.start + 1)))
    }

    /// Opens one level of nesting at the current token: past NESTING_MAX, a located error
    /// (the parser recurses once per level).
    fn enter(&mut self) -> Result<(), Diagnostic> {
        if self.nesting >= NESTING_MAX {
            return self.error(format!("nesting deeper than {NESTING_MAX} levels (parentheses, `-` signs and blocks)"));
        }
        self.nesting += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// `left OPERATOR right`, refused when the tree gets deeper than EXPRESSION_DEPTH_MAX (the
    /// builder evaluates it recursively).
    fn binary(&self, left: Expr, operator: char, right: Expr, span: Span) -> Result<Expr, Diagnostic> {
        if left.depth().max(right.depth()) >= EXPRESSION_DEPTH_MAX {
            return Err(diagnostic(
                format!("an expression is at most {EXPRESSION_DEPTH_MAX} operators deep"),
                (right.span().0, right.span().1),
            ));
        }
        Ok(Expr::Binary(Box::new(left), operator, Box::new(right), span))
    }

    fn skip_newlines(&mut self) {
        while *self.peek() == TokenKind::Newline {
            self.advance();
        }
    }

    fn end_of_statement(&mut self) -> Result<(), Diagnostic> {
        match self.peek() {
            TokenKind::Newline => {
                self.skip_newlines();
                Ok(())
            }
            TokenKind::End | TokenKind::RightBrace => Ok(()),
            _ => self.error("expected the end of the line"),
        }
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<Token, Diagnostic> {
        if *self.peek() == kind {
            return Ok(self.advance());
        }
        self.error(format!("expected {what}"))
    }

    fn identifier(&mut self, what: &str) -> Result<(String, Span), Diagnostic> {
        if let TokenKind::Identifier(name) = self.peek().clone() {
            let token = self.advance();
            return Ok((name, (token.start, token.end)));
        }
        self.error(format!("expected {what}"))
    }

    fn keyword(&mut self, word: &str) -> Result<(), Diagnostic> {
        match self.peek() {
            TokenKind::Identifier(name) if name == word => {
                self.advance();
                Ok(())
            }
            _ => self.error(format!("expected `{word}`")),
        }
    }

    fn scenario(&mut self) -> Result<Scenario, Diagnostic> {
        self.skip_newlines();
        self.keyword("scenario")?;
        let (name, _) = self.identifier("the scenario's name")?;
        let title = match self.peek().clone() {
            TokenKind::String(title) => {
                self.advance();
                title
            }
            _ => String::new(),
        };
        self.end_of_statement()?;
        let mut scenario = Scenario {
            name,
            title,
            references: Vec::new(),
            tags: Vec::new(),
            parameters: BTreeMap::new(),
            expectations: Vec::new(),
            ast: Ast { source: self.source.to_string(), ..Ast::default() },
        };
        while *self.peek() != TokenKind::End {
            self.item(&mut scenario)?;
        }
        Ok(scenario)
    }

    fn item(&mut self, scenario: &mut Scenario) -> Result<(), Diagnostic> {
        let (word, span) = self
            .identifier("`param`, `file`, `device`, `swap`, `mthp`, `process`, `kthread`, `expect`, `ref` or `tag`")?;
        match word.as_str() {
            "ref" => {
                let (reference, _) = self.identifier_or_number("a commit id")?;
                scenario.references.push(reference);
            }
            "tag" => {
                let (tag, _) = self.identifier("a tag")?;
                scenario.tags.push(tag);
            }
            "param" => {
                let (name, name_span) = self.identifier("the parameter's name")?;
                self.expect(TokenKind::Assign, "`=`")?;
                let value = self.expression()?;
                let value = evaluate_constant(&value, &scenario.parameters)?;
                if scenario.parameters.insert(name.clone(), value).is_some() {
                    return Err(Diagnostic::new(
                        format!("parameter `{name}` is declared twice"),
                        name_span.0,
                        name_span.1,
                    ));
                }
            }
            "file" => {
                if scenario.ast.files.len() >= FILES_MAX {
                    return Err(diagnostic(format!("at most {FILES_MAX} files"), span));
                }
                let (name, _) = self.identifier("the file's name")?;
                self.keyword("size")?;
                let size = self.expression()?;
                self.keyword("fill")?;
                let fill = self.expression()?;
                scenario.ast.files.push(FileDecl { name, size, fill });
            }
            "mthp" => {
                let size = self.expression()?;
                scenario.ast.mthp.push(size);
            }
            "swap" => {
                self.keyword("size")?;
                let size = self.expression()?;
                if scenario.ast.swap.replace(size).is_some() {
                    return Err(Diagnostic::new("a scenario has one swap device", span.0, span.1));
                }
            }
            "device" => {
                if scenario.ast.devices.len() >= DEVICES_MAX {
                    return Err(diagnostic(format!("at most {DEVICES_MAX} devices"), span));
                }
                let device = self.device()?;
                scenario.ast.devices.push(device);
            }
            "process" | "kthread" => {
                let (name, name_span) = self.identifier("a name")?;
                let body = self.block()?;
                let span = (span.0, name_span.1);
                scenario.ast.threads.push(ThreadDecl { name, span, kernel: word == "kthread", body });
            }
            "expect" => {
                let expectation = self.expectation()?;
                scenario.expectations.push(expectation);
            }
            _ => {
                return Err(Diagnostic::new(format!("unknown item `{word}`"), span.0, span.1).with_note(
                    "a scenario has `param`, `file`, `device`, `swap`, `mthp`, `process`, `kthread`, `expect`, `ref` and `tag` lines",
                ))
            }
        }
        self.end_of_statement()
    }

    fn identifier_or_number(&mut self, what: &str) -> Result<(String, Span), Diagnostic> {
        let token = self.token().clone();
        match token.kind {
            TokenKind::Identifier(_) | TokenKind::Number(_) => {
                self.advance();
                Ok((self.source[token.start..token.end].to_string(), (token.start, token.end)))
            }
            _ => self.error(format!("expected {what}")),
        }
    }

    /// `expect kernel < 5.18: violation data-loss` / `expect kernel >= 5.18: verified`.
    fn expectation(&mut self) -> Result<Expectation, Diagnostic> {
        let line = self.source[..self.token().start].matches('\n').count() + 1;
        self.keyword("kernel")?;
        let comparison = match self.peek().clone() {
            TokenKind::Compare(c) => {
                self.advance();
                Some(c)
            }
            _ => None,
        };
        let (text, span) = self.identifier_or_number("a kernel version such as 5.18")?;
        let Some(version) = KernelVersion::parse(&text) else {
            return Err(Diagnostic::new(format!("`{text}` is not a kernel version"), span.0, span.1)
                .with_note(format!("a version is {}", KernelVersion::FORM)));
        };
        let kernels = match comparison {
            Some("<") => KernelRange::Below(version),
            Some(">=") => KernelRange::AtLeast(version),
            None | Some("==") => KernelRange::Exactly(version),
            Some(other) => {
                return Err(Diagnostic::new(
                    format!("use `<`, `>=` or an exact version, not `{other}`"),
                    span.0,
                    span.1,
                ))
            }
        };
        let patches_start = self.token().start;
        let patches = self.patch_overrides()?;
        let patches_end = self.tokens[self.at - 1].end;
        // Two versions of one fix (MUTUALLY_EXCLUSIVE) on a kernel the suite would run.
        for version in kernels.representatives() {
            let mut kernel = KernelConfig::for_version(version);
            for (patch, on) in &patches {
                kernel.set(*patch, *on);
            }
            if let Some(conflict) = kernel.conflict() {
                return Err(Diagnostic::new(
                    format!("kernel {}: {conflict}", kernel.label()),
                    patches_start,
                    patches_end.max(patches_start),
                ));
            }
        }
        let memory_model = self.memory_model()?;
        self.expect(TokenKind::Colon, "`:`")?;
        let (word, word_span) = self.identifier("`verified` or `violation KIND`")?;
        let outcome = match word.as_str() {
            "verified" => Outcome::Verified,
            "violation" => {
                let (kind, kind_span) = self.identifier("a violation kind")?;
                match ViolationKind::parse(&kind) {
                    Some(kind) => Outcome::Violation(kind),
                    None => {
                        let kinds: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.name()).collect();
                        return Err(Diagnostic::new(
                            format!("unknown violation kind `{kind}`"),
                            kind_span.0,
                            kind_span.1,
                        )
                        .with_note(format!("kinds: {}", kinds.join(", "))));
                    }
                }
            }
            _ => {
                return Err(Diagnostic::new(
                    format!("expected `verified` or `violation KIND`, found `{word}`"),
                    word_span.0,
                    word_span.1,
                ))
            }
        };
        Ok(Expectation { kernels, patches, memory_model, outcome, line })
    }

    /// `under arm64` before an expectation's colon (sequential consistency without one).
    fn memory_model(&mut self) -> Result<MemoryModel, Diagnostic> {
        if !matches!(self.peek(), TokenKind::Identifier(word) if word == "under") {
            return Ok(MemoryModel::Sc);
        }
        self.advance();
        let (name, span) = self.identifier("a memory model: sc, x86, arm64 or lkmm")?;
        MemoryModel::parse(&name).ok_or_else(|| {
            Diagnostic::new(format!("unknown memory model `{name}`"), span.0, span.1)
                .with_note("memory models: sc, x86, arm64, lkmm")
        })
    }

    fn device(&mut self) -> Result<DeviceDecl, Diagnostic> {
        let (name, _) = self.identifier("the device's name")?;
        let method = self.identifier("how its mmap maps memory: `insert_page`, `insert_pages` or `remap_pfn`")?;
        let mut device = DeviceDecl { name, method, compound: false, order: None, size: None, fill: None };
        while let TokenKind::Identifier(word) = self.peek().clone() {
            self.advance();
            match word.as_str() {
                "compound" => device.compound = true,
                "order" => device.order = Some(self.expression()?),
                "size" => device.size = Some(self.expression()?),
                "fill" => device.fill = Some(self.expression()?),
                _ => {
                    let token = self.tokens[self.at - 1].clone();
                    return Err(Diagnostic::new(format!("unknown device option `{word}`"), token.start, token.end)
                        .with_note(
                        "options: compound, order EXPR (insert_page/insert_pages); size EXPR, fill EXPR (remap_pfn)",
                    ));
                }
            }
        }
        Ok(device)
    }

    /// `+name` / `-name` after an expectation's kernel range: registered changes on or off.
    fn patch_overrides(&mut self) -> Result<Vec<(Patch, bool)>, Diagnostic> {
        let mut patches = Vec::new();
        while matches!(self.peek(), TokenKind::Plus | TokenKind::Minus) {
            let on = self.advance().kind == TokenKind::Plus;
            let (name, span) = self.identifier_or_number("a registered change (see `mmcheck kernels`)")?;
            let Some(patch) = Patch::by_name(&name) else {
                let names: Vec<&str> = PATCHES.iter().map(|p| p.name).collect();
                return Err(Diagnostic::new(format!("unknown kernel change `{name}`"), span.0, span.1)
                    .with_note(format!("registered changes: {}", names.join(", "))));
            };
            patches.push((patch, on));
        }
        Ok(patches)
    }

    fn block(&mut self) -> Result<Vec<Statement>, Diagnostic> {
        if *self.peek() == TokenKind::LeftBrace {
            self.enter()?;
        }
        self.expect(TokenKind::LeftBrace, "`{`")?;
        self.skip_newlines();
        let mut body = Vec::new();
        while *self.peek() != TokenKind::RightBrace {
            if *self.peek() == TokenKind::End {
                return self.error("expected `}` to close the block");
            }
            body.push(self.statement()?);
            self.end_of_statement()?;
        }
        self.advance();
        self.leave();
        Ok(body)
    }

    fn statement(&mut self) -> Result<Statement, Diagnostic> {
        let start = self.token().start;
        let (word, span) = self.identifier("a statement")?;
        match word.as_str() {
            "signal" | "wait" => {
                let (name, name_span) = self.identifier("an event name")?;
                Ok(Statement::Event { signal: word == "signal", name, span: (start, name_span.1) })
            }
            "thread" => {
                let (name, _) = self.identifier("the thread's name")?;
                let body = self.block()?;
                Ok(Statement::Thread { name, body, span: (start, self.tokens[self.at - 1].end) })
            }
            "fork" => {
                let (name, _) = self.identifier("the child process's name")?;
                let body = self.block()?;
                Ok(Statement::Fork { name, body, span: (start, self.tokens[self.at - 1].end) })
            }
            "assert" => self.assertion(start),
            _ if *self.peek() == TokenKind::Assign => {
                self.advance();
                let call = self.call()?;
                Ok(Statement::Call { destination: Some((word, span)), call })
            }
            _ => {
                self.at -= 1;
                let call = self.call()?;
                Ok(Statement::Call { destination: None, call })
            }
        }
    }

    fn comparison(&mut self) -> Result<Comparison, Diagnostic> {
        let comparison = match self.peek() {
            TokenKind::Compare("==") => Comparison::Equal,
            TokenKind::Compare("!=") => Comparison::NotEqual,
            TokenKind::Compare("<") => Comparison::Less,
            TokenKind::Compare("<=") => Comparison::LessEqual,
            TokenKind::Compare(">") => Comparison::Greater,
            TokenKind::Compare(">=") => Comparison::GreaterEqual,
            _ => return self.error("expected a comparison (==, !=, <, <=, >, >=)"),
        };
        self.advance();
        Ok(comparison)
    }

    fn assertion(&mut self, start: usize) -> Result<Statement, Diagnostic> {
        let is_load = matches!(self.peek(), TokenKind::Identifier(name) if name == "load");
        if is_load {
            let call = self.call()?;
            let comparison = self.comparison()?;
            let expect = self.expression()?;
            let span = (start, expect.span().1);
            return Ok(Statement::AssertLoad { call, comparison, expect, span });
        }
        let left = self.expression()?;
        let comparison = self.comparison()?;
        let right = self.expression()?;
        let text = self.source[left.span().0..right.span().1].to_string();
        Ok(Statement::Assert { left, comparison, right, text, span: (start, self.tokens[self.at - 1].end) })
    }

    fn call(&mut self) -> Result<Call, Diagnostic> {
        let (name, span) = self.identifier("a call such as mmap(...)")?;
        self.expect(TokenKind::LeftParen, &format!("`(` after `{name}`"))?;
        let mut arguments = Vec::new();
        if *self.peek() != TokenKind::RightParen {
            loop {
                arguments.push(self.argument()?);
                if *self.peek() == TokenKind::Comma {
                    self.advance();
                    continue;
                }
                break;
            }
        }
        let close = self.expect(TokenKind::RightParen, "`,` or `)`")?;
        Ok(Call { name, arguments, span: (span.0, close.end) })
    }

    fn argument(&mut self) -> Result<Expr, Diagnostic> {
        let first = self.expression()?;
        if *self.peek() != TokenKind::Pipe {
            return Ok(first);
        }
        let Expr::Name(name, span) = first else {
            return Err(Diagnostic::new("flags are names joined by `|`", first.span().0, first.span().1));
        };
        let mut flags = vec![(name, span)];
        while *self.peek() == TokenKind::Pipe {
            self.advance();
            flags.push(self.identifier("a flag name")?);
        }
        let end = flags.last().map_or(span.1, |f| f.1 .1);
        Ok(Expr::Flags(flags, (span.0, end)))
    }

    fn expression(&mut self) -> Result<Expr, Diagnostic> {
        let mut left = self.term()?;
        while let TokenKind::Plus | TokenKind::Minus = self.peek() {
            let operator = if *self.peek() == TokenKind::Plus { '+' } else { '-' };
            self.advance();
            let right = self.term()?;
            let span = (left.span().0, right.span().1);
            left = self.binary(left, operator, right, span)?;
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, Diagnostic> {
        let mut left = self.factor()?;
        while let TokenKind::Star | TokenKind::Slash = self.peek() {
            let operator = if *self.peek() == TokenKind::Star { '*' } else { '/' };
            self.advance();
            let right = self.factor()?;
            let span = (left.span().0, right.span().1);
            left = self.binary(left, operator, right, span)?;
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, Diagnostic> {
        let token = self.token().clone();
        match token.kind {
            TokenKind::Number(value) => {
                self.advance();
                Ok(Expr::Number(value, (token.start, token.end)))
            }
            TokenKind::Identifier(name) => {
                self.advance();
                Ok(Expr::Name(name, (token.start, token.end)))
            }
            TokenKind::Minus => {
                self.enter()?;
                self.advance();
                let inner = self.factor()?;
                self.leave();
                let span = (token.start, inner.span().1);
                self.binary(Expr::Number(0, (token.start, token.start)), '-', inner, span)
            }
            TokenKind::LeftParen => {
                self.enter()?;
                self.advance();
                let inner = self.expression()?;
                self.expect(TokenKind::RightParen, "`)`")?;
                self.leave();
                Ok(inner)
            }
            _ => self.error("expected a number, a name or `(`"),
        }
    }
}

fn diagnostic(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::new(message, span.0, span.1.max(span.0 + 1))
}

fn evaluate_constant(expr: &Expr, parameters: &BTreeMap<String, i64>) -> Result<i64, Diagnostic> {
    evaluate_constant_in(expr, parameters, &BTreeMap::new())
}

/// A constant where variables are known: a variable gets "a constant is needed here".
fn evaluate_constant_in(
    expr: &Expr,
    parameters: &BTreeMap<String, i64>,
    variables: &BTreeMap<String, u16>,
) -> Result<i64, Diagnostic> {
    match evaluate(expr, parameters, variables)? {
        Operand::Constant(value) => Ok(value),
        Operand::Register(..) => Err(diagnostic("expected a constant here, not a variable", expr.span())),
    }
}

/// Evaluates an expression: parameters are constants, variables are registers; a register may
/// only be offset by constants (`buf + 4K`).
fn evaluate(
    expr: &Expr,
    parameters: &BTreeMap<String, i64>,
    variables: &BTreeMap<String, u16>,
) -> Result<Operand, Diagnostic> {
    match expr {
        Expr::Number(value, _) => Ok(Operand::Constant(*value)),
        Expr::Name(name, span) => {
            if let Some(value) = parameters.get(name) {
                return Ok(Operand::Constant(*value));
            }
            if let Some(register) = variables.get(name) {
                return Ok(Operand::Register(*register, 0));
            }
            if let Some(value) = errno::by_name(name).or_else(|| proc_constant(name)) {
                return Ok(Operand::Constant(value));
            }
            Err(diagnostic(format!("unknown name `{name}`"), *span).with_note(
                "names are parameters (`param`), variables assigned earlier in the process (`x = mmap(...)`) or errno names (`-ENOENT`)",
            ))
        }
        Expr::Flags(_, span) => Err(diagnostic("flags are not a value here", *span)),
        Expr::Binary(left, operator, right, span) => {
            let (l, r) = (evaluate(left, parameters, variables)?, evaluate(right, parameters, variables)?);
            let overflow =
                || diagnostic("arithmetic overflow: the value does not fit in a signed 64-bit integer", *span);
            match (l, *operator, r) {
                (Operand::Constant(a), '+', Operand::Constant(b)) => {
                    a.checked_add(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(a), '-', Operand::Constant(b)) => {
                    a.checked_sub(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(a), '*', Operand::Constant(b)) => {
                    a.checked_mul(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(_), '/', Operand::Constant(0)) => Err(diagnostic("division by zero", *span)),
                // i64::MIN / -1 is the one quotient that does not fit.
                (Operand::Constant(a), '/', Operand::Constant(b)) => {
                    a.checked_div(b).map(Operand::Constant).ok_or_else(overflow)
                }
                // A register's offset is constant arithmetic too: checked the same way.
                (Operand::Register(reg, offset), '+', Operand::Constant(b))
                | (Operand::Constant(b), '+', Operand::Register(reg, offset)) => {
                    offset.checked_add(b).map(|offset| Operand::Register(reg, offset)).ok_or_else(overflow)
                }
                (Operand::Register(reg, offset), '-', Operand::Constant(b)) => {
                    offset.checked_sub(b).map(|offset| Operand::Register(reg, offset)).ok_or_else(overflow)
                }
                _ => Err(diagnostic("a variable can only be offset by a constant (`buf + 4K`)", *span)),
            }
        }
    }
}

/// Builds the model's system from the AST with these parameter values.
pub(crate) fn build(ast: &Ast, parameters: &BTreeMap<String, i64>) -> Result<SystemSpec, Diagnostic> {
    let mut builder = Builder {
        source: &ast.source,
        registers_max: 0,
        events: Vec::new(),
        parameters,
        files: BTreeMap::new(),
        devices: BTreeMap::new(),
        spec: SystemSpec::default(),
    };
    for (index, file) in ast.files.iter().enumerate() {
        let size = evaluate_constant(&file.size, parameters)?;
        let fill = evaluate_constant(&file.fill, parameters)?;
        if size <= 0 {
            return Err(diagnostic("a file's size must be positive", file.size.span()));
        }
        if size > SIZE_BYTES_MAX {
            return Err(diagnostic(format!("a file is at most 1024G (1 TiB; this is {size} bytes)"), file.size.span()));
        }
        if !(0..=255).contains(&fill) {
            return Err(diagnostic("a fill byte is 0 to 255", file.fill.span()));
        }
        builder.files.insert(file.name.clone(), index as u32);
        builder.spec.files.push(filled_file(size, fill as u8));
    }
    if let Some(size) = &ast.swap {
        let bytes = evaluate_constant(size, parameters)?;
        let pages = (bytes.max(0) as u64).div_ceil(PAGE_SIZE);
        // mkswap writes the header into the first page: swapon refuses a device without a
        // page after it ("Empty swap-file").
        if bytes <= 0 || !(2..=4096).contains(&pages) {
            return Err(diagnostic("a swap device is 2 to 4096 pages (the first holds the swap header)", size.span()));
        }
        builder.spec.swap_pages = pages as u32;
    }
    for size in &ast.mthp {
        let bytes = evaluate_constant(size, parameters)?;
        let pages = bytes / PAGE_SIZE as i64;
        if bytes <= 0
            || bytes % PAGE_SIZE as i64 != 0
            || !(pages as u64).is_power_of_two()
            || !(2..=256).contains(&pages)
        {
            return Err(diagnostic("an mTHP size is a power of two from 8K to 1M", size.span()));
        }
        builder.spec.anon_orders |= 1 << pages.trailing_zeros();
    }
    for device in &ast.devices {
        let spec = builder.device(device)?;
        builder.devices.insert(device.name.clone(), builder.spec.devices.len() as u32);
        builder.spec.devices.push(spec);
    }
    // Thread ids: each process's main thread, then its threads in order; kernel threads last.
    for declaration in ast.threads.iter().filter(|t| !t.kernel) {
        let mm = builder.spec.mms as u32;
        builder.spec.mms += 1;
        builder.process(declaration, mm)?;
    }
    for declaration in ast.threads.iter().filter(|t| t.kernel) {
        let id = builder.thread(&declaration.name, None, true, declaration.span)?;
        let mut variables = BTreeMap::new();
        let program = builder.statements(&declaration.body, None, &mut variables, None)?;
        let thread = &mut builder.spec.threads[id as usize];
        (thread.program, thread.registers) = (program, variables.len());
    }
    Ok(builder.spec)
}

struct Builder<'a> {
    source: &'a str,
    /// The most registers any scope of the current process needs.
    registers_max: usize,
    events: Vec<String>,
    parameters: &'a BTreeMap<String, i64>,
    files: BTreeMap<String, u32>,
    devices: BTreeMap<String, u32>,
    spec: SystemSpec,
}

impl Builder<'_> {
    fn location(&self, span: Span) -> SourceLocation {
        let d = Diagnostic::new("", span.0, span.1);
        let (line, column) = d.line_column(self.source);
        SourceLocation { line: line as u32, column: column as u32 }
    }

    fn device(&self, device: &DeviceDecl) -> Result<DeviceSpec, Diagnostic> {
        let constant = |expr: &Option<Expr>| expr.as_ref().map(|e| evaluate_constant(e, self.parameters)).transpose();
        let (method, span) = (&device.method.0, device.method.1);
        let kind = match method.as_str() {
            "insert_page" | "insert_pages" => {
                if device.size.is_some() || device.fill.is_some() {
                    return Err(diagnostic("`size` and `fill` are for `remap_pfn` devices", span));
                }
                let order = constant(&device.order)?.unwrap_or(0);
                if !(0..=9).contains(&order) || (order > 0 && !device.compound) {
                    return Err(diagnostic("`order` is 0 to 9, and above 0 only for a `compound` allocation", span)
                        .with_note("a high-order allocation without __GFP_COMP has tail pages of refcount 0, which vm_insert_page() refuses"));
                }
                DeviceKind::InsertPage {
                    order: order as u8,
                    compound: device.compound,
                    batched: method == "insert_pages",
                }
            }
            "remap_pfn" => {
                if device.compound || device.order.is_some() {
                    return Err(diagnostic("`compound` and `order` are for `insert_page` devices", span));
                }
                let size =
                    constant(&device.size)?.ok_or_else(|| diagnostic("a `remap_pfn` device needs `size`", span))?;
                let pages = (size as u64).div_ceil(PAGE_SIZE);
                if size <= 0 || pages > 512 {
                    return Err(diagnostic("a device's memory is 1 to 512 pages", span));
                }
                DeviceKind::RemapPfn { base: 0, pages }
            }
            _ => {
                return Err(diagnostic(format!("unknown device kind `{method}`"), span)
                    .with_note("kinds: insert_page, insert_pages, remap_pfn"))
            }
        };
        let fill = constant(&device.fill)?.unwrap_or(0);
        let fill = u8::try_from(fill).map_err(|_| diagnostic("a fill byte is 0 to 255", span))?;
        Ok(DeviceSpec { name: device.name.clone(), kind, fill })
    }

    /// A new thread with an empty program, refused past THREADS_MAX at `span` (the statement
    /// that starts it).
    fn thread(&mut self, name: &str, mm: Option<u32>, starts: bool, span: Span) -> Result<u32, Diagnostic> {
        if self.spec.threads.len() >= THREADS_MAX {
            return Err(diagnostic(
                format!("at most {THREADS_MAX} threads (processes, their threads and forks, and kernel threads)"),
                span,
            ));
        }
        let id = self.spec.threads.len() as u32;
        self.spec.threads.push(ThreadSpec { name: name.to_string(), mm, program: Vec::new(), starts, registers: 0 });
        Ok(id)
    }

    fn process(&mut self, declaration: &ThreadDecl, mm: u32) -> Result<(), Diagnostic> {
        self.registers_max = 0;
        let main = self.thread(&declaration.name, Some(mm), true, declaration.span)? as usize;
        let mut variables = BTreeMap::new();
        let mut children = Vec::new();
        let mut program = self.statements(&declaration.body, Some(mm), &mut variables, Some(&mut children))?;
        if !children.is_empty() {
            program.push(Instruction::Join { threads: children });
        }
        program.push(Instruction::Exit);
        self.spec.threads[main].program = program;
        // Registers are per process: every thread of it sees the same numbering.
        let registers = variables.len().max(self.registers_max).max(1);
        for thread in &mut self.spec.threads[main..] {
            thread.registers = registers;
        }
        Ok(())
    }

    fn statements(
        &mut self,
        body: &[Statement],
        mm: Option<u32>,
        variables: &mut BTreeMap<String, u16>,
        mut children: Option<&mut Vec<u32>>,
    ) -> Result<Vec<Instruction>, Diagnostic> {
        let mut program = Vec::new();
        for statement in body {
            match statement {
                Statement::Thread { name, body, span } => {
                    let Some(children) = children.as_deref_mut() else {
                        return Err(diagnostic("threads are started from a process's main body", *span));
                    };
                    let id = self.thread(name, mm, false, *span)?;
                    // A thread sees the variables defined before it starts (a copy of the
                    // registers); what it defines stays its own.
                    let mut scoped = variables.clone();
                    let thread_program = self.statements(body, mm, &mut scoped, None)?;
                    self.registers_max = self.registers_max.max(scoped.len());
                    self.spec.threads[id as usize].program = thread_program;
                    children.push(id);
                    program.push(Instruction::Spawn { thread: id });
                }
                Statement::Fork { name, body, span } => {
                    let (Some(children), Some(_)) = (children.as_deref_mut(), mm) else {
                        return Err(diagnostic("fork is called from a process's main body", *span));
                    };
                    let child_mm = self.spec.mms as u32;
                    self.spec.mms += 1;
                    let id = self.thread(name, Some(child_mm), false, *span)?;
                    // The child sees the variables defined before the fork (a copy).
                    let mut scoped = variables.clone();
                    let mut grandchildren = Vec::new();
                    let mut child_program =
                        self.statements(body, Some(child_mm), &mut scoped, Some(&mut grandchildren))?;
                    self.registers_max = self.registers_max.max(scoped.len());
                    if !grandchildren.is_empty() {
                        child_program.push(Instruction::Join { threads: grandchildren });
                    }
                    child_program.push(Instruction::Exit);
                    self.spec.threads[id as usize].program = child_program;
                    children.push(id);
                    program.push(Instruction::Fork { dst: None, child: id, child_mm });
                }
                Statement::Event { signal, name, span } => {
                    let index = match self.events.iter().position(|e| e == name) {
                        Some(index) => index,
                        None => {
                            self.events.push(name.clone());
                            self.events.len() - 1
                        }
                    };
                    if index >= 64 {
                        return Err(diagnostic("at most 64 events", *span));
                    }
                    let event = index as u8;
                    program.push(if *signal {
                        Instruction::Signal { event }
                    } else {
                        Instruction::WaitEvent { event }
                    });
                }
                Statement::Assert { left, comparison, right, text, span } => {
                    let left = evaluate(left, self.parameters, variables)?;
                    let right = evaluate(right, self.parameters, variables)?;
                    program.push(Instruction::Assert {
                        left,
                        comparison: *comparison,
                        right,
                        text: text.clone(),
                        location: self.location(*span),
                    });
                }
                Statement::AssertLoad { call, comparison, expect, span } => {
                    if *comparison != Comparison::Equal {
                        return Err(diagnostic(
                            "a load is compared with `==` to the byte every address must hold",
                            *span,
                        ));
                    }
                    self.require_process(mm, call)?;
                    let [address, length] = self.arguments::<2>(call, "load(address, length)")?;
                    let address = evaluate(address, self.parameters, variables)?;
                    let length = self.length(length, variables)?;
                    let expect = self.byte(expect, variables)?;
                    program.push(Instruction::Load { address, length, expect, location: self.location(*span) });
                }
                Statement::Call { destination, call } => {
                    if let Some((name, span)) = destination {
                        if variables.len() >= VARIABLES_MAX && !variables.contains_key(name) {
                            return Err(diagnostic(format!("at most {VARIABLES_MAX} variables in a process"), *span));
                        }
                    }
                    let instruction = self.call(call, mm, variables, destination.as_ref().map(|d| d.0.as_str()))?;
                    program.push(instruction);
                }
            }
        }
        Ok(program)
    }

    fn require_process(&self, mm: Option<u32>, call: &Call) -> Result<u32, Diagnostic> {
        mm.ok_or_else(|| {
            diagnostic(format!("`{}` needs a process (kernel threads have no address space)", call.name), call.span)
        })
    }

    fn arguments<'c, const N: usize>(&self, call: &'c Call, usage: &str) -> Result<[&'c Expr; N], Diagnostic> {
        if call.arguments.len() != N {
            return Err(diagnostic(format!("`{}` takes {N} argument(s): {usage}", call.name), call.span));
        }
        Ok(std::array::from_fn(|i| &call.arguments[i]))
    }

    fn length(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u64, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        if value <= 0 {
            return Err(diagnostic(format!("a length must be positive (this is {value})"), expr.span()));
        }
        if value > SIZE_BYTES_MAX {
            return Err(diagnostic(format!("a length is at most 1024G (1 TiB; this is {value} bytes)"), expr.span()));
        }
        Ok(value as u64)
    }

    /// The length of a syscall that only names an address range (mmap, munmap, mremap,
    /// mprotect, madvise, UFFDIO_REGISTER) or that the kernel clamps (pread: MAX_RW_COUNT): any
    /// positive value, as the kernel checks it itself
    /// (TASK_SIZE, wrapping) and the model's walks cost what exists in the range, not its size.
    fn range_length(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u64, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        if value <= 0 {
            return Err(diagnostic(format!("a length must be positive (this is {value})"), expr.span()));
        }
        Ok(value as u64)
    }

    fn byte(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u8, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        u8::try_from(value).map_err(|_| diagnostic(format!("a byte is 0 to 255 (this is {value})"), expr.span()))
    }

    fn flags(&self, expr: &Expr, known: &[(&str, u32)]) -> Result<u32, Diagnostic> {
        let names: Vec<(String, Span)> = match expr {
            Expr::Flags(flags, _) => flags.clone(),
            Expr::Name(name, span) => vec![(name.clone(), *span)],
            _ => return Err(diagnostic("expected flags", expr.span())),
        };
        let mut value = 0;
        for (name, span) in names {
            let Some((_, bit)) = known.iter().find(|(n, _)| *n == name) else {
                let all: Vec<&str> = known.iter().map(|k| k.0).collect();
                return Err(diagnostic(format!("unknown flag `{name}`"), span)
                    .with_note(format!("flags here: {}", all.join(", "))));
            };
            value |= bit;
        }
        Ok(value)
    }

    fn name_argument<'e>(&self, expr: &'e Expr, what: &str) -> Result<(&'e str, Span), Diagnostic> {
        match expr {
            Expr::Name(name, span) => Ok((name, *span)),
            _ => Err(diagnostic(format!("expected {what}"), expr.span())),
        }
    }

    /// mmap's fourth argument: a device declared with `device` or a file declared with `file`.
    fn mapped_object(&self, expr: &Expr) -> Result<(Option<u32>, Option<u32>), Diagnostic> {
        let (name, span) = self.name_argument(expr, "a device or a file (declared with `device` or `file`)")?;
        match (self.devices.get(name), self.files.get(name)) {
            (Some(&device), None) => Ok((Some(device), None)),
            (None, Some(&file)) => Ok((None, Some(file))),
            (Some(_), Some(_)) => Err(diagnostic(format!("`{name}` names both a device and a file"), span)),
            (None, None) => Err(diagnostic(format!("unknown device or file `{name}`"), span)),
        }
    }

    fn call(
        &mut self,
        call: &Call,
        mm: Option<u32>,
        variables: &mut BTreeMap<String, u16>,
        destination: Option<&str>,
    ) -> Result<Instruction, Diagnostic> {
        let define = |variables: &mut BTreeMap<String, u16>| -> Option<u16> {
            let next = variables.len() as u16;
            destination.map(|name| *variables.entry(name.to_string()).or_insert(next))
        };
        if destination.is_some() && matches!(call.name.as_str(), "store" | "reclaim" | "split_huge_pages") {
            return Err(diagnostic(format!("`{}` returns nothing to assign", call.name), call.span));
        }
        let instruction = match call.name.as_str() {
            "mmap" => {
                self.require_process(mm, call)?;
                let (device, file) = match call.arguments.get(3) {
                    Some(expr) => self.mapped_object(expr)?,
                    None => (None, None),
                };
                let arguments =
                    Call { arguments: call.arguments[..call.arguments.len().min(3)].to_vec(), ..call.clone() };
                let usage = "mmap(length, read|write, private|anonymous) or mmap(length, read|write, private|shared, DEVICE or FILE)";
                if call.arguments.len() > 4 {
                    return Err(diagnostic(format!("`mmap` takes 3 or 4 arguments: {usage}"), call.span));
                }
                let call = &arguments;
                let [length, protection, flags] = self.arguments::<3>(call, usage)?;
                let length = self.range_length(length, variables)?;
                let prot =
                    self.flags(protection, &[("read", prot::PROT_READ), ("write", prot::PROT_WRITE), ("none", 0)])?;
                let flags_value = self.flags(
                    flags,
                    &[("private", map::MAP_PRIVATE), ("shared", map::MAP_SHARED), ("anonymous", map::MAP_ANONYMOUS)],
                )?;
                let what = if device.is_some() { "a device mapping" } else { "a file mapping" };
                let wanted = match device.or(file) {
                    Some(_) if flags_value == map::MAP_SHARED || flags_value == map::MAP_PRIVATE => flags_value,
                    Some(_) => return Err(diagnostic(format!("{what} is `private` or `shared`"), flags.span())),
                    None => map::MAP_PRIVATE | map::MAP_ANONYMOUS,
                };
                if flags_value != wanted {
                    return Err(diagnostic("not modelled yet: only private|anonymous mappings", flags.span()));
                }
                let Some(dst) = define(variables) else {
                    return Err(diagnostic("mmap's address must be kept: `buf = mmap(...)`", call.span));
                };
                Instruction::Mmap { dst, length, prot, flags: flags_value, device, file }
            }
            "mremap" => {
                self.require_process(mm, call)?;
                let usage = "mremap(address, old_length, new_length, none|maymove|maymove|fixed [, new_address])";
                if !(4..=5).contains(&call.arguments.len()) {
                    return Err(diagnostic(format!("`mremap` takes 4 or 5 arguments: {usage}"), call.span));
                }
                let address = evaluate(&call.arguments[0], self.parameters, variables)?;
                let old_length = self.range_length(&call.arguments[1], variables)?;
                let new_length = self.range_length(&call.arguments[2], variables)?;
                let flags = self.flags(
                    &call.arguments[3],
                    &[("none", 0), ("maymove", mremap::MREMAP_MAYMOVE), ("fixed", mremap::MREMAP_FIXED)],
                )?;
                let new_address = match call.arguments.get(4) {
                    Some(expr) => evaluate(expr, self.parameters, variables)?,
                    None => Operand::Constant(0),
                };
                Instruction::Mremap { dst: define(variables), address, old_length, new_length, flags, new_address }
            }
            "mprotect" => {
                self.require_process(mm, call)?;
                let [address, length, protection] =
                    self.arguments::<3>(call, "mprotect(address, length, read|write|none)")?;
                let address = evaluate(address, self.parameters, variables)?;
                let length = self.range_length(length, variables)?;
                let prot =
                    self.flags(protection, &[("read", prot::PROT_READ), ("write", prot::PROT_WRITE), ("none", 0)])?;
                Instruction::Mprotect { dst: define(variables), address, length, prot }
            }
            "munmap" => {
                self.require_process(mm, call)?;
                let [address, length] = self.arguments::<2>(call, "munmap(address, length)")?;
                let address = evaluate(address, self.parameters, variables)?;
                let length = self.range_length(length, variables)?;
                Instruction::Munmap { dst: define(variables), address, length }
            }
            "store" => {
                self.require_process(mm, call)?;
                let [address, length, byte] = self.arguments::<3>(call, "store(address, length, byte)")?;
                let address = evaluate(address, self.parameters, variables)?;
                Instruction::Store {
                    address,
                    length: self.length(length, variables)?,
                    byte: self.byte(byte, variables)?,
                    location: self.location(call.span),
                }
            }
            "madvise" => {
                self.require_process(mm, call)?;
                let [address, length, advice] = self.arguments::<3>(
                    call,
                    "madvise(address, length, free|dontneed|cold|pageout|hugepage|populate_read|populate_write)",
                )?;
                let address = evaluate(address, self.parameters, variables)?;
                let length = self.range_length(length, variables)?;
                let (name, span) = self.name_argument(
                    advice,
                    "an advice: free, dontneed, cold, pageout, hugepage, populate_read, populate_write",
                )?;
                let advice = match name {
                    "free" => Advice::Free,
                    "dontneed" => Advice::DontNeed,
                    "cold" => Advice::Cold,
                    "pageout" => Advice::PageOut,
                    "hugepage" => Advice::HugePage,
                    "populate_read" => Advice::PopulateRead,
                    "populate_write" => Advice::PopulateWrite,
                    _ => {
                        return Err(diagnostic(format!("unknown advice `{name}`"), span).with_note(
                            "advice: free, dontneed, cold, pageout, hugepage, populate_read, populate_write",
                        ))
                    }
                };
                Instruction::Madvise { dst: define(variables), address, length, advice }
            }
            "pread" => {
                self.require_process(mm, call)?;
                let [file, buffer, length, offset, mode] =
                    self.arguments::<5>(call, "pread(file, buffer, length, offset, direct|buffered)")?;
                let (file_name, file_span) = self.name_argument(file, "a file declared with `file`")?;
                let Some(&file) = self.files.get(file_name) else {
                    return Err(diagnostic(format!("unknown file `{file_name}`"), file_span));
                };
                let buffer = evaluate(buffer, self.parameters, variables)?;
                let length = self.range_length(length, variables)?;
                let offset = evaluate_constant_in(offset, self.parameters, variables)?;
                let (mode_name, mode_span) = self.name_argument(mode, "`direct` or `buffered`")?;
                let direct = match mode_name {
                    "direct" => true,
                    "buffered" => false,
                    _ => return Err(diagnostic("expected `direct` (O_DIRECT) or `buffered`", mode_span)),
                };
                Instruction::Pread { dst: define(variables), file, buffer, length, offset: offset as u64, direct }
            }
            "ftruncate" => {
                self.require_process(mm, call)?;
                let [file, length] = self.arguments::<2>(call, "ftruncate(file, length)")?;
                let (file_name, file_span) = self.name_argument(file, "a file declared with `file`")?;
                let Some(&file) = self.files.get(file_name) else {
                    return Err(diagnostic(format!("unknown file `{file_name}`"), file_span));
                };
                let value = evaluate_constant_in(length, self.parameters, variables)?;
                if value > SIZE_BYTES_MAX {
                    return Err(diagnostic(
                        format!("a file is at most 1024G (1 TiB; this is {value} bytes)"),
                        length.span(),
                    ));
                }
                if value < 0 || value % 4096 != 0 {
                    return Err(diagnostic(
                        format!("not modelled yet: a truncation to {value} bytes (a multiple of 4K, to shrink)"),
                        length.span(),
                    ));
                }
                Instruction::Ftruncate { dst: define(variables), file, length: value as u64 }
            }
            "userfaultfd" => {
                self.require_process(mm, call)?;
                self.arguments::<0>(call, "userfaultfd()")?;
                Instruction::Userfaultfd { dst: define(variables) }
            }
            "uffdio_api" => {
                self.require_process(mm, call)?;
                let (uffd, api) = match call.arguments.as_slice() {
                    [uffd] => (uffd, UFFD_API),
                    [uffd, api] => (uffd, evaluate_constant_in(api, self.parameters, variables)? as u64),
                    _ => {
                        return Err(diagnostic("expected uffdio_api(uffd) or uffdio_api(uffd, api number)", call.span))
                    }
                };
                let uffd = evaluate(uffd, self.parameters, variables)?;
                Instruction::UffdioApi { dst: define(variables), uffd, api }
            }
            "uffdio_register" => {
                self.require_process(mm, call)?;
                let [uffd, address, length] =
                    self.arguments::<3>(call, "uffdio_register(uffd, address, length): missing mode")?;
                let uffd = evaluate(uffd, self.parameters, variables)?;
                let address = evaluate(address, self.parameters, variables)?;
                let length = self.range_length(length, variables)?;
                Instruction::UffdioRegister { dst: define(variables), uffd, address, length }
            }
            "uffd_read" => {
                self.require_process(mm, call)?;
                let [uffd] = self.arguments::<1>(call, "uffd_read(uffd): the address of the next page fault")?;
                let uffd = evaluate(uffd, self.parameters, variables)?;
                Instruction::UffdRead { dst: define(variables), uffd }
            }
            "uffdio_copy" => {
                self.require_process(mm, call)?;
                let [uffd, to, from, length] = self.arguments::<4>(call, "uffdio_copy(uffd, dst, src, length)")?;
                let uffd = evaluate(uffd, self.parameters, variables)?;
                let to = evaluate(to, self.parameters, variables)?;
                let from = Some(evaluate(from, self.parameters, variables)?);
                let length = self.length(length, variables)?;
                Instruction::UffdioFill { dst: define(variables), uffd, to, from, length }
            }
            "uffdio_zeropage" => {
                self.require_process(mm, call)?;
                let [uffd, to, length] = self.arguments::<3>(call, "uffdio_zeropage(uffd, dst, length)")?;
                let uffd = evaluate(uffd, self.parameters, variables)?;
                let to = evaluate(to, self.parameters, variables)?;
                let length = self.length(length, variables)?;
                Instruction::UffdioFill { dst: define(variables), uffd, to, from: None, length }
            }
            "uffdio_move" => {
                self.require_process(mm, call)?;
                let usage =
                    "uffdio_move(uffd, dst, src, length) or uffdio_move(uffd, dst, src, length, allow_src_holes)";
                let allow_src_holes = match call.arguments.get(4) {
                    Some(expr) => {
                        let (name, span) = self.name_argument(expr, "`allow_src_holes`")?;
                        if name != "allow_src_holes" {
                            return Err(diagnostic("the only UFFDIO_MOVE mode is `allow_src_holes`", span));
                        }
                        true
                    }
                    None => false,
                };
                if call.arguments.len() > 5 {
                    return Err(diagnostic(format!("`uffdio_move` takes 4 or 5 arguments: {usage}"), call.span));
                }
                let trimmed =
                    Call { arguments: call.arguments[..call.arguments.len().min(4)].to_vec(), ..call.clone() };
                let [uffd, to, from, length] = self.arguments::<4>(&trimmed, usage)?;
                let uffd = evaluate(uffd, self.parameters, variables)?;
                let to = evaluate(to, self.parameters, variables)?;
                let from = evaluate(from, self.parameters, variables)?;
                let length = self.length(length, variables)?;
                Instruction::UffdioMove { dst: define(variables), uffd, to, from, length, allow_src_holes }
            }
            "move_pages" => {
                self.require_process(mm, call)?;
                let [address] = self.arguments::<1>(call, "move_pages(address): status[0] of a status query")?;
                let address = evaluate(address, self.parameters, variables)?;
                Instruction::MovePagesStatus { dst: define(variables), address }
            }
            "pagemap" | "kpagecount" | "kpageflags" => {
                self.require_process(mm, call)?;
                let [address] =
                    self.arguments::<1>(call, "pagemap(address), kpagecount(address) or kpageflags(address)")?;
                let address = evaluate(address, self.parameters, variables)?;
                let file = match call.name.as_str() {
                    "pagemap" => ProcPageFile::Pagemap,
                    "kpagecount" => ProcPageFile::KpageCount,
                    _ => ProcPageFile::KpageFlags,
                };
                Instruction::ProcPage { dst: define(variables), address, file }
            }
            "smaps" => {
                self.require_process(mm, call)?;
                let [address, field] = self.arguments::<2>(call, "smaps(address, FIELD)")?;
                let address = evaluate(address, self.parameters, variables)?;
                let (name, span) = self.name_argument(field, "an smaps field such as Rss or Anonymous")?;
                let Some(field) = SmapsField::by_name(name) else {
                    let fields: Vec<&str> = SmapsField::ALL.iter().map(|(n, _)| *n).collect();
                    return Err(diagnostic(format!("unknown smaps field `{name}`"), span)
                        .with_note(format!("fields: {}", fields.join(", "))));
                };
                Instruction::Smaps { dst: define(variables), address, field }
            }
            "split_huge_pages" => {
                if mm.is_some() {
                    return Err(diagnostic(
                        "split_huge_pages is the debugfs file a kernel thread writes (`kthread splitter { split_huge_pages(all) }`)",
                        call.span,
                    ));
                }
                let [what] = self.arguments::<1>(call, "split_huge_pages(all)")?;
                let (name, span) = self.name_argument(what, "`all`")?;
                if name != "all" {
                    return Err(diagnostic("only `split_huge_pages(all)` (split_huge_pages_all) is modelled", span));
                }
                Instruction::SplitHugePages
            }
            "reclaim" => {
                if mm.is_some() {
                    return Err(diagnostic(
                        "reclaim runs in a kernel thread (`kthread kswapd { reclaim(all) }`)",
                        call.span,
                    ));
                }
                let [scope] = self.arguments::<1>(call, "reclaim(all)")?;
                let (scope, span) = self.name_argument(scope, "`all`")?;
                if scope != "all" {
                    return Err(diagnostic("only `reclaim(all)` is modelled", span));
                }
                Instruction::Reclaim
            }
            "load" => {
                return Err(diagnostic("a load is checked in an assertion: `assert load(buf, 4K) == 0x79`", call.span))
            }
            other => {
                return Err(diagnostic(format!("unknown call `{other}`"), call.span)
                    .with_note("calls: mmap, munmap, store, madvise, pread, reclaim; `assert load(...) == byte`"))
            }
        };
        Ok(instruction)
    }
}

/// The pagemap and kpageflags bits scenarios compare against (`PM_PRESENT`, `KPF_ANON`...).
fn proc_constant(name: &str) -> Option<i64> {
    use mmcheck_model::fs::proc::page::{kpf, PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SWAP};
    let value = match name {
        "PM_PRESENT" => PM_PRESENT,
        "PM_SWAP" => PM_SWAP,
        "PM_FILE" => PM_FILE,
        "PM_MMAP_EXCLUSIVE" => PM_MMAP_EXCLUSIVE,
        "KPF_MMAP" => kpf::MMAP,
        "KPF_ANON" => kpf::ANON,
        "KPF_SWAPCACHE" => kpf::SWAPCACHE,
        "KPF_SWAPBACKED" => kpf::SWAPBACKED,
        "KPF_COMPOUND_HEAD" => kpf::COMPOUND_HEAD,
        "KPF_COMPOUND_TAIL" => kpf::COMPOUND_TAIL,
        "KPF_THP" => kpf::THP,
        "KPF_ZERO_PAGE" => kpf::ZERO_PAGE,
        _ => return None,
    };
    Some(value as i64)
}
