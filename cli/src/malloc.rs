//! The C allocator's settings for a long-running host.
//!
//! glibc's malloc gives threads arenas of their own, up to eight per core,
//! and each arena keeps what was freed into it. A host's threads are its
//! runtime's workers, the store's committer and a blocking pool that grows
//! under load (the file store's transactions run there), so with the
//! default every burst left memory behind in more arenas: 1,000 executions
//! parked on a signal grew a host's RSS by 3.2 MiB on the file store and
//! 2.2 MiB on Redis with the default, by 1.4 and 0.9 MiB with one arena per
//! core, from a base 5-8 MiB smaller (`cargo bench -p reprise-cli --bench
//! http -- parked`; ARCHITECTURE.md has the throughput side).

/// Caps glibc's arenas at one per core (two at least), unless
/// `MALLOC_ARENA_MAX` is set, which glibc reads itself. Call before the
/// process starts a thread.
pub fn cap_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only sets a parameter of the allocator, and no
        // other thread exists yet to be allocating meanwhile.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
