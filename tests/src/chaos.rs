//! The chaos run: several `reprise serve` processes share one Redis and a
//! work queue while one of them is killed (SIGKILL) and started again every
//! interval, and Redis itself is killed and restarted once mid-run (AOF,
//! `appendfsync always`).
//!
//! The workflow is `caller` making `steps` calls to a webhook tool whose
//! receiver (in this process) applies each side effect once per
//! idempotency key and counts repeated deliveries, as a real idempotent API
//! would. Half the executions start with a plain `XADD`, half over HTTP
//! through whichever host is up.
//!
//! Beside them run `parents` executions of `parent`, each starting three
//! `caller` children (child workflows) and joining them: every child must
//! run once, and every parent complete with its children's results.
//!
//! It passes when every execution completed with the right result, every
//! journal holds exactly the expected entries in order, every side effect
//! was applied once, and no message is left in the stream or pending. It
//! reports how many tool calls were delivered more than once (allowed:
//! tools run at least once) and how long each kill took to recover from.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use reprise_host::journal::EntryKind;
use reprise_host::queue::{Message, QueueOptions, RedisQueue};
use reprise_host::store::RedisOptions;
use reprise_host::{ExecutionId, Status, Store};
use serde_json::{Value, json};

use crate::process::ServeProcess;
use crate::redis::{RedisCluster, RedisServer};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Host processes.
    pub hosts: usize,
    /// Executions started, half by plain `XADD`, half over HTTP.
    pub executions: usize,
    /// Tool calls per execution.
    pub steps: usize,
    /// Parent executions, each with three `caller` children (started by
    /// `XADD`).
    pub parents: usize,
    /// Kill (and restart) a random host this often.
    pub kill_every: Duration,
    /// Kill and restart Redis once, when about half the executions ended.
    pub restart_redis: bool,
    /// How long the webhook receiver takes per call.
    pub tool_delay: Duration,
    /// Messages each host works on at once.
    pub concurrency: usize,
    /// Give up after this long.
    pub deadline: Duration,
    /// On a three-node Redis Cluster instead of one Redis (the restart
    /// then kills and restarts one node).
    pub cluster: bool,
    /// The queue's partitions.
    pub partitions: usize,
}

/// The Redis the hosts share.
enum Backend {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Backend {
    fn url(&self) -> String {
        match self {
            Backend::Single(s) => s.url(),
            Backend::Cluster(c) => c.url(),
        }
    }

    fn options(&self) -> RedisOptions {
        match self {
            Backend::Single(_) => RedisOptions::default(),
            Backend::Cluster(_) => RedisCluster::options(),
        }
    }

    fn restart(&mut self) {
        match self {
            Backend::Single(s) => s.restart(),
            Backend::Cluster(c) => c.nodes[0].restart(),
        }
    }
}

/// What happened.
#[derive(Debug)]
pub struct Report {
    /// Wall time from the first start to the last completion.
    pub elapsed: Duration,
    /// Hosts killed with SIGKILL.
    pub kills: usize,
    /// For each kill that interrupted work: time until every execution the
    /// killed host held had been taken up by another host (or ended).
    pub recoveries: Vec<Duration>,
    /// Time from Redis coming back until the next execution completed.
    pub redis_recovery: Option<Duration>,
    /// Tool calls delivered to the receiver.
    pub deliveries: u64,
    /// Idempotency keys delivered more than once.
    pub repeated_keys: usize,
}

#[derive(Default)]
struct Effects {
    /// Deliveries per idempotency key.
    seen: HashMap<String, u32>,
}

async fn receiver(delay: Duration) -> (String, Arc<Mutex<Effects>>) {
    let effects = Arc::new(Mutex::new(Effects::default()));
    let state = effects.clone();
    let app = axum::Router::new().route(
        "/effects",
        post(move |Json(body): Json<Value>| {
            let state = state.clone();
            async move {
                tokio::time::sleep(delay).await;
                let key = body["idempotency_key"].as_str().unwrap_or("?").to_string();
                *state.lock().unwrap().seen.entry(key).or_default() += 1;
                let input = &body["input"];
                let (e, k) = (input["e"].as_u64().unwrap(), input["k"].as_u64().unwrap());
                Json(json!({"e": e, "k": k, "v": e * 1000 + k}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/effects", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, effects)
}

fn input(e: usize, steps: usize) -> Value {
    json!({"calls": (0..steps)
        .map(|k| json!({"category": "effects", "name": "apply", "input": {"e": e, "k": k}}))
        .collect::<Vec<_>>()})
}

fn expected(e: usize, steps: usize) -> Value {
    Value::Array(
        (0..steps)
            .map(|k| json!({"ok": {"e": e, "k": k, "v": e * 1000 + k}}))
            .collect(),
    )
}

struct Fleet {
    bin: std::path::PathBuf,
    config: String,
    hosts: Vec<(String, ServeProcess)>,
    generation: usize,
}

impl Fleet {
    fn spawn(&mut self, slot: usize) -> (String, ServeProcess) {
        self.generation += 1;
        let id = format!("host{slot}-g{}", self.generation);
        let config = format!("host_id = \"{id}\"\n{}", self.config);
        let p = ServeProcess::spawn(&self.bin, &config, &[("RUST_LOG", "error")]);
        (id, p)
    }
}

/// Runs `plan` against the `reprise` binary at `bin`; panics on any
/// violation, with what was wrong.
pub async fn run(bin: &Path, plan: &Plan) -> Report {
    let mut redis = if plan.cluster {
        Backend::Cluster(RedisCluster::start())
    } else {
        Backend::Single(RedisServer::start())
    };
    let (hook, effects) = receiver(plan.tool_delay).await;
    let claim = Duration::from_millis(1000);
    let config = format!(
        "redis = \"{}\"\nredis_cluster = {}\nlease_ttl = \"1s\"\n\
         [queue]\nstream = \"reprise:queue\"\npartitions = {}\nclaim_after = \"{}ms\"\nconcurrency = {}\ntimer_poll = \"100ms\"\n\
         [limits]\nmax_steps_per_invocation = 5\n\
         [tools.webhook.effects]\nurl = \"{hook}\"\ntimeout = \"5s\"\nretries = 10\n",
        redis.url(),
        plan.cluster,
        plan.partitions,
        claim.as_millis(),
        plan.concurrency,
    );
    let mut fleet = Fleet {
        bin: bin.to_path_buf(),
        config,
        hosts: Vec::new(),
        generation: 0,
    };
    for slot in 0..plan.hosts {
        let h = fleet.spawn(slot);
        fleet.hosts.push(h);
    }
    let http = reqwest::Client::new();
    for workflow in ["caller", "parent"] {
        let deployed = http
            .put(format!("{}/v1/workflows/{workflow}", fleet.hosts[0].1.url))
            .header("content-type", "application/wasm")
            .body(crate::guest(workflow))
            .send()
            .await
            .unwrap();
        assert!(
            deployed.status().is_success(),
            "deploy {workflow}: {}",
            deployed.status()
        );
    }

    let store: Arc<dyn Store> = Arc::new(
        reprise_host::RedisStore::connect(&redis.url(), redis.options())
            .await
            .unwrap(),
    );
    let options = QueueOptions {
        partitions: plan.partitions,
        ..QueueOptions::default()
    };
    let queue = RedisQueue::connect(&redis.url(), &redis.options(), options)
        .await
        .unwrap();
    assert_eq!(queue.partitions(), plan.partitions);
    let ids: Vec<ExecutionId> = (0..plan.executions)
        .map(|e| ExecutionId::new(format!("chaos-{e}")).unwrap())
        .collect();

    // Parent p's children run the `e` numbers after the plain executions'.
    let parent_ids: Vec<ExecutionId> = (0..plan.parents)
        .map(|p| ExecutionId::new(format!("chaos-parent-{p}")).unwrap())
        .collect();
    let child_e = |p: usize, c: usize| plan.executions + p * CHILDREN + c;
    let parent_input = |p: usize| {
        json!({"workflow": "caller",
               "items": (0..CHILDREN).map(|c| input(child_e(p, c), plan.steps)).collect::<Vec<_>>()})
    };
    // Every execution the run makes: plain ones, parents and children.
    let total = plan.executions + plan.parents * (1 + CHILDREN);

    let began = Instant::now();
    for (p, id) in parent_ids.iter().enumerate() {
        let msg = Message::Start {
            workflow: "parent".into(),
            input: parent_input(p).to_string(),
            id: Some(id.clone()),
            stream: None,
            traceparent: None,
        };
        queue.enqueue(&msg).await.unwrap();
    }
    // Starts: even ones with XADD, odd ones over HTTP to any live host
    // (retried: hosts die, and an id makes a retry start once).
    let urls: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        fleet.hosts.iter().map(|(_, p)| p.url.clone()).collect(),
    ));
    let starter = {
        let (ids, urls, http, queue) = (ids.clone(), urls.clone(), http.clone(), queue.clone());
        let steps = plan.steps;
        tokio::spawn(async move {
            for (e, id) in ids.iter().enumerate() {
                if e % 2 == 0 {
                    let msg = Message::Start {
                        workflow: "caller".into(),
                        input: input(e, steps).to_string(),
                        id: Some(id.clone()),
                        stream: None,
                        traceparent: None,
                    };
                    while queue.enqueue(&msg).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                for attempt in 0.. {
                    let url = {
                        let urls = urls.lock().unwrap();
                        urls[(e + attempt) % urls.len()].clone()
                    };
                    let r = http
                        .post(format!("{url}/v1/workflows/caller/executions"))
                        .json(&json!({"id": id.as_str(), "input": input(e, steps)}))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        })
    };

    let completed = |store: Arc<dyn Store>| async move {
        store
            .list_executions(Some(Status::Completed))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    };
    let mut kills = 0;
    let mut recoveries = Vec::new();
    let mut redis_recovery = None;
    let mut redis_restarted = !plan.restart_redis;
    let mut next_kill = Instant::now() + plan.kill_every;
    loop {
        let done = completed(store.clone()).await;
        if done == total {
            break;
        }
        assert!(
            began.elapsed() < plan.deadline,
            "only {done} of {total} executions completed within {:?}",
            plan.deadline
        );
        if !redis_restarted && done >= total / 2 {
            redis_restarted = true;
            redis.restart();
            let back = Instant::now();
            let mut after = completed(store.clone()).await;
            while after <= done && after < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
                after = completed(store.clone()).await;
            }
            redis_recovery = Some(back.elapsed());
        }
        if Instant::now() >= next_kill {
            next_kill += plan.kill_every;
            let slot =
                (rand_index(kills) + began.elapsed().subsec_nanos() as usize) % fleet.hosts.len();
            let held: Vec<ExecutionId> = store
                .list_executions(Some(Status::Running))
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.lease.as_ref().map(|l| &l.owner) == Some(&fleet.hosts[slot].0))
                .map(|r| r.id)
                .collect();
            let killed_at = Instant::now();
            fleet.hosts[slot].1.kill();
            kills += 1;
            let dead_id = fleet.hosts[slot].0.clone();
            fleet.hosts[slot] = fleet.spawn(slot);
            *urls.lock().unwrap() = fleet.hosts.iter().map(|(_, p)| p.url.clone()).collect();
            if !held.is_empty() {
                // Recovered once none of them is still leased by the dead host.
                let store = store.clone();
                let deadline = plan.deadline;
                recoveries.push(tokio::spawn(async move {
                    loop {
                        let mut stuck = 0;
                        for id in &held {
                            if let Ok(r) = store.get_execution(id).await
                                && r.lease.as_ref().map(|l| &l.owner) == Some(&dead_id)
                            {
                                stuck += 1;
                            }
                        }
                        if stuck == 0 || killed_at.elapsed() > deadline {
                            return killed_at.elapsed();
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = began.elapsed();
    starter.await.unwrap();
    let mut recovered = Vec::new();
    for r in recoveries {
        recovered.push(r.await.unwrap());
    }

    // Every execution: the right result, and a journal of exactly `steps`
    // tool entries, in order; children too, each under the id its parent
    // gave it, and each parent with its children's results.
    let mut checked: Vec<(usize, ExecutionId)> = ids.iter().cloned().enumerate().collect();
    for (p, parent) in parent_ids.iter().enumerate() {
        let rec = store.get_execution(parent).await.unwrap();
        assert_eq!(rec.status, Status::Completed, "{parent}: {rec:?}");
        let want: Vec<Value> = (0..CHILDREN)
            .map(|c| json!({"ok": expected(child_e(p, c), plan.steps)}))
            .collect();
        assert_eq!(crate::result::<Value>(&rec), Value::Array(want), "{parent}");
        for c in 0..CHILDREN {
            // The parent's starts are its first entries: handle = c.
            let child = ExecutionId::new(format!("{parent}.{c}")).unwrap();
            checked.push((child_e(p, c), child));
        }
    }
    for (e, id) in &checked {
        let (e, id) = (*e, id);
        let mut snap = store.load(id).await;
        for _ in 0..20 {
            if snap.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            snap = store.load(id).await;
        }
        let snap = snap.unwrap();
        let rec = &snap.record;
        assert_eq!(rec.status, Status::Completed, "{id}: {rec:?}");
        let result: Value = crate::result(rec);
        assert_eq!(result, expected(e, plan.steps), "{id}: wrong result");
        assert_eq!(snap.journal.len(), plan.steps, "{id}: journal length");
        for (k, entry) in snap.journal.iter().enumerate() {
            let EntryKind::Tool {
                category,
                name,
                result: Ok(bytes),
                ..
            } = &entry.kind
            else {
                panic!("{id}: entry {k} is {:?}", entry.kind);
            };
            assert_eq!((category.as_str(), name.as_str()), ("effects", "apply"));
            let v: Value = rmp_serde::from_slice(bytes).unwrap();
            assert_eq!(v["k"], k as u64, "{id}: entry {k} out of order");
            assert_eq!(v["e"], e as u64, "{id}: entry {k} of another execution");
        }
    }
    // The index agrees with the records: every execution is listed once,
    // under its status (completed), and no other status lists one; the
    // completed count is exact (a host killed between a change and its
    // settling can leave an entry in another list, which readers skip).
    let listed = store.list_executions(None).await.unwrap();
    let listed_ids: HashSet<ExecutionId> = listed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        listed.len(),
        listed_ids.len(),
        "an execution is listed twice"
    );
    let all: HashSet<ExecutionId> = checked
        .iter()
        .map(|(_, id)| id.clone())
        .chain(parent_ids.iter().cloned())
        .collect();
    assert_eq!(
        listed_ids, all,
        "the index lists other executions than there are"
    );
    for status in [
        Status::Running,
        Status::Suspended,
        Status::Failed,
        Status::Cancelled,
    ] {
        let other = store.list_executions(Some(status)).await.unwrap();
        assert!(other.is_empty(), "{status}: {other:?}");
    }
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts.get(&Status::Completed), Some(&(all.len() as u64)));
    // Every side effect applied, once per key.
    let seen = effects.lock().unwrap().seen.clone();
    let want: HashSet<String> = checked
        .iter()
        .flat_map(|(_, id)| (0..plan.steps).map(move |k| format!("{id}:{k}")))
        .collect();
    let got: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(got, want, "side effects applied differ from those expected");
    // No message left behind (acknowledgements may trail the last
    // completion by a moment).
    let settle = Instant::now();
    loop {
        // The connection may need a try to come back after the restart.
        let (pending, len) = (
            queue.pending().await.unwrap_or(u64::MAX),
            queue.stream_len().await.unwrap_or(u64::MAX),
        );
        if pending == 0 && len == 0 {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(30),
            "{pending} messages pending, {len} in the stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = queue.dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    drop(fleet);
    Report {
        elapsed,
        kills,
        recoveries: recovered,
        redis_recovery,
        deliveries: seen.values().map(|&n| u64::from(n)).sum(),
        repeated_keys: seen.values().filter(|&&n| n > 1).count(),
    }
}

/// Children per parent.
const CHILDREN: usize = 3;

/// A cheap pseudo-random host choice (xorshift on the kill number).
fn rand_index(n: usize) -> usize {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x as usize
}

impl Report {
    /// A summary for people.
    pub fn summary(&self) -> String {
        let mut r = self.recoveries.clone();
        r.sort();
        let pct = |p: f64| {
            r.get(((r.len() as f64 - 1.0) * p).round() as usize)
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "{:.1}s, {} kills ({} interrupted work; recovery p50 {} max {}), redis restart recovered in {}, \
             {} tool deliveries, {} keys delivered more than once",
            self.elapsed.as_secs_f64(),
            self.kills,
            r.len(),
            pct(0.5),
            pct(1.0),
            self.redis_recovery
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            self.deliveries,
            self.repeated_keys
        )
    }
}
