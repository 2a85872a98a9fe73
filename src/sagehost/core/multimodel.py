"""Multi-model endpoints (§7.3): what the control plane hands the invocation service, and the
port to the disk cache of downloaded models.

The control plane starts a variant's fleet with no model and asks a :class:`ModelHostFactory`
(wired by ``server.py``) for the variant's ``core.live.ModelHost``; the host loads
``TargetModel``s into the fleet's instances on demand and keeps their files through
:class:`ModelFiles`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

from sagehost.core.errors import InvalidRequest
from sagehost.core.live import ModelHost
from sagehost.core.ports import Fleet

MIB = 1024 * 1024
# How long a load may go on in the background after the call that started it gave up (§7.3).
LOAD_TIMEOUT_S = 360.0
MAX_TARGET_MODEL = 1024
MAX_SEGMENT_BYTES = 255


@dataclass(frozen=True)
class MultiModelSpec:
    """One multi-model variant.

    ``prefix`` is the container's ``ModelDataUrl`` (``s3://``, ``file://`` or a path): a
    ``TargetModel`` names an artifact below it. Budgets are in bytes: ``memory_budget`` per
    instance, charged with each loaded model's extracted size; ``disk_budget`` for the extracted
    models the variant keeps on disk. ``cache_models`` is False for
    ``ModelCacheSetting=Disabled``: a model is unloaded and deleted after each call.
    """

    key: str  # the fleet's key: unique, safe as a path segment
    prefix: str
    container: str  # the container's hostname, named in errors
    memory_budget: int
    disk_budget: int
    cache_models: bool = True
    load_timeout_s: float = LOAD_TIMEOUT_S


@dataclass(frozen=True)
class LocalModel:
    """A model's files, extracted on local disk. ``size`` (bytes of its files) is also what
    loading it charges against an instance's memory budget."""

    target_model: str
    path: Path
    size: int


@dataclass(frozen=True)
class CachedFile:
    """One entry of the disk cache, for listings. ``holders`` counts the instances that have
    the model loaded (or are loading it): such files are never deleted."""

    target_model: str
    size: int
    holders: int


class ModelFiles(Protocol):
    """The disk cache of one multi-model variant: each ``TargetModel`` is fetched (downloaded
    and extracted) once and kept while any instance holds it; models nobody holds are deleted,
    least recently used first, when the cache outgrows its budget."""

    async def acquire(self, target_model: str) -> LocalModel:
        """Fetch the model if it is not on disk yet (one fetch however many callers wait) and
        count one more holder. Raises ``InvalidRequest`` when nothing exists under the prefix
        by that name, and ``DeploymentFailed`` when the artifact cannot be read or extracted."""
        ...

    def release(self, target_model: str) -> None:
        """One holder fewer. Without ``cache_models`` a model nobody holds is deleted at once."""
        ...

    def cached(self) -> list[CachedFile]:
        """What is on disk now, least recently used first."""
        ...

    @property
    def used(self) -> int:
        """Bytes of extracted models on disk."""
        ...

    async def close(self) -> None:
        """Stop fetches and delete every file of the variant."""
        ...


class ModelHostFactory(Protocol):
    def __call__(self, spec: MultiModelSpec, fleet: Fleet) -> ModelHost:
        """The host that loads ``spec``'s models into ``fleet``'s instances."""
        ...


def model_name(target_model: str) -> str:
    """The opaque name a container knows a model by (§8.4): a stable hash of the TargetModel,
    safe as a path segment and in a URL."""
    return hashlib.sha256(target_model.encode()).hexdigest()[:32]


def check_target_model(target_model: str) -> None:
    """A TargetModel must name something below the prefix: a relative path with no empty,
    ``.`` or ``..`` segment (an absolute path starts with an empty one), and one a file system
    can hold: no control character, no segment longer than 255 bytes (NAME_MAX), 1024
    characters at most (InvokeEndpoint's own limit, applied to ``SageHost.LoadModels`` too)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target_model):
        shown = target_model.encode("unicode_escape").decode("ascii")
        _refuse(shown, "it must not contain control characters")
    if len(target_model) > MAX_TARGET_MODEL:
        _refuse(target_model, f"it must be at most {MAX_TARGET_MODEL} characters long")
    parts = target_model.split("/")
    if any(part in ("", ".", "..") for part in parts):
        _refuse(
            target_model,
            "it must be relative to the endpoint's model data prefix, without empty, '.' or "
            "'..' segments",
        )
    if any(len(part.encode()) > MAX_SEGMENT_BYTES for part in parts):
        _refuse(
            target_model, f"each of its segments must be at most {MAX_SEGMENT_BYTES} bytes long"
        )


def _refuse(shown: str, reason: str) -> NoReturn:
    raise InvalidRequest(f"TargetModel {shown} is not a valid model path: {reason}.")
