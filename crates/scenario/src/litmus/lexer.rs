//! Tokens of a litmus test after its preamble: C thread code, the initial state and the
//! condition share one lexer, which knows when `(*` opens a comment (see [`Lexer::in_thread`]).

use super::{LitmusError, Position, Span};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Identifier(String),
    Integer(i64),
    /// Operators and punctuation, longest match first (see [`PUNCTUATION`]).
    Punctuation(&'static str),
    End,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Longer operators before their prefixes. `/\`, `\/` and `=>` belong to conditions; `->`,
/// `++` and `--` are lexed so that the parser can name them in an error.
const PUNCTUATION: &[&str] = &[
    "<<=", ">>=", "->", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>", "<=", ">=", "==", "!=",
    "&&", "||", "/\\", "\\/", "=>", "{", "}", "(", ")", "[", "]", ";", ",", ":", "*", "&", "!", "~", "-", "+", "/",
    "%", "^", "|", "<", ">", "=", "?", ".",
];

struct Lexer<'a> {
    source: &'a str,
    at: usize,
    position: Position,
    brace_depth: usize,
    /// Between a `P<n>` at the top level and the `}` closing its body. herd reads thread code
    /// as C, where `(*x` is a dereference; elsewhere `(*` opens an OCaml-style comment.
    in_thread: bool,
}

/// Tokens of `source` from byte `start`, which is at `position`.
pub fn tokenize(source: &str, start: usize, position: Position) -> Result<Vec<Token>, LitmusError> {
    let mut lexer = Lexer { source, at: start, position, brace_depth: 0, in_thread: false };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks_and_comments()?;
        let token = lexer.token()?;
        let end = token.kind == TokenKind::End;
        tokens.push(token);
        if end {
            return Ok(tokens);
        }
    }
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.source[self.at..]
    }

    fn advance(&mut self, bytes: usize) {
        self.position = position_after(self.position, &self.source[self.at..self.at + bytes]);
        self.at += bytes;
    }

    fn skip_blanks_and_comments(&mut self) -> Result<(), LitmusError> {
        loop {
            let rest = self.rest();
            let blank = rest.len() - rest.trim_start().len();
            if blank > 0 {
                self.advance(blank);
            } else if let Some(length) = comment_length(rest, !self.in_thread) {
                let length = length.map_err(|message| LitmusError::at(self.position, message))?;
                self.advance(length);
            } else {
                return Ok(());
            }
        }
    }

    fn token(&mut self) -> Result<Token, LitmusError> {
        let start = self.position;
        let rest = self.rest();
        let Some(first) = rest.chars().next() else {
            return Ok(Token { kind: TokenKind::End, span: Span { start, end: start } });
        };
        let (kind, length) = if first.is_ascii_digit() {
            integer(rest).ok_or_else(|| {
                LitmusError::at(start, "invalid integer literal (decimal or 0x hexadecimal, at most 64 bits)")
            })?
        } else if first.is_ascii_alphabetic() || first == '_' {
            let length = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (TokenKind::Identifier(rest[..length].to_string()), length)
        } else if let Some(punctuation) = PUNCTUATION.iter().find(|p| rest.starts_with(**p)) {
            (TokenKind::Punctuation(punctuation), punctuation.len())
        } else {
            return Err(LitmusError::at(start, format!("unexpected character `{first}`")));
        };
        self.track_threads(&kind);
        self.advance(length);
        Ok(Token { kind, span: Span { start, end: self.position } })
    }

    fn track_threads(&mut self, kind: &TokenKind) {
        match kind {
            TokenKind::Identifier(name) if self.brace_depth == 0 && thread_index(name).is_some() => {
                self.in_thread = true
            }
            TokenKind::Punctuation("{") => self.brace_depth += 1,
            TokenKind::Punctuation("}") => {
                self.brace_depth = self.brace_depth.saturating_sub(1);
                if self.brace_depth == 0 {
                    self.in_thread = false;
                }
            }
            _ => {}
        }
    }
}

/// Where `text`, starting at `start`, ends.
pub fn position_after(start: Position, text: &str) -> Position {
    text.chars().fold(start, |position, character| match character {
        '\n' => Position { line: position.line + 1, column: 1 },
        _ => Position { line: position.line, column: position.column + 1 },
    })
}

/// The index of a thread name `P0`, `P12`.
pub fn thread_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('P')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The length of the comment `text` starts with, or why it does not end; `None` if `text`
/// does not start with a comment. `(* ... *)` counts only if `ocaml` is set.
pub fn comment_length(text: &str, ocaml: bool) -> Option<Result<usize, &'static str>> {
    if ocaml && text.starts_with("(*") {
        Some(ocaml_comment_length(text).ok_or("unterminated `(*` comment"))
    } else if let Some(inside) = text.strip_prefix("/*") {
        Some(inside.find("*/").map(|end| end + 4).ok_or("unterminated `/*` comment"))
    } else if text.starts_with("//") {
        Some(Ok(text.find('\n').unwrap_or(text.len())))
    } else {
        None
    }
}

/// The length of the `(* ... *)` comment `text` starts with; these comments nest, as in OCaml.
fn ocaml_comment_length(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        if rest.starts_with("(*") {
            depth += 1;
            at += 2;
        } else if rest.starts_with("*)") {
            depth -= 1;
            at += 2;
            if depth == 0 {
                return Some(at);
            }
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    None
}

/// A decimal or `0x` hexadecimal literal and its length; `None` if it does not fit an `i64`.
fn integer(text: &str) -> Option<(TokenKind, usize)> {
    let (radix, digits_start) = if text.starts_with("0x") || text.starts_with("0X") { (16, 2) } else { (10, 0) };
    let digits = &text[digits_start..];
    let length = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    let value = i64::from_str_radix(&digits[..length], radix).ok()?;
    Some((TokenKind::Integer(value), digits_start + length))
}
