"""Stopping sagehost while a multi-model load is still running: a clean exit, and the model
cache removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer, free_port
from tests.e2e.multimodel_helpers import add_model, deploy_mme, invoke


def test_sigterm_during_a_background_load(tmp_path: Path) -> None:
    server = RunningServer(data_dir=tmp_path / "data", port=free_port())
    server.start()
    try:
        sm = server.client("sagemaker")
        rt = server.client("sagemaker-runtime")
        prefix = tmp_path / "models"
        add_model(prefix, "fast.tar.gz")
        add_model(prefix, "slow.tar.gz", load_delay=30)
        deploy_mme(
            sm,
            "stopping",
            prefix.as_uri(),
            events=tmp_path / "events",
            config_tags=[{"Key": "sagehost:invocation-timeout-seconds", "Value": "1"}],
        )
        assert invoke(rt, "stopping", "fast.tar.gz")["ident"] == "fast.tar.gz"
        cache = tmp_path / "data" / "multimodel"
        assert any(path.is_dir() for path in cache.rglob("*"))
        with pytest.raises(ClientError) as error:
            rt.invoke_endpoint(EndpointName="stopping", TargetModel="slow.tar.gz", Body=b"x")
        assert error.value.response["Error"]["Code"] == "ModelNotReadyException"
        started = time.monotonic()
    finally:
        status = server.stop()
    assert status == 0
    assert time.monotonic() - started < 20  # the 30 s load did not hold the exit
    log = server.log_text()
    for sign in ("Traceback", "never retrieved", "Task was destroyed"):
        assert sign not in log, log
    assert not [p for p in cache.rglob("*") if p.is_file()], os.listdir(cache)
