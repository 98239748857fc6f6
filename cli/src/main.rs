//! `reprise`: serve workflows over HTTP (`serve`), talk to such a host
//! (`deploy`, `start`, `status`, `signal`, `journal`, `cancel`, `ls`), run
//! a component locally (`run`, `resume`) on the embedded store or on Redis,
//! or make one (`new` for Rust, `build` for JavaScript).
//!
//! Exit codes: 0 success; 1 the request failed (server error, unreachable
//! host, store error); 2 usage error (bad arguments or input); 3 the
//! workflow failed or was cancelled; 4 the execution has not ended (it waits
//! for a signal, or `--wait` ran out).

mod build;
mod client;
mod malloc;
mod new;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use client::{CliError, Client, ClientArgs, parse_wait};
use reprise_host::journal::Entry;
use reprise_host::queue::{Message, QueueOptions, RedisQueue};
use reprise_host::server::{self, Server, config::ServeConfig};
use reprise_host::store::{RedisOptions, RedisStore};
use reprise_host::stream::StreamOptions;
use reprise_host::{
    Budget, EmbeddedStore, ExecutionId, ExecutionRecord, MemoryStore, Outcome, Runtime,
    RuntimeConfig, Status, Store, StreamConfig, Wait, WorkflowEngine,
};

/// Exit code when a request failed (server, network or store).
const EXIT_SERVER: u8 = 1;
/// Exit code for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit code when the workflow failed or was cancelled.
const EXIT_WORKFLOW_FAILED: u8 = 3;
/// Exit code when the execution has not ended.
const EXIT_SUSPENDED: u8 = 4;

#[derive(Parser)]
#[command(
    name = "reprise",
    version,
    about = "Durable workflows as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Store file (redb). Without it (and without --redis), `run` keeps
    /// everything in memory.
    #[arg(long, env = "REPRISE_STORE", conflicts_with = "redis")]
    store: Option<PathBuf>,
    /// Redis URL: `redis://[:password@]host:port[/db]`, `rediss://` for TLS,
    /// or `redis+unix:///path/to/socket[?pass=password]`.
    #[arg(long, env = "REPRISE_REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// CA certificate (PEM file) to trust for a `rediss://` URL, instead of
    /// the system's roots.
    #[arg(
        long,
        env = "REPRISE_REDIS_CA",
        value_name = "FILE",
        requires = "redis"
    )]
    redis_ca: Option<PathBuf>,
    /// Keep finished executions this many hours (0: forever).
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    retention_hours: u64,
}

/// How `run` and `resume` run the workflow here.
#[derive(clap::Args)]
struct LocalArgs {
    /// The `reprise serve` config file whose `[tools]` (webhooks, `http`)
    /// and `[limits]` apply; its other keys (listen, auth, store) are not
    /// used here. Secrets it names come from the environment.
    #[arg(long, env = "REPRISE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// End each invocation after this many new journal entries and resume
    /// in a fresh instance.
    #[arg(long)]
    max_steps: Option<u32>,
    /// End each invocation after this many milliseconds (checked at each
    /// journaled call) and resume in a fresh instance.
    #[arg(long)]
    max_time_ms: Option<u64>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (see README: every key, with its default).
    #[arg(long, env = "REPRISE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "REPRISE_LISTEN", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Directory of the embedded store [default: ./reprise-data].
    #[arg(long, env = "REPRISE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Redis URL: use Redis as the store instead of the data directory.
    #[arg(long, env = "REPRISE_REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// CA certificate (PEM file) to trust for a `rediss://` URL.
    #[arg(long, env = "REPRISE_REDIS_CA", value_name = "FILE")]
    redis_ca: Option<PathBuf>,
    /// The Redis URL lists seed nodes of a Redis Cluster (comma-separated).
    #[arg(long, env = "REPRISE_REDIS_CLUSTER")]
    redis_cluster: bool,
    /// Take work from this Redis stream, shared with other hosts (needs
    /// --redis; `[queue]` in the config file has the other settings).
    #[arg(long, env = "REPRISE_QUEUE", value_name = "STREAM")]
    queue: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new workflow crate at PATH, named after its last component:
    /// a workflow with one tool call, native tests, a README, and the SDK
    /// of this release under vendor/. Refuses a PATH that exists.
    New {
        /// Where to create it (e.g. `hello` or `flows/hello`).
        path: PathBuf,
    },
    /// Build a JavaScript or TypeScript workflow (a module exporting
    /// `function* workflow(input)`) into a component. Needs Node 18+; the
    /// first build installs the SDK's locked toolchain into a cache.
    Build {
        /// The workflow module (.js, .mjs or .ts).
        file: PathBuf,
        /// The component to write [default: FILE with the extension .wasm].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// An installed JS SDK directory to build with (e.g. `guest-sdk/js`
        /// after `npm ci`) instead of the cached toolchain.
        #[arg(long, env = "REPRISE_JS_TOOLCHAIN", value_name = "DIR")]
        toolchain: Option<PathBuf>,
    },
    /// Run a host: the HTTP API on the embedded store (or Redis).
    Serve(ServeArgs),
    /// Deploy a component to a host under a name.
    Deploy {
        /// Workflow name.
        name: String,
        /// The component (.wasm).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start an execution on a host.
    Start {
        /// Workflow name.
        name: String,
        /// Input as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// Execution id (default: generated). Starting the same id twice
        /// starts once.
        #[arg(long)]
        id: Option<String>,
        /// Wait for the result, up to this long (default 60s); exit 4 if it
        /// has not ended by then.
        #[arg(long, num_args = 0..=1, default_missing_value = "60s", value_name = "DURATION")]
        wait: Option<String>,
        /// Start it as a stream paced by its consumers: it runs at most this
        /// many items ahead of what they have read, and is cancelled once
        /// they have all left (read it with `reprise stream`).
        #[arg(long, value_name = "ITEMS")]
        window: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an execution.
    Status {
        /// Execution id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print an execution's output stream, one JSON item per line, as it
    /// is produced; exits 0 when the workflow completed, 3 if it failed or
    /// was cancelled. Stopping it (Ctrl-C) closes its consumer session.
    Stream {
        /// Execution id.
        id: String,
        /// Items per request.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Start after this offset (default: from the first item).
        #[arg(long)]
        after: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a signal to an execution.
    Signal {
        /// Execution id.
        id: String,
        /// Signal name.
        name: String,
        /// Payload as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List executions, newest first by their last status change, a page
    /// at a time (or, with --workflows, deployed workflows).
    Ls {
        /// List deployed workflows instead.
        #[arg(long)]
        workflows: bool,
        /// Only executions of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only executions with this status.
        #[arg(long)]
        status: Option<String>,
        /// Executions per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after a previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Oldest first.
        #[arg(long)]
        oldest: bool,
        /// Every page, not just the first.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy a component and run one execution of it to the end.
    Run {
        /// The workflow component (.wasm).
        component: PathBuf,
        /// Input as JSON (converted to MessagePack for the workflow).
        #[arg(long, default_value = "null")]
        input: String,
        /// Execution id (default: generated).
        #[arg(long)]
        id: Option<String>,
        /// Print the journal after the result.
        #[arg(long)]
        journal: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Continue an execution left unfinished in a store file.
    Resume {
        /// Execution id.
        id: String,
        /// Print the journal after the result.
        #[arg(long)]
        journal: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Cancel an execution that has not ended: it is never run again.
    Cancel {
        /// Execution id.
        id: String,
        /// Leave its unfinished child executions running (by default they
        /// are cancelled with it).
        #[arg(long)]
        keep_children: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start an execution through a host's work queue (a Redis stream),
    /// without going through a host's HTTP API. Prints the message's entry
    /// id and the execution id.
    Enqueue {
        /// Workflow name.
        name: String,
        /// Input as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// Execution id (default: generated). Enqueueing the same id twice
        /// starts once.
        #[arg(long)]
        id: Option<String>,
        /// Start it as a stream paced by its consumers, as `reprise start
        /// --window` does.
        #[arg(long, value_name = "ITEMS")]
        window: Option<u64>,
        /// Redis URL of the hosts' store.
        #[arg(long, env = "REPRISE_REDIS_URL", value_name = "URL")]
        redis: String,
        /// The stream the hosts read.
        #[arg(
            long,
            env = "REPRISE_QUEUE",
            value_name = "STREAM",
            default_value = "reprise:queue"
        )]
        queue: String,
        /// The Redis URL lists seed nodes of a Redis Cluster.
        #[arg(long, env = "REPRISE_REDIS_CLUSTER")]
        redis_cluster: bool,
    },
    /// Delete a finished (completed, failed or cancelled) execution and its
    /// journal now, without waiting for it to expire.
    Delete {
        /// Execution id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print an execution's journal, from a host, or with --store or
    /// --redis straight from a store.
    Journal {
        /// Execution id.
        id: String,
        /// Show each entry's input and value (JSON where they are
        /// MessagePack, hex where not; a value over 64 KiB, or a tool's
        /// input, which the journal does not keep, by size and digest).
        #[arg(long)]
        values: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<CliError>() {
                Some(c) => c.exit_code(),
                None => ExitCode::from(EXIT_SERVER),
            }
        }
    }
}

async fn open_store(args: &StoreArgs, required: bool) -> Result<Arc<dyn Store>> {
    if let Some(url) = &args.redis {
        let tls_ca = match &args.redis_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read --redis-ca {}", path.display()))?,
            ),
            None => None,
        };
        let options = RedisOptions {
            tls_ca,
            ..RedisOptions::default()
        };
        let store = RedisStore::connect(url, options).await?;
        return Ok(Arc::new(store));
    }
    match &args.store {
        Some(path) => Ok(Arc::new(EmbeddedStore::open(path)?)),
        None if required => bail!(
            "this command needs a store: --store <file> (or REPRISE_STORE) or --redis <url> \
             (or REPRISE_REDIS_URL)"
        ),
        None => Ok(Arc::new(MemoryStore::new())),
    }
}

/// A runtime in this process: the tools and limits of `--config` (the
/// built-in tools and default limits without it), the budget and
/// retention of the flags.
fn runtime(store: Arc<dyn Store>, args: &StoreArgs, local: &LocalArgs) -> Result<Runtime> {
    let mut file = serve::load_config(local.config.as_deref())?;
    file.resolve_env(|var| std::env::var(var).ok())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let tools = server::tools_from(&file.tools).map_err(|e| CliError::Usage(e.to_string()))?;
    if file.compiled_dir.is_none() {
        file.compiled_dir = dirs::cache_dir().map(|d| d.join("reprise").join("compiled"));
    }
    let engine = WorkflowEngine::new(server::engine_config(&file))
        .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    let base = server::runtime_config(&file);
    let config = RuntimeConfig {
        budget: Budget {
            max_steps: local.max_steps.or(base.budget.max_steps),
            max_time: local.max_time_ms.map(Duration::from_millis),
        },
        retention: (args.retention_hours > 0)
            .then(|| Duration::from_secs(args.retention_hours.saturating_mul(3600))),
        ..base
    };
    Ok(Runtime::new(Arc::new(engine), store, tools, config))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::New { path } => {
            let name = match new::create(&path) {
                Ok(name) => name,
                Err(e @ new::NewError::Io { .. }) => return Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            let wasm = name.replace('-', "_");
            println!(
                "created workflow `{name}` in {dir}\n\n\
                 cd {dir}\n\
                 cargo test\n\
                 cargo build --release --target wasm32-wasip2\n\
                 reprise run target/wasm32-wasip2/release/{wasm}.wasm --input '{{\"user_id\": 7}}'",
                dir = path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Build {
            file,
            output,
            toolchain,
        } => {
            let output = output.unwrap_or_else(|| file.with_extension("wasm"));
            match build::build(&file, &output, toolchain.as_deref()) {
                Ok(()) => {
                    println!("built {}", output.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    let usage = matches!(e, build::BuildError::Workflow(_));
                    Ok(ExitCode::from(if usage { EXIT_USAGE } else { EXIT_SERVER }))
                }
            }
        }
        Command::Serve(args) => serve::serve(args).await,
        Command::Deploy { name, file, client } => Client::new(client)?.deploy(&name, &file).await,
        Command::Start {
            name,
            input,
            id,
            wait,
            window,
            client,
        } => {
            let wait = wait.as_deref().map(parse_wait).transpose()?;
            Client::new(client)?
                .start(&name, &input, id, wait, window)
                .await
        }
        Command::Status { id, client } => Client::new(client)?.status(&id).await,
        Command::Stream {
            id,
            batch,
            after,
            client,
        } => Client::new(client)?.stream(&id, batch, after).await,
        Command::Signal {
            id,
            name,
            payload,
            client,
        } => Client::new(client)?.signal(&id, &name, &payload).await,
        Command::Ls {
            workflows,
            workflow,
            status,
            limit,
            cursor,
            oldest,
            all,
            client,
        } => {
            let params = reprise_client::ListParams {
                workflow,
                status,
                limit: Some(limit),
                cursor,
                order: oldest.then(|| "oldest".to_string()),
                ..reprise_client::ListParams::default()
            };
            Client::new(client)?.ls(workflows, params, all).await
        }
        Command::Cancel {
            id,
            keep_children,
            client,
        } => Client::new(client)?.cancel(&id, keep_children).await,
        Command::Run {
            component,
            input,
            id,
            journal,
            store,
            local,
        } => {
            let input: serde_json::Value = serde_json::from_str(&input)
                .map_err(|e| CliError::Usage(format!("--input is not valid JSON: {e}")))?;
            let input = rmp_serde::to_vec_named(&input)?;
            let bytes = std::fs::read(&component).map_err(|e| {
                CliError::Usage(format!("cannot read {}: {e}", component.display()))
            })?;
            let rt = runtime(open_store(&store, false).await?, &store, &local)?;
            let name = workflow_name(&component);
            let deployment = rt.deploy(&name, bytes).await?;
            tracing::info!(workflow = name, digest = %deployment.digest, "deployed");
            let id = id.map(ExecutionId::new).transpose()?;
            let id = rt.start(&name, input, id).await?;
            finish(&rt, &id, journal).await
        }
        Command::Resume {
            id,
            journal,
            store,
            local,
        } => {
            let id = ExecutionId::new(id)?;
            let rt = runtime(open_store(&store, true).await?, &store, &local)?;
            rt.resume(&id).await?;
            finish(&rt, &id, journal).await
        }
        Command::Enqueue {
            name,
            input,
            id,
            window,
            redis,
            queue,
            redis_cluster,
        } => {
            serde_json::from_str::<serde_json::Value>(&input)
                .map_err(|e| CliError::Usage(format!("--input is not valid JSON: {e}")))?;
            let id = ExecutionId::new(id.unwrap_or_else(|| ExecutionId::generate().to_string()))?;
            let stream = window.map(|w| StreamOptions {
                window: Some(w),
                ..StreamOptions::default()
            });
            if let Some(s) = &stream {
                reprise_host::stream::policy(s, &StreamConfig::default())
                    .map_err(|e| CliError::Usage(format!("--window: {e}")))?;
            }
            let options = QueueOptions {
                stream: queue,
                ..QueueOptions::default()
            };
            let redis_options = RedisOptions {
                cluster: redis_cluster,
                ..RedisOptions::default()
            };
            let queue = RedisQueue::connect(&redis, &redis_options, options).await?;
            let entry = queue
                .enqueue(&Message::Start {
                    workflow: name,
                    input,
                    id: Some(id.clone()),
                    stream,
                    traceparent: std::env::var("TRACEPARENT").ok(),
                })
                .await?;
            println!("queued {entry}: execution {id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { id, store } => {
            let id = ExecutionId::new(id)?;
            open_store(&store, true)
                .await?
                .delete_execution(&id)
                .await?;
            println!("deleted execution {id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal {
            id,
            values,
            client,
            store,
        } => {
            if store.store.is_none() && store.redis.is_none() {
                return Client::new(client)?.journal(&id, values).await;
            }
            let id = ExecutionId::new(id)?;
            let store = open_store(&store, true).await?;
            let snapshot = store.load(&id).await?;
            print_journal(&snapshot.journal, client.json, values);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The workflow name for a component file: its stem, made safe.
fn workflow_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "workflow".into()
    } else {
        name
    }
}

/// Waits until the execution ends or waits for a signal, and reports it.
async fn finish(rt: &Runtime, id: &ExecutionId, journal: bool) -> Result<ExitCode> {
    let rec = rt.wait_settled(id).await?;
    let code = report(&rec);
    if journal {
        print_journal(&rt.journal(id).await?, false, false);
    }
    Ok(code)
}

fn report(rec: &ExecutionRecord) -> ExitCode {
    match (&rec.status, &rec.outcome) {
        (Status::Completed, Some(Outcome::Completed(out))) => {
            println!("{}", payload_json(out));
            ExitCode::SUCCESS
        }
        (_, Some(Outcome::Failed(f))) => {
            match &f.details {
                Some(d) => eprintln!(
                    "execution {} failed: {f} (details: {})",
                    rec.id,
                    reprise_host::server::api::payload_json(d)
                ),
                None => eprintln!("execution {} failed: {f}", rec.id),
            }
            ExitCode::from(EXIT_WORKFLOW_FAILED)
        }
        (_, Some(Outcome::Cancelled)) => {
            eprintln!("execution {} was cancelled", rec.id);
            ExitCode::from(EXIT_WORKFLOW_FAILED)
        }
        _ => {
            let waiting = match &rec.wait {
                Some(Wait::Signal { name }) => format!("waits for signal {name:?}"),
                Some(w) => format!("is suspended ({w})"),
                None => format!("is {}", rec.status),
            };
            eprintln!(
                "execution {} {waiting}; with a store file or Redis, continue it later \
                 with `reprise resume {} --store <file>` (or `--redis <url>`)",
                rec.id, rec.id
            );
            ExitCode::from(EXIT_SUSPENDED)
        }
    }
}

/// A MessagePack payload as pretty JSON (hex if it is not MessagePack).
fn payload_json(bytes: &[u8]) -> String {
    match rmp_serde::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Err(_) => serde_json::json!({ "hex": hex::encode(bytes) }).to_string(),
    }
}

fn print_journal(journal: &[Entry], json: bool, values: bool) {
    let entries: Vec<_> = journal
        .iter()
        .enumerate()
        .map(|(i, e)| server::api::values::entry_view(i as u64, e, values))
        .collect();
    print_entries(&entries, json);
}

/// Prints journal entries: JSON lines, or a table whose last column is the
/// detail (so a long error does not push the others out of line), with
/// each entry's input and value under it when the entries carry them.
fn print_entries(entries: &[reprise_client::api::EntryView], json: bool) {
    if json {
        for e in entries {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return;
    }
    println!(
        "{:>5}  {:<10}  {:>10}  {:>9}  tool / detail",
        "index", "kind", "duration", "size"
    );
    for e in entries {
        println!(
            "{:>5}  {:<10}  {:>10}  {:>9}  {}",
            e.index,
            e.kind,
            format!("{:.3} ms", e.duration_us as f64 / 1000.0),
            format!("{} B", e.size),
            e.detail,
        );
        for (label, value) in [("input", &e.input), ("result", &e.result)] {
            if let Some(v) = value {
                println!("{:>7}{label}: {}", "", value_text(v));
            }
        }
    }
}

/// A value on one line: its JSON (cut at 200 characters), its hex, or its
/// size and digest.
fn value_text(v: &reprise_client::api::ValueView) -> String {
    const MAX: usize = 200;
    let digest = v.digest.as_deref().map_or(String::new(), |d| {
        format!(", sha256 {}", &d[..d.len().min(12)])
    });
    let shown = match (&v.json, &v.hex) {
        (Some(json), _) => json.to_string(),
        (None, Some(hex)) => format!("hex {hex}"),
        (None, None) => return format!("({} B{digest}, not shown)", v.size),
    };
    if shown.chars().count() > MAX {
        let cut: String = shown.chars().take(MAX).collect();
        format!("{cut}... ({} B{digest})", v.size)
    } else {
        shown
    }
}
