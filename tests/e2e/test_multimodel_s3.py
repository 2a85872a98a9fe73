"""A multi-model endpoint whose models live under an s3:// prefix (moto on loopback, reached
through AWS_ENDPOINT_URL_S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer
from tests.e2e import test_artifacts
from tests.e2e.conftest import unique
from tests.e2e.multimodel_helpers import deploy_mme, events, invoke, model_tarball

s3_server = test_artifacts.s3_server  # a server whose S3 is moto, with a "models" bucket


def test_target_models_under_an_s3_prefix(
    s3_server: tuple[RunningServer, Any], tmp_path: Path
) -> None:
    server, s3 = s3_server
    targets = ("a.tar.gz", "sub/dir/m.tar.gz")
    for target in targets:
        s3.put_object(Bucket="models", Key=f"mme/{target}", Body=model_tarball(f"s3 {target}"))
    name, log = unique("mme-s3"), tmp_path / "events"
    deploy_mme(server.client("sagemaker"), name, "s3://models/mme/", events=log)
    rt = server.client("sagemaker-runtime")
    for _ in range(2):
        for target in targets:
            assert invoke(rt, name, target)["ident"] == f"s3 {target}"
    assert events(log, "load") == [f"s3 {t}" for t in targets]
    # A model uploaded after the endpoint was created is found on its first call.
    s3.put_object(Bucket="models", Key="mme/late.tar.gz", Body=model_tarball("late"))
    assert invoke(rt, name, "late.tar.gz")["ident"] == "late"
    with pytest.raises(ClientError) as error:
        rt.invoke_endpoint(EndpointName=name, TargetModel="nope.tar.gz", Body=b"x")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert error.value.response["Error"]["Message"] == (
        "TargetModel nope.tar.gz was not found: there is no model data at "
        "s3://models/mme/nope.tar.gz."
    )
