"""Streaming predictions: one HTTP chunk per item, flushed as produced."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from modelhost_helpers import Host, Launcher, StreamReader

STREAMING = """
    import asyncio, json, os, time

    def _wait_for(path):
        deadline = time.monotonic() + 15
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(path)
            time.sleep(0.005)

    def model_fn(model_dir):
        return None

    def input_fn(input_data, content_type):
        return json.loads(input_data)

    def gated(gate):
        yield "first"
        _wait_for(gate)
        yield "second"

    def fail_mid():
        yield "one"
        yield "two"
        raise RuntimeError("kaboom in the middle of the stream")

    def fail_first():
        raise RuntimeError("no tokens today")
        yield "never"

    def forever(marker):
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                yield "tick"
                time.sleep(0.01)
        finally:
            open(marker, "w").close()

    def bad_item(marker):
        try:
            yield "fine"
            yield "explode"
            yield "never"
        finally:
            open(marker, "w").close()

    async def agen():
        for item in ("a", "b", "c"):
            await asyncio.sleep(0)
            yield item

    def predict_fn(request, model):
        mode = request["mode"]
        if mode == "gated":
            return gated(request["gate"])
        if mode == "fail-mid":
            return fail_mid()
        if mode == "fail-first":
            return fail_first()
        if mode == "forever":
            return forever(request["marker"])
        if mode == "async":
            return agen()
        if mode == "bad-item":
            return bad_item(request["marker"])
        return {"mode": mode}

    def output_fn(prediction, accept):
        if isinstance(prediction, dict):
            return json.dumps(prediction)
        if prediction == "explode":
            raise ValueError("output_fn cannot encode this item")
        if prediction == "first":
            return "<first>", "text/event-stream"
        return f"<{prediction}>"
"""

PASSTHROUGH = """
    def model_fn(model_dir):
        return None

    def transform_fn(model, input_data, content_type, accept):
        return (item for item in (b"x" * 3, "", "\\u00e9"))
"""


@pytest.fixture(scope="module")
def host(module_launcher: Launcher) -> Host:
    model_dir = module_launcher.model_dir({"code/inference.py": STREAMING}, "streaming")
    return module_launcher.start(model_dir)


def wait_for(marker: Path) -> None:
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the generator's finally block never ran"
        time.sleep(0.01)


def open_stream(host: Host, request: dict[str, str]) -> StreamReader:
    return StreamReader(
        host.port, json.dumps(request).encode(), {"Content-Type": "application/json"}
    )


def test_chunks_arrive_while_the_generator_is_still_running(host: Host, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    stream = open_stream(host, {"mode": "gated", "gate": str(gate)})
    try:
        assert stream.status == 200
        assert stream.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in stream.headers
        # The content type of the first item's (body, type) tuple wins over the accept type.
        assert stream.headers["content-type"] == "text/event-stream"
        # The generator cannot finish before the gate exists, and we create it only now.
        assert stream.read_chunk() == b"<first>"
        gate.touch()
        assert stream.read_chunk() == b"<second>"
        assert stream.read_chunk() is None
    finally:
        stream.close()


def test_failure_mid_stream_aborts_the_connection(host: Host) -> None:
    stream = open_stream(host, {"mode": "fail-mid"})
    try:
        assert stream.status == 200
        assert stream.read_chunk() == b"<one>"
        assert stream.read_chunk() == b"<two>"
        with pytest.raises(EOFError):
            stream.read_chunk()
    finally:
        stream.close()
    assert "RuntimeError: kaboom in the middle of the stream" in host.stderr()


def test_output_fn_failure_mid_stream_aborts_and_closes_the_generator(
    host: Host, tmp_path: Path
) -> None:
    marker = tmp_path / "closed"
    stream = open_stream(host, {"mode": "bad-item", "marker": str(marker)})
    try:
        assert stream.read_chunk() == b"<fine>"
        with pytest.raises(EOFError):
            stream.read_chunk()
    finally:
        stream.close()
    wait_for(marker)
    assert "ValueError: output_fn cannot encode this item" in host.stderr()


def test_failure_before_the_first_item_is_an_ordinary_error(host: Host) -> None:
    reply = host.invoke('{"mode": "fail-first"}', {"Content-Type": "application/json"})
    assert (reply.status, reply.text) == (500, "no tokens today")
    assert reply.headers["content-length"] == str(len(b"no tokens today"))


def test_async_generator_streams(host: Host) -> None:
    stream = open_stream(host, {"mode": "async"})
    try:
        assert stream.headers["content-type"] == "application/json"
        chunks = [stream.read_chunk() for _ in range(4)]
        assert chunks == [b"<a>", b"<b>", b"<c>", None]
    finally:
        stream.close()


def test_non_iterator_prediction_is_not_streamed(host: Host) -> None:
    reply = host.invoke('{"mode": "plain"}', {"Content-Type": "application/json"})
    assert (reply.status, reply.body) == (200, b'{"mode": "plain"}')
    assert "transfer-encoding" not in reply.headers


def test_client_disconnect_closes_the_generator(host: Host, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    stream = open_stream(host, {"mode": "forever", "marker": str(marker)})
    assert stream.read_chunk() == b"<tick>"
    stream.close()
    wait_for(marker)


def test_transform_fn_stream_items_pass_through(launcher: Launcher) -> None:
    host = launcher.start(launcher.model_dir({"code/inference.py": PASSTHROUGH}))
    stream = StreamReader(host.port, b"", {"Accept": "text/plain"})
    try:
        assert stream.headers["content-type"] == "text/plain"
        # The empty item produces no chunk: an empty chunk would end the body.
        assert [stream.read_chunk() for _ in range(3)] == [b"xxx", "é".encode(), None]
    finally:
        stream.close()
