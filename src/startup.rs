//! io_uring under the limits a process meets in containers: rings planned to fit the
//! locked-memory limit, and, where io_uring cannot be set up, one line that names the cause and
//! the fix.
//!
//! The kernel charges every io_uring ring to RLIMIT_MEMLOCK (per user, unless the process has
//! CAP_IPC_LOCK), and many Docker and containerd hosts give a container 64 KiB of it, which
//! Kubernetes cannot raise per pod. [`plan_rings`] picks the ring depth, and if need be fewer
//! shards, so that every shard's rings fit.
//!
//! glommio reports a refused io_uring only as an errno (`io_uring_setup` failed with EPERM,
//! ENOSYS or ENOMEM). The same errno has several causes: a container runtime's default seccomp
//! profile, the kernel's `io_uring_disabled` switch, a kernel built without io_uring, a
//! locked-memory limit too small. [`Confinement`] reads what the process can see of each, and
//! [`explain`] turns the errno and those facts into the line a user can act on.

use std::io;

/// What limits this process's use of io_uring, as far as it can see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// A seccomp filter is installed (`Seccomp: 2` in /proc/self/status): a container's profile.
    pub seccomp_filter: bool,
    /// `kernel.io_uring_disabled` (Linux 6.6+): 1 allows only `kernel.io_uring_group`, 2 nobody.
    pub io_uring_disabled: Option<u8>,
    /// The kernel's release, as `uname -r` prints it.
    pub kernel: Option<String>,
    /// RLIMIT_MEMLOCK's soft limit in bytes (`None`: unlimited or unreadable).
    pub memlock_bytes: Option<u64>,
    /// CAP_IPC_LOCK is in effect: locked memory is not charged against the limit.
    pub ipc_lock: bool,
    /// The kernel's page size (rings take whole pages).
    pub page_size: u64,
}

/// CAP_IPC_LOCK's bit in the capability sets of /proc/self/status.
const CAP_IPC_LOCK: u32 = 14;
/// The page size's key in the auxiliary vector (/proc/self/auxv).
const AT_PAGESZ: u64 = 6;
const DEFAULT_PAGE_SIZE: u64 = 4096;

impl Confinement {
    /// Reads /proc and the process's limits; what cannot be read stays unknown.
    pub fn read() -> Confinement {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp_mode = status
            .lines()
            .find_map(|line| line.strip_prefix("Seccomp:"))
            .and_then(|mode| mode.trim().parse::<u8>().ok());
        let read_trimmed = |path: &str| std::fs::read_to_string(path).ok().map(|text| text.trim().to_owned());
        let memlock = rlimit::Resource::MEMLOCK.get().ok().map(|(soft, _)| soft);
        let effective_caps = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok());
        Confinement {
            seccomp_filter: seccomp_mode == Some(2),
            io_uring_disabled: read_trimmed("/proc/sys/kernel/io_uring_disabled")
                .and_then(|v| v.parse().ok()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            memlock_bytes: memlock.filter(|&limit| limit != rlimit::INFINITY),
            ipc_lock: effective_caps.is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0),
            page_size: std::fs::read("/proc/self/auxv")
                .ok()
                .and_then(|auxv| page_size(&auxv))
                .unwrap_or(DEFAULT_PAGE_SIZE),
        }
    }

    /// The kernel's (major, minor) version, where its release reads as one.
    fn kernel_version(&self) -> Option<(u32, u32)> {
        let release = self.kernel.as_deref()?;
        let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
        Some((numbers.next()?, numbers.next()?))
    }

    fn kernel_named(&self) -> String {
        self.kernel.as_deref().map_or_else(|| "this kernel".to_owned(), |release| format!("kernel {release}"))
    }
}

/// AT_PAGESZ from an auxiliary vector: native-endian (key, value) pairs of machine words.
fn page_size(auxv: &[u8]) -> Option<u64> {
    let word = |bytes: &[u8]| bytes.try_into().ok().map(u64::from_ne_bytes);
    auxv.chunks_exact(16).find_map(|pair| {
        let (key, value) = pair.split_at(8);
        if word(key)? == AT_PAGESZ { word(value) } else { None }
    })
}

/// Raises RLIMIT_MEMLOCK's soft limit to its hard limit, as any process may: more room for
/// rings where a runtime sets a low soft limit under a higher hard one.
pub fn raise_memlock_limit() {
    if let Ok((soft, hard)) = rlimit::Resource::MEMLOCK.get()
        && soft < hard
    {
        let _ = rlimit::Resource::MEMLOCK.set(hard, hard);
    }
}

/// The profile kaos ships: the container runtime's default plus the three io_uring calls.
pub const SECCOMP_PROFILE: &str = "kaos-seccomp.json";

/// glommio's ring depth, where the locked-memory limit has room for it.
pub const RING_DEPTH: usize = 128;
/// The depth where a ring takes the fewest pages (one for its queues, one for its entries).
pub const SMALL_RING_DEPTH: usize = 64;
/// glommio's rings per executor: main, latency and poll.
const RINGS_PER_SHARD: u64 = 3;
/// The rings' header (struct io_rings), rounded up.
const RING_HEADER: u64 = 512;

/// The shards kaos runs and the depth of their io_uring rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPlan {
    pub shards: usize,
    pub ring_depth: usize,
}

/// What one ring of `depth` entries takes of RLIMIT_MEMLOCK: its queues (a header, 2 × depth
/// completions of 16 bytes, depth indices of 4) and its submission entries (64 bytes each), each
/// in whole pages.
fn ring_bytes(depth: usize, page: u64) -> u64 {
    let depth = depth as u64;
    (RING_HEADER + 2 * depth * 16 + depth * 4).div_ceil(page) * page + (depth * 64).div_ceil(page) * page
}

/// Depth and shards that fit the locked-memory limit: the full depth where every wanted shard's
/// rings fit, else the small depth, else as many shards as fit at the small depth (`Err` if not
/// even one does). glommio's probe ring (2 entries) is counted once.
pub fn plan_rings(wanted_shards: usize, confinement: &Confinement) -> Result<RingPlan, String> {
    let Some(limit) = confinement.memlock_bytes.filter(|_| !confinement.ipc_lock) else {
        return Ok(RingPlan { shards: wanted_shards, ring_depth: RING_DEPTH });
    };
    let page = if confinement.page_size == 0 { DEFAULT_PAGE_SIZE } else { confinement.page_size };
    let room = limit.saturating_sub(ring_bytes(2, page));
    let per_shard = |depth| RINGS_PER_SHARD * ring_bytes(depth, page);
    for ring_depth in [RING_DEPTH, SMALL_RING_DEPTH] {
        if wanted_shards as u64 * per_shard(ring_depth) <= room {
            return Ok(RingPlan { shards: wanted_shards, ring_depth });
        }
    }
    match room / per_shard(SMALL_RING_DEPTH) {
        0 => Err(format!(
            "the locked-memory limit of {} KiB cannot hold one shard's io_uring rings ({} KiB): raise it \
             (docker/podman run --ulimit memlock=-1:-1, systemd LimitMEMLOCK=infinity, ulimit -l)",
            limit / 1024,
            (per_shard(SMALL_RING_DEPTH) + ring_bytes(2, page)) / 1024
        )),
        fits => Ok(RingPlan { shards: fits as usize, ring_depth: SMALL_RING_DEPTH }),
    }
}

/// One line for a shard whose io_uring could not be set up: cause, then fix.
pub fn explain(error: &io::Error, confinement: &Confinement) -> String {
    const EPERM: i32 = 1;
    const ENOMEM: i32 = 12;
    const ENOSYS: i32 = 38;
    let errno = error.raw_os_error();
    if let (Some(EPERM), Some(setting @ 1..)) = (errno, confinement.io_uring_disabled) {
        return format!(
            "io_uring is unavailable ({error}): the kernel setting kernel.io_uring_disabled is {setting}; \
             set it to 0 (sysctl -w kernel.io_uring_disabled=0), or with 1 put kaos's user in the group \
             kernel.io_uring_group names"
        );
    }
    if matches!(errno, Some(EPERM | ENOSYS)) && confinement.seccomp_filter {
        return format!(
            "io_uring is unavailable ({error}): a seccomp filter refuses it, as the default seccomp \
             profiles of Docker 25+, podman and containerd do; run kaos with the profile it ships \
             (--security-opt seccomp={SECCOMP_PROFILE}; on Kubernetes a Localhost seccompProfile, see \
             the README's \"Run kaos in a container\"), or with seccomp=unconfined"
        );
    }
    if errno == Some(ENOMEM) {
        let limit =
            confinement.memlock_bytes.map_or_else(|| "unlimited".to_owned(), |b| format!("{} KiB", b / 1024));
        return format!(
            "io_uring could not set up its rings ({error}) under a locked-memory limit of {limit}, which \
             the kernel counts for all processes of this user together: raise it (docker/podman run \
             --ulimit memlock=-1:-1, systemd LimitMEMLOCK=infinity, ulimit -l) or run fewer shards \
             (--shards)"
        );
    }
    let too_old = confinement.kernel_version().is_some_and(|version| version < (5, 8));
    if errno == Some(ENOSYS) || error.kind() == io::ErrorKind::Unsupported || too_old {
        return format!(
            "io_uring is unavailable ({error}): {} lacks it or the operations kaos needs; run kaos \
             on Linux 5.8 or newer built with CONFIG_IO_URING",
            confinement.kernel_named()
        );
    }
    format!("io_uring could not be set up: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    fn confined() -> Confinement {
        Confinement {
            seccomp_filter: true,
            kernel: Some("6.8.0-45-generic".into()),
            ..Confinement::default()
        }
    }

    #[test]
    fn a_seccomp_filter_is_named_with_the_profile_to_use() {
        for code in [1, 38] {
            let line = explain(&errno(code), &confined());
            assert!(line.contains("seccomp"), "{line}");
            assert!(line.contains("io_uring"), "{line}");
            assert!(line.contains(SECCOMP_PROFILE), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn the_kernel_switch_comes_before_seccomp() {
        let confinement = Confinement { io_uring_disabled: Some(2), ..confined() };
        let line = explain(&errno(1), &confinement);
        assert!(line.contains("kernel.io_uring_disabled is 2"), "{line}");
        // Disabled but set to 0 is no cause.
        let confinement = Confinement { io_uring_disabled: Some(0), ..confined() };
        assert!(explain(&errno(1), &confinement).contains("seccomp"));
    }

    #[test]
    fn locked_memory_names_the_limit_and_the_fix() {
        let confinement = Confinement { memlock_bytes: Some(64 * 1024), ..Confinement::default() };
        let line = explain(&errno(12), &confinement);
        assert!(line.contains("64 KiB") && line.contains("memlock") && line.contains("--shards"), "{line}");
    }

    fn limited(kib: u64) -> Confinement {
        Confinement { memlock_bytes: Some(kib * 1024), page_size: 4096, ..Confinement::default() }
    }

    #[test]
    fn rings_take_whole_pages() {
        assert_eq!(ring_bytes(128, 4096), 4 * 4096, "queues 5 KiB, entries 8 KiB");
        assert_eq!(ring_bytes(64, 4096), 2 * 4096, "one page each");
        assert_eq!(ring_bytes(2, 4096), 2 * 4096);
        assert_eq!(ring_bytes(64, 65536), 2 * 65536, "64 KiB pages (arm64)");
    }

    #[test]
    fn rings_fit_the_locked_memory_limit() {
        // Measured in a container (uid 10001, no CAP_IPC_LOCK, Linux 6.18) under 64 KiB: one shard
        // at depth 128 started and two did not; two at depth 64 did, four did not.
        let plan = |shards, kib| plan_rings(shards, &limited(kib)).unwrap();
        assert_eq!(plan(1, 64), RingPlan { shards: 1, ring_depth: RING_DEPTH });
        assert_eq!(plan(2, 64), RingPlan { shards: 2, ring_depth: SMALL_RING_DEPTH });
        assert_eq!(plan(8, 64), RingPlan { shards: 2, ring_depth: SMALL_RING_DEPTH }, "as many as fit");
        assert_eq!(plan(16, 8192), RingPlan { shards: 16, ring_depth: RING_DEPTH }, "8 MiB: all");
        let unlimited = Confinement::default();
        assert_eq!(plan_rings(64, &unlimited).unwrap(), RingPlan { shards: 64, ring_depth: RING_DEPTH });
        let privileged = Confinement { ipc_lock: true, ..limited(64) };
        assert_eq!(plan_rings(8, &privileged).unwrap().shards, 8, "CAP_IPC_LOCK: nothing is charged");
        let error = plan_rings(1, &limited(16)).unwrap_err();
        assert!(error.contains("16 KiB") && error.contains("memlock"), "{error}");
    }

    #[test]
    fn the_page_size_comes_from_the_auxiliary_vector() {
        let auxv: Vec<u8> = [(3u64, 64u64), (AT_PAGESZ, 16384), (0, 0)]
            .iter()
            .flat_map(|(key, value)| [key.to_ne_bytes(), value.to_ne_bytes()].concat())
            .collect();
        assert_eq!(page_size(&auxv), Some(16384));
        assert_eq!(page_size(&auxv[..16]), None);
    }

    #[test]
    fn an_old_or_bare_kernel_is_named() {
        let bare = Confinement { kernel: Some("6.1.0".into()), ..Confinement::default() };
        assert!(explain(&errno(38), &bare).contains("lacks it"));
        let old = Confinement { kernel: Some("5.4.0-1".into()), ..Confinement::default() };
        assert_eq!(old.kernel_version(), Some((5, 4)));
        assert!(explain(&io::Error::other("probe"), &old).contains("Linux 5.8"));
        let unsupported = io::Error::new(io::ErrorKind::Unsupported, "missing ops");
        assert!(explain(&unsupported, &Confinement::default()).contains("Linux 5.8"));
    }

    #[test]
    fn anything_else_is_said_as_it_is() {
        let line = explain(&errno(24), &Confinement::default());
        assert!(line.starts_with("io_uring could not be set up"), "{line}");
    }

    #[test]
    fn this_process_can_be_read() {
        let here = Confinement::read();
        assert!(here.kernel.is_some(), "Linux has /proc/sys/kernel/osrelease");
        assert!(here.page_size.is_power_of_two() && here.page_size >= 4096, "{}", here.page_size);
    }
}
