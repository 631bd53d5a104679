//! The Dockerfile parser and word expansion.
//!
//! [`parse`] turns a Dockerfile into stages of typed instructions. It follows the Dockerfile
//! reference and BuildKit's frontend where they decide behaviour (parser directives, comments
//! and line continuations, the JSON and shell forms, flags, heredocs), so that Dockerfiles
//! written for `docker build` mean the same here. Arguments stay raw: variables are expanded
//! by the executor, step by step, with [`expand`] and [`expand_words`], because their values
//! (ENV, ARG) change as the stages run. The parser does check the syntax of every word the
//! executor will expand (quotes, `${...}`), so such mistakes are reported with their line and
//! column before anything runs.
//!
//! The parser runs on every build, fully cached ones included, so it is a single pass over the
//! text with no regular expressions.

mod expand;
mod heredoc;
mod instructions;
mod lexer;

use std::time::Duration;

pub use expand::{expand, expand_heredoc, expand_words, ExpandError};

/// A parsed Dockerfile: its parser directives, the ARGs declared before the first FROM, and
/// its stages in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character from `# escape=` (`\` or `` ` ``), `\` by default. It also
    /// continues lines, and the executor passes it to [`expand`].
    pub escape: char,
    /// The `# syntax=` directive, recorded but not acted on: hako has one frontend.
    pub syntax: Option<String>,
    /// The ARGs before the first FROM: they are visible to FROM lines only (and to stages that
    /// redeclare them), so they are kept apart from the stages.
    pub global_args: Vec<ArgDecl>,
    /// The stages, one per FROM, in order.
    pub stages: Vec<Stage>,
}

/// One build stage: a FROM line and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The name given with `AS name`, lowercased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The base image or stage as written: it may hold global ARGs (`FROM $BASE`), which the
    /// executor expands.
    pub base: String,
    /// `--platform=...` as written (may hold ARGs too).
    pub platform: Option<String>,
    /// The line of the FROM instruction (1-based).
    pub line: usize,
    /// The stage's instructions, FROM excluded.
    pub instructions: Vec<Instruction>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line the instruction starts on (1-based).
    pub line: usize,
    /// The instruction as written, for display and cache keys: the keyword as written, the
    /// continuation lines joined where the whitespace around each join becomes one space
    /// (`RUN a && \` + `    b` gives `RUN a && b`; `RUN echo a\` + `b` gives `RUN echo ab`, as
    /// the command itself does). Comment lines inside the continuation are left out. An
    /// instruction with heredocs is followed by each heredoc body and its delimiter on the
    /// next lines, exactly as a Dockerfile would hold them: so the text changes whenever the
    /// heredoc does (cache keys), and it parses back into the same instruction (ONBUILD
    /// triggers are stored as this text). Display only the first line.
    pub text: String,
    /// What the instruction does.
    pub kind: Kind,
}

/// The instructions, with their arguments as written (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `RUN`. A heredoc (`RUN <<EOF`) gives [`Command::Shell`]: see `cmd`.
    Run {
        /// The command. In shell form it is not expanded by the builder: the shell does it.
        ///
        /// Heredocs, as BuildKit runs them: when the heredoc is all there is after the flags
        /// (`RUN <<EOF` / `RUN <<-EOF` / `RUN <<'EOF'`), the command is `Shell(body)` (tabs
        /// already stripped for `<<-`), a script for the shell, which expands its `$vars` as
        /// scripts do (quoting the delimiter changes nothing there). A body starting with `#!` is
        /// meant to be run by its interpreter (BuildKit writes it to a file and executes it):
        /// the executor should do the same when the shell form would not. Otherwise
        /// (`RUN python3 <<EOF`, `RUN cat <<A >a <<B >b`) the command is the line after the
        /// flags, then for each heredoc a newline, its body and its delimiter: a shell script
        /// in which the shell itself reads the heredocs.
        cmd: Command,
        /// The `--mount=` flags, in order.
        mounts: Vec<RunMount>,
        /// `--network=` (`default`, `none` or `host`).
        network: Option<String>,
    },
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `ENV`: (name, value) pairs as written. Values keep their quotes, escapes and `$vars`
    /// for [`expand`]; names are expanded too, as Docker does. The legacy `ENV name value...`
    /// form gives one pair whose value is the rest of the line (`ENV a b c` -> `("a", "b c")`).
    Env(Vec<(String, String)>),
    /// `ARG`: one or more declarations.
    Arg(Vec<ArgDecl>),
    /// `LABEL`: (key, value) pairs as written, like [`Kind::Env`] (legacy form included).
    Label(Vec<(String, String)>),
    /// `EXPOSE`: the words as written (`80/tcp`, `$PORT`), split on whitespace.
    Expose(Vec<String>),
    /// `WORKDIR`: the rest of the line as written.
    Workdir(String),
    /// `USER`: the rest of the line as written.
    User(String),
    /// `VOLUME`: the paths as written, from the JSON form or split on whitespace.
    Volume(Vec<String>),
    /// `STOPSIGNAL`: the rest of the line as written.
    StopSignal(String),
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `HEALTHCHECK`; `None` is `HEALTHCHECK NONE` (disable the base image's check).
    Healthcheck(Option<Health>),
    /// `SHELL`: the new shell, JSON form only (the shell form is refused, as Docker does).
    Shell(Vec<String>),
    /// `ONBUILD`: the trigger, an instruction of its own (its [`Instruction::text`] is what
    /// goes into the image's `OnBuild` list). ONBUILD, FROM and MAINTAINER are refused as
    /// triggers, as Docker does.
    Onbuild(Box<Instruction>),
    /// `MAINTAINER` (deprecated, kept for old Dockerfiles).
    Maintainer(String),
}

/// A command of RUN, CMD, ENTRYPOINT or HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The JSON form (`["a", "b"]`): run as is, no shell, no expansion. As Docker, a valid
    /// JSON array followed by more text is still the JSON form (the rest is ignored).
    Exec(Vec<String>),
    /// The shell form: anything that is not a JSON array of strings (invalid JSON included, as
    /// Docker: `RUN [ -f x ]` is a shell test), run with the stage's SHELL.
    Shell(String),
}

/// One `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default as written (expanded by the executor when the ARG is reached), if any.
    /// `ARG a=` declares an empty default, `ARG a` none.
    pub default: Option<String>,
}

/// One `RUN --mount=` flag, e.g. `--mount=type=cache,target=/root/.cache,id=x,sharing=locked`.
///
/// Values are as written: they may hold `$vars`, which BuildKit expands, so the executor
/// should [`expand`] them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// `type=`, lowercased: `bind` (the default), `cache`, `tmpfs`, `secret` or `ssh`.
    pub kind: String,
    /// `target=` (aliases `dst=`, `destination=`). Required except for `secret` and `ssh`,
    /// where an empty target means the default (`/run/secrets/<id>`,
    /// `/run/buildkit/ssh_agent.<n>`) for the executor to fill in.
    pub target: String,
    /// The other options in order, keys lowercased and aliases resolved so the executor
    /// matches one spelling: `src` -> `source`; `ro` or `readonly` (bare or `=bool`) ->
    /// `readonly=true|false`; `rw` or `readwrite` (bare or `=bool`) -> `readonly=false|true`;
    /// a bare `required` -> `required=true`. Known keys: `source`, `from`, `id`, `sharing`
    /// (`shared|private|locked`), `mode`, `uid`, `gid`, `size`, `readonly`, `required`, `env`.
    pub options: Vec<(String, String)>,
}

/// The arguments of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// The sources as written (heredoc sources excluded: they are in `heredocs`). The JSON
    /// form (`COPY ["a b", "c/"]`) allows spaces.
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// `--from=` (COPY only): a stage name or index, or an image.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--checksum=` (ADD only): the digest a remote source must have.
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only): keep `.git` when adding a Git repository.
    pub keep_git_dir: bool,
    /// Files given inline (`COPY <<EOF /dest`), in the order of the sources.
    pub heredocs: Vec<Heredoc>,
}

/// A file given inline with a heredoc (`COPY <<EOF /etc/motd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed: also the file's name.
    pub name: String,
    /// The body, one `\n` after each line, without the delimiter line. For `<<-` the leading
    /// tabs of each line are already removed.
    pub content: String,
    /// Whether `$vars` in the body are to be expanded (with [`expand_heredoc`]): false when
    /// the delimiter was quoted (`<<'EOF'`, `<<"EOF"`), as in the shell.
    pub expand: bool,
    /// Whether it was `<<-` (leading tabs stripped).
    pub strip_tabs: bool,
}

/// `HEALTHCHECK CMD ...` and its flags. Unset flags are `None`: the executor writes Docker's
/// zero values (which mean "the default").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The check: `Exec` is Docker's `["CMD", ...]`, `Shell` its `["CMD-SHELL", ...]`.
    pub cmd: Command,
    /// `--interval=` (Go duration: `30s`, `1m30s`, `500ms`).
    pub interval: Option<Duration>,
    /// `--timeout=`.
    pub timeout: Option<Duration>,
    /// `--start-period=`.
    pub start_period: Option<Duration>,
    /// `--start-interval=`.
    pub start_interval: Option<Duration>,
    /// `--retries=` (at least 1).
    pub retries: Option<u32>,
}

/// Why a Dockerfile was refused, and where: line and column are 1-based, the column counting
/// characters, and point at the word at fault (the instruction's keyword when the whole
/// instruction is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}:{column}: {message}")]
pub struct ParseError {
    /// The line (1-based).
    pub line: usize,
    /// The column (1-based, in characters).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Parses a Dockerfile.
///
/// Everything Docker refuses before building is refused here too, with its line and column:
/// unknown instructions and flags, missing or extra arguments, unterminated quotes and heredocs,
/// bad `${...}`, instructions before the first FROM (only ARG may precede it), and so on.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut lx = lexer::Lexer::new(text)?;
    let mut df = Dockerfile {
        escape: lx.escape(),
        syntax: lx.syntax().map(str::to_string),
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    while let Some(lg) = lx.next_logical() {
        match instructions::parse_logical(&mut lx, &lg)? {
            instructions::Parsed::From(stage, name_at) => {
                if let Some(name) = &stage.name {
                    if df.stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        return Err(lg.error(
                            name_at,
                            format!("duplicate stage name {name:?}: stage names must be unique"),
                        ));
                    }
                }
                df.stages.push(stage);
            }
            instructions::Parsed::Instr(ins) => match df.stages.last_mut() {
                Some(stage) => stage.instructions.push(ins),
                None => match ins.kind {
                    Kind::Arg(decls) => df.global_args.extend(decls),
                    _ => {
                        let keyword = instructions::keyword_of(&ins.kind);
                        return Err(lg.error(
                            0,
                            format!(
                                "{keyword} before FROM: a Dockerfile must begin with FROM \
                                 (only ARG instructions and parser directives may precede it)"
                            ),
                        ));
                    }
                },
            },
        }
    }
    if df.stages.is_empty() {
        return Err(ParseError {
            line: 1,
            column: 1,
            message: "no FROM instruction: a Dockerfile must begin with FROM (after ARGs and parser directives)".into(),
        });
    }
    Ok(df)
}
