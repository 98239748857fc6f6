//! The CLI's client commands: each is one or a few requests to a
//! `reprise serve` host, printed as a table (or JSON with `--json`).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reprise_host::server::api::{
    DeploymentView, EntryView, ExecutionList, ExecutionView, JournalPage, WorkflowList,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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

/// `reprise stream`: prints each item as a JSON line as it arrives.
pub async fn stream(
    args: ClientArgs,
    id: &str,
    batch: usize,
    after: Option<u64>,
) -> Result<ExitCode> {
    use futures_util::StreamExt;
    use std::io::Write;
    if !(1..=1000).contains(&batch) {
        return Err(
            CliError::Usage(format!("--batch {batch} is out of range: use 1 to 1000")).into(),
        );
    }
    let mut client = reprise_client::Client::new(&args.server);
    if let Some(t) = &args.token {
        client = client.with_token(t);
    }
    let mut items = client.stream_with::<Value>(
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
            Some(Err(e)) => return Err(CliError::Server(e.to_string()).into()),
        }
    }
}

pub struct Client {
    args: ClientArgs,
    http: reqwest::Client,
}

impl Client {
    pub fn new(args: ClientArgs) -> Result<Self> {
        reqwest::Url::parse(&args.server).map_err(|e| {
            CliError::Usage(format!("--server {:?} is not a URL: {e}", args.server))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { args, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.args.server.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = &self.args.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Sends `req`; a non-2xx reply becomes a `Server` error with the
    /// problem's title and detail.
    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<(u16, T)> {
        let response = req.send().await.map_err(|e| {
            CliError::Server(format!(
                "cannot reach {}: {}",
                self.args.server,
                reprise_host::tools::webhook::error_chain(&e)
            ))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::Server(format!("reading the reply failed: {e}")))?;
        if !status.is_success() {
            let problem: Option<Value> = serde_json::from_slice(&bytes).ok();
            let message = match problem {
                Some(p) if p.get("title").is_some() => format!(
                    "{} ({}): {}",
                    p["title"].as_str().unwrap_or("error"),
                    status.as_u16(),
                    p["detail"].as_str().unwrap_or("")
                ),
                _ => format!(
                    "the server replied {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
            };
            return Err(CliError::Server(message).into());
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Server(format!(
                "the server's reply is not what this CLI expects: {e}"
            ))
        })?;
        Ok((status.as_u16(), value))
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
        let sent = self
            .send::<DeploymentView>(
                self.request(reqwest::Method::PUT, &format!("/v1/workflows/{name}"))
                    .header("content-type", "application/wasm")
                    .body(bytes),
            )
            .await;
        spinner.finish_and_clear();
        let (_, d) = sent?;
        if self.args.json {
            self.print_json(&d);
        } else {
            println!(
                "deployed {} version {} ({}) in {:.1} s",
                d.name,
                d.version,
                &d.digest[..12],
                started.elapsed().as_secs_f64()
            );
            println!("imports: {}", d.imports.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Starts an execution; with `wait`, repeats the (idempotent) start
    /// until it settles or `wait` has passed.
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
        let mut body = json!({ "input": input, "id": id });
        if let Some(window) = window {
            body["stream"] = json!({ "window": window });
        }
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let path = match left {
                Some(l) if !l.is_zero() => format!(
                    "/v1/workflows/{name}/executions?wait={}ms",
                    l.min(Duration::from_secs(20)).as_millis()
                ),
                _ => format!("/v1/workflows/{name}/executions"),
            };
            let (_, e) = self
                .send::<ExecutionView>(self.request(reqwest::Method::POST, &path).json(&body))
                .await?;
            let settled = e.status != "running"
                && !(e.status == "suspended"
                    && e.wait.as_ref().is_some_and(|w| w.kind != "signal"));
            let out_of_time = deadline.is_none_or(|d| Instant::now() >= d);
            if settled || out_of_time {
                return Ok(self.report(&e, wait.is_some()));
            }
        }
    }

    /// Prints an execution; the exit code says how it stands when the
    /// caller waited for it.
    fn report(&self, e: &ExecutionView, waited: bool) -> ExitCode {
        if self.args.json {
            self.print_json(e);
        } else if waited && e.status == "completed" {
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
        match e.status.as_str() {
            "completed" => ExitCode::SUCCESS,
            "failed" | "cancelled" => {
                if !self.args.json {
                    match &e.error {
                        Some(err) => {
                            eprintln!("execution {} failed ({}): {}", e.id, err.kind, err.message)
                        }
                        None => eprintln!("execution {} was cancelled", e.id),
                    }
                }
                ExitCode::from(EXIT_WORKFLOW_FAILED)
            }
            _ => ExitCode::from(EXIT_SUSPENDED),
        }
    }

    pub async fn status(&self, id: &str) -> Result<ExitCode> {
        let (_, e) = self
            .send::<ExecutionView>(
                self.request(reqwest::Method::GET, &format!("/v1/executions/{id}")),
            )
            .await?;
        Ok(self.report(&e, false))
    }

    pub async fn cancel(&self, id: &str) -> Result<ExitCode> {
        let (_, e) = self
            .send::<ExecutionView>(
                self.request(reqwest::Method::DELETE, &format!("/v1/executions/{id}")),
            )
            .await?;
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
        let (_, v) = self
            .send::<Value>(
                self.request(
                    reqwest::Method::POST,
                    &format!("/v1/executions/{id}/signals/{name}"),
                )
                .json(&json!({ "payload": payload })),
            )
            .await?;
        if self.args.json {
            self.print_json(&v);
        } else {
            println!("sent signal {name:?} to execution {id}");
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Prints the whole journal, fetching it a page at a time.
    pub async fn journal(&self, id: &str) -> Result<ExitCode> {
        let mut entries: Vec<EntryView> = Vec::new();
        let mut after = 0;
        loop {
            let (_, page) = self
                .send::<JournalPage>(self.request(
                    reqwest::Method::GET,
                    &format!("/v1/executions/{id}/journal?after={after}&limit=1000"),
                ))
                .await?;
            entries.extend(page.entries);
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        if self.args.json {
            for e in &entries {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            }
        } else {
            crate::print_journal_rows(entries.iter().map(|e| {
                (
                    e.index,
                    e.kind.as_str(),
                    e.detail.as_str(),
                    e.duration_us,
                    e.size,
                )
            }));
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn ls(
        &self,
        workflows: bool,
        workflow: Option<&str>,
        status: Option<&str>,
    ) -> Result<ExitCode> {
        if workflows {
            let (_, list) = self
                .send::<WorkflowList>(self.request(reqwest::Method::GET, "/v1/workflows"))
                .await?;
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
                    &d.digest[..12],
                    d.imports.len()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut query = vec![("limit".to_string(), "1000".to_string())];
        if let Some(w) = workflow {
            query.push(("workflow".into(), w.into()));
        }
        if let Some(s) = status {
            query.push(("status".into(), s.into()));
        }
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.clone();
            if let Some(c) = &cursor {
                q.push(("cursor".into(), c.clone()));
            }
            let (_, page) = self
                .send::<ExecutionList>(
                    self.request(reqwest::Method::GET, "/v1/executions")
                        .query(&q),
                )
                .await?;
            all.extend(page.executions);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
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
    match &e.wait {
        Some(w) if w.kind == "signal" => format!("signal {:?}", w.signal.as_deref().unwrap_or("")),
        Some(w) if w.kind == "timer" => format!("timer until {}", w.wake_at_ms.unwrap_or(0)),
        Some(w) => w.kind.clone(),
        None => String::new(),
    }
}

fn print_execution(e: &ExecutionView) {
    println!("id:          {}", e.id);
    println!("workflow:    {} ({})", e.workflow, &e.digest[..12]);
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
        println!("error:       {}: {}", err.kind, err.message);
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
