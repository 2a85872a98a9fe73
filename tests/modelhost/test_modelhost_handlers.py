"""Handler styles, content negotiation and error mapping, against real modelhost processes."""

from __future__ import annotations

import http.client
import importlib.util
import json

import pytest
from modelhost_helpers import Host, Launcher

HAS_NUMPY = importlib.util.find_spec("numpy") is not None

DEFAULT_IO = """
    def model_fn(model_dir):
        return 2

    def _double(value, factor):
        if isinstance(value, list):
            return [_double(v, factor) for v in value]
        return value * factor

    def predict_fn(data, model):
        values = data.tolist() if hasattr(data, "tolist") else data
        return _double(values, model)
"""

FULL = """
    import json

    class ToolkitStyleError(Exception):
        # The shape of sagemaker_inference.errors.BaseInferenceToolkitError.
        def __init__(self, status_code, message, phrase):
            super().__init__(status_code, message, phrase)
            self.status_code = status_code
            self.message = message
            self.phrase = phrase

    def model_fn(model_dir, context):
        return {"loaded_from": context.system_properties["model_dir"], "same": model_dir}

    def input_fn(input_data, content_type, context):
        is_str = isinstance(input_data, str)
        return {
            "text": input_data if is_str else input_data.decode(),
            "is_str": is_str,
            "content_type": content_type,
        }

    def predict_fn(data, model, context):
        command = data["text"]
        if command == "boom":
            raise ValueError("boom: the model exploded")
        if command == "teapot":
            raise ToolkitStyleError(418, "short and stout", "I'm a teapot")
        if command == "bad-status":
            error = RuntimeError("status attribute out of range")
            error.status_code = 200
            raise error
        if command == "attrs":
            seen = context.request_headers.get("x-amzn-sagemaker-custom-attributes")
            context.set_response_header("X-Amzn-SageMaker-Custom-Attributes", f"seen={seen}")
            session = "s-1; Expires=2030-01-01T00:00:00Z"
            context.set_response_header(0, "X-Amzn-SageMaker-New-Session-Id", session)
        if command == "bad-header":
            context.set_response_header("Content-Length", "1")
        headers = context.request_headers
        return {
            **data,
            **model,
            "target_model": headers.get("x-amzn-sagemaker-target-model"),
            "session_id": headers.get("x-amzn-sagemaker-session-id"),
            "inference_id": headers.get("x-amzn-sagemaker-inference-id"),
        }

    def output_fn(prediction, accept, context):
        if accept == "text/plain":
            return "plain " + prediction["text"]
        return json.dumps({**prediction, "accept": accept}), "application/vnd.test+json"
"""


@pytest.fixture(scope="module")
def defaults_host(module_launcher: Launcher) -> Host:
    model_dir = module_launcher.model_dir({"code/inference.py": DEFAULT_IO}, "defaults")
    # A 1 MiB limit keeps the 413 test cheap.
    return module_launcher.start(model_dir, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})


@pytest.fixture(scope="module")
def full_host(module_launcher: Launcher) -> Host:
    model_dir = module_launcher.model_dir({"code/inference.py": FULL}, "full")
    return module_launcher.start(model_dir)


def test_default_json_in_and_out(defaults_host: Host) -> None:
    reply = defaults_host.invoke("[1, 2, 3]", {"Content-Type": "application/json"})
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b"[2, 4, 6]"


def test_ping_is_200_with_empty_body(defaults_host: Host) -> None:
    reply = defaults_host.call("GET", "/ping")
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")


def test_csv_round_trip(defaults_host: Host) -> None:
    reply = defaults_host.invoke(
        "1.5,2.5\n3.5,4.5\n", {"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/csv"
    assert reply.body == b"3.0,5.0\n7.0,9.0\n"


@pytest.mark.parametrize(
    ("accept", "expected_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/html, text/csv;q=0.9, application/json", "text/csv"),
        ("text/html, */*", "application/json"),
    ],
)
def test_accept_negotiation(defaults_host: Host, accept: str | None, expected_type: str) -> None:
    headers = {"Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    reply = defaults_host.invoke("[1, 2]", headers)
    assert reply.status == 200
    assert reply.headers["content-type"] == expected_type
    assert reply.body == {"application/json": b"[2, 4]", "text/csv": b"2\n4\n"}[expected_type]


@pytest.mark.skipif(not HAS_NUMPY, reason="application/x-npy needs numpy")
def test_npy_in_and_out(defaults_host: Host) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.array([[1.0, 2.0]]))
    reply = defaults_host.invoke(
        buffer.getvalue(), {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(reply.body)).tolist() == [[2.0, 4.0]]


def test_unsupported_accept_is_406(defaults_host: Host) -> None:
    reply = defaults_host.invoke("[1]", {"Content-Type": "application/json", "Accept": "text/html"})
    assert reply.status == 406
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text.startswith(
        "accept type 'text/html' is not supported by the default output_fn"
    )


def test_unsupported_content_type_is_415(defaults_host: Host) -> None:
    reply = defaults_host.invoke("<a/>", {"Content-Type": "application/xml"})
    assert reply.status == 415
    assert reply.text.startswith("content type 'application/xml' is not supported")


def test_invalid_json_is_400(defaults_host: Host) -> None:
    reply = defaults_host.invoke("[1,", {"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.text.startswith("request body is not valid JSON")


def test_body_over_the_payload_limit_is_413(defaults_host: Host) -> None:
    limit = 1024 * 1024
    at_limit = b"[" + b" " * (limit - 3) + b"1]"
    assert defaults_host.invoke(at_limit, {"Content-Type": "application/json"}).body == b"[2]"
    reply = defaults_host.invoke(at_limit + b" ", {"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.text == f"request body exceeds {limit} bytes"


def test_unknown_path_is_404_and_wrong_method_405(defaults_host: Host) -> None:
    assert defaults_host.call("GET", "/nope").status == 404
    assert defaults_host.call("POST", "/invocations/x").status == 404
    reply = defaults_host.call("GET", "/invocations")
    assert (reply.status, reply.headers["allow"]) == (405, "POST")
    reply = defaults_host.call("POST", "/ping")
    assert (reply.status, reply.headers["allow"]) == (405, "GET")


def test_full_handlers_with_context(full_host: Host) -> None:
    reply = full_host.invoke(
        "hello",
        {
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-Target-Model": "m/a.tar.gz",
            "X-Amzn-SageMaker-Session-Id": "sess-1",
            "X-Amzn-SageMaker-Inference-Id": "inf-9",
        },
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/vnd.test+json"
    body = json.loads(reply.body)
    assert body["loaded_from"] == body["same"]
    assert body["loaded_from"].endswith("/full")
    assert body == {
        "text": "hello",
        "is_str": True,
        "content_type": "application/json",
        "loaded_from": body["loaded_from"],
        "same": body["loaded_from"],
        "target_model": "m/a.tar.gz",
        "session_id": "sess-1",
        "inference_id": "inf-9",
        "accept": "application/json",
    }


def test_non_text_bodies_reach_input_fn_as_bytes(full_host: Host) -> None:
    reply = full_host.invoke(b"raw", {"Content-Type": "application/octet-stream"})
    body = json.loads(reply.body)
    assert (body["is_str"], body["content_type"]) == (False, "application/octet-stream")


def test_str_result_takes_the_accept_type(full_host: Host) -> None:
    reply = full_host.invoke("hi", {"Content-Type": "text/csv", "Accept": "text/plain"})
    assert (reply.status, reply.headers["content-type"], reply.body) == (
        200,
        "text/plain",
        b"plain hi",
    )


def test_custom_attributes_round_trip(full_host: Host) -> None:
    reply = full_host.invoke(
        "attrs",
        {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "trace=abc"},
    )
    assert reply.status == 200
    assert reply.headers["x-amzn-sagemaker-custom-attributes"] == "seen=trace=abc"
    assert reply.headers["x-amzn-sagemaker-new-session-id"] == "s-1; Expires=2030-01-01T00:00:00Z"


def test_handler_exception_is_500_with_message_only(full_host: Host) -> None:
    reply = full_host.invoke("boom", {"Content-Type": "text/csv"})
    assert reply.status == 500
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == "boom: the model exploded"
    log = full_host.stderr()
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("boom: the model exploded")' in log


def test_status_code_attribute_sets_the_status(full_host: Host) -> None:
    reply = full_host.invoke("teapot", {"Content-Type": "text/csv"})
    assert (reply.status, reply.text) == (418, "short and stout")


def test_status_code_outside_4xx_5xx_is_500(full_host: Host) -> None:
    reply = full_host.invoke("bad-status", {"Content-Type": "text/csv"})
    assert (reply.status, reply.text) == (500, "status attribute out of range")


def test_framing_headers_cannot_be_set_from_a_handler(full_host: Host) -> None:
    reply = full_host.invoke("bad-header", {"Content-Type": "text/csv"})
    assert reply.status == 500
    assert reply.text == "only X-Amzn-SageMaker-* response headers may be set, not 'Content-Length'"


def test_transform_fn(launcher: Launcher) -> None:
    model_dir = launcher.model_dir(
        {
            "code/inference.py": """
                def model_fn(model_dir):
                    return "M"

                def transform_fn(model, input_data, content_type, accept):
                    return f"{model}|{input_data}|{content_type}|{accept}", "text/x-echo"
            """
        }
    )
    host = launcher.start(model_dir, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    reply = host.invoke("a,b", {"Content-Type": "text/csv"})
    assert (reply.status, reply.headers["content-type"]) == (200, "text/x-echo")
    assert reply.body == b"M|a,b|text/csv|text/csv"


def test_sagemaker_program_selects_the_module(launcher: Launcher) -> None:
    model_dir = launcher.model_dir(
        {
            "code/inference.py": "raise RuntimeError('inference.py must not be imported')\n",
            "code/other.py": """
                import helper

                def model_fn(model_dir):
                    return helper.PREFIX

                def transform_fn(model, input_data, content_type, accept):
                    return model + input_data
            """,
            "code/helper.py": "PREFIX = 'other:'\n",
        }
    )
    host = launcher.start(model_dir, {"SAGEMAKER_PROGRAM": "other.py"})
    reply = host.invoke("x", {"Content-Type": "application/json"})
    assert (reply.status, reply.body) == (200, b"other:x")


def test_plain_python_codecs_without_numpy(
    launcher: Launcher, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A numpy package that fails to import stands in for "numpy is not installed".
    blocker = tmp_path_factory.mktemp("no-numpy")
    (blocker / "numpy").mkdir()
    (blocker / "numpy" / "__init__.py").write_text("raise ImportError('numpy is blocked')\n")
    model_dir = launcher.model_dir(
        {
            "code/inference.py": """
                def model_fn(model_dir):
                    return None

                def predict_fn(data, model):
                    return {"type": type(data).__name__, "data": data}
            """
        }
    )
    host = launcher.start(model_dir, pythonpath_first=blocker)
    reply = host.invoke("1, x ,2.5\n\n-3,,4\n", {"Content-Type": "text/csv"})
    assert reply.status == 200
    assert json.loads(reply.body) == {"type": "list", "data": [[1.0, " x ", 2.5], [-3.0, "", 4.0]]}
    reply = host.invoke('{"a": [1]}', {"Content-Type": "application/json"})
    assert json.loads(reply.body) == {"type": "dict", "data": {"a": [1]}}
    reply = host.invoke(b"\x93NUMPY", {"Content-Type": "application/x-npy"})
    assert (reply.status, reply.text) == (
        415,
        "application/x-npy bodies need numpy, which is not installed",
    )
    reply = host.invoke("[1]", {"Content-Type": "application/json", "Accept": "application/x-npy"})
    assert reply.status == 406


def chunked_post(host: Host, parts: list[bytes]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/invocations", body=iter(parts), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_chunked_request_bodies(defaults_host: Host) -> None:
    assert chunked_post(defaults_host, [b"[1,", b" 2", b"]"]) == (200, b"[2, 4]")
    # Over the limit without a Content-Length: read to the end, then 413.
    status, body = chunked_post(defaults_host, [b"[" + b" " * 512 * 1024] * 3)
    assert (status, body) == (413, f"request body exceeds {1024 * 1024} bytes".encode())
