//! The header line and the preamble up to the initial state's `{`. They are read as text, not
//! tokens: a test's name holds `+`, `.` and `/`, and generated tests carry free-form
//! `key=value` lines and a quoted documentation string there.

use super::lexer::{comment_length, position_after};
use super::{Condition, Expected, ExpectedResult, LitmusError, LitmusTest, Position, Span};

struct Cursor<'a> {
    source: &'a str,
    at: usize,
    position: Position,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.source[self.at..]
    }

    /// Moves `bytes` on and returns the text passed over.
    fn take(&mut self, bytes: usize) -> &str {
        let text = &self.source[self.at..self.at + bytes];
        self.position = position_after(self.position, text);
        self.at += bytes;
        text
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, LitmusError> {
        Err(LitmusError::at(self.position, message))
    }
}

/// The test as far as the preamble tells: its body fields are empty and its condition is
/// herd's default until the parser reads them. Also returns the byte offset and position of
/// the initial state's `{`.
pub fn preamble(source: &str) -> Result<(LitmusTest, usize, Position), LitmusError> {
    let mut cursor = Cursor { source, at: 0, position: Position { line: 1, column: 1 } };
    let (name, name_span) = header(&mut cursor)?;
    let mut comments = Vec::new();
    let mut expected = None;
    let mut doc = None;
    let mut info = Vec::new();
    loop {
        let blank = cursor.rest().len() - cursor.rest().trim_start().len();
        cursor.take(blank);
        let rest = cursor.rest();
        let start = cursor.position;
        if rest.starts_with('{') {
            break;
        } else if let Some(length) = comment_length(rest, true) {
            let raw = cursor.take(length.map_err(|message| LitmusError::at(start, message))?);
            expected = expected.or_else(|| expected_result(raw, start));
            comments.push(comment_text(raw).to_string());
        } else if rest.starts_with('"') {
            doc = Some(quoted(&mut cursor)?);
        } else if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            info.push(info_line(&mut cursor)?);
        } else {
            return cursor.error("expected `{` to open the initial state");
        }
    }
    let test = LitmusTest {
        name,
        name_span,
        expected,
        comments,
        doc,
        info,
        init: Vec::new(),
        threads: Vec::new(),
        locations: Vec::new(),
        filter: None,
        condition: Condition::herd_default(cursor.position),
    };
    Ok((test, cursor.at, cursor.position))
}

/// `C NAME` on the first non-blank line.
fn header(cursor: &mut Cursor) -> Result<(String, Span), LitmusError> {
    let blank = cursor.rest().len() - cursor.rest().trim_start().len();
    cursor.take(blank);
    let line_length = cursor.rest().find('\n').unwrap_or(cursor.rest().len());
    let architecture_length = cursor.rest()[..line_length].find(char::is_whitespace).unwrap_or(line_length);
    if architecture_length == 0 {
        return cursor.error("expected the header line `C NAME`");
    }
    let start = cursor.position;
    let architecture = cursor.take(architecture_length).to_string();
    if architecture != "C" {
        return Err(LitmusError::at(
            start,
            format!("`{architecture}` test: only C litmus tests are supported (the header line must start with `C`)"),
        ));
    }
    let rest_of_line = &cursor.rest()[..line_length - architecture_length];
    let (leading, name_length) = (rest_of_line.len() - rest_of_line.trim_start().len(), rest_of_line.trim().len());
    cursor.take(leading);
    let name_start = cursor.position;
    let name = cursor.take(name_length).to_string();
    if name.is_empty() {
        return cursor.error("expected the test's name after `C`");
    }
    Ok((name, Span { start: name_start, end: cursor.position }))
}

/// A comment without its delimiters and surrounding blanks.
fn comment_text(raw: &str) -> &str {
    let inner = match raw.strip_prefix("//") {
        Some(line) => line,
        None => &raw[2..raw.len() - 2],
    };
    inner.trim()
}

/// `"..."`: the test's documentation string.
fn quoted(cursor: &mut Cursor) -> Result<String, LitmusError> {
    let Some(length) = cursor.rest()[1..].find('"') else {
        return cursor.error("unterminated string");
    };
    let text = cursor.take(length + 2);
    Ok(text[1..text.len() - 1].to_string())
}

/// `key=value` up to the end of the line.
fn info_line(cursor: &mut Cursor) -> Result<(String, String), LitmusError> {
    let length = cursor.rest().find('\n').unwrap_or(cursor.rest().len());
    let Some((key, value)) = cursor.rest()[..length].split_once('=') else {
        return cursor.error("expected `{` to open the initial state, or a `key=value` line");
    };
    let pair = (key.trim().to_string(), value.trim().to_string());
    cursor.take(length);
    Ok(pair)
}

/// The verdict of a `Result: VERDICT FLAGS...` line in the comment `raw`, which starts at
/// `start`.
fn expected_result(raw: &str, start: Position) -> Option<Expected> {
    const KEY: &str = "Result:";
    let at = raw.find(KEY)?;
    let line = raw[at..].lines().next().unwrap_or(KEY).trim_end_matches("*)").trim_end();
    let mut words = line[KEY.len()..].split_whitespace().map(|word| word.trim_end_matches(['.', ',', ';']));
    let result = match words.next()? {
        "Never" => ExpectedResult::Never,
        "Sometimes" => ExpectedResult::Sometimes,
        "Always" => ExpectedResult::Always,
        other => ExpectedResult::Other(other.to_string()),
    };
    let flags = words.filter(|word| !word.is_empty()).map(str::to_string).collect();
    let span_start = position_after(start, &raw[..at]);
    Some(Expected { result, flags, span: Span { start: span_start, end: position_after(span_start, line) } })
}
