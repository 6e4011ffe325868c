"""The ledger: one eventsourcing application over SQLite, PostgreSQL or memory, plus its artifacts.

    led = Ledger.open("sqlite:.arledger/ledger.db")
    trial = led.load(Trial, trial_id)
    trial.claim("host-3", lease_s=30, now=time.time())
    led.save(trial)                       # compare-and-set on the trial's version

``save`` appends all pending events of the given aggregates atomically; a concurrent writer that
got there first makes it raise :class:`ConflictError`. Every appended event is sealed into the
Merkle log in the same transaction (see ``ledger.recorders``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, PersistenceError

from ledger import events as ev
from ledger.aggregates import Aggregate, LedgerRoot
from ledger.artifacts import ArtifactStore, DirArtifactStore, MemoryArtifactStore, PostgresArtifactStore
from ledger.codec import LedgerMapper, decode
from ledger.merkle import Frontier
from ledger.recorders import SealedPOPORecorder
from ledger.store import LedgerError, StoreConfig, eventsourcing_env, parse_url

__version__ = "0.1.0"

A = TypeVar("A", bound=Aggregate)


class ConflictError(LedgerError):
    """Another writer appended to the same aggregate at the same version first."""


@dataclass(frozen=True)
class Recorded:
    position: int  # 0-based leaf index in the Merkle log
    notification_id: int
    event: ev.Event


class _App(Application):
    name = "arledger"

    def construct_mapper(self) -> Any:
        return LedgerMapper()

    def construct_recorder(self) -> Any:
        if self.env.get("PERSISTENCE_MODULE") == "eventsourcing.popo":
            return SealedPOPORecorder()
        return super().construct_recorder()


_MEMORY: dict[str, tuple[_App, MemoryArtifactStore]] = {}


class Ledger:
    def __init__(self, cfg: StoreConfig, app: _App, artifacts: ArtifactStore):
        self.cfg = cfg
        self.app = app
        self.recorder: Any = app.recorder
        self.artifacts = artifacts
        self._id: str | None = None

    # opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, create: bool = False) -> Ledger:
        """Open the ledger at ``url``. Without ``create`` a missing SQLite file is an error that
        says to run ``arledger init`` (and nothing is created)."""
        cfg = parse_url(url)
        if cfg.kind == "memory":
            if cfg.url not in _MEMORY or cfg.url == "memory://":
                app = _App(env=eventsourcing_env(cfg))
                pair = (app, MemoryArtifactStore())
                if cfg.url != "memory://":
                    _MEMORY[cfg.url] = pair
            else:
                pair = _MEMORY[cfg.url]
            return cls(cfg, pair[0], pair[1])
        if cfg.kind == "sqlite":
            assert cfg.path is not None
            if not cfg.path.exists():
                if not create:
                    raise LedgerError(f"no ledger at {cfg.path}; run `arledger init` first (or pass --ledger URL)")
                cfg.path.parent.mkdir(parents=True, exist_ok=True)
            else:
                _check_sqlite_file(cfg.path)
            try:
                app = _App(env=eventsourcing_env(cfg))
            except PersistenceError as e:
                raise LedgerError(f"{cfg.describe()} cannot be opened: {e}") from None
            return cls(cfg, app, DirArtifactStore(cfg.path.parent / "artifacts"))
        # postgres: tables are created by one process at a time (many runners start together)
        conn = _probe_postgres(cfg)
        try:
            conn.execute("SELECT pg_advisory_lock(7301946825)")
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{cfg.schema}"')
            app = _App(env={**eventsourcing_env(cfg), "CREATE_TABLE": "y"})
            store = PostgresArtifactStore(app.recorder.datastore, cfg.schema)
        except PersistenceError as e:
            raise LedgerError(f"{cfg.describe()} cannot be opened: {e}") from None
        finally:
            conn.close()
        return cls(cfg, app, store)

    def close(self) -> None:
        if self.cfg.kind != "memory":
            self.app.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing -----------------------------------------------------------------------------
    def save(self, *objs: Aggregate | ev.Event) -> list[int]:
        """Append the pending events of aggregates (and bare events) atomically. Returns positions'
        notification ids. Raises ConflictError if any aggregate was changed concurrently."""
        events: list[ev.Event] = []
        for o in objs:
            if isinstance(o, ev.Event):
                events.append(o)
            else:
                events.extend(o.collect_events())
        if not events:
            return []
        try:
            recordings = self.app.save(*events)
        except IntegrityError:
            first = events[0]
            raise ConflictError(
                f"conflict: {first.type} on {first.originator_id} at version {first.originator_version} "
                "was already written by another writer; reload and retry"
            ) from None
        return [r.notification.id for r in recordings]

    # reading -----------------------------------------------------------------------------
    def stream(self, originator_id: uuid.UUID) -> list[ev.Event]:
        return list(self.app.events.get(originator_id))

    def load(self, cls: type[A], originator_id: uuid.UUID) -> A:
        return cls.replay(originator_id, self.stream(originator_id))

    def exists(self, originator_id: uuid.UUID) -> bool:
        return bool(self.app.recorder.select_events(originator_id, limit=1))

    def events(self, start: int = 0, types: Iterable[type[ev.Event]] = (), *, until: int | None = None,
               batch: int = 2000) -> Iterator[Recorded]:
        """Every event in commit order with a leaf position in ``[start, until)`` (only of ``types``
        when given: the store filters, so a reader of a few types never decodes the rest). The one
        reading path of the log: projections, the runners' queue and the commands all read it.

        Positions below ``size()`` are all committed, so a reader that polls with
        ``until=size()`` may move its cursor to that size afterwards."""
        topics = tuple(ev.TOPIC_OF[t] for t in types)
        position = start
        while True:
            rows = self.recorder.select_recorded(position, batch, topics, until)
            for pos, nid, topic, state in rows:
                yield Recorded(pos, nid, decode(topic, state))
            if len(rows) < batch:
                return
            position = rows[-1][0] + 1

    def size(self) -> int:
        return self.recorder.tree_state()[0]

    def root(self) -> tuple[int, bytes]:
        size, frontier = self.recorder.tree_state()
        return size, Frontier.from_bytes(frontier).root()

    def ledger_root(self) -> LedgerRoot:
        return self.load(LedgerRoot, ev.LEDGER_ID)

    def ledger_id(self) -> str:
        """The ledger's identity: the hex leaf hash of its first event (LedgerInitialized)."""
        if self._id is None:
            for _pos, _nid, leaf in self.recorder.iter_leaves(batch=1):
                self._id = bytes(leaf).hex()[:32]
                break
            else:
                raise LedgerError(f"{self.cfg.describe()} is empty; run `arledger init`")
        return self._id

    def is_initialised(self) -> bool:
        return self.exists(ev.LEDGER_ID)

    def describe(self) -> str:
        return self.cfg.describe()

    @property
    def home(self) -> Path:
        """Where keys and checkpoint files go by default."""
        return self.cfg.home or Path(os.environ.get("ARLEDGER_HOME", ".arledger")).absolute()


def _check_sqlite_file(path: Path) -> None:
    try:
        from urllib.request import pathname2url

        conn = sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True)
        try:
            conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            ok = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise LedgerError(
            f"{path} is not a readable SQLite ledger ({e}); the file is corrupt or not a ledger — "
            "restore it from a backup, or point --ledger elsewhere"
        ) from None
    if ok and ok[0] != "ok":
        raise LedgerError(f"{path} fails SQLite's integrity check ({ok[0]}); restore it from a backup")


def _probe_postgres(cfg: StoreConfig) -> Any:
    try:
        import psycopg
    except ImportError:
        raise LedgerError("PostgreSQL support needs psycopg: pip install 'arledger[postgres]'") from None
    try:
        conn = psycopg.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password or None,
                               dbname=cfg.dbname, connect_timeout=5, autocommit=True)
        conn.execute("SELECT 1")
        return conn
    except psycopg.Error as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LedgerError(
            f"cannot reach {cfg.describe()}: {msg}; check the URL, that the server runs and accepts you"
        ) from None

