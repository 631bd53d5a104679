//! The command line, runc's: global options, then a command with its own. Parsed by hand
//! over `lexopt`'s tokens: this program starts for every runtime call, and building clap's
//! description of every command cost a quarter of a millisecond of each `run` here.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::oci::{self, CreateOpts};

/// A token of the command line: an option as written (`-b`, `--bundle`), or an operand.
enum Tok {
    Opt(String),
    Operand(OsString),
}
use Tok::{Operand, Opt};

/// The options every command takes.
pub struct Globals {
    /// Where container state lives. The variable reaches every call of a caller's: podman
    /// does not pass its --runtime-flag options to `delete`.
    pub root: PathBuf,
    /// Also write errors to this file.
    pub log: Option<PathBuf>,
    /// `json` or `text`, for --log.
    pub log_format: String,
    /// Not supported: hako places cgroups itself (cgroupfs paths).
    pub systemd_cgroup: bool,
}

pub struct RuntimeCli {
    pub globals: Globals,
    pub cmd: Cmd,
}

pub struct Create {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub id: String,
}

impl Create {
    pub fn opts(&self) -> CreateOpts {
        CreateOpts {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Default)]
pub struct Exec {
    pub process: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub cap: Vec<String>,
    pub no_new_privs: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub id: String,
    pub args: Vec<String>,
}

pub enum Cmd {
    Create(Create),
    Start {
        id: String,
    },
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: String,
    },
    Delete {
        force: bool,
        id: String,
    },
    Run {
        detach: bool,
        create: Create,
    },
    Exec(Exec),
    List {
        format: String,
        quiet: bool,
    },
    Ps {
        format: String,
        id: String,
        ps_args: Vec<String>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Features,
    Spec {
        bundle: PathBuf,
    },
}

/// What the command line asks for: a command, or text to print (help, version).
pub enum Parsed {
    Run(Box<RuntimeCli>),
    Print(String),
}

const USAGE: &str = "\
hako's OCI runtime (runc's command line)

Usage: hako-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [OPTIONS]

Commands:
  create [-b BUNDLE] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
                       set a container up; its process waits for `start`
  start ID             run the process of a created container
  state ID             the container's state, as JSON
  kill [-a] ID [SIGNAL]
                       send a signal (default TERM) to the init, with --all to every process
  delete [-f] ID       remove a stopped container (with --force, kill it first)
  run [-d] [create's options] ID
                       create, start, wait and delete
  exec [-p PROCESS.json] [-t] [--console-socket S] [--cwd DIR] [-e K=V]... [-u UID[:GID]]
       [-g GID]... [-c CAP]... [--no-new-privs] [-d] [--pid-file F] [--preserve-fds N] ID [ARGS...]
                       run a process in a running container
  list [-f table|json] [-q]
                       the containers under --root
  ps [-f table|json] ID [PS ARGS...]
                       the container's processes
  pause ID | resume ID freeze or thaw every process of the container
  features             what this runtime supports, as JSON
  spec [-b BUNDLE]     write a starting config.json into the bundle

Global options:
  --root DIR           where container state lives (env HAKO_RUNTIME_ROOT; default /run/hako-runtime)
  --log FILE           also write errors to this file
  --log-format FORMAT  text or json, for --log
  --debug, --systemd-cgroup, --rootless VALUE
                       accepted as runc does (--systemd-cgroup is refused when a command runs)
";

/// Parses `args` (without the program name).
pub fn parse(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut p = lexopt::Parser::from_args(args);
    let mut g = Globals {
        root: std::env::var_os("HAKO_RUNTIME_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| oci::state::DEFAULT_ROOT.into()),
        log: None,
        log_format: "text".into(),
        systemd_cgroup: false,
    };
    let name = loop {
        match next(&mut p)? {
            Some(Operand(v)) => break string(v)?,
            Some(Opt(o)) => match o.as_str() {
                "-h" | "--help" => return Ok(Parsed::Print(USAGE.into())),
                "-V" | "--version" => {
                    return Ok(Parsed::Print(format!("hako-runtime {}\n", env!("CARGO_PKG_VERSION"))))
                }
                _ => global(&mut g, &mut p, &o)?,
            },
            None => return Err("no command given".into()),
        }
    };
    let mut c = Command {
        p,
        g,
        name,
        help: false,
    };
    // A command's --help wins over what else is wrong with its line.
    let cmd = command(&mut c);
    match cmd {
        _ if c.help => Ok(Parsed::Print(USAGE.into())),
        Ok(Some(cmd)) => Ok(Parsed::Run(Box::new(RuntimeCli { globals: c.g, cmd }))),
        Ok(None) => Ok(Parsed::Print(USAGE.into())),
        Err(e) => Err(e),
    }
}

/// The command `c` names, with its options and operands; None for `help`.
fn command(c: &mut Command) -> Result<Option<Cmd>, String> {
    Ok(Some(match c.name.clone().as_str() {
        "create" => Cmd::Create(c.create(false)?.1),
        "run" => {
            let (detach, create) = c.create(true)?;
            Cmd::Run { detach, create }
        }
        "start" => Cmd::Start { id: c.id_only()? },
        "state" => Cmd::State { id: c.id_only()? },
        "pause" => Cmd::Pause { id: c.id_only()? },
        "resume" => Cmd::Resume { id: c.id_only()? },
        "kill" => {
            let (all, mut pos) = c.switch_and_operands("-a", "--all")?;
            let id = pos.next().ok_or_else(|| c.missing("ID"))?;
            let signal = pos.next().unwrap_or_else(|| "TERM".into());
            c.no_more(pos)?;
            Cmd::Kill { all, id, signal }
        }
        "delete" => {
            let (force, mut pos) = c.switch_and_operands("-f", "--force")?;
            let id = pos.next().ok_or_else(|| c.missing("ID"))?;
            c.no_more(pos)?;
            Cmd::Delete { force, id }
        }
        "exec" => Cmd::Exec(c.exec()?),
        "list" => {
            let (mut format, mut quiet) = ("table".to_string(), false);
            while let Some(t) = c.next()? {
                match t {
                    Opt(o) if o == "-f" || o == "--format" => format = c.text()?,
                    Opt(o) if o == "-q" || o == "--quiet" => quiet = true,
                    t => c.other(t)?,
                }
            }
            Cmd::List { format, quiet }
        }
        "ps" => {
            let mut format = "table".to_string();
            let id = loop {
                match c.next()? {
                    Some(Opt(o)) if o == "-f" || o == "--format" => format = c.text()?,
                    Some(Operand(v)) => break string(v)?,
                    Some(t) => c.other(t)?,
                    None => return Err(c.missing("ID")),
                }
            };
            let ps_args = c.rest()?;
            Cmd::Ps { format, id, ps_args }
        }
        "features" => {
            while let Some(t) = c.next()? {
                c.other(t)?;
            }
            Cmd::Features
        }
        "spec" => {
            let mut bundle = PathBuf::from(".");
            while let Some(t) = c.next()? {
                match t {
                    Opt(o) if o == "-b" || o == "--bundle" => bundle = c.path()?,
                    t => c.other(t)?,
                }
            }
            Cmd::Spec { bundle }
        }
        "help" => return Ok(None),
        other => return Err(format!("unknown command {other:?}")),
    }))
}

fn string(v: OsString) -> Result<String, String> {
    v.into_string().map_err(|v| format!("{v:?} is not UTF-8"))
}

fn next(p: &mut lexopt::Parser) -> Result<Option<Tok>, String> {
    Ok(match p.next().map_err(|e| e.to_string())? {
        Some(lexopt::Arg::Short(c)) => Some(Opt(format!("-{c}"))),
        Some(lexopt::Arg::Long(l)) => Some(Opt(format!("--{l}"))),
        Some(lexopt::Arg::Value(v)) => Some(Operand(v)),
        None => None,
    })
}

fn value(p: &mut lexopt::Parser, opt: &str) -> Result<OsString, String> {
    p.value().map_err(|_| format!("{opt} needs a value"))
}

/// A global option, wherever it comes (runc takes them before the command; clap, which
/// this parser replaced, after it too).
fn global(g: &mut Globals, p: &mut lexopt::Parser, opt: &str) -> Result<(), String> {
    match opt {
        "--root" => g.root = value(p, opt)?.into(),
        "--log" => g.log = Some(value(p, opt)?.into()),
        "--log-format" => g.log_format = string(value(p, opt)?)?,
        "--debug" => {}
        "--systemd-cgroup" => g.systemd_cgroup = true,
        "--rootless" => {
            value(p, opt)?;
        }
        _ => return Err(format!("unknown option {opt}")),
    }
    Ok(())
}

/// One command's options and operands.
struct Command {
    p: lexopt::Parser,
    g: Globals,
    name: String,
    /// --help came after the command.
    help: bool,
}

impl Command {
    fn next(&mut self) -> Result<Option<Tok>, String> {
        next(&mut self.p).map_err(|e| format!("{}: {e}", self.name))
    }

    /// The value of the option just read.
    fn text(&mut self) -> Result<String, String> {
        string(self.p.value().map_err(|e| format!("{}: {e}", self.name))?)
    }

    fn path(&mut self) -> Result<PathBuf, String> {
        Ok(self.p.value().map_err(|e| format!("{}: {e}", self.name))?.into())
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, String> {
        let v = self.text()?;
        v.parse()
            .map_err(|_| format!("{}: {what} {v:?} is not a number", self.name))
    }

    /// A token this command does not take itself: a global option, or an error.
    fn other(&mut self, t: Tok) -> Result<(), String> {
        match t {
            Operand(v) => Err(format!("{}: unexpected argument {v:?}", self.name)),
            Opt(o) if o == "-h" || o == "--help" => {
                self.help = true;
                Ok(())
            }
            Opt(o) => global(&mut self.g, &mut self.p, &o).map_err(|e| format!("{}: {e}", self.name)),
        }
    }

    fn missing(&self, what: &str) -> String {
        format!("{}: {what} is missing", self.name)
    }

    fn no_more(&self, mut rest: impl Iterator<Item = String>) -> Result<(), String> {
        match rest.next() {
            Some(v) => Err(format!("{}: unexpected argument {v:?}", self.name)),
            None => Ok(()),
        }
    }

    /// Every argument left, as given (a command's own arguments, dashes and all).
    fn rest(&mut self) -> Result<Vec<String>, String> {
        self.p.raw_args().map_err(|e| e.to_string())?.map(string).collect()
    }

    /// One switch (`short` or `long`) and the operands, for `kill` and `delete`.
    fn switch_and_operands(&mut self, short: &str, long: &str) -> Result<(bool, std::vec::IntoIter<String>), String> {
        let (mut on, mut operands) = (false, Vec::new());
        while let Some(t) = self.next()? {
            match t {
                Opt(o) if o == short || o == long => on = true,
                Operand(v) => operands.push(string(v)?),
                t => self.other(t)?,
            }
        }
        Ok((on, operands.into_iter()))
    }

    fn id_only(&mut self) -> Result<String, String> {
        let mut id = None;
        while let Some(t) = self.next()? {
            match t {
                Operand(v) if id.is_none() => id = Some(string(v)?),
                t => self.other(t)?,
            }
        }
        id.ok_or_else(|| self.missing("ID"))
    }

    /// `create`'s options (and `run`'s, with --detach): whether to detach, and the rest.
    fn create(&mut self, run: bool) -> Result<(bool, Create), String> {
        let mut c = Create {
            bundle: ".".into(),
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            id: String::new(),
        };
        let mut detach = false;
        let mut id = None;
        while let Some(t) = self.next()? {
            let Opt(o) = t else {
                match t {
                    Operand(v) if id.is_none() => id = Some(string(v)?),
                    t => self.other(t)?,
                }
                continue;
            };
            match o.as_str() {
                "-b" | "--bundle" => c.bundle = self.path()?,
                "--pid-file" => c.pid_file = Some(self.path()?),
                "--console-socket" => c.console_socket = Some(self.path()?),
                "--preserve-fds" => c.preserve_fds = self.number("--preserve-fds")?,
                // Accepted as runc does: hako always pivots and makes no session keyring.
                "--no-pivot" | "--no-new-keyring" => {}
                "-d" | "--detach" if run => detach = true,
                _ => self.other(Opt(o))?,
            }
        }
        c.id = id.ok_or_else(|| self.missing("ID"))?;
        Ok((detach, c))
    }

    fn exec(&mut self) -> Result<Exec, String> {
        let mut e = Exec::default();
        loop {
            let o = match self.next()? {
                Some(Opt(o)) => o,
                Some(Operand(v)) => {
                    e.id = string(v)?;
                    break;
                }
                None => return Err(self.missing("ID")),
            };
            match o.as_str() {
                "-p" | "--process" => e.process = Some(self.path()?),
                "--console-socket" => e.console_socket = Some(self.path()?),
                "--cwd" => e.cwd = Some(self.text()?),
                "-e" | "--env" => e.env.push(self.text()?),
                "-t" | "--tty" => e.tty = true,
                "-u" | "--user" => e.user = Some(self.text()?),
                "-g" | "--additional-gids" => e.additional_gids.push(self.number("--additional-gids")?),
                "-c" | "--cap" => e.cap.push(self.text()?),
                "--no-new-privs" => e.no_new_privs = true,
                "-d" | "--detach" => e.detach = true,
                "--pid-file" => e.pid_file = Some(self.path()?),
                "--preserve-fds" => e.preserve_fds = self.number("--preserve-fds")?,
                // Accepted as runc does: no SELinux or AppArmor here.
                "--process-label" | "--apparmor" => {
                    self.text()?;
                }
                _ => self.other(Opt(o))?,
            }
        }
        e.args = self.rest()?;
        Ok(e)
    }
}
