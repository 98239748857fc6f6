//! The JavaScript client (`client/js`) against real `reprise serve`
//! processes: its own tests (`node --test`), which start, kill and restart
//! this binary's host themselves, with the Rust guests of this checkout,
//! in Node and in headless Chromium (`chromium`, installed by `tests/run`).

use std::path::Path;
use std::process::Command;

use reprise_tests::process::output_text as text;

#[test]
fn the_js_client_passes_its_tests_against_a_real_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("node")
        .arg("--test")
        .arg("test/")
        .current_dir(root.join("client/js"))
        .env("REPRISE_BIN", env!("CARGO_BIN_EXE_reprise"))
        .env("REPRISE_GUESTS", reprise_tests::guests_dir())
        .output()
        .expect("running node (is Node.js installed?)");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{}",
        text(&out)
    );
}
