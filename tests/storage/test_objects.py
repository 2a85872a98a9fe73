"""Objects by URL: S3 through a moto server, local files, and HTTP from a loopback server."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import random
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.core.errors import DependencyFailed, InvalidRequest
from sagehost.core.ports import ObjectInfo, ObjectStore
from sagehost.storage.objects import UrlObjectStore, join_location
from sagehost.testing.moto import running_moto

MIB = 1 << 20


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def read_all(store: UrlObjectStore, url: str, chunk_size: int = MIB) -> bytes:
    return b"".join(asyncio.run(collect(store.read(url, chunk_size))))


def test_the_store_is_an_object_store() -> None:
    store: ObjectStore = UrlObjectStore()
    assert isinstance(store, UrlObjectStore)


# --- join_location ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b/out", ("x.out",), "s3://b/out/x.out"),
        ("s3://b/out/", ("x.out",), "s3://b/out/x.out"),
        ("s3://b/out//", ("", "x.out"), "s3://b/out/x.out"),
        ("s3://b/out/", ("/ext/a/", "/x.out"), "s3://b/out/ext/a/x.out"),
        ("s3://b/out", ("ext//a", "x.out"), "s3://b/out/ext/a/x.out"),
        ("s3://b", ("id-error.out",), "s3://b/id-error.out"),
        ("s3://b/", ("id.out",), "s3://b/id.out"),
        ("file:///srv/out", ("e", "f.json"), "file:///srv/out/e/f.json"),
        ("file:///", ("f.json",), "file:///f.json"),
        ("s3://b/out/", (), "s3://b/out"),
    ],
)
def test_join_location(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert join_location(base, *parts) == expected


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "s3://bucket",
        "s3://bucket/",
        "s3:///key",
        "s3://bucket/prefix/",
        "file://otherhost/tmp/x",
        "file:relative",
        "relative/path",
        "http://example.com/x",  # http is off by default
        "https:///no-host",
        "https://host:port/x",
        "",
    ],
)
def test_invalid_urls_are_rejected_before_any_io(url: str) -> None:
    store = UrlObjectStore()
    with pytest.raises(InvalidRequest):
        store.read(url)
    with pytest.raises(InvalidRequest):
        asyncio.run(store.stat(url))


def test_https_is_read_only() -> None:
    store = UrlObjectStore(allow_http=True)
    for url in ("https://example.com/x", "http://example.com/x"):
        with pytest.raises(InvalidRequest, match="cannot be written"):
            asyncio.run(store.write(url, b"x", None))


# --- files -----------------------------------------------------------------------------------


def test_file_round_trip_creates_parent_directories(tmp_path: Path) -> None:
    store = UrlObjectStore()
    data = random.Random(1).randbytes(3 * MIB + 17)
    target = tmp_path / "a" / "b" / "result.out"
    url = f"file://{target}"
    asyncio.run(store.write(url, pieces(data[:5], data[5 : 2 * MIB], data[2 * MIB :]), "x/y"))
    assert target.read_bytes() == data
    assert asyncio.run(store.stat(url)) == ObjectInfo(size=len(data), content_type=None)
    chunks = asyncio.run(collect(store.read(url, chunk_size=MIB)))
    assert [len(c) for c in chunks] == [MIB, MIB, MIB, 17]
    assert b"".join(chunks) == data
    # A bare absolute path and a percent-encoded URL name files too.
    assert read_all(store, str(target)) == data
    spaced = tmp_path / "with space.bin"
    spaced.write_bytes(b"spaced")
    assert read_all(store, f"file://{tmp_path}/with%20space.bin") == b"spaced"
    assert read_all(store, f"file://localhost{spaced}") == b"spaced"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.out"]


def test_file_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    store = UrlObjectStore()
    target = tmp_path / "out" / "job.out"
    url = f"file://{target}"
    asyncio.run(store.write(url, b"first version", None))

    async def breaks() -> AsyncIterator[bytes]:
        yield b"x" * (2 * MIB)  # large enough to reach the temporary file
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        asyncio.run(store.write(url, breaks(), None))
    assert target.read_bytes() == b"first version"
    assert os.listdir(target.parent) == ["job.out"]

    for _ in range(2):
        asyncio.run(store.write(url, pieces(b"second ", b"version"), None))
        assert target.read_bytes() == b"second version"
        assert os.listdir(target.parent) == ["job.out"]


def test_missing_and_unreadable_files_name_the_url(tmp_path: Path) -> None:
    store = UrlObjectStore()
    missing = f"file://{tmp_path}/nope.csv"
    with pytest.raises(DependencyFailed, match=f"Could not find {missing}: no such file"):
        asyncio.run(store.stat(missing))
    with pytest.raises(DependencyFailed, match=f"Could not find {missing}: no such file"):
        read_all(store, missing)
    directory = f"file://{tmp_path}/dir"
    (tmp_path / "dir").mkdir()
    with pytest.raises(DependencyFailed, match=f"Could not read {directory}: it is a directory"):
        read_all(store, directory)
    with pytest.raises(DependencyFailed, match=f"Could not read {directory}: not a regular file"):
        asyncio.run(store.stat(directory))


def test_file_roots_confine_access(tmp_path: Path) -> None:
    allowed = tmp_path / "inputs"
    allowed.mkdir()
    (allowed / "in.csv").write_bytes(b"1,2\n")
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    (allowed / "escape").symlink_to(secret)
    store = UrlObjectStore(file_roots=[allowed])
    assert read_all(store, f"file://{allowed}/in.csv") == b"1,2\n"
    for url in (f"file://{secret}", f"file://{allowed}/escape", f"file://{allowed}/../secret"):
        with pytest.raises(DependencyFailed, match="outside the allowed directories"):
            read_all(store, url)
    with pytest.raises(DependencyFailed, match="outside the allowed directories"):
        asyncio.run(store.write(f"file://{tmp_path}/out/x.out", b"x", None))
    assert not (tmp_path / "out").exists()


def test_leaving_a_read_early_stops_its_thread(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"z" * (8 * 1024))
    store = UrlObjectStore(read_ahead=1)

    async def first_chunk() -> bytes:
        chunks = store.read(f"file://{source}", chunk_size=1024)
        async for chunk in chunks:
            await chunks.aclose()  # type: ignore[attr-defined]
            return chunk
        raise AssertionError("no chunk")

    assert asyncio.run(first_chunk()) == b"z" * 1024
    deadline = time.monotonic() + 5
    while any(t.name.startswith("sagehost read") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the reader thread is still running"
        time.sleep(0.01)


# --- HTTP (plain http on loopback, allowed explicitly) ---------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Range")))
        if self.path == "/private":
            self.send_error(403)
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        if self.headers.get("Range") == "bytes=0-0":
            if not data:
                self.send_response(416)
                self.send_header("Content-Type", "application/xml")  # the error's, not the object's
                self.send_header("Content-Range", "bytes */0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-0/{len(data)}")
            data = data[:1]
        else:
            self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_files() -> Iterator[tuple[str, dict[str, bytes], list[tuple[str, str | None]]]]:
    files: dict[str, bytes] = {}
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Files,), {"files": files, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_read_and_stat_when_allowed(http_files: Any) -> None:
    base, files, seen = http_files
    data = random.Random(2).randbytes(MIB + 3)
    files["/in.csv"] = data
    files["/empty"] = b""
    store = UrlObjectStore(allow_http=True)
    assert asyncio.run(store.stat(f"{base}/in.csv")) == ObjectInfo(len(data), "text/csv")
    assert asyncio.run(store.stat(f"{base}/empty")) == ObjectInfo(0, None)
    chunks = asyncio.run(collect(store.read(f"{base}/in.csv", chunk_size=MIB // 2)))
    assert b"".join(chunks) == data and max(len(c) for c in chunks) <= MIB // 2
    assert seen == [("/in.csv", "bytes=0-0"), ("/empty", "bytes=0-0"), ("/in.csv", None)]
    with pytest.raises(DependencyFailed, match=f"Could not find {base}/gone: HTTP 404"):
        read_all(store, f"{base}/gone")
    with pytest.raises(DependencyFailed, match=f"Could not find {base}/gone: HTTP 404"):
        asyncio.run(store.stat(f"{base}/gone"))
    with pytest.raises(DependencyFailed, match=f"Access denied to {base}/private: HTTP 403"):
        read_all(store, f"{base}/private")
    with pytest.raises(InvalidRequest):
        UrlObjectStore().read(f"{base}/in.csv")


def test_unreachable_http_names_the_url() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"  # bound, not listening: refused
        with pytest.raises(DependencyFailed, match=f"Could not reach {url}"):
            read_all(UrlObjectStore(allow_http=True), url)


# --- S3, through a moto server on loopback ---------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    import boto3

    client = boto3.session.Session().client("s3")
    bucket = f"jobs-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_s3_round_trip_of_20_mib_streams_in_bounded_memory(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    url = f"s3://{bucket}/async/in put.bin"  # keys are literal: no percent-decoding
    expected = hashlib.sha256()

    async def generated() -> AsyncIterator[bytes]:
        rng = random.Random(3)
        for _ in range(20):
            chunk = rng.randbytes(MIB)
            expected.update(chunk)
            yield chunk

    store = UrlObjectStore(read_ahead=2, part_size=5 * MIB)
    asyncio.run(store.write(f"s3://{bucket}/warm-up", b"", None))  # loads botocore's models
    tracemalloc.start()
    try:
        asyncio.run(store.write(url, generated(), "application/x-test"))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before_read, _ = tracemalloc.get_traced_memory()

        async def slow_consumer() -> tuple[str, int, int]:
            digest, count, largest = hashlib.sha256(), 0, 0
            async for chunk in store.read(url, chunk_size=MIB):
                digest.update(chunk)
                count, largest = count + 1, max(largest, len(chunk))
                await asyncio.sleep(0.005)  # the producer would run ahead without back-pressure
            return digest.hexdigest(), count, largest

        digest, count, largest = asyncio.run(slow_consumer())
        _, read_peak = tracemalloc.get_traced_memory()
        read_peak -= before_read
    finally:
        tracemalloc.stop()

    assert digest == expected.hexdigest()
    assert largest == MIB and count == 20
    head = client.head_object(Bucket=bucket, Key="async/in put.bin")
    assert head["ContentLength"] == 20 * MIB
    assert head["ContentType"] == "application/x-test"
    assert head["ETag"].strip('"').endswith("-4")  # four 5 MiB parts
    # Reading holds read_ahead queued chunks and the one in hand (~3 MiB measured).
    assert read_peak < 5 * MIB, read_peak
    # Writing holds a part being gathered and its joined copy (~10 MiB measured).
    assert write_peak < 13 * MIB, write_peak
    assert asyncio.run(store.stat(url)) == ObjectInfo(20 * MIB, "application/x-test")


def test_s3_small_write_is_one_object_and_replaces(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    store = UrlObjectStore()
    url = f"s3://{bucket}/out/id.out"
    for body in (b"v1", b'{"ok": true}', b'{"ok": true}'):
        asyncio.run(store.write(url, body, "application/json"))
    got = client.get_object(Bucket=bucket, Key="out/id.out")
    assert got["Body"].read() == b'{"ok": true}'
    assert got["ContentType"] == "application/json"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["out/id.out"]
    asyncio.run(store.write(f"s3://{bucket}/empty", pieces(), None))
    assert read_all(store, f"s3://{bucket}/empty") == b""
    assert asyncio.run(store.stat(f"s3://{bucket}/empty")).size == 0


def test_s3_failed_multipart_write_is_aborted(s3: tuple[Any, str]) -> None:
    client, bucket = s3
    store = UrlObjectStore(part_size=5 * MIB)

    async def breaks() -> AsyncIterator[bytes]:
        yield b"a" * (6 * MIB)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        asyncio.run(store.write(f"s3://{bucket}/partial", breaks(), None))
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_s3_missing_object_or_bucket_names_the_url(s3: tuple[Any, str]) -> None:
    _, bucket = s3
    store = UrlObjectStore()
    missing = f"s3://{bucket}/no/such.csv"
    with pytest.raises(DependencyFailed, match=f"Could not find {missing}: no such object"):
        read_all(store, missing)
    with pytest.raises(DependencyFailed, match=f"Could not find {missing}: no such object"):
        asyncio.run(store.stat(missing))
    nobucket = "s3://no-such-bucket-here/x"
    with pytest.raises(DependencyFailed, match=f"Could not find {nobucket}: no such bucket"):
        read_all(store, nobucket)
    with pytest.raises(DependencyFailed, match=f"Could not find {nobucket}: no such bucket"):
        asyncio.run(store.write(nobucket, b"x", None))


def test_s3_unreachable_names_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{sock.getsockname()[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        with pytest.raises(DependencyFailed, match="Could not reach S3 for s3://b/k"):
            asyncio.run(UrlObjectStore().stat("s3://b/k"))
