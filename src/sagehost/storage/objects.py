"""Async inputs and results by URL: ``s3://bucket/key``, ``file:///abs/path`` (or a bare absolute
path) and, for reading only, ``https://``.

Memory stays bounded whatever the object size (async payloads reach 1 GB):

* Reads run a blocking chunk loop (boto3 ``iter_chunks``, ``urllib`` or a file) in one dedicated
  thread per read. The thread may run at most ``read_ahead`` chunks ahead of the consumer: it
  takes a credit from a semaphore before reading each chunk and the consumer returns one per
  chunk taken, so a slow consumer stalls the download instead of filling memory. A dedicated
  thread, not the default executor, because a read lives as long as its consumer and a few slow
  jobs must not starve every other ``to_thread`` user.
* S3 writes regroup the data into ``part_size`` pieces. Data that ends within the first piece
  is one ``PutObject``; anything larger is a multipart upload, one part at a time (aborted on
  failure). At most one piece being gathered plus its joined copy are in memory (about two
  parts). 8 MiB parts allow objects up to 78 GiB (10,000 parts).
* File writes go to a temporary file beside the target, are fsynced, then renamed over it: a
  crash leaves the old file or the new one, never a torn one.

S3 keys are taken literally after the bucket (``s3://b/a%20b`` names the key ``a%20b``), as the
AWS CLI and SageMaker's output locations do; ``file://`` URLs are percent-decoded like any URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import os
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from sagehost.core.errors import DependencyFailed, InvalidRequest
from sagehost.core.locations import join_location
from sagehost.core.ports import ObjectInfo

_Chunks = Generator[bytes, None, None]
_MIN_PART = 5 * 1024 * 1024  # S3's smallest part (all but the last)
_FILE_WRITE_BATCH = 1 << 20  # coalesce tiny chunks so each thread hop writes a useful amount


@dataclass(frozen=True)
class _Location:
    url: str
    scheme: str  # "s3", "file" or "https"/"http"
    bucket: str = ""
    key: str = ""
    path: Path | None = None


class UrlObjectStore:
    """``ObjectStore`` over S3, local files and (read-only) HTTPS.

    ``allow_http`` also accepts plain ``http://`` for reading (tests, trusted networks).
    ``file_roots``, when given, confines ``file://`` access to those directories (symlinks
    resolved): InputLocation comes from callers, and without it any file the server can read is
    readable through an echoing model.
    """

    def __init__(
        self,
        *,
        allow_http: bool = False,
        file_roots: Sequence[str | os.PathLike[str]] | None = None,
        read_ahead: int = 2,
        part_size: int = 8 * 1024 * 1024,
        http_timeout_s: float = 60.0,
    ) -> None:
        if read_ahead < 1:
            raise ValueError("read_ahead must be at least 1")
        if part_size < _MIN_PART:
            raise ValueError(f"part_size must be at least {_MIN_PART} bytes (the S3 minimum)")
        self._allow_http = allow_http
        self._roots = None if file_roots is None else [Path(r) for r in file_roots]
        self._read_ahead = read_ahead
        self._part_size = part_size
        self._http_timeout_s = http_timeout_s
        self._client: Any = None
        self._client_lock = threading.Lock()

    # --- the ObjectStore interface ---------------------------------------------------------

    async def stat(self, url: str) -> ObjectInfo:
        loc = self._parse(url, writing=False)
        if loc.scheme == "s3":
            return await asyncio.to_thread(self._stat_s3, loc)
        if loc.scheme == "file":
            return await asyncio.to_thread(self._stat_file, loc)
        return await asyncio.to_thread(self._stat_http, loc)

    def read(self, url: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object's bytes in chunks of at most ``chunk_size``. An invalid URL raises
        ``InvalidRequest`` here; a missing or unreadable object raises ``DependencyFailed`` from
        the first iteration, a broken transfer from a later one."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        loc = self._parse(url, writing=False)
        readers = {"s3": self._read_s3, "file": self._read_file}
        reader = readers.get(loc.scheme, self._read_http)
        produce = functools.partial(reader, loc, chunk_size)
        return _stream_from_thread(produce, self._read_ahead, f"read {url}")

    async def write(
        self, url: str, data: AsyncIterator[bytes] | bytes, content_type: str | None
    ) -> None:
        """Create or replace the object. ``content_type`` becomes the S3 object's Content-Type;
        a file has nowhere to keep it and ignores it."""
        loc = self._parse(url, writing=True)
        chunks = _once(data) if isinstance(data, bytes | bytearray) else data
        if loc.scheme == "s3":
            await self._write_s3(loc, chunks, content_type)
        else:
            await self._write_file(loc, chunks)

    # --- URLs ------------------------------------------------------------------------------

    def _parse(self, url: str, *, writing: bool) -> _Location:
        if url.startswith("s3://"):
            bucket, _, key = url[len("s3://") :].partition("/")
            if not bucket or not key or key.endswith("/"):
                raise InvalidRequest(f"{url} must name an object as s3://bucket/key.")
            return _Location(url, "s3", bucket=bucket, key=key)
        if url.startswith("/"):
            return self._file_location(url, url)
        parts = urlsplit(url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidRequest(f"{url} names a remote host; use file:///absolute/path.")
            return self._file_location(url, unquote(parts.path))
        if parts.scheme == "https" or (parts.scheme == "http" and self._allow_http):
            if writing:
                raise InvalidRequest(f"{url} cannot be written: use an s3:// or file:// location.")
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise InvalidRequest(f"{url} has an invalid port.") from None
            if not parts.hostname:
                raise InvalidRequest(f"{url} names no host.")
            return _Location(url, parts.scheme)
        allowed = "s3://, file:// or https://" if not writing else "s3:// or file://"
        raise InvalidRequest(f"{url} is not a supported location: use {allowed}.")

    def _file_location(self, url: str, path: str) -> _Location:
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidRequest(f"{url} must name a file by its absolute path.")
        return _Location(url, "file", path=Path(path))

    def _confined(self, loc: _Location) -> Path:
        """The real path of a file location, checked against ``file_roots`` (blocking)."""
        assert loc.path is not None
        if self._roots is None:
            return loc.path
        real = loc.path.resolve()
        if not any(real.is_relative_to(root.resolve()) for root in self._roots):
            raise DependencyFailed(f"Access denied to {loc.url}: outside the allowed directories.")
        return real

    # --- files -----------------------------------------------------------------------------

    def _stat_file(self, loc: _Location) -> ObjectInfo:
        path = self._confined(loc)
        try:
            st = path.stat()
        except OSError as exc:
            raise _file_error(loc.url, exc) from None
        if not path.is_file():
            raise DependencyFailed(f"Could not read {loc.url}: not a regular file.")
        return ObjectInfo(size=st.st_size)

    def _read_file(self, loc: _Location, chunk_size: int) -> _Chunks:
        path = self._confined(loc)
        try:
            with open(path, "rb") as src:
                while chunk := src.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise _file_error(loc.url, exc) from None

    async def _write_file(self, loc: _Location, chunks: AsyncIterator[bytes]) -> None:
        target = await asyncio.to_thread(self._confined, loc)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        out: IO[bytes] | None = None
        try:
            out = await asyncio.to_thread(_open_new, tmp)
            pending = bytearray()
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= _FILE_WRITE_BATCH:
                    await asyncio.to_thread(out.write, pending)
                    pending = bytearray()
            # From here _finish_file owns the file and its cleanup, even if we are cancelled.
            finishing, out = out, None
            await asyncio.to_thread(_finish_file, finishing, pending, tmp, target)
        except OSError as exc:
            raise _file_error(loc.url, exc) from None
        finally:
            if out is not None:
                await asyncio.to_thread(_discard, out, tmp)

    # --- HTTP(S), read-only ----------------------------------------------------------------

    def _open_http(self, loc: _Location, headers: dict[str, str]) -> Any:
        opener = urllib.request.build_opener(_SameSchemeRedirects(self._allow_http))
        # S310: _parse admitted only https (or http when allowed) for this location.
        request = urllib.request.Request(  # noqa: S310
            loc.url, headers={"User-Agent": "sagehost", **headers}
        )
        try:
            return opener.open(request, timeout=self._http_timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and "Range" in headers:
                return exc  # an empty object has no byte 0; its size is in Content-Range
            if exc.code in (404, 410):
                raise DependencyFailed(f"Could not find {loc.url}: HTTP {exc.code}.") from None
            if exc.code in (401, 403):
                raise DependencyFailed(f"Access denied to {loc.url}: HTTP {exc.code}.") from None
            raise DependencyFailed(f"Could not read {loc.url}: HTTP {exc.code}.") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise DependencyFailed(f"Could not reach {loc.url}: {reason}.") from None

    def _stat_http(self, loc: _Location) -> ObjectInfo:
        # A one-byte GET rather than HEAD: a presigned GET URL rejects any other method.
        with contextlib.closing(self._open_http(loc, {"Range": "bytes=0-0"})) as response:
            headers = response.headers
            total = _range_total(headers.get("Content-Range"))
            if total is None and response.status == 200:
                total = _int_or_none(headers.get("Content-Length"))
            if total is None:
                raise DependencyFailed(f"Could not read {loc.url}: the server reports no size.")
            # A 416's Content-Type describes its error page, not the (empty) object.
            content_type = headers.get("Content-Type") if response.status != 416 else None
            return ObjectInfo(size=total, content_type=content_type)

    def _read_http(self, loc: _Location, chunk_size: int) -> _Chunks:
        with contextlib.closing(self._open_http(loc, {})) as response:
            try:
                while chunk := response.read(chunk_size):
                    yield chunk
            except (OSError, http.client.HTTPException) as exc:
                raise DependencyFailed(f"Reading {loc.url} failed: {exc}.") from None

    # --- S3 --------------------------------------------------------------------------------

    def _s3(self) -> Any:
        """One client, made on first use in a worker thread (loading botocore is slow).
        Clients are thread-safe; sessions are not, hence one session used once, under a lock."""
        with self._client_lock:
            if self._client is None:
                import boto3  # lazily: only stores that meet an s3:// URL pay for it

                self._client = boto3.session.Session().client("s3")
            return self._client

    def _stat_s3(self, loc: _Location) -> ObjectInfo:
        with _s3_errors(loc.url):
            head = self._s3().head_object(Bucket=loc.bucket, Key=loc.key)
        return ObjectInfo(size=int(head["ContentLength"]), content_type=head.get("ContentType"))

    def _read_s3(self, loc: _Location, chunk_size: int) -> _Chunks:
        with _s3_errors(loc.url):
            body = self._s3().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
            with contextlib.closing(body):
                yield from body.iter_chunks(chunk_size)

    async def _write_s3(
        self, loc: _Location, chunks: AsyncIterator[bytes], content_type: str | None
    ) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        target = {"Bucket": loc.bucket, "Key": loc.key}
        async with contextlib.aclosing(_parts(chunks, self._part_size)) as parts:
            first = await anext(parts)
            if len(first) < self._part_size:  # a short piece is the last: the data is small
                await self._s3_call(loc, "put_object", **target, Body=first, **extra)
                return
            part: bytes | None = first
            del first
            created = await self._s3_call(loc, "create_multipart_upload", **target, **extra)
            upload_id: str | None = str(created["UploadId"])
            done: list[dict[str, Any]] = []
            try:
                while part is not None:
                    number = len(done) + 1
                    answer = await self._s3_call(
                        loc,
                        "upload_part",
                        **target,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                    )
                    done.append({"ETag": answer["ETag"], "PartNumber": number})
                    part = None  # let it go before the next one is gathered
                    part = await anext(parts, None)
                await self._s3_call(
                    loc,
                    "complete_multipart_upload",
                    **target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
                upload_id = None
            finally:
                if upload_id is not None:
                    # Unfinished parts are billed until aborted; the write's own error is the news.
                    with contextlib.suppress(Exception):
                        await self._s3_call(
                            loc, "abort_multipart_upload", **target, UploadId=upload_id
                        )

    async def _s3_call(self, loc: _Location, operation: str, **kwargs: Any) -> Any:
        """Run one S3 call in a thread and return its answer."""

        def call() -> Any:
            with _s3_errors(loc.url):
                return getattr(self._s3(), operation)(**kwargs)

        return await asyncio.to_thread(call)


# --- helpers ---------------------------------------------------------------------------------


async def _stream_from_thread(
    produce: Callable[[], _Chunks], read_ahead: int, name: str
) -> AsyncIterator[bytes]:
    """Run ``produce`` in its own thread and yield its chunks, at most ``read_ahead`` queued.

    Leaving early (``aclose``, cancellation, an error downstream) tells the thread to stop; it
    notices before its next chunk and closes its source.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    credits = threading.Semaphore(read_ahead)
    stop = threading.Event()

    def deliver(item: bytes | BaseException | None) -> bool:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    def run() -> None:
        try:
            with contextlib.closing(produce()) as chunks:
                while True:
                    # The credit is taken before reading, so the thread never holds a chunk
                    # it may not hand over.
                    credits.acquire()
                    if stop.is_set():
                        return
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    if not deliver(chunk):
                        return
            deliver(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            deliver(exc)

    thread = threading.Thread(target=run, name=f"sagehost {name}", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            credits.release()
            yield item
    finally:
        stop.set()
        credits.release()  # wake the thread if it waits for a credit


async def _once(data: bytes | bytearray) -> AsyncIterator[bytes]:
    yield bytes(data)


async def _parts(chunks: AsyncIterator[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Regroup ``chunks`` into pieces of exactly ``size`` bytes and a shorter last one.

    Empty data is one empty piece; data of a multiple of ``size`` has no short piece. Slices of the
    chunks are held until a piece is complete, then joined: one copy, no growing buffer.
    """
    held: list[memoryview] = []
    count = 0
    yielded = False
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = view[: size - count]
            held.append(take)
            count += len(take)
            view = view[len(take) :]
            if count == size:
                full, held, count = held, [], 0
                yielded = True
                # Joined inside the yield, so this frame keeps no reference to the piece
                # while the next one is gathered.
                yield _join_and_clear(full)
    if held or not yielded:
        yield _join_and_clear(held)


def _join_and_clear(views: list[memoryview]) -> bytes:
    joined = b"".join(views)
    views.clear()
    return joined


@contextlib.contextmanager
def _s3_errors(url: str) -> Iterator[None]:
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise DependencyFailed(f"Could not find {url}: no such object.") from None
        if code == "NoSuchBucket":
            raise DependencyFailed(f"Could not find {url}: no such bucket.") from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DependencyFailed(f"Access denied to {url}.") from None
        detail = f"{code}: {error.get('Message', '')}".strip(": ")
        raise DependencyFailed(f"S3 request for {url} failed: {detail}.") from None
    except botocore.exceptions.BotoCoreError as exc:
        # Also a body that breaks mid-read: botocore wraps urllib3's errors in its own.
        raise DependencyFailed(f"Could not reach S3 for {url}: {exc}") from None
    except OSError as exc:  # a socket error botocore let through unwrapped
        raise DependencyFailed(f"Reading {url} from S3 failed: {exc}") from None


def _file_error(url: str, exc: OSError) -> DependencyFailed:
    if isinstance(exc, FileNotFoundError):
        return DependencyFailed(f"Could not find {url}: no such file.")
    if isinstance(exc, PermissionError):
        return DependencyFailed(f"Access denied to {url}.")
    if isinstance(exc, IsADirectoryError):
        return DependencyFailed(f"Could not read {url}: it is a directory.")
    return DependencyFailed(f"Could not access {url}: {exc.strerror or exc}.")


def _open_new(tmp: Path) -> IO[bytes]:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return open(tmp, "xb")  # closed by _finish_file or _discard


def _finish_file(out: IO[bytes], pending: bytearray, tmp: Path, target: Path) -> None:
    try:
        with out:
            out.write(pending)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is synced.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _discard(out: IO[bytes], tmp: Path) -> None:
    out.close()
    tmp.unlink(missing_ok=True)


_CONTENT_RANGE = re.compile(r"^bytes (?:\d+-\d+|\*)/(\d+)$")


def _range_total(value: str | None) -> int | None:
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    return int(match.group(1)) if match else None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http unless http is allowed."""

    def __init__(self, allow_http: bool) -> None:
        self._allow_http = allow_http

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urlsplit(newurl).scheme
        if scheme != "https" and not (scheme == "http" and self._allow_http):
            raise DependencyFailed(f"{req.full_url} redirects to {newurl}, which is not https.")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


__all__ = ["UrlObjectStore", "join_location"]
