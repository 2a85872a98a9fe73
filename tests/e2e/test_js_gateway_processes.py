"""The JavaScript SDK against ``--gateway-processes 2`` with the dev key: each Node process opens
its own connection, so calls land on the primary and on the replica; the SDK signs headers
botocore does not (``content-length``, ``amz-sdk-*``), which must survive the relay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sagehost.testing.server import RunningServer, free_port
from tests.e2e.conftest import MODELS, deploy, unique
from tests.e2e.test_js_sdk import JS, NODE, node, tokens

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (Node 20 is needed)")
RUNS = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("js-replicas") / "data",
        port=free_port(),
        args=["--gateway-processes", "2"],
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def endpoint(server: RunningServer) -> str:
    if not (JS / "node_modules" / "@aws-sdk" / "client-sagemaker-runtime").is_dir():
        pytest.fail("the JS SDK is not installed: run scripts/install (npm ci --prefix tests/js)")
    name = unique("js-replicas")
    deploy(server.client("sagemaker"), name, model_dir=MODELS / "streamer")
    return name


def test_plain_calls_and_streams_from_node_through_both_processes(
    server: RunningServer, endpoint: str
) -> None:
    answered = set()
    for _ in range(RUNS):
        plain = node("invoke.mjs", server, endpoint, {"count": 3})
        assert plain["error"] is None
        assert plain["httpStatusCode"] == 200
        assert plain["body"] == "".join(tokens(3))
        assert plain["variant"] == "AllTraffic"
        answered.add(plain["requestId"][:13])
        streamed = node("stream.mjs", server, endpoint, {"count": 4})
        assert streamed["error"] is None
        assert streamed["parts"] == tokens(4)
    assert len(answered) == 2, "one process answered every Node client"


def test_errors_from_node_are_the_same_whichever_process(
    server: RunningServer, endpoint: str
) -> None:
    seen = set()
    for _ in range(RUNS):
        result = node("invoke.mjs", server, "no-such-endpoint", {})
        error = result["error"]
        seen.add((error["name"], error["message"], error["httpStatusCode"]))
    assert seen == {
        (
            "ValidationError",
            "Endpoint no-such-endpoint of account 000000000000 not found.",
            400,
        )
    }
