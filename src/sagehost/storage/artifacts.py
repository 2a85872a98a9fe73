"""Model artifacts: turn a ``ModelDataUrl`` into a directory a worker can use as its model dir.

Accepted locations: a local directory (used in place), a local ``.tar.gz``/``.tgz`` (a path or a
``file://`` URL), and ``s3://bucket/key`` where the key is a tarball, or a prefix downloaded as a
directory. Tarballs are extracted once into a cache slot under ``dest`` named by a digest of the
source and its version (size and mtime, or ETag), so a restart reuses the extracted tree.

Blocking work (boto3, tarfile) runs in a thread. The thread checks a cancel flag between chunks
and tar members, so a download that outlives its budget stops instead of running on unseen.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from sagehost.core.errors import DeploymentFailed

TARBALL_SUFFIXES = (".tar.gz", ".tgz")
_CHUNK = 1 << 20


class ModelDataNotFound(DeploymentFailed):
    """Nothing exists at the model data URL (as opposed to data that cannot be read)."""


class _Cancelled(Exception):
    """The caller gave up (timeout); the worker thread unwinds and cleans up."""


async def fetch_model_data(url: str | None, dest: Path, timeout_s: float) -> Path:
    """Return the directory to use as the model dir for ``url``.

    ``dest`` is a cache directory: every extracted or downloaded artifact gets its own
    subdirectory of it. A local directory is returned as is and never copied. ``None`` means the
    model has no data: an empty directory is returned. Raises ``DeploymentFailed`` naming the URL
    when the data is missing, unreadable, unsafe or too slow to arrive.
    """
    cancel = threading.Event()
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_fetch_blocking, url, dest, cancel), timeout_s
        )
    except TimeoutError:
        cancel.set()
        raise DeploymentFailed(
            f"Model data {url} could not be fetched within {timeout_s:g} seconds."
        ) from None
    except asyncio.CancelledError:
        cancel.set()
        raise


def _fetch_blocking(url: str | None, dest: Path, cancel: threading.Event) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    if url is None:
        empty = dest / "empty"
        empty.mkdir(exist_ok=True)
        return empty
    parts = urlsplit(url)
    try:
        if parts.scheme == "s3":
            return _fetch_s3(url, parts.netloc, unquote(parts.path.lstrip("/")), dest, cancel)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise DeploymentFailed(f"Model data URL {url} names a remote host.")
            return _fetch_local(url, Path(unquote(parts.path)), dest, cancel)
        if parts.scheme == "":
            return _fetch_local(url, Path(url), dest, cancel)
    except _Cancelled:
        raise DeploymentFailed(f"Fetching model data {url} was cancelled.") from None
    raise DeploymentFailed(
        f"Model data URL {url} is not supported: use s3://, file:// or a local path."
    )


def _fetch_local(url: str, path: Path, dest: Path, cancel: threading.Event) -> Path:
    try:
        path = path.expanduser().resolve()
        if path.is_dir():
            return path
        if not path.is_file():
            raise ModelDataNotFound(
                f"Could not find model data at {url}: no such file or directory."
            )
        stat = path.stat()
    except (OSError, ValueError) as exc:
        # A name too long, a NUL byte, a directory we may not enter: nothing usable is there.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelDataNotFound(f"Could not find model data at {url}: {reason}.") from None
    slot = dest / _digest("file", str(path), str(stat.st_size), str(stat.st_mtime_ns))
    if slot.is_dir():
        return slot
    if not _is_tarball(path):
        raise DeploymentFailed(f"Model data {url} is neither a directory nor a .tar.gz archive.")
    return _extract(url, path, slot, cancel)


def _is_tarball(path: Path) -> bool:
    # By name, else by the gzip magic: tarfile.is_tarfile() would accept a file of zeros.
    if path.name.endswith((*TARBALL_SUFFIXES, ".tar")):
        return True
    try:
        with open(path, "rb") as head:
            return head.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _extract(url: str, tarball: Path, slot: Path, cancel: threading.Event) -> Path:
    """Extract into a private temporary directory, then rename it into ``slot``.

    The rename makes a slot either absent or complete, so a crash mid-extraction is never
    mistaken for a cached tree.
    """
    tmp = slot.parent / f".tmp-{slot.name}-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(tarball, "r:*") as archive:
            # "data" rejects absolute names, "..", links leaving the tree and device files.
            archive.extractall(tmp, members=_members(archive, cancel), filter="data")
        tmp.mkdir(exist_ok=True)
        return _publish(tmp, slot)
    except tarfile.FilterError as exc:
        raise DeploymentFailed(f"Model data {url} is not a safe archive: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DeploymentFailed(f"Model data {url} is not a valid .tar.gz archive: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _members(archive: tarfile.TarFile, cancel: threading.Event) -> Iterator[tarfile.TarInfo]:
    for member in archive:
        if cancel.is_set():
            raise _Cancelled
        yield member


def _publish(tmp: Path, slot: Path) -> Path:
    try:
        tmp.rename(slot)
    except OSError:
        # Another fetch of the same version won the race; its tree is identical.
        if not slot.is_dir():
            raise
    return slot


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _fetch_s3(url: str, bucket: str, key: str, dest: Path, cancel: threading.Event) -> Path:
    import boto3  # lazily: only deployments with s3:// data pay for it
    import botocore.exceptions

    if not bucket:
        raise DeploymentFailed(f"Model data URL {url} names no bucket.")
    # Typed loosely: the S3 stubs are an optional dev extra.
    client: Any = boto3.session.Session().client("s3")
    try:
        if key.endswith(TARBALL_SUFFIXES):
            return _fetch_s3_tarball(client, url, bucket, key, dest, cancel)
        return _fetch_s3_prefix(client, url, bucket, key, dest, cancel)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            raise ModelDataNotFound(f"Could not find model data at {url}: {code}.") from None
        raise DeploymentFailed(f"Could not download model data from {url}: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise DeploymentFailed(f"Could not download model data from {url}: {exc}") from None


def _fetch_s3_tarball(
    client: Any, url: str, bucket: str, key: str, dest: Path, cancel: threading.Event
) -> Path:
    head = client.head_object(Bucket=bucket, Key=key)
    slot = dest / _digest("s3", url, str(head["ContentLength"]), head.get("ETag", ""))
    if slot.is_dir():
        return slot
    download = dest / f".tmp-{uuid.uuid4().hex}.tar.gz"
    try:
        _download(client, bucket, key, download, cancel)
        return _extract(url, download, slot, cancel)
    finally:
        download.unlink(missing_ok=True)


def _fetch_s3_prefix(
    client: Any, url: str, bucket: str, key: str, dest: Path, cancel: threading.Event
) -> Path:
    prefix = key if not key or key.endswith("/") else key + "/"
    objects: list[tuple[str, str]] = []
    version: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"]
            if name.endswith("/"):
                continue  # a "folder" marker, not data
            objects.append((name, _relative(url, name[len(prefix) :])))
            version.append(f"{name}\0{obj.get('ETag', '')}\0{obj.get('Size', 0)}")
    if not objects and key and not key.endswith("/"):
        # Not a prefix: a single uncompressed object becomes a one-file directory.
        head = client.head_object(Bucket=bucket, Key=key)
        objects.append((key, _relative(url, PurePosixPath(key).name)))
        version.append(f"{key}\0{head.get('ETag', '')}\0{head['ContentLength']}")
    if not objects:
        raise ModelDataNotFound(f"Could not find model data at {url}: no objects under it.")
    slot = dest / _digest("s3-prefix", url, *sorted(version))
    if slot.is_dir():
        return slot
    tmp = dest / f".tmp-{slot.name}-{uuid.uuid4().hex[:8]}"
    try:
        for name, relative in objects:
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _download(client, bucket, name, target, cancel)
        return _publish(tmp, slot)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relative(url: str, name: str) -> str:
    """Check an object name below the prefix stays inside the model dir once on disk."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise DeploymentFailed(f"Model data {url} holds an object with an unsafe name: {name!r}.")
    return str(path)


def _download(client: Any, bucket: str, key: str, target: Path, cancel: threading.Event) -> None:
    """Stream one object to disk in chunks: an artifact is never held in memory."""
    body: Any = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with open(target, "wb") as out:
            while chunk := body.read(_CHUNK):
                if cancel.is_set():
                    raise _Cancelled
                out.write(chunk)
    finally:
        body.close()


__all__ = ["TARBALL_SUFFIXES", "ModelDataNotFound", "fetch_model_data"]
