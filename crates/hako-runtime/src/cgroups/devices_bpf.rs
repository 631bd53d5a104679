//! Device rules on cgroup v2. v2 has no `devices.allow`: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to the cgroup, answers each device access (open,
//! mknod) of the cgroup's processes with 1 (allow) or 0 (deny: the call fails with EPERM).
//! The hook belongs to cgroup2 alone, so on a hybrid host it applies to the processes of a
//! cgroup2 directory whatever their v1 `devices` cgroup says, and on top of it.
//!
//! The program is assembled here from the rules, with the semantics of runc's and crun's
//! device filters:
//! - an `a` rule (allow-all or deny-all) sets the default answer and drops the rules before it,
//!   as writing `a` does in cgroup v1; the list starts from deny-all, like the v1 writes;
//! - the remaining rules are checked last to first and the first that matches answers, so a
//!   later rule overrides an earlier one;
//! - an allow rule matches when it grants every access asked for (`rw` for an `O_RDWR` open), a
//!   deny rule when it denies any of them.
//!
//! Programs attached with `BPF_F_ALLOW_MULTI` stack, and a device is usable only if every
//! program of the cgroup and of its ancestors allows it: attaching rules a second time can only
//! narrow access. hako attaches them once, when the container's cgroup is new. The kernel keeps
//! the program attached after its descriptor is closed, until the cgroup is removed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::{CgroupError, DeviceRule, DeviceType};

// <linux/bpf.h>
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_DEVCG_ACC_MKNOD: i32 = 1;
const BPF_DEVCG_ACC_READ: i32 = 2;
const BPF_DEVCG_ACC_WRITE: i32 = 4;
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

// The opcodes the program uses (class | operation | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K: if dst == imm, pc += off
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

// Registers: r1 holds the context (struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
// u32 minor; }) on entry and is a scratch register once the fields are loaded.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

const ALL_ACCESS: i32 = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn op(code: u8, dst: u8, src: u8, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off: 0,
        imm,
    }
}

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => BPF_DEVCG_ACC_READ,
            'w' => BPF_DEVCG_ACC_WRITE,
            'm' => BPF_DEVCG_ACC_MKNOD,
            _ => 0, // refused earlier by Resources::validate
        }
    })
}

/// The block for one rule: "if the access matches the rule, return its answer", falling
/// through to the next block otherwise.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    let mut b = Vec::new();
    let kind = match rule.kind {
        DeviceType::Char => BPF_DEVCG_DEV_CHAR,
        DeviceType::Block => BPF_DEVCG_DEV_BLOCK,
        DeviceType::All => unreachable!("`a` rules set the default, they get no block"),
    };
    b.push(op(JNE_K, TYPE, 0, kind));
    let acc = access_bits(&rule.access);
    if acc != ALL_ACCESS {
        b.push(op(MOV32_X, R1, ACCESS, 0));
        b.push(op(AND32_K, R1, 0, acc));
        if rule.allow {
            // Every bit asked for is granted: (access & acc) == access.
            b.push(op(JNE_X, R1, ACCESS, 0));
        } else {
            // Some bit asked for is denied: (access & acc) != 0.
            b.push(op(JEQ_K, R1, 0, 0));
        }
    }
    // Validated to fit in 12 and 20 bits, so the sign-extended immediates compare right.
    if let Some(major) = rule.major {
        b.push(op(JNE_K, MAJOR, 0, major as i32));
    }
    if let Some(minor) = rule.minor {
        b.push(op(JNE_K, MINOR, 0, minor as i32));
    }
    // Every jump so far skips the rest of the block (`off` must stay 0 elsewhere).
    let len = b.len() as i16 + 2;
    for (i, insn) in b.iter_mut().enumerate() {
        if matches!(insn.code, JEQ_K | JNE_K | JNE_X) {
            insn.off = len - i as i16 - 1;
        }
    }
    b.push(op(MOV32_K, R0, 0, rule.allow as i32));
    b.push(op(EXIT, 0, 0, 0));
    b
}

/// The device filter for `rules` (see the module's description of the semantics).
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut default_allow = false;
    let mut active: Vec<&DeviceRule> = Vec::new();
    for r in rules {
        if r.kind == DeviceType::All {
            default_allow = r.allow;
            active.clear();
        } else {
            active.push(r);
        }
    }
    let mut p = vec![
        op(LDX_W, TYPE, R1, 0),
        op(AND32_K, TYPE, 0, 0xffff),
        op(LDX_W, ACCESS, R1, 0),
        op(RSH32_K, ACCESS, 0, 16),
        Insn {
            off: 4,
            ..op(LDX_W, MAJOR, R1, 0)
        },
        Insn {
            off: 8,
            ..op(LDX_W, MINOR, R1, 0)
        },
    ];
    for r in active.iter().rev() {
        p.extend(rule_block(r));
    }
    p.push(op(MOV32_K, R0, 0, default_allow as i32));
    p.push(op(EXIT, 0, 0, 0));
    p
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`; the kernel zero-fills the fields after it.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised, repr(C) prefix of `union bpf_attr` whose size is
    // passed along; the kernel reads it and writes at most the buffers it points to.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(prog: &[Insn], dir: &Path) -> Result<OwnedFd, CgroupError> {
    // Device filters need no GPL-only helper; runc and crun say "Apache" too.
    let license = c"Apache";
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"hako_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let first = match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: BPF_PROG_LOAD returned a new descriptor that nothing else owns.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => e,
    };
    // Refused by the verifier (EINVAL, EACCES): load again with its log, for the message.
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    let _ = bpf(BPF_PROG_LOAD, &mut attr).map(|fd| {
        // SAFETY: as above; loaded on the second try after all, and closed right away.
        drop(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    });
    let text = String::from_utf8_lossy(&log);
    let text = text.trim_end_matches('\0').trim();
    Err(CgroupError::Bpf {
        what: "loading the eBPF device filter",
        path: dir.to_path_buf(),
        err: first,
        detail: if text.is_empty() {
            String::new()
        } else {
            format!("; verifier log:\n{text}")
        },
    })
}

/// Loads the device filter for `rules` and attaches it to the cgroup directory `dir`.
pub(crate) fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let prog = load(&program(rules), dir)?;
    let cg =
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            CgroupError::Bpf {
                what: "opening the cgroup to attach the device filter",
                path: dir.to_path_buf(),
                err: e.into(),
                detail: String::new(),
            }
        })?;
    let mut attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        // Leaves the programs of other managers (e.g. systemd's) in place, and lets the
        // container's own sub-cgroups get programs of their own.
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|err| CgroupError::Bpf {
        what: "attaching the eBPF device filter",
        path: dir.to_path_buf(),
        err,
        detail: String::new(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule::allow(DeviceType::Char, major, minor, access)
    }

    /// Runs `prog` the way the kernel would for one access: a tiny interpreter of exactly the
    /// instructions `program` emits, so the rule semantics are tested without a cgroup.
    fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 6];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            let jump = |cond: bool| if cond { i.off as isize } else { 0 };
            let mut off = 0;
            match i.code {
                LDX_W => {
                    assert_eq!(src, R1 as usize, "only the context is read");
                    r[dst] = ctx[i.off as usize / 4] as u64;
                }
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = (r[dst] as u32 >> i.imm) as u64,
                MOV32_K => r[dst] = i.imm as u32 as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                JEQ_K => off = jump(r[dst] == imm),
                JNE_K => off = jump(r[dst] != imm),
                JNE_X => off = jump(r[dst] != r[src]),
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc = (pc as isize + 1 + off) as usize;
        }
    }

    const R: i32 = BPF_DEVCG_ACC_READ;
    const W: i32 = BPF_DEVCG_ACC_WRITE;
    const M: i32 = BPF_DEVCG_ACC_MKNOD;
    const CHR: i32 = BPF_DEVCG_DEV_CHAR;
    const BLK: i32 = BPF_DEVCG_DEV_BLOCK;

    #[test]
    fn rules_decide_as_documented() {
        let rules = vec![
            DeviceRule::deny_all(),
            c(Some(1), Some(3), "rwm"),
            c(Some(136), None, "rw"),
            c(None, None, "m"),
            c(Some(10), Some(200), "r"),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, CHR, R | W, 1, 3), 1);
        assert_eq!(run(&p, BLK, R, 1, 3), 0, "the type is part of the match");
        assert_eq!(run(&p, CHR, R, 1, 5), 0, "unlisted minor");
        assert_eq!(run(&p, CHR, W, 136, 7), 1, "wildcard minor");
        assert_eq!(run(&p, CHR, M, 4, 4), 1, "mknod of any char device");
        assert_eq!(run(&p, CHR, R, 4, 4), 0);
        assert_eq!(run(&p, CHR, R, 10, 200), 1);
        assert_eq!(run(&p, CHR, R | W, 10, 200), 0, "only part of the access is granted");
        assert_eq!(run(&p, BLK, M, 8, 0), 0);

        // A later rule overrides an earlier one; a deny rule denies any overlap.
        let p = program(&[
            DeviceRule::allow(DeviceType::All, None, None, "rwm"),
            DeviceRule {
                allow: false,
                ..c(Some(1), Some(3), "w")
            },
        ]);
        assert_eq!(run(&p, CHR, R, 1, 3), 1);
        assert_eq!(run(&p, CHR, R | W, 1, 3), 0);
        assert_eq!(run(&p, BLK, R | W, 8, 0), 1);
        let p = program(&[
            DeviceRule {
                allow: false,
                ..c(Some(1), None, "rwm")
            },
            c(Some(1), Some(3), "rwm"),
        ]);
        assert_eq!(run(&p, CHR, R, 1, 3), 1);
        assert_eq!(run(&p, CHR, R, 1, 5), 0);

        // An `a` rule resets: everything before it is forgotten.
        let p = program(&[
            c(Some(1), Some(3), "rwm"),
            DeviceRule::allow(DeviceType::All, Some(1), Some(3), "r"),
        ]);
        assert_eq!(p.len(), 8, "no rule blocks: {p:?}");
        assert_eq!(run(&p, BLK, R | W | M, 8, 0), 1);
        let p = program(&[
            DeviceRule::allow(DeviceType::All, None, None, "rwm"),
            DeviceRule::deny_all(),
        ]);
        assert_eq!(run(&p, CHR, R, 1, 3), 0);
        // No rules at all: deny everything.
        assert_eq!(run(&program(&[]), CHR, M, 1, 3), 0);
    }

    #[test]
    fn blocks_jump_to_the_next_block() {
        let p = program(&[c(Some(1), Some(3), "r"), c(None, None, "rwm")]);
        // 6 loads, then the last rule first: type check, answer (3); then the first rule: type,
        // access (3), major, minor, answer (2); then the default answer.
        assert_eq!(p.len(), 6 + 3 + 8 + 2);
        assert_eq!(p[6].code, JNE_K);
        assert_eq!(p[6].off, 2);
        for (at, insn) in p.iter().enumerate().skip(9).take(6) {
            if insn.code != MOV32_X && insn.code != AND32_K {
                assert_eq!(at as i16 + 1 + insn.off, 17, "{at}: {insn:?}");
            }
        }
        assert_eq!(p.last().unwrap().code, EXIT);
    }

    /// The kernel's verifier takes the programs (loading needs CAP_BPF or CAP_SYS_ADMIN).
    #[test]
    fn the_verifier_accepts_the_programs() {
        let docker = [
            DeviceRule::deny_all(),
            c(Some(1), Some(3), "rwm"),
            c(Some(136), None, "rwm"),
            c(None, None, "m"),
            DeviceRule::allow(DeviceType::Block, None, None, "m"),
            c(Some(10), Some(200), "rw"),
        ];
        for rules in [
            &docker[..],
            &[],
            &[DeviceRule::allow(DeviceType::All, None, None, "rwm")],
        ] {
            let fd = load(&program(rules), Path::new("/test")).unwrap_or_else(|e| panic!("{e}"));
            assert!(fd.as_raw_fd() > 2);
        }
        // A broken program is refused, with the verifier's reasons in the message.
        let err = load(&[op(EXIT, 0, 0, 0)], Path::new("/test")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("verifier log") && msg.contains("R0"), "{msg}");
    }
}
