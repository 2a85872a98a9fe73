"""In-process tests of modelhost's pure parts: settings, codecs, context, errors, worker pool."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading

import pytest

from sagehost.modelhost.context import Context
from sagehost.modelhost.defaults import Codecs
from sagehost.modelhost.errors import (
    BadRequestError,
    NotAcceptableError,
    UnsupportedFormatError,
    status_and_message,
)
from sagehost.modelhost.pipeline import Complete, Handler, Pipeline, Stream, is_stream, stream_chunk
from sagehost.modelhost.settings import Settings, SettingsError
from sagehost.modelhost.workers import WorkerPool
from sagehost.protocol import container

HAS_NUMPY = importlib.util.find_spec("numpy") is not None


def test_settings_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        model_dir="/opt/ml/model",
        module_name="inference",
        host="127.0.0.1",
        port=8080,
        workers=1,
        default_accept="application/json",
        max_payload_bytes=6 * 1024 * 1024,
        log_level=logging.INFO,
    )


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "SAGEMAKER_BASE_DIR": "/srv/ml",
            "SAGEMAKER_PROGRAM": "serve.py",
            "SAGEHOST_BIND_HOST": "0.0.0.0",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "4",
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.5",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "30",
        }
    )
    assert (settings.model_dir, settings.module_name) == ("/srv/ml/model", "serve")
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 4)
    assert (settings.default_accept, settings.max_payload_bytes) == ("text/csv", 512 * 1024)
    assert settings.log_level == logging.WARNING
    assert (
        Settings.from_env({"SAGEHOST_MODEL_DIR": "/m", "SAGEMAKER_BASE_DIR": "/x"}).model_dir
        == "/m"
    )
    assert Settings.from_env({"SAGEMAKER_CONTAINER_LOG_LEVEL": "debug"}).log_level == logging.DEBUG


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "SAGEMAKER_BIND_TO_PORT must be between 0 and 65535"),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, "SAGEMAKER_MODEL_SERVER_WORKERS must be between"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "-1"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB must be in (0, 1024]"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "six"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB must be a number"),
        ({"SAGEMAKER_CONTAINER_LOG_LEVEL": "loud"}, "is not a log level: 'loud'"),
        (
            {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_SESSIONS_EXPIRATION": "0"},
            "SAGEMAKER_SESSIONS_EXPIRATION must be between 1 and",
        ),
    ],
)
def test_settings_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert message in str(info.value)


def test_container_contract_helpers() -> None:
    assert container.program_module({"SAGEMAKER_PROGRAM": "a.b.py"}) == "a.b"
    assert container.program_module({"SAGEMAKER_PROGRAM": "mod"}) == "mod"
    assert container.parse_safe_port_range("8000-8010") == (8000, 8010)
    with pytest.raises(ValueError, match="low-high"):
        container.parse_safe_port_range("8000")
    with pytest.raises(ValueError, match="not a valid port range"):
        container.parse_safe_port_range("9000-8000")
    assert container.is_truthy("TRUE") and not container.is_truthy("false")
    assert container.is_truthy(None) is False
    assert container.DEFAULT_MAX_PAYLOAD_BYTES == 6_291_456


def test_plain_codecs() -> None:
    codecs = Codecs(None, "application/json")
    assert codecs.input_fn("[1, 2]", "application/json; charset=utf-8") == [1, 2]
    assert codecs.input_fn("1,a\n\n2.5,", "text/csv") == [[1.0, "a"], [2.5, ""]]
    assert codecs.output_fn([[1, 2.5], [3, "x,y"]], "text/csv") == ('1,2.5\n3,"x,y"\n', "text/csv")
    assert codecs.output_fn([1, 2], "text/csv") == ("1\n2\n", "text/csv")
    assert codecs.output_fn(7, "text/csv") == ("7\n", "text/csv")
    assert codecs.output_fn({"a": [1]}, "application/json") == ('{"a": [1]}', "application/json")
    with pytest.raises(UnsupportedFormatError, match="need numpy"):
        codecs.input_fn(b"", "application/x-npy")
    with pytest.raises(NotAcceptableError):
        codecs.output_fn([1], "application/x-npy")
    with pytest.raises(BadRequestError):
        codecs.input_fn("{", "application/json")
    with pytest.raises(UnsupportedFormatError):
        codecs.input_fn("x", None)


def test_accept_negotiation() -> None:
    codecs = Codecs(None, "text/csv")
    assert codecs.negotiate("text/html, TEXT/CSV; q=0.5") == "text/csv"
    assert codecs.negotiate("image/png, */*") == "text/csv"
    assert codecs.negotiate("image/png") is None


@pytest.mark.skipif(not HAS_NUMPY, reason="numpy flavour")
def test_numpy_codecs_match_the_toolkit() -> None:
    import numpy as np

    codecs = Codecs(np, "application/json")
    decoded = codecs.input_fn("[[1, 2], [3, 4]]", "application/json")
    assert isinstance(decoded, np.ndarray) and decoded.tolist() == [[1, 2], [3, 4]]
    csv_rows = codecs.input_fn("1.5,2.5\n3.5,4.5", "text/csv")
    assert csv_rows.tolist() == [[1.5, 2.5], [3.5, 4.5]]
    # Like the toolkit's genfromtxt(dtype=None): columns of different types make a record array.
    assert codecs.input_fn("1.5,2\n3,4", "text/csv").tolist() == [(1.5, 2), (3.0, 4)]
    assert codecs.output_fn(np.array([1.5, 2]), "application/json") == (
        "[1.5, 2.0]",
        "application/json",
    )
    assert codecs.output_fn(np.float32(0.5), "application/json")[0] == "0.5"
    assert codecs.output_fn(np.array([[1, 2]]), "text/csv") == ("1,2\n", "text/csv")


def test_status_and_message() -> None:
    class ToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            super().__init__(status_code, message, phrase)
            self.status_code, self.message, self.phrase = status_code, message, phrase

    assert status_and_message(ToolkitError(422, "bad rows", "Unprocessable")) == (422, "bad rows")
    assert status_and_message(ValueError("nope")) == (500, "nope")
    assert status_and_message(KeyError()) == (500, "KeyError")
    odd = RuntimeError("x")
    odd.status_code = True  # type: ignore[attr-defined]
    assert status_and_message(odd) == (500, "x")
    assert status_and_message(UnsupportedFormatError("no")) == (415, "no")


def test_context_headers() -> None:
    context = Context("/m", [(b"X-Amzn-SageMaker-Custom-Attributes", b"a=1"), (b"accept", b"*/*")])
    assert context.request_headers == {"x-amzn-sagemaker-custom-attributes": "a=1", "accept": "*/*"}
    assert context.custom_attributes == "a=1"
    assert context.get_request_header(0, "Accept") == "*/*"
    context.set_custom_attributes("b=2")
    context.set_response_header(0, "X-Amzn-SageMaker-Closed-Session-Id", "s1")
    assert context.response_headers == {
        "x-amzn-sagemaker-custom-attributes": "b=2",
        "x-amzn-sagemaker-closed-session-id": "s1",
    }
    with pytest.raises(ValueError, match="only X-Amzn-SageMaker-"):
        context.set_response_header("Transfer-Encoding", "chunked")
    with pytest.raises(ValueError, match="printable ASCII"):
        context.set_response_header("X-Amzn-SageMaker-Custom-Attributes", "a\r\nb: c")
    with pytest.raises(IndexError):
        context.set_response_header(1, "X-Amzn-SageMaker-Custom-Attributes", "x")


def test_stream_detection_and_chunks() -> None:
    assert is_stream(iter([1])) and is_stream(x for x in "ab")
    assert not any(is_stream(v) for v in ([1], (1,), "s", b"b", {"a": 1}))
    assert stream_chunk("é") == ("é".encode(), None)
    assert stream_chunk((b"x", "text/plain")) == (b"x", "text/plain")
    with pytest.raises(TypeError, match="bytes or str"):
        stream_chunk(1)


def test_worker_pool_runs_on_its_threads_and_propagates_errors() -> None:
    pool = WorkerPool(2, name="test-pool")

    def boom() -> None:
        raise ValueError("from a worker")

    async def main() -> tuple[str, str]:
        name = await pool.run(lambda: threading.current_thread().name)
        with pytest.raises(ValueError, match="from a worker"):
            await pool.run(boom)
        return name, await pool.run(str.upper, "ok")

    try:
        name, upper = asyncio.run(main())
    finally:
        pool.shutdown()
    assert name.startswith("test-pool-") and upper == "OK"


def transform_pipeline(result: object) -> Pipeline:
    def transform_fn(model: object, data: object, content_type: object, accept: object) -> object:
        return result

    unused = Handler(lambda *args: None, False)
    return Pipeline(
        model=None,
        model_dir="/m",
        transform_fn=Handler(transform_fn, False),
        input_fn=unused,
        predict_fn=unused,
        output_fn=unused,
        user_output_fn=False,
    )


def test_results_become_bodies_like_the_model_server() -> None:
    def invoke(result: object) -> Complete | Stream:
        return transform_pipeline(result).invoke(b"", None, "application/json", Context("/m"))

    assert invoke(b"raw") == Complete(b"raw", "application/json")
    assert invoke(("é", "text/plain")) == Complete("é".encode(), "text/plain")
    assert invoke(bytearray(b"ba")) == Complete(b"ba", "application/json")
    # Anything else is JSON with indent 2, as multi-model-server encodes it.
    assert invoke({"a": [1]}) == Complete(b'{\n  "a": [\n    1\n  ]\n}', "application/json")
    streamed = invoke((iter([b"x"]), "text/event-stream"))
    assert isinstance(streamed, Stream) and streamed.content_type == "text/event-stream"
    with pytest.raises(TypeError, match="unable to serialize model output of type object"):
        invoke(object())
    with pytest.raises(BadRequestError, match="not valid UTF-8"):
        transform_pipeline(b"").invoke(b"\xff", "text/csv", "*/*", Context("/m"))
