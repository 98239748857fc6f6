//! The journaled imports of `reprise:workflow/host`: each replays its
//! entry through [`Steps::replay`] while the guest is behind the journal,
//! and otherwise does the work and records it.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::join::{Observed, Retry};
use super::*;
use crate::execution::{ChildEnd, RESERVED_SIGNAL_PREFIX, UNCODED_WORKFLOW_ERROR};
use crate::journal::{InputKey, StartCall, Started};

impl bindings::TypesHost for InvocationState {}

impl bindings::Host for InvocationState {
    async fn call_tool(
        &mut self,
        category: String,
        name: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, ToolError>> {
        let result = match self.replay_tool(&category, &name, &input).await? {
            Some(result) => result,
            // Boxed, so a replayed call's future stays small (see
            // `fast.rs`).
            None => Box::pin(self.run_tool(category, name, input)).await?,
        };
        Ok(result.map(Vec::from))
    }

    async fn sleep(&mut self, duration_ms: u64) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        s.enter();
        let replayed = s.replay(
            || Call::Sleep { duration_ms },
            |k| k.replay_sleep(duration_ms),
        )?;
        let wake_at_ms = match replayed {
            Some(wake_at_ms) => wake_at_ms,
            None => {
                let wake_at_ms = now_ms().saturating_add(duration_ms);
                s.record(
                    EntryKind::Sleep {
                        duration_ms,
                        wake_at_ms,
                    },
                    0,
                )
                .await?;
                if Duration::from_millis(duration_ms) <= s.inline_sleep_max {
                    tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                }
                wake_at_ms
            }
        };
        if now_ms() < wake_at_ms {
            return Err(s.stop(End::Suspend {
                wait: Wait::Timer { wake_at_ms },
                consumed: 0,
            }));
        }
        s.progress();
        Ok(())
    }

    async fn await_signal(&mut self, name: String) -> wasmtime::Result<Vec<u8>> {
        let s = &mut self.steps;
        s.enter();
        let consumed = s.consumed.get(&name).copied().unwrap_or(0);
        let replayed = s.replay(
            || Call::Signal { name: name.clone() },
            |k| k.replay_signal(&name),
        )?;
        let payload = match replayed {
            Some(payload) => payload,
            None => {
                let found = s.find_signal(&name, consumed).await?;
                let Some(sig) = found else {
                    return Err(s.stop(End::Suspend {
                        wait: Wait::Signal { name },
                        consumed,
                    }));
                };
                s.record(
                    EntryKind::Signal {
                        name: name.clone(),
                        seq: sig.seq,
                        payload: sig.payload.clone(),
                    },
                    0,
                )
                .await?;
                sig.payload
            }
        };
        s.consumed.insert(name, consumed + 1);
        s.progress();
        Ok(payload)
    }

    async fn emit(&mut self, item: Vec<u8>) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        s.enter();
        let item_digest = Digest::of(&item);
        let len = item.len() as u64;
        if s.replay(
            || Call::Emit { item_digest },
            |k| k.replay_emit(&item_digest),
        )?
        .is_none()
        {
            if s.writer.failed() {
                let e = s.writer.flush().await.err();
                let e = e.unwrap_or_else(|| StoreError::Unavailable("journal write failed".into()));
                return Err(s.stop(End::Store(e)));
            }
            match s.pacer.make_room(&*s.store, &s.id, len, &s.drain).await {
                Ok(()) => {}
                Err(Blocked::Full { wake_at_ms }) => {
                    return Err(s.stop(End::Suspend {
                        wait: Wait::Consumers {
                            wake_at_ms,
                            item_len: len,
                        },
                        consumed: 0,
                    }));
                }
                Err(Blocked::Abandoned) => {
                    tracing::info!(
                        execution = %s.id,
                        "every consumer of the stream left: cancelling the execution"
                    );
                    return Err(s.stop(End::Finished(Outcome::Cancelled)));
                }
                Err(Blocked::Store(e)) => return Err(s.stop(End::Store(e))),
            }
            // Durable soon, not yet: the guest goes on while the writer
            // writes it, with whatever else it emits meanwhile.
            let entry = Entry {
                at_ms: now_ms(),
                duration_us: 0,
                kind: EntryKind::Emit { item },
            };
            s.queue(entry).await?;
        }
        s.pacer.emitted(len);
        s.progress();
        Ok(())
    }

    async fn checkpoint(&mut self) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        s.enter();
        if s.replay(|| Call::Checkpoint, EntryKind::replay_checkpoint)?
            .is_none()
        {
            s.record(EntryKind::Checkpoint, 0).await?;
        }
        s.progress();
        Ok(())
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        let value = match s.replay(|| Call::Now, EntryKind::replay_now)? {
            Some(value) => value,
            None => {
                let value = now_ms();
                s.record(EntryKind::Now { value }, 0).await?;
                value
            }
        };
        s.progress();
        Ok(value)
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        let value = match s.replay(|| Call::Random, EntryKind::replay_random)? {
            Some(value) => value,
            None => {
                let value = rand::random();
                s.record(EntryKind::Random { value }, 0).await?;
                value
            }
        };
        s.progress();
        Ok(value)
    }

    async fn start_tool(
        &mut self,
        category: String,
        name: String,
        input: Vec<u8>,
        retry: Option<RetryPolicy>,
    ) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        let retry = match Retry::new(retry) {
            Ok(retry) => retry,
            Err(message) => {
                return Err(s.invalid(format!("start-tool {category}/{name}: {message}")));
            }
        };
        let input_key = InputKey::of(&input);
        let call = StartCall::Tool {
            category: category.clone(),
            name: name.clone(),
            input: input_key,
        };
        let input_len = input.len() as u64;
        let (handle, started, run) = s
            .start(call, || Started::Tool {
                category: category.clone(),
                name: name.clone(),
                input: input_key,
                input_len,
            })
            .await?;
        // A sandboxed replay runs no call (its tools are not real).
        if run && !s.sandbox {
            let Some(tool) = s.tools.get(&category, &name) else {
                return Err(s.missing_tool(&category, &name));
            };
            let mut call = s.tool_call(category, name, input, handle);
            call.traceparent = s
                .trace
                .as_ref()
                .and_then(|t| t.traceparent())
                .map(String::from);
            s.spawn_tool(handle, tool, call, input_key, retry);
        } else {
            s.pend(handle, &started);
        }
        s.progress();
        Ok(handle)
    }

    async fn start_timer(&mut self, duration_ms: u64) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        let (handle, started, _) = s
            .start(StartCall::Timer { duration_ms }, || Started::Timer {
                duration_ms,
                wake_at_ms: now_ms().saturating_add(duration_ms),
            })
            .await?;
        s.pend(handle, &started);
        s.progress();
        Ok(handle)
    }

    async fn start_signal(&mut self, name: String) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        if name.starts_with(RESERVED_SIGNAL_PREFIX) {
            return Err(s.invalid(format!(
                "start-signal {name:?}: names starting with {RESERVED_SIGNAL_PREFIX:?} are \
                 reserved for the host"
            )));
        }
        let (handle, started, _) = s
            .start(StartCall::Signal { name: name.clone() }, || {
                Started::Signal { name }
            })
            .await?;
        s.pend(handle, &started);
        s.progress();
        Ok(handle)
    }

    async fn start_child(&mut self, workflow: String, input: Vec<u8>) -> wasmtime::Result<u64> {
        let s = &mut self.steps;
        s.enter();
        let input_key = InputKey::of(&input);
        let call = StartCall::Child {
            workflow: workflow.clone(),
            input: input_key,
        };
        let input_len = input.len() as u64;
        let parent = s.id.clone();
        let handle = s.position();
        let id = child_id(&parent, handle);
        if !s.replaying() {
            // The child exists before its start entry is written: a crash
            // in between leaves a child the replayed start finds again.
            // (No child is made for a start that would fail.)
            if s.sandbox {
                // Past the replayed entries: where a sandbox stops.
                return Err(s.stop(End::Suspend {
                    wait: Wait::Ready,
                    consumed: 0,
                }));
            }
            s.check_room()?;
            s.ensure_child(handle, &workflow, input.clone(), &id)
                .await?;
        }
        // A replayed start needs nothing more: its child was created before
        // its entry was written. (One left ready by a crash before it was
        // queued is found by the queue's sweep, or `recover`.)
        let (handle, started, _) = s
            .start(call, || Started::Child {
                workflow: workflow.clone(),
                input: input_key,
                input_len,
                id: id.clone(),
            })
            .await?;
        s.pend(handle, &started);
        s.progress();
        Ok(handle)
    }

    async fn await_any(&mut self, handles: Vec<u64>) -> wasmtime::Result<(u64, Completion)> {
        let s = &mut self.steps;
        s.enter();
        let Observed { handle, value } = s.await_any(&handles).await?;
        let completion = s.completion(handle, value).await?;
        s.progress();
        Ok((handle, completion))
    }

    async fn await_all(&mut self, handles: Vec<u64>) -> wasmtime::Result<Vec<(u64, Completion)>> {
        let s = &mut self.steps;
        s.enter();
        let observed = s.await_all(&handles).await?;
        let mut out = Vec::with_capacity(observed.len());
        for Observed { handle, value } in observed {
            out.push((handle, s.completion(handle, value).await?));
        }
        s.progress();
        Ok(out)
    }

    async fn forget(&mut self, handle: u64) -> wasmtime::Result<()> {
        self.steps.join.forget(handle);
        Ok(())
    }

    /// Not progress: a guest that only logs still hits its time limit.
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let s = &mut self.steps;
        if let Some(lines) = &mut s.captured {
            if lines.len() < super::MAX_CAPTURED_LINES {
                lines.push(super::LogLine {
                    after: s.cursor as u64,
                    level: match level {
                        Level::Trace => "trace",
                        Level::Debug => "debug",
                        Level::Info => "info",
                        Level::Warn => "warn",
                        Level::Error => "error",
                    },
                    message: super::guard::sanitize(&message, s.log.line_bytes()),
                });
            }
            return Ok(());
        }
        if !s.replaying()
            && let Some(message) = s.log.admit(&message)
        {
            let id = s.id.as_str();
            match level {
                Level::Trace => tracing::trace!(execution = id, "{message}"),
                Level::Debug => tracing::debug!(execution = id, "{message}"),
                Level::Info => tracing::info!(execution = id, "{message}"),
                Level::Warn => tracing::warn!(execution = id, "{message}"),
                Level::Error => tracing::error!(execution = id, "{message}"),
            }
        }
        Ok(())
    }
}

/// The id of the child started by entry `handle` of `parent`: the same on
/// every replay. `<parent>.<handle>` when it fits, else a digest of the
/// parent's id stands for it.
fn child_id(parent: &ExecutionId, handle: u64) -> ExecutionId {
    let id = format!("{parent}.{handle}");
    let id = if id.len() <= ExecutionId::MAX_LEN {
        id
    } else {
        format!(
            "{}.{handle}",
            &Digest::of(parent.as_str().as_bytes()).to_string()[..40]
        )
    };
    ExecutionId::new(id).expect("a parent id and a number make a valid id")
}

impl InvocationState {
    /// `call-tool` while the guest is behind the journal: the recorded
    /// result if the next entry records this call, nondeterminism if it
    /// records another. `None` past the journal (the budget checked): the
    /// call is [`InvocationState::run_tool`]'s. (The current world's
    /// import, `fast.rs`, replays a matching call without this, its input
    /// still in the guest's memory.)
    pub(super) async fn replay_tool(
        &mut self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> wasmtime::Result<Option<Result<Bytes, ToolError>>> {
        self.steps.enter();
        let replayed = self.steps.replay(
            || Call::Tool {
                category: category.to_owned(),
                name: name.to_owned(),
                input_digest: Digest::of(input),
            },
            |k| k.replay_tool(category, name, input),
        )?;
        match replayed {
            None => Ok(None),
            Some(recorded) => self.recorded_tool(recorded).await.map(Some),
        }
    }

    /// Replays the next entry, which [`Steps::replays_tool`] found to
    /// record the guest's `call-tool`: the current world's import compares
    /// the call in place, with its arguments still in the guest's memory,
    /// and copies nothing out for a replayed call.
    pub(super) async fn replay_matched_tool(
        &mut self,
    ) -> wasmtime::Result<Result<Bytes, ToolError>> {
        self.steps.enter();
        // Only the result moves out of the entry: this is every replayed
        // call's path, and moving whole entries showed in its time.
        match self.steps.take_matched_tool() {
            Some(RecordedTool::Inline(result)) => {
                self.steps.progress();
                Ok(result.map_err(tool_error))
            }
            Some(stored) => self.recorded_tool(stored).await,
            None => Err(wasmtime::Error::msg(
                "a matched tool call found no journal entry to replay",
            )),
        }
    }

    /// A replayed tool call's result, fetched from the store if it was
    /// kept apart (a large one).
    async fn recorded_tool(
        &mut self,
        recorded: RecordedTool,
    ) -> wasmtime::Result<Result<Bytes, ToolError>> {
        let s = &mut self.steps;
        let result = match recorded {
            RecordedTool::Inline(result) => result,
            RecordedTool::Stored { digest, len } => match s.store.get_blob(&digest, len).await {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(e) => return Err(s.stop(End::Store(e))),
            },
        };
        s.progress();
        Ok(result.map_err(tool_error))
    }

    /// `call-tool` past the journal: runs the tool and records its result
    /// (durably) before the guest sees it.
    pub(super) async fn run_tool(
        &mut self,
        category: String,
        name: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Bytes, ToolError>> {
        let s = &mut self.steps;
        let Some(tool) = s.tools.get(&category, &name) else {
            return Err(s.missing_tool(&category, &name));
        };
        let input_len = input.len() as u64;
        let input_key = InputKey::of(&input);
        let span = s.trace.as_ref().map(|t| t.step("tool", s.next_index));
        let mut call = s.tool_call(category.clone(), name.clone(), input, s.next_index);
        call.traceparent = span
            .as_ref()
            .and_then(|span| span.traceparent())
            .map(String::from);
        let started = Instant::now();
        let result = tool.call(call).await;
        let elapsed = started.elapsed();
        s.metrics
            .tool_seconds
            .get_or_create(&CategoryLabel {
                category: category.clone(),
            })
            .observe(elapsed.as_secs_f64());
        let duration_us = elapsed.as_micros() as u64;
        let label = span.as_ref().map(|_| format!("{category}/{name}"));
        let end_span = |ok: bool| {
            if let (Some(span), Some(label)) = (span, label) {
                span.end([
                    KeyValue::new("reprise.tool", label),
                    KeyValue::new("reprise.step.duration_us", duration_us as i64),
                    KeyValue::new("reprise.tool.ok", ok),
                ]);
            }
        };
        let ok = result.is_ok();
        let kind = EntryKind::Tool {
            category: category.into(),
            name: name.into(),
            input: input_key,
            input_len,
            result: result.map(Bytes::from),
        };
        // The step that spends the budget ends the invocation unseen.
        let kind = match s.spend(kind, duration_us) {
            Ok(kind) => kind,
            Err(stop) => {
                end_span(ok);
                return Err(stop);
            }
        };
        // The entry owns the result while it is written, and gives
        // it back: a large result is never copied on the host.
        let recorded = s.record(kind, duration_us).await?;
        end_span(ok);
        let EntryKind::Tool { result, .. } = recorded else {
            unreachable!("the journal writer hands back the entry it was given")
        };
        s.progress();
        Ok(result.map_err(tool_error))
    }
}

fn tool_error(e: ToolFailure) -> ToolError {
    ToolError {
        code: e.code,
        message: e.message,
        details: e.details,
    }
}

impl Steps {
    /// What the guest gets for a completion's journaled value.
    async fn completion(&mut self, handle: u64, value: EntryKind) -> wasmtime::Result<Completion> {
        Ok(match value {
            EntryKind::Tool { result, .. } => {
                Completion::Tool(result.map(Vec::from).map_err(tool_error))
            }
            EntryKind::ToolStored {
                result_digest,
                result_len,
                ..
            } => match self.store.get_blob(&result_digest, result_len).await {
                Ok(bytes) => Completion::Tool(Ok(bytes)),
                Err(e) => return Err(self.stop(End::Store(e))),
            },
            EntryKind::Sleep { .. } => Completion::Timer,
            EntryKind::Signal { name, payload, .. } if name.starts_with(RESERVED_SIGNAL_PREFIX) => {
                match crate::persist::decode::<ChildEnd>(&payload) {
                    Ok(ChildEnd::Completed(out)) => Completion::Child(Ok(out)),
                    Ok(ChildEnd::Failed {
                        kind,
                        message,
                        code,
                        details,
                    }) => Completion::Child(Err(ChildError {
                        // A child end recorded before format 4 has no code.
                        code: code.or_else(|| {
                            (kind == FailureKind::Workflow.as_str())
                                .then(|| UNCODED_WORKFLOW_ERROR.to_string())
                        }),
                        kind,
                        message,
                        details,
                    })),
                    Err(e) => return Err(self.stop(End::Store(e))),
                }
            }
            EntryKind::Signal { payload, .. } => Completion::Signal(payload),
            other => {
                return Err(self.fail(
                    FailureKind::Nondeterminism,
                    format!(
                        "journal entry of handle {handle} records a completion of kind `{}`, \
                         which no started operation has",
                        other.label()
                    ),
                ));
            }
        })
    }

    /// Fails the execution: the component needs a tool this host lacks.
    fn missing_tool(&mut self, category: &str, name: &str) -> wasmtime::Error {
        let offered: Vec<String> = self
            .tools
            .addresses()
            .into_iter()
            .map(|(c, n)| format!("{c}/{n}"))
            .collect();
        self.fail(
            FailureKind::MissingTool,
            format!(
                "the workflow called tool {category}/{name}, which this host does not offer \
                 (offered: {})",
                offered.join(", ")
            ),
        )
    }
}
