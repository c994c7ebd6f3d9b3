//! Tokens to [`LitmusTest`]: the initial state, the threads, then the final clauses
//! (`locations`, `filter`, the condition). Statements and expressions are in
//! [`super::code`]; this file holds the token cursor they share.

use super::lexer::{thread_index, tokenize, Token, TokenKind};
use super::preamble::preamble;
use super::{
    Atom, Condition, ConditionKind, InitEntry, InitValue, LitmusError, LitmusTest, Location, Param, Position, Prop,
    Span, ThreadDecl, Value,
};

/// Deeper nesting of parentheses, blocks or negations is refused rather than risking the
/// stack on hostile input; real tests nest a handful of levels. At 50 the parser fits in 1 MiB
/// of stack in a debug build (half the default for a spawned thread), which a test checks.
const MAXIMUM_DEPTH: usize = 50;

/// Binary operators (`+`, `&&`, `/\`...) open at once in the expression or condition being
/// parsed: a chain `a + b + c` is a left-deep tree as deep as it is long, which the compiler and
/// the checker recurse over, so a tree is at most MAXIMUM_DEPTH + OPERATORS_MAX deep.
pub(crate) const OPERATORS_MAX: usize = 200;

pub(super) struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Where the last consumed token ended, for the spans of nodes.
    last_end: Position,
    depth: usize,
    /// Binary operators whose right operand is being parsed or whose chain continues.
    operators: usize,
}

/// Parses a C litmus test. Never panics: any input gives a test or an error.
pub fn parse(source: &str) -> Result<LitmusTest, LitmusError> {
    let (mut test, body_start, body_position) = preamble(source)?;
    let tokens = tokenize(source, body_start, body_position)?;
    let mut parser = Parser { tokens, at: 0, last_end: body_position, depth: 0, operators: 0 };
    test.init = parser.init_block()?;
    test.threads = parser.threads()?;
    (test.locations, test.filter) = parser.final_clauses()?;
    test.condition = parser.condition()?;
    if parser.peek() != &TokenKind::End {
        return parser.error("expected the end of the test after the condition");
    }
    Ok(test)
}

/// The token cursor, shared with the code parser.
impl Parser {
    pub(super) fn peek(&self) -> &TokenKind {
        &self.tokens[self.at].kind
    }

    /// The kind of the token `ahead` places on (the last token, `End`, repeats).
    pub(super) fn peek_ahead(&self, ahead: usize) -> &TokenKind {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].kind
    }

    pub(super) fn start(&self) -> Position {
        self.tokens[self.at].span.start
    }

    /// The span from `start` to the end of the last consumed token.
    pub(super) fn span_from(&self, start: Position) -> Span {
        Span { start, end: self.last_end }
    }

    pub(super) fn advance(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
            self.last_end = token.span.end;
        }
        token
    }

    pub(super) fn error<T>(&self, message: impl Into<String>) -> Result<T, LitmusError> {
        Err(LitmusError::at(self.start(), message))
    }

    pub(super) fn at_punctuation(&self, punctuation: &str) -> bool {
        matches!(self.peek(), TokenKind::Punctuation(p) if *p == punctuation)
    }

    pub(super) fn at_word(&self, word: &str) -> bool {
        matches!(self.peek(), TokenKind::Identifier(name) if name == word)
    }

    /// Consumes `punctuation` if it comes next.
    pub(super) fn eat(&mut self, punctuation: &str) -> bool {
        let found = self.at_punctuation(punctuation);
        if found {
            self.advance();
        }
        found
    }

    pub(super) fn expect(&mut self, punctuation: &str) -> Result<(), LitmusError> {
        if self.eat(punctuation) {
            return Ok(());
        }
        self.error(format!("expected `{punctuation}`, found {}", self.describe()))
    }

    pub(super) fn identifier(&mut self, what: &str) -> Result<String, LitmusError> {
        if let TokenKind::Identifier(name) = self.peek().clone() {
            self.advance();
            return Ok(name);
        }
        self.error(format!("expected {what}, found {}", self.describe()))
    }

    /// The next token, for error messages.
    pub(super) fn describe(&self) -> String {
        match self.peek() {
            TokenKind::Identifier(name) => format!("`{name}`"),
            TokenKind::Integer(value) => format!("`{value}`"),
            TokenKind::Punctuation(punctuation) => format!("`{punctuation}`"),
            TokenKind::End => "the end of the file".to_string(),
        }
    }

    /// One more binary operator in the current chain (see [`OPERATORS_MAX`]); the chain's
    /// parser gives them back with [`Parser::operators_end`] when it ends.
    pub(super) fn operator(&mut self) -> Result<(), LitmusError> {
        if self.operators >= OPERATORS_MAX {
            return self.error(format!("more than {OPERATORS_MAX} binary operators in one expression"));
        }
        self.operators += 1;
        Ok(())
    }

    pub(super) fn operators(&self) -> usize {
        self.operators
    }

    pub(super) fn operators_end(&mut self, before: usize) {
        self.operators = before;
    }

    /// Runs `parse` one nesting level deeper, refusing to go past [`MAXIMUM_DEPTH`].
    pub(super) fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, LitmusError>,
    ) -> Result<T, LitmusError> {
        if self.depth >= MAXIMUM_DEPTH {
            return self.error(format!("nesting deeper than {MAXIMUM_DEPTH} levels"));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }
}

/// The initial state and the threads.
impl Parser {
    /// `{ entry; entry; ... }`, the last `;` optional.
    fn init_block(&mut self) -> Result<Vec<InitEntry>, LitmusError> {
        self.expect("{")?;
        let mut entries = Vec::new();
        while !self.eat("}") {
            if self.eat(";") {
                continue;
            }
            entries.push(self.init_entry()?);
            if !self.at_punctuation("}") {
                self.expect(";")?;
            }
        }
        Ok(entries)
    }

    /// `x=1`, `0:r1=x`, `int *p=&y`, `atomic_t v = ATOMIC_INIT(1)`, `spinlock_t s`.
    fn init_entry(&mut self) -> Result<InitEntry, LitmusError> {
        let start = self.start();
        let mut declared_type = None;
        if self.at_type() {
            let mut base = self.base_type()?;
            base.pointers = self.stars();
            declared_type = Some(base);
        }
        let target = self.location()?;
        let value = if self.eat("=") { Some(self.init_value()?) } else { None };
        Ok(InitEntry { declared_type, target, value, span: self.span_from(start) })
    }

    fn init_value(&mut self) -> Result<InitValue, LitmusError> {
        if self.eat("&") {
            return Ok(InitValue::Address(self.identifier("a location after `&`")?));
        }
        if let Some(value) = self.signed_integer()? {
            return Ok(InitValue::Integer(value));
        }
        let name = self.identifier("an integer, a location or `&location`")?;
        if !self.eat("(") {
            return Ok(InitValue::Address(name));
        }
        let mut args = Vec::new();
        while !self.eat(")") {
            if !args.is_empty() {
                self.expect(",")?;
            }
            args.push(self.nested(Self::init_value)?);
        }
        Ok(InitValue::Call { name, args })
    }

    /// An integer with an optional `-`, if one comes next.
    fn signed_integer(&mut self) -> Result<Option<i64>, LitmusError> {
        let negative = self.at_punctuation("-");
        let ahead = if negative { 1 } else { 0 };
        let TokenKind::Integer(value) = *self.peek_ahead(ahead) else {
            return if negative { self.error("expected an integer after `-`") } else { Ok(None) };
        };
        self.advance();
        if negative {
            self.advance();
        }
        Ok(Some(if negative { -value } else { value }))
    }

    /// `P0(...) { ... }` for as long as they come.
    fn threads(&mut self) -> Result<Vec<ThreadDecl>, LitmusError> {
        let mut threads = Vec::new();
        while let TokenKind::Identifier(name) = self.peek() {
            let Some(index) = thread_index(name) else { break };
            let start = self.start();
            self.advance();
            let params = self.params()?;
            let body = self.block_body()?;
            threads.push(ThreadDecl { index, params, body, span: self.span_from(start) });
        }
        if threads.is_empty() {
            return self.error(format!("expected a thread `P0(...) {{ ... }}`, found {}", self.describe()));
        }
        Ok(threads)
    }

    /// `(int *x, spinlock_t *s)`, `()` or `(void)`.
    fn params(&mut self) -> Result<Vec<Param>, LitmusError> {
        self.expect("(")?;
        let mut params = Vec::new();
        if self.at_word("void") && matches!(self.peek_ahead(1), TokenKind::Punctuation(")")) {
            self.advance();
        }
        while !self.eat(")") {
            if !params.is_empty() {
                self.expect(",")?;
            }
            let start = self.start();
            let mut param_type = self.base_type()?;
            param_type.pointers = self.stars();
            let name = self.identifier("a parameter name")?;
            params.push(Param { param_type, name, span: self.span_from(start) });
        }
        Ok(params)
    }
}

/// The final clauses.
impl Parser {
    /// `locations [...]` and `filter PROP`, in either order, before the condition.
    fn final_clauses(&mut self) -> Result<(Vec<Location>, Option<Prop>), LitmusError> {
        let mut locations = Vec::new();
        let mut filter = None;
        loop {
            if self.at_word("locations") {
                self.advance();
                locations.extend(self.location_list()?);
            } else if self.at_word("filter") {
                self.advance();
                filter = Some(self.prop()?);
            } else {
                return Ok((locations, filter));
            }
        }
    }

    /// `[x; 0:r1; y]`, separators optional.
    fn location_list(&mut self) -> Result<Vec<Location>, LitmusError> {
        self.expect("[")?;
        let mut locations = Vec::new();
        while !self.eat("]") {
            if !self.eat(";") {
                locations.push(self.location()?);
            }
        }
        Ok(locations)
    }

    /// `exists P`, `~exists P`, `forall P`, herd's synonyms, or nothing (`forall true`); an
    /// optional `;` follows.
    fn condition(&mut self) -> Result<Condition, LitmusError> {
        let start = self.start();
        if self.peek() == &TokenKind::End {
            return Ok(Condition::herd_default(start));
        }
        let kind = if self.at_punctuation("(") {
            ConditionKind::Exists
        } else {
            let negated = self.eat_not();
            let kind = match self.peek() {
                TokenKind::Identifier(word) if word == "exists" && negated => ConditionKind::NotExists,
                TokenKind::Identifier(word) if (word == "exists" || word == "final") && !negated => {
                    ConditionKind::Exists
                }
                TokenKind::Identifier(word) if word == "forall" && !negated => ConditionKind::Forall,
                _ => return self.error(format!("expected `exists`, `~exists` or `forall`, found {}", self.describe())),
            };
            self.advance();
            kind
        };
        let prop = self.prop()?;
        let span = self.span_from(start);
        self.eat(";");
        Ok(Condition { kind, prop, span })
    }

    /// `~` or `not`.
    fn eat_not(&mut self) -> bool {
        let found = self.at_punctuation("~") || self.at_word("not");
        if found {
            self.advance();
        }
        found
    }

    /// `P \/ Q`, the loosest.
    fn prop(&mut self) -> Result<Prop, LitmusError> {
        let before = self.operators;
        let mut left = self.conjunction()?;
        while self.eat("\\/") {
            self.operator()?;
            left = Prop::Or(Box::new(left), Box::new(self.conjunction()?));
        }
        self.operators_end(before);
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Prop, LitmusError> {
        let before = self.operators;
        let mut left = self.implication()?;
        while self.eat("/\\") {
            self.operator()?;
            left = Prop::And(Box::new(left), Box::new(self.implication()?));
        }
        self.operators_end(before);
        Ok(left)
    }

    /// `P => Q`, binding tighter than `/\` as in herd's grammar.
    fn implication(&mut self) -> Result<Prop, LitmusError> {
        let left = self.negation()?;
        if !self.eat("=>") {
            return Ok(left);
        }
        let right = self.nested(Self::implication)?;
        Ok(Prop::Implies(Box::new(left), Box::new(right)))
    }

    fn negation(&mut self) -> Result<Prop, LitmusError> {
        if self.eat_not() {
            return Ok(Prop::Not(Box::new(self.nested(Self::negation)?)));
        }
        if self.eat("(") {
            let inner = self.nested(Self::prop)?;
            self.expect(")")?;
            return Ok(inner);
        }
        for (word, constant) in [("true", Prop::True), ("false", Prop::False)] {
            if self.at_word(word) {
                self.advance();
                return Ok(constant);
            }
        }
        self.atom().map(Prop::Atom)
    }

    /// `location = value`, `location == value` or `location != value`; herd also writes the
    /// location `[x]`.
    fn atom(&mut self) -> Result<Atom, LitmusError> {
        let start = self.start();
        let location = if self.eat("[") {
            let name = self.identifier("a location inside `[ ]`")?;
            self.expect("]")?;
            Location::Global(name)
        } else {
            self.location()?
        };
        let negated = self.eat("!=");
        if !negated && !self.eat("=") && !self.eat("==") {
            return self.error(format!("expected `=` or `!=` after the location, found {}", self.describe()));
        }
        let value = self.value()?;
        Ok(Atom { location, negated, value, span: self.span_from(start) })
    }

    /// An integer, a location's address (`y` or `&y`), a register's value (`0:r4`) or a
    /// variable's value (`*y`).
    fn value(&mut self) -> Result<Value, LitmusError> {
        if self.eat("&") {
            return Ok(Value::Address(self.identifier("a location after `&`")?));
        }
        if self.eat("*") || matches!(self.peek_ahead(1), TokenKind::Punctuation(":")) {
            return Ok(Value::Location(self.location()?));
        }
        if let Some(value) = self.signed_integer()? {
            return Ok(Value::Integer(value));
        }
        Ok(Value::Address(self.identifier("an integer, a location or a register")?))
    }

    /// `x` or `thread:register`.
    pub(super) fn location(&mut self) -> Result<Location, LitmusError> {
        if let TokenKind::Integer(thread) = *self.peek() {
            self.advance();
            self.expect(":")?;
            let name = self.identifier("a register name after `thread:`")?;
            let thread = usize::try_from(thread).map_err(|_| LitmusError::at(self.last_end, "bad thread number"))?;
            return Ok(Location::Register { thread, name });
        }
        Ok(Location::Global(self.identifier("a location (`x` or `0:r1`)")?))
    }
}
