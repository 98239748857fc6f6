//! Tools every host offers, for examples and tests.
//!
//! - `builtin/echo`: returns its input unchanged.
//! - `builtin/fail`: returns a tool error; input `{code, message}` (MessagePack).
//! - `demo/user`, `demo/posts`, `demo/comments`: a small, deterministic demo
//!   API behind the `sequential` example (the user → posts → comments chain).
//!   Not a real service: it fabricates records from the ids it is given.

use serde::{Deserialize, Serialize};

use super::{ToolCall, ToolError, ToolRegistry};

/// Registers the `builtin` and `demo` categories.
pub fn register(r: &mut ToolRegistry) {
    r.register_fn(
        "builtin",
        "echo",
        |call: ToolCall| async move { Ok(call.input) },
    );
    r.register_fn("builtin", "fail", |call: ToolCall| async move {
        #[derive(Deserialize)]
        struct Input {
            code: String,
            message: String,
        }
        let input: Input = decode(&call.input)?;
        Err(ToolError::new(input.code, input.message))
    });
    r.register_fn("demo", "user", |call: ToolCall| async move {
        #[derive(Deserialize)]
        struct Input {
            id: u64,
        }
        let Input { id } = decode(&call.input)?;
        if id == 0 {
            return Err(ToolError::new("not-found", "no user with id 0"));
        }
        encode(&User {
            id,
            name: format!("User {id}"),
            email: format!("user{id}@example.com"),
        })
    });
    r.register_fn("demo", "posts", |call: ToolCall| async move {
        #[derive(Deserialize)]
        struct Input {
            uid: u64,
        }
        let Input { uid } = decode(&call.input)?;
        let posts: Vec<Post> = (1..=3)
            .map(|i| Post {
                id: uid * 10 + i,
                uid,
                title: format!("Post {i} by user {uid}"),
            })
            .collect();
        encode(&posts)
    });
    r.register_fn("demo", "comments", |call: ToolCall| async move {
        #[derive(Deserialize)]
        struct Input {
            post_ids: Vec<u64>,
        }
        let Input { post_ids } = decode(&call.input)?;
        let comments: Vec<Comment> = post_ids
            .iter()
            .flat_map(|&post_id| {
                (1..=2).map(move |i| Comment {
                    id: post_id * 100 + i,
                    post_id,
                    body: format!("Comment {i} on post {post_id}"),
                })
            })
            .collect();
        encode(&comments)
    });
}

#[derive(Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Serialize)]
struct Post {
    id: u64,
    uid: u64,
    title: String,
}

#[derive(Serialize)]
struct Comment {
    id: u64,
    post_id: u64,
    body: String,
}

/// Decodes a tool input (MessagePack); a bad one is a `bad-input` tool error.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ToolError> {
    rmp_serde::from_slice(bytes).map_err(|e| ToolError::new("bad-input", e.to_string()))
}

/// Encodes a tool result as MessagePack (maps with field names).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ToolError> {
    rmp_serde::to_vec_named(value).map_err(|e| ToolError::new("internal", e.to_string()))
}
