"""MultiModelHost in process, against fake instances that speak the multi-model container API
(§8.4) and the real disk cache. The end-to-end tests (tests/e2e/test_multimodel*.py) run the
same paths through boto3, sagehost and real worker processes."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sagehost.clock import SystemClock
from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import (
    ContainerRefused,
    ContainerTimeout,
    InvalidRequest,
    ModelFailed,
    ModelNotReady,
    NoHealthyInstance,
)
from sagehost.core.invocation import Caller
from sagehost.core.live import LiveEndpoint, LiveVariant
from sagehost.core.multimodel import MultiModelSpec, model_name
from sagehost.core.ports import ContainerRequest, ContainerResponse
from sagehost.invoke.loaded_models import LoadedModels
from sagehost.invoke.multimodel import HOT_OUTSTANDING, MultiModelHost
from sagehost.storage.model_files import ModelFileCache
from sagehost.testing.fakes import FakeFleet, FakeInstance

SIZE = 1000  # bytes of weights in each test model


def run(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def reply(status: int, body: bytes = b"") -> ContainerResponse:
    return ContainerResponse(status, {"content-type": "application/json"}, body)


class FakeContainer(FakeInstance):
    """One instance of a multi-model container: ``models`` maps a model name to its ident."""

    def __init__(self, instance_id: str, *, load_delay: float = 0.0, max_models: int = 99):
        super().__init__(instance_id)
        self.alive = True
        self.load_delay = load_delay
        self.max_models = max_models
        self.models: dict[str, str] = {}
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.hold: asyncio.Event | None = None  # invocations wait for it while set

    async def invoke(self, request: ContainerRequest) -> ContainerResponse:
        self.outstanding += 1
        try:
            return await super().invoke(request)
        finally:
            self.outstanding -= 1

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        if not self.alive:
            raise ContainerRefused("connection refused")
        parts = request.path.split("/")  # "", "models", name, "invoke"
        if request.method == "POST" and request.path == "/models":
            spec = json.loads(bytes(request.body))  # type: ignore[arg-type]
            ident = (Path(spec["url"]) / "ident.txt").read_text()
            if spec["model_name"] in self.models:
                return reply(409)
            if len(self.models) >= self.max_models:
                return reply(507, b'{"error": "out of memory"}')
            if ident.startswith("fail"):
                return reply(500, b'{"error": "model_fn raised ValueError"}')
            await asyncio.sleep(self.load_delay)
            self.models[spec["model_name"]] = ident
            self.loads.append(ident)
            return reply(200)
        name = parts[2]
        if request.method == "DELETE":
            if self.models.pop(name, None) is None:
                return reply(404)
            self.unloads.append(name)
            return reply(200)
        if request.method == "GET":
            return reply(200 if name in self.models else 404)
        if name not in self.models:
            return reply(404, b'{"error": "model not loaded"}')
        if self.hold is not None:
            await self.hold.wait()
        return reply(200, json.dumps({"ident": self.models[name], "on": self.instance_id}).encode())


def make_models(prefix: Path, *idents: str, size: int = SIZE) -> None:
    for ident in idents:
        path = prefix / f"{ident}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as archive:
            for name, data in (("ident.txt", ident.encode()), ("weights.bin", b"\0" * size)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def charge(ident: str, size: int = SIZE) -> int:
    return size + len(ident)


def host(
    tmp_path: Path,
    *containers: FakeContainer,
    models_fit: int = 10,
    cache_models: bool = True,
    load_timeout_s: float = 360.0,
    instance_wait_s: float = 0.2,
) -> MultiModelHost:
    prefix = tmp_path / "models"
    spec = MultiModelSpec(
        key="fleet",
        prefix=prefix.as_uri(),
        container="primary",
        memory_budget=models_fit * charge("m0") + 5,
        disk_budget=1 << 30,
        cache_models=cache_models,
        load_timeout_s=load_timeout_s,
    )
    files = ModelFileCache(
        tmp_path / "cache", spec.prefix, budget=spec.disk_budget, keep=cache_models
    )
    return MultiModelHost(
        spec, FakeFleet(*containers), files, SystemClock(), instance_wait_s=instance_wait_s
    )


def call(body: bytes = b"x", timeout_s: float = 5.0) -> ContainerRequest:
    return ContainerRequest(
        body=body, headers=[("X-Amzn-SageMaker-Target-Model", "t")], timeout_s=timeout_s
    )


async def ident(models: MultiModelHost, target: str, timeout_s: float = 5.0) -> str:
    answer = await models.invoke(target, call(timeout_s=timeout_s))
    assert answer.status == 200
    got: str = json.loads(answer.body)["ident"]
    return got


@run
async def test_first_call_loads_then_calls_go_to_the_holder(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0", "sub/dir/m1")
    container = FakeContainer("i0")
    models = host(tmp_path, container)
    assert await ident(models, "m0.tar.gz") == "m0"
    assert await ident(models, "sub/dir/m1.tar.gz") == "sub/dir/m1"
    assert await ident(models, "m0.tar.gz") == "m0"
    assert container.loads == ["m0", "sub/dir/m1"]
    load, invoke = container.calls[0], container.calls[1]
    assert (load.method, load.path) == ("POST", "/models")
    body = json.loads(bytes(load.body))  # type: ignore[arg-type]
    assert body["model_name"] == model_name("m0.tar.gz")
    assert (Path(body["url"]) / "weights.bin").stat().st_size == SIZE
    assert (invoke.method, invoke.path) == ("POST", f"/models/{model_name('m0.tar.gz')}/invoke")
    assert invoke.headers == [("X-Amzn-SageMaker-Target-Model", "t")]
    await models.close()


@run
async def test_concurrent_first_calls_load_once(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0", load_delay=0.1)
    models = host(tmp_path, container)
    idents = await asyncio.gather(*(ident(models, "m0.tar.gz") for _ in range(20)))
    assert idents == ["m0"] * 20
    assert container.loads == ["m0"]
    await models.close()


@run
async def test_a_slow_load_answers_not_ready_and_goes_on_loading(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0", load_delay=0.5)
    models = host(tmp_path, container)
    with pytest.raises(ModelNotReady) as error:
        await models.invoke("m0.tar.gz", call(timeout_s=0.1))
    assert error.value.message == (
        "Model m0.tar.gz is still being loaded into container primary. Try again shortly."
    )
    while True:
        try:
            assert await ident(models, "m0.tar.gz", timeout_s=0.1) == "m0"
            break
        except ModelNotReady:
            continue
    assert container.loads == ["m0"]
    await models.close()


@run
async def test_the_least_recently_used_model_makes_room(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0", "m1", "m2")
    container = FakeContainer("i0")
    models = host(tmp_path, container, models_fit=2)
    for target in ("m0", "m1", "m0", "m2"):
        assert await ident(models, f"{target}.tar.gz") == target
    assert container.unloads == [model_name("m1.tar.gz")]
    assert sorted(container.models.values()) == ["m0", "m2"]
    view = models.describe()
    assert [m["TargetModel"] for m in view["Instances"][0]["Models"]] == [  # type: ignore[index]
        "m0.tar.gz",
        "m2.tar.gz",
    ]
    assert view["Instances"][0]["MemoryUsedBytes"] == 2 * charge("m0")  # type: ignore[index]
    await models.close()


@run
async def test_pinned_models_stay_and_unpinned_ones_go(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0", "m1", "m2", "m3")
    container = FakeContainer("i0")
    models = host(tmp_path, container, models_fit=2)
    await models.preload("m0.tar.gz", pin=True)
    for target in ("m1", "m2", "m3"):
        assert await ident(models, f"{target}.tar.gz") == target
    assert sorted(container.models.values()) == ["m0", "m3"]
    assert models.describe()["PinnedModels"] == ["m0.tar.gz"]
    assert models.unpin("m0.tar.gz") is True
    assert models.unpin("m0.tar.gz") is False
    assert await ident(models, "m1.tar.gz") == "m1"
    assert sorted(container.models.values()) == ["m1", "m3"]
    await models.close()


@run
async def test_pinned_models_filling_memory_fail_a_load_with_507(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0", "m1")
    models = host(tmp_path, FakeContainer("i0"), models_fit=1)
    await models.preload("m0.tar.gz", pin=True)
    with pytest.raises(ModelFailed) as error:
        await models.invoke("m1.tar.gz", call())
    assert error.value.status == 507
    assert error.value.container == "primary"
    assert "pinned models fill every instance" in error.value.message
    await models.close()


@run
async def test_a_model_larger_than_the_budget_fails_with_507(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "big", size=50 * SIZE)
    models = host(tmp_path, FakeContainer("i0"), models_fit=2)
    with pytest.raises(ModelFailed) as error:
        await models.invoke("big.tar.gz", call())
    assert error.value.status == 507
    assert error.value.message.startswith(
        f"Model big.tar.gz needs {charge('big', 50 * SIZE)} bytes"
    )
    await models.close()


@run
async def test_507_from_the_container_unloads_one_more_and_retries(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0", "m1", "m2")
    container = FakeContainer("i0", max_models=2)
    models = host(tmp_path, container, models_fit=10)
    for target in ("m0", "m1", "m2"):
        assert await ident(models, f"{target}.tar.gz") == target
    assert container.loads == ["m0", "m1", "m2"]
    assert container.unloads == [model_name("m0.tar.gz")]
    await models.close()


@run
async def test_507_with_nothing_to_unload_is_a_model_error(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    models = host(tmp_path, FakeContainer("i0", max_models=0))
    with pytest.raises(ModelFailed) as error:
        await models.invoke("m0.tar.gz", call())
    assert error.value.status == 507
    assert error.value.original_message == '{"error": "out of memory"}'
    await models.close()


@run
async def test_a_container_that_lost_the_model_gets_it_again(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")
    models = host(tmp_path, container)
    assert await ident(models, "m0.tar.gz") == "m0"
    container.models.clear()  # as after a restart
    assert await ident(models, "m0.tar.gz") == "m0"
    assert container.loads == ["m0", "m0"]
    await models.close()


@run
async def test_a_404_from_a_loaded_model_is_its_own_answer(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")
    models = host(tmp_path, container)
    assert await ident(models, "m0.tar.gz") == "m0"

    async def not_found(request: ContainerRequest) -> ContainerResponse:
        if request.path.endswith("/invoke"):
            return reply(404, b"no such item")
        return await FakeContainer.respond(container, request)

    container.respond = not_found  # type: ignore[method-assign]
    answer = await models.invoke("m0.tar.gz", call())
    assert (answer.status, answer.body) == (404, b"no such item")
    assert container.loads == ["m0"]
    await models.close()


@run
async def test_a_dead_instance_hands_its_models_to_another(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    first, second = FakeContainer("i0"), FakeContainer("i1", load_delay=0.01)
    models = host(tmp_path, first, second)
    assert json.loads((await models.invoke("m0.tar.gz", call())).body)["on"] == "i0"
    first.alive = first.ready = False
    assert json.loads((await models.invoke("m0.tar.gz", call())).body)["on"] == "i1"
    assert second.loads == ["m0"]
    await models.close()


@run
async def test_no_ready_instance_is_a_503_after_the_wait(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    down = FakeContainer("i0")
    down.ready = False
    models = host(tmp_path, down)
    with pytest.raises(NoHealthyInstance):
        await models.invoke("m0.tar.gz", call())
    await models.close()


@run
async def test_load_failures_and_unknown_models(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "fail-m")
    models = host(tmp_path, FakeContainer("i0"))
    with pytest.raises(ModelFailed) as error:
        await models.invoke("fail-m.tar.gz", call())
    assert error.value.status == 500
    assert error.value.container == "primary"
    assert error.value.message == (
        "Received server error (500) from primary while loading model fail-m.tar.gz with "
        'message "{"error": "model_fn raised ValueError"}".'
    )
    with pytest.raises(InvalidRequest) as missing:
        await models.invoke("absent.tar.gz", call())
    assert missing.value.message.startswith("TargetModel absent.tar.gz was not found")
    with pytest.raises(InvalidRequest):
        await models.invoke("../m0.tar.gz", call())
    # The files of the model that failed to load stay cached for the next try, held by none.
    assert models.describe()["Disk"] == [
        {"TargetModel": "fail-m.tar.gz", "SizeBytes": charge("fail-m"), "Holders": 0}
    ]
    await models.close()


@run
async def test_without_caching_each_call_unloads_its_model(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")
    models = host(tmp_path, container, cache_models=False)
    for _ in range(2):
        assert await ident(models, "m0.tar.gz") == "m0"
        await until(lambda: not container.models and not models.describe()["Disk"])
    assert container.loads == ["m0", "m0"]
    assert container.unloads == [model_name("m0.tar.gz")] * 2
    await models.close()


@run
async def test_a_hot_model_gets_a_second_copy(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    first, second = FakeContainer("i0"), FakeContainer("i1")
    models = host(tmp_path, first, second)
    assert await ident(models, "m0.tar.gz") == "m0"
    holder = first if first.loads else second
    other = second if holder is first else first
    holder.hold = asyncio.Event()
    busy = [asyncio.ensure_future(ident(models, "m0.tar.gz")) for _ in range(HOT_OUTSTANDING)]
    await until(lambda: holder.outstanding >= HOT_OUTSTANDING)
    spilled = asyncio.ensure_future(models.invoke("m0.tar.gz", call()))
    await until(lambda: other.loads)
    assert other.loads == ["m0"]
    holder.hold.set()
    await asyncio.gather(*busy, spilled)
    # Now both hold it, and the least busy one serves.
    gate = asyncio.Event()
    first.hold = second.hold = gate
    held = asyncio.ensure_future(models.invoke("m0.tar.gz", call()))
    await until(lambda: first.outstanding + second.outstanding == 1)
    idle = first if second.outstanding else second
    idle.hold = None
    answer = await models.invoke("m0.tar.gz", call())
    assert json.loads(answer.body)["on"] == idle.instance_id
    gate.set()
    await held
    await models.close()


@run
async def test_closing_ends_waiting_calls_cleanly(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    models = host(tmp_path, FakeContainer("i0", load_delay=5))
    waiting = asyncio.ensure_future(models.invoke("m0.tar.gz", call(timeout_s=10)))
    await asyncio.sleep(0.05)
    await models.close()
    with pytest.raises(NoHealthyInstance):
        await waiting
    assert not (tmp_path / "cache").exists()


@run
async def test_a_restarted_instance_gets_the_model_again(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")
    models = host(tmp_path, container, instance_wait_s=5.0)
    assert await ident(models, "m0.tar.gz") == "m0"
    container.ready = container.alive = False
    container.models.clear()
    pending = asyncio.ensure_future(ident(models, "m0.tar.gz"))
    await asyncio.sleep(0.05)
    container.ready = container.alive = True
    assert await pending == "m0"
    assert container.loads == ["m0", "m0"]
    await models.close()


@run
async def test_an_unreadable_artifact_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.tar.gz").write_bytes(b"\x1f\x8b not gzip")
    models = host(tmp_path, FakeContainer("i0"))
    with pytest.raises(ModelFailed) as error:
        await models.invoke("bad.tar.gz", call())
    assert (error.value.status, error.value.container) == (0, "primary")
    assert error.value.message.startswith(
        f"Could not fetch model bad.tar.gz for container primary: Model data "
        f"{(tmp_path / 'models').as_uri()}/bad.tar.gz is not a valid .tar.gz archive"
    )
    await models.close()


def models_on(models: MultiModelHost, instance: int = 0) -> list[dict[str, Any]]:
    view: Any = models.describe()
    found: list[dict[str, Any]] = view["Instances"][instance]["Models"]
    return found


@run
async def test_a_load_cut_by_the_load_timeout_leaves_no_reservation(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0", load_delay=5.0)  # ignores its request's timeout
    models = host(tmp_path, container, load_timeout_s=1.0)
    with pytest.raises(ModelFailed) as error:
        await models.invoke("m0.tar.gz", call(timeout_s=3))
    assert (error.value.status, error.value.message) == (
        0,
        "Model m0.tar.gz did not finish loading into container primary within 1 seconds.",
    )
    view: Any = models.describe()
    assert (models_on(models), view["Instances"][0]["MemoryUsedBytes"]) == ([], 0)
    assert view["Disk"] == [{"TargetModel": "m0.tar.gz", "SizeBytes": charge("m0"), "Holders": 0}]
    # The container is told to drop whatever it half loaded.
    await until(lambda: any(c.method == "DELETE" for c in container.calls))
    assert [(c.method, c.path) for c in container.calls] == [
        ("POST", "/models"),
        ("DELETE", f"/models/{model_name('m0.tar.gz')}"),
    ]
    container.load_delay = 0.0
    assert await ident(models, "m0.tar.gz") == "m0"
    assert container.loads == ["m0"]
    await models.close()


@run
async def test_a_load_request_times_out_before_the_whole_load_does(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")

    async def slow_load(request: ContainerRequest) -> ContainerResponse:
        if request.method == "POST" and request.path == "/models":
            await asyncio.sleep(request.timeout_s)
            raise ContainerTimeout(f"The container did not answer within {request.timeout_s:g}.")
        return await FakeContainer.respond(container, request)

    container.respond = slow_load  # type: ignore[method-assign]
    models = host(tmp_path, container, load_timeout_s=2.0)
    with pytest.raises(ModelFailed) as error:
        await models.invoke("m0.tar.gz", call(timeout_s=5))
    assert error.value.message == (
        "Model m0.tar.gz did not finish loading into container primary within 2 seconds."
    )
    load = container.calls[0]
    assert (load.method, load.path) == ("POST", "/models")
    assert 0.5 < load.timeout_s < 2.0
    assert models_on(models) == []
    await until(lambda: len(container.calls) == 2)
    assert (container.calls[1].method, container.calls[1].path) == (
        "DELETE",
        f"/models/{model_name('m0.tar.gz')}",
    )
    await models.close()


@run
async def test_a_call_on_a_lost_copy_does_not_count_against_its_reload(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0")
    models = host(tmp_path, container, models_fit=1)
    assert await ident(models, "m0.tar.gz") == "m0"
    container.hold = asyncio.Event()
    first = asyncio.ensure_future(ident(models, "m0.tar.gz"))
    await until(lambda: container.outstanding == 1)
    assert models_on(models)[0]["InFlight"] == 1
    container.models.clear()  # the container lost the model: the next call reloads it
    second = asyncio.ensure_future(ident(models, "m0.tar.gz"))
    await until(lambda: container.loads == ["m0", "m0"] and container.outstanding == 2)
    assert models_on(models)[0]["InFlight"] == 1  # only the second call is on the new copy
    container.hold.set()
    assert list(await asyncio.gather(first, second)) == ["m0", "m0"]
    assert [(m["State"], m["InFlight"]) for m in models_on(models)] == [("Loaded", 0)]
    # Idle again, so a model that needs its room evicts it.
    make_models(tmp_path / "models", "m1")
    assert await ident(models, "m1.tar.gz") == "m1"
    assert container.unloads == [model_name("m0.tar.gz")]
    await models.close()


@run
async def test_load_models_keeps_no_pin_for_a_load_given_up_or_a_bad_name(tmp_path: Path) -> None:
    make_models(tmp_path / "models", "m0")
    container = FakeContainer("i0", load_delay=5.0)
    models = host(tmp_path, container)
    endpoint = LiveEndpoint("000000000000", "ep", "us-east-1", EndpointStatus.IN_SERVICE)
    endpoint.set_variants((LiveVariant("AllTraffic", 1.0, FakeFleet(container), models=models),))
    operations = LoadedModels(lambda caller, name: endpoint)
    caller = Caller("000000000000", "us-east-1")
    params: dict[str, Any] = {"EndpointName": "ep", "TargetModels": ["m0.tar.gz"], "Pin": True}
    request = asyncio.ensure_future(operations.load(caller, params))
    await until(lambda: models.pinned("m0.tar.gz"))
    request.cancel()  # the caller gave up while the model was loading
    with pytest.raises(asyncio.CancelledError):
        await request
    assert models.pinned("m0.tar.gz") is False
    params["TargetModels"] = ["m0.tar.gz", "a\x00b.tar.gz"]
    with pytest.raises(InvalidRequest) as error:
        await operations.load(caller, params)
    assert error.value.message == (
        "TargetModel a\\x00b.tar.gz is not a valid model path: "
        "it must not contain control characters."
    )
    assert models.describe()["PinnedModels"] == []
    await models.close()
