"""Multi-model mode of the built-in runtime (runtime-api.md §8.4), against a real process.

One ``SAGEMAKER_MULTI_MODEL=true`` process serves the whole module; every test loads models
under names of its own, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from modelhost_helpers import Host, Launcher, Reply, call

MODELS = Path(__file__).resolve().parents[1] / "models"
JSON = {"Content-Type": "application/json"}


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


class Models:
    """Fresh copies of the test models (they write logs into their own directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.copies = 0

    def copy(self, model: str) -> Path:
        self.copies += 1
        target = self.root / f"{model}-{self.copies}"
        shutil.copytree(MODELS / model, target)
        return target


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(tmp_path_factory.mktemp("mme-models"))


@pytest.fixture(scope="module")
def host(module_launcher: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Host:
    root = tmp_path_factory.mktemp("mme-root")
    return module_launcher.start(root, {"SAGEMAKER_MULTI_MODEL": "true"})


def load(host: Host, name: str, url: Path | str) -> Reply:
    body = json.dumps({"model_name": name, "url": str(url)})
    return call(host.port, "POST", "/models", body, JSON)


def invoke(host: Host, name: str, body: str, headers: dict[str, str] | None = None) -> Reply:
    return call(host.port, "POST", f"/models/{name}/invoke", body, headers or JSON)


def error(reply: Reply) -> tuple[int, str, dict[str, object]]:
    return reply.status, reply.headers["content-type"], json.loads(reply.body)


def test_ping_needs_no_model_and_invocations_points_to_models(host: Host) -> None:
    ping = host.call("GET", "/ping")
    assert (ping.status, ping.body) == (200, b"")
    reply = host.invoke("{}", JSON)
    assert (reply.status, reply.text) == (
        404,
        "this is a multi-model container: load a model with POST /models, "
        "then invoke it with POST /models/<name>/invoke",
    )


def test_two_models_each_with_their_own_code(host: Host, models: Models) -> None:
    alpha, beta = models.copy("mme_alpha"), models.copy("mme_beta")
    reply = load(host, "iso-a", alpha)
    assert (reply.status, json.loads(reply.body)) == (
        200,
        {"modelName": "iso-a", "modelUrl": str(alpha), "status": "model 'iso-a' loaded"},
    )
    assert load(host, "iso-b", f"file://{beta}").status == 200

    who = invoke(host, "iso-a", '{"op": "who"}')
    assert (who.status, who.headers["content-type"]) == (200, "application/json")
    assert json.loads(who.body) == {"model": "alpha", "helper": "alpha", "dir": str(alpha)}
    who = invoke(host, "iso-b", "who", {"Content-Type": "text/plain"})
    assert (who.status, who.headers["content-type"], who.text) == (200, "text/plain", "beta/beta")
    # Neither model's helper module stayed importable under its bare name.
    alive = json.loads(invoke(host, "iso-a", '{"op": "alive"}').body)
    assert alive["helper_in_sys"] is False


def test_invoke_has_the_invocations_pipeline(host: Host, models: Models) -> None:
    assert load(host, "pipe-a", models.copy("mme_alpha")).status == 200
    assert load(host, "pipe-b", models.copy("mme_beta")).status == 200
    attrs = invoke(
        host, "pipe-a", '{"op": "attrs"}', {**JSON, "X-Amzn-SageMaker-Custom-Attributes": "k=v"}
    )
    assert (attrs.status, attrs.body) == (200, b'{"attrs": "k=v"}')
    assert attrs.headers["x-amzn-sagemaker-custom-attributes"] == "seen=k=v"

    echo = invoke(host, "pipe-b", "plain bytes", {"Content-Type": "application/x-thing"})
    assert (echo.status, echo.headers["content-type"], echo.body) == (
        200,
        "application/x-thing",
        b"plain bytes",
    )
    failed = invoke(host, "pipe-b", "raise:the model broke", {"Content-Type": "text/plain"})
    assert (failed.status, failed.headers["content-type"], failed.text) == (
        500,
        "text/plain; charset=utf-8",
        "the model broke",
    )
    teapot = invoke(host, "pipe-b", "status:418", {"Content-Type": "text/plain"})
    assert (teapot.status, teapot.text) == (418, "custom status 418")
    bad_json = invoke(host, "pipe-a", "{not json")
    assert bad_json.status == 500 and "Expecting property name" in bad_json.text

    streamed = invoke(host, "pipe-b", "stream:4", {"Content-Type": "text/plain"})
    assert (streamed.status, streamed.headers["content-type"]) == (200, "text/event-stream")
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.body == b"b0 b1 b2 b3 "


def test_loading_a_loaded_name_is_409(host: Host, models: Models) -> None:
    url = models.copy("mme_alpha")
    assert load(host, "twice", url).status == 200
    assert error(load(host, "twice", url)) == (
        409,
        "application/json",
        {
            "code": 409,
            "type": "ConflictStatusException",
            "message": "model 'twice' is already loaded",
        },
    )
    assert (url / "loads.log").read_text() == "load\n"


def test_unknown_models_are_404(host: Host) -> None:
    expected = {
        "code": 404,
        "type": "ModelNotFoundException",
        "message": "model 'ghost' is not loaded",
    }
    assert error(host.call("GET", "/models/ghost")) == (404, "application/json", expected)
    assert error(host.call("DELETE", "/models/ghost")) == (404, "application/json", expected)
    assert error(invoke(host, "ghost", "{}")) == (404, "application/json", expected)


def test_describe_and_paginated_list(host: Host, models: Models) -> None:
    url = models.copy("mme_beta")
    names = [f"page-{i}" for i in range(5)]
    for name in reversed(names):
        assert load(host, name, url).status == 200
    described = host.call("GET", "/models/page-3")
    assert (described.status, json.loads(described.body)) == (
        200,
        {"modelName": "page-3", "modelUrl": str(url)},
    )

    everything = json.loads(host.call("GET", "/models?limit=1000").body)
    assert "nextPageToken" not in everything
    listed = [m["modelName"] for m in everything["models"]]
    assert listed == sorted(listed) and set(names) <= set(listed)

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        query = "/models?limit=2" + (f"&next_page_token={token}" if token else "")
        page = json.loads(host.call("GET", query).body)
        pages += 1
        assert len(page["models"]) <= 2
        seen += [m["modelName"] for m in page["models"]]
        token = page.get("nextPageToken")
        if token is None:
            break
    assert seen == listed and pages == (len(listed) + 1) // 2
    assert {"modelName": "page-0", "modelUrl": str(url)} in everything["models"]


def test_bad_list_and_load_requests_are_400(host: Host, tmp_path: Path) -> None:
    def bad(reply: Reply) -> str:
        status, content_type, body = error(reply)
        assert (status, content_type, body["code"], body["type"]) == (
            400,
            "application/json",
            400,
            "BadRequestException",
        )
        return str(body["message"])

    assert (
        bad(host.call("GET", "/models?limit=0"))
        == "limit must be an integer from 1 to 1000, got '0'"
    )
    assert bad(host.call("GET", "/models?next_page_token=zz")) == (
        "next_page_token 'zz' is not a token this server gave"
    )
    assert bad(call(host.port, "POST", "/models", "{", JSON)).startswith(
        "the load request is not valid JSON"
    )
    assert bad(call(host.port, "POST", "/models", '{"url": "/x"}', JSON)) == (
        "model_name is required and must be a non-empty string"
    )
    assert bad(call(host.port, "POST", "/models", '{"model_name": "m"}', JSON)) == (
        "url is required and must be the path of the model's directory"
    )
    missing = tmp_path / "nowhere"
    assert bad(load(host, "m", missing)) == f"url {str(missing)!r} is not a directory"
    assert bad(load(host, "a/b", tmp_path)).startswith("model_name must be 1-1024 printable")
    not_allowed = host.call("PUT", "/models/m")
    assert (not_allowed.status, json.loads(not_allowed.body)["type"]) == (
        405,
        "MethodNotAllowedException",
    )


def test_load_by_query_parameters(host: Host, models: Models) -> None:
    url = models.copy("mme_beta")
    reply = call(host.port, "POST", f"/models?model_name=by-query&url={url}")
    assert reply.status == 200
    assert invoke(host, "by-query", "who", {"Content-Type": "text/plain"}).text == "beta/beta"


def test_memory_error_is_507(host: Host, models: Models) -> None:
    assert error(load(host, "huge", models.copy("mme_oom"))) == (
        507,
        "application/json",
        {
            "code": 507,
            "type": "InsufficientMemoryException",
            "message": "loading model 'huge': MemoryError: needs 64 GiB, 1 GiB free",
        },
    )
    assert host.call("GET", "/models/huge").status == 404


def test_failing_model_fn_is_500_and_leaves_nothing(host: Host) -> None:
    assert error(load(host, "broken", MODELS / "broken")) == (
        500,
        "application/json",
        {
            "code": 500,
            "type": "ModelLoadException",
            "message": "loading model 'broken' failed: RuntimeError: weights file is corrupt: checksum mismatch",
        },
    )
    assert host.call("GET", "/models/broken").status == 404
    assert "RuntimeError: weights file is corrupt" in host.stderr()


def test_delete_unloads_and_drops_every_reference(host: Host, models: Models) -> None:
    gone, probe = models.copy("mme_alpha"), models.copy("mme_alpha")
    assert load(host, "gone", gone).status == 200
    assert load(host, "probe", probe).status == 200
    before = json.loads(invoke(host, "probe", '{"op": "alive"}').body)

    reply = host.call("DELETE", "/models/gone")
    assert (reply.status, json.loads(reply.body)) == (200, {"status": "model 'gone' unloaded"})
    assert (gone / "unloads.log").read_text() == f"{gone}\n"
    assert host.call("GET", "/models/gone").status == 404
    assert invoke(host, "gone", '{"op": "who"}').status == 404

    after = json.loads(invoke(host, "probe", '{"op": "alive"}').body)
    assert after["alpha_models"] == before["alpha_models"] - 1
    assert len(after["modules"]) == len(before["modules"]) - 1
    # The name can be loaded again, with a fresh model_fn call.
    assert load(host, "gone", gone).status == 200
    assert (gone / "loads.log").read_text() == "load\nload\n"


def test_delete_waits_for_calls_in_flight(host: Host, models: Models, tmp_path: Path) -> None:
    url = models.copy("mme_alpha")
    assert load(host, "busy", url).status == 200
    started, gate = tmp_path / "started", tmp_path / "gate"
    body = json.dumps({"op": "gate", "started": str(started), "gate": str(gate)})
    replies: dict[str, Reply] = {}
    calling = threading.Thread(target=lambda: replies.update(call=invoke(host, "busy", body)))
    calling.start()
    wait_for_file(started)
    deleting = threading.Thread(
        target=lambda: replies.update(delete=host.call("DELETE", "/models/busy"))
    )
    deleting.start()
    deadline = time.monotonic() + 10
    while host.call("GET", "/models/busy").status != 404:  # out of the table at once
        assert time.monotonic() < deadline
    assert invoke(host, "busy", '{"op": "who"}').status == 404
    assert not (url / "unloads.log").exists()  # the unload hook waits for the call
    gate.touch()
    calling.join(10)
    deleting.join(10)
    assert (replies["call"].status, replies["call"].body) == (200, b'{"gated": true}')
    assert replies["delete"].status == 200
    assert (url / "unloads.log").exists()


def test_slow_load_blocks_neither_ping_nor_other_models(host: Host, models: Models) -> None:
    slow, fast = models.copy("mme_slow"), models.copy("mme_beta")
    assert load(host, "fast", fast).status == 200
    replies: list[Reply] = []
    loaders = [
        threading.Thread(target=lambda: replies.append(load(host, "slow", slow))) for _ in range(2)
    ]
    loaders[0].start()
    wait_for_file(slow / "loading")
    loaders[1].start()  # a second load of the same name while the first runs

    assert host.ping_status() == 200
    assert invoke(host, "fast", "who", {"Content-Type": "text/plain"}).text == "beta/beta"
    assert host.call("GET", "/models/slow").status == 404
    assert invoke(host, "slow", "x", {"Content-Type": "text/plain"}).status == 404

    (slow / "gate").touch()
    for thread in loaders:
        thread.join(20)
    assert sorted(r.status for r in replies) == [200, 409]
    assert (slow / "loads.log").read_text() == "load\n"
    assert invoke(host, "slow", "x", {"Content-Type": "text/plain"}).text == "slow model ready"
