"""Credential stores: the TOML accounts file, and the loopback-only dev account.

File format::

    [[account]]
    id = "111122223333"
    access_key_id = "AKIA..."
    secret_access_key = "..."
    # session_token = "..."   optional: then requests must carry this X-Amz-Security-Token
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sagehost.core.ports import Account

# The documented loopback-only dev credentials.
DEV_ACCOUNT = Account(account_id="000000000000", access_key_id="test", secret_access_key="test")  # noqa: S106
_ACCOUNT_ID = re.compile(r"\d{12}")


class CredentialsFileError(Exception):
    pass


class StaticCredentialStore:
    def __init__(self, accounts: list[Account]) -> None:
        self._by_key = {a.access_key_id: a for a in accounts}
        self.accounts = tuple(accounts)

    def lookup(self, access_key_id: str) -> Account | None:
        return self._by_key.get(access_key_id)


def load_credentials(path: Path) -> StaticCredentialStore:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise CredentialsFileError(f"cannot read credentials file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise CredentialsFileError(f"credentials file {path} is not valid TOML: {error}") from None
    tables = data.get("account")
    if not isinstance(tables, list) or not tables:
        raise CredentialsFileError(f"credentials file {path} has no [[account]] table")
    accounts: list[Account] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, start=1):
        where = f"{path}: account #{index}"
        if not isinstance(table, dict):
            raise CredentialsFileError(f"{where} is not a table")
        account_id = table.get("id")
        key = table.get("access_key_id")
        secret = table.get("secret_access_key")
        token = table.get("session_token")
        if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
            raise CredentialsFileError(f"{where}: id must be a string of 12 digits")
        if not isinstance(key, str) or not key:
            raise CredentialsFileError(f"{where}: access_key_id is missing")
        if not isinstance(secret, str) or not secret:
            raise CredentialsFileError(f"{where}: secret_access_key is missing")
        if token is not None and not isinstance(token, str):
            raise CredentialsFileError(f"{where}: session_token must be a string")
        if key in seen:
            raise CredentialsFileError(f"{where}: access_key_id {key} appears twice")
        seen.add(key)
        accounts.append(Account(account_id, key, secret, token))
    return StaticCredentialStore(accounts)
