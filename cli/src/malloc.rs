//! The allocator of a long-running host, on Linux: jemalloc, set to give
//! back what it does not use.
//!
//! A host's memory is its request handling's, and a parked execution holds
//! none of it (ARCHITECTURE.md, "Nothing held per parked execution"). What
//! a host's RSS still gained as executions parked was the allocator keeping
//! what was freed: glibc keeps it in per-thread arenas and inside its heaps,
//! and a host's threads are its runtime's workers, the store's committer
//! and a blocking pool that grows under load (the file store's
//! transactions run there). Read 15 s after the last execution parked on a
//! signal, with glibc (arenas capped at one per core) a host on the file
//! store grew by 1.3-1.5 MiB over 100 parked at 1,000 and by 5.5-5.7 MiB
//! at 10,000; with this allocator by 1.6-1.9 and 3.2-3.4 MiB, of which the
//! store's page cache filling toward its bound is most (with a 256 KiB
//! cache: +0.9 and +1.4 MiB, against glibc's +0.8 and +3.6; the bound was
//! 2 MiB then, and is 1 MiB now: +1.3-1.5 and +2.1-2.5). On Redis both
//! stay within +1.2 MiB. (`BENCH_SETTLE=15 cargo bench -p reprise-cli
//! --bench http -- parked`; ARCHITECTURE.md has the numbers at 5 s and the
//! throughput side, and what each option below is worth: without any one
//! of them, the file store's host kept more.)
//!
//! - `background_thread:true`: a jemalloc thread returns freed pages to
//!   the system on a timer. Without it, they go back only when the host
//!   allocates again, and a host whose executions all wait does not.
//! - `dirty_decay_ms:1000,muzzy_decay_ms:0`: a freed page goes back about
//!   a second after it was last used (10 s by default), and for good: not
//!   left lazily freed, which still counts in the RSS until the kernel
//!   needs the memory.
//! - `percpu_arena:percpu`: one arena per CPU, each thread allocating from
//!   the one of the CPU it runs on, instead of four per CPU that the
//!   blocking pool's threads spread over.
//! - `tcache_max:1024`: a thread's own cache keeps blocks up to 1 KiB (32
//!   KiB by default), so a blocking thread that sleeps keeps little.
//!
//! `_RJEM_MALLOC_CONF`, when set, is read after this and wins, option by
//! option (jemalloc's `MALLOC_CONF`, under the prefix this build of it
//! uses).

/// Rust's allocations go to jemalloc.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The options jemalloc reads when it starts, before `main` (see above).
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&std::ffi::c_char> = Some(
    // SAFETY: a C string literal lives for the whole program, and its
    // pointer is to its first byte.
    unsafe {
        &*c"background_thread:true,percpu_arena:percpu,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:1024".as_ptr()
    },
);
