//! The Redis store: the production backend, shared by many hosts.
//!
//! Layout (ARCHITECTURE.md has the full table). Every key of one execution
//! carries the hash tag `{<id>}`, so an execution lives in one Redis Cluster
//! slot and each of its operations is one Lua script, atomic on the server:
//!
//! - `P:x:{id}` hash: the record (`meta` = encoded immutable part, `st`,
//!   `wait`, `out`, `inv`, `tok`, lease `lo`/`lt`/`le`, `upd`);
//! - `P:j:{id}` list: the journal, one encoded [`Entry`] per element;
//! - `P:s:{id}`, `P:sk:{id}` lists: signal payloads and names, by sequence;
//!   `P:sc:{id}` hash: signals received per name;
//! - `P:b:{id}` list: digests of the stored values the journal refers to;
//! - `P:i:{id}` list: the items emitted, by offset;
//! - `P:c:{id}` hash: consumer sessions, `acked|last access|closed` by
//!   session id.
//!
//! Values shared across executions live under their own keys: components
//! (`P:component:<hex>`), the deployment table (`P:deployments`), the index
//! of finished executions by end time (`P:finished`, a sorted set), and
//! large tool results (`P:blob:{<hex>}` with reference count
//! `P:blobref:{<hex>}`).
//!
//! An append is one `EVALSHA` (the lease's fencing token, its expiry and the
//! expected index are checked, the entry pushed: four commands, one write,
//! as lean as the check allows); loading an execution with its whole
//! journal is one `EVALSHA` whatever the journal's length. Lease expiry uses
//! the Redis server's clock, so hosts with skewed clocks still agree.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture};
use redis::{ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind, Value};
use serde::{Deserialize, Serialize};

use super::{
    Created, Delivered, DeploymentVersion, ItemsPage, Store, StoreError, Suspended, now_ms,
};
use crate::execution::{
    ConsumerSession, ExecutionRecord, Lease, Outcome, SignalRecord, Snapshot, Status, StreamPolicy,
    Wait,
};
use crate::ids::{Digest, ExecutionId};
use crate::journal::{Entry, EntryKind};
use crate::persist::{decode, encode};

/// Settings of a [`RedisStore`].
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

/// A store in Redis; see the module documentation for the layout.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    options: RedisOptions,
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
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
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
                        .map_err(redis_err)?,
                    _ => cmd
                        .query_async(&mut self.clone())
                        .await
                        .map_err(redis_err)?,
                };
                let (next, keys): (u64, Vec<String>) = parse(reply, "SCAN")?;
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
pub(crate) fn client(url: &str, options: &RedisOptions) -> Result<redis::Client, StoreError> {
    let url = url.split(',').next().unwrap_or_default().trim();
    let invalid =
        |e: RedisError| StoreError::Invalid(format!("invalid Redis URL ({:?})", e.kind()));
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
async fn primaries(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(conn)
        .await
        .map_err(redis_err)?;
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
        return Err(StoreError::Unavailable(
            "redis: CLUSTER NODES lists no primary".into(),
        ));
    }
    Ok(out)
}

/// The part of a record that never changes, stored encoded in one field.
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Meta {
    id: ExecutionId,
    workflow: String,
    digest: Digest,
    #[serde(with = "serde_bytes")]
    input: Vec<u8>,
    seed: u64,
    created_at_ms: u64,
    #[serde(default)]
    stream: Option<StreamPolicy>,
}

/// Helpers every execution script starts with.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TERMINAL = {completed = true, failed = true, cancelled = true}
-- nil when `x` exists, has not ended and its live lease has `token`;
-- otherwise the reply explaining why not.
local function leased(x, token, now)
  local v = redis.call('HMGET', x, 'st', 'lt', 'le')
  if not v[1] then return {'notfound'} end
  if TERMINAL[v[1]] then return {'terminal', v[1]} end
  if v[2] ~= token or tonumber(v[3]) <= now then return {'leaselost'} end
  return nil
end
"#;

const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {'ok'}
"#;

const GET: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
"#;

const LOAD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('LRANGE', KEYS[4], 0, -1)}
"#;

/// Takes the lease (a live lease of another owner refuses); leaves `tok`
/// and `exp` for the reply.
const TAKE_LEASE: &str = r#"
local now = now_ms()
local v = redis.call('HMGET', KEYS[1], 'st', 'lo', 'le')
if not v[1] then return {'notfound'} end
if TERMINAL[v[1]] then return {'terminal', v[1]} end
if v[2] and v[2] ~= ARGV[1] and tonumber(v[3]) > now then return {'held', v[2], v[3]} end
local tok = redis.call('HINCRBY', KEYS[1], 'tok', 1)
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'lt', tok, 'le', exp, 'st', 'running', 'upd', now)
redis.call('HDEL', KEYS[1], 'wait')
redis.call('HINCRBY', KEYS[1], 'inv', 1)
"#;

const ACQUIRE: &str = r#"
return {'ok', tok, exp}
"#;

/// After TAKE_LEASE, LOAD's reply: an invocation starts with one round trip.
const ACQUIRE_LOAD: &str = r#"
return {'ok', tok, exp, redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('LRANGE', KEYS[4], 0, -1)}
"#;

const RENEW: &str = r#"
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'le', exp)
return {'ok', exp}
"#;

// ARGV: lease token, index, then four per entry: its journal bytes, the
// digest of a value it stored ('' if none), '1' if it emitted an item
// (else '0'), and the item ('' if none).
const APPEND: &str = r#"
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local len = redis.call('LLEN', KEYS[2])
if len ~= tonumber(ARGV[2]) then return {'conflict', len} end
for i = 3, #ARGV, 4 do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  if ARGV[i + 1] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[i + 1]) end
  if ARGV[i + 2] == '1' then redis.call('RPUSH', KEYS[4], ARGV[i + 3]) end
end
return {'ok'}
"#;

const SUSPEND: &str = r#"
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local arrived = ARGV[3] ~= '' and
  tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0') > tonumber(ARGV[4])
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le')
local wait = ARGV[2]
if arrived then wait = ARGV[5] end
redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', wait, 'upd', now)
if arrived then return {'ok', 1} end
return {'ok', 0}
"#;

const FINISH: &str = r#"
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le', 'wait')
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'out', ARGV[3], 'upd', now)
return {'ok'}
"#;

const RELEASE: &str = r#"
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le')
redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', ARGV[2], 'upd', now)
return {'ok'}
"#;

const SIGNAL: &str = r#"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'notfound'} end
if TERMINAL[st] then return {'terminal', st} end
local seq = redis.call('RPUSH', KEYS[2], ARGV[2]) - 1
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
local woke = 0
if st == 'suspended' and redis.call('HGET', KEYS[1], 'wait') == ARGV[3] then
  redis.call('HSET', KEYS[1], 'wait', ARGV[4], 'upd', now_ms())
  woke = 1
end
return {'ok', seq, woke}
"#;

/// The record's existence, the item count, and a range of items.
const ITEMS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('LLEN', KEYS[2]), redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])}
"#;

const NEXT_SIGNAL: &str = r#"
local names = redis.call('LRANGE', KEYS[2], 0, -1)
local skip = tonumber(ARGV[2])
for i, name in ipairs(names) do
  if name == ARGV[1] then
    if skip == 0 then return {'ok', i - 1, redis.call('LINDEX', KEYS[1], i - 1)} end
    skip = skip - 1
  end
end
return {'none'}
"#;

const CANCEL: &str = r#"
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'notfound'} end
if TERMINAL[st] then return {'terminal', st} end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le', 'wait')
redis.call('HSET', KEYS[1], 'st', 'cancelled', 'out', ARGV[1], 'upd', now_ms())
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
"#;

/// Deletes an ended execution; with ARGV[1] set, only if it ended before
/// that time (the retention sweep). Returns the stored values it referred to.
const DELETE: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'st', 'upd')
if not v[1] then return {'notfound'} end
if not TERMINAL[v[1]] then return {'active', v[1]} end
if ARGV[1] ~= '' and tonumber(v[2]) >= tonumber(ARGV[1]) then return {'kept'} end
local blobs = redis.call('LRANGE', KEYS[6], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
return {'ok', blobs}
"#;

/// Touches consumer session ARGV[1] (KEYS[2]) of execution KEYS[1]: read
/// up to offset ARGV[2] (-1: none). A session is `acked|last|closed`;
/// a closed one is left as it is. With ARGV[3] = 'close', closes it.
const SESSION: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local v = redis.call('HGET', KEYS[2], ARGV[1])
local acked, closed = -1, '0'
if v then
  local a, _, c = string.match(v, '^(-?%d+)|(%d+)|(%d)$')
  acked, closed = tonumber(a), c
elseif ARGV[3] == 'close' then
  return {'ok', false}
end
if closed == '0' then
  if ARGV[3] == 'close' then closed = '1' end
  local n = tonumber(ARGV[2])
  if n > acked then acked = n end
  v = string.format('%d|%d|%s', acked, now_ms(), closed)
  redis.call('HSET', KEYS[2], ARGV[1], v)
end
return {'ok', v}
"#;

/// Every session of execution KEYS[1] (hash KEYS[2]).
const SESSIONS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[2])}
"#;

/// Takes a reference to a stored value; tells whether its bytes are there.
/// The count goes up first, so a concurrent release cannot delete them.
const BLOB_REF: &str = r#"
redis.call('INCR', KEYS[1])
return redis.call('EXISTS', KEYS[2])
"#;

/// Drops a reference; the last one deletes the bytes.
const BLOB_UNREF: &str = r#"
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"#;

/// Moves an uploaded value into place unless an identical one got there
/// first.
const BLOB_COMMIT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return {'ok'}
end
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return {'short'} end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
return {'ok'}
"#;

/// Points a name at a digest and adds a version, unless it points there
/// already. KEYS: deployments hash, the name's version list (same slot
/// through its hash tag). ARGV: name, digest hex, encoded version.
/// Returns the version number and the encoded current version.
const DEPLOY: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local n = redis.call('LLEN', KEYS[2])
if cur == ARGV[2] and n > 0 then
  return {n, redis.call('LINDEX', KEYS[2], -1)}
end
n = redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {n, ARGV[3]}
"#;

/// The scripts, compiled (hashed) once per process.
struct Scripts {
    create: Script,
    get: Script,
    load: Script,
    acquire: Script,
    acquire_load: Script,
    renew: Script,
    append: Script,
    suspend: Script,
    finish: Script,
    release: Script,
    signal: Script,
    next_signal: Script,
    items: Script,
    session: Script,
    sessions: Script,
    cancel: Script,
    delete: Script,
    blob_ref: Script,
    blob_unref: Script,
    blob_commit: Script,
    deploy: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            create: Script::new(CREATE),
            get: Script::new(GET),
            load: Script::new(LOAD),
            acquire: with_prelude(&format!("{TAKE_LEASE}{ACQUIRE}")),
            acquire_load: with_prelude(&format!("{TAKE_LEASE}{ACQUIRE_LOAD}")),
            renew: with_prelude(RENEW),
            append: with_prelude(APPEND),
            suspend: with_prelude(SUSPEND),
            finish: with_prelude(FINISH),
            release: with_prelude(RELEASE),
            signal: with_prelude(SIGNAL),
            next_signal: Script::new(NEXT_SIGNAL),
            items: Script::new(ITEMS),
            cancel: with_prelude(CANCEL),
            delete: with_prelude(DELETE),
            session: with_prelude(SESSION),
            sessions: Script::new(SESSIONS),
            blob_ref: Script::new(BLOB_REF),
            blob_unref: Script::new(BLOB_UNREF),
            blob_commit: Script::new(BLOB_COMMIT),
            deploy: Script::new(DEPLOY),
        }
    })
}

/// Maps a Redis error to a store error: connection trouble, timeouts and
/// a busy or loading server are retriable; a reply this code cannot read,
/// or a script error, is not.
pub(crate) fn redis_err(e: RedisError) -> StoreError {
    let permanent = matches!(
        e.kind(),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::InvalidClientConfig
    ) || (e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
        && matches!(e.code(), Some("ERR" | "WRONGTYPE")));
    if permanent {
        StoreError::Corrupt(format!("redis: {e}"))
    } else {
        StoreError::Unavailable(format!("redis: {e}"))
    }
}

fn bad_reply(what: &str) -> StoreError {
    StoreError::Corrupt(format!("redis: unexpected reply to {what}"))
}

fn parse<T: FromRedisValue>(v: Value, what: &str) -> Result<T, StoreError> {
    T::from_redis_value(v).map_err(|e| StoreError::Corrupt(format!("redis: {what}: {e}")))
}

/// A script's reply: a tag (`ok`, `notfound`, ...) and the rest.
struct Reply {
    tag: String,
    rest: std::vec::IntoIter<Value>,
    what: &'static str,
}

impl Reply {
    fn new(v: Value, what: &'static str) -> Result<Self, StoreError> {
        let Value::Array(items) = v else {
            return Err(bad_reply(what));
        };
        let mut rest = items.into_iter();
        let tag = parse(rest.next().ok_or_else(|| bad_reply(what))?, what)?;
        Ok(Self { tag, rest, what })
    }

    fn next<T: FromRedisValue>(&mut self) -> Result<T, StoreError> {
        parse(
            self.rest.next().ok_or_else(|| bad_reply(self.what))?,
            self.what,
        )
    }

    /// Turns the replies every execution script may give into errors.
    fn check(mut self, id: &ExecutionId) -> Result<Self, StoreError> {
        match self.tag.as_str() {
            "ok" => Ok(self),
            "notfound" => Err(StoreError::NotFound(id.clone())),
            "terminal" => Err(StoreError::Terminal {
                id: id.clone(),
                status: parse_status(&self.next::<String>()?)?,
            }),
            "active" => Err(StoreError::Active {
                id: id.clone(),
                status: parse_status(&self.next::<String>()?)?,
            }),
            "leaselost" => Err(StoreError::LeaseLost(id.clone())),
            "held" => Err(StoreError::LeaseHeld {
                id: id.clone(),
                owner: self.next()?,
                expires_at_ms: self.next()?,
            }),
            "conflict" => Err(StoreError::Conflict {
                id: id.clone(),
                index: 0,
                len: self.next()?,
            }),
            other => Err(StoreError::Corrupt(format!(
                "redis: unexpected reply {other:?} to {}",
                self.what
            ))),
        }
    }
}

fn parse_status(s: &str) -> Result<Status, StoreError> {
    Ok(match s {
        "running" => Status::Running,
        "suspended" => Status::Suspended,
        "completed" => Status::Completed,
        "failed" => Status::Failed,
        "cancelled" => Status::Cancelled,
        other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
    })
}

/// Rebuilds a record from its hash fields and the journal length.
fn record_from(
    fields: HashMap<String, Vec<u8>>,
    journal_len: u64,
) -> Result<ExecutionRecord, StoreError> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("execution record lacks field {name}")))
    };
    let number = |name: &str| -> Result<u64, StoreError> {
        match fields.get(name) {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("execution field {name} is not a number"))
                }),
        }
    };
    let meta: Meta = decode(field("meta")?)?;
    let status = parse_status(&String::from_utf8_lossy(field("st")?))?;
    let lease = match fields.get("lo") {
        Some(owner) => Some(Lease {
            owner: String::from_utf8_lossy(owner).into_owned(),
            token: number("lt")?,
            expires_at_ms: number("le")?,
        }),
        None => None,
    };
    Ok(ExecutionRecord {
        id: meta.id,
        workflow: meta.workflow,
        digest: meta.digest,
        input: meta.input,
        seed: meta.seed,
        status,
        wait: fields.get("wait").map(|v| decode(v)).transpose()?,
        outcome: fields.get("out").map(|v| decode(v)).transpose()?,
        journal_len,
        invocations: number("inv")?,
        lease,
        last_token: number("tok")?,
        created_at_ms: meta.created_at_ms,
        updated_at_ms: number("upd")?,
        stream: meta.stream,
    })
}

impl Reply {
    /// Reads a snapshot: record, journal length, journal, signal payloads
    /// and names.
    fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        let record = self.record()?;
        let raw: Vec<Vec<u8>> = self.next()?;
        let journal = raw
            .iter()
            .map(|e| decode(e))
            .collect::<Result<Vec<Entry>, _>>()?;
        let payloads: Vec<Vec<u8>> = self.next()?;
        let names: Vec<String> = self.next()?;
        let signals = payloads
            .into_iter()
            .zip(names)
            .enumerate()
            .map(|(seq, (payload, name))| SignalRecord {
                seq: seq as u64,
                name,
                payload,
            })
            .collect();
        Ok(Snapshot {
            record,
            journal,
            signals,
        })
    }

    /// Reads a record (hash fields, then journal length) from the reply.
    fn record(&mut self) -> Result<ExecutionRecord, StoreError> {
        let fields: HashMap<String, Vec<u8>> = self.next()?;
        let len: u64 = self.next()?;
        record_from(fields, len)
    }
}

/// A connection to the Redis at `url` with `options`' TLS and timeouts,
/// re-established in the background after an outage. Shared by the store
/// and the work queue (which needs its own for blocking reads).
pub(crate) async fn connection(url: &str, options: &RedisOptions) -> Result<Conn, StoreError> {
    if url.contains("rediss://") {
        // rustls needs a process-wide crypto provider; another part of
        // the process may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    // The URL may hold a password: never echo it.
    let invalid =
        |e: RedisError| StoreError::Invalid(format!("invalid Redis URL ({:?})", e.kind()));
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
                StoreError::Unavailable(format!("cannot connect to the Redis Cluster: {e}"))
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
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to Redis: {e}")))
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://`, `rediss://` for TLS,
    /// `redis+unix://` or `unix://` for a socket; a password goes in the
    /// URL). Fails if Redis cannot be reached now; later outages make
    /// operations fail as retriable while the connection is re-established
    /// in the background.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let conn = connection(url, &options).await?;
        Ok(Self { conn, options })
    }

    fn key(&self, kind: &str, id: &ExecutionId) -> String {
        format!("{}:{kind}:{{{id}}}", self.options.prefix)
    }

    fn blob_keys(&self, digest: &Digest) -> (String, String) {
        let hex = digest.to_hex();
        let p = &self.options.prefix;
        (
            format!("{p}:blobref:{{{hex}}}"),
            format!("{p}:blob:{{{hex}}}"),
        )
    }

    fn deployments_key(&self) -> String {
        format!("{}:deployments", self.options.prefix)
    }

    /// The version list of deployment `name`, hashed to the same slot as
    /// the deployments hash (its hash tag is that key's name).
    fn versions_key(&self, name: &str) -> String {
        format!("{{{}}}:versions:{name}", self.deployments_key())
    }

    fn finished_key(&self) -> String {
        format!("{}:finished", self.options.prefix)
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Takes a reference to `bytes` stored under `digest`, uploading them in
    /// chunks if no identical value is stored yet.
    async fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let (refs, blob) = self.blob_keys(digest);
        let exists: i64 = scripts()
            .blob_ref
            .key(&refs)
            .key(&blob)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if exists == 1 {
            return Ok(());
        }
        let tmp = format!(
            "{}:blobtmp:{{{}}}:{}",
            self.options.prefix,
            digest.to_hex(),
            hex::encode(rand::random::<[u8; 8]>())
        );
        let upload = async {
            for chunk in bytes.chunks(self.options.blob_chunk.max(1)) {
                redis::pipe()
                    .cmd("APPEND")
                    .arg(&tmp)
                    .arg(chunk)
                    .ignore()
                    // An upload abandoned by a crashed host expires.
                    .cmd("PEXPIRE")
                    .arg(&tmp)
                    .arg(3_600_000)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_err)?;
            }
            let mut reply = Reply::new(
                scripts()
                    .blob_commit
                    .key(&tmp)
                    .key(&blob)
                    .arg(bytes.len())
                    .invoke_async(&mut conn)
                    .await
                    .map_err(redis_err)?,
                "blob commit",
            )?;
            match reply.tag.as_str() {
                "ok" => Ok(()),
                _ => {
                    let _ = reply.rest.next();
                    Err(StoreError::Unavailable(format!(
                        "upload of stored value {digest} was cut short"
                    )))
                }
            }
        };
        match upload.await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Give the reference back (best effort: if Redis is gone
                // this fails too and the count stays one too high, which
                // keeps a value alive, never loses one).
                let _ = self.unref_blobs(&[digest.to_hex()]).await;
                Err(e)
            }
        }
    }

    async fn unref_blobs(&self, digests: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        for hex in digests {
            let digest = Digest::parse(hex)
                .ok_or_else(|| StoreError::Corrupt(format!("bad stored value digest {hex:?}")))?;
            let (refs, blob) = self.blob_keys(&digest);
            let _: i64 = scripts()
                .blob_unref
                .key(&refs)
                .key(&blob)
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
        }
        Ok(())
    }

    /// Runs the delete script for `id`; `before_ms` limits it to executions
    /// that ended before then. Returns whether it deleted.
    async fn delete_inner(
        &self,
        id: &ExecutionId,
        before_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let v: Value = scripts()
            .delete
            .key(self.key("x", id))
            .key(self.key("j", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .key(self.key("sc", id))
            .key(self.key("b", id))
            .key(self.key("i", id))
            .key(self.key("c", id))
            .arg(before_ms.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let reply = Reply::new(v, "delete")?;
        if reply.tag == "kept" {
            return Ok(false);
        }
        let mut reply = reply.check(id)?;
        let blobs: Vec<String> = reply.next()?;
        let _: () = redis::cmd("ZREM")
            .arg(self.finished_key())
            .arg(id.as_str())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        self.unref_blobs(&blobs).await?;
        Ok(true)
    }

    /// Notes that `id` ends now, for the retention sweep. Written before the
    /// execution ends; the sweep re-checks, so an entry for an execution
    /// that did not end after all is harmless.
    async fn index_finished(&self, id: &ExecutionId) -> Result<(), StoreError> {
        let mut conn = self.conn();
        redis::cmd("ZADD")
            .arg(self.finished_key())
            .arg(now_ms())
            .arg(id.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}:component:{}", self.options.prefix, digest.to_hex());
        redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .arg("NX")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn get_component(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let key = format!("{}:component:{}", self.options.prefix, digest.to_hex());
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn put_deployment(
        &self,
        name: &str,
        version: &DeploymentVersion,
    ) -> Result<DeploymentVersion, StoreError> {
        let (n, bytes): (u32, Vec<u8>) = scripts()
            .deploy
            .key(self.deployments_key())
            .key(self.versions_key(name))
            .arg(name)
            .arg(version.digest.to_hex())
            .arg(encode(version))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut current: DeploymentVersion = decode(&bytes)?;
        current.version = n;
        Ok(current)
    }

    async fn deployment_versions(&self, name: &str) -> Result<Vec<DeploymentVersion>, StoreError> {
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.versions_key(name))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        raw.iter()
            .enumerate()
            .map(|(i, bytes)| {
                let mut v: DeploymentVersion = decode(bytes)?;
                v.version = i as u32 + 1;
                Ok(v)
            })
            .collect()
    }

    async fn list_deployments(&self) -> Result<Vec<(String, DeploymentVersion)>, StoreError> {
        let names: Vec<String> = redis::cmd("HKEYS")
            .arg(self.deployments_key())
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (n, last): (u32, Option<Vec<u8>>) = redis::pipe()
                .cmd("LLEN")
                .arg(self.versions_key(&name))
                .cmd("LINDEX")
                .arg(self.versions_key(&name))
                .arg(-1)
                .query_async(&mut self.conn())
                .await
                .map_err(redis_err)?;
            if let Some(bytes) = last {
                let mut v: DeploymentVersion = decode(&bytes)?;
                v.version = n;
                out.push((name, v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn get_deployment(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        let hex: Option<String> = redis::cmd("HGET")
            .arg(self.deployments_key())
            .arg(name)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        hex.map(|h| {
            Digest::parse(&h)
                .ok_or_else(|| StoreError::Corrupt(format!("deployment {name}: bad digest")))
        })
        .transpose()
    }

    async fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError> {
        let meta = encode(&Meta {
            id: record.id.clone(),
            workflow: record.workflow.clone(),
            digest: record.digest,
            input: record.input.clone(),
            seed: record.seed,
            created_at_ms: record.created_at_ms,
            stream: record.stream,
        });
        let mut inv = scripts().create.prepare_invoke();
        inv.key(self.key("x", &record.id))
            .key(self.key("j", &record.id))
            .arg("meta")
            .arg(meta)
            .arg("st")
            .arg(record.status.as_str())
            .arg("inv")
            .arg(record.invocations)
            .arg("tok")
            .arg(record.last_token)
            .arg("upd")
            .arg(record.updated_at_ms);
        if let Some(wait) = &record.wait {
            inv.arg("wait").arg(encode(wait));
        }
        if let Some(out) = &record.outcome {
            inv.arg("out").arg(encode(out));
        }
        let v: Value = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "create")?;
        match reply.tag.as_str() {
            "exists" => Ok(Created::Existing(Box::new(reply.record()?))),
            _ => reply.check(&record.id).map(|_| Created::New),
        }
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        let v: Value = scripts()
            .get
            .key(self.key("x", id))
            .key(self.key("j", id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "get")?.check(id)?.record()
    }

    async fn load(&self, id: &ExecutionId) -> Result<Snapshot, StoreError> {
        let v: Value = scripts()
            .load
            .key(self.key("x", id))
            .key(self.key("j", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "load")?.check(id)?.snapshot()
    }

    async fn acquire_and_load(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<(Lease, Snapshot), StoreError> {
        let v: Value = scripts()
            .acquire_load
            .key(self.key("x", id))
            .key(self.key("j", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "acquire and load")?.check(id)?;
        let lease = Lease {
            owner: owner.to_string(),
            token: reply.next()?,
            expires_at_ms: reply.next()?,
        };
        Ok((lease, reply.snapshot()?))
    }

    async fn list_executions(
        &self,
        status: Option<Status>,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let pattern = format!("{}:x:{{*}}", self.options.prefix);
        let mut out = Vec::new();
        for key in self.conn.scan(&pattern).await? {
            let Some(id) = key
                .rsplit_once('{')
                .and_then(|(_, rest)| rest.strip_suffix('}'))
                .and_then(|id| ExecutionId::new(id).ok())
            else {
                continue;
            };
            match self.get_execution(&id).await {
                Ok(rec) if status.is_none_or(|s| s == rec.status) => out.push(rec),
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn delete_execution(&self, id: &ExecutionId) -> Result<(), StoreError> {
        self.delete_inner(id, None).await.map(|_| ())
    }

    async fn purge_finished(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.finished_key())
            .arg("-inf")
            .arg(format!("({before_ms}"))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut deleted = 0;
        for raw in ids {
            let Ok(id) = ExecutionId::new(raw.clone()) else {
                continue;
            };
            match self.delete_inner(&id, Some(before_ms)).await {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                // Gone already, or it did not end after all (it is indexed
                // again when it does): drop the index entry.
                Err(StoreError::NotFound(_)) | Err(StoreError::Active { .. }) => {
                    redis::cmd("ZREM")
                        .arg(self.finished_key())
                        .arg(raw)
                        .query_async::<()>(&mut self.conn())
                        .await
                        .map_err(redis_err)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    async fn get_blob(&self, digest: &Digest, len: u64) -> Result<Vec<u8>, StoreError> {
        let (_, blob) = self.blob_keys(digest);
        let mut conn = self.conn();
        let len = len as usize;
        let mut out = Vec::with_capacity(len);
        let chunk = self.options.blob_chunk.max(1);
        while out.len() < len {
            let end = (out.len() + chunk).min(len) - 1;
            let piece: Vec<u8> = redis::cmd("GETRANGE")
                .arg(&blob)
                .arg(out.len())
                .arg(end)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if piece.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "stored value {digest} is missing or shorter than its {len} bytes"
                )));
            }
            out.extend_from_slice(&piece);
        }
        if Digest::of(&out) != *digest {
            return Err(StoreError::Corrupt(format!(
                "stored value {digest} does not match its digest"
            )));
        }
        Ok(out)
    }

    async fn acquire_lease(
        &self,
        id: &ExecutionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let v: Value = scripts()
            .acquire
            .key(self.key("x", id))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "acquire lease")?.check(id)?;
        Ok(Lease {
            owner: owner.to_string(),
            token: reply.next()?,
            expires_at_ms: reply.next()?,
        })
    }

    async fn renew_lease(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let v: Value = scripts()
            .renew
            .key(self.key("x", id))
            .arg(lease.token)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "renew lease")?.check(id)?;
        Ok(Lease {
            expires_at_ms: reply.next()?,
            ..lease.clone()
        })
    }

    async fn append_many(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        index: u64,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // A large successful tool result is stored once under its digest
        // and the journal gets a reference to it.
        let mut stored = Vec::new();
        let mut inv = scripts().append.prepare_invoke();
        inv.key(self.key("x", id))
            .key(self.key("j", id))
            .key(self.key("b", id))
            .key(self.key("i", id))
            .arg(lease.token)
            .arg(index);
        for entry in entries {
            let large = match self.store_large_result(entry).await {
                Ok(large) => large,
                Err(e) => {
                    self.release_failed_refs(&stored).await;
                    return Err(e);
                }
            };
            if let Some((digest, bytes)) = large {
                inv.arg(bytes).arg(digest.to_hex()).arg("0").arg("");
                stored.push(digest);
                continue;
            }
            // An emitted item goes to the output stream, in the same
            // script; the journal records its digest.
            let (written, item) = entry.split_item();
            inv.arg(encode(written.as_ref())).arg("");
            match item {
                Some(item) => inv.arg("1").arg(item),
                None => inv.arg("0").arg(""),
            };
        }
        let result = match inv.invoke_async::<Value>(&mut self.conn()).await {
            Ok(v) => Reply::new(v, "append")
                .and_then(|r| r.check(id))
                .map(|_| ()),
            Err(e) => Err(redis_err(e)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { id, len, .. }) => {
                self.release_failed_refs(&stored).await;
                Err(StoreError::Conflict { id, index, len })
            }
            // Whether a retriable failure wrote the entries is unknown (the
            // reply may be what got lost), so their references are kept.
            Err(e) if e.is_retriable() => Err(e),
            Err(e) => {
                self.release_failed_refs(&stored).await;
                Err(e)
            }
        }
    }

    async fn suspend(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        wait: &Wait,
        consumed: u64,
    ) -> Result<Suspended, StoreError> {
        let signal = match wait {
            Wait::Signal { name } => name.as_str(),
            _ => "",
        };
        let v: Value = scripts()
            .suspend
            .key(self.key("x", id))
            .key(self.key("sc", id))
            .arg(lease.token)
            .arg(encode(wait))
            .arg(signal)
            .arg(consumed)
            .arg(encode(&Wait::Ready))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "suspend")?.check(id)?;
        Ok(if reply.next::<i64>()? == 1 {
            Suspended::Ready
        } else {
            Suspended::Waiting
        })
    }

    async fn finish(
        &self,
        id: &ExecutionId,
        lease: &Lease,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        self.index_finished(id).await?;
        let v: Value = scripts()
            .finish
            .key(self.key("x", id))
            .arg(lease.token)
            .arg(outcome.status().as_str())
            .arg(encode(outcome))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "finish")?.check(id).map(|_| ())
    }

    async fn release_lease(&self, id: &ExecutionId, lease: &Lease) -> Result<(), StoreError> {
        let v: Value = scripts()
            .release
            .key(self.key("x", id))
            .arg(lease.token)
            .arg(encode(&Wait::Ready))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "release lease")?.check(id).map(|_| ())
    }

    async fn signal(
        &self,
        id: &ExecutionId,
        name: &str,
        payload: &[u8],
    ) -> Result<Delivered, StoreError> {
        let v: Value = scripts()
            .signal
            .key(self.key("x", id))
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .key(self.key("sc", id))
            .arg(name)
            .arg(payload)
            .arg(encode(&Wait::Signal {
                name: name.to_string(),
            }))
            .arg(encode(&Wait::Ready))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "signal")?.check(id)?;
        Ok(Delivered {
            seq: reply.next()?,
            woke: reply.next::<i64>()? == 1,
        })
    }

    async fn next_signal(
        &self,
        id: &ExecutionId,
        name: &str,
        skip: u64,
    ) -> Result<Option<SignalRecord>, StoreError> {
        let v: Value = scripts()
            .next_signal
            .key(self.key("s", id))
            .key(self.key("sk", id))
            .arg(name)
            .arg(skip)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let reply = Reply::new(v, "next signal")?;
        if reply.tag == "none" {
            return Ok(None);
        }
        let mut reply = reply.check(id)?;
        Ok(Some(SignalRecord {
            seq: reply.next()?,
            name: name.to_string(),
            payload: reply.next()?,
        }))
    }

    async fn items(
        &self,
        id: &ExecutionId,
        after: Option<u64>,
        max: usize,
    ) -> Result<ItemsPage, StoreError> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if max == 0 {
            let page = self.items(id, after, 1).await?;
            return Ok(ItemsPage {
                items: Vec::new(),
                count: page.count,
            });
        }
        let to = from.saturating_add(max as u64 - 1);
        let v: Value = scripts()
            .items
            .key(self.key("x", id))
            .key(self.key("i", id))
            .arg(from.min(i64::MAX as u64))
            .arg(to.min(i64::MAX as u64))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "items")?.check(id)?;
        let count: u64 = reply.next()?;
        let raw: Vec<Vec<u8>> = reply.next()?;
        Ok(ItemsPage {
            items: (from..).zip(raw).collect(),
            count,
        })
    }

    async fn touch_session(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: Option<u64>,
    ) -> Result<ConsumerSession, StoreError> {
        let acked = acked.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        let found = self.session_op(id, session, acked, "").await?;
        found.ok_or_else(|| StoreError::Corrupt("a touched session is missing".into()))
    }

    async fn close_session(
        &self,
        id: &ExecutionId,
        session: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        self.session_op(id, session, -1, "close").await
    }

    async fn sessions(&self, id: &ExecutionId) -> Result<Vec<ConsumerSession>, StoreError> {
        let v: Value = scripts()
            .sessions
            .key(self.key("x", id))
            .key(self.key("c", id))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "sessions")?.check(id)?;
        let fields: HashMap<String, String> = reply.next()?;
        fields
            .into_iter()
            .map(|(sid, v)| parse_session(sid, &v))
            .collect()
    }

    async fn cancel(&self, id: &ExecutionId) -> Result<ExecutionRecord, StoreError> {
        self.index_finished(id).await?;
        let v: Value = scripts()
            .cancel
            .key(self.key("x", id))
            .key(self.key("j", id))
            .arg(encode(&Outcome::Cancelled))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Reply::new(v, "cancel")?.check(id)?.record()
    }
}

/// Reads a session stored as `acked|last access|closed`.
fn parse_session(id: String, v: &str) -> Result<ConsumerSession, StoreError> {
    let bad = || StoreError::Corrupt(format!("consumer session {id} reads {v:?}"));
    let mut parts = v.split('|');
    let mut next = || parts.next().ok_or_else(bad);
    let acked: i64 = next()?.parse().map_err(|_| bad())?;
    let last_access_ms: u64 = next()?.parse().map_err(|_| bad())?;
    let closed = next()? == "1";
    Ok(ConsumerSession {
        acked: u64::try_from(acked).ok(),
        last_access_ms,
        closed,
        id,
    })
}

impl RedisStore {
    async fn session_op(
        &self,
        id: &ExecutionId,
        session: &str,
        acked: i64,
        op: &str,
    ) -> Result<Option<ConsumerSession>, StoreError> {
        let v: Value = scripts()
            .session
            .key(self.key("x", id))
            .key(self.key("c", id))
            .arg(session)
            .arg(acked)
            .arg(op)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut reply = Reply::new(v, "session")?.check(id)?;
        let found: Option<String> = reply.next()?;
        found
            .map(|v| parse_session(session.to_string(), &v))
            .transpose()
    }

    /// Gives back the reference an append took for a value it did not
    /// write. Best effort: a failure leaves the value alive, never loses it.
    async fn release_failed_refs(&self, stored: &[Digest]) {
        if stored.is_empty() {
            return;
        }
        let hex: Vec<String> = stored.iter().map(Digest::to_hex).collect();
        if let Err(e) = self.unref_blobs(&hex).await {
            tracing::warn!("cannot release references to stored values {hex:?}: {e}");
        }
    }

    /// For a successful tool result over the blob threshold: stores the
    /// value once under its digest and returns the digest and the journal
    /// entry that refers to it.
    async fn store_large_result(
        &self,
        entry: &Entry,
    ) -> Result<Option<(Digest, Vec<u8>)>, StoreError> {
        let EntryKind::Tool {
            category,
            name,
            input_digest,
            input_len,
            result: Ok(value),
        } = &entry.kind
        else {
            return Ok(None);
        };
        if value.len() <= self.options.blob_threshold {
            return Ok(None);
        }
        let digest = Digest::of(value);
        self.put_blob(&digest, value).await?;
        let bytes = encode(&Entry {
            at_ms: entry.at_ms,
            duration_us: entry.duration_us,
            kind: EntryKind::ToolStored {
                category: category.clone(),
                name: name.clone(),
                input_digest: *input_digest,
                input_len: *input_len,
                result_digest: digest,
                result_len: value.len() as u64,
            },
        });
        Ok(Some((digest, bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::OnAbandon;
    use crate::persist::golden::{check, digest};

    /// The record's fixed part keeps its committed encoding (see
    /// `persist::golden`).
    #[test]
    fn meta_matches_its_committed_bytes() {
        check(
            "redis-meta",
            &Meta {
                id: ExecutionId::new("order-42").unwrap(),
                workflow: "checkout".into(),
                digest: digest("component"),
                input: vec![0x81, 0xa3, b's', b'k', b'u', 0x01],
                seed: 7,
                created_at_ms: 1_700_000_000_000,
                stream: Some(StreamPolicy {
                    window: 10,
                    on_abandon: OnAbandon::Cancel,
                    window_bytes: None,
                }),
            },
        );
    }
}
