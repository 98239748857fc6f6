//! `reprise`: run workflow components locally, on the embedded store or on
//! Redis.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use reprise_host::journal::{Entry, EntryKind};
use reprise_host::store::{RedisOptions, RedisStore};
use reprise_host::{
    Budget, EmbeddedStore, EngineConfig, ExecutionId, ExecutionRecord, Outcome, Runtime,
    RuntimeConfig, Status, Store, ToolRegistry, Wait, WorkflowEngine,
};

/// Exit code when the workflow failed or was cancelled.
const EXIT_WORKFLOW_FAILED: u8 = 3;
/// Exit code when the execution waits for a signal.
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
    /// Keep finished executions this many hours before deleting them
    /// (0 keeps them forever).
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    retention_hours: u64,
}

#[derive(clap::Args)]
struct BudgetArgs {
    /// End each invocation after this many new journal entries and resume
    /// in a fresh instance.
    #[arg(long)]
    max_steps: Option<u32>,
    /// End each invocation after this many milliseconds (checked at each
    /// journaled call) and resume in a fresh instance.
    #[arg(long)]
    max_time_ms: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
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
        budget: BudgetArgs,
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
        budget: BudgetArgs,
    },
    /// Cancel an execution that has not ended: it is never run again.
    Cancel {
        /// Execution id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a finished (completed, failed or cancelled) execution and its
    /// journal now, without waiting for it to expire.
    Delete {
        /// Execution id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print an execution's journal.
    Journal {
        /// Execution id.
        id: String,
        /// One JSON object per entry instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
            ExitCode::FAILURE
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
        None => Ok(Arc::new(EmbeddedStore::in_memory())),
    }
}

fn runtime(store: Arc<dyn Store>, args: &StoreArgs, budget: &BudgetArgs) -> Result<Runtime> {
    let engine = WorkflowEngine::new(EngineConfig::default())
        .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    let config = RuntimeConfig {
        budget: Budget {
            max_steps: budget.max_steps,
            max_time: budget.max_time_ms.map(Duration::from_millis),
        },
        retention: (args.retention_hours > 0)
            .then(|| Duration::from_secs(args.retention_hours.saturating_mul(3600))),
        ..RuntimeConfig::default()
    };
    Ok(Runtime::new(
        Arc::new(engine),
        store,
        ToolRegistry::with_builtins(),
        config,
    ))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            component,
            input,
            id,
            journal,
            store,
            budget,
        } => {
            let input: serde_json::Value =
                serde_json::from_str(&input).context("--input is not valid JSON")?;
            let input = rmp_serde::to_vec_named(&input)?;
            let bytes = std::fs::read(&component)
                .with_context(|| format!("cannot read {}", component.display()))?;
            let rt = runtime(open_store(&store, false).await?, &store, &budget)?;
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
            budget,
        } => {
            let id = ExecutionId::new(id)?;
            let rt = runtime(open_store(&store, true).await?, &store, &budget)?;
            rt.resume(&id).await?;
            finish(&rt, &id, journal).await
        }
        Command::Cancel { id, store } => {
            let id = ExecutionId::new(id)?;
            let rec = open_store(&store, true).await?.cancel(&id).await?;
            println!(
                "cancelled execution {} ({} journal entries)",
                rec.id, rec.journal_len
            );
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
        Command::Journal { id, json, store } => {
            let id = ExecutionId::new(id)?;
            let store = open_store(&store, true).await?;
            let snapshot = store.load(&id).await?;
            print_journal(&snapshot.journal, json);
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
        print_journal(&rt.journal(id).await?, false);
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
            eprintln!("execution {} failed: {f}", rec.id);
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

fn describe(kind: &EntryKind) -> String {
    match kind {
        EntryKind::Tool {
            category,
            name,
            result,
            ..
        } => match result {
            Ok(_) => format!("{category}/{name}"),
            Err(e) => format!("{category}/{name} -> error {}: {}", e.code, e.message),
        },
        EntryKind::ToolStored {
            category,
            name,
            result_digest,
            ..
        } => format!("{category}/{name} (stored as {result_digest})"),
        EntryKind::Sleep {
            duration_ms,
            wake_at_ms,
        } => format!("{duration_ms} ms, until {wake_at_ms}"),
        EntryKind::Signal { name, seq, .. } => format!("{name} (#{seq})"),
        EntryKind::Now { value } => value.to_string(),
        EntryKind::Random { value } => value.to_string(),
        EntryKind::Emit { .. } | EntryKind::Checkpoint => String::new(),
    }
}

fn print_journal(journal: &[Entry], json: bool) {
    if json {
        for (i, e) in journal.iter().enumerate() {
            let line = serde_json::json!({
                "index": i,
                "kind": e.kind.label(),
                "detail": describe(&e.kind),
                "at_ms": e.at_ms,
                "duration_us": e.duration_us,
                "size": e.kind.value_len(),
            });
            println!("{line}");
        }
        return;
    }
    println!(
        "{:>5}  {:<10}  {:<40}  {:>10}  {:>9}",
        "index", "kind", "tool / detail", "duration", "size"
    );
    for (i, e) in journal.iter().enumerate() {
        println!(
            "{:>5}  {:<10}  {:<40}  {:>10}  {:>9}",
            i,
            e.kind.label(),
            describe(&e.kind),
            format!("{:.3} ms", e.duration_us as f64 / 1000.0),
            format!("{} B", e.kind.value_len()),
        );
    }
}
