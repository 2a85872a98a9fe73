"""The command line: entry points, flags, and refusals with a reason."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sagehost import __version__
from sagehost.cli import parser
from sagehost.testing.server import free_port


def test_console_script_and_module_agree() -> None:
    script = shutil.which("sagehost")
    assert script is not None, "the sagehost console script is not installed"
    for command in ([script, "--version"], [sys.executable, "-m", "sagehost", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert result.stdout.strip() == f"sagehost {__version__}"


def test_serve_defaults() -> None:
    args = parser().parse_args(["serve"])
    assert (args.host, args.port, args.data_dir, args.credentials, args.demo) == (
        "127.0.0.1",
        8080,
        Path(".sagehost"),
        None,
        False,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "[[account]]\nid = '12'\naccess_key_id = 'a'\nsecret_access_key = 'b'\n",
            "id must be a string of 12 digits",
        ),
        ("not toml [", "is not valid TOML"),
        ("", "has no [[account]] table"),
    ],
)
def test_bad_credentials_file_refuses_to_start(tmp_path: Path, content: str, message: str) -> None:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(content)
    result = serve(tmp_path, free_port(), "--credentials", str(credentials))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_process_flags() -> None:
    args = parser().parse_args(["serve"])
    assert (args.gateway_processes, args.route_refresh, args.job_retention) == (1, 0.05, 604800)
    args = parser().parse_args(["serve", "--gateway-processes", "2", "--route-refresh", "0.2"])
    assert (args.gateway_processes, args.route_refresh) == (2, 0.2)
    args = parser().parse_args(["serve", "--gateway-processes", "auto"])
    assert args.gateway_processes == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gateway-processes", "0"], "--gateway-processes: must be at least 1, not 0"),
        (
            ["--gateway-processes", "many"],
            "--gateway-processes: must be a count or auto, not 'many'",
        ),
        (["--route-refresh", "0"], "--route-refresh: must be above 0, not 0"),
        (["--job-retention", "-1"], "--job-retention: must be 0 or more, not -1"),
    ],
)
def test_gateway_process_flags_refused(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["serve", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_refused_with_several_gateway_processes(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path, port, "--gateway-processes", "2")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def serve(tmp_path: Path, port: int, *flags: str) -> subprocess.CompletedProcess[str]:
    """``sagehost serve`` on ``port`` with ``flags``, for a start that is to be refused."""
    command = [sys.executable, "-m", "sagehost", "serve", "--port", str(port)]
    return subprocess.run(
        [*command, "--data-dir", str(tmp_path / "d"), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
