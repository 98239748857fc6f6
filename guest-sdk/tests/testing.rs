//! `reprise_sdk::testing` on workflows of every kind: what a user's
//! `cargo test` runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reprise_sdk::testing::TestEnv;
use reprise_sdk::{
    CallError, ChildError, Context, Race, RetryPolicy, Tool, ToolError, WorkflowError, workflow,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct UserQuery {
    id: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct User {
    name: String,
}

const USER: Tool<UserQuery, User> = Tool::new("demo", "user");

/// Compiled natively with `#[workflow]`, as a user's crate is under
/// `cargo test`.
#[workflow]
fn greet(ctx: &Context, id: u64) -> Result<String, CallError> {
    let user = ctx.call_tool(USER, &UserQuery { id })?;
    ctx.emit(&user.name);
    Ok(format!("Hello, {}!", user.name))
}

fn users(q: UserQuery) -> Result<User, ToolError> {
    match q.id {
        1 => Ok(User { name: "Ada".into() }),
        _ => Err(ToolError::new("not-found", "no such user")),
    }
}

#[test]
fn a_scripted_tool_answers_and_the_replay_matches() {
    let run = TestEnv::new().on(USER, users).run(greet, &1u64);
    assert_eq!(run.calls().len(), 1);
    assert_eq!(run.calls()[0].input::<UserQuery>(), UserQuery { id: 1 });
    assert_eq!(run.emitted::<String>(), vec!["Ada".to_string()]);
    assert_eq!(run.journal_len(), 2);
    assert_eq!(run.output(), "Hello, Ada!");

    let run = TestEnv::new().on(USER, users).run(greet, &7u64);
    assert_eq!(run.error(), Some("tool error not-found: no such user"));
}

#[test]
fn a_result_of_the_wrong_type_is_a_decode_error_not_a_tool_error() {
    fn typed(ctx: &Context, _: ()) -> Result<String, String> {
        match ctx.call_tool(USER, &UserQuery { id: 1 }) {
            Err(CallError::Decode(e)) => Ok(format!("decode: {e}")),
            other => Err(format!("expected a decode error, got {other:?}")),
        }
    }
    let run = TestEnv::new()
        .tool("demo", "user", |_: UserQuery| Ok::<_, ToolError>(42u32))
        .run(typed, &());
    assert!(run.output().starts_with("decode: cannot decode payload"));
}

/// Reads a value that is not journaled: a counter that survives between
/// the first run and the replay, as a global would across invocations.
static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

fn nondeterministic(ctx: &Context, _: ()) -> Result<String, CallError> {
    let id = INVOCATIONS.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(ctx.call_tool(USER, &UserQuery { id })?.name)
}

fn named_user(q: UserQuery) -> Result<User, ToolError> {
    Ok(User {
        name: format!("u{}", q.id),
    })
}

#[test]
fn a_workflow_that_reads_an_unjournaled_value_fails_the_replay_check() {
    let err = TestEnv::new()
        .on(USER, named_user)
        .try_run(nondeterministic, &())
        .unwrap_err();
    assert_eq!(err.entry, 0);
    assert!(
        err.recorded
            .starts_with("a call of demo/user with {\"id\":"),
        "{err}"
    );
    assert_ne!(err.recorded, err.replayed);
    assert!(
        err.to_string()
            .starts_with("nondeterminism at journal entry 0"),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "nondeterminism at journal entry 0")]
fn run_panics_on_nondeterminism() {
    TestEnv::new()
        .on(USER, named_user)
        .run(nondeterministic, &());
}

#[test]
#[should_panic(expected = "the tool demo/user, which this TestEnv does not script")]
fn an_unscripted_tool_is_named() {
    TestEnv::new().run(greet, &1u64);
}

#[derive(Serialize, Deserialize)]
struct Approval {
    by: String,
}

/// Fan-out, then an approval raced against a deadline.
fn review(ctx: &Context, ids: Vec<u64>) -> Result<String, CallError> {
    let calls: Vec<_> = ids
        .iter()
        .map(|&id| ctx.start_tool(USER, &UserQuery { id }))
        .collect();
    let mut names = Vec::new();
    for user in ctx.join_all(calls) {
        names.push(user?.name);
    }
    let approval = ctx.start_signal::<Approval>("approve");
    let deadline = ctx.start_timer(Duration::from_secs(3600));
    Ok(match ctx.race(approval, deadline) {
        Race::First(Ok(a)) => format!("{} approved by {}", names.join("+"), a.by),
        Race::First(Err(e)) => format!("bad approval: {e}"),
        Race::Second(()) => format!("{} escalated", names.join("+")),
    })
}

#[test]
fn signals_timers_and_fan_out_run_on_virtual_time() {
    let approval = Approval { by: "bo".into() };
    let run = TestEnv::new()
        .on(USER, named_user)
        .signal_after(Duration::from_secs(60), "approve", &approval)
        .run(review, &vec![1u64, 2, 3]);
    assert_eq!(run.calls().len(), 3);
    assert_eq!(run.elapsed(), Duration::from_secs(60));
    assert_eq!(run.output(), "u1+u2+u3 approved by bo");

    let run = TestEnv::new()
        .on(USER, named_user)
        .signal_after(Duration::from_secs(7200), "approve", &approval)
        .run(review, &vec![4u64]);
    assert_eq!(run.elapsed(), Duration::from_secs(3600));
    assert_eq!(run.output(), "u4 escalated");
}

#[test]
fn a_slow_tool_loses_a_race_with_its_deadline() {
    fn bounded(ctx: &Context, _: ()) -> Result<String, ToolError> {
        let limit = Duration::from_secs(2);
        ctx.call_timeout::<User>("demo", "user", &UserQuery { id: 1 }, limit)
            .map(|u| u.name)
    }
    let run = TestEnv::new()
        .on(USER, named_user)
        .latency("demo", "user", Duration::from_secs(5))
        .run(bounded, &());
    let error = run.error().unwrap();
    assert!(error.starts_with("tool error deadline"), "{error}");
    assert_eq!(run.elapsed(), Duration::from_secs(2));
}

#[test]
fn a_retry_policy_calls_the_script_again() {
    fn retried(ctx: &Context, _: ()) -> Result<String, CallError> {
        let policy = RetryPolicy::attempts(5)
            .backoff(Duration::from_secs(1), 2.0, Duration::from_secs(60))
            .retry_on(["unavailable"]);
        Ok(ctx
            .call_tool_with(USER, &UserQuery { id: 1 }, &policy)?
            .name)
    }
    let mut failures = 2;
    let run = TestEnv::new()
        .on(USER, move |q: UserQuery| {
            if failures > 0 {
                failures -= 1;
                return Err(ToolError::new("unavailable", "down"));
            }
            named_user(q)
        })
        .run(retried, &());
    assert_eq!(run.calls().len(), 3);
    // Two backoffs: 1 s, then 2 s.
    assert_eq!(run.elapsed(), Duration::from_secs(3));
    assert_eq!(run.output(), "u1");
}

fn family(ctx: &Context, n: u64) -> Result<(u64, u64, u64), String> {
    let started = ctx.now();
    ctx.sleep(Duration::from_millis(1500));
    let waited = ctx.now().duration_since(started).unwrap().as_millis() as u64;
    let doubled: u64 = ctx.child("double", &n).map_err(|e| e.to_string())?;
    ctx.info("done");
    Ok((waited, doubled, ctx.random() % 1000))
}

fn family_env(seed: u64) -> TestEnv {
    TestEnv::new()
        .child("double", |n: u64| Ok::<_, ChildError>(n * 2))
        .seed(seed)
}

#[test]
fn children_time_and_randomness_are_scripted_and_replayed() {
    let run = family_env(7).run(family, &21u64);
    assert_eq!(run.logs(), ["INFO done"]);
    let (waited, doubled, random) = run.output();
    assert_eq!((waited, doubled), (1500, 42));
    let again = family_env(7).run(family, &21u64);
    assert_eq!(again.output().2, random, "one seed, one sequence");
}

#[test]
#[should_panic(expected = "waits forever: it waits for the signal \"approve\"")]
fn a_signal_the_test_never_sends_is_named() {
    fn wait(ctx: &Context, _: ()) -> Result<String, String> {
        let a: Approval = ctx.wait_for_signal("approve").map_err(|e| e.to_string())?;
        Ok(a.by)
    }
    TestEnv::new().run(wait, &());
}

#[test]
fn an_input_that_does_not_decode_is_the_workflows_error() {
    let run = TestEnv::new().on(USER, users).run(greet, &"text");
    assert!(run.error().unwrap().starts_with("invalid workflow input"));
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Shortage {
    sku: String,
    left: u32,
}

/// Reserves through a child; passes the child's error on with `?`, and
/// fails with its own code when the child could not be asked at all.
fn reserve(ctx: &Context, sku: String) -> Result<u32, WorkflowError> {
    match ctx.child::<u32>("stock", &sku) {
        Ok(left) => Ok(left),
        Err(e) if e.is("out-of-stock") => Err(e.into()),
        Err(e) => Err(WorkflowError::new("stock-unavailable", e.to_string())),
    }
}

#[test]
fn a_structured_error_passes_from_child_to_parent_with_its_details() {
    let stock =
        |sku: String| match sku.as_str() {
            "A-1" => Ok(3),
            "B-2" => Err(WorkflowError::new("out-of-stock", "sold out")
                .with_details(&Shortage { sku, left: 0 })),
            _ => Err(WorkflowError::new("unknown-sku", sku)),
        };
    let run = TestEnv::new().child("stock", stock).run(reserve, "A-1");
    assert_eq!(run.output(), 3);

    let run = TestEnv::new().child("stock", stock).run(reserve, "B-2");
    let err = run.workflow_error().unwrap();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("out-of-stock", "sold out")
    );
    assert_eq!(
        err.details::<Shortage>(),
        Some(Ok(Shortage {
            sku: "B-2".into(),
            left: 0
        }))
    );

    let run = TestEnv::new().child("stock", stock).run(reserve, "C-3");
    let err = run.workflow_error().unwrap();
    assert_eq!(err.code, "stock-unavailable");
    assert!(err.message.contains("unknown-sku"), "{err:?}");
    assert_eq!(err.details, None);
}

#[test]
fn an_error_type_other_than_workflow_error_has_the_code_error() {
    let run = TestEnv::new()
        .child("double", |_: u64| {
            Err::<u64, _>(ChildError::new("trap", "overflow"))
        })
        .run(family, &u64::MAX);
    let err = run.workflow_error().unwrap();
    assert_eq!(err.code, reprise_sdk::UNCODED);
    assert_eq!(err.message, "child workflow trap: overflow");
    let run = TestEnv::new().on(USER, users).run(greet, &"text");
    assert_eq!(run.workflow_error().unwrap().code, "invalid-input");
}
