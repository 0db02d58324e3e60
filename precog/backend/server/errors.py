"""OpenAI-shaped errors: every failure leaves the server as `{"error": {message, type, param, code}}`.

FastAPI's own 422 validation body and Starlette's plain-text 404/405 are replaced, so clients that
parse OpenAI errors (the official SDK raises `BadRequestError`, `NotFoundError`, ...) see one shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from precog.backend.server.protocol import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class APIError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI error fields to answer with."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=type, param=param, code=code)

    def response_body(self) -> ErrorResponse:
        return ErrorResponse(error=self.body)

    def response(self) -> JSONResponse:
        return JSONResponse(self.response_body().model_dump(), status_code=self.status)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def server_error(exc: BaseException) -> APIError:
    """What a client sees of a failure inside the server: that it happened, not its internals."""
    return APIError(
        500,
        f"The server had an error while processing your request ({type(exc).__name__}).",
        type="server_error",
    )


def model_not_found(model: str) -> APIError:
    return APIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def context_length_exceeded(limit: int, prompt_tokens: int, max_tokens: int | None, param: str) -> APIError:
    asked = f"{prompt_tokens} tokens in the prompt"
    if max_tokens is not None:
        total = prompt_tokens + max_tokens
        asked = f"{total} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion)"
    return APIError(
        400,
        f"This model's maximum context length is {limit} tokens. However, you requested {asked}. "
        "Please reduce the length of the prompt or the completion.",
        param=param,
        code="context_length_exceeded",
    )


def _is_union_tag(part: Any) -> bool:
    """Pydantic names the member of a union it tried (`str`, `list[str]`, `function-after[...]`)."""
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part or part.startswith("function-"))


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "constrained-list", "constrained-int"}


def _param(loc: Sequence[Any]) -> str | None:
    """`("body", "messages", 0, "content")` → `messages[0].content`; union member tags are dropped."""
    parts = [part for part in (loc[1:] if loc and loc[0] == "body" else loc) if not _is_union_tag(part)]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    # Of a union's failed members, the one that failed on a value says more than one of the wrong type.
    first = next((e for e in errors if not str(e.get("type", "")).endswith("_type")), errors[0])
    param = _param(first.get("loc", ()))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return bad_request(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload.",
            code="invalid_json",
        )
    if kind == "extra_forbidden":
        return bad_request(
            f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter"
        )
    if kind == "missing":
        return bad_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if param is None:
        return bad_request(f"The request body must be a JSON object: {message}", code="invalid_type")
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    return bad_request(f"Invalid value for '{param}': {message}", param=param, code=code)


def install_error_handlers(app: FastAPI, on_error: Callable[[APIError], None]) -> None:
    """Route every error path of `app` through the OpenAI error shape; `on_error` sees each one (metrics)."""

    def answer(error: APIError) -> JSONResponse:
        on_error(error)
        return error.response()

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return answer(APIError(exc.status_code, str(exc.detail), code=code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return answer(server_error(exc))
