"""What ``ContainerSpec.image`` means here, and the command line and environment that follow.

Kinds of image:

- ``sagehost/python[:tag]``: the bundled runtime, ``python -m sagehost.modelhost``.
- ``process:<command line>``: any local program that serves the container contract.
- ``url:http://host:port``: a server somebody else runs; nothing is started.
- anything else: a Docker image, run through the ``docker`` CLI when an engine is reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sagehost
from sagehost.core.errors import DeploymentFailed
from sagehost.protocol import container as contract

BUILTIN_IMAGE = "sagehost/python"
PROCESS_PREFIX = "process:"
URL_PREFIX = "url:"

# Workers must not inherit sagehost's own AWS identity: a model gets only what its
# ContainerSpec.environment grants it, as a SageMaker container gets only its role.
_AWS_CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
    }
)
_INTERNAL_PREFIX = "SAGEHOST_"


@dataclass(frozen=True)
class BuiltinRuntime:
    pass


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RemoteUrl:
    url: str


@dataclass(frozen=True)
class DockerImage:
    image: str


Image = BuiltinRuntime | Command | RemoteUrl | DockerImage


def resolve_image(image: str) -> Image:
    """Classify an image string; raises ``DeploymentFailed`` when it cannot be used."""
    name, _, _tag = image.partition(":")
    if name == BUILTIN_IMAGE:
        return BuiltinRuntime()
    if image.startswith(PROCESS_PREFIX):
        try:
            argv = tuple(shlex.split(image[len(PROCESS_PREFIX) :]))
        except ValueError as exc:
            raise DeploymentFailed(f'Image "{image}" is not a valid command line: {exc}.') from None
        if not argv:
            raise DeploymentFailed(f'Image "{image}" names no command to run.')
        return Command(argv)
    if image.startswith(URL_PREFIX):
        url = image[len(URL_PREFIX) :].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DeploymentFailed(f'Image "{image}" must look like "url:http://host:port".')
        return RemoteUrl(url)
    return DockerImage(image)


async def docker_problem(image: str, docker_host: str | None, socket_path: Path) -> str | None:
    """Why ``image`` cannot run under Docker here, or ``None`` when an engine is reachable."""
    if docker_host or await _socket_answers(socket_path):
        return None
    return (
        f'Image "{image}" needs a Docker engine and none is reachable (DOCKER_HOST is unset and '
        f"{socket_path} does not answer). Use image "
        f'"{BUILTIN_IMAGE}" or "{PROCESS_PREFIX}<command>" to run without Docker.'
    )


async def _socket_answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass(frozen=True)
class Launch:
    """One instance's process: its command line, its environment and an optional cleanup."""

    argv: list[str]
    env: dict[str, str]
    cleanup: list[str] | None = None


def inherited_env(base: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in base.items()
        if name not in _AWS_CREDENTIAL_VARIABLES and not name.startswith(_INTERNAL_PREFIX)
    }


def build_launch(
    image: BuiltinRuntime | Command | DockerImage,
    *,
    python: str,
    base_env: Mapping[str, str],
    environment: Mapping[str, str],
    port: int,
    bind_host: str,
    model_dir: Path,
    base_dir: Path,
    hostname: str,
    name: str,
    shared_dirs: Sequence[Path] = (),
) -> Launch:
    """The process for one instance listening on ``bind_host:port``.

    ``name`` is unique per instance start; Docker uses it as the container name so that a
    container left by a killed CLI can still be removed. ``shared_dirs`` are host directories
    the container must see at the same paths (read-only): a multi-model container is told to
    load models by their path on the host.
    """
    env = inherited_env(base_env)
    if isinstance(image, DockerImage):
        env.update(environment)
        argv = ["docker", "run", "--rm", "--name", name, "--hostname", hostname]
        argv += ["-p", f"{bind_host}:{port}:{contract.DEFAULT_PORT}"]
        argv += ["-v", f"{model_dir}:{contract.DEFAULT_BASE_DIR}/{contract.MODEL_SUBDIR}:ro"]
        for shared in shared_dirs:
            argv += ["-v", f"{shared}:{shared}:ro"]
        # "-e NAME" makes the CLI copy the value from its own environment: values stay out of
        # the process list and need no quoting.
        for variable in environment:
            argv += ["-e", variable]
        argv += [image.image, "serve"]
        return Launch(argv, env, cleanup=["docker", "rm", "--force", name])

    # Unbuffered Python output reaches the log before a crash, where FailureReason reads it.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(environment)
    env[contract.ENV_BIND_TO_PORT] = str(port)
    env[contract.ENV_SAGEHOST_BIND_HOST] = bind_host
    env[contract.ENV_SAGEHOST_MODEL_DIR] = str(model_dir)
    env[contract.ENV_BASE_DIR] = str(base_dir)
    if isinstance(image, Command):
        return Launch(list(image.argv), env)
    # The runtime must be the sagehost that launched it, installed or not.
    package_root = str(Path(sagehost.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return Launch([python, "-m", "sagehost.modelhost"], env)
