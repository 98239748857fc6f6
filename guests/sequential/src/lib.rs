//! The user -> posts -> comments chain: three tool calls, each result
//! journaled, all locals rebuilt by replay if the execution resumes.

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    user_id: u64,
}

#[derive(Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Serialize, Deserialize)]
struct Post {
    id: u64,
    uid: u64,
    title: String,
}

#[derive(Serialize, Deserialize)]
struct Comment {
    id: u64,
    post_id: u64,
    body: String,
}

#[derive(Serialize)]
struct Output {
    user: User,
    posts: Vec<Post>,
    comments: Vec<Comment>,
}

#[derive(Serialize)]
struct UserQuery {
    id: u64,
}

#[derive(Serialize)]
struct PostsQuery {
    uid: u64,
}

#[derive(Serialize)]
struct CommentsQuery {
    post_ids: Vec<u64>,
}

#[workflow]
fn sequential(ctx: &Context, input: Input) -> Result<Output, ToolError> {
    let user: User = ctx.call("demo", "user", &UserQuery { id: input.user_id })?;
    ctx.info(&format!("user {} is {}", user.id, user.name));
    let posts: Vec<Post> = ctx.call("demo", "posts", &PostsQuery { uid: user.id })?;
    ctx.info(&format!("{} posts", posts.len()));
    let post_ids = posts.iter().map(|p| p.id).collect();
    let comments: Vec<Comment> = ctx.call("demo", "comments", &CommentsQuery { post_ids })?;
    ctx.info(&format!("{} comments", comments.len()));
    Ok(Output {
        user,
        posts,
        comments,
    })
}
