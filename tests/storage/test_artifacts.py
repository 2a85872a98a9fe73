"""Model data from a directory, a tarball (path or file://) and S3 (a moto server on loopback)."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.core.errors import DeploymentFailed
from sagehost.storage.artifacts import ModelDataNotFound, fetch_model_data
from sagehost.testing.moto import running_moto

FILES = {"model.json": b'{"w": [1, 2]}', "code/inference.py": b"def model_fn(d):\n    return d\n"}


def make_tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def fetch(url: str | None, dest: Path, timeout_s: float = 30) -> Path:
    return asyncio.run(fetch_model_data(url, dest, timeout_s))


def test_tarball_from_a_path_is_extracted_once(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "model.tar.gz", FILES)
    dest = tmp_path / "cache"
    model = fetch(str(tarball), dest)
    assert model.parent == dest
    assert tree(model) == FILES
    # A second fetch of the same tarball reuses the tree: our marker survives.
    (model / "marker").write_bytes(b"kept")
    assert fetch(str(tarball), dest) == model
    assert (model / "marker").read_bytes() == b"kept"
    # A changed tarball is a new version with its own tree.
    make_tarball(tarball, {"model.json": b"v2"})
    os.utime(tarball, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = fetch(str(tarball), dest)
    assert changed != model and tree(changed) == {"model.json": b"v2"}
    assert sorted(p.name.startswith(".tmp") for p in dest.iterdir()) == [False, False]


def test_tarball_from_a_file_url(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "my model.tgz", FILES)
    url = "file://" + str(tarball).replace(" ", "%20")
    assert tree(fetch(url, tmp_path / "cache")) == FILES


def test_directory_is_used_in_place(tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "code").mkdir(parents=True)
    (source / "model.json").write_bytes(b"{}")
    dest = tmp_path / "cache"
    assert fetch(str(source), dest) == source.resolve()
    assert fetch(f"file://{source}/", dest) == source.resolve()
    assert list(dest.iterdir()) == []


def test_no_model_data_gives_an_empty_directory(tmp_path: Path) -> None:
    empty = fetch(None, tmp_path / "cache")
    assert empty.is_dir() and list(empty.iterdir()) == []


@pytest.mark.parametrize(
    ("member", "kind"),
    [
        ("../escaped.txt", tarfile.REGTYPE),
        ("sub/../../escaped.txt", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
    ],
)
def test_archive_escaping_its_directory_is_rejected(
    tmp_path: Path, member: str, kind: bytes
) -> None:
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "../../../../etc/passwd"
        archive.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "cache"
    with pytest.raises(DeploymentFailed) as failed:
        fetch(str(tarball), dest)
    assert failed.value.message.startswith(f"Model data {tarball} is not a safe archive: ")
    assert not (tmp_path / "escaped.txt").exists()
    assert list(dest.iterdir()) == []  # no half-extracted tree left behind


def test_absolute_names_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    tarball = make_tarball(tmp_path / "abs.tar.gz", {str(outside): b"x"})
    model = fetch(str(tarball), tmp_path / "cache")
    assert tree(model) == {str(outside).lstrip("/"): b"x"}
    assert not outside.exists()


def test_missing_path_names_the_url(tmp_path: Path) -> None:
    missing = tmp_path / "absent.tar.gz"
    with pytest.raises(DeploymentFailed) as failed:
        fetch(f"file://{missing}", tmp_path / "cache")
    assert failed.value.message == (
        f"Could not find model data at file://{missing}: no such file or directory."
    )


def test_a_path_no_file_system_could_hold_is_not_found(tmp_path: Path) -> None:
    too_long = tmp_path / ("a" * 300 + ".tar.gz")
    for url in (str(too_long), too_long.as_uri()):
        with pytest.raises(ModelDataNotFound) as error:
            fetch(url, tmp_path / "cache")
        assert error.value.message == f"Could not find model data at {url}: File name too long."


def test_other_files_and_schemes_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 600)
    with pytest.raises(DeploymentFailed) as failed:
        fetch(str(weights), tmp_path / "cache")
    assert failed.value.message == (
        f"Model data {weights} is neither a directory nor a .tar.gz archive."
    )
    with pytest.raises(DeploymentFailed) as failed:
        fetch("https://example.com/model.tar.gz", tmp_path / "cache")
    assert failed.value.message == (
        "Model data URL https://example.com/model.tar.gz is not supported: "
        "use s3://, file:// or a local path."
    )


def test_a_fetch_that_outlives_its_budget_fails(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "model.tar.gz", FILES)
    with pytest.raises(DeploymentFailed) as failed:
        fetch(str(tarball), tmp_path / "cache", timeout_s=0)
    assert failed.value.message == f"Model data {tarball} could not be fetched within 0 seconds."


# --- S3, through a moto server on loopback --------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    import boto3

    client = boto3.session.Session().client("s3")
    bucket = f"models-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_s3_tarball(s3: Any, tmp_path: Path) -> None:
    client, bucket = s3
    tarball = make_tarball(tmp_path / "model.tar.gz", FILES)
    client.upload_file(str(tarball), bucket, "xgb/model.tar.gz")
    dest = tmp_path / "cache"
    model = fetch(f"s3://{bucket}/xgb/model.tar.gz", dest)
    assert tree(model) == FILES
    assert fetch(f"s3://{bucket}/xgb/model.tar.gz", dest) == model  # same ETag: cached
    assert [p.name for p in dest.iterdir()] == [model.name]  # the download was removed


def test_s3_prefix_is_downloaded_as_a_directory(s3: Any, tmp_path: Path) -> None:
    client, bucket = s3
    for name, data in FILES.items():
        client.put_object(Bucket=bucket, Key=f"bert/v1/{name}", Body=data)
    client.put_object(Bucket=bucket, Key="bert/v1/empty-folder/", Body=b"")
    client.put_object(Bucket=bucket, Key="bert/v10/other.json", Body=b"not mine")
    for url in (f"s3://{bucket}/bert/v1/", f"s3://{bucket}/bert/v1"):
        assert tree(fetch(url, tmp_path / "cache")) == FILES


def test_s3_missing_object_and_prefix_name_the_url(s3: Any, tmp_path: Path) -> None:
    _, bucket = s3
    for url in (f"s3://{bucket}/absent/model.tar.gz", f"s3://{bucket}/absent/"):
        with pytest.raises(DeploymentFailed) as failed:
            fetch(url, tmp_path / "cache")
        assert failed.value.message.startswith(f"Could not find model data at {url}: ")
    with pytest.raises(DeploymentFailed) as failed:
        fetch("s3://no-such-bucket-here/model.tar.gz", tmp_path / "cache")
    assert failed.value.message.startswith(
        "Could not find model data at s3://no-such-bucket-here/model.tar.gz: "
    )
