//! `reprise serve`: the config file, then environment variables and flags
//! over it; the secrets it names resolved from the environment; the store,
//! the runtime (with the work queue when configured), recovery of what a
//! previous process left; the HTTP API until SIGTERM or Ctrl-C, then a
//! graceful drain.

use super::*;

/// The config file at `path` (the defaults without one). Its secrets are
/// not resolved yet: flags may still change what it names.
pub fn load_config(path: Option<&Path>) -> Result<ServeConfig> {
    Ok(match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("cannot read config file {}: {e}", path.display()))
            })?;
            ServeConfig::from_toml(&text)
                .map_err(|e| CliError::Usage(format!("config file {}: {e}", path.display())))?
        }
        None => ServeConfig::default(),
    })
}

/// `reprise serve`: config file, then environment and flags; the store;
/// the runtime, recovering what a previous process left; the HTTP API until
/// SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = args.redis {
        config.redis = Some(url);
    }
    if let Some(ca) = args.redis_ca {
        config.redis_ca = Some(ca);
    }
    if args.redis_cluster {
        config.redis_cluster = true;
    }
    if let Some(stream) = args.queue {
        config.queue.stream = Some(stream);
    }
    // Secrets named by variable come from this process's environment.
    config
        .resolve_env(|var| std::env::var(var).ok())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let queue_options =
        server::queue_options(&config).map_err(|e| CliError::Usage(e.to_string()))?;
    let tools = server::tools_from(&config.tools).map_err(|e| CliError::Usage(e.to_string()))?;
    let tls_ca = match &config.redis_ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            CliError::Usage(format!("cannot read redis_ca {}: {e}", path.display()))
        })?),
        None => None,
    };
    let redis_options = RedisOptions {
        tls_ca,
        cluster: config.redis_cluster,
        ..RedisOptions::default()
    };
    let store: Arc<dyn Store> = match &config.redis {
        Some(url) => Arc::new(RedisStore::connect(url, redis_options.clone()).await?),
        None => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
            Arc::new(EmbeddedStore::open_with_cache(
                config.data_dir.join("reprise.redb"),
                config.store_cache_bytes,
            )?)
        }
    };
    if config.compiled_dir.is_none() {
        config.compiled_dir = Some(config.data_dir.join("compiled"));
    }
    let engine = WorkflowEngine::new(server::engine_config(&config))
        .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
    let telemetry = config
        .telemetry
        .telemetry()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    let mut builder = Runtime::builder(Arc::new(engine), store)
        .tools(tools)
        .telemetry(telemetry.clone())
        .config(server::runtime_config(&config));
    if let (Some(options), Some(url)) = (queue_options, &config.redis) {
        let stream = options.stream.clone();
        builder = builder.queue(RedisQueue::connect(url, &redis_options, options).await?);
        tracing::info!(%stream, "taking work from the queue");
    }
    let runtime = Arc::new(builder.build()?);
    let recovered = runtime.recover().await?;
    if recovered > 0 {
        tracing::info!(recovered, "resumed executions left by a previous process");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let where_ = match (&config.redis, &config.queue.stream) {
        (Some(_), Some(stream)) => format!("Redis, queue {stream}"),
        (Some(_), None) => "Redis".to_string(),
        (None, _) => config.data_dir.display().to_string(),
    };
    let server = Server::new(config, runtime).map_err(|e| CliError::Usage(e.to_string()))?;
    let stop = shutdown_signal()?;
    eprintln!("reprise listening on http://{addr} (store: {where_})");
    server.serve(listener, stop).await?;
    // The spans of the last invocations, before the exporter goes.
    tokio::task::spawn_blocking(move || telemetry.flush()).await?;
    eprintln!("reprise stopped");
    Ok(ExitCode::SUCCESS)
}

/// Registers for SIGTERM and Ctrl-C at once, so a signal that comes right
/// after the listen line is not left to the default action (an abrupt
/// exit), and returns a future that completes on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
