"""Multi-model endpoints through boto3: a real server, real worker processes of the BYO
multi-model test container (tests/containers/mme_server.py), models under a file:// prefix."""

from __future__ import annotations

import os
import signal
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagehost.core.multimodel import model_name
from sagehost.testing.server import DEV_ACCOUNT, RunningServer
from tests.e2e.conftest import unique
from tests.e2e.multimodel_helpers import (
    add_model,
    deploy_container,
    deploy_mme,
    events,
    invoke,
    loaded,
    loaded_targets,
    mme_endpoint,
    wait_for,
)
from tests.e2e.signed import own_call


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return dict(response)


def test_target_models_under_one_prefix(sm: Any, rt: Any, tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    for target in ("a.tar.gz", "b.tar.gz", "sub/dir/m.tar.gz"):
        add_model(prefix, target, ident=f"model {target}")
    name, log = unique("mme"), tmp_path / "events"
    deploy_mme(sm, name, prefix.as_uri() + "/", events=log)
    for _ in range(2):
        for target in ("a.tar.gz", "sub/dir/m.tar.gz", "b.tar.gz"):
            answer = invoke(rt, name, target, body=f"to {target}".encode())
            assert answer["ident"] == f"model {target}"
            assert answer["target"] == target
            assert answer["body"] == f"to {target}"
    # Each model was loaded once, then served from memory.
    assert events(log, "load") == ["model a.tar.gz", "model sub/dir/m.tar.gz", "model b.tar.gz"]
    assert events(log, "unload") == []


def test_a_plain_path_prefix_and_the_model_names_the_container_sees(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    prefix = tmp_path / "models"
    add_model(prefix, "m.tar.gz", ident="m")
    name = unique("mme-path")
    deploy_mme(sm, name, str(prefix), events=tmp_path / "events")
    assert invoke(rt, name, "m.tar.gz")["ident"] == "m"
    (instance,) = loaded(server, name)["Instances"]
    (model,) = instance["Models"]
    assert model["ModelName"] == model_name("m.tar.gz")
    assert (model["TargetModel"], model["State"], model["Pinned"]) == ("m.tar.gz", "Loaded", False)


def test_missing_unknown_and_unsafe_target_models(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    name, prefix, _ = mme_endpoint(sm, tmp_path, "mme-errors", "a.tar.gz")
    cases = {
        None: f"Endpoint {name} of account {DEV_ACCOUNT} is a multi-model endpoint; "
        "name the model to invoke with TargetModel.",
        "nope.tar.gz": "TargetModel nope.tar.gz was not found: there is no model data at "
        f"{prefix.as_uri()}/nope.tar.gz.",
        "../a.tar.gz": "TargetModel ../a.tar.gz is not a valid model path: it must be relative "
        "to the endpoint's model data prefix, without empty, '.' or '..' segments.",
        "a" * 300 + ".tar.gz": f"TargetModel {'a' * 300}.tar.gz is not a valid model path: "
        "each of its segments must be at most 255 bytes long.",
    }
    for target, message in cases.items():
        params = {"EndpointName": name, "Body": b"x"}
        if target is not None:
            params["TargetModel"] = target
        response = error_of(lambda p=params: rt.invoke_endpoint(**p))
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert response["Error"]["Code"] == "ValidationError"
        assert response["Error"]["Message"] == message
    # sagehost's own LoadModels refuses what InvokeEndpoint's header never carries, pinning nothing.
    status, answer = own_call(
        server,
        "SageHost.LoadModels",
        {"EndpointName": name, "TargetModels": ["a.tar.gz", "a\x00b.tar.gz"], "Pin": True},
    )
    assert (status, answer["__type"], answer["Message"]) == (
        400,
        "ValidationException",
        "TargetModel a\\x00b.tar.gz is not a valid model path: "
        "it must not contain control characters.",
    )
    assert loaded(server, name)["PinnedModels"] == []
    # The endpoint still serves the model that exists.
    assert invoke(rt, name, "a.tar.gz")["ident"] == "a.tar.gz"


def test_streaming_to_a_multi_model_endpoint_is_refused(sm: Any, rt: Any, tmp_path: Path) -> None:
    name, _, _ = mme_endpoint(sm, tmp_path, "mme-stream", "a.tar.gz")
    response = error_of(
        lambda: rt.invoke_endpoint_with_response_stream(EndpointName=name, Body=b"x")
    )
    assert response["Error"]["Code"] == "ValidationError"
    assert "is a multi-model endpoint" in response["Error"]["Message"]


def test_a_failing_load_is_a_model_error_naming_the_container(
    sm: Any, rt: Any, tmp_path: Path
) -> None:
    add_model(tmp_path / "models", "broken.tar.gz", fail="model_fn raised ValueError: bad weights")
    name, prefix, _ = mme_endpoint(sm, tmp_path, "mme-broken")
    response = error_of(
        lambda: rt.invoke_endpoint(EndpointName=name, TargetModel="broken.tar.gz", Body=b"x")
    )
    original = '{"error": "model_fn raised ValueError: bad weights"}'
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["Error"]["Message"] == (
        f'Received server error (500) from primary while loading model broken.tar.gz with message "{original}".'
    )
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == original
    (prefix / "corrupt.tar.gz").write_bytes(b"\x1f\x8b but not gzip")
    response = error_of(
        lambda: rt.invoke_endpoint(EndpointName=name, TargetModel="corrupt.tar.gz", Body=b"x")
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["Error"]["Message"].startswith(
        "Could not fetch model corrupt.tar.gz for container primary: Model data "
        f"{prefix.as_uri()}/corrupt.tar.gz is not a valid .tar.gz archive"
    )
    assert response["OriginalStatusCode"] == 0


def test_twenty_concurrent_first_calls_load_once(
    sm: Any, server: RunningServer, tmp_path: Path
) -> None:
    add_model(tmp_path / "models", "slowish.tar.gz", ident="slowish", load_delay=1.0)
    name, _, log = mme_endpoint(sm, tmp_path, "mme-herd")
    rt = server.client("sagemaker-runtime", max_pool_connections=25)
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(lambda i: invoke(rt, name, "slowish.tar.gz", f"{i}".encode()), range(20))
        )
    assert [a["ident"] for a in answers] == ["slowish"] * 20
    assert sorted(int(a["body"]) for a in answers) == list(range(20))
    assert events(log, "load") == ["slowish"]


def test_a_slow_load_answers_429_then_succeeds(sm: Any, rt: Any, tmp_path: Path) -> None:
    add_model(tmp_path / "models", "slow.tar.gz", ident="slow", load_delay=2.5)
    name, _, log = mme_endpoint(
        sm,
        tmp_path,
        "mme-slow",
        config_tags=[{"Key": "sagehost:invocation-timeout-seconds", "Value": "1"}],
    )
    response = error_of(
        lambda: rt.invoke_endpoint(EndpointName=name, TargetModel="slow.tar.gz", Body=b"x")
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Error"]["Code"] == "ModelNotReadyException"
    assert response["Error"]["Message"] == (
        "Model slow.tar.gz is still being loaded into container primary. Try again shortly."
    )

    def attempt() -> dict[str, Any] | None:
        try:
            return invoke(rt, name, "slow.tar.gz")
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ModelNotReadyException"
            return None

    assert wait_for(attempt, timeout=15)["ident"] == "slow"
    assert events(log, "load") == ["slow"]


def test_calls_go_to_the_instance_holding_the_model(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    name, _, log = mme_endpoint(sm, tmp_path, "mme-two", "a.tar.gz", "b.tar.gz", instances=2)
    pids = {invoke(rt, name, "a.tar.gz")["pid"] for _ in range(8)}
    assert len(pids) == 1
    assert invoke(rt, name, "b.tar.gz")["ident"] == "b.tar.gz"
    assert events(log, "load") == ["a.tar.gz", "b.tar.gz"]
    holders = {
        m["TargetModel"]: instance["InstanceId"]
        for instance in loaded(server, name)["Instances"]
        for m in instance["Models"]
    }
    assert set(holders) == {"a.tar.gz", "b.tar.gz"}
    # Both instances were idle with room: the second model went to the other instance.
    assert holders["a.tar.gz"] != holders["b.tar.gz"]


def test_a_restarted_instance_loads_its_model_again(sm: Any, rt: Any, tmp_path: Path) -> None:
    name, _, log = mme_endpoint(sm, tmp_path, "mme-restart", "a.tar.gz")
    first = invoke(rt, name, "a.tar.gz")["pid"]
    os.kill(first, signal.SIGKILL)

    def attempt() -> dict[str, Any] | None:
        try:
            return invoke(rt, name, "a.tar.gz")
        except ClientError as error:  # the call that meets the dead process
            assert error.response["Error"]["Code"] in ("ModelError", "ServiceUnavailable")
            return None

    answer = wait_for(attempt, timeout=20)
    assert answer["pid"] != first
    assert answer["ident"] == "a.tar.gz"
    assert events(log, "load") == ["a.tar.gz", "a.tar.gz"]


def test_507_from_the_container_unloads_the_least_recently_used(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    targets = ("a.tar.gz", "b.tar.gz", "c.tar.gz")
    name, _, log = mme_endpoint(
        sm, tmp_path, "mme-507", *targets, environment={"MME_MAX_MODELS": "2"}
    )
    for target in ("a.tar.gz", "b.tar.gz", "a.tar.gz", "c.tar.gz"):
        assert invoke(rt, name, target)["ident"] == target
    assert events(log, "load") == ["a.tar.gz", "b.tar.gz", "c.tar.gz"]
    assert events(log, "unload") == ["b.tar.gz"]
    assert loaded_targets(server, name) == ["a.tar.gz", "c.tar.gz"]


def test_model_cache_disabled_unloads_and_deletes_after_each_call(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    name, _, log = mme_endpoint(sm, tmp_path, "mme-nocache", "a.tar.gz", cache_setting="Disabled")
    for round_ in (1, 2):
        assert invoke(rt, name, "a.tar.gz")["ident"] == "a.tar.gz"
        wait_for(lambda r=round_: len(events(log, "unload")) == r)
        view = wait_for(lambda: (v := loaded(server, name)) and not v["Disk"] and v)
        assert view["ModelCacheSetting"] == "Disabled"
        assert view["DiskUsedBytes"] == 0
        assert [i["Models"] for i in view["Instances"]] == [[]]
    assert events(log, "load") == ["a.tar.gz", "a.tar.gz"]
    assert events(log, "unload") == ["a.tar.gz", "a.tar.gz"]


def code_tarball(prefix: Path, target: str, source: str) -> None:
    """A model for the built-in runtime: ``code/inference.py`` holding ``source``."""
    staging = prefix.parent / "staging" / target
    (staging / "code").mkdir(parents=True)
    (staging / "code" / "inference.py").write_text(source)
    (prefix / target).parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(prefix / target, "w:gz") as archive:
        archive.add(staging / "code", arcname="code")


def test_the_builtin_runtime_serves_several_models(
    sm: Any, rt: Any, server: RunningServer, tmp_path: Path
) -> None:
    prefix = tmp_path / "models"
    for target, word in (("upper.tar.gz", "upper"), ("sub/dir/lower.tar.gz", "lower")):
        code_tarball(
            prefix,
            target,
            "def model_fn(model_dir):\n"
            f"    return str.{word}\n\n"
            "def transform_fn(model, data, content_type, accept):\n"
            f"    return '{word}:' + model(data.decode()), 'text/plain'\n",
        )
    name = unique("mme-builtin")
    deploy_container(
        sm,
        name,
        {"Image": "sagehost/python", "Mode": "MultiModel", "ModelDataUrl": prefix.as_uri() + "/"},
    )
    for target, expected in (
        ("upper.tar.gz", b"upper:HELLO"),
        ("sub/dir/lower.tar.gz", b"lower:hello"),
        ("upper.tar.gz", b"upper:HELLO"),
    ):
        reply = rt.invoke_endpoint(
            EndpointName=name, TargetModel=target, Body=b"HeLLo", ContentType="text/plain"
        )
        assert reply["Body"].read() == expected
        assert reply["ContentType"] == "text/plain"
    assert sorted(loaded_targets(server, name)) == ["sub/dir/lower.tar.gz", "upper.tar.gz"]
