//! Parser: text → AST with byte spans (the builder, `builder.rs`, makes the model's threads of it).

use crate::builder::{build_all, diagnostic, evaluate_constant};
use crate::lexer::{tokenize, Token, TokenKind};
use crate::{char_start, Diagnostic, Expectation, KernelRange, Outcome, ReachExpectation, Scenario};
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_model::patches::{KernelConfig, Patch, PATCHES};
use mmcheck_model::program::Comparison;
use mmcheck_model::{KernelVersion, ViolationKind};
use std::collections::BTreeMap;

pub(crate) type Span = (usize, usize);

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Number(i64, Span),
    Name(String, Span),
    Binary(Box<Expr>, char, Box<Expr>, Span),
    /// `a|b|c`: flag names.
    Flags(Vec<(String, Span)>, Span),
    /// `name = value`, an optional argument of a call (`reclaim(all, passes = 2)`).
    Named(String, Box<Expr>, Span),
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

    pub(crate) fn span(&self) -> Span {
        match self {
            Expr::Number(_, s)
            | Expr::Name(_, s)
            | Expr::Binary(_, _, _, s)
            | Expr::Flags(_, s)
            | Expr::Named(_, _, s) => *s,
        }
    }
}

/// An assertion's condition as written: comparisons (the left side optionally `value & mask`)
/// joined by `&&`, `||` and `!`.
#[derive(Clone, Debug)]
pub(crate) enum Cond {
    Compare { left: Expr, mask: Option<Expr>, comparison: Comparison, right: Expr },
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    /// Connectives from this node to its deepest comparison (bounded like an expression's
    /// operators: the builder and the model recurse over it).
    fn depth(&self) -> usize {
        match self {
            Cond::Compare { .. } => 0,
            Cond::Not(inner) => 1 + inner.depth(),
            Cond::And(a, b) | Cond::Or(a, b) => 1 + a.depth().max(b.depth()),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub(crate) name: String,
    pub(crate) arguments: Vec<Expr>,
    pub(crate) span: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum Statement {
    Call {
        destination: Option<(String, Span)>,
        call: Call,
    },
    Assert {
        condition: Cond,
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
    pub(crate) name: String,
    pub(crate) size: Expr,
    pub(crate) fill: Expr,
}

/// `device NAME insert_page [compound order EXPR]`, `device NAME insert_pages ...` or
/// `device NAME remap_pfn size EXPR fill EXPR`.
#[derive(Clone, Debug)]
pub(crate) struct DeviceDecl {
    pub(crate) name: String,
    pub(crate) method: (String, Span),
    pub(crate) compound: bool,
    pub(crate) order: Option<Expr>,
    pub(crate) size: Option<Expr>,
    pub(crate) fill: Option<Expr>,
}

#[derive(Clone, Debug)]
pub(crate) struct ThreadDecl {
    pub(crate) name: String,
    /// `process NAME` / `kthread NAME`, where an error about the thread points.
    pub(crate) span: Span,
    pub(crate) kernel: bool,
    pub(crate) body: Vec<Statement>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Ast {
    pub(crate) source: String,
    pub(crate) files: Vec<FileDecl>,
    pub(crate) devices: Vec<DeviceDecl>,
    /// `swap size EXPR`: the swap device's size in bytes.
    pub(crate) swap: Option<Expr>,
    /// `mthp SIZE`: an mTHP size enabled ("always") for anonymous memory.
    pub(crate) mthp: Vec<Expr>,
    pub(crate) threads: Vec<ThreadDecl>,
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
    /// `reclaim(all, passes = N)`: each pass is an instruction of the kernel thread.
    pub const RECLAIM_PASSES_MAX: usize = 16;
    /// Errors reported for one file: the parser and the builder go on after an error, line by
    /// line, up to this many.
    pub const ERRORS_MAX: usize = 20;
}

use limits::*;

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses, unary minus signs and blocks open now (at most NESTING_MAX).
    nesting: usize,
    /// The errors met so far; the parser goes on at the next line after each.
    errors: Vec<Diagnostic>,
}

/// Parsing ends early: ERRORS_MAX errors were met.
struct TooManyErrors;

/// Parses a scenario. Parameters keep their declared values; `Scenario::system` checks that
/// the scenario builds. The first error, if any ([`parse_all`] has every one).
pub fn parse(source: &str) -> Result<Scenario, Diagnostic> {
    parse_all(source).map_err(|mut errors| errors.swap_remove(0))
}

/// Parses a scenario and reports every error (up to ERRORS_MAX) in the order of the file:
/// after an error the parser goes on at the next line, and the builder at the next statement.
pub fn parse_all(source: &str) -> Result<Scenario, Vec<Diagnostic>> {
    if source.len() > SOURCE_BYTES_MAX {
        return Err(vec![Diagnostic::new(
            format!("a scenario is at most {} KiB (this is {} bytes)", SOURCE_BYTES_MAX >> 10, source.len()),
            char_start(source, SOURCE_BYTES_MAX),
            source.len(),
        )]);
    }
    let tokens = tokenize(source).map_err(|error| vec![error])?;
    let mut parser = Parser { source, tokens, at: 0, nesting: 0, errors: Vec::new() };
    let scenario = parser.scenario();
    let mut errors = parser.errors;
    if let Err(error) = &scenario {
        errors.push(error.clone());
    }
    // Build once with the declared parameters so that errors show now, with their place (what
    // did parse is built too: its errors join the parser's, in the order of the file).
    if let Ok(scenario) = &scenario {
        if let Err(built) = build_all(&scenario.ast, &scenario.parameters) {
            errors.extend(built);
            errors.sort_by_key(|e| e.start);
        }
    }
    match scenario {
        Ok(scenario) if errors.is_empty() => Ok(scenario),
        _ => Err(errors),
    }
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

    /// The scenario: its header line (an error there ends the parse), then its items, each
    /// error recorded and the parse going on at the next line. An error of the header, or the
    /// note that there are too many, ends it.
    fn scenario(&mut self) -> Result<Scenario, Diagnostic> {
        let mut scenario = self.header()?;
        while *self.peek() != TokenKind::End {
            let (start, nesting) = (self.at, self.nesting);
            if let Err(error) = self.item(&mut scenario) {
                if let Err(TooManyErrors) = self.recover(error, start, nesting) {
                    return Err(self.too_many());
                }
            }
        }
        Ok(scenario)
    }

    /// After an error: record it, and skip to the next line (a block opened on the way is
    /// skipped whole, a `}` closing the enclosing one is left to it), having moved past at
    /// least the token the construct started at.
    fn recover(&mut self, error: Diagnostic, start: usize, nesting: usize) -> Result<(), TooManyErrors> {
        // Past ERRORS_MAX, `error` is only the enclosing block ending the parse.
        if self.errors.len() >= ERRORS_MAX {
            return Err(TooManyErrors);
        }
        self.errors.push(error);
        if self.errors.len() >= ERRORS_MAX {
            return Err(TooManyErrors);
        }
        self.nesting = nesting;
        if self.at == start && *self.peek() != TokenKind::End {
            self.advance();
        }
        let mut depth = 0usize;
        loop {
            match self.peek() {
                TokenKind::End => return Ok(()),
                TokenKind::Newline if depth == 0 => {
                    self.skip_newlines();
                    return Ok(());
                }
                TokenKind::RightBrace if depth == 0 => return Ok(()),
                TokenKind::RightBrace => depth -= 1,
                TokenKind::LeftBrace => depth += 1,
                _ => {}
            }
            self.advance();
        }
    }

    /// The last error reported when there are too many: where the parse stopped.
    fn too_many(&self) -> Diagnostic {
        let token = self.token();
        let message = format!("more errors may follow: the first {ERRORS_MAX} are reported");
        Diagnostic::new(message, token.start, token.end.max(token.start + 1))
    }

    /// `scenario NAME ["TITLE"]`, the first line.
    fn header(&mut self) -> Result<Scenario, Diagnostic> {
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
        Ok(Scenario {
            name,
            title,
            references: Vec::new(),
            tags: Vec::new(),
            parameters: BTreeMap::new(),
            expectations: Vec::new(),
            reach: Vec::new(),
            ast: Ast { source: self.source.to_string(), ..Ast::default() },
        })
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
            "param" => self.parameter(scenario)?,
            "file" => {
                if scenario.ast.files.len() >= FILES_MAX {
                    return Err(diagnostic(format!("at most {FILES_MAX} files"), span));
                }
                let file = self.file()?;
                scenario.ast.files.push(file);
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
            "expect" => match self.peek() {
                TokenKind::Identifier(word) if word == "reach" || word == "unreached" => {
                    let reach = self.reach_expectation()?;
                    scenario.reach.push(reach);
                }
                _ => {
                    let expectation = self.expectation()?;
                    scenario.expectations.push(expectation);
                }
            },
            _ => {
                return Err(Diagnostic::new(format!("unknown item `{word}`"), span.0, span.1).with_note(
                    "a scenario has `param`, `file`, `device`, `swap`, `mthp`, `process`, `kthread`, `expect`, `ref` and `tag` lines",
                ))
            }
        }
        self.end_of_statement()
    }

    /// `param NAME = VALUE`: a constant, declared once.
    fn parameter(&mut self, scenario: &mut Scenario) -> Result<(), Diagnostic> {
        let (name, name_span) = self.identifier("the parameter's name")?;
        self.expect(TokenKind::Assign, "`=`")?;
        let value = self.expression()?;
        let value = evaluate_constant(&value, &scenario.parameters)?;
        if scenario.parameters.insert(name.clone(), value).is_some() {
            return Err(Diagnostic::new(format!("parameter `{name}` is declared twice"), name_span.0, name_span.1));
        }
        Ok(())
    }

    /// `file NAME size SIZE fill BYTE`.
    fn file(&mut self) -> Result<FileDecl, Diagnostic> {
        let (name, _) = self.identifier("the file's name")?;
        self.keyword("size")?;
        let size = self.expression()?;
        self.keyword("fill")?;
        let fill = self.expression()?;
        Ok(FileDecl { name, size, fill })
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
        let kernels = self.kernel_range()?;
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
        let outcome = self.outcome()?;
        Ok(Expectation { kernels, patches, memory_model, outcome, line })
    }

    /// `reach FUNCTION: LABEL` or `unreached FUNCTION: LABEL` after `expect`: the label is the
    /// rest of the line, its words joined by one space (`do_anonymous_page: set_pte_at zero
    /// page`), or one string for a label with other characters (`"madvise_vma_behavior: -EINVAL"`).
    fn reach_expectation(&mut self) -> Result<ReachExpectation, Diagnostic> {
        let line = self.source[..self.token().start].matches('\n').count() + 1;
        let (word, _) = self.identifier("`reach` or `unreached`")?;
        let (function, label) = if let TokenKind::String(text) = self.peek().clone() {
            let token = self.advance();
            let Some((function, label)) = text.split_once(": ") else {
                return Err(Diagnostic::new("a step label is `function: label`", token.start, token.end));
            };
            (function.to_string(), label.to_string())
        } else {
            let (function, _) = self.identifier("a kernel function")?;
            self.expect(TokenKind::Colon, "`:` after the function")?;
            let mut words = Vec::new();
            while let TokenKind::Identifier(word) = self.peek().clone() {
                self.advance();
                words.push(word);
            }
            if words.is_empty() {
                return self.error("expected the step's label (or a quoted \"function: label\")");
            }
            (function, words.join(" "))
        };
        if !matches!(self.peek(), TokenKind::Newline | TokenKind::End) {
            return self.error("expected the end of the label (quote a label with other characters)");
        }
        Ok(ReachExpectation { function, label, reached: word == "reach", line })
    }

    /// `5.18`, `< 5.18` or `>= 5.18` after `kernel`.
    fn kernel_range(&mut self) -> Result<KernelRange, Diagnostic> {
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
        match comparison {
            Some("<") => Ok(KernelRange::Below(version)),
            Some(">=") => Ok(KernelRange::AtLeast(version)),
            None | Some("==") => Ok(KernelRange::Exactly(version)),
            Some(other) => {
                Err(Diagnostic::new(format!("use `<`, `>=` or an exact version, not `{other}`"), span.0, span.1))
            }
        }
    }

    /// `verified` or `violation KIND` after an expectation's colon.
    fn outcome(&mut self) -> Result<Outcome, Diagnostic> {
        let (word, word_span) = self.identifier("`verified` or `violation KIND`")?;
        match word.as_str() {
            "verified" => Ok(Outcome::Verified),
            "violation" => {
                let (kind, kind_span) = self.identifier("a violation kind")?;
                ViolationKind::parse(&kind).map(Outcome::Violation).ok_or_else(|| {
                    let kinds: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.name()).collect();
                    Diagnostic::new(format!("unknown violation kind `{kind}`"), kind_span.0, kind_span.1)
                        .with_note(format!("kinds: {}", kinds.join(", ")))
                })
            }
            _ => Err(Diagnostic::new(
                format!("expected `verified` or `violation KIND`, found `{word}`"),
                word_span.0,
                word_span.1,
            )),
        }
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
        let open = self.token().start;
        self.expect(TokenKind::LeftBrace, "`{`")?;
        self.skip_newlines();
        let mut body = Vec::new();
        while *self.peek() != TokenKind::RightBrace {
            if *self.peek() == TokenKind::End {
                // Reported at the brace: the end of the file says nothing of which block.
                return Err(Diagnostic::new("this `{` is never closed", open, open + 1)
                    .with_note("the file ends before the block's `}`"));
            }
            let (start, nesting) = (self.at, self.nesting);
            match self.statement().and_then(|statement| self.end_of_statement().map(|()| statement)) {
                Ok(statement) => body.push(statement),
                Err(error) => self.recover(error, start, nesting).map_err(|TooManyErrors| self.too_many())?,
            }
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
        let first = self.token().start;
        let condition = self.condition()?;
        let end = self.tokens[self.at - 1].end;
        let text = self.source[first..end].to_string();
        Ok(Statement::Assert { condition, text, span: (start, end) })
    }

    /// `a || b`: left-deep, its depth bounded.
    fn condition(&mut self) -> Result<Cond, Diagnostic> {
        let mut left = self.conjunction()?;
        while *self.peek() == TokenKind::OrOr {
            let operator = self.advance();
            let right = self.conjunction()?;
            left = connective(left, right, Cond::Or, &operator)?;
        }
        Ok(left)
    }

    /// `a && b`, binding tighter than `||`.
    fn conjunction(&mut self) -> Result<Cond, Diagnostic> {
        let mut left = self.negation()?;
        while *self.peek() == TokenKind::AndAnd {
            let operator = self.advance();
            let right = self.negation()?;
            left = connective(left, right, Cond::And, &operator)?;
        }
        Ok(left)
    }

    /// `!a`, `(condition)` or a comparison. A `(` may open either a condition or the value of
    /// a comparison (`(a + b) == c`): the comparison is tried first.
    fn negation(&mut self) -> Result<Cond, Diagnostic> {
        match self.peek() {
            TokenKind::Bang => {
                self.enter()?;
                self.advance();
                let inner = self.negation()?;
                self.leave();
                if inner.depth() >= EXPRESSION_DEPTH_MAX {
                    return self
                        .error(format!("a condition is at most {EXPRESSION_DEPTH_MAX} `&&`, `||` and `!` deep"));
                }
                Ok(Cond::Not(Box::new(inner)))
            }
            TokenKind::LeftParen => {
                let (at, nesting) = (self.at, self.nesting);
                if let Ok(compare) = self.compare() {
                    return Ok(compare);
                }
                (self.at, self.nesting) = (at, nesting);
                self.enter()?;
                self.advance();
                let inner = self.condition()?;
                self.expect(TokenKind::RightParen, "`)`")?;
                self.leave();
                Ok(inner)
            }
            _ => self.compare(),
        }
    }

    /// `value [& mask] op value`.
    fn compare(&mut self) -> Result<Cond, Diagnostic> {
        let left = self.expression()?;
        let mask = match self.peek() {
            TokenKind::Amp => {
                self.advance();
                Some(self.expression()?)
            }
            _ => None,
        };
        let comparison = self.comparison()?;
        let right = self.expression()?;
        Ok(Cond::Compare { left, mask, comparison, right })
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
        if let (TokenKind::Identifier(name), Some(TokenKind::Assign)) =
            (self.peek().clone(), self.tokens.get(self.at + 1).map(|t| &t.kind))
        {
            let start = self.token().start;
            self.advance();
            self.advance();
            let value = self.expression()?;
            let span = (start, value.span().1);
            return Ok(Expr::Named(name, Box::new(value), span));
        }
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

/// `left operator right` (`&&` or `||`), refused at the operator when the tree would get deeper
/// than EXPRESSION_DEPTH_MAX.
fn connective(
    left: Cond,
    right: Cond,
    join: fn(Box<Cond>, Box<Cond>) -> Cond,
    operator: &Token,
) -> Result<Cond, Diagnostic> {
    if left.depth().max(right.depth()) >= EXPRESSION_DEPTH_MAX {
        let message = format!("a condition is at most {EXPRESSION_DEPTH_MAX} `&&`, `||` and `!` deep");
        return Err(Diagnostic::new(message, operator.start, operator.end));
    }
    Ok(join(Box::new(left), Box::new(right)))
}
