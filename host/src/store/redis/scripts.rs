//! The Lua scripts of the Redis store, one `.lua` file each under `lua/`,
//! hashed once per process and run with `EVALSHA`. Execution scripts start
//! with `prelude.lua` (the Redis clock and the lease check).

use std::sync::OnceLock;

use redis::Script;

/// Helpers every execution script starts with.
const PRELUDE: &str = include_str!("lua/prelude.lua");

const CREATE: &str = include_str!("lua/create.lua");

const GET: &str = include_str!("lua/get.lua");

const LOAD: &str = include_str!("lua/load.lua");

/// Takes the lease (a live lease of another owner refuses); leaves `tok`
/// and `exp` for the reply.
const TAKE_LEASE: &str = include_str!("lua/take_lease.lua");

const ACQUIRE: &str = include_str!("lua/acquire.lua");

/// After TAKE_LEASE, the record and signals of LOAD's reply; the journal
/// is an LRANGE pipelined after it: an invocation starts with one round trip.
const ACQUIRE_LOAD: &str = include_str!("lua/acquire_load.lua");

const RENEW: &str = include_str!("lua/renew.lua");

/// The append's body, after a line naming its keys and where its
/// arguments start. ARGV from there: lease token, index, then four per
/// entry: its journal bytes, the digest of a value it stored ('' if
/// none), '1' if it emitted an item (else '0'), and the item ('' if none).
const APPEND: &str = include_str!("lua/append.lua");

/// The append alone. KEYS: record, journal, stored-value references,
/// items.
const APPEND_ALONE: &str = "local X, J, B, ITEMS, T = KEYS[1], KEYS[2], KEYS[3], KEYS[4], 1\n";

/// A continuation's start: the append under the lease it kept, then the
/// acquire and load; a refused append takes nothing. KEYS: record,
/// journal, signals, signal names (as the acquire's), stored-value
/// references, items; ARGV: owner, ttl (as the acquire's), then the
/// append's.
const APPEND_FIRST: &str = "local X, J, B, ITEMS, T = KEYS[1], KEYS[2], KEYS[5], KEYS[6], 3\n";

const SUSPEND: &str = include_str!("lua/suspend.lua");

const FINISH: &str = include_str!("lua/finish.lua");

const RELEASE: &str = include_str!("lua/release.lua");

const SIGNAL: &str = include_str!("lua/signal.lua");

/// The record's existence, a list's length, and a range of it: a page of
/// the output stream or of the journal.
const RANGE: &str = include_str!("lua/range.lua");

const NEXT_SIGNAL: &str = include_str!("lua/next_signal.lua");

const CANCEL: &str = include_str!("lua/cancel.lua");

/// Deletes an ended execution; with ARGV[1] set, only if it ended before
/// that time (the retention sweep). Returns the stored values it referred to.
const DELETE: &str = include_str!("lua/delete.lua");

/// Touches consumer session ARGV[1] (KEYS[2]) of execution KEYS[1]: read
/// up to offset ARGV[2] (-1: none). A session is `acked|last|closed`;
/// a closed one is left as it is. With ARGV[3] = 'close', closes it.
const SESSION: &str = include_str!("lua/session.lua");

/// Every session of execution KEYS[1] (hash KEYS[2]).
const SESSIONS: &str = include_str!("lua/sessions.lua");

/// Takes a reference to a stored value; tells whether its bytes are there.
/// The count goes up first, so a concurrent release cannot delete them.
const BLOB_REF: &str = include_str!("lua/blob_ref.lua");

/// Drops a reference; the last one deletes the bytes.
const BLOB_UNREF: &str = include_str!("lua/blob_unref.lua");

/// Moves an uploaded value into place unless an identical one got there
/// first.
const BLOB_COMMIT: &str = include_str!("lua/blob_commit.lua");

/// Points a name at a digest and adds a version, unless it points there
/// already. KEYS: deployments hash, the name's version list (same slot
/// through its hash tag). ARGV: name, digest hex, encoded version.
/// Returns the version number and the encoded current version.
const DEPLOY: &str = include_str!("lua/deploy.lua");

/// The index lists of one bucket (see `index/mod.rs`): entering an execution
/// at the bucket's next time, settling the lists it left, a reader
/// dropping a stale entry.
const INDEX_ENTER: &str = include_str!("lua/index_enter.lua");
const INDEX_SETTLE: &str = include_str!("lua/index_settle.lua");
/// The settle of a change on one Redis, in the change's own pipeline.
const INDEX_SETTLE_CHANGED: &str = include_str!("lua/index_settle_changed.lua");
const INDEX_DROP: &str = include_str!("lua/index_drop.lua");

/// The scripts, compiled (hashed) once per process.
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) get: Script,
    pub(super) load: Script,
    pub(super) acquire: Script,
    pub(super) acquire_load: Script,
    pub(super) renew: Script,
    pub(super) append: Script,
    pub(super) append_acquire_load: Script,
    pub(super) suspend: Script,
    pub(super) finish: Script,
    pub(super) release: Script,
    pub(super) signal: Script,
    pub(super) next_signal: Script,
    pub(super) range: Script,
    pub(super) session: Script,
    pub(super) sessions: Script,
    pub(super) cancel: Script,
    pub(super) delete: Script,
    pub(super) blob_ref: Script,
    pub(super) blob_unref: Script,
    pub(super) blob_commit: Script,
    pub(super) deploy: Script,
    pub(super) index_enter: Script,
    pub(super) index_settle: Script,
    pub(super) index_settle_changed: Script,
    pub(super) index_drop: Script,
}

pub(super) fn scripts() -> &'static Scripts {
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
            append: with_prelude(&format!("{APPEND_ALONE}{APPEND}return {{'ok'}}\n")),
            append_acquire_load: with_prelude(&format!(
                "{APPEND_FIRST}{APPEND}{TAKE_LEASE}{ACQUIRE_LOAD}"
            )),
            suspend: with_prelude(SUSPEND),
            finish: with_prelude(FINISH),
            release: with_prelude(RELEASE),
            signal: with_prelude(SIGNAL),
            next_signal: Script::new(NEXT_SIGNAL),
            range: Script::new(RANGE),
            cancel: with_prelude(CANCEL),
            delete: with_prelude(DELETE),
            session: with_prelude(SESSION),
            sessions: Script::new(SESSIONS),
            blob_ref: Script::new(BLOB_REF),
            blob_unref: Script::new(BLOB_UNREF),
            blob_commit: Script::new(BLOB_COMMIT),
            deploy: Script::new(DEPLOY),
            index_enter: Script::new(INDEX_ENTER),
            index_settle: Script::new(INDEX_SETTLE),
            index_settle_changed: Script::new(INDEX_SETTLE_CHANGED),
            index_drop: Script::new(INDEX_DROP),
        }
    })
}

/// The signal names a suspended execution waits for, as its `ws` field
/// keeps them, each between NULs: what the `signal` script looks a name up
/// in. A name holding a NUL could match across two names; that wakes the
/// execution for nothing (it finds no signal of its names and suspends
/// again), it never misses a wake.
pub(super) fn waited_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut ws = String::new();
    for name in names {
        if ws.is_empty() {
            ws.push('\0');
        }
        ws.push_str(name);
        ws.push('\0');
    }
    ws
}

/// Runs `pipe`, whose first command invokes `script`, loading the script
/// first if the server does not know it (a restarted Redis, a new node),
/// as [`redis::ScriptInvocation::invoke_async`] does for a script alone.
/// The pipeline runs again whole after a load; its other commands are
/// reads, so that is harmless.
pub(super) async fn query_with_script<T: redis::FromRedisValue>(
    conn: &mut crate::redis_conn::Conn,
    pipe: &redis::Pipeline,
    script: &redis::ScriptInvocation<'_>,
) -> redis::RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}

/// The `acquire_load` script's invocation for the execution whose record,
/// journal, signals and signal names are `keys`: it takes the lease and
/// reads the snapshot but for the journal, whose `LRANGE` is pipelined
/// after it ([`then_journal`]; read after the lease is ours, so no other
/// host appends in between): one round trip.
pub(super) fn acquire_load(
    keys: &[String; 4],
    owner: &str,
    ttl: std::time::Duration,
) -> redis::ScriptInvocation<'static> {
    let mut script = scripts().acquire_load.prepare_invoke();
    for key in keys {
        script.key(key);
    }
    script.arg(owner).arg(ttl.as_millis() as u64);
    script
}

/// The pipeline that reads the snapshot of the execution whose record,
/// journal, signals and signal names are `keys`, without a lease: the
/// `load` script (record, journal length, signals), then the journal's
/// `LRANGE`; and the script's invocation. Another host may append in
/// between: the journal's length read with the record says which entries
/// the snapshot keeps ([`super::reply::Reply::snapshot_with`]).
pub(super) fn load(keys: &[String; 4]) -> (redis::Pipeline, redis::ScriptInvocation<'static>) {
    let mut script = scripts().load.prepare_invoke();
    for key in keys {
        script.key(key);
    }
    (then_journal(&script, &keys[1], 0), script)
}

/// `script`, then the journal at `journal` from index `from` on, in one
/// pipeline: Redis sends the entries as they lie, where a script's
/// `LRANGE` would copy each into a Lua string and out again.
pub(super) fn then_journal(
    script: &redis::ScriptInvocation<'_>,
    journal: &str,
    from: u64,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.invoke_script(script)
        .cmd("LRANGE")
        .arg(journal)
        .arg(from)
        .arg(-1);
    pipe
}
