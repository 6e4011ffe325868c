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
commit order, undecoded), ``iter_leaves``, ``tree_state``, and ``select_recorded``, the one reading
path of ``Ledger.events`` (rows from a leaf position, optionally of some topics only); verification
reads through ``ledger.rawscan``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger.codec import leaf_data
from ledger.keys import SignedBatch
from ledger.merkle import Frontier, leaf_hash

Row = tuple[int, "uuid.UUID | str", int, str, bytes]  # notification id, originator (UUID or hex), version, topic, state
LeafRow = tuple[int, int, bytes]  # position, notification id, leaf hash
RecordedRow = tuple[int, int, str, bytes]  # position, notification id, topic, stored state


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

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._wconn: sqlite3.Connection | None = None
        self._wpid = 0
        self._wlock = threading.Lock()

    def _writer(self) -> sqlite3.Connection:
        """This recorder's own writer connection, with a statement cache (eventsourcing's pool
        connections cache one statement, so each of an append's seven would be compiled anew)."""
        if self._wconn is None or self._wpid != os.getpid():
            self._wconn = sqlite3.connect(self.datastore.pool.db_name, uri=True, check_same_thread=False,
                                          isolation_level=None, timeout=self.datastore.pool.lock_timeout or 5)
            self._wpid = os.getpid()
        return self._wconn

    def close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def insert_events(self, stored_events: Sequence[StoredEvent], *, signed: SignedBatch | None = None,
                      **kwargs: Any) -> Sequence[int] | None:
        """One transaction on the writer connection, straight through sqlite3 (eventsourcing's cursor
        and transaction wrappers cost more than the statements)."""
        with self._wlock:
            c = self._writer()
            try:
                c.execute("BEGIN")
                # the event INSERTs come first, so this transaction holds the write lock before it
                # reads the tree state: concurrent writers serialise on SQLite's lock, never on a stale read.
                ids = [c.execute(self.insert_events_statement,
                                 (s.originator_id.hex if isinstance(s.originator_id, uuid.UUID) else s.originator_id,
                                  s.originator_version, s.topic, s.state)).lastrowid for s in stored_events]
                row = c.execute("SELECT frontier FROM arledger_tree WHERE id = 1").fetchone()
                frontier = Frontier.from_bytes(bytes(row[0])) if row else Frontier()
                first = frontier.size
                _check_signed(signed, first,
                              lambda: c.execute("SELECT 1 FROM arledger_signatures LIMIT 1").fetchone() is not None)
                leaves = _seal(frontier, ids, stored_events)
                if len(leaves) == 1:
                    c.execute("INSERT INTO arledger_leaves VALUES (?, ?, ?)", leaves[0])
                else:
                    c.executemany("INSERT INTO arledger_leaves VALUES (?, ?, ?)", leaves)
                c.execute("INSERT OR REPLACE INTO arledger_tree VALUES (1, ?, ?)", (frontier.size, frontier.to_bytes()))
                if signed is not None:
                    c.execute("INSERT INTO arledger_signatures VALUES (?, ?, ?, ?, ?)",
                              (first, len(stored_events), signed.public_key, signed.signature, signed.refs))
                c.execute("COMMIT")
            except BaseException as e:
                if c.in_transaction:
                    c.rollback()
                if isinstance(e, sqlite3.IntegrityError):
                    raise IntegrityError(e) from e
                if isinstance(e, sqlite3.OperationalError):
                    raise OperationalError(e) from e
                if isinstance(e, sqlite3.Error):
                    raise PersistenceError(e) from e
                raise
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


_APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION {fn}(evs {ev}[], pub bytea, sig bytea, refs bytea, genesis boolean)
RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
DECLARE
    fr bytea; sz bigint; first bigint; stack bytea[] := '{{}}'; h bytea; s bigint; t bytea; nid bigint;
    e record; k int;
BEGIN
    SELECT frontier INTO fr FROM {tree} WHERE id = 1 FOR UPDATE;
    IF fr IS NULL THEN
        fr := decode('0000000000000000', 'hex');
        INSERT INTO {tree} (id, size, frontier) VALUES (1, 0, fr);
    END IF;
    sz := ('x' || encode(substring(fr FROM 1 FOR 8), 'hex'))::bit(64)::bigint;
    FOR k IN 0 .. (length(fr) - 8) / 32 - 1 LOOP
        stack := stack || substring(fr FROM 9 + 32 * k FOR 32);
    END LOOP;
    first := sz;
    IF sig IS NULL THEN
        IF EXISTS (SELECT 1 FROM {sigs}) THEN
            RAISE EXCEPTION 'arledger: this ledger''s events are signed' USING ERRCODE = 'AR001';
        END IF;
    ELSIF genesis <> (first = 0) THEN
        RAISE EXCEPTION 'arledger: signed for another position' USING ERRCODE = 'AR002';
    END IF;
    FOREACH e IN ARRAY evs LOOP
        INSERT INTO {events} (originator_id, originator_version, topic, state)
            VALUES (e.originator_id, e.originator_version, e.topic, e.state) RETURNING notification_id INTO nid;
        t := convert_to(e.topic, 'UTF8');
        h := sha256('\x00'::bytea || int8send(sz) || int8send(e.originator_version) || uuid_send(e.originator_id)
                    || int2send(length(t)::int2) || t || e.state);
        INSERT INTO {leaves} (position, notification_id, leaf) VALUES (sz, nid, h);
        s := sz;
        WHILE s % 2 = 1 LOOP
            h := sha256('\x01'::bytea || stack[cardinality(stack)] || h);
            stack := stack[1:cardinality(stack) - 1];
            s := s / 2;
        END LOOP;
        stack := stack || h;
        sz := sz + 1;
        RETURN NEXT nid;
    END LOOP;
    fr := int8send(sz);
    FOR k IN 1 .. cardinality(stack) LOOP
        fr := fr || stack[k];
    END LOOP;
    UPDATE {tree} SET size = sz, frontier = fr WHERE id = 1;
    IF sig IS NOT NULL THEN
        INSERT INTO {sigs} (position, count, public_key, signature, refs) VALUES (first, cardinality(evs), pub, sig, refs);
    END IF;
END
$body$
"""


def _postgres_recorder_class() -> type:
    """Defined lazily so that psycopg is needed only when PostgreSQL is used."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from psycopg.rows import tuple_row
    from psycopg.sql import SQL, Identifier

    class SealedPostgresRecorder(PostgresApplicationRecorder):
        """Appends go through one server function, ``arledger_append`` (below), called in one round
        trip that also commits: it takes the tree row FOR UPDATE, inserts the events, seals each
        (the leaf as ``codec.leaf_data`` defines it, the frontier as ``merkle.Frontier`` keeps it),
        stores the signature row, and returns the notification ids. It replaces eventsourcing's
        insert (LOCK TABLE … IN EXCLUSIVE MODE, NOTIFY) and the separate sealing round trips. The row
        lock is taken before the events draw their notification ids and held to commit, so ids,
        positions and commits are in one order, as the table lock made them; compare-and-set stays
        the primary key. Verification recomputes every leaf itself and trusts nothing the function
        wrote."""

        def __init__(self, datastore: Any, **kwargs: Any):
            super().__init__(datastore, **kwargs)
            schema = Identifier(self.datastore.schema)
            self._leaves_t = SQL("{0}.arledger_leaves").format(schema)
            self._tree_t = SQL("{0}.arledger_tree").format(schema)
            self._sigs_t = SQL("{0}.arledger_signatures").format(schema)
            self._events_t = SQL("{0}.{1}").format(schema, Identifier(self.events_table_name))
            self._append_f = SQL("{0}.arledger_append").format(schema)
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
            self.sql_create_statements.append(SQL(_APPEND_FUNCTION).format(
                fn=self._append_f, ev=SQL("{0}.{1}").format(schema, Identifier(self.stored_event_type_name)),
                events=self._events_t, leaves=self._leaves_t, tree=self._tree_t, sigs=self._sigs_t))
            self._q_append = SQL("SELECT nid FROM {0}(%s, %s, %s, %s, %s) AS nid").format(self._append_f)
            self._q_has_sigs = SQL("SELECT EXISTS (SELECT 1 FROM {0})").format(self._sigs_t)

        # not retried here: an append whose connection dropped may have committed; Ledger.save looks
        # it up once the store answers again (ledger.reconnect), then appends again only if it is absent
        def insert_events(self, stored_events: Sequence[StoredEvent], *, signed: SignedBatch | None = None,
                          **kwargs: Any) -> Sequence[int] | None:
            if not stored_events:
                return []
            import psycopg

            pg_events = [self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
                         for e in stored_events]
            params = (pg_events, None, None, None, False) if signed is None else \
                (pg_events, signed.public_key, signed.signature, signed.refs, signed.genesis)
            with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
                try:
                    curs.execute(self._q_append, params, prepare=True)
                    return [r[0] for r in curs.fetchall()]
                except psycopg.Error as e:
                    if e.sqlstate == "AR001":
                        raise SignatureRequired from None
                    if e.sqlstate == "AR002":
                        raise GenesisMismatch from None
                    raise

        def notification_ids(self, keys: Sequence[tuple[uuid.UUID, int]]) -> list[int]:
            """The notification ids of stored events, by (originator id, version), in that order."""
            out = []
            with self.datastore.transaction(commit=False) as curs:
                for oid, version in keys:
                    curs.execute(SQL("SELECT notification_id FROM {0} WHERE originator_id = %s AND "
                                     "originator_version = %s").format(self._events_t), (oid, version))
                    row = curs.fetchone()
                    out.append(row["notification_id"] if row else -1)
            return out

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
