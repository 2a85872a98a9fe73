"""The multi-model ASGI application (``SAGEMAKER_MULTI_MODEL=true``, runtime-api.md §8.4).

Routes:

- ``GET /ping``: 200 as soon as the server is up; no model is needed.
- ``POST /invocations``: 404, this container serves ``POST /models/<name>/invoke``.
- ``POST /models`` ``{"model_name": ..., "url": ...}``: load (``registry.py``).
- ``GET /models[?limit=&next_page_token=]``: list, sorted by name.
- ``GET /models/<name>``, ``DELETE /models/<name>``: describe, unload.
- ``POST /models/<name>/invoke``: one call, exactly as ``/invocations`` in single-model mode.

A ``<name>`` is one path segment, percent-decoded. Refusals of this API are JSON
``{"code": <status>, "type": <kind>, "message": <text>}``; the answers of the handlers themselves
(through ``/invoke``) keep the single-model shapes.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

from sagehost.modelhost.asgi import (
    EMPTY_BODY,
    PING_READY,
    Receive,
    Scope,
    Send,
    TooLarge,
    declared_length,
    read_body,
    send_api_error,
    send_json,
    send_text,
)
from sagehost.modelhost.errors import ModelsApiError
from sagehost.modelhost.invocations import Invocations, ServedModel
from sagehost.modelhost.registry import ModelRegistry, model_dir, not_loaded
from sagehost.protocol.container import INVOCATIONS_PATH, MODELS_PATH, PING_PATH

BAD_REQUEST = "BadRequestException"
METHOD_NOT_ALLOWED = "MethodNotAllowedException"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: A load request is a small JSON document.
_MAX_LOAD_BODY = 64 * 1024
_MAX_NAME = 1024
_PREFIX = MODELS_PATH + "/"
_INVOKE = "invoke"


class MultiModelApp:
    """Serves the models of ``registry``; starts with none."""

    def __init__(self, *, registry: ModelRegistry, invocations: Invocations) -> None:
        self._registry = registry
        self._invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith(_PREFIX):
                await self._model_route(scope, receive, send)
            elif path == PING_PATH:
                if method != "GET":
                    await send_text(send, 405, "method not allowed", [(b"allow", b"GET")])
                else:
                    await send(PING_READY)
                    await send(EMPTY_BODY)
            elif path == INVOCATIONS_PATH:
                message = (
                    "this is a multi-model container: load a model with POST /models, "
                    "then invoke it with POST /models/<name>/invoke"
                )
                await send_text(send, 404, message)
            elif path == MODELS_PATH:
                if method == "GET":
                    await self._list(scope, send)
                elif method == "POST":
                    await self._load(scope, receive, send)
                else:
                    raise _method_not_allowed(method, "GET, POST")
            else:
                await send_text(send, 404, "not found")
        except ModelsApiError as exc:
            await send_api_error(send, exc)

    async def _model_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        segments = raw_path.split(b"?", 1)[0][len(_PREFIX) :].split(b"/")
        name = urllib.parse.unquote(segments[0].decode("latin-1"))
        method = scope["method"]
        if not name or len(segments) > 2 or (len(segments) == 2 and segments[1] != b"invoke"):
            await send_text(send, 404, "not found")
        elif len(segments) == 2:
            if method != "POST":
                raise _method_not_allowed(method, "POST")
            await self._invoke(name, scope, receive, send)
        elif method == "GET":
            model = self._registry.get(name)
            if model is None:
                raise not_loaded(name)
            await send_json(send, 200, _description(model))
        elif method == "DELETE":
            await self._registry.unload(name)
            await send_json(send, 200, {"status": f"model {name!r} unloaded"})
        else:
            raise _method_not_allowed(method, "GET, DELETE")

    async def _invoke(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        model = self._registry.get(name)
        if model is None:
            raise not_loaded(name)
        # Counted before the first await, so an unload that starts meanwhile waits for this call.
        model.begin()
        try:
            await self._invocations(model, scope, receive, send)
        finally:
            model.end()

    async def _load(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, _MAX_LOAD_BODY, declared_length(scope))
        except TooLarge:
            raise _bad_request(f"a load request is at most {_MAX_LOAD_BODY} bytes") from None
        name, url = _load_request(body, _query(scope))
        model = await self._registry.load(name, url)
        await send_json(send, 200, {**_description(model), "status": f"model {name!r} loaded"})

    async def _list(self, scope: Scope, send: Send) -> None:
        query = _query(scope)
        limit = _page_size(query.get("limit"))
        names = self._registry.names()
        token = query.get("next_page_token")
        if token:
            after = _decode_token(token)
            names = [n for n in names if n > after]
        page = names[:limit]
        models = []
        for name in page:
            model = self._registry.get(name)
            if model is not None:
                models.append(_description(model))
        result: dict[str, Any] = {"models": models}
        if len(names) > limit:
            result["nextPageToken"] = page[-1].encode("utf-8").hex()
        await send_json(send, 200, result)


def _description(model: ServedModel) -> dict[str, str]:
    return {"modelName": model.name, "modelUrl": model.url}


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


def _load_request(body: bytes, query: dict[str, str]) -> tuple[str, str]:
    """``(model_name, url)`` from the JSON body, or from query parameters (the model
    server's other spelling) when the body is empty."""
    fields: Any = query
    if body.strip():
        try:
            fields = json.loads(body)
        except ValueError as exc:
            raise _bad_request(f"the load request is not valid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise _bad_request('the load request must be a JSON object {"model_name", "url"}')
    name, url = fields.get("model_name"), fields.get("url")
    if not isinstance(name, str) or not name:
        raise _bad_request("model_name is required and must be a non-empty string")
    if len(name) > _MAX_NAME or "/" in name or not name.isprintable():
        raise _bad_request(
            f"model_name must be 1-{_MAX_NAME} printable characters without '/', got {name!r}"
        )
    if not isinstance(url, str) or not url:
        raise _bad_request("url is required and must be the path of the model's directory")
    if not os.path.isdir(model_dir(url)):
        raise _bad_request(f"url {url!r} is not a directory")
    return name, url


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise _bad_request(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {raw!r}")
    return int(raw)


def _decode_token(token: str) -> str:
    try:
        return bytes.fromhex(token).decode("utf-8")
    except ValueError:
        raise _bad_request(f"next_page_token {token!r} is not a token this server gave") from None


def _bad_request(message: str) -> ModelsApiError:
    return ModelsApiError(400, BAD_REQUEST, message)


def _method_not_allowed(method: str, allowed: str) -> ModelsApiError:
    return ModelsApiError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed here; use {allowed}")
