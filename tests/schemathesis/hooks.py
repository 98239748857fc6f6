"""Checks of the API contract that schemathesis does not make by itself."""

import schemathesis


@schemathesis.check
def errors_are_problems(ctx, response, case):
    """Every error answer is application/problem+json with the status in it."""
    if response.status_code < 400:
        return None
    media = response.headers.get("content-type", [""])
    media = media[0] if isinstance(media, list) else media
    if not media.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered {media or 'no content type'!r}, "
            "not application/problem+json"
        )
    body = response.json()
    if body.get("status") != response.status_code or not body.get("detail"):
        raise AssertionError(f"problem body does not match its status: {body}")
    return None


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    """Deploy bodies are raw bytes (a component, or what the generator made)."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode()}
