//! The connection to Redis that the store and the work queue share: one
//! Redis (a `ConnectionManager`) or a Redis Cluster (a `ClusterConnection`,
//! routed by slot) behind one `Conn`, TLS with a private CA, timeouts,
//! reconnection in the background, and how a failed call is classified
//! ([`RedisFailure`]). The store and the queue each turn a
//! [`RedisFailure`] into their own error type.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

/// A failed Redis call, grouped by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum RedisFailure {
    /// The configuration cannot work (a malformed URL): fix it.
    #[error("{0}")]
    Invalid(String),
    /// Connection trouble, a timeout, a busy or loading server: retry.
    #[error("{0}")]
    Unavailable(String),
    /// A reply this code cannot read, or a script error: retrying gives
    /// the same answer.
    #[error("{0}")]
    Corrupt(String),
}

/// Connection trouble, timeouts and a busy or loading server are
/// retriable; a reply this code cannot read, or a script error, is not.
impl From<RedisError> for RedisFailure {
    fn from(e: RedisError) -> Self {
        let permanent = matches!(
            e.kind(),
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::InvalidClientConfig
        ) || (e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
            && matches!(e.code(), Some("ERR" | "WRONGTYPE")));
        if permanent {
            RedisFailure::Corrupt(format!("redis: {e}"))
        } else {
            RedisFailure::Unavailable(format!("redis: {e}"))
        }
    }
}

/// Settings of a Redis connection, shared by the store
/// ([`crate::store::RedisStore`]) and the work queue.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prefix of every key, so several deployments can share one Redis.
    pub prefix: String,
    /// Tool results larger than this many bytes are stored once under their
    /// sha256 and referenced from the journal.
    pub blob_threshold: usize,
    /// Large values move to and from Redis in pieces of this size, so the
    /// host never holds a second copy of one.
    pub blob_chunk: usize,
    /// How long to wait for a connection to Redis.
    pub connection_timeout: Duration,
    /// How long to wait for any one reply before the operation fails as
    /// retriable.
    pub response_timeout: Duration,
    /// For `rediss://` URLs: the CA certificate (PEM) to trust instead of
    /// the system's roots, for a Redis behind a private CA.
    pub tls_ca: Option<Vec<u8>>,
    /// Talk to a Redis Cluster: the URL is one or more seed nodes, separated
    /// by commas; commands go to the node that owns each key's slot.
    pub cluster: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "reprise".into(),
            blob_threshold: 256 << 10,
            blob_chunk: 1 << 20,
            connection_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            tls_ca: None,
            cluster: false,
        }
    }
}

/// A connection to one Redis or to a Redis Cluster; both reconnect in the
/// background after an outage.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One endpoint.
    Single(ConnectionManager),
    /// A cluster, routed by slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Every key matching `pattern`: one `SCAN` walk on one Redis, one per
    /// primary on a cluster.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, RedisFailure> {
        let nodes: Vec<Option<(String, u16)>> = match self {
            Conn::Single(_) => vec![None],
            Conn::Cluster(c) => primaries(&mut c.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut out = Vec::new();
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply: Value = match (&node, self) {
                    (Some((host, port)), Conn::Cluster(c)) => c
                        .clone()
                        .route_command(
                            cmd,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            }),
                        )
                        .await
                        .map_err(RedisFailure::from)?,
                    _ => cmd
                        .query_async(&mut self.clone())
                        .await
                        .map_err(RedisFailure::from)?,
                };
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|e| RedisFailure::Corrupt(format!("redis: SCAN: {e}")))?;
                out.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }
}

/// A client for one node: `url`, or its first seed node on a cluster
/// (classic pub/sub reaches every node of a cluster from any one).
pub(crate) fn client(url: &str, options: &RedisOptions) -> Result<redis::Client, RedisFailure> {
    let url = url.split(',').next().unwrap_or_default().trim();
    let invalid =
        |e: RedisError| RedisFailure::Invalid(format!("invalid Redis URL ({:?})", e.kind()));
    match &options.tls_ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        )
        .map_err(invalid),
        None => redis::Client::open(url).map_err(invalid),
    }
}

/// The primaries of a cluster, from `CLUSTER NODES`.
async fn primaries(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RedisFailure> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(conn)
        .await
        .map_err(RedisFailure::from)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // <id> <ip:port@cport[,hostname]> <flags> ...
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        let addr = addr.split(['@', ',']).next().unwrap_or_default();
        if let Some((host, port)) = addr.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            out.push((host.to_string(), port));
        }
    }
    if out.is_empty() {
        return Err(RedisFailure::Unavailable(
            "redis: CLUSTER NODES lists no primary".into(),
        ));
    }
    Ok(out)
}

/// A connection to the Redis at `url` with `options`' TLS and timeouts,
/// re-established in the background after an outage. Shared by the store
/// and the work queue (which needs its own for blocking reads).
pub(crate) async fn connection(url: &str, options: &RedisOptions) -> Result<Conn, RedisFailure> {
    if url.contains("rediss://") {
        // rustls needs a process-wide crypto provider; another part of
        // the process may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    // The URL may hold a password: never echo it.
    let invalid =
        |e: RedisError| RedisFailure::Invalid(format!("invalid Redis URL ({:?})", e.kind()));
    let certs = options.tls_ca.as_ref().map(|ca| redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.clone()),
    });
    if options.cluster {
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(options.connection_timeout)
            .response_timeout(options.response_timeout)
            .retries(2);
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(invalid)?;
        return client
            .get_async_connection()
            .await
            .map(Conn::Cluster)
            .map_err(|e| {
                RedisFailure::Unavailable(format!("cannot connect to the Redis Cluster: {e}"))
            });
    }
    let client = client(url, options)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connection_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map(Conn::Single)
        .map_err(|e| RedisFailure::Unavailable(format!("cannot connect to Redis: {e}")))
}
