"""Raw, tolerant reads of a ledger's tables for verification: no decoder, no eventsourcing.

A :class:`Source` reads the stored rows, sealed leaves, tree head and signature rows of one store
exactly as they are, in ranges, so several processes can each scan a part. Nothing read here is
trusted or assumed well-formed: text columns come back as bytes (a flipped byte in ``topic`` is
not a UTF-8 error), every row says whether its columns have the types they should, and a missing
table or column is reported by name (:meth:`Source.schema_problems`) instead of raised.

Rows are ``(notification id, originator id, version, topic, state, types ok)`` where the originator
id is 16 raw bytes (PostgreSQL) or 32 hex digits as bytes (SQLite).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from ledger.store import StoreConfig

RawRow = tuple[Any, Any, Any, Any, Any, Any]
LeafRow = tuple[Any, Any, Any, Any]  # position, notification id, leaf, types ok
SigRow = tuple[Any, Any, Any, Any, Any]  # position, count, public key, signature, refs

EVENTS, LEAVES, TREE, SIGNATURES = "events", "leaves", "tree", "signatures"


class SourceError(RuntimeError):
    """A table cannot be read at all (the message says which and why)."""


class Source:
    """One store's raw tables. ``open`` in the process that reads (a forked worker opens its own)."""

    names: dict[str, str]

    def open(self) -> None: ...

    def close(self) -> None: ...

    def schema_problems(self) -> dict[str, str]:
        """{table: what is wrong} for missing tables or columns of the wrong type."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def nid_at_offset(self, k: int) -> int | None:
        raise NotImplementedError

    def row_batches(self, lo: int | None, hi: int | None) -> Iterator[list[RawRow]]:
        """The rows with notification ids in [lo, hi), in order, a few thousand at a time."""
        raise NotImplementedError

    def rows(self, lo: int | None, hi: int | None) -> Iterator[RawRow]:
        for batch in self.row_batches(lo, hi):
            yield from batch

    def leaves(self, lo: int, hi: int | None) -> Iterator[LeafRow]:
        raise NotImplementedError

    def sealed_as(self, lo: int, hi: int, nids: list[int], leaves: bytes) -> bool:
        """Whether positions [lo, hi) are sealed exactly with these notification ids and leaves
        (the bulk check; the row-by-row comparison names what differs)."""
        rows = list(self.leaves(lo, hi))
        return len(rows) == hi - lo and all(r[3] for r in rows) and [r[0] for r in rows] == list(range(lo, hi)) \
            and [r[1] for r in rows] == nids and b"".join(bytes(r[2]) for r in rows) == leaves

    def tree(self) -> tuple[Any, Any] | None:
        raise NotImplementedError

    def signatures(self, lo: int, hi: int | None) -> list[SigRow]:
        raise NotImplementedError

    def signature_before(self, pos: int) -> SigRow | None:
        raise NotImplementedError

    def signature_count(self) -> int:
        raise NotImplementedError


# SQLite -----------------------------------------------------------------------------------------

_SQLITE_COLUMNS = {
    EVENTS: ("stored_events", ("originator_id", "originator_version", "topic", "state")),
    LEAVES: ("arledger_leaves", ("position", "notification_id", "leaf")),
    TREE: ("arledger_tree", ("id", "size", "frontier")),
    SIGNATURES: ("arledger_signatures", ("position", "count", "public_key", "signature", "refs")),
}


class SQLiteSource(Source):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn: sqlite3.Connection | None = None
        self.names = {k: v[0] for k, v in _SQLITE_COLUMNS.items()}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "conn": None, "names": self.names}

    def open(self) -> None:
        if self.conn is None:
            self.conn = sqlite3.connect(f"file:{pathname2url(str(self.path))}?mode=ro", uri=True, timeout=30,
                                        check_same_thread=False)
            self.conn.text_factory = bytes

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _q(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        assert self.conn is not None
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise SourceError(str(e)) from None

    def schema_problems(self) -> dict[str, str]:
        out = {}
        for key, (table, cols) in _SQLITE_COLUMNS.items():
            have = [bytes(r[1]).decode(errors="replace") for r in self._q(f"PRAGMA table_info({table})")]
            if not have:
                out[key] = f"table {table} is missing"
            elif missing := [c for c in cols if c not in have]:
                out[key] = f"table {table} lacks column(s) {', '.join(missing)}"
        return out

    def count(self) -> int:
        return int(self._q("SELECT count(*) FROM stored_events").fetchone()[0])

    def nid_at_offset(self, k: int) -> int | None:
        row = self._q("SELECT rowid FROM stored_events ORDER BY rowid LIMIT 1 OFFSET ?", (k,)).fetchone()
        return None if row is None else int(row[0])

    def row_batches(self, lo: int | None, hi: int | None) -> Iterator[list[RawRow]]:
        where, params = _range("rowid", lo, hi)
        cur = self._q(
            # (a version that is not an integer fails the leaf's packing; the other types are checked here)
            "SELECT rowid, originator_id, originator_version, topic, state, typeof(originator_id) = 'text' AND "
            "typeof(topic) = 'text' AND typeof(state) = 'blob' "
            f"FROM stored_events{where} ORDER BY rowid", params)
        while rows := cur.fetchmany(4096):
            yield rows

    def leaves(self, lo: int, hi: int | None) -> Iterator[LeafRow]:
        where, params = _range("position", lo, hi)
        cur = self._q(
            "SELECT position, notification_id, leaf, typeof(position) = 'integer' AND typeof(notification_id) = "
            f"'integer' AND typeof(leaf) = 'blob' AND length(leaf) = 32 FROM arledger_leaves{where} ORDER BY position",
            params)
        while rows := cur.fetchmany(8192):
            yield from rows

    def sealed_as(self, lo: int, hi: int, nids: list[int], leaves: bytes) -> bool:
        n, first, last, bad = self._q(
            "SELECT count(*), min(position), max(position), total(typeof(position) != 'integer' OR "
            "typeof(notification_id) != 'integer' OR typeof(leaf) != 'blob' OR length(leaf) != 32) "
            "FROM arledger_leaves WHERE position >= ? AND position < ?", (lo, hi)).fetchone()
        if n != hi - lo or bad or (n and (first != lo or last != hi - 1)):
            return False
        rows = self._q("SELECT notification_id, leaf FROM arledger_leaves WHERE position >= ? AND position < ? "
                       "ORDER BY position", (lo, hi)).fetchall()
        return [r[0] for r in rows] == nids and b"".join([r[1] for r in rows]) == leaves

    def tree(self) -> tuple[Any, Any] | None:
        row = self._q("SELECT size, frontier, typeof(size) = 'integer' AND typeof(frontier) = 'blob' "
                      "FROM arledger_tree WHERE id = 1").fetchone()
        return None if row is None else (row[0], row[1] if row[2] else None)

    _SIG = ("SELECT CASE WHEN typeof(position) = 'integer' THEN position END, CASE WHEN typeof(count) = 'integer' "
            "THEN count END, CASE WHEN typeof(public_key) = 'blob' THEN public_key END, CASE WHEN typeof(signature) "
            "= 'blob' THEN signature END, CASE WHEN typeof(refs) = 'blob' THEN refs END FROM arledger_signatures")

    def signatures(self, lo: int, hi: int | None) -> list[SigRow]:
        where, params = _range("position", lo, hi)
        return self._q(f"{self._SIG}{where} ORDER BY position", params).fetchall()

    def signature_before(self, pos: int) -> SigRow | None:
        return self._q(f"{self._SIG} WHERE position < ? ORDER BY position DESC LIMIT 1", (pos,)).fetchone()

    def signature_count(self) -> int:
        return int(self._q("SELECT count(*) FROM arledger_signatures").fetchone()[0])


def _range(col: str, lo: int | None, hi: int | None, p: str = "?") -> tuple[str, tuple]:
    conds, params = [], []
    if lo is not None:
        conds.append(f"{col} >= {p}")
        params.append(lo)
    if hi is not None:
        conds.append(f"{col} < {p}")
        params.append(hi)
    return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(params)


# PostgreSQL -------------------------------------------------------------------------------------

_PG_COLUMNS = {
    EVENTS: ("arledger_events", {"originator_id": "uuid", "originator_version": "bigint", "topic": "text",
                                 "state": "bytea", "notification_id": "bigint"}),
    LEAVES: ("arledger_leaves", {"position": "bigint", "notification_id": "bigint", "leaf": "bytea"}),
    TREE: ("arledger_tree", {"id": "integer", "size": "bigint", "frontier": "bytea"}),
    SIGNATURES: ("arledger_signatures", {"position": "bigint", "count": "integer", "public_key": "bytea",
                                         "signature": "bytea", "refs": "bytea"}),
}


class PostgresSource(Source):
    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg
        self.conn: Any = None
        s = cfg.schema.replace('"', '""')
        self.names = {k: f'"{s}".{v[0]}' for k, v in _PG_COLUMNS.items()}

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "conn": None, "names": self.names}

    def open(self) -> None:
        if self.conn is None:
            import psycopg

            c = self.cfg
            self.conn = psycopg.connect(host=c.host, port=c.port, user=c.user, password=c.password or None,
                                        dbname=c.dbname, connect_timeout=5, autocommit=True)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _q(self, sql: str, params: tuple = ()) -> Any:
        import psycopg

        try:
            return self.conn.cursor(binary=True).execute(sql, params)
        except psycopg.Error as e:
            raise SourceError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None

    def schema_problems(self) -> dict[str, str]:
        out = {}
        for key, (table, cols) in _PG_COLUMNS.items():
            got = dict(self._q("SELECT column_name::text, data_type::text FROM information_schema.columns "
                               "WHERE table_schema = %s AND table_name = %s", (self.cfg.schema, table)).fetchall())
            if not got:
                out[key] = f"table {self.cfg.schema}.{table} is missing"
                continue
            bad = [f"{c} is {got[c]}, not {t}" if c in got else f"{c} is missing"
                   for c, t in cols.items() if got.get(c) != t]
            if bad:
                out[key] = f"table {self.cfg.schema}.{table}: column {'; '.join(bad)}"
        return out

    def count(self) -> int:
        return int(self._q(f"SELECT count(*) FROM {self.names[EVENTS]}").fetchone()[0])

    def nid_at_offset(self, k: int) -> int | None:
        row = self._q(f"SELECT notification_id FROM {self.names[EVENTS]} ORDER BY notification_id "
                      "LIMIT 1 OFFSET %s", (k,)).fetchone()
        return None if row is None else int(row[0])

    def _batches(self, sql: str, params: tuple, size: int) -> Iterator[list[Any]]:
        import psycopg

        try:
            with self.conn.transaction(), self.conn.cursor(name=f"arledger_scan_{uuid.uuid4().hex[:8]}",
                                                             binary=True) as cur:
                cur.itersize = size
                cur.execute(sql, params)
                while rows := cur.fetchmany(size):
                    yield rows
        except psycopg.Error as e:
            raise SourceError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None

    def row_batches(self, lo: int | None, hi: int | None) -> Iterator[list[RawRow]]:
        where, params = _range("notification_id", lo, hi, "%s")
        return self._batches(
            "SELECT notification_id, uuid_send(originator_id), originator_version, convert_to(topic, 'UTF8'), "
            f"state, topic IS NOT NULL AND state IS NOT NULL FROM {self.names[EVENTS]}{where} "
            "ORDER BY notification_id", params, 8192)

    def leaves(self, lo: int, hi: int | None) -> Iterator[LeafRow]:
        where, params = _range("position", lo, hi, "%s")
        for batch in self._batches(f"SELECT position, notification_id, leaf, octet_length(leaf) = 32 FROM "
                                   f"{self.names[LEAVES]}{where} ORDER BY position", params, 16384):
            yield from batch

    def tree(self) -> tuple[Any, Any] | None:
        return self._q(f"SELECT size, frontier FROM {self.names[TREE]} WHERE id = 1").fetchone()

    def signatures(self, lo: int, hi: int | None) -> list[SigRow]:
        where, params = _range("position", lo, hi, "%s")
        return list(self._q(f"SELECT position, count, public_key, signature, refs FROM {self.names[SIGNATURES]}"
                            f"{where} ORDER BY position", params).fetchall())

    def signature_before(self, pos: int) -> SigRow | None:
        return self._q(f"SELECT position, count, public_key, signature, refs FROM {self.names[SIGNATURES]} "
                       "WHERE position < %s ORDER BY position DESC LIMIT 1", (pos,)).fetchone()

    def signature_count(self) -> int:
        return int(self._q(f"SELECT count(*) FROM {self.names[SIGNATURES]}").fetchone()[0])


# memory -----------------------------------------------------------------------------------------

class MemorySource(Source):
    """The in-memory store's lists (tests); read in this process only."""

    def __init__(self, recorder: Any):
        self.rec = recorder
        self.names = {EVENTS: "events", LEAVES: "leaves", TREE: "tree", SIGNATURES: "signatures"}

    def schema_problems(self) -> dict[str, str]:
        return {}

    def count(self) -> int:
        return len(self.rec._stored_events)

    def nid_at_offset(self, k: int) -> int | None:
        return k + 1 if k < self.count() else None

    def row_batches(self, lo: int | None, hi: int | None) -> Iterator[list[RawRow]]:
        with self.rec._database_lock:
            rows = list(self.rec._stored_events)
        yield [(nid, uuid.UUID(str(s.originator_id)).bytes, s.originator_version, s.topic.encode(), s.state, True)
               for nid, s in enumerate(rows, start=1) if (lo is None or nid >= lo) and (hi is None or nid < hi)]

    def leaves(self, lo: int, hi: int | None) -> Iterator[LeafRow]:
        with self.rec._database_lock:
            leaves = list(self.rec._leaves)
        for pos, nid, leaf in leaves:
            if pos >= lo and (hi is None or pos < hi):
                yield pos, nid, leaf, True

    def tree(self) -> tuple[Any, Any] | None:
        size, frontier = self.rec.tree_state()
        return (size, frontier) if size else None

    def signatures(self, lo: int, hi: int | None) -> list[SigRow]:
        return [r for r in self.rec.signatures if r[0] >= lo and (hi is None or r[0] < hi)]

    def signature_before(self, pos: int) -> SigRow | None:
        before = [r for r in self.rec.signatures if r[0] < pos]
        return before[-1] if before else None

    def signature_count(self) -> int:
        return len(self.rec.signatures)


def source_for(led: Any) -> Source:
    from ledger.recorders import SealedPOPORecorder, SealedSQLiteRecorder

    rec = led.recorder
    if isinstance(rec, SealedSQLiteRecorder):
        return SQLiteSource(Path(rec.datastore.pool.db_name))
    if isinstance(rec, SealedPOPORecorder):
        return MemorySource(rec)
    return PostgresSource(led.cfg)
