//! `reprise new` end to end, as a new user runs it: the crate it writes
//! passes its own tests, builds to a component, deploys to a host and
//! runs; and a name or a path it must refuse is refused with nothing
//! written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reprise_tests::process::ServeProcess;

fn reprise() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
}

use reprise_tests::process::output_text as text;

/// `cargo` in `dir`, with a target directory kept between test runs (the
/// first build of the crate's dependencies takes a minute or two).
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap()
}

#[test]
fn a_new_crate_tests_builds_deploys_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello-flow");
    let out = reprise().arg("new").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created workflow `hello-flow`"),
        "{}",
        text(&out)
    );

    // Its native tests: run twice each (recorded, then replayed).
    let out = cargo(&dir, &["test"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test tests::greets_the_user ... ok"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("2 passed"), "{}", text(&out));

    // The build command its README gives.
    let out = cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(out.status.success(), "{}", text(&out));
    let wasm = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("scaffold-target/wasm32-wasip2/release/hello_flow.wasm");
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    // Deployed to a real host and started there.
    let host = ServeProcess::spawn(Path::new(env!("CARGO_BIN_EXE_reprise")), "", &[]);
    let client = |args: &[&str]| {
        reprise()
            .args(args)
            .arg("--server")
            .arg(&host.url)
            .output()
            .unwrap()
    };
    let out = client(&["deploy", "hello-flow", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = client(&[
        "start",
        "hello-flow",
        "--input",
        r#"{"user_id":7}"#,
        "--wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result, "Hello, User 7!");
    // The tool's `not-found` is the workflow's code, as the CLI reports it.
    let out = client(&[
        "start",
        "hello-flow",
        "--input",
        r#"{"user_id":0}"#,
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("failed: workflow-error not-found: no user with id 0"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_names_and_existing_paths_are_refused_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("Cargo.toml"), "mine").unwrap();
    let out = reprise().arg("new").arg(&taken).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists: nothing was written"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(taken.join("Cargo.toml")).unwrap(),
        "mine"
    );

    for (name, says) in [("9lives", "invalid workflow name"), ("test", "reserved")] {
        let out = reprise()
            .arg("new")
            .arg(tmp.path().join(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            text(&out)
        );
        assert!(!tmp.path().join(name).exists());
    }
}
