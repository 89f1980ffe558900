//! Problems found in user input, reported as `file:line:col: message` with an optional hint.
//!
//! Every validation problem becomes one [`Diagnostic`]; the loader collects all of them
//! (not only the first) so that a user can fix a whole manifest folder in one pass.
//!
//! Messages quote text from manifests, which is untrusted: [`Diagnostic`]'s `Display`
//! shows control and bidirectional-override characters escaped ([`escape`]), so a
//! message can neither move the cursor, colour the terminal nor forge a line.

use std::borrow::Cow;
use std::fmt;

/// One problem in one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (DIR joined with the path below it).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            col,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// `file:line:col` (or `file` when the position is unknown).
    pub fn location(&self) -> String {
        match (self.line, self.col) {
            (0, _) => self.file.clone(),
            (l, 0) => format!("{}:{}", self.file, l),
            (l, c) => format!("{}:{}:{}", self.file, l, c),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", escape(&self.location()), escape(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", escape(hint))?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// One line for a log: `file:line:col: message (hint: ...)`, escaped like `Display`.
    pub fn log_line(&self) -> String {
        let mut line = format!("{}: {}", escape(&self.location()), escape(&self.message));
        if let Some(hint) = &self.hint {
            line.push_str(&format!(" (hint: {})", escape(hint)));
        }
        line
    }
}

/// A message of several lines, as log events take it: the first line, and the others
/// (each a line of its own event, indented). The text must hold its untrusted parts
/// escaped already ([`escape`]), so that its line breaks are the message's own; each
/// line is escaped again by the log writer, so nothing reaches the terminal raw.
pub fn split_lines(text: &str) -> (&str, impl Iterator<Item = &str>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    (first, lines)
}

/// Whether `c` must never reach a terminal or a reviewer raw: C0 controls (newline
/// and tab included), DEL, C1 controls, the bidi overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), the bidi marks (U+200E, U+200F, U+061C) and the Unicode line and
/// paragraph separators (U+2028, U+2029). The one definition: task names refuse these,
/// and every output escapes them.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}' | '\u{200f}' | '\u{061c}'
        | '\u{2028}' | '\u{2029}')
}

/// `c` written visibly: `\n`, `\t`, `\r`, else `\u{1b}` (Rust's notation).
pub fn escape_char(c: char) -> String {
    match c {
        '\n' => "\\n".to_string(),
        '\t' => "\\t".to_string(),
        '\r' => "\\r".to_string(),
        c => format!("\\u{{{:x}}}", c as u32),
    }
}

/// `s` with every [`is_unsafe_char`] written visibly ([`escape_char`]); borrowed when
/// there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, escape_char)
}

/// `s` with every [`is_unsafe_char`] written as `show` writes it; borrowed when there
/// is none. The one escaping loop: diagnostics write `\n`, outputs `\u{a}`.
pub fn escape_with(s: &str, show: fn(char) -> String) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&show(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Sorts diagnostics by file, line and column so that output does not depend on
/// the order in which files were read (they are read in parallel).
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.col, &a.message).cmp(&(&b.file, b.line, b.col, &b.message))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_shown_escaped() {
        assert_eq!(escape("plain dépôt 日本"), "plain dépôt 日本");
        assert_eq!(
            escape("a\u{1b}[31mb\nc\td\u{7f}\u{9b}\u{202e}\u{2066}"),
            "a\\u{1b}[31mb\\nc\\td\\u{7f}\\u{9b}\\u{202e}\\u{2066}"
        );
        assert!(
            is_unsafe_char('\u{2029}') && !is_unsafe_char('\u{2070}'),
            "one set: U+2029 is unsafe too"
        );
        let d = Diagnostic::new("f\u{7}.yaml", 1, 2, "bad `\u{1b}`").with_hint("x\ny");
        assert_eq!(
            d.to_string(),
            "f\\u{7}.yaml:1:2: bad `\\u{1b}`\n  hint: x\\ny"
        );
        assert_eq!(
            d.log_line(),
            "f\\u{7}.yaml:1:2: bad `\\u{1b}` (hint: x\\ny)"
        );
    }
}
