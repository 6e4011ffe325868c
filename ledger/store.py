"""Which store a ledger lives in, chosen by one URL (``--ledger`` / ``ARLEDGER_LEDGER``).

* ``sqlite:///abs/path/ledger.db``, ``sqlite:relative/ledger.db`` or a plain path ending in ``.db``:
  a SQLite file; its artifacts live in ``artifacts/`` beside it. The default is
  ``.arledger/ledger.db`` under the current directory.
* ``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``: the shared multi-host store;
  artifacts live in a table in the same database.
* ``memory://`` (or ``memory://name``): in-process, for tests; gone when the process ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

DEFAULT_URL = "sqlite:.arledger/ledger.db"


class LedgerError(RuntimeError):
    """A problem a user can fix; the message names the cause and the fix."""


@dataclass(frozen=True)
class StoreConfig:
    kind: str  # sqlite | postgres | memory
    url: str
    path: Path | None = None  # sqlite file
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = "public"

    @property
    def home(self) -> Path | None:
        """The directory beside the SQLite file that holds artifacts, keys and checkpoints."""
        return self.path.parent if self.path else None

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite ledger {self.path}"
        if self.kind == "postgres":
            return f"PostgreSQL ledger {self.user}@{self.host}:{self.port}/{self.dbname} (schema {self.schema})"
        return "in-memory ledger"


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("ARLEDGER_LEDGER") or DEFAULT_URL


def parse_url(url: str | None) -> StoreConfig:
    raw = resolve_url(url).strip()
    hint = ("use sqlite:PATH (e.g. sqlite:.arledger/ledger.db), "
            "postgresql://USER@HOST:PORT/DBNAME, or memory://")
    if raw.startswith("memory:"):
        return StoreConfig(kind="memory", url=raw)
    if raw.startswith(("postgresql://", "postgres://")):
        u = urlparse(raw)
        if not u.hostname or not u.path.strip("/"):
            raise LedgerError(f"ledger URL {raw!r} lacks a host or database name; {hint}")
        try:
            port = u.port or 5432
        except ValueError:
            raise LedgerError(f"ledger URL {raw!r} has an invalid port; {hint}") from None
        q = parse_qs(u.query)
        unknown = set(q) - {"schema"}
        if unknown:
            raise LedgerError(f"ledger URL {raw!r}: unknown option(s) {', '.join(sorted(unknown))}; only ?schema=NAME")
        return StoreConfig(
            kind="postgres", url=raw, host=u.hostname, port=port, user=unquote(u.username or os.environ.get("USER", "postgres")),
            password=unquote(u.password or ""), dbname=u.path.strip("/"), schema=(q.get("schema") or ["public"])[0],
        )
    if raw.startswith("sqlite:"):
        rest = raw[len("sqlite:"):]
        if rest.startswith("///"):
            rest = "/" + rest[3:]
        elif rest.startswith("//"):
            raise LedgerError(f"ledger URL {raw!r}: write sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH")
        if not rest:
            raise LedgerError(f"ledger URL {raw!r} names no file; {hint}")
        if rest.startswith("//"):
            rest = "/" + rest.lstrip("/")
        return StoreConfig(kind="sqlite", url=raw, path=Path(rest).expanduser().absolute())
    if "://" in raw:
        scheme = raw.split("://", 1)[0]
        raise LedgerError(f"ledger URL {raw!r}: unknown scheme {scheme!r}; {hint}")
    if raw.endswith((".db", ".sqlite", ".sqlite3")) or "/" in raw:
        return StoreConfig(kind="sqlite", url=f"sqlite:{raw}", path=Path(raw).expanduser().absolute())
    raise LedgerError(f"ledger URL {raw!r} is not understood; {hint}")


def eventsourcing_env(cfg: StoreConfig) -> dict[str, str]:
    """The eventsourcing environment for a store (persistence module, recorder, connection)."""
    if cfg.kind == "sqlite":
        assert cfg.path is not None
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(cfg.path),
            "SQLITE_LOCK_TIMEOUT": "60",
            "APPLICATION_RECORDER_TOPIC": "ledger.recorders:SealedSQLiteRecorder",
            "ORIGINATOR_ID_TYPE": "uuid",
        }
    if cfg.kind == "postgres":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": cfg.dbname,
            "POSTGRES_HOST": cfg.host,
            "POSTGRES_PORT": str(cfg.port),
            "POSTGRES_USER": cfg.user,
            "POSTGRES_PASSWORD": cfg.password,
            "POSTGRES_SCHEMA": cfg.schema,
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_LOCK_TIMEOUT": "30",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            "APPLICATION_RECORDER_TOPIC": "ledger.recorders:SealedPostgresRecorder",
            "ORIGINATOR_ID_TYPE": "uuid",
        }
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
