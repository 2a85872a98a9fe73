"""Start-up, load failures, readiness and shutdown of real modelhost processes."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from modelhost_helpers import Host, Launcher, Reply, call

GATED_MODEL = """
    import os, time

    def _wait_for(path):
        deadline = time.monotonic() + 15
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(path)
            time.sleep(0.005)

    def model_fn(model_dir):
        _wait_for(os.environ["TEST_LOAD_GATE"])
        return "loaded"

    def predict_fn(data, model):
        # The default input_fn gives a 0-d object array when numpy is installed.
        data = data.tolist() if hasattr(data, "tolist") else data
        if "wait" in data:
            open(os.environ["TEST_STARTED"] + data["wait"], "w").close()
            _wait_for(os.environ["TEST_PREDICT_GATE"])
        return {"model": model}
"""


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


# Models that must not load. They start together, since each process takes a while to boot.
BROKEN = {
    "model-fn-raises": (
        {
            "code/inference.py": """
                def model_fn(model_dir):
                    raise FileNotFoundError("weights.bin is missing from the artifact")
            """
        },
        {},
    ),
    "transform-and-predict": (
        {
            "code/inference.py": """
                def model_fn(model_dir): return 1
                def predict_fn(data, model): return data
                def transform_fn(model, data, content_type, accept): return data
            """
        },
        {},
    ),
    "no-module": ({"weights.txt": "w"}, {}),
    "wrong-arity": (
        {
            "code/inference.py": """
                def model_fn(model_dir): return 1
                def predict_fn(data, model, context, extra): return data
            """
        },
        {},
    ),
    "bad-setting": (
        {"code/inference.py": "def model_fn(d): return 1\n"},
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "many"},
    ),
}


@pytest.fixture(scope="module")
def broken(module_launcher: Launcher) -> dict[str, Host]:
    return {
        name: module_launcher.start(module_launcher.model_dir(files, name), env, wait=False)
        for name, (files, env) in BROKEN.items()
    }


def test_model_fn_failure_exits_1_with_traceback(broken: dict[str, Host]) -> None:
    host = broken["model-fn-raises"]
    assert host.wait_exit() == 1
    log = host.stderr()
    assert "modelhost: loading the model failed" in log
    assert "Traceback (most recent call last)" in log
    assert "FileNotFoundError: weights.bin is missing from the artifact" in log


def test_transform_fn_with_predict_fn_is_a_load_error(broken: dict[str, Host]) -> None:
    host = broken["transform-and-predict"]
    assert host.wait_exit() == 1
    assert "ValueError: Cannot use transform_fn implementation in conjunction with" in host.stderr()


def test_missing_module_uses_defaults_and_default_model_fn_fails(broken: dict[str, Host]) -> None:
    host = broken["no-module"]
    assert host.wait_exit() == 1
    log = host.stderr()
    assert "no handler module 'inference' found" in log
    assert "NotImplementedError: the handler module defines no model_fn" in log


def test_wrong_parameter_count_is_a_load_error(broken: dict[str, Host]) -> None:
    host = broken["wrong-arity"]
    assert host.wait_exit() == 1
    assert "predict_fn must take 2 parameters, or 3 with a trailing context" in host.stderr()


def test_invalid_setting_exits_2(broken: dict[str, Host]) -> None:
    host = broken["bad-setting"]
    assert host.wait_exit() == 2
    assert "SAGEMAKER_MODEL_SERVER_WORKERS must be an integer, got 'many'" in host.stderr()


def test_hooks_run_in_order_and_requirements_are_skipped(launcher: Launcher) -> None:
    model_dir = launcher.model_dir(
        {
            "code/requirements.txt": "torch==99\n",
            "code/inference.py": """
                CALLS = []

                def pre_model_fn(model_dir):
                    CALLS.append("pre")

                def model_fn(model_dir, context):
                    CALLS.append("model:" + context.system_properties["model_dir"])
                    return CALLS

                def model_warmup_fn(model_dir, model):
                    CALLS.append("warmup")

                def predict_fn(data, model):
                    return model
            """,
        }
    )
    host = launcher.start(model_dir)
    reply = host.invoke("{}", {"Content-Type": "application/json"})
    assert json.loads(reply.body) == ["pre", f"model:{model_dir}", "warmup"]
    assert f"{model_dir}/code/requirements.txt was not installed" in host.stderr()


def test_ping_is_503_until_the_model_has_loaded(launcher: Launcher, tmp_path: Path) -> None:
    gate = tmp_path / "load-gate"
    model_dir = launcher.model_dir({"code/inference.py": GATED_MODEL})
    host = launcher.start(model_dir, {"TEST_LOAD_GATE": str(gate)}, wait=False)
    deadline = time.monotonic() + 20
    status = None
    while status is None:
        assert time.monotonic() < deadline and host.proc.poll() is None, host.stderr()
        status = host.ping_status()
    assert status == 503
    reply = host.invoke("{}", {"Content-Type": "application/json"})
    assert (reply.status, reply.text) == (503, "model is loading")
    gate.touch()
    host.wait_ready()
    reply = host.invoke("{}", {"Content-Type": "application/json"})
    assert (reply.status, reply.body) == (200, b'{"model": "loaded"}')


def test_ping_answers_during_a_prediction_and_sigterm_drains(
    launcher: Launcher, tmp_path: Path
) -> None:
    load_gate = tmp_path / "load-gate"
    load_gate.touch()
    started, predict_gate = tmp_path / "started", tmp_path / "predict-gate"
    env = {
        "TEST_LOAD_GATE": str(load_gate),
        "TEST_STARTED": str(started),
        "TEST_PREDICT_GATE": str(predict_gate),
    }
    host = launcher.start(launcher.model_dir({"code/inference.py": GATED_MODEL}), env)
    replies: list[Reply] = []
    request = threading.Thread(
        target=lambda: replies.append(
            call(
                host.port,
                "POST",
                "/invocations",
                '{"wait": ""}',
                {"Content-Type": "application/json"},
            )
        )
    )
    request.start()
    wait_for_file(started)
    assert host.ping_status() == 200  # the event loop is free while the worker thread predicts
    host.proc.send_signal(signal.SIGTERM)
    predict_gate.touch()
    request.join(timeout=10)
    assert [(r.status, r.body) for r in replies] == [(200, b'{"model": "loaded"}')]
    assert host.wait_exit() == -signal.SIGTERM


def test_busy_port_exits_1(launcher: Launcher) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        model_dir = launcher.model_dir({"code/inference.py": "def model_fn(d): return 1\n"})
        host = launcher.start(model_dir, {"SAGEMAKER_BIND_TO_PORT": str(port)}, wait=False)
        assert host.wait_exit() == 1
    assert f"cannot listen on 127.0.0.1:{port}" in host.stderr()


def test_workers_setting_allows_concurrent_predictions(launcher: Launcher, tmp_path: Path) -> None:
    load_gate = tmp_path / "load-gate"
    load_gate.touch()
    started, predict_gate = tmp_path / "started-", tmp_path / "predict-gate"
    env = {
        "TEST_LOAD_GATE": str(load_gate),
        "TEST_STARTED": str(started),
        "TEST_PREDICT_GATE": str(predict_gate),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
    }
    host = launcher.start(launcher.model_dir({"code/inference.py": GATED_MODEL}), env)
    replies: list[Reply] = []

    def invoke(name: str) -> None:
        body = json.dumps({"wait": name})
        replies.append(
            call(host.port, "POST", "/invocations", body, {"Content-Type": "application/json"})
        )

    threads = [threading.Thread(target=invoke, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    # Both predictions are inside predict_fn at once, which one worker thread could not do.
    wait_for_file(tmp_path / "started-a")
    wait_for_file(tmp_path / "started-b")
    predict_gate.touch()
    for thread in threads:
        thread.join(timeout=10)
    assert [r.status for r in replies] == [200, 200]
