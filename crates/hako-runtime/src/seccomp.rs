//! Seccomp: Docker's profile format, Docker's default profile, and a compiler from a profile
//! to a classic BPF program that the kernel runs on every system call of the container.
//!
//! The story of one container start:
//!
//! 1. The daemon decides the profile from `--security-opt seccomp=...` ([`from_security_opt`]):
//!    nothing given means [`default_profile`], `unconfined` means no filter at all, anything
//!    else is a Docker-format JSON profile (inline text, as the Docker CLI sends it, or a path).
//!    `--privileged` also means no filter; that decision belongs to the caller.
//! 2. Before forking, the runtime calls [`compile`] with the container's bounding capability
//!    set. This is where all allocation happens: rules are filtered by capability, architecture
//!    and kernel version exactly as Docker filters them, syscall names are resolved to numbers,
//!    and the BPF program is laid out.
//! 3. In the forked child, right before `execve`, [`install`] hands the ready slice to the
//!    kernel. It does not allocate, so it is safe after `fork` in a multithreaded parent.
//!    The kernel only accepts a filter from a task that has `PR_SET_NO_NEW_PRIVS` set or holds
//!    `CAP_SYS_ADMIN`; the caller arranges one of the two (runc installs before dropping
//!    capabilities when no-new-privileges is off, and as late as possible otherwise).
//!
//! Why our own BPF instead of libseccomp: no C dependency, no dynamic library in the start path,
//! and the whole profile fits in well under a thousand instructions that we can reason about.
//!
//! Semantics, chosen to match Docker + runc + libseccomp where a profile can observe them:
//! - includes/excludes: `includes` needs *all* its caps, one of its arches (Go names: `amd64`),
//!   and a kernel at least `minKernel`; `excludes` drops the rule if *any* cap is held, the arch
//!   is listed, or the kernel is at least `minKernel`.
//! - Names unknown on this architecture are skipped silently (the default profile names syscalls
//!   of every architecture, e.g. `_llseek` or `chown32`).
//! - Arguments within one rule are ANDed, unless two conditions test the same argument index;
//!   then each condition becomes its own rule (ORed), as runc does.
//! - For one syscall, rules with argument conditions are tried first, in profile order; the first
//!   that matches decides. Then the first unconditional rule, then the default action. This is
//!   libseccomp's "the more specific rule wins".
//! - `SCMP_ACT_ERRNO` without `errnoRet` returns EPERM, as in runc.
//! - As runc does, when the default action denies, a syscall numbered above every syscall the
//!   profile names returns ENOSYS instead of the default errno, so that programs newer than the
//!   profile (glibc's `fchmodat2`, `clone3`-style probes) fall back instead of failing on EPERM.
//!
//! Architecture: only x86_64 is compiled. Docker's archMap also filters i386 (`int 0x80`) and x32
//! calls with their own tables; hako does not carry those tables, so an i386 call kills the
//! process (libseccomp's answer for an architecture not in the filter) and an x32 call (number
//! with bit 30 set) returns ENOSYS (what a kernel without x32 says). Neither can bypass a rule.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kernel refuses longer programs (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// x32 syscalls are x86_64 syscalls with this bit set in `nr`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Go's `runtime.GOARCH` for the architecture we compile for; Docker's `arches` use these names.
const NATIVE_GOARCH: &str = "amd64";

/// Offsets into `struct seccomp_data` (`nr: u32, arch: u32, instruction_pointer: u64, args: [u64; 6]`).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Errors from loading, compiling or installing a profile. Messages follow Docker's
/// "seccomp profile PATH: ..." shape so a user sees which profile and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("seccomp profile {origin}: decoding failed: {source}")]
    Parse { origin: String, source: serde_json::Error },
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("seccomp: architecture {0} is not supported by hako's seccomp compiler (only x86_64); run with --security-opt seccomp=unconfined")]
    UnsupportedArch(&'static str),
    #[error("seccomp profile: the compiled filter has {0} instructions, more than the kernel's limit of {BPF_MAXINSNS}; remove rules from the profile")]
    TooLong(usize),
    /// Holds a raw errno so that building this error in a forked child does not allocate.
    #[error("seccomp: installing the filter failed: {}", std::io::Error::from_raw_os_error(*.0))]
    Install(i32),
}

// ---------------------------------------------------------------------------------------------
// Profile model (Docker's JSON format, a superset of the OCI runtime spec's `linux.seccomp`).
// ---------------------------------------------------------------------------------------------

/// A seccomp profile in Docker's JSON format. Unknown fields are ignored, as Go's decoder does,
/// and `null` is accepted wherever a list is (Docker's own default.json has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Plain list of `SCMP_ARCH_*`; exclusive with `archMap`. Informational here: the native
    /// architecture is always filtered, others are handled as the module docs say.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    /// Only meaningful with `SCMP_ACT_NOTIFY`, which hako does not support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    /// `SECCOMP_FILTER_FLAG_*` names; see [`filter_flags`].
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub syscalls: Vec<Syscall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(rename = "subArchitectures", default, deserialize_with = "null_as_default")]
    pub sub_architectures: Vec<String>,
}

/// One rule: a set of syscall names, an action, optional argument conditions, and Docker's
/// `includes`/`excludes` that decide whether the rule applies to this container at all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// Old single-name form; Docker accepts it but not together with `names`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

/// A 64-bit argument comparison. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and `valueTwo`
/// the expected result: `(arg & value) == valueTwo`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<KernelVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum Action {
    #[default]
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    LessThan,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    GreaterThan,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// `"major.minor"`, as in Docker's `minKernel`. Serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses `"4.8"`, and tolerates a kernel release such as `"6.18.44-fc-v669"` (only the
    /// first two numbers count).
    pub fn parse(s: &str) -> Option<KernelVersion> {
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        let digits = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor_part.len());
        let minor = minor_part[..digits].parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KernelVersion::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("improper kernel version format {s:?}, want \"MAJOR.MINOR\""))
        })
    }
}

/// Go's decoder turns `null` into an empty slice; serde would reject it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Profile {
    /// Parses a profile's JSON text. `origin` names it in errors (a path, or "(inline)").
    pub fn from_json(text: &str, origin: &str) -> Result<Profile, SeccompError> {
        serde_json::from_str(text).map_err(|source| SeccompError::Parse {
            origin: origin.to_string(),
            source,
        })
    }
}

/// Reads a Docker-format profile from a file.
pub fn load_profile(path: &Path) -> Result<Profile, SeccompError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
        path: shown.clone(),
        source,
    })?;
    Profile::from_json(&text, &shown)
}

/// Interprets the value of `--security-opt seccomp=VALUE`. `None` means no filter.
/// `unconfined` disables seccomp; `builtin` (or empty) is Docker's default profile; text
/// starting with `{` is the profile itself (the Docker CLI reads the file and sends its
/// content to the daemon); anything else is a path to read.
pub fn from_security_opt(value: &str) -> Result<Option<Profile>, SeccompError> {
    let v = value.trim();
    if v == "unconfined" {
        Ok(None)
    } else if v.is_empty() || v == "builtin" {
        Ok(Some(default_profile()))
    } else if v.starts_with('{') {
        Profile::from_json(v, "(inline)").map(Some)
    } else {
        load_profile(Path::new(v)).map(Some)
    }
}

// ---------------------------------------------------------------------------------------------
// Docker's default profile (moby profiles/seccomp/default.json), for every architecture, so
// that serializing it gives back a profile Docker users recognize. Kept as Rust data rather
// than embedded JSON so that building it costs no parsing on the start path.
// ---------------------------------------------------------------------------------------------

/// Allowed for every container. Includes names of other architectures (skipped on x86_64).
const DEFAULT_ALLOW: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Namespace-creating `clone` flags: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
/// | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. Without CAP_SYS_ADMIN, `clone` is allowed only
/// when `flags & this == 0`.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

fn rule(names: &[&str], action: Action) -> Syscall {
    Syscall {
        names: names.iter().map(|s| s.to_string()).collect(),
        action,
        ..Default::default()
    }
}

fn allow(names: &[&str]) -> Syscall {
    rule(names, Action::Allow)
}

fn filter_caps(caps: &[&str]) -> Option<Filter> {
    Some(Filter {
        caps: caps.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn filter_arches(arches: &[&str]) -> Option<Filter> {
    Some(Filter {
        arches: arches.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn arg(index: u32, value: u64, op: Op) -> Arg {
    Arg {
        index,
        value,
        value_two: 0,
        op,
    }
}

/// Docker's default profile: deny by default with EPERM, allow the list above, plus the
/// argument-filtered and capability-conditional rules.
pub fn default_profile() -> Profile {
    let caps_allow = |names: &[&str], cap: &str| Syscall {
        includes: filter_caps(&[cap]),
        ..allow(names)
    };
    let arch_allow = |names: &[&str], arches: &[&str]| Syscall {
        includes: filter_arches(arches),
        ..allow(names)
    };
    let personality = |value: u64| Syscall {
        args: vec![arg(0, value, Op::Equal)],
        ..allow(&["personality"])
    };
    let arch_map = |arch: &str, subs: &[&str]| ArchMap {
        architecture: arch.to_string(),
        sub_architectures: subs.iter().map(|s| s.to_string()).collect(),
    };

    let syscalls = vec![
        allow(DEFAULT_ALLOW),
        // ptrace lost its ability to bypass seccomp in 4.8, so from then on it is safe to allow
        // inside the container's own pid namespace.
        Syscall {
            includes: Some(Filter {
                min_kernel: Some(KernelVersion { major: 4, minor: 8 }),
                ..Default::default()
            }),
            ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
        },
        // Every socket family but AF_VSOCK (40), which reaches the host's hypervisor sockets.
        Syscall {
            args: vec![arg(0, 40, Op::NotEqual)],
            ..allow(&["socket"])
        },
        // Query (0xffffffff), PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), and
        // UNAME26|PER_LINUX32; not ADDR_NO_RANDOMIZE and friends, which weaken ASLR.
        personality(0x0),
        personality(0x8),
        personality(0x20000),
        personality(0x20008),
        personality(0xffff_ffff),
        arch_allow(&["sync_file_range2", "swapcontext"], &["ppc64le"]),
        arch_allow(
            &[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ],
            &["arm", "arm64"],
        ),
        arch_allow(&["arch_prctl"], &["amd64", "x32"]),
        arch_allow(&["modify_ldt"], &["amd64", "x32", "x86"]),
        arch_allow(
            &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
            &["s390", "s390x"],
        ),
        arch_allow(&["riscv_flush_icache"], &["riscv64"]),
        caps_allow(&["open_by_handle_at"], "CAP_DAC_READ_SEARCH"),
        caps_allow(
            &[
                "bpf",
                "clone",
                "clone3",
                "fanotify_init",
                "fsconfig",
                "fsmount",
                "fsopen",
                "fspick",
                "lookup_dcookie",
                "mount",
                "mount_setattr",
                "move_mount",
                "open_tree",
                "perf_event_open",
                "quotactl",
                "quotactl_fd",
                "setdomainname",
                "sethostname",
                "setns",
                "syslog",
                "umount",
                "umount2",
                "unshare",
            ],
            "CAP_SYS_ADMIN",
        ),
        Syscall {
            args: vec![arg(0, CLONE_NAMESPACE_FLAGS, Op::MaskedEqual)],
            excludes: Some(Filter {
                caps: vec!["CAP_SYS_ADMIN".into()],
                arches: vec!["s390".into(), "s390x".into()],
                ..Default::default()
            }),
            ..allow(&["clone"])
        },
        Syscall {
            args: vec![arg(1, CLONE_NAMESPACE_FLAGS, Op::MaskedEqual)],
            comment: "s390 parameter ordering for clone is different".into(),
            includes: filter_arches(&["s390", "s390x"]),
            excludes: filter_caps(&["CAP_SYS_ADMIN"]),
            ..allow(&["clone"])
        },
        // clone3 passes its flags in memory, where seccomp cannot look; ENOSYS makes libc fall
        // back to clone, whose flags we can check.
        Syscall {
            errno_ret: Some(libc::ENOSYS as u32),
            excludes: filter_caps(&["CAP_SYS_ADMIN"]),
            ..rule(&["clone3"], Action::Errno)
        },
        caps_allow(&["reboot"], "CAP_SYS_BOOT"),
        caps_allow(&["chroot"], "CAP_SYS_CHROOT"),
        caps_allow(&["delete_module", "init_module", "finit_module"], "CAP_SYS_MODULE"),
        caps_allow(&["acct"], "CAP_SYS_PACCT"),
        caps_allow(
            &[
                "kcmp",
                "pidfd_getfd",
                "process_madvise",
                "process_vm_readv",
                "process_vm_writev",
                "ptrace",
            ],
            "CAP_SYS_PTRACE",
        ),
        caps_allow(&["iopl", "ioperm"], "CAP_SYS_RAWIO"),
        caps_allow(
            &["settimeofday", "stime", "clock_settime", "clock_settime64"],
            "CAP_SYS_TIME",
        ),
        caps_allow(&["vhangup"], "CAP_SYS_TTY_CONFIG"),
        caps_allow(
            &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
            "CAP_SYS_NICE",
        ),
        caps_allow(&["syslog"], "CAP_SYSLOG"),
        caps_allow(&["bpf"], "CAP_BPF"),
        caps_allow(&["perf_event_open"], "CAP_PERFMON"),
    ];

    Profile {
        default_action: Action::Errno,
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: Vec::new(),
        arch_map: vec![
            arch_map("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            arch_map("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
            arch_map("SCMP_ARCH_MIPS64", &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
            arch_map("SCMP_ARCH_MIPS64N32", &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]),
            arch_map("SCMP_ARCH_MIPSEL64", &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]),
            arch_map("SCMP_ARCH_MIPSEL64N32", &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]),
            arch_map("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
            arch_map("SCMP_ARCH_RISCV64", &[]),
        ],
        listener_path: None,
        listener_metadata: None,
        flags: Vec::new(),
        syscalls,
    }
}

// ---------------------------------------------------------------------------------------------
// Compiler.
// ---------------------------------------------------------------------------------------------

/// The running kernel's version, read once (Docker checks `minKernel` against it).
fn host_kernel() -> KernelVersion {
    static KERNEL: OnceLock<KernelVersion> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        // SAFETY: utsname is plain old data; uname fills it.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut uts) } != 0 {
            return KernelVersion::default();
        }
        // SAFETY: the kernel NUL-terminates release.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
        KernelVersion::parse(&release.to_string_lossy()).unwrap_or_default()
    })
}

/// Compiles `profile` for a container whose bounding set is `caps` (names like
/// `CAP_SYS_ADMIN`; `SYS_ADMIN` is accepted too) on the running kernel.
pub fn compile(profile: &Profile, caps: &[String]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    compile_for_kernel(profile, caps, host_kernel())
}

/// Compiles a config.json `linux.seccomp` object for a process whose capabilities are
/// `caps` (or `None` when the process has no profile).
pub fn compile_config(
    profile: Option<&serde_json::value::RawValue>,
    caps: Option<&crate::config::Capabilities>,
) -> std::io::Result<Option<Vec<libc::sock_filter>>> {
    let Some(p) = profile else { return Ok(None) };
    let profile: Profile = serde_json::from_str(p.get()).map_err(std::io::Error::other)?;
    let bounding = caps.map(|c| c.bounding.as_slice()).unwrap_or_default();
    Ok(Some(compile(&profile, bounding).map_err(std::io::Error::other)?))
}

/// [`compile`] against a given kernel version, for `minKernel` rules.
pub fn compile_for_kernel(
    profile: &Profile,
    caps: &[String],
    kernel: KernelVersion,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedArch(std::env::consts::ARCH));
    }
    validate(profile)?;

    let has_cap = |want: &str| {
        let want = want.strip_prefix("CAP_").unwrap_or(want);
        caps.iter().any(|c| {
            let c = c.strip_prefix("CAP_").unwrap_or(c);
            c.eq_ignore_ascii_case(want)
        })
    };

    let default_ret = action_ret(profile.default_action, profile.default_errno_ret)?;
    let mut plans: Vec<Plan> = Vec::new();
    let mut max_nr: Option<u32> = None;
    // Plan position by syscall number; numbers are small (under 512 on x86_64).
    let mut index: Vec<Option<usize>> = vec![None; SYSCALLS.iter().map(|s| s.1 as usize + 1).max().unwrap_or(0)];

    for call in &profile.syscalls {
        if !rule_applies(call, &has_cap, kernel) {
            continue;
        }
        let ret = action_ret(call.action, call.errno_ret)?;
        // runc: two conditions on one argument cannot be ANDed meaningfully, so they are ORed.
        let mut seen = [0u8; 6];
        for a in &call.args {
            seen[a.index as usize] += 1;
        }
        let or_each = seen.iter().any(|&n| n > 1);

        let single = (!call.name.is_empty()).then_some(&call.name);
        for name in call.names.iter().chain(single) {
            let Some(nr) = syscall_nr(name) else { continue };
            max_nr = Some(max_nr.map_or(nr, |m| m.max(nr)));
            let slot = &mut index[nr as usize];
            let plan = match *slot {
                Some(i) => &mut plans[i],
                None => {
                    *slot = Some(plans.len());
                    plans.push(Plan {
                        nr,
                        conditional: Vec::new(),
                        unconditional: None,
                    });
                    plans.last_mut().expect("just pushed")
                }
            };
            if call.args.is_empty() {
                // First unconditional rule wins.
                plan.unconditional.get_or_insert(ret);
            } else if or_each {
                plan.conditional.extend(call.args.iter().map(|a| (vec![*a], ret)));
            } else {
                plan.conditional.push((call.args.clone(), ret));
            }
        }
    }

    // Drop what cannot change the outcome: conditional rules that return what the syscall would
    // return anyway, and syscalls that end up at the default action.
    for p in &mut plans {
        let fallback = p.unconditional.unwrap_or(default_ret);
        p.conditional.retain(|(_, ret)| *ret != fallback);
    }
    plans.retain(|p| !p.conditional.is_empty() || p.unconditional.is_some_and(|r| r != default_ret));
    plans.sort_by_key(|p| p.nr);

    let mut prog = Vec::with_capacity(1024);
    // Architecture: anything but native x86_64 (i386 via int 0x80) is killed.
    prog.push(load(OFF_ARCH));
    prog.push(jump(JEQ, AUDIT_ARCH_X86_64, 1, 0));
    prog.push(ret(libc::SECCOMP_RET_KILL_PROCESS));
    prog.push(load(OFF_NR));
    // x32 numbers share the x86_64 arch value; without this they would dodge every rule.
    prog.push(jump(JGE, X32_SYSCALL_BIT, 0, 1));
    prog.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    let permissive = matches!(profile.default_action, Action::Allow | Action::Log | Action::Trace);
    if let (false, Some(max)) = (permissive, max_nr) {
        if default_ret != libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32 {
            prog.push(jump(JGT, max, 0, 1));
            prog.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        }
    }
    let bodies = plans
        .iter()
        .map(|p| Ok((p.nr, p.body(default_ret)?)))
        .collect::<Result<Vec<_>, SeccompError>>()?;
    prog.extend(tree(&bodies, default_ret));

    if prog.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// Docker's rule filtering (moby profiles/seccomp: setupSeccomp).
fn rule_applies(call: &Syscall, has_cap: &dyn Fn(&str) -> bool, kernel: KernelVersion) -> bool {
    if let Some(ex) = &call.excludes {
        if ex.arches.iter().any(|a| a == NATIVE_GOARCH)
            || ex.caps.iter().any(|c| has_cap(c))
            || ex.min_kernel.is_some_and(|k| kernel >= k)
        {
            return false;
        }
    }
    if let Some(inc) = &call.includes {
        if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == NATIVE_GOARCH))
            || !inc.caps.iter().all(|c| has_cap(c))
            || inc.min_kernel.is_some_and(|k| kernel < k)
        {
            return false;
        }
    }
    true
}

/// The checks Docker and runc make before handing a profile to libseccomp.
fn validate(p: &Profile) -> Result<(), SeccompError> {
    let bad = |m: String| Err(SeccompError::Invalid(m));
    if !p.architectures.is_empty() && !p.arch_map.is_empty() {
        return bad("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into());
    }
    if p.default_action == Action::Notify {
        return bad("SCMP_ACT_NOTIFY cannot be used as the default action".into());
    }
    for s in &p.syscalls {
        let what = if s.names.is_empty() {
            s.name.clone()
        } else {
            s.names.join(",")
        };
        if !s.name.is_empty() && !s.names.is_empty() {
            return bad(format!("rule for {what}: use either 'name' or 'names'"));
        }
        if s.action == Action::Notify {
            return bad(format!("rule for {what}: SCMP_ACT_NOTIFY is not supported by hako"));
        }
        if let Some(a) = s.args.iter().find(|a| a.index >= 6) {
            return bad(format!(
                "rule for {what}: argument index {} out of range (0-5)",
                a.index
            ));
        }
        if let Some(e) = s.errno_ret.filter(|&e| e > 0xffff) {
            return bad(format!("rule for {what}: errnoRet {e} out of range"));
        }
    }
    if let Some(e) = p.default_errno_ret.filter(|&e| e > 0xffff) {
        return bad(format!("defaultErrnoRet {e} out of range"));
    }
    filter_flags(p).map(|_| ())
}

/// The kernel's return value for an action. ERRNO and TRACE carry `errnoRet`, EPERM when unset.
fn action_ret(action: Action, errno_ret: Option<u32>) -> Result<u32, SeccompError> {
    let data = errno_ret.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match action {
        Action::Allow => libc::SECCOMP_RET_ALLOW,
        Action::Errno => libc::SECCOMP_RET_ERRNO | data,
        // libseccomp's SCMP_ACT_KILL is the thread-killing one.
        Action::Kill | Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::Trap => libc::SECCOMP_RET_TRAP,
        Action::Trace => libc::SECCOMP_RET_TRACE | data,
        Action::Log => libc::SECCOMP_RET_LOG,
        Action::Notify => return Err(SeccompError::Invalid("SCMP_ACT_NOTIFY is not supported by hako".into())),
    })
}

/// `SECCOMP_FILTER_FLAG_*` bits for the profile's `flags`, for [`install_with_flags`].
pub fn filter_flags(p: &Profile) -> Result<u32, SeccompError> {
    let mut bits = 0u32;
    for f in &p.flags {
        bits |= match f.as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            other => return Err(SeccompError::Invalid(format!("unsupported flag {other:?}"))),
        } as u32;
    }
    Ok(bits)
}

/// The resolved rules of one syscall number.
struct Plan {
    nr: u32,
    /// (conditions ANDed, return value), tried in order.
    conditional: Vec<(Vec<Arg>, u32)>,
    unconditional: Option<u32>,
}

impl Plan {
    /// Code entered once `nr` matched; every path ends in a `ret`, and every jump stays inside,
    /// so the block can be placed anywhere (classic BPF jumps are relative and forward-only).
    fn body(&self, default_ret: u32) -> Result<Vec<libc::sock_filter>, SeccompError> {
        let mut out = Vec::new();
        for (conds, r) in &self.conditional {
            emit_rule(&mut out, conds, *r)?;
        }
        out.push(ret(self.unconditional.unwrap_or(default_ret)));
        Ok(out)
    }
}

// Opcodes.
const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const fn insn(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
const fn load(off: u32) -> libc::sock_filter {
    insn(LD_ABS, off, 0, 0)
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    insn(code, k, jt, jf)
}
const fn ret(k: u32) -> libc::sock_filter {
    insn(RET, k, 0, 0)
}

/// How many leaf syscalls get a linear run of checks instead of further halving.
const LEAF: usize = 4;

/// A binary search over syscall numbers: about log2(n) + 4 comparisons per syscall instead of
/// walking ~300 checks. Blocks are self-contained, so a node is `jge pivot` + left + right;
/// a jump farther than 255 instructions goes through `ja`, whose offset is 32 bits.
fn tree(entries: &[(u32, Vec<libc::sock_filter>)], default_ret: u32) -> Vec<libc::sock_filter> {
    let mut out = Vec::new();
    if entries.len() <= LEAF {
        for (nr, body) in entries {
            match u8::try_from(body.len()) {
                Ok(skip) => out.push(jump(JEQ, *nr, 0, skip)),
                Err(_) => {
                    out.push(jump(JEQ, *nr, 1, 0));
                    out.push(jump(JA, body.len() as u32, 0, 0));
                }
            }
            out.extend_from_slice(body);
        }
        out.push(ret(default_ret));
        return out;
    }
    let mid = entries.len() / 2;
    let left = tree(&entries[..mid], default_ret);
    let right = tree(&entries[mid..], default_ret);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(JGE, entries[mid].0, skip, 0)),
        Err(_) => {
            out.push(jump(JGE, entries[mid].0, 0, 1));
            out.push(jump(JA, left.len() as u32, 0, 0));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// Which branch of a conditional jump leads to "this rule does not match".
#[derive(Clone, Copy)]
enum Fail {
    True,
    False,
}

/// Conditions (ANDed) then `ret r`; a failing condition jumps just past the `ret`, to the next
/// rule. 64-bit arguments are compared as two 32-bit halves, high half first.
fn emit_rule(out: &mut Vec<libc::sock_filter>, conds: &[Arg], r: u32) -> Result<(), SeccompError> {
    let mut fails: Vec<(usize, Fail)> = Vec::new();
    for a in conds {
        let lo_off = OFF_ARGS + 8 * a.index;
        let hi_off = lo_off + 4; // little-endian u64
        let (hi, lo) = ((a.value >> 32) as u32, a.value as u32);
        let mut fail_at = |out: &mut Vec<libc::sock_filter>, f: Fail| fails.push((out.len() - 1, f));
        match a.op {
            Op::Equal => {
                out.push(load(hi_off));
                out.push(jump(JEQ, hi, 0, 0));
                fail_at(out, Fail::False);
                out.push(load(lo_off));
                out.push(jump(JEQ, lo, 0, 0));
                fail_at(out, Fail::False);
            }
            Op::NotEqual => {
                out.push(load(hi_off));
                out.push(jump(JEQ, hi, 0, 2)); // high halves differ: the condition holds
                out.push(load(lo_off));
                out.push(jump(JEQ, lo, 0, 0));
                fail_at(out, Fail::True);
            }
            Op::GreaterThan | Op::GreaterOrEqual => {
                out.push(load(hi_off));
                out.push(jump(JGT, hi, 3, 0)); // high half greater: holds
                out.push(jump(JEQ, hi, 0, 0)); // high half smaller: fails
                fail_at(out, Fail::False);
                out.push(load(lo_off));
                out.push(jump(if a.op == Op::GreaterThan { JGT } else { JGE }, lo, 0, 0));
                fail_at(out, Fail::False);
            }
            Op::LessThan | Op::LessOrEqual => {
                out.push(load(hi_off));
                out.push(jump(JGE, hi, 0, 3)); // high half smaller: holds
                out.push(jump(JEQ, hi, 0, 0)); // high half greater: fails
                fail_at(out, Fail::False);
                out.push(load(lo_off));
                // a < lo  <=>  !(a >= lo);  a <= lo  <=>  !(a > lo)
                out.push(jump(if a.op == Op::LessThan { JGE } else { JGT }, lo, 0, 0));
                fail_at(out, Fail::True);
            }
            Op::MaskedEqual => {
                let (mhi, mlo) = (hi, lo);
                let (dhi, dlo) = ((a.value_two >> 32) as u32, a.value_two as u32);
                out.push(load(hi_off));
                out.push(insn(AND, mhi, 0, 0));
                out.push(jump(JEQ, dhi, 0, 0));
                fail_at(out, Fail::False);
                out.push(load(lo_off));
                out.push(insn(AND, mlo, 0, 0));
                out.push(jump(JEQ, dlo, 0, 0));
                fail_at(out, Fail::False);
            }
        }
    }
    out.push(ret(r));
    let next_rule = out.len();
    for (at, which) in fails {
        // At most 6 conditions of at most 7 instructions: always fits, but check anyway.
        let off = u8::try_from(next_rule - at - 1)
            .map_err(|_| SeccompError::Invalid("argument conditions too long for one rule".into()))?;
        match which {
            Fail::True => out[at].jt = off,
            Fail::False => out[at].jf = off,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Install.
// ---------------------------------------------------------------------------------------------

/// A compiled filter as text, for a program that loads it without compiling the profile
/// again (the daemon hands each monitor the program it compiled once for a profile).
pub fn encode(filter: &[libc::sock_filter]) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(filter.len() * 8);
    for i in filter {
        bytes.extend_from_slice(&i.code.to_le_bytes());
        bytes.extend_from_slice(&[i.jt, i.jf]);
        bytes.extend_from_slice(&i.k.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The filter [`encode`] gave.
pub fn decode(text: &str) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use base64::Engine;
    let bad = |why: String| SeccompError::Invalid(format!("compiled seccomp filter: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(bad(format!(
            "{} bytes is not a whole number of instructions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Installs a compiled filter on the calling thread. Meant for a forked child right before
/// `execve`: no allocation, only `seccomp(2)` (or `prctl` on kernels without it). The caller
/// must already have set `PR_SET_NO_NEW_PRIVS` or hold `CAP_SYS_ADMIN`.
pub fn install(filter: &[libc::sock_filter]) -> Result<(), SeccompError> {
    install_with_flags(filter, 0)
}

/// [`install`] with `SECCOMP_FILTER_FLAG_*` bits (see [`filter_flags`]).
pub fn install_with_flags(filter: &[libc::sock_filter], flags: u32) -> Result<(), SeccompError> {
    if filter.is_empty() || filter.len() > BPF_MAXINSNS {
        return Err(SeccompError::Install(libc::EINVAL));
    }
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `filter`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = errno();
    if err == libc::ENOSYS && flags == 0 {
        // Kernels before 3.17 only have the prctl entry point.
        // SAFETY: as above.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        return Err(SeccompError::Install(errno()));
    }
    Err(SeccompError::Install(err))
}

fn errno() -> i32 {
    // SAFETY: errno is thread-local and always readable.
    unsafe { *libc::__errno_location() }
}

// ---------------------------------------------------------------------------------------------
// Syscall names for x86_64 (libseccomp's names, which are the kernel's). Sorted by name for
// binary search. Numbers come from libc where it has them; later syscalls are written out.
// ---------------------------------------------------------------------------------------------

fn syscall_nr(name: &str) -> Option<u32> {
    SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| SYSCALLS[i].1 as u32)
}

#[cfg(not(target_arch = "x86_64"))]
static SYSCALLS: &[(&str, i64)] = &[];

#[cfg(target_arch = "x86_64")]
static SYSCALLS: &[(&str, libc::c_long)] = &[
    ("_sysctl", libc::SYS__sysctl),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("access", libc::SYS_access),
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("adjtimex", libc::SYS_adjtimex),
    ("afs_syscall", libc::SYS_afs_syscall),
    ("alarm", libc::SYS_alarm),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("bind", libc::SYS_bind),
    ("bpf", libc::SYS_bpf),
    ("brk", libc::SYS_brk),
    ("cachestat", 451),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("chmod", libc::SYS_chmod),
    ("chown", libc::SYS_chown),
    ("chroot", libc::SYS_chroot),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_settime", libc::SYS_clock_settime),
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("connect", libc::SYS_connect),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("creat", libc::SYS_creat),
    ("create_module", 174),
    ("delete_module", libc::SYS_delete_module),
    ("dup", libc::SYS_dup),
    ("dup2", libc::SYS_dup2),
    ("dup3", libc::SYS_dup3),
    ("epoll_create", libc::SYS_epoll_create),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_wait_old", libc::SYS_epoll_wait_old),
    ("eventfd", libc::SYS_eventfd),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("fanotify_mark", libc::SYS_fanotify_mark),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchmodat2", libc::SYS_fchmodat2),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("file_getattr", 468),
    ("file_setattr", 469),
    ("finit_module", libc::SYS_finit_module),
    ("flistxattr", libc::SYS_flistxattr),
    ("flock", libc::SYS_flock),
    ("fork", libc::SYS_fork),
    ("fremovexattr", libc::SYS_fremovexattr),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsetxattr", libc::SYS_fsetxattr),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("futex_requeue", 456),
    ("futex_wait", 455),
    ("futex_waitv", libc::SYS_futex_waitv),
    ("futex_wake", 454),
    ("futimesat", libc::SYS_futimesat),
    ("get_kernel_syms", 177),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("get_thread_area", libc::SYS_get_thread_area),
    ("getcpu", libc::SYS_getcpu),
    ("getcwd", libc::SYS_getcwd),
    ("getdents", libc::SYS_getdents),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getitimer", libc::SYS_getitimer),
    ("getpeername", libc::SYS_getpeername),
    ("getpgid", libc::SYS_getpgid),
    ("getpgrp", libc::SYS_getpgrp),
    ("getpid", libc::SYS_getpid),
    ("getpmsg", libc::SYS_getpmsg),
    ("getppid", libc::SYS_getppid),
    ("getpriority", libc::SYS_getpriority),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("getrlimit", libc::SYS_getrlimit),
    ("getrusage", libc::SYS_getrusage),
    ("getsid", libc::SYS_getsid),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("getxattrat", 464),
    ("init_module", libc::SYS_init_module),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_init", libc::SYS_inotify_init),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("io_cancel", libc::SYS_io_cancel),
    ("io_destroy", libc::SYS_io_destroy),
    ("io_getevents", libc::SYS_io_getevents),
    ("io_pgetevents", 333),
    ("io_setup", libc::SYS_io_setup),
    ("io_submit", libc::SYS_io_submit),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioctl", libc::SYS_ioctl),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("ioprio_get", libc::SYS_ioprio_get),
    ("ioprio_set", libc::SYS_ioprio_set),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("kill", libc::SYS_kill),
    ("landlock_add_rule", libc::SYS_landlock_add_rule),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
    ("lchown", libc::SYS_lchown),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("listen", libc::SYS_listen),
    ("listmount", 458),
    ("listxattr", libc::SYS_listxattr),
    ("listxattrat", 465),
    ("llistxattr", libc::SYS_llistxattr),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("lremovexattr", libc::SYS_lremovexattr),
    ("lseek", libc::SYS_lseek),
    ("lsetxattr", libc::SYS_lsetxattr),
    ("lsm_get_self_attr", 459),
    ("lsm_list_modules", 461),
    ("lsm_set_self_attr", 460),
    ("lstat", libc::SYS_lstat),
    ("madvise", libc::SYS_madvise),
    ("map_shadow_stack", 453),
    ("mbind", libc::SYS_mbind),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("memfd_secret", libc::SYS_memfd_secret),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mincore", libc::SYS_mincore),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("mknod", libc::SYS_mknod),
    ("mknodat", libc::SYS_mknodat),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("mlockall", libc::SYS_mlockall),
    ("mmap", libc::SYS_mmap),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("mprotect", libc::SYS_mprotect),
    ("mq_getsetattr", libc::SYS_mq_getsetattr),
    ("mq_notify", libc::SYS_mq_notify),
    ("mq_open", libc::SYS_mq_open),
    ("mq_timedreceive", libc::SYS_mq_timedreceive),
    ("mq_timedsend", libc::SYS_mq_timedsend),
    ("mq_unlink", libc::SYS_mq_unlink),
    ("mremap", libc::SYS_mremap),
    ("mseal", libc::SYS_mseal),
    ("msgctl", libc::SYS_msgctl),
    ("msgget", libc::SYS_msgget),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgsnd", libc::SYS_msgsnd),
    ("msync", libc::SYS_msync),
    ("munlock", libc::SYS_munlock),
    ("munlockall", libc::SYS_munlockall),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open", libc::SYS_open),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("open_tree_attr", 467),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("pause", libc::SYS_pause),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("personality", libc::SYS_personality),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("pipe", libc::SYS_pipe),
    ("pipe2", libc::SYS_pipe2),
    ("pivot_root", libc::SYS_pivot_root),
    ("pkey_alloc", libc::SYS_pkey_alloc),
    ("pkey_free", libc::SYS_pkey_free),
    ("pkey_mprotect", libc::SYS_pkey_mprotect),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("preadv2", libc::SYS_preadv2),
    ("prlimit64", libc::SYS_prlimit64),
    ("process_madvise", libc::SYS_process_madvise),
    ("process_mrelease", libc::SYS_process_mrelease),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pselect6", libc::SYS_pselect6),
    ("ptrace", libc::SYS_ptrace),
    ("putpmsg", libc::SYS_putpmsg),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("query_module", 178),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("read", libc::SYS_read),
    ("readahead", libc::SYS_readahead),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("reboot", libc::SYS_reboot),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("removexattr", libc::SYS_removexattr),
    ("removexattrat", 466),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("request_key", libc::SYS_request_key),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rmdir", libc::SYS_rmdir),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_getattr", libc::SYS_sched_getattr),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_setattr", libc::SYS_sched_setattr),
    ("sched_setparam", libc::SYS_sched_setparam),
    ("sched_setscheduler", libc::SYS_sched_setscheduler),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("security", libc::SYS_security),
    ("select", libc::SYS_select),
    ("semctl", libc::SYS_semctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("sendfile", libc::SYS_sendfile),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_thread_area", libc::SYS_set_thread_area),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setdomainname", libc::SYS_setdomainname),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("sethostname", libc::SYS_sethostname),
    ("setitimer", libc::SYS_setitimer),
    ("setns", libc::SYS_setns),
    ("setpgid", libc::SYS_setpgid),
    ("setpriority", libc::SYS_setpriority),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("setrlimit", libc::SYS_setrlimit),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("settimeofday", libc::SYS_settimeofday),
    ("setuid", libc::SYS_setuid),
    ("setxattr", libc::SYS_setxattr),
    ("setxattrat", 463),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("shmget", libc::SYS_shmget),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("signalfd", libc::SYS_signalfd),
    ("signalfd4", libc::SYS_signalfd4),
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("splice", libc::SYS_splice),
    ("stat", libc::SYS_stat),
    ("statfs", libc::SYS_statfs),
    ("statmount", 457),
    ("statx", libc::SYS_statx),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("sync", libc::SYS_sync),
    ("sync_file_range", libc::SYS_sync_file_range),
    ("syncfs", libc::SYS_syncfs),
    ("sysfs", libc::SYS_sysfs),
    ("sysinfo", libc::SYS_sysinfo),
    ("syslog", libc::SYS_syslog),
    ("tee", libc::SYS_tee),
    ("tgkill", libc::SYS_tgkill),
    ("time", libc::SYS_time),
    ("timer_create", libc::SYS_timer_create),
    ("timer_delete", libc::SYS_timer_delete),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_settime", libc::SYS_timer_settime),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("times", libc::SYS_times),
    ("tkill", libc::SYS_tkill),
    ("truncate", libc::SYS_truncate),
    ("tuxcall", libc::SYS_tuxcall),
    ("umask", libc::SYS_umask),
    ("umount2", libc::SYS_umount2),
    ("uname", libc::SYS_uname),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("unshare", libc::SYS_unshare),
    ("uretprobe", 335),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("ustat", libc::SYS_ustat),
    ("utime", libc::SYS_utime),
    ("utimensat", libc::SYS_utimensat),
    ("utimes", libc::SYS_utimes),
    ("vfork", libc::SYS_vfork),
    ("vhangup", libc::SYS_vhangup),
    ("vmsplice", libc::SYS_vmsplice),
    ("vserver", libc::SYS_vserver),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_filter_survives_its_text_form() {
        let filter = compile(&default_profile(), &["CAP_CHOWN".to_string()]).unwrap();
        assert_eq!(decode(&encode(&filter)).unwrap().len(), filter.len());
        let back = decode(&encode(&filter)).unwrap();
        assert!(back
            .iter()
            .zip(&filter)
            .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k)));
        assert!(decode("AAAA").is_err(), "3 bytes are no instruction");
        assert!(decode("not base64!").is_err());
    }
    use std::time::{Duration, Instant};

    /// Docker's default bounding set.
    const DOCKER_CAPS: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SYS_CHROOT",
        "CAP_MKNOD",
        "CAP_AUDIT_WRITE",
        "CAP_SETFCAP",
    ];

    fn caps(extra: &[&str]) -> Vec<String> {
        DOCKER_CAPS.iter().chain(extra).map(|s| s.to_string()).collect()
    }

    #[derive(Debug, PartialEq)]
    enum Exit {
        Code(i32),
        Signal(i32),
    }

    /// Forks; the child disables core dumps, sets no_new_privs, installs `filter` (if any), runs
    /// `body` and exits with what it returns. The test binary is multithreaded, so everything
    /// the child does after fork must be async-signal-safe: raw syscalls and `_exit` only.
    fn in_child(filter: Option<&[libc::sock_filter]>, body: impl FnOnce() -> i32) -> Exit {
        // SAFETY: see above; the child never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            unsafe {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(120);
                }
                if let Some(f) = filter {
                    if install(f).is_err() {
                        libc::_exit(121);
                    }
                }
                libc::_exit(body());
            }
        }
        wait(pid)
    }

    fn wait(pid: libc::pid_t) -> Exit {
        let mut status = 0;
        loop {
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            assert!(
                r == -1 && errno() == libc::EINTR,
                "waitpid: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            Exit::Signal(libc::WTERMSIG(status))
        }
    }

    /// A raw syscall: Ok(return value) or Err(errno). Async-signal-safe.
    fn sys(nr: libc::c_long, a: &[u64]) -> Result<i64, i32> {
        let mut v = [0u64; 6];
        v[..a.len()].copy_from_slice(a);
        // SAFETY: the syscalls used in these tests take integers or valid pointers.
        let rc = unsafe { libc::syscall(nr, v[0], v[1], v[2], v[3], v[4], v[5]) };
        if rc == -1 {
            Err(errno())
        } else {
            Ok(rc)
        }
    }

    /// In a child: reap a grandchild created by a raw clone, or exit if we are it.
    fn reap_clone(r: Result<i64, i32>) -> Result<(), i32> {
        match r {
            Ok(0) => unsafe { libc::_exit(0) },
            Ok(pid) => {
                let mut st = 0;
                unsafe { libc::waitpid(pid as i32, &mut st, 0) };
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    const EPERM: Result<i64, i32> = Err(libc::EPERM);
    const ENOSYS: Result<i64, i32> = Err(libc::ENOSYS);
    const NOWHERE: &std::ffi::CStr = c"/nonexistent-hako-seccomp-test";

    fn ptr(p: &std::ffi::CStr) -> u64 {
        p.as_ptr() as u64
    }

    #[test]
    fn default_profile_denies_what_docker_denies() {
        let filter = compile(&default_profile(), &caps(&[])).unwrap();
        let exit = in_child(Some(&filter), || {
            let sigchld = libc::SIGCHLD as u64;
            if sys(libc::SYS_getpid, &[]).is_err() {
                return 1;
            }
            if sys(libc::SYS_unshare, &[libc::CLONE_NEWNS as u64]) != EPERM {
                return 2;
            }
            // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING
            if sys(libc::SYS_keyctl, &[0, -3i64 as u64, 0]) != EPERM {
                return 3;
            }
            if reap_clone(sys(
                libc::SYS_clone,
                &[libc::CLONE_NEWUSER as u64 | sigchld, 0, 0, 0, 0],
            )) != Err(libc::EPERM)
            {
                return 4;
            }
            if sys(libc::SYS_personality, &[0xffff_ffff]).is_err() {
                return 5;
            }
            // If the filter let it through, ENOENT (nothing is mounted).
            if sys(libc::SYS_mount, &[ptr(c"none"), ptr(NOWHERE), ptr(c"tmpfs"), 0, 0]) != EPERM {
                return 6;
            }
            if sys(libc::SYS_clone3, &[0, 0]) != ENOSYS {
                return 7;
            }
            if sys(libc::SYS_personality, &[libc::ADDR_NO_RANDOMIZE as u64]) != EPERM {
                return 8;
            }
            if reap_clone(sys(libc::SYS_clone, &[sigchld, 0, 0, 0, 0])).is_err() {
                return 9;
            }
            if sys(libc::SYS_add_key, &[ptr(c"user"), ptr(c"k"), 0, 0, 0]) != EPERM {
                return 10;
            }
            if sys(libc::SYS_request_key, &[ptr(c"user"), ptr(c"k"), 0, 0]) != EPERM {
                return 11;
            }
            if sys(libc::SYS_bpf, &[0, 0, 0]) != EPERM {
                return 12;
            }
            // Invalid flags: EINVAL if the filter let it through.
            if sys(libc::SYS_kexec_load, &[0, 0, 0, 0xffff_ffff]) != EPERM {
                return 13;
            }
            if sys(libc::SYS_socket, &[libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0]) != EPERM {
                return 14;
            }
            match sys(libc::SYS_socket, &[libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0]) {
                Ok(fd) => unsafe {
                    libc::close(fd as i32);
                },
                Err(_) => return 15,
            }
            if sys(libc::SYS_swapoff, &[ptr(NOWHERE)]) != EPERM {
                return 16;
            }
            // Newer than the profile: ENOSYS so libc falls back (runc's behaviour).
            if sys(libc::SYS_fchmodat2, &[libc::AT_FDCWD as u64, ptr(NOWHERE), 0o644, 0]) != ENOSYS {
                return 17;
            }
            if sys(500, &[]) != ENOSYS {
                return 18;
            }
            // x32 getpid.
            if sys(X32_SYSCALL_BIT as libc::c_long | libc::SYS_getpid, &[]) != ENOSYS {
                return 19;
            }
            // CAP_SYS_CHROOT is in Docker's default set.
            if sys(libc::SYS_chroot, &[ptr(c"/")]).is_err() {
                return 20;
            }
            if sys(libc::SYS_open_by_handle_at, &[0, 0, 0]) != EPERM {
                return 21;
            }
            if sys(libc::SYS_unshare, &[libc::CLONE_NEWUTS as u64]) != EPERM {
                return 22;
            }
            if sys(libc::SYS_setns, &[u64::MAX, 0]) != EPERM {
                return 23;
            }
            // ptrace is allowed on kernels >= 4.8; our parent is not traced by us: ESRCH.
            let ppid = sys(libc::SYS_getppid, &[]).unwrap_or(1) as u64;
            if sys(libc::SYS_ptrace, &[libc::PTRACE_GETREGS as u64, ppid, 0, 0]) != Err(libc::ESRCH) {
                return 24;
            }
            if sys(libc::SYS_reboot, &[0, 0, 0, 0]) != EPERM {
                return 25;
            }
            if sys(libc::SYS_umount2, &[ptr(NOWHERE), 0]) != EPERM {
                return 26;
            }
            0
        });
        assert_eq!(
            exit,
            Exit::Code(0),
            "check number {exit:?} failed (see the child's body)"
        );
    }

    #[test]
    fn cap_sys_admin_opens_namespaces_and_mounts() {
        let filter = compile(&default_profile(), &caps(&["CAP_SYS_ADMIN"])).unwrap();
        let exit = in_child(Some(&filter), || {
            if sys(libc::SYS_unshare, &[libc::CLONE_NEWUTS as u64]) != Ok(0) {
                return 1;
            }
            if sys(libc::SYS_mount, &[ptr(c"none"), ptr(NOWHERE), ptr(c"tmpfs"), 0, 0]) != Err(libc::ENOENT) {
                return 2;
            }
            // clone3 reaches the kernel, which rejects a zero size.
            if sys(libc::SYS_clone3, &[0, 0]) != Err(libc::EINVAL) {
                return 3;
            }
            if sys(libc::SYS_setns, &[u64::MAX, 0]) != Err(libc::EBADF) {
                return 4;
            }
            // Still denied: needs CAP_SYS_MODULE.
            if sys(libc::SYS_delete_module, &[ptr(c"hako_nonexistent"), 0]) != EPERM {
                return 5;
            }
            0
        });
        assert_eq!(exit, Exit::Code(0));
    }

    #[test]
    fn custom_profile_from_json() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": null,
            "syscalls": [
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["_llseek", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"}
            ]
        }"#;
        let profile = from_security_opt(json).unwrap().unwrap();
        let filter = compile(&profile, &[]).unwrap();
        let exit = in_child(Some(&filter), || {
            let mut buf = [0u8; 256];
            if sys(libc::SYS_getcwd, &[buf.as_mut_ptr() as u64, buf.len() as u64]) != Err(38) {
                return 1;
            }
            if sys(libc::SYS_getpid, &[]).is_err() {
                return 2;
            }
            let mut uts = [0u8; std::mem::size_of::<libc::utsname>()];
            if sys(libc::SYS_uname, &[uts.as_mut_ptr() as u64]).is_err() {
                return 3;
            }
            // Default allow: no ENOSYS stub for unknown numbers.
            if sys(libc::SYS_getppid, &[]).is_err() {
                return 4;
            }
            0
        });
        assert_eq!(exit, Exit::Code(0));
    }

    struct Case {
        nr: libc::c_long,
        args: [u64; 6],
        want: i32, // 0: allowed, else the errno
    }

    const fn case(nr: libc::c_long, args: [u64; 6], want: i32) -> Case {
        Case { nr, args, want }
    }

    /// Every comparison operator, on both 32-bit halves, through the real kernel. The syscalls
    /// used ignore their arguments, so only the filter decides.
    #[test]
    fn argument_comparisons() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
                 "args": [{"index": 0, "value": 4294967301, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
                 "args": [{"index": 1, "value": 8589934592, "op": "SCMP_CMP_NE"}]},
                {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 2, "value": 4294967296, "op": "SCMP_CMP_LT"}]},
                {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14,
                 "args": [{"index": 3, "value": 4294967301, "op": "SCMP_CMP_LE"}]},
                {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 15,
                 "args": [{"index": 4, "value": 4294967301, "op": "SCMP_CMP_GT"}]},
                {"names": ["getegid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 16,
                 "args": [{"index": 5, "value": 4294967301, "op": "SCMP_CMP_GE"}]},
                {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 17,
                 "args": [{"index": 0, "value": 280375465083135, "valueTwo": 19791209300020, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["sched_yield"], "action": "SCMP_ACT_ERRNO", "errnoRet": 19,
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["times"], "action": "SCMP_ACT_ERRNO", "errnoRet": 20},
                {"names": ["times"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]}
            ]
        }"#;
        // Sanity of the JSON constants above.
        assert_eq!(4294967301u64, 0x1_0000_0005);
        assert_eq!(280375465083135u64, 0xff00_0000_00ff);
        assert_eq!(19791209300020u64, 0x1200_0000_0034);
        use libc::{SYS_getegid as EGID, SYS_geteuid as EUID, SYS_getgid as GID, SYS_getpid as PID};
        use libc::{SYS_getpgrp as PGRP, SYS_getppid as PPID, SYS_gettid as TID, SYS_getuid as UID};
        use libc::{SYS_sched_yield as YIELD, SYS_times as TIMES};
        static CASES: &[Case] = &[
            case(PID, [5, 0, 0, 0, 0, 0], 0),
            case(PID, [0x1_0000_0005, 0, 0, 0, 0, 0], 11),
            case(PID, [0x2_0000_0005, 0, 0, 0, 0, 0], 0),
            case(PID, [0x1_0000_0006, 0, 0, 0, 0, 0], 0),
            case(PPID, [0, 0x2_0000_0000, 0, 0, 0, 0], 0),
            case(PPID, [0, 0, 0, 0, 0, 0], 12),
            case(PPID, [0, 0x2_0000_0001, 0, 0, 0, 0], 12),
            case(PPID, [0, 0x3_0000_0000, 0, 0, 0, 0], 12),
            case(UID, [0, 0, 0xffff_ffff, 0, 0, 0], 13),
            case(UID, [0, 0, 0, 0, 0, 0], 13),
            case(UID, [0, 0, 0x1_0000_0000, 0, 0, 0], 0),
            case(UID, [0, 0, 0x1_0000_0001, 0, 0, 0], 0),
            case(UID, [0, 0, u64::MAX, 0, 0, 0], 0),
            case(EUID, [0, 0, 0, 0x1_0000_0005, 0, 0], 14),
            case(EUID, [0, 0, 0, 0x1_0000_0004, 0, 0], 14),
            case(EUID, [0, 0, 0, 0x0_ffff_ffff, 0, 0], 14),
            case(EUID, [0, 0, 0, 0x1_0000_0006, 0, 0], 0),
            case(EUID, [0, 0, 0, 0x2_0000_0000, 0, 0], 0),
            case(GID, [0, 0, 0, 0, 0x1_0000_0005, 0], 0),
            case(GID, [0, 0, 0, 0, 0x0_ffff_ffff, 0], 0),
            case(GID, [0, 0, 0, 0, 0x1_0000_0006, 0], 15),
            case(GID, [0, 0, 0, 0, 0x2_0000_0000, 0], 15),
            case(GID, [0, 0, 0, 0, 0xffff_ffff_0000_0000, 0], 15),
            case(EGID, [0, 0, 0, 0, 0, 0x1_0000_0005], 16),
            case(EGID, [0, 0, 0, 0, 0, 0x1_0000_0006], 16),
            case(EGID, [0, 0, 0, 0, 0, 0x1_ffff_ffff], 16),
            case(EGID, [0, 0, 0, 0, 0, 0x1_0000_0004], 0),
            case(EGID, [0, 0, 0, 0, 0, 0], 0),
            case(TID, [0x1200_0000_0034, 0, 0, 0, 0, 0], 17),
            case(TID, [0x12ff_0000_0034, 0, 0, 0, 0, 0], 17),
            case(TID, [0x1200_ffff_ff34, 0, 0, 0, 0, 0], 17),
            case(TID, [0x1300_0000_0034, 0, 0, 0, 0, 0], 0),
            case(TID, [0x1200_0000_0035, 0, 0, 0, 0, 0], 0),
            case(TID, [0, 0, 0, 0, 0, 0], 0),
            case(PGRP, [1, 2, 0, 0, 0, 0], 18),
            case(PGRP, [1, 3, 0, 0, 0, 0], 0),
            case(PGRP, [0, 2, 0, 0, 0, 0], 0),
            case(YIELD, [1, 0, 0, 0, 0, 0], 19),
            case(YIELD, [2, 0, 0, 0, 0, 0], 19),
            case(YIELD, [3, 0, 0, 0, 0, 0], 0),
            case(TIMES, [0, 7, 0, 0, 0, 0], 0),
            case(TIMES, [0, 0, 0, 0, 0, 0], 20),
        ];
        let filter = compile(&Profile::from_json(json, "(test)").unwrap(), &[]).unwrap();
        let exit = in_child(Some(&filter), || {
            for (i, c) in CASES.iter().enumerate() {
                let got = match sys(c.nr, &c.args) {
                    Ok(_) => 0,
                    Err(e) => e,
                };
                if got != c.want {
                    return i as i32 + 1;
                }
            }
            0
        });
        assert_eq!(exit, Exit::Code(0), "case index {exit:?} - 1 failed");
    }

    /// One syscall with enough conditional rules that its body needs a `ja` (jumps > 255).
    #[test]
    fn long_bodies_use_far_jumps() {
        let mut syscalls: Vec<Syscall> = (1..=100u64)
            .map(|i| Syscall {
                errno_ret: Some(i as u32),
                args: vec![arg(0, i, Op::Equal)],
                ..rule(&["getppid"], Action::Errno)
            })
            .collect();
        // Many neighbours so the tree has big subtrees on both sides.
        syscalls.push(allow(DEFAULT_ALLOW));
        let profile = Profile {
            default_action: Action::Errno,
            syscalls,
            ..default_profile()
        };
        let filter = compile(&profile, &[]).unwrap();
        assert!(filter.iter().any(|i| i.code == JA), "expected a far jump");
        let exit = in_child(Some(&filter), || {
            for i in [1u64, 2, 50, 99, 100] {
                if sys(libc::SYS_getppid, &[i]) != Err(i as i32) {
                    return i as i32;
                }
            }
            if sys(libc::SYS_getppid, &[101]).is_err() || sys(libc::SYS_getppid, &[0]).is_err() {
                return 101;
            }
            if sys(libc::SYS_getpid, &[]).is_err() {
                return 102;
            }
            0
        });
        assert_eq!(exit, Exit::Code(0));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_syscalls_are_killed() {
        fn int80_getpid() -> i32 {
            let r: i64;
            // SAFETY: i386 getpid (20) through the compat entry; the kernel preserves all but rax
            // (r8-r11 are declared clobbered for older kernels).
            unsafe {
                std::arch::asm!("int 0x80", inlateout("rax") 20i64 => r,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
            }
            if r > 0 {
                0
            } else {
                1
            }
        }
        // Without a filter, the kernel may not have ia32 emulation at all (SIGSEGV): skip.
        if in_child(None, int80_getpid) != Exit::Code(0) {
            eprintln!("ia32 emulation unavailable; skipping");
            return;
        }
        let filter = compile(&default_profile(), &caps(&[])).unwrap();
        assert_eq!(in_child(Some(&filter), int80_getpid), Exit::Signal(libc::SIGSYS));
    }

    #[test]
    fn size_and_speed() {
        let profile = default_profile();
        let default_caps = caps(&[]);
        let all_caps: Vec<String> = caps(&[
            "CAP_SYS_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_SYS_MODULE",
            "CAP_SYS_BOOT",
            "CAP_SYS_TIME",
            "CAP_SYS_NICE",
            "CAP_SYSLOG",
            "CAP_SYS_RAWIO",
            "CAP_SYS_PACCT",
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_DAC_READ_SEARCH",
            "CAP_SYS_TTY_CONFIG",
        ]);
        let filter = compile(&profile, &default_caps).unwrap();
        let filter_all = compile(&profile, &all_caps).unwrap();
        assert!(filter.len() <= BPF_MAXINSNS && filter_all.len() <= BPF_MAXINSNS);

        let mut compile_times = Vec::new();
        let mut build_times = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let p = default_profile();
            build_times.push(t.elapsed());
            let t = Instant::now();
            let f = compile(&p, &default_caps).unwrap();
            compile_times.push(t.elapsed());
            assert_eq!(f.len(), filter.len());
        }
        compile_times.sort();
        build_times.sort();
        let median = compile_times[compile_times.len() / 2];

        // Install time, measured in the child and sent back through a pipe.
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (rd, wr) = (fds[0], fds[1]);
        let exit = in_child(None, || {
            let mut a = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            let mut b = a;
            unsafe {
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut a);
                if install(&filter).is_err() {
                    return 1;
                }
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut b);
                let ns: u64 = ((b.tv_sec - a.tv_sec) * 1_000_000_000 + (b.tv_nsec - a.tv_nsec)) as u64;
                libc::write(wr, &ns as *const u64 as *const libc::c_void, 8);
            }
            0
        });
        assert_eq!(exit, Exit::Code(0));
        let mut ns = 0u64;
        assert_eq!(
            unsafe { libc::read(rd, &mut ns as *mut u64 as *mut libc::c_void, 8) },
            8
        );
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        let install_time = Duration::from_nanos(ns);

        let named: std::collections::BTreeSet<&str> = profile
            .syscalls
            .iter()
            .flat_map(|s| s.names.iter().map(String::as_str))
            .collect();
        let on_x86_64 = named.iter().filter(|n| syscall_nr(n).is_some()).count();
        eprintln!(
            "default profile: {} rules, {} distinct names ({} allowed unconditionally, {} resolvable on x86_64); \
             program {} insns (default caps), {} insns (all caps); build profile median {:?}; \
             compile min {:?} median {:?}; install {:?}",
            profile.syscalls.len(),
            named.len(),
            DEFAULT_ALLOW.len(),
            on_x86_64,
            filter.len(),
            filter_all.len(),
            build_times[build_times.len() / 2],
            compile_times[0],
            median,
            install_time,
        );
        assert!(
            median + install_time < Duration::from_millis(5),
            "compile {median:?} + install {install_time:?}"
        );
    }

    #[test]
    fn include_exclude_rules() {
        let p = default_profile();
        let has = |caps: &[String], kernel, name: &str| {
            let has_cap = |want: &str| caps.iter().any(|c| c == want);
            p.syscalls.iter().any(|s| {
                s.names.iter().any(|n| n == name)
                    && s.args.is_empty()
                    && s.action == Action::Allow
                    && rule_applies(s, &has_cap, kernel)
            })
        };
        let new = KernelVersion { major: 6, minor: 1 };
        let old = KernelVersion { major: 4, minor: 4 };
        let d = caps(&[]);
        assert!(has(&d, new, "ptrace"));
        assert!(!has(&d, old, "ptrace"));
        assert!(has(&caps(&["CAP_SYS_PTRACE"]), old, "ptrace"));
        assert!(!has(&d, new, "mount"));
        assert!(has(&caps(&["CAP_SYS_ADMIN"]), new, "mount"));
        assert!(has(&d, new, "arch_prctl"));
        assert!(has(&d, new, "chroot"));
        assert!(!has(&d, new, "riscv_flush_icache"));
        for denied in [
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "mount",
            "kexec_load",
            "bpf",
            "reboot",
            "setns",
        ] {
            assert!(!has(&d, new, denied), "{denied} must not be allowed by default");
        }
        // An old kernel gets a different (and still valid) program.
        let a = compile_for_kernel(&p, &d, new).unwrap();
        let b = compile_for_kernel(&p, &d, old).unwrap();
        assert!(a.len() > b.len());
    }

    #[test]
    fn parsing_and_errors() {
        // Round trip of the default profile through Docker's JSON shape.
        let p = default_profile();
        let text = serde_json::to_string_pretty(&p).unwrap();
        assert!(text.contains("\"defaultErrnoRet\": 1") && text.contains("\"minKernel\": \"4.8\""));
        assert_eq!(Profile::from_json(&text, "x").unwrap(), p);

        assert_eq!(from_security_opt("unconfined").unwrap(), None);
        assert_eq!(from_security_opt("builtin").unwrap(), Some(default_profile()));

        let e = load_profile(Path::new("/nonexistent/profile.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("seccomp profile /nonexistent/profile.json: "), "{e}");
        let e = Profile::from_json(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "p.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("seccomp profile p.json: decoding failed: unknown variant `SCMP_ACT_NOPE`"),
            "{e}"
        );
        let e = Profile::from_json(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#, "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("improper kernel version format"), "{e}");

        let both = Profile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}]}"#,
            "p.json",
        )
        .unwrap();
        let e = compile(&both, &[]).unwrap_err().to_string();
        assert!(e.contains("use either 'architectures' or 'archMap'"), "{e}");

        let bad_index = Profile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            "p.json",
        )
        .unwrap();
        assert!(compile(&bad_index, &[])
            .unwrap_err()
            .to_string()
            .contains("argument index 6"));

        let notify = Profile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "p.json",
        )
        .unwrap();
        assert!(compile(&notify, &[])
            .unwrap_err()
            .to_string()
            .contains("SCMP_ACT_NOTIFY"));

        // The old single-name form still works.
        let single = Profile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"}]}"#,
            "p.json",
        )
        .unwrap();
        assert!(compile(&single, &[])
            .unwrap()
            .iter()
            .any(|i| i.code == JEQ && i.k == libc::SYS_read as u32));

        // Too long a program is refused before the kernel sees it.
        let huge = Profile {
            default_action: Action::Allow,
            syscalls: (0..1500)
                .map(|i| Syscall {
                    args: vec![arg(0, i, Op::Equal)],
                    ..rule(&["getpid"], Action::Errno)
                })
                .collect(),
            ..default_profile()
        };
        assert!(matches!(compile(&huge, &[]), Err(SeccompError::TooLong(_))));
    }

    #[test]
    fn syscall_table_is_sorted_and_right() {
        assert!(
            SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0),
            "SYSCALLS must be sorted by name"
        );
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("io_pgetevents"), Some(333));
        assert_eq!(syscall_nr("clone3"), Some(435));
        assert_eq!(syscall_nr("cachestat"), Some(451));
        assert_eq!(syscall_nr("mseal"), Some(462));
        assert_eq!(syscall_nr("_llseek"), None);
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v669"),
            Some(KernelVersion { major: 6, minor: 18 })
        );
        assert_eq!(KernelVersion::parse("5.4"), Some(KernelVersion { major: 5, minor: 4 }));
        assert_eq!(KernelVersion::parse("5"), None);
    }
}
