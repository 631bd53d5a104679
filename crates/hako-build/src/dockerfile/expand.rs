//! Word expansion as Docker's shell lexer does it (BuildKit's `frontend/dockerfile/shell`):
//! quotes, escapes and variables in the arguments of ENV, ARG, LABEL, COPY, ADD, WORKDIR,
//! USER, EXPOSE, VOLUME, STOPSIGNAL and FROM. No command substitution, no globbing: those are
//! the shell's business, in RUN.

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong (`unterminated quote ...`, `bad substitution`, or the message of
    /// `${VAR:?message}`).
    pub message: String,
    /// The byte offset in the word where the faulty part starts (the opening quote, the `$`).
    pub offset: usize,
}

/// One word as Docker's shell lexer processes it: quotes removed (`'...'` literal, `"..."`
/// with `$` and escapes), escapes, `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
/// `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}` (error), and BuildKit's `${VAR#pattern}`,
/// `${VAR##pattern}`, `${VAR%pattern}`, `${VAR%%pattern}`, `${VAR/pattern/replacement}`,
/// `${VAR//pattern/replacement}` (`*` and `?` wildcards). Unset vars expand to "".
///
/// Outside quotes the escape character makes the next character literal (`\$` is a dollar;
/// `\n` is `n`, as in Docker); inside double quotes it only escapes `"`, `$` and itself.
pub fn expand(word: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut sh = Shell::new(word, escape, lookup, Mode::Word);
    sh.process_stop_on(None, false, None)
}

/// Several words (EXPOSE, VOLUME/COPY sources in shell form...): split on unquoted whitespace,
/// then expand each. As Docker does, the value of an unquoted `$VAR` is split too
/// (`$PORTS` with `80 443` gives two words) while a quoted one is not, and an empty quoted
/// word (`""`) gives no word.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    let mut sh = Shell::new(text, escape, lookup, Mode::Word);
    let mut words = Words::default();
    sh.process_stop_on(None, false, Some(&mut words))?;
    Ok(words.finish())
}

/// The body of a heredoc whose delimiter was not quoted ([`super::Heredoc::expand`]), as
/// BuildKit expands it: `$VAR` and `${...}` as in [`expand`], and `\` escapes the next
/// character (`\$` is a dollar), but quotes are ordinary characters: the body is a file, not a
/// word. The escape character is always `\` here, whatever `# escape=` says (as BuildKit).
pub fn expand_heredoc(content: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut sh = Shell::new(content, '\\', lookup, Mode::Raw);
    sh.process_stop_on(None, false, None)
}

/// Checks a word's syntax (quotes closed, `${...}` well formed) without values: what the
/// parser runs on the words the executor will expand, to report mistakes with their place.
pub(crate) fn check(word: &str, escape: char) -> Result<(), ExpandError> {
    let none = |_: &str| None;
    let mut sh = Shell::new(word, escape, &none, Mode::Check);
    sh.process_stop_on(None, false, None).map(drop)
}

/// How deep `${a:-${b:-...}}` may nest: deeper is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A Dockerfile word: quotes are processed.
    Word,
    /// Heredoc bodies: quotes are ordinary characters.
    Raw,
    /// Syntax only: like `Word`, but `${VAR:?}` does not fail (values are unknown).
    Check,
}

struct Shell<'w, 'f> {
    src: &'w str,
    pos: usize,
    escape: char,
    lookup: &'f dyn Fn(&str) -> Option<String>,
    mode: Mode,
    /// Escapes are kept in the output (for patterns, which handle `\*` themselves).
    raw_escapes: bool,
    depth: usize,
}

/// Word splitting of [`expand_words`], as BuildKit's: literal whitespace and whitespace in
/// unquoted variable values separate words; quoted text never does.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError {
        message: message.into(),
        offset,
    })
}

/// The special parameters of POSIX shells (`$@`, `$?`...): a name of one character.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl<'w, 'f> Shell<'w, 'f> {
    fn new(src: &'w str, escape: char, lookup: &'f dyn Fn(&str) -> Option<String>, mode: Mode) -> Self {
        Shell {
            src,
            pos: 0,
            escape,
            lookup,
            mode,
            raw_escapes: false,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn get(&self, name: &str) -> Option<String> {
        match self.mode {
            Mode::Check => None,
            _ => (self.lookup)(name),
        }
    }

    /// Processes up to `stop` (consumed) or the end. Words are collected only at the top
    /// level of [`expand_words`].
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut Words>,
    ) -> Result<String, ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let mut result = String::new();
        let quotes = self.mode != Mode::Raw;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.bump();
                self.raw_escapes = saved;
                return Ok(result);
            }
            if c == '$' {
                let v = self.dollar()?;
                if let Some(w) = words.as_deref_mut() {
                    w.add_str(&v);
                }
                result.push_str(&v);
            } else if quotes && (c == '\'' || c == '"') {
                let v = if c == '\'' {
                    self.single_quote()?
                } else {
                    self.double_quote()?
                };
                if let Some(w) = words.as_deref_mut() {
                    w.add_raw_str(&v);
                }
                result.push_str(&v);
            } else {
                self.bump();
                if c == self.escape {
                    if self.raw_escapes {
                        result.push(c);
                        if let Some(w) = words.as_deref_mut() {
                            w.add_raw_char(c);
                        }
                    }
                    // An escape at the very end is dropped.
                    let Some(n) = self.bump() else { break };
                    if let Some(w) = words.as_deref_mut() {
                        w.add_raw_char(n);
                    }
                    result.push(n);
                } else {
                    if let Some(w) = words.as_deref_mut() {
                        w.add_char(c);
                    }
                    result.push(c);
                }
            }
        }
        self.raw_escapes = saved;
        match stop {
            Some(s) => err(
                self.pos,
                format!("unexpected end of text while looking for matching {s}"),
            ),
            None => Ok(result),
        }
    }

    /// `'...'`: everything literal up to the next `'` (which can't be escaped).
    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let rest = &self.src[self.pos..];
        match rest.find('\'') {
            Some(end) => {
                self.pos += end + 1;
                Ok(rest[..end].to_string())
            }
            None => err(start, "unterminated quote (missing closing ')"),
        }
    }

    /// `"..."`: `$` is expanded; the escape character escapes `"`, `$` and itself and is
    /// kept before anything else.
    fn double_quote(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => return err(start, "unterminated quote (missing closing \")"),
                Some('"') => {
                    self.bump();
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                }
                Some(mut c) => {
                    self.bump();
                    if c == self.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.bump();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    /// A variable name after `$`: letters, digits and `_`; or only digits (`$1`); or one
    /// special parameter (`$@`). Empty when none follows (the `$` is then literal).
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.bump();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.bump();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.bump();
            name.push(c);
        }
        name
    }

    /// `$NAME`, `${NAME}` and `${NAME<op>word}`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        let start = self.pos;
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.bump();
        let missing = |_| ExpandError {
            message: "syntax error: missing '}'".into(),
            offset: start,
        };
        match self.peek() {
            None => return Err(missing(())),
            Some('{' | '}' | ':') => return err(start, "syntax error: bad substitution"),
            Some(_) => {}
        }
        if self.depth >= MAX_DEPTH {
            return err(start, format!("substitutions nested more than {MAX_DEPTH} deep"));
        }
        let name = self.name();
        let Some(c) = self.bump() else { return Err(missing(())) };
        self.depth += 1;
        let r = match c {
            '}' => Ok(self.get(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (null_is_unset, op) = match c {
                    ':' => match self.bump() {
                        Some(op @ ('+' | '-' | '?' | '#' | '%')) => (true, op),
                        Some(op) => return err(start, format!("unsupported modifier (:{op}) in substitution")),
                        None => return Err(missing(())),
                    },
                    op => (false, op),
                };
                let word = self
                    .process_stop_on(Some('}'), op == '#' || op == '%', None)
                    .map_err(|e| if self.pos >= self.src.len() { missing(()) } else { e })?;
                self.modifier(&name, null_is_unset, op, word, start)
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.bump();
                }
                let pattern = self.process_stop_on(Some('/'), true, None).map_err(|e| {
                    if self.pos >= self.src.len() {
                        ExpandError {
                            message: "syntax error: missing '/' in ${}".into(),
                            offset: start,
                        }
                    } else {
                        e
                    }
                })?;
                let replacement = self.process_stop_on(Some('}'), true, None).map_err(|e| {
                    if self.pos >= self.src.len() {
                        missing(())
                    } else {
                        e
                    }
                })?;
                let value = self.get(&name).unwrap_or_default();
                let toks = compile(&pattern).map_err(|m| ExpandError {
                    message: format!("invalid pattern ({pattern}) in substitution: {m}"),
                    offset: start,
                })?;
                Ok(replace(&toks, &value, &replacement, all))
            }
            c => err(start, format!("unsupported modifier ({c}) in substitution")),
        };
        self.depth -= 1;
        r
    }

    fn modifier(
        &self,
        name: &str,
        null_is_unset: bool,
        op: char,
        word: String,
        start: usize,
    ) -> Result<String, ExpandError> {
        let value = self.get(name);
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' => Ok(if unset { word } else { value.unwrap_or_default() }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if self.mode == Mode::Check || !unset {
                    return Ok(value.unwrap_or_default());
                }
                let message = if !word.is_empty() {
                    word
                } else if value.is_none() {
                    "is not allowed to be unset".into()
                } else {
                    "is not allowed to be empty".into()
                };
                err(start, format!("{name}: {message}"))
            }
            _ => {
                // `#`/`%` remove the shortest matching prefix/suffix, `##`/`%%` the longest.
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(p) => (true, p),
                    None => (false, word.as_str()),
                };
                let toks = compile(pattern).map_err(|m| ExpandError {
                    message: format!("invalid pattern ({pattern}) in substitution: {m}"),
                    offset: start,
                })?;
                let value = value.unwrap_or_default();
                Ok(if op == '#' {
                    trim_prefix(&toks, &value, greedy)
                } else {
                    trim_suffix(&toks, &value, greedy)
                })
            }
        }
    }
}

/// A piece of a `${VAR#pattern}` pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of characters.
    Any,
    /// `?`: one character.
    One,
    Lit(char),
}

/// Compiles a shell pattern: `*`, `?`, and `\` escaping `*`, `?`, `\` (and `}` or `/`,
/// which need it inside `${}`); any other escape is refused, as BuildKit does.
fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::with_capacity(pattern.len());
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        toks.push(match c {
            '*' => Tok::Any,
            '?' => Tok::One,
            '\\' => match it.peek() {
                Some('}' | '/') => continue,
                Some(&n @ ('*' | '?' | '\\')) => {
                    it.next();
                    Tok::Lit(n)
                }
                Some(n) => return Err(format!("invalid escape '\\{n}'")),
                None => return Err("invalid escape at the end".into()),
            },
            c => Tok::Lit(c),
        });
    }
    Ok(toks)
}

/// The lengths `n` for which `toks` matches `value[..n]` exactly: the shortest and the
/// longest. A set-of-states simulation: linear in the value for a given pattern.
fn match_lengths(toks: &[Tok], value: &[char]) -> Option<(usize, usize)> {
    let m = toks.len();
    let mut states = vec![false; m + 1];
    let mut next = vec![false; m + 1];
    let closure = |s: &mut Vec<bool>| {
        for i in 0..m {
            if s[i] && toks[i] == Tok::Any {
                s[i + 1] = true;
            }
        }
    };
    states[0] = true;
    closure(&mut states);
    let mut found: Option<(usize, usize)> = None;
    let record = |n: usize, found: &mut Option<(usize, usize)>| {
        *found = Some(found.map_or((n, n), |(s, _)| (s, n)));
    };
    if states[m] {
        record(0, &mut found);
    }
    for (i, &ch) in value.iter().enumerate() {
        next.iter_mut().for_each(|s| *s = false);
        let mut alive = false;
        for j in 0..m {
            if !states[j] {
                continue;
            }
            match toks[j] {
                Tok::Any => next[j] = true,
                Tok::One => next[j + 1] = true,
                Tok::Lit(c) if c == ch => next[j + 1] = true,
                Tok::Lit(_) => continue,
            }
            alive = true;
        }
        if !alive {
            break;
        }
        closure(&mut next);
        std::mem::swap(&mut states, &mut next);
        if states[m] {
            record(i + 1, &mut found);
        }
    }
    found
}

fn trim_prefix(toks: &[Tok], value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    match match_lengths(toks, &chars) {
        Some((short, long)) => chars[if greedy { long } else { short }..].iter().collect(),
        None => value.to_string(),
    }
}

fn trim_suffix(toks: &[Tok], value: &str, greedy: bool) -> String {
    // A suffix match is a prefix match of both reversed.
    let rev_toks: Vec<Tok> = toks.iter().rev().copied().collect();
    let rev: Vec<char> = value.chars().rev().collect();
    match match_lengths(&rev_toks, &rev) {
        Some((short, long)) => {
            let n = if greedy { long } else { short };
            rev[n..].iter().rev().collect()
        }
        None => value.to_string(),
    }
}

/// `${VAR/pattern/replacement}`: the leftmost match, as long as it can be, replaced; with
/// `//` every non-overlapping match (an empty match right after a match is skipped, as Go's
/// regexp does).
fn replace(toks: &[Tok], value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let find_from = |from: usize| (from..=n).find_map(|s| match_lengths(toks, &chars[s..]).map(|(_, l)| (s, s + l)));
    let mut out = String::with_capacity(value.len());
    let (mut copied, mut search, mut prev_end) = (0, 0, None);
    while search <= n {
        let Some((s, e)) = find_from(search) else { break };
        if s == e && prev_end == Some(s) {
            search = s + 1;
            continue;
        }
        out.extend(&chars[copied..s]);
        out.push_str(replacement);
        copied = e;
        prev_end = Some(e);
        search = if e > s { e } else { e + 1 };
        if !all {
            break;
        }
    }
    out.extend(&chars[copied..]);
    out
}
