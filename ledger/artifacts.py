"""The content-addressed artifact store: diffs, code trees, logs, prompts, model files.

An artifact's name is the sha256 of its content; it is stored zstd-compressed. Beside a SQLite
ledger the store is a directory (``artifacts/ab/cdef….zst``); with PostgreSQL it is a table in the
same database, so every host that reaches the ledger reaches the artifacts. Writes are idempotent
and atomic; reads verify the hash. ``objects`` walks every object in the store (for verify, which
checks each against its own address and reports the ones no event refers to).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard


class ArtifactError(RuntimeError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_local = threading.local()


def _c() -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=6)
    return c


def _d() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


class ArtifactStore:
    def put(self, data: bytes | str) -> str:
        raise NotImplementedError

    def get_raw(self, sha: str) -> bytes | None:
        """The stored (compressed) bytes, or None when absent."""
        raise NotImplementedError

    def exists(self, sha: str) -> bool:
        return self.get_raw(sha) is not None

    def get(self, sha: str) -> bytes:
        raw = self.get_raw(sha)
        if raw is None:
            raise ArtifactError(f"artifact {sha[:16]}… is missing from the store")
        return _unpack(sha, raw)

    def get_text(self, sha: str) -> str:
        return self.get(sha).decode("utf-8", errors="replace")

    def check(self, sha: str) -> str | None:
        """None when the artifact is present and matches its hash; else what is wrong."""
        try:
            self.get(sha)
        except ArtifactError as e:
            return str(e)
        return None

    def where(self) -> str:
        """Where the store is, for messages."""
        raise NotImplementedError

    def present(self) -> bool:
        """Whether the store itself exists (a folder copied without it does not)."""
        return True

    def objects(self) -> Iterator[tuple[str, bytes]]:
        """Every object as (its name: the sha256 it claims, stored bytes), in no particular order."""
        raise NotImplementedError


def _unpack(sha: str, raw: bytes) -> bytes:
    try:
        data = _d().decompress(raw)
    except zstandard.ZstdError as e:
        raise ArtifactError(f"artifact {sha[:16]}… is corrupt (not valid zstd: {e})") from e
    got = sha256(data)
    if got != sha:
        raise ArtifactError(f"artifact {sha[:16]}… content does not match its hash (got {got[:16]}…)")
    return data


def check_object(sha: str, raw: bytes) -> str | None:
    """None when stored bytes ``raw`` decompress to content whose sha256 is ``sha``; else what is wrong."""
    try:
        _unpack(sha, raw)
    except ArtifactError as e:
        return str(e)
    return None


_NAME = re.compile(r"[0-9a-f]{62}\.zst")
_DIR = re.compile(r"[0-9a-f]{2}")


class DirArtifactStore(ArtifactStore):
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / f"{sha[2:]}.zst"

    def put(self, data: bytes | str) -> str:
        if isinstance(data, str):
            data = data.encode()
        sha = sha256(data)
        p = self.path(sha)
        if p.exists():
            return sha
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as the ledger's folder
        p.parent.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_c().compress(data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get_raw(self, sha: str) -> bytes | None:
        try:
            return self.path(sha).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def where(self) -> str:
        return str(self.root)

    def present(self) -> bool:
        return self.root.is_dir()

    def objects(self) -> Iterator[tuple[str, bytes]]:
        if not self.root.is_dir():
            return
        for d in sorted(os.scandir(self.root), key=lambda x: x.name):
            if not (_DIR.fullmatch(d.name) and d.is_dir()):
                continue
            for f in os.scandir(d.path):
                if _NAME.fullmatch(f.name) and f.is_file():
                    try:
                        raw = Path(f.path).read_bytes()
                    except OSError:
                        continue
                    yield d.name + f.name[:-4], raw


class MemoryArtifactStore(ArtifactStore):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes | str) -> str:
        if isinstance(data, str):
            data = data.encode()
        sha = sha256(data)
        self.blobs.setdefault(sha, _c().compress(data))
        return sha

    def get_raw(self, sha: str) -> bytes | None:
        return self.blobs.get(sha)

    def where(self) -> str:
        return "the in-memory artifact store"

    def objects(self) -> Iterator[tuple[str, bytes]]:
        yield from list(self.blobs.items())


class PostgresArtifactStore(ArtifactStore):
    def __init__(self, datastore: Any, schema: str, *, create: bool = True):
        from psycopg.sql import SQL, Identifier

        self.datastore = datastore
        self.schema = schema
        self.table = SQL("{0}.arledger_artifacts").format(Identifier(schema))
        self._SQL = SQL
        if create:
            with datastore.transaction(commit=True) as curs:
                curs.execute(SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (sha text PRIMARY KEY, size bigint NOT NULL, data bytea NOT NULL)"
                ).format(self.table))

    def where(self) -> str:
        return f"table {self.schema}.arledger_artifacts"

    def present(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (f'"{self.schema}".arledger_artifacts',))
            row = curs.fetchone()
        return bool(row and row["ok"])

    def objects(self) -> Iterator[tuple[str, bytes]]:
        from psycopg.rows import tuple_row

        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(
            name="arledger_objects", row_factory=tuple_row, binary=True
        ) as cur:
            cur.itersize = 256
            cur.execute(self._SQL("SELECT sha, data FROM {0}").format(self.table))
            for sha, data in cur:
                yield str(sha), bytes(data)

    def put(self, data: bytes | str) -> str:
        if isinstance(data, str):
            data = data.encode()
        sha = sha256(data)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._SQL("INSERT INTO {0} (sha, size, data) VALUES (%s, %s, %s) ON CONFLICT (sha) DO NOTHING")
                .format(self.table),
                (sha, len(data), _c().compress(data)),
            )
        return sha

    def get_raw(self, sha: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._SQL("SELECT data FROM {0} WHERE sha = %s").format(self.table), (sha,))
            row = curs.fetchone()
        return None if row is None else bytes(row["data"])
