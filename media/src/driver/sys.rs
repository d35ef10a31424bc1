//! The two kernel objects a media loop waits on: one level-triggered
//! `epoll` set over all its sockets, and an `eventfd` the control path
//! writes to wake it.
//!
//! Level-triggered on purpose: a readable socket is read once per wake-up
//! and the loop goes back to `epoll_wait`, which reports it again if more
//! is queued. Edge-triggered readiness (tokio, mio) must read until
//! `EAGAIN`, a second `recvfrom` per packet when every socket carries one
//! packet per 20 ms, and a task per socket besides.
//!
//! The only unsafe code of the driver: the `epoll_*`/`eventfd` calls
//! `std` has no wrapper for. Sockets stay `std::net::UdpSocket`s; closing
//! one removes it from the set (the driver never duplicates their fds).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll instance, level-triggered, interested in input only.
#[derive(Debug)]
pub(super) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers are passed; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is open.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for input; `epoll_wait` reports `token` for it.
    pub(super) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the duration of the
        // call; the kernel copies it.
        let r =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until a watched descriptor is ready or `timeout` passes
    /// (`None`: no timeout), rounded up to the next millisecond so a
    /// deadline is never woken for early. An interrupted wait returns no
    /// events.
    pub(super) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            Some(d) => {
                let ms = d.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        };
        let capacity = i32::try_from(events.buf.len()).unwrap_or(i32::MAX);
        // SAFETY: `buf` holds `capacity` initialised epoll_events the
        // kernel may overwrite; it writes at most `capacity`.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.buf.as_mut_ptr(), capacity, ms) };
        if n < 0 {
            events.len = 0;
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        events.len = usize::try_from(n).unwrap_or(0).min(events.buf.len());
        Ok(())
    }
}

/// What one `epoll_wait` returned: the tokens of the ready descriptors.
pub(super) struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub(super) fn with_capacity(n: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            len: 0,
        }
    }

    /// The ready tokens. `epoll_event` is packed on x86-64, so the token
    /// is copied out, never borrowed.
    pub(super) fn tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.buf.iter().take(self.len).map(|e| e.u64)
    }
}

/// A counter other threads write to wake the loop.
#[derive(Debug)]
pub(super) struct EventFd {
    file: File,
}

impl EventFd {
    pub(super) fn new() -> io::Result<EventFd> {
        // SAFETY: no pointers are passed; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is open.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd {
            file: File::from(owned),
        })
    }

    pub(super) fn raw(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Makes the descriptor readable until [`EventFd::drain`]. Cannot
    /// fail in practice: the counter would have to reach 2^64 − 1.
    pub(super) fn wake(&self) {
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter (non-blocking: nothing to read is fine).
    pub(super) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = (&self.file).read(&mut buf);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    #[test]
    fn readable_socket_and_eventfd_are_reported_by_token() {
        let epoll = Epoll::new().unwrap();
        let wake = EventFd::new().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        epoll.add(wake.raw(), 1).unwrap();
        epoll.add(sock.as_raw_fd(), 2).unwrap();
        let mut events = Events::with_capacity(8);

        let start = Instant::now();
        epoll
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        assert_eq!(events.tokens().count(), 0);
        assert!(start.elapsed() >= Duration::from_millis(20));

        wake.wake();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"x", sock.local_addr().unwrap())
            .unwrap();
        // Level-triggered: both stay ready until read.
        for _ in 0..2 {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                epoll
                    .wait(&mut events, Some(Duration::from_secs(1)))
                    .unwrap();
                seen = events.tokens().collect();
            }
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2]);
        }
        wake.drain();
        let mut buf = [0u8; 4];
        assert_eq!(sock.recv(&mut buf).unwrap(), 1);
        epoll
            .wait(&mut events, Some(Duration::from_millis(1)))
            .unwrap();
        assert_eq!(events.tokens().count(), 0);
    }
}
