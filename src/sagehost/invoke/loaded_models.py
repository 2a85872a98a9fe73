"""sagehost's own operations on multi-model endpoints (an extension; AWS has none):

- ``SageHost.LoadModels`` {EndpointName, TargetModels, Pin?, TargetVariant?}: load models now
  (preload) and optionally pin them, so no eviction ever unloads them;
- ``SageHost.UnpinModels`` {EndpointName, TargetModels, TargetVariant?}: make them evictable;
- ``SageHost.ListLoadedModels`` {EndpointName, TargetVariant?}: what each instance holds, what is
  pinned, and what is on disk.

Every operation acts on the caller's own endpoints only, and on every multi-model production
variant of the endpoint unless ``TargetVariant`` names one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sagehost.core.errors import InvalidRequest, SagehostError
from sagehost.core.invocation import Caller
from sagehost.core.live import LiveEndpoint, LiveVariant
from sagehost.core.multimodel import check_target_model
from sagehost.invoke.multimodel import MultiModelHost

MAX_TARGET_MODELS = 100


class LoadedModels:
    def __init__(self, resolve: Callable[[Caller, str], LiveEndpoint]) -> None:
        self._resolve = resolve

    def operations(
        self,
    ) -> dict[str, Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]]:
        """The operations by their ``X-Amz-Target``, for the gateway to register."""
        return {
            "SageHost.LoadModels": self.load,
            "SageHost.UnpinModels": self.unpin,
            "SageHost.ListLoadedModels": self.list_loaded,
        }

    async def load(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        pin = params.get("Pin", False)
        if not isinstance(pin, bool):
            raise InvalidRequest("Pin must be true or false.")
        targets = _targets(params)
        hosts = self._hosts(caller, params)
        outcomes = await asyncio.gather(
            *(_load(name, host, target, pin) for name, host in hosts for target in targets)
        )
        return {"Models": list(outcomes)}

    async def unpin(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        targets = _targets(params)
        return {
            "Models": [
                {"TargetModel": target, "VariantName": name, "WasPinned": host.unpin(target)}
                for name, host in self._hosts(caller, params)
                for target in targets
            ]
        }

    async def list_loaded(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        hosts = self._hosts(caller, params)
        return {
            "EndpointName": str(params["EndpointName"]),
            "Variants": [{"VariantName": name, **host.describe()} for name, host in hosts],
        }

    def _hosts(self, caller: Caller, params: dict[str, Any]) -> list[tuple[str, MultiModelHost]]:
        name = params.get("EndpointName")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("EndpointName is required.")
        endpoint = self._resolve(caller, name)
        variant = params.get("TargetVariant")
        if variant is not None and not isinstance(variant, str):
            raise InvalidRequest("TargetVariant must be a string.")
        hosts = [(v.name, host) for v in endpoint.variants if (host := _host(v)) is not None]
        if variant is not None:
            hosts = [(n, h) for n, h in hosts if n == variant]
            if not hosts:
                raise InvalidRequest(
                    f"Endpoint {name} of account {caller.account} has no multi-model variant "
                    f"named {variant}."
                )
        elif not hosts:
            raise InvalidRequest(
                f"Endpoint {name} of account {caller.account} is not a multi-model endpoint."
            )
        return hosts


def _host(variant: LiveVariant) -> MultiModelHost | None:
    return variant.models if isinstance(variant.models, MultiModelHost) else None


def _targets(params: dict[str, Any]) -> list[str]:
    targets = params.get("TargetModels")
    if (
        not isinstance(targets, list)
        or not 1 <= len(targets) <= MAX_TARGET_MODELS
        or not all(isinstance(t, str) and t for t in targets)
    ):
        raise InvalidRequest(
            f"TargetModels must be a list of 1 to {MAX_TARGET_MODELS} model paths."
        )
    # A name no file system could hold is the caller's error: refuse the whole request.
    for target in targets:
        check_target_model(target)
    return list(dict.fromkeys(targets))


async def _load(variant: str, host: MultiModelHost, target: str, pin: bool) -> dict[str, Any]:
    outcome: dict[str, Any] = {"TargetModel": target, "VariantName": variant}
    was_pinned = host.pinned(target)
    try:
        await host.preload(target, pin=pin)
    except BaseException as error:
        # A pin is kept only for a model that loaded.
        if pin and not was_pinned:
            host.unpin(target)
        if not isinstance(error, SagehostError):
            raise
        outcome.update(Status="Failed", FailureReason=error.message)
    else:
        outcome["Status"] = "Loaded"
    outcome["Pinned"] = host.pinned(target)
    return outcome
