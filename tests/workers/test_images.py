"""Image strings, and the command line and environment built from them."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

import sagehost
from sagehost.core.errors import DeploymentFailed
from sagehost.workers.images import (
    BuiltinRuntime,
    Command,
    DockerImage,
    RemoteUrl,
    build_launch,
    docker_problem,
    resolve_image,
)


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("sagehost/python", BuiltinRuntime()),
        ("sagehost/python:3.11", BuiltinRuntime()),
        ("process:python -m my.server -v", Command(("python", "-m", "my.server", "-v"))),
        ("process:'/opt/my app/serve' \"a b\"", Command(("/opt/my app/serve", "a b"))),
        ("url:http://10.0.0.5:8080/", RemoteUrl("http://10.0.0.5:8080")),
        ("url:https://models.internal", RemoteUrl("https://models.internal")),
        (
            "1.dkr.ecr.us-east-1.amazonaws.com/x:1",
            DockerImage("1.dkr.ecr.us-east-1.amazonaws.com/x:1"),
        ),
        ("sagehost/pythonic", DockerImage("sagehost/pythonic")),
    ],
)
def test_resolve_image(image: str, kind: object) -> None:
    assert resolve_image(image) == kind


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("process:", 'Image "process:" names no command to run.'),
        ("process:'a", 'Image "process:\'a" is not a valid command line: No closing quotation.'),
        ("url:ftp://host", 'Image "url:ftp://host" must look like "url:http://host:port".'),
    ],
)
def test_resolve_image_rejects(image: str, reason: str) -> None:
    with pytest.raises(DeploymentFailed) as failed:
        resolve_image(image)
    assert failed.value.message == reason


def _launch(
    image: BuiltinRuntime | Command | DockerImage, tmp_path: Path
) -> tuple[list[str], dict[str, str], list[str] | None]:
    launch = build_launch(
        image,
        python="/usr/bin/python3",
        base_env={
            "PATH": "/bin",
            "AWS_SECRET_ACCESS_KEY": "s",
            "SAGEHOST_X": "1",
            "PYTHONPATH": "/extra",
        },
        environment={"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_BIND_TO_PORT": "1"},
        port=40001,
        bind_host="127.0.0.1",
        model_dir=tmp_path / "model",
        base_dir=tmp_path / "base",
        hostname="primary",
        name="sagehost-e-0-abc",
    )
    return launch.argv, launch.env, launch.cleanup


def test_builtin_runtime_launch(tmp_path: Path) -> None:
    argv, env, cleanup = _launch(BuiltinRuntime(), tmp_path)
    assert argv == ["/usr/bin/python3", "-m", "sagehost.modelhost"]
    package_root = str(Path(sagehost.__file__).resolve().parent.parent)
    assert env == {
        "PATH": "/bin",
        "PYTHONPATH": f"{package_root}{os.pathsep}/extra",
        "PYTHONUNBUFFERED": "1",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_BIND_TO_PORT": "40001",  # ours wins: the port is the adapter's to choose
        "SAGEHOST_BIND_HOST": "127.0.0.1",
        "SAGEHOST_MODEL_DIR": str(tmp_path / "model"),
        "SAGEMAKER_BASE_DIR": str(tmp_path / "base"),
    }
    assert cleanup is None


def test_process_launch_runs_the_command_as_is(tmp_path: Path) -> None:
    argv, env, _ = _launch(Command(("serve", "--fast")), tmp_path)
    assert argv == ["serve", "--fast"]
    assert env["PYTHONPATH"] == "/extra"
    assert env["SAGEMAKER_BIND_TO_PORT"] == "40001"


def test_docker_launch(tmp_path: Path) -> None:
    argv, env, cleanup = _launch(DockerImage("acme/xgb:1"), tmp_path)
    assert argv == [
        "docker", "run", "--rm", "--name", "sagehost-e-0-abc", "--hostname", "primary",
        "-p", "127.0.0.1:40001:8080",
        "-v", f"{tmp_path / 'model'}:/opt/ml/model:ro",
        "-e", "SAGEMAKER_PROGRAM", "-e", "SAGEMAKER_BIND_TO_PORT",
        "acme/xgb:1", "serve",
    ]  # fmt: skip
    # Values reach the container through the CLI's environment, never its command line.
    assert env == {
        "PATH": "/bin",
        "PYTHONPATH": "/extra",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_BIND_TO_PORT": "1",
    }
    assert cleanup == ["docker", "rm", "--force", "sagehost-e-0-abc"]


def test_docker_engine_detection(tmp_path: Path) -> None:
    listening = tmp_path / "live.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(listening))
    server.listen()
    try:
        assert asyncio.run(docker_problem("img", None, listening)) is None
        assert asyncio.run(docker_problem("img", "tcp://10.0.0.1:2375", tmp_path / "x")) is None
        reason = asyncio.run(docker_problem("img", None, tmp_path / "absent.sock"))
        assert reason is not None and reason.startswith('Image "img" needs a Docker engine')
    finally:
        server.close()


def test_docker_multi_model_launch_shares_the_model_cache(tmp_path: Path) -> None:
    """A multi-model container is told to load models by their host path: Docker mounts the
    cache at that same path."""
    cache = tmp_path / "data" / "multimodel"
    launch = build_launch(
        DockerImage("acme/mms:1"),
        python="/usr/bin/python3",
        base_env={},
        environment={"SAGEMAKER_MULTI_MODEL": "true"},
        port=40002,
        bind_host="127.0.0.1",
        model_dir=tmp_path / "model",
        base_dir=tmp_path / "base",
        hostname="primary",
        name="sagehost-mme-0",
        shared_dirs=(cache,),
    )
    assert launch.argv == [
        "docker", "run", "--rm", "--name", "sagehost-mme-0", "--hostname", "primary",
        "-p", "127.0.0.1:40002:8080",
        "-v", f"{tmp_path / 'model'}:/opt/ml/model:ro",
        "-v", f"{cache}:{cache}:ro",
        "-e", "SAGEMAKER_MULTI_MODEL",
        "acme/mms:1", "serve",
    ]  # fmt: skip
