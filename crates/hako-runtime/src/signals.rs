//! Signal names as Docker and runc take them.

/// `SIGTERM`, `TERM`, `15`, `RTMIN+3`.
pub fn parse(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PIPE" => libc::SIGPIPE,
        "CHLD" => libc::SIGCHLD,
        "ABRT" => libc::SIGABRT,
        "TRAP" => libc::SIGTRAP,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "SEGV" => libc::SIGSEGV,
        "STKFLT" => libc::SIGSTKFLT,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        // Docker's real-time names: RTMIN (34) .. RTMIN+15, RTMAX-14 .. RTMAX (64).
        "RTMIN" => 34,
        "RTMAX" => 64,
        _ => {
            let (base, sign, n) = match name.strip_prefix("RTMIN+") {
                Some(n) => (34, 1, n),
                None => (64, -1, name.strip_prefix("RTMAX-")?),
            };
            let off: i32 = n.parse().ok()?;
            return (1..=15).contains(&off).then_some(base + sign * off);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_numbers_and_real_time_signals() {
        assert_eq!(parse("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse("kill"), Some(libc::SIGKILL));
        assert_eq!(parse("9"), Some(9));
        assert_eq!(parse("RTMIN+3"), Some(37));
        assert_eq!(parse("SIGRTMAX-1"), Some(63));
        for bad in ["0", "65", "BOGUS", "RTMIN+16", ""] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
