//! From text to logical lines: parser directives, comments, line continuations, and the raw
//! lines of heredoc bodies (which the instruction parser asks for, since only it knows when an
//! instruction has heredocs).

use super::ParseError;

/// Reads a Dockerfile line by line.
pub(crate) struct Lexer<'a> {
    /// The physical lines, without their `\n` (or `\r\n`: CRLF files are accepted).
    lines: Vec<&'a str>,
    /// The index of the next line to read.
    next: usize,
    escape: char,
    syntax: Option<String>,
}

/// One piece of a logical line: where its text came from, to report errors at the physical
/// line and column.
struct Segment<'a> {
    /// Offset of the piece in [`Logical::content`].
    start: usize,
    /// Its physical line (1-based).
    line: usize,
    /// Byte offset of the piece in its physical line.
    col: usize,
    /// The physical line, to count characters for the column.
    phys: &'a str,
}

/// An instruction's line, continuations joined.
pub(crate) struct Logical<'a> {
    /// The joined text, as Docker joins it: continuation characters removed, pieces put
    /// together with nothing in between (the whitespace the pieces hold stays).
    pub(crate) content: String,
    /// The display text (see `Instruction::text`): the same, but the whitespace around each
    /// join made one space.
    pub(crate) text: String,
    /// The first physical line (1-based).
    pub(crate) line: usize,
    segments: Vec<Segment<'a>>,
    /// The display text's last piece ended in whitespace: a space goes before the next one.
    pending_space: bool,
}

impl<'a> Logical<'a> {
    fn push(&mut self, piece: &str, line: usize, col: usize, phys: &'a str) {
        self.segments.push(Segment {
            start: self.content.len(),
            line,
            col,
            phys,
        });
        self.content.push_str(piece);
        let body = piece.trim();
        if body.is_empty() {
            self.pending_space |= !piece.is_empty();
            return;
        }
        if !self.text.is_empty() && (self.pending_space || piece.starts_with(char::is_whitespace)) {
            self.text.push(' ');
        }
        self.text.push_str(body);
        self.pending_space = piece.ends_with(char::is_whitespace);
    }

    /// The physical line and column (1-based, in characters) of a byte offset in `content`.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let Some(seg) = self.segments.iter().rev().find(|s| s.start <= offset) else {
            return (self.line, 1);
        };
        let mut b = (seg.col + (offset - seg.start)).min(seg.phys.len());
        while !seg.phys.is_char_boundary(b) {
            b -= 1;
        }
        (seg.line, seg.phys[..b].chars().count() + 1)
    }

    /// An error at a byte offset of `content`.
    pub(crate) fn error(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let (line, column) = self.position(offset);
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// Whether a line (its leading whitespace removed) ends with a line continuation: the escape
/// character, then only spaces or tabs, and not itself escaped. Returns the line without the
/// continuation (the whitespace before it stays), as BuildKit does. Like BuildKit, a run of
/// escape characters at the end is a continuation only when it is a single one.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before, true);
        }
    }
    (line, false)
}

/// A parser directive line (`# name=value`, spaces allowed around each part): its name and
/// value.
fn directive(line: &str) -> Option<(&str, &str)> {
    // Go's `\s` in BuildKit's pattern: ASCII space, tab, CR, LF, form feed.
    let ws = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c');
    let rest = line.trim_start_matches(char::is_whitespace).strip_prefix('#')?;
    let rest = rest.trim_start_matches(ws);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let value = rest.trim_start_matches(ws).strip_prefix('=')?.trim_matches(ws);
    (!value.is_empty()).then_some((name, value))
}

impl<'a> Lexer<'a> {
    /// Splits the text into lines and reads the parser directives at its top.
    pub(crate) fn new(text: &'a str) -> Result<Self, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let mut lx = Lexer {
            lines,
            next: 0,
            escape: '\\',
            syntax: None,
        };
        let (mut seen_escape, mut seen_check) = (false, false);
        // Directives are the leading comments of the form `# name=value` with a known name;
        // the first other line (blank, comment or instruction) ends them.
        while let Some((name, value)) = lx.lines.get(lx.next).and_then(|l| directive(l)) {
            let line = lx.next + 1;
            let at = |message: String| ParseError {
                line,
                column: 1,
                message,
            };
            let seen = match name.to_ascii_lowercase().as_str() {
                "escape" => {
                    if !seen_escape {
                        lx.escape = match value {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(at(format!(
                                    "invalid escape directive value {value:?} (expected ` or \\)"
                                )));
                            }
                        };
                    }
                    std::mem::replace(&mut seen_escape, true)
                }
                "syntax" => lx.syntax.replace(value.to_string()).is_some(),
                // BuildKit's lint settings: accepted so they don't end the directives.
                "check" => std::mem::replace(&mut seen_check, true),
                _ => break,
            };
            if seen {
                return Err(at(format!(
                    "only one {} parser directive can be used",
                    name.to_ascii_lowercase()
                )));
            }
            lx.next += 1;
        }
        Ok(lx)
    }

    /// The escape character (`# escape=`).
    pub(crate) fn escape(&self) -> char {
        self.escape
    }

    /// The `# syntax=` directive.
    pub(crate) fn syntax(&self) -> Option<&str> {
        self.syntax.as_deref()
    }

    /// The next instruction's line, continuations joined, or None at the end. Comment lines
    /// and blank lines are skipped, inside a continuation too (as Docker does); a continuation
    /// at the end of the file just ends the instruction.
    pub(crate) fn next_logical(&mut self) -> Option<Logical<'a>> {
        while let Some(&phys) = self.lines.get(self.next) {
            self.next += 1;
            let trimmed = phys.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            let (piece, mut more) = trim_continuation(trimmed, self.escape);
            if !more && piece.is_empty() {
                continue;
            }
            let mut lg = Logical {
                content: String::with_capacity(piece.len()),
                text: String::with_capacity(piece.len()),
                line: self.next,
                segments: Vec::with_capacity(1),
                pending_space: false,
            };
            lg.push(piece, self.next, phys.len() - trimmed.len(), phys);
            while more {
                let Some(&phys) = self.lines.get(self.next) else { break };
                self.next += 1;
                let t = phys.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let (piece, m) = trim_continuation(phys, self.escape);
                lg.push(piece, self.next, 0, phys);
                more = m;
            }
            return Some(lg);
        }
        None
    }

    /// The body of a heredoc that starts on the next line: the lines up to the one that is
    /// exactly `name` (after removing leading tabs when `strip_tabs`), each followed by `\n`,
    /// as written (tabs included). None when the text ends first.
    pub(crate) fn read_heredoc(&mut self, name: &str, strip_tabs: bool) -> Option<String> {
        let mut body = String::new();
        while let Some(&line) = self.lines.get(self.next) {
            self.next += 1;
            let candidate = if strip_tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if candidate == name {
                return Some(body);
            }
            body.push_str(line);
            body.push('\n');
        }
        None
    }
}
