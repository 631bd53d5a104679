//! What a build may see of its context: `.dockerignore` matching, the client-side context walk,
//! COPY/ADD source globs, and the content hashes the layer cache keys COPY/ADD on.
//!
//! Matching copies Docker/BuildKit to the letter instead of using gitignore rules or a
//! general-purpose glob library. A pattern that matches differently sends a different context,
//! and a file that Docker leaves out (a key, a `.env`) must not leave the client here either.
//! Each piece is ported from its Go original:
//!
//! * Reading the file follows `moby/patternmatcher/ignorefile.ReadAll` (shared by the docker
//!   CLI and BuildKit): a UTF-8 BOM on the first line is dropped, a line whose *first column* is
//!   `#` is a comment (`  #x` is the pattern `#x`), lines are trimmed, blank ones skipped, a
//!   `!` prefix marks an exception, the pattern is cleaned like Go's `filepath.Clean`, and one
//!   leading `/` is dropped.
//! * Each pattern is syntax-checked with Go's `filepath.Match` (ported below as `go_match`).
//!   It is then translated to a regular expression exactly the way `patternmatcher`'s
//!   `Pattern.compile` translates it, including the exact/prefix/suffix shortcuts it takes
//!   for simple patterns. The translation passes `[`, `]` and `\x` escapes through into Go
//!   regexp syntax, so odd patterns (`[*]`, `\d`, `a^*`) mean whatever Go's RE2 makes of
//!   them. A small RE2-compatible engine here evaluates them: a Pike VM, linear time, with no
//!   backtracking to blow up on hostile patterns.
//! * A path is judged the way the context walks of BuildKit's fsutil and moby's archive
//!   judge it, that is `MatchesUsingParentResults` along the path's ancestors. An excluded
//!   directory is only descended into when some exception pattern, read as text, starts with
//!   the directory. So [`Ignore::excluded`] answers "would Docker send this path".
//!
//! Known differences from Docker, all in corners no real `.dockerignore` reaches:
//! * `.` in the translated regex (from `**`) also matches `\n`. In Go it does not, so Docker
//!   sends `a\nb/x.key` despite `**/*.key`; here it stays excluded.
//! * A `\p`/`\P` (Unicode class) escape is refused as a parse error, because this engine
//!   carries no Unicode tables. Docker accepts `\pL`.
//!
//! `!` inside a class is *not* a negation. Go's `filepath.Match` and Go regexps only negate
//! with `^`, so `[!a]` matches `!` or `a`, in Docker as here.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// A `.dockerignore` line that Docker would refuse too: the build must fail rather than guess
/// what the user meant to exclude.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: {reason} (in {text:?})")]
pub struct IgnoreError {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// What is wrong with it, in Go's wording where Docker has one.
    pub reason: String,
}

/// The patterns of a `.dockerignore` file, applied the way Docker applies them.
/// `Ignore::default()` excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`. This is Docker's `Pattern.String()`, which the
    /// directory-descent rule compares as plain text.
    text: String,
    exception: bool,
    kind: Kind,
}

/// Docker's match types. The prefix and suffix shortcuts do not mean the same as the regex
/// would (`**foo` matches `xfoo`), so they are kept rather than folded into the regex.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// Bytes, because Go slices the pattern bytewise (`cleanedPattern[:len-2]`).
    Prefix(Vec<u8>),
    /// Bytes: Go's `cleanedPattern[2:]` can cut into a leading BOM, and the comparison must
    /// then still behave like Go's (`strings.HasSuffix` on bytes).
    Suffix(Vec<u8>),
    Regex(Regex),
}

impl Ignore {
    /// Parses `.dockerignore` text. A bad pattern is an error naming its line, as it is for
    /// Docker. Bad patterns include an unterminated `[`, a trailing `\`, a bare `!`, and a
    /// class range Go's regexp rejects, such as `[z-a]`.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        // bufio.ScanLines: split on '\n' and drop one trailing '\r' from each line.
        for (index, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let line = if index == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            let Some(read) = read_all_line(line) else { continue };
            let pattern = new_pattern(&read).map_err(|reason| IgnoreError {
                line: index + 1,
                text: line.to_string(),
                reason,
            })?;
            patterns.extend(pattern);
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        Ok(Ignore {
            patterns,
            has_exceptions,
        })
    }

    /// Whether `path` is left out of the context. The path is relative to the context root,
    /// `/`-separated, with no leading `./` (it is cleaned anyway). The answer is what Docker's
    /// context walk decides for it: the last matching pattern wins, a pattern matching a
    /// parent directory covers everything below it, and a path under an excluded directory
    /// stays excluded when [`Ignore::may_include_below`] says the walk never enters that
    /// directory, even when a later `!` pattern would have matched the path itself. The
    /// context root (`""`, `.`) is never excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let cleaned = go_clean(path);
        let cleaned = cleaned.trim_start_matches('/');
        if cleaned.is_empty() || cleaned == "." || self.patterns.is_empty() {
            return false;
        }
        let components: Vec<&str> = cleaned.split('/').collect();
        let mut info: Option<Vec<bool>> = None;
        let mut prefix = String::with_capacity(cleaned.len());
        for (k, component) in components.iter().enumerate() {
            if k > 0 {
                prefix.push('/');
            }
            prefix.push_str(component);
            let (matched, next) = self.eval(&prefix, info.as_deref());
            if k + 1 == components.len() {
                return matched;
            }
            // An ancestor directory the walk does not enter hides everything below it.
            if matched && !self.may_include_below(&prefix) {
                return true;
            }
            info = Some(next);
        }
        false
    }

    /// Whether a walk must still descend into the excluded directory `dir`, because an
    /// exception pattern could re-include something below it. Walks skip whole excluded trees
    /// otherwise.
    ///
    /// This is Docker's rule, which is textual. A directory is entered only when some `!`
    /// pattern plus `/` starts with `dir/`. So `!docs/keep.md` enters `docs`, but `!**/keep.md`
    /// and `!*/keep.md` enter nothing, and files they would match under an excluded
    /// directory stay out, as they do with `docker build`.
    pub fn may_include_below(&self, dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        let cleaned = go_clean(dir);
        let dir_slash = format!("{}/", cleaned.trim_start_matches('/'));
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash))
    }

    /// `patternmatcher.MatchesUsingParentResults`. `parent` holds, per pattern, whether it
    /// matched the parent directory, and is `None` at the top level. There the patterns are
    /// also tried against each parent prefix, which does nothing for a top-level path but
    /// keeps the function faithful. Returns whether `path` is excluded, and the per-pattern
    /// vector its children need.
    fn eval(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.get(i).copied().unwrap_or(false));
            if !hit {
                // An exclusion cannot change an unmatched path and an inclusion cannot change a
                // matched one, so Go skips them, and a skipped pattern records "no match".
                if pattern.exception != matched {
                    continue;
                }
                hit = pattern.matches(path);
                if !hit && parent.is_none() {
                    if let Some(slash) = path.rfind('/') {
                        let parent_path = &path[..slash];
                        hit = parent_path
                            .match_indices('/')
                            .map(|(at, _)| &parent_path[..at])
                            .chain(std::iter::once(parent_path))
                            .any(|prefix| pattern.matches(prefix));
                    }
                }
            }
            info[i] = hit;
            if hit {
                matched = !pattern.exception;
            }
        }
        (matched, info)
    }
}

/// One line through `ignorefile.ReadAll`. Returns the pattern string it would yield, or
/// `None` for comments and blank lines.
fn read_all_line(line: &str) -> Option<String> {
    // The comment test comes before trimming: only column 1 starts a comment.
    if line.starts_with('#') {
        return None;
    }
    let pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let (invert, body) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, pattern),
    };
    let mut body = body.to_string();
    if !body.is_empty() {
        body = go_clean(&body);
        if body.len() > 1 && body.starts_with('/') {
            body.remove(0);
        }
    }
    Some(if invert { format!("!{body}") } else { body })
}

/// One pattern string through `patternmatcher.New`, which trims and cleans it a second time.
/// The second clean matters: `!/` becomes `!`, which is an error.
fn new_pattern(read: &str) -> Result<Option<Pattern>, String> {
    let trimmed = read.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let cleaned = go_clean(trimmed);
    let (exception, text) = match cleaned.strip_prefix('!') {
        Some("") => return Err(r#"illegal exclusion pattern: "!""#.to_string()),
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned),
    };
    let chars: Vec<char> = text.chars().collect();
    if go_match(&chars, &['.']).is_err() {
        return Err("syntax error in pattern".to_string());
    }
    let kind = compile(&text)?;
    Ok(Some(Pattern { text, exception, kind }))
}

impl Pattern {
    /// `patternmatcher.Pattern.match`.
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.as_bytes().starts_with(prefix),
            Kind::Suffix(suffix) => {
                let path = path.as_bytes();
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Kind::Regex(regex) => regex.is_match(path),
        }
    }
}

/// `patternmatcher.Pattern.compile` with `/` as the separator. The regex text is built exactly
/// as Go builds it, so an odd pattern means the same odd thing here.
fn compile(text: &str) -> Result<Kind, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let chars: Vec<char> = text.chars().collect();
    // text/scanner's Peek drops a BOM that opens its input.
    let mut pos = usize::from(chars.first() == Some(&'\u{feff}'));
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut i = 0usize;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if ch == '*' {
            if chars.get(pos) == Some(&'*') {
                pos += 1;
                // `**/` is treated as `**`: eat the slash.
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    // A trailing `**` accepts everything below, like .gitignore.
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    // Any number of directories, including none.
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if i == 0 {
                    detected = Detected::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            detected = Detected::Regex;
        } else if ".+()|{}$".contains(ch) {
            // Regex metacharacters with no meaning in filepath.Match are escaped, and do not
            // make the pattern a regex.
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            if let Some(&next) = chars.get(pos) {
                pos += 1;
                re.push('\\');
                re.push(next);
                detected = Detected::Regex;
            } else {
                re.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            detected = Detected::Regex;
        } else {
            re.push(ch);
        }
        i += 1;
    }
    let bytes = text.as_bytes();
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(bytes[..bytes.len().saturating_sub(2)].to_vec()),
        Detected::Suffix => Kind::Suffix(bytes.get(2..).unwrap_or_default().to_vec()),
        Detected::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re)?)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Go's path/filepath.Clean and filepath.Match (Unix flavour).

/// Go's `filepath.Clean` on Unix. It collapses slashes, drops `.`, folds `x/..`, drops `..`
/// at the root and any trailing slash, and turns `""` into `"."`.
fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|last| *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            _ => out.push(part),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// `filepath.ErrBadPattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BadPattern;

/// Go's `filepath.Match` on Unix, over chars. `*` and `?` stop at `/`, classes negate only
/// with `^`, and `\` escapes. Like Go, it reports a malformed pattern even when the match fails
/// early. Go retries `*` at byte offsets and so can split a multibyte character. That
/// quirk is not copied: char offsets only.
fn go_match(pattern: &[char], name: &[char]) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest unless it holds a separator.
            return Ok(!name.contains(&'/'));
        }
        match match_chunk(chunk, name)? {
            // On the last chunk the name must be used up, or the star may still match more.
            Some(t) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue;
            }
            _ => {}
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                i += 1;
            }
        }
        // Before answering "no", make sure the rest of the pattern is well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Go's `scanChunk`: leading stars, then the chunk up to the next unbracketed `*`.
fn scan_chunk(pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut pattern = pattern;
    let mut star = false;
    while pattern.first() == Some(&'*') {
        pattern = &pattern[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // Skip the escaped character. A trailing backslash is left for match_chunk to report.
            '\\' if i + 1 < pattern.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Go's `matchChunk`. After a mismatch it keeps walking the chunk (without consuming the
/// name) so that syntax errors later in the chunk are still reported.
fn match_chunk<'a>(chunk: &[char], s: &'a [char]) -> Result<Option<&'a [char]>, BadPattern> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == '-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let literal = if c == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(BadPattern)?
                } else {
                    c
                };
                if !failed {
                    if literal != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// Go's `getEsc`: one possibly escaped class character. Something must follow it, because a
/// class needs its closing `]`.
fn get_esc(chunk: &[char]) -> Result<(char, &[char]), BadPattern> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((chunk[0], rest))
}

// ---------------------------------------------------------------------------------------------
// The subset of Go's regexp (RE2 syntax, Perl flags: OneLine, ClassNL, PerlX) that Docker's
// translation can produce, compiled to a Pike VM.

#[derive(Debug, Clone)]
struct Regex {
    /// The expression as Docker builds it. Kept for tests and debugging.
    #[cfg_attr(not(test), allow(dead_code))]
    source: String,
    prog: Vec<Inst>,
    start: usize,
}

#[derive(Debug, Clone)]
enum Inst {
    Char(CharTest, usize),
    Split(usize, usize),
    Look(Look, usize),
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone)]
enum CharTest {
    Lit(char),
    /// `.`, which here also matches `\n` (see the module docs).
    Any,
    Class(Class),
}

#[derive(Debug, Clone)]
struct Class {
    items: Vec<ClassItem>,
    negated: bool,
}

#[derive(Debug, Clone, Copy)]
enum ClassItem {
    Range(char, char),
    /// A Perl (`\d`) or POSIX (`[:alpha:]`) group, possibly negated (`\D`, `[:^alpha:]`).
    Table(&'static [(char, char)], bool),
}

enum Node {
    Char(CharTest),
    Look(Look),
    Cat(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Quest(Box<Node>),
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const PERL_SPACE: &[(char, char)] = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const ALNUM: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('a', 'z')];
const ALPHA: &[(char, char)] = &[('A', 'Z'), ('a', 'z')];
const ASCII: &[(char, char)] = &[('\0', '\x7f')];
const BLANK: &[(char, char)] = &[('\t', '\t'), (' ', ' ')];
const CNTRL: &[(char, char)] = &[('\0', '\x1f'), ('\x7f', '\x7f')];
const GRAPH: &[(char, char)] = &[('!', '~')];
const LOWER: &[(char, char)] = &[('a', 'z')];
const PRINT: &[(char, char)] = &[(' ', '~')];
const PUNCT: &[(char, char)] = &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')];
const POSIX_SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];
const UPPER: &[(char, char)] = &[('A', 'Z')];
const XDIGIT: &[(char, char)] = &[('0', '9'), ('A', 'F'), ('a', 'f')];

fn perl_class(c: char) -> Option<ClassItem> {
    let (table, negated) = match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        's' => (PERL_SPACE, false),
        'S' => (PERL_SPACE, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        _ => return None,
    };
    Some(ClassItem::Table(table, negated))
}

fn posix_class(name: &str) -> Option<ClassItem> {
    let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
    let (negated, inner) = match inner.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let table = match inner {
        "alnum" => ALNUM,
        "alpha" => ALPHA,
        "ascii" => ASCII,
        "blank" => BLANK,
        "cntrl" => CNTRL,
        "digit" => DIGIT,
        "graph" => GRAPH,
        "lower" => LOWER,
        "print" => PRINT,
        "punct" => PUNCT,
        "space" => POSIX_SPACE,
        "upper" => UPPER,
        "word" => WORD,
        "xdigit" => XDIGIT,
        _ => return None,
    };
    Some(ClassItem::Table(table, negated))
}

impl ClassItem {
    fn contains(&self, c: char) -> bool {
        match *self {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Table(table, negated) => table.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated,
        }
    }
}

impl CharTest {
    fn matches(&self, c: char) -> bool {
        match self {
            CharTest::Lit(l) => *l == c,
            CharTest::Any => true,
            // ClassNL: a negated class matches '\n' too.
            CharTest::Class(class) => class.items.iter().any(|item| item.contains(c)) != class.negated,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A recursive-descent parser for the RE2 syntax above. Errors read like Go's.
struct ReParser<'a> {
    s: &'a [char],
    i: usize,
}

impl ReParser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn text(&self, from: usize) -> String {
        self.s[from.min(self.s.len())..self.i.min(self.s.len())]
            .iter()
            .collect()
    }

    fn sequence(&mut self, in_group: bool) -> Result<Node, String> {
        let group_start = self.i;
        let mut items: Vec<Node> = Vec::new();
        let mut last_repeat = false;
        loop {
            let Some(c) = self.peek() else {
                if in_group {
                    return Err(format!(
                        "missing closing ): `{}`",
                        self.text(group_start.saturating_sub(1))
                    ));
                }
                return Ok(Node::Cat(items));
            };
            let mut repeat = false;
            match c {
                '(' => {
                    // Only Docker's `(.*/)?` opens a group. Flags and named groups (`(?`) cannot
                    // come out of the translation, because `(` in a pattern is escaped.
                    if self.at(1) == Some('?') {
                        return Err("unsupported regexp group syntax `(?`".to_string());
                    }
                    self.i += 1;
                    items.push(self.sequence(true)?);
                }
                ')' => {
                    if !in_group {
                        return Err("unexpected ): `)`".to_string());
                    }
                    self.i += 1;
                    return Ok(Node::Cat(items));
                }
                // Always escaped by the translation. Refuse rather than guess.
                '|' | '{' => return Err(format!("unsupported regexp syntax `{c}`")),
                '^' => {
                    self.i += 1;
                    items.push(Node::Look(Look::BeginText));
                }
                '$' => {
                    self.i += 1;
                    items.push(Node::Look(Look::EndText));
                }
                '.' => {
                    self.i += 1;
                    items.push(Node::Char(CharTest::Any));
                }
                '[' => {
                    let class = self.class()?;
                    items.push(Node::Char(CharTest::Class(class)));
                }
                '*' | '+' | '?' => {
                    let start = self.i;
                    self.i += 1;
                    // A non-greedy suffix changes which match is found, not whether one is.
                    if self.peek() == Some('?') {
                        self.i += 1;
                    }
                    if last_repeat {
                        return Err(format!("invalid nested repetition operator: `{}`", self.text(start)));
                    }
                    let Some(sub) = items.pop() else {
                        return Err(format!(
                            "missing argument to repetition operator: `{}`",
                            self.text(start)
                        ));
                    };
                    let sub = Box::new(sub);
                    items.push(match c {
                        '*' => Node::Star(sub),
                        '+' => Node::Plus(sub),
                        _ => Node::Quest(sub),
                    });
                    repeat = true;
                }
                '\\' => self.backslash(&mut items)?,
                _ => {
                    self.i += 1;
                    items.push(Node::Char(CharTest::Lit(c)));
                }
            }
            last_repeat = repeat;
        }
    }

    /// A backslash outside a class: assertions, `\Q...\E`, Perl classes, or one escaped
    /// character.
    fn backslash(&mut self, items: &mut Vec<Node>) -> Result<(), String> {
        let look = match self.at(1) {
            Some('A') => Some(Look::BeginText),
            Some('z') => Some(Look::EndText),
            Some('b') => Some(Look::WordBoundary),
            Some('B') => Some(Look::NotWordBoundary),
            _ => None,
        };
        if let Some(look) = look {
            self.i += 2;
            items.push(Node::Look(look));
            return Ok(());
        }
        match self.at(1) {
            Some('C') => Err("invalid escape sequence: `\\C`".to_string()),
            Some('Q') => {
                // Literal text up to `\E`, or to the end of the expression (then `$` too).
                self.i += 2;
                while let Some(c) = self.peek() {
                    if c == '\\' && self.at(1) == Some('E') {
                        self.i += 2;
                        break;
                    }
                    items.push(Node::Char(CharTest::Lit(c)));
                    self.i += 1;
                }
                Ok(())
            }
            Some(p @ ('p' | 'P')) => Err(format!("unsupported Unicode class escape `\\{p}`")),
            Some(c) if perl_class(c).is_some() => {
                self.i += 2;
                let class_items = perl_class(c).into_iter().collect();
                items.push(Node::Char(CharTest::Class(Class {
                    items: class_items,
                    negated: false,
                })));
                Ok(())
            }
            _ => {
                let c = self.escape()?;
                items.push(Node::Char(CharTest::Lit(c)));
                Ok(())
            }
        }
    }

    /// Go's `parseEscape`. `self.i` is at the backslash.
    fn escape(&mut self) -> Result<char, String> {
        let start = self.i;
        self.i += 1;
        let Some(c) = self.peek() else {
            return Err("trailing backslash at end of expression".to_string());
        };
        self.i += 1;
        let invalid = |p: &Self| format!("invalid escape sequence: `{}`", p.text(start));
        match c {
            // `\1`..`\7` alone would be a backreference, which RE2 lacks.
            '1'..='7' if !matches!(self.peek(), Some('0'..='7')) => Err(invalid(self)),
            '0'..='7' => {
                let mut value = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            value = value * 8 + (d as u32 - '0' as u32);
                            self.i += 1;
                        }
                        _ => break,
                    }
                }
                Ok(char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER))
            }
            'x' => self.hex().ok_or_else(|| invalid(self)),
            'a' => Ok('\x07'),
            'f' => Ok('\x0c'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\x0b'),
            // Escaped punctuation is itself. Escaped letters and digits are reserved.
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            _ => Err(invalid(self)),
        }
    }

    /// After `\x`: two hex digits or `{hex...}`.
    fn hex(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '{' {
            let mut value: u32 = 0;
            let mut digits = 0;
            loop {
                let c = self.peek()?;
                self.i += 1;
                if c == '}' {
                    break;
                }
                value = value * 16 + c.to_digit(16)?;
                if value > 0x10ffff {
                    return None;
                }
                digits += 1;
            }
            return if digits == 0 { None } else { char::from_u32(value) };
        }
        let x = c.to_digit(16)?;
        let y = self.peek()?.to_digit(16)?;
        self.i += 1;
        char::from_u32(x * 16 + y)
    }

    /// Go's `parseClass`. `self.i` is at the `[`.
    fn class(&mut self) -> Result<Class, String> {
        let start = self.i;
        self.i += 1;
        let mut negated = false;
        if self.peek() == Some('^') {
            negated = true;
            self.i += 1;
        }
        let mut items = Vec::new();
        // `]` (and `-`) are ordinary as the first character.
        let mut first = true;
        while self.peek() != Some(']') || first {
            first = false;
            // `[:alpha:]`. Go looks for the closing `:]` anywhere in the rest of the expression.
            if self.peek() == Some('[') && self.at(1) == Some(':') && self.at(2).is_some() {
                let rest = &self.s[self.i + 2..];
                if let Some(off) = rest.windows(2).position(|w| w == [':', ']']) {
                    let end = self.i + 2 + off + 2;
                    let name: String = self.s[self.i..end].iter().collect();
                    let item = posix_class(&name).ok_or_else(|| format!("invalid character class range: `{name}`"))?;
                    items.push(item);
                    self.i = end;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                match self.at(1) {
                    Some(p @ ('p' | 'P')) => return Err(format!("unsupported Unicode class escape `\\{p}`")),
                    Some(c) => {
                        if let Some(item) = perl_class(c) {
                            items.push(item);
                            self.i += 2;
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let range_start = self.i;
            let lo = self.class_char(start)?;
            let mut hi = lo;
            // `[a-]` is `a` or `-`.
            if self.peek() == Some('-') && self.at(1).is_some_and(|c| c != ']') {
                self.i += 1;
                hi = self.class_char(start)?;
                if hi < lo {
                    return Err(format!("invalid character class range: `{}`", self.text(range_start)));
                }
            }
            items.push(ClassItem::Range(lo, hi));
        }
        self.i += 1;
        Ok(Class { items, negated })
    }

    fn class_char(&mut self, class_start: usize) -> Result<char, String> {
        match self.peek() {
            None => Err(format!("missing closing ]: `{}`", self.text(class_start))),
            Some('\\') => self.escape(),
            Some(c) => {
                self.i += 1;
                Ok(c)
            }
        }
    }
}

impl Regex {
    fn new(source: &str) -> Result<Regex, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut parser = ReParser { s: &chars, i: 0 };
        let node = parser
            .sequence(false)
            .map_err(|e| format!("error parsing regexp: {e}"))?;
        let mut prog = vec![Inst::Match];
        let start = emit(&mut prog, node, 0);
        Ok(Regex {
            source: source.to_string(),
            prog,
            start,
        })
    }

    /// Whether the expression matches anywhere in `text`: Go's `MatchString`. Docker's
    /// expressions start with `^`, so in practice this is a match from the start.
    fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut current = Threads::new(self.prog.len());
        let mut next = Threads::new(self.prog.len());
        let mut stack = Vec::new();
        for pos in 0..=chars.len() {
            if self.add(&mut current, &mut stack, self.start, pos, &chars) {
                return true;
            }
            let Some(&c) = chars.get(pos) else { break };
            for k in 0..current.len {
                let pc = current.dense[k];
                if let Inst::Char(test, to) = &self.prog[pc] {
                    if test.matches(c) && self.add(&mut next, &mut stack, *to, pos + 1, &chars) {
                        return true;
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
        false
    }

    /// Adds the epsilon closure of `pc` at `pos` to `set`. Returns whether it reaches `Match`.
    fn add(&self, set: &mut Threads, stack: &mut Vec<usize>, pc: usize, pos: usize, chars: &[char]) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if !set.insert(pc) {
                continue;
            }
            match &self.prog[pc] {
                Inst::Match => return true,
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Look(look, to) => {
                    let holds = match look {
                        Look::BeginText => pos == 0,
                        Look::EndText => pos == chars.len(),
                        Look::WordBoundary | Look::NotWordBoundary => {
                            let before = pos > 0 && is_word_char(chars[pos - 1]);
                            let after = chars.get(pos).is_some_and(|&c| is_word_char(c));
                            (before != after) == (*look == Look::WordBoundary)
                        }
                    };
                    if holds {
                        stack.push(*to);
                    }
                }
                Inst::Char(..) => {}
            }
        }
        false
    }
}

/// Compiles `node` so that it continues at `next`. Returns its entry point.
fn emit(prog: &mut Vec<Inst>, node: Node, next: usize) -> usize {
    fn push(prog: &mut Vec<Inst>, inst: Inst) -> usize {
        prog.push(inst);
        prog.len() - 1
    }
    match node {
        Node::Char(test) => push(prog, Inst::Char(test, next)),
        Node::Look(look) => push(prog, Inst::Look(look, next)),
        Node::Cat(items) => items.into_iter().rev().fold(next, |next, item| emit(prog, item, next)),
        Node::Star(sub) => {
            let split = push(prog, Inst::Split(0, 0));
            let body = emit(prog, *sub, split);
            prog[split] = Inst::Split(body, next);
            split
        }
        Node::Plus(sub) => {
            let split = push(prog, Inst::Split(0, 0));
            let body = emit(prog, *sub, split);
            prog[split] = Inst::Split(body, next);
            body
        }
        Node::Quest(sub) => {
            let body = emit(prog, *sub, next);
            push(prog, Inst::Split(body, next))
        }
    }
}

/// A sparse set of program counters: O(1) insert and clear, in insertion order.
struct Threads {
    dense: Vec<usize>,
    sparse: Vec<usize>,
    len: usize,
}

impl Threads {
    fn new(size: usize) -> Threads {
        Threads {
            dense: vec![0; size],
            sparse: vec![0; size],
            len: 0,
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        let slot = self.sparse[pc];
        if slot < self.len && self.dense[slot] == pc {
            return false;
        }
        self.dense[self.len] = pc;
        self.sparse[pc] = self.len;
        self.len += 1;
        true
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Which ignore file, and the context walk.

/// The ignore file a build uses. That is `<dockerfile>.dockerignore` next to the Dockerfile
/// when it exists (BuildKit's rule, e.g. `Dockerfile.dev.dockerignore`), else `.dockerignore`
/// at the context root, and `None` when neither exists. A relative `dockerfile` is taken
/// relative to `context`.
pub fn ignore_file_for(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let dockerfile = if dockerfile.is_absolute() {
        dockerfile.to_path_buf()
    } else {
        context.join(dockerfile)
    };
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        let candidate = dockerfile.with_file_name(specific);
        if candidate.exists() {
            return Some(candidate);
        }
    }
    let root = context.join(".dockerignore");
    root.exists().then_some(root)
}

struct WalkItem {
    rel: PathBuf,
    /// `rel` as the string patterns see. Bytes that are not UTF-8 become U+FFFD one by one, as
    /// Go's decoder reads them.
    key: String,
    depth: usize,
    /// Per-pattern matches of the parent directory. `None` at the top level.
    parent: Option<Rc<Vec<bool>>>,
}

/// Every entry of the context that is not excluded, as paths relative to the context, sorted
/// by path. Sorting is component by component, so each directory comes before its contents.
/// The context root itself is not listed.
///
/// The walk is Docker's. A path is judged as [`Ignore::excluded`] judges it. An excluded
/// directory is entered only if [`Ignore::may_include_below`] says so, or if an `always` path
/// lies below it. Such a directory is listed only when something inside it is, as BuildKit
/// sends it lazily, so the tar can still carry its mode.
///
/// `always` holds context-relative paths listed even when excluded: the Dockerfile and the
/// `.dockerignore` files, which Docker sends regardless. Only the path itself is forced; an
/// always-listed directory's contents are still filtered. Paths that do not exist, or point
/// outside the context, are ignored.
///
/// Symlinks are listed and never followed. Sockets are skipped, as tar cannot carry them, and
/// moby's archive skips them too. FIFOs and device nodes are listed, and the caller decides.
/// Like Docker, the walk does cross into other filesystems mounted inside the context. It does
/// not need to guard against that, because an excluded mount point is never entered.
///
/// Errors: an unreadable directory that must be entered, naming it. Docker fails the build
/// there too.
pub fn context_entries(context: &Path, ignore: &Ignore, always: &[&str]) -> io::Result<Vec<PathBuf>> {
    let always: Vec<PathBuf> = always.iter().filter_map(|p| context_relative(p)).collect();
    let mut out = Vec::new();
    // Excluded directories being walked because something below may be included, with whether
    // each has been listed yet. Included directories are on it too, already listed, so that
    // depth bookkeeping stays simple.
    let mut open: Vec<(usize, PathBuf, bool)> = Vec::new();
    let mut stack: Vec<WalkItem> = Vec::new();
    push_children(&mut stack, context, Path::new(""), "", 0, None)?;
    while let Some(item) = stack.pop() {
        while open.last().is_some_and(|(depth, ..)| *depth >= item.depth) {
            open.pop();
        }
        let abs = context.join(&item.rel);
        let meta = fs::symlink_metadata(&abs).map_err(|e| with_path(e, &abs))?;
        let file_type = meta.file_type();
        if file_type.is_socket() {
            continue;
        }
        let is_dir = file_type.is_dir();
        let (excluded, info) = ignore.eval(&item.key, item.parent.as_deref().map(Vec::as_slice));
        let forced = always.contains(&item.rel);
        if excluded && !forced {
            if !is_dir {
                continue;
            }
            let forced_below = always.iter().any(|a| a != &item.rel && a.starts_with(&item.rel));
            if !forced_below && !ignore.may_include_below(&item.key) {
                continue;
            }
            open.push((item.depth, item.rel.clone(), false));
        } else {
            for (_, dir, listed) in open.iter_mut() {
                if !*listed {
                    out.push(dir.clone());
                    *listed = true;
                }
            }
            out.push(item.rel.clone());
            if is_dir {
                open.push((item.depth, item.rel.clone(), true));
            }
        }
        if is_dir {
            let info = Rc::new(info);
            push_children(&mut stack, &abs, &item.rel, &item.key, item.depth + 1, Some(info))?;
        }
    }
    out.sort();
    Ok(out)
}

/// Queues a directory's children so that they pop in name order.
fn push_children(
    stack: &mut Vec<WalkItem>,
    dir: &Path,
    rel: &Path,
    key: &str,
    depth: usize,
    parent: Option<Rc<Vec<bool>>>,
) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        names.push(entry.map_err(|e| with_path(e, dir))?.file_name());
    }
    names.sort();
    for name in names.into_iter().rev() {
        let name_key = go_string(&name);
        let child_key = if key.is_empty() {
            name_key.into_owned()
        } else {
            format!("{key}/{name_key}")
        };
        stack.push(WalkItem {
            rel: rel.join(&name),
            key: child_key,
            depth,
            parent: parent.clone(),
        });
    }
    Ok(())
}

/// A context-relative path from a `/`-separated string. Returns `None` for the root and for
/// paths that climb out of the context.
fn context_relative(path: &str) -> Option<PathBuf> {
    let cleaned = go_clean(path);
    let cleaned = cleaned.trim_start_matches('/');
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." || cleaned.starts_with("../") {
        return None;
    }
    Some(PathBuf::from(cleaned))
}

/// A file name as Go code sees it, with each byte of an invalid UTF-8 sequence decoded to
/// U+FFFD on its own.
fn go_string(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                out.extend(std::iter::repeat_n(char::REPLACEMENT_CHARACTER, chunk.invalid().len()));
            }
            Cow::Owned(out)
        }
    }
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Content hashes for the layer cache.

/// A sha256 (hex) over the entries under `root` selected by `paths`, in sorted order.
/// `paths` are files and whole directories, relative to `root`, already resolved by the
/// caller; `.` or an empty path selects `root` itself. The hash covers what ends up in a
/// layer: each entry's relative path (relative to `root`, so a rename changes it), its type,
/// mode bits (permissions plus setuid/setgid/sticky), uid and gid, a symlink's target, a
/// device's number, and a regular file's bytes. mtimes, atimes, inode numbers and directory
/// sizes are left out: touching a file must not bust the cache. xattrs and hardlinks are not
/// covered.
///
/// Files are streamed in 64 KiB blocks, never read whole. Symlinks are hashed as links and
/// never followed. Errors: a path that is absolute or climbs out with `..`
/// (`InvalidInput`), a path that passes through a symlinked directory (`InvalidInput`,
/// because `root.join` would follow it out of the tree), a missing path, or a file replaced
/// while it was being hashed.
pub fn content_hash(root: &Path, paths: &[PathBuf]) -> io::Result<String> {
    let mut entries: BTreeMap<PathBuf, fs::Metadata> = BTreeMap::new();
    for path in paths {
        let rel = clean_relative(path)?;
        if entries.contains_key(&rel) {
            continue;
        }
        refuse_symlinked_parents(root, &rel)?;
        let abs = root.join(&rel);
        let meta = fs::symlink_metadata(&abs).map_err(|e| with_path(e, &abs))?;
        let is_dir = meta.is_dir();
        entries.insert(rel.clone(), meta);
        if is_dir {
            collect_tree(root, &rel, &mut entries)?;
        }
    }
    let mut hasher = Sha256::new();
    // Versioned, so a change to the encoding cannot collide with old cache keys.
    hasher.update(b"hako content v1\0");
    let mut buf = vec![0u8; 64 * 1024];
    for (rel, meta) in &entries {
        hash_entry(&mut hasher, root, rel, meta, &mut buf)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

fn clean_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a path inside the source tree", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

fn refuse_symlinked_parents(root: &Path, rel: &Path) -> io::Result<()> {
    let components: Vec<Component> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        prefix.push(component);
        let abs = root.join(&prefix);
        let meta = fs::symlink_metadata(&abs).map_err(|e| with_path(e, &abs))?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: passes through the symlink {}", rel.display(), prefix.display()),
            ));
        }
    }
    Ok(())
}

fn collect_tree(root: &Path, rel: &Path, entries: &mut BTreeMap<PathBuf, fs::Metadata>) -> io::Result<()> {
    let mut dirs = vec![rel.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let abs = root.join(&dir);
        for entry in fs::read_dir(&abs).map_err(|e| with_path(e, &abs))? {
            let entry = entry.map_err(|e| with_path(e, &abs))?;
            let child = dir.join(entry.file_name());
            // DirEntry::metadata does not follow symlinks.
            let meta = entry.metadata().map_err(|e| with_path(e, &root.join(&child)))?;
            if meta.is_dir() {
                dirs.push(child.clone());
            }
            entries.insert(child, meta);
        }
    }
    Ok(())
}

/// Feeds one entry to the hash. Each field has a fixed width or a length prefix, so no two
/// trees give the same byte stream.
fn hash_entry(hasher: &mut Sha256, root: &Path, rel: &Path, meta: &fs::Metadata, buf: &mut [u8]) -> io::Result<()> {
    let path = rel.as_os_str().as_bytes();
    hasher.update((path.len() as u64).to_le_bytes());
    hasher.update(path);
    let file_type = meta.file_type();
    let tag = if file_type.is_file() {
        b'f'
    } else if file_type.is_dir() {
        b'd'
    } else if file_type.is_symlink() {
        b'l'
    } else if file_type.is_char_device() {
        b'c'
    } else if file_type.is_block_device() {
        b'b'
    } else if file_type.is_fifo() {
        b'p'
    } else if file_type.is_socket() {
        b's'
    } else {
        b'?'
    };
    hasher.update([tag]);
    hasher.update((meta.mode() & 0o7777).to_le_bytes());
    hasher.update(meta.uid().to_le_bytes());
    hasher.update(meta.gid().to_le_bytes());
    let abs = root.join(rel);
    match tag {
        b'f' => {
            let (len, digest) = hash_file(&abs, meta, buf).map_err(|e| with_path(e, &abs))?;
            hasher.update(len.to_le_bytes());
            hasher.update(digest);
        }
        b'l' => {
            let target = fs::read_link(&abs).map_err(|e| with_path(e, &abs))?;
            let target = target.as_os_str().as_bytes();
            hasher.update((target.len() as u64).to_le_bytes());
            hasher.update(target);
        }
        b'c' | b'b' => hasher.update(meta.rdev().to_le_bytes()),
        _ => {}
    }
    Ok(())
}

/// Streams a regular file into its own sha256, so the outer stream stays framed whatever the
/// file's length turns out to be. The opened file must be the one `lstat` saw. Otherwise a
/// swap for a symlink could pull in a file from outside the tree.
fn hash_file(path: &Path, meta: &fs::Metadata, buf: &mut [u8]) -> io::Result<(u64, [u8; 32])> {
    let mut file = fs::File::open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() || opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(io::Error::other("changed while being hashed"));
    }
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}

// ---------------------------------------------------------------------------------------------
// COPY/ADD source globs.

/// The context paths that a COPY/ADD source pattern selects, relative to `root` and sorted.
/// This is BuildKit's rule, `fsutil/copy.ResolveWildcards`. The pattern is cleaned as a
/// path rooted at the context, so a leading `/` means the context root and `..` cannot climb
/// out. The segments before the first one holding a `*`, `?` or `[` are a plain directory.
/// The rest is matched with Go's `filepath.Match` against each path below that directory.
/// `*` and `?` never cross a `/`. A matching directory is returned whole, not searched
/// further, and symlinks are matched but not followed.
///
/// A pattern without wildcards returns itself when it exists (`.` for the root), and is not
/// checked beyond that. Symlinked directories along any returned path are resolved inside
/// `root` ([`resolve_in_root`]), so a returned path never leads out of the context. The final
/// component is left as it is, possibly a symlink.
///
/// Errors, without the `COPY failed: ` prefix, which the caller adds for its instruction:
/// * a literal path that does not exist: `NotFound`, "lstat X: no such file or directory"
///   (Go's wording);
/// * a wildcard that matches nothing: `NotFound`, "no source files were specified" (the
///   classic builder's wording);
/// * a malformed pattern such as `[a`: `InvalidInput`. BuildKit silently matches nothing
///   there, but naming the bad pattern is kinder than a "no source files" error.
pub fn glob(root: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    Ok(glob_in(&DirTree(root), pattern)?
        .into_iter()
        .map(PathBuf::from)
        .collect())
}

/// What a source glob needs of a tree of files: a directory on disk, or a build context the
/// engine holds in memory. Paths are relative to the tree's root, `/`-separated, `""` the
/// root itself.
pub trait Tree {
    /// `rel` with symlinked directories along it resolved inside the tree (the last component
    /// too when `follow_last`); `NotFound` when a component is missing on the way.
    fn resolve(&self, rel: &str, follow_last: bool) -> io::Result<String>;
    /// Whether `rel` exists (a symlink counts, not followed).
    fn exists(&self, rel: &str) -> bool;
    /// Whether `rel` is a directory (a symlink is not).
    fn is_dir(&self, rel: &str) -> bool;
    /// The (name, is a directory) of each entry of the directory `rel`.
    fn list(&self, rel: &str) -> io::Result<Vec<(String, bool)>>;
}

/// A directory on disk as a [`Tree`].
struct DirTree<'a>(&'a Path);

impl Tree for DirTree<'_> {
    fn resolve(&self, rel: &str, follow_last: bool) -> io::Result<String> {
        Ok(resolve_in_root(self.0, rel, follow_last)?
            .to_string_lossy()
            .into_owned())
    }

    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.0.join(rel)).is_ok()
    }

    fn is_dir(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.0.join(rel)).is_ok_and(|m| m.is_dir())
    }

    fn list(&self, rel: &str) -> io::Result<Vec<(String, bool)>> {
        let dir = self.0.join(rel);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| with_path(e, &dir))? {
            let entry = entry.map_err(|e| with_path(e, &dir))?;
            let is_dir = entry.file_type().map_err(|e| with_path(e, &dir))?.is_dir();
            names.push((go_string(&entry.file_name()).into_owned(), is_dir));
        }
        Ok(names)
    }
}

/// [`glob`] over any [`Tree`]; returns the matched paths relative to its root.
pub fn glob_in(tree: &dyn Tree, pattern: &str) -> io::Result<Vec<String>> {
    let rooted = go_clean(&format!("/{pattern}"));
    let rel = rooted.trim_start_matches('/');
    let segments: Vec<&str> = if rel.is_empty() {
        Vec::new()
    } else {
        rel.split('/').collect()
    };
    let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (false, true) => a.to_string(),
        (false, false) => format!("{a}/{b}"),
    };
    let Some(split) = segments.iter().position(|s| has_wildcards(s)) else {
        let missing = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "lstat {}: no such file or directory",
                    if rel.is_empty() { "." } else { rel }
                ),
            )
        };
        let resolved = match tree.resolve(rel, false) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(e),
        };
        if resolved.is_empty() {
            return Ok(vec![".".into()]);
        }
        return if tree.exists(&resolved) {
            Ok(vec![resolved])
        } else {
            Err(missing())
        };
    };
    let tail: Vec<char> = segments[split..].join("/").chars().collect();
    if go_match(&tail, &[]).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad source pattern {pattern:?}: syntax error in pattern"),
        ));
    }
    // Only a literal '/' or a class can match a '/' in a path, so no match lies deeper than
    // this. Walking further would only cost time, and BuildKit walks everything here.
    let max_depth = tail.iter().filter(|&&c| c == '/' || c == '[').count() + 1;
    let base = match tree.resolve(&segments[..split].join("/"), true) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    if let Some(base) = base.filter(|b| tree.is_dir(b)) {
        // (path below base, depth)
        let mut stack: Vec<(String, usize)> = vec![(String::new(), 0)];
        while let Some((key, depth)) = stack.pop() {
            let mut names = tree.list(&join(&base, &key))?;
            names.sort();
            for (name, is_dir) in names {
                let child_key = join(&key, &name);
                let key_chars: Vec<char> = child_key.chars().collect();
                if go_match(&tail, &key_chars).unwrap_or(false) {
                    found.push(join(&base, &child_key));
                } else if is_dir && depth + 1 < max_depth {
                    stack.push((child_key, depth + 1));
                }
            }
        }
    }
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no source files were specified",
        ));
    }
    found.sort();
    Ok(found)
}

/// Go's `containsWildcards`: an unescaped `*`, `?` or `[`.
fn has_wildcards(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Resolves `path` (`/`-separated, relative to `root`) as if `root` were the filesystem root,
/// like BuildKit's `fs.RootPath`. Symlinks met on the way are followed, with absolute targets
/// taken from `root` and `..` stopping at `root`, so the result never leaves the tree. The
/// final component is followed only when `follow_last` is set. Returns a path relative to
/// `root`, empty for the root itself. Missing components are kept as written, so the caller's
/// `lstat` reports them. Errors: more than 255 symlinks, or an unreadable link.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut queue: VecDeque<OsString> = path.split('/').filter(|c| !c.is_empty()).map(OsString::from).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(component) = queue.pop_front() {
        if component == "." {
            continue;
        }
        if component == ".." {
            resolved.pop();
            continue;
        }
        if queue.is_empty() && !follow_last {
            resolved.push(component);
            break;
        }
        let candidate: PathBuf = resolved.iter().chain(std::iter::once(&component)).collect();
        let abs = root.join(&candidate);
        match fs::symlink_metadata(&abs) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > 255 {
                    return Err(io::Error::other(format!("{path}: too many levels of symbolic links")));
                }
                let target = fs::read_link(&abs).map_err(|e| with_path(e, &abs))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for part in target.as_os_str().as_bytes().split(|&b| b == b'/').rev() {
                    if !part.is_empty() {
                        queue.push_front(OsString::from_vec(part.to_vec()));
                    }
                }
            }
            _ => resolved.push(component),
        }
    }
    Ok(resolved.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn gomatch(pattern: &str, name: &str) -> Result<bool, BadPattern> {
        go_match(&chars(pattern), &chars(name))
    }

    fn ignore(lines: &[&str]) -> Ignore {
        Ignore::parse(&lines.join("\n")).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
    }

    /// A small xorshift64 PRNG: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("a/./b/../c", "a/c"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
            ("!/", "!"),
            ("foo /", "foo "),
        ] {
            assert_eq!(go_clean(input), want, "{input:?}");
        }
    }

    /// Go's own filepath.Match table (as carried in patternmatcher_test.go).
    #[test]
    fn go_filepath_match_table() {
        let cases: &[(&str, &str, Result<bool, BadPattern>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[x-]", "-", Err(BadPattern)),
            ("[x-]", "z", Err(BadPattern)),
            ("[-x]", "x", Err(BadPattern)),
            ("[-x]", "-", Err(BadPattern)),
            ("[-x]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("a[", "x", Err(BadPattern)),
            ("a/b[", "a", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(gomatch(pattern, name), *want, "Match({pattern:?}, {name:?})");
        }
    }

    /// The same table through .dockerignore (patternmatcher's TestMatch): the syntax errors
    /// are parse errors, and `a*` also excludes `ab/c` through its parent.
    #[test]
    fn patternmatcher_match_table() {
        for (pattern, name, want) in [
            ("abc", "abc", true),
            ("a*", "ab/c", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("[\\]a]", "]", true),
            ("[x\\-]", "-", true),
            ("a?b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("*x", "xxx", true),
        ] {
            assert_eq!(ignore(&[pattern]).excluded(name), want, "{pattern:?} {name:?}");
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "!",
        ] {
            assert!(Ignore::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    /// patternmatcher's TestCompile: the match type and the exact regex text.
    #[test]
    fn compile_table() {
        let regex = |p: &str| match compile(p).unwrap() {
            Kind::Regex(r) => r.source,
            other => panic!("{p:?}: expected a regex, got {other:?}"),
        };
        for (pattern, want) in [
            ("*", "^[^/]*$"),
            ("file*", "^file[^/]*$"),
            ("*file", "^[^/]*file$"),
            ("a*/b", "^a[^/]*/b$"),
            ("**/**", "^(.*/)?.*$"),
            ("**/dir2/*", "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", "^(.*/)?dir2/.*$"),
            ("**/file*txt", "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", "^a[b-d]e$"),
            (".*", "^\\.[^/]*$"),
            ("abc?def", "^abc[^/]def$"),
        ] {
            assert_eq!(regex(pattern), want, "{pattern:?}");
        }
        for pattern in ["**", "**/dir", "**file", "**/foo/bar"] {
            assert!(matches!(compile(pattern).unwrap(), Kind::Suffix(_)), "{pattern:?}");
        }
        assert!(matches!(compile("dir/**").unwrap(), Kind::Prefix(p) if p == b"dir/"));
        for pattern in [
            "abc.def",
            "a(b)c/def",
            "a.|)$(}+{bc",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        ] {
            assert!(matches!(compile(pattern).unwrap(), Kind::Exact), "{pattern:?}");
        }
    }

    /// patternmatcher's TestMatches (paths with a trailing slash are cleaned, and the root is
    /// never excluded, so those rows are left out).
    #[test]
    fn patternmatcher_matches_table() {
        let single: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, path, want) in single {
            assert_eq!(ignore(&[pattern]).excluded(path), *want, "{pattern:?} {path:?}");
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for (patterns, path, want) in multi {
            assert_eq!(ignore(patterns).excluded(path), *want, "{patterns:?} {path:?}");
        }
    }

    /// Docker's translation passes classes and escapes into Go regexp syntax, and these are
    /// the consequences, checked against what Go's regexp does with the same text.
    #[test]
    fn regex_translation_quirks() {
        // `[*]` becomes `^[[^/]*]$`: a class of `[`, `^`, `/` repeated, then a literal `]`.
        let p = ignore(&["[*]"]);
        assert!(p.excluded("]"));
        assert!(p.excluded("[^]"));
        assert!(!p.excluded("*"));
        // `!` inside a class is a member, not a negation.
        let p = ignore(&["[!a]"]);
        assert!(p.excluded("!") && p.excluded("a") && !p.excluded("b"));
        // `\d` reaches the regexp as a Perl class.
        let p = ignore(&["file\\d"]);
        assert!(p.excluded("file7") && !p.excluded("filed"));
        // POSIX classes work inside brackets.
        let p = ignore(&["[[:digit:]]x"]);
        assert!(p.excluded("5x") && !p.excluded("ax"));
        // `^` outside a class is literal in an exact pattern and an anchor in a regex one.
        assert!(ignore(&["a^b"]).excluded("a^b"));
        assert!(!ignore(&["a^*"]).excluded("a^b"));
        // Go's filepath.Match accepts `[Local-Only]` but its range `l-O` runs backwards, so Go's
        // regexp refuses it.
        let err = Ignore::parse("ok\n[Local-Only]/\n").unwrap_err();
        assert_eq!(err.line, 2);
        // A suffix shortcut differs from the regex it would have built.
        assert!(ignore(&["**foo"]).excluded("xfoo"));
        assert!(ignore(&["foo**"]).excluded("foobar"));
        // A leading BOM on a later line is dropped by Go's scanner when compiling.
        assert!(ignore(&["x", "\u{feff}*.txt"]).excluded("a.txt"));
        // Unicode classes are refused rather than approximated.
        assert!(Ignore::parse("\\pL").is_err());
        // Invalid escapes are Go regexp errors.
        assert!(Ignore::parse("\\q").is_err());
        assert!(Ignore::parse("a\\1").is_err());
        assert!(ignore(&["\\x41"]).excluded("A"));
        assert!(ignore(&["\\101"]).excluded("A"));
    }

    #[test]
    fn regex_engine_basics() {
        let re = |s: &str| Regex::new(s).unwrap();
        assert!(re("^a(.*/)?b$").is_match("a/x/y/b"));
        assert!(re("^a(.*/)?b$").is_match("ab"));
        assert!(!re("^a(.*/)?b$").is_match("axb"));
        assert!(re("^\\Qa.b$").is_match("a.b$c"), "\\Q swallows the `$` too, as in Go");
        assert!(re("^a\\b").is_match("a b"));
        assert!(!re("^a\\B ").is_match("a b"));
        assert!(
            re("^[^/]*$").is_match("a\nb"),
            "ClassNL: negated classes match newlines"
        );
        assert!(re("^[]a]$").is_match("]"));
        assert!(re("^[^]a]$").is_match("b"));
        assert!(re("^[a-]$").is_match("-"));
        assert!(re("^[\\d-z]$").is_match("-"));
        assert!(re("^a+$").is_match("aaa"));
        for bad in [
            "^a**",
            "*",
            "^(a",
            "^a)",
            "^[a",
            "^[z-a]",
            "^\\8",
            "^\\xZZ",
            "^[[:nope:]]",
            "^\\C",
        ] {
            assert!(Regex::new(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn read_all_rules() {
        // A comment only in column 1.
        assert!(!ignore(&["#secret"]).excluded("#secret"));
        assert!(ignore(&[" #secret"]).excluded("#secret"));
        // BOM on the first line, CRLF endings, surrounding whitespace.
        let p = Ignore::parse("\u{feff}a\r\n  b  \r\n").unwrap();
        assert!(p.excluded("a") && p.excluded("b"));
        // `! x` is an exception for `x`; `!` and `!/` alone are errors.
        let p = ignore(&["*", "! keep"]);
        assert!(!p.excluded("keep") && p.excluded("other"));
        assert_eq!(Ignore::parse("a\n\n!\n").unwrap_err().line, 3);
        assert!(Ignore::parse("!/").is_err());
        // Clean: `./a/../b/` is `b`, and `foo /` (space before the slash) is `foo`.
        assert!(ignore(&["./a/../b/"]).excluded("b"));
        assert!(ignore(&["foo /"]).excluded("foo"));
    }

    /// Patterns built only from constructs where Docker's regex and Go's filepath.Match agree
    /// (no `**`, no escapes, no metacharacters inside classes, no class that can match `/`).
    /// The two matchers must then give the same answer: a cross-check of the translation, the
    /// regex engine and go_match. The `/` restriction is needed because Go's Match keeps the
    /// first place a chunk matches and never backtracks. So `*[^a]*` does not match `c/c` in
    /// Go, while Docker's regex `^[^/]*[^a][^/]*$` does.
    #[test]
    fn regex_agrees_with_filepath_match() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let literals = ['a', 'b', '.', '/', '-', '^', '+'];
        let members = ["a", "b", "-", ".", "a-b", "^"];
        let path_chars = ['a', 'b', '.', '/', '-', '^', '+', 'c'];
        let mut compared = 0;
        for _ in 0..20_000 {
            let mut pattern = String::new();
            let mut last_star = false;
            for _ in 0..1 + rng.below(6) {
                match rng.below(6) {
                    0 if !last_star => {
                        pattern.push('*');
                        last_star = true;
                        continue;
                    }
                    1 => pattern.push('?'),
                    2 => {
                        pattern.push('[');
                        if rng.below(3) == 0 {
                            // A negated class must exclude `/` to stay within one segment.
                            pattern.push_str("^/");
                        }
                        for _ in 0..1 + rng.below(2) {
                            let m = rng.pick(&members);
                            // `^` right after `[` would turn into the negation marker.
                            if !(m == "^" && pattern.ends_with('[')) {
                                pattern.push_str(m);
                            } else {
                                pattern.push('a');
                            }
                        }
                        pattern.push(']');
                    }
                    _ => {
                        let c = rng.pick(&literals);
                        // `^` outside a class is an anchor in the regex: keep it out here.
                        pattern.push(if c == '^' { 'a' } else { c });
                    }
                }
                last_star = false;
            }
            let cleaned = go_clean(&pattern);
            if cleaned.starts_with('/') || cleaned.contains("**") {
                continue;
            }
            // Patterns filepath.Match refuses (`[-]`, `[a-]`, ...) are parse errors: skip them.
            let Ok(Some(pattern_obj)) = new_pattern(&cleaned) else {
                continue;
            };
            for _ in 0..8 {
                let path: String = (0..rng.below(7)).map(|_| rng.pick(&path_chars)).collect();
                let want = gomatch(&cleaned, &path).unwrap();
                assert_eq!(pattern_obj.matches(&path), want, "pattern {cleaned:?} path {path:?}");
                compared += 1;
            }
        }
        assert!(compared > 50_000, "too few comparisons: {compared}");
    }

    /// No input may panic: random .dockerignore lines from an alphabet rich in syntax,
    /// against random paths, plus go_match and the source-glob splitter on the same strings.
    #[test]
    fn fuzz_no_panics() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let alphabet = [
            '*', '*', '?', '[', ']', '^', '!', '-', '\\', '\\', '/', '/', '.', ':', '{', '}', '(', ')', '|', '$', '+',
            'a', 'b', 'd', 'x', 'E', 'Q', 'p', 'z', '0', '7', '1', ' ', '#', '\n', '\r', 'é', '\u{feff}', '\u{fffd}',
        ];
        let path_alphabet = [
            'a', 'b', '/', '.', '-', '[', ']', '^', '!', '*', ' ', 'é', '\n', 'x', '0',
        ];
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = rng.below(14);
            let text: String = (0..len).map(|_| rng.pick(&alphabet)).collect();
            let ignore = Ignore::parse(&text).ok();
            parsed += usize::from(ignore.is_some());
            let _ = has_wildcards(&text);
            for _ in 0..4 {
                let path: String = (0..rng.below(12)).map(|_| rng.pick(&path_alphabet)).collect();
                let _ = gomatch(&text, &path);
                if let Some(ignore) = &ignore {
                    let _ = ignore.excluded(&path);
                    let _ = ignore.may_include_below(&path);
                }
            }
        }
        assert!(parsed > 5_000, "the fuzz should reach the matchers often: {parsed}");
    }
}
