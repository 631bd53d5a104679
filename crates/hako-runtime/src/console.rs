//! The container's terminal. It is created inside the container, from the container's own
//! devpts instance, so `tty` and `ttyname` work there; the master side is passed to the
//! monitor over a socket (what runc calls the console socket).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags,
};

/// In the container, after /dev/pts is mounted: opens a new terminal, makes its slave side
/// the controlling terminal and stdio, and sends the master to the monitor.
pub fn setup_in_container(sock: &OwnedFd, size: Option<(u16, u16)>) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY | rustix::pty::OpenptFlags::CLOEXEC,
    )?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if let Some((rows, cols)) = size {
        let _ = rustix::termios::tcsetwinsize(
            &slave,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        );
    }
    // SAFETY: TIOCSCTTY and dup2 on descriptors this process owns; the caller leads its
    // session already (init::own_session), which TIOCSCTTY needs.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in 0..3 {
            libc::dup2(slave.as_raw_fd(), fd);
        }
    }
    send_fd(sock, &master)
}

pub fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> std::io::Result<()> {
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(sock, &[IoSlice::new(b"m")], &mut control, SendFlags::empty())?;
    Ok(())
}

/// In the monitor: the master sent by [`setup_in_container`], or `None` if the container's
/// init closed the socket first (its setup failed; the error pipe says why).
pub fn recv_fd(sock: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut b = [0u8; 1];
    let msg = recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut b)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}
