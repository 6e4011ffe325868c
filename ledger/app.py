"""The ledger: one eventsourcing application over SQLite, PostgreSQL or memory, plus its artifacts.

    led = Ledger.open("sqlite:.arledger/ledger.db")
    trial = led.load(Trial, trial_id)
    trial.claim("host-3", lease_s=30, now=time.time())
    led.save(trial)                       # compare-and-set on the trial's version

``save`` appends all pending events of the given aggregates atomically; a concurrent writer that
got there first makes it raise :class:`ConflictError`. Every appended event is sealed into the
Merkle log and signed by the ledger's bound writer in the same transaction (see
``ledger.recorders``):

    led = Ledger.open(url, signer=signer_for(led0, "runner:host-3"))   # or led.with_signer(...)

A ledger opened without a signer signs as the default actor (``ledger.identity.default_actor``:
``$ARLEDGER_ACTOR``, else ``human:<login>``), whose key is made and enrolled on first use where the
ledger key is on this machine. Ledgers that have never been signed (written before signing
existed, and not yet moved forward with ``arledger audit upgrade``) keep taking unsigned events.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from ledger import events as ev
from ledger.aggregates import Aggregate, LedgerRoot
from ledger.artifacts import ArtifactStore, DirArtifactStore, MemoryArtifactStore, PostgresArtifactStore
from ledger.codec import EncodeError, LedgerMapper, decode, encode_event, event_digest
from ledger.keys import GENESIS_LEDGER_ID, REF_ROW, SignedBatch, Signer, append_message
from ledger.merkle import Frontier
from ledger.reconnect import Reconnect, Retrying, is_connection_error
from ledger.recorders import GenesisMismatch, SealedPOPORecorder, SignatureRequired
from ledger.refs import where
from ledger.store import LedgerError, StoreConfig, eventsourcing_env, parse_url

__version__ = "0.1.0"

A = TypeVar("A", bound=Aggregate)
T = TypeVar("T")


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


class _Shared:
    """What every view of one opened ledger shares: the ledger id once known, whether its events
    are signed, where its ledger key was given, the signers found trusted so far."""

    def __init__(self) -> None:
        self.lid: bytes | None = None
        self.signed: bool | None = None
        self.ledger_key_path: Path | None = None
        self.trusted: set[tuple[str, str]] = set()  # (actor, key id) known to be enrolled
        self.default_signer: Signer | None = None
        self.reconnect: Reconnect | None = None  # PostgreSQL: the outage policy (ledger.reconnect)


# the recorder's reads a PostgreSQL ledger repeats across a reconnect (its generators are not: a
# verify that loses its connection fails and is run again)
_RETRIED_READS = ("select_events", "select_recorded", "tree_state", "has_signatures", "nid_at", "position_of")
_RETRIED_ARTIFACTS = ("put", "get_raw", "exists", "get", "get_text", "check", "present")


class Ledger:
    def __init__(self, cfg: StoreConfig, app: _App, artifacts: ArtifactStore, *, signer: Signer | None = None,
                 shared: _Shared | None = None):
        self.cfg = cfg
        self.app = app
        self.signer = signer
        self._shared = shared or _Shared()
        self.recorder: Any = app.recorder
        self.artifacts: ArtifactStore = artifacts
        if cfg.kind == "postgres":
            if self._shared.reconnect is None:
                pool = app.recorder.datastore.pool
                self._shared.reconnect = Reconnect(cfg.describe(), on_error=pool.check)
            rc = self._shared.reconnect
            self.recorder = Retrying(app.recorder, rc, _RETRIED_READS)
            if isinstance(artifacts, PostgresArtifactStore):
                self.artifacts = Retrying(artifacts, rc, _RETRIED_ARTIFACTS)  # type: ignore[assignment]

    # opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, create: bool = False, signer: Signer | None = None,
             create_tables: bool = True) -> Ledger:
        """Open the ledger at ``url``, writing as ``signer`` (default: see the module docstring).
        Without ``create`` a missing SQLite file is an error that says to run ``arledger init`` (and
        nothing is created). ``create_tables=False`` opens an existing ledger as it is (for audits:
        a dropped table stays missing)."""
        cfg = parse_url(url)
        if cfg.kind == "memory":
            if cfg.url not in _MEMORY or cfg.url == "memory://":
                app = _App(env=eventsourcing_env(cfg))
                pair = (app, MemoryArtifactStore())
                if cfg.url != "memory://":
                    _MEMORY[cfg.url] = pair
            else:
                pair = _MEMORY[cfg.url]
            return cls(cfg, pair[0], pair[1], signer=signer)
        tables = {} if create_tables else {"CREATE_TABLE": "n"}
        if cfg.kind == "sqlite":
            assert cfg.path is not None
            if not cfg.path.exists():
                if not create:
                    raise LedgerError(f"no ledger at {cfg.path}; run `arledger init` first (or pass --ledger URL)")
                cfg.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the ledger's folder: private
                os.close(os.open(cfg.path, os.O_WRONLY | os.O_CREAT, 0o600))  # and its file, 0600
            else:
                _check_sqlite_file(cfg.path)
            try:
                app = _App(env={**eventsourcing_env(cfg), **tables})
            except PersistenceError as e:
                raise LedgerError(f"{cfg.describe()} cannot be opened: {e}") from None
            return cls(cfg, app, DirArtifactStore(cfg.path.parent / "artifacts"), signer=signer)
        # postgres: tables are created by one process at a time (many runners start together)
        conn = _probe_postgres(cfg)
        try:
            if create_tables:
                conn.execute("SELECT pg_advisory_lock(7301946825)")
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{cfg.schema}"')
            app = _App(env={**eventsourcing_env(cfg), "CREATE_TABLE": "y" if create_tables else "n"})
            store = PostgresArtifactStore(app.recorder.datastore, cfg.schema, create=create_tables)
        except PersistenceError as e:
            raise LedgerError(f"{cfg.describe()} cannot be opened: {e}") from None
        finally:
            conn.close()
        return cls(cfg, app, store, signer=signer)

    def with_signer(self, signer: Signer | None) -> Ledger:
        """A view of the same ledger (same application, artifact store and connections) that
        signs what it appends as ``signer``. Closing either closes both."""
        return Ledger(self.cfg, self.app, _unwrapped(self.artifacts), signer=signer, shared=self._shared)

    def with_artifacts(self, artifacts: ArtifactStore) -> Ledger:
        """A view that reads and writes artifacts in another store (``audit verify --artifacts``)."""
        return Ledger(self.cfg, self.app, _unwrapped(artifacts), signer=self.signer, shared=self._shared)

    @property
    def reconnect(self) -> Reconnect | None:
        """The outage policy of a PostgreSQL ledger (None for SQLite and memory ledgers)."""
        return self._shared.reconnect

    def on_outage(self, notify: Callable[[str], None]) -> None:
        """Where a PostgreSQL ledger says that its connection was lost and came back (default: stderr)."""
        if self._shared.reconnect is not None:
            self._shared.reconnect.notify = notify

    def _call(self, fn: Callable[[], T]) -> T:
        rc = self._shared.reconnect
        return fn() if rc is None else rc.call(fn)

    def close(self) -> None:
        if self.cfg.kind != "memory":
            close_writer = getattr(self.recorder, "close_writer", None)
            if close_writer is not None:
                close_writer()
            self.app.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing -----------------------------------------------------------------------------
    def save(self, *objs: Aggregate | ev.Event) -> list[int]:
        """Append the pending events of aggregates (and bare events) atomically, sealed and signed.
        Returns their notification ids. Raises ConflictError if any aggregate was changed
        concurrently, LedgerError if the ledger's events are signed and this writer has no trusted
        key (the message says how to enrol it)."""
        events: list[ev.Event] = []
        for o in objs:
            if isinstance(o, ev.Event):
                events.append(o)
            else:
                events.extend(o.collect_events())
        if not events:
            return []
        stored: list[StoredEvent] = []
        refs = bytearray()
        digests = bytearray()
        for i, e in enumerate(events):
            topic, state, shas, hidden = encode_event(e)
            for h in hidden:
                if self.artifacts.exists(h):
                    raise EncodeError(
                        f"{where(e, h)} names artifact {h[:12]}… outside a field typed Artifact, where verify "
                        "would not see it; give the event a field typed ledger.events.Artifact for it")
            stored.append(StoredEvent(originator_id=e.originator_id, originator_version=e.originator_version,
                                      topic=topic, state=state))
            digests += event_digest(e.originator_id, e.originator_version, topic, state)
            for sha in shas:
                refs += REF_ROW.pack(i, bytes.fromhex(sha))
        starts_signing = any(type(e) is ev.SigningStarted for e in events)
        sh = self._shared
        for _attempt in range(4):
            signer = self._writer(events) if (starts_signing or sh.signed or sh.signed is None and
                                              self._probe_signed()) else None
            batch = None
            if signer is not None:
                lid = self._lid()
                batch = SignedBatch(signer.public_key, signer.sign(append_message(lid, bytes(digests), bytes(refs))),
                                    bytes(refs), genesis=lid == GENESIS_LEDGER_ID)
            try:
                ids = self._insert(stored, batch)
            except IntegrityError:
                first = events[0]
                raise ConflictError(
                    f"conflict: {first.type} on {first.originator_id} at version {first.originator_version} "
                    "was already written by another writer; reload and retry"
                ) from None
            except SignatureRequired:
                sh.signed = True  # upgraded since we looked: sign from now on
                continue
            except GenesisMismatch:
                sh.lid = None
                continue
            if batch is not None:
                sh.signed = True
            assert ids is not None
            return list(ids)
        raise LedgerError(f"could not append to {self.describe()}: it changed under every attempt; try again")

    def _insert(self, stored: list[StoredEvent], batch: SignedBatch | None) -> Sequence[int]:
        """One append. Across a lost connection (PostgreSQL) it is never repeated blindly: the
        server may have committed it before the connection dropped, so once the store answers
        again the append is looked up first (the event at the first aggregate version, compared
        byte for byte): landed -> its notification ids; another writer's event there ->
        IntegrityError (a conflict, as usual); absent -> appended again."""
        rc = self._shared.reconnect
        raw = getattr(self.recorder, "target", self.recorder)
        if rc is None:
            return raw.insert_events(stored, signed=batch)
        started: float | None = None
        delay = 0.5
        uncertain = False
        while True:
            try:
                if not uncertain:
                    return raw.insert_events(stored, signed=batch)
                landed = self._landed(raw, stored)
                if landed is False:
                    raise IntegrityError("another writer appended at this version while the store was away")
                ids = raw.insert_events(stored, signed=batch) if landed is None else landed
                rc.recovered()
                return ids
            except IntegrityError:
                if uncertain:
                    rc.recovered()
                raise
            except Exception as e:
                if not is_connection_error(e):
                    raise
                uncertain = True
                started = time.monotonic() if started is None else started
                delay = rc.wait(e, started, delay)

    @staticmethod
    def _landed(raw: Any, stored: list[StoredEvent]) -> list[int] | bool | None:
        """Whether an append whose answer was lost is in the store: its notification ids when it
        is, False when another writer's event holds its first version, None when it is not there
        (an append is one transaction: its first event stands for all)."""
        first = stored[0]
        got = raw.select_events(first.originator_id, gt=first.originator_version - 1,
                                lte=first.originator_version, limit=1)
        if not got:
            return None
        if got[0].topic != first.topic or bytes(got[0].state) != bytes(first.state):
            return False
        return raw.notification_ids([(s.originator_id, s.originator_version) for s in stored])

    def _probe_signed(self) -> bool:
        self._shared.signed = bool(self.recorder.has_signatures())
        return self._shared.signed

    def _lid(self) -> bytes:
        """The id a signed batch binds to: the ledger id, or GENESIS_LEDGER_ID for the first batch."""
        sh = self._shared
        if sh.lid is None:
            first = self._call(lambda: next(iter(self.recorder.iter_leaves(batch=1)), None))
            if first is None:
                return GENESIS_LEDGER_ID
            sh.lid = bytes(first[2])[:16]
        return sh.lid

    def _writer(self, events: list[ev.Event]) -> Signer:
        """The signer of this view, known to be trusted by the ledger (enrolled on first use)."""
        from ledger.identity import default_actor, ensure_trusted, signer_for

        sh = self._shared
        if self.signer is not None:
            introduces = any(type(e) is ev.LedgerInitialized and e.key_id == self.signer.key_id for e in events)
            if not introduces and (self.signer.actor, self.signer.key_id) not in sh.trusted:
                ensure_trusted(self, self.signer, required=True)
            return self.signer
        if sh.default_signer is None:
            sh.default_signer = signer_for(self, default_actor(), required=True)
        return sh.default_signer

    # reading -----------------------------------------------------------------------------
    def stream(self, originator_id: uuid.UUID) -> list[ev.Event]:
        return self._call(lambda: list(self.app.events.get(originator_id)))

    def load(self, cls: type[A], originator_id: uuid.UUID) -> A:
        return cls.replay(originator_id, self.stream(originator_id))

    def exists(self, originator_id: uuid.UUID) -> bool:
        return bool(self.recorder.select_events(originator_id, limit=1))

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
        lid = self._lid()
        if lid == GENESIS_LEDGER_ID:
            raise LedgerError(f"{self.cfg.describe()} is empty; run `arledger init`")
        return lid.hex()

    def is_initialised(self) -> bool:
        return self.exists(ev.LEDGER_ID)

    def describe(self) -> str:
        return self.cfg.describe()

    @property
    def home(self) -> Path:
        """Where keys and checkpoint files go by default: the SQLite file's folder; for PostgreSQL
        and memory ledgers ``$ARLEDGER_HOME``, else ``~/.arledger``."""
        if self.cfg.home is not None:
            return self.cfg.home
        env = os.environ.get("ARLEDGER_HOME")
        return Path(env).expanduser().absolute() if env else Path.home() / ".arledger"

    @property
    def ledger_key_path(self) -> Path | None:
        """The ledger key this process was given (``init_ledger``'s key path), if any."""
        return self._shared.ledger_key_path

    def remember_ledger_key(self, path: Path) -> None:
        self._shared.ledger_key_path = Path(path)

    def mark_trusted(self, signer: Signer) -> None:
        self._shared.trusted.add((signer.actor, signer.key_id))


def _unwrapped(artifacts: Any) -> ArtifactStore:
    return getattr(artifacts, "target", artifacts)


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

