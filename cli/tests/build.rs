//! `reprise build` end to end, as a user runs it: a JavaScript workflow
//! built with the toolchain the binary installs into a fresh cache, run
//! with a budget of one step, and a TypeScript one; and a module it cannot
//! build named with its file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reprise_tests::process::output_text as text;
use serde_json::Value;

fn reprise() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reprise"));
    c.env_remove("REPRISE_JS_TOOLCHAIN");
    c
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SDK of this checkout, installed by `tests/run`.
fn checkout_toolchain() -> PathBuf {
    root().join("guest-sdk/js")
}

fn assert_usage_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn a_js_workflow_builds_with_a_fresh_toolchain_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let source = tmp.path().join("demo.js");
    std::fs::copy(root().join("guests/js/demo.js"), &source).unwrap();
    let build = || {
        reprise()
            .arg("build")
            .arg(&source)
            .env("REPRISE_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    let out = build();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("installing the JavaScript toolchain"),
        "{}",
        text(&out)
    );
    let wasm = tmp.path().join("demo.wasm");
    assert!(wasm.is_file(), "the default output is next to the source");

    // One step per invocation: every invocation replays in a fresh instance.
    let out = reprise()
        .arg("run")
        .arg(&wasm)
        .args(["--input", r#"{"userId": 7}"#, "--max-steps", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("the result as JSON");
    assert_eq!(result["user"]["name"], "User 7");
    assert_eq!(result["comments"].as_array().unwrap().len(), 6, "{result}");

    // The tool error branch.
    let out = reprise()
        .arg("run")
        .arg(&wasm)
        .args(["--input", r#"{"userId": 0}"#])
        .output()
        .unwrap();
    let result: Value = serde_json::from_slice(&out.stdout).expect("the result as JSON");
    assert_eq!(result["reason"], "no user with id 0", "{}", text(&out));

    // The second build uses the installed toolchain.
    let out = build();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("installing"),
        "{}",
        text(&out)
    );

    // TypeScript builds the same way (esbuild strips the types).
    let ts = tmp.path().join("typed.ts");
    std::fs::write(
        &ts,
        "interface Input { userId: number }
         export function* workflow(input: Input): Generator<unknown, string, any> {
           const user = yield { __tool: ['demo', 'user', { id: input.userId }] };
           return `hello ${user.name as string}`;
         }
",
    )
    .unwrap();
    let out = reprise()
        .arg("build")
        .arg(&ts)
        .env("REPRISE_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = reprise()
        .arg("run")
        .arg(tmp.path().join("typed.wasm"))
        .args(["--input", r#"{"userId": 3}"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("the result as JSON");
    assert_eq!(result, "hello User 3");
}

#[test]
fn modules_it_cannot_build_are_named_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let build = |file: &Path| {
        reprise()
            .arg("build")
            .arg(file)
            .arg("--toolchain")
            .arg(checkout_toolchain())
            .output()
            .unwrap()
    };

    let bad = write(
        "bad.js",
        "export function* workflow(input) {\n  const x = yield { __tool: [\n}\n",
    );
    assert_usage_error(&build(&bad), &["bad.js:3:1", "Unexpected"]);

    let unexported = write(
        "unexported.js",
        "function* workflow(input) { return 1; }\nexport const other = 2;\n",
    );
    assert_usage_error(
        &build(&unexported),
        &[
            "unexported.js",
            "does not export `workflow`",
            "found: other",
        ],
    );

    let throws = write(
        "throws.js",
        "throw new Error('at the top');\nexport function* workflow() {}\n",
    );
    assert_usage_error(&build(&throws), &["throws.js", "at the top"]);

    assert_usage_error(
        &build(&tmp.path().join("absent.js")),
        &["absent.js: no such file"],
    );
    for file in ["bad.wasm", "unexported.wasm", "throws.wasm"] {
        assert!(!tmp.path().join(file).exists(), "{file} was written");
    }

    // A toolchain directory that was never installed is the toolchain's
    // fault (exit 1), with the fix named.
    let out = reprise()
        .arg("build")
        .arg(&unexported)
        .arg("--toolchain")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("npm ci"),
        "{}",
        text(&out)
    );
}
