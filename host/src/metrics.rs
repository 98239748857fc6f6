//! Prometheus metrics of one runtime: what an operator watches to see that
//! work flows (invocations, steps), what it costs (replay time, tool
//! latency), and what waits (suspended executions, live instances).
//!
//! Counters are updated on the hot path with one atomic add; the text
//! exposition is rendered only when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-category tool metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    /// The tool category, e.g. `builtin` or a configured webhook category.
    pub category: String,
}

/// Labels of per-status execution metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `running`, `suspended`, `completed`, `failed` or `cancelled`.
    pub status: String,
}

/// Labels of work queue message metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `acknowledged`, `dead_lettered` or `taken_over`.
    pub outcome: String,
}

/// The metrics of a runtime, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// Invocations started (an instance created and run).
    pub invocations: Counter,
    /// New journal entries recorded (steps that did new work).
    pub steps: Counter,
    /// Journal entries replayed into fresh instances.
    pub replayed_entries: Counter,
    /// Time from an invocation's start to the end of its replay.
    pub replay_seconds: Histogram,
    /// Invocations that ended with the execution waiting.
    pub suspensions: Counter,
    /// Executions that ended, by final status.
    pub finished: Family<StatusLabel, Counter>,
    /// Tool call latency, by category.
    pub tool_seconds: Family<CategoryLabel, Histogram>,
    /// Instances alive now.
    pub live_instances: Gauge,
    /// Executions in the store by status, refreshed when scraped (set by
    /// the server, which knows how often it may afford to count).
    pub executions: Family<StatusLabel, Gauge>,
    /// Work queue messages this host handled, by outcome.
    pub queue_messages: Family<OutcomeLabel, Counter>,
    /// Durable timers this host moved to the work queue.
    pub timers_fired: Counter,
    /// Guest log lines dropped by the per-invocation rate limit.
    pub guest_log_dropped: Counter,
    /// Work queue depth, read from Redis when scraped: `pending` (delivered,
    /// not yet acknowledged, over every host), `stream` (pending or not
    /// yet read) and `timers` (set, not yet due).
    pub queue_depth: Family<KindLabel, Gauge>,
    /// Failed tool attempts followed by another attempt, by category.
    pub tool_retries: Family<CategoryLabel, Counter>,
    /// Tool calls between a failed attempt and the next one, now.
    pub tool_calls_retrying: Gauge,
}

/// Labels of the work queue depth gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `pending`, `stream` or `timers`.
    pub kind: String,
}

impl Metrics {
    /// Counts one queue message outcome.
    pub fn queue_message(&self, outcome: &str, n: u64) {
        self.queue_messages
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc_by(n);
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("reprise");
        let m = Self {
            invocations: Counter::default(),
            steps: Counter::default(),
            replayed_entries: Counter::default(),
            replay_seconds: latency_histogram(),
            suspensions: Counter::default(),
            finished: Family::default(),
            tool_seconds: Family::new_with_constructor(latency_histogram),
            live_instances: Gauge::default(),
            executions: Family::default(),
            queue_messages: Family::default(),
            timers_fired: Counter::default(),
            guest_log_dropped: Counter::default(),
            queue_depth: Family::default(),
            tool_retries: Family::default(),
            tool_calls_retrying: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("invocations", "Invocations started", m.invocations.clone());
        registry.register("steps", "New journal entries recorded", m.steps.clone());
        registry.register(
            "guest_log_dropped",
            "Guest log lines dropped by the per-invocation rate limit",
            m.guest_log_dropped.clone(),
        );
        registry.register(
            "replayed_entries",
            "Journal entries replayed into fresh instances",
            m.replayed_entries.clone(),
        );
        registry.register(
            "replay_seconds",
            "Time from an invocation's start to the end of its replay",
            m.replay_seconds.clone(),
        );
        registry.register(
            "suspensions",
            "Invocations that ended with the execution waiting",
            m.suspensions.clone(),
        );
        registry.register(
            "executions_finished",
            "Executions that ended, by final status",
            m.finished.clone(),
        );
        registry.register(
            "tool_call_seconds",
            "Tool call latency by category",
            m.tool_seconds.clone(),
        );
        registry.register(
            "live_instances",
            "Workflow instances alive now",
            m.live_instances.clone(),
        );
        registry.register(
            "executions",
            "Executions in the store by status",
            m.executions.clone(),
        );
        registry.register(
            "queue_messages",
            "Work queue messages handled by this host, by outcome",
            m.queue_messages.clone(),
        );
        registry.register(
            "timers_fired",
            "Durable timers this host moved to the work queue",
            m.timers_fired.clone(),
        );
        registry.register(
            "queue_depth",
            "Work queue depth by kind (pending, stream, timers), read when scraped",
            m.queue_depth.clone(),
        );
        registry.register(
            "tool_retries",
            "Failed tool attempts followed by another attempt, by category",
            m.tool_retries.clone(),
        );
        registry.register(
            "tool_calls_retrying",
            "Tool calls waiting for their next attempt after a failure",
            m.tool_calls_retrying.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
