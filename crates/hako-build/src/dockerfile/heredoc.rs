//! Finding heredocs (`<<EOF`, `<<-EOF`, `<<'EOF'`) on a RUN, COPY or ADD line, as BuildKit
//! does: the line is split into shell words (quotes and escapes kept; `<<` keeps the blanks
//! after it), and each word of the form `[digits]<<[-][blanks]delimiter` (the delimiter
//! holding no `<`) opens a heredoc whose body follows the instruction's line.

/// A heredoc opener found on a line.
#[derive(Debug)]
pub(crate) struct Marker {
    /// The delimiter, quotes removed.
    pub(crate) name: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub(crate) expand: bool,
    /// `<<-`: leading tabs are removed from the body and from the delimiter line.
    pub(crate) strip_tabs: bool,
    /// Byte offset of the word in the scanned line.
    pub(crate) offset: usize,
}

/// The heredoc openers of a line, in order. A line whose quotes don't close has none (as in
/// BuildKit, whose scan fails there).
pub(crate) fn scan_line(line: &str) -> Vec<Marker> {
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    let mut it = line.char_indices();
    while let Some((i, c)) = it.next() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                words.push((s, i));
            }
            continue;
        }
        start.get_or_insert(i);
        match c {
            '\\' => {
                it.next();
            }
            // `<<` takes the blanks after it into its word, as BuildKit's lexer does, so that
            // `<< EOF` opens a heredoc too.
            '<' if line[i + 1..].starts_with('<') => {
                it.next();
                while it.clone().next().is_some_and(|(_, c)| c == ' ' || c == '\t') {
                    it.next();
                }
            }
            '\'' => loop {
                match it.next() {
                    None => return Vec::new(),
                    Some((_, '\'')) => break,
                    Some(_) => {}
                }
            },
            '"' => loop {
                match it.next() {
                    None => return Vec::new(),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => {
                        it.next();
                    }
                    Some(_) => {}
                }
            },
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, line.len()));
    }
    words
        .into_iter()
        .filter(|&(s, e)| line[s..e].contains("<<"))
        .filter_map(|(s, e)| {
            let (name, expand, strip_tabs) = parse_word(&line[s..e])?;
            Some(Marker {
                name,
                expand,
                strip_tabs,
                offset: s,
            })
        })
        .collect()
}

/// Whether a word opens a heredoc: its delimiter (quotes removed), whether the body is to be
/// expanded (the delimiter was not quoted) and whether it is `<<-`.
pub(crate) fn parse_word(word: &str) -> Option<(String, bool, bool)> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0c']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut name = String::with_capacity(rest.len());
    let mut quoted = false;
    let mut it = rest.chars();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => return None,
            '\\' => name.extend(it.next()),
            '\'' => {
                quoted = true;
                loop {
                    match it.next()? {
                        '\'' => break,
                        c => name.push(c),
                    }
                }
            }
            '"' => {
                quoted = true;
                loop {
                    match it.next()? {
                        '"' => break,
                        '\\' => {
                            let n = it.next()?;
                            if !matches!(n, '"' | '$' | '\\') {
                                name.push('\\');
                            }
                            name.push(n);
                        }
                        c => name.push(c),
                    }
                }
            }
            c => name.push(c),
        }
    }
    (!name.is_empty()).then_some((name, !quoted, strip_tabs))
}
