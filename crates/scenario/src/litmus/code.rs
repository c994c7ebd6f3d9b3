//! Thread code: types, statements and expressions, a small subset of C.

use super::lexer::TokenKind;
use super::parser::Parser;
use super::{BinaryOperator, Declarator, Expr, ExprKind, LitmusError, Stmt, StmtKind, Type, UnaryOperator};

/// Words that start a base type; any other name ending in `_t` (`atomic_t`, `intptr_t`,
/// `spinlock_t`) is taken as a typedef, which is how herd tells types from variables too.
const TYPE_WORDS: &[&str] = &["void", "char", "short", "int", "long", "signed", "unsigned", "_Bool", "struct", "union"];
const QUALIFIERS: &[&str] = &["volatile", "const"];

/// Binary operators from the loosest-binding level to the tightest.
const BINARY_LEVELS: &[&[(&str, BinaryOperator)]] = &[
    &[("||", BinaryOperator::LogicalOr)],
    &[("&&", BinaryOperator::LogicalAnd)],
    &[("|", BinaryOperator::BitOr)],
    &[("^", BinaryOperator::BitXor)],
    &[("&", BinaryOperator::BitAnd)],
    &[("==", BinaryOperator::Equal), ("!=", BinaryOperator::NotEqual)],
    &[
        ("<", BinaryOperator::Less),
        ("<=", BinaryOperator::LessEqual),
        (">", BinaryOperator::Greater),
        (">=", BinaryOperator::GreaterEqual),
    ],
    &[("<<", BinaryOperator::ShiftLeft), (">>", BinaryOperator::ShiftRight)],
    &[("+", BinaryOperator::Add), ("-", BinaryOperator::Subtract)],
    &[("*", BinaryOperator::Multiply), ("/", BinaryOperator::Divide), ("%", BinaryOperator::Remainder)],
];

/// `op=` assignments and the operator each applies.
const COMPOUND_ASSIGNMENTS: &[(&str, BinaryOperator)] = &[
    ("+=", BinaryOperator::Add),
    ("-=", BinaryOperator::Subtract),
    ("*=", BinaryOperator::Multiply),
    ("/=", BinaryOperator::Divide),
    ("%=", BinaryOperator::Remainder),
    ("&=", BinaryOperator::BitAnd),
    ("|=", BinaryOperator::BitOr),
    ("^=", BinaryOperator::BitXor),
    ("<<=", BinaryOperator::ShiftLeft),
    (">>=", BinaryOperator::ShiftRight),
];

const UNARY_OPERATORS: &[(&str, UnaryOperator)] =
    &[("!", UnaryOperator::Not), ("-", UnaryOperator::Negate), ("~", UnaryOperator::BitNot)];

/// A parser of the statement a keyword starts, called once the keyword is consumed.
type StatementParser = fn(&mut Parser) -> Result<StmtKind, LitmusError>;

fn is_type_word(word: &str) -> bool {
    TYPE_WORDS.contains(&word) || QUALIFIERS.contains(&word) || word.ends_with("_t")
}

/// Types.
impl Parser {
    pub(super) fn at_type(&self) -> bool {
        matches!(self.peek(), TokenKind::Identifier(word) if is_type_word(word))
    }

    /// Qualifiers and the base type, without stars: `volatile int`, `struct srcu_struct`.
    pub(super) fn base_type(&mut self) -> Result<Type, LitmusError> {
        let mut qualifiers = Vec::new();
        let mut words: Vec<String> = Vec::new();
        while let TokenKind::Identifier(word) = self.peek().clone() {
            if QUALIFIERS.contains(&word.as_str()) {
                qualifiers.push(word);
            } else if word == "struct" || word == "union" {
                self.advance();
                let tag = self.identifier(&format!("a name after `{word}`"))?;
                words.push(format!("{word} {tag}"));
                continue;
            } else if is_type_word(&word) && (words.is_empty() || TYPE_WORDS.contains(&word.as_str())) {
                words.push(word);
            } else {
                break;
            }
            self.advance();
        }
        if words.is_empty() {
            return self.error(format!("expected a type, found {}", self.describe()));
        }
        Ok(Type { base: words.join(" "), qualifiers, pointers: 0 })
    }

    /// The number of `*` that come next.
    pub(super) fn stars(&mut self) -> usize {
        let mut count = 0;
        while self.eat("*") {
            count += 1;
        }
        count
    }
}

/// Statements.
impl Parser {
    /// `{ statement... }`
    pub(super) fn block_body(&mut self) -> Result<Vec<Stmt>, LitmusError> {
        self.expect("{")?;
        let mut body = Vec::new();
        while !self.eat("}") {
            if self.peek() == &TokenKind::End {
                return self.error("expected `}` to close the block");
            }
            body.push(self.statement()?);
        }
        Ok(body)
    }

    fn statement(&mut self) -> Result<Stmt, LitmusError> {
        let start = self.start();
        let kind = self.nested(Self::statement_kind)?;
        Ok(Stmt { kind, span: self.span_from(start) })
    }

    fn statement_kind(&mut self) -> Result<StmtKind, LitmusError> {
        if self.at_punctuation("{") {
            return Ok(StmtKind::Block(self.block_body()?));
        }
        if self.eat(";") {
            return Ok(StmtKind::Empty);
        }
        let keyword: Option<StatementParser> = match self.peek() {
            TokenKind::Identifier(word) if word == "if" => Some(Self::if_statement),
            TokenKind::Identifier(word) if word == "while" => Some(Self::while_statement),
            TokenKind::Identifier(word) if word == "do" => Some(Self::do_while_statement),
            _ => None,
        };
        if let Some(parse) = keyword {
            self.advance();
            return parse(self);
        }
        if self.at_type() {
            return self.declaration();
        }
        let kind = self.assignment_or_expression()?;
        self.expect(";")?;
        Ok(kind)
    }

    fn parenthesised(&mut self) -> Result<Expr, LitmusError> {
        self.expect("(")?;
        let expression = self.expression()?;
        self.expect(")")?;
        Ok(expression)
    }

    fn if_statement(&mut self) -> Result<StmtKind, LitmusError> {
        let condition = self.parenthesised()?;
        let then_branch = Box::new(self.statement()?);
        let else_branch = if self.at_word("else") {
            self.advance();
            Some(Box::new(self.statement()?))
        } else {
            None
        };
        Ok(StmtKind::If { condition, then_branch, else_branch })
    }

    fn while_statement(&mut self) -> Result<StmtKind, LitmusError> {
        let condition = self.parenthesised()?;
        Ok(StmtKind::While { condition, body: Box::new(self.statement()?) })
    }

    fn do_while_statement(&mut self) -> Result<StmtKind, LitmusError> {
        let body = Box::new(self.statement()?);
        if !self.at_word("while") {
            return self.error(format!("expected `while` after the body of `do`, found {}", self.describe()));
        }
        self.advance();
        let condition = self.parenthesised()?;
        self.expect(";")?;
        Ok(StmtKind::DoWhile { body, condition })
    }

    /// `int *p = e, r;`
    fn declaration(&mut self) -> Result<StmtKind, LitmusError> {
        let base = self.base_type()?;
        let mut declarators = Vec::new();
        loop {
            let start = self.start();
            let declared_type = Type { pointers: self.stars(), ..base.clone() };
            let name = self.identifier("a name to declare")?;
            let init = if self.eat("=") { Some(self.expression()?) } else { None };
            declarators.push(Declarator { declared_type, name, init, span: self.span_from(start) });
            if !self.eat(",") {
                break;
            }
        }
        self.expect(";")?;
        Ok(StmtKind::Declaration(declarators))
    }

    fn assignment_or_expression(&mut self) -> Result<StmtKind, LitmusError> {
        let target = self.expression()?;
        if self.eat("=") {
            return Ok(StmtKind::Assign { target, operator: None, value: self.expression()? });
        }
        for (punctuation, operator) in COMPOUND_ASSIGNMENTS {
            if self.eat(punctuation) {
                return Ok(StmtKind::Assign { target, operator: Some(*operator), value: self.expression()? });
            }
        }
        Ok(StmtKind::Expression(target))
    }
}

/// Expressions, by C's precedence.
impl Parser {
    pub(super) fn expression(&mut self) -> Result<Expr, LitmusError> {
        self.nested(Self::conditional)
    }

    fn conditional(&mut self) -> Result<Expr, LitmusError> {
        let start = self.start();
        let condition = self.binary(0)?;
        if !self.eat("?") {
            return Ok(condition);
        }
        let then_value = self.expression()?;
        self.expect(":")?;
        let else_value = self.nested(Self::conditional)?;
        let kind = ExprKind::Conditional {
            condition: Box::new(condition),
            then_value: Box::new(then_value),
            else_value: Box::new(else_value),
        };
        Ok(Expr { kind, span: self.span_from(start) })
    }

    /// Left-associative operators binding at least as tightly as `BINARY_LEVELS[minimum]`, by
    /// precedence climbing: one stack frame per operator rather than one per level, so that
    /// nesting, which hostile input controls, costs little stack.
    fn binary(&mut self, minimum: usize) -> Result<Expr, LitmusError> {
        let (start, before) = (self.start(), self.operators());
        let mut left = self.unary()?;
        while let Some((level, operator)) = self.binary_operator().filter(|(level, _)| *level >= minimum) {
            self.operator()?;
            self.advance();
            let right = self.binary(level + 1)?;
            let kind = ExprKind::Binary { operator, left: Box::new(left), right: Box::new(right) };
            left = Expr { kind, span: self.span_from(start) };
        }
        self.operators_end(before);
        Ok(left)
    }

    /// The binary operator that comes next and its level in `BINARY_LEVELS`.
    fn binary_operator(&self) -> Option<(usize, BinaryOperator)> {
        BINARY_LEVELS.iter().enumerate().find_map(|(level, operators)| {
            operators
                .iter()
                .find(|(punctuation, _)| self.at_punctuation(punctuation))
                .map(|(_, operator)| (level, *operator))
        })
    }

    /// Prefix operators and casts.
    fn unary(&mut self) -> Result<Expr, LitmusError> {
        let start = self.start();
        let kind = if self.eat("*") {
            ExprKind::Deref(Box::new(self.nested(Self::unary)?))
        } else if self.eat("&") {
            ExprKind::AddressOf(Box::new(self.nested(Self::unary)?))
        } else if let Some((_, operator)) = UNARY_OPERATORS.iter().find(|(p, _)| self.at_punctuation(p)) {
            self.advance();
            ExprKind::Unary { operator: *operator, operand: Box::new(self.nested(Self::unary)?) }
        } else if self.at_punctuation("(") && matches!(self.peek_ahead(1), TokenKind::Identifier(w) if is_type_word(w))
        {
            self.advance();
            let mut target_type = self.base_type()?;
            target_type.pointers = self.stars();
            self.expect(")")?;
            ExprKind::Cast { target_type, value: Box::new(self.nested(Self::unary)?) }
        } else {
            return self.primary();
        };
        Ok(Expr { kind, span: self.span_from(start) })
    }

    /// Integers, names, calls and parenthesised expressions.
    fn primary(&mut self) -> Result<Expr, LitmusError> {
        let start = self.start();
        let kind = match self.peek().clone() {
            TokenKind::Integer(value) => {
                self.advance();
                ExprKind::Integer(value)
            }
            TokenKind::Identifier(name) => {
                self.advance();
                if self.at_punctuation("(") {
                    ExprKind::Call { name, args: self.arguments()? }
                } else {
                    ExprKind::Name(name)
                }
            }
            TokenKind::Punctuation("(") => return self.parenthesised(),
            _ => return self.error(format!("expected an expression, found {}", self.describe())),
        };
        Ok(Expr { kind, span: self.span_from(start) })
    }

    /// `(e, e, ...)`
    fn arguments(&mut self) -> Result<Vec<Expr>, LitmusError> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.eat(")") {
            if !args.is_empty() {
                self.expect(",")?;
            }
            args.push(self.expression()?);
        }
        Ok(args)
    }
}
