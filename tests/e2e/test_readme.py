"""The README's boto3 and aws-cli examples run, unchanged but for the port, against `--demo`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagehost.testing.server import RunningServer, free_port

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("demo") / "data", port=free_port(), args=["--demo"]
    )
    running.start()
    yield running
    running.stop()


def test_readme_has_exactly_two_setup_commands() -> None:
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", setup, re.S)
    assert commands == [
        "python3 -m pip install . && sagehost serve --demo\n",
        'python3 -m pip install -e ".[test]" && npm ci --prefix tests/js && python3 -m pytest\n',
    ]


def run_snippet(index: int, server: RunningServer) -> str:
    """The README's ``index``-th Python example, run against ``server``; returns its output."""
    snippet = re.findall(r"```python\n(.*?)```", README, re.S)[index]
    assert 'endpoint_url="http://127.0.0.1:8080"' in snippet
    result = subprocess.run(
        [sys.executable, "-c", snippet.replace(":8080", f":{server.port}")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_boto3_snippet(demo: RunningServer) -> None:
    output = run_snippet(0, demo)
    variant, _, rest = output.partition(" ")
    assert variant == "AllTraffic"
    assert rest.count("'label': 'setosa'") == 1
    assert rest.count("'label': 'virginica'") == 1


def test_boto3_streaming_snippet(demo: RunningServer) -> None:
    assert (
        "invoke_endpoint_with_response_stream"
        in re.findall(r"```python\n(.*?)```", README, re.S)[1]
    )
    words = run_snippet(1, demo).split()
    assert len(words) == 20
    # The generator only walks word pairs seen in its corpus, so every word comes from it.
    corpus = (
        Path(__file__).resolve().parents[2] / "src/sagehost/demo/textgen/corpus.txt"
    ).read_text()
    assert set(words) <= set(corpus.split())


def test_aws_cli_snippet(demo: RunningServer, tmp_path: Path) -> None:
    command = re.search(r"```sh\n(AWS_ACCESS_KEY_ID=.*?)```", README, re.S)
    assert command is not None
    script = (
        command.group(1)
        .replace(":8080", f":{demo.port}")
        .replace("/dev/stdout", str(tmp_path / "out.json"))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert '"InvokedProductionVariant": "AllTraffic"' in result.stdout
    assert (tmp_path / "out.json").read_text().startswith('{"predictions": [{"label": "setosa"')
