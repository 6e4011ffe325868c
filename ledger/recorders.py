"""eventsourcing recorders that seal and sign every stored event in the same transaction.

Each recorder stores events in eventsourcing's table, and in the same database transaction appends
one leaf per event to ``arledger_leaves`` (position, notification id, leaf hash), updates the tree's
right edge in ``arledger_tree`` and, for a signed append, stores the writer's signature in
``arledger_signatures`` (first position, event count, public key, signature, artifact references:
one row per append, keyed by the position of its first event). An append therefore returns only
once its events are sealed and signed, on every store. Positions are dense (0, 1, 2, …) in commit
order; notification ids may have gaps on PostgreSQL (a rolled-back sequence value), positions never
do. The signature lives beside the event, not in it, so the stored bytes and the Merkle leaf format
are those of ledgers written before signing existed.

Once a ledger holds any signature, an unsigned append is refused inside the transaction
(:class:`SignatureRequired`), so a writer that has not learnt that the ledger was upgraded cannot
slip an unsigned event in.

Each recorder also exposes the raw readers the application needs: ``iter_rows`` (stored rows in
commit order, undecoded), ``iter_leaves`` and ``tree_state``; verification reads through
``ledger.rawscan``.
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
from ledger.keys import SignedBatch
from ledger.merkle import Frontier, leaf_hash

Row = tuple[int, "uuid.UUID | str", int, str, bytes]  # notification id, originator (UUID or hex), version, topic, state
LeafRow = tuple[int, int, bytes]  # position, notification id, leaf hash


class SignatureRequired(RuntimeError):
    """An unsigned append to a ledger whose events are signed."""


class GenesisMismatch(RuntimeError):
    """A batch signed as the ledger's first landed elsewhere (or the other way round): re-sign it."""


def _check_signed(signed: SignedBatch | None, first: int, has_signatures: Any) -> None:
    if signed is None:
        if has_signatures():
            raise SignatureRequired
    elif signed.genesis != (first == 0):
        raise GenesisMismatch


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
        statements.append(
            "CREATE TABLE IF NOT EXISTS arledger_signatures (position INTEGER PRIMARY KEY, "
            "count INTEGER NOT NULL, public_key BLOB NOT NULL, signature BLOB NOT NULL, refs BLOB NOT NULL)"
        )
        return statements

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], *, signed: SignedBatch | None = None,
                       **kwargs: Any) -> Sequence[int] | None:
        # the event INSERTs come first, so this transaction holds the write lock before it reads
        # the tree state: concurrent writers serialise on SQLite's lock, never on a stale read.
        ids = super()._insert_events(c, stored_events, **kwargs)
        assert ids is not None
        c.execute("SELECT frontier FROM arledger_tree WHERE id = 1")
        row = c.fetchone()
        frontier = Frontier.from_bytes(bytes(row[0])) if row else Frontier()
        first = frontier.size

        def has_signatures() -> bool:
            c.execute("SELECT 1 FROM arledger_signatures LIMIT 1")
            return c.fetchone() is not None

        _check_signed(signed, first, has_signatures)
        leaves = _seal(frontier, ids, stored_events)
        c.executemany("INSERT INTO arledger_leaves VALUES (?, ?, ?)", leaves)
        c.execute("INSERT OR REPLACE INTO arledger_tree VALUES (1, ?, ?)", (frontier.size, frontier.to_bytes()))
        if signed is not None:
            c.execute("INSERT INTO arledger_signatures VALUES (?, ?, ?, ?, ?)",
                      (first, len(stored_events), signed.public_key, signed.signature, signed.refs))
        return ids

    def has_signatures(self) -> bool:
        conn = self._ro()
        try:
            return conn.execute("SELECT 1 FROM arledger_signatures LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:
            return False  # a ledger from before signing, not yet opened for writing
        finally:
            conn.close()

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


class SealedPOPORecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._leaves: list[LeafRow] = []
        self._frontier = Frontier()
        self.signatures: list[tuple[int, int, bytes, bytes, bytes]] = []

    def _update_table(self, stored_events: Sequence[StoredEvent], *, signed: SignedBatch | None = None,
                      **kwargs: Any) -> Sequence[int] | None:
        first = self._frontier.size
        _check_signed(signed, first, lambda: bool(self.signatures))
        ids = super()._update_table(stored_events, **kwargs)
        assert ids is not None
        self._leaves.extend(_seal(self._frontier, ids, stored_events))
        if signed is not None:
            self.signatures.append((first, len(stored_events), signed.public_key, signed.signature, signed.refs))
        return ids

    def has_signatures(self) -> bool:
        return bool(self.signatures)

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


def _postgres_recorder_class() -> type:
    """Defined lazily so that psycopg is needed only when PostgreSQL is used."""
    from eventsourcing.persistence import InterfaceError, OperationalError
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.utils import retry
    from psycopg.rows import tuple_row
    from psycopg.sql import SQL, Identifier

    class SealedPostgresRecorder(PostgresApplicationRecorder):
        """Writes bypass eventsourcing's insert (LOCK TABLE … IN EXCLUSIVE MODE, NOTIFY, then a
        separate read of the tree): one pipelined round trip takes the tree row FOR UPDATE and
        inserts the events, a second seals, signs and commits. The row lock is taken before the
        events draw their notification ids and held to commit, so ids, positions and commits are
        in one order, as the table lock made them; compare-and-set stays the primary key."""

        def __init__(self, datastore: Any, **kwargs: Any):
            super().__init__(datastore, **kwargs)
            schema = Identifier(self.datastore.schema)
            self._leaves_t = SQL("{0}.arledger_leaves").format(schema)
            self._tree_t = SQL("{0}.arledger_tree").format(schema)
            self._sigs_t = SQL("{0}.arledger_signatures").format(schema)
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
            # the row every writer locks: present from the start, so even the first append serialises
            self.sql_create_statements.append(
                SQL("INSERT INTO {0} (id, size, frontier) VALUES (1, 0, decode('0000000000000000', 'hex')) "
                    "ON CONFLICT (id) DO NOTHING").format(self._tree_t)
            )
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (position bigint PRIMARY KEY, count int NOT NULL, "
                    "public_key bytea NOT NULL, signature bytea NOT NULL, refs bytea NOT NULL)"
                ).format(self._sigs_t)
            )
            self._q_lock = SQL("SELECT frontier FROM {0} WHERE id = 1 FOR UPDATE").format(self._tree_t)
            self._q_has_sigs = SQL("SELECT EXISTS (SELECT 1 FROM {0})").format(self._sigs_t)
            self._q_insert = SQL(
                "INSERT INTO {0} (originator_id, originator_version, topic, state) "
                "SELECT originator_id, originator_version, topic, state FROM unnest(%s::{1}[]) "
                "RETURNING notification_id, originator_id, originator_version"
            ).format(self._events_t, SQL("{0}.{1}").format(schema, Identifier(self.stored_event_type_name)))
            self._q_leaf = SQL("INSERT INTO {0} (position, notification_id, leaf) VALUES (%s, %s, %s)").format(
                self._leaves_t)
            self._q_tree = SQL("UPDATE {0} SET size = %s, frontier = %s WHERE id = 1").format(self._tree_t)
            self._q_sig = SQL("INSERT INTO {0} (position, count, public_key, signature, refs) "
                              "VALUES (%s, %s, %s, %s, %s)").format(self._sigs_t)

        @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
        def insert_events(self, stored_events: Sequence[StoredEvent], *, signed: SignedBatch | None = None,
                          **kwargs: Any) -> Sequence[int] | None:
            if not stored_events:
                return []
            pg_events = [self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
                         for e in stored_events]
            exc: BaseException | None = None
            ids: list[int] = []
            with self.datastore.get_connection() as conn:
                with conn.pipeline() as pipeline:
                    try:
                        with conn.transaction(), conn.cursor(row_factory=tuple_row) as lock, \
                                conn.cursor(row_factory=tuple_row) as ins, conn.cursor(row_factory=tuple_row) as sig:
                            lock.execute(self._q_lock, prepare=True)
                            if signed is None:
                                sig.execute(self._q_has_sigs, prepare=True)
                            ins.execute(self._q_insert, (pg_events,), prepare=True)
                            pipeline.sync()  # round trip 1: the lock, the events (a conflict raises here)
                            row = lock.fetchone()
                            frontier = Frontier.from_bytes(bytes(row[0])) if row else Frontier()
                            first = frontier.size
                            _check_signed(signed, first, lambda: bool(sig.fetchone()[0]))
                            by_key = {(str(oid), ver): nid for nid, oid, ver in ins.fetchall()}
                            ids = [by_key[(str(e.originator_id), e.originator_version)] for e in stored_events]
                            leaves = _seal(frontier, ids, stored_events)
                            lock.executemany(self._q_leaf, leaves)
                            lock.execute(self._q_tree, (frontier.size, frontier.to_bytes()), prepare=True)
                            if signed is not None:
                                lock.execute(self._q_sig, (first, len(stored_events), signed.public_key,
                                                           signed.signature, signed.refs), prepare=True)
                        # round trip 2: seal, signature and COMMIT, sent together as the block closes
                    except BaseException as e:  # the transaction rolled back; re-raised once the pipeline is
                        exc = e                 # closed, as psycopg advises
                if exc is not None:
                    raise exc
            return ids

        def has_signatures(self) -> bool:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(self._q_has_sigs)
                row = curs.fetchone()
            return bool(row and next(iter(row.values())))

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

    return SealedPostgresRecorder


def __getattr__(name: str) -> Any:
    if name == "SealedPostgresRecorder":
        cls = _postgres_recorder_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
