"""SigV4 authentication of every request: protocol.sigv4 plus a credential store and a clock."""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import MutableMapping
from typing import Any

from sagehost.core.errors import NotAuthenticated
from sagehost.core.invocation import Caller
from sagehost.core.ports import Account, Clock, CredentialStore
from sagehost.protocol import sigv4

UNRECOGNIZED = "The security token included in the request is invalid."
# A request that came through a proxy names its origin in one of these; the proxy's own
# loopback address then says nothing about where the caller is.
_PROXY_HEADERS = frozenset(("forwarded", "x-forwarded-for", "x-real-ip"))


class Authenticator:
    def __init__(
        self,
        store: CredentialStore,
        clock: Clock,
        *,
        max_skew_s: float = 900.0,
        loopback_only_keys: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_skew_s = max_skew_s
        # Keys (the dev "test" key) that are honoured only from a loopback peer.
        self._loopback_only = loopback_only_keys

    def authenticate(
        self,
        *,
        method: str,
        raw_path: str,
        query_string: str,
        headers: list[tuple[str, str]],
        body: bytes,
        peer: str | None,
    ) -> tuple[Account, str]:
        """The account that signed the request and the region it signed for."""
        authorization = None
        proxied = False
        for name, value in headers:
            if name == "authorization":
                authorization = value
            elif name in _PROXY_HEADERS:
                proxied = True
        try:
            credential = sigv4.parse_authorization(authorization)
        except sigv4.SigV4Error as error:
            raise NotAuthenticated(error.code, error.message) from None
        account = self._store.lookup(credential.access_key_id)
        if account is None or (
            credential.access_key_id in self._loopback_only and (proxied or not _is_loopback(peer))
        ):
            raise NotAuthenticated("UnrecognizedClientException", UNRECOGNIZED)
        try:
            sigv4.verify(
                method=method,
                raw_path=raw_path,
                query_string=query_string,
                headers=headers,
                body=body,
                credential=credential,
                secret_access_key=account.secret_access_key,
                now=self._clock.time(),
                max_skew_seconds=self._max_skew_s,
            )
        except sigv4.SigV4Error as error:
            raise NotAuthenticated(error.code, error.message) from None
        if account.session_token is not None:
            token = sigv4.security_token(headers)
            if token is None or not hmac.compare_digest(token, account.session_token):
                raise NotAuthenticated("UnrecognizedClientException", UNRECOGNIZED)
        return account, credential.region

    def caller(self, scope: MutableMapping[str, Any], body: bytes) -> Caller:
        """``authenticate`` an ASGI request: the caller's account and region."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        account, region = self.authenticate(
            method=scope["method"],
            raw_path=raw_path.decode("latin-1").split("?", 1)[0],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
            peer=(scope.get("client") or (None,))[0],
        )
        return Caller(account.account_id, region)


@functools.lru_cache(maxsize=4096)
def _is_loopback(peer: str | None) -> bool:
    if peer is None:
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
