//! The CLI's client commands: each parses its arguments, makes one or a few
//! calls through `reprise-client` (the one HTTP client and the one set of
//! wire types) and prints a table, or the server's JSON with `--json`. No
//! HTTP code lives here.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reprise_client::{ExecutionStatus, ExecutionView, ListParams, Start};
use serde_json::Value;

use crate::{EXIT_SERVER, EXIT_SUSPENDED, EXIT_USAGE, EXIT_WORKFLOW_FAILED};

/// Where and how to reach the host.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The host's base URL.
    #[arg(
        long,
        env = "REPRISE_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// Bearer token (when the host requires one).
    #[arg(long, env = "REPRISE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A failure the CLI reports with a specific exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The server refused the request or could not be reached (exit 1).
    #[error("{0}")]
    Server(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Server(_) => EXIT_SERVER,
        })
    }
}

/// The CLI's client commands: arguments in, [`reprise_client::Client`]
/// calls, tables (or the server's JSON) out.
pub struct Client {
    args: ClientArgs,
    client: reprise_client::Client,
}

impl Client {
    pub fn new(args: ClientArgs) -> Result<Self> {
        reqwest::Url::parse(&args.server).map_err(|e| {
            CliError::Usage(format!("--server {:?} is not a URL: {e}", args.server))
        })?;
        let mut client = reprise_client::Client::new(&args.server);
        if let Some(t) = &args.token {
            client = client.with_token(t);
        }
        Ok(Self { args, client })
    }

    /// A client error as the CLI reports it (exit 1).
    fn failed(&self, e: reprise_client::Error) -> anyhow::Error {
        let text = match e {
            reprise_client::Error::Http(_) => format!(
                "cannot reach {}: {}",
                self.args.server,
                e.to_string().trim_start_matches("cannot reach the host: ")
            ),
            reprise_client::Error::Decode(why) => {
                format!("the server's reply is not what this CLI expects: {why}")
            }
            other => other.to_string(),
        };
        CliError::Server(text).into()
    }

    fn print_json(&self, value: &impl serde::Serialize) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|e| e.to_string())
        );
    }

    pub async fn deploy(&self, name: &str, file: &Path) -> Result<ExitCode> {
        let bytes = std::fs::read(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
            "uploading {} ({}) and compiling",
            file.display(),
            human_bytes(bytes.len() as u64)
        ));
        spinner.enable_steady_tick(Duration::from_millis(100));
        let started = Instant::now();
        let sent = self.client.deploy(name, bytes).await;
        spinner.finish_and_clear();
        let d = sent.map_err(|e| self.failed(e))?;
        if self.args.json {
            self.print_json(&d);
        } else {
            println!(
                "deployed {} version {} ({}) in {:.1} s",
                d.name,
                d.version,
                d.short_digest(),
                started.elapsed().as_secs_f64()
            );
            println!("imports: {}", d.imports.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Starts an execution (in the trace `TRACEPARENT` names, if set);
    /// with `wait`, repeats the (idempotent) start until it settles or
    /// `wait` has passed.
    pub async fn start(
        &self,
        name: &str,
        input: &str,
        id: Option<String>,
        wait: Option<Duration>,
        window: Option<u64>,
    ) -> Result<ExitCode> {
        let input: Value = serde_json::from_str(input)
            .map_err(|e| CliError::Usage(format!("--input is not valid JSON: {e}")))?;
        // A client-chosen id makes the repeated start below the same start.
        let id = id.unwrap_or_else(|| reprise_host::ExecutionId::generate().to_string());
        let mut options = Start::default().id(id);
        // The OpenTelemetry convention for a command's trace context.
        options.traceparent = std::env::var("TRACEPARENT").ok();
        if let Some(window) = window {
            options = options.window(window);
        }
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut this = options.clone();
            this.wait = left;
            let e = self
                .client
                .start(name, &input, this)
                .await
                .map_err(|e| self.failed(e))?;
            let out_of_time = deadline.is_none_or(|d| Instant::now() >= d);
            if e.is_settled() || out_of_time {
                return Ok(self.report(&e, wait.is_some()));
            }
        }
    }

    /// Prints an execution; the exit code says how it stands when the
    /// caller waited for it.
    fn report(&self, e: &ExecutionView, waited: bool) -> ExitCode {
        if self.args.json {
            self.print_json(e);
        } else if waited && e.status == ExecutionStatus::Completed {
            println!(
                "{}",
                serde_json::to_string_pretty(e.result.as_ref().unwrap_or(&Value::Null))
                    .unwrap_or_default()
            );
        } else {
            print_execution(e);
        }
        if !waited {
            return ExitCode::SUCCESS;
        }
        match e.status {
            ExecutionStatus::Completed => ExitCode::SUCCESS,
            ExecutionStatus::Failed | ExecutionStatus::Cancelled => {
                if !self.args.json {
                    match &e.error {
                        Some(err) => eprintln!("execution {} failed: {}", e.id, error_line(err)),
                        None => eprintln!("execution {} was cancelled", e.id),
                    }
                }
                ExitCode::from(EXIT_WORKFLOW_FAILED)
            }
            ExecutionStatus::Running | ExecutionStatus::Suspended => ExitCode::from(EXIT_SUSPENDED),
        }
    }

    /// `reprise stream`: prints each item as a JSON line as it arrives.
    pub async fn stream(&self, id: &str, batch: usize, after: Option<u64>) -> Result<ExitCode> {
        use futures_util::StreamExt;
        use std::io::Write;
        if !(1..=1000).contains(&batch) {
            return Err(
                CliError::Usage(format!("--batch {batch} is out of range: use 1 to 1000")).into(),
            );
        }
        let mut items = self.client.stream_with::<Value>(
            id,
            reprise_client::StreamOptions {
                batch,
                after,
                ..Default::default()
            },
        );
        let mut out = std::io::stdout().lock();
        let mut n = 0u64;
        loop {
            let next = tokio::select! {
                next = items.next() => next,
                _ = tokio::signal::ctrl_c() => {
                    // Dropping the stream closes the session; give it a moment.
                    drop(items);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    eprintln!("stopped after {n} items");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            match next {
                Some(Ok(item)) => {
                    n += 1;
                    writeln!(out, "{item}")?;
                    out.flush()?;
                }
                None => {
                    eprintln!("the stream ended after {n} items");
                    return Ok(ExitCode::SUCCESS);
                }
                Some(Err(
                    e @ (reprise_client::Error::Failed { .. } | reprise_client::Error::Cancelled),
                )) => {
                    eprintln!("{e} (after {n} items)");
                    return Ok(ExitCode::from(EXIT_WORKFLOW_FAILED));
                }
                Some(Err(e)) => return Err(self.failed(e)),
            }
        }
    }

    pub async fn status(&self, id: &str) -> Result<ExitCode> {
        let e = self.client.status(id).await.map_err(|e| self.failed(e))?;
        Ok(self.report(&e, false))
    }

    pub async fn cancel(&self, id: &str, keep_children: bool) -> Result<ExitCode> {
        let e = self
            .client
            .cancel_with(id, keep_children)
            .await
            .map_err(|e| self.failed(e))?;
        if self.args.json {
            self.print_json(&e);
        } else {
            println!("cancelled execution {} after {} steps", e.id, e.steps);
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn signal(&self, id: &str, name: &str, payload: &str) -> Result<ExitCode> {
        let payload: Value = serde_json::from_str(payload)
            .map_err(|e| CliError::Usage(format!("--payload is not valid JSON: {e}")))?;
        let sent = self
            .client
            .signal(id, name, &payload)
            .await
            .map_err(|e| self.failed(e))?;
        if self.args.json {
            self.print_json(&sent);
        } else {
            println!("sent signal {name:?} to execution {id}");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Prints the whole journal, fetched a page at a time.
    pub async fn journal(&self, id: &str, values: bool) -> Result<ExitCode> {
        let entries = self
            .client
            .journal_all_with(id, values)
            .await
            .map_err(|e| self.failed(e))?;
        crate::print_entries(&entries, self.args.json);
        Ok(ExitCode::SUCCESS)
    }

    /// `reprise ls`: one page of executions (every page with `all`), the
    /// cursor of the next one on stderr.
    pub async fn ls(&self, workflows: bool, params: ListParams, all: bool) -> Result<ExitCode> {
        if workflows {
            let list = self.client.workflows().await.map_err(|e| self.failed(e))?;
            if self.args.json {
                self.print_json(&list);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24}  {:>7}  {:<12}  {:>7}",
                "workflow", "version", "digest", "imports"
            );
            for d in &list.workflows {
                println!(
                    "{:<24}  {:>7}  {:<12}  {:>7}",
                    d.name,
                    d.version,
                    d.short_digest(),
                    d.imports.len()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        let (all, next) = if all {
            let every = self
                .client
                .list_all(&params)
                .await
                .map_err(|e| self.failed(e))?;
            (every, None)
        } else {
            let page = self
                .client
                .list(&params)
                .await
                .map_err(|e| self.failed(e))?;
            (page.executions, page.next_cursor)
        };
        if let Some(next) = &next {
            eprintln!("more: reprise ls --cursor {next} (or --all)");
        }
        if self.args.json {
            self.print_json(&all);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{:<34}  {:<20}  {:<10}  {:>6}  waiting for",
            "id", "workflow", "status", "steps"
        );
        for e in &all {
            println!(
                "{:<34}  {:<20}  {:<10}  {:>6}  {}",
                e.id,
                e.workflow,
                e.status,
                e.steps,
                wait_text(e)
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn wait_text(e: &ExecutionView) -> String {
    e.wait.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn print_execution(e: &ExecutionView) {
    println!("id:          {}", e.id);
    println!("workflow:    {} ({})", e.workflow, e.short_digest());
    println!("status:      {}", e.status);
    let waiting = wait_text(e);
    if !waiting.is_empty() {
        println!("waiting for: {waiting}");
    }
    println!("steps:       {}", e.steps);
    println!("invocations: {}", e.invocations);
    if let Some(r) = &e.result {
        println!("result:      {r}");
    }
    if let Some(err) = &e.error {
        println!("error:       {}", error_line(err));
    }
    if let Some(parent) = &e.parent {
        println!("parent:      {parent}");
    }
    for r in &e.retrying {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Rounded to 100 ms: enough to read, without a wall of digits.
        let next_in = Duration::from_millis(r.next_attempt_at_ms.saturating_sub(now) / 100 * 100);
        let failing_for =
            Duration::from_millis(now.saturating_sub(r.failing_since_ms) / 1000 * 1000);
        println!(
            "retrying:    {} (entry {}): {} attempts failed over {}, last: {}: {}; next in {}",
            r.tool,
            r.index,
            r.attempts,
            humantime::format_duration(failing_for),
            r.last_error.code,
            r.last_error.message,
            humantime::format_duration(next_in),
        );
    }
    if !e.children.is_empty() {
        println!("children:");
        for c in &e.children {
            println!("  {:<40} {:<10} {}", c.id, c.status, c.workflow);
        }
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Reads `--wait`'s value.
pub fn parse_wait(text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("--wait {text:?} is not a duration (e.g. 30s, 2m)"))
        .map_err(|e| CliError::Usage(format!("{e:#}")).into())
}

/// `kind: message`, or for a workflow's own error `kind code: message`,
/// then its details as JSON.
fn error_line(err: &reprise_client::ErrorView) -> String {
    let mut line = match &err.code {
        Some(code) => format!("{} {code}: {}", err.kind, err.message),
        None => format!("{}: {}", err.kind, err.message),
    };
    if let Some(details) = &err.details {
        line.push_str(&format!(" (details: {details})"));
    }
    line
}
