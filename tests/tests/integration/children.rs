//! Child workflows: a parent starts children, awaits their ends, and
//! cancels them when it is cancelled.

use std::sync::Arc;

use reprise_host::execution::{FailureKind, Outcome, Status, Wait};
use reprise_host::{Children, ExecutionId, RuntimeConfig, RuntimeError, Store};
use reprise_tests::*;
use serde_json::{Value, json};

on_every_store!(
    a_parent_joins_its_children,
    cancelling_a_parent_cancels_its_children,
    cancelling_a_parent_can_keep_its_children,
    a_child_of_an_unknown_workflow_fails_the_parent,
    a_childs_structured_error_reaches_its_parent,
    components_built_against_0_2_0_still_run,
);

/// The failure of an execution, or a panic naming what it was instead.
fn failure(rec: &reprise_host::ExecutionRecord) -> &reprise_host::Failure {
    match &rec.outcome {
        Some(Outcome::Failed(f)) => f,
        other => panic!("{}: not failed: {other:?}", rec.id),
    }
}

async fn a_childs_structured_error_reaches_its_parent(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    deploy(&rt, "child").await;
    let details = json!({"sku": "A-1", "left": 0});
    let sold_out = json!({"fail": "sold out", "code": "out-of-stock", "details": details});
    let rec = run_to_end(&rt, "child", sold_out.clone()).await;
    let f = failure(&rec);
    assert_eq!(f.kind, FailureKind::Workflow);
    assert_eq!(
        (f.code.as_deref(), f.message.as_str()),
        (Some("out-of-stock"), "sold out")
    );
    let shown: Value = rmp_serde::from_slice(f.details.as_deref().unwrap()).unwrap();
    assert_eq!(shown, details);

    let rec = run_to_end(&rt, "parent", json!({"items": [sold_out, {"echo": 2}]})).await;
    assert_eq!(
        result::<Value>(&rec),
        json!([
            {"err": {"kind": "workflow-error", "message": "sold out", "code": "out-of-stock",
                     "details": details}},
            {"ok": 2}
        ])
    );
}

/// `parent` and `child` as built against 0.2.0 (their error is a string)
/// run beside the current ones, each calling the other.
async fn components_built_against_0_2_0_still_run(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    deploy(&rt, "child").await;
    for name in ["parent", "child"] {
        rt.deploy(&format!("old-{name}"), fixture("0.2.0", name))
            .await
            .unwrap();
    }
    let items = json!([{"echo": 1}, {"fail": "no", "code": "ignored-by-old"}]);
    // Old parent, old child: as before 0.3.0; the child's string error gets
    // the code `error` in its record.
    let rec = run_to_end(
        &rt,
        "old-parent",
        json!({"items": items, "workflow": "old-child"}),
    )
    .await;
    let old_error = json!({"kind": "workflow-error", "message": "no"});
    assert_eq!(
        result::<Value>(&rec),
        json!([{"ok": 1}, {"err": old_error}])
    );
    let child = rt
        .status(&ExecutionId::new(format!("{}.1", rec.id)).unwrap())
        .await
        .unwrap();
    assert_eq!(failure(&child).code.as_deref(), Some("error"));
    // New parent, old child: the parent sees the code `error`.
    let rec = run_to_end(
        &rt,
        "parent",
        json!({"items": items, "workflow": "old-child"}),
    )
    .await;
    assert_eq!(
        result::<Value>(&rec)[1],
        json!({"err": {"kind": "workflow-error", "message": "no", "code": "error"}})
    );
    // Old parent, new child with a code: the parent sees kind and message.
    let rec = run_to_end(&rt, "old-parent", json!({"items": items})).await;
    assert_eq!(result::<Value>(&rec)[1], json!({"err": old_error}));
}

async fn a_parent_joins_its_children(store: Arc<dyn Store>) {
    let (rt, calls) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    deploy(&rt, "child").await;
    let items = json!([{"echo": 1, "sleep_ms": 300}, {"fail": "no"}, {"echo": "x"}]);
    let id = rt
        .start("parent", encode(&json!({ "items": items })), None)
        .await
        .unwrap();
    // The slow child holds its parent suspended, with no instance.
    let rec = wait_for(&rt, &id, |r| {
        r.status == Status::Suspended && r.wait.is_some()
    })
    .await;
    assert!(
        matches!(
            rec.wait,
            Some(Wait::Signal { .. } | Wait::Any { .. }) | Some(Wait::Ready)
        ),
        "{:?}",
        rec.wait
    );
    let rec = wait(&rt, &id).await;
    assert_eq!(
        result::<Value>(&rec),
        json!([
            {"ok": 1},
            {"err": {"kind": "workflow-error", "message": "no", "code": "error"}},
            {"ok": "x"}
        ])
    );
    let children = rt.children(&id).await.unwrap();
    let expected: Vec<String> = [0, 1, 2].iter().map(|h| format!("{id}.{h}")).collect();
    assert_eq!(
        children.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        expected,
        "ids derived from the parent's id and the start's entry"
    );
    for (child, status) in
        children
            .iter()
            .zip([Status::Completed, Status::Failed, Status::Completed])
    {
        let c = rt.status(child).await.unwrap();
        assert_eq!(c.status, status, "{child}");
        assert_eq!(c.parent.as_ref().map(|p| &p.id), Some(&id));
    }
    assert_eq!(calls.total(), 2, "each echoing child ran its call once");
    // Nobody outside may send the signal a child's end comes by.
    let err = rt.signal(&id, "reprise:child/0", encode(&json!(1))).await;
    assert!(
        matches!(err, Err(RuntimeError::ReservedSignal(_))),
        "{err:?}"
    );
}

async fn cancelling_a_parent_cancels_its_children(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    deploy(&rt, "child").await;
    let items = json!([{"wait": "go"}, {"wait": "go"}, {"echo": 3}]);
    let id = rt
        .start("parent", encode(&json!({ "items": items })), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| r.journal_len >= 3).await;
    for h in [0, 1] {
        let child = ExecutionId::new(format!("{id}.{h}")).unwrap();
        wait_for(&rt, &child, |r| matches!(r.wait, Some(Wait::Signal { .. }))).await;
    }
    let done = ExecutionId::new(format!("{id}.2")).unwrap();
    assert_eq!(wait(&rt, &done).await.status, Status::Completed);
    wait_for(&rt, &id, |r| {
        r.status == Status::Suspended && r.wait != Some(Wait::Ready)
    })
    .await;
    assert_eq!(rt.live_instances(), 0);
    let rec = rt.cancel(&id).await.unwrap();
    assert_eq!(rec.status, Status::Cancelled);
    for h in [0, 1] {
        let child = ExecutionId::new(format!("{id}.{h}")).unwrap();
        assert_eq!(
            rt.status(&child).await.unwrap().status,
            Status::Cancelled,
            "{child}"
        );
    }
    assert_eq!(
        rt.status(&done).await.unwrap().status,
        Status::Completed,
        "ended before"
    );
}

async fn cancelling_a_parent_can_keep_its_children(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    deploy(&rt, "child").await;
    let items = json!([{"wait": "go"}]);
    let id = rt
        .start("parent", encode(&json!({ "items": items })), None)
        .await
        .unwrap();
    wait_for(&rt, &id, |r| r.journal_len >= 1).await;
    let child = ExecutionId::new(format!("{id}.0")).unwrap();
    wait_for(&rt, &child, |r| matches!(r.wait, Some(Wait::Signal { .. }))).await;
    let rec = rt.cancel_with(&id, Children::Keep).await.unwrap();
    assert_eq!(rec.status, Status::Cancelled);
    // The child lives on, and ends on its own; its end goes to nobody.
    assert_eq!(rt.status(&child).await.unwrap().status, Status::Suspended);
    rt.signal(&child, "go", encode(&json!("done")))
        .await
        .unwrap();
    let done = wait(&rt, &child).await;
    assert_eq!(result::<Value>(&done), json!("done"));
    assert_eq!(rt.status(&id).await.unwrap().status, Status::Cancelled);
}

async fn a_child_of_an_unknown_workflow_fails_the_parent(store: Arc<dyn Store>) {
    let (rt, _) = runtime(store, RuntimeConfig::default());
    deploy(&rt, "parent").await;
    let input = json!({"items": [1], "workflow": "nowhere"});
    let rec = run_to_end(&rt, "parent", input).await;
    let Some(Outcome::Failed(failure)) = &rec.outcome else {
        panic!("{rec:?}")
    };
    assert_eq!(failure.kind, FailureKind::InvalidCall);
    assert!(
        failure
            .message
            .contains("\"nowhere\", which is not deployed"),
        "{}",
        failure.message
    );
}

/// `GET /v1/executions/{id}` lists a parent's children with their status,
/// and a child names its parent; a reserved signal name is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_listed_over_http() {
    use reprise_host::ToolRegistry;
    use reprise_host::server::config::ServeConfig;
    use reprise_tests::server::TestServer;

    let (store, _guard) = memory_store().await;
    let s = TestServer::start(store, ServeConfig::default(), ToolRegistry::with_builtins()).await;
    s.deploy("parent", "parent").await;
    s.deploy("child", "child").await;
    let body = json!({"input": {"items": [{"echo": 1}, {"fail": "no"}]}});
    let r = s.start_and_wait("parent", body).await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    // A child's end reaches its parent before the child's own end is
    // recorded (so a crash in between is told again, never lost): the
    // parent may complete while a child still shows running, briefly.
    for child in 0..2 {
        let r = s
            .get(&format!("/v1/executions/{id}.{child}?wait=10s"))
            .await;
        assert!(r.body["status"] != "running", "{}", r.body);
    }
    let r = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(
        r.body["children"],
        json!([
            {"id": format!("{id}.0"), "workflow": "child", "status": "completed"},
            {"id": format!("{id}.1"), "workflow": "child", "status": "failed"},
        ]),
        "{}",
        r.body
    );
    // The journal pairs each completion with its start by index.
    let r = s.get(&format!("/v1/executions/{id}/journal")).await;
    let entries = r.body["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "start", "completion", "completion"],
        "{}",
        r.body
    );
    assert_eq!(entries[0]["detail"], json!(format!("child {id}.0 (child)")));
    let completed: Vec<&str> = entries[2..]
        .iter()
        .map(|e| &e["detail"].as_str().unwrap()[..3])
        .collect();
    assert!(
        completed.contains(&"#0:") && completed.contains(&"#1:"),
        "{completed:?}"
    );
    let r = s.get(&format!("/v1/executions/{id}.1")).await;
    assert_eq!(r.body["parent"], json!(id));
    assert_eq!(
        r.body["error"],
        json!({"kind": "workflow-error", "message": "no", "code": "error"})
    );
    // A workflow's own code and details, as JSON.
    let body =
        json!({"input": {"fail": "sold out", "code": "out-of-stock", "details": {"left": 0}}});
    let r = s.start_and_wait("child", body).await;
    assert_eq!(
        r.body["error"],
        json!({"kind": "workflow-error", "message": "sold out", "code": "out-of-stock",
               "details": {"left": 0}}),
        "{}",
        r.body
    );
    let r = s
        .post(
            &format!("/v1/executions/{id}/signals/reprise:child%2F0"),
            &json!({"payload": 1}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert_eq!(r.problem_type(), "urn:reprise:problem:reserved-signal");

    // `DELETE ?keep_children=true` leaves a waiting child running.
    let body = json!({"id": "keeper", "input": {"items": [{"wait": "go"}]}});
    let r = s.post("/v1/workflows/parent/executions", &body).await;
    assert!(r.status.is_success(), "{}", r.body);
    let child_waits = || async {
        let r = s.get("/v1/executions/keeper.0").await;
        r.body["wait"]["kind"] == "signal"
    };
    let started = std::time::Instant::now();
    while !child_waits().await {
        assert!(started.elapsed().as_secs() < 60, "the child never waited");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = s
        .send(
            s.http
                .delete(s.url("/v1/executions/keeper?keep_children=true")),
        )
        .await;
    assert_eq!(r.body["status"], "cancelled", "{}", r.body);
    let r = s.get("/v1/executions/keeper.0").await;
    assert_eq!(r.body["status"], "suspended", "{}", r.body);
}
