//! The `reprise` binary end to end: `reprise serve` as a process with a
//! config file, and every client command against it, checking output and
//! exit codes; then SIGTERM.

use std::path::Path;
use std::process::{Command, Output};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use reprise_tests::process::ServeProcess;
use serde_json::{Value, json};

const TOKEN: &str = "cli-test-token-0123456789";

type Host = ServeProcess;

fn reprise() -> Command {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
}

/// Starts `reprise serve` with `config` on a free port; returns once it
/// listens.
fn serve(config: &str, env: &[(&str, &str)]) -> Host {
    ServeProcess::spawn(Path::new(env!("CARGO_BIN_EXE_reprise")), config, env)
}

fn client(host: &Host, args: &[&str]) -> Output {
    reprise()
        .args(args)
        .arg("--server")
        .arg(&host.url)
        .env("REPRISE_TOKEN", TOKEN)
        .output()
        .unwrap()
}

/// Exit code 2, and stderr says `needle`.
fn assert_usage_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(needle),
        "{}",
        text(out)
    );
}

use reprise_tests::process::output_text as text;

fn wasm(name: &str) -> String {
    reprise_tests::guests_dir()
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// A host requiring a bearer token (read from its environment), with
/// `extra` appended to its config and guests `deploy`ed through the CLI.
fn host(extra: &str, deploy: &[&str]) -> Host {
    let config = format!(
        r#"
        [[auth.tokens]]
        name = "test"
        token_env = "CLI_TEST_TOKEN"
        scopes = ["deploy", "invoke"]
        {extra}
        "#
    );
    let host = serve(
        &config,
        &[
            ("CLI_TEST_TOKEN", TOKEN),
            ("CLI_TEST_HOOK_AUTH", "Bearer hook-secret"),
        ],
    );
    for name in deploy {
        let out = client(&host, &["deploy", name, &wasm(name)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    host
}

/// `deploy` says what it deployed; `start --wait` prints the result and
/// exits 0; a bad `--input` or an unreadable file is a usage error (2).
#[test]
fn deploy_and_start_wait() {
    let host = host("", &[]);
    let out = client(&host, &["deploy", "sequential", &wasm("sequential")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployed sequential version 1"),
        "{}",
        text(&out)
    );
    let out = client(
        &host,
        &[
            "start",
            "sequential",
            "--input",
            r#"{"user_id":5}"#,
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["user"]["name"], "User 5");
    let out = client(&host, &["start", "sequential", "--input", "{bad"]);
    assert_usage_error(&out, "--input is not valid JSON");
    let out = client(&host, &["deploy", "w", "/nonexistent.wasm"]);
    assert_usage_error(&out, "/nonexistent.wasm");
}

/// A workflow waiting for a signal: `start --wait` exits 4 and says what it
/// waits for; `ls` shows it suspended; `signal` sends it; the same start
/// again then prints the result; `status` and `journal` show the run.
#[test]
fn signal_status_journal_and_ls() {
    let host = host("", &["signals", "sequential"]);
    let start_s1 = [
        "start",
        "signals",
        "--id",
        "s1",
        "--input",
        r#"{"sleep_ms":0}"#,
        "--wait",
        "20s",
    ];
    let out = client(&host, &start_s1);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signal \"approve\""));

    let out = client(&host, &["ls"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("s1 ") && l.contains("suspended") && l.contains("approve")),
        "{listing}"
    );
    // A page at a time, newest first, the next page's cursor on stderr.
    let out = client(
        &host,
        &[
            "start",
            "sequential",
            "--id",
            "q1",
            "--input",
            r#"{"user_id":1}"#,
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = client(&host, &["ls", "--limit", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("q1 ")), "{stdout}");
    assert!(!stdout.contains("s1 "), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cursor = stderr
        .split("--cursor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor in {stderr}"));
    let out = client(&host, &["ls", "--limit", "1", "--cursor", cursor]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("s1 ")), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("--cursor"));
    let out = client(&host, &["ls", "--status", "completed", "--all", "--json"]);
    let completed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(completed.as_array().unwrap().len(), 1, "{completed}");
    let out = client(&host, &["ls", "--workflows", "--json"]);
    let workflows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(workflows["workflows"].as_array().unwrap().len(), 2);

    let out = client(
        &host,
        &["signal", "s1", "approve", "--payload", r#"{"by":"cli"}"#],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Starting the same id again waits for the same execution.
    let out = client(&host, &start_s1);
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["approved_by"], "cli");

    let out = client(&host, &["status", "s1", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["steps"], 4);
    let out = client(&host, &["status", "s1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status:      completed"),
        "{}",
        text(&out)
    );

    let out = client(&host, &["journal", "s1"]);
    let journal = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(journal.lines().count(), 5, "{journal}");
    assert!(journal.contains("approve (#0)"), "{journal}");
    // With --values, the signal's payload under its row; with --json too.
    let out = client(&host, &["journal", "s1", "--values"]);
    let journal = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        journal
            .lines()
            .any(|l| l.trim_start() == r#"result: {"by":"cli"}"#),
        "{journal}"
    );
    let out = client(&host, &["journal", "s1", "--values", "--json"]);
    let signal: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "signal")
        .unwrap();
    assert_eq!(signal["result"]["json"], json!({"by": "cli"}));
}

/// Cancelling an execution that has ended is a failed request (exit 1)
/// that says so; cancelling one that waits succeeds.
#[test]
fn cancel() {
    let host = host("", &["signals"]);
    let out = client(
        &host,
        &[
            "start",
            "signals",
            "--id",
            "c1",
            "--input",
            r#"{"sleep_ms":0}"#,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = client(&host, &["cancel", "c1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cancelled execution c1"),
        "{}",
        text(&out)
    );
    let out = client(&host, &["cancel", "c1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has ended"));
}

/// A workflow that fails: `start --wait` exits 3 and says why.
#[test]
fn a_failed_workflow_exits_3() {
    let host = host("", &["trap"]);
    let out = client(&host, &["start", "trap", "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trap"),
        "{}",
        text(&out)
    );
}

/// Without the host's bearer token, a request fails (exit 1) and says so;
/// a host that is not there is a failed request too.
#[test]
fn requests_that_fail_exit_1() {
    let host = host("", &[]);
    let out = reprise()
        .args(["ls", "--server", &host.url])
        .env_remove("REPRISE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bearer token"));
    let url = host.url.clone();
    drop(host);
    let out = reprise()
        .args(["status", "x", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out)
    );
}

/// A webhook receiver that answers with the Authorization header, the
/// tool name and the input it got; returns its URL.
async fn echo_hook() -> String {
    let app = axum::Router::new().route(
        "/hook",
        post(|headers: HeaderMap, Json(body): Json<Value>| async move {
            Json(json!({
                "auth": headers.get("authorization").and_then(|v| v.to_str().ok()),
                "name": body["name"],
                "input": body["input"],
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    hook
}

/// A webhook tool configured in the file, with a header from the host's
/// environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_headers_come_from_the_environment() {
    let hook = echo_hook().await;
    let extra = format!(
        r#"
        [tools.webhook.crm]
        url = "{hook}"
        headers_from_env = {{ Authorization = "CLI_TEST_HOOK_AUTH" }}
        "#
    );
    let out = tokio::task::spawn_blocking(move || {
        let host = host(&extra, &["caller"]);
        client(
            &host,
            &[
                "start",
                "caller",
                "--input",
                r#"{"calls":[{"category":"crm","name":"lookup","input":{"email":"a@b.c"}}]}"#,
                "--wait",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result[0]["ok"]["auth"], "Bearer hook-secret");
    assert_eq!(result[0]["ok"]["input"]["email"], "a@b.c");
}

/// `reprise run --config` serves the same webhook tools as `serve`, and
/// refuses a config file `serve` would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_the_tools_of_a_config_file() {
    let hook = echo_hook().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reprise.toml");
    std::fs::write(
        &config,
        format!(
            "[tools.webhook.crm]\nurl = \"{hook}\"\n\
             headers_from_env = {{ Authorization = \"CLI_TEST_HOOK_AUTH\" }}\n"
        ),
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tools.webhok.crm]\nurl = \"http://x\"\n").unwrap();
    let (good, refused) = tokio::task::spawn_blocking(move || {
        let run = |config: &Path| {
            reprise()
                .args(["run", &wasm("caller"), "--config"])
                .arg(config)
                .args([
                    "--input",
                    r#"{"calls":[{"category":"crm","name":"lookup","input":{}}]}"#,
                ])
                .env("CLI_TEST_HOOK_AUTH", "Bearer run-secret")
                .output()
                .unwrap()
        };
        (run(&config), run(&bad))
    })
    .await
    .unwrap();
    assert!(good.status.success(), "{}", text(&good));
    let result: Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(result[0]["ok"]["auth"], "Bearer run-secret");
    assert_eq!(result[0]["ok"]["name"], "lookup");
    assert_usage_error(&refused, "webhok");
}

/// `reprise stream` prints each item as a JSON line, then exits 0 (or 3
/// after a failed workflow's items); a bad `--batch` is a usage error.
#[test]
fn stream_prints_items_as_json_lines() {
    let host = host("", &["producer"]);
    for (id, fail, code) in [("stream-ok", false, 0), ("stream-failed", true, 3)] {
        let input = format!(r#"{{"n":4,"size":2,"sleep_ms":30,"fail":{fail}}}"#);
        let out = client(
            &host,
            &[
                "start", "producer", "--input", &input, "--id", id, "--window", "2",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let out = client(&host, &["stream", id, "--batch", "3"]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected: Vec<Value> = (0..4).map(|i| json!({"i": i, "pad": "xx"})).collect();
        assert_eq!(lines, expected, "{}", text(&out));
    }
    let out = client(&host, &["stream", "stream-ok", "--batch", "0"]);
    assert_usage_error(&out, "--batch");
}

/// SIGTERM: a graceful stop, exit 0.
#[test]
fn sigterm_stops_the_host_gracefully() {
    let mut host = host("", &[]);
    let status = host.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_a_config_with_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nretenton = \"1d\"\n").unwrap();
    let out = reprise()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_usage_error(&out, "retenton");
}

/// `reprise enqueue` puts a start (here a paced stream) on the stream a
/// `--queue` host reads; the host runs it and the client sees the result. `--queue` without Redis is
/// a usage error that says why.
#[test]
fn enqueue_starts_through_a_queue_host() {
    let redis = reprise_tests::redis::RedisServer::start();
    let host = ServeProcess::spawn_with(
        Path::new(env!("CARGO_BIN_EXE_reprise")),
        "",
        &[],
        &["--queue", "jobs", "--redis", &redis.url()],
    );
    assert!(
        host.listen_line.contains("queue jobs"),
        "{}",
        host.listen_line
    );
    let url = host.url.clone();
    let server = |args: &[&str]| {
        reprise()
            .args(args)
            .args(["--server", &url])
            .output()
            .unwrap()
    };
    let out = server(&["deploy", "steps", &wasm("steps")]);
    assert!(out.status.success(), "{}", text(&out));
    let out = reprise()
        .args([
            "enqueue",
            "steps",
            "--input",
            r#"{"n": 3}"#,
            "--id",
            "from-queue",
            "--window",
            "7",
        ])
        .args(["--queue", "jobs", "--redis"])
        .arg(redis.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("execution from-queue"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = server(&["status", "from-queue", "--json"]);
        if out.status.success() {
            let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
            if rec["status"] == "completed" {
                assert_eq!(rec["result"]["steps"], 3, "{rec}");
                assert_eq!(rec["stream"]["window"], 7, "{rec}");
                assert_eq!(rec["stream"]["on_abandon"], "cancel", "{rec}");
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The queue's metrics: the message acknowledged, nothing left.
    let metrics = http_get(&url, "/metrics");
    for line in [
        "reprise_queue_messages_total{outcome=\"acknowledged\"} 1",
        "reprise_queue_depth{kind=\"pending\"} 0",
        "reprise_queue_depth{kind=\"stream\"} 0",
        "reprise_queue_depth{kind=\"timers\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    let out = reprise()
        .args(["enqueue", "steps", "--input", "{oops", "--redis"])
        .arg(redis.url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = reprise()
        .args(["enqueue", "steps", "--window", "0", "--redis"])
        .arg(redis.url())
        .output()
        .unwrap();
    assert_usage_error(&out, "stream.window 0 is out of range");
    drop(host);

    let out = reprise()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--queue",
            "jobs",
            "--data-dir",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("REPRISE_REDIS_URL")
        .output()
        .unwrap();
    assert_usage_error(&out, "needs the Redis store");
}

/// A plain HTTP/1.0 GET over loopback; the whole reply as text.
fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// The peak resident memory of process `pid` so far, in bytes (the peak:
/// memory freed after a request would not show in the current size).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

/// `/metrics` counts executions without decoding their records, one
/// count at a time: forty parallel scrapes over executions holding 3 MB
/// inputs each (120 MB in all) leave the host's memory where it was
/// (decoding them all per scrape took it to gigabytes). With
/// `auth.metrics_token` it needs a token with the `metrics` scope, while
/// the health endpoints stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cost_no_memory_and_can_require_a_token() {
    let host = serve(
        &format!(
            r#"
            max_request_bytes = 4194304
            [auth]
            metrics_token = true
            [[auth.tokens]]
            name = "app"
            token = "{TOKEN}"
            scopes = ["deploy", "invoke"]
            [[auth.tokens]]
            name = "prometheus"
            token = "metrics-token-0123456789"
            scopes = ["metrics"]
            "#
        ),
        &[],
    );
    let out = client(&host, &["deploy", "hello", &wasm("hello")]);
    assert!(out.status.success(), "{}", text(&out));
    let http = reqwest::Client::new();
    let pad = "p".repeat(3 << 20);
    for i in 0..40 {
        let r = http
            .post(format!(
                "{}/v1/workflows/hello/executions?wait=10s",
                host.url
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"id": format!("big-{i}"), "input": {"name": "m", "pad": pad}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let scrape = |token: &'static str| {
        let r = http.get(format!("{}/metrics", host.url)).bearer_auth(token);
        async move { r.send().await.unwrap() }
    };
    let denied = scrape("not-a-token-at-all-000").await;
    assert_eq!(denied.status(), 401);
    let denied = scrape(TOKEN).await;
    assert_eq!(denied.status(), 403);
    let health = http_get(&host.url, "/healthz");
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let before = rss(host.pid());
    let scrapes =
        futures_util::future::join_all((0..40).map(|_| scrape("metrics-token-0123456789"))).await;
    for r in scrapes {
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("reprise_executions{status=\"completed\"} 40"),
            "{text}"
        );
    }
    let grew = rss(host.pid()).saturating_sub(before);
    assert!(
        grew < 100 << 20,
        "forty scrapes grew the host by {} MB",
        grew >> 20
    );
}

/// Twenty parallel 60 MB deploys with a wrong token are refused before
/// their bodies are read: the host's memory stays where it was (reading
/// them first took 30 such uploads to 1.2 GB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_uploads_without_a_valid_token_cost_no_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = host("", &[]);
    let addr = host.url.trim_start_matches("http://").to_string();
    let before = rss(host.pid());
    let uploads = (0..20).map(|_| {
        let addr = addr.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = "PUT /v1/workflows/big HTTP/1.1\r\nHost: x\r\n\
                        Authorization: Bearer wrong-token-0000000000\r\n\
                        Content-Type: application/wasm\r\nContent-Length: 60000000\r\n\r\n";
            tcp.write_all(head.as_bytes()).await.unwrap();
            // Send the body until the host stops taking it.
            let chunk = vec![0u8; 1 << 20];
            for _ in 0..60 {
                if tcp.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tcp.read_to_end(&mut answer),
            )
            .await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    });
    for answer in futures_util::future::join_all(uploads).await {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:.200}");
    }
    let grew = rss(host.pid()).saturating_sub(before);
    assert!(
        grew < 100 << 20,
        "twenty refused uploads grew the host by {} MB",
        grew >> 20
    );
}

/// `status` of a parent lists its children with their status, and a
/// child's names its parent.
#[test]
fn status_lists_children() {
    let host = host("", &["parent", "child"]);
    let input = r#"{"items":[{"echo":1},{"fail":"no"}]}"#;
    let out = client(
        &host,
        &["start", "parent", "--id", "p1", "--input", input, "--wait"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = client(&host, &["status", "p1"]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("children:"), "{shown}");
    for (child, status) in [("p1.0", "completed"), ("p1.1", "failed")] {
        assert!(
            shown.lines().any(|l| l.trim_start().starts_with(child)
                && l.contains(status)
                && l.contains("child")),
            "{shown}"
        );
    }
    let out = client(&host, &["status", "p1.1"]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("parent:      p1"), "{shown}");
}

/// `reprise run` keeps the compiled component in the user's cache
/// directory; a later run loads it, and a corrupt file is removed (with a
/// warning), compiled again and written sound.
#[test]
fn run_keeps_compiled_components_between_runs() {
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        reprise()
            .args(["run", &wasm("hello"), "--input", r#"{"name":"cache"}"#])
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", text(&first));
    let dir = cache.path().join("reprise").join("compiled");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let second = run();
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(second.stdout, first.stdout);
    assert!(second.stderr.is_empty(), "{}", text(&second));
    let mut corrupt = std::fs::read(&kept[0]).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    std::fs::write(&kept[0], corrupt).unwrap();
    let third = run();
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(third.stdout, first.stdout);
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("cannot be used"),
        "{}",
        text(&third)
    );
    // Written again, sound: the next run loads it without a word.
    let fourth = run();
    assert!(fourth.status.success(), "{}", text(&fourth));
    assert!(fourth.stderr.is_empty(), "{}", text(&fourth));
    assert!(kept[0].exists());
}
