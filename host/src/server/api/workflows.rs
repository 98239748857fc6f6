//! Deploying workflows and reading their versions.

use super::*;

/// Deploy a workflow component.
///
/// The body is the component (`application/wasm` or
/// `application/octet-stream`). It is validated against the workflow world,
/// compiled and stored by digest. Deploying new bytes under a name adds a
/// version; executions already started stay on the version they started on.
#[utoipa::path(
    put,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "Workflow name: 1 to 64 of letters, digits, '-', '_', '.'")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, description = "Deployed (a new version, or the current one if the bytes are unchanged)", body = DeploymentView),
        (status = 400, description = "Not a valid component of the workflow world, or a bad name", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Larger than max_component_bytes", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["deploy"]))
)]
pub async fn deploy(
    State(state): Shared,
    _: Deployer,
    Path(name): Path<String>,
    format: Format,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|r| body_rejection(r.status(), r.body_text()))?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("?");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !matches!(media, "application/wasm" | "application/octet-stream") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported content type",
                format!(
                    "a deploy takes the component bytes as application/wasm or \
                     application/octet-stream, not {ct:?}"
                ),
            ));
        }
    }
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-component",
            "The component cannot be deployed",
            "the body is empty; send the component's bytes",
        ));
    }
    let deployment = state.runtime.deploy(&name, body.to_vec()).await?;
    tracing::info!(workflow = name, version = deployment.version, digest = %deployment.digest, "deployed");
    Ok(format.reply(StatusCode::CREATED, &DeploymentView::from(deployment)))
}

/// List deployed workflows.
#[utoipa::path(
    get,
    path = "/v1/workflows",
    tag = "workflows",
    responses((status = 200, body = WorkflowList)),
    security(("bearer" = ["invoke"]), ("bearer" = ["deploy"]))
)]
pub async fn list_workflows(
    State(state): Shared,
    _: Reader,
    format: Format,
) -> Result<Response, Problem> {
    let workflows = state
        .runtime
        .deployments()
        .await?
        .into_iter()
        .map(DeploymentView::from)
        .collect();
    Ok(format.reply(StatusCode::OK, &WorkflowList { workflows }))
}

/// A workflow and its versions.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "Workflow name")),
    responses(
        (status = 200, body = WorkflowView),
        (status = 404, description = "No such workflow", body = crate::server::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["invoke"]), ("bearer" = ["deploy"]))
)]
pub async fn get_workflow(
    State(state): Shared,
    _: Reader,
    Path(name): Path<String>,
    format: Format,
) -> Result<Response, Problem> {
    let versions: Vec<DeploymentView> = state
        .runtime
        .deployment_versions(&name)
        .await?
        .into_iter()
        .map(DeploymentView::from)
        .collect();
    // The current version is the last one added.
    let current = versions
        .last()
        .cloned()
        .expect("an existing workflow has a version");
    Ok(format.reply(
        StatusCode::OK,
        &WorkflowView {
            name,
            current,
            versions,
        },
    ))
}
