"""modelhost settings, built from a mapping of environment variables by ``__main__``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sagehost.protocol import container as c

#: User handlers are often not thread-safe (a shared tokenizer, a torch module with state, a
#: global buffer), and the toolkit runs each worker single-threaded; so one thread by default.
#: More threads only help handlers that release the GIL and tolerate concurrent calls.
DEFAULT_WORKERS = 1
#: Longer than any client pool's idle timeout (sagehost's is 4 s), so the server never closes a
#: keep-alive connection that the client is about to reuse.
KEEP_ALIVE_SECONDS = 75
#: SIGTERM waits this long for in-flight requests; the platform sends SIGKILL after 30 s (§8.1).
GRACEFUL_SHUTDOWN_SECONDS = 25


#: Threads that run model loads in multi-model mode, apart from the invocation threads, so a
#: slow ``model_fn`` delays neither calls to loaded models nor every other load.
LOAD_THREADS = 4
#: Stateful sessions (§7.6). The names are those of AWS's own containers; they are not in
#: ``protocol.container`` because only this runtime reads them.
ENV_ENABLE_STATEFUL_SESSIONS = "SAGEMAKER_ENABLE_STATEFUL_SESSIONS"
ENV_SESSIONS_EXPIRATION = "SAGEMAKER_SESSIONS_EXPIRATION"
DEFAULT_SESSION_TTL_SECONDS = 1200


class SettingsError(ValueError):
    """An environment variable has a value modelhost cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    model_dir: str
    module_name: str = "inference"
    host: str = c.DEFAULT_BIND_HOST
    port: int = c.DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    default_accept: str = c.DEFAULT_INVOCATIONS_ACCEPT
    max_payload_bytes: int = c.DEFAULT_MAX_PAYLOAD_BYTES
    log_level: int = logging.INFO
    keep_alive_seconds: int = KEEP_ALIVE_SECONDS
    graceful_shutdown_seconds: int = GRACEFUL_SHUTDOWN_SECONDS
    #: Serve the multi-model API instead of one model from ``model_dir``.
    multi_model: bool = False
    #: Stateful sessions' lifetime in seconds; None when sessions are disabled.
    session_ttl_seconds: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        session_ttl = None
        if c.is_truthy(environ.get(ENV_ENABLE_STATEFUL_SESSIONS)):
            session_ttl = _integer(
                environ, ENV_SESSIONS_EXPIRATION, DEFAULT_SESSION_TTL_SECONDS, 1, 10**9
            )
        return cls(
            model_dir=c.model_dir(environ),
            module_name=c.program_module(environ),
            host=environ.get(c.ENV_SAGEHOST_BIND_HOST) or c.DEFAULT_BIND_HOST,
            port=_integer(environ, c.ENV_BIND_TO_PORT, c.DEFAULT_PORT, 0, 65535),
            workers=_integer(environ, c.ENV_MODEL_SERVER_WORKERS, DEFAULT_WORKERS, 1, 1024),
            default_accept=(
                environ.get(c.ENV_DEFAULT_INVOCATIONS_ACCEPT) or c.DEFAULT_INVOCATIONS_ACCEPT
            ),
            max_payload_bytes=_payload_limit(environ),
            log_level=_log_level(environ.get(c.ENV_CONTAINER_LOG_LEVEL)),
            multi_model=c.is_truthy(environ.get(c.ENV_MULTI_MODEL)),
            session_ttl_seconds=session_ttl,
        )


def _integer(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _payload_limit(environ: Mapping[str, str]) -> int:
    raw = environ.get(c.ENV_MAX_PAYLOAD_IN_MB)
    if not raw:
        return c.DEFAULT_MAX_PAYLOAD_BYTES
    try:
        megabytes = float(raw)
    except ValueError:
        raise SettingsError(f"{c.ENV_MAX_PAYLOAD_IN_MB} must be a number, got {raw!r}") from None
    if not 0 < megabytes <= 1024:
        raise SettingsError(f"{c.ENV_MAX_PAYLOAD_IN_MB} must be in (0, 1024], got {raw!r}")
    # SageMaker's "6 MB" is 6,291,456 bytes, so a megabyte here is a MiB.
    return int(megabytes * c.MIB)


def _log_level(raw: str | None) -> int:
    if not raw:
        return logging.INFO
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise SettingsError(f"{c.ENV_CONTAINER_LOG_LEVEL} is not a log level: {raw!r}")
    return level
