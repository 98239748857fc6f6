//! The host's allocator runs with the options `src/malloc.rs` gives it.
//! jemalloc finds them through a symbol it looks up by name, so a build
//! that renamed it (another prefix, another version of the crate) would
//! drop them without a word: this reads them back from jemalloc itself.
#![cfg(target_os = "linux")]

use std::process::Command;

/// jemalloc's statistics, printed to stderr as `reprise --version` exits,
/// with `conf` as the environment's options.
fn stats(conf: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reprise"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", conf)
        .output()
        .expect("run reprise");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn jemalloc_runs_with_the_hosts_options() {
    let stats = stats("stats_print:true");
    for option in [
        "opt.background_thread: true",
        "opt.percpu_arena: \"percpu\"",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
        "opt.tcache_max: 1024",
    ] {
        assert!(
            stats.contains(option),
            "{option} not in jemalloc's statistics:\n{stats}"
        );
    }
}

#[test]
fn the_environment_overrides_an_option() {
    let stats = stats("stats_print:true,dirty_decay_ms:5000");
    assert!(stats.contains("opt.dirty_decay_ms: 5000"), "{stats}");
    assert!(stats.contains("opt.background_thread: true"), "{stats}");
}
