"""A 300 MiB async input goes to the model through a real server without the server holding it:
the input is streamed to the container's POST /invocations as it is read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sagehost.testing.server import RunningServer
from tests.e2e.async_helpers import deploy_async, wait_finished
from tests.e2e.conftest import unique

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

INPUT_SIZE = 300 * 1024 * 1024
#: Far below the input: a server that buffered it even once would grow by 300 MiB.
RSS_GROWTH_LIMIT = 100 * 1024 * 1024

COUNTING_MODEL = """
def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept):
    return str(len(data)), "text/plain"
"""


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An async endpoint whose model answers the length of the body it got."""
    model = tmp_path_factory.mktemp("counting")
    (model / "code").mkdir()
    (model / "code" / "inference.py").write_text(COUNTING_MODEL)
    name = unique("largeasync")
    output = tmp_path_factory.mktemp("output")
    # The built-in runtime reads the whole body, up to this many MiB (1024 at most).
    environment = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024"}
    deploy_async(server, name, output.as_uri(), model_dir=model, environment=environment)
    return name


def test_large_input_is_streamed_to_the_model(
    server: RunningServer, endpoint: str, tmp_path: Path
) -> None:
    source = tmp_path / "input.bin"
    with source.open("wb") as file:
        file.truncate(INPUT_SIZE)  # sparse: the model counts bytes, their values do not matter
    assert server.process is not None
    baseline = peak_rss(server.process.pid)

    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=source.as_uri(),
        ContentType="application/octet-stream",
        InferenceId="large-1",
    )
    job = wait_finished(server, endpoint, "large-1")

    assert job["Status"] == "Completed", job
    assert job["OutputContentType"] == "text/plain"
    output = Path(reply["OutputLocation"].removeprefix("file://"))
    assert output.read_bytes() == str(INPUT_SIZE).encode() == b"314572800"
    growth = peak_rss(server.process.pid) - baseline
    assert growth < RSS_GROWTH_LIMIT, f"the server's peak RSS grew by {growth >> 20} MiB"


def test_input_that_outgrows_its_size_fails_the_job(server: RunningServer, endpoint: str) -> None:
    # A /proc file says it is empty and then reads as text: as an object that changed between
    # the size check and the read. Found while the body is on its way to the container.
    rt = server.client("sagemaker-runtime")
    rt.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation="file:///proc/self/status",
        ContentType="application/octet-stream",
        InferenceId="grown-1",
    )
    job = wait_finished(server, endpoint, "grown-1")
    assert job["Status"] == "Failed"
    assert job["FailureReason"] == "DependencyFailed: The input changed while it was being read."
