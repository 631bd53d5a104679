//! A sealed in-memory copy of the program monitors (and so every container init, a fork of
//! its monitor) run from: `hako-runtime`, or hako itself. A process in a container that opens
//! `/proc/<pid>/exe` of a hako process finds a memfd whose seals forbid writes: the runc
//! CVE-2019-5736 class of escape (overwriting the runtime binary on the host) has no target.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};

pub fn sealed_copy(program: &Path) -> io::Result<OwnedFd> {
    let fd = memfd_create("hako-runtime", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut src = File::open(program)?;
    let mut dst = File::from(fd);
    io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    fcntl_add_seals(
        &fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_copy_cannot_be_written() {
        let fd = sealed_copy(Path::new("/proc/self/exe")).unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"x"));
        assert!(err.is_err(), "a sealed memfd accepted a write");
        assert!(std::fs::metadata(&path).unwrap().len() > 1 << 20);
    }
}
