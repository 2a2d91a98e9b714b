//! The process's file-descriptor budget, read once at start.
//!
//! Every accepted connection costs a file descriptor. A listener that accepts until the
//! process runs out of them starves everything else the host needs descriptors for (the
//! upstream link, component files, the admin listener) and turns `accept` into an error
//! loop. So the host raises its soft `RLIMIT_NOFILE` to the hard limit where allowed, and
//! derives its connection and stream caps from what it got, keeping a reserve.

/// Upper bound assumed when the hard limit is "unlimited".
const UNLIMITED: u64 = 1 << 20;
/// Fallback when the limit cannot be read (non-Unix).
const FALLBACK: u64 = 1024;

/// Raise the soft file limit to the hard one where allowed; return the soft limit in
/// force afterwards.
pub fn raise_to_hard() -> u64 {
    imp::raise_to_hard()
}

/// Descriptors kept back from the public listener: the link, component files, the admin
/// listener, logs, the runtime's own.
pub fn reserve(limit: u64) -> u64 {
    (limit / 20).max(128)
}

/// Default public connection cap for a process with `limit` descriptors.
pub fn default_max_connections(limit: u64) -> usize {
    let cap = if limit > reserve(limit) + 64 {
        limit - reserve(limit)
    } else {
        limit / 2
    };
    usize::try_from(cap.max(1)).unwrap_or(usize::MAX)
}

/// Connection slots streams may not take, so `/healthz`, `/readyz` and commands still
/// get a connection when the stream cap is reached.
pub fn stream_reserve(max_connections: usize) -> usize {
    (max_connections / 50).max(16).min(max_connections / 2)
}

/// Default stream cap: below the connection cap by [`stream_reserve`].
pub fn default_max_streams(max_connections: usize) -> usize {
    max_connections
        .saturating_sub(stream_reserve(max_connections))
        .max(1)
}

#[cfg(unix)]
mod imp {
    use super::{FALLBACK, UNLIMITED};

    // `rlim_t` is not `u64` on every Unix.
    #[allow(clippy::unnecessary_cast)]
    pub fn raise_to_hard() -> u64 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return FALLBACK;
        }
        let hard = if lim.rlim_max == libc::RLIM_INFINITY {
            UNLIMITED
        } else {
            lim.rlim_max as u64
        };
        let soft = if lim.rlim_cur == libc::RLIM_INFINITY {
            UNLIMITED
        } else {
            lim.rlim_cur as u64
        };
        if soft >= hard {
            return soft;
        }
        let raised = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            hard
        } else {
            soft
        }
    }
}

#[cfg(not(unix))]
mod imp {
    pub fn raise_to_hard() -> u64 {
        super::FALLBACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_stay_below_the_limit_with_a_reserve_for_health() {
        for limit in [256, 1024, 20_000, 1 << 20] {
            let conns = default_max_connections(limit);
            assert!((conns as u64) < limit, "{limit}");
            assert!(limit - conns as u64 >= 128.min(limit / 2), "{limit}");
            let streams = default_max_streams(conns);
            assert!(
                streams < conns && conns - streams >= 16.min(conns / 2),
                "{limit}"
            );
        }
        assert_eq!(default_max_connections(20_000), 19_000);
        assert!(raise_to_hard() > 0);
    }
}
