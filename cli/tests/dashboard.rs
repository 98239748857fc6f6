//! The dashboard (`/ui/`) in headless Chromium: `tests/ui`'s own tests
//! (`node --test`, driving Chromium through playwright-core), which start
//! this binary's host themselves with the Rust guests of this checkout.
//! Screenshots of failed tests are kept in `target/ui-artifacts`.

use std::path::Path;
use std::process::Command;

use reprise_tests::process::output_text as text;

#[test]
fn the_dashboard_passes_its_browser_tests_against_a_real_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ui = root.join("tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "tests/ui has no node_modules: run `npm ci` there (tests/run does)"
    );
    let artifacts = root.join("target/ui-artifacts");
    let out = Command::new("node")
        .arg("--test")
        .arg("test/")
        .current_dir(&ui)
        .env("REPRISE_BIN", env!("CARGO_BIN_EXE_reprise"))
        .env("REPRISE_GUESTS", reprise_tests::guests_dir())
        .env("REPRISE_UI_ARTIFACTS", &artifacts)
        .output()
        .expect("running node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "screenshots in {}\n{}",
        artifacts.display(),
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{}",
        text(&out)
    );
}
