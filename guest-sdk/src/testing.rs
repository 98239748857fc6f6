//! Run a workflow under `cargo test`, with scripted tools, signals,
//! children and a virtual clock, and check that it replays.
//!
//! [`TestEnv::run`] runs the workflow function twice. The first run is
//! served by the scripts and records a journal, as a host would. The second
//! run replays that journal without calling a script, as a host does when
//! it resumes an execution in a fresh instance, and fails the test if the
//! workflow asks for anything else than what it asked the first time, or
//! ends differently: the nondeterminism a host would report, found before
//! deploying.
//!
//! ```
//! use reprise_sdk::testing::TestEnv;
//! use reprise_sdk::{CallError, Context, Tool, ToolError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct UserQuery { pub id: u64 }
//! #[derive(Serialize, Deserialize)]
//! pub struct User { pub name: String }
//! pub const USER: Tool<UserQuery, User> = Tool::new("demo", "user");
//!
//! // In a crate, this function carries `#[workflow]`.
//! fn greet(ctx: &Context, id: u64) -> Result<String, CallError> {
//!     let user = ctx.call_tool(USER, &UserQuery { id })?;
//!     Ok(format!("Hello, {}!", user.name))
//! }
//!
//! let run = TestEnv::new()
//!     .on(USER, |q: UserQuery| match q.id {
//!         1 => Ok(User { name: "Ada".into() }),
//!         _ => Err(ToolError::new("not-found", "no such user")),
//!     })
//!     .run(greet, &1u64);
//! assert_eq!(run.output(), "Hello, Ada!");
//!
//! let run = TestEnv::new()
//!     .on(USER, |_: UserQuery| Err::<User, _>(ToolError::new("not-found", "no such user")))
//!     .run(greet, &2u64);
//! assert_eq!(run.error(), Some("tool error not-found: no such user"));
//! ```
//!
//! # The simulated host
//!
//! - **Time** is virtual: it starts at [`TestEnv::start_time`] (by default
//!   2026-01-01T00:00:00Z) and moves only when the workflow waits: a
//!   `sleep`, a timer, a signal scheduled with [`TestEnv::signal_after`], a
//!   tool given a [`TestEnv::latency`]. [`Context::now`] reads it. A test
//!   never sleeps for real.
//! - **Tools** answer at once (after their latency) in the order started;
//!   a retry policy is applied as the host applies it, each attempt calling
//!   the script again. A tool the test does not script panics, naming it.
//! - **Signals** are delivered in the order they are scheduled; one a
//!   workflow waits for and the test never sends panics (the workflow
//!   would wait forever).
//! - **Children** are scripted like tools, by workflow name
//!   ([`TestEnv::child`]).
//! - Logs are printed on the first run (the test harness captures them)
//!   and kept in [`TestRun::logs`]; like the host, replay is silent.
//!
//! Only what goes through the [`Context`] is journaled. A workflow that
//! branches on anything else (a global counter, an environment variable,
//! the real clock read natively) fails the replay check with the entry
//! and both calls named.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::bindings::reprise::workflow::types;
use crate::{
    ChildError, Context, IntoWorkflowError, Tool, ToolError, WorkflowError, decode, encode, sys,
};

mod journal;
mod world;

use journal::{Answer, Entry, Request, describe_payload};
use world::{Started, World};

type ToolScript = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, ToolError>>;
type ChildScript = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, ChildError>>;

/// 2026-01-01T00:00:00Z, the default start of virtual time.
const DEFAULT_START_MS: u64 = 1_767_225_600_000;

impl ToolError {
    /// A tool error with this code and message and no details: what a
    /// scripted tool returns to fail.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }
}

/// The scripted host a test runs a workflow against: build it with the
/// tools, signals and children the workflow needs, then [`TestEnv::run`].
pub struct TestEnv {
    tools: HashMap<(String, String), ToolScript>,
    latency: HashMap<(String, String), u64>,
    children: HashMap<String, ChildScript>,
    /// (due, order scheduled, name, payload).
    signals: Vec<(u64, usize, String, Vec<u8>)>,
    start_ms: u64,
    seed: u64,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// An environment with no tool, no signal and no child.
    pub fn new() -> Self {
        Self {
            tools: HashMap::new(),
            latency: HashMap::new(),
            children: HashMap::new(),
            signals: Vec::new(),
            start_ms: DEFAULT_START_MS,
            seed: 0x5eed,
        }
    }

    /// Scripts the tool `category`/`name`: each call decodes the workflow's
    /// input as `In` and answers with `script`'s result.
    pub fn tool<In, Out, F>(mut self, category: &str, name: &str, mut script: F) -> Self
    where
        In: DeserializeOwned,
        Out: Serialize,
        F: FnMut(In) -> Result<Out, ToolError> + 'static,
    {
        let address = format!("{category}/{name}");
        let run = move |input: &[u8]| {
            let input = decode(input).unwrap_or_else(|e| {
                panic!("tool {address}: the workflow's input does not decode as the script's input type: {e}")
            });
            script(input).map(|out| encode(&out))
        };
        self.tools
            .insert((category.to_string(), name.to_string()), Box::new(run));
        self
    }

    /// Scripts a typed tool (see [`Tool`]): the script's types are the
    /// declaration's.
    pub fn on<In, Out, F>(self, tool: Tool<In, Out>, script: F) -> Self
    where
        In: DeserializeOwned,
        Out: Serialize,
        F: FnMut(In) -> Result<Out, ToolError> + 'static,
    {
        self.tool(tool.category(), tool.name(), script)
    }

    /// Each call of `category`/`name` takes `latency` of virtual time
    /// (so a deadline raced against it can pass first).
    pub fn latency(mut self, category: &str, name: &str, latency: Duration) -> Self {
        self.latency
            .insert((category.to_string(), name.to_string()), millis(latency));
        self
    }

    /// Sends the signal `name` with `payload` before the workflow starts
    /// (it stays buffered until the workflow waits for it).
    pub fn signal(self, name: &str, payload: &(impl Serialize + ?Sized)) -> Self {
        self.signal_after(Duration::ZERO, name, payload)
    }

    /// Sends the signal `name` with `payload` at `after` of virtual time
    /// from the start.
    pub fn signal_after(
        mut self,
        after: Duration,
        name: &str,
        payload: &(impl Serialize + ?Sized),
    ) -> Self {
        let order = self.signals.len();
        self.signals
            .push((millis(after), order, name.to_string(), encode(payload)));
        self
    }

    /// Scripts the child workflow `workflow`: a child started with its
    /// name ends with `script`'s result.
    pub fn child<In, Out, E, F>(mut self, workflow: &str, mut script: F) -> Self
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: Into<ChildError>,
        F: FnMut(In) -> Result<Out, E> + 'static,
    {
        let name = workflow.to_string();
        let run = move |input: &[u8]| {
            let input = decode(input).unwrap_or_else(|e| {
                panic!("child {name}: the workflow's input does not decode as the script's input type: {e}")
            });
            script(input).map(|out| encode(&out)).map_err(Into::into)
        };
        self.children.insert(workflow.to_string(), Box::new(run));
        self
    }

    /// Where virtual time starts.
    pub fn start_time(mut self, at: SystemTime) -> Self {
        self.start_ms = millis(at.duration_since(UNIX_EPOCH).unwrap_or_default());
        self
    }

    /// The seed of [`Context::random`]'s numbers.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs `workflow` on `input` (encoded and decoded as the host does),
    /// then replays it; panics with the difference if the replay differs.
    pub fn run<In, Out, E>(
        self,
        workflow: fn(&Context, In) -> Result<Out, E>,
        input: &(impl Serialize + ?Sized),
    ) -> TestRun<Out>
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: IntoWorkflowError,
    {
        self.try_run(workflow, input)
            .unwrap_or_else(|mismatch| panic!("{mismatch}"))
    }

    /// [`TestEnv::run`], with the replay's difference as an error.
    pub fn try_run<In, Out, E>(
        self,
        workflow: fn(&Context, In) -> Result<Out, E>,
        input: &(impl Serialize + ?Sized),
    ) -> Result<TestRun<Out>, Nondeterminism>
    where
        In: DeserializeOwned,
        Out: Serialize,
        E: IntoWorkflowError,
    {
        let input = encode(input);
        let start_ms = self.start_ms;
        let recording = Rc::new(Sim::Record(RefCell::new(Box::new(World::new(self)))));
        let result = invoke(&recording, workflow, &input);
        let Sim::Record(world) =
            Rc::try_unwrap(recording).unwrap_or_else(|_| unreachable!("the context is dropped"))
        else {
            unreachable!()
        };
        let world = world.into_inner();

        let replaying = Rc::new(Sim::Replay(RefCell::new(Replay {
            journal: world.journal.clone(),
            cursor: 0,
        })));
        let replayed = catch_unwind(AssertUnwindSafe(|| invoke(&replaying, workflow, &input)));
        let replayed = match replayed {
            Ok(replayed) => replayed,
            Err(panic) => match panic.downcast::<Nondeterminism>() {
                Ok(mismatch) => return Err(*mismatch),
                Err(panic) => resume_unwind(panic),
            },
        };
        let Sim::Replay(replay) = &*replaying else {
            unreachable!()
        };
        let replay = replay.borrow();
        if let Some(left) = replay.journal.get(replay.cursor) {
            return Err(Nondeterminism {
                entry: replay.cursor,
                recorded: left.request.to_string(),
                replayed: "the end of the workflow".into(),
            });
        }
        let encoded = |r: &Result<Out, WorkflowError>| r.as_ref().map(encode).map_err(Clone::clone);
        if encoded(&result) != encoded(&replayed) {
            return Err(Nondeterminism {
                entry: replay.cursor,
                recorded: format!("the workflow ended with {}", ending(&result)),
                replayed: format!("the workflow ended with {}", ending(&replayed)),
            });
        }
        Ok(TestRun {
            result,
            calls: world.calls,
            emitted: world.emitted,
            logs: world.logs,
            journal_len: world.journal.len(),
            elapsed: Duration::from_millis(world.now_ms - start_ms),
        })
    }
}

fn ending<Out: Serialize>(result: &Result<Out, WorkflowError>) -> String {
    match result {
        Ok(out) => format!("the output {}", describe_payload(&encode(out))),
        Err(e) => format!(
            "the error {} {:?}{}",
            e.code,
            e.message,
            e.details
                .as_deref()
                .map(|d| format!(" (details {})", describe_payload(d)))
                .unwrap_or_default()
        ),
    }
}

/// Runs the workflow once against `sim`, as a component does: a bad input
/// is the workflow's error, not a panic.
fn invoke<In, Out, E>(
    sim: &Rc<Sim>,
    workflow: fn(&Context, In) -> Result<Out, E>,
    input: &[u8],
) -> Result<Out, WorkflowError>
where
    In: DeserializeOwned,
    E: IntoWorkflowError,
{
    let input: In = decode(input).map_err(crate::__private::invalid_input)?;
    let ctx = Context {
        scripted: Some(sim.clone() as Rc<dyn sys::Host>),
    };
    workflow(&ctx, input).map_err(IntoWorkflowError::into_workflow_error)
}

/// A replay that did not ask for what the first run recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nondeterminism {
    /// The journal entry where they part.
    pub entry: usize,
    /// What the first run did there.
    pub recorded: String,
    /// What the replay did instead.
    pub replayed: String,
}

impl fmt::Display for Nondeterminism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nondeterminism at journal entry {}: the first run recorded {}, the replay made {}. \
             The workflow depends on something that is not journaled (read values through the Context)",
            self.entry, self.recorded, self.replayed
        )
    }
}

impl std::error::Error for Nondeterminism {}

/// One tool attempt the workflow made on the first run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool's category.
    pub category: String,
    /// The tool's name.
    pub name: String,
    /// Its input, encoded.
    pub input: Vec<u8>,
}

impl ToolCall {
    /// Decodes the input.
    pub fn input<T: DeserializeOwned>(&self) -> T {
        decode(&self.input).expect("tool input decodes")
    }
}

/// What a tested workflow did (its first run; the replay matched it).
#[derive(Debug)]
pub struct TestRun<Out> {
    result: Result<Out, WorkflowError>,
    calls: Vec<ToolCall>,
    emitted: Vec<Vec<u8>>,
    logs: Vec<String>,
    journal_len: usize,
    elapsed: Duration,
}

impl<Out> TestRun<Out> {
    /// The workflow's output, or its error's message.
    pub fn result(&self) -> Result<&Out, &str> {
        self.result.as_ref().map_err(|e| e.message.as_str())
    }

    /// The output; panics with the error if the workflow failed.
    pub fn output(self) -> Out {
        match self.result {
            Ok(out) => out,
            Err(e) => panic!("the workflow failed: {} {}", e.code, e.message),
        }
    }

    /// The error's message, if the workflow failed.
    pub fn error(&self) -> Option<&str> {
        self.result.as_ref().err().map(|e| e.message.as_str())
    }

    /// The error the workflow failed with: its code, message and details
    /// (the code is `error` for an error type other than [`WorkflowError`]).
    pub fn workflow_error(&self) -> Option<&WorkflowError> {
        self.result.as_ref().err()
    }

    /// Every tool attempt, in the order made.
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// The items the workflow emitted, decoded.
    pub fn emitted<T: DeserializeOwned>(&self) -> Vec<T> {
        self.emitted
            .iter()
            .map(|item| decode(item).expect("emitted item decodes"))
            .collect()
    }

    /// The log lines, `LEVEL message`.
    pub fn logs(&self) -> &[String] {
        &self.logs
    }

    /// How many journal entries the run recorded.
    pub fn journal_len(&self) -> usize {
        self.journal_len
    }

    /// Virtual time from start to end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// The scripted host: recording the first run, replaying the second.
enum Sim {
    Record(RefCell<Box<World>>),
    Replay(RefCell<Replay>),
}

struct Replay {
    journal: Vec<Entry>,
    cursor: usize,
}

impl Sim {
    /// One journaled call: on the first run `work` answers it and the
    /// entry is recorded; on replay the recorded answer is returned if the
    /// call is the one recorded, and the replay stops if it is not.
    fn step(&self, request: Request, work: impl FnOnce(&mut World) -> Answer) -> Answer {
        match self {
            Sim::Record(world) => {
                let mut world = world.borrow_mut();
                let answer = work(&mut world);
                world.journal.push(Entry {
                    request,
                    answer: answer.clone(),
                });
                answer
            }
            Sim::Replay(replay) => {
                let mut replay = replay.borrow_mut();
                let at = replay.cursor;
                let Some(recorded) = replay.journal.get(at) else {
                    resume_unwind(Box::new(Nondeterminism {
                        entry: at,
                        recorded: "the end of the workflow".into(),
                        replayed: request.to_string(),
                    }))
                };
                if !recorded.answers(&request) {
                    resume_unwind(Box::new(Nondeterminism {
                        entry: at,
                        recorded: recorded.request.to_string(),
                        replayed: request.to_string(),
                    }))
                }
                let answer = recorded.answer.clone();
                replay.cursor += 1;
                answer
            }
        }
    }

    /// The handle a start gets: its journal index, as on the host.
    fn next_index(&self) -> u64 {
        match self {
            Sim::Record(world) => world.borrow().journal.len() as u64,
            Sim::Replay(replay) => replay.borrow().cursor as u64,
        }
    }

    fn world(&self) -> Option<std::cell::RefMut<'_, World>> {
        match self {
            Sim::Record(world) => Some(std::cell::RefMut::map(world.borrow_mut(), |w| &mut **w)),
            Sim::Replay(_) => None,
        }
    }
}

impl sys::Host for Sim {
    fn call_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, types::ToolError> {
        let request = Request::Call {
            category: category.into(),
            name: name.into(),
            input: input.to_vec(),
        };
        self.step(request, |w| {
            let (result, took) = w.call(category, name, input, None);
            w.now_ms += took;
            Answer::Tool(result.map_err(to_wit))
        })
        .into_tool()
    }

    fn sleep(&self, duration_ms: u64) {
        self.step(Request::Sleep(duration_ms), |w| {
            w.now_ms = w.now_ms.saturating_add(duration_ms);
            Answer::Unit
        });
    }

    fn await_signal(&self, name: &str) -> Vec<u8> {
        self.step(Request::AwaitSignal(name.into()), |w| {
            let Some(i) = w.signal_position(name, 0) else {
                panic!(
                    "the workflow waits forever: it waits for the signal {name:?} and the test sends none \
                     (add .signal({name:?}, payload))"
                )
            };
            let (at, _, _, payload) = w.env.signals.remove(i);
            w.now_ms = w.now_ms.max(at);
            Answer::Bytes(payload)
        })
        .into_bytes()
    }

    fn emit(&self, item: &[u8]) {
        self.step(Request::Emit(item.to_vec()), |w| {
            w.emitted.push(item.to_vec());
            Answer::Unit
        });
    }

    fn checkpoint(&self) {
        self.step(Request::Checkpoint, |_| Answer::Unit);
    }

    fn now(&self) -> u64 {
        self.step(Request::Now, |w| Answer::U64(w.now_ms))
            .into_u64()
    }

    fn random(&self) -> u64 {
        self.step(Request::Random, |w| {
            // splitmix64: a fixed sequence per seed.
            w.rng = w.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = w.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            Answer::U64(z ^ (z >> 31))
        })
        .into_u64()
    }

    fn log(&self, level: types::Level, message: &str) {
        if let Some(mut world) = self.world() {
            let level = match level {
                types::Level::Trace => "TRACE",
                types::Level::Debug => "DEBUG",
                types::Level::Info => "INFO",
                types::Level::Warn => "WARN",
                types::Level::Error => "ERROR",
            };
            let line = format!("{level} {message}");
            eprintln!("{line}");
            world.logs.push(line);
        }
    }

    fn start_tool(
        &self,
        category: &str,
        name: &str,
        input: &[u8],
        retry: Option<&types::RetryPolicy>,
    ) -> u64 {
        let handle = self.next_index();
        let request = Request::StartTool {
            category: category.into(),
            name: name.into(),
            input: input.to_vec(),
        };
        self.step(request, |w| {
            let (result, took) = w.call(category, name, input, retry);
            let completion = types::Completion::Tool(result.map_err(to_wit));
            w.pending
                .insert(handle, Started::Done(w.now_ms + took, completion));
            Answer::U64(handle)
        })
        .into_u64()
    }

    fn start_timer(&self, duration_ms: u64) -> u64 {
        let handle = self.next_index();
        self.step(Request::StartTimer(duration_ms), |w| {
            let due = w.now_ms.saturating_add(duration_ms);
            w.pending.insert(handle, Started::Timer(due));
            Answer::U64(handle)
        })
        .into_u64()
    }

    fn start_signal(&self, name: &str) -> u64 {
        let handle = self.next_index();
        self.step(Request::StartSignal(name.into()), |w| {
            w.pending.insert(handle, Started::Signal(name.into()));
            Answer::U64(handle)
        })
        .into_u64()
    }

    fn start_child(&self, workflow: &str, input: &[u8]) -> u64 {
        let handle = self.next_index();
        let request = Request::StartChild {
            workflow: workflow.into(),
            input: input.to_vec(),
        };
        self.step(request, |w| {
            let Some(script) = w.env.children.get_mut(workflow) else {
                panic!(
                    "the workflow started the child workflow {workflow:?}, which this TestEnv does not script \
                     (add .child({workflow:?}, ...))"
                )
            };
            let result = script(input).map_err(|e| types::ChildError {
                kind: e.kind,
                message: e.message,
                code: e.code,
                details: e.details,
            });
            let now = w.now_ms;
            w.pending
                .insert(handle, Started::Done(now, types::Completion::Child(result)));
            Answer::U64(handle)
        })
        .into_u64()
    }

    fn await_any(&self, handles: &[u64]) -> (u64, types::Completion) {
        self.step(Request::AwaitAny(handles.to_vec()), |w| {
            let (handle, completion) = w.await_any(handles);
            Answer::Completions(vec![(handle, completion)])
        })
        .into_completions()
        .pop()
        .expect("one completion")
    }

    fn await_all(&self, handles: &[u64]) -> Vec<(u64, types::Completion)> {
        self.step(Request::AwaitAll(handles.to_vec()), |w| {
            let mut left = handles.to_vec();
            let mut done = Vec::with_capacity(left.len());
            while !left.is_empty() {
                let (handle, completion) = w.await_any(&left);
                left.retain(|h| *h != handle);
                done.push((handle, completion));
            }
            Answer::Completions(done)
        })
        .into_completions()
    }

    fn forget(&self, handle: u64) {
        // Not journaled, as on the host: the handle is simply dropped.
        if let Some(mut world) = self.world() {
            world.pending.remove(&handle);
        }
    }
}

fn to_wit(e: ToolError) -> types::ToolError {
    types::ToolError {
        code: e.code,
        message: e.message,
        details: e.details,
    }
}
