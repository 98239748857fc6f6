//! The built-in `http` category: outbound HTTP requests from workflows,
//! limited to hosts the operator allows.
//!
//! `http/request` takes `{method?, url, headers?, body?, json?}` (`method`
//! defaults to `GET`; `body` is a string, `json` any value sent as JSON) and
//! returns `{status, headers, body, json?}`: `body` is the reply as text
//! (invalid UTF-8 replaced), `json` the parsed reply when it is JSON. Any
//! status is a result: the workflow decides what a 404 means. Tool errors:
//! `forbidden-host` (not on the allow-list), `bad-input`, `too-large`,
//! `timeout` and `unavailable` (the request did not complete).
//!
//! An allow-list entry is `host` (any port) or `host:port`, compared with
//! the URL as written; redirects are not followed, so a reply cannot lead a
//! workflow to a host that is not allowed. Only `http` and `https` URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::builtin::{decode, encode};
use super::webhook::{BodyError, error_chain, read_limited};
use super::{Tool, ToolCall, ToolError};
use crate::config::duration_serde;

/// `[tools.http]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Hosts workflows may call: `api.example.com` or `localhost:8080`.
    pub allow: Vec<String>,
    /// Time limit of one request, reply included.
    #[serde(default = "default_timeout", with = "duration_serde")]
    pub timeout: Duration,
    /// Largest reply body, in bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// Largest request body, in bytes.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response() -> usize {
    1 << 20
}
fn default_max_request() -> usize {
    1 << 20
}

/// The `http/request` tool.
pub struct HttpTool {
    config: HttpConfig,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
}

impl HttpTool {
    /// The tool for `config`.
    pub fn new(config: HttpConfig) -> Result<Self, super::ToolConfigError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|e| {
                super::ToolConfigError(format!("http tool: cannot build an HTTP client: {e}"))
            })?;
        Ok(Self { config, client })
    }

    fn allowed(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let port = url.port_or_known_default();
        self.config
            .allow
            .iter()
            .any(|entry| match entry.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => {
                    h.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == port
                }
                _ => entry.eq_ignore_ascii_case(host),
            })
    }
}

#[async_trait]
impl Tool for HttpTool {
    async fn call(&self, call: ToolCall) -> Result<Vec<u8>, ToolError> {
        if call.name != "request" {
            return Err(ToolError::new(
                "unknown-tool",
                format!(
                    "the http category has one tool, http/request, not http/{}",
                    call.name
                ),
            ));
        }
        let req: Request = decode(&call.input)?;
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| ToolError::new("bad-input", format!("invalid url {:?}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::new(
                "bad-input",
                format!("url {:?} must be http:// or https://", req.url),
            ));
        }
        if !self.allowed(&url) {
            return Err(ToolError::new(
                "forbidden-host",
                format!(
                    "{} is not on this host's allow-list for http requests",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        let method = req.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ToolError::new("bad-input", format!("invalid method {method:?}")))?;
        let mut builder = self.client.request(method, url);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let body = match (&req.body, &req.json) {
            (Some(_), Some(_)) => {
                return Err(ToolError::new(
                    "bad-input",
                    "give `body` or `json`, not both",
                ));
            }
            (Some(b), None) => Some(b.clone().into_bytes()),
            (None, Some(j)) => {
                builder = builder.header("content-type", "application/json");
                Some(
                    serde_json::to_vec(j)
                        .map_err(|e| ToolError::new("bad-input", e.to_string()))?,
                )
            }
            (None, None) => None,
        };
        if let Some(b) = body {
            if b.len() > self.config.max_request_bytes {
                return Err(ToolError::new(
                    "too-large",
                    format!(
                        "the request body has {} bytes; the limit is {}",
                        b.len(),
                        self.config.max_request_bytes
                    ),
                ));
            }
            builder = builder.body(b);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                ToolError::new(
                    "timeout",
                    format!("no complete reply within {:?}", self.config.timeout),
                )
            } else {
                ToolError::new("unavailable", error_chain(&e))
            }
        };
        let response = builder.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers: BTreeMap<String, String> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let bytes = read_limited(response, self.config.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => ToolError::new(
                    "too-large",
                    format!(
                        "the reply is larger than {} bytes",
                        self.config.max_response_bytes
                    ),
                ),
                BodyError::Failed(e) => failed(e),
            })?;
        let is_json = headers
            .get("content-type")
            .is_some_and(|c| c.contains("json"));
        let json = if is_json {
            serde_json::from_slice(&bytes).ok()
        } else {
            None
        };
        encode(&Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            json,
        })
    }
}
