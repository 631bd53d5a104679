//! Keeping the per-container monitor small. It starts from a program image and a heap shaped
//! by its setup (parsing the config, compiling seccomp, cloning the init), then spends its
//! life in a poll loop that needs a sliver of either.

/// Returns the setup's freed heap to the kernel, and unmaps the program and library pages
/// this process mapped from files and never changed: they stay in the page cache, shared by
/// the daemon and every monitor, and the few the loop runs fault back in.
pub fn shed() {
    // SAFETY: malloc_trim only releases free heap memory. (musl's allocator gives freed
    // memory back by itself.)
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize, bool)> = None;
    let drop_range = |r: Option<(usize, usize, bool)>, anon_kb: u64| {
        if let Some((start, end, candidate)) = r {
            // Pages with a private copy (relocated data, RELRO) would be lost: only clean
            // file pages go.
            if candidate && anon_kb == 0 {
                // SAFETY: the range is a whole mapping of ours, backed by an unchanged file;
                // MADV_DONTNEED on it only drops page table entries, and MADV_RANDOM stops
                // the kernel from mapping 16 neighbouring pages at each later fault.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
                }
            }
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = f.next().unwrap_or_default();
                let inode = f.nth(2).unwrap_or("0");
                // A header line: file-backed (inode) and not writable.
                current = Some((a, b, inode != "0" && perms.as_bytes().get(1) == Some(&b'-')));
                continue;
            }
        }
        if first == "Anonymous:" {
            let kb = f.next().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            drop_range(current.take(), kb);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shedding_keeps_the_process_working() {
        let before = rss_kb();
        super::shed();
        // Code, relocated data and the heap all still work after the shed.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v[999], "999");
        assert!(serde_json::to_string(&v).unwrap().len() > 1000);
        assert!(rss_kb() <= before + 512, "RSS grew: {before} -> {}", rss_kb());
    }

    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}
