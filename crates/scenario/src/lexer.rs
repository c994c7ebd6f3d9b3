//! Tokens of the scenario language. Numbers take a size suffix (`4K`, `2M`, `1G`); `#` starts a
//! comment; newlines separate statements.

use crate::parser::limits::IDENTIFIER_BYTES_MAX;
use crate::Diagnostic;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Identifier(String),
    Number(i64),
    String(String),
    Newline,
    LeftBrace,
    RightBrace,
    LeftParen,
    RightParen,
    Comma,
    Colon,
    Pipe,
    /// `||`, `&&`, `&` and `!` (not followed by `=`): an assertion's conditions and bit tests.
    OrOr,
    AndAnd,
    Amp,
    Bang,
    Plus,
    Minus,
    Star,
    Slash,
    Assign,
    Compare(&'static str),
    End,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

pub fn tokenize(source: &str) -> Result<Vec<Token>, Diagnostic> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let byte = bytes[at];
        let single = |kind| (kind, start + 1);
        let (kind, end) = match byte {
            b' ' | b'\t' | b'\r' => {
                at += 1;
                continue;
            }
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            b'\n' => single(TokenKind::Newline),
            b'{' => single(TokenKind::LeftBrace),
            b'}' => single(TokenKind::RightBrace),
            b'(' => single(TokenKind::LeftParen),
            b')' => single(TokenKind::RightParen),
            b',' => single(TokenKind::Comma),
            b':' => single(TokenKind::Colon),
            b'|' if bytes.get(start + 1) == Some(&b'|') => (TokenKind::OrOr, start + 2),
            b'|' => single(TokenKind::Pipe),
            b'&' if bytes.get(start + 1) == Some(&b'&') => (TokenKind::AndAnd, start + 2),
            b'&' => single(TokenKind::Amp),
            b'+' => single(TokenKind::Plus),
            b'-' => single(TokenKind::Minus),
            b'*' => single(TokenKind::Star),
            b'/' => single(TokenKind::Slash),
            b'=' | b'!' | b'<' | b'>' => comparison(bytes, start)?,
            b'"' => string(source, start)?,
            b'0'..=b'9' => number(source, start)?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => identifier(source, start)?,
            _ => {
                let character = source[start..].chars().next().unwrap_or('?');
                return Err(Diagnostic::new(
                    format!("unexpected character `{character}`"),
                    start,
                    start + character.len_utf8(),
                ));
            }
        };
        tokens.push(Token { kind, start, end });
        at = end;
    }
    tokens.push(Token { kind: TokenKind::End, start: bytes.len(), end: bytes.len() });
    Ok(tokens)
}

/// `=`, `==`, `!`, `!=`, `<`, `<=`, `>`, `>=`.
fn comparison(bytes: &[u8], start: usize) -> Result<(TokenKind, usize), Diagnostic> {
    let two = bytes.get(start + 1) == Some(&b'=');
    let kind = match (bytes[start], two) {
        (b'=', true) => TokenKind::Compare("=="),
        (b'=', false) => TokenKind::Assign,
        (b'!', true) => TokenKind::Compare("!="),
        (b'!', false) => TokenKind::Bang,
        (b'<', true) => TokenKind::Compare("<="),
        (b'<', false) => TokenKind::Compare("<"),
        (b'>', true) => TokenKind::Compare(">="),
        (b'>', false) => TokenKind::Compare(">"),
        _ => return Err(Diagnostic::new("expected `=`, `!`, `<` or `>`", start, start + 1)),
    };
    Ok((kind, start + if two { 2 } else { 1 }))
}

/// A string in double quotes, on one line.
fn string(source: &str, start: usize) -> Result<(TokenKind, usize), Diagnostic> {
    let bytes = source.as_bytes();
    let mut end = start + 1;
    while end < bytes.len() && bytes[end] != b'"' && bytes[end] != b'\n' {
        end += 1;
    }
    if end >= bytes.len() || bytes[end] != b'"' {
        return Err(Diagnostic::new("unterminated string", start, end));
    }
    Ok((TokenKind::String(source[start + 1..end].to_string()), end + 1))
}

/// A name: letters, digits, `_`, `-` and `.` after a letter or `_`, at most
/// IDENTIFIER_BYTES_MAX bytes.
fn identifier(source: &str, start: usize) -> Result<(TokenKind, usize), Diagnostic> {
    let bytes = source.as_bytes();
    let mut end = start;
    while end < bytes.len()
        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'-' || bytes[end] == b'.')
    {
        end += 1;
    }
    if end - start > IDENTIFIER_BYTES_MAX {
        return Err(Diagnostic::new(
            format!("a name is at most {IDENTIFIER_BYTES_MAX} characters (this is {})", end - start),
            start,
            end,
        ));
    }
    Ok((TokenKind::Identifier(source[start..end].to_string()), end))
}

/// A number: decimal, `0x` hexadecimal, or a version-like `5.18` (read by the parser from an
/// identifier-free position as two numbers is awkward, so a dotted number stays one token).
fn number(source: &str, start: usize) -> Result<(TokenKind, usize), Diagnostic> {
    let bytes = source.as_bytes();
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'.') {
        end += 1;
    }
    let text = &source[start..end];
    if text.contains('.') {
        return Ok((TokenKind::Identifier(text.to_string()), end));
    }
    let (digits, multiplier) = match text.as_bytes()[text.len() - 1] {
        b'K' | b'k' => (&text[..text.len() - 1], 1i64 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let value =
        if let Some(hex) = digits.strip_prefix("0x") { i64::from_str_radix(hex, 16) } else { digits.parse::<i64>() };
    match value.as_ref().ok().and_then(|v| v.checked_mul(multiplier)) {
        Some(value) => Ok((TokenKind::Number(value), end)),
        // Commit ids and the like start with a digit too: they are names, not numbers.
        None if value.is_err() => Ok((TokenKind::Identifier(text.to_string()), end)),
        None => Err(Diagnostic::new(format!("`{text}` is too large"), start, end)),
    }
}
