//! OpenTelemetry traces, received by an OTLP/HTTP receiver this test runs
//! (protobuf decoded with `opentelemetry-proto`), next to a webhook that
//! records the `traceparent` it is sent. On every store: a 3-step workflow
//! started with a `traceparent` is one trace under it (start, then every
//! invocation, with its steps and replay), across invocations; the
//! webhooks get their step's context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message as _;
use reprise_host::Store;
use reprise_host::server::config::ServeConfig;
use reprise_host::server::tools_from;
use reprise_tests::server::TestServer;
use reprise_tests::*;
use serde_json::json;

on_every_store!(
    a_traced_start_is_one_trace_across_invocations,
    a_start_without_a_traceparent_gets_a_trace_of_its_own,
    a_child_is_in_its_parents_trace,
);

/// A span as received: name, ids (hex), attributes (as text).
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

/// A webhook call: its name, and the `traceparent` it carried.
type Hook = (String, Option<String>);

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    /// `traceparent` headers the webhook got, by the call's name.
    hooks: Arc<Mutex<Vec<Hook>>>,
}

/// An OTLP/HTTP traces receiver and a webhook, on one loopback port.
async fn receiver() -> (String, Received) {
    let got = Received::default();
    let (spans, hooks) = (got.spans.clone(), got.hooks.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: Bytes| {
                let spans = spans.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut spans = spans.lock().unwrap();
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            for s in ss.spans {
                                let attributes = s
                                    .attributes
                                    .iter()
                                    .map(|kv| {
                                        let v =
                                            match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                                Some(Any::StringValue(s)) => s,
                                                Some(Any::IntValue(i)) => i.to_string(),
                                                Some(Any::BoolValue(b)) => b.to_string(),
                                                other => format!("{other:?}"),
                                            };
                                        (kv.key.clone(), v)
                                    })
                                    .collect();
                                spans.push(Span {
                                    name: s.name,
                                    trace_id: hex(&s.trace_id),
                                    span_id: hex(&s.span_id),
                                    parent: hex(&s.parent_span_id),
                                    attributes,
                                });
                            }
                        }
                    }
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        )
        .route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let hooks = hooks.clone();
                async move {
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let tp = headers
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_string());
                    hooks
                        .lock()
                        .unwrap()
                        .push((body["name"].as_str().unwrap().to_string(), tp));
                    axum::Json(json!({"ok": true}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A traced host with webhook category `ext` and a budget of `steps` per
/// invocation.
async fn traced_host(store: Arc<dyn Store>, base: &str, steps: u32) -> TestServer {
    let config = ServeConfig::from_toml(&format!(
        "[telemetry]\notlp_endpoint = \"{base}/v1/traces\"\n\
         [limits]\nmax_steps_per_invocation = {steps}\n\
         [tools.webhook.ext]\nurl = \"{base}/hook\"\n"
    ))
    .unwrap();
    let tools = tools_from(&config.tools).unwrap();
    let s = TestServer::start(store, config, tools).await;
    s.deploy("caller", "caller").await;
    s
}

const CALLS: &str = r#"{"calls": [
    {"category": "ext", "name": "first"},
    {"category": "builtin", "name": "echo", "input": 2},
    {"category": "ext", "name": "third"}]}"#;

/// Flushes the host's spans until `ready` holds of what arrived.
async fn spans_until(s: &TestServer, got: &Received, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    for _ in 0..50 {
        let t = s.telemetry.clone();
        tokio::task::spawn_blocking(move || t.flush())
            .await
            .unwrap();
        let spans = got.spans.lock().unwrap().clone();
        if ready(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("spans never arrived: {:#?}", got.spans.lock().unwrap());
}

async fn a_traced_start_is_one_trace_across_invocations(store: Arc<dyn Store>) {
    let (base, got) = receiver().await;
    // One new step per invocation, each seen only on replay (the step that
    // spends the budget ends its invocation): 4 invocations, the last
    // replays all three and returns.
    let s = traced_host(store, &base, 1).await;
    let (trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let r = s
        .send(
            s.http
                .post(s.url("/v1/workflows/caller/executions?wait=60s"))
                .header("traceparent", format!("00-{trace}-{caller_span}-01"))
                .json(&json!({"id": "traced", "input": serde_json::from_str::<serde_json::Value>(CALLS).unwrap()})),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let invocations = r.body["invocations"].as_u64().unwrap();
    assert_eq!(invocations, 4, "{}", r.body);
    let spans = spans_until(&s, &got, |spans| {
        spans.iter().filter(|s| s.name == "invocation").count() == 4
    })
    .await;

    // One trace, the caller's.
    for span in &spans {
        assert_eq!(span.trace_id, trace, "{span:?}");
    }
    let start: Vec<&Span> = spans.iter().filter(|s| s.name == "start caller").collect();
    assert_eq!(start.len(), 1, "{spans:#?}");
    assert_eq!(start[0].parent, caller_span);
    assert_eq!(start[0].attributes["reprise.execution.id"], "traced");

    // Every invocation is a child of the start, whichever ran it.
    let invs: Vec<&Span> = spans.iter().filter(|s| s.name == "invocation").collect();
    for inv in &invs {
        assert_eq!(inv.parent, start[0].span_id, "{inv:?}");
    }
    let mut numbers: Vec<&str> = invs
        .iter()
        .map(|i| i.attributes["reprise.invocation"].as_str())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["1", "2", "3", "4"]);

    // One step span per journal entry, each under the invocation that made
    // it; a replay span under every invocation that replayed.
    let steps: Vec<&Span> = spans.iter().filter(|s| s.name == "step").collect();
    assert_eq!(steps.len(), 3, "{spans:#?}");
    let inv_ids: Vec<&str> = invs.iter().map(|i| i.span_id.as_str()).collect();
    let mut by_index = HashMap::new();
    for step in &steps {
        assert!(inv_ids.contains(&step.parent.as_str()), "{step:?}");
        assert_eq!(step.attributes["reprise.replayed"], "false");
        assert_eq!(step.attributes["reprise.step.kind"], "tool");
        by_index.insert(
            step.attributes["reprise.entry.index"].clone(),
            (
                step.attributes["reprise.tool"].clone(),
                step.span_id.clone(),
            ),
        );
    }
    assert_eq!(by_index["0"].0, "ext/first");
    assert_eq!(by_index["1"].0, "builtin/echo");
    assert_eq!(by_index["2"].0, "ext/third");
    let mut replays: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "replay")
        .map(|r| {
            assert!(inv_ids.contains(&r.parent.as_str()), "{r:?}");
            r.attributes["reprise.replay.entries"].clone()
        })
        .collect();
    replays.sort();
    assert_eq!(replays, ["1", "2", "3"]);

    // Each webhook call carried its own step's context.
    let hooks = got.hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    for (name, index) in [("first", "0"), ("third", "2")] {
        let tp = hooks
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, tp)| tp.clone())
            .unwrap_or_else(|| panic!("webhook {name} got no traceparent: {hooks:?}"));
        assert_eq!(tp, format!("00-{trace}-{}-01", by_index[index].1));
    }

    // The record keeps the start's context: a later invocation, on any
    // host, continues it.
    let rec = s
        .runtime
        .status(&reprise_host::ExecutionId::new("traced").unwrap())
        .await
        .unwrap();
    assert_eq!(
        rec.trace.unwrap().as_str(),
        format!("00-{trace}-{}-01", start[0].span_id)
    );
}

async fn a_start_without_a_traceparent_gets_a_trace_of_its_own(store: Arc<dyn Store>) {
    let (base, got) = receiver().await;
    let s = traced_host(store, &base, 100).await;
    let r = s
        .start_and_wait(
            "caller",
            json!({"id": "own", "input": serde_json::from_str::<serde_json::Value>(CALLS).unwrap()}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let spans = spans_until(&s, &got, |spans| {
        spans.iter().filter(|s| s.name == "step").count() == 3
    })
    .await;
    let start = spans.iter().find(|s| s.name == "start caller").unwrap();
    assert_eq!(start.parent, "", "a root span");
    assert!(
        spans.iter().all(|s| s.trace_id == start.trace_id),
        "{spans:#?}"
    );
    // A malformed traceparent is ignored, as tracers do: a trace of its own.
    let r = s
        .send(
            s.http
                .post(s.url("/v1/workflows/caller/executions?wait=60s"))
                .header("traceparent", "00-not-a-trace-01")
                .json(&json!({"id": "bad", "input": {"calls": []}})),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
}

async fn a_child_is_in_its_parents_trace(store: Arc<dyn Store>) {
    let (base, got) = receiver().await;
    let s = traced_host(store, &base, 100).await;
    s.deploy("parent", "parent").await;
    s.deploy("child", "child").await;
    let r = s
        .start_and_wait(
            "parent",
            json!({"id": "fam", "input": {"items": [{"echo": 1}, {"echo": 2}]}}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let spans = spans_until(&s, &got, |spans| {
        spans
            .iter()
            .filter(|s| s.name == "invocation" && s.attributes["reprise.workflow"] == "child")
            .count()
            >= 2
    })
    .await;
    let start = spans.iter().find(|s| s.name == "start parent").unwrap();
    let parent_invs: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "invocation" && s.attributes["reprise.workflow"] == "parent")
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(!parent_invs.is_empty());
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "invocation" && s.attributes["reprise.workflow"] == "child")
        .collect();
    for child in &children {
        assert_eq!(child.trace_id, start.trace_id, "{child:?}");
        assert!(
            parent_invs.contains(&child.parent.as_str()),
            "a child's invocation is under its parent's: {child:?} {parent_invs:?}"
        );
    }
    let ids: std::collections::BTreeSet<&str> = children
        .iter()
        .map(|c| c.attributes["reprise.execution.id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}
