//! The host's log as an operator reads it: `reprise serve` as a process,
//! its stderr kept.

use std::path::Path;
use std::process::Command;

use reprise_tests::process::{ServeProcess, output_text as text};

fn reprise() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
}

/// A start in a trace (`TRACEPARENT`, as OpenTelemetry's command-line
/// convention has it): the host's log lines of its invocations carry the
/// trace id, with no exporter configured.
#[test]
fn log_lines_carry_the_trace_id() {
    let host = ServeProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_reprise")),
        "",
        &[("RUST_LOG", "info")],
    );
    let sequential = reprise_tests::guests_dir().join("sequential.wasm");
    let out = reprise()
        .args(["deploy", "sequential"])
        .arg(&sequential)
        .args(["--server", &host.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = reprise()
        .args([
            "start",
            "sequential",
            "--input",
            r#"{"user_id":5}"#,
            "--wait",
            "30s",
        ])
        .args(["--server", &host.url])
        .env(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The guest's own log line, inside the invocation's span.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = host.log();
        if let Some(line) = log.iter().find(|l| l.contains("user 5 is User 5")) {
            assert!(
                line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
                "{line}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log:#?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
