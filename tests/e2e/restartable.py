"""A server of one test's own, for tests that stop and restart it (``own_server``): import
it into a test module as ``own_server = restartable.own_server``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagehost.testing.server import RunningServer, free_port


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """Started on ``tmp_path/data``; killed at the end if the test left it running."""
    running = RunningServer(data_dir=tmp_path / "data", port=free_port())
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop(signal.SIGKILL)
