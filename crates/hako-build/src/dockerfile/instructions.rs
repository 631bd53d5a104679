//! From a logical line to a typed instruction: the keyword, the `--flags`, and each
//! instruction's arguments (JSON or shell form, name=value pairs, words), with heredoc bodies
//! read from the lines that follow.

use std::time::Duration;

use super::expand;
use super::heredoc;
use super::lexer::{Lexer, Logical};
use super::{ArgDecl, Command, CopySpec, Health, Heredoc, Instruction, Kind, ParseError, RunMount, Stage};

/// A parsed line: a stage's FROM, or an instruction.
pub(crate) enum Parsed {
    /// A FROM line, and the offset of its stage name (for the duplicate-name error).
    From(Stage, usize),
    Instr(Instruction),
}

/// The instructions, sorted: the list the unknown-instruction error shows.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The keyword of an instruction, for messages.
pub(crate) fn keyword_of(kind: &Kind) -> &'static str {
    match kind {
        Kind::Run { .. } => "RUN",
        Kind::Cmd(_) => "CMD",
        Kind::Entrypoint(_) => "ENTRYPOINT",
        Kind::Env(_) => "ENV",
        Kind::Arg(_) => "ARG",
        Kind::Label(_) => "LABEL",
        Kind::Expose(_) => "EXPOSE",
        Kind::Workdir(_) => "WORKDIR",
        Kind::User(_) => "USER",
        Kind::Volume(_) => "VOLUME",
        Kind::StopSignal(_) => "STOPSIGNAL",
        Kind::Copy(_) => "COPY",
        Kind::Add(_) => "ADD",
        Kind::Healthcheck(_) => "HEALTHCHECK",
        Kind::Shell(_) => "SHELL",
        Kind::Onbuild(_) => "ONBUILD",
        Kind::Maintainer(_) => "MAINTAINER",
    }
}

/// The whitespace that separates the keyword and the words of FROM, EXPOSE, VOLUME, COPY and
/// ADD (BuildKit's `[\t\v\f\r ]`).
fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

fn skip(s: &str, from: usize, pred: impl Fn(char) -> bool) -> usize {
    s[from..].find(|c: char| !pred(c)).map_or(s.len(), |i| from + i)
}

/// Words separated by [`is_sep`] whitespace, with their offsets; nothing else is special.
fn split_words(s: &str, from: usize) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut pos = skip(s, from, is_sep);
    while pos < s.len() {
        let end = s[pos..].find(is_sep).map_or(s.len(), |i| pos + i);
        out.push((&s[pos..end], pos));
        pos = skip(s, end, is_sep);
    }
    out
}

/// The line being parsed.
struct Line<'l, 'a> {
    lg: &'l Logical<'a>,
    /// The logical line's content, trailing whitespace removed.
    s: &'l str,
    escape: char,
}

impl Line<'_, '_> {
    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(self.lg.error(offset, message))
    }

    /// Checks the syntax of a word the executor will expand, at its offset in the line.
    fn check(&self, word: &str, offset: usize) -> Result<(), ParseError> {
        expand::check(word, self.escape).or_else(|e| self.err(offset + e.offset, e.message))
    }
}

/// Parses one logical line (and the heredoc bodies after it).
pub(crate) fn parse_logical<'a>(lx: &mut Lexer<'a>, lg: &Logical<'a>) -> Result<Parsed, ParseError> {
    let line = Line {
        lg,
        s: lg.content.trim_end(),
        escape: lx.escape(),
    };
    parse_at(lx, &line, 0, &lg.text)
}

/// A `--flag` word, quotes and escapes removed.
struct RawFlag {
    word: String,
    offset: usize,
}

/// The `--flags` at `from` and where the arguments start (past whitespace), as BuildKit reads
/// them: words starting with `--`, quotes removed and `\` escaping; a lone `--` ends them.
fn extract_flags(line: &Line, from: usize) -> Result<(Vec<RawFlag>, usize), ParseError> {
    let s = line.s;
    let mut flags = Vec::new();
    let mut pos = from;
    loop {
        pos = skip(s, pos, char::is_whitespace);
        if !s[pos..].starts_with("--") {
            return Ok((flags, pos));
        }
        let start = pos;
        let mut word = String::new();
        let mut quote: Option<(char, usize)> = None;
        let mut it = s[pos..].char_indices();
        let mut end = s.len();
        while let Some((i, c)) = it.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = pos + i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some((c, pos + i)),
                Some((q, _)) if c == q => quote = None,
                _ if c == '\\' => word.extend(it.next().map(|(_, n)| n)),
                _ => word.push(c),
            }
        }
        if let Some((_, at)) = quote {
            return line.err(at, "unterminated quote in a flag");
        }
        pos = end;
        if word == "--" {
            return Ok((flags, skip(s, pos, char::is_whitespace)));
        }
        flags.push(RawFlag { word, offset: start });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Str,
    /// A string that may be given several times (`--mount`).
    Multi,
}

/// The flags given, checked against what the instruction takes.
struct Flags {
    values: Vec<(&'static str, String, usize)>,
}

impl Flags {
    fn parse(
        line: &Line,
        instr: &str,
        raw: Vec<RawFlag>,
        spec: &[(&'static str, FlagKind)],
    ) -> Result<Flags, ParseError> {
        let mut values: Vec<(&'static str, String, usize)> = Vec::with_capacity(raw.len());
        for f in raw {
            let body = &f.word[2..];
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let expected = if spec.is_empty() {
                    format!("{instr} takes no flags")
                } else {
                    let names: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("expected {}", names.join(", "))
                };
                return line.err(f.offset, format!("unknown flag --{name} for {instr} ({expected})"));
            };
            if kind != FlagKind::Multi && values.iter().any(|(n, _, _)| *n == name) {
                return line.err(f.offset, format!("duplicate flag --{name}: it may be given once"));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => return line.err(f.offset, format!("--{name} expects true or false, not {v:?}")),
                },
                (_, None) => return line.err(f.offset, format!("flag --{name} needs a value (--{name}=...)")),
                (_, Some(v)) => v.to_string(),
            };
            values.push((name, value, f.offset));
        }
        Ok(Flags { values })
    }

    fn get(&self, name: &str) -> Option<(&str, usize)> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, o)| (v.as_str(), *o))
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|(v, _)| v.to_string())
    }

    fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(v, _)| v == "true")
    }

    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (&'s str, usize)> + 's {
        self.values
            .iter()
            .filter(move |(n, _, _)| *n == name)
            .map(|(_, v, o)| (v.as_str(), *o))
    }
}

/// How the arguments read as JSON.
enum Json {
    /// A JSON array of strings.
    Strings(Vec<String>),
    /// A JSON array holding something else: an error, as in Docker.
    NotStrings,
    /// Not a JSON array: the shell form.
    No,
}

/// BuildKit's test: the arguments start with `[` and a JSON value can be decoded there (text
/// after it is ignored, as Go's decoder does).
fn json_array(args: &str) -> Json {
    if !args.starts_with('[') {
        return Json::No;
    }
    let mut values = serde_json::Deserializer::from_str(args).into_iter::<serde_json::Value>();
    match values.next() {
        Some(Ok(serde_json::Value::Array(items))) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
        _ => Json::No,
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// A heredoc's body, read.
struct Body {
    marker: heredoc::Marker,
    /// As written (tabs included).
    raw: String,
}

/// Reads the bodies of the heredocs opened on the line from `from`, in order.
fn read_heredocs(lx: &mut Lexer, line: &Line, from: usize) -> Result<Vec<Body>, ParseError> {
    let s = &line.s[from..];
    if !s.contains("<<") {
        return Ok(Vec::new());
    }
    let mut bodies = Vec::new();
    for marker in heredoc::scan_line(s) {
        let Some(raw) = lx.read_heredoc(&marker.name, marker.strip_tabs) else {
            let name = &marker.name;
            return line.err(
                from + marker.offset,
                format!("unterminated heredoc: no line {name:?} ends the heredoc started here"),
            );
        };
        bodies.push(Body { marker, raw });
    }
    Ok(bodies)
}

/// The body with its leading tabs removed when `<<-`.
fn content_of(body: &Body) -> String {
    if !body.marker.strip_tabs {
        return body.raw.clone();
    }
    let mut out = String::with_capacity(body.raw.len());
    for l in body.raw.split_inclusive('\n') {
        out.push_str(l.trim_start_matches('\t'));
    }
    out
}

/// The instruction text followed by the heredocs, as written.
fn with_bodies(text: &str, bodies: &[Body]) -> String {
    let mut t = text.to_string();
    for b in bodies {
        t.push('\n');
        t.push_str(&b.raw);
        t.push_str(&b.marker.name);
    }
    t
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_instruction(line: &Line, keyword: &str, at: usize) -> ParseError {
    if keyword.is_empty() {
        // Only line continuations and whitespace: no keyword at all, so the place is where
        // the continuation began.
        let message = format!("expected an instruction (one of {})", INSTRUCTIONS.join(", "));
        return ParseError {
            line: line.lg.line,
            column: 1,
            message,
        };
    }
    let upper = keyword.to_uppercase();
    // One edit away, or two for the long names: FOO is no typo of FROM, WORKIDR is one of WORKDIR.
    let close = INSTRUCTIONS
        .iter()
        .filter(|n| upper.len().abs_diff(n.len()) <= 2)
        .map(|n| (n, distance(&upper, n)))
        .filter(|&(n, d)| d <= if n.len() >= 6 { 2 } else { 1 })
        .min_by_key(|&(_, d)| d)
        .map(|(n, _)| n);
    let hint = close.map(|n| format!("did you mean {n}? ")).unwrap_or_default();
    line.lg.error(
        at,
        format!(
            "unknown instruction: {keyword} ({hint}expected one of {})",
            INSTRUCTIONS.join(", ")
        ),
    )
}

/// Parses the instruction whose keyword starts at `start` (0, or past `ONBUILD`); `text` is
/// its display text.
fn parse_at(lx: &mut Lexer, line: &Line, start: usize, text: &str) -> Result<Parsed, ParseError> {
    let s = line.s;
    let kw_end = s[start..].find(is_sep).map_or(s.len(), |i| start + i);
    let keyword = &s[start..kw_end];
    let Some(&name) = INSTRUCTIONS.iter().find(|n| n.eq_ignore_ascii_case(keyword)) else {
        return Err(unknown_instruction(line, keyword, start));
    };
    let (raw_flags, args_at) = extract_flags(line, skip(s, kw_end, is_sep))?;
    let args = &s[args_at..];
    let instr = |kind: Kind| -> Result<Parsed, ParseError> {
        Ok(Parsed::Instr(Instruction {
            line: line.lg.line,
            text: text.to_string(),
            kind,
        }))
    };
    let need_args = |what: &str| -> Result<(), ParseError> {
        if args.is_empty() {
            return line.err(start, format!("{name} requires {what}"));
        }
        Ok(())
    };
    let no_flags = |raw: Vec<RawFlag>| Flags::parse(line, name, raw, &[]).map(drop);
    use FlagKind::*;
    match name {
        "FROM" => {
            let flags = Flags::parse(line, name, raw_flags, &[("platform", Str)])?;
            let words = split_words(s, args_at);
            let (base, stage_name, name_at) = match words.as_slice() {
                [] => {
                    return line.err(
                        start,
                        "FROM expects an image name: FROM [--platform=<platform>] <image> [AS <name>]",
                    )
                }
                [(base, _)] => (*base, None, start),
                [(base, _), (as_kw, _), (n, at)] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = n.to_lowercase();
                    let mut chars = lower.chars();
                    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
                    if !valid {
                        return line.err(
                            *at,
                            format!(
                                "invalid stage name {n:?}: it must start with a letter and hold only letters, \
                                 digits, '-', '_' and '.'"
                            ),
                        );
                    }
                    (*base, Some(lower), *at)
                }
                [_, (_, at), ..] => {
                    return line.err(
                        *at,
                        "FROM takes one or three arguments: FROM [--platform=<platform>] <image> [AS <name>]",
                    )
                }
            };
            line.check(base, words[0].1)?;
            if let Some((p, at)) = flags.get("platform") {
                line.check(p, at + "--platform=".len())?;
            }
            Ok(Parsed::From(
                Stage {
                    name: stage_name,
                    base: base.to_string(),
                    platform: flags.string("platform"),
                    line: line.lg.line,
                    instructions: Vec::new(),
                },
                name_at,
            ))
        }
        "RUN" => {
            let flags = Flags::parse(line, name, raw_flags, &[("mount", Multi), ("network", Str)])?;
            need_args("a command")?;
            let mut mounts = Vec::new();
            for (v, at) in flags.all("mount") {
                mounts.push(parse_mount(v).or_else(|m| line.err(at, format!("--mount: {m}")))?);
            }
            let network = flags.get("network");
            if let Some((n, at)) = network {
                if !n.contains('$') && !matches!(n, "default" | "none" | "host") {
                    return line.err(
                        at,
                        format!("unsupported network mode {n:?} (expected default, none or host)"),
                    );
                }
            }
            let network = network.map(|(n, _)| n.to_string());
            let (cmd, text) = match json_array(args) {
                Json::Strings(v) => (Command::Exec(v), text.to_string()),
                Json::NotStrings => return line.err(args_at, NOT_STRINGS),
                Json::No => {
                    let bodies = read_heredocs(lx, line, start)?;
                    let cmd = match bodies.as_slice() {
                        [] => args.to_string(),
                        [only] if heredoc::parse_word(args).is_some() => content_of(only),
                        _ => {
                            let mut full = args.to_string();
                            for b in &bodies {
                                full.push('\n');
                                full.push_str(&b.raw);
                                full.push_str(&b.marker.name);
                            }
                            full
                        }
                    };
                    (Command::Shell(cmd), with_bodies(text, &bodies))
                }
            };
            Ok(Parsed::Instr(Instruction {
                line: line.lg.line,
                text,
                kind: Kind::Run { cmd, mounts, network },
            }))
        }
        "CMD" | "ENTRYPOINT" => {
            no_flags(raw_flags)?;
            need_args("a command (JSON form [\"executable\", \"arg\"...] or a shell command)")?;
            let cmd = match json_array(args) {
                Json::Strings(v) => Command::Exec(v),
                Json::NotStrings => return line.err(args_at, NOT_STRINGS),
                Json::No => Command::Shell(args.to_string()),
            };
            instr(if name == "CMD" {
                Kind::Cmd(cmd)
            } else {
                Kind::Entrypoint(cmd)
            })
        }
        "SHELL" => {
            no_flags(raw_flags)?;
            match json_array(args) {
                Json::Strings(v) if v.is_empty() => line.err(args_at, "SHELL requires at least one argument"),
                Json::Strings(v) => instr(Kind::Shell(v)),
                Json::NotStrings => line.err(args_at, NOT_STRINGS),
                Json::No => line.err(
                    if args.is_empty() { start } else { args_at },
                    "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
                ),
            }
        }
        "ENV" | "LABEL" => {
            no_flags(raw_flags)?;
            need_args("at least one name=value pair")?;
            let pairs = name_values(line, name, args_at)?;
            instr(if name == "ENV" {
                Kind::Env(pairs)
            } else {
                Kind::Label(pairs)
            })
        }
        "ARG" => {
            no_flags(raw_flags)?;
            need_args("at least one argument: ARG <name>[=<default>] ...")?;
            let mut decls = Vec::new();
            for (w, at) in quoted_words(line, args_at)? {
                let (n, default) = match w.split_once('=') {
                    Some((n, d)) => (n, Some(d)),
                    None => (w.as_str(), None),
                };
                if n.is_empty() {
                    return line.err(at, "ARG names can not be blank");
                }
                if let Some(d) = default {
                    line.check(d, at + n.len() + 1)?;
                }
                decls.push(ArgDecl {
                    name: n.to_string(),
                    default: default.map(str::to_string),
                });
            }
            instr(Kind::Arg(decls))
        }
        "EXPOSE" => {
            no_flags(raw_flags)?;
            need_args("at least one port: EXPOSE <port>[/<protocol>] ...")?;
            let mut ports = Vec::new();
            for (w, at) in split_words(s, args_at) {
                line.check(w, at)?;
                ports.push(w.to_string());
            }
            instr(Kind::Expose(ports))
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" => {
            no_flags(raw_flags)?;
            need_args("exactly one argument")?;
            line.check(args, args_at)?;
            let a = args.to_string();
            instr(match name {
                "WORKDIR" => Kind::Workdir(a),
                "USER" => Kind::User(a),
                _ => Kind::StopSignal(a),
            })
        }
        "MAINTAINER" => {
            no_flags(raw_flags)?;
            need_args("exactly one argument")?;
            instr(Kind::Maintainer(args.to_string()))
        }
        "VOLUME" => {
            no_flags(raw_flags)?;
            need_args("at least one path")?;
            let vols: Vec<(String, usize)> = match json_array(args) {
                Json::Strings(v) => v.into_iter().map(|p| (p, args_at)).collect(),
                Json::NotStrings => return line.err(args_at, NOT_STRINGS),
                Json::No => split_words(s, args_at)
                    .into_iter()
                    .map(|(w, at)| (w.to_string(), at))
                    .collect(),
            };
            if vols.is_empty() {
                return line.err(args_at, "VOLUME requires at least one path");
            }
            for (v, at) in &vols {
                if v.is_empty() {
                    return line.err(*at, "VOLUME specified can not be an empty string");
                }
                line.check(v, *at)?;
            }
            instr(Kind::Volume(vols.into_iter().map(|(v, _)| v).collect()))
        }
        "COPY" | "ADD" => {
            let spec: &[(&str, FlagKind)] = if name == "COPY" {
                &[("from", Str), ("chown", Str), ("chmod", Str), ("link", Bool)]
            } else {
                &[
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("checksum", Str),
                    ("keep-git-dir", Bool),
                ]
            };
            let flags = Flags::parse(line, name, raw_flags, spec)?;
            let (json, words): (bool, Vec<(String, usize)>) = match json_array(args) {
                Json::Strings(v) => (true, v.into_iter().map(|w| (w, args_at)).collect()),
                Json::NotStrings => return line.err(args_at, NOT_STRINGS),
                Json::No => (
                    false,
                    split_words(s, args_at)
                        .into_iter()
                        .map(|(w, at)| (w.to_string(), at))
                        .collect(),
                ),
            };
            if words.len() < 2 {
                let found = if words.is_empty() {
                    "none was given"
                } else {
                    "only one was given"
                };
                return line.err(
                    start,
                    format!("{name} requires at least two arguments, the sources and a destination ({found})"),
                );
            }
            let bodies = if json {
                Vec::new()
            } else {
                read_heredocs(lx, line, start)?
            };
            let Some(((dest, dest_at), sources)) = words.split_last() else {
                unreachable!("two words at least")
            };
            if !json && heredoc::parse_word(dest).is_some() {
                return line.err(*dest_at, format!("{name} cannot take a heredoc as its destination"));
            }
            let mut spec = CopySpec {
                sources: Vec::with_capacity(sources.len()),
                dest: dest.clone(),
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                heredocs: Vec::new(),
            };
            let mut i = 0;
            while i < sources.len() {
                let (src, at) = &sources[i];
                i += 1;
                let body_of = |word: &str| {
                    let (n, _, _) = heredoc::parse_word(word)?;
                    bodies.iter().rev().find(|b| b.marker.name == n)
                };
                let mut body = if bodies.is_empty() { None } else { body_of(src) };
                // `<< EOF` is one heredoc for the line's scan but two words here: join them
                // (BuildKit would copy files named `<<` and `EOF`).
                if body.is_none() && !bodies.is_empty() && i < sources.len() {
                    let bare = src.trim_start_matches(|c: char| c.is_ascii_digit());
                    if bare == "<<" {
                        body = body_of(&format!("{src} {}", sources[i].0));
                        i += usize::from(body.is_some());
                    }
                }
                match body {
                    Some(b) => spec.heredocs.push(Heredoc {
                        name: b.marker.name.clone(),
                        content: content_of(b),
                        expand: b.marker.expand,
                        strip_tabs: b.marker.strip_tabs,
                    }),
                    None => {
                        line.check(src, *at)?;
                        spec.sources.push(src.clone());
                    }
                }
            }
            line.check(dest, *dest_at)?;
            for flag in ["chown", "chmod"] {
                if let Some((v, at)) = flags.get(flag) {
                    line.check(v, at + flag.len() + 3)?;
                }
            }
            let text = with_bodies(text, &bodies);
            let kind = if name == "COPY" {
                Kind::Copy(spec)
            } else {
                Kind::Add(spec)
            };
            Ok(Parsed::Instr(Instruction {
                line: line.lg.line,
                text,
                kind,
            }))
        }
        "HEALTHCHECK" => {
            let flags = Flags::parse(
                line,
                name,
                raw_flags,
                &[
                    ("interval", Str),
                    ("timeout", Str),
                    ("start-period", Str),
                    ("start-interval", Str),
                    ("retries", Str),
                ],
            )?;
            need_args("CMD <command> or NONE")?;
            let typ_end = args.find(char::is_whitespace).unwrap_or(args.len());
            let typ = &args[..typ_end];
            let rest_at = skip(s, args_at + typ_end, char::is_whitespace);
            let rest = &s[rest_at..];
            if typ.eq_ignore_ascii_case("NONE") {
                if !rest.is_empty() {
                    return line.err(rest_at, "HEALTHCHECK NONE takes no arguments");
                }
                return instr(Kind::Healthcheck(None));
            }
            if !typ.eq_ignore_ascii_case("CMD") {
                return line.err(
                    args_at,
                    format!("unknown HEALTHCHECK type {typ:?} (expected CMD or NONE)"),
                );
            }
            let cmd = match json_array(rest) {
                Json::Strings(v) if v.is_empty() => return line.err(rest_at, "missing command after HEALTHCHECK CMD"),
                Json::Strings(v) => Command::Exec(v),
                Json::NotStrings => return line.err(rest_at, NOT_STRINGS),
                Json::No if rest.is_empty() => return line.err(args_at, "missing command after HEALTHCHECK CMD"),
                Json::No => Command::Shell(rest.to_string()),
            };
            let duration = |flag: &str| -> Result<Option<Duration>, ParseError> {
                let Some((v, at)) = flags.get(flag) else {
                    return Ok(None);
                };
                match parse_duration(v) {
                    Ok(d) if d >= Duration::from_millis(1) => Ok(Some(d)),
                    Ok(_) => line.err(at, format!("--{flag} must be at least 1ms (got {v:?})")),
                    Err(m) => line.err(at, format!("--{flag}: {m}")),
                }
            };
            let retries = match flags.get("retries") {
                None => None,
                Some((v, at)) => match v.strip_prefix('+').unwrap_or(v).parse::<i64>() {
                    Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Some(n as u32),
                    Ok(_) => return line.err(at, format!("--retries must be at least 1 (got {v})")),
                    Err(_) => return line.err(at, format!("--retries expects a whole number, not {v:?}")),
                },
            };
            instr(Kind::Healthcheck(Some(Health {
                cmd,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })))
        }
        "ONBUILD" => {
            no_flags(raw_flags)?;
            need_args("an instruction to run when the image is used as a base")?;
            let trigger_end = args.find(is_sep).unwrap_or(args.len());
            let trigger = args[..trigger_end].to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => return line.err(args_at, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
                "FROM" | "MAINTAINER" => {
                    return line.err(args_at, format!("{trigger} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            // The trigger's text: this text without the ONBUILD keyword.
            let inner_text = text.find(is_sep).map_or("", |i| text[i..].trim_start_matches(is_sep));
            match parse_at(lx, line, args_at, inner_text)? {
                Parsed::Instr(inner) => {
                    // Heredoc bodies the trigger read belong to this text too.
                    let mut outer = text.to_string();
                    outer.push_str(inner.text.get(inner_text.len()..).unwrap_or_default());
                    Ok(Parsed::Instr(Instruction {
                        line: line.lg.line,
                        text: outer,
                        kind: Kind::Onbuild(Box::new(inner)),
                    }))
                }
                Parsed::From(..) => line.err(args_at, "FROM isn't allowed as an ONBUILD trigger"),
            }
        }
        _ => unreachable!("every name of INSTRUCTIONS is handled"),
    }
}

/// BuildKit's `parseWords`: words split on whitespace, quotes and escapes kept as written
/// (they are for [`expand`]). An unterminated quote is an error.
fn quoted_words(line: &Line, from: usize) -> Result<Vec<(String, usize)>, ParseError> {
    let s = line.s;
    let esc = line.escape;
    let mut words = Vec::new();
    let mut word = String::new();
    let mut word_at = from;
    let mut quote: Option<(char, usize)> = None;
    let mut it = s[from..].char_indices().map(|(i, c)| (from + i, c)).peekable();
    while let Some((i, c)) = it.next() {
        match quote {
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_at));
                }
                continue;
            }
            None => {
                if word.is_empty() {
                    word_at = i;
                }
                if c == '\'' || c == '"' {
                    quote = Some((c, i));
                }
            }
            Some((q, _)) if c == q => quote = None,
            Some(_) => {}
        }
        word.push(c);
        // The escape character takes the next one along (not inside single quotes).
        if c == esc && !matches!(quote, Some(('\'', _))) {
            if let Some((_, n)) = it.next() {
                word.push(n);
            }
        }
    }
    if let Some((q, at)) = quote {
        return line.err(at, format!("unterminated quote (missing closing {q})"));
    }
    if !word.is_empty() {
        words.push((word, word_at));
    }
    Ok(words)
}

/// The arguments of ENV and LABEL: `name=value ...`, or the legacy `name value` (the value
/// being the rest of the line), as BuildKit tells them apart: by whether the first word holds
/// an `=`.
fn name_values(line: &Line, instr: &str, from: usize) -> Result<Vec<(String, String)>, ParseError> {
    let words = quoted_words(line, from)?;
    let Some((first, _)) = words.first() else {
        return line.err(from, format!("{instr} requires at least one argument"));
    };
    if !first.contains('=') {
        let s = line.s;
        let key_end = s[from..].find(is_sep).map_or(s.len(), |i| from + i);
        let value_at = skip(s, key_end, is_sep);
        if value_at >= s.len() {
            return line.err(from, format!("{instr} must have two arguments: {instr} <name>=<value> ... (or the legacy {instr} <name> <value>)"));
        }
        let (key, value) = (&s[from..key_end], &s[value_at..]);
        line.check(key, from)?;
        line.check(value, value_at)?;
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    let mut pairs = Vec::with_capacity(words.len());
    for (w, at) in words {
        let Some((k, v)) = w.split_once('=') else {
            return line.err(
                at,
                format!("syntax error: can't find = in {w:?}; {instr} arguments must be of the form name=value"),
            );
        };
        if k.is_empty() {
            return line.err(at, format!("{instr} names can not be blank"));
        }
        line.check(k, at)?;
        line.check(v, at + k.len() + 1)?;
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a CSV record (Go's `encoding/csv`: a field in double quotes may hold commas, `""`
/// is a quote).
fn csv_fields(v: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut it = v.chars().peekable();
    loop {
        let mut field = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next() {
                    None => return Err("unterminated quote in the mount options".into()),
                    Some('"') if it.peek() == Some(&'"') => {
                        it.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match it.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match it.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

/// One `--mount=` value: `type=cache,target=/root/.cache,...` (see [`RunMount`]).
fn parse_mount(v: &str) -> Result<RunMount, String> {
    let fields = csv_fields(v)?;
    let mut kind = "bind".to_string();
    for f in &fields {
        if let Some((k, t)) = f.split_once('=') {
            if k.eq_ignore_ascii_case("type") {
                kind = t.to_ascii_lowercase();
            }
        }
    }
    let known_kind = !kind.contains('$');
    if known_kind && !matches!(kind.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
        return Err(format!(
            "unsupported mount type {kind:?} (expected bind, cache, tmpfs, secret or ssh)"
        ));
    }
    let for_kind = |key: &str, kinds: &[&str]| -> Result<(), String> {
        if known_kind && !kinds.contains(&kind.as_str()) {
            return Err(format!("{key} is not allowed for type={kind} mounts"));
        }
        Ok(())
    };
    let mut target = String::new();
    let mut options = Vec::new();
    for f in &fields {
        let (key, value) = match f.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (f.to_ascii_lowercase(), None),
        };
        let bool_value = |key: &str| match value {
            None => Ok(true),
            Some(v) if v.contains('$') => Err(format!("{key} takes true or false, not a variable")),
            Some(v) => parse_bool(v).ok_or_else(|| format!("invalid value for {key}: {v:?}")),
        };
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => target = value.unwrap_or_default().to_string(),
            "readonly" | "ro" => options.push(("readonly".into(), bool_value(&key)?.to_string())),
            "readwrite" | "rw" => options.push(("readonly".into(), (!bool_value(&key)?).to_string())),
            "required" => {
                for_kind("required", &["secret", "ssh"])?;
                options.push(("required".into(), bool_value(&key)?.to_string()));
            }
            _ => {
                let Some(value) = value else {
                    return Err(format!("invalid field {f:?}: it must be a key=value pair"));
                };
                let key = match key.as_str() {
                    "source" | "src" => "source",
                    "from" => "from",
                    "id" => "id",
                    "env" => "env",
                    "sharing" => {
                        for_kind("sharing", &["cache"])?;
                        if !value.contains('$')
                            && !matches!(value.to_ascii_lowercase().as_str(), "shared" | "private" | "locked")
                        {
                            return Err(format!(
                                "unsupported sharing value {value:?} (expected shared, private or locked)"
                            ));
                        }
                        "sharing"
                    }
                    "mode" => {
                        for_kind("mode", &["cache", "secret", "ssh"])?;
                        "mode"
                    }
                    "uid" => {
                        for_kind("uid", &["cache", "secret", "ssh"])?;
                        "uid"
                    }
                    "gid" => {
                        for_kind("gid", &["cache", "secret", "ssh"])?;
                        "gid"
                    }
                    "size" => {
                        for_kind("size", &["tmpfs"])?;
                        "size"
                    }
                    other => {
                        return Err(format!(
                            "unexpected key {other:?} (expected type, target, source, from, id, sharing, mode, uid, \
                             gid, size, readonly, rw, required, env)"
                        ))
                    }
                };
                options.push((key.to_string(), value.to_string()));
            }
        }
    }
    if target.is_empty() && !matches!(kind.as_str(), "secret" | "ssh") {
        return Err(format!("type={kind} mounts need a target=<path>"));
    }
    Ok(RunMount { kind, target, options })
}

/// A Go duration (`300ms`, `1.5h`, `1m30s`; units ns, us/µs, ms, s, m, h). Negative
/// durations are refused: no flag takes them.
pub(crate) fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {v:?} (expected e.g. 30s, 1m30s, 500ms)");
    let mut s = v.strip_prefix('+').unwrap_or(v);
    if s.starts_with('-') {
        return Err(format!("invalid duration {v:?}: it must not be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int = &s[..int_len];
        s = &s[int_len..];
        let mut frac = "";
        if let Some(r) = s.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac = &r[..n];
            s = &r[n..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        let unit: u128 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("invalid duration {v:?}: missing unit (ns, us, ms, s, m or h)")),
            u => {
                return Err(format!(
                    "invalid duration {v:?}: unknown unit {u:?} (expected ns, us, ms, s, m or h)"
                ))
            }
        };
        s = &s[unit_len..];
        // Digits beyond what an i64 of nanoseconds can hold make the value overflow anyway.
        if int.len() > 20 {
            return Err(format!("invalid duration {v:?}: too large"));
        }
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac = &frac[..frac.len().min(20)];
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        total += whole * unit + frac_value * unit / 10u128.pow(frac.len() as u32);
        if total > i64::MAX as u128 {
            return Err(format!("invalid duration {v:?}: too large"));
        }
    }
    Ok(Duration::from_nanos(total as u64))
}
