//! The user -> posts -> comments chain for many users at once: each stage
//! starts one call per user (or per post) and joins them, so a stage takes
//! as long as its slowest call, not the sum. Users that are not found
//! (id 0) are reported, not fatal.

use reprise_sdk::{Context, ToolError, workflow};
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
    id: u64,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
}

#[derive(Serialize)]
struct Summary {
    id: u64,
    name: Option<String>,
    posts: usize,
    comments: usize,
    /// Sum of the comment ids: depends on every result, so a result
    /// handed to the wrong call shows.
    checksum: u64,
}

#[derive(Serialize)]
struct Lookup {
    id: u64,
}

#[derive(Serialize)]
struct Posts {
    uid: u64,
}

#[derive(Serialize)]
struct Comments {
    post_ids: Vec<u64>,
}

#[workflow]
fn fanout(ctx: &Context, input: Input) -> Result<Vec<Summary>, ToolError> {
    let lookups = input
        .user_ids
        .iter()
        .map(|&id| ctx.start::<User>("demo", "user", &Lookup { id }))
        .collect();
    let users: Vec<Option<User>> = ctx
        .join_all(lookups)
        .into_iter()
        .map(|found| match found {
            Ok(user) => Ok(Some(user)),
            Err(e) if e.is("not-found") => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_, _>>()?;

    let post_calls = users
        .iter()
        .flatten()
        .map(|u| ctx.start::<Vec<Post>>("demo", "posts", &Posts { uid: u.id }))
        .collect();
    let mut posts = ctx.join_all(post_calls).into_iter();

    let mut summaries = Vec::new();
    let mut comment_calls = Vec::new();
    for (id, user) in input.user_ids.iter().zip(users) {
        let Some(user) = user else {
            summaries.push((
                Summary {
                    id: *id,
                    name: None,
                    posts: 0,
                    comments: 0,
                    checksum: 0,
                },
                0,
            ));
            continue;
        };
        let user_posts = posts.next().expect("one posts call per user found")?;
        for post in &user_posts {
            comment_calls.push(ctx.start::<Vec<Comment>>(
                "demo",
                "comments",
                &Comments {
                    post_ids: vec![post.id],
                },
            ));
        }
        let summary = Summary {
            id: user.id,
            name: Some(user.name),
            posts: user_posts.len(),
            comments: 0,
            checksum: 0,
        };
        summaries.push((summary, user_posts.len()));
    }
    let mut comments = ctx.join_all(comment_calls).into_iter();
    let mut out = Vec::new();
    for (mut summary, n_posts) in summaries {
        for _ in 0..n_posts {
            let batch = comments.next().expect("one comments call per post")?;
            summary.comments += batch.len();
            summary.checksum += batch.iter().map(|c| c.id).sum::<u64>();
        }
        out.push(summary);
    }
    Ok(out)
}
