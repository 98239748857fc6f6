//! Tool errors are values: this workflow branches on them.

use reprise_sdk::{Context, ToolError, workflow};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct UserQuery {
    id: u64,
}

#[derive(Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Serialize)]
struct Failing<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Output {
    missing_user: String,
    fallback_user: String,
    custom_error: String,
}

#[workflow]
fn tool_errors(ctx: &Context, _input: serde::de::IgnoredAny) -> Result<Output, ToolError> {
    // User 0 does not exist: fall back to user 1.
    let (missing_user, user) = match ctx.call::<User>("demo", "user", &UserQuery { id: 0 }) {
        Err(e) if e.is("not-found") => {
            let user: User = ctx.call("demo", "user", &UserQuery { id: 1 })?;
            (e.code, user)
        }
        Err(e) => return Err(e),
        Ok(user) => ("none".to_string(), user),
    };
    let custom = ctx
        .call::<()>(
            "builtin",
            "fail",
            &Failing {
                code: "quota-exceeded",
                message: "try tomorrow",
            },
        )
        .expect_err("builtin/fail always fails");
    Ok(Output {
        missing_user,
        fallback_user: user.name,
        custom_error: format!("{}: {}", custom.code, custom.message),
    })
}
