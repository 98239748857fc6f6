//! A pipeline: for each user id of its input it looks the user up and
//! fetches their posts (two tool calls), then emits one summary per user as
//! soon as it has it. A consumer reading the stream sees each summary while
//! the rest are still being fetched; a lookup that fails (id 0: not found)
//! is emitted as an error item and the pipeline goes on. Returns how many
//! users it summarised.

use reprise_sdk::{Context, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    user_ids: Vec<u64>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Post {
    title: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Summary {
    Found {
        id: u64,
        name: String,
        posts: usize,
        first_title: Option<String>,
    },
    Missing {
        id: u64,
        error: String,
    },
}

#[workflow]
fn pipeline(ctx: &Context, input: Input) -> Result<u32, String> {
    let mut found = 0;
    for id in input.user_ids {
        let summary = match ctx.call::<User>("demo", "user", &Lookup { id }) {
            Ok(user) => {
                let posts: Vec<Post> = ctx
                    .call("demo", "posts", &Posts { uid: user.id })
                    .map_err(|e| format!("posts of user {}: {e}", user.id))?;
                found += 1;
                Summary::Found {
                    id: user.id,
                    name: user.name,
                    posts: posts.len(),
                    first_title: posts.into_iter().next().map(|p| p.title),
                }
            }
            Err(e) => Summary::Missing {
                id,
                error: e.to_string(),
            },
        };
        ctx.emit(&summary);
    }
    Ok(found)
}

#[derive(Serialize)]
struct Lookup {
    id: u64,
}

#[derive(Serialize)]
struct Posts {
    uid: u64,
}
