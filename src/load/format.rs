//! `taskform fmt`: a manifest file rewritten in one canonical style, comments kept.
//!
//! The style: the keys of a task in the order the create API documents them
//! ([`FIELDS`]; `schedule_config`'s in [`SCHEDULE_FIELDS`] order; other mappings keep
//! theirs), two spaces of indentation (a list indented under its key), `key: value`
//! with one space, strings plain unless YAML would read them as something else
//! (`"0"`, `"yes"`, `"1.0"`, `"null"`, dates) or their characters need quotes (then
//! double-quoted, with escapes for control and bidirectional characters), every
//! `cron_expression` double-quoted, flow lists and mappings (`[a, b]`, `{k: v}`)
//! kept in flow style on one line, block scalars (`|`, `>`) kept with their content
//! re-indented, comments kept and moved with the key they stand above or beside, at
//! most one blank line in a row, LF line ends and one newline at the end. Documents
//! stay documents (`---` between them).
//!
//! How: a small parser of YAML's block structure ([`Parser`]) finds every node's
//! place and the comments around it; the values themselves come from the loader's
//! YAML parser ([`yaml::parse_documents`]), matched to the nodes by position. The
//! result is read back with that parser and must give exactly the same documents
//! (compared as RFC 8785 canonical JSON, so content hashes cannot change); otherwise
//! nothing is rewritten ([`FormatError::Changed`]). What the parser does not handle
//! (anchors and aliases, tags, complex keys, directives, comments inside a flow
//! collection spread over lines) is reported as [`FormatError::Unsupported`] and the
//! file is left as it is.

use crate::load::check::{CheckedFile, FileKind};
use crate::load::schema::{FIELDS, SCHEDULE_FIELDS};
use crate::load::yaml;
use serde_json::{Map, Value};
use std::path::Path;

/// Why a file was not formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A construct fmt does not rewrite; the file is left as it is.
    #[error("line {line}: {what}; fmt leaves this file as it is")]
    Unsupported { line: usize, what: String },
    /// The file is not valid YAML (the loader reports it in full).
    #[error("line {line}: {message}")]
    Yaml { line: usize, message: String },
    /// The rewritten text would read differently: a fault of fmt, never written.
    #[error(
        "the formatted text would not read as the same documents ({0}); fmt leaves this file as it is (please report it)"
    )]
    Changed(String),
}

/// The canonical form of one manifest file's text. Fails, changing nothing, when the
/// text uses what fmt does not handle, or (a fault of fmt) when the result would not
/// read as exactly the same documents.
pub fn format_source(src: &str) -> Result<String, FormatError> {
    let before = yaml::parse_documents(src).map_err(|e| FormatError::Yaml {
        line: e.line,
        message: e.message,
    })?;
    let text = normalize(src)?;
    let docs = Parser::new(&text).file()?;
    let values: Vec<&Value> = before.iter().map(|d| &d.value).collect();
    let out = emit(&docs, &values)?;
    let after = yaml::parse_documents(&out)
        .map_err(|e| FormatError::Changed(format!("line {}: {}", e.line, e.message)))?;
    if after.len() != before.len() {
        return Err(FormatError::Changed(format!(
            "{} documents instead of {}",
            after.len(),
            before.len()
        )));
    }
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        if crate::hash::canonical_json(&a.value) != crate::hash::canonical_json(&b.value) {
            return Err(FormatError::Changed(format!(
                "document {} reads differently",
                i + 1
            )));
        }
    }
    Ok(out)
}

/// What fmt did with one file.
#[derive(Debug)]
pub enum Outcome {
    /// Already in the canonical style.
    Unchanged,
    /// Rewritten (with `check`: would be).
    Changed,
    /// Left as it is: it uses something fmt does not rewrite.
    Skipped(FormatError),
    /// Could not be read or written.
    Failed(String),
}

/// Formats every manifest file that was checked without problems (others are left
/// alone: their problems are reported by the check), writing the changed ones unless
/// `check`. Returns each file (as the user named it) with what happened to it.
pub fn format_files(files: &[CheckedFile], check: bool) -> Vec<(String, Outcome)> {
    files
        .iter()
        .filter(|f| f.ok && f.kind == FileKind::Manifest)
        .map(|f| (f.display.clone(), format_file(&f.path, check)))
        .collect()
}

fn format_file(path: &Path, check: bool) -> Outcome {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("cannot read it: {e}")),
    };
    let out = match format_source(&src) {
        Ok(out) => out,
        Err(e) => return Outcome::Skipped(e),
    };
    if out == src {
        return Outcome::Unchanged;
    }
    if !check && let Err(e) = write_in_place(path, &out) {
        return Outcome::Failed(format!("cannot write it: {e}"));
    }
    Outcome::Changed
}

/// Replaces the file's content atomically, keeping its permissions; a symbolic link
/// stays a link (its target is written).
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let real = std::fs::canonicalize(path)?;
    let permissions = std::fs::metadata(&real)?.permissions();
    crate::fsutil::write_atomic(&real, text.as_bytes())?;
    std::fs::set_permissions(&real, permissions)
}

/// LF line ends, no byte-order mark; refuses line breaks YAML reads but fmt does not
/// split on (a lone CR, NEL, U+2028, U+2029) and a BOM inside the text.
fn normalize(src: &str) -> Result<String, FormatError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let text = src.replace("\r\n", "\n");
    if let Some(at) = text.find(['\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{feff}']) {
        return Err(FormatError::Unsupported {
            line: text[..at].matches('\n').count() + 1,
            what: "a line break other than LF or CRLF, or a byte-order mark inside the text".into(),
        });
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------
// The tree: where every node is and which comments surround it. Scalar values are
// not kept: they come from the YAML parser, matched by position.

#[derive(Debug, Clone, PartialEq)]
enum Trivia {
    Blank,
    /// The text after `#`.
    Comment(String),
}

#[derive(Debug, Default)]
struct MapNode {
    entries: Vec<Entry>,
    /// Comments after the last entry, at the mapping's indentation or deeper.
    tail: Vec<Trivia>,
}

#[derive(Debug)]
struct Entry {
    leading: Vec<Trivia>,
    /// A comment on the key's line when the value starts on another line (or is a
    /// block scalar, a mapping or a list).
    key_comment: Option<String>,
    node: Node,
}

#[derive(Debug, Default)]
struct SeqNode {
    items: Vec<Item>,
    tail: Vec<Trivia>,
}

#[derive(Debug)]
struct Item {
    leading: Vec<Trivia>,
    dash_comment: Option<String>,
    node: Node,
}

#[derive(Debug)]
enum Node {
    /// Nothing: null.
    Empty,
    /// A plain or quoted scalar, on one line or several; `plain` is the text of a
    /// plain one on one line (a number keeps its notation: `0x10`, `1e3`).
    Scalar {
        comment: Option<String>,
        plain: Option<String>,
    },
    /// A flow list or mapping (`[...]`, `{...}`), on one line or several.
    Flow {
        comment: Option<String>,
    },
    /// A block scalar: its header (`|`, `>-`, `|2+`...), content lines relative to the
    /// content's indentation ("" for an empty line), and with keep chomping (`+`) the
    /// empty lines that end it.
    Block {
        header: String,
        comment: Option<String>,
        explicit: Option<usize>,
        lines: Vec<String>,
        kept_blanks: usize,
    },
    Map(MapNode),
    Seq(SeqNode),
}

#[derive(Debug, Default)]
struct Doc {
    /// A comment on its `---` line.
    marker_comment: Option<String>,
    /// Comments that stay at the top of the document (before a blank line, or up to a
    /// `yaml-language-server` modeline), whatever key comes first.
    header: Vec<Trivia>,
    root: Option<MapNode>,
    /// Comments of a document without content.
    tail: Vec<Trivia>,
}

// ---------------------------------------------------------------------------------
// The parser of YAML's block structure.

struct Line {
    no: usize,
    /// Leading spaces.
    indent: usize,
    /// The rest of the line (its trailing whitespace included).
    text: String,
}

impl Line {
    fn is_blank(&self) -> bool {
        self.text.trim_matches([' ', '\t']).is_empty()
    }
    fn is_comment(&self) -> bool {
        self.text.trim_start_matches([' ', '\t']).starts_with('#')
    }
    fn marker(&self, m: &str) -> bool {
        self.indent == 0
            && self
                .text
                .strip_prefix(m)
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
    }
    fn is_marker(&self) -> bool {
        self.marker("---") || self.marker("...")
    }
    fn raw(&self) -> String {
        format!("{}{}", " ".repeat(self.indent), self.text)
    }
}

enum Peek {
    End,
    Content(usize),
}

struct Parser {
    lines: Vec<Line>,
    pos: usize,
    /// Blank lines and comments read but not yet given to a node, with the comments'
    /// columns (`usize::MAX` for a blank line).
    pending: Vec<(usize, Trivia)>,
}

type Parsed<T> = Result<T, FormatError>;

fn is_dash(text: &str) -> bool {
    text == "-" || text.starts_with("- ") || text.starts_with("-\t")
}

/// A comment's text from the rest of a line that must be empty or a comment.
fn trailing(rest: &str, line: usize) -> Parsed<Option<String>> {
    let rest = rest.trim_matches([' ', '\t']);
    if rest.is_empty() {
        Ok(None)
    } else if let Some(c) = rest.strip_prefix('#') {
        Ok(Some(c.trim_end().to_string()))
    } else {
        Err(unsupported(
            line,
            format!(
                "unexpected `{}` after a value",
                crate::load::diagnostic::escape(rest)
            ),
        ))
    }
}

fn unsupported(line: usize, what: impl Into<String>) -> FormatError {
    FormatError::Unsupported {
        line,
        what: what.into(),
    }
}

impl Parser {
    fn new(text: &str) -> Parser {
        let mut lines: Vec<Line> = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| {
                let indent = l.len() - l.trim_start_matches(' ').len();
                Line {
                    no: i + 1,
                    indent,
                    text: l[indent..].to_string(),
                }
            })
            .collect();
        if text.ends_with('\n') {
            lines.pop();
        }
        Parser {
            lines,
            pos: 0,
            pending: Vec::new(),
        }
    }

    fn line_no(&self) -> usize {
        self.lines
            .get(self.pos)
            .map_or_else(|| self.lines.len(), |l| l.no)
    }

    /// Reads blank lines and comments into `pending`.
    fn skip_trivia(&mut self) {
        while let Some(l) = self.lines.get(self.pos) {
            if l.is_blank() {
                self.pending.push((usize::MAX, Trivia::Blank));
            } else if l.is_comment() && !l.is_marker() {
                let t = l.text.trim_start_matches([' ', '\t']);
                let col = l.indent + (l.text.len() - t.len());
                self.pending.push((
                    col,
                    Trivia::Comment(t[1..].trim_end_matches([' ', '\t']).to_string()),
                ));
            } else {
                break;
            }
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Peek {
        self.skip_trivia();
        match self.lines.get(self.pos) {
            None => Peek::End,
            Some(l) if l.is_marker() => Peek::End,
            Some(l) => Peek::Content(l.indent),
        }
    }

    fn take_all(&mut self) -> Vec<Trivia> {
        self.pending.drain(..).map(|(_, t)| t).collect()
    }

    /// The comments that end a block at `indent`: the longest run of pending trivia
    /// whose comments are at that column or deeper, without the blank lines ending it.
    fn take_tail(&mut self, indent: usize) -> Vec<Trivia> {
        let mut n = 0;
        for (i, (col, t)) in self.pending.iter().enumerate() {
            if matches!(t, Trivia::Comment(_)) && *col < indent {
                break;
            }
            n = i + 1;
        }
        while n > 0 && self.pending[n - 1].1 == Trivia::Blank {
            n -= 1;
        }
        self.pending.drain(..n).map(|(_, t)| t).collect()
    }

    fn file(mut self) -> Parsed<Vec<Doc>> {
        let mut docs: Vec<Doc> = Vec::new();
        loop {
            self.skip_trivia();
            let Some(line) = self.lines.get(self.pos) else {
                let rest: Vec<Trivia> = self.take_all();
                if rest.iter().any(|t| matches!(t, Trivia::Comment(_))) {
                    docs.push(Doc {
                        tail: rest,
                        ..Doc::default()
                    });
                }
                return Ok(docs);
            };
            let no = line.no;
            if line.indent == 0 && line.text.starts_with('%') {
                return Err(unsupported(no, "YAML directives (`%YAML`, `%TAG`)"));
            }
            if line.marker("...") {
                trailing(&line.text[3..], no)?;
                self.pos += 1;
                continue;
            }
            let mut doc = Doc::default();
            // Comments before a `---` head its document.
            let mut pre = Vec::new();
            if line.marker("---") {
                doc.marker_comment = trailing(&line.text[3..], no).map_err(|_| {
                    unsupported(
                        no,
                        "content on the `---` line (a tag, an anchor or a value)",
                    )
                })?;
                pre = self.take_all();
                self.pos += 1;
            }
            match self.peek() {
                Peek::Content(indent) => {
                    let no = self.line_no();
                    let text = &self.lines[self.pos].text;
                    if is_dash(text) || self.split_entry()?.is_none() {
                        return Err(unsupported(
                            no,
                            "a document that is not a mapping in block style",
                        ));
                    }
                    let mut root = self.map(indent)?;
                    pre.extend(split_header(&mut root.entries[0].leading));
                    doc.header = pre;
                    doc.root = Some(root);
                }
                Peek::End => {
                    pre.extend(self.take_all());
                    doc.tail = pre;
                }
            }
            docs.push(doc);
        }
    }

    /// If the current line is a mapping entry, the byte offset just after its `:`.
    fn split_entry(&self) -> Parsed<Option<usize>> {
        let line = &self.lines[self.pos];
        let text = line.text.as_str();
        let no = line.no;
        let first = text.chars().next().unwrap_or(' ');
        let after_key = match first {
            '"' | '\'' => match scan_quoted(text, 0, first) {
                Some(end) => end,
                None => return Ok(None),
            },
            '?' if text.len() == 1 || text[1..].starts_with([' ', '\t']) => {
                return Err(unsupported(no, "complex mapping keys (`? `)"));
            }
            '&' | '*' | '!' => {
                return Err(unsupported(no, "anchors, aliases and tags (`&`, `*`, `!`)"));
            }
            '[' | '{' | '#' | '|' | '>' => {
                return Ok(None);
            }
            '-' if is_dash(text) => return Ok(None),
            _ => {
                let mut prev = ' ';
                for (i, c) in text.char_indices() {
                    if c == '#' && (prev == ' ' || prev == '\t') {
                        return Ok(None);
                    }
                    if c == ':' && matches!(text[i + 1..].chars().next(), None | Some(' ' | '\t')) {
                        if text[..i].trim_end() == "<<" {
                            return Err(unsupported(no, "merge keys (`<<`)"));
                        }
                        return Ok(Some(i + 1));
                    }
                    prev = c;
                }
                return Ok(None);
            }
        };
        let rest = &text[after_key..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        if let Some(r) = trimmed.strip_prefix(':')
            && (r.is_empty() || r.starts_with([' ', '\t']))
        {
            return Ok(Some(text.len() - r.len()));
        }
        Ok(None)
    }

    /// A node in block context whose lines are indented at least `min` (a child of a
    /// node at column `parent`).
    fn block(&mut self, min: usize, parent: isize) -> Parsed<Node> {
        match self.peek() {
            Peek::Content(indent) if indent >= min => {
                if is_dash(&self.lines[self.pos].text) {
                    Ok(Node::Seq(self.seq(indent)?))
                } else if self.split_entry()?.is_some() {
                    Ok(Node::Map(self.map(indent)?))
                } else {
                    self.inline(0, parent)
                }
            }
            _ => Ok(Node::Empty),
        }
    }

    fn map(&mut self, indent: usize) -> Parsed<MapNode> {
        let mut map = MapNode::default();
        loop {
            match self.peek() {
                Peek::Content(i) if i == indent => {
                    let no = self.line_no();
                    let Some(after) = self.split_entry()? else {
                        return Err(unsupported(
                            no,
                            "a line that is not `key: value` in a mapping",
                        ));
                    };
                    let leading = self.take_all();
                    map.entries.push(self.entry(indent, after, leading)?);
                }
                Peek::Content(i) if i > indent => {
                    return Err(unsupported(self.line_no(), "unexpected indentation"));
                }
                _ => break,
            }
        }
        map.tail = self.take_tail(indent);
        Ok(map)
    }

    fn entry(&mut self, indent: usize, after: usize, leading: Vec<Trivia>) -> Parsed<Entry> {
        let line = &self.lines[self.pos];
        let no = line.no;
        let rest = &line.text[after..];
        let value_at = after + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        let rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() || rest.starts_with('#') {
            let key_comment = trailing(rest, no)?;
            self.pos += 1;
            let node = match self.peek() {
                Peek::Content(i) if i == indent && is_dash(&self.lines[self.pos].text) => {
                    Node::Seq(self.seq(indent)?)
                }
                Peek::Content(i) if i > indent => self.block(indent + 1, indent as isize)?,
                _ => Node::Empty,
            };
            Ok(Entry {
                leading,
                key_comment,
                node,
            })
        } else {
            Ok(Entry {
                leading,
                key_comment: None,
                node: self.inline(value_at, indent as isize)?,
            })
        }
    }

    fn seq(&mut self, indent: usize) -> Parsed<SeqNode> {
        let mut seq = SeqNode::default();
        loop {
            match self.peek() {
                Peek::Content(i) if i == indent && is_dash(&self.lines[self.pos].text) => {
                    let leading = self.take_all();
                    let no = self.line_no();
                    let text = self.lines[self.pos].text[1..].to_string();
                    let rest = text.trim_start_matches(' ');
                    if rest.starts_with('\t') {
                        return Err(unsupported(no, "a tab after `-`"));
                    }
                    let item = if rest.is_empty() || rest.starts_with('#') {
                        let dash_comment = trailing(rest, no)?;
                        self.pos += 1;
                        let node = match self.peek() {
                            Peek::Content(i) if i > indent => {
                                self.block(indent + 1, indent as isize)?
                            }
                            _ => Node::Empty,
                        };
                        Item {
                            leading,
                            dash_comment,
                            node,
                        }
                    } else {
                        // `- key: value`, `- - x`, `- value`: the rest of the line is a
                        // node at the column it starts at.
                        let col = indent + 1 + (text.len() - rest.len());
                        let line = &mut self.lines[self.pos];
                        line.indent = col;
                        line.text = rest.to_string();
                        Item {
                            leading,
                            dash_comment: None,
                            node: self.block(col, indent as isize)?,
                        }
                    };
                    seq.items.push(item);
                }
                Peek::Content(i) if i > indent => {
                    return Err(unsupported(self.line_no(), "unexpected indentation"));
                }
                _ => break,
            }
        }
        seq.tail = self.take_tail(indent);
        Ok(seq)
    }

    /// A node starting at byte `at` of the current line (a value after `key:` or on a
    /// line of its own): a scalar, a flow collection or a block scalar. Moves past it.
    fn inline(&mut self, at: usize, parent: isize) -> Parsed<Node> {
        let line = &self.lines[self.pos];
        let no = line.no;
        let text = &line.text[at..];
        let first = text.chars().next().unwrap_or(' ');
        let second = text[first.len_utf8()..].chars().next();
        match first {
            '|' | '>' => self.block_scalar(at, parent),
            '[' | '{' => {
                let (end_line, end) = self.scan_flow(at)?;
                let comment = trailing(&self.lines[end_line].text[end..], self.lines[end_line].no)?;
                self.pos = end_line + 1;
                Ok(Node::Flow { comment })
            }
            '"' | '\'' => {
                let (end_line, end) = self.scan_quoted_lines(at, first)?;
                let comment = trailing(&self.lines[end_line].text[end..], self.lines[end_line].no)?;
                self.pos = end_line + 1;
                Ok(Node::Scalar {
                    comment,
                    plain: None,
                })
            }
            '&' | '*' | '!' => Err(unsupported(no, "anchors, aliases and tags (`&`, `*`, `!`)")),
            '?' | ':' | '-' if matches!(second, None | Some(' ' | '\t')) => Err(unsupported(
                no,
                "a nested collection on the line of its key",
            )),
            '%' | '@' | '`' | '#' => Err(unsupported(no, "a reserved character")),
            _ => {
                // A plain scalar: up to a comment, continued on deeper lines.
                let mut comment = None;
                let mut end = text.len();
                let mut prev = ' ';
                for (i, c) in text.char_indices() {
                    if c == '#' && (prev == ' ' || prev == '\t') {
                        comment = Some(text[i + 1..].trim_end().to_string());
                        end = i;
                        break;
                    }
                    prev = c;
                }
                let mut plain = Some(text[..end].trim_end_matches([' ', '\t']).to_string());
                self.pos += 1;
                if comment.is_none() {
                    let mut j = self.pos;
                    while let Some(l) = self.lines.get(j) {
                        if l.is_blank() {
                            j += 1;
                            continue;
                        }
                        if (l.indent as isize) <= parent || l.is_comment() || l.is_marker() {
                            break;
                        }
                        j += 1;
                        self.pos = j;
                        plain = None;
                        if let Some(i) = l.text.find(" #").or_else(|| l.text.find("\t#")) {
                            comment = Some(l.text[i + 2..].trim_end().to_string());
                            break;
                        }
                    }
                }
                Ok(Node::Scalar { comment, plain })
            }
        }
    }

    /// A block scalar whose header starts at byte `at` of the current line.
    fn block_scalar(&mut self, at: usize, parent: isize) -> Parsed<Node> {
        let line = &self.lines[self.pos];
        let no = line.no;
        let text = &line.text[at..];
        let header_len = text.find([' ', '\t']).unwrap_or(text.len());
        let header = text[..header_len].to_string();
        let comment = trailing(&text[header_len..], no)?;
        let mut explicit = None;
        let mut keep = false;
        let mut chomp_seen = false;
        for c in header[1..].chars() {
            match c {
                '1'..='9' if explicit.is_none() => explicit = Some(c as usize - '0' as usize),
                '+' | '-' if !chomp_seen => {
                    chomp_seen = true;
                    keep = c == '+';
                }
                _ => {
                    return Err(unsupported(
                        no,
                        format!("the block scalar header `{header}`"),
                    ));
                }
            }
        }
        if parent < 0 {
            return Err(unsupported(no, "a document that is a block scalar"));
        }
        self.pos += 1;
        let start = self.pos;
        let content_indent = match explicit {
            Some(d) => Some(parent as usize + d),
            None => self.lines[start..]
                .iter()
                .find(|l| !l.is_blank())
                .filter(|l| l.indent as isize > parent)
                .map(|l| l.indent),
        };
        let mut lines = Vec::new();
        if let Some(ci) = content_indent {
            while let Some(l) = self.lines.get(self.pos) {
                if l.is_blank() {
                    let raw = l.raw();
                    if raw.contains('\t') {
                        return Err(unsupported(
                            l.no,
                            "a tab in an empty line of a block scalar",
                        ));
                    }
                    lines.push(raw.get(ci..).unwrap_or("").to_string());
                } else if l.indent >= ci {
                    lines.push(l.raw()[ci..].to_string());
                } else {
                    break;
                }
                self.pos += 1;
            }
        } else {
            // No content: blank lines up to the next node.
            while self.lines.get(self.pos).is_some_and(|l| l.is_blank()) {
                lines.push(String::new());
                self.pos += 1;
            }
        }
        let mut blanks = 0;
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
            blanks += 1;
        }
        let kept_blanks = if keep {
            blanks
        } else {
            self.pos -= blanks;
            0
        };
        Ok(Node::Block {
            header,
            comment,
            explicit,
            lines,
            kept_blanks,
        })
    }

    /// The end (line index, byte offset after the closing quote) of a quoted scalar
    /// starting at byte `at` of the current line, across lines.
    fn scan_quoted_lines(&self, at: usize, quote: char) -> Parsed<(usize, usize)> {
        let mut j = self.pos;
        let mut from = at + 1;
        let mut escaped = false;
        loop {
            let Some(l) = self.lines.get(j) else {
                return Err(unsupported(self.line_no(), "an unterminated quoted string"));
            };
            if j > self.pos && l.is_marker() {
                return Err(unsupported(
                    l.no,
                    "a document marker inside a quoted string",
                ));
            }
            let text = &l.text;
            let mut chars = text[from..].char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if escaped {
                    escaped = false;
                    continue;
                }
                if quote == '"' && c == '\\' {
                    escaped = true;
                } else if c == quote {
                    if quote == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                        continue;
                    }
                    return Ok((j, from + i + 1));
                }
            }
            // An escaped line break (`\` at the end of a line) continues the string.
            escaped = false;
            j += 1;
            from = 0;
        }
    }

    /// The end (line index, byte offset after the closing bracket) of a flow
    /// collection starting at byte `at` of the current line, across lines.
    fn scan_flow(&self, at: usize) -> Parsed<(usize, usize)> {
        let mut depth = 0usize;
        let mut j = self.pos;
        let mut from = at;
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut token_start = true;
        loop {
            let Some(l) = self.lines.get(j) else {
                return Err(unsupported(
                    self.line_no(),
                    "an unterminated flow collection",
                ));
            };
            if j > self.pos && l.is_marker() {
                return Err(unsupported(
                    l.no,
                    "a document marker inside a flow collection",
                ));
            }
            let text = &l.text;
            let mut prev = ' ';
            let mut chars = text[from..].char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if let Some(q) = quote {
                    if escaped {
                        escaped = false;
                    } else if q == '"' && c == '\\' {
                        escaped = true;
                    } else if c == q {
                        if q == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                            chars.next();
                        } else {
                            quote = None;
                        }
                    }
                    prev = c;
                    continue;
                }
                match c {
                    '[' | '{' => {
                        depth += 1;
                        token_start = true;
                    }
                    ']' | '}' => {
                        depth = depth.saturating_sub(1);
                        token_start = false;
                        if depth == 0 {
                            return Ok((j, from + i + 1));
                        }
                    }
                    ',' | ':' => token_start = true,
                    '"' | '\'' if token_start => quote = Some(c),
                    '#' if prev == ' ' || prev == '\t' || (i == 0 && from == 0) => {
                        return Err(unsupported(
                            l.no,
                            "a comment inside a flow collection (`[...]`, `{...}`)",
                        ));
                    }
                    ' ' | '\t' => {}
                    _ => token_start = false,
                }
                prev = c;
            }
            j += 1;
            from = 0;
            escaped = false;
        }
    }
}

/// The end (byte offset after the closing quote) of a quoted scalar starting at byte
/// `at` of `text`, on that line only.
fn scan_quoted(text: &str, at: usize, quote: char) -> Option<usize> {
    let mut chars = text[at + 1..].char_indices().peekable();
    let mut escaped = false;
    while let Some((i, c)) = chars.next() {
        if escaped {
            escaped = false;
        } else if quote == '"' && c == '\\' {
            escaped = true;
        } else if c == quote {
            if quote == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                chars.next();
                continue;
            }
            return Some(at + 1 + i + 1);
        }
    }
    None
}

/// Splits the comments that head a document off its first key's: those up to the
/// last blank line, and up to a `yaml-language-server` modeline.
fn split_header(first: &mut Vec<Trivia>) -> Vec<Trivia> {
    let modeline = first
        .iter()
        .rposition(|t| matches!(t, Trivia::Comment(c) if c.contains("yaml-language-server:")));
    let blank = first.iter().rposition(|t| *t == Trivia::Blank);
    match modeline.max(blank) {
        Some(i) => first.drain(..=i).collect(),
        None => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------
// Writing the canonical text.

struct Out {
    lines: Vec<String>,
    /// At the start of a block (or of the file): blank lines are dropped.
    at_start: bool,
    /// A blank line is due before the next line.
    blank: bool,
}

impl Out {
    fn line(&mut self, s: String) {
        if self.blank && !self.at_start {
            self.lines.push(String::new());
        }
        self.blank = false;
        self.at_start = false;
        self.lines.push(s);
    }
    /// A line of a block scalar's content, exactly.
    fn raw(&mut self, s: String) {
        self.lines.push(s);
    }
    fn start_block(&mut self) {
        self.at_start = true;
        self.blank = false;
    }
    fn trivia(&mut self, trivia: &[Trivia], indent: usize) {
        for t in trivia {
            match t {
                Trivia::Blank => self.blank = true,
                Trivia::Comment(c) => self.line(format!("{}#{c}", " ".repeat(indent))),
            }
        }
    }
}

fn comment_suffix(c: &Option<String>) -> String {
    c.as_ref().map(|c| format!("  #{c}")).unwrap_or_default()
}

fn mismatch(what: &str) -> FormatError {
    FormatError::Changed(format!(
        "the structure read does not match the values: {what}"
    ))
}

fn emit(docs: &[Doc], values: &[&Value]) -> Parsed<String> {
    let mut out = Out {
        lines: Vec::new(),
        at_start: true,
        blank: false,
    };
    let mut values = values.iter();
    let mut emitted = false;
    for doc in docs {
        let Some(root) = &doc.root else {
            out.trivia(&doc.tail, 0);
            continue;
        };
        let Some(Value::Object(obj)) = values.next().copied() else {
            return Err(mismatch("a document"));
        };
        if emitted {
            out.line(format!("---{}", comment_suffix(&doc.marker_comment)));
            out.start_block();
        } else if let Some(c) = &doc.marker_comment {
            out.line(format!("#{c}"));
        }
        out.trivia(&doc.header, 0);
        emit_map(&mut out, root, obj, 0, &[], None)?;
        emitted = true;
    }
    if values.next().is_some() {
        return Err(mismatch("the number of documents"));
    }
    if out.lines.is_empty() {
        return Ok(String::new());
    }
    let mut text = out.lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// The rank of `key` in a mapping at `path`: the documented order for a task and its
/// `schedule_config` (an overlay document's `patch`/`remove` before them); other keys
/// keep their order, after the documented ones.
fn rank(path: &[&str], key: &str) -> usize {
    // An overlay's `patch:`/`remove:` names the task it changes: first.
    if path.is_empty() && (key == "patch" || key == "remove") {
        return 0;
    }
    let order: &[&str] = match path {
        [] => FIELDS,
        ["schedule_config"] => SCHEDULE_FIELDS,
        _ => return 0,
    };
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

fn emit_map(
    out: &mut Out,
    map: &MapNode,
    obj: &Map<String, Value>,
    indent: usize,
    path: &[&str],
    prefix: Option<String>,
) -> Parsed<()> {
    if map.entries.len() != obj.len() {
        return Err(mismatch("the number of keys of a mapping"));
    }
    let mut order: Vec<(usize, (&String, &Value), &Entry)> = obj
        .iter()
        .zip(&map.entries)
        .map(|(kv, e)| (rank(path, kv.0), kv, e))
        .collect();
    order.sort_by_key(|(r, _, _)| *r);
    let mut prefix = prefix;
    for (_, (key, value), entry) in order {
        let head = match prefix.take() {
            Some(p) => p,
            None => {
                out.trivia(&entry.leading, indent);
                " ".repeat(indent)
            }
        };
        let mut sub = path.to_vec();
        sub.push(key.as_str());
        let head = format!("{head}{}:", scalar_text(key, Ctx::Block, false));
        emit_value(
            out,
            head,
            &entry.key_comment,
            &entry.node,
            value,
            indent,
            &sub,
        )?;
    }
    out.trivia(&map.tail, indent);
    Ok(())
}

fn emit_seq(
    out: &mut Out,
    seq: &SeqNode,
    arr: &[Value],
    indent: usize,
    path: &[&str],
    prefix: Option<String>,
) -> Parsed<()> {
    if seq.items.len() != arr.len() {
        return Err(mismatch("the number of items of a list"));
    }
    let mut prefix = prefix;
    let mut sub = path.to_vec();
    sub.push("[]");
    let path = sub.as_slice();
    for (item, value) in seq.items.iter().zip(arr) {
        out.trivia(&item.leading, indent);
        let dash = format!("{}- ", prefix.take().unwrap_or_else(|| " ".repeat(indent)));
        match (&item.node, value) {
            (Node::Map(m), Value::Object(obj)) if !m.entries.is_empty() => {
                if let Some(c) = &item.dash_comment {
                    out.line(format!("{}#{c}", " ".repeat(indent)));
                }
                out.trivia(&m.entries[0].leading, indent);
                emit_map(out, m, obj, indent + 2, path, Some(dash))?;
            }
            (Node::Seq(s), Value::Array(inner)) if !s.items.is_empty() => {
                if let Some(c) = &item.dash_comment {
                    out.line(format!("{}#{c}", " ".repeat(indent)));
                }
                emit_seq(out, s, inner, indent + 2, path, Some(dash))?;
            }
            _ => emit_value(
                out,
                dash.trim_end().to_string(),
                &item.dash_comment,
                &item.node,
                value,
                indent,
                path,
            )?,
        }
    }
    out.trivia(&seq.tail, indent);
    Ok(())
}

/// Writes a value after `head` (`key:` or `-`) of a node at column `indent`.
fn emit_value(
    out: &mut Out,
    head: String,
    head_comment: &Option<String>,
    node: &Node,
    value: &Value,
    indent: usize,
    path: &[&str],
) -> Parsed<()> {
    let forced = path == ["schedule_config", "cron_expression"];
    // One comment per line: a comment of the key's line goes above it when the value
    // has its own.
    let one_comment = |out: &mut Out, own: &Option<String>| -> Option<String> {
        match (head_comment, own) {
            (Some(h), Some(_)) => {
                out.line(format!("{}#{h}", " ".repeat(indent)));
                own.clone()
            }
            (Some(h), None) => Some(h.clone()),
            (None, own) => own.clone(),
        }
    };
    match node {
        Node::Empty | Node::Scalar { .. } => {
            if value.is_array() || value.is_object() {
                return Err(mismatch("a scalar"));
            }
            let (own, plain) = match node {
                Node::Scalar { comment, plain } => (comment.clone(), plain.as_deref()),
                _ => (None, None),
            };
            let c = one_comment(out, &own);
            let text = match (value, plain) {
                (Value::String(s), _) => scalar_text(s, Ctx::Block, forced),
                (Value::Number(_), Some(raw)) => raw.to_string(),
                (v, _) => scalar_text_of(v, Ctx::Block, forced),
            };
            out.line(format!("{head} {text}{}", comment_suffix(&c)));
        }
        Node::Flow { comment } => {
            if !(value.is_array() || value.is_object()) {
                return Err(mismatch("a flow collection"));
            }
            let c = one_comment(out, comment);
            out.line(format!(
                "{head} {}{}",
                flow_text(value, path),
                comment_suffix(&c)
            ));
        }
        Node::Block {
            header,
            comment,
            explicit,
            lines,
            kept_blanks,
        } => {
            if !value.is_string() {
                return Err(mismatch("a block scalar"));
            }
            let c = one_comment(out, comment);
            out.line(format!("{head} {header}{}", comment_suffix(&c)));
            let ci = indent + explicit.unwrap_or(2);
            for l in lines {
                out.raw(match l.is_empty() {
                    true => String::new(),
                    false => format!("{}{l}", " ".repeat(ci)),
                });
            }
            for _ in 0..*kept_blanks {
                out.raw(String::new());
            }
        }
        Node::Map(m) => {
            let Value::Object(obj) = value else {
                return Err(mismatch("a mapping"));
            };
            out.line(format!("{head}{}", comment_suffix(head_comment)));
            out.start_block();
            emit_map(out, m, obj, indent + 2, path, None)?;
        }
        Node::Seq(s) => {
            let Value::Array(arr) = value else {
                return Err(mismatch("a list"));
            };
            out.line(format!("{head}{}", comment_suffix(head_comment)));
            out.start_block();
            emit_seq(out, s, arr, indent + 2, path, None)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Scalars.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Block,
    Flow,
}

/// A value in flow style on one line (`[a, "b,c"]`, `{k: v}`).
fn flow_text(value: &Value, path: &[&str]) -> String {
    match value {
        Value::Array(items) => {
            let mut sub = path.to_vec();
            sub.push("[]");
            let items: Vec<String> = items.iter().map(|v| flow_text(v, &sub)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let mut pairs: Vec<(usize, String)> = map
                .iter()
                .map(|(k, v)| {
                    let mut sub = path.to_vec();
                    sub.push(k.as_str());
                    (
                        rank(path, k),
                        format!(
                            "{}: {}",
                            scalar_text(k, Ctx::Flow, false),
                            flow_text(v, &sub)
                        ),
                    )
                })
                .collect();
            pairs.sort_by_key(|(r, _)| *r);
            let pairs: Vec<String> = pairs.into_iter().map(|(_, p)| p).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        Value::String(s) => {
            scalar_text(s, Ctx::Flow, path == ["schedule_config", "cron_expression"])
        }
        v => scalar_text_of(v, Ctx::Flow, false),
    }
}

/// A number, boolean or null as YAML reads it back (a string goes to [`scalar_text`]).
fn scalar_text_of(value: &Value, ctx: Ctx, forced: bool) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_text(s, ctx, forced),
        v => flow_text(v, &[]),
    }
}

/// A string: plain when YAML reads it back as the same string, else double-quoted.
fn scalar_text(s: &str, ctx: Ctx, force_quotes: bool) -> String {
    if !force_quotes && plain_ok(s, ctx) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

fn double_quoted(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters written as escapes: those that could hide or reorder text, and those
/// YAML reads as line breaks or a byte-order mark.
fn needs_escape(c: char) -> bool {
    crate::load::diagnostic::is_unsafe_char(c)
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        )
}

fn plain_ok(s: &str, ctx: Ctx) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.starts_with("...")
        || s.starts_with([' ', '\t'])
        || s.ends_with([' ', '\t', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s == "<<"
        || s == "="
        || retyped(s)
    {
        return false;
    }
    if s.chars()
        .any(|c| c.is_control() || needs_escape(c) || c == '\t')
    {
        return false;
    }
    if ctx == Ctx::Flow && s.contains([',', '[', ']', '{', '}', ':', '#']) {
        return false;
    }
    true
}

/// Whether YAML (1.2, or 1.1 as other tools read it) would read the plain `s` as
/// something other than a string: null, a boolean (`yes`, `on`...; not the single
/// letters `y` and `n`, which common parsers read as strings), a number in any
/// notation, or a date.
fn retyped(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off"
    ) {
        return true;
    }
    let unsigned = lower
        .strip_prefix('+')
        .or_else(|| lower.strip_prefix('-'))
        .unwrap_or(&lower);
    if matches!(unsigned, ".inf" | ".nan") {
        return true;
    }
    for (prefix, digits) in [
        ("0x", "0123456789abcdef_"),
        ("0o", "01234567_"),
        ("0b", "01_"),
    ] {
        if let Some(rest) = unsigned.strip_prefix(prefix)
            && !rest.is_empty()
            && rest.chars().all(|c| digits.contains(c))
        {
            return true;
        }
    }
    number_like(unsigned) || date_like(s)
}

/// Digits with `_`, `.` and `:` (YAML 1.1's sexagesimal), then an optional exponent.
fn number_like(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut digits = false;
    while i < b.len() && matches!(b[i], b'0'..=b'9' | b'_' | b'.' | b':') {
        digits |= b[i].is_ascii_digit();
        i += 1;
    }
    if !digits {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if b[i] != b'e' {
        return false;
    }
    i += 1;
    if i < b.len() && matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    i < b.len() && b[i..].iter().all(u8::is_ascii_digit)
}

/// `YYYY-M-D` at the start (YAML 1.1 timestamps).
fn date_like(s: &str) -> bool {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let d: String = rest.chars().take_while(char::is_ascii_digit).collect();
    y.len() == 4
        && y.bytes().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&m.len())
        && m.bytes().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&d.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        match format_source(src) {
            Ok(s) => s,
            Err(e) => panic!("{e}\n--- input ---\n{src}"),
        }
    }

    #[track_caller]
    fn same(src: &str) {
        assert_eq!(fmt(src), src);
    }

    #[test]
    fn keys_take_the_documented_order_and_comments_move_with_them() {
        let src = "\
# The header stays on top.

task_config:              # free-form
  b: 1
  a: [x, y]
# the schedule
schedule_config:
  enabled: 1
  schedule_type: CRON # the type
  cron_expression: 0 0 2 * * ?
name: n   # the name
";
        assert_eq!(
            fmt(src),
            "\
# The header stays on top.

name: n  # the name
# the schedule
schedule_config:
  cron_expression: \"0 0 2 * * ?\"
  schedule_type: CRON  # the type
  enabled: 1
task_config:  # free-form
  b: 1
  a: [x, y]
"
        );
    }

    #[test]
    fn strings_are_quoted_where_yaml_would_read_something_else() {
        let src = "name: 'n'\ndir_id: \"0\"\nuser_id: 'yes'\ndescription: \"1.0\"\npath: 'null'\nduty_person: \"2026-01-02\"\nupdate_type: 'a: b'\ndata_source_type: \"DLI\"\ntask_config:\n  x: \"123e45\"\n  y: \"0833a573fe80d5401f6dc010a775569a\"\n  z: \"\"\n  w: \"it's\"\n  v: \"tab\\there\"\n  u: \"\\u202e\"\n  '1': one\n";
        assert_eq!(
            fmt(src),
            "name: n\ndescription: \"1.0\"\nuser_id: \"yes\"\ndir_id: \"0\"\npath: \"null\"\nduty_person: \"2026-01-02\"\nupdate_type: \"a: b\"\ndata_source_type: DLI\ntask_config:\n  x: \"123e45\"\n  y: 0833a573fe80d5401f6dc010a775569a\n  z: \"\"\n  w: it's\n  v: \"tab\\there\"\n  u: \"\\u202e\"\n  \"1\": one\n"
        );
    }

    #[test]
    fn indentation_lists_and_flow_collections_are_canonical() {
        let src = "name: n\nparameter_config:\n- description:   Owning team\n  type: string\n-   {type: x,   description: \"a, b\"}\ntask_config:\n    databaseName: [ sales,  'x' ]\n    nested:\n        - - 1\n          - 2\n        -\n          k: v\n";
        assert_eq!(
            fmt(src),
            "name: n\nparameter_config:\n  - description: Owning team\n    type: string\n  - {type: x, description: \"a, b\"}\ntask_config:\n  databaseName: [sales, x]\n  nested:\n    - - 1\n      - 2\n    - k: v\n"
        );
    }

    #[test]
    fn block_scalars_keep_their_content() {
        same(
            "name: n\ndescription: |\n  line one\n    indented\n\n  after a blank\ntask_config:\n  a: >-\n    folded\n    text\n  b: |+\n    kept\n\n  c: x\n",
        );
        assert_eq!(
            fmt("name: n\ndescription: |2\n      two extra\n   one extra\n"),
            "name: n\ndescription: |2\n      two extra\n   one extra\n"
        );
        assert_eq!(
            fmt("task_config:\n    text: |\n        deep\n          deeper\nname: n\n"),
            "name: n\ntask_config:\n  text: |\n    deep\n      deeper\n"
        );
    }

    #[test]
    fn multi_line_scalars_become_one_line() {
        assert_eq!(
            fmt("name: a\n  b\n\n  c\ndescription: \"x\n  y\"\n"),
            "name: \"a b\\nc\"\ndescription: x y\n"
        );
    }

    #[test]
    fn line_ends_become_lf_without_a_byte_order_mark() {
        assert_eq!(
            fmt("name: x\r\ntask_config:\r\n  a: 1\r\n"),
            "name: x\ntask_config:\n  a: 1\n"
        );
        assert_eq!(fmt("\u{feff}name: x\r\n"), "name: x\n");
        assert!(matches!(
            format_source("name: \"a\u{2028}b\"\n"),
            Err(FormatError::Unsupported { line: 1, .. })
        ));
    }

    #[test]
    fn documents_stay_documents() {
        assert_eq!(
            fmt("---\n# first\nname: a\n...\n---   # second\nname: b\n# end\n"),
            "# first\nname: a\n---  # second\nname: b\n# end\n"
        );
    }

    #[test]
    fn blank_lines_are_at_most_one_and_never_at_the_start_of_a_block() {
        assert_eq!(
            fmt("\n\nname: a\n\n\n\ntask_config:\n\n  a: 1\n\n\n  b: 2\n\n"),
            "name: a\n\ntask_config:\n  a: 1\n\n  b: 2\n"
        );
    }

    #[test]
    fn canonical_text_is_a_fixed_point() {
        for src in [
            "name: n\nschedule_config:\n  cron_expression: \"0 0 2 * * ?\"\n  schedule_type: CRON\n",
            "# c\nname: x  # y\ntask_config:\n  a: [1, 2.5, true, null, s]\n  b: {k: v}\n",
        ] {
            same(src);
        }
    }

    #[test]
    fn unsupported_constructs_leave_the_file_alone() {
        for (src, what) in [
            ("name: &a x\ndescription: *a\n", "anchors"),
            ("? a\n: b\n", "complex"),
            ("%YAML 1.2\n---\nname: x\n", "directives"),
            (
                "name: x\ntask_config: [a, # c\n  b]\n",
                "comment inside a flow",
            ),
            ("<<: {name: x}\n", "merge"),
            ("[a, b]\n", "not a mapping"),
        ] {
            match format_source(src) {
                Err(FormatError::Unsupported { what: w, .. }) => {
                    assert!(w.contains(what), "{src:?}: {w}")
                }
                other => panic!("{src:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn retyping_is_recognised() {
        for s in [
            "0",
            "-1",
            "+1",
            "1.0",
            ".5",
            "1e3",
            "1E-3",
            "0x1f",
            "0o17",
            "0b101",
            "1_000",
            "1:30",
            ".inf",
            "-.Inf",
            ".NaN",
            "yes",
            "No",
            "ON",
            "off",
            "~",
            "null",
            "NULL",
            "True",
            "2026-12-01",
            "2026-1-2T00:00:00 +08",
        ] {
            assert!(retyped(s), "{s}");
        }
        for s in [
            "0833a573", "1e", "abc", "1a", "v1.0", "12:30 pm", "2026-12", "y", "n",
        ] {
            assert!(!retyped(s), "{s}");
        }
    }
}
