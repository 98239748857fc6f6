//! The OpenAPI document at `/v1/openapi.json`.
//!
//! Routes, parameters and success bodies come from each handler's
//! annotations (the router is built from the same ones). What every route
//! shares is added here, after the routes are merged, so no route can
//! forget it: the bearer scheme, the constraints of ids and names in paths,
//! and the error answers the extractors and middleware give on any route
//! (every one `application/problem+json`).

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reprise",
        description = "Durable workflows as WebAssembly components: deploy them, start and signal executions, read their journals."
    ),
    modifiers(&Security),
    tags(
        (name = "workflows", description = "Deployed components"),
        (name = "executions", description = "Runs of a workflow")
    )
)]
pub(super) struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An execution id: 1 to 128 printable ASCII characters but `{`, `}`, `/`.
const EXECUTION_ID: &str = r"^[!-.0-z|~]{1,128}$";
/// A workflow name.
const WORKFLOW_NAME: &str = r"^[A-Za-z0-9._-]{1,64}$";
/// A consumer session id.
const SESSION_ID: &str = r"^[A-Za-z0-9_-]{1,64}$";

/// Adds what every route shares to the merged document.
pub(super) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            constrain_path_params(path, op);
            add_errors(path, op);
        }
    }
}

fn string_schema(pattern: Option<&str>, max_length: Option<usize>) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(max_length)
            .pattern(pattern)
            .build(),
    ))
}

fn constrain_path_params(path: &str, op: &mut Operation) {
    for p in op.parameters.iter_mut().flatten() {
        let RefOr::T(p) = p else { continue };
        if p.parameter_in == ParameterIn::Query && p.name == "after" {
            // An offset is any u64 (utoipa says int64, whose maximum is lower).
            p.schema = Some(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u64::MAX as f64))
                    .build(),
            )));
            continue;
        }
        if p.parameter_in != ParameterIn::Path {
            continue;
        }
        let schema = match p.name.as_str() {
            "id" => string_schema(Some(EXECUTION_ID), None),
            // A signal name: 1 to 256 bytes of anything.
            "name" if path.contains("/signals/") => string_schema(None, Some(256)),
            "name" => string_schema(Some(WORKFLOW_NAME), None),
            "session" => string_schema(Some(SESSION_ID), None),
            _ => continue,
        };
        p.schema = Some(schema);
    }
}

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemBody")))
                    .build(),
            )
            .build(),
    )
}

fn add_errors(path: &str, op: &mut Operation) {
    let with_body = op.request_body.is_some();
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description));
    };
    add(
        "400",
        "Malformed: a parameter, id, name or body that does not parse or is out of range",
    );
    add(
        "401",
        "A bearer token is required, or the one sent is not valid",
    );
    add("403", "The token lacks the scope this route needs");
    add(
        "503",
        "The request took longer than request_timeout, the host is shutting down, or its store is unavailable; retry",
    );
    if with_body {
        add(
            "413",
            "The body is over max_request_bytes (max_component_bytes for a deploy)",
        );
        add("415", "The body's content type is not accepted here");
    }
    if path.contains("{id}") || path.contains("{name}") {
        add("404", "No such execution, workflow or session");
    }
    if path.ends_with("/items") || path.contains("/sessions") {
        add("410", "The consumer session is closed; open a new one");
    }
}
