"""SQLite-backed :class:`~sagehost.core.ports.Catalog`: models, configs and endpoints survive restarts.

One table, one row per resource, the record as JSON. Names are stored lower-cased in the key
because SageMaker names are unique case-insensitively (the ARN holds the lower-cased name).
WAL mode keeps reads cheap while a write is in progress; ``synchronous=NORMAL`` in WAL mode is
durable across a process crash, which is the failure we guard against here.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (account, kind, name)
)
"""


class SqliteCatalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, account: str, kind: str, name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM resources WHERE account=? AND kind=? AND name=?",
            (account, kind, name.lower()),
        ).fetchone()
        return None if row is None else _load(row[0])

    def put(self, account: str, kind: str, name: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO resources (account, kind, name, record) VALUES (?, ?, ?, ?)",
            (account, kind, name.lower(), json.dumps(record)),
        )

    def delete(self, account: str, kind: str, name: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM resources WHERE account=? AND kind=? AND name=?",
            (account, kind, name.lower()),
        )
        return cursor.rowcount > 0

    def scan(self, account: str, kind: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT record FROM resources WHERE account=? AND kind=?", (account, kind)
        ).fetchall()
        return [_load(row[0]) for row in rows]

    def all(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT account, record FROM resources WHERE kind=?", (kind,)
        ).fetchall()
        return [(row[0], _load(row[1])) for row in rows]


def _load(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
