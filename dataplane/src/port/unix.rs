//! Unix-domain control sockets shared by the shared-memory ports (memif: SOCK_SEQPACKET,
//! vhost-user: SOCK_STREAM): the `sockaddr_un` of a path, a non-blocking socket, and a
//! listener that takes over a stale socket file but refuses one still in use.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The `sockaddr_un` of `path` and its length; `None` when the path is empty, has a
/// NUL byte or does not fit `sun_path`.
pub(crate) fn sockaddr(path: &Path) -> Option<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return None;
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Some((sa, len as libc::socklen_t))
}

/// A non-blocking, close-on-exec `AF_UNIX` socket of `kind` (`SOCK_SEQPACKET`,
/// `SOCK_STREAM`).
pub(crate) fn socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why [`listen`] failed.
#[derive(Debug)]
pub(crate) enum ListenError {
    /// Another process still accepts on the path.
    InUse,
    /// A system call failed (its name and the error).
    Sys(&'static str, io::Error),
}

/// A listening socket of `kind` at `path` (`sa`/`salen` from [`sockaddr`]). A socket
/// file left behind by a process that is gone is removed first; one somebody still
/// accepts on is [`ListenError::InUse`].
pub(crate) fn listen(
    path: &Path,
    sa: &libc::sockaddr_un,
    salen: libc::socklen_t,
    kind: libc::c_int,
) -> Result<OwnedFd, ListenError> {
    let sys = |what| ListenError::Sys(what, io::Error::last_os_error());
    if path.exists() {
        let probe = socket(kind).map_err(|e| ListenError::Sys("socket(AF_UNIX)", e))?;
        // SAFETY: sa/salen describe a valid sockaddr_un.
        let r = unsafe {
            libc::connect(
                probe.as_raw_fd(),
                (sa as *const libc::sockaddr_un).cast(),
                salen,
            )
        };
        if r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            return Err(ListenError::InUse);
        }
        let _ = std::fs::remove_file(path);
    }
    let l = socket(kind).map_err(|e| ListenError::Sys("socket(AF_UNIX)", e))?;
    // SAFETY: sa/salen describe a valid sockaddr_un.
    if unsafe {
        libc::bind(
            l.as_raw_fd(),
            (sa as *const libc::sockaddr_un).cast(),
            salen,
        )
    } != 0
    {
        return Err(sys("bind"));
    }
    // SAFETY: listen on our bound socket.
    if unsafe { libc::listen(l.as_raw_fd(), 4) } != 0 {
        return Err(sys("listen"));
    }
    Ok(l)
}
