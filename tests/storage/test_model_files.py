"""The multi-model disk cache: fetch once, hold, delete the least recently used beyond the budget."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sagehost.core.errors import DeploymentFailed, InvalidRequest
from sagehost.core.multimodel import CachedFile, MultiModelSpec, model_name
from sagehost.storage.model_files import ModelFileCache, ModelFileStore, model_url, tree_size
from tests.storage.test_artifacts import make_tarball


def run(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (fixtures pass through)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def gone(path: Path, timeout: float = 5.0) -> bool:
    """Poll until ``path`` no longer exists (deletion runs in a thread)."""
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def model(prefix: Path, target: str, size: int) -> None:
    (prefix / target).parent.mkdir(parents=True, exist_ok=True)
    make_tarball(prefix / target, {"ident.txt": target.encode(), "weights.bin": b"\0" * size})


def cache(tmp_path: Path, prefix: str, budget: int = 1 << 20, keep: bool = True) -> ModelFileCache:
    return ModelFileCache(tmp_path / "cache", prefix, budget=budget, keep=keep)


@pytest.mark.parametrize(
    ("prefix", "target", "url"),
    [
        ("s3://bucket/models/", "m.tar.gz", "s3://bucket/models/m.tar.gz"),
        ("s3://bucket/models", "sub/dir/m.tar.gz", "s3://bucket/models/sub/dir/m.tar.gz"),
        ("file:///srv/models", "a b%c.tgz", "file:///srv/models/a%20b%25c.tgz"),
        ("/srv/models/", "sub/m.tar.gz", "/srv/models/sub/m.tar.gz"),
    ],
)
def test_model_url(prefix: str, target: str, url: str) -> None:
    assert model_url(prefix, target) == url


def test_model_url_refuses_a_target_outside_the_prefix() -> None:
    with pytest.raises(InvalidRequest):
        model_url("s3://bucket/models/", "../secrets.tar.gz")


@run
async def test_a_tarball_below_a_file_prefix_is_extracted_once_for_all_holders(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "models"
    model(prefix, "sub/dir/m.tar.gz", 1000)
    files = cache(tmp_path, prefix.as_uri())
    got = await asyncio.gather(*(files.acquire("sub/dir/m.tar.gz") for _ in range(10)))
    assert {g.path for g in got} == {got[0].path}
    assert got[0].size == 1000 + len(b"sub/dir/m.tar.gz")
    assert (got[0].path / "ident.txt").read_bytes() == b"sub/dir/m.tar.gz"
    assert got[0].path.is_relative_to(tmp_path / "cache" / model_name("sub/dir/m.tar.gz"))
    assert files.cached() == [CachedFile("sub/dir/m.tar.gz", got[0].size, 10)]
    assert files.used == got[0].size
    await files.close()
    assert not (tmp_path / "cache").exists()


@run
async def test_an_unknown_target_model_is_a_validation_error(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    prefix.mkdir()
    files = cache(tmp_path, str(prefix))
    with pytest.raises(InvalidRequest) as error:
        await files.acquire("nope.tar.gz")
    assert error.value.message == (
        f"TargetModel nope.tar.gz was not found: there is no model data at {prefix}/nope.tar.gz."
    )
    assert files.cached() == []
    await files.close()


@run
async def test_a_corrupt_archive_fails_and_leaves_nothing_behind(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    prefix.mkdir()
    (prefix / "bad.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    files = cache(tmp_path, prefix.as_uri())
    with pytest.raises(DeploymentFailed) as error:
        await files.acquire("bad.tar.gz")
    assert "is not a valid .tar.gz archive" in error.value.message
    assert files.cached() == []
    assert await gone(tmp_path / "cache" / model_name("bad.tar.gz"))
    await files.close()


@run
async def test_models_nobody_holds_are_deleted_least_recently_used_first(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    for name in ("a", "b", "c"):
        model(prefix, f"{name}.tar.gz", 1000)
    size = 1000 + len("a.tar.gz")
    files = cache(tmp_path, prefix.as_uri(), budget=2 * size + 10)
    a = await files.acquire("a.tar.gz")
    b = await files.acquire("b.tar.gz")
    files.release("a.tar.gz")
    files.release("b.tar.gz")
    await files.acquire("a.tar.gz")  # a is now more recently used than b
    files.release("a.tar.gz")
    c = await files.acquire("c.tar.gz")
    assert [f.target_model for f in files.cached()] == ["a.tar.gz", "c.tar.gz"]
    assert files.used == 2 * size
    assert await gone(b.path)
    assert a.path.exists() and c.path.exists()
    await files.close()


@run
async def test_held_models_are_never_deleted_even_over_budget(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    for name in ("a", "b"):
        model(prefix, f"{name}.tar.gz", 1000)
    files = cache(tmp_path, prefix.as_uri(), budget=1500)
    a = await files.acquire("a.tar.gz")
    b = await files.acquire("b.tar.gz")
    assert [f.holders for f in files.cached()] == [1, 1]
    assert files.used > 1500
    files.release("b.tar.gz")  # b is free now: it goes, and the cache fits again
    assert [f.target_model for f in files.cached()] == ["a.tar.gz"]
    assert await gone(b.path)
    assert a.path.exists()
    await files.close()


@run
async def test_without_caching_a_model_is_deleted_when_released(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    model(prefix, "a.tar.gz", 10)
    files = cache(tmp_path, prefix.as_uri(), keep=False)
    first = await files.acquire("a.tar.gz")
    second = await files.acquire("a.tar.gz")
    files.release("a.tar.gz")
    assert files.cached() == [CachedFile("a.tar.gz", first.size, 1)]
    files.release("a.tar.gz")
    assert files.cached() == []
    assert files.used == 0
    assert await gone(second.path)
    again = await files.acquire("a.tar.gz")
    assert (again.path / "ident.txt").read_bytes() == b"a.tar.gz"
    await files.close()


@run
async def test_a_local_directory_is_used_in_place_and_never_deleted(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    (prefix / "plain").mkdir(parents=True)
    (prefix / "plain" / "weights.bin").write_bytes(b"x" * 50)
    files = cache(tmp_path, str(prefix), keep=False)
    got = await files.acquire("plain")
    assert got.path == (prefix / "plain").resolve()
    assert got.size == 50
    assert files.cached() == [CachedFile("plain", 0, 1)]  # costs no cache space
    files.release("plain")
    await files.close()
    assert (prefix / "plain" / "weights.bin").read_bytes() == b"x" * 50


@run
async def test_the_store_sweeps_what_a_previous_run_left(tmp_path: Path) -> None:
    root = tmp_path / "multimodel"
    (root / "old-fleet" / "x").mkdir(parents=True)
    # A sweep the previous run could not finish: its process died while deleting.
    interrupted = tmp_path / ".deleted-multimodel-0badcafe"
    (interrupted / "fleet" / "y").mkdir(parents=True)
    store = ModelFileStore(root)
    spec = MultiModelSpec(
        key="fleet-1", prefix=str(tmp_path), container="primary", memory_budget=1, disk_budget=1
    )
    files = store.cache(spec)
    assert not (root / "old-fleet").exists()
    assert store._sweeping is not None
    await store._sweeping
    assert list(tmp_path.glob(".deleted-*")) == []
    second = store.cache(spec)  # only the first call sweeps
    assert files is not second
    await files.close()
    await second.close()


@run
async def test_variants_with_the_same_fleet_key_never_share_a_cache(tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    model(prefix, "m.tar.gz", 100)
    root = tmp_path / "multimodel"
    store = ModelFileStore(root)
    spec = MultiModelSpec(
        key="acct-ep-g1-v",
        prefix=prefix.as_uri(),
        container="primary",
        memory_budget=1,
        disk_budget=1 << 20,
    )
    first, second = store.cache(spec), store.cache(spec)
    held = await first.acquire("m.tar.gz")
    other = await second.acquire("m.tar.gz")
    assert held.path != other.path
    assert held.path.is_relative_to(root) and other.path.is_relative_to(root)
    await second.close()  # the other variant stopping deletes only its own files
    assert (held.path / "ident.txt").read_bytes() == b"m.tar.gz"
    assert not other.path.exists()
    await first.close()
    assert not held.path.exists()


def test_tree_size_counts_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    (tmp_path / "g").write_bytes(b"123")
    (tmp_path / "link").symlink_to(tmp_path / "g")
    assert tree_size(tmp_path) == 8
    assert tree_size(tmp_path / "g") == 3
