"""eventsourcing recorders that seal every stored event into the Merkle log in the same transaction.

Each recorder stores events exactly as eventsourcing does, and in the same database transaction
appends one leaf per event to ``arledger_leaves`` (position, notification id, leaf hash) and updates
the tree's right edge in ``arledger_tree``. An append therefore returns only once its events are
sealed, on every store. Positions are dense (0, 1, 2, …) in commit order; notification ids may have
gaps on PostgreSQL (a rolled-back sequence value), positions never do.

Each recorder also exposes the raw readers verification needs: ``iter_rows`` (stored rows in
commit order, undecoded), ``iter_leaves`` and ``tree_state``; and ``select_recorded``, the one
reading path of ``Ledger.events`` (rows from a leaf position, optionally of some topics only).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger.codec import leaf_data
from ledger.merkle import Frontier, leaf_hash

Row = tuple[int, "uuid.UUID | str", int, str, bytes]  # notification id, originator (UUID or hex), version, topic, state
LeafRow = tuple[int, int, bytes]  # position, notification id, leaf hash
RecordedRow = tuple[int, int, str, bytes]  # position, notification id, topic, stored state


def _seal(frontier: Frontier, ids: Sequence[int], stored: Sequence[StoredEvent]) -> list[LeafRow]:
    rows = []
    for nid, s in zip(ids, stored, strict=True):
        pos = frontier.size
        lh = leaf_hash(leaf_data(pos, s.originator_id, s.originator_version, s.topic, s.state))
        frontier.append(lh)
        rows.append((pos, nid, lh))
    return rows


class SealedSQLiteRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS arledger_leaves (position INTEGER PRIMARY KEY, "
            "notification_id INTEGER NOT NULL UNIQUE, leaf BLOB NOT NULL)"
        )
        statements.append(
            "CREATE TABLE IF NOT EXISTS arledger_tree (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "size INTEGER NOT NULL, frontier BLOB NOT NULL)"
        )
        return statements

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # the event INSERTs come first, so this transaction holds the write lock before it reads
        # the tree state: concurrent writers serialise on SQLite's lock, never on a stale read.
        ids = super()._insert_events(c, stored_events, **kwargs)
        assert ids is not None
        c.execute("SELECT frontier FROM arledger_tree WHERE id = 1")
        row = c.fetchone()
        frontier = Frontier.from_bytes(bytes(row[0])) if row else Frontier()
        leaves = _seal(frontier, ids, stored_events)
        c.executemany("INSERT INTO arledger_leaves VALUES (?, ?, ?)", leaves)
        c.execute("INSERT OR REPLACE INTO arledger_tree VALUES (1, ?, ?)", (frontier.size, frontier.to_bytes()))
        return ids

    # raw readers ---------------------------------------------------------------------------
    def _ro(self) -> sqlite3.Connection:
        db = self.datastore.pool.db_name
        if self.datastore.pool.is_sqlite_memory_mode:
            raise RuntimeError("raw reads of an in-memory SQLite database are not supported")
        from urllib.request import pathname2url

        conn = sqlite3.connect(f"file:{pathname2url(db)}?mode=ro", uri=True, timeout=30)
        return conn

    def iter_rows(self, batch: int = 4096) -> Iterator[Row]:
        conn = self._ro()
        try:
            cur = conn.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                "ORDER BY rowid"
            )
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield from rows
        finally:
            conn.close()

    def iter_leaves(self, batch: int = 8192) -> Iterator[LeafRow]:
        conn = self._ro()
        try:
            cur = conn.execute("SELECT position, notification_id, leaf FROM arledger_leaves ORDER BY position")
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield from rows
        finally:
            conn.close()

    def tree_state(self) -> tuple[int, bytes]:
        conn = self._ro()
        try:
            row = conn.execute("SELECT size, frontier FROM arledger_tree WHERE id = 1").fetchone()
        finally:
            conn.close()
        return (0, Frontier().to_bytes()) if row is None else (row[0], bytes(row[1]))

    def nid_at(self, position: int) -> int | None:
        conn = self._ro()
        try:
            row = conn.execute("SELECT notification_id FROM arledger_leaves WHERE position = ?", (position,)).fetchone()
        finally:
            conn.close()
        return None if row is None else row[0]

    def position_of(self, notification_id: int) -> int | None:
        conn = self._ro()
        try:
            row = conn.execute(
                "SELECT position FROM arledger_leaves WHERE notification_id = ?", (notification_id,)
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else row[0]

    def select_recorded(self, start: int, limit: int, topics: Sequence[str] = (),
                        stop: int | None = None) -> list[RecordedRow]:
        """Up to ``limit`` stored rows with leaf positions in ``[start, stop)``, in commit order, only
        of ``topics`` when given: ``(position, notification id, topic, state)``."""
        where = f" AND e.topic IN ({','.join('?' * len(topics))})" if topics else ""
        end = (1 << 62) if stop is None else stop
        conn = self._ro()
        try:
            return conn.execute(
                f"SELECT l.position, e.rowid, e.topic, e.state FROM arledger_leaves l "
                f"JOIN {self.events_table_name} e ON e.rowid = l.notification_id "
                f"WHERE l.position >= ? AND l.position < ?{where} ORDER BY l.position LIMIT ?",
                (start, end, *topics, limit)
            ).fetchall()
        finally:
            conn.close()


class SealedPOPORecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._leaves: list[LeafRow] = []
        self._frontier = Frontier()

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)
        assert ids is not None
        self._leaves.extend(_seal(self._frontier, ids, stored_events))
        return ids

    def iter_rows(self, batch: int = 4096) -> Iterator[Row]:
        with self._database_lock:
            rows = list(self._stored_events)
        for i, s in enumerate(rows, start=1):
            yield i, uuid.UUID(str(s.originator_id)), s.originator_version, s.topic, s.state

    def iter_leaves(self, batch: int = 4096) -> Iterator[LeafRow]:
        with self._database_lock:
            yield from list(self._leaves)

    def tree_state(self) -> tuple[int, bytes]:
        with self._database_lock:
            return self._frontier.size, self._frontier.to_bytes()

    def position_of(self, notification_id: int) -> int | None:
        return notification_id - 1 if 0 < notification_id <= len(self._leaves) else None

    def nid_at(self, position: int) -> int | None:
        with self._database_lock:
            return self._leaves[position][1] if 0 <= position < len(self._leaves) else None

    def select_recorded(self, start: int, limit: int, topics: Sequence[str] = (),
                        stop: int | None = None) -> list[RecordedRow]:
        want = set(topics)
        out: list[RecordedRow] = []
        with self._database_lock:
            rows = self._stored_events[start:stop]
        for i, s in enumerate(rows, start=start):
            if not want or s.topic in want:
                out.append((i, i + 1, s.topic, s.state))
                if len(out) >= limit:
                    break
        return out


def _postgres_recorder_class() -> type:
    """Defined lazily so that psycopg is needed only when PostgreSQL is used."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from psycopg.rows import tuple_row
    from psycopg.sql import SQL, Identifier

    class SealedPostgresRecorder(PostgresApplicationRecorder):
        def __init__(self, datastore: Any, **kwargs: Any):
            super().__init__(datastore, **kwargs)
            schema = Identifier(self.datastore.schema)
            self._leaves_t = SQL("{0}.arledger_leaves").format(schema)
            self._tree_t = SQL("{0}.arledger_tree").format(schema)
            self._events_t = SQL("{0}.{1}").format(schema, Identifier(self.events_table_name))
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (position bigint PRIMARY KEY, "
                    "notification_id bigint NOT NULL UNIQUE, leaf bytea NOT NULL)"
                ).format(self._leaves_t)
            )
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (id int PRIMARY KEY CHECK (id = 1), "
                    "size bigint NOT NULL, frontier bytea NOT NULL)"
                ).format(self._tree_t)
            )

        def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                                           **kwargs: Any) -> Sequence[int] | None:
            ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            assert ids is not None
            # the events table is locked IN EXCLUSIVE MODE by eventsourcing for this transaction,
            # so reading the tree state here is serialised with every other writer.
            curs.execute(SQL("SELECT frontier FROM {0} WHERE id = 1").format(self._tree_t))
            row = curs.fetchone()
            frontier = Frontier.from_bytes(bytes(row["frontier"])) if row else Frontier()
            leaves = _seal(frontier, ids, stored_events)
            curs.executemany(
                SQL("INSERT INTO {0} (position, notification_id, leaf) VALUES (%s, %s, %s)").format(self._leaves_t),
                leaves,
            )
            curs.execute(
                SQL(
                    "INSERT INTO {0} (id, size, frontier) VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE "
                    "SET size = EXCLUDED.size, frontier = EXCLUDED.frontier"
                ).format(self._tree_t),
                (frontier.size, frontier.to_bytes()),
            )
            return ids

        def iter_rows(self, batch: int = 4096) -> Iterator[Row]:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(
                name="arledger_rows", row_factory=tuple_row
            ) as cur:
                cur.itersize = batch
                cur.execute(
                    SQL(
                        "SELECT notification_id, originator_id, originator_version, topic, state FROM {0} "
                        "ORDER BY notification_id"
                    ).format(self._events_t)
                )
                for nid, oid, ver, topic, state in cur:
                    yield nid, oid if isinstance(oid, uuid.UUID) else uuid.UUID(str(oid)), ver, topic, bytes(state)

        def iter_leaves(self, batch: int = 8192) -> Iterator[LeafRow]:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(
                name="arledger_leaves_cur", row_factory=tuple_row
            ) as cur:
                cur.itersize = batch
                cur.execute(
                    SQL("SELECT position, notification_id, leaf FROM {0} ORDER BY position").format(self._leaves_t)
                )
                for pos, nid, leaf in cur:
                    yield pos, nid, bytes(leaf)

        def tree_state(self) -> tuple[int, bytes]:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(SQL("SELECT size, frontier FROM {0} WHERE id = 1").format(self._tree_t))
                row = curs.fetchone()
            return (0, Frontier().to_bytes()) if row is None else (row["size"], bytes(row["frontier"]))

        def nid_at(self, position: int) -> int | None:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(SQL("SELECT notification_id FROM {0} WHERE position = %s").format(self._leaves_t),
                             (position,))
                row = curs.fetchone()
            return None if row is None else row["notification_id"]

        def position_of(self, notification_id: int) -> int | None:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(
                    SQL("SELECT position FROM {0} WHERE notification_id = %s").format(self._leaves_t),
                    (notification_id,),
                )
                row = curs.fetchone()
            return None if row is None else row["position"]

        def select_recorded(self, start: int, limit: int, topics: Sequence[str] = (),
                            stop: int | None = None) -> list[RecordedRow]:
            where = SQL(" AND e.topic = ANY(%s)") if topics else SQL("")
            end = (1 << 62) if stop is None else stop
            args: tuple[Any, ...] = (start, end, list(topics), limit) if topics else (start, end, limit)
            with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    SQL("SELECT l.position, e.notification_id, e.topic, e.state FROM {0} l JOIN {1} e "
                        "ON e.notification_id = l.notification_id WHERE l.position >= %s AND l.position < %s{2} "
                        "ORDER BY l.position LIMIT %s").format(self._leaves_t, self._events_t, where), args)
                return [(p, n, t, bytes(st)) for p, n, t, st in cur.fetchall()]

    return SealedPostgresRecorder


def __getattr__(name: str) -> Any:
    if name == "SealedPostgresRecorder":
        cls = _postgres_recorder_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
