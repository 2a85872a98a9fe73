"""The disk cache of multi-model endpoints: each ``TargetModel`` downloaded and extracted once,
kept while an instance holds it, deleted least recently used first when the cache outgrows its
budget (implements ``core.multimodel.ModelFiles``).

Layout, under the data dir::

    multimodel/<fleet key>-<8 hex>/<model name>/<slot>/   one model's extracted tree

``<model name>`` is the stable hash of the TargetModel, so two TargetModels never share files.
A TargetModel naming a local directory is used in place: only its (empty) cache directory is
ever deleted. Deleting renames a model's directory out of the way first, then removes it in a
thread, so a fetch of the same model that starts right after never races the removal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote, urlsplit

from sagehost.core.errors import InvalidRequest
from sagehost.core.multimodel import (
    LOAD_TIMEOUT_S,
    CachedFile,
    LocalModel,
    MultiModelSpec,
    check_target_model,
    model_name,
)
from sagehost.storage.artifacts import ModelDataNotFound, fetch_model_data

log = logging.getLogger("sagehost.storage")


class ModelFileStore:
    """Hands each multi-model variant its cache directory under ``root``."""

    def __init__(self, root: Path, *, fetch_timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self._root = root
        self._fetch_timeout_s = fetch_timeout_s
        self._swept = False
        self._sweeping: asyncio.Task[None] | None = None

    def cache(self, spec: MultiModelSpec) -> ModelFileCache:
        if not self._swept:
            # What a previous run left is garbage: no instance holds a model at start. That
            # includes what an earlier sweep had set aside when the process died under it.
            self._swept = True
            leftovers = list(self._root.parent.glob(f".deleted-{self._root.name}-*"))
            trash = _set_aside(self._root)
            garbage = [*leftovers, *([trash] if trash is not None else [])]
            if garbage:
                self._sweeping = asyncio.ensure_future(_remove_all(garbage))
        # A cache of its own per launch: a variant stopping deletes only its own files, even
        # when a restart reuses the fleet key of one still being swept.
        return ModelFileCache(
            self._root / f"{spec.key}-{uuid.uuid4().hex[:8]}",
            spec.prefix,
            budget=spec.disk_budget,
            keep=spec.cache_models,
            fetch_timeout_s=self._fetch_timeout_s,
        )


def model_url(prefix: str, target_model: str) -> str:
    """Where ``target_model`` lives below ``prefix``. A ``/`` is put between them when the
    prefix does not end with one (sagehost's choice: AWS documents prefixes that do)."""
    check_target_model(target_model)
    if urlsplit(prefix).scheme in ("s3", "file"):
        # artifacts.py unquotes the URL's path: quoting keeps '%', '#' and '?' literal.
        return f"{prefix.rstrip('/')}/{quote(target_model, safe='/')}"
    return str(Path(prefix) / target_model)


class _Entry:
    __slots__ = ("directory", "disk", "fetch", "holders", "model", "target")

    def __init__(self, target: str, directory: Path) -> None:
        self.target = target
        self.directory = directory
        self.holders = 0
        self.disk = 0  # bytes in the cache: 0 for a local directory used in place
        self.model: LocalModel | None = None
        self.fetch: asyncio.Task[LocalModel] | None = None


class ModelFileCache:
    """One variant's models on disk. ``budget`` is in bytes; with ``keep`` False a model is
    deleted as soon as nobody holds it (``ModelCacheSetting=Disabled``)."""

    def __init__(
        self,
        root: Path,
        prefix: str,
        *,
        budget: int,
        keep: bool = True,
        fetch_timeout_s: float = LOAD_TIMEOUT_S,
    ) -> None:
        self._root = root
        self._prefix = prefix
        self._budget = budget
        self._keep = keep
        self._fetch_timeout_s = fetch_timeout_s
        # Least recently used first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._used = 0
        self._removals: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def used(self) -> int:
        return self._used

    async def acquire(self, target_model: str) -> LocalModel:
        if self._closed:
            raise RuntimeError("The model cache has been closed.")
        entry = self._entries.get(target_model)
        if entry is None:
            entry = _Entry(target_model, self._root / model_name(target_model))
            self._entries[target_model] = entry
            entry.fetch = asyncio.ensure_future(self._fetch(entry))
            entry.fetch.add_done_callback(_retrieve)
        self._entries.move_to_end(target_model)
        # Counted before the wait, so nothing evicts the model between its fetch and its use.
        entry.holders += 1
        if entry.model is not None:
            return entry.model
        assert entry.fetch is not None
        try:
            return await asyncio.shield(entry.fetch)
        except BaseException:
            entry.holders -= 1
            raise

    def release(self, target_model: str) -> None:
        entry = self._entries.get(target_model)
        if entry is None or entry.holders <= 0:
            return
        entry.holders -= 1
        if entry.holders == 0 and not self._keep and entry.model is not None:
            self._evict(entry)
        self._make_room()

    def cached(self) -> list[CachedFile]:
        return [
            CachedFile(e.target, e.disk, e.holders)
            for e in self._entries.values()
            if e.model is not None
        ]

    async def close(self) -> None:
        self._closed = True
        fetches = [e.fetch for e in self._entries.values() if e.fetch is not None]
        for fetch in fetches:
            fetch.cancel()
        await asyncio.gather(*fetches, return_exceptions=True)
        self._entries.clear()
        self._used = 0
        await asyncio.gather(*self._removals, return_exceptions=True)
        trash = _set_aside(self._root)
        if trash is not None:
            await _remove(trash)

    # -- internals ----------------------------------------------------------------------------

    async def _fetch(self, entry: _Entry) -> LocalModel:
        url = model_url(self._prefix, entry.target)
        try:
            path = await fetch_model_data(url, entry.directory, self._fetch_timeout_s)
            size = await asyncio.to_thread(tree_size, path)
        except BaseException as error:
            self._forget(entry)
            if isinstance(error, ModelDataNotFound):
                raise InvalidRequest(
                    f"TargetModel {entry.target} was not found: there is no model data at {url}."
                ) from None
            raise
        entry.model = LocalModel(entry.target, path, size)
        entry.disk = size if path.is_relative_to(entry.directory) else 0
        self._used += entry.disk
        self._make_room()
        return entry.model

    def _make_room(self) -> None:
        """Delete models nobody holds, least recently used first, until the cache fits its
        budget. Held models are never deleted, so the cache may stay over budget while they
        are loaded."""
        if self._used <= self._budget:
            return
        for entry in list(self._entries.values()):
            if self._used <= self._budget:
                return
            if entry.holders == 0 and entry.model is not None:
                self._evict(entry)

    def _evict(self, entry: _Entry) -> None:
        assert entry.model is not None
        log.info("Deleting model %s from the multi-model disk cache", entry.target)
        self._used -= entry.disk
        self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        if self._entries.get(entry.target) is entry:
            del self._entries[entry.target]
        trash = _set_aside(entry.directory)
        if trash is not None:
            removal = asyncio.ensure_future(_remove(trash))
            self._removals.add(removal)
            removal.add_done_callback(self._removals.discard)


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symbolic links are not followed)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            file = Path(directory, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def _set_aside(path: Path) -> Path | None:
    """Rename ``path`` to a unique name beside it (a fast, atomic step); None if absent."""
    trash = path.with_name(f".deleted-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return None
    return trash


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)


async def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        await _remove(path)


def _retrieve(task: asyncio.Future[LocalModel]) -> None:
    # Waiters read the outcome; this keeps a fetch whose waiters all left from logging.
    if not task.cancelled():
        task.exception()
