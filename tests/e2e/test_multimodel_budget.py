"""Multi-model budgets, eviction order, pinning and sagehost's own model operations, on a
server started with small budgets (`--mme-memory-mb 0.25`: two test models per instance;
`--mme-disk-mb 0.5`: five on disk) and two accounts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagehost.core.multimodel import model_name
from sagehost.testing.server import RunningServer, free_port, write_credentials
from tests.e2e.conftest import unique
from tests.e2e.multimodel_helpers import (
    IMAGE,
    deploy_container,
    events,
    invoke,
    loaded,
    loaded_targets,
    mme_endpoint,
    wait_for,
)
from tests.e2e.signed import own_call

ACCOUNT_A, KEY_A, SECRET_A = "111111111111", "AKIDMMEA", "secret-a"
ACCOUNT_B, KEY_B, SECRET_B = "222222222222", "AKIDMMEB", "secret-b"
A = {"key": KEY_A, "secret": SECRET_A}
B = {"key": KEY_B, "secret": SECRET_B}
WEIGHTS = 100_000  # bytes per test model: 2 fit in 0.25 MiB, 5 in 0.5 MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("mme-budget")
    credentials = write_credentials(
        root / "credentials.toml", (ACCOUNT_A, KEY_A, SECRET_A), (ACCOUNT_B, KEY_B, SECRET_B)
    )
    running = RunningServer(
        data_dir=root / "data",
        port=free_port(),
        args=[
            "--credentials",
            str(credentials),
            "--mme-memory-mb",
            "0.25",
            "--mme-disk-mb",
            "0.5",
            "--startup-timeout",
            "10",
        ],
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sm(server: RunningServer) -> Any:
    return server.client("sagemaker", key=KEY_A, secret=SECRET_A)


@pytest.fixture(scope="module")
def rt(server: RunningServer) -> Any:
    return server.client("sagemaker-runtime", key=KEY_A, secret=SECRET_A)


def endpoint_with(sm: Any, tmp_path: Path, *targets: str, **options: Any) -> tuple[str, Path, Path]:
    """A multi-model endpoint whose prefix holds ``targets`` of WEIGHTS bytes each; returns
    (name, prefix, events)."""
    return mme_endpoint(sm, tmp_path, "budget", *targets, size=WEIGHTS, **options)


def models(*names: str) -> list[str]:
    return [f"{n}.tar.gz" for n in names]


def test_the_least_recently_used_model_is_evicted_first(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name, _, log = endpoint_with(sm, tmp_path, *models("a", "b", "c", "d"))
    for target in models("a", "b", "a", "c"):
        assert invoke(rt, name, target)["ident"] == target
    # a was used after b, so b made room for c.
    assert events(log, "unload") == models("b")
    assert loaded_targets(server, name, **A) == models("a", "c")
    assert invoke(rt, name, "d.tar.gz")["ident"] == "d.tar.gz"
    assert events(log, "unload") == models("b", "a")
    assert loaded_targets(server, name, **A) == models("c", "d")
    view = loaded(server, name, **A)
    assert view["MemoryBudgetBytes"] == 262144
    assert view["Instances"][0]["MemoryUsedBytes"] == 2 * (WEIGHTS + len("c.tar.gz"))
    assert events(log, "load") == models("a", "b", "c", "d")


def test_pinned_models_are_never_evicted(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name, _, log = endpoint_with(sm, tmp_path, *models("a", "b", "c", "d", "e"))
    status, answer = own_call(
        server,
        "SageHost.LoadModels",
        {"EndpointName": name, "TargetModels": ["a.tar.gz"], "Pin": True},
        **A,
    )
    assert status == 200
    assert answer == {
        "Models": [
            {
                "TargetModel": "a.tar.gz",
                "VariantName": "AllTraffic",
                "Status": "Loaded",
                "Pinned": True,
            }
        ]
    }
    for target in models("b", "c", "d"):
        assert invoke(rt, name, target)["ident"] == target
    assert events(log, "unload") == models("b", "c")
    assert loaded(server, name, **A)["PinnedModels"] == ["a.tar.gz"]
    assert loaded_targets(server, name, **A) == models("a", "d")
    # Unpinned, a is the least recently used and goes first.
    status, answer = own_call(
        server, "SageHost.UnpinModels", {"EndpointName": name, "TargetModels": ["a.tar.gz"]}, **A
    )
    assert (status, answer["Models"]) == (
        200,
        [{"TargetModel": "a.tar.gz", "VariantName": "AllTraffic", "WasPinned": True}],
    )
    assert invoke(rt, name, "e.tar.gz")["ident"] == "e.tar.gz"
    assert events(log, "unload") == models("b", "c", "a")
    assert loaded(server, name, **A)["PinnedModels"] == []


def test_memory_full_of_pinned_models_refuses_another(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name, _, _ = endpoint_with(sm, tmp_path, *models("a", "b", "c"))
    status, answer = own_call(
        server,
        "SageHost.LoadModels",
        {"EndpointName": name, "TargetModels": models("a", "b"), "Pin": True},
        **A,
    )
    assert status == 200
    assert [(m["Status"], m["Pinned"]) for m in answer["Models"]] == [("Loaded", True)] * 2
    with pytest.raises(ClientError) as error:
        rt.invoke_endpoint(EndpointName=name, TargetModel="c.tar.gz", Body=b"x")
    response: Any = error.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 507
    assert response["Error"]["Message"] == (
        f"Model c.tar.gz needs {WEIGHTS + 8} bytes of memory and pinned models fill every "
        "instance of this endpoint; unpin some with SageHost.UnpinModels."
    )
    own_call(
        server, "SageHost.UnpinModels", {"EndpointName": name, "TargetModels": ["b.tar.gz"]}, **A
    )
    assert invoke(rt, name, "c.tar.gz")["ident"] == "c.tar.gz"
    assert loaded_targets(server, name, **A) == models("a", "c")


def test_the_disk_keeps_the_most_recent_models_within_its_budget(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    targets = models(*(f"m{i}" for i in range(7)))
    name, _, _ = endpoint_with(sm, tmp_path, *targets)
    for target in targets:
        assert invoke(rt, name, target)["ident"] == target
    view = loaded(server, name, **A)
    # m5 and m6 are loaded (held); m2-m4 are kept on disk; m0 and m1 made room.
    assert [d["TargetModel"] for d in view["Disk"]] == targets[2:]
    assert [d["Holders"] for d in view["Disk"]] == [0, 0, 0, 1, 1]
    assert view["DiskUsedBytes"] == 5 * (WEIGHTS + len("m0.tar.gz"))
    assert view["DiskUsedBytes"] <= view["DiskBudgetBytes"] == 524288
    for gone in targets[:2]:
        wait_for(lambda g=gone: not list(server.data_dir.glob(f"multimodel/*/{model_name(g)}")))
    for kept in targets[2:]:
        assert list(server.data_dir.glob(f"multimodel/*/{model_name(kept)}"))


def test_model_operations_errors(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    name, _, _ = endpoint_with(sm, tmp_path, *models("a"))
    status, answer = own_call(
        server,
        "SageHost.LoadModels",
        {"EndpointName": name, "TargetModels": ["a.tar.gz", "missing.tar.gz"], "Pin": True},
        **A,
    )
    assert status == 200
    assert answer["Models"][0]["Status"] == "Loaded"
    assert answer["Models"][1] == {
        "TargetModel": "missing.tar.gz",
        "VariantName": "AllTraffic",
        "Status": "Failed",
        "FailureReason": "TargetModel missing.tar.gz was not found: there is no model data at "
        f"{(tmp_path / 'models').as_uri()}/missing.tar.gz.",
        "Pinned": False,
    }
    bad = [
        (
            {"EndpointName": "nope", "TargetModels": ["a"]},
            f"Endpoint nope of account {ACCOUNT_A} not found.",
        ),
        (
            {"EndpointName": name, "TargetModels": []},
            "TargetModels must be a list of 1 to 100 model paths.",
        ),
        ({"EndpointName": name, "TargetModels": ["a"], "Pin": "yes"}, "Pin must be true or false."),
        (
            {"EndpointName": name, "TargetModels": ["a"], "TargetVariant": "Other"},
            f"Endpoint {name} of account {ACCOUNT_A} has no multi-model variant named Other.",
        ),
    ]
    for params, message in bad:
        status, answer = own_call(server, "SageHost.LoadModels", params, **A)
        assert (status, answer["__type"], answer["Message"]) == (
            400,
            "ValidationException",
            message,
        )
    single = unique("single")
    deploy_container(sm, single, {"Image": IMAGE})
    status, answer = own_call(server, "SageHost.ListLoadedModels", {"EndpointName": single}, **A)
    assert (status, answer["Message"]) == (
        400,
        f"Endpoint {single} of account {ACCOUNT_A} is not a multi-model endpoint.",
    )


def test_another_account_sees_nothing(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name, _, _ = endpoint_with(sm, tmp_path, *models("a"))
    assert invoke(rt, name, "a.tar.gz")["ident"] == "a.tar.gz"
    for target, params in (
        ("SageHost.ListLoadedModels", {"EndpointName": name}),
        ("SageHost.LoadModels", {"EndpointName": name, "TargetModels": ["a.tar.gz"], "Pin": True}),
        ("SageHost.UnpinModels", {"EndpointName": name, "TargetModels": ["a.tar.gz"]}),
    ):
        status, answer = own_call(server, target, params, **B)
        assert (status, answer["Message"]) == (
            400,
            f"Endpoint {name} of account {ACCOUNT_B} not found.",
        )
    other = server.client("sagemaker-runtime", key=KEY_B, secret=SECRET_B)
    with pytest.raises(ClientError) as error:
        other.invoke_endpoint(EndpointName=name, TargetModel="a.tar.gz", Body=b"x")
    assert (
        error.value.response["Error"]["Message"]
        == f"Endpoint {name} of account {ACCOUNT_B} not found."
    )
    assert loaded(server, name, **A)["PinnedModels"] == []


def test_the_models_command(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    name, _, _ = endpoint_with(sm, tmp_path, *models("a"))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_A, "AWS_SECRET_ACCESS_KEY": SECRET_A}

    def sagehost(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sagehost", "models", "--url", server.url, *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    done = sagehost("load", name, "a.tar.gz", "--pin")
    assert done.returncode == 0, done.stderr
    assert '"Status": "Loaded"' in done.stdout and '"Pinned": true' in done.stdout
    listing = sagehost("list", name)
    assert listing.returncode == 0, listing.stderr
    assert '"PinnedModels": [\n        "a.tar.gz"\n      ]' in listing.stdout
    failed = sagehost("load", name, "missing.tar.gz")
    assert failed.returncode == 1
    assert '"Status": "Failed"' in failed.stdout
    unknown = sagehost("list", "no-such-endpoint")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        f"sagehost: ValidationException: Endpoint no-such-endpoint of account {ACCOUNT_A} not found.\n"
    )


def test_endpoint_config_tags_override_the_server_budgets(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    """The server allows two models per instance; this endpoint's tag allows three."""
    name, _, log = endpoint_with(
        sm,
        tmp_path,
        *models("a", "b", "c", "d"),
        config_tags=[{"Key": "sagehost:mme-memory-mb", "Value": "0.3"}],
    )
    assert loaded(server, name, **A)["MemoryBudgetBytes"] == 314572
    for target in models("a", "b", "c"):
        assert invoke(rt, name, target)["ident"] == target
    assert events(log, "unload") == []
    assert invoke(rt, name, "d.tar.gz")["ident"] == "d.tar.gz"
    assert events(log, "unload") == models("a")


def test_a_bad_budget_tag_is_refused_at_create_endpoint_config(sm: Any, tmp_path: Path) -> None:
    model = unique("badtag")
    sm.create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": tmp_path.as_uri()},
    )
    with pytest.raises(ClientError) as error:
        sm.create_endpoint_config(
            EndpointConfigName=model,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1}
            ],
            Tags=[{"Key": "sagehost:mme-disk-mb", "Value": "lots"}],
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == (
        "Tag sagehost:mme-disk-mb must be a number of MiB above 0."
    )
