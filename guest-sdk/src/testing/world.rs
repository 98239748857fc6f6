//! The first run's world: the scripts, the virtual clock, started work,
//! and the order in which it completes.

use std::collections::BTreeMap;

use super::journal::Entry;
use super::{TestEnv, ToolCall};
use crate::__private::bindings::reprise::workflow::types;
use crate::ToolError;

/// Started work not yet awaited.
pub(super) enum Started {
    /// A tool call or a child: its completion, and when it is there.
    Done(u64, types::Completion),
    Timer(u64),
    Signal(String),
}

/// The first run's world: scripts, clock, pending handles, what happened.
pub(super) struct World {
    pub(super) env: TestEnv,
    pub(super) now_ms: u64,
    pub(super) rng: u64,
    pub(super) pending: BTreeMap<u64, Started>,
    pub(super) journal: Vec<Entry>,
    pub(super) calls: Vec<ToolCall>,
    pub(super) emitted: Vec<Vec<u8>>,
    pub(super) logs: Vec<String>,
}

impl World {
    pub(super) fn new(mut env: TestEnv) -> Self {
        // Scheduled relative to the start; kept absolute, as the clock is.
        for signal in &mut env.signals {
            signal.0 = signal.0.saturating_add(env.start_ms);
        }
        env.signals.sort();
        Self {
            now_ms: env.start_ms,
            rng: env.seed,
            env,
            pending: BTreeMap::new(),
            journal: Vec::new(),
            calls: Vec::new(),
            emitted: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// One attempt of a tool: (its result, how long it took).
    fn attempt(
        &mut self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> (Result<Vec<u8>, ToolError>, u64) {
        let key = (category.to_string(), name.to_string());
        self.calls.push(ToolCall {
            category: category.into(),
            name: name.into(),
            input: input.to_vec(),
        });
        let latency = self.env.latency.get(&key).copied().unwrap_or(0);
        let Some(script) = self.env.tools.get_mut(&key) else {
            panic!(
                "the workflow called the tool {category}/{name}, which this TestEnv does not script \
                 (add .tool(\"{category}\", \"{name}\", ...) or .on(TOOL, ...))"
            )
        };
        (script(input), latency)
    }

    /// A tool call with its retry policy, as the host runs it: (result,
    /// how long all attempts and backoffs took).
    pub(super) fn call(
        &mut self,
        category: &str,
        name: &str,
        input: &[u8],
        retry: Option<&types::RetryPolicy>,
    ) -> (Result<Vec<u8>, ToolError>, u64) {
        let mut elapsed = 0;
        let mut backoff = retry.map_or(0, |p| p.initial_backoff_ms);
        let mut attempt = 1;
        loop {
            let (result, took) = self.attempt(category, name, input);
            elapsed += took;
            let Some(policy) = retry else {
                return (result, elapsed);
            };
            let retryable = match &result {
                Ok(_) => false,
                Err(e) => policy.retry_on.is_empty() || policy.retry_on.contains(&e.code),
            };
            if !retryable || attempt >= policy.max_attempts.max(1) {
                return (result, elapsed);
            }
            elapsed += backoff;
            backoff = ((backoff as f64) * policy.backoff_factor.max(1.0)) as u64;
            backoff = backoff.min(policy.max_backoff_ms);
            attempt += 1;
        }
    }

    /// The next scheduled signal called `name`, at or after `skip` others.
    pub(super) fn signal_position(&self, name: &str, skip: usize) -> Option<usize> {
        self.env
            .signals
            .iter()
            .enumerate()
            .filter(|(_, s)| s.2 == name)
            .nth(skip)
            .map(|(i, _)| i)
    }

    /// The scheduled signal the wait `handle` on `name` gets: earlier waits
    /// of the same name take the earlier signals.
    fn signal_for(&self, handle: u64, name: &str) -> Option<usize> {
        let before = self
            .pending
            .range(..handle)
            .filter(|(_, s)| matches!(s, Started::Signal(n) if n == name))
            .count();
        self.signal_position(name, before)
    }

    /// When `handle` can complete: `None` if never.
    fn ready_at(&self, handle: u64) -> Option<u64> {
        match self.pending.get(&handle)? {
            Started::Done(at, _) => Some(*at),
            Started::Timer(due) => Some(*due),
            Started::Signal(name) => {
                let i = self.signal_for(handle, name)?;
                Some(self.env.signals[i].0.max(self.now_ms))
            }
        }
    }

    pub(super) fn await_any(&mut self, handles: &[u64]) -> (u64, types::Completion) {
        for h in handles {
            if !self.pending.contains_key(h) {
                panic!(
                    "the workflow awaited handle {h}, which is not pending (never started, spent or forgotten)"
                )
            }
        }
        let Some((at, handle)) = handles
            .iter()
            .filter_map(|&h| self.ready_at(h).map(|at| (at, h)))
            .min()
        else {
            let names: Vec<String> = handles
                .iter()
                .filter_map(|h| match &self.pending[h] {
                    Started::Signal(name) => Some(format!("{name:?}")),
                    _ => None,
                })
                .collect();
            panic!(
                "the workflow waits forever: it waits for the signal(s) {} and the test sends none \
                 (add .signal(name, payload))",
                names.join(", ")
            )
        };
        self.now_ms = self.now_ms.max(at);
        let completion = match self.pending.remove(&handle).expect("pending") {
            Started::Done(_, completion) => completion,
            Started::Timer(_) => types::Completion::Timer,
            Started::Signal(name) => {
                let i = self.signal_for(handle, &name).expect("ready");
                types::Completion::Signal(self.env.signals.remove(i).3)
            }
        };
        (handle, completion)
    }
}
